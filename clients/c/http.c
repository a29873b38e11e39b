/* http.c -- every HTTP call of libcasesync, on libcurl's multi interface
 * (one easy handle in one multi handle, which keeps the connection alive;
 * a call can be started and finished later, see cs__http_start): bounded by timeouts,
 * gzip both ways (answers decoded by libcurl as they stream,
 * CURLOPT_ACCEPT_ENCODING; the decoded bytes are capped at CS_MAX_RESPONSE
 * as they arrive, so a hostile answer cannot inflate without limit; the
 * counters see wire and decoded sizes), progress, and the fault hook.
 *
 * Runs under h->net. h->lock is taken only to read the session and to count.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "clients/c/internal.h"

typedef struct buf {
    char *p;
    size_t n, cap;
} buf_t;

static int buf_add(buf_t *b, const void *data, size_t n, size_t max) {
    if (b->n + n > max) return -1;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

typedef struct xfer {
    casesync_t *h;
    const cs__req_t *rq;
    const unsigned char *body;
    size_t body_len, body_off;
    buf_t down, hdrs;
    uint64_t down_seen; /* response bytes, headers included (fault hook) */
    cs__fault_t fault;  /* the fault armed for this call */
    int fault_hit, app_cancel, too_big;
    int sink_checked, sinking, sink_failed, sink_errno;
    uint64_t sunk;
} xfer_t;

static int fault_down(xfer_t *x, size_t n) {
    x->down_seen += n;
    if (x->fault.armed && x->fault.up < 0 && x->fault.down >= 0 && x->down_seen >= (uint64_t)x->fault.down) {
        x->fault_hit = 1;
        return 1;
    }
    return 0;
}

static size_t on_read(char *dst, size_t size, size_t nitems, void *ud) {
    xfer_t *x = ud;
    size_t room = size * nitems, left = x->body_len - x->body_off;
    if (x->fault.armed && x->fault.up >= 0) {
        if (x->body_off >= (size_t)x->fault.up) {
            x->fault_hit = 1;
            return CURL_READFUNC_ABORT;
        }
        size_t allowed = (size_t)x->fault.up - x->body_off;
        if (left > allowed) left = allowed;
    }
    size_t n = left < room ? left : room;
    memcpy(dst, x->body + x->body_off, n);
    x->body_off += n;
    return n;
}

/* A 200 or 206 body of a request with a sink goes to the file; from the
 * first byte on, decided once per response. */
static int sink_write(xfer_t *x, const char *ptr, size_t len) {
    if (!x->sink_checked) {
        long code = 0;
        curl_easy_getinfo(x->h->curl, CURLINFO_RESPONSE_CODE, &code);
        x->sink_checked = 1;
        x->sinking = code == 206 || code == 200;
        if (code == 200 && x->rq->sink_at_zero &&
            (ftruncate(x->rq->sink_fd, 0) != 0 || lseek(x->rq->sink_fd, 0, SEEK_SET) != 0)) {
            x->sink_failed = 1;
            x->sink_errno = errno;
            return -1;
        }
    }
    if (!x->sinking) return 0;
    for (size_t o = 0; o < len;) {
        ssize_t w = write(x->rq->sink_fd, ptr + o, len - o);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            x->sink_failed = 1;
            x->sink_errno = errno;
            return -1;
        }
        o += (size_t)w;
    }
    x->sunk += len;
    return 1;
}

static size_t on_body(char *ptr, size_t size, size_t n, void *ud) {
    xfer_t *x = ud;
    size_t len = size * n;
    if (fault_down(x, len)) return 0;
    if (x->rq->sink_fd > 0) {
        int s = sink_write(x, ptr, len);
        if (s < 0) return 0;
        if (s > 0) return len;
    }
    if (buf_add(&x->down, ptr, len, CS_MAX_RESPONSE) != 0) {
        x->too_big = 1;
        return 0;
    }
    return len;
}

