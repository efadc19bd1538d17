/*
 * Dynamic batcher tests: every request answered exactly once with its own output (checked
 * against the float64 reference) under heavy concurrency, the idle (light-load) path, queue
 * bounds and both full policies, timeouts, cancellation, priorities, an injected batch error,
 * and stop while busy. The model is a small MLP written by the test itself. Tests that need a
 * batch of known size hold the batcher (test hook) while requests accumulate.
 */
#include <sys/stat.h>

#include "batch/batch-internal.h"
#include "test-model-common.h"

#define IN  16
#define HID 32
#define OUT 8

static char g_bdir[256];
static char g_mlp[320];

/* linear 16->32, relu, linear 32->8; deterministic weights. */
static void write_mlp(const char *path)
{
    const char *cfg = "{\\\"input\\\":{\\\"features\\\":16},\\\"layers\\\":["
                      "{\\\"type\\\":\\\"linear\\\",\\\"in\\\":16,\\\"out\\\":32},"
                      "{\\\"type\\\":\\\"relu\\\"},"
                      "{\\\"type\\\":\\\"linear\\\",\\\"in\\\":32,\\\"out\\\":8}]}";
    size_t n0w = HID * IN, n0b = HID, n2w = OUT * HID, n2b = OUT;
    size_t total = n0w + n0b + n2w + n2b;
    float *data = malloc(total * sizeof(float));
    uint64_t seed = 42;
    for (size_t i = 0; i < total; i++)
        data[i] = test_randf(&seed) * 0.25f;
    char header[2048];
    size_t o0 = 0, o1 = o0 + n0w * 4, o2 = o1 + n0b * 4, o3 = o2 + n2w * 4, o4 = o3 + n2b * 4;
    snprintf(header, sizeof header,
             "{\"__metadata__\":{\"mtinfer.config\":\"%s\"},"
             "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]},"
             "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]},"
             "\"2.weight\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]},"
             "\"2.bias\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}}",
             cfg, HID, IN, o0, o1, HID, o1, o2, OUT, HID, o2, o3, OUT, o3, o4);
    write_safetensors(path, header, data, total * sizeof(float));
    free(data);
}

static int setup_batch(void **state)
{
    (void)state;
    snprintf(g_bdir, sizeof g_bdir, "/tmp/mti-batch-XXXXXX");
    if (!mkdtemp(g_bdir)) return -1;
    snprintf(g_mlp, sizeof g_mlp, "%s/mlp.safetensors", g_bdir);
    write_mlp(g_mlp);
    return 0;
}

static int teardown_batch(void **state)
{
    (void)state;
    remove(g_mlp);
    rmdir(g_bdir);
    return 0;
}

struct fixture {
    mti_runtime_t rt;
    mti_model_t model;
    mti_batcher_t b;
};

static void fixture_open(struct fixture *f, const mti_batcher_params *p)
{
    f->rt = make_test_runtime(8, MTI_POOL_BLOCK, 0);
    REQUIRE_OK(mti_model_load(f->rt, g_mlp, NULL, &f->model));
    REQUIRE_OK(mti_batcher_create(f->model, p, &f->b));
}

static void fixture_close(struct fixture *f)
{
    mti_batcher_destroy(f->b);
    mti_model_destroy(f->model);
    mti_runtime_destroy(f->rt);
}

static void make_input(uint64_t key, float *in)
{
    uint64_t s = key * 0x9E3779B97F4A7C15ull + 7;
    for (int i = 0; i < IN; i++)
        in[i] = test_randf(&s);
}

/* max |out - ref| / max |ref| of one request's output. */
static double check_output(mti_model_t m, const float *in, const float *out)
{
    double ref[OUT];
    if (mti_model_reference(m, 1, 0, in, IN, ref, OUT) != MTI_OK) return 1e9;
    mti_error_stats es;
    mti_error_stats_compute(out, ref, OUT, &es);
    return es.nonfinite ? 1e9 : es.max_abs_rel;
}

/* ---- exactly once under heavy concurrency ------------------------------------------------ */

