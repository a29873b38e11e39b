/* blobs.c -- evidence bytes: resumable uploads into part files, the
 * content-addressed blob store, who may read a blob, and evidence whose bytes
 * are overdue.
 *
 * Files under the data folder:
 *   uploads/<id>.part        the bytes of an unfinished upload
 *   blobs/ab/cd/<sha256>     a finished blob, named by its hash (never changes)
 * The `uploads` db holds each upload's state, the `blobs` db each blob's meta
 * under its 64-digit hash, and two indexes under longer keys:
 *   sha256 0x00 'u' user id                     who completed an upload of the bytes
 *   sha256 0x00 'l' record id 0x00 user id      who listed the hash in a record's
 *                                               evidence, and whether the bytes were
 *                                               stored and theirs to read then ("vouched")
 *
 * Who reads a blob (docs/protocol.md §7): an admin; a user who uploaded the
 * bytes; a user who sees a record whose listing of the hash is backed (its
 * lister could read the bytes when listing them, or uploaded them since).
 * Anyone else gets the answer an unknown hash gets. Listing a hash whose
 * bytes are stored needs the same right; listing one whose bytes are not
 * stored yet is accepted (the phone pushes before it uploads) and grants
 * nothing until its lister uploads the bytes.
 * An offset is written to the `uploads` db only after the part file is
 * fdatasync'ed up to it, so every offset ever reported survives a crash; a
 * part file longer than its offset holds unacknowledged bytes and is cut back.
 *
 * One request at a time writes an upload: a small in-process table marks the
 * upload busy (a second writer gets SYNC_ECONFLICT; a status query waits a
 * little for the writer to finish, so it answers the offset to resume from).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "sync/valcodec.h"
#include "sync/blobs.h"
#include "sync/record.h"

#define BLOB_CHUNK (256u << 10)         /* bytes per read, write and hash step */
#define UPLOAD_CHECKPOINT (32ull << 20) /* a long request makes its offset durable this often */
#define UPLOAD_MAX_DEFAULT (4ull << 30) /* Tus-Max-Size */
#define UPLOAD_EXPIRE_DAYS_DEFAULT 7
#define EVIDENCE_DEADLINE_HOURS_DEFAULT 24
#define SWEEP_INTERVAL_MS (3600LL * 1000) /* expiry sweeps while serving */
#define BUSY_WAIT_MS 5000                 /* how long a status query waits for a writer */
#define MISSING_MAX 10000                 /* items in one missing-evidence answer */
#define DISK_RESERVE (512ull << 20)       /* free space an upload may not eat into */
#define DISK_FULL_RETRY_S 300
#define FILENAME_MAX_BYTES 255
#define MIME_MAX_BYTES 127
#define PATH_BYTES 1400
#define BLOB_KEY_MAX 256 /* sha, 0, kind, record id (<= 64), 0, user id (< 64) */
#define HOUR_MS 3600000LL
#define DAY_MS 86400000LL

/* ======================================================================== */
/* Settings                                                                 */
/* ======================================================================== */

uint64_t sync_upload_max(sync_t *s) {
    return s->cfg.max_upload_bytes ? s->cfg.max_upload_bytes : UPLOAD_MAX_DEFAULT;
}

/* The evidence deadline: the config's evidence_deadline_hours, else the
 * schema's evidence_due hours, else EVIDENCE_DEADLINE_HOURS_DEFAULT. */
static int64_t deadline_ms(const sync_t *s) {
    int h = s->cfg.evidence_deadline_hours;
    if (h < 0) return 0;
    if (!h) h = schema_deadline_hours(s->schema, "evidence_due");
    return (int64_t)(h >= 0 ? h : EVIDENCE_DEADLINE_HOURS_DEFAULT) * HOUR_MS;
}

static int64_t expire_ms(const sync_t *s) {
    int d = s->cfg.upload_expire_days;
    return (int64_t)(d > 0 ? d : UPLOAD_EXPIRE_DAYS_DEFAULT) * DAY_MS;
}

static int shutting_down(sync_t *s) {
    return __atomic_load_n(&s->shutting_down, __ATOMIC_ACQUIRE);
}

/* ======================================================================== */
/* Files                                                                    */
/* ======================================================================== */

static void uploads_dir(const sync_t *s, char *buf, size_t n) {
    snprintf(buf, n, "%s/uploads", s->data_dir);
}

static void part_path(const sync_t *s, const char *id, char *buf, size_t n) {
    snprintf(buf, n, "%s/uploads/%s.part", s->data_dir, id);
}

static void blob_dir(const sync_t *s, const char *sha, int depth, char *buf, size_t n) {
    if (depth == 0)
        snprintf(buf, n, "%s/blobs", s->data_dir);
    else if (depth == 1)
        snprintf(buf, n, "%s/blobs/%.2s", s->data_dir, sha);
    else
        snprintf(buf, n, "%s/blobs/%.2s/%.2s", s->data_dir, sha, sha + 2);
}

void blobs_file_path(const char *data_dir, const char *sha, char *buf, size_t n) {
    snprintf(buf, n, "%s/blobs/%.2s/%.2s/%s", data_dir, sha, sha + 2, sha);
}

static void blob_path(const sync_t *s, const char *sha, char *buf, size_t n) {
    blobs_file_path(s->data_dir, sha, buf, n);
}

