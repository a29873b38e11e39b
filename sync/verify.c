/* verify.c -- the store held against itself (sync_store_verify, sync.h):
 * records against their audit entries, record logs and feed entries; feed,
 * index and evidence rows against the records they name; blob rows against
 * their files (present, of their size, and of their SHA-256 when hashed).
 *
 * Caveats:
 * - One read transaction over every record, feed, index, evidence and blob
 *   row: linear in the store, read-only, and safe while the server runs (a
 *   snapshot). Blob files are content-addressed and never change, so they
 *   are read after the transaction ends.
 * - Problems are reported, at most VERIFY_MAX_PROBLEMS of them by text
 *   (all are counted); nothing is repaired.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sync/engine.h"
#include "sync/record.h"
#include "sync/valcodec.h"

#define VERIFY_MAX_PROBLEMS 50
#define HASH_CHUNK (1 << 20)

typedef struct vctx {
    cJSON *problems;
    uint64_t nproblems;
    sync_progress_fn progress;
    void *ud;
} vctx_t;

static void problem(vctx_t *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(vctx_t *v, const char *fmt, ...) {
    v->nproblems++;
    if (cJSON_GetArraySize(v->problems) >= VERIFY_MAX_PROBLEMS) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON_AddItemToArray(v->problems, cJSON_CreateString(msg));
}

static void tick(vctx_t *v, const char *phase, uint64_t done, uint64_t total) {
    if (v->progress && (done % 256 == 0 || done == total)) v->progress(v->ud, phase, done, total);
}

static uint64_t db_entries(MDB_txn *txn, MDB_dbi dbi) {
    MDB_stat st;
    return mdb_stat(txn, dbi, &st) == 0 ? (uint64_t)st.ms_entries : 0;
}

static int has_key(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, MDB_val *val) {
    MDB_val k = {klen, (void *)key}, d;
    int rc = mdb_get(txn, dbi, &k, val ? val : &d);
    return rc == 0;
}

static int record_exists(MDB_txn *txn, const store_dbs_t *dbs, const char *id, size_t n) {
    return n > 0 && has_key(txn, dbs->records, id, n, NULL);
}

/* "prefix 0x00 BE64 seq" into buf; its length, or 0 when it does not fit. */
static size_t seq_key(unsigned char *buf, size_t cap, const char *prefix, uint64_t seq) {
    size_t n = strlen(prefix);
    if (n + 9 > cap) return 0;
    memcpy(buf, prefix, n);
    buf[n] = 0;
    store_be64(buf + n + 1, seq);
    return n + 9;
}

/* Every record: its latest audit entry, record log entry and feed entries. */
static int check_records(MDB_txn *txn, const store_dbs_t *dbs, vctx_t *v, uint64_t *count) {
    MDB_cursor *cur;
    MDB_val k, d;
    uint64_t total = db_entries(txn, dbs->records), done = 0;
    if (mdb_cursor_open(txn, dbs->records, &cur) != 0) return SYNC_EIO;
    for (int rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        char id[128];
        snprintf(id, sizeof id, "%.*s", (int)(k.mv_size < 127 ? k.mv_size : 127), (const char *)k.mv_data);
        tick(v, "records", ++done, total);
        cJSON *rec = valcodec_decode(d.mv_data, d.mv_size);
        int64_t seq = 0;
        if (!rec || util_json_int(rec, "seq", &seq) != 0 || seq < 1) {
            problem(v, "record %s: not a record (no seq)", id);
            cJSON_Delete(rec);
            continue;
        }
        unsigned char key[FEED_KEY_MAX + 16], be[8];
        store_be64(be, (uint64_t)seq);
        MDB_val val;
        if (!has_key(txn, dbs->log, be, 8, &val)) {
            problem(v, "record %s: no audit entry at its seq %lld", id, (long long)seq);
        } else {
            cJSON *e = cJSON_ParseWithLength(val.mv_data, val.mv_size);
            const char *rid = util_json_str(e, "record_id");
            if (!rid || strcmp(rid, id) != 0)
                problem(v, "record %s: the audit entry at seq %lld is about %s", id, (long long)seq,
                        rid ? rid : "no record");
            cJSON_Delete(e);
        }
        size_t kn = seq_key(key, sizeof key, id, (uint64_t)seq);
        if (kn && !has_key(txn, dbs->record_log, key, kn, NULL))
            problem(v, "record %s: no record log entry at seq %lld", id, (long long)seq);
        const cJSON *feeds = cJSON_GetObjectItemCaseSensitive(rec, "feeds"), *f;
        cJSON_ArrayForEach(f, feeds) {
            const cJSON *fs = cJSON_GetArrayItem(f, 0), *fl = cJSON_GetArrayItem(f, 1);
            if (!cJSON_IsNumber(fs)) {
                problem(v, "record %s: feed %s without a seq", id, f->string);
                continue;
            }
            kn = seq_key(key, sizeof key, f->string, (uint64_t)fs->valuedouble);
            char flag = cJSON_IsTrue(fl) || (cJSON_IsNumber(fl) && fl->valuedouble != 0) ? 'l' : 'i';
            if (!kn || !has_key(txn, dbs->feeds, key, kn, &val)) {
                problem(v, "record %s: no entry in feed %s at seq %.0f", id, f->string, fs->valuedouble);
            } else if (val.mv_size != 1 + strlen(id) || ((const char *)val.mv_data)[0] != flag ||
                       memcmp((const char *)val.mv_data + 1, id, strlen(id)) != 0) {
                problem(v, "record %s: the entry of feed %s at seq %.0f names another record or state", id,
                        f->string, fs->valuedouble);
            }
        }
        cJSON_Delete(rec);
    }
    mdb_cursor_close(cur);
    *count = done;
    return 0;
}

