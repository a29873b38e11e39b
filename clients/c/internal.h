/* internal.h -- shared by the files of libcasesync; never installed.
 *
 * Non-static names here start with cs__ so they cannot clash with the server
 * engine's names when the tests link both into one binary.
 *
 * Locking: h->lock guards every LMDB access and the in-memory session fields;
 * it is held only for short local work. h->net serialises network calls and
 * is held while bytes move, without h->lock. Order: net before lock.
 *
 * Local store (one LMDB environment in the state directory), databases:
 *   meta      name                       -> text (token, user JSON, cursor, counters, schema)
 *   base      record id                  -> record JSON as last pulled
 *   view      record id                  -> base + local changes re-applied (what the app sees),
 *                                           stored only for a record with local changes: for
 *                                           any other the view is its base + "pending":0
 *                                           (cs__view_get; stores written before kept one for
 *                                           every record, still read first and dropped at the
 *                                           record's next rebase)
 *   changes   lseq (u64 BE)              -> {"state":"pending"|"sealed"|"acked","cs","ack_version","change"}
 *   rchanges  record id, 0, lseq (BE)    -> ""   (index of changes by record)
 *   outbox    changeset_seq (u64 BE)     -> {"body":"<exact JSON text>","lseqs":[...]}
 *   notices   notice id (u64 BE)         -> notice JSON
 *   uploads   sha256 hex                 -> upload state JSON
 *   seen      record id                  -> ""   (records met during a pull from scratch)
 */
#ifndef CASESYNC_INTERNAL_H
#define CASESYNC_INTERNAL_H

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>

#include "clients/c/casesync.h"
#include "schema/schema.h"

/* Internal names stay out of the shared library's dynamic symbol table. */
#pragma GCC visibility push(hidden)

#define CS_MAX_CHANGES 1000               /* changes per changeset (PROTOCOL §1) */
#define CS_MAX_CHANGESET_BYTES (8u << 20) /* sealed body, below the server's 16 MiB */
#define CS_MAX_RESPONSE (256u << 20)      /* inflated answer size we accept */
#define CS_DEFAULT_MAP (256u << 20)
#define CS_MAX_EVENTS_JSON (1u << 20)

enum {
    CS_DB_META,
    CS_DB_BASE,
    CS_DB_VIEW,
    CS_DB_CHANGES,
    CS_DB_RCHANGES,
    CS_DB_OUTBOX,
    CS_DB_NOTICES,
    CS_DB_UPLOADS,
    CS_DB_SEEN,
    CS_DB_COUNT
};

/* A queued event, fired after the transaction that produced it committed. */
typedef struct cs__event {
    int kind;
    char *record_id, *status, *json;
} cs__event_t;

typedef struct cs__events {
    cs__event_t *v;
    int n, cap;
} cs__events_t;

typedef struct cs__fault {
    int armed, phase;
    long long up, down;
} cs__fault_t;

struct casesync {
    pthread_mutex_t lock; /* LMDB and session fields */
    pthread_mutex_t net;  /* one network call at a time */
    pthread_t net_owner;
    int net_busy; /* guarded by lock */

    MDB_env *env;
    MDB_dbi db[CS_DB_COUNT];
    size_t map_size;

    char *state_dir;
    long connect_timeout_ms, request_timeout_ms, low_speed_time_s;
    int pull_limit;
    size_t upload_chunk;
    int no_gzip, no_sync, no_delta_check;
    char *ca_file, *device_name, *app_version;
    casesync_progress_cb on_progress;
    casesync_event_cb on_event;
    casesync_change_cb on_change; /* under lock */
    void *change_ud;
    casesync_clock_cb clock;
    void *userdata;

    /* Session, loaded from meta (guarded by lock). */
    char *server, *token, *device_id, *user_id, *unit;
    cJSON *grids; /* the grids the user patrols (the write rules read them) */
    schema_role_t role;
    schema_t *schema;

    CURL *curl;   /* guarded by net; always driven through `multi` */
    CURLM *multi; /* guarded by net; holds the kept-alive connection */
    cs__fault_t fault;
    long retry_after;
    int lazy_commits; /* under lock: commits not yet flushed (cs__with_write_lazy) */
    char *print_buf;  /* under lock: a pulled base printed (sync.c) */
    size_t print_cap;
    casesync_stats_t stats;
    casesync_progress_t prog; /* the running transfer's progress (net) */
};

