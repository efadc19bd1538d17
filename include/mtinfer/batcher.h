/*
 * mtinfer dynamic batcher: many threads each send one sample; the batcher runs them as one
 * forward per batch on a few executor streams and answers every request exactly once.
 *
 * Included by mtinfer.h (you need not include it yourself). Conventions of mtinfer.h hold.
 *
 * How a request travels (see src/batch/batcher.c for the protocol and its lock rules):
 * the calling thread claims a row of the batch being formed (a short critical section), copies
 * its own input into that row of pinned staging, and waits on the batch's completion signal
 * (spin briefly, then sleep; one wake-up per batch, not per request). A batch closes when it is
 * full, when no other batch is running or being read (light load: a lone request is launched
 * at once, so its latency stays close to a direct mti_model_infer), or when its oldest request
 * has waited max_queue_delay_us. The thread that closes a batch launches it (copy in, one
 * forward, copy out on the batch's executor stream), waits for it and publishes its status;
 * each member then copies its own output out. Requests that find every batch slot busy wait in
 * a bounded two-level priority queue and are moved into the next batch slot that frees.
 */
#ifndef MTINFER_BATCHER_H
#define MTINFER_BATCHER_H

#include "mtinfer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mti_batcher *mti_batcher_t;
typedef struct mti_batch_request *mti_batch_request_t;

/* What a request gets when the queue holds max_queue requests. */
typedef enum mti_batch_full_policy {
    MTI_BATCH_FULL_REJECT = 0, /* MTI_ERR_QUEUE_FULL at once (default) */
    MTI_BATCH_FULL_BLOCK = 1,  /* wait up to full_timeout_us for room, then MTI_ERR_QUEUE_FULL */
} mti_batch_full_policy;

typedef enum mti_batch_priority {
    MTI_BATCH_PRIORITY_NORMAL = 0,
    MTI_BATCH_PRIORITY_HIGH = 1, /* served first when requests wait for a batch slot */
} mti_batch_priority;

#define MTI_BATCHER_MAX_PREFERRED 16

typedef struct mti_batcher_params {
    /* Most requests in one batch. 0: 256 on CUDA, 64 on the CPU. */
    int max_batch;
    /* How long the oldest request of a forming batch may wait for company while another batch
     * runs, in microseconds (default 200). An idle batcher never waits: see above. */
    int max_queue_delay_us;
    /* Batch sizes the forward runs at: a batch of n requests runs at the smallest preferred
     * size >= n, the extra rows padded (their outputs are discarded); each size gets a plan
     * (and a CUDA graph) per executor stream, warmed at create. n_preferred 0: automatic, the
     * powers of two up to max_batch (plus max_batch) on CUDA, where padding a GEMM is almost
     * free, and every size (no padding) on the CPU, where it is not. n_preferred -1: every size. */
    int preferred[MTI_BATCHER_MAX_PREFERRED];
    int n_preferred;
    /* Executor streams taken from the runtime's pool for the batcher's lifetime = batches in
     * flight at once: while one computes the next forms and copies. 0: automatic (default): 4
     * on CUDA, 2 on the CPU. 1..16. */
    int executor_streams;
    /* Requests waiting for their batch to start (forming + queued); 0: unbounded (default). */
    int max_queue;
    mti_batch_full_policy full_policy;
    int full_timeout_us; /* MTI_BATCH_FULL_BLOCK bound (default 1000000) */
    /* Default per-request timeout in microseconds: a request whose batch has not started by
     * then is answered MTI_ERR_TIMEOUT (a started batch always completes). 0: none (default). */
    int64_t request_timeout_us;
    /* Microseconds a waiting client spins before sleeping; -1: automatic (20 on CUDA, 0 on
     * the CPU, where a spinning client steals the core that computes). Members of large
     * batches (more rows than a quarter of the CPUs) sleep at once whatever this says. */
    int spin_us;
    /* Run one warm-up forward per preferred size and executor stream at create (plans, CUDA
     * graphs): first requests then see steady latency. Default 1. */
    int warmup;
    /* CUDA, exclusive streams: capture each (stream, size) batch as a graph. Default 1. */
    int use_graphs;
    /* Sequence models: the one sequence length every request has (rows are seq*d_model
     * floats). Must be 0 for [batch, features] models. */
    int seq;
} mti_batcher_params;

/* Fills *params with the defaults above. */
void mti_batcher_params_default(mti_batcher_params *params);

/* Per-request options (NULL: normal priority, the batcher's default timeout). */
typedef struct mti_batch_opts {
    mti_batch_priority priority;
    /* 0: the batcher's request_timeout_us; > 0: this many microseconds; < 0: no timeout. */
    int64_t timeout_us;
} mti_batch_opts;

/* Creates a batcher over model (which must outlive it): takes executor_streams streams from
 * the model's runtime's pool (its exhaustion policy applies; exclusive assignment keeps
 * batches' errors apart), pinned staging, device buffers and a service thread (timers).
 * MTI_ERR_INVALID_ARGUMENT for bad params (message names the field). Thread-safe; blocking. */
mti_status mti_batcher_create(mti_model_t model, const mti_batcher_params *params,
                              mti_batcher_t *out);

