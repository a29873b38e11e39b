/* proxy.c -- casesyncd behind nginx with TLS for the tests; see proxy.h for
 * the contracts. */
#include "tests/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

extern char **environ;

#define PX_READY_TIMEOUT_S 20
#define PX_STOP_TIMEOUT_S 10
#define PX_HTTP_TIMEOUT_S 60
#define PX_LOG_TAIL_BYTES 6000
#define PX_PORT_TRIES 3
#define PX_DEPLOY_CONF "deploy/nginx.conf"

/* ============================================================================
 * Small helpers
 * ========================================================================== */

/* Reads a whole file (malloc'd, NUL-terminated) or NULL. */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *text = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *t = realloc(text, cap);
            if (!t) {
                free(text);
                fclose(f);
                return NULL;
            }
            text = t;
        }
        size_t k = fread(text + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) break;
    }
    fclose(f);
    text[n] = '\0';
    if (len) *len = n;
    return text;
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* Prints the end of a log file to stderr, indented like the harness does. */
static void print_tail(const char *what, const char *path) {
    size_t n = 0;
    char *text = read_file(path, &n);
    if (!text) {
        fprintf(stderr, "    (no %s at %s)\n", what, path);
        return;
    }
    const char *from = n > PX_LOG_TAIL_BYTES ? text + n - PX_LOG_TAIL_BYTES : text;
    fprintf(stderr, "    ---- %s %s (tail) ----\n", what, path);
    for (const char *l = from; *l;) {
        const char *e = strchr(l, '\n');
        int len = e ? (int)(e - l) : (int)strlen(l);
        fprintf(stderr, "    | %.*s\n", len, l);
        l += len + (e ? 1 : 0);
    }
    fprintf(stderr, "    ---- end of %s ----\n", what);
    free(text);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Waits for pid up to timeout_s: its exit status (128+n for a signal), or -2
 * on timeout. */
static int wait_exit(pid_t pid, double timeout_s) {
    double end = now_s() + timeout_s;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
        if (r < 0 && errno != EINTR) return -1;
        if (now_s() > end) return -2;
        sleep_ms(5);
    }
}

/* Stops *pid with sig, then SIGKILL after timeout_s: the exit status, or -1
 * when it had to be killed. */
static int stop_child(pid_t *pid, int sig, double timeout_s) {
    if (*pid <= 0) return 0;
    kill(*pid, sig);
    int rc = wait_exit(*pid, timeout_s);
    if (rc == -2) {
        kill(*pid, SIGKILL);
        wait_exit(*pid, 5);
        rc = -1;
    }
    *pid = 0;
    return rc;
}

/* fork + exec with stdin from /dev/null and stdout and stderr appended to
 * log. The child dies with this process. The child's pid, or -1. */
