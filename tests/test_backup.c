/* test_backup.c -- `casesync backup DEST` while pushes go on: the copy is
 * consistent, holds everything acknowledged before the backup began, and a
 * server started on it verifies. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/harness.h"
#include "tests/test.h"

#define BACKUP_MAX_PUSHES 400

typedef struct pusher {
    phone_t ph;
    const char *record;
    int acked; /* atomic */
    int stop;  /* atomic */
    char fail[300];
} pusher_t;

static void *backup_push(void *arg) {
    pusher_t *p = arg;
    for (int i = 0; i < BACKUP_MAX_PUSHES && !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE); i++) {
        resp_t r = phone_push(&p->ph, changes(ch_update(p->record, 1, NULL,
                                                        hfmt("{\"notes\":[{\"id\":\"b-%d\",\"text\":\"x\"}]}", i))));
        if (r.status != 200) {
            snprintf(p->fail, sizeof p->fail, "push %d -> %ld %.200s", i, r.status, r.body);
            break;
        }
        __atomic_add_fetch(&p->acked, 1, __ATOMIC_ACQ_REL);
    }
    return NULL;
}

TEST(backup_while_pushing_gives_a_copy_that_verifies) {
    srv_t a, b;
    ASSERT(srv_start(&a) == 0);
    static pusher_t p;
    memset(&p, 0, sizeof p);
    p.record = "01JDBACKUP00000001";
    ASSERT(std_phone(&p.ph, &a, "off1", "dev-B1") == 0);
    ASSERT(std_user(&a, "sup1") != NULL);
    resp_t r = phone_push(&p.ph, changes(ch_create(p.record, "general", NULL)));
    ASSERT_STATUS(r, 200);

    /* The destination: a fresh folder the harness will also run a server on. */
    ASSERT(srv_start(&b) == 0);
    ASSERT_INT(srv_stop(&b), 0);
    ASSERT(unlink(hfmt("%s/data.mdb", b.dir)) == 0);
    unlink(hfmt("%s/lock.mdb", b.dir));

    pthread_t th;
    ASSERT(pthread_create(&th, NULL, backup_push, &p) == 0);
    for (int i = 0; i < 200 && __atomic_load_n(&p.acked, __ATOMIC_ACQUIRE) < 20; i++) sleep_ms(10);
    int before = __atomic_load_n(&p.acked, __ATOMIC_ACQUIRE);
    cli_res_t c = cli(a.dir, NULL, "backup", b.dir);
    int after_backup = __atomic_load_n(&p.acked, __ATOMIC_ACQUIRE);
    __atomic_store_n(&p.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    ASSERT_MSG(c.rc == 0, "backup exited %d: %s", c.rc, c.err);
    ASSERT_MSG(p.fail[0] == 0, "%s", p.fail);
    ASSERT_MSG(before >= 20, "only %d pushes before the backup", before);
    /* A second backup into the same folder is refused, not merged. */
    cli_res_t again = cli(a.dir, NULL, "backup", b.dir);
    ASSERT(again.rc != 0);

    cli_res_t v = cli(b.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "verify of the copy exited %d: %s %s", v.rc, v.out, v.err);
    ASSERT(srv_restart(&b) == 0);
    phone_t sup;
    ASSERT(phone_login(&sup, &b, "sup1", std_pass("sup1"), "dev-B2") == 0);
    r = http(&b, "GET", "/v1/audit/verify", sup.token, NULL, NULL);
    ASSERT_STATUS(r, 200);
    ASSERT_JBOOL(resp_json(&r), "ok", 1);
    r = phone_get(&sup, hfmt("/v1/cases/%s", p.record));
    ASSERT_STATUS(r, 200);
    int notes = jlen(resp_json(&r), "fields.notes");
    /* Everything acknowledged before the backup began is in the copy, and the
     * copy is one snapshot: a prefix of the pushes, nothing torn. */
    ASSERT_MSG(notes >= before && notes <= after_backup + 1, "copy has %d notes; %d acked before, %d after",
               notes, before, after_backup);
    for (int i = 0; i < notes; i++)
        ASSERT_MSG(jarr_find(jget(r.json, "fields.notes"), "id", hfmt("b-%d", i)) != NULL, "note b-%d missing", i);
    fprintf(stderr, "    backup: %d pushes acknowledged before it began, %d in the copy\n", before, notes);
    ASSERT_INT(srv_stop(&b), 0);
    ASSERT_INT(srv_stop(&a), 0);
    srv_cleanup(&a);
    srv_cleanup(&b);
}

/* The permission bits of path, or -1 when it cannot be read. */
static int mode_of(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

/* A file of text with the given mode (made under umask 0). 0 or -1. */
static int write_file(const char *path, const char *text, int mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* A backup is a copy of every record, password hash and evidence file: under
 * the loosest umask, into a fresh folder and into one that existed world-
 * readable, every folder it leaves is 0700 and every file 0600. */
TEST(backup_files_are_private_whatever_the_umask) {
    srv_t a;
    phone_t ph;
    umask(0);
    ASSERT(srv_start(&a) == 0);
    ASSERT(std_phone(&ph, &a, "off1", "dev-BP1") == 0);
    resp_t r = phone_push(&ph, changes(ch_create("01JDBACKUPMODE0001", "general", NULL)));
    ASSERT_STATUS(r, 200);
    /* Evidence as the blob store keeps it (the source's own files are 0644
     * here), and a data folder's schema.json. */
    const char *sha = "abcd0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";
    ASSERT(mkdir(hfmt("%s/blobs", a.dir), 0755) == 0 || mode_of(hfmt("%s/blobs", a.dir)) >= 0);
    mkdir(hfmt("%s/blobs/ab", a.dir), 0755);
    ASSERT(mkdir(hfmt("%s/blobs/ab/cd", a.dir), 0755) == 0);
    ASSERT(write_file(hfmt("%s/blobs/ab/cd/%s", a.dir, sha), "evidence bytes", 0644) == 0);
    FILE *in = fopen(CASESYNC_SCHEMA_PATH, "rb");
    ASSERT(in != NULL);
    static char schema[1 << 20];
    size_t sn = fread(schema, 1, sizeof schema - 1, in);
    fclose(in);
    schema[sn] = 0;
    ASSERT(write_file(hfmt("%s/schema.json", a.dir), schema, 0644) == 0);

    const char *fresh = hfmt("%s/backup-new", a.dir), *existing = hfmt("%s/backup-old", a.dir);
    ASSERT(mkdir(existing, 0777) == 0);
    ASSERT_INT(mode_of(existing), 0777);
    const char *dests[2] = {fresh, existing};
    for (int i = 0; i < 2; i++) {
        const char *d = dests[i];
        cli_res_t c = cli(a.dir, NULL, "backup", d);
        ASSERT_MSG(c.rc == 0, "backup into %s exited %d: %s", d, c.rc, c.err);
        const char *dirs[] = {d, hfmt("%s/blobs", d), hfmt("%s/blobs/ab", d), hfmt("%s/blobs/ab/cd", d)};
        const char *files[] = {hfmt("%s/data.mdb", d), hfmt("%s/blobs/ab/cd/%s", d, sha),
                               hfmt("%s/schema.json", d)};
        for (size_t k = 0; k < sizeof dirs / sizeof dirs[0]; k++)
            ASSERT_MSG(mode_of(dirs[k]) == 0700, "%s is %o, expected 700", dirs[k], mode_of(dirs[k]));
        for (size_t k = 0; k < sizeof files / sizeof files[0]; k++)
            ASSERT_MSG(mode_of(files[k]) == 0600, "%s is %o, expected 600", files[k], mode_of(files[k]));
        cli_res_t v = cli(d, NULL, "verify");
        ASSERT_MSG(v.rc == 0, "verify of the copy in %s exited %d: %s %s", d, v.rc, v.out, v.err);
        /* Opening the copy made its lock file; the store itself stays private. */
        ASSERT_MSG(mode_of(hfmt("%s/data.mdb", d)) == 0600, "data.mdb is %o after verify",
                   mode_of(hfmt("%s/data.mdb", d)));
    }
    ASSERT_INT(srv_stop(&a), 0);
    srv_cleanup(&a);
}
