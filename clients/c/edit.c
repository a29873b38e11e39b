/* edit.c -- offline edits and the local view.
 *
 * An edit is checked with the shared schema validator (shape, values, role,
 * lifecycle on the local view) and, when it passes, written as a change in
 * the store and applied to the view in one transaction. The view of a record
 * is always recomputed the same way, from its base and its local changes in
 * order (cs__view_refresh): that is also the rebase after a pull.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clients/c/internal.h"

/* ---- keys -------------------------------------------------------------------------------- */

static size_t rkey(unsigned char *k, const char *id, uint64_t lseq) {
    size_t n = strlen(id);
    memcpy(k, id, n);
    k[n] = 0;
    cs__be64(k + n + 1, lseq);
    return n + 9;
}

int cs__change_del(casesync_t *h, MDB_txn *txn, uint64_t lseq, const char *id) {
    unsigned char k[8], rk[80];
    cs__be64(k, lseq);
    int rc = cs__del(txn, h->db[CS_DB_CHANGES], k, 8);
    if (!rc && id) rc = cs__del(txn, h->db[CS_DB_RCHANGES], rk, rkey(rk, id, lseq));
    return rc;
}

int cs__has_changes(casesync_t *h, MDB_txn *txn, const char *id) {
    unsigned char start[80];
    size_t idl = strlen(id), sl = rkey(start, id, 0);
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, h->db[CS_DB_RCHANGES], &cur);
    if (mrc) return cs__lmdb_rc(mrc);
    MDB_val k = {sl, start}, v;
    mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    int has =
        mrc == 0 && k.mv_size == idl + 9 && memcmp(k.mv_data, id, idl) == 0 && ((char *)k.mv_data)[idl] == 0;
    mdb_cursor_close(cur);
    if (mrc && mrc != MDB_NOTFOUND) return cs__lmdb_rc(mrc);
    return has;
}

/* Calls fn for each local change of record `id` in lseq order. fn returns
 * non-zero to stop (that value is returned). */
typedef int (*change_fn)(casesync_t *h, MDB_txn *txn, uint64_t lseq, cJSON *entry, void *ctx);

static int each_change(casesync_t *h, MDB_txn *txn, const char *id, change_fn fn, void *ctx) {
    unsigned char start[80];
    size_t idl = strlen(id), sl = rkey(start, id, 0);
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, h->db[CS_DB_RCHANGES], &cur);
    if (mrc) return cs__lmdb_rc(mrc);
    /* Collect first: fn may delete entries under the cursor. */
    uint64_t *lseqs = NULL;
    size_t n = 0, cap = 0;
    MDB_val k = {sl, start}, v;
    int rc = 0;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != idl + 9 || memcmp(k.mv_data, id, idl) != 0 || ((char *)k.mv_data)[idl] != 0) break;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *p = realloc(lseqs, cap * sizeof *p);
            if (!p) {
                rc = CASESYNC_E_NOMEM;
                break;
            }
            lseqs = p;
        }
        lseqs[n++] = cs__rd64((char *)k.mv_data + idl + 1);
    }
    mdb_cursor_close(cur);
    for (size_t i = 0; i < n && !rc; i++) {
        unsigned char ck[8];
        cJSON *entry = NULL;
        cs__be64(ck, lseqs[i]);
        if (cs__get_json(txn, h->db[CS_DB_CHANGES], ck, 8, &entry) != 0) continue;
        rc = fn(h, txn, lseqs[i], entry, ctx);
        cJSON_Delete(entry);
    }
    free(lseqs);
    return rc;
}

/* ---- applying a change to a view ---------------------------------------------------------------- */

static void set_member(cJSON *o, const char *key, cJSON *v) {
    if (cJSON_GetObjectItemCaseSensitive(o, key))
        cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else
        cJSON_AddItemToObject(o, key, v);
}

static int list_has_id(const cJSON *list, const char *id) {
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        const char *iid = cs__jstr(it, "id");
        if (iid && id && strcmp(iid, id) == 0) return 1;
    }
    return 0;
}

