#include "raw_kernels.h"

static __global__ void bias_act_kernel(float *y, const float *bias, int n, int cols, int relu)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = y[i] + bias[i % cols];
    y[i] = (relu && v < 0.0f) ? 0.0f : v;
}

extern "C" cudaError_t raw_bias_act(float *y, const float *bias, int rows, int cols, int relu,
                                    cudaStream_t stream)
{
    const int block = 256;
    int n = rows * cols;
    if (n <= 0) return cudaErrorInvalidValue;
    bias_act_kernel<<<(n + block - 1) / block, block, 0, stream>>>(y, bias, n, cols, relu);
    return cudaGetLastError();
}
