/*
 * CUDA backend internals (C only; kernels.cu sees cuda-kernels.h instead).
 *
 * Objects: a cuda_device per GPU ordinal (no CUDA resources of its own: it uses the primary
 * context), a cuda_stream per pool slot (a non-blocking cudaStream_t, its own cuBLASLt handle
 * and workspace, its own plan cache, a small pool of sync events), a cuda_event per mti event.
 *
 * Threads: a stream's submit functions run on one thread at a time (the runtime's record lock),
 * so `blas` and `capture_calls` need no lock. synchronize/query/event calls come from any
 * thread: they touch only the atomics, the sync-event free list (sync_lock, a leaf) and CUDA,
 * whose API is thread-safe. No CUDA wait happens under sync_lock.
 *
 * Current device: CUDA's current device is per thread and any thread may use any device, so
 * every entry point that talks to a device calls mti__cuda_use_device() first.
 *
 * Errors: every CUDA/cuBLAS call goes through MTI_CUDA_CHECK / MTI_CUBLAS_CHECK, which map the
 * error to an mti_status with the expression, file and line in the thread's message, clear the
 * thread's non-sticky CUDA error, and latch sticky errors (the context is lost) on the device;
 * a latched device fails every later call with the original error.
 */
#ifndef MTI_BACKEND_CUDA_INTERNAL_H
#define MTI_BACKEND_CUDA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "backend/backend-impl.h"
#include "base/atomics.h"
#include "base/status.h"
#include "base/sync.h"

/* Plans cached per stream (keyed by shape, activation, bias, pointer alignment, precision). */
#define MTI_CUDA_PLAN_CACHE 64
/* Defaults of the MTI_CUDA_* knobs read once per device open. */
#define MTI_CUDA_DEFAULT_SPIN_US   40
#define MTI_CUDA_DEFAULT_WORKSPACE ((size_t)32 << 20)

struct cuda_device {
    mti_backend_device base;
    mti_sync_mode sync_mode; /* the runtime's mode: internal waits, blocking-sync events */
    bool blocking_events;    /* sync_mode == BLOCK: events get cudaEventBlockingSync */
    bool tf32;               /* MTI_CUDA_TF32=1: every linear may use TF32 (global) */
    uint64_t spin_ns;        /* MTI_CUDA_SPIN_US: spin budget of MTI_SYNC_AUTO */
    size_t workspace_bytes;  /* MTI_CUDA_WORKSPACE: cuBLASLt workspace per stream */
    int cc_major, cc_minor;
    /* 0, or the first sticky cudaError_t seen on this device: the context is unusable and
     * every later call fails with it. Written once (CAS), read relaxed on every call: a late
     * reader just makes one more CUDA call, which reports the same error. */
    _Atomic int sticky;
};

/* One cached nn.Linear plan: descriptors and the heuristic's algorithm for one key. */
struct cuda_linear_key {
    int m, n, k;
    int act; /* mti_activation */
    int has_bias;
    int align; /* lowest common alignment of the pointers, bytes, capped at 256 */
    int tf32;  /* CUBLAS_COMPUTE_32F_FAST_TF32 (MTI_SUBMIT_TF32 or MTI_CUDA_TF32=1) */
    int dtype; /* cudaDataType of A and B: CUDA_R_32F, or CUDA_R_16BF (linear_bf16_async) */
};

struct cuda_linear_plan {
    struct cuda_linear_key key;
    bool valid;
    bool epilogue_bias; /* the epilogue reads the bias: set BIAS_POINTER each call */
    bool post_bias;     /* bias left to the post kernel */
    int post_act;       /* activation left to the post kernel (MTI_ACT_NONE: no kernel) */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c; /* A = w (k x n), B = x (k x m), C = D = y (n x m) */
    cublasLtMatmulAlgo_t algo;
};

/* Per-stream cuBLASLt state: touched only by the thread recording into the stream. */
struct cuda_blaslt {
    cublasLtHandle_t handle;
    void *workspace;
    size_t workspace_bytes;
    unsigned last_hit;    /* index of the plan used last (checked first) */
    unsigned next_victim; /* round-robin eviction once the cache is full */
    struct cuda_linear_plan plans[MTI_CUDA_PLAN_CACHE];
};

