/* engine.c -- opening and closing the engine, and its error plumbing. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <unistd.h>

#include "schema/embedded.h"
#include "sync/record.h"
#include "sync/retention.h"

int sync_fail(sync_error_t *err, int code, const char *field, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    err->field[0] = 0;
    if (field) snprintf(err->field, sizeof err->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    if (code == SYNC_EDISK) err->retry_after = SYNC_EDISK_RETRY_S;
    if (code == SYNC_EUNAVAIL) err->retry_after = SYNC_EUNAVAIL_RETRY_S;
    return code;
}

const char *sync_strerror(int code) {
    switch (code) {
    case SYNC_OK: return "ok";
    case SYNC_EBADREQ: return "bad request";
    case SYNC_EBADJSON: return "malformed JSON";
    case SYNC_EBADCURSOR: return "bad cursor";
    case SYNC_EUNAUTH: return "not authenticated";
    case SYNC_ECREDS: return "invalid credentials";
    case SYNC_EREVOKED: return "device revoked";
    case SYNC_EFORBIDDEN: return "forbidden";
    case SYNC_EDEVICE: return "device mismatch";
    case SYNC_ENOTFOUND: return "not found";
    case SYNC_ECONFLICT: return "conflict";
    case SYNC_EREUSED: return "changeset seq reused with another body";
    case SYNC_EGAP: return "changeset seq out of order";
    case SYNC_EEXPIRED: return "cursor expired";
    case SYNC_ETOOLARGE: return "too large";
    case SYNC_EINVALID: return "validation failed";
    case SYNC_ERATE: return "too many requests";
    case SYNC_EBUSY: return "unavailable";
    case SYNC_ENOMEM: return "out of memory";
    case SYNC_EIO: return "storage failure";
    case SYNC_ECHECKSUM: return "checksum mismatch";
    case SYNC_EDEVINUSE: return "device in use by another user";
    case SYNC_EDISK: return "the server's disk refused the write; nothing of it was kept, try again later";
    case SYNC_EUNAVAIL: return "the cluster could not confirm the write; send the same request again later";
    case SYNC_EBEHIND: return "this node has not yet applied what the client has seen; ask the leader";
    case SYNC_EEVIDENCE: return "evidence lists bytes that are not yours to list";
    default: return "unknown error";
    }
}

void sync_principal_clear(sync_principal_t *p) {
    if (!p) return;
    cJSON_Delete(p->user);
    memset(p, 0, sizeof *p);
    p->role = ROLE_NONE;
}

static void sync_defaults(sync_config_t *c) {
    if (c->sync_window_days <= 0) c->sync_window_days = 30;
    if (c->token_ttl_days <= 0) c->token_ttl_days = 90;
    if (c->pbkdf2_iterations <= 0) c->pbkdf2_iterations = 210000;
    if (c->max_changes <= 0) c->max_changes = 1000;
    if (c->max_string <= 0) c->max_string = 65536;
    if (c->login_max_failures <= 0) c->login_max_failures = 5;
    if (c->login_account_max_failures <= 0) c->login_account_max_failures = 10;
    if (c->login_window_s <= 0) c->login_window_s = 900;
    if (c->argon2_t_cost <= 0) c->argon2_t_cost = 3;
    if (c->argon2_m_kib <= 0) c->argon2_m_kib = 65536;
    if (c->argon2_lanes <= 0) c->argon2_lanes = 1;
    if (c->argon2_m_kib < 8 * c->argon2_lanes) c->argon2_m_kib = 8 * c->argon2_lanes; /* argon2's minimum */
    if (c->max_hashing <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->max_hashing = n > 0 && n < 4096 ? (int)n : 1;
    }
}

/* The cursor key: made once, kept in meta, so cursors outlive restarts. */
static int cursor_key_job(MDB_txn *txn, void *ctx) {
    sync_t *s = ctx;
    char *v = NULL;
    size_t n = 0;
    if (store_get_raw(txn, s->dbs->meta, "cursor_key", 10, &v, &n) == 0 && n == 64) {
        memcpy(s->cursor_key, v, 65);
        free(v);
        return 0;
    }
    free(v);
    if (util_random_hex(32, s->cursor_key) != 0) return SYNC_EIO;
    return store_put_raw(txn, s->dbs->meta, "cursor_key", 10, s->cursor_key, 64);
}

