/* index.c -- secondary indexes of case records (GET /v1/cases, stats, export),
 * lifecycle times and deadlines, and the evidence index.
 *
 * The layout is described in index.h. A record lists the pairs it is indexed
 * under in rec["ix"]; index_record() diffs the old list against the new one
 * and keeps the equality counters. The evidence db maps each evidence sha256
 * to the records that reference it (scope for blob reads, missing uploads).
 *
 * Deadlines and the states the figures count come from the loaded schema
 * (schema_record_due, schema_figure_state): this file keeps no copy of the
 * schema. Evidence deadlines are counted by the upload side (blobs.c) from
 * the captured_at noted here in the evidence db.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sync/index.h"

#define LAYOUT_VERSION "6" /* bump when the pairs a record gets change */
#define META_GEN "idx_gen" /* BE64: generation of the index (grows with each rebuild) */
#define META_SIG "idx_sig" /* layout version + schema ETag + calendar the index was built under */
#define REBUILD_BATCH 256  /* records per write job of a rebuild */

/* ---- keys ---------------------------------------------------------------------- */

/* Appends one value part (string or BE64 number) at buf+o. New offset, 0 when it does not fit. */
static size_t key_part(unsigned char *buf, size_t cap, size_t o, const cJSON *v) {
    if (cJSON_IsNumber(v)) {
        if (o + 8 > cap) return 0;
        double d = v->valuedouble;
        store_be64(buf + o, d <= 0 ? 0 : (uint64_t)d);
        return o + 8;
    }
    if (cJSON_IsString(v)) {
        size_t vl = strlen(v->valuestring);
        if (o + vl > cap) return 0;
        memcpy(buf + o, v->valuestring, vl);
        return o + vl;
    }
    return 0;
}

/* name 0x00 value, value a string, a number or an array of them joined by 0x00. */
static size_t key_value(unsigned char *buf, size_t cap, const char *name, const cJSON *value) {
    size_t n = strlen(name), o;
    if (n + 1 > cap) return 0;
    memcpy(buf, name, n);
    buf[n] = 0;
    o = n + 1;
    if (!cJSON_IsArray(value)) return key_part(buf, cap, o, value);
    int first = 1;
    const cJSON *part;
    cJSON_ArrayForEach(part, value) {
        if (!first) {
            if (o + 1 > cap) return 0;
            buf[o++] = 0;
        }
        first = 0;
        if (!(o = key_part(buf, cap, o, part))) return 0;
    }
    return first ? 0 : o;
}

size_t index_key(unsigned char *buf, size_t cap, const char *name, const cJSON *value, const char *id) {
    size_t o = key_value(buf, cap, name, value);
    if (!o || !id) return o;
    size_t il = strlen(id);
    if (o + 1 + il > cap) return 0;
    buf[o++] = 0;
    memcpy(buf + o, id, il);
    return o + il;
}

size_t index_count_key(unsigned char *buf, size_t cap, const char *name, const cJSON *value) {
    if (cap < 2) return 0;
    buf[0] = INDEX_COUNT_MARK;
    size_t o = key_value(buf + 1, cap - 1, name, value);
    return o ? o + 1 : 0;
}

uint64_t index_count(MDB_txn *txn, const store_dbs_t *dbs, const char *name, const cJSON *value) {
    unsigned char k[INDEX_KEY_MAX];
    size_t kl = index_count_key(k, sizeof k, name, value);
    MDB_val key = {kl, k}, v;
    if (!kl || mdb_get(txn, dbs->idx, &key, &v) != 0 || v.mv_size != 8) return 0;
    return store_rd64(v.mv_data);
}

/* Is the pair's value one that is counted (a string, or [unit, string])? */
static int pair_counted(const cJSON *value) {
    if (cJSON_IsString(value)) return 1;
    return cJSON_IsArray(value) && cJSON_IsString(cJSON_GetArrayItem(value, cJSON_GetArraySize(value) - 1));
}

