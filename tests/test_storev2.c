/* test_storev2.c -- store format v2: the RFC 8785 canonicalizer (sync/jcs.c)
 * as a pure function, the independent Python verifier agreeing with
 * `casesync verify` (also on a tampered store), the format stamp in meta, and
 * `casesync migrate` of a v1 store written the way earlier releases did. */
#include <lmdb.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sync/jcs.h"
#include "sync/valcodec.h"
#include "sync/sync.h"
#include "tests/harness.h"
#include "tests/test.h"

#ifndef CASESYNC_SRC_DIR
#define CASESYNC_SRC_DIR "."
#endif
#define VERIFIER CASESYNC_SRC_DIR "/tools/verify_audit.py"
#define RANDOM_NUMBERS 300

#define START(s) ASSERT(srv_start(&(s)) == 0)
#define PHONE(p, s, name, dev) ASSERT(std_phone(&(p), &(s), (name), (dev)) == 0)

/* ---- helpers ----------------------------------------------------------------------- */

/* Runs a shell command; its standard output (pool) and exit code. */
static char *run(const char *cmd, int *code) {
    FILE *f = popen(cmd, "r");
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    *code = -1;
    if (!f || !out) {
        if (f) pclose(f);
        free(out);
        return hfmt("%s", "");
    }
    for (size_t k; (k = fread(out + n, 1, cap - 1 - n, f)) > 0;) {
        n += k;
        if (n == cap - 1) {
            char *p = realloc(out, cap * 2);
            if (!p) break;
            out = p, cap *= 2;
        }
    }
    out[n] = 0;
    int st = pclose(f);
    *code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return h_keep(out, NULL);
}

static const char *write_temp(const char *text) {
    char *path = hfmt("/tmp/casesync-storev2-%d-XXXXXX", (int)getpid());
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    size_t n = strlen(text);
    int ok = write(fd, text, n) == (ssize_t)n;
    close(fd);
    return ok ? path : NULL;
}

static char *canonical_c(const char *json) {
    cJSON *v = jparse(json);
    char *out = NULL;
    size_t n = 0;
    if (!v || jcs_print(v, &out, &n) != JCS_OK) return NULL;
    return h_keep(out, NULL);
}

/* The Python verifier on `casesync export --audit` of dir: its JSON answer, exit code in *code. */
static cJSON *python_verify(const char *dir, int *code) {
    cli_res_t e = cli(dir, NULL, "export", "--audit");
    *code = -1;
    if (e.rc != 0) {
        fprintf(stderr, "    export --audit exited %d: %s\n", e.rc, e.err);
        return NULL;
    }
    const char *f = write_temp(e.out);
    if (!f) return NULL;
    char *out = run(hfmt("python3 %s %s", VERIFIER, f), code);
    unlink(f);
    return jparse(out);
}

/* Opens the store's LMDB file directly (the server stopped) to play the
 * attacker or an earlier release. */
static int lmdb_edit(const char *dir, MDB_env **env, MDB_txn **txn) {
    if (mdb_env_create(env) != 0) return -1;
    mdb_env_set_maxdbs(*env, 64);
    if (mdb_env_open(*env, dir, 0, 0600) != 0 || mdb_txn_begin(*env, NULL, 0, txn) != 0) {
        mdb_env_close(*env);
        return -1;
    }
    return 0;
}

/* Rewrites the audit entry at seq: the first `from` in it becomes `to`
 * (same length). 0, or -1 when there is no such entry or text. */
static int tamper(const char *dir, uint64_t seq, const char *from, const char *to) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi log;
    unsigned char k[8];
    for (int i = 0; i < 8; i++)
        k[i] = (unsigned char)(seq >> (56 - 8 * i));
    MDB_val key = {8, k}, v;
    if (lmdb_edit(dir, &env, &txn) != 0) return -1;
    int rc = -1;
    if (mdb_dbi_open(txn, "log", 0, &log) == 0 && mdb_get(txn, log, &key, &v) == 0) {
        char *copy = h_keep(malloc(v.mv_size + 1), NULL);
        memcpy(copy, v.mv_data, v.mv_size);
        copy[v.mv_size] = 0;
        char *at = strstr(copy, from);
        if (at && strlen(from) == strlen(to)) {
            memcpy(at, to, strlen(to));
            MDB_val nv = {v.mv_size, copy};
            rc = mdb_put(txn, log, &key, &nv, 0) == 0 ? 0 : -1;
        }
    }
    if (rc == 0 && mdb_txn_commit(txn) != 0) rc = -1;
    if (rc != 0) mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc;
}

