/* backup.c -- a consistent hot copy of a data folder while the server runs.
 *
 * LMDB's copy runs inside one read transaction, so it is a snapshot of one
 * commit however many pushes land meanwhile. Blob files are copied after the
 * snapshot: blobs are content-addressed and never change or go away, so every
 * blob the snapshot knows is on disk by then. Restore is starting casesyncd
 * on the copy.
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

/* Copies one file, fsynced; skips a destination that already has the size. */
static int copy_file(const char *from, const char *to) {
    int in = -1, out = -1, rc = -1;
    char *buf = NULL;
    struct stat st, dst;
    if ((in = open(from, O_RDONLY | O_CLOEXEC)) < 0 || fstat(in, &st) != 0) goto done;
    if (stat(to, &dst) == 0 && dst.st_size == st.st_size) {
        rc = 0;
        goto done;
    }
    if ((out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) goto done;
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

/* Copies a directory tree of regular files (the blob store). */
static int copy_tree(const char *from, const char *to) {
    DIR *d = opendir(from);
    if (!d) return errno == ENOENT ? 0 : -1;
    int rc = 0;
    if (mkdir(to, 0700) != 0 && errno != EEXIST) rc = -1;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* ".", "..", and hidden temporaries */
        char a[4096], b[4096];
        struct stat st;
        snprintf(a, sizeof a, "%s/%s", from, e->d_name);
        snprintf(b, sizeof b, "%s/%s", to, e->d_name);
        if (lstat(a, &st) != 0) continue;
        if (S_ISDIR(st.st_mode))
            rc = copy_tree(a, b);
        else if (S_ISREG(st.st_mode))
            rc = copy_file(a, b);
    }
    closedir(d);
    return rc;
}

int sync_backup(sync_t *s, const char *dest, sync_error_t *err) {
    char from[2048], to[2048];
    if (!dest || !*dest) return sync_fail(err, SYNC_EBADREQ, "dest", "no destination folder");
    if (mkdir(dest, 0700) != 0 && errno != EEXIST)
        return sync_fail(err, SYNC_EIO, "dest", "cannot create %s: %s", dest, strerror(errno));
    snprintf(to, sizeof to, "%s/data.mdb", dest);
    if (access(to, F_OK) == 0)
        return sync_fail(err, SYNC_ECONFLICT, "dest", "%s already holds a store", dest);
    int rc = mdb_env_copy2(store_env(s->st), dest, MDB_CP_COMPACT);
    if (rc != 0) return sync_fail(err, SYNC_EIO, "dest", "copy of the store: %s", mdb_strerror(rc));
    snprintf(from, sizeof from, "%s/blobs", s->data_dir);
    snprintf(to, sizeof to, "%s/blobs", dest);
    if (copy_tree(from, to) != 0)
        return sync_fail(err, SYNC_EIO, "dest", "copy of the blobs: %s", strerror(errno));
    snprintf(from, sizeof from, "%s/schema.json", s->data_dir);
    snprintf(to, sizeof to, "%s/schema.json", dest);
    if (access(from, F_OK) == 0 && copy_file(from, to) != 0)
        return sync_fail(err, SYNC_EIO, "dest", "copy of schema.json: %s", strerror(errno));
    return 0;
}
