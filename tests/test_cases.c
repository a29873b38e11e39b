/* test_cases.c -- the consolidated state for supervisors: GET /v1/cases with
 * every filter (checked against a direct computation over what was pushed),
 * paging, scope; /v1/stats on a known dataset; the streamed /v1/export (memory
 * of the server bounded, the CSV read back). The real casesyncd over HTTP,
 * users made with the casesync command line. */
#include "tests/harness.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")
#define DAY_MS (86400000LL)
#define HOUR_MS (3600000LL)

static const char *const types[] = {"unlicensed_vending", "illegal_parking", "exposed_garbage",
                                    "open_air_bbq"};
static const char *const grids[] = {GRID1, GRID2, GRID3};

/* ---- helpers ---------------------------------------------------------------------- */

/* A create of `procedure` whose `at` lies at_offset_ms from now. */
static const char *create_at(const char *id, const char *type, const char *procedure, const char *unit,
                             const char *grid, const char *extra, long long at_offset_ms) {
    cJSON *ch = jparse(ch_create_in(id, type, procedure, unit, grid, extra));
    cJSON_ReplaceItemInObjectCaseSensitive(ch, "at", cJSON_CreateString(iso_now(at_offset_ms)));
    return jprint(ch);
}

static const char *transition_at(const char *id, long long base, const char *to, long long at_offset_ms) {
    return hfmt(
        "{\"op\":\"transition\",\"record_id\":\"%s\",\"base_version\":%lld,\"at\":\"%s\",\"to\":\"%s\"}", id,
        base, iso_now(at_offset_ms), to);
}

/* Fields that let a simple case be decided (and a general one filed). */
static const char *decision_fields(const char *assignee, const char *assist, const char *party) {
    return hfmt(
        "{\"party\":{\"kind\":\"person\",\"name\":\"%s\"},\"illegal_item_code\":\"C0501-003\","
        "\"assignee\":\"%s\",\"assist_officer\":\"%s\",\"decision_doc_no\":\"JY-0042\",\"fine_amount\":150}",
        party, assignee, assist);
}

/* Changes pushed in changesets of at most `max`, each change checked applied. */
typedef struct batch {
    phone_t *ph;
    char *buf;
    size_t n, cap;
    int count, max, failed;
} batch_t;

static void batch_flush(batch_t *b) {
    if (!b->count || b->failed) return;
    const char *body = hfmt("[%s]", b->buf);
    resp_t r = phone_push(b->ph, body);
    cJSON *j = r.status == 200 ? resp_json(&r) : NULL;
    int bad = !j || jlen(j, "results") != b->count;
    cJSON *it;
    cJSON_ArrayForEach(it, jget(j, "results")) {
        const char *st = jstr(it, "status");
        if (!st || strcmp(st, "applied") != 0) {
            bad = 1;
            fprintf(stderr, "    change not applied: %s\n", jprint(it));
            break;
        }
    }
    if (bad) {
        fprintf(stderr, "    push of %d changes -> %ld %s%.600s\n", b->count, r.status, r.err, r.body);
        b->failed = 1;
    }
    resp_free(&r);
    b->n = 0;
    b->count = 0;
}

static void batch_add(batch_t *b, const char *change) {
    size_t len = strlen(change);
    if (b->n + len + 2 > b->cap) {
        b->cap = (b->n + len + 2) * 2;
        b->buf = realloc(b->buf, b->cap);
    }
    if (b->n) b->buf[b->n++] = ',';
    memcpy(b->buf + b->n, change, len + 1);
    b->n += len;
    if (++b->count == b->max) batch_flush(b);
}

static int batch_end(batch_t *b) {
    batch_flush(b);
    free(b->buf);
    b->buf = NULL;
    return b->failed ? -1 : 0;
}

static const char *esc(const char *v) {
    char *e = curl_easy_escape(NULL, v, 0);
    const char *out = hfmt("%s", e ? e : "");
    curl_free(e);
    return out;
}

/* Every page of GET /v1/cases?query with `limit`: the ids in order (pool), or
 * NULL (printed) when a page failed or an id came twice. */
