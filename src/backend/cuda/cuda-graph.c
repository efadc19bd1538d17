/*
 * CUDA graphs (internal API, see cuda-internal.h): capture the work one thread submits to a
 * stream, instantiate it once, replay it with one launch.
 *
 * Capture uses cudaStreamCaptureModeThreadLocal: only the capturing thread is barred from
 * unsafe calls (cudaMalloc, synchronizes), other threads keep working on their own streams.
 *
 * Host functions captured into a graph run on every replay, so their contexts (fn, user, the
 * stream whose error slot they report to) must live as long as the graph and every launch of
 * it. They are handed to a cudaUserObject retained by the graph: CUDA frees them when the
 * graph, its executable and the last in-flight launch are gone, even when graph_destroy is
 * called with launches still queued.
 *
 * Threads: begin/end/launch are submits (the stream's recorder only); the `capturing` flag is
 * released after the capture state is set up so that other threads' synchronize/query see it.
 * No locks.
 */
#include <stdlib.h>

#include "backend/cuda/cuda-internal.h"

mti_status mti__cuda_graph_begin(mti_backend_stream *bs)
{
    struct cuda_stream *s = mti__cuda_stream(bs);
    struct cuda_device *dev = mti__cuda_dev(bs->device);
    if (mti_atomic_load_relaxed(&s->capturing))
        return mti__error(MTI_ERR_BUSY, "graph capture: the stream is already capturing");
    MTI_CHECK(mti__cuda_use_device(dev));
    s->capture_calls = NULL;
    MTI_CUDA_CHECK(dev, cudaStreamBeginCapture(s->stream, cudaStreamCaptureModeThreadLocal));
    mti_atomic_store_release(&s->capturing, true);
    return MTI_OK;
}

/* cudaUserObject destructor: runs on a CUDA thread, no CUDA calls. */
static void free_host_calls(void *list)
{
    mti__cuda_host_calls_free(list);
}

/* Gives `calls` to graph (freed when the graph's last user is gone). On failure frees them. */
static mti_status attach_host_calls(struct cuda_device *dev, cudaGraph_t graph,
                                    struct cuda_host_call *calls)
{
    cudaUserObject_t obj;
    cudaError_t err =
        cudaUserObjectCreate(&obj, calls, free_host_calls, 1, cudaUserObjectNoDestructorSync);
    if (err != cudaSuccess) {
        mti__cuda_host_calls_free(calls);
        return mti__cuda_error(dev, err, "cudaUserObjectCreate", __FILE__, __LINE__);
    }
    err = cudaGraphRetainUserObject(graph, obj, 1, cudaGraphUserObjectMove);
    if (err != cudaSuccess) {
        mti_status st = mti__cuda_error(dev, err, "cudaGraphRetainUserObject", __FILE__, __LINE__);
        MTI_CUDA_NOTE(dev, cudaUserObjectRelease(obj, 1)); /* runs free_host_calls */
        return st;
    }
    return MTI_OK;
}

mti_status mti__cuda_graph_end(mti_backend_stream *bs, mti_backend_graph **out)
{
    struct cuda_stream *s = mti__cuda_stream(bs);
    struct cuda_device *dev = mti__cuda_dev(bs->device);
    *out = NULL;
    if (!mti_atomic_load_relaxed(&s->capturing))
        return mti__error(MTI_ERR_INVALID_ARGUMENT, "graph end: no capture is open on the stream");
    /* End the capture whatever else fails, so the stream is usable again. */
    int current = -1;
    if (cudaGetDevice(&current) == cudaSuccess && current != bs->device->ordinal)
        MTI_CUDA_NOTE(dev, cudaSetDevice(bs->device->ordinal));
    cudaGraph_t graph = NULL;
    cudaError_t err = cudaStreamEndCapture(s->stream, &graph);
    struct cuda_host_call *calls = s->capture_calls;
    s->capture_calls = NULL;
    mti_atomic_store_release(&s->capturing, false);
    mti_status st = MTI_OK;
    mti_cuda_graph *g = NULL;
    if (err != cudaSuccess) {
        st = mti__cuda_error(dev, err, "cudaStreamEndCapture", __FILE__, __LINE__);
        mti__cuda_host_calls_free(calls);
        goto out;
    }
    if (calls) {
        MTI_CHECK_GOTO(attach_host_calls(dev, graph, calls), st, out);
    }
    g = calloc(1, sizeof *g);
    if (!g) {
        st = mti__error(MTI_ERR_OUT_OF_MEMORY, "cuda graph");
        goto out;
    }
    g->base.device = bs->device;
    g->base.captured_on = bs;
    g->capture_stream = s;
    g->has_host_calls = calls != NULL;
    MTI_CUDA_CHECK_GOTO(dev, cudaGraphInstantiate(&g->exec, graph, 0), st, out);
    *out = &g->base;
    g = NULL;
out:
    free(g);
    /* The executable keeps what it needs (user objects included) after this. */
    if (graph) MTI_CUDA_NOTE(dev, cudaGraphDestroy(graph));
    return st;
}

mti_status mti__cuda_graph_launch(mti_backend_stream *bs, mti_backend_graph *bg, unsigned flags)
{
    (void)flags;
    mti_cuda_graph *g = (mti_cuda_graph *)bg;
    struct cuda_stream *s = mti__cuda_stream(bs);
    struct cuda_device *dev = mti__cuda_dev(bs->device);
    if (g->base.device != bs->device)
        return mti__error(MTI_ERR_INVALID_ARGUMENT, "graph of %s launched on a stream of %s",
                          g->base.device->name, bs->device->name);
    if (g->has_host_calls && g->capture_stream != s)
        return mti__error(MTI_ERR_INVALID_ARGUMENT,
                          "a graph with host functions runs only on the stream it was captured on");
    MTI_CHECK(mti__cuda_use_device(dev));
    MTI_CUDA_CHECK(dev, cudaGraphLaunch(g->exec, s->stream));
    return MTI_OK;
}

void mti__cuda_graph_destroy(mti_backend_graph *bg)
{
    if (!bg) return;
    mti_cuda_graph *g = (mti_cuda_graph *)bg;
    struct cuda_device *dev = mti__cuda_dev(g->base.device);
    MTI_CUDA_NOTE(dev, cudaGraphExecDestroy(g->exec));
    free(g);
}
