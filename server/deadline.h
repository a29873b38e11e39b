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

/* A new request starts on this thread (its head is in: the head clock
 * stops): its body clock starts at its first read. */
void deadline_begin(void);

/* The request head: civetweb's request_timeout_ms bounds it too, but that
 * one value is also the longest wait for the next byte of a body and of a
 * response, so it cannot be short. A client that connects and sends nothing
 * (or a byte now and then) holds a worker thread for all of it; a few
 * hundred such sockets leave no thread for anyone else.
 *
 * deadline_head_begin() (from civetweb's init_connection callback, before
 * the worker reads the first request head of a new connection) starts a
 * clock of ms on this thread; when it runs out, SIGURG interrupts civetweb's
 * poll(), the head read fails and civetweb drops the connection (400 when
 * part of a head came, silence when nothing did). deadline_begin() (the head
 * is in) and deadline_head_end() (connection closed) stop it. Later heads on
 * a kept-alive connection are bounded by civetweb's keep_alive_timeout_ms.
 * 0, or -1 when there is no clock (no deadline_init(), no timer). */
int deadline_head_begin(int ms);
void deadline_head_end(void);

/* mg_read() that returns by the deadline: the bytes read (> 0), 0 at the end
 * of the body, or -1 when the body broke off or the deadline passed (then
 * deadline_expired() says so). */
int deadline_read(struct mg_connection *conn, void *buf, size_t len);

/* Did the last failed deadline_read() on this thread fail by the clock? 1 or 0. */
int deadline_expired(void);

#endif
