/*
 * CPU backend internals. A CPU stream is an ordered queue of ops (a fixed ring: no allocation
 * per op) with one executor token. Work runs on the stream's worker thread or on any thread
 * that waits for it: a waiter that finds nobody executing takes the token and runs the queued
 * ops itself, so a submit-then-wait request pays no thread hand-off (see DESIGN.md: on 2 cores
 * the hand-off costs more than the work). Cross-stream waits help the other stream the same
 * way; a wait captures (stream, seq) when it is enqueued, so waits form a DAG in time and
 * helping cannot deadlock.
 *
 * Lock order: a thread holds at most one stream lock at a time (it drops its own before it
 * helps another stream), and an event's lock is never held while taking a stream's lock.
 */
#ifndef MTI_BACKEND_CPU_INTERNAL_H
#define MTI_BACKEND_CPU_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "backend/backend-impl.h"
#include "base/atomics.h"
#include "base/sync.h"

#define MTI_CPU_RING_CAP 256

struct cpu_event;

enum cpu_op_kind {
    CPU_OP_HOST_FN,
    CPU_OP_MEMCPY,
    CPU_OP_MEMSET,
    CPU_OP_LINEAR,
    CPU_OP_RECORD,
    CPU_OP_WAIT,
    CPU_OP_GRAPH,
    CPU_OP_NN, /* a neural-network op of cpu-nn.c: fn(args) */
};

/* Arguments of a CPU_OP_NN op (their meaning is the op's, see cpu-nn.c). */
struct cpu_nn_args {
    const float *a, *b, *c;
    float *y, *scratch;
    size_t count;
    int i0, i1, i2, i3;
    float f0;
};

struct cpu_graph;

struct cpu_op {
    enum cpu_op_kind kind;
    union {
        struct {
            mti_host_fn fn;
            void *user;
        } host;
        struct {
            void *dst;
            const void *src;
            size_t bytes;
        } copy;
        struct {
            void *dst;
            int value;
            size_t bytes;
        } set;
        struct {
            const float *x, *w, *bias;
            float *y;
            int m, n, k;
            mti_activation act;
        } linear;
        struct {
            struct cpu_event *event;
            uint64_t generation;
        } record;
        struct {
            struct cpu_stream *other;
            uint64_t seq;
        } wait;
        struct {
            struct cpu_graph *graph;
        } graph;
        struct {
            void (*fn)(const struct cpu_nn_args *args);
            struct cpu_nn_args args;
        } nn;
    } u;
};

struct cpu_device {
    mti_backend_device base;
    mti_sync_mode sync_mode; /* how waits inside queued work (stream-wait-event) wait */
};

struct cpu_stream {
    mti_backend_stream base;
    mti_mutex lock;   /* protects every field below marked MTI_GUARDED_BY(lock) */
    mti_cond done_cv; /* signalled when `completed` advances and done_waiters > 0 */
    mti_cond work_cv; /* wakes the worker (kick_seq raised, or stopping) */
    struct cpu_op ring[MTI_CPU_RING_CAP] MTI_GUARDED_BY(lock);
    uint64_t head MTI_GUARDED_BY(lock); /* ops finished; ring[head % CAP] runs next */
    uint64_t tail MTI_GUARDED_BY(lock); /* ops submitted; op i has sequence number i + 1 */
    /* Mirror of head for lock-free queries: stored (release) under lock after each op, so a
     * reader that loads it (acquire) sees the op's memory effects. */
    _Atomic uint64_t completed;
    uint64_t kick_seq MTI_GUARDED_BY(lock); /* the worker runs ops until head reaches this */
    bool executing MTI_GUARDED_BY(lock);    /* the executor token: one runner at a time */
    int done_waiters MTI_GUARDED_BY(lock);
    bool worker_sleeping MTI_GUARDED_BY(lock);
    bool stopping MTI_GUARDED_BY(lock);
    mti_status error MTI_GUARDED_BY(lock); /* first error of queued work since the last sync */
    pthread_t worker;
    /* Graph capture: set and cleared by the recorder, read by waiters on other threads. While
     * set, the recorder's submits go to capture_ops instead of the ring. */
    _Atomic bool capturing;
    struct cpu_op *capture_ops; /* recorder only */
    int n_capture, capture_cap; /* recorder only */
};

