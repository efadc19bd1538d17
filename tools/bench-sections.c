/*
 * The sections of `mtinfer bench`, each reproducing a table of the seed reports on our
 * backends: single-thread baseline (matmul ops, sync patterns), thread scaling, patterns,
 * serialization policies, batching, the raw baseline. Each prints a markdown table and adds
 * its figures to the JSON tree.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "tools/bench-batcher.h"
#include "tools/bench.h"

static const int k_mlp_dims[4] = {512, 1024, 1024, 512};

static struct bench_workload workload(mti_runtime_t rt, const char *name, mti_model_t m, int batch,
                                      int seq)
{
    mti_model_info info;
    mti_model_get_info(m, &info);
    int rows = batch * (seq > 0 ? seq : 1);
    struct bench_workload w = {
        name, rt, m, batch, seq, rows * info.input_features, rows * info.output_features};
    return w;
}

/* The peer's figure at path (objects keyed by strings), or NAN. */
static double peer_number(const struct bench_ctx *c, const char *a, const char *b, const char *d,
                          int key, const char *field)
{
    if (!c->peer) return NAN;
    char k[32];
    snprintf(k, sizeof k, "%d", key);
    cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(c->peer, a), b), d);
    n = cJSON_GetObjectItem(n, k);
    if (field) n = cJSON_GetObjectItem(n, field);
    return cJSON_IsNumber(n) ? n->valuedouble : NAN;
}

static void out_number(double v)
{
    if (isfinite(v))
        bench_out(" %.0f |", v);
    else
        bench_out(" - |");
}

static void out_ratio(double a, double b)
{
    if (isfinite(a) && isfinite(b) && b > 0)
        bench_out(" %.2f |", a / b);
    else
        bench_out(" - |");
}

/* ---- 1. single-thread baseline -------------------------------------------------------- */

struct mlp_buffers {
    mti_buffer_t w[3], b[3], act[4];
};

static int mlp_buffers_init(mti_stream_t s, struct mlp_buffers *m)
{
    for (int l = 0; l < 3; l++) {
        size_t nw = (size_t)k_mlp_dims[l] * k_mlp_dims[l + 1], nb = (size_t)k_mlp_dims[l + 1];
        float *host = malloc(sizeof(float) * nw);
        bench_fill_random(host, nw, 77 + (uint64_t)l);
        for (size_t i = 0; i < nw; i++)
            host[i] /= sqrtf((float)k_mlp_dims[l]);
        if (mti_buffer_alloc(s, sizeof(float) * nw, &m->w[l]) != MTI_OK ||
            mti_buffer_alloc(s, sizeof(float) * nb, &m->b[l]) != MTI_OK) {
            free(host);
            return -1;
        }
        mti_memcpy_async(s, mti_buffer_ptr(m->w[l]), host, sizeof(float) * nw,
                         MTI_COPY_HOST_TO_DEVICE);
        mti_memcpy_async(s, mti_buffer_ptr(m->b[l]), host, sizeof(float) * nb,
                         MTI_COPY_HOST_TO_DEVICE);
        mti_stream_synchronize(s);
        free(host);
    }
    for (int l = 0; l < 4; l++)
        if (mti_buffer_alloc(s, sizeof(float) * k_mlp_dims[l], &m->act[l]) != MTI_OK) return -1;
    return 0;
}

static void mlp_buffers_free(struct mlp_buffers *m)
{
    for (int l = 0; l < 3; l++) {
        mti_buffer_free(m->w[l]);
        mti_buffer_free(m->b[l]);
    }
    for (int l = 0; l < 4; l++)
        mti_buffer_free(m->act[l]);
}

enum sync_pattern { SYNC_EVERY_OP, SYNC_AT_END, SYNC_EVENT };

/* One batch-1 MLP request op by op, waiting as the pattern says. */
static mti_status pattern_request(mti_stream_t s, struct mlp_buffers *m, mti_event_t ev,
                                  const float *in, float *out, enum sync_pattern p)
{
    mti_status st = mti_memcpy_async(s, mti_buffer_ptr(m->act[0]), in, sizeof(float) * 512,
                                     MTI_COPY_HOST_TO_DEVICE);
    if (st == MTI_OK && p == SYNC_EVERY_OP) st = mti_stream_synchronize(s);
    for (int l = 0; l < 3 && st == MTI_OK; l++) {
        st =
            mti_linear_async(s, mti_buffer_ptr(m->act[l]), mti_buffer_ptr(m->w[l]),
                             mti_buffer_ptr(m->b[l]), mti_buffer_ptr(m->act[l + 1]), 1,
                             k_mlp_dims[l + 1], k_mlp_dims[l], l < 2 ? MTI_ACT_RELU : MTI_ACT_NONE);
        if (st == MTI_OK && p == SYNC_EVERY_OP) st = mti_stream_synchronize(s);
    }
    if (st == MTI_OK)
        st = mti_memcpy_async(s, out, mti_buffer_ptr(m->act[3]), sizeof(float) * 512,
                              MTI_COPY_DEVICE_TO_HOST);
    if (st != MTI_OK) return st;
    if (p == SYNC_EVENT) {
        st = mti_event_record(ev, s);
        return st == MTI_OK ? mti_event_synchronize(ev) : st;
    }
    return mti_stream_synchronize(s);
}

