/* fuzz_cursor.c -- pull cursors: the seal check, the base64url and JSON
 * decoding behind it, and a pull from whatever a sealed cursor says, through
 * sync_pull() on a temporary engine.
 *
 * Input: one mode byte, then the cursor text.
 *   bit 0     1: the text is sent as it is (a forged or damaged cursor, which
 *             must fail the seal check); 0: the text is a cursor *payload*
 *             (the JSON inside a cursor), sealed here with the engine's own
 *             key by sync/cursor.h, so the decoder behind the seal is reached
 *   bits 1-2  who pulls (fuzz.h: officer, supervisor, admin, auxiliary)
 *   bits 3-7  the page limit, 0..31 (0 is refused as a bad request)
 * The engine's users are u1..u4 in that order, so a seed payload for the
 * officer reads {"u":"u1","gv":2,"s":0,"t":0,"f":0,"x":[]}.
 */
#include <string.h>

#include "sync/cursor.h"
#include "sync/engine.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_CURSOR 16384

/* Seals a payload as pull.c does, with the one codec (sync/cursor.h).
 * Caller frees. An empty or too long payload is sealed as "" (no cursor). */
static char *seal(sync_t *s, const unsigned char *payload, size_t n) {
    char *out = NULL;
    if (n == 0 || n > CURSOR_PAYLOAD_MAX) {
        out = strdup("");
        FUZZ_CHECK(out != NULL);
        return out;
    }
    FUZZ_CHECK(cursor_seal(s->cursor_key, CURSOR_PULL, payload, n, &out) == 0 && out != NULL);
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
    unsigned char *json = NULL;
    size_t jl = 0;
    FUZZ_CHECK(cursor_open(s->cursor_key, CURSOR_PULL, issued, FUZZ_MAX_CURSOR, &json, &jl) == 0);
    /* The same payload opened as the other kind must not open. */
    unsigned char *other = NULL;
    size_t on = 0;
    FUZZ_CHECK(cursor_open(s->cursor_key, CURSOR_CASES, issued, FUZZ_MAX_CURSOR, &other, &on) ==
               SYNC_EBADCURSOR && other == NULL);
    char *again = seal(s, json, jl);
    if (strcmp(again, issued) != 0) {
        fprintf(stderr, "fuzz_cursor: sealing the opened payload again gives another cursor:\n  %s\n  %s\n",
                issued, again);
        abort();
    }
    free(again);
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
