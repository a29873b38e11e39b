/* sync.h -- the casesync engine: store, identity, changesets, merge, feeds,
 * audit. No HTTP in here: server/ maps requests onto these calls.
 *
 * Caveats:
 * - Every call returns 0 or a negative SYNC_E* code, and on failure fills the
 *   sync_error_t (when not NULL) with a message, the field at fault and extra
 *   data some codes carry (`expected` for SYNC_EGAP, `wipe` for SYNC_EREVOKED,
 *   `retry_after` for SYNC_ERATE). Out-parameters are NULL on failure.
 * - A call that answers with JSON hands back a malloc'd NUL-terminated string
 *   in *out; the caller frees it with free().
 * - sync_t is thread-safe: any number of threads may call it at once. Writes
 *   go through one writer thread that commits the queued work of many callers
 *   in one LMDB transaction (group commit); a write call returns only after
 *   its commit is durable.
 * - sync_pull() with wait > 0 blocks the calling thread up to that long.
 */
#ifndef CASESYNC_SYNC_H
#define CASESYNC_SYNC_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "schema/schema.h"

typedef struct sync sync_t;

enum {
    SYNC_OK = 0,
    SYNC_EBADREQ = -1,     /* 400 bad_request: bad query, missing parts */
    SYNC_EBADJSON = -2,    /* 400 bad_json */
    SYNC_EBADCURSOR = -3,  /* 400 bad_cursor */
    SYNC_EUNAUTH = -4,     /* 401 unauthenticated */
    SYNC_ECREDS = -5,      /* 401 invalid_credentials */
    SYNC_EREVOKED = -6,    /* 401 device_revoked (+ wipe) */
    SYNC_EFORBIDDEN = -7,  /* 403 forbidden: role or scope */
    SYNC_EDEVICE = -8,     /* 403 device_mismatch: body device is not the token's */
    SYNC_ENOTFOUND = -9,   /* 404 not_found */
    SYNC_ECONFLICT = -10,  /* 409 conflict: state clash (user exists ...) */
    SYNC_EREUSED = -11,    /* 409 changeset_reused */
    SYNC_EGAP = -12,       /* 409 changeset_gap (+ expected) */
    SYNC_EEXPIRED = -13,   /* 410 cursor_expired */
    SYNC_ETOOLARGE = -14,  /* 413 too_large */
    SYNC_EINVALID = -15,   /* 422 validation_failed */
    SYNC_ERATE = -16,      /* 429 too_many_requests (+ retry_after) */
    SYNC_EBUSY = -17,      /* 503 unavailable: shutting down (+ retry_after) */
    SYNC_ENOMEM = -18,     /* 503 out of memory */
    SYNC_EIO = -19,        /* 500 storage failure: never caused by a client */
    SYNC_ECHECKSUM = -20,  /* 460 checksum_mismatch: uploaded bytes do not hash as declared */
    SYNC_EDISK = -21,      /* 503 unavailable: the disk refused a write; nothing of the
                            * request was kept (+ retry_after, SYNC_EDISK_RETRY_S) */
    SYNC_EEVIDENCE = -22,  /* 422 evidence_unknown: an evidence item lists stored bytes the
                            * pusher neither uploaded nor sees listed (a per-change
                            * result of a push; field names the item's sha256) */
    SYNC_EDEVINUSE = -23,  /* 409 device_in_use: the device id is bound to another user */
    SYNC_EUNAVAIL = -24,   /* 503 unavailable: cluster mode, the replicated log did not confirm
                            * the write (no quorum, no answer in time, this node is not the
                            * leader or is catching up). Not kept here; a publish that went
                            * unanswered may still land in the log and be applied, so the
                            * client retries the same request (a changeset's retry gets the
                            * stored answer) (+ retry_after, SYNC_EUNAVAIL_RETRY_S) */
    SYNC_EBEHIND = -25     /* cluster mode, a follower: the client has seen more than this
                            * node has applied (a token it does not know yet, a pull cursor
                            * ahead of its store). The edge sends the request to the leader
                            * (307) as it does a write; 503 + Retry-After when none is known */
};

/* Retry-After of SYNC_EDISK: time for a disk that hiccuped to come back, or
 * for the operator to be paged about one that did not. */
