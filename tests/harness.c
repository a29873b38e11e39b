/* harness.c -- starts casesyncd and casesync for the integration tests and
 * talks HTTP to the server; see harness.h for the contracts. */
#include "tests/harness.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <zlib.h>

extern char **environ;

#define READY_TIMEOUT_S 20
#define STOP_TIMEOUT_S 10
#define CLI_TIMEOUT_S 30
#define HTTP_TIMEOUT_S 60
#define MAX_SERVERS 8
#define LOG_TAIL_LINES 60

/* ============================================================================
 * Pool: everything handed to a test is freed at exit.
 * ========================================================================== */

typedef struct pool_item {
    void *p;
    void (*fn)(void *);
} pool_item_t;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pool_item_t *pool;
static size_t pool_n, pool_cap;

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "harness: out of memory (%zu bytes)\n", n);
        _exit(2);
    }
    return p;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "harness: out of memory (%zu bytes)\n", n);
        _exit(2);
    }
    return q;
}

void *h_keep(void *p, void (*fn)(void *)) {
    if (!p) return NULL;
    pthread_mutex_lock(&pool_mu);
    if (pool_n == pool_cap) {
        pool_cap = pool_cap ? pool_cap * 2 : 256;
        pool = xrealloc(pool, pool_cap * sizeof *pool);
    }
    pool[pool_n].p = p;
    pool[pool_n].fn = fn ? fn : free;
    pool_n++;
    pthread_mutex_unlock(&pool_mu);
    return p;
}

void h_free(void *p) {
    if (!p) return;
    void (*fn)(void *) = NULL;
    pthread_mutex_lock(&pool_mu);
    for (size_t i = pool_n; i-- > 0;) {
        if (pool[i].p == p) {
            fn = pool[i].fn;
            pool[i] = pool[--pool_n];
            break;
        }
    }
    pthread_mutex_unlock(&pool_mu);
    if (fn) fn(p);
}

static void pool_drain(void) {
    pthread_mutex_lock(&pool_mu);
    for (size_t i = 0; i < pool_n; i++)
        pool[i].fn(pool[i].p);
    free(pool);
    pool = NULL;
    pool_n = pool_cap = 0;
    pthread_mutex_unlock(&pool_mu);
}

static void json_delete(void *p) {
    cJSON_Delete(p);
}

