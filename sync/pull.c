/* pull.c -- GET /v1/sync/pull and POST /v1/sync/check.
 *
 * A pull reads only the caller's feeds (see record.h) from the cursor's seq
 * on, merging them in seq order, so its cost follows the changes in the
 * caller's scope, not in the city. For each record met it decides now:
 * visible -> upsert (whole when the phone may not have it, else the fields and
 * append items changed after the cursor), not visible -> remove.
 *
 * The cursor is opaque to clients: a small JSON sealed by cursor.h (kind
 * CURSOR_PULL) and bound to the user:
 *   {"u":user,"gv":grants_version,"s":seq,"t":ms,"f":0|1,"x":[[feed,pos,mode]...]}
 * "f" marks a first sync still paging (every record goes whole); "x" lists
 * feeds being caught up after a change of scope: newly granted ones read from
 * 0 with whole records ("a"), ones no longer granted read for removals ("r").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/cursor.h"
#include "sync/record.h"

#define CURSOR_MAX 8192 /* characters of a cursor a pull accepts */

enum { SRC_NORMAL = 0, SRC_ADD = 1, SRC_RM = 2 };

typedef struct source {
    char key[FEED_KEY_MAX];
    uint64_t pos; /* entries after this seq */
    int mode;
    int extra;    /* carried in the cursor's "x" */
    MDB_cursor *cur;
    int has;      /* the current entry below is valid */
    uint64_t seq;
    char flag;
    char id[80];
} source_t;

typedef struct cursor {
    char user[64];
    int64_t gv, s, t;
    int64_t d; /* delta base while paging (0: the same as s) */
    int full;
    int nx;
    struct {
        char key[FEED_KEY_MAX];
        int64_t pos;
        int mode;
    } x[FEEDS_MAX];
} cursor_t;

/* Is v a whole JSON number within 2^53? The range is checked before the
 * cast, which is undefined for a double beyond int64_t. */
static int is_whole(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    return d >= -9007199254740992.0 && d <= 9007199254740992.0 && d == (double)(int64_t)d;
}

/* ---- the cursor's payload ------------------------------------------------------------ */

/* The sealed cursor text of c (cursor.h), malloc'd; NULL when an allocation
 * or the seal failed: never a cursor with a member missing. */
static char *cursor_encode(sync_t *s, const cursor_t *c) {
    uint64_t failed = util_json_failures();
    char *json = NULL, *out = NULL;
    cJSON *o = cJSON_CreateObject(), *x = NULL;
    cJSON_AddStringToObject(o, "u", c->user);
    cJSON_AddNumberToObject(o, "gv", (double)c->gv);
    cJSON_AddNumberToObject(o, "s", (double)c->s);
    cJSON_AddNumberToObject(o, "t", (double)c->t);
    cJSON_AddNumberToObject(o, "f", c->full);
    if (c->d) cJSON_AddNumberToObject(o, "d", (double)c->d);
    x = cJSON_AddArrayToObject(o, "x");
    for (int i = 0; x && i < c->nx; i++) {
        cJSON *e = cJSON_CreateArray();
        cJSON_AddItemToArray(x, e);
        cJSON_AddItemToArray(e, cJSON_CreateString(c->x[i].key));
        cJSON_AddItemToArray(e, cJSON_CreateNumber((double)c->x[i].pos));
        cJSON_AddItemToArray(e, cJSON_CreateString(c->x[i].mode == SRC_ADD ? "a" : "r"));
    }
    if (o && x && util_json_failures() == failed && (json = cJSON_PrintUnformatted(o)))
        cursor_seal(s->cursor_key, CURSOR_PULL, json, strlen(json), &out);
    free(json);
    cJSON_Delete(o);
    return out;
}

