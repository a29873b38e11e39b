/* fuzz_gzip.c -- request body inflation (http_gunzip): corrupt, truncated,
 * multi-member and bomb-shaped gzip and zlib input, under small output
 * limits. Beyond "no crash" it checks the limit contract: an answer is never
 * longer than max_out, "too large" (-1) is only said of input that really
 * inflates past the limit, and a small limit and a large one agree on every
 * byte they both produce. It also checks that http_gzip() round-trips.
 */
#include <string.h>

#include "server/http.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_IN (64 << 10)
#define BIG_LIMIT ((size_t)4 << 20)

static const size_t limits[] = {0, 1, 255, 4096};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *big = NULL, *out = NULL;
    size_t big_len = 0, out_len = 0;
    if (size > FUZZ_MAX_IN) return 0;

    int big_rc = http_gunzip(data, size, BIG_LIMIT, &big, &big_len);
    FUZZ_CHECK(big_rc == 0 || big_rc == -1 || big_rc == -2);
    FUZZ_CHECK((big_rc == 0) == (big != NULL));
    if (big_rc == 0) FUZZ_CHECK(big_len <= BIG_LIMIT && big[big_len] == 0);

    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        size_t max = limits[i];
        int rc = http_gunzip(data, size, max, &out, &out_len);
        FUZZ_CHECK(rc == 0 || rc == -1 || rc == -2);
        if (rc != 0) {
            FUZZ_CHECK(out == NULL && out_len == 0);
            /* "Too large" under max: the whole would really be longer. */
            if (rc == -1) FUZZ_CHECK(big_rc != 0 || big_len > max);
            /* Corrupt under max: corrupt under the bigger limit too (the
             * stream broke before the limit was reached). */
            if (rc == -2) FUZZ_CHECK(big_rc == -2);
            continue;
        }
        FUZZ_CHECK(out != NULL && out_len <= max && out[out_len] == 0);
        FUZZ_CHECK(big_rc == 0 && big_len == out_len && memcmp(big, out, out_len) == 0);
        free(out);
        out = NULL;
    }
    free(big);

    /* What the server compresses, it (and any phone using zlib) inflates. */
    char *gz = NULL, *back = NULL;
    size_t gz_len = 0, back_len = 0;
    FUZZ_CHECK(http_gzip(data, size, &gz, &gz_len) == 0);
    FUZZ_CHECK(http_gunzip(gz, gz_len, size, &back, &back_len) == 0);
    FUZZ_CHECK(back_len == size && memcmp(back, data, size) == 0);
    if (size > 0) {
        free(back);
        back = NULL;
        FUZZ_CHECK(http_gunzip(gz, gz_len, size - 1, &back, &back_len) == -1);
    }
    free(gz);
    free(back);
    return 0;
}
