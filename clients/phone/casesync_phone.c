/* casesync_phone.c -- a phone in a terminal (PROTOCOL §9), on libcasesync:
 * every command opens the state directory, does one thing and closes it, so
 * a shell script drives a whole patrol.
 *
 *   casesync-phone --state DIR login URL USER DEVICE_ID   (password: first line of stdin)
 *   casesync-phone --state DIR new TYPE --procedure P --grid G [...]   prints the new id
 *   casesync-phone --state DIR edit ID k=v...
 *   casesync-phone --state DIR note ID TEXT
 *   casesync-phone --state DIR transition ID STATE
 *   casesync-phone --state DIR attach ID FILE [--kind photo]
 *   casesync-phone --state DIR sync
 *   casesync-phone --state DIR list | show ID
 * and: logout, status, void, next, upload, outbox, notices, check, repair.
 *
 * Exit codes (also in usage()):
 *   0 done   1 usage   2 refused locally (schema, role, lifecycle)   3 not found
 *   4 network, timeout or server busy: nothing is lost, run it again
 *   5 log in (no session, wrong password, device revoked)   6 the server refused
 *   7 local store error   8 synced, but the server rejected changes (see notices)
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "clients/c/casesync.h"

enum {
    EX_OK = 0,
    EX_USAGE = 1,
    EX_REFUSED = 2,
    EX_NOTFOUND = 3,
    EX_RETRY = 4,
    EX_LOGIN = 5,
    EX_SERVER = 6,
    EX_STORE = 7,
    EX_REJECTED = 8
};

static void usage(void) {
    fputs("usage: casesync-phone --state DIR COMMAND [ARGS]\n"
          "  login URL USER DEVICE_ID [--device-name NAME]   password on the first line of stdin\n"
          "  logout | status\n"
          "  new TYPE --procedure P --grid G [--description D] [--address A] [--lon X --lat Y]\n"
          "          [--source S] [--occurred-at T] [--id ID] [--field k=v]...   prints the new id\n"
          "  edit ID k=v [k=v...]        v is JSON when it parses as JSON, else a string; v=null clears\n"
          "  note ID TEXT | transition ID STATE | void ID REASON | next ID\n"
          "  attach ID FILE [--kind photo|video|audio|bodycam|scan] [--mime TYPE]\n"
          "  sync [--no-upload] [--push-only] [--pull-only] | upload\n"
          "  list | show ID | outbox | notices [--dismiss ID|all] | check | repair\n"
          "exit codes: 0 done, 1 usage, 2 refused locally, 3 not found, 4 network/busy (retry),\n"
          "            5 log in, 6 server refused, 7 local store, 8 synced but changes were rejected\n",
          stderr);
}

static int exit_for(int rc) {
    switch (rc) {
    case CASESYNC_OK: return EX_OK;
    case CASESYNC_E_ARG: return EX_USAGE;
    case CASESYNC_E_SHAPE:
    case CASESYNC_E_INVALID:
    case CASESYNC_E_ROLE:
    case CASESYNC_E_TRANSITION:
    case CASESYNC_E_SCOPE:
    case CASESYNC_E_EXISTS:
    case CASESYNC_E_VOIDED: return EX_REFUSED;
    case CASESYNC_E_NOT_FOUND:
    case CASESYNC_E_IO: return EX_NOTFOUND;
    case CASESYNC_E_NETWORK:
    case CASESYNC_E_TIMEOUT:
    case CASESYNC_E_CANCELED:
    case CASESYNC_E_BUSY: return EX_RETRY;
    case CASESYNC_E_LOGIN:
    case CASESYNC_E_CREDENTIALS:
    case CASESYNC_E_REVOKED:
    case CASESYNC_E_NO_SCHEMA: return EX_LOGIN;
    case CASESYNC_E_STORE:
    case CASESYNC_E_NOMEM:
    case CASESYNC_E_STATE: return EX_STORE;
    default: return EX_SERVER;
    }
}

static int report(int rc, const casesync_error_t *err) {
    if (rc == 0) return EX_OK;
    fprintf(stderr, "casesync-phone: %s", err && err->message[0] ? err->message : casesync_strerror(rc));
    if (err && err->field[0] && !strstr(err->message, err->field)) fprintf(stderr, " (field %s)", err->field);
    if (err && err->api_code[0]) fprintf(stderr, " [%s]", err->api_code);
    fputc('\n', stderr);
    return exit_for(rc);
}

/* ---- progress -------------------------------------------------------------------------------- */