struct hammer {
    struct fixture *f;
    int id, n, use_async;
    _Atomic int *answers; /* per request: callbacks seen */
    int bad, errors;
    double worst;
};

struct cb_ctx {
    _Atomic int *count;
    _Atomic int *status;
};

static void count_cb(void *user, mti_status st)
{
    struct cb_ctx *c = user;
    atomic_fetch_add(c->count, 1);
    atomic_store(c->status, (int)st);
}

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    float in[IN], out[OUT];
    for (int i = 0; i < h->n; i++) {
        uint64_t key = (uint64_t)h->id * 1000003u + (uint64_t)i;
        make_input(key, in);
        for (int j = 0; j < OUT; j++)
            out[j] = -12345.0f;
        mti_status st;
        if (h->use_async && (i & 1)) {
            _Atomic int status = -1;
            struct cb_ctx c = {&h->answers[i], &status};
            mti_batch_request_t r;
            st = mti_batcher_submit(h->f->b, in, out, NULL, count_cb, &c, &r);
            if (st == MTI_OK) {
                st = mti_batch_request_wait(r, -1);
                if (atomic_load(&status) != (int)st) h->bad++;
                mti_batch_request_release(r);
            }
        } else {
            st = mti_batcher_infer(h->f->b, in, out, NULL);
            atomic_fetch_add(&h->answers[i], 1);
        }
        if (st != MTI_OK) {
            h->errors++;
            continue;
        }
        double e = check_output(h->f->model, in, out);
        if (e > h->worst) h->worst = e;
        if (e > 1e-4) h->bad++;
    }
    return NULL;
}

static void run_hammer(int threads, int per_thread, int use_async, const mti_batcher_params *p)
{
    struct fixture f;
    fixture_open(&f, p);
    pthread_t t[256];
    struct hammer h[256];
    _Atomic int *answers = calloc((size_t)threads * (size_t)per_thread, sizeof *answers);
    for (int i = 0; i < threads; i++) {
        h[i] = (struct hammer){.f = &f,
                               .id = i,
                               .n = per_thread,
                               .use_async = use_async,
                               .answers = answers + (size_t)i * per_thread};
        CHECK(pthread_create(&t[i], NULL, hammer_main, &h[i]) == 0, "pthread_create");
    }
    int bad = 0, errors = 0;
    double worst = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        bad += h[i].bad;
        errors += h[i].errors;
        if (h[i].worst > worst) worst = h[i].worst;
    }
    int total = threads * per_thread, not_once = 0;
    for (int i = 0; i < total; i++)
        not_once += atomic_load(&answers[i]) != 1;
    mti_batcher_stats s;
    REQUIRE_OK(mti_batcher_get_stats(f.b, &s));
    fixture_close(&f);
    free(answers);
    CHECK_OP(errors, ==, 0, "requests that failed");
    CHECK_OP(bad, ==, 0, "wrong outputs (worst rel err %g)", worst);
    CHECK_OP(not_once, ==, 0, "requests not answered exactly once");
    CHECK_OP(s.requests, ==, (uint64_t)total);
    CHECK_OP(s.completed, ==, (uint64_t)total);
    CHECK_OP(s.batch_rows, ==, (uint64_t)total);
    CHECK_OP(s.batches, <=, (uint64_t)total);
    printf("    %d threads x %d: %llu batches, mean %.1f, overflowed %llu, queue p99 %.0f us\n",
           threads, per_thread, (unsigned long long)s.batches, s.mean_batch,
           (unsigned long long)s.queued_overflow, s.queue_us.p99);
}

static void batch__exactly_once_under_heavy_concurrency(void **state)
{
    (void)state;
    run_hammer(64, scaled(200, 20), 0, NULL);
}

static void batch__exactly_once_mixed_async_small_batches_one_stream(void **state)
{
    (void)state;
    /* One executor stream and batches of 4: most requests wait in the overflow queue and are
     * moved into batches by other threads, the path most likely to lose or mix answers. */
    mti_batcher_params p;
    mti_batcher_params_default(&p);
    p.executor_streams = 1;
    p.max_batch = 4;
    run_hammer(32, scaled(200, 20), 1, &p);
}

