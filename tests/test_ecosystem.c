/* test_ecosystem.c -- the library calls that replaced hand-written code:
 * base64 of tus headers on OpenSSL (EVP_DecodeBlock/EVP_EncodeBlock), path
 * segments decoded by civetweb's mg_url_decode, and libcasesync's answers
 * decoded by libcurl (CURLOPT_ACCEPT_ENCODING) -- each held to the
 * behaviour the hand-written code had. */
#include "clients/c/casesync.h"
#include "schema/embedded.h"
#include "schema/schema.h"
#include "server/tus.h"
#include "tests/harness.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")

TEST(tus_base64_on_openssl_keeps_its_caveats) {
    unsigned char out[16];
    struct {
        const char *in;
        long want;
        const char *bytes;
    } v[] = {
        {"", 0, ""},         {"QQ", 1, "A"},         {"QQ==", 1, "A"},   {"QR", 1, "A"}, /* low bits ignored */
        {"QUI", 2, "AB"},    {"QUJD", 3, "ABC"},     {"QUJDRA", 4, "ABCD"},
        {"Q", -1, NULL},     {"QQ=A", -1, NULL},     {"Q Q=", -1, NULL}, {"-_8", -1, NULL}, /* no URL alphabet */
        {"QUJD\n", -1, NULL}, {"QUJDREVGR0hJSktMTU5PUFE=", -1, NULL}, /* 17 bytes: no room in 16 */
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        memset(out, 0, sizeof out);
        long n = tus_b64_decode(v[i].in, strlen(v[i].in), out, sizeof out);
        ASSERT_MSG(n == v[i].want, "decode \"%s\" -> %ld, expected %ld", v[i].in, n, v[i].want);
        if (n > 0) ASSERT_MSG(memcmp(out, v[i].bytes, (size_t)n) == 0, "decode \"%s\" -> wrong bytes", v[i].in);
    }
    /* No byte past in[n-1] is read: "QUJD" followed by garbage, n = 4. */
    ASSERT_INT(tus_b64_decode("QUJD!!!!", 4, out, 3), 3);
    ASSERT_INT(tus_b64_decode("QUJD", 4, out, 2), -1);
    char enc[16];
    ASSERT_INT(tus_b64_encode((const unsigned char *)"ABCD", 4, enc, sizeof enc), 0);
    ASSERT_STR(enc, "QUJDRA==");
    ASSERT_INT(tus_b64_encode((const unsigned char *)"ABCD", 4, enc, 8), -1); /* 8 chars + NUL */
    ASSERT_STR(enc, "");
}

TEST(path_segments_decode_with_mg_url_decode) {
    srv_t s;
    START(s);
    phone_t a;
    ASSERT_MSG(std_phone(&a, &s, "off1", "dev-url-1") == 0, "login");
    resp_t r = phone_push(&a, changes(ch_create("01URLDEC00000001", "general", NULL)));
    ASSERT_STATUS(r, 200);
    /* An escaped id is the same record. */
    r = phone_get(&a, "/v1/cases/%30%31URLDEC00000001");
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "id", "01URLDEC00000001");
    /* An encoded NUL, a bad escape, an encoded '/' and '+' name nothing. */
    const char *bad[] = {"/v1/cases/01URLDEC%0000000001", "/v1/cases/01URLDEC%zz000001", "/v1/cases/%",
                         "/v1/cases/01URLDEC%2F00000001", "/v1/cases/01URLDEC+0000001", "/v1/%6De%"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = phone_get(&a, bad[i]);
        ASSERT_ERROR(r, 404, "not_found");
    }
    /* An escaped literal segment routes like the plain one. */
    r = phone_get(&a, "/v1/%6De");
    ASSERT_STATUS(r, 200);
}

