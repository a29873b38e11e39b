/* handle.c -- the casesync_t handle: open and close, locks, errors, events,
 * the session as cached from the store, counters and the fault hook. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clients/c/internal.h"

/* ---- process-wide libcurl init ------------------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void) {
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int casesync_global_init(void) {
    pthread_once(&curl_once, curl_init_once);
    return curl_init_rc == CURLE_OK ? 0 : CASESYNC_E_NETWORK;
}

/* ---- errors ------------------------------------------------------------------------------- */

const char *casesync_strerror(int rc) {
    switch (rc) {
    case CASESYNC_OK: return "ok";
    case CASESYNC_E_ARG: return "bad argument";
    case CASESYNC_E_NOMEM: return "out of memory";
    case CASESYNC_E_STORE: return "local store failure";
    case CASESYNC_E_LOGIN: return "not logged in (or the session expired)";
    case CASESYNC_E_CREDENTIALS: return "wrong username or password";
    case CASESYNC_E_REVOKED: return "this device was revoked";
    case CASESYNC_E_NETWORK: return "network error";
    case CASESYNC_E_TIMEOUT: return "timed out";
    case CASESYNC_E_CANCELED: return "cancelled";
    case CASESYNC_E_BUSY: return "server busy, retry later";
    case CASESYNC_E_SERVER: return "unexpected server answer";
    case CASESYNC_E_PROTOCOL: return "protocol error";
    case CASESYNC_E_SHAPE: return "wrong JSON type for the schema";
    case CASESYNC_E_INVALID: return "invalid value";
    case CASESYNC_E_ROLE: return "not allowed for this role";
    case CASESYNC_E_TRANSITION: return "transition not allowed";
    case CASESYNC_E_SCOPE: return "outside the user's scope";
    case CASESYNC_E_NOT_FOUND: return "not found";
    case CASESYNC_E_EXISTS: return "already exists";
    case CASESYNC_E_VOIDED: return "record is voided";
    case CASESYNC_E_STATE: return "state directory holds another user's or device's unsent changes";
    case CASESYNC_E_IO: return "file cannot be read";
    case CASESYNC_E_NO_SCHEMA: return "no schema yet: log in online first";
    case CASESYNC_E_REENTRANT: return "network call from inside a callback";
    case CASESYNC_E_FORBIDDEN: return "forbidden";
    case CASESYNC_E_FROZEN: return "the record's state freezes this field";
    default: return "unknown error";
    }
}

void cs__err_clear(casesync_error_t *err) {
    if (err) memset(err, 0, sizeof *err);
}

