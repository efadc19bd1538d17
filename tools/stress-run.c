/*
 * One `mtinfer stress` configuration, run in the calling process (normally a fresh child of
 * fork: see stress.c). It creates the runtime and the model(s), prepares every identity's
 * inputs and their float64 references once (mti_model_reference), starts the scenario's
 * threads behind a start barrier and checks every single output:
 *
 * - each thread (identity) has its own seeded inputs, so an answer computed from another
 *   thread's input, an earlier request's input (stale) or nothing at all (the output is filled
 *   with NaN before each request) fails the check; the first bad request is classified
 *   (cross-talk, stale, unwritten, garbage) by comparing it with every other reference;
 * - statuses: any error is counted, except the ones the scenario provokes on purpose (pool
 *   timeouts, injected faults), which must be of the expected kind;
 * - after the threads: pool slots all returned, allocator back to its baseline (no bytes
 *   allocated, cached or deferred once the models are gone), and the runtime still answers.
 *
 * - batcher scenarios (batcher, cancel) send the same per-identity inputs through a
 *   mti_batcher: every answer is checked for its status (cancelled only if the cancel call said
 *   so, timed out only with a timeout, stopped only during the stop), its output (verified on
 *   MTI_OK, untouched otherwise) and its count (a callback answer counter per request: exactly
 *   one), and the batcher's own counters must balance with what the callers saw.
 *
 * Counters live in the shared result (struct stress_result), updated as requests complete, so
 * a round that crashes still reports how far it got. No locks beyond the handoff mailboxes.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/stress.h"
#ifdef MTI_FAULT_INJECTION
#include "base/fault.h" /* test builds: the fault plan (the library reads MTI_FAULT) */
#endif

#define MAX_ENTRIES 16

/* Returns the status of a failed call (tools use the public API only: no MTI_CHECK). */
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        mti_status try_st_ = (expr);                                                               \
        if (try_st_ != MTI_OK) return try_st_;                                                     \
    } while (0)
#define INPUTS_PER_SHAPE 3
#define EXHAUST_POOL     4
#define EXHAUST_WAIT_MS  1
#define EXHAUST_HOLD_US  300
#define CHURN_REQUESTS   4
#define MAX_SAMPLES      4096

static const int mixed_batches[] = {1, 2, 3, 5, 8, 16};

/* One input and its reference output. */
struct entry {
    int model; /* 0 or 1 */
    int batch, seq;
    size_t in_n, out_n;
    float *in;
    double *ref;
};

/* The inputs of one identity (a thread, or a churn slot). */
struct dataset {
    int n;
    struct entry e[MAX_ENTRIES];
};

struct run {
    const struct stress_opts *o;
    const struct stress_config *c;
    struct stress_result *r;
    mti_runtime_t rt;
    mti_model_t model[2];
    mti_model_info info[2];
    int seq; /* 0 for feature models */
    int n_ids;
    struct dataset *ds;
    size_t max_out;
    double deadline; /* monotonic seconds; 0: count requests */
    pthread_barrier_t start;
    int use_barrier;
    _Atomic int stop_sampler;
    mti_batcher_t batcher; /* batcher, cancel */
    /* cancel: how requests were answered (see stress-batch below) */
    _Atomic uint64_t n_ok, n_cancelled, n_timed_out, n_stopped, cancel_ok, cancel_busy;
    _Atomic uint64_t stop_progress;
    int stop_phase; /* cancel: MTI_ERR_STOPPED is an allowed answer (set before its threads) */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

const char *stress_scenario_name(enum stress_scenario s)
{
    static const char *const names[SC_COUNT] = {"threads",    "churn",   "exhaust", "mixed",
                                                "two-models", "handoff", "faults",  "batcher",
                                                "cancel",     "unsafe"};
    return s < SC_COUNT ? names[s] : "?";
}

/* ---- verification ------------------------------------------------------------------------ */

static int close_enough(const struct run *x, const float *out, const double *ref, size_t n,
                        mti_error_stats *es)
{
    mti_error_stats_compute(out, ref, n, es);
    return es->nonfinite == 0 && es->max_abs_rel <= x->o->tol && es->rel_l2 <= x->o->tol;
}

/* What a wrong output looks like: another identity's answer, an earlier one of ours, or none. */
static void classify(const struct run *x, int id, const struct entry *want, const float *out,
                     char *buf, size_t size)
{
    mti_error_stats es;
    size_t nan = 0;
    for (size_t i = 0; i < want->out_n; i++)
        nan += isnan(out[i]) != 0;
    if (nan == want->out_n) {
        snprintf(buf, size, "unwritten (every output still holds the NaN sentinel)");
        return;
    }
    for (int j = 0; j < x->n_ids; j++) {
        const struct dataset *d = &x->ds[j];
        for (int k = 0; k < d->n; k++) {
            const struct entry *e = &d->e[k];
            if (e == want || e->out_n != want->out_n || !e->ref) continue;
            if (close_enough(x, out, e->ref, e->out_n, &es)) {
                snprintf(buf, size, "%s: equals the answer to %s %d's input %d",
                         j == id ? "stale" : "cross-talk", j == id ? "its own" : "identity", j, k);
                return;
            }
        }
    }
    snprintf(buf, size, "garbage (%zu of %zu outputs NaN)", nan, want->out_n);
}

static void note_first_bad(struct run *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note_first_bad(struct run *x, const char *fmt, ...)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&x->r->first_bad_claimed, &expected, 1)) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->r->first_bad, sizeof x->r->first_bad, fmt, ap);
    va_end(ap);
}

/* Checks one output; counts it. Returns 1 when it was correct. */
static int verify(struct run *x, int id, int req, const struct entry *e, const float *out)
{
    atomic_fetch_add(&x->r->requests, 1);
    mti_error_stats es;
    if (close_enough(x, out, e->ref, e->out_n, &es)) return 1;
    atomic_fetch_add(&x->r->mismatches, 1);
    if (!atomic_load(&x->r->first_bad_claimed)) {
        char what[160];
        classify(x, id, e, out, what, sizeof what);
        note_first_bad(x,
                       "identity %d request %d (model %d batch %d): max_abs_rel %.3g rel_l2 %.3g "
                       "nonfinite %zu: %s",
                       id, req, e->model, e->batch, es.max_abs_rel, es.rel_l2, es.nonfinite, what);
    }
    return 0;
}