/* Keeps only the header block of the final answer (not of a 100 Continue). */
static size_t on_header(char *ptr, size_t size, size_t n, void *ud) {
    xfer_t *x = ud;
    size_t len = size * n;
    if (fault_down(x, len)) return 0;
    if (len >= 5 && strncmp(ptr, "HTTP/", 5) == 0) x->hdrs.n = 0;
    if (buf_add(&x->hdrs, ptr, len, 1u << 20) != 0) return 0;
    return len;
}

static int on_xfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    xfer_t *x = ud;
    casesync_t *h = x->h;
    h->prog.phase = x->rq->phase;
    h->prog.down_total = (uint64_t)dltotal;
    h->prog.down_now = (uint64_t)dlnow;
    h->prog.up_total = (uint64_t)ultotal;
    h->prog.up_now = (uint64_t)ulnow;
    if (h->on_progress && h->on_progress(h->userdata, &h->prog) != 0) {
        x->app_cancel = 1;
        return 1;
    }
    return 0;
}

void cs__resp_free(cs__resp_t *rs) {
    if (!rs) return;
    free(rs->body);
    free(rs->headers);
    cJSON_Delete(rs->json);
    memset(rs, 0, sizeof *rs);
}

cJSON *cs__resp_json(cs__resp_t *rs) {
    if (!rs->json && rs->body && rs->len) rs->json = cs__parse(rs->body, rs->len);
    return rs->json;
}

const char *cs__resp_header(const cs__resp_t *rs, const char *name, char *buf, size_t cap) {
    if (!rs->headers || cap == 0) return NULL;
    size_t nl = strlen(name);
    const char *p = rs->headers;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *e = p + ll;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
            size_t vl = (size_t)(e - v);
            if (vl >= cap) vl = cap - 1;
            memcpy(buf, v, vl);
            buf[vl] = 0;
            return buf;
        }
        if (!eol) break;
        p = eol + 1;
    }
    return NULL;
}

void cs__http_close(casesync_t *h) {
    if (h->multi && h->curl) curl_multi_remove_handle(h->multi, h->curl);
    if (h->curl) curl_easy_cleanup(h->curl);
    if (h->multi) curl_multi_cleanup(h->multi);
    h->curl = NULL;
    h->multi = NULL;
}

/* A call in flight: what its callbacks and its end need. */
struct cs__call {
    xfer_t x;
    cs__req_t rq; /* a copy; url points at `path` */
    char *path;
    struct curl_slist *hl;
    char errbuf[CURL_ERROR_SIZE];
};

static void call_free(cs__call_t *call) {
    if (!call) return;
    curl_slist_free_all(call->hl);
    free(call->x.down.p);
    free(call->x.hdrs.p);
    free(call->path);
    free(call);
}

