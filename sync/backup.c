/* backup.c -- a consistent hot copy of a data folder while the server runs.
 *
 * LMDB's copy runs inside one read transaction, so it is a snapshot of one
 * commit however many pushes land meanwhile. Blob files are copied after the
 * snapshot: blobs are content-addressed and never change or go away, so every
 * blob the snapshot knows is on disk by then. Restore is starting casesyncd
 * on the copy.
 *
 * A backup holds everything the server does (records, password hashes, the
 * cursor key, evidence), so it is private whatever the umask: the folder and
 * every folder under it are 0700, every file it writes 0600, set with
 * fchmod/chmod after creation so that neither a loose umask nor a folder that
 * existed before widens them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sync/engine.h"

#define COPY_CHUNK (1 << 20)
#define BACKUP_FILE_MODE 0600
#define BACKUP_DIR_MODE 0700

/* Makes path a private folder: created 0700, or an existing folder made
 * 0700. 0, or -1 with errno set (ENOTDIR when something else is there). */
static int private_dir(const char *path) {
    struct stat st;
    if (mkdir(path, BACKUP_DIR_MODE) != 0 && errno != EEXIST) return -1;
    if (lstat(path, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return chmod(path, BACKUP_DIR_MODE);
}

/* fsyncs a folder, so the names of the files made in it are durable. */
static int sync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Copies one file, fsynced, as 0600; skips a destination that already has the
 * size (and makes it 0600). Never follows a link at the destination. */
static int copy_file(const char *from, const char *to) {
    int in = -1, out = -1, rc = -1;
    char *buf = NULL;
    struct stat st, dst;
    if ((in = open(from, O_RDONLY | O_CLOEXEC)) < 0 || fstat(in, &st) != 0) goto done;
    if (lstat(to, &dst) == 0 && S_ISREG(dst.st_mode) && dst.st_size == st.st_size) {
        rc = chmod(to, BACKUP_FILE_MODE);
        goto done;
    }
    if ((out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, BACKUP_FILE_MODE)) < 0 ||
        fchmod(out, BACKUP_FILE_MODE) != 0)
        goto done;
    if (!(buf = malloc(COPY_CHUNK))) goto done;
    for (;;) {
        ssize_t n = read(in, buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) goto done;
        if (n == 0) break;
        for (ssize_t o = 0; o < n;) {
            ssize_t w = write(out, buf + o, (size_t)(n - o));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) goto done;
            o += w;
        }
    }
    rc = fsync(out);
done:
    free(buf);
    if (in >= 0) close(in);
    if (out >= 0 && close(out) != 0) rc = -1;
    return rc;
}

/* What copy_tree does besides copying: the earlier backup's matching folder
 * to hard-link from (NULL: none), and progress. */
typedef struct tree_opt {
    sync_progress_fn progress;
    void *ud;
    uint64_t done, linked;
} tree_opt_t;

/* Hard-links the file at prev (an earlier backup's copy of a blob) to `to`
 * when prev is a regular file of `size` bytes; 0 when linked, -1 otherwise
 * (then the caller copies). An existing `to` of the right size counts. */
static int link_prev(const char *prev, const char *to, off_t size) {
    struct stat ps, ts;
    if (!prev || lstat(prev, &ps) != 0 || !S_ISREG(ps.st_mode) || ps.st_size != size) return -1;
    if (lstat(to, &ts) == 0) return S_ISREG(ts.st_mode) && ts.st_size == size ? 0 : -1;
    return link(prev, to) == 0 && chmod(to, BACKUP_FILE_MODE) == 0 ? 0 : -1;
}

/* Copies a directory tree of regular files (the blob store); every folder
 * 0700, every file 0600. prev: the same folder in an earlier backup, whose
 * files are hard-linked instead of copied (NULL: none). */
