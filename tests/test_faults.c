/* test_faults.c -- faults the server must ride out: a full store answers 503
 * and applies nothing of the changeset; a raised limit brings it back;
 * clients that trickle their requests lose their connections at the request
 * timeout while others are served; more connections than worker threads are
 * all answered. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/harness.h"
#include "tests/test.h"

TEST(full_store_answers_503_and_applies_nothing) {
    srv_t s;
    const char *cfg = hfmt("/tmp/casesync-faults-%d.json", (int)getpid());
    FILE *f = fopen(cfg, "w");
    ASSERT(f != NULL);
    fputs("{\"map_size\":1048576}", f); /* 1 MiB: full after a few hundred cases */
    fclose(f);
    setenv("CASESYNC_TEST_CONFIG", cfg, 1);
    ASSERT(srv_start(&s) == 0);
    phone_t a;
    ASSERT(std_phone(&a, &s, "off1", "dev-A") == 0);
    ASSERT(std_user(&s, "sup1") != NULL);

    /* Fill it: changesets of 20 cases until one is refused. */
    int acked = 0, full = 0;
    resp_t r;
    for (int cs = 0; cs < 200 && !full; cs++) {
        const char *list = "[";
        for (int i = 0; i < 20; i++)
            list = hfmt("%s%s%s", list, i ? "," : "",
                        ch_create(hfmt("01JDFULL%05d%05d", cs, i), "general",
                                  "{\"description\":\"a long description to fill pages quickly, "
                                  "a long description to fill pages quickly, a long description\"}"));
        list = hfmt("%s]", list);
        r = phone_push(&a, list);
        if (r.status == 200) {
            acked++;
        } else {
            ASSERT_MSG(r.status == 503, "a full store answered %ld %s", r.status, r.body);
            ASSERT_MSG(resp_header(&r, "Retry-After") != NULL, "503 without Retry-After");
            full = cs + 1;
        }
    }
    ASSERT_MSG(full > 0, "1 MiB never filled after %d changesets", acked);
    /* Still alive, still consistent; the refused changeset left nothing behind. */
    r = http(&s, "GET", "/healthz", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    r = phone_get(&a, hfmt("/v1/cases/01JDFULL%05d%05d", full - 1, 0));
    ASSERT_STATUS(r, 404);
    r = phone_get(&a, hfmt("/v1/cases/01JDFULL%05d%05d", full - 2, 19));
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
    cli_res_t v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "verify of a full store exited %d: %s", v.rc, v.err);

    /* The operator raises the limit: the same changeset goes through. */
    f = fopen(cfg, "w");
    ASSERT(f != NULL);
    fputs("{\"map_size\":67108864}", f);
    fclose(f);
    ASSERT(srv_restart(&s) == 0);
    r = phone_push(&a, changes(ch_create("01JDFULLAFTER00001", "general", NULL)));
    ASSERT_MSG(r.status == 200, "after raising map_size: %ld %s", r.status, r.body);
    fprintf(stderr, "    store full after %d changesets of 20 cases; the next was refused whole\n", acked);
    ASSERT_INT(srv_stop(&s), 0);
    unsetenv("CASESYNC_TEST_CONFIG");
    remove(cfg);
    srv_cleanup(&s);
}

/* ======================================================================== */
/* Slow and many clients                                                    */
/* ======================================================================== */

/* A raw loopback connection to s, non-blocking after the connect; -1 on error. */
static int raw_connect(const srv_t *s) {
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)s->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Reads what is there; 1 when the server closed (EOF or reset), else 0. */
static int raw_drain(int fd, char *got, size_t cap, size_t *ngot) {
    for (int i = 0; i < 64; i++) {
        char tmp[4096];
        ssize_t n = recv(fd, tmp, sizeof tmp, 0);
        if (n == 0) return 1;
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : 1;
        size_t room = cap - 1 - *ngot;
        memcpy(got + *ngot, tmp, (size_t)n < room ? (size_t)n : room);
        *ngot += (size_t)n < room ? (size_t)n : room;
        got[*ngot] = 0;
    }
    return 0;
}

/* A client that sends `head` at once and then `slow` one byte per tick. */
typedef struct trickler {
    const char *what;
    const char *head, *slow;
    size_t pos;       /* bytes of slow sent */
    int fd;           /* -1 once closed */
    double closed_at; /* seconds after the start when the server closed it */
    char got[1024];   /* what the server answered, if anything */
    size_t ngot;
} trickler_t;

/* Another client's plain request, in a thread, while the tricklers trickle. */
typedef struct probe {
    srv_t *srv;
    long status;
    double secs;
    char err[256];
} probe_t;

static void *probe_main(void *arg) {
    probe_t *p = arg;
    resp_t r = http(p->srv, "GET", "/healthz", NULL, NULL, NULL);
    p->status = r.status;
    p->secs = r.secs;
    snprintf(p->err, sizeof p->err, "%s", r.err);
    return NULL;
}

