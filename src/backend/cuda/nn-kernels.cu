/*
 * Neural-network kernels of the CUDA backend (C-linkage launchers in nn-kernels.h): layer norm
 * and softmax (one block per row, block reductions), elementwise activation and add, and
 * multi-head self-attention on PyTorch's packed q|k|v projection (one block per (query, head,
 * batch) with the query's score row in shared memory). Full fp32 math, no fast-math
 * intrinsics, so results track the CPU backend closely. The GEMMs are cuBLASLt's; bf16 GEMMs
 * (MTI_PRECISION_BF16) read their activation input through f32_to_bf16_kernel.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math_constants.h>

#include "backend/cuda/nn-kernels.h"
#include "mtinfer.h"

namespace
{

constexpr unsigned kThreads = 256;

/* Sum (or max) over the block; every thread gets the result. red holds 32 floats. */
template <bool Max> __device__ float block_reduce(float v, float *red)
{
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = Max ? fmaxf(v, w) : v + w;
    }
    unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
    __syncthreads(); /* red may still be read by a previous reduction */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < n_warps ? red[lane] : (Max ? -CUDART_INF_F : 0.0f);
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = Max ? fmaxf(v, w) : v + w;
    }
    return v;
}

__global__ void layernorm_kernel(const float *__restrict__ x, const float *__restrict__ g,
                                 const float *__restrict__ b, float *y, int n, float eps)
{
    __shared__ float red[32];
    const float *xr = x + (size_t)blockIdx.x * n;
    float *yr = y + (size_t)blockIdx.x * n;
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s += xr[i];
    float mean = block_reduce<false>(s, red) / (float)n;
    float v = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float d = xr[i] - mean;
        v += d * d;
    }
    float inv = 1.0f / sqrtf(block_reduce<false>(v, red) / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        yr[i] = (xr[i] - mean) * inv * g[i] + b[i];
}

__global__ void softmax_kernel(const float *x, float *y, int n)
{
    __shared__ float red[32];
    const float *xr = x + (size_t)blockIdx.x * n;
    float *yr = y + (size_t)blockIdx.x * n;
    float m = -CUDART_INF_F;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        m = fmaxf(m, xr[i]);
    m = block_reduce<true>(m, red);
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s += expf(xr[i] - m);
    float inv = 1.0f / block_reduce<false>(s, red);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        yr[i] = expf(xr[i] - m) * inv;
}

template <int Act> __device__ __forceinline__ float activate(float v)
{
    if (Act == MTI_ACT_RELU) return v > 0.0f ? v : 0.0f;
    if (Act == MTI_ACT_GELU) return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    if (Act == MTI_ACT_GELU_TANH)
        return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    return v;
}

template <int Act> __global__ void act_kernel(const float *x, float *y, size_t count)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        y[i] = activate<Act>(x[i]);
}

__global__ void add_kernel(const float *a, const float *b, float *y, size_t count)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        y[i] = a[i] + b[i];
}

/* grid (seq, heads, batch): query i of head h of batch b. Shared: q[dh], p[seq]. */
__global__ void attention_kernel(const float *__restrict__ qkv, float *__restrict__ out, int seq,
                                 int heads, int dh)
{
    extern __shared__ float smem[];
    __shared__ float red[32];
    float *q = smem, *p = smem + dh;
    int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, d = heads * dh, ld = 3 * d;
    const float *base = qkv + (size_t)b * seq * ld;
    for (int c = threadIdx.x; c < dh; c += blockDim.x)
        q[c] = base[(size_t)i * ld + h * dh + c];
    __syncthreads();
    float scale = 1.0f / sqrtf((float)dh), m = -CUDART_INF_F;
    for (int j = threadIdx.x; j < seq; j += blockDim.x) {
        const float *k = base + (size_t)j * ld + d + h * dh;
        float s = 0.0f;
        for (int c = 0; c < dh; c++)
            s += q[c] * k[c];
        s *= scale;
        p[j] = s;
        m = fmaxf(m, s);
    }
    m = block_reduce<true>(m, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < seq; j += blockDim.x) {
        float e = expf(p[j] - m);
        p[j] = e;
        sum += e;
    }
    float inv = 1.0f / block_reduce<false>(sum, red); /* its barriers publish p[] */
    float *o = out + ((size_t)b * seq + i) * d + h * dh;
    for (int c = threadIdx.x; c < dh; c += blockDim.x) {
        const float *v = base + 2 * d + h * dh + c;
        float acc = 0.0f;
        for (int j = 0; j < seq; j++)
            acc += p[j] * v[(size_t)j * ld];
        o[c] = acc * inv;
    }
}