/* Stops the batcher: later calls get MTI_ERR_STOPPED; requests already in a forming batch run
 * and get their answers; requests still waiting for a batch slot and callers blocked by the
 * full policy get MTI_ERR_STOPPED. Returns after every request has been answered, every
 * callback has returned and every thread has left the batcher's calls. Idempotent; thread-safe
 * (not from a callback). The batcher stays allocated: calls made after stop are safe. */
void mti_batcher_stop(mti_batcher_t b);

/* mti_batcher_stop, then frees the batcher and returns its streams to the pool. No call may
 * start after it begins (use mti_batcher_stop first when other threads may still call).
 * Request handles stay valid until released. NULL is a no-op. */
void mti_batcher_destroy(mti_batcher_t b);

/* One sample: input is one row (input_features floats, or seq*d_model), output gets one row
 * (output_features floats, or seq*out). Blocks until answered. Returns the request's own
 * status: MTI_OK, its batch's error (MTI_ERR_DEVICE, ...), MTI_ERR_TIMEOUT, MTI_ERR_QUEUE_FULL,
 * MTI_ERR_STOPPED. output is written only on MTI_OK. Thread-safe (any number of threads). */
mti_status mti_batcher_infer(mti_batcher_t b, const float *input, float *output,
                             const mti_batch_opts *opts);

/* Called once per submitted request, from a batcher or client thread, with its final status.
 * Must not block for long; may submit new requests; must not destroy the batcher. */
typedef void (*mti_batch_callback)(void *user, mti_status status);

/* Queues one sample without blocking (except under MTI_BATCH_FULL_BLOCK). input is copied
 * before return (it may be reused at once); output must stay valid until the request is
 * answered. callback may be NULL. With out != NULL the caller gets a handle (wait, cancel) and
 * must release it; with out == NULL the request is fire-and-forget. On a non-OK return nothing
 * was queued, the callback is not called, *out is NULL. Thread-safe. */
mti_status mti_batcher_submit(mti_batcher_t b, const float *input, float *output,
                              const mti_batch_opts *opts, mti_batch_callback callback, void *user,
                              mti_batch_request_t *out);

/* Waits up to timeout_us (< 0: forever) for the request's answer and returns it (the
 * request's status); MTI_ERR_NOT_READY when the wait ran out (the request is still pending).
 * When it returns an answer the callback, if any, has already returned. Thread-safe. */
mti_status mti_batch_request_wait(mti_batch_request_t req, int64_t timeout_us);

/* Cancels a request whose batch has not started: it is answered MTI_ERR_CANCELLED (callback
 * included) and MTI_OK is returned. MTI_ERR_BUSY when its batch already started (it completes
 * normally), MTI_ERR_NOT_READY never; MTI_OK is not returned for answered requests: those give
 * MTI_ERR_BUSY. Must not race with mti_batcher_destroy. Thread-safe. */
mti_status mti_batch_request_cancel(mti_batch_request_t req);

/* Drops the caller's handle (the request itself still completes). NULL is a no-op. */
void mti_batch_request_release(mti_batch_request_t req);

typedef struct mti_batch_percentiles {
    double p50, p90, p99, p999, max; /* microseconds (bucket resolution ~10%) */
} mti_batch_percentiles;

#define MTI_BATCHER_HIST_BINS 14

typedef struct mti_batcher_stats {
    uint64_t requests;        /* accepted (queued) */
    uint64_t completed;       /* answered MTI_OK */
    uint64_t failed;          /* answered with their batch's error */
    uint64_t rejected;        /* MTI_ERR_QUEUE_FULL */
    uint64_t timeouts;        /* MTI_ERR_TIMEOUT */
    uint64_t cancelled;       /* MTI_ERR_CANCELLED */
    uint64_t stopped;         /* MTI_ERR_STOPPED */
    uint64_t batches;         /* forwards launched */
    uint64_t batch_rows;      /* requests in launched batches */
    uint64_t padded_rows;     /* extra rows computed to reach a preferred size */
    uint64_t idle_launches;   /* batches closed at once because nothing else was running */
    uint64_t full_launches;   /* batches closed because they were full */
    uint64_t delay_launches;  /* batches closed by max_queue_delay_us */
    uint64_t queued_overflow; /* requests that had to wait for a batch slot */
    double mean_batch;        /* batch_rows / batches */
    /* batch_size_hist[0]: size 1; [i]: sizes in (2^(i-1), 2^i]; the last bin: everything above */
    uint64_t batch_size_hist[MTI_BATCHER_HIST_BINS];
    mti_batch_percentiles queue_us;   /* submit -> batch launch */
    mti_batch_percentiles compute_us; /* batch launch -> batch answered (copies + forward) */
} mti_batcher_stats;

/* Snapshot of the counters since create or the last reset. Thread-safe, lock-free. */
mti_status mti_batcher_get_stats(mti_batcher_t b, mti_batcher_stats *out);
/* Zeroes the counters (concurrent requests may land on either side). Thread-safe. */
void mti_batcher_reset_stats(mti_batcher_t b);

#ifdef __cplusplus
}
#endif
#endif /* MTINFER_BATCHER_H */
