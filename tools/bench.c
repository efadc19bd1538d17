/*
 * `mtinfer bench`: request throughput of the seeds' MLP (512-1024-1024-512) through the
 * stream pool. A request is what a server does per call: input from host memory, copy in,
 * three Linear layers, copy out to host memory, wait. Sections:
 *   baseline  a plain single-threaded BLAS loop with no mtinfer in it (the CPU ceiling)
 *   threads   1..32 persistent workers, each with its own stream slot (wall-clock req/s)
 *   batch     one thread, batch 1..1024: latency and samples/s
 * Every point: warm-up, then fixed-duration windows, several trials, median and min-max.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "mtinfer.h"
#include "tools/cli.h"

#define MAX_POINTS 16
#define N_LAYERS 3
static const int k_dims[N_LAYERS + 1] = {512, 1024, 1024, 512};

struct options {
    int threads[MAX_POINTS], n_threads;
    int batches[MAX_POINTS], n_batches;
    double duration_s;
    int trials;
    int sections; /* bit mask of SECTION_* */
    int modes;    /* bit mask of MODE_* for the thread-scaling section */
    int progress; /* stderr is a terminal */
};

enum { SECTION_BASELINE = 1, SECTION_THREADS = 2, SECTION_BATCH = 4 };
/* eager: each request submits its 5 ops; graph: the request is captured once per thread and
 * replayed with one launch (a CUDA graph on the GPU). */
enum { MODE_EAGER = 1, MODE_GRAPH = 2 };

