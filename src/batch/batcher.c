/*
 * The dynamic batcher.
 *
 * Batch slots. The batcher owns n_slots = executor_streams slots; each slot is one executor
 * stream (taken from the runtime's pool for the batcher's lifetime) with its own pinned
 * staging (input and output rows), device buffers and per-size CUDA graphs. One batch per slot
 * at a time, so a batch's stream error is that batch's alone. A slot cycles
 *   FREE -> OPEN (forming: requests claim rows) -> RUNNING (closed, launched) -> READING
 *   (answered; members copy their outputs out) -> FREE (the last holder frees it).
 * At most one slot is OPEN (b->open). Requests that find no room (no free slot, or the open
 * batch full) wait in the overflow queue (two FIFOs, high priority first) and are moved into
 * the next slot that opens, their input copied in by the mover.
 *
 * A request's path (mti_batcher_infer): under b->lock claim row r of the open batch (a few
 * integer updates), and run pump(), which closes the batch at once when nothing else is busy
 * (light load), or when it is full; unlock; copy the input into staging row r; publish it with
 * a release increment of slot->written. If this thread closed a batch it launches it (waits
 * until written == n with acquire, submits copy-in, the forward, copy-out), waits for the
 * stream, stores the batch status and bumps slot->gen (release) + one futex wake for all
 * sleepers. Every member waits for gen to move (spin, then futex sleep), reads the status and
 * copies its own output row out, then drops its hold on the slot; the last hold frees the
 * slot, and whoever frees it runs pump() again, so the next batch launches as soon as the
 * pipeline drains. No thread wakes clients one by one; each client moves its own bytes.
 *
 * Who closes a batch: the claimant that fills it or finds the batcher idle; the thread that
 * frees the last busy slot (the forming batch has waited for it); the service thread when the
 * oldest row has waited max_queue_delay_us; destroy. The closer launches and completes it.
 * The service thread also times out asynchronous requests (blocking callers time themselves
 * out) and runs batches handed off by client threads that already launched twice in one call.
 *
 * Locks: b->lock (one per batcher) protects every field marked "lock" below: the open slot,
 * slot states and row tables, the overflow queue, the counters queued/busy, request states.
 * It is held only for bookkeeping and for copying moved overflow inputs: never across a device
 * call, a wait on a stream, a callback or a futex sleep. It is the only lock here; the runtime's
 * locks are taken only by calls made with it released. Lock-free edges (each pairs a release
 * with an acquire):
 *   slot->written  claimant's input bytes  -> launcher (written == n)
 *   slot->gen      launcher's status and output bytes -> members
 *   slot->holds    (acq_rel chain) every member's output read -> the freer's reuse of the slot
 *   req->done      async answer (status, output, callback returned) -> waiters of the handle
 *   b->active      a caller's last touch of b -> destroy's free
 * Sleeping uses futexes on gen/done/ovf_gen with a sleeper count beside each word: the waiter
 * increments the count and re-checks the word, the waker changes the word and then reads the
 * count (both seq_cst), so at least one sees the other and no wake-up is lost.
 */
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/sync.h"
#include "model/model-internal.h"
#include "model/plan.h"
#include "batch/batch-internal.h"
#include "model/plan.h" /* struct mti_model: the runtime the model belongs to */
#include "runtime/runtime-internal.h"

#define MAX_SLOTS      16
#define HANDOFF_ROUNDS 2 /* batches a client thread launches after its own before handing off */

enum slot_state { SLOT_FREE, SLOT_OPEN, SLOT_RUNNING, SLOT_READING };
enum req_state { REQ_NEW, REQ_QUEUED, REQ_ROW, REQ_STARTED, REQ_ANSWERED };
enum close_reason { CLOSE_NONE, CLOSE_IDLE, CLOSE_FULL, CLOSE_DELAY, CLOSE_STOP };

struct mti_batch_request {
    struct mti_batcher *b;
    const float *input; /* blocking: the caller's; async: in_copy while queued */
    float *in_copy;     /* async requests that wait in the overflow queue */
    float *output;
    mti_batch_callback cb;
    void *user;
    bool blocking;
    mti_batch_priority priority;
    uint64_t t_submit, deadline; /* ns; deadline 0: none */
    /* lock: */
    enum req_state state;
    struct slot *slot;
    int row;
    uint32_t wait_gen; /* slot->gen while the request's batch forms */
    struct mti_batch_request *next;
    /* Async answer: status is written before done's release store. */
    mti_status status;
    _Atomic int copied; /* async: input is in staging (release by the copier) */
    _Atomic uint32_t done;
    _Atomic uint32_t sleepers;
    _Atomic int refs; /* the batcher's (until answered) + the handle's */
};

struct slot {
    int index;
    mti_stream_t stream;
    float *stage_in, *stage_out; /* pinned: max_exec rows each */
    mti_buffer_t dbuf_in, dbuf_out;
    float *dev_in, *dev_out; /* device rows (the staging itself on the CPU backend) */
    /* Launcher-owned (one launcher per slot at a time: the slot is RUNNING): */
    mti_graph_t *graphs; /* [max_exec + 1] */
    uint8_t *runs;       /* [max_exec + 1]: eager runs so far; 255: no graph */
    struct mti_batch_request **async_list;
    int n_async;
    mti_status status; /* the batch's answer; published by gen */
    /* lock: */
    enum slot_state state;
    int n;    /* rows claimed (including dead ones) */
    int live; /* rows still wanted */
    uint64_t t_first;
    struct mti_batch_request **reqs; /* [max_batch]; NULL: a dead (cancelled) row */
    uint64_t *t_sub;                 /* [max_batch] submit times */
    MTI_CACHE_ALIGNED _Atomic uint32_t gen;
    _Atomic uint32_t sleepers;
    MTI_CACHE_ALIGNED _Atomic int written;
    _Atomic int holds; /* blocking readers + the launcher; the last one frees the slot */
};

struct stats {
    _Atomic uint64_t requests, completed, failed, rejected, timeouts, cancelled, stopped;
    _Atomic uint64_t batches, rows, padded, idle, full, delay, overflow;
    _Atomic uint64_t hist[MTI_BATCHER_HIST_BINS];
    struct mti_lhist queue_ns, compute_ns;
};

struct mti_batcher {
    struct mti_model *model;
    struct mti_runtime *rt;
    mti_batcher_params p; /* resolved */
    bool cpu;
    int in_floats, out_floats; /* per request */
    int max_exec;              /* largest size a forward runs at */
    int pref[MTI_BATCHER_MAX_PREFERRED + 1];
    int n_pref; /* 0: every size */
    int spin_us;
    /* Members of a batch spin only when the batch has at most this many rows: a few waiters
     * spinning buy latency, a hundred spinning on 16 cores starve the threads that work
     * (measured on an H100: 256 clients, spinning 20 us: 189k req/s; sleeping: 229k). */
    int spin_max_rows;
    int n_slots;
    struct slot slots[MAX_SLOTS];

