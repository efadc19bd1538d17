/* One-line diagnostics on stderr, filtered by MTI_LOG_LEVEL (error|warn|info|debug; default warn).
 */
#ifndef MTI_BASE_LOG_H
#define MTI_BASE_LOG_H

#include "base/status.h"

typedef enum mti_log_level {
    MTI_LOG_ERROR = 0,
    MTI_LOG_WARN = 1,
    MTI_LOG_INFO = 2,
    MTI_LOG_DEBUG = 3,
} mti_log_level;

void mti__log(mti_log_level level, const char *fmt, ...) MTI_PRINTF(2, 3);

#endif
