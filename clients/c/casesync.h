/* casesync.h -- libcasesync, the offline-first sync engine for case records
 * (城管执法) that phones embed: a local store, offline edits checked with the
 * shared schema, and sync with a casesync server over its public protocol
 * (docs/protocol.md, v1).
 *
 * Caveats -- read these first:
 * - One handle per state directory per process. The local store is an LMDB
 *   environment, and LMDB forbids opening the same environment twice in one
 *   process. Two processes may not share a state directory either while one
 *   of them syncs (the outbox numbering would fork).
 * - libcurl needs one process-wide initialisation. casesync_open() does it on
 *   first use with pthread_once; an app that also uses libcurl elsewhere, or
 *   that starts threads before opening a handle, calls casesync_global_init()
 *   once from its main thread first. The library keeps no other global state.
 * - A handle may be used from any number of threads. Local calls (edits,
 *   reads) take a short per-handle lock; network calls (login, sync, upload,
 *   request) are serialised by a second per-handle lock and do not hold the
 *   first while bytes move, so an app can read and edit while a sync runs.
 *   Edits made during a sync are queued and go out with the next sync.
 * - Callbacks (progress, events) run on the thread that called the network
 *   function, with no lock of the library held. They may read and edit, but a
 *   network call on the same handle from inside a callback returns
 *   CASESYNC_E_REENTRANT instead of deadlocking.
 * - Nothing an officer typed is dropped silently. A change the server rejects
 *   stays readable as a notice (casesync_notices) and in the server's
 *   quarantine; a changeset the server refuses as a whole (422) is moved to
 *   the notices with its body. The app shows notices until the user
 *   dismisses them.
 * - The local view of a record is the record as last pulled (its "base")
 *   with every local change not yet seen back from the server re-applied on
 *   top. A pushed change stays in the view until a pull brings the record at
 *   the version the server answered, so a cut-off pull never makes an
 *   accepted edit vanish for a moment.
 * - Every changeset is sealed (numbered and its body fixed) and written to
 *   the store before it is sent; a retry after an error at any byte sends the
 *   identical body, and the server answers a replay without applying twice.
 * - Attachments are referenced by path: the file must stay where it is until
 *   its upload is done (casesync_uploads()). Evidence metadata syncs at once;
 *   the bytes follow through tus uploads, resumed after any interruption.
 * - Every HTTP call is bounded (connect, total and low-speed timeouts).
 * - Strings are UTF-8. JSON text handed to the library is parsed, never
 *   trusted; JSON text handed back is owned by the caller and released with
 *   casesync_free().
 */
#ifndef CASESYNC_H
#define CASESYNC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- return codes --------------------------------------------------------------- */

/* Every function returning int returns 0 on success or one of these. */
enum {
    CASESYNC_OK = 0,
    CASESYNC_E_ARG = -1,         /* a bad argument: NULL, malformed JSON text, bad id */
    CASESYNC_E_NOMEM = -2,       /* out of memory */
    CASESYNC_E_STORE = -3,       /* the local store (LMDB) failed */
    CASESYNC_E_LOGIN = -4,       /* no session, or the server no longer accepts the token: log in */
    CASESYNC_E_CREDENTIALS = -5, /* wrong username or password */
    CASESYNC_E_REVOKED = -6,     /* this device was revoked (and wiped when the server said so) */
    CASESYNC_E_NETWORK = -7,     /* no answer: connection refused, reset, DNS; retry later */
    CASESYNC_E_TIMEOUT = -8,     /* an HTTP call ran past its time limit; retry later */
    CASESYNC_E_CANCELED = -9,    /* the progress callback (or a test fault) stopped a transfer */
    CASESYNC_E_BUSY = -10,       /* 429 or 503: retry after casesync_retry_after() seconds */
    CASESYNC_E_SERVER = -11,     /* an unexpected HTTP status; err says which */
    CASESYNC_E_PROTOCOL = -12,   /* an answer that does not follow the protocol */
    CASESYNC_E_SHAPE = -13,      /* a JSON type the schema cannot take (the server would 422) */
    CASESYNC_E_INVALID = -14,    /* a value rule of the schema (validation_failed) */
    CASESYNC_E_ROLE = -15,       /* the user's role may not do this (role_forbidden, field_forbidden) */
    CASESYNC_E_TRANSITION = -16, /* not a transition from the record's status (forbidden_transition) */
    CASESYNC_E_SCOPE = -17,      /* outside the user's scope (out_of_scope) */
    CASESYNC_E_NOT_FOUND = -18,  /* no such record (locally), file or server object */
    CASESYNC_E_EXISTS = -19,     /* a record or item with this id exists */
    CASESYNC_E_VOIDED = -20,     /* the record is voided (撤销) */
    CASESYNC_E_STATE = -21,      /* the state directory holds another user's or device's unsent changes */
    CASESYNC_E_IO = -22,         /* a file could not be read */
    CASESYNC_E_NO_SCHEMA = -23,  /* no schema yet: log in once online */
    CASESYNC_E_REENTRANT = -24,  /* a network call from inside a callback of the same handle */
    CASESYNC_E_FORBIDDEN = -25,  /* the server answered 403 */
    CASESYNC_E_FROZEN = -26 /* the record's state freezes the field, or the record is closed (field_frozen) */
};

