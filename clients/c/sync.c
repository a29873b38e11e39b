/* sync.c -- login, the schema, and the sync algorithm: seal, push, pull, rebase.
 *
 * Push: queued changes are sealed into numbered changesets and written to
 * the outbox before anything is sent; the outbox goes out in changeset_seq
 * order, each body byte-for-byte as sealed, so an answer lost at any byte is
 * recovered by sending the same body again (the server replays its stored
 * answer). The outbox is renumbered only where the server has said that no
 * body was applied at those numbers (changeset_gap, changeset_reused, 422).
 *
 * Pull: pages until `more` is false; each page, its cursor and the rebase of
 * the records it touched commit in one local transaction, so a pull cut off
 * at any byte resumes from the last whole page. The next page is requested
 * while the current one is stored (pull_pages).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/c/internal.h"

#define PROBE_SEQ (1LL << 40) /* far past any real changeset: only ever a gap */

/* ---- wipe ---------------------------------------------------------------------------------- */

int cs__wipe_locked(casesync_t *h, MDB_txn *txn, int keep_session) {
    static const int dbs[] = {CS_DB_BASE,   CS_DB_VIEW,    CS_DB_CHANGES, CS_DB_RCHANGES,
                              CS_DB_OUTBOX, CS_DB_NOTICES, CS_DB_UPLOADS, CS_DB_SEEN};
    int rc = 0;
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0] && !rc; i++)
        rc = cs__clear_db(txn, h->db[dbs[i]]);
    const char *names[] = {"cursor", "scratch", "paging", "token", "user", "device_id", "server", "next_cs"};
    size_t n = keep_session ? 3 : sizeof names / sizeof names[0];
    for (size_t i = 0; i < n && !rc; i++)
        rc = cs__meta_put(h, txn, names[i], NULL);
    return rc;
}

static int wipe_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    return cs__wipe_locked(h, txn, 0);
}

int casesync_wipe(casesync_t *h) {
    if (!h) return CASESYNC_E_ARG;
    int rc = cs__net_enter(h);
    if (rc) return rc;
    pthread_mutex_lock(&h->lock);
    rc = cs__with_write(h, wipe_txn, NULL);
    cs__session_load(h);
    pthread_mutex_unlock(&h->lock);
    cs__net_leave(h);
    return rc;
}

/* ---- schema -------------------------------------------------------------------------------- */

typedef struct kv {
    const char *k1, *v1, *k2, *v2;
    size_t l1;
} kv_t;

static int kv_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    kv_t *kv = ctx;
    int rc = cs__put(txn, h->db[CS_DB_META], kv->k1, strlen(kv->k1), kv->v1, kv->l1);
    if (!rc && kv->k2) rc = cs__meta_put(h, txn, kv->k2, kv->v2);
    return rc;
}

/* GET /v1/schema (conditional on the stored ETag); stores and loads it. Under net. */
int cs__fetch_schema(casesync_t *h, casesync_error_t *err) {
    char inm[200] = "", *etag = NULL;
    pthread_mutex_lock(&h->lock);
    MDB_txn *txn;
    if (h->schema && cs__txn_begin(h, 0, &txn) == 0) {
        cs__meta_get(h, txn, "schema_etag", &etag);
        mdb_txn_abort(txn);
    }
    pthread_mutex_unlock(&h->lock);
    if (etag) snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    free(etag);
    const char *hdrs[] = {inm[0] ? inm : NULL, NULL};
    cs__req_t rq = {
        .method = "GET", .url = "/v1/schema", .auth = 1, .phase = CASESYNC_PHASE_OTHER, .headers = hdrs};
    cs__resp_t rs;
    int rc = cs__http(h, &rq, &rs, err);
    if (rc) return rc;
    if (rs.status == 304) {
        cs__resp_free(&rs);
        return 0;
    }
    if (rs.status != 200) {
        rc = cs__http_error(h, &rs, "GET /v1/schema", err);
        cs__resp_free(&rs);
        return rc;
    }
    schema_t *s = NULL;
    schema_err_t se;
    if (schema_load(rs.body, rs.len, &s, &se) != 0) {
        cs__resp_free(&rs);
        return cs__fail(err, CASESYNC_E_PROTOCOL, 200, NULL, se.path, "the server's schema: %s", se.message);
    }
    char et[200];
    kv_t kv = {"schema", rs.body, "schema_etag", cs__resp_header(&rs, "ETag", et, sizeof et), rs.len};
    pthread_mutex_lock(&h->lock);
    rc = cs__with_write(h, kv_txn, &kv);
    if (!rc) {
        schema_free(h->schema);
        h->schema = s;
        s = NULL;
    }
    pthread_mutex_unlock(&h->lock);
    schema_free(s);
    cs__resp_free(&rs);
    return rc ? cs__fail(err, rc, 0, NULL, NULL, "cannot store the schema") : 0;
}

/* ---- login ------------------------------------------------------------------------------------ */

typedef struct login_ctx {
    const char *server, *token, *device_id;
    cJSON *user;
    int64_t next;
    casesync_error_t *err;
} login_ctx_t;

static int db_empty(casesync_t *h, MDB_txn *txn, int db) {
    MDB_stat st;
    return mdb_stat(txn, h->db[db], &st) == 0 && st.ms_entries == 0;
}

static int login_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    login_ctx_t *l = ctx;
    char *user = NULL, *dev = NULL, *server = NULL;
    int rc = 0;
    cs__meta_get(h, txn, "user", &user);
    cs__meta_get(h, txn, "device_id", &dev);
    cs__meta_get(h, txn, "server", &server);
    cJSON *u = user ? cs__parse(user, strlen(user)) : NULL;
    const char *old_uid = cs__jstr(u, "id"), *new_uid = cs__jstr(l->user, "id");
    int other = (old_uid && new_uid && strcmp(old_uid, new_uid) != 0) ||
                (dev && strcmp(dev, l->device_id) != 0) || (server && strcmp(server, l->server) != 0);
    if (other) {
        if (!db_empty(h, txn, CS_DB_CHANGES)) {
            rc = cs__fail(l->err, CASESYNC_E_STATE, 0, NULL, NULL,
                          "this phone holds unsent changes of %s on %s: sync them or wipe first",
                          old_uid ? old_uid : "another user", dev ? dev : "another device");
            goto done;
        }
        if ((rc = cs__wipe_locked(h, txn, 0))) goto done;
    }
    char *utext = cJSON_PrintUnformatted(l->user);
    if (!utext) {
        rc = CASESYNC_E_NOMEM;
        goto done;
    }
    rc = cs__meta_put(h, txn, "user", utext);
    free(utext);
    if (!rc) rc = cs__meta_put(h, txn, "server", l->server);
    if (!rc) rc = cs__meta_put(h, txn, "token", l->token);
    if (!rc) rc = cs__meta_put(h, txn, "device_id", l->device_id);
    /* With sealed changesets waiting, their numbers stand: the push sorts out
     * replays, gaps and reuse. Otherwise start where the server stands. */
    if (!rc && db_empty(h, txn, CS_DB_OUTBOX) && l->next > 0)
        rc = cs__meta_put_int(h, txn, "next_cs", l->next);
done:
    cJSON_Delete(u);
    free(user), free(dev), free(server);
    return rc;
}

