/* test_restore.c -- the operator's round trip: backups under load (the
 * second one incremental: blobs of the first hard-linked, not copied),
 * `casesync restore` into a new folder (never over a store), `verify --deep`
 * on the restored store (and what it finds in a damaged one), a server on
 * it, and a phone that syncs on. */
#include "tests/harness.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")
#define TUS "Tus-Resumable: 1.0.0"

static const char *sha_of(const char *data, size_t len) {
    unsigned char md[32];
    unsigned int n = 0;
    char *hex = hfmt("%64s", "");
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

/* Uploads text as a blob; its sha256 (pool), or NULL. */
static const char *upload(srv_t *s, const char *token, const char *text) {
    const char *sha = sha_of(text, strlen(text));
    char b64[128];
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)sha, 64);
    const char *h[] = {TUS, hfmt("Upload-Length: %zu", strlen(text)), hfmt("Upload-Metadata: sha256 %s", b64), NULL};
    resp_t r = http(s, "POST", "/v1/uploads", token, NULL, h);
    const char *loc = resp_header(&r, "Location");
    if (r.status != 201 || !loc) return NULL;
    if (strncmp(loc, s->base, strlen(s->base)) == 0) loc += strlen(s->base);
    const char *p[] = {TUS, "Upload-Offset: 0", "Content-Type: application/offset+octet-stream", NULL};
    r = http_raw(s, "PATCH", loc, token, text, strlen(text), p);
    return r.status == 204 ? sha : NULL;
}

static const char *evidence(const char *id, const char *sha, size_t size) {
    return hfmt("{\"evidence\":[{\"id\":\"%s\",\"sha256\":\"%s\",\"size\":%zu,\"mime\":\"image/jpeg\","
                "\"kind\":\"photo\",\"captured_at\":\"%s\"}]}",
                id, sha, size, iso_now(-60000));
}

typedef struct load {
    phone_t ph;
    int stop, acked;
    char fail[200];
} load_t;

/* Notes on one record until told to stop: the load a backup runs under. */
static void *push_notes(void *arg) {
    load_t *l = arg;
    for (int i = 0; i < 400 && !__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE); i++) {
        resp_t r = phone_push(&l->ph, changes(ch_update("01RESTORE0000LOAD", 0, NULL,
                                                        hfmt("{\"notes\":[{\"id\":\"n-%d\",\"text\":\"x\"}]}", i))));
        if (r.status != 200) {
            snprintf(l->fail, sizeof l->fail, "push under load -> %ld", r.status);
            break;
        }
        __atomic_add_fetch(&l->acked, 1, __ATOMIC_ACQ_REL);
    }
    return NULL;
}

static ino_t inode_of(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 ? st.st_ino : 0;
}

static const char *blob_file(const char *dir, const char *sha) {
    return hfmt("%s/blobs/%.2s/%.2s/%s", dir, sha, sha + 2, sha);
}