/* Runs inside the pool's drain: no pool calls here. */
static void rm_state(void *d) {
    char cmd[300];
    if (d && snprintf(cmd, sizeof cmd, "rm -rf '%s'", (const char *)d) < (int)sizeof cmd && system(cmd) != 0)
        fprintf(stderr, "    could not remove %s\n", (const char *)d);
    free(d);
}

TEST(client_answers_are_decoded_by_libcurl_and_counted_both_ways) {
    srv_t s;
    START(s);
    phone_t a;
    ASSERT_MSG(std_phone(&a, &s, "off1", "dev-gz-1") == 0, "login");
    /* Enough records that a first pull is well over 256 bytes (gzip). */
    for (int i = 0; i < 6; i++) {
        resp_t r = phone_push(&a, changes(ch_create(hfmt("01GZIPREC000000%d", i), "general", NULL)));
        ASSERT_STATUS(r, 200);
    }
    char *dir = strdup("/tmp/casesync-gz-XXXXXX");
    ASSERT(dir && mkdtemp(dir));
    h_keep(dir, rm_state);
    casesync_options_t o = {0};
    o.state_dir = dir;
    o.no_sync = 1;
    casesync_t *h = NULL;
    casesync_error_t err;
    ASSERT_MSG(casesync_open(&o, &h, &err) == 0, "casesync_open: %s", err.message);
    ASSERT_MSG(std_user(&s, "off2"), "off2");
    ASSERT_MSG(casesync_login(h, s.base, "off2", std_pass("off2"), "dev-gz-2", &err) == 0, "login: %s",
               err.message);
    casesync_report_t rep;
    int rc = casesync_sync(h, 0, &rep, &err);
    casesync_stats_t st;
    int src = casesync_stats(h, &st);
    char *list = NULL;
    int lrc = casesync_list(h, &list);
    cJSON *j = lrc == 0 && list ? jparse(list) : NULL;
    casesync_free(list);
    casesync_close(h);
    ASSERT_MSG(rc == 0, "sync: %s", err.message);
    ASSERT_INT(src, 0);
    const cJSON *items = cJSON_IsArray(j) ? j : jget(j, "items");
    ASSERT_MSG(cJSON_GetArraySize(items) >= 6, "the pulled records: %s", jprint(j));
    ASSERT_MSG(st.bytes_down_wire > 0 && st.bytes_down_wire < st.bytes_down_raw,
               "answers were not gzip on the wire: %llu wire, %llu decoded bytes",
               (unsigned long long)st.bytes_down_wire, (unsigned long long)st.bytes_down_raw);
}

/* ---- logs ----------------------------------------------------------------------------- */

/* The access log is JSON lines naming time, level, request id, route, user
 * and device, and never carries the password, the token, a cursor or a
 * party id from a body. */
