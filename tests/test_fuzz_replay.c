/* test_fuzz_replay.c -- replays every seed (tests/fuzz/corpus/<name>/) and
 * every crash reproducer (tests/fuzz/regressions/<name>/) through the fuzz
 * targets, built here with gcc and ASan+UBSan, so a crash found by `make fuzz`
 * stays fixed. A target aborts on a broken contract, which fails the test. */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"
#include "tests/test.h"

#ifndef CASESYNC_FUZZ_DIR
#define CASESYNC_FUZZ_DIR "tests/fuzz"
#endif

/* The targets, each compiled with -DLLVMFuzzerTestOneInput=fuzz_<name>. */
int fuzz_changeset(const uint8_t *data, size_t size);
int fuzz_cursor(const uint8_t *data, size_t size);
int fuzz_gzip(const uint8_t *data, size_t size);
int fuzz_headers(const uint8_t *data, size_t size);
int fuzz_hotline_csv(const uint8_t *data, size_t size);
int fuzz_jsonscan(const uint8_t *data, size_t size);
int fuzz_query(const uint8_t *data, size_t size);
int fuzz_schema(const uint8_t *data, size_t size);
int fuzz_tus(const uint8_t *data, size_t size);

typedef int (*fuzz_fn)(const uint8_t *, size_t);

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of dir (in name order) through fn. Returns the
 * number of files run, 0 when the folder is missing, -1 on a read error. */
static int replay_dir(const char *dir, fuzz_fn fn) {
    DIR *d = opendir(dir);
    char *names[1024];
    int n = 0, run = 0;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d)) && n < 1024;)
        if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], by_name);
    for (int i = 0; i < n; i++) {
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        free(names[i]);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        FILE *f = fopen(path, "rb");
        uint8_t *buf = malloc((size_t)st.st_size + 1);
        size_t got = f && buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
        if (f) fclose(f);
        if (got != (size_t)st.st_size) {
            free(buf);
            run = -1;
            continue;
        }
        /* libFuzzer hands over a buffer of exactly the input's size. */
        uint8_t *exact = malloc(got ? got : 1);
        memcpy(exact, buf, got);
        free(buf);
        fn(exact, got);
        free(exact);
        if (run >= 0) run++;
    }
    return run;
}

/* Seeds must exist (a replay of nothing proves nothing); reproducers may not. */
static int replay(const char *name, fuzz_fn fn) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/corpus/%s", CASESYNC_FUZZ_DIR, name);
    int seeds = replay_dir(dir, fn);
    snprintf(dir, sizeof dir, "%s/regressions/%s", CASESYNC_FUZZ_DIR, name);
    int crashes = replay_dir(dir, fn);
    fuzz_engine_close();
    if (seeds <= 0 || crashes < 0) {
        fprintf(stderr, "    %s: %d seeds, %d reproducers replayed\n", name, seeds, crashes);
        return -1;
    }
    return seeds + crashes;
}

TEST(fuzz_replay_changeset) {
    ASSERT(replay("changeset", fuzz_changeset) > 0);
}
TEST(fuzz_replay_cursor) {
    ASSERT(replay("cursor", fuzz_cursor) > 0);
}
TEST(fuzz_replay_gzip) {
    ASSERT(replay("gzip", fuzz_gzip) > 0);
}
TEST(fuzz_replay_headers) {
    ASSERT(replay("headers", fuzz_headers) > 0);
}
TEST(fuzz_replay_hotline_csv) {
    ASSERT(replay("hotline_csv", fuzz_hotline_csv) > 0);
}
TEST(fuzz_replay_jsonscan) {
    ASSERT(replay("jsonscan", fuzz_jsonscan) > 0);
}
TEST(fuzz_replay_query) {
    ASSERT(replay("query", fuzz_query) > 0);
}
TEST(fuzz_replay_schema) {
    ASSERT(replay("schema", fuzz_schema) > 0);
}
TEST(fuzz_replay_tus) {
    ASSERT(replay("tus", fuzz_tus) > 0);
}
