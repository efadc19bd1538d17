/*
 * The backend interface: one vtable per concept (device, stream, event), each object laid out
 * as { iface, device, ctx-by-embedding }. The runtime (pool, allocator, events) only ever talks
 * to these tables, so a backend (cpu/, cuda/) slots in without touching src/runtime/.
 *
 * Rules every backend keeps:
 * - Stream operations are ordered: work submitted to one stream runs in submission order, and a
 *   submit returns before its work runs (the CPU backend too, so async bugs show up in CI).
 * - The runtime serialises recording into one stream (its record lock), so a stream's submit
 *   functions are never called by two threads at once; synchronize, query and event calls may
 *   come from any thread at any time.
 * - Errors raised by queued work are kept on the stream and returned (then cleared) by the next
 *   synchronize; a device error that poisons the context is reported on every later call.
 * - Nothing here aborts; all failures are mti_status with the thread's message set.
 * Members marked (optional) may be NULL; the caller supplies the default named beside them.
 */
#ifndef MTI_BACKEND_IMPL_H
#define MTI_BACKEND_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mtinfer.h"

typedef struct mti_backend_device mti_backend_device;
typedef struct mti_backend_stream mti_backend_stream;
typedef struct mti_backend_event mti_backend_event;
typedef struct mti_backend_graph mti_backend_graph;

/* Per-submit hints from the runtime. */
enum {
    /* The submitting thread will wait for this work itself soon (submit-then-wait requests):
     * the backend need not wake a worker for it. Without it, work must make progress even if
     * nobody ever waits. */
    MTI_SUBMIT_WAITED = 1u << 0,
    /* linear_async only: this fp32 GEMM may use TF32 tensor cores (inputs rounded to a 10-bit
     * mantissa, fp32 accumulation; relative error near 3e-4). Set by models loaded with
     * MTI_PRECISION_TF32. A permission, not a demand: a backend without TF32 (the CPU)
     * ignores it and computes in fp32. */
    MTI_SUBMIT_TF32 = 1u << 1,
};

struct mti_backend_device_i {
    const char *name; /* "cpu", "cuda" */
    void (*destroy)(mti_backend_device *dev);
    mti_status (*stream_create)(mti_backend_device *dev, mti_backend_stream **out);
    mti_status (*event_create)(mti_backend_device *dev, bool timing, mti_backend_event **out);
    /* Raw device memory; the runtime's caching allocator sits in front of these. */
    mti_status (*mem_alloc)(mti_backend_device *dev, size_t bytes, void **out);
    void (*mem_free)(mti_backend_device *dev, void *ptr);
    /* Host memory the device copies from/to fastest (pinned on CUDA). (optional: NULL means
     * plain aligned host memory) */
    mti_status (*host_alloc)(mti_backend_device *dev, size_t bytes, void **out);
    void (*host_free)(mti_backend_device *dev, void *ptr);
    /* Whether ptr is host memory the device copies asynchronously (pinned). (optional: NULL
     * means no host memory is special) */
    bool (*host_is_pinned)(mti_backend_device *dev, const void *ptr);
};

