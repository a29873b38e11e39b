/* replica.c -- the store under a replicated log on NATS JetStream (see
 * replica.h for the contract and its caveats). */
#include "sync/replica.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <nats/nats.h>

#include "sync/retention.h"
#include "sync/sync.h"

#define REPLICA_BUCKET "casesync_lease"
#define REPLICA_KEY "leader"
#define REPLICA_CONNECT_WAIT_MS 5000
#define REPLICA_READY_WAIT_MS 15000 /* for the stream and the bucket at start */
#define REPLICA_APPLY_MAX 256       /* entries applied per catch-up round */

struct replica {
    store_t *st;
    const store_dbs_t *dbs;
    int (*on_apply)(MDB_txn *txn, void *ctx);
    void *apply_ctx;
    char node[64], advertise[256];
    int lease_ms, replicas, publish_timeout_ms;
    int direct; /* the stream allows direct gets (followers read entries with them) */

    natsOptions *opts;
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;
    natsSubscription *wake;

    pthread_t thread;
    int started;
    int stop; /* atomic */

    pthread_mutex_t mu; /* guards what follows */
    int holder;         /* holds the lease */
    int writable;       /* holder and caught up: the writer may publish */
    int need_catchup;   /* a publish failed: the stream may be ahead */
    uint64_t lease_rev;
    int64_t renew_at_ms, valid_until_ms; /* monotonic */
    char leader_url[256];
    uint64_t stream_last, applied;
    uint64_t stream_first; /* the stream's first sequence as last seen (trims move it) */
    int cut_off;           /* the store needs entries the stream no longer holds (retention.h) */
    uint64_t publish_failures, lease_changes;
    char last_note[160]; /* replica thread only */
    char last_err[96];   /* replica thread only: why the last read of the stream failed */
    int ctl_timeout_ms;  /* stream info, reads of entries, the lease */
};

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

lease_action_t replica_lease_decide(int holder, int64_t now_ms, int64_t renew_at_ms, int64_t valid_until_ms,
                                    int lease_free, uint64_t applied, uint64_t stream_last) {
    if (holder) {
        if (now_ms >= valid_until_ms) return LEASE_STEPDOWN;
        return now_ms >= renew_at_ms ? LEASE_RENEW : LEASE_KEEP;
    }
    if (!lease_free) return LEASE_KEEP;
    return applied >= stream_last ? LEASE_TAKE : LEASE_WAIT;
}

/* ---- the writer's side: publishing a batch ---------------------------------- */

static int replica_append(void *ctx, const void *redo, size_t len, uint64_t applied, uint64_t *seq) {
    replica_t *r = ctx;
    pthread_mutex_lock(&r->mu);
    int ok = r->writable && mono_ms() < r->valid_until_ms;
    if (r->writable && !ok) {
        /* The term ran out before a renewal came back: stop at once. */
        r->writable = 0;
        fprintf(stderr, "replica: lease term over without renewal; no more writes\n");
    }
    pthread_mutex_unlock(&r->mu);
    if (!ok || len > INT32_MAX) return SYNC_EUNAVAIL;

    natsMsg *msg = NULL;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    char expect[32];
    snprintf(expect, sizeof expect, "%" PRIu64, applied);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = r->publish_timeout_ms;
    natsStatus s = natsMsg_Create(&msg, REPLICA_SUBJECT, NULL, redo, (int)len);
    /* Set by hand: the client leaves ExpectLastSeq 0 out, and 0 is the fence
     * of an empty stream too. */
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Expected-Last-Sequence", expect);
    if (s == NATS_OK) s = js_PublishMsg(&ack, r->js, msg, &po, &jerr);
    natsMsg_Destroy(msg);
    int rc = 0;
    if (s != NATS_OK || !ack || ack->Sequence != applied + 1) {
        fprintf(stderr, "replica: publish after %" PRIu64 " failed: %s (%d)%s\n", applied,
                natsStatus_GetText(s), (int)jerr,
                jerr == JSStreamWrongLastSequenceErr ? ": the stream is ahead of this store" : "");
        rc = SYNC_EUNAVAIL;
        pthread_mutex_lock(&r->mu);
        r->writable = 0; /* until the stream's entries beyond this store are applied */
        r->need_catchup = 1;
        r->publish_failures++;
        pthread_mutex_unlock(&r->mu);
    } else {
        *seq = ack->Sequence;
        /* Wakes the followers: a few bytes, not the entry (they read it
         * from the stream; a core subscription to the stream's subject
         * would carry every entry to each of them once more). */
        natsConnection_Publish(r->nc, REPLICA_WAKE, NULL, 0);
        pthread_mutex_lock(&r->mu);
        if (ack->Sequence > r->stream_last) r->stream_last = ack->Sequence;
        pthread_mutex_unlock(&r->mu);
    }
    jsPubAck_Destroy(ack);
    return rc;
}