struct mlp {
    float *w[N_LAYERS], *b[N_LAYERS]; /* host copies (reference, baseline) */
    mti_buffer_t dw[N_LAYERS], db[N_LAYERS];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float uniform(uint64_t *s)
{
    return (float)((splitmix(s) >> 40) * (1.0 / (1ull << 24)) * 2.0 - 1.0);
}

/* ---- options ------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mtinfer bench [--sections baseline,threads,batch] [--threads 1,2,4,8,16,32]\n"
            "                     [--batches 1,8,64,256,1024] [--duration S] [--trials N] [--quick]\n"
            "\n"
            "Measures requests of the MLP 512-1024-1024-512 (fp32): host input, copy in, three\n"
            "Linear layers (ReLU between), copy out, wait. Reports wall-clock requests/s (median\n"
            "and min-max over trials) per thread count, each thread on its own stream slot, next\n"
            "to a plain single-threaded BLAS loop with no mtinfer in it.\n"
            "\n"
            "  --sections LIST   which sections to run (default: all)\n"
            "  --modes LIST      eager,graph: how thread-scaling requests are submitted: op by op,\n"
            "                    or captured once per thread and replayed (default: eager)\n"
            "  --threads LIST    thread counts for the scaling section\n"
            "  --batches LIST    batch sizes for the batching section\n"
            "  --duration S      seconds per measured window (default 1.0)\n"
            "  --trials N        windows per point; the median is reported (default 3)\n"
            "  --quick           short windows and fewer points (a smoke run)\n"
            "The backend and pool come from MTI_* variables (mtinfer help).\n");
}

static int parse_list(const char *what, const char *s, int *out, int max)
{
    int n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        long v = strtol(tok, &end, 10);
        if (*end || v < 1 || v > 65536 || n == max) {
            fprintf(stderr, "mtinfer bench: %s: '%s' is not a list of up to %d numbers 1..65536\n",
                    what, s, max);
            free(copy);
            return -1;
        }
        out[n++] = (int)v;
    }
    free(copy);
    return n;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const int threads[] = {1, 2, 4, 8, 16, 32}, batches[] = {1, 8, 64, 256, 1024};
    memcpy(o->threads, threads, sizeof threads);
    o->n_threads = 6;
    memcpy(o->batches, batches, sizeof batches);
    o->n_batches = 5;
    o->duration_s = 1.0;
    o->trials = 3;
    o->sections = SECTION_BASELINE | SECTION_THREADS | SECTION_BATCH;
    o->progress = isatty(2);
    o->modes = MODE_EAGER;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(a, "--quick")) {
            o->duration_s = 0.3;
            o->trials = 2;
        } else if (v && !strcmp(a, "--threads")) {
            if ((o->n_threads = parse_list(a, v, o->threads, MAX_POINTS)) < 0)
                return -1;
            i++;
        } else if (v && !strcmp(a, "--batches")) {
            if ((o->n_batches = parse_list(a, v, o->batches, MAX_POINTS)) < 0)
                return -1;
            i++;
        } else if (v && !strcmp(a, "--duration")) {
            o->duration_s = atof(v);
            if (o->duration_s <= 0 || o->duration_s > 3600) {
                fprintf(stderr, "mtinfer bench: --duration: '%s' is not 0 < S <= 3600\n", v);
                return -1;
            }
            i++;
        } else if (v && !strcmp(a, "--trials")) {
            o->trials = atoi(v);
            if (o->trials < 1 || o->trials > 100) {
                fprintf(stderr, "mtinfer bench: --trials: '%s' is not 1..100\n", v);
                return -1;
            }
            i++;
        } else if (v && !strcmp(a, "--modes")) {
            o->modes = (strstr(v, "eager") ? MODE_EAGER : 0) | (strstr(v, "graph") ? MODE_GRAPH : 0);
            if (!o->modes) {
                fprintf(stderr, "mtinfer bench: --modes: '%s' names none of eager,graph\n", v);
                return -1;
            }
            i++;
        } else if (v && !strcmp(a, "--sections")) {
            o->sections = 0;
            if (strstr(v, "baseline"))
                o->sections |= SECTION_BASELINE;
            if (strstr(v, "threads"))
                o->sections |= SECTION_THREADS;
            if (strstr(v, "batch"))
                o->sections |= SECTION_BATCH;
            if (!o->sections) {
                fprintf(stderr, "mtinfer bench: --sections: '%s' names none of "
                                "baseline,threads,batch\n", v);
                return -1;
            }
            i++;
        } else {
            fprintf(stderr, "mtinfer bench: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return -1;
        }
    }
    return 0;
}

/* ---- the model ---------------------------------------------------------------------------- */

static int mlp_init(mti_runtime_t rt, struct mlp *m)
{
    uint64_t seed = 42;
    mti_stream_t s;
    if (mti_stream_get_current(rt, &s) != MTI_OK)
        return -1;
    for (int l = 0; l < N_LAYERS; l++) {
        int in = k_dims[l], out = k_dims[l + 1];
        float scale = 1.0f / sqrtf((float)in);
        m->w[l] = malloc(sizeof(float) * in * out);
        m->b[l] = malloc(sizeof(float) * out);
        for (int i = 0; i < in * out; i++)
            m->w[l][i] = uniform(&seed) * scale;
        for (int i = 0; i < out; i++)
            m->b[l][i] = uniform(&seed) * scale;
        if (mti_buffer_alloc(s, sizeof(float) * in * out, &m->dw[l]) != MTI_OK ||
            mti_buffer_alloc(s, sizeof(float) * out, &m->db[l]) != MTI_OK)
            return -1;
        mti_memcpy_async(s, mti_buffer_ptr(m->dw[l]), m->w[l], sizeof(float) * in * out,
                         MTI_COPY_HOST_TO_DEVICE);
        mti_memcpy_async(s, mti_buffer_ptr(m->db[l]), m->b[l], sizeof(float) * out,
                         MTI_COPY_HOST_TO_DEVICE);
    }
    /* Weights are shared read-only by every stream from here on. The loading thread gives
     * its slot back, so a run of pool-size workers does not wait for a slot that never frees. */
    return mti_stream_release(s) == MTI_OK ? 0 : -1;
}

static void mlp_free(struct mlp *m)
{
    for (int l = 0; l < N_LAYERS; l++) {
        mti_buffer_free(m->dw[l]);
        mti_buffer_free(m->db[l]);
        free(m->w[l]);
        free(m->b[l]);
    }
}

/* Plain BLAS forward on the host (the baseline and the reference for the check). */
static void mlp_forward_blas(const struct mlp *m, const float *x, float *h1, float *h2, float *y)
{
    const float *in[N_LAYERS] = {x, h1, h2};
    float *out[N_LAYERS] = {h1, h2, y};
    for (int l = 0; l < N_LAYERS; l++) {
        memcpy(out[l], m->b[l], sizeof(float) * k_dims[l + 1]);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, k_dims[l + 1], k_dims[l], 1.0f, m->w[l],
                    k_dims[l], in[l], 1, 1.0f, out[l], 1);
        if (l < N_LAYERS - 1)
            for (int i = 0; i < k_dims[l + 1]; i++)
                out[l][i] = out[l][i] > 0 ? out[l][i] : 0;
    }
}