static pid_t spawn(const char *const *argv, char *const *env, const char *log) {
    int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        fprintf(stderr, "    proxy: cannot open %s: %s\n", log, strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("    proxy: fork");
        close(logfd);
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(126);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        if (strchr(argv[0], '/'))
            execve(argv[0], (char *const *)argv, env);
        else
            execvpe(argv[0], (char *const *)argv, env);
        dprintf(2, "proxy: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(logfd);
    return pid;
}

/* A port on 127.0.0.1 that was free a moment ago, or -1. */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* Does 127.0.0.1:port accept a TCP connection? */
static int accepts(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* ============================================================================
 * The certificate
 * ========================================================================== */

static int add_ext(X509 *x, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = ext && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* A P-256 key and a self-signed server certificate for PX_HOST, localhost
 * and 127.0.0.1, valid from an hour ago for a day, written as PEM. */
static int make_cert(const char *cert_path, const char *key_path) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    FILE *f = NULL;
    unsigned char serial[8];
    int rc = -1;
    if (!key || !x || RAND_bytes(serial, sizeof serial) != 1) goto done;
    serial[0] &= 0x7f; /* positive */
    uint64_t sn = 0;
    for (size_t i = 0; i < sizeof serial; i++)
        sn = sn << 8 | serial[i];
    X509_NAME *name = X509_get_subject_name(x);
    if (X509_set_version(x, 2) != 1 || ASN1_INTEGER_set_int64(X509_get_serialNumber(x), (int64_t)sn) != 1 ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) || !X509_gmtime_adj(X509_getm_notAfter(x), 86400) ||
        X509_set_pubkey(x, key) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)PX_HOST, -1, -1, 0) !=
            1 ||
        X509_set_issuer_name(x, name) != 1 ||
        add_ext(x, NID_subject_alt_name, "DNS:" PX_HOST ",DNS:localhost,IP:127.0.0.1") < 0 ||
        add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(x, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(x, NID_subject_key_identifier, "hash") < 0 || X509_sign(x, key, EVP_sha256()) <= 0)
        goto done;
    if (!(f = fopen(key_path, "wb")) || PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1)
        goto done;
    if (fclose(f) != 0) {
        f = NULL;
        goto done;
    }
    if (!(f = fopen(cert_path, "wb")) || PEM_write_X509(f, x) != 1) goto done;
    rc = fclose(f) == 0 ? 0 : -1;
    f = NULL;
done:
    if (f) fclose(f);
    if (rc < 0) fprintf(stderr, "    proxy: cannot make the test certificate\n");
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* ============================================================================
 * The nginx configuration
 * ========================================================================== */

/* Where deploy/nginx.conf is: from the working directory (make test runs in
 * the repository), else next to the schema the build points at. Pool string. */
static const char *deploy_conf_path(const char *conf) {
    if (access(conf, R_OK) == 0) return conf;
#ifdef CASESYNC_SCHEMA_PATH
    const char *schema = CASESYNC_SCHEMA_PATH;
    const char *cut = strstr(schema, "schema/casesync.json");
    if (cut) return hfmt("%.*s%s", (int)(cut - schema), schema, conf);
#endif
    return conf;
}

/* Appends line to out with its directive's first argument replaced by arg. */
static void put_with_arg(FILE *out, const char *line, size_t len, const char *arg) {
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    while (i < len && line[i] != ' ' && line[i] != '\t')
        i++; /* the directive */
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    size_t a = i;
    while (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != ';')
        i++; /* the argument */
    fprintf(out, "%.*s%s%.*s\n", (int)a, line, arg, (int)(len - i), line + i);
}

/* Is the line's directive `name` (after leading blanks)? */
static int directive_is(const char *line, size_t len, const char *name) {
    while (len && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    size_t n = strlen(name);
    return len > n && memcmp(line, name, n) == 0 && (line[n] == ' ' || line[n] == '\t');
}

/* Writes DIR/casesync.conf from the deploy file conf with the test's ports
 * and paths (the k-th upstream server line gets ports[k]; there must be n),
 * and DIR/nginx.conf around it. 0 or -1 (printed). */
static int write_nginx_conf(const px_t *p, const char *conf, const int *ports, int n) {
    const char *src = deploy_conf_path(conf);
    char *text = read_file(src, NULL);
    if (!text) {
        fprintf(stderr, "    proxy: cannot read %s: %s\n", src, strerror(errno));
        return -1;
    }
    const char *site = hfmt("%s/casesync.conf", p->dir);
    FILE *out = fopen(site, "wb");
    if (!out) {
        free(text);
        return -1;
    }
    int listens = 0, certs = 0, keys = 0, upstreams = 0;
    for (const char *l = text; *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        const char *t = l;
        while (t < l + len && (*t == ' ' || *t == '\t'))
            t++;
        if (*t == '#' || t == l + len) {
            fprintf(out, "%.*s\n", (int)len, l);
        } else if (directive_is(l, len, "listen")) {
            if (!memchr(l, '[', len)) { /* IPv6 listens: not in every container */
                put_with_arg(out, l, len, hfmt("127.0.0.1:%d", p->port));
                listens++;
            }
        } else if (directive_is(l, len, "ssl_certificate")) {
            put_with_arg(out, l, len, p->cert);
            certs++;
        } else if (directive_is(l, len, "ssl_certificate_key")) {
            put_with_arg(out, l, len, hfmt("%s/key.pem", p->dir));
            keys++;
        } else if (directive_is(l, len, "server") && !memchr(l, '{', len)) {
            put_with_arg(out, l, len, hfmt("127.0.0.1:%d", upstreams < n ? ports[upstreams] : 1));
            upstreams++;
        } else if (directive_is(l, len, "access_log")) {
            put_with_arg(out, l, len, hfmt("%s/access.log", p->dir));
        } else if (directive_is(l, len, "error_log")) {
            put_with_arg(out, l, len, hfmt("%s/error.log", p->dir));
        } else {
            fprintf(out, "%.*s\n", (int)len, l);
        }
        l += len + (e ? 1 : 0);
    }
    free(text);
    int werr = fclose(out) != 0;
    if (werr || listens != 1 || certs != 1 || keys != 1 || upstreams != n) {
        fprintf(stderr,
                "    proxy: %s should hold one IPv4 listen, one ssl_certificate, one ssl_certificate_key and "
                "%d upstream server lines; found %d, %d, %d, %d\n",
                src, n, listens, certs, keys, upstreams);
        return -1;
    }
    /* The main file: an unprivileged foreground nginx with everything in the
     * temp folder, and an http {} block like Debian's (TLS 1.0 allowed, gzip
     * on, here even for JSON) that the deploy file must override. */
    const char *d = p->dir;
    const char *main_conf = hfmt("daemon off;\n"
                                 "master_process off;\n"
                                 "pid %s/nginx.pid;\n"
                                 "error_log %s/error.log info;\n"
                                 "events { worker_connections 1024; }\n"
                                 "http {\n"
                                 "    sendfile on;\n"
                                 "    tcp_nopush on;\n"
                                 "    default_type application/octet-stream;\n"
                                 "    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;\n"
                                 "    ssl_prefer_server_ciphers on;\n"
                                 "    gzip on;\n"
                                 "    gzip_types application/json;\n"
                                 "    gzip_proxied any;\n"
                                 "    gzip_min_length 1;\n"
                                 "    access_log %s/access.log;\n"
                                 "    client_body_temp_path %s/tmp/body;\n"
                                 "    proxy_temp_path %s/tmp/proxy;\n"
                                 "    fastcgi_temp_path %s/tmp/fastcgi;\n"
                                 "    uwsgi_temp_path %s/tmp/uwsgi;\n"
                                 "    scgi_temp_path %s/tmp/scgi;\n"
                                 "    include %s;\n"
                                 "}\n",
                                 d, d, d, d, d, d, d, d, site);
    if (mkdir(hfmt("%s/tmp", d), 0700) != 0 && errno != EEXIST) return -1;
    return write_file(hfmt("%s/nginx.conf", d), main_conf);
}

/* ============================================================================
 * Processes
 * ========================================================================== */

static const char *nginx_bin(void) {
    const char *n = getenv("NGINX");
    if (n && *n) return n;
    if (access("/usr/sbin/nginx", X_OK) == 0) return "/usr/sbin/nginx";
    return "nginx";
}

/* environ plus CASESYNC_PBKDF2_ITERATIONS=1000 (fast logins, as in the
 * harness); malloc'd array, strings shared with environ. */
static char **child_env(void) {
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = malloc((n + 2) * sizeof *env);
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "CASESYNC_PBKDF2_ITERATIONS=", 27) != 0) env[k++] = environ[i];
    env[k++] = "CASESYNC_PBKDF2_ITERATIONS=1000";
    env[k] = NULL;
    return env;
}

/* Starts casesyncd on DIR/data trusting 127.0.0.1 and waits for its
 * listening line in DIR/casesyncd.log. */
static int start_casesyncd(px_t *p) {
    const char *bin_dir = getenv("CASESYNC_BIN");
    const char *bin = hfmt("%s/casesyncd", bin_dir && *bin_dir ? bin_dir : "build/asan");
    const char *log = hfmt("%s/casesyncd.log", p->dir);
    const char *argv[] = {bin,           "--data",          p->srv.dir,  "--listen",
                          "127.0.0.1:0", "--trusted-proxy", "127.0.0.1", NULL};
    char **env = child_env();
    if (!env) return -1;
    p->srv_pid = spawn(argv, env, log);
    free(env);
    if (p->srv_pid < 0) {
        p->srv_pid = 0;
        return -1;
    }
    p->srv.pid = p->srv_pid;
    double end = now_s() + PX_READY_TIMEOUT_S;
    while (now_s() < end) {
        char *text = read_file(log, NULL);
        const char *l = text ? strstr(text, "listening on http://") : NULL;
        const char *nl = l ? strchr(l, '\n') : NULL;
        if (nl) {
            const char *colon = memrchr(l, ':', (size_t)(nl - l));
            int port = colon ? atoi(colon + 1) : 0;
            free(text);
            if (port <= 0) break;
            p->srv.port = port;
            snprintf(p->srv.base, sizeof p->srv.base, "http://127.0.0.1:%d", port);
            return 0;
        }
        free(text);
        if (wait_exit(p->srv_pid, 0) != -2) {
            p->srv_pid = p->srv.pid = 0;
            break;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "    proxy: casesyncd did not print its listening line within %d s\n",
            PX_READY_TIMEOUT_S);
    print_tail("casesyncd log", log);
    return -1;
}

/* Starts nginx on a free port and waits until it accepts; a port taken
 * between free_port() and nginx's bind is tried again with another. */
static int start_nginx(px_t *p, const char *conf, const int *ports, int n) {
    const char *log = hfmt("%s/nginx.out", p->dir);
    for (int attempt = 0; attempt < PX_PORT_TRIES; attempt++) {
        if ((p->port = free_port()) < 0 || write_nginx_conf(p, conf, ports, n) < 0) return -1;
        const char *argv[] = {nginx_bin(),         "-e", hfmt("%s/error.log", p->dir),  "-p",
                              hfmt("%s/", p->dir), "-c", hfmt("%s/nginx.conf", p->dir), NULL};
        p->nginx_pid = spawn(argv, environ, log);
        if (p->nginx_pid < 0) {
            p->nginx_pid = 0;
            return -1;
        }
        double end = now_s() + PX_READY_TIMEOUT_S;
        while (now_s() < end && !accepts(p->port)) {
            if (wait_exit(p->nginx_pid, 0) != -2) {
                p->nginx_pid = 0;
                break;
            }
            sleep_ms(10);
        }
        if (p->nginx_pid > 0 && accepts(p->port)) {
            snprintf(p->base, sizeof p->base, "https://" PX_HOST ":%d", p->port);
            return 0;
        }
        stop_child(&p->nginx_pid, SIGKILL, 5);
        char *err = read_file(hfmt("%s/error.log", p->dir), NULL);
        int in_use = err && strstr(err, "Address already in use");
        free(err);
        if (!in_use) break;
    }
    fprintf(stderr, "    proxy: nginx did not start\n");
    print_tail("nginx output", log);
    print_tail("nginx error log", hfmt("%s/error.log", p->dir));
    return -1;
}

/* The temp folder, its data/ folder and the certificate. 0 or -1. */
static int px_prepare(px_t *p) {
    memset(p, 0, sizeof *p);
    p->srv.slot = -1;
    snprintf(p->dir, sizeof p->dir, "/tmp/casesync-tls-XXXXXX");
    if (!mkdtemp(p->dir)) {
        perror("    proxy: mkdtemp");
        p->dir[0] = '\0';
        return -1;
    }
    snprintf(p->cert, sizeof p->cert, "%s/cert.pem", p->dir);
    snprintf(p->srv.dir, sizeof p->srv.dir, "%s/data", p->dir);
    if (mkdir(p->srv.dir, 0700) != 0) {
        perror("    proxy: mkdir data");
        return -1;
    }
    return make_cert(p->cert, hfmt("%s/key.pem", p->dir)) < 0 ? -1 : 0;
}

int px_start(px_t *p) {
    if (px_prepare(p) < 0) return -1;
    if (start_casesyncd(p) < 0) return -1;
    return start_nginx(p, PX_DEPLOY_CONF, &p->srv.port, 1);
}

int px_start_front(px_t *p, const char *conf, const int *ports, int n) {
    if (px_prepare(p) < 0) return -1;
    return start_nginx(p, conf, ports, n);
}

int px_stop_server(px_t *p) {
    int rc = stop_child(&p->srv_pid, SIGTERM, PX_STOP_TIMEOUT_S);
    p->srv.pid = 0;
    return rc;
}

void px_cleanup(px_t *p) {
    if (!p || !p->dir[0]) return;
    int failed = test_failed();
    /* nginx first, so that nothing reaches casesyncd while it stops. */
    int nrc = stop_child(&p->nginx_pid, failed ? SIGKILL : SIGTERM, PX_STOP_TIMEOUT_S);
    int src = stop_child(&p->srv_pid, failed ? SIGKILL : SIGTERM, PX_STOP_TIMEOUT_S);
    p->srv.pid = 0;
    if (!failed && (nrc != 0 || src != 0)) {
        test_failf(__FILE__, __LINE__, "at cleanup: nginx ended with status %d, casesyncd with %d", nrc, src);
        failed = 1;
    }
    if (failed) {
        print_tail("casesyncd log", hfmt("%s/casesyncd.log", p->dir));
        print_tail("nginx error log", hfmt("%s/error.log", p->dir));
        print_tail("nginx access log", hfmt("%s/access.log", p->dir));
    }
    if (!getenv("CASESYNC_KEEP_DATA")) nftw(p->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    p->dir[0] = '\0';
}

/* ============================================================================
 * HTTP
 * ========================================================================== */

typedef struct px_buf {
    char *p;
    size_t n, cap;
} px_buf_t;

static size_t on_data(char *ptr, size_t size, size_t n, void *ud) {
    px_buf_t *b = ud;
    size_t k = size * n;
    if (b->n + k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + k + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return 0;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, ptr, k);
    b->n += k;
    b->p[b->n] = '\0';
    return k;
}

/* Keeps only the header block of the final answer (not of a 100 Continue). */
static size_t on_head(char *ptr, size_t size, size_t n, void *ud) {
    px_buf_t *b = ud;
    if (size * n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) b->n = 0;
    return on_data(ptr, size, n, ud);
}

/* Hands the buffer to the pool ("" when empty). */
static char *keep(px_buf_t *b) {
    if (!b->p) return hfmt("%s", "");
    return h_keep(b->p, NULL);
}

static int has_header(const char *const *headers, const char *name) {
    size_t nl = strlen(name);
    for (const char *const *h = headers; h && *h; h++)
        if (strncasecmp(*h, name, nl) == 0 && (*h)[nl] == ':') return 1;
    return 0;
}

resp_t px_http(const px_client_t *c, const char *method, const char *path, const char *token,
               const void *data, size_t len, const char *const *headers) {
    resp_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.what, sizeof r.what, "%s %s%s%s", method, path, c->direct ? " (direct)" : "",
             c->from ? hfmt(" from %s", c->from) : "");
    px_buf_t body = {0}, head = {0};
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(r.err, sizeof r.err, "curl_easy_init failed");
        r.body = keep(&body);
        r.headers = keep(&head);
        return r;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hl = NULL, *resolve = NULL;
    if (token) hl = curl_slist_append(hl, hfmt("Authorization: Bearer %s", token));
    if (data && !has_header(headers, "Content-Type"))
        hl = curl_slist_append(hl, "Content-Type: application/json");
    if (!has_header(headers, "Expect")) hl = curl_slist_append(hl, "Expect:");
    for (const char *const *x = headers; x && *x; x++)
        hl = curl_slist_append(hl, *x);
    if (c->direct) {
        curl_easy_setopt(h, CURLOPT_URL, hfmt("%s%s", c->px->srv.base, path));
    } else {
        /* The name the certificate is for, pinned to nginx's loopback port. */
        resolve = curl_slist_append(NULL, hfmt(PX_HOST ":%d:127.0.0.1", c->px->port));
        curl_easy_setopt(h, CURLOPT_RESOLVE, resolve);
        curl_easy_setopt(h, CURLOPT_URL, hfmt("%s%s", c->px->base, path));
        /* Verify the peer and the host name: against the test certificate
         * only, or against the system CAs (which must refuse it). */
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
        if (!c->untrusting) curl_easy_setopt(h, CURLOPT_CAINFO, c->px->cert);
        if (c->tls12)
            curl_easy_setopt(h, CURLOPT_SSLVERSION,
                             (long)(CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2));
        curl_easy_setopt(h, CURLOPT_HTTP_VERSION,
                         c->http1 ? (long)CURL_HTTP_VERSION_1_1 : (long)CURL_HTTP_VERSION_2TLS);
    }
    if (c->from) curl_easy_setopt(h, CURLOPT_INTERFACE, hfmt("host!%s", c->from));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)PX_HTTP_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_head);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &head);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_set_method(h, method, data, len);
    double t0 = now_s();
    CURLcode rc = curl_easy_perform(h);
    r.secs = now_s() - t0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    if (rc != CURLE_OK)
        snprintf(r.err, sizeof r.err, "curl error %d: %.200s; ", (int)rc,
                 errbuf[0] ? errbuf : curl_easy_strerror(rc));
    curl_slist_free_all(hl);
    curl_slist_free_all(resolve);
    curl_easy_cleanup(h);
    r.len = body.n;
    r.body = keep(&body);
    r.headers = keep(&head);
    return r;
}
