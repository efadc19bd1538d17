/* The CUDA stream vtable's neural-network members (cuda-nn.c), for cuda-stream.c's table. */
#ifndef MTI_BACKEND_CUDA_NN_H
#define MTI_BACKEND_CUDA_NN_H

#include "backend/backend-impl.h"

mti_status mti__cuda_layernorm_async(mti_backend_stream *bs, const float *x, const float *gamma,
                                     const float *beta, float *y, int rows, int n, float eps,
                                     unsigned flags);
mti_status mti__cuda_softmax_async(mti_backend_stream *bs, const float *x, float *y, int rows,
                                   int n, unsigned flags);
mti_status mti__cuda_act_async(mti_backend_stream *bs, const float *x, float *y, size_t count,
                               mti_activation act, unsigned flags);
mti_status mti__cuda_add_async(mti_backend_stream *bs, const float *a, const float *b, float *y,
                               size_t count, unsigned flags);
mti_status mti__cuda_attention_async(mti_backend_stream *bs, const float *qkv, float *out,
                                     float *scratch, int batch, int seq, int heads, int head_dim,
                                     unsigned flags);

#endif
