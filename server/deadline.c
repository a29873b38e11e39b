/* deadline.c -- request bodies read under a clock (deadline.h). */
#include "server/deadline.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

#define DEADLINE_SIGNAL SIGURG
/* After the deadline the signal repeats until the read returns: one that
 * lands between two polls would otherwise be lost. */
#define REPEAT_NS (50L * 1000 * 1000)

static int timeout_ms; /* 0: deadline_init() was not called */
static pthread_key_t timer_key;

/* This thread's request: when its body clock started and what it read. */
static __thread int started, expired;
static __thread double start_s;
static __thread unsigned long long got;
static __thread int head_armed; /* deadline_head_begin() armed the timer */

static void on_signal(int sig) {
    (void)sig; /* only to interrupt poll() */
}

static void timer_free(void *p) {
    timer_t *t = p;
    timer_delete(*t);
    free(t);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int deadline_init(int ms) {
    struct sigaction sa;
    if (ms <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (!timeout_ms && pthread_key_create(&timer_key, timer_free) != 0) return -1;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: poll() must return EINTR */
    if (sigaction(DEADLINE_SIGNAL, &sa, NULL) != 0) return -1;
    timeout_ms = ms;
    return 0;
}

/* Disarms the head clock when it is armed. */
static void head_stop(void);

void deadline_begin(void) {
    head_stop();
    started = expired = 0;
    got = 0;
}

/* This thread's timer, made on first use (freed when the thread ends); NULL
 * when none can be made. */
static timer_t *thread_timer(void) {
    timer_t *t = pthread_getspecific(timer_key);
    struct sigevent ev;
    if (t) return t;
    if (!(t = malloc(sizeof *t))) return NULL;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = DEADLINE_SIGNAL;
    ev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
    if (timer_create(CLOCK_MONOTONIC, &ev, t) != 0) {
        free(t);
        return NULL;
    }
    if (pthread_setspecific(timer_key, t) != 0) {
        timer_free(t);
        return NULL;
    }
    return t;
}

static void arm(timer_t *t, double secs) {
    struct itimerspec it;
    memset(&it, 0, sizeof it);
    if (secs > 0) {
        it.it_value.tv_sec = (time_t)secs;
        it.it_value.tv_nsec = (long)((secs - (double)it.it_value.tv_sec) * 1e9);
        if (it.it_value.tv_sec == 0 && it.it_value.tv_nsec == 0) it.it_value.tv_nsec = 1;
        it.it_interval.tv_nsec = REPEAT_NS;
    }
    timer_settime(*t, 0, &it, NULL); /* all zero: disarmed */
}

int deadline_read(struct mg_connection *conn, void *buf, size_t len) {
    expired = 0;
    if (!timeout_ms || !conn) return mg_read(conn, buf, len);
    double now = now_s();
    if (!started) {
        started = 1;
        start_s = now;
        got = 0;
    }
    double at = start_s + timeout_ms / 1000.0 + (double)got / DEADLINE_MIN_RATE;
    if (now >= at) {
        expired = 1;
        return -1;
    }
    timer_t *t = thread_timer();
    if (!t) return mg_read(conn, buf, len); /* no timer: civetweb's timeout alone */
    arm(t, at - now);
    int n = mg_read(conn, buf, len);
    arm(t, 0);
    if (n > 0) got += (unsigned long long)n;
    if (n < 0 && now_s() >= at) expired = 1;
    return n;
}

int deadline_expired(void) {
    return expired;
}

int deadline_head_begin(int ms) {
    if (!timeout_ms || ms <= 0) return -1;
    timer_t *t = thread_timer();
    if (!t) return -1;
    arm(t, ms / 1000.0);
    head_armed = 1;
    return 0;
}

static void head_stop(void) {
    if (!head_armed) return;
    timer_t *t = pthread_getspecific(timer_key);
    if (t) arm(t, 0);
    head_armed = 0;
}

void deadline_head_end(void) {
    head_stop();
}