void bench_section_single(struct bench_ctx *c)
{
    const struct bench_options *o = c->o;
    mti_stream_t s;
    if (mti_stream_acquire(c->rt, &s) != MTI_OK) {
        c->failed = 1;
        return;
    }
    cJSON *js = cJSON_AddObjectToObject(c->json, "single");
    /* (a) matmul 1024 x 1024 x 1024, N sequential ops, one wait at the end */
    bench_out(
        "\n## 1. Single thread: sequential 1024x1024 matmuls (the seeds' first table)\n\n"
        "| ops | seconds (median) | ops/s (median) | min | max |\n|---:|---:|---:|---:|---:|\n");
    mti_buffer_t a, b, y;
    size_t bytes = sizeof(float) * 1024 * 1024;
    float *host = malloc(bytes);
    bench_fill_random(host, 1024 * 1024, 5);
    int ok = mti_buffer_alloc(s, bytes, &a) == MTI_OK && mti_buffer_alloc(s, bytes, &b) == MTI_OK &&
             mti_buffer_alloc(s, bytes, &y) == MTI_OK;
    if (ok) {
        mti_memcpy_async(s, mti_buffer_ptr(a), host, bytes, MTI_COPY_HOST_TO_DEVICE);
        mti_memcpy_async(s, mti_buffer_ptr(b), host, bytes, MTI_COPY_HOST_TO_DEVICE);
        ok = mti_linear_async(s, mti_buffer_ptr(a), mti_buffer_ptr(b), NULL, mti_buffer_ptr(y),
                              1024, 1024, 1024, MTI_ACT_NONE) == MTI_OK &&
             mti_stream_synchronize(s) == MTI_OK; /* warm-up */
    }
    cJSON *jm = cJSON_AddArrayToObject(js, "matmul1024");
    static const int counts[] = {20, 40, 80, 160};
    int n_counts = o->quick ? 2 : 4;
    for (int i = 0; ok && i < n_counts; i++) {
        double secs[64], rates[64];
        for (int t = 0; t < o->trials; t++) {
            bench_progress(o, "single", "matmul", 0);
            double t0 = bench_now_s();
            for (int k = 0; ok && k < counts[i]; k++)
                ok = mti_linear_async(s, mti_buffer_ptr(a), mti_buffer_ptr(b), NULL,
                                      mti_buffer_ptr(y), 1024, 1024, 1024, MTI_ACT_NONE) == MTI_OK;
            ok = ok && mti_stream_synchronize(s) == MTI_OK;
            secs[t] = bench_now_s() - t0;
            rates[t] = counts[i] / secs[t];
        }
        bench_progress_done(o);
        struct bench_stat r = bench_summarize(rates, o->trials),
                          d = bench_summarize(secs, o->trials);
        bench_out("| %d | %.4f | %.0f | %.0f | %.0f |\n", counts[i], d.median, r.median, r.min,
                  r.max);
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "ops", counts[i]);
        cJSON_AddItemToObject(p, "ops_per_s", bench_stat_json(r));
        cJSON_AddItemToArray(jm, p);
    }
    mti_buffer_free(a);
    mti_buffer_free(b);
    mti_buffer_free(y);
    free(host);

    /* (b) sync patterns */
    bench_out("\n## 1b. Single thread: MLP batch-1 requests by sync pattern\n\n"
              "| pattern | requests/s (median) | min | max |\n|---|---:|---:|---:|\n");
    struct mlp_buffers m = {0};
    mti_event_t ev = NULL;
    float in[512], out[512];
    bench_fill_random(in, 512, 9);
    ok = ok && mlp_buffers_init(s, &m) == 0 && mti_event_create(c->rt, 0, &ev) == MTI_OK;
    static const char *names[] = {"device sync after every op", "one sync at the end",
                                  "per-stream event sync"};
    static const char *keys[] = {"sync_every_op", "sync_at_end", "event_sync"};
    cJSON *jp = cJSON_AddObjectToObject(js, "sync_patterns");
    for (int p = 0; ok && p < 3; p++) {
        double rates[64];
        for (int t = 0; t < o->trials; t++) {
            bench_progress(o, "single", names[p], (o->trials - t) * o->duration_s);
            for (int i = 0; i < 3; i++)
                pattern_request(s, &m, ev, in, out, (enum sync_pattern)p);
            long n = 0;
            double t0 = bench_now_s(), t1;
            do {
                ok = pattern_request(s, &m, ev, in, out, (enum sync_pattern)p) == MTI_OK;
                n++;
            } while (ok && (t1 = bench_now_s()) - t0 < o->duration_s);
            rates[t] = n / (bench_now_s() - t0);
        }
        bench_progress_done(o);
        struct bench_stat r = bench_summarize(rates, o->trials);
        bench_out("| %s | %.0f | %.0f | %.0f |\n", names[p], r.median, r.min, r.max);
        cJSON_AddItemToObject(jp, keys[p], bench_stat_json(r));
    }
    c->failed |= !ok;
    mti_event_destroy(ev);
    mlp_buffers_free(&m);
    mti_stream_release(s);
}

/* ---- 2. thread scaling ---------------------------------------------------------------- */

