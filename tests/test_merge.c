/* test_merge.c -- the per-field merge decision as a pure function (sync/merge.c). */
#include "sync/merge.h"
#include "tests/test.h"

#include <string.h>

TEST(merge_not_concurrent_applies_or_skips) {
    merge_meta_t m = {.version = 5, .device = "dev-A", .at_ms = 1000};
    /* Seen by the pusher (base 5): no concurrency, whatever the policy. */
    ASSERT_INT(merge_decide(POLICY_MANUAL, &m, 5, "dev-B", 900, 0), MERGE_APPLY);
    ASSERT_INT(merge_decide(POLICY_LWW, &m, 5, "dev-B", 900, 1), MERGE_SKIP);
    /* A device never conflicts with its own earlier writes. */
    ASSERT_INT(merge_decide(POLICY_MANUAL, &m, 2, "dev-A", 900, 0), MERGE_APPLY);
    /* A field never set. */
    merge_meta_t none = {0};
    ASSERT_INT(merge_decide(POLICY_MANUAL, &none, 0, "dev-B", 900, 0), MERGE_APPLY);
    ASSERT_INT(merge_concurrent(&none, 0, "dev-B"), 0);
}

TEST(merge_concurrent_by_policy) {
    merge_meta_t m = {.version = 7, .device = "dev-A", .at_ms = 1000};
    ASSERT_INT(merge_concurrent(&m, 6, "dev-B"), 1);
    /* lww: the later time wins; a tie goes to the greater device id. */
    ASSERT_INT(merge_decide(POLICY_LWW, &m, 6, "dev-B", 1001, 0), MERGE_LWW_CLIENT);
    ASSERT_INT(merge_decide(POLICY_LWW, &m, 6, "dev-B", 999, 0), MERGE_LWW_SERVER);
    ASSERT_INT(merge_decide(POLICY_LWW, &m, 6, "dev-B", 1000, 0), MERGE_LWW_CLIENT);
    ASSERT_INT(merge_decide(POLICY_LWW, &m, 6, "dev-0", 1000, 0), MERGE_LWW_SERVER);
    ASSERT_INT(merge_decide(POLICY_LWW, &m, 6, "dev-B", 5000, 1), MERGE_SKIP);
    /* union: both sets. */
    ASSERT_INT(merge_decide(POLICY_UNION, &m, 6, "dev-B", 1, 0), MERGE_UNION);
    /* manual (legal fields): a person decides, unless both say the same. */
    ASSERT_INT(merge_decide(POLICY_MANUAL, &m, 6, "dev-B", 5000, 0), MERGE_MANUAL);
    ASSERT_INT(merge_decide(POLICY_MANUAL, &m, 6, "dev-B", 5000, 1), MERGE_SKIP);
    ASSERT_STR(merge_decision_name(MERGE_MANUAL), "manual");
}
