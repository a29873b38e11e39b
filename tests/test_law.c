/* test_law.c -- the law in the lifecycle and the field write rules, driven
 * through the API as phones and supervisors would (SCHEMA v2 A-C; the trust
 * issue's scope keys). Each test names the wrong behaviour it guards against. */
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")
#define PHONE(p, s, name, dev)                                                                               \
    ASSERT_MSG(std_phone(&(p), &(s), (name), (dev)) == 0, "login of %s failed", (name))

/* Pushes one change; its result object (pool). */
static cJSON *push1(phone_t *p, const char *change) {
    resp_t r = phone_push(p, changes(change));
    if (r.status != 200) {
        fprintf(stderr, "    push -> %ld %s\n", r.status, r.body);
        return NULL;
    }
    return jget(resp_json(&r), "results[0]");
}

static cJSON *get_case(phone_t *p, const char *id) {
    resp_t r = phone_get(p, hfmt("/v1/cases/%s", id));
    return r.status == 200 ? resp_json(&r) : NULL;
}

static long long version_of(phone_t *p, const char *id) {
    cJSON *c = get_case(p, id);
    return c ? jint(c, "version") : -1;
}

/* The guards' fields of a decision by two officers. */
static const char *decision(const char *lead, const char *assist, const char *kind, int fine) {
    return hfmt("{\"party\":{\"kind\":\"%s\",\"name\":\"Zhang San\"},\"illegal_item_code\":\"C0501\","
                "\"assignee\":\"%s\",\"assist_officer\":\"%s\",\"decision_doc_no\":\"JY-7\","
                "\"fine_amount\":%d,\"disposition\":\"penalty\"}",
                kind, lead, assist, fine);
}

static const char *correction(const char *id, long long base, const char *set, const char *reason) {
    return hfmt("{\"op\":\"correct\",\"record_id\":\"%s\",\"base_version\":%lld,\"set\":%s%s%s%s}", id, base,
                set, reason ? ",\"reason\":\"" : "", reason ? reason : "", reason ? "\"" : "");
}

#define ASSERT_RESULT(res, status_, code_)                                                                   \
    do {                                                                                                     \
        const cJSON *r__ = (res);                                                                            \
        ASSERT_MSG(r__ != NULL, "no result");                                                                \
        ASSERT_JSTR(r__, "status", (status_));                                                               \
        if ((code_) != NULL) ASSERT_JSTR(r__, "error.code", (const char *)(code_));                          \
    } while (0)

/* ---- who may write what (the trust issue's scope keys) ----------------------------------------- */

/* Was: an auxiliary or an officer set unit, grid or assignee to anything, the
 * change was applied, and the case left its supervisors' view. */
