/* Status strings and the per-thread last-error message. No locks: the message is thread-local. */
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char tls_message[512];

const char *mti_status_string(mti_status status)
{
    switch (status) {
    case MTI_OK:
        return "ok";
    case MTI_ERR_INVALID_ARGUMENT:
        return "invalid argument";
    case MTI_ERR_OUT_OF_MEMORY:
        return "out of memory";
    case MTI_ERR_POOL_EXHAUSTED:
        return "stream pool exhausted";
    case MTI_ERR_TIMEOUT:
        return "timed out";
    case MTI_ERR_DEVICE:
        return "device error";
    case MTI_ERR_UNSUPPORTED:
        return "unsupported";
    case MTI_ERR_NOT_FOUND:
        return "not found";
    case MTI_ERR_CORRUPT_INPUT:
        return "corrupt input";
    case MTI_ERR_CANCELLED:
        return "cancelled";
    case MTI_ERR_QUEUE_FULL:
        return "queue full";
    case MTI_ERR_NOT_READY:
        return "not ready";
    case MTI_ERR_FORKED:
        return "used after fork";
    case MTI_ERR_BUSY:
        return "busy";
    case MTI_ERR_IO:
        return "i/o error";
    case MTI_ERR_STOPPED:
        return "stopped";
    case MTI_ERR_INTERNAL:
        return "internal error";
    }
    return "unknown status";
}

const char *mti_last_error_message(void)
{
    return tls_message;
}

static void format_message(mti_status status, const char *fmt, va_list ap)
{
    int n = snprintf(tls_message, sizeof tls_message, "%s: ", mti_status_string(status));
    if (n < 0 || (size_t)n >= sizeof tls_message) return;
    vsnprintf(tls_message + n, sizeof tls_message - (size_t)n, fmt, ap);
}

mti_status mti__error(mti_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    format_message(status, fmt, ap);
    va_end(ap);
    return status;
}

mti_status mti__error_at(mti_status status, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    format_message(status, fmt, ap);
    va_end(ap);
    size_t used = strlen(tls_message);
    if (used < sizeof tls_message)
        snprintf(tls_message + used, sizeof tls_message - used, " (%s:%d)", file, line);
    return status;
}

#ifdef MTI_DEBUG
void mti__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "mtinfer: internal assertion failed: %s (%s:%d)\n", expr, file, line);
    __builtin_trap();
}
#endif
