/* http.c -- request bodies under limits, JSON in and out, error bodies, the
 * status table and the access log of the HTTP edge. */
#include "server/http.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#define ZLIB_CONST
#include <zlib.h>

#include "server/deadline.h"
#include "server/jsonscan.h"

#define READ_CHUNK (64u << 10)

/* ======================================================================== */
/* The status table                                                         */
/* ======================================================================== */

/* The one place where engine codes become HTTP statuses and error codes. */
static const struct {
    int rc;
    int status;
    const char *code;
} status_table[] = {
    {SYNC_EBADREQ, 400, "bad_request"},
    {SYNC_EBADJSON, 400, "bad_json"},
    {SYNC_EBADCURSOR, 400, "bad_cursor"},
    {SYNC_EUNAUTH, 401, "unauthenticated"},
    {SYNC_ECREDS, 401, "invalid_credentials"},
    {SYNC_EREVOKED, 401, "device_revoked"},
    {SYNC_EFORBIDDEN, 403, "forbidden"},
    {SYNC_EDEVICE, 403, "device_mismatch"},
    {SYNC_ENOTFOUND, 404, "not_found"},
    {SYNC_ECONFLICT, 409, "conflict"},
    {SYNC_EREUSED, 409, "changeset_reused"},
    {SYNC_EGAP, 409, "changeset_gap"},
    {SYNC_EEXPIRED, 410, "cursor_expired"},
    {SYNC_ETOOLARGE, 413, "too_large"},
    {SYNC_EINVALID, 422, "validation_failed"},
    {SYNC_ERATE, 429, "too_many_requests"},
    {SYNC_EBUSY, 503, "unavailable"},
    {SYNC_ENOMEM, 503, "unavailable"},
    {SYNC_EIO, 500, "internal"},
    {SYNC_ECHECKSUM, 460, "checksum_mismatch"},
    {SYNC_EDISK, 503, "unavailable"},
    {SYNC_EEVIDENCE, 422, "evidence_unknown"},
    {SYNC_EDEVINUSE, 409, "device_in_use"},
    {SYNC_EUNAVAIL, 503, "unavailable"},
    {SYNC_EBEHIND, 503, "unavailable"}, /* routes.c redirects it to the leader first */
};

int http_status_of(int sync_code, const char **code) {
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++) {
        if (status_table[i].rc == sync_code) {
            if (code)
                *code = status_table[i].code;
            return status_table[i].status;
        }
    }
    if (code)
        *code = "internal";
    return 500;
}

/* ======================================================================== */
/* Small text helpers                                                       */
/* ======================================================================== */

static int is_space(char c) { return c == ' ' || c == '\t'; }

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid.
 * Rejects overlong forms, surrogates and code points past U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && s[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && s[1] >= 0xA0)
            return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xF4 && s[1] >= 0x90)
            return 0; /* past U+10FFFF */
        return 4;
    }
    return 0;
}

static int utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(p + i, n - i);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

/* Copies src (at most dst_size-1 bytes of it, never past a NUL) into dst,
 * replacing invalid UTF-8 and control characters with '?', so any text is
 * safe to put in a JSON string or a log line. */
static void text_clean(char *dst, size_t dst_size, const char *src, size_t src_max) {
    size_t i = 0, o = 0;
    if (!dst_size)
        return;
    if (!src)
        src = "";
    size_t n = strnlen(src, src_max);
    const unsigned char *p = (const unsigned char *)src;
    while (i < n && o + 1 < dst_size) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0 || (k == 1 && (p[i] < 0x20 || p[i] == 0x7f))) {
            dst[o++] = '?';
            i += k ? k : 1;
            continue;
        }
        if (o + k >= dst_size)
            break; /* never cut a sequence in half */
        memcpy(dst + o, p + i, k);
        o += k;
        i += k;
    }
    dst[o] = '\0';
}

/* ======================================================================== */
/* Request life                                                             */
/* ======================================================================== */

static void request_id(char out[33]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    if (getrandom(b, sizeof b, GRND_NONBLOCK) != (ssize_t)sizeof b) {
        /* No entropy yet (early boot): an id only has to be unique enough to
         * find a log line, so time and a counter do. */
        static unsigned long counter;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        memcpy(b, &x, 8);
        memcpy(b + 8, &c, sizeof c < 8 ? sizeof c : 8);
    }
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[32] = '\0';
}

void http_req_begin(http_req_t *r, struct mg_connection *conn) {
    memset(r, 0, sizeof *r);
    r->conn = conn;
    r->ri = conn ? mg_get_request_info(conn) : NULL;
    clock_gettime(CLOCK_MONOTONIC, &r->start);
    request_id(r->id);
    if (r->ri && r->ri->request_method)
        r->head = strcmp(r->ri->request_method, "HEAD") == 0;
    r->accept_gzip = conn ? http_accepts_gzip(mg_get_header(conn, "Accept-Encoding")) : 0;
}

