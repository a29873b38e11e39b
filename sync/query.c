/* query.c -- the consolidated state for supervisors: GET /v1/cases, /v1/stats
 * and /v1/export, read through the idx indexes (layout in index.h).
 *
 * A case query walks one index: the most selective of its equality filters
 * (by the counters), the due-time index for overdue=true, the updated-time
 * index for an updated range, the opened-time index for an opened range, or
 * the unit's index; every other filter (source, procedure, q ...) is checked
 * on each loaded record. Walks run in read transactions of at most
 * WALK_BATCH entries, so no reader stays open long, and never across network
 * writes: a page is collected, its transaction ended, and only then written.
 *
 * Cursors are opaque: a kind byte and the last index key walked, sealed by
 * cursor.h (kind CURSOR_CASES). The key names its index, so later pages
 * continue on the index the first page chose.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sync/cursor.h"
#include "sync/index.h"
#include "sync/blobs.h"

#define WALK_BATCH 1024        /* index entries per read transaction */
#define PAGE_SCAN_BUDGET 20000 /* index entries one page of /v1/cases may walk */
#define FILTER_MAX 256         /* bytes of one filter value */
#define Q_MAX_CHARS 128        /* characters of q */
#define CURSOR_TEXT_MAX 1200 /* characters of a cursor /v1/cases accepts */
#define EXPORT_PAGE 200    /* records per page of an export */
#define EXPORT_FLUSH 65536 /* bytes buffered before a write */
#define STATS_DEFAULT_DAYS 30
#define CHINA_OFFSET_MS (8 * 3600 * 1000LL)
#define PLANS_MAX 8 /* 4 equalities, the unit, 3 time ranges */
#define RANGE_COUNT_CAP 65536 /* keys counted to choose between two time ranges */

/* ======================================================================== */
/* Queries                                                                  */
/* ======================================================================== */

typedef struct query {
    const char *status, *type, *grid, *assignee; /* NULL when absent */
    const char *source, *procedure;              /* checked on each record, never indexes */
    char unit[FILTER_MAX + 1];                   /* scope: "" for every unit */
    int overdue;                                 /* -1 either, 0 not overdue, 1 overdue */
    int has_updated, has_opened;
    int64_t updated_lo, updated_hi; /* updated_at in [lo, hi) */
    int64_t opened_lo, opened_hi;   /* the opened time in [lo, hi) */
    uint32_t q[Q_MAX_CHARS];
    size_t qn; /* 0: no text filter */
    int64_t now;
} query_t;

static const char *present(const char *v) {
    return v && *v ? v : NULL;
}

/* ---- text search: case-insensitive, on UTF-8 code points ------------------------- */

/* Decodes one UTF-8 character at p (not at NUL). Returns its length; an
 * invalid byte decodes to 0x110000 + byte (never a real character). */
static size_t utf8_next(const unsigned char *p, uint32_t *cp) {
    unsigned char c = p[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, v = c & 0x07, min = 0x10000;
    else
        goto bad;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) goto bad;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) goto bad;
    *cp = v;
    return n;
bad:
    *cp = 0x110000u + c;
    return 1;
}

/* Simple case folding: ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic and
 * the fullwidth Latin letters Chinese input methods produce. Han characters
 * have no case. */
static uint32_t fold(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0xC0) return c;
    if (c <= 0xDE) return c == 0xD7 ? c : c + 32;
    if (c >= 0x100 && c <= 0x17F) {
        if (c == 0x178) return 0xFF;
        if ((c <= 0x12F || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) && c % 2 == 0)
            return c + 1;
        if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && c % 2 == 1) return c + 1;
        return c;
    }
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
    return c;
}

/* Does text contain the folded needle (at a character boundary)? */
static int text_has(const char *text, const uint32_t *needle, size_t nn) {
    const unsigned char *p = (const unsigned char *)text;
    uint32_t c;
    if (!p) return 0;
    while (*p) {
        const unsigned char *h = p;
        size_t i = 0;
        while (i < nn && *h) {
            h += utf8_next(h, &c);
            if (fold(c) != needle[i]) break;
            i++;
        }
        if (i == nn) return 1;
        if (!*h && i < nn && i > 0) return 0; /* the rest is shorter than the needle */
        p += utf8_next(p, &c);
    }
    return 0;
}

/* ---- parsing the filters ------------------------------------------------------------- */

/* Whose cases the caller reads: 0 and unit ("" for all), or SYNC_EFORBIDDEN. */
static int scope_unit(const sync_principal_t *p, const char *unit, char out[FILTER_MAX + 1],
                      sync_error_t *err) {
    unit = present(unit);
    if (unit && strlen(unit) > FILTER_MAX) return sync_fail(err, SYNC_EBADREQ, "unit", "unit is too long");
    if (!p || p->role == ROLE_ADMIN) {
        snprintf(out, FILTER_MAX + 1, "%s", unit ? unit : "");
        return 0;
    }
    if (p->role != ROLE_SUPERVISOR && p->role != ROLE_LEGAL_REVIEWER)
        return sync_fail(
            err, SYNC_EFORBIDDEN, NULL,
            "the consolidated state is for supervisors, legal reviewers and admins; phones pull");
    if (unit && strcmp(unit, p->unit) != 0)
        return sync_fail(err, SYNC_EFORBIDDEN, "unit", "unit %s is not your unit", unit);
    snprintf(out, FILTER_MAX + 1, "%s", p->unit);
    return 0;
}

static int check_len(const char *v, const char *name, sync_error_t *err) {
    if (v && strlen(v) > FILTER_MAX) return sync_fail(err, SYNC_EBADREQ, name, "%s is too long", name);
    return 0;
}

static int parse_when(const char *v, int64_t *ms);

/* One bound of a time range filter: RFC 3339 or YYYY-MM-DD (parse_when). A
 * start raises *bound to it, an end lowers it, so two filters on one range
 * (updated_after and updated_from) both hold. */
static int range_bound(const char *v, const char *name, int64_t *bound, int is_start, int *has,
                       sync_error_t *err) {
    int64_t ms;
    if (!(v = present(v))) return 0;
    if (parse_when(v, &ms) != 0)
        return sync_fail(err, SYNC_EBADREQ, name, "%s must be an RFC 3339 time or a date YYYY-MM-DD", name);
    if (is_start ? ms > *bound : ms < *bound) *bound = ms;
    *has = 1;
    return 0;
}

