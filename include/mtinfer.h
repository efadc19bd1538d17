/*
 * mtinfer: safe, fast multi-threaded neural-network inference on one GPU (CUDA) or the CPU.
 *
 * Conventions (they hold for every declaration below unless it says otherwise):
 * - Every fallible call returns mti_status (MTI_OK == 0). On failure the call leaves its out
 *   parameters NULL/zero, leaks nothing, and sets a per-thread message with detail, read with
 *   mti_last_error_message(). The library never calls abort() or exit().
 * - Handles are opaque. mti_x_destroy(NULL) is a no-op.
 * - "Thread-safe" means the call may be made from any number of threads at once on the same
 *   handle. Calls on a stream are ordered: work submitted to one stream runs in submission order.
 * - "Device pointer": memory the runtime's backend computes on (host memory on the CPU backend,
 *   GPU memory on CUDA), obtained from mti_buffer_ptr().
 */
#ifndef MTINFER_H
#define MTINFER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MTI_VERSION_MAJOR 0
#define MTI_VERSION_MINOR 1
#define MTI_VERSION_PATCH 0

/* ---------------------------------------------------------------------------------------------
 * Status and errors
 * ------------------------------------------------------------------------------------------- */

typedef enum mti_status {
    MTI_OK = 0,
    MTI_ERR_INVALID_ARGUMENT = 1, /* a parameter, env value or shape is wrong */
    MTI_ERR_OUT_OF_MEMORY = 2,    /* host or device memory, after releasing cached blocks */
    MTI_ERR_POOL_EXHAUSTED = 3,   /* no free stream slot and the policy is "fail" */
    MTI_ERR_TIMEOUT = 4,          /* a bounded wait ran out */
    MTI_ERR_DEVICE = 5,           /* the device (or a kernel) reported an error */
    MTI_ERR_UNSUPPORTED = 6,      /* not available in this build or on this device */
    MTI_ERR_NOT_FOUND = 7,        /* a file, tensor or device that does not exist */
    MTI_ERR_CORRUPT_INPUT = 8,    /* a malformed file or message */
    MTI_ERR_CANCELLED = 9,        /* the request was cancelled */
    MTI_ERR_QUEUE_FULL = 10,      /* a bounded queue is full and the policy is "reject" */
    MTI_ERR_NOT_READY = 11,       /* (queries) the work has not finished yet; not a failure */
    MTI_ERR_FORKED = 12,          /* the handle was created in the parent of a fork() */
    MTI_ERR_BUSY = 13,            /* the object is in use (e.g. destroying a held stream) */
    MTI_ERR_IO = 14,              /* a read or write failed */
    MTI_ERR_STOPPED = 15,         /* the object was stopped while the call waited */
    MTI_ERR_INTERNAL = 16,        /* a broken invariant inside mtinfer: please report it */
} mti_status;

/* Short constant description of a status ("pool exhausted"). Never NULL. Thread-safe. */
const char *mti_status_string(mti_status status);

/* The calling thread's message for the last failed mtinfer call on this thread, with detail
 * ("MTI_POOL_SIZE: '0' is out of range 1..64"). "" when none. The pointer stays valid until the
 * thread's next mtinfer call. Thread-safe (the message is per thread). */
const char *mti_last_error_message(void);

/* ---------------------------------------------------------------------------------------------
 * Runtime
 * ------------------------------------------------------------------------------------------- */

typedef struct mti_runtime *mti_runtime_t;
typedef struct mti_stream *mti_stream_t;
typedef struct mti_event *mti_event_t;
typedef struct mti_buffer *mti_buffer_t;

typedef enum mti_backend_kind {
    MTI_BACKEND_AUTO = 0, /* the GPU when one is usable, else the CPU (one notice on stderr) */
    MTI_BACKEND_CPU = 1,
    MTI_BACKEND_CUDA = 2,
} mti_backend_kind;

