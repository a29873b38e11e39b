/* casesync_sim.c -- a fleet of phones on libcasesync, patrolling in
 * simulated time against a real casesyncd, then a convergence check.
 *
 *   casesync-sim --server URL --admin USER:PASS --phones N --units U --hours H --seed S
 *                [--state DIR] [--step-min M] [--cut-rate P] [--keep] [--verbose] [--trust-deltas]
 *
 * Users are made through the admin API (POST /v1/admin/users). Each phone is
 * one user on one device with its own state directory; all phones run in
 * this one process, interleaved step by step in simulated time (their clocks
 * and `at` stamps), over real HTTP. Phones go offline and online, open cases,
 * edit lww and manual fields, add notes and evidence (small blobs over tus),
 * move cases along their lifecycles, void, reassign grids, resolve conflicts
 * (supervisors), reinstall, and sync at random moments -- some syncs cut off
 * at a random byte of a push body, after a push answer started, in a pull
 * page or in an upload.
 *
 * At the end every phone syncs until a round moves nothing, and the checks:
 *  - every phone's outbox is empty and its uploads are done;
 *  - POST /v1/sync/check finds nothing missing, stale or extra on any phone;
 *  - every record a phone holds equals GET /v1/cases/{id} (version, seq,
 *    status, voided, fields, conflicts);
 *  - every change a phone had acknowledged is accounted for: its set values
 *    are in the record's history or in the conflict log, its notes and
 *    evidence items are on the record, its conflicts exist, its rejections
 *    are in the quarantine (GET /v1/rejections);
 *  - every uploaded blob is on the server (HEAD /v1/blobs/{sha256});
 *  - GET /v1/audit/verify is ok.
 * A summary goes to stdout; the exit status is 0 only with zero divergences.
 * Exit codes: 0 converged, 1 divergences, 2 usage, 3 setup failed (server,
 * admin login, users).
 */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "clients/c/casesync.h"

#define MAX_GRIDS 4
#define MAX_REPORTED 25 /* divergence messages printed in full */

/* ---- rng (xorshift64*) ------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd64(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static int rnd(int n) {
    return n > 0 ? (int)(rnd64() % (uint64_t)n) : 0;
}
static int chance(double p) {
    return (double)(rnd64() >> 11) / 9007199254740992.0 < p;
}

/* ---- the fleet ---------------------------------------------------------------------------- */

typedef struct phone {
    int idx;
    casesync_t *h;
    char dir[600], device[64], username[64], password[64], user_id[64], role[24], unit[32];
    char grids[MAX_GRIDS][24];
    int ngrids;
    int online;
    int64_t offline_until;
    cJSON *ledger;  /* RESULT events: acknowledged changes */
    cJSON *blobs;   /* sha256 of uploads reported done */
    int unexpected; /* sync errors that are not cuts, busy or network */
} phone_t;

typedef struct sim {
    const char *server, *admin_user, *admin_pass;
    int nphones, nunits, hours, step_min;
    uint64_t seed;
    double cut_rate;
    int verbose, keep, trust_deltas;
    char base[512];
    int64_t now; /* simulated ms since the epoch */
    casesync_t *admin;
    phone_t *ph;
    char units[16][32];
    char unit_grids[16][MAX_GRIDS][24];
    /* counters */
    int creates, edits, manual_edits, notes, evidence, transitions, voids, reassigns, resolutions, reinstalls;
    int refused_locally;
    int syncs, cut_push_body, cut_push_answer, cut_pull, cut_upload, busy, net_errors, unexpected;
    int divergences, end_rounds;
    long compared, accounted, blobs_checked;
    int blob_count;
} sim_t;

static sim_t S;

static void diverge(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diverge(const char *fmt, ...) {
    S.divergences++;
    if (S.divergences > MAX_REPORTED) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("DIVERGENCE: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...) {
    if (!S.verbose) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int64_t sim_clock(void *ud) {
    (void)ud;
    return S.now;
}

static void iso(int64_t ms, char out[32]) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100,
             (int)(ms % 1000));
}

static void on_event(void *ud, const casesync_event_t *ev) {
    phone_t *p = ud;
    if (ev->kind == CASESYNC_EVENT_RESULT) {
        cJSON *j = cJSON_Parse(ev->json);
        if (j) cJSON_AddItemToArray(p->ledger, j);
    } else if (ev->kind == CASESYNC_EVENT_UPLOAD && ev->status && strcmp(ev->status, "done") == 0) {
        cJSON *j = cJSON_Parse(ev->json);
        const cJSON *sha = cJSON_GetObjectItemCaseSensitive(j, "sha256");
        if (cJSON_IsString(sha)) cJSON_AddItemToArray(p->blobs, cJSON_CreateString(sha->valuestring));
        cJSON_Delete(j);
    }
}

/* ---- HTTP through a handle ----------------------------------------------------------------- */

static cJSON *call(casesync_t *h, const char *method, const char *path, const char *body, long *status) {
    char *out = NULL;
    long st = 0;
    casesync_error_t err;
    int rc = 0;
    for (int attempt = 0; attempt < 5; attempt++) {
        rc = casesync_request(h, method, path, body, &st, &out, &err);
        if (rc == 0 && (st == 429 || st == 503)) {
            casesync_free(out);
            out = NULL;
            sleep(1);
            continue;
        }
        break;
    }
    if (status) *status = rc ? -1 : st;
    if (rc) {
        fprintf(stderr, "casesync-sim: %s %s: %s\n", method, path, err.message);
        return NULL;
    }
    cJSON *j = out && *out ? cJSON_Parse(out) : NULL;
    casesync_free(out);
    return j;
}

static cJSON *lib_json(int rc, char *text) {
    if (rc || !text) return NULL;
    cJSON *j = cJSON_Parse(text);
    casesync_free(text);
    return j;
}

/* Library JSON text as a tree; the comma sequences the call before `t` is read. */
static int jcall_rc;
#define JCALL(expr, t) (jcall_rc = (expr), lib_json(jcall_rc, (t)))

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *k, double d) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : d;
}

/* ---- setup ------------------------------------------------------------------------------------- */