int cs__fail(casesync_error_t *err, int code, long http, const char *api, const char *field, const char *fmt,
             ...) {
    if (!err) return code;
    memset(err, 0, sizeof *err);
    err->code = code;
    err->http_status = http;
    if (api) snprintf(err->api_code, sizeof err->api_code, "%s", api);
    if (field) snprintf(err->field, sizeof err->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}

void casesync_free(void *p) {
    free(p);
}

int64_t cs__now_ms(casesync_t *h) {
    if (h && h->clock) return h->clock(h->userdata);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- events ------------------------------------------------------------------------------- */

static cs__event_t *event_slot(cs__events_t *ev) {
    if (ev->n == ev->cap) {
        int cap = ev->cap ? ev->cap * 2 : 16;
        cs__event_t *v = realloc(ev->v, (size_t)cap * sizeof *v);
        if (!v) return NULL;
        ev->v = v;
        ev->cap = cap;
    }
    return &ev->v[ev->n++];
}

void cs__events_add_text(cs__events_t *ev, int kind, const char *record_id, const char *status,
                         const char *json) {
    cs__event_t *e = event_slot(ev);
    if (!e) return;
    e->kind = kind;
    e->record_id = cs__strdup(record_id);
    e->status = cs__strdup(status);
    e->json = cs__strdup(json ? json : "{}");
}

void cs__events_add(cs__events_t *ev, int kind, const char *record_id, const char *status,
                    const cJSON *json) {
    cs__event_t *e = event_slot(ev);
    if (!e) return;
    e->kind = kind;
    e->record_id = cs__strdup(record_id);
    e->status = cs__strdup(status);
    e->json = json ? cJSON_PrintUnformatted(json) : cs__strdup("{}");
}

void cs__events_reset(cs__events_t *ev) {
    for (int i = 0; i < ev->n; i++) {
        free(ev->v[i].record_id);
        free(ev->v[i].status);
        free(ev->v[i].json);
    }
    ev->n = 0;
}

void cs__change_fire(casesync_t *h, const char *record_id, int what) {
    pthread_mutex_lock(&h->lock);
    casesync_change_cb cb = h->on_change;
    void *ud = h->change_ud;
    pthread_mutex_unlock(&h->lock);
    if (cb) cb(ud, record_id, what);
}

int casesync_on_change(casesync_t *h, casesync_change_cb cb, void *userdata) {
    if (!h) return CASESYNC_E_ARG;
    pthread_mutex_lock(&h->lock);
    h->on_change = cb;
    h->change_ud = userdata;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

void cs__events_fire(casesync_t *h, cs__events_t *ev) {
    for (int i = 0; i < ev->n; i++) {
        cs__event_t *e = &ev->v[i];
        if (h->on_event) {
            casesync_event_t pub = {e->kind, e->record_id, e->status, e->json ? e->json : "{}"};
            h->on_event(h->userdata, &pub);
        }
        if (e->kind == CASESYNC_EVENT_RECORD && e->record_id)
            cs__change_fire(h, e->record_id, CASESYNC_CHANGE_PULLED);
        else if (e->kind == CASESYNC_EVENT_REMOVED && e->record_id)
            cs__change_fire(h, e->record_id, CASESYNC_CHANGE_REMOVED);
        else if (e->kind == CASESYNC_EVENT_WIPED)
            cs__change_fire(h, NULL, CASESYNC_CHANGE_WIPED);
        free(e->record_id);
        free(e->status);
        free(e->json);
    }
    free(ev->v);
    memset(ev, 0, sizeof *ev);
}

/* ---- network lock --------------------------------------------------------------------------- */

int cs__net_enter(casesync_t *h) {
    pthread_mutex_lock(&h->lock);
    int reentrant = h->net_busy && pthread_equal(h->net_owner, pthread_self());
    pthread_mutex_unlock(&h->lock);
    if (reentrant) return CASESYNC_E_REENTRANT;
    pthread_mutex_lock(&h->net);
    pthread_mutex_lock(&h->lock);
    h->net_busy = 1;
    h->net_owner = pthread_self();
    pthread_mutex_unlock(&h->lock);
    memset(&h->prog, 0, sizeof h->prog);
    return 0;
}

void cs__net_leave(casesync_t *h) {
    pthread_mutex_lock(&h->lock);
    h->net_busy = 0;
    pthread_mutex_unlock(&h->lock);
    pthread_mutex_unlock(&h->net);
}

/* ---- session cache ---------------------------------------------------------------------------- */

/* Reloads server, token, device, user and schema from the store (under lock). */
int cs__session_load(casesync_t *h) {
    MDB_txn *txn;
    int rc = cs__txn_begin(h, 0, &txn);
    if (rc) return rc;
    free(h->server), free(h->token), free(h->device_id), free(h->user_id), free(h->unit);
    h->server = h->token = h->device_id = h->user_id = h->unit = NULL;
    cJSON_Delete(h->grids);
    h->grids = NULL;
    h->role = ROLE_NONE;
    cs__meta_get(h, txn, "server", &h->server);
    cs__meta_get(h, txn, "token", &h->token);
    cs__meta_get(h, txn, "device_id", &h->device_id);
    char *user = NULL, *schema = NULL;
    if (cs__meta_get(h, txn, "user", &user) == 0) {
        cJSON *u = cs__parse(user, strlen(user));
        h->user_id = cs__strdup(cs__jstr(u, "id"));
        h->unit = cs__strdup(cs__jstr(u, "unit"));
        const char *role = cs__jstr(u, "role");
        h->role = role ? schema_role_parse(role) : ROLE_NONE;
        h->grids = cJSON_DetachItemFromObjectCaseSensitive(u, "grids");
        cJSON_Delete(u);
        free(user);
    }
    schema_free(h->schema);
    h->schema = NULL;
    size_t slen = 0;
    if (cs__get(txn, h->db[CS_DB_META], "schema", 6, &schema, &slen) == 0) {
        schema_err_t se;
        if (schema_load(schema, slen, &h->schema, &se) != 0) h->schema = NULL;
        free(schema);
    }
    mdb_txn_abort(txn);
    return 0;
}

/* ---- open / close ------------------------------------------------------------------------------ */

int casesync_open(const casesync_options_t *opt, casesync_t **out, casesync_error_t *err) {
    cs__err_clear(err);
    if (!out) return cs__fail(err, CASESYNC_E_ARG, 0, NULL, NULL, "out is NULL");
    *out = NULL;
    if (!opt || !opt->state_dir || !*opt->state_dir)
        return cs__fail(err, CASESYNC_E_ARG, 0, NULL, "state_dir", "state_dir is required");
    if (casesync_global_init() != 0)
        return cs__fail(err, CASESYNC_E_NETWORK, 0, NULL, NULL, "curl_global_init failed");
    casesync_t *h = calloc(1, sizeof *h);
    if (!h) return cs__fail(err, CASESYNC_E_NOMEM, 0, NULL, NULL, "out of memory");
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->net, NULL);
    h->role = ROLE_NONE;
    h->state_dir = cs__strdup(opt->state_dir);
    h->map_size = opt->map_size ? opt->map_size : CS_DEFAULT_MAP;
    h->connect_timeout_ms = opt->connect_timeout_ms > 0 ? opt->connect_timeout_ms : 10000;
    h->request_timeout_ms = opt->request_timeout_ms > 0 ? opt->request_timeout_ms : 60000;
    h->low_speed_time_s = opt->low_speed_time_s > 0 ? opt->low_speed_time_s : 30;
    h->pull_limit = opt->pull_limit > 0 && opt->pull_limit <= 1000 ? opt->pull_limit : 200;
    h->upload_chunk = opt->upload_chunk ? opt->upload_chunk : (1u << 20);
    h->no_gzip = opt->no_gzip;
    h->no_sync = opt->no_sync;
    h->no_delta_check = opt->no_delta_check;
    h->ca_file = cs__strdup(opt->ca_file);
    h->device_name = cs__strdup(opt->device_name);
    h->app_version = cs__strdup(opt->app_version);
    h->on_progress = opt->on_progress;
    h->on_event = opt->on_event;
    h->clock = opt->clock;
    h->userdata = opt->userdata;
    int rc = cs__store_open(h, err);
    if (rc) {
        casesync_close(h);
        return rc;
    }
    pthread_mutex_lock(&h->lock);
    rc = cs__session_load(h);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        casesync_close(h);
        return cs__fail(err, rc, 0, NULL, NULL, "cannot read the local store");
    }
    *out = h;
    return 0;
}

void casesync_close(casesync_t *h) {
    if (!h) return;
    pthread_mutex_lock(&h->net); /* a sync in another thread ends first */
    pthread_mutex_unlock(&h->net);
    cs__http_close(h);
    cs__store_close(h);
    schema_free(h->schema);
    cJSON_Delete(h->grids);
    free(h->server), free(h->token), free(h->device_id), free(h->user_id), free(h->unit);
    free(h->state_dir), free(h->ca_file), free(h->device_name), free(h->app_version);
    free(h->print_buf);
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->net);
    free(h);
}