/* Counts the values of a db by their form: JSON text or binary. */
static int value_forms(const char *dir, const char *db, int *json, int *binary) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi recs;
    MDB_cursor *cur;
    MDB_val k, v;
    *json = *binary = 0;
    if (lmdb_edit(dir, &env, &txn) != 0) return -1;
    int rc = mdb_dbi_open(txn, db, 0, &recs) == 0 && mdb_cursor_open(txn, recs, &cur) == 0 ? 0 : -1;
    for (int g = rc ? 1 : mdb_cursor_get(cur, &k, &v, MDB_FIRST); g == 0; g = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size && ((const char *)v.mv_data)[0] == '{')
            (*json)++;
        else
            (*binary)++;
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc;
}

/* Sets a BE64 meta value (an earlier or a later release's stamp). */
static int meta_put(const char *dir, const char *name, uint64_t value) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta;
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(value >> (56 - 8 * i));
    MDB_val k = {strlen(name), (void *)name}, v = {8, b};
    if (lmdb_edit(dir, &env, &txn) != 0) return -1;
    int rc = mdb_dbi_open(txn, "meta", 0, &meta) == 0 && mdb_put(txn, meta, &k, &v, 0) == 0 &&
                     mdb_txn_commit(txn) == 0
                 ? 0
                 : -1;
    if (rc) mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc;
}

/* casesyncd on dir, which must refuse to start: its output (pool). */
static char *server_refusal(const char *dir, int *code) {
    const char *bin = getenv("CASESYNC_BIN");
    return run(hfmt("timeout 20 %s/casesyncd --data %s --listen 127.0.0.1:0 2>&1", bin ? bin : "build", dir),
               code);
}

/* ---- 0. the record's binary form ---------------------------------------------------- */

/* A record reads back equal, key order kept, from its binary form; JSON text
 * (a v1 record) still reads; anything else is refused, never half-read. */
TEST(valcodec_round_trips_and_refuses_what_is_not_a_record) {
    const char *text =
        "{\"id\":\"01JDREC\",\"version\":3,\"seq\":9007199254740992,\"neg\":-42,\"big\":1e300,"
        "\"frac\":0.1,\"tiny\":-5e-324,\"voided\":false,\"ok\":true,\"none\":null,"
        "\"fields\":{\"description\":\"占道经营 \\u00e9 \\ud83d\\ude00\",\"fine_amount\":200.5,"
        "\"evidence\":[{\"id\":\"ev-1\",\"size\":4}],\"empty\":{},\"list\":[]},"
        "\"fm\":{\"status\":[2,17,\"dev-A\",1733200000000]},\"z\":1,\"a\":2}";
    cJSON *rec = h_keep(cJSON_Parse(text), (void (*)(void *))cJSON_Delete);
    ASSERT(rec != NULL);
    size_t len = 0;
    void *bin = h_keep(valcodec_encode(rec, &len), NULL);
    ASSERT(bin != NULL && len > 0);
    ASSERT(valcodec_is_binary(bin, len));
    ASSERT_MSG(len < strlen(text), "binary %zu bytes, JSON %zu", len, strlen(text));
    cJSON *back = h_keep(valcodec_decode(bin, len), (void (*)(void *))cJSON_Delete);
    ASSERT(back != NULL);
    ASSERT(cJSON_Compare(rec, back, 1));
    /* key order is kept: the printed forms are equal byte for byte */
    char *p1 = h_keep(cJSON_PrintUnformatted(rec), NULL), *p2 = h_keep(cJSON_PrintUnformatted(back), NULL);
    ASSERT_STR(p2, p1);
    /* JSON text reads as before */
    cJSON *old = h_keep(valcodec_decode(text, strlen(text)), (void (*)(void *))cJSON_Delete);
    ASSERT(old && cJSON_Compare(rec, old, 1));
    /* truncated, trailing bytes, not a map, empty: refused */
    for (size_t cut = 1; cut < len; cut += 7)
        ASSERT_MSG(valcodec_decode(bin, cut) == NULL, "a record cut at %zu bytes decoded", cut);
    unsigned char *longer = h_keep(malloc(len + 1), NULL);
    memcpy(longer, bin, len);
    longer[len] = 0xc0;
    ASSERT(valcodec_decode(longer, len + 1) == NULL);
    const unsigned char arr[] = {0x91, 0x01}, bin8[] = {0x81, 0xa1, 'k', 0xc4, 0x01, 0x00};
    ASSERT(valcodec_decode(arr, sizeof arr) == NULL);
    ASSERT(valcodec_decode(bin8, sizeof bin8) == NULL);
    ASSERT(valcodec_decode(bin, 0) == NULL);
    /* only objects are records */
    cJSON *num = h_keep(cJSON_CreateNumber(1), (void (*)(void *))cJSON_Delete);
    ASSERT(valcodec_encode(num, &len) == NULL);
}

