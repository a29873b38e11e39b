/* proxy.h -- casesyncd behind nginx terminating TLS, for the tests: a
 * self-signed certificate, Debian's nginx run from deploy/nginx.conf as a
 * child process, casesyncd started with --trusted-proxy 127.0.0.1, and HTTP
 * calls with libcurl from a chosen loopback source address, through the proxy
 * (HTTPS) or straight to casesyncd.
 *
 * Caveats:
 * - The nginx configuration is deploy/nginx.conf itself, read at run time,
 *   with only these lines rewritten: the first argument of `listen` (a free
 *   port on 127.0.0.1; IPv6 listens are dropped), of `ssl_certificate` and
 *   `ssl_certificate_key` (the test certificate), of the upstream's `server`
 *   (casesyncd's port) and of `access_log`/`error_log` (the temp folder). It
 *   is wrapped in a main file that runs nginx unprivileged in the foreground
 *   (daemon off, master_process off, pid, logs and temp paths in the temp
 *   folder). A deploy file with none of these lines fails px_start().
 * - The harness's servers are not used: casesyncd needs --trusted-proxy. The
 *   srv_t in px_t is filled for cli()/user_add()/std_user() (dir) and for
 *   harness http() calls from 127.0.0.1 (base); its slot is -1.
 * - px_cleanup() must run on every path, failed or not: call the test body
 *   from a wrapper that calls px_cleanup() after it (ASSERT returns from the
 *   body only). It stops both processes, prints their log tails when the test
 *   failed, and removes the temp folder. Both processes also die with the
 *   test process (PR_SET_PDEATHSIG), e.g. when the test's alarm fires.
 * - Memory: responses as in harness.h (owned by the harness's pool).
 *   px_http() may be called from several threads at once.
 * - nginx is $NGINX, else /usr/sbin/nginx, else nginx on PATH.
 */
#ifndef CASESYNC_TESTS_PROXY_H
#define CASESYNC_TESTS_PROXY_H

#include <sys/types.h>

#include "tests/harness.h"

/* The name the test certificate is for (also localhost and 127.0.0.1). */
#define PX_HOST "casesync.test"

typedef struct px {
    char dir[200];  /* temp folder: certificate, configs, logs, data/ */
    char cert[300]; /* the self-signed certificate: the CA file phones trust */
    pid_t nginx_pid;
    int port;      /* nginx's TLS port on 127.0.0.1 */
    char base[64]; /* "https://casesync.test:PORT" */
    pid_t srv_pid; /* casesyncd */
    srv_t srv;     /* casesyncd's data folder, port and http:// base */
} px_t;

/* Makes the temp folder and certificate, starts casesyncd (trusting
 * 127.0.0.1) and nginx in front of it, and waits until nginx accepts. 0, or
 * -1 with the reason printed; px_cleanup() is due either way. */
int px_start(px_t *p);
/* Only nginx (the caller runs the servers): the deploy file conf (a path
 * in the repository, e.g. "deploy/nginx-cluster.conf") with its upstream
 * `server` lines pointed, in order, at 127.0.0.1:ports[k]; the file must
 * hold exactly n of them. p->srv is unused (slot -1, no process); direct
 * calls are the caller's. 0, or -1 printed; px_cleanup() is due either way. */
int px_start_front(px_t *p, const char *conf, const int *ports, int n);
/* SIGTERM to casesyncd and wait up to 10 s: its exit status (0 for a clean
 * stop, -1 when it had to be killed). nginx keeps running. */
int px_stop_server(px_t *p);
/* Stops nginx and casesyncd (SIGKILL when the test failed), prints their
 * log tails when the test failed, removes the temp folder. Safe to call on a
 * zeroed or half-started px_t, and twice. */
void px_cleanup(px_t *p);

/* Who calls and how. */
typedef struct px_client {
    const px_t *px;
    const char *from; /* local address to connect from ("127.0.0.2"); NULL: any */
    int direct;       /* 1: plain HTTP straight to casesyncd, not through nginx */
    int http1;        /* 1: HTTP/1.1 only; 0: HTTP/2 when TLS offers it */
    int untrusting;   /* 1: trust only the system CAs, not the test certificate */
    int tls12;        /* 1: TLS 1.2 at most (else 1.3 when offered) */
} px_client_t;

/* One call, like harness http_raw(): token NULL for none, data NULL for no
 * body (a Content-Type of application/json is added to bodies unless given),
 * headers NULL-terminated or NULL. No automatic decoding. r.headers starts
 * with the status line ("HTTP/2 200"). */
resp_t px_http(const px_client_t *c, const char *method, const char *path, const char *token,
               const void *data, size_t len, const char *const *headers);

#endif
