/* routes_upload.h -- the evidence endpoints of PROTOCOL §7: tus 1.0.0 uploads
 * (core, creation, checksum, termination), blob reads with Range, and the
 * missing-evidence list. routes.c lists them in its route table.
 *
 * Caveats:
 * - Bodies of PATCH requests are streamed into the engine in chunks; they
 *   never pass through http_read_body() and its size limits (the upload's
 *   own length is the limit).
 * - Blob bodies are streamed from the file; they are never gzip-encoded.
 */
#ifndef CASESYNC_ROUTES_UPLOAD_H
#define CASESYNC_ROUTES_UPLOAD_H

#include "server/route.h"

/* OPTIONS /v1/uploads: tus discovery; needs no token. */
void upload_route_options(call_t *c);
/* POST /v1/uploads: tus creation. */
void upload_route_create(call_t *c);
/* GET and HEAD /v1/uploads/{id}: the offset (HEAD is the tus call). */
void upload_route_status(call_t *c);
/* PATCH /v1/uploads/{id}: appends the body. */
void upload_route_patch(call_t *c);
/* DELETE /v1/uploads/{id}: tus termination. */
void upload_route_delete(call_t *c);
/* POST /v1/uploads/{id} with X-HTTP-Method-Override: PATCH or DELETE. */
void upload_route_override(call_t *c);
/* GET and HEAD /v1/blobs/{sha256}. */
void upload_route_blob(call_t *c);
/* GET /v1/evidence/missing. */
void upload_route_missing(call_t *c);

#endif
