/* cases.c -- reading cases and their history, conflicts and their
 * resolution, the rejection quarantine, and the audit check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/valcodec.h"
#include "sync/record.h"

static int answer(cJSON *o, char **out, sync_error_t *err) {
    *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *out ? 0 : sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
}

static int64_t window_ms(sync_t *s) {
    return (int64_t)s->cfg.sync_window_days * 86400000;
}

/* Supervisors, legal reviewers and admins read a unit's conflicts and quarantine. */
static int reads_unit(const sync_principal_t *p, const char *unit) {
    if (p->role == ROLE_ADMIN) return 1;
    return (p->role == ROLE_SUPERVISOR || p->role == ROLE_LEGAL_REVIEWER) && unit &&
           strcmp(unit, p->unit) == 0;
}

/* Loads a record the caller's scope holds: 404 when absent, 403 outside scope. */
static int load_visible(sync_t *s, MDB_txn *txn, const sync_principal_t *p, const char *id, cJSON **rec,
                        sync_error_t *err) {
    int rc = record_load(txn, s->dbs, id, rec);
    if (rc == SYNC_ENOTFOUND) return sync_fail(err, rc, NULL, "no case %s", id);
    if (rc) return sync_fail(err, rc, NULL, "cannot read case %s", id);
    if (!record_visible(p->user, *rec, util_now_ms(), window_ms(s), 1)) {
        cJSON_Delete(*rec);
        *rec = NULL;
        return sync_fail(err, SYNC_EFORBIDDEN, NULL, "case %s is outside your scope", id);
    }
    return 0;
}

/* derived.late_fee (加处罚款, 行政处罚法 Art. 72): from the end of the
 * payment period (payment_due, counted from the first entry into its state)
 * until the paid time (index "paid") or now, each day begun counts; the fee
 * is schema_late_fee_fen of the fine. NULL when the case has no fine or no
 * payment period. Read-only: computed at each read, never stored. */
static cJSON *late_fee(sync_t *s, const cJSON *rec, int64_t now) {
    const char *fine_field = schema_figure_field(s->schema, "fine");
    const cJSON *fine =
        fine_field
            ? cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rec, "fields"), fine_field)
            : NULL;
    const cJSON *life = cJSON_GetObjectItemCaseSensitive(rec, "life");
    if (!cJSON_IsNumber(fine) || fine->valuedouble <= 0 || fine->valuedouble > 1e13) return NULL;
    schema_deadline_record_t dr = {.procedure = util_json_str(rec, "procedure"),
                                   .entered = cJSON_GetObjectItemCaseSensitive(life, "first")};
    int64_t due, paid = -1, fee = 0, fine_fen = (int64_t)(fine->valuedouble * 100 + 0.5);
    if (schema_deadline_due(s->schema, "payment_due", &dr, &due) != 0) return NULL;
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(life, "paid");
    if (cJSON_IsNumber(pv)) paid = (int64_t)pv->valuedouble;
    int64_t end = paid >= 0 ? paid : now;
    int64_t days = end > due ? (end - due + 86399999) / 86400000 : 0;
    if (schema_late_fee_fen(fine_fen, days, &fee) != 0) return NULL;
    cJSON *o = cJSON_CreateObject();
    char at[32];
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "amount", (double)fee / 100.0);
    cJSON_AddNumberToObject(o, "days", (double)days);
    cJSON_AddStringToObject(o, "from", util_fmt_time(due, at));
    util_json_add(o, "until", paid >= 0 ? cJSON_CreateString(util_fmt_time(paid, at)) : cJSON_CreateNull());
    cJSON_AddBoolToObject(o, "capped", fee >= fine_fen);
    cJSON_AddNumberToObject(o, "fine", (double)fine_fen / 100.0);
    return o;
}

int sync_case_get(sync_t *s, const sync_principal_t *p, const char *id, char **out, sync_error_t *err) {
    MDB_txn *txn = NULL;
    cJSON *rec = NULL;
    *out = NULL;
    int rc = store_read_begin(s->st, &txn);
    if (rc == 0) rc = load_visible(s, txn, p, id, &rec, err);
    store_read_end(txn);
    if (rc) return rc;
    cJSON *o = record_public(rec);
    record_mask(s->schema, o, rec, p->role, p->unit);
    cJSON *derived = o ? cJSON_AddObjectToObject(o, "derived") : NULL, *fee = late_fee(s, rec, util_now_ms());
    if (derived)
        util_json_add(derived, "late_fee", fee ? fee : cJSON_CreateNull());
    else
        cJSON_Delete(fee);
    cJSON_Delete(rec);
    if (!derived) {
        cJSON_Delete(o);
        return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    }
    return answer(o, out, err);
}

