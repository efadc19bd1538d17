/*
 * Streams and events on the CPU backend: submits are asynchronous, work runs in order with
 * one executor at a time even when many threads wait on the stream, cross-stream ordering
 * through events, errors from queued work, timing events.
 */
#include <math.h>
#include <string.h>

#include "test-common.h"

static mti_status set_flag(void *user)
{
    atomic_store((_Atomic int *)user, 1);
    return MTI_OK;
}

struct gate {
    _Atomic int open;
};

static mti_status wait_gate(void *user)
{
    struct gate *g = user;
    while (!atomic_load(&g->open))
        sleep_ms(1);
    return MTI_OK;
}

static void stream__submit_returns_before_the_work_runs_and_work_progresses_alone(void **state)
{
    mti_runtime_t rt = make_test_runtime(4, MTI_POOL_BLOCK, 0);
    mti_stream_t s;
    REQUIRE_OK(mti_stream_get_current(rt, &s));
    struct gate g = {0};
    _Atomic int flag = 0;
    REQUIRE_OK(mti_stream_launch_host(s, wait_gate, &g));
    REQUIRE_OK(mti_stream_launch_host(s, set_flag, &flag));
    /* Both submits returned although the first op cannot finish yet. */
    CHECK_OP(atomic_load(&flag), ==, 0);
    REQUIRE_STATUS(mti_stream_query(s), MTI_ERR_NOT_READY);
    atomic_store(&g.open, 1);
    /* Nobody synchronizes: the stream's worker must run the work by itself. */
    double t0 = now_ms();
    while (!atomic_load(&flag) && now_ms() - t0 < 5000)
        sleep_ms(1);
    CHECK_OP(atomic_load(&flag), ==, 1, "queued work never ran without a waiter");
    REQUIRE_OK(mti_stream_synchronize(s));
    REQUIRE_OK(mti_stream_query(s));
    mti_runtime_destroy(rt);
}

/* ---- order with many concurrent waiters (the executor token) ------------------------------ */

struct order_state {
    int next; /* deliberately not atomic: only one executor may touch it at a time */
    _Atomic int errors;
    _Atomic int in_op;
};

struct order_op {
    struct order_state *st;
    int index;
};

static mti_status check_order(void *user)
{
    struct order_op *op = user;
    if (atomic_fetch_add(&op->st->in_op, 1) != 0)
        atomic_fetch_add(&op->st->errors, 1); /* two ops of one stream ran at once */
    if (op->st->next != op->index) atomic_fetch_add(&op->st->errors, 1);
    for (volatile int spin = 0; spin < 200; spin++) {
    }
    op->st->next = op->index + 1;
    atomic_fetch_sub(&op->st->in_op, 1);
    return MTI_OK;
}

struct sync_arg {
    mti_stream_t s;
    _Atomic int *stop;
};

static void *sync_hammer(void *p)
{
    struct sync_arg *a = p;
    while (!atomic_load(a->stop)) {
        mti_stream_synchronize(a->s);
        mti_stream_query(a->s);
    }
    return NULL;
}

static void stream__ops_run_in_order_one_at_a_time_under_concurrent_waiters(void **state)
{
    mti_runtime_t rt = make_test_runtime(4, MTI_POOL_BLOCK, 0);
    mti_stream_t s;
    REQUIRE_OK(mti_stream_acquire(rt, &s));
    int n = scaled(20000, 2000);
    struct order_state st = {0};
    struct order_op *ops = calloc((size_t)n, sizeof *ops);
    _Atomic int stop = 0;
    struct sync_arg sa = {s, &stop};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, sync_hammer, &sa);
    for (int i = 0; i < n; i++) {
        ops[i] = (struct order_op){&st, i};
        REQUIRE_OK(mti_stream_launch_host(s, check_order, &ops[i]));
    }
    REQUIRE_OK(mti_stream_synchronize(s));
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    CHECK_OP(atomic_load(&st.errors), ==, 0, "ops ran out of order or concurrently");
    CHECK_OP(st.next, ==, n);
    free(ops);
    mti_stream_release(s);
    mti_runtime_destroy(rt);
}

/* ---- cross-stream producer/consumer through events, with buffer reuse --------------------- */

struct check_arg {
    const unsigned char *data;
    size_t bytes;
    unsigned char expect;
    _Atomic int *bad;
};

