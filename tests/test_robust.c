/* test_robust.c -- bad input, crash durability, gzip, long poll, logout,
 * revoked devices, the schema's ETag, history and the audit chain: the real
 * casesyncd over HTTP on loopback. */
#include "tests/harness.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")
#define PHONE(p, s, name, dev)                                                                               \
    ASSERT_MSG(std_phone(&(p), &(s), (name), (dev)) == 0, "login of %s failed", (name))

#define MiB (1024u * 1024u)

/* ---- 8. bad input ---------------------------------------------------------------- */

TEST(bad_input_is_refused_whole_and_server_survives) {
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    const char *id = "01JDBADIN000000001", *id2 = "01JDBADIN000000002";
    const char *good = ch_create(id, "general", NULL);

    resp_t r =
        http(&s, "POST", "/v1/sync/push", a.token, "{\"device_id\":\"dev-A\",\"changeset_seq\":1,", NULL);
    ASSERT_ERROR(r, 400, "bad_json");
    r = http(&s, "POST", "/v1/sync/push", a.token, "", NULL);
    ASSERT_MSG(r.status == 400 || r.status == 422, "an empty push body got %ld: %s", r.status, r.body);

    /* 100 nested arrays inside a create's fields. */
    char deep[256];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    deep[200] = '\0';
    const char *deep_change =
        hfmt("{\"op\":\"create\",\"record_id\":\"%s\",\"type\":\"%s\",\"at\":\"%s\",\"fields\":{"
             "\"description\":%s}}",
             id, TYPE_VENDING, iso_now(0), deep);
    r = push(&s, a.token, "dev-A", 1, changes(deep_change));
    ASSERT_ERROR(r, 400, "json_too_deep");

    /* JSON types: the whole changeset is 422 and names the field. */
    r = push(&s, a.token, "dev-A", 1, changes(good, ch_update(id, 1, "{\"fine_amount\":\"abc\"}", NULL)));
    ASSERT_ERROR(r, 422, "validation_failed");
    ASSERT_JSTR(resp_json(&r), "error.field", "changes[1].set.fine_amount");
    const char *strbase = hfmt("{\"op\":\"update\",\"record_id\":\"%s\",\"base_version\":\"1\",\"at\":\"%s\","
                               "\"set\":{\"description\":\"x\"}}",
                               id2, iso_now(0));
    r = push(&s, a.token, "dev-A", 1, changes(good, strbase));
    ASSERT_ERROR(r, 422, "validation_failed");
    ASSERT_JSTR(resp_json(&r), "error.field", "changes[1].base_version");
    r = http(
        &s, "POST", "/v1/sync/push", a.token,
        "{\"device_id\":\"dev-A\",\"changeset_seq\":1,\"schema_version\":1,\"changes\":{\"op\":\"create\"}}",
        NULL);
    ASSERT_ERROR(r, 422, "validation_failed");
    ASSERT_JSTR(resp_json(&r), "error.field", "changes");

    /* Past 16 MiB on the wire. */
    size_t big = 17 * MiB;
    char *huge = h_keep(malloc(big + 1), NULL);
    ASSERT(huge != NULL);
    const char *head =
        "{\"device_id\":\"dev-A\",\"changeset_seq\":1,\"schema_version\":1,\"changes\":[],\"pad\":\"";
    size_t hl = strlen(head);
    memcpy(huge, head, hl);
    memset(huge + hl, 'x', big - hl - 2);
    memcpy(huge + big - 2, "\"}", 2);
    huge[big] = '\0';
    r = http_raw(&s, "POST", "/v1/sync/push", a.token, huge, big,
                 (const char *[]){"Expect: 100-continue", NULL});
    ASSERT_ERROR(r, 413, "too_large");
    h_free(huge);

    /* A gzip bomb: 80 KiB that inflates to 80 MiB. */
    size_t zlen = 0;
    void *bomb = gz_bomb("{\"device_id\":\"dev-A\",\"changeset_seq\":1,\"schema_version\":1,\"changes\":[",
                         80 * MiB, &zlen);
    ASSERT_MSG(zlen < 1 * MiB, "bomb is %zu bytes", zlen);
    r = http_raw(&s, "POST", "/v1/sync/push", a.token, bomb, zlen,
                 (const char *[]){"Content-Encoding: gzip", NULL});
    ASSERT_ERROR(r, 413, "too_large");
    /* Not gzip at all, but said to be. */
    r = http_raw(&s, "POST", "/v1/sync/push", a.token, "not gzip bytes", 14,
                 (const char *[]){"Content-Encoding: gzip", NULL});
    ASSERT_MSG(r.status == 400 || r.status == 415, "a broken gzip body got %ld: %s", r.status, r.body);
    r = http(&s, "POST", "/v1/sync/push", a.token, push_body("dev-A", 1, changes(good)),
             (const char *[]){"Content-Encoding: br", NULL});
    ASSERT_ERROR(r, 415, "unsupported_encoding");

    /* More changes than one changeset may hold (1000): refused whole. */
    size_t cap = 1001 * 600, used = 0;
    char *many = h_keep(malloc(cap), NULL);
    ASSERT(many != NULL);
    many[used++] = '[';
    for (int i = 0; i < 1001; i++) {
        const char *c = ch_create(hfmt("01JDMANY%010d", i), "general", NULL);
        size_t cl = strlen(c);
        ASSERT(used + cl + 2 < cap);
        if (i) many[used++] = ',';
        memcpy(many + used, c, cl);
        used += cl;
    }
    many[used++] = ']';
    many[used] = '\0';
    r = push(&s, a.token, "dev-A", 1, many);
    ASSERT_MSG(r.status == 413 || r.status == 422, "1001 changes in one changeset -> %ld %.300s", r.status,
               r.body);
    ASSERT_MSG(resp_error_code(&r) != NULL, "no error code: %.300s", r.body);
    r = phone_get(&a, "/v1/cases/01JDMANY0000000000");
    ASSERT_ERROR(r, 404, "not_found");

    /* Still alive, and nothing of it was applied: changeset 1 is still free. */
    r = http(&s, "GET", "/healthz", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    r = phone_get(&a, hfmt("/v1/cases/%s", id));
    ASSERT_ERROR(r, 404, "not_found");
    r = phone_pull(&a, 0, 0);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "changes"), 0);
    r = push(&s, a.token, "dev-A", 1, changes(good));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    ASSERT_JINT(r.json, "results[0].version", 1);
    r = phone_get(&a, "/v1/audit/verify");
    if (r.status == 403) {
        phone_t adm;
        PHONE(adm, s, "admin", "dev-ADM");
        r = phone_get(&adm, "/v1/audit/verify");
    }
    ASSERT_STATUS(r, 200);
    ASSERT_JBOOL(resp_json(&r), "ok", 1);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 9. durability ------------------------------------------------------------------ */

