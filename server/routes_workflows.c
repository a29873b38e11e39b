/* routes_workflows.c -- see routes_workflows.h. */
#include "server/routes_workflows.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define UNIT_BUF 257
#define STATE_BUF 16

static int param(call_t *c, const char *name, char *dst, size_t size) {
    if (route_query(c->req, name, dst, size) == -2) {
        http_send_errorf(c->req, 400, "bad_request", name, "%s is too long or not text", name);
        return -1;
    }
    return 0;
}

void wf_route_supervision(call_t *c) {
    sync_error_t err = {0};
    char state[STATE_BUF] = "", unit[UNIT_BUF] = "", *out = NULL;
    if (param(c, "state", state, sizeof state) || param(c, "unit", unit, sizeof unit)) return;
    int rc = sync_supervision(c->rt->sync, c->p, state, unit, &out, &err);
    route_reply(c, rc, out, &err, 200);
}

void wf_route_party_cases(call_t *c) {
    sync_error_t err = {0};
    char *out = NULL;
    cJSON *body = route_body_json(c);
    if (!body) return;
    int rc = sync_party_cases(c->rt->sync, c->p, body, &out, &err);
    cJSON_Delete(body);
    route_reply(c, rc, out, &err, 200);
}

void wf_route_repeat(call_t *c) {
    sync_error_t err = {0};
    char unit[UNIT_BUF] = "", *out = NULL;
    int min;
    if (param(c, "unit", unit, sizeof unit) || route_query_int(c, "min", 2, 2, 1000, &min) < 0) return;
    int rc = sync_repeat_offenders(c->rt->sync, c->p, unit, min, &out, &err);
    route_reply(c, rc, out, &err, 200);
}

void wf_route_hotline_import(call_t *c) {
    sync_error_t err = {0};
    char unit[UNIT_BUF] = "", *out = NULL;
    if (param(c, "unit", unit, sizeof unit)) return;
    /* The platform's CSV export, or {"tickets":[...]}. */
    const char *ct = mg_get_header(c->req->conn, "Content-Type");
    cJSON *body = NULL, *tickets = NULL;
    int rc;
    if (ct && strncasecmp(ct, "text/csv", 8) == 0) {
        http_error_t e;
        char *csv = NULL;
        size_t len = 0;
        if (http_read_body(c->req, &c->rt->limits, &csv, &len, &e) < 0) {
            http_send_error(c->req, &e);
            return;
        }
        rc = sync_hotline_csv_tickets(csv ? csv : "", len, &tickets, &err);
        free(csv);
        http_body_done(c->req);
        if (rc == 0)
            rc = sync_hotline_import(c->rt->sync, c->p, tickets, unit, &out, &err);
        cJSON_Delete(tickets);
        route_reply(c, rc, out, &err, 200);
        return;
    }
    if (!(body = route_body_json(c))) return;
    rc = sync_hotline_import(c->rt->sync, c->p, cJSON_GetObjectItemCaseSensitive(body, "tickets"), unit, &out,
                             &err);
    cJSON_Delete(body);
    route_reply(c, rc, out, &err, 200);
}
