/* test.h -- a tiny test harness: TEST() registers, ASSERT*() fail and return.
 *
 * Every test runs in a forked child with an alarm, so a crash, a hang, a
 * sanitizer report or a leak fails that test alone. main.c runs them and ends
 * with the one line "N passed, N failed".
 */
#ifndef CASESYNC_TEST_H
#define CASESYNC_TEST_H

#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn, const char *file);
/* Marks the running test failed and prints where. */
void test_failf(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int test_failed(void);

#define TEST(name)                                                                  \
    static void name(void);                                                         \
    __attribute__((constructor)) static void test_reg_##name(void) {                \
        test_register(#name, name, __FILE__);                                       \
    }                                                                               \
    static void name(void)

#define ASSERT(cond)                                                                \
    do {                                                                            \
        if (!(cond)) {                                                              \
            test_failf(__FILE__, __LINE__, "assertion failed: %s", #cond);          \
            return;                                                                 \
        }                                                                           \
    } while (0)

#define ASSERT_INT(a, b)                                                            \
    do {                                                                            \
        long long a_ = (long long)(a), b_ = (long long)(b);                         \
        if (a_ != b_) {                                                             \
            test_failf(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a,  \
                       a_, #b, b_);                                                 \
            return;                                                                 \
        }                                                                           \
    } while (0)

#define ASSERT_STR(a, b)                                                            \
    do {                                                                            \
        const char *a_ = (a), *b_ = (b);                                            \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                    \
            test_failf(__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"", #a,     \
                       a_ ? a_ : "(null)", b_ ? b_ : "(null)");                     \
            return;                                                                 \
        }                                                                           \
    } while (0)

#endif