int casesync_login(casesync_t *h, const char *server_url, const char *username, const char *password,
                   const char *device_id, casesync_error_t *err) {
    cs__err_clear(err);
    if (!h || !server_url || !username || !password || !device_id)
        return cs__fail(err, CASESYNC_E_ARG, 0, NULL, NULL,
                        "server, username, password and device_id are required");
    if (strncmp(server_url, "http://", 7) != 0 && strncmp(server_url, "https://", 8) != 0)
        return cs__fail(err, CASESYNC_E_ARG, 0, NULL, "server",
                        "the server URL must start with http:// or https://");
    if (strlen(device_id) < 1 || strlen(device_id) > 64)
        return cs__fail(err, CASESYNC_E_ARG, 0, NULL, "device_id", "device_id must have 1..64 characters");
    int rc = cs__net_enter(h);
    if (rc) return cs__fail(err, rc, 0, NULL, NULL, "%s", casesync_strerror(rc));
    char server[1024], url[1100];
    snprintf(server, sizeof server, "%s", server_url);
    size_t sl = strlen(server);
    while (sl > 0 && server[sl - 1] == '/')
        server[--sl] = 0;
    snprintf(url, sizeof url, "%s/v1/auth/login", server);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "username", username);
    cJSON_AddStringToObject(body, "password", password);
    cJSON_AddStringToObject(body, "device_id", device_id);
    if (h->device_name) cJSON_AddStringToObject(body, "device_name", h->device_name);
    if (h->app_version) cJSON_AddStringToObject(body, "app_version", h->app_version);
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    cs__resp_t rs = {0};
    cs__req_t rq = {.method = "POST",
                    .url = url,
                    .body = text,
                    .body_len = text ? strlen(text) : 0,
                    .phase = CASESYNC_PHASE_LOGIN};
    rq.raw_len = rq.body_len;
    if (!text) {
        rc = cs__fail(err, CASESYNC_E_NOMEM, 0, NULL, NULL, "out of memory");
        goto done;
    }
    if ((rc = cs__http(h, &rq, &rs, err))) goto done;
    if (rs.status != 200) {
        rc = cs__http_error(h, &rs, "login", err);
        goto done;
    }
    cJSON *j = cs__resp_json(&rs);
    login_ctx_t l = {server,
                     cs__jstr(j, "token"),
                     device_id,
                     cJSON_GetObjectItemCaseSensitive(j, "user"),
                     cs__jint(j, "next_changeset_seq", 0),
                     err};
    if (cs__jstr(j, "device_id")) l.device_id = cs__jstr(j, "device_id");
    if (!l.token || !cJSON_IsObject(l.user) || !cs__jstr(l.user, "id") || !cs__jstr(l.user, "role")) {
        rc = cs__fail(err, CASESYNC_E_PROTOCOL, 200, NULL, NULL, "login answer without token or user");
        goto done;
    }
    pthread_mutex_lock(&h->lock);
    rc = cs__with_write(h, login_txn, &l);
    cs__session_load(h);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        if (!err || !err->code) cs__fail(err, rc, 0, NULL, NULL, "cannot store the session");
        goto done;
    }
    casesync_error_t serr;
    int src = cs__fetch_schema(h, &serr);
    if (src) {
        pthread_mutex_lock(&h->lock);
        int have = h->schema != NULL;
        pthread_mutex_unlock(&h->lock);
        if (!have) {
            rc = src;
            if (err) *err = serr;
        }
    }
done:
    free(text);
    cs__resp_free(&rs);
    cs__net_leave(h);
    if (!rc) cs__err_clear(err);
    return rc;
}

static int logout_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    return cs__meta_put(h, txn, "token", NULL);
}

int casesync_logout(casesync_t *h, casesync_error_t *err) {
    cs__err_clear(err);
    if (!h) return CASESYNC_E_ARG;
    int rc = cs__net_enter(h);
    if (rc) return rc;
    cs__req_t rq = {.method = "POST", .url = "/v1/auth/logout", .auth = 1, .phase = CASESYNC_PHASE_LOGIN};
    cs__resp_t rs;
    if (h->token && cs__http(h, &rq, &rs, NULL) == 0) cs__resp_free(&rs); /* best effort */
    pthread_mutex_lock(&h->lock);
    rc = cs__with_write(h, logout_txn, NULL);
    cs__session_load(h);
    pthread_mutex_unlock(&h->lock);
    cs__net_leave(h);
    return rc;
}

/* ---- seal ------------------------------------------------------------------------------------ */

typedef struct seal_ctx {
    int sealed;
} seal_ctx_t;

static int write_changeset(casesync_t *h, MDB_txn *txn, int64_t seq, cJSON *changes, cJSON *lseqs) {
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "device_id", h->device_id);
    cJSON_AddNumberToObject(body, "changeset_seq", (double)seq);
    cJSON_AddNumberToObject(body, "schema_version", h->schema ? schema_version(h->schema) : 1);
    cJSON_AddItemReferenceToObject(body, "changes", changes);
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (!text) return CASESYNC_E_NOMEM;
    cJSON *entry = cJSON_CreateObject();
    cJSON_AddStringToObject(entry, "body", text);
    cJSON_AddItemReferenceToObject(entry, "lseqs", lseqs);
    free(text);
    unsigned char k[8];
    cs__be64(k, (uint64_t)seq);
    int rc = cs__put_json(txn, h->db[CS_DB_OUTBOX], k, 8, entry);
    cJSON_Delete(entry);
    return rc;
}

/* Has the upload a held change waits for finished? A change whose upload
 * is gone or failed stays held: its rejection notice tells the user. */
static int held_ready(casesync_t *h, MDB_txn *txn, const char *sha) {
    cJSON *up = NULL;
    if (!sha || cs__get_json(txn, h->db[CS_DB_UPLOADS], sha, strlen(sha), &up) != 0) return 0;
    const char *st = cs__jstr(up, "state");
    int done = st && strcmp(st, "done") == 0;
    cJSON_Delete(up);
    return done;
}

static int seal_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    seal_ctx_t *s = ctx;
    s->sealed = 0;
    int64_t next = cs__meta_int(h, txn, "next_cs", 1);
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, h->db[CS_DB_CHANGES], &cur);
    if (mrc) return cs__lmdb_rc(mrc);
    /* Collect the pending changes first; the loop below rewrites them. */
    cJSON *pend = cJSON_CreateArray();
    MDB_val k, v;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        cJSON *e = cs__parse(v.mv_data, v.mv_size);
        const char *state = cs__jstr(e, "state");
        if (state && strcmp(state, "held") == 0 && held_ready(h, txn, cs__jstr(e, "held_for"))) {
            /* Its bytes are uploaded now: the change goes out again. */
            cJSON_DeleteItemFromObjectCaseSensitive(e, "held_for");
            cJSON_ReplaceItemInObjectCaseSensitive(e, "state", cJSON_CreateString("pending"));
            state = "pending";
        }
        if (state && strcmp(state, "pending") == 0) {
            cJSON_AddNumberToObject(e, "lseq", (double)cs__rd64(k.mv_data));
            cJSON_AddItemToArray(pend, e);
        } else {
            cJSON_Delete(e);
        }
    }
    mdb_cursor_close(cur);
    int rc = 0, n = cJSON_GetArraySize(pend), i = 0;
    while (i < n && !rc) {
        cJSON *changes = cJSON_CreateArray(), *lseqs = cJSON_CreateArray();
        size_t bytes = 256;
        while (i < n && cJSON_GetArraySize(changes) < CS_MAX_CHANGES) {
            cJSON *e = cJSON_GetArrayItem(pend, i);
            cJSON *ch = cJSON_GetObjectItemCaseSensitive(e, "change");
            char *t = cJSON_PrintUnformatted(ch);
            size_t len = t ? strlen(t) : 0;
            free(t);
            if (cJSON_GetArraySize(changes) > 0 && bytes + len + 1 > CS_MAX_CHANGESET_BYTES) break;
            bytes += len + 1;
            cJSON_AddItemToArray(changes, cJSON_Duplicate(ch, 1));
            cJSON_AddItemToArray(lseqs, cJSON_CreateNumber(cs__jint(e, "lseq", 0)));
            /* The change is now part of changeset `next`. */
            cJSON_DeleteItemFromObjectCaseSensitive(e, "lseq");
            cJSON_ReplaceItemInObjectCaseSensitive(e, "state", cJSON_CreateString("sealed"));
            cJSON_AddNumberToObject(e, "cs", (double)next);
            unsigned char ck[8];
            cs__be64(ck, (uint64_t)cJSON_GetArrayItem(lseqs, cJSON_GetArraySize(lseqs) - 1)->valuedouble);
            if ((rc = cs__put_json(txn, h->db[CS_DB_CHANGES], ck, 8, e))) break;
            i++;
        }
        if (!rc) rc = write_changeset(h, txn, next, changes, lseqs);
        cJSON_Delete(changes);
        cJSON_Delete(lseqs);
        next++;
        s->sealed++;
    }
    cJSON_Delete(pend);
    if (!rc && s->sealed) rc = cs__meta_put_int(h, txn, "next_cs", next);
    return rc;
}