static char *vfmt(const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    char *s = xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

char *hfmt(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = vfmt(fmt, ap);
    va_end(ap);
    return h_keep(s, NULL);
}

static char *hdup(const char *s) {
    return hfmt("%s", s ? s : "");
}

double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

const char *iso_now(long long offset_ms) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long ms = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000 + offset_ms;
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    return hfmt("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* Growable byte buffer, always NUL-terminated. */
typedef struct buf {
    char *p;
    size_t n, cap;
} buf_t;

static void buf_add(buf_t *b, const void *data, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* Hands the buffer's bytes to the pool ("" when empty). */
static char *buf_keep(buf_t *b) {
    if (!b->p) buf_add(b, "", 0);
    char *p = b->p;
    b->p = NULL;
    b->n = b->cap = 0;
    return h_keep(p, NULL);
}

/* ============================================================================
 * Process helpers
 * ========================================================================== */

static const char *bin_dir(void) {
    const char *b = getenv("CASESYNC_BIN");
    return b && *b ? b : "build/asan";
}

/* environ plus CASESYNC_PBKDF2_ITERATIONS=1000 and the cheapest argon2id
 * cost (CASESYNC_ARGON2_COST), unless a test set its own; malloc'd, freed by
 * the caller (the strings are shared with environ except those added). */
static char **child_env(void) {
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = xmalloc((n + 3) * sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "CASESYNC_PBKDF2_ITERATIONS=", 27) != 0) env[k++] = environ[i];
    env[k++] = "CASESYNC_PBKDF2_ITERATIONS=1000";
    if (!getenv("CASESYNC_ARGON2_COST")) env[k++] = "CASESYNC_ARGON2_COST=m=64,t=1,p=1";
    env[k] = NULL;
    return env;
}

static int status_code(int st) {
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

/* Waits for pid up to timeout_s; the exit status (status_code) or -2 on timeout. */
static int wait_pid(pid_t pid, double timeout_s) {
    double end = now_s() + timeout_s;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return status_code(st);
        if (r < 0 && errno != EINTR) return -1;
        if (now_s() > end) return -2;
        sleep_ms(5);
    }
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *dir) {
    if (dir && dir[0]) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ============================================================================
 * Servers
 * ========================================================================== */

typedef struct slot {
    int used;
    pid_t pid;
    int out_fd; /* read end of the server's stdout, non-blocking */
    char dir[256];
    char log[300];
    int removed; /* the data folder was removed */
} slot_t;

static slot_t slots[MAX_SERVERS];
static int harness_ready;

static void drain_stdout(slot_t *sl) {
    if (sl->out_fd < 0) return;
    char tmp[4096];
    int log = open(sl->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    for (int i = 0; i < 256; i++) {
        ssize_t n = read(sl->out_fd, tmp, sizeof tmp);
        if (n <= 0) break;
        if (log >= 0 && write(log, tmp, (size_t)n) < 0) break;
    }
    if (log >= 0) close(log);
}

static void print_log_file(const char *path, int lines) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "    (no server log at %s)\n", path);
        return;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > 16384 ? size - 16384 : 0;
    fseek(f, from, SEEK_SET);
    char *text = xmalloc((size_t)(size - from) + 1);
    size_t n = fread(text, 1, (size_t)(size - from), f);
    text[n] = '\0';
    fclose(f);
    const char *start = text;
    int seen = 0;
    for (size_t i = n; i-- > 0;) {
        if (text[i] == '\n' && i + 1 < n && ++seen > lines) {
            start = text + i + 1;
            break;
        }
    }
    fprintf(stderr, "    ---- server log %s (tail) ----\n", path);
    for (const char *l = start; *l;) {
        const char *e = strchr(l, '\n');
        int len = e ? (int)(e - l) : (int)strlen(l);
        fprintf(stderr, "    | %.*s\n", len, l);
        l += len + (e ? 1 : 0);
    }
    fprintf(stderr, "    ---- end of server log ----\n");
    free(text);
}

void srv_print_log(const srv_t *s, int lines) {
    if (!s || s->slot < 0) return;
    drain_stdout(&slots[s->slot]);
    print_log_file(slots[s->slot].log, lines > 0 ? lines : LOG_TAIL_LINES);
}

/* Kills every server of this test process: async-signal-safe. */
static void kill_all_servers(void) {
    for (int i = 0; i < MAX_SERVERS; i++)
        if (slots[i].used && slots[i].pid > 0) kill(slots[i].pid, SIGKILL);
}

static void on_alarm(int sig) {
    static const char msg[] = "    harness: test timed out; killing its servers\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
    }
    kill_all_servers();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void harness_exit(void) {
    int failed = test_failed();
    int bad_stop = 0;
    for (int i = 0; i < MAX_SERVERS; i++) {
        slot_t *sl = &slots[i];
        if (!sl->used) continue;
        if (sl->pid > 0) {
            if (failed) {
                kill(sl->pid, SIGKILL);
                wait_pid(sl->pid, 5);
            } else {
                /* A passing test that left its server running: stop it the
                 * graceful way and hold it to the same standard. */
                kill(sl->pid, SIGTERM);
                int rc = wait_pid(sl->pid, STOP_TIMEOUT_S);
                if (rc == -2) {
                    kill(sl->pid, SIGKILL);
                    wait_pid(sl->pid, 5);
                }
                if (rc != 0) {
                    fprintf(stderr, "    harness: server %d ended with status %d at exit\n", (int)sl->pid,
                            rc);
                    bad_stop = 1;
                }
            }
            sl->pid = 0;
        }
        if (failed || bad_stop) srv_print_log(&(srv_t){.slot = i}, LOG_TAIL_LINES);
        if (sl->out_fd >= 0) {
            close(sl->out_fd);
            sl->out_fd = -1;
        }
        if (!sl->removed && !getenv("CASESYNC_KEEP_DATA")) {
            rm_tree(sl->dir);
            sl->removed = 1;
        }
    }
    if (failed || bad_stop) _exit(1);
    pool_drain();
    curl_global_cleanup();
}

static void harness_init(void) {
    if (harness_ready) return;
    harness_ready = 1;
    for (int i = 0; i < MAX_SERVERS; i++)
        slots[i].out_fd = -1;
    curl_global_init(CURL_GLOBAL_ALL);
    atexit(harness_exit);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Starts casesyncd on the slot's folder and waits for its listening line. */
/* srv_restart_same_port: the address of the next launch ("" for port 0). */
static char relisten[32];

static int launch(srv_t *s) {
    slot_t *sl = &slots[s->slot];
    const char *bin = hfmt("%s/casesyncd", bin_dir());
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        perror("harness: pipe2");
        return -1;
    }
    int logfd = open(sl->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        perror("harness: server log");
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    char **env = child_env();
    /* CASESYNC_TEST_CONFIG (set by a test before srv_start) names a --config file. */
    const char *config = getenv("CASESYNC_TEST_CONFIG");
    char *argv[] = {(char *)bin, "--data", sl->dir, "--listen", relisten[0] ? relisten : "127.0.0.1:0",
                    NULL, NULL, NULL};
    if (config && *config) {
        argv[5] = "--config";
        argv[6] = (char *)config;
    }
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("harness: fork");
        free(env);
        close(pfd[0]);
        close(pfd[1]);
        close(logfd);
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(pfd[1], 1);
        dup2(logfd, 2);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(126);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        execve(bin, argv, env);
        dprintf(2, "harness: cannot run %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    free(env);
    close(pfd[1]);
    close(logfd);
    sl->pid = pid;
    s->pid = pid;
    sl->out_fd = pfd[0];

    /* Read stdout until the listening line, 20 s at most. */
    buf_t out = {0};
    double end = now_s() + READY_TIMEOUT_S;
    int port = 0;
    const char *why = "timed out";
    while (!port) {
        double left = end - now_s();
        if (left <= 0) break;
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        char tmp[512];
        ssize_t n = read(pfd[0], tmp, sizeof tmp);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            why = "its stdout closed (it exited?)";
            break;
        }
        buf_add(&out, tmp, (size_t)n);
        const char *l = strstr(out.p, "listening on http://");
        if (l && strchr(l, '\n')) {
            const char *hostport = l + strlen("listening on http://");
            const char *colon = strrchr(hostport, ':');
            const char *nl = strchr(l, '\n');
            if (colon && colon < nl) port = atoi(colon + 1);
            if (port <= 0) {
                why = "its listening line has no port";
                break;
            }
        }
    }
    /* Whatever came before the line goes to the log too. */
    if (out.n) {
        int log = open(sl->log, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (log >= 0) {
            if (write(log, out.p, out.n) < 0) {
            }
            close(log);
        }
    }
    free(out.p);
    fcntl(pfd[0], F_SETFL, fcntl(pfd[0], F_GETFL) | O_NONBLOCK);
    if (port <= 0) {
        fprintf(stderr,
                "    harness: casesyncd did not print 'listening on http://HOST:PORT' within %d s: %s\n",
                READY_TIMEOUT_S, why);
        kill(pid, SIGKILL);
        int rc = wait_pid(pid, 5);
        fprintf(stderr, "    harness: casesyncd exit status %d\n", rc);
        sl->pid = s->pid = 0;
        close(sl->out_fd);
        sl->out_fd = -1;
        return -1;
    }
    s->port = port;
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", port);
    return 0;
}

int srv_start(srv_t *s) {
    harness_init();
    memset(s, 0, sizeof *s);
    s->slot = -1;
    int i = 0;
    while (i < MAX_SERVERS && slots[i].used)
        i++;
    if (i == MAX_SERVERS) {
        fprintf(stderr, "    harness: more than %d servers in one test\n", MAX_SERVERS);
        return -1;
    }
    slot_t *sl = &slots[i];
    memset(sl, 0, sizeof *sl);
    sl->out_fd = -1;
    snprintf(sl->dir, sizeof sl->dir, "/tmp/casesync-test-XXXXXX");
    if (!mkdtemp(sl->dir)) {
        perror("harness: mkdtemp");
        return -1;
    }
    char dir[sizeof sl->dir];
    memcpy(dir, sl->dir, sizeof dir);
    snprintf(sl->log, sizeof sl->log, "%s/server.log", dir);
    sl->used = 1;
    s->slot = i;
    snprintf(s->dir, sizeof s->dir, "%s", sl->dir);
    return launch(s);
}

int srv_start_config(srv_t *s, const char *config_json) {
    const char *cfg = hfmt("/tmp/casesync-config-%d.json", (int)getpid());
    FILE *f = fopen(cfg, "w");
    if (!f || fputs(config_json, f) < 0 || fclose(f) != 0) return -1;
    setenv("CASESYNC_TEST_CONFIG", cfg, 1);
    int rc = srv_start(s);
    unsetenv("CASESYNC_TEST_CONFIG");
    remove(cfg);
    return rc;
}

int srv_restart(srv_t *s) {
    if (!s || s->slot < 0) return -1;
    slot_t *sl = &slots[s->slot];
    if (sl->pid > 0) {
        fprintf(stderr, "    harness: srv_restart while the server still runs\n");
        return -1;
    }
    if (sl->out_fd >= 0) {
        close(sl->out_fd);
        sl->out_fd = -1;
    }
    int log = open(sl->log, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (log >= 0) {
        dprintf(log, "==== harness: restart ====\n");
        close(log);
    }
    return launch(s);
}

int srv_restart_same_port(srv_t *s) {
    if (!s || s->port <= 0) return -1;
    snprintf(relisten, sizeof relisten, "127.0.0.1:%d", s->port);
    int rc = srv_restart(s);
    relisten[0] = 0;
    return rc;
}

int srv_stop(srv_t *s) {
    if (!s || s->slot < 0 || slots[s->slot].pid <= 0) return 0;
    slot_t *sl = &slots[s->slot];
    kill(sl->pid, SIGTERM);
    int rc = wait_pid(sl->pid, STOP_TIMEOUT_S);
    if (rc == -2) {
        fprintf(stderr, "    harness: casesyncd (pid %d) did not stop within %d s of SIGTERM; killed\n",
                (int)sl->pid, STOP_TIMEOUT_S);
        kill(sl->pid, SIGKILL);
        wait_pid(sl->pid, 5);
        rc = -1;
    }
    sl->pid = s->pid = 0;
    drain_stdout(sl);
    close(sl->out_fd);
    sl->out_fd = -1;
    if (rc != 0) {
        fprintf(stderr, "    harness: casesyncd stopped with status %d\n", rc);
        print_log_file(sl->log, LOG_TAIL_LINES);
    }
    return rc;
}

void srv_kill9(srv_t *s) {
    if (!s || s->slot < 0 || slots[s->slot].pid <= 0) return;
    slot_t *sl = &slots[s->slot];
    kill(sl->pid, SIGKILL);
    wait_pid(sl->pid, 10);
    sl->pid = s->pid = 0;
    drain_stdout(sl);
    close(sl->out_fd);
    sl->out_fd = -1;
}

void srv_cleanup(srv_t *s) {
    if (!s || s->slot < 0) return;
    srv_stop(s);
    slot_t *sl = &slots[s->slot];
    if (!sl->removed && !getenv("CASESYNC_KEEP_DATA")) {
        rm_tree(sl->dir);
        sl->removed = 1;
    }
}

/* ============================================================================
 * Command line
 * ========================================================================== */

cli_res_t cli_run(const char *dir, const char *in, ...) {
    harness_init();
    cli_res_t res = {.rc = -1, .out = NULL, .err = NULL};
    const char *argv[64];
    int argc = 0;
    argv[argc++] = hfmt("%s/casesync", bin_dir());
    argv[argc++] = "--data";
    argv[argc++] = dir;
    va_list ap;
    va_start(ap, in);
    for (const char *a; argc < 62 && (a = va_arg(ap, const char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;

    int pin[2], pout[2], perr[2];
    if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC)) {
        perror("harness: pipe2");
        res.out = hdup("");
        res.err = hdup("");
        return res;
    }
    char **env = child_env();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        execve(argv[0], (char *const *)argv, env);
        dprintf(2, "harness: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    free(env);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    buf_t out = {0}, err = {0};
    const char *w = in ? in : "";
    size_t wleft = strlen(w);
    int win = pin[1];
    if (wleft == 0) {
        close(win);
        win = -1;
    }
    int open_out = 1, open_err = 1;
    double end = now_s() + CLI_TIMEOUT_S;
    while ((open_out || open_err || win >= 0) && now_s() < end && pid > 0) {
        struct pollfd p[3];
        int np = 0, iout = -1, ierr = -1, iin = -1;
        if (open_out) {
            iout = np;
            p[np++] = (struct pollfd){.fd = pout[0], .events = POLLIN};
        }
        if (open_err) {
            ierr = np;
            p[np++] = (struct pollfd){.fd = perr[0], .events = POLLIN};
        }
        if (win >= 0) {
            iin = np;
            p[np++] = (struct pollfd){.fd = win, .events = POLLOUT};
        }
        int r = poll(p, (nfds_t)np, 100);
        if (r <= 0) continue;
        char tmp[4096];
        if (iout >= 0 && p[iout].revents) {
            ssize_t n = read(pout[0], tmp, sizeof tmp);
            if (n > 0)
                buf_add(&out, tmp, (size_t)n);
            else if (n == 0 || errno != EINTR)
                open_out = 0;
        }
        if (ierr >= 0 && p[ierr].revents) {
            ssize_t n = read(perr[0], tmp, sizeof tmp);
            if (n > 0)
                buf_add(&err, tmp, (size_t)n);
            else if (n == 0 || errno != EINTR)
                open_err = 0;
        }
        if (iin >= 0 && p[iin].revents) {
            ssize_t n = write(win, w, wleft);
            if (n > 0) {
                w += n;
                wleft -= (size_t)n;
            }
            if (wleft == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                close(win);
                win = -1;
            }
        }
    }
    if (win >= 0) close(win);
    close(pout[0]);
    close(perr[0]);
    if (pid > 0) {
        int rc = wait_pid(pid, open_out || open_err ? 0.01 : 5);
        if (rc == -2) {
            fprintf(stderr, "    harness: %s did not finish within %d s; killed\n", argv[0], CLI_TIMEOUT_S);
            kill(pid, SIGKILL);
            wait_pid(pid, 5);
            rc = -1;
        }
        res.rc = rc;
    }
    res.out = buf_keep(&out);
    res.err = buf_keep(&err);
    return res;
}

const char *user_add(srv_t *s, const char *username, const char *password, const char *role, const char *unit,
                     const char *grids_csv) {
    cli_res_t r = grids_csv ? cli(s->dir, hfmt("%s\n", password), "user", "add", username, "--role", role,
                                  "--unit", unit, "--grids", grids_csv)
                            : cli(s->dir, hfmt("%s\n", password), "user", "add", username, "--role", role,
                                  "--unit", unit);
    if (r.rc != 0) {
        fprintf(stderr, "    harness: casesync user add %s exited %d\n    stdout: %s\n    stderr: %s\n",
                username, r.rc, r.out, r.err);
        return NULL;
    }
    /* The id: a JSON user object's "id", else the output's one word (or the
     * last word of its first line, e.g. "created user u3"). */
    const char *t = r.out;
    while (isspace((unsigned char)*t))
        t++;
    if (*t == '{') {
        cJSON *j = jparse(t);
        const char *id = jstr(j, "id");
        if (!id) id = jstr(j, "user.id");
        if (id) return hdup(id);
    }
    const char *e = t;
    while (*e && *e != '\n')
        e++;
    const char *w = e;
    while (w > t && isspace((unsigned char)w[-1]))
        w--;
    const char *we = w;
    while (w > t && !isspace((unsigned char)w[-1]))
        w--;
    if (we == w) {
        fprintf(stderr, "    harness: casesync user add printed no id: %s\n", r.out);
        return NULL;
    }
    return hfmt("%.*s", (int)(we - w), w);
}

static const struct {
    const char *name, *role, *unit, *grids;
} cast[] = {
    {"off1", "officer", "U1", GRID1},       {"off2", "officer", "U1", GRID1},
    {"off3", "officer", "U1", GRID2},       {"aux1", "auxiliary", "U1", GRID1},
    {"sup1", "supervisor", "U1", NULL},     {"sup2", "supervisor", "U1", NULL},
    {"leg1", "legal_reviewer", "U1", NULL}, {"offx", "officer", "U2", GRID1},
    {"offx2", "officer", "U2", GRID1},
    {"admin", "admin", "HQ", NULL},
};

const char *std_pass(const char *name) {
    return hfmt("Secret-%s-pw1", name);
}

const char *std_user(srv_t *s, const char *name) {
    for (size_t i = 0; i < sizeof cast / sizeof cast[0]; i++)
        if (strcmp(cast[i].name, name) == 0)
            return user_add(s, name, std_pass(name), cast[i].role, cast[i].unit, cast[i].grids);
    fprintf(stderr, "    harness: no standard user %s\n", name);
    return NULL;
}

/* ============================================================================
 * HTTP
 * ========================================================================== */

void curl_set_method(CURL *c, const char *method, const void *data, size_t len) {
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (data) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        if (strcmp(method, "POST") != 0) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        /* A bodiless POST/PUT/PATCH still sends Content-Length: 0. */
        if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        }
    }
}

static size_t on_body(char *ptr, size_t size, size_t n, void *ud) {
    buf_add(ud, ptr, size * n);
    return size * n;
}

/* Keeps only the header block of the final answer (not of a 100 Continue). */
static size_t on_header(char *ptr, size_t size, size_t n, void *ud) {
    buf_t *b = ud;
    if (size * n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) b->n = 0;
    buf_add(b, ptr, size * n);
    return size * n;
}

static int has_header(const char *const *headers, const char *name) {
    size_t nl = strlen(name);
    for (const char *const *h = headers; h && *h; h++)
        if (strncasecmp(*h, name, nl) == 0 && (*h)[nl] == ':') return 1;
    return 0;
}

/* ============================================================================
 * Response capture for the OpenAPI check (tests/test_openapi.c)
 * ========================================================================== */

/* With CASESYNC_CAPTURE_DIR set, http_raw() appends each answer it got to
 * DIR/<pid>.jsonl, one JSON line: {"method","path","status","ctype","cenc",
 * "b64","truncated"}, path without the query, the body as base64. The last
 * test of the run validates every line against docs/openapi.yaml. Volume is
 * bounded: at most CAPTURE_PER_KEY answers per method, status and path shape
 * (long or digit-bearing segments count as one) in one test process, and
 * bodies over CAPTURE_MAX_BODY are recorded without their bytes. */
#define CAPTURE_PER_KEY 4
#define CAPTURE_MAX_BODY (1 << 20)
#define CAPTURE_KEYS 256

static pthread_mutex_t capture_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char key[160];
    int n;
} capture_keys[CAPTURE_KEYS];
static int capture_nkeys;

/* Counts one more answer of its shape; 1 while under the per-key cap. Under capture_mu. */
static int capture_take(const char *method, long status, const char *path) {
    char key[160];
    size_t o = (size_t)snprintf(key, sizeof key, "%s %ld ", method, status);
    for (const char *p = path; *p && *p != '?' && o + 2 < sizeof key;) {
        const char *e = strchr(p + 1, '/');
        size_t len = e ? (size_t)(e - p) : strcspn(p, "?");
        int idlike = len > 12;
        for (size_t i = 0; i < len && !idlike; i++)
            idlike = isdigit((unsigned char)p[i]);
        if (idlike && len > 1 && strncmp(p, "/v1", 3) != 0) {
            key[o++] = '/';
            key[o++] = '*';
        } else {
            size_t k = len < sizeof key - o - 1 ? len : sizeof key - o - 1;
            memcpy(key + o, p, k);
            o += k;
        }
        p += len;
    }
    key[o] = '\0';
    for (int i = 0; i < capture_nkeys; i++)
        if (strcmp(capture_keys[i].key, key) == 0) return capture_keys[i].n++ < CAPTURE_PER_KEY;
    if (capture_nkeys == CAPTURE_KEYS) return 0;
    snprintf(capture_keys[capture_nkeys].key, sizeof capture_keys[0].key, "%s", key);
    capture_keys[capture_nkeys++].n = 1;
    return 1;
}

static void capture(const char *method, const char *path, const resp_t *r) {
    const char *dir = getenv("CASESYNC_CAPTURE_DIR");
    if (!dir || !*dir || r->status == 0) return;
    pthread_mutex_lock(&capture_mu);
    if (!capture_take(method, r->status, path)) {
        pthread_mutex_unlock(&capture_mu);
        return;
    }
    int truncated = r->len > CAPTURE_MAX_BODY;
    size_t n = truncated ? 0 : r->len;
    char *b64 = xmalloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)r->body, (int)n);
    const char *ctype = resp_header(r, "Content-Type"), *cenc = resp_header(r, "Content-Encoding");
    cJSON *j = cJSON_CreateObject();
    char *line = NULL;
    if (j && cJSON_AddStringToObject(j, "method", method) &&
        cJSON_AddStringToObject(j, "path", hfmt("%.*s", (int)strcspn(path, "?"), path)) &&
        cJSON_AddNumberToObject(j, "status", (double)r->status) &&
        cJSON_AddStringToObject(j, "ctype", ctype ? ctype : "") &&
        cJSON_AddStringToObject(j, "cenc", cenc ? cenc : "") && cJSON_AddStringToObject(j, "b64", b64) &&
        cJSON_AddBoolToObject(j, "truncated", truncated))
        line = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    free(b64);
    if (line) {
        char file[512];
        snprintf(file, sizeof file, "%s/%ld.jsonl", dir, (long)getpid());
        FILE *f = fopen(file, "a");
        if (f) {
            fprintf(f, "%s\n", line);
            fclose(f);
        }
        free(line);
    }
    pthread_mutex_unlock(&capture_mu);
}

resp_t http_raw(srv_t *s, const char *method, const char *path, const char *token, const void *data,
                size_t len, const char *const *headers) {
    resp_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.what, sizeof r.what, "%s %s", method, path);
    buf_t body = {0}, hdrs = {0};
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(r.err, sizeof r.err, "curl_easy_init failed");
        r.body = buf_keep(&body);
        r.headers = buf_keep(&hdrs);
        return r;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    const char *url = hfmt("%s%s", s->base, path);
    struct curl_slist *hl = NULL;
    if (token) hl = curl_slist_append(hl, hfmt("Authorization: Bearer %s", token));
    if (data && !has_header(headers, "Content-Type"))
        hl = curl_slist_append(hl, "Content-Type: application/json");
    if (!has_header(headers, "Expect")) hl = curl_slist_append(hl, "Expect:");
    for (const char *const *h = headers; h && *h; h++)
        hl = curl_slist_append(hl, *h);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)HTTP_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hdrs);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_set_method(c, method, data, len);
    double t0 = now_s();
    CURLcode rc = curl_easy_perform(c);
    r.secs = now_s() - t0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    if (rc != CURLE_OK)
        snprintf(r.err, sizeof r.err, "curl error %d: %.200s; ", (int)rc,
                 errbuf[0] ? errbuf : curl_easy_strerror(rc));
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    r.len = body.n;
    r.body = buf_keep(&body);
    r.headers = buf_keep(&hdrs);
    capture(method, path, &r);
    return r;
}