    mti_mutex lock;
    mti_cond svc_cv;   /* service thread sleeps here */
    mti_cond space_cv; /* MTI_BATCH_FULL_BLOCK waiters */
    /* lock: */
    struct slot *open;
    struct slot *free_slots[MAX_SLOTS];
    int n_free;
    int busy;   /* slots RUNNING or READING */
    int queued; /* live rows of the open batch + overflow */
    struct mti_batch_request *ovf_head[2], *ovf_tail[2];
    int ovf_len;
    int n_async_deadlines; /* async requests with a deadline not yet started */
    int space_waiters;
    bool stopping, svc_exit, svc_sleeping, held;
    bool ovf_moved; /* pump moved overflow requests: wake their waiters after unlocking */
    struct slot *handoff[MAX_SLOTS];
    int n_handoff;

    MTI_CACHE_ALIGNED _Atomic uint32_t ovf_gen; /* bumped when overflow requests move or fail */
    _Atomic uint32_t ovf_sleepers;
    MTI_CACHE_ALIGNED _Atomic long active; /* threads inside batcher calls */
    _Atomic int fail_next;                 /* test hook: status for the next batch */
    pthread_t svc;
    bool svc_started;
    struct stats st;
};

/* ---- futex sleep / wake -------------------------------------------------------------------- */

static void futex_wait(_Atomic uint32_t *word, uint32_t expect, uint64_t timeout_ns)
{
    struct timespec ts, *tp = NULL;
    if (timeout_ns) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000u);
        ts.tv_nsec = (long)(timeout_ns % 1000000000u);
        tp = &ts;
    }
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expect, tp, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Bumps word (release: what the caller wrote before is visible to whoever sees the new value)
 * and wakes its sleepers. seq_cst: the Dekker pair with wait_word's sleeper count. */
static void bump_and_wake(_Atomic uint32_t *word, _Atomic uint32_t *sleepers)
{
    mti_atomic_fetch_add_seq_cst(word, 1);
    if (mti_atomic_load_seq_cst(sleepers) > 0) futex_wake_all(word);
}

/* Waits until *word != seen (acquire) or until deadline_ns (0: none); spins spin_us first.
 * Returns false on timeout. */
static bool wait_word(_Atomic uint32_t *word, _Atomic uint32_t *sleepers, uint32_t seen,
                      int spin_us, uint64_t deadline_ns)
{
    if (mti_atomic_load_acquire(word) != seen) return true;
    if (spin_us > 0) {
        uint64_t until = mti_now_ns() + (uint64_t)spin_us * 1000u;
        for (int i = 0;; i++) {
            if (mti_atomic_load_acquire(word) != seen) return true;
            mti_cpu_relax();
            if ((i & 63) == 63 && mti_now_ns() >= until) break;
        }
    }
    for (;;) {
        uint64_t timeout = 0;
        if (deadline_ns) {
            uint64_t now = mti_now_ns();
            if (now >= deadline_ns) return mti_atomic_load_acquire(word) != seen;
            timeout = deadline_ns - now;
        }
        mti_atomic_fetch_add_seq_cst(sleepers, 1);
        if (mti_atomic_load_seq_cst(word) == seen) futex_wait(word, seen, timeout);
        mti_atomic_fetch_sub_seq_cst(sleepers, 1);
        if (mti_atomic_load_acquire(word) != seen) return true;
    }
}

/* Releases b->lock, then wakes overflow waiters if pump moved some (no syscall under it). */
static void unlock_wake(struct mti_batcher *b) MTI_RELEASE(b->lock) MTI_NO_TSA
{
    bool wake = b->ovf_moved;
    b->ovf_moved = false;
    mti_mutex_unlock(&b->lock);
    if (wake) bump_and_wake(&b->ovf_gen, &b->ovf_sleepers);
}

/* ---- params -------------------------------------------------------------------------------- */

void mti_batcher_params_default(mti_batcher_params *p)
{
    memset(p, 0, sizeof *p);
    p->max_batch = 0;
    p->max_queue_delay_us = 200;
    p->n_preferred = 0;
    p->executor_streams = 0; /* automatic: 4 on CUDA, 2 on the CPU */
    p->max_queue = 0;
    p->full_policy = MTI_BATCH_FULL_REJECT;
    p->full_timeout_us = 1000000;
    p->request_timeout_us = 0;
    p->spin_us = -1;
    p->warmup = 1;
    p->use_graphs = 1;
    p->seq = 0;
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

static mti_status resolve_params(struct mti_batcher *b, const mti_batcher_params *in)
{
    mti_batcher_params *p = &b->p;
    *p = *in;
    if (p->max_batch == 0) p->max_batch = b->cpu ? 64 : 256;
    /* Measured on an H100, 256 clients: 4 streams 375k req/s, 2 streams 229k (both sleeping). */
    if (p->executor_streams == 0) p->executor_streams = b->cpu ? 2 : 4;
    MTI_CHECK_ARG(p->max_batch >= 1 && p->max_batch <= 4096, "max_batch %d is out of range 1..4096",
                  p->max_batch);
    MTI_CHECK_ARG(p->max_queue_delay_us >= 0, "max_queue_delay_us %d is negative",
                  p->max_queue_delay_us);
    MTI_CHECK_ARG(p->executor_streams >= 1 && p->executor_streams <= MAX_SLOTS,
                  "executor_streams %d is out of range 1..%d", p->executor_streams, MAX_SLOTS);
    MTI_CHECK_ARG(p->max_queue >= 0, "max_queue %d is negative", p->max_queue);
    MTI_CHECK_ARG(p->full_policy == MTI_BATCH_FULL_REJECT || p->full_policy == MTI_BATCH_FULL_BLOCK,
                  "full_policy %d is not a mti_batch_full_policy", (int)p->full_policy);
    MTI_CHECK_ARG(p->full_timeout_us >= 0, "full_timeout_us %d is negative", p->full_timeout_us);
    MTI_CHECK_ARG(p->request_timeout_us >= 0, "request_timeout_us %lld is negative",
                  (long long)p->request_timeout_us);
    MTI_CHECK_ARG(p->n_preferred >= -1 && p->n_preferred <= MTI_BATCHER_MAX_PREFERRED,
                  "n_preferred %d is out of range -1..%d", p->n_preferred,
                  MTI_BATCHER_MAX_PREFERRED);
    b->spin_us = p->spin_us >= 0 ? p->spin_us : (b->cpu ? 0 : 20);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    b->spin_max_rows = cpus > 8 ? (int)(cpus / 4) : 2;
    b->n_pref = 0;
    if (p->n_preferred > 0) {
        for (int i = 0; i < p->n_preferred; i++) {
            MTI_CHECK_ARG(p->preferred[i] >= 1 && p->preferred[i] <= p->max_batch,
                          "preferred[%d] = %d is out of range 1..max_batch (%d)", i,
                          p->preferred[i], p->max_batch);
            b->pref[b->n_pref++] = p->preferred[i];
        }
    } else if (p->n_preferred == 0 && !b->cpu) {
        for (int v = 1; v < p->max_batch && b->n_pref < MTI_BATCHER_MAX_PREFERRED; v *= 2)
            b->pref[b->n_pref++] = v;
    }
    if (b->n_pref > 0) {
        b->pref[b->n_pref++] = p->max_batch; /* every batch has a size to run at */
        qsort(b->pref, (size_t)b->n_pref, sizeof b->pref[0], cmp_int);
        int k = 0;
        for (int i = 0; i < b->n_pref; i++)
            if (k == 0 || b->pref[i] != b->pref[k - 1]) b->pref[k++] = b->pref[i];
        b->n_pref = k;
    }
    b->max_exec = p->max_batch;
    return MTI_OK;
}

/* The size a batch of n requests runs at. */
static int exec_size(const struct mti_batcher *b, int n)
{
    for (int i = 0; i < b->n_pref; i++)
        if (b->pref[i] >= n) return b->pref[i];
    return n;
}

/* ---- stats --------------------------------------------------------------------------------- */

#define STAT_ADD(b, field, v) mti_atomic_fetch_add_relaxed(&(b)->st.field, (uint64_t)(v))

static int size_bin(int n)
{
    if (n <= 1) return 0;
    int bin = 64 - __builtin_clzll((unsigned long long)(n - 1)); /* ceil(log2 n) */
    return bin < MTI_BATCHER_HIST_BINS ? bin : MTI_BATCHER_HIST_BINS - 1;
}

/* ---- requests ------------------------------------------------------------------------------ */

static void req_unref(struct mti_batch_request *r)
{
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        free(r->in_copy);
        free(r);
    }
}

