/*
 * Internal submit entry points for src/model: backend ops with submit flags, called while the
 * caller holds the stream's recording section (mti__encode_begin .. mti__encode_end), so one
 * request's whole forward is encoded under one section. No argument checks beyond what the
 * backend needs: src/model validated shapes at load. Each returns the backend's status.
 * Also raw device memory and a private upload stream for long-lived model weights.
 */
#ifndef MTI_RUNTIME_OPS_H
#define MTI_RUNTIME_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/runtime-internal.h"

/* Caller holds s's recording section (all mti__op_* below). */
mti_status mti__op_memcpy(struct mti_stream *s, void *dst, const void *src, size_t bytes,
                          mti_copy_kind kind, unsigned flags) MTI_REQUIRES(s->record_lock);
mti_status mti__op_linear(struct mti_stream *s, const float *x, const float *w, const float *bias,
                          float *y, int m, int n, int k, mti_activation act, unsigned flags)
    MTI_REQUIRES(s->record_lock);
/* y = act(x w16^T + bias) with bf16 GEMM inputs (backend linear_bf16_async; x16 is m*k
 * bf16 scratch). MTI_ERR_UNSUPPORTED on a backend without it. */
mti_status mti__op_linear_bf16(struct mti_stream *s, const float *x, uint16_t *x16,
                               const uint16_t *w16, const float *bias, float *y, int m, int n,
                               int k, mti_activation act, unsigned flags)
    MTI_REQUIRES(s->record_lock);
mti_status mti__op_layernorm(struct mti_stream *s, const float *x, const float *gamma,
                             const float *beta, float *y, int rows, int n, float eps,
                             unsigned flags) MTI_REQUIRES(s->record_lock);
mti_status mti__op_softmax(struct mti_stream *s, const float *x, float *y, int rows, int n,
                           unsigned flags) MTI_REQUIRES(s->record_lock);
mti_status mti__op_act(struct mti_stream *s, const float *x, float *y, size_t count,
                       mti_activation act, unsigned flags) MTI_REQUIRES(s->record_lock);
mti_status mti__op_add(struct mti_stream *s, const float *a, const float *b, float *y, size_t count,
                       unsigned flags) MTI_REQUIRES(s->record_lock);
mti_status mti__op_attention(struct mti_stream *s, const float *qkv, float *out, float *scratch,
                             int batch, int seq, int heads, int head_dim, unsigned flags)
    MTI_REQUIRES(s->record_lock);
/* Graph capture of the recorder's own submits (backend graphs; exclusive streams only). */
mti_status mti__op_graph_begin(struct mti_stream *s) MTI_REQUIRES(s->record_lock);
mti_status mti__op_graph_end(struct mti_stream *s, mti_backend_graph **out)
    MTI_REQUIRES(s->record_lock);
mti_status mti__op_graph_launch(struct mti_stream *s, mti_backend_graph *g, unsigned flags)
    MTI_REQUIRES(s->record_lock);
/* Any thread; no lock needed. */
void mti__op_graph_destroy(struct mti_stream *s, mti_backend_graph *g);
bool mti__op_has_nn(struct mti_stream *s);
bool mti__op_has_graphs(struct mti_stream *s);

/* Long-lived device memory straight from the backend of rt->devices[dev] (not the caching
 * allocator: model weights live as long as the model). */
mti_status mti__op_device_alloc(struct mti_runtime *rt, int dev, size_t bytes, void **out);
void mti__op_device_free(struct mti_runtime *rt, int dev, void *ptr);
/* Copies host bytes to device memory of rt->devices[dev] and waits, on a private stream (not a
 * pool slot: loading never competes with request threads for slots). */
mti_status mti__op_upload(struct mti_runtime *rt, int dev, void *dst, const void *src,
                          size_t bytes);

#endif