#define SYNC_EDISK_RETRY_S 30
/* Retry-After of SYNC_EUNAVAIL: a lease's term, about what a failover takes. */
#define SYNC_EUNAVAIL_RETRY_S 2

typedef struct sync_error {
    int code;
    char message[256];
    char field[256];
    long long expected;
    int wipe;
    int retry_after;
} sync_error_t;

typedef struct sync_config {
    const char *data_dir;       /* required */
    const char *schema_path;    /* NULL: <data_dir>/schema.json if present, else the built-in path */
    size_t map_size;            /* LMDB map size in bytes; 0: 64 GiB */
    int sync_window_days;       /* 0: 30 */
    int token_ttl_days;         /* 0: 90 */
    int pbkdf2_iterations;      /* 0: 210000; only read by the bench's baseline: new
                                 * hashes are argon2id, PBKDF2 ones are verified with
                                 * the count they store and re-hashed on login */
    int argon2_t_cost;          /* 0: 3 passes */
    int argon2_m_kib;           /* 0: 65536 KiB (64 MiB) per hash */
    int argon2_lanes;           /* 0: 1 */
    int max_hashing;            /* 0: the number of online cores; password hashes at once */
    int max_changes;            /* 0: 1000 changes per changeset */
    int max_string;             /* 0: 65536 bytes per string field */
    int login_max_failures;     /* 0: 5 failures per address and username in the window, then 429 */
    int login_account_max_failures; /* 0: 10 failures per username from any address in the window */
    int login_window_s;         /* 0: 900 (15 minutes) */
    int read_only;              /* open for reading only (command-line checks) */
    int migrating;              /* open a store whose records await `casesync migrate` */
    int evidence_deadline_hours; /* 0: 24; -1: evidence is due as soon as it is pushed */
    uint64_t max_upload_bytes;  /* 0: 4 GiB (tus Upload-Length limit) */
    int upload_expire_days;     /* 0: 7; unfinished uploads untouched this long are deleted */
    /* Cluster mode (sync/replica.h); NULL cluster_url: one node, no NATS. */
    const char *cluster_url;    /* NATS servers, comma separated */
    const char *node_name;      /* required with cluster_url */
    const char *advertise_url;  /* where writes are redirected while this node leads */
    int lease_ms;               /* 0: 6000 */
    int cluster_replicas;       /* 0: 3 (the stream's and the lease bucket's) */
    int cluster_detach;         /* open a store that has applied the cluster's log without
                                 * cluster mode (only for sync_cluster_detach) */
} sync_config_t;

/* Who is calling, as sync_authenticate() found from the bearer token. Plain
 * data owned by the caller; sync_principal_clear() frees `user`. */
typedef struct sync_principal {
    char user_id[64];
    char username[64];
    char device_id[80];
    char unit[64];
    schema_role_t role;
    cJSON *user;                /* the stored user object (id, name, role, unit, grids, grants_version) */
    char token_hash[65];
} sync_principal_t;

/* ---- life cycle -------------------------------------------------------- */

/* Opens (creating when missing) the store in cfg->data_dir and starts the
 * writer thread. *out owns the engine until sync_close(). */
int sync_open(const sync_config_t *cfg, sync_t **out, sync_error_t *err);
/* Wakes every long poll and makes new writes answer SYNC_EBUSY. */
void sync_shutdown(sync_t *s);
/* Drains the writer, stops it, closes the store. Accepts NULL. */
void sync_close(sync_t *s);
/* 1 when the store is open and the writer accepts work. */
int sync_ready(sync_t *s);
const schema_t *sync_schema(sync_t *s);
/* Where the schema came from: the file read at start, or "built in". */
const char *sync_schema_source(const sync_t *s);
/* Cluster mode: SYNC_NODE_SINGLE (no cluster), SYNC_NODE_LEADER (holds the
 * lease and may write now) or SYNC_NODE_FOLLOWER (everything else);
 * leader_url (may be NULL) gets another lease holder's advertised URL as
 * last read, "" when none is known. */
enum { SYNC_NODE_SINGLE = 0, SYNC_NODE_LEADER = 1, SYNC_NODE_FOLLOWER = 2 };
int sync_node_role(sync_t *s, char *leader_url, size_t n);
/* Takes a store out of its cluster for good: forgets the log sequence it
 * has applied (*was gets it), so it opens without cluster mode again, or
 * seeds a new cluster with an empty stream; it may join no stream that has
 * entries (sync/retention.h). Open with cluster_detach. */