static void apply_change(casesync_t *h, cJSON **viewp, const cJSON *ch) {
    const char *op = cs__jstr(ch, "op");
    cJSON *view = *viewp;
    if (!op) return;
    if (strcmp(op, "create") == 0) {
        if (view) return; /* the server's copy is here already */
        const cJSON *fields = cJSON_GetObjectItemCaseSensitive(ch, "fields");
        const char *proc = cs__jstr(fields, "procedure");
        const char *initial = h->schema && proc ? schema_initial_status(h->schema, proc) : NULL;
        view = cJSON_CreateObject();
        cJSON_AddStringToObject(view, "id", cs__jstr(ch, "record_id"));
        cJSON_AddStringToObject(view, "type", cs__jstr(ch, "type") ? cs__jstr(ch, "type") : "");
        cJSON_AddNumberToObject(view, "version", 0);
        cJSON_AddNumberToObject(view, "seq", 0);
        cJSON_AddStringToObject(view, "status", initial ? initial : "");
        cJSON_AddBoolToObject(view, "voided", 0);
        cJSON_AddItemToObject(view, "fields", fields ? cJSON_Duplicate(fields, 1) : cJSON_CreateObject());
        if (cs__jstr(ch, "at")) cJSON_AddStringToObject(view, "created_at", cs__jstr(ch, "at"));
        if (h->user_id) cJSON_AddStringToObject(view, "created_by", h->user_id);
        cJSON_AddArrayToObject(view, "conflicts");
        *viewp = view;
        return;
    }
    if (!view) return; /* an edit of a record this phone does not hold */
    cJSON *fields = cJSON_GetObjectItemCaseSensitive(view, "fields");
    if (!cJSON_IsObject(fields)) {
        fields = cJSON_CreateObject();
        set_member(view, "fields", fields);
    }
    if (strcmp(op, "update") == 0) {
        const cJSON *f;
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(ch, "set")) {
            if (cJSON_IsNull(f))
                cJSON_DeleteItemFromObjectCaseSensitive(fields, f->string);
            else
                set_member(fields, f->string, cJSON_Duplicate(f, 1));
        }
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(ch, "append")) {
            cJSON *list = cJSON_GetObjectItemCaseSensitive(fields, f->string);
            if (!cJSON_IsArray(list)) {
                list = cJSON_CreateArray();
                set_member(fields, f->string, list);
            }
            const cJSON *it;
            cJSON_ArrayForEach(it, f) if (!list_has_id(list, cs__jstr(it, "id")))
                cJSON_AddItemToArray(list, cJSON_Duplicate(it, 1));
        }
    } else if (strcmp(op, "transition") == 0) {
        if (cs__jstr(ch, "to")) set_member(view, "status", cJSON_CreateString(cs__jstr(ch, "to")));
    } else if (strcmp(op, "void") == 0) {
        set_member(view, "voided", cJSON_CreateBool(1));
    }
}

typedef struct refresh {
    cJSON *view;
    int pending;
} refresh_t;

static int refresh_one(casesync_t *h, MDB_txn *txn, uint64_t lseq, cJSON *entry, void *ctx) {
    refresh_t *r = ctx;
    apply_change(h, &r->view, cJSON_GetObjectItemCaseSensitive(entry, "change"));
    r->pending++;
    return 0;
}

int cs__view_refresh(casesync_t *h, MDB_txn *txn, const char *id) {
    refresh_t r = {0};
    int rc = cs__get_json(txn, h->db[CS_DB_BASE], id, strlen(id), &r.view);
    if (rc && rc != CASESYNC_E_NOT_FOUND) return rc;
    if ((rc = each_change(h, txn, id, refresh_one, &r))) goto done;
    if (r.view && r.pending > 0) {
        set_member(r.view, "pending", cJSON_CreateNumber(r.pending));
        rc = cs__put_json(txn, h->db[CS_DB_VIEW], id, strlen(id), r.view);
    } else {
        /* No local change: the view is the base (cs__view_get). */
        rc = cs__del(txn, h->db[CS_DB_VIEW], id, strlen(id));
    }
done:
    cJSON_Delete(r.view);
    return rc;
}

int cs__view_get(casesync_t *h, MDB_txn *txn, const char *id, cJSON **out) {
    int rc = cs__get_json(txn, h->db[CS_DB_VIEW], id, strlen(id), out);
    if (rc != CASESYNC_E_NOT_FOUND) return rc;
    if ((rc = cs__get_json(txn, h->db[CS_DB_BASE], id, strlen(id), out))) return rc;
    if (!cJSON_AddNumberToObject(*out, "pending", 0)) {
        cJSON_Delete(*out);
        *out = NULL;
        return CASESYNC_E_NOMEM;
    }
    return 0;
}

typedef struct dropctx {
    int64_t base_version;
    int all;
} dropctx_t;

static int drop_one(casesync_t *h, MDB_txn *txn, uint64_t lseq, cJSON *entry, void *ctx) {
    dropctx_t *d = ctx;
    const char *state = cs__jstr(entry, "state");
    if (!state || strcmp(state, "acked") != 0) return 0;
    if (d->all || cs__jint(entry, "ack_version", INT64_MAX) <= d->base_version)
        return cs__change_del(h, txn, lseq,
                              cs__jstr(cJSON_GetObjectItemCaseSensitive(entry, "change"), "record_id"));
    return 0;
}

int cs__drop_acked(casesync_t *h, MDB_txn *txn, const char *id, int all) {
    cJSON *base = NULL;
    dropctx_t d = {-1, all};
    if (cs__get_json(txn, h->db[CS_DB_BASE], id, strlen(id), &base) == 0)
        d.base_version = cs__jint(base, "version", -1);
    cJSON_Delete(base);
    return each_change(h, txn, id, drop_one, &d);
}

int cs__notice_add(casesync_t *h, MDB_txn *txn, cJSON *notice, cs__events_t *ev) {
    int64_t id = cs__meta_int(h, txn, "notice_seq", 0) + 1;
    char at[32];
    unsigned char k[8];
    cs__iso_time(cs__now_ms(h), at);
    cJSON_AddNumberToObject(notice, "id", (double)id);
    if (!cJSON_GetObjectItemCaseSensitive(notice, "at")) cJSON_AddStringToObject(notice, "at", at);
    cs__be64(k, (uint64_t)id);
    int rc = cs__put_json(txn, h->db[CS_DB_NOTICES], k, 8, notice);
    if (!rc) rc = cs__meta_put_int(h, txn, "notice_seq", id);
    if (!rc && ev)
        cs__events_add(ev, CASESYNC_EVENT_NOTICE, cs__jstr(notice, "record_id"), cs__jstr(notice, "kind"),
                       notice);
    cJSON_Delete(notice);
    return rc;
}

/* ---- queueing -------------------------------------------------------------------------------- */

