/* routes.c -- method + path dispatch, bearer authentication, query parsing,
 * and one small function per endpoint that calls the engine once. */
#include "server/routes.h"
#include "server/route.h"
#include "server/openapi.h"
#include "server/routes_cases.h"
#include "server/routes_workflows.h"
#include "server/routes_upload.h"
#include "server/console.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SEGMENTS 8
#define MAX_SEGMENT 256
#define MAX_ID 128
#define MAX_TOKEN 1024
#define MAX_CURSOR 4096
#define PULL_LIMIT_DEFAULT 200
#define PULL_LIMIT_MAX 1000
#define PULL_WAIT_MAX 60

typedef struct route {
    const char *method;
    const char *pattern; /* '*' segments are ids */
    int flags;           /* R_* */
    route_fn fn;
} route_t;

#define R_OPEN 0  /* no token */
#define R_AUTH 1  /* needs a bearer token */
#define R_SMALL 2 /* a body of at most HTTP_AUTH_MAX_BODY bytes, never encoded:
                     checked from the headers before anything else */

/* Slots of rt->metrics: the index of the first route-table entry with the
 * request's pattern, or one of these two at the end of the array. */
#define SLOT_LONG_POLL (METRICS_MAX_ROUTES - 2) /* pulls with wait > 0 */
#define SLOT_OTHER (METRICS_MAX_ROUTES - 1)     /* no route: unknown paths, refused before routing */
#define LABEL_LONG_POLL "/v1/sync/pull?wait"

/* ======================================================================== */
/* Helpers                                                                  */
/* ======================================================================== */

void routes_init(routes_t *rt, sync_t *sync) {
    memset(rt, 0, sizeof *rt);
    rt->sync = sync;
    rt->limits.max_body_bytes = HTTP_MAX_BODY_BYTES;
    rt->limits.max_inflated_bytes = HTTP_MAX_INFLATED_BYTES;
    rt->limits.max_json_depth = HTTP_MAX_JSON_DEPTH;
    rt->limits.max_json_elements = HTTP_MAX_JSON_ELEMENTS(1000);
    rt->limits.max_inflating_bytes = HTTP_MAX_INFLATING_BYTES;
    rt->started = time(NULL);
    snprintf(rt->time_zone, sizeof rt->time_zone, "%s", ROUTES_TIME_ZONE_DEFAULT);
    rt->utc_offset_min = 8 * 60;
    pthread_mutex_init(&rt->push_mu, NULL);
    pthread_cond_init(&rt->push_cv, NULL);
}

/* Takes a push slot, waiting up to PUSH_SLOT_WAIT_S; 0 when taken. */
/* Cluster mode: the request to the leader with 307 (below). */
static int to_leader(routes_t *rt, http_req_t *req);

static int push_slot_take(routes_t *rt) {
    int cap = rt->limits.max_pushing > 0 ? rt->limits.max_pushing : ROUTES_MAX_PUSHING;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += PUSH_SLOT_WAIT_S;
    int rc = 0;
    pthread_mutex_lock(&rt->push_mu);
    if (rt->pushing >= cap) rt->push_waits++;
    while (rt->pushing >= cap && rc == 0) rc = pthread_cond_timedwait(&rt->push_cv, &rt->push_mu, &until);
    if (rt->pushing < cap) {
        if (++rt->pushing > rt->pushing_max) rt->pushing_max = rt->pushing;
        rc = 0;
    } else {
        rc = -1;
    }
    pthread_mutex_unlock(&rt->push_mu);
    return rc;
}

static void push_slot_give(routes_t *rt) {
    pthread_mutex_lock(&rt->push_mu);
    rt->pushing--;
    pthread_cond_signal(&rt->push_cv);
    pthread_mutex_unlock(&rt->push_mu);
}

/* Sends the engine's answer: its JSON with ok_status, or its error. Takes
 * ownership of out. */
void route_reply(call_t *c, int rc, char *out, const sync_error_t *err, int ok_status) {
    if (rc < 0) {
        free(out);
        http_send_sync_error(c->req, rc, err);
        return;
    }
    if (ok_status == 204) {
        free(out);
        http_send_json(c->req, 204, NULL, 0);
        return;
    }
    if (!out) {
        http_send_errorf(c->req, 500, "internal", NULL, "the engine gave no answer (request %s)",
                         c->req->id);
        return;
    }
    http_send_json(c->req, ok_status, out, strlen(out));
    free(out);
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes n bytes of src into dst (size dst_size) with civetweb's
 * mg_url_decode ('+' stays '+': this is a path, not a form). -1 when it
 * does not fit, or on an encoded NUL. civetweb copies a bad escape ("%zz")
 * as it is; its '%' then matches no route and no id (404). */
static int pct_decode(const char *src, size_t n, char *dst, size_t dst_size) {
    if (n > INT_MAX || dst_size > INT_MAX)
        return -1;
    int len = mg_url_decode(src, (int)n, dst, (int)dst_size, 0);
    if (len < 0 || strlen(dst) != (size_t)len)
        return -1;
    return 0;
}

/* ^[0-9A-Za-z_.:-]{1,128}$ */
static int valid_id(const char *s) {
    size_t n = 0;
    for (; s[n]; n++) {
        char ch = s[n];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              ch == '_' || ch == '.' || ch == ':' || ch == '-'))
            return 0;
        if (n >= MAX_ID)
            return 0;
    }
    return n >= 1;
}