static int count_add(MDB_txn *txn, const store_dbs_t *dbs, const char *name, const cJSON *value, int delta) {
    unsigned char k[INDEX_KEY_MAX];
    size_t kl = index_count_key(k, sizeof k, name, value);
    if (!kl) return 0;
    MDB_val key = {kl, k}, v;
    int64_t n = 0;
    if (mdb_get(txn, dbs->idx, &key, &v) == 0 && v.mv_size == 8) n = (int64_t)store_rd64(v.mv_data);
    n += delta;
    if (n <= 0) {
        int rc = store_del(txn, dbs->idx, k, kl);
        return rc == SYNC_ENOTFOUND ? 0 : rc;
    }
    unsigned char be[8];
    store_be64(be, (uint64_t)n);
    return store_put_raw(txn, dbs->idx, k, kl, be, 8);
}

/* ---- lifecycle times ------------------------------------------------------------------- */

static void set_num(cJSON *o, const char *key, double v) {
    util_json_set(o, key, cJSON_CreateNumber(v));
}

static int64_t parse_time_member(const cJSON *rec, const char *key) {
    int64_t ms = 0;
    const char *v = util_json_str(rec, key);
    return v && util_parse_time(v, &ms) == 0 ? ms : 0;
}

int index_life_time(const cJSON *rec, const char *name, int64_t *ms) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rec, "life"), name);
    if (!cJSON_IsNumber(v)) return -1;
    *ms = (int64_t)v->valuedouble;
    return 0;
}

static int64_t field_at(const void *rec, const char *field) {
    int64_t at = record_meta_at(rec, field);
    return at > 0 ? at : -1;
}

/* The value of a dotted field path ("payment.paid_at") in the fields. */
const cJSON *index_field_value(const cJSON *fields, const char *dotted) {
    char part[128];
    const cJSON *v = fields;
    for (const char *p = dotted; v && p && *p;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof part) return NULL;
        memcpy(part, p, n);
        part[n] = 0;
        v = cJSON_GetObjectItemCaseSensitive(v, part);
        p = dot ? dot + 1 : NULL;
    }
    return v;
}

/* The time a dotted time field (reply.at) says, no later than the `at` of the
 * change that wrote its top-level field (the device's time, clamped to the
 * receive time); that `at` alone when the member is absent. -1 when the
 * field is not set. */
static int64_t told_time(const cJSON *rec, const char *dotted) {
    char top[128];
    size_t n = strcspn(dotted, ".");
    if (n >= sizeof top) return -1;
    memcpy(top, dotted, n);
    top[n] = 0;
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(fields, top);
    if (!obj || cJSON_IsNull(obj)) return -1;
    int64_t written = record_meta_at(rec, top), said;
    const cJSON *v = index_field_value(fields, dotted);
    if (cJSON_IsString(v) && util_parse_time(v->valuestring, &said) == 0 && (written <= 0 || said < written))
        return said < 0 ? 0 : said;
    return written > 0 ? written : -1;
}

/* The hotline times of life (figures reply_due, reply_at, callback_at):
 * "reply_due" the platform's deadline, "replied" the reply's time,
 * "callback" the 回访's time (told_time). */
