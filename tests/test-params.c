/* Status strings, parameters, environment overrides, argument checks. */
#include <string.h>

#include "test-common.h"

static void status__every_code_has_a_distinct_string(void **state)
{
    for (int a = MTI_OK; a <= MTI_ERR_INTERNAL; a++) {
        const char *sa = mti_status_string((mti_status)a);
        CHECK_STR((char *)sa, !=, "unknown status", "status %d has no string", a);
        for (int b = a + 1; b <= MTI_ERR_INTERNAL; b++)
            CHECK_STR((char *)sa, !=, (char *)mti_status_string((mti_status)b));
    }
    CHECK_STR((char *)mti_status_string((mti_status)999), ==, "unknown status");
}

static void params__defaults_match_the_documentation(void **state)
{
    mti_runtime_params p;
    mti_runtime_params_default(&p);
    CHECK_OP(p.backend, ==, MTI_BACKEND_AUTO);
    CHECK_OP(p.pool_size, ==, 32);
    CHECK_OP(p.exhaustion, ==, MTI_POOL_BLOCK);
    CHECK_OP(p.assign, ==, MTI_ASSIGN_EXCLUSIVE);
    CHECK_OP(p.sync_mode, ==, MTI_SYNC_AUTO);
    CHECK_OP(p.serialization, ==, MTI_SERIAL_PER_STREAM);
    CHECK_OP(p.device, ==, -1);
}

static void params__env_values_are_applied(void **state)
{
    setenv("MTI_BACKEND", "cpu", 1);
    setenv("MTI_POOL_SIZE", "7", 1);
    setenv("MTI_POOL_EXHAUSTION", "wait", 1);
    setenv("MTI_POOL_WAIT_MS", "250", 1);
    setenv("MTI_STREAM_ASSIGN", "round-robin", 1);
    setenv("MTI_SYNC_MODE", "yield", 1);
    setenv("MTI_SERIALIZATION", "semaphore:3", 1);
    setenv("MTI_MEMORY_LIMIT", "64M", 1);
    setenv("MTI_ALLOC_POISON", "1", 1);
    mti_runtime_params p;
    mti_runtime_params_default(&p);
    REQUIRE_OK(mti_runtime_params_from_env(&p));
    CHECK_OP(p.backend, ==, MTI_BACKEND_CPU);
    CHECK_OP(p.pool_size, ==, 7);
    CHECK_OP(p.exhaustion, ==, MTI_POOL_WAIT);
    CHECK_OP(p.pool_wait_ms, ==, 250);
    CHECK_OP(p.assign, ==, MTI_ASSIGN_ROUND_ROBIN);
    CHECK_OP(p.sync_mode, ==, MTI_SYNC_YIELD);
    CHECK_OP(p.serialization, ==, MTI_SERIAL_SEMAPHORE);
    CHECK_OP(p.serial_limit, ==, 3);
    CHECK_OP(p.memory_limit, ==, (size_t)64 << 20);
    CHECK_OP(p.alloc_poison, ==, 1);
    const char *vars[] = {"MTI_BACKEND",       "MTI_POOL_SIZE",     "MTI_POOL_EXHAUSTION",
                          "MTI_POOL_WAIT_MS",  "MTI_STREAM_ASSIGN", "MTI_SYNC_MODE",
                          "MTI_SERIALIZATION", "MTI_MEMORY_LIMIT",  "MTI_ALLOC_POISON"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]); /* the tests share one process */
}

struct bad_env {
    const char *var, *value;
};

