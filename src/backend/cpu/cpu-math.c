/*
 * CPU math: nn.Linear through single-threaded OpenBLAS (the runtime sets BLAS to one thread:
 * our streams are the parallelism). Batch 1 uses sgemv, which is faster per sample than sgemm
 * at small batch on this class of machine.
 */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "backend/cpu/cpu-internal.h"

static void apply_activation(float *y, size_t count, mti_activation act)
{
    switch (act) {
    case MTI_ACT_NONE:
        return;
    case MTI_ACT_RELU:
        for (size_t i = 0; i < count; i++)
            y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        return;
    case MTI_ACT_GELU:
        for (size_t i = 0; i < count; i++)
            y[i] = 0.5f * y[i] * (1.0f + erff(y[i] * 0.70710678118654752f));
        return;
    case MTI_ACT_GELU_TANH:
        for (size_t i = 0; i < count; i++) {
            float v = y[i];
            y[i] = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
        }
        return;
    }
}

void mti__cpu_linear(const float *x, const float *w, const float *bias, float *y, int m, int n,
                     int k, mti_activation act)
{
    float beta = 0.0f;
    if (bias) {
        for (int r = 0; r < m; r++)
            memcpy(y + (size_t)r * n, bias, (size_t)n * sizeof *y);
        beta = 1.0f;
    }
    if (m == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, w, k, x, 1, beta, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k, beta, y, n);
    apply_activation(y, (size_t)m * n, act);
}
