/* deadline.h -- a deadline for reading request bodies, so that a client that
 * trickles its body cannot hold a worker thread.
 *
 * civetweb's request_timeout_ms bounds the request head as a whole, but a body
 * read (mg_read) only gives up when one wait for the next byte lasts the whole
 * timeout: a client sending one byte every few hundred milliseconds keeps a
 * worker thread for as long as it likes. deadline_read() is mg_read() under a
 * clock, in the manner of Apache's mod_reqtimeout: a request's body must have
 * arrived within timeout + received / DEADLINE_MIN_RATE seconds of its first
 * read, so a slow but honest phone (a few KB/s) is never cut, and a trickle is
 * cut one timeout after it starts.
 *
 * Caveats:
 * - The clock interrupts civetweb's poll() with SIGURG sent to the reading
 *   thread by a per-thread POSIX timer, armed only inside deadline_read().
 *   SIGURG is ignored by default, so a stray one is harmless; deadline_init()
 *   installs a handler without SA_RESTART.
 * - The clock is per worker thread and restarts with deadline_begin(), which
 *   casesyncd calls from civetweb's begin_request callback (one request at a
 *   time per thread). Without deadline_init() (tests, tools) deadline_read()
 *   is plain mg_read().
 * - Bytes read before the deadline are returned as usual; the call after them
 *   fails. A failed read means the connection cannot carry another request:
 *   answer with keep-alive off (http.c does for a body not read to its end).
 */
#ifndef CASESYNC_DEADLINE_H
#define CASESYNC_DEADLINE_H

#include <stddef.h>

#include <civetweb.h>

#define DEADLINE_MIN_RATE 500 /* bytes per second that extend the deadline by one second */

/* Sets the timeout (milliseconds, > 0) and installs the SIGURG handler.
 * Once, before civetweb starts its threads. 0, or -1 with errno. */
int deadline_init(int timeout_ms);

/* A new request starts on this thread: its body clock starts at its first read. */
void deadline_begin(void);

/* mg_read() that returns by the deadline: the bytes read (> 0), 0 at the end
 * of the body, or -1 when the body broke off or the deadline passed (then
 * deadline_expired() says so). */
int deadline_read(struct mg_connection *conn, void *buf, size_t len);

/* Did the last failed deadline_read() on this thread fail by the clock? 1 or 0. */
int deadline_expired(void);

#endif