/* Parses and checks a cursor. SYNC_EBADCURSOR when it is not one of ours for this user. */
static int cursor_decode(sync_t *s, const char *text, const char *user_id, cursor_t *c, sync_error_t *err) {
    unsigned char *json = NULL;
    size_t jl = 0;
    cJSON *o = NULL;
    memset(c, 0, sizeof *c);
    int rc = cursor_open(s->cursor_key, CURSOR_PULL, text, CURSOR_MAX, &json, &jl);
    if (rc == SYNC_ENOMEM || rc == SYNC_EIO) return sync_fail(err, rc, NULL, "cannot check the cursor");
    if (rc != 0) goto done;
    rc = SYNC_EBADCURSOR;
    o = cJSON_ParseWithLength((const char *)json, jl);
    const char *u = util_json_str(o, "u");
    if (!u || util_json_int(o, "gv", &c->gv) || util_json_int(o, "s", &c->s) || util_json_int(o, "t", &c->t))
        goto done;
    if (strcmp(u, user_id) != 0) {
        rc = sync_fail(err, SYNC_EBADCURSOR, "cursor", "this cursor belongs to another user");
        goto done;
    }
    snprintf(c->user, sizeof c->user, "%s", u);
    int64_t f = 0;
    util_json_int(o, "f", &f);
    c->full = f != 0;
    if (util_json_int(o, "d", &c->d) != 0 || c->d < 0 || c->d > c->s) c->d = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "x")) {
        const cJSON *k = cJSON_GetArrayItem(e, 0), *p = cJSON_GetArrayItem(e, 1), *m = cJSON_GetArrayItem(e, 2);
        if (c->nx >= FEEDS_MAX || !cJSON_IsString(k) || !is_whole(p) || !cJSON_IsString(m)) goto done;
        snprintf(c->x[c->nx].key, FEED_KEY_MAX, "%s", k->valuestring);
        c->x[c->nx].pos = (int64_t)p->valuedouble;
        c->x[c->nx].mode = strcmp(m->valuestring, "a") == 0 ? SRC_ADD : SRC_RM;
        c->nx++;
    }
    rc = 0;
done:
    if (rc == SYNC_EBADCURSOR && (!err || err->code != SYNC_EBADCURSOR))
        sync_fail(err, SYNC_EBADCURSOR, "cursor", "not a cursor of this server");
    cJSON_Delete(o);
    free(json);
    return rc;
}

/* ---- feed sources ------------------------------------------------------------------ */

static void source_read(source_t *src, MDB_val *k, MDB_val *v, int rc) {
    size_t kl = strlen(src->key);
    src->has = rc == 0 && k->mv_size == kl + 9 && memcmp(k->mv_data, src->key, kl) == 0 &&
               ((char *)k->mv_data)[kl] == 0 && v->mv_size >= 2 && v->mv_size < sizeof src->id + 1;
    if (!src->has) return;
    src->seq = store_rd64((unsigned char *)k->mv_data + kl + 1);
    src->flag = ((char *)v->mv_data)[0];
    memcpy(src->id, (char *)v->mv_data + 1, v->mv_size - 1);
    src->id[v->mv_size - 1] = 0;
}

static int source_open(MDB_txn *txn, const store_dbs_t *dbs, source_t *src) {
    unsigned char kb[FEED_KEY_MAX + 9];
    size_t kl = strlen(src->key);
    if (mdb_cursor_open(txn, dbs->feeds, &src->cur) != 0) return SYNC_EIO;
    memcpy(kb, src->key, kl);
    kb[kl] = 0;
    store_be64(kb + kl + 1, src->pos + 1);
    MDB_val k = {kl + 9, kb}, v;
    source_read(src, &k, &v, mdb_cursor_get(src->cur, &k, &v, MDB_SET_RANGE));
    return 0;
}

static void source_next(source_t *src) {
    MDB_val k, v;
    source_read(src, &k, &v, mdb_cursor_get(src->cur, &k, &v, MDB_NEXT));
}

static int add_source(source_t *srcs, int *n, int max, const char *key, uint64_t pos, int mode, int extra) {
    if (*n >= max) return -1;
    source_t *s = &srcs[(*n)++];
    memset(s, 0, sizeof *s);
    snprintf(s->key, sizeof s->key, "%s", key);
    s->pos = pos;
    s->mode = mode;
    s->extra = extra;
    return 0;
}

/* The grants (role, unit, grids) a user had at grants version gv, from its log. */
static const cJSON *grants_at(const cJSON *user, int64_t gv) {
    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(user, "grants_log")) {
        int64_t v;
        if (util_json_int(g, "v", &v) == 0 && v == gv) return g;
    }
    return NULL;
}

static int64_t user_gv(const cJSON *user) {
    int64_t gv = 1;
    util_json_int(user, "grants_version", &gv);
    return gv;
}

/* ---- a page -------------------------------------------------------------------------- */

/* A page is written as text while it is read: each item is printed and freed
 * at once, so a pull of 1000 whole records holds their text, never their
 * trees (with hundreds of pulls at a shift change, the trees were most of
 * the server's memory). */
