/* schema.c -- loads the case model (schema/casesync.json) and checks changes against it.
 *
 * The document is parsed once into plain structs (rules, procedures,
 * transitions, guards) whose strings point into the retained cJSON tree.
 * After schema_load() nothing is written but one set of atomic flags (the
 * years a deadline had to count without a working-day calendar, see
 * schema_calendar_fallbacks), so any number of threads may read one
 * schema_t; there is no global mutable state.
 *
 * Character rules are declared, not regular expressions: the schema says
 * "digits":[14,15] (grid codes) or "hex":64 (SHA-256), and this file
 * implements those few matchers. That keeps the validator free of a regex
 * engine and of the locale, and identical on a phone. Number rules use
 * integer conversions only, so the file needs no libm.
 */
#include "schema/schema.h"
#include "schema/calendar.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------- */
/* Limits and names                                                           */
/* ------------------------------------------------------------------------- */

#define SCHEMA_MAX_BYTES (1 << 20) /* a larger schema document is refused */
#define MAX_STATES 32              /* states of one procedure: a uint32_t mask */
#define MAX_MEMBERS 64             /* fields, or members of one object: a uint64_t mask */
#define ROLE_COUNT 5
#define STRING_MAX_BYTES 65536 /* PROTOCOL.md §1: a string field is at most 64 KiB */
#define ID_MAX_LEN 64          /* record ids, item ids, user ids */
#define RECORD_ID_MIN_LEN 8
#define MAX_SAFE_NUMBER 9007199254740992.0 /* 2^53: larger numbers lose integers */
#define MAX_DECIMALS 6
#define MAX_DEADLINE_DAYS 3650
#define PATH_CAP sizeof(((schema_err_t *)0)->path)
#define MSG_CAP sizeof(((schema_err_t *)0)->message)

/* Fields the engine itself relies on: the lifecycle and the type's code. */
#define FIELD_PROCEDURE "procedure"
#define FIELD_CATEGORY "category"

#define BIT(i) (1u << (i))
#define BIT64(i) ((uint64_t)1 << (i))

typedef enum {
    VT_STRING,
    VT_TEXT,
    VT_ENUM,
    VT_NUMBER,
    VT_INTEGER,
    VT_BOOL,
    VT_TIME,
    VT_USER,
    VT_OBJECT,
    VT_LIST,
    VT_COUNT
} vtype_t;

static const char *const vtype_names[VT_COUNT] = {"string", "text", "enum", "number", "integer",
                                                  "bool",   "time", "user", "object", "list"};
static const char *const role_names[ROLE_COUNT] = {"auxiliary", "officer", "legal_reviewer", "supervisor",
                                                   "admin"};
static const char *const policy_names[] = {"lww", "append", "union", "manual", "server", "immutable"};
#define POLICY_COUNT ((int)(sizeof(policy_names) / sizeof(policy_names[0])))

enum { OP_CREATE, OP_UPDATE, OP_TRANSITION, OP_VOID, OP_CORRECT, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"create", "update", "transition", "void", "correct"};

/* Where a rule sits: a top-level field, a member of an object, a list item. */
enum { LEVEL_FIELD, LEVEL_MEMBER, LEVEL_ITEM };

/* ------------------------------------------------------------------------- */
/* The compiled model                                                         */
/* ------------------------------------------------------------------------- */

/* A value rule: a field, an object member or a list item. Unset limits are
 * 0 / -1 as noted. Strings point into the schema's cJSON tree. */
typedef struct rule {
    const char *name;
    vtype_t type;
    int required; /* field: needed at create; member: needed in its object */
    int server;   /* member written by the server only */
    int policy;   /* fields only, else -1 */
    /* Write rules (fields only): see "write" in the schema's about. */
    schema_role_t write_create; /* weakest role at create; ROLE_NONE: any */
    schema_role_t write_update; /* weakest role afterwards; ROLE_NONE: any */
    int write_value;            /* WV_* */
    int differs_from;           /* field index, -1: none */
    const char *frozen_from;    /* state name, NULL: never frozen */
    const char *no_clear_from;  /* state name, NULL: may always be cleared */
    int masked;                 /* personal data: see schema_mask_fields */
    schema_role_t mask_role;    /* visible to this role and stronger (ROLE_NONE: unit rule only) */
    int mask_unit;              /* visible only to users of the record's unit */
    const cJSON *mask_members;  /* object: the members masked (NULL: every string member) */
    long min_len, max_len;      /* characters; max_len -1 when unset */
    long max_bytes;             /* 0: STRING_MAX_BYTES */
    int digits_min, digits_max; /* 0: no digits rule */
    int hex;                    /* 0: no hex rule, else exact count of lowercase hex digits */
    int type_code;              /* the value must be a code of types[] */
    int has_min, has_max;
    double min, max;
    int decimals;         /* -1: any */
    const cJSON *values;  /* enum: array of strings */
    struct rule *members; /* object */
    int nmembers;
    struct rule *items; /* list */
} rule_t;

/* What a write rule's "value" asks of the value written. */
enum { WV_ANY, WV_OWN_UNIT, WV_PATROLLED_GRID, WV_UNIT_OFFICER };
static const char *const write_value_names[] = {"any", "own_unit", "patrolled_grid", "unit_officer"};
#define WV_COUNT 4

/* A condition on the record's fields: field (dotted, "party.kind") equals, or
 * with negate does not equal, value; with unset, the field is not set.
 * field NULL means always true. */
typedef struct cond {
    const char *field;
    const cJSON *value;
    int negate;
    int unset;
} cond_t;

#define MAX_WHEN 4

typedef enum {
    GUARD_REQUIRED,
    GUARD_DIFFERENT,
    GUARD_MAX,
    GUARD_MIN,
    GUARD_DOCUMENT,
    GUARD_FORBID_WHEN,
    GUARD_RIGHTS_WINDOW,
    GUARD_HEARING_NOTICE,
    GUARD_REQUIRED_ANY,
    GUARD_DOCUMENT_PERIOD,
    GUARD_KIND_COUNT
} guard_kind_t;

typedef struct guard {
    guard_kind_t kind;
    const cJSON *fields; /* required, different: array of field names */
    const char *field;   /* max, min; hearing_notice: the "requested" bool field */
    const char *field2;  /* hearing_notice: the hearing time field */
    const char *doc;     /* document; rights_window: the waiver; hearing_notice: the notice */
    double limit;
    int days, hearing_days; /* rights_window, hearing_notice: working days */
    cond_t forbid;          /* forbid_when */
    const char *message;    /* forbid_when */
    cond_t when[MAX_WHEN];  /* all must hold for the guard to apply */
    int nwhen;
    const char *basis; /* legal basis quoted in messages, or NULL */
} guard_t;

typedef struct transition {
    uint32_t from; /* mask of state indexes */
    int to;
    unsigned roles;               /* mask of schema_role_t */
    int exact;                    /* no inheritance by stronger roles */
    cond_t role_when[ROLE_COUNT]; /* per listed role, an extra condition */
    guard_t *guards;
    int nguards;
    const cJSON *stamp; /* array of server time fields set on entering `to`, or NULL */
} transition_t;

typedef struct procedure {
    const char *name;
    const char *states[MAX_STATES];
    int nstates;
    int main_pos[MAX_STATES]; /* position on the main path, -1 off it */
    int initial;
    unsigned create_roles;
    uint32_t closed;
    int case_no_at; /* state index, -1 for none */
    transition_t *trans;
    int ntrans;
} procedure_t;

typedef struct type_entry {
    const char *code, *name;
    const cJSON *obj; /* the type's row, for per-type deadline hours */
} type_entry_t;

enum { DL_STATUS, DL_EVIDENCE, DL_FIELD };

/* A deadline of the "deadlines" table (see load_deadlines). */
typedef struct deadline {
    const char *name;
    int kind; /* DL_STATUS, DL_EVIDENCE */
    int n;    /* days or hours; -1 when per_type gives them */
    calendar_unit_t unit;
    int extend_rest;        /* days: a last day off moves to the next working day */
    const char **from;      /* per procedure index: the state it runs from, or NULL */
    const cJSON *until;     /* states that end it (array of strings) */
    const cJSON *until_set; /* fields whose being set ends it, or NULL */
    int ext_days;           /* extension, 0 for none */
    const char *ext_field;  /* the field a supervisor sets to extend it */
    const char *per_type;   /* member of the type's row holding the hours, or NULL */
    const char *at_field;   /* DL_FIELD: the time field that is the due time */
    cond_t when[MAX_WHEN];  /* all must hold for the deadline to run */
    int nwhen;
    int start_from; /* -1, or the deadline whose due time starts this one (court_due) */
    int months;     /* with start_from: calendar months (民法典 Art. 202), else 0 */
} deadline_t;

#define FIGURE_COUNT 7
static const char *const figure_names[FIGURE_COUNT] = {"accepted", "closed", "not_filed", "transferred",
                                                       "decided",  "paid",   "disposed"};
/* Figures that name a field (dotted) or, for dispose_hours, a type member. */
#define FIGURE_FIELDS 9
static const char *const figure_field_names[FIGURE_FIELDS] = {"fine",     "paid_at",     "reply_due",
                                                              "reply_at", "callback_at", "satisfied",
                                                              "orders",   "replies",     "dispose_hours"};
#define FALLBACK_WORDS 8 /* years CAL_YEAR_MIN .. +511 tracked for the fallback flag */

struct schema {
    cJSON *doc;
    char *text;
    size_t text_len;
    char etag[2 * 32 + 3];
    int version;
    rule_t fields[MAX_MEMBERS];
    int nfields;
    procedure_t *procs;
    int nprocs;
    type_entry_t *types;
    int ntypes;
    deadline_t *deadlines;
    int ndeadlines;
    /* Write rules beyond the fields: closed records, corrections, hearing rights. */
    const cJSON *closed_append; /* list fields a closed record still takes */
    schema_role_t closed_role;
    schema_role_t correction_role;
    long correction_reason_max;
    double hearing_fine_person, hearing_fine_org; /* 0: no amount gives hearing rights */
    const cJSON *hearing_sanctions;               /* array of sanction values, or NULL */
    /* figures: per figure, per procedure index, the state counted, or NULL */
    const char **figures[FIGURE_COUNT];
    const char *figure_fields[FIGURE_FIELDS];
    const char *first_offence_field, *first_offence_value; /* figures.first_offence */
    calendar_t *calendar;
    char calendar_dir[1024]; /* the folder the calendar came from; "" for none */
    char calendar_sig[2 * 32 + 1];
    uint64_t fallback[FALLBACK_WORDS]; /* atomic: years counted Monday..Friday */
};

/* ------------------------------------------------------------------------- */
/* Small helpers                                                              */
/* ------------------------------------------------------------------------- */

