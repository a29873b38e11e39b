/* tus.c -- parsers and writers of the tus and Range header values (tus.h). */
#include "server/tus.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

static int is_blank(char ch) {
    return ch == ' ' || ch == '\t';
}

/* ======================================================================== */
/* Numbers                                                                  */
/* ======================================================================== */

int tus_parse_u64(const char *s, uint64_t *out) {
    uint64_t v = 0;
    size_t n = 0;
    *out = 0;
    if (!s) return -1;
    while (is_blank(*s))
        s++;
    for (; s[n] >= '0' && s[n] <= '9'; n++) {
        if (n >= 16) return -1; /* 17 digits are past 2^53 whatever they are */
        v = v * 10 + (uint64_t)(s[n] - '0');
    }
    for (size_t i = n; s[i]; i++)
        if (!is_blank(s[i])) return -1;
    if (n == 0 || v > TUS_U53_MAX) return -1;
    *out = v;
    return 0;
}

/* ======================================================================== */
/* base64                                                                   */
/* ======================================================================== */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The decoding is OpenSSL's (EVP_DecodeBlock), four characters at a time so
 * that nothing is allocated; this function only enforces the caveats of
 * tus.h that EVP_DecodeBlock does not (optional padding, a strict alphabet,
 * no blanks) and the room in out. A missing last group is filled with 'A'
 * (zero bits), so only whole bytes of the input come out. */
long tus_b64_decode(const char *in, size_t n, unsigned char *out, size_t cap) {
    while (n > 0 && in[n - 1] == '=')
        n--;
    for (size_t i = 0; i < n; i++)
        if (!in[i] || !strchr(b64_alphabet, in[i])) return -1;
    if (n % 4 == 1) return -1; /* a lone trailing character carries no byte */
    size_t total = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (total > cap) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        unsigned char group[4] = {'A', 'A', 'A', 'A'}, bytes[4];
        size_t k = n - i < 4 ? n - i : 4;
        memcpy(group, in + i, k);
        if (EVP_DecodeBlock(bytes, group, 4) != 3) return -1;
        size_t take = total - o < 3 ? total - o : 3;
        memcpy(out + o, bytes, take);
        o += take;
    }
    return (long)o;
}

