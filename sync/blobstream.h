/* blobstream.h -- cluster mode: evidence bytes in the replicated JetStream
 * stream CASESYNC_BLOBS, so that every node holds every acknowledged blob.
 *
 * Caveats first:
 * - libnats 3.4 has no Object Store API; a blob is a run of chunks on
 *   subjects casesync.blob.<sha256>.<i> (each at most the connection's
 *   max_payload less room for headers) followed by an end marker on
 *   casesync.blob.<sha256>.end ({"size","chunks","chunk"}). The stream keeps
 *   one message per subject, so publishing the same bytes again replaces
 *   them instead of adding a copy.
 * - blobstream_publish() answers 0 only once the end marker is acknowledged,
 *   i.e. every chunk before it is stored by a quorum (R3: two of three
 *   nats-servers). The caller (blobs.c) records the blob in LMDB only after
 *   that, so the redo that makes a blob known to the followers always comes
 *   after its bytes are replicated.
 * - Every node runs an ordered consumer of the end markers from the stream's
 *   first message and writes each blob file it lacks (a node that joins from
 *   a backup gets the blobs made since). A blob read that finds its file
 *   missing fetches it at once too (blobstream_fetch), so a follower serves
 *   a blob the moment its LMDB row arrives, before the consumer got there.
 * - A fetched file is written to DATA/uploads/fetch-XXXXXX, hashed while it
 *   is written, fsynced and renamed into DATA/blobs only when its SHA-256 is
 *   the blob's name: a damaged or partial stream never yields a wrong file.
 * - At start the consumer reads every end marker the stream holds (a stat
 *   per blob); nothing trims the stream yet (docs/ha.md).
 */
#ifndef CASESYNC_BLOBSTREAM_H
#define CASESYNC_BLOBSTREAM_H

#include <stddef.h>
#include <stdint.h>

typedef struct blobstream blobstream_t;

typedef struct blobstream_config {
    const char *url;        /* NATS servers, comma separated */
    const char *node;       /* this node's name (the connection's) */
    const char *data_dir;   /* blobs/ and uploads/ under it */
    int replicas;           /* the stream's replicas; 0: 3 */
    int publish_timeout_ms; /* per chunk; 0: 5000 */
} blobstream_config_t;

/* Connects, makes the stream CASESYNC_BLOBS when missing and starts the
 * consumer's thread. 0, or SYNC_EIO/SYNC_ENOMEM/SYNC_EBADREQ with errbuf. */
int blobstream_start(const blobstream_config_t *cfg, blobstream_t **out, char *errbuf, size_t errlen);
/* Stops the thread and closes the connection. NULL ok. */
void blobstream_stop(blobstream_t *b);

/* Publishes the size bytes of the file at path, named sha (64 lowercase hex
 * digits), unless the stream already ends that blob with a marker of the
 * same size. 0 once replicated; SYNC_EUNAVAIL when NATS did not take it (no
 * quorum, no answer); SYNC_EIO when the file cannot be read. */
int blobstream_publish(blobstream_t *b, const char *sha, const char *path, uint64_t size);

/* Writes the blob file of sha (DATA/blobs/ab/cd/<sha>) from the stream when
 * it is missing. 0 when the file is there afterwards; SYNC_ENOTFOUND when the
 * stream has no complete blob of that name; SYNC_EUNAVAIL when NATS did not
 * answer; SYNC_ECHECKSUM when the chunks do not hash to sha; SYNC_EIO when
 * the disk refused. Safe from any thread, several at once. */
int blobstream_fetch(blobstream_t *b, const char *sha);

/* Blobs the consumer is still waiting to fetch (it retries them), for the
 * metrics and the tests. */
uint64_t blobstream_pending(blobstream_t *b);

/* Prometheus text: blobs published, fetched, failed publishes, pending
 * fetches. Appended at buf+*len. */
void blobstream_metrics(blobstream_t *b, char *buf, size_t cap, int *len);

#endif
