/* migrate.c -- the store format (meta "store_format") and its migration
 * from v1, and moving records written under an earlier lifecycle to the
 * schema's current one (the schema's "lifecycle": which state becomes which).
 *
 * Store format: a fresh store is stamped SYNC_STORE_FORMAT at its first
 * writable open. A store without the stamp but with audit entries was written
 * by an earlier release (v1): sync_open() refuses it until `casesync migrate`
 * has checked its v1 chain and appended the "store_format" entry that starts
 * the canonical chain on the old head (docs/audit.md). A newer format than
 * this release knows is refused, read-only opens included.
 *
 * The store keeps the lifecycle version its records follow in meta
 * "lifecycle" (absent: 1, the baseline). sync_open() checks it: a store
 * behind the schema whose records all sit in states that still mean the
 * same is simply marked current; one holding records that must move is
 * refused until `casesync migrate` has moved them. Each move is a change like
 * any other: a new seq (phones pull it), the record's version + 1, and an
 * audit entry (op "migrate", the old and new status, the rule's note), so
 * `casesync verify` still passes and history shows what happened.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/record.h"
#include "sync/valcodec.h"

#define MIGRATE_BATCH 200 /* records per write job */
#define MIGRATE_USER "casesync-migrate"

/* ---- store format ------------------------------------------------------------ */

static uint64_t format_of(MDB_txn *txn, const store_dbs_t *dbs) {
    uint64_t f = store_meta_u64(txn, dbs, "store_format");
    MDB_stat st;
    if (f) return f;
    return mdb_stat(txn, dbs->log, &st) == 0 && st.ms_entries == 0 ? 0 : 1;
}

static int stamp_job(MDB_txn *txn, void *ctx) {
    sync_t *s = ctx;
    if (format_of(txn, s->dbs) != 0) return 0; /* someone else stamped it, or wrote v1 */
    return store_meta_put_u64(txn, s->dbs, "store_format", SYNC_STORE_FORMAT);
}

int sync_store_format(sync_t *s, uint64_t *format, sync_error_t *err) {
    MDB_txn *txn = NULL;
    int rc = store_read_begin(s->st, &txn);
    *format = 0;
    if (rc) return sync_fail(err, rc, NULL, "cannot read the store");
    *format = format_of(txn, s->dbs);
    store_read_end(txn);
    if (*format != 0 || s->cfg.read_only || audit_writes_v1()) return 0;
    if ((rc = store_write(s->st, stamp_job, s)) != 0)
        return sync_fail(err, rc, NULL, "cannot stamp the store format");
    if ((rc = store_read_begin(s->st, &txn)) != 0) return sync_fail(err, rc, NULL, "cannot read the store");
    *format = format_of(txn, s->dbs);
    store_read_end(txn);
    return 0;
}

typedef struct fjob {
    sync_t *s;
    int64_t now;
    int moved; /* the store went from v1 to v2 */
    char why[200];
} fjob_t;

/* v1 -> v2: the old chain must verify; then one canonical entry on its head. */
static int format_job(MDB_txn *txn, void *ctx) {
    fjob_t *j = ctx;
    const store_dbs_t *dbs = j->s->dbs;
    char head[65], at[32];
    uint64_t entries = 0;
    int ok = 0, rc;
    if (format_of(txn, dbs) != 1) return 0;
    if ((rc = audit_verify(txn, dbs, &ok, &entries, head, j->why, sizeof j->why)) != 0) return rc;
    if (!ok) return SYNC_EINVALID;
    uint64_t seq = store_meta_next(txn, dbs, "seq");
    if (!seq) return SYNC_EIO;
    util_fmt_time(j->now, at);
    cJSON *e = cJSON_CreateObject();
    if (!e || util_json_add(e, "seq", cJSON_CreateNumber((double)seq)) ||
        util_json_add(e, "at", cJSON_CreateString(at)) ||
        util_json_add(e, "received_at", cJSON_CreateString(at)) ||
        util_json_add(e, "user_id", cJSON_CreateString(MIGRATE_USER)) ||
        util_json_add(e, "device_id", cJSON_CreateString("")) ||
        util_json_add(e, "changeset_seq", cJSON_CreateNumber(0)) ||
        util_json_add(e, "op", cJSON_CreateString("store_format")) ||
        util_json_add(e, "reason",
                      cJSON_CreateString("store format v1 -> v2: entries from here on are hashed over "
                                         "RFC 8785 canonical JSON")) ||
        util_json_add(e, "from", cJSON_CreateNumber(1)) ||
        util_json_add(e, "to", cJSON_CreateNumber(SYNC_STORE_FORMAT)) ||
        util_json_add(e, "v1_entries", cJSON_CreateNumber((double)entries)) ||
        util_json_add(e, "v1_head", cJSON_CreateString(head))) {
        cJSON_Delete(e);
        return SYNC_ENOMEM;
    }
    /* The stamp first: audit_verify() reads the boundary from meta. */
    if ((rc = store_meta_put_u64(txn, dbs, "store_format", SYNC_STORE_FORMAT)) ||
        (rc = store_meta_put_u64(txn, dbs, "audit_canonical_from", seq)) ||
        (rc = audit_append(txn, dbs, seq, NULL, e))) {
        cJSON_Delete(e);
        return rc;
    }
    cJSON_Delete(e);
    j->moved = 1;
    return 0;
}