static int log_text;

void http_set_log_text(int text) {
    log_text = text;
}

/* The access line as JSON; 0, or -1 (out of memory: the caller logs text). */
static int log_json(const http_req_t *r, const char *method, const char *path, double ms) {
    struct timespec ts;
    struct tm tm;
    char when[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);
    cJSON *o = cJSON_CreateObject();
    char *line = NULL;
    if (o && cJSON_AddStringToObject(o, "time", when) &&
        cJSON_AddStringToObject(o, "level", r->status >= 500 ? "error" : r->status >= 400 ? "warn" : "info") &&
        cJSON_AddStringToObject(o, "msg", "request") && cJSON_AddStringToObject(o, "id", r->id) &&
        cJSON_AddStringToObject(o, "method", method[0] ? method : "-") &&
        cJSON_AddStringToObject(o, "path", path[0] ? path : "-") &&
        (r->route ? cJSON_AddStringToObject(o, "route", r->route) : cJSON_AddNullToObject(o, "route")) &&
        cJSON_AddNumberToObject(o, "status", r->status) && cJSON_AddNumberToObject(o, "bytes", (double)r->bytes) &&
        cJSON_AddNumberToObject(o, "ms", (double)(long long)(ms * 10 + 0.5) / 10) &&
        (r->log_user[0] ? cJSON_AddStringToObject(o, "user", r->log_user) : cJSON_AddNullToObject(o, "user")) &&
        (r->log_device[0] ? cJSON_AddStringToObject(o, "device", r->log_device)
                          : cJSON_AddNullToObject(o, "device")))
        line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!line)
        return -1;
    fprintf(stderr, "%s\n", line);
    free(line);
    return 0;
}

void http_req_end(http_req_t *r) {
    struct timespec now;
    http_body_done(r);
    char method[16], path[256];
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms = (double)(now.tv_sec - r->start.tv_sec) * 1e3 +
                (double)(now.tv_nsec - r->start.tv_nsec) / 1e6;
    text_clean(method, sizeof method, r->ri ? r->ri->request_method : NULL, 15);
    /* local_uri never holds the query string, where a cursor may sit. */
    text_clean(path, sizeof path, r->ri ? r->ri->local_uri : NULL, 255);
    for (char *p = path; *p; p++)
        if (*p == ' ')
            *p = '?';
    if (!log_text && log_json(r, method, path, ms) == 0)
        return;
    fprintf(stderr, "%s %s %d %zu %.1fms id=%s\n", method[0] ? method : "-", path[0] ? path : "-",
            r->status, r->bytes, ms, r->id);
}

int http_add_header(http_req_t *r, const char *name, const char *value) {
    if (r->nextra >= HTTP_MAX_EXTRA_HEADERS || !name || !value)
        return -1;
    r->extra[r->nextra].name = name;
    /* Header values must not carry line breaks. */
    text_clean(r->extra[r->nextra].value, sizeof r->extra[r->nextra].value, value, (size_t)-1);
    r->nextra++;
    return 0;
}

static int has_extra(const http_req_t *r, const char *name) {
    for (int i = 0; i < r->nextra; i++)
        if (strcasecmp(r->extra[i].name, name) == 0)
            return 1;
    return 0;
}

static int request_has_body(const http_req_t *r) {
    if (!r->ri)
        return 0;
    return r->ri->content_length > 0 || mg_get_header(r->conn, "Transfer-Encoding") != NULL;
}

/* ======================================================================== */
/* gzip                                                                     */
/* ======================================================================== */

/* Inflated bytes held by all requests of the process (reserved as the
 * buffers grow, given back when the body is freed). */
static size_t inflating;

size_t http_inflating_bytes(void) { return __atomic_load_n(&inflating, __ATOMIC_RELAXED); }

/* Reserves n inflated bytes against the process-wide cap (0: none). 0, or -1
 * when that would pass the cap (nothing reserved). */
static int inflating_take(size_t n, size_t cap) {
    size_t now = __atomic_add_fetch(&inflating, n, __ATOMIC_SEQ_CST);
    if (cap && now > cap) {
        __atomic_sub_fetch(&inflating, n, __ATOMIC_SEQ_CST);
        return -1;
    }
    return 0;
}

static void inflating_give(size_t n) {
    if (n)
        __atomic_sub_fetch(&inflating, n, __ATOMIC_SEQ_CST);
}