void bench_section_threads(struct bench_ctx *c, const char *key, mti_model_t model,
                           const char *title, int batch, int seq)
{
    const struct bench_options *o = c->o;
    struct bench_workload w = workload(c->rt, key, model, batch, seq);
    int has_peer = c->peer != NULL;
    bench_out("\n## %s\n\nRequest: host input -> copy in -> forward -> copy out -> result ready; "
              "persistent workers, each on its own stream slot; wall-clock requests/s "
              "(median of %d windows of %.2f s, min-max).\n\n",
              title, o->trials, o->duration_s);
    bench_out("| threads | requests/s | min | max | per thread | speedup | efficiency |%s\n",
              has_peer ? " PyTorch eager | PyTorch graph | mtinfer / best PyTorch |" : "");
    bench_out("|---:|---:|---:|---:|---:|---:|---:|%s\n", has_peer ? "---:|---:|---:|" : "");
    cJSON *arr = cJSON_AddArrayToObject(c->json, key);
    double one = 0;
    for (int i = 0; i < o->n_threads; i++) {
        int n = o->threads[i];
        struct bench_stat r = bench_measure(o, &w, n, key, &c->failed);
        if (i == 0) one = r.median / n;
        bench_out("| %d | %.0f | %.0f | %.0f | %.0f | %.2fx | %.0f%% |", n, r.median, r.min, r.max,
                  r.median / n, r.median / one, 100.0 * r.median / (one * n));
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "threads", n);
        cJSON_AddItemToObject(p, "requests_per_s", bench_stat_json(r));
        if (has_peer) {
            double pe = peer_number(c, "threads", key, "eager", n, NULL);
            double pg = peer_number(c, "threads", key, "graph", n, NULL);
            double best = fmax(isfinite(pe) ? pe : 0, isfinite(pg) ? pg : 0);
            out_number(pe);
            out_number(pg);
            out_ratio(r.median, best > 0 ? best : NAN);
            if (isfinite(pe)) cJSON_AddNumberToObject(p, "peer_eager", pe);
            if (isfinite(pg)) cJSON_AddNumberToObject(p, "peer_graph", pg);
        }
        bench_out("\n");
        cJSON_AddItemToArray(arr, p);
    }
}

/* ---- 3. patterns ---------------------------------------------------------------------- */

#define PATTERN_THREADS 8

struct one_shot {
    const struct bench_workload *w;
    const float *in;
    int failed;
};

static void *one_request_thread(void *arg)
{
    struct one_shot *r = arg;
    float *out = malloc(sizeof(float) * (size_t)r->w->out_count);
    r->failed = mti_model_infer(r->w->model, r->w->batch, r->w->seq, r->in, (size_t)r->w->in_count,
                                out, (size_t)r->w->out_count) != MTI_OK;
    free(out);
    return NULL; /* the thread exits: its stream slot goes back to the pool */
}

/* A new thread per request, PATTERN_THREADS at a time. */
static double run_thread_per_request(const struct bench_workload *w, double duration_s, int *failed)
{
    float *in = malloc(sizeof(float) * (size_t)w->in_count);
    bench_fill_random(in, (size_t)w->in_count, 3);
    long n = 0;
    double t0 = bench_now_s();
    while (bench_now_s() - t0 < duration_s) {
        pthread_t t[PATTERN_THREADS];
        struct one_shot r[PATTERN_THREADS];
        for (int i = 0; i < PATTERN_THREADS; i++) {
            r[i] = (struct one_shot){w, in, 0};
            pthread_create(&t[i], NULL, one_request_thread, &r[i]);
        }
        for (int i = 0; i < PATTERN_THREADS; i++) {
            pthread_join(t[i], NULL);
            *failed |= r[i].failed;
        }
        n += PATTERN_THREADS;
    }
    double rate = n / (bench_now_s() - t0);
    free(in);
    return rate;
}

/* A thread pool: the submitting thread hands requests to PATTERN_THREADS workers through a
 * queue (a counter of pending tasks under a mutex) and waits for each to complete. */
struct task_pool {
    pthread_mutex_t lock; /* protects pending, done, stop */
    pthread_cond_t work, finished;
    long pending, done;
    int stop;
    const struct bench_workload *w;
    int failed;
};

static void *pool_worker(void *arg)
{
    struct task_pool *p = arg;
    const struct bench_workload *w = p->w;
    float *in = malloc(sizeof(float) * (size_t)w->in_count);
    float *out = malloc(sizeof(float) * (size_t)w->out_count);
    bench_fill_random(in, (size_t)w->in_count, 4);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->pending && !p->stop)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->stop) break;
        p->pending--;
        pthread_mutex_unlock(&p->lock);
        int bad = mti_model_infer(w->model, w->batch, w->seq, in, (size_t)w->in_count, out,
                                  (size_t)w->out_count) != MTI_OK;
        pthread_mutex_lock(&p->lock);
        p->failed |= bad;
        p->done++;
        pthread_cond_signal(&p->finished);
    }
    pthread_mutex_unlock(&p->lock);
    free(in);
    free(out);
    return NULL;
}

