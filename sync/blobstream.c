/* blobstream.c -- evidence bytes in the replicated stream CASESYNC_BLOBS
 * (see blobstream.h for the contract and its caveats). */
#include "sync/blobstream.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <openssl/evp.h>

#include "sync/blobs.h"
#include "sync/sync.h"

#define BS_STREAM "CASESYNC_BLOBS"
#define BS_SUBJECTS "casesync.blob.>"
#define BS_ENDS "casesync.blob.*.end"
#define BS_PREFIX "casesync.blob."
#define BS_CONNECT_WAIT_MS 5000
#define BS_READY_WAIT_MS 15000
#define BS_READ_WAIT_MS 5000  /* one chunk or marker read */
#define BS_RETRY_MS 1000      /* pending fetches are tried again this often */
#define BS_PENDING_MAX 100000 /* blobs the consumer remembers to fetch again */
#define BS_HEADROOM 4096      /* max_payload less this is a chunk */
#define BS_PATH 1400

struct blobstream {
    char node[64], data_dir[1024];
    int replicas, publish_timeout_ms;
    size_t chunk;

    natsOptions *opts;
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub; /* consumer thread only */

    pthread_t thread;
    int started;
    int stop; /* atomic */

    pthread_mutex_t mu; /* guards what follows */
    char (*pending)[65];
    size_t npending, cap;
    uint64_t published, fetched, publish_failures, fetch_failures;
};

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sha_ok(const char *sha) {
    size_t n = 0;
    for (; sha && sha[n]; n++)
        if (!((sha[n] >= '0' && sha[n] <= '9') || (sha[n] >= 'a' && sha[n] <= 'f'))) return 0;
    return n == 64;
}

