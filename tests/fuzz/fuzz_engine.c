/* fuzz_engine.c -- a throwaway casesync engine for the fuzz targets that need
 * one (changeset, cursor): a temporary folder, four signed-in users, a few
 * records. See fuzz.h for the contract. */
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"

#define FUZZ_PASSWORD "fuzz-password-1"
#define FUZZ_GRID "110101001001001"

static const struct {
    const char *username, *role, *unit, *grids, *device;
} users[FUZZ_NWHO] = {
    [FUZZ_OFFICER] = {"officer1", "officer", "U1", FUZZ_GRID, "fz-officer"},
    [FUZZ_SUPERVISOR] = {"super1", "supervisor", "U1", NULL, "fz-super"},
    [FUZZ_ADMIN] = {"admin1", "admin", "U1", NULL, "fz-admin"},
    [FUZZ_AUXILIARY] = {"aux1", "auxiliary", "U1", FUZZ_GRID, "fz-aux"},
};

/* Records every fuzzed push and pull can meet: one per procedure, the general
 * and digital ones filed by the supervisor, the general one with a note, the
 * digital one moved to another unit afterwards. */
static const struct {
    int who;
    const char *body;
} setup_pushes[] = {
    {FUZZ_OFFICER,
     "{\"device_id\":\"fz-officer\",\"changeset_seq\":1,\"schema_version\":1,\"changes\":["
     "{\"op\":\"create\",\"record_id\":\"FZREC00000000001\",\"type\":\"unlicensed_vending\","
     "\"at\":\"2026-11-22T08:15:30.123Z\",\"fields\":{\"procedure\":\"general\",\"source\":\"patrol\","
     "\"description\":\"street vendor\",\"occurred_at\":\"2026-11-22T08:00:00.000Z\",\"grid\":\"" FUZZ_GRID
     "\",\"address\":\"1 Dongcheng Rd\",\"location\":{\"lon\":116.4,\"lat\":39.9},\"unit\":\"U1\","
     "\"party\":{\"kind\":\"person\",\"name\":\"Zhang San\"},\"illegal_item_code\":\"C-0501-01\","
     "\"assignee\":\"u1\",\"assist_officer\":\"u2\"}},"
     "{\"op\":\"create\",\"record_id\":\"FZREC00000000002\",\"type\":\"exposed_garbage\","
     "\"fields\":{\"procedure\":\"digital\",\"source\":\"hotline\",\"description\":\"garbage\","
     "\"occurred_at\":\"2026-11-22T08:00:00Z\",\"grid\":\"" FUZZ_GRID "\",\"address\":\"2 Xicheng Rd\","
     "\"location\":{\"lon\":116.3,\"lat\":39.8,\"crs\":\"cgcs2000\"},\"unit\":\"U1\"}},"
     "{\"op\":\"create\",\"record_id\":\"FZREC00000000003\",\"type\":\"illegal_parking\","
     "\"fields\":{\"procedure\":\"simple\",\"source\":\"patrol\",\"description\":\"parked on the walk\","
     "\"occurred_at\":\"2026-11-22T09:00:00+08:00\",\"grid\":\"" FUZZ_GRID "\",\"address\":\"3 Rd\","
     "\"location\":{\"lon\":116.2,\"lat\":39.7},\"unit\":\"U1\",\"tags\":[\"car\"]}}]}"},
    {FUZZ_SUPERVISOR,
     "{\"device_id\":\"fz-super\",\"changeset_seq\":1,\"changes\":["
     "{\"op\":\"transition\",\"record_id\":\"FZREC00000000001\",\"base_version\":1,\"to\":\"filed\"},"
     "{\"op\":\"transition\",\"record_id\":\"FZREC00000000002\",\"base_version\":1,\"to\":\"filed\"}]}"},
    {FUZZ_OFFICER, "{\"device_id\":\"fz-officer\",\"changeset_seq\":2,\"changes\":["
                   "{\"op\":\"update\",\"record_id\":\"FZREC00000000001\",\"base_version\":1,"
                   "\"set\":{\"description\":\"vendor, second visit\",\"tags\":[\"repeat\"]},"
                   "\"append\":{\"notes\":[{\"id\":\"n-1\",\"text\":\"came back at noon\"}]}}]}"},
    /* The digital record moves to unit U2: it leaves U1's feeds. */
    {FUZZ_ADMIN, "{\"device_id\":\"fz-admin\",\"changeset_seq\":1,\"changes\":["
                 "{\"op\":\"update\",\"record_id\":\"FZREC00000000002\",\"base_version\":99,"
                 "\"set\":{\"unit\":\"U2\"}}]}"},
};

