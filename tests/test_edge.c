/* test_edge.c -- the HTTP edge under hostile clients: gzip bombs before and
 * after authentication (peak memory read from /proc/PID/status), JSON
 * element counts bounded before parsing, the process-wide cap on inflated
 * bytes, /metrics and /v1/audit/verify by role, the metrics listener, and
 * idle or trickling sockets straight to casesyncd and through deploy/nginx.conf. */
#include "server/jsonscan.h"
#include "tests/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")
#define START_CONFIG(s, cfg) ASSERT_MSG(srv_start_config(&(s), (cfg)) == 0, "casesyncd did not start")
#define PHONE(p, s, name, dev)                                                                               \
    ASSERT_MSG(std_phone(&(p), &(s), (name), (dev)) == 0, "login of %s failed", (name))

#define MiB (1024u * 1024u)
/* What the bomb may add to the server's peak resident size. */
#define BOMB_GROWTH_MAX_KB (64L * 1024)

/* ---- helpers ----------------------------------------------------------------------- */

/* A /proc/PID/status value in kB ("VmHWM", "VmRSS"), or -1. */
static long proc_kb(pid_t pid, const char *key) {
    FILE *f = fopen(hfmt("/proc/%d/status", (int)pid), "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') v = atol(line + n + 1);
    if (f) fclose(f);
    return v;
}

/* gzip of prefix, then "0," n - 1 times and "0", then suffix, made in pieces
 * (pool): n elements that inflate to about 2n bytes. */
static void *json_bomb(const char *prefix, size_t n, const char *suffix, size_t *out_len) {
    static char zeros[65536];
    for (size_t i = 0; i + 1 < sizeof zeros; i += 2)
        memcpy(zeros + i, "0,", 2);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    size_t cap = 64 * 1024 + 2 * n / 1000 + 4096, used = 0;
    unsigned char *out = malloc(cap);
    if (!out) return NULL;
    size_t left = n;
    int stage = 0; /* 0 prefix, 1 zeros, 2 last "0", 3 suffix, 4 finish */
    while (stage <= 4) {
        const char *in = NULL;
        size_t len = 0;
        if (stage == 0)
            in = prefix, len = strlen(prefix);
        else if (stage == 1) {
            size_t k = left > 1 ? left - 1 : 0; /* elements before the last */
            if (k > sizeof zeros / 2) k = sizeof zeros / 2;
            in = zeros, len = 2 * k;
            left -= k;
        } else if (stage == 2)
            in = "0", len = left ? 1 : 0;
        else if (stage == 3)
            in = suffix, len = strlen(suffix);
        zs.next_in = (Bytef *)in;
        zs.avail_in = (uInt)len;
        int flush = stage == 4 ? Z_FINISH : Z_NO_FLUSH;
        int ret;
        do {
            if (cap - used < 65536) {
                unsigned char *np = realloc(out, cap *= 2);
                if (!np) {
                    free(out);
                    deflateEnd(&zs);
                    return NULL;
                }
                out = np;
            }
            zs.next_out = out + used;
            zs.avail_out = (uInt)(cap - used);
            ret = deflate(&zs, flush);
            used = cap - zs.avail_out;
        } while (zs.avail_in > 0 || (flush == Z_FINISH && ret != Z_STREAM_END));
        if (stage != 1 || left <= 1) stage++;
    }
    deflateEnd(&zs);
    *out_len = used;
    return h_keep(out, NULL);
}

/* A socket connected to 127.0.0.1:port from local address `from` (NULL:
 * any), or -1. */
static int connect_from(const char *from, int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    if (from) {
        inet_pton(AF_INET, from, &a.sin_addr);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            close(fd);
            return -1;
        }
    }
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads an answer's status line within timeout_ms: the status, or 0 when the
 * connection closed (or nothing came in time). The rest is left unread. */
static int read_status(int fd, int timeout_ms) {
    char buf[4096];
    size_t n = 0;
    double end = now_s() + timeout_ms / 1000.0;
    while (n < sizeof buf - 1) {
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        ssize_t k = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (k <= 0) return 0;
        n += (size_t)k;
        buf[n] = '\0';
        char *nl = strstr(buf, "\r\n");
        if (nl && strncmp(buf, "HTTP/1.", 7) == 0) return atoi(buf + 9);
    }
    return 0;
}

/* The port of the metrics listener from the server's log, or -1. */
static int metrics_port(const srv_t *s) {
    FILE *f = fopen(hfmt("%s/server.log", s->dir), "r");
    char line[512];
    int port = -1;
    while (f && fgets(line, sizeof line, f)) {
        const char *m = strstr(line, "metrics on http://127.0.0.1:");
        if (m) port = atoi(m + strlen("metrics on http://127.0.0.1:"));
    }
    if (f) fclose(f);
    return port;
}

static const char *login_body(const char *user, const char *pass, const char *device, const char *pad) {
    return hfmt("{\"username\":\"%s\",\"password\":\"%s\",\"device_id\":\"%s\"%s}", user, pass, device,
                pad ? pad : "");
}

/* ---- the scanner (server/jsonscan.c) ------------------------------------------------- */

TEST(jsonscan_counts_values_and_names_and_respects_strings) {
    jsonscan_t s;
    ASSERT_INT(jsonscan_text("{}", 2, 0, 0, &s), JSONSCAN_OK);
    ASSERT_INT(s.elements, 1);
    /* {"a":[1,true,null,"x]}"],"b":{"c":-1.5e3}}: object, a, array, 4 values, b, object, c, number */
    const char *t = "{\"a\":[1,true,null,\"x]}\"],\"b\":{\"c\":-1.5e3}}";
    ASSERT_INT(jsonscan_text(t, strlen(t), 0, 0, &s), JSONSCAN_OK);
    ASSERT_INT(s.elements, 11);
    ASSERT_INT(s.depth_max, 2);
    ASSERT_INT(s.depth, 0);
    /* Escaped quotes and backslashes do not end a string. */
    t = "[\"a\\\"[[[\",\"b\\\\\",\"c\"]";
    ASSERT_INT(jsonscan_text(t, strlen(t), 0, 0, &s), JSONSCAN_OK);
    ASSERT_INT(s.elements, 4);
    ASSERT_INT(s.depth_max, 1);
    /* The limit: exactly max is fine, one more is refused. */
    t = "[0,0,0,0]";
    ASSERT_INT(jsonscan_text(t, strlen(t), 5, 0, NULL), JSONSCAN_OK);
    ASSERT_INT(jsonscan_text(t, strlen(t), 4, 0, NULL), JSONSCAN_TOO_MANY);
    t = "[[[[1]]]]";
    ASSERT_INT(jsonscan_text(t, strlen(t), 0, 4, NULL), JSONSCAN_OK);
    ASSERT_INT(jsonscan_text(t, strlen(t), 0, 3, NULL), JSONSCAN_TOO_DEEP);
    /* Raw control bytes and \u0000 are noted, not refused. */
    ASSERT_INT(jsonscan_text("[\"a\tb\"]", 7, 0, 0, &s), JSONSCAN_OK);
    ASSERT_INT(s.control, 1);
    t = "[\"a\\u0000\"]";
    ASSERT_INT(jsonscan_text(t, strlen(t), 0, 0, &s), JSONSCAN_OK);
    ASSERT_INT(s.nul, 1);
    t = "[\"a\\\\u0000\",\"\\u0030\"]"; /* an escaped backslash, then a '0' */
    ASSERT_INT(jsonscan_text(t, strlen(t), 0, 0, &s), JSONSCAN_OK);
    ASSERT_INT(s.nul, 0);
}

TEST(jsonscan_gives_the_same_answer_for_any_split) {
    const char *t = "{\"k\\u0000\":[1,22,\"x\\\"y\",{\"z\":[true,false,null]}],\"m\":\"\\\\\"}";
    size_t n = strlen(t);
    jsonscan_t whole;
    jsonscan_text(t, n, 0, 0, &whole);
    ASSERT_INT(whole.elements, 14);
    ASSERT_INT(whole.nul, 1);
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            jsonscan_t s;
            jsonscan_init(&s, 0, 0);
            jsonscan_feed(&s, t, a);
            jsonscan_feed(&s, t + a, b - a);
            jsonscan_feed(&s, t + b, n - b);
            ASSERT_MSG(s.elements == whole.elements && s.depth_max == whole.depth_max && s.nul == whole.nul &&
                           s.depth == whole.depth,
                       "split at %zu,%zu: %zu elements, depth %d, nul %d", a, b, s.elements, s.depth_max,
                       s.nul);
        }
    }
}

