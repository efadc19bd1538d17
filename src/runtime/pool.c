/*
 * Stream pool. Fast path (a slot is free): one CAS on free_mask, no lock. Slow path (pool
 * exhausted, policy wait/block): the thread registers in n_waiters, then retries and sleeps
 * on slot_freed under wait_lock.
 *
 * No lost wake-up: a waiter increments n_waiters (seq_cst) before its retry reads free_mask;
 * a releaser sets its bit (seq_cst fetch_or) before it reads n_waiters. In any seq_cst order
 * either the waiter's retry sees the bit, or the releaser sees the waiter and broadcasts under
 * wait_lock, which the waiter holds from its retry until it sleeps.
 *
 * A slot goes back only after its stream's queued work has finished (mti__pool_release
 * synchronizes first), so the next holder never shares the stream with in-flight work.
 *
 * Lock order: wait_lock and create_lock are leaves (nothing else is taken under them).
 */
#include <sched.h>
#include <time.h>

#include "base/clock.h"
#include "runtime/runtime-internal.h"

mti_status mti__pool_init(struct mti_pool *p, struct mti_device_ctx *dev, int size)
{
    if (size < 1 || size > MTI_POOL_MAX_SLOTS)
        return mti__error(MTI_ERR_INVALID_ARGUMENT, "pool size %d is out of range 1..%d", size,
                          MTI_POOL_MAX_SLOTS);
    p->dev = dev;
    p->size = size;
    atomic_init(&p->free_mask, size == 64 ? ~(uint64_t)0 : (((uint64_t)1 << size) - 1));
    atomic_init(&p->n_waiters, 0);
    atomic_init(&p->rr_next, 0);
    for (int i = 0; i < MTI_POOL_MAX_SLOTS; i++)
        atomic_init(&p->streams[i], NULL);
    MTI_CHECK(mti_mutex_init(&p->wait_lock));
    mti_status st = mti_cond_init(&p->slot_freed);
    if (st == MTI_OK) st = mti_mutex_init(&p->create_lock);
    return st;
}

void mti__pool_destroy(struct mti_pool *p)
{
    for (int i = 0; i < p->size; i++) {
        struct mti_stream *s = mti_atomic_load_acquire(&p->streams[i]);
        if (s) mti__stream_destroy(s);
    }
    mti_mutex_destroy(&p->create_lock);
    mti_cond_destroy(&p->slot_freed);
    mti_mutex_destroy(&p->wait_lock);
}

int mti__pool_try_acquire(struct mti_pool *p)
{
    uint64_t mask = mti_atomic_load_seq_cst(&p->free_mask);
    for (;;) {
        if (mask == 0) return -1;
        int slot = __builtin_ctzll(mask);
#ifdef MTI_BROKEN_POOL_CHECK_THEN_SET
        /* Broken twin (tests only): check, then set, with a window between. */
        sched_yield();
        atomic_store(&p->free_mask, mask & ~((uint64_t)1 << slot));
        return slot;
#else
        /* On failure the CAS reloads mask and we try again with the fresh value. */
        if (mti_atomic_cas_seq_cst(&p->free_mask, &mask, mask & ~((uint64_t)1 << slot)))
            return slot;
#endif
    }
}

/* The slot's stream, created on first use by its holder (which owns the slot exclusively). */
static mti_status slot_stream(struct mti_pool *p, int slot, struct mti_stream **out)
{
    struct mti_stream *s = mti_atomic_load_acquire(&p->streams[slot]);
    if (!s) {
        MTI_CHECK(mti__stream_create(p->dev, slot, &s));
        mti_atomic_store_release(&p->streams[slot], s);
        mti_atomic_fetch_add_relaxed(&p->streams_created, 1);
    }
    *out = s;
    return MTI_OK;
}

static void free_slot(struct mti_pool *p, int slot)
{
    mti_atomic_fetch_sub_relaxed(&p->in_use, 1);
#ifdef MTI_BROKEN_POOL_LOST_WAKEUP
    /* Broken twin (tests only): look for waiters before the bit is visible. A waiter already
     * asleep is woken, retries, finds no slot and sleeps again: nobody wakes it later. The
     * sleep widens that window so the test hits it every time instead of rarely. */
    if (mti_atomic_load_seq_cst(&p->n_waiters) > 0) {
        mti_mutex_lock(&p->wait_lock);
        mti_cond_broadcast(&p->slot_freed);
        mti_mutex_unlock(&p->wait_lock);
    }
    nanosleep(&(struct timespec){0, 5000000}, NULL);
    mti_atomic_fetch_or_seq_cst(&p->free_mask, (uint64_t)1 << slot);
#else
    mti_atomic_fetch_or_seq_cst(&p->free_mask, (uint64_t)1 << slot);
    if (mti_atomic_load_seq_cst(&p->n_waiters) > 0) {
        mti_mutex_lock(&p->wait_lock);
        mti_cond_broadcast(&p->slot_freed);
        mti_mutex_unlock(&p->wait_lock);
    }
#endif
}