typedef struct pusher {
    srv_t *srv;
    const char *token;
    long long next_seq; /* first seq to push */
    int max;
    int acked;            /* changesets answered 200 (atomic: read while it runs) */
    long long last_acked; /* their last seq (read after the join) */
    int stop;             /* atomic */
} pusher_t;

static const char *dur_id(long long seq) {
    return hfmt("01JDDURABLE%07lld", seq);
}

static void *push_loop(void *arg) {
    pusher_t *p = arg;
    for (int i = 0; i < p->max && !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE); i++) {
        long long seq = p->next_seq + i;
        resp_t r = push(p->srv, p->token, "dev-A", seq, changes(ch_create(dur_id(seq), "general", NULL)));
        int ok = r.status == 200 && jstr(resp_json(&r), "results[0].status") &&
                 strcmp(jstr(r.json, "results[0].status"), "applied") == 0;
        resp_free(&r);
        if (!ok) break;
        p->last_acked = seq;
        __atomic_add_fetch(&p->acked, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

TEST(acknowledged_pushes_survive_kill_9) {
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    const char *id = "01JDDURABLEEDIT001";

    /* A few acknowledged changesets, one record edited many times. */
    resp_t r = phone_push(&a, changes(ch_create(id, "general", NULL)));
    ASSERT_STATUS(r, 200);
    for (int i = 1; i <= 8; i++) {
        r = phone_push(
            &a, changes(ch_update(id, i, hfmt("{\"description\":\"edit %d\"}", i),
                                  hfmt("{\"notes\":[{\"id\":\"n-%d\",\"text\":\"note %d\"}]}", i, i))));
        ASSERT_STATUS(r, 200);
        ASSERT_JINT(resp_json(&r), "results[0].version", i + 1);
    }

    /* Then a phone pushing as fast as it can while the server is killed. */
    pusher_t p = {.srv = &s, .token = a.token, .next_seq = a.seq, .max = 300};
    pthread_t th;
    ASSERT(pthread_create(&th, NULL, push_loop, &p) == 0);
    for (int i = 0; i < 1000 && __atomic_load_n(&p.acked, __ATOMIC_ACQUIRE) < 5; i++)
        sleep_ms(10);
    srv_kill9(&s);
    __atomic_store_n(&p.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    ASSERT_MSG(p.acked >= 5, "only %d pushes acknowledged before the kill", p.acked);

    cli_res_t v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "casesync verify after kill -9 exited %d\nstdout: %s\nstderr: %s", v.rc, v.out,
               v.err);

    ASSERT_MSG(srv_restart(&s) == 0, "casesyncd did not restart on its data");
    r = phone_get(&a, hfmt("/v1/cases/%s", id));
    ASSERT_STATUS(r, 200);
    cJSON *rec = resp_json(&r);
    ASSERT_JINT(rec, "version", 9);
    ASSERT_JSTR(rec, "fields.description", "edit 8");
    ASSERT_INT(jlen(rec, "fields.notes"), 8);
    cJSON *all = phone_pull_all(&a);
    ASSERT(all != NULL);
    for (long long seq = p.next_seq; seq <= p.last_acked; seq++)
        ASSERT_MSG(pull_count(all, dur_id(seq)) == 1,
                   "acknowledged create %s (changeset %lld) lost after kill -9", dur_id(seq), seq);
    /* The device goes on where the server stands: after the last acknowledged
     * changeset, or one more if the one in flight committed. */
    long long next = 0;
    const char *tok = login(&s, "off1", std_pass("off1"), "dev-A", &next);
    ASSERT(tok != NULL);
    ASSERT_MSG(next == p.last_acked + 1 || next == p.last_acked + 2,
               "next_changeset_seq %lld after last ack %lld", next, p.last_acked);
    r = push(&s, tok, "dev-A", next,
             changes(ch_update(id, 9, "{\"description\":\"after the crash\"}", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    r = phone_get(&a, "/v1/audit/verify");
    if (r.status == 403) {
        phone_t adm;
        PHONE(adm, s, "admin", "dev-ADM");
        r = phone_get(&adm, "/v1/audit/verify");
    }
    ASSERT_STATUS(r, 200);
    ASSERT_JBOOL(resp_json(&r), "ok", 1);
    ASSERT_MSG(jint(r.json, "entries") >= 9 + p.acked, "audit has %lld entries: %s", jint(r.json, "entries"),
               r.body);

    ASSERT_INT(srv_stop(&s), 0);
    v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "casesync verify after a clean stop exited %d\nstdout: %s\nstderr: %s", v.rc, v.out,
               v.err);
}

TEST(verify_fails_on_a_tampered_store) {
    /* A verify that always says 0 is worthless: damage the data file and
     * expect a non-zero exit (or at least not the old sound answer). */
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    resp_t r = phone_push(
        &a, changes(ch_create("01JDTAMPER00000001", "general", "{\"description\":\"TAMPERME-ORIGINAL\"}")));
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
    cli_res_t v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "verify of a sound store exited %d: %s %s", v.rc, v.out, v.err);

    /* Rewrite every copy of the description in data.mdb, same length. */
    const char *path = hfmt("%s/data.mdb", s.dir);
    FILE *f = fopen(path, "r+b");
    ASSERT_MSG(f != NULL, "no %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = h_keep(malloc((size_t)size), NULL);
    ASSERT(data && fread(data, 1, (size_t)size, f) == (size_t)size);
    int hits = 0;
    const char *needle = "TAMPERME-ORIGINAL";
    size_t nl = strlen(needle);
    for (long i = 0; i + (long)nl <= size; i++) {
        if (memcmp(data + i, needle, nl) == 0) {
            memcpy(data + i, "TAMPERME-FORGERY!", nl);
            hits++;
        }
    }
    ASSERT_MSG(hits > 0, "the description is not stored as plain text in data.mdb");
    fseek(f, 0, SEEK_SET);
    ASSERT(fwrite(data, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc != 0, "verify still says sound after the record and log were rewritten\nstdout: %s",
               v.out);
}

/* ---- 10. gzip ------------------------------------------------------------------------- */

TEST(gzip_pull_and_gzip_push) {
    srv_t s;
    START(s);
    phone_t a, b;
    PHONE(a, s, "off1", "dev-A");
    PHONE(b, s, "off2", "dev-B");
    /* A gzip request body. */
    const char *body = push_body("dev-A", 1,
                                 changes(ch_create("01JDGZIP0000000001", "general", NULL),
                                         ch_create("01JDGZIP0000000002", "general", NULL),
                                         ch_create("01JDGZIP0000000003", "simple", NULL)));
    size_t zl = 0;
    void *z = gz_compress(body, strlen(body), &zl);
    resp_t r = http_raw(&s, "POST", "/v1/sync/push", a.token, z, zl,
                        (const char *[]){"Content-Encoding: gzip", NULL});
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[2].status", "applied");

    resp_t plain = http(&s, "GET", "/v1/sync/pull", b.token, NULL, NULL);
    ASSERT_STATUS(plain, 200);
    const char *ce = resp_header(&plain, "Content-Encoding");
    ASSERT_MSG(!ce || strcasecmp(ce, "identity") == 0, "gzip sent to a client that did not ask: %s",
               plain.headers);
    ASSERT_MSG(resp_json(&plain) != NULL, "plain pull is not JSON: %.300s", plain.body);

    resp_t gz =
        http(&s, "GET", "/v1/sync/pull", b.token, NULL, (const char *[]){"Accept-Encoding: gzip", NULL});
    ASSERT_STATUS(gz, 200);
    ce = resp_header(&gz, "Content-Encoding");
    ASSERT_MSG(ce && strcasecmp(ce, "gzip") == 0, "no Content-Encoding: gzip (headers: %s)", gz.headers);
    const char *vary = resp_header(&gz, "Vary");
    ASSERT_MSG(vary && strcasestr(vary, "Accept-Encoding"), "no Vary: Accept-Encoding (headers: %s)",
               gz.headers);
    size_t n = 0;
    char *text = gz_inflate(gz.body, gz.len, 64 * MiB, &n);
    ASSERT_MSG(text != NULL, "the gzip body does not inflate (%zu bytes)", gz.len);
    cJSON *j = jparse(text);
    ASSERT_MSG(j != NULL, "inflated body is not JSON: %.300s", text);
    /* The same answer, cursor aside (it may carry a time). */
    ASSERT_MSG(jstr(j, "cursor") != NULL, "no cursor: %.300s", text);
    cJSON_DeleteItemFromObjectCaseSensitive(j, "cursor");
    cJSON_DeleteItemFromObjectCaseSensitive(plain.json, "cursor");
    ASSERT_MSG(cJSON_Compare(j, plain.json, 1), "gzip and plain pulls differ:\n gzip  %s\n plain %s",
               jprint(j), jprint(plain.json));
    ASSERT_INT(jlen(j, "changes"), 3);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 11. long poll ------------------------------------------------------------------------ */

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

TEST(long_poll_returns_soon_after_a_push_in_scope) {
    srv_t s;
    START(s);
    phone_t a, b, x;
    PHONE(a, s, "off1", "dev-A");
    PHONE(b, s, "off2", "dev-B");
    PHONE(x, s, "offx", "dev-X");
    resp_t r = phone_pull(&b, 0, 0);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "changes"), 0);

    poller_t q = {.p = &b, .wait = 20};
    double t0 = now_s();
    pthread_t th;
    ASSERT(pthread_create(&th, NULL, poll_once, &q) == 0);
    sleep_ms(1000);
    r = phone_push(&a, changes(ch_create("01JDLONGPOLL000001", "general", NULL)));
    double t_push = now_s();
    pthread_join(th, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_STATUS(q.r, 200);
    double waited = q.t_end - t0, after = q.t_end - t_push;
    ASSERT_MSG(waited >= 0.9, "the long poll returned after %.2f s, before the push: %s", waited, q.r.body);
    ASSERT_MSG(after < 2.0, "the long poll returned %.2f s after the push (waited %.2f s)", after, waited);
    ASSERT_MSG(pull_item(resp_json(&q.r), "01JDLONGPOLL000001") != NULL,
               "the long poll did not carry the new case: %s", q.r.body);

    /* A commit out of B's scope (another unit) does not end B's wait. */
    q = (poller_t){.p = &b, .wait = 3};
    t0 = now_s();
    ASSERT(pthread_create(&th, NULL, poll_once, &q) == 0);
    sleep_ms(500);
    r = phone_push(&x,
                   changes(ch_create_in("01JDLONGPOLLOTHER1", TYPE_VENDING, "general", "U2", GRID1, NULL)));
    pthread_join(th, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    ASSERT_STATUS(q.r, 200);
    waited = q.t_end - t0;
    ASSERT_INT(jlen(resp_json(&q.r), "changes"), 0);
    ASSERT_MSG(waited >= 2.5 && waited < 8, "wait=3 with only another unit's commit took %.2f s", waited);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- sessions, devices, schema ------------------------------------------------------------ */

TEST(logout_ends_only_that_token) {
    srv_t s;
    START(s);
    phone_t a, a2;
    PHONE(a, s, "off1", "dev-A");
    ASSERT(phone_login(&a2, &s, "off1", std_pass("off1"), "dev-A2") == 0);
    resp_t r = http(&s, "POST", "/v1/auth/logout", a.token, NULL, NULL);
    ASSERT_STATUS(r, 204);
    r = phone_get(&a, "/v1/me");
    ASSERT_ERROR(r, 401, "unauthenticated");
    r = phone_pull(&a, 0, 0);
    ASSERT_ERROR(r, 401, "unauthenticated");
    r = phone_get(&a2, "/v1/me");
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(revoked_device_gets_device_revoked_with_wipe) {
    srv_t s;
    START(s);
    phone_t a, b, sup;
    PHONE(a, s, "off1", "dev-A");
    PHONE(b, s, "off2", "dev-B");
    PHONE(sup, s, "sup1", "dev-S");
    resp_t r = phone_push(&a, changes(ch_create("01JDREVOKE00000001", "general", NULL)));
    ASSERT_STATUS(r, 200);
    r = http(&s, "POST", "/v1/devices/dev-A/revoke", b.token, "{\"wipe\":true}", NULL);
    ASSERT_STATUS(r, 403);
    r = http(&s, "POST", "/v1/devices/dev-A/revoke", sup.token, "{\"wipe\":true}", NULL);
    ASSERT_MSG(r.status == 200 || r.status == 204, "revoke -> %ld %s", r.status, r.body);
    r = phone_pull(&a, 0, 0);
    ASSERT_ERROR(r, 401, "device_revoked");
    ASSERT_JBOOL(resp_json(&r), "wipe", 1);
    r = phone_push(&a, changes(ch_create("01JDREVOKE00000002", "general", NULL)));
    ASSERT_ERROR(r, 401, "device_revoked");
    /* A new login on that device does not bring it back. */
    r = login_resp(&s, "off1", std_pass("off1"), "dev-A");
    if (r.status == 200) {
        const char *t2 = hfmt("%s", jstr(resp_json(&r), "token") ? jstr(r.json, "token") : "");
        r = http(&s, "GET", "/v1/me", t2, NULL, NULL);
        ASSERT_ERROR(r, 401, "device_revoked");
    } else {
        ASSERT_MSG(r.status == 401 || r.status == 403, "login on a revoked device -> %ld %s", r.status,
                   r.body);
    }
    /* What it pushed before stays. */
    r = phone_get(&sup, "/v1/cases/01JDREVOKE00000001");
    ASSERT_STATUS(r, 200);
    r = phone_get(&sup, "/v1/cases/01JDREVOKE00000002");
    ASSERT_STATUS(r, 404);
    r = phone_get(&b, "/v1/me");
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(schema_has_etag_and_if_none_match_gives_304) {
    srv_t s;
    START(s);
    phone_t a;
    PHONE(a, s, "off1", "dev-A");
    resp_t r = phone_get(&a, "/v1/schema");
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(resp_json(&r) != NULL, "schema is not JSON: %.300s", r.body);
    const char *etag = resp_header(&r, "ETag");
    ASSERT_MSG(etag && etag[0], "no ETag (headers: %s)", r.headers);
    r = http(&s, "GET", "/v1/schema", a.token, NULL, (const char *[]){hfmt("If-None-Match: %s", etag), NULL});
    ASSERT_STATUS(r, 304);
    ASSERT_INT(r.len, 0);
    r = http(&s, "GET", "/v1/schema", a.token, NULL,
             (const char *[]){"If-None-Match: \"not-this-one\"", NULL});
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(history_lists_each_change_and_audit_verifies) {
    srv_t s;
    START(s);
    phone_t a, b, x;
    PHONE(a, s, "off1", "dev-A");
    PHONE(b, s, "off2", "dev-B");
    PHONE(x, s, "offx", "dev-X");
    const char *id = "01JDHISTORY0000001";
    resp_t r = phone_push(&a, changes(ch_create(id, "general", NULL)));
    ASSERT_STATUS(r, 200);
    r = phone_push(&b, changes(ch_update(id, 1, "{\"description\":\"second look\"}", NULL)));
    ASSERT_STATUS(r, 200);
    r = phone_get(&a, hfmt("/v1/cases/%s/history", id));
    ASSERT_STATUS(r, 200);
    cJSON *j = resp_json(&r);
    ASSERT_INT(jlen(j, "items"), 2);
    ASSERT_JSTR(j, "items[0].op", "create");
    ASSERT_JSTR(j, "items[0].user_id", a.user_id);
    ASSERT_JSTR(j, "items[0].device_id", "dev-A");
    ASSERT_JINT(j, "items[0].changeset_seq", 1);
    ASSERT_JSTR(j, "items[1].op", "update");
    ASSERT_JSTR(j, "items[1].user_id", b.user_id);
    ASSERT_JSTR(j, "items[1].device_id", "dev-B");
    ASSERT_JSTR(j, "items[1].fields.description.old", "street vendor");
    ASSERT_JSTR(j, "items[1].fields.description.new", "second look");
    ASSERT_MSG(jint(j, "items[1].seq") > jint(j, "items[0].seq"), "history out of order: %s", r.body);
    ASSERT_JHAS(j, "items[1].received_at");
    ASSERT_JHAS(j, "items[1].at");
    const char *h0 = jstr(j, "items[0].hash"), *h1 = jstr(j, "items[1].hash");
    ASSERT_MSG(h0 && h1 && strlen(h0) == 64 && strlen(h1) == 64 && strcmp(h0, h1) != 0, "hashes: %s", r.body);
    ASSERT_MSG(jstr(j, "items[1].prev_hash") && strlen(jstr(j, "items[1].prev_hash")) == 64, "prev_hash: %s",
               r.body);
    r = phone_get(&x, hfmt("/v1/cases/%s/history", id));
    ASSERT_STATUS(r, 403);

    r = phone_get(&a, "/v1/audit/verify");
    if (r.status == 403) {
        phone_t adm;
        PHONE(adm, s, "admin", "dev-ADM");
        r = phone_get(&adm, "/v1/audit/verify");
    }
    ASSERT_STATUS(r, 200);
    j = resp_json(&r);
    ASSERT_JBOOL(j, "ok", 1);
    ASSERT_MSG(jint(j, "entries") >= 2, "entries: %s", r.body);
    ASSERT_MSG(jstr(j, "head") && strlen(jstr(j, "head")) == 64, "head: %s", r.body);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(voided_case_stays_readable_and_refuses_edits) {
    srv_t s;
    START(s);
    phone_t a, b, sup;
    PHONE(a, s, "off1", "dev-A");
    PHONE(b, s, "off2", "dev-B");
    PHONE(sup, s, "sup1", "dev-S");
    const char *id = "01JDVOID0000000001";
    resp_t r = phone_push(&a, changes(ch_create(id, "general", NULL)));
    ASSERT_STATUS(r, 200);
    r = phone_pull(&b, 0, 0);
    ASSERT_STATUS(r, 200);
    r = phone_push(&a, changes(ch_void(id, 1, "duplicate report")));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "rejected");
    r = phone_push(&sup, changes(ch_void(id, 1, "duplicate report")));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    r = phone_get(&a, hfmt("/v1/cases/%s", id));
    ASSERT_STATUS(r, 200);
    ASSERT_JBOOL(resp_json(&r), "voided", 1);
    r = phone_pull(&b, 0, 0);
    ASSERT_STATUS(r, 200);
    cJSON *it = pull_item(resp_json(&r), id);
    ASSERT_MSG(it && jbool(it, "voided") == 1, "B did not learn of the void: %s", r.body);
    r = phone_push(&a, changes(ch_update(id, 2, "{\"description\":\"too late\"}", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "rejected");
    ASSERT_JSTR(r.json, "results[0].error.code", "voided");
    ASSERT_INT(srv_stop(&s), 0);
}
