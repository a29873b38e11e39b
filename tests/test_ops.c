/* test_ops.c -- what an operator and a fleet of phones lean on: graceful stop
 * with long polls waiting, many phones pushing at once, device clocks,
 * garbage that must never cost a 500, health endpoints, user admin. The real
 * casesyncd over HTTP on loopback. */
#include "server/metrics.h"
#include "tests/harness.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    r = metrics_scrape(&s);
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
    r = metrics_scrape(&s);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(strstr(r.body, "casesync_changes_total{result=\"applied\"} 1\n") != NULL, "%s", r.body);
    ASSERT_MSG(strstr(r.body, "casesync_changes_total{result=\"rejected\"} 1\n") != NULL, "%s", r.body);
    ASSERT_MSG(strstr(r.body, "casesync_changesets_total 1\n") != NULL, "%s", r.body);
    ASSERT_MSG(strstr(r.body, "casesync_commit_batch_jobs_bucket{le=\"+Inf\"} ") != NULL, "%s", r.body);
    ASSERT_MSG(strstr(r.body, "casesync_store_bytes ") != NULL, "%s", r.body);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- request metrics ---------------------------------------------------------------- */

/* The value of one sample line "series value" in a scrape; 0 when absent
 * (a counter that counted nothing has no series yet). */
static double sample(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
    return 0;
}

/* The sum of every sample whose line starts with prefix. */
static double sample_sum(const char *text, const char *prefix) {
    size_t n = strlen(prefix);
    double sum = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        const char *sp = strchr(p, ' ');
        if (strncmp(p, prefix, n) == 0 && sp) sum += strtod(sp + 1, NULL);
    }
    return sum;
}

static int name_char(char ch, int first) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == ':' ||
           (!first && ch >= '0' && ch <= '9');
}

/* Checks a scrape against the Prometheus text format 0.0.4: HELP then TYPE
 * once per family, before its samples and with them all in one group;
 * samples as name{label="value",...} number; histogram samples named
 * _bucket (with le), _sum or _count; counters ending in _total; the text
 * ends with a line feed. NULL when it holds, else what is wrong (pool). */
static const char *exposition_error(const char *text) {
    char family[128] = "", type[16] = "", seen[64][128];
    int nseen = 0, lineno = 0;
    size_t len = strlen(text);
    if (!len || text[len - 1] != '\n') return "the text does not end with a line feed";
    for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
        const char *eol = strchr(p, '\n');
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(eol - p), p);
        lineno++;
        if (strncmp(line, "# HELP ", 7) == 0) {
            char name[128];
            if (sscanf(line + 7, "%127s", name) != 1) return hfmt("line %d: HELP without a name", lineno);
            for (int i = 0; i < nseen; i++)
                if (strcmp(seen[i], name) == 0)
                    return hfmt("line %d: family %s described twice", lineno, name);
            if (nseen == 64) return "too many families";
            snprintf(seen[nseen++], sizeof seen[0], "%s", name);
            snprintf(family, sizeof family, "%s", name);
            type[0] = '\0';
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[128];
            if (sscanf(line + 7, "%127s %15s", name, type) != 2 || strcmp(name, family) != 0)
                return hfmt("line %d: TYPE %s does not follow its HELP", lineno, name);
            if (strcmp(type, "counter") && strcmp(type, "gauge") && strcmp(type, "histogram"))
                return hfmt("line %d: type %s", lineno, type);
            if (!strcmp(type, "counter") &&
                (strlen(name) < 6 || strcmp(name + strlen(name) - 6, "_total") != 0))
                return hfmt("line %d: counter %s does not end in _total", lineno, name);
            continue;
        }
        if (line[0] == '#') return hfmt("line %d: unknown comment %s", lineno, line);
        if (!type[0]) return hfmt("line %d: sample before its family's TYPE: %s", lineno, line);
        size_t n = 0;
        while (name_char(line[n], n == 0))
            n++;
        if (!n) return hfmt("line %d: no metric name: %s", lineno, line);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)n, line);
        size_t fl = strlen(family);
        const char *suffix = strncmp(name, family, fl) == 0 ? name + fl : NULL;
        int histogram = strcmp(type, "histogram") == 0;
        if (!suffix || (!histogram && *suffix) ||
            (histogram && strcmp(suffix, "_bucket") && strcmp(suffix, "_sum") && strcmp(suffix, "_count")))
            return hfmt("line %d: %s is not a sample of family %s (%s)", lineno, name, family, type);
        const char *q = line + n;
        int has_le = 0;
        if (*q == '{') {
            q++;
            while (*q != '}') {
                size_t k = 0;
                while (name_char(q[k], k == 0))
                    k++;
                if (!k || q[k] != '=' || q[k + 1] != '"')
                    return hfmt("line %d: bad label in %s", lineno, line);
                has_le |= k == 2 && strncmp(q, "le", 2) == 0;
                q += k + 2;
                while (*q && *q != '"' && *q != '\\' && *q != '\n')
                    q++;
                if (*q != '"') return hfmt("line %d: bad label value in %s", lineno, line);
                q++;
                if (*q == ',')
                    q++;
                else if (*q != '}')
                    return hfmt("line %d: labels not closed in %s", lineno, line);
            }
            q++;
        }
        if ((strcmp(suffix, "_bucket") == 0) != has_le)
            return hfmt("line %d: le belongs on _bucket samples only: %s", lineno, line);
        if (*q++ != ' ') return hfmt("line %d: no space before the value: %s", lineno, line);
        char *end;
        strtod(q, &end);
        if (end == q || *end) return hfmt("line %d: bad value in %s", lineno, line);
    }
    return NULL;
}

