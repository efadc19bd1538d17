/* Initialisation of the annotated lock wrappers (the hot calls are inline in sync.h). */
#include "base/sync.h"

mti_status mti_mutex_init(mti_mutex *mu)
{
    if (pthread_mutex_init(&mu->m, NULL) != 0)
        return mti__error(MTI_ERR_OUT_OF_MEMORY, "pthread_mutex_init failed");
#ifdef MTI_DEBUG
    mu->held = false;
#endif
    return MTI_OK;
}

void mti_mutex_destroy(mti_mutex *mu)
{
    pthread_mutex_destroy(&mu->m);
}

mti_status mti_cond_init(mti_cond *cv)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return mti__error(MTI_ERR_OUT_OF_MEMORY, "pthread_condattr_init failed");
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&cv->c, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) return mti__error(MTI_ERR_OUT_OF_MEMORY, "pthread_cond_init failed");
    return MTI_OK;
}

void mti_cond_destroy(mti_cond *cv)
{
    pthread_cond_destroy(&cv->c);
}
