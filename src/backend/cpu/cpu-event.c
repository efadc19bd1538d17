/*
 * CPU events: a captured marker (stream, sequence number). Complete when the stream's
 * `completed` count reaches the marker. Timing events also enqueue a stamp op that reads the
 * clock when the stream reaches it; a stamp from an older record is ignored (generation).
 * Lock: e->lock protects the marker; it is never held while a stream lock is taken.
 */
#include <stdlib.h>

#include "backend/cpu/cpu-internal.h"
#include "base/clock.h"

static void read_marker(struct cpu_event *e, struct cpu_stream **stream, uint64_t *seq)
{
    mti_mutex_lock(&e->lock);
    *stream = e->stream;
    *seq = e->seq;
    mti_mutex_unlock(&e->lock);
}

void mti__cpu_event_stamp(struct cpu_event *e, uint64_t generation)
{
    uint64_t now = mti_now_ns();
    mti_mutex_lock(&e->lock);
    if (e->generation == generation) {
        e->time_ns = now;
        e->time_generation = generation;
    }
    mti_mutex_unlock(&e->lock);
}

static mti_status event_record(mti_backend_event *be, mti_backend_stream *bs, unsigned flags)
{
    struct cpu_event *e = (struct cpu_event *)be;
    struct cpu_stream *s = (struct cpu_stream *)bs;
    uint64_t seq;
    if (mti_atomic_load_relaxed(&s->capturing))
        return mti__error(MTI_ERR_BUSY, "event record: the stream is capturing a graph");
    if (e->timing) {
        mti_mutex_lock(&e->lock);
        uint64_t generation = ++e->generation;
        mti_mutex_unlock(&e->lock);
        struct cpu_op op = {.kind = CPU_OP_RECORD, .u.record = {e, generation}};
        MTI_CHECK(mti__cpu_stream_submit(s, &op, flags, &seq));
        mti_mutex_lock(&e->lock);
        if (e->generation == generation) {
            e->stream = s;
            e->seq = seq;
        }
        mti_mutex_unlock(&e->lock);
        return MTI_OK;
    }
    mti_mutex_lock(&s->lock);
    seq = s->tail;
    mti_mutex_unlock(&s->lock);
    mti_mutex_lock(&e->lock);
    e->generation++;
    e->stream = s;
    e->seq = seq;
    mti_mutex_unlock(&e->lock);
    return MTI_OK;
}

static mti_status event_query(mti_backend_event *be)
{
    struct cpu_stream *s;
    uint64_t seq;
    read_marker((struct cpu_event *)be, &s, &seq);
    if (!s || mti__cpu_stream_completed(s) >= seq) return MTI_OK;
    mti__cpu_stream_kick(s, seq); /* a polling caller must see progress */
    return MTI_ERR_NOT_READY;
}

static mti_status event_synchronize(mti_backend_event *be, mti_sync_mode mode)
{
    struct cpu_stream *s;
    uint64_t seq;
    read_marker((struct cpu_event *)be, &s, &seq);
    if (s) mti__cpu_stream_wait_seq(s, seq, mode);
    return MTI_OK;
}

static mti_status event_time(struct cpu_event *e, uint64_t *ns)
{
    mti_mutex_lock(&e->lock);
    bool ok = e->timing && e->stream && e->time_generation == e->generation;
    *ns = e->time_ns;
    mti_mutex_unlock(&e->lock);
    if (!ok)
        return mti__error(MTI_ERR_NOT_READY, "event not recorded with timing, or not complete");
    return MTI_OK;
}

static mti_status event_elapsed_ms(mti_backend_event *start, mti_backend_event *end, float *ms)
{
    uint64_t t0, t1;
    MTI_CHECK(event_time((struct cpu_event *)start, &t0));
    MTI_CHECK(event_time((struct cpu_event *)end, &t1));
    *ms = (float)((double)((int64_t)(t1 - t0)) / 1e6);
    return MTI_OK;
}

static void event_destroy(mti_backend_event *be)
{
    struct cpu_event *e = (struct cpu_event *)be;
    mti_mutex_destroy(&e->lock);
    free(e);
}

static const struct mti_backend_event_i cpu_event_iface = {
    .destroy = event_destroy,
    .record = event_record,
    .query = event_query,
    .synchronize = event_synchronize,
    .elapsed_ms = event_elapsed_ms,
};

mti_status mti__cpu_event_create(mti_backend_device *dev, bool timing, mti_backend_event **out)
{
    *out = NULL;
    struct cpu_event *e = calloc(1, sizeof *e);
    if (!e) return mti__error(MTI_ERR_OUT_OF_MEMORY, "cpu event");
    mti_status st = mti_mutex_init(&e->lock);
    if (st != MTI_OK) {
        free(e);
        return st;
    }
    e->base.iface = &cpu_event_iface;
    e->base.device = dev;
    e->timing = timing;
    *out = &e->base;
    return MTI_OK;
}
