/*
 * The runtime object: parameters (defaults, then MTI_* environment), backend and device
 * choice, per-device pool and allocator, the registry of live runtimes, and fork handling.
 *
 * Registry: g_registry_lock protects the list of live runtimes and each runtime's `pins`.
 * A thread that exits pins the runtime (under the lock) before returning its slot, and
 * mti_runtime_destroy unlinks the runtime and then waits for pins to reach 0, so a release at
 * thread exit never touches a freed runtime. The lock is a leaf.
 *
 * Fork: pthread_atfork holds g_registry_lock across fork() (so the child never inherits it
 * locked) and bumps mti__fork_epoch in the child; every call on a runtime created before the
 * fork then fails with MTI_ERR_FORKED, while new runtimes in the child work normally.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "base/env.h"
#include "base/log.h"
#include "runtime/runtime-internal.h"

_Atomic unsigned mti__fork_epoch;

static pthread_mutex_t g_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_unpinned = PTHREAD_COND_INITIALIZER;
static struct mti_runtime *g_registry; /* protected by g_registry_lock */
static uint64_t g_next_id = 1;         /* protected by g_registry_lock */
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_registry_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g_registry_lock);
}

static void atfork_child(void)
{
    atomic_fetch_add(&mti__fork_epoch, 1);
    g_registry = NULL; /* the parent's runtimes are not usable here */
    pthread_mutex_unlock(&g_registry_lock);
}

static void install_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

struct mti_runtime *mti__registry_pin(struct mti_runtime *rt, uint64_t id)
{
    struct mti_runtime *found = NULL;
    pthread_mutex_lock(&g_registry_lock);
    for (struct mti_runtime *r = g_registry; r; r = r->registry_next) {
        if (r == rt && r->id == id) {
            r->pins++;
            found = r;
            break;
        }
    }
    pthread_mutex_unlock(&g_registry_lock);
    return found;
}

void mti__registry_unpin(struct mti_runtime *rt)
{
    pthread_mutex_lock(&g_registry_lock);
    if (--rt->pins == 0) pthread_cond_broadcast(&g_unpinned);
    pthread_mutex_unlock(&g_registry_lock);
}

bool mti__registry_alive(struct mti_runtime *rt, uint64_t id)
{
    bool alive = false;
    pthread_mutex_lock(&g_registry_lock);
    for (struct mti_runtime *r = g_registry; r; r = r->registry_next)
        if (r == rt && r->id == id) alive = true;
    pthread_mutex_unlock(&g_registry_lock);
    return alive;
}

static void registry_add(struct mti_runtime *rt)
{
    pthread_mutex_lock(&g_registry_lock);
    rt->id = g_next_id++;
    rt->registry_next = g_registry;
    g_registry = rt;
    pthread_mutex_unlock(&g_registry_lock);
}

static void registry_remove_and_wait(struct mti_runtime *rt)
{
    pthread_mutex_lock(&g_registry_lock);
    for (struct mti_runtime **link = &g_registry; *link; link = &(*link)->registry_next) {
        if (*link == rt) {
            *link = rt->registry_next;
            break;
        }
    }
    while (rt->pins > 0)
        pthread_cond_wait(&g_unpinned, &g_registry_lock);
    pthread_mutex_unlock(&g_registry_lock);
}

/* ---- parameters ------------------------------------------------------------------------- */

void mti_runtime_params_default(mti_runtime_params *p)
{
    memset(p, 0, sizeof *p);
    p->backend = MTI_BACKEND_AUTO;
    p->device = -1;
    p->pool_size = MTI_POOL_DEFAULT_SIZE;
    p->exhaustion = MTI_POOL_BLOCK;
    p->pool_wait_ms = 1000;
    p->assign = MTI_ASSIGN_EXCLUSIVE;
    p->sync_mode = MTI_SYNC_AUTO;
    p->serialization = MTI_SERIAL_PER_STREAM;
    p->serial_limit = 2;
    p->memory_limit = 0;
    p->alloc_poison = 0;
}

static const char *const k_backends[] = {"auto", "cpu", "cuda"};
static const char *const k_exhaustion[] = {"fail", "wait", "block"};
static const char *const k_assign[] = {"exclusive", "round-robin"};
static const char *const k_sync[] = {"auto", "spin", "yield", "block"};
static const char *const k_bool[] = {"0", "1"};

