/* fuzz_changeset.c -- a push body as the HTTP edge hands it to the engine:
 * the depth check, the cJSON parse, the schema's shape and value rules for
 * every change under every role, then sync_push() (and sync_check() when the
 * body carries "records") on a temporary engine.
 *
 * The body's "device_id" picks who pushes ("fz-officer", "fz-super",
 * "fz-admin", "fz-aux"; anything else is pushed by the officer and refused as
 * device_mismatch). A "changeset_seq" of 0 stands for "the device's next one",
 * so mutated bodies reach the writer instead of stopping at changeset_gap;
 * any other value is sent as it is.
 */
#include <string.h>

#include "server/http.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_BODY (256 << 10)
/* Pushes applied before the engine is thrown away and made again, so the
 * store stays small over a long run. */
#define FUZZ_PUSHES_PER_ENGINE 20000

static const char *const procedures[] = {"digital", "simple", "general", "nonesuch"};
static const char *const statuses[] = {"reported", "clue", "draft", "filed", "decided", "closed", "void"};

/* The value rules of one change, as a phone (same validator) and the server
 * apply them, under each role. Nothing here may crash or leave err unset. */
static void check_values(const schema_t *sc, const cJSON *ch) {
    static cJSON *empty;
    schema_err_t e;
    if (!empty) empty = cJSON_CreateObject();
    const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ch, "op"));
    if (!op) return;
    /* Every role a principal can have (ROLE_NONE never authenticates). */
    for (int role = ROLE_AUXILIARY; role <= ROLE_ADMIN; role++) {
        const cJSON *f;
        int rc = 0;
        memset(&e, 0, sizeof e);
        if (strcmp(op, "create") == 0) {
            rc = schema_check_create(sc, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ch, "type")),
                                     cJSON_GetObjectItemCaseSensitive(ch, "fields"), &e);
        } else if (strcmp(op, "update") == 0) {
            cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(ch, "set")) {
                rc = schema_check_set(sc, f->string, f, &e);
                FUZZ_CHECK(rc == 0 || e.code == rc);
            }
            cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(ch, "append")) {
                rc = schema_check_append(sc, f->string, f, &e);
                FUZZ_CHECK(rc == 0 || e.code == rc);
            }
        } else if (strcmp(op, "transition") == 0) {
            const char *to = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ch, "to"));
            /* The record's fields: always an object in a stored record. */
            const cJSON *fields = cJSON_GetObjectItemCaseSensitive(ch, "fields");
            if (!cJSON_IsObject(fields)) fields = cJSON_GetObjectItemCaseSensitive(ch, "set");
            if (!cJSON_IsObject(fields)) fields = empty;
            for (size_t p = 0; p < sizeof procedures / sizeof procedures[0]; p++)
                for (size_t c = 0; c < sizeof statuses / sizeof statuses[0]; c++) {
                    schema_judgement_t j = judge_tr(sc, procedures[p], statuses[c], to,
                                                                   (schema_role_t)role, fields, &e);
                    FUZZ_CHECK(j >= JUDGE_APPLY && j <= JUDGE_GUARD);
                }
        }
        FUZZ_CHECK(rc == 0 || e.code == rc);
        FUZZ_CHECK(memchr(e.message, 0, sizeof e.message) && memchr(e.path, 0, sizeof e.path));
        /* The write rules, against a record of each procedure and status. */
        if (rc == 0 && strcmp(op, "transition") != 0 && strcmp(op, "void") != 0) {
            const cJSON *fields = cJSON_GetObjectItemCaseSensitive(ch, "fields");
            if (!cJSON_IsObject(fields)) fields = empty;
            schema_writer_t w = {.role = (schema_role_t)role, .unit = "U1", .grids = NULL};
            for (size_t p = 0; p < sizeof procedures / sizeof procedures[0]; p++)
                for (size_t c = 0; c < sizeof statuses / sizeof statuses[0]; c++) {
                    schema_view_t v = {.procedure = procedures[p], .status = statuses[c], .fields = fields};
                    schema_write_t wr = schema_judge_writes(sc, ch, &v, &w, &e);
                    FUZZ_CHECK(wr >= WRITE_OK && wr <= WRITE_INVALID);
                    FUZZ_CHECK(wr == WRITE_OK || e.code != 0);
                }
        }
    }
}

