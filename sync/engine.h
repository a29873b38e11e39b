/* engine.h -- what the modules of sync/ share: the engine struct and small
 * utilities. Internal to sync/. */
#ifndef CASESYNC_ENGINE_H
#define CASESYNC_ENGINE_H

#include <pthread.h>
#include <stdint.h>

#include "sync/blobstream.h"
#include "sync/replica.h"
#include "sync/store.h"
#include "sync/sync.h"

/* Login failure limiter: a small table of (key -> failures, window start).
 * Three kinds of key share it (identity.c): address and username, address,
 * username alone. */
#define LOGIN_SLOTS 1024
typedef struct login_slot {
    char key[128];
    int failures; /* wrong passwords in the window */
    int pending;  /* attempts whose password is being checked now */
    int max;      /* failures that block this key (by its kind) */
    int64_t first_ms;
} login_slot_t;

struct sync {
    store_t *st;
    const store_dbs_t *dbs;
    replica_t *replica;         /* cluster mode, else NULL */
    blobstream_t *blobstream;   /* cluster mode: evidence bytes in the blob stream, else NULL */
    schema_t *schema;
    sync_config_t cfg;          /* defaults filled in */
    char data_dir[1024];
    char schema_source[1024]; /* the schema file read at start, or "built in" */
    pthread_mutex_t login_mu;
    login_slot_t login[LOGIN_SLOTS];
    /* Password hashing slots (identity.c): at most cfg.max_hashing hash at
     * once, at most HASH_WAITERS_FACTOR times that many wait for a slot. */
    pthread_mutex_t hash_mu;
    pthread_cond_t hash_cv;
    int hashing, hash_waiting;
    uint64_t n_pw_hashes, n_hash_busy; /* counters for /metrics (atomic adds) */
    int shutting_down;          /* atomic: set by sync_shutdown() */
    char cursor_key[65];        /* seals pull cursors; kept in meta */
    /* Counters for /metrics (atomic adds). */
    uint64_t n_changesets, n_replays, n_applied, n_merged, n_conflict, n_rejected;
    uint64_t n_disk_errors; /* evidence file writes, syncs and renames the disk refused */
};

/* ---- time (util.c) ---- */
int64_t util_now_ms(void); /* CLOCK_REALTIME in ms */
/* RFC 3339 UTC with milliseconds: "2026-11-22T08:15:30.123Z". buf >= 32. */
char *util_fmt_time(int64_t ms, char *buf);
/* Parses RFC 3339 (Z or +hh:mm offset, optional fraction). 0 or -1. */
int util_parse_time(const char *s, int64_t *ms);

/* ---- crypto (util.c, OpenSSL) ---- */
/* n bytes as 2n lowercase hex digits and a NUL. */
void util_hex(const unsigned char *bytes, size_t n, char *out);
void util_sha256_hex(const void *data, size_t len, char out[65]);
/* n random bytes as 2n hex chars + NUL. 0 or -1. */
int util_random_hex(size_t n, char *out);

/* ---- JSON ---- */
/* Compact text of v, malloc'd; NULL on OOM. */
char *util_json_print(const cJSON *v);
/* Sets member key of o to v (replacing any). o takes v whatever happens: on
 * failure (v NULL, o NULL, an allocation) v is freed. 0 or -1. */
int util_json_set(cJSON *o, const char *key, cJSON *v);
/* Adds member key to o (no replacing); takes v as util_json_set does. 0 or -1. */
int util_json_add(cJSON *o, const char *key, cJSON *v);
/* Appends v to the array arr; takes v as util_json_set does. 0 or -1. */
int util_json_push(cJSON *arr, cJSON *v);
/* Adds member key of o as a reference to v (not copied, not freed with o:
 * v must outlive o). 0 or -1 (nothing added, nothing leaked). */
int util_json_add_ref(cJSON *o, const char *key, const cJSON *v);
/* Routes cJSON's allocations through a counter (once per process; called by
 * store_open before any thread uses cJSON). */
void util_json_hooks(void);
/* cJSON allocations that failed in the calling thread so far. Compare it
 * before and after building a tree: cJSON's builders drop members silently. */
uint64_t util_json_failures(void);
/* String member or NULL. */
const char *util_json_str(const cJSON *obj, const char *key);
/* Integer member: 0 and *out set, or -1 if absent / not an integer. */
int util_json_int(const cJSON *obj, const char *key, int64_t *out);
/* Does id match ^[0-9A-Za-z_-]{min,max}$ ? */
int util_valid_id(const char *id, size_t min, size_t max);

/* Inside a write txn: is the principal's session still valid (token, user
 * epoch, the device bound to the user, not revoked)? 0, SYNC_EUNAUTH,
 * SYNC_EREVOKED (+wipe) or a storage error. A push authenticated just
 * before a release or a revocation must not be applied after it. */
int sync_session_recheck(MDB_txn *txn, const store_dbs_t *dbs, const sync_principal_t *p, sync_error_t *err);

/* Role of a user object ("role" member). */
schema_role_t util_user_role(const cJSON *user);

#endif