resp_t http(srv_t *s, const char *method, const char *path, const char *token, const char *body,
            const char *const *headers) {
    return http_raw(s, method, path, token, body, body ? strlen(body) : 0, headers);
}

resp_t metrics_scrape(srv_t *s) {
    static char dir[sizeof s->dir];
    static const char *token;
    if (!token || strcmp(dir, s->dir) != 0) {
        if (strcmp(dir, s->dir) != 0 && !user_add(s, "metrics-admin", "metrics-admin-pass", "admin", "HQ", NULL))
            fprintf(stderr, "    harness: no metrics-admin user\n");
        snprintf(dir, sizeof dir, "%s", s->dir);
        token = login(s, "metrics-admin", "metrics-admin-pass", "dev-metrics", NULL);
        if (token) token = hdup(token);
    }
    return http(s, "GET", "/metrics", token, NULL, NULL);
}

cJSON *resp_json(resp_t *r) {
    if (!r->json && r->body && r->len) r->json = jparse(r->body);
    return r->json;
}

const char *resp_header(const resp_t *r, const char *name) {
    size_t nl = strlen(name);
    for (const char *l = r->headers; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        if (len > nl && strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1, *ve = l + len;
            while (v < ve && isspace((unsigned char)*v))
                v++;
            while (ve > v && isspace((unsigned char)ve[-1]))
                ve--;
            return hfmt("%.*s", (int)(ve - v), v);
        }
        l += len + (e ? 1 : 0);
    }
    return NULL;
}

