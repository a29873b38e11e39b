/* test_clients.c -- libcasesync, casesync-phone and casesync-sim against the
 * real casesyncd on loopback: offline queueing and local refusals, an
 * interrupted push applied once, two phones converging with a manual
 * conflict, a scripted patrol, and a bounded fleet run. */
#include "tests/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clients/c/casesync.h"

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")

/* ---- helpers ------------------------------------------------------------------------------ */

static int rm_one(const char *p, const struct stat *sb, int f, struct FTW *ftw) {
    (void)sb, (void)f, (void)ftw;
    remove(p);
    return 0;
}

static void rm_dir(void *dir) {
    if (dir && !getenv("CASESYNC_KEEP_DATA")) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* A fresh temporary directory, removed when the test process exits. */
static const char *tmp_dir(const char *tag) {
    char *d = strdup(hfmt("/tmp/casesync-client-%s-XXXXXX", tag));
    if (!mkdtemp(d)) {
        free(d);
        return NULL;
    }
    return h_keep(d, rm_dir);
}

static void close_handle(void *h) {
    casesync_close(h);
}

/* Events a handle saw, as one JSON array (for assertions). */
typedef struct seen {
    cJSON *events;
} seen_t;

static void on_event(void *ud, const casesync_event_t *ev) {
    seen_t *s = ud;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "kind", ev->kind);
    if (ev->record_id) cJSON_AddStringToObject(e, "record_id", ev->record_id);
    if (ev->status) cJSON_AddStringToObject(e, "status", ev->status);
    cJSON *j = cJSON_Parse(ev->json);
    cJSON_AddItemToObject(e, "json", j ? j : cJSON_CreateNull());
    cJSON_AddItemToArray(s->events, e);
}

/* Opens a handle on a new state dir and logs in as a standard user. Phones
 * of devices named "*-S" keep the default fsync of every edit; the others
 * skip it to keep the suite fast. */
static casesync_t *phone_open(srv_t *s, const char *user, const char *device, seen_t *seen) {
    const char *dir = tmp_dir(user);
    if (!dir || !std_user(s, user)) return NULL;
    casesync_options_t o = {0};
    o.state_dir = dir;
    o.no_sync = !(strlen(device) > 2 && strcmp(device + strlen(device) - 2, "-S") == 0);
    o.pull_limit = 3; /* several pages even for small tests */
    if (seen) {
        seen->events = h_keep(cJSON_CreateArray(), (void (*)(void *))cJSON_Delete);
        o.on_event = on_event;
        o.userdata = seen;
    }
    casesync_t *h = NULL;
    casesync_error_t err;
    if (casesync_open(&o, &h, &err) != 0) {
        fprintf(stderr, "    casesync_open: %s\n", err.message);
        return NULL;
    }
    h_keep(h, close_handle);
    if (casesync_login(h, s->base, user, std_pass(user), device, &err) != 0) {
        fprintf(stderr, "    casesync_login %s: %s\n", user, err.message);
        return NULL;
    }
    return h;
}

/* Library JSON text as a pool-owned tree. */
static cJSON *lib_json(int rc, char *text) {
    if (rc != 0 || !text) return NULL;
    cJSON *j = jparse(text);
    casesync_free(text);
    return j;
}

static cJSON *notices_of(casesync_t *h) {
    char *t = NULL;
    int rc = casesync_notices(h, &t);
    return lib_json(rc, t);
}

static cJSON *view_of(casesync_t *h, const char *id) {
    char *t = NULL;
    int rc = casesync_get(h, id, &t);
    return lib_json(rc, t);
}

static cJSON *outbox_of(casesync_t *h) {
    char *t = NULL;
    int rc = casesync_outbox(h, &t);
    return lib_json(rc, t);
}

/* Create fields valid for GRID1 / U1; extra (a JSON object or NULL) is merged
 * in, a member set to null removes that field. */
static const char *create_fields(const char *procedure, const char *extra) {
    cJSON *f =
        jparse(hfmt("{\"procedure\":\"%s\",\"source\":\"patrol\",\"description\":\"vendor on the bridge\","
                    "\"occurred_at\":\"%s\",\"grid\":\"%s\",\"address\":\"1 Qianmen St\","
                    "\"location\":{\"lon\":116.39,\"lat\":39.9,\"crs\":\"wgs84\"}}",
                    procedure, iso_now(-60000), GRID1));
    cJSON *x = extra ? jparse(extra) : NULL, *m;
    cJSON_ArrayForEach(m, x) {
        cJSON_DeleteItemFromObjectCaseSensitive(f, m->string);
        if (!cJSON_IsNull(m)) cJSON_AddItemToObject(f, m->string, cJSON_Duplicate(m, 1));
    }
    return jprint(f);
}

/* The server's record via GET /v1/cases/{id}, through a handle's session. */
static cJSON *server_case(casesync_t *h, const char *id) {
    long st = 0;
    char *out = NULL;
    casesync_error_t err;
    if (casesync_request(h, "GET", hfmt("/v1/cases/%s", id), NULL, &st, &out, &err) != 0 || st != 200) {
        fprintf(stderr, "    GET /v1/cases/%s -> %ld %s %s\n", id, st, err.message, out ? out : "");
        casesync_free(out);
        return NULL;
    }
    return lib_json(0, out);
}

static cJSON *server_get(casesync_t *h, const char *path) {
    long st = 0;
    char *out = NULL;
    casesync_error_t err;
    if (casesync_request(h, "GET", path, NULL, &st, &out, &err) != 0 || st != 200) {
        fprintf(stderr, "    GET %s -> %ld %s\n", path, st, out ? out : err.message);
        casesync_free(out);
        return NULL;
    }
    return lib_json(0, out);
}