/* fsync of a directory: makes the entries created or renamed in it durable. */
static int dir_sync(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* mkdir that also makes the new entry durable in its parent. 0 when the
 * directory exists afterwards. */
static int dir_make(const char *dir) {
    if (mkdir(dir, 0700) != 0) return errno == EEXIST ? 0 : -1;
    char parent[PATH_BYTES];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (!slash) return 0;
    *slash = 0;
    return dir_sync(parent[0] ? parent : "/");
}

/* Is there room for `need` more bytes under dir, beyond the reserve? */
static int disk_room(const char *dir, uint64_t need) {
    struct statvfs v;
    if (statvfs(dir, &v) != 0) return 1;
    return (uint64_t)v.f_bavail * v.f_frsize >= need + DISK_RESERVE;
}

/* A full disk is the operator's to fix: 503 with a long Retry-After. */
static int disk_full(sync_error_t *err, const char *what) {
    sync_fail(err, SYNC_EBUSY, NULL, "the server's disk is full (%s); try later", what);
    if (err) err->retry_after = DISK_FULL_RETRY_S;
    return SYNC_EBUSY;
}

/* A write, sync or rename of evidence (`what`: "writing upload <id>") that
 * failed with errno e. A full disk or an I/O error is 503: nothing past the
 * last acknowledged offset is kept and the phone resumes later. Anything else
 * (a path blocked by a file ...) stays a 500. */
static int disk_error(sync_t *s, sync_error_t *err, int e, const char *what) {
    __atomic_add_fetch(&s->n_disk_errors, 1, __ATOMIC_RELAXED);
    fprintf(stderr, "casesync: %s: %s\n", what, strerror(e));
    if (e == ENOSPC || e == EDQUOT) return disk_full(err, what);
    if (e == EIO || e == EROFS)
        return sync_fail(err, SYNC_EDISK, NULL,
                         "the server's disk failed %s; nothing unacknowledged was kept, try again later",
                         what);
    return sync_fail(err, SYNC_EIO, NULL, "%s failed: %s", what, strerror(e));
}

static int write_all(int fd, const unsigned char *buf, size_t n, uint64_t off) {
    while (n > 0) {
        ssize_t w = pwrite(fd, buf, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        buf += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* SHA-256 of a file, streamed from disk. 0 or -1. */
static int file_sha256(const char *path, char hex[65]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;
    unsigned char *buf = malloc(BLOB_CHUNK), md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (fd < 0 || !buf || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) goto done;
    for (;;) {
        ssize_t n = read(fd, buf, BLOB_CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) goto done;
        if (n == 0) break;
        if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1) goto done;
    }
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) goto done;
    util_hex(md, 32, hex);
    rc = 0;
done:
    EVP_MD_CTX_free(ctx);
    free(buf);
    if (fd >= 0) close(fd);
    return rc;
}

/* ======================================================================== */
/* Busy uploads                                                             */
/* ======================================================================== */

/* A writer's mark, on the writer's stack while it holds the upload. */
typedef struct busy {
    struct busy *next;
    char id[33];
} busy_t;

static pthread_mutex_t busy_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t busy_cv = PTHREAD_COND_INITIALIZER;
static busy_t *busy_list;

static int busy_held(const char *id) {
    for (busy_t *b = busy_list; b; b = b->next)
        if (strcmp(b->id, id) == 0) return 1;
    return 0;
}

static void deadline_in(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits up to wait_ms until nobody holds id; with b, then takes it. 0, or -1
 * when it stayed busy. */
static int busy_wait_take(busy_t *b, const char *id, int wait_ms) {
    struct timespec until;
    int rc = 0;
    deadline_in(&until, wait_ms);
    pthread_mutex_lock(&busy_mu);
    while (busy_held(id)) {
        if (wait_ms <= 0 || pthread_cond_timedwait(&busy_cv, &busy_mu, &until) == ETIMEDOUT) {
            rc = busy_held(id) ? -1 : 0;
            break;
        }
    }
    if (rc == 0 && b) {
        snprintf(b->id, sizeof b->id, "%s", id);
        b->next = busy_list;
        busy_list = b;
    }
    pthread_mutex_unlock(&busy_mu);
    return rc;
}

static void busy_give(busy_t *b) {
    pthread_mutex_lock(&busy_mu);
    for (busy_t **pp = &busy_list; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    pthread_cond_broadcast(&busy_cv);
    pthread_mutex_unlock(&busy_mu);
}

/* ======================================================================== */
/* Upload state                                                             */
/* ======================================================================== */

static void set_num(cJSON *o, const char *key, double v) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    cJSON_AddNumberToObject(o, key, v);
}

static uint64_t json_u64(const cJSON *o, const char *key) {
    int64_t v = 0;
    return util_json_int(o, key, &v) == 0 && v > 0 ? (uint64_t)v : 0;
}

static void copy_str(char *dst, size_t n, const char *src) {
    snprintf(dst, n, "%s", src ? src : "");
}

static void upload_fill(const cJSON *st, sync_upload_t *out) {
    memset(out, 0, sizeof *out);
    copy_str(out->id, sizeof out->id, util_json_str(st, "id"));
    copy_str(out->sha256, sizeof out->sha256, util_json_str(st, "sha256"));
    copy_str(out->filename, sizeof out->filename, util_json_str(st, "filename"));
    copy_str(out->mime, sizeof out->mime, util_json_str(st, "mime"));
    copy_str(out->record_id, sizeof out->record_id, util_json_str(st, "record_id"));
    out->length = json_u64(st, "length");
    out->offset = json_u64(st, "offset");
    out->created_at = (int64_t)json_u64(st, "created_at");
}

/* Our ids: 32 lowercase hex digits. Anything else names no upload. */
static int upload_id_ok(const char *id) {
    size_t n = 0;
    for (; id && id[n]; n++)
        if (!((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'a' && id[n] <= 'f'))) return 0;
    return n == 32;
}

static int upload_load(sync_t *s, const char *id, cJSON **out) {
    MDB_txn *txn = NULL;
    *out = NULL;
    if (store_read_begin(s->st, &txn) != 0) return SYNC_EIO;
    int rc = store_get_json(txn, s->dbs->uploads, id, strlen(id), out);
    store_read_end(txn);
    return rc;
}

/* Loads an upload that p may touch (p NULL: housekeeping). Others' uploads
 * do not exist for them. *out is owned by the caller. */
static int upload_find(sync_t *s, const sync_principal_t *p, const char *id, cJSON **out, sync_error_t *err) {
    cJSON *st = NULL;
    *out = NULL;
    int rc = upload_id_ok(id) ? upload_load(s, id, &st) : SYNC_ENOTFOUND;
    if (rc == 0 && p && p->role != ROLE_ADMIN) {
        const char *owner = util_json_str(st, "user_id");
        if (!owner || strcmp(owner, p->user_id) != 0) rc = SYNC_ENOTFOUND;
    }
    if (rc == SYNC_ENOTFOUND) {
        cJSON_Delete(st);
        return sync_fail(err, rc, NULL, "no upload %s", upload_id_ok(id) ? id : "with that id");
    }
    if (rc) return sync_fail(err, rc, NULL, "cannot read the upload");
    *out = st;
    return 0;
}

enum { JOB_PUT, JOB_ADVANCE, JOB_DELETE, JOB_FINISH };

/* One write to the uploads and blobs dbs. */
typedef struct upload_job {
    sync_t *s;
    int kind;
    const char *id;
    const cJSON *value; /* PUT: the state; FINISH: the blob meta */
    const char *sha256; /* FINISH */
    uint64_t from, to;  /* ADVANCE: the offset moves from -> to */
    int64_t now;
} upload_job_t;

static size_t blob_key(unsigned char *k, size_t cap, const char *sha, char kind, const char *a,
                       const char *b);

/* Notes in the blobs db that user_id completed an upload of sha's bytes
 * (several users may upload the same bytes; each is noted). */
static int uploader_put(MDB_txn *txn, const store_dbs_t *dbs, const char *sha, const char *user_id,
                        int64_t now) {
    unsigned char key[BLOB_KEY_MAX];
    size_t n = user_id && *user_id ? blob_key(key, sizeof key, sha, 'u', user_id, NULL) : 0;
    if (!n) return 0;
    cJSON *e = cJSON_CreateObject();
    if (!e || !cJSON_AddNumberToObject(e, "at", (double)now)) {
        cJSON_Delete(e);
        return SYNC_ENOMEM;
    }
    int rc = store_put_json(txn, dbs->blobs, key, n, e);
    cJSON_Delete(e);
    return rc;
}

static int upload_job_run(MDB_txn *txn, void *ctx) {
    upload_job_t *j = ctx;
    const store_dbs_t *dbs = j->s->dbs;
    size_t idn = strlen(j->id);
    int rc;
    switch (j->kind) {
    case JOB_PUT: return store_put_json(txn, dbs->uploads, j->id, idn, j->value);
    case JOB_ADVANCE: {
        cJSON *st = NULL;
        if ((rc = store_get_json(txn, dbs->uploads, j->id, idn, &st)) != 0) return rc;
        if (json_u64(st, "offset") != j->from) {
            cJSON_Delete(st);
            return SYNC_ECONFLICT;
        }
        set_num(st, "offset", (double)j->to);
        set_num(st, "updated_at", (double)j->now);
        rc = store_put_json(txn, dbs->uploads, j->id, idn, st);
        cJSON_Delete(st);
        return rc;
    }
    case JOB_DELETE: rc = store_del(txn, dbs->uploads, j->id, idn); return rc == SYNC_ENOTFOUND ? 0 : rc;
    case JOB_FINISH: {
        MDB_val k = {64, (void *)j->sha256}, v;
        if (mdb_get(txn, dbs->blobs, &k, &v) == MDB_NOTFOUND &&
            (rc = store_put_json(txn, dbs->blobs, j->sha256, 64, j->value)) != 0)
            return rc;
        if ((rc = uploader_put(txn, dbs, j->sha256, util_json_str(j->value, "uploader"), j->now)) != 0)
            return rc;
        rc = store_del(txn, dbs->uploads, j->id, idn);
        return rc == SYNC_ENOTFOUND ? 0 : rc;
    }
    default: return SYNC_EIO;
    }
}

static int upload_job(sync_t *s, int kind, const char *id, const cJSON *value, uint64_t from, uint64_t to) {
    upload_job_t j = {
        .s = s, .kind = kind, .id = id, .value = value, .from = from, .to = to, .now = util_now_ms()};
    return store_write(s->st, upload_job_run, &j);
}

/* ======================================================================== */
/* Finishing                                                                */
/* ======================================================================== */

/* The blobs db value for the bytes of upload st. NULL when out of memory. */
static cJSON *blob_meta_of(const cJSON *st, int64_t now) {
    cJSON *m = cJSON_CreateObject();
    const char *sha = util_json_str(st, "sha256"), *mime = util_json_str(st, "mime");
    const char *user = util_json_str(st, "user_id"), *dev = util_json_str(st, "device_id");
    if (!m) return NULL;
    if (!cJSON_AddStringToObject(m, "sha256", sha ? sha : "") ||
        !cJSON_AddNumberToObject(m, "size", (double)json_u64(st, "length")) ||
        !cJSON_AddStringToObject(m, "mime", mime ? mime : "application/octet-stream") ||
        !cJSON_AddNumberToObject(m, "created_at", (double)now) ||
        !cJSON_AddStringToObject(m, "uploader", user ? user : "") ||
        !cJSON_AddStringToObject(m, "device_id", dev ? dev : "")) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

/* The last byte is durable: hash the part file, then move it into the blob
 * store (or drop it when the blob is there already) and record the blob. On
 * a hash mismatch the upload is deleted. Called with the upload held busy. */
static int upload_finish(sync_t *s, const cJSON *st, sync_upload_t *out, sync_error_t *err) {
    char part[PATH_BYTES], blob[PATH_BYTES], dir[PATH_BYTES], hex[65];
    const char *id = util_json_str(st, "id"), *sha = util_json_str(st, "sha256");
    uint64_t length = json_u64(st, "length");
    struct stat bs;
    int rc;
    if (!id || !sha || strlen(sha) != 64)
        return sync_fail(err, SYNC_EIO, NULL, "the upload's state is damaged");
    part_path(s, id, part, sizeof part);
    blob_path(s, sha, blob, sizeof blob);
    /* No part file but the blob: an earlier end renamed it, then failed
     * (its directory sync, replicating or recording the blob). Finish from
     * the blob. */
    int no_part = access(part, F_OK) != 0 && errno == ENOENT;
    if (no_part && stat(blob, &bs) != 0 && s->blobstream) {
        /* Cluster mode, a new leader: the node that took the bytes may have
         * replicated them before it died. */
        int frc = blobstream_fetch(s->blobstream, sha);
        if (frc == SYNC_EUNAVAIL) {
            sync_fail(err, SYNC_EUNAVAIL, NULL, "the evidence store of the cluster did not answer; retry");
            if (err) err->retry_after = 2;
            return SYNC_EUNAVAIL;
        }
    }
    if (no_part && stat(blob, &bs) != 0) {
        /* Neither: the bytes stayed on another node (cluster mode) or were
         * lost. The phone starts a new upload. */
        rc = upload_job(s, JOB_DELETE, id, NULL, 0, 0);
        if (rc) return sync_fail(err, rc, NULL, "cannot delete upload %s", id);
        out->offset = 0;
        return sync_fail(err, SYNC_ENOTFOUND, NULL, "the bytes of upload %s are lost; start a new upload",
                         id);
    }
    const char *src = no_part ? blob : part;
    if (file_sha256(src, hex) != 0)
        return sync_fail(err, SYNC_EIO, NULL, "cannot hash upload %s: %s", id, strerror(errno));
    if (strcmp(hex, sha) != 0) {
        unlink(src);
        rc = upload_job(s, JOB_DELETE, id, NULL, 0, 0);
        if (rc) return sync_fail(err, rc, NULL, "cannot delete upload %s", id);
        out->offset = 0;
        return sync_fail(
            err, SYNC_ECHECKSUM, "Upload-Metadata.sha256",
            "the %llu bytes received hash to %s, not to the declared sha256; the upload is deleted",
            (unsigned long long)length, hex);
    }
    int made = 1;
    for (int depth = 0; depth < 3 && made; depth++) {
        blob_dir(s, sha, depth, dir, sizeof dir);
        made = dir_make(dir) == 0;
    }
    int stored = made && (src == blob || (stat(blob, &bs) == 0 && (uint64_t)bs.st_size == length));
    if (stored) unlink(part); /* the same bytes are in the blob store already */
    /* The directory is synced even then: the rename may not have been. */
    if (!made || (!stored && rename(part, blob) != 0) || dir_sync(dir) != 0) {
        int e = errno;
        char what[100];
        snprintf(what, sizeof what, "storing blob %s", sha);
        return disk_error(s, err, e, what);
    }
    uploads_dir(s, dir, sizeof dir);
    dir_sync(dir);

    /* Cluster mode: the bytes are replicated before the blob is recorded, so
     * the log never names a blob that a standby could not serve. A failed
     * publish keeps the upload complete but unrecorded: the phone's retry
     * (the final PATCH again, or HEAD) comes back here. */
    if (s->blobstream && (rc = blobstream_publish(s->blobstream, sha, blob, length)) != 0) {
        sync_fail(err, rc == SYNC_EIO ? SYNC_EIO : SYNC_EUNAVAIL, NULL,
                  rc == SYNC_EIO ? "cannot read blob %s to replicate it"
                                 : "the evidence store of the cluster did not take blob %s; retry",
                  sha);
        if (err) err->retry_after = 2;
        return rc == SYNC_EIO ? SYNC_EIO : SYNC_EUNAVAIL;
    }

    cJSON *meta = blob_meta_of(st, util_now_ms());
    if (!meta) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    upload_job_t j = {
        .s = s, .kind = JOB_FINISH, .id = id, .value = meta, .sha256 = sha, .now = util_now_ms()};
    rc = store_write(s->st, upload_job_run, &j);
    cJSON_Delete(meta);
    if (rc) return sync_fail(err, rc, NULL, "cannot record blob %s", sha);
    out->offset = length;
    out->complete = 1;
    return 0;
}

/* ======================================================================== */
/* Housekeeping                                                             */
/* ======================================================================== */

static int hex64(const char *s);

/* One upload at start (full) or while serving: expiry, and at start the
 * repairs a crash may call for. */
static void sweep_one(sync_t *s, const cJSON *st, int full, int64_t now) {
    const char *id = util_json_str(st, "id");
    char part[PATH_BYTES], blob[PATH_BYTES];
    busy_t b;
    struct stat ps;
    if (!id || !upload_id_ok(id) || busy_wait_take(&b, id, 0) != 0) return;
    uint64_t offset = json_u64(st, "offset"), length = json_u64(st, "length");
    const char *sha = util_json_str(st, "sha256");
    part_path(s, id, part, sizeof part);
    if (now - (int64_t)json_u64(st, "updated_at") > expire_ms(s)) {
        unlink(part);
        upload_job(s, JOB_DELETE, id, NULL, 0, 0);
    } else if (full && stat(part, &ps) != 0) {
        /* No bytes (e.g. a restored backup): a finished one may have reached
         * the blob store before the process died; otherwise start over. */
        cJSON *meta = NULL;
        int stored = 0;
        if (offset == length && sha && hex64(sha)) {
            blob_path(s, sha, blob, sizeof blob);
            stored = stat(blob, &ps) == 0 && (uint64_t)ps.st_size == length;
        }
        if (stored && s->blobstream) {
            /* Cluster mode: replicated before it is recorded (upload_finish). */
            sync_upload_t u;
            sync_error_t e = {0};
            upload_fill(st, &u);
            upload_finish(s, st, &u, &e);
        } else if (stored && (meta = blob_meta_of(st, now))) {
            upload_job_t j = {
                .s = s, .kind = JOB_FINISH, .id = id, .value = meta, .sha256 = sha, .now = util_now_ms()};
            store_write(s->st, upload_job_run, &j);
        } else {
            upload_job(s, JOB_DELETE, id, NULL, 0, 0);
        }
        cJSON_Delete(meta);
    } else if (full) {
        if ((uint64_t)ps.st_size > offset) {
            if (truncate(part, (off_t)offset) != 0) fprintf(stderr, "casesync: cannot cut %s back\n", part);
        } else if ((uint64_t)ps.st_size < offset) {
            /* Acknowledged bytes are gone (a damaged disk): resume from what is there. */
            upload_job(s, JOB_ADVANCE, id, NULL, offset, (uint64_t)ps.st_size);
            offset = (uint64_t)ps.st_size;
        }
        if (offset == length) {
            sync_upload_t u;
            sync_error_t e = {0};
            upload_fill(st, &u);
            if (upload_finish(s, st, &u, &e) != 0 && e.code != SYNC_ECHECKSUM)
                fprintf(stderr, "casesync: upload %s: %s\n", id, e.message);
        }
    }
    busy_give(&b);
}

static int sweep(sync_t *s, int full, sync_error_t *err) {
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    cJSON *list = cJSON_CreateArray(), *st;
    int64_t now = util_now_ms();
    char dir[PATH_BYTES], path[PATH_BYTES];
    if (!list) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    if (store_read_begin(s->st, &txn) != 0) {
        cJSON_Delete(list);
        return sync_fail(err, SYNC_EIO, NULL, "cannot read the store");
    }
    if (mdb_cursor_open(txn, s->dbs->uploads, &cur) == 0) {
        MDB_val k, v;
        for (int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0;
             r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            cJSON *one = valcodec_decode(v.mv_data, v.mv_size);
            if (one) cJSON_AddItemToArray(list, one);
        }
        mdb_cursor_close(cur);
    }
    store_read_end(txn);
    cJSON_ArrayForEach(st, list) sweep_one(s, st, full, now);

    /* Part files nobody owns: a crash between making the file and storing
     * the upload, or an upload deleted while its file could not be. Only at
     * start, when no request can be making one. */
    uploads_dir(s, dir, sizeof dir);
    DIR *d = full ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        char id[33];
        if (n != 37 || strcmp(e->d_name + 32, ".part") != 0) continue;
        memcpy(id, e->d_name, 32);
        id[32] = 0;
        cJSON *found = NULL;
        if (upload_id_ok(id) && upload_load(s, id, &found) == 0) {
            cJSON_Delete(found);
            continue;
        }
        part_path(s, id, path, sizeof path);
        unlink(path);
    }
    if (d) closedir(d);
    cJSON_Delete(list);
    return 0;
}

int sync_uploads_sweep(sync_t *s, sync_error_t *err) {
    if (s->cfg.read_only) return sync_fail(err, SYNC_EBADREQ, NULL, "the store is open read-only");
    return sweep(s, 1, err);
}

/* Expiry while serving, at most once per SWEEP_INTERVAL_MS in the process. */
static void sweep_maybe(sync_t *s) {
    static int64_t last;
    int64_t now = util_now_ms(), seen = __atomic_load_n(&last, __ATOMIC_RELAXED);
    if (now - seen < SWEEP_INTERVAL_MS) return;
    if (!__atomic_compare_exchange_n(&last, &seen, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return;
    sweep(s, 0, NULL);
}

/* ======================================================================== */
/* Uploads                                                                  */
/* ======================================================================== */

static int hex64(const char *s) {
    size_t n = 0;
    for (; s && s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f') || (s[n] >= 'A' && s[n] <= 'F')))
            return 0;
    return n == 64;
}

/* Printable ASCII, at most max bytes. */
static int ascii_ok(const char *s, size_t max) {
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e) return 0;
    return n > 0 && n <= max;
}

/* Valid UTF-8 without control characters, 1..max bytes. */
static int text_ok(const char *s, size_t max) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), i = 0;
    if (n == 0 || n > max) return 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t k = c < 0x80                   ? 1
                   : (c >= 0xC2 && c <= 0xDF) ? 2
                   : (c >= 0xE0 && c <= 0xEF) ? 3
                   : (c >= 0xF0 && c <= 0xF4) ? 4
                                              : 0;
        if (!k || i + k > n || (k == 1 && (c < 0x20 || c == 0x7f))) return 0;
        for (size_t j = 1; j < k; j++)
            if ((p[i + j] & 0xC0) != 0x80) return 0;
        if ((c == 0xE0 && p[i + 1] < 0xA0) || (c == 0xED && p[i + 1] >= 0xA0) ||
            (c == 0xF0 && p[i + 1] < 0x90) || (c == 0xF4 && p[i + 1] >= 0x90))
            return 0;
        i += k;
    }
    return 1;
}

static int meta_check(const sync_upload_meta_t *m, char sha[65], sync_error_t *err) {
    if (!m || !m->sha256)
        return sync_fail(err, SYNC_EINVALID, "Upload-Metadata.sha256",
                         "Upload-Metadata must carry the file's sha256");
    if (!hex64(m->sha256))
        return sync_fail(err, SYNC_EINVALID, "Upload-Metadata.sha256", "sha256 must be 64 hex digits");
    for (int i = 0; i < 64; i++)
        sha[i] = (char)(m->sha256[i] | (m->sha256[i] >= 'A' ? 0x20 : 0));
    sha[64] = 0;
    if (m->filename && !text_ok(m->filename, FILENAME_MAX_BYTES))
        return sync_fail(err, SYNC_EINVALID, "Upload-Metadata.filename",
                         "filename must be UTF-8 text of 1 to %d bytes", FILENAME_MAX_BYTES);
    if (m->mime && !ascii_ok(m->mime, MIME_MAX_BYTES))
        return sync_fail(err, SYNC_EINVALID, "Upload-Metadata.mime",
                         "mime must be printable ASCII of 1 to %d bytes", MIME_MAX_BYTES);
    if (m->record_id && !util_valid_id(m->record_id, 8, 64))
        return sync_fail(err, SYNC_EINVALID, "Upload-Metadata.record_id", "record_id is not a record id");
    return 0;
}

int sync_upload_create(sync_t *s, const sync_principal_t *p, uint64_t length, const sync_upload_meta_t *meta,
                       sync_upload_t *out, sync_error_t *err) {
    char sha[65], id[33], dir[PATH_BYTES], part[PATH_BYTES];
    cJSON *st = NULL;
    int rc, fd;
    memset(out, 0, sizeof *out);
    if (length > sync_upload_max(s))
        return sync_fail(err, SYNC_ETOOLARGE, "Upload-Length", "an upload may hold at most %llu bytes",
                         (unsigned long long)sync_upload_max(s));
    if ((rc = meta_check(meta, sha, err)) != 0) return rc;
    if (shutting_down(s)) return sync_fail(err, SYNC_EBUSY, NULL, "the server is shutting down");
    sweep_maybe(s);

    uploads_dir(s, dir, sizeof dir);
    if (dir_make(dir) != 0) return sync_fail(err, SYNC_EIO, NULL, "cannot make %s: %s", dir, strerror(errno));
    if (!disk_room(dir, length)) return disk_full(err, "no room for the upload");
    if (util_random_hex(16, id) != 0) return sync_fail(err, SYNC_EIO, NULL, "no randomness for an upload id");
    part_path(s, id, part, sizeof part);
    /* The file exists, durably, before the upload does: the sweep at start
     * deletes a file left without its upload. */
    if ((fd = open(part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
        return sync_fail(err, SYNC_EIO, NULL, "cannot make %s: %s", part, strerror(errno));
    close(fd);
    if (dir_sync(dir) != 0) {
        rc = sync_fail(err, SYNC_EIO, NULL, "cannot sync %s: %s", dir, strerror(errno));
        goto fail;
    }

    int64_t now = util_now_ms();
    if (!(st = cJSON_CreateObject())) {
        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        goto fail;
    }
    cJSON_AddStringToObject(st, "id", id);
    cJSON_AddStringToObject(st, "user_id", p->user_id);
    cJSON_AddStringToObject(st, "device_id", p->device_id);
    cJSON_AddNumberToObject(st, "length", (double)length);
    cJSON_AddNumberToObject(st, "offset", 0);
    cJSON_AddStringToObject(st, "sha256", sha);
    if (meta->filename) cJSON_AddStringToObject(st, "filename", meta->filename);
    cJSON_AddStringToObject(st, "mime", meta->mime ? meta->mime : "application/octet-stream");
    if (meta->record_id) cJSON_AddStringToObject(st, "record_id", meta->record_id);
    cJSON_AddNumberToObject(st, "created_at", (double)now);
    cJSON_AddNumberToObject(st, "updated_at", (double)now);
    if ((rc = upload_job(s, JOB_PUT, id, st, 0, 0)) != 0) {
        sync_fail(err, rc, NULL, "cannot store the upload");
        goto fail;
    }
    upload_fill(st, out);
    if (length == 0) {
        busy_t b;
        busy_wait_take(&b, id, 0);
        rc = upload_finish(s, st, out, err);
        busy_give(&b);
    }
    cJSON_Delete(st);
    return rc;
fail:
    cJSON_Delete(st);
    unlink(part);
    memset(out, 0, sizeof *out);
    return rc;
}

int sync_upload_get(sync_t *s, const sync_principal_t *p, const char *id, sync_upload_t *out,
                    sync_error_t *err) {
    cJSON *st = NULL;
    memset(out, 0, sizeof *out);
    if (upload_id_ok(id)) busy_wait_take(NULL, id, BUSY_WAIT_MS);
    int rc = upload_find(s, p, id, &st, err);
    if (rc) return rc;
    upload_fill(st, out);
    cJSON_Delete(st);
    if (out->offset < out->length) return 0;
    /* Every byte is durable but the blob was not made (the end failed, e.g.
     * a full disk): make it now, so that a client told the upload is
     * complete finds its blob. */
    busy_t b;
    if (busy_wait_take(&b, id, BUSY_WAIT_MS) != 0) return 0;
    if (upload_find(s, p, id, &st, NULL) != 0) {
        out->complete = 1; /* finished meanwhile */
    } else if (json_u64(st, "offset") == json_u64(st, "length")) {
        rc = upload_finish(s, st, out, err);
        if (rc == SYNC_ECHECKSUM) rc = sync_fail(err, SYNC_ENOTFOUND, NULL, "no upload %s", id);
    }
    cJSON_Delete(st);
    busy_give(&b);
    return rc;
}

int sync_upload_delete(sync_t *s, const sync_principal_t *p, const char *id, sync_error_t *err) {
    cJSON *st = NULL;
    char part[PATH_BYTES];
    busy_t b;
    int rc = upload_find(s, p, id, &st, err);
    if (rc) return rc;
    cJSON_Delete(st);
    if (busy_wait_take(&b, id, BUSY_WAIT_MS) != 0)
        return sync_fail(err, SYNC_ECONFLICT, NULL, "another request is writing upload %s", id);
    part_path(s, id, part, sizeof part);
    rc = upload_job(s, JOB_DELETE, id, NULL, 0, 0);
    if (rc == 0)
        unlink(part);
    else
        sync_fail(err, rc, NULL, "cannot delete upload %s", id);
    busy_give(&b);
    return rc;
}

/* Opens the part file for writing at `offset`, cutting off bytes past it
 * (written but never acknowledged). */
static int part_open(sync_t *s, const char *id, uint64_t offset, int *fd, sync_error_t *err) {
    char part[PATH_BYTES];
    struct stat ps;
    part_path(s, id, part, sizeof part);
    *fd = open(part, O_WRONLY | O_CLOEXEC);
    if (*fd < 0 && errno == ENOENT && offset == 0) {
        char dir[PATH_BYTES];
        uploads_dir(s, dir, sizeof dir);
        if ((*fd = open(part, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) >= 0 && dir_sync(dir) != 0) {
            close(*fd);
            *fd = -1;
        }
    }
    if (*fd < 0 && errno != ENOENT)
        return sync_fail(err, SYNC_EIO, NULL, "cannot open %s: %s", part, strerror(errno));
    if (*fd >= 0 && fstat(*fd, &ps) != 0) {
        close(*fd);
        *fd = -1;
        return sync_fail(err, SYNC_EIO, NULL, "cannot open %s: %s", part, strerror(errno));
    }
    if (*fd < 0 || (uint64_t)ps.st_size < offset) {
        /* Acknowledged bytes are gone: the client must start a new upload. */
        if (*fd >= 0) close(*fd);
        *fd = -1;
        upload_job(s, JOB_DELETE, id, NULL, 0, 0);
        unlink(part);
        return sync_fail(err, SYNC_ENOTFOUND, NULL, "the bytes of upload %s are lost; start a new upload",
                         id);
    }
    if ((uint64_t)ps.st_size > offset && ftruncate(*fd, (off_t)offset) != 0) {
        close(*fd);
        *fd = -1;
        return sync_fail(err, SYNC_EIO, NULL, "cannot cut %s back: %s", part, strerror(errno));
    }
    return 0;
}

/* fdatasync up to `to`, then record the offset: the order that makes every
 * recorded offset durable. */
static int part_commit(sync_t *s, const char *id, int fd, uint64_t from, uint64_t to, sync_error_t *err) {
    if (fdatasync(fd) != 0) {
        /* The bytes since the last sync may be gone from the page cache: the
         * caller cuts the file back to `from`, and the phone sends them again. */
        int e = errno;
        char what[80];
        snprintf(what, sizeof what, "syncing upload %s", id);
        return disk_error(s, err, e, what);
    }
    int rc = upload_job(s, JOB_ADVANCE, id, NULL, from, to);
    if (rc) return sync_fail(err, rc, NULL, "cannot record the offset of upload %s", id);
    return 0;
}

int sync_upload_write(sync_t *s, const sync_principal_t *p, const char *id, uint64_t offset, int64_t body_len,
                      const sync_checksum_t *check, sync_read_cb read, void *ctx, sync_upload_t *out,
                      sync_error_t *err) {
    cJSON *st = NULL;
    busy_t b;
    int fd = -1, rc, held = 0, broke = 0;
    unsigned char *buf = NULL, md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *dctx = NULL;
    memset(out, 0, sizeof *out);

    if ((rc = upload_find(s, p, id, &st, err)) != 0) return rc;
    upload_fill(st, out);
    if (busy_wait_take(&b, id, 0) != 0) {
        rc = sync_fail(err, SYNC_ECONFLICT, "Upload-Offset", "another request is writing upload %s", id);
        goto done;
    }
    held = 1;
    /* The state as it is now that we hold the upload. */
    cJSON_Delete(st);
    if ((rc = upload_find(s, p, id, &st, err)) != 0) goto done;
    upload_fill(st, out);
    uint64_t length = out->length, saved = out->offset, pos = saved;
    if (offset != saved) {
        rc = sync_fail(err, SYNC_ECONFLICT, "Upload-Offset", "the upload is at offset %llu, not %llu",
                       (unsigned long long)saved, (unsigned long long)offset);
        goto done;
    }
    if (body_len >= 0 && (uint64_t)body_len > length - offset) {
        rc = sync_fail(err, SYNC_ETOOLARGE, NULL, "the body has %lld bytes but only %llu are missing",
                       (long long)body_len, (unsigned long long)(length - offset));
        goto done;
    }
    if (shutting_down(s)) {
        rc = sync_fail(err, SYNC_EBUSY, NULL, "the server is shutting down");
        goto done;
    }
    if (check) {
        const EVP_MD *md_type = strcmp(check->algorithm, "sha1") == 0     ? EVP_sha1()
                                : strcmp(check->algorithm, "sha256") == 0 ? EVP_sha256()
                                                                          : NULL;
        if (!md_type || (size_t)EVP_MD_get_size(md_type) != check->digest_len) {
            rc = sync_fail(err, SYNC_EBADREQ, "Upload-Checksum", "checksums are sha1 or sha256, base64");
            goto done;
        }
        if (!(dctx = EVP_MD_CTX_new()) || EVP_DigestInit_ex(dctx, md_type, NULL) != 1) {
            rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
            goto done;
        }
    }
    if (!(buf = malloc(BLOB_CHUNK))) {
        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        goto done;
    }
    if ((rc = part_open(s, id, offset, &fd, err)) != 0) goto done;

    for (;;) {
        if (shutting_down(s)) {
            rc = sync_fail(err, SYNC_EBUSY, NULL, "the server is shutting down");
            break;
        }
        /* One byte more than fits tells a too-long body from a full one. */
        uint64_t room = length - pos;
        size_t want = room + 1 < BLOB_CHUNK ? (size_t)room + 1 : BLOB_CHUNK;
        long n = read(ctx, buf, want);
        if (n < 0) {
            broke = 1;
            break;
        }
        if (n == 0) break;
        if ((uint64_t)n > room) {
            rc = sync_fail(err, SYNC_ETOOLARGE, NULL, "the body goes past the upload's length of %llu bytes",
                           (unsigned long long)length);
            break;
        }
        if (write_all(fd, buf, (size_t)n, pos) != 0) {
            int e = errno;
            char what[80];
            snprintf(what, sizeof what, "writing upload %s", id);
            rc = disk_error(s, err, e, what);
            break;
        }
        if (dctx && EVP_DigestUpdate(dctx, buf, (size_t)n) != 1) {
            rc = sync_fail(err, SYNC_ENOMEM, NULL, "cannot hash the body");
            break;
        }
        pos += (uint64_t)n;
        /* Without a per-request checksum, a long body becomes durable as it goes. */
        if (!check && pos - saved >= UPLOAD_CHECKPOINT) {
            if ((rc = part_commit(s, id, fd, saved, pos, err)) != 0) break;
            saved = pos;
        }
    }
    if (rc == 0 && check) {
        if (broke) {
            rc = sync_fail(err, SYNC_EBADREQ, NULL,
                           "the body broke off; a request with a checksum keeps nothing");
        } else if (EVP_DigestFinal_ex(dctx, md, &mdlen) != 1 || mdlen != check->digest_len ||
                   memcmp(md, check->digest, mdlen) != 0) {
            rc = sync_fail(err, SYNC_ECHECKSUM, "Upload-Checksum",
                           "the body does not match its Upload-Checksum; nothing of it was kept");
        }
    }
    if (rc == 0 && pos > saved) {
        if ((rc = part_commit(s, id, fd, saved, pos, err)) == 0) saved = pos;
    }
    /* Whatever is not recorded is cut off, so the file ends at the offset. */
    if (pos > saved && ftruncate(fd, (off_t)saved) != 0 && rc == 0)
        rc = sync_fail(err, SYNC_EIO, NULL, "cannot cut upload %s back", id);
    out->offset = saved;
    if (rc == 0 && broke)
        rc = sync_fail(err, SYNC_EBADREQ, NULL, "the body broke off; the upload is at offset %llu",
                       (unsigned long long)saved);
    if (rc == 0 && saved == length) {
        close(fd);
        fd = -1;
        rc = upload_finish(s, st, out, err);
    }
done:
    if (fd >= 0) close(fd);
    if (held) busy_give(&b);
    EVP_MD_CTX_free(dctx);
    free(buf);
    cJSON_Delete(st);
    return rc;
}

/* ======================================================================== */
/* Blobs                                                                    */
/* ======================================================================== */

static int blob_meta(sync_t *s, MDB_txn *txn, const char *sha, sync_blob_t *out, int *file_missing) {
    cJSON *m = NULL;
    char path[PATH_BYTES];
    struct stat bs;
    int rc = store_get_json(txn, s->dbs->blobs, sha, 64, &m);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    copy_str(out->sha256, sizeof out->sha256, sha);
    copy_str(out->mime, sizeof out->mime, util_json_str(m, "mime"));
    if (!out->mime[0]) copy_str(out->mime, sizeof out->mime, "application/octet-stream");
    out->size = json_u64(m, "size");
    out->created_at = (int64_t)json_u64(m, "created_at");
    cJSON_Delete(m);
    /* A blob whose file is gone (a partial restore) is not there: the phone
     * uploads it again. */
    blob_path(s, sha, path, sizeof path);
    if (stat(path, &bs) != 0) {
        if (file_missing) *file_missing = 1;
        return SYNC_ENOTFOUND;
    }
    out->size = (uint64_t)bs.st_size;
    return 0;
}

static int sha_arg(const char *sha, char lower[65]) {
    if (!hex64(sha)) return -1;
    for (int i = 0; i < 64; i++)
        lower[i] = (char)(sha[i] | (sha[i] >= 'A' ? 0x20 : 0));
    lower[64] = 0;
    return 0;
}

/* ---- who may read a blob, who may list one ------------------------------------------ */

blob_read_t blobs_judge_read(schema_role_t role, int uploader, int backed_listing_in_scope) {
    if (role == ROLE_ADMIN || uploader || backed_listing_in_scope) return BLOB_READ_OK;
    return BLOB_READ_HIDDEN;
}

blob_listing_t blobs_judge_listing(int stored, int may_read) {
    if (!stored) return BLOB_LIST_PENDING;
    return may_read ? BLOB_LIST_VOUCHED : BLOB_LIST_REFUSED;
}

/* Keys of the blobs db beside the meta (kind 'u': uploader, 'l': listing). */
static size_t blob_key(unsigned char *k, size_t cap, const char *sha, char kind, const char *a,
                       const char *b) {
    size_t al = a ? strlen(a) : 0, bl = b ? strlen(b) : 0, n = 66 + al + (b ? 1 + bl : 0);
    if (n > cap) return 0;
    memcpy(k, sha, 64);
    k[64] = 0;
    k[65] = (unsigned char)kind;
    if (al) memcpy(k + 66, a, al);
    if (b) {
        k[66 + al] = 0;
        memcpy(k + 67 + al, b, bl);
    }
    return n;
}

static int blob_stored(sync_t *s, MDB_txn *txn, const char *sha) {
    MDB_val k = {64, (void *)sha}, v;
    return mdb_get(txn, s->dbs->blobs, &k, &v) == 0;
}

/* Did user_id complete an upload of these bytes? The blob meta's "uploader"
 * is the first one, and the only one a store written before the index knows. */
static int blob_uploaded_by(sync_t *s, MDB_txn *txn, const char *sha, const char *user_id) {
    unsigned char key[BLOB_KEY_MAX];
    size_t n = blob_key(key, sizeof key, sha, 'u', user_id, NULL);
    MDB_val k = {n, key}, v;
    if (n && mdb_get(txn, s->dbs->blobs, &k, &v) == 0) return 1;
    cJSON *m = NULL;
    int first = store_get_json(txn, s->dbs->blobs, sha, 64, &m) == 0 && util_json_str(m, "uploader") &&
                strcmp(util_json_str(m, "uploader"), user_id) == 0;
    cJSON_Delete(m);
    return first;
}

/* Does record_id's listing of sha open the bytes to those who see the record?
 * Yes when one of the users who listed it there could read the bytes then
 * (vouched) or has uploaded them since. A listing recorded before this index
 * existed (no entry at all) counts as backed. */
static int listing_backed(sync_t *s, MDB_txn *txn, const char *sha, const char *record_id) {
    unsigned char prefix[BLOB_KEY_MAX];
    size_t pn = blob_key(prefix, sizeof prefix, sha, 'l', record_id, "");
    MDB_cursor *cur = NULL;
    int entries = 0, backed = 0;
    if (!pn || mdb_cursor_open(txn, s->dbs->blobs, &cur) != 0) return 0;
    MDB_val k = {pn, prefix}, v;
    for (int r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); r == 0 && !backed;
         r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= pn || memcmp(k.mv_data, prefix, pn) != 0) break;
        char user[96];
        size_t un = k.mv_size - pn;
        entries++;
        if (un >= sizeof user) continue;
        memcpy(user, (const char *)k.mv_data + pn, un);
        user[un] = 0;
        cJSON *e = valcodec_decode(v.mv_data, v.mv_size);
        backed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "vouched")) ||
                 blob_uploaded_by(s, txn, sha, user);
        cJSON_Delete(e);
    }
    mdb_cursor_close(cur);
    return backed || entries == 0;
}

/* Is there a record in p's scope whose evidence lists sha with a backed listing? */
static int blob_listed_in_scope(sync_t *s, MDB_txn *txn, const sync_principal_t *p, const char *sha) {
    MDB_cursor *cur = NULL;
    unsigned char prefix[65];
    int64_t now = util_now_ms(), window = (int64_t)s->cfg.sync_window_days * DAY_MS;
    int seen = 0;
    memcpy(prefix, sha, 64);
    prefix[64] = 0;
    if (mdb_cursor_open(txn, s->dbs->evidence, &cur) != 0) return 0;
    MDB_val k = {65, prefix}, v;
    for (int r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); r == 0 && !seen;
         r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= 65 || memcmp(k.mv_data, prefix, 65) != 0) break;
        char rid[96];
        size_t n = k.mv_size - 65;
        if (n >= sizeof rid) continue;
        memcpy(rid, (const char *)k.mv_data + 65, n);
        rid[n] = 0;
        cJSON *rec = NULL;
        if (record_load(txn, s->dbs, rid, &rec) == 0 && record_visible(p->user, rec, now, window, 1) &&
            listing_backed(s, txn, sha, rid))
            seen = 1;
        cJSON_Delete(rec);
    }
    mdb_cursor_close(cur);
    return seen;
}

