/* store.c -- the LMDB environment and the single writer (group commit).
 *
 * A disk that refuses a commit (EIO, ENOSPC ...) costs the batch: LMDB
 * aborts the transaction, every job of it answers SYNC_EDISK and nothing of
 * it is kept. When the refused write was LMDB's meta page, LMDB marks the
 * environment fatal (MDB_PANIC for every transaction, reads too) until it is
 * opened again: the writer then waits for the open read transactions to end
 * and opens the environment again, so the server comes back with the disk.
 */
#include "sync/store.h"
#include "sync/valcodec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <pthread.h>

#include "sync/engine.h"
#include "sync/fault.h"
#include "sync/sync.h"

#define STORE_DEFAULT_MAP ((size_t)64 << 30) /* 64 GiB of address space, sparse on disk */
#define STORE_MAX_DBS 32
#define STORE_MAX_READERS 1024
#define STORE_REOPEN_WAIT_MS 10000 /* how long a reopen waits for open reads */
#define STORE_READ_TRIES 3         /* a read that meets MDB_PANIC tries this often */

typedef struct store_job {
    store_job_fn fn;
    void *ctx;
    int rc;
    int done;
    int applied; /* store_write_applied(): a batch of the log, not published again */
    size_t redo_len; /* bytes of the batch's redo this job made */
    struct store_job *next;
} store_job_t;

struct store {
    MDB_env *env;
    store_dbs_t dbs;
    int rdonly;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;  /* the writer waits here for jobs */
    pthread_cond_t done_cv;  /* callers wait here for their job */
    pthread_cond_t gen_cv;   /* long polls wait here for the next commit */
    store_job_t *head, *tail;
    int stopping;            /* writer: finish the queue and exit */
    int closed_for_writes;   /* store_shutdown(): refuse new jobs */
    pthread_t writer;
    int writer_started;
    uint64_t commit_gen;     /* durable commits so far */

    /* Figures for operators: batches and jobs committed, jobs per batch. */
    uint64_t batches, jobs;
    uint64_t batch_hist[STORE_BATCH_BUCKETS];
    uint64_t commit_errors; /* batches the disk refused */

    /* Opening the environment again after MDB_PANIC (writer thread only,
     * but `readers` and `reopening` are atomics read by every reader). */
    char dir[1024];
    size_t map_size;
    int broken;    /* the environment answers MDB_PANIC */
    int readers;   /* read transactions open (and store_size calls) */
    int reopening; /* new readers wait on env_cv */
    pthread_cond_t env_cv;

    /* The replicated log (store_set_log): NULL in single-node mode. */
    store_log_fn log_fn;
    void *log_ctx;
    size_t log_max; /* largest entry the log takes (0: no limit) */
    store_redo_t redo; /* the batch's puts and deletes (writer thread only) */
};

/* While the writer runs a job of a store with a log, its puts and deletes
 * are also appended here (store_put_raw, store_del). */
static __thread store_redo_t *capture;
static __thread const store_dbs_t *capture_dbs;

/* ---- keys ---------------------------------------------------------------- */

void store_be64(unsigned char out[8], uint64_t v) {
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

uint64_t store_rd64(const unsigned char in[8]) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | in[i];
    return v;
}

/* ---- the redo of a batch ---------------------------------------------------- */

/* The databases in the order of store_dbs_t: their number in a redo. */
static int store_db_number(const store_dbs_t *d, MDB_dbi dbi) {
    const MDB_dbi *all = (const MDB_dbi *)d;
    for (size_t i = 0; i < sizeof *d / sizeof(MDB_dbi); i++)
        if (all[i] == dbi) return (int)i;
    return -1;
}

static int redo_reserve(store_redo_t *r, size_t more) {
    if (r->failed) return -1;
    if (r->len + more <= r->cap) return 0;
    size_t cap = r->cap ? r->cap : 64 * 1024;
    while (cap < r->len + more) cap *= 2;
    unsigned char *b = realloc(r->buf, cap);
    if (!b) {
        r->failed = 1;
        return -1;
    }
    r->buf = b;
    r->cap = cap;
    return 0;
}

static void redo_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t redo_rd32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Appends one operation: 'P' or 'D', the database number, BE32 key length,
 * key, and for 'P' BE32 value length and value. */