/* "per-stream", "global", "semaphore" or "semaphore:N". */
static mti_status parse_serialization(const char *value, mti_runtime_params *p)
{
    static const char *const names[] = {"per-stream", "global", "semaphore"};
    if (strncmp(value, "semaphore:", 10) == 0) {
        MTI_CHECK(mti__parse_int("MTI_SERIALIZATION semaphore limit", value + 10, 1, 1024,
                                 &p->serial_limit));
        p->serialization = MTI_SERIAL_SEMAPHORE;
        return MTI_OK;
    }
    int v;
    MTI_CHECK(mti__parse_enum("MTI_SERIALIZATION", value, names, 3, &v));
    p->serialization = (mti_serialization)v;
    return MTI_OK;
}

mti_status mti_runtime_params_from_env(mti_runtime_params *params)
{
    MTI_CHECK_ARG(params != NULL, "params is NULL");
    mti_runtime_params p = *params; /* all or nothing */
    int v;
    v = (int)p.backend;
    MTI_CHECK(mti__env_enum("MTI_BACKEND", k_backends, 3, &v));
    p.backend = (mti_backend_kind)v;
    MTI_CHECK(mti__env_int("MTI_DEVICE", -1, 1023, &p.device));
    MTI_CHECK(mti__env_int("MTI_POOL_SIZE", 1, MTI_POOL_MAX_SLOTS, &p.pool_size));
    v = (int)p.exhaustion;
    MTI_CHECK(mti__env_enum("MTI_POOL_EXHAUSTION", k_exhaustion, 3, &v));
    p.exhaustion = (mti_pool_exhaustion)v;
    MTI_CHECK(mti__env_int("MTI_POOL_WAIT_MS", 0, 86400000, &p.pool_wait_ms));
    v = (int)p.assign;
    MTI_CHECK(mti__env_enum("MTI_STREAM_ASSIGN", k_assign, 2, &v));
    p.assign = (mti_stream_assign)v;
    v = (int)p.sync_mode;
    MTI_CHECK(mti__env_enum("MTI_SYNC_MODE", k_sync, 4, &v));
    p.sync_mode = (mti_sync_mode)v;
    const char *ser = getenv("MTI_SERIALIZATION");
    if (ser && *ser) MTI_CHECK(parse_serialization(ser, &p));
    MTI_CHECK(mti__env_size("MTI_MEMORY_LIMIT", &p.memory_limit));
    MTI_CHECK(mti__env_enum("MTI_ALLOC_POISON", k_bool, 2, &p.alloc_poison));
    *params = p;
    return MTI_OK;
}

static mti_status validate(const mti_runtime_params *p)
{
    MTI_CHECK_ARG(p->backend >= MTI_BACKEND_AUTO && p->backend <= MTI_BACKEND_CUDA,
                  "backend %d is not auto|cpu|cuda", (int)p->backend);
    MTI_CHECK_ARG(p->pool_size >= 1 && p->pool_size <= MTI_POOL_MAX_SLOTS,
                  "pool_size %d is out of range 1..%d", p->pool_size, MTI_POOL_MAX_SLOTS);
    MTI_CHECK_ARG(p->exhaustion >= MTI_POOL_FAIL && p->exhaustion <= MTI_POOL_BLOCK,
                  "exhaustion %d is not fail|wait|block", (int)p->exhaustion);
    MTI_CHECK_ARG(p->pool_wait_ms >= 0, "pool_wait_ms %d is negative", p->pool_wait_ms);
    MTI_CHECK_ARG(p->assign == MTI_ASSIGN_EXCLUSIVE || p->assign == MTI_ASSIGN_ROUND_ROBIN,
                  "assign %d is not exclusive|round-robin", (int)p->assign);
    MTI_CHECK_ARG(p->sync_mode >= MTI_SYNC_AUTO && p->sync_mode <= MTI_SYNC_BLOCK,
                  "sync_mode %d is not auto|spin|yield|block", (int)p->sync_mode);
    MTI_CHECK_ARG(p->serialization >= MTI_SERIAL_PER_STREAM &&
                      p->serialization <= MTI_SERIAL_SEMAPHORE,
                  "serialization %d is not per-stream|global|semaphore", (int)p->serialization);
    MTI_CHECK_ARG(p->serialization != MTI_SERIAL_SEMAPHORE || p->serial_limit >= 1,
                  "serial_limit %d must be at least 1", p->serial_limit);
    MTI_CHECK_ARG(p->device >= -1, "device %d is not a device ordinal or -1 (all)", p->device);
    return MTI_OK;
}