/* Splits a path into decoded segments. Returns their number, or -1 when the
 * path cannot name any route (too many or too long segments, bad escapes). */
static int split_path(const char *path, char seg[MAX_SEGMENTS][MAX_SEGMENT + 1]) {
    int n = 0;
    if (!path || path[0] != '/')
        return -1;
    const char *p = path + 1;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n >= MAX_SEGMENTS || len > MAX_SEGMENT * 3)
            return -1;
        if (pct_decode(p, len, seg[n], MAX_SEGMENT + 1) < 0)
            return -1;
        n++;
        if (!e)
            break;
        p = e + 1;
    }
    return n;
}

/* Does the pattern match the segments? On a match *id is the '*' segment. */
static int pattern_match(const char *pattern, char seg[MAX_SEGMENTS][MAX_SEGMENT + 1], int nseg,
                         const char **id) {
    const char *p = pattern + 1;
    int i = 0;
    *id = NULL;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (i >= nseg)
            return 0;
        if (len == 1 && p[0] == '*') {
            if (!valid_id(seg[i]))
                return 0;
            *id = seg[i];
        } else if (strlen(seg[i]) != len || memcmp(seg[i], p, len) != 0) {
            return 0;
        }
        i++;
        if (!e)
            break;
        p = e + 1;
    }
    return i == nseg;
}

/* Strict decimal integer in [lo, hi]: digits only, no sign, no spaces. */
static int parse_int(const char *s, size_t len, long lo, long hi, int *out) {
    long v = 0;
    if (len == 0 || len > 9 || strlen(s) != len)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* A query parameter, URL-decoded: its length, -1 when absent, -2 when longer
 * than dst allows or when it decodes to a NUL byte. */
int route_query(const http_req_t *r, const char *name, char *dst, size_t dst_size) {
    const char *qs = r->ri ? r->ri->query_string : NULL;
    dst[0] = '\0';
    if (!qs || !*qs)
        return -1;
    int n = mg_get_var(qs, strlen(qs), name, dst, dst_size);
    if (n == -1)
        return -1;
    if (n < 0 || (size_t)n >= dst_size || strlen(dst) != (size_t)n) {
        dst[0] = '\0';
        return -2;
    }
    return n;
}

/* Optional integer query parameter with a default. 0, or -1 after answering
 * 400 bad_request. */
int route_query_int(call_t *c, const char *name, int dflt, int lo, int hi, int *out) {
    char buf[32];
    int n = route_query(c->req, name, buf, sizeof buf);
    if (n == -1) {
        *out = dflt;
        return 0;
    }
    if (n < 0 || parse_int(buf, (size_t)n, lo, hi, out) < 0) {
        http_send_errorf(c->req, 400, "bad_request", name, "%s must be an integer from %d to %d",
                         name, lo, hi);
        return -1;
    }
    return 0;
}

/* Reads the JSON body under lim or answers the error. */
static cJSON *body_json(call_t *c, const http_limits_t *lim) {
    http_error_t e;
    cJSON *body = NULL;
    if (http_read_json(c->req, lim, &body, &e) < 0) {
        http_send_error(c->req, &e);
        return NULL;
    }
    return body;
}

/* Reads the JSON body or answers the error. */
cJSON *route_body_json(call_t *c) { return body_json(c, &c->rt->limits); }

/* A body read before authentication (PROTOCOL.md v2): at most
 * HTTP_AUTH_MAX_BODY bytes, never encoded; a chunked body is cut at that
 * size while it is read. */
cJSON *route_body_json_small(call_t *c) {
    http_limits_t lim = c->rt->limits;
    lim.max_body_bytes = lim.max_inflated_bytes = HTTP_AUTH_MAX_BODY;
    lim.no_gzip = 1;
    return body_json(c, &lim);
}

/* The key the login failure limit counts under: the peer address, or, when
 * the peer is the trusted proxy, the address that proxy appended last to
 * X-Forwarded-For (entries further left are whatever the client claimed). */
void route_client_key(const call_t *c, char *out, size_t out_size) {
    const struct mg_request_info *ri = c->req->ri;
    snprintf(out, out_size, "%s", ri ? ri->remote_addr : "");
    if (!ri || !c->rt->trusted_proxy[0] || strcmp(ri->remote_addr, c->rt->trusted_proxy) != 0)
        return;
    const char *xff = mg_get_header(c->req->conn, "X-Forwarded-For");
    if (!xff)
        return;
    const char *b = strrchr(xff, ',');
    b = b ? b + 1 : xff;
    while (*b == ' ' || *b == '\t')
        b++;
    size_t n = 0;
    while (b[n] && b[n] != ' ' && b[n] != '\t')
        n++;
    if (n == 0 || n >= out_size || n > 64)
        return;
    for (size_t i = 0; i < n; i++) {
        char ch = b[i];
        if (!(hexval(ch) >= 0 || ch == '.' || ch == ':' || ch == '[' || ch == ']'))
            return; /* not an address: keep the peer */
    }
    memcpy(out, b, n);
    out[n] = '\0';
}

/* The token of "Authorization: Bearer <token>", or NULL. */
static const char *bearer_token(const http_req_t *r, char *buf, size_t buf_size) {
    const char *h = mg_get_header(r->conn, "Authorization");
    if (!h)
        return NULL;
    while (*h == ' ')
        h++;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return NULL;
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t n = 0;
    while (h[n] && h[n] != ' ' && h[n] != '\t') {
        char ch = h[n];
        /* RFC 6750 b64token */
        if (!((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '+' || ch == '/' ||
              ch == '='))
            return NULL;
        n++;
    }
    for (size_t i = n; h[i]; i++)
        if (h[i] != ' ' && h[i] != '\t')
            return NULL;
    if (n == 0 || n >= buf_size)
        return NULL;
    memcpy(buf, h, n);
    buf[n] = '\0';
    return buf;
}

/* Does an If-None-Match value name this entity tag (weak comparison)? */
static int etag_matches(const char *inm, const char *etag) {
    if (!inm || !etag)
        return 0;
    if (strncmp(etag, "W/", 2) == 0)
        etag += 2;
    size_t elen = strlen(etag);
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *b = p;
        while (*p && *p != ',')
            p++;
        const char *e = p;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e - b == 1 && *b == '*')
            return 1;
        if (e - b >= 2 && strncmp(b, "W/", 2) == 0)
            b += 2;
        if ((size_t)(e - b) == elen && memcmp(b, etag, elen) == 0)
            return 1;
    }
    return 0;
}

