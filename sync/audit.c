/* audit.c -- the append-only, SHA-256 hash-chained log of accepted changes.
 *
 * hash = SHA-256(prev_hash as 64 hex digits || bytes(entry without "hash")).
 * The bytes depend on the store format (docs/audit.md):
 * - v2 (store_format 2): RFC 8785 canonical JSON (sync/jcs.c), which anyone
 *   can recompute (tools/verify_audit.py does, in Python);
 * - v1 (earlier stores): cJSON 1.7's compact print of the entry with its
 *   members in the order they were built. Kept only to verify old entries.
 * A migrated store holds its v1 entries below meta "audit_canonical_from",
 * where a "store_format" entry starts the canonical chain on the old head.
 * The stored entry is the hashed text with "hash" added as its last member.
 * The writer thread is the only appender, so the chain is sequential; its
 * head lives in meta "chain_head".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "sync/jcs.h"
#include "sync/record.h"

#define GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

/* The chain hash of text after prev into out. 0, or SYNC_ENOMEM when OpenSSL
 * could not make a digest (out is then no hash at all: ""). */
static int chain_hash(const char *prev, const char *text, size_t len, char out[65]) {
    unsigned char md[32];
    unsigned int n = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(c, prev, 64) == 1 &&
             EVP_DigestUpdate(c, text, len) == 1 && EVP_DigestFinal_ex(c, md, &n) == 1 && n == 32;
    EVP_MD_CTX_free(c);
    out[0] = 0;
    if (!ok) return SYNC_ENOMEM;
    util_hex(md, 32, out);
    return 0;
}

/* The bytes an entry (without "hash") is hashed over in the given format:
 * malloc'd into *text. 0, SYNC_ENOMEM, or SYNC_EINVALID (a number JSON
 * cannot hold). */
static int entry_bytes(const cJSON *e, int canonical, char **text, size_t *len) {
    if (canonical) {
        int rc = jcs_print(e, text, len);
        return rc == JCS_OK ? 0 : rc == JCS_ENOMEM ? SYNC_ENOMEM : SYNC_EINVALID;
    }
    *text = cJSON_PrintUnformatted(e);
    *len = *text ? strlen(*text) : 0;
    return *text ? 0 : SYNC_ENOMEM;
}

static void chain_head(MDB_txn *txn, const store_dbs_t *dbs, char out[65]) {
    MDB_val k = {10, "chain_head"}, v;
    if (mdb_get(txn, dbs->meta, &k, &v) == 0 && v.mv_size == 64) {
        memcpy(out, v.mv_data, 64);
        out[64] = 0;
    } else {
        memcpy(out, GENESIS, 65);
    }
}

int audit_writes_v1(void) { return store_writes_v1(); }

int audit_append(MDB_txn *txn, const store_dbs_t *dbs, uint64_t seq, const char *record_id, cJSON *entry) {
    char prev[65], hash[65];
    char *text = NULL;
    size_t n = 0;
    int rc;
    chain_head(txn, dbs, prev);
    cJSON_DeleteItemFromObjectCaseSensitive(entry, "prev_hash");
    cJSON_DeleteItemFromObjectCaseSensitive(entry, "hash");
    if (!cJSON_AddStringToObject(entry, "prev_hash", prev)) return SYNC_ENOMEM;
    if ((rc = entry_bytes(entry, !audit_writes_v1(), &text, &n)) != 0) return rc;
    if (chain_hash(prev, text, n, hash) != 0) {
        free(text);
        return SYNC_ENOMEM;
    }
    /* The stored entry is the hashed text with "hash" as its last member. */
    static const char tail[] = ",\"hash\":\"";
    char *stored = n >= 2 && text[n - 1] == '}' ? realloc(text, n + sizeof tail - 1 + 64 + 2) : NULL;
    if (!stored) {
        free(text);
        return SYNC_ENOMEM;
    }
    size_t o = n - 1;
    memcpy(stored + o, tail, sizeof tail - 1);
    o += sizeof tail - 1;
    memcpy(stored + o, hash, 64);
    o += 64;
    stored[o++] = '"';
    stored[o++] = '}';
    unsigned char k[8];
    store_be64(k, seq);
    rc = store_put_raw(txn, dbs->log, k, 8, stored, o);
    free(stored);
    if (rc != 0) return rc;
    cJSON_AddStringToObject(entry, "hash", hash);
    if ((rc = store_put_raw(txn, dbs->meta, "chain_head", 10, hash, 64)) != 0) return rc;
    if (record_id) {
        unsigned char rk[128];
        size_t n = strlen(record_id);
        if (n > sizeof rk - 9) return SYNC_EIO;
        memcpy(rk, record_id, n);
        rk[n] = 0;
        store_be64(rk + n + 1, seq);
        if ((rc = store_put_raw(txn, dbs->record_log, rk, n + 9, "", 0)) != 0) return rc;
    }
    return 0;
}