static double run_thread_pool(const struct bench_workload *w, double duration_s, int *failed)
{
    struct task_pool p = {.w = w};
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.work, NULL);
    pthread_cond_init(&p.finished, NULL);
    pthread_t t[PATTERN_THREADS];
    for (int i = 0; i < PATTERN_THREADS; i++)
        pthread_create(&t[i], NULL, pool_worker, &p);
    /* keep 2 tasks per worker queued or running; count completions in the window */
    const long in_flight = 2 * PATTERN_THREADS;
    double t0 = bench_now_s();
    long submitted = 0;
    pthread_mutex_lock(&p.lock);
    while (bench_now_s() - t0 < duration_s) {
        while (submitted - p.done < in_flight) {
            p.pending++;
            submitted++;
            pthread_cond_signal(&p.work);
        }
        pthread_cond_wait(&p.finished, &p.lock);
    }
    long done = p.done;
    double rate = done / (bench_now_s() - t0);
    p.stop = 1;
    pthread_cond_broadcast(&p.work);
    pthread_mutex_unlock(&p.lock);
    for (int i = 0; i < PATTERN_THREADS; i++)
        pthread_join(t[i], NULL);
    *failed |= p.failed;
    pthread_cond_destroy(&p.work);
    pthread_cond_destroy(&p.finished);
    pthread_mutex_destroy(&p.lock);
    return rate;
}

void bench_section_patterns(struct bench_ctx *c)
{
    const struct bench_options *o = c->o;
    struct bench_workload w = workload(c->rt, "mlp", c->mlp, 1, 0);
    bench_out("\n## 3. Patterns (%d threads, MLP batch 1): a new thread per request vs a thread "
              "pool vs persistent workers\n\n| pattern | requests/s | min | max | vs persistent |\n"
              "|---|---:|---:|---:|---:|\n",
              PATTERN_THREADS);
    static const char *names[] = {"new thread per request", "thread pool (queue)",
                                  "persistent workers"};
    static const char *keys[] = {"thread_per_request", "thread_pool", "persistent"};
    struct bench_stat r[3];
    for (int p = 0; p < 3; p++) {
        double rates[64];
        for (int t = 0; t < o->trials; t++) {
            bench_progress(o, "patterns", names[p], (3 - p) * o->trials * o->duration_s);
            if (p == 0)
                rates[t] = run_thread_per_request(&w, o->duration_s, &c->failed);
            else if (p == 1)
                rates[t] = run_thread_pool(&w, o->duration_s, &c->failed);
            else
                rates[t] =
                    bench_run_persistent(&w, PATTERN_THREADS, o->duration_s, 0).requests_per_s;
        }
        bench_progress_done(o);
        r[p] = bench_summarize(rates, o->trials);
    }
    cJSON *jp = cJSON_AddObjectToObject(c->json, "patterns");
    for (int p = 0; p < 3; p++) {
        bench_out("| %s | %.0f | %.0f | %.0f | %.2f |\n", names[p], r[p].median, r[p].min, r[p].max,
                  r[p].median / r[2].median);
        cJSON_AddItemToObject(jp, keys[p], bench_stat_json(r[p]));
    }
}

/* ---- 4. serialization policies --------------------------------------------------------- */

void bench_section_serialization(struct bench_ctx *c)
{
    const struct bench_options *o = c->o;
    static const char *names[] = {"per-stream (default)", "global encode mutex", "semaphore(2)",
                                  "shared round-robin streams"};
    static const char *keys[] = {"per_stream", "global", "semaphore2", "round_robin"};
    static const int threads[] = {1, 4, 8, 16};
    int n_threads = o->quick ? 3 : 4;
    struct bench_stat r[4][4];
    int ok[4] = {0};
    for (int p = 0; p < 4; p++) {
        mti_runtime_params params;
        mti_runtime_params_default(&params);
        if (mti_runtime_params_from_env(&params) != MTI_OK) return;
        params.serialization = p == 1   ? MTI_SERIAL_GLOBAL
                               : p == 2 ? MTI_SERIAL_SEMAPHORE
                                        : MTI_SERIAL_PER_STREAM;
        params.serial_limit = 2;
        params.assign = p == 3 ? MTI_ASSIGN_ROUND_ROBIN : MTI_ASSIGN_EXCLUSIVE;
        params.pool_size = p == 3 ? 4 : params.pool_size; /* 4 shared streams */
        mti_runtime_t rt;
        mti_model_t m;
        if (mti_runtime_create(&params, &rt) != MTI_OK) {
            fprintf(stderr, "mtinfer bench: %s\n", mti_last_error_message());
            c->failed = 1;
            continue;
        }
        if (mti_model_load(rt, c->mlp_path, NULL, &m) != MTI_OK) {
            fprintf(stderr, "mtinfer bench: %s\n", mti_last_error_message());
            c->failed = 1;
            mti_runtime_destroy(rt);
            continue;
        }
        struct bench_workload w = workload(rt, keys[p], m, 1, 0);
        for (int i = 0; i < n_threads; i++)
            r[p][i] = bench_measure(o, &w, threads[i], "serialization", &c->failed);
        ok[p] = 1;
        mti_model_destroy(m);
        mti_runtime_destroy(rt);
    }
    bench_out("\n## 4. Serialization policies (MLP batch 1, requests/s, median)\n\n| threads |");
    for (int p = 0; p < 4; p++)
        bench_out(" %s |", names[p]);
    bench_out("\n|---:|---:|---:|---:|---:|\n");
    cJSON *js = cJSON_AddObjectToObject(c->json, "serialization");
    for (int p = 0; p < 4; p++) {
        cJSON *arr = cJSON_AddArrayToObject(js, keys[p]);
        for (int i = 0; ok[p] && i < n_threads; i++) {
            cJSON *pt = cJSON_CreateObject();
            cJSON_AddNumberToObject(pt, "threads", threads[i]);
            cJSON_AddItemToObject(pt, "requests_per_s", bench_stat_json(r[p][i]));
            cJSON_AddItemToArray(arr, pt);
        }
    }
    for (int i = 0; i < n_threads; i++) {
        bench_out("| %d |", threads[i]);
        for (int p = 0; p < 4; p++)
            ok[p] ? bench_out(" %.0f |", r[p][i].median) : bench_out(" - |");
        bench_out("\n");
    }
}