/* ---- push -------------------------------------------------------------------------------------- */

typedef struct outbox_entry {
    int64_t seq;
    char *body;
    cJSON *lseqs;
    int count; /* changesets in the outbox */
} outbox_entry_t;

static int outbox_first(casesync_t *h, outbox_entry_t *e) {
    memset(e, 0, sizeof *e);
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = cs__txn_begin(h, 0, &txn);
    if (rc) return rc;
    MDB_val k, v;
    MDB_stat st;
    if (mdb_stat(txn, h->db[CS_DB_OUTBOX], &st) == 0) e->count = (int)st.ms_entries;
    if ((rc = cs__lmdb_rc(mdb_cursor_open(txn, h->db[CS_DB_OUTBOX], &cur)))) goto done;
    if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0) {
        cJSON *j = cs__parse(v.mv_data, v.mv_size);
        e->seq = (int64_t)cs__rd64(k.mv_data);
        e->body = cs__strdup(cs__jstr(j, "body"));
        e->lseqs = cJSON_DetachItemFromObjectCaseSensitive(j, "lseqs");
        cJSON_Delete(j);
        if (!e->body || !cJSON_IsArray(e->lseqs)) rc = CASESYNC_E_STORE;
    }
    mdb_cursor_close(cur);
done:
    mdb_txn_abort(txn);
    return rc;
}

/* Renumbers the whole outbox to start at `from` (nothing was applied there). */
typedef struct renum {
    int64_t from;
    int64_t lost_from, lost_to; /* acked changesets the server no longer has */
    cs__events_t *ev;
} renum_t;

static int renumber_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    renum_t *r = ctx;
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, h->db[CS_DB_OUTBOX], &cur);
    if (mrc) return cs__lmdb_rc(mrc);
    cJSON *all = cJSON_CreateArray();
    MDB_val k, v;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        cJSON *e = cs__parse(v.mv_data, v.mv_size);
        if (e) cJSON_AddItemToArray(all, e);
    }
    mdb_cursor_close(cur);
    int rc = cs__clear_db(txn, h->db[CS_DB_OUTBOX]);
    int64_t seq = r->from;
    cJSON *e;
    cJSON_ArrayForEach(e, all) {
        if (rc) break;
        const char *text = cs__jstr(e, "body");
        cJSON *body = text ? cs__parse(text, strlen(text)) : NULL;
        if (!body) {
            rc = CASESYNC_E_STORE;
            break;
        }
        cJSON_ReplaceItemInObjectCaseSensitive(body, "changeset_seq", cJSON_CreateNumber((double)seq));
        rc = write_changeset(h, txn, seq, cJSON_GetObjectItemCaseSensitive(body, "changes"),
                             cJSON_GetObjectItemCaseSensitive(e, "lseqs"));
        cJSON_Delete(body);
        seq++;
    }
    cJSON_Delete(all);
    if (!rc) rc = cs__meta_put_int(h, txn, "next_cs", seq);
    if (!rc && r->lost_to >= r->lost_from && r->lost_from > 0) {
        cJSON *n = cJSON_CreateObject();
        cJSON_AddStringToObject(n, "kind", "lost");
        cJSON_AddNumberToObject(n, "from_changeset_seq", (double)r->lost_from);
        cJSON_AddNumberToObject(n, "to_changeset_seq", (double)r->lost_to);
        cJSON_AddStringToObject(n, "message",
                                "the server no longer has changesets it had acknowledged "
                                "(restored from a backup?)");
        rc = cs__notice_add(h, txn, n, r->ev);
    }
    return rc;
}

static int gap_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    cs__events_reset(((renum_t *)ctx)->ev);
    return renumber_txn(h, txn, ctx);
}

typedef struct results_ctx {
    const outbox_entry_t *e;
    cJSON *answer;
    int replay;
    casesync_report_t *rep;
    cs__events_t *ev;
} results_ctx_t;

static int count_kept_server(const cJSON *conflicts) {
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, conflicts) {
        const char *kept = cs__jstr(c, "kept");
        if (kept && strcmp(kept, "server") == 0) n++;
    }
    return n;
}

/* A change rejected with evidence_unknown names an evidence item whose bytes
 * the server holds but this user did not upload. When this phone holds those
 * bytes (an upload of them that has not failed), the change is held, not
 * dropped: once the upload is done its user is an uploader, and the change is
 * sealed again (seal_txn). The sha256 to wait for goes to sha. */
static int held_for_upload(casesync_t *h, MDB_txn *txn, const cJSON *change, const cJSON *res, char sha[65]) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(res, "error");
    const char *code = cs__jstr(e, "code"), *field = cs__jstr(e, "field");
    const char *at = field ? strstr(field, ".evidence[") : NULL;
    if (!code || strcmp(code, "evidence_unknown") != 0 || !at) return 0;
    const char *where = strstr(field, ".append.evidence[") ? "append" : "fields";
    int k = atoi(at + strlen(".evidence["));
    const cJSON *items =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(change, where), "evidence");
    const char *hash = cs__jstr(cJSON_GetArrayItem(items, k), "sha256");
    cJSON *up = NULL;
    if (!hash || strlen(hash) != 64 || cs__get_json(txn, h->db[CS_DB_UPLOADS], hash, 64, &up) != 0) return 0;
    const char *st = cs__jstr(up, "state");
    int held = st && strcmp(st, "failed") != 0;
    cJSON_Delete(up);
    if (held) snprintf(sha, 65, "%s", hash);
    return held;
}