static int query_parse(const sync_principal_t *p, const sync_case_filter_t *f, query_t *q,
                       sync_error_t *err) {
    static const sync_case_filter_t none = {0};
    int rc;
    memset(q, 0, sizeof *q);
    if (!f) f = &none;
    q->now = util_now_ms();
    q->overdue = -1;
    if ((rc = scope_unit(p, f->unit, q->unit, err))) return rc;
    q->status = present(f->status);
    q->type = present(f->type);
    q->grid = present(f->grid);
    q->assignee = present(f->assignee);
    if ((rc = check_len(q->status, "status", err)) || (rc = check_len(q->type, "type", err)) ||
        (rc = check_len(q->grid, "grid", err)) || (rc = check_len(q->assignee, "assignee", err)))
        return rc;
    const char *od = present(f->overdue);
    if (od) {
        if (strcmp(od, "true") == 0)
            q->overdue = 1;
        else if (strcmp(od, "false") == 0)
            q->overdue = 0;
        else
            return sync_fail(err, SYNC_EBADREQ, "overdue", "overdue is true or false");
    }
    q->source = present(f->source);
    q->procedure = present(f->procedure);
    if ((rc = check_len(q->source, "source", err)) || (rc = check_len(q->procedure, "procedure", err)))
        return rc;
    q->updated_lo = q->opened_lo = INT64_MIN;
    q->updated_hi = q->opened_hi = INT64_MAX;
    const char *ua = present(f->updated_after);
    if (ua) {
        int64_t after;
        if (strlen(ua) > 64 || util_parse_time(ua, &after) != 0)
            return sync_fail(err, SYNC_EBADREQ, "updated_after", "updated_after must be an RFC 3339 time");
        q->updated_lo = after + 1;
        q->has_updated = 1;
    }
    if ((rc = range_bound(f->updated_from, "updated_from", &q->updated_lo, 1, &q->has_updated, err)) ||
        (rc = range_bound(f->updated_to, "updated_to", &q->updated_hi, 0, &q->has_updated, err)) ||
        (rc = range_bound(f->opened_from, "opened_from", &q->opened_lo, 1, &q->has_opened, err)) ||
        (rc = range_bound(f->opened_to, "opened_to", &q->opened_hi, 0, &q->has_opened, err)))
        return rc;
    if (q->updated_lo >= q->updated_hi)
        return sync_fail(err, SYNC_EBADREQ, present(f->updated_to) ? "updated_to" : "updated_from",
                         "the updated range is empty: its start is not before its end");
    if (q->opened_lo >= q->opened_hi)
        return sync_fail(err, SYNC_EBADREQ, "opened_to", "opened_from must be before opened_to");
    const char *text = present(f->q);
    if (text) {
        const unsigned char *t = (const unsigned char *)text;
        while (*t) {
            uint32_t c;
            t += utf8_next(t, &c);
            if (c > 0x10FFFF) return sync_fail(err, SYNC_EBADREQ, "q", "q is not valid UTF-8");
            if (q->qn == Q_MAX_CHARS)
                return sync_fail(err, SYNC_EBADREQ, "q", "q is longer than %d characters", Q_MAX_CHARS);
            q->q[q->qn++] = fold(c);
        }
    }
    return 0;
}

static int64_t rec_due(const cJSON *rec) {
    int64_t due;
    return index_life_time(rec, "due", &due) == 0 ? due : -1;
}

static int str_is(const char *have, const char *want) {
    return !want || (have && strcmp(have, want) == 0);
}

/* Does the record pass every filter of q? */
static int query_match(const query_t *q, const cJSON *rec) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    if (q->unit[0] && !str_is(util_json_str(f, "unit"), q->unit)) return 0;
    if (!str_is(util_json_str(rec, "status"), q->status) || !str_is(util_json_str(rec, "type"), q->type) ||
        !str_is(util_json_str(f, "grid"), q->grid) || !str_is(util_json_str(f, "assignee"), q->assignee))
        return 0;
    if (q->overdue >= 0) {
        int64_t due = rec_due(rec);
        int over = due >= 0 && due < q->now;
        if (over != q->overdue) return 0;
    }
    if (!str_is(util_json_str(f, "source"), q->source) || !str_is(util_json_str(f, "procedure"), q->procedure))
        return 0;
    if (q->has_updated) {
        int64_t ms;
        const char *u = util_json_str(rec, "updated_at");
        if (!u || util_parse_time(u, &ms) != 0 || ms < q->updated_lo || ms >= q->updated_hi) return 0;
    }
    if (q->has_opened) {
        int64_t ms;
        if (index_life_time(rec, "opened", &ms) != 0 || ms < q->opened_lo || ms >= q->opened_hi) return 0;
    }
    if (q->qn) {
        const cJSON *party = cJSON_GetObjectItemCaseSensitive(f, "party");
        if (!text_has(util_json_str(f, "description"), q->q, q->qn) &&
            !text_has(util_json_str(f, "address"), q->q, q->qn) &&
            !text_has(util_json_str(party, "name"), q->q, q->qn) &&
            !text_has(util_json_str(f, "case_no"), q->q, q->qn))
            return 0;
    }
    return 1;
}

/* ======================================================================== */
/* Plans and walks                                                          */
/* ======================================================================== */

enum { PLAN_ALL = 'A', PLAN_EQ = 'E', PLAN_RANGE = 'R' };

/* One way to walk: every record (records db, id order), one equality value
 * (prefix + id), or a time range (prefix + BE64 t + 0x00 + id, t in [lo, hi)). */
typedef struct plan {
    int kind;
    unsigned char prefix[INDEX_KEY_MAX];
    size_t plen;
    int64_t lo, hi;
    uint64_t est; /* entries, for the choice */
} plan_t;

/* name 0x00 [unit 0x00] [value 0x00] as the prefix of a plan. */
static int plan_prefix(plan_t *pl, const char *name, const char *unit, const char *value) {
    cJSON *v = NULL;
    if (unit && value) {
        v = cJSON_CreateArray();
        cJSON_AddItemToArray(v, cJSON_CreateString(unit));
        cJSON_AddItemToArray(v, cJSON_CreateString(value));
    } else if (unit || value) {
        v = cJSON_CreateString(unit ? unit : value);
    }
    size_t n;
    if (v) {
        n = index_key(pl->prefix, sizeof pl->prefix - 1, name, v, NULL);
        cJSON_Delete(v);
        if (!n) return -1;
    } else {
        n = strlen(name);
        if (n + 1 >= sizeof pl->prefix) return -1;
        memcpy(pl->prefix, name, n);
    }
    pl->prefix[n] = 0;
    pl->plen = n + 1;
    return 0;
}

/* Entries of a range plan, counted on keys alone, up to cap. */
static uint64_t range_count(MDB_txn *txn, const store_dbs_t *dbs, const plan_t *pl, uint64_t cap) {
    MDB_cursor *cur;
    uint64_t n = 0;
    unsigned char start[INDEX_KEY_MAX + 8];
    if (mdb_cursor_open(txn, dbs->idx, &cur) != 0) return cap;
    memcpy(start, pl->prefix, pl->plen);
    store_be64(start + pl->plen, (uint64_t)(pl->lo > 0 ? pl->lo : 0));
    MDB_val k = {pl->plen + 8, start}, v;
    for (int r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); r == 0 && n < cap;
         r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < pl->plen + 9 || memcmp(k.mv_data, pl->prefix, pl->plen) != 0) break;
        if ((int64_t)store_rd64((unsigned char *)k.mv_data + pl->plen) >= pl->hi) break;
        n++;
    }
    mdb_cursor_close(cur);
    return n;
}