TEST(law_scope_keys_follow_the_write_rules) {
    srv_t s;
    START(s);
    phone_t off, aux, sup, supu2;
    PHONE(off, s, "off1", "dev-O1");
    PHONE(aux, s, "aux1", "dev-X1");
    PHONE(sup, s, "sup1", "dev-S1");
    const char *off2 = std_user(&s, "off2"), *offx = std_user(&s, "offx");
    ASSERT(off2 && offx);
    ASSERT(user_add(&s, "supu2", "Secret-supu2-pw1", "supervisor", "U2", NULL) != NULL);
    ASSERT(phone_login(&supu2, &s, "supu2", "Secret-supu2-pw1", "dev-S2") == 0);
    const char *id = "01LAWSCOPE00000001";
    ASSERT_RESULT(push1(&aux, ch_create(id, "digital", NULL)), "applied", NULL);

    /* The auxiliary moves it to another unit: refused, naming the field. */
    cJSON *res = push1(&aux, ch_update(id, 1, "{\"unit\":\"U2\"}", NULL));
    ASSERT_RESULT(res, "rejected", "field_forbidden");
    ASSERT_JSTR(res, "error.field", "changes[0].set.unit");
    /* A grid the officer does not patrol; an assignee set by an officer after create. */
    res = push1(&off, ch_update(id, 1, "{\"grid\":\"" GRID3 "\"}", NULL));
    ASSERT_RESULT(res, "rejected", "field_forbidden");
    ASSERT_JSTR(res, "error.field", "changes[0].set.grid");
    res = push1(&off, ch_update(id, 1, hfmt("{\"assignee\":\"%s\"}", off.user_id), NULL));
    ASSERT_RESULT(res, "rejected", "field_forbidden");
    /* The supervisor assigns: never an auxiliary, never another unit's officer. */
    res = push1(&sup, ch_update(id, 1, hfmt("{\"assignee\":\"%s\"}", aux.user_id), NULL));
    ASSERT_RESULT(res, "rejected", "validation_failed");
    ASSERT_JSTR(res, "error.field", "changes[0].set.assignee");
    res = push1(&sup, ch_update(id, 1, hfmt("{\"assignee\":\"%s\"}", offx), NULL));
    ASSERT_RESULT(res, "rejected", "validation_failed");
    res = push1(&sup,
                ch_update(id, 1, hfmt("{\"assignee\":\"%s\",\"assist_officer\":\"%s\"}", off2, off2), NULL));
    ASSERT_RESULT(res, "rejected", "validation_failed");
    ASSERT_RESULT(push1(&sup, ch_update(id, 1, hfmt("{\"assignee\":\"%s\"}", off2), NULL)), "applied", NULL);
    /* Every refusal is in the quarantine, nothing typed is lost. */
    resp_t r = phone_get(&sup, "/v1/rejections");
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(jlen(resp_json(&r), "items") >= 6, "rejections: %s", r.body);
    cJSON *c = get_case(&sup, id);
    ASSERT_JSTR(c, "fields.unit", "U1");
    ASSERT_JSTR(c, "fields.grid", GRID1);

    /* A supervisor hands it over to another unit (移交): its creator, an
     * auxiliary of U1, no longer sees it; U2's supervisor does. */
    ASSERT_RESULT(
        push1(&sup, ch_update(id, version_of(&sup, id), "{\"unit\":\"U2\",\"assignee\":null}", NULL)),
        "applied", NULL);
    r = phone_get(&aux, hfmt("/v1/cases/%s", id));
    ASSERT_MSG(r.status == 404 || r.status == 403, "the creator still reads a case of another unit: %ld",
               r.status);
    ASSERT(get_case(&supu2, id) != NULL);
}

/* ---- simple procedure ------------------------------------------------------------------------- */

/* Was: a ¥50 simple case was decided, then an update raised the fine to
 * ¥3,000 (above Art. 51's cap) and was applied. */
TEST(law_decided_fine_is_frozen_and_corrections_keep_the_cap) {
    srv_t s;
    START(s);
    phone_t off, sup;
    PHONE(off, s, "off1", "dev-O1");
    PHONE(sup, s, "sup1", "dev-S1");
    const char *off2 = std_user(&s, "off2");
    ASSERT(off2 != NULL);
    const char *id = "01LAWFINE000000001";
    ASSERT_RESULT(push1(&off, ch_create(id, "simple", decision(off.user_id, off2, "person", 50))), "applied",
                  NULL);
    ASSERT_RESULT(push1(&off, ch_transition(id, 1, "decided")), "applied", NULL);
    cJSON *c = get_case(&sup, id);
    ASSERT_JSTR(c, "status", "decided");
    ASSERT_MSG(jstr(c, "fields.served_at") != NULL, "decided is served on the spot: %s", jprint(c));

    cJSON *res = push1(&off, ch_update(id, 2, "{\"fine_amount\":3000}", NULL));
    ASSERT_RESULT(res, "rejected", "field_frozen");
    ASSERT_JSTR(res, "error.field", "changes[0].set.fine_amount");
    /* A supervisor's correction: never past the cap the decision passed, and
     * only with a reason. */
    res = push1(&sup, correction(id, 2, "{\"fine_amount\":3000}", "typo"));
    ASSERT_RESULT(res, "rejected", "validation_failed");
    ASSERT_MSG(strstr(jstr(res, "error.message"), "Art. 51") != NULL, "%s", jprint(res));
    resp_t nr = phone_push(&sup, changes(correction(id, 2, "{\"fine_amount\":80}", NULL)));
    ASSERT_ERROR(nr, 422, "validation_failed"); /* like a void, a correction without a reason is malformed */
    ASSERT_RESULT(push1(&off, correction(id, 2, "{\"fine_amount\":80}", "typo")), "rejected",
                  "field_forbidden");
    ASSERT_RESULT(push1(&sup, correction(id, 2, "{\"fine_amount\":80}", "the form said 80, typed 50")),
                  "applied", NULL);
    c = get_case(&sup, id);
    ASSERT_MSG(jnum(c, "fields.fine_amount", 0) == 80, "%s", jprint(c));

    /* History shows it as a correction, with who and why. */
    resp_t r = phone_get(&sup, hfmt("/v1/cases/%s/history", id));
    ASSERT_STATUS(r, 200);
    cJSON *items = jget(resp_json(&r), "items");
    if (!items) items = resp_json(&r);
    cJSON *corr = jarr_find(items, "op", "correct");
    ASSERT_MSG(corr != NULL, "no correction in history: %s", r.body);
    ASSERT_JSTR(corr, "reason", "the form said 80, typed 50");
    ASSERT_JSTR(corr, "user_id", sup.user_id);
    r = phone_get(&sup, "/v1/audit/verify");
    ASSERT_STATUS(r, 200);
    ASSERT_JBOOL(resp_json(&r), "ok", 1);
}

