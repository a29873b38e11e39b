/* push.c -- POST /v1/sync/push: changesets, idempotency, per-field merge,
 * lifecycle transitions, conflicts and the rejection quarantine.
 *
 * The request thread checks the whole body (JSON types, value rules that need
 * no stored state) before anything is queued; the writer then applies the
 * changeset in one nested transaction of a group commit. A change that breaks
 * a rule is rejected alone and kept in quarantine; only a body that is broken
 * as a whole (types, envelope) is refused and applies nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <stdarg.h>

#include <openssl/evp.h>

#include "sync/blobs.h"
#include "sync/merge.h"
#include "sync/record.h"

enum { OP_CREATE, OP_UPDATE, OP_TRANSITION, OP_VOID, OP_CORRECT };

typedef struct prep {
    const cJSON *change; /* points into the request body */
    int op;
    const char *record_id;
    int64_t base_version;
    int64_t at_ms; /* clamped to the receive time */
    /* A value error found before the writer: the change is rejected. */
    const char *err_code;
    char err_msg[256];
    char err_field[256];
} prep_t;

typedef struct push_job {
    sync_t *s;
    const sync_principal_t *p;
    const cJSON *body;
    char body_hash[3 + 65]; /* BODY_HASH_TAG and the hex digest */
    int64_t cs_seq;         /* 0: a server-side batch (sync_apply_changes): no changeset */
    int64_t recv_ms;
    int n;
    prep_t *ch;
    /* results */
    uint64_t tally[4]; /* applied, merged, conflict, rejected */
    char *answer;
    int replay;
    sync_error_t *err;
} push_job_t;

typedef struct apply {
    MDB_txn *txn;
    push_job_t *job;
    int idx;
    prep_t *pc;
    cJSON *result;
} apply_t;

/* ---- the idempotency hash -------------------------------------------------------
 *
 * "Same body" means the same JSON after parsing (whitespace and gzip do not
 * matter). The hash walks the parsed tree: type tags, string lengths and
 * bytes, numbers as their 8 bytes; no printing (a changeset of 50 cases
 * printed again cost as much as storing one of them). Stored hashes carry
 * BODY_HASH_TAG; an untagged one is a SHA-256 of cJSON's compact print, kept
 * by stores written before, and compared that way.
 */
#define BODY_HASH_TAG "t1:"

typedef struct tree_hash {
    EVP_MD_CTX *md;
    unsigned char buf[4096];
    size_t n;
} tree_hash_t;

static void th_put(tree_hash_t *h, const void *p, size_t len) {
    const unsigned char *b = p;
    while (len > 0) {
        if (h->n == sizeof h->buf) {
            EVP_DigestUpdate(h->md, h->buf, h->n);
            h->n = 0;
        }
        size_t k = sizeof h->buf - h->n < len ? sizeof h->buf - h->n : len;
        memcpy(h->buf + h->n, b, k);
        h->n += k;
        b += k;
        len -= k;
    }
}

static void th_str(tree_hash_t *h, char tag, const char *s) {
    uint64_t len = s ? strlen(s) : 0;
    th_put(h, &tag, 1);
    th_put(h, &len, sizeof len);
    th_put(h, s, len);
}

static void th_node(tree_hash_t *h, const cJSON *x) {
    const cJSON *c;
    if (cJSON_IsObject(x)) {
        th_put(h, "{", 1);
        cJSON_ArrayForEach(c, x) {
            th_str(h, 'k', c->string);
            th_node(h, c);
        }
        th_put(h, "}", 1);
    } else if (cJSON_IsArray(x)) {
        th_put(h, "[", 1);
        cJSON_ArrayForEach(c, x) th_node(h, c);
        th_put(h, "]", 1);
    } else if (cJSON_IsString(x)) {
        th_str(h, 's', x->valuestring);
    } else if (cJSON_IsNumber(x)) {
        double d = x->valuedouble;
        th_put(h, "d", 1);
        th_put(h, &d, sizeof d);
    } else {
        th_put(h, cJSON_IsTrue(x) ? "t" : cJSON_IsFalse(x) ? "f" : "n", 1);
    }
}

/* BODY_HASH_TAG and the hex SHA-256 of the tree; 0, or -1 without a digest. */
static int body_tree_hash(const cJSON *body, char out[3 + 65]) {
    tree_hash_t *h = malloc(sizeof *h);
    unsigned char md[32];
    unsigned int mdlen = 0;
    int ok = h && (h->md = EVP_MD_CTX_new()) && EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) == 1;
    if (ok) {
        h->n = 0;
        th_node(h, body);
        ok = EVP_DigestUpdate(h->md, h->buf, h->n) == 1 && EVP_DigestFinal_ex(h->md, md, &mdlen) == 1;
    }
    if (h) EVP_MD_CTX_free(h->md);
    free(h);
    if (!ok) return -1;
    memcpy(out, BODY_HASH_TAG, 3);
    util_hex(md, 32, out + 3);
    return 0;
}

/* Is `stored` (a changeset's kept hash) the hash of this body? */
static int body_hash_matches(const push_job_t *job, const char *stored) {
    if (!stored) return 0;
    if (strncmp(stored, BODY_HASH_TAG, 3) == 0) return strcmp(stored, job->body_hash) == 0;
    char *canon = cJSON_PrintUnformatted(job->body), legacy[65];
    if (!canon) return 0;
    util_sha256_hex(canon, strlen(canon), legacy);
    free(canon);
    return strcmp(stored, legacy) == 0;
}

/* ---- helpers -------------------------------------------------------------------- */

static const char *schema_code_name(int code) {
    switch (code) {
    case SCHEMA_E_ROLE: return "role_forbidden";
    case SCHEMA_E_TRANSITION: return "forbidden_transition";
    case SCHEMA_E_FORBIDDEN: return "field_forbidden";
    case SCHEMA_E_FROZEN: return "field_frozen";
    default: return "validation_failed";
    }
}

static void prep_fail(prep_t *pc, int idx, const char *code, const char *path, const char *msg) {
    pc->err_code = code;
    snprintf(pc->err_msg, sizeof pc->err_msg, "%s", msg);
    if (path && *path)
        snprintf(pc->err_field, sizeof pc->err_field, "changes[%d].%s", idx, path);
    else
        snprintf(pc->err_field, sizeof pc->err_field, "changes[%d]", idx);
}

static int64_t version_of(const cJSON *rec) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, "version");
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

/* Allocates the next global seq (one per record change). */
static uint64_t next_seq(apply_t *a) {
    const store_dbs_t *dbs = a->job->s->dbs;
    return store_meta_next(a->txn, dbs, "seq");
}