/* May p read the bytes of sha (lowercase hex)? Whether they are stored is
 * the caller's business. */
static int blob_may_read(sync_t *s, MDB_txn *txn, const sync_principal_t *p, const char *sha) {
    if (p->role == ROLE_ADMIN) return blobs_judge_read(p->role, 0, 0) == BLOB_READ_OK;
    int uploader = blob_uploaded_by(s, txn, sha, p->user_id);
    int listed = !uploader && blob_listed_in_scope(s, txn, p, sha);
    return blobs_judge_read(p->role, uploader, listed) == BLOB_READ_OK;
}

/* Is an item with this id in the list already (so it will not be appended)? */
static int item_listed(const cJSON *list, const char *id) {
    const cJSON *y;
    cJSON_ArrayForEach(y, list) {
        const char *yid = util_json_str(y, "id");
        if (id && yid && strcmp(yid, id) == 0) return 1;
    }
    return 0;
}

int blobs_evidence_check(sync_t *s, MDB_txn *txn, const sync_principal_t *p, const cJSON *items,
                         const cJSON *existing, sync_error_t *err) {
    const cJSON *it;
    int k = 0;
    cJSON_ArrayForEach(it, items) {
        const char *sha = util_json_str(it, "sha256");
        char lower[65], field[64];
        if (sha && sha_arg(sha, lower) == 0 && !item_listed(existing, util_json_str(it, "id"))) {
            int stored = blob_stored(s, txn, lower);
            if (blobs_judge_listing(stored, stored && blob_may_read(s, txn, p, lower)) == BLOB_LIST_REFUSED) {
                snprintf(field, sizeof field, "evidence[%d].sha256", k);
                return sync_fail(err, SYNC_EEVIDENCE, field,
                                 "evidence %s: the server holds these bytes, but you did not upload them and "
                                 "no case you see lists them; upload them from this device, then push the "
                                 "item again",
                                 lower);
            }
        }
        k++;
    }
    return 0;
}