static void batch__exactly_once_padded_preferred_sizes(void **state)
{
    (void)state;
    mti_batcher_params p;
    mti_batcher_params_default(&p);
    p.max_batch = 16;
    p.preferred[0] = 4;
    p.preferred[1] = 8;
    p.n_preferred = 2;
    run_hammer(24, scaled(100, 10), 1, &p);
}

/* ---- light load ------------------------------------------------------------------------- */

static void batch__one_client_runs_batches_of_one_at_once(void **state)
{
    (void)state;
    struct fixture f;
    mti_batcher_params p;
    mti_batcher_params_default(&p);
    p.max_queue_delay_us = 1000000; /* a wait for company would show as 1 s */
    fixture_open(&f, &p);
    float in[IN], out[OUT];
    int n = 50;
    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
        make_input((uint64_t)i, in);
        REQUIRE_OK(mti_batcher_infer(f.b, in, out, NULL));
        CHECK(check_output(f.model, in, out) < 1e-4, "request %d output", i);
    }
    double ms = now_ms() - t0;
    mti_batcher_stats s;
    REQUIRE_OK(mti_batcher_get_stats(f.b, &s));
    fixture_close(&f);
    CHECK_OP(s.batches, ==, (uint64_t)n);
    CHECK_OP(s.batch_size_hist[0], ==, (uint64_t)n, "batches of size 1");
    CHECK_OP(s.idle_launches, ==, (uint64_t)n, "launched at once (idle path)");
    CHECK_OP(ms, <, 500.0, "50 requests must not wait for the 1 s delay");
}

/* ---- queue bounds --------------------------------------------------------------------------- */

static void noop_cb(void *user, mti_status st)
{
    _Atomic int *n = user;
    (void)st;
    atomic_fetch_add(n, 1);
}

static void batch__queue_full_rejects(void **state)
{
    (void)state;
    struct fixture f;
    mti_batcher_params p;
    mti_batcher_params_default(&p);
    p.max_queue = 4;
    fixture_open(&f, &p);
    mti__batcher_hold(f.b, true);
    float in[IN], out[8][OUT];
    make_input(1, in);
    _Atomic int answered = 0;
    for (int i = 0; i < 4; i++)
        REQUIRE_OK(mti_batcher_submit(f.b, in, out[i], NULL, noop_cb, &answered, NULL));
    CHECK_OP(mti__batcher_queued(f.b), ==, 4);
    REQUIRE_STATUS(mti_batcher_submit(f.b, in, out[4], NULL, noop_cb, &answered, NULL),
                   MTI_ERR_QUEUE_FULL);
    REQUIRE_STATUS(mti_batcher_infer(f.b, in, out[5], NULL), MTI_ERR_QUEUE_FULL);
    mti__batcher_hold(f.b, false);
    mti_batcher_stats s;
    REQUIRE_OK(mti_batcher_get_stats(f.b, &s));
    fixture_close(&f);
    CHECK_OP(atomic_load(&answered), ==, 4, "rejected requests get no callback");
    CHECK_OP(s.rejected, ==, 2ull);
    CHECK_OP(s.completed, ==, 4ull);
}

struct blocker {
    struct fixture *f;
    mti_status st;
    double ms;
};

static void *blocked_infer(void *arg)
{
    struct blocker *bl = arg;
    float in[IN], out[OUT];
    make_input(9, in);
    double t0 = now_ms();
    bl->st = mti_batcher_infer(bl->f->b, in, out, NULL);
    bl->ms = now_ms() - t0;
    if (bl->st == MTI_OK && check_output(bl->f->model, in, out) > 1e-4) bl->st = MTI_ERR_INTERNAL;
    return NULL;
}

