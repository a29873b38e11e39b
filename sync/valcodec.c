/* recform.c -- a case record's stored bytes: MessagePack through msgpack-c,
 * to and from the cJSON tree the engine works on. See valcodec.h. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "sync/valcodec.h"

#define MAX_DEPTH 64 /* stored values nest 4 deep; anything deeper was never stored */
#define EXACT_INT 9007199254740992.0

static int pack(msgpack_packer *pk, const cJSON *v, int depth) {
    if (depth > MAX_DEPTH) return -1;
    const cJSON *c;
    int n = 0;
    switch (v->type & 0xff) {
    case cJSON_Object:
        cJSON_ArrayForEach(c, v) n++;
        if (msgpack_pack_map(pk, (size_t)n)) return -1;
        cJSON_ArrayForEach(c, v) {
            size_t l = c->string ? strlen(c->string) : 0;
            if (msgpack_pack_str_with_body(pk, c->string ? c->string : "", l) || pack(pk, c, depth + 1))
                return -1;
        }
        return 0;
    case cJSON_Array:
        cJSON_ArrayForEach(c, v) n++;
        if (msgpack_pack_array(pk, (size_t)n)) return -1;
        cJSON_ArrayForEach(c, v) {
            if (pack(pk, c, depth + 1)) return -1;
        }
        return 0;
    case cJSON_String: return msgpack_pack_str_with_body(pk, v->valuestring, strlen(v->valuestring));
    case cJSON_Number: {
        double d = v->valuedouble;
        if (d >= -EXACT_INT && d <= EXACT_INT && d == (double)(int64_t)d && !(d == 0 && signbit(d)))
            return msgpack_pack_int64(pk, (int64_t)d);
        return msgpack_pack_double(pk, d);
    }
    case cJSON_True: return msgpack_pack_true(pk);
    case cJSON_False: return msgpack_pack_false(pk);
    case cJSON_NULL: return msgpack_pack_nil(pk);
    default: return -1; /* cJSON_Raw, cJSON_Invalid: never in a record */
    }
}

void *valcodec_encode(const cJSON *rec, size_t *len) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (!rec || !cJSON_IsObject(rec) || pack(&pk, rec, 0) != 0) {
        msgpack_sbuffer_destroy(&sb);
        return NULL;
    }
    *len = sb.size;
    return msgpack_sbuffer_release(&sb);
}

/* A cJSON string item holding a copy of s[0..n) (NUL-terminated). */
static char *dup_n(const char *s, size_t n) {
    char *p = cJSON_malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static cJSON *to_json(const msgpack_object *o, int depth) {
    cJSON *v = NULL;
    if (depth > MAX_DEPTH) return NULL;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return cJSON_CreateNull();
    case MSGPACK_OBJECT_BOOLEAN: return cJSON_CreateBool(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return cJSON_CreateNumber((double)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return cJSON_CreateNumber((double)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return cJSON_CreateNumber(o->via.f64);
    case MSGPACK_OBJECT_STR:
        if (!(v = cJSON_CreateNull())) return NULL;
        v->type = cJSON_String;
        if (!(v->valuestring = dup_n(o->via.str.ptr, o->via.str.size))) break;
        return v;
    case MSGPACK_OBJECT_ARRAY:
        if (!(v = cJSON_CreateArray())) return NULL;
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            cJSON *c = to_json(&o->via.array.ptr[i], depth + 1);
            if (!c) goto fail;
            cJSON_AddItemToArray(v, c);
        }
        return v;
    case MSGPACK_OBJECT_MAP:
        if (!(v = cJSON_CreateObject())) return NULL;
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) goto fail;
            cJSON *c = to_json(&kv->val, depth + 1);
            if (!c) goto fail;
            if (!(c->string = dup_n(kv->key.via.str.ptr, kv->key.via.str.size))) {
                cJSON_Delete(c);
                goto fail;
            }
            cJSON_AddItemToArray(v, c); /* keeps c->string: the object's key */
        }
        return v;
    default: return NULL; /* bin, ext: never written by valcodec_encode */
    }
fail:
    cJSON_Delete(v);
    return NULL;
}

int valcodec_is_binary(const void *data, size_t len) {
    return len > 0 && ((const unsigned char *)data)[0] != '{';
}

/* Each thread decodes into a zone of its own, kept between calls and
 * cleared after each: a new zone per value (msgpack_unpack_next) cost a
 * sixth of a pull's CPU in malloc and first touches. Freed as the thread ends. */
#define ZONE_CHUNK (64 * 1024)
static pthread_key_t zone_key;
static pthread_once_t zone_once = PTHREAD_ONCE_INIT;

static void zone_free(void *z) { msgpack_zone_free(z); }
static void zone_key_make(void) { pthread_key_create(&zone_key, zone_free); }

static msgpack_zone *thread_zone(void) {
    pthread_once(&zone_once, zone_key_make);
    msgpack_zone *z = pthread_getspecific(zone_key);
    if (!z && (z = msgpack_zone_new(ZONE_CHUNK)) != NULL && pthread_setspecific(zone_key, z) != 0) {
        msgpack_zone_free(z);
        z = NULL;
    }
    return z;
}

cJSON *valcodec_decode(const void *data, size_t len) {
    if (!data || !len) return NULL;
    if (!valcodec_is_binary(data, len)) return cJSON_ParseWithLength(data, len);
    msgpack_zone *z = thread_zone();
    msgpack_object o;
    size_t off = 0;
    cJSON *v = NULL;
    if (!z) return NULL;
    /* msgpack_unpack: the one entry of msgpack-c that decodes into a caller's zone. */
    if (msgpack_unpack(data, len, &off, z, &o) == MSGPACK_UNPACK_SUCCESS && off == len &&
        o.type == MSGPACK_OBJECT_MAP)
        v = to_json(&o, 0);
    msgpack_zone_clear(z);
    return v;
}