static cJSON *audit_entry(apply_t *a, uint64_t seq, const char *record_id, const char *op) {
    char at[32], recv[32];
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "seq", (double)seq);
    cJSON_AddStringToObject(e, "at", util_fmt_time(a->pc ? a->pc->at_ms : a->job->recv_ms, at));
    cJSON_AddStringToObject(e, "received_at", util_fmt_time(a->job->recv_ms, recv));
    cJSON_AddStringToObject(e, "user_id", a->job->p->user_id);
    cJSON_AddStringToObject(e, "device_id", a->job->p->device_id);
    cJSON_AddNumberToObject(e, "changeset_seq", (double)a->job->cs_seq);
    cJSON_AddStringToObject(e, "record_id", record_id);
    cJSON_AddStringToObject(e, "op", op);
    return e;
}

static void audit_field(cJSON *fields, const char *name, const cJSON *old, const cJSON *new_) {
    cJSON *f = cJSON_CreateObject();
    util_json_add(f, "old", old ? cJSON_Duplicate(old, 1) : cJSON_CreateNull());
    util_json_add(f, "new", new_ ? cJSON_Duplicate(new_, 1) : cJSON_CreateNull());
    util_json_set(fields, name, f);
}

/* The create's fields: the new values are the record's own (printed with the
 * entry while the record lives), not copies. */
static void audit_field_new(cJSON *fields, const char *name, cJSON *value) {
    cJSON *f = cJSON_CreateObject();
    util_json_add(f, "old", cJSON_CreateNull());
    util_json_add_ref(f, "new", value);
    util_json_set(fields, name, f);
}

/* Puts a rejected change into quarantine and fills its result. */
static int reject(apply_t *a, int64_t version, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int reject(apply_t *a, int64_t version, const char *code, const char *field, const char *fmt, ...) {
    const store_dbs_t *dbs = a->job->s->dbs;
    char msg[256], at[32], id[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    uint64_t n = store_meta_next(a->txn, dbs, "rejection_id");
    if (!n) return SYNC_EIO;
    snprintf(id, sizeof id, "r-%llu", (unsigned long long)n);
    cJSON *err = cJSON_CreateObject();
    cJSON_AddStringToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", msg);
    if (field && *field) cJSON_AddStringToObject(err, "field", field);

    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "id", id);
    cJSON_AddStringToObject(q, "record_id", a->pc->record_id ? a->pc->record_id : "");
    cJSON_AddStringToObject(q, "user_id", a->job->p->user_id);
    cJSON_AddStringToObject(q, "unit", a->job->p->unit);
    cJSON_AddStringToObject(q, "device_id", a->job->p->device_id);
    cJSON_AddNumberToObject(q, "changeset_seq", (double)a->job->cs_seq);
    cJSON_AddNumberToObject(q, "index", a->idx);
    util_json_add(q, "change", cJSON_Duplicate(a->pc->change, 1));
    util_json_add(q, "error", cJSON_Duplicate(err, 1));
    cJSON_AddStringToObject(q, "at", util_fmt_time(a->job->recv_ms, at));
    unsigned char k[8];
    store_be64(k, n);
    int rc = store_put_json(a->txn, dbs->rejections, k, 8, q);
    cJSON_Delete(q);

    cJSON_AddStringToObject(a->result, "status", "rejected");
    cJSON_AddNumberToObject(a->result, "version", (double)version);
    util_json_add(a->result, "error", err);
    return rc;
}

/* Opens a conflict object; returns its id in idbuf. */
static int conflict_new(apply_t *a, const cJSON *rec, uint64_t seq, const char *field, const char *kind,
                        int open, const char *kept, const cJSON *server_value, const cJSON *client_value,
                        char idbuf[32]) {
    const store_dbs_t *dbs = a->job->s->dbs;
    char at[32];
    uint64_t n = store_meta_next(a->txn, dbs, "conflict_id");
    if (!n) return SYNC_EIO;
    snprintf(idbuf, 32, "c-%llu", (unsigned long long)n);
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "id", idbuf);
    cJSON_AddStringToObject(c, "record_id", util_json_str(rec, "id"));
    cJSON_AddStringToObject(c, "unit", util_json_str(fields, "unit") ? util_json_str(fields, "unit") : "");
    cJSON_AddStringToObject(c, "field", field);
    cJSON_AddStringToObject(c, "kind", kind);
    cJSON_AddStringToObject(c, "state", open ? "open" : "resolved");
    cJSON_AddStringToObject(c, "kept", kept);
    util_json_add(c, "server_value", server_value ? cJSON_Duplicate(server_value, 1) : cJSON_CreateNull());
    util_json_add(c, "client_value", client_value ? cJSON_Duplicate(client_value, 1) : cJSON_CreateNull());
    cJSON_AddStringToObject(c, "server_device_id", record_meta_device(rec, field));
    cJSON_AddStringToObject(c, "device_id", a->job->p->device_id);
    cJSON_AddStringToObject(c, "user_id", a->job->p->user_id);
    cJSON_AddNumberToObject(c, "changeset_seq", (double)a->job->cs_seq);
    cJSON_AddNumberToObject(c, "seq", (double)seq);
    cJSON_AddStringToObject(c, "created_at", util_fmt_time(a->job->recv_ms, at));
    if (!open) cJSON_AddStringToObject(c, "resolved_at", at);
    int rc = store_put_json(a->txn, dbs->conflicts, idbuf, strlen(idbuf), c);
    cJSON_Delete(c);
    return rc;
}

static void result_conflict(cJSON *list, const char *id, const char *field, const char *kept) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "field", field);
    cJSON_AddStringToObject(o, "kept", kept);
    util_json_push(list, o);
}

/* Stamps the record with its new seq (and version when it changed) and stores it. */
static int commit_record(apply_t *a, cJSON *rec, uint64_t seq, int64_t version, int64_t prev_closed) {
    char at[32];
    util_json_set(rec, "seq", cJSON_CreateNumber((double)seq));
    util_json_set(rec, "version", cJSON_CreateNumber((double)version));
    util_json_set(rec, "updated_at", cJSON_CreateString(util_fmt_time(a->job->recv_ms, at)));
    return record_store(a->job->s, a->txn, rec, seq, prev_closed);
}

static int64_t closed_at_of(const cJSON *rec) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(rec, "closed_at");
    return cJSON_IsNumber(c) ? (int64_t)c->valuedouble : 0;
}