typedef struct ui {
    int tty, last_phase, last_step, drawn;
} ui_t;

static const char *phase_name(int p) {
    switch (p) {
    case CASESYNC_PHASE_PUSH: return "push";
    case CASESYNC_PHASE_PULL: return "pull";
    case CASESYNC_PHASE_UPLOAD: return "upload";
    case CASESYNC_PHASE_LOGIN: return "login";
    default: return "sync";
    }
}

static int on_progress(void *ud, const casesync_progress_t *p) {
    ui_t *ui = ud;
    if (!ui->tty) {
        /* Plain lines for logs: one per changeset, page or upload. */
        if (p->phase != ui->last_phase || p->step != ui->last_step) {
            if (p->phase == CASESYNC_PHASE_PUSH || p->phase == CASESYNC_PHASE_UPLOAD)
                fprintf(stderr, "%s %d/%d\n", phase_name(p->phase), p->step, p->steps);
            else if (p->phase == CASESYNC_PHASE_PULL)
                fprintf(stderr, "pull page %d\n", p->step);
            ui->last_phase = p->phase;
            ui->last_step = p->step;
        }
        return 0;
    }
    uint64_t now, total;
    if (p->phase == CASESYNC_PHASE_UPLOAD && p->file_size) {
        now = p->file_done + p->up_now, total = p->file_size;
    } else if (p->up_total && p->up_now < p->up_total) {
        now = p->up_now, total = p->up_total;
    } else {
        now = p->down_now, total = p->down_total;
    }
    if (now > total) now = total;
    int width = 30, fill = total ? (int)(now * (uint64_t)width / total) : 0;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    char steps[32] = "";
    if (p->steps)
        snprintf(steps, sizeof steps, " %d/%d", p->step, p->steps);
    else if (p->step)
        snprintf(steps, sizeof steps, " %d", p->step);
    fprintf(stderr, "\r%-6s%-8s [%s] %7.1f KiB", phase_name(p->phase), steps, bar, (double)now / 1024.0);
    ui->drawn = 1;
    return 0;
}

static void ui_done(ui_t *ui) {
    if (ui->tty && ui->drawn) fputc('\n', stderr);
    ui->drawn = 0;
}

/* Conflicts and rejections, as the app would show them. */
static void on_event(void *ud, const casesync_event_t *ev) {
    if (ev->kind != CASESYNC_EVENT_NOTICE && ev->kind != CASESYNC_EVENT_FAILED &&
        ev->kind != CASESYNC_EVENT_WIPED)
        return;
    ui_t *ui = ud;
    ui_done(ui);
    cJSON *j = cJSON_Parse(ev->json);
    if (ev->kind == CASESYNC_EVENT_WIPED) {
        printf("wiped: this device was revoked; the local store is empty\n");
    } else if (ev->kind == CASESYNC_EVENT_FAILED) {
        cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        char *t = cJSON_PrintUnformatted(e);
        printf("failed changeset %d: %s\n", cJSON_GetObjectItemCaseSensitive(j, "changeset_seq")->valueint,
               t ? t : "");
        free(t);
    } else if (ev->status) {
        const char *kind = ev->status;
        cJSON *detail =
            cJSON_GetObjectItemCaseSensitive(j, strcmp(kind, "rejected") == 0 ? "error" : "result");
        char *t = detail ? cJSON_PrintUnformatted(detail) : NULL;
        printf("%s %s %s\n", kind, ev->record_id ? ev->record_id : "-", t ? t : "");
        free(t);
    }
    cJSON_Delete(j);
}

/* ---- helpers ------------------------------------------------------------------------------------- */

