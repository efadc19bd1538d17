/*
 * C-linkage launchers of the CUDA kernels in kernels.cu (shared by the .c files and nvcc).
 * Each launcher enqueues on `stream` and returns the launch's cudaError_t (never waits).
 */
#ifndef MTI_BACKEND_CUDA_KERNELS_H
#define MTI_BACKEND_CUDA_KERNELS_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[m,n] (row-major) = act(y + bias[n]) in place; bias may be NULL; act is an mti_activation.
 * For what a cuBLASLt epilogue cannot do (exact GELU) or where no fused algorithm exists. */
cudaError_t mti__cuda_bias_act(float *y, const float *bias, int m, int n, int act,
                               cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
