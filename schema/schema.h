/* schema.h -- the case model as data, and its validator.
 *
 * The schema (schema/casesync.json) is loaded once and is read-only afterwards,
 * so one schema_t may be shared by any number of threads. The same code runs on
 * the server and inside the client library: a phone refuses a bad edit before
 * it is ever queued.
 *
 * Caveats:
 * - Two levels of checking. schema_check_shape() looks only at JSON types (a
 *   string where a number belongs): such a change can only come from a broken
 *   client, and the server refuses the whole changeset with 422. Everything
 *   else (ranges, patterns, enum members, required fields, lifecycle guards) is
 *   a value rule: the change is rejected on its own and quarantined.
 * - Error paths are relative to the change object ("set.fine_amount",
 *   "fields.location.lat"); the caller prefixes "changes[3].".
 * - Three layers judge a change, in this order: its shape (JSON types), its
 *   values (schema_check_create/_set/_append: ranges, patterns, required),
 *   then who may write what in which state (schema_judge_writes: field x
 *   role x state) and the lifecycle (schema_judge_transition). The last two
 *   need the record as it stands, so the server runs them in its writer and
 *   a phone against its local copy; a phone cannot look users up, so the
 *   "unit_officer" rule is the server's alone (schema_writer_t.lookup NULL).
 * - Working days (deadlines, the rights window) count Monday to Friday in
 *   China time (UTC+8) unless a calendar says otherwise.
 * - Pointers returned by accessors live as long as the schema_t.
 */
#ifndef CASESYNC_SCHEMA_H
#define CASESYNC_SCHEMA_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef struct schema schema_t;

/* Return codes: 0 is success, negative values are errors. */
enum {
    SCHEMA_OK = 0,
    SCHEMA_E_LOAD = -1,       /* the schema document itself is broken */
    SCHEMA_E_TYPE = -2,       /* wrong JSON type: the whole request is 422 */
    SCHEMA_E_INVALID = -3,    /* a value rule is broken: validation_failed */
    SCHEMA_E_ROLE = -4,       /* role_forbidden */
    SCHEMA_E_TRANSITION = -5, /* forbidden_transition */
    SCHEMA_E_NOMEM = -6,
    SCHEMA_E_FORBIDDEN = -7, /* field_forbidden: this role may not write this field or value */
    SCHEMA_E_FROZEN = -8     /* field_frozen: the record's state freezes the field */
};

/* Roles, weakest first. The numeric order is the strength order. */
typedef enum {
    ROLE_NONE = -1,
    ROLE_AUXILIARY = 0,
    ROLE_OFFICER = 1,
    ROLE_LEGAL_REVIEWER = 2,
    ROLE_SUPERVISOR = 3,
    ROLE_ADMIN = 4
} schema_role_t;

/* Merge policies of a field. */
typedef enum {
    POLICY_LWW = 0,
    POLICY_APPEND,
    POLICY_UNION,
    POLICY_MANUAL,
    POLICY_SERVER,   /* set by the server only; a client value is rejected */
    POLICY_IMMUTABLE /* set at create, never changed */
} schema_policy_t;

/* What a lifecycle judgement decided; see schema_judge_transition(). */
typedef enum {
    JUDGE_APPLY = 0, /* allowed now: apply it */
    JUDGE_NOOP,      /* the record already passed `to`: a merged no-op */
    JUDGE_CONFLICT,  /* the record left the state `to` branches from */
    JUDGE_FORBIDDEN, /* not a transition of this procedure at all */
    JUDGE_ROLE,      /* allowed transition, but not for this role */
    JUDGE_GUARD      /* allowed, but a field guard fails */
} schema_judgement_t;

/* The record a change is judged against. Strings and trees are borrowed. */
typedef struct schema_view {
    const char *procedure;
    const char *status; /* NULL: the record is being created */
    int voided;
    const cJSON *fields;     /* the record's fields; NULL when none yet */
    int64_t status_since_ms; /* when the record entered status (server clock); 0: unknown,
                              * and then the rights window is not judged (a phone's copy:
                              * the server, which always knows, judges it) */
    int64_t now_ms;          /* when the change is judged (server clock, or the phone's) */
} schema_view_t;