/* Cluster mode, after each entry of the log is applied: a follower that
 * started before any leader made the cursor key takes the leader's. */
static int cursor_key_applied(MDB_txn *txn, void *ctx) {
    sync_t *s = ctx;
    if (__atomic_load_n(&s->cursor_key[0], __ATOMIC_ACQUIRE)) return 0;
    char *v = NULL;
    size_t n = 0;
    if (store_get_raw(txn, s->dbs->meta, "cursor_key", 10, &v, &n) == 0 && n == 64) {
        memcpy(s->cursor_key + 1, v + 1, 64);
        __atomic_store_n(&s->cursor_key[0], v[0], __ATOMIC_RELEASE);
    }
    free(v);
    return 0;
}

static int sync_load_cursor_key(sync_t *s) {
    if (!s->cfg.read_only && s->replica) {
        /* A follower cannot make the key: it comes with the log (cursor_key_applied). */
        int rc = store_write(s->st, cursor_key_job, s);
        return rc == SYNC_EUNAVAIL ? 0 : rc;
    }
    if (!s->cfg.read_only) return store_write(s->st, cursor_key_job, s);
    MDB_txn *txn = NULL;
    int rc = store_read_begin(s->st, &txn);
    if (rc == 0) {
        char *v = NULL;
        size_t n = 0;
        if (store_get_raw(txn, s->dbs->meta, "cursor_key", 10, &v, &n) == 0 && n == 64) memcpy(s->cursor_key, v, 65);
        free(v);
    }
    store_read_end(txn);
    return rc;
}

/* An installed schema file, into out: schema/casesync.json beside the
 * running binary, else share/casesync/schema/casesync.json under the
 * binary's parent folder (the layout of `make install`). 0, or -1 when
 * there is none (the built-in copy serves then: schema/embedded.h). */
static int installed_schema(char *out, size_t n) {
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    out[0] = '\0';
    if (len <= 0) return -1;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return -1;
    *slash = '\0';
    static const char *const rel[] = {"/schema/casesync.json", "/../share/casesync/schema/casesync.json"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++)
        if ((size_t)snprintf(out, n, "%s%s", exe, rel[i]) < n && access(out, R_OK) == 0) return 0;
    out[0] = '\0';
    return -1;
}

/* The built-in schema and calendar (schema/embedded.h). */
static int load_builtin_schema(schema_t **out, schema_err_t *serr) {
    size_t len;
    const char *json = schema_embedded_json(&len);
    return schema_load(json, len, out, serr);
}

static int load_builtin_calendar(schema_t *s, schema_err_t *serr) {
    const char *const *names, *const *texts;
    const size_t *lens;
    int n = schema_embedded_calendars(&names, &texts, &lens);
    return n > 0 ? schema_load_calendar_texts(s, "(built in)", n, names, texts, lens, serr) : 0;
}