/* The candidate plans of a query, estimates filled. n = 0 only on failure. */
static int plans_build(sync_t *s, const query_t *q, plan_t *pl, int *n, sync_error_t *err) {
    static const char *const eq_names[][2] = {
        {"status", "u.status"}, {"type", "u.type"}, {"grid", "u.grid"}, {"assignee", "u.assignee"}};
    const char *eq_values[] = {q->status, q->type, q->grid, q->assignee};
    const char *unit = q->unit[0] ? q->unit : NULL;
    MDB_txn *txn = NULL;
    int k = 0;
    *n = 0;
    int rc = store_read_begin(s->st, &txn);
    if (rc) return sync_fail(err, rc, NULL, "cannot read the store");
    for (int i = 0; i < 4; i++) {
        if (!eq_values[i]) continue;
        memset(&pl[k], 0, sizeof pl[k]);
        pl[k].kind = PLAN_EQ;
        if (plan_prefix(&pl[k], eq_names[i][unit ? 1 : 0], unit, eq_values[i]) != 0) continue;
        cJSON *v = cJSON_CreateString(eq_values[i]);
        if (unit) {
            cJSON *a = cJSON_CreateArray();
            cJSON_AddItemToArray(a, cJSON_CreateString(unit));
            cJSON_AddItemToArray(a, v);
            v = a;
        }
        pl[k].est = index_count(txn, s->dbs, eq_names[i][unit ? 1 : 0], v);
        cJSON_Delete(v);
        k++;
    }
    if (unit) {
        memset(&pl[k], 0, sizeof pl[k]);
        pl[k].kind = PLAN_EQ;
        if (plan_prefix(&pl[k], "unit", unit, NULL) == 0) {
            cJSON *v = cJSON_CreateString(unit);
            pl[k].est = index_count(txn, s->dbs, "unit", v);
            cJSON_Delete(v);
            k++;
        }
    }
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < k; i++)
        if (pl[i].est < best) best = pl[i].est;
    /* The time ranges: due before now, updated, opened. */
    const int use[3] = {q->overdue == 1, q->has_updated, q->has_opened};
    const int64_t lo[3] = {0, q->updated_lo, q->opened_lo}, hi[3] = {q->now, q->updated_hi, q->opened_hi};
    static const char *const range_names[3][2] = {{"due", "u.due"}, {"updated", "u.updated"}, {"opened", "u.opened"}};
    int nr = use[0] + use[1] + use[2];
    if (nr > 0) {
        for (int r = 0; r < 3; r++) {
            if (!use[r]) continue;
            memset(&pl[k], 0, sizeof pl[k]);
            pl[k].kind = PLAN_RANGE;
            if (plan_prefix(&pl[k], range_names[r][unit ? 1 : 0], unit, NULL) != 0) continue;
            pl[k].lo = lo[r] > 0 ? lo[r] : 0;
            pl[k].hi = hi[r];
            /* Count on keys only, never past the best so far; a lone
             * candidate needs no count at all. */
            if (best != UINT64_MAX)
                pl[k].est = range_count(txn, s->dbs, &pl[k], best);
            else
                pl[k].est = nr > 1 ? range_count(txn, s->dbs, &pl[k], RANGE_COUNT_CAP) : 0;
            if (pl[k].est < best) best = pl[k].est;
            k++;
        }
    }
    if (k == 0) {
        memset(&pl[0], 0, sizeof pl[0]);
        pl[0].kind = PLAN_ALL;
        k = 1;
    }
    store_read_end(txn);
    *n = k;
    return 0;
}

static int plan_best(const plan_t *pl, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (pl[i].est < pl[b].est) b = i;
    return b;
}

/* Is key an entry of the plan? Fills id (NUL-terminated) and t. */
static int plan_entry(const plan_t *pl, const unsigned char *key, size_t kl, char *id, size_t idcap,
                      int64_t *t) {
    size_t off = 0;
    *t = 0;
    if (pl->kind != PLAN_ALL) {
        if (kl <= pl->plen || memcmp(key, pl->prefix, pl->plen) != 0) return 0;
        off = pl->plen;
        if (pl->kind == PLAN_RANGE) {
            if (kl <= off + 9 || key[off + 8] != 0) return 0;
            *t = (int64_t)store_rd64(key + off);
            off += 9;
        }
    }
    if (kl - off == 0 || kl - off >= idcap) return 0;
    memcpy(id, key + off, kl - off);
    id[kl - off] = 0;
    return 1;
}

/* Past the plan's end (a range's hi, or out of its prefix)? */
static int plan_past(const plan_t *pl, const unsigned char *key, size_t kl) {
    if (pl->kind == PLAN_ALL) return 0;
    if (kl < pl->plen || memcmp(key, pl->prefix, pl->plen) != 0) return 1;
    if (pl->kind == PLAN_RANGE && kl >= pl->plen + 8 && (int64_t)store_rd64(key + pl->plen) >= pl->hi)
        return 1;
    return 0;
}

/* Visits one entry inside the walk's read transaction: 0 go on, 1 stop after
 * this entry, < 0 an error. */
typedef int (*visit_fn)(MDB_txn *txn, const char *id, int64_t t, void *ctx);

typedef struct walk_pos {
    unsigned char key[INDEX_KEY_MAX + 1]; /* the last entry visited */
    size_t len;                           /* 0: nothing visited yet */
    int end;                              /* the plan has no entry after it */
} walk_pos_t;

/* Walks the plan's entries after pos (from the start when pos->len is 0) in
 * key order, in read transactions of at most WALK_BATCH entries, until fn
 * stops or the plan ends. pos follows the walk. */
