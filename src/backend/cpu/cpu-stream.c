/*
 * CPU streams: an ordered ring of ops, one executor token, a lazily-needed worker.
 *
 * Who runs an op: whoever holds the executor token (s->executing). A thread that needs ops
 * finished (synchronize, event sync, a stream-wait op, a full ring) takes the token when it is
 * free and runs the ops itself up to the sequence number it needs; otherwise it waits on
 * done_cv. The worker only runs ops up to kick_seq, which plain submits and queries raise;
 * submits flagged MTI_SUBMIT_WAITED (the submitting thread waits next) leave it alone, so a
 * request's ops run inline on its own thread.
 *
 * Lock: s->lock protects the ring and every field marked in cpu-internal.h. Ops run with the
 * lock dropped (an op may wait on another stream; a thread never holds two stream locks).
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu-internal.h"
#include "base/clock.h"
#include "base/fault.h" /* the negative control only (fault hooks: runtime/stream.c) */

/* Spin iterations before sleeping in MTI_SYNC_AUTO (~ a few microseconds). */
#define AUTO_SPIN_ITERATIONS 2000

mti_status mti__cpu_op_run(struct cpu_stream *s, const struct cpu_op *op)
{
    struct cpu_device *dev = (struct cpu_device *)s->base.device;
    switch (op->kind) {
    case CPU_OP_HOST_FN:
        return op->u.host.fn(op->u.host.user);
    case CPU_OP_MEMCPY:
        memmove(op->u.copy.dst, op->u.copy.src, op->u.copy.bytes);
        return MTI_OK;
    case CPU_OP_MEMSET:
        memset(op->u.set.dst, op->u.set.value, op->u.set.bytes);
        return MTI_OK;
    case CPU_OP_LINEAR:
        mti__cpu_linear(op->u.linear.x, op->u.linear.w, op->u.linear.bias, op->u.linear.y,
                        op->u.linear.m, op->u.linear.n, op->u.linear.k, op->u.linear.act);
        return MTI_OK;
    case CPU_OP_RECORD:
        mti__cpu_event_stamp(op->u.record.event, op->u.record.generation);
        return MTI_OK;
    case CPU_OP_WAIT:
        mti__cpu_stream_wait_seq(op->u.wait.other, op->u.wait.seq, dev->sync_mode);
        return MTI_OK;
    case CPU_OP_GRAPH: {
        struct cpu_graph *g = op->u.graph.graph;
        mti_status first = MTI_OK;
        for (int i = 0; i < g->n_ops; i++) {
            mti_status st = mti__cpu_op_run(s, &g->ops[i]);
            if (st != MTI_OK && first == MTI_OK) first = st;
        }
        mti__cpu_graph_unref(g);
        return first;
    }
    case CPU_OP_NN:
        op->u.nn.fn(&op->u.nn.args);
        return MTI_OK;
    }
    return mti__error_at(MTI_ERR_INTERNAL, __FILE__, __LINE__, "unknown cpu op %d", op->kind);
}

/* One wake-up per sleep: clearing worker_sleeping here stops later submits from signalling a
 * worker that is already on its way (each signal is a futex syscall). */
static void wake_worker(struct cpu_stream *s) MTI_REQUIRES(s->lock)
{
    s->worker_sleeping = false;
    mti_cond_signal(&s->work_cv);
}

/* Waits (lock held on entry and exit) until `completed` moves past `seen` or the token frees. */
static void wait_for_progress(struct cpu_stream *s, mti_sync_mode mode) MTI_REQUIRES(s->lock)
{
    uint64_t seen = s->head;
    if (mode == MTI_SYNC_SPIN || mode == MTI_SYNC_YIELD || mode == MTI_SYNC_AUTO) {
        /* The token holder is running an op with the lock dropped, so `completed` will move. */
        mti_mutex_unlock(&s->lock);
        long budget = mode == MTI_SYNC_AUTO ? AUTO_SPIN_ITERATIONS : -1;
        while (mti__cpu_stream_completed(s) == seen && budget != 0) {
            if (mode == MTI_SYNC_YIELD)
                sched_yield();
            else
                mti_cpu_relax();
            if (budget > 0) budget--;
        }
        mti_mutex_lock(&s->lock);
        if (s->head != seen || !s->executing) return;
    }
    s->done_waiters++;
    while (s->head == seen && s->executing)
        mti_cond_wait(&s->done_cv, &s->lock);
    s->done_waiters--;
}

