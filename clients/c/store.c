/* store.c -- the phone's local LMDB store: open, typed get/put, meta values.
 *
 * Every call here runs under h->lock (see internal.h), so no other
 * transaction of this process is open when the map has to grow.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clients/c/internal.h"

static const char *const db_names[CS_DB_COUNT] = {"meta",   "base",    "view",    "changes", "rchanges",
                                                  "outbox", "notices", "uploads", "seen"};

int cs__lmdb_rc(int mrc) {
    if (mrc == 0) return 0;
    if (mrc == MDB_NOTFOUND) return CASESYNC_E_NOT_FOUND;
    if (mrc == ENOMEM) return CASESYNC_E_NOMEM;
    return CASESYNC_E_STORE;
}

int cs__store_open(casesync_t *h, casesync_error_t *err) {
    MDB_txn *txn = NULL;
    int mrc;
    if (mkdir(h->state_dir, 0700) != 0 && errno != EEXIST)
        return cs__fail(err, CASESYNC_E_STORE, 0, NULL, NULL, "cannot create %s: %s", h->state_dir,
                        strerror(errno));
    if ((mrc = mdb_env_create(&h->env)) != 0) goto fail;
    if ((mrc = mdb_env_set_maxdbs(h->env, CS_DB_COUNT + 2)) != 0) goto fail;
    if ((mrc = mdb_env_set_mapsize(h->env, h->map_size)) != 0) goto fail;
    /* NOTLS: transactions are short and made under h->lock from any thread. */
    if ((mrc = mdb_env_open(h->env, h->state_dir, MDB_NOTLS | (h->no_sync ? MDB_NOSYNC : 0), 0600)) != 0)
        goto fail;
    int dead = 0;
    mdb_reader_check(h->env, &dead);
    /* A reopened store may have grown past the configured size. */
    MDB_envinfo info;
    if (mdb_env_info(h->env, &info) == 0 && info.me_mapsize > h->map_size) h->map_size = info.me_mapsize;
    if ((mrc = mdb_txn_begin(h->env, NULL, 0, &txn)) != 0) goto fail;
    for (int i = 0; i < CS_DB_COUNT; i++)
        if ((mrc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &h->db[i])) != 0) goto fail;
    if ((mrc = mdb_txn_commit(txn)) != 0) {
        txn = NULL;
        goto fail;
    }
    return 0;
fail:
    if (txn) mdb_txn_abort(txn);
    if (h->env) mdb_env_close(h->env);
    h->env = NULL;
    return cs__fail(err, CASESYNC_E_STORE, 0, NULL, NULL, "local store %s: %s", h->state_dir,
                    mdb_strerror(mrc));
}

void cs__store_close(casesync_t *h) {
    if (h->env) mdb_env_close(h->env);
    h->env = NULL;
}

int cs__txn_begin(casesync_t *h, int write, MDB_txn **txn) {
    int mrc = mdb_txn_begin(h->env, NULL, write ? 0 : MDB_RDONLY, txn);
    if (mrc == MDB_MAP_RESIZED) {
        mdb_env_set_mapsize(h->env, 0);
        mrc = mdb_txn_begin(h->env, NULL, write ? 0 : MDB_RDONLY, txn);
    }
    if (mrc) *txn = NULL;
    return cs__lmdb_rc(mrc);
}

/* Doubles the map; only called with no transaction open (under h->lock). */
static int grow(casesync_t *h) {
    size_t want = h->map_size * 2;
    if (mdb_env_set_mapsize(h->env, want) != 0) return CASESYNC_E_STORE;
    h->map_size = want;
    return 0;
}

int cs__txn_commit(casesync_t *h, MDB_txn *txn) {
    int mrc = mdb_txn_commit(txn);
    if (mrc == MDB_MAP_FULL) grow(h);
    return cs__lmdb_rc(mrc);
}

/* Runs fn in a write transaction and commits; when the map is full, grows it
 * and runs fn again from the start (fn has no effects outside the txn). */
int cs__with_write(casesync_t *h, int (*fn)(casesync_t *h, MDB_txn *txn, void *ctx), void *ctx) {
    for (int attempt = 0; attempt < 8; attempt++) {
        MDB_txn *txn;
        int rc = cs__txn_begin(h, 1, &txn);
        if (rc) return rc;
        rc = fn(h, txn, ctx);
        if (rc == -1000) { /* fn saw MDB_MAP_FULL */
            mdb_txn_abort(txn);
            if (grow(h)) return CASESYNC_E_STORE;
            continue;
        }
        if (rc) {
            mdb_txn_abort(txn);
            return rc;
        }
        int mrc = mdb_txn_commit(txn);
        if (mrc == MDB_MAP_FULL) {
            if (grow(h)) return CASESYNC_E_STORE;
            continue;
        }
        return cs__lmdb_rc(mrc);
    }
    return CASESYNC_E_STORE;
}

