/*
 * Public stream, event, copy and math calls: argument and fork checks, then the recording
 * section (serialization policy + the stream's record lock) around the backend submit.
 *
 * Lock order: encode_lock / encode_sem (runtime) -> record_lock (stream) -> backend locks.
 * No wait on device work happens under any of them.
 */
#include <stdlib.h>

#include "base/fault.h"
#include "runtime/runtime-internal.h"

mti_status mti__stream_create(struct mti_device_ctx *dev, int slot, struct mti_stream **out)
{
    *out = NULL;
    struct mti_stream *s = calloc(1, sizeof *s);
    if (!s) return mti__error(MTI_ERR_OUT_OF_MEMORY, "stream");
    s->dev = dev;
    s->slot = slot;
    mti_status st = mti_mutex_init(&s->record_lock);
    if (st != MTI_OK) goto fail;
    if ((st = mti__stream_cache_init(&s->cache)) != MTI_OK) goto fail_lock;
    if ((st = dev->bdev->iface->stream_create(dev->bdev, &s->bs)) != MTI_OK) goto fail_cache;
    *out = s;
    return MTI_OK;
fail_cache:
    mti_mutex_destroy(&s->cache.lock);
fail_lock:
    mti_mutex_destroy(&s->record_lock);
fail:
    free(s);
    return st;
}

void mti__stream_destroy(struct mti_stream *s)
{
    s->bs->iface->destroy(s->bs);
    mti_mutex_destroy(&s->cache.lock);
    mti_mutex_destroy(&s->record_lock);
    free(s);
}

mti_status mti__stream_sync(struct mti_stream *s)
{
    return s->bs->iface->synchronize(s->bs, s->dev->rt->params.sync_mode);
}

static void sem_down(struct mti_sem *sem) MTI_EXCLUDES(sem->lock)
{
    mti_mutex_lock(&sem->lock);
    while (sem->count == 0)
        mti_cond_wait(&sem->freed, &sem->lock);
    sem->count--;
    mti_mutex_unlock(&sem->lock);
}

static void sem_up(struct mti_sem *sem) MTI_EXCLUDES(sem->lock)
{
    mti_mutex_lock(&sem->lock);
    sem->count++;
    mti_cond_signal(&sem->freed);
    mti_mutex_unlock(&sem->lock);
}

/* The policy lock is taken conditionally, which the analysis cannot follow; the record lock
 * it can, and the declaration in runtime-internal.h states it. */
void mti__encode_begin(struct mti_stream *s) MTI_NO_TSA
{
    if (MTI_UNSAFE_STRESS())
        return; /* the stress negative control only (MTI_STRESS_UNSAFE builds, fault.h) */
    struct mti_runtime *rt = s->dev->rt;
    if (rt->params.serialization == MTI_SERIAL_GLOBAL)
        mti_mutex_lock(&rt->encode_lock);
    else if (rt->params.serialization == MTI_SERIAL_SEMAPHORE)
        sem_down(&rt->encode_sem);
    mti_mutex_lock(&s->record_lock);
}

void mti__encode_end(struct mti_stream *s) MTI_NO_TSA
{
    if (MTI_UNSAFE_STRESS())
        return; /* the stress negative control only (MTI_STRESS_UNSAFE builds, fault.h) */
    struct mti_runtime *rt = s->dev->rt;
    mti_mutex_unlock(&s->record_lock);
    if (rt->params.serialization == MTI_SERIAL_GLOBAL)
        mti_mutex_unlock(&rt->encode_lock);
    else if (rt->params.serialization == MTI_SERIAL_SEMAPHORE)
        sem_up(&rt->encode_sem);
}

/* ---- fault hooks (fault-injection builds; base/fault.h) ---------------------------------- */

#ifdef MTI_FAULT_INJECTION
mti_status mti__fault_submit_begin(struct mti_stream *s)
{
    if (!s->capturing && MTI_FAULT(SUBMIT))
        return mti__fault_error(MTI_ERR_DEVICE, "backend submission");
    return MTI_OK;
}

/* Runs on the stream (a CPU executor or a CUDA host-callback thread): its status lands in the
 * stream's error slot, which the next synchronize returns, as a device error would. */