typedef struct queue {
    const cJSON *change;
    const cJSON *upload; /* optional uploads entry */
} queue_t;

static int queue_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    queue_t *q = ctx;
    const char *id = cs__jstr(q->change, "record_id");
    uint64_t lseq = (uint64_t)cs__meta_int(h, txn, "lseq", 0) + 1;
    unsigned char k[8], rk[80];
    cs__be64(k, lseq);
    cJSON *entry = cJSON_CreateObject();
    cJSON_AddStringToObject(entry, "state", "pending");
    cJSON_AddItemToObject(entry, "change", cJSON_Duplicate(q->change, 1));
    int rc = cs__put_json(txn, h->db[CS_DB_CHANGES], k, 8, entry);
    cJSON_Delete(entry);
    if (!rc) rc = cs__put(txn, h->db[CS_DB_RCHANGES], rk, rkey(rk, id, lseq), "", 0);
    if (!rc) rc = cs__meta_put_int(h, txn, "lseq", (int64_t)lseq);
    if (!rc && q->upload) {
        const char *sha = cs__jstr(q->upload, "sha256");
        cJSON *old = NULL;
        cs__get_json(txn, h->db[CS_DB_UPLOADS], sha, strlen(sha), &old);
        const char *st = cs__jstr(old, "state");
        /* The same bytes uploaded or pending already stay as they are; a
         * failed upload of them is tried again. */
        if (!st || (strcmp(st, "done") != 0 && strcmp(st, "pending") != 0))
            rc = cs__put_json(txn, h->db[CS_DB_UPLOADS], sha, strlen(sha), q->upload);
        cJSON_Delete(old);
    }
    if (!rc) {
        /* The view is base + the changes so far: the new one applies on top. */
        cJSON *view = NULL;
        rc = cs__view_get(h, txn, id, &view);
        if (rc == CASESYNC_E_NOT_FOUND) rc = 0;
        if (!rc) {
            apply_change(h, &view, q->change);
            if (view) {
                set_member(view, "pending", cJSON_CreateNumber((double)(cs__jint(view, "pending", 0) + 1)));
                rc = cs__put_json(txn, h->db[CS_DB_VIEW], id, strlen(id), view);
            }
        }
        cJSON_Delete(view);
    }
    return rc;
}

/* Maps a schema error to a return code, filling err. */
static int schema_fail(casesync_error_t *err, int src, const schema_err_t *se) {
    int code;
    const char *api;
    switch (src) {
    case SCHEMA_E_TYPE: code = CASESYNC_E_SHAPE, api = "validation_failed"; break;
    case SCHEMA_E_ROLE: code = CASESYNC_E_ROLE, api = "role_forbidden"; break;
    case SCHEMA_E_FORBIDDEN: code = CASESYNC_E_ROLE, api = "field_forbidden"; break;
    case SCHEMA_E_FROZEN: code = CASESYNC_E_FROZEN, api = "field_frozen"; break;
    case SCHEMA_E_TRANSITION: code = CASESYNC_E_TRANSITION, api = "forbidden_transition"; break;
    case SCHEMA_E_NOMEM: code = CASESYNC_E_NOMEM, api = NULL; break;
    default: code = CASESYNC_E_INVALID, api = "validation_failed"; break;
    }
    return cs__fail(err, code, 0, api, se->path, "%s",
                    se->message[0] ? se->message : casesync_strerror(code));
}

/* Needs a schema and a user (a role) to judge edits; a token is not needed. */
static int ready(casesync_t *h, casesync_error_t *err) {
    if (!h->schema)
        return cs__fail(err, CASESYNC_E_NO_SCHEMA, 0, NULL, NULL, "no schema: log in once online");
    if (!h->user_id || h->role == ROLE_NONE)
        return cs__fail(err, CASESYNC_E_LOGIN, 0, NULL, NULL, "no user: log in");
    return 0;
}

static cJSON *parse_object(const char *text, const char *what, casesync_error_t *err, int *rc) {
    cJSON *j = text ? cs__parse(text, strlen(text)) : NULL;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        *rc = cs__fail(err, CASESYNC_E_ARG, 0, NULL, what, "%s must be a JSON object", what);
        return NULL;
    }
    return j;
}

static cJSON *load_view(casesync_t *h, const char *id, casesync_error_t *err, int *rc) {
    MDB_txn *txn;
    cJSON *v = NULL;
    if ((*rc = cs__txn_begin(h, 0, &txn))) return NULL;
    *rc = cs__view_get(h, txn, id, &v);
    mdb_txn_abort(txn);
    if (*rc == CASESYNC_E_NOT_FOUND)
        cs__fail(err, *rc, 0, "unknown_record", "record_id", "no record %s on this phone", id);
    return v;
}

static void stamp_at(casesync_t *h, cJSON *change) {
    char at[32];
    cs__iso_time(cs__now_ms(h), at);
    cJSON_AddStringToObject(change, "at", at);
}

/* The record as the schema's judges read it (a phone knows no server clock
 * of the status: the rights window is the server's to judge). */
static schema_view_t view_of(casesync_t *h, const cJSON *view) {
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(view, "fields");
    schema_view_t v = {.procedure = cs__jstr(fields, "procedure"),
                       .status = cs__jstr(view, "status"),
                       .voided = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(view, "voided")),
                       .fields = fields,
                       .now_ms = cs__now_ms(h)};
    return v;
}

