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
 */
#ifndef CASESYNC_FAULT_H
#define CASESYNC_FAULT_H

#ifdef CASESYNC_FAULTS
/* Points the hooks at data_dir (the last store opened wins). Copies it. */
void fault_attach(const char *data_dir);
#else
#define fault_attach(data_dir) ((void)(data_dir))
#endif

#endif
