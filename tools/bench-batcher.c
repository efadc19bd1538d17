/*
 * The batcher bench section (see bench-batcher.h). Closed loop: N threads, each issuing one
 * single-sample request after the other for a warm-up then a measured window, three ways:
 * direct (mti_model_infer, batch 1), batched (mti_batcher_infer), and the pre-batched ideal
 * (one thread, mti_model_infer at the batcher's observed mean batch size, in samples/s).
 * Open loop: generator threads send requests (mti_batcher_submit) at exponential
 * inter-arrival times for a fixed offered rate; latency runs from each request's scheduled
 * arrival (not its actual send), so a stalled generator cannot hide queueing.
 */
#include "tools/bench-batcher.h"
#include "tools/bench.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until_ns(uint64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

static void sleep_s(double s)
{
    sleep_until_ns(now_ns() + (uint64_t)(s * 1e9));
}

/* Log histogram of ns (8 sub-buckets per power of two), atomic so callbacks may share one. */
#define HB 336
struct hist {
    _Atomic uint64_t n[HB];
};

static void hist_add(struct hist *h, uint64_t ns)
{
    int idx = (int)ns;
    if (ns >= 8) {
        int e = 63 - __builtin_clzll(ns);
        idx = (e - 2) * 8 + (int)((ns >> (e - 3)) & 7);
    }
    if (idx >= HB) idx = HB - 1;
    atomic_fetch_add_explicit(&h->n[idx], 1, memory_order_relaxed);
}

static double hist_pct_us(struct hist *h, double q)
{
    uint64_t total = 0;
    for (int i = 0; i < HB; i++)
        total += atomic_load_explicit(&h->n[i], memory_order_relaxed);
    if (!total) return 0;
    uint64_t rank = (uint64_t)(q * (double)total), seen = 0;
    if (rank >= total) rank = total - 1;
    for (int i = 0; i < HB; i++) {
        seen += atomic_load_explicit(&h->n[i], memory_order_relaxed);
        if (seen > rank) {
            if (i < 8) return i / 1e3;
            int e = i / 8 + 2, sub = i % 8;
            double lo = (double)(1ull << e) + sub * (double)(1ull << (e - 3));
            return (lo + (double)(1ull << (e - 3)) / 2) / 1e3;
        }
    }
    return 0;
}

static void fill_input(float *x, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((seed >> 40) * (1.0 / (1ull << 24)) * 2.0 - 1.0);
    }
}

/* ---- closed loop -------------------------------------------------------------------------- */

enum mode { DIRECT, BATCHED, IDEAL };

struct shared {
    enum mode mode;
    mti_model_t model;
    mti_batcher_t b;
    int in, out, batch;
    _Atomic int phase; /* 0 warm-up, 1 measuring, 2 stop */
    _Atomic int failed;
    struct hist lat;
};

struct worker {
    struct shared *sh;
    int id;
    uint64_t count; /* requests (or samples) finished while measuring */
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    int batch = sh->mode == IDEAL ? sh->batch : 1;
    float *in = malloc(sizeof(float) * (size_t)sh->in * (size_t)batch);
    float *out = malloc(sizeof(float) * (size_t)sh->out * (size_t)batch);
    if (!in || !out) {
        atomic_store(&sh->failed, 1);
        free(in);
        free(out);
        return NULL;
    }
    fill_input(in, (size_t)sh->in * (size_t)batch, (uint64_t)w->id + 1);
    int phase;
    while ((phase = atomic_load_explicit(&sh->phase, memory_order_relaxed)) != 2) {
        uint64_t t0 = now_ns();
        mti_status st;
        if (sh->mode == BATCHED)
            st = mti_batcher_infer(sh->b, in, out, NULL);
        else
            st = mti_model_infer(sh->model, batch, 0, in, (size_t)sh->in * (size_t)batch, out,
                                 (size_t)sh->out * (size_t)batch);
        if (st != MTI_OK) {
            if (!atomic_exchange(&sh->failed, 1))
                fprintf(stderr, "bench batcher: %s\n", mti_last_error_message());
            break;
        }
        if (phase == 1) {
            w->count += (uint64_t)batch;
            hist_add(&sh->lat, now_ns() - t0);
        }
    }
    free(in);
    free(out);
    return NULL;
}