const char *resp_error_code(resp_t *r) {
    return jstr(resp_json(r), "error.code");
}

void resp_free(resp_t *r) {
    if (!r) return;
    h_free(r->body);
    h_free(r->headers);
    h_free(r->json);
    r->body = r->headers = NULL;
    r->json = NULL;
    r->len = 0;
}

/* ============================================================================
 * JSON
 * ========================================================================== */

cJSON *jget(const cJSON *root, const char *path) {
    const cJSON *cur = root;
    const char *p = path;
    while (cur && *p) {
        if (*p == '.') {
            p++;
            continue;
        }
        if (*p == '[') {
            char *end;
            long i = strtol(p + 1, &end, 10);
            if (*end != ']' || !cJSON_IsArray(cur)) return NULL;
            cur = cJSON_GetArrayItem(cur, (int)i);
            p = end + 1;
            continue;
        }
        size_t n = strcspn(p, ".[");
        char key[256];
        if (n >= sizeof key || !cJSON_IsObject(cur)) return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        cur = cJSON_GetObjectItemCaseSensitive(cur, key);
        p += n;
    }
    return (cJSON *)cur;
}

const char *jstr(const cJSON *root, const char *path) {
    const cJSON *v = jget(root, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

long long jint(const cJSON *root, const char *path) {
    const cJSON *v = jget(root, path);
    return cJSON_IsNumber(v) ? (long long)v->valuedouble : JNONE;
}

double jnum(const cJSON *root, const char *path, double dflt) {
    const cJSON *v = jget(root, path);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

int jbool(const cJSON *root, const char *path) {
    const cJSON *v = jget(root, path);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : -1;
}

int jlen(const cJSON *root, const char *path) {
    const cJSON *v = jget(root, path);
    return cJSON_IsArray(v) || cJSON_IsObject(v) ? cJSON_GetArraySize(v) : -1;
}

const char *jprint(const cJSON *v) {
    if (!v) return "(null)";
    char *s = cJSON_PrintUnformatted(v);
    return s ? h_keep(s, NULL) : "(unprintable)";
}

cJSON *jparse(const char *text) {
    if (!text) return NULL;
    return h_keep(cJSON_ParseWithLengthOpts(text, strlen(text), NULL, 0), json_delete);
}

int jarr_has(const cJSON *arr, const char *key, const char *s) {
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        const cJSON *v = key ? cJSON_GetObjectItemCaseSensitive(it, key) : it;
        if (cJSON_IsString(v) && strcmp(v->valuestring, s) == 0) return 1;
    }
    return 0;
}

cJSON *jarr_find(const cJSON *arr, const char *key, const char *s) {
    cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, key);
        if (cJSON_IsString(v) && strcmp(v->valuestring, s) == 0) return it;
    }
    return NULL;
}