int blobs_evidence_listed(sync_t *s, MDB_txn *txn, const sync_principal_t *p, const char *record_id,
                          const cJSON *items) {
    const cJSON *it;
    cJSON_ArrayForEach(it, items) {
        const char *sha = util_json_str(it, "sha256");
        unsigned char key[BLOB_KEY_MAX];
        char lower[65];
        size_t n;
        if (!sha || sha_arg(sha, lower) != 0) continue;
        if (!(n = blob_key(key, sizeof key, lower, 'l', record_id, p->user_id))) return SYNC_EIO;
        int stored = blob_stored(s, txn, lower), rc;
        cJSON *e = NULL;
        /* A second item with the same bytes in the same record: once
         * vouched, the listing stays so. */
        if ((rc = store_get_json(txn, s->dbs->blobs, key, n, &e)) == 0) {
            int keep = !stored || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "vouched"));
            cJSON_Delete(e);
            if (keep) continue;
        } else if (rc != SYNC_ENOTFOUND) {
            return rc;
        }
        e = cJSON_CreateObject();
        if (!e || !cJSON_AddNumberToObject(e, "at", (double)util_now_ms()) ||
            !cJSON_AddBoolToObject(e, "vouched", stored)) {
            cJSON_Delete(e);
            return SYNC_ENOMEM;
        }
        rc = store_put_json(txn, s->dbs->blobs, key, n, e);
        cJSON_Delete(e);
        if (rc) return rc;
    }
    return 0;
}

