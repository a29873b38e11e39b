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

/* Copies a directory tree of regular files (the blob store); every folder
 * 0700, every file 0600. */
static int copy_tree(const char *from, const char *to) {
    DIR *d = opendir(from);
    if (!d) return errno == ENOENT ? 0 : -1;
    int rc = private_dir(to);
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* ".", "..", and hidden temporaries */
        char a[4096], b[4096];
        struct stat st;
        if (snprintf(a, sizeof a, "%s/%s", from, e->d_name) >= (int)sizeof a ||
            snprintf(b, sizeof b, "%s/%s", to, e->d_name) >= (int)sizeof b) {
            errno = ENAMETOOLONG;
            rc = -1;
            break;
        }
        if (lstat(a, &st) != 0) continue;
        if (S_ISDIR(st.st_mode))
            rc = copy_tree(a, b);
        else if (S_ISREG(st.st_mode))
            rc = copy_file(a, b);
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
    char from[2048], to[2048];
    if (!dest || !*dest) return sync_fail(err, SYNC_EBADREQ, "dest", "no destination folder");
    if (strlen(dest) > 1024)
        return sync_fail(err, SYNC_EBADREQ, "dest", "the destination's name is too long");
    if (private_dir(dest) != 0)
        return sync_fail(err, SYNC_EIO, "dest", "cannot make %s a private folder: %s", dest, strerror(errno));
    int rc = copy_store(s, dest, err);
    if (rc != 0) return rc;
    snprintf(from, sizeof from, "%s/blobs", s->data_dir);
    snprintf(to, sizeof to, "%s/blobs", dest);
    if (copy_tree(from, to) != 0)
        return sync_fail(err, SYNC_EIO, "dest", "copy of the blobs: %s", strerror(errno));
    snprintf(from, sizeof from, "%s/schema.json", s->data_dir);
    snprintf(to, sizeof to, "%s/schema.json", dest);
    if (access(from, F_OK) == 0 && copy_file(from, to) != 0)
        return sync_fail(err, SYNC_EIO, "dest", "copy of schema.json: %s", strerror(errno));
    if (sync_dir(dest) != 0) return sync_fail(err, SYNC_EIO, "dest", "sync of %s: %s", dest, strerror(errno));
    return 0;
}