int sync_cluster_detach(sync_t *s, uint64_t *was, sync_error_t *err);
/* Cluster mode: the log sequence the store in folder dir has applied (0:
 * none, not a cluster's), read without a server; a backup's folder too. */
int sync_store_log_seq(const char *dir, uint64_t *seq, sync_error_t *err);
/* Cluster mode: trims the replicated log (sync/retention.h) back to the
 * backup in backup_dir: the stream keeps every entry after the backup's
 * log_seq and `keep` entries before it. SYNC_EBADREQ for a backup of no
 * cluster or of another one (its log_seq beyond the stream's end),
 * SYNC_EUNAVAIL when NATS does not answer. */
typedef struct sync_trim {
    uint64_t backup_seq;             /* the backup's log_seq */
    uint64_t keep_from;              /* the first entry kept */
    uint64_t first_before, first_after, last; /* the stream's first and last sequence */
    int trimmed;                     /* 0: nothing was below keep_from */
} sync_trim_t;
int sync_cluster_trim(const char *nats_urls, const char *backup_dir, uint64_t keep, sync_trim_t *out,
                      sync_error_t *err);
/* Cluster mode: the URL written into the lease from its next renewal. */
void sync_node_advertise(sync_t *s, const char *url);
const char *sync_strerror(int code);
void sync_principal_clear(sync_principal_t *p);

/* ---- identity (sync/identity.c) ------------------------------------------ */

/* body: {"username","password","device_id","device_name"?,"app_version"?}.
 * client_key: who is trying (address), for the failure limit. The device is
 * bound to the first user who logs in with it; another user gets
 * SYNC_EDEVINUSE and nothing changes. Too many failures for the address,
 * the address and username, or the username from anywhere: SYNC_ERATE
 * (+retry_after). Every hashing slot busy for a short wait: SYNC_EBUSY
 * (+retry_after). */
int sync_login(sync_t *s, const cJSON *body, const char *client_key, char **out, sync_error_t *err);
int sync_logout(sync_t *s, const sync_principal_t *p, sync_error_t *err);
/* Finds the principal of a bearer token: SYNC_EUNAUTH for an unknown or
 * expired token, a disabled user, a token older than the user's last
 * password change or disable, or a device that is no longer bound to the
 * token's user (released, or bound anew); SYNC_EREVOKED (+wipe) for a
 * revoked device. */
int sync_authenticate(sync_t *s, const char *token, sync_principal_t *out, sync_error_t *err);
/* {"user":{...},"device":{...}} */
int sync_me(sync_t *s, const sync_principal_t *p, char **out, sync_error_t *err);
/* Admin: body {"username","password","name"?,"role","unit","grids"?} -> the user. */
int sync_user_create(sync_t *s, const sync_principal_t *p, const cJSON *body, char **out, sync_error_t *err);
int sync_user_list(sync_t *s, const sync_principal_t *p, char **out, sync_error_t *err);
/* Admin: body may hold role, unit, grids, password, disabled, name. A change of
 * role, unit or grids bumps the user's grants_version (pull handles it). */
int sync_user_update(sync_t *s, const sync_principal_t *p, const char *user_id, const cJSON *body,
                     char **out, sync_error_t *err);
/* Command-line form: no principal needed. */
int sync_user_add(sync_t *s, const char *username, const char *password, const char *role,
                  const char *unit, const char *grids_csv, const char *name, char **out, sync_error_t *err);
int sync_user_list_all(sync_t *s, char **out, sync_error_t *err);
/* Command-line forms of a password reset and of disabling (disabled = 1) or
 * enabling (0) a user by username. A new password or disabling ends every
 * token the user holds (they answer SYNC_EUNAUTH from then on, also after a
 * later enable). SYNC_ENOTFOUND for an unknown username. */
int sync_user_passwd(sync_t *s, const char *username, const char *password, sync_error_t *err);
int sync_user_set_disabled(sync_t *s, const char *username, int disabled, sync_error_t *err);

/* What a stored password hash asks of a login that verified against it,
 * given the configured argon2id cost (a pure decision, no hashing). */