#define TRICKLE_TICK_MS 200
#define TRICKLE_MAX_S 25.0

/* Connects every trickler, sends their heads, then one byte of each every
 * tick; a probe request starts after 300 ms. Returns when the server closed
 * them all or after TRICKLE_MAX_S; the probe has finished. 0, or -1 when a
 * connection could not be made. */
static int trickle(srv_t *s, trickler_t *t, int n, probe_t *probe) {
    pthread_t th;
    int started = 0, open = n;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        t[i].fd = raw_connect(s);
        t[i].pos = t[i].ngot = 0;
        t[i].closed_at = -1;
        if (t[i].fd < 0) return -1;
        if (t[i].head &&
            send(t[i].fd, t[i].head, strlen(t[i].head), MSG_NOSIGNAL) != (ssize_t)strlen(t[i].head))
            return -1;
    }
    memset(probe, 0, sizeof *probe);
    probe->srv = s;
    while (open > 0 && now_s() - t0 < TRICKLE_MAX_S) {
        if (!started && now_s() - t0 >= 0.3) started = pthread_create(&th, NULL, probe_main, probe) == 0;
        for (int i = 0; i < n; i++) {
            if (t[i].fd < 0) continue;
            int closed = raw_drain(t[i].fd, t[i].got, sizeof t[i].got, &t[i].ngot);
            if (!closed && t[i].slow[t[i].pos]) {
                if (send(t[i].fd, t[i].slow + t[i].pos, 1, MSG_NOSIGNAL) == 1)
                    t[i].pos++;
                else if (errno != EAGAIN && errno != EWOULDBLOCK)
                    closed = 1;
            }
            if (closed) {
                t[i].closed_at = now_s() - t0;
                close(t[i].fd);
                t[i].fd = -1;
                open--;
            }
        }
        sleep_ms(TRICKLE_TICK_MS);
    }
    for (int i = 0; i < n; i++)
        if (t[i].fd >= 0) close(t[i].fd), t[i].fd = -1;
    if (started)
        pthread_join(th, NULL);
    else
        probe_main(probe);
    return 0;
}

/* The status of a raw answer ("HTTP/1.1 408 ..."), or 0. */
static int raw_status(const char *got) {
    return strncmp(got, "HTTP/1.", 7) == 0 && strlen(got) > 12 ? atoi(got + 9) : 0;
}

/* A string of n copies of ch (pool). */
static const char *repeat(char ch, size_t n) {
    char *p = h_keep(malloc(n + 1), NULL);
    memset(p, ch, n);
    p[n] = 0;
    return p;
}

#define SLOW_TIMEOUT_MS 1500
#define SLACK_S 4.0 /* a loaded machine under ASan */

/* In helpers that return -1 on a failed check (the test then fails with ASSERT). */
#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            test_failf(__FILE__, __LINE__, __VA_ARGS__);                                                     \
            return -1;                                                                                       \
        }                                                                                                    \
    } while (0)

/* A round of tricklers: each was cut by the server near the timeout, before
 * it had sent everything, with no answer or a 4xx; the probe was answered
 * after waiting for a thread (the tricklers held them all), but not for long. */
static int check_round(const trickler_t *t, int n, const probe_t *probe) {
    const double timeout = SLOW_TIMEOUT_MS / 1000.0;
    for (int i = 0; i < n; i++) {
        int st = raw_status(t[i].got);
        fprintf(stderr, "    %s: closed by the server after %.2f s, %zu bytes trickled, answer %d\n",
                t[i].what, t[i].closed_at, t[i].pos, st);
        CHECK(t[i].closed_at >= 0, "%s: still open after %.0f s", t[i].what, TRICKLE_MAX_S);
        CHECK(t[i].slow[t[i].pos] != 0, "%s: sent everything before it was cut", t[i].what);
        CHECK(t[i].closed_at >= 0.8 * timeout && t[i].closed_at <= timeout + SLACK_S,
              "%s: closed after %.2f s with a %.1f s timeout; answer: %.200s", t[i].what, t[i].closed_at,
              timeout, t[i].got);
        CHECK(st == 0 || st == 400 || st == 408, "%s: answered %.200s", t[i].what, t[i].got);
    }
    fprintf(stderr, "    probe GET /healthz: %ld after %.2f s\n", probe->status, probe->secs);
    CHECK(probe->status == 200, "the probe got %ld %s", probe->status, probe->err);
    CHECK(probe->secs >= timeout / 2 - 0.3 && probe->secs <= timeout + SLACK_S,
          "the probe took %.2f s with a %.1f s timeout", probe->secs, timeout);
    return 0;
}