/* A static English description of a return code. Never NULL. */
const char *casesync_strerror(int rc);

/* Details of a failure, filled by functions that take one (NULL is fine).
 * Zeroed on success. `api_code` is the server's or the schema's snake_case
 * code ("validation_failed", "changeset_gap", ...); `field` the path of the
 * field at fault ("set.fine_amount", "fields.grid") when one is. */
typedef struct casesync_error {
    int code;         /* the return code */
    long http_status; /* the HTTP status when a server answered, else 0 */
    char api_code[48];
    char message[256];
    char field[192];
} casesync_error_t;

/* ---- callbacks --------------------------------------------------------------------- */

/* What a transfer is doing. */
enum {
    CASESYNC_PHASE_LOGIN = 1,
    CASESYNC_PHASE_PUSH = 2,    /* POST /v1/sync/push */
    CASESYNC_PHASE_PULL = 3,    /* GET /v1/sync/pull */
    CASESYNC_PHASE_UPLOAD = 4,  /* tus: evidence bytes */
    CASESYNC_PHASE_OTHER = 5,   /* schema, check, repair, casesync_request */
    CASESYNC_PHASE_DOWNLOAD = 6 /* casesync_download: evidence bytes */
};

/* Progress of the running transfer. Byte counts are wire bytes of the
 * current HTTP request; *_total is 0 when unknown. `step`/`steps` count the
 * changesets of a push, the pages of a pull (steps 0: unknown) and the
 * uploads of an upload round. Valid only during the callback. */
typedef struct casesync_progress {
    int phase;
    int step, steps;
    uint64_t up_now, up_total;
    uint64_t down_now, down_total;
    uint64_t file_done, file_size; /* uploads: bytes of the file acknowledged so far */
} casesync_progress_t;

/* Return non-zero to cancel: the transfer is aborted and the network call
 * returns CASESYNC_E_CANCELED. Cancelling is always safe; the next sync
 * resumes (a pushed body is resent identically, an upload resumes at the
 * server's offset). */
typedef int (*casesync_progress_cb)(void *userdata, const casesync_progress_t *p);

/* Events a sync reports. */
enum {
    CASESYNC_EVENT_RESULT = 1,  /* the server's result for one pushed change */
    CASESYNC_EVENT_FAILED = 2,  /* a changeset refused as a whole (422/413): its changes are notices now */
    CASESYNC_EVENT_RECORD = 3,  /* a pull changed a record's base */
    CASESYNC_EVENT_REMOVED = 4, /* a pull removed a record (out_of_scope, expired) */
    CASESYNC_EVENT_WIPED = 5,   /* the device was revoked with wipe: the local store is empty */
    CASESYNC_EVENT_UPLOAD = 6,  /* an upload finished or failed */
    CASESYNC_EVENT_NOTICE = 7   /* a notice was added (conflict, rejection, ...) */
};

