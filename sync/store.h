/* store.h -- the LMDB environment, its named databases, and the one writer.
 *
 * Internal to sync/: server/ never sees LMDB. One environment per process.
 * Every write goes through store_write(): the calling thread queues a job and
 * sleeps; the writer thread takes every queued job, runs each in a nested
 * transaction of one write transaction (a job that fails aborts only itself),
 * commits once (one fsync) and then wakes each caller. Read transactions are
 * short and never held across network I/O.
 *
 * Caveat: when the disk refuses a commit, the whole batch is discarded and
 * each of its jobs answers SYNC_EDISK. When the refused write was LMDB's meta
 * page (LMDB then answers MDB_PANIC to every transaction), the writer opens
 * the environment again once the open read transactions have ended; a read
 * transaction begun meanwhile waits for that. The MDB_env pointer changes
 * then: only store.c (and a command-line backup) may hold it.
 *
 * Key layout (big-endian integers, so byte order is numeric order). Values
 * marked {…} are objects in the store's binary form (store format 2:
 * MessagePack, sync/valcodec.h; a v1 store's JSON text until `casesync
 * migrate`), written and read only through store_put_json/store_get_json:
 *   meta        name                       -> value (text or BE64)
 *   users       user id                    -> {user, incl. password hash}
 *   usernames   username                   -> user id
 *   tokens      sha256(token) hex          -> {"user_id","device_id","expires_at"}
 *   devices     device id                  -> {device, incl. next_changeset_seq}
 *   records     record id                  -> {record with per-field meta} (record.h)
 *   log         BE64 seq                   -> audit entry: RFC 8785 canonical JSON
 *                                             text, hash-chained (docs/audit.md)
 *   record_log  record id 0x00 BE64 seq    -> ""
 *   feeds       feed key 0x00 BE64 seq     -> flag byte ('i' in, 'l' left) + record id
 *   changesets  device id 0x00 BE64 cs_seq -> {"hash","answer"}
 *   conflicts   conflict id                -> {conflict}
 *   rejections  BE64 n                     -> {rejection}
 *   closed      BE64 closed_at_ms 0x00 id  -> ""   (sync window expiry)
 *   idx         name 0x00 value 0x00 id    -> ""   (secondary indexes, index.c;
 *                                                    numeric values as BE64)
 *   evidence    sha256 hex 0x00 record id  -> {"record_id","item_id","unit","device_id","pushed_at"}
 *   uploads     upload id                  -> {tus upload state}
 *   blobs       sha256 hex                 -> {blob meta} (bytes live in files)
 */
#ifndef CASESYNC_STORE_H
#define CASESYNC_STORE_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

typedef struct store store_t;

typedef struct store_dbs {
    MDB_dbi meta, users, usernames, tokens, devices, records, log, record_log, feeds, changesets,
        conflicts, rejections, closed, idx, evidence, uploads, blobs;
} store_dbs_t;

/* Opens or creates the environment in dir (created when missing). rdonly
 * opens it for reading only, without a writer. Returns 0 or SYNC_EIO. */
int store_open(const char *dir, size_t map_size, int rdonly, store_t **out, char *errbuf, size_t errlen);
/* Stops the writer after the queued jobs and closes the environment. NULL ok. */
void store_close(store_t *st);
/* From now on store_write() answers SYNC_EBUSY. */
void store_shutdown(store_t *st);

const store_dbs_t *store_dbs(const store_t *st);
MDB_env *store_env(const store_t *st);

/* A write job: runs inside the writer thread with a (nested) write txn.
 * Returns 0 to keep its writes or a negative SYNC_E* to discard them; the
 * code is handed back by store_write(). It must not block on anything but
 * LMDB, and must not keep pointers into LMDB values past its return. */
typedef int (*store_job_fn)(MDB_txn *txn, void *ctx);

/* Queues fn, waits until its transaction is durably committed (or discarded),
 * and returns fn's code; SYNC_EDISK when the disk refused the commit (nothing
 * of fn's writes is kept), SYNC_EBUSY after shutdown. */
int store_write(store_t *st, store_job_fn fn, void *ctx);