TEST(trickling_clients_time_out_and_free_their_threads) {
    srv_t s;
    ASSERT(srv_start_config(&s, hfmt("{\"threads\":2,\"request_timeout_ms\":%d}", SLOW_TIMEOUT_MS)) == 0);
    phone_t a;
    ASSERT(std_phone(&a, &s, "off1", "dev-A") == 0);
    /* Upload-Metadata: sha256 is base64 of the hex of what the bytes will never be. */
    const char *create[] = {
        "Tus-Resumable: 1.0.0", "Upload-Length: 4096",
        "Upload-Metadata: sha256 OWY2NGE3NDdlMWI5N2YxMzFmYWJiNmI0NDcyOTZjOWI2ZjAyMDFlNzlmYjNj"
        "NTM1NmU2Yzc3ZTg5YjZhODA2YQ==",
        NULL};
    resp_t r = http(&s, "POST", "/v1/uploads", a.token, NULL, create);
    ASSERT_STATUS(r, 201);
    const char *loc = resp_header(&r, "Location");
    ASSERT(loc != NULL);
    if (strncmp(loc, s.base, strlen(s.base)) == 0) loc += strlen(s.base);

    /* Round 1: two request heads, one byte at a time: every worker thread. */
    trickler_t heads[2] = {
        {.what = "head 1",
         .slow = hfmt("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: %s\r\n\r\n", repeat('a', 400))},
        {.what = "head 2",
         .slow = hfmt("GET /v1/schema HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: %s\r\n\r\n", repeat('b', 400))},
    };
    probe_t probe;
    ASSERT(trickle(&s, heads, 2, &probe) == 0);
    ASSERT(check_round(heads, 2, &probe) == 0);

    /* Round 2: whole heads, then the bodies one byte at a time: a JSON login
     * and a tus PATCH. */
    trickler_t bodies[2] = {
        {.what = "JSON body",
         .head = "POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "Content-Length: 420\r\n\r\n",
         .slow =
             hfmt("{\"username\":\"off1\",\"device_id\":\"dev-B\",\"password\":\"%s\"}", repeat('p', 367))},
        {.what = "tus PATCH body",
         .head = hfmt("PATCH %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                      "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                      "Upload-Offset: 0\r\nContent-Length: 4096\r\n\r\n",
                      loc, a.token),
         .slow = repeat('z', 4096)},
    };
    ASSERT_INT(strlen(bodies[0].slow), 420);
    ASSERT(trickle(&s, bodies, 2, &probe) == 0);
    ASSERT(check_round(bodies, 2, &probe) == 0);
    ASSERT_INT(raw_status(bodies[0].got), 408);
    ASSERT_INT(raw_status(bodies[1].got), 408);

    /* What arrived of the PATCH in time is at most what was sent; the upload
     * goes on from the server's offset. */
    const char *tus[] = {"Tus-Resumable: 1.0.0", NULL};
    r = http(&s, "HEAD", loc, a.token, NULL, tus);
    ASSERT_STATUS(r, 200);
    const char *off = resp_header(&r, "Upload-Offset");
    ASSERT(off != NULL);
    ASSERT_MSG(atoll(off) <= (long long)bodies[1].pos, "offset %s after %zu bytes", off, bodies[1].pos);
    r = http(&s, "GET", "/healthz", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
    srv_cleanup(&s);
}

/* One keep-alive connection with one request on it, read by hand. */
typedef struct conn {
    int fd;
    const char *what;
    char got[8192];
    size_t ngot;
    int status;       /* 0 until a whole answer arrived */
    int retry_after;  /* the answer had Retry-After */
    double answered;  /* seconds after the start */
    double closed_at; /* when the server closed it after the answer; -1 while open */
} conn_t;

/* Is got a whole answer (head and Content-Length bytes of body)? Sets
 * status and retry_after then. -1 for an answer we cannot read. */
static int answer_done(conn_t *c) {
    const char *end = strstr(c->got, "\r\n\r\n");
    if (!end) return 0;
    size_t head = (size_t)(end - c->got) + 4;
    const char *cl = strcasestr(c->got, "\r\nContent-Length:");
    if (!cl || cl > end) return -1;
    if (c->ngot < head + (size_t)atol(cl + 17)) return 0;
    c->status = raw_status(c->got);
    const char *ra = strcasestr(c->got, "\r\nRetry-After:");
    c->retry_after = ra && ra < end;
    return 1;
}

#define MANY_THREADS 4
#define MANY_CONNS (4 * MANY_THREADS)
#define MANY_MAX_S 30.0
#define LONG_POLL_S 2

TEST(four_times_threads_connections_are_all_answered) {
    srv_t s;
    ASSERT(srv_start_config(&s, hfmt("{\"threads\":%d}", MANY_THREADS)) == 0);
    phone_t a;
    ASSERT(std_phone(&a, &s, "off1", "dev-A") == 0);
    resp_t r = phone_pull(&a, 0, 0); /* a cursor at the head: pulls with it wait */
    ASSERT_STATUS(r, 200);
    char *cursor = curl_easy_escape(NULL, a.cursor, 0);
    ASSERT(cursor != NULL);
    const char *poll_req = hfmt("GET /v1/sync/pull?cursor=%s&wait=%d HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Authorization: Bearer %s\r\n\r\n",
                                cursor, LONG_POLL_S, a.token);
    curl_free(cursor);
    const char *get_req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

    /* Every connection first, then every request: half long polls, half GETs. */
    conn_t *c = h_keep(calloc(MANY_CONNS, sizeof *c), NULL);
    double t0 = now_s();
    for (int i = 0; i < MANY_CONNS; i++) {
        c[i].fd = raw_connect(&s);
        c[i].closed_at = -1;
        c[i].what = i % 2 ? "long poll" : "GET /healthz";
        ASSERT_MSG(c[i].fd >= 0, "connection %d: %s", i, strerror(errno));
    }
    for (int i = 0; i < MANY_CONNS; i++) {
        const char *req = i % 2 ? poll_req : get_req;
        ASSERT_MSG(send(c[i].fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req), "send %d: %s", i,
                   strerror(errno));
    }
    /* Read until every answer came and the server let every idle connection go. */
    int open = MANY_CONNS;
    while (open > 0 && now_s() - t0 < MANY_MAX_S) {
        for (int i = 0; i < MANY_CONNS; i++) {
            if (c[i].fd < 0) continue;
            int closed = raw_drain(c[i].fd, c[i].got, sizeof c[i].got, &c[i].ngot);
            if (!c[i].status) {
                int done = answer_done(&c[i]);
                ASSERT_MSG(done >= 0, "%s %d: an answer without Content-Length: %.300s", c[i].what, i,
                           c[i].got);
                if (done) c[i].answered = now_s() - t0;
            }
            if (closed) {
                c[i].closed_at = now_s() - t0;
                close(c[i].fd);
                c[i].fd = -1;
                open--;
            }
        }
        sleep_ms(20);
    }
    int ok = 0, busy = 0, waited = 0;
    double last = 0;
    for (int i = 0; i < MANY_CONNS; i++) {
        if (c[i].fd >= 0) close(c[i].fd);
        ASSERT_MSG(c[i].status != 0, "%s %d: no answer within %.0f s (got %zu bytes: %.200s)", c[i].what, i,
                   MANY_MAX_S, c[i].ngot, c[i].got);
        ASSERT_MSG(c[i].status == 200 || (c[i].status == 503 && c[i].retry_after), "%s %d: answered %.300s",
                   c[i].what, i, c[i].got);
        ASSERT_MSG(c[i].status == 200 || i % 2, "GET /healthz %d: 503 %.300s", i, c[i].got);
        /* The server closes a keep-alive connection left idle after its answer. */
        ASSERT_MSG(c[i].closed_at >= c[i].answered, "%s %d: answered after %.2f s, still open after %.0f s",
                   c[i].what, i, c[i].answered, MANY_MAX_S);
        ok += c[i].status == 200;
        busy += c[i].status == 503;
        waited += i % 2 && c[i].status == 200 && c[i].answered >= LONG_POLL_S - 0.2;
        if (c[i].answered > last) last = c[i].answered;
    }
    fprintf(stderr,
            "    %d connections on %d threads: %d answered 200 (%d long polls waited %d s), %d 503 with "
            "Retry-After; the last answer after %.2f s\n",
            MANY_CONNS, MANY_THREADS, ok, waited, LONG_POLL_S, busy, last);
    ASSERT_MSG(waited >= 1, "no long poll waited: the cursor was not at the head?");
    r = http(&s, "GET", "/healthz", NULL, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
    srv_cleanup(&s);
}

/* ======================================================================== */
/* Out of memory in the writer                                              */
/* ======================================================================== */

/* Arms allocation faults (sync/fault.h: "alloc writer ENOMEM ...") in
 * DATA/.fault; a fresh comment line makes each text new, so counts re-arm. */
static int oom_set(const srv_t *s, const char *rule) {
    static int gen;
    const char *tmp = hfmt("%s/.fault.tmp", s->dir);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "# arm %d\n%s\n", ++gen, rule);
    if (fclose(f) != 0) return -1;
    return rename(tmp, hfmt("%s/.fault", s->dir));
}

/* Allocation faults that fired so far (DATA/.fault.log). */
static int oom_fired(const srv_t *s) {
    FILE *f = fopen(hfmt("%s/.fault.log", s->dir), "r");
    char line[200];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strncmp(line, "alloc writer ENOMEM", 19) == 0;
    if (f) fclose(f);
    return n;
}

/* The audit chain's entries (GET /v1/audit/verify), or -1 when it is not ok. */
static long long oom_audit(phone_t *sup) {
    resp_t r = phone_get(sup, "/v1/audit/verify");
    if (r.status != 200 || jbool(resp_json(&r), "ok") != 1) return -1;
    return jint(r.json, "entries");
}

#define OOM_SWEEP_MAX 160     /* changesets pushed under a single fault, at most */
#define OOM_PROBE_MAX 1048576 /* a push making more cJSON allocations than this fails the test */

/* Case ids of round k: the new case and the one that is updated. */
#define OOM_NEW(k) hfmt("01JDOOMNEW%08d", (k))
#define OOM_OLD(k) hfmt("01JDOOMOLD%08d", (k))

/* Round k's setup, with no fault armed: another device (b) opens case
 * OOM_OLD(k) and changes its description to version 2. */
static int oom_setup(phone_t *b, int k) {
    resp_t r = phone_push(b, changes(ch_create(OOM_OLD(k), "general", NULL),
                                     ch_update(OOM_OLD(k), 1, "{\"description\":\"from b\"}", NULL)));
    return r.status == 200 && jint(resp_json(&r), "results[1].version") == 2 ? 0 : -1;
}

/* Round k's changeset, which touches most of the writer's paths: a new case
 * with a note, and an update of OOM_OLD(k) from version 1, so b's change makes
 * a last-writer-wins conflict object, with a note appended. */
static const char *oom_changeset(int k) {
    return changes(
        ch_create(OOM_NEW(k), "general",
                  hfmt("{\"description\":\"new %d\",\"notes\":[{\"id\":\"c-%d\",\"text\":\"n\"}]}", k, k)),
        ch_update(OOM_OLD(k), 1, hfmt("{\"description\":\"from a %d\"}", k),
                  hfmt("{\"notes\":[{\"id\":\"a-%d\",\"text\":\"x\"}]}", k)));
}

/* Pushes round k's changeset with `rule` armed. 1 when a fault fired (the
 * answer in *r), 0 when none did (the push must then have gone through). */
static int oom_push(srv_t *s, phone_t *a, int k, const char *rule, resp_t *r) {
    int before = oom_fired(s);
    if (oom_set(s, rule) != 0) return -1;
    *r = phone_push(a, oom_changeset(k));
    unlink(hfmt("%s/.fault", s->dir));
    return oom_fired(s) != before;
}

/* After a refused round k: nothing of it anywhere. 0, or -1 (failed). */
static int oom_nothing_stored(phone_t *sup, int k, long long entries, const char *what) {
    resp_t g = phone_get(sup, hfmt("/v1/cases/%s", OOM_NEW(k)));
    if (g.status != 404) {
        test_failf(__FILE__, __LINE__, "%s: the new case is there (%ld)", what, g.status);
        return -1;
    }
    g = phone_get(sup, hfmt("/v1/cases/%s", OOM_OLD(k)));
    if (g.status != 200 || jint(resp_json(&g), "version") != 2 || jlen(g.json, "fields.notes") > 0 ||
        strcmp(jstr(g.json, "fields.description") ? jstr(g.json, "fields.description") : "", "from b") != 0) {
        test_failf(__FILE__, __LINE__, "%s: the updated case changed: %.500s", what, g.body);
        return -1;
    }
    long long now = oom_audit(sup);
    if (now != entries) {
        test_failf(__FILE__, __LINE__, "%s: audit chain %lld entries (-1: not ok), expected %lld", what, now,
                   entries);
        return -1;
    }
    return 0;
}

/* Round k sent again with no fault: applied whole. 0, or -1 (failed). */
static int oom_retry_applies(phone_t *a, phone_t *sup, int k, long long entries, const char *what) {
    resp_t r = phone_push(a, oom_changeset(k));
    if (r.status != 200 || resp_header(&r, "Idempotent-Replay") != NULL ||
        strcmp(jstr(resp_json(&r), "results[0].status") ? jstr(r.json, "results[0].status") : "",
               "applied") != 0 ||
        jint(r.json, "results[1].version") != 3 || !jstr(r.json, "results[1].conflicts[0].kept") ||
        strcmp(jstr(r.json, "results[1].conflicts[0].kept"), "client")) {
        test_failf(__FILE__, __LINE__, "%s: the retry answered %ld %.500s", what, r.status, r.body);
        return -1;
    }
    resp_t g = phone_get(sup, hfmt("/v1/cases/%s", OOM_NEW(k)));
    resp_t o = phone_get(sup, hfmt("/v1/cases/%s", OOM_OLD(k)));
    const char *d = jstr(resp_json(&g), "fields.description"),
               *od = jstr(resp_json(&o), "fields.description");
    if (g.status != 200 || !d || strcmp(d, hfmt("new %d", k)) != 0 ||
        !jarr_find(jget(g.json, "fields.notes"), "id", hfmt("c-%d", k)) || o.status != 200 || !od ||
        strcmp(od, hfmt("from a %d", k)) != 0 ||
        !jarr_find(jget(o.json, "fields.notes"), "id", hfmt("a-%d", k))) {
        test_failf(__FILE__, __LINE__, "%s: after the retry: %.300s / %.300s", what, g.body, o.body);
        return -1;
    }
    long long now = oom_audit(sup);
    if (now != entries + 2) {
        test_failf(__FILE__, __LINE__, "%s: audit chain %lld entries after the retry, expected %lld", what,
                   now, entries + 2);
        return -1;
    }
    return 0;
}

/* The cJSON allocations of one push fail in turn (the Nth allocation of the
 * writer's job, N swept over all of them; every one up to 64, then evenly
 * spaced, OOM_SWEEP_MAX rounds at most): each push answers 503 unavailable,
 * nothing of it is stored (the new case absent, the updated one unchanged,
 * the audit chain sound and no longer), and the same changeset sent again
 * then applies whole. Then every allocation from the Nth on fails, for a few
 * N. The server stops cleanly (no leak under LeakSanitizer) and verifies. */
TEST(out_of_memory_in_a_push_stores_nothing_and_a_retry_applies) {
    srv_t s;
    phone_t a, b, sup;
    resp_t r;
    ASSERT(srv_start(&s) == 0);
    ASSERT(std_phone(&a, &s, "off1", "dev-OOM-A") == 0);
    ASSERT(std_phone(&b, &s, "off2", "dev-OOM-B") == 0);
    ASSERT(std_phone(&sup, &s, "sup1", "dev-OOM-S") == 0);
    int k = 0;

    /* How many allocations the writer makes for one round: the least N for
     * which "after N" fires nothing (bisection; each probe is a whole round). */
    long lo = 0, hi = OOM_PROBE_MAX;
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        ASSERT(oom_setup(&b, k) == 0);
        int fired = oom_push(&s, &a, k, hfmt("alloc writer ENOMEM 1 after %ld", mid), &r);
        ASSERT(fired >= 0);
        if (!fired) {
            ASSERT_STATUS(r, 200);
            hi = mid;
        } else {
            ASSERT_ERROR(r, 503, "unavailable");
            lo = mid + 1;
        }
        k++;
    }
    long total = lo;
    ASSERT_MSG(total >= 20 && total < OOM_PROBE_MAX, "a push makes %ld cJSON allocations in the writer",
               total);

    long stride = total <= OOM_SWEEP_MAX ? 1 : (total - 64) / (OOM_SWEEP_MAX - 64) + 1;
    int swept = 0;
    for (long n = 0; n < total; n += n < 64 ? 1 : stride, k++) {
        const char *what = hfmt("allocation %ld of %ld failing", n, total);
        ASSERT(oom_setup(&b, k) == 0);
        long long entries = oom_audit(&sup);
        ASSERT(entries > 0);
        int fired = oom_push(&s, &a, k, hfmt("alloc writer ENOMEM 1 after %ld", n), &r);
        ASSERT_MSG(fired == 1, "%s: no fault fired (%ld %s)", what, r.status, r.body);
        ASSERT_MSG(r.status == 503, "%s: %s -> %ld %s", what, r.what, r.status, r.body);
        ASSERT_STR(resp_error_code(&r), "unavailable");
        ASSERT_MSG(resp_header(&r, "Retry-After") != NULL, "%s: 503 without Retry-After", what);
        if (oom_nothing_stored(&sup, k, entries, what) != 0) return;
        if (oom_retry_applies(&a, &sup, k, entries, what) != 0) return;
        swept++;
    }

    /* Every allocation from the Nth on fails: the same, for a few N. */
    const long from[] = {0, 7, total / 2, total - 1};
    for (size_t i = 0; i < sizeof from / sizeof from[0]; i++, k++) {
        const char *what = hfmt("every allocation from %ld of %ld failing", from[i], total);
        ASSERT(oom_setup(&b, k) == 0);
        long long entries = oom_audit(&sup);
        ASSERT(oom_push(&s, &a, k, hfmt("alloc writer ENOMEM * after %ld", from[i]), &r) == 1);
        ASSERT_MSG(r.status == 503, "%s: %ld %s", what, r.status, r.body);
        if (oom_nothing_stored(&sup, k, entries, what) != 0) return;
        if (oom_retry_applies(&a, &sup, k, entries, what) != 0) return;
    }
    fprintf(stderr, "    a push makes %ld cJSON allocations in the writer; %d of them failed in turn\n",
            total, swept);
    ASSERT_INT(srv_stop(&s), 0);
    cli_res_t v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "casesync verify exited %d: %s%s", v.rc, v.out, v.err);
    srv_cleanup(&s);
}

