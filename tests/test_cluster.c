/* test_cluster.c -- cluster mode (sync/replica.h): the replicated log on NATS
 * JetStream comes first, followers apply it, the lease, replay after a crash
 * between the log's ack and the commit. Every test starts its own
 * nats-server processes on loopback (JetStream on, a temp folder each) and
 * stops them; loops are bounded in count. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>
#include <openssl/evp.h>

#include "clients/c/casesync.h"
#include "server/routes.h"
#include "sync/replica.h"
#include "tests/harness.h"
#include "tests/proxy.h"
#include "tests/test.h"

/* ---- nats-server processes ----------------------------------------------------- */

typedef struct natsd {
    pid_t pid;
    int port, cport;
    char dir[128];
    char name[16];
    char routes[256]; /* "" alone; else the cluster's route URLs */
} natsd_t;

#define MAX_NATSD 4
static natsd_t *natsds[MAX_NATSD];
static int nnatsd;

static void natsd_kill_all(void) {
    for (int i = 0; i < nnatsd; i++)
        if (natsds[i] && natsds[i]->pid > 0) {
            kill(natsds[i]->pid, SIGKILL);
            waitpid(natsds[i]->pid, NULL, 0);
            natsds[i]->pid = 0;
        }
}

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

/* Starts (or starts again, same ports and folder) a JetStream server. 0 or -1. */
static int natsd_start(natsd_t *n) {
    if (!n->dir[0]) {
        snprintf(n->dir, sizeof n->dir, "/tmp/casesync-nats-XXXXXX");
        if (!mkdtemp(n->dir)) return -1;
        if (nnatsd < MAX_NATSD) natsds[nnatsd++] = n;
        if (nnatsd == 1) atexit(natsd_kill_all);
    }
    if (!n->port) n->port = free_port();
    char port[16], cport[48], log[200];
    snprintf(port, sizeof port, "%d", n->port);
    snprintf(cport, sizeof cport, "nats://127.0.0.1:%d", n->cport);
    snprintf(log, sizeof log, "%s/log", n->dir);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        signal(SIGALRM, SIG_DFL);
        /* Gone with the test process, however it ends (a failed ASSERT
         * ends it through the harness's _exit). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (n->routes[0])
            execlp("nats-server", "nats-server", "-js", "-a", "127.0.0.1", "-p", port, "-sd", n->dir, "-n",
                   n->name, "--cluster_name", "casesync-test", "--cluster", cport, "--routes", n->routes,
                   (char *)NULL);
        else
            execlp("nats-server", "nats-server", "-js", "-a", "127.0.0.1", "-p", port, "-sd", n->dir,
                   (char *)NULL);
        _exit(127);
    }
    n->pid = pid;
    for (int i = 0; i < 200; i++) {
        if (port_open(n->port)) return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) break;
        sleep_ms(25);
    }
    fprintf(stderr, "    nats-server on %d did not start\n", n->port);
    return -1;
}

static void natsd_stop(natsd_t *n, int sig) {
    if (n->pid <= 0) return;
    kill(n->pid, sig);
    for (int i = 0; i < 400 && waitpid(n->pid, NULL, WNOHANG) == 0; i++)
        sleep_ms(25);
    kill(n->pid, SIGKILL);
    waitpid(n->pid, NULL, 0);
    n->pid = 0;
}

/* ---- casesyncd nodes -------------------------------------------------------- */

static const char *node_config(const char *urls, const char *node, int replicas) {
    const char *path = hfmt("/tmp/casesync-cluster-%d-%s.json", (int)getpid(), node);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fprintf(f,
            "{\"cluster\":\"%s\",\"node\":\"%s\",\"cluster_replicas\":%d,\"lease_ms\":3000,"
            "\"metrics_listen\":\"127.0.0.1:0\"}\n",
            urls, node, replicas);
    fclose(f);
    return path;
}

/* Starts s (fresh, or again on its folder when restart) as a cluster node. */
static int node_start(srv_t *s, const char *config, int restart) {
    setenv("CASESYNC_TEST_CONFIG", config, 1);
    int rc = restart ? srv_restart(s) : srv_start(s);
    unsetenv("CASESYNC_TEST_CONFIG");
    return rc;
}

/* A new cluster's first node: its users are made with the CLI while it is
 * still alone (the CLI may not write to a cluster node's store), then it
 * starts in cluster mode. users: names of the standard cast, NULL-ended. */
static int node_seed(srv_t *s, const char *config, const char *const *users) {
    if (srv_start(s) != 0) return -1;
    for (int i = 0; users[i]; i++)
        if (!std_user(s, users[i])) return -1;
    if (srv_stop(s) != 0) return -1;
    return node_start(s, config, 1);
}

static const char *const off1_only[] = {"off1", NULL};

/* A follower seeded with a backup of `from` (how a node joins). */
static int node_from_backup(srv_t *s, srv_t *from, const char *config) {
    if (srv_start(s) != 0 || srv_stop(s) != 0) return -1;
    unlink(hfmt("%s/data.mdb", s->dir));
    unlink(hfmt("%s/lock.mdb", s->dir));
    cli_res_t c = cli(from->dir, NULL, "backup", s->dir);
    if (c.rc != 0) {
        fprintf(stderr, "    backup exited %d: %s\n", c.rc, c.err);
        return -1;
    }
    return node_start(s, config, 1);
}

/* GET /metrics from the node's internal listener (its port from the last
 * "metrics on" line of its log); the body (pool) or "". */
static const char *node_metrics(const srv_t *s) {
    FILE *f = fopen(hfmt("%s/server.log", s->dir), "r");
    char line[512];
    int port = -1;
    while (f && fgets(line, sizeof line, f)) {
        const char *m = strstr(line, "metrics on http://127.0.0.1:");
        if (m) port = atoi(m + strlen("metrics on http://127.0.0.1:"));
    }
    if (f) fclose(f);
    if (port <= 0) return "";
    srv_t m = *s;
    snprintf(m.base, sizeof m.base, "http://127.0.0.1:%d", port);
    resp_t r = http(&m, "GET", "/metrics", NULL, NULL, NULL);
    return r.status == 200 ? r.body : "";
}

/* A metric's value in a metrics text, or -1. */
static long long metric(const char *text, const char *name) {
    const char *p = text;
    size_t n = strlen(name);
    while ((p = strstr(p, name)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') return atoll(p + n + 1);
        p += n;
    }
    return -1;
}

/* Waits (bounded) until every node has applied the whole log. 1 or 0. */
static int nodes_caught_up(srv_t *const *nodes, int n) {
    for (int i = 0; i < 400; i++) {
        long long seq = -1;
        int same = 1;
        for (int k = 0; k < n && same; k++) {
            const char *m = node_metrics(nodes[k]);
            long long a = metric(m, "casesync_cluster_applied_seq"),
                      s = metric(m, "casesync_cluster_stream_seq");
            if (a <= 0 || a != s || (seq >= 0 && a != seq)) same = 0;
            seq = a;
        }
        if (same) return 1;
        sleep_ms(50);
    }
    return 0;
}

/* ---- the stream, as the test reads it ------------------------------------------- */

/* The stream's last sequence, and whether its last entry holds `needle`. -1: no answer. */
static long long stream_last(const char *url, const char *needle, int *found) {
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    long long last = -1;
    if (found) *found = 0;
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK) return -1;
    if (natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
        js_GetStreamInfo(&si, js, "CASESYNC", NULL, NULL) == NATS_OK) {
        last = (long long)si->State.LastSeq;
        natsMsg *m = NULL;
        if (found && needle && last > 0 &&
            js_GetMsg(&m, js, "CASESYNC", (uint64_t)last, NULL, NULL) == NATS_OK) {
            *found =
                memmem(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), needle, strlen(needle)) != NULL;
            natsMsg_Destroy(m);
        }
        jsStreamInfo_Destroy(si);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return last;
}

/* ---- tests ------------------------------------------------------------------------ */

TEST(cluster_lease_decide_table) {
    /* holder: renew when due, step down once the term is over */
    ASSERT_INT(replica_lease_decide(1, 100, 200, 500, 0, 5, 5), LEASE_KEEP);
    ASSERT_INT(replica_lease_decide(1, 200, 200, 500, 0, 5, 5), LEASE_RENEW);
    ASSERT_INT(replica_lease_decide(1, 500, 200, 500, 1, 5, 5), LEASE_STEPDOWN);
    /* follower: takes a free lease only when it has applied the whole stream */
    ASSERT_INT(replica_lease_decide(0, 100, 0, 0, 0, 5, 5), LEASE_KEEP);
    ASSERT_INT(replica_lease_decide(0, 100, 0, 0, 1, 4, 5), LEASE_WAIT);
    ASSERT_INT(replica_lease_decide(0, 100, 0, 0, 1, 5, 5), LEASE_TAKE);
}

TEST(cluster_follower_action_table) {
    ASSERT_INT(routes_follower_action("GET", "/v1/sync/pull"), FOLLOWER_SERVES);
    ASSERT_INT(routes_follower_action("HEAD", "/v1/blobs/ab"), FOLLOWER_SERVES);
    ASSERT_INT(routes_follower_action("OPTIONS", "/v1/uploads"), FOLLOWER_SERVES);
    ASSERT_INT(routes_follower_action("GET", "/v1/uploads/"), FOLLOWER_SERVES);
    ASSERT_INT(routes_follower_action(NULL, NULL), FOLLOWER_SERVES);
    ASSERT_INT(routes_follower_action("POST", "/v1/sync/push"), FOLLOWER_TO_LEADER);
    ASSERT_INT(routes_follower_action("PATCH", "/v1/uploads/0123"), FOLLOWER_TO_LEADER);
    ASSERT_INT(routes_follower_action("HEAD", "/v1/uploads/0123"), FOLLOWER_TO_LEADER);
    ASSERT_INT(routes_follower_action("GET", "/v1/uploads/0123"), FOLLOWER_TO_LEADER);
    ASSERT_INT(routes_follower_action("DELETE", "/v1/cases/x"), FOLLOWER_TO_LEADER);
}

/* One nats-server (R1): a push is acknowledged only once the stream holds its
 * batch; with nats-server gone pushes answer 503 + Retry-After; when it is
 * back writes go on, and nothing acknowledged is lost, across a restart too. */
TEST(cluster_log_first_and_503_without_nats) {
    natsd_t n = {0};
    ASSERT(natsd_start(&n) == 0);
    const char *url = hfmt("nats://127.0.0.1:%d", n.port);
    const char *cfg = node_config(url, "a", 1);
    srv_t a;
    ASSERT(node_seed(&a, cfg, off1_only) == 0);
    phone_t p;
    ASSERT(phone_login(&p, &a, "off1", std_pass("off1"), "dev-cl1") == 0);

    resp_t r = phone_push(&p, changes(ch_create("rec-cl-1", "general", NULL)));
    ASSERT_STATUS(r, 200);
    int found = 0;
    long long last = stream_last(url, "rec-cl-1", &found);
    ASSERT_MSG(last >= 2 && found, "the stream ends at %lld and its last entry %s the record", last,
               found ? "holds" : "does not hold");

    natsd_stop(&n, SIGKILL);
    /* The phone retries the same changeset, as phones do after a 503. */
    const char *body = changes(ch_create("rec-cl-2", "general", NULL));
    for (int i = 0; i < 3; i++) {
        r = push(&a, p.token, p.device, p.seq, body);
        ASSERT_MSG(r.status == 503, "push without NATS answered %ld: %.200s", r.status, r.body);
        ASSERT_STR(resp_error_code(&r), "unavailable");
        ASSERT(resp_header(&r, "Retry-After") != NULL);
    }
    /* Reads go on. */
    r = phone_get(&p, "/v1/cases/rec-cl-1");
    ASSERT_STATUS(r, 200);

    ASSERT(natsd_start(&n) == 0);
    for (int i = 0; i < 200; i++) {
        r = push(&a, p.token, p.device, p.seq, body);
        if (r.status == 200) break;
        ASSERT_MSG(r.status == 503, "push after NATS came back answered %ld: %.200s", r.status, r.body);
        sleep_ms(100);
    }
    ASSERT_STATUS(r, 200);
    p.seq++;
    ASSERT(stream_last(url, NULL, NULL) > last);
    r = phone_push(&p, changes(ch_create("rec-cl-3", "general", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(stream_last(url, "rec-cl-3", &found) > last && found,
               "rec-cl-3 is not the stream's last entry");

    ASSERT_INT(srv_stop(&a), 0);
    ASSERT(node_start(&a, cfg, 1) == 0);
    ASSERT(phone_login(&p, &a, "off1", std_pass("off1"), "dev-cl1") == 0);
    for (int i = 1; i <= 3; i++) {
        r = phone_get(&p, hfmt("/v1/cases/rec-cl-%d", i));
        ASSERT_STATUS(r, 200);
    }
    /* rec-cl-2, pushed four times or more, was applied once. */
    r = phone_get(&p, "/v1/cases/rec-cl-2/history");
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(strstr(r.body, "rec-cl-2") != NULL, "%.300s", r.body);
    cJSON *items = phone_pull_all(&p);
    ASSERT(items != NULL);
    ASSERT_INT(pull_count(items, "rec-cl-2"), 1);
    srv_cleanup(&a);
    natsd_stop(&n, SIGTERM);
}

/* A follower seeded from a backup applies the stream: a push to the leader
 * is seen by a pull from the follower (with a token made after the backup,
 * so it came through the stream too); a write sent to the follower is
 * redirected to the leader with 307. */
TEST(cluster_follower_applies_and_redirects_writes) {
    natsd_t n = {0};
    ASSERT(natsd_start(&n) == 0);
    const char *url = hfmt("nats://127.0.0.1:%d", n.port);
    srv_t a, b;
    ASSERT(node_seed(&a, node_config(url, "a", 1), off1_only) == 0);
    ASSERT(node_from_backup(&b, &a, node_config(url, "b", 1)) == 0);

    phone_t p, pb;
    ASSERT(phone_login(&p, &a, "off1", std_pass("off1"), "dev-cl2") == 0);
    resp_t r = phone_push(&p, changes(ch_create("rec-fo-1", "general", NULL)));
    ASSERT_STATUS(r, 200);

    pb = p;
    pb.srv = &b;
    pb.cursor = NULL;
    int seen = 0;
    for (int i = 0; i < 100 && !seen; i++) {
        r = phone_get(&pb, "/v1/cases/rec-fo-1");
        if (r.status == 200)
            seen = 1;
        else
            sleep_ms(50);
    }
    ASSERT_MSG(seen, "the follower never served rec-fo-1: %ld %.200s", r.status, r.body);
    cJSON *items = phone_pull_all(&pb);
    ASSERT(items != NULL);
    ASSERT_INT(pull_count(items, "rec-fo-1"), 1);

    /* The metrics: a leads and writes, b follows and has applied as much. */
    const char *ma = node_metrics(&a), *mb = "";
    ASSERT_MSG(metric(ma, "casesync_cluster_leader") == 1 && metric(ma, "casesync_cluster_writable") == 1,
               "leader's metrics: %.300s", ma);
    long long seq_a = metric(ma, "casesync_cluster_applied_seq");
    ASSERT_MSG(seq_a >= 2, "leader applied %lld (a login and a push at least)", seq_a);
    for (int i = 0; i < 100; i++) {
        mb = node_metrics(&b);
        if (metric(mb, "casesync_cluster_applied_seq") == seq_a) break;
        sleep_ms(50);
    }
    ASSERT_INT(metric(mb, "casesync_cluster_leader"), 0);
    ASSERT_INT(metric(mb, "casesync_cluster_applied_seq"), seq_a);
    ASSERT_INT(metric(mb, "casesync_cluster_stream_seq"), seq_a);

    /* A write on the follower goes to the leader (503 until the follower
     * has read the leader's URL from the lease). */
    for (int i = 0; i < 100; i++) {
        r = phone_push(&pb, changes(ch_create("rec-fo-2", "general", NULL)));
        if (r.status != 503) break;
        sleep_ms(50);
    }
    ASSERT_STATUS(r, 307);
    const char *loc = resp_header(&r, "Location");
    ASSERT_MSG(loc && strcmp(loc, hfmt("%s/v1/sync/push", a.base)) == 0, "Location %s, leader %s",
               loc ? loc : "-", a.base);

    /* The CLI may not write to a cluster node's store (it would bypass the
     * log), nor may casesyncd open it without --cluster; reading is fine;
     * `casesync detach` takes it out for good. */
    cli_res_t c = cli(b.dir, std_pass("off2"), "user", "add", "off2", "--role", "officer", "--unit", "U1");
    ASSERT_MSG(c.rc != 0 && strstr(c.err, "belongs to a cluster"), "user add on a follower: %d %s", c.rc,
               c.err);
    c = cli(b.dir, NULL, "verify");
    ASSERT_MSG(c.rc == 0, "verify of a follower exited %d: %s %s", c.rc, c.out, c.err);
    ASSERT_INT(srv_stop(&b), 0);
    ASSERT(srv_restart(&b) != 0);
    c = cli(b.dir, NULL, "detach");
    ASSERT_MSG(c.rc == 0, "detach exited %d: %s", c.rc, c.err);
    ASSERT(srv_restart(&b) == 0);
    r = http(&b, "GET", "/v1/cases/rec-fo-1", p.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    srv_cleanup(&b);
    srv_cleanup(&a);
    natsd_stop(&n, SIGTERM);
}

/* The leader dies between the stream's ack and its own commit (crash point
 * log-acked): the phone got no answer; on restart the node applies that
 * batch from the stream, and the phone's retry gets the stored answer. */
TEST(cluster_crash_after_ack_replays_from_stream) {
    natsd_t n = {0};
    ASSERT(natsd_start(&n) == 0);
    const char *url = hfmt("nats://127.0.0.1:%d", n.port);
    const char *cfg = node_config(url, "a", 1);
    srv_t a;
    ASSERT(node_seed(&a, cfg, off1_only) == 0);
    phone_t p;
    ASSERT(phone_login(&p, &a, "off1", std_pass("off1"), "dev-cl3") == 0);
    resp_t r = phone_push(&p, changes(ch_create("rec-cr-0", "general", NULL)));
    ASSERT_STATUS(r, 200);

    FILE *f = fopen(hfmt("%s/.crash", a.dir), "w");
    ASSERT(f && fputs("log-acked\n", f) >= 0 && fclose(f) == 0);
    const char *body = changes(ch_create("rec-cr-1", "general", NULL));
    r = push(&a, p.token, p.device, p.seq, body);
    ASSERT_MSG(r.status == 0, "the crashed push answered %ld", r.status);
    srv_kill9(&a); /* reaps it */
    int found = 0;
    ASSERT(stream_last(url, "rec-cr-1", &found) > 0 && found);
    char *log = NULL;
    {
        FILE *l = fopen(hfmt("%s/.fault.log", a.dir), "r");
        ASSERT(l != NULL);
        static char text[256];
        size_t k = fread(text, 1, sizeof text - 1, l);
        fclose(l);
        text[k] = 0;
        log = text;
    }
    ASSERT_MSG(strstr(log, "crash log-acked") != NULL, "fault log: %s", log);

    ASSERT(node_start(&a, cfg, 1) == 0);
    int seen = 0;
    for (int i = 0; i < 100 && !seen; i++) {
        r = phone_get(&p, "/v1/cases/rec-cr-1");
        if (r.status == 200)
            seen = 1;
        else
            sleep_ms(50);
    }
    ASSERT_MSG(seen, "rec-cr-1 was not replayed: %ld %.200s", r.status, r.body);
    /* The phone retries its changeset: the stored answer, applied once. */
    for (int i = 0; i < 100; i++) {
        r = push(&a, p.token, p.device, p.seq, body);
        if (r.status == 200) break;
        sleep_ms(100);
    }
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(strstr(r.body, "rec-cr-1") != NULL, "%.300s", r.body);
    r = phone_get(&p, "/v1/cases/rec-cr-1/history");
    ASSERT_STATUS(r, 200);
    srv_cleanup(&a);
    natsd_stop(&n, SIGTERM);
}

/* Three nats-servers in a JetStream cluster (R3) and two casesyncd nodes:
 * the leader is killed with kill -9, the follower takes the lease and
 * writes; every acknowledged push is on it. One nats-server of three is
 * killed: writes go on. The old leader comes back and catches up. Two of
 * three killed: 503 with Retry-After, reads go on, and after they return
 * every acknowledged change is on both nodes exactly once. */
TEST(cluster_r3_failover_loses_nothing_acknowledged) {
    natsd_t n[3] = {{0}};
    const char *urls = "", *routes = "";
    for (int i = 0; i < 3; i++) {
        n[i].port = free_port();
        n[i].cport = free_port();
        snprintf(n[i].name, sizeof n[i].name, "n%d", i + 1);
        urls = hfmt("%s%snats://127.0.0.1:%d", urls, i ? "," : "", n[i].port);
        routes = hfmt("%s%snats://127.0.0.1:%d", routes, i ? "," : "", n[i].cport);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(n[i].routes, sizeof n[i].routes, "%s", routes);
        ASSERT(natsd_start(&n[i]) == 0);
    }
    srv_t a, b, *L = NULL, *F = NULL;
    const char *cfg_a = node_config(urls, "a", 3), *cfg_b = node_config(urls, "b", 3);
    ASSERT(node_seed(&a, cfg_a, off1_only) == 0);
    ASSERT(node_from_backup(&b, &a, cfg_b) == 0);

    /* Whichever node took the lease (a, unless the bucket was not ready for
     * it yet) takes the login; the other redirects or answers 503. */
    for (int i = 0; i < 300 && !L; i++) {
        if (login_resp(&a, "off1", std_pass("off1"), "dev-r3").status == 200)
            L = &a, F = &b;
        else if (login_resp(&b, "off1", std_pass("off1"), "dev-r3").status == 200)
            L = &b, F = &a;
        else
            sleep_ms(100);
    }
    ASSERT_MSG(L != NULL, "no node took the lease");
    const char *cfg_L = L == &a ? cfg_a : cfg_b;
    phone_t p;
    ASSERT(phone_login(&p, L, "off1", std_pass("off1"), "dev-r3") == 0);
    enum { ACKED = 5 };
    for (int i = 0; i < ACKED; i++) {
        resp_t r = phone_push(&p, changes(ch_create(hfmt("rec-r3-%d", i), "general", NULL)));
        ASSERT_STATUS(r, 200);
    }
    srv_kill9(L);

    /* The phone goes to the follower (as nginx would send it) and retries. */
    p.srv = F;
    const char *body = changes(ch_create("rec-r3-after", "general", NULL));
    resp_t r = {0};
    for (int i = 0; i < 300; i++) {
        r = push(F, p.token, p.device, p.seq, body);
        if (r.status == 200) break;
        ASSERT_MSG(r.status == 503 || r.status == 307, "push to the follower during failover: %ld %.200s",
                   r.status, r.body);
        sleep_ms(100);
    }
    if (r.status != 200) (void)!system(hfmt("grep -v ' /v1/' %s/server.log >&2", F->dir));
    ASSERT_STATUS(r, 200);
    p.seq++;
    for (int i = 0; i < ACKED; i++) {
        r = phone_get(&p, hfmt("/v1/cases/rec-r3-%d", i));
        ASSERT_STATUS(r, 200);
    }

    /* One nats-server of three gone: writes go on (after at most a stream
     * leader election). */
    natsd_stop(&n[2], SIGKILL);
    body = changes(ch_create("rec-r3-two", "general", NULL));
    for (int i = 0; i < 300; i++) {
        r = push(F, p.token, p.device, p.seq, body);
        if (r.status == 200) break;
        ASSERT_MSG(r.status == 503, "push with two nats-servers: %ld %.200s", r.status, r.body);
        sleep_ms(100);
    }
    if (r.status != 200) (void)!system(hfmt("grep -v ' /v1/' %s/server.log >&2", F->dir));
    ASSERT_STATUS(r, 200);
    p.seq++;

    /* The old leader comes back and catches up (it may take the lease again
     * if the other lost it meanwhile: one of the two writes, the other redirects). */
    ASSERT(node_start(L, cfg_L, 1) == 0);
    phone_t pa = p;
    pa.srv = L;
    int seen = 0;
    for (int i = 0; i < 200 && !seen; i++) {
        r = phone_get(&pa, "/v1/cases/rec-r3-two");
        if (r.status == 200)
            seen = 1;
        else
            sleep_ms(50);
    }
    ASSERT_MSG(seen, "the old leader did not catch up: %ld %.200s", r.status, r.body);
    body = changes(ch_create("rec-r3-last", "general", NULL));
    int ok_a = 0, ok_b = 0;
    for (int i = 0; i < 300 && !ok_a && !ok_b; i++) {
        resp_t ra = push(L, p.token, p.device, p.seq, body);
        resp_t rb = push(F, p.token, p.device, p.seq, body);
        ok_a = ra.status == 200, ok_b = rb.status == 200;
        ASSERT(ra.status == 200 || ra.status == 307 || ra.status == 503);
        ASSERT(rb.status == 200 || rb.status == 307 || rb.status == 503);
        if (!ok_a && !ok_b) sleep_ms(100);
    }
    ASSERT_MSG(ok_a || ok_b, "neither node took the write");
    p.seq++;

    /* Two nats-servers of three gone: no quorum. Writes answer 503 with
     * Retry-After on both nodes, reads go on; when they are back the phone's
     * retry lands once and nothing acknowledged is lost. */
    for (int k = 0; k < 2; k++) { /* both have applied rec-r3-last */
        srv_t *x = k ? &b : &a;
        for (int i = 0; i < 100; i++) {
            r = http(x, "GET", "/v1/cases/rec-r3-last", p.token, NULL, NULL);
            if (r.status == 200) break;
            sleep_ms(50);
        }
        ASSERT_STATUS(r, 200);
    }
    natsd_stop(&n[1], SIGKILL);
    body = changes(ch_create("rec-r3-quorum", "general", NULL));
    for (int i = 0; i < 3; i++) {
        resp_t ra = push(&a, p.token, p.device, p.seq, body);
        resp_t rb = push(&b, p.token, p.device, p.seq, body);
        ASSERT_MSG(ra.status == 503 || ra.status == 307, "a without quorum: %ld %.200s", ra.status, ra.body);
        ASSERT_MSG(rb.status == 503 || rb.status == 307, "b without quorum: %ld %.200s", rb.status, rb.body);
        ASSERT(ra.status != 503 || resp_header(&ra, "Retry-After"));
        ASSERT(rb.status != 503 || resp_header(&rb, "Retry-After"));
    }
    for (int k = 0; k < 2; k++) {
        srv_t *x = k ? &b : &a;
        r = http(x, "GET", "/v1/cases/rec-r3-last", p.token, NULL, NULL);
        ASSERT_STATUS(r, 200);
    }
    ASSERT(natsd_start(&n[1]) == 0);
    ASSERT(natsd_start(&n[2]) == 0);
    ok_a = ok_b = 0;
    for (int i = 0; i < 300 && !ok_a && !ok_b; i++) {
        resp_t ra = push(&a, p.token, p.device, p.seq, body);
        resp_t rb = push(&b, p.token, p.device, p.seq, body);
        ok_a = ra.status == 200, ok_b = rb.status == 200;
        if (!ok_a && !ok_b) sleep_ms(100);
    }
    ASSERT_MSG(ok_a || ok_b, "no write after the quorum came back");
    for (int k = 0; k < 2; k++) {
        phone_t px = p;
        px.srv = k ? &b : &a;
        px.cursor = NULL;
        int found = 0;
        for (int i = 0; i < 100 && !found; i++) {
            r = phone_get(&px, "/v1/cases/rec-r3-quorum");
            found = r.status == 200;
            if (!found) sleep_ms(50);
        }
        ASSERT_MSG(found, "node %c lacks rec-r3-quorum", k ? 'b' : 'a');
        cJSON *items = phone_pull_all(&px);
        ASSERT(items != NULL);
        ASSERT_INT(pull_count(items, "rec-r3-quorum"), 1);
        for (int i = 0; i < ACKED; i++)
            ASSERT_INT(pull_count(items, hfmt("rec-r3-%d", i)), 1);
        /* Each node's audit chain and store check out. */
        cli_res_t v = cli(px.srv->dir, NULL, "verify");
        ASSERT_MSG(v.rc == 0, "verify of node %c exited %d: %s %s", k ? 'b' : 'a', v.rc, v.out, v.err);
    }
    srv_cleanup(&a);
    srv_cleanup(&b);
    for (int i = 0; i < 3; i++)
        natsd_stop(&n[i], SIGTERM);
}

/* Fencing, one node: a leader frozen (SIGSTOP) past its term gives up the
 * lease when it resumes (its term is over by its own clock), then, the
 * lease being free and its store caught up, takes it back and writes. */
TEST(cluster_frozen_leader_steps_down_then_takes_the_lease_back) {
    natsd_t n = {0};
    ASSERT(natsd_start(&n) == 0);
    const char *cfg = node_config(hfmt("nats://127.0.0.1:%d", n.port), "a", 1);
    srv_t a;
    ASSERT(node_seed(&a, cfg, off1_only) == 0);
    phone_t p;
    ASSERT(phone_login(&p, &a, "off1", std_pass("off1"), "dev-fz1") == 0);
    resp_t r = phone_push(&p, changes(ch_create("rec-fz-1", "general", NULL)));
    ASSERT_STATUS(r, 200);

    ASSERT(kill(a.pid, SIGSTOP) == 0);
    sleep_ms(4000); /* past the 3 s term */
    ASSERT(kill(a.pid, SIGCONT) == 0);
    /* Its replica thread may step down and take the lease back before the
     * push below is served (nobody else wants it): 503 or 200 first. */
    const char *body = changes(ch_create("rec-fz-2", "general", NULL));
    for (int i = 0; i < 200; i++) {
        r = push(&a, p.token, p.device, p.seq, body);
        if (r.status == 200) break;
        ASSERT_MSG(r.status == 503, "push after the resume: %ld %.200s", r.status, r.body);
        sleep_ms(100);
    }
    ASSERT_STATUS(r, 200);
    /* It did lose the lease while frozen. */
    cli_res_t g = cli(a.dir, NULL, "verify");
    ASSERT(g.rc == 0);
    FILE *f = fopen(hfmt("%s/server.log", a.dir), "r");
    ASSERT(f != NULL);
    static char logtext[1 << 16];
    size_t k = fread(logtext, 1, sizeof logtext - 1, f);
    fclose(f);
    logtext[k] = 0;
    ASSERT_MSG(strstr(logtext, "gives up the lease: its term ran out"), "no step-down in the log");
    srv_cleanup(&a);
    natsd_stop(&n, SIGTERM);
}

/* Fencing, two nodes: the leader is frozen past its term; the follower
 * takes the lease and writes; the old leader, resumed, accepts no write
 * (503, then 307 to the new leader once it has stepped down) and applies
 * what the new leader wrote. */
TEST(cluster_frozen_leader_is_fenced_and_steps_down) {
    natsd_t n = {0};
    ASSERT(natsd_start(&n) == 0);
    const char *url = hfmt("nats://127.0.0.1:%d", n.port);
    srv_t a, b;
    ASSERT(node_seed(&a, node_config(url, "a", 1), off1_only) == 0);
    ASSERT(node_from_backup(&b, &a, node_config(url, "b", 1)) == 0);
    phone_t p;
    ASSERT(phone_login(&p, &a, "off1", std_pass("off1"), "dev-fz2") == 0);
    resp_t r = phone_push(&p, changes(ch_create("rec-fe-1", "general", NULL)));
    ASSERT_STATUS(r, 200);

    ASSERT(kill(a.pid, SIGSTOP) == 0);
    const char *body = changes(ch_create("rec-fe-2", "general", NULL));
    for (int i = 0; i < 200; i++) {
        r = push(&b, p.token, p.device, p.seq, body);
        if (r.status == 200) break;
        sleep_ms(100);
    }
    ASSERT(kill(a.pid, SIGCONT) == 0);
    ASSERT_STATUS(r, 200);
    p.seq++;

    /* The old leader never takes a write from now on. */
    body = changes(ch_create("rec-fe-3", "general", NULL));
    int redirected = 0;
    for (int i = 0; i < 200 && !redirected; i++) {
        r = push(&a, p.token, p.device, p.seq, body);
        ASSERT_MSG(r.status == 503 || r.status == 307, "the resumed old leader answered %ld: %.200s",
                   r.status, r.body);
        redirected = r.status == 307;
        if (!redirected) sleep_ms(50);
    }
    ASSERT_MSG(redirected, "the old leader never stepped down");
    ASSERT_STR(resp_header(&r, "Location"), hfmt("%s/v1/sync/push", b.base));
    int seen = 0;
    for (int i = 0; i < 100 && !seen; i++) {
        r = http(&a, "GET", "/v1/cases/rec-fe-2", p.token, NULL, NULL);
        seen = r.status == 200;
        if (!seen) sleep_ms(50);
    }
    ASSERT_MSG(seen, "the old leader did not apply the new leader's write: %ld", r.status);
    srv_cleanup(&b);
    srv_cleanup(&a);
    natsd_stop(&n, SIGTERM);
}

/* ---- entries that must fit the log ------------------------------------------------ */

typedef struct big_push {
    srv_t *srv;
    const char *token, *device, *body;
    long status;
} big_push_t;

static void *big_push_run(void *arg) {
    big_push_t *b = arg;
    resp_t r = push(b->srv, b->token, b->device, 1, b->body);
    b->status = r.status;
    return NULL;
}

/* A changeset of n creates, each with a description of len bytes (pool). */
static const char *big_changes(const char *prefix, int n, int len) {
    char *desc = malloc((size_t)len + 1);
    if (!desc) return NULL;
    memset(desc, 'x', (size_t)len);
    desc[len] = 0;
    const char *extra = hfmt("{\"description\":\"%s\"}", desc);
    free(desc);
    const char *list = "";
    for (int i = 0; i < n; i++)
        list = hfmt(
            "%s%s%s", list, i ? "," : "",
            ch_create_in(hfmt("%s-%d", prefix, i), "unlicensed_vending", "general", "U1", "GRID1", extra));
    return hfmt("[%s]", list);
}

/* A stream entry must fit NATS's max_payload (1 MB here). A changeset whose
 * batch alone is larger answers 413, not 503 for ever; concurrent large
 * changesets are split over batches and each is taken at once. */
TEST(cluster_entries_fit_the_log_413_and_split_batches) {
    natsd_t n = {0};
    ASSERT(natsd_start(&n) == 0);
    srv_t a;
    ASSERT(node_seed(&a, node_config(hfmt("nats://127.0.0.1:%d", n.port), "a", 1), off1_only) == 0);
    phone_t p;
    ASSERT(phone_login(&p, &a, "off1", std_pass("off1"), "dev-big0") == 0);
    resp_t r = phone_push(&p, big_changes("rec-huge", 40, 30000));
    ASSERT_STATUS(r, 413);
    ASSERT_STR(resp_error_code(&r), "too_large");

    enum { PHONES = 6 };
    big_push_t b[PHONES];
    pthread_t th[PHONES];
    for (int i = 0; i < PHONES; i++) {
        phone_t q;
        ASSERT(phone_login(&q, &a, "off1", std_pass("off1"), hfmt("dev-big%d", i + 1)) == 0);
        b[i] = (big_push_t){&a, q.token, hfmt("dev-big%d", i + 1),
                            big_changes(hfmt("rec-big%d", i), 12, 30000), 0};
    }
    for (int i = 0; i < PHONES; i++)
        ASSERT(pthread_create(&th[i], NULL, big_push_run, &b[i]) == 0);
    for (int i = 0; i < PHONES; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < PHONES; i++)
        ASSERT_MSG(b[i].status == 200, "large push %d answered %ld", i, b[i].status);
    srv_cleanup(&a);
    natsd_stop(&n, SIGTERM);
}

/* ---- nodes joining and rejoining under load; the log's retention ----------------- */

#include "sync/retention.h"

/* The stream's first and last sequence; -1: no answer. */
static int stream_bounds(const char *url, long long *first, long long *last) {
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    int rc = -1;
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK) return -1;
    if (natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
        js_GetStreamInfo(&si, js, "CASESYNC", NULL, NULL) == NATS_OK) {
        *first = (long long)si->State.FirstSeq;
        *last = (long long)si->State.LastSeq;
        rc = 0;
        jsStreamInfo_Destroy(si);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}

/* A file's text (pool), "" when unreadable. */
static const char *file_text(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return "";
    static char buf[1 << 18];
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[k] = 0;
    return hfmt("%s", buf);
}

/* A node whose store is restored (`casesync restore`) from a backup folder,
 * then started in cluster mode. The result of node_start. */
static int node_from_folder(srv_t *s, const char *backup, const char *config) {
    if (srv_start(s) != 0 || srv_stop(s) != 0) return -1;
    unlink(hfmt("%s/data.mdb", s->dir));
    unlink(hfmt("%s/lock.mdb", s->dir));
    cli_res_t c = cli(s->dir, NULL, "restore", backup);
    if (c.rc != 0) {
        fprintf(stderr, "    restore exited %d: %s\n", c.rc, c.err);
        return -1;
    }
    return node_start(s, config, 1);
}

/* `casesync backup` of a node into a fresh folder; the folder (pool) and the
 * log entry the backup holds (from the command's answer), or NULL. */
static const char *node_backup(srv_t *s, long long *seq) {
    char *dir = (char *)hfmt("/tmp/casesync-bk-XXXXXX");
    if (!mkdtemp(dir)) return NULL;
    cli_res_t c = cli(s->dir, NULL, "backup", dir);
    const char *at = strstr(c.out, "(cluster log entry ");
    if (c.rc != 0 || !at) {
        fprintf(stderr, "    backup exited %d: %s %s\n", c.rc, c.out, c.err);
        return NULL;
    }
    *seq = atoll(at + strlen("(cluster log entry "));
    return dir;
}

/* Waits (bounded) until node s serves record id to the phone's token; 1 or 0. */
static int node_has(srv_t *s, const char *token, const char *id) {
    for (int i = 0; i < 200; i++) {
        if (http(s, "GET", hfmt("/v1/cases/%s", id), token, NULL, NULL).status == 200) return 1;
        sleep_ms(50);
    }
    return 0;
}

/* Asserts (in the caller's test) that records prefix-0 .. prefix-(n-1) are
 * each in a full pull from node s exactly once, and that `casesync verify`
 * passes on its folder. 0 or -1 (printed). */
static int node_holds_each_once(srv_t *s, const phone_t *p, const char *prefix, int n) {
    phone_t px = *p;
    px.srv = s;
    px.cursor = NULL;
    if (n > 0 && !node_has(s, p->token, hfmt("%s-%d", prefix, n - 1))) {
        fprintf(stderr, "    %s lacks %s-%d\n", s->base, prefix, n - 1);
        return -1;
    }
    cJSON *items = phone_pull_all(&px);
    if (!items) return -1;
    for (int i = 0; i < n; i++) {
        int c = pull_count(items, hfmt("%s-%d", prefix, i));
        if (c != 1) {
            fprintf(stderr, "    %s: %s-%d is in its pull %d times\n", s->base, prefix, i, c);
            return -1;
        }
    }
    cli_res_t v = cli(s->dir, NULL, "verify");
    if (v.rc != 0) {
        fprintf(stderr, "    verify of %s exited %d: %s %s\n", s->dir, v.rc, v.out, v.err);
        return -1;
    }
    return 0;
}

/* A phone pushing one new record per changeset to a node, in a thread, until
 * told to stop (at most WRITER_MAX changesets). A 503 is retried with the
 * same changeset, as phones do; anything else but 200 ends it. */
enum { WRITER_MAX = 3000 };
typedef struct writer {
    phone_t p;
    const char *prefix;
    int stop;    /* atomic */
    int acked;   /* atomic: records prefix-0 .. prefix-(acked-1) were acknowledged */
    long failed; /* the answer that ended it, 0 */
    pthread_t th;
} writer_t;

static void *writer_run(void *arg) {
    writer_t *w = arg;
    int n = 0;
    for (int i = 0; i < WRITER_MAX && !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE); i++) {
        resp_t r = push(w->p.srv, w->p.token, w->p.device, w->p.seq,
                        changes(ch_create(hfmt("%s-%d", w->prefix, n), "general", NULL)));
        if (r.status == 200) {
            w->p.seq++;
            __atomic_store_n(&w->acked, ++n, __ATOMIC_RELEASE);
        } else if (r.status != 503) {
            w->failed = r.status;
            fprintf(stderr, "    writer: push answered %ld: %.200s\n", r.status, r.body);
            break;
        }
        sleep_ms(20);
    }
    return NULL;
}

/* Waits (bounded) until the writer has had `more` changesets acknowledged
 * since this call; 1 or 0. */
static int writer_advance(writer_t *w, int more) {
    int from = __atomic_load_n(&w->acked, __ATOMIC_ACQUIRE);
    for (int i = 0; i < 600; i++) {
        if (__atomic_load_n(&w->acked, __ATOMIC_ACQUIRE) >= from + more) return 1;
        if (w->failed) return 0;
        sleep_ms(50);
    }
    return 0;
}

TEST(cluster_retention_decide_table) {
    /* joining: a stream never written, one holding 1..10, one trimmed to 6..10, one purged empty */
    ASSERT_INT(retention_join_decide(0, 0, 0), JOIN_OK);
    ASSERT_INT(retention_join_decide(0, 1, 10), JOIN_OK);
    ASSERT_INT(retention_join_decide(4, 1, 10), JOIN_OK);
    ASSERT_INT(retention_join_decide(5, 6, 10), JOIN_OK); /* needs 6 on: there */
    ASSERT_INT(retention_join_decide(4, 6, 10), JOIN_TRIMMED);
    ASSERT_INT(retention_join_decide(0, 6, 10), JOIN_TRIMMED); /* a detached or new store */
    ASSERT_INT(retention_join_decide(10, 11, 10), JOIN_OK);    /* caught up; nothing left */
    ASSERT_INT(retention_join_decide(9, 11, 10), JOIN_TRIMMED);
    ASSERT_INT(retention_join_decide(11, 1, 10), JOIN_AHEAD);
    /* trimming to a backup at entry 8 of 1..10 */
    uint64_t from = 0;
    ASSERT_INT(retention_trim_decide(8, 0, 1, 10, &from), TRIM_PURGE);
    ASSERT_INT((int)from, 9);
    ASSERT_INT(retention_trim_decide(8, 3, 1, 10, &from), TRIM_PURGE);
    ASSERT_INT((int)from, 6);
    ASSERT_INT(retention_trim_decide(8, 1000, 1, 10, &from), TRIM_NOTHING);
    ASSERT_INT((int)from, 1);
    ASSERT_INT(retention_trim_decide(8, 3, 6, 10, &from), TRIM_NOTHING); /* trimmed so far already */
    ASSERT_INT(retention_trim_decide(10, 0, 6, 10, &from), TRIM_PURGE);  /* a backup at the end */
    ASSERT_INT((int)from, 11);
    ASSERT_INT(retention_trim_decide(0, 0, 1, 10, &from), TRIM_NOT_CLUSTER);
    ASSERT_INT(retention_trim_decide(11, 0, 1, 10, &from), TRIM_AHEAD);
    /* which stream a store follows */
    ASSERT_INT(retention_stream_decide(0, 500, 7), STREAM_ADOPT);
    ASSERT_INT(retention_stream_decide(500, 500, 7), STREAM_SAME);
    ASSERT_INT(retention_stream_decide(500, 0, 7), STREAM_SAME);
    ASSERT_INT(retention_stream_decide(400, 500, 7), STREAM_OTHER);
    ASSERT_INT(retention_stream_decide(RETENTION_DETACHED, 500, 0), STREAM_ADOPT); /* seeds a new stream */
    ASSERT_INT(retention_stream_decide(RETENTION_DETACHED, 500, 7), STREAM_DETACHED);
    ASSERT_INT(retention_stream_decide(RETENTION_DETACHED, 0, 7), STREAM_DETACHED);
}

/* Three casesyncd nodes on one nats-server while a phone keeps pushing to
 * the leader: a follower is killed with kill -9 and started again, and
 * catches up; a third node is added from a `casesync backup` of the leader
 * taken meanwhile, and catches up. Every acknowledged record is then on
 * every node exactly once, the three have applied the same sequence, and
 * `casesync verify` passes on each. */
TEST(cluster_nodes_killed_and_added_under_writes_catch_up) {
    natsd_t n = {0};
    ASSERT(natsd_start(&n) == 0);
    const char *url = hfmt("nats://127.0.0.1:%d", n.port);
    const char *cfg_b = node_config(url, "b", 1);
    srv_t a, b, c;
    ASSERT(node_seed(&a, node_config(url, "a", 1), off1_only) == 0);
    ASSERT(node_from_backup(&b, &a, cfg_b) == 0);
    writer_t w = {.prefix = "rec-ld"};
    ASSERT(phone_login(&w.p, &a, "off1", std_pass("off1"), "dev-ld") == 0);
    ASSERT(pthread_create(&w.th, NULL, writer_run, &w) == 0);

    ASSERT_MSG(writer_advance(&w, 5), "no writes before the kill (last answer %ld)", w.failed);
    ASSERT(node_has(&b, w.p.token, "rec-ld-0"));
    srv_kill9(&b);
    ASSERT_MSG(writer_advance(&w, 5), "writes stopped while b was down (%ld)", w.failed);
    ASSERT(node_start(&b, cfg_b, 1) == 0);
    /* It applies what it missed, and what comes meanwhile. */
    int at = __atomic_load_n(&w.acked, __ATOMIC_ACQUIRE);
    ASSERT_MSG(node_has(&b, w.p.token, hfmt("rec-ld-%d", at - 1)), "b did not catch up to rec-ld-%d", at - 1);

    /* A new node from a backup of the leader, taken and started while
     * writes go on. */
    ASSERT(node_from_backup(&c, &a, node_config(url, "c", 1)) == 0);
    ASSERT_MSG(writer_advance(&w, 5), "writes stopped while c joined (%ld)", w.failed);
    at = __atomic_load_n(&w.acked, __ATOMIC_ACQUIRE);
    ASSERT_MSG(node_has(&c, w.p.token, hfmt("rec-ld-%d", at - 1)), "c did not catch up to rec-ld-%d", at - 1);

    __atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
    pthread_join(w.th, NULL);
    ASSERT_INT(w.failed, 0);
    int acked = w.acked;
    ASSERT(acked >= 15);
    srv_t *nodes[3] = {&a, &b, &c};
    for (int k = 0; k < 3; k++)
        ASSERT_MSG(node_holds_each_once(nodes[k], &w.p, "rec-ld", acked) == 0, "node %c", "abc"[k]);
    /* The same stream position on all three. */
    long long seq_a = metric(node_metrics(&a), "casesync_cluster_applied_seq");
    ASSERT(seq_a >= acked);
    for (int k = 1; k < 3; k++) {
        long long seq = -1;
        for (int i = 0; i < 100 && seq != seq_a; i++) {
            seq = metric(node_metrics(nodes[k]), "casesync_cluster_applied_seq");
            if (seq != seq_a) sleep_ms(50);
        }
        ASSERT_MSG(seq == seq_a, "node %c applied %lld, the leader %lld", "abc"[k], seq, seq_a);
    }
    srv_cleanup(&c);
    srv_cleanup(&b);
    srv_cleanup(&a);
    natsd_stop(&n, SIGTERM);
}

/* The stream kept back to a backup: `casesync log-trim NEW` trims the
 * entries before NEW's log entry (less a margin); a node restored from an
 * older backup is then refused with a message saying to restore from a
 * newer one, a node from NEW joins and catches up, and a follower that was
 * frozen behind the trim says it is cut off (metrics) and keeps serving
 * reads. */
TEST(cluster_log_trim_to_a_backup_refuses_older_nodes) {
    natsd_t n = {0};
    ASSERT(natsd_start(&n) == 0);
    const char *url = hfmt("nats://127.0.0.1:%d", n.port);
    srv_t a, b, d, e;
    ASSERT(node_seed(&a, node_config(url, "a", 1), off1_only) == 0);
    ASSERT(node_from_backup(&b, &a, node_config(url, "b", 1)) == 0);
    phone_t p;
    ASSERT(phone_login(&p, &a, "off1", std_pass("off1"), "dev-tr") == 0);
    int np = 0;
    for (; np < 3; np++) {
        resp_t r = phone_push(&p, changes(ch_create(hfmt("rec-tr-%d", np), "general", NULL)));
        ASSERT_STATUS(r, 200);
    }
    long long old_seq = 0, new_seq = 0, first = 0, last = 0;
    const char *old_dir = node_backup(&a, &old_seq);
    ASSERT(old_dir != NULL && old_seq >= 4);
    ASSERT(node_has(&b, p.token, hfmt("rec-tr-%d", np - 1)));
    ASSERT(kill(b.pid, SIGSTOP) == 0); /* b stays behind from here */
    for (; np < 6; np++) {
        resp_t r = phone_push(&p, changes(ch_create(hfmt("rec-tr-%d", np), "general", NULL)));
        ASSERT_STATUS(r, 200);
    }
    const char *new_dir = node_backup(&a, &new_seq);
    ASSERT(new_dir != NULL && new_seq >= old_seq + 3);
    for (; np < 8; np++) {
        resp_t r = phone_push(&p, changes(ch_create(hfmt("rec-tr-%d", np), "general", NULL)));
        ASSERT_STATUS(r, 200);
    }
    ASSERT(stream_bounds(url, &first, &last) == 0);
    ASSERT_INT(first, 1);

    /* The operator's command: --cluster is needed; the default margin keeps
     * everything here; --keep 2 trims up to two entries before NEW's. */
    cli_res_t t = cli(a.dir, NULL, "log-trim", new_dir);
    ASSERT_MSG(t.rc == 2, "log-trim without --cluster exited %d", t.rc);
    t = cli(a.dir, NULL, "log-trim", new_dir, "--cluster", url);
    ASSERT_MSG(t.rc == 0 && strstr(t.out, "nothing to trim"), "log-trim: %d %s %s", t.rc, t.out, t.err);
    t = cli(a.dir, NULL, "log-trim", new_dir, "--cluster", url, "--keep", "2");
    ASSERT_MSG(t.rc == 0 && strstr(t.out, "now holds entries"), "log-trim --keep 2: %d %s %s", t.rc, t.out,
               t.err);
    ASSERT(stream_bounds(url, &first, &last) == 0);
    ASSERT_INT(first, new_seq - 1);
    ASSERT(last > new_seq);

    /* A node from the older backup cannot catch up: refused, clearly. */
    ASSERT(node_from_folder(&d, old_dir, node_config(url, "d", 1)) != 0);
    const char *log = file_text(hfmt("%s/server.log", d.dir));
    ASSERT_MSG(
        strstr(log, "Restore this node from a newer backup") &&
            strstr(log, hfmt("this store has applied log entry %lld, the stream CASESYNC starts at %lld",
                             old_seq, first)),
        "d's log: %.2000s", log);
    /* A node from the newer backup joins and has everything once. */
    ASSERT(node_from_folder(&e, new_dir, node_config(url, "e", 1)) == 0);
    ASSERT(node_holds_each_once(&e, &p, "rec-tr", np) == 0);
    /* Writes go on, and reach e. */
    resp_t r = phone_push(&p, changes(ch_create(hfmt("rec-tr-%d", np), "general", NULL)));
    ASSERT_STATUS(r, 200);
    np++;
    ASSERT(node_holds_each_once(&e, &p, "rec-tr", np) == 0);

    /* The frozen follower wakes up behind the trim: cut off, says so, and
     * still serves what it has. */
    ASSERT(kill(b.pid, SIGCONT) == 0);
    const char *mb = "";
    for (int i = 0; i < 100; i++) {
        mb = node_metrics(&b);
        if (metric(mb, "casesync_cluster_cut_off") == 1) break;
        sleep_ms(50);
    }
    ASSERT_MSG(metric(mb, "casesync_cluster_cut_off") == 1, "b's metrics: %.1500s", mb);
    ASSERT_INT(metric(mb, "casesync_cluster_stream_first_seq"), first);
    ASSERT_INT(metric(node_metrics(&a), "casesync_cluster_cut_off"), 0);
    ASSERT(strstr(file_text(hfmt("%s/server.log", b.dir)), "Restore this node from a newer backup"));
    r = http(&b, "GET", "/v1/cases/rec-tr-0", p.token, NULL, NULL);
    ASSERT_STATUS(r, 200);

    srv_cleanup(&e);
    srv_cleanup(&d);
    srv_cleanup(&b);
    srv_cleanup(&a);
    (void)!system(hfmt("rm -rf %s %s", old_dir, new_dir));
    natsd_stop(&n, SIGTERM);
}

/* The stream lost (here its only nats-server's folder; in production two
 * of three nats-servers' disks), and the cluster rebuilt as operations.md
 * says: the most advanced store is detached and seeds a new stream; the
 * other node's old store, whose log entries are numbered after the old
 * stream, is refused (it would apply the new stream's entries from the wrong
 * place), and a node seeded from the new leader's backup joins with every
 * change, old and new, once. */
TEST(cluster_lost_stream_rebuilt_from_the_most_advanced_store) {
    natsd_t n = {0};
    ASSERT(natsd_start(&n) == 0);
    const char *url = hfmt("nats://127.0.0.1:%d", n.port);
    const char *cfg_a = node_config(url, "a", 1), *cfg_b = node_config(url, "b", 1);
    srv_t a, b, c;
    ASSERT(node_seed(&a, cfg_a, off1_only) == 0);
    ASSERT(node_from_backup(&b, &a, cfg_b) == 0);
    phone_t p;
    ASSERT(phone_login(&p, &a, "off1", std_pass("off1"), "dev-lost") == 0);
    int np = 0;
    resp_t r;
    for (; np < 3; np++) {
        r = phone_push(&p, changes(ch_create(hfmt("rec-lost-%d", np), "general", NULL)));
        ASSERT_STATUS(r, 200);
    }
    ASSERT(node_has(&b, p.token, hfmt("rec-lost-%d", np - 1)));
    long long applied_a = metric(node_metrics(&a), "casesync_cluster_applied_seq");
    ASSERT(applied_a >= 4);

    /* The stream is gone. */
    natsd_stop(&n, SIGKILL);
    (void)!system(hfmt("rm -rf %s/jetstream", n.dir));
    ASSERT_INT(srv_stop(&a), 0);
    ASSERT_INT(srv_stop(&b), 0);

    /* The runbook: detach the most advanced store, start it on the new
     * (empty) nats-servers; it makes the stream and leads. */
    ASSERT(natsd_start(&n) == 0);
    cli_res_t d = cli(a.dir, NULL, "detach");
    ASSERT_MSG(d.rc == 0 && strstr(d.out, hfmt("applied log entry %lld", applied_a)), "detach: %d %s %s",
               d.rc, d.out, d.err);
    ASSERT(node_start(&a, cfg_a, 1) == 0);
    ASSERT(phone_login(&p, &a, "off1", std_pass("off1"), "dev-lost") == 0);
    /* Past b's old log position, so that a store following the old stream
     * would find entries to apply. */
    for (int i = 0; i < 3 + applied_a; i++, np++) {
        r = phone_push(&p, changes(ch_create(hfmt("rec-lost-%d", np), "general", NULL)));
        ASSERT_STATUS(r, 200);
    }
    long long first = 0, last = 0;
    ASSERT(stream_bounds(url, &first, &last) == 0);
    ASSERT_MSG(last > applied_a, "the new stream ends at %lld, b applied %lld", last, applied_a);

    /* b's old store: refused, saying what to do. */
    ASSERT(node_start(&b, cfg_b, 1) != 0);
    const char *log = file_text(hfmt("%s/server.log", b.dir));
    ASSERT_MSG(
        strstr(log, "this store followed another stream CASESYNC") &&
            strstr(log, "Restore this node from a backup of a node of the cluster, or `casesync detach`"),
        "b's log: %.2000s", log);
    /* Detached, it may not join a stream that has entries either (it would
     * apply them from entry 1 over its own records). */
    d = cli(b.dir, NULL, "detach");
    ASSERT_MSG(d.rc == 0, "detach of b: %d %s", d.rc, d.err);
    ASSERT(node_start(&b, cfg_b, 1) != 0);
    log = file_text(hfmt("%s/server.log", b.dir));
    ASSERT_MSG(
        strstr(log, "this store was detached from its cluster (casesync detach): it may seed a new cluster"),
        "b's log: %.2000s", log);
    /* A node from the new leader's backup joins with everything once. */
    ASSERT(node_from_backup(&c, &a, node_config(url, "c", 1)) == 0);
    ASSERT(node_holds_each_once(&c, &p, "rec-lost", np) == 0);
    ASSERT(node_holds_each_once(&a, &p, "rec-lost", np) == 0);
    srv_cleanup(&c);
    srv_cleanup(&b);
    srv_cleanup(&a);
    natsd_stop(&n, SIGTERM);
}

/* ---- evidence (sync/blobstream.h) ------------------------------------------------- */

/* n pseudo-random bytes (xorshift, seeded), pool-owned. */
static unsigned char *ev_bytes(size_t n, unsigned long long seed) {
    unsigned char *p = h_keep(malloc(n ? n : 1), NULL);
    unsigned long long x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)(x >> 24);
    }
    return p;
}

static const char *ev_sha(const void *data, size_t len) {
    unsigned char md[32];
    unsigned int n = 0;
    char *hex = hfmt("%64s", "");
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

static const char *ev_b64(const char *text) {
    char *out = h_keep(malloc(strlen(text) * 2 + 8), NULL);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)text, (int)strlen(text));
    return out;
}

/* POST /v1/uploads of len bytes named sha on s: the upload's path, or NULL
 * (*r gets the answer). */
static const char *ev_create(srv_t *s, const char *token, size_t len, const char *sha, resp_t *r) {
    const char *h[] = {"Tus-Resumable: 1.0.0", hfmt("Upload-Length: %zu", len),
                       hfmt("Upload-Metadata: sha256 %s,mime %s", ev_b64(sha), ev_b64("video/mp4")), NULL};
    *r = http(s, "POST", "/v1/uploads", token, NULL, h);
    if (r->status != 201) return NULL;
    const char *loc = resp_header(r, "Location");
    if (loc && strncmp(loc, s->base, strlen(s->base)) == 0) loc += strlen(s->base);
    return loc;
}

static resp_t ev_patch(srv_t *s, const char *token, const char *path, size_t offset, const void *data,
                       size_t len) {
    const char *h[] = {"Tus-Resumable: 1.0.0", hfmt("Upload-Offset: %zu", offset),
                       "Content-Type: application/offset+octet-stream", NULL};
    return http_raw(s, "PATCH", path, token, data, len, h);
}

static resp_t ev_head(srv_t *s, const char *token, const char *path) {
    const char *h[] = {"Tus-Resumable: 1.0.0", NULL};
    return http(s, "HEAD", path, token, NULL, h);
}

/* The blob's file in a node's folder, or NULL; *len its size. */
static unsigned char *ev_file(const srv_t *s, const char *sha, size_t *len) {
    const char *path = hfmt("%s/blobs/%.2s/%.2s/%s", s->dir, sha, sha + 2, sha);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    unsigned char *p = NULL;
    if (fstat(fileno(f), &st) == 0 && (p = h_keep(malloc((size_t)st.st_size + 1), NULL)) != NULL)
        *len = fread(p, 1, (size_t)st.st_size, f);
    fclose(f);
    return p;
}

/* Waits (bounded) until the node holds the blob's file with these bytes. */
static int ev_file_arrives(const srv_t *s, const char *sha, const void *data, size_t len) {
    for (int i = 0; i < 200; i++) {
        size_t n = 0;
        unsigned char *p = ev_file(s, sha, &n);
        if (p && n == len && memcmp(p, data, len) == 0) return 1;
        sleep_ms(50);
    }
    return 0;
}

/* Sets the blob stream's byte limit (-1: none), as an operator might; with
 * the discard-new policy a publish past it is refused. 0 or -1. */
static int blob_stream_limit(const char *url, int64_t max_bytes) {
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    int rc = -1;
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK) return -1;
    if (natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
        js_GetStreamInfo(&si, js, "CASESYNC_BLOBS", NULL, NULL) == NATS_OK) {
        jsStreamConfig sc = *si->Config;
        sc.MaxBytes = max_bytes;
        sc.Discard = js_DiscardNew;
        jsStreamInfo *ui = NULL;
        rc = js_UpdateStream(&ui, js, &sc, NULL, NULL) == NATS_OK ? 0 : -1;
        jsStreamInfo_Destroy(ui);
        jsStreamInfo_Destroy(si);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}

/* Does the blob stream end blob sha with its marker? */
static int blob_stream_has(const char *url, const char *sha) {
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsMsg *m = NULL;
    int has = 0;
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK) return 0;
    if (natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
        js_GetLastMsg(&m, js, "CASESYNC_BLOBS", hfmt("casesync.blob.%s.end", sha), NULL, NULL) == NATS_OK) {
        has = 1;
        natsMsg_Destroy(m);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return has;
}

/* The final PATCH of an upload is acknowledged only once the bytes are in
 * the replicated blob stream; a follower writes every blob file from the
 * stream by itself (and fetches one at once when a read finds it missing),
 * so it serves every acknowledged blob and `verify --deep` passes on it.
 * When the stream refuses the bytes the final PATCH answers 503 with
 * Retry-After, the blob stays unknown, and the tus client's HEAD finishes
 * it once the stream takes them again. Upload state reads on a follower go
 * to the leader. */
TEST(cluster_evidence_replicated_before_acknowledged) {
    natsd_t n = {0};
    ASSERT(natsd_start(&n) == 0);
    const char *url = hfmt("nats://127.0.0.1:%d", n.port);
    srv_t a, b;
    ASSERT(node_seed(&a, node_config(url, "a", 1), off1_only) == 0);
    ASSERT(node_from_backup(&b, &a, node_config(url, "b", 1)) == 0);
    phone_t p;
    ASSERT(phone_login(&p, &a, "off1", std_pass("off1"), "dev-ev1") == 0);

    /* 1.5 MB: two chunks of the stream (1 MB max_payload). */
    size_t len = 1536 * 1024;
    unsigned char *data = ev_bytes(len, 7);
    const char *sha = ev_sha(data, len);
    resp_t r;
    const char *path = ev_create(&a, p.token, len, sha, &r);
    ASSERT_MSG(path, "create: %ld %s", r.status, r.body);
    r = ev_patch(&a, p.token, path, 0, data, len);
    ASSERT_STATUS(r, 204);
    ASSERT_MSG(blob_stream_has(url, sha), "the PATCH was acknowledged before the blob stream held the bytes");
    srv_t *ab[2] = {&a, &b};
    ASSERT(nodes_caught_up(ab, 2)); /* b knows the blob (its row) */
    /* The follower writes the file by itself, nobody asking for it. */
    ASSERT_MSG(ev_file_arrives(&b, sha, data, len), "the follower never wrote blob %s", sha);
    cli_res_t c = cli(b.dir, NULL, "verify", "--deep");
    ASSERT_MSG(c.rc == 0, "verify --deep of the follower exited %d: %s %s", c.rc, c.out, c.err);
    phone_t pb = p;
    pb.srv = &b;
    r = phone_get(&pb, hfmt("/v1/blobs/%s", sha));
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(r.len == len && memcmp(r.body, data, len) == 0, "the follower served %zu other bytes", r.len);

    /* A follower whose file is gone (or not there yet) fetches it on read. */
    size_t len2 = 4000;
    unsigned char *data2 = ev_bytes(len2, 11);
    const char *sha2 = ev_sha(data2, len2);
    const char *path2 = ev_create(&a, p.token, len2, sha2, &r);
    ASSERT_MSG(path2, "create: %ld %s", r.status, r.body);
    r = ev_patch(&a, p.token, path2, 0, data2, len2);
    ASSERT_STATUS(r, 204);
    ASSERT(ev_file_arrives(&b, sha2, data2, len2));
    ASSERT(nodes_caught_up(ab, 2));
    ASSERT_INT(unlink(hfmt("%s/blobs/%.2s/%.2s/%s", b.dir, sha2, sha2 + 2, sha2)), 0);
    r = phone_get(&pb, hfmt("/v1/blobs/%s", sha2));
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(r.len == len2 && memcmp(r.body, data2, len2) == 0, "fetched on read: %zu other bytes", r.len);

    /* Upload state on a follower: redirected, only the leader knows it. */
    size_t len3 = 300 * 1024;
    unsigned char *data3 = ev_bytes(len3, 13);
    const char *sha3 = ev_sha(data3, len3);
    const char *path3 = ev_create(&a, p.token, len3, sha3, &r);
    ASSERT_MSG(path3, "create: %ld %s", r.status, r.body);
    r = ev_head(&b, p.token, path3);
    ASSERT_STATUS(r, 307);
    ASSERT_STR(resp_header(&r, "Location"), hfmt("%s%s", a.base, path3));

    /* The stream refuses the bytes (full): the final PATCH is not
     * acknowledged, the blob stays unknown on every node. */
    ASSERT(blob_stream_limit(url, 1024) == 0);
    r = ev_patch(&a, p.token, path3, 0, data3, len3);
    ASSERT_STATUS(r, 503);
    ASSERT_STR(resp_error_code(&r), "unavailable");
    ASSERT(resp_header(&r, "Retry-After") != NULL);
    r = phone_get(&p, hfmt("/v1/blobs/%s", sha3));
    ASSERT_STATUS(r, 404);
    r = ev_head(&a, p.token, path3);
    ASSERT_STATUS(r, 503);
    /* The same last bytes again: the offset moved (409); the tus client asks. */
    r = ev_patch(&a, p.token, path3, 0, data3, len3);
    ASSERT_STATUS(r, 409);
    ASSERT(blob_stream_limit(url, -1) == 0);
    r = ev_head(&a, p.token, path3);
    ASSERT_STATUS(r, 200);
    ASSERT_STR(resp_header(&r, "Upload-Offset"), hfmt("%zu", len3));
    ASSERT(blob_stream_has(url, sha3));
    r = phone_get(&p, hfmt("/v1/blobs/%s", sha3));
    ASSERT_STATUS(r, 200);
    ASSERT(ev_file_arrives(&b, sha3, data3, len3));
    ASSERT(nodes_caught_up(ab, 2));
    for (int k = 0; k < 2; k++) {
        srv_t *x = k ? &b : &a;
        c = cli(x->dir, NULL, "verify", "--deep");
        ASSERT_MSG(c.rc == 0, "verify --deep of %c exited %d: %s %s", k ? 'b' : 'a', c.rc, c.out, c.err);
        ASSERT_MSG(strstr(c.out, "\"blobs\":3"), "node %c: %s", k ? 'b' : 'a', c.out);
    }
    const char *m = node_metrics(&b);
    ASSERT_MSG(metric(m, "casesync_cluster_blobs_fetched_total") >= 4, "%s", m);
    srv_cleanup(&b);
    srv_cleanup(&a);
    natsd_stop(&n, SIGTERM);
}

/* ---- behind nginx (deploy/nginx-cluster.conf) ----------------------------------------- */

#define CLUSTER_NGINX_CONF "deploy/nginx-cluster.conf"

/* deploy/nginx-cluster.conf with every upstream server pointed at the
 * follower: each request lands there first, so every write the phone sends
 * through nginx must reach the leader through the follower's 307, which
 * nginx follows itself with the same method and body (the phone never sees
 * it). Reads are served by the follower. */
TEST(cluster_nginx_follows_307_to_the_leader_with_the_body) {
    natsd_t n = {0};
    ASSERT(natsd_start(&n) == 0);
    const char *url = hfmt("nats://127.0.0.1:%d", n.port);
    srv_t a, b;
    ASSERT(node_seed(&a, node_config(url, "a", 1), off1_only) == 0);
    ASSERT(node_from_backup(&b, &a, node_config(url, "b", 1)) == 0);
    px_t px;
    int ports[3] = {b.port, b.port, b.port};
    int started = px_start_front(&px, CLUSTER_NGINX_CONF, ports, 3) == 0;
    if (!started) px_cleanup(&px);
    ASSERT_MSG(started, "nginx did not start with " CLUSTER_NGINX_CONF);
    px_client_t pc = {.px = &px};

    /* b must know the leader first (503 until it has read the lease). */
    const char *login = "{\"username\":\"off1\",\"password\":\"%s\",\"device_id\":\"dev-ngx\"}";
    const char *lbody = hfmt(login, std_pass("off1"));
    resp_t r = {0};
    for (int i = 0; i < 100; i++) {
        r = px_http(&pc, "POST", "/v1/auth/login", NULL, lbody, strlen(lbody), NULL);
        if (r.status != 503) break;
        sleep_ms(100);
    }
    ASSERT_STATUS(r, 200);
    const char *token = jstr(resp_json(&r), "token");
    ASSERT(token != NULL);
    long long seq = jint(resp_json(&r), "next_changeset_seq");
    ASSERT(seq > 0);

    /* A push: the follower's 307 is followed, the body sent again. */
    const char *pb = push_body("dev-ngx", seq, changes(ch_create("rec-ngx-1", "general", NULL)));
    r = px_http(&pc, "POST", "/v1/sync/push", token, pb, strlen(pb), NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(strstr(r.body, "rec-ngx-1"), "%.300s", r.body);
    r = http(&a, "GET", "/v1/cases/rec-ngx-1", token, NULL, NULL);
    ASSERT_STATUS(r, 200);

    /* A tus upload: create, two PATCHes (the second completes it), HEAD
     * between them (upload state is the leader's too). */
    size_t len = 1200 * 1024, half = 700 * 1024;
    unsigned char *data = ev_bytes(len, 17);
    const char *sha = ev_sha(data, len);
    const char *ch[] = {"Tus-Resumable: 1.0.0", hfmt("Upload-Length: %zu", len),
                        hfmt("Upload-Metadata: sha256 %s,mime %s", ev_b64(sha), ev_b64("video/mp4")), NULL};
    r = px_http(&pc, "POST", "/v1/uploads", token, NULL, 0, ch);
    ASSERT_STATUS(r, 201);
    const char *loc = resp_header(&r, "Location");
    ASSERT_MSG(loc && loc[0] == '/', "the upload's Location %s is not a path of this base", loc ? loc : "-");
    for (int k = 0; k < 2; k++) {
        size_t off = k ? half : 0, cnt = k ? len - half : half;
        const char *ph[] = {"Tus-Resumable: 1.0.0", hfmt("Upload-Offset: %zu", off),
                            "Content-Type: application/offset+octet-stream", NULL};
        r = px_http(&pc, "PATCH", loc, token, data + off, cnt, ph);
        ASSERT_STATUS(r, 204);
        ASSERT_STR(resp_header(&r, "Upload-Offset"), hfmt("%zu", off + cnt));
        if (k == 0) {
            const char *hh[] = {"Tus-Resumable: 1.0.0", NULL};
            r = px_http(&pc, "HEAD", loc, token, NULL, 0, hh);
            ASSERT_STATUS(r, 200);
            ASSERT_STR(resp_header(&r, "Upload-Offset"), hfmt("%zu", half));
        }
    }
    /* Read back through nginx: served by the follower (once it has applied
     * the entry that records the blob: reads lag the leader a little), the
     * bytes intact. */
    for (int i = 0; i < 100; i++) {
        r = px_http(&pc, "GET", hfmt("/v1/blobs/%s", sha), token, NULL, 0, NULL);
        if (r.status != 404) break;
        sleep_ms(50);
    }
    ASSERT_STATUS(r, 200);
    ASSERT_MSG(r.len == len && memcmp(r.body, data, len) == 0, "%zu other bytes through nginx", r.len);
    size_t flen = 0;
    unsigned char *fa = ev_file(&a, sha, &flen);
    ASSERT_MSG(fa && flen == len && memcmp(fa, data, len) == 0, "the leader does not hold the blob");

    /* casesyncd's own 503 passes through, not replaced by nginx's page
     * (Retry-After 5): with NATS gone the leader cannot append to the log. */
    natsd_stop(&n, SIGKILL);
    const char *pb2 = push_body("dev-ngx", seq + 1, changes(ch_create("rec-ngx-2", "general", NULL)));
    r = px_http(&pc, "POST", "/v1/sync/push", token, pb2, strlen(pb2), NULL);
    ASSERT_STATUS(r, 503);
    ASSERT_STR(resp_error_code(&r), "unavailable");
    ASSERT_STR(resp_header(&r, "Retry-After"), "2");
    px_cleanup(&px);
    srv_cleanup(&b);
    srv_cleanup(&a);
}

/* ---- phones on libcasesync (clients/c) ----------------------------------------------- */

static void lib_close(void *h) {
    casesync_close(h);
}

/* Runs while the pool drains: no pool strings here. */
static void lib_rm_dir(void *d) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", (const char *)d);
    (void)!system(cmd);
    free(d);
}

/* A libcasesync handle on a new state folder, logged in at base_url (ca:
 * the CA file for https, or NULL). NULL on failure (printed). */
static casesync_t *lib_phone(const char *base_url, const char *ca, const char *user, const char *device) {
    char *dir = strdup(hfmt("/tmp/casesync-clphone-%s-XXXXXX", device));
    if (!dir || !mkdtemp(dir)) {
        free(dir);
        return NULL;
    }
    h_keep(dir, lib_rm_dir);
    casesync_options_t o = {0};
    o.state_dir = dir;
    o.no_sync = 1;
    o.ca_file = ca;
    o.request_timeout_ms = 30000;
    casesync_t *h = NULL;
    casesync_error_t err;
    if (casesync_open(&o, &h, &err) != 0) {
        fprintf(stderr, "    casesync_open: %s\n", err.message);
        return NULL;
    }
    h_keep(h, lib_close);
    for (int i = 0; i < 100; i++) {
        int rc = casesync_login(h, base_url, user, std_pass(user), device, &err);
        if (rc == 0) return h;
        if (rc != CASESYNC_E_BUSY && rc != CASESYNC_E_NETWORK) {
            fprintf(stderr, "    casesync_login %s at %s: %s\n", user, base_url, err.message);
            return NULL;
        }
        sleep_ms(100);
    }
    fprintf(stderr, "    casesync_login %s at %s: still %s\n", user, base_url, err.message);
    return NULL;
}

static const char *lib_fields(void) {
    return hfmt("{\"procedure\":\"general\",\"source\":\"patrol\",\"description\":\"vendor on the bridge\","
                "\"occurred_at\":\"%s\",\"grid\":\"%s\",\"address\":\"1 Qianmen St\","
                "\"location\":{\"lon\":116.39,\"lat\":39.9,\"crs\":\"wgs84\"}}",
                iso_now(-60000), GRID1);
}

/* libcasesync follows a follower's 307 to the leader's URL with its token
 * (curl alone would drop the Authorization header on another host): a phone
 * that talks to a follower logs in, pushes and uploads through it. */
TEST(cluster_libcasesync_follows_307_with_its_token) {
    natsd_t n = {0};
    ASSERT(natsd_start(&n) == 0);
    const char *url = hfmt("nats://127.0.0.1:%d", n.port);
    srv_t a, b;
    ASSERT(node_seed(&a, node_config(url, "a", 1), off1_only) == 0);
    ASSERT(node_from_backup(&b, &a, node_config(url, "b", 1)) == 0);
    casesync_t *h = lib_phone(b.base, NULL, "off1", "dev-lib307");
    ASSERT_MSG(h != NULL, "no login through the follower");
    casesync_error_t err;
    char id[CASESYNC_ID_MAX], item[CASESYNC_ID_MAX];
    ASSERT_INT(casesync_create(h, TYPE_VENDING, lib_fields(), "rec-lib307-1", id, &err), 0);
    const char *file = hfmt("%s/photo.jpg", b.dir);
    size_t len = 200 * 1024;
    unsigned char *data = ev_bytes(len, 23);
    FILE *f = fopen(file, "wb");
    ASSERT(f && fwrite(data, 1, len, f) == len);
    fclose(f);
    ASSERT_INT(casesync_attach(h, id, file, "photo", "image/jpeg", item, &err), 0);
    casesync_report_t rep;
    int rc = -1;
    for (int i = 0; i < 50 && rc != 0; i++) {
        memset(&rep, 0, sizeof rep);
        rc = casesync_sync(h, 0, &rep, &err);
        if (rc) sleep_ms(100);
    }
    ASSERT_MSG(rc == 0, "sync through the follower: %s", err.message);
    ASSERT_INT(rep.uploads_done, 1);
    const char *token = login(&a, "off1", std_pass("off1"), "dev-lib307-check", NULL);
    ASSERT(token != NULL);
    resp_t r = http(&a, "GET", "/v1/cases/rec-lib307-1", token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    r = http(&a, "GET", hfmt("/v1/blobs/%s", ev_sha(data, len)), token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT(r.len == len && memcmp(r.body, data, len) == 0);
    srv_cleanup(&b);
    srv_cleanup(&a);
    natsd_stop(&n, SIGTERM);
}

/* ---- a fleet through nginx across a kill -9 of the leader ------------------------------ */

enum { FLEET_PHONES = 4, FLEET_ROUNDS = 6, FLEET_SYNC_TRIES = 400 };

typedef struct fleet_phone {
    casesync_t *h;
    int idx;
    const char *user;
    char ids[FLEET_ROUNDS][CASESYNC_ID_MAX];
    const char *file[FLEET_ROUNDS]; /* NULL: no evidence this round */
    const unsigned char *data[FLEET_ROUNDS];
    size_t size[FLEET_ROUNDS];
    const char *sha[FLEET_ROUNDS];
    const char *fields;
    int failed_syncs; /* syncs that failed (and were retried) */
    char why[300];    /* set when the phone gave up */
} fleet_phone_t;

static int fleet_done; /* rounds finished by every phone (atomic) */

/* One sync, retried (bounded) while the cluster fails over: 0 or -1. */
static int fleet_sync(fleet_phone_t *f) {
    casesync_error_t err;
    casesync_report_t rep;
    for (int i = 0; i < FLEET_SYNC_TRIES; i++) {
        memset(&rep, 0, sizeof rep);
        int rc = casesync_sync(f->h, 0, &rep, &err);
        if (rc == 0 && rep.uploads_failed == 0) return 0;
        if (rc == 0) {
            snprintf(f->why, sizeof f->why, "an upload failed for good");
            return -1;
        }
        f->failed_syncs++;
        nanosleep(&(struct timespec){0, 150 * 1000000L}, NULL);
    }
    snprintf(f->why, sizeof f->why, "sync still failing: %s", err.message);
    return -1;
}

static void *fleet_run(void *arg) {
    fleet_phone_t *f = arg;
    casesync_error_t err;
    for (int r = 0; r < FLEET_ROUNDS; r++) {
        char id[CASESYNC_ID_MAX], item[CASESYNC_ID_MAX];
        if (casesync_create(f->h, TYPE_VENDING, f->fields, f->ids[r], id, &err) != 0) {
            snprintf(f->why, sizeof f->why, "create %s: %s", f->ids[r], err.message);
            return NULL;
        }
        if (f->file[r] && casesync_attach(f->h, id, f->file[r], "bodycam", "video/mp4", item, &err) != 0) {
            snprintf(f->why, sizeof f->why, "attach to %s: %s", f->ids[r], err.message);
            return NULL;
        }
        if (fleet_sync(f) != 0) return NULL;
        __atomic_add_fetch(&fleet_done, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

/* The leader among the running nodes (writable in its metrics), or NULL. */
static srv_t *fleet_leader(srv_t *const *nodes, int n) {
    for (int i = 0; i < 200; i++) {
        for (int k = 0; k < n; k++)
            if (nodes[k]->pid > 0 && metric(node_metrics(nodes[k]), "casesync_cluster_writable") == 1)
                return nodes[k];
        sleep_ms(50);
    }
    return NULL;
}

static int strcmp_ptr(const char **x, const char **y) {
    return strcmp(*x, *y);
}

/* The phone's local view as "id:version:evidence:pending" lines, sorted (pool). */
static const char *fleet_view(casesync_t *h) {
    char *t = NULL;
    if (casesync_list(h, &t) != 0 || !t) return NULL;
    cJSON *list = jparse(t);
    casesync_free(t);
    int n = jlen(list, ""), k = 0;
    if (n < 0) return NULL;
    const char **lines = h_keep(calloc((size_t)n + 1, sizeof *lines), NULL);
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        lines[k++] = hfmt("%s:%lld:%d:%lld", jstr(it, "id"), jint(it, "version"), jlen(it, "fields.evidence"),
                          jint(it, "pending"));
    }
    qsort(lines, (size_t)k, sizeof *lines, (int (*)(const void *, const void *))strcmp_ptr);
    const char *all = "";
    for (int i = 0; i < k; i++)
        all = hfmt("%s%s\n", all, lines[i]);
    return all;
}

/* Three nats-servers (R3), three casesyncd nodes, deploy/nginx-cluster.conf
 * in front. A fleet of phones (libcasesync, one base URL: nginx) creates
 * records and attaches evidence, syncing (push, pull, tus uploads) after
 * each; the leader is killed with kill -9 while they run. A follower takes
 * over and the phones carry on through nginx (their syncs fail for a while
 * and are retried, as an app does). After the run, with the old leader
 * back: every record each phone was told was taken is on every node exactly
 * once, every uploaded blob is on every node with its bytes, `casesync
 * verify --deep` passes on each node, and every phone's view is the same. */
TEST(cluster_fleet_through_nginx_survives_kill9_of_the_leader) {
    natsd_t nd[3] = {{0}};
    const char *urls = "", *routes = "";
    for (int i = 0; i < 3; i++) {
        nd[i].port = free_port();
        nd[i].cport = free_port();
        snprintf(nd[i].name, sizeof nd[i].name, "n%d", i + 1);
        urls = hfmt("%s%snats://127.0.0.1:%d", urls, i ? "," : "", nd[i].port);
        routes = hfmt("%s%snats://127.0.0.1:%d", routes, i ? "," : "", nd[i].cport);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(nd[i].routes, sizeof nd[i].routes, "%s", routes);
        ASSERT(natsd_start(&nd[i]) == 0);
    }
    static const char *const cast[] = {"off1", "off2", NULL};
    srv_t a, b, c;
    srv_t *nodes[3] = {&a, &b, &c};
    const char *cfg[3] = {node_config(urls, "a", 3), node_config(urls, "b", 3), node_config(urls, "c", 3)};
    ASSERT(node_seed(&a, cfg[0], cast) == 0);
    ASSERT(node_from_backup(&b, &a, cfg[1]) == 0);
    ASSERT(node_from_backup(&c, &a, cfg[2]) == 0);
    srv_t *L = fleet_leader(nodes, 3);
    ASSERT_MSG(L != NULL, "no node took the lease");

    px_t px;
    int ports[3] = {a.port, b.port, c.port};
    int started = px_start_front(&px, CLUSTER_NGINX_CONF, ports, 3) == 0;
    if (!started) px_cleanup(&px);
    ASSERT_MSG(started, "nginx did not start with " CLUSTER_NGINX_CONF);
    const char *base = hfmt("https://127.0.0.1:%d", px.port);

    static fleet_phone_t ph[FLEET_PHONES];
    int nfiles = 0;
    for (int i = 0; i < FLEET_PHONES; i++) {
        fleet_phone_t *f = &ph[i];
        memset(f, 0, sizeof *f);
        f->idx = i;
        f->user = i % 2 ? "off2" : "off1";
        f->fields = lib_fields();
        f->h = lib_phone(base, px.cert, f->user, hfmt("dev-fleet-%d", i));
        ASSERT_MSG(f->h != NULL, "phone %d could not log in through nginx", i);
        for (int r = 0; r < FLEET_ROUNDS; r++) {
            snprintf(f->ids[r], sizeof f->ids[r], "rec-fleet-%d-%d", i, r);
            if (r % 2) continue;
            /* 0.3 to 1.5 MB: one or two chunks of the blob stream */
            f->size[r] = 300 * 1024 + (size_t)((i * 7 + r * 5) % 5) * 300 * 1024;
            f->data[r] = ev_bytes(f->size[r], (unsigned long long)(1000 + i * 100 + r));
            f->sha[r] = ev_sha(f->data[r], f->size[r]);
            f->file[r] = hfmt("%s/ev-%d-%d.mp4", px.dir, i, r);
            FILE *fp = fopen(f->file[r], "wb");
            ASSERT(fp && fwrite(f->data[r], 1, f->size[r], fp) == f->size[r]);
            fclose(fp);
            nfiles++;
        }
    }

    pthread_t th[FLEET_PHONES];
    __atomic_store_n(&fleet_done, 0, __ATOMIC_SEQ_CST);
    for (int i = 0; i < FLEET_PHONES; i++)
        ASSERT(pthread_create(&th[i], NULL, fleet_run, &ph[i]) == 0);
    /* Mid-run: once the fleet has finished a third of its rounds. */
    for (int i = 0;
         i < 1200 && __atomic_load_n(&fleet_done, __ATOMIC_SEQ_CST) < FLEET_PHONES * FLEET_ROUNDS / 3; i++)
        sleep_ms(50);
    int done_at_kill = __atomic_load_n(&fleet_done, __ATOMIC_SEQ_CST);
    srv_kill9(L);
    double killed = now_s();
    for (int i = 0; i < FLEET_PHONES; i++)
        pthread_join(th[i], NULL);
    double resumed = now_s() - killed;
    int retried = 0;
    for (int i = 0; i < FLEET_PHONES; i++) {
        ASSERT_MSG(!ph[i].why[0], "phone %d: %s", i, ph[i].why);
        retried += ph[i].failed_syncs;
    }
    ASSERT_MSG(done_at_kill < FLEET_PHONES * FLEET_ROUNDS,
               "the leader was killed after the run, not during it");
    fprintf(stderr,
            "    fleet: %d rounds done at the kill, %d syncs retried, the rest done %.1f s after it\n",
            done_at_kill, retried, resumed);

    /* The old leader comes back as a node like the others. */
    const char *cfg_L = cfg[L == &a ? 0 : L == &b ? 1 : 2];
    ASSERT(node_start(L, cfg_L, 1) == 0);
    srv_t *L2 = fleet_leader(nodes, 3);
    ASSERT(L2 != NULL);
    const char *token = login(L2, "off1", std_pass("off1"), "dev-fleet-check", NULL);
    ASSERT(token != NULL);
    ASSERT_MSG(nodes_caught_up(nodes, 3), "the nodes did not all apply the whole log");

    /* Convergence: one more sync each, then every phone sees the same. */
    for (int i = 0; i < FLEET_PHONES; i++)
        ASSERT_MSG(fleet_sync(&ph[i]) == 0, "phone %d: %s", i, ph[i].why);
    const char *view0 = fleet_view(ph[0].h);
    ASSERT(view0 != NULL);
    for (int i = 1; i < FLEET_PHONES; i++) {
        const char *v = fleet_view(ph[i].h);
        ASSERT_MSG(v && strcmp(v, view0) == 0, "phone %d sees\n%s\nphone 0 sees\n%s", i, v ? v : "-", view0);
    }
    for (int i = 0; i < FLEET_PHONES; i++)
        for (int r = 0; r < FLEET_ROUNDS; r++)
            ASSERT_MSG(strstr(view0, hfmt("%s:", ph[i].ids[r])) &&
                           !strstr(view0, hfmt("%s:0:", ph[i].ids[r])),
                       "%s is not in the phones' view:\n%s", ph[i].ids[r], view0);
    ASSERT_MSG(!strstr(view0, ":1\n") && !strstr(view0, ":2\n"), "changes still pending:\n%s", view0);

    /* Every node: each record exactly once, with the same version; each
     * blob's bytes; verify --deep. */
    long long version[FLEET_PHONES][FLEET_ROUNDS];
    for (int k = 0; k < 3; k++) {
        phone_t p = {0};
        p.srv = nodes[k];
        p.token = token;
        cJSON *items = phone_pull_all(&p);
        ASSERT_MSG(items != NULL, "pull from node %c", 'a' + k);
        for (int i = 0; i < FLEET_PHONES; i++)
            for (int r = 0; r < FLEET_ROUNDS; r++) {
                ASSERT_MSG(pull_count(items, ph[i].ids[r]) == 1, "node %c holds %s %d times", 'a' + k,
                           ph[i].ids[r], pull_count(items, ph[i].ids[r]));
                resp_t rr = http(nodes[k], "GET", hfmt("/v1/cases/%s", ph[i].ids[r]), token, NULL, NULL);
                ASSERT_STATUS(rr, 200);
                long long v = jint(resp_json(&rr), "version");
                if (k == 0) version[i][r] = v;
                ASSERT_MSG(v == version[i][r] && v >= 1 && v <= (ph[i].file[r] ? 2 : 1),
                           "node %c: %s at version %lld (node a: %lld)", 'a' + k, ph[i].ids[r], v,
                           version[i][r]);
                if (!ph[i].file[r]) continue;
                ASSERT_MSG(ev_file_arrives(nodes[k], ph[i].sha[r], ph[i].data[r], ph[i].size[r]),
                           "node %c lacks the bytes of %s's evidence", 'a' + k, ph[i].ids[r]);
            }
        int ok = 0;
        cli_res_t v = {0};
        for (int i = 0; i < 50 && !ok; i++) {
            v = cli(nodes[k]->dir, NULL, "verify", "--deep");
            ok = v.rc == 0;
            if (!ok) sleep_ms(200);
        }
        ASSERT_MSG(ok, "verify --deep of node %c exited %d: %s %s", 'a' + k, v.rc, v.out, v.err);
        ASSERT_MSG(strstr(v.out, hfmt("\"blobs\":%d,", nfiles)), "node %c: %s (%d blobs uploaded)", 'a' + k,
                   v.out, nfiles);
    }
    px_cleanup(&px);
    for (int k = 0; k < 3; k++)
        srv_cleanup(nodes[k]);
    for (int i = 0; i < 3; i++)
        natsd_stop(&nd[i], SIGTERM);
}

/* A follower that has not applied what a phone has seen sends the request to
 * the leader (307) instead of answering from its older store: a token the
 * leader made after the follower's last commit (401 without it) and a pull
 * cursor ahead of its store (410 cursor_expired without it, which makes a
 * phone resync from scratch). The follower is held behind by refusing its
 * store's writes (a test-build disk fault), then let go. */
TEST(cluster_follower_behind_the_client_sends_it_to_the_leader) {
    natsd_t n = {0};
    ASSERT(natsd_start(&n) == 0);
    const char *url = hfmt("nats://127.0.0.1:%d", n.port);
    srv_t a, b;
    ASSERT(node_seed(&a, node_config(url, "a", 1), off1_only) == 0);
    ASSERT(node_from_backup(&b, &a, node_config(url, "b", 1)) == 0);
    phone_t p;
    ASSERT(phone_login(&p, &a, "off1", std_pass("off1"), "dev-bh1") == 0);
    resp_t r = phone_push(&p, changes(ch_create("rec-bh-1", "general", NULL)));
    ASSERT_STATUS(r, 200);
    phone_t pb = p;
    pb.srv = &b;
    for (int i = 0; i < 100; i++) {
        r = phone_get(&pb, "/v1/cases/rec-bh-1");
        if (r.status == 200) break;
        sleep_ms(50);
    }
    ASSERT_STATUS(r, 200);

    /* b stops applying: every write of its store fails. */
    FILE *f = fopen(hfmt("%s/.fault", b.dir), "w");
    ASSERT(f != NULL);
    fprintf(f, "write store EIO *\n");
    fclose(f);
    r = phone_push(&p, changes(ch_create("rec-bh-2", "general", NULL)));
    ASSERT_STATUS(r, 200);
    cJSON *items = phone_pull_all(&p);
    ASSERT(items && pull_count(items, "rec-bh-2") == 1 && p.cursor);
    phone_t p2;
    ASSERT(phone_login(&p2, &a, "off1", std_pass("off1"), "dev-bh2") == 0);

    pb.cursor = p.cursor;
    r = phone_pull(&pb, 0, 0);
    ASSERT_STATUS(r, 307);
    const char *loc = resp_header(&r, "Location");
    ASSERT_MSG(loc && strncmp(loc, hfmt("%s/v1/sync/pull?", a.base), strlen(a.base) + 14) == 0, "Location %s",
               loc ? loc : "-");
    r = http(&b, "GET", "/v1/cases/rec-bh-1", p2.token, NULL, NULL);
    ASSERT_STATUS(r, 307);
    ASSERT_STR(resp_header(&r, "Location"), hfmt("%s/v1/cases/rec-bh-1", a.base));
    /* A token nobody made is the leader's to refuse: 401 there. */
    r = http(&b, "GET", "/v1/cases/rec-bh-1", "not-a-token", NULL, NULL);
    ASSERT_STATUS(r, 307);
    r = http(&a, "GET", "/v1/cases/rec-bh-1", "not-a-token", NULL, NULL);
    ASSERT_STATUS(r, 401);

    /* Let go: b catches up and answers both itself. */
    ASSERT_INT(unlink(hfmt("%s/.fault", b.dir)), 0);
    for (int i = 0; i < 200; i++) {
        r = phone_pull(&pb, 0, 0);
        if (r.status == 200) break;
        ASSERT_MSG(r.status == 307, "pull on b while it catches up: %ld %.200s", r.status, r.body);
        pb.cursor = p.cursor;
        sleep_ms(50);
    }
    ASSERT_STATUS(r, 200);
    /* The token came after the cursor's entry: b may apply it a moment later. */
    for (int i = 0; i < 200; i++) {
        r = http(&b, "GET", "/v1/cases/rec-bh-2", p2.token, NULL, NULL);
        if (r.status == 200) break;
        ASSERT_MSG(r.status == 307, "GET on b while it catches up: %ld %.200s", r.status, r.body);
        sleep_ms(50);
    }
    ASSERT_STATUS(r, 200);
    srv_cleanup(&b);
    srv_cleanup(&a);
    natsd_stop(&n, SIGTERM);
}
