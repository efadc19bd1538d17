/*
 * `mtinfer bench` internals shared by tools/bench*.c: options, the measurement loop, the
 * report (markdown on stdout and --md, JSON through cJSON for --json, SVG charts for --svg).
 */
#ifndef MTI_TOOLS_BENCH_H
#define MTI_TOOLS_BENCH_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "mtinfer.h"

#define BENCH_MAX_POINTS 16

enum bench_section {
    SEC_SINGLE = 1 << 0,   /* single-thread baseline: matmul ops, sync patterns */
    SEC_THREADS = 1 << 1,  /* thread scaling, persistent workers */
    SEC_PATTERNS = 1 << 2, /* thread per request vs pool vs persistent */
    SEC_SERIAL = 1 << 3,   /* serialization policies */
    SEC_BATCH = 1 << 4,    /* batch sizes */
    SEC_RAW = 1 << 5,      /* raw-driver / plain BLAS baseline */
    SEC_BATCHER = 1 << 6,  /* the dynamic batcher */
    SEC_STORY = 1 << 7,    /* the transformer story workload, thread scaling */
    SEC_ALL = (1 << 8) - 1,
};

struct bench_options {
    int sections;
    int threads[BENCH_MAX_POINTS], n_threads;
    int batches[BENCH_MAX_POINTS], n_batches;
    double duration_s; /* per measured window */
    int trials;        /* windows per point (median, min-max) */
    int quick;
    const char *model_path; /* a user model for the thread/batch sections (else the MLP) */
    const char *json_path, *md_path, *svg_dir;
    const char *peer;           /* python3 command for bench/peers/torch_peer.py, or "none" */
    const char *raw_path;       /* bench/raw/raw_mlp binary (GPU) */
    const char *replot;         /* --replot: charts from an earlier --json file, no measurement */
    const char *batcher_params; /* --batcher-params k=v,...: overrides of the batcher defaults */
    int batcher_clients[BENCH_MAX_POINTS], n_batcher_clients; /* 0: the section's default */
    int progress;                                             /* stderr is a terminal */
};

/* One measured point: median and spread over trials. */
struct bench_stat {
    double median, min, max;
};

/* ---- report (bench-report.c) ------------------------------------------------------------ */

void bench_report_open(const char *md_path);
void bench_report_close(void);
/* printf to stdout and to the --md file. */
void bench_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_progress(const struct bench_options *o, const char *section, const char *step,
                    double seconds_left);
void bench_progress_done(const struct bench_options *o);
struct bench_stat bench_summarize(double *values, int n);
cJSON *bench_stat_json(struct bench_stat s);
/* A line chart: series of (x, y) points, log-scale x; written to dir/name.svg. */
struct svg_series {
    const char *label;
    const double *x, *y;
    int n;
};
int bench_svg_chart(const char *dir, const char *name, const char *title, const char *xlabel,
                    const char *ylabel, const struct svg_series *series, int n_series);

/* ---- measurement (bench-run.c) ---------------------------------------------------------- */

/* What one request does; ctx is shared, worker is per-thread state from setup. */
struct bench_workload {
    const char *name;
    mti_runtime_t rt; /* request buffers come from mti_host_alloc (pinned on the GPU), as the
                         peer's come from pin_memory(): the same request on both sides */
    mti_model_t model;
    int batch, seq;
    int in_count, out_count; /* floats per request */
};

/* Persistent workers: `threads` threads run requests of w in a closed loop for duration_s.
 * Returns wall-clock requests/s; latencies (optional, thread 0's, seconds) are sorted into
 * p50/p99. failed is set when any request failed (the message goes to stderr). */
struct bench_window {
    double requests_per_s;
    double p50_ms, p99_ms;
    long requests;
    int failed;
};
struct bench_window bench_run_persistent(const struct bench_workload *w, int threads,
                                         double duration_s, int want_latency);
/* Trials of bench_run_persistent: median and spread of requests/s. */
struct bench_stat bench_measure(const struct bench_options *o, const struct bench_workload *w,
                                int threads, const char *section, int *failed);

double bench_now_s(void);
void bench_fill_random(float *v, size_t n, uint64_t seed);

/* ---- sections (bench-sections.c) -------------------------------------------------------- */

struct bench_ctx {
    const struct bench_options *o;
    mti_runtime_t rt;
    const char *mlp_path, *story_path, *model_path; /* model files used */
    mti_model_t mlp, story, model;                  /* model = the user's, or the MLP */
    cJSON *json;                                    /* sections go here */
    cJSON *peer;                                    /* the peer's results (or NULL) */
    int failed;
};

void bench_section_single(struct bench_ctx *c);
void bench_section_threads(struct bench_ctx *c, const char *key, mti_model_t model,
                           const char *title, int batch, int seq);
void bench_section_patterns(struct bench_ctx *c);
void bench_section_serialization(struct bench_ctx *c);
void bench_section_batch(struct bench_ctx *c);
void bench_section_raw(struct bench_ctx *c);
void bench_section_batcher(struct bench_ctx *c);
void bench_write_charts(struct bench_ctx *c, const char *device);

/* ---- the peer (bench-peer.c) ------------------------------------------------------------ */

/* Runs bench/peers/torch_peer.py for the given models; NULL (and a reason on stderr and in
 * the report) when the peer is absent or fails. */
cJSON *bench_run_peer(const struct bench_options *o, mti_backend_kind backend, const char *mlp_path,
                      const char *story_path);

#endif