static int walk(sync_t *s, const plan_t *pl, walk_pos_t *pos, visit_fn fn, void *ctx) {
    MDB_dbi dbi = pl->kind == PLAN_ALL ? s->dbs->records : s->dbs->idx;
    unsigned char start[INDEX_KEY_MAX + 8];
    char id[128];
    int rc = 0;
    pos->end = 0;
    for (;;) {
        MDB_txn *txn = NULL;
        MDB_cursor *cur = NULL;
        if ((rc = store_read_begin(s->st, &txn)) != 0) return rc;
        if (mdb_cursor_open(txn, dbi, &cur) != 0) {
            store_read_end(txn);
            return SYNC_EIO;
        }
        MDB_val k, v;
        int r;
        if (pos->len) {
            k.mv_size = pos->len;
            k.mv_data = pos->key;
            r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            if (r == 0 && k.mv_size == pos->len && memcmp(k.mv_data, pos->key, pos->len) == 0)
                r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        } else if (pl->kind == PLAN_ALL) {
            r = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        } else {
            memcpy(start, pl->prefix, pl->plen);
            k.mv_size = pl->plen;
            if (pl->kind == PLAN_RANGE) {
                store_be64(start + pl->plen, (uint64_t)(pl->lo > 0 ? pl->lo : 0));
                k.mv_size += 8;
            }
            k.mv_data = start;
            r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        }
        int n = 0, stop = 0;
        for (; r == 0; r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            int64_t t;
            if (plan_past(pl, k.mv_data, k.mv_size)) {
                pos->end = 1;
                break;
            }
            if (k.mv_size > INDEX_KEY_MAX) continue;
            memcpy(pos->key, k.mv_data, k.mv_size);
            pos->len = k.mv_size;
            if (!plan_entry(pl, k.mv_data, k.mv_size, id, sizeof id, &t)) continue;
            rc = fn(txn, id, t, ctx);
            if (rc != 0) {
                stop = 1;
                break;
            }
            if (++n == WALK_BATCH) break;
        }
        if (r == MDB_NOTFOUND) pos->end = 1;
        if (stop && rc > 0) {
            /* Is there anything after this entry? (Lets the last page say so.) */
            r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            pos->end = r != 0 || plan_past(pl, k.mv_data, k.mv_size);
        }
        mdb_cursor_close(cur);
        store_read_end(txn);
        if (stop) return rc < 0 ? rc : 0;
        if (pos->end) return 0;
    }
}

/* ---- cursors ----------------------------------------------------------------------------- */

/* The sealed cursor (cursor.h, kind CURSOR_CASES) of a walk's position: a
 * kind byte and the last index key walked. malloc'd, or NULL on failure. */
static char *cursor_encode(sync_t *s, int kind, const walk_pos_t *pos) {
    unsigned char payload[INDEX_KEY_MAX + 2];
    char *out = NULL;
    payload[0] = (unsigned char)kind;
    memcpy(payload + 1, pos->key, pos->len);
    cursor_seal(s->cursor_key, CURSOR_CASES, payload, pos->len + 1, &out);
    return out;
}

/* Checks and decodes a cursor into its kind and key. SYNC_EBADCURSOR when it
 * is not one of ours. */
static int cursor_decode(sync_t *s, const char *text, int *kind, walk_pos_t *pos, sync_error_t *err) {
    unsigned char *raw = NULL;
    size_t rl = 0;
    int rc = cursor_open(s->cursor_key, CURSOR_CASES, text, CURSOR_TEXT_MAX, &raw, &rl);
    if (rc == SYNC_ENOMEM || rc == SYNC_EIO) return sync_fail(err, rc, NULL, "cannot check the cursor");
    if (rc == 0 && (rl < 2 || rl - 1 > INDEX_KEY_MAX)) rc = SYNC_EBADCURSOR;
    if (rc != 0) {
        free(raw);
        return sync_fail(err, SYNC_EBADCURSOR, "cursor", "not a cursor of this server");
    }
    *kind = raw[0];
    memcpy(pos->key, raw + 1, rl - 1);
    pos->len = rl - 1;
    pos->end = 0;
    free(raw);
    return 0;
}

/* The plan among the candidates that a cursor continues, or -1. */
static int plan_of_cursor(const plan_t *pl, int n, int kind, const walk_pos_t *pos) {
    char id[128];
    int64_t t;
    for (int i = 0; i < n; i++) {
        int want = pl[i].kind == PLAN_ALL ? 'A' : 'I';
        if (kind == want && plan_entry(&pl[i], pos->key, pos->len, id, sizeof id, &t)) return i;
    }
    return -1;
}

/* ---- pages --------------------------------------------------------------------------------- */

typedef struct page {
    sync_t *s;
    const query_t *q;
    cJSON *items; /* stored records (not public views) */
    int limit, n;
    long budget; /* entries the page may still walk; < 0: unbounded */
} page_t;

static int page_visit(MDB_txn *txn, const char *id, int64_t t, void *ctx) {
    page_t *pg = ctx;
    cJSON *rec = NULL;
    (void)t;
    int rc = record_load(txn, pg->s->dbs, id, &rec);
    if (rc == SYNC_ENOTFOUND) return 0; /* an index entry of a record being rewritten */
    if (rc) return rc;
    if (query_match(pg->q, rec)) {
        cJSON_AddItemToArray(pg->items, rec);
        pg->n++;
    } else {
        cJSON_Delete(rec);
    }
    if (pg->n >= pg->limit) return 1;
    if (pg->budget >= 0 && --pg->budget <= 0) return 1;
    return 0;
}

/* Plans a query and positions it: from the cursor, or at the start of the
 * best plan. */
static int query_start(sync_t *s, const query_t *q, const char *cursor, plan_t *pl, int *which,
                       walk_pos_t *pos, sync_error_t *err) {
    int n, kind = 0, rc;
    memset(pos, 0, sizeof *pos);
    if ((rc = index_ensure(s, err)) != 0) return rc;
    if ((rc = plans_build(s, q, pl, &n, err)) != 0) return rc;
    if (cursor && *cursor) {
        if ((rc = cursor_decode(s, cursor, &kind, pos, err)) != 0) return rc;
        if ((*which = plan_of_cursor(pl, n, kind, pos)) < 0)
            return sync_fail(err, SYNC_EBADCURSOR, "cursor",
                             "the cursor belongs to a query with other filters");
        return 0;
    }
    *which = plan_best(pl, n);
    return 0;
}

/* ======================================================================== */
/* GET /v1/cases                                                            */
/* ======================================================================== */

int sync_cases(sync_t *s, const sync_principal_t *p, const sync_case_filter_t *f, const char *cursor,
               int limit, char **out, sync_error_t *err) {
    query_t q;
    plan_t pl[PLANS_MAX];
    walk_pos_t pos;
    int which, rc;
    *out = NULL;
    if (limit < 1 || limit > SYNC_CASES_LIMIT_MAX)
        return sync_fail(err, SYNC_EBADREQ, "limit", "limit must be from 1 to %d", SYNC_CASES_LIMIT_MAX);
    if ((rc = query_parse(p, f, &q, err)) != 0) return rc;
    if ((rc = query_start(s, &q, cursor, pl, &which, &pos, err)) != 0) return rc;
    page_t pg = {.s = s, .q = &q, .items = cJSON_CreateArray(), .limit = limit, .budget = PAGE_SCAN_BUDGET};
    if (!pg.items) return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    rc = walk(s, &pl[which], &pos, page_visit, &pg);
    if (rc) {
        cJSON_Delete(pg.items);
        return sync_fail(err, rc, NULL, "cannot read the cases");
    }
    uint64_t failed = util_json_failures();
    cJSON *o = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(o, "items"), *rec;
    cJSON_ArrayForEach(rec, pg.items) {
        cJSON *pub = record_public(rec);
        if (p) record_mask(s->schema, pub, rec, p->role, p->unit);
        cJSON_AddItemToArray(items, pub);
    }
    cJSON_Delete(pg.items);
    char *next = NULL;
    if (!pos.end && pos.len) {
        if (!(next = cursor_encode(s, pl[which].kind == PLAN_ALL ? 'A' : 'I', &pos))) {
            cJSON_Delete(o);
            return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
        }
        cJSON_AddStringToObject(o, "next", next);
        free(next);
    } else {
        cJSON_AddNullToObject(o, "next");
    }
    /* A page with an item or its "next" dropped would end the list early. */
    if (items && util_json_failures() == failed) *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *out ? 0 : sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
}