struct mti_backend_stream_i {
    /* Drains the stream, then frees it. */
    void (*destroy)(mti_backend_stream *s);
    mti_status (*memcpy_async)(mti_backend_stream *s, void *dst, const void *src, size_t bytes,
                               mti_copy_kind kind, unsigned flags);
    mti_status (*memset_async)(mti_backend_stream *s, void *dst, int value, size_t bytes,
                               unsigned flags);
    /* y[m,n] = act(x[m,k] w[n,k]^T + bias[n]), fp32 row-major; bias may be NULL. */
    mti_status (*linear_async)(mti_backend_stream *s, const float *x, const float *w,
                               const float *bias, float *y, int m, int n, int k, mti_activation act,
                               unsigned flags);
    mti_status (*launch_host)(mti_backend_stream *s, mti_host_fn fn, void *user, unsigned flags);
    /* Work submitted after this waits for the event's captured work. */
    mti_status (*wait_event)(mti_backend_stream *s, mti_backend_event *e, unsigned flags);
    /* Blocks until all submitted work is done; returns and clears the first queued error. */
    mti_status (*synchronize)(mti_backend_stream *s, mti_sync_mode mode);
    /* MTI_OK when idle, MTI_ERR_NOT_READY otherwise; never blocks; ensures progress. */
    mti_status (*query)(mti_backend_stream *s);
    /* Graphs (optional, all four or none: NULL means MTI_ERR_UNSUPPORTED). Between graph_begin
     * and graph_end the recorder's submits to s are captured, not run; graph_launch replays
     * the captured work on s in stream order with one submit. Device memory must be
     * allocated before graph_begin; s may not be waited on while it captures. */
    mti_status (*graph_begin)(mti_backend_stream *s);
    mti_status (*graph_end)(mti_backend_stream *s, mti_backend_graph **out);
    mti_status (*graph_launch)(mti_backend_stream *s, mti_backend_graph *g, unsigned flags);
    void (*graph_destroy)(mti_backend_graph *g);
    /* Neural-network ops for src/model (optional, all or none: NULL means
     * MTI_ERR_UNSUPPORTED). fp32, row-major; y may equal x (in place). */
    /* y[r,:] = (x[r,:] - mean) / sqrt(var + eps) * gamma + beta over n columns. */
    mti_status (*layernorm_async)(mti_backend_stream *s, const float *x, const float *gamma,
                                  const float *beta, float *y, int rows, int n, float eps,
                                  unsigned flags);
    /* y[r,:] = softmax(x[r,:]) over n columns. */
    mti_status (*softmax_async)(mti_backend_stream *s, const float *x, float *y, int rows, int n,
                                unsigned flags);
    /* y[i] = act(x[i]) for count elements. */
    mti_status (*act_async)(mti_backend_stream *s, const float *x, float *y, size_t count,
                            mti_activation act, unsigned flags);
    /* y[i] = a[i] + b[i] for count elements (y may be a or b). */
    mti_status (*add_async)(mti_backend_stream *s, const float *a, const float *b, float *y,
                            size_t count, unsigned flags);
    /* Multi-head scaled-dot-product self-attention on a packed projection: qkv is
     * [batch, seq, 3*heads*head_dim] (q | k | v, PyTorch's in_proj order), out is
     * [batch, seq, heads*head_dim] (heads concatenated). scratch holds seq*seq floats (the CPU
     * uses it; other backends may ignore it). */
    mti_status (*attention_async)(mti_backend_stream *s, const float *qkv, float *out,
                                  float *scratch, int batch, int seq, int heads, int head_dim,
                                  unsigned flags);
    /* y[m,n] = act(x[m,k] w16[n,k]^T + bias[n]) with bf16 GEMM inputs, fp32 accumulation and
     * fp32 x, bias and y (MTI_PRECISION_BF16 models). w16 is the weight as bf16 bit patterns
     * (rounded to nearest even); x is rounded to bf16 into x16 (m*k elements of device memory
     * the caller owns, such as plan workspace) on s before the GEMM. Epilogues as
     * linear_async. (optional: NULL means MTI_ERR_UNSUPPORTED; the CPU has none, and
     * src/model runs a bf16 model there in fp32 through linear_async) */
    mti_status (*linear_bf16_async)(mti_backend_stream *s, const float *x, uint16_t *x16,
                                    const uint16_t *w16, const float *bias, float *y, int m, int n,
                                    int k, mti_activation act, unsigned flags);
};

struct mti_backend_event_i {
    void (*destroy)(mti_backend_event *e);
    /* Captures all work submitted to s so far (re-recording moves the marker). */
    mti_status (*record)(mti_backend_event *e, mti_backend_stream *s, unsigned flags);
    mti_status (*query)(mti_backend_event *e);
    mti_status (*synchronize)(mti_backend_event *e, mti_sync_mode mode);
    /* (optional: NULL means MTI_ERR_UNSUPPORTED) */
    mti_status (*elapsed_ms)(mti_backend_event *start, mti_backend_event *end, float *ms);
};

struct mti_backend_device {
    const struct mti_backend_device_i *iface;
    int ordinal;
    char name[128];
};

struct mti_backend_stream {
    const struct mti_backend_stream_i *iface;
    mti_backend_device *device;
};

struct mti_backend_event {
    const struct mti_backend_event_i *iface;
    mti_backend_device *device;
};

/* A captured graph; backends embed it first in their own graph struct. */
struct mti_backend_graph {
    mti_backend_device *device;
    mti_backend_stream *captured_on;
};

/* Backend entry points, one per backend. count_devices never fails: 0 means unusable (and
 * *why says why, for the one-line notice). */
int mti__cpu_count_devices(const char **why);
mti_status mti__cpu_device_open(int ordinal, mti_sync_mode sync_mode, mti_backend_device **out);
#ifdef MTI_WITH_CUDA
int mti__cuda_count_devices(const char **why);
mti_status mti__cuda_device_open(int ordinal, mti_sync_mode sync_mode, mti_backend_device **out);
#endif

#endif
