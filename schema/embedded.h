/* embedded.h -- the shipped schema (schema/casesync.json) and its working-day
 * calendar (schema/calendar/YYYY.json), built into the engine, so a binary
 * copied anywhere starts with the schema it was built with.
 *
 * Caveats:
 * - The bytes are those of the files when the engine was built (the
 *   Makefile regenerates build/gen/schema_embedded.c from them with
 *   scripts/embed-schema.sh whenever one changes).
 * - A schema file found at start (sync/engine.c: the config's schema_path,
 *   DATA/schema.json, one installed beside the binary) overrides the
 *   built-in copy.
 */
#ifndef CASESYNC_SCHEMA_EMBEDDED_H
#define CASESYNC_SCHEMA_EMBEDDED_H

#include <stddef.h>

/* The schema JSON and its length (not counting the NUL after it). */
const char *schema_embedded_json(size_t *len);

/* The calendar files: their number, and in *names ("YYYY.json", ascending),
 * *texts and *lens the files (arrays of that many). */
int schema_embedded_calendars(const char *const **names, const char *const **texts, const size_t **lens);

#endif