/* ---- applying entries of the stream ----------------------------------------------- */

/* Entries applied in one transaction (one commit, one fsync) by a follower
 * catching up: consecutive entries of the stream, at most this many and
 * about APPLY_BATCH_BYTES of redo. The transaction holds their last
 * sequence, so a node killed at any moment resumes after the last batch it
 * committed, as with one entry per transaction. */
#define APPLY_BATCH 64
#define APPLY_BATCH_BYTES (16u << 20)

typedef struct apply_job {
    replica_t *r;
    int n;
    natsMsg *msg[APPLY_BATCH];
    uint64_t first; /* the sequence of msg[0]; msg[i] is first + i */
} apply_job_t;

static int apply_run(MDB_txn *txn, void *ctx) {
    apply_job_t *a = ctx;
    const store_dbs_t *dbs = a->r->dbs;
    uint64_t have = store_meta_u64(txn, dbs, STORE_LOG_SEQ);
    int rc = 0, any = 0;
    for (int i = 0; i < a->n && rc == 0; i++) {
        uint64_t seq = a->first + (uint64_t)i;
        if (have >= seq) continue; /* applied already (the leader's own commit won the race) */
        if (have + 1 != seq) return SYNC_EBADREQ;
        rc = store_redo_apply(txn, dbs, natsMsg_GetData(a->msg[i]), (size_t)natsMsg_GetDataLength(a->msg[i]));
        if (rc == 0) have = seq, any = 1;
    }
    if (rc == 0 && any) rc = store_meta_put_u64(txn, dbs, STORE_LOG_SEQ, have);
    if (rc == 0 && any && a->r->on_apply) rc = a->r->on_apply(txn, a->r->apply_ctx);
    return rc;
}

static uint64_t replica_applied(replica_t *r) {
    MDB_txn *txn = NULL;
    uint64_t v = 0;
    if (store_read_begin(r->st, &txn) == 0) v = store_meta_u64(txn, r->dbs, STORE_LOG_SEQ);
    store_read_end(txn);
    return v;
}

/* The stream's last sequence: 0 and *last, or -1 (no answer). */
static int stream_last(replica_t *r, uint64_t *last) {
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = r->ctl_timeout_ms;
    natsStatus s = js_GetStreamInfo(&si, r->js, REPLICA_STREAM, &o, &jerr);
    if (s != NATS_OK || !si) {
        snprintf(r->last_err, sizeof r->last_err, "stream info: %s (%d)", natsStatus_GetText(s), (int)jerr);
        return -1;
    }
    *last = si->State.LastSeq;
    uint64_t first = si->State.FirstSeq;
    jsStreamInfo_Destroy(si);
    pthread_mutex_lock(&r->mu);
    r->stream_last = *last;
    r->stream_first = first;
    pthread_mutex_unlock(&r->mu);
    return 0;
}

/* What a node cut off by a trim says (a buffer of the calling thread's). */
static const char *replica_cut_off_text(uint64_t have, uint64_t first) {
    static __thread char t[400];
    /* Under 256 bytes: it becomes casesyncd's error at start. */
    snprintf(
        t, sizeof t,
        "this store has applied log entry %" PRIu64 ", the stream " REPLICA_STREAM " starts at %" PRIu64
        " (trimmed: casesync log-trim); it cannot catch up. Restore this node from a newer backup (taken at "
        "entry %" PRIu64 " or later)",
        have, first, first > 0 ? first - 1 : 0);
    return t;
}

/* Applies entries after the store's log_seq, up to the stream's end or
 * REPLICA_APPLY_MAX of them. 1: caught up (as of the stream's last
 * sequence read here), 0: more to do, -1: the stream or the store failed. */
