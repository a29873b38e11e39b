/* calendar.h -- working days as data, and the due time of a deadline.
 *
 * A calendar holds, per year, the State Council's statutory days off
 * (holidays) and the weekend days its notice makes working days (调休,
 * workdays), read from schema/calendar/YYYY.json. Everything here is a pure
 * function of its arguments: no clock, no log, no global state.
 *
 * Caveats:
 * - Days are China days (UTC+8, no daylight saving): a time in ms since the
 *   epoch belongs to the day of its China wall-clock date.
 * - A year the calendar does not hold counts Monday to Friday as working
 *   days. Functions that may meet such a year report it through
 *   *fallback_year (the first such year met, 0 when none) so that the caller
 *   can make it visible; they never fail for it.
 * - A provisional year (a file with "provisional": true, e.g. written before
 *   the State Council's notice) is used like any other; it is only flagged.
 * - Period rules follow the general rules for periods (民法典 Arts. 201, 203):
 *   the day the period starts on is not counted, and a period ends at the end
 *   (24:00 China time) of its last day. See calendar_due().
 * - A calendar_t is not changed after it is built, so one may be shared by
 *   any number of threads.
 */
#ifndef CASESYNC_CALENDAR_H
#define CASESYNC_CALENDAR_H

#include <stddef.h>
#include <stdint.h>

typedef struct calendar calendar_t;

/* The kinds of day a deadline counts. */
typedef enum {
    CAL_UNIT_DAYS = 0,         /* natural days (自然日) */
    CAL_UNIT_WORKING_DAYS = 1, /* working days (工作日, 行政处罚法 Art. 85) */
    CAL_UNIT_HOURS = 2         /* hours, from the start time itself */
} calendar_unit_t;

#define CAL_YEAR_MIN 1970
#define CAL_YEAR_MAX 9999
#define CAL_CHINA_OFFSET_MS (8 * 3600 * 1000LL)
#define CAL_DAY_MS 86400000LL

/* A new empty calendar (every year falls back); NULL when out of memory.
 * Free it with calendar_free (which accepts NULL). */
calendar_t *calendar_new(void);
void calendar_free(calendar_t *c);

/* Adds one year from the text of its file:
 *   {"year":2026,"source":"...","note"?:"...","provisional"?:bool,
 *    "holidays":["2026-01-01",...],"workdays":["2026-01-04",...]}
 * Every date must be a real date of that year, listed once; a workday must
 * be a Saturday or Sunday (a 调休 day) and never also a holiday; "source" is
 * a non-empty string; no other members. `expect_year` > 0 requires "year" to
 * be that (the file name's year). 0, or -1 with a sentence in msg (the
 * calendar is unchanged). */
int calendar_add_year(calendar_t *c, const char *json, size_t len, int expect_year, char *msg, size_t cap);

/* 0: the year has no calendar; 1: it has one; 2: it has a provisional one. */
int calendar_year_kind(const calendar_t *c, int year);
/* The years held, ascending, into years[0..max-1]; returns how many are held
 * (which may be more than max). */
int calendar_years(const calendar_t *c, int *years, int max);

/* The China day number (days since 1970-01-01 in China) of a time. */
int64_t calendar_day_of(int64_t ms);
/* The time 00:00 China of a day number. */
int64_t calendar_day_start(int64_t day);
/* The civil date of a day number. */
void calendar_date(int64_t day, int *y, int *m, int *d);
/* "YYYY-MM-DD" -> day number; 0, or -1 when it is not a real date. */
int calendar_parse_date(const char *s, int64_t *day);

/* Is the day a working day? 1 yes, 0 no. A year without a calendar counts
 * Monday..Friday and sets *fallback_year (when not NULL and still 0). */
int calendar_is_working_day(const calendar_t *c, int64_t day, int *fallback_year);

/* The due time of a period of n units starting at start_ms.
 * - CAL_UNIT_HOURS: start_ms + n hours.
 * - CAL_UNIT_DAYS: the start day is not counted; the last day is the n-th
 *   day after it; when extend is set and that day is not a working day, the
 *   last day moves to the next working day (民法典 Art. 203: a period whose
 *   last day is a statutory holiday ends on the day after the holiday).
 * - CAL_UNIT_WORKING_DAYS: the start day is not counted; the last day is the
 *   n-th working day after it (n = 0: the start day itself).
 * Days end at 24:00 China time: the due time is 00:00 China of the day after
 * the last day. *fallback_year as in calendar_is_working_day. 0 with *due_ms
 * set, or -1 (n < 0, an unknown unit, or a date past CAL_YEAR_MAX) with
 * *due_ms 0. */
int calendar_due(const calendar_t *c, int64_t start_ms, int n, calendar_unit_t unit, int extend,
                 int64_t *due_ms, int *fallback_year);

/* "days", "working_days", "hours" -> unit; -1 when unknown. */
int calendar_unit_parse(const char *name);
const char *calendar_unit_name(calendar_unit_t u);

#endif