/* ---- one worker's request loop ------------------------------------------------------------ */

struct worker {
    pthread_t tid;
    mti_runtime_t rt;
    const struct mlp *m;
    int batch, id, graph;
    pthread_barrier_t *start;
    _Atomic int *stop;
    long requests;
    double end_s;
    double *latencies; /* optional: per-request seconds, up to max_latencies */
    long max_latencies;
    int failed;
    float max_err; /* first request's output vs the BLAS reference (batch row 0) */
};

/* One request on s: copy in, 3 layers, copy out, wait. */
static mti_status request(mti_stream_t s, const struct mlp *m, int batch, const float *x_host,
                          float *y_host, void *dev[N_LAYERS + 1])
{
    mti_status st = mti_memcpy_async(s, dev[0], x_host, sizeof(float) * batch * k_dims[0],
                                     MTI_COPY_HOST_TO_DEVICE);
    for (int l = 0; l < N_LAYERS && st == MTI_OK; l++)
        st = mti_linear_async(s, dev[l], mti_buffer_ptr(m->dw[l]), mti_buffer_ptr(m->db[l]),
                              dev[l + 1], batch, k_dims[l + 1], k_dims[l],
                              l < N_LAYERS - 1 ? MTI_ACT_RELU : MTI_ACT_NONE);
    if (st == MTI_OK)
        st = mti_memcpy_async(s, y_host, dev[N_LAYERS], sizeof(float) * batch * k_dims[N_LAYERS],
                              MTI_COPY_DEVICE_TO_HOST);
    return st == MTI_OK ? mti_stream_synchronize(s) : st;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    mti_stream_t s;
    mti_buffer_t bufs[N_LAYERS + 1] = {0};
    void *dev[N_LAYERS + 1];
    /* Host input and output in the memory the device copies fastest (pinned on CUDA). */
    float *x = NULL, *y = NULL;
    int ok = mti_host_alloc(w->rt, sizeof(float) * w->batch * k_dims[0], (void **)&x) == MTI_OK &&
             mti_host_alloc(w->rt, sizeof(float) * w->batch * k_dims[N_LAYERS], (void **)&y) ==
                 MTI_OK;
    uint64_t seed = 1000 + (uint64_t)w->id;
    for (int i = 0; ok && i < w->batch * k_dims[0]; i++)
        x[i] = uniform(&seed);
    mti_graph_t graph = NULL;
    ok = ok && mti_stream_get_current(w->rt, &s) == MTI_OK;
    for (int l = 0; ok && l <= N_LAYERS; l++) {
        ok = mti_buffer_alloc(s, sizeof(float) * w->batch * k_dims[l], &bufs[l]) == MTI_OK;
        dev[l] = ok ? mti_buffer_ptr(bufs[l]) : NULL;
    }
    /* Warm-up (never time a first call), and one checked answer. */
    for (int i = 0; ok && i < 5; i++)
        ok = request(s, w->m, w->batch, x, y, dev) == MTI_OK;
    if (ok) {
        float h1[1024], h2[1024], ref[512];
        mlp_forward_blas(w->m, x, h1, h2, ref);
        for (int i = 0; i < k_dims[N_LAYERS]; i++)
            w->max_err = fmaxf(w->max_err, fabsf(y[i] - ref[i]) / (fabsf(ref[i]) + 1e-3f));
    }
    if (ok && w->graph) {
        /* Capture one request (without its wait) and replay it from here on. */
        ok = mti_stream_begin_capture(s) == MTI_OK;
        mti_status st = MTI_OK;
        if (ok) {
            st = mti_memcpy_async(s, dev[0], x, sizeof(float) * w->batch * k_dims[0],
                                  MTI_COPY_HOST_TO_DEVICE);
            for (int l = 0; l < N_LAYERS && st == MTI_OK; l++)
                st = mti_linear_async(s, dev[l], mti_buffer_ptr(w->m->dw[l]),
                                      mti_buffer_ptr(w->m->db[l]), dev[l + 1], w->batch,
                                      k_dims[l + 1], k_dims[l],
                                      l < N_LAYERS - 1 ? MTI_ACT_RELU : MTI_ACT_NONE);
            if (st == MTI_OK)
                st = mti_memcpy_async(s, y, dev[N_LAYERS],
                                      sizeof(float) * w->batch * k_dims[N_LAYERS],
                                      MTI_COPY_DEVICE_TO_HOST);
            ok = mti_stream_end_capture(s, &graph) == MTI_OK && st == MTI_OK;
        }
        for (int i = 0; ok && i < 5; i++)
            ok = mti_graph_launch(graph, s) == MTI_OK && mti_stream_synchronize(s) == MTI_OK;
    }
    w->failed = !ok;
    pthread_barrier_wait(w->start);
    long n = 0;
    while (ok && !atomic_load_explicit(w->stop, memory_order_relaxed)) {
        double t0 = w->latencies ? now_s() : 0;
        mti_status st = graph ? mti_graph_launch(graph, s) : MTI_OK;
        if (st == MTI_OK)
            st = graph ? mti_stream_synchronize(s) : request(s, w->m, w->batch, x, y, dev);
        if (st != MTI_OK) {
            w->failed = 1;
            break;
        }
        if (w->latencies && n < w->max_latencies)
            w->latencies[n] = now_s() - t0;
        n++;
    }
    w->end_s = now_s();
    w->requests = n;
    mti_graph_destroy(graph);
    for (int l = 0; l <= N_LAYERS; l++)
        mti_buffer_free(bufs[l]);
    mti_host_free(w->rt, x);
    mti_host_free(w->rt, y);
    return NULL;
}