/* Runs n threads in mode; returns per-second count (requests or samples) or -1. */
static double run_closed(struct shared *sh, int n, double seconds, mti_batcher_stats *bst)
{
    atomic_store(&sh->phase, 0);
    atomic_store(&sh->failed, 0);
    memset(&sh->lat, 0, sizeof sh->lat);
    pthread_t *t = calloc((size_t)n, sizeof *t);
    struct worker *w = calloc((size_t)n, sizeof *w);
    int started = 0;
    for (; started < n; started++) {
        w[started] = (struct worker){.sh = sh, .id = started};
        if (pthread_create(&t[started], NULL, worker_main, &w[started]) != 0) break;
    }
    sleep_s(seconds * 0.25 < 0.2 ? seconds * 0.25 : 0.2);
    if (sh->b) mti_batcher_reset_stats(sh->b);
    uint64_t t0 = now_ns();
    atomic_store(&sh->phase, 1);
    sleep_s(seconds);
    atomic_store(&sh->phase, 2);
    double el = (double)(now_ns() - t0) / 1e9;
    if (sh->b && bst) mti_batcher_get_stats(sh->b, bst);
    uint64_t total = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
        total += w[i].count;
    }
    free(t);
    free(w);
    if (started < n || atomic_load(&sh->failed)) return -1;
    return (double)total / el;
}

/* ---- open loop ---------------------------------------------------------------------------- */

#define CTX_PER_GEN 2048

struct octx {
    struct ogen *g;
    uint64_t t_sched;
    _Atomic int busy;
    float *in, *out;
};

struct oshared {
    mti_batcher_t b;
    int in, out;
    double rate_per_gen;
    double seconds;
    struct hist lat;
    _Atomic uint64_t ok, failed, outstanding;
};

struct ogen {
    struct oshared *sh;
    int id;
    struct octx ctx[CTX_PER_GEN];
    uint64_t sent, dropped;
};

static void open_cb(void *user, mti_status st)
{
    struct octx *c = user;
    struct oshared *sh = c->g->sh;
    if (st == MTI_OK) {
        hist_add(&sh->lat, now_ns() - c->t_sched);
        atomic_fetch_add_explicit(&sh->ok, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&sh->failed, 1, memory_order_relaxed);
    }
    atomic_store_explicit(&c->busy, 0, memory_order_release);
    atomic_fetch_sub_explicit(&sh->outstanding, 1, memory_order_relaxed);
}

static void *gen_main(void *arg)
{
    struct ogen *g = arg;
    struct oshared *sh = g->sh;
    uint64_t rng = 0x853c49e6748fea9bull ^ ((uint64_t)g->id * 0x9E3779B97F4A7C15ull);
    uint64_t start = now_ns(), end = start + (uint64_t)(sh->seconds * 1e9), t = start;
    int cursor = 0;
    while (t < end) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        double u = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
        t += (uint64_t)(-log(u) / sh->rate_per_gen * 1e9);
        if (t >= end) break;
        if (t > now_ns()) sleep_until_ns(t);
        struct octx *c = NULL;
        for (int k = 0; k < CTX_PER_GEN && !c; k++) {
            struct octx *cand = &g->ctx[(cursor + k) % CTX_PER_GEN];
            if (!atomic_load_explicit(&cand->busy, memory_order_acquire)) {
                c = cand;
                cursor = (cursor + k + 1) % CTX_PER_GEN;
            }
        }
        if (!c) {
            g->dropped++;
            continue;
        }
        c->t_sched = t;
        atomic_store_explicit(&c->busy, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&sh->outstanding, 1, memory_order_relaxed);
        if (mti_batcher_submit(sh->b, c->in, c->out, NULL, open_cb, c, NULL) != MTI_OK) {
            atomic_store_explicit(&c->busy, 0, memory_order_relaxed);
            atomic_fetch_sub_explicit(&sh->outstanding, 1, memory_order_relaxed);
            g->dropped++;
            continue;
        }
        g->sent++;
    }
    return NULL;
}

