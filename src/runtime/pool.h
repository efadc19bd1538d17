/*
 * The stream pool of one device (the heart of the seeds' design): N slots, each with a stream
 * created lazily by its first holder. A slot is free when its bit in free_mask is set; a thread
 * takes one with compare-and-swap (lock-free), and only threads that find the pool exhausted
 * touch the wait lock. verify/pool.pml models these functions; keep the constants in sync
 * (verify/check-constants.sh compares them).
 */
#ifndef MTI_RUNTIME_POOL_H
#define MTI_RUNTIME_POOL_H

#include <stdint.h>

#include "base/atomics.h"
#include "base/sync.h"
#include "mtinfer.h"

#define MTI_POOL_MAX_SLOTS    64
#define MTI_POOL_DEFAULT_SIZE 32

struct mti_stream;
struct mti_device_ctx;

struct mti_pool {
    struct mti_device_ctx *dev;
    int size;
    /* Bit i set = slot i free. CAS on acquire, fetch_or on release (both seq_cst: with
     * n_waiters they form the Dekker pair that rules out a lost wake-up, see pool.c). */
    MTI_CACHE_ALIGNED _Atomic uint64_t free_mask;
    MTI_CACHE_ALIGNED _Atomic int n_waiters;
    _Atomic uint64_t rr_next; /* round-robin cursor */
    mti_mutex wait_lock;      /* protects nothing but the sleep itself: pairs with slot_freed */
    mti_cond slot_freed;
    mti_mutex create_lock; /* serialises lazy stream creation in round-robin mode */
    /* Written once (release) by the creator, read with acquire. */
    struct mti_stream *_Atomic streams[MTI_POOL_MAX_SLOTS];
    /* statistics */
    MTI_CACHE_ALIGNED _Atomic long in_use;
    _Atomic long peak_in_use;
    _Atomic int streams_created;
    _Atomic uint64_t acquires, waits, timeouts, exhausted;
};

mti_status mti__pool_init(struct mti_pool *p, struct mti_device_ctx *dev, int size);
/* Drains and destroys every created stream. No slot may be in use by a running call. */
void mti__pool_destroy(struct mti_pool *p);

/* Lock-free: a free slot index, or -1 when none is free. */
int mti__pool_try_acquire(struct mti_pool *p);
/* Takes a slot exclusively under the exhaustion policy; creates its stream if needed. */
mti_status mti__pool_acquire(struct mti_pool *p, mti_pool_exhaustion policy, int wait_ms,
                             struct mti_stream **out);
/* Waits for the slot's queued work, then frees the slot and wakes a waiter. Returns the
 * stream's pending error (the slot is freed either way). */
mti_status mti__pool_release(struct mti_pool *p, struct mti_stream *s);
/* Round-robin mode: the next stream in turn, shared with other threads. */
mti_status mti__pool_assign_round_robin(struct mti_pool *p, struct mti_stream **out);

#endif