/* Gives an asynchronous request its answer: callback, then done (release), then the batcher's
 * reference goes. Called without b->lock, exactly once per request (its state went to
 * REQ_ANSWERED, or its batch was answered, under the lock). */
static void answer_async(struct mti_batch_request *r, mti_status status)
{
    r->status = status;
    if (r->cb) r->cb(r->user, status);
    atomic_store_explicit(&r->done, 1, memory_order_seq_cst);
    if (mti_atomic_load_seq_cst(&r->sleepers) > 0) futex_wake_all(&r->done);
    req_unref(r);
}

/* ---- the overflow queue (caller holds lock) ------------------------------------------------ */

static void ovf_push(struct mti_batcher *b, struct mti_batch_request *r) MTI_REQUIRES(b->lock)
{
    int q = r->priority == MTI_BATCH_PRIORITY_HIGH ? 1 : 0;
    r->next = NULL;
    if (b->ovf_tail[q])
        b->ovf_tail[q]->next = r;
    else
        b->ovf_head[q] = r;
    b->ovf_tail[q] = r;
    b->ovf_len++;
    r->state = REQ_QUEUED;
}

static struct mti_batch_request *ovf_pop(struct mti_batcher *b) MTI_REQUIRES(b->lock)
{
    for (int q = 1; q >= 0; q--) {
        struct mti_batch_request *r = b->ovf_head[q];
        if (!r) continue;
        b->ovf_head[q] = r->next;
        if (!b->ovf_head[q]) b->ovf_tail[q] = NULL;
        b->ovf_len--;
        r->next = NULL;
        return r;
    }
    return NULL;
}

static void ovf_remove(struct mti_batcher *b, struct mti_batch_request *r) MTI_REQUIRES(b->lock)
{
    int q = r->priority == MTI_BATCH_PRIORITY_HIGH ? 1 : 0;
    struct mti_batch_request *prev = NULL;
    for (struct mti_batch_request *it = b->ovf_head[q]; it; prev = it, it = it->next) {
        if (it != r) continue;
        if (prev)
            prev->next = r->next;
        else
            b->ovf_head[q] = r->next;
        if (b->ovf_tail[q] == r) b->ovf_tail[q] = prev;
        b->ovf_len--;
        r->next = NULL;
        return;
    }
}

/* ---- forming and closing batches (caller holds lock) --------------------------------------- */

static void claim_row(struct mti_batcher *b, struct slot *s, struct mti_batch_request *r)
    MTI_REQUIRES(b->lock)
{
    int row = s->n++;
    s->live++;
    s->reqs[row] = r;
    s->t_sub[row] = r->t_submit;
    if (row == 0) s->t_first = r->t_submit;
    r->state = REQ_ROW;
    r->slot = s;
    r->row = row;
    r->wait_gen = mti_atomic_load_relaxed(&s->gen); /* gen only moves after this batch closes */
}

static void row_kill(struct mti_batcher *b, struct mti_batch_request *r) MTI_REQUIRES(b->lock)
{
    r->slot->reqs[r->row] = NULL;
    r->slot->live--;
}

static void close_slot(struct mti_batcher *b, struct slot *s, enum close_reason why)
    MTI_REQUIRES(b->lock)
{
    s->state = SLOT_RUNNING;
    b->open = NULL;
    b->busy++;
    b->queued -= s->live;
    int readers = 0;
    for (int i = 0; i < s->n; i++) {
        struct mti_batch_request *r = s->reqs[i];
        if (!r) continue;
        r->state = REQ_STARTED;
        if (r->blocking)
            readers++;
        else if (r->deadline)
            b->n_async_deadlines--;
    }
#ifdef MTI_BROKEN_BATCH_FREE_BEFORE_READ
    readers = 0; /* deliberate bug: the slot is reused while members still read their rows */
#endif
    atomic_store_explicit(&s->holds, readers + 1, memory_order_relaxed);
    if (why == CLOSE_IDLE) STAT_ADD(b, idle, 1);
    if (why == CLOSE_FULL) STAT_ADD(b, full, 1);
    if (why == CLOSE_DELAY) STAT_ADD(b, delay, 1);
    if (b->space_waiters) mti_cond_broadcast(&b->space_cv);
}

/* Opens a free slot when none is open, moves overflow requests into the open batch (copying
 * their inputs: they are asleep), and closes the open batch when a rule says so. Closed slots
 * go to out[] for the caller to launch. */
static int pump(struct mti_batcher *b, struct slot **out, uint64_t now) MTI_REQUIRES(b->lock)
{
    int k = 0;
    bool moved = false;
    for (;;) {
        if (!b->open) {
            if (b->n_free == 0) break;
            struct slot *s = b->free_slots[--b->n_free];
            s->state = SLOT_OPEN;
            s->n = s->live = 0;
            atomic_store_explicit(&s->written, 0, memory_order_relaxed);
            b->open = s;
        }
        struct slot *s = b->open;
        while (s->n < b->p.max_batch && b->ovf_len > 0) {
            struct mti_batch_request *r = ovf_pop(b);
            claim_row(b, s, r);
            memcpy(s->stage_in + (size_t)r->row * b->in_floats, r->input,
                   sizeof(float) * (size_t)b->in_floats);
            atomic_store_explicit(&r->copied, 1, memory_order_release);
            mti_atomic_fetch_add_relaxed(&s->written, 1); /* ordered by the lock for the launcher */
            moved = true;
        }
        if (s->live == 0) {
            s->n = 0; /* every claimed row was cancelled (and written): start over */
            atomic_store_explicit(&s->written, 0, memory_order_relaxed);
            break;
        }
        enum close_reason why = CLOSE_NONE;
        if (b->stopping)
            why = CLOSE_STOP;
        else if (b->held)
            why = CLOSE_NONE;
        else if (s->n >= b->p.max_batch)
            why = CLOSE_FULL;
        else if (b->busy == 0)
            why = CLOSE_IDLE;
        else if (now >= s->t_first + (uint64_t)b->p.max_queue_delay_us * 1000u)
            why = CLOSE_DELAY;
        if (why == CLOSE_NONE) break;
        close_slot(b, s, why);
        out[k++] = s;
    }
    if (moved) {
        b->ovf_moved = true; /* unlock_wake wakes them, outside the lock */
        /* A batch formed from the overflow queue needs its delay timer armed too (place()
         * arms it only for a row 0 it claims itself). Found while modelling (verify/). */
        if (b->svc_sleeping && b->open && b->open->live > 0) mti_cond_signal(&b->svc_cv);
    }
    return k;
}