/* Rows of dbi that name a record (feeds: in the value after the flag byte;
 * indexes and evidence: after the key's last 0x00): that record exists. */
static int check_refs(MDB_txn *txn, const store_dbs_t *dbs, MDB_dbi dbi, const char *what, int id_in_value,
                      vctx_t *v, uint64_t *count) {
    MDB_cursor *cur;
    MDB_val k, d;
    uint64_t total = db_entries(txn, dbi), done = 0;
    if (mdb_cursor_open(txn, dbi, &cur) != 0) return SYNC_EIO;
    for (int rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        tick(v, what, ++done, total);
        const char *id;
        size_t n;
        if (id_in_value) {
            if (d.mv_size < 2) {
                problem(v, "%s: an entry without a record id", what);
                continue;
            }
            id = (const char *)d.mv_data + 1;
            n = d.mv_size - 1;
        } else {
            /* Index entries have an empty value; the counters (8 bytes) and
             * anything else kept in the db name no record. */
            if (dbi == dbs->idx && d.mv_size != 0) continue;
            const char *kp = k.mv_data, *z = memrchr(kp, 0, k.mv_size);
            if (!z) {
                problem(v, "%s: a key without a record id", what);
                continue;
            }
            id = z + 1;
            n = k.mv_size - (size_t)(id - kp);
        }
        if (!record_exists(txn, dbs, id, n)) problem(v, "%s: names record %.*s, which does not exist", what, (int)(n < 100 ? n : 100), id);
    }
    mdb_cursor_close(cur);
    *count = done;
    return 0;
}

typedef struct blob_ref {
    char sha[65];
    uint64_t size;
} blob_ref_t;