/* ---- 5. batching ----------------------------------------------------------------------- */

void bench_section_batch(struct bench_ctx *c)
{
    const struct bench_options *o = c->o;
    int has_peer = c->peer != NULL;
    bench_out(
        "\n## 5. Batching (one thread; one request = one batch of the MLP)\n\n"
        "| batch | p50 latency ms | p99 latency ms | requests/s | samples/s | gain vs batch 1 |%s\n"
        "|---:|---:|---:|---:|---:|---:|%s\n",
        has_peer ? " PyTorch eager samples/s | mtinfer / PyTorch |" : "",
        has_peer ? "---:|---:|" : "");
    cJSON *arr = cJSON_AddArrayToObject(c->json, "batch");
    double first = 0;
    for (int i = 0; i < o->n_batches; i++) {
        int b = o->batches[i];
        struct bench_workload w = workload(c->rt, "mlp", c->model, b, 0);
        double samples[64];
        struct bench_window win = {0};
        for (int t = 0; t < o->trials; t++) {
            char step[64];
            snprintf(step, sizeof step, "batch %d, trial %d/%d", b, t + 1, o->trials);
            bench_progress(o, "batch", step, (o->n_batches - i) * o->trials * o->duration_s);
            struct bench_window cur = bench_run_persistent(&w, 1, o->duration_s, 1);
            samples[t] = cur.requests_per_s * b;
            c->failed |= cur.failed;
            if (t == 0 || cur.p50_ms < win.p50_ms)
                win = cur; /* latency of the best window (least disturbed) */
        }
        bench_progress_done(o);
        struct bench_stat s = bench_summarize(samples, o->trials);
        if (i == 0) first = s.median;
        bench_out("| %d | %.3f | %.3f | %.0f | %.0f | %.1fx |", b, win.p50_ms, win.p99_ms,
                  s.median / b, s.median, s.median / first);
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "batch", b);
        cJSON_AddNumberToObject(p, "p50_ms", win.p50_ms);
        cJSON_AddNumberToObject(p, "p99_ms", win.p99_ms);
        cJSON_AddItemToObject(p, "samples_per_s", bench_stat_json(s));
        if (has_peer) {
            double pe = peer_number(c, "batch", "mlp", "eager", b, "samples_per_s");
            out_number(pe);
            out_ratio(s.median, pe);
            if (isfinite(pe)) cJSON_AddNumberToObject(p, "peer_eager_samples_per_s", pe);
        }
        bench_out("\n");
        cJSON_AddItemToArray(arr, p);
    }
}

/* ---- 6. raw baseline -------------------------------------------------------------------- */

/* The plain single-threaded BLAS loop (CPU): the MLP forward with no mtinfer in it. */
static double blas_loop_rate(const struct bench_options *o, int batch)
{
    float *w[3], *b[3], *act[4];
    for (int l = 0; l < 3; l++) {
        w[l] = malloc(sizeof(float) * k_mlp_dims[l] * k_mlp_dims[l + 1]);
        b[l] = calloc((size_t)k_mlp_dims[l + 1], sizeof(float));
        bench_fill_random(w[l], (size_t)k_mlp_dims[l] * k_mlp_dims[l + 1], 11 + (uint64_t)l);
    }
    for (int l = 0; l < 4; l++) {
        act[l] = malloc(sizeof(float) * k_mlp_dims[l] * batch);
        bench_fill_random(act[l], (size_t)k_mlp_dims[l] * batch, 3);
    }
    double rates[64];
    for (int t = 0; t < o->trials; t++) {
        long n = 0;
        double t0 = bench_now_s();
        do {
            for (int l = 0; l < 3; l++) {
                int in = k_mlp_dims[l], out = k_mlp_dims[l + 1];
                for (int r = 0; r < batch; r++)
                    memcpy(act[l + 1] + (size_t)r * out, b[l], sizeof(float) * out);
                if (batch == 1)
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1, w[l], in, act[l], 1, 1,
                                act[l + 1], 1);
                else
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, 1, act[l],
                                in, w[l], in, 1, act[l + 1], out);
                if (l < 2)
                    for (int i = 0; i < out * batch; i++)
                        act[l + 1][i] = act[l + 1][i] > 0 ? act[l + 1][i] : 0;
            }
            n++;
        } while (bench_now_s() - t0 < o->duration_s);
        rates[t] = n * (double)batch / (bench_now_s() - t0);
    }
    for (int l = 0; l < 3; l++) {
        free(w[l]);
        free(b[l]);
    }
    for (int l = 0; l < 4; l++)
        free(act[l]);
    return bench_summarize(rates, o->trials).median;
}

