/* record.c -- the stored case record: feeds, visibility, views, field meta. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sync/record.h"

/* ---- feed sets -------------------------------------------------------------- */

static void feed_add(feed_set_t *fs, const char *fmt, const char *a, const char *b) {
    if (fs->n >= FEEDS_MAX) return;
    char buf[FEED_KEY_MAX];
    int n = b ? snprintf(buf, sizeof buf, fmt, a, b) : snprintf(buf, sizeof buf, fmt, a);
    if (n < 0 || n >= (int)sizeof buf || feed_set_has(fs, buf)) return;
    memcpy(fs->key[fs->n++], buf, (size_t)n + 1);
}

int feed_set_has(const feed_set_t *fs, const char *key) {
    for (int i = 0; i < fs->n; i++)
        if (strcmp(fs->key[i], key) == 0) return 1;
    return 0;
}

void record_feeds(const cJSON *rec, feed_set_t *out) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    const char *unit = util_json_str(f, "unit"), *grid = util_json_str(f, "grid");
    const char *assignee = util_json_str(f, "assignee"), *creator = util_json_str(rec, "created_by");
    out->n = 0;
    feed_add(out, "*", "", NULL);
    if (unit) feed_add(out, "u:%s", unit, NULL);
    if (unit && grid) feed_add(out, "g:%s:%s", unit, grid);
    if (assignee) feed_add(out, "a:%s", assignee, NULL);
    if (creator) feed_add(out, "c:%s", creator, NULL);
}

void user_feeds(const char *user_id, schema_role_t role, const char *unit, const cJSON *grids,
                feed_set_t *out) {
    out->n = 0;
    if (role == ROLE_ADMIN) {
        feed_add(out, "*", "", NULL);
        return;
    }
    if (role == ROLE_SUPERVISOR || role == ROLE_LEGAL_REVIEWER) {
        feed_add(out, "u:%s", unit, NULL);
        return;
    }
    const cJSON *g;
    cJSON_ArrayForEach(g, grids) {
        if (cJSON_IsString(g)) feed_add(out, "g:%s:%s", unit, g->valuestring);
    }
    feed_add(out, "a:%s", user_id, NULL);
    feed_add(out, "c:%s", user_id, NULL);
}

/* ---- visibility -------------------------------------------------------------- */

static int json_list_has(const cJSON *list, const char *s) {
    const cJSON *x;
    cJSON_ArrayForEach(x, list) {
        if (cJSON_IsString(x) && strcmp(x->valuestring, s) == 0) return 1;
    }
    return 0;
}

int record_visible(const cJSON *user, const cJSON *rec, int64_t now_ms, int64_t window_ms, int window) {
    schema_role_t role = util_user_role(user);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    const char *uunit = util_json_str(user, "unit"), *uid = util_json_str(user, "id");
    const char *unit = util_json_str(f, "unit"), *grid = util_json_str(f, "grid");
    const char *assignee = util_json_str(f, "assignee"), *creator = util_json_str(rec, "created_by");
    if (role == ROLE_ADMIN) return 1;
    if (!uunit || !uid) return 0;
    int unit_match = unit && strcmp(unit, uunit) == 0;
    if (role == ROLE_SUPERVISOR || role == ROLE_LEGAL_REVIEWER) return unit_match;
    if (role != ROLE_OFFICER && role != ROLE_AUXILIARY) return 0;
    int in = (unit_match && grid && json_list_has(cJSON_GetObjectItemCaseSensitive(user, "grids"), grid)) ||
             (assignee && strcmp(assignee, uid) == 0) ||
             (unit_match && creator && strcmp(creator, uid) == 0); /* a case handed to another unit leaves */
    if (!in) return 0;
    if (window) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(rec, "closed_at");
        if (cJSON_IsNumber(c) && (int64_t)c->valuedouble + window_ms < now_ms) return 0;
    }
    return 1;
}

/* ---- storing: record, feeds, closed index ------------------------------------- */


static size_t feed_entry_key(unsigned char *buf, const char *key, uint64_t seq) {
    size_t n = strlen(key);
    memcpy(buf, key, n);
    buf[n] = 0;
    store_be64(buf + n + 1, seq);
    return n + 9;
}

static int feed_put(MDB_txn *txn, const store_dbs_t *dbs, const char *key, uint64_t seq, char flag,
                    const char *id) {
    unsigned char k[FEED_KEY_MAX + 9];
    char v[80];
    size_t idn = strlen(id);
    if (idn > sizeof v - 1) return SYNC_EIO;
    v[0] = flag;
    memcpy(v + 1, id, idn);
    return store_put_raw(txn, dbs->feeds, k, feed_entry_key(k, key, seq), v, idn + 1);
}