static void batch__queue_full_blocks_until_room_or_timeout(void **state)
{
    (void)state;
    struct fixture f;
    mti_batcher_params p;
    mti_batcher_params_default(&p);
    p.max_queue = 2;
    p.full_policy = MTI_BATCH_FULL_BLOCK;
    p.full_timeout_us = 100000;
    fixture_open(&f, &p);
    mti__batcher_hold(f.b, true);
    float in[IN], out[2][OUT];
    make_input(2, in);
    mti_batch_request_t r[2];
    for (int i = 0; i < 2; i++)
        REQUIRE_OK(mti_batcher_submit(f.b, in, out[i], NULL, NULL, NULL, &r[i]));
    /* Full: a blocked caller gives up after full_timeout_us. */
    double t0 = now_ms();
    REQUIRE_STATUS(mti_batcher_infer(f.b, in, out[0], NULL), MTI_ERR_QUEUE_FULL);
    double waited = now_ms() - t0;
    CHECK_OP(waited, >=, 90.0, "blocked for the full timeout");
    /* Room appears (a cancel): a blocked caller gets in and is answered. */
    struct blocker bl = {.f = &f};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocked_infer, &bl) == 0, "pthread_create");
    sleep_ms(20);
    REQUIRE_OK(mti_batch_request_cancel(r[0]));
    sleep_ms(20);
    mti__batcher_hold(f.b, false);
    pthread_join(t, NULL);
    REQUIRE_STATUS(bl.st, MTI_OK);
    REQUIRE_STATUS(mti_batch_request_wait(r[0], -1), MTI_ERR_CANCELLED);
    REQUIRE_OK(mti_batch_request_wait(r[1], -1));
    mti_batch_request_release(r[0]);
    mti_batch_request_release(r[1]);
    fixture_close(&f);
}

/* ---- timeouts and cancellation ------------------------------------------------------------ */

static void *timed_infer(void *arg)
{
    struct blocker *bl = arg;
    float in[IN], out[OUT];
    make_input(3, in);
    mti_batch_opts o = {.priority = MTI_BATCH_PRIORITY_NORMAL, .timeout_us = 30000};
    double t0 = now_ms();
    bl->st = mti_batcher_infer(bl->f->b, in, out, &o);
    bl->ms = now_ms() - t0;
    return NULL;
}

static void batch__request_timeout_before_its_batch_starts(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f, NULL);
    mti__batcher_hold(f.b, true);
    struct blocker bl = {.f = &f};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, timed_infer, &bl) == 0, "pthread_create");
    float in[IN], out[OUT];
    make_input(4, in);
    mti_batch_opts o = {.priority = MTI_BATCH_PRIORITY_HIGH, .timeout_us = 30000};
    _Atomic int answered = 0;
    mti_batch_request_t r;
    REQUIRE_OK(mti_batcher_submit(f.b, in, out, &o, noop_cb, &answered, &r));
    pthread_join(t, NULL);
    REQUIRE_STATUS(bl.st, MTI_ERR_TIMEOUT);
    CHECK_OP(bl.ms, >=, 25.0, "waited about the timeout");
    REQUIRE_STATUS(mti_batch_request_wait(r, 2000000), MTI_ERR_TIMEOUT);
    CHECK_OP(atomic_load(&answered), ==, 1);
    mti_batch_request_release(r);
    CHECK_OP(mti__batcher_queued(f.b), ==, 0);
    mti__batcher_hold(f.b, false);
    /* The batcher still works, and nothing ran for the dead requests. */
    REQUIRE_OK(mti_batcher_infer(f.b, in, out, NULL));
    mti_batcher_stats s;
    REQUIRE_OK(mti_batcher_get_stats(f.b, &s));
    fixture_close(&f);
    CHECK_OP(s.timeouts, ==, 2ull);
    CHECK_OP(s.completed, ==, 1ull);
}