/* The library's figure from an earlier section's JSON (threads or batch), or NAN. */
static double json_point(cJSON *root, const char *section, const char *key, int x,
                         const char *field)
{
    cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(root, section))
    {
        cJSON *k = cJSON_GetObjectItem(p, key);
        if (cJSON_IsNumber(k) && k->valueint == x) {
            cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(p, field), "median");
            return cJSON_IsNumber(v) ? v->valuedouble : NAN;
        }
    }
    return NAN;
}

void bench_section_raw(struct bench_ctx *c)
{
    const struct bench_options *o = c->o;
    cJSON *jr = cJSON_AddObjectToObject(c->json, "raw");
    if (mti_runtime_backend(c->rt) == MTI_BACKEND_CPU) {
        bench_progress(o, "raw", "plain BLAS loop", 2 * o->trials * o->duration_s);
        double b1 = blas_loop_rate(o, 1), b1024 = blas_loop_rate(o, 1024);
        bench_progress_done(o);
        double lib1 = json_point(c->json, "mlp", "threads", 1, "requests_per_s");
        double best = NAN;
        cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItem(c->json, "mlp"))
        {
            cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(p, "requests_per_s"), "median");
            if (cJSON_IsNumber(v) && !(v->valuedouble <= best)) best = v->valuedouble;
        }
        double lib1024 = json_point(c->json, "batch", "batch", 1024, "samples_per_s");
        bench_out(
            "\n## 6. Raw baseline: a plain single-threaded BLAS loop, no mtinfer (MLP)\n\n"
            "| measure | BLAS loop | mtinfer | mtinfer / BLAS loop |\n|---|---:|---:|---:|\n");
        bench_out("| batch 1, 1 thread, samples/s |");
        out_number(b1);
        out_number(lib1);
        out_ratio(lib1, b1);
        bench_out("\n| batch 1, best thread count, samples/s |");
        out_number(b1);
        out_number(best);
        out_ratio(best, b1);
        bench_out("\n| batch 1024, 1 thread, samples/s |");
        out_number(b1024);
        out_number(lib1024);
        out_ratio(lib1024, b1024);
        bench_out("\n");
        cJSON_AddNumberToObject(jr, "blas_loop_batch1_samples_per_s", b1);
        cJSON_AddNumberToObject(jr, "blas_loop_batch1024_samples_per_s", b1024);
        return;
    }
    /* GPU: the raw CUDA program of bench/raw at the same thread counts. */
    const char *raw = o->raw_path ? o->raw_path : "bench/raw/raw_mlp";
    char tmp[] = "/tmp/mtinfer-raw-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd >= 0) close(fd);
    char threads[256] = "";
    for (int i = 0; i < o->n_threads; i++)
        snprintf(threads + strlen(threads), sizeof threads - strlen(threads), "%s%d", i ? "," : "",
                 o->threads[i]);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s --threads %s --mode eager,graph --duration %.2f --trials %d --json %s "
             ">/dev/null 2>&1",
             raw, threads, o->duration_s, o->trials, tmp);
    bench_progress(o, "raw", "bench/raw/raw_mlp", 2 * o->n_threads * o->trials * o->duration_s);
    int rc = access(raw, X_OK) == 0 ? system(cmd) : -1;
    bench_progress_done(o);
    FILE *f = rc == 0 ? fopen(tmp, "r") : NULL;
    char *text = NULL;
    if (f) {
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        text = calloc(1, (size_t)len + 1);
        if (fread(text, 1, (size_t)len, f) != (size_t)len) text[0] = '\0';
        fclose(f);
    }
    unlink(tmp);
    cJSON *raw_json = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!raw_json) {
        bench_out(
            "\n## 6. Raw-driver baseline\n\nnot run: %s (build it with `make -C bench/raw`)\n",
            access(raw, X_OK) == 0 ? "it failed" : "not built");
        return;
    }
    cJSON_AddItemToObject(jr, "raw_mlp", raw_json);
    bench_out(
        "\n## 6. Raw-driver baseline: bench/raw/raw_mlp (plain CUDA + cuBLASLt, no mtinfer) "
        "vs mtinfer, MLP batch 1, same run\n\n"
        "| threads | raw eager | mtinfer eager | ratio | raw graph | mtinfer (graphs) | ratio |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n");
    cJSON *results = cJSON_GetObjectItem(raw_json, "results");
    for (int i = 0; i < o->n_threads; i++) {
        double re = NAN, rg = NAN;
        cJSON *p;
        cJSON_ArrayForEach(p, results)
        {
            cJSON *t = cJSON_GetObjectItem(p, "threads"), *m = cJSON_GetObjectItem(p, "mode");
            cJSON *v = cJSON_GetObjectItem(p, "median_rps");
            if (!cJSON_IsNumber(t) || t->valueint != o->threads[i] || !cJSON_IsString(m) ||
                !cJSON_IsNumber(v))
                continue;
            if (!strcmp(m->valuestring, "eager"))
                re = v->valuedouble;
            else if (!strcmp(m->valuestring, "graph"))
                rg = v->valuedouble;
        }
        double le = json_point(c->json, "mlp_eager", "threads", o->threads[i], "requests_per_s");
        double lg = json_point(c->json, "mlp", "threads", o->threads[i], "requests_per_s");
        bench_out("| %d |", o->threads[i]);
        out_number(re);
        out_number(le);
        out_ratio(le, re);
        out_number(rg);
        out_number(lg);
        out_ratio(lg, rg);
        bench_out("\n");
    }
}