/* One event. `json` is a compact JSON object describing it:
 *  RESULT  {"changeset_seq","index","record_id","status","version","conflicts"?,
 *           "error"?,"replay":bool,"change":{...as pushed}}
 *  FAILED  {"changeset_seq","status","error":{...},"changes":n}
 *  RECORD  the record's new base; REMOVED {"record_id","reason"}
 *  UPLOAD  {"sha256","record_id","state":"done"|"failed","error"?}
 *  NOTICE  the notice (see casesync_notices)
 * `record_id` and `status` repeat the most used members (NULL when none).
 * Everything is valid only during the callback. */
typedef struct casesync_event {
    int kind;
    const char *record_id;
    const char *status;
    const char *json;
} casesync_event_t;

typedef void (*casesync_event_cb)(void *userdata, const casesync_event_t *ev);

/* What changed a record of the local view (casesync_on_change). */
enum {
    CASESYNC_CHANGE_LOCAL = 1,   /* an edit on this handle (create, update, note, attach, transition, void) */
    CASESYNC_CHANGE_PULLED = 2,  /* a pull brought a new base (others' edits, the server's answer) */
    CASESYNC_CHANGE_REMOVED = 3, /* a pull removed it (out of scope, expired) */
    CASESYNC_CHANGE_WIPED = 4    /* every record is gone (revoked with wipe); record_id is NULL */
};

/* A record of the local view changed: refresh what shows it. Runs on the
 * thread that made the change (the editing thread, or the one in
 * casesync_sync), after the change is stored, with no lock of the library
 * held; the same rules as the other callbacks apply. record_id is valid
 * during the call only. */
typedef void (*casesync_change_cb)(void *userdata, const char *record_id, int what);

/* Milliseconds since the epoch for `at` stamps and new ids; NULL in the
 * options means the system clock. Simulators and tests pass their own. */
typedef int64_t (*casesync_clock_cb)(void *userdata);

/* ---- handles --------------------------------------------------------------------------- */

typedef struct casesync casesync_t;

/* Options of casesync_open. Zero means the default for every member, so
 * `casesync_options_t o = {0}; o.state_dir = dir;` is a complete setup.
 * Strings are copied; callbacks and userdata are kept as given. */
typedef struct casesync_options {
    const char *state_dir;   /* required: a directory the app owns (created if missing) */
    size_t map_size;         /* LMDB map size in bytes; 0: 256 MiB (grows when full) */
    long connect_timeout_ms; /* 0: 10 s */
    long request_timeout_ms; /* whole HTTP call; 0: 60 s (long polls add their wait) */
    long low_speed_time_s;   /* abort when under 1 byte/s for this long; 0: 30 s */
    int pull_limit;          /* records per pull page, 1..1000; 0: 200. The next page is
                                requested while one is stored (docs/clients.md §1). */
    size_t upload_chunk;     /* bytes per tus PATCH; 0: 1 MiB */
    int no_gzip;             /* 1: send pushes uncompressed (debugging) */
    int no_delta_check;      /* 1: apply every pulled delta as given. By default a delta
                                with a new version on a page after a `more:true` page is
                                not trusted and the record is read whole instead
                                (GET /v1/cases/{id}); see docs/clients.md. For testing
                                servers only. */
    int no_sync;             /* 1: do not fsync the local store after each edit (simulators,
                                tests); an OS crash or power loss may then lose the last
                                edits. An app crash never does. Default: every edit is
                                on disk before the call returns, and so is every pulled
                                page when casesync_sync returns (while it pulls, an OS
                                crash may undo the last page stored; the next sync pulls
                                it again). */
    const char *ca_file;     /* PEM bundle for TLS; NULL: the system's */
    const char *device_name; /* sent at login; NULL: none */
    const char *app_version; /* sent at login and as User-Agent; NULL: "libcasesync" */
    casesync_progress_cb on_progress;
    casesync_event_cb on_event;
    casesync_clock_cb clock;
    void *userdata; /* passed to the callbacks */
} casesync_options_t;

