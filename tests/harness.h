/* harness.h -- drives the real casesyncd and casesync binaries for the
 * integration tests: servers on loopback, the CLI, HTTP via libcurl, JSON
 * builders for changesets and JSON path getters for assertions.
 *
 * Caveats:
 * - Every test runs in its own forked child (tests/main.c). The first
 *   srv_start() in a child registers an atexit handler and a SIGALRM handler
 *   that stop every server the child started and remove their data folders,
 *   so an ASSERT that returns early never leaves a server running. Servers
 *   also die with their test process (PR_SET_PDEATHSIG).
 * - When the test failed, the exit handler prints the tail of each server's
 *   log and leaves with _exit(1), skipping the leak check of a test that is
 *   failing anyway.
 * - Memory: every string, response body and cJSON tree the harness hands out
 *   is owned by the harness's pool and freed when the test process exits (or
 *   earlier by resp_free / h_free). Tests never call free() on them.
 * - Everything is bounded: HTTP calls time out (60 s), the server must print
 *   its listening line within 20 s and stop within 10 s of SIGTERM.
 * - http() may be called from several threads at once; srv_* and cli() only
 *   from the test's main thread.
 */
#ifndef CASESYNC_TESTS_HARNESS_H
#define CASESYNC_TESTS_HARNESS_H

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stddef.h>
#include <sys/types.h>

#include "tests/test.h"

/* Grid codes, units and the record type the tests use. */
#define GRID1 "110101001001001"
#define GRID2 "110101001001002"
#define GRID3 "110101001001003"
#define TYPE_VENDING "unlicensed_vending"

/* ---- pool ------------------------------------------------------------------ */

/* Hands p to the pool, which frees it with fn (free when NULL) at exit. */
void *h_keep(void *p, void (*fn)(void *));
/* Frees p now if the pool holds it. NULL ok. */
void h_free(void *p);
/* printf into a pool-owned string. */
char *hfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Monotonic seconds. */
double now_s(void);
void sleep_ms(int ms);
/* RFC 3339 UTC with milliseconds, offset_ms from now (negative: the past). */
const char *iso_now(long long offset_ms);

/* ---- servers ----------------------------------------------------------------- */

typedef struct srv {
    int slot;  /* index in the harness's table; -1 when never started */
    pid_t pid; /* 0 when not running */
    int port;
    char dir[256]; /* data folder (a fresh mkdtemp under /tmp) */
    char base[64]; /* "http://127.0.0.1:PORT" */
} srv_t;

/* Makes a fresh data folder and starts casesyncd on 127.0.0.1:0 with
 * CASESYNC_PBKDF2_ITERATIONS=1000 (and `--config $CASESYNC_TEST_CONFIG` when
 * a test has set that variable). 0 when it printed its listening line
 * within 20 s; -1 otherwise (and the log tail is printed). */
int srv_start(srv_t *s);
/* srv_start() with `--config` holding config_json (a temporary file, gone
 * once the server has started). 0 or -1. */
int srv_start_config(srv_t *s, const char *config_json);
/* Starts casesyncd again on the same data folder (new port). 0 or -1. */
int srv_restart(srv_t *s);
/* srv_restart() on the port it had, so a phone logged in at s->base finds it
 * again (the port may have been taken meanwhile: then -1). */
int srv_restart_same_port(srv_t *s);
/* SIGTERM, then waits up to 10 s (SIGKILL after that). Returns the exit
 * status: 0 for a clean stop, >0 the exit code, 128+n for a signal, -1 when
 * it had to be killed. Prints the log tail when not 0. 0 if not running. */
int srv_stop(srv_t *s);
/* SIGKILL and reap: a crash. */
void srv_kill9(srv_t *s);
/* Stops the server if running and removes its data folder. */
void srv_cleanup(srv_t *s);
/* Prints the last `lines` lines of the server's log to stderr. */
void srv_print_log(const srv_t *s, int lines);

/* ---- command line -------------------------------------------------------------- */

