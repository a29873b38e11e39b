/* routes_upload.c -- HTTP side of evidence uploads: tus headers in and out,
 * request bodies streamed into sync_upload_write(), blobs streamed out of the
 * file with Range, and the missing-evidence list. */
#include "server/routes_upload.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define TUS_VERSION "1.0.0"
#define TUS_EXTENSIONS "creation,checksum,termination"
#define TUS_CHECKSUMS "sha1,sha256"
#define STREAM_CHUNK (256u << 10) /* bytes per read from the socket or the file */
#define META_VALUE_MAX 1024       /* one decoded Upload-Metadata value */
#define META_HEADER_MAX 8192      /* the whole Upload-Metadata header */
#define REPLY_HEADERS 16
#define REPLY_VALUE_MAX 2048
#define U53_MAX 9007199254740991ULL /* numbers stay exact in JSON */
#define NO_LENGTH UINT64_MAX        /* reply_head: no Content-Length */

/* ======================================================================== */
/* Small parsers                                                            */
/* ======================================================================== */

/* A strict decimal (digits only, surrounding blanks allowed) up to 2^53-1. */
static int parse_u64(const char *s, uint64_t *out) {
    uint64_t v = 0;
    size_t n = 0;
    if (!s) return -1;
    while (*s == ' ' || *s == '\t')
        s++;
    for (; s[n] >= '0' && s[n] <= '9'; n++) {
        if (n >= 16) return -1;
        v = v * 10 + (uint64_t)(s[n] - '0');
    }
    for (size_t i = n; s[i]; i++)
        if (s[i] != ' ' && s[i] != '\t') return -1;
    if (n == 0 || v > U53_MAX) return -1;
    *out = v;
    return 0;
}