/* The lifecycle version of the store's records. */
static uint64_t store_lifecycle(MDB_txn *txn, const store_dbs_t *dbs) {
    uint64_t v = store_meta_u64(txn, dbs, "lifecycle");
    return v ? v : 1;
}

typedef struct scan {
    char (*ids)[65];
    size_t n, cap;
    uint64_t from;
    int any; /* the store holds records */
} scan_t;

/* Ids of the records that move (all when ids is NULL: only counted). */
static int scan_records(sync_t *s, scan_t *sc, uint64_t *count, sync_error_t *err) {
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc = store_read_begin(s->st, &txn), mrc;
    *count = 0;
    if (rc) return sync_fail(err, rc, NULL, "cannot read the store");
    sc->from = store_lifecycle(txn, s->dbs);
    if (sc->from >= (uint64_t)schema_lifecycle_version(s->schema)) goto out;
    if (mdb_cursor_open(txn, s->dbs->records, &cur) != 0) {
        rc = sync_fail(err, SYNC_EIO, NULL, "cannot read the records");
        goto out;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        cJSON *rec = valcodec_decode(v.mv_data, v.mv_size);
        const char *to, *stamp;
        sc->any = 1;
        if (!rec) {
            rc = sync_fail(err, SYNC_EIO, NULL, "a stored record does not parse");
            break;
        }
        int moves = schema_state_migration(s->schema, (int)sc->from, util_json_str(rec, "procedure"),
                                           util_json_str(rec, "status"), &to, &stamp);
        const char *id = util_json_str(rec, "id");
        if (moves && id && strlen(id) < sizeof sc->ids[0]) {
            (*count)++;
            if (sc->ids) {
                if (sc->n == sc->cap) {
                    size_t cap = sc->cap ? sc->cap * 2 : 256;
                    void *p = realloc(sc->ids, cap * sizeof sc->ids[0]);
                    if (!p) {
                        cJSON_Delete(rec);
                        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
                        break;
                    }
                    sc->ids = p, sc->cap = cap;
                }
                snprintf(sc->ids[sc->n++], sizeof sc->ids[0], "%s", id);
            }
        }
        cJSON_Delete(rec);
    }
out:
    if (cur) mdb_cursor_close(cur);
    store_read_end(txn);
    return rc;
}

typedef struct mjob {
    sync_t *s;
    char (*ids)[65];
    size_t n;
    uint64_t from;
    int64_t now;
    uint64_t moved;
    int mark; /* the last job: mark the store current */
} mjob_t;