/* ---- 7. the dynamic batcher ---------------------------------------------------------------- */

void bench_section_batcher(struct bench_ctx *c)
{
    const struct bench_options *o = c->o;
    static const int quick_clients[] = {1, 16, 64};
    mti_bench_batcher_config cfg;
    mti_bench_batcher_config_default(&cfg);
    cfg.seconds = o->duration_s;
    if (o->quick) {
        cfg.clients = quick_clients;
        cfg.n_clients = 3;
    }
    if (o->n_batcher_clients > 0) {
        cfg.clients = o->batcher_clients;
        cfg.n_clients = o->n_batcher_clients;
    }
    mti_batcher_params bp;
    mti_batcher_params_default(&bp);
    if (o->batcher_params) { /* k=v,k=v: settings to try */
        char *copy = strdup(o->batcher_params), *save = NULL;
        for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
            const char *eq = strchr(kv, '=');
            int v = eq ? atoi(eq + 1) : 0;
            if (!strncmp(kv, "spin_us=", 8))
                bp.spin_us = v;
            else if (!strncmp(kv, "streams=", 8))
                bp.executor_streams = v;
            else if (!strncmp(kv, "max_batch=", 10))
                bp.max_batch = v;
            else if (!strncmp(kv, "delay_us=", 9))
                bp.max_queue_delay_us = v;
            else
                fprintf(stderr, "mtinfer bench: --batcher-params: ignoring '%s'\n", kv);
        }
        free(copy);
        bench_out("\nbatcher settings: %s\n", o->batcher_params);
    }
    cfg.params = &bp;
    mti_bench_batcher_results *r = calloc(1, sizeof *r);
    bench_out("\n## 7. The dynamic batcher (MLP, single-sample requests)\n");
    bench_progress(o, "batcher", "closed and open loop", 0);
    if (mti_bench_batcher_section(c->rt, c->mlp, &cfg, r) != 0) c->failed = 1;
    bench_progress_done(o);
    cJSON *jb = cJSON_AddObjectToObject(c->json, "batcher");
    cJSON *closed = cJSON_AddArrayToObject(jb, "closed_loop");
    for (int i = 0; i < r->n_closed; i++) {
        const mti_bench_batcher_closed *p = &r->closed[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "clients", p->clients);
        cJSON_AddNumberToObject(j, "direct_rps", p->direct_rps);
        cJSON_AddNumberToObject(j, "batched_rps", p->batched_rps);
        cJSON_AddNumberToObject(j, "mean_batch", p->mean_batch);
        cJSON_AddNumberToObject(j, "ideal_batch", p->ideal_batch);
        cJSON_AddNumberToObject(j, "ideal_sps", p->ideal_sps);
        cJSON_AddNumberToObject(j, "of_ideal", p->of_ideal);
        cJSON_AddNumberToObject(j, "batched_p50_us", p->batched_p50_us);
        cJSON_AddNumberToObject(j, "batched_p99_us", p->batched_p99_us);
        cJSON_AddNumberToObject(j, "direct_p50_us", p->direct_p50_us);
        cJSON_AddNumberToObject(j, "direct_p99_us", p->direct_p99_us);
        cJSON_AddItemToArray(closed, j);
    }
    cJSON *open_loop = cJSON_AddArrayToObject(jb, "open_loop");
    for (int i = 0; i < r->n_open; i++) {
        const mti_bench_batcher_open *p = &r->open[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "offered_rps", p->offered_rps);
        cJSON_AddNumberToObject(j, "achieved_rps", p->achieved_rps);
        cJSON_AddNumberToObject(j, "p50_us", p->p50_us);
        cJSON_AddNumberToObject(j, "p99_us", p->p99_us);
        cJSON_AddNumberToObject(j, "p999_us", p->p999_us);
        cJSON_AddNumberToObject(j, "mean_batch", p->mean_batch);
        cJSON_AddNumberToObject(j, "dropped", (double)p->dropped);
        cJSON_AddItemToArray(open_loop, j);
    }
    free(r);
}

/* ---- charts ------------------------------------------------------------------------------ */

static int series_from(cJSON *arr, const char *xkey, const char *ykey, const char *sub, double *x,
                       double *y, int max)
{
    int n = 0;
    cJSON *p;
    cJSON_ArrayForEach(p, arr)
    {
        if (n == max) break;
        cJSON *xv = cJSON_GetObjectItem(p, xkey), *yv = cJSON_GetObjectItem(p, ykey);
        if (sub) yv = cJSON_GetObjectItem(yv, sub);
        if (cJSON_IsNumber(xv) && cJSON_IsNumber(yv)) {
            x[n] = xv->valuedouble;
            y[n] = yv->valuedouble;
            n++;
        }
    }
    return n;
}