/* The old and new values of masked fields in a history entry, masked for the
 * reader as the record is (the entry's hash is then no longer its own: the
 * chain is verified by /v1/audit/verify, on the stored entries). */
static void history_mask(sync_t *s, cJSON *entry, const cJSON *rec, const sync_principal_t *p) {
    const char *unit = util_json_str(cJSON_GetObjectItemCaseSensitive(rec, "fields"), "unit");
    cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(entry, "fields")) {
        if (!schema_field_masked_for(s->schema, f->string, p->role, unit && strcmp(unit, p->unit) == 0))
            continue;
        static const char *const sides[] = {"old", "new"};
        for (int i = 0; i < 2; i++) {
            cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(f, sides[i]), *tmp = cJSON_CreateObject();
            if (!v) continue;
            if (!tmp || !cJSON_AddItemToObject(tmp, f->string, v)) {
                cJSON_Delete(tmp);
                cJSON_Delete(v);
                cJSON_AddNullToObject(f, sides[i]);
                continue;
            }
            schema_mask_fields(s->schema, tmp, unit, p->role, p->unit);
            cJSON_AddItemToObject(f, sides[i], cJSON_DetachItemFromObjectCaseSensitive(tmp, f->string));
            cJSON_Delete(tmp);
        }
    }
}

int sync_case_history(sync_t *s, const sync_principal_t *p, const char *id, char **out, sync_error_t *err) {
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    cJSON *rec = NULL, *o = NULL;
    unsigned char kb[128];
    size_t n = strlen(id);
    *out = NULL;
    if (n > sizeof kb - 9) return sync_fail(err, SYNC_ENOTFOUND, NULL, "no case %s", id);
    int rc = store_read_begin(s->st, &txn);
    if (rc || (rc = load_visible(s, txn, p, id, &rec, err))) goto done;
    if (mdb_cursor_open(txn, s->dbs->record_log, &cur) != 0) {
        rc = sync_fail(err, SYNC_EIO, NULL, "cannot read the log");
        goto done;
    }
    o = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    memcpy(kb, id, n);
    kb[n] = 0;
    MDB_val k = {n + 1, kb}, v;
    for (int r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); r == 0;
         r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != n + 9 || memcmp(k.mv_data, kb, n + 1) != 0) break;
        cJSON *e = NULL;
        if (store_get_json(txn, s->dbs->log, (unsigned char *)k.mv_data + n + 1, 8, &e) == 0) {
            history_mask(s, e, rec, p);
            util_json_push(items, e);
        }
    }
done:
    if (cur) mdb_cursor_close(cur);
    store_read_end(txn);
    cJSON_Delete(rec);
    if (rc) {
        cJSON_Delete(o);
        return rc;
    }
    return answer(o, out, err);
}

/* The values a conflict holds (server_value, client_value, resolution.value)
 * masked for the reader as the record's field would be (schema masks). */
static void conflict_mask(sync_t *s, cJSON *c, const sync_principal_t *p) {
    const char *field = util_json_str(c, "field"), *unit = util_json_str(c, "unit");
    if (!field || !schema_field_masked_for(s->schema, field, p->role, unit && strcmp(unit, p->unit) == 0))
        return;
    cJSON *holders[] = {c, c, cJSON_GetObjectItemCaseSensitive(c, "resolution")};
    static const char *const keys[] = {"server_value", "client_value", "value"};
    for (int i = 0; i < 3; i++) {
        cJSON *v = holders[i] ? cJSON_DetachItemFromObjectCaseSensitive(holders[i], keys[i]) : NULL;
        if (!v) continue;
        cJSON *tmp = cJSON_CreateObject();
        if (!tmp || !cJSON_AddItemToObject(tmp, field, v)) {
            cJSON_Delete(tmp);
            cJSON_Delete(v);
            cJSON_AddNullToObject(holders[i], keys[i]); /* never the unmasked value */
            continue;
        }
        schema_mask_fields(s->schema, tmp, unit, p->role, p->unit);
        cJSON_AddItemToObject(holders[i], keys[i], cJSON_DetachItemFromObjectCaseSensitive(tmp, field));
        cJSON_Delete(tmp);
    }
}