/* ---- 1. the canonicalizer ------------------------------------------------------------ */

TEST(jcs_numbers_print_as_ecmascript) {
    static const struct {
        double d;
        const char *want;
    } cases[] = {
        {0.0, "0"},
        {-0.0, "0"},
        {1, "1"},
        {-1, "-1"},
        {0.1, "0.1"},
        {4.5, "4.5"},
        {0.002, "0.002"},
        {1e21, "1e+21"},
        {1e20, "100000000000000000000"},
        {1e30, "1e+30"},
        {1e-6, "0.000001"},
        {1e-7, "1e-7"},
        {1e-27, "1e-27"},
        {-1.5e-9, "-1.5e-9"},
        {333333333.33333329, "333333333.3333333"},
        {9007199254740993.0, "9007199254740992"},       /* beyond 2^53: the double it parses to */
        {1152921504606846976.0, "1152921504606847000"}, /* 2^60: shortest digits, then zeros */
        {123456789012345678901234567890.0, "1.2345678901234568e+29"},
        {5e-324, "5e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {295147905179352830000.0, "295147905179352830000"},
        {0.000001234, "0.000001234"},
        {1e-310, "1e-310"}, /* subnormal */
        {2.5e-320, "2.5e-320"},
    };
    char out[JCS_NUMBER_MAX];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ASSERT_MSG(jcs_number(cases[i].d, out) == strlen(cases[i].want), "%.17g -> %s, expected %s",
                   cases[i].d, out, cases[i].want);
        ASSERT_STR(out, cases[i].want);
    }
    /* RFC 8785 Appendix B: IEEE-754 bits -> text. */
    static const struct {
        uint64_t bits;
        const char *want;
    } rfc[] = {
        {0x0000000000000000ull, "0"},
        {0x8000000000000000ull, "0"},
        {0x0000000000000001ull, "5e-324"},
        {0x8000000000000001ull, "-5e-324"},
        {0x7fefffffffffffffull, "1.7976931348623157e+308"},
        {0xffefffffffffffffull, "-1.7976931348623157e+308"},
        {0x4340000000000000ull, "9007199254740992"},
        {0xc340000000000000ull, "-9007199254740992"},
        {0x4430000000000000ull, "295147905179352830000"},
        {0x44b52d02c7e14af5ull, "9.999999999999997e+22"},
        {0x44b52d02c7e14af6ull, "1e+23"},
        {0x44b52d02c7e14af7ull, "1.0000000000000001e+23"},
        {0x444b1ae4d6e2ef4eull, "999999999999999700000"},
        {0x444b1ae4d6e2ef4full, "999999999999999900000"},
        {0x444b1ae4d6e2ef50ull, "1e+21"},
        {0x3eb0c6f7a0b5ed8cull, "9.999999999999997e-7"},
        {0x3eb0c6f7a0b5ed8dull, "0.000001"},
        {0x41b3de4355555553ull, "333333333.3333332"},
        {0x41b3de4355555554ull, "333333333.33333325"},
        {0x41b3de4355555555ull, "333333333.3333333"},
        {0x41b3de4355555556ull, "333333333.3333334"},
        {0x41b3de4355555557ull, "333333333.33333343"},
        {0xbecbf647612f3696ull, "-0.0000033333333333333333"},
        {0x43143ff3c1cb0959ull, "1424953923781206.2"},
        {0x43f0000000000000ull, "18446744073709552000"}, /* 2^64 */
    };
    for (size_t i = 0; i < sizeof rfc / sizeof rfc[0]; i++) {
        double d;
        memcpy(&d, &rfc[i].bits, 8);
        jcs_number(d, out);
        ASSERT_MSG(strcmp(out, rfc[i].want) == 0, "%016llx -> %s, expected %s",
                   (unsigned long long)rfc[i].bits, out, rfc[i].want);
    }
    ASSERT_INT(jcs_number(NAN, out), 0);
    ASSERT_INT(jcs_number(INFINITY, out), 0);
    cJSON *inf = cJSON_CreateNumber(INFINITY);
    char *text = (char *)"x";
    size_t n = 1;
    ASSERT_INT(jcs_print(inf, &text, &n), JCS_ENOTFINITE);
    ASSERT(text == NULL && n == 0);
    cJSON_Delete(inf);
}

