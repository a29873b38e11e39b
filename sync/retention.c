/* retention.c -- the replicated log kept back to a backup (see retention.h
 * for the contract): the two decisions, the log_seq of a store folder, and
 * the trim itself. */
#include "sync/retention.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <nats/nats.h>

#include "sync/replica.h"
#include "sync/store.h"
#include "sync/sync.h"

join_action_t retention_join_decide(uint64_t applied, uint64_t first, uint64_t last) {
    if (applied > last) return JOIN_AHEAD;
    if (applied == last) return JOIN_OK;
    return applied + 1 >= first ? JOIN_OK : JOIN_TRIMMED;
}

trim_action_t retention_trim_decide(uint64_t backup_seq, uint64_t keep, uint64_t first, uint64_t last,
                                    uint64_t *keep_from) {
    *keep_from = 0;
    if (backup_seq == 0) return TRIM_NOT_CLUSTER;
    if (backup_seq > last) return TRIM_AHEAD;
    /* The backup's node needs backup_seq + 1 on; `keep` entries more before it. */
    *keep_from = backup_seq + 1 > keep ? backup_seq + 1 - keep : 1;
    return *keep_from > first ? TRIM_PURGE : TRIM_NOTHING;
}

/* Connects to the first NATS server of a comma-separated list that answers. */
static natsStatus connect_list(const char *urls, natsConnection **nc) {
    char list[1024], *servers[16], *save = NULL;
    int n = 0;
    natsOptions *o = NULL;
    snprintf(list, sizeof list, "%s", urls);
    for (char *t = strtok_r(list, ", ", &save); t && n < 16; t = strtok_r(NULL, ", ", &save))
        servers[n++] = t;
    if (n == 0) return NATS_INVALID_ARG;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetServers(o, (const char **)servers, n);
    if (s == NATS_OK) s = natsOptions_SetName(o, "casesync-log-trim");
    if (s == NATS_OK) s = natsConnection_Connect(nc, o);
    natsOptions_Destroy(o);
    return s;
}

stream_action_t retention_stream_decide(uint64_t store_stream, uint64_t stream_created,
                                        uint64_t stream_last) {
    if (store_stream == RETENTION_DETACHED) return stream_last == 0 ? STREAM_ADOPT : STREAM_DETACHED;
    if (stream_created == 0 || store_stream == stream_created) return STREAM_SAME;
    return store_stream == 0 ? STREAM_ADOPT : STREAM_OTHER;
}

int sync_store_log_seq(const char *dir, uint64_t *seq, sync_error_t *err) {
    store_t *st = NULL;
    MDB_txn *txn = NULL;
    char msg[256];
    *seq = 0;
    if (store_open(dir, 0, 1, &st, msg, sizeof msg) != 0)
        return sync_fail(err, SYNC_EIO, "backup", "cannot open the store in %s: %s", dir, msg);
    int rc = store_read_begin(st, &txn);
    if (rc == 0) *seq = store_meta_u64(txn, store_dbs(st), STORE_LOG_SEQ);
    store_read_end(txn);
    store_close(st);
    return rc ? sync_fail(err, SYNC_EIO, "backup", "cannot read the store in %s", dir) : 0;
}

int sync_cluster_trim(const char *urls, const char *backup_dir, uint64_t keep, sync_trim_t *out,
                      sync_error_t *err) {
    memset(out, 0, sizeof *out);
    int rc = sync_store_log_seq(backup_dir, &out->backup_seq, err);
    if (rc != 0) return rc;
    if (out->backup_seq == 0) /* before asking NATS: TRIM_NOT_CLUSTER whatever the stream */
        return sync_fail(
            err, SYNC_EBADREQ, "backup",
            "%s has applied no entry of a cluster's log (log_seq 0): not a backup of a cluster node",
            backup_dir);
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = connect_list(urls, &nc);
    if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, NULL);
    if (s == NATS_OK) s = js_GetStreamInfo(&si, js, REPLICA_STREAM, NULL, &jerr);
    if (s != NATS_OK || !si) {
        rc = sync_fail(err, SYNC_EUNAVAIL, "cluster", "cannot read the stream %s at %s: %s (%d)",
                       REPLICA_STREAM, urls, natsStatus_GetText(s), (int)jerr);
        goto done;
    }
    out->first_before = out->first_after = si->State.FirstSeq;
    out->last = si->State.LastSeq;
    switch (retention_trim_decide(out->backup_seq, keep, si->State.FirstSeq, si->State.LastSeq,
                                  &out->keep_from)) {
    case TRIM_NOT_CLUSTER:
        rc = sync_fail(
            err, SYNC_EBADREQ, "backup",
            "%s has applied no entry of a cluster's log (log_seq 0): not a backup of a cluster node",
            backup_dir);
        goto done;
    case TRIM_AHEAD:
        rc = sync_fail(err, SYNC_EBADREQ, "backup",
                       "%s has applied log entry %" PRIu64 " but the stream %s ends at %" PRIu64
                       ": a backup of another cluster; nothing trimmed",
                       backup_dir, out->backup_seq, REPLICA_STREAM, out->last);
        goto done;
    case TRIM_NOTHING: goto done;
    case TRIM_PURGE: break;
    }
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Sequence = out->keep_from; /* purges below it, keeps it and what follows */
    s = js_PurgeStream(js, REPLICA_STREAM, &o, &jerr);
    if (s != NATS_OK) {
        rc = sync_fail(err, SYNC_EUNAVAIL, "cluster", "purge of %s below %" PRIu64 " failed: %s (%d)",
                       REPLICA_STREAM, out->keep_from, natsStatus_GetText(s), (int)jerr);
        goto done;
    }
    jsStreamInfo_Destroy(si);
    si = NULL;
    if (js_GetStreamInfo(&si, js, REPLICA_STREAM, NULL, &jerr) == NATS_OK && si) {
        out->first_after = si->State.FirstSeq;
        out->last = si->State.LastSeq;
    }
    out->trimmed = 1;
done:
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}
