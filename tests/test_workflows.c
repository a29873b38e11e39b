/* test_workflows.c -- the field workflows through the API as phones and
 * supervisors use them: 督办 orders issued, answered from a phone and listed
 * with their state and escalation; the hotline import (idempotent by ticket,
 * the complainant masked for officers); a party's earlier cases and the
 * repeat-offender list (ids masked outside the unit); and the schema's
 * enforcement rules (closing needs payment, a court outcome or a reason; the
 * court application waits 10 working days after the 催告; court_due three
 * months after the payment period; 加处罚款 exact in fen). */
#include "schema/schema.h"
#include "tests/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The server log of s (pool; "" when unreadable). */
static const char *log_text(const srv_t *s) {
    FILE *f = fopen(hfmt("%s/server.log", s->dir), "r");
    if (!f) return "";
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

#define PHONE(p, s, name, dev)                                                                               \
    ASSERT_MSG(std_phone(&(p), &(s), (name), (dev)) == 0, "login of %s failed", (name))

static schema_t *load_schema(void) {
    schema_t *s = NULL;
    schema_err_t e;
    if (schema_load_file(CASESYNC_SCHEMA_PATH, &s, &e) != 0) fprintf(stderr, "    load: %s\n", e.message);
    return s;
}

static const char *result_status(resp_t *r, int i) {
    return jstr(cJSON_GetArrayItem(jget(resp_json(r), "results"), i), "status");
}

static const char *result_code(resp_t *r, int i) {
    return jstr(cJSON_GetArrayItem(jget(resp_json(r), "results"), i), "error.code");
}

TEST(wf_supervision_order_reaches_phone_answer_and_overdue_escalation) {
    srv_t s;
    ASSERT_MSG(srv_start(&s) == 0, "casesyncd did not start");
    phone_t off, sup, aux;
    PHONE(off, s, "off1", "dev-o1");
    PHONE(sup, s, "sup1", "dev-s1");
    PHONE(aux, s, "aux1", "dev-a1");
    const char *id = "wf-sv-000001";
    resp_t r = phone_push(&off, changes(ch_create(id, "general", hfmt("{\"assignee\":\"%s\"}", off.user_id))));
    ASSERT_INT(r.status, 200);
    ASSERT_STR(result_status(&r, 0), "applied");
    ASSERT(phone_pull_all(&off));

    /* The supervisor issues two orders: one already past its due time. */
    r = phone_push(&sup, changes(ch_update(id, 1, NULL,
                                           hfmt("{\"supervision\":[{\"id\":\"o1\",\"ask\":\"清理占道\","
                                                "\"due_at\":\"%s\"},{\"id\":\"o2\",\"ask\":\"回复市民\","
                                                "\"due_at\":\"%s\",\"issued_by\":\"forged\"}]}",
                                                iso_now(-3600000), iso_now(86400000)))));
    ASSERT_INT(r.status, 200);
    /* issued_by is the server's to set: a client value is refused. */
    ASSERT_STR(result_status(&r, 0), "rejected");
    r = phone_push(&sup, changes(ch_update(id, 1, NULL,
                                           hfmt("{\"supervision\":[{\"id\":\"o1\",\"ask\":\"清理占道\","
                                                "\"due_at\":\"%s\"},{\"id\":\"o2\",\"ask\":\"回复市民\","
                                                "\"due_at\":\"%s\"}]}",
                                                iso_now(-3600000), iso_now(86400000)))));
    ASSERT_STR(result_status(&r, 0), "applied");

    /* The officer's next pull brings the orders, stamped by the server. */
    cJSON *pulled = phone_pull_all(&off);
    cJSON *item = pull_item(pulled, id);
    ASSERT(item);
    const cJSON *orders = jget(item, "appended.supervision");
    ASSERT_INT(cJSON_GetArraySize(orders), 2);
    ASSERT_STR(jstr(cJSON_GetArrayItem(orders, 0), "issued_by"), sup.user_id);
    ASSERT(jstr(cJSON_GetArrayItem(orders, 0), "issued_at"));

    /* An officer may not issue an order; he answers one. */
    r = phone_push(&off, changes(ch_update(id, 2, NULL,
                                           "{\"supervision\":[{\"id\":\"o3\",\"ask\":\"x\",\"due_at\":"
                                           "\"2026-12-01T00:00:00Z\"}]}")));
    ASSERT_STR(result_code(&r, 0), "field_forbidden");
    r = phone_push(&off, changes(ch_update(id, 2, NULL,
                                           "{\"supervision_replies\":[{\"id\":\"r1\",\"order_id\":\"o2\","
                                           "\"text\":\"已回复\",\"done\":true}]}")));
    ASSERT_STR(result_status(&r, 0), "applied");

    /* The supervisor's list: o1 overdue and escalated, o2 done on time. */
    r = phone_get(&sup, "/v1/supervision");
    ASSERT_INT(r.status, 200);
    const cJSON *items = jget(resp_json(&r), "items");
    ASSERT_INT(cJSON_GetArraySize(items), 2);
    const cJSON *o1 = jarr_find(items, "order_id", "o1"), *o2 = jarr_find(items, "order_id", "o2");
    ASSERT(o1 && o2);
    ASSERT_STR(jstr(o1, "state"), "overdue");
    ASSERT_STR(jstr(o1, "escalated_to"), "admin");
    ASSERT_STR(jstr(o1, "to"), off.user_id);
    ASSERT_STR(jstr(o2, "state"), "done");
    ASSERT(jstr(o2, "done_at"));
    ASSERT_INT(jint(o2, "replies"), 1);
    r = phone_get(&sup, "/v1/supervision?state=overdue");
    ASSERT_INT(jlen(resp_json(&r), "items"), 1);
    r = phone_get(&sup, "/v1/supervision?state=nonsense");
    ASSERT_INT(r.status, 400);
    /* The officer sees the orders addressed to him; an auxiliary none. */
    r = phone_get(&off, "/v1/supervision?state=open");
    ASSERT_INT(r.status, 200);
    ASSERT_INT(jlen(resp_json(&r), "items"), 1);
    r = phone_get(&aux, "/v1/supervision");
    ASSERT_INT(r.status, 403);
    srv_cleanup(&s);
}

TEST(wf_hotline_import_is_idempotent_and_masks_the_complainant) {
    srv_t s;
    ASSERT_MSG(srv_start(&s) == 0, "casesyncd did not start");
    phone_t off, sup, offx;
    PHONE(off, s, "off1", "dev-o1");
    PHONE(sup, s, "sup1", "dev-s1");
    PHONE(offx, s, "offx", "dev-x1");
    const char *ticket =
        "{\"ticket_no\":\"12345-2026-0001\",\"type\":\"exposed_garbage\",\"description\":\"小区门口垃圾\","
        "\"occurred_at\":\"2026-11-02T01:00:00Z\",\"grid\":\"" GRID1 "\",\"address\":\"东城路1号\","
        "\"location\":{\"lon\":116.4,\"lat\":39.9},\"complainant\":{\"name\":\"李四\",\"phone\":"
        "\"13812345678\"},\"reply_due\":\"2026-11-05T10:00:00Z\"}";
    const char *bad = "{\"ticket_no\":\"12345-2026-0002\",\"type\":\"no_such_type\"}";
    const char *body = hfmt("{\"tickets\":[%s,%s]}", ticket, bad);
    resp_t r = http(&s, "POST", "/v1/hotline/import", sup.token, body, NULL);
    ASSERT_INT(r.status, 200);
    ASSERT_INT(jint(resp_json(&r), "created"), 1);
    ASSERT_INT(jint(resp_json(&r), "rejected"), 1);
    const char *rid = jstr(cJSON_GetArrayItem(jget(resp_json(&r), "items"), 0), "record_id");
    ASSERT(rid);
    rid = hfmt("%s", rid);
    /* Again: the same ticket exists, nothing changes. */
    r = http(&s, "POST", "/v1/hotline/import", sup.token, body, NULL);
    ASSERT_INT(r.status, 200);
    ASSERT_INT(jint(resp_json(&r), "created"), 0);
    ASSERT_INT(jint(resp_json(&r), "exists"), 1);
    /* Officers do not import. */
    r = http(&s, "POST", "/v1/hotline/import", off.token, body, NULL);
    ASSERT_INT(r.status, 403);

    /* The supervisor sees the caller; the officer on the grid gets it masked. */
    r = phone_get(&sup, hfmt("/v1/cases/%s", rid));
    ASSERT_INT(r.status, 200);
    ASSERT_STR(jstr(resp_json(&r), "fields.complainant.phone"), "13812345678");
    ASSERT_STR(jstr(resp_json(&r), "fields.source"), "hotline");
    ASSERT_STR(jstr(resp_json(&r), "fields.ticket_no"), "12345-2026-0001");
    cJSON *item = pull_item(phone_pull_all(&off), rid);
    ASSERT(item);
    ASSERT_STR(jstr(item, "fields.complainant.phone"), "138****5678");
    ASSERT_STR(jstr(item, "fields.complainant.name"), "李**");
    r = phone_get(&off, hfmt("/v1/cases/%s", rid));
    ASSERT_STR(jstr(resp_json(&r), "fields.complainant.phone"), "138****5678");
    r = phone_get(&off, hfmt("/v1/cases/%s/history", rid));
    ASSERT_INT(r.status, 200);
    ASSERT(!strstr(r.body, "13812345678"));
    /* The officer replies; he may not write the complainant (masked for him). */
    long long v = jint(item, "version");
    r = phone_push(&off, changes(ch_update(rid, v, "{\"reply\":{\"text\":\"已清理\",\"at\":\"2026-11-03T02:00:00Z\"}}",
                                           NULL),
                                 ch_update(rid, v, "{\"complainant\":{\"name\":\"李**\",\"phone\":\"138****5678\"}}",
                                           NULL)));
    ASSERT_STR(result_status(&r, 0), "applied");
    ASSERT_STR(result_code(&r, 1), "field_forbidden");
    /* Another unit's officer cannot import into U1 nor see the case. */
    r = phone_get(&offx, hfmt("/v1/cases/%s", rid));
    ASSERT_INT(r.status, 403);
    srv_cleanup(&s);
}

TEST(wf_party_earlier_cases_and_repeat_offenders) {
    srv_t s;
    ASSERT_MSG(srv_start(&s) == 0, "casesyncd did not start");
    phone_t off, sup, offx, adm, aux;
    PHONE(off, s, "off1", "dev-o1");
    PHONE(sup, s, "sup1", "dev-s1");
    PHONE(offx, s, "offx", "dev-x1");
    PHONE(adm, s, "admin", "dev-ad");
    PHONE(aux, s, "aux1", "dev-a1");
    const char *party = "{\"party\":{\"kind\":\"person\",\"name\":\"王五\",\"id_no\":\"110101199001011234\"}}";
    resp_t r = phone_push(&off, changes(ch_create("wf-pa-000001", "general", party),
                                        ch_create("wf-pa-000002", "general", party),
                                        ch_create("wf-pa-000003", "general",
                                                  "{\"party\":{\"kind\":\"org\",\"name\":\"某公司\","
                                                  "\"uscc\":\"91110101MA01X0000X\"}}")));
    ASSERT_INT(r.status, 200);
    r = http(&s, "POST", "/v1/parties/cases", off.token, "{\"id_no\":\"110101199001011234\"}", NULL);
    ASSERT_INT(r.status, 200);
    ASSERT_INT(jint(resp_json(&r), "count"), 2);
    ASSERT(jbool(resp_json(&r), "first_offence_used") == 0);
    r = http(&s, "POST", "/v1/parties/cases", off.token, "{\"uscc\":\"91110101MA01X0000X\"}", NULL);
    ASSERT_INT(jint(resp_json(&r), "count"), 1);
    /* Another unit's officer finds nothing of U1, and may not ask for U1. */
    r = http(&s, "POST", "/v1/parties/cases", offx.token, "{\"id_no\":\"110101199001011234\"}", NULL);
    ASSERT_INT(r.status, 200);
    ASSERT_INT(jint(resp_json(&r), "count"), 0);
    r = http(&s, "POST", "/v1/parties/cases", offx.token, "{\"id_no\":\"110101199001011234\",\"unit\":\"U1\"}",
             NULL);
    ASSERT_INT(r.status, 403);
    r = http(&s, "POST", "/v1/parties/cases", aux.token, "{\"id_no\":\"110101199001011234\"}", NULL);
    ASSERT_INT(r.status, 403);
    r = http(&s, "POST", "/v1/parties/cases", off.token, "{}", NULL);
    ASSERT_INT(r.status, 422);
    /* Repeat offenders: the supervisor sees the id, an admin gets it masked. */
    r = phone_get(&sup, "/v1/parties/repeat");
    ASSERT_INT(r.status, 200);
    ASSERT_INT(jlen(resp_json(&r), "items"), 1);
    const cJSON *it = cJSON_GetArrayItem(jget(resp_json(&r), "items"), 0);
    ASSERT_INT(jint(it, "count"), 2);
    ASSERT_STR(jstr(it, "party.id_no"), "110101199001011234");
    r = phone_get(&adm, "/v1/parties/repeat?unit=U1");
    ASSERT_INT(r.status, 200);
    it = cJSON_GetArrayItem(jget(resp_json(&r), "items"), 0);
    ASSERT_STR(jstr(it, "party.id_no"), "110***********1234");
    r = phone_get(&off, "/v1/parties/repeat");
    ASSERT_INT(r.status, 403);
    /* The admin reads the case with the party's id masked; its unit sees it. */
    r = phone_get(&adm, "/v1/cases/wf-pa-000001");
    ASSERT_STR(jstr(resp_json(&r), "fields.party.id_no"), "110***********1234");
    ASSERT_STR(jstr(resp_json(&r), "fields.party.name"), "王五");
    r = phone_get(&sup, "/v1/cases/wf-pa-000001");
    ASSERT_STR(jstr(resp_json(&r), "fields.party.id_no"), "110101199001011234");
    /* The id is never in the server's log. */
    ASSERT(!strstr(log_text(&s), "110101199001011234"));
    srv_cleanup(&s);
}

/* ---- enforcement rules (schema, pure) ---------------------------------------------- */

static schema_judgement_t judge_to(const schema_t *s, const char *status, const char *to, schema_role_t role,
                                   const char *fields, int64_t now_ms, schema_err_t *e) {
    cJSON *f = jparse(fields);
    schema_view_t v = {.procedure = "general", .status = status, .fields = f, .now_ms = now_ms};
    return schema_judge_transition(s, &v, to, role, e);
}

TEST(wf_closing_a_decided_case_needs_payment_court_outcome_or_reason) {
    schema_t *s = load_schema();
    schema_err_t e;
    ASSERT(s);
    int64_t now = 1790000000000LL;
    ASSERT_INT(judge_to(s, "executing", "closed", ROLE_SUPERVISOR, "{\"fine_amount\":500}", now, &e), JUDGE_GUARD);
    ASSERT_STR(e.path, "fields.payment.paid_at");
    ASSERT_INT(judge_to(s, "executing", "closed", ROLE_SUPERVISOR,
                        "{\"fine_amount\":500,\"payment\":{\"method\":\"bank\",\"paid_at\":\"2026-11-01T00:00:00Z\"}}",
                        now, &e),
               JUDGE_APPLY);
    ASSERT_INT(judge_to(s, "court_applied", "closed", ROLE_SUPERVISOR,
                        "{\"fine_amount\":500,\"court_outcome\":{\"result\":\"enforced\"}}", now, &e),
               JUDGE_APPLY);
    ASSERT_INT(judge_to(s, "executing", "closed", ROLE_SUPERVISOR,
                        "{\"fine_amount\":500,\"close_reason\":\"当事人死亡，终结执行\"}", now, &e),
               JUDGE_APPLY);
    /* 不予处罚 (首违不罚) closes once served; a fine does not. */
    ASSERT_INT(judge_to(s, "served", "closed", ROLE_SUPERVISOR,
                        "{\"disposition\":\"no_penalty\",\"no_penalty_reason\":\"first_offence\"}", now, &e),
               JUDGE_APPLY);
    ASSERT_INT(judge_to(s, "served", "closed", ROLE_SUPERVISOR, "{\"fine_amount\":200}", now, &e), JUDGE_GUARD);
    /* A no_penalty decision names its reason (Art. 33). */
    ASSERT_INT(judge_to(s, "reviewed", "decided", ROLE_SUPERVISOR,
                        "{\"decision_doc_no\":\"D-1\",\"disposition\":\"no_penalty\"}", now, &e),
               JUDGE_GUARD);
    ASSERT_STR(e.path, "fields.no_penalty_reason");
    /* The court application: 10 working days after the 催告 (Arts. 54, 69). The
     * demand of Monday 2026-11-02 runs 3..6, 9..13, 16 November: not before the 17th. */
    const char *app = "{\"court_application\":{\"doc_no\":\"QZ-1\",\"filed_at\":\"2026-11-17T02:00:00Z\"},"
                      "\"documents\":[{\"id\":\"d1\",\"doc_type\":\"payment_demand\",\"at\":\"2026-11-02T02:00:00Z\"}]}";
    int64_t nov16 = 1794794400000LL; /* 2026-11-16T10:00+08:00 */
    ASSERT_INT(judge_to(s, "executing", "court_applied", ROLE_OFFICER, app, nov16, &e), JUDGE_GUARD);
    ASSERT_STR(e.path, "fields.documents");
    ASSERT_INT(judge_to(s, "executing", "court_applied", ROLE_OFFICER, app, nov16 + 86400000LL, &e), JUDGE_APPLY);
    ASSERT_INT(judge_to(s, "executing", "court_applied", ROLE_OFFICER,
                        "{\"court_application\":{\"doc_no\":\"QZ-1\",\"filed_at\":\"2026-11-17T02:00:00Z\"}}",
                        nov16 + 86400000LL, &e),
               JUDGE_GUARD);
    schema_free(s);
}

TEST(wf_late_fee_is_three_percent_a_day_capped_at_the_fine_in_fen) {
    int64_t fee;
    ASSERT_INT(schema_late_fee_fen(33333, 1, &fee), 0);
    ASSERT_INT(fee, 999); /* 999.99 fen, never rounded up */
    ASSERT_INT(schema_late_fee_fen(50000, 10, &fee), 0);
    ASSERT_INT(fee, 15000);
    ASSERT_INT(schema_late_fee_fen(10000, 33, &fee), 0);
    ASSERT_INT(fee, 9900);
    ASSERT_INT(schema_late_fee_fen(10000, 34, &fee), 0);
    ASSERT_INT(fee, 10000);
    ASSERT_INT(schema_late_fee_fen(10000, 100000, &fee), 0);
    ASSERT_INT(fee, 10000);
    ASSERT_INT(schema_late_fee_fen(10000, 0, &fee), 0);
    ASSERT_INT(fee, 0);
    ASSERT_INT(schema_late_fee_fen(-1, 3, &fee), -1);
}

static int64_t due_of(const schema_t *s, const char *status, const char *entered, const char *fields,
                      const char **by) {
    cJSON *en = jparse(entered), *f = jparse(fields);
    schema_deadline_record_t r = {.procedure = "general", .status = status, .type = "unlicensed_vending",
                                  .entered = en, .fields = f};
    int64_t due = -1;
    if (schema_record_due(s, &r, &due, by) != 0) return -1;
    return due;
}

TEST(wf_court_due_publication_due_and_field_deadlines) {
    schema_t *s = load_schema();
    const char *by = NULL;
    ASSERT(s);
    /* Served Monday 2026-03-02 10:00 China: payment by the end of 17 March
     * (15 days); court_due three months on: the end of 17 June 2026. */
    int64_t served = 1772416800000LL; /* 2026-03-02T02:00:00Z */
    const char *entered = hfmt("{\"served\":%lld,\"executing\":%lld}", (long long)served, (long long)served + 86400000LL * 20);
    ASSERT_INT(due_of(s, "executing", entered, "{\"disposition\":\"withdraw\"}", &by), 1781712000000LL);
    ASSERT_STR(by, "court_due"); /* 2026-06-17T16:00:00Z */
    /* Paid: nothing runs. */
    ASSERT_INT(due_of(s, "executing", entered, "{\"payment\":{\"method\":\"bank\",\"paid_at\":\"2026-03-30T00:00:00Z\"}}", &by),
               -1);
    /* A hotline reply deadline is the field's own time, until the reply. */
    ASSERT_INT(due_of(s, "filed", "{\"filed\":1772416800000}", "{\"reply_due\":\"2026-03-01T00:00:00Z\"}", &by),
               1772323200000LL);
    ASSERT_STR(by, "reply_due");
    ASSERT_INT(due_of(s, "filed", "{}", "{\"reply_due\":\"2026-03-01T00:00:00Z\",\"reply\":{\"text\":\"x\",\"at\":\"2026-03-01T00:00:00Z\"}}", &by), -1);
    /* 公示: a penalty decision is published within 20 working days; others are not. */
    const char *dec = hfmt("{\"decided\":%lld}", (long long)served);
    ASSERT(due_of(s, "decided", dec, "{\"disposition\":\"penalty\"}", &by) > 0);
    ASSERT_STR(by, "service_due");
    ASSERT(due_of(s, "served", hfmt("{\"decided\":%lld,\"served\":%lld}", (long long)served, (long long)served),
                  "{\"disposition\":\"no_penalty\"}", &by) > 0);
    ASSERT_STR(by, "payment_due");
    schema_free(s);
}

/* Masks hold in the conflict list and the CSV export too. */
TEST(wf_conflicts_and_csv_export_mask_personal_data) {
    srv_t s;
    ASSERT_MSG(srv_start(&s) == 0, "casesyncd did not start");
    phone_t off, off2, sup, sup2, leg, adm;
    PHONE(off, s, "off1", "dev-o1");
    PHONE(sup, s, "sup1", "dev-s1");
    ASSERT(phone_login(&off2, &s, "off1", std_pass("off1"), "dev-o2") == 0);
    ASSERT(phone_login(&sup2, &s, "sup1", std_pass("sup1"), "dev-s2") == 0);
    PHONE(leg, s, "leg1", "dev-l1");
    PHONE(adm, s, "admin", "dev-ad");
    const char *id = "wf-mk-000001";
    resp_t r = phone_push(&off, changes(ch_create(id, "general",
                                                  "{\"party\":{\"kind\":\"person\",\"name\":\"王五\","
                                                  "\"id_no\":\"110101199001011234\"}}")));
    ASSERT_STR(result_status(&r, 0), "applied");
    /* Two devices write the manual fields from the same base: conflicts. */
    r = phone_push(&sup, changes(ch_update(id, 1, "{\"complainant\":{\"name\":\"李四\",\"phone\":\"13812345678\"}}",
                                           NULL)));
    ASSERT_STR(result_status(&r, 0), "applied");
    r = phone_push(&sup2, changes(ch_update(id, 1, "{\"complainant\":{\"name\":\"张三\",\"phone\":\"13987654321\"}}",
                                            NULL)));
    ASSERT_INT(r.status, 200);
    r = phone_push(&off2, changes(ch_update(id, 1,
                                            "{\"party\":{\"kind\":\"person\",\"name\":\"王五\","
                                            "\"id_no\":\"110101199001019999\"}}",
                                            NULL)));
    ASSERT_INT(r.status, 200);
    r = phone_push(&off, changes(ch_update(id, 1,
                                           "{\"party\":{\"kind\":\"person\",\"name\":\"王五\","
                                           "\"id_no\":\"110101199001017777\"}}",
                                           NULL)));
    ASSERT_INT(r.status, 200);
    /* The supervisor sees both values; the legal reviewer (not shown the
     * complainant) and the admin (another unit: party ids) see them masked. */
    r = phone_get(&sup, "/v1/conflicts");
    ASSERT_INT(r.status, 200);
    ASSERT_MSG(strstr(r.body, "13812345678") && strstr(r.body, "13987654321") && strstr(r.body, "110101199001019999"),
               "the supervisor sees the values: %s", r.body);
    ASSERT_INT(jlen(resp_json(&r), "items"), 2);
    r = phone_get(&leg, "/v1/conflicts");
    ASSERT_INT(r.status, 200);
    ASSERT_INT(jlen(resp_json(&r), "items"), 2);
    ASSERT_MSG(!strstr(r.body, "13812345678") && !strstr(r.body, "13987654321"), "leaked to the reviewer: %s", r.body);
    const cJSON *c = jarr_find(jget(resp_json(&r), "items"), "field", "complainant");
    ASSERT(c);
    ASSERT_MSG(strstr(jprint(jget(c, "server_value")), "****") && strstr(jprint(jget(c, "client_value")), "****"),
               "masked: %s", jprint(c));
    r = phone_get(&adm, "/v1/conflicts");
    ASSERT_INT(r.status, 200);
    ASSERT_MSG(!strstr(r.body, "110101199001017777") && !strstr(r.body, "110101199001019999"),
               "party id leaked to the admin: %s", r.body);
    ASSERT_MSG(strstr(r.body, "110***********9999") && strstr(r.body, "110***********7777"),
               "the admin sees the masked ids: %s", r.body);

    /* CSV: the party's id as the reader may see it. */
    r = phone_get(&sup, "/v1/export?format=csv");
    ASSERT_INT(r.status, 200);
    ASSERT_MSG(strstr(r.body, "110101199001019999"), "the unit's supervisor sees the id:\n%s", r.body);
    r = phone_get(&adm, "/v1/export?format=csv&unit=U1");
    ASSERT_INT(r.status, 200);
    ASSERT_MSG(!strstr(r.body, "110101199001019999") && strstr(r.body, "110***********9999"),
               "the admin's CSV must hold the id masked:\n%s", r.body);
    srv_cleanup(&s);
}

/* The platform's CSV export imports like the JSON tickets, idempotent by
 * ticket number; a malformed file is refused whole. */
TEST(wf_hotline_csv_import_is_idempotent_and_refuses_malformed_files) {
    srv_t s;
    ASSERT_MSG(srv_start(&s) == 0, "casesyncd did not start");
    phone_t sup;
    PHONE(sup, s, "sup1", "dev-s1");
    const char *const csv_h[] = {"Content-Type: text/csv; charset=utf-8", NULL};
    const char *csv =
        "\xEF\xBB\xBFticket_no,type,description,occurred_at,grid,address,lon,lat,complainant_name,complainant_phone,"
        "reply_due\r\n"
        "12345-2026-0101,exposed_garbage,\"门口垃圾, \"\"很多\"\"\",2026-11-02T01:00:00Z," GRID1 ",东城路1号,116.4,39.9,"
        "李四,13812345678,2026-11-05T10:00:00Z\r\n"
        "12345-2026-0102,no_such_type,x,2026-11-02T01:00:00Z," GRID1 ",东城路2号,116.4,39.9,,,\r\n";
    resp_t r = http(&s, "POST", "/v1/hotline/import", sup.token, csv, csv_h);
    ASSERT_INT(r.status, 200);
    ASSERT_INT(jint(resp_json(&r), "created"), 1);
    ASSERT_INT(jint(resp_json(&r), "rejected"), 1);
    const char *rid = jstr(cJSON_GetArrayItem(jget(resp_json(&r), "items"), 0), "record_id");
    ASSERT(rid);
    rid = hfmt("%s", rid);
    /* The same ticket by JSON or CSV again: exists. */
    r = http(&s, "POST", "/v1/hotline/import", sup.token, csv, csv_h);
    ASSERT_INT(r.status, 200);
    ASSERT_INT(jint(resp_json(&r), "created"), 0);
    ASSERT_INT(jint(resp_json(&r), "exists"), 1);
    r = phone_get(&sup, hfmt("/v1/cases/%s", rid));
    ASSERT_INT(r.status, 200);
    ASSERT_STR(jstr(resp_json(&r), "fields.description"), "门口垃圾, \"很多\"");
    ASSERT_STR(jstr(resp_json(&r), "fields.complainant.phone"), "13812345678");
    ASSERT_STR(jstr(resp_json(&r), "fields.source"), "hotline");
    /* Malformed: an open quote, an unknown column, a ragged row. */
    r = http(&s, "POST", "/v1/hotline/import", sup.token, "ticket_no,type\n1,\"open\n", csv_h);
    ASSERT_INT(r.status, 422);
    ASSERT_STR(jstr(resp_json(&r), "error.field"), "csv");
    r = http(&s, "POST", "/v1/hotline/import", sup.token, "ticket_no,colour\n1,red\n", csv_h);
    ASSERT_INT(r.status, 422);
    r = http(&s, "POST", "/v1/hotline/import", sup.token, "ticket_no,type\n1,exposed_garbage,extra\n", csv_h);
    ASSERT_INT(r.status, 422);
    srv_cleanup(&s);
}
