/* test_ops.c -- what an operator and a fleet of phones lean on: graceful stop
 * with long polls waiting, many phones pushing at once, device clocks,
 * garbage that must never cost a 500, health endpoints, user admin. The real
 * casesyncd over HTTP on loopback. */
#include "tests/harness.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")
#define PHONE(p, s, name, dev)                                                                               \
    ASSERT_MSG(std_phone(&(p), &(s), (name), (dev)) == 0, "login of %s failed", (name))

typedef struct poller {
    phone_t *p;
    int wait;
    resp_t r;
    double t_end;
} poller_t;

static void *poll_once(void *arg) {
    poller_t *q = arg;
    q->r = phone_pull(q->p, 0, q->wait);
    q->t_end = now_s();
    return NULL;
}

TEST(sigterm_answers_waiting_long_polls_and_stops) {
    srv_t s;
    START(s);
    phone_t b;
    PHONE(b, s, "off2", "dev-B");
    resp_t r = phone_pull(&b, 0, 0);
    ASSERT_STATUS(r, 200);
    poller_t q = {.p = &b, .wait = 45};
    pthread_t th;
    ASSERT(pthread_create(&th, NULL, poll_once, &q) == 0);
    sleep_ms(500);
    double t0 = now_s();
    int rc = srv_stop(&s);
    double took = now_s() - t0;
    pthread_join(th, NULL);
    ASSERT_MSG(rc == 0, "casesyncd stopped with status %d while a long poll waited", rc);
    ASSERT_MSG(took < 8, "stop took %.1f s with a long poll waiting", took);
    ASSERT_MSG(q.r.status == 200 || q.r.status == 503,
               "the waiting long poll got %ld (%s) instead of an answer", q.r.status, q.r.err);
    ASSERT_MSG(q.t_end - t0 < 8, "the long poll ended %.1f s after SIGTERM", q.t_end - t0);
}

/* ---- many phones at once ---------------------------------------------------------- */

#define PUSHERS 8
#define PUSHES 15

typedef struct pusher {
    srv_t *srv;
    phone_t ph;
    const char *record;
    int k;
    int ok;
    char fail[1024];
} pusher_t;

static void *push_notes(void *arg) {
    pusher_t *p = arg;
    for (int i = 0; i < PUSHES; i++) {
        const char *note =
            hfmt("{\"notes\":[{\"id\":\"n-%d-%d\",\"text\":\"phone %d note %d\"}]}", p->k, i, p->k, i);
        resp_t r = phone_push(&p->ph, changes(ch_update(p->record, 1, NULL, note)));
        const char *st = r.status == 200 ? jstr(resp_json(&r), "results[0].status") : NULL;
        if (!st || (strcmp(st, "applied") != 0 && strcmp(st, "merged") != 0)) {
            snprintf(p->fail, sizeof p->fail, "phone %d push %d: %ld %s%.400s", p->k, i, r.status, r.err,
                     r.body);
            return NULL;
        }
        if (jlen(r.json, "results[0].conflicts") > 0) {
            snprintf(p->fail, sizeof p->fail, "phone %d push %d: appending notes reported conflicts: %.400s",
                     p->k, i, r.body);
            return NULL;
        }
        resp_free(&r);
        p->ok++;
    }
    return NULL;
}

