/*
 * Mutex and condition-variable wrappers with clang thread-safety annotations, so that
 * `clang -Wthread-safety` checks every "protected by" rule written next to a lock, plus a
 * debug-build owner record behind mti_mutex_assert_held() for "caller holds X" comments.
 * Condition variables use CLOCK_MONOTONIC so timeouts survive wall-clock changes.
 */
#ifndef MTI_BASE_SYNC_H
#define MTI_BASE_SYNC_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "base/status.h"

#if defined(__clang__)
#define MTI_TSA(x) __attribute__((x))
#else
#define MTI_TSA(x)
#endif
#define MTI_CAPABILITY(name) MTI_TSA(capability(name))
/* clang's C front end cannot name a sibling field in guarded_by, so on struct fields this
 * marker is documentation only; the function annotations below are checked. */
#define MTI_GUARDED_BY(m)
#define MTI_REQUIRES(...) MTI_TSA(requires_capability(__VA_ARGS__))
#define MTI_ACQUIRE(...)  MTI_TSA(acquire_capability(__VA_ARGS__))
#define MTI_RELEASE(...)  MTI_TSA(release_capability(__VA_ARGS__))
#define MTI_EXCLUDES(...) MTI_TSA(locks_excluded(__VA_ARGS__))
#define MTI_NO_TSA        MTI_TSA(no_thread_safety_analysis)

typedef struct MTI_CAPABILITY("mutex") mti_mutex {
    pthread_mutex_t m;
#ifdef MTI_DEBUG
    pthread_t owner;
    bool held;
#endif
} mti_mutex;

typedef struct mti_cond {
    pthread_cond_t c;
} mti_cond;

mti_status mti_mutex_init(mti_mutex *mu);
void mti_mutex_destroy(mti_mutex *mu);
mti_status mti_cond_init(mti_cond *cv);
void mti_cond_destroy(mti_cond *cv);

static inline void mti_mutex_lock(mti_mutex *mu) MTI_ACQUIRE(mu) MTI_NO_TSA
{
    pthread_mutex_lock(&mu->m);
#ifdef MTI_DEBUG
    mu->owner = pthread_self();
    mu->held = true;
#endif
}

static inline void mti_mutex_unlock(mti_mutex *mu) MTI_RELEASE(mu) MTI_NO_TSA
{
#ifdef MTI_DEBUG
    mu->held = false;
#endif
    pthread_mutex_unlock(&mu->m);
}

/* Checks a "caller holds mu" rule in debug builds; tells the analysis it holds. */
static inline void mti_mutex_assert_held(mti_mutex *mu) MTI_TSA(assert_capability(mu)) MTI_NO_TSA
{
#ifdef MTI_DEBUG
    MTI_ASSERT(mu->held && pthread_equal(mu->owner, pthread_self()));
#else
    (void)mu;
#endif
}

static inline void mti_cond_wait(mti_cond *cv, mti_mutex *mu) MTI_REQUIRES(mu) MTI_NO_TSA
{
#ifdef MTI_DEBUG
    mu->held = false;
#endif
    pthread_cond_wait(&cv->c, &mu->m);
#ifdef MTI_DEBUG
    mu->owner = pthread_self();
    mu->held = true;
#endif
}

/* Waits until signalled or the CLOCK_MONOTONIC deadline passes; false on timeout. */
static inline bool mti_cond_wait_until(mti_cond *cv, mti_mutex *mu, const struct timespec *deadline)
    MTI_REQUIRES(mu) MTI_NO_TSA
{
#ifdef MTI_DEBUG
    mu->held = false;
#endif
    int rc = pthread_cond_timedwait(&cv->c, &mu->m, deadline);
#ifdef MTI_DEBUG
    mu->owner = pthread_self();
    mu->held = true;
#endif
    return rc == 0;
}

static inline void mti_cond_signal(mti_cond *cv)
{
    pthread_cond_signal(&cv->c);
}

static inline void mti_cond_broadcast(mti_cond *cv)
{
    pthread_cond_broadcast(&cv->c);
}

#endif
