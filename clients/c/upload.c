/* upload.c -- evidence bytes through tus 1.0.0 (PROTOCOL §7): skip what the
 * server has (HEAD /v1/blobs/{sha256}), create an upload with its metadata,
 * PATCH in chunks, resume at the server's Upload-Offset after any cut.
 *
 * The upload's Location and the acknowledged offset are written to the store
 * after every answer, so a phone that dies mid-upload resumes where the
 * server stands, not from zero.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clients/c/internal.h"

#define TUS "Tus-Resumable: 1.0.0"
#define MAX_RESTARTS 3

typedef struct up_ctx {
    cJSON *entry; /* the upload state to write */
    cs__events_t *ev;
    cJSON *notice; /* taken */
} up_ctx_t;

static int save_txn(casesync_t *h, MDB_txn *txn, void *ctx) {
    up_ctx_t *u = ctx;
    if (u->ev) cs__events_reset(u->ev);
    const char *sha = cs__jstr(u->entry, "sha256");
    int rc = cs__put_json(txn, h->db[CS_DB_UPLOADS], sha, strlen(sha), u->entry);
    if (!rc && u->notice) rc = cs__notice_add(h, txn, cJSON_Duplicate(u->notice, 1), u->ev);
    return rc;
}

static int save(casesync_t *h, cJSON *entry, cs__events_t *ev, cJSON *notice) {
    up_ctx_t u = {entry, ev, notice};
    pthread_mutex_lock(&h->lock);
    int rc = cs__with_write(h, save_txn, &u);
    pthread_mutex_unlock(&h->lock);
    cJSON_Delete(notice);
    return rc;
}

static void set_str(cJSON *o, const char *k, const char *v) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, k);
    if (v) cJSON_AddStringToObject(o, k, v);
}

static void set_num(cJSON *o, const char *k, double v) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, k);
    cJSON_AddNumberToObject(o, k, v);
}

/* Marks an upload finished (done or failed) and reports it. */
static int finish(casesync_t *h, cJSON *up, const char *state, const char *error, casesync_report_t *rep) {
    cs__events_t ev = {0};
    set_str(up, "state", state);
    set_str(up, "error", error);
    cJSON *notice = NULL;
    if (strcmp(state, "failed") == 0) {
        notice = cJSON_CreateObject();
        cJSON_AddStringToObject(notice, "kind", "upload_failed");
        if (cs__jstr(up, "record_id"))
            cJSON_AddStringToObject(notice, "record_id", cs__jstr(up, "record_id"));
        cJSON_AddStringToObject(notice, "sha256", cs__jstr(up, "sha256"));
        cJSON_AddStringToObject(notice, "path", cs__jstr(up, "path") ? cs__jstr(up, "path") : "");
        cJSON_AddStringToObject(notice, "error", error ? error : "");
        rep->uploads_failed++;
    } else {
        rep->uploads_done++;
    }
    int rc = save(h, up, &ev, notice);
    cJSON *evj = cJSON_CreateObject();
    cJSON_AddStringToObject(evj, "sha256", cs__jstr(up, "sha256"));
    if (cs__jstr(up, "record_id")) cJSON_AddStringToObject(evj, "record_id", cs__jstr(up, "record_id"));
    cJSON_AddStringToObject(evj, "state", state);
    if (error) cJSON_AddStringToObject(evj, "error", error);
    cs__events_add(&ev, CASESYNC_EVENT_UPLOAD, cs__jstr(up, "record_id"), state, evj);
    cJSON_Delete(evj);
    if (!rc && strcmp(state, "done") == 0) {
        pthread_mutex_lock(&h->lock);
        h->stats.uploads_done++;
        pthread_mutex_unlock(&h->lock);
    }
    cs__events_fire(h, &ev);
    return rc;
}

/* "k b64(v)" pairs of Upload-Metadata. */
static char *metadata(const cJSON *up) {
    static const char *const keys[] = {"sha256", "filename", "mime", "record_id"};
    size_t cap = 64;
    char *out = NULL, *parts[4] = {0};
    for (int i = 0; i < 4; i++) {
        const char *v = cs__jstr(up, keys[i]);
        if (!v) continue;
        parts[i] = cs__b64(v, strlen(v));
        if (parts[i]) cap += strlen(keys[i]) + strlen(parts[i]) + 2;
    }
    out = malloc(cap + 20);
    if (out) {
        strcpy(out, "Upload-Metadata: ");
        int first = 1;
        for (int i = 0; i < 4; i++) {
            if (!parts[i]) continue;
            if (!first) strcat(out, ",");
            strcat(out, keys[i]);
            strcat(out, " ");
            strcat(out, parts[i]);
            first = 0;
        }
    }
    for (int i = 0; i < 4; i++)
        free(parts[i]);
    return out;
}

