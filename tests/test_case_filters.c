/* test_case_filters.c -- the source, procedure, opened-range and
 * updated-range filters of GET /v1/cases and /v1/export, against a fixture
 * whose matching sets are worked out by hand below, and the time-zone setting
 * the console reads from GET /console/api/session. */
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>

#define PHONE(p, s, name, dev)                                                                               \
    ASSERT_MSG(std_phone(&(p), &(s), (name), (dev)) == 0, "login of %s failed", (name))

/* A create at a China wall-clock time of 2026 (the create's `at` is the opened time). */
static const char *create_at(const char *id, const char *procedure, const char *source, const char *unit,
                             const char *china_time) {
    cJSON *ch =
        jparse(ch_create_in(id, TYPE_VENDING, procedure, unit, GRID1, hfmt("{\"source\":\"%s\"}", source)));
    cJSON_ReplaceItemInObjectCaseSensitive(ch, "at", cJSON_CreateString(hfmt("2026-%s+08:00", china_time)));
    return jprint(ch);
}

/* The ids of a page or an export, in order, joined by commas. */
static const char *ids_of(const cJSON *items) {
    char *out = hfmt("%s", "");
    for (const cJSON *x = items ? items->child : NULL; x; x = x->next)
        out = hfmt("%s%s%s", out, *out ? "," : "", jstr(x, "id"));
    return out;
}

/* Every page of a query, followed to the end: the ids joined by commas. */
static const char *all_ids(srv_t *s, const char *token, const char *query) {
    const char *out = "", *cursor = "";
    for (int i = 0; i < 50; i++) {
        resp_t r =
            http(s, "GET", hfmt("/v1/cases?%s&limit=500%s%s", query, *cursor ? "&cursor=" : "", cursor),
                 token, NULL, NULL);
        if (r.status != 200) return hfmt("HTTP %ld %s", r.status, r.body);
        const char *page = ids_of(jget(resp_json(&r), "items"));
        out = hfmt("%s%s%s", out, *out && *page ? "," : "", page);
        const char *next = jstr(resp_json(&r), "next");
        if (!next) return out;
        cursor = next; /* opaque; base64url needs no escaping */
    }
    return "too many pages";
}

/*
 * The fixture (ids cf-<x>-case, unit U1 unless said), opened at China times:
 *   f01 digital patrol   10-01 09:00
 *   f02 digital hotline  10-05 09:00
 *   f03 general hotline  10-10 09:00
 *   f04 general patrol   10-15 09:00
 *   f05 simple  patrol   10-20 09:00
 *   f06 digital hotline  10-31 23:59  (the last minute of October)
 *   f07 digital hotline  11-01 00:00  (the first minute of November)
 *   f08 general petition 11-02 09:00
 *   g01 digital hotline  10-05 09:00  unit U2 (never a U1 supervisor's)
 * After all are pushed, T is noted and f03 and f05 are updated.
 */
