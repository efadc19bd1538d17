/*
 * Internal error plumbing: every failure sets the thread's message and returns its status.
 *   return mti__error(MTI_ERR_INVALID_ARGUMENT, "pool_size %d is out of range 1..%d", n, max);
 *   MTI_CHECK(call());                 returns the status of a failed call
 *   MTI_CHECK_GOTO(call(), st, fail);  stores it in st and jumps to the one cleanup label
 */
#ifndef MTI_BASE_STATUS_H
#define MTI_BASE_STATUS_H

#include "mtinfer.h"

#if defined(__GNUC__) || defined(__clang__)
#define MTI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define MTI_UNLIKELY(x)  __builtin_expect(!!(x), 0)
#else
#define MTI_PRINTF(f, a)
#define MTI_UNLIKELY(x) (x)
#endif

/* Sets the calling thread's message ("<status text>: <detail>") and returns status. */
mti_status mti__error(mti_status status, const char *fmt, ...) MTI_PRINTF(2, 3);

/* Same, with the source location appended (for device errors and broken invariants). */
mti_status mti__error_at(mti_status status, const char *file, int line, const char *fmt, ...)
    MTI_PRINTF(4, 5);

#define MTI_CHECK(expr)                                                                            \
    do {                                                                                           \
        mti_status mti_check_st_ = (expr);                                                         \
        if (MTI_UNLIKELY(mti_check_st_ != MTI_OK)) return mti_check_st_;                           \
    } while (0)

#define MTI_CHECK_GOTO(expr, st, label)                                                            \
    do {                                                                                           \
        (st) = (expr);                                                                             \
        if (MTI_UNLIKELY((st) != MTI_OK)) goto label;                                              \
    } while (0)

#define MTI_CHECK_ARG(cond, ...)                                                                   \
    do {                                                                                           \
        if (MTI_UNLIKELY(!(cond))) return mti__error(MTI_ERR_INVALID_ARGUMENT, __VA_ARGS__);       \
    } while (0)

/* Debug-build assertion for internal invariants ("caller holds X"). Never aborts in release
 * builds; in debug builds (MTI_DEBUG) it reports and traps so tests stop at the broken rule. */
#ifdef MTI_DEBUG
void mti__assert_fail(const char *expr, const char *file, int line);
#define MTI_ASSERT(x) ((x) ? (void)0 : mti__assert_fail(#x, __FILE__, __LINE__))
#else
#define MTI_ASSERT(x) ((void)0)
#endif

#endif
