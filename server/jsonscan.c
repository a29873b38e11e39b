/* jsonscan.c -- element and depth counts over raw JSON bytes (jsonscan.h). */
#include "server/jsonscan.h"

#include <string.h>

enum {
    S_OUT,  /* between tokens */
    S_WORD, /* inside a bare word (number, true, ...) */
    S_STR,  /* inside a string */
    S_ESC,  /* after a backslash inside a string */
    S_HEX   /* inside the four hex digits of a \u escape */
};

void jsonscan_init(jsonscan_t *s, size_t max_elements, int max_depth) {
    memset(s, 0, sizeof *s);
    s->max_elements = max_elements;
    s->max_depth = max_depth;
    s->state = S_OUT;
    s->lead_bom = 1;
}

/* cJSON skips every byte up to ' ' between tokens, not only JSON's four. */
static int is_ws(unsigned char c) {
    return c <= ' ';
}

/* Can a bare word starting with c become a cJSON value (number, true,
 * false, null)? Other words are junk cJSON refuses without a node. */
static int starts_value(unsigned char c) {
    return c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n';
}

static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};

static int is_delim(unsigned char c) {
    return is_ws(c) || c == '{' || c == '}' || c == '[' || c == ']' || c == ',' || c == ':' || c == '"';
}

/* Counts one element; the verdict when that passes the limit. */
static jsonscan_verdict_t count(jsonscan_t *s) {
    s->elements++;
    if (s->max_elements && s->elements > s->max_elements) s->verdict = JSONSCAN_TOO_MANY;
    return s->verdict;
}

jsonscan_verdict_t jsonscan_feed(jsonscan_t *s, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n && s->verdict == JSONSCAN_OK; i++) {
        unsigned char c = p[i];
        if (s->lead < 3) {
            /* A byte order mark at the very start is skipped, as cJSON does. */
            if (s->lead_bom && c == bom[s->lead]) {
                s->lead++;
                continue;
            }
            if (s->lead > 0 && s->lead_bom) s->state = S_WORD; /* half a mark: a junk word */
            s->lead = 3;
        }
        switch (s->state) {
        case S_STR:
            if (c == '"')
                s->state = S_OUT;
            else if (c == '\\')
                s->state = S_ESC;
            else if (c < 0x20)
                s->control = 1;
            break;
        case S_ESC:
            if (c == 'u') {
                s->state = S_HEX;
                s->hex_seen = 0;
                s->hex_zero = 1;
            } else {
                s->state = S_STR; /* the escaped byte cannot end the string */
            }
            break;
        case S_HEX:
            if (c == '"' || c == '\\') {
                /* Not a hex digit (cJSON refuses the text): the quote still
                 * ends the string, the backslash still escapes. */
                s->state = c == '"' ? S_OUT : S_ESC;
                break;
            }
            if (c != '0') s->hex_zero = 0;
            if (++s->hex_seen == 4) {
                if (s->hex_zero) s->nul = 1;
                s->state = S_STR;
            }
            break;
        case S_WORD:
            if (!is_delim(c)) break;
            s->state = S_OUT;
            /* the delimiter is looked at as a token */
            __attribute__((fallthrough));
        default: /* S_OUT */
            if (is_ws(c) || c == ',' || c == ':') break;
            if (c == '"') {
                s->state = S_STR;
                count(s);
            } else if (c == '{' || c == '[') {
                if (++s->depth > s->depth_max) s->depth_max = s->depth;
                if (s->max_depth > 0 && s->depth > s->max_depth)
                    s->verdict = JSONSCAN_TOO_DEEP;
                else
                    count(s);
            } else if (c == '}' || c == ']') {
                if (s->depth > 0) s->depth--;
            } else {
                s->state = S_WORD;
                if (starts_value(c)) count(s);
            }
            break;
        }
    }
    return s->verdict;
}

jsonscan_verdict_t jsonscan_text(const void *text, size_t n, size_t max_elements, int max_depth,
                                 jsonscan_t *out) {
    jsonscan_t s;
    jsonscan_init(&s, max_elements, max_depth);
    jsonscan_feed(&s, text, n);
    if (out) *out = s;
    return s.verdict;
}
