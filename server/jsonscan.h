/* jsonscan.h -- a streaming pass over raw JSON bytes that counts elements and
 * nesting before any tree is built, so a body of millions of tiny values
 * ("[0,0,0,...", a few MB inflated from a few KB of gzip) is refused after a
 * bounded number of bytes instead of becoming millions of cJSON nodes.
 *
 * Caveats:
 * - It is a counter, not a validator: it never rejects bad JSON as such
 *   (cJSON does that later), it only bounds what cJSON could build from the
 *   bytes. On any text cJSON accepts, `elements` is exactly the number of
 *   cJSON nodes plus the number of object member names, and `depth_max` the
 *   deepest nesting of arrays and objects.
 * - Elements are counted where they start: '{', '[', the opening '"' of a
 *   string (member names included) and the first byte of a bare word that
 *   can start a value ('-', a digit, 't', 'f', 'n'). Brackets and quotes
 *   inside strings do not count; a backslash escapes the next byte. Like
 *   cJSON, every byte up to ' ' counts as whitespace between tokens, and a
 *   UTF-8 byte order mark at the very start is skipped.
 * - The verdict is sticky: after TOO_MANY or TOO_DEEP, later feeds consume
 *   nothing. The bytes may arrive in pieces of any size (split anywhere, even
 *   inside an escape); the result is the same as for one piece.
 * - Pure: no allocation, no I/O, no locale. A leaf module: includes no
 *   project header.
 */
#ifndef CASESYNC_JSONSCAN_H
#define CASESYNC_JSONSCAN_H

#include <stddef.h>

typedef enum jsonscan_verdict {
    JSONSCAN_OK = 0,       /* within the limits so far */
    JSONSCAN_TOO_MANY = 1, /* more than max_elements elements */
    JSONSCAN_TOO_DEEP = 2  /* arrays/objects nested deeper than max_depth */
} jsonscan_verdict_t;

/* Scanner state: fill with jsonscan_init(); read the public counters any
 * time. Lives wherever the caller puts it (no heap). */
typedef struct jsonscan {
    size_t max_elements;
    int max_depth;
    size_t elements; /* counted so far */
    int depth;       /* open arrays/objects now */
    int depth_max;   /* deepest seen */
    int control;     /* a raw control byte (< 0x20) inside a string */
    int nul;         /* a \u0000 escape: C strings would cut the value short */
    jsonscan_verdict_t verdict;
    /* private */
    unsigned char state;
    unsigned char hex_seen; /* hex digits of a \u escape read so far */
    unsigned char hex_zero; /* all of them were '0' */
    unsigned char lead;     /* leading bytes looked at (3: done) */
    unsigned char lead_bom; /* they match a byte order mark so far */
} jsonscan_t;

/* Starts a scan with these limits (max_elements 0 or max_depth <= 0: no
 * limit of that kind). */
void jsonscan_init(jsonscan_t *s, size_t max_elements, int max_depth);

/* Scans the next n bytes. Returns the verdict so far: OK, or the first limit
 * passed (then the remaining bytes were not looked at). data may be NULL
 * when n is 0. */
jsonscan_verdict_t jsonscan_feed(jsonscan_t *s, const void *data, size_t n);

/* One-shot: init, feed all of text. *out (may be NULL) gets the final state. */
jsonscan_verdict_t jsonscan_text(const void *text, size_t n, size_t max_elements, int max_depth,
                                 jsonscan_t *out);

#endif