/* A view without the local-only member, to compare with another phone's. */
static cJSON *comparable(const cJSON *v) {
    cJSON *c = cJSON_Duplicate(v, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(c, "pending");
    return h_keep(c, (void (*)(void *))cJSON_Delete);
}

/* ---- 1. offline queue ----------------------------------------------------------------------- */

TEST(client_offline_edits_queue_in_order_and_seal_in_changesets) {
    srv_t s;
    START(s);
    casesync_t *h = phone_open(&s, "off1", "dev-Q1", NULL);
    ASSERT(h != NULL);
    const char *off2 = std_user(&s, "off2");
    ASSERT(off2 != NULL);
    char *sess = NULL;
    ASSERT_INT(casesync_session(h, &sess), 0);
    const char *me = jstr(lib_json(0, sess), "user.id");
    ASSERT(me != NULL);

    /* Offline from here on: nothing below talks to the server until sync. */
    casesync_error_t err;
    char id[CASESYNC_ID_MAX], nid[CASESYNC_ID_MAX];
    const char *guards =
        hfmt("{\"party\":{\"kind\":\"person\",\"name\":\"Li Si\"},\"illegal_item_code\":\"C0501\","
             "\"assignee\":\"%s\",\"assist_officer\":\"%s\",\"decision_doc_no\":\"U1-JY-7\","
             "\"fine_amount\":50}",
             me, off2);
    ASSERT_INT(casesync_create(h, TYPE_VENDING, create_fields("simple", guards), NULL, id, &err), 0);
    ASSERT_MSG(strlen(id) == 26, "a ULID-like id: %s", id);
    ASSERT_INT(casesync_update(h, id, "{\"address\":\"3 Qianmen St\"}", NULL, &err), 0);
    ASSERT_INT(casesync_note(h, id, "vendor left a cart", nid, &err), 0);
    ASSERT_INT(casesync_transition(h, id, "decided", &err), 0);
    /* decided is handed over on the spot: no separate served step (SCHEMA v2 C) */
    ASSERT_INT(casesync_transition(h, id, "served", &err), CASESYNC_E_TRANSITION);
    ASSERT_INT(casesync_update(h, id, "{\"recorded_at\":\"2026-11-20T09:00:00Z\"}", NULL, &err), 0);

    cJSON *ob = outbox_of(h);
    ASSERT(ob != NULL);
    ASSERT_INT(jlen(ob, "pending"), 5);
    ASSERT_INT(jlen(ob, "sealed"), 0);
    ASSERT_JINT(ob, "next_changeset_seq", 1);
    ASSERT_JSTR(ob, "pending[0].op", "create");
    ASSERT_JSTR(ob, "pending[0].fields.unit", "U1");       /* the user's unit by default */
    ASSERT_JSTR(ob, "pending[0].fields.category", "0501"); /* the type's code */
    ASSERT_JSTR(ob, "pending[1].op", "update");
    ASSERT_JINT(ob, "pending[1].base_version", 0);
    ASSERT_JSTR(ob, "pending[1].set.address", "3 Qianmen St");
    ASSERT_JSTR(ob, "pending[2].append.notes[0].id", nid);
    ASSERT_JSTR(ob, "pending[3].op", "transition");
    ASSERT_JSTR(ob, "pending[3].to", "decided");
    ASSERT_JSTR(ob, "pending[4].set.recorded_at", "2026-11-20T09:00:00Z");
    for (int i = 0; i < 5; i++) {
        ASSERT_JSTR(ob, hfmt("pending[%d].record_id", i), id);
        ASSERT_MSG(jstr(ob, hfmt("pending[%d].at", i)) != NULL, "change %d without at", i);
    }

    /* The local view already shows the edits. */
    cJSON *v = view_of(h, id);
    ASSERT(v != NULL);
    ASSERT_JSTR(v, "status", "decided");
    ASSERT_JINT(v, "version", 0);
    ASSERT_JINT(v, "pending", 5);
    ASSERT_JSTR(v, "fields.address", "3 Qianmen St");
    ASSERT_JSTR(v, "fields.notes[0].text", "vendor left a cart");

    /* 10 more cases with 100 notes each: sealing makes changesets of at most
     * 1000 changes, numbered on. */
    char more[10][CASESYNC_ID_MAX];
    for (int c = 0; c < 10; c++) {
        ASSERT_INT(casesync_create(h, TYPE_VENDING, create_fields("general", NULL), NULL, more[c], &err), 0);
        for (int i = 0; i < 100; i++)
            ASSERT_INT(casesync_note(h, more[c], hfmt("note %d", i), NULL, &err), 0);
    }
    /* Seal and push, but cut the first push before a byte leaves. */
    ASSERT_INT(casesync_fault(h, CASESYNC_PHASE_PUSH, 0, -1), 0);
    casesync_report_t rep;
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), CASESYNC_E_CANCELED);
    ob = outbox_of(h);
    ASSERT(ob != NULL);
    ASSERT_INT(jlen(ob, "pending"), 0);
    ASSERT_INT(jlen(ob, "sealed"), 2);
    ASSERT_JINT(ob, "sealed[0].changeset_seq", 1);
    ASSERT_JINT(ob, "sealed[1].changeset_seq", 2);
    ASSERT_INT(jlen(ob, "sealed[0].body.changes"), 1000);
    ASSERT_INT(jlen(ob, "sealed[1].body.changes"), 15);
    ASSERT_JSTR(ob, "sealed[0].body.device_id", "dev-Q1");
    ASSERT_JINT(ob, "next_changeset_seq", 3);
    /* Edits made now wait for the next seal. */
    ASSERT_INT(casesync_note(h, id, "after sealing", NULL, &err), 0);

    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);
    ASSERT_INT(rep.changesets, 3);
    ASSERT_INT(rep.rejected, 0);
    ASSERT_INT(rep.applied + rep.merged, 1016);
    ob = outbox_of(h);
    ASSERT_INT(jlen(ob, "pending") + jlen(ob, "sealed") + jlen(ob, "acked"), 0);
    v = view_of(h, id);
    ASSERT_JSTR(v, "status", "decided");
    ASSERT_JINT(v, "pending", 0);
    ASSERT_INT(jlen(v, "fields.notes"), 2);
    cJSON *last = view_of(h, more[9]);
    ASSERT_INT(jlen(last, "fields.notes"), 100);
    ASSERT_JINT(last, "version", 101);
    cJSON *sv = server_case(h, id);
    ASSERT(sv != NULL);
    ASSERT_MSG(cJSON_Compare(jget(sv, "fields"), jget(v, "fields"), 1),
               "phone and server differ:\n%.600s\n%.600s", jprint(jget(sv, "fields")),
               jprint(jget(v, "fields")));
    ASSERT_JINT(sv, "version", jint(v, "version"));
    ASSERT_MSG(jstr(sv, "fields.case_no") != NULL, "decided gives a case_no: %.600s", jprint(sv));
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(client_invalid_edits_are_refused_locally_with_the_schema_error) {
    srv_t s;
    START(s);
    casesync_t *h = phone_open(&s, "off1", "dev-R1-S", NULL);
    casesync_t *aux = phone_open(&s, "aux1", "dev-R2", NULL);
    ASSERT(h && aux);
    casesync_error_t err;
    char id[CASESYNC_ID_MAX];

    /* A value rule: the grid pattern. */
    ASSERT_INT(
        casesync_create(h, TYPE_VENDING, create_fields("general", "{\"grid\":\"12345\"}"), NULL, id, &err),
        CASESYNC_E_INVALID);
    ASSERT_STR(err.api_code, "validation_failed");
    ASSERT_STR(err.field, "fields.grid");
    /* A required field missing. */
    ASSERT_INT(
        casesync_create(h, TYPE_VENDING, create_fields("general", "{\"location\":null}"), NULL, id, &err),
        CASESYNC_E_INVALID);
    ASSERT_STR(err.field, "fields.location");
    ASSERT_INT(casesync_create(h, "no_such_type", create_fields("general", NULL), NULL, id, &err),
               CASESYNC_E_INVALID);
    /* Another unit: the unit's write rule refuses it on the phone already. */
    ASSERT_INT(
        casesync_create(h, TYPE_VENDING, create_fields("general", "{\"unit\":\"U2\"}"), NULL, id, &err),
        CASESYNC_E_ROLE);
    ASSERT_STR(err.api_code, "field_forbidden");
    ASSERT_STR(err.field, "fields.unit");

    ASSERT_INT(casesync_create(h, TYPE_VENDING, create_fields("simple", NULL), NULL, id, &err), 0);
    /* Shape: a string where the schema has a number (the server would 422 the changeset). */
    ASSERT_INT(casesync_update(h, id, "{\"fine_amount\":\"abc\"}", NULL, &err), CASESYNC_E_SHAPE);
    ASSERT_STR(err.field, "set.fine_amount");
    /* Values: three decimals, an unknown field, a server-set field. */
    ASSERT_INT(casesync_update(h, id, "{\"fine_amount\":12.345}", NULL, &err), CASESYNC_E_INVALID);
    ASSERT_STR(err.field, "set.fine_amount");
    ASSERT_INT(casesync_update(h, id, "{\"colour\":\"red\"}", NULL, &err), CASESYNC_E_INVALID);
    ASSERT_INT(casesync_update(h, id, "{\"case_no\":\"U1-2026-000001\"}", NULL, &err), CASESYNC_E_INVALID);
    /* Append items: the text is required; a server-set member is refused. */
    ASSERT_INT(casesync_update(h, id, NULL, "{\"notes\":[{\"at\":\"2026-01-01T00:00:00.000Z\"}]}", &err),
               CASESYNC_E_INVALID);
    ASSERT_INT(casesync_update(h, id, NULL, "{\"notes\":[{\"text\":\"x\",\"author\":\"u9\"}]}", &err),
               CASESYNC_E_INVALID);
    /* Lifecycle: guards of `decided` (party, two officers ...). */
    ASSERT_INT(casesync_transition(h, id, "decided", &err), CASESYNC_E_INVALID);
    ASSERT_MSG(strncmp(err.field, "fields.", 7) == 0, "the guard names a field: %s (%s)", err.field,
               err.message);
    /* Not a transition of this procedure; a supervisor's transition. */
    ASSERT_INT(casesync_transition(h, id, "closed", &err), CASESYNC_E_TRANSITION);
    ASSERT_STR(err.api_code, "forbidden_transition");
    ASSERT_INT(casesync_void(h, id, "duplicate", &err), CASESYNC_E_ROLE);
    ASSERT_INT(casesync_update(h, "01NOSUCHRECORD0000", "{\"address\":\"x\"}", NULL, &err),
               CASESYNC_E_NOT_FOUND);

    /* An auxiliary never writes a penalty nor takes a decision. */
    char aid[CASESYNC_ID_MAX];
    ASSERT_INT(casesync_create(aux, TYPE_VENDING, create_fields("digital", NULL), NULL, aid, &err), 0);
    ASSERT_INT(casesync_update(aux, aid, "{\"fine_amount\":100}", NULL, &err), CASESYNC_E_ROLE);
    ASSERT_STR(err.api_code, "field_forbidden");
    ASSERT_STR(err.field, "set.fine_amount");
    ASSERT_INT(casesync_transition(aux, aid, "filed", &err), CASESYNC_E_ROLE);

    /* Nothing refused was queued: one create each. */
    cJSON *ob = outbox_of(h);
    ASSERT_INT(jlen(ob, "pending"), 1);
    ob = outbox_of(aux);
    ASSERT_INT(jlen(ob, "pending"), 1);
    casesync_report_t rep;
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);
    ASSERT_INT(rep.applied, 1);
    ASSERT_INT(rep.rejected, 0);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 1b. interrupted pushes -------------------------------------------------------------------- */

