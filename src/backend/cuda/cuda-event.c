/*
 * CUDA events, and the wait policy shared with stream synchronize.
 *
 * Waiting: we never call cudaStreamSynchronize / cudaEventSynchronize on a plain event, whose
 * behaviour follows the process-wide device schedule flag (by default a spinning core per
 * waiter). Instead the waiter polls cudaEventQuery under the sync mode:
 *   SPIN   poll with a pause instruction (lowest latency, a core per waiter);
 *   YIELD  poll with sched_yield;
 *   BLOCK  cudaEventSynchronize on a cudaEventBlockingSync event (the driver sleeps the thread
 *          until an interrupt), or sleep-polling for an event without that flag;
 *   AUTO   spin for dev->spin_ns (MTI_CUDA_SPIN_US, default 40 us: a graph request finishes in
 *          that window), then sleep-poll with naps of 1/8 of the time waited so far (10 us to
 *          1 ms), so many waiters on long work cost little CPU and a wait overshoots by about
 *          an eighth at most.
 * Events get the blocking-sync flag only when the runtime runs in BLOCK mode: measured on an
 * H100, recording such events made 16 threads of small requests 2x slower even when nobody
 * waited on them with cudaEventSynchronize, and a 250 us nap cap lost ~20% against 50 us.
 *
 * No locks: an event is a CUDA handle; CUDA serialises concurrent record/query/wait.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "backend/cuda/cuda-internal.h"
#include "base/clock.h"

#define NAP_MIN_NS 10000u
#define NAP_MAX_NS 1000000u

/* MTI_OK when done, MTI_ERR_NOT_READY when not, else the mapped error. */
static inline mti_status poll_event(struct cuda_device *dev, cudaEvent_t ev)
{
    cudaError_t err = cudaEventQuery(ev);
    if (err == cudaSuccess) return MTI_OK;
    if (err == cudaErrorNotReady) return MTI_ERR_NOT_READY;
    return mti__cuda_error(dev, err, "cudaEventQuery", __FILE__, __LINE__);
}

/* Naps proportional to the time already waited (1/8 of it, 10 us .. 1 ms): a wait overshoots
 * by about an eighth at most, and a thread waiting long wakes rarely. */
static mti_status sleep_poll(struct cuda_device *dev, cudaEvent_t ev)
{
    uint64_t start = mti_now_ns();
    for (;;) {
        mti_status st = poll_event(dev, ev);
        if (st != MTI_ERR_NOT_READY) return st;
        uint64_t nap = (mti_now_ns() - start) / 8;
        nap = nap < NAP_MIN_NS ? NAP_MIN_NS : nap > NAP_MAX_NS ? NAP_MAX_NS : nap;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)nap};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
}

mti_status mti__cuda_wait_event(struct cuda_device *dev, cudaEvent_t ev, bool blocking,
                                mti_sync_mode mode)
{
    mti_status st = poll_event(dev, ev);
    if (st != MTI_ERR_NOT_READY) return st;
    switch (mode) {
    case MTI_SYNC_SPIN:
    case MTI_SYNC_YIELD:
        while ((st = poll_event(dev, ev)) == MTI_ERR_NOT_READY) {
            if (mode == MTI_SYNC_YIELD)
                sched_yield();
            else
                mti_cpu_relax();
        }
        return st;
    case MTI_SYNC_BLOCK:
        if (blocking) {
            MTI_CUDA_CHECK(dev, cudaEventSynchronize(ev));
            return MTI_OK;
        }
        return sleep_poll(dev, ev);
    case MTI_SYNC_AUTO:
        break;
    }
    uint64_t deadline = mti_now_ns() + dev->spin_ns;
    while ((st = poll_event(dev, ev)) == MTI_ERR_NOT_READY) {
        if (mti_now_ns() >= deadline) {
            if (blocking) {
                MTI_CUDA_CHECK(dev, cudaEventSynchronize(ev));
                return MTI_OK;
            }
            return sleep_poll(dev, ev);
        }
        mti_cpu_relax();
    }
    return st;
}

