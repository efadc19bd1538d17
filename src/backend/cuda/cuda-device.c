/*
 * CUDA devices: discovery, open, raw memory, the error mapping and the sticky-error latch.
 *
 * A cuda_device owns no CUDA object: it works in the device's primary context (shared with the
 * rest of the process, so two runtimes on one GPU see each other's sticky errors through CUDA
 * itself). Memory is plain cudaMalloc (never managed memory); the runtime's caching allocator
 * sits in front of it, and an out-of-memory answer is MTI_ERR_OUT_OF_MEMORY so that the
 * allocator releases its cache and retries.
 *
 * Shared mutable state: only dev->sticky (atomic, written once). No locks in this file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda-internal.h"
#include "base/env.h"
#include "base/log.h"

/* ---- errors -------------------------------------------------------------------------------- */

/* Errors after which the context is unusable: every later call in the process fails. */
static bool is_sticky(cudaError_t err)
{
    switch (err) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorHardwareStackError:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
    case cudaErrorContextIsDestroyed:
    case cudaErrorDevicesUnavailable:
        return true;
    default:
        return false;
    }
}

static void latch_sticky(struct cuda_device *dev, cudaError_t err)
{
    if (!dev || !is_sticky(err)) return;
    int expected = 0;
    /* seq_cst CAS: the first sticky error wins; later ones (usually the same) are dropped. */
    if (mti_atomic_cas_seq_cst(&dev->sticky, &expected, (int)err))
        mti__log(MTI_LOG_ERROR,
                 "%s: unrecoverable device error %s (%s); every later call on "
                 "this device fails",
                 dev->base.name, cudaGetErrorName(err), cudaGetErrorString(err));
}

mti_status mti__cuda_error(struct cuda_device *dev, cudaError_t err, const char *expr,
                           const char *file, int line)
{
    /* Clear the thread's last error so a later launch check does not report this one again
     * (sticky errors stay: CUDA keeps returning them, and so do we). */
    (void)cudaGetLastError();
    latch_sticky(dev, err);
    mti_status st = err == cudaErrorMemoryAllocation ? MTI_ERR_OUT_OF_MEMORY : MTI_ERR_DEVICE;
    return mti__error_at(st, file, line, "%s: %s: %s", expr, cudaGetErrorName(err),
                         cudaGetErrorString(err));
}

mti_status mti__cublas_error(struct cuda_device *dev, cublasStatus_t err, const char *expr,
                             const char *file, int line)
{
    /* A cuBLAS failure may hide a CUDA one (a kernel that could not launch): latch it too. */
    cudaError_t cuda_err = cudaGetLastError();
    latch_sticky(dev, cuda_err);
    mti_status st;
    switch (err) {
    case CUBLAS_STATUS_ALLOC_FAILED:
        st = MTI_ERR_OUT_OF_MEMORY;
        break;
    case CUBLAS_STATUS_NOT_SUPPORTED:
        st = MTI_ERR_UNSUPPORTED;
        break;
    case CUBLAS_STATUS_INVALID_VALUE:
        st = MTI_ERR_INVALID_ARGUMENT;
        break;
    default:
        st = MTI_ERR_DEVICE;
        break;
    }
    return mti__error_at(st, file, line, "%s: %s: %s", expr, cublasLtGetStatusName(err),
                         cublasLtGetStatusString(err));
}

void mti__cuda_note(struct cuda_device *dev, cudaError_t err, const char *expr, const char *file,
                    int line)
{
    (void)cudaGetLastError();
    latch_sticky(dev, err);
    mti__log(MTI_LOG_DEBUG, "%s failed: %s (%s:%d)", expr, cudaGetErrorName(err), file, line);
}

mti_status mti__cuda_sticky_status(struct cuda_device *dev)
{
    int err = mti_atomic_load_relaxed(&dev->sticky);
    if (!MTI_UNLIKELY(err != 0)) return MTI_OK;
    return mti__error(MTI_ERR_DEVICE, "%s is unusable after an earlier error: %s: %s",
                      dev->base.name, cudaGetErrorName((cudaError_t)err),
                      cudaGetErrorString((cudaError_t)err));
}

