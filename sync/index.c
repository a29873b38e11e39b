/* index.c -- secondary indexes of case records, for GET /v1/cases, stats and
 * the evidence listings.
 *
 * idx keys are  name 0x00 value 0x00 record_id  with numbers as BE64, so a
 * range of one name and value (or of a time) is one cursor walk. A record
 * lists the pairs it is indexed under in rec["ix"]; index_record() diffs the
 * old list against the new one. The evidence db maps each evidence sha256 to
 * the records that reference it (scope for blob reads, missing uploads).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/record.h"

#define INDEX_KEY_MAX 511 /* LMDB's default key limit */

size_t index_key(unsigned char *buf, size_t cap, const char *name, const cJSON *value, const char *id) {
    size_t n = strlen(name), o = 0;
    if (n + 1 > cap) return 0;
    memcpy(buf, name, n);
    buf[n] = 0;
    o = n + 1;
    if (cJSON_IsNumber(value)) {
        if (o + 8 > cap) return 0;
        store_be64(buf + o, (uint64_t)(int64_t)value->valuedouble);
        o += 8;
    } else if (cJSON_IsString(value)) {
        size_t vl = strlen(value->valuestring);
        if (o + vl > cap) return 0;
        memcpy(buf + o, value->valuestring, vl);
        o += vl;
    } else {
        return 0;
    }
    if (!id) return o;
    size_t il = strlen(id);
    if (o + 1 + il > cap) return 0;
    buf[o++] = 0;
    memcpy(buf + o, id, il);
    return o + il;
}

static void pair_add(cJSON *list, const char *name, cJSON *value) {
    cJSON *p = cJSON_CreateArray();
    cJSON_AddItemToArray(p, cJSON_CreateString(name));
    cJSON_AddItemToArray(p, value);
    cJSON_AddItemToArray(list, p);
}

/* The [name, value] pairs a record is indexed under now. */
static cJSON *index_pairs(sync_t *s, const cJSON *rec) {
    cJSON *list = cJSON_CreateArray();
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    static const char *by_field[] = {"unit", "grid", "assignee"};
    for (size_t i = 0; i < sizeof by_field / sizeof by_field[0]; i++) {
        const char *v = util_json_str(f, by_field[i]);
        if (v) pair_add(list, by_field[i], cJSON_CreateString(v));
    }
    const char *status = util_json_str(rec, "status"), *type = util_json_str(rec, "type");
    if (status) pair_add(list, "status", cJSON_CreateString(status));
    if (type) pair_add(list, "type", cJSON_CreateString(type));
    const char *updated = util_json_str(rec, "updated_at");
    int64_t ms;
    if (updated && util_parse_time(updated, &ms) == 0) pair_add(list, "updated", cJSON_CreateNumber((double)ms));
    (void)s;
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
        int rc = store_put_json(txn, s->dbs->evidence, k, 65 + il, e);
        cJSON_Delete(e);
        if (rc) return rc;
    }
    return 0;
}

int index_record(sync_t *s, MDB_txn *txn, cJSON *rec) {
    const char *id = util_json_str(rec, "id");
    unsigned char k[INDEX_KEY_MAX + 1];
    size_t kl;
    int rc = 0;
    if (!id) return SYNC_EIO;
    cJSON *now = index_pairs(s, rec), *p;
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(rec, "ix");
    cJSON_ArrayForEach(p, old) {
        if (pair_in(now, p) || pair_key(k, p, id, &kl) != 0) continue;
        if ((rc = store_del(txn, s->dbs->idx, k, kl)) != 0 && rc != SYNC_ENOTFOUND) goto done;
        rc = 0;
    }
    cJSON_ArrayForEach(p, now) {
        if (pair_in(old, p) || pair_key(k, p, id, &kl) != 0) continue;
        if ((rc = store_put_raw(txn, s->dbs->idx, k, kl, "", 0)) != 0) goto done;
    }
    if ((rc = index_evidence(s, txn, rec, id)) != 0) goto done;
    cJSON_DeleteItemFromObjectCaseSensitive(rec, "ix");
    cJSON_AddItemToObject(rec, "ix", now);
    now = NULL;
done:
    cJSON_Delete(now);
    return rc;
}