int cs__http_start(casesync_t *h, const cs__req_t *rq, cs__call_t **out, casesync_error_t *err) {
    *out = NULL;
    cs__call_t *call = calloc(1, sizeof *call);
    if (!call) return cs__fail(err, CASESYNC_E_NOMEM, 0, NULL, NULL, "out of memory");
    call->rq = *rq;
    call->path = cs__strdup(rq->url ? rq->url : "");
    if (!call->path) {
        free(call);
        return cs__fail(err, CASESYNC_E_NOMEM, 0, NULL, NULL, "out of memory");
    }
    call->rq.url = call->path;
    rq = &call->rq;
    xfer_t *x = &call->x;
    x->h = h;
    x->rq = rq;
    x->body = rq->body;
    x->body_len = rq->body ? rq->body_len : 0;
    char url[2048], line[2200];

    pthread_mutex_lock(&h->lock);
    if (strncmp(rq->url, "http", 4) == 0)
        snprintf(url, sizeof url, "%s", rq->url);
    else
        snprintf(url, sizeof url, "%s%s", h->server ? h->server : "", rq->url);
    if (rq->auth && h->token) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", h->token);
        call->hl = curl_slist_append(call->hl, line);
    }
    /* A fault on request bytes waits for a request that has some. */
    if (h->fault.armed && (h->fault.phase == 0 || h->fault.phase == rq->phase) &&
        (h->fault.up < 0 || (rq->body && rq->body_len > 0))) {
        x->fault = h->fault;
        h->fault.armed = 0; /* one shot */
    }
    pthread_mutex_unlock(&h->lock);
    if (!h->server && strncmp(rq->url, "http", 4) != 0) {
        call_free(call);
        return cs__fail(err, CASESYNC_E_LOGIN, 0, NULL, NULL, "no server: log in first");
    }

    if (!h->multi && !(h->multi = curl_multi_init())) {
        call_free(call);
        return cs__fail(err, CASESYNC_E_NOMEM, 0, NULL, NULL, "curl_multi_init failed");
    }
    if (!h->curl && !(h->curl = curl_easy_init())) {
        call_free(call);
        return cs__fail(err, CASESYNC_E_NOMEM, 0, NULL, NULL, "curl_easy_init failed");
    }
    CURL *c = h->curl;
    curl_easy_reset(c);
    struct curl_slist *hl = call->hl;
    if (rq->body) {
        snprintf(line, sizeof line, "Content-Type: %s",
                 rq->content_type ? rq->content_type : "application/json");
        hl = curl_slist_append(hl, line);
        if (rq->gzipped) hl = curl_slist_append(hl, "Content-Encoding: gzip");
    } else if (strcmp(rq->method ? rq->method : "GET", "GET") != 0)
        hl = curl_slist_append(hl, "Content-Type:"); /* no form type on an empty POST */
    hl = curl_slist_append(hl, "Expect:");
    for (const char *const *e = rq->headers; e && *e; e++)
        hl = curl_slist_append(hl, *e);
    call->hl = hl;
    call->errbuf[0] = 0;

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "gzip");
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, call->errbuf);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_USERAGENT, h->app_version ? h->app_version : "libcasesync");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, rq->timeout_ms > 0 ? rq->timeout_ms : h->request_timeout_ms);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, h->low_speed_time_s);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    if (h->ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
    const char *m = rq->method ? rq->method : "GET";
    if (rq->head || strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (rq->body || strcmp(m, "POST") == 0 || strcmp(m, "PATCH") == 0 || strcmp(m, "PUT") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, x);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
        if (strcmp(m, "POST") != 0) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, m);
    } else if (strcmp(m, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, m);
    }
    if (curl_multi_add_handle(h->multi, c) != CURLM_OK) {
        call_free(call);
        return cs__fail(err, CASESYNC_E_NOMEM, 0, NULL, NULL, "curl_multi_add_handle failed");
    }
    /* Moves the call as far as it goes without waiting: on a kept-alive
     * connection the request is on its way when this returns. */
    int running = 0;
    curl_multi_perform(h->multi, &running);
    *out = call;
    return 0;
}

/* Runs the call to its end; the result of the transfer. */
static CURLcode run_to_end(casesync_t *h, CURL *c) {
    for (;;) {
        int running = 0, left = 0;
        CURLMcode mc = curl_multi_perform(h->multi, &running);
        if (mc != CURLM_OK) return CURLE_OUT_OF_MEMORY;
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(h->multi, &left)))
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == c) return msg->data.result;
        /* libcurl's own timeouts bound this loop (connect, total, low speed). */
        mc = curl_multi_poll(h->multi, NULL, 0, 1000, NULL);
        if (mc != CURLM_OK) return CURLE_OUT_OF_MEMORY;
    }
}