/* The path of an upload URL the server gave (absolute URLs stay as they are). */
static void location_path(const char *loc, char *out, size_t cap) {
    if (strncmp(loc, "http://", 7) == 0 || strncmp(loc, "https://", 8) == 0 || loc[0] == '/')
        snprintf(out, cap, "%s", loc);
    else
        snprintf(out, cap, "/v1/uploads/%s", loc);
}

/* Outcome of one upload: 0 go on with the next, <0 stop the round. */
static int upload_one(casesync_t *h, cJSON *up, casesync_report_t *rep, int *no_tus, casesync_error_t *err) {
    const char *sha = cs__jstr(up, "sha256"), *path = cs__jstr(up, "path");
    uint64_t size = (uint64_t)cs__jint(up, "size", 0);
    char url[1200], hv[64];
    int rc = 0, restarts = 0, fd = -1;
    unsigned char *chunk = NULL;
    cs__resp_t rs = {0};
    h->prog.file_size = size;
    h->prog.file_done = 0;

    /* 1. The server may have these bytes already (another phone, an earlier try). */
    snprintf(url, sizeof url, "/v1/blobs/%s", sha);
    cs__req_t head = {.method = "HEAD", .url = url, .auth = 1, .phase = CASESYNC_PHASE_UPLOAD, .head = 1};
    if ((rc = cs__http(h, &head, &rs, err))) return rc;
    long st = rs.status;
    if (st == 200) {
        cs__resp_free(&rs);
        return finish(h, up, "done", NULL, rep);
    }
    if (st == 401 || st == 429 || st == 503) {
        rc = cs__http_error(h, &rs, "HEAD blob", err);
        cs__resp_free(&rs);
        return rc;
    }
    cs__resp_free(&rs);

    if (!path || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "cannot open %s: %s", path ? path : "(no path)", strerror(errno));
        return finish(h, up, "failed", msg, rep);
    }
    if (!(chunk = malloc(h->upload_chunk))) {
        close(fd);
        return cs__fail(err, CASESYNC_E_NOMEM, 0, NULL, NULL, "out of memory");
    }