static mti_status injected_stream_error(void *user)
{
    (void)user;
    return mti__fault_error(MTI_ERR_DEVICE, "queued work reported an error");
}

mti_status mti__fault_submit_end(struct mti_stream *s, mti_status st, unsigned flags)
{
    if (st != MTI_OK || s->capturing || !MTI_FAULT(STREAM_ERROR)) return st;
    return s->bs->iface->launch_host(s->bs, injected_stream_error, NULL, flags);
}
#endif

static mti_status check_stream(mti_stream_t s)
{
    MTI_CHECK_ARG(s != NULL, "stream is NULL");
    return mti__runtime_check(s->dev->rt);
}

/* ---- streams ---------------------------------------------------------------------------- */

mti_status mti_stream_get_current(mti_runtime_t rt, mti_stream_t *out)
{
    MTI_CHECK_ARG(out != NULL, "out is NULL");
    *out = NULL;
    MTI_CHECK_ARG(rt != NULL, "runtime is NULL");
    MTI_CHECK(mti__runtime_check(rt));
    return mti__thread_stream(rt, out);
}

/* The device with the fewest slots in use (threads spread across GPUs, least-loaded first). */
static struct mti_device_ctx *least_loaded_device(struct mti_runtime *rt)
{
    struct mti_device_ctx *best = &rt->devices[0];
    for (int i = 1; i < rt->n_devices; i++) {
        if (mti_atomic_load_relaxed(&rt->devices[i].pool.in_use) <
            mti_atomic_load_relaxed(&best->pool.in_use))
            best = &rt->devices[i];
    }
    return best;
}

mti_status mti__runtime_acquire(struct mti_runtime *rt, struct mti_stream **out)
{
    struct mti_device_ctx *dev = least_loaded_device(rt);
    if (rt->params.assign == MTI_ASSIGN_ROUND_ROBIN)
        return mti__pool_assign_round_robin(&dev->pool, out);
    return mti__pool_acquire(&dev->pool, rt->params.exhaustion, rt->params.pool_wait_ms, out);
}

mti_status mti_stream_acquire(mti_runtime_t rt, mti_stream_t *out)
{
    MTI_CHECK_ARG(out != NULL, "out is NULL");
    *out = NULL;
    MTI_CHECK_ARG(rt != NULL, "runtime is NULL");
    MTI_CHECK(mti__runtime_check(rt));
    return mti__runtime_acquire(rt, out);
}

mti_status mti_stream_release(mti_stream_t s)
{
    MTI_CHECK(check_stream(s));
    if (s->tls_holder && !mti__thread_forget(s))
        return mti__error(MTI_ERR_INVALID_ARGUMENT,
                          "stream slot %d is another thread's current stream; only that thread "
                          "may release it",
                          s->slot);
    if (s->dev->rt->params.assign == MTI_ASSIGN_ROUND_ROBIN)
        return mti__stream_sync(s); /* shared streams stay in the pool */
    return mti__pool_release(&s->dev->pool, s);
}

mti_status mti_stream_synchronize(mti_stream_t s)
{
    MTI_CHECK(check_stream(s));
    return mti__stream_sync(s);
}

mti_status mti_stream_query(mti_stream_t s)
{
    MTI_CHECK(check_stream(s));
    return s->bs->iface->query(s->bs);
}

int mti_stream_slot(mti_stream_t s)
{
    return s ? s->slot : -1;
}

int mti_stream_device(mti_stream_t s)
{
    return s ? s->dev->bdev->ordinal : -1;
}

mti_status mti_stream_launch_host(mti_stream_t s, mti_host_fn fn, void *user)
{
    MTI_CHECK(check_stream(s));
    MTI_CHECK_ARG(fn != NULL, "host function is NULL");
    mti__encode_begin(s);
    mti_status st = mti__submit_begin(s);
    if (st == MTI_OK) st = mti__submit_end(s, s->bs->iface->launch_host(s->bs, fn, user, 0), 0);
    mti__encode_end(s);
    return st;
}

/* ---- copies and math -------------------------------------------------------------------- */