typedef struct cli_res {
    int rc;    /* exit code, 128+n for a signal, -1 when it could not run */
    char *out; /* captured stdout (pool) */
    char *err; /* captured stderr (pool) */
} cli_res_t;

/* Runs $CASESYNC_BIN/casesync --data DIR ARGS... with `in` on stdin (NULL:
 * empty), 30 s at most. The argument list ends with NULL; use cli(). */
cli_res_t cli_run(const char *dir, const char *in, ...);
#define cli(dir, in, ...) cli_run((dir), (in), __VA_ARGS__, (const char *)NULL)

/* `casesync user add` with the password on stdin; the new user's id (pool)
 * or NULL (and the CLI output is printed). grids_csv may be NULL. */
const char *user_add(srv_t *s, const char *username, const char *password, const char *role, const char *unit,
                     const char *grids_csv);

/* The standard cast, made on demand with the CLI. name: off1, off2 (officers
 * U1 GRID1), off3 (officer U1 GRID2), aux1 (auxiliary U1 GRID1), sup1, sup2
 * (supervisors U1), leg1 (legal_reviewer U1), offx (officer of unit U2 with
 * the same grid GRID1), admin (admin HQ). Returns the user id (pool) or NULL. */
const char *std_user(srv_t *s, const char *name);
/* The standard password of a standard user (pool). */
const char *std_pass(const char *name);

/* ---- HTTP ------------------------------------------------------------------------- */

typedef struct resp {
    long status; /* 0 when no HTTP answer came (see err) */
    char *body;  /* NUL-terminated (pool); "" when empty */
    size_t len;
    char *headers;  /* header block of the final answer (pool) */
    cJSON *json;    /* set by resp_json (pool) */
    double secs;    /* how long the call took */
    char what[200]; /* "POST /v1/sync/push" for messages */
    char err[256];  /* curl's error, if any */
} resp_t;

/* One HTTP call on loopback. token NULL: no Authorization. body NULL: none.
 * headers: NULL-terminated list of "Name: value" (may be NULL); a
 * Content-Type of application/json is added for bodies unless given. No
 * automatic decoding: ask for gzip with an explicit Accept-Encoding header. */
resp_t http(srv_t *s, const char *method, const char *path, const char *token, const char *body,
            const char *const *headers);
/* Sets a curl handle's method and body (data NULL: none; HEAD: no body read). */
void curl_set_method(CURL *c, const char *method, const void *data, size_t len);
/* The same with a raw body of len bytes (e.g. gzip). */
resp_t http_raw(srv_t *s, const char *method, const char *path, const char *token, const void *data,
                size_t len, const char *const *headers);
/* GET /metrics with an admin token: the first call for a data folder makes
 * the admin user "metrics-admin" (CLI) and logs it in on device
 * "dev-metrics" (counted like any login). Main thread only. */
resp_t metrics_scrape(srv_t *s);
/* Parses the body once; NULL when it is not JSON. Owned by r. */
cJSON *resp_json(resp_t *r);
/* Value of a response header (case-insensitive name), trimmed, pool; NULL if absent. */
const char *resp_header(const resp_t *r, const char *name);
/* error.code of an error body, or NULL. */
const char *resp_error_code(resp_t *r);
/* Frees the body, headers and JSON now. */
void resp_free(resp_t *r);

/* ---- JSON ------------------------------------------------------------------------- */

/* Path lookup: "results[0].conflicts[1].kept", "fields.location.lat". NULL if absent. */
cJSON *jget(const cJSON *root, const char *path);
const char *jstr(const cJSON *root, const char *path);
/* Integer value, or JNONE when absent or not a number. */
#define JNONE (-0x7fffffffffffffffLL)
long long jint(const cJSON *root, const char *path);
double jnum(const cJSON *root, const char *path, double dflt);
/* 1 true, 0 false, -1 absent or not a bool. */
int jbool(const cJSON *root, const char *path);
/* Array or object size; -1 if absent. */
int jlen(const cJSON *root, const char *path);
/* Compact text (pool); "(null)" for NULL. */
const char *jprint(const cJSON *v);
/* Parses text into a pool-owned tree; NULL on bad JSON. */
cJSON *jparse(const char *text);
/* Is there a string s among the array's items (strings, or objects whose
 * member `key` is s when key is not NULL)? */