static int copy_tree_ex(const char *from, const char *to, const char *prev, tree_opt_t *o) {
    DIR *d = opendir(from);
    if (!d) return errno == ENOENT ? 0 : -1;
    int rc = private_dir(to);
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* ".", "..", and hidden temporaries */
        char a[4096], b[4096], c[4096];
        struct stat st;
        if (snprintf(a, sizeof a, "%s/%s", from, e->d_name) >= (int)sizeof a ||
            snprintf(b, sizeof b, "%s/%s", to, e->d_name) >= (int)sizeof b ||
            (prev && snprintf(c, sizeof c, "%s/%s", prev, e->d_name) >= (int)sizeof c)) {
            errno = ENAMETOOLONG;
            rc = -1;
            break;
        }
        if (lstat(a, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            rc = copy_tree_ex(a, b, prev ? c : NULL, o);
        } else if (S_ISREG(st.st_mode)) {
            if (link_prev(prev ? c : NULL, b, st.st_size) == 0)
                o->linked++;
            else
                rc = copy_file(a, b);
            o->done++;
            if (o->progress && o->done % 64 == 0) o->progress(o->ud, "blobs", o->done, 0);
        }
    }
    closedir(d);
    if (rc == 0) rc = sync_dir(to);
    return rc;
}

/* The LMDB snapshot into dest/data.mdb, created 0600 (O_EXCL: a folder that
 * already holds a store is refused). A failed copy leaves no file behind. */
static int copy_store(sync_t *s, const char *dest, sync_error_t *err) {
    char to[2048];
    if (snprintf(to, sizeof to, "%s/data.mdb", dest) >= (int)sizeof to)
        return sync_fail(err, SYNC_EBADREQ, "dest", "the destination's name is too long");
    int fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, BACKUP_FILE_MODE);
    if (fd < 0 && errno == EEXIST)
        return sync_fail(err, SYNC_ECONFLICT, "dest", "%s already holds a store", dest);
    if (fd < 0) return sync_fail(err, SYNC_EIO, "dest", "cannot create %s: %s", to, strerror(errno));
    int rc = fchmod(fd, BACKUP_FILE_MODE) == 0 ? 0 : errno;
    if (rc == 0) rc = mdb_env_copyfd2(store_env(s->st), fd, MDB_CP_COMPACT);
    if (rc == 0 && fsync(fd) != 0) rc = errno;
    if (close(fd) != 0 && rc == 0) rc = errno;
    if (rc != 0) {
        unlink(to);
        return sync_fail(err, SYNC_EIO, "dest", "copy of the store: %s", mdb_strerror(rc));
    }
    return 0;
}

int sync_backup(sync_t *s, const char *dest, sync_error_t *err) {
    return sync_backup_ex(s, dest, NULL, NULL, NULL, err);
}