static int b64_value(char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

/* Standard base64 of n chars (padding optional) into out (cap bytes).
 * Returns the decoded length, or -1 for bad input or no room. */
static long b64_decode(const char *in, size_t n, unsigned char *out, size_t cap) {
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    while (n > 0 && in[n - 1] == '=')
        n--;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(in[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap) return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits >= 6) return -1; /* a lone trailing character */
    return (long)o;
}

/* Upload-Metadata, decoded. */
typedef struct upload_meta {
    char sha256[META_VALUE_MAX + 1], filename[META_VALUE_MAX + 1], mime[META_VALUE_MAX + 1],
        record_id[META_VALUE_MAX + 1];
    int has_sha256, has_filename, has_mime, has_record_id;
} upload_meta_t;

/* "key base64,key base64,key": the four keys we know are decoded, others
 * skipped. 0, or -1 with *why set. */
static int meta_parse(const char *h, upload_meta_t *m, const char **why) {
    memset(m, 0, sizeof *m);
    if (!h) return 0;
    if (strlen(h) > META_HEADER_MAX) {
        *why = "Upload-Metadata is too long";
        return -1;
    }
    while (*h) {
        while (*h == ' ' || *h == '\t')
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
        while (*h == ' ' || *h == '\t')
            h++;
        if (*h && *h != ',') {
            *why = "Upload-Metadata pairs are \"key base64\", comma-separated";
            return -1;
        }
        if (*h == ',') h++;
        if (klen == 0) {
            if (vlen == 0 && !*h) break; /* a trailing comma or blank */
            *why = "Upload-Metadata has an empty key";
            return -1;
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
        if (*flag) {
            *why = "Upload-Metadata repeats a key";
            return -1;
        }
        long n = b64_decode(val, vlen, (unsigned char *)dst, META_VALUE_MAX);
        if (n < 0 || memchr(dst, 0, (size_t)n)) {
            *why = "an Upload-Metadata value is not base64 of text";
            return -1;
        }
        dst[n] = 0;
        *flag = 1;
    }
    return 0;
}

static int b64_encode(const unsigned char *in, size_t n, char *out, size_t cap) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    if ((n + 2) / 3 * 4 + 1 > cap) return -1;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v =
            (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = 0;
    return 0;
}

/* Appends ",key base64(value)" (without the comma first). */
static void meta_add(char *buf, size_t cap, const char *key, const char *value) {
    char enc[REPLY_VALUE_MAX];
    size_t len = strlen(buf);
    if (!value || !*value || b64_encode((const unsigned char *)value, strlen(value), enc, sizeof enc) != 0)
        return;
    snprintf(buf + len, cap - len, "%s%s %s", len ? "," : "", key, enc);
}

/* A header value without surrounding blanks, compared case-insensitively. */
static int header_is(const char *h, const char *want) {
    if (!h) return 0;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t n = strlen(want);
    if (strncasecmp(h, want, n) != 0) return 0;
    for (h += n; *h == ' ' || *h == '\t'; h++) {
    }
    return *h == 0;
}

/* The media type of a Content-Type value (parameters ignored) is `want`. */
static int media_type_is(const char *ct, const char *want) {
    if (!ct) return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strlen(want);
    if (strncasecmp(ct, want, n) != 0) return 0;
    for (ct += n; *ct == ' ' || *ct == '\t'; ct++) {
    }
    return *ct == 0 || *ct == ';';
}

/* ======================================================================== */
/* Answers                                                                  */
/* ======================================================================== */

/* Headers of an answer written by reply_head() (values of any length, unlike
 * http_add_header()). */
typedef struct reply {
    int n;
    const char *name[REPLY_HEADERS];
    char value[REPLY_HEADERS][REPLY_VALUE_MAX];
} reply_t;

static void reply_add(reply_t *h, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_add(reply_t *h, const char *name, const char *fmt, ...) {
    va_list ap;
    if (h->n >= REPLY_HEADERS) return;
    va_start(ap, fmt);
    vsnprintf(h->value[h->n], REPLY_VALUE_MAX, fmt, ap);
    va_end(ap);
    for (char *p = h->value[h->n]; *p; p++)
        if (*p == '\r' || *p == '\n') *p = ' ';
    h->name[h->n++] = name;
}

static int has_body(const http_req_t *r) {
    return r->ri && (r->ri->content_length > 0 || mg_get_header(r->conn, "Transfer-Encoding") != NULL);
}

/* Sends the status line and headers: h, the headers added to r with
 * http_add_header(), X-Request-Id and nosniff, Content-Type when type is set
 * and Content-Length unless len is NO_LENGTH. The caller writes the body
 * (never for HEAD). A head goes out by hand, with Connection: close, when a
 * "100 Continue" went first (civetweb then drops its header API) or when the
 * status needs a reason phrase civetweb does not know. */
static int reply_head(http_req_t *r, int status, const char *reason, const reply_t *h, const char *type,
                      uint64_t len) {
    const char *hn[REPLY_HEADERS + HTTP_MAX_EXTRA_HEADERS + 4],
        *hv[REPLY_HEADERS + HTTP_MAX_EXTRA_HEADERS + 4];
    char num[32];
    int nh = 0, by_hand = r->continued || reason != NULL;
    if (r->sent || !r->conn) return -1;
    r->sent = 1;
    r->status = status;
    if ((!r->body_consumed && has_body(r)) || by_hand) mg_disable_connection_keep_alive(r->conn);
    if (type) hn[nh] = "Content-Type", hv[nh++] = type;
    if (len != NO_LENGTH) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)len);
        hn[nh] = "Content-Length", hv[nh++] = num;
    }
    hn[nh] = "X-Content-Type-Options", hv[nh++] = "nosniff";
    hn[nh] = "X-Request-Id", hv[nh++] = r->id;
    for (int i = 0; h && i < h->n; i++)
        hn[nh] = h->name[i], hv[nh++] = h->value[i];
    for (int i = 0; i < r->nextra; i++)
        hn[nh] = r->extra[i].name, hv[nh++] = r->extra[i].value;
    if (by_hand) {
        const char *text = reason ? reason : mg_get_response_code_text(r->conn, status);
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
    return 0;
}

/* 460 Checksum Mismatch (tus checksum extension) with the usual error body. */
static void send_checksum_mismatch(call_t *c, const sync_error_t *err) {
    cJSON *root = cJSON_CreateObject(), *e = root ? cJSON_AddObjectToObject(root, "error") : NULL;
    char *text = NULL;
    reply_t h = {0};
    if (e && cJSON_AddStringToObject(e, "code", "checksum_mismatch") &&
        cJSON_AddStringToObject(e, "message", err && err->message[0] ? err->message : "checksum mismatch") &&
        (!err || !err->field[0] || cJSON_AddStringToObject(e, "field", err->field)))
        text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) {
        http_send_errorf(c->req, 503, "unavailable", NULL, "out of memory");
        return;
    }
    reply_add(&h, "Cache-Control", "no-store");
    reply_head(c->req, 460, "Checksum Mismatch", &h, "application/json; charset=utf-8", strlen(text));
    if (!c->req->head) {
        mg_write(c->req->conn, text, strlen(text));
        c->req->bytes = strlen(text);
    }
    free(text);
}

