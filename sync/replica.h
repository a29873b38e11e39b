/* replica.h -- cluster mode: the store under a replicated log on NATS
 * JetStream, and leadership as a lease in a JetStream KV bucket.
 *
 * Caveats first:
 * - Only LMDB is replicated here. Evidence bytes (DATA/blobs) have a stream
 *   of their own (sync/blobstream.h); unfinished uploads (DATA/uploads) stay
 *   on the node that took them.
 * - The stream keeps its entries until `casesync log-trim` trims it back to
 *   a backup (sync/retention.h). A store whose log_seq + 1 is below the
 *   stream's first sequence cannot catch up: replica_start() refuses it
 *   with a message saying to restore from a newer backup, and a running
 *   follower that finds itself there stops applying (metric
 *   casesync_cluster_cut_off).
 * - A store follows one stream (its creation time in meta log_stream):
 *   replica_start() refuses a store of another stream, made again after a
 *   loss, and a detached store on a stream that has entries.
 * - The leader publishes each batch's redo (store.h) with the header
 *   Nats-Expected-Last-Sequence set to the sequence it has applied: an old
 *   leader whose store is behind the stream cannot append (the fence). Only
 *   after the stream's ack does the batch commit locally, with its sequence
 *   (meta log_seq) in the same transaction. A failed or unanswered publish
 *   discards the batch (SYNC_EUNAVAIL, 503 + Retry-After); the entry may
 *   still have landed, so the leader then stops writing, applies what the
 *   stream holds beyond its store, and writes again. A phone retrying the
 *   same changeset gets the stored answer (changesets are idempotent).
 * - A leader that dies between the ack and its commit applies that entry
 *   from the stream when it starts again, before it writes.
 * - Followers poll the stream (woken at once by an empty core NATS message
 *   on casesync.wake the leader sends after each append) and apply entries
 *   in order, each in its own transaction with
 *   its sequence. They refuse every write job that would change the store
 *   (SYNC_EUNAVAIL); the HTTP edge redirects writes to the leader.
 * - The lease: key "leader" of the KV bucket, value {"node","url"} or "" when
 *   released; the bucket's TTL is the lease's term, so a dead leader's value
 *   vanishes after it. The holder renews it every term/4 with the revision it
 *   holds (kvStore_Update); it writes only until start of its last good
 *   renewal + term*2/3 by its monotonic clock, and stops at once when a
 *   renewal fails. A follower takes the lease (kvStore_Create, or Update of a
 *   released value at its revision) only when its store has applied the
 *   whole stream, then checks the stream again before writing.
 */
#ifndef CASESYNC_REPLICA_H
#define CASESYNC_REPLICA_H

#include <stddef.h>
#include <stdint.h>

#include "sync/store.h"

#define REPLICA_STREAM "CASESYNC"
#define REPLICA_SUBJECT "casesync.log"
#define REPLICA_WAKE "casesync.wake" /* core NATS, empty: the leader appended an entry */

typedef struct replica replica_t;

typedef struct replica_config {
    const char *url;        /* NATS servers, comma separated: nats://h1:4222,nats://h2:4222 */
    const char *node;       /* this node's name (the lease holder's) */
    const char *advertise;  /* the URL writes are redirected to while this node leads; may be "" */
    int lease_ms;           /* the lease's term; 0: 6000 */
    int replicas;           /* the stream's and the bucket's replicas; 0: 3 */
    int publish_timeout_ms; /* 0: 2000 */
} replica_config_t;

/* Connects (waiting a few seconds for NATS; going on in the background when
 * it is not there), makes the stream "CASESYNC" (subject casesync.log) and
 * the bucket "casesync_lease" when missing, applies what the stream holds
 * beyond the store, tries once to take the lease, sets the store's log and
 * starts the replica's thread. on_apply (may be NULL) runs in the writer
 * after each applied entry, in its transaction. 0, or SYNC_EIO/SYNC_ENOMEM
 * with errbuf filled. */
int replica_start(store_t *st, const replica_config_t *cfg, int (*on_apply)(MDB_txn *txn, void *ctx),
                  void *apply_ctx, replica_t **out, char *errbuf, size_t errlen);
/* Releases the lease if held, stops the thread, closes the connection and
 * clears the store's log. Call before store_close(). NULL ok. */
void replica_stop(replica_t *r);

/* 1 while this node holds the lease and may write (caught up, within its
 * term by its clock). leader_url (may be NULL) gets the advertised URL of
 * another node holding the lease, as last read; "" when none is known or
 * this node holds it but cannot write now. */
int replica_is_leader(replica_t *r, char *leader_url, size_t n);

/* Sets the advertised URL, written into the lease from its next renewal. */
void replica_advertise(replica_t *r, const char *url);

/* Prometheus text: leader (0/1), applied sequence, stream's first and last
 * sequence as last seen, publish failures, lease changes, cut off (0/1). Appended at buf+*len. */
void replica_metrics(replica_t *r, char *buf, size_t cap, int *len);

/* Pure: what a node does with the lease at one tick. */
typedef enum {
    LEASE_KEEP,     /* nothing to do */
    LEASE_RENEW,    /* holder: renew now */
    LEASE_STEPDOWN, /* holder: stop writing (term ran out) */
    LEASE_TAKE,     /* follower: the lease is free and the store is caught up */
    LEASE_WAIT      /* follower: free lease, but the store is behind the stream */
} lease_action_t;
lease_action_t replica_lease_decide(int holder, int64_t now_ms, int64_t renew_at_ms, int64_t valid_until_ms,
                                    int lease_free, uint64_t applied, uint64_t stream_last);

#endif
