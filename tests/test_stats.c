/* test_stats.c -- the figures of /v1/stats (办结率 and the counts beside it,
 * fines imposed and paid, group_by=source|procedure) against a fixture whose
 * every number is computed by hand below. The fixture pushes a known set of
 * cases through known states at known China times in October 2026; the
 * period is October (from=2026-10-01&to=2026-11-01). */
#include "schema/calendar.h"
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PHONE(p, s, name, dev)                                                                               \
    ASSERT_MSG(std_phone(&(p), &(s), (name), (dev)) == 0, "login of %s failed", (name))

/* RFC 3339 UTC of a China wall-clock time in 2026 (pool). */
static const char *at(int m, int d, int hh, int mm) {
    char buf[16];
    int64_t day = 0;
    snprintf(buf, sizeof buf, "2026-%02d-%02d", m, d);
    if (calendar_parse_date(buf, &day) != 0) return "bad";
    int64_t ms = calendar_day_start(day) + hh * 3600000LL + mm * 60000LL;
    int64_t uday = ms / 86400000LL, rest = ms % 86400000LL;
    int y, mo, dd;
    calendar_date(uday, &y, &mo, &dd);
    return hfmt("%04d-%02d-%02dT%02d:%02d:00.000Z", y, mo, dd, (int)(rest / 3600000),
                (int)(rest / 60000 % 60));
}
#define T(m, d) at((m), (d), 10, 0)

/* One record being built: its id and the version the next change bases on. */
typedef struct rec {
    const char *id;
    int v;
} rec_t;

static char *changes_buf;
static size_t changes_len, changes_cap;

static void add(const char *change) {
    size_t n = strlen(change);
    if (changes_len + n + 2 > changes_cap) {
        changes_cap = (changes_len + n + 2) * 2;
        changes_buf = realloc(changes_buf, changes_cap);
    }
    if (changes_len) changes_buf[changes_len++] = ',';
    memcpy(changes_buf + changes_len, change, n + 1);
    changes_len += n;
}

static void create(rec_t *r, const char *type, const char *procedure, const char *extra, const char *when) {
    cJSON *ch = jparse(ch_create_in(r->id, type, procedure, "U1", GRID1, extra));
    cJSON_ReplaceItemInObjectCaseSensitive(ch, "at", cJSON_CreateString(when));
    add(jprint(ch));
    r->v = 1;
}

static void to(rec_t *r, const char *status, const char *when) {
    add(hfmt("{\"op\":\"transition\",\"record_id\":\"%s\",\"base_version\":%d,\"at\":\"%s\",\"to\":\"%s\"}",
             r->id, r->v++, when, status));
}

static void set(rec_t *r, const char *set_json, const char *when) {
    add(ch_update_at(r->id, r->v++, when, set_json, NULL));
}

static void void_at(rec_t *r, const char *when) {
    add(hfmt(
        "{\"op\":\"void\",\"record_id\":\"%s\",\"base_version\":%d,\"at\":\"%s\",\"reason\":\"entered in "
        "error\"}",
        r->id, r->v++, when));
}

/* A group's figures, every one checked. rate: closure_rate x 10000, -1 for
 * null; median: hours x 100, -1 for null; fines in yuan x 100. */
typedef struct fig {
    long long opened, voided, accepted, closed_of_accepted, rate, closed, not_filed, transferred, overdue,
        median, decided, fines_imposed, paid, fines_paid;
} fig_t;

static int check_fig(const cJSON *g, const fig_t *w, const char *what) {
    int ok = g != NULL;
    if (!ok) {
        fprintf(stderr, "    %s: no such group\n", what);
        return 0;
    }
    static const char *const names[] = {
        "opened",    "voided",      "accepted", "closed_of_accepted",    "closure_rate", "closed",
        "not_filed", "transferred", "overdue",  "median_hours_to_close", "decided",      "fines_imposed",
        "paid",      "fines_paid"};
    const long long *want = &w->opened;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const cJSON *v = jget(g, names[i]);
        long long have;
        int scaled = i == 4 || i == 9 || i == 11 || i == 13;
        double scale = i == 4 ? 10000 : 100;
        if (cJSON_IsNull(v))
            have = -1;
        else if (!cJSON_IsNumber(v))
            have = -999;
        else
            have = scaled ? (long long)(v->valuedouble * scale + 0.5) : (long long)v->valuedouble;
        if (have != want[i]) {
            fprintf(stderr, "    %s: %s is %s, expected %lld%s\n", what, names[i], jprint(v), want[i],
                    scaled ? (i == 4 ? " / 10000" : " / 100") : "");
            ok = 0;
        }
    }
    return ok;
}

static const cJSON *group(const cJSON *st, const char *key) {
    return jarr_find(jget(st, "groups"), "key", key);
}