/* Runs or waits until s->head >= target. Caller holds s->lock (dropped while ops run). */
static void run_until(struct cpu_stream *s, uint64_t target, mti_sync_mode mode)
    MTI_REQUIRES(s->lock)
{
    mti_mutex_assert_held(&s->lock);
    while (s->head < target) {
#ifndef MTI_BROKEN_STREAM_NO_TOKEN
        if (s->executing && !MTI_UNSAFE_STRESS()) { /* (negative control: fault.h) */
            wait_for_progress(s, mode);
            continue;
        }
#else
        /* Broken twin (tests only): ignore the token, so two threads may run ops at once. */
        (void)wait_for_progress;
#endif
        s->executing = true;
        while (s->head < target) {
            struct cpu_op op = s->ring[s->head % MTI_CPU_RING_CAP];
            mti_mutex_unlock(&s->lock);
            mti_status st = mti__cpu_op_run(s, &op);
            mti_mutex_lock(&s->lock);
            s->head++;
            /* release: a lock-free reader that sees the new count sees the op's effects */
            mti_atomic_store_release(&s->completed, s->head);
            if (st != MTI_OK && s->error == MTI_OK) s->error = st;
            if (s->done_waiters > 0) mti_cond_broadcast(&s->done_cv);
        }
        s->executing = false;
        /* Work beyond our target that someone asked to progress: hand it to the worker. */
        if (s->kick_seq > s->head && s->worker_sleeping) wake_worker(s);
    }
}

void mti__cpu_stream_wait_seq(struct cpu_stream *s, uint64_t seq, mti_sync_mode mode)
{
    if (mti__cpu_stream_completed(s) >= seq) return;
    mti_mutex_lock(&s->lock);
    run_until(s, seq, mode);
    mti_mutex_unlock(&s->lock);
}

static void kick_locked(struct cpu_stream *s, uint64_t seq) MTI_REQUIRES(s->lock)
{
    if (seq > s->kick_seq) s->kick_seq = seq;
    if (s->kick_seq > s->head && !s->executing && s->worker_sleeping) wake_worker(s);
}

void mti__cpu_stream_kick(struct cpu_stream *s, uint64_t seq)
{
    mti_mutex_lock(&s->lock);
    kick_locked(s, seq);
    mti_mutex_unlock(&s->lock);
}

/* Capture mode: the op is appended to the capture list (recorder only, no lock needed). */
static mti_status capture_op(struct cpu_stream *s, const struct cpu_op *op)
{
    if (s->n_capture == s->capture_cap) {
        int cap = s->capture_cap ? 2 * s->capture_cap : 16;
        struct cpu_op *ops = realloc(s->capture_ops, sizeof *ops * (size_t)cap);
        if (!ops) return mti__error(MTI_ERR_OUT_OF_MEMORY, "graph capture of %d ops", cap);
        s->capture_ops = ops;
        s->capture_cap = cap;
    }
    s->capture_ops[s->n_capture++] = *op;
    return MTI_OK;
}

mti_status mti__cpu_stream_submit(struct cpu_stream *s, const struct cpu_op *op, unsigned flags,
                                  uint64_t *seq_out)
{
    struct cpu_device *dev = (struct cpu_device *)s->base.device;
    if (mti_atomic_load_relaxed(&s->capturing)) return capture_op(s, op);
    mti_mutex_lock(&s->lock);
    /* A full ring: help drain it (or wait) until one slot frees. */
    while (s->tail - s->head >= MTI_CPU_RING_CAP)
        run_until(s, s->head + 1, dev->sync_mode);
    s->ring[s->tail % MTI_CPU_RING_CAP] = *op;
    s->tail++;
    if (seq_out) *seq_out = s->tail;
    if (!(flags & MTI_SUBMIT_WAITED)) kick_locked(s, s->tail);
    mti_mutex_unlock(&s->lock);
    return MTI_OK;
}

static void *worker_main(void *arg)
{
    struct cpu_stream *s = arg;
    struct cpu_device *dev = (struct cpu_device *)s->base.device;
    mti_mutex_lock(&s->lock);
    for (;;) {
        if (s->kick_seq > s->head && !s->executing) {
            run_until(s, s->kick_seq, dev->sync_mode);
            continue;
        }
        if (s->stopping) break;
        s->worker_sleeping = true;
        mti_cond_wait(&s->work_cv, &s->lock);
        s->worker_sleeping = false;
    }
    mti_mutex_unlock(&s->lock);
    return NULL;
}

static mti_status refuse_while_capturing(struct cpu_stream *s, const char *what)
{
    if (MTI_UNLIKELY(mti_atomic_load_acquire(&s->capturing)))
        return mti__error(MTI_ERR_BUSY, "%s: the stream is capturing a graph", what);
    return MTI_OK;
}

static mti_status stream_synchronize(mti_backend_stream *bs, mti_sync_mode mode)
{
    struct cpu_stream *s = (struct cpu_stream *)bs;
    MTI_CHECK(refuse_while_capturing(s, "synchronize"));
    mti_mutex_lock(&s->lock);
    run_until(s, s->tail, mode);
    mti_status st = s->error;
    s->error = MTI_OK;
    mti_mutex_unlock(&s->lock);
    return st;
}

static mti_status stream_query(mti_backend_stream *bs)
{
    struct cpu_stream *s = (struct cpu_stream *)bs;
    MTI_CHECK(refuse_while_capturing(s, "query"));
    mti_mutex_lock(&s->lock);
    bool idle = s->head == s->tail;
    if (!idle) kick_locked(s, s->tail);
    mti_mutex_unlock(&s->lock);
    return idle ? MTI_OK : MTI_ERR_NOT_READY;
}