/* What a thread that asks for a stream gets when every slot is taken. */
typedef enum mti_pool_exhaustion {
    MTI_POOL_FAIL = 0,  /* return MTI_ERR_POOL_EXHAUSTED at once */
    MTI_POOL_WAIT = 1,  /* wait up to pool_wait_ms, then MTI_ERR_TIMEOUT */
    MTI_POOL_BLOCK = 2, /* wait until a slot is released */
} mti_pool_exhaustion;

/* How threads are given streams. */
typedef enum mti_stream_assign {
    MTI_ASSIGN_EXCLUSIVE = 0,  /* each thread owns one slot exclusively (default) */
    MTI_ASSIGN_ROUND_ROBIN = 1 /* threads share the pool's streams in turn (the seeds' design) */
} mti_stream_assign;

/* How a thread waits for device work. */
typedef enum mti_sync_mode {
    MTI_SYNC_AUTO = 0,  /* spin briefly, then sleep */
    MTI_SYNC_SPIN = 1,  /* spin (lowest latency, burns a core per waiter) */
    MTI_SYNC_YIELD = 2, /* spin with sched_yield */
    MTI_SYNC_BLOCK = 3, /* sleep at once */
} mti_sync_mode;

/* Who may record (encode) work into streams at the same time. */
typedef enum mti_serialization {
    MTI_SERIAL_PER_STREAM = 0, /* one recorder per stream, no global lock (default) */
    MTI_SERIAL_GLOBAL = 1,     /* one global encode mutex for the whole runtime */
    MTI_SERIAL_SEMAPHORE = 2,  /* at most serial_limit recorders at once */
} mti_serialization;

typedef struct mti_runtime_params {
    mti_backend_kind backend;        /* MTI_BACKEND: auto|cpu|cuda */
    int device;                      /* MTI_DEVICE: GPU ordinal, or -1 for all GPUs */
    int pool_size;                   /* MTI_POOL_SIZE: stream slots per device, 1..64 */
    mti_pool_exhaustion exhaustion;  /* MTI_POOL_EXHAUSTION: fail|wait|block */
    int pool_wait_ms;                /* MTI_POOL_WAIT_MS: bound for MTI_POOL_WAIT */
    mti_stream_assign assign;        /* MTI_STREAM_ASSIGN: exclusive|round-robin */
    mti_sync_mode sync_mode;         /* MTI_SYNC_MODE: auto|spin|yield|block */
    mti_serialization serialization; /* MTI_SERIALIZATION: per-stream|global|semaphore[:N] */
    int serial_limit;                /* N for MTI_SERIAL_SEMAPHORE (default 2) */
    size_t memory_limit; /* MTI_MEMORY_LIMIT: device bytes the allocator may hold; 0 = no
                            limit (K/M/G suffixes in the env value) */
    int alloc_poison;    /* MTI_ALLOC_POISON: 0|1, fill freed blocks with 0xA5 bytes */
} mti_runtime_params;

/* Fills *params with the defaults (auto backend, 32 slots, block when exhausted, exclusive
 * slots, auto sync, per-stream serialization, no memory limit, no poisoning). Never fails. */
void mti_runtime_params_default(mti_runtime_params *params);

/* Overrides *params with the MTI_* environment variables that are set. An unknown or malformed
 * value is MTI_ERR_INVALID_ARGUMENT naming the variable and the accepted values; *params is then
 * left unchanged. Thread-safe as long as nobody calls setenv() at the same time. */
mti_status mti_runtime_params_from_env(mti_runtime_params *params);

/* Creates a runtime. params == NULL means defaults overridden by the environment. With backend
 * auto and no usable GPU, the CPU is used and one line says so on stderr. Blocking. */
mti_status mti_runtime_create(const mti_runtime_params *params, mti_runtime_t *out);

/* Waits for all queued work, destroys every stream, event and cached buffer. No other thread
 * may be inside a call on rt. Threads that still cache a slot of rt are fine: their cache is
 * discarded when they next touch mtinfer or exit. In a child of fork() this only frees host
 * memory the child owns; it never joins the parent's threads. */
void mti_runtime_destroy(mti_runtime_t rt);

