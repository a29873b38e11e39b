/* openapi.h -- docs/openapi.yaml, built into casesyncd and served at
 * GET /v1/openapi.yaml.
 *
 * Caveats:
 * - The bytes are those of docs/openapi.yaml when casesyncd was linked
 *   (the assembler's .incbin; the Makefile rebuilds server/openapi.o when
 *   the file changes). They are not NUL-terminated: use the length.
 */
#ifndef CASESYNC_SERVER_OPENAPI_H
#define CASESYNC_SERVER_OPENAPI_H

#include <stddef.h>

/* The document and its length in bytes. */
const char *openapi_yaml(size_t *len);

#endif