static int open_phone(phone_t *p) {
    casesync_options_t o = {0};
    o.state_dir = p->dir;
    o.no_sync = 1; /* the sim tests sync, not the phone's disk */
    o.no_delta_check = S.trust_deltas;
    o.pull_limit = 20 + rnd(180);
    o.upload_chunk = 512 + (size_t)rnd(2048);
    o.app_version = "casesync-sim/1";
    o.on_event = on_event;
    o.clock = sim_clock;
    o.userdata = p;
    o.request_timeout_ms = 30000;
    casesync_error_t err;
    if (casesync_open(&o, &p->h, &err) != 0) {
        fprintf(stderr, "casesync-sim: open %s: %s\n", p->dir, err.message);
        return -1;
    }
    if (casesync_login(p->h, S.server, p->username, p->password, p->device, &err) != 0) {
        fprintf(stderr, "casesync-sim: login %s: %s\n", p->username, err.message);
        return -1;
    }
    char *sess = NULL;
    cJSON *j = JCALL(casesync_session(p->h, &sess), sess);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "user");
    snprintf(p->user_id, sizeof p->user_id, "%s", jstr(u, "id") ? jstr(u, "id") : "");
    cJSON_Delete(j);
    return 0;
}

static int setup(void) {
    casesync_options_t o = {0};
    char dir[600];
    snprintf(dir, sizeof dir, "%s/admin", S.base);
    o.state_dir = dir;
    o.no_sync = 1;
    casesync_error_t err;
    if (casesync_open(&o, &S.admin, &err) != 0 ||
        casesync_login(S.admin, S.server, S.admin_user, S.admin_pass, "sim-admin", &err) != 0) {
        fprintf(stderr, "casesync-sim: admin login: %s\n", err.message);
        return -1;
    }
    for (int u = 0; u < S.nunits; u++) {
        snprintf(S.units[u], sizeof S.units[u], "S%lluU%d", (unsigned long long)(S.seed % 100000), u + 1);
        for (int g = 0; g < MAX_GRIDS; g++)
            snprintf(S.unit_grids[u][g], sizeof S.unit_grids[u][g], "110%03d%03d%06d", (int)(S.seed % 1000),
                     (u + 1) % 1000, (g + 1) % 1000000);
    }
    S.ph = calloc((size_t)S.nphones, sizeof *S.ph);
    int per_unit[16] = {0};
    for (int i = 0; i < S.nphones; i++) {
        phone_t *p = &S.ph[i];
        int u = i % S.nunits, k = per_unit[u]++;
        p->idx = i;
        snprintf(p->unit, sizeof p->unit, "%s", S.units[u]);
        /* One supervisor per unit; then officers and auxiliaries, 3 to 2. */
        const char *role = k == 0 ? "supervisor" : (k % 5 == 2 || k % 5 == 4) ? "auxiliary" : "officer";
        snprintf(p->role, sizeof p->role, "%s", role);
        snprintf(p->username, sizeof p->username, "sim%llu-%s-%s%d", (unsigned long long)S.seed, p->unit,
                 role[0] == 's'   ? "sup"
                 : role[0] == 'a' ? "aux"
                                  : "off",
                 k);
        snprintf(p->password, sizeof p->password, "sim-pass-%llu-%d", (unsigned long long)S.seed, i);
        snprintf(p->device, sizeof p->device, "sim%llu-dev-%03d", (unsigned long long)S.seed, i);
        snprintf(p->dir, sizeof p->dir, "%s/phone-%03d", S.base, i);
        if (role[0] != 's') {
            p->ngrids = 1 + rnd(2);
            int first = rnd(MAX_GRIDS - 1);
            for (int g = 0; g < p->ngrids; g++)
                snprintf(p->grids[g], sizeof p->grids[g], "%s", S.unit_grids[u][first + g]);
        }
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "username", p->username);
        cJSON_AddStringToObject(body, "password", p->password);
        cJSON_AddStringToObject(body, "name", p->username);
        cJSON_AddStringToObject(body, "role", role);
        cJSON_AddStringToObject(body, "unit", p->unit);
        cJSON *grids = cJSON_AddArrayToObject(body, "grids");
        for (int g = 0; g < p->ngrids; g++)
            cJSON_AddItemToArray(grids, cJSON_CreateString(p->grids[g]));
        char *text = cJSON_PrintUnformatted(body);
        cJSON_Delete(body);
        long st = 0;
        cJSON *ans = call(S.admin, "POST", "/v1/admin/users", text, &st);
        free(text);
        cJSON_Delete(ans);
        if (st != 200 && st != 201 && st != 409) {
            fprintf(stderr, "casesync-sim: creating user %s: HTTP %ld\n", p->username, st);
            return -1;
        }
        p->ledger = cJSON_CreateArray();
        p->blobs = cJSON_CreateArray();
        p->online = 1;
        if (open_phone(p) != 0) return -1;
    }
    return 0;
}

/* ---- what a phone does ------------------------------------------------------------------------------ */

static cJSON *phone_records(phone_t *p) {
    char *t = NULL;
    return JCALL(casesync_list(p->h, &t), t);
}

/* A random record of the phone's view that is not voided, or NULL. */
static cJSON *pick_record(phone_t *p, cJSON **all) {
    *all = phone_records(p);
    int n = cJSON_GetArraySize(*all);
    if (n == 0) return NULL;
    for (int tries = 0; tries < 8; tries++) {
        cJSON *r = cJSON_GetArrayItem(*all, rnd(n));
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "voided"))) return r;
    }
    return NULL;
}

/* Another officer of the unit (for assignee/assist), or NULL. */
static const char *officer_of(const phone_t *p, const char *not_id) {
    for (int tries = 0; tries < 30; tries++) {
        phone_t *q = &S.ph[rnd(S.nphones)];
        if (strcmp(q->unit, p->unit) == 0 && strcmp(q->role, "officer") == 0 &&
            strcmp(q->user_id, not_id) != 0)
            return q->user_id;
    }
    return NULL;
}