static int results_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    results_ctx_t *r = ctx;
    cs__events_reset(r->ev);
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(r->answer, "results");
    int n = cJSON_GetArraySize(results);
    if (!cJSON_IsArray(results) || n != cJSON_GetArraySize(r->e->lseqs)) return CASESYNC_E_PROTOCOL;
    casesync_report_t tally = {0};
    int rc = 0;
    cJSON *touched = cJSON_CreateObject();
    for (int i = 0; i < n && !rc; i++) {
        const cJSON *res = cJSON_GetArrayItem(results, i);
        uint64_t lseq = (uint64_t)cJSON_GetArrayItem(r->e->lseqs, i)->valuedouble;
        unsigned char ck[8];
        cJSON *entry = NULL;
        cs__be64(ck, lseq);
        if (cs__get_json(txn, h->db[CS_DB_CHANGES], ck, 8, &entry) != 0) continue;
        cJSON *change = cJSON_GetObjectItemCaseSensitive(entry, "change");
        const char *id = cs__jstr(change, "record_id"), *status = cs__jstr(res, "status");
        if (!id || !status) {
            cJSON_Delete(entry);
            rc = CASESYNC_E_PROTOCOL;
            break;
        }
        char rid[CASESYNC_ID_MAX];
        snprintf(rid, sizeof rid, "%s", id);
        cJSON *evj = cJSON_Duplicate(res, 1);
        cJSON_AddNumberToObject(evj, "changeset_seq", (double)r->e->seq);
        cJSON_AddNumberToObject(evj, "index", i);
        cJSON_AddBoolToObject(evj, "replay", r->replay);
        cJSON_AddItemToObject(evj, "change", cJSON_Duplicate(change, 1));
        cs__events_add(r->ev, CASESYNC_EVENT_RESULT, rid, status, evj);
        cJSON_Delete(evj);
        const cJSON *conflicts = cJSON_GetObjectItemCaseSensitive(res, "conflicts");
        const char *kind = NULL;
        char held[65] = "";
        if (strcmp(status, "rejected") == 0) {
            tally.rejected++;
            kind = "rejected";
            if (held_for_upload(h, txn, change, res, held)) {
                cJSON_ReplaceItemInObjectCaseSensitive(entry, "state", cJSON_CreateString("held"));
                cJSON_DeleteItemFromObjectCaseSensitive(entry, "cs");
                cJSON_AddStringToObject(entry, "held_for", held);
                rc = cs__put_json(txn, h->db[CS_DB_CHANGES], ck, 8, entry);
            } else {
                rc = cs__change_del(h, txn, lseq, rid);
            }
        } else {
            if (strcmp(status, "applied") == 0)
                tally.applied++;
            else if (strcmp(status, "merged") == 0)
                tally.merged++;
            else if (strcmp(status, "conflict") == 0)
                tally.conflicts++;
            if (strcmp(status, "conflict") == 0)
                kind = "conflict";
            else if (count_kept_server(conflicts) > 0)
                kind = "overridden";
            cJSON_ReplaceItemInObjectCaseSensitive(entry, "state", cJSON_CreateString("acked"));
            cJSON_DeleteItemFromObjectCaseSensitive(entry, "ack_version");
            cJSON_DeleteItemFromObjectCaseSensitive(entry, "status");
            cJSON_AddNumberToObject(entry, "ack_version", (double)cs__jint(res, "version", 0));
            cJSON_AddStringToObject(entry, "status", status);
            rc = cs__put_json(txn, h->db[CS_DB_CHANGES], ck, 8, entry);
        }
        if (!rc && kind) {
            cJSON *nt = cJSON_CreateObject();
            cJSON_AddStringToObject(nt, "kind", kind);
            cJSON_AddStringToObject(nt, "record_id", rid);
            cJSON_AddNumberToObject(nt, "changeset_seq", (double)r->e->seq);
            cJSON_AddNumberToObject(nt, "index", i);
            cJSON_AddItemToObject(nt, "change", cJSON_Duplicate(change, 1));
            if (strcmp(kind, "rejected") == 0)
                cJSON_AddItemToObject(nt, "error",
                                      cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(res, "error"), 1));
            if (held[0])
                cJSON_AddStringToObject(nt, "held_for_upload", held);
            else
                cJSON_AddItemToObject(nt, "result", cJSON_Duplicate(res, 1));
            rc = cs__notice_add(h, txn, nt, r->ev);
        }
        cJSON_Delete(entry);
        if (!cJSON_GetObjectItemCaseSensitive(touched, rid)) cJSON_AddTrueToObject(touched, rid);
    }
    /* Once per record, not per change: a changeset may hold 1000 notes of one case. */
    const cJSON *t;
    cJSON_ArrayForEach(t, touched) {
        if (!rc) rc = cs__drop_acked(h, txn, t->string, 0);
        if (!rc) rc = cs__view_refresh(h, txn, t->string);
    }
    cJSON_Delete(touched);
    if (rc) return rc;
    unsigned char k[8];
    cs__be64(k, (uint64_t)r->e->seq);
    if ((rc = cs__del(txn, h->db[CS_DB_OUTBOX], k, 8))) return rc;
    /* Counted only once the transaction is sure to commit. */
    r->rep->applied += tally.applied, r->rep->merged += tally.merged;
    r->rep->conflicts += tally.conflicts, r->rep->rejected += tally.rejected;
    return 0;
}

typedef struct failed_ctx {
    const outbox_entry_t *e;
    long status;
    const cJSON *error;
    cs__events_t *ev;
} failed_ctx_t;

/* A changeset refused as a whole: its changes become a notice, its number is
 * free again and the changesets behind it move down by one. */
static int failed_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    failed_ctx_t *f = ctx;
    cs__events_reset(f->ev);
    int rc = 0;
    cJSON *ids = cJSON_CreateArray(), *it;
    cJSON_ArrayForEach(it, f->e->lseqs) {
        uint64_t lseq = (uint64_t)it->valuedouble;
        unsigned char ck[8];
        cJSON *entry = NULL;
        cs__be64(ck, lseq);
        if (cs__get_json(txn, h->db[CS_DB_CHANGES], ck, 8, &entry) != 0) continue;
        const char *id = cs__jstr(cJSON_GetObjectItemCaseSensitive(entry, "change"), "record_id");
        if (id) {
            cJSON_AddItemToArray(ids, cJSON_CreateString(id));
            rc = cs__change_del(h, txn, lseq, id);
        }
        cJSON_Delete(entry);
        if (rc) break;
    }
    cJSON_ArrayForEach(it, ids) if (!rc) rc = cs__view_refresh(h, txn, it->valuestring);
    cJSON_Delete(ids);
    if (rc) return rc;
    unsigned char k[8];
    cs__be64(k, (uint64_t)f->e->seq);
    if ((rc = cs__del(txn, h->db[CS_DB_OUTBOX], k, 8))) return rc;
    cJSON *n = cJSON_CreateObject();
    cJSON_AddStringToObject(n, "kind", "failed");
    cJSON_AddNumberToObject(n, "changeset_seq", (double)f->e->seq);
    cJSON_AddNumberToObject(n, "http_status", (double)f->status);
    cJSON_AddItemToObject(n, "error", f->error ? cJSON_Duplicate(f->error, 1) : cJSON_CreateNull());
    cJSON *body = cs__parse(f->e->body, strlen(f->e->body));
    cJSON_AddItemToObject(n, "body", body ? body : cJSON_CreateNull());
    cJSON *evj = cJSON_CreateObject();
    cJSON_AddNumberToObject(evj, "changeset_seq", (double)f->e->seq);
    cJSON_AddNumberToObject(evj, "status", (double)f->status);
    cJSON_AddItemToObject(evj, "error", f->error ? cJSON_Duplicate(f->error, 1) : cJSON_CreateNull());
    cJSON_AddNumberToObject(evj, "changes", cJSON_GetArraySize(f->e->lseqs));
    cs__events_add(f->ev, CASESYNC_EVENT_FAILED, NULL, NULL, evj);
    cJSON_Delete(evj);
    if ((rc = cs__notice_add(h, txn, n, f->ev))) return rc;
    renum_t r = {f->e->seq, 0, -1, f->ev};
    return renumber_txn(h, txn, &r);
}

static void outbox_entry_free(outbox_entry_t *e) {
    free(e->body);
    cJSON_Delete(e->lseqs);
    memset(e, 0, sizeof *e);
}

/* POST one body; 0 with *rs filled when an HTTP answer came. */
static int post_changeset(casesync_t *h, const char *body, cs__resp_t *rs, casesync_error_t *err) {
    size_t raw = strlen(body);
    void *gz = NULL;
    size_t gzn = 0;
    if (!h->no_gzip && cs__gzip(body, raw, &gz, &gzn) != 0) gz = NULL;
    cs__req_t rq = {.method = "POST",
                    .url = "/v1/sync/push",
                    .auth = 1,
                    .body = gz ? gz : body,
                    .body_len = gz ? gzn : raw,
                    .raw_len = raw,
                    .gzipped = gz != NULL,
                    .phase = CASESYNC_PHASE_PUSH};
    int rc = cs__http(h, &rq, rs, err);
    free(gz);
    return rc;
}

/* After changeset_reused: our number was taken by another body (a reinstall
 * that reused the device id, a restored phone). An empty changeset far ahead
 * is always a gap, which names the number the server expects. */
static int probe_expected(casesync_t *h, int64_t *expected, casesync_error_t *err) {
    char body[256];
    pthread_mutex_lock(&h->lock);
    snprintf(body, sizeof body,
             "{\"device_id\":\"%s\",\"changeset_seq\":%lld,\"schema_version\":%d,\"changes\":[]}",
             h->device_id ? h->device_id : "", (long long)PROBE_SEQ,
             h->schema ? schema_version(h->schema) : 1);
    pthread_mutex_unlock(&h->lock);
    cs__resp_t rs;
    int rc = post_changeset(h, body, &rs, err);
    if (rc) return rc;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(cs__resp_json(&rs), "error");
    const char *code = cs__jstr(e, "code");
    if (rs.status == 409 && code && strcmp(code, "changeset_gap") == 0 && cs__jint(e, "expected", 0) > 0) {
        *expected = cs__jint(e, "expected", 0);
    } else {
        rc = rs.status >= 400
                 ? cs__http_error(h, &rs, "push (probe)", err)
                 : cs__fail(err, CASESYNC_E_PROTOCOL, rs.status, NULL, NULL, "probe was not a gap");
    }
    cs__resp_free(&rs);
    return rc;
}

