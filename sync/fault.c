/* fault.c -- disk faults on demand for the test builds (see fault.h). */
#include "sync/fault.h"

#ifdef CASESYNC_FAULTS

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define FAULT_RULES 16
#define FAULT_TEXT 4096 /* bytes of DATA/.fault read */
#define FAULT_PATH (PATH_MAX + 16)

enum { CALL_WRITE = 1, CALL_SYNC = 2, CALL_RENAME = 4, CALL_ANY = 7, CALL_ALLOC = 8 };
enum { T_STORE = 1, T_META = 2, T_UPLOAD = 4, T_BLOB = 8, T_ANY = T_STORE | T_UPLOAD | T_BLOB, T_WRITER = 16 };

typedef struct fault_rule {
    int calls, targets, err;
    long count; /* calls still to fail; -1: every one */
    long after; /* matching calls still to let through first */
} fault_rule_t;

/* Everything below is guarded by fault_mu, except `attached`. */
static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static int attached;
static char dir_given[FAULT_PATH], dir_real[FAULT_PATH], ctl_path[FAULT_PATH], log_path[FAULT_PATH];
static char loaded[FAULT_TEXT]; /* the text the rules were read from */
static size_t loaded_len;
static fault_rule_t rules[FAULT_RULES];
static int nrules;
static int alloc_rules; /* atomic: rules with CALL_ALLOC are loaded */

/* Per thread: the writer mark and the in-process allocation arm. */
static __thread int is_writer;
static __thread long arm_after, arm_count; /* arm_count 0: disarmed */

void fault_attach(const char *data_dir) {
    char real[PATH_MAX];
    pthread_mutex_lock(&fault_mu);
    snprintf(dir_given, sizeof dir_given, "%s", data_dir);
    snprintf(dir_real, sizeof dir_real, "%s", realpath(data_dir, real) ? real : data_dir);
    snprintf(ctl_path, sizeof ctl_path, "%s/.fault", data_dir);
    snprintf(log_path, sizeof log_path, "%s/.fault.log", data_dir);
    loaded_len = 0;
    nrules = 0;
    pthread_mutex_unlock(&fault_mu);
    __atomic_store_n(&attached, 1, __ATOMIC_RELEASE);
}

/* ---- rules ------------------------------------------------------------------ */

