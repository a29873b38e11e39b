/* jcs.h -- RFC 8785 JSON Canonicalization Scheme (JCS) of a cJSON tree: the
 * bytes the audit chain hashes (docs/audit.md).
 *
 * Caveats first:
 * - Numbers are IEEE-754 doubles, as cJSON holds them; integers beyond 2^53
 *   are whatever double cJSON parsed them into. NaN and infinities have no
 *   JSON form: jcs_print() refuses them (JCS_ENOTFINITE), as RFC 8785 does.
 * - Object members are sorted by their names as UTF-16 code units. Members
 *   with equal names (RFC 8785 forbids them; cJSON keeps both) stay in their
 *   given order, so the output is still a function of the tree.
 * - Strings are expected to be UTF-8 (the HTTP edge refuses other bodies). A
 *   byte that starts no valid sequence sorts as the code point of its value
 *   and is copied through unchanged.
 * - Leaf library: includes no casesync header.
 */
#ifndef CASESYNC_JCS_H
#define CASESYNC_JCS_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define JCS_OK 0
#define JCS_ENOMEM (-1)
#define JCS_ENOTFINITE (-2)
/* Room for any number jcs_number() writes, with its NUL. */
#define JCS_NUMBER_MAX 32

/* The canonical text of v into *out (malloc'd, NUL-terminated, owned by the
 * caller; *len its length without the NUL). JCS_OK, or an error with *out
 * NULL and *len 0. */
int jcs_print(const cJSON *v, char **out, size_t *len);

/* d as ECMAScript's Number.prototype.toString prints it (the shortest digits
 * that read back as d; "0" for -0). Returns the length written into out, or
 * 0 when d is NaN or infinite (out is then ""). */
size_t jcs_number(double d, char out[JCS_NUMBER_MAX]);

/* <0, 0, >0 as a sorts before, with or after b by UTF-16 code units (both
 * NUL-terminated UTF-8). */
int jcs_key_cmp(const char *a, const char *b);

#endif
