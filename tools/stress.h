/*
 * `mtinfer stress` internals shared by tools/stress.c (the CLI: options, the crash-isolating
 * parent, log and summary) and tools/stress-run.c (one configuration's run: runtime, models,
 * verified request threads, soak sampling). Nothing here is part of the library.
 */
#ifndef MTI_TOOLS_STRESS_H
#define MTI_TOOLS_STRESS_H

#include <stdatomic.h>
#include <stdint.h>

#include "mtinfer.h"

enum stress_scenario {
    SC_THREADS,    /* T threads, each its own inputs, every output checked */
    SC_CHURN,      /* hundreds of short-lived threads in waves */
    SC_EXHAUST,    /* more threads than slots: wait policy with a short bound, timeouts */
    SC_MIXED,      /* each thread cycles through batch sizes */
    SC_TWO_MODELS, /* two models at once, requests alternate */
    SC_HANDOFF,    /* producer -> consumer across streams, ordered by events */
    SC_FAULTS,     /* injected allocation/submit/stream errors (fault-injection builds) */
    SC_BATCHER,    /* T threads x requests through mti_batcher_infer, every output checked */
    SC_CANCEL,     /* batcher: handles, cancels, short request timeouts, then stop while busy */
    SC_UNSAFE,     /* negative control: one shared stream, record lock bypassed (test builds) */
    SC_COUNT
};

struct stress_config {
    enum stress_scenario scenario;
    int threads;
    char name[40]; /* "threads/31", "churn/200", ... */
};

struct stress_opts {
    const char *model_path;  /* the model under test */
    const char *model2_path; /* the second model (two-models); NULL: made by the run */
    const char *tmp_dir;     /* where a run may write files */
    int backend_set;
    mti_backend_kind backend;
    int requests;    /* per thread per round */
    double duration; /* seconds per configuration (soak); 0: --requests decides */
    double interval; /* soak sample period, seconds */
    double tol;      /* max_abs_rel and rel_l2 bound */
    uint64_t seed;
    int churn_wave;         /* churn: threads alive at once */
    int other_threads;      /* threads of mixed, two-models, handoff, faults */
    int seq;                /* sequence length for sequence models */
    const char *fault_spec; /* faults scenario plan (MTI_FAULT syntax) */
    int verbose;
};

/* Written live by the run (shared memory across fork), read by the parent afterwards. */
struct stress_result {
    _Atomic uint64_t requests;        /* verified requests (correct or not) */
    _Atomic uint64_t mismatches;      /* outputs that failed verification */
    _Atomic uint64_t errors;          /* unexpected error statuses */
    _Atomic uint64_t expected_errors; /* timeouts (exhaust, cancel), injected faults (faults),
                                         cancelled and stopped requests (cancel) */
    _Atomic int first_bad_claimed;
    char first_bad[320]; /* the first bad request, in words */
    char note[320];      /* setup failure, skip reason, or scenario facts */
    char device[96];
    int setup_failed, skipped;
    double wall_s, rps;
    int soak_samples;
    double rss_first_mib, rss_last_mib, dev_first_mib, dev_last_mib;
    double rss_growth_mib_h, dev_growth_mib_h;
};

/* Child exit codes (anything else, or a signal, is CRASH/ERROR in the parent). */
#define STRESS_EXIT_PASS  0
#define STRESS_EXIT_FAIL  10
#define STRESS_EXIT_SETUP 11
#define STRESS_EXIT_SKIP  12

/* Runs one configuration in the calling process; returns a STRESS_EXIT_* code. */
int stress_run_config(const struct stress_opts *o, const struct stress_config *c,
                      struct stress_result *r);

/* Writes an MLP .safetensors file (dims[0] -> ... -> dims[n-1], act between linears; act is
 * "relu" or "gelu") with deterministic weights from seed. 0 on success. */
int stress_write_mlp(const char *path, const int *dims, int n, const char *act, uint64_t seed);

const char *stress_scenario_name(enum stress_scenario s);

#endif