/* ---- backend choice --------------------------------------------------------------------- */

/* Opens the devices of the chosen backend into rt->devices (bdev only). */
static mti_status open_devices(struct mti_runtime *rt)
{
    const mti_runtime_params *p = &rt->params;
    mti_backend_kind kind = p->backend;
    const char *why = NULL;
    int n = 0;
#ifdef MTI_WITH_CUDA
    if (kind == MTI_BACKEND_AUTO || kind == MTI_BACKEND_CUDA) {
        n = mti__cuda_count_devices(&why);
        if (n > 0) kind = MTI_BACKEND_CUDA;
    }
#else
    why = "this build has no CUDA backend";
#endif
    if (kind == MTI_BACKEND_CUDA && n == 0)
        return mti__error(MTI_ERR_UNSUPPORTED, "backend cuda: %s", why ? why : "no GPU");
    if (kind == MTI_BACKEND_AUTO) {
        static _Atomic int notice_printed;
        if (!atomic_exchange(&notice_printed, 1))
            fprintf(stderr, "mtinfer: no usable GPU (%s); using the CPU backend\n",
                    why ? why : "none found");
        kind = MTI_BACKEND_CPU;
    }
    if (kind == MTI_BACKEND_CPU) n = mti__cpu_count_devices(&why);
    if (p->device >= n)
        return mti__error(MTI_ERR_NOT_FOUND, "device %d: the %s backend has %d device(s)",
                          p->device, mti_backend_name(kind), n);
    int first = p->device >= 0 ? p->device : 0;
    int count = p->device >= 0 ? 1 : n;
    rt->backend = kind;
    rt->devices = calloc((size_t)count, sizeof *rt->devices);
    if (!rt->devices) return mti__error(MTI_ERR_OUT_OF_MEMORY, "device table");
    for (int i = 0; i < count; i++) {
        mti_status st;
#ifdef MTI_WITH_CUDA
        if (kind == MTI_BACKEND_CUDA)
            st = mti__cuda_device_open(first + i, p->sync_mode, &rt->devices[i].bdev);
        else
#endif
            st = mti__cpu_device_open(first + i, p->sync_mode, &rt->devices[i].bdev);
        if (st != MTI_OK) return st;
        rt->devices[i].rt = rt;
        rt->devices[i].index = i;
        rt->n_devices = i + 1;
    }
    if (kind == MTI_BACKEND_CPU)
        openblas_set_num_threads(1); /* our streams are the parallelism: no BLAS threads */
    return MTI_OK;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static void teardown(struct mti_runtime *rt, int devices_ready)
{
    /* Drain every stream first: cached blocks may still be in use by queued work. */
    for (int i = 0; i < devices_ready; i++)
        for (int slot = 0; slot < rt->devices[i].pool.size; slot++) {
            struct mti_stream *s = mti_atomic_load_acquire(&rt->devices[i].pool.streams[slot]);
            if (s) mti__stream_sync(s);
        }
    for (int i = 0; i < devices_ready; i++) {
        mti__alloc_destroy(&rt->devices[i].alloc);
        mti__pool_destroy(&rt->devices[i].pool);
    }
    for (int i = 0; i < rt->n_devices; i++)
        rt->devices[i].bdev->iface->destroy(rt->devices[i].bdev);
    free(rt->devices);
    mti_cond_destroy(&rt->encode_sem.freed);
    mti_mutex_destroy(&rt->encode_sem.lock);
    mti_mutex_destroy(&rt->encode_lock);
    free(rt);
}

mti_status mti_runtime_create(const mti_runtime_params *params, mti_runtime_t *out)
{
    MTI_CHECK_ARG(out != NULL, "out is NULL");
    *out = NULL;
    mti_runtime_params p;
    if (params) {
        p = *params;
    } else {
        mti_runtime_params_default(&p);
        MTI_CHECK(mti_runtime_params_from_env(&p));
    }
    MTI_CHECK(validate(&p));
    pthread_once(&g_atfork_once, install_atfork);

    struct mti_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) return mti__error(MTI_ERR_OUT_OF_MEMORY, "runtime");
    rt->params = p;
    rt->fork_epoch = mti_atomic_load_relaxed(&mti__fork_epoch);
    mti_mutex_init(&rt->encode_lock);
    mti_mutex_init(&rt->encode_sem.lock);
    mti_cond_init(&rt->encode_sem.freed);
    rt->encode_sem.count = p.serial_limit;

    int ready = 0;
    mti_status st;
    MTI_CHECK_GOTO(open_devices(rt), st, fail);
    for (; ready < rt->n_devices; ready++) {
        struct mti_device_ctx *dev = &rt->devices[ready];
        MTI_CHECK_GOTO(mti__pool_init(&dev->pool, dev, p.pool_size), st, fail);
        MTI_CHECK_GOTO(mti__alloc_init(&dev->alloc, dev, p.memory_limit, p.alloc_poison != 0), st,
                       fail);
    }
    registry_add(rt);
    mti__log(MTI_LOG_INFO, "runtime %llu on %s (%d device(s), pool %d)", (unsigned long long)rt->id,
             rt->devices[0].bdev->name, rt->n_devices, p.pool_size);
    *out = rt;
    return MTI_OK;
fail:
    teardown(rt, ready);
    return st;
}

