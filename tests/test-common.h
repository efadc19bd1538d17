/*
 * Shared helpers for the cmocka tests. Every check prints both values (CHECK_OP) or the
 * failing call with its status and the thread's message (REQUIRE_OK / REQUIRE_STATUS).
 * MTI_TEST_SCALE (default 1) divides iteration counts, so sanitizer builds run the same tests
 * with fewer rounds.
 */
#ifndef MTI_TEST_COMMON_H
#define MTI_TEST_COMMON_H

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "mtinfer.h"

/* Formats any scalar the checks compare, so a failure prints both values. */
static inline void fmt_i(char *b, long long v)
{
    snprintf(b, 64, "%lld", v);
}
static inline void fmt_u(char *b, unsigned long long v)
{
    snprintf(b, 64, "%llu", v);
}
static inline void fmt_d(char *b, double v)
{
    snprintf(b, 64, "%.9g", v);
}
static inline void fmt_p(char *b, const void *v)
{
    snprintf(b, 64, "%p", v);
}
#define FMT_VALUE(buf, v)                                                                          \
    _Generic((v), float                                                                            \
             : fmt_d, double                                                                       \
             : fmt_d, int                                                                          \
             : fmt_i, long                                                                         \
             : fmt_i, long long                                                                    \
             : fmt_i, unsigned char                                                                \
             : fmt_u, unsigned                                                                     \
             : fmt_u, unsigned long                                                                \
             : fmt_u, unsigned long long                                                           \
             : fmt_u, default                                                                      \
             : fmt_p)(buf, v)

/* CHECK(cond, fmt, ...): fails the test with the condition's text and the message. */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            char check_msg_[512];                                                                  \
            snprintf(check_msg_, sizeof check_msg_, __VA_ARGS__);                                  \
            fail_msg("%s:%d: CHECK(%s): %s", __FILE__, __LINE__, #cond, check_msg_);               \
        }                                                                                          \
    } while (0)

/* CHECK_OP(a, op, b[, fmt, ...]): compares and prints both values on failure. */
#define CHECK_OP(a, op, b, ...)                                                                    \
    do {                                                                                           \
        __typeof__(a) check_a_ = (a);                                                              \
        __typeof__(b) check_b_ = (b);                                                              \
        if (!(check_a_ op check_b_)) {                                                             \
            char va_[64], vb_[64], check_msg_[512] = "";                                           \
            FMT_VALUE(va_, check_a_);                                                              \
            FMT_VALUE(vb_, check_b_);                                                              \
            snprintf(check_msg_, sizeof check_msg_, "" __VA_ARGS__);                               \
            fail_msg("%s:%d: expected %s %s %s, got %s vs %s %s", __FILE__, __LINE__, #a, #op, #b, \
                     va_, vb_, check_msg_);                                                        \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, op, b, ...) CHECK_OP(strcmp((a), (b)), op, 0, "'%s' vs '%s'", (a), (b))

#define REQUIRE_OK(expr)                                                                           \
    do {                                                                                           \
        mti_status req_st_ = (expr);                                                               \
        if (req_st_ != MTI_OK)                                                                     \
            fail_msg("%s:%d: %s -> %s (%s)", __FILE__, __LINE__, #expr,                            \
                     mti_status_string(req_st_), mti_last_error_message());                        \
    } while (0)

#define REQUIRE_STATUS(expr, want)                                                                 \
    do {                                                                                           \
        mti_status req_st_ = (expr);                                                               \
        if (req_st_ != (want))                                                                     \
            fail_msg("%s:%d: %s -> %s, expected %s (%s)", __FILE__, __LINE__, #expr,               \
                     mti_status_string(req_st_), mti_status_string(want),                          \
                     mti_last_error_message());                                                    \
    } while (0)

static inline int test_scale(void)
{
    const char *v = getenv("MTI_TEST_SCALE");
    int s = v ? atoi(v) : 1;
    return s > 0 ? s : 1;
}

/* n divided by the scale, at least `floor`. */
static inline int scaled(int n, int floor)
{
    int v = n / test_scale();
    return v < floor ? floor : v;
}

static inline double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static inline void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The backend the suite runs on: MTI_TEST_BACKEND=cpu (default) or cuda (make test-gpu). */
static inline mti_backend_kind test_backend(void)
{
    const char *v = getenv("MTI_TEST_BACKEND");
    return v && strcmp(v, "cuda") == 0 ? MTI_BACKEND_CUDA : MTI_BACKEND_CPU;
}

/* Tests that read device memory from the host (host functions, poisoning) run on the CPU only. */
#define SKIP_UNLESS_CPU()                                                                          \
    do {                                                                                           \
        if (test_backend() != MTI_BACKEND_CPU) skip();                                             \
    } while (0)

/* A runtime on the test backend (every GPU of the machine) with the given pool size per device
 * and exhaustion policy; device >= 0 pins it to one device (tests that count slots). */
static inline mti_runtime_t make_test_runtime_on(int device, int pool_size,
                                                 mti_pool_exhaustion policy, int wait_ms)
{
    mti_runtime_params p;
    mti_runtime_params_default(&p);
    p.backend = test_backend();
    p.device = device;
    p.pool_size = pool_size;
    p.exhaustion = policy;
    p.pool_wait_ms = wait_ms;
    mti_runtime_t rt = NULL;
    REQUIRE_OK(mti_runtime_create(&p, &rt));
    return rt;
}

static inline mti_runtime_t make_test_runtime(int pool_size, mti_pool_exhaustion policy,
                                              int wait_ms)
{
    return make_test_runtime_on(-1, pool_size, policy, wait_ms);
}

/* Splitmix64: a seeded PRNG so each thread's data is its own and reproducible. */
static inline uint64_t test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline float test_randf(uint64_t *state)
{
    return (float)((test_rand(state) >> 40) * (1.0 / (1ull << 24)) * 2.0 - 1.0);
}

/* Host function that sleeps the given milliseconds (user = (void*)(intptr_t)ms). */
static inline mti_status host_sleep_ms(void *user)
{
    sleep_ms((int)(intptr_t)user);
    return MTI_OK;
}

#endif