TEST(client_push_cut_at_any_byte_is_applied_once) {
    srv_t s;
    START(s);
    casesync_t *h = phone_open(&s, "off1", "dev-I1-S", NULL);
    ASSERT(h != NULL);
    casesync_error_t err;
    casesync_report_t rep;
    char id[CASESYNC_ID_MAX];
    ASSERT_INT(casesync_create(h, TYPE_VENDING, create_fields("general", NULL), NULL, id, &err), 0);
    ASSERT_INT(casesync_update(h, id, "{\"address\":\"7 Qianmen St\"}", NULL, &err), 0);

    /* The server gets the whole body and applies it; the answer is lost. */
    ASSERT_INT(casesync_fault(h, CASESYNC_PHASE_PUSH, -1, 0), 0);
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), CASESYNC_E_CANCELED);
    cJSON *sv = server_case(h, id);
    ASSERT_MSG(sv != NULL, "the cut push was not applied on the server");
    ASSERT_JINT(sv, "version", 2);
    cJSON *ob = outbox_of(h);
    ASSERT_INT(jlen(ob, "sealed"), 1); /* not answered: still in the outbox */
    const char *body1 = jprint(jget(ob, "sealed[0].body"));
    cJSON *v = view_of(h, id);
    ASSERT_JSTR(v, "fields.address", "7 Qianmen St");

    /* The retry sends the identical body: a replay, applied once. */
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);
    ASSERT_INT(rep.changesets, 1);
    ASSERT_INT(rep.replays, 1);
    ASSERT_INT(rep.applied, 2);
    sv = server_case(h, id);
    ASSERT_JINT(sv, "version", 2);
    cJSON *hist = server_get(h, hfmt("/v1/cases/%s/history", id));
    ASSERT(hist != NULL);
    ASSERT_INT(jlen(hist, "items"), 2);
    casesync_stats_t st;
    ASSERT_INT(casesync_stats(h, &st), 0);
    ASSERT_INT(st.replays, 1);
    ASSERT_INT(st.changesets_pushed, 1);

    /* A body cut in the middle: the server applies nothing; the retry applies it. */
    ASSERT_INT(casesync_update(h, id, "{\"description\":\"cut in the middle\"}", NULL, &err), 0);
    ASSERT_INT(casesync_fault(h, CASESYNC_PHASE_PUSH, 40, -1), 0);
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), CASESYNC_E_CANCELED);
    sv = server_case(h, id);
    ASSERT_JINT(sv, "version", 2);
    ob = outbox_of(h);
    ASSERT_JINT(ob, "sealed[0].changeset_seq", 2);
    ASSERT_MSG(strcmp(body1, jprint(jget(ob, "sealed[0].body"))) != 0, "a new changeset");
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);
    ASSERT_INT(rep.replays, 0);
    ASSERT_INT(rep.applied, 1);
    sv = server_case(h, id);
    ASSERT_JINT(sv, "version", 3);
    ASSERT_JSTR(sv, "fields.description", "cut in the middle");

    /* A pull cut mid-page resumes: nothing is lost or doubled. */
    casesync_t *b = phone_open(&s, "off2", "dev-I2", NULL);
    ASSERT(b != NULL);
    ASSERT_INT(casesync_fault(b, CASESYNC_PHASE_PULL, -1, 300), 0);
    ASSERT_INT(casesync_sync(b, 0, &rep, &err), CASESYNC_E_CANCELED);
    ASSERT_INT(casesync_sync(b, 0, &rep, &err), 0);
    cJSON *bv = view_of(b, id);
    ASSERT(bv != NULL);
    ASSERT_MSG(cJSON_Compare(jget(bv, "fields"), jget(sv, "fields"), 1), "B's copy differs: %s", jprint(bv));
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(client_gap_after_server_restore_renumbers_without_skipping) {
    srv_t s;
    START(s);
    casesync_t *h = phone_open(&s, "off1", "dev-G1", NULL);
    ASSERT(h != NULL);
    casesync_error_t err;
    casesync_report_t rep;
    char id[CASESYNC_ID_MAX];
    ASSERT_INT(casesync_create(h, TYPE_VENDING, create_fields("general", NULL), NULL, id, &err), 0);
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);

    /* Another install with the same device id takes changesets 2 and 3. */
    phone_t other;
    ASSERT(phone_login(&other, &s, "off1", std_pass("off1"), "dev-G1") == 0);
    ASSERT_INT(other.seq, 2);
    resp_t r = phone_push(&other, changes(ch_update(id, 1, "{\"address\":\"by the other install\"}", NULL)));
    ASSERT_STATUS(r, 200);
    r = phone_push(&other, changes(ch_update(id, 2, "{\"description\":\"also the other install\"}", NULL)));
    ASSERT_STATUS(r, 200);

    /* Our changeset 2 is changeset_reused: the library finds the next free
     * number and sends the same changes there, applied once. */
    ASSERT_INT(casesync_note(h, id, "mine, not lost", NULL, &err), 0);
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);
    ASSERT_INT(rep.changesets, 1);
    ASSERT_INT(rep.applied + rep.merged, 1);
    cJSON *sv = server_case(h, id);
    ASSERT(sv != NULL);
    ASSERT_MSG(jarr_find(jget(sv, "fields.notes"), "text", "mine, not lost") != NULL, "note lost: %s",
               jprint(sv));
    ASSERT_JSTR(sv, "fields.address", "by the other install");
    cJSON *ob = outbox_of(h);
    ASSERT_JINT(ob, "next_changeset_seq", 5);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 2b. an initial sync killed anywhere ------------------------------------------------------------ */

#define KILL_RECORDS 60
#define KILL_LIMIT 5

/* Where a pulling child kills itself (SIGKILL, as the OS kills an app). */
typedef struct killer {
    int at_event;  /* at this RECORD event: its page is stored, the next one in flight */
    int at_step;   /* when bytes of this pull page's answer arrive */
    long delay_us; /* from a thread, this long after the sync starts: any point */
    int records;
} killer_t;

static void kill_on_event(void *ud, const casesync_event_t *ev) {
    killer_t *k = ud;
    if (ev->kind == CASESYNC_EVENT_RECORD && ++k->records == k->at_event) kill(getpid(), SIGKILL);
}

static int kill_on_progress(void *ud, const casesync_progress_t *p) {
    killer_t *k = ud;
    if (k->at_step && p->phase == CASESYNC_PHASE_PULL && p->step == k->at_step && p->down_now > 0)
        kill(getpid(), SIGKILL);
    return 0;
}

static void *kill_later(void *arg) {
    const killer_t *k = arg;
    struct timespec ts = {k->delay_us / 1000000, (k->delay_us % 1000000) * 1000};
    nanosleep(&ts, NULL);
    kill(getpid(), SIGKILL);
    return NULL;
}

/* A child process opens the state folder (fsync on, as an app) and pulls;
 * returns 0 when its sync ended, 9 when it was killed, else what failed. */
static int pull_in_child(const char *dir, killer_t k) {
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        casesync_options_t o = {0};
        o.state_dir = dir;
        o.pull_limit = KILL_LIMIT;
        o.on_event = kill_on_event;
        o.on_progress = kill_on_progress;
        o.userdata = &k;
        casesync_t *h = NULL;
        casesync_error_t err;
        if (casesync_open(&o, &h, &err) != 0) _exit(2);
        pthread_t th;
        if (k.delay_us > 0 && pthread_create(&th, NULL, kill_later, &k) != 0) _exit(3);
        int rc = casesync_sync(h, CASESYNC_SYNC_NO_PUSH | CASESYNC_SYNC_NO_UPLOAD, NULL, &err);
        if (rc) fprintf(stderr, "    child sync: %s\n", err.message);
        _exit(rc ? 4 : 0); /* no casesync_close: a kill thread may still be pending */
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid) return -1;
    if (WIFSIGNALED(st)) return WTERMSIG(st) == SIGKILL ? 9 : 100 + WTERMSIG(st);
    return WEXITSTATUS(st);
}