/* A captured op list, replayed by one CPU_OP_GRAPH op. Freed when the last of its owner and
 * its queued launches lets go (refs). */
struct cpu_graph {
    mti_backend_graph base;
    struct cpu_op *ops;
    int n_ops;
    _Atomic int refs;
};

struct cpu_event {
    mti_backend_event base;
    bool timing;
    mti_mutex lock;                                 /* protects the captured marker below */
    struct cpu_stream *stream MTI_GUARDED_BY(lock); /* NULL until recorded */
    uint64_t seq MTI_GUARDED_BY(lock);
    uint64_t generation MTI_GUARDED_BY(lock); /* bumped by each record */
    uint64_t time_ns MTI_GUARDED_BY(lock);    /* when the record op ran (timing events) */
    uint64_t time_generation MTI_GUARDED_BY(lock);
};

/* Enqueues op; *seq_out (optional) gets its sequence number. */
mti_status mti__cpu_stream_submit(struct cpu_stream *s, const struct cpu_op *op, unsigned flags,
                                  uint64_t *seq_out);
/* Blocks until s has finished op number seq, helping to run it when nobody else is. */
void mti__cpu_stream_wait_seq(struct cpu_stream *s, uint64_t seq, mti_sync_mode mode);
/* Makes sure ops up to seq progress without a waiter (wakes the worker). */
void mti__cpu_stream_kick(struct cpu_stream *s, uint64_t seq);
static inline uint64_t mti__cpu_stream_completed(struct cpu_stream *s)
{
    return mti_atomic_load_acquire(&s->completed);
}

mti_status mti__cpu_stream_create(mti_backend_device *dev, mti_backend_stream **out);
mti_status mti__cpu_event_create(mti_backend_device *dev, bool timing, mti_backend_event **out);
/* Runs when a timing record op executes. */
void mti__cpu_event_stamp(struct cpu_event *e, uint64_t generation);

mti_status mti__cpu_graph_begin(mti_backend_stream *s);
mti_status mti__cpu_graph_end(mti_backend_stream *s, mti_backend_graph **out);
mti_status mti__cpu_graph_launch(mti_backend_stream *s, mti_backend_graph *g, unsigned flags);
void mti__cpu_graph_destroy(mti_backend_graph *g);
/* Runs one op (the executor calls it with the stream lock dropped). */
mti_status mti__cpu_op_run(struct cpu_stream *s, const struct cpu_op *op);
void mti__cpu_graph_unref(struct cpu_graph *g);

/* y[m,n] = act(x w^T + bias) with single-threaded BLAS. */
void mti__cpu_linear(const float *x, const float *w, const float *bias, float *y, int m, int n,
                     int k, mti_activation act);

/* cpu-nn.c: the stream vtable's neural-network members. */
mti_status mti__cpu_layernorm_async(mti_backend_stream *s, const float *x, const float *gamma,
                                    const float *beta, float *y, int rows, int n, float eps,
                                    unsigned flags);
mti_status mti__cpu_softmax_async(mti_backend_stream *s, const float *x, float *y, int rows, int n,
                                  unsigned flags);
mti_status mti__cpu_act_async(mti_backend_stream *s, const float *x, float *y, size_t count,
                              mti_activation act, unsigned flags);
mti_status mti__cpu_add_async(mti_backend_stream *s, const float *a, const float *b, float *y,
                              size_t count, unsigned flags);
mti_status mti__cpu_attention_async(mti_backend_stream *s, const float *qkv, float *out,
                                    float *scratch, int batch, int seq, int heads, int head_dim,
                                    unsigned flags);

#endif