/* Bisection: the least N for which `alloc writer ENOMEM 1 after N` fires
 * nothing during one call of round(). round(k, rule) makes a fresh round k
 * and sends its write with rule armed; it answers 1 when a fault fired, 0
 * when none did and the write went through, -1 on a broken round. */
typedef int (*oom_round_fn)(srv_t *s, void *ctx, int k, const char *rule);
static long oom_count(srv_t *s, void *ctx, oom_round_fn round, int *k) {
    long lo = 0, hi = OOM_PROBE_MAX;
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        int fired = round(s, ctx, (*k)++, hfmt("alloc writer ENOMEM 1 after %ld", mid));
        if (fired < 0) return -1;
        if (fired)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Sweeps N over [0, total) in at most `rounds` evenly spaced rounds, then
 * every allocation from 0 and from the middle on. 0, or -1 (failed). */
static int oom_sweep(srv_t *s, void *ctx, oom_round_fn round, int *k, long total, int rounds) {
    long stride = total <= rounds ? 1 : (total + rounds - 1) / rounds;
    for (long n = 0; n < total; n += stride)
        if (round(s, ctx, (*k)++, hfmt("alloc writer ENOMEM 1 after %ld", n)) != 1) return -1;
    if (round(s, ctx, (*k)++, "alloc writer ENOMEM * after 0") != 1) return -1;
    if (round(s, ctx, (*k)++, hfmt("alloc writer ENOMEM * after %ld", total / 2)) != 1) return -1;
    return 0;
}

typedef struct oom_ctx {
    phone_t a, b, sup, admin;
} oom_ctx_t;

/* A manual conflict (fine_amount, two officers) resolved by the supervisor
 * under `rule`. A refused resolve leaves the conflict open and the case and
 * the audit chain as they were; sent again, it resolves. */
static int oom_resolve_round(srv_t *s, void *ctx, int k, const char *rule) {
    oom_ctx_t *c = ctx;
    const char *id = hfmt("01JDOOMRES%08d", k);
    resp_t r = phone_push(&c->a, changes(ch_create(id, "general", "{\"fine_amount\":100}")));
    if (r.status != 200) return -1;
    r = phone_push(&c->a, changes(ch_update(id, 1, "{\"fine_amount\":150}", NULL)));
    if (r.status != 200) return -1;
    r = phone_push(&c->b, changes(ch_update(id, 1, "{\"fine_amount\":180}", NULL)));
    const char *cid = jstr(resp_json(&r), "results[0].conflicts[0].id");
    if (r.status != 200 || !cid) return -1;
    cid = hfmt("%s", cid);
    long long entries = oom_audit(&c->sup);
    const char *path = hfmt("/v1/conflicts/%s/resolve", cid), *body = "{\"value\":175,\"note\":\"checked\"}";
    int before = oom_fired(s);
    if (oom_set(s, rule) != 0) return -1;
    r = http(s, "POST", path, c->sup.token, body, NULL);
    unlink(hfmt("%s/.fault", s->dir));
    if (oom_fired(s) == before)
        return r.status == 200 ? 0 : (test_failf(__FILE__, __LINE__, "%ld %s", r.status, r.body), -1);
    resp_t g = phone_get(&c->sup, hfmt("/v1/cases/%s", id));
    if (r.status != 503 || strcmp(resp_error_code(&r) ? resp_error_code(&r) : "", "unavailable") != 0 ||
        g.status != 200 || jint(resp_json(&g), "version") != 2 ||
        jnum(g.json, "fields.fine_amount", -1) != 150 || !jarr_has(jget(g.json, "conflicts"), NULL, cid) ||
        oom_audit(&c->sup) != entries) {
        test_failf(__FILE__, __LINE__, "resolve under \"%s\": %ld %s; case %.300s", rule, r.status, r.body,
                   g.body);
        return -1;
    }
    r = http(s, "POST", path, c->sup.token, body, NULL);
    g = phone_get(&c->sup, hfmt("/v1/cases/%s", id));
    if (r.status != 200 || jint(resp_json(&g), "version") != 3 ||
        jnum(g.json, "fields.fine_amount", -1) != 175 || oom_audit(&c->sup) != entries + 1) {
        test_failf(__FILE__, __LINE__, "resolve retried after \"%s\": %ld %s; case %.300s", rule, r.status,
                   r.body, g.body);
        return -1;
    }
    return 1;
}

/* An admin creates a user under `rule`: refused, the username is free; sent
 * again, the user exists and logs in. */
static int oom_user_round(srv_t *s, void *ctx, int k, const char *rule) {
    oom_ctx_t *c = ctx;
    const char *name = hfmt("oomuser%d", k);
    const char *body = hfmt("{\"username\":\"%s\",\"password\":\"Passw0rd-oom%d\",\"role\":\"officer\","
                            "\"unit\":\"U1\",\"grids\":[\"" GRID1 "\"]}",
                            name, k);
    int before = oom_fired(s);
    if (oom_set(s, rule) != 0) return -1;
    resp_t r = http(s, "POST", "/v1/admin/users", c->admin.token, body, NULL);
    unlink(hfmt("%s/.fault", s->dir));
    if (oom_fired(s) == before) return r.status / 100 == 2 ? 0 : -1;
    resp_t l = http(s, "GET", "/v1/admin/users", c->admin.token, NULL, NULL);
    if (r.status != 503 || l.status != 200 || jarr_find(jget(resp_json(&l), "items"), "username", name)) {
        test_failf(__FILE__, __LINE__, "user create under \"%s\": %ld %s", rule, r.status, r.body);
        return -1;
    }
    r = http(s, "POST", "/v1/admin/users", c->admin.token, body, NULL);
    if (r.status / 100 != 2 || !login(s, name, hfmt("Passw0rd-oom%d", k), hfmt("dev-oom-%d", k), NULL)) {
        test_failf(__FILE__, __LINE__, "user create retried after \"%s\": %ld %s", rule, r.status, r.body);
        return -1;
    }
    return 1;
}

/* A supervisor revokes an officer's device under `rule`: refused, the
 * device still pulls; sent again, its token answers 401 device_revoked. */
static int oom_revoke_round(srv_t *s, void *ctx, int k, const char *rule) {
    oom_ctx_t *c = ctx;
    phone_t ph;
    const char *dev = hfmt("dev-oom-rv-%d", k);
    if (phone_login(&ph, s, "off1", std_pass("off1"), dev) != 0) return -1;
    const char *path = hfmt("/v1/devices/%s/revoke", dev);
    int before = oom_fired(s);
    if (oom_set(s, rule) != 0) return -1;
    resp_t r = http(s, "POST", path, c->sup.token, "{\"wipe\":false}", NULL);
    unlink(hfmt("%s/.fault", s->dir));
    if (oom_fired(s) == before) return r.status == 200 ? 0 : -1;
    resp_t p = phone_pull(&ph, 1, 0);
    if (r.status != 503 || p.status != 200) {
        test_failf(__FILE__, __LINE__, "revoke under \"%s\": %ld %s; pull %ld", rule, r.status, r.body,
                   p.status);
        return -1;
    }
    r = http(s, "POST", path, c->sup.token, "{\"wipe\":false}", NULL);
    p = phone_pull(&ph, 1, 0);
    if (r.status != 200 || p.status != 401 ||
        strcmp(resp_error_code(&p) ? resp_error_code(&p) : "", "device_revoked")) {
        test_failf(__FILE__, __LINE__, "revoke retried after \"%s\": %ld %s; pull %ld %s", rule, r.status,
                   r.body, p.status, p.body);
        return -1;
    }
    return 1;
}

/* The other writer jobs under the same sweep, smaller: a supervisor's
 * conflict resolution (case, conflict and audit entry written together), an
 * admin's user creation and a device revocation. Every refused one is a 503 that left nothing,
 * every retry applies, and the server stops without a leak. */
TEST(out_of_memory_in_resolve_user_and_device_writes_stores_nothing) {
    srv_t s;
    static oom_ctx_t c;
    int k = 0;
    ASSERT(srv_start(&s) == 0);
    ASSERT(std_phone(&c.a, &s, "off1", "dev-OR-A") == 0);
    ASSERT(std_phone(&c.b, &s, "off2", "dev-OR-B") == 0);
    ASSERT(std_phone(&c.sup, &s, "sup1", "dev-OR-S") == 0);
    ASSERT(std_phone(&c.admin, &s, "admin", "dev-OR-D") == 0);

    long total = oom_count(&s, &c, oom_resolve_round, &k);
    ASSERT_MSG(total > 10, "a resolve makes %ld cJSON allocations in the writer", total);
    ASSERT(oom_sweep(&s, &c, oom_resolve_round, &k, total, 30) == 0);
    long users = oom_count(&s, &c, oom_user_round, &k);
    ASSERT_MSG(users > 5, "a user creation makes %ld cJSON allocations in the writer", users);
    ASSERT(oom_sweep(&s, &c, oom_user_round, &k, users, 20) == 0);
    long revokes = oom_count(&s, &c, oom_revoke_round, &k);
    ASSERT_MSG(revokes > 5, "a revocation makes %ld cJSON allocations in the writer", revokes);
    ASSERT(oom_sweep(&s, &c, oom_revoke_round, &k, revokes, 20) == 0);
    fprintf(stderr,
            "    allocations in the writer: resolve %ld, user creation %ld, revocation %ld; %d rounds\n",
            total, users, revokes, k);
    ASSERT_INT(srv_stop(&s), 0);
    cli_res_t v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "casesync verify exited %d: %s%s", v.rc, v.out, v.err);
    srv_cleanup(&s);
}