int sync_open(const sync_config_t *cfg, sync_t **out, sync_error_t *err) {
    char path[PATH_MAX + 32], msg[512] = "";
    schema_err_t serr = {0};
    sync_t *s = NULL;
    int rc;
    *out = NULL;
    if (!cfg || !cfg->data_dir || !*cfg->data_dir)
        return sync_fail(err, SYNC_EBADREQ, "data_dir", "no data folder given");
    s = calloc(1, sizeof *s);
    if (!s) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    s->cfg = *cfg;
    sync_defaults(&s->cfg);
    snprintf(s->data_dir, sizeof s->data_dir, "%s", cfg->data_dir);
    s->cfg.data_dir = s->data_dir;
    pthread_mutex_init(&s->login_mu, NULL);
    pthread_mutex_init(&s->hash_mu, NULL);
    pthread_cond_init(&s->hash_cv, NULL);

    /* The schema, first found: an explicit path (--schema, the config's
     * schema_path), DATA/schema.json, one installed beside the binary, the
     * built-in copy. */
    char installed[PATH_MAX];
    int have_installed = installed_schema(installed, sizeof installed) == 0;
    const char *sp = cfg->schema_path;
    if (!sp) {
        snprintf(path, sizeof path, "%s/schema.json", cfg->data_dir);
        sp = access(path, R_OK) == 0 ? path : have_installed ? installed : NULL;
    }
    if (sp ? schema_load_file(sp, &s->schema, &serr) != 0 : load_builtin_schema(&s->schema, &serr) != 0) {
        rc = sync_fail(err, SYNC_EIO, NULL, "schema %s: %s", sp ? sp : "(built in)", serr.message);
        goto fail;
    }
    snprintf(s->schema_source, sizeof s->schema_source, "%.1000s", sp ? sp : "built in");
    /* A schema without a calendar/ folder beside it (e.g. a city's schema.json
     * dropped into the data folder, or the built-in one) uses the installed
     * calendar, else the built-in one. */
    if (!schema_calendar_dir(s->schema)[0]) {
        const char *slash = strrchr(installed, '/');
        snprintf(path, sizeof path, "%.*s/calendar", slash ? (int)(slash - installed) : 1,
                 slash ? installed : ".");
        int frc = have_installed && access(path, R_OK) == 0 ? schema_load_calendar_dir(s->schema, path, &serr)
                                                             : load_builtin_calendar(s->schema, &serr);
        if (frc != 0) {
            rc = sync_fail(err, SYNC_EIO, NULL, "%s", serr.message);
            goto fail;
        }
    }
    schema_calendar_check(s->schema, util_now_ms());
    s->cfg.schema_path = NULL;
    if (store_open(cfg->data_dir, cfg->map_size, cfg->read_only, &s->st, msg, sizeof msg) != 0) {
        rc = sync_fail(err, SYNC_EIO, NULL, "%s", msg);
        goto fail;
    }
    s->dbs = store_dbs(s->st);
    if (cfg->cluster_url && *cfg->cluster_url && !cfg->read_only) {
        replica_config_t rc_cfg = {cfg->cluster_url, cfg->node_name, cfg->advertise_url, cfg->lease_ms,
                                   cfg->cluster_replicas, 0};
        if ((rc = replica_start(s->st, &rc_cfg, cursor_key_applied, s, &s->replica, msg, sizeof msg)) != 0) {
            sync_fail(err, rc, NULL, "%s", msg);
            store_close(s->st);
            goto fail;
        }
    }
    if (!cfg->read_only && !s->replica && !cfg->cluster_detach) {
        /* A store that follows a cluster's log written outside it would
         * differ from every other node's, silently. */
        MDB_txn *txn = NULL;
        uint64_t applied = 0;
        if (store_read_begin(s->st, &txn) == 0) applied = store_meta_u64(txn, s->dbs, STORE_LOG_SEQ);
        store_read_end(txn);
        if (applied > 0) {
            rc = sync_fail(err, SYNC_EBADREQ, NULL,
                           "%s belongs to a cluster (log entry %llu applied): start casesyncd on it with --cluster; "
                           "the command-line tool may only read it (`casesync detach` takes it out for good)",
                           cfg->data_dir, (unsigned long long)applied);
            store_close(s->st);
            goto fail;
        }
    }
    if ((rc = sync_load_cursor_key(s)) != 0) {
        replica_stop(s->replica);
        sync_fail(err, rc, NULL, "cannot read or make the cursor key");
        store_close(s->st);
        goto fail;
    }
    if (!audit_writes_v1()) {
        uint64_t format = 0;
        if ((rc = sync_store_format(s, &format, err)) != 0) {
            store_close(s->st);
            goto fail;
        }
        if (format > SYNC_STORE_FORMAT || (format == 1 && !cfg->read_only && !cfg->migrating)) {
            if (format == 1)
                rc = sync_fail(err, SYNC_EBADREQ, NULL,
                               "this store is format v1 (written by an earlier release; this one writes v%d): "
                               "stop every server on this folder and run `casesync --data %s migrate`",
                               SYNC_STORE_FORMAT, cfg->data_dir);
            else
                rc = sync_fail(err, SYNC_EBADREQ, NULL,
                               "this store is format v%llu, newer than this release reads (up to v%d): run the "
                               "casesync release that wrote it, or restore a backup made before the upgrade",
                               (unsigned long long)format, SYNC_STORE_FORMAT);
            store_close(s->st);
            goto fail;
        }
    }
    if (!cfg->read_only && !cfg->migrating) {
        uint64_t pending = 0;
        /* A follower cannot mark the store's lifecycle: the leader's mark comes with the log. */
        if ((rc = sync_lifecycle_check(s, &pending, err)) == SYNC_EUNAVAIL && s->replica) rc = 0;
        if (rc != 0) {
            replica_stop(s->replica);
            store_close(s->st);
            goto fail;
        }
        if (pending) {
            rc = sync_fail(err, SYNC_EBADREQ, NULL,
                           "%llu records are in states of an earlier lifecycle (v%d is the schema's): "
                           "stop every server on this folder and run `casesync --data %s migrate`",
                           (unsigned long long)pending, schema_lifecycle_version(s->schema), cfg->data_dir);
            replica_stop(s->replica);
            store_close(s->st);
            goto fail;
        }
    }
    if (s->replica) {
        /* Evidence bytes: a stream of their own beside the log. */
        blobstream_config_t bc = {cfg->cluster_url, cfg->node_name, cfg->data_dir, cfg->cluster_replicas, 0};
        if ((rc = blobstream_start(&bc, &s->blobstream, msg, sizeof msg)) != 0) {
            sync_fail(err, rc, NULL, "%s", msg);
            replica_stop(s->replica);
            store_close(s->st);
            goto fail;
        }
    }
    *out = s;
    return 0;
fail:
    schema_free(s->schema);
    pthread_mutex_destroy(&s->login_mu);
    pthread_mutex_destroy(&s->hash_mu);
    pthread_cond_destroy(&s->hash_cv);
    free(s);
    return rc;
}