static void batch__cancel_a_queued_request(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f, NULL);
    mti__batcher_hold(f.b, true);
    float in[3][IN], out[3][OUT];
    mti_batch_request_t r[3];
    _Atomic int answered = 0;
    for (int i = 0; i < 3; i++) {
        make_input(10 + (uint64_t)i, in[i]);
        for (int j = 0; j < OUT; j++)
            out[i][j] = -1.0f;
        REQUIRE_OK(mti_batcher_submit(f.b, in[i], out[i], NULL, noop_cb, &answered, &r[i]));
    }
    REQUIRE_OK(mti_batch_request_cancel(r[1]));
    CHECK_OP(atomic_load(&answered), ==, 1, "the cancelled request's callback ran");
    REQUIRE_STATUS(mti_batch_request_wait(r[1], 0), MTI_ERR_CANCELLED);
    REQUIRE_STATUS(mti_batch_request_wait(r[0], 0), MTI_ERR_NOT_READY);
    mti__batcher_hold(f.b, false);
    REQUIRE_OK(mti_batch_request_wait(r[0], -1));
    REQUIRE_OK(mti_batch_request_wait(r[2], -1));
    CHECK(check_output(f.model, in[0], out[0]) < 1e-4, "request 0 output");
    CHECK(check_output(f.model, in[2], out[2]) < 1e-4, "request 2 output");
    CHECK_OP(out[1][0], ==, -1.0f, "a cancelled request's output is untouched");
    REQUIRE_STATUS(mti_batch_request_cancel(r[0]), MTI_ERR_BUSY);
    CHECK_OP(atomic_load(&answered), ==, 3);
    for (int i = 0; i < 3; i++)
        mti_batch_request_release(r[i]);
    mti_batcher_stats s;
    REQUIRE_OK(mti_batcher_get_stats(f.b, &s));
    fixture_close(&f);
    CHECK_OP(s.cancelled, ==, 1ull);
    CHECK_OP(s.batches, ==, 1ull);
    CHECK_OP(s.batch_rows, ==, 3ull, "the dead row still occupied its place");
}

/* Completion order with one slot of one row: high priority overtakes the normal queue. */
static _Atomic int g_order_next;
static int g_order[4];

static void order_cb(void *user, mti_status st)
{
    (void)st;
    g_order[atomic_fetch_add(&g_order_next, 1)] = (int)(intptr_t)user;
}

static void batch__high_priority_is_served_first(void **state)
{
    (void)state;
    struct fixture f;
    mti_batcher_params p;
    mti_batcher_params_default(&p);
    p.executor_streams = 1;
    p.max_batch = 1;
    fixture_open(&f, &p);
    mti__batcher_hold(f.b, true);
    atomic_store(&g_order_next, 0);
    float in[IN], out[4][OUT];
    make_input(5, in);
    mti_batch_opts hi = {.priority = MTI_BATCH_PRIORITY_HIGH, .timeout_us = 0};
    for (int i = 0; i < 4; i++)
        REQUIRE_OK(mti_batcher_submit(f.b, in, out[i], i == 3 ? &hi : NULL, order_cb,
                                      (void *)(intptr_t)i, NULL));
    mti__batcher_hold(f.b, false);
    for (int spin = 0; spin < 5000 && atomic_load(&g_order_next) < 4; spin++)
        sleep_ms(1);
    fixture_close(&f);
    CHECK_OP(atomic_load(&g_order_next), ==, 4);
    CHECK_OP(g_order[0], ==, 0, "the held batch runs first");
    CHECK_OP(g_order[1], ==, 3, "then the high-priority request");
    CHECK_OP(g_order[2], ==, 1);
    CHECK_OP(g_order[3], ==, 2);
}

/* ---- errors ------------------------------------------------------------------------------- */

