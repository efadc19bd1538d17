/* nn.Linear on the CPU backend against a float64 reference, every activation, batch 1 and 7. */
#include <math.h>

#include "test-common.h"

static double activate(double v, mti_activation act)
{
    switch (act) {
    case MTI_ACT_RELU:
        return v > 0 ? v : 0;
    case MTI_ACT_GELU:
        return 0.5 * v * (1 + erf(v / sqrt(2.0)));
    case MTI_ACT_GELU_TANH:
        return 0.5 * v * (1 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    default:
        return v;
    }
}

static void check_linear(int m, int n, int k, mti_activation act, int with_bias)
{
    mti_runtime_t rt = make_test_runtime(2, MTI_POOL_BLOCK, 0);
    mti_stream_t s;
    REQUIRE_OK(mti_stream_get_current(rt, &s));
    uint64_t rng = (uint64_t)(m * 1000 + n * 10 + act);
    float *x = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * n * k);
    float *b = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * m * n);
    for (int i = 0; i < m * k; i++)
        x[i] = test_randf(&rng);
    for (int i = 0; i < n * k; i++)
        w[i] = test_randf(&rng) / sqrtf((float)k);
    for (int i = 0; i < n; i++)
        b[i] = test_randf(&rng);
    for (int i = 0; i < m * n; i++)
        y[i] = NAN; /* poison: every output must be written */
    /* Through device buffers, so the same test runs on the GPU (make test-gpu). */
    mti_buffer_t dx, dw, db, dy;
    REQUIRE_OK(mti_buffer_alloc(s, sizeof(float) * m * k, &dx));
    REQUIRE_OK(mti_buffer_alloc(s, sizeof(float) * n * k, &dw));
    REQUIRE_OK(mti_buffer_alloc(s, sizeof(float) * n, &db));
    REQUIRE_OK(mti_buffer_alloc(s, sizeof(float) * m * n, &dy));
    REQUIRE_OK(
        mti_memcpy_async(s, mti_buffer_ptr(dx), x, sizeof(float) * m * k, MTI_COPY_HOST_TO_DEVICE));
    REQUIRE_OK(
        mti_memcpy_async(s, mti_buffer_ptr(dw), w, sizeof(float) * n * k, MTI_COPY_HOST_TO_DEVICE));
    REQUIRE_OK(
        mti_memcpy_async(s, mti_buffer_ptr(db), b, sizeof(float) * n, MTI_COPY_HOST_TO_DEVICE));
    REQUIRE_OK(mti_memcpy_async(s, mti_buffer_ptr(dy), y, sizeof(float) * m * n,
                                MTI_COPY_HOST_TO_DEVICE)); /* the NaN poison */
    REQUIRE_OK(mti_linear_async(s, mti_buffer_ptr(dx), mti_buffer_ptr(dw),
                                with_bias ? mti_buffer_ptr(db) : NULL, mti_buffer_ptr(dy), m, n, k,
                                act));
    REQUIRE_OK(
        mti_memcpy_async(s, y, mti_buffer_ptr(dy), sizeof(float) * m * n, MTI_COPY_DEVICE_TO_HOST));
    REQUIRE_OK(mti_stream_synchronize(s));
    mti_buffer_free(dx);
    mti_buffer_free(dw);
    mti_buffer_free(db);
    mti_buffer_free(dy);
    double err2 = 0, ref2 = 0;
    for (int r = 0; r < m; r++)
        for (int c = 0; c < n; c++) {
            double acc = with_bias ? b[c] : 0;
            for (int i = 0; i < k; i++)
                acc += (double)x[r * k + i] * w[c * k + i];
            double ref = activate(acc, act);
            double got = y[r * n + c];
            CHECK(isnan(got) == 0, "y[%d,%d] not written", r, c);
            err2 += (got - ref) * (got - ref);
            ref2 += ref * ref;
        }
    CHECK_OP(sqrt(err2 / (ref2 + 1e-30)), <, 1e-5, "m=%d act=%d bias=%d", m, act, with_bias);
    free(x);
    free(w);
    free(b);
    free(y);
    mti_runtime_destroy(rt);
}

static void linear__matches_float64_reference(void **state)
{
    for (int act = MTI_ACT_NONE; act <= MTI_ACT_GELU_TANH; act++)
        for (int bias = 0; bias <= 1; bias++) {
            check_linear(1, 64, 96, (mti_activation)act, bias);
            check_linear(7, 33, 50, (mti_activation)act, bias);
        }
}

static void linear__bad_shapes_are_rejected(void **state)
{
    mti_runtime_t rt = make_test_runtime(2, MTI_POOL_BLOCK, 0);
    mti_stream_t s;
    REQUIRE_OK(mti_stream_get_current(rt, &s));
    float v[4];
    REQUIRE_STATUS(mti_linear_async(s, v, v, NULL, v, 0, 1, 1, MTI_ACT_NONE),
                   MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti_linear_async(s, v, v, NULL, v, 1, 1, 1, (mti_activation)9),
                   MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti_linear_async(s, NULL, v, NULL, v, 1, 1, 1, MTI_ACT_NONE),
                   MTI_ERR_INVALID_ARGUMENT);
    mti_runtime_destroy(rt);
}

static const struct CMUnitTest linear_tests[] = {
    cmocka_unit_test(linear__matches_float64_reference),
    cmocka_unit_test(linear__bad_shapes_are_rejected),
};
int run_linear_tests(void)
{
    return cmocka_run_group_tests_name("linear", linear_tests, NULL, NULL);
}
