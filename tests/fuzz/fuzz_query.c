/* fuzz_query.c -- query strings: route_query() (civetweb's mg_get_var with
 * URL decoding) for the names the server reads and for the first name the
 * string itself holds, into buffers of the sizes the server uses, and
 * route_query_int() (the server's own integer parsing) for limit and wait.
 *
 * civetweb comes from Debian and is not instrumented: a write past the end of
 * a buffer inside mg_get_var would go unseen by ASan, so every buffer here
 * carries a guard tail that is checked after each call.
 */
#include <string.h>

#include "server/route.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_QUERY 16384 /* civetweb's request line limit is about this */
#define GUARD 32
#define GUARD_BYTE 0xA5

static const struct {
    const char *name;
    size_t size;
} reads[] = {
    {"cursor", 8193}, /* routes.c: MAX_CURSOR + 1 */
    {"state", 16},    {"limit", 32}, {"wait", 32}, {"q", 1}, {"status", 64},
};

/* route_query into a guarded buffer of `size` bytes; checks its contract. */
static void read_one(const http_req_t *r, const char *name, size_t size) {
    unsigned char *buf = malloc(size + GUARD);
    FUZZ_CHECK(buf != NULL);
    memset(buf, GUARD_BYTE, size + GUARD);
    int n = route_query(r, name, (char *)buf, size);
    for (size_t i = size; i < size + GUARD; i++)
        FUZZ_CHECK(buf[i] == GUARD_BYTE);
    FUZZ_CHECK(n >= -2);
    if (n >= 0)
        FUZZ_CHECK((size_t)n < size && strlen((char *)buf) == (size_t)n);
    else
        FUZZ_CHECK(buf[0] == 0);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > FUZZ_MAX_QUERY) return 0;
    char *qs = malloc(size + 1);
    FUZZ_CHECK(qs != NULL);
    memcpy(qs, data, size);
    qs[size] = 0;

    struct mg_request_info ri;
    memset(&ri, 0, sizeof ri);
    ri.request_method = "GET";
    ri.local_uri = "/v1/sync/pull";
    ri.query_string = qs;
    http_req_t req;
    memset(&req, 0, sizeof req);
    req.ri = &ri; /* no connection: an error answer is built but not sent */
    call_t call = {.req = &req};

    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++)
        read_one(&req, reads[i].name, reads[i].size);

    /* The first name in the string, whatever it is. */
    char name[64] = "page";
    size_t nl = strcspn(qs, "=&");
    if (nl > 0 && nl < sizeof name) {
        memcpy(name, qs, nl);
        name[nl] = 0;
        read_one(&req, name, 8);
        read_one(&req, name, 256);
    }

    int v = -12345;
    if (route_query_int(&call, "limit", 100, 1, 1000, &v) == 0) FUZZ_CHECK(v >= 1 && v <= 1000);
    v = -12345;
    if (route_query_int(&call, "wait", 0, 0, 60, &v) == 0) FUZZ_CHECK(v >= 0 && v <= 60);
    v = -12345;
    if (route_query_int(&call, name, 3, -5, 5, &v) == 0) FUZZ_CHECK(v >= -5 && v <= 5);
    free(qs);
    return 0;
}