/* k=v with v as JSON when it parses, else a string. */
static int add_kv(cJSON *obj, const char *kv) {
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) return -1;
    char key[128];
    size_t kl = (size_t)(eq - kv);
    if (kl >= sizeof key) return -1;
    memcpy(key, kv, kl);
    key[kl] = 0;
    const char *v = eq + 1;
    cJSON *val = cJSON_Parse(v);
    if (!val) val = cJSON_CreateString(v);
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    cJSON_AddItemToObject(obj, key, val);
    return 0;
}

static void now_iso(char out[32]) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100,
             (int)(ts.tv_nsec / 1000000));
}

static int print_json(char *text, int pretty) {
    if (!text) return EX_STORE;
    if (pretty) {
        cJSON *j = cJSON_Parse(text);
        char *p = j ? cJSON_Print(j) : NULL;
        puts(p ? p : text);
        free(p);
        cJSON_Delete(j);
    } else {
        puts(text);
    }
    casesync_free(text);
    return EX_OK;
}

static char *read_password(void) {
    static char buf[512];
    if (!fgets(buf, sizeof buf, stdin)) return NULL;
    buf[strcspn(buf, "\r\n")] = 0;
    return buf;
}

static int print_report(const casesync_report_t *r) {
    printf("pushed %d changeset%s (%d applied, %d merged, %d conflict%s, %d rejected); "
           "pulled %d record%s, %d removed; uploads %d done, %d pending\n",
           r->changesets, r->changesets == 1 ? "" : "s", r->applied, r->merged, r->conflicts,
           r->conflicts == 1 ? "" : "s", r->rejected, r->upserts, r->upserts == 1 ? "" : "s", r->removals,
           r->uploads_done, r->uploads_pending);
    if (r->failed)
        printf("%d changeset%s refused as a whole: see notices\n", r->failed, r->failed == 1 ? "" : "s");
    if (r->uploads_failed)
        printf("%d upload%s failed: see notices\n", r->uploads_failed, r->uploads_failed == 1 ? "" : "s");
    return r->rejected || r->failed ? EX_REJECTED : EX_OK;
}

/* ---- commands ------------------------------------------------------------------------------------ */

/* Every option of every command, parsed once with getopt_long; each
 * command then refuses the ones it does not take. */
enum {
    P_PROCEDURE = 1 << 0, P_GRID = 1 << 1, P_DESCRIPTION = 1 << 2, P_ADDRESS = 1 << 3, P_SOURCE = 1 << 4,
    P_OCCURRED = 1 << 5, P_UNIT = 1 << 6, P_LON = 1 << 7, P_LAT = 1 << 8, P_ID = 1 << 9, P_FIELD = 1 << 10,
    P_KIND = 1 << 11, P_MIME = 1 << 12, P_NO_UPLOAD = 1 << 13, P_PUSH_ONLY = 1 << 14, P_PULL_ONLY = 1 << 15,
    P_DEVICE_NAME = 1 << 16, P_DISMISS = 1 << 17
};
#define P_NEW (P_PROCEDURE | P_GRID | P_DESCRIPTION | P_ADDRESS | P_SOURCE | P_OCCURRED | P_UNIT | P_LON | P_LAT | P_ID | P_FIELD)
#define MAX_FIELDS 64
#define MAX_POS 64

typedef struct popts {
    const char *state, *procedure, *grid, *description, *address, *source, *occurred_at, *unit, *lon, *lat, *id,
        *kind, *mime, *device_name, *dismiss;
    const char *fields[MAX_FIELDS];
    int nfields;
    unsigned given;
    int help;
    const char *pos[MAX_POS];
    int npos;
} popts_t;