static int dir_sync(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* DATA/blobs/ab/cd made (and durable in their parents). 0 or -1. */
static int blob_dirs(const blobstream_t *b, const char *sha, char *leaf, size_t n) {
    char dir[BS_PATH], parent[BS_PATH];
    for (int depth = 0; depth < 3; depth++) {
        if (depth == 0)
            snprintf(dir, sizeof dir, "%s/blobs", b->data_dir);
        else if (depth == 1)
            snprintf(dir, sizeof dir, "%s/blobs/%.2s", b->data_dir, sha);
        else
            snprintf(dir, sizeof dir, "%s/blobs/%.2s/%.2s", b->data_dir, sha, sha + 2);
        if (mkdir(dir, 0700) == 0) {
            snprintf(parent, sizeof parent, "%s", dir);
            char *slash = strrchr(parent, '/');
            if (slash) *slash = 0;
            if (dir_sync(parent) != 0) return -1;
        } else if (errno != EEXIST) {
            return -1;
        }
    }
    snprintf(leaf, n, "%s", dir);
    return 0;
}

/* The end marker of sha: 0 and its fields, SYNC_ENOTFOUND, or SYNC_EUNAVAIL. */
static int read_end(blobstream_t *b, const char *sha, uint64_t *size, uint64_t *chunks, uint64_t *chunk) {
    char subj[128];
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = BS_READ_WAIT_MS;
    snprintf(subj, sizeof subj, BS_PREFIX "%s.end", sha);
    natsStatus s = js_GetLastMsg(&m, b->js, BS_STREAM, subj, &o, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return SYNC_ENOTFOUND;
    if (s != NATS_OK || !m) return SYNC_EUNAVAIL;
    cJSON *v = cJSON_ParseWithLength(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
    natsMsg_Destroy(m);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(v, "size"),
                *c = cJSON_GetObjectItemCaseSensitive(v, "chunks"),
                *k = cJSON_GetObjectItemCaseSensitive(v, "chunk");
    int ok = cJSON_IsNumber(a) && cJSON_IsNumber(c) && cJSON_IsNumber(k) && a->valuedouble >= 0 &&
             c->valuedouble >= 0 && k->valuedouble >= 1;
    if (ok) {
        *size = (uint64_t)a->valuedouble;
        *chunks = (uint64_t)c->valuedouble;
        *chunk = (uint64_t)k->valuedouble;
        /* the chunks must cover exactly size bytes */
        ok = *chunks == (*size + *chunk - 1) / *chunk;
    }
    cJSON_Delete(v);
    return ok ? 0 : SYNC_ENOTFOUND;
}

/* ---- publishing ------------------------------------------------------------------ */

static int publish_one(blobstream_t *b, const char *subj, const void *data, int len) {
    jsPubOptions po;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    jsPubOptions_Init(&po);
    po.MaxWait = b->publish_timeout_ms;
    po.ExpectStream = BS_STREAM;
    natsStatus s = js_Publish(&ack, b->js, subj, data, len, &po, &jerr);
    jsPubAck_Destroy(ack);
    if (s != NATS_OK)
        fprintf(stderr, "blobstream: %s: publish of %s failed: %s (%d)\n", b->node, subj,
                natsStatus_GetText(s), (int)jerr);
    return s == NATS_OK ? 0 : -1;
}

int blobstream_publish(blobstream_t *b, const char *sha, const char *path, uint64_t size) {
    uint64_t have = 0, chunks = 0, chunk = 0;
    if (!sha_ok(sha)) return SYNC_EBADREQ;
    if (read_end(b, sha, &have, &chunks, &chunk) == 0 && have == size) return 0; /* replicated already */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return SYNC_EIO;
    unsigned char *buf = malloc(b->chunk ? b->chunk : 1);
    int rc = buf ? 0 : SYNC_ENOMEM;
    char subj[128];
    chunk = b->chunk;
    chunks = (size + chunk - 1) / chunk;
    for (uint64_t i = 0; rc == 0 && i < chunks; i++) {
        size_t want = (size_t)(size - i * chunk < chunk ? size - i * chunk : chunk), got = 0;
        while (got < want) {
            ssize_t n = pread(fd, buf + got, want - got, (off_t)(i * chunk + got));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            got += (size_t)n;
        }
        if (got != want) {
            rc = SYNC_EIO;
            break;
        }
        snprintf(subj, sizeof subj, BS_PREFIX "%s.%" PRIu64, sha, i);
        if (publish_one(b, subj, buf, (int)want) != 0) rc = SYNC_EUNAVAIL;
    }
    close(fd);
    free(buf);
    if (rc == 0) {
        /* The marker last: its ack says every chunk before it is stored. */
        char end[160];
        int n =
            snprintf(end, sizeof end, "{\"size\":%" PRIu64 ",\"chunks\":%" PRIu64 ",\"chunk\":%" PRIu64 "}",
                     size, chunks, chunk);
        snprintf(subj, sizeof subj, BS_PREFIX "%s.end", sha);
        if (publish_one(b, subj, end, n) != 0) rc = SYNC_EUNAVAIL;
    }
    pthread_mutex_lock(&b->mu);
    if (rc == 0)
        b->published++;
    else
        b->publish_failures++;
    pthread_mutex_unlock(&b->mu);
    return rc;
}

/* ---- fetching ---------------------------------------------------------------------- */

int blobstream_fetch(blobstream_t *b, const char *sha) {
    char path[BS_PATH], dir[BS_PATH], tmp[BS_PATH + 32], subj[128], hex[65];
    struct stat st;
    uint64_t size = 0, chunks = 0, chunk = 0;
    if (!sha_ok(sha)) return SYNC_ENOTFOUND;
    blobs_file_path(b->data_dir, sha, path, sizeof path);
    if (stat(path, &st) == 0) return 0;
    int rc = read_end(b, sha, &size, &chunks, &chunk);
    if (rc) return rc;
    snprintf(dir, sizeof dir, "%s/uploads", b->data_dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return SYNC_EIO;
    snprintf(tmp, sizeof tmp, "%s/fetch-XXXXXX", dir);
    int fd = mkstemp(tmp);
    if (fd < 0) return SYNC_EIO;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char digest[32];
    unsigned int dlen = 0;
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) rc = SYNC_ENOMEM;
    uint64_t off = 0;
    for (uint64_t i = 0; rc == 0 && i < chunks; i++) {
        if (__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE)) {
            rc = SYNC_EUNAVAIL; /* shutting down: fetched again at the next start */
            break;
        }
        natsMsg *m = NULL;
        jsErrCode jerr = 0;
        jsOptions o;
        jsOptions_Init(&o);
        o.Wait = BS_READ_WAIT_MS;
        snprintf(subj, sizeof subj, BS_PREFIX "%s.%" PRIu64, sha, i);
        natsStatus s = js_GetLastMsg(&m, b->js, BS_STREAM, subj, &o, &jerr);
        if (s != NATS_OK || !m) {
            rc = s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr ? SYNC_ENOTFOUND : SYNC_EUNAVAIL;
            break;
        }
        const unsigned char *data = (const unsigned char *)natsMsg_GetData(m);
        size_t n = (size_t)natsMsg_GetDataLength(m);
        uint64_t want = size - off < chunk ? size - off : chunk;
        if (n != want) {
            rc = SYNC_ECHECKSUM;
        } else {
            size_t done = 0;
            while (done < n && rc == 0) {
                ssize_t w = pwrite(fd, data + done, n - done, (off_t)(off + done));
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0)
                    rc = SYNC_EIO;
                else
                    done += (size_t)w;
            }
            if (rc == 0 && EVP_DigestUpdate(md, data, n) != 1) rc = SYNC_ENOMEM;
            off += n;
        }
        natsMsg_Destroy(m);
    }
    if (rc == 0 && (EVP_DigestFinal_ex(md, digest, &dlen) != 1 || dlen != 32)) rc = SYNC_ENOMEM;
    if (rc == 0) {
        util_hex(digest, 32, hex);
        if (off != size || strcmp(hex, sha) != 0) rc = SYNC_ECHECKSUM;
    }
    if (rc == 0 && fdatasync(fd) != 0) rc = SYNC_EIO;
    close(fd);
    EVP_MD_CTX_free(md);
    if (rc == 0 && (blob_dirs(b, sha, dir, sizeof dir) != 0 || rename(tmp, path) != 0 || dir_sync(dir) != 0))
        rc = SYNC_EIO;
    if (rc) {
        unlink(tmp);
        if (rc == SYNC_ECHECKSUM)
            fprintf(stderr, "blobstream: %s: the stream's chunks of %s do not make that blob\n", b->node,
                    sha);
    }
    pthread_mutex_lock(&b->mu);
    if (rc == 0)
        b->fetched++;
    else
        b->fetch_failures++;
    pthread_mutex_unlock(&b->mu);
    return rc;
}

/* ---- the consumer ------------------------------------------------------------------- */

static void pending_add(blobstream_t *b, const char *sha) {
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->npending; i++)
        if (strcmp(b->pending[i], sha) == 0) goto out;
    if (b->npending == b->cap && b->cap < BS_PENDING_MAX) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        char(*g)[65] = realloc(b->pending, cap * sizeof *g);
        if (g) b->pending = g, b->cap = cap;
    }
    if (b->npending < b->cap) snprintf(b->pending[b->npending++], 65, "%s", sha);