/* Gives the record its case number (record_assign_case_no) and audits it. */
static int assign_case_no(apply_t *a, cJSON *rec, cJSON *audit_fields) {
    cJSON *v = NULL;
    int rc = record_assign_case_no(a->txn, a->job->s->dbs, rec, a->job->recv_ms, &v);
    if (rc == 0 && v) audit_field(audit_fields, "case_no", NULL, v);
    return rc;
}

/* Server-set members of appended items, as the schema lists them ("server":
 * true): a user member gets the writer (a note's author, a 督办's issuer), a
 * time member the change's time (clamped to the receive time), a string member
 * the writing device; a "received" member (a 督办 reply's received_at) the
 * server's receive time, so both times of an answer written offline stay. */
static cJSON *stamp_item(apply_t *a, const char *field, const cJSON *item) {
    cJSON *copy = cJSON_Duplicate(item, 1);
    const char *names[8], *types[8];
    char at[32];
    int n = schema_item_server_members(a->job->s->schema, field, names, types, 8);
    for (int i = 0; copy && i < n; i++) {
        const char *v = strcmp(types[i], "user") == 0       ? a->job->p->user_id
                        : strcmp(types[i], "time") == 0     ? util_fmt_time(a->pc->at_ms, at)
                        : strcmp(types[i], "received") == 0 ? util_fmt_time(a->job->recv_ms, at)
                                                            : a->job->p->device_id;
        util_json_set(copy, names[i], cJSON_CreateString(v));
    }
    return copy;
}

/* ---- the write rules: the schema judges, the store answers who users are ---------- */

typedef struct lookup_ctx {
    MDB_txn *txn;
    const store_dbs_t *dbs;
} lookup_ctx_t;

static int user_lookup(void *ctx, const char *user_id, schema_user_info_t *out) {
    lookup_ctx_t *l = ctx;
    cJSON *u = NULL;
    if (store_get_json(l->txn, l->dbs->users, user_id, strlen(user_id), &u) != 0) return -1;
    const char *unit = util_json_str(u, "unit");
    out->active = !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(u, "disabled"));
    out->role = util_user_role(u);
    snprintf(out->unit, sizeof out->unit, "%s", unit ? unit : "");
    cJSON_Delete(u);
    return 0;
}

/* Runs schema_judge_writes for the change; 1 when it was rejected (result
 * filled), 0 when it may go on, or an error. */
static int judge_writes(apply_t *a, const schema_view_t *view, int64_t version) {
    const sync_principal_t *p = a->job->p;
    lookup_ctx_t l = {.txn = a->txn, .dbs = a->job->s->dbs};
    schema_writer_t w = {.role = p->role,
                         .unit = p->unit,
                         .grids = cJSON_GetObjectItemCaseSensitive(p->user, "grids"),
                         .lookup = user_lookup,
                         .lookup_ctx = &l};
    schema_err_t e = {0};
    char path[300];
    if (schema_judge_writes(a->job->s->schema, a->pc->change, view, &w, &e) == WRITE_OK) return 0;
    snprintf(path, sizeof path, "changes[%d]%s%s", a->idx, e.path[0] ? "." : "", e.path);
    int rc = reject(a, version, schema_code_name(e.code), path, "%s", e.message);
    return rc ? rc : 1;
}

/* Sets the fields the transition stamps (served_at) to the change's time. */
static void stamp_fields(apply_t *a, cJSON *rec, const cJSON *stamps, cJSON *audit_fields, int64_t version,
                         uint64_t seq) {
    cJSON *fields = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    const cJSON *f;
    char at[32];
    util_fmt_time(a->pc->at_ms, at);
    cJSON_ArrayForEach(f, stamps) {
        cJSON *v = cJSON_CreateString(at);
        audit_field(audit_fields, f->valuestring, cJSON_GetObjectItemCaseSensitive(fields, f->valuestring),
                    v);
        util_json_set(fields, f->valuestring, v);
        record_set_meta(rec, f->valuestring, version, seq, a->job->p->device_id, a->pc->at_ms);
    }
}

/* Evidence items may list only bytes the pusher may read, or bytes not stored
 * yet (sync/blobs.c). where: "fields" or "append". 1 when the change was
 * rejected (result filled), 0 to go on, or an error. */
static int evidence_gate(apply_t *a, const cJSON *items, const cJSON *existing, const char *where,
                         int64_t version) {
    sync_error_t e = {0};
    char path[320];
    int rc = blobs_evidence_check(a->job->s, a->txn, a->job->p, items, existing, &e);
    if (rc != SYNC_EEVIDENCE) return rc;
    snprintf(path, sizeof path, "changes[%d].%s.%s", a->idx, where, e.field);
    rc = reject(a, version, "evidence_unknown", path, "%s", e.message);
    return rc ? rc : 1;
}

/* ---- create ---------------------------------------------------------------------- */

