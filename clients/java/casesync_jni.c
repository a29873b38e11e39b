/* casesync_jni.c -- libcasesync for the JVM and Android: the native side of
 * org.casesync.Casesync (clients/java/src). The same file builds unchanged
 * for Android (NDK) against libcasesync.
 *
 * Caveats:
 * - A Java Casesync object owns one native handle (a jlong) and a global
 *   reference to itself for the callbacks; close() frees both, once.
 * - Callbacks (events, changes) run on the Java thread that made the call
 *   that caused them (sync, an edit), which the JVM has attached already;
 *   a thread the JVM does not know is attached for the call and detached
 *   after. A Java exception thrown by the listener is cleared and printed:
 *   it never unwinds through the C library.
 * - Failures throw org.casesync.CasesyncException with the library's code,
 *   the HTTP status, the server's or schema's code, the field and message.
 * - Strings cross as modified UTF-8 (GetStringUTFChars); JSON results come
 *   back as Java strings, parsed by the caller with its own JSON library.
 */
#include <jni.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/c/casesync.h"

typedef struct jhandle {
    casesync_t *h;
    JavaVM *vm;
    jobject self; /* global ref to the Casesync object */
    jmethodID on_event, on_change;
} jhandle_t;

static void throw_error(JNIEnv *env, int rc, const casesync_error_t *err) {
    jclass cls = (*env)->FindClass(env, "org/casesync/CasesyncException");
    if (!cls) return;
    jmethodID ctor = (*env)->GetMethodID(env, cls, "<init>",
                                         "(IJLjava/lang/String;Ljava/lang/String;Ljava/lang/String;)V");
    if (!ctor) return;
    jstring msg = (*env)->NewStringUTF(env, err && err->message[0] ? err->message : casesync_strerror(rc));
    jstring code = err && err->api_code[0] ? (*env)->NewStringUTF(env, err->api_code) : NULL;
    jstring field = err && err->field[0] ? (*env)->NewStringUTF(env, err->field) : NULL;
    jobject ex = (*env)->NewObject(env, cls, ctor, (jint)rc, (jlong)(err ? err->http_status : 0), code, field, msg);
    if (ex) (*env)->Throw(env, (jthrowable)ex);
}

/* A Java string as a malloc'd C string (NULL for null); *bad set when the
 * JVM ran out of memory. */
static char *cstr(JNIEnv *env, jstring s, int *bad) {
    if (!s) return NULL;
    const char *u = (*env)->GetStringUTFChars(env, s, NULL);
    if (!u) {
        *bad = 1;
        return NULL;
    }
    char *c = strdup(u);
    (*env)->ReleaseStringUTFChars(env, s, u);
    if (!c) *bad = 1;
    return c;
}

static jhandle_t *handle_of(JNIEnv *env, jlong p) {
    jhandle_t *j = (jhandle_t *)(intptr_t)p;
    if (!j || !j->h) {
        casesync_error_t e = {0};
        snprintf(e.message, sizeof e.message, "the Casesync handle is closed");
        throw_error(env, CASESYNC_E_ARG, &e);
        return NULL;
    }
    return j;
}

/* The JNIEnv of the calling thread, attaching it when the JVM does not know
 * it (*attached set: detach after). */
static JNIEnv *env_of(jhandle_t *j, int *attached) {
    JNIEnv *env = NULL;
    *attached = 0;
    if ((*j->vm)->GetEnv(j->vm, (void **)&env, JNI_VERSION_1_6) == JNI_OK) return env;
    if ((*j->vm)->AttachCurrentThread(j->vm, (void **)&env, NULL) != JNI_OK) return NULL;
    *attached = 1;
    return env;
}

static void after_callback(jhandle_t *j, JNIEnv *env, int attached) {
    if ((*env)->ExceptionCheck(env)) {
        (*env)->ExceptionDescribe(env);
        (*env)->ExceptionClear(env);
    }
    if (attached) (*j->vm)->DetachCurrentThread(j->vm);
}

