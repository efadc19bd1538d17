/*
 * CUDA kernels of the CUDA backend, with C-linkage launchers (cuda-kernels.h). Elementwise work
 * only: the GEMMs are cuBLASLt's. Full fp32 math (no fast-math intrinsics), so results match
 * the CPU backend's erff/tanhf to a few ulp.
 */
#include <cuda_runtime.h>

#include "backend/cuda/cuda-kernels.h"
#include "mtinfer.h"

namespace
{

template <int Act> __device__ __forceinline__ float activate(float v)
{
    if (Act == MTI_ACT_RELU) return v > 0.0f ? v : 0.0f;
    if (Act == MTI_ACT_GELU) return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    if (Act == MTI_ACT_GELU_TANH)
        return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    return v;
}

/* One thread per element of a row-major [m, n] matrix, grid-stride. */
template <int Act, bool HasBias>
__global__ void bias_act_kernel(float *__restrict__ y, const float *__restrict__ bias, size_t total,
                                unsigned n)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        float v = y[i];
        if (HasBias) v += bias[i % n];
        y[i] = activate<Act>(v);
    }
}

template <int Act>
cudaError_t launch(float *y, const float *bias, size_t total, unsigned n, cudaStream_t stream)
{
    const unsigned threads = 256;
    size_t blocks = (total + threads - 1) / threads;
    if (blocks > 4096) blocks = 4096; /* enough to fill an H100/H200; the loop covers the rest */
    if (bias)
        bias_act_kernel<Act, true><<<(unsigned)blocks, threads, 0, stream>>>(y, bias, total, n);
    else
        bias_act_kernel<Act, false><<<(unsigned)blocks, threads, 0, stream>>>(y, bias, total, n);
    return cudaGetLastError();
}

} // namespace

extern "C" cudaError_t mti__cuda_bias_act(float *y, const float *bias, int m, int n, int act,
                                          cudaStream_t stream)
{
    if (m <= 0 || n <= 0) return cudaSuccess;
    size_t total = (size_t)m * (size_t)n;
    switch (act) {
    case MTI_ACT_NONE:
        return bias ? launch<MTI_ACT_NONE>(y, bias, total, (unsigned)n, stream) : cudaSuccess;
    case MTI_ACT_RELU:
        return launch<MTI_ACT_RELU>(y, bias, total, (unsigned)n, stream);
    case MTI_ACT_GELU:
        return launch<MTI_ACT_GELU>(y, bias, total, (unsigned)n, stream);
    case MTI_ACT_GELU_TANH:
        return launch<MTI_ACT_GELU_TANH>(y, bias, total, (unsigned)n, stream);
    default:
        return cudaErrorInvalidValue;
    }
}
