/*
 * Stream pool: exclusive ownership under contention, slots returned at thread exit (churn),
 * exhaustion policies with their timeouts, no lost wake-up, release only after the work
 * drained, round-robin sharing. Broken twins (tests/run-broken-twins.sh) make the targeted
 * tests here fail.
 */
#include <string.h>

#include "test-common.h"

/* Per-slot holder counts: a second holder of one slot is a broken pool. */
static _Atomic int holders[16 * 64]; /* by (device, slot) */
static _Atomic int violations;

static void hold_slot(mti_stream_t s)
{
    int key = mti_stream_device(s) * 64 + mti_stream_slot(s);
    if (atomic_fetch_add(&holders[key], 1) != 0) atomic_fetch_add(&violations, 1);
}

static void unhold_slot(mti_stream_t s)
{
    atomic_fetch_sub(&holders[mti_stream_device(s) * 64 + mti_stream_slot(s)], 1);
}

/* ---- 31 threads hammering acquire/submit/sync --------------------------------------------- */

struct hammer_arg {
    mti_runtime_t rt;
    int id, rounds;
    _Atomic int *mismatches;
};

/* Each round: a private pattern goes host -> device buffer -> linear -> host, checked. */
static void *hammer_thread(void *p)
{
    struct hammer_arg *a = p;
    enum { K = 16, N = 8 };
    float w[N * K], x[K], y[N], bias[N];
    uint64_t rng = 0xC0FFEEu + (uint64_t)a->id;
    for (int i = 0; i < N * K; i++)
        w[i] = test_randf(&rng);
    for (int i = 0; i < N; i++)
        bias[i] = test_randf(&rng);
    for (int r = 0; r < a->rounds; r++) {
        mti_stream_t s;
        if (mti_stream_acquire(a->rt, &s) != MTI_OK) {
            atomic_fetch_add(a->mismatches, 1);
            continue;
        }
        hold_slot(s);
        for (int i = 0; i < K; i++)
            x[i] = test_randf(&rng);
        mti_buffer_t bx, bw, bb, by;
        mti_buffer_alloc(s, sizeof x, &bx);
        mti_buffer_alloc(s, sizeof w, &bw);
        mti_buffer_alloc(s, sizeof bias, &bb);
        mti_buffer_alloc(s, sizeof y, &by);
        mti_memcpy_async(s, mti_buffer_ptr(bx), x, sizeof x, MTI_COPY_HOST_TO_DEVICE);
        mti_memcpy_async(s, mti_buffer_ptr(bw), w, sizeof w, MTI_COPY_HOST_TO_DEVICE);
        mti_memcpy_async(s, mti_buffer_ptr(bb), bias, sizeof bias, MTI_COPY_HOST_TO_DEVICE);
        mti_linear_async(s, mti_buffer_ptr(bx), mti_buffer_ptr(bw), mti_buffer_ptr(bb),
                         mti_buffer_ptr(by), 1, N, K, MTI_ACT_NONE);
        mti_memcpy_async(s, y, mti_buffer_ptr(by), sizeof y, MTI_COPY_DEVICE_TO_HOST);
        mti_status st = mti_stream_synchronize(s);
        for (int i = 0; i < N; i++) {
            double ref = bias[i];
            for (int k = 0; k < K; k++)
                ref += (double)w[i * K + k] * x[k];
            if (st != MTI_OK || (y[i] - ref) * (y[i] - ref) > 1e-8)
                atomic_fetch_add(a->mismatches, 1);
        }
        mti_buffer_free(bx);
        mti_buffer_free(bw);
        mti_buffer_free(bb);
        mti_buffer_free(by);
        unhold_slot(s);
        mti_stream_release(s);
    }
    return NULL;
}

