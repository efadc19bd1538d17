/*
 * Bad model files and bad calls (the list): each must fail with a clear status and a
 * message naming the problem, without crashing or leaking (ASan's leak check runs the suite).
 * Also NaN/Inf inputs, which are computed through.
 */
#include "test-model-common.h"

static char g_dir[256];
static mti_runtime_t g_rt;

static int setup_bad(void **state)
{
    (void)state;
    make_temp_dir(g_dir, sizeof g_dir);
    g_rt = make_test_runtime(2, MTI_POOL_BLOCK, 0);
    return 0;
}

static int teardown_bad(void **state)
{
    (void)state;
    mti_runtime_destroy(g_rt);
    remove_temp_dir(g_dir);
    return 0;
}

/* Loads path (config: NULL or a file), expects want and a message containing needle. */
static void expect_load_error(const char *path, const char *config, mti_status want,
                              const char *needle)
{
    mti_model_params mp;
    mti_model_params_default(&mp);
    mp.config_path = config;
    mti_model_t m = (mti_model_t)0x1;
    REQUIRE_STATUS(mti_model_load(g_rt, path, &mp, &m), want);
    CHECK(m == NULL, "out must be NULL on failure");
    const char *msg = mti_last_error_message();
    CHECK(strstr(msg, needle) != NULL, "message '%s' does not mention '%s'", msg, needle);
}

static void file_with(const char *name, const char *tensors_json, const void *data, size_t n,
                      char *path, size_t size)
{
    char header[4096];
    snprintf(header, sizeof header, "{\"__metadata__\":{\"mtinfer.config\":\"%s\"},%s}",
             TINY_CONFIG, tensors_json);
    snprintf(path, size, "%s/%s", g_dir, name);
    write_safetensors(path, header, data, n);
}

static void bad__valid_tiny_model_loads(void **state)
{
    float data[15];
    tiny_data(data);
    char path[512];
    file_with("ok.safetensors", TINY_TENSORS, data, sizeof data, path, sizeof path);
    mti_model_t m;
    REQUIRE_OK(mti_model_load(g_rt, path, NULL, &m));
    float x[4] = {1, -2, 3, 0.5f}, y[3];
    double ref[3];
    REQUIRE_OK(mti_model_infer(m, 1, 0, x, 4, y, 3));
    REQUIRE_OK(mti_model_reference(m, 1, 0, x, 4, ref, 3));
    for (int i = 0; i < 3; i++)
        CHECK(fabs(y[i] - ref[i]) < 1e-5, "y[%d] %g vs %g", i, y[i], ref[i]);
    mti_model_destroy(m);
}

static void bad__missing_file(void **state)
{
    char path[512];
    snprintf(path, sizeof path, "%s/does-not-exist.safetensors", g_dir);
    expect_load_error(path, NULL, MTI_ERR_NOT_FOUND, "does-not-exist");
}

static void bad__truncated_file(void **state)
{
    char path[512];
    snprintf(path, sizeof path, "%s/short", g_dir);
    write_bytes(path, "\x10\x00\x00", 3);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "truncated");
    write_bytes(path, "", 0);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "truncated");
    /* a valid file cut inside its data */
    float data[15];
    tiny_data(data);
    file_with("cut.safetensors", TINY_TENSORS, data, sizeof data - 8, path, sizeof path);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "outside the data");
}

static void bad__header_length_larger_than_file(void **state)
{
    char path[512];
    snprintf(path, sizeof path, "%s/long-header", g_dir);
    unsigned char buf[16] = {0xff, 0x00, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_bytes(path, buf, sizeof buf);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "header length");
}

static void bad__header_not_json(void **state)
{
    char path[512];
    snprintf(path, sizeof path, "%s/not-json", g_dir);
    write_safetensors(path, "{\"0.weight\": {dtype: F32", NULL, 0);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "not valid JSON");
    write_safetensors(path, "{\"0.weight\": 5}", NULL, 0);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "'0.weight'");
}

static void bad__not_safetensors_at_all(void **state)
{
    char path[512];
    snprintf(path, sizeof path, "%s/picture.png", g_dir);
    const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                                 'I',  'H', 'D', 'R', 0,    0,    0,    1,    0, 0, 0, 1};
    write_bytes(path, png, sizeof png);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "not a safetensors file");
    snprintf(path, sizeof path, "%s/text.txt", g_dir);
    const char *text = "hello, this is a text file and not a model at all\n";
    write_bytes(path, text, strlen(text));
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "not a safetensors file");
    /* a directory */
    expect_load_error(g_dir, NULL, MTI_ERR_IO, "not a regular file");
}