typedef enum sync_pw_verdict {
    SYNC_PW_CURRENT = 0, /* argon2id at the configured cost or above: keep */
    SYNC_PW_REHASH,      /* PBKDF2, or argon2id below the configured cost: re-hash */
    SYNC_PW_INVALID      /* not a hash this server can verify (never matches) */
} sync_pw_verdict_t;
sync_pw_verdict_t sync_pw_verdict(const char *stored, int t_cost, int m_kib, int lanes);
/* Parses an argon2 cost "m=KIB,t=N,p=N" (the PHC parameter form, any order,
 * every member optional) onto cfg. 0, or -1 for text outside the limits. */
int sync_argon2_cost_parse(const char *text, sync_config_t *cfg);

/* ---- devices (sync/devices.c) ---------------------------------------------- */

/* Supervisors (their unit's devices) and admins (all):
 * [{"device_id","user_id","name","last_seen","last_push_at","last_pull_at",
 *   "app_version","evidence_missing","revoked","wipe"}] */
int sync_devices(sync_t *s, const sync_principal_t *p, char **out, sync_error_t *err);
/* body {"wipe":bool}: from now on every token of the device answers
 * SYNC_EREVOKED (+wipe). What it pushed before stays. -> the device. */
int sync_device_revoke(sync_t *s, const sync_principal_t *p, const char *device_id, const cJSON *body,
                       char **out, sync_error_t *err);
/* Admin (p NULL: the command line): unbinds the device from its user, so
 * that the next login by any user binds it anew. Every token issued for the
 * device so far answers SYNC_EUNAUTH. next_changeset_seq carries on (never
 * back to 1: the stored changesets of the device keep their seqs); a
 * revocation stays. SYNC_ENOTFOUND for an unknown device. -> the device. */
int sync_device_release(sync_t *s, const sync_principal_t *p, const char *device_id, char **out,
                        sync_error_t *err);
/* Notes that the device pulled (last_pull_at); written at most once a minute. */
void sync_device_pulled(sync_t *s, const sync_principal_t *p);

/* ---- evidence uploads and blobs (sync/blobs.c) ------------------------------ */

/* Evidence bytes arrive by tus (PROTOCOL §7): an upload is created with its
 * length and declared SHA-256, written at increasing offsets into
 * DATA/uploads/<id>.part, and on its last byte hashed and moved to
 * DATA/blobs/ab/cd/<sha256>, the content-addressed store. Every offset the
 * engine reports is on disk (fdatasync) and in the store first. Only the user
 * who created an upload (or an admin) sees it: to anyone else it is
 * SYNC_ENOTFOUND. */

/* An upload's state, copied out: plain data owned by the caller. */
typedef struct sync_upload {
    char id[33];
    uint64_t length;
    uint64_t offset;            /* bytes received and durable */
    char sha256[65];            /* declared, lowercase hex */
    char filename[256];         /* "" when not given */
    char mime[128];             /* "application/octet-stream" when not given */
    char record_id[65];         /* "" when not given */
    int64_t created_at;         /* ms */
    int complete;               /* the bytes became a blob (the upload is gone) */
} sync_upload_t;

/* What tus Upload-Metadata carried, decoded. Borrowed for the call; NULL: absent. */
typedef struct sync_upload_meta {
    const char *sha256;         /* required: 64 hex digits */
    const char *filename;       /* at most 255 bytes, no control characters */
    const char *mime;           /* at most 127 bytes, printable ASCII */
    const char *record_id;      /* the record the file belongs to (informative) */
} sync_upload_meta_t;

/* A per-request checksum (tus checksum extension): algorithm "sha1" or
 * "sha256" and the expected digest of this request's body. */
typedef struct sync_checksum {
    const char *algorithm;
    unsigned char digest[32];
    size_t digest_len;
} sync_checksum_t;

/* Reads up to len bytes of a request body into buf: the number read, 0 at the
 * body's regular end, negative when the body broke off (dropped connection,
 * timeout, shorter than announced). */
typedef long (*sync_read_cb)(void *ctx, void *buf, size_t len);

/* Blob meta, copied out. */
typedef struct sync_blob {
    char sha256[65];
    uint64_t size;
    char mime[128];
    int64_t created_at;         /* ms */
} sync_blob_t;