/* The _count series of a bucket line "name_bucket{a=\"x\",le=\"y\"} n": the
 * same labels without le ("name_count{a=\"x\"}", or "name_count"), and the
 * bucket's bound (+Inf as HUGE_VAL). 0, or -1 when the line is no bucket. */
static int bucket_parse(const char *line, char *count, size_t size, double *le, double *n) {
    /* Label values may hold '}' ("/v1/cases/{id}"); the value after the last does not. */
    const char *b = strstr(line, "_bucket{"), *close = strrchr(line, '}');
    const char *l = b ? strstr(b, ",le=\"") : NULL;
    if (b && !l && strncmp(b + 7, "{le=\"", 5) == 0)
        l = b + 8;
    else if (l)
        l++;
    if (!b || !close || !l || l > close || !strchr(l + 4, '"')) return -1;
    *le = strncmp(l + 4, "+Inf\"", 5) == 0 ? HUGE_VAL : strtod(l + 4, NULL);
    const char *lend = strchr(l + 4, '"') + 1; /* past le="..." */
    if (*lend == ',')
        lend++;
    else if (l[-1] == ',')
        l--;
    int k = snprintf(count, size, "%.*s_count{%.*s%.*s}", (int)(b - line), line, (int)(l - b - 8), b + 8,
                     (int)(close - lend), lend);
    if (k < 0 || (size_t)k >= size) return -1;
    if (count[k - 2] == '{') count[k - 2] = '\0'; /* le was the only label */
    *n = strtod(close + 1, NULL);
    return 0;
}

/* Checks every histogram of a scrape: per series, le ascending up to +Inf,
 * counts never falling, and +Inf equal to _count. NULL when it holds, else
 * what is wrong (pool). */
static const char *histograms_error(const char *text) {
    char key[256] = "";
    double last_le = 0, last_n = 0;
    int open = 0, checked = 0;
    for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
        char line[1024], count[256];
        double le, n;
        snprintf(line, sizeof line, "%.*s", (int)(strchr(p, '\n') - p), p);
        if (line[0] == '#' || bucket_parse(line, count, sizeof count, &le, &n) < 0) continue;
        if (!open || strcmp(count, key) != 0) {
            if (open) return hfmt("%s: buckets end without +Inf", key);
            snprintf(key, sizeof key, "%s", count);
            open = 1;
        } else if (le <= last_le || n < last_n) {
            return hfmt("%s: bucket le=%g holds %g after le=%g held %g", key, le, n, last_le, last_n);
        }
        last_le = le;
        last_n = n;
        if (le == HUGE_VAL) {
            if (sample(text, key) != n)
                return hfmt("%s is %g, its +Inf bucket %g", key, sample(text, key), n);
            open = 0;
            checked++;
        }
    }
    if (open) return hfmt("%s: buckets end without +Inf", key);
    return checked ? NULL : "no histogram found";
}