/* A user as a write rule needs to know them (assignee, assist_officer). */
typedef struct schema_user_info {
    int active; /* 0: disabled */
    schema_role_t role;
    char unit[64];
} schema_user_info_t;

/* Looks a user id up: 0 and *out filled, or -1 when unknown. */
typedef int (*schema_user_lookup_fn)(void *ctx, const char *user_id, schema_user_info_t *out);

/* Who writes. */
typedef struct schema_writer {
    schema_role_t role;
    const char *unit;             /* the writer's unit */
    const cJSON *grids;           /* array of the grid codes the writer patrols */
    schema_user_lookup_fn lookup; /* NULL: the unit_officer rule is not checked */
    void *lookup_ctx;
} schema_writer_t;

/* What schema_judge_writes decided (a field of the change at fault is in err->path). */
typedef enum {
    WRITE_OK = 0,
    WRITE_FORBIDDEN, /* field_forbidden: not this role, not this value (another unit, a grid not patrolled) */
    WRITE_FROZEN,    /* field_frozen: frozen in this state, or the record is closed or voided */
    WRITE_INVALID    /* validation_failed: an assignee who is no officer of the unit, both the same */
} schema_write_t;

/* An error: a machine code (as above), a human message, and the path of the
 * field at fault relative to the change ("" when no single field is). */
typedef struct schema_err {
    int code;
    char message[256];
    char path[192];
} schema_err_t;

/* Loads a schema from JSON text. On success *out owns a new schema_t (free it
 * with schema_free); on failure *out is NULL and err says what is wrong. */
int schema_load(const char *json, size_t len, schema_t **out, schema_err_t *err);
/* Loads from a file path. Same contract as schema_load. */
int schema_load_file(const char *path, schema_t **out, schema_err_t *err);
void schema_free(schema_t *s); /* accepts NULL */

/* The schema as compact JSON text, its version ("schema_version" of the
 * document) and a strong ETag (quoted hex of its SHA-256). */
const char *schema_text(const schema_t *s);
size_t schema_text_len(const schema_t *s);
int schema_version(const schema_t *s);
const char *schema_etag(const schema_t *s);

/* Role names: "auxiliary", "officer", "legal_reviewer", "supervisor", "admin". */
schema_role_t schema_role_parse(const char *name); /* ROLE_NONE if unknown */
const char *schema_role_name(schema_role_t r);

/* Case types: "unlicensed_vending" <-> "0501". NULL when unknown. */
const char *schema_type_code(const schema_t *s, const char *type);
const char *schema_type_name(const schema_t *s, const char *code);

/* A field's policy; returns -1 for a field the schema does not define. */
int schema_field_policy(const schema_t *s, const char *field);

/* Does the procedure exist ("digital", "simple", "general")? */
int schema_procedure_exists(const schema_t *s, const char *procedure);
/* The status a new record of this procedure starts in ("reported", "draft",
 * "clue"); NULL if the procedure is unknown. */
const char *schema_initial_status(const schema_t *s, const char *procedure);
/* May this role create a record of this procedure? 1 yes, 0 no. */
int schema_may_create(const schema_t *s, const char *procedure, schema_role_t role);
/* Is this status terminal (closed, rejected, not_filed, transferred ...)? */
int schema_status_is_closed(const schema_t *s, const char *procedure, const char *status);
/* Does assignment of case_no happen on entering this status (general and
 * digital: "filed"; simple: "decided")? 1 yes, 0 no. */
int schema_status_assigns_case_no(const schema_t *s, const char *procedure, const char *status);