static void count_local(int rc, const casesync_error_t *err, const char *what) {
    if (rc == 0) return;
    S.refused_locally++;
    note("  refused locally (%s): %s", what, err->message);
}

static void act_create(phone_t *p) {
    static const char *const types[] = {"unlicensed_vending",    "exposed_garbage", "illegal_parking",
                                        "outside_shop_business", "open_air_bbq",    "muck_truck"};
    static const char *const procs[] = {"digital", "general", "simple"};
    const char *proc = procs[rnd(p->role[0] == 'a' ? 2 : 3)];
    char at[32];
    iso(S.now - rnd(3600) * 1000LL, at);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "procedure", proc);
    cJSON_AddStringToObject(f, "source", chance(0.8) ? "patrol" : "hotline");
    char desc[128];
    snprintf(desc, sizeof desc, "found on patrol by %s at step %lld", p->username,
             (long long)(S.now / 60000));
    cJSON_AddStringToObject(f, "description", desc);
    cJSON_AddStringToObject(f, "occurred_at", at);
    cJSON_AddStringToObject(f, "grid", p->grids[rnd(p->ngrids)]);
    char addr[64];
    snprintf(addr, sizeof addr, "%d Chang'an Ave", 1 + rnd(400));
    cJSON_AddStringToObject(f, "address", addr);
    cJSON *loc = cJSON_AddObjectToObject(f, "location");
    cJSON_AddNumberToObject(loc, "lon", 116.3 + rnd(2000) / 10000.0);
    cJSON_AddNumberToObject(loc, "lat", 39.85 + rnd(1000) / 10000.0);
    cJSON_AddStringToObject(loc, "crs", "wgs84");
    if (chance(0.3)) {
        cJSON *tags = cJSON_AddArrayToObject(f, "tags");
        cJSON_AddItemToArray(tags, cJSON_CreateString(chance(0.5) ? "night" : "repeat"));
    }
    char *text = cJSON_PrintUnformatted(f);
    cJSON_Delete(f);
    char id[CASESYNC_ID_MAX];
    casesync_error_t err;
    int rc = casesync_create(p->h, types[rnd(6)], text, NULL, id, &err);
    free(text);
    count_local(rc, &err, "create");
    if (!rc) S.creates++;
}

static void act_note(phone_t *p) {
    cJSON *all;
    cJSON *r = pick_record(p, &all);
    if (r) {
        char text[128];
        snprintf(text, sizeof text, "note by %s at minute %lld", p->username,
                 (long long)(S.now / 60000 % 100000));
        casesync_error_t err;
        int rc = casesync_note(p->h, jstr(r, "id"), text, NULL, &err);
        count_local(rc, &err, "note");
        if (!rc) S.notes++;
    }
    cJSON_Delete(all);
}

static void act_edit(phone_t *p) {
    cJSON *all;
    cJSON *r = pick_record(p, &all);
    if (r) {
        char set[256];
        switch (rnd(3)) {
        case 0:
            snprintf(set, sizeof set, "{\"description\":\"%s saw it again at %lld\"}", p->username,
                     (long long)(S.now / 1000));
            break;
        case 1: snprintf(set, sizeof set, "{\"address\":\"%d Jianguo Rd\"}", 1 + rnd(300)); break;
        default: snprintf(set, sizeof set, "{\"tags\":[\"%s\"]}", chance(0.5) ? "noisy" : "blocked"); break;
        }
        casesync_error_t err;
        int rc = casesync_update(p->h, jstr(r, "id"), set, NULL, &err);
        count_local(rc, &err, "edit");
        if (!rc) S.edits++;
    }
    cJSON_Delete(all);
}

/* Manual fields, including what lifecycle guards need. Officers and up. */
static void act_manual(phone_t *p) {
    cJSON *all;
    cJSON *r = pick_record(p, &all);
    if (r) {
        const char *other = officer_of(p, p->role[0] == 'o' ? p->user_id : "");
        const char *assignee = p->role[0] == 'o' ? p->user_id : officer_of(p, "");
        cJSON *set = cJSON_CreateObject();
        switch (rnd(3)) {
        case 0: /* what `filed` and `decided` need */
            if (!assignee || !other || strcmp(assignee, other) == 0) break;
            cJSON *party = cJSON_AddObjectToObject(set, "party");
            cJSON_AddStringToObject(party, "kind", chance(0.8) ? "person" : "org");
            cJSON_AddStringToObject(party, "name", chance(0.5) ? "Wang Wu" : "Zhao Liu");
            cJSON_AddStringToObject(set, "illegal_item_code", chance(0.5) ? "C0501-003" : "C0505-001");
            cJSON_AddStringToObject(set, "assignee", assignee);
            cJSON_AddStringToObject(set, "assist_officer", other);
            cJSON_AddStringToObject(set, "decision_doc_no", "JY-2026-01");
            cJSON_AddNumberToObject(set, "fine_amount", 50 * (1 + rnd(4)));
            break;
        case 1: cJSON_AddNumberToObject(set, "fine_amount", 50 * (1 + rnd(4))); break;
        default: cJSON_AddStringToObject(set, "legal_basis", chance(0.5) ? "Art. 10" : "Art. 12"); break;
        }
        if (cJSON_GetArraySize(set) > 0) {
            char *text = cJSON_PrintUnformatted(set);
            casesync_error_t err;
            int rc = casesync_update(p->h, jstr(r, "id"), text, NULL, &err);
            free(text);
            count_local(rc, &err, "manual");
            if (!rc) S.manual_edits++;
        }
        cJSON_Delete(set);
    }
    cJSON_Delete(all);
}

static void act_evidence(phone_t *p) {
    cJSON *all;
    cJSON *r = pick_record(p, &all);
    if (r) {
        char path[700];
        snprintf(path, sizeof path, "%s/blobs", S.base);
        mkdir(path, 0700);
        snprintf(path, sizeof path, "%s/blobs/e%05d.jpg", S.base, S.blob_count++);
        FILE *f = fopen(path, "wb");
        if (f) {
            int n = 100 + rnd(3900);
            for (int i = 0; i < n; i++)
                fputc((int)(rnd64() & 0xff), f);
            fclose(f);
            casesync_error_t err;
            int rc =
                casesync_attach(p->h, jstr(r, "id"), path, chance(0.8) ? "photo" : "scan", NULL, NULL, &err);
            count_local(rc, &err, "attach");
            if (!rc) S.evidence++;
        }
    }
    cJSON_Delete(all);
}