int cs__with_write_lazy(casesync_t *h, int (*fn)(casesync_t *h, MDB_txn *txn, void *ctx), void *ctx) {
    if (h->no_sync) return cs__with_write(h, fn, ctx);
    /* Data pages are still fsync'd before the meta page is written, so the
     * store stays whole; only the meta page's own flush waits. */
    if (mdb_env_set_flags(h->env, MDB_NOMETASYNC, 1) != 0) return cs__with_write(h, fn, ctx);
    int rc = cs__with_write(h, fn, ctx);
    mdb_env_set_flags(h->env, MDB_NOMETASYNC, 0);
    if (!rc) h->lazy_commits = 1;
    return rc;
}

int cs__store_flush(casesync_t *h) {
    if (!h->lazy_commits) return 0;
    int mrc = mdb_env_sync(h->env, 1);
    if (mrc == 0) h->lazy_commits = 0;
    return mrc ? CASESYNC_E_STORE : 0;
}

int cs__get(MDB_txn *txn, MDB_dbi db, const void *k, size_t kl, char **out, size_t *len) {
    MDB_val key = {kl, (void *)k}, val;
    *out = NULL;
    if (len) *len = 0;
    int mrc = mdb_get(txn, db, &key, &val);
    if (mrc) return cs__lmdb_rc(mrc);
    char *p = malloc(val.mv_size + 1);
    if (!p) return CASESYNC_E_NOMEM;
    memcpy(p, val.mv_data, val.mv_size);
    p[val.mv_size] = 0;
    *out = p;
    if (len) *len = val.mv_size;
    return 0;
}

int cs__get_json(MDB_txn *txn, MDB_dbi db, const void *k, size_t kl, cJSON **out) {
    MDB_val key = {kl, (void *)k}, val;
    *out = NULL;
    int mrc = mdb_get(txn, db, &key, &val);
    if (mrc) return cs__lmdb_rc(mrc);
    *out = cs__parse(val.mv_data, val.mv_size);
    return *out ? 0 : CASESYNC_E_STORE;
}

/* MAP_FULL surfaces as -1000 so cs__with_write can grow and retry. */
int cs__put(MDB_txn *txn, MDB_dbi db, const void *k, size_t kl, const void *v, size_t vl) {
    MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
    int mrc = mdb_put(txn, db, &key, &val, 0);
    if (mrc == MDB_MAP_FULL || mrc == MDB_TXN_FULL) return -1000;
    return cs__lmdb_rc(mrc);
}

int cs__put_json(MDB_txn *txn, MDB_dbi db, const void *k, size_t kl, const cJSON *v) {
    char *text = cJSON_PrintUnformatted(v);
    if (!text) return CASESYNC_E_NOMEM;
    int rc = cs__put(txn, db, k, kl, text, strlen(text));
    free(text);
    return rc;
}

int cs__del(MDB_txn *txn, MDB_dbi db, const void *k, size_t kl) {
    MDB_val key = {kl, (void *)k};
    int mrc = mdb_del(txn, db, &key, NULL);
    if (mrc == MDB_NOTFOUND) return 0;
    return cs__lmdb_rc(mrc);
}

int cs__clear_db(MDB_txn *txn, MDB_dbi db) {
    return cs__lmdb_rc(mdb_drop(txn, db, 0));
}

int cs__meta_get(casesync_t *h, MDB_txn *txn, const char *name, char **out) {
    return cs__get(txn, h->db[CS_DB_META], name, strlen(name), out, NULL);
}

int cs__meta_put(casesync_t *h, MDB_txn *txn, const char *name, const char *value) {
    if (!value) return cs__del(txn, h->db[CS_DB_META], name, strlen(name));
    return cs__put(txn, h->db[CS_DB_META], name, strlen(name), value, strlen(value));
}

int64_t cs__meta_int(casesync_t *h, MDB_txn *txn, const char *name, int64_t dflt) {
    char *v = NULL;
    if (cs__meta_get(h, txn, name, &v) != 0) return dflt;
    int64_t n = strtoll(v, NULL, 10);
    free(v);
    return n;
}

int cs__meta_put_int(casesync_t *h, MDB_txn *txn, const char *name, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cs__meta_put(h, txn, name, buf);
}

void cs__be64(unsigned char out[8], uint64_t v) {
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

uint64_t cs__rd64(const void *p) {
    const unsigned char *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}