/* A growing output buffer that never grows past limit + 1 bytes: reaching
 * limit + 1 is how "too large" is noticed without inflating any further.
 * When `counted`, every byte of capacity is reserved in `inflating` first
 * (held says how many), against cap_total. */
typedef struct outbuf {
    char *p;
    size_t len, cap, limit;
    int counted;
    size_t cap_total, held;
} outbuf_t;

/* 0, -1 at the limit, -3 out of memory, -4 the process-wide cap is reached. */
static int outbuf_grow(outbuf_t *b, size_t want_free) {
    size_t hard = b->limit + 1;
    if (b->cap >= hard)
        return b->len < b->cap ? 0 : -1;
    if (b->cap - b->len >= want_free)
        return 0;
    size_t ncap = b->cap ? b->cap : 16384;
    while (ncap - b->len < want_free && ncap < hard)
        ncap = ncap > hard / 2 ? hard : ncap * 2;
    if (ncap > hard)
        ncap = hard;
    if (b->counted && ncap > b->held) {
        if (inflating_take(ncap - b->held, b->cap_total) < 0)
            return -4;
        b->held = ncap;
    }
    char *np = realloc(b->p, ncap + 1); /* + 1: room for a closing NUL */
    if (!np)
        return -3;
    b->p = np;
    b->cap = ncap;
    return 0;
}

/* Streaming inflater over an outbuf. */
typedef struct inflater {
    z_stream zs;
    int ready;
    int done; /* the last member ended */
} inflater_t;

static int inflater_init(inflater_t *in) {
    memset(in, 0, sizeof *in);
    /* 15 + 32: gzip or zlib header, detected. */
    if (inflateInit2(&in->zs, 15 + 32) != Z_OK)
        return -3;
    in->ready = 1;
    return 0;
}

static void inflater_end(inflater_t *in) {
    if (in->ready)
        inflateEnd(&in->zs);
    in->ready = 0;
}

/* Feeds n bytes, inflating at most READ_CHUNK bytes per step so that a scan
 * (when scan is not NULL) sees the output as it comes and stops a bomb
 * within one step of passing its limit. 0, -1 too large, -2 corrupt, -3 out
 * of memory, -4 the process-wide cap on inflated bytes is reached, -5 the
 * scan passed a limit (scan->verdict says which). */
static int inflater_feed(inflater_t *in, outbuf_t *out, const void *data, size_t n,
                         jsonscan_t *scan) {
    in->zs.next_in = data;
    while (n > 0) {
        uInt take = n > (1u << 30) ? (1u << 30) : (uInt)n;
        in->zs.avail_in = take;
        for (;;) {
            if (in->done) {
                if (in->zs.avail_in == 0)
                    break;
                /* Another gzip member follows (RFC 1952 allows several). */
                if (inflateReset(&in->zs) != Z_OK)
                    return -2;
                in->done = 0;
            }
            int g = outbuf_grow(out, READ_CHUNK);
            if (g == -3 || g == -4)
                return g;
            if (g < 0 || out->len > out->limit)
                return -1;
            size_t room = out->cap - out->len;
            if (room > READ_CHUNK)
                room = READ_CHUNK;
            in->zs.next_out = (Bytef *)(out->p + out->len);
            in->zs.avail_out = (uInt)room;
            int ret = inflate(&in->zs, Z_NO_FLUSH);
            size_t made = room - in->zs.avail_out;
            int stop = scan && jsonscan_feed(scan, out->p + out->len, made) != JSONSCAN_OK;
            out->len += made;
            if (stop)
                return -5;
            if (out->len > out->limit)
                return -1;
            if (ret == Z_STREAM_END) {
                in->done = 1;
                continue;
            }
            if (ret == Z_BUF_ERROR)
                break; /* no progress possible: needs more input */
            if (ret != Z_OK)
                return ret == Z_MEM_ERROR ? -3 : -2;
            /* A full window may leave output pending inside zlib: go on
             * until a window is left with room, and the input is used up. */
            if (in->zs.avail_in == 0 && in->zs.avail_out > 0)
                break;
        }
        n -= take;
    }
    return 0;
}

int http_gunzip(const void *in, size_t len, size_t max_out, char **out, size_t *out_len) {
    inflater_t inf;
    outbuf_t b = {NULL, 0, 0, max_out, 0, 0, 0};
    int rc;
    *out = NULL;
    *out_len = 0;
    if ((rc = inflater_init(&inf)) < 0)
        return rc;
    rc = inflater_feed(&inf, &b, in, len, NULL);
    if (rc == 0 && !inf.done)
        rc = -2; /* truncated */
    inflater_end(&inf);
    if (rc == 0 && !b.p && !(b.p = malloc(1)))
        rc = -3;
    if (rc < 0) {
        free(b.p);
        return rc;
    }
    b.p[b.len] = '\0';
    *out = b.p;
    *out_len = b.len;
    return 0;
}