/* The records a handle holds, or -1 when one does not read as a record. */
static int count_records(casesync_t *h) {
    char *t = NULL;
    int n = -1;
    if (casesync_list(h, &t) == 0) {
        cJSON *l = cJSON_Parse(t);
        n = cJSON_IsArray(l) ? cJSON_GetArraySize(l) : -1;
        const cJSON *r;
        cJSON_ArrayForEach(r, l) {
            if (!cJSON_IsString(cJSON_GetObjectItem(r, "id")) ||
                !cJSON_IsNumber(cJSON_GetObjectItem(r, "version")) ||
                !cJSON_IsObject(cJSON_GetObjectItem(r, "fields")))
                n = -1;
        }
        cJSON_Delete(l);
    }
    casesync_free(t);
    return n;
}

/* What the folder holds after a kill: its records, or -1 when it does not
 * open or a record does not read (a torn store). */
static int stored_records(const char *dir) {
    casesync_options_t o = {0};
    o.state_dir = dir;
    casesync_t *h = NULL;
    casesync_error_t err;
    if (casesync_open(&o, &h, &err) != 0) return -1;
    int n = count_records(h);
    casesync_close(h);
    return n;
}

/* The app is killed (SIGKILL) while an initial sync of 12 pages runs: on a
 * stored page with the next one in flight, while a page's answer arrives,
 * and at any time from a timer. Every kill leaves a store that opens and
 * reads; the next sync goes on from the last stored page, so each record
 * after it is pulled once more and none before it (its upserts are exactly
 * the records missing), and the phone ends with every record as the server
 * has it. */
TEST(client_initial_sync_killed_anywhere_resumes_from_its_last_stored_page) {
    srv_t s;
    START(s);
    phone_t w;
    ASSERT(std_phone(&w, &s, "off1", "dev-KW") == 0);
    const char *items[KILL_RECORDS + 1] = {0};
    for (int i = 0; i < KILL_RECORDS; i++)
        items[i] = ch_create(hfmt("KILLREC%05d", i), "general", NULL);
    char *list = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&list, &n);
    ASSERT(m != NULL);
    fputc('[', m);
    for (int i = 0; i < KILL_RECORDS; i++)
        fprintf(m, "%s%s", i ? "," : "", items[i]);
    fputc(']', m);
    fclose(m);
    h_keep(list, NULL);
    resp_t r = phone_push(&w, list);
    ASSERT_STATUS(r, 200);
    ASSERT(std_user(&s, "off2") != NULL);

    /* Deterministic kill points, then timers over a clean sync's span. */
    killer_t points[] = {
        {.at_event = 1}, {.at_event = 13}, {.at_event = KILL_RECORDS}, {.at_step = 2}, {.at_step = 7}};
    int npoints = (int)(sizeof points / sizeof points[0]), timers = 8;
    double clean_s = 0;
    srand(20261203);
    for (int c = 0; c < npoints + timers; c++) {
        const char *dir = tmp_dir("kill");
        ASSERT(dir != NULL);
        casesync_options_t o = {0};
        o.state_dir = dir;
        casesync_t *h = NULL;
        casesync_error_t err;
        ASSERT_INT(casesync_open(&o, &h, &err), 0);
        ASSERT_INT(casesync_login(h, s.base, "off2", std_pass("off2"), hfmt("dev-K%02d", c), &err), 0);
        casesync_close(h);
        killer_t k = {0};
        if (c < npoints) {
            k = points[c];
        } else {
            k.delay_us = 1 + (long)((double)rand() / RAND_MAX * clean_s * 1e6);
        }
        int rc = pull_in_child(dir, k);
        ASSERT_MSG(rc == 9 || (rc == 0 && k.delay_us > 0), "kill point %d: the child ended with %d", c, rc);
        int before = stored_records(dir);
        ASSERT_MSG(before >= 0 && before <= KILL_RECORDS, "kill point %d: the store reads %d records", c,
                   before);
        /* Events fire once their page is stored: the whole page is there. */
        if (k.at_event) ASSERT_INT(before, (k.at_event + KILL_LIMIT - 1) / KILL_LIMIT * KILL_LIMIT);

        /* The sync that resumes. */
        seen_t seen;
        memset(&seen, 0, sizeof seen);
        seen.events = h_keep(cJSON_CreateArray(), (void (*)(void *))cJSON_Delete);
        o.pull_limit = KILL_LIMIT;
        o.on_event = on_event;
        o.userdata = &seen;
        ASSERT_INT(casesync_open(&o, &h, &err), 0);
        h_keep(h, close_handle);
        casesync_report_t rep;
        double t0 = now_s();
        ASSERT_INT(casesync_sync(h, CASESYNC_SYNC_NO_PUSH | CASESYNC_SYNC_NO_UPLOAD, &rep, &err), 0);
        if (c == 0) clean_s = now_s() - t0; /* 59 of the 60 records: the span the timers cover */
        ASSERT_MSG(rep.upserts == KILL_RECORDS - before,
                   "kill point %d: %d records were stored, the resumed sync pulled %d", c, before,
                   rep.upserts);
        ASSERT_INT(rep.removals, 0);
        ASSERT_INT(count_records(h), KILL_RECORDS);
        for (int i = 0; i < KILL_RECORDS; i += 11) {
            cJSON *v = view_of(h, hfmt("KILLREC%05d", i));
            ASSERT_MSG(v != NULL, "kill point %d: KILLREC%05d missing", c, i);
            ASSERT_JINT(v, "version", 1);
            ASSERT_JINT(v, "pending", 0);
            ASSERT_JSTR(v, "fields.address", "1 Dongcheng Rd");
        }
    }
    printf("    timers over %.0f ms (a sync of %d records in pages of %d)\n", clean_s * 1000,
           KILL_RECORDS - 1, KILL_LIMIT);
    ASSERT_INT(srv_stop(&s), 0);
}

/* The local view keeps a stored copy only for records with local changes;
 * the others are read from their base. casesync_list merges both in id
 * order, with the right "pending", before and after the edits go out. */
TEST(client_list_merges_records_with_and_without_local_changes) {
    srv_t s;
    START(s);
    phone_t w;
    ASSERT(std_phone(&w, &s, "off1", "dev-LW") == 0);
    resp_t r = phone_push(
        &w, changes(ch_create("LISTREC0001", "general", NULL), ch_create("LISTREC0003", "general", NULL),
                    ch_create("LISTREC0005", "general", NULL), ch_create("LISTREC0007", "general", NULL)));
    ASSERT_STATUS(r, 200);
    casesync_t *h = phone_open(&s, "off2", "dev-L1", NULL);
    ASSERT(h != NULL);
    casesync_error_t err;
    casesync_report_t rep;
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);
    ASSERT_INT(rep.upserts, 4);
    /* Offline: an edit of the second and the last, and a new record between. */
    ASSERT_INT(casesync_update(h, "LISTREC0003", "{\"address\":\"3 Qianmen St\"}", NULL, &err), 0);
    ASSERT_INT(casesync_note(h, "LISTREC0007", "seen again", NULL, &err), 0);
    ASSERT_INT(casesync_note(h, "LISTREC0007", "and again", NULL, &err), 0);
    ASSERT_INT(casesync_create(h, TYPE_VENDING, create_fields("general", NULL), "LISTREC0004", NULL, &err),
               0);
    char *t = NULL;
    ASSERT_INT(casesync_list(h, &t), 0);
    cJSON *l = lib_json(0, t);
    ASSERT(cJSON_GetArraySize(l) == 5);
    static const char *const ids[] = {"LISTREC0001", "LISTREC0003", "LISTREC0004", "LISTREC0005",
                                      "LISTREC0007"};
    static const int pending[] = {0, 1, 1, 0, 2};
    for (int i = 0; i < 5; i++) {
        cJSON *v = cJSON_GetArrayItem(l, i);
        ASSERT_MSG(strcmp(jstr(v, "id"), ids[i]) == 0, "item %d is %s, not %s", i, jstr(v, "id"), ids[i]);
        ASSERT_JINT(v, "pending", pending[i]);
        /* casesync_get answers the same view. */
        cJSON *g = view_of(h, ids[i]);
        ASSERT_MSG(g && cJSON_Compare(g, v, 1), "get and list differ for %s", ids[i]);
    }
    ASSERT_JSTR(cJSON_GetArrayItem(l, 1), "fields.address", "3 Qianmen St");
    ASSERT_INT(jlen(cJSON_GetArrayItem(l, 4), "fields.notes"), 2);

    /* Pushed and pulled back: every view is the server's record again. */
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);
    ASSERT_INT(casesync_list(h, &t), 0);
    l = lib_json(0, t);
    ASSERT(cJSON_GetArraySize(l) == 5);
    for (int i = 0; i < 5; i++) {
        cJSON *v = cJSON_GetArrayItem(l, i);
        ASSERT_MSG(strcmp(jstr(v, "id"), ids[i]) == 0, "after the sync, item %d is %s", i, jstr(v, "id"));
        ASSERT_JINT(v, "pending", 0);
        cJSON *sv = server_case(h, ids[i]);
        ASSERT(sv != NULL);
        ASSERT_MSG(cJSON_Compare(jget(v, "fields"), jget(sv, "fields"), 1),
                   "%s differs from the server's: %s", ids[i], jprint(v));
        ASSERT_MSG(jint(v, "version") == jint(sv, "version"), "%s at version %lld, the server's %lld", ids[i],
                   jint(v, "version"), jint(sv, "version"));
    }
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 3. two phones, one case ---------------------------------------------------------------------- */