/* RFC 8785's own examples (§3.2.2, §3.2.3), duplicates, nesting, escapes. */
TEST(jcs_sorts_by_utf16_and_escapes_minimally) {
    ASSERT_STR(
        canonical_c("{\"numbers\": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],"
                    " \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\","
                    " \"literals\": [null, true, false]}"),
        "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],"
        "\"string\":\"\xe2\x82\xac$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}");
    ASSERT_STR(
        canonical_c("{\"\\u20ac\":\"Euro Sign\",\"\\r\":\"Carriage Return\",\"\\ufb33\":\"Hebrew\","
                    "\"1\":\"One\",\"\\ud83d\\ude00\":\"Emoji\",\"\\u0080\":\"Control\",\"\\u00f6\":\"o\"}"),
        "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xc2\x80\":\"Control\",\"\xc3\xb6\":\"o\","
        "\"\xe2\x82\xac\":\"Euro Sign\",\"\xf0\x9f\x98\x80\":\"Emoji\",\"\xef\xac\xb3\":\"Hebrew\"}");
    /* U+1F600 (surrogates D83D DE00) sorts before U+FB33 by UTF-16, after it by code point. */
    ASSERT(jcs_key_cmp("\xf0\x9f\x98\x80", "\xef\xac\xb3") < 0);
    ASSERT(jcs_key_cmp("a", "ab") < 0 && jcs_key_cmp("ab", "a") > 0 && jcs_key_cmp("", "") == 0);
    ASSERT_STR(canonical_c("{\"b\":2,\"a\":1,\"b\":1}"), "{\"a\":1,\"b\":2,\"b\":1}");
    ASSERT_STR(canonical_c("{\"z\":{\"y\":[],\"x\":{}},\"\xe6\xa1\x88\":\"\xe4\xbb\xb6\\t\\u001f\\u007f\"}"),
               "{\"z\":{\"x\":{},\"y\":[]},\"\xe6\xa1\x88\":\"\xe4\xbb\xb6\\t\\u001f\x7f\"}");
    ASSERT_STR(canonical_c("[-0, 1.0, 100, 1e2, 12345678901234567890]"),
               "[0,1,100,100,12345678901234567000]");
    /* Idempotent: canonical text parses back to the same canonical text. */
    const char *c =
        canonical_c("{\"\xe5\x9c\xb0\xe7\x82\xb9\":{\"lat\":39.9042,\"lng\":116.4074},\"n\":[0.1,2e-7]}");
    ASSERT(c != NULL);
    ASSERT_STR(canonical_c(c), c);
}