out:
    pthread_mutex_unlock(&b->mu);
}

/* Tries every pending fetch once; keeps those that failed again. */
static void pending_retry(blobstream_t *b) {
    pthread_mutex_lock(&b->mu);
    size_t n = b->npending;
    char(*list)[65] = n ? malloc(n * sizeof *list) : NULL;
    if (list) memcpy(list, b->pending, n * sizeof *list);
    if (list) b->npending = 0;
    pthread_mutex_unlock(&b->mu);
    if (!list) return;
    for (size_t i = 0; i < n && !__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE); i++)
        if (blobstream_fetch(b, list[i]) != 0) pending_add(b, list[i]);
    free(list);
}

static void subscribe(blobstream_t *b) {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = BS_STREAM;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverAll;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    if (js_SubscribeSync(&sub, b->js, BS_ENDS, NULL, &so, &jerr) == NATS_OK) b->sub = sub;
}

static void *consumer_main(void *arg) {
    blobstream_t *b = arg;
    int64_t retry_at = mono_ms() + BS_RETRY_MS;
    while (!__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE)) {
        if (!b->sub) {
            subscribe(b);
            if (!b->sub) nanosleep(&(struct timespec){0, 200 * 1000000L}, NULL);
            continue;
        }
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, b->sub, 200);
        if (s == NATS_OK && m) {
            const char *subj = natsMsg_GetSubject(m);
            char sha[65];
            size_t pl = strlen(BS_PREFIX);
            if (subj && strlen(subj) == pl + 64 + 4 && strncmp(subj, BS_PREFIX, pl) == 0) {
                memcpy(sha, subj + pl, 64);
                sha[64] = 0;
                if (blobstream_fetch(b, sha) != 0) pending_add(b, sha);
            }
            natsMsg_Destroy(m);
        } else if (s != NATS_OK && s != NATS_TIMEOUT) {
            /* The subscription is gone (e.g. the connection closed): again. */
            natsSubscription_Destroy(b->sub);
            b->sub = NULL;
        }
        if (mono_ms() >= retry_at) {
            pending_retry(b);
            retry_at = mono_ms() + BS_RETRY_MS;
        }
    }
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------------- */