mti_status mti_memcpy_async(mti_stream_t s, void *dst, const void *src, size_t bytes,
                            mti_copy_kind kind)
{
    MTI_CHECK(check_stream(s));
    MTI_CHECK_ARG(kind >= MTI_COPY_HOST_TO_DEVICE && kind <= MTI_COPY_DEVICE_TO_DEVICE,
                  "copy kind %d is not a mti_copy_kind", (int)kind);
    if (bytes == 0) return MTI_OK;
    MTI_CHECK_ARG(dst != NULL && src != NULL, "memcpy of %zu bytes with a NULL pointer", bytes);
    mti__encode_begin(s);
    mti_status st = mti__submit_begin(s);
    if (st == MTI_OK)
        st = mti__submit_end(s, s->bs->iface->memcpy_async(s->bs, dst, src, bytes, kind, 0), 0);
    mti__encode_end(s);
    return st;
}

mti_status mti_memset_async(mti_stream_t s, void *dst, int value, size_t bytes)
{
    MTI_CHECK(check_stream(s));
    if (bytes == 0) return MTI_OK;
    MTI_CHECK_ARG(dst != NULL, "memset of %zu bytes at NULL", bytes);
    mti__encode_begin(s);
    mti_status st = mti__submit_begin(s);
    if (st == MTI_OK)
        st = mti__submit_end(s, s->bs->iface->memset_async(s->bs, dst, value, bytes, 0), 0);
    mti__encode_end(s);
    return st;
}

mti_status mti_linear_async(mti_stream_t s, const float *x, const float *w, const float *bias,
                            float *y, int m, int n, int k, mti_activation act)
{
    MTI_CHECK(check_stream(s));
    MTI_CHECK_ARG(m > 0 && n > 0 && k > 0, "linear shape m=%d n=%d k=%d must be positive", m, n, k);
    MTI_CHECK_ARG(x && w && y, "linear: x, w and y must not be NULL");
    MTI_CHECK_ARG(act >= MTI_ACT_NONE && act <= MTI_ACT_GELU_TANH,
                  "activation %d is not a mti_activation", (int)act);
    mti__encode_begin(s);
    mti_status st = mti__submit_begin(s);
    if (st == MTI_OK)
        st = mti__submit_end(s, s->bs->iface->linear_async(s->bs, x, w, bias, y, m, n, k, act, 0),
                             0);
    mti__encode_end(s);
    return st;
}

/* ---- events ----------------------------------------------------------------------------- */

mti_status mti_event_create(mti_runtime_t rt, int timing, mti_event_t *out)
{
    MTI_CHECK_ARG(out != NULL, "out is NULL");
    *out = NULL;
    MTI_CHECK_ARG(rt != NULL, "runtime is NULL");
    MTI_CHECK(mti__runtime_check(rt));
    struct mti_event *e =
        calloc(1, sizeof *e + sizeof(mti_backend_event *) * (size_t)rt->n_devices);
    if (!e) return mti__error(MTI_ERR_OUT_OF_MEMORY, "event");
    e->rt = rt;
    e->timing = timing != 0;
    atomic_init(&e->current, -1);
    for (int i = 0; i < rt->n_devices; i++)
        atomic_init(&e->per_device[i], NULL);
    *out = e;
    return MTI_OK;
}

void mti_event_destroy(mti_event_t e)
{
    if (!e) return;
    for (int i = 0; i < e->rt->n_devices; i++) {
        mti_backend_event *be = mti_atomic_load_acquire(&e->per_device[i]);
        if (be) be->iface->destroy(be);
    }
    free(e);
}

static mti_status check_event(mti_event_t e)
{
    MTI_CHECK_ARG(e != NULL, "event is NULL");
    return mti__runtime_check(e->rt);
}

/* The backend event of the last record, or NULL before any (then the event is complete). */
static mti_backend_event *current_event(mti_event_t e)
{
    int dev = mti_atomic_load_acquire(&e->current);
    return dev < 0 ? NULL : mti_atomic_load_acquire(&e->per_device[dev]);
}

