/* identity.c -- users, passwords, bearer tokens and devices: login, logout,
 * authentication of every request, and the admin's user management.
 *
 * Passwords are stored as argon2id PHC strings ("$argon2id$v=19$m=..,t=..,p=..$
 * SALT$HASH", libargon2); PBKDF2-HMAC-SHA256 strings of earlier versions
 * ("pbkdf2-sha256$ITER$SALTHEX$HASHHEX") still verify and are replaced by
 * argon2id on the next successful login, as are argon2id hashes below the
 * configured cost. Tokens are stored only as the SHA-256 hex of the token,
 * with the user's and the device's epochs of their login. The slow hashing
 * always runs in the calling thread, holding one of cfg.max_hashing slots,
 * before the write job is queued: the writer is shared by every request and
 * must never wait on it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <argon2.h>
#include <time.h>

#include "sync/valcodec.h"
#include "sync/engine.h"

/* ---- limits and constants --------------------------------------------------- */

/* The protocol's maxima, capped by what sync_principal_t can hold (so that a
 * principal never carries a truncated name). */
#define PRINCIPAL_CAP(member, spec)                                                               \
    (sizeof(((sync_principal_t *)0)->member) - 1 < (size_t)(spec)                                 \
         ? sizeof(((sync_principal_t *)0)->member) - 1                                            \
         : (size_t)(spec))
#define USERNAME_MAX PRINCIPAL_CAP(username, 64)
#define UNIT_MAX PRINCIPAL_CAP(unit, 64)
#define DEVICE_ID_MAX PRINCIPAL_CAP(device_id, 80)
#define USER_ID_MAX (sizeof(((sync_principal_t *)0)->user_id) - 1)

#define PASSWORD_MIN 8
#define PASSWORD_MAX 256
#define USER_NAME_MAX 128    /* display name, bytes */
#define DEVICE_NAME_MAX 128  /* bytes */
#define APP_VERSION_MAX 64   /* bytes */
#define GRID_TEXT_MAX 256 /* bytes of one grid as typed on the command line */
#define GRIDS_MAX 512        /* grids per user */
#define GRANTS_LOG_KEEP 32   /* entries of grants_log kept per user */

#define PW_SCHEME "pbkdf2-sha256"
#define PW_SALT_BYTES 16
#define PW_HASH_BYTES 32
#define PW_SALT_MAX_BYTES 64          /* accepted in a stored hash */
#define PW_ITERATIONS_MAX 100000000L  /* a stored count above this is corrupt */
#define PW_HASH_TEXT_MAX 192
#define PW_ARGON2_PREFIX "$argon2id$v=19$"
#define PW_ARGON2_T_MAX 100
#define PW_ARGON2_M_MAX (4L * 1024 * 1024) /* KiB: 4 GiB */
#define PW_ARGON2_LANES_MAX 16

/* Hashing slots (hash_slot_take): how long a login waits for one, how many
 * may wait per slot, and the Retry-After of a login that got none
 * (HASH_RETRY_S plus 0..HASH_RETRY_SPREAD_S-1, so a storm's retries spread). */
#define HASH_SLOT_WAIT_MS 2000
#define HASH_WAITERS_FACTOR 4
#define HASH_RETRY_S 2
#define HASH_RETRY_SPREAD_S 4

#define TOKEN_BYTES 32
#define TOKEN_HEX_LEN (2 * TOKEN_BYTES)
#define TOKEN_MAX_LEN 512  /* longer bearer strings are not ours: refused unhashed */

/* Failed logins from one client address, across all usernames, per window:
 * this many times login_max_failures (20 by default). Phones of a whole
 * station behind one NAT may mistype that often; a password sprayed over the
 * user list from one address is stopped. */
#define LOGIN_ADDR_FACTOR 4
/* Logins from one address being checked at once. A station's phones logging
 * in together after a shift change are not failures; a parallel burst of
 * guesses from one address is at most this large before its failures count. */
#define LOGIN_ADDR_PENDING_MAX 64
#define MS_PER_DAY (24LL * 60 * 60 * 1000)