/* Initialises libcurl for the process. Optional (see the caveats); call it
 * once before any thread uses the library. 0 or CASESYNC_E_NETWORK. */
int casesync_global_init(void);

/* Opens (creating when needed) the state directory. On success *out owns a
 * new handle (release with casesync_close); on failure *out is NULL. */
int casesync_open(const casesync_options_t *opt, casesync_t **out, casesync_error_t *err);

/* Closes the handle. Waits for a network call in another thread to end
 * first; the app makes no other call on the handle during or after it, and
 * never calls it from a callback. NULL is fine. */
void casesync_close(casesync_t *h);

/* Sets (or with cb NULL clears) the change listener, at any time: unlike the
 * options' on_event, which reports what a sync did, it fires for local edits
 * too, so an app's list refreshes however a record changed (as a
 * Couchbase Lite or PouchDB change feed does). One listener per handle; a
 * call replaces the previous one. 0 or CASESYNC_E_ARG. */
int casesync_on_change(casesync_t *h, casesync_change_cb cb, void *userdata);

/* Releases memory the library handed out (JSON text). NULL is fine. */
void casesync_free(void *p);

/* ---- session ------------------------------------------------------------------------- */

/* POST /v1/auth/login at `server_url` ("https://host" or "http://127.0.0.1:8080",
 * without /v1), then fetches the schema. Stores the token, the user, the
 * device id and next_changeset_seq. Logging in as another user or from
 * another device id on a state directory that still holds unsent changes is
 * CASESYNC_E_STATE (sync them first, or casesync_wipe); with nothing unsent,
 * another user's records are dropped. The password is not stored. */
int casesync_login(casesync_t *h, const char *server_url, const char *username, const char *password,
                   const char *device_id, casesync_error_t *err);

/* POST /v1/auth/logout and forget the token; local data stays. */
int casesync_logout(casesync_t *h, casesync_error_t *err);

/* The session as JSON: {"logged_in","server","device_id","user":{...},
 * "next_changeset_seq","cursor":bool,"schema_version"}. *out is owned by
 * the caller (casesync_free); NULL on failure. */
int casesync_session(casesync_t *h, char **out);

/* The schema the library validates with (the server's, as JSON text). */
int casesync_schema(casesync_t *h, char **out);

/* Deletes every local record, change, notice and the session. */
int casesync_wipe(casesync_t *h);

/* ---- offline edits ------------------------------------------------------------------- */
/* Each edit is checked against the schema and the local view (role, lifecycle,
 * guards) before it is queued; a refused edit returns the schema's error in
 * err (api_code, field, message) and queues nothing. A queued edit changes
 * the local view at once. */

#define CASESYNC_ID_MAX 65 /* record and item ids: ^[0-9A-Za-z_-]{8,64}$, plus NUL */

/* Queues a create of a record of `type` ("unlicensed_vending") with
 * `fields_json` (an object: procedure, source, description, occurred_at,
 * grid, address, location, ...). `unit` defaults to the user's unit and
 * `category` to the type's code. record_id NULL: a new ULID. The id is
 * copied to out_id when not NULL. */
int casesync_create(casesync_t *h, const char *type, const char *fields_json, const char *record_id,
                    char out_id[CASESYNC_ID_MAX], casesync_error_t *err);

/* Queues an update: `set_json` an object of fields to set (null clears),
 * `append_json` an object of item lists to append ({"notes":[{"id","text"}]});
 * either may be NULL, not both. Items without an "id" get a new one. */
int casesync_update(casesync_t *h, const char *record_id, const char *set_json, const char *append_json,
                    casesync_error_t *err);

/* Queues a note (an item of `notes` with a new id, the text and `at`). */
int casesync_note(casesync_t *h, const char *record_id, const char *text, char out_item_id[CASESYNC_ID_MAX],
                  casesync_error_t *err);

/* Queues a lifecycle transition of the record to `to`. Judged on the local
 * view with the user's role: a transition the schema does not allow from
 * the current status, or whose guards fail, is refused here. */