static int catch_up(replica_t *r) {
    uint64_t last = 0;
    if (stream_last(r, &last) != 0) return -1;
    uint64_t have = replica_applied(r);
    pthread_mutex_lock(&r->mu);
    r->applied = have; /* the leader's own commits move it too */
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&r->mu);
    uint64_t first = r->stream_first;
    pthread_mutex_unlock(&r->mu);
    switch (retention_join_decide(have, first, last)) {
    case JOIN_AHEAD:
        /* The store is ahead of the stream: another stream, or one that lost
         * entries. Never write over it. */
        fprintf(stderr, "replica: store has applied %" PRIu64 " but the stream ends at %" PRIu64 "\n", have,
                last);
        return -1;
    case JOIN_TRIMMED:
        /* The entries it needs were trimmed (casesync log-trim): it can
         * never catch up from the stream. */
        pthread_mutex_lock(&r->mu);
        int first_time = !r->cut_off;
        r->cut_off = 1;
        pthread_mutex_unlock(&r->mu);
        snprintf(r->last_err, sizeof r->last_err, "entries %" PRIu64 "..%" PRIu64 " were trimmed", have + 1,
                 first - 1);
        if (first_time) fprintf(stderr, "replica: %s\n", replica_cut_off_text(have, first));
        return -1;
    case JOIN_OK: break;
    }
    pthread_mutex_lock(&r->mu);
    r->cut_off = 0;
    pthread_mutex_unlock(&r->mu);
    for (int n = 0; have < last && n < REPLICA_APPLY_MAX && !__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE);) {
        apply_job_t a = {.r = r, .first = have + 1};
        size_t bytes = 0;
        int failed = 0;
        while (a.n < APPLY_BATCH && have + (uint64_t)a.n < last && n < REPLICA_APPLY_MAX &&
               bytes < APPLY_BATCH_BYTES) {
            natsMsg *m = NULL;
            jsErrCode jerr = 0;
            jsOptions o;
            jsOptions_Init(&o);
            o.Wait = r->ctl_timeout_ms;
            natsStatus s = NATS_ERR;
            if (r->direct) {
                jsDirectGetMsgOptions dg;
                jsDirectGetMsgOptions_Init(&dg);
                dg.Sequence = have + 1 + (uint64_t)a.n;
                s = js_DirectGetMsg(&m, r->js, REPLICA_STREAM, &o, &dg);
            }
            if (s != NATS_OK ||
                !m) /* no direct gets, or a replica not there yet: the stream leader's answer */
                s = js_GetMsg(&m, r->js, REPLICA_STREAM, have + 1 + (uint64_t)a.n, &o, &jerr);
            if (s != NATS_OK || !m) {
                snprintf(r->last_err, sizeof r->last_err, "entry %" PRIu64 ": %s (%d)",
                         have + 1 + (uint64_t)a.n, natsStatus_GetText(s), (int)jerr);
                failed = 1;
                break;
            }
            bytes += (size_t)natsMsg_GetDataLength(m);
            a.msg[a.n++] = m;
            n++;
        }
        int rc = a.n ? store_write_applied(r->st, apply_run, &a) : 0;
        for (int i = 0; i < a.n; i++)
            natsMsg_Destroy(a.msg[i]);
        if (rc != 0) {
            fprintf(stderr, "replica: applying entries %" PRIu64 "..%" PRIu64 ": %s\n", a.first,
                    a.first + (uint64_t)a.n - 1, sync_strerror(rc));
            return -1;
        }
        if (a.n) {
            have = a.first + (uint64_t)a.n - 1;
            pthread_mutex_lock(&r->mu);
            r->applied = have;
            pthread_mutex_unlock(&r->mu);
        }
        if (failed) return -1;
    }
    return have >= last ? 1 : 0;
}

/* ---- the lease --------------------------------------------------------------------- */

static char *lease_value(replica_t *r) {
    char url[256];
    pthread_mutex_lock(&r->mu);
    snprintf(url, sizeof url, "%s", r->advertise);
    pthread_mutex_unlock(&r->mu);
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    char *t = NULL;
    if (cJSON_AddStringToObject(o, "node", r->node) && cJSON_AddStringToObject(o, "url", url))
        t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}

void replica_advertise(replica_t *r, const char *url) {
    pthread_mutex_lock(&r->mu);
    snprintf(r->advertise, sizeof r->advertise, "%s", url ? url : "");
    if (r->holder) snprintf(r->leader_url, sizeof r->leader_url, "%s", r->advertise);
    r->renew_at_ms = 0; /* into the lease at the next tick */
    pthread_mutex_unlock(&r->mu);
}

static void step_down(replica_t *r, const char *why) {
    pthread_mutex_lock(&r->mu);
    if (r->holder) {
        r->lease_changes++;
        fprintf(stderr, "replica: %s gives up the lease: %s\n", r->node, why);
    }
    r->holder = 0;
    r->writable = 0;
    r->leader_url[0] = 0;
    pthread_mutex_unlock(&r->mu);
}

/* Reads the lease: *free_rev set to its revision when it may be taken with
 * Update (released), 0 when Create applies; *free 1 when free. -1: no answer. */