static const cJSON *get(const cJSON *o, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *str_of(const cJSON *v) {
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int name_index(const char *const *names, int n, const char *name) {
    for (int i = 0; name && i < n; i++)
        if (strcmp(names[i], name) == 0) return i;
    return -1;
}

static void err_clear(schema_err_t *err) {
    if (err) {
        err->code = SCHEMA_OK;
        err->message[0] = '\0';
        err->path[0] = '\0';
    }
}

/* Fills err (when given) and returns code. */
static int fail(schema_err_t *err, int code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(schema_err_t *err, int code, const char *path, const char *fmt, ...) {
    if (err) {
        va_list ap;
        err->code = code;
        if (snprintf(err->path, PATH_CAP, "%s", path ? path : "") < 0) err->path[0] = '\0';
        va_start(ap, fmt);
        if (vsnprintf(err->message, MSG_CAP, fmt, ap) < 0) err->message[0] = '\0';
        va_end(ap);
    }
    return code;
}

/* A load error: the path is inside the schema document. */
#define load_fail(err, path, ...) fail((err), SCHEMA_E_LOAD, (path), "schema: " __VA_ARGS__)

static void path_key(char out[PATH_CAP], const char *base, const char *key) {
    if (snprintf(out, PATH_CAP, "%s%s%s", base, *base ? "." : "", key) < 0) out[0] = '\0';
}

static void path_idx(char out[PATH_CAP], const char *base, int i) {
    if (snprintf(out, PATH_CAP, "%s[%d]", base, i) < 0) out[0] = '\0';
}

/* The last name of a path, for messages: "set.location.lat" -> "lat". */
static const char *leaf(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

static int is_integral(double v) {
    return v >= -MAX_SAFE_NUMBER && v <= MAX_SAFE_NUMBER && v == (double)(long long)v;
}

/* An integer JSON number within lo..hi into *out; -1 otherwise. */
static int get_long(const cJSON *v, long lo, long hi, long *out) {
    if (!cJSON_IsNumber(v) || !is_integral(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi)
        return -1;
    *out = (long)v->valuedouble;
    return 0;
}

/* Does v have at most d decimals? v scaled and rounded must give v back
 * exactly (division is correctly rounded, as is strtod); magnitudes where
 * doubles are all integers after scaling pass. */
static int has_decimals(double v, int d) {
    static const double scale[MAX_DECIMALS + 1] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
    double x = v * scale[d];
    if (x >= MAX_SAFE_NUMBER || x <= -MAX_SAFE_NUMBER) return 1;
    long long n = (long long)(x < 0 ? x - 0.5 : x + 0.5);
    return (double)n / scale[d] == v;
}

/* Characters of valid UTF-8, or -1 (overlong forms and surrogates refused). */
static long utf8_chars(const unsigned char *p, size_t n) {
    long chars = 0;
    for (size_t i = 0; i < n; chars++) {
        unsigned c = p[i], cp, min;
        size_t len;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return -1;
        }
        if (len > n - i) return -1;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return -1;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
        i += len;
    }
    return chars;
}

/* Reads exactly n ASCII digits; stops at the first other byte (also NUL). */
static int read_digits(const char *p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

static int days_in_month(int y, int m) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* RFC 3339 date-time: 2026-11-22T08:15:30[.123](Z|+08:00). */
/* The one RFC 3339 parser: 0 and *ms (UTC milliseconds, fractions past ms
 * cut), or -1. Leap seconds (:60) count as :59.999. */
int schema_parse_time(const char *s, int64_t *ms) {
    int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    long frac = 0;
    if (!s || read_digits(s, 4, &y) || s[4] != '-' || read_digits(s + 5, 2, &mo) || s[7] != '-' ||
        read_digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || read_digits(s + 11, 2, &h) ||
        s[13] != ':' || read_digits(s + 14, 2, &mi) || s[16] != ':' || read_digits(s + 17, 2, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60) return -1;
    const char *p = s + 19;
    if (*p == '.') {
        const char *q = ++p;
        while (*p >= '0' && *p <= '9') {
            if (p - q < 3) frac = frac * 10 + (*p - '0');
            p++;
        }
        if (p == q || p - q > 9) return -1;
        for (long k = p - q; k < 3; k++)
            frac *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '-' ? -1 : 1;
        if (read_digits(p + 1, 2, &oh) || p[3] != ':' || read_digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        p += 6;
    } else {
        return -1;
    }
    if (*p != '\0') return -1;
    if (sec == 60) sec = 59, frac = 999;
    /* days from civil (proleptic Gregorian), Howard Hinnant's algorithm */
    int yy = y - (mo <= 2);
    int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - (int64_t)sign * (oh * 3600 + om * 60);
    if (ms) *ms = secs * 1000 + frac;
    return 0;
}

static int is_rfc3339(const char *s) {
    return schema_parse_time(s, NULL) == 0;
}

static int record_id_ok(const char *id) {
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        if (n >= ID_MAX_LEN) return 0;
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
              c == '-'))
            return 0;
    }
    return n >= RECORD_ID_MIN_LEN;
}

/* A value counts as set when it is present, not null and not "". */
static int is_set(const cJSON *v) {
    return v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && v->valuestring[0] == '\0');
}

/* Looks up a dotted path ("party.kind") in an object of fields; NULL if absent. */
static const cJSON *value_at(const cJSON *fields, const char *dotted) {
    const cJSON *v = fields;
    const char *p = dotted;
    while (v && cJSON_IsObject(v)) {
        size_t n = strcspn(p, ".");
        const cJSON *c = v->child;
        while (c && !(c->string && strlen(c->string) == n && memcmp(c->string, p, n) == 0))
            c = c->next;
        if (!c || p[n] == '\0') return c;
        v = c, p += n + 1;
    }
    return NULL;
}

/* A scalar for messages: strings as they are, numbers, true/false/null. */
static const char *scalar_text(const cJSON *v, char *buf, size_t cap) {
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsNumber(v)) {
        if (snprintf(buf, cap, "%.15g", v->valuedouble) < 0) buf[0] = '\0';
        return buf;
    }
    if (cJSON_IsTrue(v)) return "true";
    if (cJSON_IsFalse(v)) return "false";
    if (cJSON_IsNull(v)) return "null";
    return "a value";
}

static int field_index(const schema_t *s, const char *name) {
    for (int i = 0; name && i < s->nfields; i++)
        if (strcmp(s->fields[i].name, name) == 0) return i;
    return -1;
}

static int member_index(const rule_t *r, const char *name) {
    for (int i = 0; i < r->nmembers; i++)
        if (strcmp(r->members[i].name, name) == 0) return i;
    return -1;
}

/* The rule of a dotted field path ("party.kind"), or NULL. */
static const rule_t *rule_at(const schema_t *s, const char *dotted) {
    char seg[128];
    const rule_t *r = NULL;
    const char *p = dotted;
    for (;;) {
        size_t n = strcspn(p, ".");
        if (n >= sizeof(seg)) return NULL;
        memcpy(seg, p, n);
        seg[n] = '\0';
        if (!r) {
            int i = field_index(s, seg);
            r = i < 0 ? NULL : &s->fields[i];
        } else {
            int i = r->type == VT_OBJECT ? member_index(r, seg) : -1;
            r = i < 0 ? NULL : &r->members[i];
        }
        if (!r || p[n] == '\0') return r;
        p += n + 1;
    }
}

static const procedure_t *proc_find(const schema_t *s, const char *name) {
    for (int i = 0; s && name && i < s->nprocs; i++)
        if (strcmp(s->procs[i].name, name) == 0) return &s->procs[i];
    return NULL;
}

static int state_index(const procedure_t *p, const char *name) {
    return name_index(p->states, p->nstates, name);
}

/* ------------------------------------------------------------------------- */
/* Loading: rules                                                             */
/* ------------------------------------------------------------------------- */

/* Refuses keys outside the vocabulary (a typo must not be ignored silently)
 * and duplicate keys (cJSON keeps both; the second would be invisible). */
static int only_keys(const cJSON *o, const char *const *keys, const char *path, schema_err_t *err) {
    for (const cJSON *c = o->child; c; c = c->next) {
        char sub[PATH_CAP];
        int i = 0;
        path_key(sub, path, c->string);
        while (keys[i] && strcmp(keys[i], c->string) != 0)
            i++;
        if (!keys[i]) return load_fail(err, sub, "%s: unknown key", sub);
        for (const cJSON *d = o->child; d != c; d = d->next)
            if (strcmp(d->string, c->string) == 0) return load_fail(err, sub, "%s: duplicate key", sub);
    }
    return 0;
}

/* Refuses key when present and the rule's type is not one it applies to. */
static int rule_key_applies(const cJSON *def, const char *key, int applies, const char *path,
                            schema_err_t *err) {
    char sub[PATH_CAP];
    if (!get(def, key) || applies) return 0;
    path_key(sub, path, key);
    return load_fail(err, sub, "%s: does not apply to this type", sub);
}

static const char *const rule_keys[] = {
    "type",       "required",     "server", "policy", "write",     "write_min_role",
    "values",     "value_labels", "min",    "max",    "decimals",  "min_length",
    "max_length", "max_bytes",    "digits", "hex",    "type_code", "members",
    "items",      "default",      "label",  "note",   "scope_key", "unit",
    "format",     "mask",         NULL};
static const char *const mask_keys[] = {"visible_to", "members", "note", NULL};

static void rule_free(rule_t *r) {
    for (int i = 0; i < r->nmembers; i++)
        rule_free(&r->members[i]);
    free(r->members);
    if (r->items) rule_free(r->items);
    free(r->items);
}

/* Compiles one rule definition at path into *r (zeroed by the caller). On
 * failure *r may own partial allocations: the caller frees it with rule_free. */
static int load_rule(const cJSON *def, const char *name, int level, const char *path, rule_t *r,
                     schema_err_t *err) {
    char sub[PATH_CAP];
    const cJSON *v;
    long n;
    int rc, t;

    r->name = name, r->policy = -1, r->max_len = -1, r->decimals = -1;
    r->write_create = r->write_update = ROLE_NONE, r->differs_from = -1;
    if (!cJSON_IsObject(def)) return load_fail(err, path, "%s: must be an object", path);
    if ((rc = only_keys(def, rule_keys, path, err))) return rc;
    path_key(sub, path, "type");
    if ((t = name_index(vtype_names, VT_COUNT, str_of(get(def, "type")))) < 0)
        return load_fail(err, sub, "%s: unknown type", sub);
    r->type = (vtype_t)t;
    int stringish = t == VT_STRING || t == VT_TEXT, numeric = t == VT_NUMBER || t == VT_INTEGER;
    if ((rc = rule_key_applies(def, "values", t == VT_ENUM, path, err)) ||
        (rc = rule_key_applies(def, "value_labels", t == VT_ENUM, path, err)) ||
        (rc = rule_key_applies(def, "min", numeric, path, err)) ||
        (rc = rule_key_applies(def, "max", numeric, path, err)) ||
        (rc = rule_key_applies(def, "decimals", t == VT_NUMBER, path, err)) ||
        (rc = rule_key_applies(def, "min_length", t == VT_STRING, path, err)) ||
        (rc = rule_key_applies(def, "max_length", t == VT_STRING, path, err)) ||
        (rc = rule_key_applies(def, "max_bytes", stringish, path, err)) ||
        (rc = rule_key_applies(def, "digits", t == VT_STRING, path, err)) ||
        (rc = rule_key_applies(def, "hex", t == VT_STRING, path, err)) ||
        (rc = rule_key_applies(def, "type_code", t == VT_STRING, path, err)) ||
        (rc = rule_key_applies(def, "members", t == VT_OBJECT, path, err)) ||
        (rc = rule_key_applies(def, "items", t == VT_LIST, path, err)) ||
        (rc = rule_key_applies(def, "policy", level == LEVEL_FIELD, path, err)) ||
        (rc = rule_key_applies(def, "write", level == LEVEL_FIELD, path, err)) ||
        (rc = rule_key_applies(def, "write_min_role", level == LEVEL_FIELD, path, err)) ||
        (rc = rule_key_applies(def, "server", level == LEVEL_MEMBER, path, err)) ||
        (rc = rule_key_applies(def, "required", level != LEVEL_ITEM, path, err)))
        return rc;

    if ((v = get(def, "required"))) {
        path_key(sub, path, "required");
        if (level == LEVEL_FIELD) {
            /* "guard" only documents that a lifecycle guard reads the field. */
            if (!str_of(v) || (strcmp(v->valuestring, "create") && strcmp(v->valuestring, "guard")))
                return load_fail(err, sub, "%s: must be \"create\" or \"guard\"", sub);
            r->required = strcmp(v->valuestring, "create") == 0;
        } else {
            if (!cJSON_IsBool(v)) return load_fail(err, sub, "%s: must be true or false", sub);
            r->required = cJSON_IsTrue(v);
        }
    }
    if ((v = get(def, "server"))) {
        /* "received": a time member stamped with the server's receive time. */
        int received = cJSON_IsString(v) && strcmp(v->valuestring, "received") == 0;
        if (!cJSON_IsBool(v) && !received)
            return load_fail(err, path, "%s.server: must be true, false or \"received\"", path);
        if (received && r->type != VT_TIME)
            return load_fail(err, path, "%s.server: \"received\" is for time members", path);
        r->server = received ? 2 : cJSON_IsTrue(v);
    }
    if ((v = get(def, "mask"))) {
        /* {"visible_to": "unit" | a role name, "members"?: [...]} */
        const char *to = str_of(get(v, "visible_to"));
        path_key(sub, path, "mask");
        if (level != LEVEL_FIELD || !cJSON_IsObject(v) || only_keys(v, mask_keys, sub, err) || !to)
            return load_fail(err, sub, "%s: {visible_to: unit or a role, members?} on a field", sub);
        r->masked = 1;
        r->mask_unit = strcmp(to, "unit") == 0;
        r->mask_role = r->mask_unit ? ROLE_NONE : schema_role_parse(to);
        if (!r->mask_unit && r->mask_role == ROLE_NONE)
            return load_fail(err, sub, "%s.visible_to: unit or a role", sub);
        const cJSON *m = get(v, "members");
        if (m && (!cJSON_IsArray(m) || !m->child))
            return load_fail(err, sub, "%s.members: a list of member names", sub);
        r->mask_members = m;
    }
    if (level == LEVEL_FIELD) {
        path_key(sub, path, "policy");
        if ((r->policy = name_index(policy_names, POLICY_COUNT, str_of(get(def, "policy")))) < 0)
            return load_fail(err, sub, "%s: unknown or missing policy", sub);
    }
    if ((v = get(def, "write_min_role"))) {
        /* the baseline's form: one role for create and update alike */
        path_key(sub, path, "write_min_role");
        if (get(def, "write")) return load_fail(err, sub, "%s: give write or write_min_role, not both", sub);
        if ((r->write_create = schema_role_parse(str_of(v))) == ROLE_NONE)
            return load_fail(err, sub, "%s: unknown role", sub);
        r->write_update = r->write_create;
    }
    if (t == VT_ENUM) {
        path_key(sub, path, "values");
        v = get(def, "values");
        if (!cJSON_IsArray(v) || !v->child) return load_fail(err, sub, "%s: needs a list of values", sub);
        for (const cJSON *c = v->child; c; c = c->next) {
            if (!str_of(c)) return load_fail(err, sub, "%s: values must be strings", sub);
            for (const cJSON *d = v->child; d != c; d = d->next)
                if (strcmp(d->valuestring, c->valuestring) == 0)
                    return load_fail(err, sub, "%s: duplicate value %s", sub, c->valuestring);
        }
        r->values = v;
    }
    if ((v = get(def, "min"))) {
        if (!cJSON_IsNumber(v)) return load_fail(err, path, "%s.min: must be a number", path);
        r->has_min = 1, r->min = v->valuedouble;
    }
    if ((v = get(def, "max"))) {
        if (!cJSON_IsNumber(v)) return load_fail(err, path, "%s.max: must be a number", path);
        r->has_max = 1, r->max = v->valuedouble;
    }
    if ((v = get(def, "decimals"))) {
        if (get_long(v, 0, MAX_DECIMALS, &n))
            return load_fail(err, path, "%s.decimals: must be 0..%d", path, MAX_DECIMALS);
        r->decimals = (int)n;
    }
    if ((v = get(def, "min_length"))) {
        if (get_long(v, 0, STRING_MAX_BYTES, &n))
            return load_fail(err, path, "%s.min_length: bad length", path);
        r->min_len = n;
    }
    if ((v = get(def, "max_length"))) {
        if (get_long(v, 1, STRING_MAX_BYTES, &n))
            return load_fail(err, path, "%s.max_length: bad length", path);
        r->max_len = n;
    }
    if ((v = get(def, "max_bytes"))) {
        if (get_long(v, 1, STRING_MAX_BYTES, &n))
            return load_fail(err, path, "%s.max_bytes: must be 1..%d", path, STRING_MAX_BYTES);
        r->max_bytes = n;
    }
    if ((v = get(def, "digits"))) {
        long lo, hi;
        if (cJSON_GetArraySize(v) != 2 || get_long(v->child, 1, ID_MAX_LEN, &lo) ||
            get_long(v->child->next, lo, ID_MAX_LEN, &hi))
            return load_fail(err, path, "%s.digits: must be [min, max]", path);
        r->digits_min = (int)lo, r->digits_max = (int)hi;
    }
    if ((v = get(def, "hex"))) {
        if (get_long(v, 1, 2 * ID_MAX_LEN, &n)) return load_fail(err, path, "%s.hex: bad length", path);
        r->hex = (int)n;
    }
    if ((v = get(def, "type_code"))) {
        if (!cJSON_IsBool(v)) return load_fail(err, path, "%s.type_code: must be true or false", path);
        r->type_code = cJSON_IsTrue(v);
    }
    if (t == VT_OBJECT) {
        v = get(def, "members");
        int count = cJSON_GetArraySize(v);
        path_key(sub, path, "members");
        if (!cJSON_IsObject(v) || count == 0 || count > MAX_MEMBERS)
            return load_fail(err, sub, "%s: needs 1..%d members", sub, MAX_MEMBERS);
        if (!(r->members = calloc((size_t)count, sizeof(*r->members))))
            return fail(err, SCHEMA_E_NOMEM, path, "out of memory");
        for (const cJSON *c = v->child; c; c = c->next) {
            char msub[PATH_CAP];
            path_key(msub, sub, c->string);
            if (member_index(r, c->string) >= 0) return load_fail(err, msub, "%s: duplicate member", msub);
            rc = load_rule(c, c->string, LEVEL_MEMBER, msub, &r->members[r->nmembers++], err);
            if (rc) return rc;
        }
    }
    if (t == VT_LIST) {
        path_key(sub, path, "items");
        if (!get(def, "items")) return load_fail(err, sub, "%s: a list needs items", sub);
        if (!(r->items = calloc(1, sizeof(*r->items))))
            return fail(err, SCHEMA_E_NOMEM, path, "out of memory");
        if ((rc = load_rule(get(def, "items"), name, LEVEL_ITEM, sub, r->items, err))) return rc;
    }
    return 0;
}

/* Loads "fields" and checks what the engine relies on: append lists hold
 * objects with an id, union lists hold strings. */
static int load_fields(schema_t *s, const cJSON *fields, schema_err_t *err) {
    int rc;
    if (!cJSON_IsObject(fields) || !fields->child || cJSON_GetArraySize(fields) > MAX_MEMBERS)
        return load_fail(err, "fields", "fields: needs 1..%d fields", MAX_MEMBERS);
    for (const cJSON *c = fields->child; c; c = c->next) {
        char path[PATH_CAP];
        path_key(path, "fields", c->string);
        if (field_index(s, c->string) >= 0) return load_fail(err, path, "%s: duplicate field", path);
        rule_t *r = &s->fields[s->nfields++];
        if ((rc = load_rule(c, c->string, LEVEL_FIELD, path, r, err))) return rc;
        if (r->policy == POLICY_APPEND &&
            (r->type != VT_LIST || r->items->type != VT_OBJECT || member_index(r->items, "id") < 0))
            return load_fail(err, path, "%s: an append field is a list of objects with an id", path);
        if (r->policy == POLICY_UNION && (r->type != VT_LIST || r->items->type != VT_STRING))
            return load_fail(err, path, "%s: a union field is a list of strings", path);
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Loading: procedures, guards, types, deadlines                              */
/* ------------------------------------------------------------------------- */

/* A mask of role names from a non-empty array. */
static int load_roles(const cJSON *v, const char *path, unsigned *mask, schema_err_t *err) {
    *mask = 0;
    if (!cJSON_IsArray(v) || !v->child) return load_fail(err, path, "%s: needs a list of roles", path);
    for (const cJSON *c = v->child; c; c = c->next) {
        schema_role_t r = schema_role_parse(str_of(c));
        if (r == ROLE_NONE) return load_fail(err, path, "%s: unknown role", path);
        *mask |= BIT(r);
    }
    return 0;
}

/* A mask of state names from a non-empty array (when nonempty is set). */
static int load_states(const procedure_t *p, const cJSON *v, int nonempty, const char *path, uint32_t *mask,
                       schema_err_t *err) {
    *mask = 0;
    if (!cJSON_IsArray(v) || (nonempty && !v->child))
        return load_fail(err, path, "%s: needs a list of states", path);
    for (const cJSON *c = v->child; c; c = c->next) {
        int i = state_index(p, str_of(c));
        if (i < 0) return load_fail(err, path, "%s: unknown state %s", path, str_of(c) ? c->valuestring : "");
        *mask |= BIT(i);
    }
    return 0;
}

static const char *const cond_keys[] = {"field", "equals", "not_equals", "unset", NULL};

static int load_cond(const schema_t *s, const cJSON *v, const char *path, cond_t *c, schema_err_t *err) {
    int rc;
    if (!cJSON_IsObject(v)) return load_fail(err, path, "%s: must be an object", path);
    if ((rc = only_keys(v, cond_keys, path, err))) return rc;
    c->field = str_of(get(v, "field"));
    if (!c->field || !rule_at(s, c->field)) return load_fail(err, path, "%s: unknown field", path);
    if (get(v, "unset")) {
        if (!cJSON_IsTrue(get(v, "unset")) || get(v, "equals") || get(v, "not_equals"))
            return load_fail(err, path, "%s: unset must be true and alone", path);
        c->unset = 1;
        return 0;
    }
    c->value = get(v, "equals");
    if (!c->value) c->value = get(v, "not_equals"), c->negate = 1;
    if (!c->value || (get(v, "equals") && get(v, "not_equals")))
        return load_fail(err, path, "%s: needs one of equals, not_equals, unset", path);
    return 0;
}

/* "when": one condition or a list of at most MAX_WHEN that must all hold. */
static int load_when(const schema_t *s, const cJSON *v, const char *path, cond_t *when, int *n,
                     schema_err_t *err) {
    int rc;
    *n = 0;
    if (cJSON_IsObject(v)) {
        if ((rc = load_cond(s, v, path, &when[0], err))) return rc;
        *n = 1;
        return 0;
    }
    if (!cJSON_IsArray(v) || !v->child || cJSON_GetArraySize(v) > MAX_WHEN)
        return load_fail(err, path, "%s: must be a condition or a list of 1..%d", path, MAX_WHEN);
    for (const cJSON *c = v->child; c; c = c->next) {
        char sub[PATH_CAP];
        path_idx(sub, path, *n);
        if ((rc = load_cond(s, c, sub, &when[*n], err))) return rc;
        (*n)++;
    }
    return 0;
}

static const char *const guard_keys[] = {"required",     "different",       "max",           "min",
                                         "document",     "forbid_when",     "rights_window", "hearing_notice",
                                         "required_any", "document_period", "message",       "when",
                                         "basis",        "label",           "note",          NULL};
static const char *const guard_kinds[GUARD_KIND_COUNT] = {
    "required",     "different",      "max",           "min",
    "document",     "forbid_when",    "rights_window", "hearing_notice",
    "required_any", "document_period"};
static const char *const period_keys[] = {"document", "working_days", NULL};
static const char *const bound_keys[] = {"field", "value", "when", NULL};
static const char *const window_keys[] = {"working_days", "hearing_working_days", "waiver", NULL};
static const char *const notice_keys[] = {"requested", "at", "document", "working_days", NULL};

/* A field name that must exist, with a given type (VT_COUNT: any). */
static int load_field_ref(const schema_t *s, const cJSON *v, vtype_t type, const char *path, const char **out,
                          schema_err_t *err) {
    const rule_t *r = (*out = str_of(v)) ? rule_at(s, *out) : NULL;
    if (!r || (type != VT_COUNT && r->type != type))
        return load_fail(err, path, "%s: must name a %s field", path,
                         type == VT_COUNT ? "known" : vtype_names[type]);
    return 0;
}

static int load_days(const cJSON *v, const char *path, int *out, schema_err_t *err) {
    long n;
    if (get_long(v, 1, MAX_DEADLINE_DAYS, &n))
        return load_fail(err, path, "%s: must be 1..%d", path, MAX_DEADLINE_DAYS);
    *out = (int)n;
    return 0;
}

/* body[key] as a day count, path sub.key in errors. */
static int load_days_key(const cJSON *body, const char *key, const char *sub, int *out, schema_err_t *err) {
    char x[PATH_CAP];
    path_key(x, sub, key);
    return load_days(get(body, key), x, out, err);
}

/* body[key] as a documents doc_type. */
static int load_doc_key(const cJSON *body, const char *key, const char *sub, const char **out,
                        schema_err_t *err) {
    if (!(*out = str_of(get(body, key))) || !**out)
        return load_fail(err, sub, "%s.%s: must name a doc_type", sub, key);
    return 0;
}

static int load_guard(const schema_t *s, const cJSON *v, const char *path, guard_t *g, schema_err_t *err) {
    char sub[PATH_CAP], x[PATH_CAP];
    const cJSON *body = NULL;
    int rc, nkinds = 0;

    if (!cJSON_IsObject(v)) return load_fail(err, path, "%s: must be an object", path);
    if ((rc = only_keys(v, guard_keys, path, err))) return rc;
    for (int k = 0; k < GUARD_KIND_COUNT; k++)
        if (get(v, guard_kinds[k])) g->kind = (guard_kind_t)k, body = get(v, guard_kinds[k]), nkinds++;
    if (nkinds != 1) return load_fail(err, path, "%s: needs exactly one guard kind", path);
    path_key(sub, path, guard_kinds[g->kind]);
    if (get(v, "basis") && !(g->basis = str_of(get(v, "basis"))))
        return load_fail(err, path, "%s.basis: must be a string", path);
    if (get(v, "message") && (g->kind != GUARD_FORBID_WHEN || !(g->message = str_of(get(v, "message")))))
        return load_fail(err, path, "%s.message: a string, for forbid_when only", path);
    if (get(v, "when")) {
        path_key(x, path, "when");
        if ((rc = load_when(s, get(v, "when"), x, g->when, &g->nwhen, err))) return rc;
    }
    switch (g->kind) {
    case GUARD_REQUIRED:
    case GUARD_REQUIRED_ANY:
    case GUARD_DIFFERENT:
        if (!cJSON_IsArray(body) || cJSON_GetArraySize(body) < (g->kind == GUARD_DIFFERENT ? 2 : 1))
            return load_fail(err, sub, "%s: needs a list of fields", sub);
        for (const cJSON *c = body->child; c; c = c->next)
            if (!str_of(c) || !rule_at(s, c->valuestring))
                return load_fail(err, sub, "%s: unknown field", sub);
        g->fields = body;
        return 0;
    case GUARD_DOCUMENT:
        if (!(g->doc = str_of(body)) || !*g->doc) return load_fail(err, sub, "%s: must name a doc_type", sub);
        return 0;
    case GUARD_FORBID_WHEN:
        if (!g->message) return load_fail(err, path, "%s: forbid_when needs a message", path);
        return load_cond(s, body, sub, &g->forbid, err);
    case GUARD_RIGHTS_WINDOW:
        if (!cJSON_IsObject(body)) return load_fail(err, sub, "%s: must be an object", sub);
        if ((rc = only_keys(body, window_keys, sub, err))) return rc;
        if ((rc = load_days_key(body, "working_days", sub, &g->days, err)) ||
            (rc = load_days_key(body, "hearing_working_days", sub, &g->hearing_days, err)))
            return rc;
        return load_doc_key(body, "waiver", sub, &g->doc, err);
    case GUARD_HEARING_NOTICE:
        if (!cJSON_IsObject(body)) return load_fail(err, sub, "%s: must be an object", sub);
        if ((rc = only_keys(body, notice_keys, sub, err))) return rc;
        path_key(x, sub, "requested");
        if ((rc = load_field_ref(s, get(body, "requested"), VT_BOOL, x, &g->field, err))) return rc;
        path_key(x, sub, "at");
        if ((rc = load_field_ref(s, get(body, "at"), VT_TIME, x, &g->field2, err))) return rc;
        if ((rc = load_days_key(body, "working_days", sub, &g->days, err))) return rc;
        return load_doc_key(body, "document", sub, &g->doc, err);
    case GUARD_DOCUMENT_PERIOD:
        if (!cJSON_IsObject(body)) return load_fail(err, sub, "%s: must be an object", sub);
        if ((rc = only_keys(body, period_keys, sub, err))) return rc;
        if ((rc = load_days_key(body, "working_days", sub, &g->days, err))) return rc;
        return load_doc_key(body, "document", sub, &g->doc, err);
    default: break;
    }
    if (!cJSON_IsObject(body)) return load_fail(err, sub, "%s: must be an object", sub);
    if ((rc = only_keys(body, bound_keys, sub, err))) return rc;
    const rule_t *r = (g->field = str_of(get(body, "field"))) ? rule_at(s, g->field) : NULL;
    if (!r || (r->type != VT_NUMBER && r->type != VT_INTEGER))
        return load_fail(err, sub, "%s.field: must name a number field", sub);
    if (!cJSON_IsNumber(get(body, "value"))) return load_fail(err, sub, "%s.value: must be a number", sub);
    g->limit = get(body, "value")->valuedouble;
    if (get(body, "when")) {
        if (g->nwhen) return load_fail(err, sub, "%s: when is given twice", sub);
        path_key(x, sub, "when");
        if ((rc = load_when(s, get(body, "when"), x, g->when, &g->nwhen, err))) return rc;
    }
    return 0;
}

static const char *const transition_keys[] = {"from",   "to",    "roles", "exact", "role_when",
                                              "guards", "stamp", "label", "note",  NULL};

static int load_transition(const schema_t *s, procedure_t *p, int k, const cJSON *v, const char *path,
                           schema_err_t *err) {
    transition_t *t = &p->trans[k];
    char sub[PATH_CAP];
    const cJSON *x;
    int rc;

    if (!cJSON_IsObject(v)) return load_fail(err, path, "%s: must be an object", path);
    if ((rc = only_keys(v, transition_keys, path, err))) return rc;
    path_key(sub, path, "from");
    if ((rc = load_states(p, get(v, "from"), 1, sub, &t->from, err))) return rc;
    path_key(sub, path, "to");
    if ((t->to = state_index(p, str_of(get(v, "to")))) < 0)
        return load_fail(err, sub, "%s: unknown state", sub);
    if (t->from & BIT(t->to)) return load_fail(err, sub, "%s: a state cannot move to itself", sub);
    for (int j = 0; j < k; j++)
        if (p->trans[j].to == t->to && (p->trans[j].from & t->from))
            return load_fail(err, sub, "%s: overlaps an earlier transition", sub);
    path_key(sub, path, "roles");
    if ((rc = load_roles(get(v, "roles"), sub, &t->roles, err))) return rc;
    if ((x = get(v, "exact"))) {
        if (!cJSON_IsBool(x)) return load_fail(err, path, "%s.exact: must be true or false", path);
        t->exact = cJSON_IsTrue(x);
    }
    if ((x = get(v, "role_when"))) {
        path_key(sub, path, "role_when");
        if (!cJSON_IsObject(x)) return load_fail(err, sub, "%s: must be an object", sub);
        for (const cJSON *c = x->child; c; c = c->next) {
            char csub[PATH_CAP];
            schema_role_t r = schema_role_parse(c->string);
            path_key(csub, sub, c->string);
            if (r == ROLE_NONE || !(t->roles & BIT(r)) || t->role_when[r].field)
                return load_fail(err, csub, "%s: not a role of this transition", csub);
            if ((rc = load_cond(s, c, csub, &t->role_when[r], err))) return rc;
        }
    }
    if ((x = get(v, "stamp"))) {
        path_key(sub, path, "stamp");
        if (!cJSON_IsArray(x)) return load_fail(err, sub, "%s: must be a list of fields", sub);
        for (const cJSON *c = x->child; c; c = c->next) {
            const rule_t *r = str_of(c) ? rule_at(s, c->valuestring) : NULL;
            if (!r || r->type != VT_TIME || r->policy != POLICY_SERVER)
                return load_fail(err, sub, "%s: must name server-set time fields", sub);
        }
        t->stamp = x;
    }
    if ((x = get(v, "guards"))) {
        int n = cJSON_GetArraySize(x);
        path_key(sub, path, "guards");
        if (!cJSON_IsArray(x)) return load_fail(err, sub, "%s: must be a list", sub);
        if (n && !(t->guards = calloc((size_t)n, sizeof(*t->guards))))
            return fail(err, SCHEMA_E_NOMEM, sub, "out of memory");
        for (const cJSON *c = x->child; c; c = c->next) {
            char gsub[PATH_CAP];
            path_idx(gsub, sub, t->nguards);
            if ((rc = load_guard(s, c, gsub, &t->guards[t->nguards++], err))) return rc;
        }
    }
    return 0;
}

static const char *const procedure_keys[] = {"label",        "note",   "states",     "main_path",   "initial",
                                             "create_roles", "closed", "case_no_at", "transitions", NULL};
static const char *const state_keys[] = {"label", "note", NULL};

static int load_procedure(const schema_t *s, procedure_t *p, const cJSON *v, const char *path,
                          schema_err_t *err) {
    char sub[PATH_CAP];
    const cJSON *x;
    uint32_t mask;
    int rc;

    p->name = v->string, p->case_no_at = -1;
    if (!cJSON_IsObject(v)) return load_fail(err, path, "%s: must be an object", path);
    if ((rc = only_keys(v, procedure_keys, path, err))) return rc;
    path_key(sub, path, "states");
    x = get(v, "states");
    if (!cJSON_IsObject(x) || !x->child || cJSON_GetArraySize(x) > MAX_STATES)
        return load_fail(err, sub, "%s: needs 1..%d states", sub, MAX_STATES);
    for (const cJSON *c = x->child; c; c = c->next) {
        char ssub[PATH_CAP];
        path_key(ssub, sub, c->string);
        if (state_index(p, c->string) >= 0) return load_fail(err, ssub, "%s: duplicate state", ssub);
        if (!cJSON_IsObject(c)) return load_fail(err, ssub, "%s: must be an object", ssub);
        if ((rc = only_keys(c, state_keys, ssub, err))) return rc;
        p->main_pos[p->nstates] = -1;
        p->states[p->nstates++] = c->string;
    }
    path_key(sub, path, "main_path");
    if ((rc = load_states(p, get(v, "main_path"), 1, sub, &mask, err))) return rc;
    int pos = 0;
    for (const cJSON *c = get(v, "main_path")->child; c; c = c->next, pos++) {
        int i = state_index(p, c->valuestring);
        if (p->main_pos[i] >= 0) return load_fail(err, sub, "%s: %s twice", sub, c->valuestring);
        p->main_pos[i] = pos;
    }
    path_key(sub, path, "initial");
    p->initial = state_index(p, str_of(get(v, "initial")));
    if (p->initial < 0 || p->main_pos[p->initial] != 0)
        return load_fail(err, sub, "%s: must be the first state of main_path", sub);
    path_key(sub, path, "create_roles");
    if ((rc = load_roles(get(v, "create_roles"), sub, &p->create_roles, err))) return rc;
    path_key(sub, path, "closed");
    if ((rc = load_states(p, get(v, "closed"), 0, sub, &p->closed, err))) return rc;
    if ((x = get(v, "case_no_at"))) {
        path_key(sub, path, "case_no_at");
        if ((p->case_no_at = state_index(p, str_of(x))) < 0)
            return load_fail(err, sub, "%s: unknown state", sub);
    }
    path_key(sub, path, "transitions");
    x = get(v, "transitions");
    int n = cJSON_GetArraySize(x);
    if (!cJSON_IsArray(x) || n == 0) return load_fail(err, sub, "%s: needs a list of transitions", sub);
    if (!(p->trans = calloc((size_t)n, sizeof(*p->trans))))
        return fail(err, SCHEMA_E_NOMEM, sub, "out of memory");
    for (const cJSON *c = x->child; c; c = c->next) {
        char tsub[PATH_CAP];
        path_idx(tsub, sub, p->ntrans);
        if ((rc = load_transition(s, p, p->ntrans++, c, tsub, err))) return rc;
    }
    return 0;
}

/* Procedures come after the fields (guards name fields); then the
 * procedure field must be a required enum of exactly these names. */
static int load_procedures(schema_t *s, const cJSON *procs, schema_err_t *err) {
    int n = cJSON_GetArraySize(procs), rc;
    if (!cJSON_IsObject(procs) || n == 0)
        return load_fail(err, "procedures", "procedures: needs 1 or more procedures");
    if (!(s->procs = calloc((size_t)n, sizeof(*s->procs))))
        return fail(err, SCHEMA_E_NOMEM, "procedures", "out of memory");
    for (const cJSON *c = procs->child; c; c = c->next) {
        char path[PATH_CAP];
        path_key(path, "procedures", c->string);
        if (proc_find(s, c->string)) return load_fail(err, path, "%s: duplicate procedure", path);
        if ((rc = load_procedure(s, &s->procs[s->nprocs++], c, path, err))) return rc;
    }
    int pi = field_index(s, FIELD_PROCEDURE);
    const char *path = "fields." FIELD_PROCEDURE;
    if (pi < 0 || s->fields[pi].type != VT_ENUM || !s->fields[pi].required ||
        cJSON_GetArraySize(s->fields[pi].values) != s->nprocs)
        return load_fail(err, path, "%s: must be a required enum of the procedures", path);
    for (const cJSON *c = s->fields[pi].values->child; c; c = c->next)
        if (!proc_find(s, c->valuestring))
            return load_fail(err, path, "%s: %s is not a procedure", path, c->valuestring);
    return 0;
}

static const char *const type_keys[] = {"code", "name", "label", "note", "dispose_within_hours", NULL};

static int load_types(schema_t *s, const cJSON *types, schema_err_t *err) {
    int n = cJSON_GetArraySize(types), rc;
    if (!cJSON_IsArray(types) || n == 0) return load_fail(err, "types", "types: needs a list of case types");
    if (!(s->types = calloc((size_t)n, sizeof(*s->types))))
        return fail(err, SCHEMA_E_NOMEM, "types", "out of memory");
    for (const cJSON *c = types->child; c; c = c->next) {
        char path[PATH_CAP];
        path_idx(path, "types", s->ntypes);
        if (!cJSON_IsObject(c)) return load_fail(err, path, "%s: must be an object", path);
        if ((rc = only_keys(c, type_keys, path, err))) return rc;
        const char *code = str_of(get(c, "code")), *name = str_of(get(c, "name"));
        if (!code || !*code || !name || !*name)
            return load_fail(err, path, "%s: needs a code and a name", path);
        if (schema_type_name(s, code) || schema_type_code(s, name))
            return load_fail(err, path, "%s: duplicate code or name", path);
        long hours;
        if (get(c, "dispose_within_hours") &&
            get_long(get(c, "dispose_within_hours"), 0, MAX_DEADLINE_DAYS * 24L, &hours))
            return load_fail(err, path, "%s.dispose_within_hours: must be 0..%d", path,
                             MAX_DEADLINE_DAYS * 24);
        s->types[s->ntypes].obj = c;
        s->types[s->ntypes].code = code, s->types[s->ntypes].name = name, s->ntypes++;
    }
    return 0;
}

/* load_deadlines and load_figures: see "Deadlines, calendar, figures" below. */
static int load_deadlines(schema_t *s, const cJSON *list, schema_err_t *err);
static int load_figures(schema_t *s, const cJSON *figures, schema_err_t *err);

/* A state name some procedure has (write rules name states across procedures). */
static int state_known(const schema_t *s, const char *name) {
    for (int i = 0; name && i < s->nprocs; i++)
        if (state_index(&s->procs[i], name) >= 0) return 1;
    return 0;
}

static int load_role_key(const cJSON *o, const char *key, const char *path, schema_role_t *out,
                         schema_err_t *err) {
    const cJSON *v = get(o, key);
    if (!v) return 0;
    if ((*out = schema_role_parse(str_of(v))) == ROLE_NONE)
        return load_fail(err, path, "%s.%s: unknown role", path, key);
    return 0;
}

static const char *const write_keys[] = {"create",      "update",        "value", "differs_from",
                                         "frozen_from", "no_clear_from", "note",  NULL};

/* Each field's "write" rules; after the procedures, since they name states. */
static int load_write_rules(schema_t *s, const cJSON *fields, schema_err_t *err) {
    int rc;
    for (int i = 0; i < s->nfields; i++) {
        rule_t *r = &s->fields[i];
        const cJSON *w = get(get(fields, r->name), "write"), *v;
        char path[PATH_CAP];
        if (!w) continue;
        path_key(path, "fields", r->name);
        path_key(path, path, "write");
        if (!cJSON_IsObject(w)) return load_fail(err, path, "%s: must be an object", path);
        if ((rc = only_keys(w, write_keys, path, err)) ||
            (rc = load_role_key(w, "create", path, &r->write_create, err)) ||
            (rc = load_role_key(w, "update", path, &r->write_update, err)))
            return rc;
        if ((v = get(w, "value"))) {
            if ((r->write_value = name_index(write_value_names, WV_COUNT, str_of(v))) < 0)
                return load_fail(err, path, "%s.value: unknown value rule", path);
            int want = r->write_value == WV_UNIT_OFFICER ? VT_USER : VT_STRING;
            if ((int)r->type != want)
                return load_fail(err, path, "%s.value: does not apply to a %s field", path,
                                 vtype_names[r->type]);
        }
        if ((v = get(w, "differs_from"))) {
            int j = field_index(s, str_of(v));
            if (j < 0 || j == i || s->fields[j].type != r->type)
                return load_fail(err, path, "%s.differs_from: must name another field of its type", path);
            r->differs_from = j;
        }
        if ((v = get(w, "frozen_from")) && !state_known(s, (r->frozen_from = str_of(v))))
            return load_fail(err, path, "%s.frozen_from: unknown state", path);
        if ((v = get(w, "no_clear_from")) && !state_known(s, (r->no_clear_from = str_of(v))))
            return load_fail(err, path, "%s.no_clear_from: unknown state", path);
        if (r->policy == POLICY_SERVER || r->policy == POLICY_IMMUTABLE)
            if (r->write_update != ROLE_NONE || r->frozen_from)
                return load_fail(err, path, "%s: a %s field is never updated", path, policy_names[r->policy]);
    }
    return 0;
}

static const char *const closed_keys[] = {"append", "role", "basis", "note", NULL};
static const char *const correction_keys[] = {"role", "reason_max_bytes", "label", "note", NULL};
static const char *const hearing_keys[] = {"fine_at_least", "sanctions", "basis", "note", NULL};

/* closed_records, corrections and hearing_rights. Absent: a closed record
 * takes nothing, corrections are for admins only, nothing gives hearing rights. */
static int load_record_rules(schema_t *s, schema_err_t *err) {
    const cJSON *c = get(s->doc, "closed_records"), *v;
    int rc;
    s->closed_role = s->correction_role = ROLE_ADMIN;
    s->correction_reason_max = 4096;
    if (c) {
        if (!cJSON_IsObject(c)) return load_fail(err, "closed_records", "closed_records: must be an object");
        if ((rc = only_keys(c, closed_keys, "closed_records", err)) ||
            (rc = load_role_key(c, "role", "closed_records", &s->closed_role, err)))
            return rc;
        v = get(c, "append");
        if (!cJSON_IsArray(v))
            return load_fail(err, "closed_records", "closed_records.append: must be a list");
        for (const cJSON *x = v->child; x; x = x->next) {
            int i = field_index(s, str_of(x));
            if (i < 0 || s->fields[i].policy != POLICY_APPEND)
                return load_fail(err, "closed_records", "closed_records.append: must name append fields");
        }
        s->closed_append = v;
    }
    if ((c = get(s->doc, "corrections"))) {
        long n;
        if (!cJSON_IsObject(c)) return load_fail(err, "corrections", "corrections: must be an object");
        if ((rc = only_keys(c, correction_keys, "corrections", err)) ||
            (rc = load_role_key(c, "role", "corrections", &s->correction_role, err)))
            return rc;
        if ((v = get(c, "reason_max_bytes"))) {
            if (get_long(v, 1, STRING_MAX_BYTES, &n))
                return load_fail(err, "corrections", "corrections.reason_max_bytes: must be 1..%d",
                                 STRING_MAX_BYTES);
            s->correction_reason_max = n;
        }
    }
    if ((c = get(s->doc, "hearing_rights"))) {
        if (!cJSON_IsObject(c)) return load_fail(err, "hearing_rights", "hearing_rights: must be an object");
        if ((rc = only_keys(c, hearing_keys, "hearing_rights", err))) return rc;
        if ((v = get(c, "fine_at_least"))) {
            const cJSON *pp = get(v, "person"), *po = get(v, "org");
            if (!cJSON_IsObject(v) || (pp && !cJSON_IsNumber(pp)) || (po && !cJSON_IsNumber(po)))
                return load_fail(err, "hearing_rights",
                                 "hearing_rights.fine_at_least: {person, org} amounts");
            s->hearing_fine_person = pp ? pp->valuedouble : 0;
            s->hearing_fine_org = po ? po->valuedouble : 0;
        }
        if ((v = get(c, "sanctions"))) {
            if (!cJSON_IsArray(v))
                return load_fail(err, "hearing_rights", "hearing_rights.sanctions: must be a list");
            s->hearing_sanctions = v;
        }
    }
    return 0;
}

/* The roles list documents the fixed role order; it must match the enum. */
static int check_roles_doc(const cJSON *roles, schema_err_t *err) {
    int i = 0;
    if (!cJSON_IsArray(roles) || cJSON_GetArraySize(roles) != ROLE_COUNT)
        return load_fail(err, "roles", "roles: must list the %d roles weakest first", ROLE_COUNT);
    for (const cJSON *c = roles->child; c; c = c->next, i++)
        if (!cJSON_IsObject(c) || !str_of(get(c, "name")) ||
            strcmp(get(c, "name")->valuestring, role_names[i]))
            return load_fail(err, "roles", "roles[%d]: must be %s", i, role_names[i]);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Public: load, free, accessors                                              */
/* ------------------------------------------------------------------------- */

/* Parses json (len bytes, no NUL needed) into a new schema_t owned by the
 * caller. The compact text and its ETag are computed once here. */
int schema_load(const char *json, size_t len, schema_t **out, schema_err_t *err) {
    const char *end = NULL;
    schema_t *s = NULL;
    long version;
    int rc;

    err_clear(err);
    if (!out) return fail(err, SCHEMA_E_LOAD, "", "schema: no output");
    *out = NULL;
    if (!json || len == 0 || len > SCHEMA_MAX_BYTES)
        return fail(err, SCHEMA_E_LOAD, "", "schema: empty or larger than %d bytes", SCHEMA_MAX_BYTES);
    if (!(s = calloc(1, sizeof(*s)))) return fail(err, SCHEMA_E_NOMEM, "", "out of memory");
    if (!(s->doc = cJSON_ParseWithLengthOpts(json, len, &end, 0))) {
        rc =
            fail(err, SCHEMA_E_LOAD, "", "schema: invalid JSON near byte %ld", end ? (long)(end - json) : 0L);
        goto fail;
    }
    for (; end && end < json + len; end++)
        if (*end != ' ' && *end != '\n' && *end != '\r' && *end != '\t') {
            rc = fail(err, SCHEMA_E_LOAD, "", "schema: trailing bytes after the document");
            goto fail;
        }
    if (!cJSON_IsObject(s->doc)) {
        rc = load_fail(err, "", "the document must be an object");
        goto fail;
    }
    if (get_long(get(s->doc, "schema_version"), 1, INT_MAX, &version)) {
        rc = load_fail(err, "schema_version", "schema_version: must be a positive integer");
        goto fail;
    }
    s->version = (int)version;
    if ((rc = check_roles_doc(get(s->doc, "roles"), err)) ||
        (rc = load_fields(s, get(s->doc, "fields"), err)) ||
        (rc = load_procedures(s, get(s->doc, "procedures"), err)) ||
        (rc = load_write_rules(s, get(s->doc, "fields"), err)) || (rc = load_record_rules(s, err)) ||
        (rc = load_types(s, get(s->doc, "types"), err)) ||
        (rc = load_deadlines(s, get(s->doc, "deadlines"), err)) ||
        (rc = load_figures(s, get(s->doc, "figures"), err)))
        goto fail;
    if (!(s->calendar = calendar_new())) {
        rc = fail(err, SCHEMA_E_NOMEM, "", "out of memory");
        goto fail;
    }

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!(s->text = cJSON_PrintUnformatted(s->doc))) {
        rc = fail(err, SCHEMA_E_NOMEM, "", "out of memory");
        goto fail;
    }
    s->text_len = strlen(s->text);
    if (!EVP_Digest(s->text, s->text_len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        rc = fail(err, SCHEMA_E_LOAD, "", "schema: SHA-256 failed");
        goto fail;
    }
    s->etag[0] = '"';
    for (unsigned i = 0; i < mdlen; i++) {
        static const char hex[] = "0123456789abcdef";
        s->etag[1 + 2 * i] = hex[md[i] >> 4];
        s->etag[2 + 2 * i] = hex[md[i] & 15];
    }
    s->etag[1 + 2 * mdlen] = '"';
    s->etag[2 + 2 * mdlen] = '\0';
    *out = s;
    return SCHEMA_OK;

fail:
    schema_free(s);
    return rc;
}

/* Reads the whole file (at most SCHEMA_MAX_BYTES) and loads it. */
int schema_load_file(const char *path, schema_t **out, schema_err_t *err) {
    FILE *f = NULL;
    char *buf = NULL;
    size_t len = 0;
    int rc;

    err_clear(err);
    if (out) *out = NULL;
    if (!path || !(f = fopen(path, "rb"))) {
        rc = fail(err, SCHEMA_E_LOAD, "", "schema: cannot open %s: %s", path ? path : "(null)",
                  strerror(errno));
        goto fail;
    }
    if (!(buf = malloc(SCHEMA_MAX_BYTES + 1))) {
        rc = fail(err, SCHEMA_E_NOMEM, "", "out of memory");
        goto fail;
    }
    len = fread(buf, 1, SCHEMA_MAX_BYTES + 1, f);
    if (ferror(f) || len > SCHEMA_MAX_BYTES) {
        rc = fail(err, SCHEMA_E_LOAD, "", "schema: %s is unreadable or larger than %d bytes", path,
                  SCHEMA_MAX_BYTES);
        goto fail;
    }
    rc = schema_load(buf, len, out, err);
    if (rc == SCHEMA_OK) {
        /* The working-day calendar: the folder calendar/ beside the schema file. */
        char dir[1024];
        const char *slash = strrchr(path, '/');
        if (slash)
            snprintf(dir, sizeof dir, "%.*s/calendar", (int)(slash - path), path);
        else
            snprintf(dir, sizeof dir, "calendar");
        DIR *d = opendir(dir);
        if (d) {
            closedir(d);
            if ((rc = schema_load_calendar_dir(*out, dir, err)) != SCHEMA_OK) {
                schema_free(*out);
                *out = NULL;
            }
        }
    }

fail:
    free(buf);
    if (f) fclose(f);
    return rc;
}

void schema_free(schema_t *s) {
    if (!s) return;
    for (int i = 0; i < s->nfields; i++)
        rule_free(&s->fields[i]);
    for (int i = 0; i < s->nprocs; i++) {
        for (int k = 0; k < s->procs[i].ntrans; k++)
            free(s->procs[i].trans[k].guards);
        free(s->procs[i].trans);
    }
    free(s->procs);
    free(s->types);
    for (int i = 0; i < s->ndeadlines; i++)
        free(s->deadlines[i].from);
    free(s->deadlines);
    for (int i = 0; i < FIGURE_COUNT; i++)
        free(s->figures[i]);
    calendar_free(s->calendar);
    if (s->text) cJSON_free(s->text);
    cJSON_Delete(s->doc);
    free(s);
}

const char *schema_text(const schema_t *s) {
    return s->text;
}
size_t schema_text_len(const schema_t *s) {
    return s->text_len;
}
int schema_version(const schema_t *s) {
    return s->version;
}
const char *schema_etag(const schema_t *s) {
    return s->etag;
}

schema_role_t schema_role_parse(const char *name) {
    return (schema_role_t)name_index(role_names, ROLE_COUNT, name);
}

/* "none" for ROLE_NONE or anything out of range, so it is safe to print. */
const char *schema_role_name(schema_role_t r) {
    return r >= 0 && r < ROLE_COUNT ? role_names[r] : "none";
}

const char *schema_type_code(const schema_t *s, const char *type) {
    for (int i = 0; type && i < s->ntypes; i++)
        if (strcmp(s->types[i].name, type) == 0) return s->types[i].code;
    return NULL;
}

const char *schema_type_name(const schema_t *s, const char *code) {
    for (int i = 0; code && i < s->ntypes; i++)
        if (strcmp(s->types[i].code, code) == 0) return s->types[i].name;
    return NULL;
}

int schema_field_policy(const schema_t *s, const char *field) {
    int i = field_index(s, field);
    return i < 0 ? -1 : s->fields[i].policy;
}

int schema_procedure_exists(const schema_t *s, const char *procedure) {
    return proc_find(s, procedure) != NULL;
}

const char *schema_initial_status(const schema_t *s, const char *procedure) {
    const procedure_t *p = proc_find(s, procedure);
    return p ? p->states[p->initial] : NULL;
}

/* A role may create when it is at least as strong as a listed create role. */
int schema_may_create(const schema_t *s, const char *procedure, schema_role_t role) {
    const procedure_t *p = proc_find(s, procedure);
    if (!p || role < 0 || role >= ROLE_COUNT) return 0;
    for (int r = 0; r <= (int)role; r++)
        if (p->create_roles & BIT(r)) return 1;
    return 0;
}

int schema_status_is_closed(const schema_t *s, const char *procedure, const char *status) {
    const procedure_t *p = proc_find(s, procedure);
    int i = p ? state_index(p, status) : -1;
    return i >= 0 && (p->closed & BIT(i)) != 0;
}

int schema_status_assigns_case_no(const schema_t *s, const char *procedure, const char *status) {
    const procedure_t *p = proc_find(s, procedure);
    int i = p ? state_index(p, status) : -1;
    return i >= 0 && p->case_no_at == i;
}

const char *schema_strerror(int code) {
    switch (code) {
    case SCHEMA_OK: return "ok";
    case SCHEMA_E_LOAD: return "the schema document is broken";
    case SCHEMA_E_TYPE: return "wrong JSON type";
    case SCHEMA_E_INVALID: return "validation failed";
    case SCHEMA_E_ROLE: return "forbidden for this role";
    case SCHEMA_E_TRANSITION: return "forbidden transition";
    case SCHEMA_E_NOMEM: return "out of memory";
    default: return "unknown error";
    }
}

/* ------------------------------------------------------------------------- */
/* Shape: JSON types only                                                     */
/* ------------------------------------------------------------------------- */

static int type_fail(schema_err_t *err, const char *path, const char *what) {
    return fail(err, SCHEMA_E_TYPE, path, "%s must be %s", leaf(path), what);
}

/* The JSON type a rule needs, recursively for known members and list items.
 * null is always a shape-valid value (a value rule may still refuse it). */
static int shape_value(const rule_t *r, const cJSON *v, const char *path, schema_err_t *err) {
    char sub[PATH_CAP];
    int rc, i = 0;
    if (cJSON_IsNull(v)) return 0;
    switch (r->type) {
    case VT_STRING:
    case VT_TEXT:
    case VT_ENUM:
    case VT_TIME:
    case VT_USER: return cJSON_IsString(v) ? 0 : type_fail(err, path, "a string");
    case VT_NUMBER:
    case VT_INTEGER: return cJSON_IsNumber(v) ? 0 : type_fail(err, path, "a number");
    case VT_BOOL: return cJSON_IsBool(v) ? 0 : type_fail(err, path, "true or false");
    case VT_OBJECT:
        if (!cJSON_IsObject(v)) return type_fail(err, path, "an object");
        for (const cJSON *c = v->child; c; c = c->next) {
            int m = member_index(r, c->string);
            path_key(sub, path, c->string);
            if (m >= 0 && (rc = shape_value(&r->members[m], c, sub, err))) return rc;
        }
        return 0;
    case VT_LIST:
        if (!cJSON_IsArray(v)) return type_fail(err, path, "a list");
        for (const cJSON *c = v->child; c; c = c->next, i++) {
            path_idx(sub, path, i);
            if ((rc = shape_value(r->items, c, sub, err))) return rc;
        }
        return 0;
    default: return 0;
    }
}

/* An object of fields ("fields" of a create, "set" of an update). */
static int shape_fields(const schema_t *s, const cJSON *obj, const char *path, schema_err_t *err) {
    char sub[PATH_CAP];
    int rc;
    if (!cJSON_IsObject(obj)) return type_fail(err, path, "an object");
    for (const cJSON *c = obj->child; c; c = c->next) {
        int i = field_index(s, c->string);
        path_key(sub, path, c->string);
        if (i >= 0 && (rc = shape_value(&s->fields[i], c, sub, err))) return rc;
    }
    return 0;
}

/* "append": an object of arrays of objects, item members typed by the schema. */
static int shape_append(const schema_t *s, const cJSON *obj, schema_err_t *err) {
    char sub[PATH_CAP], isub[PATH_CAP];
    int rc;
    if (!cJSON_IsObject(obj)) return type_fail(err, "append", "an object");
    for (const cJSON *c = obj->child; c; c = c->next) {
        int f = field_index(s, c->string), i = 0;
        path_key(sub, "append", c->string);
        if (!cJSON_IsArray(c)) return type_fail(err, sub, "a list");
        for (const cJSON *item = c->child; item; item = item->next, i++) {
            path_idx(isub, sub, i);
            if (!cJSON_IsObject(item)) return type_fail(err, isub, "an object");
            if (f >= 0 && s->fields[f].type == VT_LIST &&
                (rc = shape_value(s->fields[f].items, item, isub, err)))
                return rc;
        }
    }
    return 0;
}

int schema_check_shape(const schema_t *s, const cJSON *change, schema_err_t *err) {
    const cJSON *v;
    err_clear(err);
    if (!cJSON_IsObject(change)) return fail(err, SCHEMA_E_TYPE, "", "a change must be an object");
    int op = name_index(op_names, OP_COUNT, str_of(get(change, "op")));
    if (op < 0)
        return fail(err, SCHEMA_E_TYPE, "op", "op must be create, update, transition, void or correct");
    v = get(change, "record_id");
    if (!str_of(v) || !record_id_ok(v->valuestring))
        return fail(err, SCHEMA_E_TYPE, "record_id", "record_id must match ^[0-9A-Za-z_-]{8,64}$");
    v = get(change, "base_version");
    if ((v || op != OP_CREATE) && !(cJSON_IsNumber(v) && is_integral(v->valuedouble) && v->valuedouble >= 0))
        return fail(err, SCHEMA_E_TYPE, "base_version", "base_version must be a non-negative integer");
    if ((v = get(change, "at")) && !cJSON_IsString(v)) return type_fail(err, "at", "a string");
    switch (op) {
    case OP_CREATE:
        if (!str_of(get(change, "type"))) return type_fail(err, "type", "a string");
        return shape_fields(s, get(change, "fields"), "fields", err);
    case OP_UPDATE: {
        int rc;
        if ((v = get(change, "set")) && (rc = shape_fields(s, v, "set", err))) return rc;
        if ((v = get(change, "append")) && (rc = shape_append(s, v, err))) return rc;
        return 0;
    }
    case OP_TRANSITION: return str_of(get(change, "to")) ? 0 : type_fail(err, "to", "a string");
    case OP_CORRECT: {
        int rc;
        if ((rc = shape_fields(s, get(change, "set"), "set", err))) return rc;
        if (get(change, "append")) return type_fail(err, "append", "absent: a correction only sets");
        return str_of(get(change, "reason")) ? 0 : type_fail(err, "reason", "a string");
    }
    default: return str_of(get(change, "reason")) ? 0 : type_fail(err, "reason", "a string");
    }
}

/* ------------------------------------------------------------------------- */
/* Values                                                                     */
/* ------------------------------------------------------------------------- */

static int invalid(schema_err_t *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int invalid(schema_err_t *err, const char *path, const char *fmt, ...) {
    char msg[MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0) msg[0] = '\0';
    va_end(ap);
    return fail(err, SCHEMA_E_INVALID, path, "%s %s", leaf(path), msg);
}

static int check_value(const schema_t *s, const rule_t *r, const cJSON *v, const char *path,
                       schema_err_t *err);

static int check_string(const schema_t *s, const rule_t *r, const char *str, const char *path,
                        schema_err_t *err) {
    size_t bytes = strlen(str);
    long max_bytes = r->max_bytes ? r->max_bytes : STRING_MAX_BYTES;
    if (bytes > (size_t)max_bytes) return invalid(err, path, "is longer than %ld bytes", max_bytes);
    long chars = utf8_chars((const unsigned char *)str, bytes);
    if (chars < 0) return invalid(err, path, "is not valid UTF-8");
    if (chars < r->min_len) return invalid(err, path, "needs at least %ld characters", r->min_len);
    if (r->max_len >= 0 && chars > r->max_len)
        return invalid(err, path, "is longer than %ld characters", r->max_len);
    if (r->digits_min) {
        size_t n = strspn(str, "0123456789");
        if (n != bytes || n < (size_t)r->digits_min || n > (size_t)r->digits_max)
            return invalid(err, path, "must be %d to %d digits", r->digits_min, r->digits_max);
    }
    if (r->hex && (bytes != (size_t)r->hex || strspn(str, "0123456789abcdef") != bytes))
        return invalid(err, path, "must be %d lowercase hex digits", r->hex);
    if (r->type_code && !schema_type_name(s, str))
        return invalid(err, path, "%s is not a case type code", str);
    return 0;
}

static int check_number(const rule_t *r, double d, const char *path, schema_err_t *err) {
    if (!(d >= -MAX_SAFE_NUMBER && d <= MAX_SAFE_NUMBER))
        return invalid(err, path, "must be a finite number within 2^53");
    if (r->type == VT_INTEGER && !is_integral(d)) return invalid(err, path, "must be an integer");
    if (r->has_min && d < r->min) return invalid(err, path, "%.15g is below %.15g", d, r->min);
    if (r->has_max && d > r->max) return invalid(err, path, "%.15g is above %.15g", d, r->max);
    if (r->decimals >= 0 && !has_decimals(d, r->decimals))
        return invalid(err, path, "%.15g has more than %d decimals", d, r->decimals);
    return 0;
}

static int check_object(const schema_t *s, const rule_t *r, const cJSON *v, const char *path,
                        schema_err_t *err) {
    char sub[PATH_CAP];
    uint64_t seen = 0, present = 0;
    int rc;
    for (const cJSON *c = v->child; c; c = c->next) {
        int m = member_index(r, c->string);
        path_key(sub, path, c->string);
        if (m < 0) return invalid(err, sub, "is not a member of %s", leaf(path));
        if (seen & BIT64(m)) return invalid(err, sub, "is given twice");
        seen |= BIT64(m);
        if (cJSON_IsNull(c)) continue;
        if (r->members[m].server) return invalid(err, sub, "is set by the server");
        if ((rc = check_value(s, &r->members[m], c, sub, err))) return rc;
        if (is_set(c)) present |= BIT64(m);
    }
    for (int m = 0; m < r->nmembers; m++)
        if (r->members[m].required && !(present & BIT64(m))) {
            path_key(sub, path, r->members[m].name);
            return invalid(err, sub, "is required");
        }
    return 0;
}

/* One value (not null) against its rule. A wrong JSON type is SCHEMA_E_TYPE,
 * so the check stands alone when the shape was not checked first. */
static int check_value(const schema_t *s, const rule_t *r, const cJSON *v, const char *path,
                       schema_err_t *err) {
    char sub[PATH_CAP];
    int rc, i = 0;
    if (shape_value(r, v, path, err)) return SCHEMA_E_TYPE;
    switch (r->type) {
    case VT_STRING:
    case VT_TEXT: return check_string(s, r, v->valuestring, path, err);
    case VT_USER: {
        size_t n = strlen(v->valuestring);
        if (n < 1 || n > ID_MAX_LEN || utf8_chars((const unsigned char *)v->valuestring, n) < 0)
            return invalid(err, path, "must be a user id of 1 to %d bytes", ID_MAX_LEN);
        for (const char *p = v->valuestring; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) return invalid(err, path, "has a control character");
        return 0;
    }
    case VT_ENUM: {
        char list[128];
        size_t n = 0;
        for (const cJSON *c = r->values->child; c; c = c->next) {
            if (strcmp(c->valuestring, v->valuestring) == 0) return 0;
            int w = snprintf(list + n, sizeof(list) - n, "%s%s", n ? ", " : "", c->valuestring);
            n = w < 0 || (size_t)w >= sizeof(list) - n ? sizeof(list) - 1 : n + (size_t)w;
        }
        return invalid(err, path, "%.64s is not one of %s", v->valuestring, list);
    }
    case VT_TIME: return is_rfc3339(v->valuestring) ? 0 : invalid(err, path, "must be an RFC 3339 time");
    case VT_NUMBER:
    case VT_INTEGER: return check_number(r, v->valuedouble, path, err);
    case VT_BOOL: return 0;
    case VT_OBJECT: return check_object(s, r, v, path, err);
    case VT_LIST:
        for (const cJSON *c = v->child; c; c = c->next, i++) {
            path_idx(sub, path, i);
            if (cJSON_IsNull(c)) return invalid(err, sub, "must not be null");
            if ((rc = check_value(s, r->items, c, sub, err))) return rc;
        }
        return 0;
    default: return 0;
    }
}

typedef struct item_id {
    const char *id;
    int index;
} item_id_t;

static int item_id_cmp(const void *a, const void *b) {
    const item_id_t *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* Items for an append list: objects with an id (1..64 chars), members by the
 * schema, ids unique within the list (sorted, so a long list stays cheap). */
static int check_items(const schema_t *s, const rule_t *r, const cJSON *items, const char *path,
                       schema_err_t *err) {
    char sub[PATH_CAP], isub[PATH_CAP];
    item_id_t *ids = NULL;
    int rc = 0, n = 0;

    if (!cJSON_IsArray(items)) return type_fail(err, path, "a list");
    for (const cJSON *c = items->child; c; c = c->next, n++) {
        const char *id = str_of(get(c, "id"));
        path_idx(sub, path, n);
        if (!cJSON_IsObject(c)) return type_fail(err, sub, "an object");
        path_key(isub, sub, "id");
        if (!id || !*id || strlen(id) > ID_MAX_LEN)
            return invalid(err, isub, "must be a string of 1 to %d characters", ID_MAX_LEN);
        if ((rc = check_value(s, r->items, c, sub, err))) return rc;
    }
    if (n < 2) return 0;
    if (!(ids = malloc((size_t)n * sizeof(*ids)))) return fail(err, SCHEMA_E_NOMEM, path, "out of memory");
    n = 0;
    for (const cJSON *c = items->child; c; c = c->next, n++)
        ids[n].id = get(c, "id")->valuestring, ids[n].index = n;
    qsort(ids, (size_t)n, sizeof(*ids), item_id_cmp);
    for (int i = 1; i < n; i++)
        if (strcmp(ids[i - 1].id, ids[i].id) == 0) {
            path_idx(sub, path, ids[i].index);
            path_key(isub, sub, "id");
            rc = invalid(err, isub, "%.64s is given twice", ids[i].id);
            break;
        }
    free(ids);
    return rc;
}

int schema_check_create(const schema_t *s, const char *type, const cJSON *fields, schema_err_t *err) {
    char path[PATH_CAP];
    uint64_t seen = 0, present = 0;
    int rc;

    err_clear(err);
    const char *code = schema_type_code(s, type);
    if (!code) return fail(err, SCHEMA_E_INVALID, "type", "unknown case type %.64s", type ? type : "(none)");
    if (!cJSON_IsObject(fields)) return type_fail(err, "fields", "an object");
    for (const cJSON *c = fields->child; c; c = c->next) {
        int i = field_index(s, c->string);
        const rule_t *r = i < 0 ? NULL : &s->fields[i];
        path_key(path, "fields", c->string);
        if (!r) return invalid(err, path, "is not a field of the schema");
        if (seen & BIT64(i)) return invalid(err, path, "is given twice");
        seen |= BIT64(i);
        if (r->policy == POLICY_SERVER) return invalid(err, path, "is set by the server");
        if (cJSON_IsNull(c)) continue;
        rc = r->policy == POLICY_APPEND ? check_items(s, r, c, path, err) : check_value(s, r, c, path, err);
        if (rc) return rc;
        if (is_set(c)) present |= BIT64(i);
    }
    for (int i = 0; i < s->nfields; i++)
        if (s->fields[i].required && !(present & BIT64(i))) {
            path_key(path, "fields", s->fields[i].name);
            return invalid(err, path, "is required at create");
        }
    const char *proc = str_of(get(fields, FIELD_PROCEDURE));
    if (!schema_procedure_exists(s, proc))
        return invalid(err, "fields." FIELD_PROCEDURE, "%.64s is not a procedure", proc ? proc : "");
    const cJSON *cat = get(fields, FIELD_CATEGORY);
    if (is_set(cat) && cJSON_IsString(cat) && strcmp(cat->valuestring, code) != 0)
        return invalid(err, "fields." FIELD_CATEGORY, "%.16s does not match type %s (code %s)",
                       cat->valuestring, type, code);
    return 0;
}

int schema_check_set(const schema_t *s, const char *field, const cJSON *value, schema_err_t *err) {
    char path[PATH_CAP];
    err_clear(err);
    path_key(path, "set", field ? field : "");
    int i = field_index(s, field);
    if (i < 0) return invalid(err, path, "is not a field of the schema");
    const rule_t *r = &s->fields[i];
    if (r->policy == POLICY_SERVER) return invalid(err, path, "is set by the server");
    if (r->policy == POLICY_IMMUTABLE) return invalid(err, path, "is fixed at create");
    if (r->policy == POLICY_APPEND) return invalid(err, path, "is an append list: use append");
    if (!value) return type_fail(err, path, "a value");
    if (!is_set(value) && r->required) return invalid(err, path, "is required and cannot be cleared");
    return cJSON_IsNull(value) ? 0 : check_value(s, r, value, path, err);
}

int schema_check_append(const schema_t *s, const char *field, const cJSON *items, schema_err_t *err) {
    char path[PATH_CAP];
    err_clear(err);
    path_key(path, "append", field ? field : "");
    int i = field_index(s, field);
    if (i < 0) return invalid(err, path, "is not a field of the schema");
    const rule_t *r = &s->fields[i];
    if (r->policy != POLICY_APPEND) return invalid(err, path, "is not an append list");
    return check_items(s, r, items, path, err);
}

/* ------------------------------------------------------------------------- */
/* Lifecycle                                                                  */
/* ------------------------------------------------------------------------- */

static int cond_holds(const cond_t *c, const cJSON *fields) {
    if (!c->field) return 1;
    const cJSON *v = value_at(fields, c->field);
    if (c->unset) return !is_set(v);
    int eq = v && cJSON_Compare(v, c->value, 1);
    return c->negate ? !eq : eq;
}

static const char *cond_text(const cond_t *c, char *buf, size_t cap) {
    char num[32];
    int n = c->unset ? snprintf(buf, cap, "%s is not set", c->field)
                     : snprintf(buf, cap, "%s is %s%s", c->field, c->negate ? "not " : "",
                                scalar_text(c->value, num, sizeof(num)));
    if (n < 0) buf[0] = '\0';
    return buf;
}

/* States a record in st has certainly passed: on the main path, those before
 * it; off it (a branch such as not_filed), the states that lead to it and
 * what they passed. visiting stops cycles. */
static uint32_t passed_states(const procedure_t *p, int st, uint32_t visiting) {
    uint32_t m = 0;
    if (p->main_pos[st] >= 0) {
        for (int i = 0; i < p->nstates; i++)
            if (p->main_pos[i] >= 0 && p->main_pos[i] < p->main_pos[st]) m |= BIT(i);
        return m;
    }
    visiting |= BIT(st);
    for (int k = 0; k < p->ntrans; k++) {
        if (p->trans[k].to != st) continue;
        for (int f = 0; f < p->nstates; f++)
            if ((p->trans[k].from & BIT(f)) && !(visiting & BIT(f)))
                m |= BIT(f) | passed_states(p, f, visiting);
    }
    return m;
}

/* Has a record of p in status reached `state` (is in it or passed it)? A
 * state p does not have is never reached. */
static int state_reached(const procedure_t *p, const char *status, const char *state) {
    int st = p && status ? state_index(p, status) : -1, x = p && state ? state_index(p, state) : -1;
    if (st < 0 || x < 0) return 0;
    return st == x || (passed_states(p, st, 0) & BIT(x)) != 0;
}

/* ---- working days ------------------------------------------------------------ */

static void note_fallback(const schema_t *cs, int year);

int64_t schema_china_day(int64_t ms) {
    return calendar_day_of(ms);
}

/* The schema's calendar (statutory holidays, 调休 working weekend days);
 * Monday to Friday in a year without one, noted for /metrics and the log. */
static int is_working_day(const schema_t *s, int64_t day) {
    int fallback = 0;
    int w = calendar_is_working_day(s->calendar, day, &fallback);
    if (fallback) note_fallback(s, fallback);
    return w;
}

int64_t schema_working_day_after(const schema_t *s, int64_t ms, int n) {
    int64_t d = schema_china_day(ms);
    for (int i = 0, guard = 0; i < n && guard < 4 * MAX_DEADLINE_DAYS; guard++) /* bounded */
        if (is_working_day(s, ++d)) i++;
    return d;
}

/* ---- guards --------------------------------------------------------------------- */

static int guard_fail(schema_err_t *err, const char *field, const guard_t *g, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int guard_fail(schema_err_t *err, const char *field, const guard_t *g, const char *fmt, ...) {
    char msg[MSG_CAP], path[PATH_CAP];
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0) msg[0] = '\0';
    va_end(ap);
    path_key(path, "fields", field);
    return fail(err, SCHEMA_E_INVALID, path, "%s%s%s%s", msg, g->basis ? " (" : "", g->basis ? g->basis : "",
                g->basis ? ")" : "");
}

/* The first documents item of doc_type, or NULL. */
static const cJSON *find_document(const cJSON *fields, const char *doc_type) {
    const cJSON *c;
    cJSON_ArrayForEach(c, get(fields, "documents")) {
        const char *t = str_of(get(c, "doc_type"));
        if (t && strcmp(t, doc_type) == 0) return c;
    }
    return NULL;
}

/* Does the decision the record prepares carry hearing rights (Art. 63)? */
static int has_hearing_rights(const schema_t *s, const cJSON *fields) {
    const cJSON *fine = get(fields, "fine_amount"), *c;
    const char *kind = str_of(value_at(fields, "party.kind"));
    double bar = kind && strcmp(kind, "org") == 0 ? s->hearing_fine_org : s->hearing_fine_person;
    if (cJSON_IsNumber(fine) && bar > 0 && fine->valuedouble >= bar) return 1;
    cJSON_ArrayForEach(c, get(fields, "sanctions")) {
        const cJSON *h;
        cJSON_ArrayForEach(h, s->hearing_sanctions) if (cJSON_Compare(c, h, 1)) return 1;
    }
    return 0;
}

static void day_text(int64_t day, char out[16]) {
    time_t t = (time_t)(day * 86400);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 16, "%Y-%m-%d", &tm) == 0) snprintf(out, 16, "?");
}

/* 0 when the guard holds for the record, else fills err. `statik`: judge only
 * the guards that read fields alone (a correction re-checks those). */
static int guard_check(const schema_t *s, const guard_t *g, const char *to, const schema_view_t *rec,
                       int statik, schema_err_t *err) {
    const cJSON *fields = rec->fields;
    char num[2][32], cond[160];
    for (int i = 0; i < g->nwhen; i++)
        if (!cond_holds(&g->when[i], fields)) return 0;
    switch (g->kind) {
    case GUARD_REQUIRED:
        for (const cJSON *c = g->fields->child; c; c = c->next)
            if (!is_set(value_at(fields, c->valuestring)))
                return guard_fail(err, c->valuestring, g, "%s needs %s", to, c->valuestring);
        return 0;
    case GUARD_REQUIRED_ANY: {
        char names[160] = "";
        for (const cJSON *c = g->fields->child; c; c = c->next) {
            if (is_set(value_at(fields, c->valuestring))) return 0;
            size_t n = strlen(names);
            if (snprintf(names + n, sizeof(names) - n, "%s%s", n ? ", " : "", c->valuestring) < 0)
                names[n] = 0;
        }
        return guard_fail(err, g->fields->child->valuestring, g, "%s needs one of %s", to, names);
    }
    case GUARD_DOCUMENT_PERIOD: {
        if (statik) return 0;
        const cJSON *doc = find_document(fields, g->doc);
        int64_t doc_ms;
        char last[16];
        if (!doc) return guard_fail(err, "documents", g, "%s needs a %s document", to, g->doc);
        const char *dat = str_of(get(doc, "at"));
        if (!dat || schema_parse_time(dat, &doc_ms))
            return guard_fail(err, "documents", g, "%s: the %s document needs its date (at)", to, g->doc);
        int64_t end = schema_working_day_after(s, doc_ms, g->days);
        if (schema_china_day(rec->now_ms) > end) return 0;
        day_text(end, last);
        return guard_fail(err, "documents", g, "%s: the period of %d working days after the %s runs until %s",
                          to, g->days, g->doc, last);
    }
    case GUARD_DIFFERENT: {
        const cJSON *first = value_at(fields, g->fields->child->valuestring);
        for (const cJSON *c = g->fields->child->next; c; c = c->next) {
            const cJSON *v = value_at(fields, c->valuestring);
            if (is_set(first) && is_set(v) && cJSON_Compare(first, v, 1))
                return guard_fail(err, c->valuestring, g, "%s must differ from %s", c->valuestring,
                                  g->fields->child->valuestring);
        }
        return 0;
    }
    case GUARD_MAX:
    case GUARD_MIN: {
        const cJSON *v = value_at(fields, g->field);
        if (!cJSON_IsNumber(v)) return 0;
        int over = g->kind == GUARD_MAX ? v->valuedouble > g->limit : v->valuedouble < g->limit;
        if (!over) return 0;
        if (snprintf(num[0], sizeof(num[0]), "%.15g", v->valuedouble) < 0) num[0][0] = '\0';
        if (snprintf(num[1], sizeof(num[1]), "%.15g", g->limit) < 0) num[1][0] = '\0';
        cond[0] = '\0';
        for (int i = 0; i < g->nwhen; i++) {
            char ctext[144];
            size_t n = strlen(cond);
            if (snprintf(cond + n, sizeof(cond) - n, "%s%s", i ? " and " : " when ",
                         cond_text(&g->when[i], ctext, sizeof(ctext))) < 0)
                cond[n] = '\0';
        }
        return guard_fail(err, g->field, g, "%s %s %s %s%s", g->field, num[0],
                          g->kind == GUARD_MAX ? "exceeds" : "is below", num[1], cond);
    }
    case GUARD_DOCUMENT:
        if (statik || find_document(fields, g->doc)) return 0;
        return guard_fail(err, "documents", g, "%s needs a documents item of doc_type %s", to, g->doc);
    case GUARD_FORBID_WHEN:
        if (!cond_holds(&g->forbid, fields)) return 0;
        return guard_fail(err, g->forbid.field, g, "%s", g->message);
    case GUARD_RIGHTS_WINDOW: {
        if (statik || find_document(fields, g->doc)) return 0;
        int hearing = has_hearing_rights(s, fields), days = hearing ? g->hearing_days : g->days;
        char last[16];
        if (rec->status_since_ms <= 0) return 0; /* a phone: the server judges the window */
        int64_t end = schema_working_day_after(s, rec->status_since_ms, days);
        if (schema_china_day(rec->now_ms) > end) return 0;
        day_text(end, last);
        return guard_fail(err, "documents", g,
                          "%s: the party's %s window of %d working days runs until %s; "
                          "wait or record a %s",
                          to, hearing ? "hearing" : "statement", days, last, g->doc);
    }
    case GUARD_HEARING_NOTICE: {
        if (statik || !cJSON_IsTrue(value_at(fields, g->field))) return 0;
        const cJSON *at = value_at(fields, g->field2), *doc = find_document(fields, g->doc);
        int64_t hearing_ms, notice_ms;
        if (!cJSON_IsString(at) || schema_parse_time(at->valuestring, &hearing_ms))
            return guard_fail(err, g->field2, g, "%s: a requested hearing needs %s", to, g->field2);
        if (!doc) return guard_fail(err, "documents", g, "%s needs a %s document", to, g->doc);
        const char *dat = str_of(get(doc, "at"));
        if (!dat || schema_parse_time(dat, &notice_ms))
            return guard_fail(err, "documents", g, "%s: the %s document needs its date (at)", to, g->doc);
        if (schema_working_day_after(s, notice_ms, g->days) > schema_china_day(hearing_ms))
            return guard_fail(err, "documents", g,
                              "%s: the %s must be served at least %d working days before %s", to, g->doc,
                              g->days, g->field2);
        return 0;
    }
    default: return 0;
    }
}

/* Role, then guards, for a transition allowed from the current state. A
 * listed role and every stronger one may take it unless it is exact; for an
 * exact one only the listed roles (admin as supervisor). A role_when
 * condition must hold for the role that grants it. */
static schema_judgement_t judge_allowed(const schema_t *s, const procedure_t *p, const transition_t *t,
                                        const schema_view_t *rec, schema_role_t role, schema_err_t *err) {
    const char *to = p->states[t->to];
    schema_role_t eff = t->exact && role == ROLE_ADMIN ? ROLE_SUPERVISOR : role;
    int granted = 0, failed_cond = -1;
    for (int r = 0; role >= 0 && r < ROLE_COUNT && !granted; r++) {
        if (!(t->roles & BIT(r)) || (t->exact ? r != (int)eff : r > (int)role)) continue;
        if (cond_holds(&t->role_when[r], rec->fields))
            granted = 1;
        else
            failed_cond = r;
    }
    if (!granted) {
        char ctext[144];
        if (failed_cond >= 0)
            fail(err, SCHEMA_E_ROLE, "to", "%s may take %s only when %s", schema_role_name(role), to,
                 cond_text(&t->role_when[failed_cond], ctext, sizeof(ctext)));
        else
            fail(err, SCHEMA_E_ROLE, "to", "%s may not take %s -> %s", schema_role_name(role), rec->status,
                 to);
        return JUDGE_ROLE;
    }
    for (int g = 0; g < t->nguards; g++)
        if (guard_check(s, &t->guards[g], to, rec, 0, err)) return JUDGE_GUARD;
    return JUDGE_APPLY;
}

schema_judgement_t schema_judge_transition(const schema_t *s, const schema_view_t *rec, const char *to,
                                           schema_role_t role, schema_err_t *err) {
    err_clear(err);
    const procedure_t *p = rec ? proc_find(s, rec->procedure) : NULL;
    const char *current = rec ? rec->status : NULL;
    if (!p) {
        fail(err, SCHEMA_E_TRANSITION, "to", "unknown procedure %.64s",
             rec && rec->procedure ? rec->procedure : "");
        return JUDGE_FORBIDDEN;
    }
    int ti = state_index(p, to), ci = state_index(p, current);
    if (ti < 0 || ci < 0) {
        fail(err, SCHEMA_E_TRANSITION, "to", "%.64s is not a status of the %s procedure",
             ti < 0    ? (to ? to : "")
             : current ? current
                       : "",
             p->name);
        return JUDGE_FORBIDDEN;
    }
    if (ti == ci && !rec->voided) return JUDGE_NOOP;
    if ((p->closed & BIT(ci)) || rec->voided) {
        fail(err, SCHEMA_OK, "to", "the record is %s: %s needs a person's decision",
             rec->voided ? "voided" : current, to);
        return JUDGE_CONFLICT;
    }
    for (int k = 0; k < p->ntrans; k++)
        if (p->trans[k].to == ti && (p->trans[k].from & BIT(ci)))
            return judge_allowed(s, p, &p->trans[k], rec, role, err);
    uint32_t passed = passed_states(p, ci, 0);
    if (passed & BIT(ti)) return JUDGE_NOOP;
    for (int k = 0; k < p->ntrans; k++)
        if (p->trans[k].to == ti && (p->trans[k].from & passed)) {
            fail(err, SCHEMA_OK, "to", "%s is reached from a status the record has left (it is %s)", to,
                 current);
            return JUDGE_CONFLICT;
        }
    fail(err, SCHEMA_E_TRANSITION, "to", "%s -> %s is not a transition of the %s procedure", current, to,
         p->name);
    return JUDGE_FORBIDDEN;
}

const cJSON *schema_transition_stamps(const schema_t *s, const char *procedure, const char *from,
                                      const char *to) {
    const procedure_t *p = proc_find(s, procedure);
    int fi = p ? state_index(p, from) : -1, ti = p ? state_index(p, to) : -1;
    for (int k = 0; fi >= 0 && ti >= 0 && k < p->ntrans; k++)
        if (p->trans[k].to == ti && (p->trans[k].from & BIT(fi))) return p->trans[k].stamp;
    return NULL;
}

int schema_check_passed_guards(const schema_t *s, const char *procedure, const char *status,
                               const cJSON *fields, schema_err_t *err) {
    err_clear(err);
    const procedure_t *p = proc_find(s, procedure);
    int st = p ? state_index(p, status) : -1;
    if (st < 0) return 0;
    uint32_t reached = passed_states(p, st, 0) | BIT(st);
    schema_view_t v = {.procedure = procedure, .status = status, .fields = fields};
    for (int k = 0; k < p->ntrans; k++) {
        const transition_t *t = &p->trans[k];
        /* a transition the record may have taken: into a reached state from a reached one */
        if (!(reached & BIT(t->to)) || !(t->from & reached)) continue;
        for (int g = 0; g < t->nguards; g++)
            if (guard_check(s, &t->guards[g], p->states[t->to], &v, 1, err)) return SCHEMA_E_INVALID;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Write rules: field x role x state                                          */
/* ------------------------------------------------------------------------- */

static schema_write_t write_fail(schema_err_t *err, schema_write_t w, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static schema_write_t write_fail(schema_err_t *err, schema_write_t w, const char *path, const char *fmt,
                                 ...) {
    char msg[MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0) msg[0] = '\0';
    va_end(ap);
    fail(err,
         w == WRITE_FORBIDDEN ? SCHEMA_E_FORBIDDEN
         : w == WRITE_FROZEN  ? SCHEMA_E_FROZEN
                              : SCHEMA_E_INVALID,
         path, "%s", msg);
    return w;
}

static int list_has(const cJSON *list, const char *s) {
    const cJSON *c;
    cJSON_ArrayForEach(c, list) if (cJSON_IsString(c) && strcmp(c->valuestring, s) == 0) return 1;
    return 0;
}

/* The value of field as the change leaves it: the change's own, else the record's. */
static const cJSON *after_change(const cJSON *written, const cJSON *fields, const char *name) {
    const cJSON *v = get(written, name);
    return v ? v : get(fields, name);
}

/* One field written by a create, set or correct. */
static schema_write_t judge_field(const schema_t *s, int op, const rule_t *r, const cJSON *value,
                                  const cJSON *written, const schema_view_t *rec, const schema_writer_t *w,
                                  const char *path, schema_err_t *err) {
    const procedure_t *p = proc_find(s, rec->procedure);
    schema_role_t need = op == OP_CREATE ? r->write_create : r->write_update;
    if (op != OP_CREATE) {
        const cJSON *cur = get(rec->fields, r->name);
        int same = cur ? cJSON_Compare(cur, value, 1) : !is_set(value);
        if (same) return WRITE_OK; /* nothing changes: a phone re-sending what it saw */
    }
    if (need != ROLE_NONE && w->role < need)
        return write_fail(err, WRITE_FORBIDDEN, path, "%s needs role %s or stronger; %s may not %s", r->name,
                          schema_role_name(need), schema_role_name(w->role),
                          op == OP_CREATE ? "set it at create" : "change it");
    if (op != OP_CREATE) {
        if (r->no_clear_from && state_reached(p, rec->status, r->no_clear_from) &&
            (!is_set(value) || cJSON_IsFalse(value)))
            return write_fail(err, WRITE_FROZEN, path, "%s cannot be cleared once the record reached %s",
                              r->name, r->no_clear_from);
        if (r->frozen_from && state_reached(p, rec->status, r->frozen_from) && op != OP_CORRECT)
            return write_fail(err, WRITE_FROZEN, path,
                              "%s is frozen from %s (the record is %s): only a %s's correction changes it",
                              r->name, r->frozen_from, rec->status, schema_role_name(s->correction_role));
    }
    if (!is_set(value)) return WRITE_OK;
    switch (r->write_value) {
    case WV_OWN_UNIT:
        if (op == OP_CREATE && w->role != ROLE_ADMIN && (!w->unit || strcmp(value->valuestring, w->unit)))
            return write_fail(err, WRITE_FORBIDDEN, path, "%s must be your own unit %s", r->name,
                              w->unit ? w->unit : "");
        break;
    case WV_PATROLLED_GRID:
        if (w->role <= ROLE_OFFICER && !list_has(w->grids, value->valuestring))
            return write_fail(err, WRITE_FORBIDDEN, path, "%s %.32s is not a grid you patrol", r->name,
                              value->valuestring);
        break;
    case WV_UNIT_OFFICER: {
        schema_user_info_t u = {0};
        const cJSON *unit = after_change(written, rec->fields, "unit");
        if (!w->lookup) break;
        if (w->lookup(w->lookup_ctx, value->valuestring, &u) != 0)
            return write_fail(err, WRITE_INVALID, path, "%s %.64s is not a user", r->name,
                              value->valuestring);
        if (!u.active || u.role < ROLE_OFFICER || !cJSON_IsString(unit) || strcmp(u.unit, unit->valuestring))
            return write_fail(err, WRITE_INVALID, path,
                              "%s must be an active officer (never an auxiliary) of the record's unit",
                              r->name);
        break;
    }
    default: break;
    }
    if (r->differs_from >= 0) {
        const cJSON *other = after_change(written, rec->fields, s->fields[r->differs_from].name);
        if (is_set(other) && cJSON_Compare(other, value, 1))
            return write_fail(err, WRITE_INVALID, path, "%s must differ from %s (行政处罚法 Art. 42)",
                              r->name, s->fields[r->differs_from].name);
    }
    return WRITE_OK;
}

/* A closed or voided record: only closed_records.append items, by its role. */
static schema_write_t judge_closed(const schema_t *s, int op, const cJSON *change, const schema_view_t *rec,
                                   const schema_writer_t *w, schema_err_t *err) {
    char path[PATH_CAP];
    const char *state = rec->voided ? "voided" : rec->status;
    const cJSON *set = get(change, "set"), *c;
    if (op == OP_CORRECT || cJSON_GetArraySize(set) > 0) {
        path_key(path, "set", set && set->child ? set->child->string : "");
        return write_fail(err, WRITE_FROZEN, set && set->child ? path : "op",
                          "the record is %s: it takes only appended items", state);
    }
    cJSON_ArrayForEach(c, get(change, "append")) {
        path_key(path, "append", c->string);
        if (!list_has(s->closed_append, c->string))
            return write_fail(err, WRITE_FROZEN, path, "the record is %s: %s takes no more items", state,
                              c->string);
        if (w->role < s->closed_role)
            return write_fail(err, WRITE_FORBIDDEN, path, "the record is %s: only a %s adds to %s", state,
                              schema_role_name(s->closed_role), c->string);
    }
    return WRITE_OK;
}

/* ---- masking of personal data ---------------------------------------------- */

static int mask_reader_sees(const rule_t *r, schema_role_t role, int same_unit) {
    if (!r->masked) return 1;
    if (r->mask_unit) return same_unit;
    return role >= r->mask_role && (same_unit || role == ROLE_ADMIN);
}

static int rec_same_unit(const schema_view_t *rec, const schema_writer_t *w) {
    const char *unit = str_of(get(rec->fields, "unit"));
    return !unit || !w->unit || strcmp(unit, w->unit) == 0; /* nothing to compare: not another unit */
}

/* "13812345678" -> "138****5678"; short or non-ASCII text keeps its first
 * character only ("张**"). The string item v is changed in place. */
static void mask_string(cJSON *v) {
    char buf[160];
    const char *t = v->valuestring;
    size_t n = strlen(t), i;
    int ascii = 1;
    for (i = 0; i < n; i++)
        ascii &= (unsigned char)t[i] < 0x80;
    if (ascii && n >= 8 && n < sizeof(buf)) {
        memcpy(buf, t, n + 1);
        for (i = 3; i + 4 < n; i++)
            buf[i] = '*';
    } else {
        size_t first = n ? 1 : 0;
        while (first < n && ((unsigned char)t[first] & 0xC0) == 0x80)
            first++;
        if (first > 4) first = 0;
        memcpy(buf, t, first);
        memcpy(buf + first, "**", 3);
    }
    if (!cJSON_SetValuestring(v, buf)) cJSON_SetValuestring(v, "**"); /* shorter: fits in place */
}

static void mask_object(const rule_t *r, cJSON *obj) {
    cJSON *m;
    cJSON_ArrayForEach(m, obj) {
        int listed = !r->mask_members;
        const cJSON *x;
        cJSON_ArrayForEach(x, r->mask_members) listed |= str_of(x) && strcmp(x->valuestring, m->string) == 0;
        if (listed && cJSON_IsString(m)) mask_string(m);
    }
}

int schema_mask_fields(const schema_t *s, cJSON *fields, const char *unit, schema_role_t role,
                       const char *reader_unit) {
    int same = unit && reader_unit && strcmp(unit, reader_unit) == 0, n = 0;
    for (int i = 0; i < s->nfields; i++) {
        const rule_t *r = &s->fields[i];
        cJSON *v;
        if (!r->masked || mask_reader_sees(r, role, same) ||
            !(v = cJSON_GetObjectItemCaseSensitive(fields, r->name)))
            continue;
        if (cJSON_IsString(v))
            mask_string(v);
        else
            mask_object(r, v);
        n++;
    }
    return n;
}

int schema_field_masked_for(const schema_t *s, const char *field, schema_role_t role, int same_unit) {
    int i = field_index(s, field);
    return i >= 0 && !mask_reader_sees(&s->fields[i], role, same_unit);
}

schema_write_t schema_judge_writes(const schema_t *s, const cJSON *change, const schema_view_t *rec,
                                   const schema_writer_t *w, schema_err_t *err) {
    char path[PATH_CAP];
    schema_write_t res;
    const cJSON *c;
    err_clear(err);
    int op = name_index(op_names, OP_COUNT, str_of(get(change, "op")));
    const cJSON *written = get(change, op == OP_CREATE ? "fields" : "set");
    const procedure_t *p = proc_find(s, rec->procedure);
    int st = p && rec->status ? state_index(p, rec->status) : -1;
    if (op == OP_CORRECT) {
        const char *reason = str_of(get(change, "reason"));
        if (w->role < s->correction_role)
            return write_fail(err, WRITE_FORBIDDEN, "op", "a correction (更正) needs role %s",
                              schema_role_name(s->correction_role));
        if (!reason || !*reason || (long)strlen(reason) > s->correction_reason_max)
            return write_fail(err, WRITE_INVALID, "reason", "a correction needs a reason of 1 to %ld bytes",
                              s->correction_reason_max);
    }
    if (op != OP_CREATE && (rec->voided || (st >= 0 && (p->closed & BIT(st)))))
        return judge_closed(s, op, change, rec, w, err);
    cJSON_ArrayForEach(c, written) {
        int i = field_index(s, c->string);
        if (i < 0) continue; /* the value checks refuse it */
        const rule_t *r = &s->fields[i];
        path_key(path, op == OP_CREATE ? "fields" : "set", c->string);
        if (op != OP_CREATE && !mask_reader_sees(r, w->role, rec_same_unit(rec, w)))
            return write_fail(err, WRITE_FORBIDDEN, path, "%s is masked for you: it cannot be written back",
                              r->name);
        if (op == OP_CREATE && r->policy == POLICY_APPEND) {
            if (r->write_create != ROLE_NONE && w->role < r->write_create && cJSON_GetArraySize(c) > 0)
                return write_fail(err, WRITE_FORBIDDEN, path, "%s needs role %s or stronger", r->name,
                                  schema_role_name(r->write_create));
            continue;
        }
        if ((res = judge_field(s, op, r, c, written, rec, w, path, err)) != WRITE_OK) return res;
    }
    cJSON_ArrayForEach(c, get(change, "append")) {
        int i = field_index(s, c->string);
        if (i < 0) continue;
        const rule_t *r = &s->fields[i];
        path_key(path, "append", c->string);
        if (r->write_update != ROLE_NONE && w->role < r->write_update)
            return write_fail(err, WRITE_FORBIDDEN, path,
                              "%s needs role %s or stronger; %s may not add to it", r->name,
                              schema_role_name(r->write_update), schema_role_name(w->role));
    }
    return WRITE_OK;
}

int schema_status_reached(const schema_t *s, const char *procedure, const char *status, const char *state) {
    return state_reached(proc_find(s, procedure), status, state);
}

const char *schema_case_no_state(const schema_t *s, const char *procedure) {
    const procedure_t *p = proc_find(s, procedure);
    return p && p->case_no_at >= 0 ? p->states[p->case_no_at] : NULL;
}

schema_judgement_t schema_judge_resolution(const schema_t *s, const schema_view_t *rec, const char *to,
                                           schema_role_t role, schema_err_t *err) {
    err_clear(err);
    const procedure_t *p = rec ? proc_find(s, rec->procedure) : NULL;
    int ti = p ? state_index(p, to) : -1, ci = p ? state_index(p, rec->status) : -1;
    if (ti < 0 || ci < 0) {
        fail(err, SCHEMA_E_TRANSITION, "value", "%.64s is not a status of the record's procedure",
             to ? to : "");
        return JUDGE_FORBIDDEN;
    }
    if (ti == ci) return JUDGE_NOOP;
    uint32_t been = passed_states(p, ci, 0) | BIT(ci);
    const transition_t *pick = NULL;
    for (int k = 0; k < p->ntrans && !pick; k++)
        if (p->trans[k].to == ti && (p->trans[k].from & been)) pick = &p->trans[k];
    for (int k = 0; k < p->ntrans && !pick; k++)
        if (p->trans[k].to == ti) pick = &p->trans[k];
    if (!pick) {
        fail(err, SCHEMA_E_TRANSITION, "value", "no transition of the %s procedure leads to %s", p->name, to);
        return JUDGE_FORBIDDEN;
    }
    schema_judgement_t j = judge_allowed(s, p, pick, rec, role, err);
    if (j != JUDGE_APPLY && err) {
        /* the resolution names the guard: path fields.x stays, "to" becomes the value */
        if (strcmp(err->path, "to") == 0) snprintf(err->path, sizeof(err->path), "value");
    }
    return j;
}

int schema_state_count(const schema_t *s, const char *procedure) {
    const procedure_t *p = proc_find(s, procedure);
    return p ? p->nstates : 0;
}

const char *schema_state_name(const schema_t *s, const char *procedure, int i) {
    const procedure_t *p = proc_find(s, procedure);
    return p && i >= 0 && i < p->nstates ? p->states[i] : NULL;
}

const char *schema_state_label(const schema_t *s, const char *procedure, int i) {
    const char *name = schema_state_name(s, procedure, i);
    const cJSON *st = get(get(get(get(s->doc, "procedures"), procedure), "states"), name ? name : "");
    return str_of(get(st, "label"));
}

/* ========================================================================= */
/* Deadlines, calendar, figures                                               */
/* ========================================================================= */

static const char *const deadline_keys[] = {"name",      "kind",
                                            "from",      "until",
                                            "until_set", "procedures",
                                            "days",      "hours",
                                            "unit",      "extend_past_rest_days",
                                            "extension", "hours_from_type",
                                            "basis",     "label",
                                            "note",      "field",
                                            "when",      "start",
                                            "months",    NULL};
static const char *const extension_keys[] = {"days", "field", "note", NULL};

static int deadline_index(const schema_t *s, const char *name) {
    for (int i = 0; name && i < s->ndeadlines; i++)
        if (strcmp(s->deadlines[i].name, name) == 0) return i;
    return -1;
}

/* A state the deadline may end at must be a state of one of its procedures. */
static int until_known(const schema_t *s, const deadline_t *d, const char *state) {
    for (int i = 0; i < s->nprocs; i++)
        if (d->from[i] && state_index(&s->procs[i], state) >= 0) return 1;
    return 0;
}

/* One row of "deadlines". A status deadline runs from `from` (one state for
 * every procedure it lists, or {procedure: state}) until a state of `until`
 * or until a field of `until_set` is set; an evidence deadline names engine
 * events (from captured_at, until bytes_uploaded). */
static int load_deadline(schema_t *s, deadline_t *d, const cJSON *c, const char *path, schema_err_t *err) {
    int rc;
    long v;
    if (!cJSON_IsObject(c)) return load_fail(err, path, "%s: must be an object", path);
    if ((rc = only_keys(c, deadline_keys, path, err))) return rc;
    const char *name = str_of(get(c, "name")), *kind = str_of(get(c, "kind"));
    if (!name || !*name || deadline_index(s, name) >= 0)
        return load_fail(err, path, "%s: needs a unique name", path);
    d->name = name;
    d->start_from = -1;
    if (kind && strcmp(kind, "status") != 0 && strcmp(kind, "evidence") != 0 && strcmp(kind, "field") != 0)
        return load_fail(err, path, "%s.kind: is status, field or evidence", path);
    d->kind = kind && strcmp(kind, "evidence") == 0 ? DL_EVIDENCE
              : kind && strcmp(kind, "field") == 0  ? DL_FIELD
                                                    : DL_STATUS;
    if (get(c, "when")) {
        char x[PATH_CAP];
        path_key(x, path, "when");
        if (d->kind == DL_EVIDENCE)
            return load_fail(err, path, "%s.when: not for an evidence deadline", path);
        if ((rc = load_when(s, get(c, "when"), x, d->when, &d->nwhen, err))) return rc;
    }
    if (d->kind == DL_FIELD) {
        /* Due at the time a field holds (reply_due, rectification.due_at), in
         * every open status of its procedures, until a field of until_set is set. */
        const cJSON *procs = get(c, "procedures"), *until_set = get(c, "until_set");
        const rule_t *r = (d->at_field = str_of(get(c, "field"))) ? rule_at(s, d->at_field) : NULL;
        if (!r || r->type != VT_TIME) return load_fail(err, path, "%s.field: must name a time field", path);
        if (get(c, "from") || get(c, "until") || get(c, "days") || get(c, "hours") || get(c, "unit") ||
            get(c, "start") || get(c, "extension") || get(c, "hours_from_type"))
            return load_fail(err, path, "%s: a field deadline has field, until_set and procedures only",
                             path);
        if (!(d->from = calloc((size_t)(s->nprocs ? s->nprocs : 1), sizeof *d->from)))
            return fail(err, SCHEMA_E_NOMEM, path, "out of memory");
        if (!cJSON_IsArray(procs) || !procs->child)
            return load_fail(err, path, "%s.procedures: must list procedures", path);
        for (const cJSON *pc = procs->child; pc; pc = pc->next) {
            const procedure_t *p = proc_find(s, str_of(pc));
            if (!p) return load_fail(err, path, "%s.procedures: unknown procedure", path);
            d->from[p - s->procs] = p->states[p->initial];
        }
        if (!cJSON_IsArray(until_set) || !until_set->child)
            return load_fail(err, path, "%s.until_set: must be a list of fields", path);
        for (const cJSON *f = until_set->child; f; f = f->next)
            if (!str_of(f) || !rule_at(s, f->valuestring))
                return load_fail(err, path, "%s.until_set: %s is no field", path,
                                 str_of(f) ? f->valuestring : "?");
        d->until_set = until_set;
        d->n = 0;
        return 0;
    }
    if (get(c, "start")) {
        /* Runs from the due time of an earlier row (payment_due), for months. */
        long m;
        if ((d->start_from = deadline_index(s, str_of(get(c, "start")))) < 0 ||
            s->deadlines[d->start_from].kind != DL_STATUS)
            return load_fail(err, path, "%s.start: must name an earlier status deadline", path);
        if (get_long(get(c, "months"), 1, 120, &m) || get(c, "days") || get(c, "hours") || get(c, "unit") ||
            get(c, "extension"))
            return load_fail(err, path, "%s: a deadline with start counts months 1..120 only", path);
        d->months = (int)m;
    } else if (get(c, "months")) {
        return load_fail(err, path, "%s.months: only with start", path);
    }
    /* the baseline schema names no unit: its days were calendar days */
    int unit =
        d->months || !get(c, "unit") ? (int)CAL_UNIT_DAYS : calendar_unit_parse(str_of(get(c, "unit")));
    if (unit < 0) return load_fail(err, path, "%s.unit: is days, working_days or hours", path);
    d->unit = (calendar_unit_t)unit;
    const char *per_type = str_of(get(c, "hours_from_type"));
    if (unit == CAL_UNIT_HOURS) {
        if (get(c, "days")) return load_fail(err, path, "%s: counts hours, not days", path);
        if (per_type) {
            if (get(c, "hours") || d->kind != DL_STATUS)
                return load_fail(err, path, "%s: hours come either from the row or from the type", path);
            d->per_type = per_type, d->n = -1;
        } else if (get_long(get(c, "hours"), 0, MAX_DEADLINE_DAYS * 24L, &v)) {
            return load_fail(err, path, "%s.hours: must be 0..%d", path, MAX_DEADLINE_DAYS * 24);
        } else {
            d->n = (int)v;
        }
    } else {
        if (get(c, "hours") || per_type) return load_fail(err, path, "%s: counts days, not hours", path);
        if (d->months)
            v = 0;
        else if (get_long(get(c, "days"), 0, MAX_DEADLINE_DAYS, &v))
            return load_fail(err, path, "%s.days: must be 0..%d", path, MAX_DEADLINE_DAYS);
        d->n = (int)v;
    }
    const cJSON *ext_rest = get(c, "extend_past_rest_days");
    if (ext_rest && (!cJSON_IsBool(ext_rest) || unit != CAL_UNIT_DAYS))
        return load_fail(err, path, "%s.extend_past_rest_days: true or false, for natural days only", path);
    d->extend_rest = cJSON_IsTrue(ext_rest);
    const cJSON *from = get(c, "from"), *until = get(c, "until"), *until_set = get(c, "until_set");
    const cJSON *procs = get(c, "procedures");
    if (!cJSON_IsArray(until)) return load_fail(err, path, "%s.until: must be a list of states", path);
    for (const cJSON *u = until->child; u; u = u->next)
        if (!str_of(u)) return load_fail(err, path, "%s.until: must hold strings", path);
    d->until = until;
    if (!(d->from = calloc((size_t)(s->nprocs ? s->nprocs : 1), sizeof *d->from)))
        return fail(err, SCHEMA_E_NOMEM, path, "out of memory");
    if (d->kind == DL_EVIDENCE) {
        if (!str_of(from) || !until->child || procs || until_set || get(c, "extension"))
            return load_fail(err, path, "%s: an evidence deadline has from, until and no procedures", path);
        return 0;
    }
    if (cJSON_IsObject(from)) {
        if (procs) return load_fail(err, path, "%s: from {procedure: state} names the procedures", path);
        for (const cJSON *f = from->child; f; f = f->next) {
            const procedure_t *p = proc_find(s, f->string);
            if (!p || !str_of(f) || state_index(p, f->valuestring) < 0)
                return load_fail(err, path, "%s.from.%s: unknown procedure or state", path, f->string);
            d->from[p - s->procs] = f->valuestring;
        }
    } else if (str_of(from) && cJSON_IsArray(procs) && procs->child) {
        for (const cJSON *pc = procs->child; pc; pc = pc->next) {
            const procedure_t *p = proc_find(s, str_of(pc));
            if (!p || state_index(p, from->valuestring) < 0)
                return load_fail(err, path, "%s: unknown procedure or from state", path);
            d->from[p - s->procs] = from->valuestring;
        }
    } else {
        return load_fail(err, path, "%s: a status deadline needs from and its procedures", path);
    }
    for (const cJSON *u = until->child; u; u = u->next)
        if (!until_known(s, d, u->valuestring))
            return load_fail(err, path, "%s.until: %s is no state of its procedures", path, u->valuestring);
    if (until_set) {
        if (!cJSON_IsArray(until_set) || !until_set->child)
            return load_fail(err, path, "%s.until_set: must be a list of fields", path);
        for (const cJSON *f = until_set->child; f; f = f->next)
            if (!str_of(f) || !rule_at(s, f->valuestring))
                return load_fail(err, path, "%s.until_set: %s is no field", path,
                                 str_of(f) ? f->valuestring : "?");
        d->until_set = until_set;
    }
    if (!until->child && !d->until_set)
        return load_fail(err, path, "%s: needs until states or until_set fields", path);
    const cJSON *ext = get(c, "extension");
    if (ext) {
        if (!cJSON_IsObject(ext) || (rc = only_keys(ext, extension_keys, path, err)) ||
            get_long(get(ext, "days"), 1, MAX_DEADLINE_DAYS, &v) || !str_of(get(ext, "field")) ||
            field_index(s, get(ext, "field")->valuestring) < 0)
            return rc ? rc
                      : load_fail(err, path, "%s.extension: needs days 1..%d and a field", path,
                                  MAX_DEADLINE_DAYS);
        d->ext_days = (int)v;
        d->ext_field = get(ext, "field")->valuestring;
    }
    return 0;
}

static int load_deadlines(schema_t *s, const cJSON *list, schema_err_t *err) {
    int n = cJSON_GetArraySize(list), rc;
    if (!cJSON_IsArray(list)) return load_fail(err, "deadlines", "deadlines: must be a list");
    if (n && !(s->deadlines = calloc((size_t)n, sizeof(*s->deadlines))))
        return fail(err, SCHEMA_E_NOMEM, "deadlines", "out of memory");
    for (const cJSON *c = list->child; c; c = c->next) {
        char path[PATH_CAP];
        path_idx(path, "deadlines", s->ndeadlines);
        rc = load_deadline(s, &s->deadlines[s->ndeadlines], c, path, err);
        s->ndeadlines++; /* counted even on failure, so schema_free frees its from */
        if (rc) return rc;
    }
    return 0;
}

static const char *const figures_keys[] = {
    "about",    "accepted", "closed",        "not_filed",     "transferred", "decided",     "paid",
    "disposed", "fine",     "paid_at",       "reply_due",     "reply_at",    "callback_at", "satisfied",
    "orders",   "replies",  "dispose_hours", "first_offence", NULL};
static const char *const first_offence_keys[] = {"field", "equals", NULL};

/* "figures": per figure {procedure: state}; fine and paid_at name fields. */
static int load_figures(schema_t *s, const cJSON *figures, schema_err_t *err) {
    int rc;
    if (!figures) return 0;
    if (!cJSON_IsObject(figures)) return load_fail(err, "figures", "figures: must be an object");
    if ((rc = only_keys(figures, figures_keys, "figures", err))) return rc;
    for (int i = 0; i < FIGURE_COUNT; i++) {
        const cJSON *f = get(figures, figure_names[i]);
        char path[PATH_CAP];
        path_key(path, "figures", figure_names[i]);
        if (!(s->figures[i] = calloc((size_t)(s->nprocs ? s->nprocs : 1), sizeof *s->figures[i])))
            return fail(err, SCHEMA_E_NOMEM, path, "out of memory");
        if (!f) continue;
        if (!cJSON_IsObject(f)) return load_fail(err, path, "%s: must be {procedure: state}", path);
        for (const cJSON *m = f->child; m; m = m->next) {
            const procedure_t *p = proc_find(s, m->string);
            if (!p || !str_of(m) || state_index(p, m->valuestring) < 0)
                return load_fail(err, path, "%s.%s: unknown procedure or state", path, m->string);
            s->figures[i][p - s->procs] = m->valuestring;
        }
    }
    for (int i = 0; i < FIGURE_FIELDS; i++) {
        const cJSON *v = get(figures, figure_field_names[i]);
        char path[PATH_CAP];
        path_key(path, "figures", figure_field_names[i]);
        if (v && !str_of(v)) return load_fail(err, path, "%s: must name a field", path);
        s->figure_fields[i] = str_of(v);
        /* dispose_hours names a member of the types (dispose_within_hours). */
        if (s->figure_fields[i] && strcmp(figure_field_names[i], "dispose_hours") != 0 &&
            !rule_at(s, s->figure_fields[i]))
            return load_fail(err, path, "%s: %s is not a field", path, s->figure_fields[i]);
    }
    const cJSON *fo = get(figures, "first_offence");
    if (fo) {
        if (!cJSON_IsObject(fo) || (rc = only_keys(fo, first_offence_keys, "figures.first_offence", err)) ||
            !str_of(get(fo, "field")) || !str_of(get(fo, "equals")) || !rule_at(s, str_of(get(fo, "field"))))
            return load_fail(err, "figures.first_offence",
                             "figures.first_offence: {field, equals} naming a field");
        s->first_offence_field = str_of(get(fo, "field"));
        s->first_offence_value = str_of(get(fo, "equals"));
    }
    return 0;
}

int schema_deadline_days(const schema_t *s, const char *name) {
    int i = deadline_index(s, name);
    return i >= 0 && s->deadlines[i].unit != CAL_UNIT_HOURS ? s->deadlines[i].n : -1;
}

int schema_deadline_hours(const schema_t *s, const char *name) {
    int i = deadline_index(s, name);
    return i >= 0 && s->deadlines[i].unit == CAL_UNIT_HOURS ? s->deadlines[i].n : -1;
}

int schema_deadline_unit(const schema_t *s, const char *name) {
    int i = deadline_index(s, name);
    return i >= 0 ? (int)s->deadlines[i].unit : -1;
}

/* Flags a year counted without a calendar; logs the first time per year. */
static void note_fallback(const schema_t *cs, int year) {
    schema_t *s = (schema_t *)cs; /* only the atomic flags change */
    if (year < CAL_YEAR_MIN || year >= CAL_YEAR_MIN + 64 * FALLBACK_WORDS) return;
    int bit = year - CAL_YEAR_MIN;
    uint64_t mask = (uint64_t)1 << (bit % 64);
    uint64_t old = __atomic_fetch_or(&s->fallback[bit / 64], mask, __ATOMIC_RELAXED);
    if (!(old & mask))
        fprintf(stderr,
                "casesync: no working-day calendar for %d: deadlines in it count Monday to Friday "
                "(add %d.json to %s)\n",
                year, year, s->calendar_dir[0] ? s->calendar_dir : "the calendar/ folder beside the schema");
}

int schema_due(const schema_t *s, int64_t start_ms, int n, int unit, int extend, int64_t *due_ms) {
    int fallback = 0;
    int rc = calendar_due(s->calendar, start_ms, n, (calendar_unit_t)unit, extend, due_ms, &fallback);
    if (fallback) note_fallback(s, fallback);
    return rc;
}

int schema_deadline_due(const schema_t *s, const char *name, const schema_deadline_record_t *r,
                        int64_t *due_ms) {
    int i = deadline_index(s, name);
    const procedure_t *p = r ? proc_find(s, r->procedure) : NULL;
    if (i < 0 || !p || s->deadlines[i].kind != DL_STATUS || s->deadlines[i].n < 0) return -1;
    const deadline_t *d = &s->deadlines[i];
    const char *from = d->from[p - s->procs];
    const cJSON *t = from ? cJSON_GetObjectItemCaseSensitive(r->entered, from) : NULL;
    if (!cJSON_IsNumber(t)) return -1;
    return schema_due(s, (int64_t)t->valuedouble, d->n, d->unit, d->extend_rest, due_ms) == 0 ? 0 : -1;
}

/* The hours of a per-type deadline for a type, or -1 when the type has none. */
static int type_hours(const schema_t *s, const char *type, const char *member) {
    for (int i = 0; type && i < s->ntypes; i++) {
        if (strcmp(s->types[i].name, type) != 0) continue;
        const cJSON *h = get(s->types[i].obj, member);
        return cJSON_IsNumber(h) ? h->valueint : -1;
    }
    return -1;
}

/* The due time of status deadline d for the record, whatever its status now
 * (court_due starts where payment_due ended). 0 or -1. */
static int start_due(const schema_t *s, const deadline_t *d, int pi, const schema_deadline_record_t *r,
                     int64_t *out) {
    const char *from = d->from[pi];
    const cJSON *since = from ? cJSON_GetObjectItemCaseSensitive(r->entered, from) : NULL;
    int n = d->per_type ? type_hours(s, r->type, d->per_type) : d->n;
    if (!cJSON_IsNumber(since) || n < 0) return -1;
    return schema_due(s, (int64_t)since->valuedouble, n, d->unit, d->extend_rest, out);
}

/* 民法典 Arts. 201-203 with Art. 202: a period of months that follows a due
 * time (00:00 China time after the last day of the first period) ends on the
 * corresponding day of the month `months` later (the month's last day when it
 * has no such day), at 24:00 China time. */
static int add_months_due(int64_t prev_due_ms, int months, int64_t *due_ms) {
    int64_t last_day = schema_china_day(prev_due_ms) - 1; /* the first period's last day */
    time_t t = (time_t)(last_day * 86400);
    struct tm tm;
    if (!gmtime_r(&t, &tm)) return -1;
    int y = tm.tm_year + 1900, m = tm.tm_mon + months, d = tm.tm_mday;
    y += m / 12, m %= 12;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int dim = mdays[m] + (m == 1 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
    struct tm e = {.tm_year = y - 1900, .tm_mon = m, .tm_mday = d > dim ? dim : d};
    time_t et = timegm(&e);
    if (et == (time_t)-1) return -1;
    *due_ms = ((int64_t)et / 86400 + 1) * 86400000LL - 8 * 3600000LL;
    return 0;
}

int schema_late_fee_fen(int64_t fine_fen, int64_t days, int64_t *fee_fen) {
    if (fine_fen < 0 || days < 0 || fine_fen > (int64_t)1e15) return -1;
    if (days > 34) days = 34; /* 34 days of 3% pass the fine: the cap holds from there */
    int64_t fee = fine_fen * 3 * days / 100;
    *fee_fen = fee > fine_fen ? fine_fen : fee;
    return 0;
}

int schema_type_hours(const schema_t *s, const char *type, const char *member) {
    return member ? type_hours(s, type, member) : -1;
}

int schema_item_server_members(const schema_t *s, const char *field, const char **names, const char **types,
                               int max) {
    int i = field_index(s, field), n = 0;
    const rule_t *it = i >= 0 ? s->fields[i].items : NULL;
    for (int m = 0; it && it->type == VT_OBJECT && m < it->nmembers && n < max; m++) {
        if (!it->members[m].server) continue;
        names[n] = it->members[m].name;
        types[n++] = it->members[m].server == 2 ? "received" : vtype_names[it->members[m].type];
    }
    return n;
}

int schema_record_due(const schema_t *s, const schema_deadline_record_t *r, int64_t *due_ms,
                      const char **by) {
    int found = 0;
    *due_ms = 0;
    if (by) *by = NULL;
    const procedure_t *p = r ? proc_find(s, r->procedure) : NULL;
    int st = p && r->status ? state_index(p, r->status) : -1;
    if (st < 0 || (p->closed & BIT(st)) || p->main_pos[st] < 0) return -1;
    int ps = p->main_pos[st], pi = (int)(p - s->procs);
    for (int i = 0; i < s->ndeadlines; i++) {
        const deadline_t *d = &s->deadlines[i];
        int held = 1;
        for (int w = 0; w < d->nwhen && held; w++)
            held = cond_holds(&d->when[w], r->fields);
        if (!held) continue;
        if (d->kind == DL_FIELD) {
            int64_t due;
            const cJSON *at = value_at(r->fields, d->at_field);
            int stop = !d->from[pi] || !cJSON_IsString(at) || schema_parse_time(at->valuestring, &due) != 0;
            for (const cJSON *f = d->until_set->child; f && !stop; f = f->next)
                stop = is_set(value_at(r->fields, f->valuestring));
            if (stop) continue;
            if (!found || due < *due_ms) {
                *due_ms = due;
                if (by) *by = d->name;
            }
            found = 1;
            continue;
        }
        const char *from = d->kind == DL_STATUS ? d->from[pi] : NULL;
        int fs = from ? state_index(p, from) : -1;
        if (fs < 0 || p->main_pos[fs] < 0 || ps < p->main_pos[fs]) continue;
        int pu = -1, stop = 0;
        for (const cJSON *u = d->until->child; u; u = u->next) {
            int q = state_index(p, u->valuestring);
            q = q >= 0 ? p->main_pos[q] : -1;
            if (q >= 0 && (pu < 0 || q < pu)) pu = q;
        }
        if (pu < 0 && !d->until_set) continue; /* ends at no state of this procedure */
        if (pu >= 0 && ps >= pu) continue;
        for (const cJSON *f = d->until_set ? d->until_set->child : NULL; f && !stop; f = f->next)
            stop = is_set(value_at(r->fields, f->valuestring));
        if (stop) continue;
        const cJSON *since = cJSON_GetObjectItemCaseSensitive(r->entered, from);
        if (!cJSON_IsNumber(since)) continue;
        int64_t start = (int64_t)since->valuedouble, due;
        if (d->start_from >= 0) {
            if (start_due(s, &s->deadlines[d->start_from], pi, r, &start) != 0) continue;
            if (add_months_due(start, d->months, &due) != 0) continue;
            if (!found || due < *due_ms) {
                *due_ms = due;
                if (by) *by = d->name;
            }
            found = 1;
            continue;
        }
        int n = d->per_type ? type_hours(s, r->type, d->per_type) : d->n;
        if (n < 0 || schema_due(s, start, n, d->unit, d->extend_rest, &due) != 0) continue;
        if (d->ext_days && is_set(value_at(r->fields, d->ext_field))) {
            /* The extension counts when it was recorded before the period ran out. */
            int64_t at = r->field_at ? r->field_at(r->ctx, d->ext_field) : -1;
            int64_t longer;
            if ((at < 0 || at < due) &&
                schema_due(s, start, n + d->ext_days, d->unit, d->extend_rest, &longer) == 0)
                due = longer;
        }
        if (!found || due < *due_ms) {
            *due_ms = due;
            if (by) *by = d->name;
        }
        found = 1;
    }
    return found ? 0 : -1;
}

const char *schema_figure_state(const schema_t *s, const char *figure, const char *procedure) {
    const procedure_t *p = proc_find(s, procedure);
    for (int i = 0; p && figure && i < FIGURE_COUNT; i++)
        if (strcmp(figure_names[i], figure) == 0) return s->figures[i] ? s->figures[i][p - s->procs] : NULL;
    return NULL;
}

const char *schema_figure_field(const schema_t *s, const char *name) {
    for (int i = 0; name && i < FIGURE_FIELDS; i++)
        if (strcmp(figure_field_names[i], name) == 0) return s->figure_fields[i];
    return NULL;
}

int schema_figure_match(const schema_t *s, const char *figure, const cJSON *fields) {
    if (!figure || strcmp(figure, "first_offence") != 0 || !s->first_offence_field) return 0;
    const cJSON *v = value_at(fields, s->first_offence_field);
    return cJSON_IsString(v) && strcmp(v->valuestring, s->first_offence_value) == 0;
}

#define CALENDAR_FILE_MAX (256 << 10)
#define CALENDAR_FILES_MAX 200

static int cmp_name(const void *a, const void *b) {
    return strcmp((const char *)a, (const char *)b);
}

/* Adds the calendar files (sorted names "YYYY.json", their bytes) to the
 * schema's calendar, and signs them: the signature depends on names and
 * bytes only, so a folder and a built-in copy of the same files sign alike.
 * from: where they came from, kept as the calendar's folder. */
static int calendar_load_files(schema_t *s, const char *from, int n, const char *const *names,
                               const char *const *texts, const size_t *lens, schema_err_t *err) {
    int rc = SCHEMA_OK;
    EVP_MD_CTX *md = NULL;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (!(md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        rc = fail(err, SCHEMA_E_NOMEM, "", "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        char msg[200];
        if (calendar_add_year(s->calendar, texts[i], lens[i], atoi(names[i]), msg, sizeof msg) != 0) {
            rc = fail(err, SCHEMA_E_LOAD, "", "calendar %s/%s: %s", from, names[i], msg);
            goto done;
        }
        if (!EVP_DigestUpdate(md, names[i], strlen(names[i]) + 1) || !EVP_DigestUpdate(md, texts[i], lens[i])) {
            rc = fail(err, SCHEMA_E_LOAD, "", "calendar: SHA-256 failed");
            goto done;
        }
    }
    if (!EVP_DigestFinal_ex(md, digest, &dlen) || dlen != 32) {
        rc = fail(err, SCHEMA_E_LOAD, "", "calendar: SHA-256 failed");
        goto done;
    }
    for (unsigned i = 0; i < dlen; i++) {
        static const char hex[] = "0123456789abcdef";
        s->calendar_sig[2 * i] = hex[digest[i] >> 4];
        s->calendar_sig[2 * i + 1] = hex[digest[i] & 15];
    }
    s->calendar_sig[2 * dlen] = 0;
    snprintf(s->calendar_dir, sizeof s->calendar_dir, "%s", from);
done:
    EVP_MD_CTX_free(md);
    return rc;
}

int schema_load_calendar_texts(schema_t *s, const char *from, int n, const char *const *names,
                               const char *const *texts, const size_t *lens, schema_err_t *err) {
    err_clear(err);
    if (s->calendar_dir[0]) return fail(err, SCHEMA_E_LOAD, "", "calendar: already loaded from %s", s->calendar_dir);
    if (!from || strlen(from) >= sizeof s->calendar_dir) return fail(err, SCHEMA_E_LOAD, "", "calendar: bad source name");
    if (n < 0 || n > CALENDAR_FILES_MAX) return fail(err, SCHEMA_E_LOAD, "", "calendar: %d files", n);
    for (int i = 0; i < n; i++) {
        const char *nm = names[i];
        if (!nm || strlen(nm) != 9 || strcmp(nm + 4, ".json") != 0 || strspn(nm, "0123456789") != 4 ||
            (i > 0 && strcmp(names[i - 1], nm) >= 0))
            return fail(err, SCHEMA_E_LOAD, "", "calendar: names must be sorted YYYY.json");
        if (lens[i] > CALENDAR_FILE_MAX)
            return fail(err, SCHEMA_E_LOAD, "", "calendar %s: larger than %d bytes", nm, CALENDAR_FILE_MAX);
    }
    return calendar_load_files(s, from, n, names, texts, lens, err);
}

int schema_load_calendar_dir(schema_t *s, const char *dir, schema_err_t *err) {
    char names[CALENDAR_FILES_MAX][16], path[1200];
    const char *np[CALENDAR_FILES_MAX], *tp[CALENDAR_FILES_MAX];
    char *bufs[CALENDAR_FILES_MAX];
    size_t lens[CALENDAR_FILES_MAX];
    int n = 0, rc = SCHEMA_OK, nb = 0;
    err_clear(err);
    if (s->calendar_dir[0])
        return fail(err, SCHEMA_E_LOAD, "", "calendar: already loaded from %s", s->calendar_dir);
    if (strlen(dir) >= sizeof s->calendar_dir) return fail(err, SCHEMA_E_LOAD, "", "calendar: path too long");
    DIR *d = opendir(dir);
    if (!d) return fail(err, SCHEMA_E_LOAD, "", "calendar: cannot open %s: %s", dir, strerror(errno));
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *nm = e->d_name;
        if (strlen(nm) != 9 || strcmp(nm + 4, ".json") != 0 || strspn(nm, "0123456789") != 4) continue;
        if (n == CALENDAR_FILES_MAX) {
            closedir(d);
            return fail(err, SCHEMA_E_LOAD, "", "calendar: more than %d files in %s", CALENDAR_FILES_MAX,
                        dir);
        }
        snprintf(names[n++], sizeof names[0], "%.15s", nm);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_name);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%.1023s/%.15s", dir, names[i]);
        char *buf = malloc(CALENDAR_FILE_MAX + 1);
        if (!buf) {
            rc = fail(err, SCHEMA_E_NOMEM, "", "out of memory");
            goto done;
        }
        bufs[nb++] = buf;
        FILE *f = fopen(path, "rb");
        size_t len = f ? fread(buf, 1, CALENDAR_FILE_MAX + 1, f) : 0;
        int bad = !f || ferror(f) || len > CALENDAR_FILE_MAX;
        if (f) fclose(f);
        if (bad) {
            rc = fail(err, SCHEMA_E_LOAD, "", "calendar %s: unreadable or larger than %d bytes", path,
                      CALENDAR_FILE_MAX);
            goto done;
        }
        np[i] = names[i];
        tp[i] = buf;
        lens[i] = len;
    }
    rc = calendar_load_files(s, dir, n, np, tp, lens, err);
done:
    for (int i = 0; i < nb; i++)
        free(bufs[i]);
    return rc;
}

const char *schema_calendar_dir(const schema_t *s) {
    return s->calendar_dir;
}
const char *schema_calendar_sig(const schema_t *s) {
    return s->calendar_sig;
}
const calendar_t *schema_calendar(const schema_t *s) {
    return s->calendar;
}

int schema_calendar_year_kind(const schema_t *s, int year) {
    return calendar_year_kind(s->calendar, year);
}

int schema_calendar_years(const schema_t *s, int *years, int max) {
    return calendar_years(s->calendar, years, max);
}

int schema_calendar_fallbacks(const schema_t *s, int *years, int max) {
    int n = 0;
    for (int w = 0; w < FALLBACK_WORDS; w++) {
        uint64_t bits = __atomic_load_n(&s->fallback[w], __ATOMIC_RELAXED);
        for (int b = 0; b < 64; b++)
            if (bits & ((uint64_t)1 << b)) {
                if (n < max) years[n] = CAL_YEAR_MIN + w * 64 + b;
                n++;
            }
    }
    return n;
}

void schema_calendar_check(const schema_t *s, int64_t now_ms) {
    int y, m, d;
    calendar_date(calendar_day_of(now_ms), &y, &m, &d);
    if (!calendar_year_kind(s->calendar, y)) note_fallback(s, y);
}

/* ========================================================================= */
/* Field value checks                                                         */
/* ========================================================================= */

int schema_check_value(const schema_t *s, const char *field, const cJSON *value, schema_err_t *err) {
    err_clear(err);
    int i = field_index(s, field);
    if (i < 0) return invalid(err, field ? field : "", "is not a field of the schema");
    if (!value || !is_set(value)) return invalid(err, field, "needs a value");
    return check_value(s, &s->fields[i], value, field, err);
}

/* ========================================================================= */
/* Lifecycle migrations                                                       */
/* ========================================================================= */

int schema_lifecycle_version(const schema_t *s) {
    long v;
    return get_long(get(get(s->doc, "lifecycle"), "version"), 1, INT_MAX, &v) ? 1 : (int)v;
}

int schema_state_migration(const schema_t *s, int from_version, const char *procedure, const char *status,
                           const char **to, const char **stamp) {
    const cJSON *m;
    *to = *stamp = NULL;
    cJSON_ArrayForEach(m, get(get(s->doc, "lifecycle"), "migrations")) {
        long fv;
        if (get_long(get(m, "from_version"), 1, INT_MAX, &fv) || fv < from_version) continue;
        const cJSON *rule = get(get(get(m, "states"), procedure ? procedure : ""), status ? status : "");
        const procedure_t *p = proc_find(s, procedure);
        const char *t = str_of(get(rule, "to"));
        if (!t || !p || state_index(p, t) < 0) continue;
        *to = t;
        *stamp = str_of(get(rule, "stamp"));
        return 1;
    }
    return 0;
}

/* ========================================================================= */
/* Who voids, who resolves                                                    */
/* ========================================================================= */

static schema_role_t role_of(const schema_t *s, const char *section, schema_role_t dflt) {
    const cJSON *r = get(get(s->doc, section), "role");
    schema_role_t role = r ? schema_role_parse(str_of(r)) : ROLE_NONE;
    return role == ROLE_NONE ? dflt : role;
}

schema_role_t schema_void_role(const schema_t *s) {
    return role_of(s, "voiding", ROLE_SUPERVISOR);
}
schema_role_t schema_resolve_role(const schema_t *s) {
    return role_of(s, "conflict_resolution", ROLE_SUPERVISOR);
}
schema_role_t schema_correction_role(const schema_t *s) {
    return s->correction_role;
}