static int run_open(mti_batcher_t b, int in, int out, double rate, int n_gen, double seconds,
                    mti_bench_batcher_open *res)
{
    struct oshared *sh = calloc(1, sizeof *sh);
    struct ogen *g = calloc((size_t)n_gen, sizeof *g);
    float *bufs = malloc(sizeof(float) * (size_t)(in + out) * CTX_PER_GEN * (size_t)n_gen);
    if (!sh || !g || !bufs) {
        free(sh);
        free(g);
        free(bufs);
        return -1;
    }
    sh->b = b;
    sh->in = in;
    sh->out = out;
    sh->rate_per_gen = rate / n_gen;
    sh->seconds = seconds;
    float *p = bufs;
    for (int i = 0; i < n_gen; i++) {
        g[i].sh = sh;
        g[i].id = i;
        for (int k = 0; k < CTX_PER_GEN; k++) {
            g[i].ctx[k].g = &g[i];
            g[i].ctx[k].in = p;
            fill_input(p, (size_t)in, (uint64_t)(i * CTX_PER_GEN + k));
            p += in;
            g[i].ctx[k].out = p;
            p += out;
        }
    }
    mti_batcher_reset_stats(b);
    pthread_t t[64];
    int started = 0;
    uint64_t t0 = now_ns();
    for (; started < n_gen && started < 64; started++)
        if (pthread_create(&t[started], NULL, gen_main, &g[started]) != 0) break;
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    /* Let the tail drain (bounded), so late answers count in the percentiles. */
    uint64_t drain_end = now_ns() + 5000000000ull;
    while (atomic_load(&sh->outstanding) > 0 && now_ns() < drain_end)
        sleep_s(0.001);
    double el = (double)(now_ns() - t0) / 1e9;
    mti_batcher_stats bs;
    mti_batcher_get_stats(b, &bs);
    memset(res, 0, sizeof *res);
    res->offered_rps = rate;
    for (int i = 0; i < started; i++) {
        res->sent += g[i].sent;
        res->dropped += g[i].dropped;
    }
    res->achieved_rps = (double)atomic_load(&sh->ok) / el;
    res->p50_us = hist_pct_us(&sh->lat, 0.50);
    res->p90_us = hist_pct_us(&sh->lat, 0.90);
    res->p99_us = hist_pct_us(&sh->lat, 0.99);
    res->p999_us = hist_pct_us(&sh->lat, 0.999);
    res->mean_batch = bs.mean_batch;
    int left = atomic_load(&sh->outstanding) > 0;
    if (left) mti_batcher_stop(b); /* answers the rest before the contexts go away */
    free(g);
    free(bufs);
    free(sh);
    return left ? 1 : 0;
}

/* ---- the section -------------------------------------------------------------------------- */

void mti_bench_batcher_config_default(mti_bench_batcher_config *c)
{
    static const int clients[] = {1, 4, 16, 64, 256};
    memset(c, 0, sizeof *c);
    c->seconds = 1.0;
    c->clients = clients;
    c->n_clients = 5;
    c->open_threads = 4;
}

