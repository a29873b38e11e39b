/* test_authz.c -- the authorization matrix: every endpoint x every role x
 * in-scope / out-of-scope / other-unit, table-driven. A read or write across
 * a unit or outside a scope is refused; each cell answers as the contract
 * says. Also: forged, garbled, logged-out and disabled-user tokens are 401. */
#include <stdio.h>
#include <string.h>

#include "tests/harness.h"
#include "tests/test.h"

/* The cast, in table order. */
enum { AUX, OFF, OFF_OTHER_GRID, LEG, SUP, OFF_OTHER_UNIT, SUP_OTHER_UNIT, ADMIN, NROLES };
static const char *role_names[NROLES] = {"aux1 (U1, grid)",
                                         "off1 (U1, grid)",
                                         "off3 (U1, other grid)",
                                         "leg1 (U1)",
                                         "sup1 (U1)",
                                         "offx (U2, same grid code)",
                                         "supx (U2)",
                                         "admin"};

/* Expected statuses per role; 0 means "not checked". */
typedef struct cell_row {
    const char *what;
    const char *method;
    const char *path; /* %s: the record, conflict or device id, filled in */
    const char *body;
    int expect[NROLES];
} cell_row_t;

static int checked;

static int run_row(srv_t *s, phone_t *ph, const cell_row_t *row, const char *arg) {
    for (int r = 0; r < NROLES; r++) {
        if (!row->expect[r]) continue;
        const char *path = arg ? hfmt(row->path, arg) : row->path;
        resp_t x = http(s, row->method, path, ph[r].token, row->body, NULL);
        checked++;
        if (x.status != row->expect[r]) {
            test_failf(__FILE__, __LINE__, "%s by %s: %s %s -> %ld, expected %d; %.200s", row->what,
                       role_names[r], row->method, path, x.status, row->expect[r], x.body);
            return -1;
        }
        /* A refusal never leaks the record. */
        if (x.status == 403 || x.status == 404)
            if (strstr(x.body, "\"fields\"")) {
                test_failf(__FILE__, __LINE__, "%s by %s: a refusal carried fields: %.200s", row->what,
                           role_names[r], x.body);
                return -1;
            }
    }
    return 0;
}

