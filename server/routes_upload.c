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

#include "server/deadline.h"
#include "server/tus.h"

#define TUS_EXTENSIONS "creation,checksum,termination"
#define TUS_CHECKSUMS "sha1,sha256"
#define STREAM_CHUNK (256u << 10) /* bytes per read from the socket or the file */
#define REPLY_HEADERS 16
#define REPLY_VALUE_MAX 2048
#define NO_LENGTH UINT64_MAX /* reply_head: no Content-Length */

_Static_assert(sizeof((sync_checksum_t *)0)->digest >= TUS_DIGEST_MAX, "a tus digest fits the engine's");

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
static int require_version(call_t *c) {
    http_add_header(c->req, "Tus-Resumable", TUS_VERSION);
    if (tus_header_is(mg_get_header(c->req->conn, "Tus-Resumable"), TUS_VERSION)) return 0;
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
    tus_meta_t m;
    const char *why = NULL;
    uint64_t length;
    sync_upload_t u;
    sync_error_t err = {0};
    char loc[64], body[160];
    if (require_version(c)) return;
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
    if (tus_parse_u64(mg_get_header(c->req->conn, "Upload-Length"), &length) != 0) {
        http_send_errorf(c->req, 400, "bad_request", "Upload-Length", "Upload-Length must be a byte count");
        return;
    }
    if (tus_meta_parse(mg_get_header(c->req->conn, "Upload-Metadata"), &m, &why) != 0) {
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
        if (require_version(c)) return;
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
    tus_meta_add(meta, sizeof meta, "sha256", u.sha256);
    tus_meta_add(meta, sizeof meta, "filename", u.filename);
    tus_meta_add(meta, sizeof meta, "mime", u.mime);
    tus_meta_add(meta, sizeof meta, "record_id", u.record_id);
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
    int n = deadline_read(b->req->conn, buf, len);
    if (n > 0) {
        b->got += n;
        if (b->length >= 0 && b->got == b->length) b->req->body_consumed = 1;
        return n;
    }
    if (b->length >= 0) return -1; /* the body ended before its Content-Length */
    if (n == 0) b->req->body_consumed = 1;
    return n == 0 ? 0 : -1;
}

/* Upload-Checksum -> check. 0, or -1 after answering 400. */
static int checksum_parse(call_t *c, const char *h, sync_checksum_t *check) {
    tus_checksum_t t;
    memset(check, 0, sizeof *check);
    if (tus_checksum_parse(h, &t) != 0) {
        http_send_errorf(c->req, 400, "bad_request", "Upload-Checksum",
                         "Upload-Checksum must be \"sha1 <base64>\" or \"sha256 <base64>\"");
        return -1;
    }
    check->algorithm = t.algorithm;
    memcpy(check->digest, t.digest, t.digest_len);
    check->digest_len = t.digest_len;
    return 0;
}

static void patch(call_t *c) {
    uint64_t offset;
    sync_checksum_t check;
    sync_upload_t u;
    sync_error_t err = {0};
    char num[32];
    http_req_t *r = c->req;
    if (require_version(c)) return;
    if (!tus_media_type_is(mg_get_header(r->conn, "Content-Type"), "application/offset+octet-stream")) {
        http_send_errorf(r, 415, "unsupported_media_type", "Content-Type",
                         "PATCH bodies are Content-Type: application/offset+octet-stream");
        return;
    }
    const char *ce = mg_get_header(r->conn, "Content-Encoding");
    if (ce && !tus_header_is(ce, "identity")) {
        http_send_errorf(r, 415, "unsupported_encoding", "Content-Encoding",
                         "upload bodies are sent as they are");
        return;
    }
    if (tus_parse_u64(mg_get_header(r->conn, "Upload-Offset"), &offset) != 0) {
        http_send_errorf(r, 400, "bad_request", "Upload-Offset", "Upload-Offset must be a byte count");
        return;
    }
    const char *ck = mg_get_header(r->conn, "Upload-Checksum");
    if (ck && checksum_parse(c, ck, &check) != 0) return;

    body_reader_t br = {.req = r, .length = r->ri->content_length};
    if (br.length < 0 && !mg_get_header(r->conn, "Transfer-Encoding")) br.length = 0;
    const char *expect = mg_get_header(r->conn, "Expect");
    br.expect = expect && tus_header_is(expect, "100-continue") && r->ri->http_version &&
                strcmp(r->ri->http_version, "1.1") == 0 && br.length != 0;
    int rc = sync_upload_write(c->rt->sync, c->p, c->id, offset, br.length, ck ? &check : NULL, body_read,
                               &br, &u, &err);
    if (rc == SYNC_EBADREQ && deadline_expired()) {
        /* A trickled body: what arrived in time is kept, as for a dropped one. */
        http_send_errorf(r, 408, "request_timeout", NULL, "the body arrived too slowly: %s", err.message);
        return;
    }
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
    if (require_version(c)) return;
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
    if (tus_header_is(m, "PATCH")) {
        patch(c);
    } else if (tus_header_is(m, "DELETE")) {
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

/* Does If-None-Match (or If-Range) name this entity tag? */
static int etag_listed(const char *list, const char *etag) {
    if (!list) return 0;
    if (tus_header_is(list, "*")) return 1;
    const char *p = strstr(list, etag);
    return p != NULL;
}

/* Evidence bytes are whatever a phone sent, under the type it declared: a
 * browser must save them, never render them as a page of this origin
 * (nosniff comes with every reply_head()). */
static void blob_headers(reply_t *h, const sync_blob_t *b) {
    reply_add(h, "Content-Disposition", "attachment; filename=\"%s\"", b->sha256);
    reply_add(h, "Content-Security-Policy", "sandbox");
}

void upload_route_blob(call_t *c) {
    http_req_t *r = c->req;
    sync_blob_t b;
    sync_error_t err = {0};
    reply_t h = {0};
    char etag[72];
    int fd = -1;
    if (r->head) {
        /* The phone asks before it uploads. The same rule as GET: bytes the
         * caller may not read are answered as unknown (404). */
        int rc = sync_blob_stat(c->rt->sync, c->p, c->id, &b, &err);
        if (rc) {
            http_send_sync_error(r, rc, &err);
            return;
        }
        blob_headers(&h, &b);
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
    blob_headers(&h, &b);
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
    int ranged = ifr && !etag_listed(ifr, etag)
                     ? 0
                     : tus_range_parse(mg_get_header(r->conn, "Range"), b.size, &from, &to);
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