TEST(stats_figures_hand_computed_fixture) {
    srv_t s;
    ASSERT_MSG(srv_start(&s) == 0, "casesyncd did not start");
    phone_t adm;
    PHONE(adm, s, "admin", "dev-adm");
    const char *o1 = std_user(&s, "off1"), *o2 = std_user(&s, "off2");
    ASSERT(o1 && o2 && std_user(&s, "sup1"));
    const char *sup = login(&s, "sup1", std_pass("sup1"), "dev-s1", NULL);
    ASSERT(sup);
    const char *V = "unlicensed_vending", *P = "illegal_parking", *B = "open_air_bbq";
    /* Fields that let a case be filed or decided, with a fine and a source. */
#define DEC(source, fine)                                                                                    \
    hfmt("{\"source\":\"%s\",\"party\":{\"kind\":\"person\",\"name\":\"Wang Wu\"},\"illegal_item_code\":"    \
         "\"C0501-003\",\"assignee\":\"%s\",\"assist_officer\":\"%s\",\"decision_doc_no\":\"JY-1\","         \
         "\"fine_amount\":%d,\"disposition\":\"penalty\"}",                                                     \
         source, o1, o2, fine)
#define SRC(source) hfmt("{\"source\":\"%s\"}", source)

    rec_t D1 = {"st-D1-000001", 0}, D2 = {"st-D2-000001", 0}, D3 = {"st-D3-000001", 0},
          D4 = {"st-D4-000001", 0}, D5 = {"st-D5-000001", 0}, D6 = {"st-D6-000001", 0},
          D7 = {"st-D7-000001", 0};
    rec_t G1 = {"st-G1-000001", 0}, G2 = {"st-G2-000001", 0}, G3 = {"st-G3-000001", 0},
          G4 = {"st-G4-000001", 0}, G5 = {"st-G5-000001", 0};
    rec_t S1 = {"st-S1-000001", 0}, S2 = {"st-S2-000001", 0}, S3 = {"st-S3-000001", 0};

    /* Digital events (数字城管). Accepted (受理) when first dispatched. */
    create(&D1, V, "digital", SRC("hotline"), T(9, 25)); /* dispatched 10-09, closed 10-12 */
    to(&D1, "filed", at(9, 25, 10, 1));
    to(&D1, "dispatched", T(10, 9));
    to(&D1, "processing", at(10, 9, 10, 1));
    to(&D1, "feedback", at(10, 9, 10, 2));
    to(&D1, "checking", at(10, 9, 10, 3));
    to(&D1, "closed", T(10, 12));
    create(&D2, V, "digital", SRC("patrol"), T(10, 5)); /* dispatched 10-06, closed 11-03: after the period */
    to(&D2, "filed", at(10, 5, 10, 1));
    to(&D2, "dispatched", T(10, 6));
    to(&D2, "processing", at(10, 6, 10, 1));
    to(&D2, "feedback", at(10, 6, 10, 2));
    to(&D2, "checking", at(10, 6, 10, 3));
    to(&D2, "closed", T(11, 3));
    create(&D3, V, "digital", SRC("hotline"), T(9, 20)); /* dispatched 09-21 (before), closed 10-15 */
    to(&D3, "filed", at(9, 20, 10, 1));
    to(&D3, "dispatched", T(9, 21));
    to(&D3, "processing", at(9, 21, 10, 1));
    to(&D3, "feedback", at(9, 21, 10, 2));
    to(&D3, "checking", at(9, 21, 10, 3));
    to(&D3, "closed", T(10, 15));
    create(&D4, P, "digital", SRC("hotline"), T(10, 8)); /* 不予立案 10-09 */
    to(&D4, "rejected", T(10, 9));
    create(&D5, V, "digital", SRC("patrol"), T(10, 10)); /* dispatched 10-11, voided 10-20 */
    to(&D5, "filed", at(10, 10, 10, 1));
    to(&D5, "dispatched", T(10, 11));
    void_at(&D5, T(10, 20));
    create(&D6, P, "digital", SRC("patrol"),
           T(10, 12)); /* dispatched 10-12, still processing: 1 h, overdue */
    to(&D6, "filed", at(10, 12, 10, 1));
    to(&D6, "dispatched", at(10, 12, 10, 2));
    to(&D6, "processing", at(10, 12, 10, 3));
    create(&D7, V, "digital", SRC("hotline"), T(10, 2)); /* dispatched 10-03, 返工 10-06, closed 10-07 */
    to(&D7, "filed", at(10, 2, 10, 1));
    to(&D7, "dispatched", T(10, 3));
    to(&D7, "processing", at(10, 3, 10, 1));
    to(&D7, "feedback", at(10, 3, 10, 2));
    to(&D7, "checking", T(10, 4));
    to(&D7, "dispatched", T(10, 6));
    to(&D7, "processing", at(10, 6, 10, 1));
    to(&D7, "feedback", at(10, 6, 10, 2));
    to(&D7, "checking", at(10, 6, 10, 3));
    to(&D7, "closed", T(10, 7));

    /* General procedure (一般程序). Accepted when filed (立案). */
    create(&G1, V, "general", DEC("petition", 5000),
           T(10, 2)); /* filed 10-03, decided 10-20, paid 10-25, closed 10-28 */
    to(&G1, "filed", T(10, 3));
    to(&G1, "investigating", at(10, 3, 10, 1));
    to(&G1, "concluded", T(10, 10));
    /* SCHEMA v2 B: notice (with its document), the party's waiver, hearing, then legal review */
    add(ch_update_at(G1.id, G1.v++, T(10, 13), NULL,
                     "{\"documents\":[{\"id\":\"g1-notice\",\"doc_type\":\"penalty_notice\"},"
                     "{\"id\":\"g1-waiver\",\"doc_type\":\"rights_waiver\"}]}"));
    to(&G1, "notified", T(10, 13));
    to(&G1, "heard", T(10, 19));
    to(&G1, "reviewed", T(10, 19));
    to(&G1, "decided", T(10, 20));
    to(&G1, "served", T(10, 21));
    set(&G1, hfmt("{\"payment\":{\"method\":\"bank\",\"receipt_no\":\"R-1\",\"paid_at\":\"%s\"}}", T(10, 25)),
        T(10, 25));
    to(&G1, "executing", T(10, 26));
    to(&G1, "closed", T(10, 28));
    create(&G2, V, "general", SRC("media"), T(10, 5)); /* 不予立案 10-06 */
    to(&G2, "not_filed", T(10, 6));
    create(&G3, V, "general", SRC("referral"), T(10, 6)); /* 移送 10-07 */
    to(&G3, "transferred", T(10, 7));
    create(&G4, V, "general", DEC("petition", 0), T(8, 1)); /* filed 08-01: decision due 10-30, overdue */
    to(&G4, "filed", at(8, 1, 10, 1));
    to(&G4, "investigating", T(8, 2));
    create(&G5, V, "general", DEC("patrol", 0), T(10, 9)); /* filed 10-10: decision due 2027-01-08 */
    to(&G5, "filed", T(10, 10));
    to(&G5, "investigating", at(10, 10, 10, 1));

    /* Simple procedure (简易程序): decided on the spot, never "accepted". */
    create(&S1, B, "simple", DEC("patrol", 200), T(10, 8)); /* decided 10-08, paid_at 10-09, closed 10-10 */
    to(&S1, "decided", at(10, 8, 10, 5)); /* SCHEMA v2 C: served on the spot; 备案 a flag */
    set(&S1, hfmt("{\"payment\":{\"method\":\"bank\",\"receipt_no\":\"R-2\",\"paid_at\":\"%s\"}}", T(10, 9)),
        T(10, 9));
    to(&S1, "paid", at(10, 9, 10, 1));
    set(&S1, hfmt("{\"recorded_at\":\"%s\"}", at(10, 9, 10, 2)), at(10, 9, 10, 2));
    to(&S1, "closed", T(10, 10));
    create(&S2, B, "simple", DEC("patrol", 100),
           T(9, 28)); /* decided 09-28, paid (state) 10-03, never recorded */
    to(&S2, "decided", at(9, 28, 10, 5));
    set(&S2, "{\"payment\":{\"method\":\"bank\"}}", at(9, 28, 10, 6));
    to(&S2, "paid", T(10, 3));
    create(&S3, B, "simple", DEC("hotline", 50), T(10, 15)); /* decided 10-15, voided 10-16 */
    to(&S3, "decided", at(10, 15, 10, 5));
    void_at(&S3, T(10, 16));

    resp_t r = phone_push(&adm, hfmt("[%s]", changes_buf));
    free(changes_buf);
    ASSERT_STATUS(r, 200);
    cJSON *it;
    int n = 0;
    cJSON_ArrayForEach(it, jget(resp_json(&r), "results")) {
        ASSERT_MSG(jstr(it, "status") && strcmp(jstr(it, "status"), "applied") == 0, "change %d: %s", n,
                   jprint(it));
        n++;
    }

    /* G5's decision is due at the end of 8 Jan 2027 (90 natural days after 10
     * Oct); overdue only once that has passed. */
    char g5due[16] = "2027-01-09";
    int64_t day;
    ASSERT(calendar_parse_date(g5due, &day) == 0);
    long long g5 = (long long)time(NULL) * 1000 >= calendar_day_start(day);

    /* By hand, October 2026 in U1:
     * opened (registered, not voided): D2 D4 D6 D7 G1 G2 G3 G5 S1            = 9
     * voided (registered in October and since voided): D5 S3                 = 2
     * accepted (受理): dispatched D1 D2 D5 D6 D7 (first dispatch; D3 in
     *   September), filed G1 G5 (G4 in August)                               = 7
     * closed_of_accepted: D1 D7 G1 (D2 after the period, D5 voided)          = 3
     * closure_rate (办结率) 3/7                                              = 0.4286
     * closed (结案 in October): D1 D3 D7 G1 S1                               = 5
     * not_filed (不予立案): D4 G2; transferred (移送): G3                     = 2, 1
     * overdue now: D6 (1 h disposal), G4 (decision), S2 (备案), G5 later     = 3 + g5
     * median hours to close: 408 (D1), 600 (D3), 120 (D7), 624 (G1), 48 (S1) = 408
     * decided in October (not voided): G1 5000, S1 200                      = 2, 5200.00
     * paid in October: G1 (paid_at 10-25) 5000, S1 (paid_at 10-09) 200,
     *   S2 (paid state 10-03) 100                                           = 3, 5300.00 */
    const char *range = "from=2026-10-01&to=2026-11-01";
    r = http(&s, "GET", hfmt("/v1/stats?%s&group_by=source", range), sup, NULL, NULL);
    ASSERT_STATUS(r, 200);
    cJSON *st = resp_json(&r);
    fig_t total = {9, 2, 7, 3, 4286, 5, 2, 1, 3 + g5, 40800, 2, 520000, 3, 530000};
    ASSERT(check_fig(jget(st, "total"), &total, "total"));
    /* By source:
     * hotline D1 D3 D4 D7 S3: opened D4 D7; voided S3; accepted D1 D7, both
     *   closed; closed D1 D3 D7 (median 408); not_filed D4.
     * patrol D2 D5 D6 G5 S1 S2: opened D2 D6 G5 S1; voided D5; accepted D2 D5
     *   D6 G5, none closed; closed S1 (48 h); overdue D6 S2 (+G5); decided S1
     *   200; paid S1 S2 300.
     * petition G1 G4: opened, accepted, closed G1 (624 h); overdue G4;
     *   decided and paid G1 5000.
     * media G2: opened, not_filed. referral G3: opened, transferred. */
    fig_t hotline = {2, 1, 2, 2, 10000, 3, 1, 0, 0, 40800, 0, 0, 0, 0};
    fig_t patrol = {4, 1, 4, 0, 0, 1, 0, 0, 2 + g5, 4800, 1, 20000, 2, 30000};
    fig_t petition = {1, 0, 1, 1, 10000, 1, 0, 0, 1, 62400, 1, 500000, 1, 500000};
    fig_t media = {1, 0, 0, 0, -1, 0, 1, 0, 0, -1, 0, 0, 0, 0};
    fig_t referral = {1, 0, 0, 0, -1, 0, 0, 1, 0, -1, 0, 0, 0, 0};
    ASSERT(check_fig(group(st, "hotline"), &hotline, "hotline"));
    ASSERT(check_fig(group(st, "patrol"), &patrol, "patrol"));
    ASSERT(check_fig(group(st, "petition"), &petition, "petition"));
    ASSERT(check_fig(group(st, "media"), &media, "media"));
    ASSERT(check_fig(group(st, "referral"), &referral, "referral"));
    ASSERT_INT(jlen(st, "groups"), 5);

    /* By procedure:
     * digital: opened D2 D4 D6 D7; voided D5; accepted D1 D2 D5 D6 D7, closed
     *   D1 D7 (2/5); closed D1 D3 D7 (408); not_filed D4; overdue D6.
     * general: opened G1 G2 G3 G5; accepted G1 G5, closed G1 (1/2); closed G1
     *   (624); not_filed G2; transferred G3; overdue G4 (+G5); G1's 5000.
     * simple: opened S1; voided S3; closed S1 (48); overdue S2; decided S1
     *   200; paid S1 S2 300. */
    r = http(&s, "GET", hfmt("/v1/stats?%s&group_by=procedure", range), sup, NULL, NULL);
    ASSERT_STATUS(r, 200);
    st = resp_json(&r);
    fig_t digital = {4, 1, 5, 2, 4000, 3, 1, 0, 1, 40800, 0, 0, 0, 0};
    fig_t general = {4, 0, 2, 1, 5000, 1, 1, 1, 1 + g5, 62400, 1, 500000, 1, 500000};
    fig_t simple = {1, 1, 0, 0, -1, 1, 0, 0, 1, 4800, 1, 20000, 2, 30000};
    ASSERT(check_fig(group(st, "digital"), &digital, "digital"));
    ASSERT(check_fig(group(st, "general"), &general, "general"));
    ASSERT(check_fig(group(st, "simple"), &simple, "simple"));
    ASSERT(check_fig(jget(st, "total"), &total, "total by procedure"));

    /* The period is [from, to): November holds only D2's closing. */
    r = http(&s, "GET", "/v1/stats?from=2026-11-01&to=2026-12-01&group_by=procedure", sup, NULL, NULL);
    ASSERT_STATUS(r, 200);
    fig_t november = {0, 0, 0, 0, -1, 1, 0, 0, 3 + g5, 69600, 0, 0, 0, 0}; /* D2: 10-05 -> 11-03 = 696 h */
    ASSERT(check_fig(jget(resp_json(&r), "total"), &november, "November"));
    r = http(&s, "GET", "/v1/stats?group_by=weather", sup, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    ASSERT_INT(srv_stop(&s), 0);
}

/* The workflow figures of /v1/stats (督办, the hotline loop, 首违不罚, 处置)
 * against a second fixture, October 2026 in U1, every number by hand. */
typedef struct wfig {
    long long sv_issued, sv_done, sv_done_late, sv_open, replies_due, replied_on_time, reply_rate, callbacks,
        satisfied, satisfaction_rate, first_offence, decided, dispatched, disposed, disposed_on_time,
        disposal_rate, disposal_on_time_rate;
} wfig_t;

/* rates x 10000, -1 for null. */
static int check_wfig(const cJSON *g, const wfig_t *w, const char *what) {
    static const char *const names[] = {
        "sv_issued",    "sv_done",         "sv_done_late",  "sv_open",           "replies_due",
        "replied_on_time", "reply_on_time_rate", "callbacks", "satisfied",       "satisfaction_rate",
        "first_offence", "decided",        "dispatched",    "disposed",          "disposed_on_time",
        "disposal_rate", "disposal_on_time_rate"};
    const long long *want = &w->sv_issued;
    int ok = g != NULL;
    if (!ok) fprintf(stderr, "    %s: no such group\n", what);
    for (size_t i = 0; ok && i < sizeof names / sizeof names[0]; i++) {
        const cJSON *v = jget(g, names[i]);
        int rate = strstr(names[i], "rate") != NULL;
        long long have = cJSON_IsNull(v)      ? -1
                         : !cJSON_IsNumber(v) ? -999
                         : rate               ? (long long)(v->valuedouble * 10000 + 0.5)
                                              : (long long)v->valuedouble;
        if (have != want[i]) {
            fprintf(stderr, "    %s: %s is %s, expected %lld%s\n", what, names[i], jprint(v), want[i],
                    rate ? " / 10000" : "");
            ok = 0;
        }
    }
    return ok;
}

TEST(stats_workflow_figures_hand_computed_fixture) {
    srv_t s;
    ASSERT_MSG(srv_start(&s) == 0, "casesyncd did not start");
    phone_t adm;
    PHONE(adm, s, "admin", "dev-adm");
    const char *o1 = std_user(&s, "off1"), *o2 = std_user(&s, "off2");
    ASSERT(o1 && o2 && std_user(&s, "sup1"));
    const char *sup = login(&s, "sup1", std_pass("sup1"), "dev-s1", NULL);
    ASSERT(sup);
    const char *V = "unlicensed_vending" /* 1 h to dispose */, *G = "exposed_garbage" /* 2 h */;
    rec_t E1 = {"wf-E1-000001", 0}, E2 = {"wf-E2-000001", 0}, E3 = {"wf-E3-000001", 0},
          E4 = {"wf-E4-000001", 0}, E5 = {"wf-E5-000001", 0}, E6 = {"wf-E6-000001", 0},
          E7 = {"wf-E7-000001", 0};
    rec_t F1 = {"wf-F1-000001", 0}, F2 = {"wf-F2-000001", 0}, F3 = {"wf-F3-000001", 0};
    changes_buf = NULL, changes_len = changes_cap = 0;
#define ORDER(oid, due) hfmt("{\"supervision\":[{\"id\":\"%s\",\"ask\":\"督办 %s\",\"due_at\":\"%s\"}]}", oid, oid, due)
#define REPLY(rid, oid, done)                                                                                \
    hfmt("{\"supervision_replies\":[{\"id\":\"%s\",\"order_id\":\"%s\",\"text\":\"办理情况\",\"done\":%s}]}", rid, \
         oid, done)
#define APPEND(r, json, when) add(ch_update_at((r)->id, (r)->v++, (when), NULL, (json)))
#define DISPATCH(r, type, d, h)                                                                              \
    do {                                                                                                     \
        create((r), (type), "digital", "{\"source\":\"hotline\"}", at(10, (d), 9, 0));                     \
        to((r), "filed", at(10, (d), 9, 30));                                                                \
        to((r), "dispatched", at(10, (d), (h), 0));                                                          \
    } while (0)

    /* 数字城管 events from the hotline. */
    DISPATCH(&E1, V, 3, 10); /* dispatched 10-03 10:00 */
    to(&E1, "processing", at(10, 3, 10, 10));
    to(&E1, "feedback", at(10, 3, 10, 30)); /* 30 min: disposed on time */
    set(&E1, hfmt("{\"ticket_no\":\"T-1\",\"reply_due\":\"%s\"}", at(10, 5, 10, 0)), at(10, 3, 11, 0));
    APPEND(&E1, ORDER("o1", at(10, 5, 10, 0)), at(10, 3, 12, 0)); /* o1 issued 10-03 12:00, due 10-05 */
    set(&E1, hfmt("{\"reply\":{\"text\":\"已处理\",\"at\":\"%s\"}}", at(10, 4, 10, 0)), at(10, 4, 10, 0));
    APPEND(&E1, REPLY("r1", "o1", "true"), at(10, 4, 11, 0)); /* o1 done on time */
    set(&E1, hfmt("{\"callback\":{\"satisfied\":true,\"at\":\"%s\"}}", at(10, 6, 9, 0)), at(10, 6, 9, 0));
    APPEND(&E1, ORDER("o7", at(10, 22, 10, 0)), at(10, 20, 10, 0)); /* o7 issued 10-20, due 10-22 */
    APPEND(&E1, REPLY("r7", "o7", "true"), at(10, 23, 10, 0));      /* o7 done late */

    DISPATCH(&E2, G, 4, 10); /* dispatched 10-04 10:00 */
    to(&E2, "processing", at(10, 4, 11, 0));
    to(&E2, "feedback", at(10, 4, 13, 0)); /* 3 h > 2 h: disposed late */
    set(&E2, hfmt("{\"reply_due\":\"%s\"}", at(10, 6, 10, 0)), at(10, 4, 13, 5));
    APPEND(&E2, ORDER("o2", at(10, 5, 10, 0)), at(10, 4, 14, 0)); /* o2 due 10-05 */
    APPEND(&E2, REPLY("r2a", "o2", "false"), at(10, 5, 9, 0));    /* an answer, not done */
    APPEND(&E2, REPLY("r2b", "o2", "true"), at(10, 6, 9, 0));     /* done late */
    set(&E2, hfmt("{\"reply\":{\"text\":\"已处理\",\"at\":\"%s\"}}", at(10, 7, 10, 0)), at(10, 7, 10, 0));
    set(&E2, hfmt("{\"callback\":{\"satisfied\":false,\"at\":\"%s\"}}", at(10, 8, 10, 0)), at(10, 8, 10, 0));

    DISPATCH(&E3, V, 5, 10); /* dispatched 10-05, never disposed */
    to(&E3, "processing", at(10, 5, 10, 10));
    set(&E3, hfmt("{\"reply_due\":\"%s\"}", at(10, 10, 10, 0)), at(10, 5, 11, 0)); /* never replied */
    add(ch_update_at(E3.id, E3.v++, at(10, 10, 10, 0), NULL,
                     hfmt("{\"supervision\":[{\"id\":\"o3\",\"ask\":\"x\",\"due_at\":\"%s\"},"
                          "{\"id\":\"o4\",\"ask\":\"y\",\"due_at\":\"%s\"}]}",
                          at(10, 12, 10, 0), at(10, 12, 10, 0)))); /* o3, o4 issued together 10-10 */
    APPEND(&E3, REPLY("r4", "o4", "true"), at(11, 2, 10, 0));       /* o4 done after the period */

    create(&E4, V, "digital", "{\"source\":\"hotline\"}", at(9, 28, 9, 0)); /* dispatched in September */
    to(&E4, "filed", at(9, 28, 9, 30));
    to(&E4, "dispatched", at(9, 28, 10, 0));
    to(&E4, "processing", at(9, 28, 10, 10));
    to(&E4, "feedback", at(10, 1, 10, 0));

    DISPATCH(&E5, V, 30, 10); /* dispatched 10-30, disposed 11-02 (after the period) */
    to(&E5, "processing", at(10, 30, 10, 10));
    set(&E5, hfmt("{\"reply_due\":\"%s\"}", at(11, 5, 10, 0)), at(10, 30, 11, 0));
    set(&E5, hfmt("{\"reply\":{\"text\":\"已处理\",\"at\":\"%s\"}}", at(10, 31, 10, 0)), at(10, 31, 10, 0));
    to(&E5, "feedback", at(11, 2, 10, 0));
    set(&E5, hfmt("{\"callback\":{\"satisfied\":true,\"at\":\"%s\"}}", at(11, 3, 10, 0)), at(11, 3, 10, 0));

    create(&E6, V, "digital", "{\"source\":\"hotline\"}", at(9, 30, 9, 0));
    APPEND(&E6, ORDER("o5", at(10, 2, 10, 0)), at(9, 30, 10, 0)); /* o5 issued in September */
    to(&E6, "filed", at(10, 6, 9, 30));
    to(&E6, "dispatched", at(10, 6, 10, 0));
    to(&E6, "processing", at(10, 6, 10, 5));
    to(&E6, "feedback", at(10, 6, 10, 20)); /* first disposal on time */
    to(&E6, "checking", at(10, 6, 11, 0));
    to(&E6, "dispatched", at(10, 7, 10, 0)); /* 返工: the first dispatch and disposal count */
    to(&E6, "processing", at(10, 7, 10, 5));
    to(&E6, "feedback", at(10, 7, 15, 0));
    APPEND(&E6, REPLY("r5", "o5", "true"), at(10, 3, 10, 0) /* not used: base order */);
    set(&E6, hfmt("{\"reply_due\":\"%s\"}", at(10, 8, 10, 0)), at(10, 7, 11, 0));
    /* reply.at says 10-20, written 10-07 12:00: the time is clamped to the writing */
    set(&E6, hfmt("{\"reply\":{\"text\":\"已处理\",\"at\":\"%s\"}}", at(10, 20, 10, 0)), at(10, 7, 12, 0));
    set(&E6, "{\"callback\":{\"satisfied\":true}}", at(10, 9, 10, 0)); /* no callback.at: the writing's */

    DISPATCH(&E7, V, 8, 10); /* dispatched 10-08, voided 10-09 */
    void_at(&E7, at(10, 9, 10, 0));

    /* General cases decided without a penalty (Art. 33). */
#define NOPEN(reason)                                                                                        \
    hfmt("{\"source\":\"patrol\",\"party\":{\"kind\":\"person\",\"name\":\"Wang Wu\"},\"illegal_item_code\":" \
         "\"C0501-003\",\"assignee\":\"%s\",\"assist_officer\":\"%s\",\"decision_doc_no\":\"JY-1\","         \
         "\"disposition\":\"no_penalty\",\"no_penalty_reason\":\"%s\"}",                                       \
         o1, o2, reason)
    rec_t *fs[3] = {&F1, &F2, &F3};
    const char *reasons[3] = {"first_offence", "minor_corrected", "first_offence"};
    int fm[3] = {10, 10, 9}, fd[3] = {20, 21, 25};
    for (int i = 0; i < 3; i++) {
        rec_t *r = fs[i];
        int m = fm[i], d = fd[i];
        create(r, V, "general", NOPEN(reasons[i]), at(m, d - 10, 9, 0));
        to(r, "filed", at(m, d - 10, 10, 0));
        to(r, "investigating", at(m, d - 10, 11, 0));
        to(r, "concluded", at(m, d - 5, 10, 0));
        add(ch_update_at(r->id, r->v++, at(m, d - 4, 10, 0), NULL,
                         hfmt("{\"documents\":[{\"id\":\"%s-n\",\"doc_type\":\"penalty_notice\"},"
                              "{\"id\":\"%s-w\",\"doc_type\":\"rights_waiver\"}]}",
                              r->id, r->id)));
        to(r, "notified", at(m, d - 4, 10, 1));
        to(r, "heard", at(m, d - 1, 10, 0));
        to(r, "reviewed", at(m, d - 1, 11, 0));
        to(r, "decided", at(m, d, 10, 0));
    }
    APPEND(&F1, ORDER("o6", at(10, 31, 10, 0)), at(10, 25, 10, 0)); /* o6 issued 10-25, due 10-31 */
    APPEND(&F1, REPLY("r6", "o6", "true"), at(10, 30, 10, 0));      /* done on time */

    resp_t r = phone_push(&adm, hfmt("[%s]", changes_buf));
    free(changes_buf);
    changes_buf = NULL;
    ASSERT_STATUS(r, 200);
    cJSON *it;
    int n = 0;
    cJSON_ArrayForEach(it, jget(resp_json(&r), "results")) {
        ASSERT_MSG(jstr(it, "status") && strcmp(jstr(it, "status"), "applied") == 0, "change %d: %s", n,
                   jprint(it));
        n++;
    }

    /* By hand, October 2026 in U1:
     * 督办 issued in October: o1 (E1 10-03), o7 (E1 10-20), o2 (E2 10-04),
     *   o3 and o4 (E3 10-10), o6 (F1 10-25); o5 (E6) was issued 09-30      = 6
     *   done on time (a done reply by due_at, before 11-01): o1, o6           = 2
     *   done late: o2 (due 10-05, done 10-06), o7 (due 10-22, done 10-23)     = 2
     *   open at the end of October: o3 (no answer), o4 (done 11-02)          = 2
     * hotline replies due in October: E1 (10-05), E2 (10-06), E3 (10-10, never
     *   replied: passed), E6 (10-08); E5's is 11-05                          = 4
     *   on time: E1 (10-04), E6 (reply.at 10-20 clamped to its writing 10-07
     *   12:00); E2 replied 10-07, E3 never                                   = 2, rate 0.5
     * 回访 in October: E1 satisfied, E2 not, E6 satisfied (no at: 10-09);
     *   E5's is 11-03                                                        = 3, 2, 0.6667
     * decided in October: F1 (first_offence), F2 (minor_corrected); F3 in
     *   September                                                            = 2, first_offence 1
     * digital events dispatched in October (not voided): E1 E2 E3 E5 E6; E4
     *   in September, E7 voided                                             = 5
     *   disposed (first 处理反馈 before 11-01): E1 E2 E6; E3 never, E5 11-02  = 3, 0.6
     *   on time: E1 (30 min of 1 h), E6 (20 min; the 返工 does not count);
     *   E2 took 3 h of 2 h                                                  = 2, 0.4 */
    const char *range = "from=2026-10-01&to=2026-11-01";
    r = http(&s, "GET", hfmt("/v1/stats?%s&group_by=procedure", range), sup, NULL, NULL);
    ASSERT_STATUS(r, 200);
    cJSON *st = resp_json(&r);
    wfig_t total = {6, 2, 2, 2, 4, 2, 5000, 3, 2, 6667, 1, 2, 5, 3, 2, 6000, 4000};
    ASSERT(check_wfig(jget(st, "total"), &total, "total"));
    /* digital: E1..E7 (o1 o7 o2 o3 o4; all the hotline; all the disposals);
     * general: F1..F3 (o6; the decisions; nothing dispatched). */
    wfig_t digital = {5, 1, 2, 2, 4, 2, 5000, 3, 2, 6667, 0, 0, 5, 3, 2, 6000, 4000};
    wfig_t general = {1, 1, 0, 0, 0, 0, -1, 0, 0, -1, 1, 2, 0, 0, 0, -1, -1};
    ASSERT(check_wfig(group(st, "digital"), &digital, "digital"));
    ASSERT(check_wfig(group(st, "general"), &general, "general"));
    /* The admin's city-wide answer walks the city-wide indexes: the same. */
    r = http(&s, "GET", hfmt("/v1/stats?%s", range), adm.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT(check_wfig(jget(resp_json(&r), "total"), &total, "admin, every unit"));

    /* November: no order issued, nothing dispatched; E5's reply (due 11-05,
     * replied 10-31) on time; E5's 回访 satisfied. */
    r = http(&s, "GET", "/v1/stats?from=2026-11-01&to=2026-12-01", sup, NULL, NULL);
    ASSERT_STATUS(r, 200);
    wfig_t november = {0, 0, 0, 0, 1, 1, 10000, 1, 1, 10000, 0, 0, 0, 0, 0, -1, -1};
    ASSERT(check_wfig(jget(resp_json(&r), "total"), &november, "November"));
    ASSERT_INT(srv_stop(&s), 0);
}

/* 加处罚款 (行政处罚法 Art. 72) as GET /v1/cases/{id} shows it in
 * derived.late_fee, to the supervisor and to the officer's phone. */
TEST(case_read_shows_the_late_fee_from_the_payment_deadline) {
    srv_t s;
    ASSERT_MSG(srv_start(&s) == 0, "casesyncd did not start");
    phone_t adm;
    PHONE(adm, s, "admin", "dev-adm");
    const char *o1 = std_user(&s, "off1"), *o2 = std_user(&s, "off2");
    ASSERT(o1 && o2 && std_user(&s, "sup1"));
    const char *sup = login(&s, "sup1", std_pass("sup1"), "dev-s1", NULL);
    const char *off = login(&s, "off1", std_pass("off1"), "dev-o1", NULL);
    ASSERT(sup && off);
    changes_buf = NULL, changes_len = changes_cap = 0;
    rec_t L1 = {"lf-L1-000001", 0}, L2 = {"lf-L2-000001", 0}, L3 = {"lf-L3-000001", 0};
    rec_t *rs[3] = {&L1, &L2, &L3};
    int fines[3] = {1000, 200, 0}, months[3] = {3, 9, 9};
    for (int i = 0; i < 3; i++) {
        rec_t *r = rs[i];
        int m = months[i];
        create(r, "unlicensed_vending", "general", DEC("patrol", fines[i]), at(m, 2, 8, 0));
        to(r, "filed", at(m, 2, 8, 10));
        to(r, "investigating", at(m, 2, 8, 20));
        to(r, "concluded", at(m, 2, 8, 30));
        add(ch_update_at(r->id, r->v++, at(m, 2, 8, 40), NULL,
                         hfmt("{\"documents\":[{\"id\":\"%s-n\",\"doc_type\":\"penalty_notice\"},"
                              "{\"id\":\"%s-w\",\"doc_type\":\"rights_waiver\"}]}",
                              r->id, r->id)));
        to(r, "notified", at(m, 2, 8, 50));
        to(r, "heard", at(m, 2, 9, 0));
        to(r, "reviewed", at(m, 2, 9, 10));
        to(r, "decided", at(m, 2, 9, 20));
        to(r, "served", at(m, 2, 10, 0));
    }
    /* L1 pays on 20 March 10:00 China. */
    set(&L1, hfmt("{\"payment\":{\"method\":\"bank\",\"receipt_no\":\"R-9\",\"paid_at\":\"%s\"}}", at(3, 20, 10, 0)),
        at(3, 20, 10, 0));
    resp_t r = phone_push(&adm, hfmt("[%s]", changes_buf));
    free(changes_buf);
    changes_buf = NULL;
    ASSERT_STATUS(r, 200);
    cJSON *it;
    cJSON_ArrayForEach(it, jget(resp_json(&r), "results")) ASSERT_JSTR(it, "status", "applied");

    /* L1: served Monday 2 March 2026 10:00; 15 days: the period ends at 24:00
     * of 17 March (2026-03-17T16:00Z). Paid 20 March 10:00 (02:00Z): 2 days
     * 10 hours late, so 3 days begun: 1000 x 3% x 3 = 90.00 yuan. */
    r = http(&s, "GET", "/v1/cases/lf-L1-000001", sup, NULL, NULL);
    ASSERT_STATUS(r, 200);
    const cJSON *fee = jget(resp_json(&r), "derived.late_fee");
    ASSERT_MSG(cJSON_IsObject(fee), "late_fee: %s", jprint(fee));
    ASSERT_INT(jint(fee, "days"), 3);
    ASSERT_INT((long long)(jget(fee, "amount")->valuedouble * 100 + 0.5), 9000);
    ASSERT_MSG(strncmp(jstr(fee, "from"), "2026-03-17T16:00:00", 19) == 0, "from %s", jstr(fee, "from"));
    ASSERT_MSG(strncmp(jstr(fee, "until"), "2026-03-20T02:00:00", 19) == 0, "until %s", jstr(fee, "until"));
    ASSERT(!jbool(fee, "capped"));
    /* L2: served 2 September, never paid: far more than 34 days, so the fee
     * is the fine itself (200.00), and the officer's phone reads the same. */
    r = http(&s, "GET", "/v1/cases/lf-L2-000001", off, NULL, NULL);
    ASSERT_STATUS(r, 200);
    fee = jget(resp_json(&r), "derived.late_fee");
    ASSERT_MSG(cJSON_IsObject(fee), "late_fee: %s", jprint(fee));
    ASSERT_INT((long long)(jget(fee, "amount")->valuedouble * 100 + 0.5), 20000);
    ASSERT(jbool(fee, "capped"));
    ASSERT(cJSON_IsNull(jget(fee, "until")));
    /* L3: no fine, no late fee. */
    r = http(&s, "GET", "/v1/cases/lf-L3-000001", sup, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT(cJSON_IsNull(jget(resp_json(&r), "derived.late_fee")));
    ASSERT_INT(srv_stop(&s), 0);
}