/* Was: an auxiliary named assist_officer, and the case was decided (Art. 42
 * needs two 执法人员). */
TEST(law_an_auxiliary_is_never_one_of_the_two_officers) {
    srv_t s;
    START(s);
    phone_t off, aux;
    PHONE(off, s, "off1", "dev-O1");
    PHONE(aux, s, "aux1", "dev-X1");
    const char *id = "01LAWAUX0000000001";
    cJSON *res = push1(&off, ch_create(id, "simple", decision(off.user_id, aux.user_id, "person", 50)));
    ASSERT_RESULT(res, "rejected", "validation_failed");
    ASSERT_JSTR(res, "error.field", "changes[0].fields.assist_officer");
    /* Nor the same officer twice. */
    res = push1(&off, ch_create(id, "simple", decision(off.user_id, off.user_id, "person", 50)));
    ASSERT_RESULT(res, "rejected", "validation_failed");
    /* An auxiliary sets no officer at all when reporting. */
    const char *off2 = std_user(&s, "off2");
    ASSERT(off2 != NULL);
    res = push1(&aux, ch_create(id, "simple", decision(off.user_id, off2, "person", 50)));
    ASSERT_RESULT(res, "rejected", "field_forbidden");
}

/* Was: simple had a separate served step; paid came before recorded, so a
 * 警告 could never close; 当场收缴 was allowed for any amount. */