/* An engine failure on a tus endpoint: the status table, plus 460. */
static void upload_error(call_t *c, int rc, const sync_error_t *err) {
    if (rc == SYNC_ECHECKSUM)
        send_checksum_mismatch(c, err);
    else
        http_send_sync_error(c->req, rc, err);
}

/* Every tus answer carries Tus-Resumable; a request without the version we
 * speak gets 412 with Tus-Version. 0 to go on, -1 after answering. */
static int tus_check(call_t *c) {
    http_add_header(c->req, "Tus-Resumable", TUS_VERSION);
    if (header_is(mg_get_header(c->req->conn, "Tus-Resumable"), TUS_VERSION)) return 0;
    http_add_header(c->req, "Tus-Version", TUS_VERSION);
    http_send_errorf(c->req, 412, "tus_version_unsupported", "Tus-Resumable",
                     "this server speaks tus %s: send Tus-Resumable: %s", TUS_VERSION, TUS_VERSION);
    return -1;
}

/* ======================================================================== */
/* tus                                                                      */
/* ======================================================================== */

void upload_route_options(call_t *c) {
    char max[32];
    snprintf(max, sizeof max, "%llu", (unsigned long long)sync_upload_max(c->rt->sync));
    http_add_header(c->req, "Tus-Resumable", TUS_VERSION);
    http_add_header(c->req, "Tus-Version", TUS_VERSION);
    http_add_header(c->req, "Tus-Extension", TUS_EXTENSIONS);
    http_add_header(c->req, "Tus-Max-Size", max);
    http_add_header(c->req, "Tus-Checksum-Algorithm", TUS_CHECKSUMS);
    http_add_header(c->req, "Allow", "OPTIONS, POST");
    http_send(c->req, 204, NULL, NULL, 0);
}

void upload_route_create(call_t *c) {
    upload_meta_t m;
    const char *why = NULL;
    uint64_t length;
    sync_upload_t u;
    sync_error_t err = {0};
    char loc[64], body[160];
    if (tus_check(c)) return;
    if (mg_get_header(c->req->conn, "Upload-Defer-Length")) {
        http_send_errorf(c->req, 400, "bad_request", "Upload-Defer-Length",
                         "the length must be known: send Upload-Length");
        return;
    }
    if (has_body(c->req)) {
        http_send_errorf(c->req, 400, "bad_request", NULL,
                         "send the bytes with PATCH (creation-with-upload is not offered)");
        return;
    }
    if (parse_u64(mg_get_header(c->req->conn, "Upload-Length"), &length) != 0) {
        http_send_errorf(c->req, 400, "bad_request", "Upload-Length", "Upload-Length must be a byte count");
        return;
    }
    if (meta_parse(mg_get_header(c->req->conn, "Upload-Metadata"), &m, &why) != 0) {
        http_send_errorf(c->req, 400, "bad_request", "Upload-Metadata", "%s", why);
        return;
    }
    sync_upload_meta_t meta = {m.has_sha256 ? m.sha256 : NULL, m.has_filename ? m.filename : NULL,
                               m.has_mime ? m.mime : NULL, m.has_record_id ? m.record_id : NULL};
    int rc = sync_upload_create(c->rt->sync, c->p, length, &meta, &u, &err);
    if (rc) {
        upload_error(c, rc, &err);
        return;
    }
    snprintf(loc, sizeof loc, "/v1/uploads/%s", u.id);
    snprintf(body, sizeof body, "{\"id\":\"%s\",\"offset\":%llu,\"length\":%llu,\"complete\":%s}", u.id,
             (unsigned long long)u.offset, (unsigned long long)u.length, u.complete ? "true" : "false");
    http_add_header(c->req, "Location", loc);
    http_add_header(c->req, "Upload-Offset", "0");
    http_send_json(c->req, 201, body, strlen(body));
}

