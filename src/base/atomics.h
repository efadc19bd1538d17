/*
 * Named-order atomics. Each call site says which happens-before edge it makes; the helpers only
 * make the order visible in the name so a reader never has to guess the default (seq_cst).
 */
#ifndef MTI_BASE_ATOMICS_H
#define MTI_BASE_ATOMICS_H

#include <stdatomic.h>

#define MTI_CACHE_LINE    64
#define MTI_CACHE_ALIGNED _Alignas(MTI_CACHE_LINE)

#define mti_atomic_load_relaxed(p)         atomic_load_explicit((p), memory_order_relaxed)
#define mti_atomic_load_acquire(p)         atomic_load_explicit((p), memory_order_acquire)
#define mti_atomic_load_seq_cst(p)         atomic_load_explicit((p), memory_order_seq_cst)
#define mti_atomic_store_relaxed(p, v)     atomic_store_explicit((p), (v), memory_order_relaxed)
#define mti_atomic_store_release(p, v)     atomic_store_explicit((p), (v), memory_order_release)
#define mti_atomic_fetch_add_relaxed(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define mti_atomic_fetch_sub_relaxed(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
#define mti_atomic_fetch_add_seq_cst(p, v) atomic_fetch_add_explicit((p), (v), memory_order_seq_cst)
#define mti_atomic_fetch_sub_seq_cst(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_seq_cst)
#define mti_atomic_fetch_or_seq_cst(p, v)  atomic_fetch_or_explicit((p), (v), memory_order_seq_cst)
#define mti_atomic_cas_acq_rel(p, expected, desired)                                               \
    atomic_compare_exchange_weak_explicit((p), (expected), (desired), memory_order_acq_rel,        \
                                          memory_order_acquire)
#define mti_atomic_cas_seq_cst(p, expected, desired)                                               \
    atomic_compare_exchange_weak_explicit((p), (expected), (desired), memory_order_seq_cst,        \
                                          memory_order_seq_cst)

/* Raises *p to at least v (for peak counters). */
static inline void mti_atomic_max_relaxed(_Atomic long *p, long v)
{
    long cur = mti_atomic_load_relaxed(p);
    while (cur < v && !atomic_compare_exchange_weak_explicit(p, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed)) {
    }
}

static inline void mti_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