int http_gzip(const void *in, size_t len, char **out, size_t *out_len) {
    z_stream zs;
    *out = NULL;
    *out_len = 0;
    if (len > (1u << 30))
        return -1;
    memset(&zs, 0, sizeof zs);
    /* 15 + 16: a gzip wrapper, which every HTTP client understands. */
    if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    uLong cap = deflateBound(&zs, (uLong)len);
    char *buf = malloc(cap);
    if (!buf) {
        deflateEnd(&zs);
        return -1;
    }
    zs.next_in = in;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)buf;
    zs.avail_out = (uInt)cap;
    int ret = deflate(&zs, Z_FINISH);
    size_t n = cap - zs.avail_out;
    deflateEnd(&zs);
    if (ret != Z_STREAM_END) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = n;
    return 0;
}

/* q-value in thousandths: "1" -> 1000, "0.5" -> 500; anything odd -> 0. */
static int parse_qvalue(const char *s, size_t n) {
    if (n == 0 || (s[0] != '0' && s[0] != '1'))
        return 0;
    int q = (s[0] - '0') * 1000;
    if (n == 1)
        return q;
    if (s[1] != '.' || n > 5)
        return 0;
    int scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        q += (s[i] - '0') * scale;
    }
    return q > 1000 ? 1000 : q;
}

int http_accepts_gzip(const char *s) {
    int gzip_q = -1, star_q = -1;
    if (!s)
        return 0;
    while (*s) {
        while (*s == ',' || is_space(*s))
            s++;
        if (!*s)
            break;
        const char *name = s;
        while (*s && *s != ',' && *s != ';' && !is_space(*s))
            s++;
        size_t name_len = (size_t)(s - name);
        int q = 1000;
        while (*s && *s != ',') {
            /* parameters: ;q=0.5 */
            while (*s == ';' || is_space(*s))
                s++;
            const char *pn = s;
            while (*s && *s != '=' && *s != ',' && *s != ';' && !is_space(*s))
                s++;
            size_t pn_len = (size_t)(s - pn);
            while (is_space(*s))
                s++;
            if (*s != '=')
                continue;
            s++;
            while (is_space(*s))
                s++;
            const char *pv = s;
            while (*s && *s != ',' && *s != ';' && !is_space(*s))
                s++;
            if (pn_len == 1 && (pn[0] == 'q' || pn[0] == 'Q'))
                q = parse_qvalue(pv, (size_t)(s - pv));
        }
        if ((name_len == 4 && strncasecmp(name, "gzip", 4) == 0) ||
            (name_len == 6 && strncasecmp(name, "x-gzip", 6) == 0))
            gzip_q = q > gzip_q ? q : gzip_q;
        else if (name_len == 1 && name[0] == '*')
            star_q = q;
    }
    if (gzip_q >= 0)
        return gzip_q > 0;
    return star_q > 0;
}

/* ======================================================================== */
/* Request bodies                                                           */
/* ======================================================================== */

static int fail(http_error_t *err, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(http_error_t *err, int status, const char *code, const char *fmt, ...) {
    va_list ap;
    if (!err)
        return -1;
    memset(err, 0, sizeof *err);
    err->status = status;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* Trimmed token [*b, *e) of a header value. */
static void trim(const char *s, const char **b, const char **e) {
    const char *end = s + strlen(s);
    while (is_space(*s))
        s++;
    while (end > s && is_space(end[-1]))
        end--;
    *b = s;
    *e = end;
}

static int token_is(const char *b, const char *e, const char *word) {
    size_t n = strlen(word);
    return (size_t)(e - b) == n && strncasecmp(b, word, n) == 0;
}

static double elapsed_s(const http_req_t *r) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - r->start.tv_sec) + (double)(now.tv_nsec - r->start.tv_nsec) / 1e9;
}

int http_small_body_check(const char *content_encoding, long long content_length, size_t max,
                          http_error_t *err) {
    if (content_encoding) {
        const char *cb, *cend;
        trim(content_encoding, &cb, &cend);
        if (cb != cend && !token_is(cb, cend, "identity"))
            return fail(err, 415, "unsupported_encoding",
                        "this endpoint takes no Content-Encoding (at most %zu bytes as they are)",
                        max);
    }
    if (content_length > 0 && (unsigned long long)content_length > max)
        return fail(err, 413, "too_large", "the request body is larger than %zu bytes", max);
    return 0;
}