static int push_all(casesync_t *h, casesync_report_t *rep, casesync_error_t *err) {
    int step = 0, renumbers = 0;
    for (;;) {
        outbox_entry_t e;
        pthread_mutex_lock(&h->lock);
        int rc = outbox_first(h, &e);
        pthread_mutex_unlock(&h->lock);
        if (rc) return cs__fail(err, rc, 0, NULL, NULL, "cannot read the outbox");
        if (!e.body) return 0;
        h->prog.phase = CASESYNC_PHASE_PUSH;
        h->prog.step = ++step;
        h->prog.steps = step - 1 + e.count;
        cs__resp_t rs;
        rc = post_changeset(h, e.body, &rs, err);
        if (rc) {
            outbox_entry_free(&e);
            return rc;
        }
        cs__events_t ev = {0};
        cJSON *j = cs__resp_json(&rs);
        const cJSON *jerr = cJSON_GetObjectItemCaseSensitive(j, "error");
        const char *code = cs__jstr(jerr, "code");
        char hv[16];
        if (rs.status == 200) {
            int replay = cs__resp_header(&rs, "Idempotent-Replay", hv, sizeof hv) && strcmp(hv, "true") == 0;
            if (!cJSON_IsObject(j) || cs__jint(j, "changeset_seq", -1) != e.seq) {
                rc = cs__fail(err, CASESYNC_E_PROTOCOL, 200, NULL, NULL, "push answer for another changeset");
            } else {
                casesync_report_t tally = {0};
                results_ctx_t r = {&e, j, replay, &tally, &ev};
                pthread_mutex_lock(&h->lock);
                rc = cs__with_write(h, results_txn, &r);
                if (!rc) {
                    h->stats.changesets_pushed++;
                    h->stats.replays += (uint64_t)replay;
                    h->stats.changes_pushed += (uint64_t)cJSON_GetArraySize(e.lseqs);
                    h->stats.applied += (uint64_t)tally.applied, h->stats.merged += (uint64_t)tally.merged;
                    h->stats.conflicts += (uint64_t)tally.conflicts,
                        h->stats.rejected += (uint64_t)tally.rejected;
                }
                pthread_mutex_unlock(&h->lock);
                if (!rc) {
                    rep->changesets++;
                    rep->replays += replay;
                    rep->applied += tally.applied, rep->merged += tally.merged;
                    rep->conflicts += tally.conflicts, rep->rejected += tally.rejected;
                    /* A different schema on the server: refresh it for the next edits. */
                    if (h->schema && cs__jint(j, "schema_version", 0) != schema_version(h->schema))
                        cs__fetch_schema(h, NULL);
                } else {
                    cs__fail(err, rc, 200, NULL, NULL, "cannot record the push results");
                }
            }
        } else if (rs.status == 409 && code && strcmp(code, "changeset_gap") == 0) {
            int64_t expected = cs__jint(jerr, "expected", 0);
            if (expected < 1 || expected >= e.seq || ++renumbers > 3) {
                rc = cs__fail(err, CASESYNC_E_PROTOCOL, 409, code, NULL,
                              "changeset_gap expecting %lld for changeset %lld", (long long)expected,
                              (long long)e.seq);
            } else {
                /* Every number from `expected` on is unapplied: ours move down. */
                renum_t r = {expected, expected, e.seq - 1, &ev};
                pthread_mutex_lock(&h->lock);
                rc = cs__with_write(h, gap_txn, &r);
                pthread_mutex_unlock(&h->lock);
            }
        } else if (rs.status == 409 && code && strcmp(code, "changeset_reused") == 0) {
            int64_t expected = 0;
            if (++renumbers > 3) {
                rc = cs__fail(err, CASESYNC_E_PROTOCOL, 409, code, NULL,
                              "changeset_reused again after renumbering");
            } else if (!(rc = probe_expected(h, &expected, err))) {
                if (expected <= e.seq) {
                    rc = cs__fail(err, CASESYNC_E_PROTOCOL, 409, code, NULL,
                                  "changeset %lld reused yet %lld expected", (long long)e.seq,
                                  (long long)expected);
                } else {
                    renum_t r = {expected, 0, -1, &ev};
                    pthread_mutex_lock(&h->lock);
                    rc = cs__with_write(h, gap_txn, &r);
                    pthread_mutex_unlock(&h->lock);
                }
            }
        } else if (rs.status == 422 || rs.status == 413) {
            failed_ctx_t f = {&e, rs.status, jerr, &ev};
            pthread_mutex_lock(&h->lock);
            rc = cs__with_write(h, failed_txn, &f);
            if (!rc) h->stats.failed_changesets++;
            pthread_mutex_unlock(&h->lock);
            if (!rc) rep->failed++;
            step--;
        } else {
            rc = cs__http_error(h, &rs, "push", err);
        }
        cs__resp_free(&rs);
        outbox_entry_free(&e);
        cs__events_fire(h, &ev);
        if (rc) return rc;
    }
}

/* ---- pull ---------------------------------------------------------------------------------------- */

static void put_member(cJSON *o, const char *key, cJSON *v) {
    if (cJSON_GetObjectItemCaseSensitive(o, key))
        cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else
        cJSON_AddItemToObject(o, key, v);
}

/* A pull item or a GET /v1/cases/{id} answer as a base record. Its members
 * are references to the item's (no copy): the base is only printed, and
 * deleted before the item. */
static cJSON *base_from(const cJSON *item, const char *id) {
    static const char *const keys[] = {"type",   "version",   "seq",        "status",     "voided",
                                       "fields", "conflicts", "created_at", "created_by", "updated_at"};
    cJSON *b = cJSON_CreateObject();
    int ok = cJSON_AddStringToObject(b, "id", id) != NULL;
    for (size_t i = 0; ok && i < sizeof keys / sizeof keys[0]; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(item, keys[i]);
        if (v) ok = cJSON_AddItemReferenceToObject(b, keys[i], v);
    }
    if (ok && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(b, "fields"))) {
        cJSON *empty = cJSON_CreateObject();
        ok = empty != NULL;
        if (ok) put_member(b, "fields", empty);
    }
    if (!ok) {
        cJSON_Delete(b);
        return NULL; /* out of memory: store_base answers CASESYNC_E_NOMEM */
    }
    return b;
}

/* Merges a delta (full:false) into a base: changed fields whole, new items of
 * append lists by id. */
static void merge_delta(cJSON *base, const cJSON *item) {
    static const char *const keys[] = {"type",   "version",   "seq",       "status",
                                       "voided", "conflicts", "updated_at"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, keys[i]);
        if (v) put_member(base, keys[i], cJSON_Duplicate(v, 1));
    }
    cJSON *fields = cJSON_GetObjectItemCaseSensitive(base, "fields");
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(item, "fields")) {
        if (cJSON_IsNull(f))
            cJSON_DeleteItemFromObjectCaseSensitive(fields, f->string);
        else
            put_member(fields, f->string, cJSON_Duplicate(f, 1));
    }
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(item, "appended")) {
        cJSON *list = cJSON_GetObjectItemCaseSensitive(fields, f->string);
        if (!cJSON_IsArray(list)) {
            list = cJSON_CreateArray();
            put_member(fields, f->string, list);
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, f) {
            const char *iid = cs__jstr(it, "id");
            int have = 0;
            const cJSON *y;
            cJSON_ArrayForEach(y, list) if (iid && cs__jstr(y, "id") && strcmp(iid, cs__jstr(y, "id")) == 0)
                have = 1;
            if (!have) cJSON_AddItemToArray(list, cJSON_Duplicate(it, 1));
        }
    }
}