static void on_event(void *ud, const casesync_event_t *ev) {
    jhandle_t *j = ud;
    int attached;
    JNIEnv *env = env_of(j, &attached);
    if (!env || !j->self) return;
    (*env)->PushLocalFrame(env, 8);
    jstring rid = ev->record_id ? (*env)->NewStringUTF(env, ev->record_id) : NULL;
    jstring st = ev->status ? (*env)->NewStringUTF(env, ev->status) : NULL;
    jstring js = (*env)->NewStringUTF(env, ev->json ? ev->json : "{}");
    if (!(*env)->ExceptionCheck(env)) (*env)->CallVoidMethod(env, j->self, j->on_event, (jint)ev->kind, rid, st, js);
    (*env)->PopLocalFrame(env, NULL);
    after_callback(j, env, attached);
}

static void on_change(void *ud, const char *record_id, int what) {
    jhandle_t *j = ud;
    int attached;
    JNIEnv *env = env_of(j, &attached);
    if (!env || !j->self) return;
    (*env)->PushLocalFrame(env, 4);
    jstring rid = record_id ? (*env)->NewStringUTF(env, record_id) : NULL;
    if (!(*env)->ExceptionCheck(env)) (*env)->CallVoidMethod(env, j->self, j->on_change, rid, (jint)what);
    (*env)->PopLocalFrame(env, NULL);
    after_callback(j, env, attached);
}

JNIEXPORT jlong JNICALL Java_org_casesync_Casesync_nativeOpen(JNIEnv *env, jobject self, jstring state_dir,
                                                              jstring device_name, jstring app_version,
                                                              jboolean no_sync) {
    int bad = 0;
    char *dir = cstr(env, state_dir, &bad), *dn = cstr(env, device_name, &bad), *av = cstr(env, app_version, &bad);
    jhandle_t *j = calloc(1, sizeof *j);
    casesync_error_t err = {0};
    int rc = CASESYNC_E_NOMEM;
    if (bad || !j || !dir) {
        snprintf(err.message, sizeof err.message, dir || bad ? "out of memory" : "stateDir is required");
        rc = dir || bad ? CASESYNC_E_NOMEM : CASESYNC_E_ARG;
        goto fail;
    }
    jclass cls = (*env)->GetObjectClass(env, self);
    j->on_event = (*env)->GetMethodID(env, cls, "dispatchEvent", "(ILjava/lang/String;Ljava/lang/String;Ljava/lang/String;)V");
    j->on_change = (*env)->GetMethodID(env, cls, "dispatchChange", "(Ljava/lang/String;I)V");
    if (!j->on_event || !j->on_change || (*env)->GetJavaVM(env, &j->vm) != 0 ||
        !(j->self = (*env)->NewGlobalRef(env, self))) {
        snprintf(err.message, sizeof err.message, "the Casesync class does not match the native library");
        rc = CASESYNC_E_ARG;
        goto fail;
    }
    casesync_options_t o = {0};
    o.state_dir = dir;
    o.device_name = dn;
    o.app_version = av;
    o.no_sync = no_sync ? 1 : 0;
    o.on_event = on_event;
    o.userdata = j;
    if ((rc = casesync_open(&o, &j->h, &err)) != 0) goto fail;
    casesync_on_change(j->h, on_change, j);
    free(dir);
    free(dn);
    free(av);
    return (jlong)(intptr_t)j;
fail:
    if (j && j->self) (*env)->DeleteGlobalRef(env, j->self);
    free(j);
    free(dir);
    free(dn);
    free(av);
    if (!(*env)->ExceptionCheck(env)) throw_error(env, rc, &err);
    return 0;
}

JNIEXPORT void JNICALL Java_org_casesync_Casesync_nativeClose(JNIEnv *env, jobject self, jlong p) {
    jhandle_t *j = (jhandle_t *)(intptr_t)p;
    if (!j) return;
    casesync_close(j->h);
    j->h = NULL;
    if (j->self) (*env)->DeleteGlobalRef(env, j->self);
    free(j);
}

