/* tus.h -- the header values of tus 1.0.0 uploads and blob reads, parsed and
 * written: byte counts (Upload-Length, Upload-Offset), Upload-Metadata,
 * Upload-Checksum, Tus-Resumable and Content-Type comparisons, Range, and the
 * base64 they are made of. Pure functions of their arguments: no civetweb, no
 * engine, no allocation, no global state; safe from any thread.
 *
 * Caveats:
 * - Header values are NUL-terminated strings as civetweb hands them over; a
 *   NULL value (the header is absent) is accepted everywhere and means
 *   "absent", never a crash.
 * - Byte counts stop at TUS_U53_MAX (2^53-1) so they stay exact in JSON.
 * - tus_b64_decode() accepts standard base64 with or without '=' padding and
 *   ignores the unused low bits of the last character (so "QR" decodes as
 *   "QQ" does); it accepts no blanks, no line breaks and no URL alphabet.
 * - Out-parameters are zeroed (or, for strings, made empty) on failure.
 */
#ifndef CASESYNC_TUS_H
#define CASESYNC_TUS_H

#include <stddef.h>
#include <stdint.h>

#define TUS_VERSION "1.0.0"
#define TUS_U53_MAX 9007199254740991ULL /* largest byte count we read */
#define TUS_META_VALUE_MAX 1024         /* one decoded Upload-Metadata value */
#define TUS_META_HEADER_MAX 8192        /* the whole Upload-Metadata header */
#define TUS_DIGEST_MAX 32               /* a SHA-256 digest */

/* A strict decimal byte count: digits only (at most 16), blanks (space, tab)
 * around them allowed, at most TUS_U53_MAX. 0 and *out, or -1 and *out = 0
 * (NULL, empty, a sign, any other character, too large). */
int tus_parse_u64(const char *s, uint64_t *out);

/* Standard base64 of the n bytes at in (not NUL-terminated; trailing '='
 * optional) into out, which has room for cap bytes. Reads no byte past
 * in[n - 1]. Returns the decoded length, or -1 for a character outside the
 * alphabet, a '=' before the end, a lone last character, or no room. */
long tus_b64_decode(const char *in, size_t n, unsigned char *out, size_t cap);

/* Padded standard base64 of n bytes into out (cap bytes, NUL included).
 * 0, or -1 (and out[0] = 0 when cap > 0) when it does not fit. */
int tus_b64_encode(const unsigned char *in, size_t n, char *out, size_t cap);

/* Upload-Metadata, decoded: the four keys the server reads. A has_* flag is
 * set when the key was sent (its value may then be empty: "key" alone). */
typedef struct tus_meta {
    char sha256[TUS_META_VALUE_MAX + 1], filename[TUS_META_VALUE_MAX + 1], mime[TUS_META_VALUE_MAX + 1],
        record_id[TUS_META_VALUE_MAX + 1];
    int has_sha256, has_filename, has_mime, has_record_id;
} tus_meta_t;

/* "key base64,key base64,key": the four known keys decoded into m, other keys
 * skipped (their values are not checked). h NULL: no metadata, 0. Values must
 * decode to text without NUL bytes, of at most TUS_META_VALUE_MAX bytes; a
 * known key may not repeat; the header may not exceed TUS_META_HEADER_MAX.
 * 0, or -1 with *why set to a static sentence for the client (m zeroed). */
int tus_meta_parse(const char *h, tus_meta_t *m, const char **why);

/* Appends "key base64(value)" to the NUL-terminated list in buf (cap bytes),
 * with a comma first when buf is not empty. A NULL or empty value adds
 * nothing; so does a pair that would not fit whole (buf stays as it was).
 * 0 when added or nothing to add, -1 when it did not fit. */
int tus_meta_add(char *buf, size_t cap, const char *key, const char *value);

/* Upload-Checksum, decoded. algorithm points to a static "sha1" or "sha256". */
typedef struct tus_checksum {
    const char *algorithm;
    unsigned char digest[TUS_DIGEST_MAX];
    size_t digest_len; /* 20 for sha1, 32 for sha256 */
} tus_checksum_t;

/* "sha256 <base64>" or "sha1 <base64>" (spaces around allowed), the digest
 * of exactly the algorithm's length. 0, or -1 with *c zeroed. */
int tus_checksum_parse(const char *h, tus_checksum_t *c);

/* Is the value, without surrounding blanks, `want` (ASCII case-insensitive)?
 * For Tus-Resumable, Content-Encoding, Expect, X-HTTP-Method-Override.
 * 1 or 0; 0 for NULL. */
int tus_header_is(const char *h, const char *want);

/* Is the media type of a Content-Type value (parameters after ';' ignored)
 * `want`, case-insensitively? 1 or 0; 0 for NULL. */
int tus_media_type_is(const char *ct, const char *want);

/* Range of a blob of `size` bytes: one "bytes=a-b", "a-" or "-n". 1 with
 * *from <= *to < size for a satisfiable range; 0 when there is none we
 * honour (absent, several ranges, syntax we do not read: the whole blob is
 * sent); -1 when unsatisfiable (416). *from and *to are set only on 1. */
int tus_range_parse(const char *h, uint64_t size, uint64_t *from, uint64_t *to);

#endif