static int apply_create(apply_t *a) {
    sync_t *s = a->job->s;
    const sync_principal_t *p = a->job->p;
    const cJSON *ch = a->pc->change;
    const cJSON *fields_in = cJSON_GetObjectItemCaseSensitive(ch, "fields");
    const char *type = util_json_str(ch, "type");
    const char *procedure = util_json_str(fields_in, "procedure");
    const char *unit = util_json_str(fields_in, "unit");
    cJSON *rec = NULL;
    char path[64];
    int rc;

    rc = record_load(a->txn, s->dbs, a->pc->record_id, &rec);
    if (rc == 0) {
        /* Someone else's case tells nothing of itself beyond its existence. */
        int64_t v =
            record_visible(p->user, rec, a->job->recv_ms, (int64_t)s->cfg.sync_window_days * 86400000, 1)
                ? version_of(rec)
                : 0;
        cJSON_Delete(rec);
        snprintf(path, sizeof path, "changes[%d].record_id", a->idx);
        return reject(a, v, "validation_failed", path, "record %s already exists", a->pc->record_id);
    }
    if (rc != SYNC_ENOTFOUND) return rc;
    if (!schema_may_create(s->schema, procedure, p->role))
        return reject(a, 0, "role_forbidden", "", "role %s may not open a %s case", schema_role_name(p->role),
                      procedure);
    schema_view_t view = {.procedure = procedure, .now_ms = a->pc->at_ms};
    (void)unit;
    if ((rc = judge_writes(a, &view, 0)) != 0) return rc > 0 ? 0 : rc;
    if ((rc = evidence_gate(a, cJSON_GetObjectItemCaseSensitive(fields_in, "evidence"), NULL, "fields", 0)))
        return rc > 0 ? 0 : rc;

    uint64_t seq = next_seq(a);
    if (!seq) return SYNC_EIO;
    char now[32];
    util_fmt_time(a->job->recv_ms, now);
    rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "id", a->pc->record_id);
    cJSON_AddStringToObject(rec, "type", type);
    cJSON_AddStringToObject(rec, "procedure", procedure);
    cJSON_AddNumberToObject(rec, "version", 1);
    cJSON_AddNumberToObject(rec, "seq", (double)seq);
    cJSON_AddStringToObject(rec, "status", schema_initial_status(s->schema, procedure));
    cJSON_AddBoolToObject(rec, "voided", 0);
    cJSON *fields = cJSON_AddObjectToObject(rec, "fields");
    cJSON_AddStringToObject(rec, "created_at", now);
    cJSON_AddStringToObject(rec, "created_by", p->user_id);
    cJSON_AddStringToObject(rec, "created_device", p->device_id);
    cJSON_AddStringToObject(rec, "updated_at", now);
    cJSON_AddArrayToObject(rec, "conflicts");
    cJSON_AddNumberToObject(rec, "scope_seq", (double)seq);
    cJSON_AddNumberToObject(rec, "status_at", (double)a->job->recv_ms);

    cJSON *entry = audit_entry(a, seq, a->pc->record_id, "create");
    cJSON *af = cJSON_AddObjectToObject(entry, "fields");
    const cJSON *f;
    cJSON_ArrayForEach(f, fields_in) {
        cJSON *v;
        if (schema_field_policy(s->schema, f->string) == POLICY_APPEND) {
            v = cJSON_CreateArray();
            const cJSON *it;
            cJSON_ArrayForEach(it, f) {
                util_json_push(v, stamp_item(a, f->string, it));
                record_set_item_seq(rec, f->string, util_json_str(it, "id"), seq);
            }
        } else {
            v = cJSON_Duplicate(f, 1);
        }
        if (util_json_add(fields, f->string, v) != 0) continue; /* v freed; the job is discarded */
        record_set_meta(rec, f->string, 1, seq, p->device_id, a->pc->at_ms);
        audit_field_new(af, f->string, v);
    }
    if (!util_json_str(fields, "category")) {
        cJSON *c = cJSON_CreateString(schema_type_code(s->schema, type));
        if (util_json_add(fields, "category", c) == 0) {
            record_set_meta(rec, "category", 1, seq, p->device_id, a->pc->at_ms);
            audit_field_new(af, "category", c);
        }
    }
    audit_field_new(af, "status", cJSON_GetObjectItemCaseSensitive(rec, "status"));
    record_set_meta(rec, "status", 1, seq, p->device_id, a->pc->at_ms);

    rc = blobs_evidence_listed(s, a->txn, p, a->pc->record_id,
                               cJSON_GetObjectItemCaseSensitive(fields, "evidence"));
    if (rc == 0) rc = record_store(s, a->txn, rec, seq, 0);
    if (rc == 0) rc = audit_append(a->txn, s->dbs, seq, a->pc->record_id, entry);
    cJSON_Delete(entry);
    cJSON_Delete(rec);
    if (rc != 0) return rc;
    cJSON_AddStringToObject(a->result, "status", "applied");
    cJSON_AddNumberToObject(a->result, "version", 1);
    return 0;
}

/* Loads the record a change names and checks scope and void. Returns 1 when
 * the change was rejected (result filled), 0 with *out set, or an error. */
static int load_target(apply_t *a, cJSON **out) {
    const cJSON *ch = a->pc->change;
    /* a voided record still takes appended notes and documents (the write rules judge) */
    int append_only = a->pc->op == OP_UPDATE && !cJSON_GetObjectItemCaseSensitive(ch, "set");
    sync_t *s = a->job->s;
    cJSON *rec = NULL;
    char path[64];
    *out = NULL;
    snprintf(path, sizeof path, "changes[%d].record_id", a->idx);
    int rc = record_load(a->txn, s->dbs, a->pc->record_id, &rec);
    if (rc == SYNC_ENOTFOUND) {
        rc = reject(a, 0, "unknown_record", path, "no record %s", a->pc->record_id);
        return rc ? rc : 1;
    }
    if (rc != 0) return rc;
    int64_t window = (int64_t)s->cfg.sync_window_days * 86400000;
    if (!record_visible(a->job->p->user, rec, a->job->recv_ms, window, 1)) {
        cJSON_Delete(rec);
        rc = reject(a, 0, "out_of_scope", path, "record %s is outside your scope", a->pc->record_id);
        return rc ? rc : 1;
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "voided")) && !append_only) {
        int64_t v = version_of(rec);
        cJSON_Delete(rec);
        rc = reject(a, v, "voided", path, "record %s was voided", a->pc->record_id);
        return rc ? rc : 1;
    }
    *out = rec;
    return 0;
}

/* Is the field concurrent: changed after base_version by another device? */
static int concurrent(const cJSON *rec, const char *field, int64_t base, const char *device) {
    merge_meta_t m = {.version = record_meta_version(rec, field), .device = record_meta_device(rec, field)};
    return merge_concurrent(&m, base, device);
}

static void add_conflict_id(cJSON *rec, const char *id) {
    cJSON *list = cJSON_GetObjectItemCaseSensitive(rec, "conflicts");
    if (!list) list = cJSON_AddArrayToObject(rec, "conflicts");
    util_json_push(list, cJSON_CreateString(id));
}

/* ---- update ----------------------------------------------------------------------- */