struct window {
    double requests_per_s;
    double p50_ms, p99_ms;
    int failed;
    float max_err;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One measured window: `threads` persistent workers for duration_s seconds. */
static struct window run_window(mti_runtime_t rt, const struct mlp *m, int threads, int batch,
                                int graph, double duration_s, int want_latency)
{
    struct worker *w = calloc((size_t)threads, sizeof *w);
    pthread_barrier_t start;
    _Atomic int stop = 0;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    long max_lat = want_latency ? 2000000 : 0;
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){.rt = rt, .m = m, .batch = batch, .id = i, .graph = graph,
                               .start = &start, .stop = &stop, .max_latencies = max_lat};
        if (want_latency)
            w[i].latencies = malloc(sizeof(double) * (size_t)max_lat);
        pthread_create(&w[i].tid, NULL, worker_main, &w[i]);
    }
    pthread_barrier_wait(&start);
    double t0 = now_s();
    struct timespec d = {(time_t)duration_s, (long)((duration_s - (time_t)duration_s) * 1e9)};
    nanosleep(&d, NULL);
    atomic_store(&stop, 1);
    struct window r = {0};
    long total = 0;
    double end = t0;
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].tid, NULL);
        total += w[i].requests;
        end = fmax(end, w[i].end_s);
        r.failed |= w[i].failed;
        r.max_err = fmaxf(r.max_err, w[i].max_err);
    }
    r.requests_per_s = total / (end - t0);
    if (want_latency && w[0].requests > 0) {
        long n = w[0].requests < max_lat ? w[0].requests : max_lat;
        qsort(w[0].latencies, (size_t)n, sizeof(double), cmp_double);
        r.p50_ms = w[0].latencies[n / 2] * 1e3;
        r.p99_ms = w[0].latencies[(long)(n * 0.99)] * 1e3;
    }
    for (int i = 0; i < threads; i++)
        free(w[i].latencies);
    pthread_barrier_destroy(&start);
    free(w);
    return r;
}

