/* fuzz_tus.c -- the tus and Range header parsers of server/tus.c, each driven
 * with the whole input as its header value:
 * - Upload-Length / Upload-Offset (tus_parse_u64): a count is at most 2^53-1,
 *   agrees with strtoull, and prints back as the digits that were sent;
 * - base64 (tus_b64_decode on the raw bytes, no NUL after them, so a read past
 *   the input is an ASan report): the decoded length follows from the input's,
 *   a buffer one byte short is refused, and the bytes round-trip through
 *   OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock and our encoder, which must
 *   write what OpenSSL writes;
 * - Upload-Metadata (tus_meta_parse): decoded values are text within
 *   TUS_META_VALUE_MAX, and the four known keys written back (tus_meta_add,
 *   and by hand with OpenSSL's base64) parse to the same values;
 * - Upload-Checksum (tus_checksum_parse): sha1 is 20 bytes, sha256 32, and
 *   the digest written back with OpenSSL parses to the same digest;
 * - Tus-Resumable and the other exact values (tus_header_is), Content-Type
 *   (tus_media_type_is), and Range (tus_range_parse) for several blob sizes:
 *   a satisfiable range lies inside the blob.
 * Failures leave their out-parameters zeroed; every output buffer is a heap
 * block of exactly its declared size.
 */
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

#include "server/tus.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_INPUT (2 * TUS_META_HEADER_MAX)
#define B64_LEN(n) (((n) + 2) / 3 * 4) /* padded base64 of n bytes, without the NUL */

static int b64_char(unsigned char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '+' ||
           ch == '/';
}

/* OpenSSL's padded base64 of n bytes (malloc'd, NUL-terminated). */
static char *ossl_encode(const unsigned char *in, size_t n) {
    char *t = malloc(B64_LEN(n) + 1);
    FUZZ_CHECK(t != NULL);
    int len = EVP_EncodeBlock((unsigned char *)t, in, (int)n);
    FUZZ_CHECK(len == (int)B64_LEN(n));
    t[len] = 0;
    return t;
}

/* ---- byte counts ---------------------------------------------------------- */

static void check_u64(const char *s) {
    uint64_t v = 12345;
    int rc = tus_parse_u64(s, &v);
    FUZZ_CHECK(rc == 0 || rc == -1);
    /* The reference: blanks, 1..16 digits, blanks, and no more than 2^53-1. */
    size_t lead = strspn(s, " \t"), digits = strspn(s + lead, "0123456789");
    size_t trail = strspn(s + lead + digits, " \t");
    int shape = digits >= 1 && digits <= 16 && s[lead + digits + trail] == 0;
    if (rc != 0) {
        FUZZ_CHECK(v == 0);
        FUZZ_CHECK(!shape || strtoull(s + lead, NULL, 10) > TUS_U53_MAX);
        return;
    }
    FUZZ_CHECK(shape);
    FUZZ_CHECK(v <= TUS_U53_MAX);
    FUZZ_CHECK(strtoull(s + lead, NULL, 10) == v);
    /* Printed back: the digits sent, without their leading zeros. */
    char back[32];
    const char *d = s + lead;
    size_t dn = digits;
    while (dn > 1 && *d == '0')
        d++, dn--;
    snprintf(back, sizeof back, "%llu", (unsigned long long)v);
    FUZZ_CHECK(strlen(back) == dn && memcmp(back, d, dn) == 0);
}

/* ---- base64 --------------------------------------------------------------- */

static void check_b64(const uint8_t *raw, size_t size) {
    size_t m = size;
    while (m > 0 && raw[m - 1] == '=')
        m--;
    int valid = m % 4 != 1;
    for (size_t i = 0; i < m && valid; i++)
        valid = b64_char(raw[i]);
    size_t want = m * 6 / 8;

    /* Room for exactly the expected bytes (at least one so malloc returns a block). */
    size_t cap = want ? want : 1;
    unsigned char *out = malloc(cap);
    FUZZ_CHECK(out != NULL);
    long n = tus_b64_decode((const char *)raw, size, out, cap);
    if (!valid) {
        FUZZ_CHECK(n == -1);
        free(out);
        return;
    }
    FUZZ_CHECK(n == (long)want);

    /* One byte short: refused, without a write past the smaller block. */
    if (want > 0) {
        unsigned char *small = malloc(want - 1 ? want - 1 : 1);
        FUZZ_CHECK(small != NULL);
        FUZZ_CHECK(tus_b64_decode((const char *)raw, size, small, want - 1) == -1);
        free(small);
    }

    /* OpenSSL writes what our encoder writes; both decode back to the bytes. */
    char *t = ossl_encode(out, (size_t)n);
    size_t tlen = strlen(t);
    char *ours = malloc(tlen + 1);
    FUZZ_CHECK(ours != NULL);
    FUZZ_CHECK(tus_b64_encode(out, (size_t)n, ours, tlen + 1) == 0);
    FUZZ_CHECK(strcmp(ours, t) == 0);
    if (tlen > 0) FUZZ_CHECK(tus_b64_encode(out, (size_t)n, ours, tlen) == -1 && ours[0] == 0);
    free(ours);

    unsigned char *again = malloc(cap);
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(tus_b64_decode(t, tlen, again, cap) == n);
    FUZZ_CHECK(memcmp(again, out, (size_t)n) == 0);
    unsigned char *ossl = malloc(tlen / 4 * 3 + 1);
    FUZZ_CHECK(ossl != NULL);
    int on = EVP_DecodeBlock(ossl, (const unsigned char *)t, (int)tlen);
    size_t pad = tlen >= 2 && t[tlen - 2] == '=' ? 2 : tlen >= 1 && t[tlen - 1] == '=' ? 1 : 0;
    FUZZ_CHECK(on >= 0 && (size_t)on - pad == (size_t)n);
    FUZZ_CHECK(memcmp(ossl, out, (size_t)n) == 0);
    free(ossl);
    free(again);

    /* The canonical text is the input up to the unused bits of its last character. */
    size_t tm = tlen - pad;
    FUZZ_CHECK(tm == m);
    if (m > 0) FUZZ_CHECK(memcmp(t, raw, m - 1) == 0);
    free(t);
    free(out);
}