/* ---- launching and completing batches (no lock held) --------------------------------------- */

static mti_status inject_fn(void *user)
{
    return mti__error((mti_status)(intptr_t)user, "injected batch failure (test hook)");
}

static mti_status submit_eager(struct mti_batcher *b, struct slot *s, int exec, int n_out)
{
    size_t in_bytes = sizeof(float) * (size_t)b->in_floats;
    size_t out_bytes = sizeof(float) * (size_t)b->out_floats;
    int seq = b->p.seq;
    if (b->cpu) /* host memory is device memory: the forward reads and writes staging; the
                   launching thread waits for the batch next, so it runs the ops itself */
        return mti__plan_infer_async(b->model, s->stream, exec, b->model->desc->sequence ? seq : 1,
                                     s->stage_in, s->stage_out, MTI_SUBMIT_WAITED);
    MTI_CHECK(mti_memcpy_async(s->stream, s->dev_in, s->stage_in, in_bytes * (size_t)exec,
                               MTI_COPY_HOST_TO_DEVICE));
    MTI_CHECK(mti_model_infer_async(b->model, s->stream, exec, seq, s->dev_in, s->dev_out));
    return mti_memcpy_async(s->stream, s->stage_out, s->dev_out, out_bytes * (size_t)n_out,
                            MTI_COPY_DEVICE_TO_HOST);
}

/* Submits the batch's work on its stream: eager the first time a size runs (plans are built),
 * captured as a graph the second time (CUDA), replayed after. */
static mti_status submit_batch(struct mti_batcher *b, struct slot *s, int exec, int n)
{
    if (b->cpu || !b->p.use_graphs || s->runs[exec] == 255) return submit_eager(b, s, exec, n);
    if (s->graphs[exec]) return mti_graph_launch(s->graphs[exec], s->stream);
    if (s->runs[exec]++ == 0) return submit_eager(b, s, exec, n);
    mti_status st = mti_stream_begin_capture(s->stream);
    if (st == MTI_OK) {
        mti_status body = submit_eager(b, s, exec, exec);
        mti_graph_t g = NULL;
        st = mti_stream_end_capture(s->stream, &g);
        if (st == MTI_OK && body == MTI_OK) {
            s->graphs[exec] = g;
            return mti_graph_launch(g, s->stream);
        }
        mti_graph_destroy(g);
    }
    mti__log(MTI_LOG_INFO, "batcher: no graph for batch %d (%s); running eagerly", exec,
             mti_status_string(st));
    s->runs[exec] = 255;
    return submit_eager(b, s, exec, n);
}

/* Launcher, step 1: waits for every claimed row's input, submits. Returns the launch time. */
static uint64_t launch(struct mti_batcher *b, struct slot *s)
{
    int n = s->n; /* fixed at close (under the lock this thread took since) */
    /* acquire: pairs with each claimant's release increment: their input rows are visible */
    for (int i = 0; atomic_load_explicit(&s->written, memory_order_acquire) < n; i++) {
        if (i < 256)
            mti_cpu_relax();
        else
            sched_yield();
    }
    int exec = exec_size(b, n);
    uint64_t t0 = mti_now_ns();
    s->n_async = 0;
    for (int i = 0; i < n; i++) {
        struct mti_batch_request *r = s->reqs[i];
        if (!r) continue;
        mti__lhist_add(&b->st.queue_ns, t0 > s->t_sub[i] ? t0 - s->t_sub[i] : 0);
        if (!r->blocking) s->async_list[s->n_async++] = r;
    }
    STAT_ADD(b, batches, 1);
    STAT_ADD(b, rows, n);
    STAT_ADD(b, padded, exec - n);
    STAT_ADD(b, hist[size_bin(n)], 1);
    s->status = submit_batch(b, s, exec, n);
    int inject = atomic_exchange_explicit(&b->fail_next, 0, memory_order_relaxed);
    if (inject && s->status == MTI_OK)
        s->status = mti_stream_launch_host(s->stream, inject_fn, (void *)(intptr_t)inject);
    return t0;
}

static void free_slot(struct mti_batcher *b, struct slot *s, struct slot **out, int *k)
    MTI_EXCLUDES(b->lock);

/* Launcher, step 2: waits for the stream, answers the batch, drops the launcher's hold. */
static void complete(struct mti_batcher *b, struct slot *s, uint64_t t0, struct slot **out, int *k)
{
    mti_status sync = mti_stream_synchronize(s->stream); /* always: drains what was submitted */
    mti_status st = s->status != MTI_OK ? s->status : sync;
    mti__lhist_add(&b->st.compute_ns, mti_now_ns() - t0);
    if (st != MTI_OK)
        mti__log(MTI_LOG_WARN, "batcher: a batch of %d failed: %s (%s)", s->n,
                 mti_status_string(st), mti_last_error_message());
    int live = 0;
    for (int i = 0; i < s->n; i++)
        live += s->reqs[i] != NULL;
    if (st == MTI_OK)
        STAT_ADD(b, completed, live);
    else
        STAT_ADD(b, failed, live);
    for (int i = 0; i < s->n_async && st == MTI_OK; i++) {
        struct mti_batch_request *r = s->async_list[i];
        memcpy(r->output, s->stage_out + (size_t)r->row * b->out_floats,
               sizeof(float) * (size_t)b->out_floats);
    }
    s->status = st;
    /* release: status and staging output -> members that see the new gen */
    bump_and_wake(&s->gen, &s->sleepers);
    for (int i = 0; i < s->n_async; i++)
        answer_async(s->async_list[i], st);
    if (atomic_fetch_sub_explicit(&s->holds, 1, memory_order_acq_rel) == 1) free_slot(b, s, out, k);
}

static void free_slot(struct mti_batcher *b, struct slot *s, struct slot **out, int *k)
    MTI_EXCLUDES(b->lock)
{
    mti_mutex_lock(&b->lock);
    s->state = SLOT_FREE;
    b->busy--;
    b->free_slots[b->n_free++] = s;
    *k += pump(b, out + *k, mti_now_ns());
    unlock_wake(b);
}

/* Launches and completes the given closed batches, then any that freeing slots closes. A
 * client thread (svc false) hands batches to the service thread after HANDOFF_ROUNDS rounds,
 * so one call never keeps launching for others. */