/* ---- small helpers ----------------------------------------------------------- */

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes exactly n hex chars (n even) into out. 0 or -1. */
static int hex_decode(const char *in, size_t n, unsigned char *out) {
    if (n % 2) return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex_value(in[i]), lo = hex_value(in[i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

/* Sets obj[key] = v, replacing an existing member. Takes v in every case
 * (deletes it on failure). 0 or -1 (v NULL or out of memory). */
static int obj_set(cJSON *obj, const char *key, cJSON *v) {
    if (!v) return -1;
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        return cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v) ? 0 : (cJSON_Delete(v), -1);
    return cJSON_AddItemToObject(obj, key, v) ? 0 : (cJSON_Delete(v), -1);
}

/* Copies obj[key] onto dst[key] (null when absent). 0 or -1. */
static int obj_copy(cJSON *dst, const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return obj_set(dst, key, v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
}

/* A new JSON string of the time ms in RFC 3339 (how records and devices keep
 * their times; only token expiry stays a number, for the comparison). */
static cJSON *time_item(int64_t ms) {
    char buf[32];
    return cJSON_CreateString(util_fmt_time(ms, buf));
}

static int is_true(const cJSON *obj, const char *key) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

/* Does s consist of 1..max chars each in [0-9A-Za-z] or in `extra`? */
static int valid_chars(const char *s, size_t max, const char *extra) {
    size_t n = 0;
    if (!s) return 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        int ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                 (c < 128 && c && strchr(extra, c));
        if (!ok || n >= max) return 0;
    }
    return n > 0;
}

/* 1..max bytes, no ASCII control characters. */
static int valid_text(const char *s, size_t max) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

static int valid_username(const char *s) { return valid_chars(s, USERNAME_MAX, "_.-"); }
static int valid_device_id(const char *s) { return valid_chars(s, DEVICE_ID_MAX, "_.:-"); }

/* Runs a write job whose failures are reported into jerr, and fills err either
 * from jerr (the job failed and said why) or from the code alone (the commit
 * failed, or the writer is shutting down). */
static int run_job(sync_t *s, store_job_fn fn, void *ctx, const sync_error_t *jerr, sync_error_t *err) {
    int rc = store_write(s->st, fn, ctx);
    if (rc == 0) return 0;
    if (jerr->code == rc) {
        if (err) *err = *jerr;
        return rc;
    }
    if (rc == SYNC_EBUSY && err) err->retry_after = 1;
    return sync_fail(err, rc, NULL, "%s", sync_strerror(rc));
}

/* Serialises v into *out. 0 or SYNC_ENOMEM. v stays the caller's. */
static int answer(const cJSON *v, char **out, sync_error_t *err) {
    *out = v ? util_json_print(v) : NULL;
    return *out ? 0 : sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
}

/* ---- passwords ------------------------------------------------------------------ */

/* Parses a PBKDF2 string "pbkdf2-sha256$ITER$SALTHEX$HASHHEX": 0 and the
 * parts, or -1 when it is not one (or its count is past PW_ITERATIONS_MAX). */
static int pbkdf2_parse(const char *stored, long *iter, unsigned char salt[PW_SALT_MAX_BYTES], size_t *salt_len,
                        unsigned char want[PW_HASH_BYTES]) {
    const char *p, *salt_hex, *hash_hex;
    char *end;
    if (!stored || strncmp(stored, PW_SCHEME "$", sizeof PW_SCHEME) != 0) return -1;
    p = stored + sizeof PW_SCHEME;
    if (*p < '0' || *p > '9') return -1;
    *iter = strtol(p, &end, 10);
    if (end == p || *end != '$' || *iter < 1 || *iter > PW_ITERATIONS_MAX) return -1;
    salt_hex = end + 1;
    hash_hex = strchr(salt_hex, '$');
    if (!hash_hex) return -1;
    size_t n = (size_t)(hash_hex - salt_hex);
    hash_hex++;
    if (n == 0 || n > 2 * PW_SALT_MAX_BYTES || hex_decode(salt_hex, n, salt) ||
        strlen(hash_hex) != 2 * PW_HASH_BYTES || hex_decode(hash_hex, 2 * PW_HASH_BYTES, want))
        return -1;
    *salt_len = n / 2;
    return 0;
}

/* Reads "<name>=<digits>" at *p into *v (1..max) and moves *p past it. 0 or -1. */
static int phc_param(const char **p, char name, long max, int *v) {
    const char *q = *p;
    long n = 0;
    if (q[0] != name || q[1] != '=' || q[2] < '0' || q[2] > '9') return -1;
    for (q += 2; *q >= '0' && *q <= '9'; q++)
        if ((n = n * 10 + (*q - '0')) > max) return -1;
    if (n < 1) return -1;
    *v = (int)n;
    *p = q;
    return 0;
}

/* The cost of an argon2id PHC string "$argon2id$v=19$m=M,t=T,p=P$SALT$HASH"
 * (the order libargon2 writes). 0, or -1 when it is not one or its cost is
 * outside what this server would ever configure (a corrupt record must not
 * make a login allocate gigabytes). */
static int argon2_parse(const char *stored, int *t, int *m, int *lanes) {
    const char *p;
    if (!stored || strncmp(stored, PW_ARGON2_PREFIX, sizeof PW_ARGON2_PREFIX - 1) != 0) return -1;
    p = stored + sizeof PW_ARGON2_PREFIX - 1;
    if (phc_param(&p, 'm', PW_ARGON2_M_MAX, m) || *p++ != ',' || phc_param(&p, 't', PW_ARGON2_T_MAX, t) ||
        *p++ != ',' || phc_param(&p, 'p', PW_ARGON2_LANES_MAX, lanes) || *p != '$')
        return -1;
    if (*m < 8 * *lanes) return -1; /* argon2's own minimum */
    return 0;
}

sync_pw_verdict_t sync_pw_verdict(const char *stored, int t_cost, int m_kib, int lanes) {
    unsigned char salt[PW_SALT_MAX_BYTES], want[PW_HASH_BYTES];
    size_t salt_len;
    long iter;
    int t, m, p;
    (void)lanes; /* more or fewer lanes is not a weaker hash: the work is t x m */
    if (argon2_parse(stored, &t, &m, &p) == 0) return t < t_cost || m < m_kib ? SYNC_PW_REHASH : SYNC_PW_CURRENT;
    if (pbkdf2_parse(stored, &iter, salt, &salt_len, want) == 0) return SYNC_PW_REHASH;
    return SYNC_PW_INVALID;
}

int sync_argon2_cost_parse(const char *text, sync_config_t *cfg) {
    int t = cfg->argon2_t_cost, m = cfg->argon2_m_kib, lanes = cfg->argon2_lanes;
    const char *p = text;
    if (!p || !*p) return -1;
    for (;;) {
        int *v = *p == 'm' ? &m : *p == 't' ? &t : *p == 'p' ? &lanes : NULL;
        long max = *p == 'm' ? PW_ARGON2_M_MAX : *p == 't' ? PW_ARGON2_T_MAX : PW_ARGON2_LANES_MAX;
        if (!v || phc_param(&p, *p, max, v)) return -1;
        if (!*p) break;
        if (*p++ != ',') return -1;
    }
    if (m < 8 * (lanes > 0 ? lanes : 1)) return -1;
    cfg->argon2_t_cost = t;
    cfg->argon2_m_kib = m;
    cfg->argon2_lanes = lanes;
    return 0;
}

/* Takes a hashing slot: at once when fewer than cfg.max_hashing hashes run,
 * else after waiting up to HASH_SLOT_WAIT_MS among at most
 * HASH_WAITERS_FACTOR x max_hashing waiters. 0, or SYNC_EBUSY (+retry_after)
 * without a slot: a login storm costs a few worker threads, never all. */
static int hash_slot_take(sync_t *s, sync_error_t *err) {
    int cap = s->cfg.max_hashing, rc = 0;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += HASH_SLOT_WAIT_MS / 1000;
    until.tv_nsec += (long)(HASH_SLOT_WAIT_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->hash_mu);
    if (s->hashing >= cap) {
        if (s->hash_waiting >= cap * HASH_WAITERS_FACTOR) {
            rc = -1;
        } else {
            s->hash_waiting++;
            while (s->hashing >= cap && rc == 0) rc = pthread_cond_timedwait(&s->hash_cv, &s->hash_mu, &until);
            s->hash_waiting--;
            rc = s->hashing < cap ? 0 : -1;
        }
    }
    if (rc == 0) s->hashing++;
    pthread_mutex_unlock(&s->hash_mu);
    if (rc == 0) return 0;
    uint64_t n = __atomic_add_fetch(&s->n_hash_busy, 1, __ATOMIC_RELAXED);
    rc = sync_fail(err, SYNC_EBUSY, NULL, "too many logins at once; try again in a moment");
    /* Spread the retries of a storm over a few seconds. */
    if (err) err->retry_after = HASH_RETRY_S + (int)(n % HASH_RETRY_SPREAD_S);
    return rc;
}

static void hash_slot_give(sync_t *s) {
    pthread_mutex_lock(&s->hash_mu);
    s->hashing--;
    pthread_cond_signal(&s->hash_cv);
    pthread_mutex_unlock(&s->hash_mu);
}

/* Hashes pw as argon2id at the configured cost with a fresh random salt into
 * out (a PHC string). 0 or SYNC_EIO (no randomness) / SYNC_ENOMEM. Slow by
 * design: call it outside any transaction, holding a hashing slot. */
static int password_hash(sync_t *s, const char *pw, char out[PW_HASH_TEXT_MAX]) {
    unsigned char salt[PW_SALT_BYTES];
    if (RAND_bytes(salt, sizeof salt) != 1) return SYNC_EIO;
    __atomic_add_fetch(&s->n_pw_hashes, 1, __ATOMIC_RELAXED);
    int rc = argon2id_hash_encoded((uint32_t)s->cfg.argon2_t_cost, (uint32_t)s->cfg.argon2_m_kib,
                                   (uint32_t)s->cfg.argon2_lanes, pw, strlen(pw), salt, sizeof salt,
                                   PW_HASH_BYTES, out, PW_HASH_TEXT_MAX);
    if (rc == ARGON2_OK) return 0;
    out[0] = 0;
    return rc == ARGON2_MEMORY_ALLOCATION_ERROR ? SYNC_ENOMEM : SYNC_EIO;
}

/* The same, taking and giving back a hashing slot around it. */
static int password_hash_slot(sync_t *s, const char *pw, char out[PW_HASH_TEXT_MAX], sync_error_t *err) {
    int rc = hash_slot_take(s, err);
    if (rc != 0) return rc;
    rc = password_hash(s, pw, out);
    hash_slot_give(s);
    return rc ? sync_fail(err, rc, NULL, "cannot hash the password") : 0;
}

/* 1 when pw matches the stored hash string (argon2id or PBKDF2, at the cost
 * the string states), 0 otherwise (also for a malformed or missing one). */
static int password_verify(sync_t *s, const char *stored, const char *pw) {
    unsigned char salt[PW_SALT_MAX_BYTES], want[PW_HASH_BYTES], got[PW_HASH_BYTES];
    size_t salt_len;
    long iter;
    int t, m, lanes, ok;
    if (argon2_parse(stored, &t, &m, &lanes) == 0) {
        __atomic_add_fetch(&s->n_pw_hashes, 1, __ATOMIC_RELAXED);
        return argon2id_verify(stored, pw, strlen(pw)) == ARGON2_OK;
    }
    if (pbkdf2_parse(stored, &iter, salt, &salt_len, want) != 0) return 0;
    __atomic_add_fetch(&s->n_pw_hashes, 1, __ATOMIC_RELAXED);
    if (PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, (int)salt_len, (int)iter, EVP_sha256(), sizeof got, got) != 1)
        return 0;
    ok = CRYPTO_memcmp(got, want, sizeof got) == 0;
    OPENSSL_cleanse(got, sizeof got);
    return ok;
}

/* The same work as a verification at the configured cost, for a user that
 * does not exist, so that the answer time does not tell which usernames are
 * real. */
static void password_dummy(sync_t *s, const char *pw) {
    static const unsigned char salt[PW_SALT_BYTES] = "casesync-nouser";
    unsigned char out[PW_HASH_BYTES];
    __atomic_add_fetch(&s->n_pw_hashes, 1, __ATOMIC_RELAXED);
    argon2id_hash_raw((uint32_t)s->cfg.argon2_t_cost, (uint32_t)s->cfg.argon2_m_kib, (uint32_t)s->cfg.argon2_lanes,
                      pw, strlen(pw), salt, sizeof salt, out, sizeof out);
    OPENSSL_cleanse(out, sizeof out);
}

static int check_password(const char *pw, sync_error_t *err) {
    size_t n = pw ? strlen(pw) : 0;
    if (!pw) return sync_fail(err, SYNC_EINVALID, "password", "password is required");
    if (n < PASSWORD_MIN || n > PASSWORD_MAX)
        return sync_fail(err, SYNC_EINVALID, "password", "password must be %d to %d bytes", PASSWORD_MIN,
                         PASSWORD_MAX);
    return 0;
}

/* ---- login failure limiter -------------------------------------------------------- */

/* The three keys an attempt counts under. */
enum { LK_PAIR, LK_ADDR, LK_ACCOUNT, LK_N };

/* The slot keys: SHA-256 hex of the kind and its parts, so that any length
 * fits: the client address and username (LK_PAIR), the address alone
 * (LK_ADDR), the username alone (LK_ACCOUNT). Client keys hold no newline,
 * so the parts never run into each other. */
static void limiter_keys(const char *client_key, const char *username, char keys[LK_N][65]) {
    const char *ck = client_key ? client_key : "";
    for (int k = 0; k < LK_N; k++) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        static const char *const kind[LK_N] = {"p\n", "a\n", "u\n"};
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        int bad = !c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1 || EVP_DigestUpdate(c, kind[k], 2) != 1 ||
                  (k != LK_ACCOUNT && (EVP_DigestUpdate(c, ck, strlen(ck)) != 1 || EVP_DigestUpdate(c, "\n", 1) != 1)) ||
                  (k != LK_ADDR && EVP_DigestUpdate(c, username, strlen(username)) != 1) ||
                  EVP_DigestFinal_ex(c, md, &mdlen) != 1;
        /* Without a digest, fall back to one shared slot per kind: still limited. */
        if (bad) memset(md, k, sizeof md);
        EVP_MD_CTX_free(c);
        util_hex(md, sizeof md, keys[k]);
    }
}