/* ---- sections ----------------------------------------------------------------------------- */

struct stat3 {
    double median, min, max;
};

static struct stat3 summarize(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    struct stat3 s = {n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), v[0], v[n - 1]};
    return s;
}

static void progress(const struct options *o, const char *section, const char *step,
                     double left_s)
{
    if (o->progress)
        fprintf(stderr, "\r\033[K[bench] %s: %s, about %.0f s left", section, step, left_s);
}

static void progress_done(const struct options *o)
{
    if (o->progress)
        fprintf(stderr, "\r\033[K");
}

static double section_baseline(const struct options *o, const struct mlp *m)
{
    float x[512], h1[1024], h2[1024], y[512];
    uint64_t seed = 7;
    for (int i = 0; i < 512; i++)
        x[i] = uniform(&seed);
    double rates[100];
    for (int t = 0; t < o->trials; t++) {
        progress(o, "baseline", "plain BLAS loop", (o->trials - t) * o->duration_s);
        for (int i = 0; i < 5; i++)
            mlp_forward_blas(m, x, h1, h2, y);
        long n = 0;
        double t0 = now_s(), t1;
        do {
            mlp_forward_blas(m, x, h1, h2, y);
            n++;
        } while ((t1 = now_s()) - t0 < o->duration_s);
        rates[t] = n / (t1 - t0);
    }
    progress_done(o);
    struct stat3 s = summarize(rates, o->trials);
    printf("\n## Baseline: plain single-threaded BLAS loop, no mtinfer (MLP batch 1)\n\n");
    printf("| requests/s (median) | min | max |\n|---:|---:|---:|\n");
    printf("| %.0f | %.0f | %.0f |\n", s.median, s.min, s.max);
    return s.median;
}

