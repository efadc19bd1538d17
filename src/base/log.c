/* Logging: the level is read once from MTI_LOG_LEVEL; a bad value falls back to warn (logging
 * must never make a call fail) and says so once. */
#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mti_log_level g_level = MTI_LOG_WARN;
static pthread_once_t g_level_once = PTHREAD_ONCE_INIT;

static void read_level(void)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    const char *v = getenv("MTI_LOG_LEVEL");
    if (!v || !*v) return;
    for (int i = 0; i < 4; i++) {
        if (strcmp(v, names[i]) == 0) {
            g_level = (mti_log_level)i;
            return;
        }
    }
    fprintf(stderr,
            "mtinfer: warning: MTI_LOG_LEVEL='%s' is not error|warn|info|debug; using warn\n", v);
}

void mti__log(mti_log_level level, const char *fmt, ...)
{
    pthread_once(&g_level_once, read_level);
    if (level > g_level) return;
    static const char *tags[] = {"error", "warning", "info", "debug"};
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "mtinfer: %s: %s\n", tags[level], line);
}