static int apply_update(apply_t *a) {
    int correction = a->pc->op == OP_CORRECT;
    sync_t *s = a->job->s;
    const char *dev = a->job->p->device_id;
    const cJSON *ch = a->pc->change;
    const cJSON *set = cJSON_GetObjectItemCaseSensitive(ch, "set");
    const cJSON *append = cJSON_GetObjectItemCaseSensitive(ch, "append");
    int64_t base = a->pc->base_version, at = a->pc->at_ms;
    cJSON *rec = NULL, *entry = NULL;
    int rc = load_target(a, &rec);
    if (rc != 0) return rc > 0 ? 0 : rc;
    if ((rc = evidence_gate(
             a, cJSON_GetObjectItemCaseSensitive(append, "evidence"),
             cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rec, "fields"), "evidence"),
             "append", version_of(rec)))) {
        cJSON_Delete(rec);
        return rc > 0 ? 0 : rc;
    }

    int64_t prev_closed = closed_at_of(rec);
    int64_t version = version_of(rec), newv = version + 1;
    schema_view_t view = record_view(rec, at);
    if ((rc = judge_writes(a, &view, version)) != 0) {
        cJSON_Delete(rec);
        return rc > 0 ? 0 : rc;
    }
    uint64_t seq = store_meta_u64(a->txn, s->dbs, "seq") + 1; /* taken only if used */
    cJSON *fields = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    cJSON *decisions = cJSON_CreateArray();
    entry = audit_entry(a, seq, a->pc->record_id, correction ? "correct" : "update");
    if (correction) cJSON_AddStringToObject(entry, "reason", util_json_str(ch, "reason"));
    cJSON *af = cJSON_AddObjectToObject(entry, "fields");
    int changed = 0, merged = 0, conflicted = 0;
    char cid[32];

    const cJSON *f;
    cJSON_ArrayForEach(f, set) {
        const char *name = f->string;
        cJSON *cur = cJSON_GetObjectItemCaseSensitive(fields, name);
        int policy = schema_field_policy(s->schema, name);
        int same = cur ? cJSON_Compare(cur, f, 1) : cJSON_IsNull(f);
        int apply_it = 0;
        cJSON *newval = NULL;
        merge_meta_t meta = {.version = record_meta_version(rec, name),
                             .device = record_meta_device(rec, name),
                             .at_ms = record_meta_at(rec, name)};
        merge_decision_t d = merge_decide((schema_policy_t)policy, &meta, base, dev, at, same);
        switch (d) {
        case MERGE_SKIP: continue;
        case MERGE_APPLY: apply_it = 1; break;
        case MERGE_LWW_CLIENT:
        case MERGE_LWW_SERVER: {
            const char *kept = d == MERGE_LWW_CLIENT ? "client" : "server";
            if ((rc = conflict_new(a, rec, seq, name, "lww", 0, kept, cur, f, cid))) goto done;
            result_conflict(decisions, cid, name, kept);
            merged = 1;
            apply_it = d == MERGE_LWW_CLIENT;
            break;
        }
        case MERGE_UNION: {
            newval = cur && cJSON_IsArray(cur) ? cJSON_Duplicate(cur, 1) : cJSON_CreateArray();
            const cJSON *x;
            cJSON_ArrayForEach(x, f) {
                int have = 0;
                const cJSON *y;
                cJSON_ArrayForEach(y, newval) have |= cJSON_Compare(x, y, 1);
                if (!have) util_json_push(newval, cJSON_Duplicate(x, 1));
            }
            merged = 1;
            apply_it = !cur || !cJSON_Compare(cur, newval, 1);
            if (!apply_it) cJSON_Delete(newval), newval = NULL;
            break;
        }
        case MERGE_MANUAL: /* a person decides; the server value stands */
            if ((rc = conflict_new(a, rec, seq, name, "manual", 1, "server", cur, f, cid))) goto done;
            add_conflict_id(rec, cid);
            result_conflict(decisions, cid, name, "server");
            conflicted = 1;
            break;
        }
        if (apply_it) {
            if (!newval) newval = cJSON_Duplicate(f, 1);
            audit_field(af, name, cur, newval);
            if (cJSON_IsNull(newval)) {
                cJSON_Delete(newval);
                cJSON_DeleteItemFromObjectCaseSensitive(fields, name);
            } else {
                util_json_set(fields, name, newval);
            }
            record_set_meta(rec, name, newv, seq, dev, at);
            changed = 1;
        }
    }

    cJSON_ArrayForEach(f, append) {
        const char *name = f->string;
        cJSON *list = cJSON_GetObjectItemCaseSensitive(fields, name);
        cJSON *added = cJSON_CreateArray();
        const cJSON *it;
        if (!list) list = cJSON_AddArrayToObject(fields, name);
        cJSON_ArrayForEach(it, f) {
            const char *iid = util_json_str(it, "id");
            int have = 0;
            const cJSON *y;
            cJSON_ArrayForEach(y, list) {
                const char *yid = util_json_str(y, "id");
                if (yid && strcmp(yid, iid) == 0) have = 1;
            }
            if (have) continue; /* items are immutable once appended */
            cJSON *copy = stamp_item(a, name, it);
            util_json_push(added, cJSON_Duplicate(copy, 1));
            util_json_push(list, copy);
            record_set_item_seq(rec, name, iid, seq);
        }
        if (cJSON_GetArraySize(added) > 0) {
            if (strcmp(name, "evidence") == 0 &&
                (rc = blobs_evidence_listed(s, a->txn, a->job->p, a->pc->record_id, added))) {
                cJSON_Delete(added);
                goto done;
            }
            if (concurrent(rec, name, base, dev)) merged = 1;
            audit_field(af, name, NULL, added);
            record_set_meta(rec, name, newv, seq, dev, at);
            changed = 1;
        }
        cJSON_Delete(added);
    }

    if (correction && changed) {
        /* a correction cannot undo what a transition checked (Art. 51's cap ...) */
        schema_err_t e = {0};
        char path[300];
        if (schema_check_passed_guards(s->schema, view.procedure, view.status, fields, &e) != 0) {
            snprintf(path, sizeof path, "changes[%d].%s", a->idx, e.path);
            rc = reject(a, version, "validation_failed", path, "%s", e.message);
            goto done;
        }
    }
    if (changed || conflicted || cJSON_GetArraySize(decisions) > 0) {
        if (next_seq(a) != seq) {
            rc = SYNC_EIO;
            goto done;
        }
        if (!changed) {
            /* Nothing accepted, but a conflict was opened: the record's conflict
             * list changed, so phones hear of it; the version stays. */
            newv = version;
            cJSON_ReplaceItemInObjectCaseSensitive(entry, "op", cJSON_CreateString("conflict"));
        }
        if ((rc = commit_record(a, rec, seq, newv, prev_closed))) goto done;
        if ((rc = audit_append(a->txn, s->dbs, seq, a->pc->record_id, entry))) goto done;
        version = newv;
    }
    cJSON_AddStringToObject(a->result, "status", conflicted ? "conflict" : merged ? "merged" : "applied");
    cJSON_AddNumberToObject(a->result, "version", (double)version);
    if (cJSON_GetArraySize(decisions) > 0) {
        util_json_add(a->result, "conflicts", decisions);
        decisions = NULL;
    }
done:
    cJSON_Delete(decisions);
    cJSON_Delete(entry);
    cJSON_Delete(rec);
    return rc;
}

/* ---- transition and void ------------------------------------------------------------ */