/* ---- small accessors ------------------------------------------------------------------------------ */

int casesync_stats(casesync_t *h, casesync_stats_t *out) {
    if (!h || !out) return CASESYNC_E_ARG;
    pthread_mutex_lock(&h->lock);
    *out = h->stats;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

long casesync_retry_after(casesync_t *h) {
    if (!h) return 0;
    pthread_mutex_lock(&h->lock);
    long v = h->retry_after;
    pthread_mutex_unlock(&h->lock);
    return v;
}

int casesync_fault(casesync_t *h, int phase, long long after_up_bytes, long long after_down_bytes) {
    if (!h) return CASESYNC_E_ARG;
    pthread_mutex_lock(&h->lock);
    h->fault.armed = after_up_bytes >= 0 || after_down_bytes >= 0;
    h->fault.phase = phase;
    h->fault.up = after_up_bytes;
    h->fault.down = after_down_bytes;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

int casesync_session(casesync_t *h, char **out) {
    if (!h || !out) return CASESYNC_E_ARG;
    *out = NULL;
    pthread_mutex_lock(&h->lock);
    MDB_txn *txn;
    int rc = cs__txn_begin(h, 0, &txn);
    if (rc) {
        pthread_mutex_unlock(&h->lock);
        return rc;
    }
    cJSON *o = cJSON_CreateObject();
    char *user = NULL, *cursor = NULL;
    cJSON_AddBoolToObject(o, "logged_in", h->token != NULL);
    if (h->server) cJSON_AddStringToObject(o, "server", h->server);
    if (h->device_id) cJSON_AddStringToObject(o, "device_id", h->device_id);
    if (cs__meta_get(h, txn, "user", &user) == 0) {
        cJSON *u = cs__parse(user, strlen(user));
        if (u) cJSON_AddItemToObject(o, "user", u);
        free(user);
    }
    cJSON_AddNumberToObject(o, "next_changeset_seq", (double)cs__meta_int(h, txn, "next_cs", 1));
    int has_cursor = cs__meta_get(h, txn, "cursor", &cursor) == 0;
    free(cursor);
    cJSON_AddBoolToObject(o, "cursor", has_cursor);
    if (h->schema) cJSON_AddNumberToObject(o, "schema_version", schema_version(h->schema));
    mdb_txn_abort(txn);
    pthread_mutex_unlock(&h->lock);
    *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *out ? 0 : CASESYNC_E_NOMEM;
}

int casesync_schema(casesync_t *h, char **out) {
    if (!h || !out) return CASESYNC_E_ARG;
    pthread_mutex_lock(&h->lock);
    *out = h->schema ? cs__strdup(schema_text(h->schema)) : NULL;
    int rc = h->schema ? (*out ? 0 : CASESYNC_E_NOMEM) : CASESYNC_E_NO_SCHEMA;
    pthread_mutex_unlock(&h->lock);
    return rc;
}
