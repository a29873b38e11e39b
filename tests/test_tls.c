/* test_tls.c -- casesyncd behind Debian's nginx running deploy/nginx.conf: a
 * phone syncs over HTTPS (login, push, gzip, long poll, a tus upload), nginx's
 * own answers follow the protocol, and the login failure limit keys on the
 * real client address: from X-Forwarded-For only when nginx is the peer. */
#include "tests/proxy.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/evp.h>

/* The engine's default: this many failed logins per client and username in
 * 15 minutes, then 429. */
#define LOGIN_MAX_FAILURES 5
#define LOGIN_WINDOW_S 900
/* deploy/nginx.conf's client_max_body_size outside /v1/uploads. */
#define PROXY_MAX_BODY (16u << 20)
#define HSTS "max-age=63072000"

/* Runs body between px_start() and px_cleanup(), so nginx and casesyncd stop
 * on every path: an ASSERT returns from body only. */
#define PROXY_TEST(name)                                                                                     \
    static void name##_body(px_t *px);                                                                       \
    TEST(name) {                                                                                             \
        px_t px;                                                                                             \
        if (px_start(&px) == 0)                                                                              \
            name##_body(&px);                                                                                \
        else                                                                                                 \
            test_failf(__FILE__, __LINE__, "nginx and casesyncd did not start");                             \
        px_cleanup(&px);                                                                                     \
    }                                                                                                        \
    static void name##_body(px_t *px)

/* A phone that talks to casesyncd through nginx. */
typedef struct tphone {
    px_client_t c;
    const char *device;
    const char *token;
    long long seq;
    const char *cursor;
} tphone_t;

static const char *login_json(const char *user, const char *pass, const char *device) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "username", user);
    cJSON_AddStringToObject(b, "password", pass);
    cJSON_AddStringToObject(b, "device_id", device);
    char *s = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    return h_keep(s, NULL);
}

/* POST /v1/auth/login from c, with a forged X-Forwarded-For when xff is set. */
static resp_t try_login(const px_client_t *c, const char *user, const char *pass, const char *xff) {
    const char *hdr[] = {xff ? hfmt("X-Forwarded-For: %s", xff) : NULL, NULL};
    /* One device per user: a device id belongs to the first user who logs in with it. */
    const char *body = login_json(user, pass, hfmt("dev-limit-%s", user));
    return px_http(c, "POST", "/v1/auth/login", NULL, body, strlen(body), hdr);
}

/* Logs the phone in; 0 or -1 (printed). */
static int tphone_login(tphone_t *p, const char *user, const char *device) {
    const char *body = login_json(user, std_pass(user), device);
    resp_t r = px_http(&p->c, "POST", "/v1/auth/login", NULL, body, strlen(body), NULL);
    const char *tok = jstr(resp_json(&r), "token");
    if (r.status != 200 || !tok) {
        fprintf(stderr, "    login %s -> %ld %s%.500s\n", user, r.status, r.err, r.body);
        return -1;
    }
    p->device = device;
    p->token = hfmt("%s", tok);
    p->seq = jint(r.json, "next_changeset_seq");
    return 0;
}

/* Pushes changes_json as the phone's next changeset, gzip-compressed when gz. */
static resp_t tphone_push(tphone_t *p, const char *changes_json, int gz) {
    const char *body = push_body(p->device, p->seq, changes_json);
    resp_t r;
    if (gz) {
        size_t n = 0;
        void *z = gz_compress(body, strlen(body), &n);
        const char *hdr[] = {"Content-Encoding: gzip", NULL};
        r = px_http(&p->c, "POST", "/v1/sync/push", p->token, z, n, hdr);
    } else {
        r = px_http(&p->c, "POST", "/v1/sync/push", p->token, body, strlen(body), NULL);
    }
    if (r.status == 200) p->seq++;
    return r;
}

/* GET /v1/sync/pull from the phone's cursor; a 200 moves the cursor on. */
static resp_t tphone_pull(tphone_t *p, int wait, const char *const *headers) {
    const char *path = "/v1/sync/pull?limit=100";
    if (p->cursor) {
        char *esc = curl_easy_escape(NULL, p->cursor, 0);
        path = hfmt("%s&cursor=%s", path, esc ? esc : "");
        curl_free(esc);
    }
    if (wait > 0) path = hfmt("%s&wait=%d", path, wait);
    resp_t r = px_http(&p->c, "GET", path, p->token, NULL, 0, headers);
    if (r.status == 200 && resp_json(&r) && jstr(r.json, "cursor"))
        p->cursor = hfmt("%s", jstr(r.json, "cursor"));
    return r;
}

