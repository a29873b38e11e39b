/* console.c -- serves the embedded supervisor console and its cookie
 * session; the console's data calls go to the ordinary /v1 routes. */
#include "server/console.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define CSRF_LABEL "casesync-console-csrf:"
#define DEVICE_PREFIX "console-"
#define DEVICE_MAX 80

/* No inline script or style, nothing from elsewhere, no framing. */
#define CONSOLE_CSP                                                                                \
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "              \
    "frame-ancestors 'none'; form-action 'self'"

const console_asset_t *console_asset_find(const char *name) {
    for (size_t i = 0; i < console_nassets; i++)
        if (strcmp(console_assets[i].name, name) == 0)
            return &console_assets[i];
    return NULL;
}

static void sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return;
    for (unsigned int i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* CSRF of the stored token hash, so that a route holding only the principal
 * (GET /console/api/session) can name it. */
static int csrf_of_hash(const char *token_hash, char out[65]) {
    char buf[sizeof CSRF_LABEL + 65];
    int n = snprintf(buf, sizeof buf, "%s%s", CSRF_LABEL, token_hash);
    if (n < 0 || (size_t)n >= sizeof buf)
        return -1;
    sha256_hex(buf, (size_t)n, out);
    return out[0] ? 0 : -1;
}

int console_csrf(const char *token, char out[65]) {
    char h[65];
    sha256_hex(token, strlen(token), h);
    return h[0] ? csrf_of_hash(h, out) : -1;
}

/* Constant-time comparison of two NUL-terminated strings. */
static int same_secret(const char *a, const char *b) {
    size_t n = strlen(a);
    if (n != strlen(b))
        return 0;
    unsigned char d = 0;
    for (size_t i = 0; i < n; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

/* Does the Origin header, when present, name this server (scheme://Host)? */
static int origin_ok(const http_req_t *req) {
    const char *origin = mg_get_header(req->conn, "Origin");
    if (!origin)
        return 1; /* same-origin GETs and old browsers send none; the CSRF token still guards */
    const char *host = mg_get_header(req->conn, "Host");
    if (!host || !*host)
        return 0;
    const char *scheme = req->ri && req->ri->is_ssl ? "https://" : "http://";
    size_t sl = strlen(scheme);
    return strncasecmp(origin, scheme, sl) == 0 && strcasecmp(origin + sl, host) == 0;
}

int console_cookie_token(http_req_t *req, const char *method, char *buf, size_t buf_size) {
    const char *cookies = mg_get_header(req->conn, "Cookie");
    if (!cookies || buf_size < 2)
        return 0;
    int n = mg_get_cookie(cookies, CONSOLE_COOKIE, buf, buf_size);
    if (n <= 0 || (size_t)n >= buf_size - 1) {
        buf[0] = '\0';
        return 0;
    }
    for (int i = 0; i < n; i++) {
        char ch = buf[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
            buf[0] = '\0';
            return 0; /* not one of our tokens: as if absent */
        }
    }
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        return 1;
    char want[65];
    const char *got = mg_get_header(req->conn, CONSOLE_CSRF_HEADER);
    if (!origin_ok(req) || !got || console_csrf(buf, want) < 0 || !same_secret(got, want)) {
        memset(buf, 0, buf_size);
        http_send_errorf(req, 403, "forbidden", CONSOLE_CSRF_HEADER,
                         "csrf_failed: a console call that changes state needs the page's %s and "
                         "this server's Origin",
                         CONSOLE_CSRF_HEADER);
        return -1;
    }
    return 1;
}

/* ======================================================================== */
/* Files                                                                    */
/* ======================================================================== */

static void send_asset(call_t *c, const console_asset_t *a) {
    http_add_header(c->req, "Content-Security-Policy", CONSOLE_CSP);
    http_add_header(c->req, "X-Frame-Options", "DENY");
    http_add_header(c->req, "Referrer-Policy", "no-referrer");
    http_send(c->req, 200, a->type, (const char *)a->data, a->len);
}

void console_route_redirect(call_t *c) {
    http_add_header(c->req, "Location", "/console/");
    http_send(c->req, 302, NULL, NULL, 0);
}

void console_route_index(call_t *c) {
    const console_asset_t *a = console_asset_find("index.html");
    if (!a) {
        http_send_errorf(c->req, 404, "not_found", NULL, "this build carries no console");
        return;
    }
    send_asset(c, a);
}

void console_route_file(call_t *c) {
    const console_asset_t *a = c->id ? console_asset_find(c->id) : NULL;
    if (!a) {
        http_send_errorf(c->req, 404, "not_found", NULL, "no such console file");
        return;
    }
    send_asset(c, a);
}

/* ======================================================================== */
/* Session                                                                  */
/* ======================================================================== */

/* ^console-[0-9a-z-]{8,64}$: the device ids the console may name. */
static int console_device_ok(const char *s) {
    size_t pl = strlen(DEVICE_PREFIX), n = strlen(s);
    if (n < pl + 8 || n > pl + 64 || strncmp(s, DEVICE_PREFIX, pl) != 0)
        return 0;
    for (size_t i = pl; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') || s[i] == '-'))
            return 0;
    return 1;
}

static void set_cookie(call_t *c, const char *token) {
    char v[160];
    const char *secure = c->req->ri && c->req->ri->is_ssl ? "; Secure" : "";
    if (token)
        snprintf(v, sizeof v, "%s=%s; Path=/; HttpOnly; SameSite=Strict%s", CONSOLE_COOKIE, token, secure);
    else
        snprintf(v, sizeof v, "%s=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0%s", CONSOLE_COOKIE, secure);
    http_add_header(c->req, "Set-Cookie", v);
}

void console_route_login(call_t *c) {
    sync_error_t err = {0};
    char key[128], dev[DEVICE_MAX + 1], csrf[65];
    char *out = NULL, *text = NULL;
    cJSON *ans = NULL;
    if (!mg_get_header(c->req->conn, CONSOLE_LOGIN_HEADER) || !origin_ok(c->req)) {
        http_send_errorf(c->req, 403, "forbidden", CONSOLE_LOGIN_HEADER,
                         "csrf_failed: sign in from the console page of this server");
        return;
    }
    cJSON *body = route_body_json_small(c);
    if (!body)
        return;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "device_id");
    if (cJSON_IsString(d)) {
        if (!console_device_ok(d->valuestring)) {
            cJSON_Delete(body);
            http_send_errorf(c->req, 422, "validation_failed", "device_id",
                             "a console device id is console- and 8 to 64 of 0-9 a-z -");
            return;
        }
        snprintf(dev, sizeof dev, "%s", d->valuestring);
    } else {
        unsigned char rnd[8];
        if (RAND_bytes(rnd, sizeof rnd) != 1) {
            cJSON_Delete(body);
            http_send_errorf(c->req, 503, "unavailable", NULL, "no randomness");
            return;
        }
        int o = snprintf(dev, sizeof dev, "%s", DEVICE_PREFIX);
        for (size_t i = 0; i < sizeof rnd; i++)
            o += snprintf(dev + o, sizeof dev - (size_t)o, "%02x", rnd[i]);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(body, "device_id");
    cJSON_DeleteItemFromObjectCaseSensitive(body, "device_name");
    cJSON_DeleteItemFromObjectCaseSensitive(body, "app_version");
    if (!cJSON_AddStringToObject(body, "device_id", dev) ||
        !cJSON_AddStringToObject(body, "device_name", "管理台 (浏览器)") ||
        !cJSON_AddStringToObject(body, "app_version", "console")) {
        cJSON_Delete(body);
        http_send_errorf(c->req, 503, "unavailable", NULL, "out of memory");
        return;
    }
    route_client_key(c, key, sizeof key);
    int rc = sync_login(c->rt->sync, body, key, &out, &err);
    cJSON_Delete(body);
    if (rc < 0) {
        route_reply(c, rc, out, &err, 200);
        return;
    }
    ans = out ? cJSON_Parse(out) : NULL;
    const cJSON *tok = ans ? cJSON_GetObjectItemCaseSensitive(ans, "token") : NULL;
    if (!cJSON_IsString(tok) || console_csrf(tok->valuestring, csrf) < 0) {
        http_send_errorf(c->req, 503, "unavailable", NULL, "the sign-in gave no token");
        goto done;
    }
    set_cookie(c, tok->valuestring);
    cJSON_DeleteItemFromObjectCaseSensitive(ans, "token"); /* the page never holds it */
    if (!cJSON_AddStringToObject(ans, "csrf", csrf) || !(text = cJSON_PrintUnformatted(ans))) {
        http_send_errorf(c->req, 503, "unavailable", NULL, "out of memory");
        goto done;
    }
    http_send_json(c->req, 200, text, strlen(text));
done:
    if (out)
        memset(out, 0, strlen(out));
    free(out);
    free(text);
    cJSON_Delete(ans);
}

void console_route_logout(call_t *c) {
    sync_error_t err = {0};
    int rc = sync_logout(c->rt->sync, c->p, &err);
    if (rc == 0)
        set_cookie(c, NULL);
    route_reply(c, rc, NULL, &err, 204);
}

int console_time_zone_parse(const char *name, int *minutes) {
    static const char *const china[] = {"Asia/Shanghai", "Asia/Chongqing", "PRC"};
    *minutes = 0;
    if (!name)
        return -1;
    for (size_t i = 0; i < sizeof china / sizeof china[0]; i++)
        if (strcmp(name, china[i]) == 0)
            return *minutes = 8 * 60, 0;
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0)
        return 0;
    /* [+-]HH:MM, exactly six characters */
    if (strlen(name) != 6 || (name[0] != '+' && name[0] != '-') || name[3] != ':')
        return -1;
    for (int i = 1; i < 6; i++)
        if (i != 3 && (name[i] < '0' || name[i] > '9'))
            return -1;
    int h = (name[1] - '0') * 10 + (name[2] - '0'), m = (name[4] - '0') * 10 + (name[5] - '0');
    int total = h * 60 + m;
    if (m > 59 || (name[0] == '+' ? total > 14 * 60 : total > 12 * 60))
        return -1;
    *minutes = name[0] == '-' ? -total : total;
    return 0;
}

/* {"name","utc_offset":"+08:00","offset_minutes":480} of the configured zone. */
static cJSON *time_zone_json(const routes_t *rt) {
    char off[8];
    int m = rt->utc_offset_min < 0 ? -rt->utc_offset_min : rt->utc_offset_min;
    snprintf(off, sizeof off, "%c%02d:%02d", rt->utc_offset_min < 0 ? '-' : '+', m / 60 % 100, m % 60);
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "name", rt->time_zone) || !cJSON_AddStringToObject(o, "utc_offset", off) ||
        !cJSON_AddNumberToObject(o, "offset_minutes", rt->utc_offset_min)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

void console_route_session(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL, *text = NULL, csrf[65];
    cJSON *ans = NULL, *tz = NULL;
    int rc = sync_me(c->rt->sync, c->p, &out, &err);
    if (rc < 0) {
        route_reply(c, rc, out, &err, 200);
        return;
    }
    if (!out || !(ans = cJSON_Parse(out)) || csrf_of_hash(c->p->token_hash, csrf) < 0 ||
        !cJSON_AddStringToObject(ans, "csrf", csrf) || !(tz = time_zone_json(c->rt)) ||
        !cJSON_AddItemToObject(ans, "time_zone", tz) || !(text = cJSON_PrintUnformatted(ans))) {
        if (tz && !cJSON_GetObjectItemCaseSensitive(ans, "time_zone"))
            cJSON_Delete(tz);
        http_send_errorf(c->req, 503, "unavailable", NULL, "out of memory");
    } else {
        http_send_json(c->req, 200, text, strlen(text));
    }
    free(out);
    free(text);
    cJSON_Delete(ans);
}

/* The people the caller may see by name: supervisors and legal reviewers
 * their unit's users, admins everyone. Officers and auxiliaries: 403 (their
 * phones carry what they need). Items: {"id","username","name","role","unit",
 * "grids","disabled"}. */
void console_route_people(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL, *text = NULL;
    cJSON *all = NULL, *res = NULL, *items = NULL;
    static const char *keep[] = {"id", "username", "name", "role", "unit", "grids", "disabled"};
    if (c->p->role < ROLE_LEGAL_REVIEWER) {
        http_send_errorf(c->req, 403, "forbidden", NULL, "only supervisors, legal reviewers and admins list people");
        return;
    }
    int rc = sync_user_list_all(c->rt->sync, &out, &err);
    if (rc < 0) {
        route_reply(c, rc, out, &err, 200);
        return;
    }
    const cJSON *src = NULL;
    if (!out || !(all = cJSON_Parse(out)) || !(res = cJSON_CreateObject()) ||
        !(items = cJSON_AddArrayToObject(res, "items")))
        goto oom;
    src = cJSON_GetObjectItemCaseSensitive(all, "items");
    for (const cJSON *u = src ? src->child : NULL; u; u = u->next) {
        const cJSON *unit = cJSON_GetObjectItemCaseSensitive(u, "unit");
        if (c->p->role != ROLE_ADMIN && !(cJSON_IsString(unit) && strcmp(unit->valuestring, c->p->unit) == 0))
            continue;
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(items, o)) {
            cJSON_Delete(o);
            goto oom;
        }
        for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(u, keep[i]);
            cJSON *dup = v ? cJSON_Duplicate(v, 1) : NULL;
            if (v && (!dup || !cJSON_AddItemToObject(o, keep[i], dup))) {
                cJSON_Delete(dup);
                goto oom;
            }
        }
    }
    if (!(text = cJSON_PrintUnformatted(res)))
        goto oom;
    http_send_json(c->req, 200, text, strlen(text));
    goto done;
oom:
    http_send_errorf(c->req, 503, "unavailable", NULL, "out of memory");
done:
    free(out);
    free(text);
    cJSON_Delete(all);
    cJSON_Delete(res);
}
