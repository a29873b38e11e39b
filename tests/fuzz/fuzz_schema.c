/* fuzz_schema.c -- schema loading (schema_load) of fuzzed documents, and,
 * when one loads, the validator driven by it: accessors, a reference change
 * of each op under each role, and every lifecycle judgement between the
 * baseline's states. A schema that loads must also load again from its own
 * compact text (what GET /v1/schema serves to phones) to the same ETag.
 */
#include <string.h>

#include "schema/schema.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_SCHEMA (256 << 10)

static const char *const procedures[] = {"digital", "simple", "general", ""};
static const char *const statuses[] = {"reported",   "clue",    "draft",  "filed",
                                       "dispatched", "decided", "served", "closed",
                                       "not_filed",  "void",    ""};
static const char *const fields[] = {"procedure", "description", "fine_amount", "party",    "tags",
                                     "notes",     "evidence",    "case_no",     "location", "nonesuch"};
static const char *const types[] = {"unlicensed_vending", "illegal_parking", "nonesuch"};

static const char create_fields[] =
    "{\"procedure\":\"general\",\"source\":\"patrol\",\"description\":\"street vendor\","
    "\"occurred_at\":\"2026-11-22T08:00:00.000Z\",\"grid\":\"110101001001001\",\"address\":\"1 Rd\","
    "\"location\":{\"lon\":116.4,\"lat\":39.9,\"crs\":\"wgs84\",\"accuracy_m\":5},\"unit\":\"U1\","
    "\"party\":{\"kind\":\"person\",\"name\":\"Zhang San\"},\"illegal_item_code\":\"C-0501-01\","
    "\"decision_doc_no\":\"DC-2026-17\",\"assignee\":\"u1\",\"assist_officer\":\"u2\",\"fine_amount\":100,"
    "\"is_major\":false,\"tags\":[\"a\"]}";
static const char *const changes[] = {
    "{\"op\":\"create\",\"record_id\":\"01JDCASE0000000001\",\"type\":\"unlicensed_vending\","
    "\"at\":\"2026-11-22T08:15:30.123Z\",\"fields\":{\"procedure\":\"simple\",\"fine_amount\":1.5}}",
    "{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":5,\"set\":{\"description\":"
    "\"x\",\"fine_amount\":null,\"party\":{\"kind\":\"org\",\"name\":\"A\"},\"tags\":[\"t\"]},\"append\":"
    "{\"notes\":[{\"id\":\"n-1\",\"text\":\"hi\"}],\"evidence\":[{\"id\":\"e\",\"sha256\":\"00\"}]}}",
    "{\"op\":\"transition\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":0,\"to\":\"filed\"}",
    "{\"op\":\"void\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":9,\"reason\":\"duplicate\"}",
};

static void drive(const schema_t *s) {
    schema_err_t e;
    FUZZ_CHECK(schema_version(s) >= 1);
    FUZZ_CHECK(schema_text(s) && strlen(schema_text(s)) == schema_text_len(s));
    FUZZ_CHECK(schema_etag(s) && strlen(schema_etag(s)) == 66);

    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        (void)schema_field_policy(s, fields[i]);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const char *code = schema_type_code(s, types[i]);
        if (code) FUZZ_CHECK(schema_type_name(s, code) != NULL);
    }
    (void)schema_deadline_days(s, "decision_due");

    cJSON *cf = cJSON_Parse(create_fields);
    FUZZ_CHECK(cf != NULL);
    for (int role = ROLE_AUXILIARY; role <= ROLE_ADMIN; role++) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            memset(&e, 0, sizeof e);
            int rc = schema_check_create(s, types[i], cf, &e);
            FUZZ_CHECK(rc == 0 || e.code == rc);
        }
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(cf, fields[i]);
            memset(&e, 0, sizeof e);
            int rc = schema_check_set(s, fields[i], v ? v : cf, &e);
            FUZZ_CHECK(rc == 0 || e.code == rc);
        }
        for (size_t p = 0; p < sizeof procedures / sizeof procedures[0]; p++) {
            (void)schema_may_create(s, procedures[p], (schema_role_t)role);
            (void)schema_initial_status(s, procedures[p]);
            for (size_t a = 0; a < sizeof statuses / sizeof statuses[0]; a++) {
                (void)schema_status_is_closed(s, procedures[p], statuses[a]);
                (void)schema_status_assigns_case_no(s, procedures[p], statuses[a]);
                for (size_t b = 0; b < sizeof statuses / sizeof statuses[0]; b++) {
                    schema_judgement_t j = judge_tr(s, procedures[p], statuses[a], statuses[b],
                                                                   (schema_role_t)role, cf, &e);
                    FUZZ_CHECK(j >= JUDGE_APPLY && j <= JUDGE_GUARD);
                }
            }
        }
    }
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        cJSON *ch = cJSON_Parse(changes[i]);
        FUZZ_CHECK(ch != NULL);
        memset(&e, 0, sizeof e);
        int rc = schema_check_shape(s, ch, &e);
        FUZZ_CHECK(rc == 0 || (rc == SCHEMA_E_TYPE && e.code == rc));
        const cJSON *f;
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(ch, "append")) {
            rc = schema_check_append(s, f->string, f, &e);
            FUZZ_CHECK(rc == 0 || e.code == rc);
        }
        cJSON_Delete(ch);
    }
    cJSON_Delete(cf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    schema_t *s = NULL, *again = NULL;
    schema_err_t e;
    if (size > FUZZ_MAX_SCHEMA) return 0;
    memset(&e, 0, sizeof e);
    int rc = schema_load((const char *)data, size, &s, &e);
    if (rc != 0) {
        FUZZ_CHECK(s == NULL && rc < 0 && memchr(e.message, 0, sizeof e.message));
        return 0;
    }
    FUZZ_CHECK(s != NULL);
    drive(s);
    rc = schema_load(schema_text(s), schema_text_len(s), &again, &e);
    if (rc != 0) fprintf(stderr, "reload: %d %s [%s]\n", rc, e.message, e.path);
    FUZZ_CHECK(rc == 0 && strcmp(schema_etag(s), schema_etag(again)) == 0);
    schema_free(again);
    schema_free(s);
    return 0;
}