static int finish_once(casesync_t *h, cs__call_t *call, cs__resp_t *rs, casesync_error_t *err) {
    memset(rs, 0, sizeof *rs);
    const cs__req_t *rq = &call->rq;
    xfer_t *x = &call->x;
    CURL *c = h->curl;
    CURLcode cc = run_to_end(h, c);
    curl_multi_remove_handle(h->multi, c);
    const char *m = rq->method ? rq->method : "GET";
    const char *errbuf = call->errbuf;
    int rc = 0;
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);

    /* Counters first: bytes moved count even when the call failed. The wire
     * count is libcurl's body bytes before decoding; the raw count what the
     * decoder handed to on_body. */
    curl_off_t wire = 0;
    if (curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &wire) != CURLE_OK || wire < 0) wire = 0;
    pthread_mutex_lock(&h->lock);
    h->stats.requests++;
    h->stats.bytes_up_wire += x->body_off;
    h->stats.bytes_up_raw += rq->gzipped ? (x->body_off == x->body_len ? rq->raw_len : 0) : x->body_off;
    h->stats.bytes_down_wire += (uint64_t)wire;
    h->stats.bytes_down_raw += x->down.n;
    if (cc != CURLE_OK) {
        if (x->fault_hit || x->app_cancel)
            h->stats.cancels++;
        else
            h->stats.network_errors++;
    }
    pthread_mutex_unlock(&h->lock);

    if (cc != CURLE_OK) {
        if (x->fault_hit || x->app_cancel)
            rc = cs__fail(err, CASESYNC_E_CANCELED, 0, NULL, NULL, "%s %s: transfer cancelled%s", m, rq->url,
                          x->fault_hit ? " (fault hook)" : "");
        else if (x->too_big)
            rc = cs__fail(err, CASESYNC_E_PROTOCOL, 0, NULL, NULL, "%s %s: answer larger than %u bytes", m,
                          rq->url, CS_MAX_RESPONSE);
        else if (x->sink_failed)
            rc = cs__fail(err, CASESYNC_E_IO, 0, NULL, NULL, "%s %s: writing the file: %s", m, rq->url,
                          strerror(x->sink_errno));
        else if (cc == CURLE_BAD_CONTENT_ENCODING)
            rc = cs__fail(err, CASESYNC_E_PROTOCOL, status, NULL, NULL, "%s %s: bad gzip answer", m, rq->url);
        else if (cc == CURLE_OPERATION_TIMEDOUT)
            rc = cs__fail(err, CASESYNC_E_TIMEOUT, 0, NULL, NULL, "%s %s: %s", m, rq->url,
                          errbuf[0] ? errbuf : curl_easy_strerror(cc));
        else
            rc = cs__fail(err, CASESYNC_E_NETWORK, 0, NULL, NULL, "%s %s: %s", m, rq->url,
                          errbuf[0] ? errbuf : curl_easy_strerror(cc));
        call_free(call);
        return rc;
    }
    rs->status = status;
    rs->sunk = x->sunk;
    rs->sink_failed = x->sink_failed;
    rs->sink_errno = x->sink_errno;
    rs->headers = x->hdrs.p ? x->hdrs.p : cs__strdup("");
    rs->body = x->down.p ? x->down.p : cs__strdup("");
    rs->len = x->down.n;
    x->hdrs.p = x->down.p = NULL; /* now the answer's */
    call_free(call);
    if (!rs->body || !rs->headers) {
        cs__resp_free(rs);
        return cs__fail(err, CASESYNC_E_NOMEM, 0, NULL, NULL, "out of memory");
    }
    return 0;
}

/* A cluster node that cannot write answers 307 with the leader's URL
 * (docs/ha.md). The same request (method, body, token) goes there, to that
 * URL only, at most CS_MAX_REDIRECTS times: curl's own redirect following
 * would drop the Authorization header on a change of host. Only an absolute
 * http(s) URL is followed; the next request goes to the base URL again (the
 * leader may change, the proxy in front knows). */
#define CS_MAX_REDIRECTS 3

int cs__http_finish(casesync_t *h, cs__call_t *call, cs__resp_t *rs, casesync_error_t *err) {
    cs__req_t again = call->rq; /* the call goes with finish_once; its body is the caller's */
    char loc[2048];
    int rc = finish_once(h, call, rs, err);
    for (int hop = 0; rc == 0 && rs->status == 307 && hop < CS_MAX_REDIRECTS; hop++) {
        if (!cs__resp_header(rs, "Location", loc, sizeof loc) ||
            (strncmp(loc, "http://", 7) != 0 && strncmp(loc, "https://", 8) != 0))
            break;
        again.url = loc;
        cs__resp_free(rs);
        if ((rc = cs__http_start(h, &again, &call, err)) == 0) rc = finish_once(h, call, rs, err);
    }
    return rc;
}