int jarr_has(const cJSON *arr, const char *key, const char *s);
/* The array item whose member key == s, or NULL. */
cJSON *jarr_find(const cJSON *arr, const char *key, const char *s);

/* ---- changes ----------------------------------------------------------------------- */

/* A valid create in unit U1, grid GRID1, type unlicensed_vending. extra_fields:
 * NULL or a JSON object whose members are added to (or replace) the fields;
 * a member set to null removes that field. */
const char *ch_create(const char *id, const char *procedure, const char *extra_fields);
const char *ch_create_in(const char *id, const char *type, const char *procedure, const char *unit,
                         const char *grid, const char *extra_fields);
/* set_json / append_json: JSON objects or NULL. at: NULL for now. */
const char *ch_update(const char *id, long long base, const char *set_json, const char *append_json);
const char *ch_update_at(const char *id, long long base, const char *at, const char *set_json,
                         const char *append_json);
const char *ch_transition(const char *id, long long base, const char *to);
const char *ch_void(const char *id, long long base, const char *reason);
/* "[a,b,...]" from JSON texts; the list ends with NULL. */
const char *jarr_join(const char *first, ...);
#define changes(...) jarr_join(__VA_ARGS__, (const char *)NULL)

/* ---- sessions ---------------------------------------------------------------------- */

/* POST /v1/auth/login. */
resp_t login_resp(srv_t *s, const char *user, const char *pass, const char *device);
/* The token (pool) or NULL; *next_seq gets next_changeset_seq when not NULL. */
const char *login(srv_t *s, const char *user, const char *pass, const char *device, long long *next_seq);
/* {"device_id","changeset_seq","schema_version":1,"changes":changes_json} */
const char *push_body(const char *device, long long seq, const char *changes_json);
resp_t push(srv_t *s, const char *token, const char *device, long long seq, const char *changes_json);

/* A phone: one user on one device, with its next changeset seq and cursor. */
typedef struct phone {
    srv_t *srv;
    char user[64];
    char pass[64];
    char device[64];
    const char *token;  /* pool */
    char user_id[64];   /* from the login answer */
    long long seq;      /* next changeset_seq */
    const char *cursor; /* pool; NULL before the first pull */
} phone_t;

/* Logs in; 0 or -1 (and prints the answer). */
int phone_login(phone_t *p, srv_t *s, const char *user, const char *pass, const char *device);
/* std_user() then phone_login() with its password; 0 or -1. */
int std_phone(phone_t *p, srv_t *s, const char *name, const char *device);
/* Pushes with p->seq and moves it on after a 200. */
resp_t phone_push(phone_t *p, const char *changes_json);
/* GET /v1/sync/pull with p->cursor (none before the first); limit/wait <= 0
 * are left out. A 200 moves p->cursor on. */
resp_t phone_pull(phone_t *p, int limit, int wait);
/* Pulls pages until more is false (at most 50); the items of every page in
 * one array (pool), or NULL when a page failed (printed). */
cJSON *phone_pull_all(phone_t *p);
/* GET with the phone's token. */
resp_t phone_get(phone_t *p, const char *path);

/* The last item for record_id in a pull's changes (or an array of items), or NULL. */
cJSON *pull_item(const cJSON *pull_or_items, const char *record_id);
/* How many items name record_id. */
int pull_count(const cJSON *pull_or_items, const char *record_id);

/* ---- gzip -------------------------------------------------------------------------- */

