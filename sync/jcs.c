/* jcs.c -- RFC 8785 canonical JSON of a cJSON tree (see jcs.h). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/jcs.h"

/* ---- output buffer ------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
    int oom;
} buf_t;

static void put(buf_t *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void putc_(buf_t *b, char c) {
    put(b, &c, 1);
}

/* ---- numbers --------------------------------------------------------------- */

size_t jcs_number(double d, char out[JCS_NUMBER_MAX]) {
    char e[40], digits[20];
    int p, exp10 = 0;
    size_t o = 0, k = 0;
    out[0] = 0;
    if (!isfinite(d)) return 0;
    if (d == 0) { /* 0 and -0 */
        out[0] = '0', out[1] = 0;
        return 1;
    }
    if (d < 0) out[o++] = '-', d = -d;
    /* Integers below 2^53 print exactly: every neighbour is a double too, so
     * no shorter digits read back as d. */
    if (d < 9007199254740992.0 && d == (double)(int64_t)d) {
        o += (size_t)snprintf(out + o, JCS_NUMBER_MAX - o, "%lld", (long long)d);
        return o;
    }
    /* The shortest digits that read back as d. printf rounds correctly, so the
     * nearest decimal of p digits is the one to try. Any string of at most 15
     * digits that reads back shows as itself padded with zeros when d is
     * rounded to 15 digits (a double's half-ulp is far below 15 digits'
     * half-spacing), so 15, then 16, then 17 digits find the shortest.
     * Subnormals carry fewer bits: every precision is tried for them. */
    for (p = d < DBL_MIN ? 1 : 15; p < 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, d);
        if (strtod(e, NULL) == d) break;
    }
    if (p == 17) snprintf(e, sizeof e, "%.*e", p - 1, d);
    /* e is "D[.DDD]e[+-]XX": the digits without trailing zeros, and the exponent */
    for (const char *c = e; *c && *c != 'e'; c++)
        if (*c >= '0' && *c <= '9') digits[k++] = *c;
    exp10 = atoi(strchr(e, 'e') + 1);
    while (k > 1 && digits[k - 1] == '0')
        k--;
    int n = exp10 + 1; /* the decimal point sits after n digits */
    if ((int)k <= n && n <= 21) {
        memcpy(out + o, digits, k), o += k;
        for (int i = 0; i < n - (int)k; i++)
            out[o++] = '0';
    } else if (0 < n && n <= 21) {
        memcpy(out + o, digits, (size_t)n), o += (size_t)n;
        out[o++] = '.';
        memcpy(out + o, digits + n, k - (size_t)n), o += k - (size_t)n;
    } else if (-6 < n && n <= 0) {
        out[o++] = '0', out[o++] = '.';
        for (int i = 0; i < -n; i++)
            out[o++] = '0';
        memcpy(out + o, digits, k), o += k;
    } else {
        out[o++] = digits[0];
        if (k > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, k - 1), o += k - 1;
        }
        o += (size_t)snprintf(out + o, JCS_NUMBER_MAX - o, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
    }
    out[o] = 0;
    return o;
}

/* ---- strings --------------------------------------------------------------- */

/* Decodes the UTF-8 character at s into *cp; returns its length (1 for a
 * byte that starts no valid sequence: *cp is then the byte's value). */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp) {
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xE0) == 0xC0)
        n = 2, v = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
        n = 3, v = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0)
        n = 4, v = c & 0x07, min = 0x10000;
    else
        goto bad;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) goto bad;
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) goto bad;
    *cp = v;
    return n;
bad:
    *cp = c;
    return 1;
}

/* The next UTF-16 code unit of s at *i, with a pending low surrogate in *low.
 * 0 at the end. */
static uint32_t utf16_next(const unsigned char *s, size_t *i, uint32_t *low) {
    uint32_t cp;
    if (*low) {
        cp = *low;
        *low = 0;
        return cp;
    }
    if (!s[*i]) return 0;
    *i += utf8_decode(s + *i, &cp);
    if (cp >= 0x10000) {
        cp -= 0x10000;
        *low = 0xDC00 | (cp & 0x3FF);
        return 0xD800 | (cp >> 10);
    }
    return cp;
}

