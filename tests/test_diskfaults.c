/* test_diskfaults.c -- the disk fails under the real casesyncd: writes and
 * syncs of the store and of evidence files answer EIO or ENOSPC (sync/fault.h,
 * armed through DATA/.fault). Every refused request is a 503 the phone can
 * retry, nothing unacknowledged is kept, nothing is half-applied, and the
 * server carries on when the disk comes back. */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/harness.h"
#include "tests/test.h"

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")
#define PHONE(p, s, name, dev)                                                                               \
    ASSERT_MSG(std_phone(&(p), &(s), (name), (dev)) == 0, "login of %s failed", (name))
#define TUS "Tus-Resumable: 1.0.0"
#define OCTETS "Content-Type: application/offset+octet-stream"

/* ---- faults ------------------------------------------------------------------ */

/* Arms the rules (fault.h syntax) in DATA/.fault. A fresh comment line makes
 * every call a new text, so equal rules are armed again with full counts. */
static int fault_set(const srv_t *s, const char *rules) {
    static int gen;
    const char *tmp = hfmt("%s/.fault.tmp", s->dir);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "# arm %d\n%s\n", ++gen, rules);
    if (fclose(f) != 0) return -1;
    return rename(tmp, hfmt("%s/.fault", s->dir));
}

/* The disk comes back. */
static void fault_clear(const srv_t *s) {
    unlink(hfmt("%s/.fault", s->dir));
}

/* How many injected faults DATA/.fault.log lists whose line starts with what. */
static int faults_fired(const srv_t *s, const char *what) {
    FILE *f = fopen(hfmt("%s/.fault.log", s->dir), "r");
    char line[200];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strncmp(line, what, strlen(what)) == 0;
    if (f) fclose(f);
    return n;
}

/* The value of the first /metrics line that starts with name, or -1. */
static long long metric(srv_t *s, const char *name) {
    resp_t r = metrics_scrape(s);
    const char *p = r.status == 200 ? r.body : NULL;
    size_t n = strlen(name);
    while (p && *p) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ') return atoll(p + n + 1);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return -1;
}

#define COMMIT_ERRORS "casesync_store_errors_total{where=\"commit\"}"
#define EVIDENCE_ERRORS "casesync_store_errors_total{where=\"evidence\"}"

/* Audit entries so far (GET /v1/audit/verify), or -1 when the chain is not ok. */
static long long audit_entries(phone_t *p) {
    resp_t r = phone_get(p, "/v1/audit/verify");
    if (r.status != 200 || jbool(resp_json(&r), "ok") != 1) return -1;
    return jint(r.json, "entries");
}

/* A 503 the phone can act on: code unavailable and Retry-After secs. */
#define ASSERT_RETRYABLE(r, secs)                                                                            \
    do {                                                                                                     \
        ASSERT_ERROR(r, 503, "unavailable");                                                                 \
        const char *ra_ = resp_header(&(r), "Retry-After");                                                  \
        ASSERT_MSG(ra_ &&atoi(ra_) == (secs), "%s: Retry-After %s, expected %d", (r).what,                   \
                   ra_ ? ra_ : "(absent)", (secs));                                                          \
    } while (0)

/* Stops the server cleanly and checks the store and the audit chain offline. */
#define STOP_AND_VERIFY(s)                                                                                   \
    do {                                                                                                     \
        fault_clear(&(s));                                                                                   \
        ASSERT_INT(srv_stop(&(s)), 0);                                                                       \
        cli_res_t v_ = cli((s).dir, NULL, "verify");                                                         \
        ASSERT_MSG(v_.rc == 0, "casesync verify exited %d: %s%s", v_.rc, v_.out, v_.err);                    \
    } while (0)

/* ---- pushes --------------------------------------------------------------------- */

/* An fsync of the store fails during a push: 503, nothing of the changeset in
 * the case, its history, a pull or the audit chain; the same changeset sent
 * again once the disk is back is applied, exactly once. */
