/* openapi.c -- see openapi.h. */
#include "server/openapi.h"

/* The path is relative to the folder the compiler runs in: the repository's
 * top (the Makefile's). */
__asm__(".section .rodata\n"
        ".balign 16\n"
        "casesync_openapi_start:\n"
        ".incbin \"docs/openapi.yaml\"\n"
        "casesync_openapi_end:\n"
        ".byte 0\n"
        ".previous\n");

const char *openapi_yaml(size_t *len) {
    extern const char casesync_openapi_start[] __asm__("casesync_openapi_start");
    extern const char casesync_openapi_end[] __asm__("casesync_openapi_end");
    *len = (size_t)(casesync_openapi_end - casesync_openapi_start);
    return casesync_openapi_start;
}