/* The largest Upload-Length accepted (Tus-Max-Size). */
uint64_t sync_upload_max(sync_t *s);
/* Creates an upload of `length` bytes: SYNC_ETOOLARGE past sync_upload_max(),
 * SYNC_EINVALID for bad metadata (field names the key). *out describes it.
 * Whether the blob exists already is not checked: the bytes are taken and
 * dropped at the end (clients ask sync_blob_stat first). A 0-byte upload is
 * complete at once. */
int sync_upload_create(sync_t *s, const sync_principal_t *p, uint64_t length, const sync_upload_meta_t *meta,
                       sync_upload_t *out, sync_error_t *err);
/* The upload's state. While another request writes the upload this waits
 * (up to a few seconds) for it to finish, so that the offset it answers is
 * the one a resuming client must use. */
int sync_upload_get(sync_t *s, const sync_principal_t *p, const char *id, sync_upload_t *out,
                    sync_error_t *err);
/* Appends a request body at `offset`, pulling it through read(ctx) in
 * chunks and writing each straight to the part file: memory stays flat
 * whatever the size. body_len: the announced length, or -1 (chunked).
 * check: NULL, or the digest the body must have.
 *   SYNC_ECONFLICT   offset is not the upload's offset, or another request
 *                    is writing it (field "Upload-Offset")
 *   SYNC_ETOOLARGE   the body goes past the upload's length (nothing of this
 *                    request past the last durable offset is kept)
 *   SYNC_ECHECKSUM   check given and the body does not match: this request's
 *                    bytes are dropped; or the last byte arrived and the file
 *                    does not hash to the declared sha256: the upload is deleted
 *   SYNC_EBADREQ     the body broke off: the bytes that arrived are kept
 *                    (without check) and out->offset says up to where
 * On 0, out->offset is the new offset and out->complete says whether the
 * upload became a blob. out is filled whenever the upload was found. */
int sync_upload_write(sync_t *s, const sync_principal_t *p, const char *id, uint64_t offset, int64_t body_len,
                      const sync_checksum_t *check, sync_read_cb read, void *ctx, sync_upload_t *out,
                      sync_error_t *err);
/* Termination: removes the upload and its bytes. */
int sync_upload_delete(sync_t *s, const sync_principal_t *p, const char *id, sync_error_t *err);
/* Housekeeping, run at start before serving: deletes part files that have no
 * upload, uploads untouched for upload_expire_days, cuts part files back to
 * their durable offset, and completes uploads whose last byte was stored
 * when the process died. Also runs (expiry only) at most hourly while serving. */
int sync_uploads_sweep(sync_t *s, sync_error_t *err);

/* Who may read a blob: an admin, a user who completed an upload of its
 * bytes, and a user who sees a record listing the hash whose listing is
 * backed (its lister could read the bytes then, or uploaded them since; see
 * sync/blobs.c). To anyone else a stored blob is SYNC_ENOTFOUND with the
 * words an unknown hash gets: its existence, size and type are not revealed.
 *
 * The blob's meta, for HEAD: the same rule as sync_blob_open(). */
int sync_blob_stat(sync_t *s, const sync_principal_t *p, const char *sha256, sync_blob_t *out,
                   sync_error_t *err);
/* Opens a blob for reading: SYNC_ENOTFOUND when unknown or not the
 * caller's to read (above). *fd is an open read-only descriptor the caller
 * closes; out->size is the file's size. */
int sync_blob_open(sync_t *s, const sync_principal_t *p, const char *sha256, sync_blob_t *out, int *fd,
                   sync_error_t *err);
/* Evidence items pushed in records whose bytes have not arrived within
 * evidence_deadline_hours: {"items":[{"record_id","item_id","sha256",
 * "device_id","pushed_at","due_at"}],"truncated"?:true}, oldest first.
 * Supervisors and legal reviewers: their unit; admins: all; officers and
 * auxiliaries: the items their own devices pushed. */
int sync_evidence_missing(sync_t *s, const sync_principal_t *p, char **out, sync_error_t *err);

/* ---- sync (sync/push.c, sync/pull.c) --------------------------------------- */

/* body: the changeset. *replay is set to 1 when the answer is a stored one. */
int sync_push(sync_t *s, const sync_principal_t *p, const cJSON *body, char **out, int *replay,
              sync_error_t *err);
/* A batch of changes the server makes for the caller (hotline import, 督办
 * issued in bulk): judged and applied exactly as a push of p's (shape,
 * values, write rules, lifecycle), in one write job, but with no changeset
 * (no changeset_seq, no idempotent replay: a create of an existing record id
 * is rejected as such, which is what makes an import idempotent).
 * -> {"results":[...]} as in a push answer. */