static void life_hotline(sync_t *s, const cJSON *rec, cJSON *life) {
    static const char *const names[][2] = {{"reply_due", "reply_due"}, {"replied", "reply_at"},
                                           {"callback", "callback_at"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *field = schema_figure_field(s->schema, names[i][1]);
        int64_t ms = -1;
        cJSON_DeleteItemFromObjectCaseSensitive(life, names[i][0]);
        if (!field) continue;
        if (i == 0) {
            const cJSON *v = index_field_value(cJSON_GetObjectItemCaseSensitive(rec, "fields"), field);
            if (!cJSON_IsString(v) || util_parse_time(v->valuestring, &ms) != 0) ms = -1;
        } else {
            ms = told_time(rec, field);
        }
        if (ms >= 0) set_num(life, names[i][0], (double)ms);
    }
}

/* The figure times of life: "accepted" and "decided" (first entry of the
 * figure's state), "paid" (the paid_at field, no later than the record's
 * last server time, else the first entry of the paid state). Kept for
 * voided records too: they were accepted. */
static void life_figures(sync_t *s, cJSON *rec, cJSON *life, const cJSON *first) {
    const char *procedure = util_json_str(rec, "procedure");
    static const char *const figures[] = {"accepted", "decided", "paid"};
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++) {
        const char *state = procedure ? schema_figure_state(s->schema, figures[i], procedure) : NULL;
        const cJSON *at = state ? cJSON_GetObjectItemCaseSensitive(first, state) : NULL;
        int64_t ms = cJSON_IsNumber(at) ? (int64_t)at->valuedouble : -1;
        if (i == 2) {
            const char *paid_field = schema_figure_field(s->schema, "paid_at");
            const cJSON *pv = paid_field ? index_field_value(cJSON_GetObjectItemCaseSensitive(rec, "fields"), paid_field)
                                         : NULL;
            int64_t paid, updated = parse_time_member(rec, "updated_at");
            if (cJSON_IsString(pv) && util_parse_time(pv->valuestring, &paid) == 0)
                ms = updated > 0 && paid > updated ? updated : paid;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(life, figures[i]);
        if (ms >= 0) set_num(life, figures[i], (double)ms);
    }
    life_hotline(s, rec, life);
}

/* Brings rec["life"] up to date. old_status: the status the record was
 * indexed under before this change (NULL for a new record). */
static void life_update(sync_t *s, cJSON *rec, const char *old_status) {
    cJSON *life = cJSON_GetObjectItemCaseSensitive(rec, "life");
    if (!cJSON_IsObject(life)) {
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "life");
        life = cJSON_AddObjectToObject(rec, "life");
    }
    if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(life, "opened"))) {
        /* procedure is immutable: its field meta keeps the create's `at`. */
        int64_t opened = record_meta_at(rec, "procedure");
        set_num(life, "opened", (double)(opened > 0 ? opened : parse_time_member(rec, "created_at")));
    }
    cJSON *entered = cJSON_GetObjectItemCaseSensitive(life, "entered");
    if (!cJSON_IsObject(entered)) {
        cJSON_DeleteItemFromObjectCaseSensitive(life, "entered");
        entered = cJSON_AddObjectToObject(life, "entered");
    }
    /* first: {status: ms} of the first entry, which a 返工 does not move. */
    cJSON *first = cJSON_GetObjectItemCaseSensitive(life, "first");
    if (!cJSON_IsObject(first)) {
        cJSON_DeleteItemFromObjectCaseSensitive(life, "first");
        first = cJSON_AddObjectToObject(life, "first");
        /* A record indexed before first times existed: its entry times are the best known. */
        const cJSON *e;
        cJSON_ArrayForEach(e, entered) {
            if (cJSON_IsNumber(e)) set_num(first, e->string, e->valuedouble);
        }
    }
    const char *status = util_json_str(rec, "status"), *procedure = util_json_str(rec, "procedure");
    if (status && (!old_status || strcmp(old_status, status) != 0 ||
                   !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(entered, status)))) {
        int64_t at = record_meta_at(rec, "status");
        set_num(entered, status, (double)(at > 0 ? at : parse_time_member(rec, "updated_at")));
    }
    const cJSON *entered_now = status ? cJSON_GetObjectItemCaseSensitive(entered, status) : NULL;
    if (!first || !cJSON_IsNumber(entered_now)) return; /* out of memory: the writer drops the job */
    if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(first, status)))
        set_num(first, status, entered_now->valuedouble);
    life_figures(s, rec, life, first);
    int voided = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "voided"));
    const cJSON *since = status ? cJSON_GetObjectItemCaseSensitive(entered, status) : NULL;
    int closed = status && procedure && schema_status_is_closed(s->schema, procedure, status);
    cJSON_DeleteItemFromObjectCaseSensitive(life, "closed");
    cJSON_DeleteItemFromObjectCaseSensitive(life, "due");
    cJSON_DeleteItemFromObjectCaseSensitive(life, "due_by");
    if (voided || !status || !procedure) return;
    if (closed) {
        if (cJSON_IsNumber(since)) set_num(life, "closed", since->valuedouble);
        return;
    }
    int64_t due = 0;
    const char *by = NULL;
    schema_deadline_record_t dr = {.procedure = procedure,
                                   .status = status,
                                   .type = util_json_str(rec, "type"),
                                   .entered = entered,
                                   .fields = cJSON_GetObjectItemCaseSensitive(rec, "fields"),
                                   .field_at = field_at,
                                   .ctx = rec};
    if (schema_record_due(s->schema, &dr, &due, &by) == 0) {
        set_num(life, "due", (double)(due > 0 ? due : 0));
        cJSON_AddStringToObject(life, "due_by", by);
    }
}