static int lease_read(replica_t *r, int *is_free, uint64_t *free_rev) {
    kvEntry *e = NULL;
    *is_free = 0;
    *free_rev = 0;
    natsStatus s = kvStore_Get(&e, r->kv, REPLICA_KEY);
    if (s == NATS_NOT_FOUND) {
        *is_free = 1;
        pthread_mutex_lock(&r->mu);
        if (!r->holder) r->leader_url[0] = 0;
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    if (s != NATS_OK || !e) return -1;
    int len = kvEntry_ValueLen(e);
    if (len <= 0) {
        *is_free = 1;
        *free_rev = kvEntry_Revision(e);
        pthread_mutex_lock(&r->mu);
        if (!r->holder) r->leader_url[0] = 0;
        pthread_mutex_unlock(&r->mu);
    } else {
        cJSON *v = cJSON_ParseWithLength(kvEntry_Value(e), (size_t)len);
        const cJSON *url = v ? cJSON_GetObjectItemCaseSensitive(v, "url") : NULL;
        const cJSON *node = v ? cJSON_GetObjectItemCaseSensitive(v, "node") : NULL;
        pthread_mutex_lock(&r->mu);
        if (cJSON_IsString(node) && strcmp(node->valuestring, r->node) == 0) {
            /* This node's own lease, which it gave up (or held before a
             * restart): nobody else has it, so it may be taken again at its
             * revision like a released one. */
            *is_free = 1;
            *free_rev = kvEntry_Revision(e);
            if (!r->holder) r->leader_url[0] = 0;
        } else if (!r->holder) {
            snprintf(r->leader_url, sizeof r->leader_url, "%s", cJSON_IsString(url) ? url->valuestring : "");
        }
        pthread_mutex_unlock(&r->mu);
        cJSON_Delete(v);
    }
    kvEntry_Destroy(e);
    return 0;
}

/* Says what the replica could not do, once per change of the text. */
static void note(replica_t *r, const char *what) {
    if (strcmp(r->last_note, what) == 0) return;
    snprintf(r->last_note, sizeof r->last_note, "%s", what);
    if (*what) fprintf(stderr, "replica: %s: %s\n", r->node, what);
}

/* Renews the lease at the revision held; steps down when that fails. */
static void lease_renew(replica_t *r, int64_t now) {
    char *val = lease_value(r);
    uint64_t rev = 0;
    pthread_mutex_lock(&r->mu);
    uint64_t held = r->lease_rev;
    pthread_mutex_unlock(&r->mu);
    natsStatus s =
        val ? kvStore_Update(&rev, r->kv, REPLICA_KEY, val, (int)strlen(val), held) : NATS_NO_MEMORY;
    free(val);
    if (s != NATS_OK) {
        step_down(r, natsStatus_GetText(s));
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->lease_rev = rev;
    r->renew_at_ms = now + r->lease_ms / 4;
    r->valid_until_ms = now + r->lease_ms * 2 / 3;
    pthread_mutex_unlock(&r->mu);
}

/* One tick of the replica: the holder's lease first (a slow catch-up must
 * not starve its renewal), then applying the stream, then a free lease. */
static void replica_tick(replica_t *r) {
    pthread_mutex_lock(&r->mu);
    int holder = r->holder;
    int64_t renew_at = r->renew_at_ms, valid_until = r->valid_until_ms;
    pthread_mutex_unlock(&r->mu);
    int64_t now = mono_ms();
    if (holder) {
        switch (replica_lease_decide(1, now, renew_at, valid_until, 0, 0, 0)) {
        case LEASE_STEPDOWN: step_down(r, "its term ran out before a renewal"); break;
        case LEASE_RENEW: lease_renew(r, now); break;
        default: break;
        }
    }

    /* A writing leader is the stream's only writer: nothing to apply, unless
     * a publish failed. Everyone else applies what the stream holds. */
    pthread_mutex_lock(&r->mu);
    holder = r->holder;
    int writable = r->writable, need = r->need_catchup;
    pthread_mutex_unlock(&r->mu);
    int caught = 1;
    if (!writable || need) {
        caught = catch_up(r);
        if (caught < 0) {
            char what[160];
            snprintf(what, sizeof what, "cannot read the stream now (%s)", r->last_err);
            note(r, what);
        }
        pthread_mutex_lock(&r->mu);
        if (caught == 1) r->need_catchup = 0;
        /* A holder that has applied the whole stream, within its term, writes. */
        if (caught == 1 && r->holder && !r->writable && mono_ms() < r->valid_until_ms) {
            fprintf(stderr, "replica: %s writes (stream at %" PRIu64 ")\n", r->node, r->stream_last);
            r->writable = 1;
        }
        pthread_mutex_unlock(&r->mu);
    }
    if (holder) return;

    int lease_free = 0;
    uint64_t free_rev = 0;
    if (lease_read(r, &lease_free, &free_rev) != 0) {
        note(r, "cannot read the lease now");
        return;
    }
    pthread_mutex_lock(&r->mu);
    uint64_t applied_v = r->applied, last_v = r->stream_last;
    pthread_mutex_unlock(&r->mu);
    if (caught != 1) applied_v = 0, last_v = 1; /* not known to be caught up */
    lease_action_t act = replica_lease_decide(0, mono_ms(), 0, 0, lease_free, applied_v, last_v);
    note(r, act == LEASE_WAIT ? "the lease is free but this store is behind the stream" : "");
    if (act != LEASE_TAKE) return;
    char *val = lease_value(r);
    uint64_t rev = 0;
    natsStatus s = !val       ? NATS_NO_MEMORY
                   : free_rev ? kvStore_Update(&rev, r->kv, REPLICA_KEY, val, (int)strlen(val), free_rev)
                              : kvStore_Create(&rev, r->kv, REPLICA_KEY, val, (int)strlen(val));
    free(val);
    if (s != NATS_OK) {
        note(r, "another node took the lease first");
        return;
    }
    now = mono_ms();
    pthread_mutex_lock(&r->mu);
    r->holder = 1;
    r->writable = 0;
    r->need_catchup = 1; /* check the stream again before the first write */
    r->lease_rev = rev;
    r->renew_at_ms = now + r->lease_ms / 4;
    r->valid_until_ms = now + r->lease_ms * 2 / 3;
    snprintf(r->leader_url, sizeof r->leader_url, "%s", r->advertise);
    r->lease_changes++;
    pthread_mutex_unlock(&r->mu);
    fprintf(stderr, "replica: %s takes the lease (revision %" PRIu64 ")\n", r->node, rev);
    if (catch_up(r) == 1) {
        pthread_mutex_lock(&r->mu);
        r->need_catchup = 0;
        if (r->holder && mono_ms() < r->valid_until_ms) {
            fprintf(stderr, "replica: %s writes (stream at %" PRIu64 ")\n", r->node, r->stream_last);
            r->writable = 1;
        }
        pthread_mutex_unlock(&r->mu);
    }
}

static void *replica_main(void *arg) {
    replica_t *r = arg;
    int tick = r->lease_ms / 8 > 200 ? 200 : r->lease_ms / 8 > 10 ? r->lease_ms / 8 : 10;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        replica_tick(r);
        /* Sleep until the next tick or a new entry on the stream. */
        natsMsg *m = NULL;
        if (r->wake && natsSubscription_NextMsg(&m, r->wake, tick) == NATS_OK) {
            natsMsg_Destroy(m);
            /* drain what else came */
            while (natsSubscription_NextMsg(&m, r->wake, 0) == NATS_OK)
                natsMsg_Destroy(m);
        } else if (!r->wake) {
            nanosleep(&(struct timespec){0, (long)tick * 1000000L}, NULL);
        }
    }
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------------ */

static int ensure_stream_and_bucket(replica_t *r, char *errbuf, size_t errlen) {
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    const char *subjects[] = {REPLICA_SUBJECT};
    jsStreamConfig_Init(&sc);
    sc.Name = REPLICA_STREAM;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = r->replicas;
    /* Followers read entries with direct gets: the raw entry from any
     * replica, instead of the stream leader's JSON answer with the entry in
     * base64 (which cost each follower as much CPU per change as the
     * leader's writer, and the nats-servers as much again). */
    sc.AllowDirect = true;
    natsStatus s = js_AddStream(&si, r->js, &sc, NULL, &jerr);
    if (s != NATS_OK && jerr != JSStreamNameExistErr) {
        jsStreamInfo_Destroy(si);
        snprintf(errbuf, errlen, "cannot make the stream %s (R%d): %s (%d)", REPLICA_STREAM, r->replicas,
                 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s), (int)jerr);
        return -1;
    }
    if (s != NATS_OK) { /* made by an earlier release or node: allow direct gets on it too */
        jsStreamInfo_Destroy(si);
        si = NULL;
        if (js_GetStreamInfo(&si, r->js, REPLICA_STREAM, NULL, &jerr) == NATS_OK && si && si->Config &&
            !si->Config->AllowDirect) {
            jsStreamConfig up = *si->Config;
            jsStreamInfo *ui = NULL;
            up.AllowDirect = true;
            if (js_UpdateStream(&ui, r->js, &up, NULL, &jerr) == NATS_OK && ui && ui->Config)
                r->direct = ui->Config->AllowDirect;
            jsStreamInfo_Destroy(ui);
        } else if (si && si->Config) {
            r->direct = si->Config->AllowDirect;
        }
    } else {
        r->direct = si && si->Config && si->Config->AllowDirect;
    }
    jsStreamInfo_Destroy(si);
    si = NULL;
    s = js_KeyValue(&r->kv, r->js, REPLICA_BUCKET);
    if (s != NATS_OK) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = REPLICA_BUCKET;
        kc.History = 1;
        kc.TTL = (int64_t)r->lease_ms * 1000000; /* nanoseconds */
        kc.Replicas = r->replicas;
        kc.StorageType = js_FileStorage;
        s = js_CreateKeyValue(&r->kv, r->js, &kc);
        if (s != NATS_OK) s = js_KeyValue(&r->kv, r->js, REPLICA_BUCKET); /* made meanwhile */
    }
    if (s != NATS_OK) {
        snprintf(errbuf, errlen, "cannot make the lease bucket %s: %s", REPLICA_BUCKET,
                 natsStatus_GetText(s));
        return -1;
    }
    return 0;
}