/* ======================================================================== */
/* GET /v1/export                                                           */
/* ======================================================================== */

typedef struct outbuf {
    char *b;
    size_t n, cap;
    int oom;
} outbuf_t;

static void ob_add(outbuf_t *o, const char *s, size_t n) {
    if (o->oom) return;
    if (o->n + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->n + n + 1)
            cap *= 2;
        char *b = realloc(o->b, cap);
        if (!b) {
            o->oom = 1;
            return;
        }
        o->b = b;
        o->cap = cap;
    }
    memcpy(o->b + o->n, s, n);
    o->n += n;
    o->b[o->n] = 0;
}

static void ob_str(outbuf_t *o, const char *s) {
    ob_add(o, s, strlen(s));
}

/* One CSV cell (RFC 4180): quoted when it holds a comma, quote, CR or LF,
 * with quotes doubled. A cell that a spreadsheet would take for a formula
 * (first character = + - @ TAB CR after any apostrophes) gets one more
 * leading apostrophe (OWASP CSV injection); strip one to read it back. */
static void csv_cell(outbuf_t *o, const char *v, int first) {
    if (!first) ob_add(o, ",", 1);
    if (!v) return;
    size_t a = strspn(v, "'");
    int guard = v[a] && strchr("=+-@\t\r", v[a]) != NULL;
    int quote = strpbrk(v, ",\"\r\n") != NULL;
    if (quote) ob_add(o, "\"", 1);
    if (guard) ob_add(o, "'", 1);
    for (const char *p = v; *p;) {
        const char *q = strchr(p, '"');
        if (!q) {
            ob_str(o, p);
            break;
        }
        ob_add(o, p, (size_t)(q - p) + 1);
        ob_add(o, "\"", 1);
        p = q + 1;
    }
    if (quote) ob_add(o, "\"", 1);
}

static const char *const csv_columns[] = {
    "id",         "case_no",    "type",      "category", "procedure",   "status",     "voided",
    "unit",       "grid",       "assignee",  "address",  "description", "party_name", "fine_amount",
    "created_at", "updated_at", "closed_at", "version",  "opened_at",   "due_at",     "source",
    "ticket_no",  "party_id"};

static void csv_header(outbuf_t *o) {
    ob_str(o, "\xEF\xBB\xBF"); /* BOM: spreadsheets read the file as UTF-8 */
    for (size_t i = 0; i < sizeof csv_columns / sizeof csv_columns[0]; i++)
        csv_cell(o, csv_columns[i], i == 0);
    ob_str(o, "\r\n");
}

static const char *fmt_life(const cJSON *rec, const char *name, char buf[32]) {
    int64_t ms;
    return index_life_time(rec, name, &ms) == 0 ? util_fmt_time(ms, buf) : NULL;
}

/* A row of the CSV export, masked for the reader like the ndjson export
 * (party_id: the party's id_no, else its uscc -- personal data). */
static void csv_row(outbuf_t *o, const cJSON *rec, sync_t *s, const sync_principal_t *p) {
    cJSON *masked = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(rec, "fields"), 1);
    if (!masked) {
        o->oom = 1;
        return;
    }
    if (p)
        schema_mask_fields(s->schema, masked, util_json_str(masked, "unit"), p->role, p->unit);
    const cJSON *f = masked, *party = cJSON_GetObjectItemCaseSensitive(masked, "party");
    const char *party_id = util_json_str(party, "id_no") ? util_json_str(party, "id_no") : util_json_str(party, "uscc");
    const cJSON *fine = cJSON_GetObjectItemCaseSensitive(f, "fine_amount");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(rec, "version");
    char fine_s[64] = "", ver_s[32] = "", closed[32], opened[32], due[32];
    if (cJSON_IsNumber(fine)) snprintf(fine_s, sizeof fine_s, "%.2f", fine->valuedouble);
    if (cJSON_IsNumber(version)) snprintf(ver_s, sizeof ver_s, "%lld", (long long)version->valuedouble);
    const char *cells[] = {
        util_json_str(rec, "id"),
        util_json_str(f, "case_no"),
        util_json_str(rec, "type"),
        util_json_str(f, "category"),
        util_json_str(rec, "procedure"),
        util_json_str(rec, "status"),
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "voided")) ? "true" : "false",
        util_json_str(f, "unit"),
        util_json_str(f, "grid"),
        util_json_str(f, "assignee"),
        util_json_str(f, "address"),
        util_json_str(f, "description"),
        util_json_str(cJSON_GetObjectItemCaseSensitive(f, "party"), "name"),
        fine_s,
        util_json_str(rec, "created_at"),
        util_json_str(rec, "updated_at"),
        fmt_life(rec, "closed", closed),
        ver_s,
        fmt_life(rec, "opened", opened),
        fmt_life(rec, "due", due),
        util_json_str(f, "source"),
        util_json_str(f, "ticket_no"),
        party_id,
    };
    for (size_t i = 0; i < sizeof cells / sizeof cells[0]; i++)
        csv_cell(o, cells[i], i == 0);
    cJSON_Delete(masked);
    ob_str(o, "\r\n");
}

static void ndjson_row(outbuf_t *o, const cJSON *rec, sync_t *s, const sync_principal_t *p) {
    cJSON *pub = record_public(rec);
    if (pub && p) record_mask(s->schema, pub, rec, p->role, p->unit);
    char *text = pub ? cJSON_PrintUnformatted(pub) : NULL;
    cJSON_Delete(pub);
    if (!text) {
        o->oom = 1;
        return;
    }
    ob_str(o, text);
    ob_add(o, "\n", 1);
    free(text);
}

static int ob_flush(outbuf_t *o, sync_write_fn write, void *ctx, size_t min) {
    if (o->n < min || o->n == 0) return 0;
    int rc = write(ctx, o->b, o->n);
    o->n = 0;
    return rc;
}