static void batch__injected_error_fails_only_that_batch(void **state)
{
    (void)state;
    struct fixture f;
    fixture_open(&f, NULL);
    float in[6][IN], out[6][OUT];
    mti_batch_request_t r[6];
    for (int round = 0; round < 2; round++) {
        mti__batcher_hold(f.b, true);
        for (int i = 3 * round; i < 3 * round + 3; i++) {
            make_input(20 + (uint64_t)i, in[i]);
            REQUIRE_OK(mti_batcher_submit(f.b, in[i], out[i], NULL, NULL, NULL, &r[i]));
        }
        if (round == 0) mti__batcher_fail_next_batch(f.b, MTI_ERR_DEVICE);
        mti__batcher_hold(f.b, false);
        for (int i = 3 * round; i < 3 * round + 3; i++)
            REQUIRE_STATUS(mti_batch_request_wait(r[i], -1), round == 0 ? MTI_ERR_DEVICE : MTI_OK);
    }
    for (int i = 3; i < 6; i++)
        CHECK(check_output(f.model, in[i], out[i]) < 1e-4, "request %d after the failure", i);
    /* A blocking caller sees the batch's status too. */
    mti__batcher_fail_next_batch(f.b, MTI_ERR_DEVICE);
    REQUIRE_STATUS(mti_batcher_infer(f.b, in[0], out[0], NULL), MTI_ERR_DEVICE);
    REQUIRE_OK(mti_batcher_infer(f.b, in[0], out[0], NULL));
    for (int i = 0; i < 6; i++)
        mti_batch_request_release(r[i]);
    mti_batcher_stats s;
    REQUIRE_OK(mti_batcher_get_stats(f.b, &s));
    fixture_close(&f);
    CHECK_OP(s.failed, ==, 4ull);
    CHECK_OP(s.completed, ==, 4ull);
}

/* ---- stop ---------------------------------------------------------------------------------- */

struct stopper {
    struct fixture *f;
    int id, ok, stopped, other, bad;
    _Atomic int cb_count, cb_expected;
};

static void stop_cb(void *user, mti_status st)
{
    struct stopper *s = user;
    (void)st;
    atomic_fetch_add(&s->cb_count, 1);
}

static void *stopper_main(void *arg)
{
    struct stopper *s = arg;
    float in[IN], out[OUT], out_async[64][OUT];
    for (int i = 0;; i++) {
        make_input((uint64_t)s->id * 7919u + (uint64_t)i, in);
        mti_status st;
        if (i % 3 == 2) {
            st = mti_batcher_submit(s->f->b, in, out_async[i % 64], NULL, stop_cb, s, NULL);
            if (st == MTI_OK) atomic_fetch_add(&s->cb_expected, 1);
            /* out_async rows are reused only after 64 submits; wait for answers first */
            while (atomic_load(&s->cb_expected) - atomic_load(&s->cb_count) > 32)
                sleep_ms(1);
        } else {
            st = mti_batcher_infer(s->f->b, in, out, NULL);
            if (st == MTI_OK && check_output(s->f->model, in, out) > 1e-4) s->bad++;
        }
        if (st == MTI_OK)
            s->ok++;
        else if (st == MTI_ERR_STOPPED)
            s->stopped++;
        else
            s->other++;
        if (st == MTI_ERR_STOPPED && s->stopped > 3) break;
    }
    return NULL;
}

static void batch__stop_while_busy_answers_everyone(void **state)
{
    (void)state;
    struct fixture f;
    mti_batcher_params p;
    mti_batcher_params_default(&p);
    p.executor_streams = 1;
    p.max_batch = 4; /* overflow queue in use when stop comes */
    fixture_open(&f, &p);
    enum { N = 24 };
    pthread_t t[N];
    struct stopper s[N];
    for (int i = 0; i < N; i++) {
        memset(&s[i], 0, sizeof s[i]);
        s[i].f = &f;
        s[i].id = i;
        CHECK(pthread_create(&t[i], NULL, stopper_main, &s[i]) == 0, "pthread_create");
    }
    sleep_ms(scaled(200, 50));
    double t0 = now_ms();
    mti_batcher_stop(f.b);
    double stop_ms = now_ms() - t0;
    int ok = 0, bad = 0, other = 0, missing = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ok += s[i].ok;
        bad += s[i].bad;
        other += s[i].other;
        missing += atomic_load(&s[i].cb_expected) - atomic_load(&s[i].cb_count);
    }
    mti_batcher_stats st;
    REQUIRE_OK(mti_batcher_get_stats(f.b, &st));
    fixture_close(&f);
    CHECK_OP(ok, >, 0, "requests before the stop");
    CHECK_OP(bad, ==, 0, "wrong outputs");
    CHECK_OP(other, ==, 0, "statuses other than OK/STOPPED");
    CHECK_OP(missing, ==, 0, "async requests accepted but never answered");
    CHECK_OP(stop_ms, <, 5000.0, "stop returned");
    CHECK_OP(st.requests, ==, st.completed + st.stopped, "every accepted request answered");
}