TEST(metrics_buckets_are_cumulative_with_inclusive_bounds) {
    metrics_t *m = h_keep(calloc(1, sizeof(metrics_t)), NULL);
    ASSERT(m != NULL);
    /* le is inclusive: 1 ms is in le="0.001", 1.001 ms in le="0.0025"; past 60 s only in +Inf. */
    static const uint64_t micros[] = {1000, 1001, 60000000, 60000001};
    for (size_t i = 0; i < sizeof micros / sizeof micros[0]; i++) {
        metrics_sample_t s = {.route = 0, .method = "GET", .status = 200, .micros = micros[i]};
        metrics_add(m, &s);
    }
    metrics_sample_t odd = {.route = 0, .method = "BREW", .status = 299, .micros = 0};
    metrics_add(m, &odd); /* an unknown method and code count as "other" */
    metrics_sample_t unnamed = {.route = 1,
                                .method = "GET",
                                .status = 200,
                                .out_plain = 1000,
                                .out_wire = 100,
                                .out_gzip = 1,
                                .in_plain = 7,
                                .in_wire = 7};
    metrics_add(m, &unnamed); /* its bytes count; its slot has no name */
    metrics_sample_t outside = {.route = METRICS_MAX_ROUTES, .method = "GET", .status = 200, .out_wire = 5};
    metrics_add(m, &outside); /* ignored */
    const char *names[2] = {"/a/{id}", NULL};
    char *text = NULL;
    size_t len = 0;
    ASSERT_INT(metrics_write(m, names, 2, &text, &len), 0);
    h_keep(text, NULL);
    ASSERT_INT(len, strlen(text));
    const char *bad = exposition_error(text);
    ASSERT_MSG(!bad, "%s in\n%s", bad, text);
    bad = histograms_error(text);
    ASSERT_MSG(!bad, "%s in\n%s", bad, text);
    static const struct {
        const char *series;
        double value;
    } want[] = {
        {"casesync_http_requests_total{route=\"/a/{id}\",method=\"GET\",code=\"200\"}", 4},
        {"casesync_http_requests_total{route=\"/a/{id}\",method=\"other\",code=\"other\"}", 1},
        {"casesync_http_request_duration_seconds_bucket{route=\"/a/{id}\",le=\"0.001\"}", 2},
        {"casesync_http_request_duration_seconds_bucket{route=\"/a/{id}\",le=\"0.0025\"}", 3},
        {"casesync_http_request_duration_seconds_bucket{route=\"/a/{id}\",le=\"30\"}", 3},
        {"casesync_http_request_duration_seconds_bucket{route=\"/a/{id}\",le=\"60\"}", 4},
        {"casesync_http_request_duration_seconds_bucket{route=\"/a/{id}\",le=\"+Inf\"}", 5},
        {"casesync_http_request_duration_seconds_sum{route=\"/a/{id}\"}", 120.002002},
        {"casesync_http_request_duration_seconds_count{route=\"/a/{id}\"}", 5},
        {"casesync_http_response_bytes_total{encoding=\"gzip\"}", 1000},
        {"casesync_http_response_wire_bytes_total{encoding=\"gzip\"}", 100},
        {"casesync_http_response_wire_bytes_total{encoding=\"identity\"}", 0},
        {"casesync_http_request_bytes_total{encoding=\"identity\"}", 7},
        {"casesync_http_request_wire_bytes_total{encoding=\"identity\"}", 7},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ASSERT_MSG(sample(text, want[i].series) == want[i].value, "%s is %g, expected %g in\n%s",
                   want[i].series, sample(text, want[i].series), want[i].value, text);
    ASSERT_MSG(strstr(text, "casesync_http_request_duration_seconds_sum{route=\"/a/{id}\"} 120.002002\n"),
               "sum not printed as seconds: %s", text);
    ASSERT_MSG(!strstr(text, "route=\"\"") && !strstr(text, "(null)"), "the unnamed slot was written: %s",
               text);
}

/* Waits until a scrape shows every expected delta over `before` (a request
 * is counted just after its answer went out), at most 5 s; the last scrape. */
typedef struct want {
    const char *series;
    double delta;
} want_t;

static const char *scrape_until(srv_t *s, const char *before, const want_t *want, size_t n) {
    const char *text = NULL;
    for (double t0 = now_s();; sleep_ms(20)) {
        resp_t r = metrics_scrape(s);
        if (r.status != 200) return NULL;
        text = r.body;
        size_t ok = 0;
        while (ok < n && sample(text, want[ok].series) - sample(before, want[ok].series) == want[ok].delta)
            ok++;
        if (ok == n || now_s() - t0 > 5) return text;
    }
}

TEST(metrics_count_requests_by_route_and_code_with_latency_and_bytes) {
    srv_t s;
    START(s);
    resp_t r = metrics_scrape(&s);
    ASSERT_STATUS(r, 200);
    const char *before = r.body;
    const char *bad = exposition_error(before);
    ASSERT_MSG(!bad, "%s in\n%s", bad, before);

    /* Two logins and one wrong password, one unknown path. */
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    r = login_resp(&s, "off1", std_pass("off1"), "dev-B");
    ASSERT_STATUS(r, 200);
    r = login_resp(&s, "off1", "not-the-password", "dev-C");
    ASSERT_ERROR(r, 401, "invalid_credentials");
    r = http(&s, "GET", "/v1/no/such/thing", NULL, NULL, NULL);
    ASSERT_STATUS(r, 404);

    /* A gzip push: its wire bytes are the compressed body, its plain bytes the JSON. */
    const char *desc = "{\"description\":\"vendor blocking the sidewalk again, same cart, same corner\"}";
    const char *body = push_body(a.device, a.seq,
                                 changes(ch_create("01JDMETRIC00000001", "general", desc),
                                         ch_create("01JDMETRIC00000002", "general", desc),
                                         ch_create("01JDMETRIC00000003", "general", desc)));
    size_t gzlen = 0;
    void *gz = gz_compress(body, strlen(body), &gzlen);
    const char *gzh[] = {"Content-Encoding: gzip", "Content-Type: application/json", NULL};
    r = http_raw(&s, "POST", "/v1/sync/push", a.token, gz, gzlen, gzh);
    ASSERT_STATUS(r, 200);
    a.seq++;

    /* A gzip pull: wire bytes are what curl received, plain bytes what it inflates to. */
    const char *acc[] = {"Accept-Encoding: gzip", NULL};
    resp_t pull = http(&s, "GET", "/v1/sync/pull?limit=200", a.token, NULL, acc);
    ASSERT_STATUS(pull, 200);
    const char *ce = resp_header(&pull, "Content-Encoding");
    ASSERT_MSG(ce && strcmp(ce, "gzip") == 0, "the pull went out as %s", ce ? ce : "identity");
    size_t plain = 0;
    char *json = gz_inflate(pull.body, pull.len, 1u << 24, &plain);
    ASSERT_MSG(json != NULL, "the pull does not inflate");
    const char *cursor = jstr(jparse(json), "cursor");
    ASSERT(cursor != NULL);

    /* A long poll with nothing new waits its second out, under its own label. */
    a.cursor = cursor;
    r = phone_pull(&a, 0, 1);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(r.secs >= 0.9, "the long poll answered after %.2f s", r.secs);

#define REQS(route, method, code)                                                                            \
    "casesync_http_requests_total{route=\"" route "\",method=\"" method "\",code=\"" code "\"}"
#define LAT(route, what) "casesync_http_request_duration_seconds" what "{route=\"" route "\"}"
#define BUCKET(route, le) "casesync_http_request_duration_seconds_bucket{route=\"" route "\",le=\"" le "\"}"
    const want_t want[] = {
        {REQS("/v1/auth/login", "POST", "200"), 2},
        {REQS("/v1/auth/login", "POST", "401"), 1},
        {REQS("other", "GET", "404"), 1},
        {REQS("/v1/sync/push", "POST", "200"), 1},
        {REQS("/v1/sync/pull", "GET", "200"), 1},
        {REQS("/v1/sync/pull?wait", "GET", "200"), 1},
        {LAT("/v1/auth/login", "_count"), 3},
        {LAT("other", "_count"), 1},
        {LAT("/v1/sync/push", "_count"), 1},
        {LAT("/v1/sync/pull", "_count"), 1},
        {LAT("/v1/sync/pull?wait", "_count"), 1},
        {BUCKET("/v1/sync/pull?wait", "0.5"), 0}, /* it waited its second; how much longer is load */
        {"casesync_http_response_wire_bytes_total{encoding=\"gzip\"}", (double)pull.len},
        {"casesync_http_response_bytes_total{encoding=\"gzip\"}", (double)plain},
        {"casesync_http_request_wire_bytes_total{encoding=\"gzip\"}", (double)gzlen},
        {"casesync_http_request_bytes_total{encoding=\"gzip\"}", (double)strlen(body)},
    };
    const size_t nwant = sizeof want / sizeof want[0];
    const char *after = scrape_until(&s, before, want, nwant);
    ASSERT_MSG(after != NULL, "GET /metrics failed");
    for (size_t i = 0; i < nwant; i++) {
        double d = sample(after, want[i].series) - sample(before, want[i].series);
        ASSERT_MSG(d == want[i].delta, "%s moved by %g, expected %g; scrape:\n%s", want[i].series, d,
                   want[i].delta, after);
    }
    bad = exposition_error(after);
    ASSERT_MSG(!bad, "%s in\n%s", bad, after);
    bad = histograms_error(after);
    ASSERT_MSG(!bad, "%s in\n%s", bad, after);

    /* Each route's histogram counted exactly the requests counted for it. */
    static const char *const routes[] = {"/v1/auth/login", "other", "/v1/sync/push", "/v1/sync/pull",
                                         "/v1/sync/pull?wait"};
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const char *reqs = hfmt("casesync_http_requests_total{route=\"%s\",", routes[i]);
        const char *count = hfmt("casesync_http_request_duration_seconds_count{route=\"%s\"}", routes[i]);
        ASSERT_MSG(sample_sum(after, reqs) == sample(after, count), "%s: %g requests, histogram count %g",
                   routes[i], sample_sum(after, reqs), sample(after, count));
    }
    double waited =
        sample(after, LAT("/v1/sync/pull?wait", "_sum")) - sample(before, LAT("/v1/sync/pull?wait", "_sum"));
    ASSERT_MSG(waited >= 0.9, "the long poll's latency sum moved by %g s", waited); /* no upper bound: load */

    /* Compression pays: fewer bytes on the wire than the JSON weighs; identity is the same either way. */
    ASSERT_MSG(pull.len < plain, "gzip pull: %zu bytes on the wire for %zu plain", pull.len, plain);
    double id_plain = sample(after, "casesync_http_request_bytes_total{encoding=\"identity\"}");
    double id_wire = sample(after, "casesync_http_request_wire_bytes_total{encoding=\"identity\"}");
    ASSERT_MSG(id_plain > 0 && id_plain == id_wire, "identity request bytes: %g plain, %g wire", id_plain,
               id_wire);
    ASSERT_MSG(sample(after, "casesync_http_response_bytes_total{encoding=\"identity\"}") ==
                   sample(after, "casesync_http_response_wire_bytes_total{encoding=\"identity\"}"),
               "identity responses differ between plain and wire bytes:\n%s", after);

    /* A tus PATCH reads its body itself: its Content-Length counts, as identity. */
    const char *th[] = {
        "Tus-Resumable: 1.0.0", "Upload-Length: 4096",
        "Upload-Metadata: sha256 "
        "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMA==,"
        "filename bS5iaW4=,mime YXBwbGljYXRpb24vb2N0ZXQtc3RyZWFt",
        NULL};
    r = http(&s, "POST", "/v1/uploads", a.token, NULL, th);
    ASSERT_STATUS(r, 201);
    const char *loc = resp_header(&r, "Location");
    ASSERT(loc != NULL);
    if (strncmp(loc, s.base, strlen(s.base)) == 0) loc += strlen(s.base);
    static char chunk[1000];
    memset(chunk, 'e', sizeof chunk);
    const char *ph[] = {"Tus-Resumable: 1.0.0", "Upload-Offset: 0",
                        "Content-Type: application/offset+octet-stream", NULL};
    r = http_raw(&s, "PATCH", loc, a.token, chunk, sizeof chunk, ph);
    ASSERT_STATUS(r, 204);
    const want_t up[] = {
        {REQS("/v1/uploads", "POST", "201"), 1},
        {REQS("/v1/uploads/{id}", "PATCH", "204"), 1},
        {"casesync_http_request_wire_bytes_total{encoding=\"identity\"}", sizeof chunk},
        {"casesync_http_request_bytes_total{encoding=\"identity\"}", sizeof chunk},
    };
    const char *last = scrape_until(&s, after, up, sizeof up / sizeof up[0]);
    ASSERT_MSG(last != NULL, "GET /metrics failed");
    for (size_t i = 0; i < sizeof up / sizeof up[0]; i++) {
        double d = sample(last, up[i].series) - sample(after, up[i].series);
        ASSERT_MSG(d == up[i].delta, "%s moved by %g, expected %g; scrape:\n%s", up[i].series, d, up[i].delta,
                   last);
    }
#undef REQS
#undef LAT
#undef BUCKET
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

/* Pulled items whose record_id starts with prefix. */
static int count_ids(const cJSON *items, const char *prefix) {
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, items) {
        const char *id = jstr((cJSON *)it, "record_id");
        if (id && strncmp(id, prefix, strlen(prefix)) == 0) n++;
    }
    return n;
}

