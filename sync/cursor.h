/* cursor.h -- the one codec of the opaque paging cursors the server hands
 * out: pull cursors (GET /v1/sync/pull, pull.c) and case-list cursors
 * (GET /v1/cases, query.c). A leaf module: OpenSSL and the engine's error
 * codes (sync.h), no store, no JSON.
 *
 * Caveats, first:
 * - Authenticated, not encrypted. The payload is base64url that anyone holding
 *   the cursor can read: a pull cursor shows its user id, seqs and feed keys,
 *   a case-list cursor the last index key walked (a unit, a status, a grid, a
 *   record id). Never put a secret in a payload.
 * - The key is the store's cursor key: 64 hex characters drawn once from the
 *   OS's random source (RAND_bytes, 32 bytes) and kept in the store's meta
 *   (engine.c), used as a 64-byte HMAC key. Whoever can read the store or a
 *   backup of it can forge cursors; a restored backup keeps the key, so
 *   cursors stay valid across a restore (pull answers 410 for a cursor that is
 *   ahead of the restored store).
 * - The MAC is HMAC-SHA256, truncated to its first 16 bytes (128 bits, 32
 *   lowercase hex digits), compared in constant time (CRYPTO_memcmp) before
 *   anything of the payload is decoded.
 * - Kinds are told apart by the MAC input, not by a visible field: a pull
 *   cursor's tag is over its base64url text, a case-list cursor's over
 *   "cases:" and then the text. base64url has no ':', so no text sealed as one
 *   kind ever opens as the other. These are the inputs the server sealed with
 *   before this module existed: cursors phones hold stay valid.
 * - No expiry and no user inside the codec: binding and staleness are the
 *   caller's. pull.c puts the user id in the payload and refuses another
 *   user's cursor; its seq against the store decides 410 cursor_expired.
 *   query.c's cursors are not bound to a user: they only position a walk
 *   that the caller's own scope filters again.
 * - Never fails open. A failed allocation or a MAC that cannot be computed is
 *   an error (SYNC_ENOMEM): no cursor is sealed with a partial, zero or
 *   missing tag, and no cursor is opened without its tag checked.
 *
 * Text: base64url(payload) without padding, '.', the 32 hex digits of the tag.
 */
#ifndef CASESYNC_CURSOR_H
#define CASESYNC_CURSOR_H

#include <stddef.h>

typedef enum cursor_kind {
    CURSOR_PULL = 0,  /* GET /v1/sync/pull: a JSON object (pull.c) */
    CURSOR_CASES = 1, /* GET /v1/cases: a kind byte and an index key (query.c) */
} cursor_kind_t;

#define CURSOR_TAG_HEX 32       /* hex digits of the tag */
#define CURSOR_PAYLOAD_MAX 8192 /* bytes of payload sealed or opened at most */

/* Seals n bytes of payload (1 <= n <= CURSOR_PAYLOAD_MAX) as a cursor of kind
 * under key (a NUL-terminated string, not empty). 0 with *out the cursor text,
 * malloc'd and NUL-terminated: the caller frees it. SYNC_EBADREQ for an empty
 * or too long payload; SYNC_EIO for an empty key; SYNC_ENOMEM when an
 * allocation or the MAC failed. On failure *out is NULL. */
int cursor_seal(const char *key, cursor_kind_t kind, const void *payload, size_t n, char **out);

/* Opens text as a cursor of kind under key. 0 with *payload malloc'd (n
 * bytes, then a NUL not counted in *n): the caller frees it.
 * SYNC_EBADCURSOR when text is not a cursor of this kind sealed under this key:
 * longer than max_text, no '.', a tag of the wrong length, a tag that does
 * not match (forged, altered, truncated, the other kind), or a payload that
 * is not base64url or is empty. SYNC_EIO for an empty key; SYNC_ENOMEM when
 * an allocation or the MAC failed. On failure *payload is NULL and *n 0. */
int cursor_open(const char *key, cursor_kind_t kind, const char *text, size_t max_text,
                unsigned char **payload, size_t *n);

#endif