/* Failures that block a key of this kind. */
static int limiter_max(const sync_t *s, int kind) {
    return kind == LK_PAIR   ? s->cfg.login_max_failures
           : kind == LK_ADDR ? s->cfg.login_max_failures * LOGIN_ADDR_FACTOR
                             : s->cfg.login_account_max_failures;
}

static int64_t limiter_window_ms(const sync_t *s) { return (int64_t)s->cfg.login_window_s * 1000; }

/* Finds the slot of key, or (create) picks one to reuse other than those in
 * keep[0..nkeep): empty, then expired, then the oldest that is not blocking
 * anyone, then the oldest. Caller holds login_mu. */
static login_slot_t *limiter_slot(sync_t *s, const char *key, int max, int64_t now, int create,
                                  login_slot_t *const *keep, int nkeep) {
    login_slot_t *pick = NULL;
    int pick_rank = -1;
    int64_t window = limiter_window_ms(s);
    for (int i = 0; i < LOGIN_SLOTS; i++) {
        login_slot_t *sl = &s->login[i];
        if (sl->key[0] && strcmp(sl->key, key) == 0) {
            if (now - sl->first_ms >= window) sl->failures = 0;
            return sl;
        }
        int kept = 0;
        for (int k = 0; k < nkeep; k++) kept |= sl == keep[k];
        if (!create || kept) continue;
        int rank = !sl->key[0] ? 3 : sl->pending > 0 ? -1 : now - sl->first_ms >= window ? 2
                                   : sl->failures < sl->max ? 1 : 0;
        if (rank < 0) continue; /* attempts in progress keep their slot */
        if (rank > pick_rank || (rank == pick_rank && sl->first_ms < pick->first_ms)) {
            pick = sl;
            pick_rank = rank;
        }
    }
    if (pick) {
        snprintf(pick->key, sizeof pick->key, "%s", key);
        pick->failures = 0;
        pick->pending = 0;
        pick->max = max;
        pick->first_ms = now;
    }
    return pick;
}

/* Admits one attempt before the password is checked, or refuses it: 0, or
 * the seconds left until the client may try again.
 * - LK_PAIR (address and username) allows login_max_failures failures in
 *   the window, attempts in progress counted as failures (so a burst of
 *   parallel guesses at one user cannot pass the limit);
 * - LK_ADDR (the address, whatever the username) LOGIN_ADDR_FACTOR times
 *   that many failures, and at most LOGIN_ADDR_PENDING_MAX attempts in
 *   progress, so one address cannot spray guesses over the list of users
 *   either, while the phones of one station behind a NAT may all log in at
 *   once;
 * - LK_ACCOUNT (the username, from any address) login_account_max_failures,
 *   attempts in progress counted, so guesses from rotating addresses are
 *   slowed as well. The same holds for usernames that do not exist.
 * limiter_done() ends the attempt. */
static int limiter_reserve(sync_t *s, char keys[LK_N][65]) {
    int64_t now = util_now_ms();
    int wait_s = 0;
    login_slot_t *sl[LK_N] = {NULL};
    pthread_mutex_lock(&s->login_mu);
    for (int k = 0; k < LK_N; k++) {
        sl[k] = limiter_slot(s, keys[k], limiter_max(s, k), now, 1, sl, k);
        if (!sl[k]) {
            /* Every slot is in use by attempts in progress: a flood. */
            pthread_mutex_unlock(&s->login_mu);
            return 1;
        }
    }
    login_slot_t *full = NULL;
    if (sl[LK_PAIR]->failures + sl[LK_PAIR]->pending >= sl[LK_PAIR]->max)
        full = sl[LK_PAIR];
    else if (sl[LK_ACCOUNT]->failures + sl[LK_ACCOUNT]->pending >= sl[LK_ACCOUNT]->max)
        full = sl[LK_ACCOUNT];
    else if (sl[LK_ADDR]->failures >= sl[LK_ADDR]->max || sl[LK_ADDR]->pending >= LOGIN_ADDR_PENDING_MAX)
        full = sl[LK_ADDR];
    if (full) {
        int64_t left = full->failures ? full->first_ms + limiter_window_ms(s) - now : 1000;
        wait_s = (int)((left + 999) / 1000);
        if (wait_s < 1) wait_s = 1;
    } else {
        for (int k = 0; k < LK_N; k++) sl[k]->pending++;
    }
    pthread_mutex_unlock(&s->login_mu);
    return wait_s;
}

static void slot_fail(login_slot_t *sl, int64_t now) {
    if (sl->failures == 0) sl->first_ms = now;
    sl->failures++;
}

/* Ends an attempt limiter_reserve() admitted. A right password forgets the
 * failures of LK_PAIR (this client and username); those of the address and
 * of the account stand, so a valid login between guesses resets nothing an
 * attacker could use. A wrong one counts under all three keys. */
static void limiter_done(sync_t *s, char keys[LK_N][65], int ok /* 1, 0, -1: neither */) {
    int64_t now = util_now_ms();
    pthread_mutex_lock(&s->login_mu);
    for (int k = 0; k < LK_N; k++) {
        login_slot_t *sl = limiter_slot(s, keys[k], 0, now, 0, NULL, 0);
        if (!sl) continue;
        if (sl->pending > 0) sl->pending--;
        if (ok > 0 && k == LK_PAIR) {
            if (!sl->pending) memset(sl, 0, sizeof *sl);
            else sl->failures = 0;
        } else if (ok == 0) {
            slot_fail(sl, now);
        }
    }
    pthread_mutex_unlock(&s->login_mu);
}

/* ---- user objects ------------------------------------------------------------------ */

/* The user as the API shows it: {"id","username","name","role","unit","grids",
 * "disabled"}, or with brief set the login form {"id","name","role","unit","grids"}.
 * Never the password hash nor the grants log. NULL on OOM; caller owns. */
