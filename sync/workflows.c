/* workflows.c -- the field workflows that read across a unit's cases: 督办
 * orders (GET /v1/supervision), a party's earlier cases (POST
 * /v1/parties/cases), repeat offenders (GET /v1/parties/repeat) and the
 * hotline import (POST /v1/hotline/import).
 *
 * The model is the schema's (orders and replies are append lists of the case,
 * hotline fields are case fields): this file only reads the indexes that
 * index.c keeps (u.sv, u.party, u.ticket) and builds changes that go through
 * the push path (sync_apply_changes), so every write rule holds for them.
 *
 * Caveats:
 * - Party ids are looked up by their keyed digest (index_party_key); the id
 *   itself is never a key, an URL or a log line (lookups are POST bodies).
 * - The lists are capped (WF_MAX items, "truncated": true past it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "sync/index.h"

#define WF_MAX 2000      /* items of one answer */
#define WF_UNIT_MAX 256  /* bytes of a unit name */
#define IMPORT_MAX 1000  /* tickets of one import */

/* ---- scope ------------------------------------------------------------------------ */

/* The unit the caller reads: 0 and out, or an error. min: the weakest role. */
static int wf_unit(const sync_principal_t *p, const char *unit, schema_role_t min, char out[WF_UNIT_MAX + 1],
                   sync_error_t *err) {
    if (unit && !*unit) unit = NULL;
    if (unit && strlen(unit) > WF_UNIT_MAX) return sync_fail(err, SYNC_EBADREQ, "unit", "unit is too long");
    if (p->role < min)
        return sync_fail(err, SYNC_EFORBIDDEN, NULL, "this list needs role %s or stronger", schema_role_name(min));
    if (p->role == ROLE_ADMIN) {
        if (!unit) return sync_fail(err, SYNC_EBADREQ, "unit", "admins name the unit (unit=)");
        snprintf(out, WF_UNIT_MAX + 1, "%s", unit);
        return 0;
    }
    if (unit && strcmp(unit, p->unit) != 0)
        return sync_fail(err, SYNC_EFORBIDDEN, "unit", "unit %s is not your unit", unit);
    snprintf(out, WF_UNIT_MAX + 1, "%s", p->unit);
    return 0;
}

/* Calls fn for each record id under the idx prefix name 0x00 unit 0x00
 * [value 0x00]: numeric values are 8 bytes then 0x00 then the id; string
 * values (value NULL: any) end at 0x00. vkey gets the entry's value part (a
 * string value, or "" for a number). Record ids are visited in key order and
 * may repeat (one record under several values). */
typedef int (*wf_visit_fn)(MDB_txn *txn, const char *id, const char *vkey, void *ctx);

static int wf_walk(sync_t *s, const char *name, const char *unit, const char *value, int numeric, wf_visit_fn fn,
                   void *ctx) {
    unsigned char pre[INDEX_KEY_MAX + 1];
    size_t pl = 0, nl = strlen(name), ul = strlen(unit), vl = value ? strlen(value) : 0;
    if (nl + ul + vl + 3 > sizeof pre) return SYNC_EBADREQ;
    memcpy(pre, name, nl), pl = nl, pre[pl++] = 0;
    memcpy(pre + pl, unit, ul), pl += ul, pre[pl++] = 0;
    if (value) memcpy(pre + pl, value, vl), pl += vl, pre[pl++] = 0;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = store_read_begin(s->st, &txn);
    if (rc) return rc;
    if (mdb_cursor_open(txn, s->dbs->idx, &cur) != 0) {
        store_read_end(txn);
        return SYNC_EIO;
    }
    MDB_val k = {pl, pre}, v;
    for (int r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); r == 0 && rc == 0;
         r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const unsigned char *kb = k.mv_data;
        if (k.mv_size <= pl || memcmp(kb, pre, pl) != 0) break;
        char id[128], vkey[128] = "";
        size_t o = pl;
        if (!value && numeric) {
            o += 9; /* BE64 and its 0x00 */
        } else if (!value) {
            const unsigned char *z = memchr(kb + o, 0, k.mv_size - o);
            if (!z || (size_t)(z - (kb + o)) >= sizeof vkey) continue;
            memcpy(vkey, kb + o, (size_t)(z - (kb + o)));
            vkey[z - (kb + o)] = 0;
            o = (size_t)(z - kb) + 1;
        }
        if (o >= k.mv_size || k.mv_size - o >= sizeof id) continue;
        memcpy(id, kb + o, k.mv_size - o);
        id[k.mv_size - o] = 0;
        rc = fn(txn, id, vkey, ctx);
    }
    mdb_cursor_close(cur);
    store_read_end(txn);
    return rc > 0 ? 0 : rc;
}