int sync_apply_changes(sync_t *s, const sync_principal_t *p, const cJSON *changes, char **out, sync_error_t *err);
/* cursor: NULL or "" for a full pull. limit 1..1000, wait 0..60 seconds. */
int sync_pull(sync_t *s, const sync_principal_t *p, const char *cursor, int limit, int wait,
              char **out, sync_error_t *err);
/* body: {"records":[["id",version],...]} -> {"missing","stale","extra"} */
int sync_check(sync_t *s, const sync_principal_t *p, const cJSON *body, char **out, sync_error_t *err);

/* ---- cases, conflicts, audit (sync/cases.c) ------------------------------- */

int sync_case_get(sync_t *s, const sync_principal_t *p, const char *id, char **out, sync_error_t *err);
int sync_case_history(sync_t *s, const sync_principal_t *p, const char *id, char **out, sync_error_t *err);
/* state: "open", "resolved" or NULL for both. -> {"items":[...]} */
int sync_conflicts(sync_t *s, const sync_principal_t *p, const char *state, char **out, sync_error_t *err);
/* body {"value":...,"note":"..."} -> the conflict, resolved. */
int sync_conflict_resolve(sync_t *s, const sync_principal_t *p, const char *id, const cJSON *body,
                          char **out, sync_error_t *err);
/* -> {"items":[...]} */
int sync_rejections(sync_t *s, const sync_principal_t *p, char **out, sync_error_t *err);
/* -> {"ok":bool,"entries":n,"head":"hex"}; 0 even when not ok. */
int sync_audit_verify(sync_t *s, char **out, sync_error_t *err);

/* ---- cases: queries, stats, export (sync/query.c) -------------------------- */

/* Who may call: supervisors and legal reviewers (their unit: a `unit` filter
 * naming another unit is SYNC_EFORBIDDEN), admins (every unit, or the one
 * named), and the local operator when p is NULL (the command line: like an
 * admin). Officers and auxiliaries get SYNC_EFORBIDDEN: phones pull.
 * Lifecycle times (opened, closed, due) are device times: the `at` of the
 * change, clamped by push to the server's receive time. */

#define SYNC_CASES_LIMIT_DEFAULT 100
#define SYNC_CASES_LIMIT_MAX 500

/* The filters of GET /v1/cases and /v1/export as the query string gave them;
 * NULL or "" means absent. Strings are borrowed for the call. */
typedef struct sync_case_filter {
    const char *status, *type, *grid, *assignee, *unit;
    const char *overdue;       /* "true" or "false" */
    const char *updated_after; /* RFC 3339: updated_at strictly after it */
    const char *q;             /* case-insensitive text in description, address, party.name, case_no */
    const char *source, *procedure; /* fields.source / fields.procedure, exactly */
    /* Ranges [from, to) of updated_at and of the opened time (the create's
     * `at`): RFC 3339, or YYYY-MM-DD meaning its midnight in China time. */
    const char *updated_from, *updated_to, *opened_from, *opened_to;
} sync_case_filter_t;

/* One page: {"items":[record...],"next":cursor|null}. cursor NULL or "" for
 * the first page; limit 1..SYNC_CASES_LIMIT_MAX. A page may hold fewer than
 * limit items (even none) while next is not null: follow next until null. */
int sync_cases(sync_t *s, const sync_principal_t *p, const sync_case_filter_t *f, const char *cursor,
               int limit, char **out, sync_error_t *err);

/* {"from","to","group_by","unit","now","groups":[{"key",...}],"total":{...}}
 * (figures defined in docs/protocol.md §6). from/to: RFC 3339 or YYYY-MM-DD
 * (midnight, China time); NULL: the 30 days up to now. group_by: type
 * (default), status, grid or assignee. unit: admins and p NULL only (others
 * get their unit). */
int sync_stats(sync_t *s, const sync_principal_t *p, const char *from, const char *to, const char *group_by,
               const char *unit, char **out, sync_error_t *err);

/* Receives export bytes; returns 0, or -1 to stop the export. */
typedef int (*sync_write_fn)(void *ctx, const char *data, size_t len);