typedef struct page {
    char *text;
    size_t len, cap;
    int oom;
    int items;
    char **ids;
    int nids, capids;
} page_t;

static void page_write(page_t *pg, const char *s, size_t n) {
    if (pg->oom) return;
    if (pg->len + n + 1 > pg->cap) {
        size_t cap = pg->cap ? pg->cap : 16384;
        while (cap < pg->len + n + 1) cap *= 2;
        char *t = realloc(pg->text, cap);
        if (!t) {
            pg->oom = 1;
            return;
        }
        pg->text = t;
        pg->cap = cap;
    }
    memcpy(pg->text + pg->len, s, n);
    pg->len += n;
    pg->text[pg->len] = 0;
}

/* Prints an item into the page and frees it. */
static void page_item(page_t *pg, cJSON *item) {
    char *t = item ? cJSON_PrintUnformatted(item) : NULL;
    cJSON_Delete(item);
    if (!t) {
        pg->oom = 1;
        return;
    }
    if (pg->items) page_write(pg, ",", 1);
    page_write(pg, t, strlen(t));
    free(t);
    pg->items++;
}

static int page_has(const page_t *pg, const char *id) {
    for (int i = 0; i < pg->nids; i++)
        if (strcmp(pg->ids[i], id) == 0) return 1;
    return 0;
}

static int page_take(page_t *pg, const char *id) {
    if (pg->nids == pg->capids) {
        int cap = pg->capids ? pg->capids * 2 : 64;
        char **ids = realloc(pg->ids, (size_t)cap * sizeof *ids);
        if (!ids) return SYNC_ENOMEM;
        pg->ids = ids;
        pg->capids = cap;
    }
    if (!(pg->ids[pg->nids] = strdup(id))) return SYNC_ENOMEM;
    pg->nids++;
    return 0;
}

static void page_remove(page_t *pg, const char *id, const char *reason) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "op", "remove");
    cJSON_AddStringToObject(o, "record_id", id);
    cJSON_AddStringToObject(o, "reason", reason);
    page_item(pg, o);
}

static int64_t closed_at_of(const cJSON *rec) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(rec, "closed_at");
    return cJSON_IsNumber(c) ? (int64_t)c->valuedouble : 0;
}

/* Removals for records whose sync window ended between the cursor's time and now. */
static int expired_removals(sync_t *s, MDB_txn *txn, const cJSON *user, int64_t from_ms, int64_t now,
                            int64_t window, page_t *pg) {
    MDB_cursor *cur;
    unsigned char kb[8];
    int64_t lo = from_ms - window, hi = now - window;
    if (lo < 0) lo = 0;
    if (hi <= lo) return 0;
    if (mdb_cursor_open(txn, s->dbs->closed, &cur) != 0) return SYNC_EIO;
    store_be64(kb, (uint64_t)lo + 1);
    MDB_val k = {8, kb}, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE), err = 0;
    for (; rc == 0 && k.mv_size > 9; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if ((int64_t)store_rd64(k.mv_data) > hi) break;
        char id[80];
        size_t n = k.mv_size - 9 < sizeof id - 1 ? k.mv_size - 9 : sizeof id - 1;
        memcpy(id, (char *)k.mv_data + 9, n);
        id[n] = 0;
        cJSON *rec = NULL;
        if (page_has(pg, id) || record_load(txn, s->dbs, id, &rec) != 0) continue;
        if (record_visible(user, rec, now, window, 0) && !record_visible(user, rec, now, window, 1)) {
            page_remove(pg, id, "expired");
            if ((err = page_take(pg, id))) {
                cJSON_Delete(rec);
                break;
            }
        }
        cJSON_Delete(rec);
    }
    mdb_cursor_close(cur);
    return err;
}