static void act_transition(phone_t *p) {
    cJSON *all;
    cJSON *r = pick_record(p, &all);
    if (r) {
        char *t = NULL;
        cJSON *next = JCALL(casesync_next_states(p->h, jstr(r, "id"), &t), t);
        int n = cJSON_GetArraySize(next);
        if (n > 0) {
            /* Mostly forward on the main path; branches (rejected, not_filed ...) now and then. */
            const char *to = NULL;
            for (int tries = 0; tries < 4 && !to; tries++) {
                const char *c = jstr(cJSON_GetArrayItem(next, rnd(n)), "to");
                if (c && (strstr(c, "rejected") || strstr(c, "not_filed") || strstr(c, "transferred")) &&
                    !chance(0.15))
                    continue;
                to = c;
            }
            if (to) {
                casesync_error_t err;
                int rc = casesync_transition(p->h, jstr(r, "id"), to, &err);
                count_local(rc, &err, "transition");
                if (!rc) S.transitions++;
            }
        }
        cJSON_Delete(next);
    }
    cJSON_Delete(all);
}

static void act_supervise(phone_t *p) {
    cJSON *all;
    cJSON *r = pick_record(p, &all);
    if (r) {
        casesync_error_t err;
        int rc;
        if (chance(0.15)) {
            rc = casesync_void(p->h, jstr(r, "id"), "duplicate of another report", &err);
            if (!rc) S.voids++;
        } else {
            /* Move the case to another grid of the unit: phones gain and lose it. */
            int u = 0;
            while (u < S.nunits && strcmp(S.units[u], p->unit) != 0)
                u++;
            char set[96];
            snprintf(set, sizeof set, "{\"grid\":\"%s\"}",
                     S.unit_grids[u < S.nunits ? u : 0][rnd(MAX_GRIDS)]);
            rc = casesync_update(p->h, jstr(r, "id"), set, NULL, &err);
            if (!rc) S.reassigns++;
        }
        count_local(rc, &err, "supervise");
    }
    cJSON_Delete(all);
}

/* A supervisor decides an open conflict of the unit (online only). */
static void act_resolve(phone_t *p) {
    long st = 0;
    cJSON *list = call(p->h, "GET", "/v1/conflicts?state=open", NULL, &st);
    cJSON *items = cJSON_GetObjectItemCaseSensitive(list, "items");
    int n = cJSON_GetArraySize(items);
    if (n > 0) {
        cJSON *c = cJSON_GetArrayItem(items, rnd(n));
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, chance(0.5) ? "client_value" : "server_value");
        cJSON *body = cJSON_CreateObject();
        cJSON_AddItemToObject(body, "value", v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
        cJSON_AddStringToObject(body, "note", "decided on review");
        char *text = cJSON_PrintUnformatted(body), path[160];
        cJSON_Delete(body);
        snprintf(path, sizeof path, "/v1/conflicts/%s/resolve", jstr(c, "id") ? jstr(c, "id") : "x");
        cJSON *ans = call(p->h, "POST", path, text, &st);
        free(text);
        cJSON_Delete(ans);
        if (st == 200) S.resolutions++;
    }
    cJSON_Delete(list);
}

/* One sync, perhaps cut off. Returns the library's code. */
static int do_sync(phone_t *p, int allow_cut) {
    int cut = -1;
    if (allow_cut && chance(S.cut_rate)) {
        cut = rnd(4);
        switch (cut) {
        case 0: casesync_fault(p->h, CASESYNC_PHASE_PUSH, rnd(250), -1); break;
        case 1: casesync_fault(p->h, CASESYNC_PHASE_PUSH, -1, 0); break;
        case 2: casesync_fault(p->h, CASESYNC_PHASE_PULL, -1, rnd(4000)); break;
        default: casesync_fault(p->h, CASESYNC_PHASE_UPLOAD, rnd(1500), -1); break;
        }
    }
    casesync_report_t rep;
    casesync_error_t err;
    int rc = casesync_sync(p->h, 0, &rep, &err);
    casesync_fault(p->h, 0, -1, -1); /* a fault that did not fire goes away */
    S.syncs++;
    if (rc == CASESYNC_E_CANCELED) {
        if (cut == 0)
            S.cut_push_body++;
        else if (cut == 1)
            S.cut_push_answer++;
        else if (cut == 2)
            S.cut_pull++;
        else
            S.cut_upload++;
    } else if (rc == CASESYNC_E_BUSY) {
        S.busy++;
    } else if (rc == CASESYNC_E_NETWORK || rc == CASESYNC_E_TIMEOUT) {
        S.net_errors++;
    } else if (rc) {
        S.unexpected++;
        p->unexpected++;
        printf("unexpected sync error on %s: %s (%s)\n", p->username, err.message, casesync_strerror(rc));
    }
    return rc;
}

/* Reinstall: a phone with nothing unsent loses its store and logs in again. */
static void reinstall(phone_t *p) {
    char *t = NULL;
    cJSON *ob = JCALL(casesync_outbox(p->h, &t), t);
    int unsent = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ob, "pending")) +
                 cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ob, "sealed"));
    cJSON_Delete(ob);
    t = NULL;
    cJSON *ups = JCALL(casesync_uploads(p->h, &t), t), *u;
    cJSON_ArrayForEach(u, ups) if (strcmp(jstr(u, "state") ? jstr(u, "state") : "", "done") != 0) unsent++;
    cJSON_Delete(ups);
    if (unsent) return;
    casesync_wipe(p->h);
    casesync_error_t err;
    if (casesync_login(p->h, S.server, p->username, p->password, p->device, &err) != 0) {
        S.unexpected++;
        printf("unexpected: relogin of %s: %s\n", p->username, err.message);
        return;
    }
    S.reinstalls++;
}

