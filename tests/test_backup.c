/* test_backup.c -- `casesync backup DEST` while pushes go on: the copy is
 * consistent, holds everything acknowledged before the backup began, and a
 * server started on it verifies. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
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
