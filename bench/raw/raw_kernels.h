/* Bias + optional ReLU for the fallback GEMM paths of raw_mlp (no cuBLASLt epilogue). */
#ifndef RAW_KERNELS_H
#define RAW_KERNELS_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[r * cols + c] = act(y[r * cols + c] + bias[c]) for a row-major [rows, cols] matrix,
 * act = ReLU when relu != 0, identity otherwise. Enqueued on stream; returns the launch error. */
cudaError_t raw_bias_act(float *y, const float *bias, int rows, int cols, int relu,
                         cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