/* An error status: expected ones are counted apart; 1 when expected. */
static int on_error(struct run *x, int id, int req, mti_status st, const char *what)
{
    int expected = 0;
    if (x->c->scenario == SC_EXHAUST && st == MTI_ERR_TIMEOUT) expected = 1;
    if (x->c->scenario == SC_FAULTS && (st == MTI_ERR_OUT_OF_MEMORY || st == MTI_ERR_DEVICE))
        expected = 1;
    if (expected) {
        atomic_fetch_add(&x->r->expected_errors, 1);
        return 1;
    }
    atomic_fetch_add(&x->r->errors, 1);
    note_first_bad(x, "identity %d request %d: %s -> %s (%s)", id, req, what, mti_status_string(st),
                   mti_last_error_message());
    return 0;
}

static int keep_going(const struct run *x, int done, int quota)
{
    if (x->deadline > 0) return now_s() < x->deadline;
    return done < quota;
}

/* ---- datasets ---------------------------------------------------------------------------- */

static mti_status entry_make(struct run *x, struct entry *e, int model, int batch, uint64_t seed,
                             int chain)
{
    const mti_model_info *mi = &x->info[model];
    size_t rows = (size_t)batch * (size_t)(x->seq ? x->seq : 1);
    e->model = model;
    e->batch = batch;
    e->seq = x->seq;
    e->in_n = rows * (size_t)mi->input_features;
    e->out_n = rows * (size_t)mi->output_features;
    e->in = malloc(e->in_n * sizeof(float));
    e->ref = malloc(e->out_n * sizeof(double));
    if (!e->in || !e->ref) return MTI_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < e->in_n; i++)
        e->in[i] = (float)((splitmix(&seed) >> 40) * (1.0 / (1ull << 24)) * 2.0 - 1.0);
    mti_status st =
        mti_model_reference(x->model[model], batch, x->seq, e->in, e->in_n, e->ref, e->out_n);
    if (st != MTI_OK || !chain) return st;
    /* handoff: the consumer runs the model again on the producer's output */
    float *mid = malloc(e->out_n * sizeof(float));
    if (!mid) return MTI_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < e->out_n; i++)
        mid[i] = (float)e->ref[i];
    st = mti_model_reference(x->model[model], batch, x->seq, mid, e->out_n, e->ref, e->out_n);
    free(mid);
    return st;
}

static mti_status dataset_make(struct run *x, int id)
{
    struct dataset *d = &x->ds[id];
    uint64_t base = x->o->seed * 0x100000001B3ull ^ ((uint64_t)x->c->scenario << 48) ^
                    ((uint64_t)(id + 1) << 20);
    d->n = 0;
    int chain = x->c->scenario == SC_HANDOFF;
    if (x->c->scenario == SC_MIXED) {
        for (size_t b = 0; b < sizeof mixed_batches / sizeof *mixed_batches; b++)
            for (int k = 0; k < 2; k++)
                TRY(entry_make(x, &d->e[d->n++], 0, mixed_batches[b], base + b * 16 + k, 0));
    } else if (x->c->scenario == SC_TWO_MODELS) {
        for (int k = 0; k < 2 * INPUTS_PER_SHAPE; k++)
            TRY(entry_make(x, &d->e[d->n++], k % 2, 1, base + k, 0));
    } else {
        for (int k = 0; k < INPUTS_PER_SHAPE; k++)
            TRY(entry_make(x, &d->e[d->n++], 0, 1, base + k, chain));
    }
    return MTI_OK;
}

struct prep_arg {
    struct run *x;
    int first, step;
    mti_status st;
};

static void *prep_main(void *p)
{
    struct prep_arg *a = p;
    a->st = MTI_OK;
    for (int id = a->first; id < a->x->n_ids && a->st == MTI_OK; id += a->step)
        a->st = dataset_make(a->x, id);
    return NULL;
}

/* Every identity's inputs and references, computed in parallel before the timed part. */
static mti_status datasets_make(struct run *x)
{
    x->ds = calloc((size_t)x->n_ids, sizeof *x->ds);
    if (!x->ds) return MTI_ERR_OUT_OF_MEMORY;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int n = (int)(ncpu < 1 ? 1 : ncpu > 16 ? 16 : ncpu);
    if (n > x->n_ids) n = x->n_ids;
    struct prep_arg args[16];
    pthread_t th[16];
    for (int i = 0; i < n; i++) {
        args[i] = (struct prep_arg){x, i, n, MTI_OK};
        if (pthread_create(&th[i], NULL, prep_main, &args[i]) != 0) return MTI_ERR_OUT_OF_MEMORY;
    }
    mti_status st = MTI_OK;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        if (args[i].st != MTI_OK) st = args[i].st;
    }
    for (int id = 0; id < x->n_ids; id++)
        for (int k = 0; k < x->ds[id].n; k++)
            if (x->ds[id].e[k].out_n > x->max_out) x->max_out = x->ds[id].e[k].out_n;
    return st;
}

static void datasets_free(struct run *x)
{
    if (!x->ds) return;
    for (int id = 0; id < x->n_ids; id++)
        for (int k = 0; k < x->ds[id].n; k++) {
            free(x->ds[id].e[k].in);
            free(x->ds[id].e[k].ref);
        }
    free(x->ds);
    x->ds = NULL;
}

/* ---- request threads --------------------------------------------------------------------- */

struct worker {
    struct run *x;
    int id;    /* identity: which dataset */
    int quota; /* requests when not timed */
    pthread_t th;
};

static void fill_nan(float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = NAN;
}

/* Gives the thread's slot back early (exhaust: others waiting for one). */
static void release_slot(struct run *x)
{
    mti_stream_t s;
    if (mti_stream_get_current(x->rt, &s) == MTI_OK) mti_stream_release(s);
}

static void *request_main(void *p)
{
    struct worker *w = p;
    struct run *x = w->x;
    const struct dataset *d = &x->ds[w->id];
    float *out = malloc(x->max_out * sizeof(float));
    if (x->use_barrier) pthread_barrier_wait(&x->start);
    if (!out) {
        on_error(x, w->id, 0, MTI_ERR_OUT_OF_MEMORY, "output buffer");
        return NULL;
    }
    int done = 0, attempt = 0;
    while (keep_going(x, done, w->quota)) {
        const struct entry *e = &d->e[attempt % d->n];
        fill_nan(out, e->out_n);
        mti_status st = x->batcher ? mti_batcher_infer(x->batcher, e->in, out, NULL)
                                   : mti_model_infer(x->model[e->model], e->batch, e->seq, e->in,
                                                     e->in_n, out, e->out_n);
        attempt++;
        if (st != MTI_OK) {
            if (!on_error(x, w->id, done, st, x->batcher ? "mti_batcher_infer" : "mti_model_infer"))
                break;
            if (st == MTI_ERR_TIMEOUT) sleep_us(200);
            continue;
        }
        verify(x, w->id, done, e, out);
        done++;
        if (x->c->scenario == SC_EXHAUST) {
            sleep_us(EXHAUST_HOLD_US); /* a slow client holding its slot: others must wait */
            if (done % 4 == 0) release_slot(x);
        }
    }
    free(out);
    return NULL;
}