TEST(client_two_phones_converge_and_see_the_manual_conflict) {
    srv_t s;
    START(s);
    seen_t sa, sb;
    casesync_t *a = phone_open(&s, "off1", "dev-MA", &sa);
    casesync_t *b = phone_open(&s, "off2", "dev-MB", &sb);
    ASSERT(a && b);
    casesync_error_t err;
    casesync_report_t rep;
    char id[CASESYNC_ID_MAX];
    ASSERT_INT(
        casesync_create(a, TYPE_VENDING, create_fields("general", "{\"fine_amount\":100}"), NULL, id, &err),
        0);
    ASSERT_INT(casesync_sync(a, 0, &rep, &err), 0);
    ASSERT_INT(casesync_sync(b, 0, &rep, &err), 0);
    ASSERT_MSG(view_of(b, id) != NULL, "B did not pull the case");

    /* Both offline, both edit: different lww fields, the same manual field, notes. */
    ASSERT_INT(casesync_update(a, id, "{\"description\":\"A: two carts\",\"fine_amount\":150}", NULL, &err),
               0);
    ASSERT_INT(casesync_note(a, id, "A was here", NULL, &err), 0);
    ASSERT_INT(casesync_update(b, id, "{\"address\":\"B: east gate\",\"fine_amount\":180}", NULL, &err), 0);
    ASSERT_INT(casesync_note(b, id, "B was here", NULL, &err), 0);

    ASSERT_INT(casesync_sync(a, 0, &rep, &err), 0);
    ASSERT_INT(rep.applied, 2);
    ASSERT_INT(casesync_sync(b, 0, &rep, &err), 0);
    ASSERT_INT(rep.conflicts, 1);
    ASSERT_INT(casesync_sync(a, 0, &rep, &err), 0);

    cJSON *va = comparable(view_of(a, id)), *vb = comparable(view_of(b, id));
    ASSERT(va && vb);
    ASSERT_MSG(cJSON_Compare(va, vb, 1), "the phones differ:\nA %s\nB %s", jprint(va), jprint(vb));
    ASSERT_JSTR(va, "fields.description", "A: two carts");
    ASSERT_JSTR(va, "fields.address", "B: east gate");
    ASSERT_MSG(jnum(va, "fields.fine_amount", -1) == 150, "the server value stands: %s", jprint(va));
    ASSERT_INT(jlen(va, "fields.notes"), 2);
    ASSERT_MSG(jarr_find(jget(va, "fields.notes"), "text", "A was here") &&
                   jarr_find(jget(va, "fields.notes"), "text", "B was here"),
               "both notes: %s", jprint(jget(va, "fields.notes")));
    cJSON *sv = server_case(a, id);
    ASSERT(sv != NULL);
    ASSERT_JINT(va, "version", jint(sv, "version"));
    ASSERT_MSG(cJSON_Compare(jget(sv, "fields"), jget(va, "fields"), 1), "phone and server differ");

    /* The conflict is visible to the app: on the record, as B's notice, as an event. */
    ASSERT_INT(jlen(va, "conflicts"), 1);
    const char *cid = jstr(va, "conflicts[0]");
    cJSON *notices = notices_of(b);
    ASSERT(notices != NULL);
    cJSON *n = jarr_find(notices, "kind", "conflict");
    ASSERT_MSG(n != NULL, "B has no conflict notice: %s", jprint(notices));
    ASSERT_JSTR(n, "record_id", id);
    ASSERT_MSG(jnum(n, "change.set.fine_amount", -1) == 180, "the notice keeps B's value: %s", jprint(n));
    ASSERT_JSTR(n, "result.conflicts[0].id", cid);
    ASSERT_JSTR(n, "result.conflicts[0].field", "fine_amount");
    int saw = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, sb.events) {
        if (jint(e, "kind") == CASESYNC_EVENT_RESULT && jstr(e, "status") &&
            !strcmp(jstr(e, "status"), "conflict"))
            saw++;
    }
    ASSERT_INT(saw, 1);
    notices = notices_of(a);
    ASSERT_MSG(!jarr_find(notices, "kind", "conflict"), "A lost nothing: %s", jprint(notices));

    /* A supervisor resolves it; both phones pull the decision. */
    casesync_t *sup = phone_open(&s, "sup1", "dev-MS", NULL);
    ASSERT(sup != NULL);
    long st = 0;
    char *out = NULL;
    ASSERT_INT(casesync_request(sup, "POST", hfmt("/v1/conflicts/%s/resolve", cid),
                                "{\"value\":180,\"note\":\"ok\"}", &st, &out, &err),
               0);
    casesync_free(out);
    ASSERT_INT(st, 200);
    ASSERT_INT(casesync_sync(a, 0, &rep, &err), 0);
    ASSERT_INT(casesync_sync(b, 0, &rep, &err), 0);
    va = comparable(view_of(a, id)), vb = comparable(view_of(b, id));
    ASSERT_MSG(cJSON_Compare(va, vb, 1), "after resolve:\nA %s\nB %s", jprint(va), jprint(vb));
    ASSERT_MSG(jnum(va, "fields.fine_amount", -1) == 180, "resolution: %s", jprint(va));
    ASSERT_INT(jlen(va, "conflicts"), 0);
    ASSERT_INT(srv_stop(&s), 0);
}

TEST(client_rejection_is_a_notice_and_leaves_the_view) {
    srv_t s;
    START(s);
    casesync_t *a = phone_open(&s, "off1", "dev-J1", NULL);
    casesync_t *sup = phone_open(&s, "sup1", "dev-J2", NULL);
    ASSERT(a && sup);
    casesync_error_t err;
    casesync_report_t rep;
    char id[CASESYNC_ID_MAX];
    ASSERT_INT(casesync_create(a, TYPE_VENDING, create_fields("general", NULL), NULL, id, &err), 0);
    ASSERT_INT(casesync_sync(a, 0, &rep, &err), 0);
    ASSERT_INT(casesync_sync(sup, 0, &rep, &err), 0);
    /* The supervisor voids it while the officer, offline, edits it. */
    ASSERT_INT(casesync_void(sup, id, "duplicate report", &err), 0);
    ASSERT_INT(casesync_update(a, id, "{\"address\":\"too late\"}", NULL, &err), 0);
    ASSERT_INT(casesync_sync(sup, 0, &rep, &err), 0);
    ASSERT_INT(casesync_sync(a, 0, &rep, &err), 0);
    ASSERT_INT(rep.rejected, 1);
    cJSON *v = view_of(a, id);
    ASSERT_JBOOL(v, "voided", 1);
    ASSERT_JINT(v, "pending", 0);
    ASSERT_MSG(strcmp(jstr(v, "fields.address"), "too late") != 0, "a rejected edit stayed in the view");
    cJSON *notices = notices_of(a);
    cJSON *n = jarr_find(notices, "kind", "rejected");
    ASSERT_MSG(n != NULL, "no rejected notice: %s", jprint(notices));
    ASSERT_JSTR(n, "error.code", "voided");
    ASSERT_JSTR(n, "change.set.address", "too late");
    ASSERT_INT(casesync_notice_dismiss(a, 0), 0);
    ASSERT_INT(cJSON_GetArraySize(notices_of(a)), 0);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- subprocesses ------------------------------------------------------------------------------- */

typedef struct proc_res {
    int rc; /* exit code; 128+n for a signal; -2 timed out */
    const char *out, *err;
} proc_res_t;

static const char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return "";
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = 0;
    fclose(f);
    return h_keep(b, NULL);
}

