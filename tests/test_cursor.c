/* test_cursor.c -- the cursor codec (sync/cursor.h) alone: round trips,
 * tampering, truncation, the two kinds, other keys, the format cursors had
 * before the codec, and allocation failures; then the two kinds over HTTP. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sync/cursor.h"
#include "sync/fault.h"
#include "sync/sync.h"
#include "tests/harness.h"
#include "tests/test.h"

#define KEY "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define KEY2 "f123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define TEXT_MAX 16384

static const char *pull_payload = "{\"u\":\"u-1\",\"gv\":2,\"s\":41,\"t\":0,\"f\":0,\"x\":[]}";

/* Opens text; the payload (pool) or NULL, with *rc the code. */
static const char *open_as(const char *key, cursor_kind_t kind, const char *text, size_t *n, int *rc) {
    unsigned char *p = (unsigned char *)"not set";
    *rc = cursor_open(key, kind, text, TEXT_MAX, &p, n);
    if (*rc != 0) return p == NULL ? NULL : "payload set on failure";
    return h_keep(p, NULL);
}

TEST(cursor_round_trips_each_kind) {
    const cursor_kind_t kinds[2] = {CURSOR_PULL, CURSOR_CASES};
    unsigned char bin[300];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)(i * 7 + 3); /* zeros and 0xff too */
    for (int k = 0; k < 2; k++) {
        /* Every length mod 3 (base64 padding), text and binary payloads. */
        for (size_t len = 1; len <= sizeof bin; len += len < 8 ? 1 : 37) {
            char *c = NULL;
            ASSERT_INT(cursor_seal(KEY, kinds[k], bin, len, &c), 0);
            h_keep(c, NULL);
            ASSERT_MSG(strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") ==
                           strlen(c),
                       "cursor %s is not URL-safe", c);
            size_t n = 0;
            int rc;
            const char *p = open_as(KEY, kinds[k], c, &n, &rc);
            ASSERT_INT(rc, 0);
            ASSERT_INT(n, len);
            ASSERT(memcmp(p, bin, len) == 0);
        }
        char *c = NULL;
        ASSERT_INT(cursor_seal(KEY, kinds[k], pull_payload, strlen(pull_payload), &c), 0);
        h_keep(c, NULL);
        size_t n = 0;
        int rc;
        ASSERT_STR(open_as(KEY, kinds[k], c, &n, &rc), pull_payload);
    }
    /* Nothing to seal, or no key: an error, never a cursor. */
    char *c = (char *)"unset";
    ASSERT_INT(cursor_seal(KEY, CURSOR_PULL, "", 0, &c), SYNC_EBADREQ);
    ASSERT(c == NULL);
    c = (char *)"unset";
    ASSERT_INT(cursor_seal("", CURSOR_PULL, "x", 1, &c), SYNC_EIO);
    ASSERT(c == NULL);
}