/* The write rules the server will apply, judged on the phone's copy. */
static int judge_writes(casesync_t *h, const cJSON *change, const schema_view_t *v, casesync_error_t *err) {
    schema_writer_t w = {.role = h->role, .unit = h->unit, .grids = h->grids};
    schema_err_t se;
    memset(&se, 0, sizeof se);
    if (schema_judge_writes(h->schema, change, v, &w, &se) == WRITE_OK) return 0;
    return schema_fail(err, se.code, &se);
}

static int check_shape_and_queue(casesync_t *h, cJSON *change, const cJSON *upload, casesync_error_t *err) {
    schema_err_t se;
    memset(&se, 0, sizeof se);
    int src = schema_check_shape(h->schema, change, &se);
    if (src) return schema_fail(err, src, &se);
    queue_t q = {change, upload};
    int rc = cs__with_write(h, queue_txn, &q);
    if (rc) return cs__fail(err, rc, 0, NULL, NULL, "cannot queue the change: %s", casesync_strerror(rc));
    return 0;
}

/* ---- public edits ------------------------------------------------------------------------------- */

int casesync_create(casesync_t *h, const char *type, const char *fields_json, const char *record_id,
                    char out_id[CASESYNC_ID_MAX], casesync_error_t *err) {
    cs__err_clear(err);
    if (out_id) out_id[0] = 0;
    if (!h || !type) return cs__fail(err, CASESYNC_E_ARG, 0, NULL, NULL, "handle and type are required");
    if (record_id && !cs__id_ok(record_id))
        return cs__fail(err, CASESYNC_E_ARG, 0, "validation_failed", "record_id",
                        "record_id must match ^[0-9A-Za-z_-]{8,64}$");
    int rc = 0;
    cJSON *fields = parse_object(fields_json ? fields_json : "{}", "fields", err, &rc), *change = NULL,
          *view = NULL;
    if (!fields) return rc;
    char id[CASESYNC_ID_MAX];
    schema_err_t se;
    memset(&se, 0, sizeof se);
    pthread_mutex_lock(&h->lock);
    if ((rc = ready(h, err))) goto done;
    if (record_id)
        snprintf(id, sizeof id, "%s", record_id);
    else
        cs__ulid(h, id);
    int vrc;
    view = load_view(h, id, NULL, &vrc);
    if (view) {
        rc = cs__fail(err, CASESYNC_E_EXISTS, 0, NULL, "record_id", "record %s exists", id);
        goto done;
    }
    /* Defaults the server would otherwise reject: the user's unit, the type's code. */
    const cJSON *unit = cJSON_GetObjectItemCaseSensitive(fields, "unit");
    if (!unit && h->unit) cJSON_AddStringToObject(fields, "unit", h->unit);
    const char *code = schema_type_code(h->schema, type);
    if (code && !cJSON_GetObjectItemCaseSensitive(fields, "category"))
        cJSON_AddStringToObject(fields, "category", code);
    change = cJSON_CreateObject();
    cJSON_AddStringToObject(change, "op", "create");
    cJSON_AddStringToObject(change, "record_id", id);
    cJSON_AddStringToObject(change, "type", type);
    stamp_at(h, change);
    cJSON_AddItemToObject(change, "fields", fields);
    fields = NULL;
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(change, "fields");
    int src = schema_check_shape(h->schema, change, &se);
    if (!src) src = schema_check_create(h->schema, type, cf, &se);
    if (src) {
        rc = schema_fail(err, src, &se);
        goto done;
    }
    const char *proc = cs__jstr(cf, "procedure");
    if (!schema_may_create(h->schema, proc, h->role)) {
        rc = cs__fail(err, CASESYNC_E_ROLE, 0, "role_forbidden", "fields.procedure",
                      "a %s may not open a %s case", schema_role_name(h->role), proc);
        goto done;
    }
    schema_view_t nv = {.procedure = proc, .now_ms = cs__now_ms(h)};
    if ((rc = judge_writes(h, change, &nv, err))) goto done;
    if ((rc = check_shape_and_queue(h, change, NULL, err))) goto done;
    if (out_id) snprintf(out_id, CASESYNC_ID_MAX, "%s", id);
done:
    pthread_mutex_unlock(&h->lock);
    cJSON_Delete(fields);
    cJSON_Delete(change);
    cJSON_Delete(view);
    if (!rc) cs__change_fire(h, id, CASESYNC_CHANGE_LOCAL);
    return rc;
}