TEST(law_simple_warning_closes_and_on_spot_collection_is_bounded) {
    srv_t s;
    START(s);
    phone_t off, sup;
    PHONE(off, s, "off1", "dev-O1");
    PHONE(sup, s, "sup1", "dev-S1");
    const char *off2 = std_user(&s, "off2");
    ASSERT(off2 != NULL);
    const char *warn = "01LAWWARN000000001", *spot = "01LAWSPOT000000001";
    ASSERT_RESULT(push1(&off, ch_create(warn, "simple", decision(off.user_id, off2, "person", 0))), "applied",
                  NULL);
    ASSERT_RESULT(push1(&off, ch_transition(warn, 1, "decided")), "applied", NULL);
    ASSERT_RESULT(push1(&off, ch_transition(warn, 2, "served")), "rejected", "forbidden_transition");
    ASSERT_RESULT(push1(&off, ch_transition(warn, 2, "paid")), "rejected", "validation_failed");
    /* 备案 first (Art. 52), then the supervisor closes it. */
    cJSON *res = push1(&sup, ch_transition(warn, 2, "closed"));
    ASSERT_RESULT(res, "rejected", "validation_failed");
    ASSERT_JSTR(res, "error.field", "changes[0].fields.recorded_at");
    ASSERT_RESULT(push1(&off, ch_update(warn, 2, hfmt("{\"recorded_at\":\"%s\"}", iso_now(0)), NULL)),
                  "applied", NULL);
    ASSERT_RESULT(push1(&sup, ch_transition(warn, 3, "closed")), "applied", NULL);

    /* ¥150 collected on the spot: over ¥100 needs the record's reason
     * (Art. 68), and every on-spot payment a receipt (Art. 70). */
    ASSERT_RESULT(push1(&off, ch_create(spot, "simple", decision(off.user_id, off2, "person", 150))),
                  "applied", NULL);
    ASSERT_RESULT(push1(&off, ch_transition(spot, 1, "decided")), "applied", NULL);
    ASSERT_RESULT(push1(&off, ch_update(spot, 2, "{\"payment\":{\"method\":\"on_spot\"}}", NULL)), "applied",
                  NULL);
    res = push1(&off, ch_transition(spot, 3, "paid"));
    ASSERT_RESULT(res, "rejected", "validation_failed");
    ASSERT_MSG(strstr(jstr(res, "error.message"), "Art. 68") != NULL, "%s", jprint(res));
    ASSERT_RESULT(
        push1(&off, ch_update(spot, 3,
                              "{\"payment\":{\"method\":\"on_spot\",\"on_spot_reason\":\"山区, 交通不便\"}}",
                              NULL)),
        "applied", NULL);
    res = push1(&off, ch_transition(spot, 4, "paid"));
    ASSERT_RESULT(res, "rejected", "validation_failed");
    ASSERT_JSTR(res, "error.field", "changes[0].fields.payment.receipt_no");
    ASSERT_RESULT(push1(&off, ch_update(spot, 4,
                                        "{\"payment\":{\"method\":\"on_spot\",\"on_spot_reason\":\"山区, "
                                        "交通不便\",\"receipt_no\":\"SJ-0001\"}}",
                                        NULL)),
                  "applied", NULL);
    ASSERT_RESULT(push1(&off, ch_transition(spot, 5, "paid")), "applied", NULL);
}

/* ---- general procedure ------------------------------------------------------------------------ */

static int applied(const cJSON *res) {
    const char *st = res ? jstr(res, "status") : NULL;
    if (st && strcmp(st, "applied") == 0) return 1;
    fprintf(stderr, "    not applied: %s\n", jprint(res));
    return 0;
}

/* Walks a general case to `notified` with its notice document (the
 * transition without it is refused first); returns its version, -1. */
static long long to_notified(phone_t *off, phone_t *sup, const char *id, const char *lead, const char *assist,
                             const char *extra_json) {
    cJSON *f = jparse(decision(lead, assist, "person", 500));
    cJSON *x = extra_json ? jparse(extra_json) : NULL, *m;
    if (x) cJSON_ArrayForEach(m, x) cJSON_AddItemToObject(f, m->string, cJSON_Duplicate(m, 1));
    if (!applied(push1(off, ch_create(id, "general", jprint(f)))) ||
        !applied(push1(sup, ch_transition(id, 1, "filed"))) ||
        !applied(push1(off, ch_transition(id, 2, "investigating"))) ||
        !applied(push1(off, ch_transition(id, 3, "concluded"))))
        return -1;
    cJSON *res = push1(off, ch_transition(id, 4, "notified"));
    const char *field = res ? jstr(res, "error.field") : NULL;
    if (!field || strcmp(field, "changes[0].fields.documents") != 0) {
        fprintf(stderr, "    notified without its notice: %s\n", jprint(res));
        return -1; /* the notice (Art. 44) is a document */
    }
    if (!applied(push1(off, ch_update(id, 4, NULL,
                                      "{\"documents\":[{\"id\":\"n1\",\"doc_type\":\"penalty_notice\","
                                      "\"doc_no\":\"GZ-1\"}]}"))) ||
        !applied(push1(off, ch_transition(id, 5, "notified"))))
        return -1;
    return 6;
}

/* Was: notified -> decided seconds later, with no 陈述申辩 window, no
 * hearing window and no waiver; 法制审核 before notice and hearing. */