int casesync_transition(casesync_t *h, const char *record_id, const char *to, casesync_error_t *err);

/* Queues a void (撤销, supervisors) with a reason. */
int casesync_void(casesync_t *h, const char *record_id, const char *reason, casesync_error_t *err);

/* Attaches a file as evidence: hashes it (SHA-256), queues an `evidence`
 * item {"id","sha256","size","mime","kind","captured_at"} and an upload of
 * the bytes. kind: photo, video, audio, bodycam, scan (NULL: photo); mime
 * NULL: guessed from the name. The file must stay until uploaded. */
int casesync_attach(casesync_t *h, const char *record_id, const char *path, const char *kind,
                    const char *mime, char out_item_id[CASESYNC_ID_MAX], casesync_error_t *err);

/* ---- reading the local view ------------------------------------------------------------- */

/* The local view of one record as JSON: the server's record shape
 * {"id","type","version","seq","status","voided","fields","conflicts",...}
 * plus "pending": the number of local changes not yet seen back. Version
 * is the base's (0 for a record not yet pulled). CASESYNC_E_NOT_FOUND when
 * the phone does not hold it. */
int casesync_get(casesync_t *h, const char *record_id, char **out);

/* Every record of the local view, as a JSON array in id order. */
int casesync_list(casesync_t *h, char **out);

/* The transitions the user may take now on a record, judged on the local
 * view: a JSON array of {"to","label"?}. */
int casesync_next_states(casesync_t *h, const char *record_id, char **out);

/* The outbox, for inspection and tests:
 * {"next_changeset_seq":n,
 *  "pending":[change...],                       not yet sealed
 *  "sealed":[{"changeset_seq","body":{...}}],   sealed, not yet answered
 *  "acked":[{"change","status","version"}],    answered, not yet pulled back
 *  "held":[{"change","held_for"}]}              evidence_unknown, waiting for its upload */
int casesync_outbox(casesync_t *h, char **out);

/* Notices for the app, oldest first: a JSON array of
 * {"id","kind","record_id"?,"at",...} with kind
 *   "conflict"   a manual field or lifecycle clash: the server value stands,
 *                a supervisor decides ("result" holds the conflict ids),
 *   "overridden" an lww decision kept another device's later value,
 *   "rejected"   a change the server refused ("error"), kept in its quarantine;
 *                with "held_for_upload":sha256 when it was evidence_unknown and
 *                this phone holds those bytes: the change is then kept (state
 *                "held", in the outbox's "held") and pushed again once the
 *                upload is done, which makes the server accept it,
 *   "failed"     a changeset refused as a whole ("error", "body"),
 *   "lost"       the server no longer had changesets it had acknowledged,
 *   "upload_failed", "removed" (a record left the phone's scope), "revoked".
 * Rejected and conflicting changes carry the change as pushed. */
int casesync_notices(casesync_t *h, char **out);
/* Dismisses one notice, or every notice when id is 0. */
int casesync_notice_dismiss(casesync_t *h, uint64_t id);

/* ---- sync ------------------------------------------------------------------------------- */

enum {
    CASESYNC_SYNC_NO_PUSH = 1,  /* only pull */
    CASESYNC_SYNC_NO_PULL = 2,  /* only push */
    CASESYNC_SYNC_NO_UPLOAD = 4 /* leave evidence bytes for later */
};

/* What one casesync_sync did. */
typedef struct casesync_report {
    int changesets;                           /* changesets answered (replays included) */
    int replays;                              /* answers marked Idempotent-Replay */
    int applied, merged, conflicts, rejected; /* results of pushed changes */
    int failed;                               /* changesets refused as a whole */
    int pages;                                /* pull pages */
    int upserts, removals;
    int uploads_done, uploads_pending, uploads_failed;
} casesync_report_t;