void sync_shutdown(sync_t *s) {
    if (!s) return;
    __atomic_store_n(&s->shutting_down, 1, __ATOMIC_RELEASE);
    store_shutdown(s->st);
}

void sync_close(sync_t *s) {
    if (!s) return;
    blobstream_stop(s->blobstream);
    replica_stop(s->replica); /* releases the lease; the writer's queue is empty by now */
    store_close(s->st);
    schema_free(s->schema);
    pthread_mutex_destroy(&s->login_mu);
    pthread_mutex_destroy(&s->hash_mu);
    pthread_cond_destroy(&s->hash_cv);
    free(s);
}

int sync_ready(sync_t *s) { return s && s->st && !__atomic_load_n(&s->shutting_down, __ATOMIC_ACQUIRE); }

const schema_t *sync_schema(sync_t *s) { return s->schema; }
const char *sync_schema_source(const sync_t *s) { return s->schema_source; }

static int detach_job(MDB_txn *txn, void *ctx) {
    sync_t *s = ctx;
    int rc = store_del(txn, s->dbs->meta, STORE_LOG_SEQ, strlen(STORE_LOG_SEQ));
    /* Marked, so that it seeds only an empty stream (sync/retention.h). */
    if (rc == 0 || rc == SYNC_ENOTFOUND) rc = store_meta_put_u64(txn, s->dbs, STORE_LOG_STREAM, RETENTION_DETACHED);
    return rc;
}

int sync_cluster_detach(sync_t *s, uint64_t *was, sync_error_t *err) {
    MDB_txn *txn = NULL;
    *was = 0;
    if (s->replica) return sync_fail(err, SYNC_EBADREQ, NULL, "a node in cluster mode cannot detach itself");
    if (store_read_begin(s->st, &txn) == 0) *was = store_meta_u64(txn, s->dbs, STORE_LOG_SEQ);
    store_read_end(txn);
    int rc = store_write(s->st, detach_job, s);
    return rc ? sync_fail(err, rc, NULL, "cannot detach the store") : 0;
}

void sync_node_advertise(sync_t *s, const char *url) {
    if (s->replica) replica_advertise(s->replica, url);
}

int sync_node_role(sync_t *s, char *leader_url, size_t n) {
    if (!s->replica) {
        if (leader_url && n) leader_url[0] = 0;
        return SYNC_NODE_SINGLE;
    }
    return replica_is_leader(s->replica, leader_url, n) ? SYNC_NODE_LEADER : SYNC_NODE_FOLLOWER;
}