static cJSON *user_public(const cJSON *u, int brief) {
    cJSON *o = cJSON_CreateObject();
    const cJSON *grids = cJSON_GetObjectItemCaseSensitive(u, "grids");
    if (!o) return NULL;
    if (obj_copy(o, u, "id") || (!brief && obj_copy(o, u, "username")) || obj_copy(o, u, "name") ||
        obj_copy(o, u, "role") || obj_copy(o, u, "unit") ||
        obj_set(o, "grids", cJSON_IsArray(grids) ? cJSON_Duplicate(grids, 1) : cJSON_CreateArray()) ||
        (!brief && obj_set(o, "disabled", cJSON_CreateBool(is_true(u, "disabled"))))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The device as /v1/me shows it: the stored record, with any time still kept
 * as a number of ms (members named *_at and last_seen) in RFC 3339. NULL on OOM. */
static cJSON *device_public(const cJSON *d) {
    cJSON *o = cJSON_CreateObject();
    char buf[32];
    if (!o) return NULL;
    for (const cJSON *m = d ? d->child : NULL; m; m = m->next) {
        size_t n = strlen(m->string);
        int is_time = (n > 3 && strcmp(m->string + n - 3, "_at") == 0) || strcmp(m->string, "last_seen") == 0;
        cJSON *v = is_time && cJSON_IsNumber(m) ? cJSON_CreateString(util_fmt_time((int64_t)m->valuedouble, buf))
                                               : cJSON_Duplicate(m, 1);
        if (!v || !cJSON_AddItemToObject(o, m->string, v)) {
            cJSON_Delete(v);
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

/* One grants_log entry {"v","role","unit","grids"} of the user's current grants. */
static cJSON *grants_entry(const cJSON *u, int64_t v) {
    cJSON *e = cJSON_CreateObject();
    if (!e || obj_set(e, "v", cJSON_CreateNumber((double)v)) || obj_copy(e, u, "role") ||
        obj_copy(e, u, "unit") || obj_copy(e, u, "grids")) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

/* Validated input of a user create or update. Pointers borrow from the
 * request; grids is owned (a validated copy) and freed by input_clear(). */
typedef struct user_input {
    const char *username, *password, *name, *role, *unit;
    cJSON *grids;
    int disabled; /* -1: not given */
} user_input_t;

static void input_clear(user_input_t *in) {
    cJSON_Delete(in->grids);
    in->grids = NULL;
}

static int check_role(const char *role, sync_error_t *err) {
    if (!role || schema_role_parse(role) == ROLE_NONE)
        return sync_fail(err, SYNC_EINVALID, "role",
                         "role must be one of auxiliary, officer, legal_reviewer, supervisor, admin");
    return 0;
}

static int check_unit(const char *unit, sync_error_t *err) {
    if (!valid_text(unit, UNIT_MAX))
        return sync_fail(err, SYNC_EINVALID, "unit", "unit must be 1 to %zu bytes without control characters",
                         UNIT_MAX);
    return 0;
}

static int check_name(const char *name, sync_error_t *err) {
    if (!valid_text(name, USER_NAME_MAX))
        return sync_fail(err, SYNC_EINVALID, "name", "name must be 1 to %d bytes without control characters",
                         USER_NAME_MAX);
    return 0;
}

/* Appends grid g to arr unless already there. A grid must pass the value
 * rules of the schema's grid field (schema_check_value), the same rules as a
 * case's grid. 0, or a SYNC_E* code. */
static int grids_add(const schema_t *sc, cJSON *arr, const char *g, int index, sync_error_t *err) {
    char field[32];
    schema_err_t serr;
    snprintf(field, sizeof field, "grids[%d]", index);
    cJSON *probe = cJSON_CreateString(g);
    if (!probe) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    int bad = schema_check_value(sc, "grid", probe, &serr);
    cJSON_Delete(probe);
    if (bad == SCHEMA_E_NOMEM) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    if (bad) return sync_fail(err, SYNC_EINVALID, field, "not a grid code: %s", serr.message);
    for (const cJSON *e = arr->child; e; e = e->next)
        if (strcmp(e->valuestring, g) == 0) return 0;
    if (cJSON_GetArraySize(arr) >= GRIDS_MAX)
        return sync_fail(err, SYNC_EINVALID, "grids", "at most %d grids", GRIDS_MAX);
    cJSON *v = cJSON_CreateString(g);
    if (!v || !cJSON_AddItemToArray(arr, v)) {
        cJSON_Delete(v);
        return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    }
    return 0;
}

/* grids from JSON: an array of grid code strings -> *out, a deduplicated copy. */
static int grids_from_json(const schema_t *sc, const cJSON *v, cJSON **out, sync_error_t *err) {
    int rc, i = 0;
    *out = NULL;
    if (!cJSON_IsArray(v)) return sync_fail(err, SYNC_EINVALID, "grids", "grids must be an array of strings");
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e)) {
            char field[32];
            snprintf(field, sizeof field, "grids[%d]", i);
            rc = sync_fail(err, SYNC_EINVALID, field, "a grid must be a string");
            goto fail;
        }
        if ((rc = grids_add(sc, arr, e->valuestring, i, err)) != 0) goto fail;
    }
    *out = arr;
    return 0;
fail:
    cJSON_Delete(arr);
    return rc;
}

/* grids from the command line: "G1,G2" (NULL or "" for none) -> *out. */
static int grids_from_csv(const schema_t *sc, const char *csv, cJSON **out, sync_error_t *err) {
    char item[GRID_TEXT_MAX + 2];
    int rc, i = 0;
    *out = NULL;
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    for (const char *p = csv; p && *p; i++) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *next = end ? end + 1 : p + n;
        while (n && *p == ' ') p++, n--; /* "G1, G2" as typed by a person */
        while (n && p[n - 1] == ' ') n--;
        /* Too long to be a grid: keep just enough to fail the check. */
        snprintf(item, sizeof item, "%.*s", (int)(n < sizeof item - 1 ? n : sizeof item - 1), p);
        if ((rc = grids_add(sc, arr, item, i, err)) != 0) goto fail;
        p = next;
        if (end && !*p) {
            rc = sync_fail(err, SYNC_EINVALID, "grids", "empty grid after the last comma");
            goto fail;
        }
    }
    *out = arr;
    return 0;
fail:
    cJSON_Delete(arr);
    return rc;
}

/* Reads one string member for an input: absent -> NULL (0), not a string -> error. */
static int input_str(const cJSON *body, const char *key, const char **out, sync_error_t *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);
    *out = NULL;
    if (!v) return 0;
    if (!cJSON_IsString(v)) return sync_fail(err, SYNC_EINVALID, key, "%s must be a string", key);
    *out = v->valuestring;
    return 0;
}

/* Refuses any member of body not in the NULL-terminated list allowed. */
static int input_known_keys(const cJSON *body, const char *const *allowed, sync_error_t *err) {
    for (const cJSON *m = body->child; m; m = m->next) {
        int known = 0;
        for (const char *const *a = allowed; *a && !known; a++) known = strcmp(m->string, *a) == 0;
        if (!known) return sync_fail(err, SYNC_EINVALID, m->string, "unknown member \"%s\"", m->string);
    }
    return 0;
}

/* Parses and validates the body of an admin create (all = 1) or update (all =
 * 0: every member optional). On failure in is cleared. */
static int input_parse(const schema_t *sc, const cJSON *body, int all, user_input_t *in, sync_error_t *err) {
    static const char *const create_keys[] = {"username", "password", "name", "role", "unit", "grids", NULL};
    static const char *const update_keys[] = {"password", "name", "role", "unit", "grids", "disabled", NULL};
    int rc;
    memset(in, 0, sizeof *in);
    in->disabled = -1;
    if (!cJSON_IsObject(body)) return sync_fail(err, SYNC_EINVALID, NULL, "the body must be a JSON object");
    if ((rc = input_known_keys(body, all ? create_keys : update_keys, err)) != 0) goto fail;
    if ((rc = input_str(body, "username", &in->username, err)) || (rc = input_str(body, "password", &in->password, err)) ||
        (rc = input_str(body, "name", &in->name, err)) || (rc = input_str(body, "role", &in->role, err)) ||
        (rc = input_str(body, "unit", &in->unit, err)))
        goto fail;
    if (all && !valid_username(in->username)) {
        rc = sync_fail(err, SYNC_EINVALID, "username", "username must be 1 to %zu of A-Z a-z 0-9 _ . -",
                       USERNAME_MAX);
        goto fail;
    }
    if ((all || in->password) && (rc = check_password(in->password, err))) goto fail;
    if ((all || in->role) && (rc = check_role(in->role, err))) goto fail;
    if ((all || in->unit) && (rc = check_unit(in->unit, err))) goto fail;
    if (in->name && (rc = check_name(in->name, err))) goto fail;
    const cJSON *grids = cJSON_GetObjectItemCaseSensitive(body, "grids");
    if (grids && (rc = grids_from_json(sc, grids, &in->grids, err))) goto fail;
    const cJSON *dis = cJSON_GetObjectItemCaseSensitive(body, "disabled");
    if (dis) {
        if (!cJSON_IsBool(dis)) {
            rc = sync_fail(err, SYNC_EINVALID, "disabled", "disabled must be true or false");
            goto fail;
        }
        in->disabled = cJSON_IsTrue(dis);
    }
    return 0;
fail:
    input_clear(in);
    return rc;
}

static int require_admin(const sync_principal_t *p, sync_error_t *err) {
    if (!p || p->role != ROLE_ADMIN) return sync_fail(err, SYNC_EFORBIDDEN, NULL, "only an admin may manage users");
    return 0;
}

/* ---- create ------------------------------------------------------------------------- */

typedef struct create_job {
    sync_t *s;
    const user_input_t *in;
    const char *pw_hash;
    cJSON *user;  /* out: the stored user */
    sync_error_t jerr;
} create_job_t;

static int create_job_fn(MDB_txn *txn, void *arg) {
    create_job_t *c = arg;
    const store_dbs_t *dbs = c->s->dbs;
    const user_input_t *in = c->in;
    char *existing = NULL, id[32];
    int64_t now = util_now_ms();
    cJSON *u = NULL, *log = NULL, *e = NULL;
    int rc;

    cJSON_Delete(c->user);
    c->user = NULL;
    rc = store_get_raw(txn, dbs->usernames, in->username, strlen(in->username), &existing, NULL);
    free(existing);
    if (rc == 0) return sync_fail(&c->jerr, SYNC_ECONFLICT, "username", "username %s is taken", in->username);
    if (rc != SYNC_ENOTFOUND) return sync_fail(&c->jerr, rc, NULL, "reading usernames: %s", sync_strerror(rc));
    uint64_t n = store_meta_next(txn, dbs, "user_id");
    if (n == 0) return sync_fail(&c->jerr, SYNC_EIO, NULL, "cannot allocate a user id");
    snprintf(id, sizeof id, "u%llu", (unsigned long long)n);

    u = cJSON_CreateObject();
    if (!u || obj_set(u, "id", cJSON_CreateString(id)) || obj_set(u, "username", cJSON_CreateString(in->username)) ||
        obj_set(u, "name", cJSON_CreateString(in->name ? in->name : in->username)) ||
        obj_set(u, "role", cJSON_CreateString(in->role)) || obj_set(u, "unit", cJSON_CreateString(in->unit)) ||
        obj_set(u, "grids", in->grids ? cJSON_Duplicate(in->grids, 1) : cJSON_CreateArray()) ||
        obj_set(u, "disabled", cJSON_CreateBool(0)) || obj_set(u, "grants_version", cJSON_CreateNumber(1)))
        goto oom;
    log = cJSON_CreateArray();
    e = grants_entry(u, 1);
    if (!log || !e) {
        cJSON_Delete(e);
        goto oom;
    }
    cJSON_AddItemToArray(log, e);
    rc = obj_set(u, "grants_log", log); /* takes log either way */
    log = NULL;
    if (rc) goto oom;
    if (obj_set(u, "pw", cJSON_CreateString(c->pw_hash)) || obj_set(u, "created_at", time_item(now)))
        goto oom;
    if ((rc = store_put_json(txn, dbs->users, id, strlen(id), u)) != 0 ||
        (rc = store_put_raw(txn, dbs->usernames, in->username, strlen(in->username), id, strlen(id))) != 0) {
        rc = sync_fail(&c->jerr, rc, NULL, "storing the user: %s", sync_strerror(rc));
        goto fail;
    }
    c->user = u;
    return 0;
oom:
    rc = sync_fail(&c->jerr, SYNC_ENOMEM, NULL, "out of memory");
fail:
    cJSON_Delete(log);
    cJSON_Delete(u);
    return rc;
}

/* Creates the user of a validated input; *out is the public user JSON. */
static int user_create(sync_t *s, const user_input_t *in, char **out, sync_error_t *err) {
    char pw_hash[PW_HASH_TEXT_MAX];
    create_job_t job = {.s = s, .in = in, .pw_hash = pw_hash};
    cJSON *pub = NULL;
    int rc = password_hash_slot(s, in->password, pw_hash, err);
    if (rc != 0) return rc;
    if ((rc = run_job(s, create_job_fn, &job, &job.jerr, err)) != 0) goto done;
    if (!(pub = user_public(job.user, 0))) {
        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        goto done;
    }
    rc = answer(pub, out, err);
done:
    OPENSSL_cleanse(pw_hash, sizeof pw_hash);
    cJSON_Delete(job.user);
    cJSON_Delete(pub);
    return rc;
}

int sync_user_create(sync_t *s, const sync_principal_t *p, const cJSON *body, char **out, sync_error_t *err) {
    user_input_t in;
    int rc;
    *out = NULL;
    if ((rc = require_admin(p, err)) != 0) return rc;
    if ((rc = input_parse(s->schema, body, 1, &in, err)) != 0) return rc;
    rc = user_create(s, &in, out, err);
    input_clear(&in);
    return rc;
}

int sync_user_add(sync_t *s, const char *username, const char *password, const char *role, const char *unit,
                  const char *grids_csv, const char *name, char **out, sync_error_t *err) {
    user_input_t in = {.username = username, .password = password, .name = name, .role = role, .unit = unit,
                       .disabled = -1};
    int rc;
    *out = NULL;
    if (!valid_username(username))
        return sync_fail(err, SYNC_EINVALID, "username", "username must be 1 to %zu of A-Z a-z 0-9 _ . -",
                         USERNAME_MAX);
    if ((rc = check_password(password, err)) || (rc = check_role(role, err)) || (rc = check_unit(unit, err)) ||
        (name && (rc = check_name(name, err))) || (rc = grids_from_csv(s->schema, grids_csv, &in.grids, err)))
        return rc;
    rc = user_create(s, &in, out, err);
    input_clear(&in);
    return rc;
}

/* ---- update ------------------------------------------------------------------------- */

typedef struct update_job {
    sync_t *s;
    const char *user_id;
    const user_input_t *in;
    const char *pw_hash; /* NULL: password unchanged */
    cJSON *user;         /* out */
    sync_error_t jerr;
} update_job_t;

/* Bumps grants_version and logs the user's grants, keeping the last entries. */
static int grants_bump(cJSON *u) {
    int64_t v = 0;
    cJSON *log = cJSON_GetObjectItemCaseSensitive(u, "grants_log"), *e;
    if (util_json_int(u, "grants_version", &v) != 0 || v < 1) v = 1;
    v++;
    if (obj_set(u, "grants_version", cJSON_CreateNumber((double)v))) return -1;
    if (!cJSON_IsArray(log)) {
        if (obj_set(u, "grants_log", cJSON_CreateArray())) return -1;
        log = cJSON_GetObjectItemCaseSensitive(u, "grants_log");
    }
    if (!(e = grants_entry(u, v)) || !cJSON_AddItemToArray(log, e)) {
        cJSON_Delete(e);
        return -1;
    }
    while (cJSON_GetArraySize(log) > GRANTS_LOG_KEEP) cJSON_DeleteItemFromArray(log, 0);
    return 0;
}

/* Ends every token the user holds: each carries the token_epoch of its
 * login, and sync_authenticate() refuses one that is not the user's current. */
static int token_epoch_bump(cJSON *u) {
    int64_t e = 0;
    if (util_json_int(u, "token_epoch", &e) != 0 || e < 0) e = 0;
    return obj_set(u, "token_epoch", cJSON_CreateNumber((double)(e + 1)));
}

static int update_job_fn(MDB_txn *txn, void *arg) {
    update_job_t *c = arg;
    const store_dbs_t *dbs = c->s->dbs;
    const user_input_t *in = c->in;
    cJSON *u = NULL;
    int rc, grants_changed = 0;

    cJSON_Delete(c->user);
    c->user = NULL;
    rc = store_get_json(txn, dbs->users, c->user_id, strlen(c->user_id), &u);
    if (rc == SYNC_ENOTFOUND) return sync_fail(&c->jerr, rc, NULL, "no user %s", c->user_id);
    if (rc != 0) return sync_fail(&c->jerr, rc, NULL, "reading the user: %s", sync_strerror(rc));

    const char *role = util_json_str(u, "role"), *unit = util_json_str(u, "unit");
    const cJSON *grids = cJSON_GetObjectItemCaseSensitive(u, "grids");
    grants_changed = (in->role && (!role || strcmp(role, in->role) != 0)) ||
                     (in->unit && (!unit || strcmp(unit, in->unit) != 0)) ||
                     (in->grids && !cJSON_Compare(grids, in->grids, 1));
    if ((in->role && obj_set(u, "role", cJSON_CreateString(in->role))) ||
        (in->unit && obj_set(u, "unit", cJSON_CreateString(in->unit))) ||
        (in->grids && obj_set(u, "grids", cJSON_Duplicate(in->grids, 1))) ||
        (in->name && obj_set(u, "name", cJSON_CreateString(in->name))) ||
        (in->disabled >= 0 && obj_set(u, "disabled", cJSON_CreateBool(in->disabled))) ||
        (c->pw_hash && obj_set(u, "pw", cJSON_CreateString(c->pw_hash))) || (grants_changed && grants_bump(u)) ||
        ((c->pw_hash || in->disabled == 1) && token_epoch_bump(u)) ||
        obj_set(u, "updated_at", time_item(util_now_ms()))) {
        rc = sync_fail(&c->jerr, SYNC_ENOMEM, NULL, "out of memory");
        goto fail;
    }
    if ((rc = store_put_json(txn, dbs->users, c->user_id, strlen(c->user_id), u)) != 0) {
        rc = sync_fail(&c->jerr, rc, NULL, "storing the user: %s", sync_strerror(rc));
        goto fail;
    }
    c->user = u;
    return 0;
fail:
    cJSON_Delete(u);
    return rc;
}

int sync_user_update(sync_t *s, const sync_principal_t *p, const char *user_id, const cJSON *body, char **out,
                     sync_error_t *err) {
    char pw_hash[PW_HASH_TEXT_MAX] = "";
    user_input_t in;
    update_job_t job = {.s = s, .user_id = user_id, .in = &in};
    cJSON *pub = NULL;
    int rc;
    *out = NULL;
    if ((rc = require_admin(p, err)) != 0) return rc;
    if (!user_id || !*user_id || strlen(user_id) > USER_ID_MAX)
        return sync_fail(err, SYNC_ENOTFOUND, NULL, "no such user");
    if ((rc = input_parse(s->schema, body, 0, &in, err)) != 0) return rc;
    if (in.password) {
        if ((rc = password_hash_slot(s, in.password, pw_hash, err)) != 0) goto done;
        job.pw_hash = pw_hash;
    }
    if ((rc = run_job(s, update_job_fn, &job, &job.jerr, err)) != 0) goto done;
    if (!(pub = user_public(job.user, 0))) {
        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        goto done;
    }
    rc = answer(pub, out, err);
done:
    OPENSSL_cleanse(pw_hash, sizeof pw_hash);
    cJSON_Delete(job.user);
    cJSON_Delete(pub);
    input_clear(&in);
    return rc;
}

/* The id of username into id[USER_ID_MAX + 1]. 0, SYNC_ENOTFOUND or an error. */
static int user_id_of(sync_t *s, const char *username, char *id, sync_error_t *err) {
    MDB_txn *txn = NULL;
    char *uid = NULL;
    size_t n = 0;
    int rc;
    if (!valid_username(username)) return sync_fail(err, SYNC_ENOTFOUND, "username", "no user %s", username ? username : "");
    if ((rc = store_read_begin(s->st, &txn)) != 0) return sync_fail(err, rc, NULL, "cannot read the store");
    rc = store_get_raw(txn, s->dbs->usernames, username, strlen(username), &uid, &n);
    store_read_end(txn);
    if (rc == SYNC_ENOTFOUND) return sync_fail(err, rc, "username", "no user %s", username);
    if (rc != 0) return sync_fail(err, rc, NULL, "reading the user: %s", sync_strerror(rc));
    if (n == 0 || n > USER_ID_MAX) {
        free(uid);
        return sync_fail(err, SYNC_EIO, NULL, "user %s is stored without a valid id", username);
    }
    memcpy(id, uid, n);
    id[n] = 0;
    free(uid);
    return 0;
}

/* An update of the command line: password (NULL: unchanged) and disabled (-1: unchanged). */
static int user_update_cli(sync_t *s, const char *username, const char *password, int disabled, sync_error_t *err) {
    char id[USER_ID_MAX + 1], pw_hash[PW_HASH_TEXT_MAX] = "";
    user_input_t in = {.password = password, .disabled = disabled};
    update_job_t job = {.s = s, .user_id = id, .in = &in};
    int rc;
    if (password && (rc = check_password(password, err)) != 0) return rc;
    if ((rc = user_id_of(s, username, id, err)) != 0) return rc;
    if (password) {
        if ((rc = password_hash_slot(s, password, pw_hash, err)) != 0) return rc;
        job.pw_hash = pw_hash;
    }
    rc = run_job(s, update_job_fn, &job, &job.jerr, err);
    OPENSSL_cleanse(pw_hash, sizeof pw_hash);
    cJSON_Delete(job.user);
    return rc;
}

int sync_user_passwd(sync_t *s, const char *username, const char *password, sync_error_t *err) {
    if (!password) return sync_fail(err, SYNC_EINVALID, "password", "password is required");
    return user_update_cli(s, username, password, -1, err);
}

int sync_user_set_disabled(sync_t *s, const char *username, int disabled, sync_error_t *err) {
    return user_update_cli(s, username, NULL, disabled ? 1 : 0, err);
}

/* ---- list --------------------------------------------------------------------------- */

/* {"items":[public users]} in the key order of the users db. */
static int user_list(sync_t *s, char **out, sync_error_t *err) {
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    cJSON *res = cJSON_CreateObject(), *items = cJSON_CreateArray();
    int rc, mrc;
    *out = NULL;
    if (!res || !items || !cJSON_AddItemToObject(res, "items", items)) {
        cJSON_Delete(items);
        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        goto done;
    }
    if ((rc = store_read_begin(s->st, &txn)) != 0) {
        rc = sync_fail(err, rc, NULL, "cannot read the store");
        goto done;
    }
    if ((mrc = mdb_cursor_open(txn, s->dbs->users, &cur)) != 0) {
        rc = sync_fail(err, SYNC_EIO, NULL, "cannot read the users: %s", mdb_strerror(mrc));
        goto done;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        cJSON *u = valcodec_decode(v.mv_data, v.mv_size);
        cJSON *pub = u ? user_public(u, 0) : NULL;
        cJSON_Delete(u);
        if (!pub || !cJSON_AddItemToArray(items, pub)) {
            cJSON_Delete(pub);
            rc = sync_fail(err, u ? SYNC_ENOMEM : SYNC_EIO, NULL, "cannot read user %.*s", (int)k.mv_size,
                           (const char *)k.mv_data);
            goto done;
        }
    }
    if (mrc != MDB_NOTFOUND) {
        rc = sync_fail(err, SYNC_EIO, NULL, "reading the users: %s", mdb_strerror(mrc));
        goto done;
    }
    mdb_cursor_close(cur);
    cur = NULL;
    store_read_end(txn);
    txn = NULL;
    rc = answer(res, out, err);
done:
    if (cur) mdb_cursor_close(cur);
    store_read_end(txn);
    cJSON_Delete(res);
    return rc;
}

int sync_user_list(sync_t *s, const sync_principal_t *p, char **out, sync_error_t *err) {
    int rc;
    *out = NULL;
    if ((rc = require_admin(p, err)) != 0) return rc;
    return user_list(s, out, err);
}

int sync_user_list_all(sync_t *s, char **out, sync_error_t *err) { return user_list(s, out, err); }

/* ---- login -------------------------------------------------------------------------- */

typedef struct login_job {
    sync_t *s;
    const char *user_id;
    const char *pw_checked;  /* the hash the password was verified against */
    int64_t epoch_checked;   /* the user's token_epoch when it was read */
    const char *pw_new;      /* NULL, or the re-hash to store in place of pw_checked */
    const char *device_id, *device_name, *app_version;
    const char *token_hash;
    int64_t now, expires_at;
    cJSON *user;             /* out: the user as stored */
    int64_t next_seq;        /* out: the device's next changeset seq */
    sync_error_t jerr;
} login_job_t;

/* A non-negative integer member, 0 when absent (records older than it). */
static int64_t epoch_of(const cJSON *obj, const char *key) {
    int64_t v = 0;
    return util_json_int(obj, key, &v) == 0 && v > 0 ? v : 0;
}

static int login_job_fn(MDB_txn *txn, void *arg) {
    login_job_t *c = arg;
    const store_dbs_t *dbs = c->s->dbs;
    cJSON *u = NULL, *d = NULL, *t = NULL;
    int64_t next = 1;
    int rc;

    cJSON_Delete(c->user);
    c->user = NULL;
    /* The user may have changed since the password was checked outside: a
     * new password or a disable bumps token_epoch (a re-hash by another
     * login of the same password does not, and fails nobody). */
    rc = store_get_json(txn, dbs->users, c->user_id, strlen(c->user_id), &u);
    if (rc == SYNC_ENOTFOUND ||
        (rc == 0 && (is_true(u, "disabled") || !util_json_str(u, "pw") || epoch_of(u, "token_epoch") != c->epoch_checked))) {
        rc = sync_fail(&c->jerr, SYNC_ECREDS, NULL, "invalid username or password");
        goto fail;
    }
    if (rc != 0) {
        rc = sync_fail(&c->jerr, rc, NULL, "reading the user: %s", sync_strerror(rc));
        goto fail;
    }

    rc = store_get_json(txn, dbs->devices, c->device_id, strlen(c->device_id), &d);
    if (rc == SYNC_ENOTFOUND) {
        if (!(d = cJSON_CreateObject()) || obj_set(d, "created_at", time_item(c->now)) ||
            obj_set(d, "revoked", cJSON_CreateBool(0)) || obj_set(d, "wipe", cJSON_CreateBool(0)) ||
            obj_set(d, "next_changeset_seq", cJSON_CreateNumber(1)))
            goto oom;
    } else if (rc != 0) {
        rc = sync_fail(&c->jerr, rc, NULL, "reading the device: %s", sync_strerror(rc));
        goto fail;
    } else {
        /* Ownership before revocation: another user's login must learn
         * nothing of the device, least of all be told to wipe. */
        const char *owner = util_json_str(d, "user_id");
        if (owner && strcmp(owner, c->user_id) != 0) {
            rc = sync_fail(&c->jerr, SYNC_EDEVINUSE, "device_id",
                           "this device is in use by another user; an admin releases it when a phone changes hands");
            goto fail;
        }
        if (is_true(d, "revoked")) {
            rc = sync_fail(&c->jerr, SYNC_EREVOKED, NULL, "this device has been revoked");
            c->jerr.wipe = is_true(d, "wipe");
            goto fail;
        }
    }
    if (!util_json_str(d, "user_id") && obj_set(d, "bound_at", time_item(c->now))) goto oom;
    if (util_json_int(d, "next_changeset_seq", &next) != 0 || next < 1) next = 1;
    if (obj_set(d, "device_id", cJSON_CreateString(c->device_id)) ||
        obj_set(d, "user_id", cJSON_CreateString(c->user_id)) ||
        (c->device_name && obj_set(d, "name", cJSON_CreateString(c->device_name))) ||
        (!cJSON_GetObjectItemCaseSensitive(d, "name") && obj_set(d, "name", cJSON_CreateNull())) ||
        (c->app_version && obj_set(d, "app_version", cJSON_CreateString(c->app_version))) ||
        (!cJSON_GetObjectItemCaseSensitive(d, "app_version") && obj_set(d, "app_version", cJSON_CreateNull())) ||
        obj_set(d, "last_seen", time_item(c->now)) ||
        obj_set(d, "last_login_at", time_item(c->now)) ||
        (!cJSON_GetObjectItemCaseSensitive(d, "next_changeset_seq") &&
         obj_set(d, "next_changeset_seq", cJSON_CreateNumber((double)next))))
        goto oom;
    /* Only the hash verified is replaced; another login may have done it already. */
    if (c->pw_new && strcmp(util_json_str(u, "pw"), c->pw_checked) != 0) c->pw_new = NULL;
    if (c->pw_new && (obj_set(u, "pw", cJSON_CreateString(c->pw_new)) ||
                      obj_set(u, "pw_rehashed_at", time_item(c->now))))
        goto oom;

    /* The token names its user and device and the epochs it was issued in:
     * a password change or disable (user) or a release (device) ends it. */
    if (!(t = cJSON_CreateObject()) || obj_set(t, "user_id", cJSON_CreateString(c->user_id)) ||
        obj_set(t, "device_id", cJSON_CreateString(c->device_id)) ||
        obj_set(t, "user_epoch", cJSON_CreateNumber((double)epoch_of(u, "token_epoch"))) ||
        obj_set(t, "device_epoch", cJSON_CreateNumber((double)epoch_of(d, "epoch"))) ||
        obj_set(t, "expires_at", cJSON_CreateNumber((double)c->expires_at)) ||
        obj_set(t, "created_at", cJSON_CreateNumber((double)c->now)))
        goto oom;
    if ((rc = store_put_json(txn, dbs->devices, c->device_id, strlen(c->device_id), d)) != 0 ||
        (rc = store_put_json(txn, dbs->tokens, c->token_hash, strlen(c->token_hash), t)) != 0 ||
        (c->pw_new && (rc = store_put_json(txn, dbs->users, c->user_id, strlen(c->user_id), u)) != 0)) {
        rc = sync_fail(&c->jerr, rc, NULL, "storing the session: %s", sync_strerror(rc));
        goto fail;
    }
    c->user = u;
    c->next_seq = next;
    cJSON_Delete(d);
    cJSON_Delete(t);
    return 0;
oom:
    rc = sync_fail(&c->jerr, SYNC_ENOMEM, NULL, "out of memory");
fail:
    cJSON_Delete(u);
    cJSON_Delete(d);
    cJSON_Delete(t);
    return rc;
}

/* An optional string member of the login body: absent or null -> NULL. */
static int login_opt_str(const cJSON *body, const char *key, size_t max, const char **out, sync_error_t *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v) || !valid_text(v->valuestring, max))
        return sync_fail(err, SYNC_EINVALID, key, "%s must be a string of 1 to %zu bytes", key, max);
    *out = v->valuestring;
    return 0;
}