/* The SHA-256 of a file, hex; 0 or -1. */
static int hash_file(const char *path, char hex[65]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *buf = malloc(HASH_CHUNK), out[EVP_MAX_MD_SIZE];
    unsigned int outn = 0;
    int rc = -1;
    if (md && buf && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
        ssize_t n;
        while ((n = read(fd, buf, HASH_CHUNK)) > 0)
            if (EVP_DigestUpdate(md, buf, (size_t)n) != 1) break;
        if (n == 0 && EVP_DigestFinal_ex(md, out, &outn) == 1 && outn == 32) {
            for (int i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", out[i]);
            rc = 0;
        }
    }
    free(buf);
    EVP_MD_CTX_free(md);
    close(fd);
    return rc;
}

int sync_store_verify(sync_t *s, int hash_all, sync_progress_fn progress, void *ud, char **out,
                      sync_error_t *err) {
    MDB_txn *txn = NULL;
    vctx_t v = {cJSON_CreateArray(), 0, progress, ud};
    cJSON *o = cJSON_CreateObject();
    blob_ref_t *blobs = NULL;
    size_t nblobs = 0;
    uint64_t nrec = 0, nfeed = 0, nidx = 0, nev = 0, hashed = 0;
    int audit_ok = 0;
    uint64_t entries = 0;
    char head[65] = "", why[160] = "";
    *out = NULL;
    if (!v.problems || !o) goto oom;
    int rc = store_read_begin(s->st, &txn);
    if (rc == 0) rc = audit_verify(txn, s->dbs, &audit_ok, &entries, head, why, sizeof why);
    if (rc == 0) rc = check_records(txn, s->dbs, &v, &nrec);
    if (rc == 0) rc = check_refs(txn, s->dbs, s->dbs->feeds, "feeds", 1, &v, &nfeed);
    if (rc == 0) rc = check_refs(txn, s->dbs, s->dbs->idx, "indexes", 0, &v, &nidx);
    if (rc == 0) rc = check_refs(txn, s->dbs, s->dbs->evidence, "evidence", 0, &v, &nev);
    if (rc == 0) {
        /* Blob rows, kept for the file checks after the transaction. */
        MDB_cursor *cur;
        MDB_val k, d;
        size_t cap = (size_t)db_entries(txn, s->dbs->blobs) + 1;
        if (!(blobs = calloc(cap, sizeof *blobs))) {
            store_read_end(txn);
            goto oom;
        }
        if (mdb_cursor_open(txn, s->dbs->blobs, &cur) != 0) rc = SYNC_EIO;
        for (int c = rc ? 1 : mdb_cursor_get(cur, &k, &d, MDB_FIRST); c == 0 && nblobs < cap;
             c = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
            if (k.mv_size != 64) continue; /* uploader and listing rows: sha 0x00 ... */
            cJSON *m = valcodec_decode(d.mv_data, d.mv_size);
            int64_t size = -1;
            snprintf(blobs[nblobs].sha, sizeof blobs[nblobs].sha, "%.*s", (int)(k.mv_size < 64 ? k.mv_size : 64),
                     (const char *)k.mv_data);
            if (!m || util_json_int(m, "size", &size) != 0 || size < 0)
                problem(&v, "blob %s: its row has no size", blobs[nblobs].sha);
            blobs[nblobs++].size = size < 0 ? UINT64_MAX : (uint64_t)size;
            cJSON_Delete(m);
        }
        if (!rc) mdb_cursor_close(cur);
    }
    store_read_end(txn);
    if (rc) {
        sync_fail(err, rc, NULL, "cannot read the store");
        goto fail;
    }
    /* Files: each present and of its size; hashed all (hash_all) or a sample
     * of 16 spread over the list. */
    size_t step = hash_all || nblobs <= 16 ? 1 : nblobs / 16;
    for (size_t i = 0; i < nblobs; i++) {
        char path[2048];
        const char *sha = blobs[i].sha;
        struct stat st;
        tick(&v, "blobs", i + 1, nblobs);
        snprintf(path, sizeof path, "%s/blobs/%.2s/%.2s/%s", s->data_dir, sha, sha + 2, sha);
        if (stat(path, &st) != 0) {
            problem(&v, "blob %s: its file is missing", sha);
            continue;
        }
        if (blobs[i].size != UINT64_MAX && (uint64_t)st.st_size != blobs[i].size)
            problem(&v, "blob %s: its file has %lld bytes, its row says %llu", sha, (long long)st.st_size,
                    (unsigned long long)blobs[i].size);
        if (i % step == 0) {
            char hex[65];
            hashed++;
            if (hash_file(path, hex) != 0)
                problem(&v, "blob %s: its file cannot be read", sha);
            else if (strcmp(hex, sha) != 0)
                problem(&v, "blob %s: its bytes hash to %s", sha, hex);
        }
    }
    cJSON *store = cJSON_CreateObject();
    if (!store || !cJSON_AddNumberToObject(store, "records", (double)nrec) ||
        !cJSON_AddNumberToObject(store, "feed_entries", (double)nfeed) ||
        !cJSON_AddNumberToObject(store, "index_entries", (double)nidx) ||
        !cJSON_AddNumberToObject(store, "evidence_rows", (double)nev) ||
        !cJSON_AddNumberToObject(store, "blobs", (double)nblobs) ||
        !cJSON_AddNumberToObject(store, "blobs_hashed", (double)hashed) ||
        !cJSON_AddNumberToObject(store, "problem_count", (double)v.nproblems) ||
        !cJSON_AddItemToObject(store, "problems", v.problems)) {
        cJSON_Delete(store);
        goto oom;
    }
    v.problems = NULL;
    if (!cJSON_AddItemToObject(o, "store", store)) {
        cJSON_Delete(store);
        goto oom;
    }
    if (!cJSON_AddBoolToObject(o, "ok", audit_ok && v.nproblems == 0) ||
        !cJSON_AddNumberToObject(o, "entries", (double)entries) || !cJSON_AddStringToObject(o, "head", head) ||
        (!audit_ok && !cJSON_AddStringToObject(o, "problem", why)))
        goto oom;
    free(blobs);
    *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *out ? 0 : sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
oom:
    sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
fail:
    free(blobs);
    cJSON_Delete(v.problems);
    cJSON_Delete(o);
    return err ? err->code : SYNC_ENOMEM;
}
