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

#include "sync/replica.h"
#include "tests/harness.h"
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