TEST(law_rights_window_then_review_after_hearing) {
    srv_t s;
    START(s);
    phone_t off, sup, leg;
    PHONE(off, s, "off1", "dev-O1");
    PHONE(sup, s, "sup1", "dev-S1");
    PHONE(leg, s, "leg1", "dev-L1");
    const char *off2 = std_user(&s, "off2");
    ASSERT(off2 != NULL);
    const char *id = "01LAWWINDOW0000001";
    long long v = to_notified(&off, &sup, id, off.user_id, off2, NULL);
    ASSERT_MSG(v == 6, "could not reach notified");
    /* No way to the decision straight from the notice. */
    ASSERT_RESULT(push1(&sup, ch_transition(id, v, "decided")), "rejected", "forbidden_transition");
    /* The party's window (3 working days) has not run: refused, naming it. */
    cJSON *res = push1(&off, ch_transition(id, v, "heard"));
    ASSERT_RESULT(res, "rejected", "validation_failed");
    ASSERT_MSG(strstr(jstr(res, "error.message"), "working days") != NULL, "%s", jprint(res));
    res = push1(&leg, ch_transition(id, v, "reviewed"));
    ASSERT_RESULT(res, "rejected", "validation_failed");
    /* The party waives (a document): the case moves on. */
    ASSERT_RESULT(push1(&off, ch_update(id, v, NULL,
                                        "{\"documents\":[{\"id\":\"w1\",\"doc_type\":\"rights_waiver\"}]}")),
                  "applied", NULL);
    ASSERT_RESULT(push1(&off, ch_transition(id, v + 1, "heard")), "applied", NULL);
    /* Legal review after the hearing (Art. 58); a minor case: a supervisor may take it. */
    ASSERT_RESULT(push1(&off, ch_transition(id, v + 2, "reviewed")), "rejected", "role_forbidden");
    ASSERT_RESULT(push1(&leg, ch_transition(id, v + 2, "reviewed")), "applied", NULL);
    ASSERT_RESULT(push1(&sup, ch_transition(id, v + 3, "decided")), "applied", NULL);
    cJSON *c = get_case(&sup, id);
    ASSERT_JSTR(c, "status", "decided");
    /* Frozen from the decision. */
    ASSERT_RESULT(push1(&off, ch_update(id, v + 4, "{\"illegal_item_code\":\"C9999\"}", NULL)), "rejected",
                  "field_frozen");
}

/* Was: no 集体讨论 for major cases (Art. 57); is_major could be cleared so
 * that a supervisor took the review himself; a requested hearing could be
 * skipped. */
TEST(law_major_cases_need_review_discussion_and_stay_major) {
    srv_t s;
    START(s);
    phone_t off, sup, leg;
    PHONE(off, s, "off1", "dev-O1");
    PHONE(sup, s, "sup1", "dev-S1");
    PHONE(leg, s, "leg1", "dev-L1");
    const char *off2 = std_user(&s, "off2");
    ASSERT(off2 != NULL);
    const char *id = "01LAWMAJOR00000001";
    long long v = to_notified(&off, &sup, id, off.user_id, off2,
                              hfmt("{\"is_major\":true,\"hearing_requested\":true,\"hearing_at\":\"%s\"}",
                                   iso_now(3LL * 86400000)));
    ASSERT_MSG(v == 6, "could not reach notified");
    ASSERT_RESULT(push1(&off, ch_update(id, v, NULL,
                                        "{\"documents\":[{\"id\":\"w1\",\"doc_type\":\"rights_waiver\"}]}")),
                  "applied", NULL);
    v++;
    /* The party asked for a hearing: it must be held, noticed 7 working days
     * ahead (Art. 64, 85); a hearing 3 days away is too soon. */
    ASSERT_RESULT(push1(&leg, ch_transition(id, v, "reviewed")), "rejected", "validation_failed");
    cJSON *res = push1(&off, ch_transition(id, v, "heard"));
    ASSERT_RESULT(res, "rejected", "validation_failed");
    ASSERT_RESULT(push1(&off, ch_update(id, v, hfmt("{\"hearing_at\":\"%s\"}", iso_now(20LL * 86400000)),
                                        hfmt("{\"documents\":[{\"id\":\"h1\",\"doc_type\":\"hearing_notice\","
                                             "\"at\":\"%s\"}]}",
                                             iso_now(0)))),
                  "applied", NULL);
    v++;
    ASSERT_RESULT(push1(&off, ch_transition(id, v, "heard")), "applied", NULL);
    v++;
    /* Clearing is_major would let the supervisor review: refused, and a
     * major case is reviewed by the legal office only. */
    ASSERT_RESULT(push1(&sup, ch_transition(id, v, "reviewed")), "rejected", "role_forbidden");
    ASSERT_RESULT(push1(&leg, ch_transition(id, v, "reviewed")), "applied", NULL);
    v++;
    ASSERT_RESULT(push1(&sup, correction(id, v, "{\"is_major\":false}", "not major after all")), "rejected",
                  "field_frozen");
    ASSERT_RESULT(push1(&off, ch_update(id, v, "{\"is_major\":null}", NULL)), "rejected", "field_frozen");
    /* No decision without 集体讨论, and no discussion without its record. */
    res = push1(&sup, ch_transition(id, v, "decided"));
    ASSERT_RESULT(res, "rejected", "validation_failed");
    ASSERT_MSG(strstr(jstr(res, "error.message"), "Art. 57") != NULL, "%s", jprint(res));
    ASSERT_RESULT(push1(&sup, ch_transition(id, v, "discussed")), "rejected", "validation_failed");
    ASSERT_RESULT(
        push1(&sup, ch_update(id, v, NULL, "{\"documents\":[{\"id\":\"d1\",\"doc_type\":\"discussion\"}]}")),
        "applied", NULL);
    v++;
    ASSERT_RESULT(push1(&sup, ch_transition(id, v, "discussed")), "applied", NULL);
    ASSERT_RESULT(push1(&sup, ch_transition(id, v + 1, "decided")), "applied", NULL);
}

