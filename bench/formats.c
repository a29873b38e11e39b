/* formats.c -- `make bench`, part 0: candidate encodings of what the writer
 * handles per change, measured in-process in the same run, as CPU time per
 * operation and as ratios to the current format:
 * - the record value (a create's fields plus per-field meta, as record.c
 *   stores it), read into the engine's tree and written back: JSON text
 *   (cJSON parse + print, store format 1) against the store's binary form
 *   (sync/valcodec.c, MessagePack, format 2), and msgpack-c's own unpack +
 *   pack without a tree (the floor of any MessagePack codec);
 * - the audit entry's hashed bytes: cJSON's print (format 1) against RFC 8785
 *   canonical JSON (sync/jcs.c, format 2), each with the SHA-256 over it.
 * No server runs: these bound the writer's CPU per change, they are not
 * throughput. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <msgpack.h>
#include <openssl/evp.h>

#include "sync/jcs.h"
#include "sync/valcodec.h"

#define FORMAT_ROUNDS 20000

typedef void (*bench_result_fn)(const char *key, double v);

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static cJSON *sample_record(const char *create_json) {
    cJSON *ch = cJSON_Parse(create_json), *rec = cJSON_CreateObject();
    cJSON *fields = cJSON_DetachItemFromObject(ch, "fields"), *fm = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "id", "01JDBENCHRECORD0001");
    cJSON_AddStringToObject(rec, "type", "unlicensed_vending");
    cJSON_AddStringToObject(rec, "procedure", "general");
    cJSON_AddNumberToObject(rec, "version", 1);
    cJSON_AddNumberToObject(rec, "seq", 123456);
    cJSON_AddStringToObject(rec, "status", "clue");
    for (const cJSON *f = fields ? fields->child : NULL; f; f = f->next) {
        cJSON *m = cJSON_CreateArray();
        cJSON_AddItemToArray(m, cJSON_CreateNumber(1));
        cJSON_AddItemToArray(m, cJSON_CreateNumber(123456));
        cJSON_AddItemToArray(m, cJSON_CreateString("dev-0042"));
        cJSON_AddItemToArray(m, cJSON_CreateNumber(1795335330123.0));
        cJSON_AddItemToObject(fm, f->string, m);
    }
    cJSON_AddItemToObject(rec, "fields", fields ? fields : cJSON_CreateObject());
    cJSON_AddItemToObject(rec, "fm", fm);
    cJSON_AddStringToObject(rec, "created_at", "2026-11-22T08:15:30.123Z");
    cJSON_Delete(ch);
    return rec;
}

static void sha(const void *prev, const char *text, size_t n) {
    unsigned char md[32];
    unsigned int l;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, prev, 64);
    EVP_DigestUpdate(c, text, n);
    EVP_DigestFinal_ex(c, md, &l);
    EVP_MD_CTX_free(c);
}

void bench_formats(const char *create_json, bench_result_fn result) {
    cJSON *rec = sample_record(create_json);
    char *json = cJSON_PrintUnformatted(rec);
    size_t jlen = strlen(json);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    size_t mlen = 0;
    char *mp = valcodec_encode(rec, &mlen);

    /* JSON: parse the stored value, print it back (the writer, per record write). */
    double t0 = cpu_s();
    for (int i = 0; i < FORMAT_ROUNDS; i++) {
        cJSON *r = cJSON_ParseWithLength(json, jlen);
        char *o = cJSON_PrintUnformatted(r);
        free(o);
        cJSON_Delete(r);
    }
    double json_us = (cpu_s() - t0) / FORMAT_ROUNDS * 1e6;

    /* The store's binary form: decode into a tree, encode it back. */
    t0 = cpu_s();
    for (int i = 0; i < FORMAT_ROUNDS; i++) {
        size_t n;
        cJSON *r = valcodec_decode(mp, mlen);
        free(valcodec_encode(r, &n));
        cJSON_Delete(r);
    }
    double vc_us = (cpu_s() - t0) / FORMAT_ROUNDS * 1e6;

    /* msgpack-c alone: unpack the stored value, pack it back (no tree). */
    t0 = cpu_s();
    for (int i = 0; i < FORMAT_ROUNDS; i++) {
        msgpack_unpacked u;
        size_t off = 0;
        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, mp, mlen, &off) == MSGPACK_UNPACK_SUCCESS) {
            msgpack_sbuffer_clear(&sb);
            msgpack_pack_object(&pk, u.data);
        }
        msgpack_unpacked_destroy(&u);
    }
    double mp_us = (cpu_s() - t0) / FORMAT_ROUNDS * 1e6;

    /* Audit bytes of a create's entry (its fields as "new" values): v1 and v2. */
    cJSON *entry = cJSON_CreateObject();
    cJSON_AddNumberToObject(entry, "seq", 123456);
    cJSON_AddStringToObject(entry, "op", "create");
    cJSON_AddStringToObject(entry, "record_id", "01JDBENCHRECORD0001");
    cJSON_AddItemToObject(entry, "fields", cJSON_Duplicate(cJSON_GetObjectItem(rec, "fields"), 1));
    cJSON_AddStringToObject(entry, "prev_hash",
                            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    const char *prev = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    t0 = cpu_s();
    for (int i = 0; i < FORMAT_ROUNDS; i++) {
        char *o = cJSON_PrintUnformatted(entry);
        sha(prev, o, strlen(o));
        free(o);
    }
    double v1_us = (cpu_s() - t0) / FORMAT_ROUNDS * 1e6;
    t0 = cpu_s();
    for (int i = 0; i < FORMAT_ROUNDS; i++) {
        char *o = NULL;
        size_t n = 0;
        jcs_print(entry, &o, &n);
        sha(prev, o, n);
        free(o);
    }
    double v2_us = (cpu_s() - t0) / FORMAT_ROUNDS * 1e6;

    printf("%-44s %10s %10s %8s\n", "formats (in-process, CPU per op)", "us/op", "bytes", "ratio");
    printf("  record value, JSON parse+print %13s %10.2f %10zu %8.2f\n", "", json_us, jlen, 1.0);
    printf("  record value, binary decode+encode (v2) %4s %10.2f %10zu %8.2f\n", "", vc_us, mlen,
           vc_us / json_us);
    printf("  record value, msgpack-c alone, no tree %5s %10.2f %10zu %8.2f\n", "", mp_us, mlen,
           mp_us / json_us);
    printf("  audit bytes v1, cJSON print+SHA-256 %8s %10.2f %10s %8.2f\n", "", v1_us, "", 1.0);
    printf("  audit bytes v2, RFC 8785 JCS+SHA-256 %7s %10.2f %10s %8.2f\n\n", "", v2_us, "", v2_us / v1_us);
    result("format_record_json_us", json_us);
    result("format_record_json_bytes", (double)jlen);
    result("format_record_binary_us", vc_us);
    result("format_record_binary_ratio", vc_us / json_us);
    result("format_record_msgpack_us", mp_us);
    result("format_record_msgpack_bytes", (double)mlen);
    result("format_record_msgpack_ratio", mp_us / json_us);
    result("format_audit_v1_us", v1_us);
    result("format_audit_v2_us", v2_us);
    result("format_audit_v2_ratio", v2_us / v1_us);

    cJSON_Delete(entry);
    cJSON_Delete(rec);
    free(json);
    free(mp);
    msgpack_sbuffer_destroy(&sb);
}