int sync_metrics(sync_t *s, char **out) {
    uint64_t batches = 0, jobs = 0, hist[STORE_BATCH_BUCKETS] = {0};
    store_stats(s->st, &batches, &jobs, hist);
    size_t cap = 16384;
    char *b = malloc(cap);
    if (!b) return SYNC_ENOMEM;
    int n = snprintf(b, cap,
        "# HELP casesync_changesets_total Changesets applied (replays not counted).\n"
        "# TYPE casesync_changesets_total counter\ncasesync_changesets_total %llu\n"
        "# HELP casesync_changeset_replays_total Changesets answered from the stored answer.\n"
        "# TYPE casesync_changeset_replays_total counter\ncasesync_changeset_replays_total %llu\n"
        "# HELP casesync_changes_total Pushed changes by result.\n"
        "# TYPE casesync_changes_total counter\n"
        "casesync_changes_total{result=\"applied\"} %llu\ncasesync_changes_total{result=\"merged\"} %llu\n"
        "casesync_changes_total{result=\"conflict\"} %llu\ncasesync_changes_total{result=\"rejected\"} %llu\n"
        "# HELP casesync_store_bytes Bytes of the LMDB file in use.\n"
        "# TYPE casesync_store_bytes gauge\ncasesync_store_bytes %llu\n"
        "# HELP casesync_store_errors_total Writes the disk refused: store commits (each discarded a "
        "whole batch) and evidence file writes, syncs and renames.\n"
        "# TYPE casesync_store_errors_total counter\n"
        "casesync_store_errors_total{where=\"commit\"} %llu\n"
        "casesync_store_errors_total{where=\"evidence\"} %llu\n"
        "# HELP casesync_commit_batch_jobs Write jobs (changesets, logins ...) per group commit.\n"
        "# TYPE casesync_commit_batch_jobs histogram\n",
        (unsigned long long)__atomic_load_n(&s->n_changesets, __ATOMIC_RELAXED),
        (unsigned long long)__atomic_load_n(&s->n_replays, __ATOMIC_RELAXED),
        (unsigned long long)__atomic_load_n(&s->n_applied, __ATOMIC_RELAXED),
        (unsigned long long)__atomic_load_n(&s->n_merged, __ATOMIC_RELAXED),
        (unsigned long long)__atomic_load_n(&s->n_conflict, __ATOMIC_RELAXED),
        (unsigned long long)__atomic_load_n(&s->n_rejected, __ATOMIC_RELAXED),
        (unsigned long long)store_size(s->st), (unsigned long long)store_commit_errors(s->st),
        (unsigned long long)__atomic_load_n(&s->n_disk_errors, __ATOMIC_RELAXED));
    uint64_t cum = 0;
    for (int i = 0; i < STORE_BATCH_BUCKETS && n > 0 && (size_t)n < cap; i++) {
        cum += hist[i];
        if (i < STORE_BATCH_BUCKETS - 1)
            n += snprintf(b + n, cap - (size_t)n, "casesync_commit_batch_jobs_bucket{le=\"%llu\"} %llu\n",
                          1ull << i, (unsigned long long)cum);
        else
            n += snprintf(b + n, cap - (size_t)n, "casesync_commit_batch_jobs_bucket{le=\"+Inf\"} %llu\n",
                          (unsigned long long)cum);
    }
    if (n > 0 && (size_t)n < cap)
        n += snprintf(b + n, cap - (size_t)n, "casesync_commit_batch_jobs_sum %llu\ncasesync_commit_batch_jobs_count %llu\n",
                      (unsigned long long)jobs, (unsigned long long)batches);
    pthread_mutex_lock(&s->hash_mu);
    uint64_t hashes = __atomic_load_n(&s->n_pw_hashes, __ATOMIC_RELAXED),
             busy = __atomic_load_n(&s->n_hash_busy, __ATOMIC_RELAXED);
    int hashing = s->hashing;
    pthread_mutex_unlock(&s->hash_mu);
    if (n > 0 && (size_t)n < cap)
        n += snprintf(b + n, cap - (size_t)n,
                      "# HELP casesync_password_hashes_total Password hashes computed (logins, also for unknown "
                      "usernames, re-hashes, new passwords).\n"
                      "# TYPE casesync_password_hashes_total counter\ncasesync_password_hashes_total %llu\n"
                      "# HELP casesync_password_hashing Password hashes being computed now (cap: max_hashing).\n"
                      "# TYPE casesync_password_hashing gauge\ncasesync_password_hashing %d\n"
                      "# HELP casesync_login_busy_total Logins answered 503 for want of a hashing slot.\n"
                      "# TYPE casesync_login_busy_total counter\ncasesync_login_busy_total %llu\n",
                      (unsigned long long)hashes, hashing, (unsigned long long)busy);
    if (s->replica) replica_metrics(s->replica, b, cap, &n);
    if (s->blobstream) blobstream_metrics(s->blobstream, b, cap, &n);
    if (n < 0 || (size_t)n >= cap) {
        free(b);
        return SYNC_ENOMEM;
    }
    *out = b;
    return 0;
}