/* Builds one page into *out. */
static int pull_once(sync_t *s, const sync_principal_t *p, const cursor_t *in, int have_cursor, int limit,
                     char **out, int *items, sync_error_t *err) {
    const cJSON *user = p->user;
    int64_t now = util_now_ms(), window = (int64_t)s->cfg.sync_window_days * 86400000;
    int64_t gv = user_gv(user);
    source_t *srcs = calloc(FEEDS_MAX * 3, sizeof *srcs);
    int nsrc = 0, rc = 0;
    MDB_txn *txn = NULL;
    page_t pg = {0};
    feed_set_t now_feeds;
    cursor_t next;
    uint64_t base = have_cursor ? (uint64_t)in->s : 0, last = 0;
    /* Deltas are cut from where the phone's copy stands: the start of a
     * paging sequence. A record's one feed entry sits at its latest change,
     * so a record changed both before and after a page boundary is met only
     * on a later page, and must still carry the changes before it. */
    uint64_t since = have_cursor && in->d ? (uint64_t)in->d : base;
    int full_mode = !have_cursor || in->full;
    *out = NULL;
    *items = 0;
    if (!srcs) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");

    user_feeds(p->user_id, p->role, p->unit, cJSON_GetObjectItemCaseSensitive(user, "grids"), &now_feeds);
    for (int i = 0; i < now_feeds.n; i++)
        add_source(srcs, &nsrc, FEEDS_MAX * 3, now_feeds.key[i], base, full_mode ? SRC_ADD : SRC_NORMAL, 0);
    if (have_cursor) {
        for (int i = 0; i < in->nx; i++)
            add_source(srcs, &nsrc, FEEDS_MAX * 3, in->x[i].key, (uint64_t)in->x[i].pos, in->x[i].mode, 1);
        if (in->gv != gv) {
            /* The scope changed since this cursor: catch up the difference once. */
            const cJSON *old = grants_at(user, in->gv);
            if (!old) {
                rc = sync_fail(err, SYNC_EEXPIRED, "cursor", "the scope changed too often since this cursor; pull again without one");
                goto done;
            }
            feed_set_t old_feeds;
            user_feeds(p->user_id, util_user_role(old), util_json_str(old, "unit") ? util_json_str(old, "unit") : "",
                       cJSON_GetObjectItemCaseSensitive(old, "grids"), &old_feeds);
            for (int i = 0; i < now_feeds.n; i++)
                if (!feed_set_has(&old_feeds, now_feeds.key[i]))
                    add_source(srcs, &nsrc, FEEDS_MAX * 3, now_feeds.key[i], 0, SRC_ADD, 1);
            for (int i = 0; i < old_feeds.n; i++)
                if (!feed_set_has(&now_feeds, old_feeds.key[i]))
                    add_source(srcs, &nsrc, FEEDS_MAX * 3, old_feeds.key[i], 0, SRC_RM, 1);
        }
    }

    if ((rc = store_read_begin(s->st, &txn))) goto done;
    if (have_cursor && (uint64_t)in->s > store_meta_u64(txn, s->dbs, "seq")) {
        /* The phone has seen more than this store holds: a follower behind
         * the leader (the leader serves it), or a store restored from a backup. */
        if (sync_node_role(s, NULL, 0) == SYNC_NODE_FOLLOWER)
            rc = sync_fail(err, SYNC_EBEHIND, "cursor", "this node has not applied what the cursor has seen yet");
        else
            rc = sync_fail(err, SYNC_EEXPIRED, "cursor", "the server's store is older than this cursor; pull again without one");
        goto done;
    }
    for (int i = 0; i < nsrc; i++)
        if ((rc = source_open(txn, s->dbs, &srcs[i]))) goto done;

    page_write(&pg, "{\"changes\":[", 12);
    if (have_cursor && (p->role == ROLE_OFFICER || p->role == ROLE_AUXILIARY))
        if ((rc = expired_removals(s, txn, user, in->t, now, window, &pg))) goto done;

    while (pg.items < limit) {
        uint64_t min = UINT64_MAX;
        for (int i = 0; i < nsrc; i++)
            if (srcs[i].has && srcs[i].seq < min) min = srcs[i].seq;
        if (min == UINT64_MAX) break;
        int any_add = 0, any_rm = 0, any_normal = 0;
        char id[80] = "";
        for (int i = 0; i < nsrc; i++) {
            if (!srcs[i].has || srcs[i].seq != min) continue;
            if (srcs[i].mode == SRC_ADD) any_add = 1;
            else if (srcs[i].mode == SRC_RM) any_rm = 1;
            else any_normal = 1;
            memcpy(id, srcs[i].id, sizeof id);
            source_next(&srcs[i]);
        }
        last = min;
        if (page_has(&pg, id)) continue;
        cJSON *rec = NULL;
        rc = record_load(txn, s->dbs, id, &rec);
        if (rc == SYNC_ENOTFOUND) {
            rc = 0;
            continue;
        }
        if (rc) goto done;
        if (record_visible(user, rec, now, window, 1)) {
            const cJSON *ss = cJSON_GetObjectItemCaseSensitive(rec, "scope_seq");
            int full = full_mode || any_add || (cJSON_IsNumber(ss) && (uint64_t)ss->valuedouble > since);
            /* The unit string moves with the fields into the item: still valid below. */
            const char *rec_unit = util_json_str(cJSON_GetObjectItemCaseSensitive(rec, "fields"), "unit");
            cJSON *item = record_upsert_item_take(rec, full, since);
            record_mask_unit(s->schema, item, rec_unit, p->role, p->unit);
            page_item(&pg, item);
        } else if (have_cursor && !in->full && (any_normal || any_rm)) {
            int expired = record_visible(user, rec, now, window, 0);
            page_remove(&pg, id, expired && closed_at_of(rec) ? "expired" : "out_of_scope");
        }
        cJSON_Delete(rec);
        if ((rc = page_take(&pg, id))) goto done;
    }

    int more = 0;
    memset(&next, 0, sizeof next);
    snprintf(next.user, sizeof next.user, "%s", p->user_id);
    next.gv = gv;
    next.s = (int64_t)(last > base ? last : base);
    next.t = now;
    for (int i = 0; i < nsrc; i++) {
        if (srcs[i].has) more = 1;
        if (srcs[i].extra && srcs[i].has && next.nx < FEEDS_MAX) {
            snprintf(next.x[next.nx].key, FEED_KEY_MAX, "%s", srcs[i].key);
            next.x[next.nx].pos = (int64_t)(last > srcs[i].pos ? last : srcs[i].pos);
            next.x[next.nx].mode = srcs[i].mode;
            next.nx++;
        }
    }
    next.full = full_mode && more;
    next.d = more && since != (uint64_t)next.s ? (int64_t)since : 0;

    /* The members after "changes", printed by cJSON and joined to the page. */
    uint64_t failed = util_json_failures();
    cJSON *o = cJSON_CreateObject();
    char *cur = cursor_encode(s, &next), *tail = NULL;
    int sealed = cur != NULL;
    cJSON_AddStringToObject(o, "cursor", cur ? cur : "");
    free(cur);
    cJSON_AddBoolToObject(o, "more", more);
    cJSON_AddNumberToObject(o, "schema_version", schema_version(s->schema));
    /* No page goes out without its cursor (an empty one would start the phone over). */
    if (sealed && util_json_failures() == failed) tail = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (tail && tail[0] == '{') {
        page_write(&pg, "],", 2);
        page_write(&pg, tail + 1, strlen(tail + 1));
    } else {
        pg.oom = 1;
    }
    free(tail);
    *items = pg.items;
    if (pg.oom) {
        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        goto done;
    }
    *out = pg.text;
    pg.text = NULL;
done:
    for (int i = 0; i < nsrc; i++)
        if (srcs[i].cur) mdb_cursor_close(srcs[i].cur);
    store_read_end(txn);
    free(srcs);
    free(pg.text);
    for (int i = 0; i < pg.nids; i++) free(pg.ids[i]);
    free(pg.ids);
    if (rc && err && err->code != rc) sync_fail(err, rc, NULL, "%s", sync_strerror(rc));
    return rc;
}

