/* Monotonic clock helpers. */
#ifndef MTI_BASE_CLOCK_H
#define MTI_BASE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mti_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* An absolute CLOCK_MONOTONIC deadline ms from now, for condvars created with that clock. */
static inline struct timespec mti_deadline_after_ms(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

#endif
