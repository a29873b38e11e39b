/* blobs.h -- what the other modules of sync/ use of blobs.c: the walk over
 * evidence whose bytes are overdue. Internal to sync/. */
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

#endif