int mti_bench_batcher_section(mti_runtime_t rt, mti_model_t model,
                              const mti_bench_batcher_config *cfg, mti_bench_batcher_results *out)
{
    (void)rt;
    mti_bench_batcher_config defaults;
    if (!cfg) {
        mti_bench_batcher_config_default(&defaults);
        cfg = &defaults;
    }
    mti_bench_batcher_results local;
    mti_bench_batcher_results *r = out ? out : &local;
    memset(r, 0, sizeof *r);
    mti_model_info info;
    if (mti_model_get_info(model, &info) != MTI_OK || info.sequence) {
        fprintf(stderr, "bench batcher: needs a [batch, features] model\n");
        return 2;
    }
    mti_batcher_params bp;
    if (cfg->params)
        bp = *cfg->params;
    else
        mti_batcher_params_default(&bp);
    struct shared *sh = calloc(1, sizeof *sh);
    if (!sh) return 2;
    sh->model = model;
    sh->in = info.input_features;
    sh->out = info.output_features;
    int rc = 0;

    bench_out("\n### Batcher: closed loop, single-sample requests (%.1f s windows)\n\n",
              cfg->seconds);
    bench_out("| clients | direct req/s | batched req/s | mean batch | ideal samples/s (batch) | "
              "batched / ideal | batched p50 / p99 us | direct p50 / p99 us | queue p99 us | "
              "compute p99 us | launches idle/full/delay |\n");
    bench_out("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    double best = 0;
    for (int i = 0; i < cfg->n_clients && r->n_closed < MTI_BENCH_BATCHER_MAX_POINTS; i++) {
        mti_bench_batcher_closed *c = &r->closed[r->n_closed];
        memset(c, 0, sizeof *c);
        c->clients = cfg->clients[i];
        if (!cfg->skip_direct) {
            sh->mode = DIRECT;
            sh->b = NULL;
            c->direct_rps = run_closed(sh, c->clients, cfg->seconds, NULL);
            c->direct_p50_us = hist_pct_us(&sh->lat, 0.5);
            c->direct_p99_us = hist_pct_us(&sh->lat, 0.99);
        }
        if (mti_batcher_create(model, &bp, &sh->b) != MTI_OK) {
            fprintf(stderr, "bench batcher: create: %s\n", mti_last_error_message());
            rc = 2;
            break;
        }
        mti_batcher_stats bs;
        memset(&bs, 0, sizeof bs);
        sh->mode = BATCHED;
        c->batched_rps = run_closed(sh, c->clients, cfg->seconds, &bs);
        c->batched_p50_us = hist_pct_us(&sh->lat, 0.5);
        c->batched_p99_us = hist_pct_us(&sh->lat, 0.99);
        mti_batcher_destroy(sh->b);
        sh->b = NULL;
        c->mean_batch = bs.mean_batch;
        c->queue_p99_us = bs.queue_us.p99;
        c->compute_p99_us = bs.compute_us.p99;
        c->batches = bs.batches;
        c->idle_launches = bs.idle_launches;
        c->full_launches = bs.full_launches;
        c->delay_launches = bs.delay_launches;
        c->ideal_batch = (int)lround(bs.mean_batch);
        if (c->ideal_batch < 1) c->ideal_batch = 1;
        sh->mode = IDEAL;
        sh->batch = c->ideal_batch;
        c->ideal_sps = run_closed(sh, 1, cfg->seconds, NULL);
        c->of_ideal = c->ideal_sps > 0 ? c->batched_rps / c->ideal_sps : 0;
        if (c->batched_rps < 0 || c->ideal_sps < 0) rc = 2;
        if (c->batched_rps > best) best = c->batched_rps;
        bench_out(
            "| %d | %.0f | %.0f | %.1f | %.0f (%d) | %.0f%% | %.0f / %.0f | %.0f / %.0f | %.0f "
            "| %.0f | %llu/%llu/%llu |\n",
            c->clients, c->direct_rps, c->batched_rps, c->mean_batch, c->ideal_sps, c->ideal_batch,
            100 * c->of_ideal, c->batched_p50_us, c->batched_p99_us, c->direct_p50_us,
            c->direct_p99_us, c->queue_p99_us, c->compute_p99_us, c->idle_launches,
            c->full_launches, c->delay_launches);
        fflush(stdout);
        r->n_closed++;
    }
    if (rc == 0 && best > 0) {
        double rates[MTI_BENCH_BATCHER_MAX_POINTS];
        int n_rates = 0;
        if (cfg->open_rates) {
            for (int i = 0; i < cfg->n_open_rates && i < MTI_BENCH_BATCHER_MAX_POINTS; i++)
                rates[n_rates++] = cfg->open_rates[i];
        } else {
            const double frac[] = {0.10, 0.25, 0.50, 0.75, 0.90};
            for (int i = 0; i < 5; i++)
                rates[n_rates++] = frac[i] * best;
        }
        int n_gen = cfg->open_threads > 0 ? cfg->open_threads : 4;
        bench_out("\n### Batcher: open loop, Poisson arrivals (%d generator threads)\n\n", n_gen);
        bench_out("| offered req/s | achieved req/s | p50 us | p90 us | p99 us | p99.9 us | "
                  "mean batch | dropped |\n");
        bench_out("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (int i = 0; i < n_rates; i++) {
            mti_batcher_t b;
            if (mti_batcher_create(model, &bp, &b) != MTI_OK) {
                fprintf(stderr, "bench batcher: create: %s\n", mti_last_error_message());
                rc = 2;
                break;
            }
            mti_bench_batcher_open *o = &r->open[r->n_open];
            int st = run_open(b, sh->in, sh->out, rates[i], n_gen, cfg->seconds, o);
            mti_batcher_destroy(b);
            if (st < 0) {
                rc = 2;
                break;
            }
            bench_out("| %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f | %llu |\n", o->offered_rps,
                      o->achieved_rps, o->p50_us, o->p90_us, o->p99_us, o->p999_us, o->mean_batch,
                      o->dropped);
            fflush(stdout);
            r->n_open++;
        }
    }
    bench_out("\nDirect: every client thread calls mti_model_infer (batch 1) on its own stream "
              "(threads beyond the pool size wait for a slot). Batched: mti_batcher_infer. Ideal: "
              "one thread calling mti_model_infer at the batcher's mean batch size.\n");
    free(sh);
    return rc;
}
