/* routes_workflows.h -- the field workflows' endpoints (督办 list, a party's
 * cases, repeat offenders, hotline import): request parsing onto
 * sync/workflows.c. routes.c lists them in its route table.
 *
 * Caveat: a party's id travels only in a POST body, never in a URL (URLs end
 * up in access logs).
 */
#ifndef CASESYNC_ROUTES_WORKFLOWS_H
#define CASESYNC_ROUTES_WORKFLOWS_H

#include "server/route.h"

/* GET /v1/supervision?state=&unit= */
void wf_route_supervision(call_t *c);
/* POST /v1/parties/cases {"id_no"|"uscc","unit"?} */
void wf_route_party_cases(call_t *c);
/* GET /v1/parties/repeat?unit=&min= */
void wf_route_repeat(call_t *c);
/* POST /v1/hotline/import?unit= {"tickets":[...]} */
void wf_route_hotline_import(call_t *c);

#endif
