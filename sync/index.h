/* index.h -- the layout of the idx db, shared by index.c (which keeps it up to
 * date on every record change) and query.c (which walks it). Internal to sync/.
 *
 * Keys are  name 0x00 value 0x00 record_id  (index_key in record.h). A value is
 * a string, a number (BE64, so byte order is numeric order) or a composite
 * [unit, string|number] written as unit 0x00 value, so one unit's entries of
 * a name are one contiguous range:
 *
 *   unit, grid, assignee, status, type           string        (city-wide)
 *   u.grid, u.assignee, u.status, u.type         [unit, string]
 *   updated, opened, closed, due,                ms            (city-wide)
 *     accepted, decided, paid, reply_due, callback
 *   u.updated, u.opened, u.closed, u.due,        [unit, ms]
 *     u.accepted, u.decided, u.paid,
 *     u.reply_due, u.callback
 *   sv, u.sv                                     ms, [unit, ms]  督办 orders by issued_at
 *                                                (one entry per distinct time)
 *   u.party                                      [unit, HMAC hex of the party's id]
 *   u.ticket                                     [unit, ticket_no]
 *
 * Counters: "#" name 0x00 value -> BE64 number of records under that string
 * value (equality indexes only), so a query can pick its most selective index
 * without walking any.
 *
 * Times (see record "life" below) are lifecycle times: the device's `at` of
 * the change, clamped by push to the server's receive time.
 *   opened  the create's `at`
 *   closed  when the record entered a terminal status of its procedure
 *           (not void); absent for open and voided records
 *   due     the earliest running deadline (schema_record_due, with the
 *           working-day calendar); absent when none runs (closed, voided,
 *           or no deadline applies)
 *   accepted, decided: the first entry into the state the schema's figures
 *           name (受理: general filed, digital dispatched; decided), kept for
 *           voided records too
 *   paid    the figures' paid_at field (payment.paid_at, at most the
 *           record's updated_at), else the first entry into the paid state
 *   updated the record's updated_at (server time, as the API shows it)
 *   reply_due the hotline platform's deadline (the figures' reply_due field)
 *   replied the reply's time: reply.at, no later than the `at` of the change
 *           that wrote the reply (that `at` when reply.at is absent)
 *   callback the 回访's time, callback.at clamped the same way
 * A record keeps them in rec["life"] = {"opened","closed"?,"due"?,"due_by"?,
 * "accepted"?,"decided"?,"paid"?,"reply_due"?,"replied"?,"callback"?,"entered":{status:ms},"first":{status:ms}}
 * (entered: the latest entry, first: the first, which a 返工 does not move)
 * and its index pairs in rec["ix"], and the index generation it was written
 * under in rec["ixg"].
 */
#ifndef CASESYNC_INDEX_H
#define CASESYNC_INDEX_H

#include "sync/record.h"

#define INDEX_KEY_MAX 511 /* LMDB's default key limit */
#define INDEX_COUNT_MARK '#'

/* The party's index value: hex HMAC-SHA256 under the store's cursor key of
 * "id_no:<id_no>" (or "uscc:<uscc>" when there is no id_no), so party ids
 * never appear in index keys and cannot be found by hashing guessed ids
 * without the key. 0, or -1 when the party has neither. */
int index_party_key(sync_t *s, const cJSON *party, char out[65]);

/* Makes the indexes match the code's layout, the loaded schema and its
 * working-day calendar: when the store was indexed under another layout,
 * schema or calendar (an upgrade, a city changed its deadline days, an
 * operator added next year's calendar file), re-indexes every record in
 * batches of write jobs, once; concurrent callers wait for it. A read-only
 * engine (the command line) never rebuilds and reads what is there. */
int index_ensure(sync_t *s, sync_error_t *err);

/* The counter key of an equality value: "#" name 0x00 value. Its length, 0
 * when it does not fit in cap. */
size_t index_count_key(unsigned char *buf, size_t cap, const char *name, const cJSON *value);

/* Number of records under name = value (0 when none). */
uint64_t index_count(MDB_txn *txn, const store_dbs_t *dbs, const char *name, const cJSON *value);

/* Reads a lifecycle time of a stored record ("opened", "closed", "due");
 * 0 and *ms set, or -1 when the record has none. */
int index_life_time(const cJSON *rec, const char *name, int64_t *ms);

/* The value of a dotted field path ("payment.paid_at") in a record's
 * fields, or NULL. */
const cJSON *index_field_value(const cJSON *fields, const char *dotted);

#endif