/* 0, or EX_USAGE after saying why. */
static int parse_options(int argc, char **argv, popts_t *o) {
    static const struct option longopts[] = {
        {"state", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {"procedure", required_argument, NULL, 0x100 + 0},
        {"grid", required_argument, NULL, 0x100 + 1},
        {"description", required_argument, NULL, 0x100 + 2},
        {"address", required_argument, NULL, 0x100 + 3},
        {"source", required_argument, NULL, 0x100 + 4},
        {"occurred-at", required_argument, NULL, 0x100 + 5},
        {"unit", required_argument, NULL, 0x100 + 6},
        {"lon", required_argument, NULL, 0x100 + 7},
        {"lat", required_argument, NULL, 0x100 + 8},
        {"id", required_argument, NULL, 0x100 + 9},
        {"field", required_argument, NULL, 0x100 + 10},
        {"kind", required_argument, NULL, 0x100 + 11},
        {"mime", required_argument, NULL, 0x100 + 12},
        {"no-upload", no_argument, NULL, 0x100 + 13},
        {"push-only", no_argument, NULL, 0x100 + 14},
        {"pull-only", no_argument, NULL, 0x100 + 15},
        {"device-name", required_argument, NULL, 0x100 + 16},
        {"dismiss", required_argument, NULL, 0x100 + 17},
        {NULL, 0, NULL, 0},
    };
    const char **slot[] = {&o->procedure, &o->grid, &o->description, &o->address, &o->source, &o->occurred_at,
                           &o->unit, &o->lon, &o->lat, &o->id, NULL, &o->kind, &o->mime, NULL, NULL, NULL,
                           &o->device_name, &o->dismiss};
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1;) {
        if (c == 's') {
            o->state = optarg;
        } else if (c == 'h') {
            o->help = 1;
        } else if (c >= 0x100 && c <= 0x100 + 17) {
            int k = c - 0x100;
            o->given |= 1u << k;
            if (k == 10) {
                if (o->nfields == MAX_FIELDS) {
                    fprintf(stderr, "casesync-phone: more than %d --field options\n", MAX_FIELDS);
                    return EX_USAGE;
                }
                o->fields[o->nfields++] = optarg;
            } else if (slot[k]) {
                *slot[k] = optarg;
            }
        } else if (c == ':') {
            fprintf(stderr, "casesync-phone: %s needs a value\n", argv[optind - 1]);
            return EX_USAGE;
        } else {
            fprintf(stderr, "casesync-phone: unknown option %s\n", argv[optind - 1]);
            return EX_USAGE;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (o->npos == MAX_POS) {
            fprintf(stderr, "casesync-phone: too many arguments\n");
            return EX_USAGE;
        }
        o->pos[o->npos++] = argv[i];
    }
    return 0;
}

static int cmd_new(casesync_t *h, const char *type, const popts_t *po) {
    const char *id = po->id;
    cJSON *f = cJSON_CreateObject();
    double lon = 0, lat = 0;
    int has_lon = po->lon != NULL, has_lat = po->lat != NULL, rc = EX_OK;
    char at[32];
    now_iso(at);
    cJSON_AddStringToObject(f, "source", "patrol");
    cJSON_AddStringToObject(f, "occurred_at", at);
    cJSON_AddStringToObject(f, "description", type);
    const struct {
        const char *key, *value;
    } named[] = {{"procedure", po->procedure}, {"grid", po->grid},       {"description", po->description},
                 {"address", po->address},     {"source", po->source},   {"occurred_at", po->occurred_at},
                 {"unit", po->unit}};
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        if (!named[i].value) continue;
        cJSON_DeleteItemFromObjectCaseSensitive(f, named[i].key);
        cJSON_AddStringToObject(f, named[i].key, named[i].value);
    }
    if (has_lon) lon = strtod(po->lon, NULL);
    if (has_lat) lat = strtod(po->lat, NULL);
    for (int i = 0; i < po->nfields; i++)
        if (add_kv(f, po->fields[i]) != 0) {
            fprintf(stderr, "casesync-phone: --field wants k=v, got %s\n", po->fields[i]);
            rc = EX_USAGE;
            goto done;
        }
    if (has_lon && has_lat) {
        cJSON *loc = cJSON_CreateObject();
        cJSON_AddNumberToObject(loc, "lon", lon);
        cJSON_AddNumberToObject(loc, "lat", lat);
        cJSON_AddStringToObject(loc, "crs", "wgs84");
        cJSON_DeleteItemFromObjectCaseSensitive(f, "location");
        cJSON_AddItemToObject(f, "location", loc);
    }
    if (!cJSON_GetObjectItemCaseSensitive(f, "address")) cJSON_AddStringToObject(f, "address", "-");
    char *text = cJSON_PrintUnformatted(f), out[CASESYNC_ID_MAX];
    casesync_error_t err;
    int lrc = casesync_create(h, type, text, id, out, &err);
    free(text);
    if (lrc) {
        rc = report(lrc, &err);
        goto done;
    }
    puts(out);
done:
    cJSON_Delete(f);
    return rc;
}