TEST(access_log_is_json_lines_with_user_and_device_and_no_secrets) {
    srv_t s;
    START(s);
    phone_t a;
    ASSERT_MSG(std_phone(&a, &s, "off1", "dev-log-1") == 0, "login");
    resp_t r = phone_push(&a, changes(ch_create("01LOGREC00000001", "general",
                                                "{\"party\":{\"name\":\"Zhang San\",\"id_no\":\"110101199001011234\"}}")));
    ASSERT_STATUS(r, 200);
    r = phone_pull(&a, 0, 0);
    ASSERT_STATUS(r, 200);
    r = phone_get(&a, "/v1/me");
    ASSERT_STATUS(r, 200);
    const char *rid = resp_header(&r, "X-Request-Id");
    ASSERT(rid);
    r = phone_get(&a, "/v1/no-such-thing");
    ASSERT_STATUS(r, 404);
    ASSERT_INT(srv_stop(&s), 0);
    FILE *f = fopen(hfmt("%s/server.log", s.dir), "r");
    ASSERT(f);
    static char line[8192];
    int me = 0, miss = 0;
    while (fgets(line, sizeof line, f)) {
        ASSERT_MSG(!strstr(line, std_pass("off1")), "the password is in the log: %s", line);
        ASSERT_MSG(!strstr(line, a.token), "the token is in the log: %s", line);
        ASSERT_MSG(!strstr(line, "110101199001011234"), "a party id is in the log: %s", line);
        ASSERT_MSG(!a.cursor || !strstr(line, a.cursor), "a cursor is in the log: %s", line);
        if (line[0] != '{') continue;
        cJSON *j = jparse(line);
        ASSERT_MSG(j, "a log line that starts like JSON is not JSON: %s", line);
        ASSERT_MSG(jstr(j, "time") && strlen(jstr(j, "time")) == 24 && jstr(j, "time")[23] == 'Z',
                   "time: %s", line);
        const char *id = jstr(j, "id");
        if (id && strcmp(id, rid) == 0) {
            me = 1;
            ASSERT_JSTR(j, "level", "info");
            ASSERT_JSTR(j, "method", "GET");
            ASSERT_JSTR(j, "route", "/v1/me");
            ASSERT_JSTR(j, "user", a.user_id);
            ASSERT_JSTR(j, "device", "dev-log-1");
            ASSERT_JINT(j, "status", 200);
            ASSERT_MSG(jget(j, "ms") && cJSON_IsNumber(jget(j, "ms")), "ms: %s", line);
        }
        if (jstr(j, "path") && strcmp(jstr(j, "path"), "/v1/no-such-thing") == 0) {
            miss = 1;
            ASSERT_JSTR(j, "level", "warn");
            ASSERT_MSG(cJSON_IsNull(jget(j, "route")), "route of an unknown path: %s", line);
        }
    }
    fclose(f);
    ASSERT_MSG(me && miss, "request lines missing from the log (me %d, unknown path %d)", me, miss);
}

/* ---- libcasesync: change listener, blob download -------------------------------------- */

typedef struct changes_seen {
    pthread_mutex_t mu;
    char log[4096];
    int n;
} changes_seen_t;

static void on_change(void *ud, const char *record_id, int what) {
    changes_seen_t *c = ud;
    pthread_mutex_lock(&c->mu);
    size_t len = strlen(c->log);
    snprintf(c->log + len, sizeof c->log - len, "%d:%s;", what, record_id ? record_id : "-");
    c->n++;
    pthread_mutex_unlock(&c->mu);
}

static casesync_t *open_handle(srv_t *s, const char *user, const char *device) {
    char *dir = strdup("/tmp/casesync-lib-XXXXXX");
    if (!dir || !mkdtemp(dir)) {
        free(dir);
        return NULL;
    }
    h_keep(dir, rm_state);
    casesync_options_t o = {0};
    o.state_dir = dir;
    o.no_sync = 1;
    casesync_t *h = NULL;
    casesync_error_t err;
    if (!std_user(s, user) || casesync_open(&o, &h, &err) != 0) return NULL;
    if (casesync_login(h, s->base, user, std_pass(user), device, &err) != 0) {
        fprintf(stderr, "    login: %s\n", err.message);
        casesync_close(h);
        return NULL;
    }
    return h;
}

