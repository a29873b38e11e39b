/* test_install.c -- what an operator installs: `make install` into a
 * temporary prefix gives a tree whose casesyncd starts and serves from
 * outside the source folder with the schema installed beside it; a binary
 * copied alone next to a schema/ folder does the same; both binaries answer
 * --version and /metrics names the build.
 *
 * Caveats: the tests run make (the release build is already there: `make
 * test` builds it first) and switch CASESYNC_BIN to the installed tree, in
 * their own test process only. */
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef CASESYNC_SRC_DIR
#define CASESYNC_SRC_DIR "."
#endif

#define START(s) ASSERT_MSG(srv_start(&(s)) == 0, "casesyncd did not start")

static void rm_tree_cmd(void *d) {
    char cmd[400];
    if (d && snprintf(cmd, sizeof cmd, "rm -rf '%s'", (const char *)d) < (int)sizeof cmd && system(cmd) != 0)
        fprintf(stderr, "    could not remove %s\n", (const char *)d);
    free(d);
}

/* Runs a shell command; its exit code, its output (pool) in *out. */
static int sh(const char *cmd, const char **out) {
    FILE *p = popen(hfmt("%s 2>&1", cmd), "r");
    if (!p) return -1;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    while (fread(buf + n, 1, 0, p) > 0) {}
    char drain[4096];
    while (fread(drain, 1, sizeof drain, p) > 0) {}
    int st = pclose(p);
    *out = hfmt("%s", buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A copy of the schema with another title, written to path. */
static int marked_schema(const char *path, const char *title) {
    const char *out;
    return sh(hfmt("python3 -c 'import json,sys; d=json.load(open(\"%s/schema/casesync.json\")); "
                   "d[\"title\"]=sys.argv[1]; json.dump(d, open(sys.argv[2], \"w\"), ensure_ascii=False)' '%s' '%s'",
                   CASESYNC_SRC_DIR, title, path),
              &out);
}

/* The "schema ..." start line of the last served_title() server (pool). */
static const char *schema_line = "";

/* Starts the server from bin (a folder), logs in an admin, answers the
 * schema's title (pool) or NULL; schema_line gets where it read the schema. */
static const char *served_title(const char *bin) {
    setenv("CASESYNC_BIN", bin, 1);
    srv_t s;
    if (srv_start(&s) != 0) return NULL;
    if (!std_user(&s, "admin")) return NULL;
    const char *tok = login(&s, "admin", std_pass("admin"), "dev-inst", NULL);
    if (!tok) return NULL;
    resp_t r = http(&s, "GET", "/v1/schema", tok, NULL, NULL);
    resp_t h = http(&s, "GET", "/healthz", NULL, NULL, NULL);
    if (r.status != 200 || h.status != 200) return NULL;
    const char *t = jstr(resp_json(&r), "title");
    srv_stop(&s);
    FILE *f = fopen(hfmt("%s/server.log", s.dir), "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, ": schema ")) schema_line = hfmt("%s", strstr(line, ": schema ") + 2);
    if (f) fclose(f);
    return t;
}

TEST(install_tree_starts_and_serves_outside_the_source) {
    char *dir = strdup("/tmp/casesync-install-XXXXXX");
    ASSERT(dir && mkdtemp(dir));
    h_keep(dir, rm_tree_cmd);
    const char *out;
    int rc = sh(hfmt("unset MAKEFLAGS MAKELEVEL MFLAGS; make -s -C '%s' install PREFIX='%s/usr' SYSCONFDIR='%s/etc'",
                     CASESYNC_SRC_DIR, dir, dir),
                &out);
    ASSERT_MSG(rc == 0, "make install exited %d:\n%s", rc, out);
    const char *files[] = {"usr/bin/casesyncd", "usr/bin/casesync", "usr/share/casesync/schema/casesync.json",
                           "usr/share/casesync/schema/calendar/2026.json", "usr/share/man/man1/casesyncd.1",
                           "usr/share/man/man1/casesync.1", "usr/lib/systemd/system/casesyncd.service",
                           "etc/casesync/casesyncd.conf", "usr/include/casesync.h", "usr/lib/libcasesync.so",
                           "usr/share/doc/casesync/openapi.yaml"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        ASSERT_MSG(access(hfmt("%s/%s", dir, files[i]), R_OK) == 0, "make install left out %s", files[i]);
    ASSERT_INT(sh(hfmt("grep -q 'ExecStart=%s/usr/bin/casesyncd' '%s/usr/lib/systemd/system/casesyncd.service' && "
                       "grep -q '^ProtectSystem=strict' '%s/usr/lib/systemd/system/casesyncd.service'",
                       dir, dir, dir),
                  &out),
               0);
    /* The installed schema is the one served, from a working folder outside the source. */
    ASSERT_INT(marked_schema(hfmt("%s/usr/share/casesync/schema/casesync.json", dir), "installed-schema"), 0);
    ASSERT(chdir("/") == 0);
    const char *t = served_title(hfmt("%s/usr/bin", dir));
    ASSERT_MSG(t && strcmp(t, "installed-schema") == 0, "the installed server served schema title %s",
               t ? t : "(none: it did not serve)");
    ASSERT_MSG(strstr(schema_line, "/usr/bin/../share/casesync/schema/casesync.json"), "schema line: %s", schema_line);
}

TEST(copied_binary_finds_the_schema_beside_it) {
    char *dir = strdup("/tmp/casesync-copy-XXXXXX");
    ASSERT(dir && mkdtemp(dir));
    h_keep(dir, rm_tree_cmd);
    const char *rel = getenv("CASESYNC_RELEASE_BIN");
    const char *src = hfmt("%s/%s", CASESYNC_SRC_DIR, rel && *rel ? rel : "build");
    const char *out;
    ASSERT_INT(sh(hfmt("mkdir -p '%s/schema' && cp '%s/casesyncd' '%s/casesync' '%s/' && cp -r '%s/schema/calendar' '%s/schema/'",
                       dir, src, src, dir, CASESYNC_SRC_DIR, dir),
                  &out),
               0);
    ASSERT_INT(marked_schema(hfmt("%s/schema/casesync.json", dir), "beside-the-binary"), 0);
    ASSERT(chdir("/") == 0);
    const char *t = served_title(dir);
    ASSERT_MSG(t && strcmp(t, "beside-the-binary") == 0, "the copied server served schema title %s",
               t ? t : "(none: it did not serve)");
}

TEST(version_on_both_binaries_and_build_info_metric) {
    const char *bin = getenv("CASESYNC_BIN");
    bin = bin && *bin ? bin : "build/asan";
    const char *out;
    ASSERT_INT(sh(hfmt("'%s/casesyncd' --version", bin), &out), 0);
    ASSERT_MSG(strncmp(out, "casesyncd ", 10) == 0 && strstr(out, "(commit "), "casesyncd --version: %s", out);
    ASSERT_INT(sh(hfmt("'%s/casesync' --version", bin), &out), 0);
    ASSERT_MSG(strncmp(out, "casesync ", 9) == 0 && strstr(out, "(commit "), "casesync --version: %s", out);
    srv_t s;
    START(s);
    resp_t m = metrics_scrape(&s);
    ASSERT_STATUS(m, 200);
    ASSERT_MSG(strstr(m.body, "casesync_build_info{version=\""), "no casesync_build_info in /metrics");
}

/* A binary copied alone, with no schema anywhere near it, starts with the
 * built-in one (schema/embedded.h); --schema names another file, and a
 * missing one stops the start with its name. */
TEST(copied_binary_alone_serves_the_built_in_schema_and_schema_flag_overrides) {
    char *dir = strdup("/tmp/casesync-alone-XXXXXX");
    ASSERT(dir && mkdtemp(dir));
    h_keep(dir, rm_tree_cmd);
    const char *rel = getenv("CASESYNC_RELEASE_BIN");
    const char *src = hfmt("%s/%s", CASESYNC_SRC_DIR, rel && *rel ? rel : "build");
    const char *out;
    ASSERT_INT(sh(hfmt("cp '%s/casesyncd' '%s/casesync' '%s/'", src, src, dir), &out), 0);
    int rc = sh(hfmt("cd / && '%s/casesyncd' --data '%s/d' --listen 127.0.0.1:0 --schema '%s/nowhere.json'", dir, dir,
                     dir),
                &out);
    ASSERT_MSG(rc != 0 && strstr(out, "nowhere.json"), "--schema of a missing file: exit %d: %s", rc, out);
    ASSERT(chdir("/") == 0);
    const char *t = served_title(dir);
    ASSERT_INT(sh(hfmt("python3 -c 'import json; print(json.load(open(\"%s/schema/casesync.json\"))[\"title\"], end=\"\")'",
                       CASESYNC_SRC_DIR),
                  &out),
               0);
    ASSERT_MSG(t && strcmp(t, out) == 0, "the lone binary served schema title %s, expected the built-in %s",
               t ? t : "(none: it did not serve)", out);
    ASSERT_MSG(strncmp(schema_line, "schema built in", 15) == 0,
               "the lone binary did not use its built-in schema: %s", schema_line);
}

/* One argument parser (getopt_long) for every binary: --opt=VALUE and
 * --opt VALUE alike, unknown options and missing values refused with a
 * usage status that names them, options a command does not take refused. */
TEST(every_binary_parses_options_with_getopt_long) {
    srv_t s;
    ASSERT_MSG(srv_start(&s) == 0, "casesyncd did not start");
    const char *bin = getenv("CASESYNC_BIN");
    bin = bin && *bin ? bin : "build/asan";
    char *tmp = strdup("/tmp/casesync-opts-XXXXXX");
    ASSERT(tmp && mkdtemp(tmp));
    h_keep(tmp, rm_tree_cmd);
    const char *out;
    struct {
        const char *cmd;
        int rc;
        const char *says;
    } cases[] = {
        {hfmt("'%s/casesync' --data='%s' user list", bin, s.dir), 0, ""},
        {hfmt("'%s/casesync' user list --data '%s'", bin, s.dir), 0, ""},
        {hfmt("'%s/casesync' --data '%s' user list --bogus", bin, s.dir), 2, "unknown option '--bogus'"},
        {hfmt("'%s/casesync' --data '%s' backup", bin, s.dir), 2, "usage"},
        {hfmt("'%s/casesync' --data", bin), 2, "needs a value"},
        {hfmt("'%s/casesyncd' --data='%s/d' --bogus", bin, tmp), 2, "unknown option --bogus"},
        {hfmt("'%s/casesyncd' --listen", bin), 2, "--listen needs a value"},
        {hfmt("'%s/casesyncd' stray", bin), 2, "unexpected argument stray"},
        {hfmt("'%s/casesync-phone' --state='%s/p' status", bin, tmp), 0, ""},
        {hfmt("'%s/casesync-phone' --state '%s/p' new %s --bogus x", bin, tmp, TYPE_VENDING), 1, "unknown option --bogus"},
        {hfmt("'%s/casesync-phone' --state '%s/p' sync --kind photo", bin, tmp), 1, "does not take"},
        {hfmt("'%s/casesync-phone' --state '%s/p' new", bin, tmp), 1, "usage"},
        {hfmt("'%s/casesync-sim' --phones", bin), -2, "usage"},
        {hfmt("'%s/casesync-sim' --server=http://127.0.0.1:1 --bogus", bin), -2, "usage"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = sh(cases[i].cmd, &out);
        ASSERT_MSG(cases[i].rc == -2 ? rc != 0 : rc == cases[i].rc, "%s -> exit %d, expected %d:\n%s", cases[i].cmd,
                   rc, cases[i].rc, out);
        ASSERT_MSG(strstr(out, cases[i].says), "%s said no \"%s\":\n%s", cases[i].cmd, cases[i].says, out);
    }
}
