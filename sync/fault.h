/* fault.h -- disk faults on demand, for tests: a write, a sync or a rename
 * of the store or of evidence files fails with the errno a test asks for.
 *
 * Caveats:
 * - Compiled only when CASESYNC_FAULTS is defined, which the Makefile does
 *   for the sanitizer builds of `make test` alone; release binaries hold none
 *   of it (fault_attach() is then a no-op macro).
 * - It works by interposition: the test binaries define pwrite, writev,
 *   fsync, fdatasync and rename themselves, so the calls LMDB makes inside
 *   mdb_txn_commit fail exactly as a failing disk would make them fail
 *   (data pages, their fdatasync, or the meta page that makes LMDB refuse
 *   every transaction until the environment is opened again).
 * - Control: the file DATA/.fault, read again whenever it changes, one rule
 *   a line:
 *       CALL TARGET ERRNO [COUNT|*] [after N]
 *   CALL: write (pwrite, writev), sync (fsync, fdatasync), rename, any.
 *   TARGET: store (DATA/data.mdb), store-meta (its two meta pages), upload
 *   (DATA/uploads/...), blob (DATA/blobs/...), any (all four).
 *   ERRNO: EIO, ENOSPC, EDQUOT, EROFS. COUNT: how many matching calls fail
 *   (default 1; * = every one until the file changes or goes). after N: the
 *   first N matching calls go through. Lines starting with # are ignored.
 *   Removing the file is the disk coming back.
 * - Counts are per process: the command line opening the same data folder
 *   while the file is there gets its own full counts.
 * - Every fault injected appends a line "CALL TARGET ERRNO" to
 *   DATA/.fault.log and says so on standard error, so a test can tell a fault
 *   that fired from one that never did.
 *
 * Crash points: fault_point(NAME) ends the process at once (_exit(86), no
 * cleanup, as kill -9 would) when the file DATA/.crash holds NAME; the file
 * is removed first, so the restarted process goes on, and "crash NAME" is
 * appended to DATA/.fault.log. Points: log-acked (store.c: the replicated
 * log has acknowledged a batch that is not yet committed here).
 *
 * Allocation faults (out of memory), two ways:
 * - In the file: "alloc writer ENOMEM [COUNT|*] [after N]" fails cJSON
 *   allocations made by the store's writer thread while it runs write jobs
 *   (the hooks of util_json_hooks()): the first N go through, then COUNT fail
 *   (* = every one after N, until the file changes). Only the writer thread
 *   counts, per process as above; the writer reads the file once per job,
 *   not per allocation. Logged as "alloc writer ENOMEM".
 * - In process, for unit tests: fault_alloc_arm(after, count) makes the
 *   calling thread's allocations at hooked sites (cJSON's, fault_malloc())
 *   fail the same way. Nothing is logged.
 */
#ifndef CASESYNC_FAULT_H
#define CASESYNC_FAULT_H

#include <stddef.h>
#include <stdlib.h>

#ifdef CASESYNC_FAULTS
/* Points the hooks at data_dir (the last store opened wins). Copies it. */
void fault_attach(const char *data_dir);
/* Marks the calling thread as the store's writer (store.c). */
void fault_writer_thread(void);
/* The writer, before each job: reads DATA/.fault again if it changed. */
void fault_job_begin(void);
/* Must the calling thread's next hooked allocation fail? Counts it. */
int fault_alloc_check(void);
/* The calling thread only: its next `after` hooked allocations go through,
 * then `count` fail (-1: every one). fault_alloc_arm(0, 0) disarms. */
void fault_alloc_arm(long after, long count);
/* malloc, unless fault_alloc_check() says to fail (then NULL, errno ENOMEM). */
void *fault_malloc(size_t n);
/* Ends the process here when DATA/.crash names this point (see above). */
void fault_point(const char *name);
#else
#define fault_attach(data_dir) ((void)(data_dir))
#define fault_writer_thread() ((void)0)
#define fault_job_begin() ((void)0)
#define fault_alloc_check() 0
#define fault_malloc(n) malloc(n)
#define fault_point(name) ((void)(name))
#endif

#endif