/* ======================================================================== */
/* Endpoints                                                                */
/* ======================================================================== */

static void do_login(call_t *c) {
    sync_error_t err = {0};
    char key[128], *out = NULL;
    cJSON *body = route_body_json_small(c);
    if (!body)
        return;
    route_client_key(c, key, sizeof key);
    int rc = sync_login(c->rt->sync, body, key, &out, &err);
    cJSON_Delete(body);
    route_reply(c, rc, out, &err, 200);
}

static void do_logout(call_t *c) {
    sync_error_t err = {0};
    int rc = sync_logout(c->rt->sync, c->p, &err);
    route_reply(c, rc, NULL, &err, 204);
}

static void do_me(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    int rc = sync_me(c->rt->sync, c->p, &out, &err);
    route_reply(c, rc, out, &err, 200);
}

static void do_user_create(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    cJSON *body = route_body_json(c);
    if (!body)
        return;
    int rc = sync_user_create(c->rt->sync, c->p, body, &out, &err);
    cJSON_Delete(body);
    route_reply(c, rc, out, &err, 201);
}

static void do_user_list(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    int rc = sync_user_list(c->rt->sync, c->p, &out, &err);
    route_reply(c, rc, out, &err, 200);
}

static void do_user_update(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    cJSON *body = route_body_json(c);
    if (!body)
        return;
    int rc = sync_user_update(c->rt->sync, c->p, c->id, body, &out, &err);
    cJSON_Delete(body);
    route_reply(c, rc, out, &err, 200);
}

static void do_schema(call_t *c) {
    const schema_t *sc = sync_schema(c->rt->sync);
    const char *text = sc ? schema_text(sc) : NULL;
    if (!text) {
        http_send_errorf(c->req, 503, "unavailable", NULL, "the schema is not loaded");
        return;
    }
    const char *etag = schema_etag(sc);
    if (etag && *etag) {
        http_add_header(c->req, "ETag", etag);
        if (etag_matches(mg_get_header(c->req->conn, "If-None-Match"), etag)) {
            http_send_json(c->req, 304, NULL, 0);
            return;
        }
    }
    http_send_json(c->req, 200, text, schema_text_len(sc));
}

static void do_push(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    int replay = 0;
    if (push_slot_take(c->rt) != 0) {
        http_add_header(c->req, "Retry-After", "2");
        http_send_errorf(c->req, 503, "unavailable", NULL, "too many pushes at once; retry the same changeset");
        return;
    }
    cJSON *body = route_body_json(c);
    if (!body) {
        push_slot_give(c->rt);
        return;
    }
    int rc = sync_push(c->rt->sync, c->p, body, &out, &replay, &err);
    cJSON_Delete(body);
    push_slot_give(c->rt);
    if (rc >= 0 && replay)
        http_add_header(c->req, "Idempotent-Replay", "true");
    route_reply(c, rc, out, &err, 200);
}

static void do_pull(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL, *cursor = NULL;
    int limit, wait;
    if (route_query_int(c, "limit", PULL_LIMIT_DEFAULT, 1, PULL_LIMIT_MAX, &limit) < 0 ||
        route_query_int(c, "wait", 0, 0, PULL_WAIT_MAX, &wait) < 0)
        return;
    if (!(cursor = malloc(MAX_CURSOR + 1))) {
        http_send_errorf(c->req, 503, "unavailable", NULL, "out of memory");
        return;
    }
    if (route_query(c->req, "cursor", cursor, MAX_CURSOR + 1) == -2) {
        free(cursor);
        http_send_errorf(c->req, 400, "bad_cursor", "cursor", "the cursor is not one this server gave");
        return;
    }
    routes_t *rt = c->rt;
    int counted = 0;
    if (wait > 0)
        c->slot = SLOT_LONG_POLL; /* its latency is mostly the wait: kept apart */
    if (wait > 0 && rt->max_waiting > 0) {
        counted = 1;
        if (__atomic_add_fetch(&rt->waiting, 1, __ATOMIC_SEQ_CST) > rt->max_waiting) {
            __atomic_sub_fetch(&rt->waiting, 1, __ATOMIC_SEQ_CST);
            free(cursor);
            http_add_header(c->req, "Retry-After", "2");
            http_send_errorf(c->req, 503, "unavailable", NULL,
                             "too many long polls are waiting; retry, or pull with wait=0");
            return;
        }
    }
    int rc = sync_pull(rt->sync, c->p, cursor, limit, wait, &out, &err);
    if (counted)
        __atomic_sub_fetch(&rt->waiting, 1, __ATOMIC_SEQ_CST);
    free(cursor);
    if (rc == SYNC_EBEHIND && to_leader(rt, c->req))
        return;
    route_reply(c, rc, out, &err, 200);
}