/* Compact text of a tree we own, then frees the tree. */
static const char *print_and_delete(cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s ? h_keep(s, NULL) : "null";
}

/* Parses a JSON text given by a test; exits the test loudly on bad JSON. */
static cJSON *parse_arg(const char *text, const char *what) {
    cJSON *j = cJSON_Parse(text);
    if (!j) {
        fprintf(stderr, "    harness: bad JSON in %s: %s\n", what, text);
        _exit(2);
    }
    return j;
}

/* ============================================================================
 * Changes
 * ========================================================================== */

const char *ch_create_in(const char *id, const char *type, const char *procedure, const char *unit,
                         const char *grid, const char *extra_fields) {
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddStringToObject(ch, "op", "create");
    cJSON_AddStringToObject(ch, "record_id", id);
    cJSON_AddStringToObject(ch, "type", type);
    cJSON_AddStringToObject(ch, "at", iso_now(-1000));
    cJSON *f = cJSON_AddObjectToObject(ch, "fields");
    cJSON_AddStringToObject(f, "procedure", procedure);
    cJSON_AddStringToObject(f, "source", "patrol");
    cJSON_AddStringToObject(f, "description", "street vendor");
    cJSON_AddStringToObject(f, "occurred_at", iso_now(-60000));
    cJSON_AddStringToObject(f, "grid", grid);
    cJSON_AddStringToObject(f, "address", "1 Dongcheng Rd");
    cJSON *loc = cJSON_AddObjectToObject(f, "location");
    cJSON_AddNumberToObject(loc, "lon", 116.4);
    cJSON_AddNumberToObject(loc, "lat", 39.9);
    cJSON_AddStringToObject(loc, "crs", "wgs84");
    cJSON_AddNumberToObject(loc, "accuracy_m", 5);
    cJSON_AddStringToObject(f, "unit", unit);
    if (extra_fields) {
        cJSON *x = parse_arg(extra_fields, "ch_create extra fields");
        cJSON *it = x->child;
        while (it) {
            cJSON *next = it->next;
            cJSON_DeleteItemFromObjectCaseSensitive(f, it->string);
            if (!cJSON_IsNull(it)) cJSON_AddItemToObject(f, it->string, cJSON_Duplicate(it, 1));
            it = next;
        }
        cJSON_Delete(x);
    }
    return print_and_delete(ch);
}