int sync_login(sync_t *s, const cJSON *body, const char *client_key, char **out, sync_error_t *err) {
    const char *username, *password, *device_id, *device_name, *app_version, *stored_pw = NULL;
    char keys[LK_N][65], token[TOKEN_HEX_LEN + 1], token_hash[65], expires[32];
    char pw_new[PW_HASH_TEXT_MAX] = "";
    login_job_t job = {.s = s};
    MDB_txn *txn = NULL;
    cJSON *user = NULL, *res = NULL, *ub = NULL;
    char *uid = NULL;
    int rc, wait_s, ok = 0, reserved = 0;
    sync_pw_verdict_t verdict = SYNC_PW_INVALID;
    *out = NULL;

    if (!cJSON_IsObject(body)) return sync_fail(err, SYNC_EINVALID, NULL, "the body must be a JSON object");
    if (!(username = util_json_str(body, "username")))
        return sync_fail(err, SYNC_EINVALID, "username", "username is required (a string)");
    if (!(password = util_json_str(body, "password")))
        return sync_fail(err, SYNC_EINVALID, "password", "password is required (a string)");
    device_id = util_json_str(body, "device_id");
    if (!valid_device_id(device_id))
        return sync_fail(err, SYNC_EINVALID, "device_id", "device_id must be 1 to %zu of A-Z a-z 0-9 _ . : -",
                         DEVICE_ID_MAX);
    if ((rc = login_opt_str(body, "device_name", DEVICE_NAME_MAX, &device_name, err)) ||
        (rc = login_opt_str(body, "app_version", APP_VERSION_MAX, &app_version, err)))
        return rc;

    limiter_keys(client_key, username, keys);
    if ((wait_s = limiter_reserve(s, keys)) > 0) {
        rc = sync_fail(err, SYNC_ERATE, NULL, "too many failed logins; try again in %d s", wait_s);
        if (err) err->retry_after = wait_s;
        return rc;
    }
    reserved = 1; /* until limiter_done() */

    /* Find the user (copied out), then leave the transaction before hashing. */
    if (valid_username(username)) {
        if ((rc = store_read_begin(s->st, &txn)) != 0) {
            rc = sync_fail(err, rc, NULL, "cannot read the store");
            goto done;
        }
        rc = store_get_raw(txn, s->dbs->usernames, username, strlen(username), &uid, NULL);
        if (rc == 0) rc = store_get_json(txn, s->dbs->users, uid, strlen(uid), &user);
        store_read_end(txn);
        if (rc != 0 && rc != SYNC_ENOTFOUND) {
            rc = sync_fail(err, rc, NULL, "reading the user: %s", sync_strerror(rc));
            goto done;
        }
    }
    stored_pw = user ? util_json_str(user, "pw") : NULL;
    size_t pwlen = strlen(password);
    if (pwlen > 0 && pwlen <= PASSWORD_MAX) {
        /* Known user or not, one hash at the configured cost: the answer
         * time does not tell which usernames exist. */
        if ((rc = hash_slot_take(s, err)) != 0) goto done;
        verdict = sync_pw_verdict(stored_pw, s->cfg.argon2_t_cost, s->cfg.argon2_m_kib, s->cfg.argon2_lanes);
        if (verdict != SYNC_PW_INVALID)
            ok = password_verify(s, stored_pw, password);
        else
            password_dummy(s, password);
        ok = ok && !is_true(user, "disabled");
        /* A weaker stored hash is replaced while the password is at hand. */
        if (ok && verdict == SYNC_PW_REHASH && password_hash(s, password, pw_new) != 0) pw_new[0] = 0;
        hash_slot_give(s);
    }
    /* else: can never match a password we accepted; nothing to hash */
    limiter_done(s, keys, ok);
    reserved = 0;
    if (!ok) {
        rc = sync_fail(err, SYNC_ECREDS, NULL, "invalid username or password");
        goto done;
    }

    if (util_random_hex(TOKEN_BYTES, token) != 0) {
        rc = sync_fail(err, SYNC_EIO, NULL, "no randomness for a token");
        goto done;
    }
    util_sha256_hex(token, strlen(token), token_hash);
    job.user_id = util_json_str(user, "id");
    job.pw_checked = stored_pw;
    job.epoch_checked = epoch_of(user, "token_epoch");
    job.pw_new = pw_new[0] ? pw_new : NULL;
    job.device_id = device_id;
    job.device_name = device_name;
    job.app_version = app_version;
    job.token_hash = token_hash;
    job.now = util_now_ms();
    job.expires_at = job.now + (int64_t)s->cfg.token_ttl_days * MS_PER_DAY;
    if (!job.user_id || strlen(job.user_id) > USER_ID_MAX) {
        rc = sync_fail(err, SYNC_EIO, NULL, "user %s is stored without a valid id", username);
        goto done;
    }
    if ((rc = run_job(s, login_job_fn, &job, &job.jerr, err)) != 0) goto done;

    if (!(res = cJSON_CreateObject()) || obj_set(res, "token", cJSON_CreateString(token)) ||
        obj_set(res, "expires_at", cJSON_CreateString(util_fmt_time(job.expires_at, expires))) ||
        !(ub = user_public(job.user, 1)) || obj_set(res, "user", ub) ||
        obj_set(res, "device_id", cJSON_CreateString(device_id)) ||
        obj_set(res, "next_changeset_seq", cJSON_CreateNumber((double)job.next_seq))) {
        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        goto done;
    }
    rc = answer(res, out, err);
done:
    if (reserved) limiter_done(s, keys, -1);
    OPENSSL_cleanse(token, sizeof token);
    OPENSSL_cleanse(pw_new, sizeof pw_new);
    free(uid);
    cJSON_Delete(user);
    cJSON_Delete(job.user);
    cJSON_Delete(res);
    return rc;
}

