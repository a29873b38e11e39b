/* test_schema.c -- the case model: loading, shapes, values, roles, lifecycle. */
#include "schema/schema.h"
#include "tests/test.h"

/* A transition judged against a record known only by procedure, status and fields. */
static inline schema_judgement_t judge_tr(const schema_t *s, const char *proc, const char *cur, const char *to,
                                          schema_role_t role, const cJSON *fields, schema_err_t *e) {
    schema_view_t v = {.procedure = proc, .status = cur, .fields = fields};
    return schema_judge_transition(s, &v, to, role, e);
}

#include <stdlib.h>

#ifndef CASESYNC_SCHEMA_PATH
#define CASESYNC_SCHEMA_PATH "schema/casesync.json"
#endif

/* The reference create of the protocol: valid for every role. */
#define CREATE_FIELDS                                                                              \
    "{\"procedure\":\"general\",\"source\":\"patrol\",\"description\":\"street vendor "            \
    "blocking sidewalk\",\"occurred_at\":\"2026-11-22T08:00:00.000Z\",\"grid\":"                   \
    "\"110101001001001\",\"address\":\"1 Dongcheng Rd\",\"location\":{\"lon\":116.4,"              \
    "\"lat\":39.9,\"crs\":\"wgs84\",\"accuracy_m\":5},\"unit\":\"U1\"}"

/* Fields that satisfy every guard of every procedure. */
#define GOOD_FIELDS                                                                                \
    "{\"party\":{\"kind\":\"person\",\"name\":\"Zhang San\"},\"illegal_item_code\":"               \
    "\"C-0501-01\",\"decision_doc_no\":\"DC-2026-17\",\"assignee\":\"u1\","                        \
    "\"assist_officer\":\"u2\",\"fine_amount\":100,\"disposition\":\"penalty\","                    \
    "\"recorded_at\":\"2026-11-22T09:00:00Z\",\"payment\":{\"method\":\"bank\",\"paid_at\":\"2026-11-23T09:00:00Z\"},\"documents\":["      \
    "{\"id\":\"d1\",\"doc_type\":\"penalty_notice\"},{\"id\":\"d2\",\"doc_type\":\"rights_waiver\"}," \
    "{\"id\":\"d3\",\"doc_type\":\"discussion\"}]}"

static schema_t *load(void) {
    schema_t *s = NULL;
    schema_err_t e;
    int rc = schema_load_file(CASESYNC_SCHEMA_PATH, &s, &e);
    if (rc) fprintf(stderr, "    load: %d %s [%s]\n", rc, e.message, e.path);
    return s;
}

/* The write rules for a change (JSON text) by role, against a record of
 * procedure in status with fields (JSON text): 0 or err->code. A writer of
 * unit U1 who patrols GRID 110101001001001. */
static int writes_json(const schema_t *s, const char *change, const char *procedure, const char *status,
                       const char *fields, schema_role_t role, schema_err_t *e) {
    cJSON *c = cJSON_Parse(change), *f = cJSON_Parse(fields ? fields : "{}");
    cJSON *grids = cJSON_Parse("[\"110101001001001\"]");
    schema_view_t v = {.procedure = procedure, .status = status, .fields = f};
    schema_writer_t w = {.role = role, .unit = "U1", .grids = grids};
    int rc = c && f ? (schema_judge_writes(s, c, &v, &w, e) == WRITE_OK ? 0 : e->code) : 99;
    cJSON_Delete(c);
    cJSON_Delete(f);
    cJSON_Delete(grids);
    return rc;
}

/* schema_check_set with the value given as JSON text, then the write rules
 * of that set by role on a general case at clue. */
static int set_json(const schema_t *s, const char *field, const char *json, schema_role_t role,
                    schema_err_t *e) {
    cJSON *v = cJSON_Parse(json);
    int rc = v ? schema_check_set(s, field, v, e) : 99;
    if (rc == 0) {
        cJSON *ch = cJSON_CreateObject(), *set = cJSON_AddObjectToObject(ch, "set");
        cJSON_AddStringToObject(ch, "op", "update");
        cJSON_AddItemToObject(set, field, cJSON_Duplicate(v, 1));
        char *text = cJSON_PrintUnformatted(ch);
        rc = writes_json(s, text, "general", "clue", NULL, role, e);
        free(text);
        cJSON_Delete(ch);
    }
    cJSON_Delete(v);
    return rc;
}

static int append_json(const schema_t *s, const char *field, const char *json, schema_role_t role,
                       schema_err_t *e) {
    cJSON *v = cJSON_Parse(json);
    int rc = v ? schema_check_append(s, field, v, e) : 99;
    cJSON_Delete(v);
    return rc;
}

static int shape_json(const schema_t *s, const char *json, schema_err_t *e) {
    cJSON *v = cJSON_Parse(json);
    int rc = v ? schema_check_shape(s, v, e) : 99;
    cJSON_Delete(v);
    return rc;
}

static int create_json(const schema_t *s, const char *type, const char *json, schema_role_t role,
                       schema_err_t *e) {
    cJSON *v = cJSON_Parse(json);
    int rc = v ? schema_check_create(s, type, v, e) : 99;
    cJSON_Delete(v);
    return rc;
}

static schema_judgement_t judge(const schema_t *s, const char *proc, const char *cur,
                                const char *to, schema_role_t role, const char *fields,
                                schema_err_t *e) {
    cJSON *f = cJSON_Parse(fields);
    schema_judgement_t j = judge_tr(s, proc, cur, to, role, f, e);
    cJSON_Delete(f);
    return j;
}

/* Loads the shipped document after edit() changed it; returns the rc. */
static int load_edited(void (*edit)(cJSON *doc), schema_t **out, schema_err_t *e) {
    schema_t *base = load();
    if (!base) return 99;
    cJSON *doc = cJSON_ParseWithLength(schema_text(base), schema_text_len(base));
    schema_free(base);
    if (!doc) return 99;
    edit(doc);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    int rc = schema_load(text, strlen(text), out, e);
    cJSON_free(text);
    return rc;
}

static cJSON *simple_decided(cJSON *doc) {
    cJSON *p = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "procedures"), "simple");
    return cJSON_GetArrayItem(cJSON_GetObjectItem(p, "transitions"), 0);
}

/* ------------------------------------------------------------------------- */

TEST(schema_load_version_etag) {
    schema_t *a = load(), *b = load();
    ASSERT(a && b);
    ASSERT_INT(schema_version(a), 2);
    const char *etag = schema_etag(a);
    ASSERT_INT(strlen(etag), 66);
    ASSERT(etag[0] == '"' && etag[65] == '"');
    ASSERT_INT(strspn(etag + 1, "0123456789abcdef"), 64);
    ASSERT_STR(schema_etag(a), schema_etag(b));
    ASSERT_INT(schema_text_len(a), strlen(schema_text(a)));
    ASSERT(!strchr(schema_text(a), '\n')); /* compact */
    cJSON *doc = cJSON_Parse(schema_text(a));
    ASSERT(doc);
    ASSERT_INT(cJSON_GetObjectItem(doc, "schema_version")->valueint, 2);
    ASSERT_INT(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "types")), 15);
    cJSON_Delete(doc);
    schema_free(a);
    schema_free(b);
    schema_free(NULL);
}

static void edit_fine_limit(cJSON *doc) {
    cJSON *g = cJSON_GetArrayItem(cJSON_GetObjectItem(simple_decided(doc), "guards"), 2);
    cJSON_SetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(g, "max"), "value"), 500);
}

/* The city edits the data, not the code: a new limit changes the judgement
 * and the ETag. */
TEST(schema_edited_document_changes_behaviour) {
    schema_t *s = NULL, *base = load();
    schema_err_t e;
    ASSERT(base);
    ASSERT_INT(load_edited(edit_fine_limit, &s, &e), SCHEMA_OK);
    ASSERT(strcmp(schema_etag(s), schema_etag(base)) != 0);
    const char *f = "{\"party\":{\"kind\":\"person\",\"name\":\"Li\"},\"illegal_item_code\":\"X\","
                    "\"decision_doc_no\":\"D1\",\"assignee\":\"u1\",\"assist_officer\":\"u2\","
                    "\"fine_amount\":500}";
    ASSERT_INT(judge(base, "simple", "draft", "decided", ROLE_OFFICER, f, &e), JUDGE_GUARD);
    ASSERT_INT(judge(s, "simple", "draft", "decided", ROLE_OFFICER, f, &e), JUDGE_APPLY);
    schema_free(s);
    schema_free(base);
}