static void phone_step(phone_t *p) {
    if (p->online && chance(0.06)) {
        p->online = 0;
        p->offline_until = S.now + (15 + rnd(105)) * 60000LL;
    } else if (!p->online && S.now >= p->offline_until) {
        p->online = 1;
    }
    int sup = p->role[0] == 's', aux = p->role[0] == 'a';
    if (chance(0.45)) {
        int w = rnd(100);
        if (sup) {
            /* A supervisor moves several cases along per step. */
            if (w < 50) {
                for (int k = 0; k < 3; k++)
                    act_transition(p);
            } else if (w < 60) {
                act_supervise(p);
            } else if (w < 72) {
                act_manual(p);
            } else if (w < 87 && p->online) {
                act_resolve(p);
            } else {
                act_note(p);
            }
        } else if (w < 18) {
            act_create(p);
        } else if (w < 33) {
            act_note(p);
        } else if (w < 45) {
            act_edit(p);
        } else if (w < 53) {
            act_evidence(p);
        } else if (w < 70 && !aux) {
            act_manual(p);
        } else {
            act_transition(p);
        }
    }
    if (p->online && chance(0.3)) {
        int rc = do_sync(p, 1);
        if (rc == CASESYNC_E_CANCELED && chance(0.5)) do_sync(p, 0);
    }
    if (p->online && chance(0.002)) reinstall(p);
}

/* ---- the end: quiet, then checks ---------------------------------------------------------------------- */

static int settle(void) {
    for (int round = 1; round <= 12; round++) {
        int moved = 0;
        for (int i = 0; i < S.nphones; i++) {
            phone_t *p = &S.ph[i];
            p->online = 1;
            casesync_report_t rep;
            casesync_error_t err;
            int rc = -1;
            for (int attempt = 0; attempt < 5 && rc; attempt++) {
                rc = casesync_sync(p->h, 0, &rep, &err);
                S.syncs++;
                if (rc == CASESYNC_E_BUSY)
                    sleep(1);
                else if (rc && rc != CASESYNC_E_NETWORK && rc != CASESYNC_E_TIMEOUT)
                    break;
            }
            if (rc) {
                S.unexpected++;
                printf("unexpected: final sync of %s: %s\n", p->username, err.message);
                continue;
            }
            moved += rep.changesets + rep.upserts + rep.removals + rep.uploads_done;
        }
        S.end_rounds = round;
        if (!moved) return 0;
    }
    diverge("the fleet did not go quiet after 12 rounds of syncs");
    return -1;
}

/* Cached server views of records (admin). */
typedef struct cache {
    cJSON *cases, *history;
} cache_t;

static cJSON *cached(cJSON *map, const char *id, const char *fmt) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(map, id);
    if (v) return cJSON_IsNull(v) ? NULL : v;
    char path[160];
    snprintf(path, sizeof path, fmt, id);
    long st = 0;
    cJSON *j = call(S.admin, "GET", path, NULL, &st);
    if (st != 200 || !j) {
        cJSON_Delete(j);
        j = cJSON_CreateNull();
    }
    cJSON_AddItemToObject(map, id, j);
    return cJSON_IsNull(j) ? NULL : j;
}

static int same_member(const cJSON *a, const cJSON *b, const char *k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, k), *y = cJSON_GetObjectItemCaseSensitive(b, k);
    if (!x || !y) return x == y;
    return cJSON_Compare(x, y, 1);
}

static void check_copies(cache_t *c) {
    static const char *const keys[] = {"type", "version", "seq", "status", "voided", "fields", "conflicts"};
    for (int i = 0; i < S.nphones; i++) {
        phone_t *p = &S.ph[i];
        char *t = NULL;
        cJSON *ob = JCALL(casesync_outbox(p->h, &t), t);
        int left = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ob, "pending")) +
                   cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ob, "sealed")) +
                   cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ob, "acked"));
        if (left) diverge("%s: %d changes left in the outbox after settling", p->username, left);
        cJSON_Delete(ob);
        t = NULL;
        cJSON *ups = JCALL(casesync_uploads(p->h, &t), t), *u;
        cJSON_ArrayForEach(u, ups) {
            const char *st = jstr(u, "state");
            if (!st || strcmp(st, "done") != 0)
                diverge("%s: upload %s is %s (%s)", p->username, jstr(u, "sha256"), st ? st : "?",
                        jstr(u, "error") ? jstr(u, "error") : "");
        }
        cJSON_Delete(ups);
        casesync_error_t err;
        t = NULL;
        cJSON *chk = NULL;
        int rc = casesync_check(p->h, &t, &err);
        chk = lib_json(rc, t);
        if (!chk) {
            diverge("%s: sync/check failed: %s", p->username, err.message);
        } else {
            static const char *const lists[] = {"missing", "stale", "extra"};
            for (int l = 0; l < 3; l++) {
                int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(chk, lists[l]));
                if (n) {
                    char *s = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(chk, lists[l]));
                    diverge("%s: sync/check says %d %s: %.300s", p->username, n, lists[l], s ? s : "");
                    free(s);
                }
            }
        }
        cJSON_Delete(chk);
        cJSON *recs = phone_records(p), *r;
        cJSON_ArrayForEach(r, recs) {
            const char *id = jstr(r, "id");
            cJSON *sv = id ? cached(c->cases, id, "/v1/cases/%s") : NULL;
            S.compared++;
            if (!sv) {
                diverge("%s holds %s, which the server does not have", p->username, id ? id : "?");
                continue;
            }
            for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
                if (same_member(r, sv, keys[k])) continue;
                char *a = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(r, keys[k]));
                char *b = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(sv, keys[k]));
                diverge("%s: record %s differs in %s:\n  phone  %.400s\n  server %.400s", p->username, id,
                        keys[k], a ? a : "(none)", b ? b : "(none)");
                free(a), free(b);
                break;
            }
        }
        cJSON_Delete(recs);
    }
}