int sync_export(sync_t *s, const sync_principal_t *p, const sync_case_filter_t *f, const char *format,
                sync_write_fn write, void *ctx, sync_error_t *err) {
    query_t q;
    plan_t pl[PLANS_MAX];
    walk_pos_t pos;
    outbuf_t o = {0};
    int which, rc, csv;
    format = present(format);
    if (!format || strcmp(format, "ndjson") == 0)
        csv = 0;
    else if (strcmp(format, "csv") == 0)
        csv = 1;
    else
        return sync_fail(err, SYNC_EBADREQ, "format", "format is ndjson or csv");
    if ((rc = query_parse(p, f, &q, err)) != 0) return rc;
    if ((rc = query_start(s, &q, NULL, pl, &which, &pos, err)) != 0) return rc;
    if (csv) csv_header(&o);
    do {
        if (__atomic_load_n(&s->shutting_down, __ATOMIC_SEQ_CST)) {
            rc = sync_fail(err, SYNC_EBUSY, NULL, "the server is shutting down");
            break;
        }
        page_t pg = {.s = s, .q = &q, .items = cJSON_CreateArray(), .limit = EXPORT_PAGE, .budget = -1};
        if (!pg.items) {
            rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
            break;
        }
        rc = walk(s, &pl[which], &pos, page_visit, &pg);
        cJSON *rec;
        cJSON_ArrayForEach(rec, pg.items) {
            if (csv)
                csv_row(&o, rec, s, p);
            else
                ndjson_row(&o, rec, s, p);
        }
        cJSON_Delete(pg.items);
        if (rc) {
            rc = sync_fail(err, rc, NULL, "cannot read the cases");
            break;
        }
        if (o.oom) {
            rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
            break;
        }
        if (ob_flush(&o, write, ctx, EXPORT_FLUSH) != 0) {
            rc = sync_fail(err, SYNC_EIO, NULL, "the output failed");
            break;
        }
    } while (!pos.end);
    if (rc == 0 && ob_flush(&o, write, ctx, 0) != 0) rc = sync_fail(err, SYNC_EIO, NULL, "the output failed");
    free(o.b);
    return rc;
}

/* ======================================================================== */
/* GET /v1/stats                                                            */
/* ======================================================================== */

typedef struct group {
    char *key; /* NULL: the record has no value (e.g. no assignee) */
    int64_t opened, voided, overdue;
    int64_t accepted, closed_of_accepted, closed, not_filed, transferred;
    int64_t decided, paid, first_offence;
    int64_t fines_imposed_fen, fines_paid_fen; /* in fen (0.01 yuan), exact */
    int64_t sv_issued, sv_done, sv_done_late;   /* 督办 orders issued in range; done by `to` */
    int64_t replies_due, replied_on_time;       /* hotline tickets due in range */
    int64_t callbacks, satisfied;               /* 回访 in range */
    int64_t dispatched, disposed, disposed_on_time; /* digital events accepted in range */
    double *hours;
    size_t nh, caph;
} group_t;

typedef struct stats {
    sync_t *s;
    const char *by;
    int64_t from, to, now;
    const char *unit; /* NULL: every unit */
    group_t *g;
    size_t n, cap;
    group_t total;
    int oom;
} stats_t;

static const char *group_value(const stats_t *st, const cJSON *rec) {
    if (strcmp(st->by, "type") == 0 || strcmp(st->by, "status") == 0 || strcmp(st->by, "procedure") == 0)
        return util_json_str(rec, st->by);
    return util_json_str(cJSON_GetObjectItemCaseSensitive(rec, "fields"), st->by);
}

/* Is the record now in the state the schema's figure counts for its procedure? */
static int in_figure(const stats_t *st, const cJSON *rec, const char *figure) {
    const char *procedure = util_json_str(rec, "procedure"), *status = util_json_str(rec, "status");
    const char *state = procedure ? schema_figure_state(st->s->schema, figure, procedure) : NULL;
    return state && status && strcmp(state, status) == 0;
}

/* The fine of the record in fen (the schema's figures.fine field), 0 when none. */
static int64_t fine_fen(const stats_t *st, const cJSON *rec) {
    const char *field = schema_figure_field(st->s->schema, "fine");
    const cJSON *v = field ? cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rec, "fields"), field)
                           : NULL;
    if (!cJSON_IsNumber(v) || v->valuedouble <= 0 || v->valuedouble > 9e13) return 0;
    return (int64_t)(v->valuedouble * 100 + 0.5);
}

static group_t *group_of(stats_t *st, const cJSON *rec) {
    const char *key = group_value(st, rec);
    for (size_t i = 0; i < st->n; i++) {
        const char *k = st->g[i].key;
        if ((!k && !key) || (k && key && strcmp(k, key) == 0)) return &st->g[i];
    }
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 16;
        group_t *g = realloc(st->g, cap * sizeof *g);
        if (!g) return NULL;
        st->g = g;
        st->cap = cap;
    }
    group_t *g = &st->g[st->n];
    memset(g, 0, sizeof *g);
    if (key && !(g->key = strdup(key))) return NULL;
    st->n++;
    return g;
}

static int hours_add(group_t *g, double h) {
    if (g->nh == g->caph) {
        size_t cap = g->caph ? g->caph * 2 : 16;
        double *a = realloc(g->hours, cap * sizeof *a);
        if (!a) return -1;
        g->hours = a;
        g->caph = cap;
    }
    g->hours[g->nh++] = h;
    return 0;
}

/* The record in the walk, if it is in the stats' unit. NULL to skip it. */
static cJSON *stats_load(stats_t *st, MDB_txn *txn, const char *id) {
    cJSON *rec = NULL;
    if (record_load(txn, st->s->dbs, id, &rec) != 0) return NULL;
    if (st->unit &&
        !str_is(util_json_str(cJSON_GetObjectItemCaseSensitive(rec, "fields"), "unit"), st->unit)) {
        cJSON_Delete(rec);
        return NULL;
    }
    return rec;
}

enum {
    WALK_OPENED,
    WALK_CLOSED,
    WALK_DUE,
    WALK_ACCEPTED,
    WALK_DECIDED,
    WALK_PAID,
    WALK_SV,
    WALK_REPLY_DUE,
    WALK_CALLBACK,
    WALK_COUNT
};
typedef struct stats_walk {
    stats_t *st;
    int which;
} stats_walk_t;

/* A time under life.first (the first entry into a status), or -1. */
static int64_t first_entry(const cJSON *rec, const char *status) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rec, "life"), "first"), status);
    return status && cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

/* 处置: a digital event accepted (派遣) in range. disposed: it reached the
 * figures' "disposed" state (处理反馈) before `to`; on time: that first entry
 * at most the type's dispose_hours after the first dispatch. 0 when the
 * procedure has no disposed state. */
static void dispose_figures(const stats_t *st, const cJSON *rec, group_t *x) {
    const char *procedure = util_json_str(rec, "procedure"), *type = util_json_str(rec, "type");
    const char *disposed = procedure ? schema_figure_state(st->s->schema, "disposed", procedure) : NULL;
    const char *from = procedure ? schema_figure_state(st->s->schema, "accepted", procedure) : NULL;
    const char *member = schema_figure_field(st->s->schema, "dispose_hours");
    if (!disposed || !from) return;
    x->dispatched++;
    int64_t start = first_entry(rec, from), done = first_entry(rec, disposed);
    if (done < 0 || done >= st->to) return;
    x->disposed++;
    int hours = member && type ? schema_type_hours(st->s->schema, type, member) : -1;
    if (hours >= 0 && start >= 0 && done <= start + (int64_t)hours * 3600000LL) x->disposed_on_time++;
}