/* Checks and queues an update built from parsed set/append objects (taken). */
static int update_locked(casesync_t *h, const char *id, cJSON *set, cJSON *append, const cJSON *upload,
                         casesync_error_t *err) {
    int rc;
    cJSON *view = NULL, *change = NULL;
    schema_err_t se;
    memset(&se, 0, sizeof se);
    if ((rc = ready(h, err))) goto done;
    if (!(view = load_view(h, id, err, &rc))) goto done;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(view, "voided")) && set) {
        rc = cs__fail(err, CASESYNC_E_VOIDED, 0, "voided", "record_id", "record %s is voided", id);
        goto done;
    }
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(view, "fields");
    cJSON *list;
    cJSON_ArrayForEach(list, append) {
        if (!cJSON_IsArray(list)) continue; /* the shape check names it */
        cJSON *it;
        int i = 0;
        cJSON_ArrayForEach(it, list) {
            if (cJSON_IsObject(it) && !cJSON_GetObjectItemCaseSensitive(it, "id")) {
                char iid[27];
                cs__ulid(h, iid);
                cJSON_AddStringToObject(it, "id", iid);
            }
            const char *iid = cs__jstr(it, "id");
            const cJSON *prev;
            int dup = 0, j = 0;
            cJSON_ArrayForEach(prev, list) {
                if (j++ >= i) break;
                if (iid && cs__jstr(prev, "id") && strcmp(iid, cs__jstr(prev, "id")) == 0) dup = 1;
            }
            if (iid && (dup || list_has_id(cJSON_GetObjectItemCaseSensitive(fields, list->string), iid))) {
                rc = cs__fail(err, CASESYNC_E_EXISTS, 0, "validation_failed", NULL,
                              "append.%s: item %s exists", list->string, iid);
                goto done;
            }
            i++;
        }
    }
    change = cJSON_CreateObject();
    cJSON_AddStringToObject(change, "op", "update");
    cJSON_AddStringToObject(change, "record_id", id);
    cJSON_AddNumberToObject(change, "base_version", (double)cs__jint(view, "version", 0));
    stamp_at(h, change);
    if (set) cJSON_AddItemToObject(change, "set", set);
    if (append) cJSON_AddItemToObject(change, "append", append);
    set = append = NULL;
    int src = schema_check_shape(h->schema, change, &se);
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(change, "set")) {
        if (src) break;
        src = schema_check_set(h->schema, f->string, f, &se);
    }
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(change, "append")) {
        if (src) break;
        src = schema_check_append(h->schema, f->string, f, &se);
    }
    if (src) {
        rc = schema_fail(err, src, &se);
        goto done;
    }
    schema_view_t sv = view_of(h, view);
    if ((rc = judge_writes(h, change, &sv, err))) goto done;
    rc = check_shape_and_queue(h, change, upload, err);
done:
    cJSON_Delete(set);
    cJSON_Delete(append);
    cJSON_Delete(view);
    cJSON_Delete(change);
    return rc;
}

int casesync_update(casesync_t *h, const char *record_id, const char *set_json, const char *append_json,
                    casesync_error_t *err) {
    cs__err_clear(err);
    if (!h || !record_id)
        return cs__fail(err, CASESYNC_E_ARG, 0, NULL, NULL, "handle and record_id are required");
    int rc = 0;
    cJSON *set = NULL, *append = NULL;
    if (set_json && !(set = parse_object(set_json, "set", err, &rc))) return rc;
    if (append_json && !(append = parse_object(append_json, "append", err, &rc))) {
        cJSON_Delete(set);
        return rc;
    }
    if (cJSON_GetArraySize(set) + cJSON_GetArraySize(append) == 0) {
        cJSON_Delete(set);
        cJSON_Delete(append);
        return cs__fail(err, CASESYNC_E_ARG, 0, NULL, NULL, "nothing to set or append");
    }
    pthread_mutex_lock(&h->lock);
    rc = update_locked(h, record_id, set, append, NULL, err);
    pthread_mutex_unlock(&h->lock);
    if (!rc) cs__change_fire(h, record_id, CASESYNC_CHANGE_LOCAL);
    return rc;
}

int casesync_note(casesync_t *h, const char *record_id, const char *text, char out_item_id[CASESYNC_ID_MAX],
                  casesync_error_t *err) {
    cs__err_clear(err);
    if (out_item_id) out_item_id[0] = 0;
    if (!h || !record_id || !text)
        return cs__fail(err, CASESYNC_E_ARG, 0, NULL, NULL, "record_id and text are required");
    char iid[27], at[32];
    cJSON *append = cJSON_CreateObject(), *item = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(append, "notes"), item);
    pthread_mutex_lock(&h->lock);
    cs__ulid(h, iid);
    cs__iso_time(cs__now_ms(h), at);
    cJSON_AddStringToObject(item, "id", iid);
    cJSON_AddStringToObject(item, "text", text);
    cJSON_AddStringToObject(item, "at", at);
    int rc = update_locked(h, record_id, NULL, append, NULL, err);
    pthread_mutex_unlock(&h->lock);
    if (!rc && out_item_id) snprintf(out_item_id, CASESYNC_ID_MAX, "%s", iid);
    if (!rc) cs__change_fire(h, record_id, CASESYNC_CHANGE_LOCAL);
    return rc;
}

static const char *guess_mime(const char *path) {
    static const struct {
        const char *ext, *mime;
    } map[] = {{".jpg", "image/jpeg"},      {".jpeg", "image/jpeg"},    {".png", "image/png"},
               {".heic", "image/heic"},     {".webp", "image/webp"},    {".mp4", "video/mp4"},
               {".mov", "video/quicktime"}, {".m4a", "audio/mp4"},      {".amr", "audio/amr"},
               {".wav", "audio/wav"},       {".pdf", "application/pdf"}};
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof map / sizeof map[0]; i++)
        if (strcasecmp(dot, map[i].ext) == 0) return map[i].mime;
    return "application/octet-stream";
}