/* A host function in flight (or owned by a captured graph). */
struct cuda_host_call {
    mti_host_fn fn;
    void *user;
    struct cuda_stream *stream; /* whose error slot a failure goes to */
    bool persistent;            /* captured into a graph: freed with the graph, not after a run */
    struct cuda_host_call *next;
};

/* A pooled event for stream synchronize (one per concurrent synchronizer). */
struct cuda_sync_event {
    cudaEvent_t ev;
    struct cuda_sync_event *next;
};

struct cuda_stream {
    mti_backend_stream base;
    cudaStream_t stream;
    /* First error (mti_status) returned by a queued host function since the last synchronize.
     * Set by CAS from the CUDA callback thread, taken (exchange) by synchronize: the host
     * function finished before the sync event completed, so the taker sees the value. */
    _Atomic int error;
    /* A graph capture is open on this stream (graph_begin .. graph_end); set and cleared by the
     * recorder, read by synchronize/query on other threads to refuse illegal waits. */
    _Atomic bool capturing;
    mti_mutex sync_lock; /* protects sync_free */
    struct cuda_sync_event *sync_free MTI_GUARDED_BY(sync_lock);
    struct cuda_host_call *capture_calls; /* recorder only: host calls of the open capture */
    struct cuda_blaslt blas;              /* recorder only */
};

struct cuda_event {
    mti_backend_event base;
    cudaEvent_t ev;
    bool timing;
    bool blocking; /* created with cudaEventBlockingSync */
};

/* ---- errors -------------------------------------------------------------------------------- */

/* Maps err (not cudaSuccess) to a status, sets the thread's message, clears the thread's
 * non-sticky error, latches sticky errors on dev (may be NULL). */
mti_status mti__cuda_error(struct cuda_device *dev, cudaError_t err, const char *expr,
                           const char *file, int line);
mti_status mti__cublas_error(struct cuda_device *dev, cublasStatus_t err, const char *expr,
                             const char *file, int line);
/* MTI_OK, or the device's latched sticky error. */
mti_status mti__cuda_sticky_status(struct cuda_device *dev);