static mti_status run_workers(struct run *x, int n, int id0, int quota)
{
    struct worker *w = calloc((size_t)n, sizeof *w);
    if (!w) return MTI_ERR_OUT_OF_MEMORY;
    x->use_barrier = n > 1;
    if (x->use_barrier) pthread_barrier_init(&x->start, NULL, (unsigned)n);
    mti_status st = MTI_OK;
    int started = 0;
    for (int i = 0; i < n; i++) {
        w[i] = (struct worker){x, (id0 + i) % x->n_ids, quota, 0};
        if (pthread_create(&w[i].th, NULL, request_main, &w[i]) != 0) {
            snprintf(x->r->note, sizeof x->r->note, "pthread_create failed at thread %d", i);
            st = MTI_ERR_OUT_OF_MEMORY;
            break;
        }
        started++;
    }
    if (started < n && x->use_barrier) {
        /* cannot happen without a thread limit; the barrier would hang: give up on the process */
        fprintf(stderr, "mtinfer stress: %s\n", x->r->note);
        exit(STRESS_EXIT_SETUP);
    }
    for (int i = 0; i < started; i++)
        pthread_join(w[i].th, NULL);
    if (x->use_barrier) pthread_barrier_destroy(&x->start);
    free(w);
    return st;
}

/* Churn: waves of short-lived threads; every identity in a wave is distinct. */
static mti_status run_churn(struct run *x)
{
    int total = x->c->threads, wave = x->n_ids;
    for (int first = 0; x->deadline > 0 ? now_s() < x->deadline : first < total; first += wave) {
        int n = x->deadline > 0 ? wave : (total - first < wave ? total - first : wave);
        TRY(run_workers(x, n, 0, CHURN_REQUESTS));
    }
    return MTI_OK;
}

/* ---- cross-stream handoff ---------------------------------------------------------------- */

#define MAILBOX_DEPTH 2

struct handoff_item {
    mti_buffer_t mid;
    const struct entry *e;
    int req;
};

struct mailbox {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct handoff_item items[MAILBOX_DEPTH];
    mti_event_t ev[MAILBOX_DEPTH];
    int head, count, done;
};

struct pair {
    struct run *x;
    int id;
    struct mailbox mb;
    pthread_t producer, consumer;
};

static void *producer_main(void *p)
{
    struct pair *pr = p;
    struct run *x = pr->x;
    const struct dataset *d = &x->ds[pr->id];
    pthread_barrier_wait(&x->start);
    mti_stream_t s = NULL;
    mti_status st = mti_stream_get_current(x->rt, &s);
    int req = 0;
    if (st != MTI_OK) on_error(x, pr->id, 0, st, "producer stream");
    while (s && keep_going(x, req, x->o->requests)) {
        const struct entry *e = &d->e[req % d->n];
        mti_buffer_t in = NULL, mid = NULL;
        st = mti_buffer_alloc(s, e->in_n * sizeof(float), &in);
        if (st == MTI_OK) st = mti_buffer_alloc(s, e->out_n * sizeof(float), &mid);
        if (st == MTI_OK)
            st = mti_memcpy_async(s, mti_buffer_ptr(in), e->in, e->in_n * sizeof(float),
                                  MTI_COPY_HOST_TO_DEVICE);
        if (st == MTI_OK)
            st = mti_model_infer_async(x->model[0], s, e->batch, e->seq, mti_buffer_ptr(in),
                                       mti_buffer_ptr(mid));
        mti_buffer_free(in); /* stream-ordered: reused on s only after the forward */
        pthread_mutex_lock(&pr->mb.mu);
        while (pr->mb.count == MAILBOX_DEPTH)
            pthread_cond_wait(&pr->mb.cv, &pr->mb.mu);
        int slot = (pr->mb.head + pr->mb.count) % MAILBOX_DEPTH;
        pthread_mutex_unlock(&pr->mb.mu);
        if (st == MTI_OK) st = mti_event_record(pr->mb.ev[slot], s);
        if (st != MTI_OK) {
            mti_buffer_free(mid);
            on_error(x, pr->id, req, st, "producer");
            break;
        }
        pthread_mutex_lock(&pr->mb.mu);
        pr->mb.items[slot] = (struct handoff_item){mid, e, req};
        pr->mb.count++;
        pthread_cond_broadcast(&pr->mb.cv);
        pthread_mutex_unlock(&pr->mb.mu);
        req++;
    }
    pthread_mutex_lock(&pr->mb.mu);
    pr->mb.done = 1;
    pthread_cond_broadcast(&pr->mb.cv);
    pthread_mutex_unlock(&pr->mb.mu);
    return NULL;
}

static void *consumer_main(void *p)
{
    struct pair *pr = p;
    struct run *x = pr->x;
    pthread_barrier_wait(&x->start);
    mti_stream_t s = NULL;
    mti_buffer_t out_dev = NULL;
    float *out = malloc(x->max_out * sizeof(float));
    mti_status st = out ? mti_stream_get_current(x->rt, &s) : MTI_ERR_OUT_OF_MEMORY;
    if (st == MTI_OK) st = mti_buffer_alloc(s, x->max_out * sizeof(float), &out_dev);
    int broken = st != MTI_OK;
    if (broken) on_error(x, pr->id, 0, st, "consumer setup");
    for (;;) {
        pthread_mutex_lock(&pr->mb.mu);
        while (pr->mb.count == 0 && !pr->mb.done)
            pthread_cond_wait(&pr->mb.cv, &pr->mb.mu);
        if (pr->mb.count == 0) {
            pthread_mutex_unlock(&pr->mb.mu);
            break;
        }
        int slot = pr->mb.head;
        struct handoff_item it = pr->mb.items[slot];
        pthread_mutex_unlock(&pr->mb.mu);
        st = broken ? MTI_ERR_INTERNAL : mti_stream_wait_event(s, pr->mb.ev[slot]);
        /* The wait captured the event's state: the producer may re-record it now. */
        pthread_mutex_lock(&pr->mb.mu);
        pr->mb.head = (pr->mb.head + 1) % MAILBOX_DEPTH;
        pr->mb.count--;
        pthread_cond_broadcast(&pr->mb.cv);
        pthread_mutex_unlock(&pr->mb.mu);
        const struct entry *e = it.e;
        if (st == MTI_OK) st = mti_buffer_record_stream(it.mid, s);
        if (st == MTI_OK) {
            fill_nan(out, e->out_n);
            st = mti_model_infer_async(x->model[0], s, e->batch, e->seq, mti_buffer_ptr(it.mid),
                                       mti_buffer_ptr(out_dev));
        }
        /* Freed while the consumer's work may still read it: reuse waits for an event. */
        mti_buffer_free(it.mid);
        if (st == MTI_OK)
            st = mti_memcpy_async(s, out, mti_buffer_ptr(out_dev), e->out_n * sizeof(float),
                                  MTI_COPY_DEVICE_TO_HOST);
        if (st == MTI_OK) st = mti_stream_synchronize(s);
        if (st != MTI_OK) {
            if (!broken) {
                on_error(x, pr->id, it.req, st, "consumer");
                mti_stream_synchronize(s); /* drop the stream's error, go on */
            }
            continue;
        }
        verify(x, pr->id, it.req, e, out);
    }
    mti_buffer_free(out_dev);
    free(out);
    return NULL;
}