int sync_conflicts(sync_t *s, const sync_principal_t *p, const char *state, char **out, sync_error_t *err) {
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    *out = NULL;
    if (p->role < ROLE_LEGAL_REVIEWER)
        return sync_fail(err, SYNC_EFORBIDDEN, NULL,
                         "conflicts are for supervisors, legal reviewers and admins");
    if (state && strcmp(state, "open") != 0 && strcmp(state, "resolved") != 0)
        return sync_fail(err, SYNC_EBADREQ, "state", "state is open or resolved");
    int rc = store_read_begin(s->st, &txn);
    if (rc) return sync_fail(err, rc, NULL, "cannot read the store");
    cJSON *o = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(o, "items");
    if (mdb_cursor_open(txn, s->dbs->conflicts, &cur) == 0) {
        MDB_val k, v;
        for (int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0;
             r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            cJSON *c = valcodec_decode(v.mv_data, v.mv_size);
            const char *st = util_json_str(c, "state");
            if (c && reads_unit(p, util_json_str(c, "unit")) && (!state || (st && strcmp(st, state) == 0))) {
                conflict_mask(s, c, p);
                util_json_push(items, c);
            } else
                cJSON_Delete(c);
        }
        mdb_cursor_close(cur);
    }
    store_read_end(txn);
    return answer(o, out, err);
}

int sync_rejections(sync_t *s, const sync_principal_t *p, char **out, sync_error_t *err) {
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    *out = NULL;
    int rc = store_read_begin(s->st, &txn);
    if (rc) return sync_fail(err, rc, NULL, "cannot read the store");
    cJSON *o = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(o, "items");
    if (mdb_cursor_open(txn, s->dbs->rejections, &cur) == 0) {
        MDB_val k, v;
        for (int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0;
             r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            cJSON *q = valcodec_decode(v.mv_data, v.mv_size);
            const char *uid = util_json_str(q, "user_id");
            /* Officers and auxiliaries see what they typed; the unit's leads see the unit's. */
            int mine = uid && strcmp(uid, p->user_id) == 0;
            if (q && (mine || reads_unit(p, util_json_str(q, "unit"))))
                util_json_push(items, q);
            else
                cJSON_Delete(q);
        }
        mdb_cursor_close(cur);
    }
    store_read_end(txn);
    return answer(o, out, err);
}

/* ---- resolving a conflict ---------------------------------------------------------- */

typedef struct resolve_job {
    sync_t *s;
    const sync_principal_t *p;
    const char *id;
    const cJSON *value;
    const char *note;
    cJSON *conflict; /* out: the resolved conflict */
    sync_error_t *err;
} resolve_job_t;