static int64_t time_of(const cJSON *o, const char *key) {
    int64_t ms;
    const char *v = util_json_str(o, key);
    return v && util_parse_time(v, &ms) == 0 ? ms : -1;
}

/* ---- 督办 ------------------------------------------------------------------------------ */

sync_sv_state_t sync_sv_state(const cJSON *order, const cJSON *replies, int64_t now_ms, int64_t *done_ms, int *nreplies) {
    const char *id = util_json_str(order, "id");
    int64_t due = time_of(order, "due_at"), done = -1;
    const cJSON *r;
    *nreplies = 0;
    cJSON_ArrayForEach(r, replies) {
        const char *oid = util_json_str(r, "order_id");
        if (!id || !oid || strcmp(id, oid) != 0) continue;
        (*nreplies)++;
        int64_t at = time_of(r, "answered_at");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "done")) && at >= 0 && (done < 0 || at < done))
            done = at;
    }
    *done_ms = done;
    if (done >= 0) return due >= 0 && done > due ? SV_DONE_LATE : SV_DONE;
    return due >= 0 && now_ms > due ? SV_OVERDUE : SV_OPEN;
}

static const char *const sv_names[] = {"open", "overdue", "done", "done_late"};

typedef struct sv_list {
    sync_t *s;
    const sync_principal_t *p;
    const char *want; /* open, overdue, done, all */
    cJSON *items, *seen;
    int64_t now;
    int truncated;
} sv_list_t;

static int sv_want(const char *want, sync_sv_state_t st) {
    if (!strcmp(want, "all")) return 1;
    if (!strcmp(want, "open")) return st == SV_OPEN || st == SV_OVERDUE;
    if (!strcmp(want, "overdue")) return st == SV_OVERDUE;
    return st == SV_DONE || st == SV_DONE_LATE; /* done */
}

static int sv_visit(MDB_txn *txn, const char *id, const char *vkey, void *ctx) {
    sv_list_t *l = ctx;
    cJSON *rec = NULL;
    (void)vkey;
    if (cJSON_GetObjectItemCaseSensitive(l->seen, id)) return 0;
    if (!cJSON_AddTrueToObject(l->seen, id)) return SYNC_ENOMEM;
    if (record_load(txn, l->s->dbs, id, &rec) != 0) return 0;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, "fields"), *o;
    const cJSON *replies = cJSON_GetObjectItemCaseSensitive(f, "supervision_replies");
    const char *assignee = util_json_str(f, "assignee");
    int rc = 0;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(f, "supervision")) {
        const char *to = util_json_str(o, "to");
        if (!to) to = assignee;
        /* Officers see the orders addressed to them. */
        if (l->p->role < ROLE_LEGAL_REVIEWER && (!to || strcmp(to, l->p->user_id) != 0)) continue;
        int64_t done;
        int n;
        sync_sv_state_t st = sync_sv_state(o, replies, l->now, &done, &n);
        if (!sv_want(l->want, st)) continue;
        if (cJSON_GetArraySize(l->items) >= WF_MAX) {
            l->truncated = 1;
            break;
        }
        cJSON *it = cJSON_CreateObject();
        char at[32];
        if (!it || util_json_push(l->items, it) != 0) {
            rc = SYNC_ENOMEM;
            break;
        }
        cJSON_AddStringToObject(it, "case_id", id);
        util_json_add(it, "case_no", util_json_str(f, "case_no") ? cJSON_CreateString(util_json_str(f, "case_no"))
                                                                  : cJSON_CreateNull());
        cJSON_AddStringToObject(it, "unit", util_json_str(f, "unit") ? util_json_str(f, "unit") : "");
        cJSON_AddStringToObject(it, "status", util_json_str(rec, "status") ? util_json_str(rec, "status") : "");
        static const char *const copy[] = {"id", "order_no", "ask", "issued_by", "issued_at", "due_at"};
        for (size_t i = 0; i < sizeof copy / sizeof copy[0]; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, copy[i]);
            util_json_add(it, i == 0 ? "order_id" : copy[i], v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
        }
        util_json_add(it, "to", to ? cJSON_CreateString(to) : cJSON_CreateNull());
        cJSON_AddStringToObject(it, "state", sv_names[st]);
        util_json_add(it, "done_at", done >= 0 ? cJSON_CreateString(util_fmt_time(done, at)) : cJSON_CreateNull());
        /* When the server got that answer (a phone answers offline and syncs later). */
        const char *recv = NULL;
        const cJSON *r;
        cJSON_ArrayForEach(r, replies) {
            const char *oid = util_json_str(r, "order_id"), *oid2 = util_json_str(o, "id");
            if (done >= 0 && !recv && oid && oid2 && strcmp(oid, oid2) == 0 &&
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "done")) && time_of(r, "answered_at") == done)
                recv = util_json_str(r, "received_at");
        }
        util_json_add(it, "received_at", recv ? cJSON_CreateString(recv) : cJSON_CreateNull());
        cJSON_AddNumberToObject(it, "replies", n);
        /* Overdue: escalated to the role above the issuer's (中队长 -> 管理员/大队). */
        cJSON *esc = cJSON_CreateNull();
        const char *by = util_json_str(o, "issued_by");
        cJSON *u = NULL;
        if (st == SV_OVERDUE && by && store_get_json(txn, l->s->dbs->users, by, strlen(by), &u) == 0) {
            schema_role_t r = util_user_role(u);
            cJSON_Delete(esc);
            esc = cJSON_CreateString(schema_role_name(r < ROLE_ADMIN ? (schema_role_t)(r + 1) : ROLE_ADMIN));
        }
        cJSON_Delete(u);
        util_json_add(it, "escalated_to", esc);
    }
    cJSON_Delete(rec);
    return rc;
}