static int http2_used(const resp_t *r) {
    return r->headers && strncmp(r->headers, "HTTP/2 ", 7) == 0;
}

static const char *sha256_hex(const void *data, size_t len) {
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    char *hex = hfmt("%064d", 0);
    for (unsigned i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

static const char *b64(const char *s) {
    size_t n = strlen(s);
    char *out = hfmt("%*s", (int)(4 * ((n + 2) / 3)), "");
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

/* ---- a long poll in a thread ------------------------------------------------ */

typedef struct poll_job {
    tphone_t *phone;
    int wait;
    resp_t r;
    double done_at;
} poll_job_t;

static void *poll_main(void *arg) {
    poll_job_t *j = arg;
    j->r = tphone_pull(j->phone, j->wait, NULL);
    j->done_at = now_s();
    return NULL;
}

/* ---- tus through the proxy ---------------------------------------------------- */

/* The path of a tus Location: relative, or on the https origin of the proxy
 * (an http:// or casesyncd-port URL would send the phone around nginx). */
static const char *upload_path(const px_t *px, const char *loc) {
    if (!loc) return NULL;
    if (loc[0] == '/') return loc;
    size_t n = strlen(px->base);
    if (strncmp(loc, px->base, n) == 0 && loc[n] == '/') return loc + n;
    return NULL;
}

/* Evidence of size bytes for record_id: the record references it, then tus
 * creation, a first PATCH of 1 MiB, HEAD, and the rest in one PATCH (more than
 * the proxy's 16 MiB limit for other bodies, when the server takes that
 * much), then the blob is there. */
static void tus_upload(px_t *px, tphone_t *ph, const char *record_id, long long max_size) {
    size_t size = (size_t)PROXY_MAX_BODY + (1u << 20) + 4096;
    if (max_size > 0 && (long long)size > max_size) {
        fprintf(stderr, "    note: Tus-Max-Size %lld: the upload stays under it, not over 16 MiB\n",
                max_size);
        size = (size_t)max_size;
    }
    unsigned char *bytes = h_keep(malloc(size), NULL);
    ASSERT(bytes != NULL);
    unsigned long long x = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes[i] = (unsigned char)x;
    }
    const char *hex = sha256_hex(bytes, size);
    const char *ev =
        hfmt("{\"evidence\":[{\"id\":\"ev-tls-1\",\"sha256\":\"%s\",\"size\":%zu,\"mime\":\"video/mp4\","
             "\"kind\":\"bodycam\",\"captured_at\":\"%s\"}]}",
             hex, size, iso_now(-5000));
    resp_t r = tphone_push(ph, changes(ch_update(record_id, 1, NULL, ev)), 0);
    ASSERT_STATUS(r, 200);

    const char *meta = hfmt("sha256 %s,filename %s,mime %s,record_id %s", b64(hex), b64("bodycam-0001.mp4"),
                            b64("video/mp4"), b64(record_id));
    const char *create[] = {"Tus-Resumable: 1.0.0", hfmt("Upload-Length: %zu", size),
                            hfmt("Upload-Metadata: %s", meta), NULL};
    r = px_http(&ph->c, "POST", "/v1/uploads", ph->token, NULL, 0, create);
    ASSERT_STATUS(r, 201);
    const char *loc = resp_header(&r, "Location");
    const char *path = upload_path(px, loc);
    ASSERT_MSG(path, "Location %s is neither relative nor on %s", loc ? loc : "(absent)", px->base);

    size_t first = 1u << 20;
    const char *patch1[] = {"Tus-Resumable: 1.0.0", "Upload-Offset: 0",
                            "Content-Type: application/offset+octet-stream", NULL};
    r = px_http(&ph->c, "PATCH", path, ph->token, bytes, first, patch1);
    ASSERT_STATUS(r, 204);
    ASSERT_STR(resp_header(&r, "Upload-Offset"), hfmt("%zu", first));

    const char *head[] = {"Tus-Resumable: 1.0.0", NULL};
    r = px_http(&ph->c, "HEAD", path, ph->token, NULL, 0, head);
    ASSERT_MSG(r.status == 200 || r.status == 204, "%s -> %ld", r.what, r.status);
    ASSERT_STR(resp_header(&r, "Upload-Offset"), hfmt("%zu", first));
    ASSERT_STR(resp_header(&r, "Upload-Length"), hfmt("%zu", size));

    const char *patch2[] = {"Tus-Resumable: 1.0.0", hfmt("Upload-Offset: %zu", first),
                            "Content-Type: application/offset+octet-stream", NULL};
    r = px_http(&ph->c, "PATCH", path, ph->token, bytes + first, size - first, patch2);
    ASSERT_STATUS(r, 204);
    ASSERT_STR(resp_header(&r, "Upload-Offset"), hfmt("%zu", size));

    r = px_http(&ph->c, "HEAD", hfmt("/v1/blobs/%s", hex), ph->token, NULL, 0, NULL);
    ASSERT_STATUS(r, 200);
    h_free(bytes);
}

/* ---- 1. a phone syncs through nginx ------------------------------------------------ */

PROXY_TEST(tls_phone_syncs_through_nginx) {
    ASSERT(std_user(&px->srv, "off1") != NULL);
    ASSERT(std_user(&px->srv, "off2") != NULL);

    /* The certificate is checked: a client that does not trust it is refused. */
    px_client_t stranger = {.px = px, .untrusting = 1};
    resp_t r = px_http(&stranger, "GET", "/healthz", NULL, NULL, 0, NULL);
    ASSERT_MSG(r.status == 0 && strstr(r.err, "curl error 60"),
               "a client without the test CA got %ld %s (want a certificate error)", r.status, r.err);
    /* TLS 1.2 works too, with the configured suites (1.3 is what a current
     * client picks). */
    px_client_t old = {.px = px, .tls12 = 1};
    r = px_http(&old, "GET", "/healthz", NULL, NULL, 0, NULL);
    ASSERT_STATUS(r, 200);

    /* Phone A on HTTP/2 (ALPN), phone B on HTTP/1.1. */
    tphone_t a = {.c = {.px = px, .from = "127.0.0.2"}},
             b = {.c = {.px = px, .from = "127.0.0.3", .http1 = 1}};
    ASSERT(tphone_login(&a, "off1", "dev-tls-a") == 0);
    ASSERT(tphone_login(&b, "off2", "dev-tls-b") == 0);

    r = px_http(&a.c, "GET", "/v1/me", a.token, NULL, 0, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(http2_used(&r), "phone A should speak HTTP/2 to nginx: %.40s", r.headers);
    ASSERT_STR(resp_header(&r, "Strict-Transport-Security"), HSTS);
    ASSERT_MSG(resp_header(&r, "X-Request-Id"), "casesyncd's headers should pass through: %s", r.headers);

    /* Push (gzip-compressed body), then B pulls with gzip: casesyncd's
     * compressed answer arrives as it was sent, compressed once. */
    r = tphone_push(&a, changes(ch_create("tlscase0001", "general", NULL)), 1);
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");

    const char *gz[] = {"Accept-Encoding: gzip", NULL};
    r = tphone_pull(&b, 0, gz);
    ASSERT_STATUS(r, 200);
    ASSERT_STR(resp_header(&r, "Content-Encoding"), "gzip");
    ASSERT_MSG(resp_header(&r, "Vary") && strstr(resp_header(&r, "Vary"), "Accept-Encoding"), "Vary: %s",
               r.headers);
    size_t n = 0;
    char *json = gz_inflate(r.body, r.len, 1u << 24, &n);
    ASSERT_MSG(json, "the gzip body does not inflate (%zu bytes)", r.len);
    cJSON *pulled = jparse(json);
    ASSERT_MSG(pulled, "the inflated body is not JSON (compressed twice?): %.200s", json);
    ASSERT_MSG(pull_item(pulled, "tlscase0001"), "B's pull lacks the record: %.1000s", json);
    b.cursor = jstr(pulled, "cursor");
    ASSERT(b.cursor != NULL);

    /* nginx does not compress by itself, whatever its http {} block says:
     * without Accept-Encoding the pull is plain JSON, and a short answer that
     * casesyncd leaves uncompressed stays so. */
    r = tphone_pull(&a, 0, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(!resp_header(&r, "Content-Encoding"), "unasked Content-Encoding: %s", r.headers);
    ASSERT_MSG(resp_json(&r) && pull_item(r.json, "tlscase0001"), "A's pull: %.500s", r.body);
    r = px_http(&a.c, "GET", "/healthz", NULL, NULL, 0, gz);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(r.len < 256 && !resp_header(&r, "Content-Encoding"), "nginx compressed a short answer: %s",
               r.headers);

    /* A long poll through the proxy returns as soon as another device pushes. */
    poll_job_t job = {.phone = &b, .wait = 20};
    pthread_t t;
    ASSERT(pthread_create(&t, NULL, poll_main, &job) == 0);
    sleep_ms(1000);
    double pushed_at = now_s();
    r = tphone_push(&a, changes(ch_create("tlscase0002", "general", NULL)), 0);
    pthread_join(t, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_STATUS(job.r, 200);
    ASSERT_MSG(resp_json(&job.r) && pull_item(job.r.json, "tlscase0002"),
               "the long poll missed the push: %.800s", job.r.body);
    ASSERT_MSG(job.r.secs > 0.8, "the long poll came back after %.2f s: it did not wait", job.r.secs);
    ASSERT_MSG(job.done_at - pushed_at < 2.0, "the long poll came back %.2f s after the push",
               job.done_at - pushed_at);

    /* A tus upload through the proxy, once casesyncd serves tus. */
    const char *tus[] = {"Tus-Resumable: 1.0.0", NULL};
    r = px_http(&a.c, "OPTIONS", "/v1/uploads", a.token, NULL, 0, tus);
    if (r.status == 204) {
        const char *max = resp_header(&r, "Tus-Max-Size");
        tus_upload(px, &a, "tlscase0001", max ? atoll(max) : 0);
        if (test_failed()) return;
    } else {
        fprintf(stderr, "    note: OPTIONS /v1/uploads -> %ld: no tus endpoint yet, upload not tried\n",
                r.status);
    }

    /* A body over the proxy's limit is refused by nginx in the protocol's
     * error form, before it reaches casesyncd. */
    size_t big = PROXY_MAX_BODY + 1;
    char *huge = h_keep(malloc(big), NULL);
    ASSERT(huge != NULL);
    memset(huge, ' ', big);
    r = px_http(&b.c, "POST", "/v1/sync/push", b.token, huge, big, NULL);
    ASSERT_ERROR(r, 413, "too_large");
    h_free(huge);

    /* casesyncd gone: nginx answers 503 with Retry-After and a JSON error. */
    ASSERT_INT(px_stop_server(px), 0);
    r = px_http(&a.c, "GET", "/v1/me", a.token, NULL, 0, NULL);
    ASSERT_ERROR(r, 503, "unavailable");
    ASSERT_MSG(resp_header(&r, "Retry-After"), "no Retry-After: %s", r.headers);
    ASSERT_STR(resp_header(&r, "Strict-Transport-Security"), HSTS);
}

/* ---- 2. the login limit keys on the real client ---------------------------------------- */

/* LOGIN_MAX_FAILURES wrong passwords from c are 401, the next is 429. */
#define FAIL_UNTIL_LIMITED(c, user, xff)                                                                     \
    do {                                                                                                     \
        for (int i_ = 0; i_ < LOGIN_MAX_FAILURES; i_++) {                                                    \
            resp_t f_ = try_login((c), (user), "wrong-password-1", (xff));                                   \
            ASSERT_ERROR(f_, 401, "invalid_credentials");                                                    \
        }                                                                                                    \
        resp_t l_ = try_login((c), (user), "wrong-password-1", (xff));                                       \
        ASSERT_LIMITED(l_);                                                                                  \
    } while (0)

#define ASSERT_LIMITED(r)                                                                                    \
    do {                                                                                                     \
        ASSERT_ERROR(r, 429, "too_many_requests");                                                           \
        const char *ra_ = resp_header(&(r), "Retry-After");                                                  \
        ASSERT_MSG(ra_ &&atoi(ra_) >= 1 && atoi(ra_) <= LOGIN_WINDOW_S, "%s: Retry-After %s", (r).what,      \
                   ra_ ? ra_ : "(absent)");                                                                  \
    } while (0)

PROXY_TEST(tls_login_limit_keys_on_real_client) {
    ASSERT(std_user(&px->srv, "off1") != NULL);
    const char *pw = std_pass("off1");

    /* Through nginx, phone X (127.0.0.2) runs into the limit; its right
     * password is refused now too, and a forged X-Forwarded-For does not
     * help: nginx replaces the header with the address it sees. */
    px_client_t x = {.px = px, .from = "127.0.0.2"};
    FAIL_UNTIL_LIMITED(&x, "off1", NULL);
    resp_t r = try_login(&x, "off1", pw, NULL);
    ASSERT_LIMITED(r);
    r = try_login(&x, "off1", pw, "198.51.100.7");
    ASSERT_LIMITED(r);

    /* Phone Y (127.0.0.3) comes through the same nginx, so casesyncd's peer
     * is the same 127.0.0.1; it is counted apart and logs in. */
    px_client_t y = {.px = px, .from = "127.0.0.3"};
    r = try_login(&y, "off1", "wrong-password-1", NULL);
    ASSERT_ERROR(r, 401, "invalid_credentials");
    r = try_login(&y, "off1", pw, NULL);
    ASSERT_STATUS(r, 200);

    /* Straight to casesyncd from 127.0.0.4, not the trusted proxy: its
     * forged X-Forwarded-For is ignored. The limit counts its own address,
     * so another forged address does not escape it, nor does none. (Another
     * user: off1's failures from every address already near its
     * per-account limit.) */
    ASSERT(std_user(&px->srv, "off2") != NULL);
    const char *pw2 = std_pass("off2");
    px_client_t d = {.px = px, .from = "127.0.0.4", .direct = 1};
    FAIL_UNTIL_LIMITED(&d, "off2", "203.0.113.1");
    r = try_login(&d, "off2", "wrong-password-1", "203.0.113.2");
    ASSERT_LIMITED(r);
    r = try_login(&d, "off2", pw2, "203.0.113.3");
    ASSERT_LIMITED(r);
    r = try_login(&d, "off2", pw2, NULL);
    ASSERT_LIMITED(r);

    /* Nor can a direct client frame another: 127.0.0.5 claiming to be the
     * blocked 127.0.0.4 is judged as itself. */
    px_client_t e = {.px = px, .from = "127.0.0.5", .direct = 1};
    r = try_login(&e, "off2", pw2, "127.0.0.4");
    ASSERT_STATUS(r, 200);

    /* The same client is the same key whichever way it comes: 127.0.0.4
     * through nginx is still limited. */
    px_client_t d_proxied = {.px = px, .from = "127.0.0.4"};
    r = try_login(&d_proxied, "off2", pw2, NULL);
    ASSERT_LIMITED(r);
}

/* ---- 3. one address cannot spray a password over the users ------------------------------- */

PROXY_TEST(tls_login_spray_limited_per_address) {
    static const char *const users[] = {"off1", "off2", "off3", "aux1", "sup1"};
    const int nusers = (int)(sizeof users / sizeof users[0]);
    for (int i = 0; i < nusers; i++)
        ASSERT(std_user(&px->srv, users[i]) != NULL);
    ASSERT(std_user(&px->srv, "admin") != NULL);

    /* Phone Z guesses over five usernames, never reaching the limit of one
     * (LOGIN_MAX_FAILURES - 1 each), with a valid login of its own in the
     * middle that does not wipe the count: after 4 x LOGIN_MAX_FAILURES
     * failures the address is refused for every username. */
    px_client_t z = {.px = px, .from = "127.0.0.6"};
    int spray = 4 * LOGIN_MAX_FAILURES;
    ASSERT(spray <= nusers * (LOGIN_MAX_FAILURES - 1));
    for (int i = 0; i < spray; i++) {
        resp_t r = try_login(&z, users[i % nusers], "Summer-2026!", NULL);
        ASSERT_ERROR(r, 401, "invalid_credentials");
        if (i == spray / 2) {
            r = try_login(&z, "off1", std_pass("off1"), NULL);
            ASSERT_STATUS(r, 200);
        }
    }
    resp_t r = try_login(&z, "admin", "Summer-2026!", NULL);
    ASSERT_LIMITED(r);
    r = try_login(&z, "off2", std_pass("off2"), NULL);
    ASSERT_LIMITED(r);

    /* Another phone through the same nginx is not affected. */
    px_client_t w = {.px = px, .from = "127.0.0.7"};
    r = try_login(&w, "off2", std_pass("off2"), NULL);
    ASSERT_STATUS(r, 200);
}