TEST(authorization_matrix_every_endpoint_every_role) {
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    phone_t ph[NROLES], writer;
    const char *names[NROLES] = {"aux1", "off1", "off3", "leg1", "sup1", "offx", NULL, "admin"};
    for (int r = 0; r < NROLES; r++) {
        if (r == SUP_OTHER_UNIT) {
            ASSERT(user_add(&s, "supx", std_pass("supx"), "supervisor", "U2", NULL) != NULL);
            ASSERT(phone_login(&ph[r], &s, "supx", std_pass("supx"), "dev-supx") == 0);
        } else {
            ASSERT(std_phone(&ph[r], &s, names[r], hfmt("dev-%s", names[r])) == 0);
        }
    }
    ASSERT(std_phone(&writer, &s, "off2", "dev-off2") == 0);

    /* The record: created by off2 in U1, grid GRID1. */
    const char *id = "01JDAUTHZ000000001";
    resp_t r = phone_push(&writer, changes(ch_create(id, "general", "{\"fine_amount\":100}")));
    ASSERT_STATUS(r, 200);
    /* A manual conflict on it, for the resolve cells. */
    r = phone_push(&writer, changes(ch_update(id, 1, "{\"fine_amount\":120}", NULL)));
    ASSERT_STATUS(r, 200);
    r = phone_push(&ph[OFF], changes(ch_update(id, 1, "{\"fine_amount\":150}", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "conflict");
    const char *conflict = hfmt("%s", jstr(r.json, "results[0].conflicts[0].id"));

    /* Reads of one record: scope decides. */
    static const cell_row_t reads[] = {
        {"read a case", "GET", "/v1/cases/%s", NULL, {200, 200, 403, 200, 200, 403, 403, 200}},
        {"read its history", "GET", "/v1/cases/%s/history", NULL, {200, 200, 403, 200, 200, 403, 403, 200}},
    };
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++)
        if (run_row(&s, ph, &reads[i], id)) return;

    /* Unit-level reads: supervisors, legal reviewers, admins. */
    static const cell_row_t unit_reads[] = {
        {"list conflicts", "GET", "/v1/conflicts", NULL, {403, 403, 403, 200, 200, 403, 200, 200}},
        {"list devices", "GET", "/v1/devices", NULL, {403, 403, 403, 403, 200, 403, 200, 200}},
        {"query cases", "GET", "/v1/cases", NULL, {403, 403, 403, 200, 200, 403, 200, 200}},
        {"query another unit's cases",
         "GET",
         "/v1/cases?unit=U1",
         NULL,
         {403, 403, 403, 200, 200, 403, 403, 200}},
        {"read statistics", "GET", "/v1/stats", NULL, {403, 403, 403, 200, 200, 403, 200, 200}},
        {"export", "GET", "/v1/export?format=ndjson", NULL, {403, 403, 403, 200, 200, 403, 200, 200}},
        {"list missing evidence",
         "GET",
         "/v1/evidence/missing",
         NULL,
         {200, 200, 200, 200, 200, 200, 200, 200}},
        {"list users", "GET", "/v1/admin/users", NULL, {403, 403, 403, 403, 403, 403, 403, 200}},
        {"create a user",
         "POST",
         "/v1/admin/users",
         "{\"username\":\"intruder\",\"password\":\"Passw0rd-x1\",\"role\":\"admin\",\"unit\":\"U1\"}",
         {403, 403, 403, 403, 403, 403, 403, 0}},
        {"change a user",
         "PATCH",
         "/v1/admin/users/u1",
         "{\"role\":\"admin\"}",
         {403, 403, 403, 403, 403, 403, 403, 0}},
        {"resolve a conflict",
         "POST",
         "/v1/conflicts/%s/resolve",
         "{\"value\":1,\"note\":\"x\"}",
         {403, 403, 403, 403, 0, 403, 403, 0}},
        {"revoke a device",
         "POST",
         "/v1/devices/dev-off2/revoke",
         "{\"wipe\":false}",
         {403, 403, 403, 403, 0, 403, 403, 0}},
    };
    for (size_t i = 0; i < sizeof unit_reads / sizeof unit_reads[0]; i++)
        if (run_row(&s, ph, &unit_reads[i], conflict)) return;

    /* What a unit-level list shows another unit's supervisor: nothing of U1. */
    r = http(&s, "GET", "/v1/conflicts", ph[SUP_OTHER_UNIT].token, NULL, NULL);
    ASSERT_INT(jlen(resp_json(&r), "items"), 0);
    r = http(&s, "GET", "/v1/devices", ph[SUP_OTHER_UNIT].token, NULL, NULL);
    ASSERT_MSG(!strstr(r.body, "dev-off2"), "U2's supervisor sees U1's devices: %s", r.body);
    r = http(&s, "GET", "/v1/cases", ph[SUP_OTHER_UNIT].token, NULL, NULL);
    ASSERT_MSG(!strstr(r.body, id), "U2's supervisor finds U1's case: %.300s", r.body);
    r = http(&s, "GET", "/v1/export?format=csv", ph[SUP_OTHER_UNIT].token, NULL, NULL);
    ASSERT_MSG(!strstr(r.body, id), "U2's supervisor exports U1's case: %.300s", r.body);
    r = http(&s, "GET", "/v1/cases", ph[SUP].token, NULL, NULL);
    ASSERT_MSG(strstr(r.body, id) != NULL, "U1's supervisor misses its own case: %.300s", r.body);
    checked += 3;
    r = http(&s, "GET", "/v1/rejections", ph[OFF_OTHER_UNIT].token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    checked += 3;

    /* Writes: every role pushes an edit of the record; outside scope is rejected and changes nothing. */
    static const char *expect_push[NROLES] = {"applied", "applied",  "rejected", "applied",
                                              "applied", "rejected", "rejected", "applied"};
    for (int k = 0; k < NROLES; k++) {
        r = http(&s, "GET", hfmt("/v1/cases/%s", id), ph[ADMIN].token, NULL, NULL);
        long long v = jint(resp_json(&r), "version");
        r = phone_push(&ph[k], changes(ch_update(id, v, hfmt("{\"address\":\"addr by %d\"}", k), NULL)));
        ASSERT_STATUS(r, 200);
        const char *st = jstr(resp_json(&r), "results[0].status");
        ASSERT_MSG(st && strcmp(st, expect_push[k]) == 0, "edit by %s: %s", role_names[k], r.body);
        if (strcmp(expect_push[k], "rejected") == 0)
            ASSERT_JSTR(r.json, "results[0].error.code", "out_of_scope");
        checked++;
    }
    r = http(&s, "GET", hfmt("/v1/cases/%s", id), ph[ADMIN].token, NULL, NULL);
    ASSERT_JSTR(resp_json(&r), "fields.address", hfmt("addr by %d", ADMIN));

    /* Pulls: out-of-scope users never receive it. */
    for (int k = 0; k < NROLES; k++) {
        phone_t *p = &ph[k];
        p->cursor = NULL;
        cJSON *items = phone_pull_all(p);
        ASSERT(items != NULL);
        int has = pull_item(items, id) != NULL;
        int want = !(k == OFF_OTHER_GRID || k == OFF_OTHER_UNIT || k == SUP_OTHER_UNIT);
        ASSERT_MSG(has == want, "pull by %s: has=%d want=%d", role_names[k], has, want);
        checked++;
    }

    /* Finally the allowed resolve and revoke by the unit's supervisor. */
    r = http(&s, "POST", hfmt("/v1/conflicts/%s/resolve", conflict), ph[SUP].token,
             "{\"value\":130,\"note\":\"ok\"}", NULL);
    ASSERT_STATUS(r, 200);
    r = http(&s, "POST", "/v1/devices/dev-off2/revoke", ph[SUP].token, "{\"wipe\":false}", NULL);
    ASSERT_STATUS(r, 200);
    checked += 2;
    fprintf(stderr, "    authorization matrix: %d cells checked\n", checked);
    ASSERT_INT(srv_stop(&s), 0);
    srv_cleanup(&s);
}

TEST(tokens_forged_garbled_logged_out_or_of_disabled_users_are_401) {
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    phone_t a, adm;
    ASSERT(std_phone(&a, &s, "off1", "dev-A") == 0);
    ASSERT(std_phone(&adm, &s, "admin", "dev-ADM") == 0);
    const char *bad[] = {"0000000000000000000000000000000000000000000000000000000000000000", "not-a-token",
                         "", "x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        resp_t r = http(&s, "GET", "/v1/me", bad[i], NULL, NULL);
        ASSERT_MSG(r.status == 401, "token '%s' -> %ld", bad[i], r.status);
    }
    resp_t r =
        http(&s, "GET", "/v1/me", NULL, NULL, (const char *[]){"Authorization: Basic b2ZmMTpwdw==", NULL});
    ASSERT_ERROR(r, 401, "unauthenticated");
    r = http(&s, "GET", "/v1/me", NULL, NULL,
             (const char *[]){hfmt("Authorization: Bearer  %s", a.token), NULL});
    ASSERT_MSG(r.status == 401 || r.status == 200, "double space -> %ld", r.status);

    /* Disabling a user ends its sessions at once. */
    r = http(&s, "GET", "/v1/me", a.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    const char *uid = hfmt("%s", jstr(resp_json(&r), "user.id"));
    r = http(&s, "PATCH", hfmt("/v1/admin/users/%s", uid), adm.token, "{\"disabled\":true}", NULL);
    ASSERT_STATUS(r, 200);
    r = http(&s, "GET", "/v1/me", a.token, NULL, NULL);
    ASSERT_ERROR(r, 401, "unauthenticated");
    r = login_resp(&s, "off1", std_pass("off1"), "dev-A2");
    ASSERT_ERROR(r, 401, "invalid_credentials");
    /* No error body shows internals. */
    ASSERT_MSG(!strstr(r.body, ".c:") && !strstr(r.body, "lmdb") && !strstr(r.body, "MDB_"), "%s", r.body);

    /* Logout ends that token. */
    r = http(&s, "POST", "/v1/auth/logout", adm.token, NULL, NULL);
    ASSERT_STATUS(r, 204);
    r = http(&s, "GET", "/v1/me", adm.token, NULL, NULL);
    ASSERT_ERROR(r, 401, "unauthenticated");
    ASSERT_INT(srv_stop(&s), 0);
    srv_cleanup(&s);
}

TEST(queries_and_stats_on_a_store_with_no_cases) {
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    phone_t sup;
    ASSERT(std_phone(&sup, &s, "sup1", "dev-S") == 0);
    /* The first query of a fresh store builds its (empty) indexes. */
    resp_t r = phone_get(&sup, "/v1/cases");
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "items"), 0);
    r = phone_get(&sup, "/v1/stats");
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "groups"), 0);
    r = phone_get(&sup, "/v1/export?format=csv");
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
    srv_cleanup(&s);
}