TEST(cursor_tampered_or_truncated_is_rejected) {
    char *c = NULL;
    ASSERT_INT(cursor_seal(KEY, CURSOR_PULL, pull_payload, strlen(pull_payload), &c), 0);
    h_keep(c, NULL);
    size_t len = strlen(c), n;
    int rc;
    /* Every character changed, in the payload and in the tag. */
    for (size_t i = 0; i < len; i++) {
        char *t = hfmt("%s", c);
        t[i] = t[i] == 'A' ? 'B' : t[i] == '.' ? '_' : 'A';
        ASSERT_MSG(open_as(KEY, CURSOR_PULL, t, &n, &rc) == NULL && rc == SYNC_EBADCURSOR,
                   "a cursor changed at %zu opened (rc %d)", i, rc);
    }
    /* Every prefix, and the cursor with bytes after it. */
    for (size_t i = 0; i < len; i++) {
        char *t = hfmt("%.*s", (int)i, c);
        ASSERT_MSG(open_as(KEY, CURSOR_PULL, t, &n, &rc) == NULL && rc == SYNC_EBADCURSOR,
                   "the first %zu characters opened (rc %d)", i, rc);
    }
    ASSERT(open_as(KEY, CURSOR_PULL, hfmt("%s0", c), &n, &rc) == NULL && rc == SYNC_EBADCURSOR);
    ASSERT(open_as(KEY, CURSOR_PULL, hfmt("x%s", c), &n, &rc) == NULL && rc == SYNC_EBADCURSOR);
    /* The payload swapped for another one under the same tag. */
    const char *dot = strrchr(c, '.');
    ASSERT(open_as(KEY, CURSOR_PULL, hfmt("eyJ1IjoidS0yIn0%s", dot), &n, &rc) == NULL &&
           rc == SYNC_EBADCURSOR);
    /* The tag in capitals: the same digits, not the canonical text. */
    char *upper = hfmt("%s", c);
    for (char *q = strrchr(upper, '.'); *q; q++)
        if (*q >= 'a' && *q <= 'f') *q = (char)(*q - 32);
    if (strcmp(upper, c) != 0)
        ASSERT(open_as(KEY, CURSOR_PULL, upper, &n, &rc) == NULL && rc == SYNC_EBADCURSOR);
    /* Under another key, and longer than the caller allows. */
    ASSERT(open_as(KEY2, CURSOR_PULL, c, &n, &rc) == NULL && rc == SYNC_EBADCURSOR);
    unsigned char *p = (unsigned char *)"unset";
    ASSERT_INT(cursor_open(KEY, CURSOR_PULL, c, len - 1, &p, &n), SYNC_EBADCURSOR);
    ASSERT(p == NULL && n == 0);
    ASSERT_INT(cursor_open(KEY, CURSOR_PULL, c, len, &p, &n), 0);
    free(p);
    /* Not a cursor at all. */
    const char *junk[] = {"",
                          ".",
                          "abc",
                          "abc.",
                          ".0123456789abcdef0123456789abcdef",
                          "a.0123456789abcdef0123456789abcdef",
                          "ab!d.0123456789abcdef0123456789abcdef"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        ASSERT_MSG(open_as(KEY, CURSOR_PULL, junk[i], &n, &rc) == NULL && rc == SYNC_EBADCURSOR,
                   "\"%s\" opened", junk[i]);
}

TEST(cursor_of_one_kind_is_refused_as_the_other) {
    char *pc = NULL, *cc = NULL;
    size_t n;
    int rc;
    const unsigned char cases_payload[] = {'I', 's', 't', 0, 'o', 'p', 'e', 'n', 0, '0', '1'};
    ASSERT_INT(cursor_seal(KEY, CURSOR_PULL, pull_payload, strlen(pull_payload), &pc), 0);
    ASSERT_INT(cursor_seal(KEY, CURSOR_CASES, cases_payload, sizeof cases_payload, &cc), 0);
    h_keep(pc, NULL);
    h_keep(cc, NULL);
    ASSERT(open_as(KEY, CURSOR_CASES, pc, &n, &rc) == NULL && rc == SYNC_EBADCURSOR);
    ASSERT(open_as(KEY, CURSOR_PULL, cc, &n, &rc) == NULL && rc == SYNC_EBADCURSOR);
    /* The same payload sealed as each kind gives two different tags. */
    char *a = NULL, *b = NULL;
    ASSERT_INT(cursor_seal(KEY, CURSOR_PULL, "same", 4, &a), 0);
    ASSERT_INT(cursor_seal(KEY, CURSOR_CASES, "same", 4, &b), 0);
    h_keep(a, NULL);
    h_keep(b, NULL);
    ASSERT(strcmp(a, b) != 0);
}

/* The cursors phones hold were sealed before the codec existed: base64url,
 * '.', hex of HMAC-SHA256 over the text (pull.c) or over "cases:" and the
 * text (query.c). They must still open. */
static char *old_seal(const char *label, const char *payload, size_t n) {
    char *out = h_keep(calloc(1, 4 * n + 64), NULL);
    int bl = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)payload, (int)n);
    while (bl > 0 && out[bl - 1] == '=')
        bl--;
    for (int i = 0; i < bl; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    char *in = hfmt("%s%.*s", label, bl, out);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    HMAC(EVP_sha256(), KEY, (int)strlen(KEY), (unsigned char *)in, strlen(in), md, &mdlen);
    out[bl] = '.';
    for (int i = 0; i < 16; i++)
        snprintf(out + bl + 1 + 2 * i, 3, "%02x", md[i]);
    return out;
}

TEST(cursor_sealed_before_the_codec_still_opens) {
    size_t n;
    int rc;
    const char *cases = "Aunit\0U1";
    ASSERT_STR(open_as(KEY, CURSOR_PULL, old_seal("", pull_payload, strlen(pull_payload)), &n, &rc),
               pull_payload);
    const char *p = open_as(KEY, CURSOR_CASES, old_seal("cases:", cases, 8), &n, &rc);
    ASSERT_INT(rc, 0);
    ASSERT(n == 8 && memcmp(p, cases, 8) == 0);
    char *c = NULL;
    ASSERT_INT(cursor_seal(KEY, CURSOR_PULL, pull_payload, strlen(pull_payload), &c), 0);
    h_keep(c, NULL);
    ASSERT_STR(c, old_seal("", pull_payload, strlen(pull_payload)));
}

