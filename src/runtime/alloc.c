/*
 * Caching allocator. Reuse rules (the invariant verify/alloc.pml checks):
 * - A block freed with no foreign use goes back to its owner stream's cache at once; reuse
 *   on that stream is safe because the stream runs in order.
 * - A block used by other streams is deferred: at free, an event is recorded on each of them
 *   (capturing the work that used it, which was submitted before the free), and the block
 *   returns to its owner's cache only after every event completed.
 * - Releasing cached memory to the backend first waits for the owner stream's submitted work.
 *
 * Locks: stream->cache.lock (per stream, the hot path) and a->deferred_lock are leaves;
 * a->release_lock is taken first and only on the OOM / release path; a stream's record_lock
 * is taken (alone) to record events or poison memsets on streams other than the caller's.
 */
#include <stdlib.h>

#include "base/log.h"
#include "base/fault.h"
#include "runtime/runtime-internal.h"

static int bin_of(size_t bytes, size_t *rounded)
{
    size_t size = MTI_ALLOC_MIN_BLOCK;
    int bin = 0;
    while (size < bytes) {
        size <<= 1;
        bin++;
    }
    *rounded = size;
    return bin;
}

mti_status mti__stream_cache_init(struct mti_stream_cache *c)
{
    for (int i = 0; i < MTI_ALLOC_BINS; i++)
        c->bins[i] = NULL;
    return mti_mutex_init(&c->lock);
}

mti_status mti__alloc_init(struct mti_allocator *a, struct mti_device_ctx *dev, size_t limit,
                           bool poison)
{
    a->dev = dev;
    a->limit = limit;
    a->poison = poison;
    a->deferred = NULL;
    MTI_CHECK(mti_mutex_init(&a->deferred_lock));
    return mti_mutex_init(&a->release_lock);
}

static void stats_on_handout(struct mti_allocator *a, struct mti_buffer *b)
{
    size_t now = atomic_fetch_add(&a->allocated, b->size) + b->size;
    size_t peak = atomic_load(&a->peak_allocated);
    while (peak < now && !atomic_compare_exchange_weak(&a->peak_allocated, &peak, now)) {
    }
}

static struct mti_buffer *cache_pop(struct mti_stream_cache *c, int bin)
{
    mti_mutex_lock(&c->lock);
    struct mti_buffer *b = c->bins[bin];
    if (b) c->bins[bin] = b->next;
    mti_mutex_unlock(&c->lock);
    return b;
}

static void cache_push(struct mti_stream_cache *c, struct mti_buffer *b)
{
    mti_mutex_lock(&c->lock);
    b->next = c->bins[b->bin];
    c->bins[b->bin] = b;
    mti_mutex_unlock(&c->lock);
}

/* Fills the block with the poison byte in its owner's stream order (debug mode). */
static void poison_block(struct mti_buffer *b)
{
    struct mti_stream *s = b->owner;
    mti__encode_begin(s);
    s->bs->iface->memset_async(s->bs, b->ptr, MTI_ALLOC_POISON_BYTE, b->size, 0);
    mti__encode_end(s);
}

static mti_status backend_alloc(struct mti_allocator *a, size_t size, void **ptr)
{
    size_t before = atomic_fetch_add(&a->reserved, size);
    if (a->limit && before + size > a->limit) {
        atomic_fetch_sub(&a->reserved, size);
        return mti__error(MTI_ERR_OUT_OF_MEMORY,
                          "allocating %zu bytes would exceed the memory limit of %zu bytes "
                          "(%zu held)",
                          size, a->limit, before);
    }
    mti_backend_device *bdev = a->dev->bdev;
    mti_status st = MTI_FAULT(ALLOC) ? mti__fault_error(MTI_ERR_OUT_OF_MEMORY, "device allocation")
                                     : bdev->iface->mem_alloc(bdev, size, ptr);
    if (st != MTI_OK) atomic_fetch_sub(&a->reserved, size);
    return st;
}

static void backend_free(struct mti_allocator *a, struct mti_buffer *b)
{
    a->dev->bdev->iface->mem_free(a->dev->bdev, b->ptr);
    atomic_fetch_sub(&a->reserved, b->size);
    atomic_fetch_sub(&a->live_blocks, 1);
    free(b);
}