int sync_pull(sync_t *s, const sync_principal_t *p, const char *cursor, int limit, int wait, char **out,
              sync_error_t *err) {
    cursor_t c;
    int have = cursor && *cursor, rc, items = 0;
    *out = NULL;
    if (limit < 1 || limit > 1000) return sync_fail(err, SYNC_EBADREQ, "limit", "limit must be 1..1000");
    if (wait < 0 || wait > 60) return sync_fail(err, SYNC_EBADREQ, "wait", "wait must be 0..60 seconds");
    if (have && (rc = cursor_decode(s, cursor, p->user_id, &c, err))) return rc;
    int64_t deadline = util_now_ms() + (int64_t)wait * 1000;
    for (;;) {
        uint64_t seen = store_commit_gen(s->st);
        if ((rc = pull_once(s, p, &c, have, limit, out, &items, err))) return rc;
        if (items > 0 || !have || wait == 0 || !sync_ready(s) || util_now_ms() >= deadline) break;
        /* Nothing new: sleep until something commits, then look again. */
        store_wait_commit(s->st, seen, deadline);
        if (store_commit_gen(s->st) == seen) break;
        free(*out);
        *out = NULL;
    }
    sync_device_pulled(s, p);
    return 0;
}

/* ---- repair: POST /v1/sync/check --------------------------------------------------------- */

typedef struct held {
    char id[80];
    int64_t version;
} held_t;

