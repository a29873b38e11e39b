/* routes_cases.c -- GET /v1/cases, /v1/stats and /v1/export: query strings
 * onto sync_cases(), sync_stats() and sync_export(); the export streamed with
 * chunked transfer encoding (gzip when the client accepts it). */
#include "server/routes_cases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZLIB_CONST
#include <zlib.h>

#define FILTER_BUF 257 /* SYNC's filter limit (256 bytes) + NUL; longer is 400 */
#define CURSOR_BUF 1201
#define TIME_BUF 65
#define ZOUT_BYTES 32768

/* The filter parameters of /v1/cases and /v1/export, decoded. */
typedef struct filter_buf {
    char status[FILTER_BUF], type[FILTER_BUF], grid[FILTER_BUF], assignee[FILTER_BUF], unit[FILTER_BUF];
    char overdue[8], updated_after[TIME_BUF], q[FILTER_BUF], source[FILTER_BUF], procedure[FILTER_BUF];
    char updated_from[TIME_BUF], updated_to[TIME_BUF], opened_from[TIME_BUF], opened_to[TIME_BUF];
} filter_buf_t;

/* Reads one optional parameter; -1 after answering 400 when it is too long
 * or decodes to a NUL byte. */
static int param(call_t *c, const char *name, char *dst, size_t size) {
    if (route_query(c->req, name, dst, size) == -2) {
        http_send_errorf(c->req, 400, "bad_request", name, "%s is too long or not text", name);
        return -1;
    }
    return 0;
}

static int read_filter(call_t *c, filter_buf_t *b, sync_case_filter_t *f) {
    memset(f, 0, sizeof *f);
    if (param(c, "status", b->status, sizeof b->status) || param(c, "type", b->type, sizeof b->type) ||
        param(c, "grid", b->grid, sizeof b->grid) || param(c, "assignee", b->assignee, sizeof b->assignee) ||
        param(c, "unit", b->unit, sizeof b->unit) || param(c, "overdue", b->overdue, sizeof b->overdue) ||
        param(c, "updated_after", b->updated_after, sizeof b->updated_after) ||
        param(c, "q", b->q, sizeof b->q) || param(c, "source", b->source, sizeof b->source) ||
        param(c, "procedure", b->procedure, sizeof b->procedure) ||
        param(c, "updated_from", b->updated_from, sizeof b->updated_from) ||
        param(c, "updated_to", b->updated_to, sizeof b->updated_to) ||
        param(c, "opened_from", b->opened_from, sizeof b->opened_from) ||
        param(c, "opened_to", b->opened_to, sizeof b->opened_to))
        return -1;
    f->status = b->status;
    f->type = b->type;
    f->grid = b->grid;
    f->assignee = b->assignee;
    f->unit = b->unit;
    f->overdue = b->overdue;
    f->updated_after = b->updated_after;
    f->q = b->q;
    f->source = b->source;
    f->procedure = b->procedure;
    f->updated_from = b->updated_from;
    f->updated_to = b->updated_to;
    f->opened_from = b->opened_from;
    f->opened_to = b->opened_to;
    return 0;
}

void cases_route_list(call_t *c) {
    sync_error_t err = {0};
    sync_case_filter_t f;
    char *out = NULL;
    int limit;
    filter_buf_t *b = malloc(sizeof *b);
    char *cursor = malloc(CURSOR_BUF);
    if (!b || !cursor) {
        http_send_errorf(c->req, 503, "unavailable", NULL, "out of memory");
        goto done;
    }
    if (read_filter(c, b, &f) < 0 ||
        route_query_int(c, "limit", SYNC_CASES_LIMIT_DEFAULT, 1, SYNC_CASES_LIMIT_MAX, &limit) < 0)
        goto done;
    if (route_query(c->req, "cursor", cursor, CURSOR_BUF) == -2) {
        http_send_errorf(c->req, 400, "bad_cursor", "cursor", "not a cursor of this server");
        goto done;
    }
    int rc = sync_cases(c->rt->sync, c->p, &f, cursor, limit, &out, &err);
    route_reply(c, rc, out, &err, 200);
done:
    free(b);
    free(cursor);
}

void cases_route_stats(call_t *c) {
    sync_error_t err = {0};
    char from[TIME_BUF], to[TIME_BUF], by[16], unit[FILTER_BUF], *out = NULL;
    if (param(c, "from", from, sizeof from) || param(c, "to", to, sizeof to) ||
        param(c, "group_by", by, sizeof by) || param(c, "unit", unit, sizeof unit))
        return;
    int rc = sync_stats(c->rt->sync, c->p, from, to, by, unit, &out, &err);
    route_reply(c, rc, out, &err, 200);
}

/* ---- the export stream ------------------------------------------------------------ */