static void bad__offsets_outside_or_overlapping(void **state)
{
    float data[15];
    tiny_data(data);
    char path[512];
    file_with("outside.safetensors",
              "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"
              "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[60,72]}",
              data, sizeof data, path, sizeof path);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "outside the data");
    file_with("overlap.safetensors",
              "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"
              "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[40,52]}",
              data, sizeof data, path, sizeof path);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "overlap");
    file_with("span.safetensors",
              "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,44]},"
              "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}",
              data, sizeof data, path, sizeof path);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "spans 44 bytes");
    file_with("negative.safetensors",
              "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[-8,40]},"
              "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}",
              data, sizeof data, path, sizeof path);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "data_offsets");
}

static void bad__dtype_or_shape_mismatch(void **state)
{
    float data[15];
    tiny_data(data);
    char path[512];
    file_with("f16.safetensors",
              "\"0.weight\":{\"dtype\":\"F16\",\"shape\":[3,4],\"data_offsets\":[0,24]},"
              "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}",
              data, sizeof data, path, sizeof path);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "dtype F16");
    file_with("shape.safetensors",
              "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]},"
              "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}",
              data, sizeof data, path, sizeof path);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "shape [4, 3]");
    file_with("dtype-name.safetensors",
              "\"0.weight\":{\"dtype\":\"Q4\",\"shape\":[3,4],\"data_offsets\":[0,48]},"
              "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}",
              data, sizeof data, path, sizeof path);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "unknown dtype");
}

static void bad__missing_or_extra_tensors(void **state)
{
    float data[16];
    tiny_data(data);
    data[15] = 0;
    char path[512];
    file_with("missing.safetensors",
              "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]}", data, 48,
              path, sizeof path);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "missing tensor '0.bias'");
    file_with("extra.safetensors",
              TINY_TENSORS ",\"1.weight\":{\"dtype\":\"F32\",\"shape\":[1],"
                           "\"data_offsets\":[60,64]}",
              data, sizeof data, path, sizeof path);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "extra tensor '1.weight'");
    file_with("twice.safetensors", TINY_TENSORS "," TINY_TENSORS, data, 60, path, sizeof path);
    expect_load_error(path, NULL, MTI_ERR_CORRUPT_INPUT, "appears twice");
}

static void load_with_config(const char *config, mti_status want, const char *needle)
{
    float data[15];
    tiny_data(data);
    char path[512], cpath[512], header[1024];
    snprintf(path, sizeof path, "%s/plain.safetensors", g_dir);
    snprintf(header, sizeof header, "{%s}", TINY_TENSORS);
    write_safetensors(path, header, data, sizeof data);
    snprintf(cpath, sizeof cpath, "%s/config.json", g_dir);
    write_bytes(cpath, config, strlen(config));
    expect_load_error(path, cpath, want, needle);
}

static void bad__config_problems(void **state)
{
    load_with_config("{\"input\":{\"features\":4},\"layers\":[{\"type\":\"conv2d\"}]}",
                     MTI_ERR_CORRUPT_INPUT, "unknown type 'conv2d'");
    load_with_config("{\"input\":{\"features\":5},\"layers\":[{\"type\":\"linear\",\"in\":4,"
                     "\"out\":3}]}",
                     MTI_ERR_CORRUPT_INPUT, "do not chain");
    load_with_config("{\"input\":{\"features\":4},\"layers\":[{\"type\":\"linear\",\"in\":4,"
                     "\"out\":3},{\"type\":\"layernorm\",\"dim\":4}]}",
                     MTI_ERR_CORRUPT_INPUT, "do not chain");
    load_with_config("{\"input\":{\"features\":4},\"layers\":[{\"type\":\"linear\",\"in\":4,"
                     "\"out\":3},{\"type\":\"mha\",\"d_model\":3,\"heads\":1}]}",
                     MTI_ERR_CORRUPT_INPUT, "needs sequence input");
    load_with_config("{\"input\":{\"features\":4},\"layers\":[{\"type\":\"linear\",\"in\":4}]}",
                     MTI_ERR_CORRUPT_INPUT, "needs \"out\"");
    load_with_config("{\"input\":{\"features\":4},\"layers\":[{\"type\":\"linear\",\"in\":4,"
                     "\"out\":-3}]}",
                     MTI_ERR_CORRUPT_INPUT, "\"out\" must be an integer");
    load_with_config("{\"input\":{\"features\":4},\"layers\":[]}", MTI_ERR_CORRUPT_INPUT,
                     "non-empty");
    load_with_config("not json", MTI_ERR_CORRUPT_INPUT, "config is not valid JSON");
    load_with_config("{\"input\":{\"features\":4},\"layers\":[{\"type\":\"residual\","
                     "\"layers\":[{\"type\":\"linear\",\"in\":4,\"out\":3}]}]}",
                     MTI_ERR_CORRUPT_INPUT, "do not chain");
}