/* The backend actually in use (never MTI_BACKEND_AUTO) and a human-readable device name. */
mti_backend_kind mti_runtime_backend(mti_runtime_t rt);
const char *mti_runtime_device_name(mti_runtime_t rt);
const char *mti_backend_name(mti_backend_kind kind);

typedef struct mti_pool_stats {
    int size;            /* slots per device */
    int in_use;          /* slots held now (exclusive mode) */
    int peak_in_use;     /* most slots held at once since creation */
    int streams_created; /* streams created lazily so far */
    uint64_t acquires;   /* successful acquisitions */
    uint64_t waits;      /* acquisitions that had to wait */
    uint64_t timeouts;   /* waits that ended in MTI_ERR_TIMEOUT */
    uint64_t exhausted;  /* MTI_ERR_POOL_EXHAUSTED returned */
} mti_pool_stats;

/* Snapshot of the pool counters (summed over devices). Thread-safe, lock-free. */
mti_status mti_runtime_pool_stats(mti_runtime_t rt, mti_pool_stats *out);

typedef struct mti_alloc_stats {
    size_t allocated;      /* bytes in blocks handed to callers now */
    size_t cached;         /* bytes in free blocks kept for reuse (including deferred ones) */
    size_t peak_allocated; /* most bytes handed out at once */
    size_t deferred;       /* bytes waiting for another stream's use to end */
    uint64_t hits;         /* allocations served from a cache */
    uint64_t misses;       /* allocations that reached the backend */
    uint64_t oom_retries;  /* backend failures answered by releasing the cache and retrying */
} mti_alloc_stats;

/* Snapshot of the caching allocator's counters. Thread-safe. */
mti_status mti_runtime_alloc_stats(mti_runtime_t rt, mti_alloc_stats *out);

/* Frees every cached block that no pending work can still use. Thread-safe; blocking. */
mti_status mti_runtime_release_cached(mti_runtime_t rt);

/* ---------------------------------------------------------------------------------------------
 * Streams: ordered asynchronous queues of device work, handed out by the runtime's pool.
 * ------------------------------------------------------------------------------------------- */

/* The calling thread's stream: the slot it already holds, or a new one from the pool (then
 * cached in thread-local storage and returned automatically when the thread exits, after its
 * queued work has drained). The exhaustion policy applies. Thread-safe; may block (policy). */
mti_status mti_stream_get_current(mti_runtime_t rt, mti_stream_t *out);

/* Takes a slot explicitly, for callers that manage slots themselves. The caller owns the
 * stream until mti_stream_release. In round-robin mode the stream may be shared. */
mti_status mti_stream_acquire(mti_runtime_t rt, mti_stream_t *out);

/* Waits for the stream's queued work, then returns the slot to the pool. Also releases the
 * thread-local slot of mti_stream_get_current early. Returns the stream's pending error, if
 * any (the slot is returned either way); MTI_ERR_INVALID_ARGUMENT for a slot that is not held
 * (released twice). The handle names the slot: do not use it after releasing it. The pool is
 * not FIFO: under contention a woken waiter may lose a slot to a newcomer. */
mti_status mti_stream_release(mti_stream_t stream);

/* Blocks until all work submitted so far has finished. Returns (and clears) the first error
 * any of that work reported. Thread-safe. */
mti_status mti_stream_synchronize(mti_stream_t stream);

/* MTI_OK when all submitted work has finished, MTI_ERR_NOT_READY when not (and makes sure the
 * work is progressing). Never blocks. */
mti_status mti_stream_query(mti_stream_t stream);

/* Slot index inside its device's pool and device ordinal (for logs and tests). */
int mti_stream_slot(mti_stream_t stream);
int mti_stream_device(mti_stream_t stream);

/* A host function run in stream order; its return value becomes the stream's error. It must
 * not call mtinfer functions that wait on streams. Returns before fn runs. */
typedef mti_status (*mti_host_fn)(void *user);
mti_status mti_stream_launch_host(mti_stream_t stream, mti_host_fn fn, void *user);