/* http_read_body(), with every plain byte also fed to scan when it is not
 * NULL (a limit passed: 413 too_large or 400 json_too_deep, at once). */
static int read_body(http_req_t *r, const http_limits_t *lim, jsonscan_t *scan, char **out,
                     size_t *len, http_error_t *err) {
    outbuf_t b = {NULL, 0, 0, 0, 0, 0, 0};
    inflater_t inf;
    int gz = 0, rc = -1;
    char *chunk = NULL;
    size_t raw = 0;

    *out = NULL;
    *len = 0;
    memset(&inf, 0, sizeof inf);
    if (!r->ri || !lim)
        return fail(err, 400, "bad_request", "no request");

    const char *ce = mg_get_header(r->conn, "Content-Encoding");
    if (ce) {
        const char *cb, *cend;
        trim(ce, &cb, &cend);
        if (!lim->no_gzip && (token_is(cb, cend, "gzip") || token_is(cb, cend, "x-gzip")))
            gz = 1;
        else if (cb != cend && !token_is(cb, cend, "identity"))
            return fail(err, 415, "unsupported_encoding",
                        lim->no_gzip ? "this endpoint takes no Content-Encoding"
                                     : "Content-Encoding must be gzip or identity");
    }
    if (r->ri->content_length > 0 && (unsigned long long)r->ri->content_length > lim->max_body_bytes)
        return fail(err, 413, "too_large", "the request body is larger than %zu bytes",
                    lim->max_body_bytes);
    if (!request_has_body(r)) {
        r->body_consumed = 1;
        return 0;
    }

    /* civetweb 1.15 does not answer Expect: 100-continue for request
     * handlers; without this, clients wait a second before sending. */
    const char *expect = mg_get_header(r->conn, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && r->ri->http_version &&
        strcmp(r->ri->http_version, "1.1") == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        mg_write(r->conn, cont, sizeof cont - 1);
        r->continued = 1;
    }

    if (gz) {
        b.limit = lim->max_inflated_bytes;
        b.counted = 1;
        b.cap_total = lim->max_inflating_bytes;
        if (inflater_init(&inf) < 0 || !(chunk = malloc(READ_CHUNK))) {
            fail(err, 503, "unavailable", "out of memory");
            goto done;
        }
    } else {
        b.limit = lim->max_body_bytes;
        if (r->ri->content_length > 0) {
            /* The exact size is known and within the limit. */
            b.cap = (size_t)r->ri->content_length;
            if (!(b.p = malloc(b.cap + 1))) {
                fail(err, 503, "unavailable", "out of memory");
                goto done;
            }
        }
    }

    for (;;) {
        int n;
        size_t before = b.len;
        if (elapsed_s(r) > HTTP_BODY_TIMEOUT_S) {
            fail(err, 408, "request_timeout", "the request body took too long to arrive");
            goto done;
        }
        if (gz) {
            n = deadline_read(r->conn, chunk, READ_CHUNK);
        } else if (r->ri->content_length > 0) {
            size_t want = (size_t)r->ri->content_length - b.len;
            if (want == 0)
                break;
            n = deadline_read(r->conn, b.p + b.len, want > READ_CHUNK ? READ_CHUNK : want);
        } else {
            int g = outbuf_grow(&b, READ_CHUNK);
            if (g == -3) {
                fail(err, 503, "unavailable", "out of memory");
                goto done;
            }
            if (g < 0) {
                fail(err, 413, "too_large", "the request body is larger than %zu bytes",
                     lim->max_body_bytes);
                goto done;
            }
            size_t room = b.cap - b.len;
            n = deadline_read(r->conn, b.p + b.len, room > READ_CHUNK ? READ_CHUNK : room);
        }
        if (n < 0) {
            if (deadline_expired())
                fail(err, 408, "request_timeout", "the request body arrived too slowly");
            else
                fail(err, 400, "bad_request", "the request body could not be read");
            goto done;
        }
        if (n == 0)
            break;
        raw += (size_t)n;
        if (raw > lim->max_body_bytes) {
            fail(err, 413, "too_large", "the request body is larger than %zu bytes",
                 lim->max_body_bytes);
            goto done;
        }
        int f = 0;
        if (!gz) {
            b.len += (size_t)n;
            if (scan && jsonscan_feed(scan, b.p + before, (size_t)n) != JSONSCAN_OK)
                f = -5;
        } else {
            f = inflater_feed(&inf, &b, chunk, (size_t)n, scan);
        }
        if (f == -1) {
            fail(err, 413, "too_large", "the inflated request body is larger than %zu bytes",
                 lim->max_inflated_bytes);
            goto done;
        }
        if (f == -3) {
            fail(err, 503, "unavailable", "out of memory");
            goto done;
        }
        if (f == -4) {
            fail(err, 503, "unavailable",
                 "too many compressed bodies are being inflated at once; retry");
            goto done;
        }
        if (f == -5 && scan->verdict == JSONSCAN_TOO_DEEP) {
            fail(err, 400, "json_too_deep", "JSON nests deeper than %d levels", lim->max_json_depth);
            goto done;
        }
        if (f == -5) {
            fail(err, 413, "too_large", "the JSON body holds more than %zu elements",
                 lim->max_json_elements);
            goto done;
        }
        if (f < 0) {
            fail(err, 400, "bad_request", "the gzip body is corrupt");
            goto done;
        }
    }
    r->body_consumed = 1;
    if (r->ri->content_length > 0 && raw != (size_t)r->ri->content_length) {
        fail(err, 400, "bad_request", "the body is shorter than its Content-Length");
        goto done;
    }
    if (gz && raw > 0 && !inf.done) {
        fail(err, 400, "bad_request", "the gzip body is truncated");
        goto done;
    }
    if (b.len == 0) {
        rc = 0; /* an empty body is no body */
        goto done;
    }
    b.p[b.len] = '\0';
    *out = b.p;
    *len = b.len;
    b.p = NULL;
    /* The inflated bytes stay reserved until the caller is done with them. */
    r->inflating_held += b.held;
    b.held = 0;
    rc = 0;
done:
    /* Counted also when the body was refused half-way: those bytes came. */
    r->body_wire += raw;
    r->body_plain += gz ? b.len : raw;
    r->gzip_in = gz;
    r->body_counted = 1;
    inflater_end(&inf);
    free(chunk);
    free(b.p);
    inflating_give(b.held);
    return rc;
}