void upload_route_status(call_t *c) {
    sync_upload_t u;
    sync_error_t err = {0};
    reply_t h = {0};
    char meta[REPLY_VALUE_MAX] = "";
    /* HEAD is the tus call; GET is a plain JSON view for tools. */
    if (c->req->head) {
        if (tus_check(c)) return;
    } else {
        http_add_header(c->req, "Tus-Resumable", TUS_VERSION);
    }
    int rc = sync_upload_get(c->rt->sync, c->p, c->id, &u, &err);
    if (rc) {
        upload_error(c, rc, &err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", u.id);
    cJSON_AddNumberToObject(o, "offset", (double)u.offset);
    cJSON_AddNumberToObject(o, "length", (double)u.length);
    cJSON_AddStringToObject(o, "sha256", u.sha256);
    if (u.filename[0]) cJSON_AddStringToObject(o, "filename", u.filename);
    cJSON_AddStringToObject(o, "mime", u.mime);
    if (u.record_id[0]) cJSON_AddStringToObject(o, "record_id", u.record_id);
    char at[64];
    struct tm tm;
    time_t secs = (time_t)(u.created_at / 1000);
    if (gmtime_r(&secs, &tm)) {
        snprintf(at, sizeof at, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(u.created_at % 1000));
        cJSON_AddStringToObject(o, "created_at", at);
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) {
        http_send_errorf(c->req, 503, "unavailable", NULL, "out of memory");
        return;
    }
    meta_add(meta, sizeof meta, "sha256", u.sha256);
    meta_add(meta, sizeof meta, "filename", u.filename);
    meta_add(meta, sizeof meta, "mime", u.mime);
    meta_add(meta, sizeof meta, "record_id", u.record_id);
    reply_add(&h, "Upload-Offset", "%llu", (unsigned long long)u.offset);
    reply_add(&h, "Upload-Length", "%llu", (unsigned long long)u.length);
    reply_add(&h, "Upload-Metadata", "%s", meta);
    reply_add(&h, "Cache-Control", "no-store");
    reply_head(c->req, 200, NULL, &h, "application/json; charset=utf-8", strlen(text));
    if (!c->req->head) {
        mg_write(c->req->conn, text, strlen(text));
        c->req->bytes = strlen(text);
    }
    free(text);
}

/* The request body as sync_upload_write() pulls it. */
typedef struct body_reader {
    http_req_t *req;
    int64_t length; /* Content-Length, or -1 (chunked) */
    int64_t got;
    int expect; /* a "100 Continue" is owed before the first read */
} body_reader_t;

static long body_read(void *ctx, void *buf, size_t len) {
    body_reader_t *b = ctx;
    if (b->expect) {
        /* civetweb 1.15 does not answer Expect: 100-continue for handlers.
         * Sent only now: a request refused before its body is read never
         * asks the client for the body. */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        mg_write(b->req->conn, cont, sizeof cont - 1);
        b->req->continued = 1;
        b->expect = 0;
    }
    if (b->length >= 0) {
        if (b->got >= b->length) {
            b->req->body_consumed = 1;
            return 0;
        }
        if ((uint64_t)len > (uint64_t)(b->length - b->got)) len = (size_t)(b->length - b->got);
    }
    if (len > INT_MAX) len = INT_MAX;
    int n = mg_read(b->req->conn, buf, len);
    if (n > 0) {
        b->got += n;
        if (b->length >= 0 && b->got == b->length) b->req->body_consumed = 1;
        return n;
    }
    if (b->length >= 0) return -1; /* the body ended before its Content-Length */
    if (n == 0) b->req->body_consumed = 1;
    return n == 0 ? 0 : -1;
}

/* "sha256 <base64>" -> check. 0, or -1 after answering 400. */
static int checksum_parse(call_t *c, const char *h, sync_checksum_t *check) {
    char alg[16];
    size_t n = 0;
    memset(check, 0, sizeof *check);
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
    long dl = b64_decode(v, vlen, check->digest, sizeof check->digest);
    if (strcmp(alg, "sha256") == 0 && dl == 32)
        check->algorithm = "sha256";
    else if (strcmp(alg, "sha1") == 0 && dl == 20)
        check->algorithm = "sha1";
    if (!check->algorithm) {
        http_send_errorf(c->req, 400, "bad_request", "Upload-Checksum",
                         "Upload-Checksum must be \"sha1 <base64>\" or \"sha256 <base64>\"");
        return -1;
    }
    check->digest_len = (size_t)dl;
    return 0;
}

static void patch(call_t *c) {
    uint64_t offset;
    sync_checksum_t check;
    sync_upload_t u;
    sync_error_t err = {0};
    char num[32];
    http_req_t *r = c->req;
    if (tus_check(c)) return;
    if (!media_type_is(mg_get_header(r->conn, "Content-Type"), "application/offset+octet-stream")) {
        http_send_errorf(r, 415, "unsupported_media_type", "Content-Type",
                         "PATCH bodies are Content-Type: application/offset+octet-stream");
        return;
    }
    const char *ce = mg_get_header(r->conn, "Content-Encoding");
    if (ce && !header_is(ce, "identity")) {
        http_send_errorf(r, 415, "unsupported_encoding", "Content-Encoding",
                         "upload bodies are sent as they are");
        return;
    }
    if (parse_u64(mg_get_header(r->conn, "Upload-Offset"), &offset) != 0) {
        http_send_errorf(r, 400, "bad_request", "Upload-Offset", "Upload-Offset must be a byte count");
        return;
    }
    const char *ck = mg_get_header(r->conn, "Upload-Checksum");
    if (ck && checksum_parse(c, ck, &check) != 0) return;

    body_reader_t br = {.req = r, .length = r->ri->content_length};
    if (br.length < 0 && !mg_get_header(r->conn, "Transfer-Encoding")) br.length = 0;
    const char *expect = mg_get_header(r->conn, "Expect");
    br.expect = expect && header_is(expect, "100-continue") && r->ri->http_version &&
                strcmp(r->ri->http_version, "1.1") == 0 && br.length != 0;
    int rc = sync_upload_write(c->rt->sync, c->p, c->id, offset, br.length, ck ? &check : NULL, body_read,
                               &br, &u, &err);
    if (rc) {
        upload_error(c, rc, &err);
        return;
    }
    snprintf(num, sizeof num, "%llu", (unsigned long long)u.offset);
    http_add_header(r, "Upload-Offset", num);
    http_send(r, 204, NULL, NULL, 0);
}

void upload_route_patch(call_t *c) {
    patch(c);
}

static void terminate(call_t *c) {
    sync_error_t err = {0};
    if (tus_check(c)) return;
    int rc = sync_upload_delete(c->rt->sync, c->p, c->id, &err);
    if (rc) {
        upload_error(c, rc, &err);
        return;
    }
    http_send(c->req, 204, NULL, NULL, 0);
}

void upload_route_delete(call_t *c) {
    terminate(c);
}

void upload_route_override(call_t *c) {
    const char *m = mg_get_header(c->req->conn, "X-HTTP-Method-Override");
    if (header_is(m, "PATCH")) {
        patch(c);
    } else if (header_is(m, "DELETE")) {
        terminate(c);
    } else {
        http_add_header(c->req, "Allow", "GET, HEAD, PATCH, DELETE, OPTIONS");
        http_send_errorf(c->req, 405, "method_not_allowed", NULL,
                         "POST here needs X-HTTP-Method-Override: PATCH or DELETE");
    }
}

/* ======================================================================== */
/* Blobs                                                                    */
/* ======================================================================== */

/* Range: a single "bytes=a-b", "a-" or "-n". 1 and [*from, *to] for a
 * satisfiable range; 0 when there is none we honour (the whole blob is sent:
 * several ranges, or syntax we do not read); -1 when unsatisfiable (416). */
static int range_parse(const char *h, uint64_t size, uint64_t *from, uint64_t *to) {
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
        if (a > U53_MAX / 10) return 0;
        a = a * 10 + (uint64_t)(*h - '0');
    }
    if (*h++ != '-') return 0;
    for (; *h >= '0' && *h <= '9'; h++, has_b = 1) {
        if (b > U53_MAX / 10) return 0;
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

/* Does If-None-Match (or If-Range) name this entity tag? */
static int etag_listed(const char *list, const char *etag) {
    if (!list) return 0;
    if (header_is(list, "*")) return 1;
    const char *p = strstr(list, etag);
    return p != NULL;
}

void upload_route_blob(call_t *c) {
    http_req_t *r = c->req;
    sync_blob_t b;
    sync_error_t err = {0};
    reply_t h = {0};
    char etag[72];
    int fd = -1;
    if (r->head) {
        /* Existence only (the phone asks before it uploads): no scope needed. */
        int rc = sync_blob_stat(c->rt->sync, c->p, c->id, &b, &err);
        if (rc) {
            http_send_sync_error(r, rc, &err);
            return;
        }
        reply_add(&h, "ETag", "\"%s\"", b.sha256);
        reply_add(&h, "Accept-Ranges", "bytes");
        reply_add(&h, "Cache-Control", "no-store");
        reply_head(r, 200, NULL, &h, b.mime, b.size);
        return;
    }
    int rc = sync_blob_open(c->rt->sync, c->p, c->id, &b, &fd, &err);
    if (rc) {
        http_send_sync_error(r, rc, &err);
        return;
    }
    snprintf(etag, sizeof etag, "\"%s\"", b.sha256);
    reply_add(&h, "ETag", "%s", etag);
    reply_add(&h, "Accept-Ranges", "bytes");
    /* Content-addressed: the bytes under this name never change. */
    reply_add(&h, "Cache-Control", "private, max-age=31536000, immutable");
    if (etag_listed(mg_get_header(r->conn, "If-None-Match"), etag)) {
        reply_head(r, 304, NULL, &h, NULL, NO_LENGTH);
        close(fd);
        return;
    }
    uint64_t from = 0, to = b.size ? b.size - 1 : 0, count = b.size;
    const char *ifr = mg_get_header(r->conn, "If-Range");
    int ranged =
        ifr && !etag_listed(ifr, etag) ? 0 : range_parse(mg_get_header(r->conn, "Range"), b.size, &from, &to);
    if (ranged < 0) {
        char cr[48];
        snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)b.size);
        http_add_header(r, "Content-Range", cr);
        close(fd);
        http_send_errorf(r, 416, "range_not_satisfiable", "Range", "the blob has %llu bytes",
                         (unsigned long long)b.size);
        return;
    }
    if (ranged > 0) {
        count = to - from + 1;
        reply_add(&h, "Content-Range", "bytes %llu-%llu/%llu", (unsigned long long)from,
                  (unsigned long long)to, (unsigned long long)b.size);
    }
    reply_head(r, ranged > 0 ? 206 : 200, NULL, &h, b.mime, count);
    unsigned char *buf = count ? malloc(count < STREAM_CHUNK ? (size_t)count : STREAM_CHUNK) : NULL;
    uint64_t pos = from, left = count;
    while (buf && left > 0) {
        size_t want = left < STREAM_CHUNK ? (size_t)left : STREAM_CHUNK;
        ssize_t n = pread(fd, buf, want, (off_t)pos);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || mg_write(r->conn, buf, (size_t)n) != (int)n) break;
        pos += (uint64_t)n;
        left -= (uint64_t)n;
        r->bytes += (size_t)n;
    }
    /* Fewer bytes than announced: the connection cannot carry another answer. */
    if (left > 0) mg_disable_connection_keep_alive(r->conn);
    free(buf);
    close(fd);
}

/* ======================================================================== */
/* Missing evidence                                                         */
/* ======================================================================== */

void upload_route_missing(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    int rc = sync_evidence_missing(c->rt->sync, c->p, &out, &err);
    route_reply(c, rc, out, &err, 200);
}
