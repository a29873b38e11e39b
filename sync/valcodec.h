/* valcodec.h -- the stored form of JSON values (store format v2): MessagePack.
 *
 * Caveats first:
 *  - This is the one codec of every structured value in the store: records,
 *    users, tokens, devices, changesets, conflicts, rejections, evidence,
 *    uploads and blob rows, all through store_put_json/store_get_json (and
 *    the few cursor walks that decode a value in place call
 *    valcodec_decode). Audit entries are not values of this codec: they are
 *    stored as their RFC 8785 canonical JSON bytes, the bytes their hash
 *    covers (docs/audit.md). meta, idx, feeds, closed and record_log hold
 *    raw bytes (text, BE64, flags), never this form.
 *  - The decoder also takes a value stored as JSON text (a v1 store, or one
 *    written before values became binary): a value whose first byte is '{'
 *    is JSON. A MessagePack map never starts with that byte (fixmap is
 *    0x80-0x8f, map16/map32 0xde/0xdf). `casesync migrate` rewrites such
 *    values in binary; until then they read as before.
 *  - Only objects are stored. Numbers: a cJSON number whose value is an
 *    integer within +-2^53 (and not -0) is written as a MessagePack integer
 *    (the smallest that holds it), any other as float64; both read back as
 *    the same double. Strings are written as the UTF-8 bytes cJSON holds.
 *    Key order is kept. Nesting deeper than 64 is refused both ways.
 *
 * The layout is MessagePack as specified at msgpack.org, so any MessagePack
 * reader decodes a stored value; docs/audit.md describes the store format.
 */
#ifndef CASESYNC_VALCODEC_H
#define CASESYNC_VALCODEC_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* Encodes v (an object) into a new buffer the caller frees; NULL when memory
 * ran out or v is not an object or holds what is never stored (raw JSON,
 * nesting deeper than 64). */
void *valcodec_encode(const cJSON *v, size_t *len);
/* Decodes stored bytes (MessagePack, or JSON text as above) into a new
 * object; NULL when they are neither, or memory ran out. */
cJSON *valcodec_decode(const void *data, size_t len);
/* Is this value in the binary form? (migrate rewrites the others.) */
int valcodec_is_binary(const void *data, size_t len);

#endif