static int held_cmp(const void *a, const void *b) { return strcmp(((const held_t *)a)->id, ((const held_t *)b)->id); }

int sync_check(sync_t *s, const sync_principal_t *p, const cJSON *body, char **out, sync_error_t *err) {
    const cJSON *records = cJSON_GetObjectItemCaseSensitive(body, "records");
    held_t *phone = NULL, *server = NULL;
    int np = 0, ns = 0, caps = 0, rc = 0;
    MDB_txn *txn = NULL;
    cJSON *o = NULL;
    *out = NULL;
    if (!cJSON_IsArray(records)) return sync_fail(err, SYNC_EINVALID, "records", "records must be an array");
    int n = cJSON_GetArraySize(records);
    phone = calloc((size_t)(n ? n : 1), sizeof *phone);
    if (!phone) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    const cJSON *r;
    cJSON_ArrayForEach(r, records) {
        const cJSON *id = cJSON_GetArrayItem(r, 0), *v = cJSON_GetArrayItem(r, 1);
        if (!cJSON_IsArray(r) || !cJSON_IsString(id) || !is_whole(v) || strlen(id->valuestring) >= 80) {
            char f[64];
            snprintf(f, sizeof f, "records[%d]", np);
            rc = sync_fail(err, SYNC_EINVALID, f, "each record is [\"id\", version]");
            goto done;
        }
        snprintf(phone[np].id, sizeof phone[np].id, "%s", id->valuestring);
        phone[np].version = (int64_t)v->valuedouble;
        np++;
    }

    /* Everything the caller's scope holds now, from its feeds. */
    feed_set_t feeds;
    int64_t now = util_now_ms(), window = (int64_t)s->cfg.sync_window_days * 86400000;
    user_feeds(p->user_id, p->role, p->unit, cJSON_GetObjectItemCaseSensitive(p->user, "grids"), &feeds);
    if ((rc = store_read_begin(s->st, &txn))) goto done;
    for (int i = 0; i < feeds.n; i++) {
        source_t src = {0};
        snprintf(src.key, sizeof src.key, "%s", feeds.key[i]);
        if ((rc = source_open(txn, s->dbs, &src))) goto done;
        for (; src.has; source_next(&src)) {
            if (src.flag != 'i') continue;
            cJSON *rec = NULL;
            if (record_load(txn, s->dbs, src.id, &rec) != 0) continue;
            if (record_visible(p->user, rec, now, window, 1)) {
                if (ns == caps) {
                    caps = caps ? caps * 2 : 256;
                    held_t *m = realloc(server, (size_t)caps * sizeof *m);
                    if (!m) {
                        cJSON_Delete(rec);
                        mdb_cursor_close(src.cur);
                        rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
                        goto done;
                    }
                    server = m;
                }
                snprintf(server[ns].id, sizeof server[ns].id, "%s", src.id);
                util_json_int(rec, "version", &server[ns].version);
                ns++;
            }
            cJSON_Delete(rec);
        }
        mdb_cursor_close(src.cur);
    }
    if (server) {
        /* A record met through two feeds counts once. */
        qsort(server, (size_t)ns, sizeof *server, held_cmp);
        int w = 0;
        for (int k = 0; k < ns; k++)
            if (w == 0 || strcmp(server[k].id, server[w - 1].id) != 0) server[w++] = server[k];
        ns = w;
    }
    if (np) qsort(phone, (size_t)np, sizeof *phone, held_cmp);

    o = cJSON_CreateObject();
    cJSON *missing = cJSON_AddArrayToObject(o, "missing"), *stale = cJSON_AddArrayToObject(o, "stale"),
          *extra = cJSON_AddArrayToObject(o, "extra");
    int i = 0, j = 0;
    while (i < ns || j < np) {
        int c = i >= ns ? 1 : j >= np ? -1 : strcmp(server[i].id, phone[j].id);
        if (c < 0) {
            cJSON_AddItemToArray(missing, cJSON_CreateString(server[i++].id));
        } else if (c > 0) {
            cJSON_AddItemToArray(extra, cJSON_CreateString(phone[j++].id));
        } else {
            if (phone[j].version != server[i].version)
                cJSON_AddItemToArray(stale, cJSON_CreateString(phone[j].id));
            i++;
            j++;
        }
    }
    *out = cJSON_PrintUnformatted(o);
    if (!*out) rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
done:
    store_read_end(txn);
    cJSON_Delete(o);
    free(phone);
    free(server);
    return rc;
}