TEST(diskfault_push_fsync_eio_is_503_and_applies_once_after) {
    srv_t s;
    START(s);
    phone_t a, sup;
    PHONE(a, s, "off1", "dev-A");
    PHONE(sup, s, "sup1", "dev-S");
    resp_t r = phone_push(&a, changes(ch_create("01JDDISK0000000001", "general", NULL)));
    ASSERT_STATUS(r, 200);
    long long entries = audit_entries(&sup);
    ASSERT(entries > 0);

    const char *cs =
        changes(ch_create("01JDDISK0000000002", "general", NULL),
                ch_update("01JDDISK0000000001", 1, "{\"description\":\"typed on a bad disk\"}", NULL));
    long long seq = a.seq;
    ASSERT(fault_set(&s, "sync store EIO 1") == 0);
    r = phone_push(&a, cs);
    ASSERT_RETRYABLE(r, 30);
    ASSERT_INT(faults_fired(&s, "sync store EIO"), 1);
    ASSERT_INT(a.seq, seq);

    /* Nothing of it anywhere. */
    r = phone_get(&a, "/v1/cases/01JDDISK0000000002");
    ASSERT_STATUS(r, 404);
    r = phone_get(&a, "/v1/cases/01JDDISK0000000001");
    ASSERT_STATUS(r, 200);
    ASSERT_JINT(resp_json(&r), "version", 1);
    r = phone_get(&a, "/v1/cases/01JDDISK0000000001/history");
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "items"), 1);
    cJSON *items = phone_pull_all(&sup);
    ASSERT(items != NULL);
    ASSERT_INT(pull_count(items, "01JDDISK0000000002"), 0);
    ASSERT_JINT(pull_item(items, "01JDDISK0000000001"), "version", 1);
    ASSERT_INT(audit_entries(&sup), entries);

    /* The disk is back: the same seq and body go through, once. */
    fault_clear(&s);
    r = phone_push(&a, cs);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(resp_header(&r, "Idempotent-Replay") == NULL, "the retry was taken for a replay: %s",
               r.headers);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    ASSERT_JSTR(r.json, "results[1].status", "applied");
    ASSERT_JINT(r.json, "results[1].version", 2);
    a.seq = seq;
    r = phone_push(&a, cs);
    ASSERT_STATUS(r, 200);
    ASSERT_STR(resp_header(&r, "Idempotent-Replay"), "true");
    r = phone_get(&a, "/v1/cases/01JDDISK0000000001/history");
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "items"), 2);
    r = phone_get(&a, "/v1/cases/01JDDISK0000000002/history");
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "items"), 1);
    ASSERT_INT(audit_entries(&sup), entries + 2);
    ASSERT_INT(metric(&s, COMMIT_ERRORS), 1);
    STOP_AND_VERIFY(s);
}

typedef struct pusher {
    phone_t phone;
    const char *cs;
    long status;
    char code[40];
} pusher_t;

static void *push_thread(void *arg) {
    pusher_t *p = arg;
    resp_t r = phone_push(&p->phone, p->cs);
    const char *code = r.status == 200 ? "" : resp_error_code(&r);
    p->status = r.status;
    snprintf(p->code, sizeof p->code, "%s", code ? code : "?");
    return NULL;
}

#define PUSHERS 6

/* Runs every pusher at once; 0 when every thread ran. */
static int push_all(pusher_t *p) {
    pthread_t t[PUSHERS];
    int rc = 0;
    for (int i = 0; i < PUSHERS; i++)
        if (pthread_create(&t[i], NULL, push_thread, &p[i]) != 0) return -1;
    for (int i = 0; i < PUSHERS; i++)
        rc |= pthread_join(t[i], NULL);
    return rc;
}

/* The disk is full for a while (every write of the store's pages fails with
 * ENOSPC) while six phones push at once, so group commits of several
 * changesets are refused whole: every phone gets a 503, reads go on, and once
 * there is room again every changeset is applied once. */