int tus_b64_encode(const unsigned char *in, size_t n, char *out, size_t cap) {
    if (n > (size_t)INT_MAX / 4 * 3 - 2 || (n + 2) / 3 * 4 + 1 > cap) {
        if (cap > 0) out[0] = 0;
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    return 0;
}

/* ======================================================================== */
/* Upload-Metadata                                                          */
/* ======================================================================== */

/* fail() for tus_meta_parse: zeroes m, sets *why. */
static int meta_fail(tus_meta_t *m, const char **why, const char *text) {
    memset(m, 0, sizeof *m);
    *why = text;
    return -1;
}

int tus_meta_parse(const char *h, tus_meta_t *m, const char **why) {
    memset(m, 0, sizeof *m);
    if (!h) return 0;
    if (strnlen(h, TUS_META_HEADER_MAX + 1) > TUS_META_HEADER_MAX)
        return meta_fail(m, why, "Upload-Metadata is too long");
    while (*h) {
        while (is_blank(*h))
            h++;
        const char *key = h;
        while (*h && *h != ' ' && *h != ',')
            h++;
        size_t klen = (size_t)(h - key);
        while (*h == ' ')
            h++;
        const char *val = h;
        while (*h && *h != ',' && *h != ' ')
            h++;
        size_t vlen = (size_t)(h - val);
        while (is_blank(*h))
            h++;
        if (*h && *h != ',')
            return meta_fail(m, why, "Upload-Metadata pairs are \"key base64\", comma-separated");
        if (*h == ',') h++;
        if (klen == 0) {
            if (vlen == 0 && !*h) break; /* a trailing comma or blank */
            return meta_fail(m, why, "Upload-Metadata has an empty key");
        }
        char *dst = NULL;
        int *flag = NULL;
        if (klen == 6 && memcmp(key, "sha256", 6) == 0)
            dst = m->sha256, flag = &m->has_sha256;
        else if (klen == 8 && memcmp(key, "filename", 8) == 0)
            dst = m->filename, flag = &m->has_filename;
        else if (klen == 4 && memcmp(key, "mime", 4) == 0)
            dst = m->mime, flag = &m->has_mime;
        else if (klen == 9 && memcmp(key, "record_id", 9) == 0)
            dst = m->record_id, flag = &m->has_record_id;
        if (!dst) continue;
        if (*flag) return meta_fail(m, why, "Upload-Metadata repeats a key");
        long n = tus_b64_decode(val, vlen, (unsigned char *)dst, TUS_META_VALUE_MAX);
        if (n < 0 || memchr(dst, 0, (size_t)n))
            return meta_fail(m, why, "an Upload-Metadata value is not base64 of text");
        dst[n] = 0;
        *flag = 1;
    }
    return 0;
}

int tus_meta_add(char *buf, size_t cap, const char *key, const char *value) {
    size_t len = strnlen(buf, cap), klen = strlen(key), vlen;
    if (!value || !*value) return 0;
    vlen = strlen(value);
    /* ",key " then the base64 and its NUL, all within cap. */
    size_t head = (len ? 1 : 0) + klen + 1;
    if (len >= cap || cap - len <= head) return -1;
    char *p = buf + len;
    if (tus_b64_encode((const unsigned char *)value, vlen, p + head, cap - len - head) != 0) {
        buf[len] = 0;
        return -1;
    }
    if (len) *p++ = ',';
    memcpy(p, key, klen);
    p[klen] = ' ';
    return 0;
}

/* ======================================================================== */
/* Upload-Checksum                                                          */
/* ======================================================================== */

int tus_checksum_parse(const char *h, tus_checksum_t *c) {
    char alg[16];
    size_t n = 0;
    memset(c, 0, sizeof *c);
    if (!h) return -1;
    while (*h == ' ')
        h++;
    while (h[n] && h[n] != ' ' && n < sizeof alg - 1)
        alg[n] = h[n], n++;
    alg[n] = 0;
    const char *v = h + n;
    while (*v == ' ')
        v++;
    size_t vlen = strlen(v);
    while (vlen && v[vlen - 1] == ' ')
        vlen--;
    long dl = tus_b64_decode(v, vlen, c->digest, sizeof c->digest);
    if (strcmp(alg, "sha256") == 0 && dl == 32)
        c->algorithm = "sha256";
    else if (strcmp(alg, "sha1") == 0 && dl == 20)
        c->algorithm = "sha1";
    if (!c->algorithm) {
        memset(c, 0, sizeof *c);
        return -1;
    }
    c->digest_len = (size_t)dl;
    return 0;
}

/* ======================================================================== */
/* Comparisons                                                              */
/* ======================================================================== */

int tus_header_is(const char *h, const char *want) {
    if (!h) return 0;
    while (is_blank(*h))
        h++;
    size_t n = strlen(want);
    if (strncasecmp(h, want, n) != 0) return 0;
    for (h += n; is_blank(*h); h++) {
    }
    return *h == 0;
}

int tus_media_type_is(const char *ct, const char *want) {
    if (!ct) return 0;
    while (is_blank(*ct))
        ct++;
    size_t n = strlen(want);
    if (strncasecmp(ct, want, n) != 0) return 0;
    for (ct += n; is_blank(*ct); ct++) {
    }
    return *ct == 0 || *ct == ';';
}

/* ======================================================================== */
/* Range                                                                    */
/* ======================================================================== */

int tus_range_parse(const char *h, uint64_t size, uint64_t *from, uint64_t *to) {
    uint64_t a = 0, b = 0;
    int has_a = 0, has_b = 0;
    if (!h) return 0;
    while (*h == ' ')
        h++;
    if (strncasecmp(h, "bytes=", 6) != 0 || strchr(h, ',')) return 0;
    h += 6;
    while (*h == ' ')
        h++;
    for (; *h >= '0' && *h <= '9'; h++, has_a = 1) {
        if (a > TUS_U53_MAX / 10) return 0;
        a = a * 10 + (uint64_t)(*h - '0');
    }
    if (*h++ != '-') return 0;
    for (; *h >= '0' && *h <= '9'; h++, has_b = 1) {
        if (b > TUS_U53_MAX / 10) return 0;
        b = b * 10 + (uint64_t)(*h - '0');
    }
    while (*h == ' ')
        h++;
    if (*h || (!has_a && !has_b)) return 0;
    if (!has_a) { /* the last b bytes */
        if (b == 0 || size == 0) return -1;
        *from = b >= size ? 0 : size - b;
        *to = size - 1;
        return 1;
    }
    if (has_b && b < a) return 0;
    if (a >= size) return -1;
    *from = a;
    *to = has_b && b < size - 1 ? b : size - 1;
    return 1;
}
