/* Caching allocator: same-stream reuse, statistics, OOM release-and-retry, poisoning. */
#include <string.h>

#include "test-common.h"

static mti_runtime_t make_runtime(size_t limit, int poison)
{
    mti_runtime_params p;
    mti_runtime_params_default(&p);
    p.backend = test_backend();
    p.pool_size = 4;
    p.memory_limit = limit;
    p.alloc_poison = poison;
    mti_runtime_t rt;
    REQUIRE_OK(mti_runtime_create(&p, &rt));
    return rt;
}

static void alloc__freed_block_is_reused_on_its_stream(void **state)
{
    mti_runtime_t rt = make_runtime(0, 0);
    mti_stream_t s;
    REQUIRE_OK(mti_stream_get_current(rt, &s));
    mti_buffer_t a, b;
    REQUIRE_OK(mti_buffer_alloc(s, 1000, &a));
    CHECK_OP(mti_buffer_size(a), ==, 1000);
    void *pa = mti_buffer_ptr(a);
    mti_buffer_free(a);
    REQUIRE_OK(mti_buffer_alloc(s, 900, &b)); /* same size class */
    CHECK_OP(mti_buffer_ptr(b), ==, pa);
    mti_alloc_stats st;
    REQUIRE_OK(mti_runtime_alloc_stats(rt, &st));
    CHECK_OP(st.hits, ==, 1);
    CHECK_OP(st.misses, ==, 1);
    CHECK_OP(st.allocated, ==, 1024);
    mti_buffer_free(b);
    REQUIRE_OK(mti_runtime_alloc_stats(rt, &st));
    CHECK_OP(st.allocated, ==, 0);
    CHECK_OP(st.cached, ==, 1024);
    CHECK_OP(st.peak_allocated, ==, 1024);
    REQUIRE_OK(mti_runtime_release_cached(rt));
    REQUIRE_OK(mti_runtime_alloc_stats(rt, &st));
    CHECK_OP(st.cached, ==, 0);
    mti_runtime_destroy(rt);
}

static void alloc__other_streams_do_not_get_a_cached_block(void **state)
{
    mti_runtime_t rt = make_runtime(0, 0);
    mti_stream_t a, b;
    REQUIRE_OK(mti_stream_acquire(rt, &a));
    REQUIRE_OK(mti_stream_acquire(rt, &b));
    mti_buffer_t x, y;
    REQUIRE_OK(mti_buffer_alloc(a, 4096, &x));
    void *px = mti_buffer_ptr(x);
    mti_buffer_free(x);
    REQUIRE_OK(mti_buffer_alloc(b, 4096, &y));
    CHECK_OP(mti_buffer_ptr(y), !=, px, "block crossed streams without an event");
    mti_buffer_free(y);
    mti_stream_release(a);
    mti_stream_release(b);
    mti_runtime_destroy(rt);
}

static void alloc__out_of_memory_releases_the_cache_and_retries(void **state)
{
    mti_runtime_t rt = make_runtime(1 << 20, 0); /* 1 MiB limit */
    mti_stream_t s;
    REQUIRE_OK(mti_stream_get_current(rt, &s));
    mti_buffer_t small[4];
    for (int i = 0; i < 4; i++)
        REQUIRE_OK(mti_buffer_alloc(s, 128 << 10, &small[i])); /* 512 KiB held */
    for (int i = 0; i < 4; i++)
        mti_buffer_free(small[i]); /* now cached */
    mti_buffer_t big;
    REQUIRE_OK(mti_buffer_alloc(s, 768 << 10, &big)); /* fits only if the cache is released */
    mti_alloc_stats st;
    REQUIRE_OK(mti_runtime_alloc_stats(rt, &st));
    CHECK_OP(st.oom_retries, ==, 1);
    mti_buffer_t too_big = (mti_buffer_t)0x1;
    REQUIRE_STATUS(mti_buffer_alloc(s, 2 << 20, &too_big), MTI_ERR_OUT_OF_MEMORY);
    CHECK(too_big == NULL, "failed");
    CHECK(strstr(mti_last_error_message(), "bytes") != NULL, "failed");
    mti_buffer_free(big);
    /* The runtime stays usable after an OOM. */
    REQUIRE_OK(mti_buffer_alloc(s, 1000, &big));
    mti_buffer_free(big);
    mti_runtime_destroy(rt);
}

static void alloc__poison_mode_fills_freed_blocks_in_stream_order(void **state)
{
    SKIP_UNLESS_CPU();
    mti_runtime_t rt = make_runtime(0, 1);
    mti_stream_t s;
    REQUIRE_OK(mti_stream_get_current(rt, &s));
    mti_buffer_t b;
    REQUIRE_OK(mti_buffer_alloc(s, 256, &b));
    unsigned char *p = mti_buffer_ptr(b);
    unsigned char seen[256];
    REQUIRE_OK(mti_memset_async(s, p, 0x11, 256));
    /* Queued before the free: must still see 0x11, not the poison. */
    REQUIRE_OK(mti_memcpy_async(s, seen, p, 256, MTI_COPY_DEVICE_TO_HOST));
    mti_buffer_free(b);
    REQUIRE_OK(mti_stream_synchronize(s));
    for (int i = 0; i < 256; i++)
        CHECK_OP(seen[i], ==, 0x11, "byte %d", i);
    for (int i = 0; i < 256; i++)
        CHECK_OP(p[i], ==, 0xA5, "freed byte %d not poisoned", i);
    mti_runtime_destroy(rt);
}

static void alloc__bad_arguments(void **state)
{
    mti_runtime_t rt = make_runtime(0, 0);
    mti_stream_t s;
    REQUIRE_OK(mti_stream_get_current(rt, &s));
    mti_buffer_t b = (mti_buffer_t)0x1;
    REQUIRE_STATUS(mti_buffer_alloc(s, 0, &b), MTI_ERR_INVALID_ARGUMENT);
    CHECK(b == NULL, "failed");
    REQUIRE_STATUS(mti_buffer_alloc(s, (size_t)1 << 62, &b), MTI_ERR_OUT_OF_MEMORY);
    REQUIRE_STATUS(mti_buffer_record_stream(NULL, s), MTI_ERR_INVALID_ARGUMENT);
    mti_runtime_destroy(rt);
}

static const struct CMUnitTest alloc_tests[] = {
    cmocka_unit_test(alloc__freed_block_is_reused_on_its_stream),
    cmocka_unit_test(alloc__other_streams_do_not_get_a_cached_block),
    cmocka_unit_test(alloc__out_of_memory_releases_the_cache_and_retries),
    cmocka_unit_test(alloc__poison_mode_fills_freed_blocks_in_stream_order),
    cmocka_unit_test(alloc__bad_arguments),
};
int run_alloc_tests(void)
{
    return cmocka_run_group_tests_name("alloc", alloc_tests, NULL, NULL);
}
