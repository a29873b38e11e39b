/* fuzz.h -- what the libFuzzer targets of tests/fuzz/ share.
 *
 * Each fuzz_<name>.c defines LLVMFuzzerTestOneInput(). `make fuzz` links one
 * clang binary per target; `make test` compiles the same files with
 * -DLLVMFuzzerTestOneInput=fuzz_<name> into the test binary, which replays
 * every seed and regression input through them (tests/test_fuzz_replay.c).
 *
 * Caveats:
 * - A target never returns an error for a bad input: a bad input is the point.
 *   It calls FUZZ_CHECK() on the contracts of the code it drives, and a broken
 *   contract aborts, which libFuzzer and the replay test both count as a crash.
 * - The engine of fuzz_engine() is shared by every input of one process: state
 *   carries over from input to input (records pushed stay), as it does in a
 *   running server. A crash that needs earlier inputs shows in libFuzzer's
 *   output as a crash with no standalone reproducer; run the corpus in order.
 */
#ifndef CASESYNC_FUZZ_H
#define CASESYNC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sync/sync.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A transition judged against a record known only by procedure, status and fields. */
static inline schema_judgement_t judge_tr(const schema_t *s, const char *proc, const char *cur, const char *to,
                                          schema_role_t role, const cJSON *fields, schema_err_t *e) {
    schema_view_t v = {.procedure = proc, .status = cur, .fields = fields};
    return schema_judge_transition(s, &v, to, role, e);
}


/* Aborts with the failed condition when a contract does not hold. */
#define FUZZ_CHECK(cond)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: fuzz contract broken: %s\n", __FILE__, __LINE__, #cond);                 \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

/* ---- a throwaway engine (fuzz_engine.c) ------------------------------------------ */

/* Who pushes and pulls: four users of unit U1, each signed in on a device. */
enum { FUZZ_OFFICER = 0, FUZZ_SUPERVISOR, FUZZ_ADMIN, FUZZ_AUXILIARY, FUZZ_NWHO };

/* The engine, opened on first use in a fresh folder under /dev/shm (or
 * $TMPDIR, or /tmp) with the four users signed in, a few records pushed and
 * the officer's grants changed once (grants_version 2), so pulls and pushes
 * meet real data. Aborts when it cannot be set up. Owned by fuzz_engine.c:
 * valid until fuzz_engine_close(). */
sync_t *fuzz_engine(void);
/* The signed-in principal of one of the four users (FUZZ_OFFICER ...), or
 * NULL for another index. Valid until fuzz_engine_close(). */
const sync_principal_t *fuzz_principal(int who);
/* The next changeset_seq of that principal's device, as the harness counts it;
 * the caller reports what a push answered with fuzz_changeset_done(). */
int64_t fuzz_next_changeset(int who);
/* rc and err of a push by `who` that sent changeset_seq `seq`. */
void fuzz_changeset_done(int who, int64_t seq, int rc, int replay, const sync_error_t *err);
/* Closes the engine and removes its folder. Safe to call twice; registered
 * with atexit() on open. The next fuzz_engine() opens a fresh one. */
void fuzz_engine_close(void);

#endif