TEST(concurrent_pushers_lose_nothing) {
    srv_t s;
    START(s);
    phone_t a, b;
    PHONE(a, s, "off1", "dev-A");
    PHONE(b, s, "off2", "dev-B");
    const char *id = "01JDCROWD000000001";
    resp_t r = phone_push(&a, changes(ch_create(id, "general", NULL)));
    ASSERT_STATUS(r, 200);

    pusher_t p[PUSHERS];
    memset(p, 0, sizeof p);
    for (int k = 0; k < PUSHERS; k++) {
        p[k].srv = &s;
        p[k].record = id;
        p[k].k = k;
        ASSERT(phone_login(&p[k].ph, &s, "off1", std_pass("off1"), hfmt("dev-P%d", k)) == 0);
    }
    pthread_t th[PUSHERS];
    for (int k = 0; k < PUSHERS; k++)
        ASSERT(pthread_create(&th[k], NULL, push_notes, &p[k]) == 0);
    for (int k = 0; k < PUSHERS; k++)
        pthread_join(th[k], NULL);
    for (int k = 0; k < PUSHERS; k++)
        ASSERT_MSG(p[k].ok == PUSHES, "%s", p[k].fail);

    r = phone_get(&b, hfmt("/v1/cases/%s", id));
    ASSERT_STATUS(r, 200);
    cJSON *rec = resp_json(&r);
    ASSERT_JINT(rec, "version", 1 + PUSHERS * PUSHES);
    cJSON *notes = jget(rec, "fields.notes");
    ASSERT_INT(cJSON_GetArraySize(notes), PUSHERS * PUSHES);
    for (int k = 0; k < PUSHERS; k++)
        for (int i = 0; i < PUSHES; i++)
            ASSERT_MSG(jarr_find(notes, "id", hfmt("n-%d-%d", k, i)) != NULL, "note n-%d-%d lost", k, i);
    r = phone_get(&b, hfmt("/v1/cases/%s/history", id));
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "items"), 1 + PUSHERS * PUSHES);
    /* Each change got its own seq. */
    cJSON *items = jget(r.json, "items");
    for (int i = 1; i < cJSON_GetArraySize(items); i++)
        ASSERT_MSG(jint(cJSON_GetArrayItem(items, i), "seq") > jint(cJSON_GetArrayItem(items, i - 1), "seq"),
                   "history seqs not increasing at %d", i);
    r = phone_pull(&b, 0, 0);
    ASSERT_STATUS(r, 200);
    cJSON *it = pull_item(resp_json(&r), id);
    ASSERT(it != NULL);
    ASSERT_INT(jlen(it, "fields.notes"), PUSHERS * PUSHES);
    ASSERT_INT(srv_stop(&s), 0);
    cli_res_t v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "casesync verify exited %d\nstdout: %s\nstderr: %s", v.rc, v.out, v.err);
}