static int feed_del(MDB_txn *txn, const store_dbs_t *dbs, const char *key, uint64_t seq) {
    unsigned char k[FEED_KEY_MAX + 9];
    int rc = store_del(txn, dbs->feeds, k, feed_entry_key(k, key, seq));
    return rc == SYNC_ENOTFOUND ? 0 : rc;
}

static size_t closed_key(unsigned char *buf, int64_t at, const char *id) {
    size_t n = strlen(id);
    store_be64(buf, (uint64_t)at);
    buf[8] = 0;
    memcpy(buf + 9, id, n);
    return n + 9;
}

int record_store(sync_t *s, MDB_txn *txn, cJSON *rec, uint64_t seq, int64_t prev_closed_at) {
    const store_dbs_t *dbs = s->dbs;
    const char *id = util_json_str(rec, "id");
    feed_set_t now;
    int rc = 0;
    if (!id) return SYNC_EIO;
    record_feeds(rec, &now);
    cJSON *feeds = cJSON_GetObjectItemCaseSensitive(rec, "feeds");
    if (!feeds) feeds = cJSON_AddObjectToObject(rec, "feeds");
    cJSON *e;
    cJSON_ArrayForEach(e, feeds) {
        uint64_t oseq = (uint64_t)cJSON_GetArrayItem(e, 0)->valuedouble;
        int left = cJSON_GetArrayItem(e, 1)->valueint;
        int in_now = feed_set_has(&now, e->string);
        if (left && !in_now) continue; /* an old "left" entry stays where it is */
        if ((rc = feed_del(txn, dbs, e->string, oseq)) != 0) return rc;
        if ((rc = feed_put(txn, dbs, e->string, seq, in_now ? 'i' : 'l', id)) != 0) return rc;
        cJSON_ReplaceItemInArray(e, 0, cJSON_CreateNumber((double)seq));
        cJSON_ReplaceItemInArray(e, 1, cJSON_CreateNumber(in_now ? 0 : 1));
        if (left && in_now) util_json_set(rec, "scope_seq", cJSON_CreateNumber((double)seq));
    }
    for (int i = 0; i < now.n; i++) {
        if (cJSON_GetObjectItemCaseSensitive(feeds, now.key[i])) continue;
        if ((rc = feed_put(txn, dbs, now.key[i], seq, 'i', id)) != 0) return rc;
        cJSON *pair = cJSON_CreateArray();
        util_json_push(pair, cJSON_CreateNumber((double)seq));
        util_json_push(pair, cJSON_CreateNumber(0));
        util_json_add(feeds, now.key[i], pair);
        util_json_set(rec, "scope_seq", cJSON_CreateNumber((double)seq));
    }
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(rec, "closed_at");
    int64_t closed_at = cJSON_IsNumber(c) ? (int64_t)c->valuedouble : 0;
    if (closed_at != prev_closed_at) {
        unsigned char k[8 + 1 + 80];
        if (prev_closed_at) {
            rc = store_del(txn, dbs->closed, k, closed_key(k, prev_closed_at, id));
            if (rc != 0 && rc != SYNC_ENOTFOUND) return rc;
        }
        if (closed_at && (rc = store_put_raw(txn, dbs->closed, k, closed_key(k, closed_at, id), "", 0)) != 0)
            return rc;
    }
    if ((rc = index_record(s, txn, rec)) != 0) return rc;
    return record_put(txn, dbs, id, rec);
}

int record_put(MDB_txn *txn, const store_dbs_t *dbs, const char *id, const cJSON *rec) {
    return store_put_json(txn, dbs->records, id, strlen(id), rec);
}

int record_load(MDB_txn *txn, const store_dbs_t *dbs, const char *id, cJSON **out) {
    return store_get_json(txn, dbs->records, id, strlen(id), out);
}

/* ---- field meta ---------------------------------------------------------------
 *
 * Per field: the version and seq of its last change, the device that made it
 * and when, stored as one string "version,seq,at_ms,device". cJSON prints a
 * number above 2^31 with a printf and checks it with a scanf; fifteen fields
 * of four numbers each made that the writer's largest cost. Stores written
 * before keep the array form [version, seq, device, at_ms]; both are read.
 */

/* Decimal digits of v at p; returns the end. */
static char *put_i64(char *p, int64_t v) {
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (v < 0) *p++ = '-';
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (n) *p++ = tmp[--n];
    return p;
}

typedef struct meta {
    int64_t version, at;
    uint64_t seq;
    const char *device;
} meta_t;