void cs__http_abandon(casesync_t *h, cs__call_t *call) {
    if (!call) return;
    /* Removing an unfinished transfer closes its connection. */
    curl_multi_remove_handle(h->multi, h->curl);
    pthread_mutex_lock(&h->lock);
    h->stats.requests++;
    h->stats.cancels++;
    pthread_mutex_unlock(&h->lock);
    call_free(call);
}

int cs__http(casesync_t *h, const cs__req_t *rq, cs__resp_t *rs, casesync_error_t *err) {
    cs__call_t *call;
    memset(rs, 0, sizeof *rs);
    int rc = cs__http_start(h, rq, &call, err);
    return rc ? rc : cs__http_finish(h, call, rs, err);
}

/* ---- error answers ---------------------------------------------------------------------- */

static int wipe_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    int *wipe = ctx;
    if (*wipe) return cs__wipe_locked(h, txn, 0);
    /* Revoked without wipe: the token is useless, the data stays. */
    return cs__meta_put(h, txn, "token", NULL);
}

int cs__http_error(casesync_t *h, cs__resp_t *rs, const char *what, casesync_error_t *err) {
    cJSON *j = cs__resp_json(rs);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const char *code = cs__jstr(e, "code"), *msg = cs__jstr(e, "message"), *field = cs__jstr(e, "field");
    int rc;
    switch (rs->status) {
    case 401:
        if (code && strcmp(code, "device_revoked") == 0) {
            int wipe = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "wipe"));
            cs__events_t ev = {0};
            pthread_mutex_lock(&h->lock);
            int wrc = cs__with_write(h, wipe_txn, &wipe);
            if (wrc == 0) {
                free(h->token);
                h->token = NULL;
                cJSON *n = cJSON_CreateObject();
                cJSON_AddStringToObject(n, "kind", "revoked");
                cJSON_AddBoolToObject(n, "wipe", wipe);
                MDB_txn *txn;
                if (cs__txn_begin(h, 1, &txn) == 0) {
                    if (cs__notice_add(h, txn, n, &ev) == 0)
                        cs__txn_commit(h, txn);
                    else
                        mdb_txn_abort(txn);
                } else {
                    cJSON_Delete(n);
                }
                if (wipe) cs__session_load(h);
                if (wipe) cs__events_add(&ev, CASESYNC_EVENT_WIPED, NULL, NULL, NULL);
            }
            pthread_mutex_unlock(&h->lock);
            cs__events_fire(h, &ev);
            rc = CASESYNC_E_REVOKED;
        } else if (code && strcmp(code, "invalid_credentials") == 0) {
            rc = CASESYNC_E_CREDENTIALS;
        } else {
            rc = CASESYNC_E_LOGIN;
        }
        break;
    case 403: rc = CASESYNC_E_FORBIDDEN; break;
    case 404: rc = CASESYNC_E_NOT_FOUND; break;
    case 422: rc = CASESYNC_E_INVALID; break;
    case 429:
    case 503: {
        char ra[32];
        long secs = cs__resp_header(rs, "Retry-After", ra, sizeof ra) ? strtol(ra, NULL, 10) : 1;
        pthread_mutex_lock(&h->lock);
        h->retry_after = secs > 0 ? secs : 1;
        pthread_mutex_unlock(&h->lock);
        rc = CASESYNC_E_BUSY;
        break;
    }
    default: rc = CASESYNC_E_SERVER; break;
    }
    return cs__fail(err, rc, rs->status, code, field, "%s: HTTP %ld %s%s%s", what, rs->status,
                    code ? code : "", msg ? ": " : "", msg ? msg : "");
}