/* All items of a list endpoint ({"items":[...],"next"?}). */
static cJSON *all_items(const char *path) {
    long st = 0;
    cJSON *j = call(S.admin, "GET", path, NULL, &st);
    cJSON *items = cJSON_DetachItemFromObjectCaseSensitive(j, "items");
    cJSON_Delete(j);
    if (st != 200 || !cJSON_IsArray(items)) {
        cJSON_Delete(items);
        fprintf(stderr, "casesync-sim: GET %s -> %ld\n", path, st);
        return cJSON_CreateArray();
    }
    return items;
}

static cJSON *find_by(const cJSON *arr, const char *k, const char *v) {
    cJSON *it;
    cJSON_ArrayForEach(it, arr) if (jstr(it, k) && v && strcmp(jstr(it, k), v) == 0) return it;
    return NULL;
}

/* Is value v of field f (set by device/cs) in the record's history or conflict log? */
static int value_accounted(cJSON *hist, const cJSON *conflicts, const char *rid, const char *field,
                           const cJSON *v, const char *device, double cs) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(hist, "items")) {
        const cJSON *f =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "fields"), field);
        const cJSON *nv = cJSON_GetObjectItemCaseSensitive(f, "new");
        if (nv && cJSON_Compare(nv, v, 1)) return 1; /* ours, or the same value set by someone */
        (void)device, (void)cs;
    }
    cJSON_ArrayForEach(e, conflicts) {
        if (!jstr(e, "record_id") || strcmp(jstr(e, "record_id"), rid) != 0) continue;
        if (!jstr(e, "field") || strcmp(jstr(e, "field"), field) != 0) continue;
        const cJSON *cv = cJSON_GetObjectItemCaseSensitive(e, "client_value");
        if (cv && cJSON_Compare(cv, v, 1)) return 1;
    }
    return 0;
}

/* Item equality, ignoring members the server stamps. */
static int item_matches(const cJSON *mine, const cJSON *theirs) {
    const cJSON *m;
    cJSON_ArrayForEach(m, mine) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(theirs, m->string);
        if (!t || !cJSON_Compare(m, t, 1)) return 0;
    }
    return 1;
}

static void check_ledgers(cache_t *c) {
    cJSON *rejections = all_items("/v1/rejections");
    cJSON *open = all_items("/v1/conflicts?state=open"),
          *resolved = all_items("/v1/conflicts?state=resolved");
    cJSON *conflicts = cJSON_CreateArray(), *it;
    cJSON_ArrayForEach(it, open) cJSON_AddItemToArray(conflicts, cJSON_Duplicate(it, 1));
    cJSON_ArrayForEach(it, resolved) cJSON_AddItemToArray(conflicts, cJSON_Duplicate(it, 1));
    for (int i = 0; i < S.nphones; i++) {
        phone_t *p = &S.ph[i];
        cJSON *e;
        cJSON_ArrayForEach(e, p->ledger) {
            S.accounted++;
            const char *rid = jstr(e, "record_id"), *status = jstr(e, "status");
            double cs = jnum(e, "changeset_seq", 0), idx = jnum(e, "index", -1);
            const cJSON *ch = cJSON_GetObjectItemCaseSensitive(e, "change");
            const char *op = jstr(ch, "op");
            if (!rid || !status || !op) {
                diverge("%s: a result without record, status or change", p->username);
                continue;
            }
            if (strcmp(status, "rejected") == 0) {
                int found = 0;
                cJSON_ArrayForEach(it, rejections) {
                    if (jstr(it, "device_id") && strcmp(jstr(it, "device_id"), p->device) == 0 &&
                        jnum(it, "changeset_seq", -1) == cs && jnum(it, "index", -2) == idx)
                        found = 1;
                }
                if (!found)
                    diverge("%s: rejected change %s of changeset %.0f[%.0f] is not in the quarantine",
                            p->username, rid, cs, idx);
                continue;
            }
            const cJSON *cf;
            cJSON_ArrayForEach(cf, cJSON_GetObjectItemCaseSensitive(e, "conflicts")) {
                if (!find_by(conflicts, "id", jstr(cf, "id")))
                    diverge("%s: conflict %s of %s is in no conflict list", p->username, jstr(cf, "id"), rid);
            }
            cJSON *sv = cached(c->cases, rid, "/v1/cases/%s");
            if (!sv) {
                diverge("%s: acknowledged change of %s, which the server does not have", p->username, rid);
                continue;
            }
            const cJSON *fields = cJSON_GetObjectItemCaseSensitive(sv, "fields");
            if (strcmp(op, "create") == 0) continue; /* exists; its fields are checked like sets below */
            if (strcmp(op, "void") == 0) {
                if (strcmp(status, "applied") == 0 &&
                    !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sv, "voided")))
                    diverge("%s: applied void of %s, yet the record is not voided", p->username, rid);
                continue;
            }
            if (strcmp(op, "transition") == 0) {
                if (strcmp(status, "applied") == 0) {
                    cJSON *hist = cached(c->history, rid, "/v1/cases/%s/history");
                    cJSON *v = cJSON_CreateString(jstr(ch, "to") ? jstr(ch, "to") : "");
                    if (!value_accounted(hist, conflicts, rid, "status", v, p->device, cs))
                        diverge("%s: applied transition of %s to %s is not in its history", p->username, rid,
                                jstr(ch, "to"));
                    cJSON_Delete(v);
                }
                continue;
            }
            const cJSON *f;
            cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(ch, "set")) {
                cJSON *hist = cached(c->history, rid, "/v1/cases/%s/history");
                if (strcmp(f->string, "tags") == 0) {
                    /* union when concurrent, else a plain set: each tag is in some version */
                    const cJSON *tag;
                    cJSON_ArrayForEach(tag, f) {
                        int in = 0;
                        const cJSON *h, *y;
                        cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(hist, "items")) {
                            const cJSON *t = cJSON_GetObjectItemCaseSensitive(
                                cJSON_GetObjectItemCaseSensitive(
                                    cJSON_GetObjectItemCaseSensitive(h, "fields"), "tags"),
                                "new");
                            cJSON_ArrayForEach(y, t) in |= cJSON_Compare(tag, y, 1);
                        }
                        if (!in)
                            diverge("%s: tag %s set on %s is in no version of it", p->username,
                                    tag->valuestring, rid);
                    }
                    continue;
                }
                if (!value_accounted(hist, conflicts, rid, f->string, f, p->device, cs)) {
                    char *v = cJSON_PrintUnformatted(f);
                    diverge("%s: %s=%s on %s (changeset %.0f, %s) is neither in the history nor in the "
                            "conflict log",
                            p->username, f->string, v ? v : "?", rid, cs, status);
                    free(v);
                }
            }
            cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(ch, "append")) {
                const cJSON *item, *list = cJSON_GetObjectItemCaseSensitive(fields, f->string);
                cJSON_ArrayForEach(item, f) {
                    const cJSON *have = find_by(list, "id", jstr(item, "id"));
                    if (!have || !item_matches(item, have))
                        diverge("%s: %s item %s of %s is not on the server record", p->username, f->string,
                                jstr(item, "id"), rid);
                }
            }
        }
    }
    cJSON_Delete(rejections), cJSON_Delete(open), cJSON_Delete(resolved), cJSON_Delete(conflicts);
}