static mti_status run_handoff(struct run *x)
{
    if (x->info[0].input_features != x->info[0].output_features) {
        snprintf(x->r->note, sizeof x->r->note,
                 "handoff needs a model whose output feeds its input (%d -> %d)",
                 x->info[0].input_features, x->info[0].output_features);
        x->r->skipped = 1;
        return MTI_OK;
    }
    int n = x->n_ids;
    struct pair *pr = calloc((size_t)n, sizeof *pr);
    if (!pr) return MTI_ERR_OUT_OF_MEMORY;
    mti_status st = MTI_OK;
    for (int i = 0; i < n && st == MTI_OK; i++) {
        pr[i].x = x;
        pr[i].id = i;
        pthread_mutex_init(&pr[i].mb.mu, NULL);
        pthread_cond_init(&pr[i].mb.cv, NULL);
        for (int k = 0; k < MAILBOX_DEPTH && st == MTI_OK; k++)
            st = mti_event_create(x->rt, 0, &pr[i].mb.ev[k]);
    }
    if (st == MTI_OK) {
        pthread_barrier_init(&x->start, NULL, (unsigned)(2 * n));
        for (int i = 0; i < n; i++) {
            if (pthread_create(&pr[i].producer, NULL, producer_main, &pr[i]) != 0 ||
                pthread_create(&pr[i].consumer, NULL, consumer_main, &pr[i]) != 0) {
                fprintf(stderr, "mtinfer stress: pthread_create failed\n");
                exit(STRESS_EXIT_SETUP);
            }
        }
        for (int i = 0; i < n; i++) {
            pthread_join(pr[i].producer, NULL);
            pthread_join(pr[i].consumer, NULL);
        }
        pthread_barrier_destroy(&x->start);
    }
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < MAILBOX_DEPTH; k++)
            mti_event_destroy(pr[i].mb.ev[k]);
        pthread_mutex_destroy(&pr[i].mb.mu);
        pthread_cond_destroy(&pr[i].mb.cv);
    }
    free(pr);
    return st;
}

/* ---- the batcher: plain, cancellation, request timeouts, stop while busy ------------------ */

#define CANCEL_WINDOW     8        /* requests a cancel thread has in flight at once */
#define CANCEL_TIMEOUT_US 100      /* the short per-request timeout */
#define CANCEL_DELAY_US   2000     /* max_queue_delay_us: forming batches wait, cancels land */
#define ANSWER_WAIT_US    10000000 /* an answer later than this is "never answered": FAIL */
#define ANSWER_BLOCK      64
#define STOP_AFTER        4 /* stop once each stop thread has had about this many answers */

enum cancel_kind { CK_PLAIN, CK_CANCEL, CK_TIMEOUT, CK_HIGH, CK_KINDS };

/* One submitted request's answers (its callback counts them). Kept until the batcher has
 * stopped, so a late second answer still finds it and is caught. */
struct answer {
    _Atomic int count;
    _Atomic int status;
};

struct answer_block {
    struct answer_block *next;
    int n;
    struct answer a[ANSWER_BLOCK];
};

struct bthread {
    struct run *x;
    int id, quota;
    struct answer_block *blocks;
    int abandoned; /* a request was never answered: its output buffer must outlive us */
    pthread_t th;
};

static void on_answer(void *user, mti_status st)
{
    struct answer *a = user;
    atomic_store(&a->status, (int)st); /* seq_cst: a reader that sees the count sees this */
    atomic_fetch_add(&a->count, 1);
}

static struct answer *answer_new(struct bthread *t)
{
    if (!t->blocks || t->blocks->n == ANSWER_BLOCK) {
        struct answer_block *b = calloc(1, sizeof *b);
        if (!b) return NULL;
        b->next = t->blocks;
        t->blocks = b;
    }
    return &t->blocks->a[t->blocks->n++];
}

