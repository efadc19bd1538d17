/*
 * Fault injection (src/base/fault.h): the N-th device allocation, the N-th backend
 * submission, and a stream's queued work reporting an error. In each case exactly the
 * affected request gets an error status, a thread running beside it keeps getting correct
 * answers, the allocator returns to its baseline once the model is gone, and the runtime
 * answers correctly afterwards. These tests need a build with -DMTI_FAULT_INJECTION (make
 * stress-ci builds one under the sanitizers); elsewhere they skip, except the spec parser's.
 * The hooks sit in the runtime, not a backend: the same tests run on CUDA (MTI_TEST_BACKEND).
 */
#include "test-model-common.h"

#include "base/fault.h"

static char g_dir[256];
static char g_model[300];

static int setup_stress(void **state)
{
    (void)state;
    make_temp_dir(g_dir, sizeof g_dir);
    snprintf(g_model, sizeof g_model, "%s/tiny.safetensors", g_dir);
    char header[1024];
    snprintf(header, sizeof header, "{\"__metadata__\":{\"mtinfer.config\":\"%s\"},%s}",
             TINY_CONFIG, TINY_TENSORS);
    float data[15];
    tiny_data(data);
    write_safetensors(g_model, header, data, sizeof data);
    return 0;
}

static int teardown_stress(void **state)
{
    (void)state;
    mti__fault_configure("");
    remove_temp_dir(g_dir);
    return 0;
}

/* The model's answer for a 4-float input (the reference, rounded to float). */
static void expected(mti_model_t m, const float in[4], float out[3])
{
    double ref[3];
    REQUIRE_OK(mti_model_reference(m, 1, 0, in, 4, ref, 3));
    for (int i = 0; i < 3; i++)
        out[i] = (float)ref[i];
}

static int same(const float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= 1e-5f * (1.0f + fabsf(b[i])))) return 0;
    return 1;
}

/* A thread beside the faulty one: its own input, every answer checked. */
struct bystander {
    mti_model_t m;
    _Atomic int ready, stop, done;
    int wrong, failed;
    mti_status first_error;
};

static void *bystander_main(void *p)
{
    struct bystander *b = p;
    float in[4] = {0.9f, -0.3f, 0.4f, 0.75f}, want[3], out[3];
    expected(b->m, in, want);
    while (!atomic_load(&b->stop)) {
        for (int i = 0; i < 3; i++)
            out[i] = NAN;
        mti_status st = mti_model_infer(b->m, 1, 0, in, 4, out, 3);
        if (st != MTI_OK) {
            if (!b->failed++) b->first_error = st;
        } else if (!same(out, want, 3)) {
            b->wrong++;
        }
        atomic_fetch_add(&b->done, 1);
        atomic_store(&b->ready, 1);
    }
    return NULL;
}

/* Allocator back to zero once the model is gone, and a fresh model answers correctly. */
static void check_baseline_and_usable(mti_runtime_t rt)
{
    mti_alloc_stats a;
    REQUIRE_OK(mti_runtime_release_cached(rt));
    REQUIRE_OK(mti_runtime_alloc_stats(rt, &a));
    CHECK_OP(a.allocated, ==, (size_t)0);
    CHECK_OP(a.cached, ==, (size_t)0);
    CHECK_OP(a.deferred, ==, (size_t)0);
    mti_model_t m;
    REQUIRE_OK(mti_model_load(rt, g_model, NULL, &m));
    float in[4] = {0.1f, 0.2f, -0.7f, 0.5f}, want[3], out[3];
    expected(m, in, want);
    REQUIRE_OK(mti_model_infer(m, 1, 0, in, 4, out, 3));
    CHECK(same(out, want, 3), "after the faults: got %g %g %g, want %g %g %g", out[0], out[1],
          out[2], want[0], want[1], want[2]);
    mti_model_destroy(m);
}

/* Runs `requests` requests on this thread with spec armed while a bystander runs; returns how
 * many of this thread's requests failed (with status want_err); the rest must be correct. */