/* Finds a blob p may read. Unknown bytes and bytes p may not read get the
 * same SYNC_ENOTFOUND and the same words: existence is not revealed. */
static int blob_find(sync_t *s, const sync_principal_t *p, const char *sha256, sync_blob_t *out, char sha[65],
                     sync_error_t *err) {
    MDB_txn *txn = NULL;
    memset(out, 0, sizeof *out);
    if (sha_arg(sha256, sha) != 0) return sync_fail(err, SYNC_ENOTFOUND, NULL, "no blob with that name");
    int rc, missing = 0;
    for (int attempt = 0;; attempt++) {
        if (store_read_begin(s->st, &txn) != 0)
            return sync_fail(err, SYNC_EIO, NULL, "cannot read the store");
        missing = 0;
        rc = blob_meta(s, txn, sha, out, &missing);
        if (rc == 0 && !blob_may_read(s, txn, p, sha)) rc = SYNC_ENOTFOUND;
        /* Cluster mode: the row came with the log but the file has not come
         * from the blob stream yet. Fetch it now (outside the transaction),
         * for a reader who may read it, and look again. */
        if (missing && attempt == 0 && s->blobstream && blob_may_read(s, txn, p, sha)) {
            store_read_end(txn);
            txn = NULL;
            int frc = blobstream_fetch(s->blobstream, sha);
            if (frc == 0) continue;
            if (frc == SYNC_EUNAVAIL) {
                memset(out, 0, sizeof *out);
                sync_fail(err, SYNC_EUNAVAIL, NULL,
                          "the evidence store of the cluster did not answer; retry");
                if (err) err->retry_after = 2;
                return SYNC_EUNAVAIL;
            }
        }
        break;
    }
    store_read_end(txn);
    if (rc) memset(out, 0, sizeof *out);
    if (rc == SYNC_ENOTFOUND) return sync_fail(err, rc, NULL, "no blob %s", sha);
    if (rc) return sync_fail(err, rc, NULL, "cannot read blob %s", sha);
    return 0;
}