int casesync_attach(casesync_t *h, const char *record_id, const char *path, const char *kind,
                    const char *mime, char out_item_id[CASESYNC_ID_MAX], casesync_error_t *err) {
    cs__err_clear(err);
    if (out_item_id) out_item_id[0] = 0;
    if (!h || !record_id || !path)
        return cs__fail(err, CASESYNC_E_ARG, 0, NULL, NULL, "record_id and path are required");
    char sha[65], iid[27], at[32];
    uint64_t size = 0;
    char *abs = realpath(path, NULL);
    if (!abs || cs__sha256_file(abs, sha, &size) != 0) {
        free(abs);
        return cs__fail(err, CASESYNC_E_IO, 0, NULL, "path", "cannot read %s", path);
    }
    const char *base = strrchr(abs, '/');
    base = base ? base + 1 : abs;
    if (!mime) mime = guess_mime(abs);
    cJSON *append = cJSON_CreateObject(), *item = cJSON_CreateObject(), *up = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(append, "evidence"), item);
    pthread_mutex_lock(&h->lock);
    cs__ulid(h, iid);
    cs__iso_time(cs__now_ms(h), at);
    cJSON_AddStringToObject(item, "id", iid);
    cJSON_AddStringToObject(item, "sha256", sha);
    cJSON_AddNumberToObject(item, "size", (double)size);
    cJSON_AddStringToObject(item, "mime", mime);
    cJSON_AddStringToObject(item, "kind", kind ? kind : "photo");
    cJSON_AddStringToObject(item, "captured_at", at);
    cJSON_AddStringToObject(up, "sha256", sha);
    cJSON_AddStringToObject(up, "record_id", record_id);
    cJSON_AddStringToObject(up, "path", abs);
    cJSON_AddStringToObject(up, "filename", base);
    cJSON_AddStringToObject(up, "mime", mime);
    cJSON_AddNumberToObject(up, "size", (double)size);
    cJSON_AddNumberToObject(up, "offset", 0);
    cJSON_AddStringToObject(up, "state", "pending");
    int rc = update_locked(h, record_id, NULL, append, up, err);
    pthread_mutex_unlock(&h->lock);
    cJSON_Delete(up);
    free(abs);
    if (!rc && out_item_id) snprintf(out_item_id, CASESYNC_ID_MAX, "%s", iid);
    if (!rc) cs__change_fire(h, record_id, CASESYNC_CHANGE_LOCAL);
    return rc;
}

int casesync_transition(casesync_t *h, const char *record_id, const char *to, casesync_error_t *err) {
    cs__err_clear(err);
    if (!h || !record_id || !to)
        return cs__fail(err, CASESYNC_E_ARG, 0, NULL, NULL, "record_id and to are required");
    int rc;
    cJSON *view = NULL, *change = NULL;
    schema_err_t se;
    memset(&se, 0, sizeof se);
    pthread_mutex_lock(&h->lock);
    if ((rc = ready(h, err))) goto done;
    if (!(view = load_view(h, record_id, err, &rc))) goto done;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(view, "voided"))) {
        rc = cs__fail(err, CASESYNC_E_VOIDED, 0, "voided", "record_id", "record %s is voided", record_id);
        goto done;
    }
    const char *cur = cs__jstr(view, "status");
    schema_view_t sv = view_of(h, view);
    schema_judgement_t j = schema_judge_transition(h->schema, &sv, to, h->role, &se);
    switch (j) {
    case JUDGE_APPLY: break;
    case JUDGE_NOOP:
        rc = cs__fail(err, CASESYNC_E_TRANSITION, 0, "forbidden_transition", "to",
                      "the record is already %s, at or past %s", cur, to);
        goto done;
    case JUDGE_CONFLICT:
        rc = cs__fail(err, CASESYNC_E_TRANSITION, 0, "forbidden_transition", "to",
                      "the record left the branch of %s (it is %s)", to, cur);
        goto done;
    case JUDGE_ROLE: rc = schema_fail(err, SCHEMA_E_ROLE, &se); goto done;
    case JUDGE_GUARD: rc = schema_fail(err, SCHEMA_E_INVALID, &se); goto done;
    default:
        if (!se.message[0]) snprintf(se.message, sizeof se.message, "no transition from %s to %s", cur, to);
        rc = schema_fail(err, SCHEMA_E_TRANSITION, &se);
        goto done;
    }
    change = cJSON_CreateObject();
    cJSON_AddStringToObject(change, "op", "transition");
    cJSON_AddStringToObject(change, "record_id", record_id);
    cJSON_AddNumberToObject(change, "base_version", (double)cs__jint(view, "version", 0));
    stamp_at(h, change);
    cJSON_AddStringToObject(change, "to", to);
    rc = check_shape_and_queue(h, change, NULL, err);
done:
    pthread_mutex_unlock(&h->lock);
    cJSON_Delete(view);
    cJSON_Delete(change);
    if (!rc) cs__change_fire(h, record_id, CASESYNC_CHANGE_LOCAL);
    return rc;
}

int casesync_void(casesync_t *h, const char *record_id, const char *reason, casesync_error_t *err) {
    cs__err_clear(err);
    if (!h || !record_id) return cs__fail(err, CASESYNC_E_ARG, 0, NULL, NULL, "record_id is required");
    if (!reason || !*reason)
        return cs__fail(err, CASESYNC_E_INVALID, 0, "validation_failed", "reason", "a void needs a reason");
    int rc;
    cJSON *view = NULL, *change = NULL;
    pthread_mutex_lock(&h->lock);
    if ((rc = ready(h, err))) goto done;
    if (!(view = load_view(h, record_id, err, &rc))) goto done;
    if (h->role < schema_void_role(h->schema)) {
        rc = cs__fail(err, CASESYNC_E_ROLE, 0, "role_forbidden", NULL, "only a supervisor voids a record");
        goto done;
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(view, "voided"))) {
        rc = cs__fail(err, CASESYNC_E_VOIDED, 0, "voided", "record_id", "record %s is voided already",
                      record_id);
        goto done;
    }
    const char *proc = cs__jstr(cJSON_GetObjectItemCaseSensitive(view, "fields"), "procedure");
    const char *cur = cs__jstr(view, "status");
    if (proc && cur && schema_status_is_closed(h->schema, proc, cur)) {
        rc = cs__fail(err, CASESYNC_E_TRANSITION, 0, "forbidden_transition", NULL,
                      "a %s record cannot be voided", cur);
        goto done;
    }
    change = cJSON_CreateObject();
    cJSON_AddStringToObject(change, "op", "void");
    cJSON_AddStringToObject(change, "record_id", record_id);
    cJSON_AddNumberToObject(change, "base_version", (double)cs__jint(view, "version", 0));
    stamp_at(h, change);
    cJSON_AddStringToObject(change, "reason", reason);
    rc = check_shape_and_queue(h, change, NULL, err);
