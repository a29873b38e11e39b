/* fuzz_hotline_csv.c -- the hotline CSV reader (sync_hotline_csv_tickets,
 * libcsv underneath): any bytes give either an array of at most 1000 ticket
 * objects, or an error with a code and a message; never a crash or leak. */
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *t = NULL;
    sync_error_t err = {0};
    int rc = sync_hotline_csv_tickets((const char *)data, size, &t, &err);
    if (rc == 0) {
        FUZZ_CHECK(cJSON_IsArray(t) && cJSON_GetArraySize(t) <= 1000);
        const cJSON *it;
        cJSON_ArrayForEach(it, t) FUZZ_CHECK(cJSON_IsObject(it));
    } else {
        FUZZ_CHECK(t == NULL && err.code != 0 && err.message[0] != 0);
    }
    cJSON_Delete(t);
    return 0;
}