int sync_blob_stat(sync_t *s, const sync_principal_t *p, const char *sha256, sync_blob_t *out,
                   sync_error_t *err) {
    char sha[65];
    return blob_find(s, p, sha256, out, sha, err);
}

int sync_blob_open(sync_t *s, const sync_principal_t *p, const char *sha256, sync_blob_t *out, int *fd,
                   sync_error_t *err) {
    char sha[65], path[PATH_BYTES];
    struct stat bs;
    *fd = -1;
    int rc = blob_find(s, p, sha256, out, sha, err);
    if (rc) return rc;
    blob_path(s, sha, path, sizeof path);
    if ((*fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(*fd, &bs) != 0) {
        int e = errno;
        if (*fd >= 0) close(*fd);
        *fd = -1;
        memset(out, 0, sizeof *out);
        if (e == ENOENT) return sync_fail(err, SYNC_ENOTFOUND, NULL, "no blob %s", sha);
        return sync_fail(err, SYNC_EIO, NULL, "cannot open blob %s: %s", sha, strerror(e));
    }
    out->size = (uint64_t)bs.st_size;
    return 0;
}

/* ======================================================================== */
/* Missing evidence                                                         */
/* ======================================================================== */

/* Called for each due item without bytes; entry is the evidence db value. */
typedef int (*missing_cb)(void *ctx, const char *sha, const cJSON *entry, int64_t pushed_at, int64_t due_at);

/* Walks the evidence db (sha256 order) and looks each hash up in the blobs
 * db once: the cost is the number of evidence entries, never records. */
static int missing_walk(sync_t *s, MDB_txn *txn, int64_t now, missing_cb cb, void *ctx) {
    MDB_cursor *cur = NULL;
    char sha[65] = "", last[65] = "";
    int present = 0, rc = 0;
    int64_t deadline = deadline_ms(s);
    if (mdb_cursor_open(txn, s->dbs->evidence, &cur) != 0) return SYNC_EIO;
    MDB_val k, v;
    for (int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0 && rc == 0;
         r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 65 || ((const char *)k.mv_data)[64] != 0) continue;
        memcpy(sha, k.mv_data, 64);
        sha[64] = 0;
        if (strcmp(sha, last) != 0) {
            MDB_val bk = {64, sha}, bv;
            present = mdb_get(txn, s->dbs->blobs, &bk, &bv) == 0;
            memcpy(last, sha, 65);
        }
        if (present) continue;
        cJSON *e = valcodec_decode(v.mv_data, v.mv_size);
        int64_t pushed = 0, start;
        /* evidence_due runs from capture (index.c notes captured_at, never
         * later than the push), from the push when the phone sent none. */
        if (e && util_json_int(e, "pushed_at", &pushed) == 0) {
            if (util_json_int(e, "captured_at", &start) != 0) start = pushed;
            if (start + deadline <= now) rc = cb(ctx, sha, e, pushed, start + deadline);
        }
        cJSON_Delete(e);
    }
    mdb_cursor_close(cur);
    return rc;
}

