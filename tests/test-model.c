/*
 * Models against independent float64 forwards: files written by scripts/make_compat_models.py
 * (numpy only, PyTorch's names and semantics), loaded with the config in the metadata and
 * from a separate JSON file; the async form; many threads calling mti_model_infer at once
 * (exclusive and round-robin streams), every output checked against the reference.
 */
#include "test-model-common.h"

static char g_dir[256];
static int g_have_models;

/* Runs the numpy script once into a temp dir (skips the tests when python3+numpy is absent). */
static int setup_models(void **state)
{
    (void)state;
    make_temp_dir(g_dir, sizeof g_dir);
    const char *src = getenv("MTI_SOURCE_DIR");
    const char *pythons[] = {getenv("MTI_PYTHON"), "python3", "/usr/bin/python3"};
    for (size_t i = 0; i < sizeof pythons / sizeof pythons[0] && !g_have_models; i++) {
        if (!pythons[i]) continue;
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "%s -c 'import numpy' 2>/dev/null && %s %s/scripts/make_compat_models.py %s",
                 pythons[i], pythons[i], src ? src : ".", g_dir);
        g_have_models = system(cmd) == 0;
    }
    if (!g_have_models)
        fprintf(stderr, "model tests: python3 with numpy not found; compat tests skipped\n");
    return 0;
}

static int teardown_models(void **state)
{
    (void)state;
    remove_temp_dir(g_dir);
    return 0;
}

struct compat {
    int batch, seq;
    float *x;
    double *want;
    size_t n_in, n_out;
};

static void compat_load(const char *name, struct compat *c)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.shape", g_dir, name);
    FILE *fp = fopen(path, "r");
    CHECK(fp && fscanf(fp, "%d %d", &c->batch, &c->seq) == 2, "%s", path);
    fclose(fp);
    snprintf(path, sizeof path, "%s/%s.input.f32", g_dir, name);
    c->x = read_bytes(path, &c->n_in);
    c->n_in /= sizeof(float);
    snprintf(path, sizeof path, "%s/%s.expected.f64", g_dir, name);
    c->want = read_bytes(path, &c->n_out);
    c->n_out /= sizeof(double);
}

static void compat_free(struct compat *c)
{
    free(c->x);
    free(c->want);
}

static mti_model_t load(mti_runtime_t rt, const char *file, const char *config)
{
    char path[512], cpath[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, file);
    mti_model_params mp;
    mti_model_params_default(&mp);
    if (config) {
        snprintf(cpath, sizeof cpath, "%s/%s", g_dir, config);
        mp.config_path = cpath;
    }
    mti_model_t m = NULL;
    REQUIRE_OK(mti_model_load(rt, path, &mp, &m));
    return m;
}

static void check_close(const float *got, const double *want, size_t n, double tol,
                        const char *what)
{
    mti_error_stats es;
    mti_error_stats_compute(got, want, n, &es);
    CHECK_OP(es.nonfinite, ==, (size_t)0, "%s", what);
    CHECK_OP(es.rel_l2, <, tol, "%s: rel_l2", what);
    CHECK_OP(es.max_abs_rel, <, tol, "%s: max_abs_rel", what);
}

static void run_compat(const char *name, const char *file, const char *config)
{
    if (!g_have_models) skip();
    mti_runtime_t rt = make_test_runtime(4, MTI_POOL_BLOCK, 0);
    struct compat c;
    compat_load(name, &c);
    mti_model_t m = load(rt, file, config);
    float *y = malloc(sizeof(float) * c.n_out);
    double *ref = malloc(sizeof(double) * c.n_out);
    /* several calls: warm-up, capture (CUDA), replay */
    for (int i = 0; i < 3; i++) {
        memset(y, 0xff, sizeof(float) * c.n_out); /* NaN poison */
        REQUIRE_OK(mti_model_infer(m, c.batch, c.seq, c.x, c.n_in, y, c.n_out));
        check_close(y, c.want, c.n_out, 1e-5, name);
    }
    REQUIRE_OK(mti_model_reference(m, c.batch, c.seq, c.x, c.n_in, ref, c.n_out));
    for (size_t i = 0; i < c.n_out; i++)
        CHECK(fabs(ref[i] - c.want[i]) <= 1e-9 * (1 + fabs(c.want[i])),
              "reference[%zu] %.12g vs numpy %.12g", i, ref[i], c.want[i]);
    free(y);
    free(ref);
    mti_model_destroy(m);
    compat_free(&c);
    mti_runtime_destroy(rt);
}

