/* metrics.c -- lock-free request counters of the HTTP edge and their
 * Prometheus text. */
#include "server/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double metrics_bounds[METRICS_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                0.5,   1,      2.5,   5,    10,    30,   60};

/* The same bounds in microseconds, so counting needs no floating point. */
static const uint64_t bounds_us[METRICS_BUCKETS] = {1000,    2500,    5000,     10000,    25000,
                                                    50000,   100000,  250000,   500000,   1000000,
                                                    2500000, 5000000, 10000000, 30000000, 60000000};

static const char *const methods[METRICS_METHODS] = {"GET",   "HEAD",   "POST",    "PUT",
                                                     "PATCH", "DELETE", "OPTIONS", "other"};

/* Every status the edge sends (its routes, the status table of http.c,
 * civetweb's own errors); slot 0 is "other". */
static const int codes[METRICS_CODES] = {0,   200, 201, 204, 206, 304, 400, 401, 403, 404,
                                         405, 408, 409, 410, 411, 412, 413, 414, 415, 416,
                                         417, 422, 429, 431, 460, 500, 501, 503, 505};

static const char *const encodings[2] = {"identity", "gzip"};

static int method_slot(const char *method) {
    if (method)
        for (int i = 0; i < METRICS_METHODS - 1; i++)
            if (strcmp(method, methods[i]) == 0) return i;
    return METRICS_METHODS - 1;
}

static int code_slot(int status) {
    for (int i = 1; i < METRICS_CODES; i++)
        if (codes[i] == status) return i;
    return 0;
}