int http_read_body(http_req_t *r, const http_limits_t *lim, char **out, size_t *len,
                   http_error_t *err) {
    return read_body(r, lim, NULL, out, len, err);
}

void http_body_done(http_req_t *r) {
    inflating_give(r->inflating_held);
    r->inflating_held = 0;
}

int http_json_too_deep(const char *text, size_t len, int max) {
    if (!text)
        return 0;
    return jsonscan_text(text, len, 0, max, NULL) == JSONSCAN_TOO_DEEP;
}

/* Is the Content-Type absent or JSON (application/json or application/x+json,
 * charset utf-8 if given)? */
static int content_type_ok(const char *ct) {
    if (!ct)
        return 1;
    const char *b = ct, *semi = strchr(ct, ';');
    const char *e = semi ? semi : ct + strlen(ct);
    while (b < e && is_space(*b))
        b++;
    while (e > b && is_space(e[-1]))
        e--;
    size_t n = (size_t)(e - b);
    int json = (n == 16 && strncasecmp(b, "application/json", 16) == 0) ||
               (n > 17 && strncasecmp(b, "application/", 12) == 0 &&
                strncasecmp(e - 5, "+json", 5) == 0);
    if (!json)
        return 0;
    while (semi) {
        const char *p = semi + 1;
        semi = strchr(p, ';');
        const char *pe = semi ? semi : p + strlen(p);
        while (p < pe && is_space(*p))
            p++;
        if ((size_t)(pe - p) >= 8 && strncasecmp(p, "charset=", 8) == 0) {
            const char *v = p + 8, *ve = pe;
            while (ve > v && is_space(ve[-1]))
                ve--;
            if (ve - v >= 2 && *v == '"' && ve[-1] == '"') {
                v++;
                ve--;
            }
            if (!token_is(v, ve, "utf-8") && !token_is(v, ve, "utf8"))
                return 0;
        }
    }
    return 1;
}

/* Parses a body the scan let through into one JSON object. Borrows body.
 * 0 and *out owned by the caller, or -1 with err filled. */
static int parse_object(const char *body, size_t len, const jsonscan_t *sc, cJSON **out,
                        http_error_t *err) {
    const char *text = body;
    size_t n = len;
    if (n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3; /* a byte order mark is tolerated */
        n -= 3;
    }
    if (!utf8_valid(text, n))
        return fail(err, 400, "bad_json", "the body is not valid UTF-8");
    if (sc->control)
        return fail(err, 400, "bad_json", "a string holds a raw control character");
    if (sc->nul)
        return fail(err, 400, "bad_json", "strings may not hold \\u0000");

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        return fail(err, 400, "bad_json", "invalid JSON near byte %zu", at);
    }
    if (!end || end < text || end > text + n) {
        cJSON_Delete(root);
        return fail(err, 400, "bad_json", "invalid JSON");
    }
    for (const char *p = end; p < text + n; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            size_t at = (size_t)(p - text);
            cJSON_Delete(root);
                return fail(err, 400, "bad_json", "unexpected data after the JSON value at byte %zu",
                        at);
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fail(err, 400, "bad_request", "the body must be a JSON object");
    }
    *out = root;
    return 0;
}