/* ---------------------------------------------------------------------------------------------
 * Events: markers in a stream, for cross-stream ordering and timing.
 * ------------------------------------------------------------------------------------------- */

/* Creates an event on the runtime's first device (the stream of the first record decides
 * later). timing != 0 enables mti_event_elapsed_ms. Thread-safe. */
mti_status mti_event_create(mti_runtime_t rt, int timing, mti_event_t *out);
void mti_event_destroy(mti_event_t event);

/* Captures all work submitted to stream so far. Re-recording moves the marker. */
mti_status mti_event_record(mti_event_t event, mti_stream_t stream);

/* Work submitted to stream after this call waits until the event's captured work is done.
 * The event's state is captured now (a later re-record does not affect this wait). */
mti_status mti_stream_wait_event(mti_stream_t stream, mti_event_t event);

/* MTI_OK when complete (or never recorded), MTI_ERR_NOT_READY when not. Never blocks. */
mti_status mti_event_query(mti_event_t event);

/* Blocks until the event's captured work has finished (sync mode applies). */
mti_status mti_event_synchronize(mti_event_t event);

/* Milliseconds between two completed timing events. */
mti_status mti_event_elapsed_ms(mti_event_t start, mti_event_t end, float *ms);

/* ---------------------------------------------------------------------------------------------
 * Buffers: device memory from the stream-aware caching allocator.
 * ------------------------------------------------------------------------------------------- */

/* Allocates bytes of device memory for use on stream. The block comes from that stream's free
 * list when one fits (no global lock), else from the device (releasing cached blocks and
 * retrying once before MTI_ERR_OUT_OF_MEMORY). Thread-safe. */
mti_status mti_buffer_alloc(mti_stream_t stream, size_t bytes, mti_buffer_t *out);

/* Returns the block to the cache. Work already submitted that uses it stays valid: the block
 * is reused on its own stream in stream order, and on other streams only after every stream
 * named by mti_buffer_record_stream has finished the work submitted before this call. */
void mti_buffer_free(mti_buffer_t buffer);

/* Declares that work on stream (not the block's own stream) uses the block. */
mti_status mti_buffer_record_stream(mti_buffer_t buffer, mti_stream_t stream);

void *mti_buffer_ptr(mti_buffer_t buffer);
size_t mti_buffer_size(mti_buffer_t buffer);

typedef enum mti_copy_kind {
    MTI_COPY_HOST_TO_DEVICE = 0,
    MTI_COPY_DEVICE_TO_HOST = 1,
    MTI_COPY_DEVICE_TO_DEVICE = 2,
} mti_copy_kind;

/* Copies bytes in stream order. Host memory must stay valid until the copy ran (synchronize
 * the stream or an event recorded after it). Returns before the copy runs. */
mti_status mti_memcpy_async(mti_stream_t stream, void *dst, const void *src, size_t bytes,
                            mti_copy_kind kind);
mti_status mti_memset_async(mti_stream_t stream, void *dst, int value, size_t bytes);

/* Host memory that the device copies from and to fastest (page-locked on CUDA, so copies are
 * truly asynchronous); plain aligned memory on the CPU backend. Free with mti_host_free on the
 * same runtime. Thread-safe; slow (allocate once, not per request). */
mti_status mti_host_alloc(mti_runtime_t rt, size_t bytes, void **out);
void mti_host_free(mti_runtime_t rt, void *ptr);

/* ---------------------------------------------------------------------------------------------
 * Graphs: capture the work one thread submits to a stream once, replay it with one launch
 * (CUDA graphs on the GPU; a recorded op list on the CPU).
 * ------------------------------------------------------------------------------------------- */

typedef struct mti_graph *mti_graph_t;

/* Starts capturing: the calling thread's later submits to stream are recorded, not run, until
 * mti_stream_end_capture. Allocate buffers before; do not synchronize, query or record events
 * on the stream meanwhile (MTI_ERR_BUSY). Needs exclusive stream assignment (a shared
 * round-robin stream would capture other threads' work): MTI_ERR_UNSUPPORTED otherwise. */