static int section_threads_mode(const struct options *o, mti_runtime_t rt, const struct mlp *m,
                                double baseline, int graph)
{
    printf("\n## Thread scaling (%s): persistent workers, each on its own stream slot "
           "(MLP batch 1)\n\n",
           graph ? "graph replay" : "eager");
    printf("| threads | requests/s (median) | min | max | per thread | speedup | efficiency |"
           " vs BLAS loop | max rel err |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    double one = 0;
    int failed = 0;
    for (int p = 0; p < o->n_threads; p++) {
        int n = o->threads[p];
        double rates[100];
        float err = 0;
        for (int t = 0; t < o->trials; t++) {
            char step[64];
            snprintf(step, sizeof step, "%s, %d threads, trial %d/%d", graph ? "graph" : "eager",
                     n, t + 1, o->trials);
            progress(o, "threads", step, ((o->n_threads - p) * o->trials - t) * o->duration_s);
            struct window w = run_window(rt, m, n, 1, graph, o->duration_s, 0);
            rates[t] = w.requests_per_s;
            failed |= w.failed;
            err = fmaxf(err, w.max_err);
        }
        progress_done(o);
        struct stat3 s = summarize(rates, o->trials);
        if (p == 0)
            one = s.median / n;
        printf("| %d | %.0f | %.0f | %.0f | %.0f | %.2fx | %.0f%% |", n, s.median, s.min, s.max,
               s.median / n, s.median / one, 100.0 * s.median / (one * n));
        if (baseline > 0)
            printf(" %.2f |", s.median / baseline);
        else
            printf(" - |");
        printf(" %.1e |\n", err);
        fflush(stdout);
    }
    return failed;
}

static int section_threads(const struct options *o, mti_runtime_t rt, const struct mlp *m,
                           double baseline)
{
    int failed = 0;
    if (o->modes & MODE_EAGER)
        failed |= section_threads_mode(o, rt, m, baseline, 0);
    if (o->modes & MODE_GRAPH)
        failed |= section_threads_mode(o, rt, m, baseline, 1);
    mti_pool_stats ps;
    mti_runtime_pool_stats(rt, &ps);
    printf("\npool: %d slots, peak %d in use, %d streams created, %llu acquisitions, "
           "%llu waits\n",
           ps.size, ps.peak_in_use, ps.streams_created, (unsigned long long)ps.acquires,
           (unsigned long long)ps.waits);
    return failed;
}

static int section_batch(const struct options *o, mti_runtime_t rt, const struct mlp *m)
{
    printf("\n## Batching: one thread, one request = one batch (MLP)\n\n");
    printf("| batch | p50 latency ms | p99 latency ms | requests/s | samples/s | gain vs batch 1 |\n");
    printf("|---:|---:|---:|---:|---:|---:|\n");
    double first = 0;
    int failed = 0;
    for (int p = 0; p < o->n_batches; p++) {
        int b = o->batches[p];
        char step[64];
        snprintf(step, sizeof step, "batch %d", b);
        progress(o, "batch", step, (o->n_batches - p) * o->duration_s);
        struct window w = run_window(rt, m, 1, b, 0, o->duration_s, 1);
        progress_done(o);
        failed |= w.failed;
        double samples = w.requests_per_s * b;
        if (p == 0)
            first = samples;
        printf("| %d | %.3f | %.3f | %.0f | %.0f | %.1fx |\n", b, w.p50_ms, w.p99_ms,
               w.requests_per_s, samples, samples / first);
        fflush(stdout);
    }
    return failed;
}

int mti_cli_bench(int argc, char **argv)
{
    struct options o;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    mti_runtime_t rt;
    if (mti_runtime_create(NULL, &rt) != MTI_OK) {
        fprintf(stderr, "mtinfer bench: %s\n", mti_last_error_message());
        return 2;
    }
    printf("# mtinfer bench\n\nbackend: %s; device: %s; %ld CPUs online; duration %.1f s x %d "
           "trials per point\n",
           mti_backend_name(mti_runtime_backend(rt)), mti_runtime_device_name(rt),
           sysconf(_SC_NPROCESSORS_ONLN), o.duration_s, o.trials);
    struct mlp m = {0};
    if (mlp_init(rt, &m) != 0) {
        fprintf(stderr, "mtinfer bench: cannot load the MLP: %s\n", mti_last_error_message());
        mti_runtime_destroy(rt);
        return 2;
    }
    double baseline = 0;
    int failed = 0;
    if (o.sections & SECTION_BASELINE)
        baseline = section_baseline(&o, &m);
    if (o.sections & SECTION_THREADS)
        failed |= section_threads(&o, rt, &m, mti_runtime_backend(rt) == MTI_BACKEND_CPU ? baseline : 0);
    if (o.sections & SECTION_BATCH)
        failed |= section_batch(&o, rt, &m);
    mlp_free(&m);
    mti_runtime_destroy(rt);
    if (failed) {
        fprintf(stderr, "mtinfer bench: some requests failed: %s\n", mti_last_error_message());
        return 1;
    }
    return 0;
}