static int count_cb(void *ctx, const char *sha, const cJSON *entry, int64_t pushed_at, int64_t due_at) {
    cJSON *counts = ctx;
    const char *dev = util_json_str(entry, "device_id");
    (void)sha, (void)pushed_at, (void)due_at;
    if (!dev) return 0;
    cJSON *n = cJSON_GetObjectItemCaseSensitive(counts, dev);
    if (n)
        cJSON_SetNumberValue(n, n->valuedouble + 1);
    else if (!cJSON_AddNumberToObject(counts, dev, 1))
        return SYNC_ENOMEM;
    return 0;
}

cJSON *blobs_missing_by_device(sync_t *s, MDB_txn *txn, int64_t now_ms) {
    cJSON *counts = cJSON_CreateObject();
    if (counts && missing_walk(s, txn, now_ms, count_cb, counts) != 0) {
        cJSON_Delete(counts);
        counts = NULL;
    }
    return counts;
}

typedef struct unit_count {
    const char *unit; /* NULL: every unit */
    uint64_t n;
} unit_count_t;

static int unit_count_cb(void *ctx, const char *sha, const cJSON *entry, int64_t pushed_at, int64_t due_at) {
    unit_count_t *c = ctx;
    const char *unit = util_json_str(entry, "unit");
    (void)sha, (void)pushed_at, (void)due_at;
    if (!c->unit || (unit && strcmp(unit, c->unit) == 0)) c->n++;
    return 0;
}