/* ---- pairs ------------------------------------------------------------------------------ */

static void pair_add(cJSON *list, const char *name, cJSON *value) {
    cJSON *p = cJSON_CreateArray();
    util_json_push(p, cJSON_CreateString(name));
    util_json_push(p, value);
    util_json_push(list, p);
}

static int pair_in(const cJSON *list, const cJSON *pair);

int index_party_key(sync_t *s, const cJSON *party, char out[65]) {
    const char *id = util_json_str(party, "id_no"), *uscc = util_json_str(party, "uscc");
    const char *kind = id && *id ? "id_no" : "uscc", *v = id && *id ? id : uscc;
    unsigned char md[32];
    unsigned int mdn = 0;
    char buf[160];
    if (!v || !*v) return -1;
    int n = snprintf(buf, sizeof buf, "%s:%s", kind, v);
    if (n < 0 || n >= (int)sizeof buf ||
        !HMAC(EVP_sha256(), s->cursor_key, (int)strlen(s->cursor_key), (const unsigned char *)buf, (size_t)n, md,
              &mdn))
        return -1;
    util_hex(md, 32, out);
    return 0;
}

/* [unit, v] */
static cJSON *unit_value(const char *unit, cJSON *v) {
    cJSON *a = cJSON_CreateArray();
    util_json_push(a, cJSON_CreateString(unit));
    util_json_push(a, v);
    return a;
}

/* The [name, value] pairs a record is indexed under now (names in index.h). */
static cJSON *index_pairs(sync_t *s, const cJSON *rec) {
    cJSON *list = cJSON_CreateArray();
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    const char *unit = util_json_str(f, "unit");
    static const char *const by_value[][2] = {
        {"grid", "u.grid"}, {"assignee", "u.assignee"}, {"status", "u.status"}, {"type", "u.type"}};
    if (unit) pair_add(list, "unit", cJSON_CreateString(unit));
    for (size_t i = 0; i < sizeof by_value / sizeof by_value[0]; i++) {
        const char *name = by_value[i][0];
        const char *v = i < 2 ? util_json_str(f, name) : util_json_str(rec, name);
        if (!v) continue;
        pair_add(list, name, cJSON_CreateString(v));
        if (unit) pair_add(list, by_value[i][1], unit_value(unit, cJSON_CreateString(v)));
    }
    static const char *const by_time[][2] = {{"updated", "u.updated"},   {"opened", "u.opened"},
                                             {"closed", "u.closed"},     {"due", "u.due"},
                                             {"accepted", "u.accepted"}, {"decided", "u.decided"},
                                             {"paid", "u.paid"},         {"reply_due", "u.reply_due"},
                                             {"callback", "u.callback"}};
    for (size_t i = 0; i < sizeof by_time / sizeof by_time[0]; i++) {
        int64_t ms;
        if (i == 0) {
            const char *updated = util_json_str(rec, "updated_at");
            if (!updated || util_parse_time(updated, &ms) != 0) continue;
        } else if (index_life_time(rec, by_time[i][0], &ms) != 0) {
            continue;
        }
        if (ms < 0) ms = 0;
        pair_add(list, by_time[i][0], cJSON_CreateNumber((double)ms));
        if (unit) pair_add(list, by_time[i][1], unit_value(unit, cJSON_CreateNumber((double)ms)));
    }
    /* 督办 orders by their issue time (server-stamped issued_at): one entry
     * per distinct time, city-wide and per unit. */
    const char *orders = schema_figure_field(s->schema, "orders");
    const cJSON *it;
    cJSON *seen = cJSON_CreateArray();
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(f, orders ? orders : "supervision")) {
        int64_t ms;
        const char *at = util_json_str(it, "issued_at");
        if (!seen || !at || util_parse_time(at, &ms) != 0) continue;
        cJSON *n = cJSON_CreateNumber((double)(ms < 0 ? 0 : ms));
        if (!n || pair_in(seen, n)) {
            cJSON_Delete(n);
            continue;
        }
        util_json_push(seen, n);
        pair_add(list, "sv", cJSON_CreateNumber(n->valuedouble));
        if (unit) pair_add(list, "u.sv", unit_value(unit, cJSON_CreateNumber(n->valuedouble)));
    }
    cJSON_Delete(seen);
    if (!unit) return list;
    /* The party, by a digest of its id (never the id itself), and the hotline ticket. */
    char party[65];
    if (index_party_key(s, cJSON_GetObjectItemCaseSensitive(f, "party"), party) == 0)
        pair_add(list, "u.party", unit_value(unit, cJSON_CreateString(party)));
    const char *ticket = util_json_str(f, "ticket_no");
    if (ticket) pair_add(list, "u.ticket", unit_value(unit, cJSON_CreateString(ticket)));
    return list;
}