TEST(diskfault_store_full_disk_refuses_group_commits_whole) {
    srv_t s;
    START(s);
    pusher_t p[PUSHERS];
    phone_t sup;
    memset(p, 0, sizeof p);
    ASSERT(std_user(&s, "off1") != NULL && std_user(&s, "off2") != NULL);
    for (int i = 0; i < PUSHERS; i++) {
        ASSERT(phone_login(&p[i].phone, &s, "off1", std_pass("off1"), hfmt("dev-%d", i)) == 0);
        p[i].cs = changes(ch_create(hfmt("01JDFULLDISK%06d", i), "general", NULL),
                          ch_create(hfmt("01JDFULLDISK%06d", 100 + i), "simple", NULL));
    }
    PHONE(sup, s, "sup1", "dev-S");
    long long entries = audit_entries(&sup);
    ASSERT(entries >= 0);
    /* The first case query of a store builds its indexes (a write): before. */
    resp_t r = phone_get(&sup, "/v1/cases?limit=10");
    ASSERT_STATUS(r, 200);

    /* The scraper's admin (metrics_scrape) is made by the CLI: before the faults. */
    ASSERT(metric(&s, COMMIT_ERRORS) >= 0);
    ASSERT(fault_set(&s, "write store ENOSPC *") == 0);
    ASSERT(push_all(p) == 0);
    for (int i = 0; i < PUSHERS; i++)
        ASSERT_MSG(p[i].status == 503 && strcmp(p[i].code, "unavailable") == 0,
                   "phone %d pushed on a full disk: %ld %s", i, p[i].status, p[i].code);
    ASSERT(faults_fired(&s, "write store ENOSPC") >= 1);
    long long refused = metric(&s, COMMIT_ERRORS);
    ASSERT_MSG(refused >= 1 && refused <= PUSHERS, "%lld refused commits for %d pushes", refused, PUSHERS);
    /* Reads need no write: they go on. A login writes: it is refused too. */
    r = phone_get(&sup, "/v1/cases?limit=10");
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "items"), 0);
    r = phone_pull(&sup, 0, 0);
    ASSERT_STATUS(r, 200);
    r = login_resp(&s, "off2", std_pass("off2"), "dev-late");
    ASSERT_RETRYABLE(r, 30);
    ASSERT_INT(audit_entries(&sup), entries);

    fault_clear(&s);
    ASSERT(push_all(p) == 0);
    for (int i = 0; i < PUSHERS; i++)
        ASSERT_MSG(p[i].status == 200, "phone %d after the disk came back: %ld %s", i, p[i].status,
                   p[i].code);
    for (int i = 0; i < PUSHERS; i++) {
        r = phone_get(&sup, hfmt("/v1/cases/01JDFULLDISK%06d/history", 100 + i));
        ASSERT_STATUS(r, 200);
        ASSERT_INT(jlen(resp_json(&r), "items"), 1);
    }
    ASSERT_INT(audit_entries(&sup), entries + 2 * PUSHERS);
    r = login_resp(&s, "off2", std_pass("off2"), "dev-late");
    ASSERT_STATUS(r, 200);
    STOP_AND_VERIFY(s);
}

/* The write of LMDB's meta page fails: LMDB then refuses every transaction,
 * reads too, until the environment is opened again. The server does that by
 * itself: the push is a 503, and the next requests find the store working. */
TEST(diskfault_meta_page_eio_reopens_the_store) {
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    /* The command line opens the store too, with its own fault counts: users first. */
    ASSERT(std_user(&s, "off2") != NULL);
    resp_t r = phone_push(&a, changes(ch_create("01JDMETA0000000001", "general", NULL)));
    ASSERT_STATUS(r, 200);
    /* The scraper's admin (metrics_scrape) is made by the CLI: before the faults. */
    ASSERT(metric(&s, COMMIT_ERRORS) >= 0);
    const char *cs = changes(ch_create("01JDMETA0000000002", "general", NULL));
    ASSERT(fault_set(&s, "write store-meta EIO 1") == 0);
    r = phone_push(&a, cs);
    ASSERT_RETRYABLE(r, 30);
    ASSERT_INT(faults_fired(&s, "write store-meta EIO"), 1);

    /* Reads and writes work again, without a restart. */
    for (int i = 0; i < 3; i++) {
        r = phone_get(&a, "/v1/cases/01JDMETA0000000001");
        ASSERT_STATUS(r, 200);
    }
    r = phone_get(&a, "/v1/cases/01JDMETA0000000002");
    ASSERT_STATUS(r, 404);
    r = phone_push(&a, cs);
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    r = phone_get(&a, "/v1/cases/01JDMETA0000000002/history");
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "items"), 1);

    /* Again, with a changeset in flight on another phone: both come back. */
    phone_t b;
    ASSERT(phone_login(&b, &s, "off2", std_pass("off2"), "dev-B") == 0);
    ASSERT(fault_set(&s, "write store-meta EIO 1") == 0);
    r = phone_push(&b, changes(ch_create("01JDMETA0000000003", "general", NULL)));
    ASSERT_RETRYABLE(r, 30);
    r = phone_push(&b, changes(ch_create("01JDMETA0000000003", "general", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_INT(metric(&s, COMMIT_ERRORS), 2);
    STOP_AND_VERIFY(s);
}

/* ---- uploads ---------------------------------------------------------------------- */

/* n pseudo-random bytes (xorshift, seeded), pool-owned. */
static unsigned char *random_bytes(size_t n, unsigned long long seed) {
    unsigned char *p = h_keep(malloc(n ? n : 1), NULL);
    unsigned long long x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)(x >> 24);
    }
    return p;
}