mti_status mti_stream_begin_capture(mti_stream_t stream);

/* Ends the capture and returns the graph (NULL on failure; the stream is usable either way). */
mti_status mti_stream_end_capture(mti_stream_t stream, mti_graph_t *out);

/* Replays the graph on stream, in stream order. On CUDA a graph that holds host functions
 * runs only on the stream it was captured on. Returns before the work runs. */
mti_status mti_graph_launch(mti_graph_t graph, mti_stream_t stream);

/* Frees the graph; launches already submitted still complete. */
void mti_graph_destroy(mti_graph_t graph);

/* ---------------------------------------------------------------------------------------------
 * Math on streams (device pointers, fp32, row-major, PyTorch's nn.Linear convention)
 * ------------------------------------------------------------------------------------------- */

typedef enum mti_activation {
    MTI_ACT_NONE = 0,
    MTI_ACT_RELU = 1,
    MTI_ACT_GELU = 2,      /* exact (erf) */
    MTI_ACT_GELU_TANH = 3, /* tanh approximation */
} mti_activation;

/* y[m,n] = act(x[m,k] * w[n,k]^T + bias[n]) in stream order; bias may be NULL. */
mti_status mti_linear_async(mti_stream_t stream, const float *x, const float *w, const float *bias,
                            float *y, int m, int n, int k, mti_activation act);

/* ---------------------------------------------------------------------------------------------
 * Models: a .safetensors file (weights with PyTorch's names) plus the architecture as JSON,
 * either in the file's __metadata__ under "mtinfer.config" or in a separate file.
 *
 * Config JSON (one object):
 *   {"input": {"features": 512}}           inputs [batch, features]
 *   {"input": {"d_model": 256}}            inputs [batch, seq, d_model]
 *   "layers": [ ... ] in order; each {"type": T, "name": "<prefix of its tensors>"} (name
 *   defaults to the layer's index, as nn.Sequential names children). Types and their tensors:
 *     linear      in, out, bias (default true)     <name>.weight [out,in], <name>.bias [out]
 *     relu, softmax (last dim), gelu ("approximate": "none"|"tanh")       no tensors
 *     layernorm   dim, eps (1e-5)                  <name>.weight, <name>.bias [dim]
 *     mha         d_model, heads (self-attention, nn.MultiheadAttention, batch_first)
 *                 <name>.in_proj_weight [3d,d], .in_proj_bias [3d], .out_proj.weight [d,d],
 *                 .out_proj.bias [d]
 *     transformer_encoder_layer  d_model, heads, ff, norm_first (false), activation
 *                 ("relu"|"gelu"), eps (1e-5): nn.TransformerEncoderLayer's tensors
 *                 <name>.self_attn.*, .linear1.*, .linear2.*, .norm1.*, .norm2.*
 *     residual    "layers": [...]  y = x + f(x), children named <name>.<index>
 * Dropout is a no-op at inference and has no layer type.
 * ------------------------------------------------------------------------------------------- */

typedef struct mti_model *mti_model_t;

typedef enum mti_precision {
    MTI_PRECISION_FP32 = 0, /* default everywhere */
    /* Linear layers (GEMMs) may use TF32 tensor cores on CUDA: fp32 data and accumulation,
     * inputs rounded to a 10-bit mantissa (error vs fp32 near 3e-4; check with a tolerance
     * near 2e-3). Other ops stay fp32. On the CPU backend, which has no TF32, the model loads
     * and computes in fp32. MTI_CUDA_TF32=1 turns TF32 on for every fp32 model too. */
    MTI_PRECISION_TF32 = 1,
    /* Linear layers (GEMMs) read bf16 on CUDA: each linear weight is rounded once at load to a
     * bf16 copy kept on the device (beside the fp32 blob, which the other ops use), and each
     * GEMM's input is rounded to bf16 on the fly; accumulation, bias, activation epilogues and
     * outputs stay fp32, as do layernorm, attention, softmax and residuals (error vs float64
     * near 1e-3 to 3e-3; check with a tolerance of 1e-2). On the CPU backend, which has no
     * bf16 GEMM, the model loads and computes in fp32 (as TF32 does there). */
    MTI_PRECISION_BF16 = 2,
} mti_precision;