TEST(future_device_clock_is_clamped_to_receive_time) {
    srv_t s;
    START(s);
    phone_t a, b;
    PHONE(a, s, "off1", "dev-A");
    PHONE(b, s, "off2", "dev-B");
    const char *id = "01JDCLOCK000000001";
    resp_t r = phone_push(&a, changes(ch_create(id, "general", NULL)));
    ASSERT_STATUS(r, 200);
    /* A's clock runs an hour ahead; the server takes its receive time. */
    r = phone_push(&a, changes(ch_update_at(id, 1, iso_now(3600 * 1000),
                                            "{\"description\":\"from a fast clock\"}", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    sleep_ms(50);
    /* B edits after that, by real time: B's value is the later one. */
    r = phone_push(
        &b, changes(ch_update_at(id, 1, iso_now(0), "{\"description\":\"from an honest clock\"}", NULL)));
    ASSERT_STATUS(r, 200);
    cJSON *j = resp_json(&r);
    ASSERT_JSTR(j, "results[0].status", "merged");
    ASSERT_JSTR(j, "results[0].conflicts[0].kept", "client");
    r = phone_get(&a, hfmt("/v1/cases/%s", id));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "fields.description", "from an honest clock");
    /* History shows the clamped time: never after the receive time. */
    r = phone_get(&a, hfmt("/v1/cases/%s/history", id));
    ASSERT_STATUS(r, 200);
    const char *at = jstr(resp_json(&r), "items[1].at"), *recv = jstr(r.json, "items[1].received_at");
    ASSERT_MSG(at && recv && strcmp(at, recv) <= 0, "at %s is after received_at %s", at ? at : "-",
               recv ? recv : "-");
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- garbage never costs a 500 ------------------------------------------------------ */

TEST(client_garbage_never_gets_a_5xx) {
    srv_t s;
    START(s);
    phone_t sup, adm;
    PHONE(sup, s, "sup1", "dev-S");
    PHONE(adm, s, "admin", "dev-ADM");
    static const char *bodies[] = {
        "",
        "null",
        "[]",
        "{}",
        "\"text\"",
        "12345678901234567890123",
        "{\"changes\":null}",
        "{\"device_id\":123,\"changeset_seq\":\"1\",\"changes\":[]}",
        "{\"device_id\":\"dev-S\",\"changeset_seq\":-1,\"schema_version\":1,\"changes\":[]}",
        "{\"device_id\":\"dev-S\",\"changeset_seq\":1e300,\"schema_version\":1,\"changes\":[]}",
        "{\"device_id\":\"dev-S\",\"changeset_seq\":1.5,\"schema_version\":1,\"changes\":[]}",
        "{\"device_id\":\"dev-S\",\"changeset_seq\":1,\"schema_version\":99,\"changes\":[]}",
        "{\"device_id\":\"dev-S\",\"changeset_seq\":1,\"schema_version\":1,\"changes\":[null,1,\"x\",[]]}",
        "{\"device_id\":\"dev-S\",\"changeset_seq\":1,\"schema_version\":1,\"changes\":[{\"op\":\"explode\"}]"
        "}",
        "{\"device_id\":\"dev-S\",\"changeset_seq\":1,\"schema_version\":1,\"changes\":[{\"op\":\"create\"}]"
        "}",
        "{\"device_id\":\"dev-S\",\"changeset_seq\":1,\"schema_version\":1,\"changes\":[{\"op\":\"update\","
        "\"record_id\":\"../../etc\",\"base_version\":1,\"set\":{}}]}",
        "{\"device_id\":\"dev-S\",\"changeset_seq\":1,\"schema_version\":1,\"changes\":[{\"op\":\"update\","
        "\"record_id\":\"01JDNOSUCHRECORD01\",\"base_version\":-5,\"set\":{\"no_such_field\":1}}]}",
        "{\"device_id\":\"dev-S\",\"changeset_seq\":1,\"schema_version\":1,\"changes\":[{\"op\":"
        "\"transition\","
        "\"record_id\":\"01JDNOSUCHRECORD01\",\"base_version\":1,\"to\":null}]}",
        "{\"device_id\":\"dev-S\",\"changeset_seq\":1,\"schema_version\":1,\"changes\":[{\"op\":\"create\","
        "\"record_id\":\"01JDGARBAGE0000001\",\"type\":\"no_such_type\",\"at\":\"yesterday\",\"fields\":[]}]"
        "}",
        "{\"records\":null}",
        "{\"records\":[1,[null],[\"x\"],[\"01JDNOSUCHRECORD01\",1e300]]}",
        "{\"value\":{\"deep\":[1,2,3]},\"note\":5}",
        "{\"grids\":\"not-a-list\",\"role\":\"emperor\",\"disabled\":\"maybe\"}",
        "{\"username\":\"\\u0000\",\"password\":\"\",\"device_id\":\"\\ud800\"}",
        "{\"a\":\"\xff\xfe\xfd\"}",
        "{\"a\":1,\"a\":2}",
    };
    static const struct {
        const char *method, *path;
    } routes[] = {
        {"POST", "/v1/sync/push"},
        {"POST", "/v1/sync/check"},
        {"POST", "/v1/auth/login"},
        {"POST", "/v1/conflicts/no-such/resolve"},
        {"PATCH", "/v1/admin/users/no-such"},
        {"POST", "/v1/admin/users"},
        {"POST", "/v1/devices/no-such/revoke"},
    };
    int calls = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        for (size_t k = 0; k < sizeof bodies / sizeof bodies[0]; k++) {
            const char *tok = strstr(routes[i].path, "admin") ? adm.token : sup.token;
            resp_t r = http(&s, routes[i].method, routes[i].path, tok, bodies[k], NULL);
            calls++;
            ASSERT_MSG(r.status >= 200 && r.status < 500, "%s with body %s -> %ld %s%.400s", r.what,
                       bodies[k], r.status, r.err, r.body);
            if (r.status >= 400)
                ASSERT_MSG(resp_error_code(&r) != NULL,
                           "%s with body %s -> %ld without an error code: %.400s", r.what, bodies[k],
                           r.status, r.body);
            resp_free(&r);
        }
    }
    static const char *gets[] = {
        "/v1/sync/pull?cursor=%00%01",
        "/v1/sync/pull?limit=-1",
        "/v1/sync/pull?limit=99999999999999999999",
        "/v1/sync/pull?wait=-3",
        "/v1/sync/pull?wait=abc",
        "/v1/cases/..%2f..%2fetc%2fpasswd",
        "/v1/cases/%00",
        "/v1/cases/01JDNOSUCHRECORD01/history",
        "/v1/conflicts?state=sideways",
        "/v1/nope",
        "/v1/cases?limit=-4&cursor=zzz",
    };
    for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++) {
        resp_t r = http(&s, "GET", gets[i], sup.token, NULL, NULL);
        ASSERT_MSG(r.status >= 200 && r.status < 500, "%s -> %ld %s%.400s", r.what, r.status, r.err, r.body);
        resp_free(&r);
    }
    resp_t r = http(&s, "GET", "/healthz", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(calls > 100, "only %d calls", calls);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(health_ready_and_metrics) {
    srv_t s;
    START(s);
    resp_t r = http(&s, "GET", "/healthz", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    r = http(&s, "GET", "/readyz", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    r = http(&s, "GET", "/metrics", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    const char *ct = resp_header(&r, "Content-Type");
    ASSERT_MSG(ct && strncmp(ct, "text/plain", 10) == 0, "metrics Content-Type %s", ct ? ct : "(none)");
    ASSERT_MSG(strstr(r.body, "# TYPE ") != NULL, "no Prometheus # TYPE lines: %.400s", r.body);
    ASSERT_MSG(strstr(r.body, "casesync_changes_total{result=\"applied\"} 0\n") != NULL, "%s", r.body);

    /* After a push with one applied and one rejected change, the engine's counters move. */
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    r = phone_push(&a, changes(ch_create("01JDMETRIC00000001", "general", NULL),
                               ch_update("01JDMETRIC00000404", 1, "{\"description\":\"x\"}", NULL)));
    ASSERT_STATUS(r, 200);
    r = http(&s, "GET", "/metrics", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(strstr(r.body, "casesync_changes_total{result=\"applied\"} 1\n") != NULL, "%s", r.body);
    ASSERT_MSG(strstr(r.body, "casesync_changes_total{result=\"rejected\"} 1\n") != NULL, "%s", r.body);
    ASSERT_MSG(strstr(r.body, "casesync_changesets_total 1\n") != NULL, "%s", r.body);
    ASSERT_MSG(strstr(r.body, "casesync_commit_batch_jobs_bucket{le=\"+Inf\"} ") != NULL, "%s", r.body);
    ASSERT_MSG(strstr(r.body, "casesync_store_bytes ") != NULL, "%s", r.body);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(admin_creates_lists_and_disables_users) {
    srv_t s;
    START(s);
    phone_t adm, a;
    PHONE(adm, s, "admin", "dev-ADM");
    PHONE(a, s, "off1", "dev-A");
    const char *body = "{\"username\":\"newoff\",\"password\":\"Passw0rd-newoff\",\"name\":\"New Officer\","
                       "\"role\":\"officer\",\"unit\":\"U1\",\"grids\":[\"" GRID1 "\"]}";
    resp_t r = http(&s, "POST", "/v1/admin/users", a.token, body, NULL);
    ASSERT_ERROR(r, 403, "forbidden");
    r = http(&s, "POST", "/v1/admin/users", adm.token, body, NULL);
    ASSERT_MSG(r.status == 200 || r.status == 201, "POST /v1/admin/users -> %ld %s", r.status, r.body);
    const char *nid = jstr(resp_json(&r), "id");
    if (!nid) nid = jstr(r.json, "user.id");
    ASSERT_MSG(nid != NULL, "no id for the new user: %s", r.body);
    nid = hfmt("%s", nid);
    r = http(&s, "POST", "/v1/admin/users", adm.token, body, NULL);
    ASSERT_STATUS(r, 409);

    phone_t n;
    ASSERT(phone_login(&n, &s, "newoff", "Passw0rd-newoff", "dev-N") == 0);
    ASSERT_STR(n.user_id, nid);
    r = phone_get(&adm, "/v1/admin/users");
    ASSERT_STATUS(r, 200);
    cJSON *list = resp_json(&r);
    cJSON *items = cJSON_IsArray(list) ? list : jget(list, "items");
    ASSERT_MSG(jarr_find(items, "username", "newoff") != NULL, "user list lacks newoff: %.600s", r.body);
    r = phone_get(&a, "/v1/admin/users");
    ASSERT_STATUS(r, 403);

    r = http(&s, "PATCH", hfmt("/v1/admin/users/%s", nid), adm.token, "{\"disabled\":true}", NULL);
    ASSERT_STATUS(r, 200);
    r = phone_get(&n, "/v1/me");
    ASSERT_STATUS(r, 401);
    r = login_resp(&s, "newoff", "Passw0rd-newoff", "dev-N");
    ASSERT_STATUS(r, 401);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(cli_sees_users_while_the_server_runs_and_after_restart) {
    srv_t s;
    START(s);
    /* Made by the CLI while casesyncd runs: the server sees it at once. */
    ASSERT(std_user(&s, "off1") != NULL);
    phone_t a;
    ASSERT(phone_login(&a, &s, "off1", std_pass("off1"), "dev-A") == 0);
    cli_res_t l = cli(s.dir, NULL, "user", "list");
    ASSERT_MSG(l.rc == 0 && strstr(l.out, "off1"), "user list exited %d: %s %s", l.rc, l.out, l.err);
    resp_t r = phone_push(&a, changes(ch_create("01JDRESTART0000001", "general", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
    ASSERT_MSG(srv_restart(&s) == 0, "no restart");
    /* Tokens, devices and records survive a restart. */
    r = phone_get(&a, "/v1/cases/01JDRESTART0000001");
    ASSERT_STATUS(r, 200);
    r = phone_push(&a,
                   changes(ch_update("01JDRESTART0000001", 1, "{\"description\":\"after restart\"}", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JINT(resp_json(&r), "changeset_seq", 2);
    ASSERT_INT(srv_stop(&s), 0);
}