int sync_supervision(sync_t *s, const sync_principal_t *p, const char *state, const char *unit, char **out,
                     sync_error_t *err) {
    char u[WF_UNIT_MAX + 1];
    *out = NULL;
    const char *want = state && *state ? state : "all";
    if (strcmp(want, "all") && strcmp(want, "open") && strcmp(want, "overdue") && strcmp(want, "done"))
        return sync_fail(err, SYNC_EBADREQ, "state", "state is open, overdue, done or all");
    int rc = wf_unit(p, unit, ROLE_OFFICER, u, err);
    if (rc) return rc;
    if ((rc = index_ensure(s, err)) != 0) return rc;
    sv_list_t l = {.s = s, .p = p, .want = want, .items = cJSON_CreateArray(), .seen = cJSON_CreateObject(),
                   .now = util_now_ms()};
    if (!l.items || !l.seen) rc = SYNC_ENOMEM;
    if (!rc) rc = wf_walk(s, "u.sv", u, NULL, 1, sv_visit, &l);
    cJSON_Delete(l.seen);
    if (rc) {
        cJSON_Delete(l.items);
        return sync_fail(err, rc, NULL, "cannot read the supervision orders");
    }
    cJSON *o = cJSON_CreateObject();
    if (!o || util_json_add(o, "items", l.items) != 0) {
        cJSON_Delete(o);
        return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    }
    if (l.truncated) cJSON_AddTrueToObject(o, "truncated");
    *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *out ? 0 : sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
}

/* ---- parties ---------------------------------------------------------------------------- */

typedef struct party_list {
    sync_t *s;
    const sync_principal_t *p;
    const char *unit;
    cJSON *items, *seen;
    const char *group; /* repeat list: the party digest being grouped */
} party_list_t;

static cJSON *party_case(const cJSON *rec, const char *id) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, "fields"), *life = cJSON_GetObjectItemCaseSensitive(rec, "life");
    cJSON *c = cJSON_CreateObject();
    char at[32];
    if (!c) return NULL;
    cJSON_AddStringToObject(c, "id", id);
    static const char *const top[] = {"type", "procedure", "status"};
    for (size_t i = 0; i < 3; i++)
        util_json_add(c, top[i], util_json_str(rec, top[i]) ? cJSON_CreateString(util_json_str(rec, top[i]))
                                                            : cJSON_CreateNull());
    cJSON_AddBoolToObject(c, "voided", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "voided")));
    static const char *const flds[] = {"case_no", "disposition", "no_penalty_reason", "illegal_item_code", "fine_amount"};
    for (size_t i = 0; i < sizeof flds / sizeof flds[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(f, flds[i]);
        util_json_add(c, flds[i], v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
    }
    static const char *const times[][2] = {{"opened", "opened_at"}, {"decided", "decided_at"}};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(life, times[i][0]);
        util_json_add(c, times[i][1], cJSON_IsNumber(t) ? cJSON_CreateString(util_fmt_time((int64_t)t->valuedouble, at))
                                                        : cJSON_CreateNull());
    }
    return c;
}