static mti_status slow_check(void *user)
{
    struct check_arg *c = user;
    sleep_ms(2);
    for (size_t i = 0; i < c->bytes; i++)
        if (c->data[i] != c->expect) {
            atomic_fetch_add(c->bad, 1);
            break;
        }
    return MTI_OK;
}

/* The producer fills a buffer, the consumer (another stream, ordered by an event) reads it
 * slowly; the producer frees the buffer and immediately reallocates and overwrites. The
 * consumer must still see the first value: reuse waits for the consumer's use to end. */
static void stream__producer_consumer_events_and_buffer_reuse(void **state)
{
    SKIP_UNLESS_CPU();
    mti_runtime_t rt = make_test_runtime(4, MTI_POOL_BLOCK, 0);
    mti_stream_t prod, cons;
    REQUIRE_OK(mti_stream_acquire(rt, &prod));
    REQUIRE_OK(mti_stream_acquire(rt, &cons));
    mti_event_t filled;
    REQUIRE_OK(mti_event_create(rt, 0, &filled));
    _Atomic int bad = 0;
    int rounds = scaled(200, 20);
    struct check_arg *checks = calloc((size_t)rounds, sizeof *checks);
    enum { BYTES = 4096 };
    for (int r = 0; r < rounds; r++) {
        unsigned char value = (unsigned char)(1 + r % 200);
        mti_buffer_t buf;
        REQUIRE_OK(mti_buffer_alloc(prod, BYTES, &buf));
        REQUIRE_OK(mti_memset_async(prod, mti_buffer_ptr(buf), value, BYTES));
        REQUIRE_OK(mti_event_record(filled, prod));
        REQUIRE_OK(mti_stream_wait_event(cons, filled));
        checks[r] = (struct check_arg){mti_buffer_ptr(buf), BYTES, value, &bad};
        REQUIRE_OK(mti_stream_launch_host(cons, slow_check, &checks[r]));
        REQUIRE_OK(mti_buffer_record_stream(buf, cons));
        mti_buffer_free(buf);
        /* Reuse on the producer at once: must not get the block the consumer still reads. */
        mti_buffer_t next;
        REQUIRE_OK(mti_buffer_alloc(prod, BYTES, &next));
        REQUIRE_OK(mti_memset_async(prod, mti_buffer_ptr(next), 0xEE, BYTES));
        mti_buffer_free(next);
    }
    REQUIRE_OK(mti_stream_synchronize(prod));
    REQUIRE_OK(mti_stream_synchronize(cons));
    CHECK_OP(atomic_load(&bad), ==, 0, "consumer saw a reused (overwritten) buffer");
    mti_alloc_stats as;
    REQUIRE_OK(mti_runtime_alloc_stats(rt, &as));
    CHECK_OP(as.allocated, ==, 0);
    mti_event_destroy(filled);
    free(checks);
    mti_stream_release(prod);
    mti_stream_release(cons);
    mti_runtime_destroy(rt);
}

static void stream__wait_event_orders_work_across_streams(void **state)
{
    mti_runtime_t rt = make_test_runtime(4, MTI_POOL_BLOCK, 0);
    mti_stream_t a, b;
    REQUIRE_OK(mti_stream_acquire(rt, &a));
    REQUIRE_OK(mti_stream_acquire(rt, &b));
    mti_event_t e;
    REQUIRE_OK(mti_event_create(rt, 0, &e));
    REQUIRE_STATUS(mti_event_query(e), MTI_OK); /* never recorded: complete */
    struct gate g = {0};
    _Atomic int after = 0;
    REQUIRE_OK(mti_stream_launch_host(a, wait_gate, &g));
    REQUIRE_OK(mti_event_record(e, a));
    REQUIRE_OK(mti_stream_wait_event(b, e));
    REQUIRE_OK(mti_stream_launch_host(b, set_flag, &after));
    sleep_ms(50);
    CHECK_OP(atomic_load(&after), ==, 0, "b ran before a's event");
    REQUIRE_STATUS(mti_event_query(e), MTI_ERR_NOT_READY);
    atomic_store(&g.open, 1);
    REQUIRE_OK(mti_stream_synchronize(b)); /* helps run a's work too */
    CHECK_OP(atomic_load(&after), ==, 1);
    REQUIRE_OK(mti_event_synchronize(e));
    REQUIRE_OK(mti_event_query(e));
    mti_event_destroy(e);
    mti_stream_release(a);
    mti_stream_release(b);
    mti_runtime_destroy(rt);
}