/* Runs a /bin/sh script with BIN set to $CASESYNC_BIN, at most timeout_s. */
static proc_res_t run_sh(const char *script, int timeout_s) {
    proc_res_t r = {-1, "", ""};
    const char *dir = tmp_dir("proc");
    if (!dir) return r;
    const char *o = hfmt("%s/out", dir), *e = hfmt("%s/err", dir);
    const char *bin = getenv("CASESYNC_BIN") ? getenv("CASESYNC_BIN") : "build/asan";
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(o, O_WRONLY | O_CREAT | O_TRUNC, 0600),
            fe = open(e, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fi = open("/dev/null", O_RDONLY);
        dup2(fi, 0), dup2(fo, 1), dup2(fe, 2);
        setenv("BIN", bin, 1);
        setenv("ASAN_OPTIONS", "detect_leaks=1", 1);
        execl("/bin/sh", "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    double end = now_s() + timeout_s;
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) break;
        if (now_s() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            r.rc = -2;
            r.out = slurp(o), r.err = slurp(e);
            return r;
        }
        sleep_ms(20);
    }
    r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = slurp(o), r.err = slurp(e);
    return r;
}

/* ---- 2. a bounded fleet ------------------------------------------------------------------------- */

TEST(client_fleet_of_24_phones_converges_with_cut_syncs) {
    srv_t s;
    START(s);
    ASSERT(std_user(&s, "admin") != NULL);
    const char *state = tmp_dir("fleet");
    ASSERT(state != NULL);
    double t0 = now_s();
    proc_res_t r =
        run_sh(hfmt("exec \"$BIN/casesync-sim\" --server %s --admin admin:%s --phones 24 --units 2 "
                    "--hours 3 --seed 20261123 --cut-rate 0.3 --state %s/sim",
                    s.base, std_pass("admin"), state),
               100);
    double secs = now_s() - t0;
    ASSERT_MSG(r.rc == 0, "casesync-sim exited %d after %.1f s:\n%s\n%.3000s", r.rc, secs, r.out, r.err);
    ASSERT_MSG(strstr(r.out, "divergences  0\n") != NULL, "no zero-divergence line:\n%s", r.out);
    /* The run must have cut syncs at every place it can, and replayed a push. */
    int body = -1, answer = -1, pull = -1, replays = -1;
    const char *p = strstr(r.out, "cut off: ");
    ASSERT_MSG(p && sscanf(p, "cut off: %d in a push body, %d after a push answer began, %d in a pull", &body,
                           &answer, &pull) == 3,
               "no cut-off counts:\n%s", r.out);
    p = strstr(r.out, "pushed (");
    ASSERT_MSG(p && sscanf(p, "pushed (%d idempotent replays", &replays) == 1, "no replay count:\n%s", r.out);
    ASSERT_MSG(body > 0 && answer > 0 && pull > 0 && replays > 0,
               "cut-offs: %d push body, %d push answer, %d pull, %d replays:\n%s", body, answer, pull,
               replays, r.out);
    printf("    fleet run: %.1f s\n", secs);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- 4. casesync-phone drives a patrol ----------------------------------------------------------- */

TEST(client_phone_cli_drives_a_patrol_from_a_script) {
    srv_t s;
    START(s);
    ASSERT(std_user(&s, "off1") != NULL);
    const char *dir = tmp_dir("cli");
    ASSERT(dir != NULL);
    /* A "photo": 300 KiB of a fixed pattern. */
    const char *photo = hfmt("%s/photo-0001.jpg", dir);
    FILE *f = fopen(photo, "wb");
    ASSERT(f != NULL);
    for (int i = 0; i < 300 * 1024; i++)
        fputc((i * 7 + i / 1024) & 0xff, f);
    fclose(f);
    const char *script =
        hfmt("set -e\n"
             "P=\"$BIN/casesync-phone --state %s/phone\"\n"
             "echo '%s' | $P login %s off1 dev-cli >/dev/null\n"
             "ID=$($P new unlicensed_vending --procedure general --grid %s --lon 116.397 --lat 39.909 "
             "--address '1 Qianmen St' --description 'vendor on the bridge')\n"
             "echo \"id=$ID\"\n"
             "$P note \"$ID\" 'two carts, one awning' >/dev/null\n"
             "$P edit \"$ID\" fine_amount=100 'party={\"kind\":\"person\",\"name\":\"Li Si\"}'\n"
             "set +e; $P edit \"$ID\" 'fine_amount=\"abc\"' 2>/dev/null; echo \"bad-edit=$?\"; set -e\n"
             "$P attach \"$ID\" %s --kind photo >/dev/null\n"
             "$P sync\n"
             "$P list\n"
             "echo '--- show'\n"
             "$P show \"$ID\"\n",
             dir, std_pass("off1"), s.base, GRID1, photo);
    proc_res_t r = run_sh(script, 60);
    ASSERT_MSG(r.rc == 0, "the patrol script exited %d:\n%s\n%s", r.rc, r.out, r.err);
    char id[CASESYNC_ID_MAX] = "";
    const char *p = strstr(r.out, "id=");
    ASSERT_MSG(p && sscanf(p, "id=%64s", id) == 1 && strlen(id) == 26, "no new id printed:\n%s", r.out);
    ASSERT_MSG(strstr(r.out, "bad-edit=2\n") != NULL, "a refused edit must exit 2:\n%s\n%s", r.out, r.err);
    ASSERT_MSG(strstr(r.out, "pushed 1 changeset (4 applied") != NULL, "sync summary:\n%s", r.out);
    ASSERT_MSG(strstr(r.out, "uploads 1 done") != NULL, "the photo was not uploaded:\n%s\n%s", r.out, r.err);
    ASSERT_MSG(strstr(r.err, "push 1/1") && strstr(r.err, "upload 1/1"),
               "plain progress lines on a pipe:\n%s", r.err);
    ASSERT_MSG(strstr(r.out, hfmt("%s\tclue\tunlicensed_vending\t%s\tv4", id, GRID1)) != NULL, "list:\n%s",
               r.out);
    cJSON *show = jparse(strstr(r.out, "--- show\n") + 9);
    ASSERT_MSG(show != NULL, "show printed no JSON:\n%s", r.out);
    ASSERT_JSTR(show, "id", id);
    ASSERT_JINT(show, "version", 4);
    ASSERT_JINT(show, "pending", 0);
    ASSERT_JSTR(show, "fields.notes[0].text", "two carts, one awning");
    ASSERT_JSTR(show, "fields.party.name", "Li Si");
    ASSERT_JSTR(show, "fields.evidence[0].kind", "photo");
    ASSERT_JINT(show, "fields.evidence[0].size", 300 * 1024);
    const char *sha = jstr(show, "fields.evidence[0].sha256");
    ASSERT(sha && strlen(sha) == 64);

    /* The server has the case and the photo's bytes. */
    phone_t sup;
    ASSERT(std_phone(&sup, &s, "sup1", "dev-cli-sup") == 0);
    resp_t rr = phone_get(&sup, hfmt("/v1/cases/%s", id));
    ASSERT_STATUS(rr, 200);
    ASSERT_JSTR(resp_json(&rr), "fields.evidence[0].sha256", sha);
    rr = http(&s, "HEAD", hfmt("/v1/blobs/%s", sha), sup.token, NULL, NULL);
    ASSERT_STATUS(rr, 200);

    /* Offline: the edit is kept, sync says "retry later" (4), nothing is lost. */
    ASSERT_INT(srv_stop(&s), 0);
    r = run_sh(hfmt("P=\"$BIN/casesync-phone --state %s/phone\"\n"
                    "$P note %s 'written offline' >/dev/null; echo note=$?\n"
                    "$P sync >/dev/null 2>&1; echo sync=$?\n"
                    "$P show NOSUCHRECORD01 >/dev/null 2>&1; echo show=$?\n"
                    "$P list\n",
                    dir, id),
               60);
    ASSERT_MSG(strstr(r.out, "note=0\n") && strstr(r.out, "sync=4\n") && strstr(r.out, "show=3\n"),
               "exit codes offline:\n%s\n%s", r.out, r.err);
    ASSERT_MSG(strstr(r.out, "\tunsynced") != NULL, "the offline note must show as unsynced:\n%s", r.out);
}

/* ---- revocation and threads ------------------------------------------------------------------------ */

TEST(client_revoked_device_with_wipe_empties_the_phone) {
    srv_t s;
    START(s);
    seen_t seen;
    casesync_t *a = phone_open(&s, "off1", "dev-W1", &seen);
    casesync_t *sup = phone_open(&s, "sup1", "dev-W2", NULL);
    ASSERT(a && sup);
    casesync_error_t err;
    casesync_report_t rep;
    char id[CASESYNC_ID_MAX];
    ASSERT_INT(casesync_create(a, TYPE_VENDING, create_fields("general", NULL), NULL, id, &err), 0);
    ASSERT_INT(casesync_sync(a, 0, &rep, &err), 0);
    ASSERT(view_of(a, id) != NULL);
    long st = 0;
    char *out = NULL;
    ASSERT_INT(casesync_request(sup, "POST", "/v1/devices/dev-W1/revoke", "{\"wipe\":true}", &st, &out, &err),
               0);
    casesync_free(out);
    ASSERT_INT(st, 200);

    ASSERT_INT(casesync_sync(a, 0, &rep, &err), CASESYNC_E_REVOKED);
    ASSERT_STR(err.api_code, "device_revoked");
    char *list = NULL;
    ASSERT_INT(casesync_list(a, &list), 0);
    ASSERT_INT(cJSON_GetArraySize(lib_json(0, list)), 0);
    cJSON *n = notices_of(a);
    ASSERT_MSG(jarr_find(n, "kind", "revoked") != NULL, "no revoked notice: %s", jprint(n));
    int wiped = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, seen.events) wiped += jint(e, "kind") == CASESYNC_EVENT_WIPED;
    ASSERT_INT(wiped, 1);
    /* Logged out: edits need a login again. */
    ASSERT_INT(casesync_create(a, TYPE_VENDING, create_fields("general", NULL), NULL, id, &err),
               CASESYNC_E_LOGIN);
    ASSERT_INT(srv_stop(&s), 0);
}

