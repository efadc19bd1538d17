/*
 * The CUDA stream vtable's neural-network members (backend-impl.h): thin wrappers that make
 * the device current and enqueue the kernels of nn-kernels.cu on the stream. Called by the
 * stream's recorder only (the runtime's record lock); no locks, no waits, no allocation, so
 * they are safe inside a CUDA graph capture.
 */
#include "backend/cuda/cuda-internal.h"
#include "backend/cuda/cuda-nn.h"
#include "backend/cuda/nn-kernels.h"

#define LAUNCH(bs, call)                                                                           \
    do {                                                                                           \
        struct cuda_device *dev_ = mti__cuda_dev((bs)->device);                                    \
        MTI_CHECK(mti__cuda_use_device(dev_));                                                     \
        MTI_CUDA_CHECK(dev_, call);                                                                \
        return MTI_OK;                                                                             \
    } while (0)

mti_status mti__cuda_layernorm_async(mti_backend_stream *bs, const float *x, const float *gamma,
                                     const float *beta, float *y, int rows, int n, float eps,
                                     unsigned flags)
{
    (void)flags;
    LAUNCH(bs, mti__cuda_layernorm(x, gamma, beta, y, rows, n, eps, mti__cuda_stream(bs)->stream));
}

mti_status mti__cuda_softmax_async(mti_backend_stream *bs, const float *x, float *y, int rows,
                                   int n, unsigned flags)
{
    (void)flags;
    LAUNCH(bs, mti__cuda_softmax(x, y, rows, n, mti__cuda_stream(bs)->stream));
}

mti_status mti__cuda_act_async(mti_backend_stream *bs, const float *x, float *y, size_t count,
                               mti_activation act, unsigned flags)
{
    (void)flags;
    LAUNCH(bs, mti__cuda_act(x, y, count, (int)act, mti__cuda_stream(bs)->stream));
}

mti_status mti__cuda_add_async(mti_backend_stream *bs, const float *a, const float *b, float *y,
                               size_t count, unsigned flags)
{
    (void)flags;
    LAUNCH(bs, mti__cuda_add(a, b, y, count, mti__cuda_stream(bs)->stream));
}

mti_status mti__cuda_attention_async(mti_backend_stream *bs, const float *qkv, float *out,
                                     float *scratch, int batch, int seq, int heads, int head_dim,
                                     unsigned flags)
{
    (void)flags;
    (void)scratch; /* scores live in shared memory */
    if ((size_t)(seq + head_dim) * sizeof(float) > 48 * 1024)
        return mti__error(MTI_ERR_UNSUPPORTED,
                          "cuda attention: seq %d + head_dim %d floats exceed 48 KiB of shared "
                          "memory",
                          seq, head_dim);
    LAUNCH(bs, mti__cuda_attention(qkv, out, batch, seq, heads, head_dim,
                                   mti__cuda_stream(bs)->stream));
}
