/*
 * Batcher internals shared by the files of src/batch and the tests: the lock-free latency histogram
 * (batch-stats.c) and test hooks. Nothing here is public API.
 */
#ifndef MTI_BATCH_INTERNAL_H
#define MTI_BATCH_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/atomics.h"
#include "mtinfer.h"

/* Log-linear histogram of nanoseconds: 8 sub-buckets per power of two (~9% resolution), up to
 * 2^40 ns. Any thread adds with relaxed atomics (counters only; no ordering needed). */
#define MTI_LHIST_SUB     8
#define MTI_LHIST_BUCKETS (41 * MTI_LHIST_SUB)

struct mti_lhist {
    _Atomic uint64_t n[MTI_LHIST_BUCKETS];
    _Atomic uint64_t max_ns;
};

void mti__lhist_add(struct mti_lhist *h, uint64_t ns);
void mti__lhist_reset(struct mti_lhist *h);
/* p50/p90/p99/p999/max in microseconds (zeros when empty). */
void mti__lhist_percentiles(const struct mti_lhist *h, mti_batch_percentiles *out);

/* ---- test hooks (tests/test-batch.c) ------------------------------------------------------ */

/* While held, forming batches are not closed (except by destroy): requests accumulate, so a
 * test can build a batch of a known size. Releasing closes what is due. */
void mti__batcher_hold(mti_batcher_t b, bool hold);
/* The next launched batch also runs a host function that returns status on its stream, so
 * that one batch fails the way a device error would. */
void mti__batcher_fail_next_batch(mti_batcher_t b, mti_status status);
/* Requests in the forming batch plus those waiting for a slot (read under the lock). */
int mti__batcher_queued(mti_batcher_t b);

#endif