static void run_hammer(int threads, int pool_size, int rounds)
{
    mti_runtime_t rt = make_test_runtime(pool_size, MTI_POOL_BLOCK, 0);
    atomic_store(&violations, 0);
    pthread_t tid[64];
    struct hammer_arg args[64];
    _Atomic int mismatches = 0;
    for (int i = 0; i < threads; i++) {
        args[i] = (struct hammer_arg){rt, i, rounds, &mismatches};
        pthread_create(&tid[i], NULL, hammer_thread, &args[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    mti_pool_stats ps;
    REQUIRE_OK(mti_runtime_pool_stats(rt, &ps));
    CHECK_OP(atomic_load(&violations), ==, 0, "a slot had two holders at once");
    CHECK_OP(atomic_load(&mismatches), ==, 0, "wrong results");
    CHECK_OP(ps.in_use, ==, 0, "slots not returned");
    CHECK_OP(ps.peak_in_use, <=, ps.size); /* pool_size per device */
    CHECK_OP(ps.acquires, ==, (uint64_t)threads * rounds);
    mti_alloc_stats as;
    REQUIRE_OK(mti_runtime_alloc_stats(rt, &as));
    CHECK_OP(as.allocated, ==, 0, "buffers leaked in the allocator's accounting");
    mti_runtime_destroy(rt);
}

static void pool__thirty_one_threads_hammer_own_slots(void **state)
{
    run_hammer(31, 32, scaled(400, 20));
}

/* More threads than slots: every acquire contends; ownership must stay exclusive. */
static void pool__exclusive_ownership_under_contention(void **state)
{
    run_hammer(31, 4, scaled(300, 30));
}

/* ---- thread churn ------------------------------------------------------------------------- */

static _Atomic int churn_done;

static mti_status mark_done(void *user)
{
    atomic_fetch_add((_Atomic int *)user, 1);
    return MTI_OK;
}

/* A short-lived thread: take the current stream, queue work, exit without releasing. */
static void *churn_thread(void *p)
{
    mti_runtime_t rt = p;
    mti_stream_t s;
    if (mti_stream_get_current(rt, &s) == MTI_OK) {
        mti_stream_launch_host(s, host_sleep_ms, (void *)(intptr_t)0);
        mti_stream_launch_host(s, mark_done, &churn_done);
    }
    return NULL;
}

static void pool__two_hundred_short_lived_threads_return_their_slots(void **state)
{
    mti_runtime_t rt = make_test_runtime(8, MTI_POOL_BLOCK, 0);
    atomic_store(&churn_done, 0);
    /* in sequence */
    for (int i = 0; i < 200; i++) {
        pthread_t t;
        pthread_create(&t, NULL, churn_thread, rt);
        pthread_join(t, NULL);
    }
    mti_pool_stats ps;
    REQUIRE_OK(mti_runtime_pool_stats(rt, &ps));
    CHECK_OP(ps.in_use, ==, 0);
    CHECK_OP(atomic_load(&churn_done), ==, 200, "work queued before exit did not run");
    /* in waves of 25 (more than the 8 slots: the rest wait for exiting threads) */
    for (int wave = 0; wave < 8; wave++) {
        pthread_t t[25];
        for (int i = 0; i < 25; i++)
            pthread_create(&t[i], NULL, churn_thread, rt);
        for (int i = 0; i < 25; i++)
            pthread_join(t[i], NULL);
    }
    REQUIRE_OK(mti_runtime_pool_stats(rt, &ps));
    CHECK_OP(ps.in_use, ==, 0, "slots not returned after waves");
    CHECK_OP(ps.peak_in_use, <=, ps.size); /* 8 per device */
    CHECK_OP(ps.streams_created, <=, ps.size, "streams are per slot, created once");
    CHECK_OP(atomic_load(&churn_done), ==, 400);
    mti_runtime_destroy(rt);
}

/* ---- release only after the work drained -------------------------------------------------- */

struct drain_token {
    _Atomic int done;
};

static mti_status slow_mark(void *user)
{
    sleep_ms(20);
    atomic_store(&((struct drain_token *)user)->done, 1);
    return MTI_OK;
}

static void pool__slot_returns_only_after_its_work_drained(void **state)
{
    mti_runtime_t rt = make_test_runtime_on(0, 1, MTI_POOL_BLOCK, 0);
    for (int round = 0; round < 5; round++) {
        struct drain_token token = {0};
        mti_stream_t s;
        REQUIRE_OK(mti_stream_acquire(rt, &s));
        REQUIRE_OK(mti_stream_launch_host(s, slow_mark, &token));
        mti_stream_release(s);
        /* The only slot: whoever gets it next must find the previous work finished. */
        REQUIRE_OK(mti_stream_acquire(rt, &s));
        CHECK_OP(atomic_load(&token.done), ==, 1,
                 "round %d: slot handed out while its work was still queued", round);
        mti_stream_release(s);
    }
    mti_runtime_destroy(rt);
}

static struct drain_token exit_token;

static void *exit_with_pending_work(void *p)
{
    mti_stream_t s;
    if (mti_stream_get_current(p, &s) == MTI_OK) mti_stream_launch_host(s, slow_mark, &exit_token);
    return NULL;
}

static void pool__thread_exit_drains_before_returning_the_slot(void **state)
{
    mti_runtime_t rt = make_test_runtime_on(0, 1, MTI_POOL_BLOCK, 0);
    atomic_store(&exit_token.done, 0);
    pthread_t t;
    pthread_create(&t, NULL, exit_with_pending_work, rt);
    pthread_join(t, NULL);
    mti_stream_t s;
    REQUIRE_OK(mti_stream_acquire(rt, &s));
    CHECK_OP(atomic_load(&exit_token.done), ==, 1);
    mti_stream_release(s);
    mti_runtime_destroy(rt);
}

/* ---- exhaustion policies ------------------------------------------------------------------ */

static void pool__exhaustion_fail_returns_at_once(void **state)
{
    mti_runtime_t rt = make_test_runtime_on(0, 2, MTI_POOL_FAIL, 0);
    mti_stream_t a, b, c = (mti_stream_t)0x1;
    REQUIRE_OK(mti_stream_acquire(rt, &a));
    REQUIRE_OK(mti_stream_acquire(rt, &b));
    CHECK_OP(mti_stream_slot(a), !=, mti_stream_slot(b));
    double t0 = now_ms();
    REQUIRE_STATUS(mti_stream_acquire(rt, &c), MTI_ERR_POOL_EXHAUSTED);
    CHECK_OP(now_ms() - t0, <, 50.0, "fail policy waited");
    CHECK(c == NULL, "failed");
    CHECK(strstr(mti_last_error_message(), "MTI_POOL_SIZE") != NULL,
          "message should say how to fix it: %s", mti_last_error_message());
    mti_pool_stats ps;
    REQUIRE_OK(mti_runtime_pool_stats(rt, &ps));
    CHECK_OP(ps.exhausted, ==, 1);
    mti_stream_release(a);
    REQUIRE_OK(mti_stream_acquire(rt, &c));
    mti_stream_release(b);
    mti_stream_release(c);
    mti_runtime_destroy(rt);
}

static void pool__exhaustion_wait_honours_the_timeout(void **state)
{
    mti_runtime_t rt = make_test_runtime_on(0, 1, MTI_POOL_WAIT, 150);
    mti_stream_t a, b = NULL;
    REQUIRE_OK(mti_stream_acquire(rt, &a));
    double t0 = now_ms();
    REQUIRE_STATUS(mti_stream_acquire(rt, &b), MTI_ERR_TIMEOUT);
    double waited = now_ms() - t0;
    CHECK_OP(waited, >=, 149.0, "returned before the timeout");
    CHECK_OP(waited, <, 150.0 + 1000.0, "overslept the timeout");
    mti_pool_stats ps;
    REQUIRE_OK(mti_runtime_pool_stats(rt, &ps));
    CHECK_OP(ps.timeouts, ==, 1);
    CHECK_OP(ps.waits, ==, 1);
    mti_stream_release(a);
    mti_runtime_destroy(rt);
}

struct waiter_arg {
    mti_runtime_t rt;
    mti_status status;
    double waited_ms;
};

static void *waiter_thread(void *p)
{
    struct waiter_arg *w = p;
    mti_stream_t s;
    double t0 = now_ms();
    w->status = mti_stream_acquire(w->rt, &s);
    w->waited_ms = now_ms() - t0;
    if (w->status == MTI_OK) mti_stream_release(s);
    return NULL;
}

/* A waiter already asleep must be woken by the release (no lost wake-up). */
static void check_waiter_woken(mti_pool_exhaustion policy)
{
    mti_runtime_t rt = make_test_runtime_on(0, 1, policy, 3000);
    for (int round = 0; round < 3; round++) {
        mti_stream_t held;
        REQUIRE_OK(mti_stream_acquire(rt, &held));
        struct waiter_arg w = {rt, MTI_ERR_INTERNAL, 0};
        pthread_t t;
        pthread_create(&t, NULL, waiter_thread, &w);
        sleep_ms(100); /* let the waiter fall asleep */
        mti_stream_release(held);
        pthread_join(t, NULL);
        CHECK_OP(w.status, ==, MTI_OK, "round %d: waiter got %s", round,
                 mti_status_string(w.status));
        CHECK_OP(w.waited_ms, <, 1500.0, "round %d: waiter slept %.0f ms after release", round,
                 w.waited_ms);
    }
    mti_runtime_destroy(rt);
}

static void pool__waiter_is_woken_by_release_wait_policy(void **state)
{
    check_waiter_woken(MTI_POOL_WAIT);
}

static void pool__waiter_is_woken_by_release_block_policy(void **state)
{
    check_waiter_woken(MTI_POOL_BLOCK);
}

/* A second release of a slot nobody re-acquired is refused (it would otherwise free the slot
 * of whoever takes it next). A stream handle names its slot, so a release after someone else
 * re-acquired the same slot cannot be told apart from theirs: callers must not do that. */
static void pool__double_release_is_refused(void **state)
{
    mti_runtime_t rt = make_test_runtime_on(0, 2, MTI_POOL_FAIL, 0);
    mti_stream_t a, b, c;
    REQUIRE_OK(mti_stream_acquire(rt, &a));
    REQUIRE_OK(mti_stream_release(a));
    REQUIRE_STATUS(mti_stream_release(a), MTI_ERR_INVALID_ARGUMENT);
    /* The pool is intact: both slots can be held, and only two. */
    REQUIRE_OK(mti_stream_acquire(rt, &b));
    REQUIRE_OK(mti_stream_acquire(rt, &c));
    CHECK_OP(mti_stream_slot(b), !=, mti_stream_slot(c));
    REQUIRE_STATUS(mti_stream_acquire(rt, &a), MTI_ERR_POOL_EXHAUSTED);
    REQUIRE_OK(mti_stream_release(b));
    REQUIRE_OK(mti_stream_release(c));
    mti_runtime_destroy(rt);
}

/* ---- round-robin sharing (the seeds' final design) ---------------------------------------- */

static void pool__round_robin_shares_streams_safely(void **state)
{
    mti_runtime_params p;
    mti_runtime_params_default(&p);
    p.backend = test_backend();
    p.pool_size = 3;
    p.assign = MTI_ASSIGN_ROUND_ROBIN;
    mti_runtime_t rt;
    REQUIRE_OK(mti_runtime_create(&p, &rt));
    pthread_t tid[12];
    struct hammer_arg args[12];
    _Atomic int mismatches = 0;
    /* Streams are shared here, so hammer_thread's holder count is not checked. */
    for (int i = 0; i < 12; i++) {
        args[i] = (struct hammer_arg){rt, i, scaled(200, 20), &mismatches};
        pthread_create(&tid[i], NULL, hammer_thread, &args[i]);
    }
    for (int i = 0; i < 12; i++)
        pthread_join(tid[i], NULL);
    CHECK_OP(atomic_load(&mismatches), ==, 0, "wrong results on shared streams");
    mti_pool_stats ps;
    REQUIRE_OK(mti_runtime_pool_stats(rt, &ps));
    CHECK_OP(ps.streams_created, <=, 3);
    mti_runtime_destroy(rt);
}

static const struct CMUnitTest pool_tests[] = {
    cmocka_unit_test(pool__thirty_one_threads_hammer_own_slots),
    cmocka_unit_test(pool__exclusive_ownership_under_contention),
    cmocka_unit_test(pool__two_hundred_short_lived_threads_return_their_slots),
    cmocka_unit_test(pool__slot_returns_only_after_its_work_drained),
    cmocka_unit_test(pool__thread_exit_drains_before_returning_the_slot),
    cmocka_unit_test(pool__exhaustion_fail_returns_at_once),
    cmocka_unit_test(pool__exhaustion_wait_honours_the_timeout),
    cmocka_unit_test(pool__waiter_is_woken_by_release_wait_policy),
    cmocka_unit_test(pool__waiter_is_woken_by_release_block_policy),
    cmocka_unit_test(pool__double_release_is_refused),
    cmocka_unit_test(pool__round_robin_shares_streams_safely),
};
int run_pool_tests(void)
{
    return cmocka_run_group_tests_name("pool", pool_tests, NULL, NULL);
}