/* Moves one record; 0 also when it no longer needs to. */
static int move_one(MDB_txn *txn, mjob_t *j, const char *id) {
    sync_t *s = j->s;
    cJSON *rec = NULL, *entry = NULL;
    const char *to, *stamp;
    char at[32], since[32];
    int rc = record_load(txn, s->dbs, id, &rec);
    if (rc == SYNC_ENOTFOUND) return 0;
    if (rc) return rc;
    const char *procedure = util_json_str(rec, "procedure"), *status = util_json_str(rec, "status");
    if (!schema_state_migration(s->schema, (int)j->from, procedure, status, &to, &stamp)) goto done;
    uint64_t seq = store_meta_next(txn, s->dbs, "seq");
    if (!seq) {
        rc = SYNC_EIO;
        goto done;
    }
    int64_t version = 0, entered = record_meta_at(rec, "status");
    util_json_int(rec, "version", &version);
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(rec, "closed_at");
    int64_t prev_closed = cJSON_IsNumber(cl) ? (int64_t)cl->valuedouble : 0;
    cJSON *fields = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    util_fmt_time(j->now, at);
    util_fmt_time(entered > 0 ? entered : j->now, since);

    entry = cJSON_CreateObject();
    cJSON *af = entry ? cJSON_CreateObject() : NULL, *sf = af ? cJSON_CreateObject() : NULL;
    if (!sf || util_json_add(entry, "seq", cJSON_CreateNumber((double)seq)) ||
        util_json_add(entry, "at", cJSON_CreateString(at)) ||
        util_json_add(entry, "received_at", cJSON_CreateString(at)) ||
        util_json_add(entry, "user_id", cJSON_CreateString(MIGRATE_USER)) ||
        util_json_add(entry, "device_id", cJSON_CreateString("")) ||
        util_json_add(entry, "changeset_seq", cJSON_CreateNumber(0)) ||
        util_json_add(entry, "record_id", cJSON_CreateString(id)) ||
        util_json_add(entry, "op", cJSON_CreateString("migrate")) ||
        util_json_add(entry, "reason",
                      cJSON_CreateString("lifecycle v1 -> v2 (schema lifecycle.migrations)")) ||
        util_json_add(sf, "old", cJSON_CreateString(status)) ||
        util_json_add(sf, "new", cJSON_CreateString(to))) {
        cJSON_Delete(af);
        cJSON_Delete(sf);
        rc = SYNC_ENOMEM;
        goto done;
    }
    if (util_json_add(af, "status", sf)) {
        cJSON_Delete(af);
        rc = SYNC_ENOMEM;
        goto done;
    }
    if (stamp && !util_json_str(fields, stamp)) {
        cJSON *f = cJSON_CreateObject();
        if (!f || util_json_add(f, "old", cJSON_CreateNull()) ||
            util_json_add(f, "new", cJSON_CreateString(since)) || util_json_add(af, stamp, f) ||
            util_json_add(fields, stamp, cJSON_CreateString(since))) {
            cJSON_Delete(af);
            rc = SYNC_ENOMEM;
            goto done;
        }
        record_set_meta(rec, stamp, version + 1, seq, "", j->now);
    }
    if (util_json_add(entry, "fields", af)) {
        rc = SYNC_ENOMEM;
        goto done;
    }
    util_json_set(rec, "status", cJSON_CreateString(to));
    util_json_set(rec, "status_at", cJSON_CreateNumber((double)(entered > 0 ? entered : j->now)));
    record_set_meta(rec, "status", version + 1, seq, "", entered > 0 ? entered : j->now);
    util_json_set(rec, "version", cJSON_CreateNumber((double)(version + 1)));
    util_json_set(rec, "seq", cJSON_CreateNumber((double)seq));
    util_json_set(rec, "updated_at", cJSON_CreateString(at));
    if ((rc = record_store(s, txn, rec, seq, prev_closed))) goto done;
    if ((rc = audit_append(txn, s->dbs, seq, id, entry))) goto done;
    j->moved++;
done:
    cJSON_Delete(entry);
    cJSON_Delete(rec);
    return rc;
}

static int migrate_job(MDB_txn *txn, void *ctx) {
    mjob_t *j = ctx;
    int rc = 0;
    j->moved = 0;
    for (size_t i = 0; i < j->n && !rc; i++)
        rc = move_one(txn, j, j->ids[i]);
    if (!rc && j->mark)
        rc =
            store_meta_put_u64(txn, j->s->dbs, "lifecycle", (uint64_t)schema_lifecycle_version(j->s->schema));
    return rc;
}

int sync_lifecycle_check(sync_t *s, uint64_t *pending, sync_error_t *err) {
    scan_t sc = {0};
    int rc = scan_records(s, &sc, pending, err);
    if (rc || *pending || s->cfg.read_only || sc.from >= (uint64_t)schema_lifecycle_version(s->schema) ||
        !sc.any)
        return rc;
    /* Nothing moves: the store's records are current. (A store without
     * records stays unmarked: whatever writes its first ones decides.) */
    mjob_t j = {.s = s, .from = sc.from, .now = util_now_ms(), .mark = 1};
    rc = store_write(s->st, migrate_job, &j);
    return rc ? sync_fail(err, rc, NULL, "cannot mark the store's lifecycle") : 0;
}

#define RECODE_KEY_MAX 512 /* LMDB's key limit (511) and one */

typedef struct rjob {
    sync_t *s;
    int db;                              /* index into recode_db() */
    unsigned char after[RECODE_KEY_MAX]; /* the last key looked at (after_len 0: none yet) */
    size_t after_len;
    int done;
    uint64_t recoded;
} rjob_t;

/* The dbs whose values are structured (store_put_json); the others hold raw
 * bytes, and the audit log its canonical JSON, which never changes. */
static MDB_dbi recode_db(const store_dbs_t *d, int i) {
    const MDB_dbi all[] = {d->users,     d->tokens,     d->devices,  d->records, d->changesets,
                           d->conflicts, d->rejections, d->evidence, d->uploads, d->blobs};
    return i < (int)(sizeof all / sizeof all[0]) ? all[i] : (MDB_dbi)-1;
}

