/* fuzz_jsonscan.c -- the JSON element scanner (server/jsonscan.c) on any bytes:
 * - fed in three pieces split where the input's first bytes say, it ends in
 *   the same state as fed in one piece;
 * - on every text cJSON accepts (one value, then only whitespace), the count
 *   is exactly cJSON's nodes plus member names, and the depth cJSON's;
 * - the limits: max_elements = the count passes, one less is TOO_MANY (and the
 *   scan stops at the byte that passed it); max_depth likewise TOO_DEEP.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "server/jsonscan.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_INPUT (64 * 1024)

/* Nodes plus member names of a tree, and its depth of arrays/objects. */
static void tree_count(const cJSON *j, int level, size_t *n, int *depth) {
    (*n)++;
    if (j->string) (*n)++;
    if (cJSON_IsArray(j) || cJSON_IsObject(j)) {
        if (level + 1 > *depth) *depth = level + 1;
        for (const cJSON *c = j->child; c; c = c->next)
            tree_count(c, level + 1, n, depth);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > FUZZ_MAX_INPUT) return 0;
    jsonscan_t whole, parts;
    FUZZ_CHECK(jsonscan_text(data, size, 0, 0, &whole) == JSONSCAN_OK);

    size_t a = size ? data[0] % (size + 1) : 0;
    size_t b = size > 1 ? a + data[1] % (size - a + 1) : a;
    jsonscan_init(&parts, 0, 0);
    jsonscan_feed(&parts, data, a);
    jsonscan_feed(&parts, data + a, b - a);
    jsonscan_feed(&parts, data + b, size - b);
    FUZZ_CHECK(parts.elements == whole.elements && parts.depth == whole.depth &&
               parts.depth_max == whole.depth_max && parts.control == whole.control &&
               parts.nul == whole.nul);

    /* (A limit of 0 means none: the checks start at 1.) */
    if (whole.elements > 1) {
        jsonscan_t lim;
        FUZZ_CHECK(jsonscan_text(data, size, whole.elements, 0, NULL) == JSONSCAN_OK);
        FUZZ_CHECK(jsonscan_text(data, size, whole.elements - 1, 0, &lim) == JSONSCAN_TOO_MANY);
        FUZZ_CHECK(lim.elements == whole.elements);
    }
    if (whole.depth_max > 1) {
        FUZZ_CHECK(jsonscan_text(data, size, 0, whole.depth_max, NULL) == JSONSCAN_OK);
        FUZZ_CHECK(jsonscan_text(data, size, 0, whole.depth_max - 1, NULL) == JSONSCAN_TOO_DEEP);
    }

    /* Against cJSON, on what it accepts. */
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)data, size, &end, 0);
    if (root) {
        int rest_ws = 1;
        for (const char *p = end; p < (const char *)data + size; p++)
            if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') rest_ws = 0;
        if (rest_ws) {
            size_t n = 0;
            int depth = 0;
            tree_count(root, 0, &n, &depth);
            FUZZ_CHECK(n == whole.elements);
            FUZZ_CHECK(depth == whole.depth_max);
            FUZZ_CHECK(whole.depth == 0);
        }
        cJSON_Delete(root);
    }
    return 0;
}