/* The event's backend event on dev, made on first use (two racing recorders: one wins). */
static mti_status device_event(mti_event_t e, struct mti_device_ctx *dev, mti_backend_event **out)
{
    mti_backend_event *be = mti_atomic_load_acquire(&e->per_device[dev->index]);
    if (!be) {
        MTI_CHECK(dev->bdev->iface->event_create(dev->bdev, e->timing, &be));
        mti_backend_event *expected = NULL;
        if (!atomic_compare_exchange_strong(&e->per_device[dev->index], &expected, be)) {
            be->iface->destroy(be);
            be = expected;
        }
    }
    *out = be;
    return MTI_OK;
}

mti_status mti_event_record(mti_event_t e, mti_stream_t s)
{
    MTI_CHECK(check_event(e));
    MTI_CHECK(check_stream(s));
    MTI_CHECK_ARG(s->dev->rt == e->rt, "event and stream belong to different runtimes");
    mti_backend_event *be;
    MTI_CHECK(device_event(e, s->dev, &be));
    mti__encode_begin(s);
    mti_status st = mti__submit_begin(s);
    if (st == MTI_OK) st = mti__submit_end(s, be->iface->record(be, s->bs, 0), 0);
    mti__encode_end(s);
    if (st == MTI_OK) mti_atomic_store_release(&e->current, s->dev->index);
    return st;
}

mti_status mti_stream_wait_event(mti_stream_t s, mti_event_t e)
{
    MTI_CHECK(check_stream(s));
    MTI_CHECK(check_event(e));
    MTI_CHECK_ARG(s->dev->rt == e->rt, "event and stream belong to different runtimes");
    mti_backend_event *be = current_event(e);
    if (!be) return MTI_OK; /* never recorded: nothing to wait for */
    mti__encode_begin(s);
    mti_status st = mti__submit_begin(s);
    if (st == MTI_OK) st = mti__submit_end(s, s->bs->iface->wait_event(s->bs, be, 0), 0);
    mti__encode_end(s);
    return st;
}

mti_status mti_event_query(mti_event_t e)
{
    MTI_CHECK(check_event(e));
    mti_backend_event *be = current_event(e);
    return be ? be->iface->query(be) : MTI_OK;
}

mti_status mti_event_synchronize(mti_event_t e)
{
    MTI_CHECK(check_event(e));
    mti_backend_event *be = current_event(e);
    return be ? be->iface->synchronize(be, e->rt->params.sync_mode) : MTI_OK;
}

mti_status mti_event_elapsed_ms(mti_event_t start, mti_event_t end, float *ms)
{
    MTI_CHECK(check_event(start));
    MTI_CHECK(check_event(end));
    MTI_CHECK_ARG(ms != NULL, "ms is NULL");
    mti_backend_event *a = current_event(start), *b = current_event(end);
    if (!a || !b)
        return mti__error(MTI_ERR_NOT_READY, "elapsed time of an event that was never recorded");
    MTI_CHECK_ARG(a->device == b->device, "elapsed time between events of two devices");
    if (!a->iface->elapsed_ms)
        return mti__error(MTI_ERR_UNSUPPORTED, "event timing on this backend");
    return a->iface->elapsed_ms(a, b, ms);
}

/* ---- buffers ---------------------------------------------------------------------------- */

mti_status mti_buffer_alloc(mti_stream_t s, size_t bytes, mti_buffer_t *out)
{
    MTI_CHECK_ARG(out != NULL, "out is NULL");
    *out = NULL;
    MTI_CHECK(check_stream(s));
    MTI_CHECK_ARG(bytes > 0, "buffer of 0 bytes");
    return mti__alloc(s, bytes, out);
}

void mti_buffer_free(mti_buffer_t b)
{
    if (!b || mti__runtime_check(b->owner->dev->rt) != MTI_OK) return;
    mti__alloc_free(b);
}

mti_status mti_buffer_record_stream(mti_buffer_t b, mti_stream_t s)
{
    MTI_CHECK_ARG(b != NULL, "buffer is NULL");
    MTI_CHECK(check_stream(s));
    return mti__alloc_record_stream(b, s);
}

void *mti_buffer_ptr(mti_buffer_t b)
{
    return b ? b->ptr : NULL;
}