static int err_of(const char *name) {
    static const struct {
        const char *name;
        int err;
    } names[] = {{"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT}, {"EROFS", EROFS}, {"ENOMEM", ENOMEM}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i].name, name) == 0) return names[i].err;
    return 0;
}

static const char *err_name(int e) {
    return e == EIO      ? "EIO"
           : e == ENOSPC ? "ENOSPC"
           : e == EDQUOT ? "EDQUOT"
           : e == EROFS  ? "EROFS"
           : e == ENOMEM ? "ENOMEM"
                         : "?";
}

static void rule_parse(char *line) {
    char call[16], target[16], err[16], count[16] = "1", word[16] = "";
    long after = 0;
    fault_rule_t r;
    int n = sscanf(line, "%15s %15s %15s %15s %15s %ld", call, target, err, count, word, &after);
    if (n < 3 || call[0] == '#' || nrules == FAULT_RULES) return;
    r.calls = strcmp(call, "write") == 0    ? CALL_WRITE
              : strcmp(call, "sync") == 0   ? CALL_SYNC
              : strcmp(call, "rename") == 0 ? CALL_RENAME
              : strcmp(call, "any") == 0    ? CALL_ANY
              : strcmp(call, "alloc") == 0  ? CALL_ALLOC
                                            : 0;
    r.targets = strcmp(target, "store") == 0        ? T_STORE
                : strcmp(target, "store-meta") == 0 ? T_META
                : strcmp(target, "upload") == 0     ? T_UPLOAD
                : strcmp(target, "blob") == 0       ? T_BLOB
                : strcmp(target, "any") == 0        ? T_ANY
                : strcmp(target, "writer") == 0     ? T_WRITER
                                                    : 0;
    r.err = err_of(err);
    /* alloc goes with writer and ENOMEM only; the disk calls never with them. */
    if ((r.calls == CALL_ALLOC) != (r.targets == T_WRITER) || (r.calls == CALL_ALLOC) != (r.err == ENOMEM))
        r.calls = 0;
    r.count = strcmp(count, "*") == 0 ? -1 : atol(count);
    r.after = n == 6 && strcmp(word, "after") == 0 && after > 0 ? after : 0;
    if (!r.calls || !r.targets || !r.err) {
        fprintf(stderr, "casesync: fault: cannot read the rule \"%s\"\n", line);
        return;
    }
    rules[nrules++] = r;
}

/* Reads DATA/.fault again when its text changed (a rewrite re-arms its
 * counts). How many rules hold now. */
static int rules_refresh(void) {
    char text[FAULT_TEXT];
    ssize_t len = -1;
    int fd = open(ctl_path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        len = read(fd, text, sizeof text - 1);
        close(fd);
    }
    if (len < 0) {
        loaded_len = 0;
        nrules = 0;
        __atomic_store_n(&alloc_rules, 0, __ATOMIC_RELEASE);
        return 0;
    }
    if ((size_t)len == loaded_len && memcmp(text, loaded, (size_t)len) == 0) return nrules;
    memcpy(loaded, text, (size_t)len);
    loaded_len = (size_t)len;
    text[len] = 0;
    nrules = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        rule_parse(line);
    int any_alloc = 0;
    for (int i = 0; i < nrules; i++) any_alloc |= rules[i].calls == CALL_ALLOC;
    __atomic_store_n(&alloc_rules, any_alloc, __ATOMIC_RELEASE);
    return nrules;
}

/* The path relative to the data folder, or NULL when outside it. */
static const char *under_data(const char *path) {
    const char *dirs[2] = {dir_given, dir_real};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(dirs[i]);
        if (n && strncmp(path, dirs[i], n) == 0 && path[n] == '/') return path + n + 1;
    }
    return NULL;
}

/* Which targets a call on fd (or on path, for rename) at offset off touches. */
static int classify(int fd, const char *path, off_t off) {
    char buf[FAULT_PATH];
    if (!path) {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, buf, sizeof buf - 1);
        if (n < 0) return 0;
        buf[n] = 0;
        path = buf;
    }
    const char *rel = under_data(path);
    if (!rel) return 0;
    if (strcmp(rel, "data.mdb") == 0)
        return T_STORE | (off >= 0 && off < 2 * sysconf(_SC_PAGESIZE) ? T_META : 0);
    if (strncmp(rel, "uploads", 7) == 0 && (rel[7] == 0 || rel[7] == '/')) return T_UPLOAD;
    if (strncmp(rel, "blobs", 5) == 0 && (rel[5] == 0 || rel[5] == '/')) return T_BLOB;
    return 0;
}

/* fault_mu held: counts a call against the rules; the errno to fail it with, or 0. */
static int rules_match(int call, int cls) {
    for (int i = 0; i < nrules; i++) {
        fault_rule_t *r = &rules[i];
        if (!(r->calls & call) || !(r->targets & cls) || r->count == 0) continue;
        if (r->after > 0) {
            r->after--;
            continue;
        }
        if (r->count > 0) r->count--;
        return r->err;
    }
    return 0;
}

/* Appends line to DATA/.fault.log (best effort) and says it on stderr. */
static void fault_log(const char *log, const char *line) {
    int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (lfd >= 0) {
        ssize_t w = write(lfd, line, strlen(line)); /* the log is best effort */
        (void)w;
        close(lfd);
    }
    fprintf(stderr, "casesync: fault injected: %s", line);
}

/* The errno to fail this call with, or 0 to let it through. errno is kept. */
static int fault_check(int call, int fd, const char *path, off_t off) {
    if (!__atomic_load_n(&attached, __ATOMIC_ACQUIRE)) return 0;
    int saved = errno, e = 0, cls = 0;
    char log[FAULT_PATH];
    pthread_mutex_lock(&fault_mu);
    if (rules_refresh() > 0 && (cls = classify(fd, path, off)) != 0) e = rules_match(call, cls);
    snprintf(log, sizeof log, "%s", log_path);
    pthread_mutex_unlock(&fault_mu);
    if (e) {
        const char *cn = call == CALL_WRITE ? "write" : call == CALL_SYNC ? "sync" : "rename";
        const char *tn = cls & T_META     ? "store-meta"
                         : cls & T_STORE  ? "store"
                         : cls & T_UPLOAD ? "upload"
                                          : "blob";
        char line[96];
        snprintf(line, sizeof line, "%s %s %s\n", cn, tn, err_name(e));
        fault_log(log, line);
    }
    errno = saved;
    return e;
}