/* JSON-type check of one change object as sent in a push:
 *   {"op":"create","record_id","type","at","fields":{...}}
 *   {"op":"update","record_id","base_version","at","set":{...},"append":{"notes":[...]}}
 *   {"op":"transition","record_id","base_version","at","to"}
 *   {"op":"void","record_id","base_version","at","reason"}
 *   {"op":"correct","record_id","base_version","at","set":{...},"reason"}
 * Checks op is one of the five, record_id matches ^[0-9A-Za-z_-]{8,64}$,
 * base_version is a non-negative integer where required, `at` is a string when
 * present, set/fields are objects, append is an object of arrays of objects,
 * and each known field's value has the JSON type its schema type needs (number
 * for number, object for object, array of strings for tags ...). Unknown
 * fields are not a shape error (they are a value error). Returns 0 or
 * SCHEMA_E_TYPE with err->path like "set.fine_amount". */
int schema_check_shape(const schema_t *s, const cJSON *change, schema_err_t *err);

/* Value rules for a create: `type` known, fields.procedure known and the
 * category (if given) equal to the type's code, every field known and not
 * server-set, every "required: create" field present, every value within its
 * rules (length, pattern, enum, range, 2 decimals, RFC 3339 time, location
 * bounds, list item shapes). Who may write them is schema_judge_writes's.
 * Returns 0 or SCHEMA_E_INVALID, path like "fields.grid". */
int schema_check_create(const schema_t *s, const char *type, const cJSON *fields, schema_err_t *err);

/* Value rules for `set` of one field: the field is known, not server-set nor
 * immutable nor an append list, its value within its rules. `null` clears an
 * optional field. Path is "set.<field>". */
int schema_check_set(const schema_t *s, const char *field, const cJSON *value, schema_err_t *err);

/* Value rules for items appended to an append-policy field: each item is an
 * object with a string "id" (1..64 chars) and the item fields of the schema.
 * Path is "append.<field>[i].<key>". */
int schema_check_append(const schema_t *s, const char *field, const cJSON *items, schema_err_t *err);

/* The write rules (the schema's "write", "closed_records", "corrections") for
 * one change whose values already passed the checks above: create (fields),
 * update (set, append), correct (set). Field by field, in the change's order:
 * - the role reaches the field's create / update role;
 * - the value rule holds: own_unit (at create, the writer's unit; admins
 *   any), patrolled_grid (officers and auxiliaries: one of w->grids),
 *   unit_officer (w->lookup: an active user of the record's unit, officer or
 *   stronger -- WRITE_INVALID otherwise), differs_from (the other field as
 *   this change leaves it);
 * - not frozen: frozen_from reached (that state or a later one) needs op
 *   correct by the corrections role (WRITE_FROZEN otherwise); no_clear_from
 *   reached: never cleared, not even by a correction;
 * - a closed or voided record takes only closed_records.append items by that
 *   role: anything else is WRITE_FROZEN.
 * For op correct also: the role reaches corrections.role (WRITE_FORBIDDEN),
 * a reason of 1..reason_max bytes (WRITE_INVALID). Pure: no I/O but lookup.
 * err->code is SCHEMA_E_FORBIDDEN / SCHEMA_E_FROZEN / SCHEMA_E_INVALID. */
schema_write_t schema_judge_writes(const schema_t *s, const cJSON *change, const schema_view_t *rec,
                                   const schema_writer_t *w, schema_err_t *err);

/* After a correction, do the static guards (required, different, max, min)
 * of every transition into a state the record has passed, or is in, still
 * hold for fields? 0, or SCHEMA_E_INVALID naming the guard's field. A
 * correction cannot undo what a transition checked (a fine over the Art. 51
 * cap in a simple case). */
int schema_check_passed_guards(const schema_t *s, const char *procedure, const char *status,
                               const cJSON *fields, schema_err_t *err);

/* Fields the server stamps with the change's time on the transition from
 * `from` to `to` (served_at), as an array of names; NULL when none. */
const cJSON *schema_transition_stamps(const schema_t *s, const char *procedure, const char *from,
                                      const char *to);

