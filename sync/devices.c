/* devices.c -- the devices of a unit for its supervisor, revoking a lost
 * phone, and releasing one that changes hands. A device belongs to the user
 * it is bound to (identity.c binds it at the first login); its unit is that
 * user's unit, and only a supervisor of it or an admin sees or revokes it.
 * A revoked device's tokens answer device_revoked (identity.c checks the flag
 * on every call); its earlier changesets stay. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/valcodec.h"
#include "sync/blobs.h"
#include "sync/engine.h"

#define PULL_NOTE_INTERVAL_MS 60000

/* The unit of a device's user ("" when unknown). */
static void device_unit(MDB_txn *txn, const store_dbs_t *dbs, const cJSON *d, char *unit, size_t n) {
    const char *uid = util_json_str(d, "user_id");
    cJSON *u = NULL;
    unit[0] = 0;
    if (uid && store_get_json(txn, dbs->users, uid, strlen(uid), &u) == 0 && util_json_str(u, "unit"))
        snprintf(unit, n, "%s", util_json_str(u, "unit"));
    cJSON_Delete(u);
}

static int manages(const sync_principal_t *p, const char *unit) {
    return p->role == ROLE_ADMIN || (p->role == ROLE_SUPERVISOR && strcmp(unit, p->unit) == 0);
}

/* missing: {device_id: n} of overdue evidence (blobs.c), or NULL. */
static cJSON *device_view(const cJSON *d, const cJSON *missing) {
    static const char *keys[] = {"device_id", "user_id", "name", "last_seen", "last_push_at", "last_pull_at",
                                 "app_version"};
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(d, keys[i]);
        util_json_add(o, keys[i], v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
    }
    const char *id = util_json_str(d, "device_id");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(missing, id ? id : "");
    cJSON_AddNumberToObject(o, "evidence_missing", cJSON_IsNumber(n) ? n->valuedouble : 0);
    cJSON_AddBoolToObject(o, "revoked", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "revoked")));
    cJSON_AddBoolToObject(o, "wipe", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "wipe")));
    return o;
}

int sync_devices(sync_t *s, const sync_principal_t *p, char **out, sync_error_t *err) {
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    *out = NULL;
    if (p->role != ROLE_ADMIN && p->role != ROLE_SUPERVISOR)
        return sync_fail(err, SYNC_EFORBIDDEN, NULL, "the device list is for supervisors and admins");
    if (store_read_begin(s->st, &txn) != 0) return sync_fail(err, SYNC_EIO, NULL, "cannot read the store");
    cJSON *list = cJSON_CreateArray();
    cJSON *missing = blobs_missing_by_device(s, txn, util_now_ms());
    if (mdb_cursor_open(txn, s->dbs->devices, &cur) == 0) {
        MDB_val k, v;
        for (int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0; r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            cJSON *d = valcodec_decode(v.mv_data, v.mv_size);
            char unit[80];
            device_unit(txn, s->dbs, d, unit, sizeof unit);
            if (d && manages(p, unit)) util_json_push(list, device_view(d, missing));
            cJSON_Delete(d);
        }
        mdb_cursor_close(cur);
    }
    store_read_end(txn);
    cJSON_Delete(missing);
    *out = cJSON_PrintUnformatted(list);
    cJSON_Delete(list);
    return *out ? 0 : sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
}

typedef struct revoke_job {
    sync_t *s;
    const sync_principal_t *p;
    const char *id;
    int wipe;
    cJSON *device; /* out */
    sync_error_t *err;
} revoke_job_t;

static int revoke_run(MDB_txn *txn, void *ctx) {
    revoke_job_t *j = ctx;
    cJSON *d = NULL;
    char unit[80], at[32];
    int rc = store_get_json(txn, j->s->dbs->devices, j->id, strlen(j->id), &d);
    if (rc == SYNC_ENOTFOUND) return sync_fail(j->err, rc, NULL, "no device %s", j->id);
    if (rc) return rc;
    device_unit(txn, j->s->dbs, d, unit, sizeof unit);
    if (!manages(j->p, unit)) {
        cJSON_Delete(d);
        return sync_fail(j->err, SYNC_EFORBIDDEN, NULL, "only a supervisor of the device's unit revokes it");
    }
    util_json_set(d, "revoked", cJSON_CreateTrue());
    /* Once asked to wipe, a device stays asked: a second revoke cannot undo it. */
    util_json_set(d, "wipe", cJSON_CreateBool(j->wipe || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "wipe"))));
    util_json_set(d, "revoked_at", cJSON_CreateString(util_fmt_time(util_now_ms(), at)));
    util_json_set(d, "revoked_by", cJSON_CreateString(j->p->user_id));
    rc = store_put_json(txn, j->s->dbs->devices, j->id, strlen(j->id), d);
    if (rc == 0)
        j->device = d;
    else
        cJSON_Delete(d);
    return rc;
}