/* ---- push slots ------------------------------------------------------------------ */

#define SLOT_PHONES 8
#define SLOT_PUSHES 3
#define SLOT_CASES 15

typedef struct slot_pusher {
    phone_t ph;
    int k, ok;
    pthread_barrier_t *go;
    char fail[512];
} slot_pusher_t;

static void *push_cases(void *arg) {
    slot_pusher_t *p = arg;
    pthread_barrier_wait(p->go);
    for (int i = 0; i < SLOT_PUSHES; i++) {
        const char *list = "[";
        for (int j = 0; j < SLOT_CASES; j++)
            list = hfmt("%s%s%s", list, j ? "," : "",
                        ch_create(hfmt("01JDSLOT%02d%02d%04d", p->k, i, j), "general", NULL));
        resp_t r = phone_push(&p->ph, hfmt("%s]", list));
        if (r.status != 200 || jint(resp_json(&r), "results[0].version") != 1) {
            snprintf(p->fail, sizeof p->fail, "phone %d push %d: %ld %.300s", p->k, i, r.status, r.body);
            return NULL;
        }
        resp_free(&r);
        p->ok++;
    }
    return NULL;
}

/* With max_pushing 2, eight phones pushing at once are let in two at a time:
 * the others wait before their bodies are read, and every case lands. */