/* ---- crash points ---------------------------------------------------------------- */

void fault_point(const char *name) {
    char path[FAULT_PATH + 8], log[FAULT_PATH], want[64] = "";
    if (!__atomic_load_n(&attached, __ATOMIC_ACQUIRE)) return;
    pthread_mutex_lock(&fault_mu);
    snprintf(path, sizeof path, "%s/.crash", dir_given);
    snprintf(log, sizeof log, "%s", log_path);
    pthread_mutex_unlock(&fault_mu);
    FILE *f = fopen(path, "r");
    if (!f) return;
    int got = fscanf(f, "%63s", want) == 1;
    fclose(f);
    if (!got || strcmp(want, name) != 0) return;
    unlink(path); /* once: the restarted process goes on */
    FILE *l = fopen(log, "a");
    if (l) {
        fprintf(l, "crash %s\n", name);
        fclose(l);
    }
    fprintf(stderr, "fault: crash at %s\n", name);
    _exit(86);
}

/* ---- allocations ---------------------------------------------------------------- */

void fault_writer_thread(void) { is_writer = 1; }

void fault_job_begin(void) {
    if (!__atomic_load_n(&attached, __ATOMIC_ACQUIRE)) return;
    pthread_mutex_lock(&fault_mu);
    rules_refresh();
    pthread_mutex_unlock(&fault_mu);
}

void fault_alloc_arm(long after, long count) {
    arm_after = after;
    arm_count = count;
}

int fault_alloc_check(void) {
    if (arm_count != 0) {
        if (arm_after > 0) {
            arm_after--;
            return 0;
        }
        if (arm_count > 0) arm_count--;
        return 1;
    }
    if (!is_writer || !__atomic_load_n(&alloc_rules, __ATOMIC_ACQUIRE)) return 0;
    char log[FAULT_PATH];
    pthread_mutex_lock(&fault_mu);
    int e = rules_match(CALL_ALLOC, T_WRITER); /* the rules as the job began */
    snprintf(log, sizeof log, "%s", log_path);
    pthread_mutex_unlock(&fault_mu);
    if (e) fault_log(log, "alloc writer ENOMEM\n");
    return e != 0;
}

void *fault_malloc(size_t n) {
    if (fault_alloc_check()) {
        errno = ENOMEM;
        return NULL;
    }
    return malloc(n);
}

/* ---- the interposed calls ------------------------------------------------------ */

static void *real_fn(void **slot, const char *name) {
    void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!f) {
        f = dlsym(RTLD_NEXT, name);
        __atomic_store_n(slot, f, __ATOMIC_RELEASE);
    }
    return f;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    static void *real;
    int e = fault_check(CALL_WRITE, fd, NULL, off);
    if (e) {
        errno = e;
        return -1;
    }
    return ((ssize_t(*)(int, const void *, size_t, off_t))real_fn(&real, "pwrite"))(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
    static void *real;
    int e = fault_check(CALL_WRITE, fd, NULL, (off_t)off);
    if (e) {
        errno = e;
        return -1;
    }
    return ((ssize_t(*)(int, const void *, size_t, off64_t))real_fn(&real, "pwrite64"))(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    static void *real;
    int e = fault_check(CALL_WRITE, fd, NULL, lseek(fd, 0, SEEK_CUR));
    if (e) {
        errno = e;
        return -1;
    }
    return ((ssize_t(*)(int, const struct iovec *, int))real_fn(&real, "writev"))(fd, iov, cnt);
}

int fsync(int fd) {
    static void *real;
    int e = fault_check(CALL_SYNC, fd, NULL, -1);
    if (e) {
        errno = e;
        return -1;
    }
    return ((int (*)(int))real_fn(&real, "fsync"))(fd);
}

int fdatasync(int fd) {
    static void *real;
    int e = fault_check(CALL_SYNC, fd, NULL, -1);
    if (e) {
        errno = e;
        return -1;
    }
    return ((int (*)(int))real_fn(&real, "fdatasync"))(fd);
}

int rename(const char *from, const char *to) {
    static void *real;
    int e = fault_check(CALL_RENAME, -1, to, -1);
    if (e) {
        errno = e;
        return -1;
    }
    return ((int (*)(const char *, const char *))real_fn(&real, "rename"))(from, to);
}

#endif
