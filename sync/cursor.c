/* cursor.c -- sealing and opening opaque cursors (see cursor.h). */
#include "sync/cursor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sync/fault.h"
#include "sync/sync.h"

#define CURSOR_KEY_MAX 256

/* What goes before the text in the MAC input of each kind (cursor.h). */
static const char *label_of(cursor_kind_t kind) {
    return kind == CURSOR_CASES ? "cases:" : "";
}

/* The tag of text[0..len) as a cursor of kind: CURSOR_TAG_HEX hex digits and
 * a NUL into out. 0, or SYNC_ENOMEM (out then holds no tag at all). */
static int tag_of(const char *key, cursor_kind_t kind, const char *text, size_t len,
                  char out[CURSOR_TAG_HEX + 1]) {
    const char *label = label_of(kind);
    size_t ll = strlen(label);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned char *in = fault_malloc(ll + len + 1);
    out[0] = 0;
    if (!in) return SYNC_ENOMEM;
    memcpy(in, label, ll);
    memcpy(in + ll, text, len);
    const unsigned char *r = HMAC(EVP_sha256(), key, (int)strlen(key), in, ll + len, md, &mdlen);
    OPENSSL_cleanse(in, ll + len);
    free(in);
    if (!r || mdlen < CURSOR_TAG_HEX / 2) return SYNC_ENOMEM;
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < CURSOR_TAG_HEX / 2; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[CURSOR_TAG_HEX] = 0;
    return 0;
}

static int key_ok(const char *key) {
    return key && *key && strlen(key) <= CURSOR_KEY_MAX;
}

int cursor_seal(const char *key, cursor_kind_t kind, const void *payload, size_t n, char **out) {
    *out = NULL;
    if (!key_ok(key)) return SYNC_EIO;
    if (!payload || n == 0 || n > CURSOR_PAYLOAD_MAX) return SYNC_EBADREQ;
    size_t b64 = 4 * ((n + 2) / 3);
    char *text = fault_malloc(b64 + 1 + CURSOR_TAG_HEX + 1);
    if (!text) return SYNC_ENOMEM;
    int bl = EVP_EncodeBlock((unsigned char *)text, payload, (int)n);
    while (bl > 0 && text[bl - 1] == '=')
        bl--;
    for (int i = 0; i < bl; i++) {
        if (text[i] == '+')
            text[i] = '-';
        else if (text[i] == '/')
            text[i] = '_';
    }
    text[bl] = '.';
    int rc = tag_of(key, kind, text, (size_t)bl, text + bl + 1);
    if (rc != 0) {
        free(text);
        return rc;
    }
    *out = text;
    return 0;
}

static int is_b64url(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int cursor_open(const char *key, cursor_kind_t kind, const char *text, size_t max_text,
                unsigned char **payload, size_t *n) {
    char tag[CURSOR_TAG_HEX + 1], *b64 = NULL;
    unsigned char *raw = NULL;
    int rc = SYNC_EBADCURSOR;
    *payload = NULL;
    *n = 0;
    if (!key_ok(key)) return SYNC_EIO; /* no key: nothing can be checked, nothing opens */
    if (!text) return SYNC_EBADCURSOR;
    size_t len = strnlen(text, max_text + 1);
    const char *dot = len <= max_text ? strrchr(text, '.') : NULL;
    if (!dot || strlen(dot + 1) != CURSOR_TAG_HEX) return SYNC_EBADCURSOR;
    size_t bl = (size_t)(dot - text);
    if (bl < 2 || bl % 4 == 1 || bl > 4 * ((CURSOR_PAYLOAD_MAX + 2) / 3)) return SYNC_EBADCURSOR;
    if ((rc = tag_of(key, kind, text, bl, tag)) != 0) return rc;
    if (CRYPTO_memcmp(tag, dot + 1, CURSOR_TAG_HEX) != 0) return SYNC_EBADCURSOR;

    /* The tag holds: decode. */
    rc = SYNC_ENOMEM;
    size_t pad = (4 - bl % 4) % 4;
    if (!(b64 = fault_malloc(bl + pad + 1)) || !(raw = fault_malloc(3 * ((bl + pad) / 4) + 1))) goto fail;
    rc = SYNC_EBADCURSOR;
    for (size_t i = 0; i < bl; i++) {
        char c = text[i];
        if (!is_b64url(c)) goto fail;
        b64[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    memset(b64 + bl, '=', pad);
    b64[bl + pad] = 0;
    int rl = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)(bl + pad));
    if (rl < 0 || (size_t)rl < pad + 1) goto fail;
    rl -= (int)pad;
    raw[rl] = 0;
    free(b64);
    *payload = raw;
    *n = (size_t)rl;
    return 0;
fail:
    free(b64);
    free(raw);
    return rc;
}
