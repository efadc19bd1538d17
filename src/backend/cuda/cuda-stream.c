/*
 * CUDA streams: one non-blocking cudaStream_t per pool slot (never synchronises with the legacy
 * default stream), with its own cuBLASLt handle + workspace (cuda-blaslt.c) created with it.
 *
 * synchronize records a sync event and waits on it with the sync-mode policy (cuda-event.c),
 * so a waiter sleeps instead of spinning a core when waits are long. Each concurrent
 * synchronizer takes its own event from a small per-stream free list: re-recording one shared
 * event would let a stream of later records keep moving an earlier waiter's target. Fast path:
 * cudaStreamQuery says idle, no event at all.
 *
 * Host functions: cudaLaunchHostFunc runs a trampoline on a CUDA thread; a failing mti_host_fn
 * puts its status into the stream's atomic error slot (first error wins), which synchronize
 * returns and clears. The trampoline's context is freed after it runs, except when it was
 * captured into a graph (freed with the graph, cuda-graph.c).
 *
 * Lock order: sync_lock is a leaf and guards only the free list; no CUDA call runs under it.
 */
#include <stdlib.h>

#include "backend/cuda/cuda-internal.h"
#include "backend/cuda/cuda-nn.h"
#include "backend/cuda/nn-kernels.h"

void mti__cuda_stream_set_error(struct cuda_stream *s, mti_status st)
{
    int expected = MTI_OK;
    /* seq_cst CAS (first error wins); the sync that takes it waited for this host function to
     * return, through the stream order and the sync event's completion. */
    mti_atomic_cas_seq_cst(&s->error, &expected, (int)st);
}

/* Takes the pending error (exchange), setting the thread's message when there is one. */
static mti_status take_error(struct cuda_stream *s)
{
    if (mti_atomic_load_relaxed(&s->error) == MTI_OK) return MTI_OK;
    mti_status st = (mti_status)atomic_exchange(&s->error, MTI_OK);
    if (st == MTI_OK) return MTI_OK;
    return mti__error(st, "a host function queued on the %s stream failed (%s)",
                      s->base.device->name, mti_status_string(st));
}

static mti_status refuse_while_capturing(struct cuda_stream *s, const char *what)
{
    if (MTI_UNLIKELY(mti_atomic_load_acquire(&s->capturing)))
        return mti__error(MTI_ERR_BUSY, "%s: the stream is capturing a CUDA graph", what);
    return MTI_OK;
}

/* ---- sync events --------------------------------------------------------------------------- */

static mti_status sync_event_take(struct cuda_stream *s, struct cuda_sync_event **out)
    MTI_EXCLUDES(s->sync_lock)
{
    mti_mutex_lock(&s->sync_lock);
    struct cuda_sync_event *e = s->sync_free;
    if (e) s->sync_free = e->next;
    mti_mutex_unlock(&s->sync_lock);
    if (!e) {
        struct cuda_device *dev = mti__cuda_dev(s->base.device);
        e = calloc(1, sizeof *e);
        if (!e) return mti__error(MTI_ERR_OUT_OF_MEMORY, "cuda sync event");
        unsigned flags = cudaEventDisableTiming;
        if (dev->blocking_events) flags |= cudaEventBlockingSync;
        cudaError_t err = cudaEventCreateWithFlags(&e->ev, flags);
        if (err != cudaSuccess) {
            free(e);
            return mti__cuda_error(dev, err, "cudaEventCreateWithFlags", __FILE__, __LINE__);
        }
    }
    *out = e;
    return MTI_OK;
}

static void sync_event_put(struct cuda_stream *s, struct cuda_sync_event *e)
    MTI_EXCLUDES(s->sync_lock)
{
    mti_mutex_lock(&s->sync_lock);
    e->next = s->sync_free;
    s->sync_free = e;
    mti_mutex_unlock(&s->sync_lock);
}

/* ---- synchronize, query, destroy ----------------------------------------------------------- */

static mti_status stream_synchronize(mti_backend_stream *bs, mti_sync_mode mode)
{
    struct cuda_stream *s = mti__cuda_stream(bs);
    struct cuda_device *dev = mti__cuda_dev(bs->device);
    MTI_CHECK(refuse_while_capturing(s, "synchronize"));
    MTI_CHECK(mti__cuda_use_device(dev));
    cudaError_t err = cudaStreamQuery(s->stream);
    if (err == cudaSuccess) return take_error(s);
    if (err != cudaErrorNotReady)
        return mti__cuda_error(dev, err, "cudaStreamQuery", __FILE__, __LINE__);

    struct cuda_sync_event *e;
    MTI_CHECK(sync_event_take(s, &e));
    mti_status st;
    MTI_CUDA_CHECK_GOTO(dev, cudaEventRecord(e->ev, s->stream), st, out);
    st = mti__cuda_wait_event(dev, e->ev, dev->blocking_events, mode);
out:
    sync_event_put(s, e);
    if (st != MTI_OK) return st;
    return take_error(s);
}