static void model__mlp_matches_numpy(void **state)
{
    run_compat("mlp", "mlp.safetensors", NULL);
}

static void model__mlp_plain_state_dict_with_config_file(void **state)
{
    run_compat("mlp", "mlp-plain.safetensors", "mlp.json");
}

static void model__transformer_matches_numpy(void **state)
{
    run_compat("transformer", "transformer.safetensors", NULL);
}

static void model__transformer_plain_state_dict_with_config_file(void **state)
{
    run_compat("transformer", "transformer-plain.safetensors", "transformer.json");
}

static void model__info_describes_the_model(void **state)
{
    if (!g_have_models) skip();
    mti_runtime_t rt = make_test_runtime(2, MTI_POOL_BLOCK, 0);
    mti_model_t m = load(rt, "transformer.safetensors", NULL);
    mti_model_info info;
    REQUIRE_OK(mti_model_get_info(m, &info));
    CHECK_OP(info.sequence, ==, 1);
    CHECK_OP(info.input_features, ==, 32);
    CHECK_OP(info.output_features, ==, 8);
    CHECK_OP(info.n_layers, ==, 5);
    CHECK_OP(info.n_params, ==, (size_t)20600);
    CHECK(strstr(mti_model_summary(m), "transformer_encoder_layer") != NULL, "%s",
          mti_model_summary(m));
    mti_model_destroy(m);
    mti_runtime_destroy(rt);
}

/* The async form on device buffers, twice on one stream (the plan's workspace is reused). */
static void model__async_on_device_buffers(void **state)
{
    if (!g_have_models) skip();
    mti_runtime_t rt = make_test_runtime(2, MTI_POOL_BLOCK, 0);
    struct compat c;
    compat_load("transformer", &c);
    mti_model_t m = load(rt, "transformer.safetensors", NULL);
    mti_stream_t s;
    REQUIRE_OK(mti_stream_get_current(rt, &s));
    mti_buffer_t din, dout[2];
    REQUIRE_OK(mti_buffer_alloc(s, sizeof(float) * c.n_in, &din));
    REQUIRE_OK(mti_buffer_alloc(s, sizeof(float) * c.n_out, &dout[0]));
    REQUIRE_OK(mti_buffer_alloc(s, sizeof(float) * c.n_out, &dout[1]));
    REQUIRE_OK(mti_memcpy_async(s, mti_buffer_ptr(din), c.x, sizeof(float) * c.n_in,
                                MTI_COPY_HOST_TO_DEVICE));
    for (int i = 0; i < 2; i++)
        REQUIRE_OK(mti_model_infer_async(m, s, c.batch, c.seq, mti_buffer_ptr(din),
                                         mti_buffer_ptr(dout[i])));
    float *y = malloc(sizeof(float) * c.n_out);
    for (int i = 0; i < 2; i++) {
        REQUIRE_OK(mti_memcpy_async(s, y, mti_buffer_ptr(dout[i]), sizeof(float) * c.n_out,
                                    MTI_COPY_DEVICE_TO_HOST));
        REQUIRE_OK(mti_stream_synchronize(s));
        check_close(y, c.want, c.n_out, 1e-5, "async");
    }
    free(y);
    mti_buffer_free(din);
    mti_buffer_free(dout[0]);
    mti_buffer_free(dout[1]);
    mti_model_destroy(m);
    compat_free(&c);
    mti_runtime_destroy(rt);
}

/* ---- precision ------------------------------------------------------------------------------ */

static mti_model_t load_with_precision(mti_runtime_t rt, const char *file, mti_precision prec)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, file);
    mti_model_params mp;
    mti_model_params_default(&mp);
    mp.precision = prec;
    mti_model_t m = NULL;
    REQUIRE_OK(mti_model_load(rt, path, &mp, &m));
    return m;
}

/* A TF32 or BF16 model next to an fp32 one on the same runtime (so the same streams, and on
 * CUDA the same per-stream cuBLASLt plan cache with the same GEMM shapes): on CUDA the reduced
 * precision model is within tol of the float64 reference (TF32 lands near 3e-4, 2e-3 allowed;
 * BF16 near 1e-3 to 3e-3, 1e-2 allowed) and the fp32 model stays fp32 (within 1e-5), which
 * fails if the cache key ignored the precision. On the CPU, which has neither TF32 nor a bf16
 * GEMM, the model computes in fp32: bit-identical to the fp32 model. */