/* The C canonicalizer and the Python verifier's agree byte for byte, on
 * the RFC vectors and on a few hundred doubles from all over the range. */
TEST(jcs_c_and_python_agree) {
    char *lines = hfmt("%s", "");
    const char *fixed[] = {
        "{\"numbers\":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001,-0,1e21,1e-7,1e-310,2."
        "5e-320,4.9e-322,2.2250738585072014e-308]}",
        "{\"\\u20ac\":1,\"\\r\":2,\"\\ufb33\":3,\"1\":4,\"\\ud83d\\ude00\":5,\"\\u0080\":6,\"\\u00f6\":7,"
        "\"b\":1,\"b\":0}",
        "{\"s\":\"\\u0001\\b\\f\\n\\r\\t\\\"\\\\/\xe6\xa1\x88\\u2028\",\"t\":[true,false,null,{},[]]}",
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        lines = hfmt("%s%s\n", lines, fixed[i]);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    char *arr = hfmt("%s", "[");
    for (int i = 0; i < RANDOM_NUMBERS; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double d;
        uint64_t bits = x;
        memcpy(&d, &bits, 8);
        if (!isfinite(d)) continue;
        if (i % 3 == 1) d = (double)(int64_t)(x >> (i % 40)); /* integers of every size */
        if (i % 3 == 2) d = (double)(x % 100000) / 1000.0;    /* money-like decimals */
        arr = hfmt("%s%s%.17g", arr, arr[1] ? "," : "", d);
    }
    lines = hfmt("%s%s]\n", lines, arr);
    char *want = hfmt("%s", "");
    for (char *l = lines, *nl; (nl = strchr(l, '\n')); l = nl + 1) {
        *nl = 0;
        const char *c = canonical_c(l);
        ASSERT_MSG(c != NULL, "C could not canonicalize %s", l);
        want = hfmt("%s%s\n", want, c);
        *nl = '\n';
    }
    const char *f = write_temp(lines);
    ASSERT(f != NULL);
    int code;
    char *got = run(hfmt("python3 %s --canonical %s", VERIFIER, f), &code);
    unlink(f);
    ASSERT_INT(code, 0);
    ASSERT_STR(got, want);
}

/* ---- 2. the independent verifier ------------------------------------------------------ */

/* Some history: creates with numbers and Chinese text, edits, a transition,
 * a conflict and a rejection. */
static int make_history(srv_t *s, phone_t *a, phone_t *b, phone_t *aux) {
    const char *r1 = "01JDSTOREV2000001", *r2 = "01JDSTOREV2000002";
    resp_t r =
        phone_push(a, changes(ch_create(r1, "general",
                                        "{\"description\":\"\xe5\x8d\xa0\xe9\x81\x93\xe7\xbb\x8f\xe8\x90\xa5 "
                                        "\\\"quoted\\\" \\u0001\",\"location\":{\"lat\":39.9042,"
                                        "\"lon\":116.4074,\"accuracy_m\":0.1}}"),
                              ch_create(r2, "simple", NULL)));
    if (r.status != 200) return -1;
    r = phone_push(a, changes(ch_update(r1, 1, "{\"description\":\"edited by a\"}", NULL)));
    if (r.status != 200) return -1;
    r = phone_push(b, changes(ch_update(r1, 1, "{\"description\":\"edited by b\"}", NULL))); /* a conflict */
    if (r.status != 200) return -1;
    r = phone_push(aux, changes(ch_transition(r2, 1, "decided"))); /* rejected: an auxiliary */
    if (r.status != 200) return -1;
    r = phone_push(
        a, changes(ch_update(r2, 1, NULL, "{\"notes\":[{\"id\":\"n-1\",\"text\":\"1e21 0.1 -0\"}]}")));
    return r.status == 200 ? 0 : -1;
}

TEST(audit_export_python_verifier_agrees_and_finds_the_tampered_entry) {
    srv_t s;
    START(s);
    phone_t a, b, aux;
    PHONE(a, s, "off1", "dev-A");
    PHONE(b, s, "off2", "dev-B");
    PHONE(aux, s, "aux1", "dev-X");
    ASSERT(make_history(&s, &a, &b, &aux) == 0);
    ASSERT_INT(srv_stop(&s), 0);

    cli_res_t v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "verify exited %d: %s %s", v.rc, v.out, v.err);
    cJSON *c = jparse(v.out);
    int code;
    cJSON *py = python_verify(s.dir, &code);
    ASSERT_MSG(py && code == 0, "the Python verifier said %s (exit %d)", jprint(py), code);
    ASSERT_MSG(jint(c, "entries") >= 4, "verify: %s", v.out);
    ASSERT_JINT(py, "entries", jint(c, "entries"));
    ASSERT_JSTR(py, "head", jstr(c, "head"));

    /* Every exported line is an entry whose bytes are canonical JSON plus "hash". */
    cli_res_t e = cli(s.dir, NULL, "export", "--audit");
    ASSERT_INT(e.rc, 0);
    ASSERT(strncmp(e.out, "{\"at\":", 6) == 0);

    /* One changed byte in entry 3: both verifiers stop there. */
    ASSERT(tamper(s.dir, 3, "\"received_at\":\"2", "\"received_at\":\"1") == 0);
    v = cli(s.dir, NULL, "verify");
    ASSERT_INT(v.rc, 1);
    ASSERT_JSTR(jparse(v.out), "problem", "entry seq 3 does not verify");
    py = python_verify(s.dir, &code);
    ASSERT_INT(code, 1);
    ASSERT_JSTR(py, "problem", "entry seq 3 does not verify");
    ASSERT_JINT(py, "entries", 3);
}