void mti_runtime_destroy(mti_runtime_t rt)
{
    if (!rt) return;
    if (mti__runtime_check(rt) != MTI_OK)
        return; /* a fork child: the parent's threads do not exist here; leave it alone */
    registry_remove_and_wait(rt);
    teardown(rt, rt->n_devices);
}

mti_backend_kind mti_runtime_backend(mti_runtime_t rt)
{
    return rt ? rt->backend : MTI_BACKEND_AUTO;
}

const char *mti_runtime_device_name(mti_runtime_t rt)
{
    return rt ? rt->devices[0].bdev->name : "";
}

const char *mti_backend_name(mti_backend_kind kind)
{
    return kind >= MTI_BACKEND_AUTO && kind <= MTI_BACKEND_CUDA ? k_backends[kind] : "unknown";
}

mti_status mti_runtime_pool_stats(mti_runtime_t rt, mti_pool_stats *out)
{
    MTI_CHECK_ARG(rt && out, "runtime and out must not be NULL");
    MTI_CHECK(mti__runtime_check(rt));
    memset(out, 0, sizeof *out);
    for (int i = 0; i < rt->n_devices; i++) {
        struct mti_pool *p = &rt->devices[i].pool;
        out->size += p->size;
        out->in_use += (int)mti_atomic_load_relaxed(&p->in_use);
        out->peak_in_use += (int)mti_atomic_load_relaxed(&p->peak_in_use);
        out->streams_created += mti_atomic_load_relaxed(&p->streams_created);
        out->acquires += mti_atomic_load_relaxed(&p->acquires);
        out->waits += mti_atomic_load_relaxed(&p->waits);
        out->timeouts += mti_atomic_load_relaxed(&p->timeouts);
        out->exhausted += mti_atomic_load_relaxed(&p->exhausted);
    }
    return MTI_OK;
}

mti_status mti_runtime_alloc_stats(mti_runtime_t rt, mti_alloc_stats *out)
{
    MTI_CHECK_ARG(rt && out, "runtime and out must not be NULL");
    MTI_CHECK(mti__runtime_check(rt));
    memset(out, 0, sizeof *out);
    for (int i = 0; i < rt->n_devices; i++) {
        struct mti_allocator *a = &rt->devices[i].alloc;
        size_t reserved = atomic_load(&a->reserved);
        size_t allocated = atomic_load(&a->allocated);
        out->allocated += allocated;
        out->cached += reserved > allocated ? reserved - allocated : 0;
        out->peak_allocated += atomic_load(&a->peak_allocated);
        out->deferred += atomic_load(&a->deferred_bytes);
        out->hits += atomic_load(&a->hits);
        out->misses += atomic_load(&a->misses);
        out->oom_retries += atomic_load(&a->oom_retries);
    }
    return MTI_OK;
}

mti_status mti_runtime_release_cached(mti_runtime_t rt)
{
    MTI_CHECK_ARG(rt != NULL, "runtime is NULL");
    MTI_CHECK(mti__runtime_check(rt));
    for (int i = 0; i < rt->n_devices; i++)
        MTI_CHECK(mti__alloc_release_cached(&rt->devices[i].alloc));
    return MTI_OK;
}