/* ---- closed records and conflicts ------------------------------------------------------------- */

/* Was: closed records stayed editable, and a 返工 pushed after 结案 was
 * reported merged and lost. */
TEST(law_closed_records_take_only_notes_and_a_late_rework_is_a_conflict) {
    srv_t s;
    START(s);
    phone_t off, aux, sup, sup2;
    PHONE(off, s, "off1", "dev-O1");
    PHONE(aux, s, "aux1", "dev-X1");
    PHONE(sup, s, "sup1", "dev-S1");
    PHONE(sup2, s, "sup2", "dev-S2");
    const char *id = "01LAWCLOSED0000001";
    ASSERT_RESULT(push1(&aux, ch_create(id, "digital", NULL)), "applied", NULL);
    static const char *const path[] = {"filed", "dispatched", "processing", "feedback", "checking"};
    phone_t *who[] = {&sup, &sup, &off, &off, &aux};
    for (int i = 0; i < 5; i++)
        ASSERT_RESULT(push1(who[i], ch_transition(id, i + 1, path[i])), "applied", NULL);
    /* Two supervisors decide offline from `checking`: one closes, the other sends it back. */
    ASSERT_RESULT(push1(&sup, ch_transition(id, 6, "closed")), "applied", NULL);
    cJSON *res = push1(&sup2, ch_transition(id, 6, "dispatched"));
    ASSERT_RESULT(res, "conflict", NULL);
    ASSERT_JSTR(res, "conflicts[0].field", "status");
    resp_t r = phone_get(&sup, "/v1/conflicts?state=open");
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(jarr_find(jget(resp_json(&r), "items"), "record_id", id) != NULL, "no open conflict: %s",
               r.body);

    long long v = version_of(&sup, id);
    res = push1(&off, ch_update(id, v, "{\"description\":\"changed after closing\"}", NULL));
    ASSERT_RESULT(res, "rejected", "field_frozen");
    ASSERT_RESULT(push1(&aux, ch_update(id, v, NULL, "{\"notes\":[{\"id\":\"late-1\",\"text\":\"x\"}]}")),
                  "rejected", "field_forbidden");
    ASSERT_RESULT(
        push1(&sup, ch_update(id, v, NULL, "{\"notes\":[{\"id\":\"late-2\",\"text\":\"复核无误\"}]}")),
        "applied", NULL);
    cJSON *c = get_case(&sup, id);
    ASSERT_JSTR(c, "status", "closed");
    ASSERT_JSTR(c, "fields.notes[0].text", "复核无误");
}

