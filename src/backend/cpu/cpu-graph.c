/*
 * CPU graphs: capture appends the recorder's ops to a list instead of the ring; a launch is
 * one CPU_OP_GRAPH op that runs the list in order. The same API as CUDA graphs, so code that
 * captures a request once and replays it runs (and is tested) on both backends.
 * A graph is reference-counted: its owner holds one reference and each queued launch one, so
 * destroying a graph with launches still queued is safe. No locks (the recorder alone
 * captures; refs is atomic).
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu-internal.h"

mti_status mti__cpu_graph_begin(mti_backend_stream *bs)
{
    struct cpu_stream *s = (struct cpu_stream *)bs;
    if (mti_atomic_load_relaxed(&s->capturing))
        return mti__error(MTI_ERR_BUSY, "graph capture: the stream is already capturing");
    s->n_capture = 0;
    mti_atomic_store_release(&s->capturing, true);
    return MTI_OK;
}

mti_status mti__cpu_graph_end(mti_backend_stream *bs, mti_backend_graph **out)
{
    struct cpu_stream *s = (struct cpu_stream *)bs;
    *out = NULL;
    if (!mti_atomic_load_relaxed(&s->capturing))
        return mti__error(MTI_ERR_INVALID_ARGUMENT, "graph end: no capture is open on the stream");
    mti_atomic_store_release(&s->capturing, false);
    struct cpu_graph *g = calloc(1, sizeof *g);
    struct cpu_op *ops = malloc(sizeof *ops * (size_t)(s->n_capture ? s->n_capture : 1));
    if (!g || !ops) {
        free(g);
        free(ops);
        return mti__error(MTI_ERR_OUT_OF_MEMORY, "graph of %d ops", s->n_capture);
    }
    memcpy(ops, s->capture_ops, sizeof *ops * (size_t)s->n_capture);
    g->base.device = bs->device;
    g->base.captured_on = bs;
    g->ops = ops;
    g->n_ops = s->n_capture;
    atomic_init(&g->refs, 1);
    *out = &g->base;
    return MTI_OK;
}

void mti__cpu_graph_unref(struct cpu_graph *g)
{
    if (atomic_fetch_sub(&g->refs, 1) == 1) {
        free(g->ops);
        free(g);
    }
}

mti_status mti__cpu_graph_launch(mti_backend_stream *bs, mti_backend_graph *bg, unsigned flags)
{
    struct cpu_graph *g = (struct cpu_graph *)bg;
    if (bg->device != bs->device)
        return mti__error(MTI_ERR_INVALID_ARGUMENT, "graph launched on a stream of another device");
    atomic_fetch_add(&g->refs, 1);
    struct cpu_op op = {.kind = CPU_OP_GRAPH, .u.graph = {g}};
    mti_status st = mti__cpu_stream_submit((struct cpu_stream *)bs, &op, flags, NULL);
    if (st != MTI_OK) mti__cpu_graph_unref(g);
    return st;
}

void mti__cpu_graph_destroy(mti_backend_graph *bg)
{
    if (bg) mti__cpu_graph_unref((struct cpu_graph *)bg);
}