static int party_visit(MDB_txn *txn, const char *id, const char *vkey, void *ctx) {
    party_list_t *l = ctx;
    cJSON *rec = NULL;
    (void)vkey;
    if (cJSON_GetArraySize(l->items) >= WF_MAX) return 1;
    if (record_load(txn, l->s->dbs, id, &rec) != 0) return 0;
    cJSON *c = party_case(rec, id);
    cJSON_Delete(rec);
    return c && util_json_push(l->items, c) == 0 ? 0 : SYNC_ENOMEM;
}

int sync_party_cases(sync_t *s, const sync_principal_t *p, const cJSON *body, char **out, sync_error_t *err) {
    char u[WF_UNIT_MAX + 1], key[65];
    *out = NULL;
    if (!cJSON_IsObject(body)) return sync_fail(err, SYNC_EINVALID, "", "the body is {\"id_no\"} or {\"uscc\"}");
    const char *id_no = util_json_str(body, "id_no"), *uscc = util_json_str(body, "uscc");
    if ((!id_no || !*id_no) && (!uscc || !*uscc))
        return sync_fail(err, SYNC_EINVALID, "id_no", "give the party's id_no or uscc");
    if ((id_no && strlen(id_no) > 64) || (uscc && strlen(uscc) > 64))
        return sync_fail(err, SYNC_EINVALID, id_no ? "id_no" : "uscc", "at most 64 characters");
    int rc = wf_unit(p, util_json_str(body, "unit"), ROLE_OFFICER, u, err);
    if (rc) return rc;
    cJSON *party = cJSON_CreateObject();
    if (!party) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    if (id_no && *id_no) cJSON_AddStringToObject(party, "id_no", id_no);
    else cJSON_AddStringToObject(party, "uscc", uscc);
    rc = index_party_key(s, party, key);
    cJSON_Delete(party);
    if (rc) return sync_fail(err, SYNC_EINVALID, "id_no", "not a party id");
    if ((rc = index_ensure(s, err)) != 0) return rc;
    party_list_t l = {.s = s, .p = p, .unit = u, .items = cJSON_CreateArray()};
    if (!l.items) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    if ((rc = wf_walk(s, "u.party", u, key, 0, party_visit, &l)) != 0) {
        cJSON_Delete(l.items);
        return sync_fail(err, rc, NULL, "cannot read the cases");
    }
    int decided = 0, first = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, l.items) {
        decided += !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "voided")) &&
                   cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, "decided_at"));
        const char *r = util_json_str(c, "no_penalty_reason");
        first += r && strcmp(r, "first_offence") == 0;
    }
    cJSON *o = cJSON_CreateObject();
    if (!o || util_json_add(o, "cases", l.items) != 0) {
        cJSON_Delete(o);
        return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    }
    cJSON_AddStringToObject(o, "unit", u);
    cJSON_AddNumberToObject(o, "count", cJSON_GetArraySize(l.items));
    cJSON_AddNumberToObject(o, "decided", decided);
    cJSON_AddBoolToObject(o, "first_offence_used", first > 0);
    *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *out ? 0 : sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
}

/* The repeat list walks u.party of the unit in digest order: one party's
 * cases are adjacent. */
typedef struct repeat {
    sync_t *s;
    const sync_principal_t *p;
    int min;
    char cur[128];
    cJSON *group;  /* cases of the current party */
    cJSON *party;  /* the party as the latest case holds it */
    int64_t party_at;
    cJSON *items;
    int truncated;
} repeat_t;

static int repeat_flush(repeat_t *r) {
    int rc = 0;
    if (r->group && cJSON_GetArraySize(r->group) >= r->min) {
        if (cJSON_GetArraySize(r->items) >= WF_MAX) {
            r->truncated = 1;
        } else {
            cJSON *it = cJSON_CreateObject();
            if (!it || util_json_push(r->items, it) != 0) return SYNC_ENOMEM;
            /* The party shown masked as the reader would see it on a case. */
            cJSON *fields = cJSON_CreateObject();
            if (fields && r->party) {
                cJSON_AddItemToObject(fields, "party", r->party);
                r->party = NULL;
                schema_mask_fields(r->s->schema, fields, r->p->role == ROLE_ADMIN ? "" : r->p->unit, r->p->role,
                                   r->p->unit);
                util_json_add(it, "party", cJSON_DetachItemFromObjectCaseSensitive(fields, "party"));
            }
            cJSON_Delete(fields);
            cJSON_AddNumberToObject(it, "count", cJSON_GetArraySize(r->group));
            util_json_add(it, "cases", r->group);
            r->group = NULL;
        }
    }
    cJSON_Delete(r->group);
    cJSON_Delete(r->party);
    r->group = r->party = NULL;
    r->party_at = -1;
    return rc;
}

