/* blobs.h -- what the other modules of sync/ use of blobs.c: who may list
 * a hash in an evidence item, and the walk over evidence whose bytes are
 * overdue. Internal to sync/. */
#ifndef CASESYNC_BLOBS_H
#define CASESYNC_BLOBS_H

#include "sync/engine.h"

/* Counts, per device id, the evidence items that are due (pushed longer than
 * evidence_deadline_hours ago) and have no blob yet, inside the caller's read
 * transaction. Returns a new object {device_id: n} that the caller deletes,
 * or NULL when out of memory or the store cannot be read. */
cJSON *blobs_missing_by_device(sync_t *s, MDB_txn *txn, int64_t now_ms);
/* How many evidence items of a unit (NULL: all) are past their deadline without bytes. */
int blobs_missing_count(sync_t *s, MDB_txn *txn, int64_t now_ms, const char *unit, uint64_t *n);

/* The path of blob sha's file under data_dir: blobs/ab/cd/<sha>. */
void blobs_file_path(const char *data_dir, const char *sha, char *buf, size_t n);

/* ---- evidence reachable only through scope ---- */

typedef enum {
    BLOB_READ_HIDDEN, /* answered as an unknown hash */
    BLOB_READ_OK
} blob_read_t;

/* May a user read a blob's bytes? uploader: they completed an upload of
 * them; backed_listing_in_scope: they see a record whose listing of the
 * hash is backed (blobs.c). Admins read every blob. */
blob_read_t blobs_judge_read(schema_role_t role, int uploader, int backed_listing_in_scope);

typedef enum {
    BLOB_LIST_PENDING, /* the bytes are not stored: accepted, grants nothing until its lister uploads them */
    BLOB_LIST_VOUCHED, /* stored and the lister may read them: accepted, backs the record */
    BLOB_LIST_REFUSED  /* stored and not the lister's to read: evidence_unknown */
} blob_listing_t;

/* May a user list a hash in an evidence item? stored: the blob exists;
 * may_read: blobs_judge_read() said BLOB_READ_OK for them. */
blob_listing_t blobs_judge_listing(int stored, int may_read);

/* Push calls this before a change appends evidence items (fields.evidence of
 * a create, append.evidence of an update), inside its write transaction.
 * items: the pushed array (NULL: nothing); existing: the record's evidence
 * list (NULL for a create): items whose id is in it are not appended and not
 * judged. 0 when every item may be listed; SYNC_EEVIDENCE with err->field
 * "evidence[k].sha256" naming the first refused item; SYNC_EIO when the store
 * cannot be read. Nothing is written. */
int blobs_evidence_check(sync_t *s, MDB_txn *txn, const sync_principal_t *p, const cJSON *items,
                         const cJSON *existing, sync_error_t *err);

/* Push calls this with the evidence items it did append to record_id (after
 * a passing blobs_evidence_check), in the same transaction: each listing is
 * recorded with whether its bytes were stored (then it was vouched for).
 * 0, or a SYNC_E* code that must abort the transaction. */
int blobs_evidence_listed(sync_t *s, MDB_txn *txn, const sync_principal_t *p, const char *record_id,
                          const cJSON *items);

#endif