static void run_batches(struct mti_batcher *b, struct slot **v, int k, bool svc)
{
    struct slot *cur[MAX_SLOTS], *next[MAX_SLOTS];
    memcpy(cur, v, sizeof(*v) * (size_t)k);
    for (int round = 0; k > 0; round++) {
        if (!svc && round >= HANDOFF_ROUNDS) {
            mti_mutex_lock(&b->lock);
            for (int i = 0; i < k; i++)
                b->handoff[b->n_handoff++] = cur[i];
            mti_cond_signal(&b->svc_cv);
            unlock_wake(b);
            return;
        }
        uint64_t t0[MAX_SLOTS];
        for (int i = 0; i < k; i++)
            t0[i] = launch(b, cur[i]);
        int nk = 0;
        for (int i = 0; i < k; i++)
            complete(b, cur[i], t0[i], next, &nk);
        memcpy(cur, next, sizeof(*next) * (size_t)nk);
        k = nk;
    }
}

/* A blocking member after its batch was answered: copy out, drop the hold. */
static mti_status member_finish(struct mti_batcher *b, struct mti_batch_request *r, float *output)
{
    struct slot *s = r->slot;
    mti_status st = s->status;
    if (st == MTI_OK)
        memcpy(output, s->stage_out + (size_t)r->row * b->out_floats,
               sizeof(float) * (size_t)b->out_floats);
#ifndef MTI_BROKEN_BATCH_FREE_BEFORE_READ
    /* acq_rel: this member's reads of staging happen before the freer's reuse */
    if (atomic_fetch_sub_explicit(&s->holds, 1, memory_order_acq_rel) == 1) {
        struct slot *v[MAX_SLOTS];
        int k = 0;
        free_slot(b, s, v, &k);
        run_batches(b, v, k, false);
    }
#endif
    return st;
}

/* ---- admission ----------------------------------------------------------------------------- */

static uint64_t deadline_of(const struct mti_batcher *b, const mti_batch_opts *o, uint64_t now)
{
    int64_t us = o && o->timeout_us ? o->timeout_us : b->p.request_timeout_us;
    return us > 0 ? now + (uint64_t)us * 1000u : 0;
}

/* Enters a call: MTI_ERR_STOPPED once destroy began. Caller holds lock. */
static mti_status enter(struct mti_batcher *b) MTI_REQUIRES(b->lock)
{
    if (b->stopping) return mti__error(MTI_ERR_STOPPED, "the batcher is being destroyed");
    mti_atomic_fetch_add_seq_cst(&b->active, 1);
    return MTI_OK;
}

static void leave(struct mti_batcher *b)
{
    /* release: the caller's last touch of b happens before destroy's free (it polls) */
    mti_atomic_fetch_sub_seq_cst(&b->active, 1);
}

/* Applies the queue bound; caller holds lock (released while blocking). */
static mti_status admit(struct mti_batcher *b) MTI_REQUIRES(b->lock)
{
    if (b->p.max_queue == 0 || b->queued < b->p.max_queue) return MTI_OK;
    if (b->p.full_policy == MTI_BATCH_FULL_BLOCK && b->p.full_timeout_us > 0) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        long long ns = (long long)dl.tv_nsec + (long long)b->p.full_timeout_us % 1000000 * 1000;
        dl.tv_sec += b->p.full_timeout_us / 1000000 + ns / 1000000000;
        dl.tv_nsec = (long)(ns % 1000000000);
        b->space_waiters++;
        bool timed_out = false;
        while (!b->stopping && b->queued >= b->p.max_queue && !timed_out)
            timed_out = !mti_cond_wait_until(&b->space_cv, &b->lock, &dl);
        b->space_waiters--;
        if (b->stopping) return mti__error(MTI_ERR_STOPPED, "the batcher was stopped");
        if (b->queued < b->p.max_queue) return MTI_OK;
    }
    STAT_ADD(b, rejected, 1);
    return mti__error(MTI_ERR_QUEUE_FULL, "the batcher's queue holds max_queue = %d requests",
                      b->p.max_queue);
}

/* Claims a row of the open batch or joins the overflow queue; runs pump. Caller holds lock. */
static int place(struct mti_batcher *b, struct mti_batch_request *r, struct slot **out)
    MTI_REQUIRES(b->lock)
{
    b->queued++;
    STAT_ADD(b, requests, 1);
    uint64_t now = r->t_submit;
    int k = 0;
    if (!b->open) k = pump(b, out, now); /* opens a free slot */
    if (b->open && b->ovf_len == 0 && b->open->n < b->p.max_batch) {
        claim_row(b, b->open, r);
    } else {
        ovf_push(b, r);
        STAT_ADD(b, overflow, 1);
    }
    if (!r->blocking && r->deadline) b->n_async_deadlines++;
    k += pump(b, out + k, now);
    if (b->svc_sleeping &&
        ((r->state == REQ_ROW && r->slot->n == 1) || (!r->blocking && r->deadline)))
        mti_cond_signal(&b->svc_cv); /* a timer to arm */
    return k;
}

mti_status mti_batcher_infer(mti_batcher_t b, const float *input, float *output,
                             const mti_batch_opts *opts)
{
    MTI_CHECK_ARG(b != NULL, "batcher is NULL");
    MTI_CHECK_ARG(input != NULL && output != NULL, "input and output must not be NULL");
    MTI_CHECK_ARG(!opts || opts->priority == MTI_BATCH_PRIORITY_NORMAL ||
                      opts->priority == MTI_BATCH_PRIORITY_HIGH,
                  "priority %d is not a mti_batch_priority", (int)opts->priority);
    struct mti_batch_request r = {0};
    r.b = b;
    r.input = input;
    r.output = output;
    r.blocking = true;
    r.priority = opts ? opts->priority : MTI_BATCH_PRIORITY_NORMAL;
    struct slot *v[MAX_SLOTS];
    mti_mutex_lock(&b->lock);
    mti_status st = enter(b);
    if (st != MTI_OK) {
        unlock_wake(b);
        return st;
    }
    st = admit(b);
    if (st != MTI_OK) {
        unlock_wake(b);
        leave(b);
        return st;
    }
    r.t_submit = mti_now_ns();
    r.deadline = deadline_of(b, opts, r.t_submit);
    int k = place(b, &r, v);
    bool in_row = r.state != REQ_QUEUED;
    struct slot *s = r.slot;
    int row = r.row;
    unlock_wake(b);

    if (in_row) {
        memcpy(s->stage_in + (size_t)row * b->in_floats, input,
               sizeof(float) * (size_t)b->in_floats);
        /* release: the input row -> the launcher's acquire of written == n */
        atomic_fetch_add_explicit(&s->written, 1, memory_order_release);
    }
    if (k) run_batches(b, v, k, false);

    /* Waiting in the overflow queue: until moved into a batch (or failed by destroy). */
    mti_mutex_lock(&b->lock);
    while (r.state == REQ_QUEUED) {
        uint32_t seen = mti_atomic_load_relaxed(&b->ovf_gen);
        unlock_wake(b);
        bool woke = wait_word(&b->ovf_gen, &b->ovf_sleepers, seen, 0, r.deadline);
        mti_mutex_lock(&b->lock);
        if (!woke && r.state == REQ_QUEUED) {
            ovf_remove(b, &r);
            b->queued--;
            r.state = REQ_ANSWERED;
            r.status = mti__error(MTI_ERR_TIMEOUT, "no batch started within the request timeout");
            STAT_ADD(b, timeouts, 1);
            if (b->space_waiters) mti_cond_broadcast(&b->space_cv);
        }
    }
    if (r.state == REQ_ANSWERED) { /* timed out or stopped while queued */
        unlock_wake(b);
        leave(b);
        return r.status;
    }
    s = r.slot;
    uint32_t gen = r.wait_gen;
    /* How long to spin: rows claimed so far (read under the lock), a hint nothing depends on. */
    int spin = s->n <= b->spin_max_rows ? b->spin_us : 0;
    unlock_wake(b);

    /* Waiting for the batch: the request may time out only until its batch starts. */
    uint64_t deadline = r.deadline;
    while (!wait_word(&s->gen, &s->sleepers, gen, spin, deadline)) {
        mti_mutex_lock(&b->lock);
        if (r.state == REQ_ROW) {
            row_kill(b, &r);
            b->queued--;
            r.state = REQ_ANSWERED;
            STAT_ADD(b, timeouts, 1);
            if (b->space_waiters) mti_cond_broadcast(&b->space_cv);
            struct slot *w[MAX_SLOTS];
            int nk = pump(b, w, mti_now_ns()); /* the batch may now be empty */
            unlock_wake(b);
            run_batches(b, w, nk, false);
            leave(b);
            return mti__error(MTI_ERR_TIMEOUT, "no batch started within the request timeout");
        }
        unlock_wake(b);
        deadline = 0; /* started: it completes */
    }
    st = member_finish(b, &r, output);
    leave(b);
    if (st != MTI_OK)
        return mti__error(st, "the request's batch failed: %s", mti_status_string(st));
    return MTI_OK;
}

