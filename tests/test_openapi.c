/* test_openapi.c -- docs/openapi.yaml against the server that serves it:
 * the document is valid OpenAPI 3.1 (swagger-parser), every route of the
 * route table is in it (and nothing else is), casesyncd serves it, and every
 * answer the integration tests received validates against it (ajv).
 *
 * Caveats:
 * - The checks run node (tests/openapi/check.mjs) with the npm packages
 *   pinned in package-lock.json, installed by scripts/deps.sh.
 * - The answers come from tests/harness.c: with CASESYNC_CAPTURE_DIR set
 *   (`make test` sets it) http() records each answer there. The check runs
 *   last (tests/main.c runs tests named final_* after all others) and first
 *   makes a tour of every endpoint itself, so it has something to check
 *   also when run alone.
 */
#include "server/routes.h"
#include "tests/harness.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef CASESYNC_SRC_DIR
#define CASESYNC_SRC_DIR "."
#endif
#define DOC CASESYNC_SRC_DIR "/docs/openapi.yaml"

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")

/* Runs check.mjs with args (stdin from in_file when not NULL); its exit code
 * (-1 when it could not run), its output in *out (pool). */
static int run_check(const char *args, const char *in_file, const char **out) {
    const char *cmd = hfmt("cd '%s' && node tests/openapi/check.mjs %s <'%s' 2>&1", CASESYNC_SRC_DIR, args,
                           in_file ? in_file : "/dev/null");
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char buf[4096];
    size_t n, len = 0;
    char *all = hfmt("%s", "");
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
        char *next = hfmt("%.*s%.*s", (int)len, all, (int)n, buf);
        len += n;
        all = next;
    }
    int st = pclose(p);
    *out = all;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(openapi_document_is_valid_openapi_31) {
    const char *out;
    int rc = run_check("lint " DOC, NULL, &out);
    ASSERT_MSG(rc == 0, "check.mjs lint exited %d:\n%s", rc, out);
    ASSERT_MSG(strstr(out, "operations"), "no summary from the linter:\n%s", out);
}

/* The linter is no rubber stamp: a document with an operation that has no
 * responses, and one with a bad $ref, are refused. */
TEST(openapi_lint_refuses_a_broken_document) {
    char dir[] = "/tmp/casesync-oa-XXXXXX";
    ASSERT(mkdtemp(dir));
    const char *bad = hfmt("%s/bad.yaml", dir);
    FILE *f = fopen(bad, "w");
    ASSERT(f);
    fputs("openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /x:\n    get:\n"
          "      operationId: x\n      summary: x\n      responses:\n        '200':\n"
          "          description: ok\n          content:\n            application/json:\n"
          "              schema: {$ref: '#/components/schemas/Nowhere'}\n",
          f);
    fclose(f);
    const char *out;
    int rc = run_check(hfmt("lint %s", bad), NULL, &out);
    unlink(bad);
    rmdir(dir);
    ASSERT_MSG(rc == 1, "a document with a dangling $ref passed the lint (exit %d):\n%s", rc, out);
}

TEST(openapi_documents_every_served_route) {
    char path[] = "/tmp/casesync-routes-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    FILE *f = fdopen(fd, "w");
    ASSERT(f);
    const char *m, *pat;
    size_t n = 0;
    for (size_t i = 0; routes_table_entry(i, &m, &pat) == 0; i++, n++)
        fprintf(f, "%s %s\n", m, pat);
    fclose(f);
    ASSERT_MSG(n > 30, "the route table has only %zu routes", n);
    const char *out;
    int rc = run_check("routes " DOC, path, &out);
    ASSERT_MSG(rc == 0, "check.mjs routes exited %d:\n%s", rc, out);

    /* And it notices a route the document lacks. */
    f = fopen(path, "a");
    ASSERT(f);
    fputs("GET /v1/not-in-the-document\n", f);
    fclose(f);
    rc = run_check("routes " DOC, path, &out);
    unlink(path);
    ASSERT_MSG(rc == 1 && strstr(out, "/v1/not-in-the-document"), "an undocumented route passed (exit %d):\n%s",
               rc, out);
}

