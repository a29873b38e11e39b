/* test_identity.c -- who may use a device and a password: devices bound to
 * their first user (409 device_in_use, admin release), tokens valid only for
 * their user and device, password changes and disabling ending tokens,
 * argon2id with re-hash of older hashes, the hashing cap (503) and the
 * per-account login backoff from rotating addresses. */
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "sync/valcodec.h"
#include "sync/sync.h"
#include "tests/harness.h"
#include "tests/test.h"

/* ---- helpers ------------------------------------------------------------------------ */

/* The stored user object of username, read from the data folder with LMDB
 * (works while the server runs), or NULL. Pool-owned. */
static cJSON *stored_user(const char *dir, const char *username) {
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi names, users;
    cJSON *u = NULL;
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 64) || mdb_env_set_mapsize(env, 1ull << 36) ||
        mdb_env_open(env, dir, MDB_RDONLY, 0600) || mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) ||
        mdb_dbi_open(txn, "usernames", 0, &names) || mdb_dbi_open(txn, "users", 0, &users))
        goto out;
    MDB_val k = {strlen(username), (void *)username}, id, v;
    if (mdb_get(txn, names, &k, &id) || mdb_get(txn, users, &id, &v)) goto out;
    u = h_keep(valcodec_decode(v.mv_data, v.mv_size), (void (*)(void *))cJSON_Delete);
out:
    if (txn) mdb_txn_abort(txn);
    if (env) mdb_env_close(env);
    return u;
}

/* Replaces the stored password hash of username (server stopped). 0 or -1. */
static int set_stored_pw(const char *dir, const char *username, const char *pw_hash) {
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi names, users;
    cJSON *u = NULL;
    char *text = NULL;
    int rc = -1;
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 64) || mdb_env_set_mapsize(env, 1ull << 36) ||
        mdb_env_open(env, dir, 0, 0600) || mdb_txn_begin(env, NULL, 0, &txn) ||
        mdb_dbi_open(txn, "usernames", 0, &names) || mdb_dbi_open(txn, "users", 0, &users))
        goto out;
    MDB_val k = {strlen(username), (void *)username}, id, v;
    if (mdb_get(txn, names, &k, &id) || mdb_get(txn, users, &id, &v)) goto out;
    if (!(u = valcodec_decode(v.mv_data, v.mv_size))) goto out;
    cJSON_ReplaceItemInObjectCaseSensitive(u, "pw", cJSON_CreateString(pw_hash));
    if (!(text = cJSON_PrintUnformatted(u))) goto out;
    MDB_val nv = {strlen(text), text};
    rc = mdb_put(txn, users, &id, &nv, 0) == 0 && mdb_txn_commit(txn) == 0 ? 0 : -1;
    txn = NULL;
out:
    if (txn) mdb_txn_abort(txn);
    if (env) mdb_env_close(env);
    cJSON_Delete(u);
    free(text);
    return rc;
}

/* A PBKDF2 hash string as earlier versions stored it. */
static const char *pbkdf2_string(const char *pw, int iterations) {
    static const unsigned char salt[16] = "0123456789abcdef";
    unsigned char h[32];
    char salt_hex[33], hash_hex[65];
    if (PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, sizeof salt, iterations, EVP_sha256(), sizeof h, h) != 1)
        return NULL;
    for (int i = 0; i < 16; i++) snprintf(salt_hex + 2 * i, 3, "%02x", salt[i]);
    for (int i = 0; i < 32; i++) snprintf(hash_hex + 2 * i, 3, "%02x", h[i]);
    return hfmt("pbkdf2-sha256$%d$%s$%s", iterations, salt_hex, hash_hex);
}

/* A login sent from the local address `from` (127.0.0.N: the whole of
 * 127/8 is loopback), so that the server sees another client address. */