static void edit_typo_key(cJSON *doc) {
    cJSON *grid = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "fields"), "address");
    cJSON_AddNumberToObject(grid, "max_lenght", 10);
}
static void edit_unknown_role(cJSON *doc) {
    cJSON *roles = cJSON_GetObjectItem(simple_decided(doc), "roles");
    cJSON_ReplaceItemInArray(roles, 0, cJSON_CreateString("boss"));
}
static void edit_guard_field(cJSON *doc) {
    cJSON *g = cJSON_GetArrayItem(cJSON_GetObjectItem(simple_decided(doc), "guards"), 0);
    cJSON_AddItemToArray(cJSON_GetObjectItem(g, "required"), cJSON_CreateString("fine"));
}
static void edit_no_version(cJSON *doc) { cJSON_DeleteItemFromObject(doc, "schema_version"); }
static void edit_unknown_state(cJSON *doc) {
    cJSON_ReplaceItemInObject(simple_decided(doc), "to", cJSON_CreateString("fined"));
}

TEST(schema_load_refuses_broken_documents) {
    schema_t *s = (schema_t *)1;
    schema_err_t e;
    ASSERT_INT(schema_load("{\"schema_version\":", 18, &s, &e), SCHEMA_E_LOAD);
    ASSERT(s == NULL);
    ASSERT_INT(schema_load("[]", 2, &s, &e), SCHEMA_E_LOAD);
    ASSERT_INT(schema_load("{} x", 4, &s, &e), SCHEMA_E_LOAD);
    ASSERT_INT(schema_load_file("/nonexistent/casesync.json", &s, &e), SCHEMA_E_LOAD);
    ASSERT(s == NULL);
    ASSERT(strstr(e.message, "/nonexistent/casesync.json"));
    ASSERT_INT(load_edited(edit_typo_key, &s, &e), SCHEMA_E_LOAD);
    ASSERT_STR(e.path, "fields.address.max_lenght");
    ASSERT_INT(load_edited(edit_unknown_role, &s, &e), SCHEMA_E_LOAD);
    ASSERT_STR(e.path, "procedures.simple.transitions[0].roles");
    ASSERT_INT(load_edited(edit_guard_field, &s, &e), SCHEMA_E_LOAD);
    ASSERT_STR(e.path, "procedures.simple.transitions[0].guards[0].required");
    ASSERT_INT(load_edited(edit_no_version, &s, &e), SCHEMA_E_LOAD);
    ASSERT_STR(e.path, "schema_version");
    ASSERT_INT(load_edited(edit_unknown_state, &s, &e), SCHEMA_E_LOAD);
    ASSERT_STR(e.path, "procedures.simple.transitions[0].to");
    ASSERT(s == NULL);
}

TEST(schema_roles_and_strerror) {
    ASSERT_INT(schema_role_parse("auxiliary"), ROLE_AUXILIARY);
    ASSERT_INT(schema_role_parse("legal_reviewer"), ROLE_LEGAL_REVIEWER);
    ASSERT_INT(schema_role_parse("admin"), ROLE_ADMIN);
    ASSERT_INT(schema_role_parse("Admin"), ROLE_NONE);
    ASSERT_INT(schema_role_parse(NULL), ROLE_NONE);
    ASSERT_STR(schema_role_name(ROLE_SUPERVISOR), "supervisor");
    ASSERT_STR(schema_role_name(ROLE_NONE), "none");
    ASSERT_STR(schema_strerror(SCHEMA_E_ROLE), "forbidden for this role");
    ASSERT(schema_strerror(-99) != NULL);
}

TEST(schema_type_codes) {
    static const char *const pairs[][2] = {{"0101", "illegal_construction"},
                                           {"0102", "exposed_garbage"},
                                           {"0104", "dirty_road"},
                                           {"0201", "illegal_flyers"},
                                           {"0202", "illegal_signboard"},
                                           {"0302", "construction_dust"},
                                           {"0304", "construction_road_occupation"},
                                           {"0501", "unlicensed_vending"},
                                           {"0504", "outside_shop_business"},
                                           {"0505", "illegal_parking"},
                                           {"9001", "open_air_bbq"},
                                           {"9002", "cooking_fumes"},
                                           {"9003", "muck_truck"},
                                           {"9004", "shared_bike_parking"},
                                           {"9005", "abandoned_vehicle"}};
    schema_t *s = load();
    ASSERT(s);
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        ASSERT_STR(schema_type_code(s, pairs[i][1]), pairs[i][0]);
        ASSERT_STR(schema_type_name(s, pairs[i][0]), pairs[i][1]);
    }
    ASSERT(schema_type_code(s, "jaywalking") == NULL);
    ASSERT(schema_type_name(s, "0000") == NULL);
    ASSERT(schema_type_code(s, NULL) == NULL);
    schema_free(s);
}

TEST(schema_fields_procedures_deadlines) {
    schema_t *s = load();
    ASSERT(s);
    ASSERT_INT(schema_field_policy(s, "description"), POLICY_LWW);
    ASSERT_INT(schema_field_policy(s, "fine_amount"), POLICY_MANUAL);
    ASSERT_INT(schema_field_policy(s, "notes"), POLICY_APPEND);
    ASSERT_INT(schema_field_policy(s, "tags"), POLICY_UNION);
    ASSERT_INT(schema_field_policy(s, "case_no"), POLICY_SERVER);
    ASSERT_INT(schema_field_policy(s, "procedure"), POLICY_IMMUTABLE);
    ASSERT_INT(schema_field_policy(s, "colour"), -1);
    ASSERT(schema_procedure_exists(s, "digital") && schema_procedure_exists(s, "simple") &&
           schema_procedure_exists(s, "general"));
    ASSERT(!schema_procedure_exists(s, "summary"));
    ASSERT_STR(schema_initial_status(s, "digital"), "reported");
    ASSERT_STR(schema_initial_status(s, "simple"), "draft");
    ASSERT_STR(schema_initial_status(s, "general"), "clue");
    ASSERT(schema_initial_status(s, "summary") == NULL);
    ASSERT_INT(schema_may_create(s, "simple", ROLE_AUXILIARY), 1);
    ASSERT_INT(schema_may_create(s, "general", ROLE_SUPERVISOR), 1);
    ASSERT_INT(schema_may_create(s, "general", ROLE_NONE), 0);
    ASSERT_INT(schema_may_create(s, "summary", ROLE_OFFICER), 0);
    ASSERT_INT(schema_status_is_closed(s, "general", "closed"), 1);
    ASSERT_INT(schema_status_is_closed(s, "general", "not_filed"), 1);
    ASSERT_INT(schema_status_is_closed(s, "general", "transferred"), 1);
    ASSERT_INT(schema_status_is_closed(s, "digital", "rejected"), 1);
    ASSERT_INT(schema_status_is_closed(s, "general", "investigating"), 0);
    ASSERT_INT(schema_status_is_closed(s, "general", "nonsense"), 0);
    ASSERT_INT(schema_status_assigns_case_no(s, "general", "filed"), 1);
    ASSERT_INT(schema_status_assigns_case_no(s, "digital", "filed"), 1);
    ASSERT_INT(schema_status_assigns_case_no(s, "simple", "decided"), 1);
    ASSERT_INT(schema_status_assigns_case_no(s, "general", "decided"), 0);
    ASSERT_INT(schema_status_assigns_case_no(s, "simple", "draft"), 0);
    ASSERT_INT(schema_deadline_days(s, "decision_due"), 90);
    ASSERT_INT(schema_deadline_days(s, "service_due"), 7);
    ASSERT_INT(schema_deadline_days(s, "payment_due"), 15);
    ASSERT_INT(schema_deadline_days(s, "record_due"), 3);
    ASSERT_INT(schema_deadline_days(s, "evidence_due"), -1); /* counted in hours */
    ASSERT_INT(schema_deadline_hours(s, "evidence_due"), 24);
    ASSERT_INT(schema_deadline_days(s, "nap_due"), -1);
    schema_free(s);
}

/* ------------------------------------------------------------------------- */
/* Shape                                                                      */
/* ------------------------------------------------------------------------- */