mti_status mti_batcher_submit(mti_batcher_t b, const float *input, float *output,
                              const mti_batch_opts *opts, mti_batch_callback callback, void *user,
                              mti_batch_request_t *out)
{
    if (out) *out = NULL;
    MTI_CHECK_ARG(b != NULL, "batcher is NULL");
    MTI_CHECK_ARG(input != NULL && output != NULL, "input and output must not be NULL");
    MTI_CHECK_ARG(!opts || opts->priority == MTI_BATCH_PRIORITY_NORMAL ||
                      opts->priority == MTI_BATCH_PRIORITY_HIGH,
                  "priority %d is not a mti_batch_priority", (int)opts->priority);
    struct mti_batch_request *r = calloc(1, sizeof *r);
    if (!r) return mti__error(MTI_ERR_OUT_OF_MEMORY, "batch request");
    r->b = b;
    r->output = output;
    r->cb = callback;
    r->user = user;
    r->priority = opts ? opts->priority : MTI_BATCH_PRIORITY_NORMAL;
    atomic_init(&r->refs, out ? 2 : 1);
    struct slot *v[MAX_SLOTS];
    mti_mutex_lock(&b->lock);
    mti_status st = enter(b);
    if (st == MTI_OK) {
        st = admit(b);
        if (st != MTI_OK) leave(b);
    }
    if (st != MTI_OK) {
        unlock_wake(b);
        free(r);
        return st;
    }
    r->t_submit = mti_now_ns();
    r->deadline = deadline_of(b, opts, r->t_submit);
    /* The queue path keeps the input until a slot frees: take a private copy first (no
     * allocation under the lock, so decide optimistically and fix up below). */
    bool room = b->open ? b->ovf_len == 0 && b->open->n < b->p.max_batch : b->n_free > 0;
    if (!room) {
        unlock_wake(b);
        r->in_copy = malloc(sizeof(float) * (size_t)b->in_floats);
        if (!r->in_copy) {
            leave(b);
            free(r);
            return mti__error(MTI_ERR_OUT_OF_MEMORY, "batch request input");
        }
        memcpy(r->in_copy, input, sizeof(float) * (size_t)b->in_floats);
        mti_mutex_lock(&b->lock);
        if (b->stopping) {
            unlock_wake(b);
            leave(b);
            free(r->in_copy);
            free(r);
            return mti__error(MTI_ERR_STOPPED, "the batcher is being destroyed");
        }
    }
    r->input = r->in_copy ? r->in_copy : input;
    if (!r->in_copy &&
        !(b->open ? b->ovf_len == 0 && b->open->n < b->p.max_batch : b->n_free > 0)) {
        /* Room vanished between the checks: copy under the lock (rare; a row copy is small). */
        r->in_copy = malloc(sizeof(float) * (size_t)b->in_floats);
        if (!r->in_copy) {
            unlock_wake(b);
            leave(b);
            free(r);
            return mti__error(MTI_ERR_OUT_OF_MEMORY, "batch request input");
        }
        memcpy(r->in_copy, input, sizeof(float) * (size_t)b->in_floats);
        r->input = r->in_copy;
    }
    int k = place(b, r, v);
    bool in_row = r->state == REQ_ROW || r->state == REQ_STARTED;
    bool self_copy = in_row && !atomic_load_explicit(&r->copied, memory_order_relaxed);
    struct slot *s = r->slot;
    int row = r->row;
    unlock_wake(b);
    if (self_copy) {
        memcpy(s->stage_in + (size_t)row * b->in_floats, input,
               sizeof(float) * (size_t)b->in_floats);
        atomic_store_explicit(&r->copied, 1, memory_order_release);
        atomic_fetch_add_explicit(&s->written, 1, memory_order_release);
    }
    if (out) *out = r; /* before run_batches: the answer may come during it */
    if (k) run_batches(b, v, k, false);
    leave(b);
    return MTI_OK;
}

mti_status mti_batch_request_wait(mti_batch_request_t r, int64_t timeout_us)
{
    MTI_CHECK_ARG(r != NULL, "request is NULL");
    uint64_t deadline = timeout_us >= 0 ? mti_now_ns() + (uint64_t)timeout_us * 1000u : 0;
    if (timeout_us == 0 && mti_atomic_load_acquire(&r->done) == 0) return MTI_ERR_NOT_READY;
    if (!wait_word(&r->done, &r->sleepers, 0, 0, deadline)) return MTI_ERR_NOT_READY;
    return r->status;
}

mti_status mti_batch_request_cancel(mti_batch_request_t r)
{
    MTI_CHECK_ARG(r != NULL, "request is NULL");
    if (mti_atomic_load_acquire(&r->done)) return MTI_ERR_BUSY;
    struct mti_batcher *b = r->b;
    mti_mutex_lock(&b->lock);
    if (r->state == REQ_QUEUED) {
        ovf_remove(b, r);
    } else if (r->state == REQ_ROW) {
        row_kill(b, r);
    } else {
        unlock_wake(b);
        return MTI_ERR_BUSY;
    }
    if (r->deadline) b->n_async_deadlines--;
    b->queued--;
    r->state = REQ_ANSWERED;
    if (b->space_waiters) mti_cond_broadcast(&b->space_cv);
    unlock_wake(b);
    STAT_ADD(b, cancelled, 1);
    answer_async(r, MTI_ERR_CANCELLED);
    return MTI_OK;
}

void mti_batch_request_release(mti_batch_request_t r)
{
    if (r) req_unref(r);
}

/* ---- the service thread -------------------------------------------------------------------- */

