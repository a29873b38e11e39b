/* test_console.c -- the supervisor console: its files and headers, its cookie
 * session and CSRF check (plain HTTP), and the browser scenarios: each starts
 * casesyncd with a seeded unit and runs `node tests/browser/<x>.mjs BASE_URL
 * SHOTS_DIR` (playwright-core driving Debian's /usr/bin/chromium), passing
 * when the script exits 0. A missing node or chromium fails the test with
 * the reason: nothing is skipped. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/console.h"
#include "tests/harness.h"

#ifndef CASESYNC_SRC_DIR
#define CASESYNC_SRC_DIR "."
#endif
#define CHROMIUM "/usr/bin/chromium"
#define BROWSER_TIMEOUT_S 100
#define DAY_MS (24LL * 3600 * 1000)

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")
#define PHONE(p, s, name, dev) ASSERT_MSG(std_phone(&(p), &(s), (name), (dev)) == 0, "login of %s failed", (name))

/* ---- helpers ------------------------------------------------------------------- */

static const char *at_create(const char *id, const char *procedure, const char *extra, long long off_ms) {
    cJSON *ch = jparse(ch_create(id, procedure, extra));
    cJSON_ReplaceItemInObjectCaseSensitive(ch, "at", cJSON_CreateString(iso_now(off_ms)));
    return jprint(ch);
}

static const char *at_transition(const char *id, long long base, const char *to, long long off_ms) {
    return hfmt("{\"op\":\"transition\",\"record_id\":\"%s\",\"base_version\":%lld,\"at\":\"%s\",\"to\":\"%s\"}",
                id, base, iso_now(off_ms), to);
}

/* Every result of a push applied (or merged); prints the answer otherwise. */
static int all_applied(resp_t *r) {
    if (r->status != 200)
        return fprintf(stderr, "    push -> %ld %s\n", r->status, r->body), 0;
    cJSON *res = jget(resp_json(r), "results");
    for (cJSON *x = res ? res->child : NULL; x; x = x->next) {
        const char *st = jstr(x, "status");
        if (!st || (strcmp(st, "applied") != 0 && strcmp(st, "merged") != 0))
            return fprintf(stderr, "    push result: %s\n", jprint(x)), 0;
    }
    return 1;
}

/* A unit as a supervisor finds it on a Monday: cases in every state of the
 * digital procedure, a closed one, a voided one, an overdue simple case, a
 * clue that cannot be filed yet, an open conflict, a rejection and a phone.
 * Evidence is added by the browser scripts (they make real media). */