TEST(schema_shape_accepts_the_four_ops) {
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    ASSERT_INT(shape_json(s,
                          "{\"op\":\"create\",\"record_id\":\"01JDCASE0000000001\",\"type\":"
                          "\"unlicensed_vending\",\"at\":\"2026-11-22T08:15:30.123Z\","
                          "\"fields\":" CREATE_FIELDS "}",
                          &e),
               SCHEMA_OK);
    ASSERT_INT(shape_json(s,
                          "{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\","
                          "\"base_version\":5,\"set\":{\"description\":\"x\",\"fine_amount\":"
                          "null,\"colour\":7},\"append\":{\"notes\":[{\"id\":\"n-1\",\"text\":"
                          "\"hi\"}]}}",
                          &e),
               SCHEMA_OK);
    ASSERT_INT(shape_json(s,
                          "{\"op\":\"transition\",\"record_id\":\"01JDCASE0000000001\","
                          "\"base_version\":0,\"to\":\"filed\"}",
                          &e),
               SCHEMA_OK);
    ASSERT_INT(shape_json(s,
                          "{\"op\":\"void\",\"record_id\":\"01JDCASE0000000001\","
                          "\"base_version\":9,\"reason\":\"duplicate\"}",
                          &e),
               SCHEMA_OK);
    schema_free(s);
}

TEST(schema_shape_errors_name_the_path) {
    static const struct {
        const char *change, *path;
    } cases[] = {
        {"[]", ""},
        {"{\"op\":\"delete\",\"record_id\":\"01JDCASE0000000001\"}", "op"},
        {"{\"record_id\":\"01JDCASE0000000001\"}", "op"},
        {"{\"op\":\"void\",\"record_id\":\"short\",\"base_version\":1,\"reason\":\"r\"}",
         "record_id"},
        {"{\"op\":\"void\",\"record_id\":\"01JD CASE 0001\",\"base_version\":1,\"reason\":\"r\"}",
         "record_id"},
        {"{\"op\":\"void\",\"record_id\":7,\"base_version\":1,\"reason\":\"r\"}", "record_id"},
        {"{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"set\":{}}", "base_version"},
        {"{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":-1}",
         "base_version"},
        {"{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":1.5}",
         "base_version"},
        {"{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":\"3\"}",
         "base_version"},
        {"{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":1,\"at\":5}",
         "at"},
        {"{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":1,\"set\":[]}",
         "set"},
        {"{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":1,"
         "\"set\":{\"fine_amount\":\"200\"}}",
         "set.fine_amount"},
        {"{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":1,"
         "\"set\":{\"is_major\":1}}",
         "set.is_major"},
        {"{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":1,"
         "\"set\":{\"tags\":[\"a\",1]}}",
         "set.tags[1]"},
        {"{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":1,"
         "\"set\":{\"party\":{\"kind\":\"person\",\"name\":[]}}}",
         "set.party.name"},
        {"{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":1,"
         "\"append\":{\"notes\":{}}}",
         "append.notes"},
        {"{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":1,"
         "\"append\":{\"notes\":[\"hi\"]}}",
         "append.notes[0]"},
        {"{\"op\":\"update\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":1,"
         "\"append\":{\"notes\":[{\"id\":\"n1\",\"text\":\"a\"},{\"id\":\"n2\",\"text\":3}]}}",
         "append.notes[1].text"},
        {"{\"op\":\"create\",\"record_id\":\"01JDCASE0000000001\",\"fields\":{}}", "type"},
        {"{\"op\":\"create\",\"record_id\":\"01JDCASE0000000001\",\"type\":\"dirty_road\"}",
         "fields"},
        {"{\"op\":\"create\",\"record_id\":\"01JDCASE0000000001\",\"type\":\"dirty_road\","
         "\"fields\":{\"location\":{\"lon\":116.4,\"lat\":\"39.9\"}}}",
         "fields.location.lat"},
        {"{\"op\":\"transition\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":1}", "to"},
        {"{\"op\":\"void\",\"record_id\":\"01JDCASE0000000001\",\"base_version\":1}", "reason"},
    };
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = shape_json(s, cases[i].change, &e);
        if (rc != SCHEMA_E_TYPE || strcmp(e.path, cases[i].path) != 0)
            fprintf(stderr, "    case %zu: rc %d path \"%s\"\n", i, rc, e.path);
        ASSERT_INT(rc, SCHEMA_E_TYPE);
        ASSERT_STR(e.path, cases[i].path);
        ASSERT_INT(e.code, SCHEMA_E_TYPE);
    }
    schema_free(s);
}

/* ------------------------------------------------------------------------- */
/* Create                                                                     */
/* ------------------------------------------------------------------------- */

TEST(schema_create_happy_path) {
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    ASSERT_INT(create_json(s, "unlicensed_vending", CREATE_FIELDS, ROLE_AUXILIARY, &e), SCHEMA_OK);
    ASSERT_INT(e.code, SCHEMA_OK);
    ASSERT_INT(create_json(s, "unlicensed_vending", CREATE_FIELDS, ROLE_OFFICER, &e), SCHEMA_OK);
    /* With category, tags, notes, evidence and a Chinese address. */
    cJSON *f = cJSON_Parse(CREATE_FIELDS);
    cJSON_AddStringToObject(f, "category", "0501");
    cJSON_ReplaceItemInObject(f, "address", cJSON_CreateString("北京市东城区东直门南大街1号"));
    cJSON_AddItemToObject(f, "tags", cJSON_Parse("[\"夜市\",\"repeat\"]"));
    cJSON_AddItemToObject(f, "notes", cJSON_Parse("[{\"id\":\"n-1\",\"text\":\"到场\"}]"));
    cJSON_AddItemToObject(
        f, "evidence",
        cJSON_Parse("[{\"id\":\"e-1\",\"sha256\":"
                    "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\","
                    "\"size\":0,\"mime\":\"image/"
                    "jpeg\",\"kind\":\"photo\",\"captured_at\":\"2026-11-22T08:01:00+08:00\"}]"));
    int rc = schema_check_create(s, "unlicensed_vending", f, &e);
    cJSON_Delete(f);
    ASSERT_INT(rc, SCHEMA_OK);
    schema_free(s);
}

TEST(schema_create_each_required_field) {
    static const char *const required[] = {"procedure", "source",  "description", "occurred_at",
                                           "grid",      "address", "location",    "unit"};
    schema_t *s = load();
    schema_err_t e;
    char want[64];
    ASSERT(s);
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        cJSON *f = cJSON_Parse(CREATE_FIELDS);
        cJSON_DeleteItemFromObject(f, required[i]);
        int rc = schema_check_create(s, "dirty_road", f, &e);
        cJSON_Delete(f);
        snprintf(want, sizeof(want), "fields.%s", required[i]);
        ASSERT_INT(rc, SCHEMA_E_INVALID);
        ASSERT_STR(e.path, want);
        /* null and "" count as missing too. */
        f = cJSON_Parse(CREATE_FIELDS);
        cJSON_ReplaceItemInObject(f, required[i], cJSON_CreateNull());
        rc = schema_check_create(s, "dirty_road", f, &e);
        cJSON_Delete(f);
        ASSERT_INT(rc, SCHEMA_E_INVALID);
        ASSERT_STR(e.path, want);
    }
    schema_free(s);
}

static int create_with(const schema_t *s, const char *type, const char *key, const char *json,
                       schema_role_t role, schema_err_t *e) {
    cJSON *f = cJSON_Parse(CREATE_FIELDS);
    cJSON_DeleteItemFromObject(f, key);
    cJSON_AddItemToObject(f, key, cJSON_Parse(json));
    int rc = schema_check_create(s, type, f, e);
    if (rc == 0) {
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddStringToObject(ch, "op", "create");
        cJSON_AddItemToObject(ch, "fields", cJSON_Duplicate(f, 1));
        char *text = cJSON_PrintUnformatted(ch);
        const char *proc = cJSON_GetStringValue(cJSON_GetObjectItem(f, "procedure"));
        rc = writes_json(s, text, proc ? proc : "general", NULL, NULL, role, e);
        free(text);
        cJSON_Delete(ch);
    }
    cJSON_Delete(f);
    return rc;
}

