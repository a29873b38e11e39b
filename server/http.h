/* http.h -- request and response plumbing of the HTTP edge: bounded body
 * reading (with gzip), JSON parsing under limits, JSON responses (gzip when
 * the client accepts it), the one table from SYNC_E* codes to HTTP statuses,
 * request ids and the access log.
 *
 * Caveats:
 * - civetweb does not limit body size: every body is read through
 *   http_read_body(), which enforces the limits on the raw and the inflated
 *   size while reading, so a zip bomb is never inflated past the limit.
 * - One http_req_t lives on the stack of one handler call. Exactly one
 *   response is sent per request: the first http_send*() call wins, later ones
 *   are ignored (and return -1).
 * - Error bodies are {"error":{"code","message","field"?}} built with cJSON,
 *   so a message may hold any text.
 */
#ifndef CASESYNC_HTTP_H
#define CASESYNC_HTTP_H

#include <stddef.h>
#include <time.h>

#include <civetweb.h>
#include <cjson/cJSON.h>

#include "sync/sync.h"

/* Defaults of the configurable limits (PROTOCOL.md §1). */
#define HTTP_MAX_BODY_BYTES (16u << 20)     /* raw request body, as sent */
#define HTTP_MAX_INFLATED_BYTES (64u << 20) /* after Content-Encoding: gzip */
#define HTTP_MAX_JSON_DEPTH 32
/* Elements (values and member names) of one JSON body: unless configured,
 * PER_CHANGE for each change a changeset may hold plus BASE, so a legal push
 * of max_changes rich changes fits (a create with every field set is about
 * 80). */
#define HTTP_JSON_ELEMENTS_PER_CHANGE 256
#define HTTP_JSON_ELEMENTS_BASE 4096
#define HTTP_MAX_JSON_ELEMENTS(max_changes)                                                         \
    ((size_t)HTTP_JSON_ELEMENTS_PER_CHANGE * (size_t)(max_changes) + HTTP_JSON_ELEMENTS_BASE)
/* Inflated bytes held by all requests at once; past it a gzip body is 503. */
#define HTTP_MAX_INFLATING_BYTES (256u << 20)
/* Bodies of the calls that come before authentication (login, logout):
 * this many bytes as sent, never Content-Encoding. */
#define HTTP_AUTH_MAX_BODY 4096

/* A body that takes longer than this to arrive is cut off with 408. */
#define HTTP_BODY_TIMEOUT_S 300
/* Responses shorter than this are sent uncompressed. */
#define HTTP_GZIP_MIN_BYTES 256
#define HTTP_MAX_EXTRA_HEADERS 8

typedef struct http_limits {
    size_t max_body_bytes;
    size_t max_inflated_bytes;
    int max_json_depth;
    int max_pushing;            /* pushes read and applied at once (0: the default) */
    size_t max_json_elements;   /* 0: no limit */
    size_t max_inflating_bytes; /* process-wide cap on inflated bytes held (0: none) */
    int no_gzip;                /* a Content-Encoding other than identity is 415 */
} http_limits_t;

/* An error of the edge itself (body, encoding, query, routing), or one
 * translated from the engine. `code` points to a static string. */
typedef struct http_error {
    int status;
    const char *code;
    char message[256];
    char field[256];
} http_error_t;

/* One request in flight. Filled by http_req_begin(); owned by the handler
 * call; holds no heap memory. */
typedef struct http_req {
    struct mg_connection *conn;
    const struct mg_request_info *ri;
    char id[33];        /* X-Request-Id: 32 random hex chars */
    /* For the access log, set by routes.c: the route pattern that answered
     * (NULL when none did) and the authenticated user and device ("" before
     * authentication). */
    const char *route;
    char log_user[64], log_device[80];
    int head;           /* HEAD: headers only */
    int accept_gzip;    /* Accept-Encoding allows gzip */
    int body_consumed;  /* the request body was read to its end */
    int sent;           /* a response went out */
    int continued;      /* "100 Continue" was written by hand */
    int status;         /* for the access log */
    size_t bytes;       /* body bytes sent, for the access log */
    /* For GET /metrics: whoever writes or reads a body fills these. */
    size_t bytes_plain; /* response body bytes before gzip (when gzip_out) */
    int gzip_out;       /* the response body went out gzip-encoded */
    size_t body_wire;   /* request body bytes received */
    size_t body_plain;  /* the same after inflating */
    int gzip_in;        /* the request body came gzip-encoded */
    int body_counted;   /* http_read_body() filled body_wire and body_plain */
    size_t inflating_held; /* inflated bytes this request holds (http_body_done) */
    struct timespec start;
    int nextra;
    struct {
        const char *name; /* static */
        char value[160];
    } extra[HTTP_MAX_EXTRA_HEADERS];
} http_req_t;

/* ---- request life ------------------------------------------------------- */

/* Starts a request: a fresh id, the start time, what the client accepts. */
void http_req_begin(http_req_t *r, struct mg_connection *conn);
/* Writes the one access-log line to stderr: id, method, path (never the query
 * string), status, bytes, milliseconds. Logs no header, token or body. */
void http_req_end(http_req_t *r);

/* The access log's form: one JSON object a line (the default:
 * {"time","level","msg":"request","id","method","path","route","status",
 * "bytes","ms","user","device"}; level "error" for 5xx, "warn" for 4xx,
 * else "info"), or with text set the plain line "METHOD PATH STATUS BYTES
 * MSms id=ID". Never a query string (a cursor), a header, or a body (no
 * password, token or party id). Set once before serving. */