/* One sync: seal the queued changes into changesets (at most 1000 changes
 * each, numbered consecutively), push the outbox in changeset_seq order, pull
 * until `more` is false (applying upserts and removals and re-applying the
 * local changes still pending on top), then upload pending evidence bytes.
 * Stops at the first error and returns it; everything done so far is kept,
 * and calling again continues where it stopped. Results are reported through
 * the event callback and (conflicts, rejections) as notices. rep may be NULL. */
int casesync_sync(casesync_t *h, int flags, casesync_report_t *rep, casesync_error_t *err);

/* Only the uploads of evidence bytes (also part of casesync_sync). */
int casesync_upload(casesync_t *h, casesync_report_t *rep, casesync_error_t *err);

/* Pending and finished uploads as a JSON array of {"sha256","record_id",
 * "path","size","offset","state":"pending"|"done"|"failed","error"?}. */
int casesync_uploads(casesync_t *h, char **out);

/* POST /v1/sync/check with every record the phone holds; *out gets the
 * server's answer {"missing":[],"stale":[],"extra":[]}. */
int casesync_check(casesync_t *h, char **out, casesync_error_t *err);

/* check, then repair: fetch missing and stale records (GET /v1/cases/{id})
 * and drop extra ones, without a full resync. */
int casesync_repair(casesync_t *h, casesync_error_t *err);

/* Seconds the server asked to wait (Retry-After) with the last
 * CASESYNC_E_BUSY; 0 when none. */
long casesync_retry_after(casesync_t *h);

/* Any other /v1 call with the session's token (supervisor screens: conflicts,
 * resolve, devices; evidence reads). path starts with "/v1/"; body_json may
 * be NULL. On any HTTP answer returns 0 with *status set and *out the body
 * (JSON text, gunzipped; "" when empty; casesync_free). */
int casesync_request(casesync_t *h, const char *method, const char *path, const char *body_json, long *status,
                     char **out, casesync_error_t *err);

/* ---- counters -------------------------------------------------------------------------- */

/* Totals since the handle was opened. "raw" counts JSON bytes before gzip,
 * "wire" what crossed the network (request and response bodies). */
typedef struct casesync_stats {
    uint64_t requests, network_errors, cancels;
    uint64_t changesets_pushed, replays, changes_pushed;
    uint64_t applied, merged, conflicts, rejected, failed_changesets;
    uint64_t pull_pages, upserts, removals, full_resyncs;
    uint64_t delta_checks; /* deltas read whole instead (see casesync_options_t.no_delta_check) */
    uint64_t uploads_done, upload_bytes;
    uint64_t bytes_up_raw, bytes_up_wire, bytes_down_raw, bytes_down_wire;
} casesync_stats_t;

int casesync_stats(casesync_t *h, casesync_stats_t *out);

/* ---- fault injection (tests and simulators) ---------------------------------------------- */

/* Arms a one-shot fault for the next HTTP request of `phase` (0: any):
 * after_up_bytes >= 0 aborts the transfer once that many request-body bytes
 * were handed to the network (the server sees a cut body); else
 * after_down_bytes >= 0 aborts once that many response bytes (status line
 * and headers included) arrived -- 0 drops the answer of a request the
 * server has fully received and processed. The call then returns
 * CASESYNC_E_CANCELED. Both < 0 disarms. Production code never calls this. */
int casesync_fault(casesync_t *h, int phase, long long after_up_bytes, long long after_down_bytes);

/* Downloads the evidence blob `sha256` (64 lowercase hex) to `path`:
 * GET /v1/blobs/{sha256} streamed into `path`.part, resumed with Range (and
 * If-Range on the blob's ETag) from the bytes a cut-off earlier call left
 * there, checked against the SHA-256 and renamed to `path` only when it
 * matches (else the part is deleted: CASESYNC_E_PROTOCOL). The bytes never
 * sit in memory whole. A blob the user may not read is CASESYNC_E_NOT_FOUND
 * (the server does not say whether it exists). Progress and cancel as for
 * the other network calls (phase CASESYNC_PHASE_DOWNLOAD). */
int casesync_download(casesync_t *h, const char *sha256, const char *path, casesync_error_t *err);

#ifdef __cplusplus
}
#endif

#endif