/* Was: resolving a status conflict skipped every guard: a case became filed
 * without the fields filed requires, with no case number, and kept a
 * closed_at that later removed it from phones. */
TEST(law_conflict_resolution_runs_the_transition_guards) {
    srv_t s;
    START(s);
    phone_t off, sup, sup2;
    PHONE(off, s, "off1", "dev-O1");
    PHONE(sup, s, "sup1", "dev-S1");
    PHONE(sup2, s, "sup2", "dev-S2");
    const char *off2 = std_user(&s, "off2");
    ASSERT(off2 != NULL);
    const char *bare = "01LAWRESOLVE000001", *full = "01LAWRESOLVE000002";
    ASSERT_RESULT(push1(&off, ch_create(bare, "general", NULL)), "applied", NULL);
    ASSERT_RESULT(push1(&off, ch_create(full, "general", decision(off.user_id, off2, "person", 500))),
                  "applied", NULL);
    const char *ids[] = {bare, full};
    const char *cid[2];
    for (int i = 0; i < 2; i++) {
        ASSERT_RESULT(push1(&sup, ch_transition(ids[i], 1, "not_filed")), "applied", NULL);
        cJSON *res = push1(&sup2, ch_transition(ids[i], 1, "filed"));
        ASSERT_RESULT(res, "conflict", NULL);
        cid[i] = hfmt("%s", jstr(res, "conflicts[0].id"));
    }
    /* The bare case lacks what 立案 needs: the resolution is refused, naming it. */
    resp_t r = http(&s, "POST", hfmt("/v1/conflicts/%s/resolve", cid[0]), sup.token,
                    "{\"value\":\"filed\",\"note\":\"should have been filed\"}", NULL);
    ASSERT_ERROR(r, 422, "validation_failed");
    ASSERT_MSG(strstr(jstr(resp_json(&r), "error.field"), "party") != NULL, "%s", r.body);
    ASSERT_JSTR(get_case(&sup, bare), "status", "not_filed");
    /* The full case is filed: it gets its case number and is open again. */
    r = http(&s, "POST", hfmt("/v1/conflicts/%s/resolve", cid[1]), sup.token, "{\"value\":\"filed\"}", NULL);
    ASSERT_STATUS(r, 200);
    cJSON *c = get_case(&sup, full);
    ASSERT_JSTR(c, "status", "filed");
    ASSERT_MSG(jstr(c, "fields.case_no") && strncmp(jstr(c, "fields.case_no"), "U1-", 3) == 0,
               "no case number: %s", jprint(c));
    /* An open case again: the officer's phone keeps it (closed_at is gone). */
    cJSON *items = phone_pull_all(&off);
    ASSERT(items != NULL);
    cJSON *it = pull_item(items, full);
    ASSERT_MSG(it && !jget(it, "closed_at"), "the reopened case: %s", jprint(it));
}

/* ---- a store written under the baseline lifecycles -------------------------------------------- */

/* A store whose records follow lifecycle v1 (simple served/recorded states,
 * general reviewed before notice): the server refuses it until `casesync
 * migrate` moves them, each move audited; verify still passes. */