static void redo_add(store_redo_t *r, const store_dbs_t *d, char op, MDB_dbi dbi, const void *key, size_t klen,
                     const void *val, size_t vlen) {
    int db = store_db_number(d, dbi);
    if (db < 0 || klen > UINT32_MAX || vlen > UINT32_MAX) {
        r->failed = 1;
        return;
    }
    if (redo_reserve(r, 2 + 4 + klen + (op == 'P' ? 4 + vlen : 0)) != 0) return;
    unsigned char *p = r->buf + r->len;
    *p++ = (unsigned char)op;
    *p++ = (unsigned char)db;
    redo_u32(p, (uint32_t)klen);
    p += 4;
    memcpy(p, key, klen);
    p += klen;
    if (op == 'P') {
        redo_u32(p, (uint32_t)vlen);
        p += 4;
        if (vlen) memcpy(p, val, vlen);
        p += vlen;
    }
    r->len = (size_t)(p - r->buf);
}

int store_redo_apply(MDB_txn *txn, const store_dbs_t *d, const void *redo, size_t len) {
    const unsigned char *p = redo, *end = p + len;
    const MDB_dbi *all = (const MDB_dbi *)d;
    size_t ndb = sizeof *d / sizeof(MDB_dbi);
    while (p < end) {
        if (end - p < 6) return SYNC_EBADREQ;
        char op = (char)p[0];
        unsigned db = p[1];
        uint32_t klen = redo_rd32(p + 2);
        p += 6;
        if ((op != 'P' && op != 'D') || db >= ndb || (size_t)(end - p) < klen) return SYNC_EBADREQ;
        MDB_val k = {klen, (void *)p}, v = {0, NULL};
        p += klen;
        int rc;
        if (op == 'P') {
            if (end - p < 4) return SYNC_EBADREQ;
            uint32_t vlen = redo_rd32(p);
            p += 4;
            if ((size_t)(end - p) < vlen) return SYNC_EBADREQ;
            v.mv_size = vlen;
            v.mv_data = (void *)p;
            p += vlen;
            rc = mdb_put(txn, all[db], &k, &v, 0);
        } else {
            rc = mdb_del(txn, all[db], &k, NULL);
            if (rc == MDB_NOTFOUND) rc = 0;
        }
        if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL) return SYNC_EBUSY;
        if (rc > 0) return SYNC_EDISK;
        if (rc != 0) return SYNC_EIO;
    }
    return 0;
}

/* ---- opening the environment ------------------------------------------------ */

/* Creates and opens the environment in dir with its named databases.
 * 0, or SYNC_EIO with errbuf filled (*out NULL). */
static int store_env_open(const char *dir, size_t map_size, int rdonly, MDB_env **out, store_dbs_t *out_dbs,
                          char *errbuf, size_t errlen) {
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    store_dbs_t d;
    int rc;
    *out = NULL;
    if ((rc = mdb_env_create(&env)) != 0) goto fail;
    mdb_env_set_maxdbs(env, STORE_MAX_DBS);
    mdb_env_set_maxreaders(env, STORE_MAX_READERS);
    mdb_env_set_mapsize(env, map_size ? map_size : STORE_DEFAULT_MAP);
    /* MDB_NOTLS: read transactions are not bound to threads (civetweb pools them). */
    rc = mdb_env_open(env, dir, MDB_NOTLS | (rdonly ? MDB_RDONLY : 0), 0600);
    if (rc != 0) goto fail;
    int dead = 0;
    mdb_reader_check(env, &dead); /* readers left by a killed process */

    if ((rc = mdb_txn_begin(env, NULL, rdonly ? MDB_RDONLY : 0, &txn)) != 0) goto fail;
    unsigned cf = rdonly ? 0 : MDB_CREATE;
    struct {
        const char *name;
        MDB_dbi *dbi;
    } dbs[] = {
        {"meta", &d.meta},           {"users", &d.users},
        {"usernames", &d.usernames}, {"tokens", &d.tokens},
        {"devices", &d.devices},     {"records", &d.records},
        {"log", &d.log},             {"record_log", &d.record_log},
        {"feeds", &d.feeds},         {"changesets", &d.changesets},
        {"conflicts", &d.conflicts}, {"rejections", &d.rejections},
        {"closed", &d.closed},       {"idx", &d.idx},
        {"evidence", &d.evidence},   {"uploads", &d.uploads},
        {"blobs", &d.blobs},
    };
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        if ((rc = mdb_dbi_open(txn, dbs[i].name, cf, dbs[i].dbi)) != 0) {
            if (rdonly && rc == MDB_NOTFOUND) {
                snprintf(errbuf, errlen, "%s holds no casesync store", dir);
                goto fail_msg;
            }
            goto fail;
        }
    }
    /* Commit even a read-only txn: an aborted one would close the new dbi handles. */
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) goto fail;
    *out = env;
    *out_dbs = d;
    return 0;