static int pair_key(unsigned char *buf, const cJSON *pair, const char *id, size_t *len) {
    const cJSON *name = cJSON_GetArrayItem(pair, 0), *value = cJSON_GetArrayItem(pair, 1);
    if (!cJSON_IsString(name)) return -1;
    *len = index_key(buf, INDEX_KEY_MAX, name->valuestring, value, id);
    return *len ? 0 : -1;
}

static int pair_in(const cJSON *list, const cJSON *pair) {
    const cJSON *x;
    cJSON_ArrayForEach(x, list) {
        if (cJSON_Compare(x, pair, 1)) return 1;
    }
    return 0;
}

static const char *pair_str(const cJSON *list, const char *name) {
    const cJSON *x;
    cJSON_ArrayForEach(x, list) {
        const cJSON *n = cJSON_GetArrayItem(x, 0), *v = cJSON_GetArrayItem(x, 1);
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0 && cJSON_IsString(v))
            return v->valuestring;
    }
    return NULL;
}

/* ---- evidence ----------------------------------------------------------------------------- */

/* Evidence items seen for the first time get an entry: who pushed it, when. */
static int index_evidence(sync_t *s, MDB_txn *txn, const cJSON *rec, const char *id) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(f, "evidence"), *it;
    unsigned char k[64 + 1 + 80];
    size_t il = strlen(id);
    if (il > 80) return 0;
    cJSON_ArrayForEach(it, items) {
        const char *sha = util_json_str(it, "sha256");
        if (!sha || strlen(sha) != 64) continue;
        memcpy(k, sha, 64);
        k[64] = 0;
        memcpy(k + 65, id, il);
        MDB_val key = {65 + il, k}, v;
        if (mdb_get(txn, s->dbs->evidence, &key, &v) == 0) continue;
        int64_t at = 0;
        const char *updated = util_json_str(rec, "updated_at");
        if (updated) util_parse_time(updated, &at);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "record_id", id);
        cJSON_AddStringToObject(e, "item_id", util_json_str(it, "id") ? util_json_str(it, "id") : "");
        cJSON_AddStringToObject(e, "unit", util_json_str(f, "unit") ? util_json_str(f, "unit") : "");
        cJSON_AddStringToObject(e, "device_id", record_meta_device(rec, "evidence"));
        cJSON_AddNumberToObject(e, "pushed_at", (double)at);
        /* evidence_due runs from capture: the phone's time, never later than the push. */
        int64_t captured;
        const char *cap = util_json_str(it, "captured_at");
        if (cap && util_parse_time(cap, &captured) == 0)
            cJSON_AddNumberToObject(e, "captured_at", (double)(captured < at ? captured : at));
        int rc = store_put_json(txn, s->dbs->evidence, k, 65 + il, e);
        cJSON_Delete(e);
        if (rc) return rc;
    }
    return 0;
}

/* ---- index_record ------------------------------------------------------------------------- */

static void index_sig(sync_t *s, char *buf, size_t cap) {
    const char *etag = schema_etag(s->schema), *cal = schema_calendar_sig(s->schema);
    snprintf(buf, cap, "%s %s %s", LAYOUT_VERSION, etag ? etag : "", cal ? cal : "");
}