static void params__malformed_env_values_are_errors_naming_the_variable(void **state)
{
    static const struct bad_env cases[] = {
        {"MTI_BACKEND", "gpu"},
        {"MTI_BACKEND", "CPU"},
        {"MTI_POOL_SIZE", "0"},
        {"MTI_POOL_SIZE", "65"},
        {"MTI_POOL_SIZE", "12abc"},
        {"MTI_POOL_SIZE", "-3"},
        {"MTI_POOL_EXHAUSTION", "no"},
        {"MTI_POOL_WAIT_MS", "soon"},
        {"MTI_STREAM_ASSIGN", "rr"},
        {"MTI_SYNC_MODE", "busy"},
        {"MTI_SERIALIZATION", "none"},
        {"MTI_SERIALIZATION", "semaphore:0"},
        {"MTI_SERIALIZATION", "semaphore:x"},
        {"MTI_MEMORY_LIMIT", "12Q"},
        {"MTI_MEMORY_LIMIT", "-1"},
        {"MTI_ALLOC_POISON", "yes"},
        {"MTI_DEVICE", "first"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv(cases[i].var, cases[i].value, 1);
        mti_runtime_params p, before;
        mti_runtime_params_default(&p);
        before = p;
        mti_status st = mti_runtime_params_from_env(&p);
        CHECK_OP(st, ==, MTI_ERR_INVALID_ARGUMENT, "%s=%s was accepted", cases[i].var,
                 cases[i].value);
        CHECK(strstr(mti_last_error_message(), cases[i].var) != NULL,
              "message '%s' does not name %s", mti_last_error_message(), cases[i].var);
        CHECK(memcmp(&p, &before, sizeof p) == 0, "params changed on error");
        /* mti_runtime_create(NULL) reads the environment too and must refuse. */
        mti_runtime_t rt = (mti_runtime_t)0x1;
        CHECK_OP(mti_runtime_create(NULL, &rt), ==, MTI_ERR_INVALID_ARGUMENT);
        CHECK(rt == NULL, "out not cleared on failure");
        unsetenv(cases[i].var);
    }
}

static void params__bad_struct_values_are_rejected(void **state)
{
    mti_runtime_params p;
    mti_runtime_t rt = NULL;
    mti_runtime_params_default(&p);
    p.pool_size = 0;
    REQUIRE_STATUS(mti_runtime_create(&p, &rt), MTI_ERR_INVALID_ARGUMENT);
    mti_runtime_params_default(&p);
    p.pool_size = 65;
    REQUIRE_STATUS(mti_runtime_create(&p, &rt), MTI_ERR_INVALID_ARGUMENT);
    mti_runtime_params_default(&p);
    p.sync_mode = (mti_sync_mode)17;
    REQUIRE_STATUS(mti_runtime_create(&p, &rt), MTI_ERR_INVALID_ARGUMENT);
    mti_runtime_params_default(&p);
    p.backend = MTI_BACKEND_CPU;
    p.device = 3;
    REQUIRE_STATUS(mti_runtime_create(&p, &rt), MTI_ERR_NOT_FOUND);
    CHECK(rt == NULL, "failed");
    REQUIRE_STATUS(mti_runtime_create(&p, NULL), MTI_ERR_INVALID_ARGUMENT);
}

static void params__null_handles_are_errors_not_crashes(void **state)
{
    mti_stream_t s = NULL;
    REQUIRE_STATUS(mti_stream_get_current(NULL, &s), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti_stream_synchronize(NULL), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti_stream_release(NULL), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti_event_query(NULL), MTI_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(mti_memcpy_async(NULL, &s, &s, 8, MTI_COPY_HOST_TO_DEVICE),
                   MTI_ERR_INVALID_ARGUMENT);
    mti_runtime_destroy(NULL);
    mti_event_destroy(NULL);
    mti_buffer_free(NULL);
}

static void params__auto_backend_falls_back_to_cpu_without_a_gpu(void **state)
{
    mti_runtime_params p;
    mti_runtime_params_default(&p);
    mti_runtime_t rt;
    REQUIRE_OK(mti_runtime_create(&p, &rt));
    /* On a GPU machine this test still passes: auto then picks cuda. */
    mti_backend_kind k = mti_runtime_backend(rt);
    CHECK(k == MTI_BACKEND_CPU || k == MTI_BACKEND_CUDA, "failed");
    CHECK(strlen(mti_runtime_device_name(rt)) > 0, "failed");
    mti_runtime_destroy(rt);
}

static const struct CMUnitTest params_tests[] = {
    cmocka_unit_test(status__every_code_has_a_distinct_string),
    cmocka_unit_test(params__defaults_match_the_documentation),
    cmocka_unit_test(params__env_values_are_applied),
    cmocka_unit_test(params__malformed_env_values_are_errors_naming_the_variable),
    cmocka_unit_test(params__bad_struct_values_are_rejected),
    cmocka_unit_test(params__null_handles_are_errors_not_crashes),
    cmocka_unit_test(params__auto_backend_falls_back_to_cpu_without_a_gpu),
};
int run_params_tests(void)
{
    return cmocka_run_group_tests_name("params", params_tests, NULL, NULL);
}