fail:
    snprintf(errbuf, errlen, "store %s: %s", dir, mdb_strerror(rc));
fail_msg:
    if (txn) mdb_txn_abort(txn);
    if (env) mdb_env_close(env);
    return SYNC_EIO;
}

/* ---- readers and reopening ------------------------------------------------------ */

static void store_reader_leave(store_t *st) {
    if (__atomic_sub_fetch(&st->readers, 1, __ATOMIC_SEQ_CST) == 0 &&
        __atomic_load_n(&st->reopening, __ATOMIC_SEQ_CST)) {
        pthread_mutex_lock(&st->mu);
        pthread_cond_broadcast(&st->env_cv);
        pthread_mutex_unlock(&st->mu);
    }
}

/* Counts a user of st->env; waits while the writer opens it again. */
static void store_reader_enter(store_t *st) {
    for (;;) {
        __atomic_add_fetch(&st->readers, 1, __ATOMIC_SEQ_CST);
        if (!__atomic_load_n(&st->reopening, __ATOMIC_SEQ_CST)) return;
        store_reader_leave(st);
        pthread_mutex_lock(&st->mu);
        while (__atomic_load_n(&st->reopening, __ATOMIC_SEQ_CST))
            pthread_cond_wait(&st->env_cv, &st->mu);
        pthread_mutex_unlock(&st->mu);
    }
}

/* Writer thread only: after MDB_PANIC, waits (bounded) for the open read
 * transactions to end and opens the environment again. On failure the store
 * stays broken and the next batch tries again. */
static void store_reopen(store_t *st) {
    char msg[512] = "";
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += STORE_REOPEN_WAIT_MS / 1000;
    __atomic_store_n(&st->reopening, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&st->mu);
    int waited_out = 0;
    while (__atomic_load_n(&st->readers, __ATOMIC_SEQ_CST) > 0 && !waited_out)
        waited_out = pthread_cond_timedwait(&st->env_cv, &st->mu, &until) == ETIMEDOUT;
    int idle = __atomic_load_n(&st->readers, __ATOMIC_SEQ_CST) == 0;
    pthread_mutex_unlock(&st->mu);

    if (!idle) {
        fprintf(stderr, "store: cannot reopen yet, reads still open\n");
    } else {
        MDB_env *env = NULL;
        store_dbs_t dbs;
        mdb_env_close(st->env);
        st->env = NULL;
        if (store_env_open(st->dir, st->map_size, 0, &env, &dbs, msg, sizeof msg) != 0) {
            fprintf(stderr, "store: reopen failed: %s\n", msg);
        } else if (memcmp(&dbs, &st->dbs, sizeof dbs) != 0) {
            fprintf(stderr, "store: reopen gave other database handles\n");
            mdb_env_close(env);
        } else {
            mdb_env_set_userctx(env, st);
            st->env = env;
            st->broken = 0;
            fprintf(stderr, "store: environment opened again after a fatal write error\n");
        }
    }
    pthread_mutex_lock(&st->mu);
    __atomic_store_n(&st->reopening, 0, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&st->env_cv);
    pthread_mutex_unlock(&st->mu);
}

/* ---- the writer ------------------------------------------------------------ */

/* Runs one batch: every job in its own nested transaction of one parent
 * transaction, then one commit. Sets each job's rc. */