/* 督办: the orders of the record issued at t (the walk visits a record once
 * per distinct issue time); done (on time or late) when a reply marked them
 * done before `to`. */
static void sv_figures(const stats_t *st, const cJSON *rec, int64_t t, group_t *x) {
    const char *orders = schema_figure_field(st->s->schema, "orders");
    const char *replies = schema_figure_field(st->s->schema, "replies");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, "fields"), *o;
    const cJSON *rl = replies ? cJSON_GetObjectItemCaseSensitive(f, replies) : NULL;
    if (!orders) return;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(f, orders)) {
        int64_t issued, done;
        int n;
        const char *at = util_json_str(o, "issued_at");
        if (!at || util_parse_time(at, &issued) != 0 || (issued < 0 ? 0 : issued) != t) continue;
        x->sv_issued++;
        sync_sv_state_t state = sync_sv_state(o, rl, st->now, &done, &n);
        if (done < 0 || done >= st->to) continue;
        if (state == SV_DONE_LATE)
            x->sv_done_late++;
        else
            x->sv_done++;
    }
}

static int stats_visit(MDB_txn *txn, const char *id, int64_t t, void *ctx) {
    stats_walk_t *w = ctx;
    stats_t *st = w->st;
    cJSON *rec = stats_load(st, txn, id);
    if (!rec) return 0;
    group_t *g = group_of(st, rec);
    int64_t opened = 0, closed = 0, due = 0;
    int voided = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "voided"));
    int has_closed = index_life_time(rec, "closed", &closed) == 0;
    index_life_time(rec, "opened", &opened);
    if (!g) {
        st->oom = 1;
        cJSON_Delete(rec);
        return SYNC_ENOMEM;
    }
    group_t *both[2] = {g, &st->total};
    for (int i = 0; i < 2; i++) {
        group_t *x = both[i];
        switch (w->which) {
        case WALK_OPENED:
            if (voided)
                x->voided++;
            else
                x->opened++;
            break;
        case WALK_CLOSED:
            /* A terminal status entered in range: 结案, or counted apart. */
            if (voided || !has_closed) break;
            if (in_figure(st, rec, "closed")) {
                x->closed++;
                if (hours_add(x, closed > opened ? (double)(closed - opened) / 3600000.0 : 0) != 0) st->oom = 1;
            } else if (in_figure(st, rec, "not_filed")) {
                x->not_filed++;
            } else if (in_figure(st, rec, "transferred")) {
                x->transferred++;
            }
            break;
        case WALK_ACCEPTED:
            /* Voided cases stay accepted: 撤销 is never 办结. */
            x->accepted++;
            if (!voided && has_closed && closed < st->to && in_figure(st, rec, "closed")) x->closed_of_accepted++;
            if (!voided) dispose_figures(st, rec, x);
            break;
        case WALK_DECIDED:
            if (voided) break;
            x->decided++;
            x->fines_imposed_fen += fine_fen(st, rec);
            if (schema_figure_match(st->s->schema, "first_offence", cJSON_GetObjectItemCaseSensitive(rec, "fields")))
                x->first_offence++;
            break;
        case WALK_SV:
            if (!voided) sv_figures(st, rec, t, x);
            break;
        case WALK_REPLY_DUE: {
            /* Counted once the outcome is known: replied, or the deadline passed. */
            int64_t replied = -1;
            int has_reply = index_life_time(rec, "replied", &replied) == 0;
            if (voided || (!has_reply && t >= st->now)) break;
            x->replies_due++;
            if (has_reply && replied <= t) x->replied_on_time++;
            break;
        }
        case WALK_CALLBACK: {
            const char *field = schema_figure_field(st->s->schema, "satisfied");
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, "fields");
            if (voided) break;
            x->callbacks++;
            if (field && cJSON_IsTrue(index_field_value(f, field))) x->satisfied++;
            break;
        }
        case WALK_PAID:
            if (voided) break;
            x->paid++;
            x->fines_paid_fen += fine_fen(st, rec);
            break;
        default:
            if (!voided && index_life_time(rec, "due", &due) == 0 && due < st->now) x->overdue++;
            break;
        }
    }
    (void)t;
    cJSON_Delete(rec);
    return st->oom ? SYNC_ENOMEM : 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_group(const void *a, const void *b) {
    const group_t *x = a, *y = b;
    if (!x->key || !y->key) return !x->key ? (y->key ? -1 : 0) : 1;
    return strcmp(x->key, y->key);
}

/* x >= 0 rounded to `scale` (100: two decimals); the Makefile links no libm. */
static double round_to(double x, double scale) {
    return (double)(int64_t)(x * scale + 0.5) / scale;
}

static cJSON *group_json(const group_t *g, int with_key) {
    cJSON *o = cJSON_CreateObject();
    if (with_key) {
        if (g->key)
            cJSON_AddStringToObject(o, "key", g->key);
        else
            cJSON_AddNullToObject(o, "key");
    }
    cJSON_AddNumberToObject(o, "opened", (double)g->opened);
    cJSON_AddNumberToObject(o, "accepted", (double)g->accepted);
    cJSON_AddNumberToObject(o, "closed", (double)g->closed);
    cJSON_AddNumberToObject(o, "closed_of_accepted", (double)g->closed_of_accepted);
    if (g->accepted)
        cJSON_AddNumberToObject(o, "closure_rate",
                                round_to((double)g->closed_of_accepted / (double)g->accepted, 10000));
    else
        cJSON_AddNullToObject(o, "closure_rate");
    cJSON_AddNumberToObject(o, "not_filed", (double)g->not_filed);
    cJSON_AddNumberToObject(o, "transferred", (double)g->transferred);
    cJSON_AddNumberToObject(o, "overdue", (double)g->overdue);
    cJSON_AddNumberToObject(o, "decided", (double)g->decided);
    cJSON_AddNumberToObject(o, "fines_imposed", (double)g->fines_imposed_fen / 100.0);
    cJSON_AddNumberToObject(o, "paid", (double)g->paid);
    cJSON_AddNumberToObject(o, "fines_paid", (double)g->fines_paid_fen / 100.0);
    if (g->nh) {
        qsort(g->hours, g->nh, sizeof *g->hours, cmp_double);
        double m = g->nh % 2 ? g->hours[g->nh / 2] : (g->hours[g->nh / 2 - 1] + g->hours[g->nh / 2]) / 2;
        cJSON_AddNumberToObject(o, "median_hours_to_close", round_to(m, 100));
    } else {
        cJSON_AddNullToObject(o, "median_hours_to_close");
    }
    cJSON_AddNumberToObject(o, "voided", (double)g->voided);
    cJSON_AddNumberToObject(o, "first_offence", (double)g->first_offence);
    const struct {
        const char *name;
        int64_t n;
    } counts[] = {{"sv_issued", g->sv_issued},
                  {"sv_done", g->sv_done},
                  {"sv_done_late", g->sv_done_late},
                  {"sv_open", g->sv_issued - g->sv_done - g->sv_done_late},
                  {"replies_due", g->replies_due},
                  {"replied_on_time", g->replied_on_time},
                  {"callbacks", g->callbacks},
                  {"satisfied", g->satisfied},
                  {"dispatched", g->dispatched},
                  {"disposed", g->disposed},
                  {"disposed_on_time", g->disposed_on_time}};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        cJSON_AddNumberToObject(o, counts[i].name, (double)counts[i].n);
    const struct {
        const char *name;
        int64_t num, den;
    } rates[] = {{"reply_on_time_rate", g->replied_on_time, g->replies_due},
                 {"satisfaction_rate", g->satisfied, g->callbacks},
                 {"disposal_rate", g->disposed, g->dispatched},
                 {"disposal_on_time_rate", g->disposed_on_time, g->dispatched}};
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        if (rates[i].den)
            cJSON_AddNumberToObject(o, rates[i].name, round_to((double)rates[i].num / (double)rates[i].den, 10000));
        else
            cJSON_AddNullToObject(o, rates[i].name);
    }
    return o;
}