static int cmd_edit(casesync_t *h, int argc, char **argv) {
    if (argc < 2) return usage(), EX_USAGE;
    cJSON *set = cJSON_CreateObject();
    for (int i = 1; i < argc; i++)
        if (add_kv(set, argv[i]) != 0) {
            fprintf(stderr, "casesync-phone: edit wants k=v, got %s\n", argv[i]);
            cJSON_Delete(set);
            return EX_USAGE;
        }
    char *text = cJSON_PrintUnformatted(set);
    cJSON_Delete(set);
    casesync_error_t err;
    int rc = casesync_update(h, argv[0], text, NULL, &err);
    free(text);
    return report(rc, &err);
}

static int cmd_sync(casesync_t *h, ui_t *ui, const popts_t *po, int upload_only) {
    int flags = 0;
    if (po->given & P_NO_UPLOAD) flags |= CASESYNC_SYNC_NO_UPLOAD;
    if (po->given & P_PUSH_ONLY) flags |= CASESYNC_SYNC_NO_PULL;
    if (po->given & P_PULL_ONLY) flags |= CASESYNC_SYNC_NO_PUSH;
    casesync_report_t r;
    casesync_error_t err;
    int rc = upload_only ? casesync_upload(h, &r, &err) : casesync_sync(h, flags, &r, &err);
    ui_done(ui);
    int ex = print_report(&r);
    if (rc) {
        if (rc == CASESYNC_E_BUSY)
            fprintf(stderr, "casesync-phone: retry after %ld s\n", casesync_retry_after(h));
        return report(rc, &err);
    }
    return ex;
}

static int cmd_list(casesync_t *h) {
    char *text = NULL;
    int rc = casesync_list(h, &text);
    if (rc) return report(rc, NULL);
    cJSON *arr = cJSON_Parse(text), *r;
    casesync_free(text);
    cJSON_ArrayForEach(r, arr) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(r, "fields");
        const cJSON *grid = cJSON_GetObjectItemCaseSensitive(f, "grid");
        const cJSON *pending = cJSON_GetObjectItemCaseSensitive(r, "pending");
        printf("%s\t%s%s\t%s\t%s\tv%d%s\n", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "id")),
               cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "status")),
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "voided")) ? " (voided)" : "",
               cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "type")),
               cJSON_IsString(grid) ? grid->valuestring : "-",
               (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "version")),
               cJSON_IsNumber(pending) && pending->valueint > 0 ? "\tunsynced" : "");
    }
    cJSON_Delete(arr);
    return EX_OK;
}