/* ---- the replicated log (cluster mode; see sync/replica.h) ----
 *
 * Caveats: with a log set, the writer captures the puts and deletes every
 * job makes through store_put_raw/store_put_json/store_del (a job writing
 * with mdb_put or a cursor directly would not be replicated: none may), as
 * a redo: bytes of 'P'|'D', database number (order of store_dbs_t), BE32 key
 * length, key, and for 'P' BE32 value length and value. Before a batch with
 * any redo commits, fn gets the redo and the stream sequence the store has
 * applied (meta STORE_LOG_SEQ); it returns 0 with the sequence the log gave
 * the batch, which is stored in the same transaction, or a SYNC_E* code
 * that discards the batch and answers each of its jobs. fn runs in the
 * writer thread and may block on the network (bounded by its own timeout).
 * Jobs queued with store_write_applied() are entries of the log applied
 * here: never captured, never published, and never in one batch with new
 * writes. */
#define STORE_LOG_SEQ "log_seq"
#define STORE_LOG_STREAM "log_stream" /* the creation time (ns) of the stream followed (retention.h) */
typedef struct store_redo {
    unsigned char *buf;
    size_t len, cap;
    int failed; /* an allocation failed: the batch cannot be published */
} store_redo_t;
typedef int (*store_log_fn)(void *ctx, const void *redo, size_t len, uint64_t applied, uint64_t *seq);
/* Sets (or with fn NULL clears) the log. Call before the first write.
 * max_entry: the largest redo the log takes (0: no limit). A batch takes
 * no more jobs once its redo passes max_entry/4 (the rest wait for the next
 * batch); a batch over max_entry is discarded, its jobs answered
 * SYNC_ETOOLARGE when one alone is over it, else SYNC_EUNAVAIL. */
void store_set_log(store_t *st, store_log_fn fn, void *ctx, size_t max_entry);
/* As store_write, for a job that applies entries of the log. */
int store_write_applied(store_t *st, store_job_fn fn, void *ctx);
/* Applies a redo in txn. 0, SYNC_EBADREQ (malformed), or a storage code. */
int store_redo_apply(MDB_txn *txn, const store_dbs_t *dbs, const void *redo, size_t len);

/* A read-only transaction; end it with store_read_end() (accepts NULL). */
int store_read_begin(store_t *st, MDB_txn **txn);
void store_read_end(MDB_txn *txn);

/* Commit generations: a counter that grows with every durable commit, and a
 * wait for the next one. store_wait_commit() returns when the generation
 * passes `seen`, when deadline_ms (CLOCK_REALTIME ms) passes, or after
 * store_shutdown(). Long polls use it to sleep until something commits. */
uint64_t store_commit_gen(store_t *st);
void store_wait_commit(store_t *st, uint64_t seen, int64_t deadline_ms);
/* Batches and jobs committed since open (group-commit figures), and how many
 * batches held at most 1, 2, 4, ... 2^(STORE_BATCH_BUCKETS-2) jobs (the last
 * bucket: more). hist may be NULL. */
#define STORE_BATCH_BUCKETS 12
void store_stats(store_t *st, uint64_t *batches, uint64_t *jobs, uint64_t hist[STORE_BATCH_BUCKETS]);
/* Commits the disk refused since open (each discarded a whole batch). */
uint64_t store_commit_errors(store_t *st);
/* Bytes of the store file in use (up to its last page). */
uint64_t store_size(store_t *st);

/* ---- value helpers (all copy out of LMDB) ---- */

/* Reads and decodes a structured value (sync/valcodec.h: MessagePack, or
 * JSON text of a v1 store). 0, SYNC_ENOTFOUND or SYNC_EIO; *out owned by caller. */
int store_get_json(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, cJSON **out);
/* Encodes the object v in the store's binary form and puts it. 0,
 * SYNC_ENOMEM or a storage code. */
int store_put_json(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, const cJSON *v);
/* 1 when this process writes store format v1 (JSON text values and v1 audit
 * entries): test builds only, CASESYNC_TEST_STORE_V1=1; release builds 0. */
int store_writes_v1(void);
/* Raw get into a malloc'd copy (NUL-terminated for convenience). */
int store_get_raw(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, char **out, size_t *outlen);
int store_put_raw(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, const void *val, size_t vlen);
int store_del(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen);

/* meta counters (BE64 values), e.g. "seq", "conflict_id", "rejection_id". */
uint64_t store_meta_u64(MDB_txn *txn, const store_dbs_t *dbs, const char *name);
int store_meta_put_u64(MDB_txn *txn, const store_dbs_t *dbs, const char *name, uint64_t v);
/* Increments and returns the new value (first call returns 1). 0 on failure. */
uint64_t store_meta_next(MDB_txn *txn, const store_dbs_t *dbs, const char *name);

void store_be64(unsigned char out[8], uint64_t v);
uint64_t store_rd64(const unsigned char in[8]);

#endif