/* gzip of data (pool). */
void *gz_compress(const void *data, size_t len, size_t *out_len);
/* Inflates gzip data (pool, NUL-terminated), at most max bytes; NULL on error. */
char *gz_inflate(const void *data, size_t len, size_t max, size_t *out_len);
/* A gzip member that inflates to `prefix` followed by n spaces, made without
 * holding the inflated bytes in memory (pool). */
void *gz_bomb(const char *prefix, size_t n, size_t *out_len);

/* ---- assertions with context --------------------------------------------------------- */

#define ASSERT_MSG(cond, ...)                                                                                \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            test_failf(__FILE__, __LINE__, __VA_ARGS__);                                                     \
            return;                                                                                          \
        }                                                                                                    \
    } while (0)

/* The answer's status, else fail with the request and the body. */
#define ASSERT_STATUS(r, code)                                                                               \
    do {                                                                                                     \
        const resp_t *r_ = &(r);                                                                             \
        if (r_->status != (long)(code)) {                                                                    \
            test_failf(__FILE__, __LINE__, "%s -> %ld, expected %d; %s%.1500s", r_->what, r_->status,        \
                       (int)(code), r_->err[0] ? r_->err : "body: ", r_->body ? r_->body : "");              \
            return;                                                                                          \
        }                                                                                                    \
    } while (0)

/* Status and error.code of an error answer. */
#define ASSERT_ERROR(r, code, ecode)                                                                         \
    do {                                                                                                     \
        ASSERT_STATUS(r, code);                                                                              \
        const char *ec_ = resp_error_code(&(r));                                                             \
        if (!ec_ || strcmp(ec_, (ecode)) != 0) {                                                             \
            test_failf(__FILE__, __LINE__, "%s -> error.code %s, expected %s; body: %.1500s", (r).what,      \
                       ec_ ? ec_ : "(absent)", (ecode), (r).body);                                           \
            return;                                                                                          \
        }                                                                                                    \
    } while (0)

#define ASSERT_JSTR(root, path, exp)                                                                         \
    do {                                                                                                     \
        const cJSON *jr_ = (root);                                                                           \
        const char *v_ = jstr(jr_, (path)), *e_ = (exp);                                                     \
        if (!v_ || strcmp(v_, e_) != 0) {                                                                    \
            test_failf(__FILE__, __LINE__, "%s is %s, expected \"%s\" in %.1500s", (path),                   \
                       v_ ? hfmt("\"%s\"", v_) : jprint(jget(jr_, (path))), e_, jprint(jr_));                \
            return;                                                                                          \
        }                                                                                                    \
    } while (0)

#define ASSERT_JINT(root, path, exp)                                                                         \
    do {                                                                                                     \
        const cJSON *jr_ = (root);                                                                           \
        long long v_ = jint(jr_, (path)), e_ = (long long)(exp);                                             \
        if (v_ != e_) {                                                                                      \
            test_failf(__FILE__, __LINE__, "%s is %s, expected %lld in %.1500s", (path),                     \
                       jprint(jget(jr_, (path))), e_, jprint(jr_));                                          \
            return;                                                                                          \
        }                                                                                                    \
    } while (0)

#define ASSERT_JBOOL(root, path, exp)                                                                        \
    do {                                                                                                     \
        const cJSON *jr_ = (root);                                                                           \
        if (jbool(jr_, (path)) != (exp)) {                                                                   \
            test_failf(__FILE__, __LINE__, "%s is %s, expected %s in %.1500s", (path),                       \
                       jprint(jget(jr_, (path))), (exp) ? "true" : "false", jprint(jr_));                    \
            return;                                                                                          \
        }                                                                                                    \
    } while (0)

/* A JSON value is present (non-NULL), else print the document. */
#define ASSERT_JHAS(root, path)                                                                              \
    do {                                                                                                     \
        const cJSON *jr_ = (root);                                                                           \
        if (!jget(jr_, (path))) {                                                                            \
            test_failf(__FILE__, __LINE__, "%s is absent in %.1500s", (path), jprint(jr_));                  \
            return;                                                                                          \
        }                                                                                                    \
    } while (0)

#endif