/* Times out asynchronous requests whose deadline passed before their batch started. */
static int expire_async(struct mti_batcher *b, uint64_t now, struct mti_batch_request **out,
                        int cap, uint64_t *next) MTI_REQUIRES(b->lock)
{
    int n = 0;
    if (b->n_async_deadlines == 0) return 0;
    for (int q = 0; q < 2; q++) {
        for (struct mti_batch_request *r = b->ovf_head[q], *nx; r && n < cap; r = nx) {
            nx = r->next;
            if (r->blocking || !r->deadline) continue;
            if (r->deadline <= now) {
                ovf_remove(b, r);
                out[n++] = r;
            } else if (r->deadline < *next) {
                *next = r->deadline;
            }
        }
    }
    struct slot *s = b->open;
    for (int i = 0; s && i < s->n && n < cap; i++) {
        struct mti_batch_request *r = s->reqs[i];
        if (!r || r->blocking || !r->deadline) continue;
        if (r->deadline <= now && atomic_load_explicit(&r->copied, memory_order_acquire)) {
            row_kill(b, r);
            out[n++] = r;
        } else if (r->deadline < *next) {
            *next = r->deadline;
        }
    }
    for (int i = 0; i < n; i++) {
        out[i]->state = REQ_ANSWERED;
        b->queued--;
        b->n_async_deadlines--;
    }
    if (n && b->space_waiters) mti_cond_broadcast(&b->space_cv);
    return n;
}

static void *service_main(void *arg)
{
    struct mti_batcher *b = arg;
    struct mti_batch_request *expired[64];
    struct slot *v[2 * MAX_SLOTS];
    mti_mutex_lock(&b->lock);
    while (!b->svc_exit) {
        uint64_t now = mti_now_ns(), next = UINT64_MAX;
        int ne = expire_async(b, now, expired, 64, &next);
        int k = 0;
        for (int i = 0; i < b->n_handoff; i++)
            v[k++] = b->handoff[i];
        b->n_handoff = 0;
        k += pump(b, v + k, now);
        if (ne || k) {
            unlock_wake(b);
            for (int i = 0; i < ne; i++) {
                STAT_ADD(b, timeouts, 1);
                answer_async(expired[i], MTI_ERR_TIMEOUT);
            }
            run_batches(b, v, k, true);
            mti_mutex_lock(&b->lock);
            continue;
        }
        struct slot *s = b->open;
        if (s && s->live > 0 && !b->held) {
            uint64_t due = s->t_first + (uint64_t)b->p.max_queue_delay_us * 1000u;
            if (due < next) next = due;
        }
        b->svc_sleeping = true;
        if (next == UINT64_MAX) {
            mti_cond_wait(&b->svc_cv, &b->lock);
        } else {
            struct timespec dl = {(time_t)(next / 1000000000u), (long)(next % 1000000000u)};
            mti_cond_wait_until(&b->svc_cv, &b->lock, &dl);
        }
        b->svc_sleeping = false;
    }
    unlock_wake(b);
    return NULL;
}

/* ---- create / destroy ---------------------------------------------------------------------- */

static void slot_free(struct mti_batcher *b, struct slot *s)
{
    if (s->graphs) {
        for (int i = 0; i <= b->max_exec; i++)
            mti_graph_destroy(s->graphs[i]);
        free(s->graphs);
    }
    free(s->runs);
    free(s->reqs);
    free(s->t_sub);
    free(s->async_list);
    if (s->stream) mti_stream_synchronize(s->stream);
    mti_buffer_free(s->dbuf_in);
    mti_buffer_free(s->dbuf_out);
    mti_host_free(b->rt, s->stage_in);
    mti_host_free(b->rt, s->stage_out);
    if (s->stream) mti_stream_release(s->stream);
}

static mti_status slot_init(struct mti_batcher *b, struct slot *s, int index)
{
    s->index = index;
    size_t in_bytes = sizeof(float) * (size_t)b->in_floats * (size_t)b->max_exec;
    size_t out_bytes = sizeof(float) * (size_t)b->out_floats * (size_t)b->max_exec;
    MTI_CHECK(mti_stream_acquire(b->rt, &s->stream));
    MTI_CHECK(mti_host_alloc(b->rt, in_bytes, (void **)&s->stage_in));
    MTI_CHECK(mti_host_alloc(b->rt, out_bytes, (void **)&s->stage_out));
    memset(s->stage_in, 0, in_bytes); /* padding rows compute on zeros, not garbage */
    memset(s->stage_out, 0, out_bytes);
    if (!b->cpu) {
        MTI_CHECK(mti_buffer_alloc(s->stream, in_bytes, &s->dbuf_in));
        MTI_CHECK(mti_buffer_alloc(s->stream, out_bytes, &s->dbuf_out));
        s->dev_in = mti_buffer_ptr(s->dbuf_in);
        s->dev_out = mti_buffer_ptr(s->dbuf_out);
    }
    s->graphs = calloc((size_t)b->max_exec + 1, sizeof *s->graphs);
    s->runs = calloc((size_t)b->max_exec + 1, 1);
    s->reqs = calloc((size_t)b->p.max_batch, sizeof *s->reqs);
    s->t_sub = calloc((size_t)b->p.max_batch, sizeof *s->t_sub);
    s->async_list = calloc((size_t)b->p.max_batch, sizeof *s->async_list);
    if (!s->graphs || !s->runs || !s->reqs || !s->t_sub || !s->async_list)
        return mti__error(MTI_ERR_OUT_OF_MEMORY, "batch slot tables");
    s->state = SLOT_FREE;
    return MTI_OK;
}

/* One forward per preferred size on each slot (twice on CUDA with graphs: warm, capture). */
static mti_status warm_up(struct mti_batcher *b)
{
    int reps = !b->cpu && b->p.use_graphs ? 2 : 1;
    for (int i = 0; i < b->n_slots; i++) {
        struct slot *s = &b->slots[i];
        for (int j = 0; j < b->n_pref; j++) {
            for (int rep = 0; rep < reps; rep++) {
                mti_status st = submit_batch(b, s, b->pref[j], b->pref[j]);
                mti_status sync = mti_stream_synchronize(s->stream);
                MTI_CHECK(st);
                MTI_CHECK(sync);
            }
        }
    }
    return MTI_OK;
}

