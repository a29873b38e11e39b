/* test_java.c -- the Java binding (clients/java) on the JVM against a real
 * casesyncd: tests/..../TwoPhonesTest.java runs two phones in one JVM; they
 * converge, and a conflict reaches the listener. `make test` builds the
 * classes and build/libcasesync_jni.so (`make java`) with Debian's JDK. */
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CASESYNC_SRC_DIR
#define CASESYNC_SRC_DIR "."
#endif

static void rm_dir_cmd(void *d) {
    char cmd[400];
    if (d && snprintf(cmd, sizeof cmd, "rm -rf '%s'", (const char *)d) < (int)sizeof cmd && system(cmd) != 0)
        fprintf(stderr, "    could not remove %s\n", (const char *)d);
    free(d);
}

TEST(java_two_phones_converge_and_the_listener_sees_the_conflict) {
    srv_t s;
    ASSERT_MSG(srv_start(&s) == 0, "casesyncd did not start");
    ASSERT(std_user(&s, "off1") && std_user(&s, "off2"));
    char *dir = strdup("/tmp/casesync-java-XXXXXX");
    ASSERT(dir && mkdtemp(dir));
    h_keep(dir, rm_dir_cmd);
    const char *rel = getenv("CASESYNC_RELEASE_BIN");
    const char *lib = hfmt("%s/%s", CASESYNC_SRC_DIR, rel && *rel ? rel : "build");
    const char *cmd = hfmt("java -Xss1m -Djava.library.path='%s' -cp '%s/java/classes' org.casesync.TwoPhonesTest "
                           "'%s' '%s/a' '%s/b' '%s' '%s' '%s' '%s' 2>&1",
                           lib, lib, s.base, dir, dir, std_pass("off1"), std_pass("off2"), GRID1, iso_now(-60000));
    FILE *p = popen(cmd, "r");
    ASSERT(p);
    char out[8192];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0 && strstr(out, "OK two phones converged"),
               "the Java test failed (status %d):\n%s", st, out);
    printf("    %s", out);
}

/* The Java code docs/clients.md shows is the tested code, verbatim: the
 * lines between "// docs/clients.md: begin" and "end" in TwoPhonesTest.java
 * are the doc's ```java block. */
TEST(docs_java_snippet_is_the_tested_code) {
    const char *paths[2] = {CASESYNC_SRC_DIR "/docs/clients.md",
                            CASESYNC_SRC_DIR "/clients/java/test/org/casesync/TwoPhonesTest.java"};
    char *text[2];
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(paths[i], "rb");
        ASSERT_MSG(f, "cannot read %s", paths[i]);
        static char buf[2][1 << 17];
        size_t n = fread(buf[i], 1, sizeof buf[i] - 1, f);
        fclose(f);
        buf[i][n] = 0;
        text[i] = buf[i];
    }
    const char *b = strstr(text[0], "```java\n"), *e = b ? strstr(b + 8, "```") : NULL;
    ASSERT_MSG(b && e, "docs/clients.md has no ```java block");
    const char *doc = hfmt("%.*s", (int)(e - b - 8), b + 8);
    const char *sb = strstr(text[1], "// docs/clients.md: begin\n"), *se = sb ? strstr(sb, "            // docs/clients.md: end") : NULL;
    ASSERT_MSG(sb && se, "TwoPhonesTest.java has no docs/clients.md markers");
    sb += strlen("// docs/clients.md: begin\n");
    const char *code = hfmt("%.*s", (int)(se - sb), sb);
    ASSERT_MSG(strcmp(doc, code) == 0, "docs/clients.md's java block is not the tested code:\n--- doc\n%s--- code\n%s", doc,
               code);
    ASSERT_MSG(!strstr(text[0], "```kotlin"), "docs/clients.md shows Kotlin that no test compiles");
}

/* The C example of docs/clients.md compiles against casesync.h (in a
 * function, with stubs for the app's own helpers), warnings as errors. */
TEST(docs_c_snippet_compiles_against_the_header) {
    FILE *f = fopen(CASESYNC_SRC_DIR "/docs/clients.md", "rb");
    ASSERT(f);
    static char doc[1 << 17];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = 0;
    const char *b = strstr(doc, "```c\n"), *e = b ? strstr(b + 5, "```") : NULL;
    ASSERT_MSG(b && e, "docs/clients.md has no ```c block");
    char dir[] = "/tmp/casesync-doc-XXXXXX";
    ASSERT(mkdtemp(dir));
    const char *src = hfmt("%s/example.c", dir);
    FILE *o = fopen(src, "w");
    ASSERT(o);
    /* #include lines first, the rest inside a function. */
    for (const char *p = b + 5; p < e;) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(e - p);
        if (len > 8 && strncmp(p, "#include", 8) == 0) fprintf(o, "%.*s\n", (int)len, p);
        p += len + 1;
    }
    fputs("static void on_event(void *u, const casesync_event_t *ev) { (void)u; (void)ev; }\n"
          "static int on_progress(void *u, const casesync_progress_t *p) { (void)u; (void)p; return 0; }\n"
          "static void die(const char *m) { (void)m; }\n"
          "static void show_field_error(const char *f, const char *m) { (void)f; (void)m; }\n"
          "void example(void *app, const char *password, const char *device_id);\n"
          "void example(void *app, const char *password, const char *device_id) {\n",
          o);
    for (const char *p = b + 5; p < e;) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(e - p);
        if (!(len > 8 && strncmp(p, "#include", 8) == 0)) fprintf(o, "%.*s\n", (int)len, p);
        p += len + 1;
    }
    fputs("(void)rc;\n}\n", o);
    fclose(o);
    FILE *p = popen(hfmt("cc -std=c11 -fsyntax-only -Wall -Wextra -Werror -I'%s/clients/c' '%s' 2>&1", CASESYNC_SRC_DIR,
                         src),
                    "r");
    ASSERT(p);
    char out[4096];
    size_t m = fread(out, 1, sizeof out - 1, p);
    out[m] = 0;
    int st = pclose(p);
    unlink(src);
    rmdir(dir);
    ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the C example of docs/clients.md does not compile:\n%s", out);
}
