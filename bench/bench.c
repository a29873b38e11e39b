/* bench.c -- `make bench`: a load generator that starts its own casesyncd on
 * loopback with a fresh data folder, builds a realistic dataset, and measures
 * push throughput (with a raw-LMDB baseline in the same run), initial and
 * delta sync, a shift change, growth and memory. Prints one table and writes
 * bench/results.json.
 *
 * Environment: CASESYNC_BIN (folder of casesyncd/casesync, default build),
 * BENCH_GROWTH (largest store size for the growth test, default 1000000),
 * BENCH_OUT (results path), BENCH_ONLY=push (push figures only) or
 * BENCH_ONLY=login (the login figures only: argon2id against PBKDF2-600k,
 * logins per second per core, the login storm; results-login.json), or
 * BENCH_ONLY=formats (the in-process format candidates only, bench/formats.c),
 * or BENCH_ONLY=cluster (cluster mode only: three nats-servers and three
 * nodes; push against one node, pulls spread over the nodes, failover;
 * merged into the results file under keys cluster_*).
 * or BENCH_ONLY=isync (the initial sync only: request-only against
 * libcasesync pulling into its own store; its initial_sync_client_* keys
 * replace those in the results file, whose other keys stay).
 * BENCH_ISYNC_TRIALS (default 3): the runs of each of those two;
 * BENCH_PULL_LIMIT: the client's page size (default: the library's).
 * The sync measurements run with a cheap argon2id cost (logins are not what
 * they measure); the login measurements with the production default. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <argon2.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>

#include "clients/c/casesync.h"

#define GRID "110101001001001"
#define PUSH_CHANGES 50
#define MAX_LAT 200000

static char g_base[64], g_dir[256], g_bin[512];
static pid_t g_pid;
static cJSON *g_results;

/* ---- small helpers ------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (g_pid > 0) kill(g_pid, SIGKILL);
    exit(1);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p) {
    if (n == 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

typedef struct buf {
    char *p;
    size_t n, cap;
} buf_t;

static size_t on_data(char *d, size_t sz, size_t nm, void *u) {
    buf_t *b = u;
    size_t n = sz * nm;
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) die("out of memory");
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

/* One keep-alive connection. */
typedef struct conn {
    CURL *c;
    buf_t body;
    long status;
    double secs;
    curl_off_t down;  /* bytes on the wire (compressed when gzip) */
    const char *base; /* the server asked; NULL: g_base */
} conn_t;

static void conn_init(conn_t *k) {
    memset(k, 0, sizeof *k);
    k->c = curl_easy_init();
    if (!k->c) die("curl init");
}

static void conn_free(conn_t *k) {
    curl_easy_cleanup(k->c);
    free(k->body.p);
}

