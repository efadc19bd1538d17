/*
 * Stream-aware caching allocator of one device. Blocks are rounded up to a power of two
 * (>= MTI_ALLOC_MIN_BLOCK) and cached per stream by size class, so the hot path (alloc and
 * free on one stream) takes only that stream's cache lock. A block used by other streams
 * (mti_buffer_record_stream) is parked on the deferred list at free, with one event per such
 * stream, and returns to its owner's cache only when all those events have completed.
 * verify/alloc.pml models this rule.
 */
#ifndef MTI_RUNTIME_ALLOC_H
#define MTI_RUNTIME_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend-impl.h"
#include "base/atomics.h"
#include "base/sync.h"

#define MTI_ALLOC_MIN_BLOCK   256
#define MTI_ALLOC_BINS        48
#define MTI_ALLOC_POISON_BYTE 0xA5

struct mti_stream;
struct mti_device_ctx;

struct mti_buffer {
    void *ptr;
    size_t size;      /* rounded block size */
    size_t requested; /* what the caller asked for */
    int bin;
    struct mti_stream *owner;
    struct mti_buffer *next;    /* cache or deferred list link */
    _Atomic uint64_t used_by;   /* slots (other than owner's) that used the block */
    mti_backend_event **events; /* deferred: one per stream in used_by */
    int n_events;
};

/* One stream's free lists (lives inside struct mti_stream). */
struct mti_stream_cache {
    mti_mutex lock; /* protects bins */
    struct mti_buffer *bins[MTI_ALLOC_BINS] MTI_GUARDED_BY(lock);
};

struct mti_allocator {
    struct mti_device_ctx *dev;
    size_t limit; /* 0 = none */
    bool poison;
    mti_mutex deferred_lock; /* protects deferred */
    struct mti_buffer *deferred MTI_GUARDED_BY(deferred_lock);
    mti_mutex release_lock; /* serialises mti__alloc_release_cached (a slow path) */
    MTI_CACHE_ALIGNED _Atomic size_t reserved; /* bytes held from the backend */
    _Atomic size_t allocated, peak_allocated, deferred_bytes;
    _Atomic uint64_t hits, misses, oom_retries, live_blocks;
};

mti_status mti__alloc_init(struct mti_allocator *a, struct mti_device_ctx *dev, size_t limit,
                           bool poison);
/* Frees every cached and deferred block (streams must be drained already). */
void mti__alloc_destroy(struct mti_allocator *a);
mti_status mti__stream_cache_init(struct mti_stream_cache *c);

mti_status mti__alloc(struct mti_stream *s, size_t bytes, struct mti_buffer **out);
void mti__alloc_free(struct mti_buffer *b);
mti_status mti__alloc_record_stream(struct mti_buffer *b, struct mti_stream *user);
/* Moves deferred blocks whose events completed back to their owners' caches. */
void mti__alloc_reclaim_deferred(struct mti_allocator *a);
/* Returns cached blocks that no pending work can use to the backend. */
mti_status mti__alloc_release_cached(struct mti_allocator *a);

#endif
