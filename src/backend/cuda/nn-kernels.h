/*
 * C-linkage launchers of the neural-network kernels in nn-kernels.cu (for cuda-nn.c). Each
 * enqueues on stream and returns the launch's cudaError_t (never waits). fp32, row-major.
 */
#ifndef MTI_BACKEND_CUDA_NN_KERNELS_H
#define MTI_BACKEND_CUDA_NN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

cudaError_t mti__cuda_layernorm(const float *x, const float *gamma, const float *beta, float *y,
                                int rows, int n, float eps, cudaStream_t stream);
cudaError_t mti__cuda_softmax(const float *x, float *y, int rows, int n, cudaStream_t stream);
cudaError_t mti__cuda_act(const float *x, float *y, size_t count, int act, cudaStream_t stream);
cudaError_t mti__cuda_add(const float *a, const float *b, float *y, size_t count,
                          cudaStream_t stream);
/* cudaErrorInvalidValue when (seq + head_dim) floats do not fit in 48 KiB of shared memory. */
cudaError_t mti__cuda_attention(const float *qkv, float *out, int batch, int seq, int heads,
                                int head_dim, cudaStream_t stream);

/* y[i] = x[i] rounded to bf16 (nearest even; bit patterns) for count elements. */
cudaError_t mti__cuda_f32_to_bf16(const float *x, uint16_t *y, size_t count, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