TEST(client_change_listener_fires_on_local_edits_and_pulled_changes) {
    srv_t s;
    START(s);
    casesync_t *h = open_handle(&s, "off1", "dev-chg-1");
    ASSERT(h);
    static changes_seen_t seen = {PTHREAD_MUTEX_INITIALIZER, "", 0};
    ASSERT_INT(casesync_on_change(h, on_change, &seen), 0);
    casesync_error_t err;
    char id[CASESYNC_ID_MAX];
    const char *fields = hfmt("{\"procedure\":\"general\",\"source\":\"patrol\",\"description\":\"a vendor\","
                              "\"occurred_at\":\"%s\",\"grid\":\"%s\",\"address\":\"1 Qianmen St\","
                              "\"location\":{\"lon\":116.39,\"lat\":39.9,\"crs\":\"wgs84\"}}",
                              iso_now(-60000), GRID1);
    int rc = casesync_create(h, TYPE_VENDING, fields, "01CHANGELSTN0001", id, &err);
    ASSERT_MSG(rc == 0, "create: %s", err.message);
    ASSERT_MSG(strstr(seen.log, "1:01CHANGELSTN0001;"), "no LOCAL change for the create: %s", seen.log);
    rc = casesync_note(h, id, "seen again at noon", NULL, &err);
    ASSERT_MSG(rc == 0, "note: %s", err.message);
    ASSERT_INT(seen.n, 2);
    casesync_report_t rep;
    ASSERT_MSG(casesync_sync(h, 0, &rep, &err) == 0, "sync: %s", err.message);
    /* Another phone edits it; the next sync brings the change. */
    phone_t b;
    ASSERT(std_phone(&b, &s, "off2", "dev-chg-2") == 0);
    resp_t r = phone_push(&b, changes(ch_update("01CHANGELSTN0001", 1, "{\"address\":\"2 Qianmen St\"}", NULL)));
    ASSERT_STATUS(r, 200);
    seen.log[0] = 0;
    ASSERT_MSG(casesync_sync(h, 0, &rep, &err) == 0, "sync: %s", err.message);
    ASSERT_MSG(strstr(seen.log, "2:01CHANGELSTN0001;"), "no PULLED change after the other phone's edit: %s", seen.log);
    /* Cleared: no more calls. */
    ASSERT_INT(casesync_on_change(h, NULL, NULL), 0);
    int before = seen.n;
    ASSERT_MSG(casesync_note(h, id, "after the listener", NULL, &err) == 0, "note: %s", err.message);
    ASSERT_INT(seen.n, before);
    casesync_close(h);
}

/* Uploads n pseudo-random bytes as off1 over tus; the sha256 (pool). */
static const char *upload_bytes(srv_t *s, const char *token, const unsigned char *data, size_t n) {
    unsigned char md[32];
    unsigned int mdn = 0;
    EVP_Digest(data, n, md, &mdn, EVP_sha256(), NULL);
    char *hex = hfmt("%64s", "");
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    char b64[128];
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)hex, 64);
    const char *hc[] = {"Tus-Resumable: 1.0.0", hfmt("Upload-Length: %zu", n), hfmt("Upload-Metadata: sha256 %s", b64),
                        NULL};
    resp_t r = http(s, "POST", "/v1/uploads", token, NULL, hc);
    const char *loc = resp_header(&r, "Location");
    if (r.status != 201 || !loc) return NULL;
    if (strncmp(loc, s->base, strlen(s->base)) == 0) loc += strlen(s->base);
    const char *hp[] = {"Tus-Resumable: 1.0.0", "Upload-Offset: 0", "Content-Type: application/offset+octet-stream",
                        NULL};
    r = http_raw(s, "PATCH", loc, token, data, n, hp);
    return r.status == 204 ? hex : NULL;
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *b = h_keep(malloc((size_t)len + 1), NULL);
    *n = b ? fread(b, 1, (size_t)len, f) : 0;
    fclose(f);
    return b;
}

