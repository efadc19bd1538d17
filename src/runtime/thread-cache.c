/*
 * Per-thread stream cache: the slot a thread holds in each runtime it uses, looked up without
 * any lock on the request path, and returned to the pool when the thread exits (after its
 * queued work drains). Entries name the runtime by pointer and unique id, so an entry for a
 * destroyed runtime is recognised as stale and never touched.
 *
 * The thread-exit destructor pins the runtime through the registry (runtime.c) so that a
 * concurrent mti_runtime_destroy waits for the release to finish.
 */
#include <pthread.h>
#include <string.h>

#include "runtime/runtime-internal.h"

#define MAX_RUNTIMES_PER_THREAD 8

struct thread_entry {
    struct mti_runtime *rt;
    uint64_t rt_id;
    struct mti_stream *stream;
};

static _Thread_local struct thread_entry tls_entries[MAX_RUNTIMES_PER_THREAD];
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void release_entry(struct thread_entry *e)
{
    struct mti_runtime *rt = mti__registry_pin(e->rt, e->rt_id);
    if (rt) {
        e->stream->tls_holder = NULL;
        if (rt->params.assign == MTI_ASSIGN_EXCLUSIVE)
            mti__pool_release(&e->stream->dev->pool, e->stream);
        mti__registry_unpin(rt);
    }
    memset(e, 0, sizeof *e);
}

/* Runs at thread exit (pthread key destructor): returns every slot the thread still holds. */
static void on_thread_exit(void *unused)
{
    (void)unused;
    for (int i = 0; i < MAX_RUNTIMES_PER_THREAD; i++)
        if (tls_entries[i].rt) release_entry(&tls_entries[i]);
}

static void make_exit_key(void)
{
    pthread_key_create(&exit_key, on_thread_exit);
}

/* An entry that can be reused: empty, or naming a runtime that no longer exists. */
static struct thread_entry *find_free_entry(void)
{
    for (int i = 0; i < MAX_RUNTIMES_PER_THREAD; i++)
        if (!tls_entries[i].rt) return &tls_entries[i];
    for (int i = 0; i < MAX_RUNTIMES_PER_THREAD; i++) {
        if (!mti__registry_alive(tls_entries[i].rt, tls_entries[i].rt_id)) {
            memset(&tls_entries[i], 0, sizeof tls_entries[i]);
            return &tls_entries[i];
        }
    }
    return NULL;
}

mti_status mti__thread_stream(struct mti_runtime *rt, struct mti_stream **out)
{
    for (int i = 0; i < MAX_RUNTIMES_PER_THREAD; i++) {
        if (tls_entries[i].rt == rt && tls_entries[i].rt_id == rt->id) {
            *out = tls_entries[i].stream; /* the request path: no lock, no atomic */
            return MTI_OK;
        }
    }
    struct thread_entry *e = find_free_entry();
    if (!e)
        return mti__error(MTI_ERR_UNSUPPORTED,
                          "a thread may hold current streams of at most %d live runtimes",
                          MAX_RUNTIMES_PER_THREAD);
    struct mti_stream *s;
    MTI_CHECK(mti__runtime_acquire(rt, &s));
    pthread_once(&exit_key_once, make_exit_key);
    pthread_setspecific(exit_key, tls_entries); /* any non-NULL value arms the destructor */
    e->rt = rt;
    e->rt_id = rt->id;
    e->stream = s;
    if (rt->params.assign == MTI_ASSIGN_EXCLUSIVE) s->tls_holder = e;
    *out = s;
    return MTI_OK;
}

bool mti__thread_forget(struct mti_stream *s)
{
    for (int i = 0; i < MAX_RUNTIMES_PER_THREAD; i++) {
        if (&tls_entries[i] == s->tls_holder) {
            s->tls_holder = NULL;
            memset(&tls_entries[i], 0, sizeof tls_entries[i]);
            return true;
        }
    }
    return false;
}