TEST(push_slots_cap_pushes_in_flight_and_lose_nothing) {
    srv_t s;
    ASSERT_MSG(srv_start_config(&s, "{\"max_pushing\":2}") == 0, "casesyncd did not start");
    phone_t sup;
    PHONE(sup, s, "sup1", "dev-S");
    ASSERT(std_user(&s, "off1") != NULL);
    slot_pusher_t p[SLOT_PHONES];
    pthread_t th[SLOT_PHONES];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, SLOT_PHONES);
    memset(p, 0, sizeof p);
    for (int k = 0; k < SLOT_PHONES; k++) {
        p[k].k = k;
        p[k].go = &go;
        ASSERT(phone_login(&p[k].ph, &s, "off1", std_pass("off1"), hfmt("dev-Q%d", k)) == 0);
    }
    for (int k = 0; k < SLOT_PHONES; k++)
        ASSERT(pthread_create(&th[k], NULL, push_cases, &p[k]) == 0);
    for (int k = 0; k < SLOT_PHONES; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&go);
    for (int k = 0; k < SLOT_PHONES; k++)
        ASSERT_MSG(p[k].ok == SLOT_PUSHES, "%s", p[k].fail);

    resp_t r = metrics_scrape(&s);
    ASSERT_STATUS(r, 200);
    double most = sample(r.body, "casesync_pushes_in_flight_max");
    ASSERT_MSG(most >= 1 && most <= 2, "pushes in flight at once: %g, cap 2", most);
    ASSERT_MSG(sample(r.body, "casesync_push_slot_waits_total") >= 1, "no push waited for a slot: %.2000s",
               r.body);
    ASSERT_MSG(sample(r.body, "casesync_pushes_in_flight") == 0, "pushes still counted in flight");
    cJSON *all = phone_pull_all(&sup);
    ASSERT(all != NULL);
    int found = count_ids(all, "01JDSLOT");
    ASSERT_INT(found, SLOT_PHONES * SLOT_PUSHES * SLOT_CASES);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- SIGTERM under load ------------------------------------------------------------ */