static void do_check(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    cJSON *body = route_body_json(c);
    if (!body)
        return;
    int rc = sync_check(c->rt->sync, c->p, body, &out, &err);
    cJSON_Delete(body);
    route_reply(c, rc, out, &err, 200);
}

static void do_case(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    int rc = sync_case_get(c->rt->sync, c->p, c->id, &out, &err);
    route_reply(c, rc, out, &err, 200);
}

static void do_case_history(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    int rc = sync_case_history(c->rt->sync, c->p, c->id, &out, &err);
    route_reply(c, rc, out, &err, 200);
}

static void do_conflicts(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL, state[16];
    const char *which = NULL;
    int n = route_query(c->req, "state", state, sizeof state);
    if (n != -1) {
        if (n >= 0 && (strcmp(state, "open") == 0 || strcmp(state, "resolved") == 0)) {
            which = state;
        } else {
            http_send_errorf(c->req, 400, "bad_request", "state", "state must be open or resolved");
            return;
        }
    }
    int rc = sync_conflicts(c->rt->sync, c->p, which, &out, &err);
    route_reply(c, rc, out, &err, 200);
}

static void do_conflict_resolve(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    cJSON *body = route_body_json(c);
    if (!body)
        return;
    int rc = sync_conflict_resolve(c->rt->sync, c->p, c->id, body, &out, &err);
    cJSON_Delete(body);
    route_reply(c, rc, out, &err, 200);
}

static void do_rejections(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    int rc = sync_rejections(c->rt->sync, c->p, &out, &err);
    route_reply(c, rc, out, &err, 200);
}

static void do_devices(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    int rc = sync_devices(c->rt->sync, c->p, &out, &err);
    route_reply(c, rc, out, &err, 200);
}

static void do_device_revoke(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    cJSON *body = route_body_json(c);
    if (!body)
        return;
    int rc = sync_device_revoke(c->rt->sync, c->p, c->id, body, &out, &err);
    cJSON_Delete(body);
    route_reply(c, rc, out, &err, 200);
}

static void do_device_release(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    int rc = sync_device_release(c->rt->sync, c->p, c->id, &out, &err);
    route_reply(c, rc, out, &err, 200);
}

static void do_audit_verify(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    /* Supervisors and admins (PROTOCOL.md v2): a full walk of the chain is
     * costly, and nobody in the field needs it. */
    if (c->p->role != ROLE_SUPERVISOR && c->p->role != ROLE_ADMIN) {
        http_send_errorf(c->req, 403, "forbidden", NULL, "the audit check is for supervisors and admins");
        return;
    }
    int rc = sync_audit_verify(c->rt->sync, &out, &err);
    route_reply(c, rc, out, &err, 200);
}

static void do_healthz(call_t *c) {
    static const char ok[] = "{\"ok\":true}";
    http_send_json(c->req, 200, ok, sizeof ok - 1);
}

static void do_readyz(call_t *c) {
    static const char ready[] = "{\"ready\":true}";
    if (!sync_ready(c->rt->sync)) {
        http_send_errorf(c->req, 503, "unavailable", NULL, "the store is not accepting writes");
        return;
    }
    http_send_json(c->req, 200, ready, sizeof ready - 1);
}

static void route_labels(char labels[METRICS_MAX_ROUTES][64], const char *names[METRICS_MAX_ROUTES]);

#ifndef CASESYNC_VERSION /* the Makefile's build/version.h; "dev" elsewhere (fuzz builds) */
#define CASESYNC_VERSION "dev"
#define CASESYNC_COMMIT "unknown"
#endif

/* The exposition, to whoever got this far: an admin on the public port, or
 * anyone on the metrics listener. */