static sync_t *engine;
static sync_principal_t principals[FUZZ_NWHO];
static int64_t next_seq[FUZZ_NWHO];
static char folder[256];
static int atexit_done;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void setup_fail(const char *what, int rc, const sync_error_t *err) {
    fprintf(stderr, "fuzz engine: %s: %d %s [%s]\n", what, rc, err ? err->message : "",
            err ? err->field : "");
    abort();
}

/* Signs `who` in on its device and fills its principal. */
static void sign_in(int who) {
    sync_error_t err = {0};
    char *out = NULL;
    cJSON *body = cJSON_CreateObject(), *res = NULL;
    cJSON_AddStringToObject(body, "username", users[who].username);
    cJSON_AddStringToObject(body, "password", FUZZ_PASSWORD);
    cJSON_AddStringToObject(body, "device_id", users[who].device);
    int rc = sync_login(engine, body, "fuzz", &out, &err);
    cJSON_Delete(body);
    if (rc) setup_fail("login", rc, &err);
    res = cJSON_Parse(out);
    free(out);
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(res, "token");
    if (!cJSON_IsString(token)) setup_fail("login answer without a token", 0, NULL);
    sync_principal_clear(&principals[who]);
    rc = sync_authenticate(engine, token->valuestring, &principals[who], &err);
    cJSON_Delete(res);
    if (rc) setup_fail("authenticate", rc, &err);
}

static void engine_open(void) {
    sync_error_t err = {0};
    char *out = NULL;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                       : getenv("TMPDIR")            ? getenv("TMPDIR")
                                                     : "/tmp";
    snprintf(folder, sizeof folder, "%s/casesync-fuzz-XXXXXX", base);
    if (!mkdtemp(folder)) setup_fail("mkdtemp", -1, NULL);
    sync_config_t cfg = {.data_dir = folder, .map_size = (size_t)1 << 30, .pbkdf2_iterations = 1000};
    int rc = sync_open(&cfg, &engine, &err);
    if (rc) setup_fail("sync_open", rc, &err);
    if (!atexit_done) {
        atexit(fuzz_engine_close);
        atexit_done = 1;
    }

    for (int i = 0; i < FUZZ_NWHO; i++) {
        rc = sync_user_add(engine, users[i].username, FUZZ_PASSWORD, users[i].role, users[i].unit,
                           users[i].grids, NULL, &out, &err);
        free(out);
        if (rc) setup_fail("user_add", rc, &err);
        sign_in(i);
        next_seq[i] = 1;
    }
    for (size_t i = 0; i < sizeof setup_pushes / sizeof setup_pushes[0]; i++) {
        int who = setup_pushes[i].who, replay = 0;
        cJSON *body = cJSON_Parse(setup_pushes[i].body);
        if (!body) setup_fail("setup push is not JSON", 0, NULL);
        rc = sync_push(engine, &principals[who], body, &out, &replay, &err);
        cJSON_Delete(body);
        free(out);
        if (rc) setup_fail("setup push", rc, &err);
        next_seq[who]++;
    }

    /* The officer's scope changes once (a grid gained, one lost): pulls with
     * an older cursor catch up on both. */
    cJSON *upd = cJSON_Parse("{\"grids\":[\"110101001001002\"]}");
    rc = sync_user_update(engine, &principals[FUZZ_ADMIN], principals[FUZZ_OFFICER].user_id, upd, &out, &err);
    cJSON_Delete(upd);
    free(out);
    if (rc) setup_fail("user_update", rc, &err);
    sign_in(FUZZ_OFFICER);
}

sync_t *fuzz_engine(void) {
    if (!engine) engine_open();
    return engine;
}

const sync_principal_t *fuzz_principal(int who) {
    if (who < 0 || who >= FUZZ_NWHO) return NULL;
    fuzz_engine();
    return &principals[who];
}

int64_t fuzz_next_changeset(int who) {
    return who >= 0 && who < FUZZ_NWHO ? next_seq[who] : 1;
}

void fuzz_changeset_done(int who, int64_t seq, int rc, int replay, const sync_error_t *err) {
    if (who < 0 || who >= FUZZ_NWHO) return;
    if (rc == 0 && !replay && seq == next_seq[who])
        next_seq[who]++;
    else if (rc == SYNC_EGAP && err && err->expected > 0)
        next_seq[who] = err->expected;
}

void fuzz_engine_close(void) {
    if (!engine) return;
    for (int i = 0; i < FUZZ_NWHO; i++)
        sync_principal_clear(&principals[i]);
    sync_close(engine);
    engine = NULL;
    nftw(folder, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    folder[0] = 0;
}