mti_status mti_batcher_create(mti_model_t model, const mti_batcher_params *params,
                              mti_batcher_t *out)
{
    MTI_CHECK_ARG(out != NULL, "out is NULL");
    *out = NULL;
    MTI_CHECK_ARG(model != NULL, "model is NULL");
    mti_model_info info;
    MTI_CHECK(mti_model_get_info(model, &info));
    mti_batcher_params defaults;
    if (!params) {
        mti_batcher_params_default(&defaults);
        params = &defaults;
    }
    struct mti_batcher *b = calloc(1, sizeof *b);
    if (!b) return mti__error(MTI_ERR_OUT_OF_MEMORY, "batcher");
    b->model = model;
    b->rt = model->rt;
    b->cpu = b->rt->backend == MTI_BACKEND_CPU;
    mti_status st = resolve_params(b, params);
    if (st != MTI_OK) {
        free(b);
        return st;
    }
    if (info.sequence) {
        if (b->p.seq < 1) {
            free(b);
            return mti__error(MTI_ERR_INVALID_ARGUMENT,
                              "a sequence model needs params.seq (the one sequence length)");
        }
    } else if (b->p.seq != 0) {
        int seq = b->p.seq;
        free(b);
        return mti__error(MTI_ERR_INVALID_ARGUMENT,
                          "params.seq = %d given for a [batch, features] model (use 0)", seq);
    }
    int rows = b->p.seq > 0 ? b->p.seq : 1;
    b->in_floats = rows * info.input_features;
    b->out_floats = rows * info.output_features;
    b->n_slots = b->p.executor_streams;
    if ((st = mti_mutex_init(&b->lock)) != MTI_OK) {
        free(b);
        return st;
    }
    if ((st = mti_cond_init(&b->svc_cv)) != MTI_OK) goto fail_lock;
    if ((st = mti_cond_init(&b->space_cv)) != MTI_OK) goto fail_svc_cv;
    int made = 0;
    for (; made < b->n_slots; made++) {
        st = slot_init(b, &b->slots[made], made);
        if (st != MTI_OK) {
            made++; /* free the partly built one too */
            goto fail_slots;
        }
    }
    if (b->p.warmup && (st = warm_up(b)) != MTI_OK) goto fail_slots;
    for (int i = b->n_slots - 1; i >= 0; i--)
        b->free_slots[b->n_free++] = &b->slots[i];
    if (pthread_create(&b->svc, NULL, service_main, b) != 0) {
        st = mti__error(MTI_ERR_OUT_OF_MEMORY, "cannot start the batcher's service thread");
        goto fail_slots;
    }
    b->svc_started = true;
    *out = b;
    return MTI_OK;
fail_slots:
    for (int i = 0; i < made; i++)
        slot_free(b, &b->slots[i]);
    mti_cond_destroy(&b->space_cv);
fail_svc_cv:
    mti_cond_destroy(&b->svc_cv);
fail_lock:
    mti_mutex_destroy(&b->lock);
    free(b);
    return st;
}

void mti_batcher_stop(mti_batcher_t b)
{
    if (!b) return;
    struct mti_batch_request *failed = NULL;
    struct slot *v[MAX_SLOTS];
    mti_mutex_lock(&b->lock);
    b->stopping = true;
    b->held = false;
    /* Requests still waiting for a slot: answered MTI_ERR_STOPPED. */
    struct mti_batch_request *r;
    while ((r = ovf_pop(b)) != NULL) {
        b->queued--;
        if (!r->blocking && r->deadline) b->n_async_deadlines--;
        r->state = REQ_ANSWERED;
        r->status = MTI_ERR_STOPPED;
        STAT_ADD(b, stopped, 1);
        if (!r->blocking) {
            r->next = failed;
            failed = r;
        }
    }
    mti_cond_broadcast(&b->space_cv);
    int k = pump(b, v, mti_now_ns()); /* the forming batch runs */
    unlock_wake(b);
    bump_and_wake(&b->ovf_gen, &b->ovf_sleepers);
    while (failed) {
        r = failed;
        failed = r->next;
        answer_async(r, MTI_ERR_STOPPED);
    }
    run_batches(b, v, k, true);
    /* Wait for launches in progress, readers and every thread inside a call. */
    mti_mutex_lock(&b->lock);
    for (;;) {
        int n_handoff = b->n_handoff;
        if (b->busy == 0 && n_handoff == 0 && mti_atomic_load_seq_cst(&b->active) == 0) break;
        mti_cond_signal(&b->svc_cv);
        struct timespec dl = mti_deadline_after_ms(1);
        mti_cond_wait_until(&b->space_cv, &b->lock, &dl);
    }
    unlock_wake(b);
}

void mti_batcher_destroy(mti_batcher_t b)
{
    if (!b) return;
    mti_batcher_stop(b);
    mti_mutex_lock(&b->lock);
    b->svc_exit = true;
    mti_cond_signal(&b->svc_cv);
    unlock_wake(b);
    if (b->svc_started) pthread_join(b->svc, NULL);
    for (int i = 0; i < b->n_slots; i++)
        slot_free(b, &b->slots[i]);
    mti_cond_destroy(&b->space_cv);
    mti_cond_destroy(&b->svc_cv);
    mti_mutex_destroy(&b->lock);
    free(b);
}

/* ---- stats and test hooks ------------------------------------------------------------------ */

mti_status mti_batcher_get_stats(mti_batcher_t b, mti_batcher_stats *o)
{
    MTI_CHECK_ARG(b != NULL && o != NULL, "batcher and out must not be NULL");
    memset(o, 0, sizeof *o);
#define LOAD(f) mti_atomic_load_relaxed(&b->st.f)
    o->requests = LOAD(requests);
    o->completed = LOAD(completed);
    o->failed = LOAD(failed);
    o->rejected = LOAD(rejected);
    o->timeouts = LOAD(timeouts);
    o->cancelled = LOAD(cancelled);
    o->stopped = LOAD(stopped);
    o->batches = LOAD(batches);
    o->batch_rows = LOAD(rows);
    o->padded_rows = LOAD(padded);
    o->idle_launches = LOAD(idle);
    o->full_launches = LOAD(full);
    o->delay_launches = LOAD(delay);
    o->queued_overflow = LOAD(overflow);
    for (int i = 0; i < MTI_BATCHER_HIST_BINS; i++)
        o->batch_size_hist[i] = LOAD(hist[i]);
#undef LOAD
    o->mean_batch = o->batches ? (double)o->batch_rows / (double)o->batches : 0;
    mti__lhist_percentiles(&b->st.queue_ns, &o->queue_us);
    mti__lhist_percentiles(&b->st.compute_ns, &o->compute_us);
    return MTI_OK;
}

void mti_batcher_reset_stats(mti_batcher_t b)
{
    if (!b) return;
    _Atomic uint64_t *counters[] = {
        &b->st.requests,  &b->st.completed, &b->st.failed,  &b->st.rejected, &b->st.timeouts,
        &b->st.cancelled, &b->st.stopped,   &b->st.batches, &b->st.rows,     &b->st.padded,
        &b->st.idle,      &b->st.full,      &b->st.delay,   &b->st.overflow};
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        mti_atomic_store_relaxed(counters[i], 0);
    for (int i = 0; i < MTI_BATCHER_HIST_BINS; i++)
        mti_atomic_store_relaxed(&b->st.hist[i], 0);
    mti__lhist_reset(&b->st.queue_ns);
    mti__lhist_reset(&b->st.compute_ns);
}

void mti__batcher_hold(mti_batcher_t b, bool hold)
{
    struct slot *v[MAX_SLOTS];
    mti_mutex_lock(&b->lock);
    b->held = hold;
    int k = hold ? 0 : pump(b, v, mti_now_ns());
    mti_cond_signal(&b->svc_cv);
    unlock_wake(b);
    run_batches(b, v, k, true);
}

void mti__batcher_fail_next_batch(mti_batcher_t b, mti_status status)
{
    atomic_store_explicit(&b->fail_next, (int)status, memory_order_relaxed);
}

int mti__batcher_queued(mti_batcher_t b)
{
    mti_mutex_lock(&b->lock);
    int n = b->queued;
    unlock_wake(b);
    return n;
}