static int store_run_batch(store_t *st, store_job_t *jobs, store_job_t **rest) {
    MDB_txn *txn = NULL;
    int rc = st->env ? mdb_txn_begin(st->env, NULL, 0, &txn) : MDB_PANIC;
    if (rc != 0) {
        fprintf(stderr, "store: write txn: %s\n", mdb_strerror(rc));
        if (rc == MDB_PANIC) st->broken = 1;
        for (store_job_t *j = jobs; j; j = j->next) j->rc = SYNC_EDISK;
        return -1;
    }
    int kept = 0, applied = 0;
    *rest = NULL;
    st->redo.len = 0;
    st->redo.failed = 0;
    for (store_job_t *j = jobs; j; j = j->next) {
        MDB_txn *child = NULL;
        rc = mdb_txn_begin(st->env, txn, 0, &child);
        if (rc != 0) {
            j->rc = SYNC_EIO;
            continue;
        }
        /* With a log, the job's writes are captured (unless it applies the log). */
        size_t mark = st->redo.len;
        capture = st->log_fn && !j->applied ? &st->redo : NULL;
        capture_dbs = &st->dbs;
        /* A job during which a cJSON allocation failed may have built a record
         * without a member, or skipped a write: it is discarded whole. */
        fault_job_begin();
        uint64_t failed = util_json_failures();
        j->rc = j->fn(child, j->ctx);
        if (util_json_failures() != failed) {
            if (j->rc == 0) fprintf(stderr, "store: out of memory in a write job; discarded\n");
            j->rc = SYNC_ENOMEM;
        }
        capture = NULL;
        if (j->rc == 0) {
            rc = mdb_txn_commit(child);
            if (rc != 0) {
                fprintf(stderr, "store: nested commit: %s\n", mdb_strerror(rc));
                j->rc = SYNC_EIO;
            } else {
                kept++;
                if (j->applied) applied++;
            }
        } else {
            mdb_txn_abort(child);
        }
        if (j->rc != 0) st->redo.len = mark; /* its writes are gone: so is their redo */
        j->redo_len = st->redo.len - mark;
        /* A log entry must fit the log: past a quarter of its limit the
         * batch takes no more jobs; the rest wait for the next batch. */
        if (st->log_max && st->redo.len > st->log_max / 4 && j->next) {
            *rest = j->next;
            j->next = NULL;
            break;
        }
    }
    if (kept == 0) {
        mdb_txn_abort(txn);
        return 0;
    }
    if (st->log_fn && st->redo.len > 0) {
        /* The log comes first: the batch is published, and only once the log
         * holds it is it committed here. A batch of the log's own entries
         * (applied) is never mixed with new writes: those wait for the next. */
        uint64_t seq = 0;
        rc = st->redo.failed ? SYNC_ENOMEM : applied ? SYNC_EUNAVAIL : 0;
        if (rc == 0 && st->log_max && st->redo.len > st->log_max) {
            /* Too big for one entry: a job that alone is can never be kept
             * (413); the others are answered 503 and come back alone. */
            fprintf(stderr, "store: a batch's redo of %zu bytes exceeds the log's %zu\n", st->redo.len, st->log_max);
            mdb_txn_abort(txn);
            for (store_job_t *j = jobs; j; j = j->next)
                if (j->rc == 0) j->rc = j->redo_len > st->log_max ? SYNC_ETOOLARGE : SYNC_EUNAVAIL;
            return 0;
        }
        if (rc == 0)
            rc = st->log_fn(st->log_ctx, st->redo.buf, st->redo.len, store_meta_u64(txn, &st->dbs, STORE_LOG_SEQ), &seq);
        if (rc == 0) rc = store_meta_put_u64(txn, &st->dbs, STORE_LOG_SEQ, seq);
        if (rc != 0) {
            mdb_txn_abort(txn);
            for (store_job_t *j = jobs; j; j = j->next)
                if (j->rc == 0) j->rc = j->applied ? SYNC_EUNAVAIL : rc;
            return 0;
        }
        fault_point("log-acked");
    }
    rc = mdb_txn_commit(txn); /* one fsync for the whole batch */
    if (rc != 0) {
        /* LMDB has aborted (and freed) the transaction: nothing of it lands. */
        fprintf(stderr, "store: commit refused, %d jobs discarded: %s\n", kept, mdb_strerror(rc));
        /* The commit answers the errno; whether the meta page failed, and LMDB
         * now refuses everything, shows only in the next transaction. */
        MDB_txn *probe = NULL;
        if (rc == MDB_PANIC || mdb_txn_begin(st->env, NULL, MDB_RDONLY, &probe) == MDB_PANIC) {
            /* Readers wait from now on until store_reopen(). */
            __atomic_store_n(&st->reopening, 1, __ATOMIC_SEQ_CST);
            st->broken = 1;
        } else if (probe) {
            mdb_txn_abort(probe);
        }
        for (store_job_t *j = jobs; j; j = j->next)
            if (j->rc == 0) j->rc = SYNC_EDISK;
        return -1;
    }
    return 1;
}