/* ---- events -------------------------------------------------------------------------------- */

static inline struct cuda_event *cuda_event(mti_backend_event *e)
{
    return (struct cuda_event *)e;
}

static mti_status event_record(mti_backend_event *be, mti_backend_stream *bs, unsigned flags)
{
    (void)flags;
    struct cuda_device *dev = mti__cuda_dev(be->device);
    MTI_CHECK(mti__cuda_use_device(dev));
    MTI_CUDA_CHECK(dev, cudaEventRecord(cuda_event(be)->ev, mti__cuda_stream(bs)->stream));
    return MTI_OK;
}

static mti_status event_query(mti_backend_event *be)
{
    struct cuda_device *dev = mti__cuda_dev(be->device);
    MTI_CHECK(mti__cuda_sticky_status(dev));
    return poll_event(dev, cuda_event(be)->ev);
}

static mti_status event_synchronize(mti_backend_event *be, mti_sync_mode mode)
{
    struct cuda_device *dev = mti__cuda_dev(be->device);
    MTI_CHECK(mti__cuda_use_device(dev));
    return mti__cuda_wait_event(dev, cuda_event(be)->ev, cuda_event(be)->blocking, mode);
}

static mti_status event_elapsed_ms(mti_backend_event *start, mti_backend_event *end, float *ms)
{
    struct cuda_device *dev = mti__cuda_dev(start->device);
    if (!cuda_event(start)->timing || !cuda_event(end)->timing)
        return mti__error(MTI_ERR_NOT_READY, "event not recorded with timing, or not complete");
    MTI_CHECK(mti__cuda_use_device(dev));
    cudaError_t err = cudaEventElapsedTime(ms, cuda_event(start)->ev, cuda_event(end)->ev);
    if (err == cudaSuccess) return MTI_OK;
    if (err == cudaErrorNotReady || err == cudaErrorInvalidResourceHandle) {
        /* not complete, or never recorded */
        (void)cudaGetLastError();
        return mti__error(MTI_ERR_NOT_READY, "event not recorded with timing, or not complete");
    }
    return mti__cuda_error(dev, err, "cudaEventElapsedTime", __FILE__, __LINE__);
}

static void event_destroy(mti_backend_event *be)
{
    struct cuda_event *e = cuda_event(be);
    struct cuda_device *dev = mti__cuda_dev(be->device);
    /* cudaEventDestroy returns at once; CUDA frees it after pending records complete. */
    MTI_CUDA_NOTE(dev, cudaEventDestroy(e->ev));
    free(e);
}

static const struct mti_backend_event_i cuda_event_iface = {
    .destroy = event_destroy,
    .record = event_record,
    .query = event_query,
    .synchronize = event_synchronize,
    .elapsed_ms = event_elapsed_ms,
};

mti_status mti__cuda_event_create(mti_backend_device *bd, bool timing, mti_backend_event **out)
{
    struct cuda_device *dev = mti__cuda_dev(bd);
    *out = NULL;
    MTI_CHECK(mti__cuda_use_device(dev));
    struct cuda_event *e = calloc(1, sizeof *e);
    if (!e) return mti__error(MTI_ERR_OUT_OF_MEMORY, "cuda event");
    unsigned flags = timing ? cudaEventDefault : cudaEventDisableTiming;
    if (dev->blocking_events) flags |= cudaEventBlockingSync;
    mti_status st;
    MTI_CUDA_CHECK_GOTO(dev, cudaEventCreateWithFlags(&e->ev, flags), st, fail);
    e->base.iface = &cuda_event_iface;
    e->base.device = bd;
    e->timing = timing;
    e->blocking = dev->blocking_events;
    *out = &e->base;
    return MTI_OK;
fail:
    free(e);
    return st;
}