/* ---- handle.c ---------------------------------------------------------------------- */
int cs__fail(casesync_error_t *err, int code, long http, const char *api, const char *field, const char *fmt,
             ...) __attribute__((format(printf, 6, 7)));
void cs__err_clear(casesync_error_t *err);
int cs__net_enter(casesync_t *h);
void cs__net_leave(casesync_t *h);
void cs__events_add(cs__events_t *ev, int kind, const char *record_id, const char *status, const cJSON *json);
/* The same with the event's JSON as text (copied; NULL: "{}"). */
void cs__events_add_text(cs__events_t *ev, int kind, const char *record_id, const char *status,
                         const char *json);
void cs__events_fire(casesync_t *h, cs__events_t *ev); /* fires and frees; no lock held */
/* Drops queued events: the first thing a transaction body that queues events
 * does, since cs__with_write may run it again after growing the map. */
void cs__events_reset(cs__events_t *ev);
/* Calls the change listener, if any; takes and drops h->lock to read it, so
 * call it with no lock held. */
void cs__change_fire(casesync_t *h, const char *record_id, int what);
int cs__session_load(casesync_t *h); /* under lock */
int64_t cs__now_ms(casesync_t *h);

/* ---- store.c ----------------------------------------------------------------------- */
int cs__store_open(casesync_t *h, casesync_error_t *err);
void cs__store_close(casesync_t *h);
int cs__txn_begin(casesync_t *h, int write, MDB_txn **txn);
int cs__txn_commit(casesync_t *h, MDB_txn *txn); /* maps MAP_FULL: grows, returns CASESYNC_E_STORE */
int cs__lmdb_rc(int mrc);
int cs__get(MDB_txn *txn, MDB_dbi db, const void *k, size_t kl, char **out, size_t *len);
int cs__get_json(MDB_txn *txn, MDB_dbi db, const void *k, size_t kl, cJSON **out);
int cs__put(MDB_txn *txn, MDB_dbi db, const void *k, size_t kl, const void *v, size_t vl);
int cs__put_json(MDB_txn *txn, MDB_dbi db, const void *k, size_t kl, const cJSON *v);
int cs__del(MDB_txn *txn, MDB_dbi db, const void *k, size_t kl);
int cs__meta_get(casesync_t *h, MDB_txn *txn, const char *name, char **out);
int cs__meta_put(casesync_t *h, MDB_txn *txn, const char *name, const char *value); /* NULL deletes */
int64_t cs__meta_int(casesync_t *h, MDB_txn *txn, const char *name, int64_t dflt);
int cs__meta_put_int(casesync_t *h, MDB_txn *txn, const char *name, int64_t v);
void cs__be64(unsigned char out[8], uint64_t v);
uint64_t cs__rd64(const void *p);
int cs__clear_db(MDB_txn *txn, MDB_dbi db);
int cs__with_write(casesync_t *h, int (*fn)(casesync_t *h, MDB_txn *txn, void *ctx), void *ctx);
/* The same, but the commit does not wait for its meta page to reach the disk
 * (LMDB's MDB_NOMETASYNC): the store stays whole (atomic, consistent) and a
 * kill of the app loses nothing, but an OS crash or power loss may undo the
 * last such commit. For pulled pages only, which the server sends again
 * from the stored cursor; cs__store_flush makes them durable (at the end of
 * every pull). Any ordinary commit after them flushes them too. */
int cs__with_write_lazy(casesync_t *h, int (*fn)(casesync_t *h, MDB_txn *txn, void *ctx), void *ctx);
int cs__store_flush(casesync_t *h); /* 0 or CASESYNC_E_STORE */

/* ---- util.c ------------------------------------------------------------------------ */
void cs__ulid(casesync_t *h, char out[27]);
void cs__iso_time(int64_t ms, char out[32]);
int cs__sha256_file(const char *path, char hex[65], uint64_t *size);
char *cs__b64(const void *data, size_t len);
const char *cs__jstr(const cJSON *o, const char *key);
int64_t cs__jint(const cJSON *o, const char *key, int64_t dflt);
cJSON *cs__parse(const char *text, size_t len);
int cs__id_ok(const char *id);
char *cs__strdup(const char *s);
int cs__gzip(const void *in, size_t n, void **out, size_t *out_n);