__global__ void f32_to_bf16_kernel(const float *__restrict__ x, __nv_bfloat16 *__restrict__ y,
                                   size_t count)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16_rn(x[i]);
}

unsigned grid_for(size_t count)
{
    size_t blocks = (count + kThreads - 1) / kThreads;
    if (blocks > 4096) blocks = 4096;
    return (unsigned)(blocks ? blocks : 1);
}

} // namespace

extern "C" cudaError_t mti__cuda_layernorm(const float *x, const float *gamma, const float *beta,
                                           float *y, int rows, int n, float eps,
                                           cudaStream_t stream)
{
    if (rows <= 0 || n <= 0) return cudaSuccess;
    layernorm_kernel<<<(unsigned)rows, kThreads, 0, stream>>>(x, gamma, beta, y, n, eps);
    return cudaGetLastError();
}

extern "C" cudaError_t mti__cuda_softmax(const float *x, float *y, int rows, int n,
                                         cudaStream_t stream)
{
    if (rows <= 0 || n <= 0) return cudaSuccess;
    softmax_kernel<<<(unsigned)rows, kThreads, 0, stream>>>(x, y, n);
    return cudaGetLastError();
}

extern "C" cudaError_t mti__cuda_act(const float *x, float *y, size_t count, int act,
                                     cudaStream_t stream)
{
    if (count == 0) return cudaSuccess;
    unsigned g = grid_for(count);
    switch (act) {
    case MTI_ACT_NONE:
        if (x == y) return cudaSuccess;
        act_kernel<MTI_ACT_NONE><<<g, kThreads, 0, stream>>>(x, y, count);
        break;
    case MTI_ACT_RELU:
        act_kernel<MTI_ACT_RELU><<<g, kThreads, 0, stream>>>(x, y, count);
        break;
    case MTI_ACT_GELU:
        act_kernel<MTI_ACT_GELU><<<g, kThreads, 0, stream>>>(x, y, count);
        break;
    case MTI_ACT_GELU_TANH:
        act_kernel<MTI_ACT_GELU_TANH><<<g, kThreads, 0, stream>>>(x, y, count);
        break;
    default:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t mti__cuda_add(const float *a, const float *b, float *y, size_t count,
                                     cudaStream_t stream)
{
    if (count == 0) return cudaSuccess;
    add_kernel<<<grid_for(count), kThreads, 0, stream>>>(a, b, y, count);
    return cudaGetLastError();
}

extern "C" cudaError_t mti__cuda_attention(const float *qkv, float *out, int batch, int seq,
                                           int heads, int head_dim, cudaStream_t stream)
{
    if (batch <= 0 || seq <= 0 || heads <= 0 || head_dim <= 0) return cudaSuccess;
    size_t smem = sizeof(float) * ((size_t)seq + (size_t)head_dim);
    if (smem > 48 * 1024 || heads > 65535 || batch > 65535) return cudaErrorInvalidValue;
    dim3 grid((unsigned)seq, (unsigned)heads, (unsigned)batch);
    unsigned threads = seq >= 128 ? 128 : 64;
    attention_kernel<<<grid, threads, smem, stream>>>(qkv, out, seq, heads, head_dim);
    return cudaGetLastError();
}

extern "C" cudaError_t mti__cuda_f32_to_bf16(const float *x, uint16_t *y, size_t count,
                                             cudaStream_t stream)
{
    if (count == 0) return cudaSuccess;
    f32_to_bf16_kernel<<<grid_for(count), kThreads, 0, stream>>>(
        x, reinterpret_cast<__nv_bfloat16 *>(y), count);
    return cudaGetLastError();
}