static void bump(_Atomic uint64_t *c, uint64_t n) {
    if (n) atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t load(const _Atomic uint64_t *c) {
    return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

void metrics_add(metrics_t *m, const metrics_sample_t *s) {
    if (!m || !s || s->route < 0 || s->route >= METRICS_MAX_ROUTES) return;
    int b = 0;
    while (b < METRICS_BUCKETS && s->micros > bounds_us[b])
        b++;
    bump(&m->requests[s->route][method_slot(s->method)][code_slot(s->status)], 1);
    bump(&m->buckets[s->route][b], 1);
    bump(&m->micros[s->route], s->micros);
    bump(&m->out_plain[s->out_gzip ? 1 : 0], s->out_plain);
    bump(&m->out_wire[s->out_gzip ? 1 : 0], s->out_wire);
    bump(&m->in_plain[s->in_gzip ? 1 : 0], s->in_plain);
    bump(&m->in_wire[s->in_gzip ? 1 : 0], s->in_wire);
}

/* ======================================================================== */
/* Text                                                                     */
/* ======================================================================== */

/* A growing text; `failed` sticks after the first allocation failure. */
typedef struct text {
    char *p;
    size_t len, cap;
    int failed;
} text_t;

static void put(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text_t *t, const char *fmt, ...) {
    va_list ap;
    if (t->failed) return;
    for (;;) {
        size_t room = t->cap - t->len;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t ncap = t->cap ? t->cap * 2 : 8192;
        while (ncap - t->len <= (size_t)n)
            ncap *= 2;
        char *np = realloc(t->p, ncap);
        if (!np) {
            t->failed = 1;
            return;
        }
        t->p = np;
        t->cap = ncap;
    }
}

static void family(text_t *t, const char *name, const char *type, const char *help) {
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int metrics_write(const metrics_t *m, const char *const *names, int nnames, char **out, size_t *len) {
    text_t t = {NULL, 0, 0, 0};
    *out = NULL;
    *len = 0;
    if (nnames > METRICS_MAX_ROUTES) nnames = METRICS_MAX_ROUTES;

    family(&t, "casesync_http_requests_total", "counter",
           "HTTP requests answered, by route pattern, method and status code.");
    for (int r = 0; r < nnames; r++) {
        if (!names[r]) continue;
        for (int me = 0; me < METRICS_METHODS; me++) {
            for (int c = 0; c < METRICS_CODES; c++) {
                uint64_t n = load(&m->requests[r][me][c]);
                if (!n) continue;
                if (codes[c])
                    put(&t, "casesync_http_requests_total{route=\"%s\",method=\"%s\",code=\"%d\"} %llu\n",
                        names[r], methods[me], codes[c], (unsigned long long)n);
                else
                    put(&t, "casesync_http_requests_total{route=\"%s\",method=\"%s\",code=\"other\"} %llu\n",
                        names[r], methods[me], (unsigned long long)n);
            }
        }
    }

    family(&t, "casesync_http_request_duration_seconds", "histogram",
           "Seconds from reading a request's head to its answer's last byte, by route pattern.");
    for (int r = 0; r < nnames; r++) {
        uint64_t cum = 0, counts[METRICS_BUCKETS + 1];
        if (!names[r]) continue;
        /* Read once, so the buckets printed add up to the _count printed. */
        for (int b = 0; b <= METRICS_BUCKETS; b++)
            cum += counts[b] = load(&m->buckets[r][b]);
        if (!cum) continue;
        cum = 0;
        for (int b = 0; b < METRICS_BUCKETS; b++) {
            cum += counts[b];
            put(&t, "casesync_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n", names[r],
                metrics_bounds[b], (unsigned long long)cum);
        }
        cum += counts[METRICS_BUCKETS];
        uint64_t us = load(&m->micros[r]);
        put(&t,
            "casesync_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
            "casesync_http_request_duration_seconds_sum{route=\"%s\"} %llu.%06llu\n"
            "casesync_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
            names[r], (unsigned long long)cum, names[r], (unsigned long long)(us / 1000000),
            (unsigned long long)(us % 1000000), names[r], (unsigned long long)cum);
    }

    const struct {
        const char *name, *help;
        const _Atomic uint64_t *pair; /* [0] identity, [1] gzip */
    } bytes[] = {
        {"casesync_http_response_bytes_total",
         "Response body bytes before Content-Encoding, by the encoding they were sent in.", m->out_plain},
        {"casesync_http_response_wire_bytes_total",
         "Response body bytes as sent (after Content-Encoding), by encoding.", m->out_wire},
        {"casesync_http_request_bytes_total",
         "Request body bytes after inflating Content-Encoding, by the encoding they came in.", m->in_plain},
        {"casesync_http_request_wire_bytes_total",
         "Request body bytes as received (before inflating), by encoding.", m->in_wire},
    };
    for (size_t i = 0; i < sizeof bytes / sizeof bytes[0]; i++) {
        family(&t, bytes[i].name, "counter", bytes[i].help);
        for (int e = 0; e < 2; e++)
            put(&t, "%s{encoding=\"%s\"} %llu\n", bytes[i].name, encodings[e],
                (unsigned long long)load(&bytes[i].pair[e]));
    }

    if (t.failed || !t.p) {
        free(t.p);
        return -1;
    }
    *out = t.p;
    *len = t.len;
    return 0;
}

int metrics_write_calendar(const metrics_calendar_t *cal, char **out, size_t *len) {
    size_t cap = 512 + (size_t)(cal->nyears + cal->nfallbacks) * 96;
    char *b = malloc(cap);
    int n;
    size_t o = 0;
    *out = NULL;
    *len = 0;
    if (!b) return -1;
    n = snprintf(b, cap,
                 "# HELP casesync_calendar_year Years of the working-day calendar loaded (1; 2 when provisional).\n"
                 "# TYPE casesync_calendar_year gauge\n");
    o = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < cal->nyears && o < cap; i++) {
        n = snprintf(b + o, cap - o, "casesync_calendar_year{year=\"%d\"} %d\n", cal->years[i],
                     cal->provisional && cal->provisional[i] ? 2 : 1);
        o += n > 0 ? (size_t)n : 0;
    }
    if (o < cap) {
        n = snprintf(b + o, cap - o,
                     "# HELP casesync_calendar_fallback Years counted Monday to Friday for want of a calendar file.\n"
                     "# TYPE casesync_calendar_fallback gauge\n");
        o += n > 0 ? (size_t)n : 0;
    }
    for (int i = 0; i < cal->nfallbacks && o < cap; i++) {
        n = snprintf(b + o, cap - o, "casesync_calendar_fallback{year=\"%d\"} 1\n", cal->fallbacks[i]);
        o += n > 0 ? (size_t)n : 0;
    }
    if (o >= cap) {
        free(b);
        return -1;
    }
    *out = b;
    *len = o;
    return 0;
}