/* Streams the filtered cases as format "ndjson" (default; one public record
 * per line) or "csv" (BOM, header row, RFC 4180), page by page: write is
 * called with up to ~64 KiB at a time and never inside a read transaction,
 * and is not called at all before the filters and the caller's role are
 * checked, so an error code with nothing written can still become an error
 * answer. Returns 0, an error before the first write, or SYNC_EIO (write
 * refused) / SYNC_EBUSY (shutting down) / a storage error after some. */
int sync_export(sync_t *s, const sync_principal_t *p, const sync_case_filter_t *f, const char *format,
                sync_write_fn write, void *ctx, sync_error_t *err);
/* Streams the audit log to write(): one stored entry per line (NDJSON) in seq
 * order, each with its "prev_hash" and "hash" (docs/audit.md says how to
 * recompute them). A read transaction is held while it streams: for the
 * command line, never over the network. 0 or an error. */
int sync_audit_export(sync_t *s, sync_write_fn write, void *ctx, sync_error_t *err);

/* ---- store format and lifecycle migrations (sync/migrate.c) ------------------ */

/* The store format this release writes (meta "store_format"): 2, whose audit
 * entries are hashed over RFC 8785 canonical JSON (docs/audit.md). */
#define SYNC_STORE_FORMAT 2

/* The format of the open store: 0 for a fresh one (stamped SYNC_STORE_FORMAT
 * here unless read-only), 1 for one an earlier release wrote (no
 * "store_format" in meta, entries in the log), else meta's value (which may
 * be newer than SYNC_STORE_FORMAT). 0 or an error. */
int sync_store_format(sync_t *s, uint64_t *format, sync_error_t *err);

/* How many records sit in states the schema's lifecycle has moved (the
 * schema's "lifecycle.migrations", for a store behind its version). A store
 * behind with none to move is marked current (unless read-only). 0 or an error. */
int sync_lifecycle_check(sync_t *s, uint64_t *pending, sync_error_t *err);
/* casesync migrate: first a v1 store becomes v2 (its v1 chain must verify;
 * an audit entry with op "store_format" then starts the canonical chain on
 * the old head, and meta "audit_canonical_from" keeps its seq), then records
 * of an earlier lifecycle move, each a change with its audit entry (op
 * "migrate"); then marks the store current. *moved: how many records moved. */
int sync_migrate(sync_t *s, uint64_t *moved, sync_error_t *err);

/* ---- field workflows (sync/workflows.c) ------------------------------------------ */

/* The state of a 督办 order (an item of the case's `supervision` list) given
 * the case's `supervision_replies`: done when a reply to it says done: true
 * (the earliest such reply's answered_at is *done_ms, else -1); done_late
 * when that is after due_at; overdue when not done and now is past due_at.
 * *nreplies counts every reply to it. Pure. */
typedef enum { SV_OPEN = 0, SV_OVERDUE, SV_DONE, SV_DONE_LATE } sync_sv_state_t;
sync_sv_state_t sync_sv_state(const cJSON *order, const cJSON *replies, int64_t now_ms, int64_t *done_ms,
                              int *nreplies);

/* GET /v1/supervision?state=open|overdue|done|all&unit=: the 督办 orders of a
 * unit, each {"case_id","case_no","unit","status","order_id","order_no","ask",
 * "to","issued_by","issued_at","due_at","state","done_at","replies",
 * "escalated_to"} (escalated_to: the role above the issuer's when overdue,
 * else null). Supervisors and legal reviewers: their unit; admins: the unit
 * they name (unit= required); officers: the orders addressed to them (to, or
 * the case's assignee when to is absent); auxiliaries: SYNC_EFORBIDDEN. */
int sync_supervision(sync_t *s, const sync_principal_t *p, const char *state, const char *unit, char **out,
                     sync_error_t *err);

/* POST /v1/parties/cases {"id_no"|"uscc","unit"?}: the cases of the unit
 * whose party has that id (voided included, flagged), for officers and
 * stronger of the unit (admins name the unit) -> {"unit","count","decided",
 * "first_offence_used","cases":[{"id","case_no","type","procedure","status",
 * "voided","disposition","no_penalty_reason","illegal_item_code",
 * "fine_amount","opened_at","decided_at"}]}. */
int sync_party_cases(sync_t *s, const sync_principal_t *p, const cJSON *body, char **out, sync_error_t *err);