static const char *hex_of(const unsigned char *md, unsigned int n) {
    char *hex = hfmt("%*s", (int)(2 * n), "");
    for (unsigned int i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

static const char *sha256_hex(const void *data, size_t len) {
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    return hex_of(md, n);
}

/* SHA-256 of a file on disk, or "" when it cannot be read. */
static const char *file_sha256(const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned char buf[65536], md[32];
    unsigned int n = 0;
    size_t got;
    if (!f) return "";
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        EVP_DigestUpdate(c, buf, got);
    EVP_DigestFinal_ex(c, md, &n);
    EVP_MD_CTX_free(c);
    fclose(f);
    return hex_of(md, n);
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* POST /v1/uploads for len bytes hashing to sha; the upload's path or NULL. */
static const char *tus_create(srv_t *s, const char *token, size_t len, const char *sha) {
    unsigned char b64[100];
    EVP_EncodeBlock(b64, (const unsigned char *)sha, 64);
    const char *h[] = {TUS, hfmt("Upload-Length: %zu", len), hfmt("Upload-Metadata: sha256 %s", b64), NULL};
    resp_t r = http(s, "POST", "/v1/uploads", token, NULL, h);
    const char *loc = r.status == 201 ? resp_header(&r, "Location") : NULL;
    if (!loc) fprintf(stderr, "    POST /v1/uploads -> %ld %s%s\n", r.status, r.err, r.body);
    if (loc && strncmp(loc, s->base, strlen(s->base)) == 0) loc += strlen(s->base);
    return loc;
}

static resp_t tus_patch(srv_t *s, const char *token, const char *path, size_t offset, const void *data,
                        size_t len) {
    const char *h[] = {TUS, OCTETS, hfmt("Upload-Offset: %zu", offset), NULL};
    return http_raw(s, "PATCH", path, token, data, len, h);
}

/* HEAD of an upload: its Upload-Offset, or -status when not 200. */
static long long tus_offset(srv_t *s, const char *token, const char *path) {
    const char *h[] = {TUS, NULL};
    resp_t r = http(s, "HEAD", path, token, NULL, h);
    if (r.status != 200) return -r.status;
    const char *o = resp_header(&r, "Upload-Offset");
    return o ? atoll(o) : -1;
}

static const char *part_of(const srv_t *s, const char *path) {
    const char *id = strrchr(path, '/');
    return hfmt("%s/uploads/%s.part", s->dir, id ? id + 1 : path);
}

static const char *blob_file(const srv_t *s, const char *sha) {
    return hfmt("%s/blobs/%.2s/%.2s/%s", s->dir, sha, sha + 2, sha);
}

#define UPLOAD_LEN 1000000
#define FIRST_PART 300000

/* A PATCH meets a failing disk (a write fails with EIO, an fdatasync with
 * EIO, a write with ENOSPC, the store's commit of the new offset with EIO):
 * 503, HEAD answers the offset that was durable before it, the part file
 * holds no byte past it, and the upload resumes there and ends with the
 * right SHA-256. */
TEST(diskfault_upload_patch_faults_keep_the_durable_offset) {
    static const struct {
        const char *rule, *fired;
        int retry_after;
    } cases[] = {
        {"write upload EIO 1 after 1", "write upload EIO", 30},
        {"sync upload EIO 1", "sync upload EIO", 30},
        {"write upload ENOSPC 1 after 2", "write upload ENOSPC", 300},
        {"sync store EIO 1", "sync store EIO", 30},
    };
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    long long disk_errors = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const unsigned char *data = random_bytes(UPLOAD_LEN, 41 + 2 * c);
        const char *sha = sha256_hex(data, UPLOAD_LEN);
        const char *path = tus_create(&s, a.token, UPLOAD_LEN, sha);
        ASSERT(path != NULL);
        resp_t r = tus_patch(&s, a.token, path, 0, data, FIRST_PART);
        ASSERT_STATUS(r, 204);

        ASSERT(fault_set(&s, cases[c].rule) == 0);
        r = tus_patch(&s, a.token, path, FIRST_PART, data + FIRST_PART, UPLOAD_LEN - FIRST_PART);
        ASSERT_MSG(r.status == 503, "%s: PATCH -> %ld %s%s", cases[c].rule, r.status, r.err, r.body);
        ASSERT_RETRYABLE(r, cases[c].retry_after);
        ASSERT_MSG(faults_fired(&s, cases[c].fired) >= 1, "%s never fired", cases[c].rule);
        fault_clear(&s);
        if (strstr(cases[c].rule, "upload")) disk_errors++;

        ASSERT_INT(tus_offset(&s, a.token, path), FIRST_PART);
        ASSERT_INT(file_size(part_of(&s, path)), FIRST_PART);
        r = tus_patch(&s, a.token, path, FIRST_PART, data + FIRST_PART, UPLOAD_LEN - FIRST_PART);
        ASSERT_STATUS(r, 204);
        ASSERT_STR(resp_header(&r, "Upload-Offset"), hfmt("%d", UPLOAD_LEN));
        r = http(&s, "HEAD", hfmt("/v1/blobs/%s", sha), a.token, NULL, NULL);
        ASSERT_STATUS(r, 200);
        ASSERT_STR(file_sha256(blob_file(&s, sha)), sha);
    }
    ASSERT_INT(metric(&s, EVIDENCE_ERRORS), disk_errors);
    ASSERT_INT(metric(&s, COMMIT_ERRORS), 1);
    STOP_AND_VERIFY(s);
}

/* The end of an upload meets a failing disk: the rename into the blob store
 * fails, or the rename goes through and the directory's fsync fails, or the
 * store refuses to record the blob. The PATCH is a 503; every byte was
 * acknowledged, so HEAD makes the blob from what is on disk and answers the
 * full offset; the blob has the right bytes. */
TEST(diskfault_upload_end_faults_are_finished_by_head) {
    static const char *const rules[] = {
        "rename blob EIO 1", "sync blob EIO 1",
        "sync store EIO 1 after 1", /* the offset's commit goes through, the blob's does not */
    };
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    for (size_t c = 0; c < sizeof rules / sizeof rules[0]; c++) {
        const unsigned char *data = random_bytes(UPLOAD_LEN, 61 + 2 * c);
        const char *sha = sha256_hex(data, UPLOAD_LEN);
        const char *path = tus_create(&s, a.token, UPLOAD_LEN, sha);
        ASSERT(path != NULL);
        ASSERT(fault_set(&s, rules[c]) == 0);
        resp_t r = tus_patch(&s, a.token, path, 0, data, UPLOAD_LEN);
        ASSERT_MSG(r.status == 503, "%s: PATCH -> %ld %s%s", rules[c], r.status, r.err, r.body);
        ASSERT_RETRYABLE(r, 30);
        fault_clear(&s);
        r = http(&s, "HEAD", hfmt("/v1/blobs/%s", sha), a.token, NULL, NULL);
        ASSERT_STATUS(r, 404);

        ASSERT_INT(tus_offset(&s, a.token, path), UPLOAD_LEN);
        r = http(&s, "HEAD", hfmt("/v1/blobs/%s", sha), a.token, NULL, NULL);
        ASSERT_STATUS(r, 200);
        ASSERT_STR(file_sha256(blob_file(&s, sha)), sha);
        ASSERT_INT(tus_offset(&s, a.token, path), -404);
        ASSERT_INT(file_size(part_of(&s, path)), -1);
    }
    ASSERT_INT(faults_fired(&s, "rename blob EIO"), 1);
    ASSERT_INT(faults_fired(&s, "sync blob EIO"), 1);
    ASSERT_INT(faults_fired(&s, "sync store EIO"), 1);
    STOP_AND_VERIFY(s);
}
