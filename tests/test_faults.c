/* test_faults.c -- faults the server must ride out: a full store answers 503
 * and applies nothing of the changeset; a raised limit brings it back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"
#include "tests/test.h"

TEST(full_store_answers_503_and_applies_nothing) {
    srv_t s;
    const char *cfg = hfmt("/tmp/casesync-faults-%d.json", (int)getpid());
    FILE *f = fopen(cfg, "w");
    ASSERT(f != NULL);
    fputs("{\"map_size\":1048576}", f); /* 1 MiB: full after a few hundred cases */
    fclose(f);
    setenv("CASESYNC_TEST_CONFIG", cfg, 1);
    ASSERT(srv_start(&s) == 0);
    phone_t a;
    ASSERT(std_phone(&a, &s, "off1", "dev-A") == 0);
    ASSERT(std_user(&s, "sup1") != NULL);

    /* Fill it: changesets of 20 cases until one is refused. */
    int acked = 0, full = 0;
    resp_t r;
    for (int cs = 0; cs < 200 && !full; cs++) {
        const char *list = "[";
        for (int i = 0; i < 20; i++)
            list = hfmt("%s%s%s", list, i ? "," : "",
                        ch_create(hfmt("01JDFULL%05d%05d", cs, i), "general",
                                  "{\"description\":\"a long description to fill pages quickly, "
                                  "a long description to fill pages quickly, a long description\"}"));
        list = hfmt("%s]", list);
        r = phone_push(&a, list);
        if (r.status == 200) {
            acked++;
        } else {
            ASSERT_MSG(r.status == 503, "a full store answered %ld %s", r.status, r.body);
            ASSERT_MSG(resp_header(&r, "Retry-After") != NULL, "503 without Retry-After");
            full = cs + 1;
        }
    }
    ASSERT_MSG(full > 0, "1 MiB never filled after %d changesets", acked);
    /* Still alive, still consistent; the refused changeset left nothing behind. */
    r = http(&s, "GET", "/healthz", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    r = phone_get(&a, hfmt("/v1/cases/01JDFULL%05d%05d", full - 1, 0));
    ASSERT_STATUS(r, 404);
    r = phone_get(&a, hfmt("/v1/cases/01JDFULL%05d%05d", full - 2, 19));
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
    cli_res_t v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "verify of a full store exited %d: %s", v.rc, v.err);

    /* The operator raises the limit: the same changeset goes through. */
    f = fopen(cfg, "w");
    ASSERT(f != NULL);
    fputs("{\"map_size\":67108864}", f);
    fclose(f);
    ASSERT(srv_restart(&s) == 0);
    r = phone_push(&a, changes(ch_create("01JDFULLAFTER00001", "general", NULL)));
    ASSERT_MSG(r.status == 200, "after raising map_size: %ld %s", r.status, r.body);
    fprintf(stderr, "    store full after %d changesets of 20 cases; the next was refused whole\n", acked);
    ASSERT_INT(srv_stop(&s), 0);
    unsetenv("CASESYNC_TEST_CONFIG");
    remove(cfg);
    srv_cleanup(&s);
}