/* Every allocation of a seal or an open fails in turn (and every one after
 * it): each is an error with no cursor and no payload, never a cursor with
 * a missing or zero tag. The sweep ends when nothing fails any more. */
TEST(cursor_out_of_memory_is_an_error_never_a_cursor) {
    const char *zero_tag = "00000000000000000000000000000000";
    for (int k = 0; k < 2; k++) {
        cursor_kind_t kind = k ? CURSOR_CASES : CURSOR_PULL;
        char *good = NULL;
        ASSERT_INT(cursor_seal(KEY, kind, pull_payload, strlen(pull_payload), &good), 0);
        h_keep(good, NULL);
        int seal_failures = 0, open_failures = 0;
        for (long after = 0; after < 16; after++) {
            char *c = (char *)"unset";
            fault_alloc_arm(after, -1);
            int rc = cursor_seal(KEY, kind, pull_payload, strlen(pull_payload), &c);
            fault_alloc_arm(0, 0);
            if (rc != 0) {
                ASSERT_INT(rc, SYNC_ENOMEM);
                ASSERT_MSG(c == NULL, "a failed seal handed out \"%s\"", c);
                seal_failures++;
            } else {
                h_keep(c, NULL);
                ASSERT_STR(c, good);
                ASSERT(strstr(c, zero_tag) == NULL);
            }
            unsigned char *p = (unsigned char *)"unset";
            size_t n = 99;
            fault_alloc_arm(after, -1);
            rc = cursor_open(KEY, kind, good, TEXT_MAX, &p, &n);
            fault_alloc_arm(0, 0);
            if (rc != 0) {
                ASSERT_INT(rc, SYNC_ENOMEM);
                ASSERT(p == NULL && n == 0);
                open_failures++;
            } else {
                ASSERT(n == strlen(pull_payload) && memcmp(p, pull_payload, n) == 0);
                free(p);
            }
            /* A forged cursor with a zero tag never opens, whatever fails. */
            char *forged = hfmt("%.*s.%s", (int)(strrchr(good, '.') - good), good, zero_tag);
            p = (unsigned char *)"unset";
            fault_alloc_arm(after, -1);
            rc = cursor_open(KEY, kind, forged, TEXT_MAX, &p, &n);
            fault_alloc_arm(0, 0);
            ASSERT_MSG(rc != 0 && p == NULL, "a zero tag opened with allocation %ld failing", after);
        }
        ASSERT_MSG(seal_failures >= 2 && open_failures >= 3, "only %d seal and %d open allocations failed",
                   seal_failures, open_failures);
    }
}

/* Over HTTP: a case-list cursor is no pull cursor and the other way round,
 * and a cursor of the other user is refused. */
TEST(cursor_kinds_are_not_interchangeable_over_http) {
    srv_t s;
    phone_t off, sup;
    ASSERT(srv_start(&s) == 0);
    ASSERT(std_phone(&off, &s, "off1", "dev-CK1") == 0);
    ASSERT(std_phone(&sup, &s, "sup1", "dev-CK2") == 0);
    for (int i = 0; i < 3; i++) {
        resp_t r = phone_push(&off, changes(ch_create(hfmt("01JDCURSORKIND%04d", i), "general", NULL)));
        ASSERT_STATUS(r, 200);
    }
    resp_t r = phone_get(&sup, "/v1/cases?limit=1");
    ASSERT_STATUS(r, 200);
    const char *next = jstr(resp_json(&r), "next");
    ASSERT(next != NULL);
    resp_t p = phone_pull(&sup, 1, 0);
    ASSERT_STATUS(p, 200);
    const char *pull_cursor = sup.cursor;
    ASSERT(pull_cursor != NULL);

    r = phone_get(&sup, hfmt("/v1/sync/pull?cursor=%s", next));
    ASSERT_STATUS(r, 400);
    ASSERT_STR(resp_error_code(&r), "bad_cursor");
    r = phone_get(&sup, hfmt("/v1/cases?limit=1&cursor=%s", pull_cursor));
    ASSERT_STATUS(r, 400);
    ASSERT_STR(resp_error_code(&r), "bad_cursor");
    r = phone_get(&off, hfmt("/v1/sync/pull?cursor=%s", pull_cursor));
    ASSERT_STATUS(r, 400);
    ASSERT_STR(resp_error_code(&r), "bad_cursor");
    /* Each still works where it belongs. */
    r = phone_get(&sup, hfmt("/v1/cases?limit=1&cursor=%s", next));
    ASSERT_STATUS(r, 200);
    r = phone_get(&sup, hfmt("/v1/sync/pull?cursor=%s", pull_cursor));
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
    srv_cleanup(&s);
}
