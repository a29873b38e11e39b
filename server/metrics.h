/* metrics.h -- the HTTP edge's counters for GET /metrics: requests by route,
 * method and status code, a latency histogram per route, and body bytes
 * before and after Content-Encoding, written in the Prometheus text format.
 *
 * Caveats:
 * - Counting is lock-free: relaxed C11 atomics in fixed arrays, no lock and
 *   no allocation per request. A scrape reads the counters one by one while
 *   requests go on, so two series of one scrape may be a request apart; each
 *   histogram's _count is computed from its own buckets, so it always equals
 *   its +Inf bucket.
 * - Label values are bounded by construction: routes are slots the caller
 *   names (route patterns, never raw paths); methods outside a fixed list,
 *   and status codes the edge never sends, count as "other".
 * - A leaf module: it includes no other header of the project, and knows
 *   nothing of civetweb or of the route table.
 */
#ifndef CASESYNC_METRICS_H
#define CASESYNC_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Route slots: the caller decides what each slot means (routes.c: one per
 * route pattern, plus long polls and unknown paths). */
#define METRICS_MAX_ROUTES 48
/* Methods: GET HEAD POST PUT PATCH DELETE OPTIONS, and other. */
#define METRICS_METHODS 8
/* Status codes with their own series (metrics_codes), and other. */
#define METRICS_CODES 29
/* Finite latency bucket bounds, in seconds; +Inf comes on top. */
#define METRICS_BUCKETS 15

/* The bounds of the latency buckets, ascending ("le" of each bucket). */
extern const double metrics_bounds[METRICS_BUCKETS];

/* What one answered request adds. */
typedef struct metrics_sample {
    int route;          /* slot, 0 .. METRICS_MAX_ROUTES-1; others are ignored */
    const char *method; /* request method; NULL counts as "other" */
    int status;         /* HTTP status sent */
    uint64_t micros;    /* from reading the request's head to the answer's last byte */
    /* Response body: bytes before Content-Encoding, and bytes sent. */
    uint64_t out_plain, out_wire;
    int out_gzip;
    /* Request body: bytes after inflating, and bytes received. */
    uint64_t in_plain, in_wire;
    int in_gzip;
} metrics_sample_t;

/* The counters. Zero-filled storage is a valid empty set (static, calloc or
 * memset); it lives as long as its owner, and counting never fails. */
typedef struct metrics {
    _Atomic uint64_t requests[METRICS_MAX_ROUTES][METRICS_METHODS][METRICS_CODES];
    _Atomic uint64_t buckets[METRICS_MAX_ROUTES][METRICS_BUCKETS + 1]; /* not cumulative; [last]: +Inf */
    _Atomic uint64_t micros[METRICS_MAX_ROUTES];                       /* latency sum */
    _Atomic uint64_t out_plain[2], out_wire[2];                        /* [0] identity, [1] gzip */
    _Atomic uint64_t in_plain[2], in_wire[2];
} metrics_t;

/* Counts one answered request. Safe from any number of threads at once. */
void metrics_add(metrics_t *m, const metrics_sample_t *s);

/* Writes every series in the Prometheus text format (version 0.0.4): the
 * request counter (only series that counted something), the latency
 * histogram (routes that saw a request) and the four byte counters (always).
 * names[i] is the route label of slot i; a slot whose name is NULL is left
 * out (nnames <= METRICS_MAX_ROUTES). Names must need no escaping (no '"',
 * '\\' or line break). On success returns 0 and *out is a malloc'd
 * NUL-terminated text of *len bytes (the caller frees it); -1 when out of
 * memory, with *out NULL. */
int metrics_write(const metrics_t *m, const char *const *names, int nnames, char **out, size_t *len);

/* The working-day calendar as the caller read it from the schema: the years
 * loaded (provisional[i] non-zero for a provisional year; may be NULL) and
 * the years deadlines counted Monday to Friday for want of a calendar. */
typedef struct metrics_calendar {
    const int *years, *provisional;
    int nyears;
    const int *fallbacks;
    int nfallbacks;
} metrics_calendar_t;

/* Writes casesync_calendar_year{year} (1, or 2 when provisional) and
 * casesync_calendar_fallback{year} 1 in the Prometheus text format. Same
 * contract as metrics_write: 0 and a malloc'd *out of *len bytes, or -1. */
int metrics_write_calendar(const metrics_calendar_t *cal, char **out, size_t *len);

#endif