int http_read_json(http_req_t *r, const http_limits_t *lim, cJSON **out, http_error_t *err) {
    char *body = NULL;
    size_t len = 0;
    jsonscan_t sc;
    int rc;
    *out = NULL;
    if (!r->ri || !lim)
        return fail(err, 400, "bad_request", "no request");
    if (!content_type_ok(mg_get_header(r->conn, "Content-Type")))
        return fail(err, 415, "unsupported_media_type", "Content-Type must be application/json");
    /* Elements and depth are counted as the bytes arrive (and inflate): a
     * body past either limit is refused before it is all in memory, and
     * long before cJSON would build a node for each element. */
    jsonscan_init(&sc, lim->max_json_elements, lim->max_json_depth);
    if (read_body(r, lim, &sc, &body, &len, err) < 0)
        return -1;
    if (!body)
        return fail(err, 400, "bad_request", "a JSON body is required");
    rc = parse_object(body, len, &sc, out, err);
    free(body);
    http_body_done(r);
    return rc;
}

/* ======================================================================== */
/* Responses                                                                */
/* ======================================================================== */

int http_send(http_req_t *r, int status, const char *type, const char *body, size_t len) {
    char *gz = NULL;
    size_t gzlen = 0;
    char num[32];
    const char *hn[16 + HTTP_MAX_EXTRA_HEADERS], *hv[16 + HTTP_MAX_EXTRA_HEADERS];
    int nh = 0;
    if (r->sent || !r->conn)
        return -1;
    r->sent = 1;
    r->status = status;
    int no_body = status == 204 || status == 304 || status < 200;
    if (no_body || !body) {
        body = NULL;
        len = 0;
    }
    size_t plain = len;
    if (body && len >= HTTP_GZIP_MIN_BYTES && r->accept_gzip && http_gzip(body, len, &gz, &gzlen) == 0) {
        body = gz;
        len = gzlen;
    }
    /* A body left unread would be taken for the next request: close instead. */
    if ((!r->body_consumed && request_has_body(r)) || r->continued)
        mg_disable_connection_keep_alive(r->conn);

    if (!no_body) {
        if (body && type) {
            hn[nh] = "Content-Type";
            hv[nh++] = type;
        }
        snprintf(num, sizeof num, "%zu", len);
        hn[nh] = "Content-Length";
        hv[nh++] = num;
    }
    if (gz) {
        hn[nh] = "Content-Encoding";
        hv[nh++] = "gzip";
    }
    hn[nh] = "Cache-Control";
    hv[nh++] = "no-store";
    hn[nh] = "Vary";
    hv[nh++] = "Accept-Encoding";
    hn[nh] = "X-Content-Type-Options";
    hv[nh++] = "nosniff";
    hn[nh] = "X-Request-Id";
    hv[nh++] = r->id;
    for (int i = 0; i < r->nextra; i++) {
        hn[nh] = r->extra[i].name;
        hv[nh++] = r->extra[i].value;
    }

    if (r->continued) {
        /* After "100 Continue" went out with mg_write(), civetweb 1.15 counts
         * the response as started and drops mg_response_header_*(): write the
         * head by hand, and close the connection after it. */
        const char *text = mg_get_response_code_text(r->conn, status);
        mg_printf(r->conn, "HTTP/1.1 %d %s\r\n", status, text ? text : "");
        for (int i = 0; i < nh; i++)
            mg_printf(r->conn, "%s: %s\r\n", hn[i], hv[i]);
        mg_printf(r->conn, "Connection: close\r\n\r\n");
    } else {
        mg_response_header_start(r->conn, status);
        for (int i = 0; i < nh; i++)
            mg_response_header_add(r->conn, hn[i], hv[i], -1);
        mg_response_header_send(r->conn);
    }
    if (body && len && !r->head)
        mg_write(r->conn, body, len);
    r->bytes = r->head ? 0 : len;
    r->gzip_out = gz != NULL;
    r->bytes_plain = r->head || !gz ? r->bytes : plain;
    free(gz);
    return 0;
}

int http_send_json(http_req_t *r, int status, const char *body, size_t len) {
    return http_send(r, status, "application/json; charset=utf-8", body, len);
}

/* Builds and sends {"error":{...}} with the optional extras. expected < 0
 * and wipe < 0 leave those out. */