/* The field-write dimension: field x role x state, each cell on a fresh
 * record in scope of every role tried, the per-change result as the
 * schema's write rules say (SCHEMA v2 A). */
TEST(authorization_matrix_field_writes) {
    enum { W_AUX, W_OFF, W_LEG, W_SUP, W_ADMIN, NW };
    static const char *const who[NW] = {"aux1", "off1", "leg1", "sup1", "admin"};
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    phone_t ph[NW], writer;
    for (int r = 0; r < NW; r++)
        ASSERT(std_phone(&ph[r], &s, who[r], hfmt("dev-w-%s", who[r])) == 0);
    ASSERT(std_phone(&writer, &s, "off2", "dev-off2") == 0);
    const char *A = "applied", *F = "field_forbidden", *Z = "field_frozen";
    struct {
        const char *what, *state, *change; /* change: %s record id, %lld base */
        const char *expect[NW];
    } rows[] = {
        {"description",
         "reported",
         "{\"op\":\"update\",\"record_id\":\"%s\",\"base_version\":%lld,\"set\":{\"description\":\"更新\"}}",
         {A, A, A, A, A}},
        {"fine_amount",
         "reported",
         "{\"op\":\"update\",\"record_id\":\"%s\",\"base_version\":%lld,\"set\":{\"fine_amount\":100}}",
         {F, A, A, A, A}},
        {"unit (移交)",
         "reported",
         "{\"op\":\"update\",\"record_id\":\"%s\",\"base_version\":%lld,\"set\":{\"unit\":\"U2\"}}",
         {F, F, F, A, A}},
        {"grid not patrolled",
         "reported",
         "{\"op\":\"update\",\"record_id\":\"%s\",\"base_version\":%lld,\"set\":{\"grid\":\"" GRID2 "\"}}",
         {F, F, A, A, A}},
        {"assignee",
         "reported",
         "{\"op\":\"update\",\"record_id\":\"%s\",\"base_version\":%lld,\"set\":{\"assignee\":\"@OFF1\"}}",
         {F, F, F, A, A}},
        {"fine after the decision",
         "decided",
         "{\"op\":\"update\",\"record_id\":\"%s\",\"base_version\":%lld,\"set\":{\"fine_amount\":150}}",
         {F, Z, Z, Z, Z}},
        {"correction of the fine",
         "decided",
         "{\"op\":\"correct\",\"record_id\":\"%s\",\"base_version\":%lld,\"set\":{\"fine_amount\":150},"
         "\"reason\":\"笔误\"}",
         {F, F, F, A, A}},
        {"note on the decided case",
         "decided",
         "{\"op\":\"update\",\"record_id\":\"%s\",\"base_version\":%lld,\"append\":{\"notes\":[{\"id\":\"n-"
         "w\",\"text\":\"x\"}]}}",
         {A, A, A, A, A}},
    };
    const char *dec =
        hfmt("{\"party\":{\"kind\":\"person\",\"name\":\"Zhang San\"},\"illegal_item_code\":\"C0501\","
             "\"assignee\":\"%s\",\"assist_officer\":\"%s\",\"decision_doc_no\":\"JY-7\","
             "\"fine_amount\":50}",
             writer.user_id, ph[W_OFF].user_id);
    int n = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        for (int r = 0; r < NW; r++) {
            const char *id = hfmt("01JDAUTHZW%04d%02d", (int)i, r);
            int decided = strcmp(rows[i].state, "decided") == 0;
            resp_t x = decided ? phone_push(&writer, changes(ch_create(id, "simple", dec),
                                                             ch_transition(id, 1, "decided")))
                               : phone_push(&writer, changes(ch_create(id, "digital", NULL)));
            ASSERT_STATUS(x, 200);
            long long base = decided ? 2 : 1;
            const char *change = hfmt(rows[i].change, id, base);
            const char *at = strstr(change, "@OFF1");
            if (at) change = hfmt("%.*s%s%s", (int)(at - change), change, ph[W_OFF].user_id, at + 5);
            x = phone_push(&ph[r], hfmt("[%s]", change));
            ASSERT_STATUS(x, 200);
            cJSON *res = jget(resp_json(&x), "results[0]");
            const char *got =
                strcmp(jstr(res, "status"), "rejected") == 0 ? jstr(res, "error.code") : jstr(res, "status");
            ASSERT_MSG(got && strcmp(got, rows[i].expect[r]) == 0,
                       "%s by %s on a %s case: %s, expected %s (%s)", rows[i].what, who[r], rows[i].state,
                       got ? got : "(none)", rows[i].expect[r], jprint(res));
            n++;
        }
    ASSERT_INT(n, 40);
}