int blobs_missing_count(sync_t *s, MDB_txn *txn, int64_t now_ms, const char *unit, uint64_t *n) {
    unit_count_t c = {unit, 0};
    int rc = missing_walk(s, txn, now_ms, unit_count_cb, &c);
    *n = c.n;
    return rc;
}

typedef struct missing_item {
    int64_t due_at;
    cJSON *item;
} missing_item_t;

typedef struct missing_list {
    const sync_principal_t *p;
    const cJSON *devices; /* officers and auxiliaries: their device ids */
    missing_item_t *items;
    size_t n, cap;
} missing_list_t;

static int list_cb(void *ctx, const char *sha, const cJSON *entry, int64_t pushed_at, int64_t due_at) {
    missing_list_t *l = ctx;
    const char *unit = util_json_str(entry, "unit"), *dev = util_json_str(entry, "device_id");
    char at[32];
    switch (l->p->role) {
    case ROLE_ADMIN: break;
    case ROLE_SUPERVISOR:
    case ROLE_LEGAL_REVIEWER:
        if (!unit || strcmp(unit, l->p->unit) != 0) return 0;
        break;
    default: {
        int mine = 0;
        const cJSON *d;
        cJSON_ArrayForEach(d, l->devices) mine |=
            dev && cJSON_IsString(d) && strcmp(d->valuestring, dev) == 0;
        if (!mine) return 0;
    }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        missing_item_t *g = realloc(l->items, cap * sizeof *g);
        if (!g) return SYNC_ENOMEM;
        l->items = g;
        l->cap = cap;
    }
    cJSON *it = cJSON_CreateObject();
    if (!it) return SYNC_ENOMEM;
    cJSON_AddStringToObject(it, "record_id",
                            util_json_str(entry, "record_id") ? util_json_str(entry, "record_id") : "");
    cJSON_AddStringToObject(it, "item_id",
                            util_json_str(entry, "item_id") ? util_json_str(entry, "item_id") : "");
    cJSON_AddStringToObject(it, "sha256", sha);
    cJSON_AddStringToObject(it, "device_id", dev ? dev : "");
    cJSON_AddStringToObject(it, "pushed_at", util_fmt_time(pushed_at, at));
    cJSON_AddStringToObject(it, "due_at", util_fmt_time(due_at, at));
    l->items[l->n].due_at = due_at;
    l->items[l->n++].item = it;
    return 0;
}

static int by_due(const void *a, const void *b) {
    const missing_item_t *x = a, *y = b;
    if (x->due_at != y->due_at) return x->due_at < y->due_at ? -1 : 1;
    return strcmp(util_json_str(x->item, "record_id"), util_json_str(y->item, "record_id"));
}

/* The device ids of user_id (from the devices db). */
static cJSON *user_devices(sync_t *s, MDB_txn *txn, const char *user_id) {
    cJSON *list = cJSON_CreateArray();
    MDB_cursor *cur = NULL;
    if (!list || mdb_cursor_open(txn, s->dbs->devices, &cur) != 0) return list;
    MDB_val k, v;
    for (int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0; r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        cJSON *d = valcodec_decode(v.mv_data, v.mv_size);
        const char *uid = util_json_str(d, "user_id");
        char id[128];
        if (uid && strcmp(uid, user_id) == 0 && k.mv_size < sizeof id) {
            memcpy(id, k.mv_data, k.mv_size);
            id[k.mv_size] = 0;
            cJSON_AddItemToArray(list, cJSON_CreateString(id));
        }
        cJSON_Delete(d);
    }
    mdb_cursor_close(cur);
    return list;
}

int sync_evidence_missing(sync_t *s, const sync_principal_t *p, char **out, sync_error_t *err) {
    MDB_txn *txn = NULL;
    missing_list_t l = {.p = p};
    cJSON *root = NULL, *devices = NULL;
    int rc;
    *out = NULL;
    if (store_read_begin(s->st, &txn) != 0) return sync_fail(err, SYNC_EIO, NULL, "cannot read the store");
    if (p->role != ROLE_ADMIN && p->role != ROLE_SUPERVISOR && p->role != ROLE_LEGAL_REVIEWER)
        l.devices = devices = user_devices(s, txn, p->user_id);
    rc = missing_walk(s, txn, util_now_ms(), list_cb, &l);
    store_read_end(txn);
    if (rc) {
        sync_fail(err, rc, NULL, "cannot list missing evidence");
        goto done;
    }
    if (l.n > 1) qsort(l.items, l.n, sizeof *l.items, by_due);
    cJSON *arr;
    if (!(root = cJSON_CreateObject()) || !(arr = cJSON_AddArrayToObject(root, "items"))) {
        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < l.n && i < MISSING_MAX; i++) {
        cJSON_AddItemToArray(arr, l.items[i].item);
        l.items[i].item = NULL;
    }
    if (l.n > MISSING_MAX) cJSON_AddTrueToObject(root, "truncated");
    if (!(*out = cJSON_PrintUnformatted(root))) rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
done:
    for (size_t i = 0; i < l.n; i++)
        cJSON_Delete(l.items[i].item);
    free(l.items);
    cJSON_Delete(root);
    cJSON_Delete(devices);
    return rc;
}