static int seed_unit(srv_t *s) {
    phone_t adm, o1, o2, aux;
    if (std_phone(&adm, s, "admin", "seed-admin") || std_phone(&o1, s, "off1", "phone-off1") ||
        std_phone(&o2, s, "off2", "phone-off2") || std_phone(&aux, s, "aux1", "phone-aux1") || !std_user(s, "sup1") ||
        !std_user(s, "leg1") || !std_user(s, "offx") || !std_user(s, "off3"))
        return -1;
    const char *u1 = o1.user_id, *u2 = o2.user_id;
    resp_t ul = http(s, "GET", "/v1/admin/users", adm.token, NULL, NULL);
    if (ul.status != 200)
        return -1;
    /* People by name, as a bureau has them. */
    static const char *const names[][2] = {{"off1", "王强"}, {"off2", "李明"}, {"off3", "陈刚"}, {"aux1", "刘协管"},
                                           {"sup1", "赵中队长"}, {"leg1", "孙法制"}, {"offx", "周外队"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        cJSON *u = jarr_find(jget(resp_json(&ul), "items"), "username", names[i][0]);
        resp_t pr = http(s, "PATCH", hfmt("/v1/admin/users/%s", u ? jstr(u, "id") : "none"), adm.token,
                         hfmt("{\"name\":\"%s\"}", names[i][1]), NULL);
        if (pr.status != 200)
            return fprintf(stderr, "    naming %s -> %ld %s\n", names[i][0], pr.status, pr.body), -1;
    }
    const char *decide = hfmt("{\"party\":{\"kind\":\"person\",\"name\":\"张三\"},\"illegal_item_code\":\"C0501-003\","
                              "\"assignee\":\"%s\",\"assist_officer\":\"%s\",\"decision_doc_no\":\"JY-0042\","
                              "\"fine_amount\":200,\"description\":\"流动摊贩占道经营\",\"address\":\"新华路12号\"}",
                              u1, u2);
    static const char *const steps[] = {"reported", "filed", "dispatched", "processing", "feedback", "checking", "closed"};
    char buf[65536];
    size_t n = 0;
    buf[n++] = '[';
    /* cs-dig-0 .. cs-dig-6: one digital case standing in each state. */
    for (int i = 0; i < 7; i++) {
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? "," : "",
                              at_create(hfmt("cs-dig-%d", i), "digital",
                                        hfmt("{\"description\":\"占道经营 第%d号\",\"address\":\"新华路%d号\"}", i, i + 1),
                                        -3 * DAY_MS));
        for (int k = 1; k <= i; k++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, ",%s", at_transition(hfmt("cs-dig-%d", i), k, steps[k], -2 * DAY_MS + k));
    }
    /* An overdue simple case: decided 10 days ago, never recorded or paid. */
    n += (size_t)snprintf(buf + n, sizeof buf - n, ",%s,%s", at_create("cs-simple-late", "simple", decide, -11 * DAY_MS),
                          at_transition("cs-simple-late", 1, "decided", -10 * DAY_MS));
    /* A voided case. */
    n += (size_t)snprintf(buf + n, sizeof buf - n, ",%s,%s", at_create("cs-voided", "digital", NULL, -DAY_MS),
                          ch_void("cs-voided", 1, "重复上报"));
    /* A general clue with no party yet: 立案 is offered but its guard refuses. */
    n += (size_t)snprintf(buf + n, sizeof buf - n, ",%s", at_create("cs-clue1", "general", NULL, -DAY_MS));
    snprintf(buf + n, sizeof buf - n, "]");
    resp_t r = phone_push(&adm, buf);
    if (!all_applied(&r))
        return -1;
    /* An open conflict: two officers set the party (manual) from version 1. */
    r = phone_push(&o1, changes(at_create("cs-conflict", "general", NULL, -DAY_MS)));
    if (!all_applied(&r))
        return -1;
    r = phone_push(&o1, changes(ch_update("cs-conflict", 1, "{\"party\":{\"kind\":\"person\",\"name\":\"李四\"}}", NULL)));
    if (!all_applied(&r))
        return -1;
    r = phone_push(&o2, changes(ch_update("cs-conflict", 1, "{\"party\":{\"kind\":\"person\",\"name\":\"李斯\"}}", NULL)));
    if (r.status != 200 || !jstr(resp_json(&r), "results[0].status") ||
        strcmp(jstr(resp_json(&r), "results[0].status"), "conflict") != 0)
        return fprintf(stderr, "    the conflict did not open: %s\n", r.body), -1;
    /* A rejection: an auxiliary tries to file a case (立案 is a supervisor's). */
    r = phone_push(&aux, changes(ch_transition("cs-dig-0", 1, "filed")));
    if (r.status != 200 || strcmp(jstr(resp_json(&r), "results[0].status"), "rejected") != 0)
        return fprintf(stderr, "    the rejection did not happen: %s\n", r.body), -1;
    return 0;
}

/* Runs node on a script of tests/browser with BASE_URL and the screenshot
 * folder; its exit code (-1 when it could not run or timed out). */
static int run_browser(srv_t *s, const char *script) {
    if (access(CHROMIUM, X_OK) != 0) {
        fprintf(stderr, "    %s is missing: the browser tests need Debian's chromium (make deps installs it)\n", CHROMIUM);
        return -1;
    }
    const char *mods = CASESYNC_SRC_DIR "/node_modules/playwright-core";
    if (access(mods, R_OK) != 0) {
        fprintf(stderr, "    %s is missing: run make deps (npm ci)\n", mods);
        return -1;
    }
    const char *path = hfmt("%s/tests/browser/%s", CASESYNC_SRC_DIR, script);
    const char *shots = hfmt("%s/build/console-shots", CASESYNC_SRC_DIR);
    mkdir(hfmt("%s/build", CASESYNC_SRC_DIR), 0755);
    mkdir(shots, 0755);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        alarm(0);
        execlp("node", "node", path, s->base, shots, (char *)NULL);
        fprintf(stderr, "    node could not run (%s): the browser tests need nodejs (make deps installs it)\n",
                strerror(errno));
        _exit(127);
    }
    int st = 0;
    for (int waited = 0; waited < BROWSER_TIMEOUT_S * 10; waited++) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        sleep_ms(100);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    fprintf(stderr, "    %s ran past %d s\n", script, BROWSER_TIMEOUT_S);
    return -1;
}