static void run_precision(const char *name, const char *file, mti_precision prec, double tol)
{
    if (!g_have_models) skip();
    const char *what = prec == MTI_PRECISION_BF16 ? "bf16" : "tf32";
    mti_runtime_t rt = make_test_runtime(2, MTI_POOL_BLOCK, 0);
    struct compat c;
    compat_load(name, &c);
    mti_model_t m32 = load_with_precision(rt, file, MTI_PRECISION_FP32);
    mti_model_t mlo = load_with_precision(rt, file, prec);
    float *y32 = malloc(sizeof(float) * c.n_out), *ylo = malloc(sizeof(float) * c.n_out);
    int cpu = test_backend() == MTI_BACKEND_CPU;
    mti_error_stats es = {0};
    /* interleaved, several calls each: warm-up, capture (CUDA), replay */
    for (int i = 0; i < 3; i++) {
        memset(ylo, 0xff, sizeof(float) * c.n_out); /* NaN poison */
        REQUIRE_OK(mti_model_infer(mlo, c.batch, c.seq, c.x, c.n_in, ylo, c.n_out));
        memset(y32, 0xff, sizeof(float) * c.n_out);
        REQUIRE_OK(mti_model_infer(m32, c.batch, c.seq, c.x, c.n_in, y32, c.n_out));
        check_close(y32, c.want, c.n_out, 1e-5, "fp32 model beside a reduced-precision one");
        if (cpu) {
            CHECK(memcmp(ylo, y32, sizeof(float) * c.n_out) == 0,
                  "%s: a %s model on the CPU must compute exactly as fp32 (y[0] %.9g vs %.9g)",
                  name, what, ylo[0], y32[0]);
        } else {
            check_close(ylo, c.want, c.n_out, tol, what);
            mti_error_stats_compute(ylo, c.want, c.n_out, &es);
        }
    }
    if (!cpu)
        fprintf(stderr, "%s %s on cuda: rel_l2 %.3e, max_abs_rel %.3e vs float64\n", what, name,
                es.rel_l2, es.max_abs_rel);
    free(y32);
    free(ylo);
    mti_model_destroy(mlo);
    mti_model_destroy(m32);
    compat_free(&c);
    mti_runtime_destroy(rt);
}

static void model__tf32_mlp(void **state)
{
    run_precision("mlp", "mlp.safetensors", MTI_PRECISION_TF32, 2e-3);
}

static void model__tf32_transformer(void **state)
{
    run_precision("transformer", "transformer.safetensors", MTI_PRECISION_TF32, 2e-3);
}

static void model__bf16_mlp(void **state)
{
    run_precision("mlp", "mlp.safetensors", MTI_PRECISION_BF16, 1e-2);
}

static void model__bf16_transformer(void **state)
{
    run_precision("transformer", "transformer.safetensors", MTI_PRECISION_BF16, 1e-2);
}

/* ---- threads -------------------------------------------------------------------------------- */

#define MAX_BATCH 4

struct thread_case {
    mti_model_t model;
    mti_model_info info;
    int seq;
    uint64_t seed;
    int iterations;
    /* per batch size 1..MAX_BATCH: input and float64 reference */
    float *x[MAX_BATCH + 1];
    double *ref[MAX_BATCH + 1];
    int failures;
    char message[256];
};

static void *infer_thread(void *arg)
{
    struct thread_case *t = arg;
    size_t row_out = (size_t)t->info.output_features * (t->info.sequence ? t->seq : 1);
    size_t row_in = (size_t)t->info.input_features * (t->info.sequence ? t->seq : 1);
    float *y = malloc(sizeof(float) * row_out * MAX_BATCH);
    uint64_t rng = t->seed;
    for (int it = 0; it < t->iterations; it++) {
        int b = 1 + (int)(test_rand(&rng) % MAX_BATCH);
        mti_status st = mti_model_infer(t->model, b, t->info.sequence ? t->seq : 0, t->x[b],
                                        row_in * b, y, row_out * b);
        if (st != MTI_OK) {
            snprintf(t->message, sizeof t->message, "infer: %s", mti_last_error_message());
            t->failures++;
            break;
        }
        mti_error_stats es;
        mti_error_stats_compute(y, t->ref[b], row_out * b, &es);
        if (es.rel_l2 > 1e-5 || es.nonfinite) {
            snprintf(t->message, sizeof t->message, "batch %d: rel_l2 %.3g nonfinite %zu", b,
                     es.rel_l2, es.nonfinite);
            t->failures++;
            break;
        }
    }
    free(y);
    return NULL;
}

