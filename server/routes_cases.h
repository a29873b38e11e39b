/* routes_cases.h -- the consolidated-state endpoints of PROTOCOL §6 for
 * supervisors: case queries, statistics and the streamed export. routes.c
 * lists them in its route table.
 *
 * Caveats:
 * - The export is sent with Transfer-Encoding: chunked as the engine produces
 *   it, page by page; an error after the first byte can only cut the stream
 *   short (no final chunk), which a client sees as an incomplete transfer.
 */
#ifndef CASESYNC_ROUTES_CASES_H
#define CASESYNC_ROUTES_CASES_H

#include "server/route.h"

/* GET /v1/cases?status=&type=&grid=&assignee=&unit=&overdue=&updated_after=&q=&limit=&cursor= */
void cases_route_list(call_t *c);
/* GET /v1/stats?from=&to=&group_by=&unit= */
void cases_route_stats(call_t *c);
/* GET /v1/export?format=ndjson|csv&<the filters of /v1/cases> */
void cases_route_export(call_t *c);

#endif
