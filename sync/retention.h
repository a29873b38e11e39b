/* retention.h -- how long the replicated log (the JetStream stream CASESYNC,
 * sync/replica.h) keeps its entries: back to a backup.
 *
 * Caveats first:
 * - Nothing trims the stream by itself. The operator trims it with
 *   `casesync log-trim BACKUP --cluster URLS [--keep N]` once BACKUP (the
 *   oldest backup still wanted for seeding or restoring a node) is safely
 *   stored: the stream then keeps every entry after BACKUP's log_seq, and N
 *   more before it (the margin, for nodes a little behind the backup).
 * - A node whose store needs an entry the stream no longer holds (its
 *   log_seq + 1 is below the stream's first sequence) cannot catch up:
 *   casesyncd refuses to start on it, and a running follower that finds
 *   itself there stops applying and says so (log and metrics). Restore it
 *   from a newer backup. Trimming never reaches beyond a backup, so a node
 *   seeded from the backup named (or a newer one) always joins.
 * - The trim checks only the backup against the stream, not the live
 *   nodes: a follower that lags behind the backup by more than the margin
 *   when the trim runs is cut off (and says so).
 * - A store remembers which stream it follows (meta log_stream: the
 *   stream's creation time). A stream made again after the old one was lost
 *   (every nats-server's copy, or two of three) numbers its entries from 1
 *   again: a store of the old stream would apply the wrong entries, so
 *   casesyncd refuses to start on it. `casesync detach` forgets log_seq and
 *   marks the store detached: it may then seed a new stream (an empty one)
 *   but join no stream that has entries, the old one included (it would
 *   apply it from entry 1 over its own records).
 * - The sequence numbers are the stream's: a purge keeps them, so a
 *   backup's log_seq still means the same entry after any trim.
 */
#ifndef CASESYNC_RETENTION_H
#define CASESYNC_RETENTION_H

#include <stdint.h>

/* Pure: can a store that has applied `applied` catch up from a stream that
 * holds entries first..last (first = last + 1 when it holds none; both 0
 * for a stream never written)? */
typedef enum {
    JOIN_OK,      /* it holds every entry after applied (or nothing is missing) */
    JOIN_TRIMMED, /* entries applied+1 .. first-1 were trimmed: restore from a newer backup */
    JOIN_AHEAD    /* the store has applied more than the stream ever held: another stream */
} join_action_t;
join_action_t retention_join_decide(uint64_t applied, uint64_t first, uint64_t last);

/* Pure: what trimming to a backup at backup_seq, keeping `keep` entries
 * before it, does to a stream holding first..last. *keep_from gets the
 * first sequence the stream keeps (with TRIM_PURGE). */
typedef enum {
    TRIM_PURGE,       /* purge every entry below *keep_from */
    TRIM_NOTHING,     /* the stream holds nothing below *keep_from already */
    TRIM_NOT_CLUSTER, /* the backup has applied no entry: not from a cluster node */
    TRIM_AHEAD        /* the backup is beyond the stream's end: another stream */
} trim_action_t;
trim_action_t retention_trim_decide(uint64_t backup_seq, uint64_t keep, uint64_t first, uint64_t last,
                                    uint64_t *keep_from);

/* Pure: may a store that followed the stream made at store_stream (0: none
 * recorded; RETENTION_DETACHED: `casesync detach` took it out) follow the
 * stream made at stream_created (0: unknown) whose last entry is
 * stream_last? */
#define RETENTION_DETACHED 1
typedef enum {
    STREAM_SAME,    /* the stream it followed, or unknown */
    STREAM_ADOPT,   /* it recorded none yet, or it was detached and the stream is empty: record this one */
    STREAM_OTHER,   /* another stream: refuse */
    STREAM_DETACHED /* detached, and the stream has entries: it may only seed an empty one */
} stream_action_t;
stream_action_t retention_stream_decide(uint64_t store_stream, uint64_t stream_created, uint64_t stream_last);

#endif