TEST(case_filters_source_procedure_and_date_ranges_hand_computed) {
    srv_t s = {.slot = -1};
    ASSERT_MSG(srv_start(&s) == 0, "casesyncd did not start");
    phone_t adm, sup;
    PHONE(adm, s, "admin", "filt-admin");
    PHONE(sup, s, "sup1", "filt-sup1");
    resp_t r =
        phone_push(&adm, changes(create_at("cf-f01-case", "digital", "patrol", "U1", "10-01T09:00:00"),
                                 create_at("cf-f02-case", "digital", "hotline", "U1", "10-05T09:00:00"),
                                 create_at("cf-f03-case", "general", "hotline", "U1", "10-10T09:00:00"),
                                 create_at("cf-f04-case", "general", "patrol", "U1", "10-15T09:00:00"),
                                 create_at("cf-f05-case", "simple", "patrol", "U1", "10-20T09:00:00"),
                                 create_at("cf-f06-case", "digital", "hotline", "U1", "10-31T23:59:00"),
                                 create_at("cf-f07-case", "digital", "hotline", "U1", "11-01T00:00:00"),
                                 create_at("cf-f08-case", "general", "petition", "U1", "11-02T09:00:00"),
                                 create_at("cf-g01-case", "digital", "hotline", "U2", "10-05T09:00:00")));
    ASSERT_STATUS(r, 200);
    for (int i = 0; i < 9; i++)
        ASSERT_MSG(strcmp(jstr(resp_json(&r), hfmt("results[%d].status", i)), "applied") == 0,
                   "create %d: %s", i, r.body);
    sleep_ms(30);
    const char *t = iso_now(0);
    sleep_ms(30);
    r = phone_push(&adm, changes(ch_update("cf-f03-case", 1, "{\"description\":\"更新\"}", NULL),
                                 ch_update("cf-f05-case", 1, "{\"description\":\"更新\"}", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(strstr(r.body, "\"applied\"") && !strstr(r.body, "rejected"), "updates: %s", r.body);

    const char *tok = sup.token;
    /* Exact matches on fields.source and fields.procedure (unit index, id order). */
    ASSERT_STR(all_ids(&s, tok, "source=hotline"), "cf-f02-case,cf-f03-case,cf-f06-case,cf-f07-case");
    ASSERT_STR(all_ids(&s, tok, "procedure=digital"), "cf-f01-case,cf-f02-case,cf-f06-case,cf-f07-case");
    ASSERT_STR(all_ids(&s, tok, "source=hotline&procedure=digital"), "cf-f02-case,cf-f06-case,cf-f07-case");
    ASSERT_STR(all_ids(&s, tok, "source=media"), "");
    /* October by dates (midnight China time): f06 at 23:59 is in, f07 at 00:00 is out. */
    ASSERT_STR(all_ids(&s, tok, "opened_from=2026-10-01&opened_to=2026-11-01"),
               "cf-f01-case,cf-f02-case,cf-f03-case,cf-f04-case,cf-f05-case,cf-f06-case");
    /* [from, to): f02 at exactly from is in, f04 at exactly to is out (opened index, time order). */
    ASSERT_STR(all_ids(&s, tok, "opened_from=2026-10-05T09:00:00%2B08:00&opened_to=2026-10-15T01:00:00Z"),
               "cf-f02-case,cf-f03-case");
    ASSERT_STR(all_ids(&s, tok, "opened_from=2026-11-01"), "cf-f07-case,cf-f08-case");
    ASSERT_STR(all_ids(&s, tok, "opened_to=2026-10-05"), "cf-f01-case");
    ASSERT_STR(all_ids(&s, tok, "source=hotline&opened_from=2026-10-01&opened_to=2026-11-01"),
               "cf-f02-case,cf-f03-case,cf-f06-case");
    ASSERT_STR(all_ids(&s, tok, "procedure=general&opened_from=2026-10-01&opened_to=2026-11-01&status=filed"),
               "");
    /* updated_at is server time: f03 and f05 were updated after t, the rest before. */
    ASSERT_STR(all_ids(&s, tok, hfmt("updated_from=%s", t)), "cf-f03-case,cf-f05-case");
    ASSERT_STR(all_ids(&s, tok, hfmt("updated_to=%s&source=patrol", t)), "cf-f01-case,cf-f04-case");
    ASSERT_STR(all_ids(&s, tok, hfmt("updated_after=%s&updated_to=2999-01-01&procedure=simple", t)),
               "cf-f05-case");
    /* The admin reads every unit: g01 joins (the city-wide opened index: time,
     * then id, so g01 follows f02, opened the same minute). */
    ASSERT_STR(all_ids(&s, adm.token, "source=hotline&opened_from=2026-10-01&opened_to=2026-11-01"),
               "cf-f02-case,cf-g01-case,cf-f03-case,cf-f06-case");

    /* A page holds exactly limit matching rows; the next page the rest. */
    r = http(&s, "GET", "/v1/cases?source=hotline&limit=3", tok, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_STR(ids_of(jget(resp_json(&r), "items")), "cf-f02-case,cf-f03-case,cf-f06-case");
    const char *next = jstr(resp_json(&r), "next");
    ASSERT_MSG(next, "no next page: %s", r.body);
    r = http(&s, "GET", hfmt("/v1/cases?source=hotline&limit=3&cursor=%s", next), tok, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_STR(ids_of(jget(resp_json(&r), "items")), "cf-f07-case");
    /* Paging an opened range: limit rows a page, in opened order. */
    r = http(&s, "GET", "/v1/cases?opened_from=2026-10-05&opened_to=2026-11-01&procedure=general&limit=1",
             tok, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_STR(ids_of(jget(resp_json(&r), "items")), "cf-f03-case");
    ASSERT_MSG(jstr(resp_json(&r), "next"), "no next page: %s", r.body);
    r = http(&s, "GET",
             hfmt("/v1/cases?opened_from=2026-10-05&opened_to=2026-11-01&procedure=general&limit=1&cursor=%s",
                  jstr(resp_json(&r), "next")),
             tok, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_STR(ids_of(jget(resp_json(&r), "items")), "cf-f04-case");

    /* The export holds exactly the filtered set. */
    r = http(&s, "GET", "/v1/export?format=ndjson&source=hotline&opened_from=2026-10-01&opened_to=2026-11-01",
             tok, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(strstr(r.body, "\"id\":\"cf-f02-case\"") && strstr(r.body, "\"id\":\"cf-f03-case\"") &&
                   strstr(r.body, "\"id\":\"cf-f06-case\""),
               "export: %s", r.body);
    int lines = 0;
    for (const char *p = r.body; (p = strchr(p, '\n')); p++)
        lines++;
    ASSERT_INT(lines, 3);
    r = http(&s, "GET", "/v1/export?format=csv&procedure=simple", tok, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(strstr(r.body, "\r\ncf-f05-case,") && !strstr(r.body, "\r\ncf-f01-case,"), "csv export: %s",
               r.body);

    /* Bad values: 400 with the field named. */
    r = http(&s, "GET", "/v1/cases?opened_from=yesterday", tok, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    ASSERT_JSTR(resp_json(&r), "error.field", "opened_from");
    r = http(&s, "GET", "/v1/cases?opened_from=2026-11-01&opened_to=2026-10-01", tok, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    ASSERT_JSTR(resp_json(&r), "error.field", "opened_to");
    r = http(&s, "GET", "/v1/cases?updated_to=2026-02-30", tok, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    ASSERT_JSTR(resp_json(&r), "error.field", "updated_to");
    char longv[300];
    memset(longv, 'a', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    r = http(&s, "GET", hfmt("/v1/cases?source=%s", longv), tok, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    /* Extremes parse or are refused, never wrap around. */
    ASSERT_STR(all_ids(&s, tok, "opened_from=0001-01-01&opened_to=9999-12-31&source=petition"),
               "cf-f08-case");
    ASSERT_STR(all_ids(&s, tok, "updated_from=9999-12-31T23:59:59Z"), "");
    r = http(&s, "GET", "/v1/cases?opened_from=2026-10-01T00:00:00%2B99:00", tok, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    r = http(&s, "GET", "/v1/export?format=csv&opened_to=13", tok, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
}
