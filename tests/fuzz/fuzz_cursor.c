/* fuzz_cursor.c -- pull cursors: the seal check, the base64url and JSON
 * decoding behind it, and a pull from whatever a sealed cursor says, through
 * sync_pull() on a temporary engine.
 *
 * Input: one mode byte, then the cursor text.
 *   bit 0     1: the text is sent as it is (a forged or damaged cursor, which
 *             must fail the seal check); 0: the text is a cursor *payload*
 *             (the JSON inside a cursor), sealed here with the engine's own
 *             key, so the decoder behind the seal is reached
 *   bits 1-2  who pulls (fuzz.h: officer, supervisor, admin, auxiliary)
 *   bits 3-7  the page limit, 0..31 (0 is refused as a bad request)
 * The engine's users are u1..u4 in that order, so a seed payload for the
 * officer reads {"u":"u1","gv":2,"s":0,"t":0,"f":0,"x":[]}.
 */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sync/engine.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_CURSOR 16384
#define TAG_HEX 32 /* pull.c: CURSOR_TAG_HEX */

/* Seals a payload as pull.c does: base64url without padding, '.', then the
 * first 16 bytes of HMAC-SHA256 over the base64url text, in hex. Caller frees. */
static char *seal(sync_t *s, const unsigned char *payload, size_t n) {
    char *out = malloc(4 * ((n + 2) / 3) + TAG_HEX + 3);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    FUZZ_CHECK(out != NULL);
    int bl = EVP_EncodeBlock((unsigned char *)out, payload, (int)n);
    while (bl > 0 && out[bl - 1] == '=')
        bl--;
    for (int i = 0; i < bl; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    out[bl] = '.';
    HMAC(EVP_sha256(), s->cursor_key, (int)strlen(s->cursor_key), (const unsigned char *)out, (size_t)bl, md,
         &mdlen);
    for (int i = 0; i < TAG_HEX / 2; i++)
        sprintf(out + bl + 1 + 2 * i, "%02x", md[i]);
    out[bl + 1 + TAG_HEX] = 0;
    return out;
}

/* The cursor of a pull's answer, malloc'd, or NULL. */
static char *cursor_of(const char *answer) {
    cJSON *o = cJSON_Parse(answer);
    const char *c = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "cursor"));
    char *copy = c && *c ? strdup(c) : NULL;
    FUZZ_CHECK(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "changes")));
    cJSON_Delete(o);
    return copy;
}

/* Once per engine: a cursor the engine issued must carry the seal computed
 * here, or this target would only ever test the seal check. */
static void check_seal_matches(sync_t *s) {
    static sync_t *checked;
    sync_error_t err = {0};
    char *out = NULL;
    if (checked == s) return;
    int rc = sync_pull(s, fuzz_principal(FUZZ_OFFICER), NULL, 1000, 0, &out, &err);
    FUZZ_CHECK(rc == 0);
    char *issued = cursor_of(out);
    free(out);
    FUZZ_CHECK(issued != NULL && strchr(issued, '.') != NULL);
    char *dot = strrchr(issued, '.');
    size_t bl = (size_t)(dot - issued);
    /* Decode the payload back and seal it again. */
    char *b64 = malloc(bl + 4);
    unsigned char *json = malloc(bl + 4);
    FUZZ_CHECK(b64 && json);
    memcpy(b64, issued, bl);
    for (size_t i = 0; i < bl; i++) {
        if (b64[i] == '-')
            b64[i] = '+';
        else if (b64[i] == '_')
            b64[i] = '/';
    }
    while (bl % 4)
        b64[bl++] = '=';
    int jl = EVP_DecodeBlock(json, (unsigned char *)b64, (int)bl);
    FUZZ_CHECK(jl > 0);
    while (jl > 0 && json[jl - 1] == 0)
        jl--; /* the decoder pads with zero bytes */
    char *again = seal(s, json, (size_t)jl);
    if (strcmp(again, issued) != 0) {
        fprintf(stderr, "fuzz_cursor: the seal here no longer matches sync/pull.c's:\n  %s\n  %s\n", issued,
                again);
        abort();
    }
    free(again);
    free(b64);
    free(json);
    free(issued);
    checked = s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > FUZZ_MAX_CURSOR) return 0;
    sync_t *s = fuzz_engine();
    check_seal_matches(s);
    int raw = data[0] & 1, who = (data[0] >> 1) & 3, limit = data[0] >> 3;
    const sync_principal_t *p = fuzz_principal(who);
    char *cursor;
    if (raw) {
        cursor = malloc(size);
        FUZZ_CHECK(cursor != NULL);
        memcpy(cursor, data + 1, size - 1);
        cursor[size - 1] = 0;
    } else {
        cursor = seal(s, data + 1, size - 1);
    }

    sync_error_t err = {0};
    char *out = (char *)"unset";
    int rc = sync_pull(s, p, cursor, limit, 0, &out, &err);
    if (rc != 0) {
        FUZZ_CHECK(out == NULL && err.code == rc);
        FUZZ_CHECK(rc == SYNC_EBADCURSOR || rc == SYNC_EEXPIRED || rc == SYNC_EBADREQ);
        /* A cursor that is not ours never gets past the seal. */
        if (raw && rc == SYNC_EBADCURSOR) FUZZ_CHECK(strcmp(err.field, "cursor") == 0);
        free(cursor);
        return 0;
    }
    /* A forged cursor must not pass; an issued one must always pass again. */
    FUZZ_CHECK(!raw || *cursor == 0);
    char *next = cursor_of(out);
    free(out);
    FUZZ_CHECK(next != NULL);
    rc = sync_pull(s, p, next, limit, 0, &out, &err);
    FUZZ_CHECK(rc == 0);
    free(out);
    free(next);
    free(cursor);
    return 0;
}
