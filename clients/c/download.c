/* download.c -- casesync_download: an evidence blob to a file, resumable.
 *
 * The bytes go to PATH.part as they arrive (never held whole in memory); a
 * call that finds PATH.part asks for the rest with Range and If-Range on the
 * blob's ETag (its SHA-256, which never changes), and a server that answers
 * 200 instead starts the file over. Only bytes that hash to the SHA-256 are
 * renamed to PATH.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clients/c/internal.h"

static int hex64(const char *s) {
    if (!s || strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int casesync_download(casesync_t *h, const char *sha256, const char *path, casesync_error_t *err) {
    cs__err_clear(err);
    if (!h || !hex64(sha256) || !path || !*path)
        return cs__fail(err, CASESYNC_E_ARG, 0, NULL, NULL, "a handle, a sha256 (64 lowercase hex) and a path are required");
    size_t pl = strlen(path);
    char *part = malloc(pl + 6);
    if (!part) return cs__fail(err, CASESYNC_E_NOMEM, 0, NULL, NULL, "out of memory");
    memcpy(part, path, pl);
    memcpy(part + pl, ".part", 6);
    int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        free(part);
        return cs__fail(err, CASESYNC_E_IO, 0, NULL, NULL, "cannot open %s.part: %s", path, strerror(e));
    }
    struct stat st;
    off_t have = fstat(fd, &st) == 0 ? st.st_size : 0;
    if (lseek(fd, have, SEEK_SET) != have) have = 0;
    char url[128], range[64], ifrange[80];
    snprintf(url, sizeof url, "/v1/blobs/%s", sha256);
    snprintf(range, sizeof range, "Range: bytes=%lld-", (long long)have);
    snprintf(ifrange, sizeof ifrange, "If-Range: \"%s\"", sha256);
    const char *resume[] = {range, ifrange, NULL};
    int rc = cs__net_enter(h);
    if (rc) {
        close(fd);
        free(part);
        return cs__fail(err, rc, 0, NULL, NULL, "%s", casesync_strerror(rc));
    }
    cs__req_t rq = {.method = "GET",
                    .url = url,
                    .auth = 1,
                    .phase = CASESYNC_PHASE_DOWNLOAD,
                    .headers = have > 0 ? resume : NULL,
                    .sink_fd = fd,
                    .sink_at_zero = have > 0};
    cs__resp_t rs;
    rc = cs__http(h, &rq, &rs, err);
    cs__net_leave(h);
    if (rc == 0) {
        if (rs.status == 416 && have > 0) {
            /* The part already holds every byte: check it below. */
        } else if (rs.status != 200 && rs.status != 206) {
            rc = cs__http_error(h, &rs, "download", err);
            if (rc == 0) rc = cs__fail(err, CASESYNC_E_PROTOCOL, rs.status, NULL, NULL, "download: HTTP %ld", rs.status);
        }
        cs__resp_free(&rs);
    }
    int sync_rc = fsync(fd);
    close(fd);
    if (rc == 0 && sync_rc != 0) rc = cs__fail(err, CASESYNC_E_IO, 0, NULL, NULL, "fsync %s: %s", part, strerror(errno));
    if (rc == 0) {
        char hex[65];
        uint64_t size = 0;
        if (cs__sha256_file(part, hex, &size) != 0) {
            rc = cs__fail(err, CASESYNC_E_IO, 0, NULL, NULL, "cannot read %s", part);
        } else if (strcmp(hex, sha256) != 0) {
            unlink(part);
            rc = cs__fail(err, CASESYNC_E_PROTOCOL, 0, NULL, NULL,
                          "the downloaded bytes hash to %s, not %s; dropped", hex, sha256);
        } else if (rename(part, path) != 0) {
            rc = cs__fail(err, CASESYNC_E_IO, 0, NULL, NULL, "cannot rename %s: %s", part, strerror(errno));
        }
    }
    free(part);
    return rc;
}