/* ---- http.c ------------------------------------------------------------------------ */
typedef struct cs__req {
    const char *method;
    const char *url;  /* absolute, or a path appended to the server */
    int auth;         /* add the session's bearer token */
    const void *body; /* request body (NULL: none) */
    size_t body_len;
    size_t raw_len; /* uncompressed size, for the counters */
    const char *content_type;
    int gzipped; /* body is gzip: Content-Encoding */
    const char *const *headers;
    int phase;
    long timeout_ms;  /* 0: the handle's */
    int head;         /* HEAD: no body expected */
    int sink_fd;      /* > 0: a 200/206 body goes to this file, from sink_at */
    int sink_at_zero; /* a 200 (whole body) truncates the file first */
} cs__req_t;

typedef struct cs__resp {
    long status;
    char *body; /* NUL-terminated, gunzipped */
    size_t len;
    char *headers;
    cJSON *json;     /* parsed on demand by cs__resp_json */
    uint64_t sunk;   /* bytes written to rq->sink_fd */
    int sink_failed; /* a write to the sink failed (errno in sink_errno) */
    int sink_errno;
} cs__resp_t;

/* One HTTP call. 0 when an HTTP answer came (any status); else
 * CASESYNC_E_NETWORK / _TIMEOUT / _CANCELED / _NOMEM with err filled. */
int cs__http(casesync_t *h, const cs__req_t *rq, cs__resp_t *rs, casesync_error_t *err);
/* The same in two halves, so that local work runs while the server answers
 * (the pull's next page, sync.c). start sends the request as far as it goes
 * without waiting; finish waits for the answer and ends the call (its result
 * as cs__http's); abandon ends it unanswered and closes its connection. One
 * call at a time per handle: no other cs__http between start and its end.
 * rq is copied; its body must stay valid until the end. Under net. */
typedef struct cs__call cs__call_t;
int cs__http_start(casesync_t *h, const cs__req_t *rq, cs__call_t **call, casesync_error_t *err);
int cs__http_finish(casesync_t *h, cs__call_t *call, cs__resp_t *rs, casesync_error_t *err);
void cs__http_abandon(casesync_t *h, cs__call_t *call);
void cs__resp_free(cs__resp_t *rs);
cJSON *cs__resp_json(cs__resp_t *rs);
/* A header's value (trimmed, copied into buf), or NULL. */
const char *cs__resp_header(const cs__resp_t *rs, const char *name, char *buf, size_t cap);
/* Maps an error answer to a return code and fills err from its body. Also
 * handles 401 device_revoked (wipes when asked) and Retry-After. */
int cs__http_error(casesync_t *h, cs__resp_t *rs, const char *what, casesync_error_t *err);
void cs__http_close(casesync_t *h);

/* ---- edit.c ------------------------------------------------------------------------ */
/* Recomputes the view of one record from its base and its local changes;
 * a record without local changes keeps no stored view. */
int cs__view_refresh(casesync_t *h, MDB_txn *txn, const char *id);
/* The view of a record: the stored one, else its base with "pending":0;
 * CASESYNC_E_NOT_FOUND when neither. */
int cs__view_get(casesync_t *h, MDB_txn *txn, const char *id, cJSON **out);
/* Drops acked changes of a record its base now covers (all of them when
 * `all`); refreshes nothing. */
int cs__drop_acked(casesync_t *h, MDB_txn *txn, const char *id, int all);
int cs__change_del(casesync_t *h, MDB_txn *txn, uint64_t lseq, const char *id);
/* 1 when record `id` has local changes (any state), 0 when none, else a return code. */
int cs__has_changes(casesync_t *h, MDB_txn *txn, const char *id);
int cs__notice_add(casesync_t *h, MDB_txn *txn, cJSON *notice, cs__events_t *ev); /* takes notice */

/* ---- sync.c ------------------------------------------------------------------------ */
int cs__fetch_schema(casesync_t *h, casesync_error_t *err);
int cs__wipe_locked(casesync_t *h, MDB_txn *txn, int keep_session);

/* ---- upload.c ---------------------------------------------------------------------- */
int cs__upload_all(casesync_t *h, casesync_report_t *rep, casesync_error_t *err);

#pragma GCC visibility pop

#endif