/* GET /v1/parties/repeat?unit=&min=: parties with at least min (>= 2) cases
 * in the unit, voided cases left out (黑名单 candidates) -> {"unit","min",
 * "items":[{"party","count","cases":[...]}]}. Supervisors and legal
 * reviewers of the unit; admins name the unit (and see ids masked). */
int sync_repeat_offenders(sync_t *s, const sync_principal_t *p, const char *unit, int min, char **out,
                          sync_error_t *err);

/* The record id a hotline ticket becomes: "hl-" and 40 hex digits of
 * SHA-256(unit 0x00 ticket_no). 0 or -1. */
int sync_hotline_record_id(const char *unit, const char *ticket_no, char out[44]);
/* POST /v1/hotline/import: tickets [{"ticket_no","type","procedure"?
 * (digital),"description","occurred_at","grid","address","location",
 * "complainant"?,"reply_due"?,"category"?}] become cases of source hotline
 * of the unit, created as the caller (a supervisor of the unit, or an admin
 * naming it) through sync_apply_changes. Idempotent by ticket number: a
 * ticket imported before is "exists" and is not changed. ->
 * {"created","exists","rejected","items":[{"ticket_no","record_id","result",
 * "error"?}]}. */
int sync_hotline_import(sync_t *s, const sync_principal_t *p, const cJSON *tickets, const char *unit, char **out,
                        sync_error_t *err);
/* The tickets of the hotline platform's CSV export (sync/hotline_csv.c:
 * libcsv, a header row naming the JSON ticket members, lon/lat/crs and
 * complainant_name/complainant_phone flattened) as the array
 * sync_hotline_import takes. 0 and *tickets (caller deletes), or 422
 * invalid (field "csv": malformed, unknown column, ragged row), 413 past
 * 1000 rows. */
int sync_hotline_csv_tickets(const char *buf, size_t len, cJSON **tickets, sync_error_t *err);

/* ---- operations (sync/backup.c) ---------------------------------------------- */

/* A consistent hot copy of the store (one LMDB snapshot, compacted) and the
 * blob files into dest (created; must not hold a store yet). Pushes go on
 * meanwhile. Restore is starting casesyncd on dest. */
int sync_backup(sync_t *s, const char *dest, sync_error_t *err);

/* Progress of a long operation: phase ("records", "blobs" ...), done of
 * total. Called from the calling thread, now and then (never per item). */
typedef void (*sync_progress_fn)(void *ud, const char *phase, uint64_t done, uint64_t total);

/* sync_backup() that is incremental: a blob file already under
 * link_dest/blobs (an earlier backup; NULL: none) with the size of the
 * original is hard-linked, not copied (blobs are content-addressed and
 * immutable; across file systems it is copied). progress may be NULL. */
int sync_backup_ex(sync_t *s, const char *dest, const char *link_dest, sync_progress_fn progress, void *ud,
                   sync_error_t *err);

/* Restores a backup folder (sync_backup's DEST) into data_dir: the store,
 * the blobs and schema.json, private (0700 folders, 0600 files) and fsynced.
 * Refuses (SYNC_ECONFLICT) a data_dir that already holds a store, live or
 * not: restore never overwrites. No engine may be open on data_dir. */
int sync_restore(const char *backup, const char *data_dir, sync_progress_fn progress, void *ud,
                 sync_error_t *err);

/* The audit chain (as sync_audit_verify) and the store's own consistency
 * (sync/verify.c): every record has its audit entry, record log entry and
 * feed entries; every feed, index and evidence row names a record that
 * exists; every blob row has its file, of its size. hash_all hashes every
 * blob file (else a sample of 16). *out: {"ok","entries","head","problem"?,
 * "store":{"records","feed_entries","index_entries","evidence_rows","blobs",
 * "blobs_hashed","problem_count","problems":[text...]}}; ok only when the
 * chain is sound and no problem was found. */
int sync_store_verify(sync_t *s, int hash_all, sync_progress_fn progress, void *ud, char **out,
                      sync_error_t *err);

/* The engine's figures in Prometheus text format (malloc'd; caller frees):
 * changes by result, changesets, replays, group-commit batch sizes, store
 * size. 0 or SYNC_ENOMEM. */
int sync_metrics(sync_t *s, char **out);

/* Fills err and returns code: the one way errors are made. */
int sync_fail(sync_error_t *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