void http_set_log_text(int text);

/* Adds a header to the response still to be sent. `name` must be a static
 * string; `value` is copied (at most 159 bytes). -1 when the table is full. */
int http_add_header(http_req_t *r, const char *name, const char *value);

/* ---- request bodies ----------------------------------------------------- */

/* Reads the whole request body, inflating Content-Encoding: gzip (unless
 * lim->no_gzip), within the limits: the raw bytes against max_body_bytes
 * (Content-Length is checked before anything is read), the inflated bytes
 * against max_inflated_bytes, and the inflated bytes of all requests at once
 * against max_inflating_bytes (503 unavailable past it; they are reserved as
 * the buffer grows and stay reserved until http_body_done()). On success
 * returns 0 and *out is a malloc'd NUL-terminated buffer of *len bytes (the
 * caller frees it, then calls http_body_done()), or NULL with *len 0 when the
 * request has no body. On failure returns -1, fills err (413 too_large, 415
 * unsupported_encoding, 400 bad_request, 408 request_timeout, 503
 * unavailable) and *out is NULL. */
int http_read_body(http_req_t *r, const http_limits_t *lim, char **out, size_t *len,
                   http_error_t *err);
/* Gives back the inflated bytes the request's body held (http_req_end()
 * does it too, for a body never given back). */
void http_body_done(http_req_t *r);
/* Inflated bytes all requests hold now (for /metrics). */
size_t http_inflating_bytes(void);

/* The check of a body that comes before authentication, from its headers
 * alone (nothing is read): a Content-Encoding other than identity is 415
 * unsupported_encoding, a Content-Length over max is 413 too_large. 0, or
 * -1 with err filled. Pure. */
int http_small_body_check(const char *content_encoding, long long content_length, size_t max,
                          http_error_t *err);

/* Reads a JSON body: Content-Type must be absent or application/json (else
 * 415 unsupported_media_type), the body present (else 400 bad_request). As
 * the bytes arrive (after inflating), a scan (jsonscan.h) counts elements
 * and depth: past max_json_elements 413 too_large, past max_json_depth 400
 * json_too_deep -- at once, before the rest is read and before any tree is
 * built. Then: valid UTF-8, no raw control character or \u0000 in strings
 * (400 bad_json), one JSON object with nothing but whitespace after it (else
 * 400 bad_json / 400 bad_request). On success *out owns the parsed tree
 * (cJSON_Delete it). */
int http_read_json(http_req_t *r, const http_limits_t *lim, cJSON **out, http_error_t *err);

/* ---- responses ---------------------------------------------------------- */

/* Sends status with a body of content type `type` (NULL or len 0: no body),
 * plus the added headers, X-Request-Id, Cache-Control: no-store and Vary:
 * Accept-Encoding; gzip-encoded when the client accepts it and the body is
 * large enough. 204 and 304 never carry a body. 0, or -1 if already sent. */
int http_send(http_req_t *r, int status, const char *type, const char *body, size_t len);
/* http_send() with Content-Type: application/json; charset=utf-8. */
int http_send_json(http_req_t *r, int status, const char *body, size_t len);
/* Sends an error body {"error":{"code","message","field"?}}. 401 adds
 * WWW-Authenticate: Bearer; 429 and 503 add Retry-After: 1 unless one was
 * added already. */
int http_send_error(http_req_t *r, const http_error_t *e);
int http_send_errorf(http_req_t *r, int status, const char *code, const char *field,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Sends the answer to an engine failure through the one status table, with
 * the extras some codes carry: "expected" inside the error of a
 * changeset_gap, a top-level "wipe" for device_revoked, Retry-After
 * (err->retry_after, default 1) for 429 and 503. err may be NULL. */
int http_send_sync_error(http_req_t *r, int rc, const sync_error_t *err);

/* The status table: HTTP status and error code of a SYNC_E* value. Unknown
 * codes map to 500 "internal". */
int http_status_of(int sync_code, const char **code);

/* ---- pieces, exposed for tests ------------------------------------------ */

/* Does this Accept-Encoding value allow gzip (gzip, x-gzip or *, q > 0)? */
int http_accepts_gzip(const char *accept_encoding);
/* 1 when the JSON text nests arrays/objects deeper than max (brackets inside
 * strings do not count), else 0. Reads at most len bytes. */
int http_json_too_deep(const char *text, size_t len, int max);
/* Inflates a gzip or zlib buffer into at most max_out bytes. 0 and *out
 * malloc'd (NUL-terminated, caller frees); -1 when the result would exceed
 * max_out (inflation stops there); -2 for corrupt or truncated input; -3 out
 * of memory. *out is NULL on failure. */
int http_gunzip(const void *in, size_t len, size_t max_out, char **out, size_t *out_len);
/* Gzip-encodes a buffer. 0 and *out malloc'd (caller frees), or -1. */
int http_gzip(const void *in, size_t len, char **out, size_t *out_len);

/* ---- civetweb callbacks ------------------------------------------------- */

/* Answers an error civetweb found itself (malformed request line, headers
 * too large ...; its callbacks.http_error) with a JSON error body, and
 * closes the connection after it. r comes from http_req_begin(). 0, or -1 if
 * already sent. */
int http_send_protocol_error(http_req_t *r, int status, const char *msg);
/* callbacks.log_message: civetweb's diagnostics to stderr, one line each. */
int http_civetweb_log(const struct mg_connection *conn, const char *msg);

#endif
