/* fuzz_headers.c -- request header values the server parses itself:
 * Accept-Encoding (http_accepts_gzip: tokens, q-values, whitespace).
 * A value with "gzip" as a token of its own (no q) is always accepted, for
 * the best q of a coding counts, whatever follows it.
 */
#include <string.h>

#include "server/http.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_HEADER 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > FUZZ_MAX_HEADER) return 0;
    char *v = malloc(size + 8);
    FUZZ_CHECK(v != NULL);
    memcpy(v, data, size);
    v[size] = 0;

    int a = http_accepts_gzip(v);
    FUZZ_CHECK(a == 0 || a == 1);
    /* "gzip" in front as its own token: accepted, whatever the rest says. */
    if (!memchr(data, 0, size)) {
        char *w = malloc(size + 8);
        FUZZ_CHECK(w != NULL);
        memcpy(w, "gzip, ", 6);
        memcpy(w + 6, data, size);
        w[size + 6] = 0;
        int b = http_accepts_gzip(w);
        FUZZ_CHECK(b == 1);
        free(w);
    }
    free(v);
    return 0;
}