static resp_t login_from(srv_t *s, const char *from, const char *user, const char *pass, const char *device) {
    resp_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.what, sizeof r.what, "POST /v1/auth/login from %s", from);
    CURL *c = curl_easy_init();
    if (!c) return r;
    char *body = hfmt("{\"username\":\"%s\",\"password\":\"%s\",\"device_id\":\"%s\"}", user, pass, device);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    static char hdrs[4096], data[4096]; /* the test's main thread only */
    FILE *hf = fmemopen(hdrs, sizeof hdrs - 1, "w"), *df = fmemopen(data, sizeof data - 1, "w");
    memset(hdrs, 0, sizeof hdrs);
    memset(data, 0, sizeof data);
    curl_easy_setopt(c, CURLOPT_URL, hfmt("%s/v1/auth/login", s->base));
    curl_easy_setopt(c, CURLOPT_INTERFACE, from);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, hf);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, df);
    CURLcode rc = curl_easy_perform(c);
    if (hf) fclose(hf);
    if (df) fclose(df);
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    else snprintf(r.err, sizeof r.err, "%s", curl_easy_strerror(rc));
    r.body = hfmt("%s", data);
    r.len = strlen(r.body);
    r.headers = hfmt("%s", hdrs);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return r;
}

/* casesync_password_hashes_total from /metrics (asked with an admin token). */
static long long hashes_total(srv_t *s, const char *admin_token) {
    resp_t r = http(s, "GET", "/metrics", admin_token, NULL, NULL);
    const char *p = r.status == 200 ? strstr(r.body, "\ncasesync_password_hashes_total ") : NULL;
    return p ? atoll(p + strlen("\ncasesync_password_hashes_total ")) : -1;
}

/* ---- pure decisions ------------------------------------------------------------------ */

TEST(password_verdict_and_argon2_cost_parse) {
    const char *a3 = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    ASSERT_INT(sync_pw_verdict(a3, 3, 65536, 1), SYNC_PW_CURRENT);
    ASSERT_INT(sync_pw_verdict(a3, 2, 19456, 1), SYNC_PW_CURRENT); /* stronger than asked: kept */
    ASSERT_INT(sync_pw_verdict(a3, 4, 65536, 1), SYNC_PW_REHASH);  /* fewer passes than configured */
    ASSERT_INT(sync_pw_verdict(a3, 3, 131072, 1), SYNC_PW_REHASH); /* less memory than configured */
    ASSERT_INT(sync_pw_verdict(pbkdf2_string("password-1", 1000), 3, 65536, 1), SYNC_PW_REHASH);
    ASSERT_INT(sync_pw_verdict("pbkdf2-sha256$600000$00$00", 3, 65536, 1), SYNC_PW_INVALID);
    ASSERT_INT(sync_pw_verdict(NULL, 3, 65536, 1), SYNC_PW_INVALID);
    ASSERT_INT(sync_pw_verdict("", 3, 65536, 1), SYNC_PW_INVALID);
    ASSERT_INT(sync_pw_verdict("$argon2i$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA", 3, 65536, 1), SYNC_PW_INVALID);
    /* A corrupt cost must not make a login allocate terabytes. */
    ASSERT_INT(sync_pw_verdict("$argon2id$v=19$m=999999999999,t=3,p=1$c2FsdA$aGFzaA", 3, 65536, 1),
               SYNC_PW_INVALID);
    ASSERT_INT(sync_pw_verdict("$argon2id$v=19$m=4,t=3,p=1$c2FsdA$aGFzaA", 3, 65536, 1), SYNC_PW_INVALID);

    sync_config_t cfg = {0};
    ASSERT_INT(sync_argon2_cost_parse("m=64,t=1,p=1", &cfg), 0);
    ASSERT_INT(cfg.argon2_m_kib, 64);
    ASSERT_INT(cfg.argon2_t_cost, 1);
    ASSERT_INT(cfg.argon2_lanes, 1);
    ASSERT_INT(sync_argon2_cost_parse("t=5", &cfg), 0);
    ASSERT_INT(cfg.argon2_t_cost, 5);
    ASSERT_INT(cfg.argon2_m_kib, 64);
    ASSERT_INT(sync_argon2_cost_parse("m=4,t=1", &cfg), -1);
    ASSERT_INT(sync_argon2_cost_parse("t=0", &cfg), -1);
    ASSERT_INT(sync_argon2_cost_parse("x=1", &cfg), -1);
    ASSERT_INT(sync_argon2_cost_parse("t=1,", &cfg), -1);
    ASSERT_INT(sync_argon2_cost_parse("", &cfg), -1);
    ASSERT_INT(cfg.argon2_t_cost, 5); /* a refused text changes nothing */
}