done:
    pthread_mutex_unlock(&h->lock);
    cJSON_Delete(view);
    cJSON_Delete(change);
    if (!rc) cs__change_fire(h, record_id, CASESYNC_CHANGE_LOCAL);
    return rc;
}

/* ---- reading -------------------------------------------------------------------------------------- */

static int print_out(cJSON *j, char **out) {
    *out = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return *out ? 0 : CASESYNC_E_NOMEM;
}

int casesync_get(casesync_t *h, const char *record_id, char **out) {
    if (!out) return CASESYNC_E_ARG;
    *out = NULL;
    if (!h || !record_id) return CASESYNC_E_ARG;
    int rc;
    pthread_mutex_lock(&h->lock);
    cJSON *v = load_view(h, record_id, NULL, &rc);
    pthread_mutex_unlock(&h->lock);
    if (!v) return rc ? rc : CASESYNC_E_NOT_FOUND;
    return print_out(v, out);
}

/* All values of one database as a JSON array (each value parsed). */
static int dump_db(casesync_t *h, int db, cJSON **out) {
    MDB_txn *txn;
    MDB_cursor *cur;
    *out = NULL;
    int rc = cs__txn_begin(h, 0, &txn);
    if (rc) return rc;
    cJSON *arr = cJSON_CreateArray();
    MDB_val k, v;
    if (mdb_cursor_open(txn, h->db[db], &cur) == 0) {
        for (int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
             mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            cJSON *j = cs__parse(v.mv_data, v.mv_size);
            if (j) cJSON_AddItemToArray(arr, j);
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    *out = arr;
    return 0;
}

/* Every view in id order: the stored views (records with local changes)
 * merged with the bases that have none (cs__view_get). Under lock. */
static int list_views(casesync_t *h, cJSON **out) {
    MDB_txn *txn;
    MDB_cursor *cb = NULL, *cv = NULL;
    *out = NULL;
    int rc = cs__txn_begin(h, 0, &txn);
    if (rc) return rc;
    cJSON *arr = cJSON_CreateArray();
    int mrc = arr ? mdb_cursor_open(txn, h->db[CS_DB_BASE], &cb) : ENOMEM;
    if (!mrc) mrc = mdb_cursor_open(txn, h->db[CS_DB_VIEW], &cv);
    if (mrc) {
        rc = cs__lmdb_rc(mrc);
        goto done;
    }
    MDB_val kb, vb, kv, vv;
    int b = mdb_cursor_get(cb, &kb, &vb, MDB_FIRST), v = mdb_cursor_get(cv, &kv, &vv, MDB_FIRST);
    while (b == 0 || v == 0) {
        int c = b ? 1 : v ? -1 : mdb_cmp(txn, h->db[CS_DB_BASE], &kb, &kv);
        cJSON *j;
        if (c < 0) { /* a base without a stored view: no local change */
            j = cs__parse(vb.mv_data, vb.mv_size);
            if (j && !cJSON_AddNumberToObject(j, "pending", 0)) {
                rc = CASESYNC_E_NOMEM;
                cJSON_Delete(j);
                break;
            }
            b = mdb_cursor_get(cb, &kb, &vb, MDB_NEXT);
        } else {
            j = cs__parse(vv.mv_data, vv.mv_size);
            if (c == 0) b = mdb_cursor_get(cb, &kb, &vb, MDB_NEXT);
            v = mdb_cursor_get(cv, &kv, &vv, MDB_NEXT);
        }
        if (j) cJSON_AddItemToArray(arr, j);
    }
done:
    if (cb) mdb_cursor_close(cb);
    if (cv) mdb_cursor_close(cv);
    mdb_txn_abort(txn);
    if (rc) {
        cJSON_Delete(arr);
        return rc;
    }
    *out = arr;
    return arr ? 0 : CASESYNC_E_NOMEM;
}

int casesync_list(casesync_t *h, char **out) {
    if (!out) return CASESYNC_E_ARG;
    *out = NULL;
    if (!h) return CASESYNC_E_ARG;
    cJSON *arr;
    pthread_mutex_lock(&h->lock);
    int rc = list_views(h, &arr);
    pthread_mutex_unlock(&h->lock);
    return rc ? rc : print_out(arr, out);
}

int casesync_uploads(casesync_t *h, char **out) {
    if (!out) return CASESYNC_E_ARG;
    *out = NULL;
    if (!h) return CASESYNC_E_ARG;
    cJSON *arr;
    pthread_mutex_lock(&h->lock);
    int rc = dump_db(h, CS_DB_UPLOADS, &arr);
    pthread_mutex_unlock(&h->lock);
    return rc ? rc : print_out(arr, out);
}

int casesync_notices(casesync_t *h, char **out) {
    if (!out) return CASESYNC_E_ARG;
    *out = NULL;
    if (!h) return CASESYNC_E_ARG;
    cJSON *arr;
    pthread_mutex_lock(&h->lock);
    int rc = dump_db(h, CS_DB_NOTICES, &arr);
    pthread_mutex_unlock(&h->lock);
    return rc ? rc : print_out(arr, out);
}

static int dismiss_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    uint64_t id = *(uint64_t *)ctx;
    if (id == 0) return cs__clear_db(txn, h->db[CS_DB_NOTICES]);
    unsigned char k[8];
    cs__be64(k, id);
    return cs__del(txn, h->db[CS_DB_NOTICES], k, 8);
}

int casesync_notice_dismiss(casesync_t *h, uint64_t id) {
    if (!h) return CASESYNC_E_ARG;
    pthread_mutex_lock(&h->lock);
    int rc = cs__with_write(h, dismiss_txn, &id);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

int casesync_outbox(casesync_t *h, char **out) {
    if (!out) return CASESYNC_E_ARG;
    *out = NULL;
    if (!h) return CASESYNC_E_ARG;
    cJSON *o = cJSON_CreateObject(), *changes = NULL, *sealed = NULL;
    pthread_mutex_lock(&h->lock);
    MDB_txn *txn;
    int rc = cs__txn_begin(h, 0, &txn);
    if (!rc) {
        cJSON_AddNumberToObject(o, "next_changeset_seq", (double)cs__meta_int(h, txn, "next_cs", 1));
        mdb_txn_abort(txn);
        rc = dump_db(h, CS_DB_CHANGES, &changes);
    }
    if (!rc) rc = dump_db(h, CS_DB_OUTBOX, &sealed);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        cJSON_Delete(o);
        cJSON_Delete(changes);
        return rc;
    }
    cJSON *pending = cJSON_AddArrayToObject(o, "pending"), *sl = cJSON_AddArrayToObject(o, "sealed");
    cJSON *acked = cJSON_AddArrayToObject(o, "acked"), *held = cJSON_AddArrayToObject(o, "held"), *e;
    cJSON_ArrayForEach(e, changes) {
        const char *state = cs__jstr(e, "state");
        cJSON *ch = cJSON_GetObjectItemCaseSensitive(e, "change");
        if (state && strcmp(state, "pending") == 0) {
            cJSON_AddItemToArray(pending, cJSON_Duplicate(ch, 1));
        } else if (state && strcmp(state, "acked") == 0) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddItemToObject(a, "change", cJSON_Duplicate(ch, 1));
            if (cs__jstr(e, "status")) cJSON_AddStringToObject(a, "status", cs__jstr(e, "status"));
            cJSON_AddNumberToObject(a, "version", (double)cs__jint(e, "ack_version", 0));
            cJSON_AddItemToArray(acked, a);
        } else if (state && strcmp(state, "held") == 0) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddItemToObject(a, "change", cJSON_Duplicate(ch, 1));
            if (cs__jstr(e, "held_for")) cJSON_AddStringToObject(a, "held_for", cs__jstr(e, "held_for"));
            cJSON_AddItemToArray(held, a);
        }
    }
    cJSON_ArrayForEach(e, sealed) {
        const char *body = cs__jstr(e, "body");
        cJSON *b = body ? cs__parse(body, strlen(body)) : NULL, *s = cJSON_CreateObject();
        cJSON_AddNumberToObject(s, "changeset_seq", (double)cs__jint(b, "changeset_seq", 0));
        cJSON_AddItemToObject(s, "body", b ? b : cJSON_CreateNull());
        cJSON_AddItemToArray(sl, s);
    }
    cJSON_Delete(changes);
    cJSON_Delete(sealed);
    return print_out(o, out);
}