/* RFC 3339, or a date YYYY-MM-DD meaning its midnight in China (UTC+8). */
static int parse_when(const char *v, int64_t *ms) {
    if (strlen(v) == 10 && v[4] == '-' && v[7] == '-') {
        int d[8], k = 0;
        for (int i = 0; i < 10; i++) {
            if (i == 4 || i == 7) continue;
            if (v[i] < '0' || v[i] > '9') return -1;
            d[k++] = v[i] - '0';
        }
        int Y = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3], M = d[4] * 10 + d[5], D = d[6] * 10 + d[7];
        if (M < 1 || M > 12 || D < 1 || D > 31) return -1;
        struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D};
        time_t t = timegm(&tm);
        if (t == (time_t)-1 || tm.tm_mday != D || tm.tm_mon != M - 1) return -1; /* Feb 30 normalized */
        *ms = (int64_t)t * 1000 - CHINA_OFFSET_MS;
        return 0;
    }
    return strlen(v) <= 64 ? util_parse_time(v, ms) : -1;
}

int sync_stats(sync_t *s, const sync_principal_t *p, const char *from, const char *to, const char *group_by,
               const char *unit, char **out, sync_error_t *err) {
    char u[FILTER_MAX + 1], buf[32];
    stats_t st = {.s = s};
    int rc;
    *out = NULL;
    if ((rc = scope_unit(p, unit, u, err)) != 0) return rc;
    st.unit = u[0] ? u : NULL;
    st.by = present(group_by) ? group_by : "type";
    static const char *const by_names[] = {"type", "status", "grid", "assignee", "source", "procedure"};
    int by_ok = 0;
    for (size_t i = 0; i < sizeof by_names / sizeof by_names[0]; i++) by_ok |= strcmp(st.by, by_names[i]) == 0;
    if (!by_ok)
        return sync_fail(err, SYNC_EBADREQ, "group_by",
                         "group_by is type, status, grid, assignee, source or procedure");
    st.now = util_now_ms();
    st.to = st.now;
    if (present(to) && parse_when(to, &st.to) != 0)
        return sync_fail(err, SYNC_EBADREQ, "to", "to must be an RFC 3339 time or a date YYYY-MM-DD");
    st.from = st.to - STATS_DEFAULT_DAYS * 86400000LL;
    if (present(from) && parse_when(from, &st.from) != 0)
        return sync_fail(err, SYNC_EBADREQ, "from", "from must be an RFC 3339 time or a date YYYY-MM-DD");
    if (st.from >= st.to) return sync_fail(err, SYNC_EBADREQ, "from", "from must be before to");
    if ((rc = index_ensure(s, err)) != 0) return rc;

    static const char *const names[WALK_COUNT][2] = {
        {"opened", "u.opened"},     {"closed", "u.closed"},   {"due", "u.due"},
        {"accepted", "u.accepted"}, {"decided", "u.decided"}, {"paid", "u.paid"},
        {"sv", "u.sv"},             {"reply_due", "u.reply_due"}, {"callback", "u.callback"}};
    for (int w = WALK_OPENED; w < WALK_COUNT && rc == 0; w++) {
        plan_t pl;
        walk_pos_t pos = {0};
        memset(&pl, 0, sizeof pl);
        pl.kind = PLAN_RANGE;
        if (plan_prefix(&pl, names[w][st.unit ? 1 : 0], st.unit, NULL) != 0) {
            rc = sync_fail(err, SYNC_EBADREQ, "unit", "unit is too long");
            break;
        }
        pl.lo = w == WALK_DUE ? 0 : st.from;
        pl.hi = w == WALK_DUE ? st.now : st.to;
        stats_walk_t sw = {&st, w};
        if ((rc = walk(s, &pl, &pos, stats_visit, &sw)) != 0)
            rc = sync_fail(err, rc, NULL, "cannot read the cases");
    }
    cJSON *o = NULL;
    if (rc == 0) {
        if (st.n) qsort(st.g, st.n, sizeof *st.g, cmp_group);
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "from", util_fmt_time(st.from, buf));
        cJSON_AddStringToObject(o, "to", util_fmt_time(st.to, buf));
        cJSON_AddStringToObject(o, "group_by", st.by);
        if (st.unit)
            cJSON_AddStringToObject(o, "unit", st.unit);
        else
            cJSON_AddNullToObject(o, "unit");
        cJSON_AddStringToObject(o, "now", util_fmt_time(st.now, buf));
        cJSON *groups = cJSON_AddArrayToObject(o, "groups");
        for (size_t i = 0; i < st.n; i++)
            cJSON_AddItemToArray(groups, group_json(&st.g[i], 1));
        cJSON_AddItemToObject(o, "total", group_json(&st.total, 0));
        /* Evidence pushed in records whose bytes are past evidence_deadline_hours. */
        MDB_txn *txn = NULL;
        uint64_t missing = 0;
        if (store_read_begin(s->st, &txn) == 0 && blobs_missing_count(s, txn, st.now, st.unit, &missing) == 0)
            cJSON_AddNumberToObject(o, "evidence_missing", (double)missing);
        store_read_end(txn);
        *out = cJSON_PrintUnformatted(o);
        if (!*out) rc = sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    }
    cJSON_Delete(o);
    for (size_t i = 0; i < st.n; i++) {
        free(st.g[i].key);
        free(st.g[i].hours);
    }
    free(st.g);
    free(st.total.hours);
    return rc;
}