/* A store whose first record is indexed by this code needs no rebuild: note
 * the signature it is indexed under. */
static int note_fresh_store(sync_t *s, MDB_txn *txn) {
    MDB_stat st;
    MDB_val key = {strlen(META_SIG), (void *)META_SIG}, v;
    if (mdb_get(txn, s->dbs->meta, &key, &v) == 0) return 0;
    if (mdb_stat(txn, s->dbs->records, &st) != 0 || st.ms_entries != 0) return 0;
    char sig[192];
    index_sig(s, sig, sizeof sig);
    return store_put_raw(txn, s->dbs->meta, META_SIG, strlen(META_SIG), sig, strlen(sig));
}

int index_record(sync_t *s, MDB_txn *txn, cJSON *rec) {
    const store_dbs_t *dbs = s->dbs;
    const char *id = util_json_str(rec, "id");
    unsigned char k[INDEX_KEY_MAX + 1];
    size_t kl;
    int rc = 0;
    if (!id) return SYNC_EIO;
    uint64_t gen = store_meta_u64(txn, dbs, META_GEN);
    const cJSON *ixg = cJSON_GetObjectItemCaseSensitive(rec, "ixg");
    /* Under another generation the counters were reset: the old pairs are
     * removed without counting and the new ones all counted. */
    int stale = !cJSON_IsNumber(ixg) || (uint64_t)ixg->valuedouble != gen;
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(rec, "ix");
    if (!old && (rc = note_fresh_store(s, txn)) != 0) return rc;

    life_update(s, rec, pair_str(old, "status"));
    cJSON *now = index_pairs(s, rec), *p;
    cJSON_ArrayForEach(p, old) {
        if (pair_in(now, p) || pair_key(k, p, id, &kl) != 0) continue;
        if ((rc = store_del(txn, dbs->idx, k, kl)) != 0 && rc != SYNC_ENOTFOUND) goto done;
        rc = 0;
        const cJSON *v = cJSON_GetArrayItem(p, 1);
        if (!stale && pair_counted(v) &&
            (rc = count_add(txn, dbs, cJSON_GetArrayItem(p, 0)->valuestring, v, -1)))
            goto done;
    }
    cJSON_ArrayForEach(p, now) {
        if ((!stale && pair_in(old, p)) || pair_key(k, p, id, &kl) != 0) continue;
        if ((rc = store_put_raw(txn, dbs->idx, k, kl, "", 0)) != 0) goto done;
        const cJSON *v = cJSON_GetArrayItem(p, 1);
        if (pair_counted(v) && (rc = count_add(txn, dbs, cJSON_GetArrayItem(p, 0)->valuestring, v, +1)))
            goto done;
    }
    if ((rc = index_evidence(s, txn, rec, id)) != 0) goto done;
    cJSON_DeleteItemFromObjectCaseSensitive(rec, "ix");
    util_json_add(rec, "ix", now);
    now = NULL;
    set_num(rec, "ixg", (double)gen);
done:
    cJSON_Delete(now);
    return rc;
}

/* ---- rebuild ------------------------------------------------------------------------------ */

static pthread_mutex_t rebuild_mu = PTHREAD_MUTEX_INITIALIZER;

typedef struct rebuild {
    sync_t *s;
    char after[128]; /* last record id done; "" before the first */
    int done;
    uint64_t records;
} rebuild_t;

static int sig_current(sync_t *s) {
    MDB_txn *txn = NULL;
    char want[192], *have = NULL;
    size_t n = 0;
    index_sig(s, want, sizeof want);
    if (store_read_begin(s->st, &txn) != 0) return 0;
    int ok = store_get_raw(txn, s->dbs->meta, META_SIG, strlen(META_SIG), &have, &n) == 0 &&
             n == strlen(want) && memcmp(have, want, n) == 0;
    store_read_end(txn);
    free(have);
    return ok;
}