/* ---- params -------------------------------------------------------------------------------- */

static void batch__bad_params_are_rejected(void **state)
{
    (void)state;
    mti_runtime_t rt = make_test_runtime(8, MTI_POOL_BLOCK, 0);
    mti_model_t m;
    REQUIRE_OK(mti_model_load(rt, g_mlp, NULL, &m));
    mti_batcher_t b = (mti_batcher_t)1;
    mti_batcher_params p;
    mti_batcher_params_default(&p);
    p.max_batch = -1;
    REQUIRE_STATUS(mti_batcher_create(m, &p, &b), MTI_ERR_INVALID_ARGUMENT);
    CHECK(b == NULL, "out is NULL on failure");
    mti_batcher_params_default(&p);
    p.executor_streams = -1; /* 0 means automatic */
    REQUIRE_STATUS(mti_batcher_create(m, &p, &b), MTI_ERR_INVALID_ARGUMENT);
    mti_batcher_params_default(&p);
    p.max_batch = 8;
    p.preferred[0] = 9;
    p.n_preferred = 1;
    REQUIRE_STATUS(mti_batcher_create(m, &p, &b), MTI_ERR_INVALID_ARGUMENT);
    mti_batcher_params_default(&p);
    p.seq = 4;
    REQUIRE_STATUS(mti_batcher_create(m, &p, &b), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti_batcher_create(NULL, NULL, &b), MTI_ERR_INVALID_ARGUMENT);
    mti_batcher_destroy(NULL);
    REQUIRE_OK(mti_batcher_create(m, NULL, &b));
    float in[IN] = {0}, out[OUT];
    mti_batch_opts o = {.priority = (mti_batch_priority)7, .timeout_us = 0};
    REQUIRE_STATUS(mti_batcher_infer(b, in, out, &o), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti_batcher_infer(b, NULL, out, NULL), MTI_ERR_INVALID_ARGUMENT);
    mti_batcher_stop(b);
    REQUIRE_STATUS(mti_batcher_infer(b, in, out, NULL), MTI_ERR_STOPPED);
    REQUIRE_STATUS(mti_batcher_submit(b, in, out, NULL, NULL, NULL, NULL), MTI_ERR_STOPPED);
    mti_batcher_destroy(b);
    mti_model_destroy(m);
    mti_runtime_destroy(rt);
}

static const struct CMUnitTest batch_tests[] = {
    cmocka_unit_test(batch__exactly_once_under_heavy_concurrency),
    cmocka_unit_test(batch__exactly_once_mixed_async_small_batches_one_stream),
    cmocka_unit_test(batch__exactly_once_padded_preferred_sizes),
    cmocka_unit_test(batch__one_client_runs_batches_of_one_at_once),
    cmocka_unit_test(batch__queue_full_rejects),
    cmocka_unit_test(batch__queue_full_blocks_until_room_or_timeout),
    cmocka_unit_test(batch__request_timeout_before_its_batch_starts),
    cmocka_unit_test(batch__cancel_a_queued_request),
    cmocka_unit_test(batch__high_priority_is_served_first),
    cmocka_unit_test(batch__injected_error_fails_only_that_batch),
    cmocka_unit_test(batch__stop_while_busy_answers_everyone),
    cmocka_unit_test(batch__bad_params_are_rejected),
};

int run_batch_tests(void)
{
    return cmocka_run_group_tests_name("batch", batch_tests, setup_batch, teardown_batch);
}