static mti_status wait_for_slot(struct mti_pool *p, mti_pool_exhaustion policy, int wait_ms,
                                int *slot)
{
    struct timespec deadline = mti_deadline_after_ms(wait_ms);
    mti_status st = MTI_OK;
    mti_atomic_fetch_add_relaxed(&p->waits, 1);
    mti_mutex_lock(&p->wait_lock);
    mti_atomic_fetch_add_seq_cst(&p->n_waiters, 1);
    while ((*slot = mti__pool_try_acquire(p)) < 0) {
        if (policy == MTI_POOL_BLOCK) {
            mti_cond_wait(&p->slot_freed, &p->wait_lock);
        } else if (!mti_cond_wait_until(&p->slot_freed, &p->wait_lock, &deadline)) {
            if ((*slot = mti__pool_try_acquire(p)) >= 0) break;
            mti_atomic_fetch_add_relaxed(&p->timeouts, 1);
            st = mti__error(MTI_ERR_TIMEOUT, "no stream slot freed within %d ms (pool of %d)",
                            wait_ms, p->size);
            break;
        }
    }
    mti_atomic_fetch_sub_seq_cst(&p->n_waiters, 1);
    mti_mutex_unlock(&p->wait_lock);
    return st;
}

mti_status mti__pool_acquire(struct mti_pool *p, mti_pool_exhaustion policy, int wait_ms,
                             struct mti_stream **out)
{
    *out = NULL;
    int slot = mti__pool_try_acquire(p);
    if (slot < 0) {
        if (policy == MTI_POOL_FAIL) {
            mti_atomic_fetch_add_relaxed(&p->exhausted, 1);
            return mti__error(MTI_ERR_POOL_EXHAUSTED,
                              "all %d stream slots are held (MTI_POOL_SIZE raises the pool, "
                              "MTI_POOL_EXHAUSTION=wait|block waits for one)",
                              p->size);
        }
        MTI_CHECK(wait_for_slot(p, policy, wait_ms, &slot));
    }
    long in_use = mti_atomic_fetch_add_relaxed(&p->in_use, 1) + 1;
    mti_atomic_max_relaxed(&p->peak_in_use, in_use);
    struct mti_stream *s;
    mti_status st = slot_stream(p, slot, &s);
    if (st != MTI_OK) {
        free_slot(p, slot);
        return st;
    }
    atomic_store(&s->held, true);
    mti_atomic_fetch_add_relaxed(&p->acquires, 1);
    *out = s;
    return MTI_OK;
}

mti_status mti__pool_release(struct mti_pool *p, struct mti_stream *s)
{
    if (!atomic_exchange(&s->held, false))
        return mti__error(MTI_ERR_INVALID_ARGUMENT, "stream slot %d is not held (released twice?)",
                          s->slot);
#ifdef MTI_BROKEN_POOL_RELEASE_BEFORE_DRAIN
    /* Broken twin (tests only): the slot goes back while its work may still be queued. */
    free_slot(p, s->slot);
    return MTI_OK;
#else
    mti_status st = mti__stream_sync(s);
    free_slot(p, s->slot);
    return st;
#endif
}

mti_status mti__pool_assign_round_robin(struct mti_pool *p, struct mti_stream **out)
{
    int slot = (int)(mti_atomic_fetch_add_relaxed(&p->rr_next, 1) % (uint64_t)p->size);
    struct mti_stream *s = mti_atomic_load_acquire(&p->streams[slot]);
    if (!s) {
        /* Several threads may land on the same new slot: create it once. */
        mti_mutex_lock(&p->create_lock);
        mti_status st = slot_stream(p, slot, &s);
        mti_mutex_unlock(&p->create_lock);
        MTI_CHECK(st);
    }
    mti_atomic_fetch_add_relaxed(&p->acquires, 1);
    *out = s;
    return MTI_OK;
}