/* Has the record local changes not yet answered (pending or sealed)? */
static int has_unsent(casesync_t *h, MDB_txn *txn, const char *id) {
    cJSON *view = NULL;
    int n = 0;
    if (cs__get_json(txn, h->db[CS_DB_VIEW], id, strlen(id), &view) == 0)
        n = (int)cs__jint(view, "pending", 0);
    cJSON_Delete(view);
    return n > 0;
}

typedef struct page_ctx {
    cJSON *page;
    int scratch;
    int checks;   /* deltas sent for a GET instead (see page_txn) */
    cJSON *fetch; /* ids of deltas for records we do not hold */
    casesync_report_t tally;
    cs__events_t *ev;
} page_ctx_t;

/* Prints j into h's print buffer (grown as needed); NULL when out of
 * memory. Under lock. */
static char *print_buf(casesync_t *h, const cJSON *j, size_t *len) {
    for (int tries = 0; tries < 24; tries++) {
        /* cJSON_PrintPreallocated wants 5 bytes more than the text. */
        if (h->print_cap > 5 && cJSON_PrintPreallocated((cJSON *)j, h->print_buf, (int)h->print_cap, 0)) {
            *len = strlen(h->print_buf);
            return h->print_buf;
        }
        size_t cap = h->print_cap ? h->print_cap * 2 : 16384;
        if (cap > (size_t)INT_MAX) return NULL;
        char *p = realloc(h->print_buf, cap);
        if (!p) return NULL;
        h->print_buf = p;
        h->print_cap = cap;
    }
    return NULL;
}

/* Stores a pulled base, rebases the record's view and queues its event.
 * The base is printed once. A record with no local change -- every record
 * of a first sync, most of any pull -- keeps no stored view (its view is
 * its base, cs__view_get): one left by an older store is dropped. */
static int store_base(casesync_t *h, MDB_txn *txn, const char *id, const cJSON *base, int scratch,
                      cs__events_t *ev) {
    size_t n = 0, idl = strlen(id);
    char *text = print_buf(h, base, &n);
    if (!text) return CASESYNC_E_NOMEM;
    int rc = cs__put(txn, h->db[CS_DB_BASE], id, idl, text, n);
    if (!rc && scratch) rc = cs__put(txn, h->db[CS_DB_SEEN], id, idl, "", 0);
    /* The event's JSON is only read by an on_event callback. */
    if (!rc)
        cs__events_add_text(ev, CASESYNC_EVENT_RECORD, id, cs__jstr(base, "status"),
                            h->on_event ? text : NULL);
    int local = rc ? 0 : cs__has_changes(h, txn, id);
    if (local < 0) rc = local;
    if (!rc && local) {
        rc = cs__drop_acked(h, txn, id, 0);
        if (!rc) rc = cs__view_refresh(h, txn, id);
    } else if (!rc) {
        rc = cs__del(txn, h->db[CS_DB_VIEW], id, idl);
    }
    return rc;
}

static int remove_record(casesync_t *h, MDB_txn *txn, const char *id, const char *reason, cs__events_t *ev) {
    int unsent = has_unsent(h, txn, id);
    int rc = cs__del(txn, h->db[CS_DB_BASE], id, strlen(id));
    if (!rc) rc = cs__drop_acked(h, txn, id, 1);
    if (!rc) rc = cs__view_refresh(h, txn, id);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "record_id", id);
    cJSON_AddStringToObject(j, "reason", reason ? reason : "");
    cs__events_add(ev, CASESYNC_EVENT_REMOVED, id, reason, j);
    if (!rc && unsent) {
        cJSON_AddStringToObject(j, "kind", "removed");
        cJSON_AddStringToObject(j, "message",
                                "the record left this phone's scope while it had unsent changes");
        return cs__notice_add(h, txn, j, ev);
    }
    cJSON_Delete(j);
    return rc;
}

static int page_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    page_ctx_t *p = ctx;
    cs__events_reset(p->ev);
    memset(&p->tally, 0, sizeof p->tally);
    p->checks = 0;
    cJSON_Delete(p->fetch);
    p->fetch = cJSON_CreateArray();
    const cJSON *it;
    int rc = 0;
    /* Did the page before this one say more:true? Then a record whose feed
     * entry moved past that page's end while it was built (a later change,
     * or a conflict opened without a new version) comes here as a delta
     * relative to this page's start only, without the changes it had inside
     * the previous page's range. So on such a page a delta that brings a new
     * version is not applied: the record is read whole (GET /v1/cases/{id}).
     * A delta without a new version changed no field and is safe. */
    char *paging = NULL;
    cs__meta_get(h, txn, "paging", &paging);
    int after_more = paging != NULL && !h->no_delta_check;
    free(paging);
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(p->page, "changes")) {
        if (rc) break;
        const char *op = cs__jstr(it, "op"), *id = cs__jstr(it, "record_id");
        if (!op || !id || !cs__id_ok(id)) continue;
        if (strcmp(op, "remove") == 0) {
            rc = remove_record(h, txn, id, cs__jstr(it, "reason"), p->ev);
            p->tally.removals++;
            continue;
        }
        if (strcmp(op, "upsert") != 0) continue;
        cJSON *base = NULL;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "full"))) {
            base = base_from(it, id);
        } else if (cs__get_json(txn, h->db[CS_DB_BASE], id, strlen(id), &base) == 0) {
            if (after_more && cs__jint(it, "version", 0) > cs__jint(base, "version", 0)) {
                cJSON_Delete(base);
                cJSON_AddItemToArray(p->fetch, cJSON_CreateString(id));
                p->checks++;
                continue;
            }
            merge_delta(base, it);
        } else {
            cJSON_AddItemToArray(p->fetch, cJSON_CreateString(id)); /* a delta of a record we lack */
            continue;
        }
        rc = store_base(h, txn, id, base, p->scratch, p->ev);
        cJSON_Delete(base);
        p->tally.upserts++;
    }
    const char *cursor = cs__jstr(p->page, "cursor");
    if (!rc && cursor) rc = cs__meta_put(h, txn, "cursor", cursor);
    if (!rc)
        rc = cs__meta_put(h, txn, "paging",
                          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p->page, "more")) ? "1" : NULL);
    return rc;
}

/* After a pull from scratch: records not met are not in scope any more. */
static int sweep_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    cs__events_t *ev = ctx;
    cs__events_reset(ev);
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, h->db[CS_DB_BASE], &cur);
    if (mrc) return cs__lmdb_rc(mrc);
    cJSON *gone = cJSON_CreateArray();
    MDB_val k, v, sv;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (mdb_get(txn, h->db[CS_DB_SEEN], &k, &sv) == MDB_NOTFOUND) {
            char id[CASESYNC_ID_MAX];
            size_t n = k.mv_size < sizeof id - 1 ? k.mv_size : sizeof id - 1;
            memcpy(id, k.mv_data, n);
            id[n] = 0;
            cJSON_AddItemToArray(gone, cJSON_CreateString(id));
        }
    }
    mdb_cursor_close(cur);
    int rc = 0;
    const cJSON *g;
    cJSON_ArrayForEach(g, gone) if (!rc) rc = remove_record(h, txn, g->valuestring, "out_of_scope", ev);
    cJSON_Delete(gone);
    if (!rc) rc = cs__clear_db(txn, h->db[CS_DB_SEEN]);
    if (!rc) rc = cs__meta_put(h, txn, "scratch", NULL);
    return rc;
}

static int restart_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    int rc = cs__meta_put(h, txn, "cursor", NULL);
    if (!rc) rc = cs__meta_put(h, txn, "paging", NULL);
    if (!rc) rc = cs__clear_db(txn, h->db[CS_DB_SEEN]);
    if (!rc) rc = cs__meta_put(h, txn, "scratch", "1");
    return rc;
}

typedef struct fetched {
    const char *id;
    cJSON *rec; /* NULL: gone (403/404) */
    int scratch;
    cs__events_t *ev;
} fetched_t;