/* ---- device ownership ---------------------------------------------------------------- */

TEST(device_takeover_by_another_user_is_409_and_changes_nothing) {
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    phone_t mine;
    ASSERT(std_phone(&mine, &s, "off1", "dev-take") == 0);
    ASSERT(std_user(&s, "off2"));

    /* Another user, right password, my phone's id: refused. */
    resp_t r = login_resp(&s, "off2", std_pass("off2"), "dev-take");
    ASSERT_ERROR(r, 409, "device_in_use");
    ASSERT_JSTR(resp_json(&r), "error.field", "device_id");
    ASSERT_MSG(!strstr(r.body, "token"), "a refused takeover carried a token: %s", r.body);
    /* With a wrong password it is only a wrong password. */
    r = login_resp(&s, "off2", "wrong-password-1", "dev-take");
    ASSERT_ERROR(r, 401, "invalid_credentials");

    /* My token still works and my unsent push goes through. */
    r = phone_get(&mine, "/v1/me");
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "device.user_id", mine.user_id);
    r = phone_push(&mine, changes(ch_create("01JDIDENT000000001", "general", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    /* My supervisor still sees the phone as mine. */
    phone_t sup;
    ASSERT(std_phone(&sup, &s, "sup1", "dev-sup1") == 0);
    r = phone_get(&sup, "/v1/devices");
    ASSERT_STATUS(r, 200);
    cJSON *d = jarr_find(resp_json(&r), "device_id", "dev-take");
    ASSERT_MSG(d != NULL, "dev-take missing from %s", r.body);
    ASSERT_JSTR(d, "user_id", mine.user_id);
    /* And I can log in again on it. */
    ASSERT(login(&s, "off1", std_pass("off1"), "dev-take", NULL) != NULL);
}

TEST(released_device_binds_to_the_next_user_and_keeps_its_changeset_seq) {
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    phone_t old, admin, sup;
    ASSERT(std_phone(&old, &s, "off1", "dev-hand") == 0);
    ASSERT(std_phone(&admin, &s, "admin", "dev-admin") == 0);
    ASSERT(std_phone(&sup, &s, "sup1", "dev-sup1") == 0);
    ASSERT(std_user(&s, "off2"));
    resp_t r = phone_push(&old, changes(ch_create("01JDIDENT000000002", "general", NULL)));
    ASSERT_STATUS(r, 200);

    /* Only an admin releases, and only a device that exists. */
    r = http(&s, "POST", "/v1/admin/devices/dev-hand/release", sup.token, NULL, NULL);
    ASSERT_ERROR(r, 403, "forbidden");
    r = http(&s, "POST", "/v1/admin/devices/dev-nothing/release", admin.token, NULL, NULL);
    ASSERT_ERROR(r, 404, "not_found");
    r = http(&s, "POST", "/v1/admin/devices/dev-hand/release", old.token, NULL, NULL);
    ASSERT_ERROR(r, 403, "forbidden");

    r = http(&s, "POST", "/v1/admin/devices/dev-hand/release", admin.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "device_id", "dev-hand");
    ASSERT_MSG(cJSON_IsNull(jget(r.json, "user_id")), "released device still has a user: %s", r.body);
    /* The former user's token ended with the release. */
    r = phone_get(&old, "/v1/me");
    ASSERT_ERROR(r, 401, "unauthenticated");

    /* The next user binds it and carries on from its changeset seq. */
    long long next = 0;
    const char *tok2 = login(&s, "off2", std_pass("off2"), "dev-hand", &next);
    ASSERT(tok2 != NULL);
    ASSERT_INT(next, 2);
    r = push(&s, tok2, "dev-hand", 2, changes(ch_create("01JDIDENT000000003", "general", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    /* Seq 1 is still the former user's changeset: never reused. */
    r = push(&s, tok2, "dev-hand", 1, changes(ch_create("01JDIDENT000000004", "general", NULL)));
    ASSERT_ERROR(r, 409, "changeset_reused");
    /* Now the former user is the other one. */
    r = login_resp(&s, "off1", std_pass("off1"), "dev-hand");
    ASSERT_ERROR(r, 409, "device_in_use");

    /* The command line releases too; then off1 may have it back. */
    cli_res_t c = cli(s.dir, NULL, "device", "release", "dev-hand");
    ASSERT_MSG(c.rc == 0, "device release: %d %s", c.rc, c.err);
    r = http(&s, "GET", "/v1/me", tok2, NULL, NULL);
    ASSERT_ERROR(r, 401, "unauthenticated");
    next = 0;
    ASSERT(login(&s, "off1", std_pass("off1"), "dev-hand", &next) != NULL);
    ASSERT_INT(next, 3);
    c = cli(s.dir, NULL, "device", "release", "dev-unknown");
    ASSERT_MSG(c.rc == 1 && strstr(c.err, "dev-unknown"), "unknown device release: %d %s", c.rc, c.err);
    c = cli(s.dir, NULL, "device", "release");
    ASSERT_INT(c.rc, 2);
}

TEST(release_then_same_user_login_ends_the_tokens_before_it) {
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    phone_t a;
    ASSERT(std_phone(&a, &s, "off1", "dev-same") == 0);
    cli_res_t c = cli(s.dir, NULL, "device", "release", "dev-same");
    ASSERT_MSG(c.rc == 0, "device release: %d %s", c.rc, c.err);
    const char *fresh = login(&s, "off1", std_pass("off1"), "dev-same", NULL);
    ASSERT(fresh != NULL);
    resp_t r = phone_get(&a, "/v1/me");
    ASSERT_ERROR(r, 401, "unauthenticated");
    r = http(&s, "GET", "/v1/me", fresh, NULL, NULL);
    ASSERT_STATUS(r, 200);
}

TEST(revoke_and_device_list_only_within_the_owners_unit) {
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    phone_t mine, sup, supx, admin;
    ASSERT(std_phone(&mine, &s, "off1", "dev-wipe") == 0);
    ASSERT(std_phone(&sup, &s, "sup1", "dev-sup1") == 0);
    ASSERT(std_phone(&admin, &s, "admin", "dev-admin") == 0);
    ASSERT(user_add(&s, "supx", std_pass("supx"), "supervisor", "U2", NULL) != NULL);
    ASSERT(phone_login(&supx, &s, "supx", std_pass("supx"), "dev-supx") == 0);

    /* Another unit's supervisor cannot make my phone "theirs" by logging in
     * with its id, cannot revoke it, and does not see it. */
    resp_t r = login_resp(&s, "supx", std_pass("supx"), "dev-wipe");
    ASSERT_ERROR(r, 409, "device_in_use");
    r = http(&s, "POST", "/v1/devices/dev-wipe/revoke", supx.token, "{\"wipe\":true}", NULL);
    ASSERT_ERROR(r, 403, "forbidden");
    r = phone_get(&supx, "/v1/devices");
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(!strstr(r.body, "dev-wipe"), "U2's supervisor sees my phone: %s", r.body);
    r = phone_get(&mine, "/v1/me");
    ASSERT_STATUS(r, 200);
    ASSERT_JBOOL(resp_json(&r), "device.revoked", 0);
    ASSERT_JBOOL(r.json, "device.wipe", 0);

    /* A released phone has no unit: only an admin revokes it. */
    phone_t other;
    ASSERT(std_phone(&other, &s, "off2", "dev-loose") == 0);
    r = http(&s, "POST", "/v1/admin/devices/dev-loose/release", admin.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    r = http(&s, "POST", "/v1/devices/dev-loose/revoke", sup.token, "{\"wipe\":false}", NULL);
    ASSERT_ERROR(r, 403, "forbidden");
    r = http(&s, "POST", "/v1/devices/dev-loose/revoke", admin.token, "{\"wipe\":false}", NULL);
    ASSERT_STATUS(r, 200);

    /* My own supervisor can. */
    r = http(&s, "POST", "/v1/devices/dev-wipe/revoke", sup.token, "{\"wipe\":true}", NULL);
    ASSERT_STATUS(r, 200);
    r = phone_get(&mine, "/v1/me");
    ASSERT_ERROR(r, 401, "device_revoked");
    /* Another user trying the revoked phone learns nothing of it (no wipe). */
    r = login_resp(&s, "supx", std_pass("supx"), "dev-wipe");
    ASSERT_ERROR(r, 409, "device_in_use");
    ASSERT_MSG(!strstr(r.body, "wipe"), "a stranger was told to wipe: %s", r.body);
}

/* ---- passwords and tokens ------------------------------------------------------------ */

TEST(password_change_by_admin_or_cli_ends_every_token) {
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    phone_t a, b, admin, other;
    ASSERT(std_phone(&a, &s, "off1", "dev-p1") == 0);
    ASSERT(phone_login(&b, &s, "off1", std_pass("off1"), "dev-p2") == 0);
    ASSERT(std_phone(&other, &s, "off2", "dev-o2") == 0);
    ASSERT(std_phone(&admin, &s, "admin", "dev-admin") == 0);

    resp_t r = http(&s, "PATCH", hfmt("/v1/admin/users/%s", a.user_id), admin.token,
                    "{\"password\":\"new-password-22\"}", NULL);
    ASSERT_STATUS(r, 200);
    r = phone_get(&a, "/v1/me");
    ASSERT_ERROR(r, 401, "unauthenticated");
    r = phone_get(&b, "/v1/me");
    ASSERT_ERROR(r, 401, "unauthenticated");
    r = phone_get(&other, "/v1/me"); /* someone else's session is untouched */
    ASSERT_STATUS(r, 200);
    r = login_resp(&s, "off1", std_pass("off1"), "dev-p1");
    ASSERT_ERROR(r, 401, "invalid_credentials");
    const char *t = login(&s, "off1", "new-password-22", "dev-p1", NULL);
    ASSERT(t != NULL);
    /* A change of anything else ends nothing. */
    r = http(&s, "PATCH", hfmt("/v1/admin/users/%s", a.user_id), admin.token, "{\"name\":\"Li Wei\"}", NULL);
    ASSERT_STATUS(r, 200);
    r = http(&s, "GET", "/v1/me", t, NULL, NULL);
    ASSERT_STATUS(r, 200);

    /* casesync user passwd: the same, the password from standard input. */
    cli_res_t c = cli(s.dir, "cli-password-33\n", "user", "passwd", "off1");
    ASSERT_MSG(c.rc == 0, "user passwd: %d %s", c.rc, c.err);
    r = http(&s, "GET", "/v1/me", t, NULL, NULL);
    ASSERT_ERROR(r, 401, "unauthenticated");
    ASSERT(login(&s, "off1", "cli-password-33", "dev-p1", NULL) != NULL);
    r = login_resp(&s, "off1", "new-password-22", "dev-p1");
    ASSERT_ERROR(r, 401, "invalid_credentials");
    c = cli(s.dir, "short\n", "user", "passwd", "off1");
    ASSERT_MSG(c.rc == 1 && strstr(c.err, "password"), "short password: %d %s", c.rc, c.err);
    c = cli(s.dir, "cli-password-44\n", "user", "passwd", "nobody");
    ASSERT_MSG(c.rc == 1 && strstr(c.err, "nobody"), "unknown user: %d %s", c.rc, c.err);
    c = cli(s.dir, NULL, "user", "passwd");
    ASSERT_INT(c.rc, 2);
}

TEST(disable_ends_tokens_and_enable_does_not_revive_them) {
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    phone_t a, admin;
    ASSERT(std_phone(&a, &s, "off1", "dev-d1") == 0);
    ASSERT(std_phone(&admin, &s, "admin", "dev-admin") == 0);

    cli_res_t c = cli(s.dir, NULL, "user", "disable", "off1");
    ASSERT_MSG(c.rc == 0, "user disable: %d %s", c.rc, c.err);
    resp_t r = phone_get(&a, "/v1/me");
    ASSERT_ERROR(r, 401, "unauthenticated");
    r = login_resp(&s, "off1", std_pass("off1"), "dev-d1");
    ASSERT_ERROR(r, 401, "invalid_credentials");
    c = cli(s.dir, NULL, "user", "enable", "off1");
    ASSERT_MSG(c.rc == 0, "user enable: %d %s", c.rc, c.err);
    r = phone_get(&a, "/v1/me");
    ASSERT_ERROR(r, 401, "unauthenticated");
    const char *t = login(&s, "off1", std_pass("off1"), "dev-d1", NULL);
    ASSERT(t != NULL);

    /* The same through the API, and enabling by PATCH keeps the old token dead. */
    r = http(&s, "PATCH", hfmt("/v1/admin/users/%s", a.user_id), admin.token, "{\"disabled\":true}", NULL);
    ASSERT_STATUS(r, 200);
    r = http(&s, "PATCH", hfmt("/v1/admin/users/%s", a.user_id), admin.token, "{\"disabled\":false}", NULL);
    ASSERT_STATUS(r, 200);
    r = http(&s, "GET", "/v1/me", t, NULL, NULL);
    ASSERT_ERROR(r, 401, "unauthenticated");
    c = cli(s.dir, NULL, "user", "disable", "nobody");
    ASSERT_INT(c.rc, 1);
}

TEST(pbkdf2_hash_is_rehashed_to_argon2id_on_login) {
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    ASSERT(std_user(&s, "off1"));
    ASSERT(srv_stop(&s) == 0);
    const char *old = pbkdf2_string(std_pass("off1"), 1000);
    ASSERT(old && set_stored_pw(s.dir, "off1", old) == 0);
    ASSERT(srv_restart(&s) == 0);
    ASSERT_STR(jstr(stored_user(s.dir, "off1"), "pw"), old);

    resp_t r = login_resp(&s, "off1", "not-the-password", "dev-r1");
    ASSERT_ERROR(r, 401, "invalid_credentials");
    ASSERT_STR(jstr(stored_user(s.dir, "off1"), "pw"), old); /* a wrong password changes nothing */

    ASSERT(login(&s, "off1", std_pass("off1"), "dev-r1", NULL) != NULL);
    const char *now = jstr(stored_user(s.dir, "off1"), "pw");
    ASSERT_MSG(now && strncmp(now, "$argon2id$v=19$m=64,t=1,p=1$", 28) == 0, "stored hash is %s", now ? now : "(none)");
    ASSERT(login(&s, "off1", std_pass("off1"), "dev-r1", NULL) != NULL);
    ASSERT_STR(jstr(stored_user(s.dir, "off1"), "pw"), now); /* current: not hashed again */
}

TEST(argon2id_below_the_configured_cost_is_rehashed_on_login) {
    srv_t s;
    /* Users are made by the CLI at the test cost (t=1); the server wants t=2. */
    ASSERT(srv_start_config(&s, "{\"argon2_t_cost\":2,\"argon2_memory_kib\":64}") == 0);
    ASSERT(std_user(&s, "off1"));
    const char *was = jstr(stored_user(s.dir, "off1"), "pw");
    ASSERT_MSG(was && strstr(was, "t=1,"), "stored hash is %s", was ? was : "(none)");
    ASSERT(login(&s, "off1", std_pass("off1"), "dev-c1", NULL) != NULL);
    const char *now = jstr(stored_user(s.dir, "off1"), "pw");
    ASSERT_MSG(now && strncmp(now, "$argon2id$v=19$m=64,t=2,p=1$", 28) == 0, "stored hash is %s", now ? now : "(none)");
    ASSERT(login(&s, "off1", std_pass("off1"), "dev-c1", NULL) != NULL);
}

/* ---- login load and guessing ---------------------------------------------------------- */

typedef struct storm {
    srv_t *s;
    int idx;
    resp_t r;
} storm_t;

static void *storm_main(void *arg) {
    storm_t *st = arg;
    const char *user = hfmt("storm%d", st->idx % 4);
    st->r = login_resp(st->s, user, "storm-password-1", hfmt("dev-storm-%d", st->idx));
    return NULL;
}

#define STORM 12

TEST(hashing_cap_answers_503_with_retry_after_and_healthz_still_answers) {
    srv_t s;
    /* One hashing slot and a cost of a good fraction of a second each. */
    ASSERT(srv_start_config(&s, "{\"max_hashing\":1,\"argon2_t_cost\":8,\"argon2_memory_kib\":65536}") == 0);
    for (int i = 0; i < 4; i++) ASSERT(user_add(&s, hfmt("storm%d", i), "storm-password-1", "officer", "U1", GRID1));
    phone_t admin;
    ASSERT(std_phone(&admin, &s, "admin", "dev-admin") == 0);

    storm_t st[STORM];
    pthread_t th[STORM];
    for (int i = 0; i < STORM; i++) {
        st[i] = (storm_t){.s = &s, .idx = i};
        ASSERT(pthread_create(&th[i], NULL, storm_main, &st[i]) == 0);
    }
    /* The server answers other requests while a hash runs. */
    for (int i = 0; i < 100; i++) {
        resp_t m = http(&s, "GET", "/metrics", admin.token, NULL, NULL);
        if (strstr(m.body, "\ncasesync_password_hashing 1\n")) break;
        sleep_ms(20);
    }
    resp_t h = http(&s, "GET", "/healthz", NULL, NULL, NULL);
    for (int i = 0; i < STORM; i++) pthread_join(th[i], NULL);
    ASSERT_STATUS(h, 200);
    int ok = 0, busy = 0;
    for (int i = 0; i < STORM; i++) {
        resp_t *r = &st[i].r;
        if (r->status == 200) {
            ok++;
        } else {
            ASSERT_ERROR(*r, 503, "unavailable");
            const char *ra = resp_header(r, "Retry-After");
            ASSERT_MSG(ra && atoi(ra) >= 1, "503 without Retry-After: %s", r->headers);
            busy++;
        }
    }
    ASSERT_MSG(ok >= 1 && busy >= 1, "%d logins 200, %d 503", ok, busy);
    /* Once the storm is over, logins work again. */
    ASSERT(login(&s, "storm0", "storm-password-1", "dev-storm-0", NULL) != NULL);
}

TEST(failed_logins_slow_down_per_account_from_rotating_addresses) {
    srv_t s;
    ASSERT(srv_start_config(&s, "{\"login_account_max_failures\":4,\"login_window_s\":2}") == 0);
    ASSERT(std_user(&s, "off1"));
    /* Four addresses, one wrong guess each: no address nor address-and-user
     * limit is near, the account's is reached. */
    for (int i = 0; i < 4; i++) {
        resp_t r = login_from(&s, hfmt("127.0.0.%d", 10 + i), "off1", "guess-password-1", "dev-g");
        ASSERT_ERROR(r, 401, "invalid_credentials");
    }
    resp_t r = login_from(&s, "127.0.0.20", "off1", std_pass("off1"), "dev-g");
    ASSERT_ERROR(r, 429, "too_many_requests");
    const char *ra = resp_header(&r, "Retry-After");
    ASSERT_MSG(ra && atoi(ra) >= 1 && atoi(ra) <= 2, "Retry-After: %s", ra ? ra : "(none)");
    /* A username that does not exist is slowed the same way. */
    for (int i = 0; i < 4; i++) {
        r = login_from(&s, hfmt("127.0.0.%d", 30 + i), "nobody-here", "guess-password-1", "dev-n");
        ASSERT_ERROR(r, 401, "invalid_credentials");
    }
    r = login_from(&s, "127.0.0.40", "nobody-here", "guess-password-1", "dev-n");
    ASSERT_ERROR(r, 429, "too_many_requests");
    /* Other accounts are not slowed. */
    ASSERT(std_user(&s, "off2"));
    r = login_from(&s, "127.0.0.10", "off2", std_pass("off2"), "dev-o");
    ASSERT_STATUS(r, 200);
    /* After the window the owner's right password works. */
    for (int i = 0; i < 40; i++) {
        sleep_ms(250);
        r = login_from(&s, "127.0.0.21", "off1", std_pass("off1"), "dev-g");
        if (r.status != 429) break;
    }
    ASSERT_STATUS(r, 200);
}

TEST(unknown_usernames_cost_one_hash_like_known_ones) {
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    phone_t admin;
    ASSERT(std_phone(&admin, &s, "admin", "dev-admin") == 0);
    ASSERT(std_user(&s, "off1"));
    long long n0 = hashes_total(&s, admin.token);
    ASSERT(n0 >= 1);
    resp_t r = login_resp(&s, "off1", "wrong-password-1", "dev-x");
    ASSERT_ERROR(r, 401, "invalid_credentials");
    long long n1 = hashes_total(&s, admin.token);
    r = login_resp(&s, "no-such-user", "wrong-password-1", "dev-x");
    ASSERT_ERROR(r, 401, "invalid_credentials");
    long long n2 = hashes_total(&s, admin.token);
    r = login_resp(&s, "bad name!", "wrong-password-1", "dev-x");
    ASSERT_ERROR(r, 401, "invalid_credentials");
    long long n3 = hashes_total(&s, admin.token);
    ASSERT_INT(n1 - n0, 1);
    ASSERT_INT(n2 - n1, 1);
    ASSERT_INT(n3 - n2, 1);
}

/* ---- a release between a push's arrival and its commit ------------------------------------ */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct slow_push {
    srv_t *s;
    const char *token, *body;
    int fd;
} slow_push_t;

/* Sends a push's head and all of its body but the last byte: the push holds
 * its slot while the body is read. 0 or -1. */
static int slow_push_start(slow_push_t *sp) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sp->s->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sp->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (sp->fd < 0 || connect(sp->fd, (struct sockaddr *)&a, sizeof a) != 0) return -1;
    const char *head = hfmt("POST /v1/sync/push HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                            "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                            sp->token, strlen(sp->body));
    size_t n = strlen(sp->body) - 1;
    return write(sp->fd, head, strlen(head)) == (ssize_t)strlen(head) && write(sp->fd, sp->body, n) == (ssize_t)n
               ? 0
               : -1;
}

typedef struct push_job_arg {
    srv_t *s;
    const char *token, *body;
    resp_t r;
} push_job_arg_t;

static void *push_thread(void *arg) {
    push_job_arg_t *j = arg;
    j->r = http(j->s, "POST", "/v1/sync/push", j->token, j->body, NULL);
    return NULL;
}

static long slot_waits(srv_t *s) {
    resp_t r = metrics_scrape(s);
    const char *p = r.body ? strstr(r.body, "\ncasesync_push_slot_waits_total ") : NULL;
    return p ? atol(p + strlen("\ncasesync_push_slot_waits_total ")) : -1;
}

/* Was: a push authenticated just before its device was released (or
 * revoked) was applied after it, under the old owner. The writer now checks
 * the session again in the transaction that would apply it. */
TEST(push_authenticated_before_a_release_is_not_applied_after_it) {
    srv_t s;
    ASSERT(srv_start_config(&s, "{\"max_pushing\":1}") == 0);
    phone_t a, b, adm;
    ASSERT(std_phone(&a, &s, "off1", "dev-RA") == 0);
    ASSERT(std_phone(&b, &s, "off2", "dev-RB") == 0);
    ASSERT(std_phone(&adm, &s, "admin", "dev-RADM") == 0);
    long waits0 = slot_waits(&s);
    ASSERT(waits0 >= 0);

    /* A's push holds the only slot, its body not yet complete. */
    slow_push_t sp = {.s = &s, .token = a.token,
                      .body = push_body("dev-RA", 1, changes(ch_create("01JDRACEA000000001", "general", NULL)))};
    ASSERT(slow_push_start(&sp) == 0);
    /* B's push is authenticated and waits for the slot. */
    push_job_arg_t j = {.s = &s, .token = b.token,
                        .body = push_body("dev-RB", 1, changes(ch_create("01JDRACEB000000001", "general", NULL)))};
    pthread_t th;
    ASSERT(pthread_create(&th, NULL, push_thread, &j) == 0);
    long waits = waits0;
    for (int i = 0; i < 400 && waits <= waits0; i++) { /* at most ~20 s on a loaded machine */
        sleep_ms(50);
        waits = slot_waits(&s);
    }
    ASSERT_MSG(waits > waits0, "B's push never waited for the slot");
    /* Meanwhile the admin releases B's phone (it changes hands). */
    resp_t r = http(&s, "POST", "/v1/admin/devices/dev-RB/release", adm.token, "{}", NULL);
    ASSERT_STATUS(r, 200);
    /* A finishes; B gets the slot, and is refused: its session ended. */
    ASSERT(write(sp.fd, sp.body + strlen(sp.body) - 1, 1) == 1);
    pthread_join(th, NULL);
    close(sp.fd);
    ASSERT_ERROR(j.r, 401, "unauthenticated");
    r = phone_get(&adm, "/v1/cases/01JDRACEB000000001");
    ASSERT_STATUS(r, 404);
}
