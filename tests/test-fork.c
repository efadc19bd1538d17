/* fork(): a child gets MTI_ERR_FORKED from the parent's runtime, never a hang or a crash, and
 * can create and use a runtime of its own. */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-common.h"

static mti_status noop(void *user)
{
    (void)user;
    return MTI_OK;
}

/* Child body: exit code 0 when every expectation held, else the number of the failed step. */
static int child_checks(mti_runtime_t parent_rt, mti_stream_t parent_stream)
{
    mti_stream_t s;
    if (mti_stream_get_current(parent_rt, &s) != MTI_ERR_FORKED) return 1;
    if (strstr(mti_last_error_message(), "fork") == NULL) return 2;
    if (mti_stream_synchronize(parent_stream) != MTI_ERR_FORKED) return 3;
    if (mti_stream_launch_host(parent_stream, noop, NULL) != MTI_ERR_FORKED) return 4;
    mti_runtime_destroy(parent_rt); /* must not hang on the parent's threads */
    mti_runtime_params p;
    mti_runtime_params_default(&p);
    p.backend = MTI_BACKEND_CPU;
    mti_runtime_t rt;
    if (mti_runtime_create(&p, &rt) != MTI_OK) return 5;
    if (mti_stream_get_current(rt, &s) != MTI_OK) return 6;
    unsigned char a[64], b[64];
    memset(a, 7, sizeof a);
    if (mti_memcpy_async(s, b, a, sizeof a, MTI_COPY_HOST_TO_DEVICE) != MTI_OK) return 7;
    if (mti_stream_synchronize(s) != MTI_OK || memcmp(a, b, sizeof a) != 0) return 8;
    mti_runtime_destroy(rt);
    return 0;
}

static void fork__child_gets_clear_errors_and_can_start_its_own_runtime(void **state)
{
    SKIP_UNLESS_CPU();
    mti_runtime_t rt = make_test_runtime(4, MTI_POOL_BLOCK, 0);
    mti_stream_t s;
    REQUIRE_OK(mti_stream_get_current(rt, &s));
    /* Busy streams at fork time: worker threads exist and locks are in use. */
    REQUIRE_OK(mti_stream_launch_host(s, host_sleep_ms, (void *)(intptr_t)20));
    pid_t pid = fork();
    CHECK(pid >= 0, "failed");
    if (pid == 0) _exit(child_checks(rt, s));
    int status = 0;
    double t0 = now_ms();
    pid_t done;
    while ((done = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() - t0 < 20000)
        sleep_ms(5);
    if (done == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("child hung");
    }
    int exited = WIFEXITED(status), code = WEXITSTATUS(status), sig = WTERMSIG(status);
    CHECK(exited != 0, "child crashed (signal %d)", sig);
    CHECK_OP(code, ==, 0, "child failed at step %d", code);
    REQUIRE_OK(mti_stream_synchronize(s)); /* the parent is unaffected */
    mti_runtime_destroy(rt);
}

static const struct CMUnitTest fork_tests[] = {
    cmocka_unit_test(fork__child_gets_clear_errors_and_can_start_its_own_runtime),
};
int run_fork_tests(void)
{
    return cmocka_run_group_tests_name("fork", fork_tests, NULL, NULL);
}