int jcs_key_cmp(const char *a, const char *b) {
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    /* Fast path: UTF-8 byte order is code point order, which is UTF-16
     * order except between U+E000..U+FFFF and supplementary characters,
     * whose UTF-8 lead bytes are 0xEE and up. At the first differing byte,
     * when neither is such a lead byte, the bytes decide. */
    size_t d = 0;
    while (x[d] && x[d] == y[d])
        d++;
    if (x[d] == y[d]) return 0;
    if (x[d] < 0xEE && y[d] < 0xEE) return x[d] < y[d] ? -1 : 1;
    size_t i = 0, j = 0;
    uint32_t lx = 0, ly = 0;
    for (;;) {
        int endx = !lx && !x[i], endy = !ly && !y[j];
        if (endx || endy) return endx && endy ? 0 : endx ? -1 : 1;
        uint32_t u = utf16_next(x, &i, &lx), v = utf16_next(y, &j, &ly);
        if (u != v) return u < v ? -1 : 1;
    }
}

static void put_string(buf_t *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    const char *run = s;
    putc_(b, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = NULL;
        char u[7];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        put(b, run, (size_t)(s - run));
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\t': esc = "\\t"; break;
        case '\n': esc = "\\n"; break;
        case '\f': esc = "\\f"; break;
        case '\r': esc = "\\r"; break;
        default:
            memcpy(u, "\\u00", 4);
            u[4] = hex[c >> 4], u[5] = hex[c & 15], u[6] = 0;
            esc = u;
        }
        put(b, esc, strlen(esc));
        run = s + 1;
    }
    put(b, run, (size_t)(s - run));
    putc_(b, '"');
}

/* ---- values ---------------------------------------------------------------- */

typedef struct member {
    const cJSON *item;
    size_t order;
} member_t;

static int member_cmp(const void *pa, const void *pb) {
    const member_t *a = pa, *b = pb;
    int c = jcs_key_cmp(a->item->string ? a->item->string : "", b->item->string ? b->item->string : "");
    if (c) return c;
    return a->order < b->order ? -1 : a->order > b->order;
}

static int put_value(buf_t *b, const cJSON *v) {
    char num[JCS_NUMBER_MAX];
    const cJSON *c;
    int rc = JCS_OK;
    if (cJSON_IsObject(v)) {
        size_t n = 0, i = 0;
        for (c = v->child; c; c = c->next)
            n++;
        member_t small[16], *m = n <= 16 ? small : malloc(n * sizeof *m);
        if (!m) return JCS_ENOMEM;
        for (c = v->child; c; c = c->next, i++)
            m[i].item = c, m[i].order = i;
        qsort(m, n, sizeof *m, member_cmp);
        putc_(b, '{');
        for (i = 0; i < n && rc == JCS_OK; i++) {
            if (i) putc_(b, ',');
            put_string(b, m[i].item->string ? m[i].item->string : "");
            putc_(b, ':');
            rc = put_value(b, m[i].item);
        }
        putc_(b, '}');
        if (m != small) free(m);
        return rc;
    }
    if (cJSON_IsArray(v)) {
        putc_(b, '[');
        for (c = v->child; c && rc == JCS_OK; c = c->next) {
            if (c != v->child) putc_(b, ',');
            rc = put_value(b, c);
        }
        putc_(b, ']');
        return rc;
    }
    if (cJSON_IsString(v)) {
        put_string(b, v->valuestring ? v->valuestring : "");
        return JCS_OK;
    }
    if (cJSON_IsNumber(v)) {
        size_t n = jcs_number(v->valuedouble, num);
        if (!n) return JCS_ENOTFINITE;
        put(b, num, n);
        return JCS_OK;
    }
    if (cJSON_IsTrue(v))
        put(b, "true", 4);
    else if (cJSON_IsFalse(v))
        put(b, "false", 5);
    else
        put(b, "null", 4); /* null, and cJSON's raw/invalid kinds, which parsing never makes */
    return JCS_OK;
}

int jcs_print(const cJSON *v, char **out, size_t *len) {
    buf_t b = {0};
    int rc = put_value(&b, v);
    *out = NULL;
    *len = 0;
    if (rc == JCS_OK && (b.oom || !b.p)) rc = JCS_ENOMEM;
    if (rc != JCS_OK) {
        free(b.p);
        return rc;
    }
    *out = b.p;
    *len = b.n;
    return JCS_OK;
}