/* The lifecycle judgement for a transition of the record `rec` (procedure,
 * status, fields, and the clocks the rights window reads) to `to`, by `role`.
 * - `to` == `current`                                  -> JUDGE_NOOP
 * - the record is closed (a terminal status) or voided -> JUDGE_CONFLICT: a
 *   person decides (a 返工 pushed after 结案 must not vanish as a no-op)
 * - allowed from `current` and role may take it, guards hold -> JUDGE_APPLY
 * - allowed from `current` but the role may not         -> JUDGE_ROLE
 * - allowed, role ok, a field guard fails               -> JUDGE_GUARD (err names the field,
 *   path "fields.<field>")
 * - `to` lies on the main path before `current`          -> JUDGE_NOOP
 * - `to` is reachable from a state the record already left (another branch,
 *   e.g. not_filed while filed)                          -> JUDGE_CONFLICT
 * - otherwise                                            -> JUDGE_FORBIDDEN
 * A stronger role may take any transition a weaker one may, except the ones
 * the schema marks exact (legal review: legal_reviewer only; supervisor only
 * when the record is not is_major). Admin counts as supervisor for lifecycle.
 * err is filled for JUDGE_ROLE, JUDGE_GUARD, JUDGE_FORBIDDEN. */
schema_judgement_t schema_judge_transition(const schema_t *s, const schema_view_t *rec, const char *to,
                                           schema_role_t role, schema_err_t *err);

/* A supervisor's resolution of a status conflict to `to` (one of the two
 * statuses in conflict): judged like the transition that leads there from
 * a state the record has been in (or any that leads there), with the same
 * role rule and guards -- a resolution cannot skip what a transition checks.
 * JUDGE_NOOP (already there), JUDGE_APPLY, JUDGE_ROLE, JUDGE_GUARD (err names
 * the field), JUDGE_FORBIDDEN (no transition leads to `to`). */
schema_judgement_t schema_judge_resolution(const schema_t *s, const schema_view_t *rec, const char *to,
                                           schema_role_t role, schema_err_t *err);

/* Has a record of the procedure in `status` reached `state` (is in it, or
 * passed it)? 1 or 0; 0 for a state the procedure lacks. */
int schema_status_reached(const schema_t *s, const char *procedure, const char *status, const char *state);
/* A procedure's states in the schema's order: count (0 for an unknown
 * procedure), name and label of the i-th (NULL out of range). */
int schema_state_count(const schema_t *s, const char *procedure);
const char *schema_state_name(const schema_t *s, const char *procedure, int i);
const char *schema_state_label(const schema_t *s, const char *procedure, int i);
/* The status on entering which a case number is given (filed, decided), or NULL. */
const char *schema_case_no_state(const schema_t *s, const char *procedure);

/* Working days (Art. 85): the date, as days since 1970-01-01 in China time,
 * of the n-th working day after the day of ms. */
int64_t schema_working_day_after(const schema_t *s, int64_t ms, int n);
/* The one RFC 3339 parser (date-time with offset, fractions to ms): 0 and
 * *ms (may be NULL) in UTC milliseconds, or -1 for anything else (Feb 30). */
int schema_parse_time(const char *s, int64_t *ms);
/* Days since 1970-01-01 of ms in China time (UTC+8). */
int64_t schema_china_day(int64_t ms);

/* ========================================================================= */
/* Deadlines and calendar                                                     */
/* ========================================================================= */
/* The "deadlines" table says, per deadline, which kind of day it counts
 * ("unit": days, working_days, hours) and how many. Working days come from a
 * calendar (schema/calendar.h) loaded with the schema: the folder calendar/
 * beside the schema file (schema_load_file), or any folder given to
 * schema_load_calendar_dir. A schema loaded from text (schema_load) has no
 * calendar until one is loaded. A year without a calendar counts Monday to
 * Friday; the first time a deadline meets such a year it is logged on
 * standard error and flagged (schema_calendar_fallbacks) -- the only state
 * of a schema_t that changes after load (atomic flags).
 *
 * Deadline rows are keyed by state names of the procedures (see the
 * schema's "deadlines"), so a changed lifecycle changes only data. */

/* Days (unit days or working_days) of deadline `name`, else -1. */
int schema_deadline_days(const schema_t *s, const char *name);
/* Hours (unit hours) of deadline `name`, else -1 (also when they come from
 * the case type, "hours_from_type"). */
