/* test_hardening.c -- the release binaries are built hardened (Makefile:
 * HARDEN_CFLAGS, HARDEN_LDFLAGS): PIE executables, full RELRO (GNU_RELRO and
 * BIND_NOW), stack canaries and fortified libc calls. Read back with
 * readelf from the binaries `make test` builds in $CASESYNC_RELEASE_BIN. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "tests/harness.h"
#include "tests/test.h"

#define READELF_OUT_MAX (8 << 20)

/* readelf's output for `opts path` (pool), or NULL when it did not run. */
static const char *readelf(const char *opts, const char *path) {
    FILE *p = popen(hfmt("readelf -W %s '%s' 2>&1", opts, path), "r");
    if (!p) return NULL;
    char *buf = h_keep(malloc(READELF_OUT_MAX), NULL);
    size_t n = buf ? fread(buf, 1, READELF_OUT_MAX - 1, p) : 0;
    int st = pclose(p);
    if (!buf || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return NULL;
    buf[n] = 0;
    return buf;
}

/* The line of text holding needle, or NULL. */
static const char *line_with(const char *text, const char *needle) {
    const char *p = text ? strstr(text, needle) : NULL;
    if (!p) return NULL;
    while (p > text && p[-1] != '\n')
        p--;
    const char *e = strchr(p, '\n');
    return hfmt("%.*s", (int)(e ? e - p : (long)strlen(p)), p);
}

/* Checks one release file; is_exe: an executable (PIE) rather than the .so. */
static int check_binary(const char *path, int is_exe) {
    const char *what = path;
    const char *h = readelf("-h", path), *d = readelf("-d", path), *l = readelf("-l", path);
    const char *sy = readelf("--dyn-syms", path);
    if (!h || !d || !l || !sy) {
        test_failf(__FILE__, __LINE__, "readelf could not read %s", what);
        return -1;
    }
    const char *type = line_with(h, "Type:");
    if (!type || !strstr(type, "DYN")) {
        test_failf(__FILE__, __LINE__, "%s: %s, expected DYN (position-independent)", what,
                   type ? type : "no Type");
        return -1;
    }
    if (!line_with(l, "GNU_RELRO")) {
        test_failf(__FILE__, __LINE__, "%s has no GNU_RELRO segment", what);
        return -1;
    }
    const char *flags = line_with(d, "(FLAGS)"), *flags1 = line_with(d, "(FLAGS_1)");
    int now = (flags && strstr(flags, "BIND_NOW")) || (flags1 && strstr(flags1, " NOW"));
    if (!now || !flags1 || !strstr(flags1, "NOW")) {
        test_failf(__FILE__, __LINE__, "%s binds lazily (FLAGS: %s; FLAGS_1: %s)", what,
                   flags ? flags : "none", flags1 ? flags1 : "none");
        return -1;
    }
    if (is_exe && !strstr(flags1, "PIE")) {
        test_failf(__FILE__, __LINE__, "%s is not a PIE executable (FLAGS_1: %s)", what, flags1);
        return -1;
    }
    if (!strstr(sy, "__stack_chk_fail")) {
        test_failf(__FILE__, __LINE__, "%s has no stack canaries (__stack_chk_fail not imported)", what);
        return -1;
    }
    /* Fortified calls: glibc's checking variants, __snprintf_chk, __memcpy_chk ... */
    const char *chk = NULL;
    for (const char *p = sy; !chk && (p = strstr(p, "_chk")) != NULL; p += 4) {
        const char *start = p;
        while (start > sy && start[-1] != ' ')
            start--;
        if (strncmp(start, "__", 2) == 0 && strncmp(start, "__stack_chk_fail", 16) != 0 &&
            (p[4] == '@' || p[4] == '\n'))
            chk = start;
    }
    if (!chk) {
        test_failf(__FILE__, __LINE__, "%s calls no fortified libc function (no __*_chk imported)", what);
        return -1;
    }
    return 0;
}

TEST(release_binaries_are_hardened) {
    const char *dir = getenv("CASESYNC_RELEASE_BIN");
    ASSERT_MSG(dir && *dir, "CASESYNC_RELEASE_BIN is not set: run the tests with make test, which builds the "
                            "release binaries");
    const char *exes[] = {"casesyncd", "casesync", "casesync-phone", "casesync-sim"};
    int checked = 0;
    for (size_t i = 0; i < sizeof exes / sizeof exes[0]; i++) {
        const char *path = hfmt("%s/%s", dir, exes[i]);
        struct stat st;
        /* The server and the command line are always built; the clients when their sources are there. */
        if (i >= 2 && stat(path, &st) != 0) continue;
        ASSERT_MSG(stat(path, &st) == 0, "%s is missing: make test builds it", path);
        if (check_binary(path, 1) != 0) return;
        checked++;
    }
    const char *so = hfmt("%s/libcasesync.so", dir);
    struct stat st;
    if (stat(so, &st) == 0) {
        if (check_binary(so, 0) != 0) return;
        checked++;
    }
    fprintf(stderr, "    %d release binaries: PIE, full RELRO, stack protector, fortified calls\n", checked);
}