static int record_meta(const cJSON *rec, const char *field, meta_t *m) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rec, "fm"), field);
    memset(m, 0, sizeof *m);
    m->device = "";
    if (cJSON_IsString(x)) {
        char *p = x->valuestring;
        m->version = strtoll(p, &p, 10);
        if (*p++ != ',') return 0;
        m->seq = strtoull(p, &p, 10);
        if (*p++ != ',') return 0;
        m->at = strtoll(p, &p, 10);
        if (*p++ != ',') return 0;
        m->device = p;
        return 1;
    }
    if (!cJSON_IsArray(x)) return 0;
    const cJSON *d = cJSON_GetArrayItem(x, 2), *e;
    if ((e = cJSON_GetArrayItem(x, 0)) && cJSON_IsNumber(e)) m->version = (int64_t)e->valuedouble;
    if ((e = cJSON_GetArrayItem(x, 1)) && cJSON_IsNumber(e)) m->seq = (uint64_t)e->valuedouble;
    if ((e = cJSON_GetArrayItem(x, 3)) && cJSON_IsNumber(e)) m->at = (int64_t)e->valuedouble;
    if (cJSON_IsString(d)) m->device = d->valuestring;
    return 1;
}

int64_t record_meta_version(const cJSON *rec, const char *field) {
    meta_t m;
    record_meta(rec, field, &m);
    return m.version;
}

static uint64_t record_meta_seq(const cJSON *rec, const char *field) {
    meta_t m;
    record_meta(rec, field, &m);
    return m.seq;
}

const char *record_meta_device(const cJSON *rec, const char *field) {
    meta_t m;
    record_meta(rec, field, &m);
    return m.device;
}

int64_t record_meta_at(const cJSON *rec, const char *field) {
    meta_t m;
    record_meta(rec, field, &m);
    return m.at;
}

void record_set_meta(cJSON *rec, const char *field, int64_t version, uint64_t seq, const char *device,
                     int64_t at_ms) {
    char buf[64 + 256];
    cJSON *fm = cJSON_GetObjectItemCaseSensitive(rec, "fm");
    if (!fm) fm = cJSON_AddObjectToObject(rec, "fm");
    /* "version,seq,at_ms,device": one per field of every change, so not snprintf. */
    char *p = buf;
    p = put_i64(p, version);
    *p++ = ',';
    p = put_i64(p, (int64_t)seq);
    *p++ = ',';
    p = put_i64(p, at_ms);
    *p++ = ',';
    size_t dn = device ? strlen(device) : 0;
    if (dn > (size_t)(buf + sizeof buf - 1 - p)) dn = (size_t)(buf + sizeof buf - 1 - p);
    memcpy(p, device ? device : "", dn);
    p[dn] = 0;
    util_json_set(fm, field, cJSON_CreateString(buf));
}

void record_set_item_seq(cJSON *rec, const char *field, const char *item_id, uint64_t seq) {
    cJSON *im = cJSON_GetObjectItemCaseSensitive(rec, "im");
    if (!im) im = cJSON_AddObjectToObject(rec, "im");
    cJSON *f = cJSON_GetObjectItemCaseSensitive(im, field);
    if (!f) f = cJSON_AddObjectToObject(im, field);
    cJSON_DeleteItemFromObjectCaseSensitive(f, item_id);
    cJSON_AddNumberToObject(f, item_id, (double)seq);
}

/* ---- views ---------------------------------------------------------------------- */

static void copy_member(cJSON *dst, const char *as, const cJSON *src, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, key);
    util_json_add(dst, as, v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
}

cJSON *record_public(const cJSON *rec) {
    cJSON *o = cJSON_CreateObject();
    copy_member(o, "id", rec, "id");
    copy_member(o, "type", rec, "type");
    copy_member(o, "version", rec, "version");
    copy_member(o, "seq", rec, "seq");
    copy_member(o, "status", rec, "status");
    copy_member(o, "voided", rec, "voided");
    copy_member(o, "fields", rec, "fields");
    copy_member(o, "created_at", rec, "created_at");
    copy_member(o, "created_by", rec, "created_by");
    copy_member(o, "updated_at", rec, "updated_at");
    copy_member(o, "conflicts", rec, "conflicts");
    return o;
}

/* As copy_member, moving the member out of src instead of copying it. */
static void take_member(cJSON *dst, const char *as, cJSON *src, const char *key) {
    cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(src, key);
    util_json_add(dst, as, v ? v : cJSON_CreateNull());
}

static void dup_member(cJSON *dst, const char *as, cJSON *src, const char *key) {
    copy_member(dst, as, src, key);
}