TEST(schema_create_refusals) {
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    ASSERT_INT(create_json(s, "jaywalking", CREATE_FIELDS, ROLE_OFFICER, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "type");
    ASSERT_INT(create_with(s, "dirty_road", "colour", "\"red\"", ROLE_OFFICER, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "fields.colour");
    ASSERT_INT(create_with(s, "dirty_road", "case_no", "\"U1-2026-000001\"", ROLE_SUPERVISOR, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "fields.case_no");
    ASSERT_INT(create_with(s, "dirty_road", "procedure", "\"summary\"", ROLE_OFFICER, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "fields.procedure");
    ASSERT_INT(create_with(s, "dirty_road", "category", "\"0501\"", ROLE_OFFICER, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "fields.category");
    ASSERT_INT(create_with(s, "dirty_road", "category", "\"0104\"", ROLE_OFFICER, &e), SCHEMA_OK);
    ASSERT_INT(create_with(s, "dirty_road", "category", "\"9999\"", ROLE_OFFICER, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "fields.category");
    ASSERT_INT(create_with(s, "dirty_road", "notes", "[{\"id\":\"n1\"}]", ROLE_OFFICER, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "fields.notes[0].text");
    ASSERT_INT(create_with(s, "dirty_road", "grid", "\"11010100100100\"", ROLE_SUPERVISOR, &e),
               SCHEMA_OK);
    ASSERT_INT(create_with(s, "dirty_road", "grid", "\"1101010010\"", ROLE_OFFICER, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "fields.grid");
    ASSERT_INT(
        create_with(s, "dirty_road", "location", "{\"lon\":116.4,\"lat\":91}", ROLE_OFFICER, &e),
        SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "fields.location.lat");
    /* An auxiliary may report a case but not with a penalty in it. */
    ASSERT_INT(create_with(s, "dirty_road", "fine_amount", "50", ROLE_AUXILIARY, &e),
               SCHEMA_E_FORBIDDEN);
    ASSERT_STR(e.path, "fields.fine_amount");
    ASSERT_INT(create_with(s, "dirty_road", "fine_amount", "50", ROLE_OFFICER, &e), SCHEMA_OK);
    schema_free(s);
}

/* ------------------------------------------------------------------------- */
/* Values                                                                     */
/* ------------------------------------------------------------------------- */

TEST(schema_value_rules) {
    static const struct {
        const char *field, *json, *path; /* path NULL: accepted */
    } cases[] = {
        {"grid", "\"110101001001001\"", NULL},
        {"grid", "\"12345\"", "set.grid"},
        {"grid", "\"1101010010010010\"", "set.grid"},
        {"grid", "\"11010100100100A\"", "set.grid"},
        {"grid", "\"١١٠١٠١٠٠١٠٠١٠٠١\"", "set.grid"},
        {"location", "{\"lon\":-180,\"lat\":90,\"crs\":\"cgcs2000\"}", NULL},
        {"location", "{\"lon\":116.4,\"lat\":91}", "set.location.lat"},
        {"location", "{\"lon\":-180.5,\"lat\":0}", "set.location.lon"},
        {"location", "{\"lon\":116.4,\"lat\":39.9,\"crs\":\"gcj02\"}", "set.location.crs"},
        {"location", "{\"lon\":116.4}", "set.location.lat"},
        {"location", "{\"lon\":116.4,\"lat\":39.9,\"alt\":50}", "set.location.alt"},
        {"location", "{\"lon\":116.4,\"lat\":39.9,\"accuracy_m\":-1}", "set.location.accuracy_m"},
        {"fine_amount", "12.34", NULL},
        {"fine_amount", "0.29", NULL},
        {"fine_amount", "3000", NULL},
        {"fine_amount", "12.345", "set.fine_amount"},
        {"fine_amount", "1.005", "set.fine_amount"},
        {"fine_amount", "-1", "set.fine_amount"},
        {"fine_amount", "1e300", "set.fine_amount"},
        {"source", "\"hotline\"", NULL},
        {"source", "\"tv\"", "set.source"},
        {"disposition", "\"warning\"", "set.disposition"},
        {"party",
         "{\"kind\":\"org\",\"name\":\"某某餐饮有限公司\",\"uscc\":\"91110101MA01X0000X\"}", NULL},
        {"party", "{\"kind\":\"alien\",\"name\":\"X\"}", "set.party.kind"},
        {"party", "{\"kind\":\"person\"}", "set.party.name"},
        {"party", "{\"kind\":\"person\",\"name\":\"X\",\"age\":30}", "set.party.age"},
        {"payment",
         "{\"method\":\"bank\",\"receipt_no\":\"R1\",\"paid_at\":\"2026-11-23T10:00:00Z\"}", NULL},
        {"payment", "{\"method\":\"cash\"}", "set.payment.method"},
        {"payment", "{\"method\":\"bank\",\"paid_at\":\"yesterday\"}", "set.payment.paid_at"},
        {"assignee", "\"u17\"", NULL},
        {"assignee", "\"\"", "set.assignee"},
        {"assignee", "\"uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu\"",
         "set.assignee"},
        {"tags", "[\"a\",\"b\"]", NULL},
        {"tags", "[\"a\",\"\"]", "set.tags[1]"},
        {"category", "\"0505\"", NULL},
        {"category", "\"0505x\"", "set.category"},
        {"is_major", "true", NULL},
        {"description", "\"\\u00ff\"", NULL},
    };
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = set_json(s, cases[i].field, cases[i].json, ROLE_SUPERVISOR, &e);
        if (cases[i].path ? rc != SCHEMA_E_INVALID || strcmp(e.path, cases[i].path) : rc != 0)
            fprintf(stderr, "    case %zu (%s %s): rc %d path \"%s\" %s\n", i, cases[i].field,
                    cases[i].json, rc, e.path, e.message);
        if (!cases[i].path) {
            ASSERT_INT(rc, SCHEMA_OK);
            continue;
        }
        ASSERT_INT(rc, SCHEMA_E_INVALID);
        ASSERT_STR(e.path, cases[i].path);
        ASSERT(e.message[0] != '\0');
    }
    schema_free(s);
}

TEST(schema_value_lengths) {
    schema_t *s = load();
    schema_err_t e;
    char *buf = malloc(70000 * 3 + 3);
    ASSERT(s && buf);
    /* 512 characters fit even as 1536 bytes of Chinese; 513 do not. */
    buf[0] = '"';
    for (int i = 0; i < 512; i++) memcpy(buf + 1 + 3 * i, "街", 3);
    strcpy(buf + 1 + 3 * 512, "\"");
    ASSERT_INT(set_json(s, "address", buf, ROLE_OFFICER, &e), SCHEMA_OK);
    memset(buf + 1, 'a', 513);
    strcpy(buf + 514, "\"");
    ASSERT_INT(set_json(s, "address", buf, ROLE_OFFICER, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "set.address");
    /* Text: 65536 bytes fit, 65537 do not. */
    memset(buf + 1, 'x', 65536);
    strcpy(buf + 65537, "\"");
    ASSERT_INT(set_json(s, "description", buf, ROLE_OFFICER, &e), SCHEMA_OK);
    memset(buf + 1, 'x', 65537);
    strcpy(buf + 65538, "\"");
    ASSERT_INT(set_json(s, "description", buf, ROLE_OFFICER, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "set.description");
    free(buf);
    /* Invalid UTF-8 (an overlong '/') is refused. */
    cJSON *v = cJSON_CreateString("a\xc0\xaf");
    ASSERT_INT(schema_check_set(s, "address", v, &e), SCHEMA_E_INVALID);
    cJSON_Delete(v);
    schema_free(s);
}

TEST(schema_value_times) {
    static const char *const good[] = {"\"2026-11-22T08:15:30Z\"", "\"2026-11-22T08:15:30.123Z\"",
                                       "\"2026-11-22T08:15:30.123456789+08:00\"",
                                       "\"2024-02-29T23:59:60-05:30\"", "\"2026-11-22t08:15:30z\""};
    static const char *const bad[] = {"\"2026-11-22 08:15:30Z\"",     "\"2026-11-22T08:15:30\"",
                                      "\"2026-02-29T00:00:00Z\"",     "\"2026-13-01T00:00:00Z\"",
                                      "\"2026-11-22T24:00:00Z\"",     "\"2026-11-22T08:15:30.Z\"",
                                      "\"2026-11-22T08:15:30+0800\"", "\"\"",
                                      "\"2026-11-22T08:15:30Zjunk\"", "\"2026-11-22\""};
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        ASSERT_INT(set_json(s, "occurred_at", good[i], ROLE_OFFICER, &e), SCHEMA_OK);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ASSERT_INT(set_json(s, "occurred_at", bad[i], ROLE_OFFICER, &e), SCHEMA_E_INVALID);
        ASSERT_STR(e.path, "set.occurred_at");
    }
    schema_free(s);
}

TEST(schema_set_refusals_and_roles) {
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    ASSERT_INT(set_json(s, "case_no", "\"U1-2026-000001\"", ROLE_ADMIN, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "set.case_no");
    ASSERT_INT(set_json(s, "procedure", "\"simple\"", ROLE_ADMIN, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "set.procedure");
    ASSERT_INT(set_json(s, "notes", "[]", ROLE_OFFICER, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "set.notes");
    ASSERT_INT(set_json(s, "colour", "\"red\"", ROLE_OFFICER, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "set.colour");
    /* null clears an optional field, never a required one. */
    ASSERT_INT(set_json(s, "fine_amount", "null", ROLE_OFFICER, &e), SCHEMA_OK);
    ASSERT_INT(set_json(s, "grid", "null", ROLE_OFFICER, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "set.grid");
    /* An auxiliary never takes a penalty decision. */
    static const char *const legal[][2] = {
        {"fine_amount", "200"},        {"disposition", "\"penalty\""},
        {"decision_doc_no", "\"D1\""}, {"payment", "{\"method\":\"bank\"}"},
        {"legal_basis", "\"Art. 1\""}, {"is_major", "false"}};
    for (size_t i = 0; i < sizeof(legal) / sizeof(legal[0]); i++) {
        ASSERT_INT(set_json(s, legal[i][0], legal[i][1], ROLE_AUXILIARY, &e), SCHEMA_E_FORBIDDEN);
        ASSERT(strncmp(e.path, "set.", 4) == 0 && strcmp(e.path + 4, legal[i][0]) == 0);
        ASSERT_INT(set_json(s, legal[i][0], legal[i][1], ROLE_OFFICER, &e), SCHEMA_OK);
        ASSERT_INT(set_json(s, legal[i][0], legal[i][1], ROLE_NONE, &e), SCHEMA_E_FORBIDDEN);
    }
    ASSERT_INT(set_json(s, "description", "\"more detail\"", ROLE_AUXILIARY, &e), SCHEMA_OK);
    ASSERT_INT(set_json(s, "party", "{\"kind\":\"person\",\"name\":\"X\"}", ROLE_AUXILIARY, &e),
               SCHEMA_OK);
    schema_free(s);
}

TEST(schema_append_items) {
    schema_t *s = load();
    schema_err_t e;
    const char *sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    char buf[512];
    ASSERT(s);
    ASSERT_INT(append_json(s, "notes",
                           "[{\"id\":\"n-1\",\"text\":\"arrived\",\"at\":"
                           "\"2026-11-22T08:15:30.123Z\"}]",
                           ROLE_AUXILIARY, &e),
               SCHEMA_OK);
    ASSERT_INT(append_json(s, "notes", "[]", ROLE_AUXILIARY, &e), SCHEMA_OK);
    ASSERT_INT(append_json(s, "notes", "[{\"id\":\"n-1\"}]", ROLE_OFFICER, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "append.notes[0].text");
    ASSERT_INT(append_json(s, "notes", "[{\"id\":\"n-1\",\"text\":\"a\"},{\"text\":\"b\"}]",
                           ROLE_OFFICER, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "append.notes[1].id");
    ASSERT_INT(append_json(s, "notes", "[{\"id\":\"\",\"text\":\"a\"}]", ROLE_OFFICER, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "append.notes[0].id");
    ASSERT_INT(append_json(s, "notes",
                           "[{\"id\":\"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
                           "nnnnnnnnnnnnnnnnn\",\"text\":\"a\"}]",
                           ROLE_OFFICER, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "append.notes[0].id");
    ASSERT_INT(append_json(s, "notes", "[{\"id\":\"n1\",\"text\":\"a\",\"author\":\"u9\"}]",
                           ROLE_OFFICER, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "append.notes[0].author");
    ASSERT_INT(append_json(s, "notes",
                           "[{\"id\":\"n1\",\"text\":\"a\"},{\"id\":\"n2\",\"text\":"
                           "\"b\"},{\"id\":\"n1\",\"text\":\"c\"}]",
                           ROLE_OFFICER, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "append.notes[2].id");
    ASSERT_INT(append_json(s, "description", "[{\"id\":\"d1\"}]", ROLE_OFFICER, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "append.description");
    ASSERT_INT(append_json(s, "notes", "{\"id\":\"n1\"}", ROLE_OFFICER, &e), SCHEMA_E_TYPE);
    snprintf(buf, sizeof(buf),
             "[{\"id\":\"e1\",\"sha256\":\"%s\",\"size\":1024,\"kind\":\"bodycam\"}]", sha);
    ASSERT_INT(append_json(s, "evidence", buf, ROLE_AUXILIARY, &e), SCHEMA_OK);
    snprintf(buf, sizeof(buf), "[{\"id\":\"e1\",\"sha256\":\"%.63s\",\"size\":1}]", sha);
    ASSERT_INT(append_json(s, "evidence", buf, ROLE_AUXILIARY, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "append.evidence[0].sha256");
    snprintf(buf, sizeof(buf), "[{\"id\":\"e1\",\"sha256\":\"E3B0%s\",\"size\":1}]", sha + 4);
    ASSERT_INT(append_json(s, "evidence", buf, ROLE_AUXILIARY, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "append.evidence[0].sha256");
    snprintf(buf, sizeof(buf), "[{\"id\":\"e1\",\"sha256\":\"%s\",\"size\":-1}]", sha);
    ASSERT_INT(append_json(s, "evidence", buf, ROLE_AUXILIARY, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "append.evidence[0].size");
    snprintf(buf, sizeof(buf), "[{\"id\":\"e1\",\"sha256\":\"%s\",\"size\":1.5}]", sha);
    ASSERT_INT(append_json(s, "evidence", buf, ROLE_AUXILIARY, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "append.evidence[0].size");
    snprintf(buf, sizeof(buf), "[{\"id\":\"e1\",\"sha256\":\"%s\",\"kind\":\"hologram\"}]", sha);
    ASSERT_INT(append_json(s, "evidence", buf, ROLE_AUXILIARY, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "append.evidence[0].kind");
    ASSERT_INT(append_json(s, "evidence", "[{\"id\":\"e1\",\"size\":1}]", ROLE_AUXILIARY, &e),
               SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "append.evidence[0].sha256");
    ASSERT_INT(append_json(s, "documents",
                           "[{\"id\":\"d1\",\"doc_type\":\"decision\",\"doc_no\":"
                           "\"DC-1\",\"at\":\"2026-11-22T09:00:00Z\"}]",
                           ROLE_OFFICER, &e),
               SCHEMA_OK);
    schema_free(s);
}

/* ------------------------------------------------------------------------- */
/* Lifecycle                                                                  */
/* ------------------------------------------------------------------------- */

typedef struct step {
    const char *from, *to;
    schema_role_t role;
} step_t;

/* Each step applies for its role and every stronger one, and is refused
 * (JUDGE_ROLE, path "to") for the next weaker role. */
static int walk(const schema_t *s, const char *proc, const step_t *steps, size_t n,
                const char *fields) {
    schema_err_t e;
    for (size_t i = 0; i < n; i++) {
        for (int r = steps[i].role; r <= ROLE_ADMIN; r++) {
            schema_judgement_t j =
                judge(s, proc, steps[i].from, steps[i].to, (schema_role_t)r, fields, &e);
            if (j != JUDGE_APPLY) {
                fprintf(stderr, "    %s %s -> %s by %s: %d (%s)\n", proc, steps[i].from,
                        steps[i].to, schema_role_name((schema_role_t)r), j, e.message);
                return -1;
            }
        }
        if (steps[i].role == ROLE_AUXILIARY) continue;
        if (judge(s, proc, steps[i].from, steps[i].to, steps[i].role - 1, fields, &e) !=
                JUDGE_ROLE ||
            e.code != SCHEMA_E_ROLE || strcmp(e.path, "to") != 0) {
            fprintf(stderr, "    %s %s -> %s by a weaker role was not refused\n", proc,
                    steps[i].from, steps[i].to);
            return -1;
        }
    }
    return 0;
}

TEST(schema_lifecycle_main_paths) {
    static const step_t digital[] = {
        {"reported", "filed", ROLE_SUPERVISOR},   {"reported", "rejected", ROLE_SUPERVISOR},
        {"filed", "dispatched", ROLE_SUPERVISOR}, {"dispatched", "processing", ROLE_OFFICER},
        {"processing", "feedback", ROLE_OFFICER}, {"feedback", "checking", ROLE_AUXILIARY},
        {"checking", "closed", ROLE_SUPERVISOR},  {"checking", "dispatched", ROLE_SUPERVISOR}};
    /* SCHEMA v2 C: decided is served on the spot; recorded is a flag. */
    static const step_t simple[] = {{"draft", "decided", ROLE_OFFICER},
                                    {"decided", "paid", ROLE_OFFICER},
                                    {"paid", "closed", ROLE_SUPERVISOR}};
    /* SCHEMA v2 B: notice and hearing before legal review; discussion for major cases. */
    static const step_t general[] = {
        {"clue", "filed", ROLE_SUPERVISOR},           {"clue", "not_filed", ROLE_SUPERVISOR},
        {"clue", "transferred", ROLE_SUPERVISOR},     {"filed", "investigating", ROLE_OFFICER},
        {"investigating", "concluded", ROLE_OFFICER}, {"concluded", "notified", ROLE_OFFICER},
        {"notified", "heard", ROLE_OFFICER},          {"heard", "reviewed", ROLE_LEGAL_REVIEWER},
        {"notified", "reviewed", ROLE_LEGAL_REVIEWER}, {"reviewed", "discussed", ROLE_SUPERVISOR},
        {"reviewed", "decided", ROLE_SUPERVISOR},     {"discussed", "decided", ROLE_SUPERVISOR},
        {"decided", "served", ROLE_OFFICER},          {"served", "executing", ROLE_OFFICER},
        {"executing", "closed", ROLE_SUPERVISOR}};
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    ASSERT_INT(walk(s, "digital", digital, sizeof(digital) / sizeof(digital[0]), "{}"), 0);
    ASSERT_INT(walk(s, "simple", simple, sizeof(simple) / sizeof(simple[0]), GOOD_FIELDS), 0);
    ASSERT_INT(walk(s, "general", general, sizeof(general) / sizeof(general[0]), GOOD_FIELDS), 0);
    /* Legal review (exact) is in schema_lifecycle_legal_review. */
    ASSERT_INT(judge(s, "general", "heard", "reviewed", ROLE_LEGAL_REVIEWER, GOOD_FIELDS, &e),
               JUDGE_APPLY);
    /* The old order is gone: no review straight after the investigation. */
    ASSERT_INT(judge(s, "general", "concluded", "reviewed", ROLE_LEGAL_REVIEWER, GOOD_FIELDS, &e),
               JUDGE_FORBIDDEN);
    ASSERT_INT(judge(s, "simple", "decided", "served", ROLE_OFFICER, GOOD_FIELDS, &e), JUDGE_FORBIDDEN);
    schema_free(s);
}

TEST(schema_lifecycle_simple_decided_guards) {
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    /* An auxiliary may create a simple case but never advance it. */
    ASSERT_INT(judge(s, "simple", "draft", "decided", ROLE_AUXILIARY, GOOD_FIELDS, &e), JUDGE_ROLE);
    ASSERT_INT(e.code, SCHEMA_E_ROLE);
    cJSON *f = cJSON_Parse(GOOD_FIELDS);
    cJSON_ReplaceItemInObject(f, "fine_amount", cJSON_CreateNumber(500));
    ASSERT_INT(judge_tr(s, "simple", "draft", "decided", ROLE_OFFICER, f, &e),
               JUDGE_GUARD);
    ASSERT_INT(e.code, SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "fields.fine_amount");
    ASSERT(strstr(e.message, "500") && strstr(e.message, "200") && strstr(e.message, "Art. 51"));
    cJSON_ReplaceItemInObject(f, "fine_amount", cJSON_CreateNumber(200));
    ASSERT_INT(judge_tr(s, "simple", "draft", "decided", ROLE_OFFICER, f, &e),
               JUDGE_APPLY);
    cJSON_ReplaceItemInObject(f, "party", cJSON_Parse("{\"kind\":\"org\",\"name\":\"某公司\"}"));
    cJSON_ReplaceItemInObject(f, "fine_amount", cJSON_CreateNumber(2500));
    ASSERT_INT(judge_tr(s, "simple", "draft", "decided", ROLE_OFFICER, f, &e),
               JUDGE_APPLY);
    cJSON_ReplaceItemInObject(f, "fine_amount", cJSON_CreateNumber(3000.01));
    ASSERT_INT(judge_tr(s, "simple", "draft", "decided", ROLE_OFFICER, f, &e),
               JUDGE_GUARD);
    ASSERT_STR(e.path, "fields.fine_amount");
    cJSON_ReplaceItemInObject(f, "fine_amount", cJSON_CreateNumber(100));
    /* Two different officers (Art. 42). */
    cJSON_ReplaceItemInObject(f, "assist_officer", cJSON_CreateString("u1"));
    ASSERT_INT(judge_tr(s, "simple", "draft", "decided", ROLE_OFFICER, f, &e),
               JUDGE_GUARD);
    ASSERT_STR(e.path, "fields.assist_officer");
    ASSERT(strstr(e.message, "Art. 42"));
    cJSON_ReplaceItemInObject(f, "assist_officer", cJSON_CreateString("u2"));
    ASSERT_INT(judge_tr(s, "simple", "draft", "decided", ROLE_OFFICER, f, &e),
               JUDGE_APPLY);
    /* Every set field the guard needs. */
    static const char *const needed[] = {"party", "illegal_item_code", "decision_doc_no",
                                         "assignee", "assist_officer"};
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
        char want[64];
        cJSON *g = cJSON_Duplicate(f, 1);
        cJSON_DeleteItemFromObject(g, needed[i]);
        schema_judgement_t j =
            judge_tr(s, "simple", "draft", "decided", ROLE_OFFICER, g, &e);
        cJSON_Delete(g);
        snprintf(want, sizeof(want), "fields.%s", needed[i]);
        ASSERT_INT(j, JUDGE_GUARD);
        ASSERT_STR(e.path, want);
    }
    cJSON_Delete(f);
    ASSERT_INT(judge(s, "simple", "draft", "decided", ROLE_OFFICER, "{}", &e), JUDGE_GUARD);
    ASSERT_INT(judge_tr(s, "simple", "draft", "decided", ROLE_OFFICER, NULL, &e),
               JUDGE_GUARD);
    schema_free(s);
}

TEST(schema_lifecycle_general_filed_guard) {
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    ASSERT_INT(judge(s, "general", "clue", "filed", ROLE_SUPERVISOR,
                     "{\"illegal_item_code\":\"X\",\"assignee\":\"u1\",\"assist_officer\":\"u2\"}",
                     &e),
               JUDGE_GUARD);
    ASSERT_STR(e.path, "fields.party");
    ASSERT_INT(judge(s, "general", "clue", "filed", ROLE_SUPERVISOR,
                     "{\"party\":{\"kind\":\"person\",\"name\":\"X\"},\"illegal_item_code\":\"X\","
                     "\"assignee\":\"u1\"}",
                     &e),
               JUDGE_GUARD);
    ASSERT_STR(e.path, "fields.assist_officer");
    /* Role is judged before guards. */
    ASSERT_INT(judge(s, "general", "clue", "filed", ROLE_OFFICER, "{}", &e), JUDGE_ROLE);
    ASSERT_INT(judge(s, "general", "clue", "not_filed", ROLE_SUPERVISOR, "{}", &e), JUDGE_APPLY);
    schema_free(s);
}

TEST(schema_lifecycle_merge_rules) {
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    /* Already there, or already past it on the main path. */
    ASSERT_INT(judge(s, "general", "filed", "filed", ROLE_SUPERVISOR, "{}", &e), JUDGE_NOOP);
    ASSERT_INT(judge(s, "general", "investigating", "filed", ROLE_SUPERVISOR, "{}", &e),
               JUDGE_NOOP);
    /* A closed record takes no transition silently: a person decides (返工 after 结案). */
    ASSERT_INT(judge(s, "general", "closed", "investigating", ROLE_OFFICER, "{}", &e), JUDGE_CONFLICT);
    ASSERT_INT(judge(s, "digital", "closed", "dispatched", ROLE_SUPERVISOR, "{}", &e), JUDGE_CONFLICT);
    ASSERT_INT(judge(s, "digital", "closed", "closed", ROLE_SUPERVISOR, "{}", &e), JUDGE_NOOP);
    ASSERT_INT(judge(s, "general", "decided", "heard", ROLE_OFFICER, "{}", &e), JUDGE_NOOP);
    ASSERT_INT(judge(s, "digital", "processing", "dispatched", ROLE_SUPERVISOR, "{}", &e),
               JUDGE_NOOP);
    /* The rework loop is a transition, not a no-op. */
    ASSERT_INT(judge(s, "digital", "checking", "dispatched", ROLE_SUPERVISOR, "{}", &e),
               JUDGE_APPLY);
    /* Another branch from a state the record left. */
    ASSERT_INT(judge(s, "general", "filed", "not_filed", ROLE_SUPERVISOR, "{}", &e),
               JUDGE_CONFLICT);
    ASSERT_INT(judge(s, "general", "investigating", "transferred", ROLE_SUPERVISOR, "{}", &e),
               JUDGE_CONFLICT);
    ASSERT_INT(judge(s, "general", "not_filed", "filed", ROLE_SUPERVISOR, GOOD_FIELDS, &e),
               JUDGE_CONFLICT);
    ASSERT_INT(judge(s, "general", "not_filed", "transferred", ROLE_SUPERVISOR, "{}", &e),
               JUDGE_CONFLICT);
    ASSERT_INT(judge(s, "digital", "filed", "rejected", ROLE_SUPERVISOR, "{}", &e), JUDGE_CONFLICT);
    ASSERT_INT(judge(s, "digital", "dispatched", "rejected", ROLE_SUPERVISOR, "{}", &e),
               JUDGE_CONFLICT);
    ASSERT_INT(judge(s, "digital", "rejected", "filed", ROLE_SUPERVISOR, "{}", &e), JUDGE_CONFLICT);
    /* Not a transition of the procedure at all. */
    ASSERT_INT(judge(s, "general", "clue", "teleported", ROLE_ADMIN, "{}", &e), JUDGE_FORBIDDEN);
    ASSERT_INT(e.code, SCHEMA_E_TRANSITION);
    ASSERT_STR(e.path, "to");
    ASSERT_INT(judge(s, "general", "clue", "decided", ROLE_ADMIN, GOOD_FIELDS, &e),
               JUDGE_FORBIDDEN);
    ASSERT_INT(e.code, SCHEMA_E_TRANSITION);
    ASSERT_INT(judge(s, "simple", "draft", "investigating", ROLE_ADMIN, "{}", &e), JUDGE_FORBIDDEN);
    ASSERT_INT(judge(s, "general", "not_filed", "investigating", ROLE_ADMIN, "{}", &e),
               JUDGE_CONFLICT); /* not_filed is closed */
    ASSERT_INT(judge(s, "general", "clue", "void", ROLE_ADMIN, "{}", &e), JUDGE_FORBIDDEN);
    ASSERT_INT(judge(s, "summary", "clue", "filed", ROLE_ADMIN, "{}", &e), JUDGE_FORBIDDEN);
    ASSERT_INT(judge(s, "general", NULL, "filed", ROLE_ADMIN, "{}", &e), JUDGE_FORBIDDEN);
    schema_free(s);
}

TEST(schema_lifecycle_legal_review) {
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    const char *minor = "{\"is_major\":false}", *major = "{\"is_major\":true}";
    ASSERT_INT(judge(s, "general", "heard", "reviewed", ROLE_SUPERVISOR, minor, &e),
               JUDGE_APPLY);
    ASSERT_INT(judge(s, "general", "heard", "reviewed", ROLE_SUPERVISOR, "{}", &e),
               JUDGE_APPLY);
    ASSERT_INT(judge(s, "general", "heard", "reviewed", ROLE_ADMIN, minor, &e), JUDGE_APPLY);
    ASSERT_INT(judge(s, "general", "heard", "reviewed", ROLE_SUPERVISOR, major, &e),
               JUDGE_ROLE);
    ASSERT_INT(e.code, SCHEMA_E_ROLE);
    ASSERT(strstr(e.message, "is_major"));
    ASSERT_INT(judge(s, "general", "heard", "reviewed", ROLE_ADMIN, major, &e), JUDGE_ROLE);
    ASSERT_INT(judge(s, "general", "heard", "reviewed", ROLE_LEGAL_REVIEWER, major, &e),
               JUDGE_APPLY);
    ASSERT_INT(judge(s, "general", "heard", "reviewed", ROLE_LEGAL_REVIEWER, minor, &e),
               JUDGE_APPLY);
    ASSERT_INT(judge(s, "general", "heard", "reviewed", ROLE_OFFICER, minor, &e), JUDGE_ROLE);
    ASSERT_INT(judge(s, "general", "heard", "reviewed", ROLE_AUXILIARY, minor, &e), JUDGE_ROLE);
    ASSERT_INT(judge(s, "general", "heard", "reviewed", ROLE_NONE, minor, &e), JUDGE_ROLE);
    /* Stronger roles inherit: a legal reviewer may investigate, not file. */
    ASSERT_INT(judge(s, "general", "filed", "investigating", ROLE_LEGAL_REVIEWER, "{}", &e),
               JUDGE_APPLY);
    ASSERT_INT(judge(s, "general", "clue", "filed", ROLE_LEGAL_REVIEWER, GOOD_FIELDS, &e),
               JUDGE_ROLE);
    schema_free(s);
}

/* ------------------------------------------------------------------------- */
/* Write rules (field x role x state) and conflict resolution                 */
/* ------------------------------------------------------------------------- */

static int lookup_users(void *ctx, const char *id, schema_user_info_t *out) {
    (void)ctx;
    static const struct {
        const char *id;
        int active;
        schema_role_t role;
        const char *unit;
    } users[] = {{"u1", 1, ROLE_OFFICER, "U1"},   {"u2", 1, ROLE_OFFICER, "U1"}, {"ua", 1, ROLE_AUXILIARY, "U1"},
                 {"ux", 1, ROLE_OFFICER, "U2"},   {"ud", 0, ROLE_OFFICER, "U1"}, {"us", 1, ROLE_SUPERVISOR, "U1"}};
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++)
        if (strcmp(users[i].id, id) == 0) {
            out->active = users[i].active, out->role = users[i].role;
            snprintf(out->unit, sizeof out->unit, "%s", users[i].unit);
            return 0;
        }
    return -1;
}

static schema_write_t judge_w(const schema_t *s, const char *change, const char *proc, const char *status,
                              int voided, const char *fields, schema_role_t role, schema_err_t *e) {
    cJSON *c = cJSON_Parse(change), *f = cJSON_Parse(fields ? fields : "{\"unit\":\"U1\"}");
    cJSON *grids = cJSON_Parse("[\"110101001001001\"]");
    schema_view_t v = {.procedure = proc, .status = status, .voided = voided, .fields = f};
    schema_writer_t w = {.role = role, .unit = "U1", .grids = grids, .lookup = lookup_users};
    schema_write_t r = schema_judge_writes(s, c, &v, &w, e);
    cJSON_Delete(c);
    cJSON_Delete(f);
    cJSON_Delete(grids);
    return r;
}

TEST(schema_write_rules_field_role_state) {
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    /* unit: own unit at create; a supervisor's hand-over afterwards. */
    ASSERT_INT(judge_w(s, "{\"op\":\"create\",\"fields\":{\"unit\":\"U1\"}}", "digital", NULL, 0, NULL, ROLE_AUXILIARY, &e),
               WRITE_OK);
    ASSERT_INT(judge_w(s, "{\"op\":\"create\",\"fields\":{\"unit\":\"U2\"}}", "digital", NULL, 0, NULL, ROLE_OFFICER, &e),
               WRITE_FORBIDDEN);
    ASSERT_STR(e.path, "fields.unit");
    ASSERT_INT(e.code, SCHEMA_E_FORBIDDEN);
    ASSERT_INT(judge_w(s, "{\"op\":\"create\",\"fields\":{\"unit\":\"U2\"}}", "digital", NULL, 0, NULL, ROLE_ADMIN, &e),
               WRITE_OK);
    ASSERT_INT(judge_w(s, "{\"op\":\"update\",\"set\":{\"unit\":\"U2\"}}", "digital", "reported", 0, NULL, ROLE_OFFICER, &e),
               WRITE_FORBIDDEN);
    ASSERT_INT(judge_w(s, "{\"op\":\"update\",\"set\":{\"unit\":\"U2\"}}", "digital", "reported", 0, NULL, ROLE_SUPERVISOR,
                       &e),
               WRITE_OK);
    /* Re-sending the value the record holds is never refused. */
    ASSERT_INT(judge_w(s, "{\"op\":\"update\",\"set\":{\"unit\":\"U1\"}}", "digital", "reported", 0, NULL, ROLE_AUXILIARY,
                       &e),
               WRITE_OK);
    /* grid: patrolled by officers and auxiliaries; any for supervisors. */
    ASSERT_INT(judge_w(s, "{\"op\":\"update\",\"set\":{\"grid\":\"110101001001002\"}}", "digital", "reported", 0, NULL,
                       ROLE_OFFICER, &e),
               WRITE_FORBIDDEN);
    ASSERT_INT(judge_w(s, "{\"op\":\"update\",\"set\":{\"grid\":\"110101001001001\"}}", "digital", "reported", 0, NULL,
                       ROLE_OFFICER, &e),
               WRITE_OK);
    ASSERT_INT(judge_w(s, "{\"op\":\"update\",\"set\":{\"grid\":\"110101001001002\"}}", "digital", "reported", 0, NULL,
                       ROLE_SUPERVISOR, &e),
               WRITE_OK);
    /* assignee / assist_officer: active officers of the record's unit, different. */
    const char *mk = "{\"op\":\"create\",\"fields\":{\"unit\":\"U1\",\"assignee\":\"%s\",\"assist_officer\":\"%s\"}}";
    char buf[256];
    snprintf(buf, sizeof buf, mk, "u1", "u2");
    ASSERT_INT(judge_w(s, buf, "simple", NULL, 0, NULL, ROLE_OFFICER, &e), WRITE_OK);
    ASSERT_INT(judge_w(s, buf, "simple", NULL, 0, NULL, ROLE_AUXILIARY, &e), WRITE_FORBIDDEN);
    static const char *const bad[] = {"ua", "ux", "ud", "nobody"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(buf, sizeof buf, mk, "u1", bad[i]);
        ASSERT_INT(judge_w(s, buf, "simple", NULL, 0, NULL, ROLE_OFFICER, &e), WRITE_INVALID);
        ASSERT_STR(e.path, "fields.assist_officer");
    }
    snprintf(buf, sizeof buf, mk, "u1", "u1");
    ASSERT_INT(judge_w(s, buf, "simple", NULL, 0, NULL, ROLE_OFFICER, &e), WRITE_INVALID);
    ASSERT(strstr(e.message, "Art. 42") != NULL);
    /* Frozen from decided; a supervisor's correction with a reason changes it. */
    const char *fine = "{\"op\":\"update\",\"set\":{\"fine_amount\":3000}}";
    const char *corr = "{\"op\":\"correct\",\"set\":{\"fine_amount\":150},\"reason\":\"笔误\"}";
    ASSERT_INT(judge_w(s, fine, "simple", "draft", 0, NULL, ROLE_OFFICER, &e), WRITE_OK);
    ASSERT_INT(judge_w(s, fine, "simple", "decided", 0, NULL, ROLE_OFFICER, &e), WRITE_FROZEN);
    ASSERT_INT(e.code, SCHEMA_E_FROZEN);
    ASSERT_INT(judge_w(s, fine, "simple", "paid", 0, NULL, ROLE_ADMIN, &e), WRITE_FROZEN);
    ASSERT_INT(judge_w(s, corr, "simple", "decided", 0, NULL, ROLE_SUPERVISOR, &e), WRITE_OK);
    ASSERT_INT(judge_w(s, corr, "simple", "decided", 0, NULL, ROLE_OFFICER, &e), WRITE_FORBIDDEN);
    ASSERT_INT(judge_w(s, "{\"op\":\"correct\",\"set\":{\"fine_amount\":150},\"reason\":\"\"}", "simple", "decided", 0,
                       NULL, ROLE_SUPERVISOR, &e),
               WRITE_INVALID);
    ASSERT_STR(e.path, "reason");
    /* is_major is never cleared once reviewed, not even by a correction. */
    ASSERT_INT(judge_w(s, "{\"op\":\"correct\",\"set\":{\"is_major\":false},\"reason\":\"x\"}", "general", "reviewed", 0,
                       "{\"unit\":\"U1\",\"is_major\":true}", ROLE_SUPERVISOR, &e),
               WRITE_FROZEN);
    ASSERT_INT(judge_w(s, "{\"op\":\"update\",\"set\":{\"is_major\":false}}", "general", "concluded", 0,
                       "{\"unit\":\"U1\",\"is_major\":true}", ROLE_OFFICER, &e),
               WRITE_OK);
    /* A closed or voided record: appended notes and documents by a supervisor only. */
    const char *note = "{\"op\":\"update\",\"append\":{\"notes\":[{\"id\":\"n\",\"text\":\"x\"}]}}";
    ASSERT_INT(judge_w(s, note, "digital", "closed", 0, NULL, ROLE_SUPERVISOR, &e), WRITE_OK);
    ASSERT_INT(judge_w(s, note, "digital", "closed", 0, NULL, ROLE_OFFICER, &e), WRITE_FORBIDDEN);
    ASSERT_INT(judge_w(s, note, "digital", "reported", 1, NULL, ROLE_SUPERVISOR, &e), WRITE_OK);
    ASSERT_INT(judge_w(s, "{\"op\":\"update\",\"set\":{\"description\":\"x\"}}", "digital", "closed", 0, NULL,
                       ROLE_ADMIN, &e),
               WRITE_FROZEN);
    ASSERT_INT(judge_w(s, "{\"op\":\"update\",\"append\":{\"evidence\":[{\"id\":\"e\",\"sha256\":\"%s\"}]}}", "digital",
                       "rejected", 0, NULL, ROLE_ADMIN, &e),
               WRITE_FROZEN);
    ASSERT_INT(judge_w(s, corr, "simple", "closed", 0, NULL, ROLE_ADMIN, &e), WRITE_FROZEN);
    schema_free(s);
}

TEST(schema_resolution_runs_the_transition_guards) {
    schema_t *s = load();
    schema_err_t e;
    ASSERT(s);
    cJSON *bare = cJSON_Parse("{}"), *full = cJSON_Parse(GOOD_FIELDS);
    schema_view_t v = {.procedure = "general", .status = "not_filed", .fields = bare};
    ASSERT_INT(schema_judge_resolution(s, &v, "filed", ROLE_SUPERVISOR, &e), JUDGE_GUARD);
    ASSERT_STR(e.path, "fields.party");
    ASSERT_INT(schema_judge_resolution(s, &v, "filed", ROLE_OFFICER, &e), JUDGE_ROLE);
    v.fields = full;
    ASSERT_INT(schema_judge_resolution(s, &v, "filed", ROLE_SUPERVISOR, &e), JUDGE_APPLY);
    ASSERT_INT(schema_judge_resolution(s, &v, "not_filed", ROLE_SUPERVISOR, &e), JUDGE_NOOP);
    ASSERT_INT(schema_judge_resolution(s, &v, "teleported", ROLE_ADMIN, &e), JUDGE_FORBIDDEN);
    /* 返工 after 结案, resolved to dispatched: the 返工's own rule (supervisor). */
    v.procedure = "digital", v.status = "closed", v.fields = bare;
    ASSERT_INT(schema_judge_resolution(s, &v, "dispatched", ROLE_SUPERVISOR, &e), JUDGE_APPLY);
    ASSERT_INT(schema_judge_resolution(s, &v, "dispatched", ROLE_OFFICER, &e), JUDGE_ROLE);
    /* And the static guards a correction re-checks. */
    cJSON *over = cJSON_Parse(GOOD_FIELDS);
    cJSON_ReplaceItemInObject(over, "fine_amount", cJSON_CreateNumber(3000));
    ASSERT_INT(schema_check_passed_guards(s, "simple", "decided", over, &e), SCHEMA_E_INVALID);
    ASSERT_STR(e.path, "fields.fine_amount");
    ASSERT_INT(schema_check_passed_guards(s, "simple", "draft", over, &e), 0);
    cJSON_Delete(over);
    cJSON_Delete(bare);
    cJSON_Delete(full);
    schema_free(s);
}
