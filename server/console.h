/* console.h -- the supervisor console: its files (embedded in the binary at
 * build time), its cookie session and the CSRF check of cookie calls.
 *
 * Caveats:
 * - The console's token lives in an HttpOnly, SameSite=Strict cookie
 *   (CONSOLE_COOKIE, Secure over TLS); page scripts never see it. A request
 *   authenticated by that cookie that changes state (any method but GET and
 *   HEAD) must carry X-CSRF-Token equal to console_csrf() of the token, and
 *   an Origin header, when sent, must name this server's own Host. A bearer
 *   token always wins over the cookie: phones and curl are not affected.
 * - A console sign-in is a device of its own: "console-" followed by an id the
 *   browser keeps per user, or a fresh random one. It is listed in 设备 like a
 *   phone and can be revoked like one.
 * - The files are whatever `make` embedded (build/.../console_assets.c made by
 *   scripts/embed-console.mjs from the esbuild bundle); they are never read
 *   from disk at run time.
 */
#ifndef CASESYNC_CONSOLE_H
#define CASESYNC_CONSOLE_H

#include <stddef.h>

#include "server/route.h"

#define CONSOLE_COOKIE "casesync_session"
#define CONSOLE_CSRF_HEADER "X-CSRF-Token"
/* The header a sign-in must carry: no cross-site form can send it. */
#define CONSOLE_LOGIN_HEADER "X-Casesync-Console"

/* One embedded file (generated code defines the table). */
typedef struct console_asset {
    const char *name; /* "index.html", "app.js" ... */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
} console_asset_t;
extern const console_asset_t console_assets[];
extern const size_t console_nassets;

/* The embedded file of that name, or NULL. */
const console_asset_t *console_asset_find(const char *name);

/* The CSRF token of a session token: hex SHA-256 of a fixed label and the
 * token (65 bytes with the NUL). It reveals nothing of the token. 0 or -1. */
int console_csrf(const char *token, char out[65]);

/* Finds the session token of a request without a bearer token. Returns 1 with
 * the token in buf; 0 when there is no session cookie (nothing sent); -1 when
 * the cookie is there but the request failed the CSRF or Origin check (403
 * csrf_failed already sent). */
int console_cookie_token(http_req_t *req, const char *method, char *buf, size_t buf_size);

/* The offset from UTC, in minutes, of a time zone the console may show
 * times in: "Asia/Shanghai" (and its aliases "Asia/Chongqing", "PRC"), "UTC"
 * ("Etc/UTC"), or a fixed offset "+HH:MM" / "-HH:MM" from -12:00 to +14:00.
 * Caveat: offsets are fixed; no zone with daylight saving is accepted (China
 * has had none since 1991), so one offset serves every time shown.
 * 0 and *minutes set, or -1 (and *minutes 0) for anything else. */
int console_time_zone_parse(const char *name, int *minutes);

/* Routes (server/routes.c lists them). */
void console_route_redirect(call_t *c); /* GET /console -> /console/ */
void console_route_index(call_t *c);    /* GET /console/ */
void console_route_file(call_t *c);     /* GET /console/{name} */
void console_route_login(call_t *c);    /* POST /console/api/login {"username","password","device_id"?} */
void console_route_logout(call_t *c);   /* POST /console/api/logout */
/* GET /console/api/session -> {"user","device","csrf","time_zone":{"name","utc_offset","offset_minutes"}} */
void console_route_session(call_t *c);
void console_route_people(call_t *c);   /* GET /console/api/people -> {"items":[{"id","name",...}]} */

#endif