static int who_of(const cJSON *body) {
    const char *dev = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "device_id"));
    for (int who = 0; dev && who < FUZZ_NWHO; who++)
        if (strcmp(fuzz_principal(who)->device_id, dev) == 0) return who;
    return FUZZ_OFFICER;
}

static void push(sync_t *s, cJSON *body) {
    static long applied;
    int who = who_of(body), replay = -1;
    const sync_principal_t *p = fuzz_principal(who);
    cJSON *seq = cJSON_GetObjectItemCaseSensitive(body, "changeset_seq");
    int64_t sent = 0;
    if (cJSON_IsNumber(seq) && seq->valuedouble == 0) {
        sent = fuzz_next_changeset(who);
        cJSON_SetNumberValue(seq, (double)sent);
    }
    sync_error_t err = {0};
    char *out = (char *)"unset";
    int rc = sync_push(s, p, body, &out, &replay, &err);
    fuzz_changeset_done(who, sent, rc, replay, &err);
    if (rc != 0) {
        /* Out-parameters are NULL on failure; the error says what and where. */
        FUZZ_CHECK(out == NULL);
        FUZZ_CHECK(rc < 0 && rc >= SYNC_EIO && err.code == rc);
        FUZZ_CHECK(rc != SYNC_EIO && rc != SYNC_ENOMEM);
        return;
    }
    /* One result per change, each naming its status. */
    FUZZ_CHECK(out != NULL && (replay == 0 || replay == 1));
    cJSON *answer = cJSON_Parse(out);
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(answer, "results");
    FUZZ_CHECK(cJSON_IsArray(results));
    FUZZ_CHECK(cJSON_GetArraySize(results) ==
               cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(body, "changes")));
    const cJSON *r;
    cJSON_ArrayForEach(r, results) FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "status")));
    cJSON_Delete(answer);
    if (!replay) {
        /* A retry of an applied changeset (the phone never heard the answer)
         * gets the stored answer, byte for byte, and applies nothing again. */
        char *again = NULL;
        int replayed = 0;
        rc = sync_push(s, p, body, &again, &replayed, &err);
        FUZZ_CHECK(rc == 0 && replayed == 1 && again && strcmp(again, out) == 0);
        free(again);
    }
    free(out);
    if (++applied >= FUZZ_PUSHES_PER_ENGINE) {
        fuzz_engine_close();
        applied = 0;
    }
}

static void check(sync_t *s, const cJSON *body) {
    sync_error_t err = {0};
    char *out = NULL;
    int rc = sync_check(s, fuzz_principal(who_of(body)), body, &out, &err);
    if (rc != 0) {
        FUZZ_CHECK(out == NULL && err.code == rc && rc != SYNC_EIO);
        return;
    }
    cJSON *answer = cJSON_Parse(out);
    FUZZ_CHECK(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(answer, "missing")));
    cJSON_Delete(answer);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data, *end = NULL;
    if (size > FUZZ_MAX_BODY) return 0;
    /* What the HTTP edge refuses never reaches the engine: too deep, or a
     * \u0000 that would cut a C string short (http_read_json). */
    if (http_json_too_deep(text, size, HTTP_MAX_JSON_DEPTH) || memmem(text, size, "\\u0000", 6)) return 0;
    cJSON *body = cJSON_ParseWithLengthOpts(text, size, &end, 0);
    if (!body) return 0;
    sync_t *s = fuzz_engine();
    const schema_t *sc = sync_schema(s);
    schema_err_t e;

    /* Shape first: a change failing it makes the push a 422 as a whole. */
    const cJSON *changes = cJSON_GetObjectItemCaseSensitive(body, "changes"), *ch;
    cJSON_ArrayForEach(ch, changes) {
        memset(&e, 0, sizeof e);
        int rc = schema_check_shape(sc, ch, &e);
        FUZZ_CHECK(rc == 0 || (rc == SCHEMA_E_TYPE && e.code == rc));
        if (rc == 0) check_values(sc, ch);
    }
    if (cJSON_IsObject(body)) {
        if (cJSON_GetObjectItemCaseSensitive(body, "records"))
            check(s, body);
        else
            push(s, body);
    }
    cJSON_Delete(body);
    return 0;
}