TEST(restore_drill_backup_under_load_incremental_restore_verify_serve_sync_on) {
    srv_t a, b;
    START(a);
    static load_t l;
    memset(&l, 0, sizeof l);
    ASSERT(std_phone(&l.ph, &a, "off1", "dev-R1") == 0);
    const char *text1 = "first photo bytes", *text2 = "second photo bytes, later";
    const char *sha1 = upload(&a, l.ph.token, text1);
    ASSERT_MSG(sha1, "upload 1");
    resp_t r = phone_push(&l.ph, changes(ch_create("01RESTORE0000LOAD", "general", evidence("ev-1", sha1, strlen(text1)))));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");

    char *bk = h_keep(strdup("/tmp/casesync-bk-XXXXXX"), NULL);
    ASSERT(bk && mkdtemp(bk));
    const char *b1 = hfmt("%s/b1", bk), *b2 = hfmt("%s/b2", bk);

    /* Backup 1 under load. */
    pthread_t th;
    ASSERT(pthread_create(&th, NULL, push_notes, &l) == 0);
    for (int i = 0; i < 200 && __atomic_load_n(&l.acked, __ATOMIC_ACQUIRE) < 10; i++) sleep_ms(10);
    cli_res_t c = cli(a.dir, NULL, "backup", b1, "--progress");
    __atomic_store_n(&l.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    ASSERT_MSG(c.rc == 0, "backup 1 exited %d: %s", c.rc, c.err);
    ASSERT_MSG(l.fail[0] == 0, "%s", l.fail);
    ASSERT_MSG(strstr(c.err, "store 1/1"), "backup --progress printed no progress: %s", c.err);

    /* More evidence, then backup 2 linked to backup 1. */
    const char *sha2 = upload(&a, l.ph.token, text2);
    ASSERT_MSG(sha2, "upload 2");
    r = phone_push(&l.ph, changes(ch_create("01RESTORE0000TWO0", "general", evidence("ev-2", sha2, strlen(text2)))));
    ASSERT_STATUS(r, 200);
    c = cli(a.dir, NULL, "backup", b2, "--link-dest", b1);
    ASSERT_MSG(c.rc == 0, "backup 2 exited %d: %s", c.rc, c.err);
    ASSERT_MSG(inode_of(blob_file(b2, sha1)) != 0 && inode_of(blob_file(b2, sha1)) == inode_of(blob_file(b1, sha1)),
               "backup 2 copied the blob backup 1 already held instead of linking it");
    ASSERT_MSG(inode_of(blob_file(b2, sha2)) != 0 && inode_of(blob_file(b2, sha2)) != inode_of(blob_file(a.dir, sha2)),
               "backup 2 lacks the new blob, or shares the live file");

    /* Restore: never over a store (the live one included), then into a fresh folder. */
    c = cli(a.dir, NULL, "restore", b2);
    ASSERT_MSG(c.rc != 0 && strstr(c.err, "already holds a store"), "restore over the live store: %d %s", c.rc, c.err);
    START(b);
    ASSERT_INT(srv_stop(&b), 0);
    ASSERT(unlink(hfmt("%s/data.mdb", b.dir)) == 0);
    unlink(hfmt("%s/lock.mdb", b.dir));
    c = cli(b.dir, NULL, "restore", b2);
    ASSERT_MSG(c.rc == 0, "restore exited %d: %s", c.rc, c.err);
    c = cli(b.dir, NULL, "restore", b2);
    ASSERT_MSG(c.rc != 0, "a second restore into the same folder was not refused");

    cli_res_t v = cli(b.dir, NULL, "verify", "--deep");
    ASSERT_MSG(v.rc == 0, "verify --deep of the restored store exited %d: %s %s", v.rc, v.out, v.err);
    cJSON *vj = jparse(v.out);
    ASSERT_JBOOL(vj, "ok", 1);
    ASSERT_JINT(vj, "store.blobs", 2);
    ASSERT_JINT(vj, "store.blobs_hashed", 2);
    ASSERT_JINT(vj, "store.records", 2);
    ASSERT_JINT(vj, "store.problem_count", 0);

    /* Serve it; a phone syncs on. */
    ASSERT(srv_restart(&b) == 0);
    phone_t p;
    ASSERT(phone_login(&p, &b, "off1", std_pass("off1"), "dev-R1") == 0);
    cJSON *items = phone_pull_all(&p);
    ASSERT_MSG(pull_item(items, "01RESTORE0000TWO0") && pull_item(items, "01RESTORE0000LOAD"),
               "the restored server lacks records: %s", jprint(items));
    r = phone_push(&p, changes(ch_create("01RESTORE0000AFTR", "general", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    r = phone_get(&p, hfmt("/v1/blobs/%s", sha2));
    ASSERT_STATUS(r, 200);
    ASSERT_STR(r.body, text2);
    srv_stop(&b);
    srv_stop(&a);
    ASSERT(system(hfmt("rm -rf '%s'", bk)) == 0);
}

TEST(verify_finds_a_missing_and_a_damaged_blob) {
    srv_t a;
    START(a);
    phone_t ph;
    ASSERT(std_phone(&ph, &a, "off1", "dev-V1") == 0);
    const char *t1 = "bytes that will go missing", *t2 = "bytes that will be damaged";
    const char *s1 = upload(&a, ph.token, t1), *s2 = upload(&a, ph.token, t2);
    ASSERT(s1 && s2);
    ASSERT_INT(srv_stop(&a), 0);
    cli_res_t v = cli(a.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "verify of a sound store exited %d: %s", v.rc, v.out);
    ASSERT(unlink(blob_file(a.dir, s1)) == 0);
    FILE *f = fopen(blob_file(a.dir, s2), "r+");
    ASSERT(f);
    fputc('X', f); /* same size, other bytes */
    fclose(f);
    v = cli(a.dir, NULL, "verify", "--deep");
    ASSERT_MSG(v.rc != 0, "verify --deep passed a store with a missing and a damaged blob: %s", v.out);
    ASSERT_MSG(strstr(v.out, hfmt("blob %s: its file is missing", s1)), "missing blob not named: %s", v.out);
    ASSERT_MSG(strstr(v.out, hfmt("blob %s: its bytes hash to", s2)), "damaged blob not named: %s", v.out);
}

/* Export, the longest CLI command, says how far it is with --progress (on
 * standard error; standard output stays the export alone). */
TEST(export_progress_on_stderr_with_progress_flag) {
    srv_t a;
    START(a);
    phone_t ph;
    ASSERT(std_phone(&ph, &a, "admin", "dev-X1") == 0);
    for (int batch = 0; batch < 2; batch++) {
        char *list = h_keep(malloc(1 << 20), NULL);
        ASSERT(list);
        size_t o = 0;
        list[o++] = '[';
        for (int i = 0; i < 600; i++) {
            const char *c = ch_create(hfmt("01EXPORTPROG%d%04d", batch, i), "general", NULL);
            size_t n = strlen(c);
            ASSERT(o + n + 2 < (1 << 20));
            if (i) list[o++] = ',';
            memcpy(list + o, c, n);
            o += n;
        }
        list[o++] = ']';
        list[o] = 0;
        resp_t r = phone_push(&ph, list);
        ASSERT_STATUS(r, 200);
    }
    cli_res_t c = cli(a.dir, NULL, "export", "--progress");
    ASSERT_MSG(c.rc == 0, "export exited %d: %s", c.rc, c.err);
    ASSERT_MSG(strstr(c.err, "export lines 1000"), "no progress on stderr: %.300s", c.err);
    int lines = 0;
    for (const char *p = c.out; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    ASSERT_INT(lines, 1200);
    ASSERT_MSG(!strstr(c.out, "export lines"), "progress leaked into standard output");
    c = cli(a.dir, NULL, "export");
    ASSERT_MSG(c.rc == 0 && !strstr(c.err, "export lines"), "progress without --progress and no terminal: %s", c.err);
}
