/* test_deadlines.c -- deadlines in working days and natural days: the
 * calendar module (pure functions around the 2026 holidays, a 调休 weekend
 * day, a year without a calendar), calendar files refused when wrong, the
 * schema's deadline table (schema_record_due), and on a real casesyncd: due
 * times in working days, evidence_due from captured_at, the decision_due
 * extension, the fallback in /metrics and the log, the grid rule from the
 * schema. */
#include "schema/calendar.h"
#include "schema/schema.h"
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")
#define PHONE(p, s, name, dev)                                                                               \
    ASSERT_MSG(std_phone(&(p), &(s), (name), (dev)) == 0, "login of %s failed", (name))
#define HOUR (3600000LL)

/* ms of a China wall-clock time. */
static int64_t cst(int y, int m, int d, int hh, int mm) {
    char buf[16];
    int64_t day = 0;
    snprintf(buf, sizeof buf, "%04d-%02d-%02d", y, m, d);
    if (calendar_parse_date(buf, &day) != 0) return -1;
    return calendar_day_start(day) + hh * HOUR + mm * 60000LL;
}

/* RFC 3339 UTC with milliseconds of a China wall-clock time (pool). */
static const char *cst_iso(int y, int m, int d, int hh, int mm) {
    int64_t ms = cst(y, m, d, hh, mm);
    int64_t day = ms >= 0 ? ms / 86400000LL : 0;
    int64_t rest = ms - day * 86400000LL;
    int yy, mo, dd;
    calendar_date(day, &yy, &mo, &dd);
    return hfmt("%04d-%02d-%02dT%02d:%02d:%02d.000Z", yy, mo, dd, (int)(rest / HOUR),
                (int)(rest / 60000 % 60), (int)(rest / 1000 % 60));
}

static calendar_t *shipped_calendar(void) {
    calendar_t *c = calendar_new();
    const char *dir = CASESYNC_SCHEMA_PATH;
    const char *slash = strrchr(dir, '/');
    for (int y = 2026; c && y <= 2027; y++) {
        char path[1200], msg[200];
        static char buf[1 << 16];
        snprintf(path, sizeof path, "%.*s/calendar/%d.json", (int)(slash - dir), dir, y);
        FILE *f = fopen(path, "rb");
        if (!f) return c;
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        if (calendar_add_year(c, buf, n, y, msg, sizeof msg) != 0) fprintf(stderr, "    %s: %s\n", path, msg);
    }
    return c;
}

/* ---- 1. the calendar: pure functions ---------------------------------------------------- */