static int apply_transition(apply_t *a) {
    sync_t *s = a->job->s;
    const sync_principal_t *p = a->job->p;
    const char *to = util_json_str(a->pc->change, "to");
    cJSON *rec = NULL, *entry = NULL;
    schema_err_t serr = {0};
    int rc = load_target(a, &rec);
    if (rc != 0) return rc > 0 ? 0 : rc;

    const char *procedure = util_json_str(rec, "procedure");
    char status[64];
    snprintf(status, sizeof status, "%s", util_json_str(rec, "status"));
    int64_t version = version_of(rec), prev_closed = closed_at_of(rec);
    schema_view_t view = record_view(rec, a->pc->at_ms);
    view.status = status;
    schema_judgement_t j = schema_judge_transition(s->schema, &view, to, p->role, &serr);
    char path[64];
    snprintf(path, sizeof path, "changes[%d].to", a->idx);

    switch (j) {
    case JUDGE_NOOP:
        cJSON_AddStringToObject(a->result, "status", "merged");
        cJSON_AddNumberToObject(a->result, "version", (double)version);
        break;
    case JUDGE_ROLE: rc = reject(a, version, "role_forbidden", path, "%s", serr.message); break;
    case JUDGE_GUARD: {
        char gpath[300];
        snprintf(gpath, sizeof gpath, "changes[%d].%s", a->idx, serr.path);
        rc = reject(a, version, "validation_failed", gpath, "%s", serr.message);
        break;
    }
    case JUDGE_FORBIDDEN:
        rc = reject(a, version, "forbidden_transition", path, "%s",
                    serr.message[0] ? serr.message : "transition not allowed");
        break;
    case JUDGE_CONFLICT: {
        uint64_t seq = next_seq(a);
        char cid[32];
        cJSON *sv = cJSON_CreateString(status), *cv = cJSON_CreateString(to);
        if (!seq) rc = SYNC_EIO;
        if (!rc) rc = conflict_new(a, rec, seq, "status", "lifecycle", 1, "server", sv, cv, cid);
        cJSON_Delete(sv);
        cJSON_Delete(cv);
        if (rc) break;
        add_conflict_id(rec, cid);
        entry = audit_entry(a, seq, a->pc->record_id, "conflict");
        cJSON *af = cJSON_AddObjectToObject(entry, "fields");
        audit_field(af, "status", cJSON_GetObjectItemCaseSensitive(rec, "status"),
                    cJSON_GetObjectItemCaseSensitive(rec, "status"));
        if ((rc = commit_record(a, rec, seq, version, prev_closed))) break;
        if ((rc = audit_append(a->txn, s->dbs, seq, a->pc->record_id, entry))) break;
        cJSON_AddStringToObject(a->result, "status", "conflict");
        cJSON_AddNumberToObject(a->result, "version", (double)version);
        cJSON *list = cJSON_AddArrayToObject(a->result, "conflicts");
        result_conflict(list, cid, "status", "server");
        break;
    }
    case JUDGE_APPLY: {
        uint64_t seq = next_seq(a);
        if (!seq) {
            rc = SYNC_EIO;
            break;
        }
        entry = audit_entry(a, seq, a->pc->record_id, "transition");
        cJSON *af = cJSON_AddObjectToObject(entry, "fields");
        cJSON *nv = cJSON_CreateString(to);
        audit_field(af, "status", cJSON_GetObjectItemCaseSensitive(rec, "status"), nv);
        stamp_fields(a, rec, schema_transition_stamps(s->schema, procedure, status, to), af, version + 1,
                     seq);
        util_json_set(rec, "status", nv);
        util_json_set(rec, "status_at", cJSON_CreateNumber((double)a->job->recv_ms));
        record_set_meta(rec, "status", version + 1, seq, p->device_id, a->pc->at_ms);
        if (schema_status_assigns_case_no(s->schema, procedure, to)) {
            if ((rc = assign_case_no(a, rec, af))) break;
            record_set_meta(rec, "case_no", version + 1, seq, p->device_id, a->pc->at_ms);
        }
        if (schema_status_is_closed(s->schema, procedure, to))
            util_json_set(rec, "closed_at", cJSON_CreateNumber((double)a->job->recv_ms));
        if ((rc = commit_record(a, rec, seq, version + 1, prev_closed))) break;
        if ((rc = audit_append(a->txn, s->dbs, seq, a->pc->record_id, entry))) break;
        cJSON_AddStringToObject(a->result, "status", "applied");
        cJSON_AddNumberToObject(a->result, "version", (double)(version + 1));
        break;
    }
    }
    cJSON_Delete(entry);
    cJSON_Delete(rec);
    return rc;
}

/* Was any field (or the status) changed after base by another device? */
static int any_concurrent(const cJSON *rec, int64_t base, const char *device) {
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(rec, "fm")) {
        if (concurrent(rec, m->string, base, device)) return 1;
    }
    return 0;
}

static int apply_void(apply_t *a) {
    sync_t *s = a->job->s;
    const sync_principal_t *p = a->job->p;
    const char *reason = util_json_str(a->pc->change, "reason");
    cJSON *rec = NULL, *entry = NULL;
    char path[64];
    int rc = load_target(a, &rec);
    if (rc != 0) return rc > 0 ? 0 : rc;
    int64_t version = version_of(rec), prev_closed = closed_at_of(rec);
    snprintf(path, sizeof path, "changes[%d]", a->idx);

    if (p->role < schema_void_role(s->schema)) {
        rc = reject(a, version, "role_forbidden", path, "only a %s may void a case",
                    schema_role_name(schema_void_role(s->schema)));
    } else if (schema_status_is_closed(s->schema, util_json_str(rec, "procedure"),
                                       util_json_str(rec, "status"))) {
        rc = reject(a, version, "forbidden_transition", path, "a closed case cannot be voided");
    } else if (any_concurrent(rec, a->pc->base_version, p->device_id)) {
        /* The case moved on since the supervisor saw it: a person decides. */
        uint64_t seq = next_seq(a);
        char cid[32];
        cJSON *sv = cJSON_CreateFalse(), *cv = cJSON_CreateTrue();
        rc = seq ? conflict_new(a, rec, seq, "voided", "lifecycle", 1, "server", sv, cv, cid) : SYNC_EIO;
        cJSON_Delete(sv);
        cJSON_Delete(cv);
        if (rc == 0) {
            add_conflict_id(rec, cid);
            entry = audit_entry(a, seq, a->pc->record_id, "conflict");
            cJSON_AddObjectToObject(entry, "fields");
            rc = commit_record(a, rec, seq, version, prev_closed);
            if (!rc) rc = audit_append(a->txn, s->dbs, seq, a->pc->record_id, entry);
        }
        if (rc == 0) {
            cJSON_AddStringToObject(a->result, "status", "conflict");
            cJSON_AddNumberToObject(a->result, "version", (double)version);
            result_conflict(cJSON_AddArrayToObject(a->result, "conflicts"), cid, "voided", "server");
        }
    } else {
        uint64_t seq = next_seq(a);
        if (!seq) {
            rc = SYNC_EIO;
            goto done;
        }
        entry = audit_entry(a, seq, a->pc->record_id, "void");
        cJSON *af = cJSON_AddObjectToObject(entry, "fields");
        cJSON *t = cJSON_CreateTrue(), *r = cJSON_CreateString(reason);
        audit_field(af, "voided", cJSON_GetObjectItemCaseSensitive(rec, "voided"), t);
        audit_field(af, "void_reason", NULL, r);
        util_json_set(rec, "voided", t);
        util_json_set(rec, "void_reason", r);
        record_set_meta(rec, "voided", version + 1, seq, p->device_id, a->pc->at_ms);
        util_json_set(rec, "closed_at", cJSON_CreateNumber((double)a->job->recv_ms));
        if ((rc = commit_record(a, rec, seq, version + 1, prev_closed))) goto done;
        if ((rc = audit_append(a->txn, s->dbs, seq, a->pc->record_id, entry))) goto done;
        cJSON_AddStringToObject(a->result, "status", "applied");
        cJSON_AddNumberToObject(a->result, "version", (double)(version + 1));
    }
done:
    cJSON_Delete(entry);
    cJSON_Delete(rec);
    return rc;
}

