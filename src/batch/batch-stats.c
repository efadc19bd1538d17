/*
 * Lock-free log-linear latency histogram for the batcher's queue-time and compute-time
 * percentiles. Writers are the threads that launch batches (one add per request or batch);
 * relaxed atomics suffice because a snapshot only needs each counter's own value.
 */
#include <string.h>

#include "batch/batch-internal.h"

static int bucket_of(uint64_t ns)
{
    if (ns < MTI_LHIST_SUB) return (int)ns;
    int e = 63 - __builtin_clzll(ns); /* ns in [2^e, 2^(e+1)) with e >= 3 */
    int sub = (int)((ns >> (e - 3)) & (MTI_LHIST_SUB - 1));
    int idx = (e - 2) * MTI_LHIST_SUB + sub;
    return idx < MTI_LHIST_BUCKETS ? idx : MTI_LHIST_BUCKETS - 1;
}

/* The middle of bucket idx, in ns. */
static double bucket_mid(int idx)
{
    if (idx < MTI_LHIST_SUB) return idx;
    int e = idx / MTI_LHIST_SUB + 2, sub = idx % MTI_LHIST_SUB;
    double lo = (double)(1ull << e) + (double)sub * (double)(1ull << (e - 3));
    return lo + (double)(1ull << (e - 3)) / 2;
}

void mti__lhist_add(struct mti_lhist *h, uint64_t ns)
{
    mti_atomic_fetch_add_relaxed(&h->n[bucket_of(ns)], 1);
    uint64_t cur = mti_atomic_load_relaxed(&h->max_ns);
    while (cur < ns && !atomic_compare_exchange_weak_explicit(
                           &h->max_ns, &cur, ns, memory_order_relaxed, memory_order_relaxed)) {
    }
}

void mti__lhist_reset(struct mti_lhist *h)
{
    for (int i = 0; i < MTI_LHIST_BUCKETS; i++)
        mti_atomic_store_relaxed(&h->n[i], 0);
    mti_atomic_store_relaxed(&h->max_ns, 0);
}

void mti__lhist_percentiles(const struct mti_lhist *h, mti_batch_percentiles *out)
{
    uint64_t counts[MTI_LHIST_BUCKETS], total = 0;
    for (int i = 0; i < MTI_LHIST_BUCKETS; i++) {
        counts[i] = mti_atomic_load_relaxed(&h->n[i]);
        total += counts[i];
    }
    memset(out, 0, sizeof *out);
    if (total == 0) return;
    const double q[4] = {0.50, 0.90, 0.99, 0.999};
    double *dst[4] = {&out->p50, &out->p90, &out->p99, &out->p999};
    double max_us = (double)mti_atomic_load_relaxed(&h->max_ns) / 1e3;
    for (int k = 0; k < 4; k++) {
        uint64_t rank = (uint64_t)(q[k] * (double)total);
        if (rank >= total) rank = total - 1;
        uint64_t seen = 0;
        for (int i = 0; i < MTI_LHIST_BUCKETS; i++) {
            seen += counts[i];
            if (seen > rank) {
                *dst[k] = bucket_mid(i) / 1e3;
                break;
            }
        }
        if (max_us > 0 && *dst[k] > max_us) *dst[k] = max_us;
    }
    out->max = max_us;
}
