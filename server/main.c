/* main.c -- casesyncd: reads the command line and the config file, opens the
 * engine and serves the HTTP API with civetweb until SIGTERM or SIGINT. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <malloc.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <civetweb.h>
#include <cjson/cJSON.h>

#include "server/console.h"
#include "server/deadline.h"
#include "server/http.h"
#include "server/routes.h"
#include "sync/sync.h"

#define DEFAULT_DATA "./data"
#define DEFAULT_LISTEN "127.0.0.1:8080"
#define DEFAULT_THREADS 64
/* civetweb's request_timeout_ms: the whole request head must arrive within it,
 * and no read or write may wait longer than it for the next byte. Bodies also
 * have a deadline from it (deadline.h). */
#define DEFAULT_REQUEST_TIMEOUT_MS 30000
/* The first request head of a connection must arrive within this (a phone
 * sends its head in one packet): idle and trickling sockets give their
 * worker thread back this soon (deadline.h). */
#define DEFAULT_HEADER_TIMEOUT_MS 5000
/* Worker threads of the metrics listener: a scraper or two. */
#define METRICS_THREADS "2"
#define MAX_THREADS 1024
#define MAX_CONFIG_BYTES (1u << 20)
#define PBKDF2_ENV "CASESYNC_PBKDF2_ITERATIONS"
/* "m=KIB,t=N,p=N": the argon2id cost of new hashes, for test servers (the
 * config file's argon2_* keys win over it). */
#define ARGON2_ENV "CASESYNC_ARGON2_COST"
/* How long a graceful stop waits for the requests in flight. */
#define DRAIN_TIMEOUT_MS 25000

typedef struct options {
    const char *data_dir;
    const char *listen;
    const char *config_path;
    const char *trusted_proxy;
    int threads;
    int threads_given; /* --threads was on the command line: it wins over the config file */
    int request_timeout_ms;
    int header_timeout_ms;
    const char *metrics_listen; /* NULL: no metrics listener */
    int metrics_given;          /* --metrics-listen was on the command line */
    char time_zone[ROUTES_TIME_ZONE_MAX]; /* "" until the config file names one */
    int utc_offset_min;
    const char *schema_path;    /* --schema; NULL: the config's, else the lookup */
    /* Cluster mode: "" when not given (the command line wins over the config). */
    char cluster[1024], node[64], advertise[256];
} options_t;

/* For civetweb's init_connection callback, which has no user data of ours. */
static int header_timeout_ms = DEFAULT_HEADER_TIMEOUT_MS;

#ifndef CASESYNC_VERSION /* the Makefile's build/version.h; "dev" elsewhere (fuzz builds) */
#define CASESYNC_VERSION "dev"
#define CASESYNC_COMMIT "unknown"
#endif

/* Copies a cluster option into its buffer unless the command line gave it. -1 if too long. */
static int cluster_opt(char *dst, size_t cap, const char *v) {
    if (!v || !*v || strlen(v) >= cap)
        return -1;
    if (!dst[0])
        snprintf(dst, cap, "%s", v);
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: casesyncd [--data DIR] [--listen HOST:PORT] [--config FILE] [--threads N]\n"
               "                 [--trusted-proxy ADDR] [--metrics-listen HOST:PORT]\n"
               "                 [--cluster nats://HOST:PORT[,...] --node NAME [--advertise URL]]\n"
               "  --data DIR            data folder (default %s)\n"
               "  --listen HOST:PORT    address to serve on; port 0 picks a free one (default %s)\n"
               "  --config FILE         JSON file of limits and engine settings\n"
               "  --threads N           worker threads (default %d; wins over \"threads\" in the config)\n"
               "  --trusted-proxy ADDR  believe X-Forwarded-For from this peer address\n"
               "  --cluster URLS        cluster mode: the replicated log on these NATS servers (default: off)\n"
               "  --node NAME           this node's name in the cluster\n"
               "  --advertise URL       where followers redirect writes while this node leads\n"
               "                        (default http://HOST:PORT of --listen)\n"
               "  --metrics-listen HOST:PORT\n"
               "                        also serve GET /metrics, without a token, on this internal\n"
               "                        address (default: off; wins over \"metrics_listen\")\n"
               "  --schema FILE         the case schema (wins over \"schema_path\"; default: DATA/schema.json,\n"
               "                        else one installed beside the binary, else the built-in one)\n"
               "  --log-format json|text  one JSON object per request line (default), or plain text\n"
               "  --version             print the version and exit\n"
               "Every option also takes the form --option=VALUE.\n",
            DEFAULT_DATA, DEFAULT_LISTEN, DEFAULT_THREADS);
}