typedef struct mti_model_params {
    const char *config_path; /* a separate JSON config; NULL: the file's "mtinfer.config" */
    mti_precision precision;
    int use_graphs; /* CUDA, exclusive streams: capture each plan's forward as a graph after
                       one warm-up run (default 1) */
} mti_model_params;

void mti_model_params_default(mti_model_params *params);

/* Maps the file read-only, validates it against the config (every tensor present with dtype
 * F32 and the expected shape, no extra tensor, offsets inside the data and disjoint, dims that
 * chain) and uploads the weights once to every device of rt. Errors: MTI_ERR_NOT_FOUND (no
 * file, no config), MTI_ERR_CORRUPT_INPUT (malformed file or config, message names the
 * problem), MTI_ERR_IO, MTI_ERR_INVALID_ARGUMENT (precision not a mti_precision). Blocking;
 * thread-safe. The model
 * must be destroyed before rt. */
mti_status mti_model_load(mti_runtime_t rt, const char *path, const mti_model_params *params,
                          mti_model_t *out);

/* Frees the model, its plans and its device weights. No call on the model may be running and
 * async work using it must have finished. NULL is a no-op. */
void mti_model_destroy(mti_model_t model);

typedef struct mti_model_info {
    int sequence;        /* 1: inputs [batch, seq, d_model]; 0: [batch, features] */
    int input_features;  /* features, or d_model */
    int output_features; /* per row (per token for sequence models) */
    int n_layers;        /* top-level layers */
    size_t n_params;     /* parameters (floats) */
    size_t weight_bytes; /* bytes of weights */
} mti_model_info;

mti_status mti_model_get_info(mti_model_t model, mti_model_info *out);

/* A human-readable multi-line description (layers, shapes, parameter counts). Owned by the
 * model; valid until mti_model_destroy. Thread-safe. */
const char *mti_model_summary(mti_model_t model);

/* One forward pass: input [batch, features] or [batch, seq, d_model] fp32 in host memory
 * (input_count floats), output to host memory (output_count floats: batch*out or
 * batch*seq*out). seq must be 0 for feature models. Runs on the calling thread's stream with
 * a plan cached per (stream, batch, seq): no allocation after the first call of a shape.
 * MTI_ERR_INVALID_ARGUMENT when a count does not match the shape. NaN/Inf inputs are computed
 * through. Thread-safe (any number of threads at once); blocking. */
mti_status mti_model_infer(mti_model_t model, int batch, int seq, const float *input,
                           size_t input_count, float *output, size_t output_count);

/* The same forward enqueued on stream, from and to device pointers (device memory on CUDA,
 * e.g. mti_buffer_ptr). Returns before the work runs; synchronize the stream before reading
 * output. The plan of (stream, batch, seq) is reused: its workspace is stream-ordered.
 * Thread-safe. */
mti_status mti_model_infer_async(mti_model_t model, mti_stream_t stream, int batch, int seq,
                                 const float *input, float *output);

/* The float64 CPU reference forward (independent of the backends' fast paths) from the file's
 * weights: output gets output_count doubles. Thread-safe; blocking; slow. */
mti_status mti_model_reference(mti_model_t model, int batch, int seq, const float *input,
                               size_t input_count, double *output, size_t output_count);

/* Error of out against ref: max_abs_rel = max|out-ref| / max|ref|, rel_l2 = ||out-ref|| /
 * ||ref||, nonfinite = outputs that are NaN/Inf where the reference is finite. */
typedef struct mti_error_stats {
    double max_abs_rel;
    double rel_l2;
    size_t nonfinite;
} mti_error_stats;

void mti_error_stats_compute(const float *out, const double *ref, size_t count,
                             mti_error_stats *stats);

#ifdef __cplusplus
}
#endif
#include "mtinfer/batcher.h"
#endif /* MTINFER_H */