const char *ch_create(const char *id, const char *procedure, const char *extra_fields) {
    return ch_create_in(id, TYPE_VENDING, procedure, "U1", GRID1, extra_fields);
}

const char *ch_update_at(const char *id, long long base, const char *at, const char *set_json,
                         const char *append_json) {
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddStringToObject(ch, "op", "update");
    cJSON_AddStringToObject(ch, "record_id", id);
    cJSON_AddNumberToObject(ch, "base_version", (double)base);
    cJSON_AddStringToObject(ch, "at", at ? at : iso_now(0));
    if (set_json) cJSON_AddItemToObject(ch, "set", parse_arg(set_json, "ch_update set"));
    if (append_json) cJSON_AddItemToObject(ch, "append", parse_arg(append_json, "ch_update append"));
    return print_and_delete(ch);
}

const char *ch_update(const char *id, long long base, const char *set_json, const char *append_json) {
    return ch_update_at(id, base, NULL, set_json, append_json);
}

const char *ch_transition(const char *id, long long base, const char *to) {
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddStringToObject(ch, "op", "transition");
    cJSON_AddStringToObject(ch, "record_id", id);
    cJSON_AddNumberToObject(ch, "base_version", (double)base);
    cJSON_AddStringToObject(ch, "at", iso_now(0));
    cJSON_AddStringToObject(ch, "to", to);
    return print_and_delete(ch);
}