typedef struct stream {
    call_t *c;
    const char *type, *disposition;
    int started; /* the head went out */
    int failed;  /* the connection refused a write */
    int gz;
    z_stream z;
    unsigned char zout[ZOUT_BYTES];
} stream_t;

static void stream_head(stream_t *st) {
    http_req_t *r = st->c->req;
    struct mg_connection *conn = r->conn;
    st->started = 1;
    r->sent = 1;
    r->status = 200;
    r->gzip_out = st->gz;
    mg_response_header_start(conn, 200);
    mg_response_header_add(conn, "Content-Type", st->type, -1);
    mg_response_header_add(conn, "Content-Disposition", st->disposition, -1);
    if (!r->head) mg_response_header_add(conn, "Transfer-Encoding", "chunked", -1);
    if (st->gz) mg_response_header_add(conn, "Content-Encoding", "gzip", -1);
    mg_response_header_add(conn, "Cache-Control", "no-store", -1);
    mg_response_header_add(conn, "Vary", "Accept-Encoding", -1);
    mg_response_header_add(conn, "X-Content-Type-Options", "nosniff", -1);
    mg_response_header_add(conn, "X-Request-Id", r->id, -1);
    mg_response_header_send(conn);
}

static int send_chunk(stream_t *st, const void *data, size_t len) {
    if (!len || st->failed) return st->failed ? -1 : 0;
    if (mg_send_chunk(st->c->req->conn, data, (unsigned int)len) < 0) {
        st->failed = 1;
        return -1;
    }
    st->c->req->bytes += len;
    return 0;
}

/* Deflates what is given (flush: Z_NO_FLUSH or Z_FINISH) and sends the output. */
static int gz_pump(stream_t *st, const char *data, size_t len, int flush) {
    st->z.next_in = (const Bytef *)data;
    st->z.avail_in = (uInt)len;
    for (;;) {
        st->z.next_out = st->zout;
        st->z.avail_out = sizeof st->zout;
        int zr = deflate(&st->z, flush);
        if (zr == Z_STREAM_ERROR) return -1;
        if (send_chunk(st, st->zout, sizeof st->zout - st->z.avail_out) != 0) return -1;
        if (flush == Z_FINISH ? zr == Z_STREAM_END : st->z.avail_in == 0 && st->z.avail_out != 0) return 0;
    }
}

/* The engine's write callback: the head goes out with the first bytes. */
static int stream_write(void *ctx, const char *data, size_t len) {
    stream_t *st = ctx;
    if (!st->started) stream_head(st);
    if (st->c->req->head) return -1; /* HEAD: the head was all */
    if (!st->gz) return send_chunk(st, data, len);
    st->c->req->bytes_plain += len;
    return gz_pump(st, data, len, Z_NO_FLUSH);
}

void cases_route_export(call_t *c) {
    sync_error_t err = {0};
    sync_case_filter_t f;
    char format[16];
    filter_buf_t *b = malloc(sizeof *b);
    stream_t *st = calloc(1, sizeof *st);
    if (!b || !st) {
        http_send_errorf(c->req, 503, "unavailable", NULL, "out of memory");
        goto done;
    }
    if (read_filter(c, b, &f) < 0 || param(c, "format", format, sizeof format) < 0) goto done;
    int csv = strcmp(format, "csv") == 0;
    st->c = c;
    st->type = csv ? "text/csv; charset=utf-8" : "application/x-ndjson; charset=utf-8";
    st->disposition = csv ? "attachment; filename=\"cases.csv\"" : "attachment; filename=\"cases.ndjson\"";
    if (c->req->accept_gzip && !c->req->head) {
        if (deflateInit2(&st->z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            http_send_errorf(c->req, 503, "unavailable", NULL, "out of memory");
            goto done;
        }
        st->gz = 1;
    }
    int rc = sync_export(c->rt->sync, c->p, &f, format, stream_write, st, &err);
    if (!st->started) {
        if (rc < 0) {
            http_send_sync_error(c->req, rc, &err);
            goto done;
        }
        stream_head(st); /* nothing to export: an empty body (csv always has its header) */
    }
    if (c->req->head) goto done;
    if (rc < 0 || st->failed || (st->gz && gz_pump(st, NULL, 0, Z_FINISH) != 0)) {
        /* Cut short: no final chunk, and the connection closes, so the client
         * sees an incomplete transfer rather than a short file. */
        if (!st->failed)
            fprintf(stderr, "casesyncd: request %s: export cut short: %s\n", c->req->id,
                    err.message[0] ? err.message : "compression failed");
        mg_disable_connection_keep_alive(c->req->conn);
        goto done;
    }
    if (mg_send_chunk(c->req->conn, "", 0) < 0) mg_disable_connection_keep_alive(c->req->conn);
done:
    if (st && st->gz) deflateEnd(&st->z);
    free(st);
    free(b);
}