static mti_status stream_query(mti_backend_stream *bs)
{
    struct cuda_stream *s = mti__cuda_stream(bs);
    struct cuda_device *dev = mti__cuda_dev(bs->device);
    MTI_CHECK(refuse_while_capturing(s, "query"));
    MTI_CHECK(mti__cuda_sticky_status(dev));
    cudaError_t err = cudaStreamQuery(s->stream);
    if (err == cudaSuccess) return MTI_OK;
    if (err == cudaErrorNotReady) return MTI_ERR_NOT_READY;
    return mti__cuda_error(dev, err, "cudaStreamQuery", __FILE__, __LINE__);
}

/* Frees everything but the struct; safe on a partly built stream (zeroed fields). */
static void stream_release(struct cuda_stream *s)
{
    struct cuda_device *dev = mti__cuda_dev(s->base.device);
    mti__cuda_blaslt_destroy(dev, &s->blas);
    mti_mutex_lock(&s->sync_lock);
    struct cuda_sync_event *list = s->sync_free;
    s->sync_free = NULL;
    mti_mutex_unlock(&s->sync_lock);
    while (list) {
        struct cuda_sync_event *next = list->next;
        MTI_CUDA_NOTE(dev, cudaEventDestroy(list->ev));
        free(list);
        list = next;
    }
    if (s->stream) MTI_CUDA_NOTE(dev, cudaStreamDestroy(s->stream));
    mti_mutex_destroy(&s->sync_lock);
}

static void stream_destroy(mti_backend_stream *bs)
{
    struct cuda_stream *s = mti__cuda_stream(bs);
    struct cuda_device *dev = mti__cuda_dev(bs->device);
    if (mti__cuda_use_device(dev) != MTI_OK) {
        /* The context is lost: nothing will run any more; free what we can. */
        stream_release(s);
        free(s);
        return;
    }
    if (mti_atomic_load_acquire(&s->capturing)) {
        /* An abandoned capture: end it and drop the graph so the stream can drain. */
        cudaGraph_t g = NULL;
        MTI_CUDA_NOTE(dev, cudaStreamEndCapture(s->stream, &g));
        if (g) MTI_CUDA_NOTE(dev, cudaGraphDestroy(g));
        mti_atomic_store_release(&s->capturing, false);
        mti__cuda_host_calls_free(s->capture_calls);
        s->capture_calls = NULL;
    }
    (void)stream_synchronize(bs, dev->sync_mode);
    stream_release(s);
    free(s);
}

/* ---- submits ------------------------------------------------------------------------------- */

static mti_status stream_memcpy(mti_backend_stream *bs, void *dst, const void *src, size_t bytes,
                                mti_copy_kind kind, unsigned flags)
{
    (void)flags;
    struct cuda_device *dev = mti__cuda_dev(bs->device);
    enum cudaMemcpyKind ck;
    switch (kind) {
    case MTI_COPY_HOST_TO_DEVICE:
        ck = cudaMemcpyHostToDevice;
        break;
    case MTI_COPY_DEVICE_TO_HOST:
        ck = cudaMemcpyDeviceToHost;
        break;
    case MTI_COPY_DEVICE_TO_DEVICE:
        ck = cudaMemcpyDeviceToDevice;
        break;
    default:
        return mti__error(MTI_ERR_INVALID_ARGUMENT, "copy kind %d", (int)kind);
    }
    MTI_CHECK(mti__cuda_use_device(dev));
    MTI_CUDA_CHECK(dev, cudaMemcpyAsync(dst, src, bytes, ck, mti__cuda_stream(bs)->stream));
    return MTI_OK;
}

static mti_status stream_memset(mti_backend_stream *bs, void *dst, int value, size_t bytes,
                                unsigned flags)
{
    (void)flags;
    struct cuda_device *dev = mti__cuda_dev(bs->device);
    MTI_CHECK(mti__cuda_use_device(dev));
    MTI_CUDA_CHECK(dev, cudaMemsetAsync(dst, value, bytes, mti__cuda_stream(bs)->stream));
    return MTI_OK;
}

static mti_status stream_linear(mti_backend_stream *bs, const float *x, const float *w,
                                const float *bias, float *y, int m, int n, int k,
                                mti_activation act, unsigned flags)
{
    struct cuda_device *dev = mti__cuda_dev(bs->device);
    MTI_CHECK(mti__cuda_use_device(dev));
    return mti__cuda_linear(mti__cuda_stream(bs), x, w, bias, y, m, n, k, act,
                            (flags & MTI_SUBMIT_TF32) != 0);
}

/* Rounds x to bf16 into x16 on the stream, then the bf16 GEMM (both stream-ordered, so the
 * caller's x16 may be reused by the next linear on this stream). */