mti_status mti__cuda_use_device(struct cuda_device *dev)
{
    MTI_CHECK(mti__cuda_sticky_status(dev));
    int current = -1;
    MTI_CUDA_CHECK(dev, cudaGetDevice(&current));
    if (current != dev->base.ordinal) MTI_CUDA_CHECK(dev, cudaSetDevice(dev->base.ordinal));
    return MTI_OK;
}

/* ---- memory -------------------------------------------------------------------------------- */

static mti_status mem_alloc(mti_backend_device *bd, size_t bytes, void **out)
{
    struct cuda_device *dev = mti__cuda_dev(bd);
    *out = NULL;
    MTI_CHECK(mti__cuda_use_device(dev));
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err != cudaSuccess) {
        mti_status st = mti__cuda_error(dev, err, "cudaMalloc", __FILE__, __LINE__);
        if (st == MTI_ERR_OUT_OF_MEMORY)
            return mti__error(st, "cudaMalloc of %zu bytes on %s: out of device memory", bytes,
                              bd->name);
        return st;
    }
    *out = p;
    return MTI_OK;
}

static void mem_free(mti_backend_device *bd, void *ptr)
{
    struct cuda_device *dev = mti__cuda_dev(bd);
    if (!ptr) return;
    int current = -1;
    if (cudaGetDevice(&current) == cudaSuccess && current != bd->ordinal)
        MTI_CUDA_NOTE(dev, cudaSetDevice(bd->ordinal));
    MTI_CUDA_NOTE(dev, cudaFree(ptr));
}

/* Pinned (page-locked) host memory: the only kind the copy engines read asynchronously. */
static mti_status host_alloc(mti_backend_device *bd, size_t bytes, void **out)
{
    struct cuda_device *dev = mti__cuda_dev(bd);
    *out = NULL;
    MTI_CHECK(mti__cuda_use_device(dev));
    MTI_CUDA_CHECK(dev, cudaHostAlloc(out, bytes ? bytes : 1, cudaHostAllocPortable));
    return MTI_OK;
}

static void host_free(mti_backend_device *bd, void *ptr)
{
    if (ptr) MTI_CUDA_NOTE(mti__cuda_dev(bd), cudaFreeHost(ptr));
}

/* cudaPointerGetAttributes costs about a microsecond: callers ask only for large copies. */
static bool host_is_pinned(mti_backend_device *bd, const void *ptr)
{
    struct cudaPointerAttributes attr;
    if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
        cudaGetLastError(); /* not an error worth keeping: plain pageable memory */
        return false;
    }
    (void)bd;
    return attr.type == cudaMemoryTypeHost;
}

/* ---- discovery and open -------------------------------------------------------------------- */

static void device_destroy(mti_backend_device *bd)
{
    free(bd); /* streams and events are gone by now; the primary context stays with CUDA */
}

static const struct mti_backend_device_i cuda_device_iface = {
    .name = "cuda",
    .destroy = device_destroy,
    .stream_create = mti__cuda_stream_create,
    .event_create = mti__cuda_event_create,
    .mem_alloc = mem_alloc,
    .mem_free = mem_free,
    .host_alloc = host_alloc,
    .host_free = host_free,
    .host_is_pinned = host_is_pinned,
};

/* Oldest architecture this build has code for (sm_90 SASS + compute_80 PTX). */
#define MIN_CC_MAJOR 8

static _Thread_local char g_why[192];

/* The device's compute capability, or an error (not latched: no context yet). */
static cudaError_t device_cc(int ordinal, int *major, int *minor)
{
    cudaError_t err = cudaDeviceGetAttribute(major, cudaDevAttrComputeCapabilityMajor, ordinal);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(minor, cudaDevAttrComputeCapabilityMinor, ordinal);
    return err;
}