void bench_write_charts(struct bench_ctx *c, const char *device)
{
    const char *dir = c->o->svg_dir;
    double x[6][BENCH_MAX_POINTS], y[6][BENCH_MAX_POINTS];
    struct svg_series s[6];
    int n = 0;
    static const struct {
        const char *key, *field, *label;
    } threads_series[] = {{"mlp", "requests_per_s", "mtinfer"},
                          {"mlp_eager", "requests_per_s", "mtinfer eager"},
                          {"mlp", "peer_eager", "PyTorch eager"},
                          {"mlp", "peer_graph", "PyTorch graph"}};
    for (int i = 0; i < 4; i++) {
        const char *sub = strcmp(threads_series[i].field, "requests_per_s") ? NULL : "median";
        int k = series_from(cJSON_GetObjectItem(c->json, threads_series[i].key), "threads",
                            threads_series[i].field, sub, x[n], y[n], BENCH_MAX_POINTS);
        if (k > 0) s[n] = (struct svg_series){threads_series[i].label, x[n], y[n], k}, n++;
    }
    /* the raw-driver loop of the same run, one series per mode */
    static const char *raw_modes[] = {"graph", "eager"};
    for (int m = 0; m < 2 && n < 6; m++) {
        int k = 0;
        cJSON *p;
        cJSON_ArrayForEach(
            p, cJSON_GetObjectItem(
                   cJSON_GetObjectItem(cJSON_GetObjectItem(c->json, "raw"), "raw_mlp"), "results"))
        {
            cJSON *mode = cJSON_GetObjectItem(p, "mode"), *t = cJSON_GetObjectItem(p, "threads");
            cJSON *v = cJSON_GetObjectItem(p, "median_rps");
            if (k < BENCH_MAX_POINTS && cJSON_IsString(mode) &&
                !strcmp(mode->valuestring, raw_modes[m]) && cJSON_IsNumber(t) &&
                cJSON_IsNumber(v)) {
                x[n][k] = t->valuedouble;
                y[n][k] = v->valuedouble;
                k++;
            }
        }
        if (k > 0)
            s[n] = (struct svg_series){m ? "raw CUDA loop, eager" : "raw CUDA loop, graph", x[n],
                                       y[n], k},
            n++;
    }
    char title[256];
    snprintf(title, sizeof title, "MLP batch-1 requests/s vs threads (%s)", device);
    if (n) bench_svg_chart(dir, "threads", title, "threads", "requests/s", s, n);
    n = 0;
    int k = series_from(cJSON_GetObjectItem(c->json, "batch"), "batch", "samples_per_s", "median",
                        x[0], y[0], BENCH_MAX_POINTS);
    if (k > 0) s[n++] = (struct svg_series){"mtinfer samples/s", x[0], y[0], k};
    k = series_from(cJSON_GetObjectItem(c->json, "batch"), "batch", "peer_eager_samples_per_s",
                    NULL, x[1], y[1], BENCH_MAX_POINTS);
    if (k > 0) s[n++] = (struct svg_series){"PyTorch eager samples/s", x[1], y[1], k};
    if (n)
        bench_svg_chart(dir, "batch-throughput", "MLP samples/s vs batch size", "batch",
                        "samples/s", s, n);
    k = series_from(cJSON_GetObjectItem(c->json, "batch"), "batch", "p50_ms", NULL, x[2], y[2],
                    BENCH_MAX_POINTS);
    int k2 = series_from(cJSON_GetObjectItem(c->json, "batch"), "batch", "p99_ms", NULL, x[3], y[3],
                         BENCH_MAX_POINTS);
    struct svg_series lat[2] = {{"p50", x[2], y[2], k}, {"p99", x[3], y[3], k2}};
    if (k > 0)
        bench_svg_chart(dir, "batch-latency", "MLP request latency vs batch size", "batch",
                        "latency (ms)", lat, 2);
    cJSON *jb = cJSON_GetObjectItem(c->json, "batcher");
    cJSON *closed = cJSON_GetObjectItem(jb, "closed_loop");
    n = 0;
    static const struct {
        const char *field, *label;
    } client_series[] = {{"direct_rps", "direct (thread per client)"},
                         {"batched_rps", "through the batcher"}};
    for (int i = 0; i < 2; i++) {
        k = series_from(closed, "clients", client_series[i].field, NULL, x[n], y[n],
                        BENCH_MAX_POINTS);
        if (k > 0) s[n] = (struct svg_series){client_series[i].label, x[n], y[n], k}, n++;
    }
    if (n)
        bench_svg_chart(dir, "batcher-throughput", "Single-sample requests/s vs clients",
                        "client threads", "requests/s", s, n);
    k = series_from(cJSON_GetObjectItem(jb, "open_loop"), "offered_rps", "p99_us", NULL, x[4], y[4],
                    BENCH_MAX_POINTS);
    struct svg_series p99 = {"batcher p99", x[4], y[4], k};
    if (k > 0)
        bench_svg_chart(dir, "batcher-latency", "p99 latency vs offered load (open loop)",
                        "offered requests/s", "p99 latency (us)", &p99, 1);
}
