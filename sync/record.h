/* record.h -- the stored case record: scope feeds, visibility, views, audit.
 *
 * A record is stored in the `records` db in the store's binary form
 * (sync/valcodec.h, MessagePack) of this JSON object:
 *   {"id","type","procedure","version","seq","status","voided","fields":{...},
 *    "created_at","created_by","created_device","updated_at","conflicts":[ids],
 *    "closed_at":ms?, "scope_seq":n,
 *    "fm":{field:[version,seq,device,at_ms]},   per-field meta ("status" too)
 *    "im":{field:{item_id:seq}},                 per-item seq of append lists
 *    "feeds":{feed_key:[seq,left]}}              its entries in the feeds db
 * Feed keys name scopes: "g:<unit>:<grid>", "u:<unit>", "a:<assignee>",
 * "c:<creator>" and "*" (everything, for admins). Each feed holds at most one
 * entry per record, at the seq of its latest change; a record that leaves a
 * feed gets a "left" entry there at the seq it left.
 */
#ifndef CASESYNC_RECORD_H
#define CASESYNC_RECORD_H

#include "sync/engine.h"

#define FEED_KEY_MAX 160
#define FEEDS_MAX 72 /* feeds one user or record can have */

typedef struct feed_set {
    int n;
    char key[FEEDS_MAX][FEED_KEY_MAX];
} feed_set_t;

/* The feeds a record belongs to now. */
void record_feeds(const cJSON *rec, feed_set_t *out);
/* The feeds a user with this role/unit/grids reads. */
void user_feeds(const char *user_id, schema_role_t role, const char *unit, const cJSON *grids,
                feed_set_t *out);
int feed_set_has(const feed_set_t *fs, const char *key);

/* Does the user see the record now? window: also apply the sync window of
 * auxiliaries and officers (closed records leave after window_ms). */
int record_visible(const cJSON *user, const cJSON *rec, int64_t now_ms, int64_t window_ms, int window);

/* Writes the record under its id and moves its feed entries to `seq`
 * (entering, staying, leaving). Sets scope_seq when it enters a feed. Also
 * maintains the closed index. Called inside a write txn. */
int record_store(sync_t *s, MDB_txn *txn, cJSON *rec, uint64_t seq, int64_t prev_closed_at);

/* case_no: UNIT-YYYY-NNNNNN, numbered per unit and year (China time) of
 * now_ms, never reused. Does nothing when the record has one (*assigned
 * NULL); else *assigned is the new value, owned by rec. 0 or SYNC_EIO. */
int record_assign_case_no(MDB_txn *txn, const store_dbs_t *dbs, cJSON *rec, int64_t now_ms, cJSON **assigned);

/* The record as the schema's judges read it (borrowed from rec): procedure,
 * status, voided, fields, and the server time it entered its status
 * ("status_at"; older records: the status's field meta time). */
schema_view_t record_view(const cJSON *rec, int64_t now_ms);

/* Puts the record under id in its stored form (store_put_json: sync/valcodec.h), without
 * touching feeds or indexes. 0, SYNC_ENOMEM or a storage code. */
int record_put(MDB_txn *txn, const store_dbs_t *dbs, const char *id, const cJSON *rec);
/* Loads a record; SYNC_ENOTFOUND when absent, SYNC_EIO when it does not decode. */
int record_load(MDB_txn *txn, const store_dbs_t *dbs, const char *id, cJSON **out);

/* The public record (PROTOCOL §3), a new object. */
cJSON *record_public(const cJSON *rec);
/* A pull upsert item: full, or only what changed after `since` (fields whose
 * meta seq is newer, and append items newer under "appended"). */
cJSON *record_upsert_item(const cJSON *rec, int full, uint64_t since);
/* The same, moving what it needs out of rec instead of copying: rec is
 * left partial and is only fit to be deleted. */
cJSON *record_upsert_item_take(cJSON *rec, int full, uint64_t since);

/* Masks the personal data in item["fields"] (a public record or a pull item
 * made from rec) for a reader (schema_mask_fields); p NULL (the local
 * operator) sees everything. */
void record_mask(const schema_t *schema, cJSON *item, const cJSON *rec, schema_role_t role, const char *unit);
/* The same, given the record's unit (rec_unit may be NULL: no unit). */
void record_mask_unit(const schema_t *schema, cJSON *item, const char *rec_unit, schema_role_t role, const char *unit);

/* Per-field meta access. */
int64_t record_meta_version(const cJSON *rec, const char *field);
const char *record_meta_device(const cJSON *rec, const char *field);
int64_t record_meta_at(const cJSON *rec, const char *field);
void record_set_meta(cJSON *rec, const char *field, int64_t version, uint64_t seq, const char *device,
                     int64_t at_ms);
/* Records that an append item arrived at seq. */
void record_set_item_seq(cJSON *rec, const char *field, const char *item_id, uint64_t seq);

/* ---- secondary indexes (index.c) ---- */

/* Brings the record's entries in the idx and evidence dbs up to date after a
 * change. The record lists its idx entries in rec["ix"] as [name, value]
 * pairs (value a string, or a number stored as BE64), so the next call
 * removes exactly the stale ones. Called by record_store(). */
int index_record(sync_t *s, MDB_txn *txn, cJSON *rec);
/* Builds an idx key: name 0x00 value 0x00 id (id may be NULL: a prefix).
 * Returns its length, 0 when it does not fit in cap. */
size_t index_key(unsigned char *buf, size_t cap, const char *name, const cJSON *value, const char *id);

/* ---- audit (audit.c) ---- */

/* Appends an entry to the hash-chained log under `seq` and to record_log.
 * entry is completed with prev_hash and hash (ownership stays with caller). */
int audit_append(MDB_txn *txn, const store_dbs_t *dbs, uint64_t seq, const char *record_id, cJSON *entry);
/* Recomputes the chain. Fills ok, entries and head. */
int audit_verify(MDB_txn *txn, const store_dbs_t *dbs, int *ok, uint64_t *entries, char head[65],
                 char *why, size_t whylen);
/* Writes every stored entry, in seq order, as one line of NDJSON (the stored
 * bytes and "\n"). 0, SYNC_EIO (a read, or write() answered non-zero). */
int audit_export(MDB_txn *txn, const store_dbs_t *dbs, int (*write)(void *ctx, const char *data, size_t len),
                 void *ctx);
/* 1 when this process writes format v1 entries (test builds only, for the
 * migration tests: CASESYNC_TEST_STORE_V1=1); release builds always 0. */
int audit_writes_v1(void);

#endif