/* ---- Upload-Metadata ------------------------------------------------------ */

static const char *const meta_keys[4] = {"sha256", "filename", "mime", "record_id"};

static void meta_fields(tus_meta_t *m, const char *v[4], int has[4]) {
    v[0] = m->sha256, v[1] = m->filename, v[2] = m->mime, v[3] = m->record_id;
    has[0] = m->has_sha256, has[1] = m->has_filename, has[2] = m->has_mime, has[3] = m->has_record_id;
}

static void check_meta(const char *s) {
    tus_meta_t *m = malloc(sizeof *m), *back = malloc(sizeof *back);
    const char *why = NULL, *v[4], *bv[4];
    int has[4], bhas[4];
    FUZZ_CHECK(m != NULL && back != NULL);
    int rc = tus_meta_parse(s, m, &why);
    meta_fields(m, v, has);
    if (rc != 0) {
        FUZZ_CHECK(rc == -1 && why != NULL && *why);
        for (int k = 0; k < 4; k++)
            FUZZ_CHECK(!has[k] && !v[k][0]);
        goto done;
    }
    FUZZ_CHECK(strlen(s) <= TUS_META_HEADER_MAX);
    for (int k = 0; k < 4; k++) {
        FUZZ_CHECK(has[k] == 0 || has[k] == 1);
        FUZZ_CHECK(strlen(v[k]) <= TUS_META_VALUE_MAX);
        if (!has[k]) FUZZ_CHECK(!v[k][0]);
    }

    /* Written back, once with tus_meta_add and once by hand with OpenSSL. */
    size_t cap = 4 * (16 + B64_LEN(TUS_META_VALUE_MAX)) + 1;
    char *hdr = malloc(cap), *ref = malloc(cap);
    FUZZ_CHECK(hdr != NULL && ref != NULL);
    hdr[0] = ref[0] = 0;
    for (int k = 0; k < 4; k++) {
        FUZZ_CHECK(tus_meta_add(hdr, cap, meta_keys[k], v[k]) == 0);
        if (!v[k][0]) continue;
        char *t = ossl_encode((const unsigned char *)v[k], strlen(v[k]));
        size_t rl = strlen(ref);
        snprintf(ref + rl, cap - rl, "%s%s %s", rl ? "," : "", meta_keys[k], t);
        free(t);
    }
    FUZZ_CHECK(strcmp(hdr, ref) == 0);
    FUZZ_CHECK(tus_meta_parse(hdr, back, &why) == 0);
    meta_fields(back, bv, bhas);
    for (int k = 0; k < 4; k++) {
        FUZZ_CHECK(bhas[k] == (v[k][0] != 0));
        FUZZ_CHECK(strcmp(bv[k], v[k]) == 0);
    }
    free(hdr);
    free(ref);
done:
    free(m);
    free(back);
}

/* tus_meta_add of a filename into a block of exactly the bytes the pair
 * needs after `prefix`, plus slack (-1, 0 or 1): the whole pair is added when
 * it fits and parses back, else the block is unchanged. */