static mti_status fail_op(void *user)
{
    (void)user;
    return MTI_ERR_DEVICE;
}

static void stream__error_of_queued_work_is_reported_once_by_synchronize(void **state)
{
    mti_runtime_t rt = make_test_runtime(2, MTI_POOL_BLOCK, 0);
    mti_stream_t s;
    REQUIRE_OK(mti_stream_acquire(rt, &s));
    _Atomic int later = 0;
    REQUIRE_OK(mti_stream_launch_host(s, fail_op, NULL));
    REQUIRE_OK(mti_stream_launch_host(s, set_flag, &later));
    REQUIRE_STATUS(mti_stream_synchronize(s), MTI_ERR_DEVICE);
    CHECK_OP(atomic_load(&later), ==, 1, "work after a failed op did not run");
    REQUIRE_OK(mti_stream_synchronize(s)); /* cleared */
    /* A release reports the pending error and still returns the slot. */
    REQUIRE_OK(mti_stream_launch_host(s, fail_op, NULL));
    REQUIRE_STATUS(mti_stream_release(s), MTI_ERR_DEVICE);
    mti_pool_stats ps;
    REQUIRE_OK(mti_runtime_pool_stats(rt, &ps));
    CHECK_OP(ps.in_use, ==, 0);
    mti_runtime_destroy(rt);
}

static void stream__timing_events_measure_elapsed_time(void **state)
{
    mti_runtime_t rt = make_test_runtime(2, MTI_POOL_BLOCK, 0);
    mti_stream_t s;
    REQUIRE_OK(mti_stream_get_current(rt, &s));
    mti_event_t start, stop, plain;
    REQUIRE_OK(mti_event_create(rt, 1, &start));
    REQUIRE_OK(mti_event_create(rt, 1, &stop));
    REQUIRE_OK(mti_event_create(rt, 0, &plain));
    REQUIRE_OK(mti_event_record(start, s));
    REQUIRE_OK(mti_stream_launch_host(s, host_sleep_ms, (void *)(intptr_t)30));
    REQUIRE_OK(mti_event_record(stop, s));
    REQUIRE_OK(mti_event_record(plain, s));
    REQUIRE_OK(mti_event_synchronize(stop));
    float ms = 0;
    REQUIRE_OK(mti_event_elapsed_ms(start, stop, &ms));
    CHECK_OP(ms, >=, 29.0f, "elapsed %.2f ms", ms);
    CHECK_OP(ms, <, 2000.0f);
    REQUIRE_STATUS(mti_event_elapsed_ms(start, plain, &ms), MTI_ERR_NOT_READY);
    mti_event_destroy(start);
    mti_event_destroy(stop);
    mti_event_destroy(plain);
    mti_runtime_destroy(rt);
}

/* ---- serialization policies keep results right -------------------------------------------- */

struct policy_arg {
    mti_runtime_t rt;
    _Atomic int *bad;
};

static void *policy_thread(void *p)
{
    struct policy_arg *a = p;
    mti_stream_t s;
    if (mti_stream_get_current(a->rt, &s) != MTI_OK) {
        atomic_fetch_add(a->bad, 1);
        return NULL;
    }
    unsigned char src[512], dst[512];
    for (int r = 0; r < scaled(300, 30); r++) {
        memset(src, r & 0xFF, sizeof src);
        mti_buffer_t b;
        mti_buffer_alloc(s, sizeof src, &b);
        mti_memcpy_async(s, mti_buffer_ptr(b), src, sizeof src, MTI_COPY_HOST_TO_DEVICE);
        mti_memcpy_async(s, dst, mti_buffer_ptr(b), sizeof dst, MTI_COPY_DEVICE_TO_HOST);
        mti_stream_synchronize(s);
        if (memcmp(src, dst, sizeof src) != 0) atomic_fetch_add(a->bad, 1);
        mti_buffer_free(b);
    }
    return NULL;
}

static void stream__every_serialization_policy_gives_right_answers(void **state)
{
    mti_serialization policies[] = {MTI_SERIAL_PER_STREAM, MTI_SERIAL_GLOBAL, MTI_SERIAL_SEMAPHORE};
    for (int i = 0; i < 3; i++) {
        mti_runtime_params p;
        mti_runtime_params_default(&p);
        p.backend = test_backend();
        p.serialization = policies[i];
        p.serial_limit = 2;
        mti_runtime_t rt;
        REQUIRE_OK(mti_runtime_create(&p, &rt));
        _Atomic int bad = 0;
        struct policy_arg a = {rt, &bad};
        pthread_t t[8];
        for (int k = 0; k < 8; k++)
            pthread_create(&t[k], NULL, policy_thread, &a);
        for (int k = 0; k < 8; k++)
            pthread_join(t[k], NULL);
        CHECK_OP(atomic_load(&bad), ==, 0, "policy %d", (int)policies[i]);
        mti_runtime_destroy(rt);
    }
}

