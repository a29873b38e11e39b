/* merge.c -- the per-field merge decision (see merge.h). */
#include "sync/merge.h"

#include <string.h>

int merge_concurrent(const merge_meta_t *server, int64_t base_version, const char *device) {
    const char *sdev = server->device ? server->device : "";
    return server->version > base_version && strcmp(sdev, device ? device : "") != 0;
}

merge_decision_t merge_decide(schema_policy_t policy, const merge_meta_t *server, int64_t base_version,
                              const char *device, int64_t at_ms, int same) {
    if (!merge_concurrent(server, base_version, device)) return same ? MERGE_SKIP : MERGE_APPLY;
    switch (policy) {
    case POLICY_LWW: {
        if (same) return MERGE_SKIP;
        const char *sdev = server->device ? server->device : "";
        int client =
            at_ms > server->at_ms || (at_ms == server->at_ms && strcmp(device ? device : "", sdev) > 0);
        return client ? MERGE_LWW_CLIENT : MERGE_LWW_SERVER;
    }
    case POLICY_UNION: return MERGE_UNION;
    default: return same ? MERGE_SKIP : MERGE_MANUAL; /* manual, and anything a person must judge */
    }
}

const char *merge_decision_name(merge_decision_t d) {
    static const char *const names[] = {"skip", "apply", "lww_client", "lww_server", "union", "manual"};
    return (unsigned)d < sizeof names / sizeof names[0] ? names[d] : "?";
}