static void bad_request(struct run *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad_request(struct run *x, const char *fmt, ...)
{
    atomic_fetch_add(&x->r->errors, 1);
    if (atomic_load(&x->r->first_bad_claimed)) return;
    char buf[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    note_first_bad(x, "%s", buf);
}

static int all_nan(const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isnan(out[i])) return 0;
    return 1;
}

/* Checks one answered request: the status its kind allows, the output (verified on MTI_OK,
 * untouched otherwise) and, for handles, that the callback ran exactly once with it. */
static void check_answer(struct run *x, int id, int req, const struct entry *e, const float *out,
                         enum cancel_kind kind, mti_status cancel, mti_status st,
                         const struct answer *a)
{
    if (a) {
        int n = atomic_load(&a->count);
        if (n != 1 || atomic_load(&a->status) != (int)st) {
            bad_request(x, "identity %d request %d: answered %d times (wait %s, callback %s)", id,
                        req, n, mti_status_string(st),
                        mti_status_string((mti_status)atomic_load(&a->status)));
            return;
        }
    }
    if (cancel == MTI_OK && st != MTI_ERR_CANCELLED) {
        bad_request(x, "identity %d request %d: cancel returned MTI_OK, answer %s", id, req,
                    mti_status_string(st));
        return;
    }
    if (st == MTI_OK) {
        atomic_fetch_add(&x->n_ok, 1);
        verify(x, id, req, e, out);
        return;
    }
    int allowed = (st == MTI_ERR_CANCELLED && kind == CK_CANCEL && cancel == MTI_OK) ||
                  (st == MTI_ERR_TIMEOUT && kind == CK_TIMEOUT) ||
                  (st == MTI_ERR_STOPPED && x->stop_phase);
    if (!allowed) {
        bad_request(x, "identity %d request %d (kind %d): unexpected answer %s (%s)", id, req,
                    (int)kind, mti_status_string(st), mti_last_error_message());
        return;
    }
    atomic_fetch_add(&x->r->expected_errors, 1);
    atomic_fetch_add(st == MTI_ERR_CANCELLED ? &x->n_cancelled
                     : st == MTI_ERR_TIMEOUT ? &x->n_timed_out
                                             : &x->n_stopped,
                     1);
    if (!all_nan(out, e->out_n))
        bad_request(x, "identity %d request %d: answered %s but its output was written", id, req,
                    mti_status_string(st));
}

/* Waits for a handle's answer (bounded), checks it, releases the handle. 0: never answered. */
static int finish(struct bthread *t, int req, mti_batch_request_t h, const struct entry *e,
                  const float *out, enum cancel_kind kind, mti_status cancel,
                  const struct answer *a)
{
    mti_status st = mti_batch_request_wait(h, ANSWER_WAIT_US);
    if (st == MTI_ERR_NOT_READY) {
        bad_request(t->x, "identity %d request %d: never answered (%d s)", t->id, req,
                    ANSWER_WAIT_US / 1000000);
        t->abandoned = 1;
        return 0;
    }
    check_answer(t->x, t->id, req, e, out, kind, cancel, st, a);
    mti_batch_request_release(h);
    return 1;
}

/* Windows of CANCEL_WINDOW async requests of mixed kinds (cancelled right after submit, short
 * timeout, high priority, plain) plus one blocking request with the short timeout each. */
static void *cancel_main(void *p)
{
    struct bthread *t = p;
    struct run *x = t->x;
    const struct dataset *d = &x->ds[t->id];
    uint64_t rng = x->o->seed ^ ((uint64_t)(t->id + 1) << 32);
    float *out[CANCEL_WINDOW + 1] = {0};
    for (int i = 0; i <= CANCEL_WINDOW; i++)
        out[i] = malloc(x->max_out * sizeof(float));
    pthread_barrier_wait(&x->start);
    for (int i = 0; i <= CANCEL_WINDOW; i++)
        if (!out[i]) {
            on_error(x, t->id, 0, MTI_ERR_OUT_OF_MEMORY, "output buffers");
            t->abandoned = 1; /* (frees nothing: simpler, and this does not happen) */
            return NULL;
        }
    int done = 0;
    while (!t->abandoned && keep_going(x, done, t->quota)) {
        mti_batch_request_t h[CANCEL_WINDOW] = {0};
        struct answer *a[CANCEL_WINDOW] = {0};
        const struct entry *e[CANCEL_WINDOW + 1];
        enum cancel_kind kind[CANCEL_WINDOW];
        mti_status cancel[CANCEL_WINDOW];
        for (int i = 0; i < CANCEL_WINDOW; i++) {
            e[i] = &d->e[(done + i) % d->n];
            kind[i] = (enum cancel_kind)(splitmix(&rng) % CK_KINDS);
            cancel[i] = MTI_ERR_BUSY; /* not cancelled */
            fill_nan(out[i], e[i]->out_n);
            mti_batch_opts opts = {kind[i] == CK_HIGH ? MTI_BATCH_PRIORITY_HIGH
                                                      : MTI_BATCH_PRIORITY_NORMAL,
                                   kind[i] == CK_TIMEOUT ? CANCEL_TIMEOUT_US : -1};
            if (!(a[i] = answer_new(t))) {
                on_error(x, t->id, done + i, MTI_ERR_OUT_OF_MEMORY, "answer record");
                break;
            }
            mti_status st =
                mti_batcher_submit(x->batcher, e[i]->in, out[i], &opts, on_answer, a[i], &h[i]);
            if (st != MTI_OK) {
                on_error(x, t->id, done + i, st, "mti_batcher_submit");
                h[i] = NULL;
            }
        }
        for (int i = 0; i < CANCEL_WINDOW; i++) {
            if (!h[i] || kind[i] != CK_CANCEL) continue;
            cancel[i] = mti_batch_request_cancel(h[i]);
            if (cancel[i] == MTI_OK)
                atomic_fetch_add(&x->cancel_ok, 1);
            else if (cancel[i] == MTI_ERR_BUSY)
                atomic_fetch_add(&x->cancel_busy, 1);
            else
                on_error(x, t->id, done + i, cancel[i], "mti_batch_request_cancel");
        }
        /* a blocking request with the short timeout while ours are pending */
        e[CANCEL_WINDOW] = &d->e[(done + CANCEL_WINDOW) % d->n];
        fill_nan(out[CANCEL_WINDOW], e[CANCEL_WINDOW]->out_n);
        mti_batch_opts bopts = {MTI_BATCH_PRIORITY_NORMAL, CANCEL_TIMEOUT_US};
        mti_status st =
            mti_batcher_infer(x->batcher, e[CANCEL_WINDOW]->in, out[CANCEL_WINDOW], &bopts);
        check_answer(x, t->id, done + CANCEL_WINDOW, e[CANCEL_WINDOW], out[CANCEL_WINDOW],
                     CK_TIMEOUT, MTI_ERR_BUSY, st, NULL);
        for (int i = 0; i < CANCEL_WINDOW; i++)
            if (h[i] && !finish(t, done + i, h[i], e[i], out[i], kind[i], cancel[i], a[i])) break;
        done += CANCEL_WINDOW + 1;
    }
    if (!t->abandoned)
        for (int i = 0; i <= CANCEL_WINDOW; i++)
            free(out[i]);
    return NULL;
}

/* Stop while busy: blocking and async requests until the batcher says MTI_ERR_STOPPED. Every
 * call returns (its answer or MTI_ERR_STOPPED); none may block past the stop. */
static void *stopper_main(void *p)
{
    struct bthread *t = p;
    struct run *x = t->x;
    const struct dataset *d = &x->ds[t->id];
    float *out = malloc(x->max_out * sizeof(float));
    pthread_barrier_wait(&x->start);
    if (!out) {
        on_error(x, t->id, 0, MTI_ERR_OUT_OF_MEMORY, "output buffer");
        return NULL;
    }
    for (int req = 0; !t->abandoned; req++) {
        const struct entry *e = &d->e[req % d->n];
        fill_nan(out, e->out_n);
        mti_status st;
        if (req % 2 == 0) {
            st = mti_batcher_infer(x->batcher, e->in, out, NULL);
            check_answer(x, t->id, req, e, out, CK_PLAIN, MTI_ERR_BUSY, st, NULL);
        } else {
            struct answer *a = answer_new(t);
            mti_batch_request_t h = NULL;
            st = a ? mti_batcher_submit(x->batcher, e->in, out, NULL, on_answer, a, &h)
                   : MTI_ERR_OUT_OF_MEMORY;
            if (st == MTI_OK && !finish(t, req, h, e, out, CK_PLAIN, MTI_ERR_BUSY, a)) break;
            if (st != MTI_OK && st != MTI_ERR_STOPPED) on_error(x, t->id, req, st, "submit");
        }
        atomic_fetch_add(&x->stop_progress, 1);
        if (st != MTI_OK) break; /* MTI_ERR_STOPPED: done; anything else was counted */
    }
    if (!t->abandoned) free(out);
    return NULL;
}

static mti_status run_bthreads(struct run *x, struct bthread *t, int n, void *(*fn)(void *))
{
    pthread_barrier_init(&x->start, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i].th, NULL, fn, &t[i]) != 0) {
            fprintf(stderr, "mtinfer stress: pthread_create failed\n");
            exit(STRESS_EXIT_SETUP); /* the barrier would hang */
        }
    pthread_barrier_wait(&x->start);
    return MTI_OK;
}