static void run_threads(const char *file, mti_stream_assign assign, int pool_size, int n_threads)
{
    if (!g_have_models) skip();
    mti_runtime_params p;
    mti_runtime_params_default(&p);
    p.backend = test_backend();
    p.pool_size = pool_size;
    p.assign = assign;
    mti_runtime_t rt;
    REQUIRE_OK(mti_runtime_create(&p, &rt));
    mti_model_t m = load(rt, file, NULL);
    struct thread_case *tc = calloc((size_t)n_threads, sizeof *tc);
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    for (int i = 0; i < n_threads; i++) {
        struct thread_case *t = &tc[i];
        t->model = m;
        REQUIRE_OK(mti_model_get_info(m, &t->info));
        t->seq = 3 + i % 4;
        t->seed = 1000 + (uint64_t)i;
        t->iterations = scaled(40, 4);
        size_t rows1 = t->info.sequence ? (size_t)t->seq : 1;
        uint64_t rng = t->seed * 7;
        for (int b = 1; b <= MAX_BATCH; b++) {
            size_t n_in = rows1 * b * t->info.input_features;
            size_t n_out = rows1 * b * t->info.output_features;
            t->x[b] = malloc(sizeof(float) * n_in);
            t->ref[b] = malloc(sizeof(double) * n_out);
            for (size_t k = 0; k < n_in; k++)
                t->x[b][k] = test_randf(&rng);
            REQUIRE_OK(mti_model_reference(m, b, t->info.sequence ? t->seq : 0, t->x[b], n_in,
                                           t->ref[b], n_out));
        }
    }
    for (int i = 0; i < n_threads; i++)
        CHECK(pthread_create(&th[i], NULL, infer_thread, &tc[i]) == 0, "pthread_create");
    for (int i = 0; i < n_threads; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < n_threads; i++) {
        CHECK(tc[i].failures == 0, "thread %d: %s", i, tc[i].message);
        for (int b = 1; b <= MAX_BATCH; b++) {
            free(tc[i].x[b]);
            free(tc[i].ref[b]);
        }
    }
    free(tc);
    free(th);
    mti_model_destroy(m);
    mti_runtime_destroy(rt);
}

static void model__threads_exclusive_streams_mlp(void **state)
{
    run_threads("mlp.safetensors", MTI_ASSIGN_EXCLUSIVE, 16, 8);
}

static void model__threads_exclusive_streams_transformer(void **state)
{
    run_threads("transformer.safetensors", MTI_ASSIGN_EXCLUSIVE, 16, 6);
}

static void model__threads_round_robin_shared_streams(void **state)
{
    run_threads("transformer.safetensors", MTI_ASSIGN_ROUND_ROBIN, 2, 6);
}

static void model__threads_pool_smaller_than_threads(void **state)
{
    run_threads("mlp.safetensors", MTI_ASSIGN_EXCLUSIVE, 2, 6);
}

static const struct CMUnitTest model_tests[] = {
    cmocka_unit_test(model__mlp_matches_numpy),
    cmocka_unit_test(model__mlp_plain_state_dict_with_config_file),
    cmocka_unit_test(model__transformer_matches_numpy),
    cmocka_unit_test(model__transformer_plain_state_dict_with_config_file),
    cmocka_unit_test(model__info_describes_the_model),
    cmocka_unit_test(model__async_on_device_buffers),
    cmocka_unit_test(model__tf32_mlp),
    cmocka_unit_test(model__tf32_transformer),
    cmocka_unit_test(model__bf16_mlp),
    cmocka_unit_test(model__bf16_transformer),
    cmocka_unit_test(model__threads_exclusive_streams_mlp),
    cmocka_unit_test(model__threads_exclusive_streams_transformer),
    cmocka_unit_test(model__threads_round_robin_shared_streams),
    cmocka_unit_test(model__threads_pool_smaller_than_threads),
};

int run_model_tests(void)
{
    return cmocka_run_group_tests_name("model", model_tests, setup_models, teardown_models);
}