TEST(law_v1_store_is_refused_until_migrated) {
    srv_t s;
    const char *baseline =
        hfmt("%s/tests/fuzz/corpus/schema/baseline.json", getenv("PWD") ? getenv("PWD") : ".");
    ASSERT_MSG(srv_start_config(&s, hfmt("{\"schema_path\":\"%s\"}", baseline)) == 0,
               "casesyncd with the baseline schema did not start");
    phone_t off, sup, leg;
    PHONE(off, s, "off1", "dev-O1");
    PHONE(sup, s, "sup1", "dev-S1");
    PHONE(leg, s, "leg1", "dev-L1");
    const char *off2 = std_user(&s, "off2");
    ASSERT(off2 != NULL);
    const char *served = "01LAWV1SERVED00001", *recorded = "01LAWV1RECORDED001", *rev = "01LAWV1REVIEWED001";
    const char *dec =
        hfmt("{\"party\":{\"kind\":\"person\",\"name\":\"Zhang San\"},\"illegal_item_code\":\"C0501\","
             "\"assignee\":\"%s\",\"assist_officer\":\"%s\",\"decision_doc_no\":\"JY-7\","
             "\"fine_amount\":50}",
             off.user_id, off2);
    resp_t r =
        phone_push(&off, changes(ch_create(served, "simple", dec), ch_transition(served, 1, "decided"),
                                 ch_transition(served, 2, "served"), ch_create(recorded, "simple", dec),
                                 ch_transition(recorded, 1, "decided"), ch_transition(recorded, 2, "served"),
                                 ch_transition(recorded, 3, "paid"), ch_transition(recorded, 4, "recorded"),
                                 ch_create(rev, "general", dec)));
    ASSERT_STATUS(r, 200);
    for (int i = 0; i < 9; i++)
        ASSERT_JSTR(resp_json(&r), hfmt("results[%d].status", i), "applied");
    r = phone_push(&sup, changes(ch_transition(rev, 1, "filed")));
    ASSERT_STATUS(r, 200);
    r = phone_push(&off, changes(ch_transition(rev, 2, "investigating"), ch_transition(rev, 3, "concluded")));
    ASSERT_STATUS(r, 200);
    r = phone_push(&leg, changes(ch_transition(rev, 4, "reviewed")));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(get_case(&sup, rev), "status", "reviewed");
    ASSERT_INT(srv_stop(&s), 0);

    /* The current schema (built in): refused, saying what to run. */
    ASSERT_MSG(srv_restart(&s) != 0, "casesyncd started on a store of the baseline lifecycle");
    /* Writing commands are refused too; reading ones (backup, verify, export) work. */
    cli_res_t c =
        cli(s.dir, "Secret-new-pw1\n", "user", "add", "newcomer", "--role", "officer", "--unit", "U1");
    ASSERT_MSG(c.rc != 0 && strstr(c.err, "casesync") && strstr(c.err, "migrate"), "user add: %d %s", c.rc,
               c.err);
    c = cli(s.dir, NULL, "verify");
    ASSERT_MSG(c.rc == 0, "verify before migrate: %s %s", c.out, c.err);
    c = cli(s.dir, NULL, "migrate");
    ASSERT_MSG(c.rc == 0 && strstr(c.out, "3 records moved"), "migrate: %d %s %s", c.rc, c.out, c.err);
    c = cli(s.dir, NULL, "migrate");
    ASSERT_MSG(c.rc == 0 && strstr(c.out, "0 records moved"), "a second migrate: %d %s %s", c.rc, c.out,
               c.err);
    c = cli(s.dir, NULL, "verify");
    ASSERT_MSG(c.rc == 0, "verify after migrate: %s %s", c.out, c.err);

    ASSERT_MSG(srv_restart(&s) == 0, "casesyncd did not start after migrate");
    ASSERT(phone_login(&sup, &s, "sup1", std_pass("sup1"), "dev-S1") == 0);
    cJSON *x = get_case(&sup, served);
    ASSERT_JSTR(x, "status", "decided");
    ASSERT_MSG(jstr(x, "fields.served_at") != NULL, "served_at kept: %s", jprint(x));
    x = get_case(&sup, recorded);
    ASSERT_JSTR(x, "status", "paid");
    ASSERT_MSG(jstr(x, "fields.recorded_at") != NULL, "recorded_at kept: %s", jprint(x));
    x = get_case(&sup, rev);
    ASSERT_JSTR(x, "status", "concluded");
    r = phone_get(&sup, hfmt("/v1/cases/%s/history", rev));
    ASSERT_STATUS(r, 200);
    cJSON *items = jget(resp_json(&r), "items");
    if (!items) items = resp_json(&r);
    cJSON *m = jarr_find(items, "op", "migrate");
    ASSERT_MSG(m != NULL, "no migrate entry in history: %s", r.body);
    ASSERT_JSTR(m, "fields.status.old", "reviewed");
    ASSERT_JSTR(m, "fields.status.new", "concluded");
    /* Pulled by phones like any change, and the chain verifies. */
    r = phone_get(&sup, "/v1/audit/verify");
    ASSERT_STATUS(r, 200);
    ASSERT_JBOOL(resp_json(&r), "ok", 1);
}