mti_status mti__alloc(struct mti_stream *s, size_t bytes, struct mti_buffer **out)
{
    struct mti_allocator *a = &s->dev->alloc;
    size_t size;
    int bin = bin_of(bytes, &size);
    if (bin >= MTI_ALLOC_BINS)
        return mti__error(MTI_ERR_OUT_OF_MEMORY, "a buffer of %zu bytes is too large", bytes);

    struct mti_buffer *b = cache_pop(&s->cache, bin);
    if (!b && mti_atomic_load_relaxed(&a->deferred_bytes) > 0) {
        mti__alloc_reclaim_deferred(a);
        b = cache_pop(&s->cache, bin);
    }
    if (b) {
        atomic_fetch_add(&a->hits, 1);
    } else {
        void *ptr = NULL;
        mti_status st = backend_alloc(a, size, &ptr);
        if (st != MTI_OK) {
            /* Release what the caches hold (after the work using it) and try once more. */
            atomic_fetch_add(&a->oom_retries, 1);
            mti__alloc_release_cached(a);
            st = backend_alloc(a, size, &ptr);
            if (st != MTI_OK)
                return mti__error(MTI_ERR_OUT_OF_MEMORY,
                                  "cannot allocate %zu bytes (block %zu) on %s even after "
                                  "releasing cached blocks",
                                  bytes, size, a->dev->bdev->name);
        }
        b = calloc(1, sizeof *b);
        if (!b) {
            a->dev->bdev->iface->mem_free(a->dev->bdev, ptr);
            atomic_fetch_sub(&a->reserved, size);
            return mti__error(MTI_ERR_OUT_OF_MEMORY, "buffer descriptor");
        }
        b->ptr = ptr;
        b->size = size;
        b->bin = bin;
        b->owner = s;
        atomic_fetch_add(&a->misses, 1);
        atomic_fetch_add(&a->live_blocks, 1);
    }
    b->requested = bytes;
    b->next = NULL;
    atomic_store(&b->used_by, 0);
    stats_on_handout(a, b);
    *out = b;
    return MTI_OK;
}

mti_status mti__alloc_record_stream(struct mti_buffer *b, struct mti_stream *user)
{
    if (user->dev != b->owner->dev)
        return mti__error(MTI_ERR_INVALID_ARGUMENT,
                          "buffer of device %d used on a stream of device %d",
                          b->owner->dev->bdev->ordinal, user->dev->bdev->ordinal);
    if (user != b->owner) atomic_fetch_or(&b->used_by, (uint64_t)1 << user->slot);
    return MTI_OK;
}

/* Records one event per foreign user stream; false if an event could not be made (then the
 * caller falls back to waiting for those streams). */
static bool record_use_events(struct mti_buffer *b, uint64_t used_by)
{
    struct mti_pool *pool = &b->owner->dev->pool;
    mti_backend_device *bdev = b->owner->dev->bdev;
    int n = __builtin_popcountll(used_by);
    b->events = calloc((size_t)n, sizeof *b->events);
    if (!b->events) return false;
    b->n_events = 0;
    for (uint64_t m = used_by; m; m &= m - 1) {
        struct mti_stream *user = mti_atomic_load_acquire(&pool->streams[__builtin_ctzll(m)]);
        mti_backend_event *e = NULL;
        if (bdev->iface->event_create(bdev, false, &e) != MTI_OK) return false;
        b->events[b->n_events++] = e;
        mti__encode_begin(user);
        mti_status st = e->iface->record(e, user->bs, 0);
        mti__encode_end(user);
        if (st != MTI_OK) return false;
    }
    return true;
}

static void destroy_events(struct mti_buffer *b)
{
    for (int i = 0; i < b->n_events; i++)
        b->events[i]->iface->destroy(b->events[i]);
    free(b->events);
    b->events = NULL;
    b->n_events = 0;
}

void mti__alloc_free(struct mti_buffer *b)
{
    struct mti_allocator *a = &b->owner->dev->alloc;
    atomic_fetch_sub(&a->allocated, b->size);
    uint64_t used_by = atomic_load(&b->used_by);
#ifdef MTI_BROKEN_ALLOC_NO_EVENT
    used_by = 0; /* Broken twin (tests only): reuse without waiting for other streams. */
#endif
    if (used_by == 0) {
        if (a->poison) poison_block(b);
        cache_push(&b->owner->cache, b);
        return;
    }
    if (!record_use_events(b, used_by)) {
        /* No event: wait for the using streams instead (slow but safe). */
        destroy_events(b);
        struct mti_pool *pool = &b->owner->dev->pool;
        for (uint64_t m = used_by; m; m &= m - 1)
            mti__stream_sync(mti_atomic_load_acquire(&pool->streams[__builtin_ctzll(m)]));
        if (a->poison) poison_block(b);
        cache_push(&b->owner->cache, b);
        return;
    }
    atomic_fetch_add(&a->deferred_bytes, b->size);
    mti_mutex_lock(&a->deferred_lock);
    b->next = a->deferred;
    a->deferred = b;
    mti_mutex_unlock(&a->deferred_lock);
}