/* export --audit is the only export that takes no --format or --unit; other
 * commands refuse --audit. */
TEST(audit_export_usage) {
    srv_t s;
    START(s);
    ASSERT_INT(srv_stop(&s), 0);
    cli_res_t r = cli(s.dir, NULL, "export", "--audit", "--format", "csv");
    ASSERT_INT(r.rc, 2);
    r = cli(s.dir, NULL, "verify", "--audit");
    ASSERT_INT(r.rc, 2);
    r = cli(s.dir, NULL, "export", "--audit");
    ASSERT_INT(r.rc, 0);
    ASSERT_STR(r.out, "");
}

/* ---- 3. store format and migration ---------------------------------------------------- */

/* A format 1 store, as earlier releases wrote it: records in several states,
 * a conflict, a rejection, a void and listed evidence. Leaves the server
 * stopped and CASESYNC_TEST_STORE_V1 unset; 0 or -1. */
static int make_v1_store(srv_t *s, phone_t *a, phone_t *b, phone_t *aux, phone_t *sup) {
    setenv("CASESYNC_TEST_STORE_V1", "1", 1);
    int rc = srv_start(s);
    if (rc == 0)
        rc = std_phone(a, s, "off1", "dev-A") | std_phone(b, s, "off2", "dev-B") |
             std_phone(aux, s, "aux1", "dev-X") | std_phone(sup, s, "sup1", "dev-S");
    if (rc == 0) rc = make_history(s, a, b, aux);
    const char *sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    resp_t r = {0};
    if (rc == 0) {
        r = phone_push(
            a, changes(ch_create("01JDSTOREV2000003", "digital",
                                 hfmt("{\"evidence\":[{\"id\":\"ev-1\",\"sha256\":\"%s\",\"size\":4,"
                                      "\"mime\":\"image/jpeg\",\"kind\":\"photo\",\"captured_at\":\"%s\"}]}",
                                      sha, iso_now(-60000))),
                       ch_create("01JDSTOREV2000004", "general", NULL)));
        rc = r.status == 200 && jstr(resp_json(&r), "results[0].status") &&
                     strcmp(jstr(r.json, "results[0].status"), "applied") == 0
                 ? 0
                 : -1;
    }
    if (rc == 0) {
        r = phone_push(sup, changes(ch_transition("01JDSTOREV2000004", 1, "filed"),
                                    ch_void("01JDSTOREV2000002", 2, "duplicate")));
        rc = r.status == 200 ? 0 : -1;
    }
    if (rc == 0) rc = phone_pull_all(a) ? 0 : -1; /* a cursor of the old store */
    if (rc != 0) fprintf(stderr, "    making the v1 store failed: %ld %s\n", r.status, r.body ? r.body : "");
    if (srv_stop(s) != 0) rc = -1;
    unsetenv("CASESYNC_TEST_STORE_V1");
    return rc;
}