static void join_bthreads(struct run *x, struct bthread *t, int n)
{
    for (int i = 0; i < n; i++)
        pthread_join(t[i].th, NULL);
    pthread_barrier_destroy(&x->start);
}

/* After stop: every handle's request answered exactly once, the batcher's books balance. */
static void check_books(struct run *x, struct bthread *t, int n, double stop_ms)
{
    for (int i = 0; i < n; i++)
        for (struct answer_block *b = t[i].blocks; b; b = b->next)
            for (int k = 0; k < b->n; k++) {
                /* 0 only where the submit was refused (MTI_ERR_STOPPED, or counted as an error);
                 * a record's single answer was checked when its wait returned */
                int c = atomic_load(&b->a[k].count);
                if (c > 1)
                    bad_request(x, "identity %d: a request was answered %d times", t[i].id, c);
            }
    mti_batcher_stats bs;
    if (mti_batcher_get_stats(x->batcher, &bs) != MTI_OK) return;
    uint64_t answered = bs.completed + bs.failed + bs.timeouts + bs.cancelled + bs.stopped;
    if (answered != bs.requests)
        bad_request(x, "batcher books: %llu accepted, %llu answered",
                    (unsigned long long)bs.requests, (unsigned long long)answered);
    if (x->c->scenario == SC_BATCHER && bs.completed != atomic_load(&x->r->requests))
        bad_request(x, "batcher counted %llu completed, callers verified %llu",
                    (unsigned long long)bs.completed,
                    (unsigned long long)atomic_load(&x->r->requests));
    if (x->c->scenario == SC_CANCEL &&
        (bs.completed != atomic_load(&x->n_ok) || bs.cancelled != atomic_load(&x->n_cancelled) ||
         bs.timeouts != atomic_load(&x->n_timed_out)))
        bad_request(x,
                    "batcher counted ok %llu cancelled %llu timeouts %llu; callers saw %llu, "
                    "%llu, %llu",
                    (unsigned long long)bs.completed, (unsigned long long)bs.cancelled,
                    (unsigned long long)bs.timeouts, (unsigned long long)atomic_load(&x->n_ok),
                    (unsigned long long)atomic_load(&x->n_cancelled),
                    (unsigned long long)atomic_load(&x->n_timed_out));
    if (x->c->scenario == SC_CANCEL)
        snprintf(x->r->note, sizeof x->r->note,
                 "answered ok %llu, cancelled %llu, timed out %llu, stopped %llu; cancel calls ok "
                 "%llu busy %llu; %llu batches (mean %.1f); stop took %.1f ms",
                 (unsigned long long)atomic_load(&x->n_ok),
                 (unsigned long long)atomic_load(&x->n_cancelled),
                 (unsigned long long)atomic_load(&x->n_timed_out),
                 (unsigned long long)atomic_load(&x->n_stopped),
                 (unsigned long long)atomic_load(&x->cancel_ok),
                 (unsigned long long)atomic_load(&x->cancel_busy), (unsigned long long)bs.batches,
                 bs.mean_batch, stop_ms);
    else
        snprintf(x->r->note, sizeof x->r->note, "%llu requests in %llu batches (mean %.1f)",
                 (unsigned long long)bs.requests, (unsigned long long)bs.batches, bs.mean_batch);
}

static void free_bthreads(struct bthread *t, int n)
{
    for (int i = 0; i < n; i++)
        while (t[i].blocks) {
            struct answer_block *b = t[i].blocks;
            t[i].blocks = b->next;
            free(b);
        }
    free(t);
}

/* batcher: run_workers through mti_batcher_infer. cancel: the cancel/timeout phase, then the
 * stop-while-busy phase. The batcher is destroyed before the run's checks (it holds slots). */
static mti_status run_batcher(struct run *x)
{
    mti_batcher_params bp;
    mti_batcher_params_default(&bp);
    bp.seq = x->seq;
    if (x->c->scenario == SC_CANCEL) bp.max_queue_delay_us = CANCEL_DELAY_US;
    TRY(mti_batcher_create(x->model[0], &bp, &x->batcher));
    mti_batcher_reset_stats(x->batcher); /* warm-up forwards are not requests */
    int n = x->n_ids;
    struct bthread *t = calloc((size_t)n, sizeof *t);
    mti_status st = t ? MTI_OK : MTI_ERR_OUT_OF_MEMORY;
    double stop_ms = 0;
    for (int i = 0; i < n && t; i++)
        t[i] = (struct bthread){.x = x, .id = i, .quota = x->o->requests};
    if (st == MTI_OK && x->c->scenario == SC_BATCHER) {
        st = run_workers(x, n, 0, x->o->requests);
    } else if (st == MTI_OK) {
        run_bthreads(x, t, n, cancel_main);
        join_bthreads(x, t, n);
        /* stop while busy: the same threads again, until stop answers them */
        x->stop_phase = 1;
        run_bthreads(x, t, n, stopper_main);
        double t0 = now_s();
        while (atomic_load(&x->stop_progress) < (uint64_t)(n * STOP_AFTER) && now_s() - t0 < 5)
            sleep_us(500);
        t0 = now_s();
        mti_batcher_stop(x->batcher);
        stop_ms = (now_s() - t0) * 1e3;
        join_bthreads(x, t, n);
    }
    if (st == MTI_OK) check_books(x, t, n, stop_ms);
    int abandoned = 0;
    for (int i = 0; i < n && t; i++)
        abandoned |= t[i].abandoned;
    if (abandoned) {
        /* a request never answered still owns its caller's output buffer: do not free under
         * it; the round is a FAIL already */
        fprintf(stderr, "mtinfer stress: %s: requests never answered\n", x->c->name);
        return st;
    }
    mti_batcher_destroy(x->batcher);
    x->batcher = NULL;
    if (t) free_bthreads(t, n);
    return st;
}

/* ---- soak sampling ------------------------------------------------------------------------ */

struct sample {
    double t, rss_mib, dev_mib;
};