/* take: move the members out of rec (the pull's copy, deleted next) instead of copying them. */
static cJSON *upsert_item(cJSON *rec, int full, uint64_t since, int take) {
    cJSON *o = cJSON_CreateObject();
    void (*member)(cJSON *, const char *, cJSON *, const char *) = take ? take_member : dup_member;
    cJSON_AddStringToObject(o, "op", "upsert");
    member(o, "record_id", rec, "id");
    member(o, "type", rec, "type");
    member(o, "version", rec, "version");
    member(o, "seq", rec, "seq");
    member(o, "status", rec, "status");
    member(o, "voided", rec, "voided");
    cJSON_AddBoolToObject(o, "full", full);
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    if (full) {
        member(o, "fields", rec, "fields");
        member(o, "created_at", rec, "created_at");
        member(o, "created_by", rec, "created_by");
        member(o, "updated_at", rec, "updated_at");
    } else {
        cJSON *out = cJSON_AddObjectToObject(o, "fields"), *appended = NULL;
        const cJSON *im = cJSON_GetObjectItemCaseSensitive(rec, "im");
        const cJSON *fm = cJSON_GetObjectItemCaseSensitive(rec, "fm"), *m;
        cJSON_ArrayForEach(m, fm) {
            const char *name = m->string;
            if (strcmp(name, "status") == 0 || strcmp(name, "voided") == 0) continue;
            if (record_meta_seq(rec, name) <= since) continue;
            const cJSON *items = cJSON_GetObjectItemCaseSensitive(im, name);
            const cJSON *val = cJSON_GetObjectItemCaseSensitive(fields, name);
            if (items) {
                /* An append list: only the items added after the cursor. */
                cJSON *list = NULL, *it;
                cJSON_ArrayForEach(it, val) {
                    const char *iid = util_json_str(it, "id");
                    const cJSON *s = iid ? cJSON_GetObjectItemCaseSensitive(items, iid) : NULL;
                    if (!s || (uint64_t)s->valuedouble <= since) continue;
                    if (!appended) appended = cJSON_AddObjectToObject(o, "appended");
                    if (!list) list = cJSON_AddArrayToObject(appended, name);
                    util_json_push(list, cJSON_Duplicate(it, 1));
                }
            } else {
                util_json_add(out, name, val ? cJSON_Duplicate(val, 1) : cJSON_CreateNull());
            }
        }
    }
    member(o, "conflicts", rec, "conflicts");
    return o;
}

cJSON *record_upsert_item(const cJSON *rec, int full, uint64_t since) {
    return upsert_item((cJSON *)rec, full, since, 0); /* take 0: rec is only read */
}

cJSON *record_upsert_item_take(cJSON *rec, int full, uint64_t since) {
    return upsert_item(rec, full, since, 1);
}

void record_mask_unit(const schema_t *schema, cJSON *item, const char *rec_unit, schema_role_t role, const char *unit) {
    cJSON *fields = item ? cJSON_GetObjectItemCaseSensitive(item, "fields") : NULL;
    if (cJSON_IsObject(fields)) schema_mask_fields(schema, fields, rec_unit, role, unit);
}

void record_mask(const schema_t *schema, cJSON *item, const cJSON *rec, schema_role_t role, const char *unit) {
    record_mask_unit(schema, item, util_json_str(cJSON_GetObjectItemCaseSensitive(rec, "fields"), "unit"), role,
                     unit);
}

int record_assign_case_no(MDB_txn *txn, const store_dbs_t *dbs, cJSON *rec, int64_t now_ms, cJSON **assigned) {
    cJSON *fields = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    *assigned = NULL;
    if (util_json_str(fields, "case_no")) return 0;
    const char *unit = util_json_str(fields, "unit");
    time_t t = (time_t)(now_ms / 1000) + 8 * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    char key[128], no[128];
    snprintf(key, sizeof key, "case_no:%s:%04d", unit ? unit : "", tm.tm_year + 1900);
    uint64_t n = store_meta_next(txn, dbs, key);
    if (!n) return SYNC_EIO;
    snprintf(no, sizeof no, "%s-%04d-%06llu", unit ? unit : "", tm.tm_year + 1900, (unsigned long long)n);
    cJSON *v = cJSON_CreateString(no);
    if (!v) return SYNC_ENOMEM;
    util_json_set(fields, "case_no", v);
    *assigned = v;
    return 0;
}

schema_view_t record_view(const cJSON *rec, int64_t now_ms) {
    const cJSON *since = cJSON_GetObjectItemCaseSensitive(rec, "status_at");
    schema_view_t v = {
        .procedure = util_json_str(rec, "procedure"),
        .status = util_json_str(rec, "status"),
        .voided = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "voided")),
        .fields = cJSON_GetObjectItemCaseSensitive(rec, "fields"),
        .status_since_ms =
            cJSON_IsNumber(since) ? (int64_t)since->valuedouble : record_meta_at(rec, "status"),
        .now_ms = now_ms,
    };
    return v;
}