static int put_stream_mark(MDB_txn *txn, void *ctx) {
    replica_t *r = ((void **)ctx)[0];
    return store_meta_put_u64(txn, r->dbs, STORE_LOG_STREAM, *(uint64_t *)((void **)ctx)[1]);
}

/* The stream this store follows must be the one it followed (retention.h):
 * 0, or -1 with errbuf filled. */
static int check_stream_identity(replica_t *r, char *errbuf, size_t errlen) {
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = r->ctl_timeout_ms;
    natsStatus s = js_GetStreamInfo(&si, r->js, REPLICA_STREAM, &o, &jerr);
    if (s != NATS_OK || !si) {
        snprintf(errbuf, errlen, "cannot read the stream %s: %s (%d)", REPLICA_STREAM, natsStatus_GetText(s),
                 (int)jerr);
        return -1;
    }
    uint64_t created = si->Created > 0 ? (uint64_t)si->Created : 0, last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    MDB_txn *txn = NULL;
    uint64_t mine = 0;
    if (store_read_begin(r->st, &txn) == 0) mine = store_meta_u64(txn, r->dbs, STORE_LOG_STREAM);
    store_read_end(txn);
    switch (retention_stream_decide(mine, created, last)) {
    case STREAM_SAME: return 0;
    case STREAM_ADOPT: {
        void *ctx[2] = {r, &created};
        if (store_write_applied(r->st, put_stream_mark, ctx) == 0) return 0;
        snprintf(errbuf, errlen, "cannot record the stream followed in the store");
        return -1;
    }
    case STREAM_DETACHED:
        snprintf(
            errbuf, errlen,
            "this store was detached from its cluster (casesync detach): it may seed a new cluster (an empty "
            "stream " REPLICA_STREAM ") but not join one whose stream has entries (this one ends at %" PRIu64
            "). Restore this node from a backup of a node of the cluster",
            last);
        return -1;
    case STREAM_OTHER: break;
    }
    char was[32], now[32];
    time_t tw = (time_t)(mine / 1000000000u), tn = (time_t)(created / 1000000000u);
    struct tm a, b;
    strftime(was, sizeof was, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&tw, &a));
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&tn, &b));
    snprintf(
        errbuf, errlen,
        "this store followed another stream " REPLICA_STREAM " (made %s), not the cluster's (made %s): it "
        "cannot join. Restore this node from a backup of a node of the cluster, or `casesync detach` it to "
        "seed a new cluster",
        was, now);
    return -1;
}