#define MTI_CUDA_CHECK(dev, call)                                                                  \
    do {                                                                                           \
        cudaError_t mti_cuda_err_ = (call);                                                        \
        if (MTI_UNLIKELY(mti_cuda_err_ != cudaSuccess))                                            \
            return mti__cuda_error((dev), mti_cuda_err_, #call, __FILE__, __LINE__);               \
    } while (0)

#define MTI_CUDA_CHECK_GOTO(dev, call, st, label)                                                  \
    do {                                                                                           \
        cudaError_t mti_cuda_err_ = (call);                                                        \
        if (MTI_UNLIKELY(mti_cuda_err_ != cudaSuccess)) {                                          \
            (st) = mti__cuda_error((dev), mti_cuda_err_, #call, __FILE__, __LINE__);               \
            goto label;                                                                            \
        }                                                                                          \
    } while (0)

#define MTI_CUBLAS_CHECK(dev, call)                                                                \
    do {                                                                                           \
        cublasStatus_t mti_cublas_err_ = (call);                                                   \
        if (MTI_UNLIKELY(mti_cublas_err_ != CUBLAS_STATUS_SUCCESS))                                \
            return mti__cublas_error((dev), mti_cublas_err_, #call, __FILE__, __LINE__);           \
    } while (0)

#define MTI_CUBLAS_CHECK_GOTO(dev, call, st, label)                                                \
    do {                                                                                           \
        cublasStatus_t mti_cublas_err_ = (call);                                                   \
        if (MTI_UNLIKELY(mti_cublas_err_ != CUBLAS_STATUS_SUCCESS)) {                              \
            (st) = mti__cublas_error((dev), mti_cublas_err_, #call, __FILE__, __LINE__);           \
            goto label;                                                                            \
        }                                                                                          \
    } while (0)

/* Logs (debug level) a failure of a call whose result cannot be returned (frees, destroys). */
void mti__cuda_note(struct cuda_device *dev, cudaError_t err, const char *expr, const char *file,
                    int line);
#define MTI_CUDA_NOTE(dev, call)                                                                   \
    do {                                                                                           \
        cudaError_t mti_cuda_err_ = (call);                                                        \
        if (mti_cuda_err_ != cudaSuccess)                                                          \
            mti__cuda_note((dev), mti_cuda_err_, #call, __FILE__, __LINE__);                       \
    } while (0)

/* ---- device -------------------------------------------------------------------------------- */

static inline struct cuda_device *mti__cuda_dev(mti_backend_device *d)
{
    return (struct cuda_device *)d;
}

/* Makes dev the calling thread's current device (no call when it already is); also fails with
 * the device's sticky error. Call first in every entry point that talks to CUDA. */
mti_status mti__cuda_use_device(struct cuda_device *dev);

/* Waits for ev with the sync-mode policy: SPIN polls, YIELD polls with sched_yield, BLOCK uses
 * cudaEventSynchronize when ev is a blocking-sync event (else sleep-polls), AUTO polls for
 * dev->spin_ns then sleep-polls with naps of 1/8 of the time waited. MTI_OK or the mapped
 * device error. */
mti_status mti__cuda_wait_event(struct cuda_device *dev, cudaEvent_t ev, bool blocking,
                                mti_sync_mode mode);

/* ---- streams, events, math ----------------------------------------------------------------- */

mti_status mti__cuda_stream_create(mti_backend_device *dev, mti_backend_stream **out);
mti_status mti__cuda_event_create(mti_backend_device *dev, bool timing, mti_backend_event **out);
/* The stream's raw handle, for the graph code. */
static inline struct cuda_stream *mti__cuda_stream(mti_backend_stream *s)
{
    return (struct cuda_stream *)s;
}

/* Records a host-function failure into s's error slot (first error wins). Callback-safe. */
void mti__cuda_stream_set_error(struct cuda_stream *s, mti_status st);

/* cuBLASLt state of a new stream (handle + workspace) and its teardown. */
mti_status mti__cuda_blaslt_init(struct cuda_device *dev, struct cuda_blaslt *b);
void mti__cuda_blaslt_destroy(struct cuda_device *dev, struct cuda_blaslt *b);
/* y[m,n] = act(x[m,k] w[n,k]^T + bias[n]) on s (recorder thread only). tf32: the GEMM may use
 * TF32 tensor cores (MTI_SUBMIT_TF32); MTI_CUDA_TF32=1 turns it on for every call. */
mti_status mti__cuda_linear(struct cuda_stream *s, const float *x, const float *w,
                            const float *bias, float *y, int m, int n, int k, mti_activation act,
                            bool tf32);
/* The same with bf16 A and B (x16 and w16, bf16 bit patterns), CUBLAS_COMPUTE_32F and fp32
 * bias and y: the GEMM of linear_bf16_async once its input is converted. */
mti_status mti__cuda_linear_bf16(struct cuda_stream *s, const uint16_t *x16, const uint16_t *w16,
                                 const float *bias, float *y, int m, int n, int k,
                                 mti_activation act);

/* ---- CUDA graphs (the stream vtable's graph members) -----------------------------------------
 *
 * graph_begin: the calling thread starts capturing the work it submits to s
 *   (cudaStreamCaptureModeThreadLocal). Until graph_end, synchronize/query on s fail with
 *   MTI_ERR_BUSY, and the capturing thread must not allocate device memory or wait.
 * graph_end: ends the capture and instantiates it into *out (NULL on failure; a failed or
 *   invalidated capture leaves s usable and not capturing).
 * graph_launch: runs g on s in stream order. A graph with host functions reports their
 *   errors to the stream it was captured on, so it may only be launched there; a graph
 *   without host functions may be launched on any stream of its device.
 * graph_destroy: frees g; launches already submitted still run to completion (their host
 *   calls are freed when the last of them is done). NULL is a no-op.
 */
typedef struct mti_cuda_graph mti_cuda_graph;
struct mti_cuda_graph {
    mti_backend_graph base;
    cudaGraphExec_t exec;
    struct cuda_stream *capture_stream; /* where host-function errors go */
    bool has_host_calls;
};

mti_status mti__cuda_graph_begin(mti_backend_stream *s);
mti_status mti__cuda_graph_end(mti_backend_stream *s, mti_backend_graph **out);
mti_status mti__cuda_graph_launch(mti_backend_stream *s, mti_backend_graph *g, unsigned flags);
void mti__cuda_graph_destroy(mti_backend_graph *g);
/* Frees a list of host calls (a failed capture's, or a graph's when its last user is gone). */
void mti__cuda_host_calls_free(struct cuda_host_call *list);

#endif
