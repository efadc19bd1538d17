/*
 * Internal submit entry points for src/model (see ops.h). Thin: the caller holds the stream's
 * recording section, so these call the backend directly, between the fault hooks that every
 * submission passes (mti__submit_begin/end: empty outside fault-injection builds). The NN
 * members are optional in the backend table; a backend without them reports
 * MTI_ERR_UNSUPPORTED.
 */
#include "runtime/ops.h"

#define NN_OR_UNSUPPORTED(s, member)                                                               \
    do {                                                                                           \
        if (!(s)->bs->iface->member)                                                               \
            return mti__error(MTI_ERR_UNSUPPORTED, "%s on the %s backend", #member,                \
                              (s)->dev->bdev->iface->name);                                        \
    } while (0)

mti_status mti__op_memcpy(struct mti_stream *s, void *dst, const void *src, size_t bytes,
                          mti_copy_kind kind, unsigned flags)
{
    mti_mutex_assert_held(&s->record_lock);
    MTI_CHECK(mti__submit_begin(s));
    return mti__submit_end(s, s->bs->iface->memcpy_async(s->bs, dst, src, bytes, kind, flags),
                           flags);
}

mti_status mti__op_linear(struct mti_stream *s, const float *x, const float *w, const float *bias,
                          float *y, int m, int n, int k, mti_activation act, unsigned flags)
{
    mti_mutex_assert_held(&s->record_lock);
    MTI_CHECK(mti__submit_begin(s));
    return mti__submit_end(s, s->bs->iface->linear_async(s->bs, x, w, bias, y, m, n, k, act, flags),
                           flags);
}

mti_status mti__op_linear_bf16(struct mti_stream *s, const float *x, uint16_t *x16,
                               const uint16_t *w16, const float *bias, float *y, int m, int n,
                               int k, mti_activation act, unsigned flags)
{
    mti_mutex_assert_held(&s->record_lock);
    NN_OR_UNSUPPORTED(s, linear_bf16_async);
    MTI_CHECK(mti__submit_begin(s));
    return mti__submit_end(
        s, s->bs->iface->linear_bf16_async(s->bs, x, x16, w16, bias, y, m, n, k, act, flags),
        flags);
}

mti_status mti__op_layernorm(struct mti_stream *s, const float *x, const float *gamma,
                             const float *beta, float *y, int rows, int n, float eps,
                             unsigned flags)
{
    mti_mutex_assert_held(&s->record_lock);
    NN_OR_UNSUPPORTED(s, layernorm_async);
    MTI_CHECK(mti__submit_begin(s));
    return mti__submit_end(
        s, s->bs->iface->layernorm_async(s->bs, x, gamma, beta, y, rows, n, eps, flags), flags);
}

mti_status mti__op_softmax(struct mti_stream *s, const float *x, float *y, int rows, int n,
                           unsigned flags)
{
    mti_mutex_assert_held(&s->record_lock);
    NN_OR_UNSUPPORTED(s, softmax_async);
    MTI_CHECK(mti__submit_begin(s));
    return mti__submit_end(s, s->bs->iface->softmax_async(s->bs, x, y, rows, n, flags), flags);
}

mti_status mti__op_act(struct mti_stream *s, const float *x, float *y, size_t count,
                       mti_activation act, unsigned flags)
{
    mti_mutex_assert_held(&s->record_lock);
    NN_OR_UNSUPPORTED(s, act_async);
    MTI_CHECK(mti__submit_begin(s));
    return mti__submit_end(s, s->bs->iface->act_async(s->bs, x, y, count, act, flags), flags);
}

mti_status mti__op_add(struct mti_stream *s, const float *a, const float *b, float *y, size_t count,
                       unsigned flags)
{
    mti_mutex_assert_held(&s->record_lock);
    NN_OR_UNSUPPORTED(s, add_async);
    MTI_CHECK(mti__submit_begin(s));
    return mti__submit_end(s, s->bs->iface->add_async(s->bs, a, b, y, count, flags), flags);
}

mti_status mti__op_attention(struct mti_stream *s, const float *qkv, float *out, float *scratch,
                             int batch, int seq, int heads, int head_dim, unsigned flags)
{
    mti_mutex_assert_held(&s->record_lock);
    NN_OR_UNSUPPORTED(s, attention_async);
    MTI_CHECK(mti__submit_begin(s));
    return mti__submit_end(
        s,
        s->bs->iface->attention_async(s->bs, qkv, out, scratch, batch, seq, heads, head_dim, flags),
        flags);
}

mti_status mti__op_graph_begin(struct mti_stream *s)
{
    mti_mutex_assert_held(&s->record_lock);
    NN_OR_UNSUPPORTED(s, graph_begin);
    mti_status st = s->bs->iface->graph_begin(s->bs);
    if (st == MTI_OK) s->capturing = true;
    return st;
}

mti_status mti__op_graph_end(struct mti_stream *s, mti_backend_graph **out)
{
    mti_mutex_assert_held(&s->record_lock);
    *out = NULL;
    NN_OR_UNSUPPORTED(s, graph_end);
    s->capturing = false;
    return s->bs->iface->graph_end(s->bs, out);
}

mti_status mti__op_graph_launch(struct mti_stream *s, mti_backend_graph *g, unsigned flags)
{
    mti_mutex_assert_held(&s->record_lock);
    MTI_CHECK(mti__submit_begin(s));
    return mti__submit_end(s, s->bs->iface->graph_launch(s->bs, g, flags), flags);
}

void mti__op_graph_destroy(struct mti_stream *s, mti_backend_graph *g)
{
    if (g) s->bs->iface->graph_destroy(g);
}

bool mti__op_has_nn(struct mti_stream *s)
{
    return s->bs->iface->layernorm_async != NULL;
}

bool mti__op_has_graphs(struct mti_stream *s)
{
    return s->bs->iface->graph_begin != NULL;
}

mti_status mti__op_device_alloc(struct mti_runtime *rt, int dev, size_t bytes, void **out)
{
    mti_backend_device *bdev = rt->devices[dev].bdev;
    return bdev->iface->mem_alloc(bdev, bytes, out);
}

void mti__op_device_free(struct mti_runtime *rt, int dev, void *ptr)
{
    if (ptr) {
        mti_backend_device *bdev = rt->devices[dev].bdev;
        bdev->iface->mem_free(bdev, ptr);
    }
}

mti_status mti__op_upload(struct mti_runtime *rt, int dev, void *dst, const void *src, size_t bytes)
{
    mti_backend_device *bdev = rt->devices[dev].bdev;
    mti_backend_stream *bs = NULL;
    MTI_CHECK(bdev->iface->stream_create(bdev, &bs));
    mti_status st = bs->iface->memcpy_async(bs, dst, src, bytes, MTI_COPY_HOST_TO_DEVICE, 0);
    mti_status sync = bs->iface->synchronize(bs, rt->params.sync_mode);
    if (st == MTI_OK) st = sync;
    bs->iface->destroy(bs);
    return st;
}
