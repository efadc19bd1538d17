/*
 * Test runner: every group of tests/test-*.c in one binary (cmocka). MTI_TEST_FILTER selects
 * tests by name pattern (cmocka's glob, e.g. "pool__*ownership*"); the broken-twin script
 * uses it to run the one test aimed at each deliberate bug.
 */
#include "test-common.h"

int run_params_tests(void);
int run_stream_tests(void);
int run_linear_tests(void);
int run_pool_tests(void);
int run_alloc_tests(void);
int run_fork_tests(void);
int run_model_tests(void);
int run_model_bad_tests(void);
int run_batch_tests(void);
int run_stress_tests(void);

int main(void)
{
    const char *filter = getenv("MTI_TEST_FILTER");
    if (filter && *filter) cmocka_set_test_filter(filter);
    int failed = 0;
    failed += run_params_tests();
    failed += run_linear_tests();
    failed += run_stream_tests();
    failed += run_pool_tests();
    failed += run_alloc_tests();
    failed += run_fork_tests();
    failed += run_model_tests();
    failed += run_model_bad_tests();
    failed += run_batch_tests();
    failed += run_stress_tests();
    printf("mtinfer tests: %s (%d failed)\n", failed ? "FAILED" : "all passed", failed);
    return failed ? 1 : 0;
}