/* ---- logout ------------------------------------------------------------------------- */

typedef struct logout_job {
    sync_t *s;
    const char *token_hash;
    sync_error_t jerr;
} logout_job_t;

static int logout_job_fn(MDB_txn *txn, void *arg) {
    logout_job_t *c = arg;
    int rc = store_del(txn, c->s->dbs->tokens, c->token_hash, strlen(c->token_hash));
    if (rc == SYNC_ENOTFOUND) return 0; /* already gone: logging out twice is fine */
    return rc ? sync_fail(&c->jerr, rc, NULL, "deleting the token: %s", sync_strerror(rc)) : 0;
}

int sync_logout(sync_t *s, const sync_principal_t *p, sync_error_t *err) {
    logout_job_t job = {.s = s, .token_hash = p ? p->token_hash : ""};
    if (!p || !p->token_hash[0]) return sync_fail(err, SYNC_EUNAUTH, NULL, "not logged in");
    return run_job(s, logout_job_fn, &job, &job.jerr, err);
}

/* ---- authenticate ------------------------------------------------------------------- */

/* Copies src into dst[cap] whole, or fails: a stored value that does not fit
 * is corrupt, never truncated into someone else's name. */
static int copy_field(char *dst, size_t cap, const char *src) {
    size_t n = src ? strlen(src) : 0;
    if (n == 0 || n >= cap) return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

/* The session checks of a token hash inside txn: the token is known and not
 * expired, its user enabled and in the token's epoch, its device still bound
 * to that user in the token's binding, and not revoked. 0 with *t, *u, *d
 * loaded (the caller frees them), or an error with nothing loaded:
 * SYNC_EUNAUTH, SYNC_EREVOKED (+wipe), or a storage error. */
static int session_check(MDB_txn *txn, const store_dbs_t *dbs, const char *hash, cJSON **t, cJSON **u,
                         cJSON **d, sync_error_t *err) {
    const char *user_id, *device_id;
    int64_t expires = 0;
    int rc;
    *t = *u = *d = NULL;
    rc = store_get_json(txn, dbs->tokens, hash, strlen(hash), t);
    if (rc == SYNC_ENOTFOUND ||
        (rc == 0 && (util_json_int(*t, "expires_at", &expires) != 0 || expires <= util_now_ms()))) {
        rc = sync_fail(err, SYNC_EUNAUTH, NULL, "invalid or expired token");
        goto fail;
    }
    if (rc != 0) goto io;
    user_id = util_json_str(*t, "user_id");
    device_id = util_json_str(*t, "device_id");
    if (!user_id || !device_id) goto io;

    rc = store_get_json(txn, dbs->users, user_id, strlen(user_id), u);
    if (rc == SYNC_ENOTFOUND ||
        (rc == 0 && (is_true(*u, "disabled") || epoch_of(*t, "user_epoch") != epoch_of(*u, "token_epoch")))) {
        rc = sync_fail(err, SYNC_EUNAUTH, NULL, "invalid or expired token");
        goto fail;
    }
    if (rc != 0) goto io;
    rc = store_get_json(txn, dbs->devices, device_id, strlen(device_id), d);
    /* The device must still be bound to the token's user, in the binding the
     * token was issued in (a release, even followed by the same user's new
     * login, ends the tokens before it). Checked before revocation, so that
     * a phone's former user is never told to wipe it. */
    if (rc == SYNC_ENOTFOUND ||
        (rc == 0 && (!util_json_str(*d, "user_id") || strcmp(util_json_str(*d, "user_id"), user_id) != 0 ||
                     epoch_of(*t, "device_epoch") != epoch_of(*d, "epoch")))) {
        rc = sync_fail(err, SYNC_EUNAUTH, NULL, "invalid or expired token");
        goto fail;
    }
    if (rc != 0) goto io;
    if (is_true(*d, "revoked")) {
        rc = sync_fail(err, SYNC_EREVOKED, NULL, "this device has been revoked");
        if (err) err->wipe = is_true(*d, "wipe");
        goto fail;
    }
    return 0;
io:
    rc = sync_fail(err, rc && rc != SYNC_ENOTFOUND ? rc : SYNC_EIO, NULL, "the session is stored damaged");
fail:
    cJSON_Delete(*t);
    cJSON_Delete(*u);
    cJSON_Delete(*d);
    *t = *u = *d = NULL;
    return rc;
}

int sync_session_recheck(MDB_txn *txn, const store_dbs_t *dbs, const sync_principal_t *p, sync_error_t *err) {
    cJSON *t, *u, *d;
    int rc = session_check(txn, dbs, p->token_hash, &t, &u, &d, err);
    cJSON_Delete(t);
    cJSON_Delete(u);
    cJSON_Delete(d);
    return rc;
}

int sync_authenticate(sync_t *s, const char *token, sync_principal_t *out, sync_error_t *err) {
    char hash[65];
    MDB_txn *txn = NULL;
    cJSON *t = NULL, *u = NULL, *d = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    out->role = ROLE_NONE;
    size_t n = token ? strnlen(token, TOKEN_MAX_LEN + 1) : 0;
    if (n == 0 || n > TOKEN_MAX_LEN) return sync_fail(err, SYNC_EUNAUTH, NULL, "invalid or expired token");
    util_sha256_hex(token, n, hash);

    if ((rc = store_read_begin(s->st, &txn)) != 0) return sync_fail(err, rc, NULL, "cannot read the store");
    rc = session_check(txn, s->dbs, hash, &t, &u, &d, err);
    store_read_end(txn);
    txn = NULL;
    if (rc) goto fail;
    const char *user_id = util_json_str(t, "user_id"), *device_id = util_json_str(t, "device_id");

    cJSON_DeleteItemFromObjectCaseSensitive(u, "pw");
    out->role = util_user_role(u);
    if (out->role == ROLE_NONE || copy_field(out->user_id, sizeof out->user_id, user_id) ||
        copy_field(out->username, sizeof out->username, util_json_str(u, "username")) ||
        copy_field(out->device_id, sizeof out->device_id, device_id) ||
        copy_field(out->unit, sizeof out->unit, util_json_str(u, "unit"))) {
        rc = sync_fail(err, SYNC_EIO, NULL, "the session is stored damaged");
        goto fail;
    }
    memcpy(out->token_hash, hash, sizeof hash);
    out->user = u;
    cJSON_Delete(t);
    cJSON_Delete(d);
    return 0;
fail:
    store_read_end(txn);
    cJSON_Delete(t);
    cJSON_Delete(u);
    cJSON_Delete(d);
    memset(out, 0, sizeof *out);
    out->role = ROLE_NONE;
    /* A follower may not have applied a session the leader just made: the
     * leader judges the token. */
    if (rc == SYNC_EUNAUTH && sync_node_role(s, NULL, 0) == SYNC_NODE_FOLLOWER)
        return sync_fail(err, SYNC_EBEHIND, NULL, "this node does not know the token yet");
    return rc;
}

/* ---- me ----------------------------------------------------------------------------- */

int sync_me(sync_t *s, const sync_principal_t *p, char **out, sync_error_t *err) {
    MDB_txn *txn = NULL;
    cJSON *u = NULL, *d = NULL, *res = NULL, *pu = NULL, *pd = NULL;
    int rc;
    *out = NULL;
    if (!p || !p->user_id[0]) return sync_fail(err, SYNC_EUNAUTH, NULL, "not logged in");
    if ((rc = store_read_begin(s->st, &txn)) != 0) return sync_fail(err, rc, NULL, "cannot read the store");
    rc = store_get_json(txn, s->dbs->users, p->user_id, strlen(p->user_id), &u);
    if (rc == 0) rc = store_get_json(txn, s->dbs->devices, p->device_id, strlen(p->device_id), &d);
    store_read_end(txn);
    if (rc == SYNC_ENOTFOUND) {
        rc = sync_fail(err, SYNC_EUNAUTH, NULL, "the user or device is gone");
        goto done;
    }
    if (rc != 0) {
        rc = sync_fail(err, rc, NULL, "reading the user: %s", sync_strerror(rc));
        goto done;
    }
    if (!(res = cJSON_CreateObject()) || !(pu = user_public(u, 0)) || obj_set(res, "user", pu) ||
        !(pd = device_public(d)) || obj_set(res, "device", pd)) {
        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        goto done;
    }
    rc = answer(res, out, err);
done:
    cJSON_Delete(u);
    cJSON_Delete(d);
    cJSON_Delete(res);
    return rc;
}
