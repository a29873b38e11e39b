/* merge.h -- the per-field merge decision of a pushed update, as a pure
 * function: the field's policy, the server's meta of that field, the
 * change's base version, device and time in; a decision out. No store, no
 * cJSON trees: sync/push.c carries the decision out.
 *
 * Caveats:
 * - "Concurrent" is PROTOCOL §4's rule: the field changed on the server after
 *   base_version by another device. A device never conflicts with its own
 *   earlier writes, whatever its base.
 * - `same` is the caller's comparison of the pushed value with the server's
 *   (a null push against an absent field is the same).
 * - LWW ties (equal times) go to the greater device id, so every server and
 *   every replay decides alike.
 */
#ifndef CASESYNC_MERGE_H
#define CASESYNC_MERGE_H

#include <stdint.h>

#include "schema/schema.h"

typedef enum {
    MERGE_SKIP = 0,   /* nothing to do: the value is already the server's */
    MERGE_APPLY,      /* not concurrent: take the pushed value */
    MERGE_LWW_CLIENT, /* concurrent lww: the push is later and wins; the loser is logged */
    MERGE_LWW_SERVER, /* concurrent lww: the server's value is later and stays; logged */
    MERGE_UNION,      /* concurrent union: the set union of both */
    MERGE_MANUAL      /* concurrent manual (legal) field: a conflict for a person; server stands */
} merge_decision_t;

/* The server's meta of one field. device "" and version 0 when never set. */
typedef struct merge_meta {
    int64_t version;
    const char *device;
    int64_t at_ms;
} merge_meta_t;

merge_decision_t merge_decide(schema_policy_t policy, const merge_meta_t *server, int64_t base_version,
                              const char *device, int64_t at_ms, int same);

/* Was the field changed after base_version by another device? */
int merge_concurrent(const merge_meta_t *server, int64_t base_version, const char *device);

const char *merge_decision_name(merge_decision_t d);

#endif