int main(int argc, char **argv) {
    static popts_t po;
    int prc = parse_options(argc, argv, &po);
    if (prc) return usage(), prc;
    if (po.help) return usage(), EX_OK;
    const char *state = po.state ? po.state : getenv("CASESYNC_STATE");
    if (!state || po.npos < 1) return usage(), EX_USAGE;
    const char *cmd = po.pos[0];
    int n = po.npos - 1;
    char **args = (char **)po.pos + 1;
    /* The options each command takes. */
    unsigned allowed = strcmp(cmd, "new") == 0      ? P_NEW
                       : strcmp(cmd, "attach") == 0 ? (P_KIND | P_MIME)
                       : strcmp(cmd, "sync") == 0   ? (P_NO_UPLOAD | P_PUSH_ONLY | P_PULL_ONLY)
                       : strcmp(cmd, "login") == 0  ? P_DEVICE_NAME
                       : strcmp(cmd, "notices") == 0 ? P_DISMISS
                                                    : 0;
    if (po.given & ~allowed) {
        fprintf(stderr, "casesync-phone: an option that %s does not take\n", cmd);
        return usage(), EX_USAGE;
    }

    ui_t ui = {isatty(2), 0, 0, 0};
    const char *device_name = po.device_name;
    casesync_options_t o = {0};
    o.state_dir = state;
    o.app_version = "casesync-phone/1";
    o.device_name = device_name;
    o.on_progress = on_progress;
    o.on_event = on_event;
    o.userdata = &ui;
    casesync_t *h = NULL;
    casesync_error_t err;
    int rc = casesync_open(&o, &h, &err);
    if (rc) return report(rc, &err);
    int ex = EX_USAGE;
    char *out = NULL, id[CASESYNC_ID_MAX];

    if (strcmp(cmd, "login") == 0 && n == 3) {
        const char *pw = read_password();
        if (!pw) {
            fputs("casesync-phone: the password is read from the first line of stdin\n", stderr);
        } else if (!(ex = report(casesync_login(h, args[0], args[1], pw, args[2], &err), &err))) {
            casesync_session(h, &out);
            ex = print_json(out, 0);
        }
    } else if (strcmp(cmd, "logout") == 0) {
        ex = report(casesync_logout(h, &err), &err);
    } else if (strcmp(cmd, "status") == 0) {
        ex = (rc = casesync_session(h, &out)) ? report(rc, NULL) : print_json(out, 1);
    } else if (strcmp(cmd, "new") == 0 && n == 1) {
        ex = cmd_new(h, args[0], &po);
    } else if (strcmp(cmd, "edit") == 0) {
        ex = cmd_edit(h, n, args);
    } else if (strcmp(cmd, "note") == 0 && n == 2) {
        if (!(ex = report(casesync_note(h, args[0], args[1], id, &err), &err))) puts(id);
    } else if (strcmp(cmd, "transition") == 0 && n == 2) {
        ex = report(casesync_transition(h, args[0], args[1], &err), &err);
    } else if (strcmp(cmd, "void") == 0 && n == 2) {
        ex = report(casesync_void(h, args[0], args[1], &err), &err);
    } else if (strcmp(cmd, "attach") == 0 && n == 2) {
        if (!(ex = report(casesync_attach(h, args[0], args[1], po.kind, po.mime, id, &err), &err))) puts(id);
    } else if (strcmp(cmd, "sync") == 0) {
        ex = n == 0 ? cmd_sync(h, &ui, &po, 0) : (usage(), EX_USAGE);
    } else if (strcmp(cmd, "upload") == 0 && n == 0) {
        ex = cmd_sync(h, &ui, &po, 1);
    } else if (strcmp(cmd, "list") == 0 && n == 0) {
        ex = cmd_list(h);
    } else if (strcmp(cmd, "show") == 0 && n == 1) {
        ex = (rc = casesync_get(h, args[0], &out)) ? report(rc, NULL) : print_json(out, 1);
        if (rc == CASESYNC_E_NOT_FOUND)
            fprintf(stderr, "casesync-phone: no record %s on this phone\n", args[0]);
    } else if (strcmp(cmd, "next") == 0 && n == 1) {
        ex = (rc = casesync_next_states(h, args[0], &out)) ? report(rc, NULL) : print_json(out, 0);
    } else if (strcmp(cmd, "outbox") == 0 && n == 0) {
        ex = (rc = casesync_outbox(h, &out)) ? report(rc, NULL) : print_json(out, 1);
    } else if (strcmp(cmd, "notices") == 0 && n == 0) {
        if (po.dismiss)
            ex = report(
                casesync_notice_dismiss(h, strcmp(po.dismiss, "all") == 0 ? 0 : strtoull(po.dismiss, NULL, 10)),
                NULL);
        else
            ex = (rc = casesync_notices(h, &out)) ? report(rc, NULL) : print_json(out, 1);
    } else if (strcmp(cmd, "check") == 0 && n == 0) {
        ex = (rc = casesync_check(h, &out, &err)) ? report(rc, &err) : print_json(out, 0);
    } else if (strcmp(cmd, "repair") == 0 && n == 0) {
        ex = report(casesync_repair(h, &err), &err);
    } else {
        usage();
    }
    casesync_close(h);
    return ex;
}