TEST(deadline_working_days_around_2026_holidays) {
    calendar_t *c = h_keep(shipped_calendar(), (void (*)(void *))calendar_free);
    ASSERT(c != NULL);
    ASSERT_INT(calendar_year_kind(c, 2026), 1);
    ASSERT_INT(calendar_year_kind(c, 2027), 2); /* provisional: no State Council notice yet */
    ASSERT_INT(calendar_year_kind(c, 2028), 0);
    int64_t due;
    int fb = 0;

    /* National Day: decided Wed 30 Sep 10:00; 七日 to serve are working days
     * (Art. 85): Oct 1-7 off, Oct 8, 9, Sat Oct 10 (调休), 12, 13, 14, 15.
     * Due at the end of Oct 15. Calendar days would say Oct 7 10:00. */
    ASSERT_INT(calendar_due(c, cst(2026, 9, 30, 10, 0), 7, CAL_UNIT_WORKING_DAYS, 0, &due, &fb), 0);
    ASSERT_INT(due, cst(2026, 10, 16, 0, 0));
    ASSERT_INT(fb, 0);
    /* Three working days from the same day: Oct 8, 9 and the 调休 Saturday. */
    ASSERT_INT(calendar_due(c, cst(2026, 9, 30, 10, 0), 3, CAL_UNIT_WORKING_DAYS, 0, &due, &fb), 0);
    ASSERT_INT(due, cst(2026, 10, 11, 0, 0));

    /* Spring Festival: Fri 13 Feb + 3 working days: Sat Feb 14 (调休), then
     * Feb 15-23 off, Feb 24, 25. */
    ASSERT_INT(calendar_due(c, cst(2026, 2, 13, 15, 0), 3, CAL_UNIT_WORKING_DAYS, 0, &due, &fb), 0);
    ASSERT_INT(due, cst(2026, 2, 26, 0, 0));
    /* 调休 Sunday 4 Jan and Sunday 20 Sep are working days. */
    ASSERT_INT(calendar_due(c, cst(2026, 1, 3, 9, 0), 1, CAL_UNIT_WORKING_DAYS, 0, &due, &fb), 0);
    ASSERT_INT(due, cst(2026, 1, 5, 0, 0));
    ASSERT_INT(calendar_due(c, cst(2026, 9, 19, 9, 0), 1, CAL_UNIT_WORKING_DAYS, 0, &due, &fb), 0);
    ASSERT_INT(due, cst(2026, 9, 21, 0, 0));
    /* Zero working days: the end of the start day. */
    ASSERT_INT(calendar_due(c, cst(2026, 10, 1, 9, 0), 0, CAL_UNIT_WORKING_DAYS, 0, &due, &fb), 0);
    ASSERT_INT(due, cst(2026, 10, 2, 0, 0));
    ASSERT_INT(fb, 0);

    /* The day is China's: 16:30 UTC on Fri 9 Oct is 00:30 on the 调休
     * Saturday, so one working day later is Monday 12 Oct, not Saturday. */
    ASSERT_INT(calendar_due(c, cst(2026, 10, 10, 0, 30), 1, CAL_UNIT_WORKING_DAYS, 0, &due, &fb), 0);
    ASSERT_INT(due, cst(2026, 10, 13, 0, 0));

    /* Natural days: 15 days to pay from Sun 20 Sep end on Mon 5 Oct, a
     * holiday; with extend the period runs to the next working day, Oct 8. */
    ASSERT_INT(calendar_due(c, cst(2026, 9, 20, 10, 0), 15, CAL_UNIT_DAYS, 0, &due, &fb), 0);
    ASSERT_INT(due, cst(2026, 10, 6, 0, 0));
    ASSERT_INT(calendar_due(c, cst(2026, 9, 20, 10, 0), 15, CAL_UNIT_DAYS, 1, &due, &fb), 0);
    ASSERT_INT(due, cst(2026, 10, 9, 0, 0));
    /* 90 natural days from 1 Jul: the last day is 29 Sep. */
    ASSERT_INT(calendar_due(c, cst(2026, 7, 1, 10, 0), 90, CAL_UNIT_DAYS, 0, &due, &fb), 0);
    ASSERT_INT(due, cst(2026, 9, 30, 0, 0));
    /* Hours count from the time itself. */
    ASSERT_INT(calendar_due(c, cst(2026, 10, 1, 9, 15), 24, CAL_UNIT_HOURS, 0, &due, &fb), 0);
    ASSERT_INT(due, cst(2026, 10, 2, 9, 15));
    ASSERT_INT(fb, 0);

    /* Across the year end into the provisional 2027: 1 Jan 2027 is off. */
    ASSERT_INT(calendar_due(c, cst(2026, 12, 31, 9, 0), 1, CAL_UNIT_WORKING_DAYS, 0, &due, &fb), 0);
    ASSERT_INT(due, cst(2027, 1, 5, 0, 0));
    ASSERT_INT(fb, 0);

    /* 2028 has no calendar: Monday to Friday, and it says so. Fri 3 Mar 2028
     * + 1 working day is Monday 6 Mar. */
    ASSERT_INT(calendar_due(c, cst(2028, 3, 3, 10, 0), 1, CAL_UNIT_WORKING_DAYS, 0, &due, &fb), 0);
    ASSERT_INT(due, cst(2028, 3, 7, 0, 0));
    ASSERT_INT(fb, 2028);

    /* Nonsense is refused, never looped on. */
    ASSERT_INT(calendar_due(c, 0, -1, CAL_UNIT_DAYS, 0, &due, &fb), -1);
    ASSERT_INT(calendar_due(c, 0, 1000000, CAL_UNIT_WORKING_DAYS, 0, &due, &fb), -1);
    ASSERT_INT(calendar_due(c, 0, 1, (calendar_unit_t)7, 0, &due, &fb), -1);
}