static int repeat_visit(MDB_txn *txn, const char *id, const char *vkey, void *ctx) {
    repeat_t *r = ctx;
    cJSON *rec = NULL;
    int rc;
    if (strcmp(vkey, r->cur) != 0) {
        if ((rc = repeat_flush(r)) != 0) return rc;
        snprintf(r->cur, sizeof r->cur, "%s", vkey);
    }
    if (!r->group && !(r->group = cJSON_CreateArray())) return SYNC_ENOMEM;
    if (record_load(txn, r->s->dbs, id, &rec) != 0) return 0;
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "voided"))) {
        cJSON *c = party_case(rec, id);
        if (!c || util_json_push(r->group, c) != 0) {
            cJSON_Delete(rec);
            return SYNC_ENOMEM;
        }
        int64_t opened = 0;
        index_life_time(rec, "opened", &opened);
        const cJSON *party = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rec, "fields"), "party");
        if (party && opened >= r->party_at) {
            cJSON_Delete(r->party);
            r->party = cJSON_Duplicate(party, 1);
            r->party_at = opened;
        }
    }
    cJSON_Delete(rec);
    return 0;
}

int sync_repeat_offenders(sync_t *s, const sync_principal_t *p, const char *unit, int min, char **out,
                          sync_error_t *err) {
    char u[WF_UNIT_MAX + 1];
    *out = NULL;
    int rc = wf_unit(p, unit, ROLE_LEGAL_REVIEWER, u, err);
    if (rc) return rc;
    if ((rc = index_ensure(s, err)) != 0) return rc;
    repeat_t r = {.s = s, .p = p, .min = min < 2 ? 2 : min, .items = cJSON_CreateArray(), .party_at = -1};
    if (!r.items) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    rc = wf_walk(s, "u.party", u, NULL, 0, repeat_visit, &r);
    if (rc == 0) rc = repeat_flush(&r);
    cJSON_Delete(r.group);
    cJSON_Delete(r.party);
    if (rc) {
        cJSON_Delete(r.items);
        return sync_fail(err, rc, NULL, "cannot read the cases");
    }
    cJSON *o = cJSON_CreateObject();
    if (!o || util_json_add(o, "items", r.items) != 0) {
        cJSON_Delete(o);
        return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    }
    cJSON_AddStringToObject(o, "unit", u);
    cJSON_AddNumberToObject(o, "min", r.min);
    if (r.truncated) cJSON_AddTrueToObject(o, "truncated");
    *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *out ? 0 : sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
}

/* ---- hotline import ------------------------------------------------------------------------ */