int sync_device_revoke(sync_t *s, const sync_principal_t *p, const char *device_id, const cJSON *body,
                       char **out, sync_error_t *err) {
    revoke_job_t j = {.s = s, .p = p, .id = device_id, .err = err};
    *out = NULL;
    if (p->role != ROLE_ADMIN && p->role != ROLE_SUPERVISOR)
        return sync_fail(err, SYNC_EFORBIDDEN, NULL, "only a supervisor or admin revokes devices");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(body, "wipe");
    if (w && !cJSON_IsBool(w)) return sync_fail(err, SYNC_EINVALID, "wipe", "wipe must be true or false");
    j.wipe = cJSON_IsTrue(w);
    int rc = store_write(s->st, revoke_run, &j);
    if (rc) {
        cJSON_Delete(j.device); /* a job the writer discarded after it ran (out of memory) */
        if (err && err->code != rc) sync_fail(err, rc, NULL, "%s", sync_strerror(rc));
        return rc;
    }
    MDB_txn *txn = NULL;
    cJSON *missing = NULL;
    if (store_read_begin(s->st, &txn) == 0) missing = blobs_missing_by_device(s, txn, util_now_ms());
    store_read_end(txn);
    cJSON *v = device_view(j.device, missing);
    cJSON_Delete(missing);
    cJSON_Delete(j.device);
    *out = cJSON_PrintUnformatted(v);
    cJSON_Delete(v);
    return *out ? 0 : sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
}

/* ---- release ------------------------------------------------------------------------ */

typedef struct release_job {
    sync_t *s;
    const sync_principal_t *p; /* NULL: the command line */
    const char *id;
    cJSON *device; /* out */
    sync_error_t *err;
} release_job_t;

static int release_run(MDB_txn *txn, void *ctx) {
    release_job_t *j = ctx;
    cJSON *d = NULL;
    char at[32];
    int64_t epoch = 0;
    int rc = store_get_json(txn, j->s->dbs->devices, j->id, strlen(j->id), &d);
    if (rc == SYNC_ENOTFOUND) return sync_fail(j->err, rc, NULL, "no device %s", j->id);
    if (rc) return sync_fail(j->err, rc, NULL, "reading the device: %s", sync_strerror(rc));
    if (util_json_int(d, "epoch", &epoch) != 0 || epoch < 0) epoch = 0;
    /* A new epoch ends every token of the device; next_changeset_seq stays,
     * so the next owner's changesets never reuse a stored seq. */
    util_json_set(d, "user_id", cJSON_CreateNull());
    util_json_set(d, "epoch", cJSON_CreateNumber((double)(epoch + 1)));
    util_json_set(d, "released_at", cJSON_CreateString(util_fmt_time(util_now_ms(), at)));
    util_json_set(d, "released_by", j->p ? cJSON_CreateString(j->p->user_id) : cJSON_CreateString("casesync"));
    if (!cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(d, "user_id")) ||
        !cJSON_GetObjectItemCaseSensitive(d, "released_by")) {
        cJSON_Delete(d);
        return sync_fail(j->err, SYNC_ENOMEM, NULL, "out of memory");
    }
    rc = store_put_json(txn, j->s->dbs->devices, j->id, strlen(j->id), d);
    if (rc == 0)
        j->device = d;
    else {
        cJSON_Delete(d);
        sync_fail(j->err, rc, NULL, "storing the device: %s", sync_strerror(rc));
    }
    return rc;
}

int sync_device_release(sync_t *s, const sync_principal_t *p, const char *device_id, char **out,
                        sync_error_t *err) {
    release_job_t j = {.s = s, .p = p, .id = device_id, .err = err};
    *out = NULL;
    if (p && p->role != ROLE_ADMIN) return sync_fail(err, SYNC_EFORBIDDEN, NULL, "only an admin releases devices");
    if (!device_id || !*device_id || strlen(device_id) >= sizeof ((sync_principal_t *)0)->device_id)
        return sync_fail(err, SYNC_ENOTFOUND, NULL, "no such device");
    int rc = store_write(s->st, release_run, &j);
    if (rc) {
        if (err && err->code != rc) sync_fail(err, rc, NULL, "%s", sync_strerror(rc));
        return rc;
    }
    cJSON *v = device_view(j.device, NULL);
    cJSON_Delete(j.device);
    *out = v ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(v);
    return *out ? 0 : sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
}

/* ---- last_pull_at ------------------------------------------------------------------- */

typedef struct pulled_job {
    sync_t *s;
    const char *id;
    int64_t now;
} pulled_job_t;

static int pulled_run(MDB_txn *txn, void *ctx) {
    pulled_job_t *j = ctx;
    cJSON *d = NULL;
    char at[32];
    if (store_get_json(txn, j->s->dbs->devices, j->id, strlen(j->id), &d) != 0) return 0;
    util_fmt_time(j->now, at);
    util_json_set(d, "last_pull_at", cJSON_CreateString(at));
    util_json_set(d, "last_seen", cJSON_CreateString(at));
    int rc = store_put_json(txn, j->s->dbs->devices, j->id, strlen(j->id), d);
    cJSON_Delete(d);
    return rc;
}

void sync_device_pulled(sync_t *s, const sync_principal_t *p) {
    MDB_txn *txn = NULL;
    cJSON *d = NULL;
    int64_t now = util_now_ms(), last = 0;
    if (store_read_begin(s->st, &txn) != 0) return;
    if (store_get_json(txn, s->dbs->devices, p->device_id, strlen(p->device_id), &d) == 0) {
        const char *t = util_json_str(d, "last_pull_at");
        if (t) util_parse_time(t, &last);
    }
    store_read_end(txn);
    cJSON_Delete(d);
    if (now - last < PULL_NOTE_INTERVAL_MS) return; /* a pull is not worth an fsync every time */
    pulled_job_t j = {.s = s, .id = p->device_id, .now = now};
    store_write(s->st, pulled_run, &j);
}