/* ---- the writer job ------------------------------------------------------------------ */

static size_t changeset_key(unsigned char *buf, const char *device, int64_t seq) {
    size_t n = strlen(device);
    memcpy(buf, device, n);
    buf[n] = 0;
    store_be64(buf + n + 1, (uint64_t)seq);
    return n + 9;
}

static int push_job(MDB_txn *txn, void *ctx) {
    push_job_t *job = ctx;
    sync_t *s = job->s;
    const sync_principal_t *p = job->p;
    cJSON *device = NULL, *results = NULL, *answer = NULL, *stored = NULL;
    unsigned char k[128];
    size_t kl = changeset_key(k, p->device_id, job->cs_seq);
    int64_t next = 1;
    int rc;

    /* The session as of this commit, not as of the request's arrival. */
    if ((rc = sync_session_recheck(txn, s->dbs, p, job->err))) return rc;
    if (job->cs_seq == 0) goto apply;
    rc = store_get_json(txn, s->dbs->devices, p->device_id, strlen(p->device_id), &device);
    if (rc == SYNC_ENOTFOUND) {
        device = cJSON_CreateObject();
        cJSON_AddStringToObject(device, "device_id", p->device_id);
        cJSON_AddStringToObject(device, "user_id", p->user_id);
        rc = 0;
    }
    if (rc != 0) goto done;
    util_json_int(device, "next_changeset_seq", &next);
    if (next < 1) next = 1;

    if (job->cs_seq < next) {
        rc = store_get_json(txn, s->dbs->changesets, k, kl, &stored);
        if (rc == 0 && body_hash_matches(job, util_json_str(stored, "hash"))) {
            job->answer = strdup(util_json_str(stored, "answer"));
            job->replay = 1;
            rc = job->answer ? 0 : SYNC_ENOMEM;
        } else if (rc == 0 || rc == SYNC_ENOTFOUND) {
            rc = sync_fail(job->err, SYNC_EREUSED, "changeset_seq",
                           "changeset %lld was already applied with another body", (long long)job->cs_seq);
        }
        goto done;
    }
    if (job->cs_seq > next) {
        rc = sync_fail(job->err, SYNC_EGAP, "changeset_seq", "expected changeset %lld, got %lld",
                       (long long)next, (long long)job->cs_seq);
        if (job->err) job->err->expected = next;
        goto done;
    }

apply:
    results = cJSON_CreateArray();
    for (int i = 0; i < job->n; i++) {
        apply_t a = {.txn = txn, .job = job, .idx = i, .pc = &job->ch[i], .result = cJSON_CreateObject()};
        if (util_json_push(results, a.result) != 0) {
            rc = SYNC_ENOMEM;
            goto done;
        }
        cJSON_AddStringToObject(a.result, "record_id", a.pc->record_id);
        if (a.pc->err_code) {
            rc = reject(&a, 0, a.pc->err_code, a.pc->err_field, "%s", a.pc->err_msg);
        } else {
            switch (a.pc->op) {
            case OP_CREATE: rc = apply_create(&a); break;
            case OP_UPDATE:
            case OP_CORRECT: rc = apply_update(&a); break;
            case OP_TRANSITION: rc = apply_transition(&a); break;
            default: rc = apply_void(&a); break;
            }
        }
        if (rc != 0) goto done;
        const char *st = util_json_str(a.result, "status");
        job->tally[!st                       ? 3
                   : !strcmp(st, "applied")  ? 0
                   : !strcmp(st, "merged")   ? 1
                   : !strcmp(st, "conflict") ? 2
                                             : 3]++;
    }

    char at[32];
    answer = cJSON_CreateObject();
    if (job->cs_seq == 0) {
        util_json_add(answer, "results", results);
        results = NULL;
        job->answer = cJSON_PrintUnformatted(answer);
        rc = job->answer ? 0 : SYNC_ENOMEM;
        goto done;
    }
    cJSON_AddNumberToObject(answer, "changeset_seq", (double)job->cs_seq);
    cJSON_AddNumberToObject(answer, "server_seq", (double)store_meta_u64(txn, s->dbs, "seq"));
    cJSON_AddNumberToObject(answer, "schema_version", schema_version(s->schema));
    util_json_add(answer, "results", results);
    results = NULL;
    job->answer = cJSON_PrintUnformatted(answer);
    if (!job->answer) {
        rc = SYNC_ENOMEM;
        goto done;
    }
    stored = cJSON_CreateObject();
    cJSON_AddStringToObject(stored, "hash", job->body_hash);
    cJSON_AddStringToObject(stored, "answer", job->answer);
    if ((rc = store_put_json(txn, s->dbs->changesets, k, kl, stored))) goto done;
    util_json_set(device, "next_changeset_seq", cJSON_CreateNumber((double)(job->cs_seq + 1)));
    util_json_set(device, "last_push_at", cJSON_CreateString(util_fmt_time(job->recv_ms, at)));
    util_json_set(device, "last_seen", cJSON_CreateString(at));
    rc = store_put_json(txn, s->dbs->devices, p->device_id, strlen(p->device_id), device);
done:
    if (rc != 0 && !job->replay) {
        free(job->answer);
        job->answer = NULL;
    }
    cJSON_Delete(device);
    cJSON_Delete(results);
    cJSON_Delete(answer);
    cJSON_Delete(stored);
    return rc;
}

