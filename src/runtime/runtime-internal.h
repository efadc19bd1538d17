/*
 * Runtime internals shared by the files of src/runtime: the runtime, per-device contexts, streams.
 * Ownership: a runtime owns its device contexts; a device context owns its backend device,
 * pool (which owns the streams) and allocator. Nothing here is visible to users.
 */
#ifndef MTI_RUNTIME_INTERNAL_H
#define MTI_RUNTIME_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend-impl.h"
#include "base/atomics.h"
#include "base/status.h"
#include "base/sync.h"
#include "runtime/alloc.h"
#include "runtime/pool.h"

struct mti_device_ctx {
    struct mti_runtime *rt;
    int index; /* position in rt->devices */
    mti_backend_device *bdev;
    struct mti_pool pool;
    struct mti_allocator alloc;
};

struct mti_stream {
    mti_backend_stream *bs;
    struct mti_device_ctx *dev;
    int slot;
    /* The recording rule: held while a thread submits into bs, so one thread records into a
     * stream at a time even when threads share it (round-robin) or a caller passes it on. */
    mti_mutex record_lock;
    struct mti_stream_cache cache;
    /* Thread-local cache entry that holds this slot (exclusive mode), or NULL. Written only by
     * that thread. */
    void *tls_holder;
    /* Exclusive mode: set by the acquirer, cleared (exchange) by the one release that counts,
     * so a second release of the same slot is refused instead of freeing another holder's. */
    _Atomic bool held;
    /* Between a successful graph begin and its end (protected by record_lock): the fault
     * hooks stay out of captured work. */
    bool capturing;
};

/* A counting semaphore for MTI_SERIAL_SEMAPHORE. */
struct mti_sem {
    mti_mutex lock; /* protects count */
    mti_cond freed;
    int count MTI_GUARDED_BY(lock);
};

struct mti_runtime {
    uint64_t id;         /* unique per process, never reused (thread caches compare it) */
    unsigned fork_epoch; /* mti__fork_epoch when created */
    mti_runtime_params params;
    mti_backend_kind backend;
    int n_devices;
    struct mti_device_ctx *devices;
    mti_mutex encode_lock; /* MTI_SERIAL_GLOBAL: held while any thread records */
    struct mti_sem encode_sem;
    /* Registry (runtime.c): protected by the global registry lock. */
    struct mti_runtime *registry_next;
    int pins; /* thread-exit releases in progress; destroy waits for 0 */
};

/* An event is a marker on whichever device's stream recorded it last: one backend event per
 * device, made on the first record there (so one event orders work across GPUs too). */
struct mti_event {
    struct mti_runtime *rt;
    bool timing;
    /* Device index of the last record, -1 before any. Written by the recorder (release), read
     * by waiters (acquire): a waiter sees the backend event the recorder made. */
    _Atomic int current;
    mti_backend_event *_Atomic per_device[]; /* rt->n_devices entries */
};

/* Process-wide fork epoch, bumped in the child by pthread_atfork. */
extern _Atomic unsigned mti__fork_epoch;

static inline mti_status mti__runtime_check(struct mti_runtime *rt)
{
    if (MTI_UNLIKELY(rt->fork_epoch != mti_atomic_load_relaxed(&mti__fork_epoch)))
        return mti__error(MTI_ERR_FORKED, "this runtime was created before fork(); create a new "
                                          "runtime in the child process");
    return MTI_OK;
}

/* stream.c */
mti_status mti__stream_create(struct mti_device_ctx *dev, int slot, struct mti_stream **out);
void mti__stream_destroy(struct mti_stream *s);
/* Waits for all the stream's work using the runtime's sync mode; returns its pending error. */
mti_status mti__stream_sync(struct mti_stream *s);
/* Recording section: the serialization policy, then the stream's record lock. */
void mti__encode_begin(struct mti_stream *s) MTI_ACQUIRE(s->record_lock);
void mti__encode_end(struct mti_stream *s) MTI_RELEASE(s->record_lock);

/* Fault hooks around one submission (base/fault.h), for every caller that submits into a
 * stream: `MTI_CHECK(mti__submit_begin(s)); return mti__submit_end(s, backend_call, flags);`.
 * begin fails the submission (MTI_FAULT=submit); end queues a failing host function behind a
 * successful one (MTI_FAULT=stream_error). Caller holds s->record_lock. Without
 * -DMTI_FAULT_INJECTION both are empty inlines. */
#ifdef MTI_FAULT_INJECTION
mti_status mti__fault_submit_begin(struct mti_stream *s);
mti_status mti__fault_submit_end(struct mti_stream *s, mti_status st, unsigned flags);
#endif
static inline mti_status mti__submit_begin(struct mti_stream *s)
{
#ifdef MTI_FAULT_INJECTION
    return mti__fault_submit_begin(s);
#else
    (void)s;
    return MTI_OK;
#endif
}
static inline mti_status mti__submit_end(struct mti_stream *s, mti_status st, unsigned flags)
{
#ifdef MTI_FAULT_INJECTION
    return mti__fault_submit_end(s, st, flags);
#else
    (void)s;
    (void)flags;
    return st;
#endif
}

/* Takes a stream for a thread under the runtime's assignment and exhaustion policies. */
mti_status mti__runtime_acquire(struct mti_runtime *rt, struct mti_stream **out);

/* Whether ptr is pinned host memory of rt's first device (false on the CPU backend). */
bool mti__host_is_pinned(struct mti_runtime *rt, const void *ptr);

/* thread-cache.c */
mti_status mti__thread_stream(struct mti_runtime *rt, struct mti_stream **out);
/* Forgets the calling thread's cached slot of s, if it is one; true when it was. */
bool mti__thread_forget(struct mti_stream *s);

/* runtime.c: registry pins for thread-exit releases. */
struct mti_runtime *mti__registry_pin(struct mti_runtime *rt, uint64_t id);
void mti__registry_unpin(struct mti_runtime *rt);
/* Whether (rt, id) names a live runtime (the answer may change right after). */
bool mti__registry_alive(struct mti_runtime *rt, uint64_t id);

#endif