static bool events_complete(struct mti_buffer *b)
{
    for (int i = 0; i < b->n_events; i++)
        if (b->events[i]->iface->query(b->events[i]) != MTI_OK) return false;
    return true;
}

void mti__alloc_reclaim_deferred(struct mti_allocator *a)
{
    struct mti_buffer *done = NULL;
    mti_mutex_lock(&a->deferred_lock);
    struct mti_buffer **link = &a->deferred;
    while (*link) {
        struct mti_buffer *b = *link;
        if (events_complete(b)) {
            *link = b->next;
            b->next = done;
            done = b;
        } else {
            link = &b->next;
        }
    }
    mti_mutex_unlock(&a->deferred_lock);
    while (done) {
        struct mti_buffer *b = done;
        done = b->next;
        destroy_events(b);
        atomic_fetch_sub(&a->deferred_bytes, b->size);
        if (a->poison) poison_block(b);
        cache_push(&b->owner->cache, b);
    }
}

/* Takes every block out of one stream's cache. */
static struct mti_buffer *cache_take_all(struct mti_stream_cache *c)
{
    struct mti_buffer *all = NULL;
    mti_mutex_lock(&c->lock);
    for (int bin = 0; bin < MTI_ALLOC_BINS; bin++) {
        while (c->bins[bin]) {
            struct mti_buffer *b = c->bins[bin];
            c->bins[bin] = b->next;
            b->next = all;
            all = b;
        }
    }
    mti_mutex_unlock(&c->lock);
    return all;
}

/* Waits for the work submitted to s so far without taking its pending error away from the
 * stream's owner (an event, not a stream synchronize). */
static void wait_for_submitted(struct mti_stream *s)
{
    mti_backend_device *bdev = s->dev->bdev;
    mti_backend_event *e = NULL;
    if (bdev->iface->event_create(bdev, false, &e) != MTI_OK) {
        mti__stream_sync(s);
        return;
    }
    mti__encode_begin(s);
    mti_status st = e->iface->record(e, s->bs, 0);
    mti__encode_end(s);
    if (st == MTI_OK)
        e->iface->synchronize(e, s->dev->rt->params.sync_mode);
    else
        mti__stream_sync(s);
    e->iface->destroy(e);
}

mti_status mti__alloc_release_cached(struct mti_allocator *a)
{
    mti_mutex_lock(&a->release_lock);
    mti__alloc_reclaim_deferred(a);
    struct mti_pool *pool = &a->dev->pool;
    for (int slot = 0; slot < pool->size; slot++) {
        struct mti_stream *s = mti_atomic_load_acquire(&pool->streams[slot]);
        if (!s) continue;
        struct mti_buffer *blocks = cache_take_all(&s->cache);
        if (!blocks) continue;
        wait_for_submitted(s);
        while (blocks) {
            struct mti_buffer *b = blocks;
            blocks = b->next;
            backend_free(a, b);
        }
    }
    mti_mutex_unlock(&a->release_lock);
    return MTI_OK;
}

void mti__alloc_destroy(struct mti_allocator *a)
{
    mti__alloc_release_cached(a);
    /* Deferred blocks whose streams are gone: their events are complete (streams drained). */
    mti_mutex_lock(&a->deferred_lock);
    struct mti_buffer *b = a->deferred;
    a->deferred = NULL;
    mti_mutex_unlock(&a->deferred_lock);
    while (b) {
        struct mti_buffer *next = b->next;
        destroy_events(b);
        backend_free(a, b);
        b = next;
    }
    uint64_t live = atomic_load(&a->live_blocks);
    if (live > 0)
        mti__log(MTI_LOG_WARN, "runtime destroyed with %llu buffer(s) not freed",
                 (unsigned long long)live);
    mti_mutex_destroy(&a->release_lock);
    mti_mutex_destroy(&a->deferred_lock);
}