/* Rewrites in binary the next MIGRATE_BATCH values still stored as JSON text
 * (v1, or written before values became binary). The bytes change, the
 * values do not: no seq, no audit entry. */
static int recode_job(MDB_txn *txn, void *ctx) {
    rjob_t *j = ctx;
    MDB_dbi dbi = recode_db(j->s->dbs, j->db);
    int n = 0, looked = 0, rc = 0, g;
    MDB_cursor *cur;
    MDB_val k, v;
    if (dbi == (MDB_dbi)-1) {
        j->done = 1;
        return 0;
    }
    if (mdb_cursor_open(txn, dbi, &cur) != 0) return SYNC_EIO;
    struct {
        size_t len;
        unsigned char key[RECODE_KEY_MAX];
    } *keys = malloc(MIGRATE_BATCH * sizeof *keys);
    if (!keys) {
        mdb_cursor_close(cur);
        return SYNC_ENOMEM;
    }
    k.mv_size = j->after_len, k.mv_data = j->after;
    g = j->after_len ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    if (g == 0 && j->after_len && k.mv_size == j->after_len && memcmp(k.mv_data, j->after, j->after_len) == 0)
        g = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    for (; g == 0 && n < MIGRATE_BATCH && looked < 64 * MIGRATE_BATCH;
         g = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size >= RECODE_KEY_MAX) continue;
        looked++;
        memcpy(j->after, k.mv_data, k.mv_size);
        j->after_len = k.mv_size;
        if (!v.mv_size || valcodec_is_binary(v.mv_data, v.mv_size)) continue;
        memcpy(keys[n].key, k.mv_data, k.mv_size);
        keys[n++].len = k.mv_size;
    }
    mdb_cursor_close(cur);
    if (g != 0) { /* this db is done: the next one from its start */
        j->db++;
        j->after_len = 0;
    }
    for (int i = 0; i < n && !rc; i++) {
        cJSON *val = NULL;
        if ((rc = store_get_json(txn, dbi, keys[i].key, keys[i].len, &val)) == 0)
            rc = store_put_json(txn, dbi, keys[i].key, keys[i].len, val);
        cJSON_Delete(val);
        j->recoded += !rc;
    }
    free(keys);
    return rc;
}

int sync_migrate(sync_t *s, uint64_t *moved, sync_error_t *err) {
    scan_t sc = {0};
    uint64_t count = 0;
    int rc;
    *moved = 0;
    if (audit_writes_v1())
        return sync_fail(err, SYNC_EBADREQ, NULL, "this process writes format v1 (test mode)");
    fjob_t fj = {.s = s, .now = util_now_ms()};
    if ((rc = store_write(s->st, format_job, &fj)) != 0) {
        if (rc == SYNC_EINVALID)
            return sync_fail(err, rc, NULL, "the v1 audit chain does not verify (%s): nothing migrated",
                             fj.why);
        return sync_fail(err, rc, NULL, "cannot move the store to format v%d", SYNC_STORE_FORMAT);
    }
    /* v1 values are JSON text: rewritten in binary, in batches. */
    rjob_t rj = {.s = s};
    for (int guard = 0; !rj.done && guard < 1 << 24; guard++) {
        if ((rc = store_write(s->st, recode_job, &rj)) != 0)
            return sync_fail(err, rc, NULL, "cannot rewrite values in binary (after %llu)",
                             (unsigned long long)rj.recoded);
    }
    sc.ids = NULL;
    /* ids collected first (a read), then moved in batches (writes) */
    sc.cap = 0;
    char(*first)[65] = malloc(sizeof *first);
    if (!first) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    sc.ids = first, sc.cap = 1;
    if ((rc = scan_records(s, &sc, &count, err))) goto done;
    for (size_t i = 0; i < sc.n || i == 0; i += MIGRATE_BATCH) {
        mjob_t j = {.s = s, .ids = sc.ids + i, .from = sc.from, .now = util_now_ms()};
        j.n = sc.n - i < MIGRATE_BATCH ? sc.n - i : MIGRATE_BATCH;
        j.mark = i + MIGRATE_BATCH >= sc.n;
        if ((rc = store_write(s->st, migrate_job, &j))) {
            rc = sync_fail(err, rc, NULL, "migration stopped after %llu records", (unsigned long long)*moved);
            goto done;
        }
        *moved += j.moved;
        if (sc.n == 0) break;
    }
done:
    free(sc.ids);
    return rc;
}