static void *store_writer_main(void *arg) {
    store_t *st = arg;
    fault_writer_thread();
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->head && !st->stopping) pthread_cond_wait(&st->work_cv, &st->mu);
        if (!st->head && st->stopping) break;
        /* A batch is either new writes or entries of the log, never both. */
        store_job_t *batch = st->head, *last = batch;
        while (last->next && last->next->applied == batch->applied) last = last->next;
        st->head = last->next;
        if (!st->head) st->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&st->mu);

        if (st->broken) store_reopen(st);
        store_job_t *rest = NULL;
        int committed = store_run_batch(st, batch, &rest);

        pthread_mutex_lock(&st->mu);
        if (rest) {
            /* Jobs the batch did not take go first in the next one. */
            store_job_t *end = rest;
            while (end->next) end = end->next;
            end->next = st->head;
            if (!st->head) st->tail = end;
            st->head = rest;
        }
        if (committed < 0) st->commit_errors++;
        st->batches++;
        uint64_t n = 0;
        for (store_job_t *j = batch; j; j = j->next) {
            j->done = 1;
            n++;
        }
        st->jobs += n;
        int b = 0;
        while (b < STORE_BATCH_BUCKETS - 1 && n > (1ull << b)) b++;
        st->batch_hist[b]++;
        if (committed > 0) {
            st->commit_gen++;
            pthread_cond_broadcast(&st->gen_cv);
        }
        pthread_cond_broadcast(&st->done_cv);
        if (st->broken) {
            pthread_mutex_unlock(&st->mu);
            store_reopen(st); /* at once: reads wait until it is done */
            pthread_mutex_lock(&st->mu);
        }
    }
    pthread_mutex_unlock(&st->mu);
    free(st->redo.buf);
    st->redo.buf = NULL;
    return NULL;
}

void store_set_log(store_t *st, store_log_fn fn, void *ctx, size_t max_entry) {
    pthread_mutex_lock(&st->mu);
    st->log_fn = fn;
    st->log_ctx = ctx;
    st->log_max = max_entry;
    pthread_mutex_unlock(&st->mu);
}

static int store_write_job(store_t *st, store_job_fn fn, void *ctx, int applied);

int store_write(store_t *st, store_job_fn fn, void *ctx) { return store_write_job(st, fn, ctx, 0); }

int store_write_applied(store_t *st, store_job_fn fn, void *ctx) { return store_write_job(st, fn, ctx, 1); }

static int store_write_job(store_t *st, store_job_fn fn, void *ctx, int applied) {
    if (st->rdonly) return SYNC_EIO;
    store_job_t job = {.fn = fn, .ctx = ctx, .rc = 0, .done = 0, .applied = applied, .next = NULL};
    pthread_mutex_lock(&st->mu);
    if (st->closed_for_writes) {
        pthread_mutex_unlock(&st->mu);
        return SYNC_EBUSY;
    }
    if (st->tail)
        st->tail->next = &job;
    else
        st->head = &job;
    st->tail = &job;
    pthread_cond_signal(&st->work_cv);
    while (!job.done) pthread_cond_wait(&st->done_cv, &st->mu);
    pthread_mutex_unlock(&st->mu);
    return job.rc;
}

uint64_t store_commit_gen(store_t *st) {
    pthread_mutex_lock(&st->mu);
    uint64_t v = st->commit_gen;
    pthread_mutex_unlock(&st->mu);
    return v;
}

