/* routes.h -- the HTTP API of PROTOCOL.md mapped onto the engine: one
 * civetweb handler on "/" dispatching by method and path.
 *
 * Caveats:
 * - The engine decides permissions; routes only authenticate the bearer
 *   token, parse the request and translate the answer.
 * - civetweb must run with decode_url=no: path segments are percent-decoded
 *   here, one at a time, so an encoded '/' stays inside its segment.
 */
#ifndef CASESYNC_ROUTES_H
#define CASESYNC_ROUTES_H

#include <pthread.h>
#include <time.h>

#include <civetweb.h>

#include "server/http.h"
#include "server/metrics.h"
#include "sync/sync.h"

/* What every handler call shares. Set up before mg_set_request_handler()
 * and read-only afterwards, except the counters (atomic). The caller owns it
 * and keeps it alive until mg_stop() returns. */
#define ROUTES_TIME_ZONE_MAX 48
#define ROUTES_TIME_ZONE_DEFAULT "Asia/Shanghai"

typedef struct routes {
    sync_t *sync;              /* borrowed */
    http_limits_t limits;
    char trusted_proxy[64];    /* peer address whose X-Forwarded-For is believed; "" for none */
    time_t started;
    /* Counters for GET /metrics. */
    metrics_t metrics; /* by route slot: see routes.c */
    long in_flight;
    int draining;              /* set by routes_drain(): new requests get 503 */
    /* Long polls hold a civetweb worker thread each: at most this many wait
     * at once (0: no cap); past it a pull with wait > 0 answers 503 with
     * Retry-After, so waiting phones cannot starve every other request. */
    long max_waiting;
    long waiting;
    /* Pushes being read, checked or applied at once: past it a push waits
     * (up to PUSH_SLOT_WAIT_S, then 503 with Retry-After) before its body is
     * read, so a shift change of hundreds of phones holds at most this many
     * parsed changesets in memory. The writer applies them in one group
     * commit anyway; more in flight would only queue. The cap is
     * limits.max_pushing, or ROUTES_MAX_PUSHING. Under push_mu. */
    int pushing, pushing_max;
    /* The time zone the console shows times in (config key time_zone): its
     * name as configured and its offset from UTC in minutes. */
    char time_zone[ROUTES_TIME_ZONE_MAX];
    int utc_offset_min;
    long push_waits;
    pthread_mutex_t push_mu;
    pthread_cond_t push_cv;
} routes_t;

#define ROUTES_MAX_PUSHING 32
#define PUSH_SLOT_WAIT_S 30

/* Fills rt with the defaults: limits from http.h, no trusted proxy, no cap
 * on long polls, times shown in Asia/Shanghai (UTC+8). */
void routes_init(routes_t *rt, sync_t *sync);

/* The long-poll cap for a server of `threads` worker threads: all but a
 * quarter of them (at least 2 kept free), and at least 1. */
long routes_max_waiting(int threads);

/* Cluster mode, on a node that cannot write: what it does with a request
 * before dispatching it. Pure. */
typedef enum {
    FOLLOWER_SERVES,   /* a read: served from this node's store */
    FOLLOWER_TO_LEADER /* a write, or the state of a tus upload: 307 to the leader */
} follower_action_t;
follower_action_t routes_follower_action(const char *method, const char *path);

/* Graceful stop, between sync_shutdown() and mg_stop(): from now on new
 * requests answer 503 unavailable, and this waits up to timeout_ms for the
 * requests in flight to send their answers (civetweb drops whatever a
 * handler writes once mg_stop() has begun). 0 when drained, -1 on timeout. */
int routes_drain(routes_t *rt, int timeout_ms);

/* The route table, for tests that hold it against docs/openapi.yaml: the
 * i-th route's method and path pattern ('*' stands for one path segment).
 * 0, or -1 when i is past the end. */
int routes_table_entry(size_t i, const char **method, const char **pattern);

/* The civetweb request handler; cbdata is the routes_t. Always answers and
 * returns the HTTP status sent. */
int routes_handle(struct mg_connection *conn, void *cbdata);

/* The handler of the metrics listener (--metrics-listen, a context of its
 * own): GET or HEAD /metrics without a token, 404 for every other path, so
 * the internal listener never exposes the API. cbdata is the routes_t. */
int routes_handle_metrics(struct mg_connection *conn, void *cbdata);

/* callbacks.http_error: answers an error civetweb found itself (malformed
 * request line, headers too large ...) with a JSON error body, and counts
 * it. The routes_t must be civetweb's user_data (mg_init_data). */
int routes_civetweb_error(struct mg_connection *conn, int status, const char *msg);

#endif