#define TERM_PHONES 6
#define TERM_MAX_PUSHES 400

typedef struct term_pusher {
    phone_t ph;
    int k;
    int acked, refused, cut, other; /* 200; 503; no HTTP answer; anything else */
    char other_what[300];
} term_pusher_t;

static void *push_until_stopped(void *arg) {
    term_pusher_t *p = arg;
    for (int i = 0; i < TERM_MAX_PUSHES; i++) {
        const char *list = "[";
        for (int j = 0; j < 10; j++)
            list = hfmt("%s%s%s", list, j ? "," : "",
                        ch_create(hfmt("01JDTERM%02d%04d%02d", p->k, i, j), "general", NULL));
        resp_t r = phone_push(&p->ph, hfmt("%s]", list));
        if (r.status == 200) {
            p->acked++;
        } else {
            if (r.status == 503)
                p->refused++;
            else if (r.status == 0)
                p->cut++;
            else {
                p->other++;
                snprintf(p->other_what, sizeof p->other_what, "%ld %.200s", r.status, r.body);
            }
            resp_free(&r);
            return NULL;
        }
        resp_free(&r);
    }
    return NULL;
}

/* SIGTERM while six phones push: the server stops cleanly, every push it
 * acknowledged is there after a restart, and nothing is there twice. A push
 * that got no answer (connection refused or cut) may or may not have landed;
 * the phone retries it with the same seq. */