int schema_deadline_hours(const schema_t *s, const char *name);
/* The unit of deadline `name` (CAL_UNIT_* of schema/calendar.h), or -1. */
int schema_deadline_unit(const schema_t *s, const char *name);

/* A record as the deadlines see it. entered: {status: ms} entry times of
 * statuses (the latest entry). fields: the record's fields. field_at: when a
 * field was last set (ms), -1 when unknown; may be NULL. */
typedef struct schema_deadline_record {
    const char *procedure, *status, *type;
    const cJSON *entered;
    const cJSON *fields;
    int64_t (*field_at)(const void *ctx, const char *field);
    const void *ctx;
} schema_deadline_record_t;

/* The earliest due time of the status deadlines running for the record: a
 * deadline runs from the entry time of its `from` status while the record's
 * status lies on its procedure's main path at or after `from` and before the
 * first of its `until` statuses, and none of its `until_set` fields is set; a
 * record in a closed status has none. An `extension` (decision_due: +30 days)
 * counts when its field is set, and was set before the unextended due time.
 * 0 with *due_ms and *by (the deadline's name, lives as long as s) set, or -1
 * when none runs. */
int schema_record_due(const schema_t *s, const schema_deadline_record_t *r, int64_t *due_ms, const char **by);
/* The due time of status deadline `name` (with a fixed number of days or
 * hours) counted from the record's entry time (r->entered) into its `from`
 * state, whether or not it still runs -- e.g. payment_due for 加处罚款 after
 * the case moved on. Only r->procedure and r->entered are read. 0, or -1 when
 * the deadline or the entry is missing. */
int schema_deadline_due(const schema_t *s, const char *name, const schema_deadline_record_t *r,
                        int64_t *due_ms);

/* 加处罚款 (行政强制法 Art. 45, 行政处罚法 Art. 72(1)): 3% of the fine for
 * each day past the payment deadline, never more than the fine itself.
 * Exact in fen: fine_fen * 3 * days / 100 rounded down (a fraction of a fen
 * is never charged), capped at fine_fen. 0, or -1 for a negative input or a
 * fine over 10^15 fen. Pure. */
int schema_late_fee_fen(int64_t fine_fen, int64_t days, int64_t *fee_fen);

/* The hours of a per-type deadline member (types[].dispose_within_hours) for
 * a type name, or -1 when the type has none. */
int schema_type_hours(const schema_t *s, const char *type, const char *member);

/* The server-set members ("server": true or "received") of the items of
 * append list `field`: fills names[i] and types[i] (the member's schema type:
 * "user" gets the writer's id, "time" the change's time, "string" the writing
 * device; "received" for a "server": "received" time member, which gets the
 * server's receive time)
 * for at most max of them and returns the count (0 for none or an unknown
 * field). Strings live as long as s. */
int schema_item_server_members(const schema_t *s, const char *field, const char **names, const char **types,
                               int max);

/* Personal data: a field with "mask" {visible_to: "unit" | role, members?}
 * is shown in full only to readers it names -- "unit": users of the record's
 * unit (admins of another unit included: masked); a role: that role and
 * stronger, of the record's unit (admins: any unit). Everyone else gets the
 * listed string members (every string member when none are listed) masked:
 * "13812345678" -> "138****5678", short or non-ASCII text -> its first
 * character and "**". schema_mask_fields masks a copy of a record's fields (or
 * a part of them: the record's unit is given apart) in place for a reader and returns how many fields it
 * masked. A reader who sees a field masked may not write it (schema_judge_writes: field_forbidden), so a
 * masked value never travels back as data. */
int schema_mask_fields(const schema_t *s, cJSON *fields, const char *record_unit, schema_role_t role,
                       const char *reader_unit);
int schema_field_masked_for(const schema_t *s, const char *field, schema_role_t role, int same_unit);

/* calendar_due() on the schema's calendar, noting a fallback year. */
int schema_due(const schema_t *s, int64_t start_ms, int n, int unit, int extend, int64_t *due_ms);