int sync_backup_ex(sync_t *s, const char *dest, const char *link_dest, sync_progress_fn progress, void *ud,
                   sync_error_t *err) {
    char from[2048], to[2048], prev[2048];
    tree_opt_t o = {progress, ud, 0, 0};
    if (link_dest && (strlen(link_dest) > 1024 || access(link_dest, R_OK | X_OK) != 0))
        return sync_fail(err, SYNC_EBADREQ, "link_dest", "cannot read the earlier backup %s", link_dest);
    if (!dest || !*dest) return sync_fail(err, SYNC_EBADREQ, "dest", "no destination folder");
    if (strlen(dest) > 1024)
        return sync_fail(err, SYNC_EBADREQ, "dest", "the destination's name is too long");
    if (private_dir(dest) != 0)
        return sync_fail(err, SYNC_EIO, "dest", "cannot make %s a private folder: %s", dest, strerror(errno));
    if (progress) progress(ud, "store", 0, 1);
    int rc = copy_store(s, dest, err);
    if (rc != 0) return rc;
    if (progress) progress(ud, "store", 1, 1);
    snprintf(from, sizeof from, "%s/blobs", s->data_dir);
    snprintf(to, sizeof to, "%s/blobs", dest);
    if (link_dest) snprintf(prev, sizeof prev, "%s/blobs", link_dest);
    if (copy_tree_ex(from, to, link_dest ? prev : NULL, &o) != 0)
        return sync_fail(err, SYNC_EIO, "dest", "copy of the blobs: %s", strerror(errno));
    snprintf(from, sizeof from, "%s/schema.json", s->data_dir);
    snprintf(to, sizeof to, "%s/schema.json", dest);
    if (access(from, F_OK) == 0 && copy_file(from, to) != 0)
        return sync_fail(err, SYNC_EIO, "dest", "copy of schema.json: %s", strerror(errno));
    if (sync_dir(dest) != 0) return sync_fail(err, SYNC_EIO, "dest", "sync of %s: %s", dest, strerror(errno));
    return 0;
}
int sync_restore(const char *backup, const char *data_dir, sync_progress_fn progress, void *ud,
                 sync_error_t *err) {
    char from[2048], to[2048];
    struct stat st;
    tree_opt_t o = {progress, ud, 0, 0};
    if (!backup || !*backup || !data_dir || !*data_dir)
        return sync_fail(err, SYNC_EBADREQ, NULL, "restore needs a backup folder and a data folder");
    if (strlen(backup) > 1024 || strlen(data_dir) > 1024)
        return sync_fail(err, SYNC_EBADREQ, NULL, "a folder name is too long");
    snprintf(from, sizeof from, "%s/data.mdb", backup);
    if (lstat(from, &st) != 0 || !S_ISREG(st.st_mode))
        return sync_fail(err, SYNC_EBADREQ, "backup", "%s holds no backup (no data.mdb)", backup);
    snprintf(to, sizeof to, "%s/data.mdb", data_dir);
    if (lstat(to, &st) == 0)
        return sync_fail(err, SYNC_ECONFLICT, "data", "%s already holds a store: restore never overwrites one "
                         "(stop the server and restore into a new folder)", data_dir);
    if (private_dir(data_dir) != 0)
        return sync_fail(err, SYNC_EIO, "data", "cannot make %s a private folder: %s", data_dir, strerror(errno));
    /* The store goes in under a temporary name and is renamed last, so a
     * restore cut short never leaves a half store that would start. */
    char tmp[2048];
    snprintf(tmp, sizeof tmp, "%s/.restore-data.mdb", data_dir);
    if (progress) progress(ud, "store", 0, 1);
    unlink(tmp);
    if (copy_file(from, tmp) != 0) {
        int e = errno;
        unlink(tmp);
        return sync_fail(err, SYNC_EIO, "data", "copy of the store: %s", strerror(e));
    }
    if (progress) progress(ud, "store", 1, 1);
    snprintf(from, sizeof from, "%s/blobs", backup);
    snprintf(to, sizeof to, "%s/blobs", data_dir);
    if (copy_tree_ex(from, to, NULL, &o) != 0) {
        int e = errno;
        unlink(tmp);
        return sync_fail(err, SYNC_EIO, "data", "copy of the blobs: %s", strerror(e));
    }
    snprintf(from, sizeof from, "%s/schema.json", backup);
    snprintf(to, sizeof to, "%s/schema.json", data_dir);
    if (access(from, F_OK) == 0 && copy_file(from, to) != 0) {
        unlink(tmp);
        return sync_fail(err, SYNC_EIO, "data", "copy of schema.json: %s", strerror(errno));
    }
    snprintf(to, sizeof to, "%s/data.mdb", data_dir);
    if (link(tmp, to) != 0) { /* link, not rename: never replaces a store made meanwhile */
        int e = errno;
        unlink(tmp);
        return sync_fail(err, e == EEXIST ? SYNC_ECONFLICT : SYNC_EIO, "data", "cannot put the store in place: %s",
                         strerror(e));
    }
    unlink(tmp);
    if (sync_dir(data_dir) != 0) return sync_fail(err, SYNC_EIO, "data", "sync of %s: %s", data_dir, strerror(errno));
    return 0;
}