static void stream_destroy(mti_backend_stream *bs)
{
    struct cpu_stream *s = (struct cpu_stream *)bs;
    struct cpu_device *dev = (struct cpu_device *)s->base.device;
    mti_mutex_lock(&s->lock);
    run_until(s, s->tail, dev->sync_mode);
    s->stopping = true;
    mti_cond_signal(&s->work_cv);
    mti_mutex_unlock(&s->lock);
    pthread_join(s->worker, NULL);
    free(s->capture_ops);
    mti_cond_destroy(&s->work_cv);
    mti_cond_destroy(&s->done_cv);
    mti_mutex_destroy(&s->lock);
    free(s);
}

static mti_status submit_simple(mti_backend_stream *bs, struct cpu_op op, unsigned flags)
{
    return mti__cpu_stream_submit((struct cpu_stream *)bs, &op, flags, NULL);
}

static mti_status stream_memcpy(mti_backend_stream *bs, void *dst, const void *src, size_t bytes,
                                mti_copy_kind kind, unsigned flags)
{
    (void)kind; /* one address space on the CPU */
    struct cpu_op op = {.kind = CPU_OP_MEMCPY, .u.copy = {dst, src, bytes}};
    return submit_simple(bs, op, flags);
}

static mti_status stream_memset(mti_backend_stream *bs, void *dst, int value, size_t bytes,
                                unsigned flags)
{
    struct cpu_op op = {.kind = CPU_OP_MEMSET, .u.set = {dst, value, bytes}};
    return submit_simple(bs, op, flags);
}

static mti_status stream_linear(mti_backend_stream *bs, const float *x, const float *w,
                                const float *bias, float *y, int m, int n, int k,
                                mti_activation act, unsigned flags)
{
    struct cpu_op op = {.kind = CPU_OP_LINEAR, .u.linear = {x, w, bias, y, m, n, k, act}};
    return submit_simple(bs, op, flags);
}

static mti_status stream_launch_host(mti_backend_stream *bs, mti_host_fn fn, void *user,
                                     unsigned flags)
{
    struct cpu_op op = {.kind = CPU_OP_HOST_FN, .u.host = {fn, user}};
    return submit_simple(bs, op, flags);
}

static mti_status stream_wait_event(mti_backend_stream *bs, mti_backend_event *be, unsigned flags)
{
    struct cpu_event *e = (struct cpu_event *)be;
    mti_mutex_lock(&e->lock);
    struct cpu_stream *other = e->stream;
    uint64_t seq = e->seq;
    mti_mutex_unlock(&e->lock);
    /* Nothing to wait for: never recorded, already done, or ordered by the stream itself. */
    if (!other || other == (struct cpu_stream *)bs || mti__cpu_stream_completed(other) >= seq)
        return MTI_OK;
    struct cpu_op op = {.kind = CPU_OP_WAIT, .u.wait = {other, seq}};
    return submit_simple(bs, op, flags);
}

static const struct mti_backend_stream_i cpu_stream_iface = {
    .destroy = stream_destroy,
    .memcpy_async = stream_memcpy,
    .memset_async = stream_memset,
    .linear_async = stream_linear,
    .launch_host = stream_launch_host,
    .wait_event = stream_wait_event,
    .synchronize = stream_synchronize,
    .query = stream_query,
    .graph_begin = mti__cpu_graph_begin,
    .graph_end = mti__cpu_graph_end,
    .graph_launch = mti__cpu_graph_launch,
    .graph_destroy = mti__cpu_graph_destroy,
    .layernorm_async = mti__cpu_layernorm_async,
    .softmax_async = mti__cpu_softmax_async,
    .act_async = mti__cpu_act_async,
    .add_async = mti__cpu_add_async,
    .attention_async = mti__cpu_attention_async,
};

mti_status mti__cpu_stream_create(mti_backend_device *dev, mti_backend_stream **out)
{
    *out = NULL;
    struct cpu_stream *s = calloc(1, sizeof *s);
    if (!s) return mti__error(MTI_ERR_OUT_OF_MEMORY, "cpu stream");
    s->base.iface = &cpu_stream_iface;
    s->base.device = dev;
    mti_status st = mti_mutex_init(&s->lock);
    if (st != MTI_OK) goto fail_free;
    if ((st = mti_cond_init(&s->done_cv)) != MTI_OK) goto fail_mutex;
    if ((st = mti_cond_init(&s->work_cv)) != MTI_OK) goto fail_done;
    if (pthread_create(&s->worker, NULL, worker_main, s) != 0) {
        st = mti__error(MTI_ERR_OUT_OF_MEMORY, "cannot start a cpu stream worker thread");
        goto fail_work;
    }
    *out = &s->base;
    return MTI_OK;
fail_work:
    mti_cond_destroy(&s->work_cv);
fail_done:
    mti_cond_destroy(&s->done_cv);
fail_mutex:
    mti_mutex_destroy(&s->lock);
fail_free:
    free(s);
    return st;
}