/* The schema's states of a procedure, from the schema text. */
int casesync_next_states(casesync_t *h, const char *record_id, char **out) {
    if (!out) return CASESYNC_E_ARG;
    *out = NULL;
    if (!h || !record_id) return CASESYNC_E_ARG;
    int rc;
    cJSON *arr = NULL;
    pthread_mutex_lock(&h->lock);
    cJSON *view = load_view(h, record_id, NULL, &rc);
    if (!view) goto done;
    if (!h->schema) {
        rc = CASESYNC_E_NO_SCHEMA;
        goto done;
    }
    schema_view_t sv = view_of(h, view);
    arr = cJSON_CreateArray();
    if (!arr) {
        rc = CASESYNC_E_NOMEM;
        goto done;
    }
    if (!sv.voided) {
        for (int i = 0; i < schema_state_count(h->schema, sv.procedure); i++) {
            const char *st = schema_state_name(h->schema, sv.procedure, i);
            const char *label = schema_state_label(h->schema, sv.procedure, i);
            schema_err_t se;
            if (schema_judge_transition(h->schema, &sv, st, h->role, &se) != JUDGE_APPLY) continue;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "to", st);
            if (label) cJSON_AddStringToObject(o, "label", label);
            cJSON_AddItemToArray(arr, o);
        }
    }
    rc = 0;
done:
    pthread_mutex_unlock(&h->lock);
    cJSON_Delete(view);
    if (rc) {
        cJSON_Delete(arr);
        return rc;
    }
    return print_out(arr, out);
}
