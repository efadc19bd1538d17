/*
 * The bench's measurement loop: persistent worker threads issue requests (host input ->
 * mti_model_infer -> host output, the result ready on return) in a closed loop; a window is
 * opened after every worker finished its warm-up (never time a first call) and closed after
 * duration_s; throughput is wall-clock requests over the window.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/bench.h"

#define WARMUP_REQUESTS 3
#define MAX_LATENCIES   1000000

double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void bench_fill_random(float *v, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (seed += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        v[i] = (float)((z >> 40) * (1.0 / (1ull << 24)) * 2.0 - 1.0);
    }
}

struct worker {
    pthread_t tid;
    const struct bench_workload *w;
    int id;
    pthread_barrier_t *ready;
    _Atomic int *stop;
    double *latencies; /* thread 0 only, when asked */
    long requests;
    double end_s;
    int failed;
};

static void *worker_main(void *arg)
{
    struct worker *k = arg;
    const struct bench_workload *w = k->w;
    float *in = NULL, *out = NULL;
    int ok = mti_host_alloc(w->rt, sizeof(float) * (size_t)w->in_count, (void **)&in) == MTI_OK &&
             mti_host_alloc(w->rt, sizeof(float) * (size_t)w->out_count, (void **)&out) == MTI_OK;
    if (ok) bench_fill_random(in, (size_t)w->in_count, 1000 + (uint64_t)k->id);
    for (int i = 0; ok && i < WARMUP_REQUESTS; i++)
        ok = mti_model_infer(w->model, w->batch, w->seq, in, (size_t)w->in_count, out,
                             (size_t)w->out_count) == MTI_OK;
    if (!ok)
        fprintf(stderr, "mtinfer bench: warm-up request failed: %s\n", mti_last_error_message());
    k->failed = !ok;
    pthread_barrier_wait(k->ready);
    long n = 0;
    while (ok && !atomic_load_explicit(k->stop, memory_order_relaxed)) {
        double t0 = k->latencies ? bench_now_s() : 0;
        if (mti_model_infer(w->model, w->batch, w->seq, in, (size_t)w->in_count, out,
                            (size_t)w->out_count) != MTI_OK) {
            fprintf(stderr, "mtinfer bench: request failed: %s\n", mti_last_error_message());
            k->failed = 1;
            break;
        }
        if (k->latencies && n < MAX_LATENCIES) k->latencies[n] = bench_now_s() - t0;
        n++;
    }
    k->end_s = bench_now_s();
    k->requests = n;
    mti_host_free(w->rt, in);
    mti_host_free(w->rt, out);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct bench_window bench_run_persistent(const struct bench_workload *w, int threads,
                                         double duration_s, int want_latency)
{
    struct worker *k = calloc((size_t)threads, sizeof *k);
    pthread_barrier_t ready;
    _Atomic int stop = 0;
    pthread_barrier_init(&ready, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        k[i] = (struct worker){.w = w, .id = i, .ready = &ready, .stop = &stop};
        if (i == 0 && want_latency) k[i].latencies = malloc(sizeof(double) * MAX_LATENCIES);
        pthread_create(&k[i].tid, NULL, worker_main, &k[i]);
    }
    pthread_barrier_wait(&ready);
    double t0 = bench_now_s();
    struct timespec d = {(time_t)duration_s, (long)((duration_s - (time_t)duration_s) * 1e9)};
    nanosleep(&d, NULL);
    atomic_store(&stop, 1);
    struct bench_window r = {0};
    double end = t0;
    for (int i = 0; i < threads; i++) {
        pthread_join(k[i].tid, NULL);
        r.requests += k[i].requests;
        end = fmax(end, k[i].end_s);
        r.failed |= k[i].failed;
    }
    r.requests_per_s = r.requests / (end - t0);
    if (want_latency && k[0].requests > 0) {
        long n = k[0].requests < MAX_LATENCIES ? k[0].requests : MAX_LATENCIES;
        qsort(k[0].latencies, (size_t)n, sizeof(double), cmp_double);
        r.p50_ms = k[0].latencies[n / 2] * 1e3;
        r.p99_ms = k[0].latencies[(long)(n * 0.99)] * 1e3;
    }
    free(k[0].latencies);
    pthread_barrier_destroy(&ready);
    free(k);
    return r;
}

struct bench_stat bench_measure(const struct bench_options *o, const struct bench_workload *w,
                                int threads, const char *section, int *failed)
{
    double rates[64];
    int trials = o->trials < 64 ? o->trials : 64;
    for (int t = 0; t < trials; t++) {
        char step[128];
        snprintf(step, sizeof step, "%s, %d thread(s), trial %d/%d", w->name, threads, t + 1,
                 trials);
        bench_progress(o, section, step, (trials - t) * o->duration_s);
        struct bench_window win = bench_run_persistent(w, threads, o->duration_s, 0);
        rates[t] = win.requests_per_s;
        *failed |= win.failed;
    }
    bench_progress_done(o);
    return bench_summarize(rates, trials);
}
