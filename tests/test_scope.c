/* test_scope.c -- who sees what: unit and grid scope, moves, new grants,
 * paging, cursors and the repair check, over HTTP against casesyncd. */
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")
#define PHONE(p, s, name, dev)                                                                               \
    ASSERT_MSG(std_phone(&(p), &(s), (name), (dev)) == 0, "login of %s failed", (name))

/* ---- 7. scope ----------------------------------------------------------------- */

TEST(scope_other_unit_grid_move_and_new_grant) {
    srv_t s;
    START(s);
    phone_t a, b, c, x, sup, adm;
    PHONE(a, s, "off1", "dev-A"); /* U1, GRID1: creator */
    PHONE(b, s, "off2", "dev-B"); /* U1, GRID1 */
    PHONE(c, s, "off3", "dev-C"); /* U1, GRID2 */
    PHONE(x, s, "offx", "dev-X"); /* U2, GRID1: same grid code, other unit */
    PHONE(sup, s, "sup1", "dev-S");
    PHONE(adm, s, "admin", "dev-ADM");
    const char *id = "01JDSCOPE000000001", *id2 = "01JDSCOPE000000002";

    /* Everyone starts from a full pull of an empty store. */
    phone_t *all[] = {&b, &c, &x};
    for (int i = 0; i < 3; i++) {
        resp_t r = phone_pull(all[i], 0, 0);
        ASSERT_STATUS(r, 200);
        ASSERT_INT(jlen(resp_json(&r), "changes"), 0);
    }
    resp_t r = phone_push(&a, changes(ch_create(id, "general", NULL), ch_create(id2, "general", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    ASSERT_JSTR(r.json, "results[1].status", "applied");

    r = phone_pull(&b, 0, 0);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(pull_item(resp_json(&r), id) != NULL,
               "an officer of the unit and grid did not get the case: %s", r.body);
    r = phone_pull(&c, 0, 0);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(pull_count(resp_json(&r), id) == 0, "an officer of another grid got the case: %s", r.body);
    r = phone_pull(&x, 0, 0);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(pull_count(resp_json(&r), id) == 0, "an officer of another unit got the case: %s", r.body);
    /* Nor with a fresh full pull. */
    phone_t x2 = x;
    x2.cursor = NULL;
    r = phone_pull(&x2, 0, 0);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(pull_count(resp_json(&r), id), 0);
    r = phone_get(&x, hfmt("/v1/cases/%s", id));
    ASSERT_ERROR(r, 403, "forbidden");
    r = phone_get(&x, hfmt("/v1/cases/%s/history", id));
    ASSERT_STATUS(r, 403);
    r = phone_get(&c, hfmt("/v1/cases/%s", id));
    ASSERT_STATUS(r, 403);

    /* The supervisor moves the case to GRID2: B loses it, C gains it in full,
     * the creator keeps it. */
    r = phone_push(&sup, changes(ch_update(id, 1, "{\"grid\":\"" GRID2 "\"}", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    r = phone_pull(&b, 0, 0);
    ASSERT_STATUS(r, 200);
    cJSON *it = pull_item(resp_json(&r), id);
    ASSERT_MSG(it != NULL, "B got no remove for the moved case: %s", r.body);
    ASSERT_JSTR(it, "op", "remove");
    ASSERT_JSTR(it, "reason", "out_of_scope");
    ASSERT_INT(pull_count(r.json, id2), 0);
    r = phone_get(&b, hfmt("/v1/cases/%s", id));
    ASSERT_STATUS(r, 403);
    r = phone_pull(&c, 0, 0);
    ASSERT_STATUS(r, 200);
    it = pull_item(resp_json(&r), id);
    ASSERT_MSG(it != NULL, "C (GRID2) did not get the case moved into its grid: %s", r.body);
    ASSERT_JSTR(it, "op", "upsert");
    ASSERT_JBOOL(it, "full", 1);
    ASSERT_JSTR(it, "fields.grid", GRID2);
    ASSERT_JSTR(it, "fields.description", "street vendor");
    r = phone_get(&a, hfmt("/v1/cases/%s", id));
    ASSERT_STATUS(r, 200);

    /* The admin grants B GRID2: B's next pull brings the case in full. */
    const char *bid = b.user_id;
    r = http(&s, "PATCH", hfmt("/v1/admin/users/%s", bid), adm.token,
             "{\"grids\":[\"" GRID1 "\",\"" GRID2 "\"]}", NULL);
    ASSERT_STATUS(r, 200);
    r = phone_pull(&b, 0, 0);
    ASSERT_STATUS(r, 200);
    it = pull_item(resp_json(&r), id);
    ASSERT_MSG(it != NULL, "the new grant did not bring the case: %s", r.body);
    ASSERT_JSTR(it, "op", "upsert");
    ASSERT_JBOOL(it, "full", 1);
    ASSERT_JINT(it, "version", 2);
    ASSERT_JSTR(it, "fields.grid", GRID2);
    ASSERT_JSTR(it, "fields.description", "street vendor");
    ASSERT_JSTR(it, "fields.address", "1 Dongcheng Rd");
    ASSERT_JSTR(it, "status", "clue");
    r = phone_get(&b, hfmt("/v1/cases/%s", id));
    ASSERT_STATUS(r, 200);

    /* Through all of it, the other unit never saw the case. */
    r = phone_pull(&x, 0, 0);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(pull_count(resp_json(&r), id), 0);
    ASSERT_INT(pull_count(r.json, id2), 0);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- paging and cursors --------------------------------------------------------- */

TEST(paging_walks_every_record_once) {
    srv_t s;
    START(s);
    phone_t a, b;
    PHONE(a, s, "off1", "dev-A");
    PHONE(b, s, "off2", "dev-B");
    enum { N = 7 };
    const char *ids[N], *ch[N];
    for (int i = 0; i < N; i++) {
        ids[i] = hfmt("01JDPAGE00000000%02d", i);
        ch[i] = ch_create(ids[i], "general", NULL);
    }
    resp_t r = phone_push(&a, changes(ch[0], ch[1], ch[2], ch[3]));
    ASSERT_STATUS(r, 200);
    r = phone_push(&a, changes(ch[4], ch[5], ch[6]));
    ASSERT_STATUS(r, 200);
    /* An update of an early record moves it to the end of the feed. */
    r = phone_push(&a, changes(ch_update(ids[0], 1, "{\"description\":\"updated\"}", NULL)));
    ASSERT_STATUS(r, 200);

    int seen[N] = {0};
    int pages = 0, done = 0;
    long long last_seq = 0;
    while (pages < 3 * N && !done) {
        r = phone_pull(&b, 1, 0);
        ASSERT_STATUS(r, 200);
        cJSON *j = resp_json(&r);
        pages++;
        ASSERT_MSG(jlen(j, "changes") <= 1, "limit=1 gave %d items", jlen(j, "changes"));
        cJSON *it = jget(j, "changes[0]");
        if (it) {
            const char *rid = jstr(it, "record_id");
            int k = -1;
            for (int i = 0; i < N; i++)
                if (rid && strcmp(rid, ids[i]) == 0) k = i;
            ASSERT_MSG(k >= 0, "unknown record in a page: %s", jprint(it));
            seen[k]++;
            ASSERT_MSG(jint(it, "seq") > last_seq, "items out of seq order: %s after seq %lld", jprint(it),
                       last_seq);
            last_seq = jint(it, "seq");
        }
        int more = jbool(j, "more");
        ASSERT_MSG(more == 0 || more == 1, "no `more` in %s", r.body);
        if (pages == 1) ASSERT_MSG(more == 1, "limit=1 over %d records said more:false", N);
        done = !more;
        resp_free(&r);
    }
    ASSERT_MSG(done, "pages never ended (%d pages)", pages);
    for (int i = 0; i < N; i++)
        ASSERT_MSG(seen[i] == 1, "record %s came %d times", ids[i], seen[i]);
    ASSERT_MSG(pages <= N + 1, "%d pages for %d records", pages, N);

    /* And it is all caught up now. */
    r = phone_pull(&b, 0, 0);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "changes"), 0);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(bad_tampered_and_foreign_cursors) {
    srv_t s;
    START(s);
    phone_t a, b;
    PHONE(a, s, "off1", "dev-A");
    PHONE(b, s, "off2", "dev-B");
    resp_t r = phone_push(&a, changes(ch_create("01JDCURSOR00000001", "general", NULL)));
    ASSERT_STATUS(r, 200);
    r = phone_pull(&a, 0, 0);
    ASSERT_STATUS(r, 200);
    const char *good = a.cursor;
    ASSERT_MSG(good && strlen(good) >= 4, "cursor too short to tamper with: %s", r.body);

    r = phone_get(&a, "/v1/sync/pull?cursor=not-a-cursor");
    ASSERT_ERROR(r, 400, "bad_cursor");

    /* Flip one character in the middle of a valid cursor. */
    char *t = hfmt("%s", good);
    size_t mid = strlen(t) / 2;
    t[mid] = t[mid] == 'A' ? 'B' : 'A';
    char *esc = curl_easy_escape(NULL, t, 0);
    const char *path = hfmt("/v1/sync/pull?cursor=%s", esc);
    curl_free(esc);
    r = phone_get(&a, path);
    ASSERT_ERROR(r, 400, "bad_cursor");

    /* A's cursor is not B's. */
    esc = curl_easy_escape(NULL, good, 0);
    path = hfmt("/v1/sync/pull?cursor=%s", esc);
    curl_free(esc);
    r = phone_get(&b, path);
    ASSERT_ERROR(r, 400, "bad_cursor");
    /* The untouched cursor still works for A. */
    r = phone_get(&a, path);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(jlen(resp_json(&r), "changes"), 0);

    /* Bad query values. */
    r = phone_get(&a, "/v1/sync/pull?limit=0");
    ASSERT_STATUS(r, 400);
    r = phone_get(&a, "/v1/sync/pull?limit=abc");
    ASSERT_STATUS(r, 400);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(sync_check_finds_missing_stale_and_extra) {
    srv_t s;
    START(s);
    phone_t a, b, x;
    PHONE(a, s, "off1", "dev-A");
    PHONE(b, s, "off2", "dev-B");
    PHONE(x, s, "offx", "dev-X");
    const char *r1 = "01JDCHECK000000001", *r2 = "01JDCHECK000000002", *r3 = "01JDCHECK000000003";
    const char *foreign = "01JDCHECK00000000X", *unknown = "01JDCHECK0000000ZZ";
    resp_t r = phone_push(&a, changes(ch_create(r1, "general", NULL), ch_create(r2, "general", NULL),
                                      ch_create(r3, "general", NULL)));
    ASSERT_STATUS(r, 200);
    r = phone_push(&a, changes(ch_update(r1, 1, "{\"description\":\"now version 2\"}", NULL)));
    ASSERT_STATUS(r, 200);
    r = phone_push(&x, changes(ch_create_in(foreign, TYPE_VENDING, "general", "U2", GRID1, NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");

    /* B holds r1 at version 1 (stale), r2 current, not r3 (missing), and two
     * records it should not have: another unit's and one that does not exist. */
    const char *body =
        hfmt("{\"records\":[[\"%s\",1],[\"%s\",1],[\"%s\",1],[\"%s\",1]]}", r1, r2, foreign, unknown);
    r = http(&s, "POST", "/v1/sync/check", b.token, body, NULL);
    ASSERT_STATUS(r, 200);
    cJSON *j = resp_json(&r);
    ASSERT_MSG(jlen(j, "missing") == 1 && jarr_has(jget(j, "missing"), NULL, r3), "missing: %s", r.body);
    ASSERT_MSG(jlen(j, "stale") == 1 && jarr_has(jget(j, "stale"), NULL, r1), "stale: %s", r.body);
    ASSERT_MSG(jlen(j, "extra") == 2 && jarr_has(jget(j, "extra"), NULL, foreign) &&
                   jarr_has(jget(j, "extra"), NULL, unknown),
               "extra: %s", r.body);

    /* A phone that holds exactly its scope is told nothing. */
    body = hfmt("{\"records\":[[\"%s\",2],[\"%s\",1],[\"%s\",1]]}", r1, r2, r3);
    r = http(&s, "POST", "/v1/sync/check", b.token, body, NULL);
    ASSERT_STATUS(r, 200);
    j = resp_json(&r);
    ASSERT_MSG(jlen(j, "missing") == 0 && jlen(j, "stale") == 0 && jlen(j, "extra") == 0, "clean phone: %s",
               r.body);

    r = http(&s, "POST", "/v1/sync/check", b.token, "{\"records\":[[\"ok-id-123\",\"one\"]]}", NULL);
    ASSERT_MSG(r.status == 400 || r.status == 422, "a malformed check got %ld: %s", r.status, r.body);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(assignee_sees_a_case_outside_their_grids) {
    srv_t s;
    START(s);
    phone_t a, c, sup;
    PHONE(a, s, "off1", "dev-A"); /* U1, GRID1 */
    PHONE(c, s, "off3", "dev-C"); /* U1, GRID2 */
    PHONE(sup, s, "sup1", "dev-S");
    const char *id = "01JDASSIGN00000001";
    resp_t r = phone_pull(&c, 0, 0);
    ASSERT_STATUS(r, 200);
    r = phone_push(&a, changes(ch_create(id, "general", NULL)));
    ASSERT_STATUS(r, 200);
    r = phone_pull(&c, 0, 0);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(pull_count(resp_json(&r), id), 0);

    /* The supervisor assigns it to C: C gets it in full. */
    r = phone_push(&sup, changes(ch_update(id, 1, hfmt("{\"assignee\":\"%s\"}", c.user_id), NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    r = phone_pull(&c, 0, 0);
    ASSERT_STATUS(r, 200);
    cJSON *it = pull_item(resp_json(&r), id);
    ASSERT_MSG(it != NULL, "the assignee did not get the case: %s", r.body);
    ASSERT_JSTR(it, "op", "upsert");
    ASSERT_JBOOL(it, "full", 1);
    ASSERT_JSTR(it, "fields.assignee", c.user_id);
    ASSERT_JSTR(it, "fields.description", "street vendor");
    r = phone_get(&c, hfmt("/v1/cases/%s", id));
    ASSERT_STATUS(r, 200);

    /* Assigned elsewhere again: C gets a remove. */
    r = phone_push(&sup, changes(ch_update(id, 2, hfmt("{\"assignee\":\"%s\"}", a.user_id), NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    r = phone_pull(&c, 0, 0);
    ASSERT_STATUS(r, 200);
    it = pull_item(resp_json(&r), id);
    ASSERT_MSG(it != NULL, "no remove after the case was reassigned: %s", r.body);
    ASSERT_JSTR(it, "op", "remove");
    ASSERT_JSTR(it, "reason", "out_of_scope");
    ASSERT_INT(srv_stop(&s), 0);
}