/* The first seq hashed canonically: 0 for a v2 store that never held v1
 * entries, UINT64_MAX for a v1 store (no store_format in meta). */
static uint64_t canonical_from(MDB_txn *txn, const store_dbs_t *dbs) {
    if (store_meta_u64(txn, dbs, "store_format") < 2) return UINT64_MAX;
    return store_meta_u64(txn, dbs, "audit_canonical_from");
}

int audit_verify(MDB_txn *txn, const store_dbs_t *dbs, int *ok, uint64_t *entries, char head[65],
                 char *why, size_t whylen) {
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    char prev[65], hash[65], stored_head[65];
    uint64_t last_seq = 0, from = canonical_from(txn, dbs);
    int rc;
    *ok = 1;
    *entries = 0;
    why[0] = 0;
    memcpy(prev, GENESIS, 65);
    if (mdb_cursor_open(txn, dbs->log, &cur) != 0) return SYNC_EIO;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t seq = k.mv_size == 8 ? store_rd64(k.mv_data) : 0;
        uint64_t failed = util_json_failures();
        int oom = 0;
        cJSON *e = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        const char *h = e ? util_json_str(e, "hash") : NULL;
        const char *p = e ? util_json_str(e, "prev_hash") : NULL;
        const char *op = e ? util_json_str(e, "op") : NULL;
        int good = 0;
        /* The canonical chain of a migrated store starts with its marker. */
        int placed = seq != from || (op && strcmp(op, "store_format") == 0);
        if (h && p && placed && strlen(h) == 64 && strcmp(p, prev) == 0 && seq > last_seq) {
            char hcopy[65], *text = NULL;
            size_t n = 0;
            memcpy(hcopy, h, 65);
            cJSON_DeleteItemFromObjectCaseSensitive(e, "hash");
            int brc = entry_bytes(e, seq >= from, &text, &n);
            if (brc == 0) {
                oom = chain_hash(prev, text, n, hash) != 0;
                good = strcmp(hash, hcopy) == 0;
                free(text);
            } else {
                oom = brc == SYNC_ENOMEM;
            }
            if (good) memcpy(prev, hcopy, 65);
        }
        cJSON_Delete(e);
        if (oom || util_json_failures() != failed) {
            /* Out of memory is no broken chain: no verdict at all. */
            mdb_cursor_close(cur);
            return SYNC_ENOMEM;
        }
        (*entries)++;
        if (!good) {
            *ok = 0;
            snprintf(why, whylen, "entry seq %llu does not verify", (unsigned long long)seq);
            break;
        }
        last_seq = seq;
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND) return SYNC_EIO;
    chain_head(txn, dbs, stored_head);
    if (*ok && strcmp(stored_head, prev) != 0) {
        *ok = 0;
        snprintf(why, whylen, "chain head does not match the last entry");
    }
    memcpy(head, prev, 65);
    return 0;
}

int audit_export(MDB_txn *txn, const store_dbs_t *dbs, int (*write)(void *ctx, const char *data, size_t len),
                 void *ctx) {
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc;
    if (mdb_cursor_open(txn, dbs->log, &cur) != 0) return SYNC_EIO;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        /* Stored entries are compact JSON: no raw newline inside. */
        if (memchr(v.mv_data, '\n', v.mv_size) || write(ctx, v.mv_data, v.mv_size) != 0 || write(ctx, "\n", 1) != 0) {
            mdb_cursor_close(cur);
            return SYNC_EIO;
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : SYNC_EIO;
}
