/*
 * The batcher section of `mtinfer bench` (issue 7): single-sample requests from N client
 * threads in a closed loop, three ways in the same run (direct per-thread mti_model_infer,
 * through the batcher, the pre-batched ideal at the batcher's observed mean batch size), then
 * an open loop (Poisson arrivals at fixed offered rates) with latency percentiles. Prints
 * markdown tables to stdout and fills the results struct for the JSON report.
 */
#ifndef MTI_TOOLS_BENCH_BATCHER_H
#define MTI_TOOLS_BENCH_BATCHER_H

#include "mtinfer.h"

#define MTI_BENCH_BATCHER_MAX_POINTS 16

typedef struct mti_bench_batcher_config {
    double seconds;     /* each measured window (default 1.0) */
    const int *clients; /* closed-loop client counts (default 1, 4, 16, 64, 256) */
    int n_clients;
    const double *open_rates; /* offered requests/s; NULL: 10,25,50,75,90% of the best
                                 closed-loop batched throughput */
    int n_open_rates;
    int open_threads;                 /* threads generating arrivals (default 4) */
    const mti_batcher_params *params; /* NULL: mti_batcher_params_default */
    int skip_direct;                  /* 1: no direct-call runs (e.g. too slow on the CPU) */
} mti_bench_batcher_config;

typedef struct mti_bench_batcher_closed {
    int clients;
    double direct_rps;  /* requests/s, every thread calling mti_model_infer (batch 1) */
    double batched_rps; /* requests/s through mti_batcher_infer */
    double ideal_sps;   /* samples/s, one thread calling mti_model_infer at ideal_batch */
    int ideal_batch;    /* round(mean_batch) */
    double mean_batch;  /* batcher: rows / batches in the window */
    double of_ideal;    /* batched_rps / ideal_sps */
    double batched_p50_us, batched_p99_us; /* per-request latency seen by the clients */
    double direct_p50_us, direct_p99_us;
    double queue_p99_us, compute_p99_us; /* batcher stats */
    unsigned long long batches, idle_launches, full_launches, delay_launches;
} mti_bench_batcher_closed;

typedef struct mti_bench_batcher_open {
    double offered_rps;
    double achieved_rps;                    /* answered OK per second */
    double p50_us, p90_us, p99_us, p999_us; /* from the scheduled arrival time */
    double mean_batch;
    unsigned long long sent, dropped; /* dropped: arrivals with no free request context */
} mti_bench_batcher_open;

typedef struct mti_bench_batcher_results {
    int n_closed;
    mti_bench_batcher_closed closed[MTI_BENCH_BATCHER_MAX_POINTS];
    int n_open;
    mti_bench_batcher_open open[MTI_BENCH_BATCHER_MAX_POINTS];
} mti_bench_batcher_results;

void mti_bench_batcher_config_default(mti_bench_batcher_config *cfg);

/* Runs the section on model (fp32, [batch, features] input) of rt. cfg NULL: defaults; out
 * may be NULL. The direct runs need the runtime's pool to have a slot per client thread
 * (threads beyond the pool wait for a slot, as the library's policy says; the table notes
 * it). Returns 0, or 2 on a failed call (message on stderr). */
int mti_bench_batcher_section(mti_runtime_t rt, mti_model_t model,
                              const mti_bench_batcher_config *cfg, mti_bench_batcher_results *out);

#endif