const char *ch_void(const char *id, long long base, const char *reason) {
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddStringToObject(ch, "op", "void");
    cJSON_AddStringToObject(ch, "record_id", id);
    cJSON_AddNumberToObject(ch, "base_version", (double)base);
    cJSON_AddStringToObject(ch, "at", iso_now(0));
    cJSON_AddStringToObject(ch, "reason", reason);
    return print_and_delete(ch);
}

const char *jarr_join(const char *first, ...) {
    buf_t b = {0};
    buf_add(&b, "[", 1);
    va_list ap;
    va_start(ap, first);
    int n = 0;
    for (const char *x = first; x; x = va_arg(ap, const char *)) {
        if (n++) buf_add(&b, ",", 1);
        buf_add(&b, x, strlen(x));
    }
    va_end(ap);
    buf_add(&b, "]", 1);
    return buf_keep(&b);
}

/* ============================================================================
 * Sessions
 * ========================================================================== */

resp_t login_resp(srv_t *s, const char *user, const char *pass, const char *device) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "username", user);
    cJSON_AddStringToObject(b, "password", pass);
    cJSON_AddStringToObject(b, "device_id", device);
    cJSON_AddStringToObject(b, "device_name", "test phone");
    cJSON_AddStringToObject(b, "app_version", "1.0.0-test");
    return http(s, "POST", "/v1/auth/login", NULL, print_and_delete(b), NULL);
}

const char *login(srv_t *s, const char *user, const char *pass, const char *device, long long *next_seq) {
    resp_t r = login_resp(s, user, pass, device);
    const char *tok = jstr(resp_json(&r), "token");
    if (r.status != 200 || !tok) {
        fprintf(stderr, "    harness: login %s on %s -> %ld %s%s\n", user, device, r.status, r.err, r.body);
        return NULL;
    }
    if (next_seq) *next_seq = jint(r.json, "next_changeset_seq");
    return hdup(tok);
}

const char *push_body(const char *device, long long seq, const char *changes_json) {
    return hfmt("{\"device_id\":\"%s\",\"changeset_seq\":%lld,\"schema_version\":1,\"changes\":%s}", device,
                seq, changes_json);
}

resp_t push(srv_t *s, const char *token, const char *device, long long seq, const char *changes_json) {
    return http(s, "POST", "/v1/sync/push", token, push_body(device, seq, changes_json), NULL);
}

int phone_login(phone_t *p, srv_t *s, const char *user, const char *pass, const char *device) {
    memset(p, 0, sizeof *p);
    p->srv = s;
    snprintf(p->user, sizeof p->user, "%s", user);
    snprintf(p->pass, sizeof p->pass, "%s", pass);
    snprintf(p->device, sizeof p->device, "%s", device);
    resp_t r = login_resp(s, user, pass, device);
    cJSON *j = resp_json(&r);
    const char *tok = jstr(j, "token");
    if (r.status != 200 || !tok) {
        fprintf(stderr, "    harness: login %s on %s -> %ld %s%s\n", user, device, r.status, r.err, r.body);
        return -1;
    }
    p->token = hdup(tok);
    const char *uid = jstr(j, "user.id");
    snprintf(p->user_id, sizeof p->user_id, "%s", uid ? uid : "");
    long long seq = jint(j, "next_changeset_seq");
    p->seq = seq == JNONE ? 1 : seq;
    return 0;
}

