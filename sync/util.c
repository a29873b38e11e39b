/* util.c -- time, crypto and JSON helpers shared by the modules of sync/. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "sync/engine.h"
#include "sync/fault.h"

int64_t util_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *util_fmt_time(int64_t ms, char *buf) {
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, 24, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 32 - n, ".%03dZ", frac);
    return buf;
}

/* Reads exactly n digits. */

int util_parse_time(const char *s, int64_t *ms) { return schema_parse_time(s, ms); }

void util_hex(const unsigned char *bytes, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = 0;
}

void util_sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    util_hex(md, 32, out);
}

int util_random_hex(size_t n, char *out) {
    unsigned char buf[64];
    if (n > sizeof buf || RAND_bytes(buf, (int)n) != 1) return -1;
    util_hex(buf, n, out);
    return 0;
}

char *util_json_print(const cJSON *v) { return cJSON_PrintUnformatted(v); }

/* ---- cJSON's allocations, counted ---------------------------------------------
 *
 * cJSON's builders (cJSON_AddStringToObject ...) report a failed allocation
 * only by a NULL that is easy to drop, and a record printed after a dropped
 * member is stored without it. Every cJSON allocation goes through json_alloc,
 * which counts failures per thread; the writer compares the count before and
 * after each job and discards a job during which one failed (store.c). */

static __thread uint64_t json_failures;
static pthread_once_t json_hooks_once = PTHREAD_ONCE_INIT;

static void *json_alloc(size_t n) {
    void *p = fault_alloc_check() ? NULL : malloc(n);
    if (!p) json_failures++;
    return p;
}

static void json_hooks_set(void) {
    cJSON_Hooks h = {.malloc_fn = json_alloc, .free_fn = free};
    cJSON_InitHooks(&h);
}

void util_json_hooks(void) { pthread_once(&json_hooks_once, json_hooks_set); }

uint64_t util_json_failures(void) { return json_failures; }

int util_json_push(cJSON *arr, cJSON *v) {
    if (!v) return -1;
    if (!arr || !cJSON_AddItemToArray(arr, v)) {
        cJSON_Delete(v);
        return -1;
    }
    return 0;
}

int util_json_add_ref(cJSON *o, const char *key, const cJSON *v) {
    /* What cJSON_AddItemReferenceToObject makes, without leaking the
     * reference when the key cannot be copied. */
    cJSON *ref = v ? cJSON_CreateNull() : NULL;
    if (!ref) return -1;
    memcpy(ref, v, sizeof *ref);
    ref->string = NULL;
    ref->next = ref->prev = NULL;
    ref->type |= cJSON_IsReference;
    return util_json_add(o, key, ref);
}

int util_json_add(cJSON *o, const char *key, cJSON *v) {
    if (!v) return -1;
    if (!o || !cJSON_AddItemToObject(o, key, v)) {
        cJSON_Delete(v);
        return -1;
    }
    return 0;
}

int util_json_set(cJSON *o, const char *key, cJSON *v) {
    if (!v) return -1;
    if (o && cJSON_GetObjectItemCaseSensitive(o, key)) {
        if (cJSON_ReplaceItemInObjectCaseSensitive(o, key, v)) return 0;
        /* cJSON leaves the replacement unowned (its key copy failed). */
        cJSON_Delete(v);
        return -1;
    }
    return util_json_add(o, key, v);
}

const char *util_json_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int util_json_int(const cJSON *obj, const char *key, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    /* The range first: casting a double outside int64_t is undefined. */
    if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0) || d != (double)(int64_t)d) return -1;
    *out = (int64_t)d;
    return 0;
}

int util_valid_id(const char *id, size_t min, size_t max) {
    if (!id) return 0;
    size_t n = strlen(id);
    if (n < min || n > max) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && c != '_' && c != '-') return 0;
    }
    return 1;
}

schema_role_t util_user_role(const cJSON *user) {
    const char *r = util_json_str(user, "role");
    return r ? schema_role_parse(r) : ROLE_NONE;
}