TEST(deadline_calendar_files_checked) {
    calendar_t *c = h_keep(calendar_new(), (void (*)(void *))calendar_free);
    char msg[200];
    static const struct {
        const char *json, *why;
    } bad[] = {
        {"{\"year\":2026,\"source\":\"x\",\"holidays\":[\"2025-12-31\"],\"workdays\":[]}", "not in 2026"},
        {"{\"year\":2026,\"source\":\"x\",\"holidays\":[\"2026-02-30\"],\"workdays\":[]}", "not a date"},
        {"{\"year\":2026,\"source\":\"x\",\"holidays\":[],\"workdays\":[\"2026-01-05\"]}", "weekday"},
        {"{\"year\":2026,\"source\":\"x\",\"holidays\":[\"2026-01-04\"],\"workdays\":[\"2026-01-04\"]}",
         "both"},
        {"{\"year\":2026,\"source\":\"x\",\"holidays\":[\"2026-01-01\",\"2026-01-01\"],\"workdays\":[]}",
         "twice"},
        {"{\"year\":2026,\"source\":\"x\",\"holidays\":[],\"workdays\":[],\"extra\":1}", "unknown member"},
        {"{\"year\":2026,\"holidays\":[],\"workdays\":[]}", "source"},
        {"{\"year\":2027,\"source\":\"x\",\"holidays\":[],\"workdays\":[]}", "named for 2026"},
        {"[1,2]", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        msg[0] = 0;
        ASSERT_MSG(calendar_add_year(c, bad[i].json, strlen(bad[i].json), 2026, msg, sizeof msg) == -1,
                   "accepted: %s", bad[i].json);
        ASSERT_MSG(strstr(msg, bad[i].why) != NULL, "message \"%s\" does not say \"%s\"", msg, bad[i].why);
    }
    ASSERT_INT(calendar_year_kind(c, 2026), 0);
    const char *ok =
        "{\"year\":2026,\"source\":\"x\",\"holidays\":[\"2026-01-01\"],\"workdays\":[\"2026-01-04\"]}";
    ASSERT_INT(calendar_add_year(c, ok, strlen(ok), 2026, msg, sizeof msg), 0);
    ASSERT_INT(calendar_add_year(c, ok, strlen(ok), 2026, msg, sizeof msg), -1); /* twice */
    ASSERT_INT(calendar_is_working_day(c, calendar_day_of(cst(2026, 1, 1, 12, 0)), NULL), 0);
    ASSERT_INT(calendar_is_working_day(c, calendar_day_of(cst(2026, 1, 4, 12, 0)), NULL), 1);
    ASSERT_INT(calendar_is_working_day(c, calendar_day_of(cst(2026, 1, 10, 12, 0)), NULL), 0);
}

/* ---- 2. the schema's deadline table -------------------------------------------------------- */

static int64_t meta_at_ms;
static int64_t fake_field_at(const void *ctx, const char *field) {
    (void)ctx;
    return strcmp(field, "decision_extension") == 0 ? meta_at_ms : -1;
}

TEST(deadline_schema_record_due) {
    schema_t *s = NULL;
    schema_err_t e;
    ASSERT_MSG(schema_load_file(CASESYNC_SCHEMA_PATH, &s, &e) == 0, "load: %s", e.message);
    h_keep(s, (void (*)(void *))schema_free);
    ASSERT_INT(schema_calendar_year_kind(s, 2026), 1);
    ASSERT_INT(schema_deadline_unit(s, "service_due"), CAL_UNIT_WORKING_DAYS);
    ASSERT_INT(schema_deadline_unit(s, "record_due"), CAL_UNIT_WORKING_DAYS);
    ASSERT_INT(schema_deadline_unit(s, "payment_due"), CAL_UNIT_DAYS);
    ASSERT_INT(schema_deadline_unit(s, "decision_due"), CAL_UNIT_DAYS);
    ASSERT_INT(schema_deadline_unit(s, "evidence_due"), CAL_UNIT_HOURS);
    int64_t due;
    const char *by;

    /* Simple, decided on 30 Sep: record_due (3 working days) comes first. */
    cJSON *entered = h_keep(cJSON_CreateObject(), (void (*)(void *))cJSON_Delete);
    cJSON_AddNumberToObject(entered, "decided", (double)cst(2026, 9, 30, 10, 0));
    cJSON *fields = h_keep(cJSON_Parse("{}"), (void (*)(void *))cJSON_Delete);
    schema_deadline_record_t r = {"simple", "decided", "open_air_bbq", entered, fields, NULL, NULL};
    ASSERT_INT(schema_record_due(s, &r, &due, &by), 0);
    ASSERT_STR(by, "record_due");
    ASSERT_INT(due, cst(2026, 10, 11, 0, 0));
    /* Closed or off the path: nothing runs. */
    r.status = "closed";
    ASSERT_INT(schema_record_due(s, &r, &due, &by), -1);

    /* Digital: dispatched, the type's disposal limit in hours. */
    cJSON_AddNumberToObject(entered, "dispatched", (double)cst(2026, 10, 12, 10, 0));
    schema_deadline_record_t d = {"digital", "processing", "illegal_parking", entered, fields, NULL, NULL};
    ASSERT_INT(schema_record_due(s, &d, &due, &by), 0);
    ASSERT_STR(by, "dispose_due");
    ASSERT_INT(due, cst(2026, 10, 12, 11, 0));
    d.type = "illegal_construction";
    ASSERT_INT(schema_record_due(s, &d, &due, &by), 0);
    ASSERT_INT(due, cst(2026, 10, 17, 10, 0));

    /* General, filed 1 Jul: decision_due in 90 natural days; a supervisor's
     * extension recorded in time adds 30, one recorded too late does not. */
    cJSON_AddNumberToObject(entered, "filed", (double)cst(2026, 7, 1, 10, 0));
    schema_deadline_record_t g = {
        "general", "investigating", "unlicensed_vending", entered, fields, fake_field_at, NULL};
    ASSERT_INT(schema_record_due(s, &g, &due, &by), 0);
    ASSERT_STR(by, "decision_due");
    ASSERT_INT(due, cst(2026, 9, 30, 0, 0));
    cJSON *ext = h_keep(cJSON_Parse("{\"decision_extension\":{\"doc_no\":\"YQ-1\",\"reason\":\"complex\"}}"),
                        (void (*)(void *))cJSON_Delete);
    g.fields = ext;
    meta_at_ms = cst(2026, 9, 1, 9, 0);
    ASSERT_INT(schema_record_due(s, &g, &due, &by), 0);
    ASSERT_INT(due, cst(2026, 10, 30, 0, 0));
    meta_at_ms = cst(2026, 10, 2, 9, 0);
    ASSERT_INT(schema_record_due(s, &g, &due, &by), 0);
    ASSERT_INT(due, cst(2026, 9, 30, 0, 0));

    /* The extension field is the supervisor's to set. */
    cJSON *v =
        h_keep(cJSON_Parse("{\"doc_no\":\"YQ-1\",\"reason\":\"complex\"}"), (void (*)(void *))cJSON_Delete);
    ASSERT_INT(schema_check_set(s, "decision_extension", v, &e), 0);
    cJSON *ch = h_keep(cJSON_CreateObject(), (void (*)(void *))cJSON_Delete);
    cJSON_AddStringToObject(ch, "op", "update");
    cJSON_AddItemToObject(cJSON_AddObjectToObject(ch, "set"), "decision_extension", cJSON_Duplicate(v, 1));
    schema_view_t view = {.procedure = "general", .status = "investigating", .fields = NULL};
    schema_writer_t off = {.role = ROLE_OFFICER, .unit = "U1"}, sup = {.role = ROLE_SUPERVISOR, .unit = "U1"};
    ASSERT_INT(schema_judge_writes(s, ch, &view, &off, &e), WRITE_FORBIDDEN);
    ASSERT_INT(e.code, SCHEMA_E_FORBIDDEN);
    ASSERT_INT(schema_judge_writes(s, ch, &view, &sup, &e), WRITE_OK);

    /* The grid rule, for whoever asks (a user's grids). */
    cJSON *grid = h_keep(cJSON_CreateString("110101001001001"), (void (*)(void *))cJSON_Delete);
    cJSON *short_grid = h_keep(cJSON_CreateString("1101"), (void (*)(void *))cJSON_Delete);
    ASSERT_INT(schema_check_value(s, "grid", grid, &e), 0);
    ASSERT_INT(schema_check_value(s, "grid", short_grid, &e), SCHEMA_E_INVALID);
}

/* ---- 3. on the server ------------------------------------------------------------------------ */

static const char *decision_fields(const char *assignee, const char *assist) {
    return hfmt(
        "{\"party\":{\"kind\":\"person\",\"name\":\"Wang Wu\"},\"illegal_item_code\":\"C0501-003\","
        "\"assignee\":\"%s\",\"assist_officer\":\"%s\",\"decision_doc_no\":\"JY-0042\",\"fine_amount\":150}",
        assignee, assist);
}

static const char *create_at(const char *id, const char *type, const char *procedure, const char *extra,
                             const char *at) {
    cJSON *ch = jparse(ch_create_in(id, type, procedure, "U1", GRID1, extra));
    cJSON_ReplaceItemInObjectCaseSensitive(ch, "at", cJSON_CreateString(at));
    return jprint(ch);
}

static const char *transition_at(const char *id, long long base, const char *to, const char *at) {
    return hfmt(
        "{\"op\":\"transition\",\"record_id\":\"%s\",\"base_version\":%lld,\"at\":\"%s\",\"to\":\"%s\"}", id,
        base, at, to);
}

/* The due_at cell (the last column) of the record's row in the CSV export. */
static const char *export_due(srv_t *s, const char *token, const char *id) {
    resp_t r = http(s, "GET", "/v1/export?format=csv", token, NULL, NULL);
    if (r.status != 200) return NULL;
    const char *row = strstr(r.body, hfmt("\r\n%s,", id));
    if (!row) return NULL;
    const char *end = strstr(row + 2, "\r\n");
    /* due_at is the 20th column: three (source, ticket_no, party_id) follow it. */
    for (int k = 0; k < 3 && end > row; k++) {
        end--;
        while (end > row && *end != ',')
            end--;
    }
    const char *cell = end;
    while (cell > row && cell[-1] != ',')
        cell--;
    return hfmt("%.*s", (int)(end - cell), cell);
}

static int all_applied(resp_t *r) {
    cJSON *it;
    if (r->status != 200) return 0;
    cJSON_ArrayForEach(it, jget(resp_json(r), "results")) {
        if (!jstr(it, "status") || strcmp(jstr(it, "status"), "applied") != 0) {
            fprintf(stderr, "    not applied: %s\n", jprint(it));
            return 0;
        }
    }
    return 1;
}

TEST(deadline_due_in_working_days_on_server) {
    srv_t s;
    START(s);
    phone_t adm;
    PHONE(adm, s, "admin", "dev-adm");
    const char *o1 = std_user(&s, "off1"), *o2 = std_user(&s, "off2");
    ASSERT(o1 && o2);
    /* A simple decision on the spot, Wed 30 Sep 2026 10:00: 备案 within 3
     * working days -- Oct 8, 9 and the 调休 Saturday Oct 10. */
    resp_t r =
        phone_push(&adm, changes(create_at("dl-simple-01", "open_air_bbq", "simple", decision_fields(o1, o2),
                                           cst_iso(2026, 9, 30, 9, 50)),
                                 transition_at("dl-simple-01", 1, "decided", cst_iso(2026, 9, 30, 10, 0))));
    ASSERT(all_applied(&r));
    /* A 数字城管 event dispatched Mon 12 Oct 10:00: illegal parking, 1 hour. */
    static const char *const digital[] = {"filed", "dispatched", "processing"};
    r = phone_push(
        &adm,
        changes(create_at("dl-digital-01", "illegal_parking", "digital", NULL, cst_iso(2026, 10, 12, 9, 0)),
                transition_at("dl-digital-01", 1, digital[0], cst_iso(2026, 10, 12, 9, 30)),
                transition_at("dl-digital-01", 2, digital[1], cst_iso(2026, 10, 12, 10, 0)),
                transition_at("dl-digital-01", 3, digital[2], cst_iso(2026, 10, 12, 10, 20))));
    ASSERT(all_applied(&r));
    /* A general case filed Wed 1 Jul 2026: 90 natural days; the supervisor
     * extends it on 1 Sep (an officer may not). */
    r = phone_push(&adm, changes(create_at("dl-general-01", "unlicensed_vending", "general",
                                           decision_fields(o1, o2), cst_iso(2026, 7, 1, 9, 0)),
                                 transition_at("dl-general-01", 1, "filed", cst_iso(2026, 7, 1, 10, 0))));
    ASSERT(all_applied(&r));
    ASSERT_STR(export_due(&s, adm.token, "dl-simple-01"), cst_iso(2026, 10, 11, 0, 0));
    ASSERT_STR(export_due(&s, adm.token, "dl-digital-01"), cst_iso(2026, 10, 12, 11, 0));
    ASSERT_STR(export_due(&s, adm.token, "dl-general-01"), cst_iso(2026, 9, 30, 0, 0));

    phone_t off;
    ASSERT(phone_login(&off, &s, "off1", std_pass("off1"), "dev-o1") == 0);
    const char *ext = "{\"decision_extension\":{\"doc_no\":\"YQ-2026-3\",\"reason\":\"需要鉴定\"}}";
    r = phone_push(&off, changes(ch_update_at("dl-general-01", 2, cst_iso(2026, 9, 1, 9, 0), ext, NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "rejected");
    ASSERT_STR(export_due(&s, adm.token, "dl-general-01"), cst_iso(2026, 9, 30, 0, 0));
    r = phone_push(&adm, changes(ch_update_at("dl-general-01", 2, cst_iso(2026, 9, 1, 9, 0), ext, NULL)));
    ASSERT(all_applied(&r));
    ASSERT_STR(export_due(&s, adm.token, "dl-general-01"), cst_iso(2026, 10, 30, 0, 0));
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(deadline_evidence_due_from_capture) {
    srv_t s;
    START(s);
    phone_t a, sup;
    PHONE(a, s, "off1", "dev-A");
    PHONE(sup, s, "sup1", "dev-S");
    /* Photographed three days ago offline, pushed now, bytes never sent:
     * 24 hours from capture have passed. A second item without captured_at
     * counts from the push and is not due yet. */
    const char *captured = iso_now(-3 * 86400000LL);
    const char *items = hfmt("{\"evidence\":[{\"id\":\"ev-old\",\"sha256\":\"%064d\",\"size\":10,\"kind\":"
                             "\"photo\",\"captured_at\":\"%s\"},"
                             "{\"id\":\"ev-new\",\"sha256\":\"%063d1\",\"size\":10,\"kind\":\"photo\"}]}",
                             0, captured, 0);
    resp_t r = phone_push(&a, changes(ch_create("dl-evidence-01", "general", items)));
    ASSERT(all_applied(&r));
    r = http(&s, "GET", "/v1/evidence/missing", sup.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    cJSON *list = jget(resp_json(&r), "items");
    ASSERT_MSG(cJSON_GetArraySize(list) == 1, "missing evidence: %s", jprint(list));
    ASSERT_JSTR(cJSON_GetArrayItem(list, 0), "item_id", "ev-old");
    /* Due 24 h after capture (to the millisecond). */
    int64_t cap_ms = 0, due_ms = 0;
    {
        int y, mo, d, hh, mm, ss, ms;
        ASSERT(sscanf(captured, "%d-%d-%dT%d:%d:%d.%dZ", &y, &mo, &d, &hh, &mm, &ss, &ms) == 7);
        cap_ms = cst(y, mo, d, hh + 8, mm) + ss * 1000LL + ms;
        const char *due = jstr(cJSON_GetArrayItem(list, 0), "due_at");
        ASSERT(due && sscanf(due, "%d-%d-%dT%d:%d:%d.%dZ", &y, &mo, &d, &hh, &mm, &ss, &ms) == 7);
        due_ms = cst(y, mo, d, hh + 8, mm) + ss * 1000LL + ms;
    }
    ASSERT_INT(due_ms - cap_ms, 24 * HOUR);
    /* The unit's figure counts it too. */
    r = http(&s, "GET", "/v1/stats", sup.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_JINT(resp_json(&r), "evidence_missing", 1);
    ASSERT_INT(srv_stop(&s), 0);
}

/* Copies the shipped schema into dir, with a calendar/ holding only the
 * given shipped years (none: an empty folder). */
static int schema_copy(const char *dir, int with2027) {
    char cmd[2048];
    const char *src = CASESYNC_SCHEMA_PATH;
    const char *slash = strrchr(src, '/');
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/calendar' && cp '%s' '%s/schema.json'%s%.*s%s%s%s", dir, src, dir,
             with2027 ? " && cp '" : "", with2027 ? (int)(slash - src) : 0, src,
             with2027 ? "/calendar/2027.json' '" : "", with2027 ? dir : "", with2027 ? "/calendar/'" : "");
    return system(cmd) == 0 ? 0 : -1;
}

TEST(deadline_calendar_fallback_in_metrics_and_log) {
    srv_t s;
    char dir[] = "/tmp/casesync-cal-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    ASSERT_INT(schema_copy(dir, 1), 0);
    /* Only 2027 beside the schema: 2026 (now, and every deadline below)
     * counts Monday to Friday, says so in /metrics and once in the log. */
    ASSERT_MSG(srv_start_config(&s, hfmt("{\"schema_path\":\"%s/schema.json\"}", dir)) == 0, "did not start");
    phone_t adm;
    PHONE(adm, s, "admin", "dev-adm");
    const char *o1 = std_user(&s, "off1"), *o2 = std_user(&s, "off2");
    resp_t r =
        phone_push(&adm, changes(create_at("dl-simple-02", "open_air_bbq", "simple", decision_fields(o1, o2),
                                           cst_iso(2026, 9, 30, 9, 50)),
                                 transition_at("dl-simple-02", 1, "decided", cst_iso(2026, 9, 30, 10, 0))));
    ASSERT(all_applied(&r));
    /* Monday to Friday: Oct 1, 2, 5 -- the holidays are not known. */
    ASSERT_STR(export_due(&s, adm.token, "dl-simple-02"), cst_iso(2026, 10, 6, 0, 0));
    r = http(&s, "GET", "/metrics", adm.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(strstr(r.body, "casesync_calendar_fallback{year=\"2026\"} 1\n") != NULL, "no fallback metric");
    ASSERT_MSG(strstr(r.body, "casesync_calendar_year{year=\"2027\"} 2\n") != NULL,
               "2027 not shown provisional");
    ASSERT_MSG(strstr(r.body, "casesync_calendar_year{year=\"2026\"}") == NULL, "2026 shown as loaded");
    /* Once in the log for 2026, however many deadlines fell back. */
    r = phone_push(&adm, changes(create_at("dl-simple-03", "open_air_bbq", "simple", decision_fields(o1, o2),
                                           cst_iso(2026, 11, 2, 9, 50)),
                                 transition_at("dl-simple-03", 1, "decided", cst_iso(2026, 11, 2, 10, 0))));
    ASSERT(all_applied(&r));
    ASSERT_INT(srv_stop(&s), 0);
    FILE *f = fopen(hfmt("%s/server.log", s.dir), "r");
    ASSERT(f != NULL);
    static char logbuf[1 << 20];
    size_t n = fread(logbuf, 1, sizeof logbuf - 1, f);
    fclose(f);
    logbuf[n] = 0;
    int times = 0;
    for (const char *p = logbuf; (p = strstr(p, "no working-day calendar for 2026")) != NULL; p++)
        times++;
    ASSERT_MSG(times == 1, "the fallback for 2026 is logged %d times", times);
    ASSERT(system(hfmt("rm -rf '%s'", dir)) == 0);
}

TEST(deadline_broken_calendar_refuses_start) {
    srv_t s;
    char dir[] = "/tmp/casesync-cal-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    ASSERT_INT(schema_copy(dir, 0), 0);
    FILE *f = fopen(hfmt("%s/calendar/2026.json", dir), "w");
    ASSERT(f != NULL);
    fputs("{\"year\":2026,\"source\":\"typo\",\"holidays\":[\"2026-10-32\"],\"workdays\":[]}", f);
    ASSERT(fclose(f) == 0);
    /* Deadlines counted on a wrong calendar would be wrong in silence: no start. */
    ASSERT_MSG(srv_start_config(&s, hfmt("{\"schema_path\":\"%s/schema.json\"}", dir)) != 0,
               "casesyncd started with a broken calendar file");
    ASSERT(system(hfmt("rm -rf '%s'", dir)) == 0);
}

TEST(deadline_user_grids_checked_by_schema) {
    srv_t s;
    START(s);
    phone_t adm;
    PHONE(adm, s, "admin", "dev-adm");
    resp_t r =
        http(&s, "POST", "/v1/admin/users", adm.token,
             "{\"username\":\"g.bad\",\"password\":\"Secret-pass-123\",\"role\":\"officer\",\"unit\":\"U1\","
             "\"grids\":[\"1101010010010\"]}",
             NULL);
    ASSERT_ERROR(r, 422, "validation_failed");
    ASSERT_JSTR(resp_json(&r), "error.field", "grids[0]");
    r = http(&s, "POST", "/v1/admin/users", adm.token,
             "{\"username\":\"g.ok\",\"password\":\"Secret-pass-123\",\"role\":\"officer\",\"unit\":\"U1\","
             "\"grids\":[\"110101001001001\"]}",
             NULL);
    ASSERT_STATUS(r, 201);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(deadline_evidence_capture_in_future_counts_from_push) {
    srv_t s;
    /* Due as soon as captured: a phone that claims to capture next week would
     * postpone its own deadline; the server counts such an item from the push. */
    ASSERT_MSG(srv_start_config(&s, "{\"evidence_deadline_hours\":0}") == 0, "did not start");
    phone_t a, sup;
    PHONE(a, s, "off1", "dev-A");
    PHONE(sup, s, "sup1", "dev-S");
    const char *items =
        hfmt("{\"evidence\":[{\"id\":\"ev-future\",\"sha256\":\"%064d\",\"size\":10,\"kind\":\"photo\","
             "\"captured_at\":\"%s\"}]}",
             0, iso_now(7 * 86400000LL));
    resp_t r = phone_push(&a, changes(ch_create("dl-evidence-02", "general", items)));
    ASSERT(all_applied(&r));
    r = http(&s, "GET", "/v1/evidence/missing", sup.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    cJSON *it = cJSON_GetArrayItem(jget(resp_json(&r), "items"), 0);
    ASSERT_MSG(it != NULL, "the item with a future capture time is not due: %s", r.body);
    ASSERT_JSTR(it, "due_at", jstr(it, "pushed_at"));
    ASSERT_INT(srv_stop(&s), 0);
}