/* ---- graphs ------------------------------------------------------------------------------ */

/* Capture copy-in, linear, copy-out once; replay with fresh inputs; destroy with launches queued.
 */
static void stream__graph_capture_and_replay(void **state)
{
    mti_runtime_t rt = make_test_runtime(2, MTI_POOL_BLOCK, 0);
    mti_stream_t s;
    REQUIRE_OK(mti_stream_get_current(rt, &s));
    enum { K = 32, N = 16 };
    float w[N * K], *x, y[N];
    REQUIRE_OK(mti_host_alloc(rt, sizeof(float) * K, (void **)&x));
    uint64_t rng = 5;
    for (int i = 0; i < N * K; i++)
        w[i] = test_randf(&rng);
    mti_buffer_t bx, bw, by;
    REQUIRE_OK(mti_buffer_alloc(s, sizeof(float) * K, &bx));
    REQUIRE_OK(mti_buffer_alloc(s, sizeof w, &bw));
    REQUIRE_OK(mti_buffer_alloc(s, sizeof y, &by));
    REQUIRE_OK(mti_memcpy_async(s, mti_buffer_ptr(bw), w, sizeof w, MTI_COPY_HOST_TO_DEVICE));
    REQUIRE_OK(mti_stream_synchronize(s));
    REQUIRE_OK(mti_stream_begin_capture(s));
    REQUIRE_STATUS(mti_stream_synchronize(s), MTI_ERR_BUSY);
    REQUIRE_OK(
        mti_memcpy_async(s, mti_buffer_ptr(bx), x, sizeof(float) * K, MTI_COPY_HOST_TO_DEVICE));
    REQUIRE_OK(mti_linear_async(s, mti_buffer_ptr(bx), mti_buffer_ptr(bw), NULL, mti_buffer_ptr(by),
                                1, N, K, MTI_ACT_RELU));
    REQUIRE_OK(mti_memcpy_async(s, y, mti_buffer_ptr(by), sizeof y, MTI_COPY_DEVICE_TO_HOST));
    mti_graph_t g;
    REQUIRE_OK(mti_stream_end_capture(s, &g));
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < K; i++)
            x[i] = test_randf(&rng);
        for (int i = 0; i < N; i++)
            y[i] = -1.0f;
        REQUIRE_OK(mti_graph_launch(g, s));
        REQUIRE_OK(mti_stream_synchronize(s));
        for (int i = 0; i < N; i++) {
            double ref = 0;
            for (int k = 0; k < K; k++)
                ref += (double)w[i * K + k] * x[k];
            ref = ref > 0 ? ref : 0;
            CHECK_OP(fabs(y[i] - ref), <, 1e-4, "round %d row %d", round, i);
        }
    }
    REQUIRE_OK(mti_graph_launch(g, s));
    mti_graph_destroy(g); /* a launch is still queued: it must still run safely */
    REQUIRE_OK(mti_stream_synchronize(s));
    mti_buffer_free(bx);
    mti_buffer_free(bw);
    mti_buffer_free(by);
    mti_host_free(rt, x);
    mti_runtime_destroy(rt);
}

static const struct CMUnitTest stream_tests[] = {
    cmocka_unit_test(stream__submit_returns_before_the_work_runs_and_work_progresses_alone),
    cmocka_unit_test(stream__ops_run_in_order_one_at_a_time_under_concurrent_waiters),
    cmocka_unit_test(stream__producer_consumer_events_and_buffer_reuse),
    cmocka_unit_test(stream__wait_event_orders_work_across_streams),
    cmocka_unit_test(stream__error_of_queued_work_is_reported_once_by_synchronize),
    cmocka_unit_test(stream__timing_events_measure_elapsed_time),
    cmocka_unit_test(stream__every_serialization_policy_gives_right_answers),
    cmocka_unit_test(stream__graph_capture_and_replay),
};
int run_stream_tests(void)
{
    return cmocka_run_group_tests_name("stream", stream_tests, NULL, NULL);
}