static int resolve_run(MDB_txn *txn, void *ctx) {
    resolve_job_t *j = ctx;
    sync_t *s = j->s;
    const sync_principal_t *p = j->p;
    cJSON *c = NULL, *rec = NULL, *entry = NULL;
    int64_t now = util_now_ms();
    char at[32];
    int rc = store_get_json(txn, s->dbs->conflicts, j->id, strlen(j->id), &c);
    if (rc == SYNC_ENOTFOUND) return sync_fail(j->err, rc, NULL, "no conflict %s", j->id);
    if (rc) return rc;
    const char *state = util_json_str(c, "state"), *field = util_json_str(c, "field");
    const char *rid = util_json_str(c, "record_id");
    if (!reads_unit(p, util_json_str(c, "unit")) || p->role < schema_resolve_role(s->schema)) {
        rc = sync_fail(j->err, SYNC_EFORBIDDEN, NULL, "only a supervisor of the unit resolves its conflicts");
        goto done;
    }
    if (!state || strcmp(state, "open") != 0) {
        rc = sync_fail(j->err, SYNC_ECONFLICT, NULL, "conflict %s is already resolved", j->id);
        goto done;
    }
    if (!field || !rid || (rc = record_load(txn, s->dbs, rid, &rec))) {
        rc = sync_fail(j->err, rc ? rc : SYNC_EIO, NULL, "the conflict's case is missing");
        goto done;
    }
    const char *procedure = util_json_str(rec, "procedure");
    cJSON *fields = cJSON_GetObjectItemCaseSensitive(rec, "fields");
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(rec, "closed_at");
    int64_t prev_closed = cJSON_IsNumber(cl) ? (int64_t)cl->valuedouble : 0;
    int64_t version = 0;
    util_json_int(rec, "version", &version);
    uint64_t seq = store_meta_next(txn, s->dbs, "seq");
    if (!seq) {
        rc = SYNC_EIO;
        goto done;
    }

    entry = cJSON_CreateObject();
    cJSON_AddNumberToObject(entry, "seq", (double)seq);
    cJSON_AddStringToObject(entry, "at", util_fmt_time(now, at));
    cJSON_AddStringToObject(entry, "received_at", at);
    cJSON_AddStringToObject(entry, "user_id", p->user_id);
    cJSON_AddStringToObject(entry, "device_id", p->device_id);
    cJSON_AddNumberToObject(entry, "changeset_seq", 0);
    cJSON_AddStringToObject(entry, "record_id", rid);
    cJSON_AddStringToObject(entry, "op", "resolve");
    cJSON_AddStringToObject(entry, "conflict_id", j->id);
    cJSON *af = cJSON_AddObjectToObject(entry, "fields");

    /* What the decision changes: a field, the status, or the void flag. */
    const char *target = field;
    cJSON *cur = NULL;
    if (strcmp(field, "status") == 0) {
        const char *to = cJSON_IsString(j->value) ? j->value->valuestring : NULL;
        const char *sv = util_json_str(c, "server_value"), *cv = util_json_str(c, "client_value");
        if (!to || !((sv && strcmp(to, sv) == 0) || (cv && strcmp(to, cv) == 0))) {
            rc = sync_fail(j->err, SYNC_EINVALID, "value", "value is one of the two statuses in conflict");
            goto done;
        }
        cur = cJSON_GetObjectItemCaseSensitive(rec, "status");
        if (strcmp(cur->valuestring, to) != 0) {
            /* the same role rule and guards as the transition that leads there */
            schema_view_t view = record_view(rec, now);
            schema_err_t se = {0};
            schema_judgement_t jd = schema_judge_resolution(s->schema, &view, to, p->role, &se);
            if (jd == JUDGE_ROLE || jd == JUDGE_FORBIDDEN) {
                rc = sync_fail(j->err, SYNC_EFORBIDDEN, "value", "%s", se.message);
                goto done;
            }
            if (jd == JUDGE_GUARD) {
                rc = sync_fail(j->err, SYNC_EINVALID, se.path, "%s", se.message);
                goto done;
            }
            cJSON *nv = cJSON_CreateString(to);
            cJSON *f = cJSON_CreateObject();
            util_json_add(f, "old", cJSON_Duplicate(cur, 1));
            util_json_add(f, "new", cJSON_Duplicate(nv, 1));
            util_json_add(af, "status", f);
            util_json_set(rec, "status", nv);
            util_json_set(rec, "status_at", cJSON_CreateNumber((double)now));
            /* closed bookkeeping: closed_at only while closed (it takes records off phones) */
            if (schema_status_is_closed(s->schema, procedure, to))
                util_json_set(rec, "closed_at", cJSON_CreateNumber((double)now));
            else
                cJSON_DeleteItemFromObjectCaseSensitive(rec, "closed_at");
            const char *cn = schema_case_no_state(s->schema, procedure);
            if (cn && !schema_status_is_closed(s->schema, procedure, to) &&
                schema_status_reached(s->schema, procedure, to, cn)) {
                cJSON *no = NULL;
                if ((rc = record_assign_case_no(txn, s->dbs, rec, now, &no))) goto done;
                if (no) {
                    cJSON *g = cJSON_CreateObject();
                    util_json_add(g, "old", cJSON_CreateNull());
                    util_json_add(g, "new", cJSON_Duplicate(no, 1));
                    util_json_add(af, "case_no", g);
                    record_set_meta(rec, "case_no", version + 1, seq, p->device_id, now);
                }
            }
        }
    } else if (strcmp(field, "voided") == 0) {
        if (!cJSON_IsBool(j->value)) {
            rc = sync_fail(j->err, SYNC_EINVALID, "value", "value is true (void the case) or false");
            goto done;
        }
        if (cJSON_IsTrue(j->value)) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddFalseToObject(f, "old");
            cJSON_AddTrueToObject(f, "new");
            util_json_add(af, "voided", f);
            util_json_set(rec, "voided", cJSON_CreateTrue());
            util_json_set(rec, "closed_at", cJSON_CreateNumber((double)now));
        }
    } else {
        schema_err_t se = {0};
        if (schema_check_set(s->schema, field, j->value, &se) != 0) {
            rc = sync_fail(j->err, SYNC_EINVALID, "value", "%s", se.message);
            goto done;
        }
        cur = cJSON_GetObjectItemCaseSensitive(fields, field);
        cJSON *f = cJSON_CreateObject();
        util_json_add(f, "old", cur ? cJSON_Duplicate(cur, 1) : cJSON_CreateNull());
        util_json_add(f, "new", cJSON_Duplicate(j->value, 1));
        util_json_add(af, field, f);
        if (cJSON_IsNull(j->value))
            cJSON_DeleteItemFromObjectCaseSensitive(fields, field);
        else
            util_json_set(fields, field, cJSON_Duplicate(j->value, 1));
    }
    record_set_meta(rec, target, version + 1, seq, p->device_id, now);

    /* The conflict leaves the record's open list. */
    cJSON *list = cJSON_GetObjectItemCaseSensitive(rec, "conflicts");
    for (int i = cJSON_GetArraySize(list) - 1; i >= 0; i--) {
        cJSON *x = cJSON_GetArrayItem(list, i);
        if (cJSON_IsString(x) && strcmp(x->valuestring, j->id) == 0) cJSON_DeleteItemFromArray(list, i);
    }
    util_json_set(rec, "version", cJSON_CreateNumber((double)(version + 1)));
    util_json_set(rec, "seq", cJSON_CreateNumber((double)seq));
    util_json_set(rec, "updated_at", cJSON_CreateString(at));
    if ((rc = record_store(s, txn, rec, seq, prev_closed))) goto done;
    if ((rc = audit_append(txn, s->dbs, seq, rid, entry))) goto done;

    util_json_set(c, "state", cJSON_CreateString("resolved"));
    util_json_set(c, "resolved_at", cJSON_CreateString(at));
    cJSON *res = cJSON_CreateObject();
    util_json_add(res, "value", cJSON_Duplicate(j->value, 1));
    cJSON_AddStringToObject(res, "note", j->note ? j->note : "");
    cJSON_AddStringToObject(res, "by", p->user_id);
    cJSON_AddStringToObject(res, "device_id", p->device_id);
    cJSON_AddNumberToObject(res, "seq", (double)seq);
    cJSON_AddNumberToObject(res, "version", (double)(version + 1));
    util_json_set(c, "resolution", res);
    if ((rc = store_put_json(txn, s->dbs->conflicts, j->id, strlen(j->id), c))) goto done;
    j->conflict = c;
    c = NULL;