static void metrics_answer(call_t *c) {
    char gauges[3072], labels[METRICS_MAX_ROUTES][64];
    const char *names[METRICS_MAX_ROUTES];
    char *edge = NULL, *engine = NULL, *calendar = NULL, *all = NULL;
    size_t edge_len = 0, calendar_len = 0;
    routes_t *rt = c->rt;
    pthread_mutex_lock(&rt->push_mu);
    int pushing = rt->pushing, pushing_max = rt->pushing_max;
    long push_waits = rt->push_waits;
    pthread_mutex_unlock(&rt->push_mu);
    int n = snprintf(gauges, sizeof gauges,
                     "# HELP casesync_http_requests_in_flight HTTP requests being answered.\n"
                     "# TYPE casesync_http_requests_in_flight gauge\n"
                     "casesync_http_requests_in_flight %ld\n"
                     "# HELP casesync_long_polls_waiting Pulls waiting for a change (wait > 0).\n"
                     "# TYPE casesync_long_polls_waiting gauge\n"
                     "casesync_long_polls_waiting %ld\n"
                     "# HELP casesync_ready 1 when the store is open and accepts writes.\n"
                     "# TYPE casesync_ready gauge\n"
                     "casesync_ready %d\n"
                     "# HELP casesync_uptime_seconds Seconds since the server started.\n"
                     "# TYPE casesync_uptime_seconds gauge\n"
                     "casesync_uptime_seconds %lld\n"
                     "# HELP casesync_pushes_in_flight Pushes being read, checked or applied now.\n"
                     "# TYPE casesync_pushes_in_flight gauge\n"
                     "casesync_pushes_in_flight %d\n"
                     "# HELP casesync_pushes_in_flight_max Most pushes in flight at once since start (cap: max_pushing).\n"
                     "# TYPE casesync_pushes_in_flight_max gauge\n"
                     "casesync_pushes_in_flight_max %d\n"
                     "# HELP casesync_push_slot_waits_total Pushes that waited for a slot before their body was read.\n"
                     "# TYPE casesync_push_slot_waits_total counter\n"
                     "casesync_push_slot_waits_total %ld\n"
                     "# HELP casesync_inflating_bytes Inflated request body bytes held now (cap: max_inflating_bytes).\n"
                     "# TYPE casesync_inflating_bytes gauge\n"
                     "casesync_inflating_bytes %zu\n"
                     "# HELP casesync_build_info The running build: its version and commit.\n"
                     "# TYPE casesync_build_info gauge\n"
                     "casesync_build_info{version=\"%s\",commit=\"%s\"} 1\n",
                     __atomic_load_n(&rt->in_flight, __ATOMIC_RELAXED),
                     __atomic_load_n(&rt->waiting, __ATOMIC_RELAXED), sync_ready(rt->sync) ? 1 : 0,
                     (long long)(time(NULL) - rt->started), pushing, pushing_max, push_waits,
                     http_inflating_bytes(), CASESYNC_VERSION, CASESYNC_COMMIT);
    route_labels(labels, names);
    if (n < 0 || (size_t)n >= sizeof gauges ||
        metrics_write(&rt->metrics, names, METRICS_MAX_ROUTES, &edge, &edge_len) < 0) {
        http_send_errorf(c->req, 503, "unavailable", NULL, "out of memory");
        goto done;
    }
    /* The engine's figures follow the edge's; without them the edge's still go out. */
    if (sync_metrics(rt->sync, &engine) < 0)
        engine = NULL;
    size_t engine_len = engine ? strlen(engine) : 0;
    /* The working-day calendar: years loaded, and years that fell back. */
    const schema_t *sc = sync_schema(rt->sync);
    int years[64], prov[64], fallbacks[64];
    time_t now = time(NULL);
    schema_calendar_check(sc, (int64_t)now * 1000);
    metrics_calendar_t mc = {.years = years, .provisional = prov, .fallbacks = fallbacks};
    mc.nyears = schema_calendar_years(sc, years, 64);
    mc.nyears = mc.nyears > 64 ? 64 : mc.nyears;
    for (int i = 0; i < mc.nyears; i++) prov[i] = schema_calendar_year_kind(sc, years[i]) == 2;
    mc.nfallbacks = schema_calendar_fallbacks(sc, fallbacks, 64);
    mc.nfallbacks = mc.nfallbacks > 64 ? 64 : mc.nfallbacks;
    if (metrics_write_calendar(&mc, &calendar, &calendar_len) < 0) calendar_len = 0;
    if (!(all = malloc(edge_len + (size_t)n + engine_len + calendar_len + 1))) {
        http_send_errorf(c->req, 503, "unavailable", NULL, "out of memory");
        goto done;
    }
    memcpy(all, edge, edge_len);
    memcpy(all + edge_len, gauges, (size_t)n);
    if (engine_len)
        memcpy(all + edge_len + (size_t)n, engine, engine_len);
    if (calendar_len)
        memcpy(all + edge_len + (size_t)n + engine_len, calendar, calendar_len);
    all[edge_len + (size_t)n + engine_len + calendar_len] = '\0';
    http_send(c->req, 200, "text/plain; version=0.0.4; charset=utf-8", all,
              edge_len + (size_t)n + engine_len + calendar_len);
done:
    free(all);
    free(engine);
    free(calendar);
    free(edge);
}

static void do_metrics(call_t *c) {
    if (c->p->role != ROLE_ADMIN) {
        http_send_errorf(c->req, 403, "forbidden", NULL,
                         "metrics are for admins here; scrapers use --metrics-listen");
        return;
    }
    metrics_answer(c);
}

/* GET /v1/openapi.yaml: the API's description, no token needed (it holds
 * nothing a client could not read in docs/). */
static void do_openapi(call_t *c) {
    size_t len;
    const char *doc = openapi_yaml(&len);
    http_send(c->req, 200, "application/yaml; charset=utf-8", doc, len);
}