/* Strict decimal in [lo, hi]. 0 or -1. */
static int parse_ll(const char *s, long long lo, long long hi, long long *out) {
    char *end = NULL;
    if (!s || !*s || *s == '+' || *s == '-' || *s == ' ')
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* HOST:PORT with a numeric port, and no characters civetweb would read as
 * more ports or options (',', 's', 'r' suffixes). */
static int parse_listen(const char *s, char *host, size_t host_size, long long *port) {
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || colon == s || (size_t)(colon - s) >= host_size)
        return -1;
    for (const char *p = s; p < colon; p++) {
        char ch = *p;
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              ch == '.' || ch == '-' || ch == ':' || ch == '[' || ch == ']'))
            return -1;
    }
    if (parse_ll(colon + 1, 0, 65535, port) < 0)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    return 0;
}

/* getopt_long: --opt VALUE and --opt=VALUE (and unambiguous prefixes). */
static int parse_args(int argc, char **argv, options_t *o) {
    enum { O_DATA = 256, O_LISTEN, O_CONFIG, O_PROXY, O_THREADS, O_METRICS, O_SCHEMA, O_LOG_FORMAT, O_VERSION,
           O_CLUSTER, O_NODE, O_ADVERTISE };
    static const struct option longopts[] = {
        {"data", required_argument, NULL, O_DATA},
        {"listen", required_argument, NULL, O_LISTEN},
        {"config", required_argument, NULL, O_CONFIG},
        {"trusted-proxy", required_argument, NULL, O_PROXY},
        {"threads", required_argument, NULL, O_THREADS},
        {"metrics-listen", required_argument, NULL, O_METRICS},
        {"schema", required_argument, NULL, O_SCHEMA},
        {"log-format", required_argument, NULL, O_LOG_FORMAT},
        {"cluster", required_argument, NULL, O_CLUSTER},
        {"node", required_argument, NULL, O_NODE},
        {"advertise", required_argument, NULL, O_ADVERTISE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    o->data_dir = DEFAULT_DATA;
    o->listen = DEFAULT_LISTEN;
    o->config_path = NULL;
    o->trusted_proxy = NULL;
    o->threads = DEFAULT_THREADS;
    o->threads_given = 0;
    o->request_timeout_ms = DEFAULT_REQUEST_TIMEOUT_MS;
    o->header_timeout_ms = DEFAULT_HEADER_TIMEOUT_MS;
    o->metrics_listen = NULL;
    o->metrics_given = 0;
    o->time_zone[0] = '\0';
    o->utc_offset_min = 0;
    o->schema_path = NULL;
    o->cluster[0] = o->node[0] = o->advertise[0] = '\0';
    optind = 1;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1;) {
        const char *v = optarg;
        switch (c) {
        case 'h':
            usage(stdout);
            exit(0);
        case O_VERSION:
            printf("casesyncd %s (commit %s)\n", CASESYNC_VERSION, CASESYNC_COMMIT);
            exit(0);
        case O_DATA: o->data_dir = v; break;
        case O_LISTEN: o->listen = v; break;
        case O_CONFIG: o->config_path = v; break;
        case O_PROXY:
            if (!*v || strlen(v) >= sizeof ((routes_t *)0)->trusted_proxy) {
                fprintf(stderr, "casesyncd: bad --trusted-proxy address\n");
                return -1;
            }
            o->trusted_proxy = v;
            break;
        case O_THREADS: {
            long long n;
            if (parse_ll(v, 1, MAX_THREADS, &n) < 0) {
                fprintf(stderr, "casesyncd: --threads must be 1..%d\n", MAX_THREADS);
                return -1;
            }
            o->threads = (int)n;
            o->threads_given = 1;
            break;
        }
        case O_METRICS:
            o->metrics_listen = v;
            o->metrics_given = 1;
            break;
        case O_SCHEMA:
            if (!*v) {
                fprintf(stderr, "casesyncd: --schema needs a file\n");
                return -1;
            }
            o->schema_path = v;
            break;
        case O_LOG_FORMAT:
            if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0) {
                fprintf(stderr, "casesyncd: --log-format is json or text\n");
                return -1;
            }
            http_set_log_text(strcmp(v, "text") == 0);
            break;
        case O_CLUSTER:
        case O_NODE:
        case O_ADVERTISE: {
            char *dst = c == O_CLUSTER ? o->cluster : c == O_NODE ? o->node : o->advertise;
            size_t cap = c == O_CLUSTER ? sizeof o->cluster : c == O_NODE ? sizeof o->node : sizeof o->advertise;
            if (cluster_opt(dst, cap, v) < 0) {
                fprintf(stderr, "casesyncd: %s must be non-empty and under %zu bytes\n", argv[optind - 1], cap);
                return -1;
            }
            break;
        }
        case ':':
            fprintf(stderr, "casesyncd: %s needs a value\n", argv[optind - 1]);
            return -1;
        default:
            fprintf(stderr, "casesyncd: unknown option %s\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "casesyncd: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    if (!*o->data_dir) {
        fprintf(stderr, "casesyncd: --data must not be empty\n");
        return -1;
    }
    return 0;
}

/* ---- the config file ---------------------------------------------------- */

enum { K_BODY, K_INFLATED, K_DEPTH, K_CHANGES, K_STRING, K_WINDOW, K_TTL, K_PBKDF2, K_MAP, K_SCHEMA,
       K_EVIDENCE_DEADLINE, K_UPLOAD_MAX, K_UPLOAD_EXPIRE, K_THREADS, K_REQUEST_TIMEOUT, K_PUSHING,
       K_ARGON2_T, K_ARGON2_M, K_ARGON2_P, K_HASHING, K_LOGIN_FAILURES, K_ACCOUNT_FAILURES, K_LOGIN_WINDOW,
       K_ELEMENTS, K_INFLATING, K_HEADER_TIMEOUT, K_METRICS_LISTEN, K_TIME_ZONE, K_CLUSTER, K_NODE,
       K_ADVERTISE, K_LEASE, K_REPLICAS };

static const struct {
    const char *key;
    int which;
    double lo, hi; /* integer keys */
} config_keys[] = {
    {"max_body_bytes", K_BODY, 1024, 1073741824.0},
    {"max_inflated_bytes", K_INFLATED, 1024, 4294967296.0},
    {"max_json_depth", K_DEPTH, 1, 1000},
    {"max_changes", K_CHANGES, 1, 100000},
    {"max_string", K_STRING, 1, 67108864.0},
    {"sync_window_days", K_WINDOW, 1, 36500},
    {"token_ttl_days", K_TTL, 1, 36500},
    {"pbkdf2_iterations", K_PBKDF2, 1, 100000000},
    {"map_size", K_MAP, 1048576.0, 70368744177664.0},
    {"schema_path", K_SCHEMA, 0, 0},
    {"evidence_deadline_hours", K_EVIDENCE_DEADLINE, 0, 87600},
    {"max_upload_bytes", K_UPLOAD_MAX, 1, 1099511627776.0},
    {"upload_expire_days", K_UPLOAD_EXPIRE, 1, 3650},
    {"threads", K_THREADS, 1, MAX_THREADS},
    {"request_timeout_ms", K_REQUEST_TIMEOUT, 100, 600000},
    {"max_pushing", K_PUSHING, 1, 100000},
    {"argon2_t_cost", K_ARGON2_T, 1, 100},
    {"argon2_memory_kib", K_ARGON2_M, 8, 4194304},
    {"argon2_parallelism", K_ARGON2_P, 1, 16},
    {"max_hashing", K_HASHING, 1, 1024},
    {"login_max_failures", K_LOGIN_FAILURES, 1, 1000},
    {"login_account_max_failures", K_ACCOUNT_FAILURES, 1, 1000},
    {"login_window_s", K_LOGIN_WINDOW, 1, 86400},
    {"max_json_elements", K_ELEMENTS, 16, 100000000},
    {"max_inflating_bytes", K_INFLATING, 1024, 1099511627776.0},
    {"header_timeout_ms", K_HEADER_TIMEOUT, 100, 600000},
    {"metrics_listen", K_METRICS_LISTEN, 0, 0},
    {"time_zone", K_TIME_ZONE, 0, 0},
    {"cluster", K_CLUSTER, 0, 0},
    {"node", K_NODE, 0, 0},
    {"advertise", K_ADVERTISE, 0, 0},
    {"lease_ms", K_LEASE, 300, 600000},
    {"cluster_replicas", K_REPLICAS, 1, 5},
};


static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    *len = 0;
    if (!f)
        return NULL;
    if (!(buf = malloc(MAX_CONFIG_BYTES + 1)))
        goto fail;
    n = fread(buf, 1, MAX_CONFIG_BYTES + 1, f);
    if (ferror(f) || n > MAX_CONFIG_BYTES) {
        errno = ferror(f) ? EIO : EFBIG;
        goto fail;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    free(buf);
    fclose(f);
    return NULL;
}

/* Applies a config file onto cfg, lim and the civetweb settings of o (threads
 * and the metrics listener only when the command line did not set them).
 * *schema_path and *metrics_listen get malloc'd copies of those keys (caller
 * frees). 0, or -1 after printing what is wrong. */
static int load_config(const char *path, sync_config_t *cfg, http_limits_t *lim, options_t *o,
                       char **schema_path, char **metrics_listen) {
    size_t len;
    const char *end = NULL;
    int rc = -1;
    char *text = read_file(path, &len);
    cJSON *root = NULL;
    if (!text) {
        fprintf(stderr, "casesyncd: cannot read config %s: %s\n", path, strerror(errno));
        return -1;
    }
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        fprintf(stderr, "casesyncd: config %s is not a JSON object\n", path);
        goto done;
    }
    for (const char *p = end; p && p < text + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            fprintf(stderr, "casesyncd: config %s: data after the JSON object\n", path);
            goto done;
        }
    }
    for (const cJSON *it = root->child; it; it = it->next) {
        size_t k = 0, nkeys = sizeof config_keys / sizeof config_keys[0];
        while (k < nkeys && strcmp(config_keys[k].key, it->string ? it->string : "") != 0)
            k++;
        if (k == nkeys) {
            fprintf(stderr, "casesyncd: config %s: unknown key \"%s\"\n", path,
                    it->string ? it->string : "");
            goto done;
        }
        if (config_keys[k].which == K_SCHEMA) {
            if (!cJSON_IsString(it) || !it->valuestring || !*it->valuestring) {
                fprintf(stderr, "casesyncd: config %s: schema_path must be a non-empty string\n",
                        path);
                goto done;
            }
            free(*schema_path);
            if (!(*schema_path = strdup(it->valuestring))) {
                fprintf(stderr, "casesyncd: out of memory\n");
                goto done;
            }
            continue;
        }
        if (config_keys[k].which == K_TIME_ZONE) {
            int minutes;
            if (!cJSON_IsString(it) || !it->valuestring ||
                strlen(it->valuestring) >= sizeof o->time_zone ||
                console_time_zone_parse(it->valuestring, &minutes) < 0) {
                fprintf(stderr,
                        "casesyncd: config %s: time_zone must be \"Asia/Shanghai\", \"UTC\" or an offset "
                        "like \"+08:00\"\n",
                        path);
                goto done;
            }
            snprintf(o->time_zone, sizeof o->time_zone, "%s", it->valuestring);
            o->utc_offset_min = minutes;
            continue;
        }
        if (config_keys[k].which == K_CLUSTER || config_keys[k].which == K_NODE ||
            config_keys[k].which == K_ADVERTISE) {
            int w = config_keys[k].which;
            char *dst = w == K_CLUSTER ? o->cluster : w == K_NODE ? o->node : o->advertise;
            size_t cap = w == K_CLUSTER ? sizeof o->cluster : w == K_NODE ? sizeof o->node : sizeof o->advertise;
            if (!cJSON_IsString(it) || cluster_opt(dst, cap, it->valuestring) < 0) {
                fprintf(stderr, "casesyncd: config %s: %s must be a non-empty string under %zu bytes\n", path,
                        config_keys[k].key, cap);
                goto done;
            }
            continue;
        }
        if (config_keys[k].which == K_METRICS_LISTEN) {
            if (!cJSON_IsString(it) || !it->valuestring || !*it->valuestring) {
                fprintf(stderr, "casesyncd: config %s: metrics_listen must be \"HOST:PORT\"\n", path);
                goto done;
            }
            free(*metrics_listen);
            if (!(*metrics_listen = strdup(it->valuestring))) {
                fprintf(stderr, "casesyncd: out of memory\n");
                goto done;
            }
            if (!o->metrics_given)
                o->metrics_listen = *metrics_listen;
            continue;
        }
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1.0;
        /* In range first, so the cast to an integer is defined. */
        if (!(v >= config_keys[k].lo && v <= config_keys[k].hi) || (double)(long long)v != v) {
            fprintf(stderr, "casesyncd: config %s: %s must be an integer from %.0f to %.0f\n", path,
                    config_keys[k].key, config_keys[k].lo, config_keys[k].hi);
            goto done;
        }
        switch (config_keys[k].which) {
        case K_BODY: lim->max_body_bytes = (size_t)v; break;
        case K_PUSHING: lim->max_pushing = (int)v; break;
        case K_INFLATED: lim->max_inflated_bytes = (size_t)v; break;
        case K_DEPTH: lim->max_json_depth = (int)v; break;
        case K_CHANGES: cfg->max_changes = (int)v; break;
        case K_STRING: cfg->max_string = (int)v; break;
        case K_WINDOW: cfg->sync_window_days = (int)v; break;
        case K_TTL: cfg->token_ttl_days = (int)v; break;
        case K_PBKDF2: cfg->pbkdf2_iterations = (int)v; break;
        case K_MAP: cfg->map_size = (size_t)v; break;
        /* 0 hours means due at once; the engine reads 0 as "the default". */
        case K_EVIDENCE_DEADLINE: cfg->evidence_deadline_hours = v == 0 ? -1 : (int)v; break;
        case K_UPLOAD_MAX: cfg->max_upload_bytes = (uint64_t)v; break;
        case K_UPLOAD_EXPIRE: cfg->upload_expire_days = (int)v; break;
        case K_THREADS:
            if (!o->threads_given) o->threads = (int)v;
            break;
        case K_REQUEST_TIMEOUT: o->request_timeout_ms = (int)v; break;
        case K_ARGON2_T: cfg->argon2_t_cost = (int)v; break;
        case K_ARGON2_M: cfg->argon2_m_kib = (int)v; break;
        case K_ARGON2_P: cfg->argon2_lanes = (int)v; break;
        case K_HASHING: cfg->max_hashing = (int)v; break;
        case K_LOGIN_FAILURES: cfg->login_max_failures = (int)v; break;
        case K_ACCOUNT_FAILURES: cfg->login_account_max_failures = (int)v; break;
        case K_LOGIN_WINDOW: cfg->login_window_s = (int)v; break;
        case K_ELEMENTS: lim->max_json_elements = (size_t)v; break;
        case K_INFLATING: lim->max_inflating_bytes = (size_t)v; break;
        case K_HEADER_TIMEOUT: o->header_timeout_ms = (int)v; break;
        case K_LEASE: cfg->lease_ms = (int)v; break;
        case K_REPLICAS: cfg->cluster_replicas = (int)v; break;
        default: break;
        }
    }
    rc = 0;
done:
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* ---- serving ------------------------------------------------------------ */

/* civetweb's begin_request: a new request on this worker thread, its head
 * read (the head clock stops). */
static int begin_request(struct mg_connection *conn) {
    (void)conn;
    deadline_begin();
    return 0; /* civetweb goes on to the handler */
}

/* civetweb's init_connection: a worker took a new connection and is about
 * to wait for its first request head; that wait gets header_timeout_ms. */
static int init_connection(const struct mg_connection *conn, void **conn_data) {
    (void)conn;
    *conn_data = NULL;
    deadline_head_begin(header_timeout_ms);
    return 0;
}

/* civetweb's connection_close: whatever clock still runs stops. */
static void connection_close(const struct mg_connection *conn) {
    (void)conn;
    deadline_head_end();
}

/* The port civetweb bound for ctx, or -1. */
static int bound_port(struct mg_context *ctx) {
    struct mg_server_port ports[4];
    int nports = mg_get_server_ports(ctx, 4, ports);
    for (int i = 0; i < nports; i++)
        if (ports[i].port > 0)
            return ports[i].port;
    return -1;
}

typedef struct stopper {
    struct mg_context *ctx;
    int done;
} stopper_t;

static void *stopper_main(void *arg) {
    stopper_t *st = arg;
    mg_stop(st->ctx);
    __atomic_store_n(&st->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* Knocks on our own listening socket without waiting for anything. */
static void knock(const struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    (void)connect(fd, (const struct sockaddr *)addr, sizeof *addr);
    close(fd);
}

/* mg_stop(), without its idle wait: civetweb's master thread looks at the
 * stop flag only between 2-second polls of the listening socket, so while
 * mg_stop() runs in another thread a throwaway connection wakes it. */
static void server_stop(struct mg_context *ctx, const char *host, int port) {
    stopper_t st = {ctx, 0};
    pthread_t t;
    struct sockaddr_in addr;
    struct timespec tick = {0, 20 * 1000 * 1000};
    int can_knock = 0;

    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) == 1) {
        if (addr.sin_addr.s_addr == htonl(INADDR_ANY))
            addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        can_knock = 1;
    }
    if (!can_knock || pthread_create(&t, NULL, stopper_main, &st) != 0) {
        mg_stop(ctx);
        return;
    }
    for (int i = 0; i < 150 && !__atomic_load_n(&st.done, __ATOMIC_SEQ_CST); i++) {
        nanosleep(&tick, NULL);
        if (!__atomic_load_n(&st.done, __ATOMIC_SEQ_CST))
            knock(&addr);
    }
    pthread_join(t, NULL);
}

int main(int argc, char **argv) {
    /* Hundreds of worker threads would each get a malloc arena that keeps its
     * freed pages; a few shared arenas keep the resident size near the live data. */
    mallopt(M_ARENA_MAX, 4);
    options_t o;
    sync_config_t cfg;
    http_limits_t lim = {HTTP_MAX_BODY_BYTES, HTTP_MAX_INFLATED_BYTES, HTTP_MAX_JSON_DEPTH, 0, 0,
                         HTTP_MAX_INFLATING_BYTES, 0};
    char *schema_path = NULL, *config_metrics = NULL;
    char host[128], mhost[128], threads[16], request_timeout[16], errtext[256] = "";
    long long port, mport;
    sync_t *s = NULL;
    sync_error_t err;
    struct mg_context *ctx = NULL, *mctx = NULL;
    static routes_t rt; /* outlives every handler call: freed at exit */
    int status = 1, real_port = -1, metrics_port = -1;

    if (parse_args(argc, argv, &o) < 0) {
        usage(stderr);
        return 2;
    }
    if (parse_listen(o.listen, host, sizeof host, &port) < 0) {
        fprintf(stderr, "casesyncd: --listen must be HOST:PORT, not \"%s\"\n", o.listen);
        return 2;
    }

    memset(&cfg, 0, sizeof cfg);
    cfg.data_dir = o.data_dir;
    const char *env = getenv(PBKDF2_ENV);
    if (env && *env) {
        long long n;
        if (parse_ll(env, 1, 100000000, &n) < 0) {
            fprintf(stderr, "casesyncd: %s must be an integer from 1 to 100000000\n", PBKDF2_ENV);
            return 1;
        }
        cfg.pbkdf2_iterations = (int)n;
    }
    env = getenv(ARGON2_ENV);
    if (env && *env && sync_argon2_cost_parse(env, &cfg) < 0) {
        fprintf(stderr, "casesyncd: %s must be like m=65536,t=3,p=1\n", ARGON2_ENV);
        return 1;
    }
    /* The config file wins over the environment. */
    if (o.config_path && load_config(o.config_path, &cfg, &lim, &o, &schema_path, &config_metrics) < 0) {
        free(schema_path);
        free(config_metrics);
        return 1;
    }
    cfg.schema_path = o.schema_path ? o.schema_path : schema_path;
    if (o.cluster[0]) {
        if (!o.node[0]) {
            fprintf(stderr, "casesyncd: --cluster needs --node NAME (or \"node\" in the config)\n");
            free(schema_path);
            free(config_metrics);
            return 2;
        }
        cfg.cluster_url = o.cluster;
        cfg.node_name = o.node;
        cfg.advertise_url = o.advertise;
    }
    if (!lim.max_json_elements)
        lim.max_json_elements = HTTP_MAX_JSON_ELEMENTS(cfg.max_changes > 0 ? cfg.max_changes : 1000);
    if (lim.max_inflating_bytes < lim.max_inflated_bytes) {
        fprintf(stderr, "casesyncd: max_inflating_bytes (%zu) is below max_inflated_bytes (%zu): "
                        "one legal body could never be inflated\n",
                lim.max_inflating_bytes, lim.max_inflated_bytes);
        free(schema_path);
        free(config_metrics);
        return 2;
    }
    if (o.metrics_listen && parse_listen(o.metrics_listen, mhost, sizeof mhost, &mport) < 0) {
        fprintf(stderr, "casesyncd: --metrics-listen must be HOST:PORT, not \"%s\"\n", o.metrics_listen);
        free(schema_path);
        free(config_metrics);
        return 2;
    }
    header_timeout_ms = o.header_timeout_ms;

    /* Block the stop signals in every thread (civetweb's and the engine's
     * inherit this mask); the main thread takes them with sigwait(). */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    mg_init_library(0);

    memset(&err, 0, sizeof err);
    if (sync_open(&cfg, &s, &err) < 0) {
        fprintf(stderr, "casesyncd: cannot open %s: %s (%s)\n", o.data_dir,
                err.message[0] ? err.message : "error", sync_strerror(err.code));
        goto out;
    }

    /* Leftovers of uploads: stale part files, expired uploads, crashes mid-way. */
    if (sync_uploads_sweep(s, &err) < 0)
        fprintf(stderr, "casesyncd: upload sweep: %s\n", err.message);

    routes_init(&rt, s);
    rt.limits = lim;
    rt.max_waiting = routes_max_waiting(o.threads);
    if (o.time_zone[0]) {
        snprintf(rt.time_zone, sizeof rt.time_zone, "%s", o.time_zone);
        rt.utc_offset_min = o.utc_offset_min;
    }
    if (o.trusted_proxy)
        snprintf(rt.trusted_proxy, sizeof rt.trusted_proxy, "%s", o.trusted_proxy);

    if (deadline_init(o.request_timeout_ms) < 0) {
        fprintf(stderr, "casesyncd: cannot set up request body deadlines: %s\n", strerror(errno));
        goto out;
    }
    snprintf(threads, sizeof threads, "%d", o.threads);
    snprintf(request_timeout, sizeof request_timeout, "%d", o.request_timeout_ms);
    const char *options[] = {
        "listening_ports", o.listen,
        "num_threads", threads,
        /* Path segments are decoded in routes.c, one at a time. */
        "decode_url", "no",
        "enable_keep_alive", "yes",
        "request_timeout_ms", request_timeout,
        "tcp_nodelay", "1",
        "enable_directory_listing", "no",
        "access_control_allow_origin", "",
        NULL,
    };
    struct mg_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    callbacks.http_error = routes_civetweb_error;
    callbacks.log_message = http_civetweb_log;
    callbacks.begin_request = begin_request;
    callbacks.init_connection = init_connection;
    callbacks.connection_close = connection_close;
    unsigned errcode = 0;
    struct mg_error_data error = {&errcode, errtext, sizeof errtext};
    struct mg_init_data init = {&callbacks, &rt, options};
    ctx = mg_start2(&init, &error);
    if (!ctx) {
        fprintf(stderr, "casesyncd: cannot listen on %s: %s\n", o.listen,
                errtext[0] ? errtext : "civetweb failed to start");
        goto out;
    }
    mg_set_request_handler(ctx, "/", routes_handle, &rt);
    if ((real_port = bound_port(ctx)) < 0) {
        fprintf(stderr, "casesyncd: civetweb reports no listening port\n");
        goto out;
    }
    if (o.cluster[0] && !o.advertise[0]) {
        char url[300];
        snprintf(url, sizeof url, "http://%s:%d", host, real_port);
        sync_node_advertise(s, url);
    }

    if (o.metrics_listen) {
        /* A context of its own: its handler answers /metrics and nothing
         * else, so the internal address never serves the API. */
        const char *moptions[] = {
            "listening_ports", o.metrics_listen,
            "num_threads", METRICS_THREADS,
            "decode_url", "no",
            "enable_keep_alive", "no",
            "request_timeout_ms", request_timeout,
            "enable_directory_listing", "no",
            "access_control_allow_origin", "",
            NULL,
        };
        struct mg_init_data minit = {&callbacks, &rt, moptions};
        errtext[0] = '\0';
        mctx = mg_start2(&minit, &error);
        if (!mctx) {
            fprintf(stderr, "casesyncd: cannot listen for metrics on %s: %s\n", o.metrics_listen,
                    errtext[0] ? errtext : "civetweb failed to start");
            goto out;
        }
        mg_set_request_handler(mctx, "/", routes_handle_metrics, &rt);
        if ((metrics_port = bound_port(mctx)) < 0) {
            fprintf(stderr, "casesyncd: civetweb reports no metrics port\n");
            goto out;
        }
        /* Before the listening line, which tells a supervisor (and the
         * tests) that everything is up. */
        printf("metrics on http://%s:%d/metrics\n", mhost, metrics_port);
    }
    fprintf(stderr, "casesyncd %s: schema %s\n", CASESYNC_VERSION, sync_schema_source(s));
    printf("listening on http://%s:%d\n", host, real_port);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop, &sig) != 0)
        ;
    fprintf(stderr, "casesyncd: %s: finishing requests in flight\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
    /* A second signal ends the process at once. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    pthread_sigmask(SIG_UNBLOCK, &stop, NULL);
    status = 0;

out:
    /* Long polls wake up and new writes answer 503; the requests in flight
     * send their answers; only then does civetweb stop. */
    if (s)
        sync_shutdown(s);
    if (ctx && routes_drain(&rt, DRAIN_TIMEOUT_MS) < 0)
        fprintf(stderr, "casesyncd: requests still in flight after %d ms; stopping anyway\n",
                DRAIN_TIMEOUT_MS);
    if (mctx && metrics_port > 0)
        server_stop(mctx, mhost, metrics_port);
    else if (mctx)
        mg_stop(mctx);
    if (ctx)
        server_stop(ctx, host, real_port);
    sync_close(s);
    mg_exit_library();
    free(schema_path);
    free(config_metrics);
    if (status == 0)
        fprintf(stderr, "casesyncd: stopped\n");
    return status;
}