done:
    cJSON_Delete(c);
    cJSON_Delete(rec);
    cJSON_Delete(entry);
    return rc;
}

int sync_conflict_resolve(sync_t *s, const sync_principal_t *p, const char *id, const cJSON *body, char **out,
                          sync_error_t *err) {
    resolve_job_t j = {.s = s, .p = p, .id = id, .err = err};
    *out = NULL;
    if (p->role < schema_resolve_role(s->schema))
        return sync_fail(err, SYNC_EFORBIDDEN, NULL, "only a supervisor resolves conflicts");
    if (!cJSON_IsObject(body) || !(j.value = cJSON_GetObjectItemCaseSensitive(body, "value")))
        return sync_fail(err, SYNC_EINVALID, "value", "the decision needs a value");
    const cJSON *note = cJSON_GetObjectItemCaseSensitive(body, "note");
    if (note && !cJSON_IsString(note)) return sync_fail(err, SYNC_EINVALID, "note", "note must be a string");
    j.note = note ? note->valuestring : NULL;
    int rc = store_write(s->st, resolve_run, &j);
    if (rc) {
        cJSON_Delete(j.conflict);
        if (err && err->code != rc) sync_fail(err, rc, NULL, "%s", sync_strerror(rc));
        return rc;
    }
    return answer(j.conflict, out, err);
}

int sync_audit_verify(sync_t *s, char **out, sync_error_t *err) {
    MDB_txn *txn = NULL;
    int ok = 0;
    uint64_t entries = 0;
    char head[65], why[160];
    *out = NULL;
    int rc = store_read_begin(s->st, &txn);
    if (rc == 0) rc = audit_verify(txn, s->dbs, &ok, &entries, head, why, sizeof why);
    store_read_end(txn);
    if (rc) return sync_fail(err, rc, NULL, "cannot read the audit log");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", ok);
    cJSON_AddNumberToObject(o, "entries", (double)entries);
    cJSON_AddStringToObject(o, "head", head);
    if (!ok) cJSON_AddStringToObject(o, "problem", why);
    return answer(o, out, err);
}

int sync_audit_export(sync_t *s, sync_write_fn write, void *ctx, sync_error_t *err) {
    MDB_txn *txn = NULL;
    uint64_t format = 0;
    int rc = sync_store_format(s, &format, err);
    if (rc) return rc;
    if (format == 1)
        return sync_fail(
            err, SYNC_EBADREQ, NULL,
            "this store is format v1: its entries are not canonical JSON; run `casesync migrate` "
            "first (`casesync verify` checks a v1 chain)");
    if ((rc = store_read_begin(s->st, &txn)) != 0)
        return sync_fail(err, rc, NULL, "cannot read the audit log");
    rc = audit_export(txn, s->dbs, write, ctx);
    store_read_end(txn);
    return rc ? sync_fail(err, rc, NULL, "cannot export the audit log") : 0;
}