typedef struct edit_thread {
    casesync_t *h;
    const char *id;
    int n, failed;
} edit_thread_t;

static void *edit_loop(void *arg) {
    edit_thread_t *t = arg;
    casesync_error_t err;
    for (int i = 0; i < t->n; i++) {
        char text[32];
        snprintf(text, sizeof text, "thread note %d", i);
        if (casesync_note(t->h, t->id, text, NULL, &err) != 0) t->failed++;
        char *v = NULL;
        if (casesync_get(t->h, t->id, &v) != 0) t->failed++;
        casesync_free(v);
    }
    return NULL;
}

static casesync_t *reenter_h;
static int reentrant_rc = 1;

static void reenter_on_event(void *ud, const casesync_event_t *ev) {
    (void)ud;
    if (ev->kind == CASESYNC_EVENT_RESULT && reentrant_rc == 1)
        reentrant_rc = casesync_sync(reenter_h, 0, NULL, NULL);
}

TEST(client_edits_from_another_thread_during_syncs_all_arrive) {
    srv_t s;
    START(s);
    casesync_t *h = phone_open(&s, "off1", "dev-T1", NULL);
    ASSERT(h != NULL);
    casesync_error_t err;
    casesync_report_t rep;
    char id[CASESYNC_ID_MAX];
    ASSERT_INT(casesync_create(h, TYPE_VENDING, create_fields("general", NULL), NULL, id, &err), 0);
    edit_thread_t t = {h, id, 150, 0};
    pthread_t th;
    ASSERT_INT(pthread_create(&th, NULL, edit_loop, &t), 0);
    int syncs = 0;
    for (int i = 0; i < 200 && syncs < 8; i++) {
        if (casesync_sync(h, 0, &rep, &err) == 0) syncs++;
    }
    pthread_join(th, NULL);
    ASSERT_INT(t.failed, 0);
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);
    cJSON *sv = server_case(h, id);
    ASSERT(sv != NULL);
    ASSERT_INT(jlen(sv, "fields.notes"), 150);
    cJSON *v = view_of(h, id);
    ASSERT_JINT(v, "pending", 0);
    ASSERT_MSG(cJSON_Compare(jget(v, "fields"), jget(sv, "fields"), 1), "phone and server differ");

    /* A network call from inside a callback is refused, not a deadlock. */
    casesync_options_t o = {0};
    o.state_dir = tmp_dir("reenter");
    o.no_sync = 1;
    o.on_event = reenter_on_event;
    ASSERT_INT(casesync_open(&o, &reenter_h, &err), 0);
    h_keep(reenter_h, close_handle);
    ASSERT_INT(casesync_login(reenter_h, s.base, "off1", std_pass("off1"), "dev-T2", &err), 0);
    ASSERT_INT(casesync_sync(reenter_h, 0, &rep, &err), 0);
    ASSERT_INT(casesync_note(reenter_h, id, "from a callback's phone", NULL, &err), 0);
    ASSERT_INT(casesync_sync(reenter_h, 0, &rep, &err), 0);
    ASSERT_INT(reentrant_rc, CASESYNC_E_REENTRANT);
    ASSERT_INT(srv_stop(&s), 0);
}

/* ---- uploads ------------------------------------------------------------------------------------------ */

static int cancel_upload_at(void *ud, const casesync_progress_t *p) {
    uint64_t *at = ud;
    return p->phase == CASESYNC_PHASE_UPLOAD && *at && p->file_done >= *at;
}

TEST(client_upload_cut_resumes_at_the_server_offset) {
    srv_t s;
    START(s);
    ASSERT(std_user(&s, "off1") != NULL);
    uint64_t cancel_at = 0;
    casesync_options_t o = {0};
    o.state_dir = tmp_dir("upload");
    o.no_sync = 1;
    o.upload_chunk = 64 * 1024;
    o.on_progress = cancel_upload_at;
    o.userdata = &cancel_at;
    casesync_t *h = NULL;
    casesync_error_t err;
    ASSERT_INT(casesync_open(&o, &h, &err), 0);
    h_keep(h, close_handle);
    ASSERT_INT(casesync_login(h, s.base, "off1", std_pass("off1"), "dev-U1", &err), 0);
    char id[CASESYNC_ID_MAX];
    ASSERT_INT(casesync_create(h, TYPE_VENDING, create_fields("general", NULL), NULL, id, &err), 0);
    const char *path = hfmt("%s/bodycam-0007.mp4", o.state_dir);
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    const int size = 400 * 1024;
    for (int i = 0; i < size; i++)
        fputc((i * 31 + (i >> 9)) & 0xff, f);
    fclose(f);
    ASSERT_INT(casesync_attach(h, id, path, "bodycam", "video/mp4", NULL, &err), 0);

    /* Cut after two chunks were acknowledged. */
    cancel_at = 2 * 64 * 1024;
    casesync_report_t rep;
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), CASESYNC_E_CANCELED);
    char *t = NULL;
    ASSERT_INT(casesync_uploads(h, &t), 0);
    cJSON *ups = lib_json(0, t);
    ASSERT_INT(cJSON_GetArraySize(ups), 1);
    ASSERT_JSTR(ups, "[0].state", "pending");
    ASSERT_MSG(jstr(ups, "[0].location") != NULL, "no tus Location kept: %s", jprint(ups));
    ASSERT_MSG(jint(ups, "[0].offset") >= 2 * 64 * 1024, "offset not kept: %s", jprint(ups));

    /* Resume: only the rest goes up. */
    cancel_at = 0;
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);
    ASSERT_INT(rep.uploads_done, 1);
    casesync_stats_t st;
    ASSERT_INT(casesync_stats(h, &st), 0);
    ASSERT_INT(st.upload_bytes, size);
    t = NULL;
    ASSERT_INT(casesync_uploads(h, &t), 0);
    ups = lib_json(0, t);
    ASSERT_JSTR(ups, "[0].state", "done");
    const char *sha = jstr(ups, "[0].sha256");
    long code = 0;
    char *out = NULL;
    ASSERT_INT(casesync_request(h, "HEAD", hfmt("/v1/blobs/%s", sha), NULL, &code, &out, &err), 0);
    casesync_free(out);
    ASSERT_INT(code, 200);
    /* The same bytes attached again are not uploaded again. */
    ASSERT_INT(casesync_attach(h, id, path, "bodycam", "video/mp4", NULL, &err), 0);
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);
    ASSERT_INT(casesync_stats(h, &st), 0);
    ASSERT_INT(st.upload_bytes, size);
    ASSERT_INT(srv_stop(&s), 0);
}

/* The phone's copy of the write rules refuses on the spot what the server
 * would refuse after sync (SCHEMA v2 A): a fine frozen by the decision, a
 * case moved to another unit, a grid the user does not patrol. Nothing
 * refused is queued. */