static mti_status stream_linear_bf16(mti_backend_stream *bs, const float *x, uint16_t *x16,
                                     const uint16_t *w16, const float *bias, float *y, int m, int n,
                                     int k, mti_activation act, unsigned flags)
{
    (void)flags;
    struct cuda_device *dev = mti__cuda_dev(bs->device);
    struct cuda_stream *s = mti__cuda_stream(bs);
    MTI_CHECK(mti__cuda_use_device(dev));
    MTI_CUDA_CHECK(dev, mti__cuda_f32_to_bf16(x, x16, (size_t)m * (size_t)k, s->stream));
    return mti__cuda_linear_bf16(s, x16, w16, bias, y, m, n, k, act);
}

/* Runs on a CUDA callback thread: no CUDA calls allowed here. */
static void host_trampoline(void *arg)
{
    struct cuda_host_call *c = arg;
    mti_status st = c->fn(c->user);
    if (st != MTI_OK) mti__cuda_stream_set_error(c->stream, st);
    if (!c->persistent) free(c);
}

void mti__cuda_host_calls_free(struct cuda_host_call *list)
{
    while (list) {
        struct cuda_host_call *next = list->next;
        free(list);
        list = next;
    }
}

static mti_status stream_launch_host(mti_backend_stream *bs, mti_host_fn fn, void *user,
                                     unsigned flags)
{
    (void)flags;
    struct cuda_stream *s = mti__cuda_stream(bs);
    struct cuda_device *dev = mti__cuda_dev(bs->device);
    MTI_CHECK(mti__cuda_use_device(dev));
    struct cuda_host_call *c = calloc(1, sizeof *c);
    if (!c) return mti__error(MTI_ERR_OUT_OF_MEMORY, "host call");
    c->fn = fn;
    c->user = user;
    c->stream = s;
    /* Only the recorder changes `capturing`, and we are the recorder: a plain read is exact. */
    c->persistent = mti_atomic_load_relaxed(&s->capturing);
    cudaError_t err = cudaLaunchHostFunc(s->stream, host_trampoline, c);
    if (err != cudaSuccess) {
        free(c);
        return mti__cuda_error(dev, err, "cudaLaunchHostFunc", __FILE__, __LINE__);
    }
    if (c->persistent) {
        c->next = s->capture_calls;
        s->capture_calls = c;
    }
    return MTI_OK;
}

static mti_status stream_wait_event(mti_backend_stream *bs, mti_backend_event *be, unsigned flags)
{
    (void)flags;
    struct cuda_device *dev = mti__cuda_dev(bs->device);
    MTI_CHECK(mti__cuda_use_device(dev));
    MTI_CUDA_CHECK(
        dev, cudaStreamWaitEvent(mti__cuda_stream(bs)->stream, ((struct cuda_event *)be)->ev, 0));
    return MTI_OK;
}

static const struct mti_backend_stream_i cuda_stream_iface = {
    .destroy = stream_destroy,
    .memcpy_async = stream_memcpy,
    .memset_async = stream_memset,
    .linear_async = stream_linear,
    .launch_host = stream_launch_host,
    .wait_event = stream_wait_event,
    .synchronize = stream_synchronize,
    .query = stream_query,
    .graph_begin = mti__cuda_graph_begin,
    .graph_end = mti__cuda_graph_end,
    .graph_launch = mti__cuda_graph_launch,
    .graph_destroy = mti__cuda_graph_destroy,
    .layernorm_async = mti__cuda_layernorm_async,
    .softmax_async = mti__cuda_softmax_async,
    .act_async = mti__cuda_act_async,
    .add_async = mti__cuda_add_async,
    .attention_async = mti__cuda_attention_async,
    .linear_bf16_async = stream_linear_bf16,
};

mti_status mti__cuda_stream_create(mti_backend_device *bd, mti_backend_stream **out)
{
    struct cuda_device *dev = mti__cuda_dev(bd);
    *out = NULL;
    MTI_CHECK(mti__cuda_use_device(dev));
    struct cuda_stream *s = calloc(1, sizeof *s);
    if (!s) return mti__error(MTI_ERR_OUT_OF_MEMORY, "cuda stream");
    s->base.iface = &cuda_stream_iface;
    s->base.device = bd;
    atomic_init(&s->error, MTI_OK);
    atomic_init(&s->capturing, false);
    mti_status st = mti_mutex_init(&s->sync_lock);
    if (st != MTI_OK) {
        free(s);
        return st;
    }
    MTI_CUDA_CHECK_GOTO(dev, cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), st,
                        fail);
    MTI_CHECK_GOTO(mti__cuda_blaslt_init(dev, &s->blas), st, fail);
    *out = &s->base;
    return MTI_OK;
fail:
    stream_release(s);
    free(s);
    return st;
}