/* A request; gzip: ask for gzip and let curl inflate (down counts wire bytes). */
static long req(conn_t *k, const char *method, const char *path, const char *token, const char *body,
                int gzip) {
    char url[1024], auth[256];
    struct curl_slist *h = NULL;
    snprintf(url, sizeof url, "%s%s", k->base ? k->base : g_base, path);
    k->body.n = 0;
    if (k->body.p) k->body.p[0] = 0;
    curl_easy_reset(k->c);
    curl_easy_setopt(k->c, CURLOPT_URL, url);
    curl_easy_setopt(k->c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(k->c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(k->c, CURLOPT_WRITEDATA, &k->body);
    curl_easy_setopt(k->c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(k->c, CURLOPT_NOSIGNAL, 1L);
    if (gzip) curl_easy_setopt(k->c, CURLOPT_ACCEPT_ENCODING, "gzip");
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    if (body) {
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, "Expect:");
        curl_easy_setopt(k->c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(k->c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(k->c, CURLOPT_HTTPHEADER, h);
    double t0 = now_s();
    CURLcode rc = curl_easy_perform(k->c);
    k->secs = now_s() - t0;
    k->status = 0;
    k->down = 0;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(k->c, CURLINFO_RESPONSE_CODE, &k->status);
        curl_easy_getinfo(k->c, CURLINFO_SIZE_DOWNLOAD_T, &k->down);
    }
    curl_slist_free_all(h);
    return k->status;
}

/* ---- the server ------------------------------------------------------------------- */

/* The argon2id cost the bench's users and server hash with: "m=..,t=..,p=.."
 * (cheap, for the sync measurements), or "" for the production default. */
static const char *g_cost = "m=64,t=1,p=1";

/* Starts casesyncd on folder dir with the config file cfg_path ("" for
 * none); *pid and base (64 bytes) get its pid and URL. */
static void launch(const char *dir, const char *cfg_path, pid_t *pid, char *base) {
    int pfd[2];
    if (pipe(pfd) != 0) die("pipe");
    *pid = fork();
    if (*pid == 0) {
        char bin[600], log[300];
        snprintf(bin, sizeof bin, "%s/casesyncd", g_bin);
        snprintf(log, sizeof log, "%s/server.log", dir);
        dup2(pfd[1], 1);
        int lf = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (lf >= 0) dup2(lf, 2);
        close(pfd[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* gone with the bench, however it ends */
        setenv("CASESYNC_PBKDF2_ITERATIONS", "1000", 1);
        if (*g_cost)
            setenv("CASESYNC_ARGON2_COST", g_cost, 1);
        else
            unsetenv("CASESYNC_ARGON2_COST");
        if (cfg_path[0])
            execl(bin, bin, "--data", dir, "--listen", "127.0.0.1:0", "--threads", "300", "--config",
                  cfg_path, (char *)NULL);
        else
            execl(bin, bin, "--data", dir, "--listen", "127.0.0.1:0", "--threads", "300", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char line[256];
    size_t n = 0;
    double t0 = now_s();
    while (n < sizeof line - 1 && now_s() - t0 < 30) {
        ssize_t r = read(pfd[0], line + n, 1);
        if (r <= 0) break;
        if (line[n] == '\n') break;
        n++;
    }
    close(pfd[0]);
    line[n] = 0;
    char *p = strstr(line, "http://");
    if (!p) die("server on %s did not start: '%s' (see its server.log)", dir, line);
    snprintf(base, 64, "%s", p);
}

/* Starts casesyncd on a fresh data folder (fresh) or on the current one,
 * with the argon2 cost g_cost and config_json (NULL: none) as --config. */
static void server_start_with(int fresh, const char *config_json) {
    char cfg_path[300] = "";
    if (fresh) {
        snprintf(g_dir, sizeof g_dir, "/tmp/casesync-bench-XXXXXX");
        if (!mkdtemp(g_dir)) die("temp dir");
    }
    if (config_json) {
        snprintf(cfg_path, sizeof cfg_path, "%s/bench-config.json", g_dir);
        FILE *f = fopen(cfg_path, "w");
        if (!f || fputs(config_json, f) < 0 || fclose(f) != 0) die("config file");
    }
    launch(g_dir, cfg_path, &g_pid, g_base);
}

static void server_start(void) {
    server_start_with(1, NULL);
}

static void server_stop(void) {
    if (g_pid <= 0) return;
    kill(g_pid, SIGTERM);
    waitpid(g_pid, NULL, 0);
    g_pid = 0;
}

/* CPU seconds process pid used so far (user + system, all threads). */
static double pid_cpu_s(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds the server used so far. */
static double server_cpu_s(void) {
    return pid_cpu_s(g_pid);
}

/* Bytes the server has written through write()/pwrite() so far (/proc/PID/io wchar). */
static double server_wchar(void) {
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/io", (int)g_pid);
    FILE *f = fopen(path, "r");
    double v = 0;
    unsigned long long n;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "wchar: %llu", &n) == 1) v = (double)n;
    if (f) fclose(f);
    return v;
}

/* CPU seconds of the server's writer thread (comm "casesync-writer") so far. */
static double writer_cpu_s(void) {
    char path[300], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/task", (int)g_pid);
    DIR *d = opendir(path);
    double total = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/%d/task/%s/stat", (int)g_pid, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        unsigned long ut = 0, st = 0;
        if (!p || !strstr(buf, "(casesync-writer)") ||
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
            continue;
        total += (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    if (d) closedir(d);
    return total;
}

/* Resident memory not backed by a file (LMDB's map is file-backed). */
static long rss_anon_kb(void) {
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)g_pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static void user_add_cli(const char *name, const char *role, const char *unit, const char *grids) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "echo 'bench-password-1' | CASESYNC_ARGON2_COST='%s' %s/casesync --data %s user add %s "
             "--role %s --unit %s %s%s > /dev/null",
             g_cost, g_bin, g_dir, name, role, unit, grids ? "--grids " : "", grids ? grids : "");
    if (system(cmd) != 0) die("user add %s", name);
}

static char *login(conn_t *k, const char *user, const char *device) {
    char body[512];
    snprintf(body, sizeof body,
             "{\"username\":\"%s\",\"password\":\"bench-password-1\",\"device_id\":\"%s\"}", user, device);
    /* As a phone does: 429 and 503 (too many logins at once from one
     * address, the hashing slots busy) come back after Retry-After. */
    for (int tries = 0; req(k, "POST", "/v1/auth/login", NULL, body, 0) != 200; tries++) {
        if ((k->status != 429 && k->status != 503) || tries >= 30)
            die("login %s: %ld %s", user, k->status, k->body.p);
        sleep(1);
    }
    cJSON *j = cJSON_Parse(k->body.p);
    char *t = strdup(cJSON_GetObjectItem(j, "token")->valuestring);
    cJSON_Delete(j);
    return t;
}

/* A realistic create: ~1.5 KB of JSON with a party, notes and evidence items. */
static int make_create(char *out, size_t cap, const char *id, const char *grid) {
    static const char *types[] = {"unlicensed_vending", "illegal_construction", "open_air_bbq",
                                  "cooking_fumes",      "muck_truck",           "illegal_parking"};
    int t = (int)(id[strlen(id) - 1] % 6);
    return snprintf(
        out, cap,
        "{\"op\":\"create\",\"record_id\":\"%s\",\"type\":\"%s\",\"at\":\"2026-11-22T08:15:30.123Z\","
        "\"fields\":{\"procedure\":\"general\",\"source\":\"patrol\","
        "\"description\":\"Street vendor occupying the pedestrian walkway in front of the metro exit during "
        "the "
        "evening peak; cart with gas cylinder, about 3 square meters occupied, pedestrians forced onto the "
        "road. "
        "Second report this week from the same location, photos taken from two angles.\","
        "\"occurred_at\":\"2026-11-22T08:00:00.000Z\",\"grid\":\"%s\",\"address\":\"No. 18 Dongzhimen Inner "
        "St, "
        "Dongcheng District, north side of exit "
        "B\",\"location\":{\"lon\":116.4321,\"lat\":39.9402,\"crs\":\"wgs84\","
        "\"accuracy_m\":6},\"unit\":\"U1\",\"tags\":[\"peak-hour\",\"repeat\",\"gas-cylinder\"],"
        "\"party\":{\"kind\":\"person\",\"name\":\"Zhang "
        "San\",\"id_no\":\"110101199001011234\",\"phone\":\"13800000000\"},"
        "\"notes\":[{\"id\":\"%s-n1\",\"text\":\"Vendor asked to leave; refused and argued for ten "
        "minutes.\"},"
        "{\"id\":\"%s-n2\",\"text\":\"Second officer arrived, body camera on, scene recorded.\"}],"
        "\"evidence\":[{\"id\":\"%s-e1\",\"sha256\":"
        "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\","
        "\"size\":482113,\"mime\":\"image/"
        "jpeg\",\"kind\":\"photo\",\"captured_at\":\"2026-11-22T08:05:00.000Z\"},"
        "{\"id\":\"%s-e2\",\"sha256\":\"60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752\","
        "\"size\":9182734,\"mime\":\"video/"
        "mp4\",\"kind\":\"bodycam\",\"captured_at\":\"2026-11-22T08:06:00.000Z\"}]}}",
        id, types[t], grid, id, id, id, id);
}

/* A changeset of n creates with ids PREFIX-<i>. */
static char *make_changeset(const char *device, long long seq, const char *prefix, int first, int n,
                            const char *grid) {
    size_t cap = (size_t)n * 2400 + 256;
    char *b = malloc(cap), id[96];
    size_t o = (size_t)snprintf(
        b, cap, "{\"device_id\":\"%s\",\"changeset_seq\":%lld,\"schema_version\":1,\"changes\":[", device,
        seq);
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "%s%07d", prefix, first + i);
        if (i) b[o++] = ',';
        o += (size_t)make_create(b + o, cap - o, id, grid);
    }
    snprintf(b + o, cap - o, "]}");
    return b;
}

/* ---- 1. push, and its raw-LMDB baseline --------------------------------------------- */

typedef struct pusher {
    int k, changesets;
    const char *prefix;
    char *token;
    char device[32];
    double *lat;
    int nlat, errors;
} pusher_t;

static void *push_main(void *arg) {
    pusher_t *p = arg;
    conn_t k;
    conn_init(&k);
    for (int i = 0; i < p->changesets; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%sP%03dC%04d", p->prefix, p->k, i);
        char *body = make_changeset(p->device, i + 1, prefix, 0, PUSH_CHANGES, GRID);
        long st = req(&k, "POST", "/v1/sync/push", p->token, body, 0);
        free(body);
        if (st != 200) p->errors++;
        p->lat[p->nlat++] = k.secs;
    }
    conn_free(&k);
    return NULL;
}

static double run_push(int phones, int changesets_each, const char *tag, double *p50, double *p99,
                       int *errors, double *cpu_us, double *writer_us, double *written) {
    pusher_t *ps = calloc((size_t)phones, sizeof *ps);
    pthread_t *th = calloc((size_t)phones, sizeof *th);
    conn_t k;
    conn_init(&k);
    for (int i = 0; i < phones; i++) {
        ps[i].k = i;
        ps[i].changesets = changesets_each;
        ps[i].prefix = tag;
        snprintf(ps[i].device, sizeof ps[i].device, "%s-d%d", tag, i);
        ps[i].token = login(&k, "pusher", ps[i].device);
        ps[i].lat = calloc((size_t)changesets_each, sizeof(double));
    }
    conn_free(&k);
    double t0 = now_s(), c0 = server_cpu_s(), w0 = writer_cpu_s(), b0 = server_wchar();
    for (int i = 0; i < phones; i++)
        pthread_create(&th[i], NULL, push_main, &ps[i]);
    for (int i = 0; i < phones; i++)
        pthread_join(th[i], NULL);
    double wall = now_s() - t0;
    *cpu_us = (server_cpu_s() - c0) * 1e6 / ((double)phones * changesets_each * PUSH_CHANGES);
    *writer_us = (writer_cpu_s() - w0) * 1e6 / ((double)phones * changesets_each * PUSH_CHANGES);
    *written = (server_wchar() - b0) / ((double)phones * changesets_each * PUSH_CHANGES);
    double *all = calloc((size_t)phones * changesets_each, sizeof(double));
    int n = 0;
    *errors = 0;
    for (int i = 0; i < phones; i++) {
        memcpy(all + n, ps[i].lat, (size_t)ps[i].nlat * sizeof(double));
        n += ps[i].nlat;
        *errors += ps[i].errors;
        free(ps[i].lat);
        free(ps[i].token);
    }
    *p50 = pct(all, n, 0.5) * 1000;
    *p99 = pct(all, n, 0.99) * 1000;
    free(all);
    free(ps);
    free(th);
    return (double)phones * changesets_each * PUSH_CHANGES / wall;
}

/* The same record sizes in the same batch sizes into raw LMDB, one fsync per
 * batch: what the disk and LMDB allow with no HTTP, JSON or merging. */
static double raw_lmdb_baseline(int records) {
    char dir[300], id[64];
    snprintf(dir, sizeof dir, "%s/baseline", g_dir);
    mkdir(dir, 0700);
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    mdb_env_create(&env);
    mdb_env_set_mapsize(env, (size_t)4 << 30);
    if (mdb_env_open(env, dir, 0, 0600) != 0) die("baseline env");
    char *rec = malloc(4096);
    int len = make_create(rec, 4096, "01JDBASELINE000000", GRID);
    double t0 = now_s();
    for (int done = 0; done < records; done += PUSH_CHANGES) {
        mdb_txn_begin(env, NULL, 0, &txn);
        mdb_dbi_open(txn, NULL, 0, &dbi);
        for (int i = 0; i < PUSH_CHANGES; i++) {
            snprintf(id, sizeof id, "B%09d", done + i);
            MDB_val k = {strlen(id), id}, v = {(size_t)len, rec};
            mdb_put(txn, dbi, &k, &v, 0);
        }
        if (mdb_txn_commit(txn) != 0) die("baseline commit");
    }
    double rate = records / (now_s() - t0);
    free(rec);
    mdb_env_close(env);
    return rate;
}

/* ---- 2-3. initial and delta sync ----------------------------------------------------- */

typedef struct pullres {
    double server_s;
    long long raw, gz;
    int items;
} pullres_t;

/* Pulls until more is false; raw = JSON bytes, gz = bytes on the wire with gzip. */
static pullres_t pull_all(conn_t *k, const char *token, char **cursor) {
    pullres_t r = {0};
    for (int page = 0; page < 1000; page++) {
        char path[4096];
        snprintf(path, sizeof path, "/v1/sync/pull?limit=1000%s%s", *cursor ? "&cursor=" : "",
                 *cursor ? *cursor : "");
        if (req(k, "GET", path, token, NULL, 1) != 200) die("pull %ld %s", k->status, k->body.p);
        r.server_s += k->secs;
        r.raw += (long long)k->body.n;
        r.gz += (long long)k->down;
        cJSON *j = cJSON_Parse(k->body.p);
        r.items += cJSON_GetArraySize(cJSON_GetObjectItem(j, "changes"));
        free(*cursor);
        *cursor = strdup(cJSON_GetObjectItem(j, "cursor")->valuestring);
        int more = cJSON_IsTrue(cJSON_GetObjectItem(j, "more"));
        cJSON_Delete(j);
        if (!more) break;
    }
    return r;
}

/* Pushes n records into a grid in changesets of `chunk` (one device). */
static void load_records_in(const char *user, const char *device, const char *prefix, int n, const char *grid,
                            int chunk) {
    conn_t k;
    conn_init(&k);
    char *token = login(&k, user, device);
    long long seq = 1;
    for (int done = 0; done < n; done += chunk) {
        int m = n - done < chunk ? n - done : chunk;
        char *body = make_changeset(device, seq++, prefix, done, m, grid);
        if (req(&k, "POST", "/v1/sync/push", token, body, 0) != 200)
            die("load push %ld %.300s", k.status, k.body.p);
        free(body);
    }
    free(token);
    conn_free(&k);
}

/* Pushes n records into a grid in changesets of 1000 (one device). */
static void load_records(const char *user, const char *device, const char *prefix, int n, const char *grid) {
    load_records_in(user, device, prefix, n, grid, 1000);
}

/* ---- 4. shift change ------------------------------------------------------------------ */

#define SHIFT_PHONES 2000
#define SHIFT_CONC 256

typedef struct shift {
    const char *tag;           /* device and record prefix of this round */
    int next;                  /* next phone to run (atomic) */
    char *token[SHIFT_PHONES]; /* each phone's token, held from before the shift */
    double lat[SHIFT_PHONES];
    int errors;
} shift_t;

static void shift_phone(int i, const char *tag, char *device, size_t dn, char *user, size_t un) {
    snprintf(device, dn, "%s-d%04d", tag, i);
    snprintf(user, un, "shift%03d", i % 100);
}

/* Before the shift: every phone logs in once (they hold tokens for 90 days;
 * a shift change is pushes and pulls, not logins). */
static void *shift_login_main(void *arg) {
    shift_t *sh = arg;
    conn_t k;
    conn_init(&k);
    for (;;) {
        int i = __atomic_fetch_add(&sh->next, 1, __ATOMIC_ACQ_REL);
        if (i >= SHIFT_PHONES) break;
        char device[32], user[32];
        shift_phone(i, sh->tag, device, sizeof device, user, sizeof user);
        sh->token[i] = login(&k, user, device);
    }
    conn_free(&k);
    return NULL;
}

static void *shift_main(void *arg) {
    shift_t *sh = arg;
    conn_t k;
    conn_init(&k);
    for (;;) {
        int i = __atomic_fetch_add(&sh->next, 1, __ATOMIC_ACQ_REL);
        if (i >= SHIFT_PHONES) break;
        char device[32], user[32], prefix[32];
        shift_phone(i, sh->tag, device, sizeof device, user, sizeof user);
        snprintf(prefix, sizeof prefix, "%s%04d", sh->tag, i);
        double t0 = now_s();
        char *body = make_changeset(device, 1, prefix, 0, 20, GRID);
        int bad = req(&k, "POST", "/v1/sync/push", sh->token[i], body, 0) != 200;
        free(body);
        if (!bad && req(&k, "GET", "/v1/sync/pull?limit=200", sh->token[i], NULL, 1) != 200) bad = 1;
        sh->lat[i] = now_s() - t0;
        if (bad) __atomic_add_fetch(&sh->errors, 1, __ATOMIC_ACQ_REL);
    }
    conn_free(&k);
    return NULL;
}

static void result(const char *key, double v) {
    cJSON_AddNumberToObject(g_results, key, v);
}

/* bench/formats.c */
void bench_formats(const char *create_json, void (*result)(const char *key, double v));

/* ---- 6. logins at the production argon2id cost --------------------------------------- */

#define LOGIN_USERS 50
#define LOGIN_STORM 200
#define LOGIN_RATE_THREADS 4
#define LOGIN_RATE_EACH 8

static double hash_argon2_s(int rounds) {
    unsigned char salt[16] = "bench-salt-00000", out[32];
    double t0 = now_s();
    for (int i = 0; i < rounds; i++)
        if (argon2id_hash_raw(3, 65536, 1, "bench-password-1", 16, salt, sizeof salt, out, sizeof out) !=
            ARGON2_OK)
            die("argon2id");
    return (now_s() - t0) / rounds;
}

static double hash_pbkdf2_s(int iterations, int rounds) {
    unsigned char salt[16] = "bench-salt-00000", out[32];
    double t0 = now_s();
    for (int i = 0; i < rounds; i++)
        if (PKCS5_PBKDF2_HMAC("bench-password-1", 16, salt, sizeof salt, iterations, EVP_sha256(), sizeof out,
                              out) != 1)
            die("pbkdf2");
    return (now_s() - t0) / rounds;
}

typedef struct lrun {
    const char *tag;
    int each;             /* logins per thread (rate), or 1 (storm) */
    int next;             /* atomic */
    pthread_barrier_t go; /* storm: every phone starts together */
    long status[LOGIN_STORM];
    double lat[LOGIN_STORM];
} lrun_t;

static void *lrun_main(void *arg) {
    lrun_t *lr = arg;
    conn_t k;
    conn_init(&k);
    if (lr->each == 1) pthread_barrier_wait(&lr->go);
    for (int n = 0; n < lr->each; n++) {
        int i = __atomic_fetch_add(&lr->next, 1, __ATOMIC_ACQ_REL);
        char body[512];
        snprintf(body, sizeof body,
                 "{\"username\":\"login%02d\",\"password\":\"bench-password-1\",\"device_id\":\"%s-%04d\"}",
                 i % LOGIN_USERS, lr->tag, i);
        double t0 = now_s();
        lr->status[i] = req(&k, "POST", "/v1/auth/login", NULL, body, 0);
        lr->lat[i] = now_s() - t0;
    }
    conn_free(&k);
    return NULL;
}

/* One argon2id hash against PBKDF2-SHA256 at 600,000 iterations (the
 * contract's floor) in this process; then a server at the production cost:
 * logins per second with one hashing slot (= per core), and a storm of
 * LOGIN_STORM phones logging in at once past the default cap. */
static void run_logins(void) {
    double a = hash_argon2_s(5), p6 = hash_pbkdf2_s(600000, 3);
    printf("%-44s %8.1f ms argon2id t=3 m=64MiB p=1   %8.1f ms PBKDF2-SHA256 600k   ratio %.2f\n",
           "one password hash, this process", a * 1000, p6 * 1000, a / p6);
    result("login_argon2id_ms_per_hash", a * 1000);
    result("login_pbkdf2_600k_ms_per_hash", p6 * 1000);
    result("login_argon2id_to_pbkdf2_600k_ratio", a / p6);

    const char *saved = g_cost;
    g_cost = ""; /* production cost, for the users as for the server */
    server_start_with(1, "{\"max_hashing\":1}");
    for (int i = 0; i < LOGIN_USERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "login%02d", i);
        user_add_cli(name, "officer", "U1", GRID);
    }
    static lrun_t lr;
    memset(&lr, 0, sizeof lr);
    lr.tag = "rate";
    lr.each = LOGIN_RATE_EACH;
    pthread_t th[LOGIN_STORM];
    double cpu0 = server_cpu_s(), t0 = now_s();
    for (int i = 0; i < LOGIN_RATE_THREADS; i++)
        pthread_create(&th[i], NULL, lrun_main, &lr);
    for (int i = 0; i < LOGIN_RATE_THREADS; i++)
        pthread_join(th[i], NULL);
    double wall = now_s() - t0, cpu = server_cpu_s() - cpu0;
    int n = LOGIN_RATE_THREADS * LOGIN_RATE_EACH, ok = 0;
    for (int i = 0; i < n; i++)
        ok += lr.status[i] == 200;
    printf("%-44s %8.2f logins/s (one hashing slot)   %6.1f ms server CPU per login   %d of %d 200\n",
           "logins per second per core", ok / wall, cpu / n * 1000, ok, n);
    result("login_per_s_per_core", ok / wall);
    result("login_server_cpu_ms", cpu / n * 1000);
    server_stop();

    /* The storm: the default cap (one slot per core). */
    server_start_with(0, "{}");
    memset(&lr, 0, sizeof lr);
    lr.tag = "storm";
    lr.each = 1;
    pthread_barrier_init(&lr.go, NULL, LOGIN_STORM);
    t0 = now_s();
    for (int i = 0; i < LOGIN_STORM; i++)
        pthread_create(&th[i], NULL, lrun_main, &lr);
    for (int i = 0; i < LOGIN_STORM; i++)
        pthread_join(th[i], NULL);
    wall = now_s() - t0;
    pthread_barrier_destroy(&lr.go);
    int c200 = 0, c503 = 0, other = 0;
    static double lat200[LOGIN_STORM];
    for (int i = 0; i < LOGIN_STORM; i++) {
        if (lr.status[i] == 200)
            lat200[c200++] = lr.lat[i];
        else if (lr.status[i] == 503)
            c503++;
        else
            other++;
    }
    double p99 = pct(lat200, c200, 0.99) * 1000;
    printf("%-44s %5d phones at once: %d 200, %d 503 (Retry-After), %d other; p99 of a 200 %.0f ms; %.2f s "
           "wall\n\n",
           "login storm, default hashing cap", LOGIN_STORM, c200, c503, other, p99, wall);
    result("login_storm_phones", LOGIN_STORM);
    result("login_storm_200", c200);
    result("login_storm_503", c503);
    result("login_storm_other", other);
    result("login_storm_p99_ms_of_200", p99);
    server_stop();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", g_dir);
    g_cost = saved;
}

/* ---- main ------------------------------------------------------------------------------- */

/* The initial pull of the reader's 10k scope with `stored` records in the
 * store: the better of two pulls. Prints it against `first` (0: this is it). */
static double growth_point(conn_t *k, const char *token, int stored, double first) {
    double best = 0;
    for (int i = 0; i < 2; i++) {
        char *c = NULL;
        pullres_t g = pull_all(k, token, &c);
        free(c);
        if (i == 0 || g.server_s < best) best = g.server_s;
    }
    if (!first) printf("\n%-44s\n", "growth: initial pull of the same 10k scope (best of 2)");
    printf("  store %8d records: %8.3f s server (%.2fx of the 10k store)\n", stored, best,
           first ? best / first : 1.0);
    char key[64];
    snprintf(key, sizeof key, "growth_pull_s_at_%d", stored);
    result(key, best);
    return best;
}

/* The initial sync through libcasesync, in this process: a fresh state
 * folder, a login, then casesync_sync (pull only) until casesync_get returns
 * the scope's last record -- the like-for-like figure to a replication whose
 * client writes the documents. The store keeps its default durability (each
 * page's transaction fsync'd). Wall time, this process's CPU (the library's
 * parse and store) and the server's CPU over the same interval. */
typedef struct clientres {
    double wall_s, client_cpu_s, server_cpu_s;
    int upserts, pages;
    uint64_t wire, raw, store_bytes;
} clientres_t;

static double process_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static clientres_t client_initial_sync(int trial, const char *last_id) {
    clientres_t r = {0};
    char dir[400], device[64];
    snprintf(dir, sizeof dir, "%s/phone-%d", g_dir, trial);
    snprintf(device, sizeof device, "reader-phone-%d", trial);
    casesync_options_t o = {0};
    o.state_dir = dir;
    if (getenv("BENCH_PULL_LIMIT")) o.pull_limit = atoi(getenv("BENCH_PULL_LIMIT")); /* 0: the library's */
    casesync_t *h = NULL;
    casesync_error_t err;
    if (casesync_open(&o, &h, &err) != 0) die("casesync_open: %s", err.message);
    if (casesync_login(h, g_base, "reader", "bench-password-1", device, &err) != 0)
        die("casesync_login: %s", err.message);
    casesync_report_t rep;
    char *rec = NULL;
    double t0 = now_s(), c0 = process_cpu_s(), s0 = server_cpu_s();
    if (casesync_sync(h, CASESYNC_SYNC_NO_PUSH | CASESYNC_SYNC_NO_UPLOAD, &rep, &err) != 0)
        die("casesync_sync: %s", err.message);
    if (casesync_get(h, last_id, &rec) != 0) die("casesync_get %s after the sync", last_id);
    r.wall_s = now_s() - t0;
    r.client_cpu_s = process_cpu_s() - c0;
    r.server_cpu_s = server_cpu_s() - s0;
    casesync_free(rec);
    casesync_stats_t st;
    casesync_stats(h, &st);
    r.upserts = rep.upserts;
    r.pages = rep.pages;
    r.wire = st.bytes_down_wire;
    r.raw = st.bytes_down_raw;
    casesync_close(h);
    char db[450];
    struct stat sb;
    snprintf(db, sizeof db, "%s/data.mdb", dir);
    r.store_bytes = stat(db, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    char cmd[500];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", dir);
    return r;
}

/* Request-only pulls and libcasesync syncs of the same scope, alternated
 * (BENCH_ISYNC_TRIALS each, default 3), best of each: their ratio holds on a
 * shared machine. */
static void run_client_sync(conn_t *k, const char *token, int items) {
    int trials = getenv("BENCH_ISYNC_TRIALS") ? atoi(getenv("BENCH_ISYNC_TRIALS")) : 3;
    if (trials < 1) trials = 1;
    double req_best = 0;
    clientres_t best = {0};
    char last[32];
    snprintf(last, sizeof last, "INIT%07d", items - 1);
    for (int i = 0; i < trials; i++) {
        char *c = NULL;
        pullres_t g = pull_all(k, token, &c);
        free(c);
        if (i == 0 || g.server_s < req_best) req_best = g.server_s;
        clientres_t r = client_initial_sync(i, last);
        if (r.upserts != items) die("libcasesync pulled %d records, not %d", r.upserts, items);
        if (i == 0 || r.wall_s < best.wall_s) best = r;
    }
    printf("%-44s %10d items  %8.3f s until readable (%.2fx the request-only %.3f s, best of %d each)\n",
           "initial sync, 10k, through libcasesync", best.upserts, best.wall_s, best.wall_s / req_best,
           req_best, trials);
    printf("%-44s %10d pages  %8.3f s client CPU  %8.3f s server CPU  %9llu B wire  %10llu B raw  %.1f MB "
           "store\n",
           "", best.pages, best.client_cpu_s, best.server_cpu_s, (unsigned long long)best.wire,
           (unsigned long long)best.raw, best.store_bytes / 1e6);
    result("initial_sync_client_s", best.wall_s);
    result("initial_sync_client_request_only_s", req_best);
    result("initial_sync_client_ratio_to_request_only", best.wall_s / req_best);
    result("initial_sync_client_cpu_s", best.client_cpu_s);
    result("initial_sync_client_server_cpu_s", best.server_cpu_s);
    result("initial_sync_client_pages", best.pages);
    result("initial_sync_client_bytes_wire", (double)best.wire);
    result("initial_sync_client_store_bytes", (double)best.store_bytes);
}

/* Samples the server's RssAnon every 20 ms while a phase runs: the peak. */
typedef struct sampler {
    volatile int stop;
    long peak_kb;
} sampler_t;

static void *sample_main(void *arg) {
    sampler_t *sm = arg;
    while (!sm->stop) {
        long kb = rss_anon_kb();
        if (kb > sm->peak_kb) sm->peak_kb = kb;
        usleep(20000);
    }
    return NULL;
}

/* 2000 phones that already hold tokens, at most 256 connections at a time:
 * push 20, pull. */
static void run_shift(const char *tag, const char *title, const char *key_suffix) {
    static shift_t sh;
    memset(&sh, 0, sizeof sh);
    sh.tag = tag;
    pthread_t th[SHIFT_CONC], st;
    sampler_t sm = {0, rss_anon_kb()};
    pthread_create(&st, NULL, sample_main, &sm);
    for (int i = 0; i < SHIFT_CONC; i++)
        pthread_create(&th[i], NULL, shift_login_main, &sh);
    for (int i = 0; i < SHIFT_CONC; i++)
        pthread_join(th[i], NULL);
    sh.next = 0;
    double t0 = now_s();
    for (int i = 0; i < SHIFT_CONC; i++)
        pthread_create(&th[i], NULL, shift_main, &sh);
    for (int i = 0; i < SHIFT_CONC; i++)
        pthread_join(th[i], NULL);
    double wall = now_s() - t0;
    sm.stop = 1;
    pthread_join(st, NULL);
    for (int i = 0; i < SHIFT_PHONES; i++)
        free(sh.token[i]);
    double p99 = pct(sh.lat, SHIFT_PHONES, 0.99) * 1000;
    printf("%-44s %8.2f s wall  p99 %.0f ms per phone  %d errors\n", title, wall, p99, sh.errors);
    long kb = rss_anon_kb();
    printf("%-44s %8.1f MB peak during it, %.1f MB after\n\n", "server memory outside the LMDB map",
           sm.peak_kb / 1024.0, kb / 1024.0);
    char key[80];
    snprintf(key, sizeof key, "shift_wall_s%s", key_suffix);
    result(key, wall);
    snprintf(key, sizeof key, "shift_p99_ms%s", key_suffix);
    result(key, p99);
    snprintf(key, sizeof key, "shift_errors%s", key_suffix);
    result(key, sh.errors);
    snprintf(key, sizeof key, "server_rss_anon_peak_mb%s", key_suffix);
    result(key, sm.peak_kb / 1024.0);
    snprintf(key, sizeof key, "server_rss_anon_mb%s", key_suffix);
    result(key, kb / 1024.0);
}

/* ---- 7. cluster mode: three nats-servers (R3), three casesyncd nodes -------------------- */

#define CL_NODES 3
#define CL_PUSH_PHONES (getenv("BENCH_CLUSTER_PHONES") ? atoi(getenv("BENCH_CLUSTER_PHONES")) : 8)
#define CL_PUSH_EACH 20
#define CL_ROUNDS 2
#define CL_SCOPE 500    /* records each pull of the shift change returns */
#define CL_PULLS 240    /* pulls per measure */
#define CL_PULL_CONC 24 /* phones pulling at once */
#define CL_GRID "110101001001066"

typedef struct cnode {
    pid_t pid;
    char dir[256], base[64], cfg[300];
} cnode_t;

typedef struct cnats {
    pid_t pid;
    int port, cport;
    char dir[256];
} cnats_t;

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t n = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    if (port <= 0) die("no free port");
    return port;
}

static int port_open(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

/* A JetStream server of the three-server cluster "casesync-bench". */
static void cnats_start(cnats_t *n, int i, const char *routes) {
    char port[16], cport[48], name[8], log[300];
    snprintf(n->dir, sizeof n->dir, "/tmp/casesync-bench-nats-XXXXXX");
    if (!mkdtemp(n->dir)) die("temp dir");
    snprintf(port, sizeof port, "%d", n->port);
    snprintf(cport, sizeof cport, "nats://127.0.0.1:%d", n->cport);
    snprintf(name, sizeof name, "n%d", i + 1);
    snprintf(log, sizeof log, "%s/log", n->dir);
    /* max_payload 8 MB (NATS's advice for the most; 1 MB by default): a
     * batch's entry may hold a quarter of it, so a leader's batch can carry
     * the changesets of 8 phones at once, as one node's does. */
    char conf[300];
    snprintf(conf, sizeof conf, "%s/nats.conf", n->dir);
    FILE *cf = fopen(conf, "w");
    if (!cf || fputs("max_payload: 8388608\n", cf) < 0 || fclose(cf) != 0) die("nats config");
    n->pid = fork();
    if (n->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execlp("nats-server", "nats-server", "-c", conf, "-js", "-a", "127.0.0.1", "-p", port, "-sd", n->dir,
               "-n", name, "--cluster_name", "casesync-bench", "--cluster", cport, "--routes", routes,
               (char *)NULL);
        _exit(127);
    }
    for (int t = 0; t < 400 && !port_open(n->port); t++)
        usleep(25000);
    if (!port_open(n->port)) die("nats-server %s did not start (is it installed? see %s)", name, log);
}

static void pid_kill(pid_t *pid, int sig) {
    if (*pid <= 0) return;
    kill(*pid, sig);
    waitpid(*pid, NULL, 0);
    *pid = 0;
}

/* 1 when node n takes a login now (holds the lease and writes). */
static int cnode_leads(conn_t *k, cnode_t *n, const char *device) {
    char body[256];
    k->base = n->base;
    snprintf(body, sizeof body,
             "{\"username\":\"pusher\",\"password\":\"bench-password-1\",\"device_id\":\"%s\"}", device);
    long st = req(k, "POST", "/v1/auth/login", NULL, body, 0);
    k->base = NULL;
    return st == 200;
}

typedef struct cpull {
    cnode_t *nodes;
    int spread;            /* 1: phone i reads from node i % 3; 0: all from node 0 */
    int ids, next, errors; /* atomic */
    char *token[CL_PULL_CONC];
    long long bytes;
} cpull_t;

static void *cpull_main(void *arg) {
    cpull_t *cp = arg;
    int me = __atomic_fetch_add(&cp->ids, 1, __ATOMIC_ACQ_REL) % CL_PULL_CONC;
    conn_t k;
    conn_init(&k);
    for (;;) {
        int i = __atomic_fetch_add(&cp->next, 1, __ATOMIC_ACQ_REL);
        if (i >= CL_PULLS) break;
        k.base = cp->nodes[cp->spread ? i % CL_NODES : 0].base;
        if (req(&k, "GET", "/v1/sync/pull?limit=1000", cp->token[me], NULL, 1) != 200 ||
            k.body.n < (size_t)CL_SCOPE * 1000) {
            if (__atomic_add_fetch(&cp->errors, 1, __ATOMIC_ACQ_REL) == 1)
                fprintf(stderr, "bench: a pull from %s answered %ld, %zu bytes: %.200s\n", k.base, k.status,
                        k.body.n, k.body.p ? k.body.p : "");
        }
        __atomic_add_fetch(&cp->bytes, (long long)k.down, __ATOMIC_ACQ_REL);
    }
    conn_free(&k);
    return NULL;
}

/* The machine's busy and total CPU time so far (all processes, every
 * agent on it), in clock ticks, from /proc/stat. */
static void machine_ticks(double *busy, double *total) {
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    *busy = *total = 0;
    if (!f) return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &v[6], &v[7]) == 8) {
        for (int i = 0; i < 8; i++)
            *total += (double)v[i];
        *busy = *total - (double)v[3] - (double)v[4]; /* less idle and iowait */
    }
    fclose(f);
}

/* CPU seconds of the cluster's processes (nodes and nats-servers) so far. */
static double cluster_cpu_s(const cnode_t *nodes, const cnats_t *nats) {
    double c = 0;
    for (int i = 0; i < CL_NODES; i++)
        c +=
            (nodes[i].pid > 0 ? pid_cpu_s(nodes[i].pid) : 0) + (nats[i].pid > 0 ? pid_cpu_s(nats[i].pid) : 0);
    return c;
}

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* CL_PULLS full pulls of a CL_SCOPE-record scope, CL_PULL_CONC at a time,
 * from node 0 alone or spread over the three. Pulls per second; *srv_ms
 * the nodes' CPU per pull, *gen_ms the load generator's. */
static double cluster_pulls(cnode_t *nodes, char **tokens, int spread, double *srv_ms, double *gen_ms,
                            double *busy, int *errors) {
    cpull_t cp = {.nodes = nodes, .spread = spread};
    memcpy(cp.token, tokens, sizeof cp.token);
    pthread_t th[CL_PULL_CONC];
    double c0 = 0, g0 = self_cpu_s(), t0 = now_s(), mb0, mt0, mb1, mt1;
    machine_ticks(&mb0, &mt0);
    for (int i = 0; i < CL_NODES; i++)
        c0 += pid_cpu_s(nodes[i].pid);
    for (int i = 0; i < CL_PULL_CONC; i++)
        pthread_create(&th[i], NULL, cpull_main, &cp);
    for (int i = 0; i < CL_PULL_CONC; i++)
        pthread_join(th[i], NULL);
    double wall = now_s() - t0, c1 = 0;
    machine_ticks(&mb1, &mt1);
    *busy = mt1 > mt0 ? (mb1 - mb0) / (mt1 - mt0) : 0;
    for (int i = 0; i < CL_NODES; i++)
        c1 += pid_cpu_s(nodes[i].pid);
    *srv_ms = (c1 - c0) * 1000 / CL_PULLS;
    *gen_ms = (self_cpu_s() - g0) * 1000 / CL_PULLS;
    *errors += cp.errors;
    return CL_PULLS / wall;
}

static void run_cluster(void) {
    const int lease_ms = 6000; /* casesyncd's default */
    cnats_t nats[CL_NODES];
    cnode_t nodes[CL_NODES];
    char urls[512] = "", routes[512] = "", cmd[2048];
    memset(nats, 0, sizeof nats);
    memset(nodes, 0, sizeof nodes);
    for (int i = 0; i < CL_NODES; i++) {
        nats[i].port = free_port();
        nats[i].cport = free_port();
        size_t u = strlen(urls), r = strlen(routes);
        snprintf(urls + u, sizeof urls - u, "%snats://127.0.0.1:%d", i ? "," : "", nats[i].port);
        snprintf(routes + r, sizeof routes - r, "%snats://127.0.0.1:%d", i ? "," : "", nats[i].cport);
    }
    for (int i = 0; i < CL_NODES; i++)
        cnats_start(&nats[i], i, routes);

    /* Node a: users made while it is alone, then cluster mode; b and c from
     * its backup. */
    server_start();
    user_add_cli("pusher", "officer", "U1", GRID);
    user_add_cli("sup", "supervisor", "U1", NULL);
    user_add_cli("creader", "officer", "U1", CL_GRID);
    server_stop();
    for (int i = 0; i < CL_NODES; i++) {
        cnode_t *n = &nodes[i];
        if (i == 0) {
            snprintf(n->dir, sizeof n->dir, "%s", g_dir);
        } else {
            snprintf(n->dir, sizeof n->dir, "/tmp/casesync-bench-XXXXXX");
            if (!mkdtemp(n->dir)) die("temp dir");
            snprintf(cmd, sizeof cmd, "%s/casesync --data %s backup %s > /dev/null", g_bin, nodes[0].dir,
                     n->dir);
            if (system(cmd) != 0) die("backup for node %c", 'a' + i);
        }
        snprintf(n->cfg, sizeof n->cfg, "%s/cluster.json", n->dir);
        FILE *f = fopen(n->cfg, "w");
        if (!f ||
            fprintf(f, "{\"cluster\":\"%s\",\"node\":\"%c\",\"cluster_replicas\":3,\"lease_ms\":%d}\n", urls,
                    'a' + i, lease_ms) < 0 ||
            fclose(f) != 0)
            die("config of node %c", 'a' + i);
        launch(n->dir, n->cfg, &n->pid, n->base);
    }
    conn_t k;
    conn_init(&k);
    int leader = -1;
    for (int t = 0; t < 300 && leader < 0; t++) {
        for (int i = 0; i < CL_NODES && leader < 0; i++)
            if (cnode_leads(&k, &nodes[i], "probe")) leader = i;
        if (leader < 0) usleep(100000);
    }
    if (leader < 0) die("no cluster node took the lease");
    if (leader != 0) { /* node 0 is the leader below */
        cnode_t t = nodes[0];
        nodes[0] = nodes[leader];
        nodes[leader] = t;
    }
    printf("cluster: 3 nats-servers (JetStream R3) and 3 casesyncd nodes on loopback, %ld cores shared with "
           "this load generator; lease %d ms (renewed every %d ms, writes stop %d ms after a renewal)\n",
           sysconf(_SC_NPROCESSORS_ONLN), lease_ms, lease_ms / 4, lease_ms * 2 / 3);
    result("cluster_cores", (double)sysconf(_SC_NPROCESSORS_ONLN));
    result("cluster_lease_ms", lease_ms);

    /* 1. Push to the leader against one node without cluster mode, the same
     * load, rounds alternating. */
    char single_dir[256], single_base[64];
    pid_t single_pid = 0;
    server_start();
    user_add_cli("pusher", "officer", "U1", GRID);
    snprintf(single_dir, sizeof single_dir, "%s", g_dir);
    snprintf(single_base, sizeof single_base, "%s", g_base);
    single_pid = g_pid;
    double rate[2] = {0, 0}, cpu[2] = {0, 0}, p99[2] = {0, 0}, all_cpu[2] = {0, 0}, busy[2] = {0, 0};
    double fol_cpu = 0, nats_cpu = 0; /* the two followers', the three nats-servers' */
    for (int round = 0; round < CL_ROUNDS; round++)
        for (int c = 0; c < 2; c++) {
            double p50, q99, cu, cw, cb;
            int errors;
            char tag[16];
            snprintf(tag, sizeof tag, "CL%c%d", c ? 'C' : 'S', round);
            snprintf(g_base, sizeof g_base, "%s", c ? nodes[0].base : single_base);
            g_pid = c ? nodes[0].pid : single_pid;
            double a0 = c ? cluster_cpu_s(nodes, nats) : pid_cpu_s(single_pid), mb0, mt0, mb1, mt1;
            double f0 = pid_cpu_s(nodes[1].pid) + pid_cpu_s(nodes[2].pid), n0 = 0;
            for (int i = 0; i < CL_NODES; i++)
                n0 += pid_cpu_s(nats[i].pid);
            machine_ticks(&mb0, &mt0);
            double r = run_push(CL_PUSH_PHONES, CL_PUSH_EACH, tag, &p50, &q99, &errors, &cu, &cw, &cb);
            machine_ticks(&mb1, &mt1);
            double a1 = c ? cluster_cpu_s(nodes, nats) : pid_cpu_s(single_pid);
            double f1 = pid_cpu_s(nodes[1].pid) + pid_cpu_s(nodes[2].pid), n1 = 0;
            for (int i = 0; i < CL_NODES; i++)
                n1 += pid_cpu_s(nats[i].pid);
            if (c) {
                fol_cpu += (f1 - f0) * 1e6 / (CL_PUSH_PHONES * CL_PUSH_EACH * PUSH_CHANGES) / CL_ROUNDS;
                nats_cpu += (n1 - n0) * 1e6 / (CL_PUSH_PHONES * CL_PUSH_EACH * PUSH_CHANGES) / CL_ROUNDS;
            }
            all_cpu[c] += (a1 - a0) * 1e6 / (CL_PUSH_PHONES * CL_PUSH_EACH * PUSH_CHANGES) / CL_ROUNDS;
            busy[c] += (mt1 > mt0 ? (mb1 - mb0) / (mt1 - mt0) : 0) / CL_ROUNDS;
            if (errors) die("cluster push round: %d errors", errors);
            rate[c] += r / CL_ROUNDS;
            cpu[c] += cu / CL_ROUNDS;
            p99[c] += q99 / CL_ROUNDS;
        }
    g_pid = single_pid;
    snprintf(g_base, sizeof g_base, "%s", single_base);
    server_stop();
    snprintf(cmd, sizeof cmd, "rm -rf %s", single_dir);
    if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", single_dir);
    printf("%-44s %14s %10s %12s %12s %8s\n", "cluster push, 8 phones x 50 changes", "changes/s", "p99 ms",
           "cpu us/ch", "all us/ch", "machine");
    printf("  %-42s %14.0f %10.1f %12.0f %12.0f %7.0f%%\n", "one node, no cluster", rate[0], p99[0], cpu[0],
           all_cpu[0], busy[0] * 100);
    printf("  %-42s %14.0f %10.1f %12.0f %12.0f %7.0f%%   = %.2f x one node (target >= 0.5)\n",
           "3-node cluster, to the leader", rate[1], p99[1], cpu[1], all_cpu[1], busy[1] * 100,
           rate[1] / rate[0]);
    printf("  (cpu: the node pushed to; all: every casesyncd and nats-server -- the two followers %.0f, the "
           "three "
           "nats-servers %.0f us/ch; machine: busy share of all %ld cores, other agents included)\n",
           fol_cpu, nats_cpu, sysconf(_SC_NPROCESSORS_ONLN));
    result("cluster_push_single_changes_per_s", rate[0]);
    result("cluster_push_changes_per_s", rate[1]);
    result("cluster_push_ratio_to_single", rate[1] / rate[0]);
    result("cluster_push_single_p99_ms", p99[0]);
    result("cluster_push_p99_ms", p99[1]);
    result("cluster_push_single_cpu_us_per_change", cpu[0]);
    result("cluster_push_leader_cpu_us_per_change", cpu[1]);
    result("cluster_push_all_processes_cpu_us_per_change", all_cpu[1]);
    result("cluster_push_followers_cpu_us_per_change", fol_cpu);
    result("cluster_push_nats_cpu_us_per_change", nats_cpu);
    result("cluster_push_single_machine_busy", busy[0]);
    result("cluster_push_machine_busy", busy[1]);

    /* 2. Pulls at a shift change: CL_PULL_CONC phones, each pulling a
     * CL_SCOPE-record scope, from one node or spread over three. */
    snprintf(g_base, sizeof g_base, "%s", nodes[0].base);
    g_pid = nodes[0].pid;
    load_records_in("sup", "cl-load", "CLS", CL_SCOPE, CL_GRID, 100); /* an entry must fit max_payload */
    char *tokens[CL_PULL_CONC];
    for (int i = 0; i < CL_PULL_CONC; i++) {
        char device[32];
        snprintf(device, sizeof device, "cl-reader-%02d", i);
        tokens[i] = login(&k, "creader", device);
    }
    /* The followers have applied it all: the last token works there and a pull holds the scope. */
    for (int i = 1; i < CL_NODES; i++) {
        int ok = 0;
        k.base = nodes[i].base;
        for (int t = 0; t < 300 && !ok; t++) {
            ok = req(&k, "GET", "/v1/sync/pull?limit=1000", tokens[CL_PULL_CONC - 1], NULL, 0) == 200 &&
                 strstr(k.body.p, "CLS0000499") != NULL;
            if (!ok) usleep(100000);
        }
        if (!ok) die("node %d did not catch up: %ld", i, k.status);
    }
    k.base = NULL;
    double one = 0, three = 0, srv1 = 0, srv3 = 0, gen1 = 0, gen3 = 0, busy1 = 0, busy3 = 0;
    int err1 = 0, err3 = 0;
    for (int round = 0; round < CL_ROUNDS; round++) {
        double s, g, b;
        one += cluster_pulls(nodes, tokens, 0, &s, &g, &b, &err1) / CL_ROUNDS;
        srv1 += s / CL_ROUNDS;
        gen1 += g / CL_ROUNDS;
        busy1 += b / CL_ROUNDS;
        three += cluster_pulls(nodes, tokens, 1, &s, &g, &b, &err3) / CL_ROUNDS;
        srv3 += s / CL_ROUNDS;
        gen3 += g / CL_ROUNDS;
        busy3 += b / CL_ROUNDS;
    }
    for (int i = 0; i < CL_PULL_CONC; i++)
        free(tokens[i]);
    double cores = (double)sysconf(_SC_NPROCESSORS_ONLN);
    printf("%-44s %14s %14s %14s %8s\n", "cluster pulls, 24 phones x 500 records", "pulls/s", "nodes cpu ms",
           "loadgen cpu ms", "machine");
    printf("  %-42s %14.1f %14.1f %14.1f %7.0f%%\n", "all from one node", one, srv1, gen1, busy1 * 100);
    printf("  %-42s %14.1f %14.1f %14.1f %7.0f%%   = %.2f x one node (target >= 2)\n",
           "spread over three nodes", three, srv3, gen3, busy3 * 100, three / one);
    printf("  bound: %.0f cores for nodes and load generator together; CPU per pull (nodes + load generator) "
           "caps it at %.1f pulls/s whatever the node count\n\n",
           cores, cores * 1000 / (srv3 + gen3));
    result("cluster_pull_one_node_per_s", one);
    result("cluster_pull_three_nodes_per_s", three);
    result("cluster_pull_ratio_three_to_one", three / one);
    result("cluster_pull_node_cpu_ms_one_node", srv1);
    result("cluster_pull_node_cpu_ms_three_nodes", srv3);
    result("cluster_pull_loadgen_cpu_ms_one_node", gen1);
    result("cluster_pull_loadgen_cpu_ms_three_nodes", gen3);
    result("cluster_pull_cpu_bound_per_s", cores * 1000 / (srv3 + gen3));
    result("cluster_pull_machine_busy_one_node", busy1);
    result("cluster_pull_machine_busy_three_nodes", busy3);
    result("cluster_pull_errors", err1 + err3);

    /* 3. Failover: kill -9 of the leader; a phone pushes its next changeset
     * to the other nodes until one accepts it. */
    char *ft = login(&k, "pusher", "cl-failover");
    char *body = make_changeset("cl-failover", 1, "CLF0", 0, 1, GRID);
    if (req(&k, "POST", "/v1/sync/push", ft, body, 0) != 200) die("failover push %ld", k.status);
    free(body);
    body = make_changeset("cl-failover", 2, "CLF1", 0, 1, GRID);
    double t0 = now_s(), took = -1;
    int by = -1;
    pid_kill(&nodes[0].pid, SIGKILL);
    for (int t = 0; t < 1200 && took < 0; t++) {
        for (int i = 1; i < CL_NODES && took < 0; i++) {
            k.base = nodes[i].base;
            if (req(&k, "POST", "/v1/sync/push", ft, body, 0) == 200) took = now_s() - t0, by = i;
        }
        if (took < 0) usleep(50000);
    }
    k.base = NULL;
    free(body);
    free(ft);
    if (took < 0) die("no node took a write within 60 s of the leader's kill -9");
    printf("%-44s %8.2f s  (kill -9 of the leader to the first write taken, by node %d; target < 15 s; lease "
           "%d ms)\n\n",
           "cluster failover", took, by, lease_ms);
    result("cluster_failover_s", took);

    conn_free(&k);
    for (int i = 0; i < CL_NODES; i++) {
        pid_kill(&nodes[i].pid, SIGTERM);
        pid_kill(&nats[i].pid, SIGTERM);
        snprintf(cmd, sizeof cmd, "rm -rf %s %s", nodes[i].dir, nats[i].dir);
        if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", nodes[i].dir);
    }
    g_pid = 0;
}

/* Writes the results into out_path over what it holds: keys of this run
 * replace theirs, the others stay (BENCH_ONLY=cluster). */
static void merge_results(const char *out_path) {
    FILE *f = fopen(out_path, "r");
    if (!f) return;
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    cJSON *old = cJSON_Parse(text);
    if (!cJSON_IsObject(old)) {
        cJSON_Delete(old);
        return;
    }
    for (cJSON *it = g_results->child; it; it = it->next) {
        cJSON *copy = cJSON_Duplicate(it, 1);
        if (!copy) die("out of memory");
        if (cJSON_GetObjectItemCaseSensitive(old, it->string))
            cJSON_ReplaceItemInObjectCaseSensitive(old, it->string, copy);
        else
            cJSON_AddItemToObject(old, it->string, copy);
    }
    cJSON_Delete(g_results);
    g_results = old;
}

static void write_results(const char *out_path) {
    char *json = cJSON_Print(g_results);
    FILE *f = fopen(out_path, "w");
    if (f && json) {
        fputs(json, f);
        fputc('\n', f);
        fclose(f);
        printf("\nresults written to %s\n", out_path);
    } else if (f) {
        fclose(f);
    }
    free(json);
    cJSON_Delete(g_results);
    g_results = NULL;
}

static void push_result(const char *prefix, int phones, const char *name, double v) {
    char key[96];
    snprintf(key, sizeof key, "%spush_%d_%s", prefix, phones, name);
    result(key, v);
}

/* The push rows: 1, 8, 64 and 256 phones, each pushing changesets of 50
 * new cases. Results under key_prefix + "push_N_..."; returns the rate at 64. */
static double push_rows(const char *title, const char *tag_prefix, const char *key_prefix) {
    printf("%-44s %14s %10s %10s %8s %12s %s\n", title, "changes/s", "p50 ms", "p99 ms", "errors",
           "server cpu", " (writer + request threads)");
    int phones[] = {1, 8, 64, 256}, each[] = {60, 30, 10, 4};
    if (getenv("BENCH_PUSH_ROUNDS")) /* more changesets per phone: a longer, steadier push measure */
        for (int i = 0; i < 4; i++)
            each[i] *= atoi(getenv("BENCH_PUSH_ROUNDS"));
    double rate64 = 0;
    for (int i = 0; i < 4; i++) {
        double p50, p99;
        int errors;
        char tag[16];
        snprintf(tag, sizeof tag, "%s%d", tag_prefix, phones[i]);
        double cpu_us, writer_us, written;
        double rate = run_push(phones[i], each[i], tag, &p50, &p99, &errors, &cpu_us, &writer_us, &written);
        printf("  %3d phones %31s %14.0f %10.1f %10.1f %8d %7.0f us/ch (%.0f + %.0f), %.1f KB written/ch\n",
               phones[i], "", rate, p50, p99, errors, cpu_us, writer_us, cpu_us - writer_us, written / 1024);
        push_result(key_prefix, phones[i], "bytes_written_per_change", written);
        push_result(key_prefix, phones[i], "server_cpu_us_per_change", cpu_us);
        push_result(key_prefix, phones[i], "writer_cpu_us_per_change", writer_us);
        push_result(key_prefix, phones[i], "request_cpu_us_per_change", cpu_us - writer_us);
        push_result(key_prefix, phones[i], "changes_per_s", rate);
        push_result(key_prefix, phones[i], "p50_ms", p50);
        push_result(key_prefix, phones[i], "p99_ms", p99);
        if (phones[i] == 64) rate64 = rate;
    }
    return rate64;
}

int main(void) {
    const char *bin = getenv("CASESYNC_BIN");
    snprintf(g_bin, sizeof g_bin, "%s", bin ? bin : "build");
    int growth_max = getenv("BENCH_GROWTH") ? atoi(getenv("BENCH_GROWTH")) : 1000000;
    const char *only = getenv("BENCH_ONLY");
    int only_login = only && strcmp(only, "login") == 0;
    const char *out_path = getenv("BENCH_OUT") ? getenv("BENCH_OUT")
                           : only_login        ? "bench/results-login.json"
                                               : "bench/results.json";
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_results = cJSON_CreateObject();
    if (only_login) {
        run_logins();
        write_results(out_path);
        curl_global_cleanup();
        return 0;
    }
    if (only && strcmp(only, "cluster") == 0) {
        run_cluster();
        merge_results(out_path);
        write_results(out_path);
        curl_global_cleanup();
        return 0;
    }
    if (!only || strcmp(only, "isync") != 0) {
        char create[8192];
        make_create(create, sizeof create, "01JDBENCHRECORD0001", GRID);
        bench_formats(create, result);
        if (only && strcmp(only, "formats") == 0) {
            write_results(out_path);
            curl_global_cleanup();
            return 0;
        }
    }
    server_start();
    user_add_cli("pusher", "officer", "U1", GRID);
    user_add_cli("reader", "officer", "U1", "110101001001009");
    user_add_cli("sup", "supervisor", "U1", NULL);
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof name, "shift%03d", i);
        user_add_cli(name, "officer", "U1", "110101001001077");
    }
    printf("casesync bench: server %s, data %s\n\n", g_base, g_dir);

    if (getenv("BENCH_PAUSE")) {
        printf("server pid %d; press enter\n", (int)g_pid);
        getchar();
    }
    int only_push = only && strcmp(only, "push") == 0;
    /* 2. Initial sync of a 10,000-record scope, the store holding just it
     * (the first point of the growth series, 5.). */
    conn_t k;
    conn_init(&k);
    char *rt = NULL, *cursor = NULL;
    pullres_t init = {0};
    double growth_first = 0;
    if (!only_push) {
        load_records("sup", "load-1", "INIT", 10000, "110101001001009");
        rt = login(&k, "reader", "reader-1");
        init = pull_all(&k, rt, &cursor);
        printf("%-44s %10d items  %8.3f s server  %10lld B raw  %9lld B gzip (%.1fx)\n",
               "initial sync, 10k-record scope", init.items, init.server_s, init.raw, init.gz,
               (double)init.raw / (init.gz ? init.gz : 1));
        result("initial_sync_items", init.items);
        result("initial_sync_server_s", init.server_s);
        result("initial_sync_bytes_raw", (double)init.raw);
        result("initial_sync_bytes_gzip", (double)init.gz);
        run_client_sync(&k, rt, init.items);
        if (only && strcmp(only, "isync") == 0) {
            free(rt);
            free(cursor);
            conn_free(&k);
            server_stop();
            merge_results(out_path);
            write_results(out_path);
            char cmd[600];
            snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
            if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", g_dir);
            curl_global_cleanup();
            return 0;
        }
        growth_first = growth_point(&k, rt, 10000, 0);

        /* 3. Delta: one field of 1,000 records changes. */
        {
            char *st = login(&k, "sup", "sup-delta");
            size_t cap = 1000 * 200 + 256;
            char *body = malloc(cap);
            size_t o =
                (size_t)snprintf(body, cap, "{\"device_id\":\"sup-delta\",\"changeset_seq\":1,\"changes\":[");
            for (int i = 0; i < 1000; i++)
                o += (size_t)snprintf(body + o, cap - o,
                                      "%s{\"op\":\"update\",\"record_id\":\"INIT%07d\",\"base_version\":1,"
                                      "\"set\":{\"address\":\"No. 20 Dongzhimen Inner St\"}}",
                                      i ? "," : "", i * 10);
            snprintf(body + o, cap - o, "]}");
            if (req(&k, "POST", "/v1/sync/push", st, body, 0) != 200)
                die("delta push %ld %.300s", k.status, k.body.p);
            free(body);
            free(st);
            pullres_t d = pull_all(&k, rt, &cursor);
            double whole = (double)init.raw / (init.items ? init.items : 1) * d.items;
            printf("%-44s %10d items  %8.3f s server  %10lld B raw  %9lld B gzip; whole records: %.0f B "
                   "(delta = %.1f%%)\n\n",
                   "delta sync, 1 field of 1k records", d.items, d.server_s, d.raw, d.gz, whole,
                   100.0 * d.raw / whole);
            result("delta_items", d.items);
            result("delta_server_s", d.server_s);
            result("delta_bytes_raw", (double)d.raw);
            result("delta_bytes_gzip", (double)d.gz);
            result("delta_whole_record_bytes", whole);
        }
    }

    /* 1. Push; with BENCH_BEFORE, first the same rows against the binaries
     * in that folder (an earlier build), on a fresh server of their own. */
    double before64 = 0;
    if (getenv("BENCH_BEFORE")) {
        char keep_bin[512], keep_dir[256], keep_base[64];
        pid_t keep_pid = g_pid;
        snprintf(keep_bin, sizeof keep_bin, "%s", g_bin);
        snprintf(keep_dir, sizeof keep_dir, "%s", g_dir);
        snprintf(keep_base, sizeof keep_base, "%s", g_base);
        snprintf(g_bin, sizeof g_bin, "%s", getenv("BENCH_BEFORE"));
        server_start();
        user_add_cli("pusher", "officer", "U1", GRID);
        before64 = push_rows("push, BEFORE (BENCH_BEFORE build)", "B", "before_");
        server_stop();
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
        snprintf(g_bin, sizeof g_bin, "%s", keep_bin);
        snprintf(g_dir, sizeof g_dir, "%s", keep_dir);
        snprintf(g_base, sizeof g_base, "%s", keep_base);
        g_pid = keep_pid;
    }
    double rate64 = push_rows("push (50 changes per changeset)", "T", "");
    double base = raw_lmdb_baseline(20000);
    printf("  baseline: raw LMDB puts, 50 per fsync %14.0f   our 64-phone rate = %.2f x baseline\n", base,
           rate64 / base);
    if (before64 > 0) {
        printf("  before (BENCH_BEFORE): 64-phone rate = %.2f x baseline; after/before = %.2f\n",
               before64 / base, rate64 / before64);
        result("before_push_64_ratio_to_baseline", before64 / base);
    }
    printf("\n");
    result("baseline_raw_lmdb_puts_per_s", base);
    result("push_64_ratio_to_baseline", rate64 / base);
    if (only_push) {
        server_stop();
        write_results(out_path);
        curl_global_cleanup();
        return 0;
    }

    /* 5. Growth, second point: the same scope with the pushes stored. */
    int have = 10000 + 64 * 10 * 50 + 256 * 4 * 50 + 8 * 30 * 50 + 60 * 50;
    growth_point(&k, rt, have, growth_first);

    /* 4. Shift change. */
    run_shift("SH", "shift change: 2000 phones x 20 changes", "");
    have += 2000 * 20;

    /* 6. Logins at the production cost, on their own server. */
    {
        char keep_dir[256], keep_base[64];
        pid_t keep_pid = g_pid;
        snprintf(keep_dir, sizeof keep_dir, "%s", g_dir);
        snprintf(keep_base, sizeof keep_base, "%s", g_base);
        g_pid = 0;
        kill(keep_pid, SIGSTOP); /* the sync server sleeps meanwhile: its CPU is not in the figures */
        run_logins();
        kill(keep_pid, SIGCONT);
        g_pid = keep_pid;
        snprintf(g_dir, sizeof g_dir, "%s", keep_dir);
        snprintf(g_base, sizeof g_base, "%s", keep_base);
    }

    /* 5. Growth to 1M (BENCH_GROWTH, 100k by default), then a shift change there. */
    if (growth_max > have) {
        double t0 = now_s();
        load_records("pusher", "G", "G", growth_max - have, GRID);
        double rate = (growth_max - have) / (now_s() - t0);
        printf("  (loaded %d more records at %.0f changes/s)\n", growth_max - have, rate);
        result("growth_load_changes_per_s", rate);
        have = growth_max;
        growth_point(&k, rt, have, growth_first);
        char title[96], suffix[32];
        snprintf(title, sizeof title, "shift change again, %d records stored", have);
        snprintf(suffix, sizeof suffix, "_at_%d", have);
        printf("\n");
        run_shift("SX", title, suffix);
    }
    free(rt);
    free(cursor);
    conn_free(&k);
    server_stop();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", g_dir);

    /* 7. Cluster mode, on servers of its own. */
    run_cluster();

    write_results(out_path);
    curl_global_cleanup();
    return 0;
}
