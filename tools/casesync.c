/* casesync.c -- the operator's command line: manages users, checks the audit
 * chain, prints case figures and exports cases, working on the data folder
 * directly (PROTOCOL.md §9).
 *
 * LMDB is multi-process, so this works whether or not casesyncd runs, and a
 * running server sees a new user at once. Exit codes: 0 done, 1 failed (the
 * reason on standard error), 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sync/sync.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define DEFAULT_DATA_DIR "./data"
#define MAX_POSITIONAL 8
#define PBKDF2_ENV "CASESYNC_PBKDF2_ITERATIONS"
#define PBKDF2_ENV_MAX 100000000L
#define ARGON2_ENV "CASESYNC_ARGON2_COST"
#define PASSWORD_LINE_MAX 4096 /* longer than any acceptable password; the engine says why */

#ifndef CASESYNC_VERSION /* the Makefile's build/version.h; "dev" elsewhere (fuzz builds) */
#define CASESYNC_VERSION "dev"
#define CASESYNC_COMMIT "unknown"
#endif

static const char usage_text[] =
    "usage: casesync [--data DIR] COMMAND ...\n"
    "\n"
    "commands:\n"
    "  user add USERNAME --role ROLE --unit UNIT [--grids G1,G2] [--name NAME]\n"
    "        create a user; the password is the first line of standard input.\n"
    "        Prints the new user's id.\n"
    "  user list\n"
    "        one line per user: id, username, role, unit, grids (tab-separated)\n"
    "  user passwd USERNAME\n"
    "        set a new password, the first line of standard input; ends every\n"
    "        token the user holds (their phones log in again)\n"
    "  user disable USERNAME | user enable USERNAME\n"
    "        a disabled user cannot log in; disabling ends every token it holds\n"
    "  device release DEVICE_ID\n"
    "        unbind a phone from its user (it changes hands): its tokens end and\n"
    "        the next user to log in with it owns it\n"
    "  verify [--deep] [--progress]\n"
    "        check the audit chain and the store (records against their audit\n"
    "        entries, record logs and feeds; feed, index and evidence rows against\n"
    "        records; blob rows against their files, 16 of them hashed, all with\n"
    "        --deep); prints the result as JSON and exits 0 only when it is sound\n"
    "  migrate\n"
    "        move a store of an earlier format (v1) to v2, and records of an\n"
    "        earlier lifecycle to the schema's (every server on the folder stopped)\n"
    "  backup DEST [--link-dest PREV] [--progress]\n"
    "        consistent hot copy of the store and blobs into DEST; blobs already\n"
    "        in the earlier backup PREV are hard-linked, not copied again\n"
    "  restore BACKUP [--progress]\n"
    "        copy the backup folder BACKUP into the data folder (--data), which\n"
    "        must not hold a store yet; then verify it and start casesyncd on it\n"
    "  log-trim BACKUP --cluster URLS [--keep N]\n"
    "        cluster mode: trim the replicated log back to BACKUP, the oldest\n"
    "        backup still wanted: the stream keeps every entry after its log\n"
    "        entry and N before it (default 1000); a node that needs a trimmed\n"
    "        entry is refused and must be restored from a newer backup\n"
    "  detach\n"
    "        take a cluster node's store out of its cluster for good (server\n"
    "        stopped): it then opens alone, or seeds a new cluster\n"
    "  stats [--from T] [--to T] [--group-by type|status|grid|assignee|source|procedure] [--unit UNIT]\n"
    "        case figures as GET /v1/stats gives them (JSON); T is RFC 3339 or\n"
    "        YYYY-MM-DD (midnight, China time); default: the last 30 days\n"
    "  export [--format ndjson|csv] [--unit UNIT] | export --audit\n"
    "        every case (of the unit) to standard output, streamed\n"
    "\n"
    "options:\n"
    "  --data DIR   the data folder (default " DEFAULT_DATA_DIR ")\n"
    "  --cluster URLS  NATS servers of the cluster, comma separated (log-trim)\n"
    "  --progress   progress of backup, restore, verify and export on standard error\n"
    "               (also without it when that is a terminal)\n"
    "  --help       this text\n"
    "  --version    print the version\n"
    "\n"
    "roles: auxiliary, officer, legal_reviewer, supervisor, admin\n"
    "environment: " ARGON2_ENV " (\"m=KIB,t=N,p=N\") sets the argon2id cost of new\n"
    "  passwords (default m=65536,t=3,p=1; lower only for tests)\n"
    "exit status: 0 done, 1 failed, 2 usage error\n";