/* Starts a generation: no signature until done, counters gone. */
static int rebuild_begin_job(MDB_txn *txn, void *ctx) {
    rebuild_t *r = ctx;
    const store_dbs_t *dbs = r->s->dbs;
    uint64_t gen = store_meta_u64(txn, dbs, META_GEN) + 1;
    int rc = store_meta_put_u64(txn, dbs, META_GEN, gen);
    if (rc) return rc;
    rc = store_del(txn, dbs->meta, META_SIG, strlen(META_SIG));
    if (rc && rc != SYNC_ENOTFOUND) return rc;
    rc = 0; /* a store never indexed has no signature yet */
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, dbs->idx, &cur) != 0) return SYNC_EIO;
    unsigned char mark = INDEX_COUNT_MARK;
    for (;;) {
        MDB_val k = {1, &mark}, v;
        if (mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) != 0 ||
            ((unsigned char *)k.mv_data)[0] != INDEX_COUNT_MARK)
            break;
        /* Through store_del, so that a cluster's log carries the delete. */
        unsigned char key[512];
        if (k.mv_size > sizeof key) {
            rc = SYNC_EIO;
            break;
        }
        memcpy(key, k.mv_data, k.mv_size);
        if ((rc = store_del(txn, dbs->idx, key, k.mv_size)) != 0) break;
    }
    mdb_cursor_close(cur);
    return rc;
}

/* Re-indexes the next REBUILD_BATCH records not yet under this generation. */
static int rebuild_batch_job(MDB_txn *txn, void *ctx) {
    rebuild_t *r = ctx;
    sync_t *s = r->s;
    char ids[REBUILD_BATCH][128];
    int n = 0, rc = 0;
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, s->dbs->records, &cur) != 0) return SYNC_EIO;
    size_t al = strlen(r->after);
    MDB_val k = {al, r->after}, v;
    int g = al ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    if (g == 0 && al && k.mv_size == al && memcmp(k.mv_data, r->after, al) == 0)
        g = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    for (; g == 0 && n < REBUILD_BATCH; g = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size >= sizeof ids[0]) continue;
        memcpy(ids[n], k.mv_data, k.mv_size);
        ids[n++][k.mv_size] = 0;
    }
    mdb_cursor_close(cur);
    uint64_t gen = store_meta_u64(txn, s->dbs, META_GEN);
    for (int i = 0; i < n && rc == 0; i++) {
        cJSON *rec = NULL;
        if (record_load(txn, s->dbs, ids[i], &rec) != 0) continue;
        const cJSON *ixg = cJSON_GetObjectItemCaseSensitive(rec, "ixg");
        if (!cJSON_IsNumber(ixg) || (uint64_t)ixg->valuedouble != gen) {
            rc = index_record(s, txn, rec);
            if (rc == 0) rc = record_put(txn, s->dbs, ids[i], rec);
            r->records++;
        }
        cJSON_Delete(rec);
    }
    if (rc) return rc;
    if (n) strcpy(r->after, ids[n - 1]);
    r->done = n < REBUILD_BATCH;
    return 0;
}

static int rebuild_end_job(MDB_txn *txn, void *ctx) {
    rebuild_t *r = ctx;
    char sig[192];
    index_sig(r->s, sig, sizeof sig);
    return store_put_raw(txn, r->s->dbs->meta, META_SIG, strlen(META_SIG), sig, strlen(sig));
}

int index_ensure(sync_t *s, sync_error_t *err) {
    if (s->cfg.read_only || sig_current(s)) return 0;
    pthread_mutex_lock(&rebuild_mu);
    int rc = 0;
    if (!sig_current(s)) {
        rebuild_t r = {.s = s};
        rc = store_write(s->st, rebuild_begin_job, &r);
        while (rc == 0 && !r.done)
            rc = store_write(s->st, rebuild_batch_job, &r);
        if (rc == 0) rc = store_write(s->st, rebuild_end_job, &r);
        if (rc == 0 && r.records)
            fprintf(stderr, "casesync: re-indexed %llu records (index layout or schema changed)\n",
                    (unsigned long long)r.records);
    }
    pthread_mutex_unlock(&rebuild_mu);
    if (rc) return sync_fail(err, rc, NULL, "the case indexes could not be rebuilt: %s", sync_strerror(rc));
    return 0;
}