void store_wait_commit(store_t *st, uint64_t seen, int64_t deadline_ms) {
    struct timespec ts = {.tv_sec = deadline_ms / 1000, .tv_nsec = (long)(deadline_ms % 1000) * 1000000L};
    pthread_mutex_lock(&st->mu);
    while (st->commit_gen <= seen && !st->closed_for_writes) {
        if (pthread_cond_timedwait(&st->gen_cv, &st->mu, &ts) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&st->mu);
}

/* ---- open / close ---------------------------------------------------------- */

int store_open(const char *dir, size_t map_size, int rdonly, store_t **out, char *errbuf, size_t errlen) {
    store_t *st = NULL;
    *out = NULL;

    if (!rdonly && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(errbuf, errlen, "cannot create %s: %s", dir, strerror(errno));
        return SYNC_EIO;
    }
    if (strlen(dir) >= sizeof st->dir) {
        snprintf(errbuf, errlen, "the data folder's name is too long");
        return SYNC_EIO;
    }
    st = calloc(1, sizeof *st);
    if (!st) return SYNC_ENOMEM;
    st->rdonly = rdonly;
    snprintf(st->dir, sizeof st->dir, "%s", dir);
    st->map_size = map_size;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->work_cv, NULL);
    pthread_cond_init(&st->done_cv, NULL);
    pthread_cond_init(&st->gen_cv, NULL);
    pthread_cond_init(&st->env_cv, NULL);
    fault_attach(dir);
    util_json_hooks();

    if (store_env_open(dir, map_size, rdonly, &st->env, &st->dbs, errbuf, errlen) != 0) goto fail;
    mdb_env_set_userctx(st->env, st);
    if (!rdonly) {
        if (pthread_create(&st->writer, NULL, store_writer_main, st) != 0) {
            snprintf(errbuf, errlen, "cannot start the writer thread");
            goto fail;
        }
        st->writer_started = 1;
        pthread_setname_np(st->writer, "casesync-writer");
    }
    *out = st;
    return 0;

fail:
    if (st->env) mdb_env_close(st->env);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->work_cv);
    pthread_cond_destroy(&st->done_cv);
    pthread_cond_destroy(&st->gen_cv);
    pthread_cond_destroy(&st->env_cv);
    free(st);
    return SYNC_EIO;
}

void store_shutdown(store_t *st) {
    if (!st) return;
    pthread_mutex_lock(&st->mu);
    st->closed_for_writes = 1;
    pthread_cond_broadcast(&st->gen_cv);
    pthread_mutex_unlock(&st->mu);
}

void store_close(store_t *st) {
    if (!st) return;
    if (st->writer_started) {
        pthread_mutex_lock(&st->mu);
        st->stopping = 1;
        pthread_cond_signal(&st->work_cv);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->writer, NULL);
    }
    mdb_env_close(st->env);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->work_cv);
    pthread_cond_destroy(&st->done_cv);
    pthread_cond_destroy(&st->gen_cv);
    pthread_cond_destroy(&st->env_cv);
    free(st);
}

const store_dbs_t *store_dbs(const store_t *st) { return &st->dbs; }
MDB_env *store_env(const store_t *st) { return st->env; }

void store_stats(store_t *st, uint64_t *batches, uint64_t *jobs, uint64_t hist[STORE_BATCH_BUCKETS]) {
    pthread_mutex_lock(&st->mu);
    *batches = st->batches;
    *jobs = st->jobs;
    if (hist) memcpy(hist, st->batch_hist, sizeof st->batch_hist);
    pthread_mutex_unlock(&st->mu);
}

uint64_t store_commit_errors(store_t *st) {
    pthread_mutex_lock(&st->mu);
    uint64_t n = st->commit_errors;
    pthread_mutex_unlock(&st->mu);
    return n;
}

uint64_t store_size(store_t *st) {
    MDB_envinfo info;
    MDB_stat stat;
    uint64_t n = 0;
    store_reader_enter(st);
    if (st->env && mdb_env_info(st->env, &info) == 0 && mdb_env_stat(st->env, &stat) == 0)
        n = (uint64_t)(info.me_last_pgno + 1) * stat.ms_psize;
    store_reader_leave(st);
    return n;
}

/* ---- transactions and values ------------------------------------------------ */

int store_read_begin(store_t *st, MDB_txn **txn) {
    int rc = MDB_PANIC;
    *txn = NULL;
    /* A read that meets MDB_PANIC before the writer has seen it waits for the
     * writer to open the environment again (store_reader_enter), then retries. */
    for (int tries = 0; tries < STORE_READ_TRIES && rc == MDB_PANIC; tries++) {
        if (tries) nanosleep(&(struct timespec){0, 20 * 1000000L}, NULL);
        store_reader_enter(st);
        rc = st->env ? mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn) : MDB_PANIC;
        if (rc != 0) store_reader_leave(st);
    }
    if (rc != 0) {
        *txn = NULL;
        fprintf(stderr, "store: read txn: %s\n", mdb_strerror(rc));
        return SYNC_EIO;
    }
    return 0;
}