static double rss_mib(void)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (fp) {
        if (fscanf(fp, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(fp);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

static double dev_mib(mti_runtime_t rt)
{
    mti_alloc_stats a;
    if (mti_runtime_alloc_stats(rt, &a) != MTI_OK) return 0;
    return (double)(a.allocated + a.cached) / (1024.0 * 1024.0);
}

/* Least-squares slope (per second) over the samples after the first fifth (warm-up). */
static double slope(const struct sample *s, int n, int which)
{
    int first = n / 5;
    double st = 0, sv = 0, stt = 0, stv = 0, m = n - first;
    if (m < 2) return 0;
    for (int i = first; i < n; i++) {
        double v = which ? s[i].dev_mib : s[i].rss_mib;
        st += s[i].t;
        sv += v;
        stt += s[i].t * s[i].t;
        stv += s[i].t * v;
    }
    double den = m * stt - st * st;
    return den > 0 ? (m * stv - st * sv) / den : 0;
}

struct sampler {
    struct run *x;
    double t0;
    struct sample s[MAX_SAMPLES];
    int n;
    pthread_t th;
};

static void *sampler_main(void *p)
{
    struct sampler *sp = p;
    struct run *x = sp->x;
    uint64_t last_req = 0;
    double last_t = 0;
    while (!atomic_load(&x->stop_sampler)) {
        double waited = 0;
        while (waited < x->o->interval && !atomic_load(&x->stop_sampler)) {
            sleep_us(50000);
            waited += 0.05;
        }
        double t = now_s() - sp->t0;
        uint64_t req = atomic_load(&x->r->requests);
        struct sample smp = {t, rss_mib(), dev_mib(x->rt)};
        if (sp->n < MAX_SAMPLES) sp->s[sp->n++] = smp;
        printf("  soak %-14s t=%7.1fs  req/s=%9.0f  verified=%llu  mismatches=%llu  rss=%.1f MiB  "
               "device=%.1f MiB\n",
               x->c->name, t, t > last_t ? (double)(req - last_req) / (t - last_t) : 0.0,
               (unsigned long long)req, (unsigned long long)atomic_load(&x->r->mismatches),
               smp.rss_mib, smp.dev_mib);
        fflush(stdout);
        last_req = req;
        last_t = t;
    }
    return NULL;
}

/* ---- one configuration --------------------------------------------------------------------- */

/* Scenario-specific runtime settings on top of MTI_* and --backend. */
static void scenario_params(const struct run *x, mti_runtime_params *p)
{
    if (x->c->scenario == SC_EXHAUST) {
        p->pool_size = EXHAUST_POOL;
        p->exhaustion = MTI_POOL_WAIT;
        p->pool_wait_ms = EXHAUST_WAIT_MS;
        p->assign = MTI_ASSIGN_EXCLUSIVE;
    }
    if (x->c->scenario == SC_UNSAFE) {
        /* All threads into one shared stream; the library skips the record lock (fault.h). */
        p->pool_size = 1;
        p->assign = MTI_ASSIGN_ROUND_ROBIN;
        setenv("MTI_STRESS_UNSAFE", "1", 1);
    }
    if (x->c->scenario == SC_HANDOFF && p->pool_size < 2 * x->n_ids &&
        p->exhaustion != MTI_POOL_BLOCK)
        p->exhaustion = MTI_POOL_BLOCK; /* producers and consumers hold their slots */
}

/* The second model: an MLP with the first one's widths, a narrower hidden layer and GELU. */
static mti_status load_second(struct run *x, mti_model_params *mp)
{
    char path[512];
    const char *file = x->o->model2_path;
    if (!file) {
        snprintf(path, sizeof path, "%s/model2-%d.safetensors", x->o->tmp_dir, (int)getpid());
        int dims[3] = {x->info[0].input_features, 384, x->info[0].output_features};
        if (x->seq || stress_write_mlp(path, dims, 3, "gelu", x->o->seed + 1) != 0) {
            snprintf(x->r->note, sizeof x->r->note,
                     x->seq ? "two-models with a sequence model needs --model2"
                            : "cannot write the second model");
            return MTI_ERR_IO;
        }
        file = path;
    }
    mti_status st = mti_model_load(x->rt, file, mp, &x->model[1]);
    if (!x->o->model2_path) unlink(path);
    if (st == MTI_OK) st = mti_model_get_info(x->model[1], &x->info[1]);
    if (st == MTI_OK && x->info[1].sequence != x->info[0].sequence) {
        snprintf(x->r->note, sizeof x->r->note, "--model2 must be of the same kind as MODEL");
        st = MTI_ERR_INVALID_ARGUMENT;
    }
    return st;
}

static mti_status scenario_run(struct run *x)
{
    switch (x->c->scenario) {
    case SC_CHURN:
        return run_churn(x);
    case SC_HANDOFF:
        return run_handoff(x);
    case SC_BATCHER:
    case SC_CANCEL:
        return run_batcher(x);
    case SC_EXHAUST:
        return run_workers(x, x->n_ids, 0, x->o->requests / 4 > 4 ? x->o->requests / 4 : 4);
    default:
        return run_workers(x, x->n_ids, 0, x->o->requests);
    }
}

/* Checks after the threads: slots back, timeouts agree, the runtime still answers. */
static void check_after(struct run *x)
{
    mti_pool_stats ps;
    if (mti_runtime_pool_stats(x->rt, &ps) == MTI_OK) {
        if (x->c->scenario != SC_UNSAFE && ps.in_use != 0) {
            atomic_fetch_add(&x->r->errors, 1);
            note_first_bad(x, "%d stream slot(s) still held after every thread exited", ps.in_use);
        }
        if (x->c->scenario == SC_EXHAUST) {
            snprintf(x->r->note, sizeof x->r->note,
                     "pool %d slots: %llu waits, %llu timeouts, peak %d in use", ps.size,
                     (unsigned long long)ps.waits, (unsigned long long)ps.timeouts, ps.peak_in_use);
            if (ps.timeouts != atomic_load(&x->r->expected_errors)) {
                atomic_fetch_add(&x->r->errors, 1);
                note_first_bad(x, "pool counted %llu timeouts, requests saw %llu",
                               (unsigned long long)ps.timeouts,
                               (unsigned long long)atomic_load(&x->r->expected_errors));
            }
        }
    }
#ifdef MTI_FAULT_INJECTION
    if (x->c->scenario == SC_FAULTS) {
        uint64_t fired = 0;
        for (int k = 0; k < MTI_FAULT_KINDS; k++)
            fired += mti__fault_fired((enum mti_fault_kind)k);
        snprintf(x->r->note, sizeof x->r->note,
                 "faults fired: alloc %llu, submit %llu, stream_error %llu; requests failed %llu",
                 (unsigned long long)mti__fault_fired(MTI_FAULT_ALLOC),
                 (unsigned long long)mti__fault_fired(MTI_FAULT_SUBMIT),
                 (unsigned long long)mti__fault_fired(MTI_FAULT_STREAM_ERROR),
                 (unsigned long long)atomic_load(&x->r->expected_errors));
        mti__fault_configure(""); /* the runtime must answer correctly afterwards */
        if (atomic_load(&x->r->expected_errors) > fired || fired == 0) {
            atomic_fetch_add(&x->r->errors, 1);
            note_first_bad(x, "%llu requests failed for %llu injected faults",
                           (unsigned long long)atomic_load(&x->r->expected_errors),
                           (unsigned long long)fired);
        }
    }
#endif
    if (x->c->scenario == SC_UNSAFE) return;
    /* Still usable: verified requests on every model from a new thread (a new slot). */
    struct dataset tmp = {0};
    struct run y = *x;
    struct stress_config c1 = *x->c;
    c1.scenario = SC_THREADS; /* no error is expected any more */
    y.c = &c1;
    y.deadline = 0;
    y.ds = &tmp;
    y.n_ids = 1;
    mti_status st = MTI_OK;
    for (int m = 0; m < 2 && st == MTI_OK; m++)
        if (x->model[m]) st = entry_make(&y, &tmp.e[tmp.n++], m, 1, x->o->seed ^ 0xC0FFEEu, 0);
    if (st == MTI_OK) st = run_workers(&y, 1, 0, tmp.n);
    if (st != MTI_OK) on_error(x, 0, 0, st, "the check after the run");
    for (int k = 0; k < tmp.n; k++) {
        free(tmp.e[k].in);
        free(tmp.e[k].ref);
    }
}

/* Allocator baseline: nothing allocated, cached or deferred once the models are gone. */
static void check_baseline(struct run *x)
{
    mti_alloc_stats a;
    mti_runtime_release_cached(x->rt);
    if (mti_runtime_alloc_stats(x->rt, &a) != MTI_OK) return;
    if (a.allocated || a.cached || a.deferred) {
        atomic_fetch_add(&x->r->errors, 1);
        note_first_bad(x,
                       "allocator not back to baseline: %zu bytes allocated, %zu cached, %zu "
                       "deferred after the models were destroyed",
                       a.allocated, a.cached, a.deferred);
    }
}

int stress_run_config(const struct stress_opts *o, const struct stress_config *c,
                      struct stress_result *r)
{
    struct run x = {.o = o, .c = c, .r = r, .seq = 0};
    int code = STRESS_EXIT_SETUP;
    if (c->scenario == SC_CHURN)
        x.n_ids = o->churn_wave < c->threads ? o->churn_wave : c->threads;
    else if (c->scenario == SC_HANDOFF)
        x.n_ids = c->threads / 2 > 0 ? c->threads / 2 : 1;
    else
        x.n_ids = c->threads;

    mti_runtime_params p;
    mti_runtime_params_default(&p);
    mti_status st = mti_runtime_params_from_env(&p);
    if (o->backend_set) p.backend = o->backend;
    scenario_params(&x, &p);
    mti_model_params mp;
    mti_model_params_default(&mp);
    double t0 = 0;
    struct sampler *sp = NULL;
    if (st == MTI_OK) st = mti_runtime_create(&p, &x.rt);
    if (st != MTI_OK) goto setup_failed;
    snprintf(r->device, sizeof r->device, "%s: %s", mti_backend_name(mti_runtime_backend(x.rt)),
             mti_runtime_device_name(x.rt));
    if ((st = mti_model_load(x.rt, o->model_path, &mp, &x.model[0])) != MTI_OK ||
        (st = mti_model_get_info(x.model[0], &x.info[0])) != MTI_OK)
        goto setup_failed;
    x.seq = x.info[0].sequence ? o->seq : 0;
    if (c->scenario == SC_TWO_MODELS && (st = load_second(&x, &mp)) != MTI_OK) goto setup_failed;
    if ((st = datasets_make(&x)) != MTI_OK) goto setup_failed;
    if (c->scenario == SC_FAULTS) {
#ifdef MTI_FAULT_INJECTION
        if ((st = mti__fault_configure(o->fault_spec)) != MTI_OK) goto setup_failed;
#else
        snprintf(r->note, sizeof r->note, "needs a build with -DMTI_FAULT_INJECTION");
        r->skipped = 1;
        code = STRESS_EXIT_SKIP;
        goto done;
#endif
    }

    t0 = now_s();
    if (o->duration > 0) {
        x.deadline = t0 + o->duration;
        sp = calloc(1, sizeof *sp);
        if (sp) {
            sp->x = &x;
            sp->t0 = t0;
            struct sample s0 = {0, rss_mib(), dev_mib(x.rt)};
            sp->s[sp->n++] = s0;
            if (pthread_create(&sp->th, NULL, sampler_main, sp) != 0) {
                free(sp);
                sp = NULL;
            }
        }
    }
    st = scenario_run(&x);
    r->wall_s = now_s() - t0;
    r->rps = r->wall_s > 0 ? (double)atomic_load(&r->requests) / r->wall_s : 0;
    if (sp) {
        atomic_store(&x.stop_sampler, 1);
        pthread_join(sp->th, NULL);
        r->soak_samples = sp->n;
        r->rss_first_mib = sp->s[0].rss_mib;
        r->rss_last_mib = sp->s[sp->n - 1].rss_mib;
        r->dev_first_mib = sp->s[0].dev_mib;
        r->dev_last_mib = sp->s[sp->n - 1].dev_mib;
        r->rss_growth_mib_h = slope(sp->s, sp->n, 0) * 3600.0;
        r->dev_growth_mib_h = slope(sp->s, sp->n, 1) * 3600.0;
        free(sp);
    }
    if (st != MTI_OK) goto setup_failed;
    if (r->skipped) {
        code = STRESS_EXIT_SKIP;
        goto done;
    }
    check_after(&x);
    mti_model_destroy(x.model[0]);
    mti_model_destroy(x.model[1]);
    x.model[0] = x.model[1] = NULL;
    if (c->scenario != SC_UNSAFE) check_baseline(&x);
    code = atomic_load(&r->mismatches) || atomic_load(&r->errors) ? STRESS_EXIT_FAIL
                                                                  : STRESS_EXIT_PASS;
    goto done;
setup_failed:
    if (!r->note[0])
        snprintf(r->note, sizeof r->note, "%s: %s", mti_status_string(st),
                 mti_last_error_message());
    r->setup_failed = 1;
    code = STRESS_EXIT_SETUP;
done:
    mti_model_destroy(x.model[0]);
    mti_model_destroy(x.model[1]);
    datasets_free(&x);
    mti_runtime_destroy(x.rt);
    return code;
}