static int send_error_body(http_req_t *r, int status, const char *code, const char *message,
                           const char *field, long long expected, int wipe) {
    char msg[512], fld[512];
    char *text = NULL;
    int rc;
    text_clean(msg, sizeof msg, message, 400);
    text_clean(fld, sizeof fld, field, 400);
    if (status == 401 && !has_extra(r, "WWW-Authenticate"))
        http_add_header(r, "WWW-Authenticate", "Bearer");
    if ((status == 429 || status == 503) && !has_extra(r, "Retry-After"))
        http_add_header(r, "Retry-After", "1");

    cJSON *root = cJSON_CreateObject();
    cJSON *e = root ? cJSON_AddObjectToObject(root, "error") : NULL;
    if (e && cJSON_AddStringToObject(e, "code", code ? code : "internal") &&
        cJSON_AddStringToObject(e, "message", msg[0] ? msg : (code ? code : "error")) &&
        (!fld[0] || cJSON_AddStringToObject(e, "field", fld)) &&
        (expected < 0 || cJSON_AddNumberToObject(e, "expected", (double)expected)) &&
        (wipe < 0 || cJSON_AddBoolToObject(root, "wipe", wipe ? 1 : 0)))
        text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) {
        static const char oom[] =
            "{\"error\":{\"code\":\"unavailable\",\"message\":\"out of memory\"}}";
        if (status != 503 && !has_extra(r, "Retry-After"))
            http_add_header(r, "Retry-After", "1");
        return http_send_json(r, 503, oom, sizeof oom - 1);
    }
    rc = http_send_json(r, status, text, strlen(text));
    free(text);
    return rc;
}

int http_send_error(http_req_t *r, const http_error_t *e) {
    if (!e)
        return send_error_body(r, 500, "internal", "internal error", NULL, -1, -1);
    return send_error_body(r, e->status, e->code, e->message, e->field, -1, -1);
}

int http_send_errorf(http_req_t *r, int status, const char *code, const char *field,
                     const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return send_error_body(r, status, code, msg, field, -1, -1);
}

int http_send_sync_error(http_req_t *r, int rc, const sync_error_t *err) {
    const char *code;
    char message[256] = "", field[256] = "";
    int status = http_status_of(rc, &code);
    long long expected = -1;
    int wipe = -1;

    if (err) {
        text_clean(message, sizeof message, err->message, sizeof err->message);
        text_clean(field, sizeof field, err->field, sizeof err->field);
    }
    if (status >= 500 && status != 503) {
        /* Storage failures are the operator's business, not the client's. */
        fprintf(stderr, "error id=%s: %s (%d): %s\n", r->id, sync_strerror(rc), rc, message);
        snprintf(message, sizeof message, "internal error (request %s)", r->id);
        field[0] = '\0';
    }
    if (!message[0]) {
        const char *s = sync_strerror(rc);
        text_clean(message, sizeof message, s ? s : code, 200);
    }
    if (rc == SYNC_EGAP && err)
        expected = err->expected >= 0 ? err->expected : 0;
    if (rc == SYNC_EREVOKED)
        wipe = err && err->wipe ? 1 : 0;
    if ((status == 429 || status == 503) && !has_extra(r, "Retry-After")) {
        char ra[16];
        int secs = err && err->retry_after > 0 ? err->retry_after : 1;
        snprintf(ra, sizeof ra, "%d", secs);
        http_add_header(r, "Retry-After", ra);
    }
    return send_error_body(r, status, code, message, field, expected, wipe);
}

/* ======================================================================== */
/* civetweb callbacks                                                       */
/* ======================================================================== */

static const char *code_of_status(int status) {
    switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthenticated";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "request_timeout";
    case 411: return "length_required";
    case 413: return "too_large";
    case 414: return "uri_too_long";
    case 415: return "unsupported_media_type";
    case 417: return "expectation_failed";
    case 431: return "headers_too_large";
    case 501: return "not_implemented";
    case 503: return "unavailable";
    case 505: return "http_version_not_supported";
    default: return status >= 500 ? "internal" : "bad_request";
    }
}

int http_send_protocol_error(http_req_t *r, int status, const char *msg) {
    if (r->sent || !r->conn)
        return -1;
    /* After a protocol error the connection is in no state to be reused. */
    mg_disable_connection_keep_alive(r->conn);
    return send_error_body(r, status, code_of_status(status), msg && *msg ? msg : code_of_status(status),
                           NULL, -1, -1);
}

int http_civetweb_log(const struct mg_connection *conn, const char *msg) {
    char line[512];
    (void)conn;
    text_clean(line, sizeof line, msg, 500);
    fprintf(stderr, "civetweb: %s\n", line);
    return 1;
}
