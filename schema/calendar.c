/* calendar.c -- working days from a calendar held as data (see calendar.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "schema/calendar.h"

#define CAL_DAYS_PER_YEAR_MAX 366
#define CAL_PERIOD_MAX 36600 /* units of one period: a hundred years of days */

typedef struct cal_year {
    int year;
    int kind; /* 1 official, 2 provisional */
} cal_year_t;

struct calendar {
    cal_year_t *years;
    int nyears;
    int64_t *holidays, *workdays; /* day numbers, ascending */
    size_t nholidays, nworkdays;
};

/* ---- dates ------------------------------------------------------------------------ */

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void calendar_date(int64_t z, int *y, int *m, int *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

int64_t calendar_day_of(int64_t ms) {
    return floor_div(ms + CAL_CHINA_OFFSET_MS, CAL_DAY_MS);
}

int64_t calendar_day_start(int64_t day) {
    return day * CAL_DAY_MS - CAL_CHINA_OFFSET_MS;
}

/* 0 Monday .. 6 Sunday; 1970-01-01 was a Thursday. */
static int weekday(int64_t day) {
    int64_t w = (day + 3) % 7;
    return (int)(w < 0 ? w + 7 : w);
}

int calendar_parse_date(const char *s, int64_t *day) {
    int v[8], k = 0;
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-') return -1;
    for (int i = 0; i < 10; i++) {
        if (i == 4 || i == 7) continue;
        if (s[i] < '0' || s[i] > '9') return -1;
        v[k++] = s[i] - '0';
    }
    int y = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3], m = v[4] * 10 + v[5], d = v[6] * 10 + v[7];
    if (y < CAL_YEAR_MIN || m < 1 || m > 12 || d < 1 || d > 31) return -1;
    int64_t z = days_from_civil(y, m, d);
    int yy, mm, dd;
    calendar_date(z, &yy, &mm, &dd);
    if (yy != y || mm != m || dd != d) return -1; /* 2026-02-30 */
    *day = z;
    return 0;
}

static int year_of(int64_t day) {
    int y, m, d;
    calendar_date(day, &y, &m, &d);
    return y;
}

/* ---- building ------------------------------------------------------------------------ */

calendar_t *calendar_new(void) {
    return calloc(1, sizeof(calendar_t));
}

void calendar_free(calendar_t *c) {
    if (!c) return;
    free(c->years);
    free(c->holidays);
    free(c->workdays);
    free(c);
}

static int cmp_day(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int has_day(const int64_t *days, size_t n, int64_t day) {
    return n && bsearch(&day, days, n, sizeof *days, cmp_day) != NULL;
}

/* Reads a list of dates of `year` into out (at most CAL_DAYS_PER_YEAR_MAX). */
static int read_days(const cJSON *list, const char *name, int year, int64_t *out, size_t *n, char *msg,
                     size_t cap) {
    *n = 0;
    if (!cJSON_IsArray(list)) {
        snprintf(msg, cap, "%s: must be a list of dates YYYY-MM-DD", name);
        return -1;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        int64_t day;
        if (!cJSON_IsString(it) || calendar_parse_date(it->valuestring, &day) != 0) {
            snprintf(msg, cap, "%s[%zu]: not a date YYYY-MM-DD", name, *n);
            return -1;
        }
        if (year_of(day) != year) {
            snprintf(msg, cap, "%s[%zu]: %s is not in %d", name, *n, it->valuestring, year);
            return -1;
        }
        if (*n == CAL_DAYS_PER_YEAR_MAX) {
            snprintf(msg, cap, "%s: more days than a year has", name);
            return -1;
        }
        for (size_t i = 0; i < *n; i++) {
            if (out[i] == day) {
                snprintf(msg, cap, "%s: %s is listed twice", name, it->valuestring);
                return -1;
            }
        }
        out[(*n)++] = day;
    }
    return 0;
}

/* Merges add[0..n) into the sorted *arr of *len days. */
static int merge_days(int64_t **arr, size_t *len, const int64_t *add, size_t n) {
    if (!n) return 0;
    int64_t *a = realloc(*arr, (*len + n) * sizeof *a);
    if (!a) return -1;
    memcpy(a + *len, add, n * sizeof *a);
    *len += n;
    qsort(a, *len, sizeof *a, cmp_day);
    *arr = a;
    return 0;
}

int calendar_add_year(calendar_t *c, const char *json, size_t len, int expect_year, char *msg, size_t cap) {
    static const char *const keys[] = {"year", "source", "note", "provisional", "holidays", "workdays", NULL};
    int64_t hol[CAL_DAYS_PER_YEAR_MAX], work[CAL_DAYS_PER_YEAR_MAX];
    size_t nh = 0, nw = 0;
    int rc = -1;
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!cJSON_IsObject(doc)) {
        snprintf(msg, cap, "not a JSON object");
        goto done;
    }
    for (const cJSON *m = doc->child; m; m = m->next) {
        int known = 0;
        for (const char *const *k = keys; *k && !known; k++)
            known = strcmp(*k, m->string) == 0;
        if (!known) {
            snprintf(msg, cap, "unknown member \"%s\"", m->string);
            goto done;
        }
    }
    const cJSON *y = cJSON_GetObjectItemCaseSensitive(doc, "year");
    if (!cJSON_IsNumber(y) || y->valuedouble != (double)(int)y->valuedouble || y->valueint < CAL_YEAR_MIN ||
        y->valueint > CAL_YEAR_MAX) {
        snprintf(msg, cap, "year: must be a year %d..%d", CAL_YEAR_MIN, CAL_YEAR_MAX);
        goto done;
    }
    int year = y->valueint;
    if (expect_year > 0 && year != expect_year) {
        snprintf(msg, cap, "year: the file is named for %d but says %d", expect_year, year);
        goto done;
    }
    if (calendar_year_kind(c, year)) {
        snprintf(msg, cap, "year %d is loaded twice", year);
        goto done;
    }
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(doc, "source");
    if (!cJSON_IsString(src) || !*src->valuestring) {
        snprintf(msg, cap, "source: say where the days come from (the State Council's notice)");
        goto done;
    }
    const cJSON *note = cJSON_GetObjectItemCaseSensitive(doc, "note"),
                *prov = cJSON_GetObjectItemCaseSensitive(doc, "provisional");
    if ((note && !cJSON_IsString(note)) || (prov && !cJSON_IsBool(prov))) {
        snprintf(msg, cap, "%s",
                 note && !cJSON_IsString(note) ? "note: must be a string"
                                               : "provisional: must be true or false");
        goto done;
    }
    if (read_days(cJSON_GetObjectItemCaseSensitive(doc, "holidays"), "holidays", year, hol, &nh, msg, cap) ||
        read_days(cJSON_GetObjectItemCaseSensitive(doc, "workdays"), "workdays", year, work, &nw, msg, cap))
        goto done;
    for (size_t i = 0; i < nw; i++) {
        int yy, mm, dd;
        calendar_date(work[i], &yy, &mm, &dd);
        if (weekday(work[i]) < 5) {
            snprintf(
                msg, cap,
                "workdays: %04d-%02d-%02d is a weekday already (a 调休 working day is a Saturday or Sunday)",
                yy, mm, dd);
            goto done;
        }
        for (size_t k = 0; k < nh; k++) {
            if (hol[k] == work[i]) {
                snprintf(msg, cap, "%04d-%02d-%02d is both a holiday and a working day", yy, mm, dd);
                goto done;
            }
        }
    }
    cal_year_t *ys = realloc(c->years, (size_t)(c->nyears + 1) * sizeof *ys);
    if (!ys) {
        snprintf(msg, cap, "out of memory");
        goto done;
    }
    c->years = ys;
    if (merge_days(&c->holidays, &c->nholidays, hol, nh) ||
        merge_days(&c->workdays, &c->nworkdays, work, nw)) {
        snprintf(msg, cap, "out of memory");
        goto done;
    }
    int i = c->nyears++;
    while (i > 0 && c->years[i - 1].year > year) {
        c->years[i] = c->years[i - 1];
        i--;
    }
    c->years[i].year = year;
    c->years[i].kind = cJSON_IsTrue(prov) ? 2 : 1;
    rc = 0;
done:
    cJSON_Delete(doc);
    return rc;
}