TEST(sigterm_under_push_load_keeps_every_acknowledged_change) {
    srv_t s;
    START(s);
    phone_t sup;
    PHONE(sup, s, "sup1", "dev-S");
    ASSERT(std_user(&s, "off1") != NULL);
    term_pusher_t p[TERM_PHONES];
    pthread_t th[TERM_PHONES];
    memset(p, 0, sizeof p);
    for (int k = 0; k < TERM_PHONES; k++) {
        p[k].k = k;
        ASSERT(phone_login(&p[k].ph, &s, "off1", std_pass("off1"), hfmt("dev-T%d", k)) == 0);
    }
    for (int k = 0; k < TERM_PHONES; k++)
        ASSERT(pthread_create(&th[k], NULL, push_until_stopped, &p[k]) == 0);
    sleep_ms(800);
    int rc = srv_stop(&s);
    for (int k = 0; k < TERM_PHONES; k++)
        pthread_join(th[k], NULL);
    ASSERT_MSG(rc == 0, "casesyncd stopped with status %d under load", rc);
    int acked = 0, unknown = 0;
    for (int k = 0; k < TERM_PHONES; k++) {
        ASSERT_MSG(p[k].other == 0, "phone %d got %s during the stop", k, p[k].other_what);
        acked += p[k].acked;
        unknown += p[k].cut;
    }
    ASSERT_MSG(acked > 0, "no push was acknowledged before the stop");

    ASSERT_MSG(srv_restart(&s) == 0, "casesyncd did not restart");
    ASSERT(phone_login(&sup, &s, "sup1", std_pass("sup1"), "dev-S2") == 0);
    cJSON *all = phone_pull_all(&sup);
    ASSERT(all != NULL);
    int found = count_ids(all, "01JDTERM");
    /* Every phone's acknowledged changesets are its first ones: all there. */
    for (int k = 0; k < TERM_PHONES; k++)
        for (int i = 0; i < p[k].acked; i++) {
            resp_t r = phone_get(&sup, hfmt("/v1/cases/01JDTERM%02d%04d%02d", k, i, 9));
            ASSERT_MSG(r.status == 200, "acknowledged case of phone %d changeset %d lost: %ld", k, i,
                       r.status);
            resp_free(&r);
        }
    ASSERT_MSG(found >= acked * 10 && found <= (acked + unknown) * 10,
               "%d cases found for %d acknowledged changesets (+%d unanswered) of 10", found, acked, unknown);
    ASSERT_INT(srv_stop(&s), 0);
    cli_res_t v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "casesync verify exited %d: %s", v.rc, v.err);
}