static void check_meta_add(const char *value, const char *prefix, int slack) {
    size_t pl = strlen(prefix), vl = strlen(value);
    size_t cap = pl + (pl ? 1 : 0) + strlen("filename ") + B64_LEN(vl) + 1 + (size_t)(long)slack;
    char *buf = malloc(cap);
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, prefix, pl + 1);
    int rc = tus_meta_add(buf, cap, "filename", value);
    FUZZ_CHECK(strlen(buf) < cap);
    if (!*value || slack < 0) {
        FUZZ_CHECK(rc == (*value ? -1 : 0));
        FUZZ_CHECK(strcmp(buf, prefix) == 0);
        free(buf);
        return;
    }
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(strlen(buf) + 1 == cap - (size_t)slack);
    if (vl <= TUS_META_VALUE_MAX && strlen(buf) <= TUS_META_HEADER_MAX) {
        tus_meta_t *m = malloc(sizeof *m);
        const char *why = NULL;
        FUZZ_CHECK(m != NULL);
        FUZZ_CHECK(tus_meta_parse(buf, m, &why) == 0);
        FUZZ_CHECK(m->has_filename && strcmp(m->filename, value) == 0);
        free(m);
    }
    free(buf);
}

/* ---- Upload-Checksum ------------------------------------------------------ */

static void check_checksum(const char *s) {
    tus_checksum_t c, back;
    int rc = tus_checksum_parse(s, &c);
    if (rc != 0) {
        FUZZ_CHECK(rc == -1 && c.algorithm == NULL && c.digest_len == 0);
        return;
    }
    FUZZ_CHECK((strcmp(c.algorithm, "sha256") == 0 && c.digest_len == 32) ||
               (strcmp(c.algorithm, "sha1") == 0 && c.digest_len == 20));
    char *t = ossl_encode(c.digest, c.digest_len);
    char h[64];
    snprintf(h, sizeof h, "%s %s", c.algorithm, t);
    free(t);
    FUZZ_CHECK(tus_checksum_parse(h, &back) == 0);
    FUZZ_CHECK(strcmp(back.algorithm, c.algorithm) == 0 && back.digest_len == c.digest_len);
    FUZZ_CHECK(memcmp(back.digest, c.digest, c.digest_len) == 0);
}

/* ---- exact values, Content-Type, Range ----------------------------------- */

static void check_values(const char *s) {
    static const char *const wants[] = {
        TUS_VERSION, "identity", "100-continue", "PATCH", "DELETE", "*", "application/offset+octet-stream"};
    size_t lead = strspn(s, " \t"), len = strlen(s + lead);
    while (len > 0 && (s[lead + len - 1] == ' ' || s[lead + len - 1] == '\t'))
        len--;
    for (size_t i = 0; i < sizeof wants / sizeof wants[0]; i++) {
        int is = tus_header_is(s, wants[i]), media = tus_media_type_is(s, wants[i]);
        FUZZ_CHECK(is == 0 || is == 1);
        FUZZ_CHECK(media == 0 || media == 1);
        int ref = len == strlen(wants[i]) && strncasecmp(s + lead, wants[i], len) == 0;
        FUZZ_CHECK(is == ref);
        if (is) FUZZ_CHECK(media);
        if (media) FUZZ_CHECK(strncasecmp(s + lead, wants[i], strlen(wants[i])) == 0);
    }
    FUZZ_CHECK(tus_header_is(NULL, TUS_VERSION) == 0 && tus_media_type_is(NULL, "a/b") == 0);
}

static void check_range(const char *s, uint64_t size) {
    uint64_t from = 777, to = 777;
    int rc = tus_range_parse(s, size, &from, &to);
    FUZZ_CHECK(rc >= -1 && rc <= 1);
    if (rc == 1) {
        FUZZ_CHECK(from <= to && to < size);
    } else {
        FUZZ_CHECK(from == 777 && to == 777);
        if (rc == -1) FUZZ_CHECK(strncasecmp(s + strspn(s, " "), "bytes=", 6) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > FUZZ_MAX_INPUT) return 0;
    /* The raw bytes in a block of exactly their size (no NUL after them)... */
    uint8_t *raw = malloc(size ? size : 1);
    FUZZ_CHECK(raw != NULL);
    memcpy(raw, data, size);
    check_b64(raw, size);
    free(raw);

    /* ...and as a header value: a string up to the first NUL. */
    char *s = malloc(size + 1);
    FUZZ_CHECK(s != NULL);
    memcpy(s, data, size);
    s[size] = 0;
    check_u64(s);
    check_meta(s);
    check_checksum(s);
    check_values(s);
    uint64_t sizes[] = {0, 1, 2, 100, size, TUS_U53_MAX, 0};
    if (size >= 8) {
        uint64_t v = 0;
        memcpy(&v, data + size - 8, 8);
        sizes[6] = v % (TUS_U53_MAX + 1);
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        check_range(s, sizes[i]);
    /* Appended to nothing and to a pair, into blocks around the size it needs. */
    for (int slack = -1; slack <= 1; slack++) {
        check_meta_add(s, "", slack);
        check_meta_add(s, "mime eA==", slack);
    }
    FUZZ_CHECK(tus_parse_u64(NULL, &sizes[0]) == -1 && sizes[0] == 0);
    free(s);
    return 0;
}