JNIEXPORT void JNICALL Java_org_casesync_Casesync_nativeLogin(JNIEnv *env, jobject self, jlong p, jstring server,
                                                              jstring user, jstring pass, jstring device) {
    jhandle_t *j = handle_of(env, p);
    if (!j) return;
    int bad = 0;
    char *s = cstr(env, server, &bad), *u = cstr(env, user, &bad), *pw = cstr(env, pass, &bad),
         *d = cstr(env, device, &bad);
    casesync_error_t err = {0};
    int rc = bad ? CASESYNC_E_NOMEM : casesync_login(j->h, s, u, pw, d, &err);
    if (pw) memset(pw, 0, strlen(pw));
    free(s);
    free(u);
    free(pw);
    free(d);
    if (rc) throw_error(env, rc, &err);
}

JNIEXPORT jstring JNICALL Java_org_casesync_Casesync_nativeCreate(JNIEnv *env, jobject self, jlong p, jstring type,
                                                                  jstring fields, jstring record_id) {
    jhandle_t *j = handle_of(env, p);
    if (!j) return NULL;
    int bad = 0;
    char *t = cstr(env, type, &bad), *f = cstr(env, fields, &bad), *r = cstr(env, record_id, &bad);
    char id[CASESYNC_ID_MAX] = "";
    casesync_error_t err = {0};
    int rc = bad ? CASESYNC_E_NOMEM : casesync_create(j->h, t, f, r, id, &err);
    free(t);
    free(f);
    free(r);
    if (rc) {
        throw_error(env, rc, &err);
        return NULL;
    }
    return (*env)->NewStringUTF(env, id);
}

JNIEXPORT void JNICALL Java_org_casesync_Casesync_nativeUpdate(JNIEnv *env, jobject self, jlong p, jstring record_id,
                                                               jstring set, jstring append) {
    jhandle_t *j = handle_of(env, p);
    if (!j) return;
    int bad = 0;
    char *r = cstr(env, record_id, &bad), *s = cstr(env, set, &bad), *a = cstr(env, append, &bad);
    casesync_error_t err = {0};
    int rc = bad ? CASESYNC_E_NOMEM : casesync_update(j->h, r, s, a, &err);
    free(r);
    free(s);
    free(a);
    if (rc) throw_error(env, rc, &err);
}

JNIEXPORT jstring JNICALL Java_org_casesync_Casesync_nativeNote(JNIEnv *env, jobject self, jlong p, jstring record_id,
                                                                jstring text) {
    jhandle_t *j = handle_of(env, p);
    if (!j) return NULL;
    int bad = 0;
    char *r = cstr(env, record_id, &bad), *t = cstr(env, text, &bad);
    char iid[CASESYNC_ID_MAX] = "";
    casesync_error_t err = {0};
    int rc = bad ? CASESYNC_E_NOMEM : casesync_note(j->h, r, t, iid, &err);
    free(r);
    free(t);
    if (rc) {
        throw_error(env, rc, &err);
        return NULL;
    }
    return (*env)->NewStringUTF(env, iid);
}

JNIEXPORT void JNICALL Java_org_casesync_Casesync_nativeTransition(JNIEnv *env, jobject self, jlong p,
                                                                   jstring record_id, jstring to) {
    jhandle_t *j = handle_of(env, p);
    if (!j) return;
    int bad = 0;
    char *r = cstr(env, record_id, &bad), *t = cstr(env, to, &bad);
    casesync_error_t err = {0};
    int rc = bad ? CASESYNC_E_NOMEM : casesync_transition(j->h, r, t, &err);
    free(r);
    free(t);
    if (rc) throw_error(env, rc, &err);
}