/* The parsed command line. Strings borrow from argv. */
typedef struct args {
    const char *data, *role, *unit, *grids, *name;
    const char *from, *to, *group_by, *format;
    const char *pos[MAX_POSITIONAL];
    int npos;
    int help;
    int version;
    int deep, progress, audit;
    const char *link_dest;
    const char *cluster, *keep;
} args_t;

static int usage_error(const char *fmt, const char *what) {
    fprintf(stderr, "casesync: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\nTry 'casesync --help'.\n");
    return EXIT_USAGE;
}

/* Fills a from argv: options may come anywhere, as "--opt VALUE" or
 * "--opt=VALUE"; "--" ends them. 0, or EXIT_USAGE after a message. */
/* getopt_long, as casesyncd's: --opt VALUE and --opt=VALUE, options and
 * arguments in any order, "--" ends the options. */
static int args_parse(int argc, char **argv, args_t *a) {
    enum { O_DATA = 256, O_ROLE, O_UNIT, O_GRIDS, O_NAME, O_FROM, O_TO, O_GROUP_BY, O_FORMAT, O_LINK_DEST, O_VERSION,
           O_DEEP, O_PROGRESS, O_AUDIT, O_CLUSTER, O_KEEP };
    static const struct option longopts[] = {
        {"data", required_argument, NULL, O_DATA},         {"role", required_argument, NULL, O_ROLE},
        {"unit", required_argument, NULL, O_UNIT},         {"grids", required_argument, NULL, O_GRIDS},
        {"name", required_argument, NULL, O_NAME},         {"from", required_argument, NULL, O_FROM},
        {"to", required_argument, NULL, O_TO},             {"group-by", required_argument, NULL, O_GROUP_BY},
        {"format", required_argument, NULL, O_FORMAT},     {"link-dest", required_argument, NULL, O_LINK_DEST},
        {"help", no_argument, NULL, 'h'},                  {"version", no_argument, NULL, O_VERSION},
        {"deep", no_argument, NULL, O_DEEP},               {"progress", no_argument, NULL, O_PROGRESS},
        {"audit", no_argument, NULL, O_AUDIT},            {"cluster", required_argument, NULL, O_CLUSTER},
        {"keep", required_argument, NULL, O_KEEP},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    optind = 1;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1;) {
        switch (c) {
        case O_DATA: a->data = optarg; break;
        case O_ROLE: a->role = optarg; break;
        case O_UNIT: a->unit = optarg; break;
        case O_GRIDS: a->grids = optarg; break;
        case O_NAME: a->name = optarg; break;
        case O_FROM: a->from = optarg; break;
        case O_TO: a->to = optarg; break;
        case O_GROUP_BY: a->group_by = optarg; break;
        case O_FORMAT: a->format = optarg; break;
        case O_LINK_DEST: a->link_dest = optarg; break;
        case 'h': a->help = 1; break;
        case O_VERSION: a->version = 1; break;
        case O_DEEP: a->deep = 1; break;
        case O_PROGRESS: a->progress = 1; break;
        case O_AUDIT: a->audit = 1; break;
        case O_CLUSTER: a->cluster = optarg; break;
        case O_KEEP: a->keep = optarg; break;
        case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (a->npos == MAX_POSITIONAL) return usage_error("too many arguments at '%s'", argv[i]);
        a->pos[a->npos++] = argv[i];
    }
    if (!a->data) a->data = DEFAULT_DATA_DIR;
    if (!*a->data) return usage_error("%s", "--data needs a folder");
    return 0;
}

/* Prints the engine's error as "casesync: FIELD: MESSAGE". Returns EXIT_FAILED. */
static int engine_error(const char *what, int rc, const sync_error_t *err) {
    const char *msg = err->message[0] ? err->message : sync_strerror(rc);
    if (err->field[0])
        fprintf(stderr, "casesync: %s: %s: %s\n", what, err->field, msg);
    else
        fprintf(stderr, "casesync: %s: %s\n", what, msg);
    return EXIT_FAILED;
}

/* Opens the engine on the data folder. 0, or an exit code after a message. */
static int engine_open(const args_t *a, int read_only, sync_t **s) {
    sync_config_t cfg = {.data_dir = a->data, .read_only = read_only};
    sync_error_t err = {0};
    const char *iter = getenv(PBKDF2_ENV);
    *s = NULL;
    if (iter && *iter) {
        char *end;
        errno = 0;
        long n = strtol(iter, &end, 10);
        if (errno || *end || n < 1 || n > PBKDF2_ENV_MAX) {
            fprintf(stderr, "casesync: %s must be a number from 1 to %ld\n", PBKDF2_ENV, PBKDF2_ENV_MAX);
            return EXIT_USAGE;
        }
        cfg.pbkdf2_iterations = (int)n;
    }
    const char *cost = getenv(ARGON2_ENV);
    if (cost && *cost && sync_argon2_cost_parse(cost, &cfg) != 0) {
        fprintf(stderr, "casesync: %s must be like m=65536,t=3,p=1\n", ARGON2_ENV);
        return EXIT_USAGE;
    }
    int rc = sync_open(&cfg, s, &err);
    if (rc != 0) return engine_error(a->data, rc, &err);
    return 0;
}

/* Reads the password: the first line of standard input, without its line
 * end. On a terminal it prompts and does not echo. *out is malloc'd (the
 * caller wipes and frees it). 0, or EXIT_FAILED after a message. */
static int read_password(const char *username, char **out) {
    struct termios old, quiet;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    char *line = NULL;
    size_t cap = 0;
    *out = NULL;
    if (tty) {
        fprintf(stderr, "Password for %s: ", username);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    ssize_t n = getline(&line, &cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (n > 0 && line[n - 1] == '\n') line[--n] = 0;
    if (n > 0 && line[n - 1] == '\r') line[--n] = 0;
    if (n <= 0) {
        if (line) explicit_bzero(line, cap);
        free(line);
        fprintf(stderr, "casesync: no password on standard input (give it as the first line)\n");
        return EXIT_FAILED;
    }
    if (n > PASSWORD_LINE_MAX) {
        explicit_bzero(line, cap);
        free(line);
        fprintf(stderr, "casesync: the password line is too long\n");
        return EXIT_FAILED;
    }
    *out = line;
    return 0;
}

/* ---- commands ---------------------------------------------------------------- */

static int cmd_user_add(const args_t *a) {
    const char *username = a->pos[2];
    char *password = NULL, *out = NULL;
    sync_t *s = NULL;
    sync_error_t err = {0};
    cJSON *user = NULL;
    int code;

    if (!a->role || !a->unit) return usage_error("%s", "user add needs --role ROLE and --unit UNIT");
    if ((code = read_password(username, &password)) != 0) return code;
    if ((code = engine_open(a, 0, &s)) != 0) goto done;
    int rc = sync_user_add(s, username, password, a->role, a->unit, a->grids, a->name, &out, &err);
    if (rc != 0) {
        code = engine_error("user add", rc, &err);
        goto done;
    }
    user = cJSON_Parse(out);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(user, "id");
    if (!cJSON_IsString(id)) {
        fprintf(stderr, "casesync: user add: the engine answered without an id\n");
        code = EXIT_FAILED;
        goto done;
    }
    printf("%s\n", id->valuestring);
    code = 0;
done:
    if (password) explicit_bzero(password, strlen(password));
    free(password);
    free(out);
    cJSON_Delete(user);
    sync_close(s);
    return code;
}

static int cmd_user_passwd(const args_t *a) {
    const char *username = a->pos[2];
    char *password = NULL;
    sync_t *s = NULL;
    sync_error_t err = {0};
    int code;

    if (a->role || a->unit || a->grids || a->name)
        return usage_error("%s", "user passwd takes no --role, --unit, --grids or --name");
    if ((code = read_password(username, &password)) != 0) return code;
    if ((code = engine_open(a, 0, &s)) != 0) goto done;
    int rc = sync_user_passwd(s, username, password, &err);
    if (rc != 0) {
        code = engine_error("user passwd", rc, &err);
        goto done;
    }
    printf("password of %s changed; its tokens have ended\n", username);
    code = 0;
done:
    if (password) explicit_bzero(password, strlen(password));
    free(password);
    sync_close(s);
    return code;
}

static int cmd_user_disable(const args_t *a, int disabled) {
    sync_t *s = NULL;
    sync_error_t err = {0};
    int code;
    if (a->role || a->unit || a->grids || a->name)
        return usage_error("%s", "user disable/enable takes no --role, --unit, --grids or --name");
    if ((code = engine_open(a, 0, &s)) != 0) return code;
    int rc = sync_user_set_disabled(s, a->pos[2], disabled, &err);
    if (rc != 0)
        code = engine_error(disabled ? "user disable" : "user enable", rc, &err);
    else
        printf(disabled ? "%s disabled; its tokens have ended\n" : "%s enabled\n", a->pos[2]);
    sync_close(s);
    return code;
}

static int cmd_device_release(const args_t *a) {
    sync_t *s = NULL;
    sync_error_t err = {0};
    char *out = NULL;
    int code;
    if (a->role || a->unit || a->grids || a->name)
        return usage_error("%s", "device release takes no --role, --unit, --grids or --name");
    if ((code = engine_open(a, 0, &s)) != 0) return code;
    int rc = sync_device_release(s, NULL, a->pos[2], &out, &err);
    if (rc != 0)
        code = engine_error("device release", rc, &err);
    else
        printf("%s\n", out);
    free(out);
    sync_close(s);
    return code;
}

/* A string member, or "" for display. */
static const char *str_or_empty(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int cmd_user_list(const args_t *a) {
    char *out = NULL;
    sync_t *s = NULL;
    sync_error_t err = {0};
    cJSON *res = NULL;
    int code;

    if (a->role || a->unit || a->grids || a->name)
        return usage_error("%s", "user list takes no --role, --unit, --grids or --name");
    if ((code = engine_open(a, 1, &s)) != 0) goto done;
    int rc = sync_user_list_all(s, &out, &err);
    if (rc != 0) {
        code = engine_error("user list", rc, &err);
        goto done;
    }
    res = cJSON_Parse(out);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(res, "items"), *u;
    if (!cJSON_IsArray(items)) {
        fprintf(stderr, "casesync: user list: the engine answered without items\n");
        code = EXIT_FAILED;
        goto done;
    }
    printf("id\tusername\trole\tunit\tgrids\n");
    cJSON_ArrayForEach(u, items) {
        const cJSON *grids = cJSON_GetObjectItemCaseSensitive(u, "grids"), *g;
        printf("%s\t%s\t%s\t%s\t", str_or_empty(u, "id"), str_or_empty(u, "username"), str_or_empty(u, "role"),
               str_or_empty(u, "unit"));
        int first = 1;
        cJSON_ArrayForEach(g, grids) {
            if (!cJSON_IsString(g)) continue;
            printf("%s%s", first ? "" : ",", g->valuestring);
            first = 0;
        }
        putchar('\n');
    }
    code = fflush(stdout) == 0 ? 0 : EXIT_FAILED;
done:
    free(out);
    cJSON_Delete(res);
    sync_close(s);
    return code;
}

/* Progress on standard error: a line rewritten in place on a terminal, or
 * (with --progress into a file or pipe) a line per phase step. */
static void progress_line(void *ud, const char *phase, uint64_t done, uint64_t total) {
    const args_t *a = ud;
    if (!a->progress && !isatty(STDERR_FILENO)) return;
    if (total)
        fprintf(stderr, "%s%s %llu/%llu%s", isatty(STDERR_FILENO) ? "\r" : "", phase, (unsigned long long)done,
                (unsigned long long)total, isatty(STDERR_FILENO) ? "   " : "\n");
    else
        fprintf(stderr, "%s%s %llu%s", isatty(STDERR_FILENO) ? "\r" : "", phase, (unsigned long long)done,
                isatty(STDERR_FILENO) ? "   " : "\n");
    fflush(stderr);
}

static void progress_end(const args_t *a) {
    if (isatty(STDERR_FILENO)) fputc('\n', stderr);
    (void)a;
}

/* Copies the store while a server may be running; 0 on success. */
static int cmd_backup(const args_t *a, const char *dest) {
    sync_t *s = NULL;
    sync_error_t err = {0};
    int code = engine_open(a, 1, &s);
    if (code != 0) return code;
    int rc = sync_backup_ex(s, dest, a->link_dest, progress_line, (void *)a, &err);
    progress_end(a);
    uint64_t seq = 0;
    if (rc != 0)
        code = engine_error("backup", rc, &err);
    else if (sync_store_log_seq(dest, &seq, &err) == 0 && seq > 0)
        printf("backup of %s written to %s (cluster log entry %llu)\n", a->data, dest, (unsigned long long)seq);
    else
        printf("backup of %s written to %s\n", a->data, dest);
    sync_close(s);
    return code;
}

/* Trims the cluster's log back to a backup (sync_cluster_trim). */
static int cmd_log_trim(const args_t *a, const char *backup) {
    sync_error_t err = {0};
    sync_trim_t t;
    unsigned long long keep = 1000;
    if (!a->cluster || !*a->cluster) return usage_error("%s", "log-trim needs --cluster URLS (the NATS servers)");
    if (a->keep) {
        char *end;
        errno = 0;
        keep = strtoull(a->keep, &end, 10);
        if (errno || *end || !*a->keep || a->keep[0] == '-') return usage_error("%s", "--keep needs a number");
    }
    int rc = sync_cluster_trim(a->cluster, backup, keep, &t, &err);
    if (rc != 0) return engine_error("log-trim", rc, &err);
    if (t.trimmed)
        printf("the log now holds entries %llu to %llu (it held %llu to %llu); %s is at entry %llu\n",
               (unsigned long long)t.first_after, (unsigned long long)t.last, (unsigned long long)t.first_before,
               (unsigned long long)t.last, backup, (unsigned long long)t.backup_seq);
    else
        printf("nothing to trim: the log holds entries %llu to %llu; %s is at entry %llu\n",
               (unsigned long long)t.first_before, (unsigned long long)t.last, backup,
               (unsigned long long)t.backup_seq);
    return 0;
}

/* Takes a store out of its cluster (sync_cluster_detach). */
static int cmd_detach(const args_t *a) {
    sync_config_t cfg = {.data_dir = a->data, .cluster_detach = 1};
    sync_error_t err = {0};
    sync_t *s = NULL;
    uint64_t was = 0;
    int rc = sync_open(&cfg, &s, &err);
    if (rc != 0) return engine_error(a->data, rc, &err);
    rc = sync_cluster_detach(s, &was, &err);
    int code = rc ? engine_error("detach", rc, &err) : 0;
    if (!rc) printf("%s left its cluster (it had applied log entry %llu)\n", a->data, (unsigned long long)was);
    sync_close(s);
    return code;
}

/* Moves records of an earlier lifecycle to the schema's (sync/migrate.c). */
static int cmd_migrate(const args_t *a) {
    sync_config_t cfg = {.data_dir = a->data, .migrating = 1};
    sync_error_t err = {0};
    sync_t *s = NULL;
    uint64_t moved = 0;
    if (a->role || a->unit || a->grids || a->name)
        return usage_error("%s", "migrate takes no --role, --unit, --grids or --name");
    int rc = sync_open(&cfg, &s, &err);
    if (rc != 0) return engine_error(a->data, rc, &err);
    rc = sync_migrate(s, &moved, &err);
    int code = rc ? engine_error("migrate", rc, &err) : 0;
    if (!rc) printf("store format v%d; %llu records moved to lifecycle v%d\n", SYNC_STORE_FORMAT,
                    (unsigned long long)moved, schema_lifecycle_version(sync_schema(s)));
    sync_close(s);
    return code;
}

static int cmd_verify(const args_t *a) {
    char *out = NULL;
    sync_t *s = NULL;
    sync_error_t err = {0};
    cJSON *res = NULL;
    int code;

    if (a->role || a->unit || a->grids || a->name)
        return usage_error("%s", "verify takes no --role, --unit, --grids or --name");
    if ((code = engine_open(a, 1, &s)) != 0) goto done;
    int rc = sync_store_verify(s, a->deep, progress_line, (void *)a, &out, &err);
    progress_end(a);
    if (rc != 0) {
        code = engine_error("verify", rc, &err);
        goto done;
    }
    printf("%s\n", out);
    res = cJSON_Parse(out);
    code = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "ok")) ? 0 : EXIT_FAILED;
    if (fflush(stdout) != 0) code = EXIT_FAILED;
done:
    free(out);
    cJSON_Delete(res);
    sync_close(s);
    return code;
}

/* Options only some commands take: a message naming the first one given to
 * a command that does not take it. 0 or EXIT_USAGE. */
static int only_options(const args_t *a, const char *cmd, int from_to_group, int format, int unit) {
    const char *bad = NULL;
    if (a->role)
        bad = "--role";
    else if (a->grids)
        bad = "--grids";
    else if (a->name)
        bad = "--name";
    else if (!unit && a->unit)
        bad = "--unit";
    else if (!from_to_group && (a->from || a->to || a->group_by))
        bad = a->from ? "--from" : a->to ? "--to" : "--group-by";
    else if (!format && a->format)
        bad = "--format";
    if (!bad) return 0;
    fprintf(stderr, "casesync: %s takes no %s\nTry 'casesync --help'.\n", cmd, bad);
    return EXIT_USAGE;
}

static int cmd_stats(const args_t *a) {
    char *out = NULL;
    sync_t *s = NULL;
    sync_error_t err = {0};
    int code = only_options(a, "stats", 1, 0, 1);
    if (code != 0) return code;
    if ((code = engine_open(a, 1, &s)) != 0) return code;
    int rc = sync_stats(s, NULL, a->from, a->to, a->group_by, a->unit, &out, &err);
    if (rc != 0) {
        code = engine_error("stats", rc, &err);
    } else {
        printf("%s\n", out);
        code = fflush(stdout) == 0 ? 0 : EXIT_FAILED;
    }
    free(out);
    sync_close(s);
    return code;
}

/* Export's writer: standard output, with a progress line (lines written)
 * every 1000 lines. */
typedef struct export_out {
    const args_t *a;
    uint64_t lines, shown;
} export_out_t;

static int write_stdout(void *ctx, const char *data, size_t len) {
    export_out_t *o = ctx;
    for (const char *p = data; (p = memchr(p, '\n', len - (size_t)(p - data))) != NULL; p++)
        o->lines++;
    if (o->lines >= o->shown + 1000) {
        o->shown = o->lines;
        progress_line((void *)o->a, "export lines", o->lines, 0);
    }
    return fwrite(data, 1, len, stdout) == len ? 0 : -1;
}

static int cmd_export(const args_t *a) {
    sync_t *s = NULL;
    sync_error_t err = {0};
    sync_case_filter_t f = {.unit = a->unit};
    int code = only_options(a, "export", 0, !a->audit, !a->audit);
    if (code != 0) return code;
    if ((code = engine_open(a, 1, &s)) != 0) return code;
    export_out_t o = {a, 0, 0};
    int rc = a->audit ? sync_audit_export(s, write_stdout, &o, &err)
                      : sync_export(s, NULL, &f, a->format, write_stdout, &o, &err);
    if (o.shown) progress_line((void *)a, "export lines", o.lines, 0);
    if (o.shown) progress_end(a);
    if (rc == 0 && fflush(stdout) != 0) {
        rc = SYNC_EIO;
        snprintf(err.message, sizeof err.message, "cannot write standard output");
    }
    code = rc != 0 ? engine_error("export", rc, &err) : 0;
    sync_close(s);
    return code;
}

int main(int argc, char **argv) {
    args_t a;
    int code = args_parse(argc, argv, &a);
    if (code != 0) return code;
    if (a.help) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (a.version) {
        printf("casesync %s (commit %s)\n", CASESYNC_VERSION, CASESYNC_COMMIT);
        return 0;
    }
    if (a.npos == 0) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = a.pos[0], *sub = a.npos > 1 ? a.pos[1] : NULL;
    if (a.audit && strcmp(cmd, "export") != 0) return usage_error("%s takes no --audit", cmd);
    if (strcmp(cmd, "user") == 0 && sub && strcmp(sub, "add") == 0) {
        if (a.npos != 3) return usage_error("%s", "usage: casesync user add USERNAME --role ROLE --unit UNIT");
        return cmd_user_add(&a);
    }
    if (strcmp(cmd, "user") == 0 && sub && strcmp(sub, "list") == 0) {
        if (a.npos != 2) return usage_error("%s", "usage: casesync user list");
        return cmd_user_list(&a);
    }
    if (strcmp(cmd, "user") == 0 && sub && strcmp(sub, "passwd") == 0) {
        if (a.npos != 3) return usage_error("%s", "usage: casesync user passwd USERNAME");
        return cmd_user_passwd(&a);
    }
    if (strcmp(cmd, "user") == 0 && sub && (strcmp(sub, "disable") == 0 || strcmp(sub, "enable") == 0)) {
        if (a.npos != 3) return usage_error("%s", "usage: casesync user disable|enable USERNAME");
        return cmd_user_disable(&a, strcmp(sub, "disable") == 0);
    }
    if (strcmp(cmd, "user") == 0) return usage_error("%s", "user needs 'add', 'list', 'passwd', 'disable' or 'enable'");
    if (strcmp(cmd, "device") == 0) {
        if (!sub || strcmp(sub, "release") != 0 || a.npos != 3)
            return usage_error("%s", "usage: casesync device release DEVICE_ID");
        return cmd_device_release(&a);
    }
    if (strcmp(cmd, "migrate") == 0) return cmd_migrate(&a);
    if (strcmp(cmd, "log-trim") == 0) {
        if (a.npos != 2) return usage_error("%s", "usage: casesync log-trim BACKUP --cluster URLS [--keep N]");
        return cmd_log_trim(&a, a.pos[1]);
    }
    if (a.cluster || a.keep) return usage_error("%s takes no --cluster or --keep", cmd);
    if (strcmp(cmd, "detach") == 0) {
        if (a.npos != 1) return usage_error("%s", "usage: casesync detach");
        return cmd_detach(&a);
    }
    if (strcmp(cmd, "backup") == 0) {
        if (a.npos != 2) return usage_error("%s", "usage: casesync backup DEST [--link-dest PREV]");
        return cmd_backup(&a, a.pos[1]);
    }
    if (strcmp(cmd, "restore") == 0) {
        if (a.npos != 2) return usage_error("%s", "usage: casesync --data DIR restore BACKUP");
        sync_error_t err = {0};
        int rc = sync_restore(a.pos[1], a.data, progress_line, &a, &err);
        progress_end(&a);
        if (rc != 0) return engine_error("restore", rc, &err);
        printf("restored %s into %s\n", a.pos[1], a.data);
        return 0;
    }
    if (strcmp(cmd, "stats") == 0) {
        if (a.npos != 1) return usage_error("%s", "usage: casesync stats [--from T] [--to T] [--group-by G]");
        return cmd_stats(&a);
    }
    if (strcmp(cmd, "export") == 0) {
        if (a.npos != 1) return usage_error("%s", "usage: casesync export [--format ndjson|csv] | export --audit");
        return cmd_export(&a);
    }
    if (strcmp(cmd, "verify") == 0) {
        if (a.npos != 1) return usage_error("%s", "usage: casesync verify [--deep]");
        return cmd_verify(&a);
    }
    return usage_error("unknown command '%s'", cmd);
}