static int fetched_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    fetched_t *f = ctx;
    cs__events_reset(f->ev);
    if (!f->rec) return remove_record(h, txn, f->id, "out_of_scope", f->ev);
    cJSON *base = base_from(f->rec, f->id);
    int rc = store_base(h, txn, f->id, base, f->scratch, f->ev);
    cJSON_Delete(base);
    return rc;
}

/* GET /v1/cases/{id} into the base (or drops it when gone). */
static int fetch_record(casesync_t *h, const char *id, int scratch, casesync_error_t *err) {
    char path[128];
    snprintf(path, sizeof path, "/v1/cases/%s", id);
    cs__req_t rq = {.method = "GET", .url = path, .auth = 1, .phase = CASESYNC_PHASE_OTHER};
    cs__resp_t rs;
    int rc = cs__http(h, &rq, &rs, err);
    if (rc) return rc;
    cs__events_t ev = {0};
    fetched_t f = {id, NULL, scratch, &ev};
    if (rs.status == 200 && cJSON_IsObject(cs__resp_json(&rs))) {
        f.rec = rs.json;
    } else if (rs.status != 403 && rs.status != 404) {
        rc = cs__http_error(h, &rs, path, err);
        cs__resp_free(&rs);
        return rc;
    }
    pthread_mutex_lock(&h->lock);
    rc = cs__with_write(h, fetched_txn, &f);
    pthread_mutex_unlock(&h->lock);
    cs__resp_free(&rs);
    cs__events_fire(h, &ev);
    return rc ? cs__fail(err, rc, 0, NULL, NULL, "cannot store record %s", id) : 0;
}

/* Starts the request of a pull page: the first (cursor NULL) or the one after
 * `cursor`. */
static int pull_start(casesync_t *h, const char *cursor, int page, cs__call_t **call, casesync_error_t *err) {
    char *esc = cursor ? curl_easy_escape(NULL, cursor, 0) : NULL;
    size_t ul = 64 + (esc ? strlen(esc) : 0);
    char *url = (cursor && !esc) ? NULL : malloc(ul);
    if (!url) {
        curl_free(esc);
        return cs__fail(err, CASESYNC_E_NOMEM, 0, NULL, NULL, "out of memory");
    }
    snprintf(url, ul, "/v1/sync/pull?limit=%d%s%s", h->pull_limit, esc ? "&cursor=" : "", esc ? esc : "");
    curl_free(esc);
    h->prog.phase = CASESYNC_PHASE_PULL;
    h->prog.step = page;
    h->prog.steps = 0;
    cs__req_t rq = {.method = "GET", .url = url, .auth = 1, .phase = CASESYNC_PHASE_PULL};
    int rc = cs__http_start(h, &rq, call, err);
    free(url);
    return rc;
}

/* Waits for a request started ahead and throws its answer away. */
static void pull_drop(casesync_t *h, cs__call_t **call) {
    cs__resp_t rs;
    if (*call && cs__http_finish(h, *call, &rs, NULL) == 0) cs__resp_free(&rs);
    *call = NULL;
}

/* Pages until `more` is false. The request of the next page goes out (with
 * the cursor of the page just received) before that page is stored, so the
 * server builds one page while the phone stores the one before; the cursor
 * in the store still moves only with the page it belongs to. A pull is a
 * read -- the server keeps nothing of it but the device's last_pull_at --
 * so a page requested and never stored (an error, a kill) costs only bytes:
 * the next sync asks again from the stored cursor. When a page needs other
 * calls before the next one (records read whole, a new schema), the page
 * requested ahead is dropped and asked for again after them, so no page is
 * older than a record read before it. */
static int pull_pages(casesync_t *h, casesync_report_t *rep, casesync_error_t *err) {
    int restarts = 0, page = 0;
    cs__call_t *next = NULL; /* the next page's request, in flight */
    for (;;) {
        char *cursor = NULL, *scratch = NULL;
        pthread_mutex_lock(&h->lock);
        MDB_txn *txn;
        int rc = cs__txn_begin(h, 0, &txn);
        if (!rc) {
            cs__meta_get(h, txn, "cursor", &cursor);
            cs__meta_get(h, txn, "scratch", &scratch);
            mdb_txn_abort(txn);
        }
        /* No cursor: a pull from scratch, whose end sweeps what it did not
         * meet. The flag outlives the pages (and an interrupted sync). */
        int is_scratch = scratch != NULL;
        if (!rc && !cursor && !scratch) {
            rc = cs__with_write(h, restart_txn, NULL);
            is_scratch = 1;
        }
        pthread_mutex_unlock(&h->lock);
        free(scratch);
        if (rc) {
            free(cursor);
            cs__http_abandon(h, next);
            return cs__fail(err, rc, 0, NULL, NULL, "cannot read the pull state");
        }
        cs__resp_t rs;
        if (!next) rc = pull_start(h, cursor, ++page, &next, err);
        free(cursor);
        if (!rc) rc = cs__http_finish(h, next, &rs, err);
        next = NULL;
        if (rc) return rc;
        cJSON *j = cs__resp_json(&rs);
        const char *code = cs__jstr(cJSON_GetObjectItemCaseSensitive(j, "error"), "code");
        if (rs.status == 410 || (rs.status == 400 && code && strcmp(code, "bad_cursor") == 0)) {
            cs__resp_free(&rs);
            if (++restarts > 2)
                return cs__fail(err, CASESYNC_E_PROTOCOL, 410, code, NULL, "cursor refused again");
            pthread_mutex_lock(&h->lock);
            rc = cs__with_write(h, restart_txn, NULL);
            h->stats.full_resyncs++;
            pthread_mutex_unlock(&h->lock);
            if (rc) return cs__fail(err, rc, 0, NULL, NULL, "cannot reset the cursor");
            continue;
        }
        if (rs.status != 200) {
            rc = cs__http_error(h, &rs, "pull", err);
            cs__resp_free(&rs);
            return rc;
        }
        if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "changes")) || !cs__jstr(j, "cursor")) {
            cs__resp_free(&rs);
            return cs__fail(err, CASESYNC_E_PROTOCOL, 200, NULL, NULL,
                            "pull answer without changes or cursor");
        }
        int more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "more"));
        /* Not started (out of memory): the next turn asks from the store. */
        if (more && pull_start(h, cs__jstr(j, "cursor"), ++page, &next, NULL) != 0) {
            next = NULL;
            page--;
        }
        cs__events_t ev = {0};
        page_ctx_t p = {.page = j, .scratch = is_scratch, .ev = &ev};
        pthread_mutex_lock(&h->lock);
        rc = cs__with_write_lazy(h, page_txn, &p);
        if (!rc) {
            h->stats.pull_pages++;
            h->stats.upserts += (uint64_t)p.tally.upserts;
            h->stats.removals += (uint64_t)p.tally.removals;
            h->stats.delta_checks += (uint64_t)p.checks;
        }
        pthread_mutex_unlock(&h->lock);
        int sv = (int)cs__jint(j, "schema_version", 0);
        cs__resp_free(&rs);
        cs__events_fire(h, &ev);
        if (rc) {
            cs__http_abandon(h, next);
            cJSON_Delete(p.fetch);
            return cs__fail(err, rc, 0, NULL, NULL, "cannot store the pulled page");
        }
        int new_schema = h->schema && sv && sv != schema_version(h->schema);
        if (next && (cJSON_GetArraySize(p.fetch) > 0 || new_schema)) {
            pull_drop(h, &next);
            page--;
        }
        rep->pages++;
        rep->upserts += p.tally.upserts;
        rep->removals += p.tally.removals;
        const cJSON *id;
        cJSON_ArrayForEach(id, p.fetch) {
            if ((rc = fetch_record(h, id->valuestring, is_scratch, err))) break;
            rep->upserts++;
        }
        cJSON_Delete(p.fetch);
        if (rc) return rc;
        if (new_schema) cs__fetch_schema(h, NULL);
        if (!more) {
            if (!is_scratch) return 0;
            ev = (cs__events_t){0};
            pthread_mutex_lock(&h->lock);
            rc = cs__with_write(h, sweep_txn, &ev);
            pthread_mutex_unlock(&h->lock);
            cs__events_fire(h, &ev);
            return rc ? cs__fail(err, rc, 0, NULL, NULL, "cannot finish the pull") : 0;
        }
    }
}