/* The JSON-text readers: 0 = get(id), 1 = list, 2 = notices, 3 = session. */
JNIEXPORT jstring JNICALL Java_org_casesync_Casesync_nativeRead(JNIEnv *env, jobject self, jlong p, jint what,
                                                                jstring record_id) {
    jhandle_t *j = handle_of(env, p);
    if (!j) return NULL;
    int bad = 0;
    char *r = cstr(env, record_id, &bad), *out = NULL;
    int rc = bad ? CASESYNC_E_NOMEM
             : what == 0 ? casesync_get(j->h, r, &out)
             : what == 1 ? casesync_list(j->h, &out)
             : what == 2 ? casesync_notices(j->h, &out)
                         : casesync_session(j->h, &out);
    free(r);
    if (rc == CASESYNC_E_NOT_FOUND && what == 0) return NULL;
    if (rc) {
        casesync_error_t err = {0};
        throw_error(env, rc, &err);
        return NULL;
    }
    jstring s = (*env)->NewStringUTF(env, out ? out : "null");
    casesync_free(out);
    return s;
}

/* {"changesets","replays","applied","merged","conflicts","rejected","failed","pages","upserts","removals"} */
JNIEXPORT jstring JNICALL Java_org_casesync_Casesync_nativeSync(JNIEnv *env, jobject self, jlong p, jint flags) {
    jhandle_t *j = handle_of(env, p);
    if (!j) return NULL;
    casesync_report_t rep;
    casesync_error_t err = {0};
    memset(&rep, 0, sizeof rep);
    int rc = casesync_sync(j->h, flags, &rep, &err);
    if (rc) {
        throw_error(env, rc, &err);
        return NULL;
    }
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"changesets\":%d,\"replays\":%d,\"applied\":%d,\"merged\":%d,\"conflicts\":%d,\"rejected\":%d,"
             "\"failed\":%d,\"pages\":%d,\"upserts\":%d,\"removals\":%d}",
             rep.changesets, rep.replays, rep.applied, rep.merged, rep.conflicts, rep.rejected, rep.failed, rep.pages,
             rep.upserts, rep.removals);
    return (*env)->NewStringUTF(env, buf);
}

JNIEXPORT void JNICALL Java_org_casesync_Casesync_nativeDownload(JNIEnv *env, jobject self, jlong p, jstring sha256,
                                                                 jstring path) {
    jhandle_t *j = handle_of(env, p);
    if (!j) return;
    int bad = 0;
    char *s = cstr(env, sha256, &bad), *f = cstr(env, path, &bad);
    casesync_error_t err = {0};
    int rc = bad ? CASESYNC_E_NOMEM : casesync_download(j->h, s, f, &err);
    free(s);
    free(f);
    if (rc) throw_error(env, rc, &err);
}

JNIEXPORT jstring JNICALL Java_org_casesync_Casesync_nativeRequest(JNIEnv *env, jobject self, jlong p,
                                                                   jstring method, jstring path, jstring body) {
    jhandle_t *j = handle_of(env, p);
    if (!j) return NULL;
    int bad = 0;
    char *m = cstr(env, method, &bad), *pa = cstr(env, path, &bad), *b = cstr(env, body, &bad), *out = NULL;
    long status = 0;
    casesync_error_t err = {0};
    int rc = bad ? CASESYNC_E_NOMEM : casesync_request(j->h, m, pa, b, &status, &out, &err);
    free(m);
    free(pa);
    free(b);
    if (rc) {
        throw_error(env, rc, &err);
        return NULL;
    }
    char head[32];
    snprintf(head, sizeof head, "%ld ", status);
    size_t hl = strlen(head), ol = out ? strlen(out) : 0;
    char *all = malloc(hl + ol + 1);
    jstring s = NULL;
    if (all) {
        memcpy(all, head, hl);
        if (ol) memcpy(all + hl, out, ol);
        all[hl + ol] = 0;
        s = (*env)->NewStringUTF(env, all);
    }
    free(all);
    casesync_free(out);
    return s;
}