TEST(store_v1_is_refused_then_migrated_and_both_chains_verify) {
    srv_t s;
    phone_t a, b, aux, sup;
    ASSERT(make_v1_store(&s, &a, &b, &aux, &sup) == 0);
    const char *cursor = a.cursor;
    ASSERT(cursor != NULL);

    /* The v1 chain verifies the v1 way; the independent verifier wants v2. */
    cli_res_t v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "verify of the v1 store exited %d: %s %s", v.rc, v.out, v.err);
    long long v1_entries = jint(jparse(v.out), "entries");
    const char *v1_head = h_keep(strdup(jstr(jparse(v.out), "head")), NULL);
    ASSERT(v1_entries >= 6);
    cli_res_t e = cli(s.dir, NULL, "export", "--audit");
    ASSERT_INT(e.rc, 1);
    ASSERT_MSG(strstr(e.err, "migrate") != NULL, "export --audit of a v1 store: %s", e.err);

    /* The server refuses it and says what to run; so does a writing command. */
    int code;
    char *out = server_refusal(s.dir, &code);
    ASSERT_MSG(code != 0 && strstr(out, "format v1") &&
                   strstr(out, hfmt("casesync --data %s migrate", s.dir)),
               "casesyncd on a v1 store exited %d: %s", code, out);
    cli_res_t u =
        cli(s.dir, "pw-long-enough-1\n", "user", "add", "newbie", "--role", "officer", "--unit", "U1");
    ASSERT_MSG(u.rc == 1 && strstr(u.err, "migrate"), "user add on a v1 store exited %d: %s", u.rc, u.err);

    /* The previous release stored values as JSON text; migrate rewrites them in binary. */
    static const char *const dbs[] = {"records", "users", "devices", "changesets", "evidence"};
    int json = 0, binary = 0;
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        ASSERT(value_forms(s.dir, dbs[i], &json, &binary) == 0);
        ASSERT_MSG(json >= 1 && binary == 0, "a v1 store's %s: %d JSON and %d binary", dbs[i], json, binary);
    }
    cli_res_t m = cli(s.dir, NULL, "migrate");
    ASSERT_MSG(m.rc == 0 && strstr(m.out, "store format v2"), "migrate exited %d: %s %s", m.rc, m.out, m.err);
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        ASSERT(value_forms(s.dir, dbs[i], &json, &binary) == 0);
        ASSERT_MSG(json == 0 && binary >= 1, "after migrate, %s: %d JSON and %d binary", dbs[i], json, binary);
    }
    v = cli(s.dir, NULL, "verify", "--deep");
    ASSERT_MSG(v.rc == 0, "verify --deep after migrate exited %d: %s %s", v.rc, v.out, v.err);
    cJSON *c = jparse(v.out);
    ASSERT_JINT(c, "entries", v1_entries + 1);
    cJSON *py = python_verify(s.dir, &code);
    ASSERT_MSG(py && code == 0, "the Python verifier after migrate: %s (exit %d)", jprint(py), code);
    ASSERT_JSTR(py, "head", jstr(c, "head"));
    /* The canonical chain starts on the old head, recorded in the marker. */
    e = cli(s.dir, NULL, "export", "--audit");
    ASSERT_INT(e.rc, 0);
    char *last = strrchr(e.out, '{');
    while (last && last > e.out && last[-1] != '\n')
        last = memrchr(e.out, '{', (size_t)(last - e.out));
    cJSON *marker = jparse(last);
    ASSERT_JSTR(marker, "op", "store_format");
    ASSERT_JSTR(marker, "v1_head", v1_head);
    ASSERT_JSTR(marker, "prev_hash", v1_head);
    ASSERT_JINT(marker, "v1_entries", v1_entries);
    /* A second run has nothing to do. */
    m = cli(s.dir, NULL, "migrate");
    ASSERT_INT(m.rc, 0);
    ASSERT_JINT(jparse(cli(s.dir, NULL, "verify").out), "entries", v1_entries + 1);

    /* The server starts; the phone syncs on from its old cursor and pushes. */
    ASSERT(srv_restart(&s) == 0);
    resp_t r = phone_pull(&a, 0, 0);
    ASSERT_MSG(r.status == 200 || r.status == 410, "pull with the v1 cursor -> %ld %s", r.status, r.body);
    ASSERT(phone_pull_all(&a) != NULL);
    r = phone_push(
        &a, changes(ch_update("01JDSTOREV2000001", 3, "{\"description\":\"after the migration\"}", NULL)));
    ASSERT_STATUS(r, 200);
    ASSERT_JSTR(resp_json(&r), "results[0].status", "applied");
    r = phone_get(&sup, "/v1/cases/01JDSTOREV2000001/history");
    ASSERT_STATUS(r, 200);
    ASSERT_INT(srv_stop(&s), 0);
    v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 0, "verify after a push exited %d: %s", v.rc, v.out);
    ASSERT_JINT(jparse(v.out), "entries", v1_entries + 2);
    py = python_verify(s.dir, &code);
    ASSERT_MSG(py && code == 0, "the Python verifier after a push: %s", jprint(py));
    ASSERT_JSTR(py, "head", jstr(jparse(v.out), "head"));

    /* A v1 entry changed after the migration: both verifiers name it. */
    ASSERT(tamper(s.dir, 2, "\"received_at\":\"2", "\"received_at\":\"1") == 0);
    v = cli(s.dir, NULL, "verify");
    ASSERT_INT(v.rc, 1);
    ASSERT_JSTR(jparse(v.out), "problem", "entry seq 2 does not verify");
    py = python_verify(s.dir, &code);
    ASSERT_INT(code, 1);
    ASSERT_JSTR(py, "problem", "entry seq 2 does not verify");
}

