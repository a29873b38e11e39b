/* test_crash.c -- a push storm while the server is killed with SIGKILL at
 * random moments: every acknowledged changeset is there exactly once, retried
 * ones are not doubled, and `casesync verify` passes after every restart.
 *
 * CASESYNC_CRASH_CYCLES sets the number of kills (default 6 in `make test`;
 * `make crashtest` runs 60). The seed is fixed so a failure repeats. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"
#include "tests/test.h"

#define CRASH_PHONES 6
#define CRASH_DEFAULT_CYCLES 6
#define CRASH_MAX_ACKS 4096

typedef struct crasher {
    srv_t *srv;
    int k;
    char device[32];
    char record[32];
    const char *token;
    long long seq;         /* the seq of the pending changeset, or of the next one */
    const char *pending;   /* changes of a changeset sent but not acknowledged (pool) */
    int acked[CRASH_MAX_ACKS]; /* acked[seq] = 1 */
    long long max_seq;
    int replays;           /* retries answered from the stored answer */
    int stop;              /* set by the main thread (atomic) */
    char fail[512];
} crasher_t;

static const char *crash_changes(crasher_t *c, long long seq) {
    return changes(ch_create_in(hfmt("CR%02dS%05lld", c->k, seq), TYPE_VENDING, "general", "U1", GRID1, NULL),
                   ch_update(c->record, 1, NULL, hfmt("{\"notes\":[{\"id\":\"n-%d-%lld\",\"text\":\"storm\"}]}", c->k, seq)));
}

/* Pushes until the server dies or stop is set. A changeset that got no 200
 * stays pending and is sent again, byte for byte, after the restart. */
static void *crash_push(void *arg) {
    crasher_t *c = arg;
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) && c->seq < CRASH_MAX_ACKS - 1) {
        if (!c->pending) c->pending = crash_changes(c, c->seq);
        resp_t r = push(c->srv, c->token, c->device, c->seq, c->pending);
        if (r.status == 0 || r.status == 503) break; /* the server is gone or stopping */
        if (r.status != 200) {
            snprintf(c->fail, sizeof c->fail, "seq %lld -> %ld %.300s", c->seq, r.status, r.body);
            break;
        }
        const char *rp = resp_header(&r, "Idempotent-Replay");
        if (rp && strcmp(rp, "true") == 0) c->replays++;
        c->acked[c->seq] = 1;
        if (c->seq > c->max_seq) c->max_seq = c->seq;
        c->pending = NULL;
        c->seq++;
    }
    return NULL;
}

static int crash_cycles(void) {
    const char *e = getenv("CASESYNC_CRASH_CYCLES");
    int n = e ? atoi(e) : CRASH_DEFAULT_CYCLES;
    return n > 0 && n <= 1000 ? n : CRASH_DEFAULT_CYCLES;
}

TEST(crash_storm_loses_nothing_acknowledged) {
    srv_t s;
    ASSERT(srv_start(&s) == 0);
    const char *pass = std_pass("off1");
    ASSERT(std_user(&s, "off1") != NULL);
    ASSERT(std_user(&s, "sup1") != NULL);
    static crasher_t cs[CRASH_PHONES];
    memset(cs, 0, sizeof cs);
    for (int k = 0; k < CRASH_PHONES; k++) {
        crasher_t *c = &cs[k];
        c->srv = &s;
        c->k = k;
        snprintf(c->device, sizeof c->device, "dev-crash-%d", k);
        snprintf(c->record, sizeof c->record, "01JDSTORM%09d", k);
        long long next = 0;
        c->token = login(&s, "off1", pass, c->device, &next);
        ASSERT(c->token != NULL);
        resp_t r = push(&s, c->token, c->device, next, changes(ch_create(c->record, "general", NULL)));
        ASSERT_STATUS(r, 200);
        c->seq = next + 1;
    }

    unsigned seed = 20261123;
    int cycles = crash_cycles(), verified = 0;
    for (int cycle = 0; cycle < cycles; cycle++) {
        pthread_t th[CRASH_PHONES];
        for (int k = 0; k < CRASH_PHONES; k++) {
            cs[k].stop = 0;
            ASSERT(pthread_create(&th[k], NULL, crash_push, &cs[k]) == 0);
        }
        sleep_ms(30 + (int)(rand_r(&seed) % 250));
        srv_kill9(&s);
        for (int k = 0; k < CRASH_PHONES; k++) {
            __atomic_store_n(&cs[k].stop, 1, __ATOMIC_RELEASE);
            pthread_join(th[k], NULL);
            ASSERT_MSG(cs[k].fail[0] == 0, "phone %d, cycle %d: %s", k, cycle, cs[k].fail);
        }
        ASSERT_MSG(srv_restart(&s) == 0, "restart %d failed", cycle);
        cli_res_t v = cli(s.dir, NULL, "verify");
        ASSERT_MSG(v.rc == 0, "verify after kill %d exited %d: %s %s", cycle, v.rc, v.out, v.err);
        verified++;
    }

    /* Settle: every pending changeset is sent again until acknowledged. */
    for (int k = 0; k < CRASH_PHONES; k++) {
        crasher_t *c = &cs[k];
        for (int tries = 0; c->pending && tries < 5; tries++) {
            resp_t r = push(&s, c->token, c->device, c->seq, c->pending);
            ASSERT_MSG(r.status == 200, "settling phone %d seq %lld -> %ld %s", k, c->seq, r.status, r.body);
            const char *rp = resp_header(&r, "Idempotent-Replay");
            if (rp && strcmp(rp, "true") == 0) c->replays++;
            c->acked[c->seq] = 1;
            c->max_seq = c->seq;
            c->pending = NULL;
        }
    }

    phone_t sup;
    ASSERT(phone_login(&sup, &s, "sup1", std_pass("sup1"), "dev-crash-sup") == 0);
    int total = 0, replays = 0;
    for (int k = 0; k < CRASH_PHONES; k++) {
        crasher_t *c = &cs[k];
        resp_t r = phone_get(&sup, hfmt("/v1/cases/%s", c->record));
        ASSERT_STATUS(r, 200);
        cJSON *notes = jget(resp_json(&r), "fields.notes");
        int acked = 0;
        for (long long q = 0; q <= c->max_seq; q++) {
            if (!c->acked[q]) continue;
            acked++;
            /* Exactly once: the note of each acknowledged changeset... */
            int seen = 0;
            cJSON *n;
            cJSON_ArrayForEach(n, notes) {
                const char *id = jstr(n, "id");
                if (id && strcmp(id, hfmt("n-%d-%lld", k, q)) == 0) seen++;
            }
            ASSERT_MSG(seen == 1, "phone %d changeset %lld: its note is there %d times", k, q, seen);
            /* ...and the case it created. */
            resp_t rc = phone_get(&sup, hfmt("/v1/cases/CR%02dS%05lld", k, q));
            ASSERT_MSG(rc.status == 200, "phone %d changeset %lld: its case is missing (%ld)", k, q, rc.status);
        }
        /* Nothing beyond what was acknowledged was applied twice or invented. */
        ASSERT_INT(cJSON_GetArraySize(notes), acked);
        total += acked;
        replays += c->replays;
    }
    fprintf(stderr, "    crash storm: %d kills survived, %d changesets acknowledged, %d retries answered "
                    "by replay, verify passed %d times\n", cycles, total, replays, verified);
    ASSERT(total > 0);
    ASSERT_INT(srv_stop(&s), 0);
    cli_res_t v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "final verify exited %d: %s", v.rc, v.err);
    srv_cleanup(&s);
}