static cJSON *cases_all(srv_t *s, const char *tok, const char *query, int limit) {
    cJSON *ids = h_keep(cJSON_CreateArray(), (void (*)(void *))cJSON_Delete);
    const char *cursor = NULL;
    for (int page = 0; page < 2000; page++) {
        const char *path = hfmt("/v1/cases?%s%slimit=%d%s%s", query, *query ? "&" : "", limit,
                                cursor ? "&cursor=" : "", cursor ? esc(cursor) : "");
        resp_t r = http(s, "GET", path, tok, NULL, NULL);
        cJSON *j = r.status == 200 ? resp_json(&r) : NULL;
        if (!j || !cJSON_IsArray(jget(j, "items"))) {
            fprintf(stderr, "    GET %s -> %ld %.600s\n", path, r.status, r.body);
            return NULL;
        }
        if (jlen(j, "items") > limit) {
            fprintf(stderr, "    %d items on a page of limit %d\n", jlen(j, "items"), limit);
            return NULL;
        }
        cJSON *it;
        cJSON_ArrayForEach(it, jget(j, "items")) {
            const char *id = jstr(it, "id");
            if (!id || jarr_has(ids, NULL, id)) {
                fprintf(stderr, "    %s came twice (query %s)\n", id ? id : "(no id)", query);
                return NULL;
            }
            cJSON_AddItemToArray(ids, cJSON_CreateString(id));
        }
        const cJSON *next = jget(j, "next");
        if (cJSON_IsNull(next)) return ids;
        if (!cJSON_IsString(next)) {
            fprintf(stderr, "    next is neither a cursor nor null: %.300s\n", r.body);
            return NULL;
        }
        cursor = hfmt("%s", next->valuestring);
    }
    fprintf(stderr, "    more than 2000 pages\n");
    return NULL;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Do the two id lists hold the same ids? Prints the difference when not. */
static int same_ids(const cJSON *got, const char **want, int nwant, const char *what) {
    int ngot = cJSON_GetArraySize(got);
    const char **g = calloc((size_t)ngot + 1, sizeof *g);
    const char **w = calloc((size_t)nwant + 1, sizeof *w);
    int i = 0, ok;
    const cJSON *it;
    cJSON_ArrayForEach(it, got) g[i++] = it->valuestring;
    memcpy(w, want, (size_t)nwant * sizeof *w);
    qsort(g, (size_t)ngot, sizeof *g, cmp_str);
    qsort(w, (size_t)nwant, sizeof *w, cmp_str);
    ok = ngot == nwant;
    for (i = 0; ok && i < ngot; i++)
        ok = strcmp(g[i], w[i]) == 0;
    if (!ok) {
        fprintf(stderr, "    %s: got %d ids, expected %d\n", what, ngot, nwant);
        for (i = 0; i < ngot && i < 400; i++) {
            int found = 0;
            for (int k = 0; k < nwant && !found; k++)
                found = strcmp(g[i], w[k]) == 0;
            if (!found) fprintf(stderr, "      unexpected %s\n", g[i]);
        }
        for (i = 0; i < nwant && i < 400; i++) {
            int found = 0;
            for (int k = 0; k < ngot && !found; k++)
                found = strcmp(w[i], g[k]) == 0;
            if (!found) fprintf(stderr, "      missing %s\n", w[i]);
        }
    }
    free(g);
    free(w);
    return ok;
}

/* ---- 1. filters ------------------------------------------------------------------------ */

#define NCASES 300

/* What the test pushed for one case: the truth the answers are checked against. */
typedef struct model {
    char id[32];
    const char *unit, *type, *grid, *assignee, *status;
    int overdue;     /* a deadline passed (simple cases decided 10 days ago, events dispatched a day ago) */
    int stall;       /* description holds "Fruit STALL" */
    int tanzhan;     /* description holds 摊点 */
    int li_wei;      /* party.name is "Li Wei" */
    int late;        /* updated after the mark */
    int has_case_no; /* filed or decided */
} model_t;

/* A query and the predicate that says which cases it should return. */
typedef struct want {
    const char *status, *type, *grid, *assignee, *unit;
    int overdue; /* -1 either */
    int late, stall, tanzhan, li_wei, case_no_u2;
} want_t;

static int model_match(const model_t *m, const want_t *w) {
    if (w->status && strcmp(m->status, w->status) != 0) return 0;
    if (w->type && strcmp(m->type, w->type) != 0) return 0;
    if (w->grid && strcmp(m->grid, w->grid) != 0) return 0;
    if (w->assignee && (!m->assignee || strcmp(m->assignee, w->assignee) != 0)) return 0;
    if (w->unit && strcmp(m->unit, w->unit) != 0) return 0;
    if (w->overdue >= 0 && m->overdue != w->overdue) return 0;
    if (w->late && !m->late) return 0;
    if (w->stall && !m->stall) return 0;
    if (w->tanzhan && !m->tanzhan) return 0;
    if (w->li_wei && !m->li_wei) return 0;
    if (w->case_no_u2 && !(m->has_case_no && strcmp(m->unit, "U2") == 0)) return 0;
    return 1;
}

TEST(cases_filters_paging_and_scope) {
    srv_t s;
    START(s);
    phone_t adm;
    ASSERT(std_phone(&adm, &s, "admin", "dev-adm") == 0);
    const char *off[3] = {std_user(&s, "off1"), std_user(&s, "off2"), std_user(&s, "off3")};
    ASSERT(off[0] && off[1] && off[2]);
    /* Assignees are officers of the case's own unit (SCHEMA v2 A). */
    const char *offu2[2] = {std_user(&s, "offx"), std_user(&s, "offx2")};
    ASSERT(offu2[0] && offu2[1]);
    ASSERT(std_user(&s, "sup1") != NULL);
    ASSERT(user_add(&s, "supu2", "Secret-supu2-pw1", "supervisor", "U2", NULL) != NULL);
    ASSERT(user_add(&s, "supu3", "Secret-supu3-pw1", "supervisor", "U3", NULL) != NULL);
    const char *sup1 = login(&s, "sup1", std_pass("sup1"), "dev-s1", NULL);
    const char *supu2 = login(&s, "supu2", "Secret-supu2-pw1", "dev-s2", NULL);
    const char *supu3 = login(&s, "supu3", "Secret-supu3-pw1", "dev-s3", NULL);
    phone_t o1;
    ASSERT(phone_login(&o1, &s, "off1", std_pass("off1"), "dev-o1") == 0);
    ASSERT(sup1 && supu2 && supu3);

    static model_t m[NCASES];
    static const char *const digital_steps[] = {"reported", "filed", "dispatched", "processing"};
    batch_t b = {.ph = &adm, .max = 100};
    for (int i = 0; i < NCASES; i++) {
        model_t *x = &m[i];
        snprintf(x->id, sizeof x->id, "filt-%04d", i);
        x->unit = i % 3 == 0 ? "U2" : "U1";
        x->type = types[i % 4];
        x->grid = grids[(i / 2) % 3];
        x->assignee = (i / 3) % 4 < 3 ? (strcmp(x->unit, "U2") == 0 ? offu2[(i / 3) % 2] : off[(i / 3) % 4])
                                       : NULL;
        x->stall = i % 5 == 0;
        x->tanzhan = i % 11 == 0;
        x->li_wei = i % 7 == 0;
        const char *desc = x->stall ? (x->tanzhan ? "占道经营 Fruit STALL 摊点" : "占道经营 Fruit STALL")
                                    : (x->tanzhan ? "摊点 without a permit" : "street vendor");
        const char *party = x->li_wei ? "Li Wei" : "Zhang San";
        int simple = i % 10 == 9;
        int u2 = strcmp(x->unit, "U2") == 0;
        cJSON *extra = jparse(simple ? decision_fields(u2 ? offu2[0] : off[0], u2 ? offu2[1] : off[1], party)
                                     : hfmt("{\"party\":{\"kind\":\"person\",\"name\":\"%s\"}}", party));
        cJSON_AddStringToObject(extra, "description", desc);
        cJSON_AddStringToObject(extra, "address", hfmt("No. %d Xinhua Rd", i));
        if (!simple) {
            cJSON_DeleteItemFromObjectCaseSensitive(extra, "assignee");
            if (x->assignee) cJSON_AddStringToObject(extra, "assignee", x->assignee);
        } else {
            x->assignee = u2 ? offu2[0] : off[0];
        }
        batch_add(&b, create_at(x->id, x->type, simple ? "simple" : "digital", x->unit, x->grid,
                                jprint(extra), -2 * DAY_MS));
        if (simple) {
            /* Decided 10 days ago: service (7 d) and record (3 d) deadlines passed. */
            x->overdue = (i / 10) % 2 == 0;
            x->status = "decided";
            x->has_case_no = 1;
            batch_add(&b, transition_at(x->id, 1, "decided", x->overdue ? -10 * DAY_MS : -HOUR_MS));
            continue;
        }
        int steps = (i * 7) % 4;
        x->status = digital_steps[steps];
        x->has_case_no = steps >= 1;
        /* Dispatched a day ago: past every type's disposal limit (1-2 hours). */
        x->overdue = steps >= 2;
        for (int k = 1; k <= steps; k++)
            batch_add(&b, transition_at(x->id, k, digital_steps[k], -DAY_MS + k));
    }
    ASSERT_MSG(batch_end(&b) == 0, "pushing the cases failed");
    /* A mark between two pushes: updated_after sees only the second. */
    sleep_ms(30);
    const char *mark = iso_now(0);
    sleep_ms(30);
    b = (batch_t){.ph = &adm, .max = 100};
    for (int i = 0; i < NCASES; i += 13) {
        m[i].late = 1;
        batch_add(&b, ch_update(m[i].id, 0, "{\"address\":\"Renamed Rd\"}", NULL));
    }
    ASSERT_MSG(batch_end(&b) == 0, "pushing the updates failed");

    /* Each filter alone, pairs of filters, and paging with small limits. */
    struct {
        const char *query;
        want_t w;
        int limit;
    } cases[] = {
        {"", {.overdue = -1}, 500},
        {"", {.overdue = -1}, 7},
        {"status=filed", {.status = "filed", .overdue = -1}, 9},
        {"status=decided", {.status = "decided", .overdue = -1}, 100},
        {hfmt("type=%s", types[1]), {.type = types[1], .overdue = -1}, 11},
        {hfmt("grid=%s", GRID2), {.grid = GRID2, .overdue = -1}, 13},
        {hfmt("assignee=%s", off[2]), {.assignee = off[2], .overdue = -1}, 5},
        {"unit=U2", {.unit = "U2", .overdue = -1}, 17},
        {"overdue=true", {.overdue = 1}, 4},
        {"overdue=false", {.overdue = 0}, 50},
        {hfmt("updated_after=%s", esc(mark)), {.late = 1, .overdue = -1}, 3},
        {"q=stall", {.stall = 1, .overdue = -1}, 8},
        {hfmt("q=%s", esc("摊点")), {.tanzhan = 1, .overdue = -1}, 8},
        {"q=LI%20wEI", {.li_wei = 1, .overdue = -1}, 100},
        {"q=U2-", {.case_no_u2 = 1, .overdue = -1}, 100},
        {"q=renamed", {.late = 1, .overdue = -1}, 100},
        {"status=filed&unit=U2", {.status = "filed", .unit = "U2", .overdue = -1}, 6},
        {hfmt("type=%s&grid=%s", types[0], GRID1), {.type = types[0], .grid = GRID1, .overdue = -1}, 4},
        {hfmt("overdue=true&type=%s", types[1]), {.overdue = 1, .type = types[1]}, 2},
        {"q=stall&status=processing", {.stall = 1, .status = "processing", .overdue = -1}, 3},
        {hfmt("assignee=%s&updated_after=%s", off[0], esc(mark)),
         {.assignee = off[0], .late = 1, .overdue = -1},
         2},
        {hfmt("grid=%s&q=%s", GRID3, esc("摊点")), {.grid = GRID3, .tanzhan = 1, .overdue = -1}, 2},
        {"unit=U1&overdue=true", {.unit = "U1", .overdue = 1}, 3},
    };
    static const char *want_ids[NCASES];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* The admin sees every unit; each supervisor sees his unit's share. */
        const struct {
            const char *tok, *unit, *who;
        } as[] = {{adm.token, NULL, "admin"}, {sup1, "U1", "sup1"}, {supu2, "U2", "supu2"}};
        for (size_t a = 0; a < 3; a++) {
            if (a > 0 && cases[c].w.unit && strcmp(cases[c].w.unit, as[a].unit) != 0) continue;
            int n = 0;
            for (int i = 0; i < NCASES; i++) {
                if (!model_match(&m[i], &cases[c].w)) continue;
                if (as[a].unit && strcmp(m[i].unit, as[a].unit) != 0) continue;
                want_ids[n++] = m[i].id;
            }
            cJSON *got = cases_all(&s, as[a].tok, cases[c].query, cases[c].limit);
            ASSERT_MSG(got != NULL, "GET /v1/cases?%s as %s failed", cases[c].query, as[a].who);
            ASSERT_MSG(same_ids(got, want_ids, n, hfmt("%s as %s", cases[c].query, as[a].who)),
                       "GET /v1/cases?%s as %s: wrong set", cases[c].query, as[a].who);
            ASSERT_MSG(n > 0 || a > 0, "query %s matches nothing: a weak check", cases[c].query);
        }
    }

    /* Items are public records in their latest state. */
    resp_t r = http(&s, "GET", hfmt("/v1/cases?status=filed&grid=%s&limit=500", GRID1), sup1, NULL, NULL);
    ASSERT_STATUS(r, 200);
    cJSON *first = jget(resp_json(&r), "items[0]");
    ASSERT_MSG(first != NULL, "no filed case in GRID1 of U1: %s", r.body);
    ASSERT_JSTR(first, "status", "filed");
    ASSERT_JSTR(first, "fields.unit", "U1");
    ASSERT_JSTR(first, "fields.grid", GRID1);
    ASSERT_MSG(jstr(first, "fields.case_no") && strncmp(jstr(first, "fields.case_no"), "U1-", 3) == 0,
               "a filed case without its case_no: %s", jprint(first));
    ASSERT_MSG(jint(first, "version") >= 2, "version of a filed case: %s", jprint(first));
    ASSERT_MSG(!jget(first, "life") && !jget(first, "ix") && !jget(first, "fm"), "internal members leak: %s",
               jprint(first));

    /* Another unit's supervisor sees none of them, whatever he asks. */
    cJSON *none = cases_all(&s, supu3, "", 50);
    ASSERT(none != NULL);
    ASSERT_INT(cJSON_GetArraySize(none), 0);
    none = cases_all(&s, supu3, "status=filed", 50);
    ASSERT(none && cJSON_GetArraySize(none) == 0);
    r = http(&s, "GET", "/v1/cases?unit=U1", supu3, NULL, NULL);
    ASSERT_ERROR(r, 403, "forbidden");
    r = http(&s, "GET", "/v1/cases?unit=U2", sup1, NULL, NULL);
    ASSERT_ERROR(r, 403, "forbidden");
    /* Officers pull; they do not query the unit. */
    r = phone_get(&o1, "/v1/cases");
    ASSERT_ERROR(r, 403, "forbidden");
    r = phone_get(&o1, "/v1/stats");
    ASSERT_ERROR(r, 403, "forbidden");
    r = phone_get(&o1, "/v1/export");
    ASSERT_ERROR(r, 403, "forbidden");

    /* Bad queries and cursors are 400, never 500. */
    r = http(&s, "GET", "/v1/cases?limit=0", sup1, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    r = http(&s, "GET", "/v1/cases?limit=501", sup1, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    r = http(&s, "GET", "/v1/cases?overdue=maybe", sup1, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    r = http(&s, "GET", "/v1/cases?updated_after=yesterday", sup1, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    r = http(&s, "GET", "/v1/cases?q=%FF%FE", sup1, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    r = http(&s, "GET", "/v1/cases?cursor=garbage", sup1, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_cursor");
    r = http(&s, "GET", "/v1/cases?status=filed&limit=2", sup1, NULL, NULL);
    ASSERT_STATUS(r, 200);
    const char *next = jstr(resp_json(&r), "next");
    ASSERT_MSG(next != NULL, "no next cursor after a full page: %s", r.body);
    char *tampered = (char *)hfmt("%s", next);
    tampered[2] = tampered[2] == 'A' ? 'B' : 'A';
    r = http(&s, "GET", hfmt("/v1/cases?status=filed&limit=2&cursor=%s", esc(tampered)), sup1, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_cursor");
    /* A cursor of one query does not continue another. */
    r = http(&s, "GET", hfmt("/v1/cases?status=reported&limit=2&cursor=%s", esc(next)), sup1, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_cursor");
    r = http(&s, "GET", hfmt("/v1/cases?status=filed&limit=2&cursor=%s", esc(next)), supu2, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_cursor");
    r = http(&s, "GET", hfmt("/v1/cases?status=filed&limit=2&cursor=%s", esc(next)), sup1, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 2. stats ---------------------------------------------------------------------------- */

static const cJSON *group(const cJSON *stats, const char *key) {
    const cJSON *g;
    cJSON_ArrayForEach(g, jget(stats, "groups")) {
        const char *k = jstr(g, "key");
        if (k && strcmp(k, key) == 0) return g;
    }
    return NULL;
}

/* Figures of one group: opened, closed, closure rate x 10000, overdue, median
 * hours x 100 (-1 for null), voided. */
#define ASSERT_FIGURES(g, o, c, rate, od, med, v)                                                            \
    do {                                                                                                     \
        const cJSON *g_ = (g);                                                                               \
        ASSERT_MSG(g_ != NULL, "group missing");                                                             \
        ASSERT_JINT(g_, "opened", o);                                                                        \
        ASSERT_JINT(g_, "closed", c);                                                                        \
        ASSERT_JINT(g_, "overdue", od);                                                                      \
        ASSERT_JINT(g_, "voided", v);                                                                        \
        if ((rate) < 0)                                                                                      \
            ASSERT_MSG(cJSON_IsNull(jget(g_, "closure_rate")), "closure_rate not null: %s", jprint(g_));     \
        else                                                                                                 \
            ASSERT_MSG((long long)(jnum(g_, "closure_rate", -1) * 10000 + 0.5) == (rate),                    \
                       "closure_rate %s, expected %.4f", jprint(jget(g_, "closure_rate")),                   \
                       (rate) / 10000.0);                                                                    \
        if ((med) < 0)                                                                                       \
            ASSERT_MSG(cJSON_IsNull(jget(g_, "median_hours_to_close")), "median not null: %s", jprint(g_));  \
        else                                                                                                 \
            ASSERT_MSG((long long)(jnum(g_, "median_hours_to_close", -1) * 100 + 0.5) == (med),              \
                       "median %s, expected %.2f", jprint(jget(g_, "median_hours_to_close")),                \
                       (med) / 100.0);                                                                       \
    } while (0)

TEST(cases_stats_known_dataset) {
    srv_t s;
    START(s);
    phone_t adm;
    ASSERT(std_phone(&adm, &s, "admin", "dev-adm") == 0);
    const char *o1 = std_user(&s, "off1"), *o2 = std_user(&s, "off2");
    ASSERT(o1 && o2 && std_user(&s, "sup1"));
    ASSERT(user_add(&s, "supu2", "Secret-supu2-pw1", "supervisor", "U2", NULL) != NULL);
    const char *sup1 = login(&s, "sup1", std_pass("sup1"), "dev-s1", NULL);
    const char *supu2 = login(&s, "supu2", "Secret-supu2-pw1", "dev-s2", NULL);
    ASSERT(sup1 && supu2);
    const char *V = "unlicensed_vending", *P = "illegal_parking", *B = "open_air_bbq";
    static const char *const digital[] = {"reported", "filed",    "dispatched", "processing",
                                          "feedback", "checking", "closed"};
    const char *dec = decision_fields(o1, o2, "Wang Wu");
    batch_t b = {.ph = &adm, .max = 100};
    /* Digital cases closed after `days` days: created at c, closed at c + days. */
    struct {
        const char *id, *type;
        long long created_d, closed_d;
    } closed[] = {{"stat-A0001", V, -20, -10}, {"stat-B0001", V, -12, -11}, {"stat-E0001", V, -40, -2}};
    for (size_t i = 0; i < 3; i++) {
        batch_add(&b, create_at(closed[i].id, closed[i].type, "digital", "U1", GRID1, NULL,
                                closed[i].created_d * DAY_MS));
        for (int k = 1; k <= 6; k++)
            batch_add(&b, transition_at(closed[i].id, k, digital[k],
                                        k == 6 ? closed[i].closed_d * DAY_MS
                                               : closed[i].created_d * DAY_MS + k * 1000));
    }
    /* C: not filed (不予立案) a day after it came in: a closed case. D: open. */
    batch_add(&b, create_at("stat-C0001", P, "digital", "U1", GRID2, NULL, -5 * DAY_MS));
    batch_add(&b, transition_at("stat-C0001", 1, "rejected", -4 * DAY_MS));
    batch_add(&b, create_at("stat-D0001", P, "digital", "U1", GRID2, NULL, -3 * DAY_MS));
    /* F, I: simple cases decided 9 and 50 days ago, never served: overdue.
     * G: decided yesterday: within its deadlines. */
    batch_add(&b, create_at("stat-F0001", B, "simple", "U1", GRID1, dec, -9 * DAY_MS));
    batch_add(&b, transition_at("stat-F0001", 1, "decided", -9 * DAY_MS + 1000));
    batch_add(&b, create_at("stat-G0001", B, "simple", "U1", GRID1, dec, -DAY_MS));
    batch_add(&b, transition_at("stat-G0001", 1, "decided", -DAY_MS + 1000));
    batch_add(&b, create_at("stat-I0001", B, "simple", "U1", GRID3, dec, -50 * DAY_MS));
    batch_add(&b, transition_at("stat-I0001", 1, "decided", -50 * DAY_MS + 1000));
    /* H: voided two days after... it was opened two days ago. */
    batch_add(&b, create_at("stat-H0001", V, "general", "U1", GRID1, NULL, -2 * DAY_MS));
    batch_add(&b, hfmt("{\"op\":\"void\",\"record_id\":\"stat-H0001\",\"base_version\":1,\"at\":\"%s\","
                       "\"reason\":\"entered twice\"}",
                       iso_now(-DAY_MS)));
    /* Another unit: in the admin's totals, never in U1's (its officers are U2's). */
    const char *x1 = std_user(&s, "offx"), *x2 = std_user(&s, "offx2");
    ASSERT(x1 && x2);
    batch_add(&b, create_at("stat-X0001", V, "simple", "U2", GRID1, decision_fields(x1, x2, "Wang Wu"), -9 * DAY_MS));
    batch_add(&b, transition_at("stat-X0001", 1, "decided", -9 * DAY_MS + 1000));
    ASSERT_MSG(batch_end(&b) == 0, "pushing the dataset failed");

    const char *range = hfmt("from=%s&to=%s", esc(iso_now(-30 * DAY_MS)), esc(iso_now(60000)));
    resp_t r = http(&s, "GET", hfmt("/v1/stats?%s&group_by=type", range), sup1, NULL, NULL);
    ASSERT_STATUS(r, 200);
    cJSON *st = resp_json(&r);
    ASSERT_JSTR(st, "group_by", "type");
    ASSERT_JSTR(st, "unit", "U1");
    ASSERT_INT(jlen(st, "groups"), 3);
    /* Vending: A and B opened in range (H voided; E opened 40 days ago); A, B
     * and E closed (结案) in range after 240, 24 and 912 hours; A and B were
     * accepted (dispatched) in range and both closed. Parking: C and D opened,
     * C not filed (不予立案) -- never 办结 -- and nothing accepted. BBQ
     * (simple cases, never "accepted"): F and G opened (I 50 days ago), none
     * closed; F and I overdue. */
    ASSERT_FIGURES(group(st, V), 2, 3, 10000, 0, 24000, 1);
    ASSERT_FIGURES(group(st, P), 2, 0, -1, 0, -1, 0);
    ASSERT_JINT(group(st, P), "not_filed", 1);
    ASSERT_FIGURES(group(st, B), 2, 0, -1, 2, -1, 0);
    /* Total: 6 opened, 3 closed, 2 accepted and both closed; median of 24, 240, 912. */
    ASSERT_FIGURES(jget(st, "total"), 6, 3, 10000, 2, 24000, 1);
    ASSERT_JINT(st, "total.accepted", 2);
    ASSERT_JINT(st, "total.closed_of_accepted", 2);
    ASSERT_JINT(st, "total.not_filed", 1);

    /* By status, over the last 15 days: B (closed), C (rejected), D, F, G and H. */
    r = http(&s, "GET",
             hfmt("/v1/stats?from=%s&to=%s&group_by=status", esc(iso_now(-15 * DAY_MS)), esc(iso_now(60000))),
             sup1, NULL, NULL);
    ASSERT_STATUS(r, 200);
    st = resp_json(&r);
    ASSERT_FIGURES(group(st, "closed"), 1, 3, 10000, 0, 24000, 0); /* B opened; A, B, E closed in range */
    ASSERT_FIGURES(group(st, "rejected"), 1, 0, -1, 0, -1, 0);
    ASSERT_JINT(group(st, "rejected"), "not_filed", 1);
    ASSERT_FIGURES(group(st, "reported"), 1, 0, -1, 0, -1, 0);
    ASSERT_FIGURES(group(st, "decided"), 2, 0, -1, 2, -1, 0); /* F, G opened; F and I overdue */
    ASSERT_FIGURES(group(st, "clue"), 0, 0, -1, 0, -1, 1);    /* H, voided */
    ASSERT_FIGURES(jget(st, "total"), 5, 3, 10000, 2, 24000, 1);

    /* By assignee: the simple cases carry off1; digital ones none (key null). */
    r = http(&s, "GET", hfmt("/v1/stats?%s&group_by=assignee", range), sup1, NULL, NULL);
    ASSERT_STATUS(r, 200);
    st = resp_json(&r);
    ASSERT_FIGURES(group(st, o1), 2, 0, -1, 2, -1, 0);
    ASSERT_MSG(cJSON_IsNull(jget(st, "groups[0].key")),
               "the no-assignee group is not first with a null key: %s", jprint(st));
    ASSERT_JINT(st, "groups[0].opened", 4);

    /* The admin: every unit, or one. U2's supervisor: only X. */
    r = http(&s, "GET", hfmt("/v1/stats?%s", range), adm.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_FIGURES(jget(resp_json(&r), "total"), 7, 3, 10000, 3, 24000, 1);
    r = http(&s, "GET", hfmt("/v1/stats?%s&unit=U2", range), adm.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_FIGURES(jget(resp_json(&r), "total"), 1, 0, -1, 1, -1, 0);
    r = http(&s, "GET", hfmt("/v1/stats?%s", range), supu2, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_FIGURES(jget(resp_json(&r), "total"), 1, 0, -1, 1, -1, 0);
    r = http(&s, "GET", "/v1/stats?unit=U1", supu2, NULL, NULL);
    ASSERT_ERROR(r, 403, "forbidden");

    /* Dates: the range of days in China time. */
    r = http(&s, "GET", "/v1/stats?from=2026-11-01&to=2026-12-01", sup1, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "from", "2026-10-31T16:00:00.000Z");
    ASSERT_JSTR(resp_json(&r), "to", "2026-11-30T16:00:00.000Z");
    r = http(&s, "GET", "/v1/stats?from=2026-12-01&to=2026-11-01", sup1, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    r = http(&s, "GET", "/v1/stats?group_by=weather", sup1, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");
    r = http(&s, "GET", "/v1/stats?from=last-week", sup1, NULL, NULL);
    ASSERT_ERROR(r, 400, "bad_request");

    /* The overdue cases as a list: F and I (not X: another unit). */
    cJSON *ids = cases_all(&s, sup1, "overdue=true", 10);
    ASSERT(ids != NULL);
    const char *want[] = {"stat-F0001", "stat-I0001"};
    ASSERT(same_ids(ids, want, 2, "overdue=true"));

    /* The command line prints the same figures (the server may keep running). */
    cli_res_t c =
        cli(s.dir, NULL, "stats", "--from", iso_now(-30 * DAY_MS), "--to", iso_now(60000), "--unit", "U1");
    ASSERT_MSG(c.rc == 0, "casesync stats -> %d: %s", c.rc, c.err);
    cJSON *cs = jparse(c.out);
    ASSERT_MSG(cs != NULL, "casesync stats printed no JSON: %s", c.out);
    ASSERT_FIGURES(jget(cs, "total"), 6, 3, 10000, 2, 24000, 1);
    c = cli(s.dir, NULL, "stats", "--group-by", "weather");
    ASSERT_MSG(c.rc == 1, "casesync stats --group-by weather -> %d", c.rc);

    /* Deadline days are data: a city that gives 0 days to serve and to file a
     * simple decision drops its schema into the data folder; after the restart
     * the indexes are rebuilt and G (decided yesterday) is overdue too. */
    ASSERT_INT(srv_stop(&s), 0);
    FILE *f = fopen(CASESYNC_SCHEMA_PATH, "r");
    ASSERT(f != NULL);
    static char text[1 << 17];
    size_t tl = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[tl] = 0;
    cJSON *schema = jparse(text);
    ASSERT(schema != NULL);
    cJSON *d;
    cJSON_ArrayForEach(d, jget(schema, "deadlines")) {
        const char *name = jstr(d, "name");
        if (strcmp(name, "service_due") == 0 || strcmp(name, "record_due") == 0)
            cJSON_ReplaceItemInObjectCaseSensitive(d, "days", cJSON_CreateNumber(0));
    }
    f = fopen(hfmt("%s/schema.json", s.dir), "w");
    ASSERT(f != NULL);
    fputs(jprint(schema), f);
    ASSERT(fclose(f) == 0);
    ASSERT_MSG(srv_restart(&s) == 0, "casesyncd did not restart with the edited schema");
    r = http(&s, "GET", hfmt("/v1/stats?%s&group_by=type", range), sup1, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_FIGURES(group(resp_json(&r), B), 2, 0, -1, 3, -1, 0);
    ASSERT_FIGURES(jget(resp_json(&r), "total"), 6, 3, 10000, 3, 24000, 1);
    ids = cases_all(&s, sup1, "overdue=true", 10);
    ASSERT(ids != NULL);
    const char *want3[] = {"stat-F0001", "stat-G0001", "stat-I0001"};
    ASSERT(same_ids(ids, want3, 3, "overdue=true with 0-day deadlines"));
    ids = cases_all(&s, sup1, "status=decided", 1);
    ASSERT(ids && cJSON_GetArraySize(ids) == 3);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 3. export ------------------------------------------------------------------------------ */

#define NEXPORT 10000
#define FILLER 4096 /* bytes of text in each description */

/* Reads a "Name: N kB" line of /proc/PID/status in bytes; -1 when absent. */
static long long proc_kb(pid_t pid, const char *name) {
    char path[64], line[256];
    long long v = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t nl = strlen(name);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, name, nl) == 0 && line[nl] == ':') {
            v = atoll(line + nl + 1) * 1024;
            break;
        }
    }
    fclose(f);
    return v;
}

/* Samples the server's anonymous memory while an export runs. */
typedef struct sampler {
    pid_t pid;
    int stop; /* atomic */
    long long peak_anon;
} sampler_t;

static void *sample(void *arg) {
    sampler_t *sm = arg;
    while (!__atomic_load_n(&sm->stop, __ATOMIC_SEQ_CST)) {
        long long a = proc_kb(sm->pid, "RssAnon");
        if (a > sm->peak_anon) sm->peak_anon = a;
        usleep(2000);
    }
    return NULL;
}

/* An RFC 4180 reader over a whole text. */
typedef struct csv {
    const char *p;
    char *cell; /* the cell being read */
    size_t cap;
} csv_t;

/* The next row's cells (pool strings) into cells[], their number in *n; 1 for
 * a row, 0 at the end, -1 on a malformed row. */
static int csv_next(csv_t *r, const char **cells, int max, int *n) {
    const char *p = r->p;
    *n = 0;
    if (!*p) return 0;
    for (;;) {
        size_t k = 0;
        int quoted = *p == '"';
        if (quoted) p++;
        for (;;) {
            if (k + 2 > r->cap) {
                r->cap = r->cap ? r->cap * 2 : 4096;
                r->cell = realloc(r->cell, r->cap);
            }
            if (!*p) {
                if (quoted) return -1;
                break;
            }
            if (quoted && *p == '"') {
                if (p[1] != '"') {
                    p++;
                    break;
                }
                p++;
            } else if (!quoted && (*p == ',' || *p == '\r' || *p == '\n')) {
                break;
            } else if (!quoted && *p == '"') {
                return -1;
            }
            r->cell[k++] = *p++;
        }
        r->cell[k] = 0;
        /* Undo the formula guard: one apostrophe before = + - @ TAB CR. */
        size_t a = strspn(r->cell, "'");
        const char *v = a > 0 && r->cell[a] && strchr("=+-@\t\r", r->cell[a]) ? r->cell + 1 : r->cell;
        if (*n == max) return -1;
        cells[(*n)++] = hfmt("%s", v);
        if (*p == ',') {
            p++;
            continue;
        }
        if (p[0] == '\r' && p[1] == '\n') {
            r->p = p + 2;
            return 1;
        }
        return -1; /* rows end with CRLF */
    }
}

static const char *str_or(const char *v) {
    return v ? v : "";
}

TEST(cases_export_streams_10000) {
    /* A tiny ASan quarantine: the server's memory then shows what it holds,
     * not what it freed lately. */
    const char *ao = getenv("ASAN_OPTIONS");
    setenv("ASAN_OPTIONS", hfmt("%s%squarantine_size_mb=1", ao ? ao : "", ao && *ao ? ":" : ""), 1);
    srv_t s;
    START(s);
    phone_t adm;
    ASSERT(std_phone(&adm, &s, "admin", "dev-adm") == 0);
    const char *o1 = std_user(&s, "off1");
    ASSERT(o1 != NULL);
    /* Descriptions of ~4 KB with what CSV must quote: commas, quotes, line
     * breaks, Chinese, a leading '=' (a formula to a spreadsheet). */
    char filler[FILLER + 1];
    for (int i = 0; i < FILLER; i++)
        filler[i] = "lorem ipsum dolor sit amet, "[i % 28];
    filler[FILLER] = 0;
    double t0 = now_s();
    batch_t b = {.ph = &adm, .max = 1000};
    for (int i = 0; i < NEXPORT; i++) {
        const char *desc = hfmt("%s#%d, \"quoted\",\r\nsecond line 第二行 %s",
                                i % 50 == 0 ? "=SUM(A1)" : "case", i, filler + (i % 97));
        cJSON *extra = cJSON_CreateObject();
        cJSON_AddStringToObject(extra, "description", desc);
        cJSON_AddStringToObject(extra, "address", hfmt("%d Jianguo Rd, 东城区", i));
        if (i % 3 == 0 && i % 5) cJSON_AddStringToObject(extra, "assignee", o1); /* U1's officer, U1 cases */
        if (i % 4 == 0)
            cJSON_AddItemToObject(extra, "party",
                                  cJSON_Parse("{\"kind\":\"org\",\"name\":\"某某餐饮, Ltd.\"}"));
        const char *fields = jprint(extra);
        cJSON_Delete(extra);
        batch_add(&b, ch_create_in(hfmt("exp-%05d", i), types[i % 4], i % 2 ? "digital" : "general",
                                   i % 5 ? "U1" : "U2", grids[i % 3], fields));
    }
    ASSERT_MSG(batch_end(&b) == 0, "pushing 10000 cases failed");
    double push_s = now_s() - t0;

    long long anon0 = proc_kb(s.pid, "RssAnon"), hwm0 = proc_kb(s.pid, "VmHWM");
    ASSERT_MSG(anon0 > 0, "cannot read /proc/%d/status", (int)s.pid);
    sampler_t sm = {.pid = s.pid, .peak_anon = anon0};
    pthread_t th;
    ASSERT(pthread_create(&th, NULL, sample, &sm) == 0);
    t0 = now_s();
    resp_t nd = http(&s, "GET", "/v1/export?format=ndjson", adm.token, NULL, NULL);
    double nd_s = now_s() - t0;
    resp_t csv = http(&s, "GET", "/v1/export?format=csv", adm.token, NULL, NULL);
    __atomic_store_n(&sm.stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    long long anon1 = proc_kb(s.pid, "RssAnon"), hwm1 = proc_kb(s.pid, "VmHWM");
    ASSERT_STATUS(nd, 200);
    ASSERT_STATUS(csv, 200);
    long long growth = sm.peak_anon - anon0;
    fprintf(
        stderr,
        "    export: %d cases pushed in %.1f s; ndjson %zu bytes in %.1f s, csv %zu bytes; server RssAnon "
        "%lld KiB before, peak %lld KiB (+%lld KiB), %lld KiB after; VmHWM %lld -> %lld KiB\n",
        NEXPORT, push_s, nd.len, nd_s, csv.len, anon0 / 1024, sm.peak_anon / 1024, growth / 1024,
        anon1 / 1024, hwm0 / 1024, hwm1 / 1024);
    /* Streamed: chunked, and the server's memory grows far less than the export's size. */
    const char *te = resp_header(&nd, "Transfer-Encoding");
    ASSERT_MSG(te && strcmp(te, "chunked") == 0, "the export is not chunked: %s", nd.headers);
    ASSERT_MSG(nd.len > (size_t)(32 << 20), "the export is only %zu bytes: too small to show streaming", nd.len);
    /* Under TSan every page of the LMDB map the export reads gets anonymous
     * shadow memory (~the store's size), so the bound holds only for the
     * ASan and plain builds; TSan runs still check everything else. */
    const char *bin = getenv("CASESYNC_BIN");
    if (!(bin && strstr(bin, "tsan")))
        ASSERT_MSG(growth < (16LL << 20), "server memory grew by %lld KiB during the export (bound 16 MiB)",
                   growth / 1024);

    /* ndjson: one public record per line, every case once, in id order. */
    const char *p = nd.body;
    int n = 0;
    static cJSON *recs[NEXPORT];
    while (*p) {
        const char *e = strchr(p, '\n');
        ASSERT_MSG(e != NULL, "the last ndjson line has no newline");
        cJSON *j = jparse(hfmt("%.*s", (int)(e - p), p));
        ASSERT_MSG(j && n < NEXPORT, "line %d is not a record", n + 1);
        ASSERT_JSTR(j, "id", hfmt("exp-%05d", n));
        recs[n++] = j;
        p = e + 1;
    }
    ASSERT_INT(n, NEXPORT);

    /* csv: BOM, header, one row per case; read back it is the same records. */
    ASSERT_MSG(strncmp(csv.body, "\xEF\xBB\xBF", 3) == 0, "no UTF-8 BOM");
    const char *ct = resp_header(&csv, "Content-Type");
    ASSERT_MSG(ct && strncmp(ct, "text/csv", 8) == 0, "Content-Type %s", ct ? ct : "(none)");
    csv_t rd = {.p = csv.body + 3};
    const char *cells[32];
    int nc;
    ASSERT_INT(csv_next(&rd, cells, 32, &nc), 1);
    static const char *const cols[] = {"id",         "case_no",     "type",       "category",    "procedure",
                                       "status",     "voided",      "unit",       "grid",        "assignee",
                                       "address",    "description", "party_name", "fine_amount", "created_at",
                                       "updated_at", "closed_at",   "version",    "opened_at",   "due_at",
                                       "source",     "ticket_no",   "party_id"};
    ASSERT_INT(nc, 23);
    for (int i = 0; i < nc; i++)
        ASSERT_STR(cells[i], cols[i]);
    for (int row = 0; row < NEXPORT; row++) {
        int rc = csv_next(&rd, cells, 32, &nc);
        ASSERT_MSG(rc == 1 && nc == 23, "csv row %d: rc %d, %d cells", row + 1, rc, nc);
        const cJSON *j = recs[row];
        const char *want[] = {jstr(j, "id"),
                              str_or(jstr(j, "fields.case_no")),
                              jstr(j, "type"),
                              jstr(j, "fields.category"),
                              jstr(j, "fields.procedure"),
                              jstr(j, "status"),
                              jbool(j, "voided") ? "true" : "false",
                              jstr(j, "fields.unit"),
                              jstr(j, "fields.grid"),
                              str_or(jstr(j, "fields.assignee")),
                              jstr(j, "fields.address"),
                              jstr(j, "fields.description"),
                              str_or(jstr(j, "fields.party.name")),
                              "",
                              jstr(j, "created_at"),
                              jstr(j, "updated_at"),
                              "",
                              hfmt("%lld", jint(j, "version"))};
        for (int i = 0; i < 18; i++)
            ASSERT_MSG(want[i] && strcmp(cells[i], want[i]) == 0,
                       "row %d column %s: \"%.80s\", expected \"%.80s\"", row + 1, cols[i], cells[i],
                       want[i] ? want[i] : "(null)");
        ASSERT_MSG(strlen(cells[18]) == 24 && !*cells[19], "row %d: opened_at %s due_at %s", row + 1,
                   cells[18], cells[19]);
    }
    ASSERT_MSG(csv_next(&rd, cells, 32, &nc) == 0, "rows after the last case");
    free(rd.cell);
    ASSERT_STR(jstr(recs[50], "fields.description"),
               hfmt("=SUM(A1)#50, \"quoted\",\r\nsecond line 第二行 %s", filler + 50 % 97));

    /* gzip when asked; a unit's supervisor exports only his unit; bad format. */
    const char *const gz[] = {"Accept-Encoding: gzip", NULL};
    ASSERT(std_user(&s, "sup1") != NULL);
    const char *sup1 = login(&s, "sup1", std_pass("sup1"), "dev-s1", NULL);
    resp_t z = http(&s, "GET", "/v1/export?format=ndjson&unit=U1&status=clue", sup1, NULL, gz);
    ASSERT_STATUS(z, 200);
    ASSERT_STR(resp_header(&z, "Content-Encoding"), "gzip");
    size_t zl = 0;
    char *plain = gz_inflate(z.body, z.len, (size_t)64 << 20, &zl);
    ASSERT_MSG(plain != NULL, "the gzip export does not inflate");
    int lines = 0;
    for (const char *q = plain; (q = strchr(q, '\n')) != NULL; q++)
        lines++;
    ASSERT_INT(lines, NEXPORT / 2 * 4 / 5); /* general (clue) cases of U1 */
    resp_t bad = http(&s, "GET", "/v1/export?format=xlsx", sup1, NULL, NULL);
    ASSERT_ERROR(bad, 400, "bad_request");
    bad = http(&s, "GET", "/v1/export?unit=U2", sup1, NULL, NULL);
    ASSERT_ERROR(bad, 403, "forbidden");

    /* The command line streams the same csv. */
    ASSERT_INT(srv_stop(&s), 0);
    cli_res_t c = cli(s.dir, NULL, "export", "--format", "csv");
    ASSERT_MSG(c.rc == 0, "casesync export -> %d: %.300s", c.rc, c.err);
    ASSERT_MSG(strlen(c.out) == csv.len, "casesync export printed %zu bytes, the server sent %zu",
               strlen(c.out), csv.len);
}