static void bad__no_config(void **state)
{
    float data[15];
    tiny_data(data);
    char path[512], header[1024];
    snprintf(path, sizeof path, "%s/no-config.safetensors", g_dir);
    snprintf(header, sizeof header, "{%s}", TINY_TENSORS);
    write_safetensors(path, header, data, sizeof data);
    expect_load_error(path, NULL, MTI_ERR_NOT_FOUND, "no model config");
    char cpath[512];
    snprintf(cpath, sizeof cpath, "%s/no-such-config.json", g_dir);
    expect_load_error(path, cpath, MTI_ERR_NOT_FOUND, "no-such-config.json");
}

static mti_model_t tiny_model(void)
{
    float data[15];
    tiny_data(data);
    char path[512];
    file_with("tiny.safetensors", TINY_TENSORS, data, sizeof data, path, sizeof path);
    mti_model_t m;
    REQUIRE_OK(mti_model_load(g_rt, path, NULL, &m));
    return m;
}

static void bad__wrong_sizes_at_infer(void **state)
{
    mti_model_t m = tiny_model();
    float x[8] = {0}, y[6];
    REQUIRE_STATUS(mti_model_infer(m, 1, 0, x, 5, y, 3), MTI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mti_last_error_message(), "wrong input size") != NULL, "%s",
          mti_last_error_message());
    REQUIRE_STATUS(mti_model_infer(m, 2, 0, x, 8, y, 3), MTI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mti_last_error_message(), "wrong output size") != NULL, "%s",
          mti_last_error_message());
    REQUIRE_STATUS(mti_model_infer(m, 0, 0, x, 0, y, 0), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti_model_infer(m, 1, 5, x, 20, y, 15), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti_model_infer(m, 1, 0, NULL, 4, y, 3), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti_model_infer(NULL, 1, 0, x, 4, y, 3), MTI_ERR_INVALID_ARGUMENT);
    /* still works after the errors */
    REQUIRE_OK(mti_model_infer(m, 2, 0, x, 8, y, 6));
    mti_model_destroy(m);
}

static void bad__nan_and_inf_inputs_are_computed_through(void **state)
{
    mti_model_t m = tiny_model();
    float x[8] = {NAN, 1, 2, 3, 1, 2, 3, 4}, y[6];
    double ref[6];
    REQUIRE_OK(mti_model_infer(m, 2, 0, x, 8, y, 6));
    REQUIRE_OK(mti_model_reference(m, 2, 0, x, 8, ref, 6));
    for (int i = 0; i < 3; i++)
        CHECK(isnan(y[i]) || isnan(ref[i]) == isnan(y[i]), "row 0 col %d: %g", i, y[i]);
    for (int i = 3; i < 6; i++)
        CHECK(isfinite(y[i]) && fabs(y[i] - ref[i]) < 1e-5, "row 1 col %d: %g vs %g", i, y[i],
              ref[i]);
    x[0] = INFINITY;
    REQUIRE_OK(mti_model_infer(m, 2, 0, x, 8, y, 6));
    mti_error_stats es;
    float bad[2] = {NAN, 1.0f};
    double good[2] = {1.0, 1.0};
    mti_error_stats_compute(bad, good, 2, &es);
    CHECK_OP(es.nonfinite, ==, (size_t)1);
    mti_model_destroy(m);
}

/* BF16 loads on every backend (the CPU computes it in fp32); a value outside the enum does
 * not. */
static void bad__unsupported_precision(void **state)
{
    float data[15];
    tiny_data(data);
    char path[512];
    file_with("prec.safetensors", TINY_TENSORS, data, sizeof data, path, sizeof path);
    mti_model_params mp;
    mti_model_params_default(&mp);
    mp.precision = MTI_PRECISION_BF16;
    mti_model_t m;
    REQUIRE_OK(mti_model_load(g_rt, path, &mp, &m));
    mti_model_destroy(m);
    mp.precision = (mti_precision)7;
    REQUIRE_STATUS(mti_model_load(g_rt, path, &mp, &m), MTI_ERR_INVALID_ARGUMENT);
}

static const struct CMUnitTest bad_tests[] = {
    cmocka_unit_test(bad__valid_tiny_model_loads),
    cmocka_unit_test(bad__missing_file),
    cmocka_unit_test(bad__truncated_file),
    cmocka_unit_test(bad__header_length_larger_than_file),
    cmocka_unit_test(bad__header_not_json),
    cmocka_unit_test(bad__not_safetensors_at_all),
    cmocka_unit_test(bad__offsets_outside_or_overlapping),
    cmocka_unit_test(bad__dtype_or_shape_mismatch),
    cmocka_unit_test(bad__missing_or_extra_tensors),
    cmocka_unit_test(bad__config_problems),
    cmocka_unit_test(bad__no_config),
    cmocka_unit_test(bad__wrong_sizes_at_infer),
    cmocka_unit_test(bad__nan_and_inf_inputs_are_computed_through),
    cmocka_unit_test(bad__unsupported_precision),
};

int run_model_bad_tests(void)
{
    return cmocka_run_group_tests_name("model-bad", bad_tests, setup_bad, teardown_bad);
}
