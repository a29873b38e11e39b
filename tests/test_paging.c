/* test_paging.c -- deltas across pages: a record changed before and after a
 * page boundary still brings every change since the phone's copy. */
#include <string.h>

#include "tests/harness.h"
#include "tests/test.h"

TEST(paged_delta_keeps_changes_from_before_the_page_boundary) {
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    phone_t a, b;
    ASSERT(std_phone(&a, &s, "off1", "dev-A") == 0);
    ASSERT(std_phone(&b, &s, "off2", "dev-B") == 0);
    const char *ids[4] = {"01JDPAGE0000000001", "01JDPAGE0000000002", "01JDPAGE0000000003",
                          "01JDPAGE0000000004"};
    for (int i = 0; i < 4; i++) { resp_t w = phone_push(&a, changes(ch_create(ids[i], "general", NULL))); ASSERT_STATUS(w, 200); }
    ASSERT(phone_pull_all(&b) != NULL); /* B holds version 1 of all four */

    /* R1 changes (description), then R2 and R3, then R1 again (address). */
    { resp_t w = phone_push(&a, changes(ch_update(ids[0], 1, "{\"description\":\"first change\"}", NULL))); ASSERT_STATUS(w, 200); }
    { resp_t w = phone_push(&a, changes(ch_update(ids[1], 1, "{\"description\":\"r2\"}", NULL))); ASSERT_STATUS(w, 200); }
    { resp_t w = phone_push(&a, changes(ch_update(ids[2], 1, "{\"description\":\"r3\"}", NULL))); ASSERT_STATUS(w, 200); }
    { resp_t w = phone_push(&a, changes(ch_update(ids[0], 2, "{\"address\":\"second change\"}", NULL))); ASSERT_STATUS(w, 200); }

    /* Pages of one: R2, R3, then R1 — whose delta must still hold the description. */
    cJSON *r1 = NULL;
    for (int page = 0; page < 10; page++) {
        resp_t r = phone_pull(&b, 1, 0);
        ASSERT_STATUS(r, 200);
        cJSON *it = pull_item(resp_json(&r), ids[0]);
        if (it) r1 = it;
        if (!jbool(r.json, "more")) break;
    }
    ASSERT_MSG(r1 != NULL, "R1 never came");
    ASSERT_JINT(r1, "version", 3);
    if (!jbool(r1, "full")) {
        ASSERT_JSTR(r1, "fields.description", "first change");
        ASSERT_JSTR(r1, "fields.address", "second change");
    }
    ASSERT_INT(srv_stop(&s), 0);
    srv_cleanup(&s);
}