/* The same from files already in memory (a built-in copy): n files named
 * "YYYY.json" in ascending order, their bytes and lengths; `from` names
 * where they came from (kept as schema_calendar_dir). The signature
 * (schema_calendar_sig) is the one a folder of the same files gets. */
int schema_load_calendar_texts(schema_t *s, const char *from, int n, const char *const *names,
                               const char *const *texts, const size_t *lens, schema_err_t *err);

/* Loads every YYYY.json of dir into the schema's calendar (once per schema).
 * A file that is not a valid calendar fails the load: SCHEMA_E_LOAD with the
 * file named in err->message. */
int schema_load_calendar_dir(schema_t *s, const char *dir, schema_err_t *err);
/* The folder the calendar came from ("" when none) and a hex SHA-256 over
 * its files ("" when none): a changed calendar changes due times. */
const char *schema_calendar_dir(const schema_t *s);
const char *schema_calendar_sig(const schema_t *s);
/* 0: no calendar for the year; 1: one; 2: a provisional one. */
int schema_calendar_year_kind(const schema_t *s, int year);
/* Years held, ascending (returns the count, fills at most max). */
int schema_calendar_years(const schema_t *s, int *years, int max);
/* Years a deadline counted Monday..Friday since load (returns the count,
 * fills at most max, ascending). */
int schema_calendar_fallbacks(const schema_t *s, int *years, int max);
/* Flags (and logs once) the China year of now_ms when it has no calendar. */
void schema_calendar_check(const schema_t *s, int64_t now_ms);

/* Figures (/v1/stats): the state a figure counts in a procedure, or NULL.
 * figure: "accepted" (受理: general filed, digital dispatched), "closed"
 * (结案), "not_filed" (不予立案), "transferred" (移送), "decided", "paid",
 * "disposed" (处置: digital feedback). */
const char *schema_figure_state(const schema_t *s, const char *figure, const char *procedure);
/* The field a figure reads, dotted; NULL when the schema names none:
 * "fine" (fine_amount), "paid_at" (payment.paid_at), "reply_due",
 * "reply_at" (reply.at), "callback_at" (callback.at), "satisfied"
 * (callback.satisfied), "orders" (supervision), "replies"
 * (supervision_replies); and "dispose_hours", which names a member of the
 * types (dispose_within_hours), not a field. */
const char *schema_figure_field(const schema_t *s, const char *name);
/* 1 when the fields match figure "first_offence" ({field, equals}:
 * no_penalty_reason = first_offence), else 0 (also when the schema has none). */
int schema_figure_match(const schema_t *s, const char *figure, const cJSON *fields);

/* ========================================================================= */
/* Field value checks                                                         */
/* ========================================================================= */

/* The value rules of one field (length, digits, enum, range ...), whoever
 * writes it: no role, policy or lifecycle check. For values that come from
 * elsewhere than a change, e.g. a user's grids. Path is the field's name.
 * 0 or SCHEMA_E_INVALID. */
int schema_check_value(const schema_t *s, const char *field, const cJSON *value, schema_err_t *err);

const char *schema_strerror(int code);

/* ---- lifecycle migrations (the schema's "lifecycle") ------------------------------ */

/* The lifecycle version of this schema (1 when it names none). */
int schema_lifecycle_version(const schema_t *s);
/* Does a record of `procedure` in `status`, written under lifecycle
 * from_version, move on migration? 1 with *to (a state of the procedure)
 * and *stamp (a time field set to when it entered status, or NULL); 0. */
int schema_state_migration(const schema_t *s, int from_version, const char *procedure, const char *status,
                           const char **to, const char **stamp);

/* The weakest role that voids a record (撤销), resolves a conflict, makes a
 * correction (更正): the schema's "voiding", "conflict_resolution" and
 * "corrections" roles (supervisor when a schema names none). */
schema_role_t schema_void_role(const schema_t *s);
schema_role_t schema_resolve_role(const schema_t *s);
schema_role_t schema_correction_role(const schema_t *s);

#endif