TEST(client_download_resumes_with_range_and_checks_the_hash) {
    srv_t s;
    START(s);
    casesync_t *h = open_handle(&s, "off1", "dev-dl-1");
    ASSERT(h);
    phone_t a;
    ASSERT(phone_login(&a, &s, "off1", std_pass("off1"), "dev-dl-0") == 0);
    size_t n = 600 * 1024;
    unsigned char *data = h_keep(malloc(n), NULL);
    ASSERT(data);
    unsigned int x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (unsigned char)(x >> 16);
    }
    const char *sha = upload_bytes(&s, a.token, data, n);
    ASSERT_MSG(sha, "upload");
    char *dir = strdup("/tmp/casesync-dl-XXXXXX");
    ASSERT(dir && mkdtemp(dir));
    h_keep(dir, rm_state);
    const char *path = hfmt("%s/photo.jpg", dir);
    casesync_error_t err;
    /* Cut after about a third of the bytes. */
    ASSERT_INT(casesync_fault(h, CASESYNC_PHASE_DOWNLOAD, -1, 200 * 1024), 0);
    int rc = casesync_download(h, sha, path, &err);
    ASSERT_MSG(rc == CASESYNC_E_CANCELED, "a cut download returned %d: %s", rc, err.message);
    struct stat st;
    ASSERT_MSG(stat(hfmt("%s.part", path), &st) == 0 && st.st_size > 0 && (size_t)st.st_size < n,
               "the cut download left no partial file");
    ASSERT_MSG(access(path, F_OK) != 0, "a cut download left the final file");
    casesync_stats_t s0, s1;
    ASSERT_INT(casesync_stats(h, &s0), 0);
    rc = casesync_download(h, sha, path, &err);
    ASSERT_MSG(rc == 0, "the resumed download returned %d: %s", rc, err.message);
    ASSERT_INT(casesync_stats(h, &s1), 0);
    size_t got = 0;
    unsigned char *back = read_all(path, &got);
    ASSERT_MSG(back && got == n && memcmp(back, data, n) == 0, "the downloaded file differs (%zu bytes)", got);
    uint64_t fetched = s1.bytes_down_raw - s0.bytes_down_raw;
    ASSERT_MSG(fetched < n - (uint64_t)st.st_size / 2, "the resume fetched %llu bytes of %zu: not a Range resume",
               (unsigned long long)fetched, n);
    ASSERT_MSG(access(hfmt("%s.part", path), F_OK) != 0, "the part file stayed");
    /* Unknown (or unreadable) blobs: not found. */
    rc = casesync_download(h, "0000000000000000000000000000000000000000000000000000000000000000",
                           hfmt("%s/none", dir), &err);
    ASSERT_INT(rc, CASESYNC_E_NOT_FOUND);
    casesync_close(h);
}

/* ---- the built-in schema ---------------------------------------------------------------- */

/* The built-in copy is the shipped schema and calendar, byte for byte: the
 * same schema ETag and the same calendar signature as the files (so a
 * server switching between them re-indexes nothing); calendar names must
 * come sorted. */
TEST(built_in_schema_and_calendar_match_the_shipped_files) {
    schema_t *file = NULL, *mem = NULL;
    schema_err_t e;
    ASSERT_MSG(schema_load_file(CASESYNC_SCHEMA_PATH, &file, &e) == 0, "load file: %s", e.message);
    size_t len;
    const char *json = schema_embedded_json(&len);
    ASSERT_MSG(schema_load(json, len, &mem, &e) == 0, "load built-in: %s", e.message);
    ASSERT_STR(schema_etag(mem), schema_etag(file));
    const char *const *names, *const *texts;
    const size_t *lens;
    int n = schema_embedded_calendars(&names, &texts, &lens);
    ASSERT(n >= 2);
    ASSERT_MSG(schema_load_calendar_texts(mem, "(built in)", n, names, texts, lens, &e) == 0, "calendar: %s",
               e.message);
    ASSERT_STR(schema_calendar_sig(mem), schema_calendar_sig(file));
    ASSERT_STR(schema_calendar_dir(mem), "(built in)");
    schema_t *again = NULL;
    ASSERT(schema_load(json, len, &again, &e) == 0);
    const char *rev_names[2] = {names[1], names[0]}, *rev_texts[2] = {texts[1], texts[0]};
    size_t rev_lens[2] = {lens[1], lens[0]};
    ASSERT_INT(schema_load_calendar_texts(again, "x", 2, rev_names, rev_texts, rev_lens, &e), SCHEMA_E_LOAD);
    schema_free(again);
    schema_free(mem);
    schema_free(file);
}