TEST(client_write_rules_refuse_locally_what_the_server_would) {
    srv_t s;
    START(s);
    const char *off2 = std_user(&s, "off2");
    ASSERT(off2 != NULL);
    casesync_t *h = phone_open(&s, "off1", "dev-W1-S", NULL), *aux = phone_open(&s, "aux1", "dev-W2-S", NULL);
    ASSERT(h && aux);
    casesync_error_t err;
    char id[CASESYNC_ID_MAX], aid[CASESYNC_ID_MAX];
    resp_t r = login_resp(&s, "off1", std_pass("off1"), "dev-W1-probe");
    ASSERT_STATUS(r, 200);
    const char *me = hfmt("%s", jstr(resp_json(&r), "user.id"));
    const char *guards = hfmt(
        "{\"party\":{\"kind\":\"person\",\"name\":\"Li Si\"},\"illegal_item_code\":\"C0501\","
        "\"assignee\":\"%s\",\"assist_officer\":\"%s\",\"decision_doc_no\":\"U1-JY-9\",\"fine_amount\":50}",
        me, off2);
    ASSERT_INT(casesync_create(h, TYPE_VENDING, create_fields("simple", guards), NULL, id, &err), 0);
    ASSERT_INT(casesync_transition(h, id, "decided", &err), 0);
    ASSERT_INT(casesync_update(h, id, "{\"fine_amount\":3000}", NULL, &err), CASESYNC_E_FROZEN);
    ASSERT_STR(err.api_code, "field_frozen");
    ASSERT_STR(err.field, "set.fine_amount");
    ASSERT_INT(jlen(outbox_of(h), "pending"), 2);

    ASSERT_INT(casesync_create(aux, TYPE_VENDING, create_fields("digital", NULL), NULL, aid, &err), 0);
    ASSERT_INT(casesync_update(aux, aid, "{\"unit\":\"U2\"}", NULL, &err), CASESYNC_E_ROLE);
    ASSERT_STR(err.api_code, "field_forbidden");
    ASSERT_INT(casesync_update(aux, aid, "{\"grid\":\"" GRID3 "\"}", NULL, &err), CASESYNC_E_ROLE);
    ASSERT_STR(err.field, "set.grid");
    ASSERT_INT(jlen(outbox_of(aux), "pending"), 1);
    /* What the phone accepted, the server applies. */
    casesync_report_t rep;
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);
    ASSERT_INT(rep.rejected, 0);
    ASSERT_INT(casesync_sync(aux, 0, &rep, &err), 0);
    ASSERT_INT(rep.rejected, 0);
}

/* ---- 督办 answered offline ------------------------------------------------------------------ */

/* The phone's clock: the system's, moved by clock_shift_ms. */
static int64_t clock_shift_ms;
static int64_t shifted_clock(void *ud) {
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + clock_shift_ms;
}

/* The officer's phone receives three 督办 orders on a pull, loses the server
 * (stopped), answers all three, and syncs once the server is back: the
 * orders are done on the server. An answer's time (answered_at, what decides
 * on time or late) is the phone's `at` when it was written, clamped by the
 * server to the receive time; received_at keeps when the server got it. */
TEST(client_answers_a_supervision_order_offline_and_syncs_later) {
    srv_t s;
    START(s);
    const char *dir = tmp_dir("sv");
    ASSERT(dir && std_user(&s, "off1"));
    casesync_options_t o = {0};
    o.state_dir = dir;
    o.no_sync = 1;
    o.clock = shifted_clock;
    casesync_t *h = NULL;
    casesync_error_t err;
    ASSERT_INT(casesync_open(&o, &h, &err), 0);
    h_keep(h, close_handle);
    ASSERT_INT(casesync_login(h, s.base, "off1", std_pass("off1"), "dev-SV1", &err), 0);
    char *sess = NULL;
    ASSERT_INT(casesync_session(h, &sess), 0);
    const char *me = jstr(lib_json(0, sess), "user.id");
    ASSERT(me != NULL);
    char id[CASESYNC_ID_MAX];
    ASSERT_INT(casesync_create(h, TYPE_VENDING, create_fields("general", hfmt("{\"assignee\":\"%s\"}", me)),
                               NULL, id, &err),
               0);
    casesync_report_t rep;
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);

    /* The supervisor issues o1 (due tomorrow), o2 and o3 (due half an hour ago). */
    phone_t sup;
    ASSERT(std_phone(&sup, &s, "sup1", "dev-S1") == 0);
    resp_t r = phone_push(
        &sup,
        changes(ch_update(id, 1, NULL,
                          hfmt("{\"supervision\":[{\"id\":\"o1\",\"ask\":\"清理占道\",\"due_at\":\"%s\"},"
                               "{\"id\":\"o2\",\"ask\":\"回复市民\",\"due_at\":\"%s\"},"
                               "{\"id\":\"o3\",\"ask\":\"补充照片\",\"due_at\":\"%s\"}]}",
                               iso_now(86400000), iso_now(-1800000), iso_now(-1800000)))));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(cJSON_GetArrayItem(jget(resp_json(&r), "results"), 0), "status", "applied");

    /* The next pull brings them to the phone, as something to answer. */
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);
    cJSON *v = view_of(h, id);
    ASSERT(v != NULL);
    ASSERT_INT(cJSON_GetArraySize(jget(v, "fields.supervision")), 3);
    ASSERT(jarr_find(jget(v, "fields.supervision"), "id", "o2") != NULL);

    /* The server is gone; the officer answers on the phone. o3's answer was
     * written an hour ago by the phone's clock (before its due time). */
    ASSERT_INT(srv_stop(&s), 0);
    ASSERT_INT(casesync_update(
                   h, id, NULL,
                   "{\"supervision_replies\":[{\"id\":\"a1\",\"order_id\":\"o1\",\"text\":\"已清理\","
                   "\"done\":true},{\"id\":\"a2\",\"order_id\":\"o2\",\"text\":\"已回复\",\"done\":true}]}",
                   &err),
               0);
    clock_shift_ms = -3600000;
    ASSERT_INT(
        casesync_update(h, id, NULL,
                        "{\"supervision_replies\":[{\"id\":\"a3\",\"order_id\":\"o3\",\"text\":\"照片已补\","
                        "\"done\":true}]}",
                        &err),
        0);
    clock_shift_ms = 0;
    ASSERT(casesync_sync(h, 0, &rep, &err) != 0); /* unreachable: the answers wait in the outbox */
    cJSON *ob = outbox_of(h);
    ASSERT(ob != NULL);
    ASSERT_MSG(strstr(jprint(ob), "a3") != NULL, "the answers must wait in the outbox: %s", jprint(ob));
    v = view_of(h, id);
    ASSERT_INT(cJSON_GetArraySize(jget(v, "fields.supervision_replies")), 3);

    /* The server is back: the phone syncs its answers with the session it had. */
    ASSERT_INT(srv_restart_same_port(&s), 0);
    ASSERT_INT(casesync_sync(h, 0, &rep, &err), 0);
    ASSERT_INT(rep.applied + rep.merged, 2);
    const char *supt = login(&s, "sup1", std_pass("sup1"), "dev-S2", NULL);
    ASSERT(supt);
    r = http(&s, "GET", "/v1/supervision?state=all", supt, NULL, NULL);
    ASSERT_STATUS(r, 200);
    const cJSON *items = jget(resp_json(&r), "items");
    const cJSON *i1 = jarr_find(items, "order_id", "o1"), *i2 = jarr_find(items, "order_id", "o2"),
                *i3 = jarr_find(items, "order_id", "o3");
    ASSERT(i1 && i2 && i3);
    ASSERT_JSTR(i1, "state", "done");
    ASSERT_JSTR(i2, "state", "done_late"); /* written after its due time */
    ASSERT_JSTR(i3, "state", "done");      /* written before it, received after */
    ASSERT_MSG(strcmp(jstr(i3, "done_at"), jstr(i3, "due_at")) < 0 &&
                   strcmp(jstr(i3, "received_at"), jstr(i3, "due_at")) > 0,
               "o3: done_at %s, received_at %s, due_at %s", jstr(i3, "done_at"), jstr(i3, "received_at"),
               jstr(i3, "due_at"));
    /* The case on the server holds the three answers with both times. */
    r = http(&s, "GET", hfmt("/v1/cases/%s", id), supt, NULL, NULL);
    ASSERT_STATUS(r, 200);
    const cJSON *a3 = jarr_find(jget(resp_json(&r), "fields.supervision_replies"), "id", "a3");
    ASSERT(a3 != NULL);
    ASSERT_JSTR(a3, "author", me);
    ASSERT(jstr(a3, "answered_at") && jstr(a3, "received_at"));
    ASSERT_INT(srv_stop(&s), 0);
}