/* ---- 1. before authentication nothing large is parsed --------------------------------- */

TEST(login_and_logout_bodies_are_small_and_never_gzip) {
    srv_t s;
    START(s);
    std_user(&s, "off1");
    long before = proc_kb(s.pid, "VmHWM");
    ASSERT(before > 0);
    /* The bomb of the report: 30M elements inflating to 60 MB from ~60 KB. */
    size_t zlen = 0;
    void *bomb = json_bomb("{\"username\":\"off1\",\"password\":\"x\",\"device_id\":\"d\",\"pad\":[",
                           30000000, "]}", &zlen);
    ASSERT(bomb != NULL);
    ASSERT_MSG(zlen < 128 * 1024, "bomb is %zu bytes", zlen);
    resp_t r = http_raw(&s, "POST", "/v1/auth/login", NULL, bomb, zlen,
                        (const char *[]){"Content-Encoding: gzip", NULL});
    ASSERT_ERROR(r, 415, "unsupported_encoding");
    long after = proc_kb(s.pid, "VmHWM");
    ASSERT_MSG(after - before < BOMB_GROWTH_MAX_KB, "peak memory grew by %ld kB (from %ld kB)",
               after - before, before);

    /* Over 4 KiB as sent: 413 from Content-Length, and while reading a chunked body. */
    char *pad = h_keep(malloc(5000), NULL);
    ASSERT(pad != NULL);
    memset(pad, 'x', 4999);
    pad[4999] = '\0';
    const char *big = login_body("off1", std_pass("off1"), "dev-A", hfmt(",\"pad\":\"%s\"", pad));
    r = http(&s, "POST", "/v1/auth/login", NULL, big, NULL);
    ASSERT_ERROR(r, 413, "too_large");
    int fd = connect_from(NULL, s.port);
    ASSERT(fd >= 0);
    const char *head = "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    ASSERT(send_all(fd, head, strlen(head)) == 0);
    const char *chunk = hfmt("%zx\r\n%s\r\n0\r\n\r\n", strlen(big), big);
    (void)send_all(fd, chunk, strlen(chunk)); /* the server may stop reading half-way */
    ASSERT_INT(read_status(fd, 30000), 413);
    close(fd);

    /* Just under the limit: an ordinary answer (here a wrong password). */
    pad[4096 - 120] = '\0';
    r = http(&s, "POST", "/v1/auth/login", NULL,
             login_body("off1", "wrong", "dev-A", hfmt(",\"pad\":\"%s\"", pad)), NULL);
    ASSERT_ERROR(r, 401, "invalid_credentials");

    /* Logout: the same rules, checked before the token. */
    const char *tok = login(&s, "off1", std_pass("off1"), "dev-A", NULL);
    ASSERT(tok != NULL);
    r = http(&s, "POST", "/v1/auth/logout", tok, big, NULL);
    ASSERT_ERROR(r, 413, "too_large");
    r = http_raw(&s, "POST", "/v1/auth/logout", tok, bomb, zlen,
                 (const char *[]){"Content-Encoding: gzip", NULL});
    ASSERT_ERROR(r, 415, "unsupported_encoding");
    r = http(&s, "GET", "/v1/me", tok, NULL, NULL);
    ASSERT_STATUS(r, 200); /* neither refused logout ended the session */
    r = http(&s, "POST", "/v1/auth/logout", tok, NULL, NULL);
    ASSERT_STATUS(r, 204);
    r = http(&s, "GET", "/healthz", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 2. JSON elements are counted before a tree is built ------------------------------ */

TEST(gzip_bomb_to_push_leaves_peak_memory_flat) {
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    /* Warm up: a legal push, so the baseline holds the usual buffers. */
    resp_t r = phone_push(&a, changes(ch_create("01JDEDGE0000000001", "general", NULL)));
    ASSERT_STATUS(r, 200);
    long before = proc_kb(s.pid, "VmHWM");
    ASSERT(before > 0);
    size_t zlen = 0;
    void *bomb = json_bomb(
        hfmt("{\"device_id\":\"dev-A\",\"changeset_seq\":%lld,\"schema_version\":1,\"changes\":[", a.seq),
        30000000, "]}", &zlen);
    ASSERT(bomb != NULL);
    ASSERT_MSG(zlen < 128 * 1024, "bomb is %zu bytes", zlen);
    r = http_raw(&s, "POST", "/v1/sync/push", a.token, bomb, zlen,
                 (const char *[]){"Content-Encoding: gzip", NULL});
    ASSERT_ERROR(r, 413, "too_large");
    long after = proc_kb(s.pid, "VmHWM");
    ASSERT_MSG(after - before < BOMB_GROWTH_MAX_KB, "peak memory grew by %ld kB (from %ld kB)",
               after - before, before);
    /* The same count applies to a plain body: 300k elements in 600 KB. */
    size_t n = 300000, hl;
    const char *headp =
        hfmt("{\"device_id\":\"dev-A\",\"changeset_seq\":%lld,\"schema_version\":1,\"changes\":[", a.seq);
    hl = strlen(headp);
    char *plain = h_keep(malloc(hl + 2 * n + 3), NULL);
    ASSERT(plain != NULL);
    memcpy(plain, headp, hl);
    for (size_t i = 0; i < n; i++)
        memcpy(plain + hl + 2 * i, "0,", 2);
    memcpy(plain + hl + 2 * n - 1, "]}", 3);
    r = http(&s, "POST", "/v1/sync/push", a.token, plain, NULL);
    ASSERT_ERROR(r, 413, "too_large");
    /* Still answering, and the changeset number is still free. */
    r = http(&s, "GET", "/healthz", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    r = phone_push(&a, changes(ch_create("01JDEDGE0000000002", "general", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(json_element_limit_is_configurable_and_fits_a_full_push) {
    srv_t s;
    START_CONFIG(s, "{\"max_json_elements\": 200}");
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    const char *one = ch_create("01JDEDGE0000000010", "general", NULL);
    resp_t r = phone_push(&a, changes(one, ch_create("01JDEDGE0000000011", "general", NULL)));
    ASSERT_STATUS(r, 200);
    /* Past 200 elements: 413 before parsing, nothing applied. */
    char *many = h_keep(malloc(64 * 1024), NULL);
    ASSERT(many != NULL);
    size_t used = 0;
    many[used++] = '[';
    for (int i = 0; i < 12; i++) {
        const char *c = ch_create(hfmt("01JDEDGE00000001%02d", i), "general", NULL);
        if (i) many[used++] = ',';
        memcpy(many + used, c, strlen(c));
        used += strlen(c);
    }
    many[used++] = ']';
    many[used] = '\0';
    r = phone_push(&a, many);
    ASSERT_ERROR(r, 413, "too_large");
    r = phone_get(&a, "/v1/cases/01JDEDGE0000000100");
    ASSERT_ERROR(r, 404, "not_found");
    ASSERT_INT(srv_stop(&s), 0);

    /* The default is sized from max_changes: a legal push of 1000 changes fits. */
    srv_t d;
    START(d);
    phone_t b;
    PHONE(b, d, "off1", "dev-B");
    size_t cap = 1000 * 700, len = 0;
    char *full = h_keep(malloc(cap), NULL);
    ASSERT(full != NULL);
    full[len++] = '[';
    for (int i = 0; i < 1000; i++) {
        const char *c = ch_create(hfmt("01JDFULL%010d", i), "general", NULL);
        ASSERT(len + strlen(c) + 2 < cap);
        if (i) full[len++] = ',';
        memcpy(full + len, c, strlen(c));
        len += strlen(c);
    }
    full[len++] = ']';
    full[len] = '\0';
    r = phone_push(&b, full);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "results"), 1000);
    ASSERT_JSTR(r.json, "results[999].status", "applied");
    ASSERT_INT(srv_stop(&d), 0);
}

/* ---- 3. inflated bytes in flight are capped ------------------------------------------- */

/* The value of a metric in an exposition, or -1. */
static double sample_of(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ') return atof(p + n + 1);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return -1;
}

TEST(inflated_bytes_in_flight_are_capped_with_503) {
    srv_t s;
    START_CONFIG(s, "{\"max_inflated_bytes\": 1048576, \"max_inflating_bytes\": 1572864}");
    phone_t a, adm;
    PHONE(a, s, "off1", "dev-A");
    PHONE(adm, s, "admin", "dev-ADM");
    /* A body inflating to ~900 KB: a long description of random letters,
     * so that it stays several 64 KB reads long after gzip (the server
     * inflates read by read). */
    size_t pad = 900 * 1000;
    char *text = h_keep(malloc(pad + 1), NULL);
    ASSERT(text != NULL);
    unsigned long long x = 88172645463325252ull;
    for (size_t i = 0; i < pad; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        text[i] = (char)('a' + x % 26);
    }
    text[pad] = '\0';
    const char *body = push_body(
        "dev-A", a.seq,
        changes(ch_create("01JDEDGE0000000200", "general", hfmt("{\"description\":\"%s\"}", text))));
    size_t zlen = 0;
    void *z = gz_compress(body, strlen(body), &zlen);
    ASSERT_MSG(z != NULL && zlen > 4 * 65536, "gzip body of %zu bytes", zlen);

    /* The first push sends all but its last bytes and waits: what it
     * inflated so far (~1 MB of capacity) stays reserved. */
    int fd = connect_from(NULL, s.port);
    ASSERT(fd >= 0);
    const char *head = hfmt("POST /v1/sync/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                            "Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
                            "Content-Length: %zu\r\n\r\n",
                            a.token, zlen);
    ASSERT(send_all(fd, head, strlen(head)) == 0);
    ASSERT(send_all(fd, z, zlen - 8) == 0);
    double held = 0;
    for (int i = 0; i < 250 && held < (double)MiB; i++) {
        resp_t m = phone_get(&adm, "/metrics");
        ASSERT_STATUS(m, 200);
        held = sample_of(m.body, "casesync_inflating_bytes");
        if (held < (double)MiB) sleep_ms(20);
    }
    ASSERT_MSG(held >= (double)MiB, "casesync_inflating_bytes is %.0f while a body is half-read", held);

    /* A second one would pass 1.5 MiB together: 503 with Retry-After. */
    const char *body2 = push_body(
        "dev-A", a.seq + 1,
        changes(ch_create("01JDEDGE0000000201", "general", hfmt("{\"description\":\"%s\"}", text))));
    size_t z2len = 0;
    void *z2 = gz_compress(body2, strlen(body2), &z2len);
    resp_t r = http_raw(&s, "POST", "/v1/sync/push", a.token, z2, z2len,
                        (const char *[]){"Content-Encoding: gzip", NULL});
    ASSERT_ERROR(r, 503, "unavailable");
    ASSERT_MSG(resp_header(&r, "Retry-After") != NULL, "no Retry-After: %s", r.headers);

    /* The first ends; its bytes are given back and the retry goes through. */
    ASSERT(send_all(fd, (const char *)z + zlen - 8, 8) == 0);
    int st = read_status(fd, 30000);
    ASSERT_MSG(st > 0 && st != 503, "the first push got %d", st);
    close(fd);
    r = http_raw(&s, "POST", "/v1/sync/push", a.token, z2, z2len,
                 (const char *[]){"Content-Encoding: gzip", NULL});
    ASSERT_MSG(r.status != 503, "the retry got 503 again: %s", r.body);
    resp_t m = phone_get(&adm, "/metrics");
    ASSERT_STATUS(m, 200);
    ASSERT_MSG(sample_of(m.body, "casesync_inflating_bytes") == 0, "bytes still held: %.0f",
               sample_of(m.body, "casesync_inflating_bytes"));
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(inflating_cap_below_one_body_is_refused_at_start) {
    srv_t s;
    ASSERT_MSG(srv_start_config(&s, "{\"max_inflated_bytes\": 2048, \"max_inflating_bytes\": 1024}") != 0,
               "casesyncd started with a cap no body could fit under");
}

/* ---- 5. /metrics and /v1/audit/verify by role ------------------------------------------ */

TEST(metrics_on_the_public_port_need_an_admin) {
    srv_t s;
    START(s);
    phone_t off, adm;
    PHONE(off, s, "off1", "dev-A");
    PHONE(adm, s, "admin", "dev-ADM");
    resp_t r = http(&s, "GET", "/metrics", NULL, NULL, NULL);
    ASSERT_ERROR(r, 401, "unauthenticated");
    r = phone_get(&off, "/metrics");
    ASSERT_ERROR(r, 403, "forbidden");
    r = phone_get(&adm, "/metrics");
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(strstr(r.body, "# TYPE casesync_inflating_bytes gauge") != NULL, "%.400s", r.body);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(metrics_listener_serves_metrics_only) {
    srv_t s;
    START_CONFIG(s, "{\"metrics_listen\": \"127.0.0.1:0\"}");
    int port = metrics_port(&s);
    ASSERT_MSG(port > 0 && port != s.port, "no metrics port in the log (%d)", port);
    srv_t m = s;
    snprintf(m.base, sizeof m.base, "http://127.0.0.1:%d", port);
    resp_t r = http(&m, "GET", "/metrics", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(strstr(r.body, "casesync_ready 1\n") != NULL, "%.400s", r.body);
    /* Nothing of the API on the internal address, token or not. */
    phone_t adm;
    PHONE(adm, s, "admin", "dev-ADM");
    const char *paths[] = {"/healthz", "/v1/me", "/v1/audit/verify", "/metrics/", "/v1/admin/users", NULL};
    for (int i = 0; paths[i]; i++) {
        r = http(&m, "GET", paths[i], adm.token, NULL, NULL);
        ASSERT_ERROR(r, 404, "not_found");
    }
    r = http(&m, "POST", "/v1/auth/login", NULL, login_body("admin", std_pass("admin"), "dev-X", NULL), NULL);
    ASSERT_ERROR(r, 404, "not_found");
    r = http(&m, "POST", "/metrics", NULL, "{}", NULL);
    ASSERT_STATUS(r, 405);
    /* The public port still wants a token for it. */
    r = http(&s, "GET", "/metrics", NULL, NULL, NULL);
    ASSERT_ERROR(r, 401, "unauthenticated");
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(audit_verify_is_for_supervisors_and_admins) {
    srv_t s;
    START(s);
    phone_t off, aux, leg, sup, adm;
    PHONE(off, s, "off1", "dev-1");
    PHONE(aux, s, "aux1", "dev-2");
    PHONE(leg, s, "leg1", "dev-3");
    PHONE(sup, s, "sup1", "dev-4");
    PHONE(adm, s, "admin", "dev-5");
    resp_t r = phone_get(&off, "/v1/audit/verify");
    ASSERT_ERROR(r, 403, "forbidden");
    r = phone_get(&aux, "/v1/audit/verify");
    ASSERT_ERROR(r, 403, "forbidden");
    r = phone_get(&leg, "/v1/audit/verify");
    ASSERT_ERROR(r, 403, "forbidden");
    r = phone_get(&sup, "/v1/audit/verify");
    ASSERT_STATUS(r, 200);
    ASSERT_JBOOL(resp_json(&r), "ok", 1);
    r = phone_get(&adm, "/v1/audit/verify");
    ASSERT_STATUS(r, 200);
    r = http(&s, "GET", "/v1/audit/verify", NULL, NULL, NULL);
    ASSERT_ERROR(r, 401, "unauthenticated");
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 6. idle and slow connections --------------------------------------------------------- */

#define IDLE_THREADS 4
#define IDLE_SOCKETS (3 * IDLE_THREADS)

/* Every worker thread is taken, three times over, by sockets that send
 * nothing or half a head; /healthz from another client is answered once the
 * header timeout hands the threads back (civetweb's request_timeout_ms, 30 s
 * a round, would take 90 s: past the harness's 60 s). */
TEST(idle_sockets_give_their_threads_back_after_the_header_timeout) {
    srv_t s;
    START_CONFIG(s, hfmt("{\"threads\": %d, \"header_timeout_ms\": 1000}", IDLE_THREADS));
    int fds[IDLE_SOCKETS];
    for (int i = 0; i < IDLE_SOCKETS; i++) {
        fds[i] = connect_from(NULL, s.port);
        ASSERT(fds[i] >= 0);
        if (i % 2) ASSERT(send_all(fds[i], "GET /healthz HTTP/1.1\r\nHo", 25) == 0);
    }
    resp_t r = http(&s, "GET", "/healthz", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    /* A half-sent head was answered 400 or dropped; an idle one dropped. */
    for (int i = 0; i < IDLE_SOCKETS; i++) {
        int st = read_status(fds[i], 5000);
        ASSERT_MSG(st == 0 || st == 400, "socket %d got %d", i, st);
        close(fds[i]);
    }
    /* A phone whose head arrives in time is not cut, and its body has the long clock. */
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    int fd = connect_from(NULL, s.port);
    ASSERT(fd >= 0);
    const char *body = push_body("dev-A", a.seq, changes(ch_create("01JDEDGE0000000300", "general", NULL)));
    const char *head = hfmt("POST /v1/sync/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                            "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                            a.token, strlen(body));
    ASSERT(send_all(fd, head, strlen(head)) == 0);
    sleep_ms(1500); /* past the header timeout, before the body */
    ASSERT(send_all(fd, body, strlen(body)) == 0);
    ASSERT_INT(read_status(fd, 30000), 200);
    close(fd);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- through nginx (deploy/nginx.conf) ------------------------------------------------------ */

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

#define PROXY_IDLE_SOCKETS 300

PROXY_TEST(nginx_holds_300_idle_sockets_and_still_answers_others) {
    int fds[PROXY_IDLE_SOCKETS];
    int n = 0;
    for (; n < PROXY_IDLE_SOCKETS; n++) {
        fds[n] = connect_from("127.0.0.1", px->port);
        if (fds[n] < 0) break;
    }
    if (n < PROXY_IDLE_SOCKETS) {
        for (int i = 0; i < n; i++)
            close(fds[i]);
        ASSERT_MSG(0, "only %d of %d idle sockets connected", n, PROXY_IDLE_SOCKETS);
    }
    px_client_t other = {.px = px, .from = "127.0.0.2"};
    resp_t r = px_http(&other, "GET", "/healthz", NULL, NULL, 0, NULL);
    /* casesyncd straight, while nginx holds them: nginx passed none on. */
    px_client_t direct = {.px = px, .direct = 1};
    resp_t d = px_http(&direct, "GET", "/healthz", NULL, NULL, 0, NULL);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    ASSERT_MSG(r.status == 200, "through nginx: %ld %s", r.status, r.err);
    ASSERT_MSG(d.status == 200, "straight to casesyncd: %ld %s", d.status, d.err);
}

#define LOGIN_THREADS 4
#define LOGINS_EACH 25

typedef struct login_burst {
    px_client_t c;
    const char *body;
    int limited, ok;
} login_burst_t;

/* Sends LOGINS_EACH login requests; counts 429 too_many_requests (nginx's
 * limit) and the answers casesyncd gave (anything else from its JSON API). */
static void *login_burst(void *arg) {
    login_burst_t *j = arg;
    for (int i = 0; i < LOGINS_EACH; i++) {
        resp_t r = px_http(&j->c, "POST", "/v1/auth/login", NULL, j->body, strlen(j->body), NULL);
        const char *code = resp_error_code(&r);
        if (r.status == 429 && code && strcmp(code, "too_many_requests") == 0 &&
            resp_header(&r, "Retry-After") && !resp_header(&r, "X-Request-Id"))
            j->limited++; /* nginx's own answer: casesyncd never saw it */
        else if (resp_header(&r, "X-Request-Id"))
            j->ok++;
    }
    return NULL;
}

PROXY_TEST(nginx_hides_metrics_and_limits_logins) {
    std_user(&px->srv, "admin");
    px_client_t c = {.px = px, .from = "127.0.0.3"};
    const char *body = login_body("admin", std_pass("admin"), "dev-ADM", NULL);
    resp_t r = px_http(&c, "POST", "/v1/auth/login", NULL, body, strlen(body), NULL);
    ASSERT_STATUS(r, 200);
    const char *tok = hfmt("%s", jstr(resp_json(&r), "token"));
    r = px_http(&c, "GET", "/metrics", tok, NULL, 0, NULL);
    ASSERT_ERROR(r, 404, "not_found");
    /* The same admin token straight to casesyncd does get them. */
    px_client_t direct = {.px = px, .direct = 1};
    r = px_http(&direct, "GET", "/metrics", tok, NULL, 0, NULL);
    ASSERT_STATUS(r, 200);
    /* A login body over 4 KiB stops at nginx. */
    char *pad = h_keep(malloc(6000), NULL);
    ASSERT(pad != NULL);
    memset(pad, 'x', 5999);
    pad[5999] = '\0';
    const char *big = login_body("admin", "x", "dev-Z", hfmt(",\"pad\":\"%s\"", pad));
    r = px_http(&c, "POST", "/v1/auth/login", NULL, big, strlen(big), NULL);
    ASSERT_ERROR(r, 413, "too_large");
    /* A burst of login requests from one address: past nginx's burst, 429
     * with the protocol's body, from nginx itself (no X-Request-Id). The
     * bodies lack a password, so casesyncd answers each at once without a
     * hash or its own failure limits: the burst is fast whatever the load. */
    login_burst_t jobs[LOGIN_THREADS];
    pthread_t th[LOGIN_THREADS];
    for (int i = 0; i < LOGIN_THREADS; i++) {
        jobs[i] = (login_burst_t){.c = {.px = px, .from = "127.0.0.4"},
                                  .body = "{\"username\":\"nobody\"}"};
        ASSERT(pthread_create(&th[i], NULL, login_burst, &jobs[i]) == 0);
    }
    int limited = 0, ok = 0;
    for (int i = 0; i < LOGIN_THREADS; i++) {
        pthread_join(th[i], NULL);
        limited += jobs[i].limited;
        ok += jobs[i].ok;
    }
    ASSERT_MSG(limited > 0, "%d logins from one address at once, none limited (%d ok)",
               LOGIN_THREADS * LOGINS_EACH, ok);
    ASSERT_MSG(ok > 0, "no login of the burst got through");
    /* Another address is not held back by that one. */
    r = px_http(&c, "POST", "/v1/auth/login", NULL, body, strlen(body), NULL);
    ASSERT_STATUS(r, 200);
}