/* migrate checks the old chain first and moves nothing when it is broken. */
TEST(store_v1_with_a_broken_chain_is_not_migrated) {
    srv_t s;
    phone_t a, b, aux, sup;
    ASSERT(make_v1_store(&s, &a, &b, &aux, &sup) == 0);
    ASSERT(tamper(s.dir, 3, "\"received_at\":\"2", "\"received_at\":\"1") == 0);
    cli_res_t m = cli(s.dir, NULL, "migrate");
    ASSERT_MSG(m.rc == 1 && strstr(m.err, "entry seq 3 does not verify"), "migrate exited %d: %s %s", m.rc,
               m.out, m.err);
    int code;
    char *out = server_refusal(s.dir, &code);
    ASSERT_MSG(code != 0 && strstr(out, "format v1"), "casesyncd after a refused migration: %s", out);
}

/* A store of a format this release does not know is refused by every command. */
TEST(store_of_a_newer_format_is_refused) {
    srv_t s;
    START(s);
    ASSERT_INT(srv_stop(&s), 0);
    ASSERT(meta_put(s.dir, "store_format", SYNC_STORE_FORMAT + 1) == 0);
    int code;
    char *out = server_refusal(s.dir, &code);
    ASSERT_MSG(code != 0 && strstr(out, "format v3, newer"), "casesyncd on a v3 store exited %d: %s", code,
               out);
    cli_res_t v = cli(s.dir, NULL, "verify");
    ASSERT_MSG(v.rc == 1 && strstr(v.err, "format v3"), "verify of a v3 store exited %d: %s", v.rc, v.err);
    ASSERT(meta_put(s.dir, "store_format", SYNC_STORE_FORMAT) == 0);
    ASSERT(srv_restart(&s) == 0);
}