void store_read_end(MDB_txn *txn) {
    if (!txn) return;
    store_t *st = mdb_env_get_userctx(mdb_txn_env(txn));
    mdb_txn_abort(txn);
    store_reader_leave(st);
}

int store_get_raw(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, char **out, size_t *outlen) {
    MDB_val k = {klen, (void *)key}, v;
    *out = NULL;
    if (outlen) *outlen = 0;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return SYNC_ENOTFOUND;
    if (rc != 0) return SYNC_EIO;
    char *copy = malloc(v.mv_size + 1);
    if (!copy) return SYNC_ENOMEM;
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size] = 0;
    *out = copy;
    if (outlen) *outlen = v.mv_size;
    return 0;
}

int store_get_json(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, cJSON **out) {
    MDB_val k = {klen, (void *)key}, v;
    *out = NULL;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return SYNC_ENOTFOUND;
    if (rc != 0) return SYNC_EIO;
    *out = valcodec_decode(v.mv_data, v.mv_size);
    return *out ? 0 : SYNC_EIO;
}

int store_put_raw(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, const void *val, size_t vlen) {
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int rc = mdb_put(txn, dbi, &k, &v, 0);
    if (rc == 0 && capture) redo_add(capture, capture_dbs, 'P', dbi, key, klen, val, vlen);
    if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL) {
        /* The job's nested txn is discarded: nothing of it lands. */
        fprintf(stderr, "store: full (%s): raise map_size\n", mdb_strerror(rc));
        return SYNC_EBUSY;
    }
    if (rc > 0) {
        /* An errno: LMDB spilled dirty pages of a big transaction to a disk that refused them. */
        fprintf(stderr, "store: put: %s\n", mdb_strerror(rc));
        return SYNC_EDISK;
    }
    if (rc != 0) {
        fprintf(stderr, "store: put: %s\n", mdb_strerror(rc));
        return SYNC_EIO;
    }
    return 0;
}

/* Test builds can write the v1 format of earlier releases, to make stores
 * for the migration tests (CASESYNC_TEST_STORE_V1=1 in the environment). */
int store_writes_v1(void) {
#ifdef CASESYNC_FAULTS
    const char *v = getenv("CASESYNC_TEST_STORE_V1");
    return v && strcmp(v, "1") == 0;
#else
    return 0;
#endif
}

int store_put_json(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, const cJSON *v) {
    size_t n = 0;
    char *bytes = store_writes_v1() ? cJSON_PrintUnformatted(v) : valcodec_encode(v, &n);
    if (!bytes) return SYNC_ENOMEM;
    if (store_writes_v1()) n = strlen(bytes);
    int rc = store_put_raw(txn, dbi, key, klen, bytes, n);
    free(bytes);
    return rc;
}

int store_del(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen) {
    MDB_val k = {klen, (void *)key};
    int rc = mdb_del(txn, dbi, &k, NULL);
    if (rc == 0 && capture) redo_add(capture, capture_dbs, 'D', dbi, key, klen, NULL, 0);
    if (rc == MDB_NOTFOUND) return SYNC_ENOTFOUND;
    return rc == 0 ? 0 : SYNC_EIO;
}

uint64_t store_meta_u64(MDB_txn *txn, const store_dbs_t *dbs, const char *name) {
    MDB_val k = {strlen(name), (void *)name}, v;
    if (mdb_get(txn, dbs->meta, &k, &v) != 0 || v.mv_size != 8) return 0;
    return store_rd64(v.mv_data);
}

int store_meta_put_u64(MDB_txn *txn, const store_dbs_t *dbs, const char *name, uint64_t val) {
    unsigned char b[8];
    store_be64(b, val);
    return store_put_raw(txn, dbs->meta, name, strlen(name), b, 8);
}

uint64_t store_meta_next(MDB_txn *txn, const store_dbs_t *dbs, const char *name) {
    uint64_t v = store_meta_u64(txn, dbs, name) + 1;
    return store_meta_put_u64(txn, dbs, name, v) == 0 ? v : 0;
}