static int run_with_fault(const char *spec, mti_status want_err, int requests,
                          int *bystander_failed)
{
    mti_runtime_t rt = make_test_runtime(4, MTI_POOL_BLOCK, 0);
    mti_alloc_stats a;
    REQUIRE_OK(mti_runtime_alloc_stats(rt, &a));
    CHECK_OP(a.allocated, ==, (size_t)0);
    mti_model_t m;
    REQUIRE_OK(mti_model_load(rt, g_model, NULL, &m));
    struct bystander b = {.m = m};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, bystander_main, &b) == 0, "pthread_create");
    while (!atomic_load(&b.ready))
        sleep_ms(1);
    /* the bystander's plan exists: from here on only this thread allocates */
    REQUIRE_OK(mti__fault_configure(spec));
    float in[4] = {-0.5f, 0.25f, 1.0f, -0.125f}, want[3], out[3];
    expected(m, in, want);
    int failed = 0;
    for (int r = 0; r < requests; r++) {
        for (int i = 0; i < 3; i++)
            out[i] = NAN;
        mti_status st = mti_model_infer(m, 1, 0, in, 4, out, 3);
        if (st != MTI_OK) {
            CHECK(st == want_err, "request %d: %s (%s), expected %s", r, mti_status_string(st),
                  mti_last_error_message(), mti_status_string(want_err));
            failed++;
            continue;
        }
        CHECK(same(out, want, 3), "request %d: got %g %g %g, want %g %g %g", r, out[0], out[1],
              out[2], want[0], want[1], want[2]);
    }
    int before = atomic_load(&b.done);
    while (atomic_load(&b.done) < before + 20)
        sleep_ms(1);
    atomic_store(&b.stop, 1);
    pthread_join(th, NULL);
    fprintf(stderr,
            "# %s: fired alloc %llu submit %llu stream_error %llu; failed here %d, "
            "beside %d of %d\n",
            spec, (unsigned long long)mti__fault_fired(MTI_FAULT_ALLOC),
            (unsigned long long)mti__fault_fired(MTI_FAULT_SUBMIT),
            (unsigned long long)mti__fault_fired(MTI_FAULT_STREAM_ERROR), failed, b.failed,
            atomic_load(&b.done));
    REQUIRE_OK(mti__fault_configure(""));
    CHECK_OP(b.wrong, ==, 0, "the bystander got wrong answers");
    *bystander_failed = b.failed;
    mti_model_destroy(m);
    check_baseline_and_usable(rt);
    mti_runtime_destroy(rt);
    return failed;
}

#define SKIP_UNLESS_FAULTS()                                                                       \
    do {                                                                                           \
        if (!mti__fault_enabled()) skip();                                                         \
    } while (0)

static void stress__fault_spec_is_parsed_strictly(void **state)
{
    (void)state;
    REQUIRE_STATUS(mti__fault_configure("alloc"), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti__fault_configure("disk:1"), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti__fault_configure("submit:0"), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti__fault_configure("submit:1:2:3:4"), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti__fault_configure("submit:x"), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti__fault_configure("alloc:2:2:50,submit:40:1:97,stream_error:70"),
                   mti__fault_enabled() ? MTI_OK : MTI_ERR_UNSUPPORTED);
    REQUIRE_OK(mti__fault_configure(""));
}

/* The first allocation fails and so does the OOM path's retry: that request (the first of a
 * new plan) gets MTI_ERR_OUT_OF_MEMORY; the next one builds its plan and is correct. */
static void stress__fault_alloc_fails_only_the_affected_request(void **state)
{
    (void)state;
    SKIP_UNLESS_FAULTS();
    int bystander_failed = -1;
    int failed = run_with_fault("alloc:1:2", MTI_ERR_OUT_OF_MEMORY, 10, &bystander_failed);
    CHECK_OP(failed, ==, 1);
    CHECK_OP(bystander_failed, ==, 0);
    CHECK_OP(mti__fault_fired(MTI_FAULT_ALLOC), ==, (uint64_t)0, "(counters reset)");
}

/* One failed allocation is absorbed by the allocator's release-and-retry: no request fails. */
static void stress__fault_alloc_single_failure_is_retried(void **state)
{
    (void)state;
    SKIP_UNLESS_FAULTS();
    int bystander_failed = -1;
    int failed = run_with_fault("alloc:1", MTI_ERR_OUT_OF_MEMORY, 10, &bystander_failed);
    CHECK_OP(failed, ==, 0);
    CHECK_OP(bystander_failed, ==, 0);
}

/* Submissions of both threads count; exactly one request, on either thread, fails. */
static void stress__fault_submit_fails_exactly_one_request(void **state)
{
    (void)state;
    SKIP_UNLESS_FAULTS();
    int bystander_failed = -1;
    int failed = run_with_fault("submit:7", MTI_ERR_DEVICE, 50, &bystander_failed);
    CHECK_OP(failed + bystander_failed, ==, 1);
}

static void stress__fault_stream_error_fails_exactly_one_request(void **state)
{
    (void)state;
    SKIP_UNLESS_FAULTS();
    int bystander_failed = -1;
    int failed = run_with_fault("stream_error:7", MTI_ERR_DEVICE, 50, &bystander_failed);
    CHECK_OP(failed + bystander_failed, ==, 1);
}

/* Periodic faults of every kind while two threads run: errors only where injected. */
static void stress__fault_periodic_every_kind(void **state)
{
    (void)state;
    SKIP_UNLESS_FAULTS();
    int bystander_failed = -1;
    int failed = run_with_fault("submit:5:1:23,stream_error:9:1:31", MTI_ERR_DEVICE,
                                scaled(400, 100), &bystander_failed);
    CHECK_OP(failed, >, 0);
}

static const struct CMUnitTest stress_tests[] = {
    cmocka_unit_test(stress__fault_spec_is_parsed_strictly),
    cmocka_unit_test(stress__fault_alloc_fails_only_the_affected_request),
    cmocka_unit_test(stress__fault_alloc_single_failure_is_retried),
    cmocka_unit_test(stress__fault_submit_fails_exactly_one_request),
    cmocka_unit_test(stress__fault_stream_error_fails_exactly_one_request),
    cmocka_unit_test(stress__fault_periodic_every_kind),
};

int run_stress_tests(void)
{
    return cmocka_run_group_tests_name("stress", stress_tests, setup_stress, teardown_stress);
}