/* ---- the request side ----------------------------------------------------------------- */

static int op_parse(const char *op) {
    if (!op) return -1;
    if (strcmp(op, "create") == 0) return OP_CREATE;
    if (strcmp(op, "update") == 0) return OP_UPDATE;
    if (strcmp(op, "transition") == 0) return OP_TRANSITION;
    if (strcmp(op, "void") == 0) return OP_VOID;
    if (strcmp(op, "correct") == 0) return OP_CORRECT;
    return -1;
}

/* Value rules that need no stored state; a failure marks the change rejected. */
static void prep_values(sync_t *s, const sync_principal_t *p, prep_t *pc, int idx) {
    const cJSON *ch = pc->change;
    schema_err_t e = {0};
    int rc = 0;
    switch (pc->op) {
    case OP_CREATE:
        rc = schema_check_create(s->schema, util_json_str(ch, "type"),
                                 cJSON_GetObjectItemCaseSensitive(ch, "fields"), &e);
        break;
    case OP_UPDATE:
    case OP_CORRECT: {
        const cJSON *f;
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(ch, "set")) {
            if ((rc = schema_check_set(s->schema, f->string, f, &e))) break;
        }
        if (rc) break;
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(ch, "append")) {
            if ((rc = schema_check_append(s->schema, f->string, f, &e))) break;
        }
        break;
    }
    case OP_VOID: {
        const char *r = util_json_str(ch, "reason");
        if (!r || !*r) {
            prep_fail(pc, idx, "validation_failed", "reason", "a void needs a reason");
            return;
        }
        break;
    }
    default: break;
    }
    if (rc) prep_fail(pc, idx, schema_code_name(rc), e.path, e.message);
}

static int push_run(sync_t *s, const sync_principal_t *p, const cJSON *body, int server_batch, char **out,
                    int *replay, sync_error_t *err);

int sync_push(sync_t *s, const sync_principal_t *p, const cJSON *body, char **out, int *replay,
              sync_error_t *err) {
    return push_run(s, p, body, 0, out, replay, err);
}

int sync_apply_changes(sync_t *s, const sync_principal_t *p, const cJSON *changes, char **out,
                       sync_error_t *err) {
    int replay = 0;
    cJSON *body = cJSON_CreateObject();
    if (!body || util_json_add(body, "changes", cJSON_Duplicate(changes, 1)) != 0) {
        cJSON_Delete(body);
        return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    }
    int rc = push_run(s, p, body, 1, out, &replay, err);
    cJSON_Delete(body);
    return rc;
}

static int push_run(sync_t *s, const sync_principal_t *p, const cJSON *body, int server_batch, char **out,
                    int *replay, sync_error_t *err) {
    push_job_t job = {.s = s, .p = p, .body = body, .err = err};
    schema_err_t e = {0};
    char path[300];
    int64_t v;
    int rc;
    *out = NULL;
    *replay = 0;
    if (server_batch) goto changes;

    if (!cJSON_IsObject(body)) return sync_fail(err, SYNC_EINVALID, "", "the changeset must be an object");
    const char *device = util_json_str(body, "device_id");
    if (!device) return sync_fail(err, SYNC_EINVALID, "device_id", "device_id must be a string");
    if (strcmp(device, p->device_id) != 0)
        return sync_fail(err, SYNC_EDEVICE, "device_id", "device_id is not the device of this token");
    if (util_json_int(body, "changeset_seq", &job.cs_seq) != 0 || job.cs_seq < 1)
        return sync_fail(err, SYNC_EINVALID, "changeset_seq", "changeset_seq must be an integer >= 1");
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(body, "schema_version");
    if (sv && util_json_int(body, "schema_version", &v) != 0)
        return sync_fail(err, SYNC_EINVALID, "schema_version", "schema_version must be an integer");
changes:;
    const cJSON *changes = cJSON_GetObjectItemCaseSensitive(body, "changes");
    if (!cJSON_IsArray(changes)) return sync_fail(err, SYNC_EINVALID, "changes", "changes must be an array");
    job.n = cJSON_GetArraySize(changes);
    if (job.n > s->cfg.max_changes)
        return sync_fail(err, SYNC_ETOOLARGE, "changes", "%d changes, at most %d in one changeset", job.n,
                         s->cfg.max_changes);

    job.recv_ms = util_now_ms();
    job.ch = calloc((size_t)(job.n ? job.n : 1), sizeof *job.ch);
    if (!job.ch) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    int i = 0;
    const cJSON *ch;
    cJSON_ArrayForEach(ch, changes) {
        prep_t *pc = &job.ch[i];
        if (schema_check_shape(s->schema, ch, &e) != 0) {
            snprintf(path, sizeof path, "changes[%d]%s%s", i, e.path[0] ? "." : "", e.path);
            rc = sync_fail(err, SYNC_EINVALID, path, "%s", e.message);
            goto done;
        }
        pc->change = ch;
        pc->op = op_parse(util_json_str(ch, "op"));
        pc->record_id = util_json_str(ch, "record_id");
        util_json_int(ch, "base_version", &pc->base_version);
        pc->at_ms = job.recv_ms;
        const char *at = util_json_str(ch, "at");
        int64_t at_ms;
        if (at && util_parse_time(at, &at_ms) != 0)
            prep_fail(pc, i, "validation_failed", "at", "at must be an RFC 3339 time");
        else if (at && at_ms < job.recv_ms)
            pc->at_ms = at_ms; /* the device clock, never later than the server's */
        if (!pc->err_code) prep_values(s, p, pc, i);
        i++;
    }
    if (!server_batch && body_tree_hash(body, job.body_hash) != 0) {
        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        goto done;
    }

    rc = store_write(s->st, push_job, &job);
    if (rc == SYNC_EBUSY && sync_ready(s) && (!err || err->code != rc)) {
        sync_fail(err, rc, NULL, "the server's store is full; nothing of this changeset was applied");
        if (err) err->retry_after = 60;
    }
    if (rc != 0) {
        if (err && err->code != rc) sync_fail(err, rc, NULL, "%s", sync_strerror(rc));
        free(job.answer);
        goto done;
    }
    *out = job.answer;
    *replay = job.replay;
    if (job.replay) {
        __atomic_add_fetch(&s->n_replays, 1, __ATOMIC_RELAXED);
    } else {
        __atomic_add_fetch(&s->n_changesets, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->n_applied, job.tally[0], __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->n_merged, job.tally[1], __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->n_conflict, job.tally[2], __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->n_rejected, job.tally[3], __ATOMIC_RELAXED);
    }
done:
    free(job.ch);
    return rc;
}