size_t mti_buffer_size(mti_buffer_t b)
{
    return b ? b->requested : 0;
}

/* ---- pinned host memory ----------------------------------------------------------------- */

mti_status mti_host_alloc(mti_runtime_t rt, size_t bytes, void **out)
{
    MTI_CHECK_ARG(out != NULL, "out is NULL");
    *out = NULL;
    MTI_CHECK_ARG(rt != NULL, "runtime is NULL");
    MTI_CHECK_ARG(bytes > 0, "host buffer of 0 bytes");
    MTI_CHECK(mti__runtime_check(rt));
    mti_backend_device *bdev = rt->devices[0].bdev;
    if (bdev->iface->host_alloc) return bdev->iface->host_alloc(bdev, bytes, out);
    *out = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    return *out ? MTI_OK : mti__error(MTI_ERR_OUT_OF_MEMORY, "host buffer of %zu bytes", bytes);
}

void mti_host_free(mti_runtime_t rt, void *ptr)
{
    if (!rt || !ptr || mti__runtime_check(rt) != MTI_OK) return;
    mti_backend_device *bdev = rt->devices[0].bdev;
    if (bdev->iface->host_free)
        bdev->iface->host_free(bdev, ptr);
    else
        free(ptr);
}

bool mti__host_is_pinned(struct mti_runtime *rt, const void *ptr)
{
    mti_backend_device *bdev = rt->devices[0].bdev;
    return bdev->iface->host_is_pinned && bdev->iface->host_is_pinned(bdev, ptr);
}

/* ---- graphs ----------------------------------------------------------------------------- */

struct mti_graph {
    struct mti_runtime *rt;
    mti_backend_graph *bg;
    const struct mti_backend_stream_i *iface; /* of the stream it was captured on */
};

static mti_status check_capture(mti_stream_t s)
{
    MTI_CHECK(check_stream(s));
    if (!s->bs->iface->graph_begin)
        return mti__error(MTI_ERR_UNSUPPORTED, "graphs on the %s backend",
                          s->dev->bdev->iface->name);
    if (s->dev->rt->params.assign != MTI_ASSIGN_EXCLUSIVE)
        return mti__error(MTI_ERR_UNSUPPORTED,
                          "graph capture needs exclusive streams (MTI_STREAM_ASSIGN=exclusive)");
    return MTI_OK;
}

mti_status mti_stream_begin_capture(mti_stream_t s)
{
    MTI_CHECK(check_capture(s));
    mti__encode_begin(s);
    mti_status st = s->bs->iface->graph_begin(s->bs);
    if (st == MTI_OK) s->capturing = true;
    mti__encode_end(s);
    return st;
}

mti_status mti_stream_end_capture(mti_stream_t s, mti_graph_t *out)
{
    MTI_CHECK_ARG(out != NULL, "out is NULL");
    *out = NULL;
    MTI_CHECK(check_capture(s));
    struct mti_graph *g = calloc(1, sizeof *g);
    if (!g) return mti__error(MTI_ERR_OUT_OF_MEMORY, "graph");
    mti__encode_begin(s);
    mti_status st = s->bs->iface->graph_end(s->bs, &g->bg);
    s->capturing = false;
    mti__encode_end(s);
    if (st != MTI_OK) {
        free(g);
        return st;
    }
    g->rt = s->dev->rt;
    g->iface = s->bs->iface;
    *out = g;
    return MTI_OK;
}

mti_status mti_graph_launch(mti_graph_t g, mti_stream_t s)
{
    MTI_CHECK_ARG(g != NULL, "graph is NULL");
    MTI_CHECK(check_stream(s));
    MTI_CHECK_ARG(g->rt == s->dev->rt, "graph and stream belong to different runtimes");
    mti__encode_begin(s);
    mti_status st = mti__submit_begin(s);
    if (st == MTI_OK) st = mti__submit_end(s, s->bs->iface->graph_launch(s->bs, g->bg, 0), 0);
    mti__encode_end(s);
    return st;
}

void mti_graph_destroy(mti_graph_t g)
{
    if (!g || mti__runtime_check(g->rt) != MTI_OK) return;
    g->iface->graph_destroy(g->bg);
    free(g);
}