int replica_start(store_t *st, const replica_config_t *cfg, int (*on_apply)(MDB_txn *txn, void *ctx),
                  void *apply_ctx, replica_t **out, char *errbuf, size_t errlen) {
    *out = NULL;
    if (!cfg->url || !*cfg->url || !cfg->node || !*cfg->node || strlen(cfg->node) >= 64 ||
        (cfg->advertise && strlen(cfg->advertise) >= 256)) {
        snprintf(errbuf, errlen, "cluster mode needs a NATS URL and a node name (under 64 bytes)");
        return SYNC_EBADREQ;
    }
    replica_t *r = calloc(1, sizeof *r);
    if (!r) return SYNC_ENOMEM;
    r->st = st;
    r->dbs = store_dbs(st);
    r->on_apply = on_apply;
    r->apply_ctx = apply_ctx;
    snprintf(r->node, sizeof r->node, "%s", cfg->node);
    snprintf(r->advertise, sizeof r->advertise, "%s", cfg->advertise ? cfg->advertise : "");
    r->lease_ms = cfg->lease_ms > 0 ? cfg->lease_ms : 6000;
    if (r->lease_ms < 300) r->lease_ms = 300;
    r->replicas = cfg->replicas > 0 ? cfg->replicas : 3;
    r->publish_timeout_ms = cfg->publish_timeout_ms > 0 ? cfg->publish_timeout_ms : 2000;
    /* Requests of the replica's thread answer within a quarter term, so a
     * holder's renewal is never starved by them. */
    r->ctl_timeout_ms = r->lease_ms / 4 < r->publish_timeout_ms ? r->lease_ms / 4 : r->publish_timeout_ms;
    pthread_mutex_init(&r->mu, NULL);

    /* The servers: a comma-separated list (natsOptions_SetURL takes one). */
    char urls[1024], *servers[16], *save = NULL;
    int nservers = 0;
    snprintf(urls, sizeof urls, "%s", cfg->url);
    for (char *t = strtok_r(urls, ", ", &save); t && nservers < 16; t = strtok_r(NULL, ", ", &save))
        servers[nservers++] = t;
    natsStatus s = natsOptions_Create(&r->opts);
    if (s == NATS_OK) s = natsOptions_SetServers(r->opts, (const char **)servers, nservers);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(r->opts, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(r->opts, 100);
    /* No publish is held back while reconnecting: one that answered 503 must
     * not land later. (0 would mean the 8 MB default.) */
    if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(r->opts, 1);
    if (s == NATS_OK) s = natsOptions_SetTimeout(r->opts, REPLICA_CONNECT_WAIT_MS);
    if (s == NATS_OK) s = natsOptions_SetName(r->opts, r->node);
    if (s == NATS_OK) s = natsConnection_Connect(&r->nc, r->opts);
    jsOptions jo;
    if (s == NATS_OK) s = jsOptions_Init(&jo);
    jo.Wait = r->ctl_timeout_ms; /* the KV calls' wait */
    if (s == NATS_OK) s = natsConnection_JetStream(&r->js, r->nc, &jo);
    if (s != NATS_OK) {
        snprintf(errbuf, errlen, "cannot reach NATS at %s: %s", cfg->url, natsStatus_GetText(s));
        goto fail;
    }
    /* A JetStream cluster that is starting too elects its leaders first. */
    int64_t ready_by = mono_ms() + REPLICA_READY_WAIT_MS;
    while (ensure_stream_and_bucket(r, errbuf, errlen) != 0) {
        if (mono_ms() >= ready_by) goto fail;
        nanosleep(&(struct timespec){0, 250 * 1000000L}, NULL);
    }
    if (check_stream_identity(r, errbuf, errlen) != 0) goto fail;
    if (natsConnection_SubscribeSync(&r->wake, r->nc, REPLICA_WAKE) != NATS_OK) r->wake = NULL;

    /* Catch up (bounded) and try the lease once, before anything writes. */
    r->applied = replica_applied(r);
    int64_t until = mono_ms() + REPLICA_CONNECT_WAIT_MS;
    int c;
    while ((c = catch_up(r)) == 0 && mono_ms() < until) {
    }
    if (c < 0) {
        if (r->cut_off)
            snprintf(errbuf, errlen, "%s", replica_cut_off_text(r->applied, r->stream_first));
        else
            snprintf(errbuf, errlen, "cannot apply the stream %s to this store (see above)", REPLICA_STREAM);
        goto fail;
    }
    /* An entry must fit NATS's max_payload (1 MB unless the servers raise it),
     * less room for its headers. */
    int64_t maxp = natsConnection_GetMaxPayload(r->nc);
    store_set_log(st, replica_append, r, maxp > 8192 ? (size_t)maxp - 4096 : 1024 * 1024 - 4096);
    replica_tick(r);
    if (pthread_create(&r->thread, NULL, replica_main, r) != 0) {
        snprintf(errbuf, errlen, "cannot start the replica thread");
        store_set_log(st, NULL, NULL, 0);
        goto fail;
    }
    r->started = 1;
    pthread_setname_np(r->thread, "casesync-replica");
    int leader = replica_is_leader(r, NULL, 0);
    fprintf(stderr, "replica: %s joins %s as %s, applied %" PRIu64 "\n", r->node, cfg->url,
            leader ? "leader" : "follower", r->applied);
    *out = r;
    return 0;

fail:
    if (r->wake) natsSubscription_Destroy(r->wake);
    if (r->kv) kvStore_Destroy(r->kv);
    if (r->js) jsCtx_Destroy(r->js);
    if (r->nc) natsConnection_Destroy(r->nc);
    if (r->opts) natsOptions_Destroy(r->opts);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return SYNC_EIO;
}

void replica_stop(replica_t *r) {
    if (!r) return;
    __atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
    if (r->started) pthread_join(r->thread, NULL);
    store_set_log(r->st, NULL, NULL, 0);
    pthread_mutex_lock(&r->mu);
    int holder = r->holder;
    uint64_t rev = r->lease_rev;
    r->holder = r->writable = 0;
    pthread_mutex_unlock(&r->mu);
    /* Released at its revision, so a follower need not wait out the term. */
    if (holder && kvStore_Update(NULL, r->kv, REPLICA_KEY, "", 0, rev) == NATS_OK)
        fprintf(stderr, "replica: %s released the lease\n", r->node);
    if (r->wake) natsSubscription_Destroy(r->wake);
    kvStore_Destroy(r->kv);
    jsCtx_Destroy(r->js);
    natsConnection_Destroy(r->nc);
    natsOptions_Destroy(r->opts);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int replica_is_leader(replica_t *r, char *leader_url, size_t n) {
    pthread_mutex_lock(&r->mu);
    /* A holder that cannot write now (catching up, or its term ran out by
     * its clock) is no leader to its callers, and knows no other. */
    int w = r->writable && mono_ms() < r->valid_until_ms;
    if (leader_url && n) snprintf(leader_url, n, "%s", r->holder ? "" : r->leader_url);
    pthread_mutex_unlock(&r->mu);
    return w;
}

void replica_metrics(replica_t *r, char *buf, size_t cap, int *len) {
    if (*len < 0 || (size_t)*len >= cap) return;
    pthread_mutex_lock(&r->mu);
    int holder = r->holder, writable = r->writable;
    uint64_t applied = r->applied, last = r->stream_last, pf = r->publish_failures, lc = r->lease_changes;
    uint64_t first = r->stream_first;
    int cut = r->cut_off;
    pthread_mutex_unlock(&r->mu);
    uint64_t have = replica_applied(r);
    if (have > applied) applied = have;
    int n = snprintf(
        buf + *len, cap - (size_t)*len,
        "# HELP casesync_cluster_leader 1 while this node holds the lease.\n"
        "# TYPE casesync_cluster_leader gauge\ncasesync_cluster_leader %d\n"
        "# HELP casesync_cluster_writable 1 while this node holds the lease and writes.\n"
        "# TYPE casesync_cluster_writable gauge\ncasesync_cluster_writable %d\n"
        "# HELP casesync_cluster_applied_seq Stream sequence this node's store has applied.\n"
        "# TYPE casesync_cluster_applied_seq gauge\ncasesync_cluster_applied_seq %" PRIu64 "\n"
        "# HELP casesync_cluster_stream_seq The stream's last sequence as this node last saw it.\n"
        "# TYPE casesync_cluster_stream_seq gauge\ncasesync_cluster_stream_seq %" PRIu64 "\n"
        "# HELP casesync_cluster_publish_failures_total Batches the stream did not take (each a 503).\n"
        "# TYPE casesync_cluster_publish_failures_total counter\n"
        "casesync_cluster_publish_failures_total %" PRIu64 "\n"
        "# HELP casesync_cluster_lease_changes_total Times this node took or gave up the lease.\n"
        "# TYPE casesync_cluster_lease_changes_total counter\n"
        "casesync_cluster_lease_changes_total %" PRIu64 "\n"
        "# HELP casesync_cluster_stream_first_seq The stream's first sequence as this node last saw it "
        "(casesync log-trim moves it).\n"
        "# TYPE casesync_cluster_stream_first_seq gauge\ncasesync_cluster_stream_first_seq %" PRIu64 "\n"
        "# HELP casesync_cluster_cut_off 1 when this store needs entries the stream no longer holds "
        "(restore it from a newer backup).\n"
        "# TYPE casesync_cluster_cut_off gauge\ncasesync_cluster_cut_off %d\n",
        holder, writable, applied, last > applied ? last : applied, pf, lc, first, cut);
    *len = n < 0 ? -1 : *len + n;
}