static void check_blobs(void) {
    for (int i = 0; i < S.nphones; i++) {
        cJSON *sha;
        cJSON_ArrayForEach(sha, S.ph[i].blobs) {
            char path[128];
            snprintf(path, sizeof path, "/v1/blobs/%s", sha->valuestring);
            long st = 0;
            cJSON_Delete(call(S.admin, "HEAD", path, NULL, &st));
            S.blobs_checked++;
            if (st != 200)
                diverge("blob %s (uploaded by %s) -> HEAD %ld", sha->valuestring, S.ph[i].username, st);
        }
    }
}

/* ---- summary ---------------------------------------------------------------------------------------------
 */

static double mib(uint64_t b) {
    return (double)b / (1024.0 * 1024.0);
}

static void summary(cJSON *audit, int nrecords, int nopen, int nresolved, int nrejected) {
    casesync_stats_t t = {0};
    for (int i = 0; i < S.nphones; i++) {
        casesync_stats_t s;
        casesync_stats(S.ph[i].h, &s);
        t.requests += s.requests, t.network_errors += s.network_errors, t.cancels += s.cancels;
        t.changesets_pushed += s.changesets_pushed, t.replays += s.replays,
            t.changes_pushed += s.changes_pushed;
        t.applied += s.applied, t.merged += s.merged, t.conflicts += s.conflicts, t.rejected += s.rejected;
        t.failed_changesets += s.failed_changesets, t.pull_pages += s.pull_pages, t.upserts += s.upserts;
        t.removals += s.removals, t.full_resyncs += s.full_resyncs, t.uploads_done += s.uploads_done;
        t.delta_checks += s.delta_checks;
        t.upload_bytes += s.upload_bytes;
        t.bytes_up_raw += s.bytes_up_raw, t.bytes_up_wire += s.bytes_up_wire;
        t.bytes_down_raw += s.bytes_down_raw, t.bytes_down_wire += s.bytes_down_wire;
    }
    int roles[3] = {0};
    for (int i = 0; i < S.nphones; i++)
        roles[S.ph[i].role[0] == 's' ? 0 : S.ph[i].role[0] == 'o' ? 1 : 2]++;
    printf("casesync-sim: seed %llu, %d phones in %d units (%d supervisors, %d officers, %d auxiliaries), "
           "%d h simulated in %d-min steps\n",
           (unsigned long long)S.seed, S.nphones, S.nunits, roles[0], roles[1], roles[2], S.hours,
           S.step_min);
    printf(
        "  actions      %d creates, %d edits, %d manual-field edits, %d notes, %d evidence, %d transitions, "
        "%d voids, %d grid moves, %d conflict resolutions, %d reinstalls; %d refused locally\n",
        S.creates, S.edits, S.manual_edits, S.notes, S.evidence, S.transitions, S.voids, S.reassigns,
        S.resolutions, S.reinstalls, S.refused_locally);
    printf(
        "  syncs        %d (cut off: %d in a push body, %d after a push answer began, %d in a pull, %d in an "
        "upload; %d busy, %d network errors, %d unexpected)\n",
        S.syncs, S.cut_push_body, S.cut_push_answer, S.cut_pull, S.cut_upload, S.busy, S.net_errors,
        S.unexpected);
    printf("  changesets   %llu pushed (%llu idempotent replays), %llu changes: %llu applied, %llu merged, "
           "%llu conflict, %llu rejected; %llu changesets failed\n",
           (unsigned long long)t.changesets_pushed, (unsigned long long)t.replays,
           (unsigned long long)t.changes_pushed, (unsigned long long)t.applied, (unsigned long long)t.merged,
           (unsigned long long)t.conflicts, (unsigned long long)t.rejected,
           (unsigned long long)t.failed_changesets);
    printf("  pulls        %llu pages, %llu upserts, %llu removals, %llu full resyncs, %llu deltas after a "
           "more:true page read whole%s\n",
           (unsigned long long)t.pull_pages, (unsigned long long)t.upserts, (unsigned long long)t.removals,
           (unsigned long long)t.full_resyncs, (unsigned long long)t.delta_checks,
           S.trust_deltas ? " (off: --trust-deltas)" : "");
    printf("  uploads      %llu done (%.2f MiB of evidence sent)\n", (unsigned long long)t.uploads_done,
           mib(t.upload_bytes));
    printf("  bytes        up %.2f MiB raw / %.2f MiB on the wire; down %.2f MiB raw / %.2f MiB on the wire "
           "(%llu requests)\n",
           mib(t.bytes_up_raw), mib(t.bytes_up_wire), mib(t.bytes_down_raw), mib(t.bytes_down_wire),
           (unsigned long long)t.requests);
    printf("  server       %d records held by phones, conflicts %d open / %d resolved, %d rejections in "
           "quarantine, audit %s (%d entries)\n",
           nrecords, nopen, nresolved, nrejected,
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(audit, "ok")) ? "ok" : "NOT OK",
           (int)jnum(audit, "entries", 0));
    printf("  checks       quiet after %d final rounds; %ld record copies compared; %ld acknowledged changes "
           "accounted for; %ld blobs present\n",
           S.end_rounds, S.compared, S.accounted, S.blobs_checked);
    printf("  divergences  %d\n", S.divergences);
}