int std_phone(phone_t *p, srv_t *s, const char *name, const char *device) {
    if (!std_user(s, name)) return -1;
    return phone_login(p, s, name, std_pass(name), device);
}

resp_t phone_push(phone_t *p, const char *changes_json) {
    resp_t r = push(p->srv, p->token, p->device, p->seq, changes_json);
    if (r.status == 200) p->seq++;
    return r;
}

resp_t phone_pull(phone_t *p, int limit, int wait) {
    buf_t q = {0};
    const char *sep = "?";
    buf_add(&q, "/v1/sync/pull", 13);
    if (p->cursor) {
        char *esc = curl_easy_escape(NULL, p->cursor, 0);
        const char *part = hfmt("%scursor=%s", sep, esc ? esc : "");
        curl_free(esc);
        buf_add(&q, part, strlen(part));
        sep = "&";
    }
    if (limit > 0) {
        const char *part = hfmt("%slimit=%d", sep, limit);
        buf_add(&q, part, strlen(part));
        sep = "&";
    }
    if (wait > 0) {
        const char *part = hfmt("%swait=%d", sep, wait);
        buf_add(&q, part, strlen(part));
    }
    const char *path = buf_keep(&q);
    resp_t r = http(p->srv, "GET", path, p->token, NULL, NULL);
    if (r.status == 200) {
        const char *c = jstr(resp_json(&r), "cursor");
        if (c) p->cursor = hdup(c);
    }
    return r;
}

cJSON *phone_pull_all(phone_t *p) {
    cJSON *all = h_keep(cJSON_CreateArray(), json_delete);
    for (int page = 0; page < 50; page++) {
        resp_t r = phone_pull(p, 0, 0);
        cJSON *j = resp_json(&r);
        if (r.status != 200 || !cJSON_IsArray(jget(j, "changes"))) {
            fprintf(stderr, "    harness: %s -> %ld %s%.1500s\n", r.what, r.status, r.err, r.body);
            return NULL;
        }
        cJSON *it;
        cJSON_ArrayForEach(it, jget(j, "changes")) cJSON_AddItemToArray(all, cJSON_Duplicate(it, 1));
        int more = jbool(j, "more");
        resp_free(&r);
        if (more != 1) return all;
    }
    fprintf(stderr, "    harness: pull still had more after 50 pages\n");
    return NULL;
}

resp_t phone_get(phone_t *p, const char *path) {
    return http(p->srv, "GET", path, p->token, NULL, NULL);
}

static const cJSON *items_of(const cJSON *pull_or_items) {
    return cJSON_IsArray(pull_or_items) ? pull_or_items : jget(pull_or_items, "changes");
}

cJSON *pull_item(const cJSON *pull_or_items, const char *record_id) {
    cJSON *found = NULL, *it;
    cJSON_ArrayForEach(it, items_of(pull_or_items)) {
        const char *id = jstr(it, "record_id");
        if (id && strcmp(id, record_id) == 0) found = it;
    }
    return found;
}

int pull_count(const cJSON *pull_or_items, const char *record_id) {
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, items_of(pull_or_items)) {
        const char *id = jstr(it, "record_id");
        if (id && strcmp(id, record_id) == 0) n++;
    }
    return n;
}

/* ============================================================================
 * gzip
 * ========================================================================== */

void *gz_compress(const void *data, size_t len, size_t *out_len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    size_t cap = deflateBound(&z, (uLong)len) + 64;
    unsigned char *out = xmalloc(cap);
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    deflate(&z, Z_FINISH);
    *out_len = z.total_out;
    deflateEnd(&z);
    return h_keep(out, NULL);
}

char *gz_inflate(const void *data, size_t len, size_t max, size_t *out_len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK) return NULL;
    buf_t b = {0};
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    unsigned char tmp[16384];
    int rc = Z_OK;
    while (rc == Z_OK) {
        z.next_out = tmp;
        z.avail_out = sizeof tmp;
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) break;
        buf_add(&b, tmp, sizeof tmp - z.avail_out);
        if (b.n > max) break;
        if (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0) break; /* truncated */
    }
    inflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(b.p);
        return NULL;
    }
    if (out_len) *out_len = b.n;
    return buf_keep(&b);
}

void *gz_bomb(const char *prefix, size_t n, size_t *out_len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY);
    buf_t out = {0};
    unsigned char obuf[65536];
    static char spaces[1 << 16];
    memset(spaces, ' ', sizeof spaces);
    size_t left = n;
    int stage = 0; /* 0 prefix, 1 spaces, 2 finish */
    for (;;) {
        int flush = Z_NO_FLUSH;
        if (stage == 0) {
            z.next_in = (Bytef *)prefix;
            z.avail_in = (uInt)strlen(prefix);
            stage = 1;
        } else if (stage == 1 && left > 0) {
            size_t k = left < sizeof spaces ? left : sizeof spaces;
            z.next_in = (Bytef *)spaces;
            z.avail_in = (uInt)k;
            left -= k;
        } else {
            flush = Z_FINISH;
            stage = 2;
        }
        int rc;
        do {
            z.next_out = obuf;
            z.avail_out = sizeof obuf;
            rc = deflate(&z, flush);
            buf_add(&out, obuf, sizeof obuf - z.avail_out);
        } while (rc != Z_STREAM_ERROR && (z.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END)));
        if (stage == 2) break;
    }
    deflateEnd(&z);
    *out_len = out.n;
    return buf_keep(&out);
}