int mti__cuda_count_devices(const char **why)
{
    *why = NULL;
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        int driver = 0, runtime = 0;
        (void)cudaDriverGetVersion(&driver);
        (void)cudaRuntimeGetVersion(&runtime);
        (void)cudaGetLastError();
        if (err == cudaErrorInsufficientDriver && driver == 0)
            *why = "CUDA driver not found";
        else if (err == cudaErrorInsufficientDriver)
            snprintf(g_why, sizeof g_why,
                     "the CUDA driver (%d.%d) is older than this build's CUDA runtime (%d.%d)",
                     driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
        else if (err == cudaErrorNoDevice)
            *why = "no CUDA GPU found";
        else
            snprintf(g_why, sizeof g_why, "%s (%s)", cudaGetErrorString(err),
                     cudaGetErrorName(err));
        if (!*why) *why = g_why;
        return 0;
    }
    /* Count the leading devices this build can run on (ordinals must stay CUDA's). */
    int usable = 0;
    for (; usable < n; usable++) {
        int major = 0, minor = 0;
        err = device_cc(usable, &major, &minor);
        if (err != cudaSuccess) {
            (void)cudaGetLastError();
            snprintf(g_why, sizeof g_why, "GPU %d: %s", usable, cudaGetErrorString(err));
            break;
        }
        if (major < MIN_CC_MAJOR) {
            snprintf(g_why, sizeof g_why, "GPU %d is sm_%d%d; this build needs sm_%d0 or newer",
                     usable, major, minor, MIN_CC_MAJOR);
            break;
        }
    }
    if (usable == 0) *why = g_why[0] ? g_why : "no usable CUDA GPU";
    return usable;
}

/* The MTI_CUDA_* knobs: MTI_CUDA_SPIN_US, MTI_CUDA_WORKSPACE, MTI_CUDA_TF32. */
static mti_status read_knobs(struct cuda_device *dev)
{
    int spin_us = MTI_CUDA_DEFAULT_SPIN_US;
    MTI_CHECK(mti__env_int("MTI_CUDA_SPIN_US", 0, 1000000, &spin_us));
    dev->spin_ns = (uint64_t)spin_us * 1000u;
    size_t ws = MTI_CUDA_DEFAULT_WORKSPACE;
    MTI_CHECK(mti__env_size("MTI_CUDA_WORKSPACE", &ws));
    if (ws > ((size_t)1 << 30))
        return mti__error(MTI_ERR_INVALID_ARGUMENT,
                          "MTI_CUDA_WORKSPACE: %zu bytes is more than the 1G allowed", ws);
    dev->workspace_bytes = ws;
    int tf32 = 0;
    MTI_CHECK(mti__env_int("MTI_CUDA_TF32", 0, 1, &tf32));
    dev->tf32 = tf32 != 0;
    return MTI_OK;
}

mti_status mti__cuda_device_open(int ordinal, mti_sync_mode sync_mode, mti_backend_device **out)
{
    *out = NULL;
    int n = 0;
    MTI_CUDA_CHECK(NULL, cudaGetDeviceCount(&n));
    if (ordinal < 0 || ordinal >= n)
        return mti__error(MTI_ERR_NOT_FOUND, "cuda device %d: %d GPU(s) present", ordinal, n);
    int major = 0, minor = 0;
    MTI_CUDA_CHECK(NULL, device_cc(ordinal, &major, &minor));
    if (major < MIN_CC_MAJOR)
        return mti__error(MTI_ERR_UNSUPPORTED,
                          "cuda device %d is sm_%d%d; this build needs sm_%d0 "
                          "or newer",
                          ordinal, major, minor, MIN_CC_MAJOR);

    struct cuda_device *dev = calloc(1, sizeof *dev);
    if (!dev) return mti__error(MTI_ERR_OUT_OF_MEMORY, "cuda device");
    dev->base.iface = &cuda_device_iface;
    dev->base.ordinal = ordinal;
    dev->sync_mode = sync_mode;
    dev->blocking_events = sync_mode == MTI_SYNC_BLOCK;
    dev->cc_major = major;
    dev->cc_minor = minor;
    atomic_init(&dev->sticky, 0);
    snprintf(dev->base.name, sizeof dev->base.name, "cuda:%d", ordinal);
    mti_status st = read_knobs(dev);
    if (st != MTI_OK) goto fail;

    /* Creates the primary context now, so a broken GPU fails here and not in the first request. */
    MTI_CUDA_CHECK_GOTO(dev, cudaSetDevice(ordinal), st, fail);
    struct cudaDeviceProp prop;
    MTI_CUDA_CHECK_GOTO(dev, cudaGetDeviceProperties(&prop, ordinal), st, fail);
    prop.name[sizeof prop.name - 1] = '\0';
    snprintf(dev->base.name, sizeof dev->base.name, "%s (sm_%d%d)", prop.name, major, minor);
    *out = &dev->base;
    return MTI_OK;
fail:
    free(dev);
    return st;
}