/* ---- reading ------------------------------------------------------------------------------- */

int calendar_year_kind(const calendar_t *c, int year) {
    for (int i = 0; c && i < c->nyears; i++)
        if (c->years[i].year == year) return c->years[i].kind;
    return 0;
}

int calendar_years(const calendar_t *c, int *years, int max) {
    int n = c ? c->nyears : 0;
    for (int i = 0; i < n && i < max; i++)
        years[i] = c->years[i].year;
    return n;
}

int calendar_is_working_day(const calendar_t *c, int64_t day, int *fallback_year) {
    int year = year_of(day);
    if (!calendar_year_kind(c, year)) {
        if (fallback_year && !*fallback_year) *fallback_year = year;
        return weekday(day) < 5;
    }
    if (has_day(c->holidays, c->nholidays, day)) return 0;
    if (has_day(c->workdays, c->nworkdays, day)) return 1;
    return weekday(day) < 5;
}

int calendar_due(const calendar_t *c, int64_t start_ms, int n, calendar_unit_t unit, int extend,
                 int64_t *due_ms, int *fallback_year) {
    /* The last day may lie at most this far on: n days plus the longest run
     * of days off a calendar may hold (a whole year). */
    const int64_t last_ok = days_from_civil(CAL_YEAR_MAX, 12, 31) - 800;
    *due_ms = 0;
    if (n < 0 || n > CAL_PERIOD_MAX) return -1;
    if (unit == CAL_UNIT_HOURS) {
        *due_ms = start_ms + (int64_t)n * 3600000LL;
        return 0;
    }
    int64_t day = calendar_day_of(start_ms);
    if (day + n > last_ok) return -1;
    if (unit == CAL_UNIT_DAYS) {
        day += n;
        if (extend)
            for (int guard = 0; guard < 400 && !calendar_is_working_day(c, day, fallback_year); guard++)
                day++;
    } else if (unit == CAL_UNIT_WORKING_DAYS) {
        /* Each working day needs at most a year of days off before it. */
        for (int left = n; left > 0;) {
            day++;
            if (calendar_is_working_day(c, day, fallback_year)) left--;
        }
    } else {
        return -1;
    }
    *due_ms = calendar_day_start(day + 1);
    return 0;
}

int calendar_unit_parse(const char *name) {
    if (!name) return -1;
    if (strcmp(name, "days") == 0) return CAL_UNIT_DAYS;
    if (strcmp(name, "working_days") == 0) return CAL_UNIT_WORKING_DAYS;
    if (strcmp(name, "hours") == 0) return CAL_UNIT_HOURS;
    return -1;
}

const char *calendar_unit_name(calendar_unit_t u) {
    switch (u) {
    case CAL_UNIT_DAYS: return "days";
    case CAL_UNIT_WORKING_DAYS: return "working_days";
    case CAL_UNIT_HOURS: return "hours";
    }
    return "?";
}