/* ---- main
 * -------------------------------------------------------------------------------------------------- */

static int usage(void) {
    fputs(
        "usage: casesync-sim --server URL --admin USER:PASS [--phones N] [--units U] [--hours H] [--seed S]\n"
        "                    [--state DIR] [--step-min M] [--cut-rate P] [--keep] [--verbose] "
        "[--trust-deltas]\n"
        "exit: 0 converged, 1 divergences, 2 usage, 3 setup failed\n",
        stderr);
    return 2;
}

static int rm_tree(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

int main(int argc, char **argv) {
    S.nphones = 20, S.nunits = 2, S.hours = 2, S.seed = 1, S.step_min = 5, S.cut_rate = 0.2;
    const char *state = NULL, *admin = NULL;
    enum { O_KEEP = 256, O_VERBOSE, O_TRUST, O_SERVER, O_ADMIN, O_PHONES, O_UNITS, O_HOURS, O_SEED, O_STATE,
           O_STEP, O_CUT, O_DATA };
    static const struct option longopts[] = {
        {"keep", no_argument, NULL, O_KEEP},         {"verbose", no_argument, NULL, O_VERBOSE},
        {"trust-deltas", no_argument, NULL, O_TRUST}, {"server", required_argument, NULL, O_SERVER},
        {"admin", required_argument, NULL, O_ADMIN}, {"phones", required_argument, NULL, O_PHONES},
        {"units", required_argument, NULL, O_UNITS}, {"hours", required_argument, NULL, O_HOURS},
        {"seed", required_argument, NULL, O_SEED},   {"state", required_argument, NULL, O_STATE},
        {"step-min", required_argument, NULL, O_STEP}, {"cut-rate", required_argument, NULL, O_CUT},
        {"data", required_argument, NULL, O_DATA},   {NULL, 0, NULL, 0},
    };
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, ":", longopts, NULL)) != -1;) {
        switch (c) {
        case O_KEEP: S.keep = 1; break;
        case O_VERBOSE: S.verbose = 1; break;
        case O_TRUST: S.trust_deltas = 1; break;
        case O_SERVER: S.server = optarg; break;
        case O_ADMIN: admin = optarg; break;
        case O_PHONES: S.nphones = atoi(optarg); break;
        case O_UNITS: S.nunits = atoi(optarg); break;
        case O_HOURS: S.hours = atoi(optarg); break;
        case O_SEED: S.seed = strtoull(optarg, NULL, 10); break;
        case O_STATE: state = optarg; break;
        case O_STEP: S.step_min = atoi(optarg); break;
        case O_CUT: S.cut_rate = atof(optarg); break;
        case O_DATA: break; /* accepted for symmetry; users come from the admin API */
        default: return usage();
        }
    }
    if (optind < argc) return usage();
    static char auser[128], apass[256];
    const char *colon = admin ? strchr(admin, ':') : NULL;
    if (!S.server || !colon || S.nphones < 1 || S.nunits < 1 || S.nunits > 16 || S.hours < 0 ||
        S.step_min < 1)
        return usage();
    snprintf(auser, sizeof auser, "%.*s", (int)(colon - admin), admin);
    snprintf(apass, sizeof apass, "%s", colon + 1);
    S.admin_user = auser, S.admin_pass = apass;
    rng_state = S.seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
    if (!rng_state) rng_state = 1;
    if (state) {
        snprintf(S.base, sizeof S.base, "%s", state);
        mkdir(S.base, 0700);
    } else {
        snprintf(S.base, sizeof S.base, "/tmp/casesync-sim-XXXXXX");
        if (!mkdtemp(S.base)) return perror("mkdtemp"), 3;
    }
    if (casesync_global_init() != 0) return 3;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t real_now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    /* Simulated time ends before the server's clock, so no `at` is clamped. */
    S.now = real_now - (int64_t)S.hours * 3600000 - 120000;
    if (setup() != 0) return 3;

    int steps = S.hours * 60 / S.step_min;
    for (int step = 0; step < steps; step++) {
        S.now += (int64_t)S.step_min * 60000;
        for (int i = 0; i < S.nphones; i++) {
            S.now += 137; /* phones act one after another within a step */
            phone_step(&S.ph[rnd(2) ? i : S.nphones - 1 - i]);
        }
        if (S.verbose && step % 12 == 0) note("step %d/%d: %d syncs so far", step, steps, S.syncs);
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    S.now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - 60000;

    settle();
    cache_t c = {cJSON_CreateObject(), cJSON_CreateObject()};
    check_copies(&c);
    check_ledgers(&c);
    check_blobs();
    long st = 0;
    cJSON *audit = call(S.admin, "GET", "/v1/audit/verify", NULL, &st);
    if (st != 200 || !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(audit, "ok")))
        diverge("GET /v1/audit/verify -> %ld, not ok", st);
    cJSON *open = all_items("/v1/conflicts?state=open"),
          *resolved = all_items("/v1/conflicts?state=resolved");
    cJSON *rej = all_items("/v1/rejections");
    int nrecords = cJSON_GetArraySize(c.cases);
    if (S.unexpected) diverge("%d unexpected errors during the run", S.unexpected);
    summary(audit, nrecords, cJSON_GetArraySize(open), cJSON_GetArraySize(resolved), cJSON_GetArraySize(rej));
    cJSON_Delete(open), cJSON_Delete(resolved), cJSON_Delete(rej), cJSON_Delete(audit);
    cJSON_Delete(c.cases), cJSON_Delete(c.history);
    for (int i = 0; i < S.nphones; i++) {
        casesync_close(S.ph[i].h);
        cJSON_Delete(S.ph[i].ledger);
        cJSON_Delete(S.ph[i].blobs);
    }
    free(S.ph);
    casesync_close(S.admin);
    if (!S.keep) rm_tree(S.base);
    return S.divergences ? 1 : 0;
}