static const route_t route_table[] = {
    {"POST", "/v1/auth/login", R_OPEN | R_SMALL, do_login},
    {"POST", "/v1/auth/logout", R_AUTH | R_SMALL, do_logout},
    {"GET", "/v1/me", R_AUTH, do_me},
    {"POST", "/v1/admin/users", R_AUTH, do_user_create},
    {"GET", "/v1/admin/users", R_AUTH, do_user_list},
    {"PATCH", "/v1/admin/users/*", R_AUTH, do_user_update},
    {"GET", "/v1/schema", R_AUTH, do_schema},
    {"POST", "/v1/sync/push", R_AUTH, do_push},
    {"GET", "/v1/sync/pull", R_AUTH, do_pull},
    {"POST", "/v1/sync/check", R_AUTH, do_check},
    {"GET", "/v1/cases", R_AUTH, cases_route_list},
    {"GET", "/v1/stats", R_AUTH, cases_route_stats},
    {"GET", "/v1/export", R_AUTH, cases_route_export},
    {"GET", "/v1/supervision", R_AUTH, wf_route_supervision},
    {"POST", "/v1/parties/cases", R_AUTH, wf_route_party_cases},
    {"GET", "/v1/parties/repeat", R_AUTH, wf_route_repeat},
    {"POST", "/v1/hotline/import", R_AUTH, wf_route_hotline_import},
    {"GET", "/v1/cases/*", R_AUTH, do_case},
    {"GET", "/v1/cases/*/history", R_AUTH, do_case_history},
    {"GET", "/v1/conflicts", R_AUTH, do_conflicts},
    {"POST", "/v1/conflicts/*/resolve", R_AUTH, do_conflict_resolve},
    {"GET", "/v1/rejections", R_AUTH, do_rejections},
    {"GET", "/v1/audit/verify", R_AUTH, do_audit_verify},
    {"GET", "/v1/devices", R_AUTH, do_devices},
    {"POST", "/v1/devices/*/revoke", R_AUTH, do_device_revoke},
    {"POST", "/v1/admin/devices/*/release", R_AUTH, do_device_release},
    {"OPTIONS", "/v1/uploads", R_OPEN, upload_route_options},
    {"POST", "/v1/uploads", R_AUTH, upload_route_create},
    {"GET", "/v1/uploads/*", R_AUTH, upload_route_status},
    {"PATCH", "/v1/uploads/*", R_AUTH, upload_route_patch},
    {"DELETE", "/v1/uploads/*", R_AUTH, upload_route_delete},
    {"POST", "/v1/uploads/*", R_AUTH, upload_route_override},
    {"GET", "/v1/blobs/*", R_AUTH, upload_route_blob},
    {"GET", "/v1/evidence/missing", R_AUTH, upload_route_missing},
    {"GET", "/healthz", R_OPEN, do_healthz},
    {"GET", "/readyz", R_OPEN, do_readyz},
    {"GET", "/metrics", R_AUTH, do_metrics},
    {"GET", "/console", R_OPEN, console_route_redirect},
    {"GET", "/console/", R_OPEN, console_route_index},
    {"GET", "/console/*", R_OPEN, console_route_file},
    {"POST", "/console/api/login", R_OPEN | R_SMALL, console_route_login},
    {"POST", "/console/api/logout", R_AUTH | R_SMALL, console_route_logout},
    {"GET", "/console/api/session", R_AUTH, console_route_session},
    {"GET", "/console/api/people", R_AUTH, console_route_people},
    {"GET", "/v1/openapi.yaml", R_OPEN, do_openapi},
};
#define NROUTES (sizeof route_table / sizeof route_table[0])

int routes_table_entry(size_t i, const char **method, const char **pattern) {
    if (i >= NROUTES)
        return -1;
    *method = route_table[i].method;
    *pattern = route_table[i].pattern;
    return 0;
}
_Static_assert(NROUTES <= SLOT_LONG_POLL, "METRICS_MAX_ROUTES leaves no slot for every route");

/* ======================================================================== */
/* Metrics                                                                  */
/* ======================================================================== */

/* The slot of route_table[i]: the first entry with the same pattern, so one
 * path shares its series across methods. */
static int route_slot(size_t i) {
    for (size_t j = 0; j < i; j++)
        if (strcmp(route_table[j].pattern, route_table[i].pattern) == 0)
            return (int)j;
    return (int)i;
}

/* The route label of every slot: the pattern with "{id}" for '*'; NULL for
 * slots no request is counted in. */
static void route_labels(char labels[METRICS_MAX_ROUTES][64], const char *names[METRICS_MAX_ROUTES]) {
    for (int i = 0; i < METRICS_MAX_ROUTES; i++)
        names[i] = NULL;
    for (size_t i = 0; i < NROUTES; i++) {
        if (route_slot(i) != (int)i)
            continue;
        size_t o = 0;
        for (const char *p = route_table[i].pattern; *p && o + 5 < sizeof labels[i]; p++) {
            if (*p == '*') {
                memcpy(labels[i] + o, "{id}", 4);
                o += 4;
            } else {
                labels[i][o++] = *p;
            }
        }
        labels[i][o] = '\0';
        names[i] = labels[i];
    }
    names[SLOT_LONG_POLL] = LABEL_LONG_POLL;
    names[SLOT_OTHER] = "other";
}

/* Counts one answered request in rt->metrics. */
static void count_request(routes_t *rt, const http_req_t *req, int slot) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us = (int64_t)(now.tv_sec - req->start.tv_sec) * 1000000 +
                 (int64_t)(now.tv_nsec - req->start.tv_nsec) / 1000;
    metrics_sample_t m = {
        .route = slot,
        .method = req->ri ? req->ri->request_method : NULL,
        .status = req->status,
        .micros = us > 0 ? (uint64_t)us : 0,
        .out_plain = req->gzip_out ? req->bytes_plain : req->bytes,
        .out_wire = req->bytes,
        .out_gzip = req->gzip_out,
        .in_plain = req->body_plain,
        .in_wire = req->body_wire,
        .in_gzip = req->gzip_in,
    };
    /* A route that reads its body itself (tus PATCH): with a Content-Length
     * read to its end, that many bytes came, and nothing inflates them. */
    if (!req->body_counted && req->body_consumed && req->ri && req->ri->content_length > 0) {
        m.in_plain = m.in_wire = (uint64_t)req->ri->content_length;
        m.in_gzip = 0;
    }
    metrics_add(&rt->metrics, &m);
}

