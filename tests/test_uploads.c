/* test_uploads.c -- evidence uploads (tus), blobs and the evidence deadline:
 * the real casesyncd over HTTP on loopback, driven with libcurl the way tus
 * clients drive it, users made with the casesync command line. */
#include "tests/harness.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")
#define PHONE(p, s, name, dev)                                                                               \
    ASSERT_MSG(std_phone(&(p), &(s), (name), (dev)) == 0, "login of %s failed", (name))

#define MiB (1024u * 1024u)
#define TUS "Tus-Resumable: 1.0.0"
#define OCTETS "Content-Type: application/offset+octet-stream"

/* ---- bytes and hashes ------------------------------------------------------------ */

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

static void digest(const char *alg, const void *data, size_t len, unsigned char *md, unsigned int *mdlen) {
    EVP_Digest(data, len, md, mdlen, strcmp(alg, "sha1") == 0 ? EVP_sha1() : EVP_sha256(), NULL);
}

static const char *sha256_hex(const void *data, size_t len) {
    unsigned char md[32];
    unsigned int n = 0;
    char *hex = hfmt("%64s", "");
    digest("sha256", data, len, md, &n);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

static const char *b64(const void *data, size_t len) {
    char *out = h_keep(malloc(len * 2 + 8), NULL);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

static const char *b64s(const char *text) {
    return b64(text, strlen(text));
}

/* "Upload-Checksum: sha256 <base64>" of data. */
static const char *checksum_header(const void *data, size_t len) {
    unsigned char md[32];
    unsigned int n = 0;
    digest("sha256", data, len, md, &n);
    return hfmt("Upload-Checksum: sha256 %s", b64(md, n));
}

/* An evidence item for a record's "evidence" list. */
static const char *ev_item(const char *id, const char *sha, size_t size) {
    return hfmt("{\"id\":\"%s\",\"sha256\":\"%s\",\"size\":%zu,\"mime\":\"video/mp4\",\"kind\":\"bodycam\","
                "\"captured_at\":\"%s\"}",
                id, sha, size, iso_now(-60000));
}

/* ---- the server's memory ----------------------------------------------------------- */

/* A field of /proc/PID/status in kB (VmHWM: peak resident, VmRSS: now), or -1. */
static long proc_kb(pid_t pid, const char *field) {
    FILE *f = fopen(hfmt("/proc/%d/status", (int)pid), "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') kb = atol(line + n + 1);
    if (f) fclose(f);
    return kb;
}

/* ---- tus calls ---------------------------------------------------------------------- */

/* POST /v1/uploads; the upload's path (pool) or NULL (printed). meta: the
 * Upload-Metadata value. */
static const char *tus_create_meta(srv_t *s, const char *token, size_t length, const char *meta,
                                   resp_t *out) {
    const char *h[] = {TUS, hfmt("Upload-Length: %zu", length), hfmt("Upload-Metadata: %s", meta), NULL};
    resp_t r = http(s, "POST", "/v1/uploads", token, NULL, h);
    if (out) *out = r;
    if (r.status != 201) {
        if (!out) fprintf(stderr, "    POST /v1/uploads -> %ld %s%s\n", r.status, r.err, r.body);
        return NULL;
    }
    const char *loc = resp_header(&r, "Location");
    if (loc && strncmp(loc, s->base, strlen(s->base)) == 0) loc += strlen(s->base);
    return loc;
}

static const char *tus_create(srv_t *s, const char *token, size_t length, const char *sha) {
    return tus_create_meta(
        s, token, length,
        hfmt("sha256 %s,filename %s,mime %s", b64s(sha), b64s("bodycam 0001.mp4"), b64s("video/mp4")), NULL);
}

/* HEAD of an upload: Upload-Offset, or -status when not 200. */
static long long tus_offset(srv_t *s, const char *token, const char *path) {
    const char *h[] = {TUS, NULL};
    resp_t r = http(s, "HEAD", path, token, NULL, h);
    if (r.status != 200) return -r.status;
    const char *o = resp_header(&r, "Upload-Offset");
    return o ? atoll(o) : -1;
}

typedef struct patch_opts {
    const char *checksum;     /* a whole "Upload-Checksum: ..." header, or NULL */
    const char *content_type; /* NULL: application/offset+octet-stream */
    size_t abort_after;       /* > 0: the client drops the connection after this many bytes */
    int chunked;              /* no Content-Length: Transfer-Encoding: chunked */
    int expect;               /* let curl send Expect: 100-continue */
} patch_opts_t;

typedef struct feed {
    const unsigned char *p;
    size_t len, pos, abort_after;
} feed_t;

static size_t feed_read(char *buf, size_t size, size_t n, void *ud) {
    feed_t *f = ud;
    size_t want = size * n;
    if (f->abort_after && f->pos >= f->abort_after) return CURL_READFUNC_ABORT;
    if (f->abort_after && want > f->abort_after - f->pos) want = f->abort_after - f->pos;
    if (want > f->len - f->pos) want = f->len - f->pos;
    memcpy(buf, f->p + f->pos, want);
    f->pos += want;
    return want;
}

static size_t keep_body(char *ptr, size_t size, size_t n, void *ud) {
    char **b = ud;
    *b = hfmt("%s%.*s", *b ? *b : "", (int)(size * n), ptr);
    return size * n;
}

/* Only the header block of the final answer (not of a 100 Continue). */
static size_t keep_headers(char *ptr, size_t size, size_t n, void *ud) {
    char **b = ud;
    if (size * n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) *b = NULL;
    return keep_body(ptr, size, n, ud);
}

/* PATCH len bytes of data at offset, streamed from a read callback as a tus
 * client does. */
static resp_t tus_patch(srv_t *s, const char *token, const char *path, size_t offset, const void *data,
                        size_t len, const patch_opts_t *o) {
    static const patch_opts_t none;
    resp_t r;
    char *body = NULL, *hdrs = NULL, errbuf[CURL_ERROR_SIZE] = "";
    feed_t f = {data, len, 0, 0};
    if (!o) o = &none;
    f.abort_after = o->abort_after;
    memset(&r, 0, sizeof r);
    snprintf(r.what, sizeof r.what, "PATCH %s @%zu+%zu", path, offset, len);
    CURL *c = curl_easy_init();
    struct curl_slist *hl = NULL;
    hl = curl_slist_append(hl, hfmt("Authorization: Bearer %s", token));
    hl = curl_slist_append(hl, TUS);
    hl = curl_slist_append(hl, hfmt("Upload-Offset: %zu", offset));
    hl = curl_slist_append(hl, o->content_type ? o->content_type : OCTETS);
    if (o->checksum) hl = curl_slist_append(hl, o->checksum);
    if (!o->expect) hl = curl_slist_append(hl, "Expect:");
    if (o->chunked) hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
    curl_easy_setopt(c, CURLOPT_URL, hfmt("%s%s", s->base, path));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PATCH");
    curl_easy_setopt(c, CURLOPT_READFUNCTION, feed_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &f);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, o->chunked ? (curl_off_t)-1 : (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, keep_headers);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hdrs);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    if (rc != CURLE_OK) snprintf(r.err, sizeof r.err, "curl error %d: %.200s; ", (int)rc, errbuf);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    r.body = body ? body : hfmt("%s", "");
    r.len = strlen(r.body);
    r.headers = hdrs ? hdrs : hfmt("%s", "");
    return r;
}

/* Uploads data whole (create, one PATCH); the answer of the PATCH. */
static resp_t tus_upload(srv_t *s, const char *token, const void *data, size_t len, const char *sha) {
    resp_t r;
    memset(&r, 0, sizeof r);
    const char *path = tus_create(s, token, len, sha);
    if (!path) {
        snprintf(r.what, sizeof r.what, "POST /v1/uploads");
        return r;
    }
    return tus_patch(s, token, path, 0, data, len, NULL);
}

/* ---- 4. a 50 MiB video over a bad network ---------------------------------------- */

TEST(upload_50mib_resumes_after_drop_and_restart) {
    srv_t s;
    START(s);
    phone_t a, b;
    PHONE(a, s, "off1", "dev-A");
    const size_t size = 50 * MiB;
    const unsigned char *video = random_bytes(size, 0x5eed0001);
    const char *sha = sha256_hex(video, size);
    const char *rid = "01JDUPLOAD00000001";

    /* The record may arrive before its bytes. */
    resp_t r = phone_push(
        &a, changes(ch_create(rid, "general", hfmt("{\"evidence\":[%s]}", ev_item("ev-1", sha, size)))));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    r = http(&s, "HEAD", hfmt("/v1/blobs/%s", sha), a.token, NULL, NULL);
    ASSERT_STATUS(r, 404);

    const char *path = tus_create(&s, a.token, size, sha);
    ASSERT(path != NULL);
    ASSERT_MSG(strncmp(path, "/v1/uploads/", 12) == 0, "Location %s", path);
    ASSERT_INT(tus_offset(&s, a.token, path), 0);
    long hwm0 = proc_kb(s.pid, "VmHWM");

    /* The connection drops 20 MiB into a PATCH of everything (curl sends
     * Expect: 100-continue here, as it does for large bodies). */
    size_t drop = 20 * MiB + 12345;
    patch_opts_t cut = {.abort_after = drop, .expect = 1};
    r = tus_patch(&s, a.token, path, 0, video, size, &cut);
    ASSERT_MSG(r.status == 0 || r.status == 100 || r.status >= 400, "a PATCH cut short got %ld", r.status);
    long long kept = tus_offset(&s, a.token, path);
    ASSERT_MSG(kept > (long long)(drop - 512 * 1024) && kept <= (long long)drop,
               "after a drop at %zu bytes the upload is at %lld", drop, kept);
    long hwm1 = proc_kb(s.pid, "VmHWM");

    /* Only its owner sees the upload. */
    PHONE(b, s, "off2", "dev-B");
    const char *tus_only[] = {TUS, NULL};
    r = http(&s, "HEAD", path, b.token, NULL, tus_only);
    ASSERT_STATUS(r, 404);
    patch_opts_t ask = {.expect = 1};
    r = tus_patch(&s, b.token, path, (size_t)kept, video + kept, MiB, &ask);
    ASSERT_STATUS(r, 404);

    /* A part file nobody owns, to be swept at start. */
    const char *stray = hfmt("%s/uploads/0123456789abcdef0123456789abcdef.part", s.dir);
    FILE *sf = fopen(stray, "w");
    ASSERT(sf != NULL);
    fputs("left over", sf);
    fclose(sf);

    ASSERT_INT(srv_stop(&s), 0);
    ASSERT_MSG(srv_restart(&s) == 0, "casesyncd did not restart");
    ASSERT_MSG(access(stray, F_OK) != 0, "the stray part file survived the start");
    ASSERT_INT(tus_offset(&s, a.token, path), kept);
    long hwm2 = proc_kb(s.pid, "VmHWM");

    /* Resume: a wrong offset is 409; then a chunk with its checksum, then the
     * rest without Content-Length (chunked). */
    r = tus_patch(&s, a.token, path, 0, video, MiB, &ask);
    ASSERT_ERROR(r, 409, "conflict");
    size_t mid = 35 * MiB;
    patch_opts_t ck = {.checksum = checksum_header(video + kept, mid - (size_t)kept)};
    r = tus_patch(&s, a.token, path, (size_t)kept, video + kept, mid - (size_t)kept, &ck);
    ASSERT_STATUS(r, 204);
    ASSERT_STR(resp_header(&r, "Upload-Offset"), hfmt("%zu", mid));
    ASSERT_STR(resp_header(&r, "Tus-Resumable"), "1.0.0");
    patch_opts_t chunked = {.chunked = 1};
    r = tus_patch(&s, a.token, path, mid, video + mid, size - mid, &chunked);
    ASSERT_STATUS(r, 204);
    ASSERT_STR(resp_header(&r, "Upload-Offset"), hfmt("%zu", size));
    long hwm3 = proc_kb(s.pid, "VmHWM");

    /* The upload became the blob. */
    r = http(&s, "HEAD", path, a.token, NULL, tus_only);
    ASSERT_STATUS(r, 404);
    r = http(&s, "HEAD", hfmt("/v1/blobs/%s", sha), a.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_STR(resp_header(&r, "Content-Length"), hfmt("%zu", size));
    r = http(&s, "GET", hfmt("/v1/blobs/%s", sha), a.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(r.len == size, "GET of the blob gave %zu bytes", r.len);
    ASSERT_STR(sha256_hex(r.body, r.len), sha);
    ASSERT_STR(resp_header(&r, "ETag"), hfmt("\"%s\"", sha));
    ASSERT_STR(resp_header(&r, "Content-Type"), "video/mp4");
    resp_free(&r);
    long hwm4 = proc_kb(s.pid, "VmHWM");
    struct stat bs;
    ASSERT_MSG(stat(hfmt("%s/blobs/%.2s/%.2s/%s", s.dir, sha, sha + 2, sha), &bs) == 0 &&
                   (size_t)bs.st_size == size,
               "the blob file is not where it belongs");

    /* A second phone holding the same bytes asks first and skips the upload. */
    r = http(&s, "HEAD", hfmt("/v1/blobs/%s", sha), b.token, NULL, NULL);
    ASSERT_STATUS(r, 200);

    printf("    a PATCH dropped after %zu bytes kept %lld\n", drop, kept);
    printf("    server peak RSS (VmHWM): before %ld kB, after the cut PATCH %ld kB (+%ld); restarted %ld kB, "
           "after 30 MiB of PATCHes and the hash %ld kB (+%ld), after a 50 MiB GET %ld kB (+%ld)\n",
           hwm0, hwm1, hwm1 - hwm0, hwm2, hwm3, hwm3 - hwm2, hwm4, hwm4 - hwm2);
    ASSERT_MSG(hwm0 > 0 && hwm2 > 0, "no VmHWM for the server");
    ASSERT_MSG(hwm1 - hwm0 < 40 * 1024 && hwm4 - hwm2 < 40 * 1024,
               "the server's memory grew with the upload: +%ld kB, +%ld kB", hwm1 - hwm0, hwm4 - hwm2);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(upload_wrong_checksum_leaves_nothing) {
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    const unsigned char *data = random_bytes(3 * MiB, 7);
    const char *real = sha256_hex(data, 3 * MiB);
    const char *claimed = sha256_hex("something else", 14);

    const char *path = tus_create(&s, a.token, 3 * MiB, claimed);
    ASSERT(path != NULL);
    resp_t r = tus_patch(&s, a.token, path, 0, data, MiB, NULL);
    ASSERT_STATUS(r, 204);
    r = tus_patch(&s, a.token, path, MiB, data + MiB, 2 * MiB, NULL);
    ASSERT_ERROR(r, 460, "checksum_mismatch");
    ASSERT_MSG(strstr(r.headers, "460 Checksum Mismatch"), "status line: %.80s", r.headers);
    ASSERT_INT(tus_offset(&s, a.token, path), -404);
    r = http(&s, "HEAD", hfmt("/v1/blobs/%s", claimed), a.token, NULL, NULL);
    ASSERT_STATUS(r, 404);
    r = http(&s, "HEAD", hfmt("/v1/blobs/%s", real), a.token, NULL, NULL);
    ASSERT_STATUS(r, 404);
    DIR *d = opendir(hfmt("%s/uploads", s.dir));
    int parts = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        parts += e->d_name[0] != '.';
    if (d) closedir(d);
    ASSERT_MSG(parts == 0, "%d files left in uploads/", parts);
    ASSERT_MSG(access(hfmt("%s/blobs/%.2s/%.2s/%s", s.dir, real, real + 2, real), F_OK) != 0,
               "the dropped bytes reached the blob store");

    /* The same bytes, declared right, are taken; a second upload of them too
     * (dropped at the end: there is one blob). */
    r = tus_upload(&s, a.token, data, 3 * MiB, real);
    ASSERT_STATUS(r, 204);
    r = tus_upload(&s, a.token, data, 3 * MiB, real);
    ASSERT_STATUS(r, 204);
    ASSERT_STR(resp_header(&r, "Upload-Offset"), hfmt("%u", 3 * MiB));
    r = http(&s, "HEAD", hfmt("/v1/blobs/%s", real), a.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
}

/* The tus contract around the happy path: discovery, versions, limits,
 * per-request checksums, termination, wrong requests. */
TEST(upload_tus_protocol_edges) {
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    const unsigned char *data = random_bytes(2 * MiB, 3);
    const char *sha = sha256_hex(data, 2 * MiB);

    /* Discovery needs no token. */
    resp_t r = http(&s, "OPTIONS", "/v1/uploads", NULL, NULL, NULL);
    ASSERT_MSG(r.status == 204 || r.status == 200, "OPTIONS -> %ld", r.status);
    ASSERT_STR(resp_header(&r, "Tus-Version"), "1.0.0");
    ASSERT_STR(resp_header(&r, "Tus-Resumable"), "1.0.0");
    ASSERT_STR(resp_header(&r, "Tus-Max-Size"), "4294967296");
    const char *ext = resp_header(&r, "Tus-Extension");
    ASSERT_MSG(ext && strstr(ext, "creation") && strstr(ext, "checksum") && strstr(ext, "termination"),
               "Tus-Extension: %s", ext ? ext : "(absent)");
    ASSERT_MSG(resp_header(&r, "Tus-Checksum-Algorithm") &&
                   strstr(resp_header(&r, "Tus-Checksum-Algorithm"), "sha256"),
               "headers: %s", r.headers);

    /* Everything else needs the token and the tus version. */
    const char *create[] = {TUS, "Upload-Length: 10", hfmt("Upload-Metadata: sha256 %s", b64s(sha)), NULL};
    r = http(&s, "POST", "/v1/uploads", NULL, NULL, create);
    ASSERT_ERROR(r, 401, "unauthenticated");
    const char *old[] = {"Tus-Resumable: 0.2.2", "Upload-Length: 10", NULL};
    r = http(&s, "POST", "/v1/uploads", a.token, NULL, old);
    ASSERT_STATUS(r, 412);
    ASSERT_STR(resp_header(&r, "Tus-Version"), "1.0.0");
    const char *no_length[] = {TUS, hfmt("Upload-Metadata: sha256 %s", b64s(sha)), NULL};
    r = http(&s, "POST", "/v1/uploads", a.token, NULL, no_length);
    ASSERT_ERROR(r, 400, "bad_request");
    const char *huge[] = {TUS, "Upload-Length: 4294967297", hfmt("Upload-Metadata: sha256 %s", b64s(sha)),
                          NULL};
    r = http(&s, "POST", "/v1/uploads", a.token, NULL, huge);
    ASSERT_ERROR(r, 413, "too_large");
    ASSERT(tus_create_meta(&s, a.token, 10, hfmt("filename %s", b64s("x.jpg")), &r) == NULL);
    ASSERT_ERROR(r, 422, "validation_failed");
    ASSERT_JSTR(resp_json(&r), "error.field", "Upload-Metadata.sha256");
    ASSERT(tus_create_meta(&s, a.token, 10, "sha256 !!notbase64", &r) == NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    ASSERT(tus_create_meta(&s, a.token, 10, hfmt("sha256 %s", b64s("abc")), &r) == NULL);
    ASSERT_ERROR(r, 422, "validation_failed");

    const char *path = tus_create(&s, a.token, 2 * MiB, sha);
    ASSERT(path != NULL);
    /* GET is a JSON view of the same state. */
    r = http(&s, "GET", path, a.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_JINT(resp_json(&r), "length", 2 * MiB);
    ASSERT_JSTR(resp_json(&r), "sha256", sha);
    ASSERT_JSTR(resp_json(&r), "filename", "bodycam 0001.mp4");

    /* Wrong type, wrong offset, too long: refused before the body is asked
     * for (Expect: 100-continue gets the answer instead of "100 Continue"). */
    patch_opts_t json = {.content_type = "Content-Type: application/json", .expect = 1};
    r = tus_patch(&s, a.token, path, 0, data, 1000, &json);
    ASSERT_ERROR(r, 415, "unsupported_media_type");
    patch_opts_t ask = {.expect = 1};
    r = tus_patch(&s, a.token, path, 5, data, 1000, &ask);
    ASSERT_ERROR(r, 409, "conflict");
    r = tus_patch(&s, a.token, path, 0, random_bytes(2 * MiB + 1, 9), 2 * MiB + 1, &ask);
    ASSERT_ERROR(r, 413, "too_large");
    /* Chunked, the excess shows only as it arrives: 413, or the connection
     * closes under a client still sending; either way nothing is kept. */
    patch_opts_t chunked = {.chunked = 1};
    r = tus_patch(&s, a.token, path, 0, random_bytes(2 * MiB + 1, 9), 2 * MiB + 1, &chunked);
    ASSERT_MSG(r.status == 413 || (r.status == 0 && r.err[0]), "a chunked body past the length got %ld %s",
               r.status, r.err);
    ASSERT_INT(tus_offset(&s, a.token, path), 0);

    /* A chunk whose checksum does not match is not kept; one that matches is
     * (sha1 too). */
    patch_opts_t bad = {.checksum = checksum_header(data + 1, MiB)};
    r = tus_patch(&s, a.token, path, 0, data, MiB, &bad);
    ASSERT_STATUS(r, 460);
    ASSERT_STR(resp_header(&r, "Tus-Resumable"), "1.0.0");
    ASSERT_INT(tus_offset(&s, a.token, path), 0);
    unsigned char md[20];
    unsigned int mdlen = 0;
    digest("sha1", data, MiB, md, &mdlen);
    patch_opts_t sha1 = {.checksum = hfmt("Upload-Checksum: sha1 %s", b64(md, mdlen))};
    r = tus_patch(&s, a.token, path, 0, data, MiB, &sha1);
    ASSERT_STATUS(r, 204);
    ASSERT_INT(tus_offset(&s, a.token, path), MiB);
    patch_opts_t md5 = {.checksum = hfmt("Upload-Checksum: md5 %s", b64(md, 16))};
    md5.expect = 1;
    r = tus_patch(&s, a.token, path, MiB, data + MiB, 10, &md5);
    ASSERT_ERROR(r, 400, "bad_request");

    /* Termination. */
    const char *tus_only[] = {TUS, NULL};
    r = http(&s, "DELETE", path, a.token, NULL, tus_only);
    ASSERT_STATUS(r, 204);
    ASSERT_INT(tus_offset(&s, a.token, path), -404);
    r = http(&s, "DELETE", path, a.token, NULL, tus_only);
    ASSERT_STATUS(r, 404);

    /* X-HTTP-Method-Override for clients behind proxies that know only POST. */
    path = tus_create(&s, a.token, 2 * MiB, sha);
    ASSERT(path != NULL);
    const char *over[] = {TUS, "X-HTTP-Method-Override: PATCH", "Upload-Offset: 0", OCTETS, NULL};
    r = http_raw(&s, "POST", path, a.token, data, 2 * MiB, over);
    ASSERT_STATUS(r, 204);
    ASSERT_STR(resp_header(&r, "Upload-Offset"), hfmt("%u", 2 * MiB));
    r = http(&s, "HEAD", hfmt("/v1/blobs/%s", sha), a.token, NULL, NULL);
    ASSERT_STATUS(r, 200);

    /* An empty file is complete at once. */
    const char *empty = sha256_hex("", 0);
    path = tus_create_meta(&s, a.token, 0, hfmt("sha256 %s", b64s(empty)), &r);
    ASSERT_STATUS(r, 201);
    r = http(&s, "HEAD", hfmt("/v1/blobs/%s", empty), a.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_STR(resp_header(&r, "Content-Length"), "0");
    ASSERT_INT(srv_stop(&s), 0);
}

/* Acknowledged bytes survive kill -9; unacknowledged ones are cut back. */
TEST(upload_acknowledged_bytes_survive_kill9) {
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    const unsigned char *data = random_bytes(4 * MiB, 11);
    const char *sha = sha256_hex(data, 4 * MiB);
    const char *path = tus_create(&s, a.token, 4 * MiB, sha);
    ASSERT(path != NULL);
    resp_t r = tus_patch(&s, a.token, path, 0, data, MiB + 7, NULL);
    ASSERT_STATUS(r, 204);
    srv_kill9(&s);
    /* As if bytes had been written past the offset but never acknowledged. */
    const char *id = path + strlen("/v1/uploads/");
    int fd = open(hfmt("%s/uploads/%s.part", s.dir, id), O_WRONLY | O_APPEND);
    ASSERT(fd >= 0);
    ASSERT(write(fd, "garbage", 7) == 7);
    close(fd);
    ASSERT_MSG(srv_restart(&s) == 0, "casesyncd did not restart");
    ASSERT_INT(tus_offset(&s, a.token, path), MiB + 7);
    r = tus_patch(&s, a.token, path, MiB + 7, data + MiB + 7, 3 * MiB - 7, NULL);
    ASSERT_STATUS(r, 204);
    r = http(&s, "HEAD", hfmt("/v1/blobs/%s", sha), a.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 5. Range reads and who may read ------------------------------------------------- */

TEST(blob_range_reads_and_scope) {
    srv_t s;
    START(s);
    phone_t a, x, o3, sup;
    PHONE(a, s, "off1", "dev-A");
    PHONE(x, s, "offx", "dev-X");
    PHONE(o3, s, "off3", "dev-3");
    PHONE(sup, s, "sup1", "dev-S");
    const size_t size = 100000;
    const unsigned char *photo = random_bytes(size, 42);
    const char *sha = sha256_hex(photo, size);
    const char *rid = "01JDRANGE000000001";
    resp_t r = phone_push(
        &a, changes(ch_create(rid, "general", hfmt("{\"evidence\":[%s]}", ev_item("ev-p", sha, size)))));
    ASSERT_STATUS(r, 200);
    r = tus_upload(&s, a.token, photo, size, sha);
    ASSERT_STATUS(r, 204);
    const char *blob = hfmt("/v1/blobs/%s", sha);

    r = http(&s, "GET", blob, a.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(r.len == size && memcmp(r.body, photo, size) == 0, "the blob's bytes differ (%zu bytes)",
               r.len);
    ASSERT_STR(resp_header(&r, "Accept-Ranges"), "bytes");
    ASSERT_STR(resp_header(&r, "ETag"), hfmt("\"%s\"", sha));

    static const struct {
        const char *range;
        size_t from, to; /* inclusive */
    } ok[] = {
        {"bytes=0-99", 0, 99},        {"bytes=99990-", 99990, 99999},
        {"bytes=-500", 99500, 99999}, {"bytes=1000-999999", 1000, 99999},
        {"bytes=-200000", 0, 99999},  {"bytes=12345-12345", 12345, 12345},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        const char *h[] = {hfmt("Range: %s", ok[i].range), NULL};
        r = http(&s, "GET", blob, a.token, NULL, h);
        ASSERT_STATUS(r, 206);
        size_t n = ok[i].to - ok[i].from + 1;
        ASSERT_STR(resp_header(&r, "Content-Range"), hfmt("bytes %zu-%zu/%zu", ok[i].from, ok[i].to, size));
        ASSERT_MSG(r.len == n && memcmp(r.body, photo + ok[i].from, n) == 0,
                   "%s: %zu bytes, not the right ones", ok[i].range, r.len);
    }
    const char *past[] = {"Range: bytes=100000-", NULL}, *zero[] = {"Range: bytes=-0", NULL};
    r = http(&s, "GET", blob, a.token, NULL, past);
    ASSERT_STATUS(r, 416);
    ASSERT_STR(resp_header(&r, "Content-Range"), "bytes */100000");
    r = http(&s, "GET", blob, a.token, NULL, zero);
    ASSERT_STATUS(r, 416);
    /* A range we do not serve (backwards, several) gets the whole blob. */
    const char *back[] = {"Range: bytes=5-4", NULL}, *multi[] = {"Range: bytes=0-1,5-6", NULL};
    r = http(&s, "GET", blob, a.token, NULL, back);
    ASSERT_STATUS(r, 200);
    ASSERT(r.len == size);
    r = http(&s, "GET", blob, a.token, NULL, multi);
    ASSERT_STATUS(r, 200);
    const char *inm[] = {hfmt("If-None-Match: \"%s\"", sha), NULL};
    r = http(&s, "GET", blob, a.token, NULL, inm);
    ASSERT_STATUS(r, 304);

    /* Scope: another unit's officer, and an officer of the unit whose grids
     * do not hold the record, may not read it nor learn that it exists (the
     * answer of an unknown hash); the supervisor may. */
    r = http(&s, "GET", blob, x.token, NULL, NULL);
    ASSERT_ERROR(r, 404, "not_found");
    r = http(&s, "HEAD", blob, x.token, NULL, NULL);
    ASSERT_STATUS(r, 404);
    r = http(&s, "GET", blob, o3.token, NULL, NULL);
    ASSERT_ERROR(r, 404, "not_found");
    const char *tail[] = {"Range: bytes=-10", NULL};
    r = http(&s, "GET", blob, sup.token, NULL, tail);
    ASSERT_STATUS(r, 206);
    ASSERT(r.len == 10 && memcmp(r.body, photo + size - 10, 10) == 0);
    r = http(&s, "GET", blob, NULL, NULL, NULL);
    ASSERT_ERROR(r, 401, "unauthenticated");
    const char *nosuch = hfmt("/v1/blobs/%s", sha256_hex("no such bytes", 13));
    r = http(&s, "GET", nosuch, a.token, NULL, NULL);
    ASSERT_ERROR(r, 404, "not_found");
    r = http(&s, "HEAD", nosuch, a.token, NULL, NULL);
    ASSERT_STATUS(r, 404);

    /* A blob no record lists: only its uploader (and an admin) reads it. */
    const unsigned char *loose = random_bytes(1000, 43);
    const char *lsha = sha256_hex(loose, 1000);
    r = tus_upload(&s, a.token, loose, 1000, lsha);
    ASSERT_STATUS(r, 204);
    r = http(&s, "GET", hfmt("/v1/blobs/%s", lsha), a.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    r = http(&s, "GET", hfmt("/v1/blobs/%s", lsha), sup.token, NULL, NULL);
    ASSERT_ERROR(r, 404, "not_found");

    /* With the default deadline (24 h) nothing is overdue yet. */
    r = phone_push(
        &a, changes(ch_update(rid, 1, NULL,
                              hfmt("{\"evidence\":[%s]}", ev_item("ev-q", sha256_hex("later", 5), 5)))));
    ASSERT_STATUS(r, 200);
    r = http(&s, "GET", "/v1/evidence/missing", sup.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "items"), 0);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 6. a lost phone's evidence stays readable ---------------------------------------- */

TEST(blob_readable_after_device_revoked_with_wipe) {
    srv_t s;
    START(s);
    phone_t a, sup;
    PHONE(a, s, "off1", "dev-A");
    PHONE(sup, s, "sup1", "dev-S");
    const unsigned char *photo = random_bytes(5000, 5);
    const char *sha = sha256_hex(photo, 5000);
    resp_t r = phone_push(&a, changes(ch_create("01JDREVOKE00000001", "general",
                                                hfmt("{\"evidence\":[%s]}", ev_item("ev-r", sha, 5000)))));
    ASSERT_STATUS(r, 200);
    r = tus_upload(&s, a.token, photo, 5000, sha);
    ASSERT_STATUS(r, 204);
    const char *path = tus_create(&s, a.token, 5000, sha256_hex("other", 5));
    ASSERT(path != NULL);

    r = http(&s, "POST", "/v1/devices/dev-A/revoke", sup.token, "{\"wipe\":true}", NULL);
    ASSERT_STATUS(r, 200);
    const char *tus_only[] = {TUS, NULL};
    r = http(&s, "HEAD", path, a.token, NULL, tus_only);
    ASSERT_STATUS(r, 401);
    r = http(&s, "GET", hfmt("/v1/blobs/%s", sha), a.token, NULL, NULL);
    ASSERT_ERROR(r, 401, "device_revoked");
    ASSERT_JBOOL(resp_json(&r), "wipe", 1);
    r = http(&s, "GET", hfmt("/v1/blobs/%s", sha), sup.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(r.len == 5000 && memcmp(r.body, photo, 5000) == 0, "the evidence changed");
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 7. the evidence deadline ------------------------------------------------------------ */

TEST(evidence_missing_after_deadline) {
    srv_t s;
    ASSERT_MSG(srv_start_config(&s, "{\"evidence_deadline_hours\":0}") == 0,
               "casesyncd --config did not start");
    phone_t a, b, x, sup, leg, adm;
    PHONE(a, s, "off1", "dev-A");
    PHONE(b, s, "off2", "dev-B");
    PHONE(x, s, "offx", "dev-X");
    PHONE(sup, s, "sup1", "dev-S");
    PHONE(leg, s, "leg1", "dev-L");
    PHONE(adm, s, "admin", "dev-ADM");
    const unsigned char *one = random_bytes(70000, 1), *two = random_bytes(90000, 2);
    const char *sha1 = sha256_hex(one, 70000), *sha2 = sha256_hex(two, 90000);
    const char *rid = "01JDMISSING0000001";
    resp_t r = phone_push(&a, changes(ch_create(rid, "general",
                                                hfmt("{\"evidence\":[%s,%s]}", ev_item("ev-1", sha1, 70000),
                                                     ev_item("ev-2", sha2, 90000)))));
    ASSERT_STATUS(r, 200);

    /* Due at once (deadline 0 h): listed for the unit, the admin and the
     * pushing device's user, nobody else. */
    r = http(&s, "GET", "/v1/evidence/missing", sup.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    cJSON *items = jget(resp_json(&r), "items");
    ASSERT_INT(cJSON_GetArraySize(items), 2);
    cJSON *it = jarr_find(items, "sha256", sha1);
    ASSERT(it != NULL);
    ASSERT_JSTR(it, "record_id", rid);
    ASSERT_JSTR(it, "item_id", "ev-1");
    ASSERT_JSTR(it, "device_id", "dev-A");
    ASSERT_JHAS(it, "pushed_at");
    /* Due from capture (a minute before the push), not from the push. */
    ASSERT_MSG(jstr(it, "due_at") && strcmp(jstr(it, "due_at"), jstr(it, "pushed_at")) < 0,
               "due_at %s is not before pushed_at %s", jstr(it, "due_at"), jstr(it, "pushed_at"));
    ASSERT(jarr_find(items, "sha256", sha2) != NULL);
    static const struct { int who, n; } seen[] = {{0, 2}, {1, 0}, {2, 0}, {3, 2}, {4, 2}};
    phone_t *who[] = {&a, &b, &x, &leg, &adm};
    for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++) {
        r = http(&s, "GET", "/v1/evidence/missing", who[seen[i].who]->token, NULL, NULL);
        ASSERT_STATUS(r, 200);
        ASSERT_MSG(jlen(resp_json(&r), "items") == seen[i].n, "%s sees %d missing items, not %d: %s",
                   who[seen[i].who]->user, jlen(resp_json(&r), "items"), seen[i].n, r.body);
    }
    r = http(&s, "GET", "/v1/devices", sup.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_JINT(jarr_find(resp_json(&r), "device_id", "dev-A"), "evidence_missing", 2);
    ASSERT_JINT(jarr_find(resp_json(&r), "device_id", "dev-B"), "evidence_missing", 0);
    r = http(&s, "GET", "/v1/stats", sup.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_JINT(resp_json(&r), "evidence_missing", 2);

    /* The bytes arrive: the item leaves the list and the count. */
    r = tus_upload(&s, a.token, one, 70000, sha1);
    ASSERT_STATUS(r, 204);
    r = http(&s, "GET", "/v1/evidence/missing", sup.token, NULL, NULL);
    ASSERT_INT(jlen(resp_json(&r), "items"), 1);
    ASSERT_JSTR(resp_json(&r), "items[0].sha256", sha2);
    r = http(&s, "GET", "/v1/devices", sup.token, NULL, NULL);
    ASSERT_JINT(jarr_find(resp_json(&r), "device_id", "dev-A"), "evidence_missing", 1);
    r = tus_upload(&s, a.token, two, 90000, sha2);
    ASSERT_STATUS(r, 204);
    r = http(&s, "GET", "/v1/evidence/missing", a.token, NULL, NULL);
    ASSERT_INT(jlen(resp_json(&r), "items"), 0);
    r = http(&s, "GET", "/v1/devices", sup.token, NULL, NULL);
    ASSERT_JINT(jarr_find(resp_json(&r), "device_id", "dev-A"), "evidence_missing", 0);
    r = http(&s, "GET", "/v1/stats", sup.token, NULL, NULL);
    ASSERT_JINT(resp_json(&r), "evidence_missing", 0);
    ASSERT_INT(srv_stop(&s), 0);
}

/* The end of an upload fails (the blob store cannot take the file): the bytes
 * stay, and the next HEAD makes the blob. */
TEST(upload_end_failure_is_finished_by_head) {
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    const unsigned char *data = random_bytes(300000, 21);
    const char *sha = sha256_hex(data, 300000);
    const char *path = tus_create(&s, a.token, 300000, sha);
    ASSERT(path != NULL);
    /* A file where the blob's directory belongs. */
    ASSERT(mkdir(hfmt("%s/blobs", s.dir), 0700) == 0);
    const char *block = hfmt("%s/blobs/%.2s", s.dir, sha);
    FILE *f = fopen(block, "w");
    ASSERT(f != NULL);
    fclose(f);
    resp_t r = tus_patch(&s, a.token, path, 0, data, 300000, NULL);
    ASSERT_STATUS(r, 500);
    r = http(&s, "HEAD", hfmt("/v1/blobs/%s", sha), a.token, NULL, NULL);
    ASSERT_STATUS(r, 404);
    ASSERT(unlink(block) == 0);
    ASSERT_INT(tus_offset(&s, a.token, path), 300000);
    r = http(&s, "HEAD", hfmt("/v1/blobs/%s", sha), a.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(tus_offset(&s, a.token, path), -404);
    ASSERT_INT(srv_stop(&s), 0);
}