#define BROWSER(script) BROWSER_CONFIG(script, NULL)
#define BROWSER_CONFIG(script, config)                                                              \
    do {                                                                                            \
        srv_t s_ = {.slot = -1};                                                                    \
        ASSERT_MSG(((config) ? srv_start_config(&s_, (config)) : srv_start(&s_)) == 0,              \
                   "casesyncd did not start");                                                      \
        ASSERT_MSG(seed_unit(&s_) == 0, "seeding the unit failed");                                 \
        int rc_ = run_browser(&s_, (script));                                                       \
        ASSERT_MSG(rc_ == 0, "node tests/browser/%s exited %d (its output is above)", (script), rc_); \
    } while (0)

/* ---- plain HTTP ------------------------------------------------------------------ */

/* The console is in the binary, with a CSP that allows no inline script. */
TEST(console_files_embedded_with_csp) {
    srv_t s = {.slot = -1};
    START(s);
    resp_t r = http(&s, "GET", "/console/", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT(strstr(resp_header(&r, "Content-Type"), "text/html"));
    const char *csp = resp_header(&r, "Content-Security-Policy");
    ASSERT_MSG(csp && strstr(csp, "default-src 'self'") && !strstr(csp, "unsafe-inline"), "CSP: %s", csp ? csp : "none");
    ASSERT_STR(resp_header(&r, "X-Frame-Options"), "DENY");
    /* Every script has a src: nothing inline. */
    for (const char *p = r.body; (p = strstr(p, "<script")); p++)
        ASSERT_MSG(strstr(p, "src=") && strstr(p, "src=") < strchr(p, '>'), "an inline script in index.html");
    ASSERT(!strstr(r.body, "style="));
    r = http(&s, "GET", "/console/app.js", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT(strstr(resp_header(&r, "Content-Type"), "javascript"));
    ASSERT(r.len > 10000);
    r = http(&s, "GET", "/console", NULL, NULL, NULL);
    ASSERT_STATUS(r, 302);
    ASSERT_STR(resp_header(&r, "Location"), "/console/");
    r = http(&s, "GET", "/console/nothing.js", NULL, NULL, NULL);
    ASSERT_ERROR(r, 404, "not_found");
    r = http(&s, "GET", "/console/..%2Fsecret", NULL, NULL, NULL);
    ASSERT_STATUS(r, 404);
}

static const char *cookie_of(resp_t *r) {
    const char *c = resp_header(r, "Set-Cookie");
    if (!c || strncmp(c, "casesync_session=", 17) != 0)
        return NULL;
    const char *e = strchr(c, ';');
    return hfmt("Cookie: %.*s", (int)(e ? e - c : (long)strlen(c)), c);
}

/* Sign-in gives an HttpOnly SameSite=Strict cookie and no token to the page;
 * a state change by cookie needs the CSRF header and a same Origin; the
 * console is a device of its own. */
TEST(console_cookie_session_and_csrf) {
    srv_t s = {.slot = -1};
    START(s);
    ASSERT(std_user(&s, "sup1") && std_user(&s, "off1"));
    const char *body = hfmt("{\"username\":\"sup1\",\"password\":\"%s\",\"device_id\":\"console-abcdef0123\"}", std_pass("sup1"));
    /* Without the console's header (a cross-site form): refused. */
    resp_t r = http(&s, "POST", "/console/api/login", NULL, body, NULL);
    ASSERT_ERROR(r, 403, "forbidden");
    const char *hh[] = {"X-Casesync-Console: 1", "Origin: http://evil.example", NULL};
    r = http(&s, "POST", "/console/api/login", NULL, body, hh);
    ASSERT_ERROR(r, 403, "forbidden");
    const char *h[] = {"X-Casesync-Console: 1", NULL};
    r = http(&s, "POST", "/console/api/login", NULL, body, h);
    ASSERT_STATUS(r, 200);
    const char *set = resp_header(&r, "Set-Cookie");
    ASSERT_MSG(set && strstr(set, "HttpOnly") && strstr(set, "SameSite=Strict") && strstr(set, "Path=/"), "Set-Cookie: %s",
               set ? set : "none");
    ASSERT(!jget(resp_json(&r), "token"));
    const char *csrf = jstr(resp_json(&r), "csrf");
    ASSERT(csrf && strlen(csrf) == 64);
    ASSERT_STR(jstr(resp_json(&r), "device_id"), "console-abcdef0123");
    const char *cookie = cookie_of(&r);
    ASSERT(cookie);
    /* The cookie reads. */
    const char *c1[] = {cookie, NULL};
    r = http(&s, "GET", "/console/api/session", NULL, NULL, c1);
    ASSERT_STATUS(r, 200);
    ASSERT_STR(jstr(resp_json(&r), "csrf"), csrf);
    ASSERT_STR(jstr(resp_json(&r), "user.role"), "supervisor");
    r = http(&s, "GET", "/v1/devices", NULL, NULL, c1);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(jarr_find(resp_json(&r), "device_id", "console-abcdef0123"), "the console is not in 设备: %s", r.body);
    r = http(&s, "GET", "/console/api/people", NULL, NULL, c1);
    ASSERT_STATUS(r, 200);
    ASSERT(strstr(r.body, "\"off1\"") && !strstr(r.body, "argon2"));
    /* A change by cookie without the CSRF header, with a wrong one, or from another origin: 403. */
    const char *rb = "{\"wipe\":false}";
    r = http(&s, "POST", "/v1/devices/console-abcdef0123/revoke", NULL, rb, c1);
    ASSERT_ERROR(r, 403, "forbidden");
    const char *c2[] = {cookie, "X-CSRF-Token: 0000000000000000000000000000000000000000000000000000000000000000", NULL};
    r = http(&s, "POST", "/v1/devices/console-abcdef0123/revoke", NULL, rb, c2);
    ASSERT_ERROR(r, 403, "forbidden");
    const char *xc = hfmt("X-CSRF-Token: %s", csrf);
    const char *c3[] = {cookie, xc, hfmt("Origin: http://evil.example"), NULL};
    r = http(&s, "POST", "/v1/devices/console-abcdef0123/revoke", NULL, rb, c3);
    ASSERT_ERROR(r, 403, "forbidden");
    /* Logout with the header: the cookie ends, and so does the token. */
    const char *c4[] = {cookie, xc, hfmt("Origin: %s", s.base), NULL};
    r = http(&s, "POST", "/console/api/logout", NULL, NULL, c4);
    ASSERT_STATUS(r, 204);
    ASSERT(strstr(resp_header(&r, "Set-Cookie"), "Max-Age=0"));
    r = http(&s, "GET", "/console/api/session", NULL, NULL, c1);
    ASSERT_ERROR(r, 401, "unauthenticated");
    /* An officer signs in but lists no people. */
    const char *ob = hfmt("{\"username\":\"off1\",\"password\":\"%s\"}", std_pass("off1"));
    r = http(&s, "POST", "/console/api/login", NULL, ob, h);
    ASSERT_STATUS(r, 200);
    ASSERT(strncmp(jstr(resp_json(&r), "device_id"), "console-", 8) == 0);
    const char *oc[] = {cookie_of(&r), NULL};
    r = http(&s, "GET", "/console/api/people", NULL, NULL, oc);
    ASSERT_ERROR(r, 403, "forbidden");
    r = http(&s, "GET", "/v1/cases", NULL, NULL, oc);
    ASSERT_ERROR(r, 403, "forbidden");
    /* A console device id outside the pattern is refused. */
    r = http(&s, "POST", "/console/api/login", NULL,
             hfmt("{\"username\":\"sup1\",\"password\":\"%s\",\"device_id\":\"phone-1\"}", std_pass("sup1")), h);
    ASSERT_ERROR(r, 422, "validation_failed");
}

/* Which time zones the console may show times in: China, UTC and fixed offsets. */
TEST(console_time_zone_parse_accepts_china_utc_and_offsets) {
    static const struct {
        const char *name;
        int ok, minutes;
    } cases[] = {
        {"Asia/Shanghai", 1, 480}, {"PRC", 1, 480},     {"Asia/Chongqing", 1, 480}, {"UTC", 1, 0},
        {"Etc/UTC", 1, 0},         {"+08:00", 1, 480},  {"-03:30", 1, -210},        {"+14:00", 1, 840},
        {"-12:00", 1, -720},       {"+00:00", 1, 0},    {"+14:01", 0, 0},           {"-12:30", 0, 0},
        {"+8:00", 0, 0},           {"+08:60", 0, 0},    {"08:00", 0, 0},            {"+08:00 ", 0, 0},
        {"Europe/Berlin", 0, 0},   {"asia/shanghai", 0, 0}, {"", 0, 0},             {"+0a:00", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int m = -1;
        int rc = console_time_zone_parse(cases[i].name, &m);
        ASSERT_MSG((rc == 0) == cases[i].ok, "%s: rc %d", cases[i].name, rc);
        ASSERT_MSG(m == cases[i].minutes, "%s: %d minutes, expected %d", cases[i].name, m, cases[i].minutes);
    }
    int m = 5;
    ASSERT_INT(console_time_zone_parse(NULL, &m), -1);
    ASSERT_INT(m, 0);
}

/* The config key time_zone reaches the console's session; the default is
 * Asia/Shanghai; a zone the console cannot show stops the start. */
TEST(console_session_carries_the_configured_time_zone) {
    const char *h[] = {"X-Casesync-Console: 1", NULL};
    const char *tz[][3] = {{NULL, "Asia/Shanghai", "+08:00"}, {"{\"time_zone\":\"-03:30\"}", "-03:30", "-03:30"},
                           {"{\"time_zone\":\"UTC\"}", "UTC", "+00:00"}};
    for (int i = 0; i < 3; i++) {
        srv_t s = {.slot = -1};
        ASSERT_MSG((tz[i][0] ? srv_start_config(&s, tz[i][0]) : srv_start(&s)) == 0, "casesyncd did not start");
        ASSERT(std_user(&s, "sup1"));
        resp_t r = http(&s, "POST", "/console/api/login", NULL,
                        hfmt("{\"username\":\"sup1\",\"password\":\"%s\"}", std_pass("sup1")), h);
        ASSERT_STATUS(r, 200);
        const char *c[] = {cookie_of(&r), NULL};
        r = http(&s, "GET", "/console/api/session", NULL, NULL, c);
        ASSERT_STATUS(r, 200);
        ASSERT_JSTR(resp_json(&r), "time_zone.name", tz[i][1]);
        ASSERT_JSTR(resp_json(&r), "time_zone.utc_offset", tz[i][2]);
        srv_stop(&s);
    }
    srv_t bad = {.slot = -1};
    ASSERT_MSG(srv_start_config(&bad, "{\"time_zone\":\"Europe/Berlin\"}") != 0,
               "casesyncd started with a time zone it cannot show");
    srv_t bad2 = {.slot = -1};
    ASSERT_MSG(srv_start_config(&bad2, "{\"time_zone\":8}") != 0, "casesyncd started with time_zone 8");
}

/* ---- browser scenarios ------------------------------------------------------------ */

/* Sign in, 工作台, filter the list, CSV of the filter, open a case, play a
 * video from the middle (Range), photos inline, a missing item marked. */
TEST(browser_supervisor_reads) {
    srv_t s = {.slot = -1};
    START(s);
    ASSERT_MSG(seed_unit(&s) == 0, "seeding the unit failed");
    int rc = run_browser(&s, "supervisor_reads.mjs");
    ASSERT_MSG(rc == 0, "node tests/browser/supervisor_reads.mjs exited %d (its output is above)", rc);
    /* The video was read in ranges: 206 answers for its blob in the access log. */
    FILE *f = fopen(hfmt("%s/server.log", s.dir), "r");
    ASSERT_MSG(f, "no server log in %s", s.dir);
    char line[1024];
    int partial = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "\"method\":\"GET\"") && strstr(line, "\"path\":\"/v1/blobs/") &&
            strstr(line, "\"status\":206")) /* one JSON line per request */
            partial++;
    fclose(f);
    ASSERT_MSG(partial >= 1, "the video was never fetched with a Range (no 206 in the access log)");
}

/* 立案 a reported case, a refused 立案 shown verbatim, resolve a conflict,
 * file a new case from the desk, revoke a phone. */
TEST(browser_supervisor_acts) { BROWSER("supervisor_acts.mjs"); }

/* Server-side filters in 案件 (a page holds exactly limit matching cases, the
 * CSV is the filtered set); 修改 of a writable field; 更正 of a frozen fine,
 * refused over the Art. 51 cap (shown verbatim), then applied and shown in
 * the history as a correction with its reason. */
TEST(browser_supervisor_edits_and_corrects) { BROWSER("supervisor_edits.mjs"); }

/* 月报: figures against /v1/stats, CSV with Chinese headers and BOM, A4 PDF;
 * 人员 for the admin. */
TEST(browser_monthly_report) { BROWSER("monthly_report.mjs"); }

/* A server set to time_zone -03:30: the page shows times and sends date
 * bounds in it, whatever the browser's own zone. */
TEST(browser_times_in_the_configured_zone) { BROWSER_CONFIG("time_zone.mjs", "{\"time_zone\":\"-03:30\"}"); }

/* An auxiliary and an officer of another unit see none of it. */
TEST(browser_outsiders_see_nothing) { BROWSER("outsiders.mjs"); }

/* The field workflows (issue 13): 督办 (orders with state and escalation,
 * issued from a case and in bulk in one push, replies on the case), the
 * hotline loop, enforcement and the late fee, 公示, a party's earlier cases
 * with a first offence flagged, 热线导入 of CSV and JSON, the workflow
 * figures in 月报 and 工作台, the 黑名单 — each against the API. */
TEST(browser_field_workflows) { BROWSER("workflows.mjs"); }