int sync_hotline_record_id(const char *unit, const char *ticket_no, char out[44]) {
    unsigned char md[32];
    unsigned int n = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) && EVP_DigestUpdate(c, unit, strlen(unit) + 1) &&
             EVP_DigestUpdate(c, ticket_no, strlen(ticket_no)) && EVP_DigestFinal_ex(c, md, &n);
    EVP_MD_CTX_free(c);
    if (!ok) return -1;
    memcpy(out, "hl-", 3);
    for (int i = 0; i < 20; i++) snprintf(out + 3 + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* The create change of one ticket, or NULL with *why set. */
static cJSON *ticket_change(const cJSON *t, const char *unit, char rid[44], const char **why) {
    static const char *const copy[] = {"description", "occurred_at", "grid", "address", "location",
                                       "complainant", "reply_due", "ticket_no", "category"};
    const char *ticket = util_json_str(t, "ticket_no"), *type = util_json_str(t, "type");
    const char *procedure = util_json_str(t, "procedure");
    *why = NULL;
    if (!cJSON_IsObject(t)) return *why = "a ticket is an object", NULL;
    if (!ticket || !*ticket || strlen(ticket) > 64) return *why = "ticket_no: 1..64 characters", NULL;
    if (!type) return *why = "type: the case type", NULL;
    if (sync_hotline_record_id(unit, ticket, rid) != 0) return *why = "out of memory", NULL;
    cJSON *ch = cJSON_CreateObject(), *f = ch ? cJSON_AddObjectToObject(ch, "fields") : NULL;
    if (!f) {
        cJSON_Delete(ch);
        return *why = "out of memory", NULL;
    }
    cJSON_AddStringToObject(ch, "op", "create");
    cJSON_AddStringToObject(ch, "record_id", rid);
    cJSON_AddStringToObject(ch, "type", type);
    cJSON_AddStringToObject(f, "procedure", procedure ? procedure : "digital");
    cJSON_AddStringToObject(f, "source", "hotline");
    cJSON_AddStringToObject(f, "unit", unit);
    for (size_t i = 0; i < sizeof copy / sizeof copy[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, copy[i]);
        if (v && !cJSON_IsNull(v)) util_json_add(f, copy[i], cJSON_Duplicate(v, 1));
    }
    return ch;
}

int sync_hotline_import(sync_t *s, const sync_principal_t *p, const cJSON *tickets, const char *unit, char **out,
                        sync_error_t *err) {
    char u[WF_UNIT_MAX + 1];
    *out = NULL;
    int rc = wf_unit(p, unit, ROLE_SUPERVISOR, u, err);
    if (rc) return rc;
    if (!cJSON_IsArray(tickets)) return sync_fail(err, SYNC_EINVALID, "tickets", "tickets must be an array");
    int n = cJSON_GetArraySize(tickets);
    if (n > IMPORT_MAX) return sync_fail(err, SYNC_ETOOLARGE, "tickets", "at most %d tickets at once", IMPORT_MAX);
    cJSON *changes = cJSON_CreateArray(), *items = cJSON_CreateArray(), *res = NULL;
    int created = 0, exists = 0, rejected = 0, k = 0;
    char *applied = NULL;
    const cJSON *t;
    if (!changes || !items) {
        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        goto done;
    }
    cJSON_ArrayForEach(t, tickets) {
        char rid[44];
        const char *why;
        cJSON *it = cJSON_CreateObject();
        if (!it || util_json_push(items, it) != 0) {
            rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
            goto done;
        }
        const char *ticket = util_json_str(t, "ticket_no");
        util_json_add(it, "ticket_no", ticket ? cJSON_CreateString(ticket) : cJSON_CreateNull());
        cJSON *ch = ticket_change(t, u, rid, &why);
        if (!ch) {
            cJSON_AddStringToObject(it, "result", "rejected");
            cJSON_AddStringToObject(it, "error", why);
            rejected++;
            continue;
        }
        cJSON_AddStringToObject(it, "record_id", rid);
        schema_err_t e = {0};
        if (schema_check_shape(s->schema, ch, &e) != 0) {
            cJSON_Delete(ch);
            cJSON_AddStringToObject(it, "result", "rejected");
            cJSON_AddStringToObject(it, "error", e.message);
            rejected++;
            continue;
        }
        cJSON_AddNumberToObject(it, "change", k++);
        util_json_push(changes, ch);
    }
    if (k && (rc = sync_apply_changes(s, p, changes, &applied, err)) != 0) goto done;
    res = applied ? cJSON_Parse(applied) : NULL;
    if (k && !res) {
        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        goto done;
    }
    cJSON *it;
    cJSON_ArrayForEach(it, items) {
        int64_t idx;
        if (util_json_int(it, "change", &idx) != 0) continue;
        cJSON_DeleteItemFromObjectCaseSensitive(it, "change");
        const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(res, "results"), (int)idx);
        const char *st = util_json_str(r, "status");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
        const char *field = util_json_str(e, "field");
        if (st && strcmp(st, "applied") == 0) {
            cJSON_AddStringToObject(it, "result", "created");
            created++;
        } else if (field && strstr(field, "record_id")) {
            cJSON_AddStringToObject(it, "result", "exists"); /* the same ticket, imported before */
            exists++;
        } else {
            cJSON_AddStringToObject(it, "result", "rejected");
            util_json_add(it, "error", e ? cJSON_Duplicate(e, 1) : cJSON_CreateNull());
            rejected++;
        }
    }
    cJSON *o = cJSON_CreateObject();
    if (!o || util_json_add(o, "items", items) != 0) {
        cJSON_Delete(o);
        items = NULL;
        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        goto done;
    }
    items = NULL;
    cJSON_AddNumberToObject(o, "created", created);
    cJSON_AddNumberToObject(o, "exists", exists);
    cJSON_AddNumberToObject(o, "rejected", rejected);
    *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!*out) rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
done:
    free(applied);
    cJSON_Delete(res);
    cJSON_Delete(changes);
    cJSON_Delete(items);
    return rc;
}