TEST(openapi_served_at_v1_openapi_yaml) {
    srv_t s;
    START(s);
    resp_t r = http(&s, "GET", "/v1/openapi.yaml", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    const char *ct = resp_header(&r, "Content-Type");
    ASSERT_MSG(ct && strncmp(ct, "application/yaml", 16) == 0, "Content-Type %s", ct ? ct : "(none)");
    FILE *f = fopen(DOC, "rb");
    ASSERT(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *doc = h_keep(calloc(1, (size_t)len + 1), NULL);
    ASSERT(doc && fread(doc, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    ASSERT_MSG(r.len == (size_t)len && memcmp(r.body, doc, r.len) == 0,
               "the served document (%zu bytes) is not docs/openapi.yaml (%ld bytes)", r.len, len);
}

/* The validator is no rubber stamp either: a login answer without its token,
 * a push result with an unknown status, and an undocumented status code are
 * each refused. */
TEST(openapi_validator_refuses_wrong_answers) {
    char dir[] = "/tmp/casesync-cap-XXXXXX";
    ASSERT(mkdtemp(dir));
    const char *file = hfmt("%s/1.jsonl", dir);
    const char *cases[][2] = {
        {"POST /v1/auth/login 200", "{\"expires_at\":\"2026-01-01T00:00:00.000Z\",\"device_id\":\"d\","
                                    "\"next_changeset_seq\":1,\"user\":{\"id\":\"u\",\"name\":\"n\","
                                    "\"role\":\"officer\",\"unit\":\"U1\",\"grids\":[]}}"},
        {"POST /v1/sync/push 200", "{\"changeset_seq\":1,\"server_seq\":1,\"schema_version\":1,"
                                   "\"results\":[{\"record_id\":\"r\",\"status\":\"kept\",\"version\":1}]}"},
        {"GET /v1/me 299", "{}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char method[8], route[64];
        int status;
        ASSERT(sscanf(cases[i][0], "%7s %63s %d", method, route, &status) == 3);
        const char *body = cases[i][1];
        size_t n = strlen(body);
        char *b64 = h_keep(calloc(1, 4 * ((n + 2) / 3) + 1), NULL);
        ASSERT(b64);
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)body, (int)n);
        FILE *f = fopen(file, "w");
        ASSERT(f);
        fprintf(f,
                "{\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"ctype\":\"application/json\","
                "\"cenc\":\"\",\"b64\":\"%s\",\"truncated\":false}\n",
                method, route, status, b64);
        fclose(f);
        const char *out;
        int rc = run_check(hfmt("responses " DOC " %s", dir), NULL, &out);
        ASSERT_MSG(rc == 1, "%s with %s passed the validator (exit %d):\n%s", cases[i][0], body, rc, out);
    }
    unlink(file);
    rmdir(dir);
}

/* A tour of every endpoint, so the final check sees each at least once. */
static void tour(srv_t *s) {
    phone_t a, sup;
    if (std_phone(&a, s, "off1", "dev-oa-1") != 0 || std_phone(&sup, s, "sup1", "dev-oa-sup") != 0) return;
    const char *admin;
    if (!std_user(s, "admin") || !(admin = login(s, "admin", std_pass("admin"), "dev-oa-admin", NULL))) return;
    phone_get(&a, "/v1/me");
    phone_get(&a, "/v1/schema");
    phone_push(&a, changes(ch_create("01OAPI0000000001", "general", NULL)));
    phone_push(&a, changes(ch_update("01OAPI0000000001", 1, "{\"description\":\"new words\"}", NULL),
                           ch_transition("01OAPI0000000001", 1, "no_such_state")));
    phone_pull(&a, 0, 0);
    phone_pull(&a, 0, 0);
    http(s, "POST", "/v1/sync/check", a.token, "{\"records\":[[\"01OAPI0000000001\",1],[\"01OAPIXXXXXXXXXX\",3]]}",
         NULL);
    phone_get(&sup, "/v1/cases");
    phone_get(&sup, "/v1/cases/01OAPI0000000001");
    phone_get(&sup, "/v1/cases/01OAPI0000000001/history");
    phone_get(&sup, "/v1/stats");
    phone_get(&sup, "/v1/export?format=ndjson");
    phone_get(&sup, "/v1/export?format=csv");
    phone_get(&sup, "/v1/conflicts?state=open");
    phone_get(&sup, "/v1/rejections");
    phone_get(&sup, "/v1/audit/verify");
    phone_get(&sup, "/v1/devices");
    phone_get(&a, "/v1/evidence/missing");
    http(s, "POST", "/v1/conflicts/nosuchconflict/resolve", sup.token, "{\"value\":1}", NULL);
    http(s, "GET", "/v1/admin/users", admin, NULL, NULL);
    resp_t u = http(s, "POST", "/v1/admin/users", admin,
                    "{\"username\":\"oa.user\",\"password\":\"oa-password-1\",\"role\":\"officer\",\"unit\":\"U1\"}",
                    NULL);
    const char *uid = jstr(resp_json(&u), "id");
    if (uid) http(s, "PATCH", hfmt("/v1/admin/users/%s", uid), admin, "{\"name\":\"OA User\"}", NULL);
    /* The field workflows (docs/protocol.md §9). */
    const char *ticket = "{\"ticket_no\":\"12345-OA-1\",\"type\":\"exposed_garbage\",\"description\":\"d\","
                         "\"occurred_at\":\"2026-11-02T01:00:00Z\",\"grid\":\"" GRID1 "\",\"address\":\"a\","
                         "\"location\":{\"lon\":116.4,\"lat\":39.9},\"complainant\":{\"name\":\"n\","
                         "\"phone\":\"13812345678\"}}";
    http(s, "POST", "/v1/hotline/import", sup.token,
         hfmt("{\"tickets\":[%s,{\"ticket_no\":\"12345-OA-2\",\"type\":\"no_such_type\"},%s]}", ticket, ticket), NULL);
    const char *csv_h[] = {"Content-Type: text/csv", NULL};
    http(s, "POST", "/v1/hotline/import", sup.token, "ticket_no,colour\n1,red\n", csv_h);
    phone_push(&sup, changes(ch_update(
                         "01OAPI0000000001", 0,
                         "{}", "{\"supervision\":[{\"id\":\"sv-oa-1\",\"ask\":\"a\",\"due_at\":\"2020-01-01T00:00:00Z\"}]}")));
    phone_get(&sup, "/v1/supervision?state=all");
    phone_get(&a, "/v1/supervision?state=overdue");
    http(s, "GET", "/v1/supervision?state=nonsense", sup.token, NULL, NULL);
    http(s, "POST", "/v1/parties/cases", a.token, "{\"id_no\":\"110101199001011234\"}", NULL);
    http(s, "POST", "/v1/parties/cases", a.token, "{}", NULL);
    phone_get(&sup, "/v1/parties/repeat?min=2");
    http(s, "POST", "/v1/devices/dev-oa-1/revoke", sup.token, "{\"wipe\":false}", NULL);
    http(s, "POST", "/v1/admin/devices/dev-oa-1/release", admin, NULL, NULL);
    /* tus: create, head, status, patch, and the blob. */
    static const char bytes[] = "openapi tour bytes";
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)bytes, sizeof bytes - 1, md);
    char hex[65], b64[128];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)hex, 64);
    http(s, "OPTIONS", "/v1/uploads", NULL, NULL, NULL);
    const char *tus_create[] = {"Tus-Resumable: 1.0.0", hfmt("Upload-Length: %zu", sizeof bytes - 1),
                                hfmt("Upload-Metadata: sha256 %s", b64), NULL};
    resp_t c = http(s, "POST", "/v1/uploads", sup.token, NULL, tus_create);
    const char *loc = resp_header(&c, "Location");
    if (loc) {
        const char *tus[] = {"Tus-Resumable: 1.0.0", NULL};
        http(s, "HEAD", loc, sup.token, NULL, tus);
        http(s, "GET", loc, sup.token, NULL, NULL);
        const char *patch[] = {"Tus-Resumable: 1.0.0", "Upload-Offset: 0",
                               "Content-Type: application/offset+octet-stream", NULL};
        http_raw(s, "PATCH", loc, sup.token, bytes, sizeof bytes - 1, patch);
        http(s, "DELETE", loc, sup.token, NULL, tus);
    }
    http(s, "GET", hfmt("/v1/blobs/%s", hex), sup.token, NULL, NULL);
    const char *range[] = {"Range: bytes=0-3", NULL};
    http(s, "GET", hfmt("/v1/blobs/%s", hex), sup.token, NULL, range);
    http(s, "HEAD", hfmt("/v1/blobs/%s", hex), sup.token, NULL, NULL);
    /* The console: its files and its cookie session. */
    http(s, "GET", "/console", NULL, NULL, NULL);
    http(s, "GET", "/console/", NULL, NULL, NULL);
    http(s, "GET", "/console/app.js", NULL, NULL, NULL);
    http(s, "GET", "/console/app.css", NULL, NULL, NULL);
    http(s, "GET", "/console/nothing.js", NULL, NULL, NULL);
    const char *con_h[] = {"X-Casesync-Console: 1", NULL};
    resp_t cl = http(s, "POST", "/console/api/login", NULL,
                     hfmt("{\"username\":\"sup1\",\"password\":\"%s\"}", std_pass("sup1")), con_h);
    const char *set = resp_header(&cl, "Set-Cookie"), *csrf = jstr(resp_json(&cl), "csrf");
    if (set && csrf && strncmp(set, "casesync_session=", 17) == 0) {
        const char *semi = strchr(set, ';');
        const char *cookie = hfmt("Cookie: %.*s", (int)(semi ? semi - set : (long)strlen(set)), set);
        const char *ck[] = {cookie, NULL}, *ck_csrf[] = {cookie, hfmt("X-CSRF-Token: %s", csrf), NULL};
        http(s, "GET", "/console/api/session", NULL, NULL, ck);
        http(s, "GET", "/console/api/people", NULL, NULL, ck);
        http(s, "POST", "/console/api/logout", NULL, NULL, ck);
        http(s, "POST", "/console/api/logout", NULL, NULL, ck_csrf);
    }
    http(s, "GET", "/console/api/people", a.token, NULL, NULL);
    http(s, "GET", "/healthz", NULL, NULL, NULL);
    http(s, "GET", "/readyz", NULL, NULL, NULL);
    http(s, "GET", "/metrics", admin, NULL, NULL);
    http(s, "GET", "/metrics", a.token, NULL, NULL);
    http(s, "GET", "/v1/no/such/path", a.token, NULL, NULL);
    http(s, "DELETE", "/v1/me", a.token, NULL, NULL);
    http(s, "POST", "/v1/auth/login", NULL, "{\"username\":\"off1\",\"password\":\"wrong\",\"device_id\":\"d\"}",
         NULL);
    http(s, "POST", "/v1/auth/logout", a.token, NULL, NULL);
    http(s, "GET", "/v1/me", a.token, NULL, NULL);
}

TEST(final_openapi_every_captured_answer_validates) {
    const char *dir = getenv("CASESYNC_CAPTURE_DIR");
    char tmp[] = "/tmp/casesync-cap-XXXXXX";
    if (!dir || !*dir) {
        ASSERT(mkdtemp(tmp));
        setenv("CASESYNC_CAPTURE_DIR", tmp, 1);
        dir = tmp;
    }
    srv_t s;
    START(s);
    tour(&s);
    srv_stop(&s);
    const char *out;
    int rc = run_check(hfmt("responses " DOC " %s", dir), NULL, &out);
    printf("    %s", out);
    ASSERT_MSG(rc == 0, "answers that do not match docs/openapi.yaml (exit %d):\n%s", rc, out);
}