/* ======================================================================== */
/* Dispatch                                                                 */
/* ======================================================================== */

static void add_allow(char *allow, size_t size, const char *method) {
    size_t n = strlen(method), len = strlen(allow);
    for (const char *p = allow; (p = strstr(p, method)) != NULL; p += n)
        if ((p == allow || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
            return; /* already listed */
    snprintf(allow + len, size - len, "%s%s", len ? ", " : "", method);
}

/* Answers the request; returns its slot in rt->metrics. */
static int dispatch(routes_t *rt, http_req_t *req) {
    char seg[MAX_SEGMENTS][MAX_SEGMENT + 1];
    const struct mg_request_info *ri = req->ri;
    const char *method = ri && ri->request_method ? ri->request_method : "";
    const char *id = NULL, *match_id = NULL;
    const route_t *hit = NULL;
    char allow[128] = "";
    int slot = SLOT_OTHER;

    int nseg = ri ? split_path(ri->local_uri, seg) : -1;
    if (nseg < 0) {
        http_send_errorf(req, 404, "not_found", NULL, "no such resource");
        return slot;
    }
    const char *want = req->head ? "GET" : method;
    for (size_t i = 0; i < NROUTES; i++) {
        if (!pattern_match(route_table[i].pattern, seg, nseg, &id))
            continue;
        if (!allow[0])
            slot = route_slot(i); /* 405 and OPTIONS count under the path's first pattern */
        add_allow(allow, sizeof allow, route_table[i].method);
        if (strcmp(route_table[i].method, "GET") == 0)
            add_allow(allow, sizeof allow, "HEAD");
        if (!hit && strcmp(route_table[i].method, want) == 0) {
            hit = &route_table[i];
            match_id = id;
            slot = route_slot(i);
        }
    }
    if (!allow[0]) {
        http_send_errorf(req, 404, "not_found", NULL, "no such resource");
        return slot;
    }
    add_allow(allow, sizeof allow, "OPTIONS");
    if (!hit) {
        http_add_header(req, "Allow", allow);
        if (strcmp(method, "OPTIONS") == 0)
            http_send_json(req, 204, NULL, 0);
        else
            http_send_errorf(req, 405, "method_not_allowed", NULL, "%s is not allowed here; allowed: %s",
                             method[0] && strlen(method) < 16 ? method : "this method", allow);
        return slot;
    }

    req->route = hit->pattern;
    call_t c = {rt, req, NULL, match_id, slot};
    if (hit->flags & R_SMALL) {
        http_error_t e;
        if (http_small_body_check(mg_get_header(req->conn, "Content-Encoding"), ri->content_length,
                                  HTTP_AUTH_MAX_BODY, &e) < 0) {
            http_send_error(req, &e);
            return slot;
        }
    }
    if (!(hit->flags & R_AUTH)) {
        hit->fn(&c);
        return c.slot;
    }
    char token[MAX_TOKEN + 1];
    if (!bearer_token(req, token, sizeof token)) {
        /* The console's session cookie, with its CSRF check (server/console.h). */
        int ck = console_cookie_token(req, method, token, sizeof token);
        if (ck < 0)
            return slot;
        if (ck == 0) {
            http_send_errorf(req, 401, "unauthenticated", NULL,
                             "this call needs an Authorization: Bearer token");
            return slot;
        }
    }
    sync_principal_t p;
    sync_error_t err = {0};
    memset(&p, 0, sizeof p);
    int rc = sync_authenticate(rt->sync, token, &p, &err);
    memset(token, 0, sizeof token);
    if (rc == SYNC_EBEHIND && to_leader(rt, req)) {
        sync_principal_clear(&p);
        return slot;
    }
    if (rc < 0) {
        http_send_sync_error(req, rc, &err);
        sync_principal_clear(&p);
        return slot;
    }
    c.p = &p;
    snprintf(req->log_user, sizeof req->log_user, "%s", p.user_id);
    snprintf(req->log_device, sizeof req->log_device, "%s", p.device_id);
    hit->fn(&c);
    sync_principal_clear(&p);
    return c.slot;
}

long routes_max_waiting(int threads) {
    int keep = threads / 4 > 2 ? threads / 4 : 2;
    return threads - keep > 1 ? threads - keep : 1;
}

int routes_drain(routes_t *rt, int timeout_ms) {
    struct timespec tick = {0, 10 * 1000 * 1000};
    __atomic_store_n(&rt->draining, 1, __ATOMIC_SEQ_CST);
    for (int waited = 0; __atomic_load_n(&rt->in_flight, __ATOMIC_SEQ_CST) > 0; waited += 10) {
        if (waited >= timeout_ms)
            return -1;
        nanosleep(&tick, NULL);
    }
    return 0;
}

/* Cluster mode: a follower sends every write (any method but GET, HEAD and
 * OPTIONS) to the leader with 307 (method and body kept by the client),
 * Location the leader's advertised URL + the same path and query, or answers
 * 503 + Retry-After while no leader is known. 1 when it answered. Reads stay
 * here (a read that would write, such as a pull's mark, just does not
 * record it on a follower), except the state of a tus upload (GET and HEAD
 * /v1/uploads/{id}): an unfinished upload's bytes are on the leader only, so
 * only the leader can say where to resume. */
follower_action_t routes_follower_action(const char *method, const char *path) {
    if (!method || strcmp(method, "OPTIONS") == 0)
        return FOLLOWER_SERVES;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return FOLLOWER_TO_LEADER;
    /* An unfinished upload's bytes are on the leader only. */
    int upload_state = path && strncmp(path, "/v1/uploads/", 12) == 0 && path[12];
    return upload_state ? FOLLOWER_TO_LEADER : FOLLOWER_SERVES;
}

static int follower_redirect(routes_t *rt, http_req_t *req) {
    const struct mg_request_info *ri = req->ri;
    if (routes_follower_action(ri ? ri->request_method : NULL, ri ? ri->local_uri : NULL) == FOLLOWER_SERVES)
        return 0;
    return to_leader(rt, req);
}

/* The redirect itself, for any method: also for a read that this follower
 * cannot answer yet (SYNC_EBEHIND: a token it has not applied, a pull
 * cursor ahead of it). 0 when this node is no follower (nothing sent). */
static int to_leader(routes_t *rt, http_req_t *req) {
    const struct mg_request_info *ri = req->ri;
    char leader[256];
    if (sync_node_role(rt->sync, leader, sizeof leader) != SYNC_NODE_FOLLOWER)
        return 0;
    mg_disable_connection_keep_alive(req->conn);
    if (!leader[0]) {
        http_add_header(req, "Retry-After", "2");
        http_send_errorf(req, 503, "unavailable", NULL, "this node follows and no leader is known yet");
        return 1;
    }
    const char *uri = ri->local_uri_raw ? ri->local_uri_raw : ri->local_uri;
    const char *qs = ri->query_string;
    char *loc = malloc(strlen(leader) + strlen(uri ? uri : "") + (qs ? strlen(qs) + 1 : 0) + 1);
    cJSON *body = cJSON_CreateObject();
    char *text = NULL;
    if (loc) {
        sprintf(loc, "%s%s%s%s", leader, uri ? uri : "", qs ? "?" : "", qs ? qs : "");
        if (body && cJSON_AddStringToObject(body, "leader", leader))
            text = cJSON_PrintUnformatted(body);
    }
    if (!loc || !text || http_add_header(req, "Location", loc) != 0) {
        http_add_header(req, "Retry-After", "2");
        http_send_errorf(req, 503, "unavailable", NULL, "out of memory");
    } else {
        http_send_json(req, 307, text, strlen(text));
    }
    free(loc);
    free(text);
    cJSON_Delete(body);
    return 1;
}

int routes_handle(struct mg_connection *conn, void *cbdata) {
    routes_t *rt = cbdata;
    http_req_t req;
    http_req_begin(&req, conn);
    int slot = SLOT_OTHER;
    __atomic_add_fetch(&rt->in_flight, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&rt->draining, __ATOMIC_SEQ_CST)) {
        mg_disable_connection_keep_alive(conn);
        http_send_errorf(&req, 503, "unavailable", NULL, "the server is shutting down");
    } else if (!follower_redirect(rt, &req)) {
        slot = dispatch(rt, &req);
    }
    if (!req.sent)
        http_send_errorf(&req, 500, "internal", NULL, "no answer (request %s)", req.id);
    count_request(rt, &req, slot);
    __atomic_sub_fetch(&rt->in_flight, 1, __ATOMIC_SEQ_CST);
    http_req_end(&req);
    return req.status > 0 && req.status < 1000 ? req.status : 500;
}

/* The metrics listener: GET or HEAD of exactly /metrics, no token; every
 * other request is 404 (405 for another method on /metrics). */
static int dispatch_metrics(routes_t *rt, http_req_t *req) {
    const struct mg_request_info *ri = req->ri;
    const char *method = ri && ri->request_method ? ri->request_method : "";
    int slot = SLOT_OTHER;
    if (!ri || !ri->local_uri || strcmp(ri->local_uri, "/metrics") != 0) {
        http_send_errorf(req, 404, "not_found", NULL, "this listener serves /metrics only");
        return slot;
    }
    for (size_t i = 0; i < NROUTES; i++)
        if (strcmp(route_table[i].pattern, "/metrics") == 0)
            slot = route_slot(i);
    if (!req->head && strcmp(method, "GET") != 0) {
        http_add_header(req, "Allow", "GET, HEAD");
        http_send_errorf(req, 405, "method_not_allowed", NULL, "only GET and HEAD here");
        return slot;
    }
    call_t c = {rt, req, NULL, NULL, slot};
    metrics_answer(&c);
    return c.slot;
}

int routes_handle_metrics(struct mg_connection *conn, void *cbdata) {
    routes_t *rt = cbdata;
    http_req_t req;
    http_req_begin(&req, conn);
    mg_disable_connection_keep_alive(conn); /* a scrape every few seconds: no idle connections */
    int slot = dispatch_metrics(rt, &req);
    if (!req.sent)
        http_send_errorf(&req, 500, "internal", NULL, "no answer (request %s)", req.id);
    count_request(rt, &req, slot);
    http_req_end(&req);
    return req.status > 0 && req.status < 1000 ? req.status : 500;
}

int routes_civetweb_error(struct mg_connection *conn, int status, const char *msg) {
    http_req_t req;
    if (!conn)
        return 1;
    routes_t *rt = mg_get_user_data(mg_get_context(conn));
    http_req_begin(&req, conn);
    http_send_protocol_error(&req, status, msg);
    if (rt)
        count_request(rt, &req, SLOT_OTHER);
    http_req_end(&req);
    return 0;
}