static int ensure_stream(blobstream_t *b, char *errbuf, size_t errlen) {
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    const char *subjects[] = {BS_SUBJECTS};
    jsStreamConfig_Init(&sc);
    sc.Name = BS_STREAM;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = b->replicas;
    sc.MaxMsgsPerSubject = 1; /* the same bytes published again replace, never add */
    natsStatus s = js_AddStream(&si, b->js, &sc, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK && jerr != JSStreamNameExistErr) {
        snprintf(errbuf, errlen, "cannot make the stream %s (R%d): %s (%d)", BS_STREAM, b->replicas,
                 natsStatus_GetText(s), (int)jerr);
        return -1;
    }
    return 0;
}

/* Removes fetch files a crash left in DATA/uploads. */
static void sweep_fetch_files(const blobstream_t *b) {
    char dir[BS_PATH], path[BS_PATH + 300];
    snprintf(dir, sizeof dir, "%s/uploads", b->data_dir);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "fetch-", 6) != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
}

int blobstream_start(const blobstream_config_t *cfg, blobstream_t **out, char *errbuf, size_t errlen) {
    *out = NULL;
    if (!cfg->url || !*cfg->url || !cfg->node || !cfg->data_dir || strlen(cfg->data_dir) >= 1024) {
        snprintf(errbuf, errlen, "evidence replication needs the NATS URL, a node name and the data folder");
        return SYNC_EBADREQ;
    }
    blobstream_t *b = calloc(1, sizeof *b);
    if (!b) return SYNC_ENOMEM;
    snprintf(b->node, sizeof b->node, "%s", cfg->node);
    snprintf(b->data_dir, sizeof b->data_dir, "%s", cfg->data_dir);
    b->replicas = cfg->replicas > 0 ? cfg->replicas : 3;
    b->publish_timeout_ms = cfg->publish_timeout_ms > 0 ? cfg->publish_timeout_ms : 5000;
    pthread_mutex_init(&b->mu, NULL);
    sweep_fetch_files(b);

    char urls[1024], *servers[16], *save = NULL;
    int nservers = 0;
    snprintf(urls, sizeof urls, "%s", cfg->url);
    for (char *t = strtok_r(urls, ", ", &save); t && nservers < 16; t = strtok_r(NULL, ", ", &save))
        servers[nservers++] = t;
    char name[96];
    snprintf(name, sizeof name, "%s-blobs", b->node);
    natsStatus s = natsOptions_Create(&b->opts);
    if (s == NATS_OK) s = natsOptions_SetServers(b->opts, (const char **)servers, nservers);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(b->opts, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(b->opts, 100);
    /* A publish refused while disconnected must not land later. */
    if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(b->opts, 1);
    if (s == NATS_OK) s = natsOptions_SetTimeout(b->opts, BS_CONNECT_WAIT_MS);
    if (s == NATS_OK) s = natsOptions_SetName(b->opts, name);
    if (s == NATS_OK) s = natsConnection_Connect(&b->nc, b->opts);
    if (s == NATS_OK) s = natsConnection_JetStream(&b->js, b->nc, NULL);
    if (s != NATS_OK) {
        snprintf(errbuf, errlen, "cannot reach NATS at %s: %s", cfg->url, natsStatus_GetText(s));
        goto fail;
    }
    int64_t ready_by = mono_ms() + BS_READY_WAIT_MS;
    while (ensure_stream(b, errbuf, errlen) != 0) {
        if (mono_ms() >= ready_by) goto fail;
        nanosleep(&(struct timespec){0, 250 * 1000000L}, NULL);
    }
    int64_t maxp = natsConnection_GetMaxPayload(b->nc);
    b->chunk = maxp > 2 * BS_HEADROOM ? (size_t)maxp - BS_HEADROOM : 1024 * 1024 - BS_HEADROOM;
    if (pthread_create(&b->thread, NULL, consumer_main, b) != 0) {
        snprintf(errbuf, errlen, "cannot start the evidence replication thread");
        goto fail;
    }
    b->started = 1;
    pthread_setname_np(b->thread, "casesync-blobs");
    *out = b;
    return 0;
fail:
    if (b->js) jsCtx_Destroy(b->js);
    if (b->nc) natsConnection_Destroy(b->nc);
    if (b->opts) natsOptions_Destroy(b->opts);
    pthread_mutex_destroy(&b->mu);
    free(b);
    return SYNC_EIO;
}

void blobstream_stop(blobstream_t *b) {
    if (!b) return;
    __atomic_store_n(&b->stop, 1, __ATOMIC_RELEASE);
    if (b->started) pthread_join(b->thread, NULL);
    if (b->sub) natsSubscription_Destroy(b->sub);
    jsCtx_Destroy(b->js);
    natsConnection_Destroy(b->nc);
    natsOptions_Destroy(b->opts);
    pthread_mutex_destroy(&b->mu);
    free(b->pending);
    free(b);
}

uint64_t blobstream_pending(blobstream_t *b) {
    pthread_mutex_lock(&b->mu);
    uint64_t n = b->npending;
    pthread_mutex_unlock(&b->mu);
    return n;
}

void blobstream_metrics(blobstream_t *b, char *buf, size_t cap, int *len) {
    if (*len < 0 || (size_t)*len >= cap) return;
    pthread_mutex_lock(&b->mu);
    uint64_t pub = b->published, fet = b->fetched, pf = b->publish_failures, pend = b->npending;
    pthread_mutex_unlock(&b->mu);
    int n =
        snprintf(buf + *len, cap - (size_t)*len,
                 "# HELP casesync_cluster_blobs_published_total Blobs this node put into the blob stream.\n"
                 "# TYPE casesync_cluster_blobs_published_total counter\n"
                 "casesync_cluster_blobs_published_total %" PRIu64 "\n"
                 "# HELP casesync_cluster_blobs_fetched_total Blob files this node wrote from the stream.\n"
                 "# TYPE casesync_cluster_blobs_fetched_total counter\n"
                 "casesync_cluster_blobs_fetched_total %" PRIu64 "\n"
                 "# HELP casesync_cluster_blob_publish_failures_total Blob publishes NATS did not take "
                 "(each a 503).\n"
                 "# TYPE casesync_cluster_blob_publish_failures_total counter\n"
                 "casesync_cluster_blob_publish_failures_total %" PRIu64 "\n"
                 "# HELP casesync_cluster_blobs_pending Blobs this node still has to fetch (retried).\n"
                 "# TYPE casesync_cluster_blobs_pending gauge\ncasesync_cluster_blobs_pending %" PRIu64 "\n",
                 pub, fet, pf, pend);
    *len = n < 0 ? -1 : *len + n;
}
