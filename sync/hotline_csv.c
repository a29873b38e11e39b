/* hotline_csv.c -- the hotline platform's CSV export as import tickets
 * (POST /v1/hotline/import with Content-Type text/csv), read with libcsv
 * (Debian's libcsv-dev, RFC 4180 quoting) in strict mode.
 *
 * Caveats:
 * - The first row names the columns (a UTF-8 byte order mark before it is
 *   skipped); names are those of the JSON tickets, with the nested members
 *   flattened: lon, lat, crs (location), complainant_name, complainant_phone.
 *   An unknown or repeated name, a row with another number of cells than the
 *   header, a malformed quote or more than HOTLINE_CSV_MAX_ROWS rows makes
 *   the whole file 422 (413 for the rows) before anything is imported.
 * - Empty cells are left out of the ticket; lon and lat become numbers when
 *   they are numbers in full, else stay text (the schema then rejects that
 *   ticket alone, as for JSON).
 */
#include <csv.h>
#include <stdlib.h>
#include <string.h>

#include "sync/engine.h"

#define HOTLINE_CSV_MAX_ROWS 1000
#define CSV_COLS 16

static const char *const csv_names[] = {"ticket_no",        "type",    "procedure", "description",
                                        "occurred_at",      "grid",    "address",   "lon",
                                        "lat",              "crs",     "category",  "complainant_name",
                                        "complainant_phone", "reply_due", NULL};

typedef struct reader {
    int col[CSV_COLS]; /* header: index into csv_names per column */
    int ncols, cell, row, bad, oom;
    const char *why;
    cJSON *tickets, *cur;
} reader_t;

static void put(cJSON *t, const char *name, const char *v, size_t n) {
    const char *member = name;
    cJSON *into = t;
    if (!strcmp(name, "lon") || !strcmp(name, "lat") || !strcmp(name, "crs")) {
        into = cJSON_GetObjectItemCaseSensitive(t, "location");
        if (!into) into = cJSON_AddObjectToObject(t, "location");
    } else if (!strncmp(name, "complainant_", 12)) {
        member = name + 12;
        into = cJSON_GetObjectItemCaseSensitive(t, "complainant");
        if (!into) into = cJSON_AddObjectToObject(t, "complainant");
    }
    if (!into) return;
    if (!strcmp(name, "lon") || !strcmp(name, "lat")) {
        char *end = NULL;
        double d = strtod(v, &end);
        if (end && end == v + n && n > 0) {
            cJSON_AddNumberToObject(into, member, d);
            return;
        }
    }
    cJSON_AddStringToObject(into, member, v);
}

static void on_cell(void *data, size_t n, void *ctx) {
    reader_t *r = ctx;
    const char *v = data ? data : "";
    if (r->bad) return;
    if (r->row == 0) {
        if (r->cell == 0 && n >= 3 && memcmp(v, "\xEF\xBB\xBF", 3) == 0) v += 3, n -= 3;
        int k = -1;
        for (int i = 0; csv_names[i]; i++)
            if (strlen(csv_names[i]) == n && memcmp(csv_names[i], v, n) == 0) k = i;
        for (int i = 0; k >= 0 && i < r->ncols; i++)
            if (r->col[i] == k) k = -2;
        if (k < 0 || r->ncols >= CSV_COLS) {
            r->bad = 1, r->why = k == -2 ? "a column is named twice" : "an unknown column in the header row";
            return;
        }
        r->col[r->ncols++] = k;
        r->cell++;
        return;
    }
    if (r->cell >= r->ncols) {
        r->bad = 1, r->why = "a row has more cells than the header";
        return;
    }
    if (!r->cur && !(r->cur = cJSON_CreateObject())) {
        r->oom = r->bad = 1;
        return;
    }
    if (n > 0 && strlen(v) == n) put(r->cur, csv_names[r->col[r->cell]], v, n);
    else if (n > 0) r->bad = 1, r->why = "a cell holds a NUL byte";
    r->cell++;
}

static void on_row(int c, void *ctx) {
    reader_t *r = ctx;
    (void)c;
    if (r->bad) return;
    if (r->row > 0 && r->cell != r->ncols) {
        r->bad = 1, r->why = "a row has fewer cells than the header";
    } else if (r->row > HOTLINE_CSV_MAX_ROWS) {
        r->bad = 1, r->why = "too many rows";
    } else if (r->row > 0) {
        if (!r->cur) r->cur = cJSON_CreateObject();
        if (!r->cur || util_json_push(r->tickets, r->cur) != 0) r->oom = r->bad = 1;
        r->cur = NULL;
    }
    r->row++;
    r->cell = 0;
}

int sync_hotline_csv_tickets(const char *buf, size_t len, cJSON **tickets, sync_error_t *err) {
    struct csv_parser p;
    reader_t r = {.tickets = cJSON_CreateArray()};
    *tickets = NULL;
    if (!r.tickets || csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) {
        cJSON_Delete(r.tickets);
        return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    }
    int parsed = csv_parse(&p, buf, len, on_cell, on_row, &r) == len;
    int fini = parsed && csv_fini(&p, on_cell, on_row, &r) == 0;
    int perr = csv_error(&p);
    csv_free(&p);
    cJSON_Delete(r.cur);
    if (r.oom || perr == CSV_ENOMEM) {
        cJSON_Delete(r.tickets);
        return sync_fail(err, SYNC_ENOMEM, NULL, "out of memory");
    }
    if (!parsed || !fini || r.bad || r.row == 0) {
        int too_many = r.bad && r.why && strcmp(r.why, "too many rows") == 0;
        cJSON_Delete(r.tickets);
        if (too_many) return sync_fail(err, SYNC_ETOOLARGE, "tickets", "at most %d tickets at once", HOTLINE_CSV_MAX_ROWS);
        return sync_fail(err, SYNC_EINVALID, "csv", "not the hotline CSV: %s (row %d)",
                         r.bad && r.why ? r.why : r.row == 0 ? "no header row" : csv_strerror(perr), r.row + 1);
    }
    *tickets = r.tickets;
    return 0;
}