restart:
    if (++restarts > MAX_RESTARTS) {
        rc = finish(h, up, "failed", "the server kept losing the upload", rep);
        goto done;
    }
    uint64_t offset = 0;
    const char *loc = cs__jstr(up, "location");
    if (loc) {
        /* 2. Resume: ask where the server stands. */
        location_path(loc, url, sizeof url);
        const char *hd[] = {TUS, NULL};
        cs__req_t rq = {.method = "HEAD",
                        .url = url,
                        .auth = 1,
                        .phase = CASESYNC_PHASE_UPLOAD,
                        .head = 1,
                        .headers = hd};
        if ((rc = cs__http(h, &rq, &rs, err))) goto done;
        if ((rs.status == 200 || rs.status == 204) && cs__resp_header(&rs, "Upload-Offset", hv, sizeof hv)) {
            offset = strtoull(hv, NULL, 10);
        } else if (rs.status == 404 || rs.status == 410 || rs.status == 403) {
            set_str(up, "location", NULL); /* expired or unknown: start over */
            loc = NULL;
        } else {
            rc = cs__http_error(h, &rs, "HEAD upload", err);
            goto done;
        }
        cs__resp_free(&rs);
    }
    if (!loc) {
        /* 3. Create the upload. */
        char len[64];
        char *meta = metadata(up);
        snprintf(len, sizeof len, "Upload-Length: %llu", (unsigned long long)size);
        const char *hd[] = {TUS, len, meta, NULL};
        cs__req_t rq = {
            .method = "POST", .url = "/v1/uploads", .auth = 1, .phase = CASESYNC_PHASE_UPLOAD, .headers = hd};
        rc = cs__http(h, &rq, &rs, err);
        free(meta);
        if (rc) goto done;
        char locbuf[1024];
        if (rs.status == 404 || rs.status == 405 || rs.status == 501) {
            *no_tus = 1; /* a server without uploads (yet): the bytes wait */
            rep->uploads_pending++;
            goto done;
        }
        if (rs.status == 413 || rs.status == 403 || rs.status == 400 || rs.status == 422) {
            char msg[300];
            const char *m =
                cs__jstr(cJSON_GetObjectItemCaseSensitive(cs__resp_json(&rs), "error"), "message");
            snprintf(msg, sizeof msg, "POST /v1/uploads: HTTP %ld %s", rs.status, m ? m : "");
            rc = finish(h, up, "failed", msg, rep);
            goto done;
        }
        if (rs.status != 201 || !cs__resp_header(&rs, "Location", locbuf, sizeof locbuf)) {
            rc = cs__http_error(h, &rs, "POST /v1/uploads", err);
            goto done;
        }
        set_str(up, "location", locbuf);
        set_num(up, "offset", 0);
        if (cs__resp_header(&rs, "Upload-Offset", hv, sizeof hv)) offset = strtoull(hv, NULL, 10);
        cs__resp_free(&rs);
        if ((rc = save(h, up, NULL, NULL))) goto done;
        location_path(locbuf, url, sizeof url);
    }

    /* 4. PATCH from the server's offset to the end. */
    int clashes = 0;
    while (offset < size) {
        set_num(up, "offset", (double)offset);
        h->prog.file_done = offset;
        size_t want = size - offset < h->upload_chunk ? (size_t)(size - offset) : h->upload_chunk;
        ssize_t got = pread(fd, chunk, want, (off_t)offset);
        if (got != (ssize_t)want) {
            rc = finish(h, up, "failed", "the file changed or shrank before it was uploaded", rep);
            goto done;
        }
        char off[64];
        snprintf(off, sizeof off, "Upload-Offset: %llu", (unsigned long long)offset);
        const char *hd[] = {TUS, off, NULL};
        cs__req_t rq = {.method = "PATCH",
                        .url = url,
                        .auth = 1,
                        .phase = CASESYNC_PHASE_UPLOAD,
                        .headers = hd,
                        .body = chunk,
                        .body_len = want,
                        .raw_len = want,
                        .content_type = "application/offset+octet-stream"};
        if ((rc = cs__http(h, &rq, &rs, err))) {
            /* What the server kept is read back with HEAD next time. */
            save(h, up, NULL, NULL);
            goto done;
        }
        if ((rs.status == 204 || rs.status == 200) && cs__resp_header(&rs, "Upload-Offset", hv, sizeof hv)) {
            uint64_t next = strtoull(hv, NULL, 10);
            pthread_mutex_lock(&h->lock);
            h->stats.upload_bytes += next > offset ? next - offset : 0;
            pthread_mutex_unlock(&h->lock);
            offset = next;
            set_num(up, "offset", (double)offset);
            cs__resp_free(&rs);
            if (offset < size && (rc = save(h, up, NULL, NULL))) goto done;
        } else if (rs.status == 409 && ++clashes <= 3) {
            cs__resp_free(&rs); /* wrong offset: ask again */
            goto restart_offset;
        } else if (rs.status == 460) {
            cs__resp_free(&rs);
            rc = finish(h, up, "failed",
                        "the server found a different SHA-256 (file changed after attaching?)", rep);
            goto done;
        } else if (rs.status == 404 || rs.status == 410) {
            cs__resp_free(&rs);
            set_str(up, "location", NULL);
            goto restart;
        } else {
            rc = cs__http_error(h, &rs, "PATCH upload", err);
            goto done;
        }
        continue;
    restart_offset:
        restarts--; /* a HEAD, not a new upload */
        goto restart;
    }
    h->prog.file_done = size;
    rc = finish(h, up, "done", NULL, rep);
done:
    cs__resp_free(&rs);
    free(chunk);
    if (fd >= 0) close(fd);
    return rc;
}

int cs__upload_all(casesync_t *h, casesync_report_t *rep, casesync_error_t *err) {
    cJSON *all = NULL;
    char *text = NULL;
    int rc = casesync_uploads(h, &text);
    if (rc) return cs__fail(err, rc, 0, NULL, NULL, "cannot read the uploads");
    all = cs__parse(text, strlen(text));
    free(text);
    int n = 0, step = 0, no_tus = 0;
    cJSON *up;
    cJSON_ArrayForEach(up, all) {
        const char *st = cs__jstr(up, "state");
        if (st && strcmp(st, "pending") == 0) n++;
    }
    cJSON_ArrayForEach(up, all) {
        const char *st = cs__jstr(up, "state");
        if (!st || strcmp(st, "pending") != 0) continue;
        if (no_tus) {
            rep->uploads_pending++;
            continue;
        }
        h->prog.phase = CASESYNC_PHASE_UPLOAD;
        h->prog.step = ++step;
        h->prog.steps = n;
        if ((rc = upload_one(h, up, rep, &no_tus, err))) break;
    }
    cJSON_Delete(all);
    return rc;
}