/* The pages are committed without waiting for each meta page's flush
 * (cs__with_write_lazy); what a pull stored is on disk before it returns,
 * whether it ended or stopped at an error. */
static int pull_all(casesync_t *h, casesync_report_t *rep, casesync_error_t *err) {
    int rc = pull_pages(h, rep, err);
    pthread_mutex_lock(&h->lock);
    int frc = cs__store_flush(h);
    pthread_mutex_unlock(&h->lock);
    if (!rc && frc) rc = cs__fail(err, frc, 0, NULL, NULL, "cannot flush the pulled pages to disk");
    return rc;
}

/* ---- sync ------------------------------------------------------------------------------------------ */

int casesync_sync(casesync_t *h, int flags, casesync_report_t *rep, casesync_error_t *err) {
    cs__err_clear(err);
    casesync_report_t local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    if (!h) return CASESYNC_E_ARG;
    int rc = cs__net_enter(h);
    if (rc) return cs__fail(err, rc, 0, NULL, NULL, "%s", casesync_strerror(rc));
    pthread_mutex_lock(&h->lock);
    int ok = h->token && h->device_id && h->server;
    h->retry_after = 0;
    pthread_mutex_unlock(&h->lock);
    if (!ok) {
        rc = cs__fail(err, CASESYNC_E_LOGIN, 0, NULL, NULL, "not logged in");
        goto done;
    }
    if (!(flags & CASESYNC_SYNC_NO_PUSH)) {
        seal_ctx_t s = {0};
        pthread_mutex_lock(&h->lock);
        rc = cs__with_write(h, seal_txn, &s);
        pthread_mutex_unlock(&h->lock);
        if (rc) {
            cs__fail(err, rc, 0, NULL, NULL, "cannot seal the outbox");
            goto done;
        }
        if ((rc = push_all(h, rep, err))) goto done;
    }
    if (!(flags & CASESYNC_SYNC_NO_PULL) && (rc = pull_all(h, rep, err))) goto done;
    if (!(flags & CASESYNC_SYNC_NO_UPLOAD) && (rc = cs__upload_all(h, rep, err))) goto done;
done:
    cs__net_leave(h);
    if (!rc) cs__err_clear(err);
    return rc;
}

int casesync_upload(casesync_t *h, casesync_report_t *rep, casesync_error_t *err) {
    cs__err_clear(err);
    casesync_report_t local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    if (!h) return CASESYNC_E_ARG;
    int rc = cs__net_enter(h);
    if (rc) return cs__fail(err, rc, 0, NULL, NULL, "%s", casesync_strerror(rc));
    rc = cs__upload_all(h, rep, err);
    cs__net_leave(h);
    return rc;
}

/* ---- check and repair ------------------------------------------------------------------------------- */

static int check_locked(casesync_t *h, cs__resp_t *rs, casesync_error_t *err) {
    cJSON *body = cJSON_CreateObject(), *recs = cJSON_AddArrayToObject(body, "records");
    pthread_mutex_lock(&h->lock);
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = cs__txn_begin(h, 0, &txn);
    if (!rc && mdb_cursor_open(txn, h->db[CS_DB_BASE], &cur) == 0) {
        MDB_val k, v;
        for (int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
             mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            cJSON *b = cs__parse(v.mv_data, v.mv_size);
            cJSON *pair = cJSON_CreateArray();
            char id[CASESYNC_ID_MAX];
            size_t n = k.mv_size < sizeof id - 1 ? k.mv_size : sizeof id - 1;
            memcpy(id, k.mv_data, n);
            id[n] = 0;
            cJSON_AddItemToArray(pair, cJSON_CreateString(id));
            cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)cs__jint(b, "version", 0)));
            cJSON_AddItemToArray(recs, pair);
            cJSON_Delete(b);
        }
        mdb_cursor_close(cur);
    }
    if (txn) mdb_txn_abort(txn);
    pthread_mutex_unlock(&h->lock);
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (rc || !text) {
        free(text);
        return cs__fail(err, rc ? rc : CASESYNC_E_NOMEM, 0, NULL, NULL, "cannot list the local records");
    }
    cs__req_t rq = {.method = "POST",
                    .url = "/v1/sync/check",
                    .auth = 1,
                    .body = text,
                    .body_len = strlen(text),
                    .raw_len = strlen(text),
                    .phase = CASESYNC_PHASE_OTHER};
    rc = cs__http(h, &rq, rs, err);
    free(text);
    if (rc) return rc;
    if (rs->status != 200 || !cJSON_IsObject(cs__resp_json(rs))) {
        rc = cs__http_error(h, rs, "check", err);
        cs__resp_free(rs);
    }
    return rc;
}

int casesync_check(casesync_t *h, char **out, casesync_error_t *err) {
    cs__err_clear(err);
    if (!h || !out) return CASESYNC_E_ARG;
    *out = NULL;
    int rc = cs__net_enter(h);
    if (rc) return rc;
    cs__resp_t rs;
    rc = check_locked(h, &rs, err);
    if (!rc) {
        *out = cJSON_PrintUnformatted(rs.json);
        cs__resp_free(&rs);
        if (!*out) rc = CASESYNC_E_NOMEM;
    }
    cs__net_leave(h);
    return rc;
}

int casesync_repair(casesync_t *h, casesync_error_t *err) {
    cs__err_clear(err);
    if (!h) return CASESYNC_E_ARG;
    int rc = cs__net_enter(h);
    if (rc) return rc;
    cs__resp_t rs;
    if ((rc = check_locked(h, &rs, err))) goto done;
    static const char *const lists[] = {"missing", "stale", "extra"};
    for (int l = 0; l < 3 && !rc; l++) {
        const cJSON *id;
        cJSON_ArrayForEach(id, cJSON_GetObjectItemCaseSensitive(rs.json, lists[l])) {
            if (!cJSON_IsString(id) || !cs__id_ok(id->valuestring)) continue;
            if (l < 2) {
                rc = fetch_record(h, id->valuestring, 0, err);
            } else {
                cs__events_t ev = {0};
                fetched_t f = {id->valuestring, NULL, 0, &ev};
                pthread_mutex_lock(&h->lock);
                rc = cs__with_write(h, fetched_txn, &f);
                pthread_mutex_unlock(&h->lock);
                cs__events_fire(h, &ev);
            }
            if (rc) break;
        }
    }
    cs__resp_free(&rs);
done:
    cs__net_leave(h);
    return rc;
}

/* ---- any other call -------------------------------------------------------------------------------------
 */

int casesync_request(casesync_t *h, const char *method, const char *path, const char *body_json, long *status,
                     char **out, casesync_error_t *err) {
    cs__err_clear(err);
    if (status) *status = 0;
    if (out) *out = NULL;
    if (!h || !method || !path || path[0] != '/')
        return cs__fail(err, CASESYNC_E_ARG, 0, NULL, NULL, "method and a path starting with / are required");
    int rc = cs__net_enter(h);
    if (rc) return cs__fail(err, rc, 0, NULL, NULL, "%s", casesync_strerror(rc));
    cs__req_t rq = {.method = method,
                    .url = path,
                    .auth = 1,
                    .body = body_json,
                    .body_len = body_json ? strlen(body_json) : 0,
                    .phase = CASESYNC_PHASE_OTHER,
                    .head = strcmp(method, "HEAD") == 0};
    rq.raw_len = rq.body_len;
    cs__resp_t rs;
    rc = cs__http(h, &rq, &rs, err);
    cs__net_leave(h);
    if (rc) return rc;
    if (status) *status = rs.status;
    if (out) {
        *out = rs.body;
        rs.body = NULL;
    }
    cs__resp_free(&rs);
    return 0;
}
