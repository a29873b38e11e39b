/* route.h -- what an endpoint function gets, and the helpers endpoint files
 * share (routes.c dispatches; routes_*.c files hold endpoints of one area). */
#ifndef CASESYNC_ROUTE_H
#define CASESYNC_ROUTE_H

#include "server/http.h"
#include "server/routes.h"
#include "sync/sync.h"

/* One call in progress: what a route function gets. */
typedef struct call {
    routes_t *rt;
    http_req_t *req;
    sync_principal_t *p; /* NULL on routes without authentication */
    const char *id;      /* the decoded {id} path segment, or NULL */
    int slot;            /* the route's slot in rt->metrics; a route may refine it */
} call_t;

typedef void (*route_fn)(call_t *c);

/* Sends the engine's answer: its JSON with ok_status (204: no body), or its
 * error. Takes ownership of out. */
void route_reply(call_t *c, int rc, char *out, const sync_error_t *err, int ok_status);

/* A query parameter, URL-decoded: its length, -1 when absent, -2 when longer
 * than dst allows or when it decodes to a NUL byte. */
int route_query(const http_req_t *r, const char *name, char *dst, size_t dst_size);

/* Optional integer query parameter with a default. 0, or -1 after answering
 * 400 bad_request. */
int route_query_int(call_t *c, const char *name, int dflt, int lo, int hi, int *out);

/* The key the login failure limit counts under: the peer address, or the
 * trusted proxy's last X-Forwarded-For entry. */
void route_client_key(const call_t *c, char *out, size_t out_size);

/* Reads the JSON body (limits, gzip, depth) or answers the error and returns NULL. */
cJSON *route_body_json(call_t *c);
/* The same for a body read before authentication: at most 4 KiB, never
 * gzip-encoded (413 / 415), cut while read when chunked. */
cJSON *route_body_json_small(call_t *c);

#endif
