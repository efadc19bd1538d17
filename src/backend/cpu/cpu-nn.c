/*
 * CPU neural-network ops for src/model: layer norm, softmax, activations, residual add and
 * multi-head self-attention. Each is one CPU_OP_NN op in the stream's ring (a function and its
 * arguments inline: no allocation per op), run by whichever thread executes the stream, so a
 * request submitted with MTI_SUBMIT_WAITED runs on its own thread. Attention uses
 * single-threaded BLAS for Q K^T and P V per (batch, head), with the plan's scratch for P.
 * No locks of their own.
 */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "backend/cpu/cpu-internal.h"

static mti_status submit_nn(mti_backend_stream *bs, void (*fn)(const struct cpu_nn_args *),
                            struct cpu_nn_args args, unsigned flags)
{
    struct cpu_op op = {.kind = CPU_OP_NN};
    op.u.nn.fn = fn;
    op.u.nn.args = args;
    return mti__cpu_stream_submit((struct cpu_stream *)bs, &op, flags, NULL);
}

/* ---- layer norm: a = x, b = gamma, c = beta, i0 = rows, i1 = n, f0 = eps ------------------ */

static void run_layernorm(const struct cpu_nn_args *p)
{
    int n = p->i1;
    for (int r = 0; r < p->i0; r++) {
        const float *x = p->a + (size_t)r * n;
        float *y = p->y + (size_t)r * n;
        float mean = 0.0f;
        for (int i = 0; i < n; i++)
            mean += x[i];
        mean /= (float)n;
        float var = 0.0f;
        for (int i = 0; i < n; i++) {
            float d = x[i] - mean;
            var += d * d;
        }
        var /= (float)n;
        float inv = 1.0f / sqrtf(var + p->f0);
        for (int i = 0; i < n; i++)
            y[i] = (x[i] - mean) * inv * p->b[i] + p->c[i];
    }
}

mti_status mti__cpu_layernorm_async(mti_backend_stream *s, const float *x, const float *gamma,
                                    const float *beta, float *y, int rows, int n, float eps,
                                    unsigned flags)
{
    struct cpu_nn_args a = {.a = x, .b = gamma, .c = beta, .y = y, .i0 = rows, .i1 = n, .f0 = eps};
    return submit_nn(s, run_layernorm, a, flags);
}

/* ---- softmax over rows: a = x, i0 = rows, i1 = n ------------------------------------------- */

static void softmax_row(const float *x, float *y, int n)
{
    float m = -INFINITY;
    for (int i = 0; i < n; i++)
        m = x[i] > m ? x[i] : m;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        y[i] = expf(x[i] - m);
        sum += y[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++)
        y[i] *= inv;
}

static void run_softmax(const struct cpu_nn_args *p)
{
    for (int r = 0; r < p->i0; r++)
        softmax_row(p->a + (size_t)r * p->i1, p->y + (size_t)r * p->i1, p->i1);
}

mti_status mti__cpu_softmax_async(mti_backend_stream *s, const float *x, float *y, int rows, int n,
                                  unsigned flags)
{
    struct cpu_nn_args a = {.a = x, .y = y, .i0 = rows, .i1 = n};
    return submit_nn(s, run_softmax, a, flags);
}

/* ---- activations: a = x, count, i0 = act --------------------------------------------------- */

static void run_act(const struct cpu_nn_args *p)
{
    const float *x = p->a;
    float *y = p->y;
    switch ((mti_activation)p->i0) {
    case MTI_ACT_NONE:
        if (x != y) memmove(y, x, p->count * sizeof *y);
        return;
    case MTI_ACT_RELU:
        for (size_t i = 0; i < p->count; i++)
            y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        return;
    case MTI_ACT_GELU:
        for (size_t i = 0; i < p->count; i++)
            y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
        return;
    case MTI_ACT_GELU_TANH:
        for (size_t i = 0; i < p->count; i++) {
            float v = x[i];
            y[i] = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
        }
        return;
    }
}

mti_status mti__cpu_act_async(mti_backend_stream *s, const float *x, float *y, size_t count,
                              mti_activation act, unsigned flags)
{
    struct cpu_nn_args a = {.a = x, .y = y, .count = count, .i0 = (int)act};
    return submit_nn(s, run_act, a, flags);
}

/* ---- add: a + b -> y, count ---------------------------------------------------------------- */

static void run_add(const struct cpu_nn_args *p)
{
    for (size_t i = 0; i < p->count; i++)
        p->y[i] = p->a[i] + p->b[i];
}

mti_status mti__cpu_add_async(mti_backend_stream *s, const float *a, const float *b, float *y,
                              size_t count, unsigned flags)
{
    struct cpu_nn_args args = {.a = a, .b = b, .y = y, .count = count};
    return submit_nn(s, run_add, args, flags);
}

/* ---- attention: a = qkv, y = out, scratch, i0 = batch, i1 = seq, i2 = heads, i3 = head_dim - */

static void run_attention(const struct cpu_nn_args *p)
{
    int batch = p->i0, seq = p->i1, heads = p->i2, dh = p->i3;
    int d = heads * dh, ld = 3 * d;
    float scale = 1.0f / sqrtf((float)dh);
    float *scores = p->scratch;
    for (int b = 0; b < batch; b++) {
        const float *base = p->a + (size_t)b * seq * ld;
        float *out = p->y + (size_t)b * seq * d;
        for (int h = 0; h < heads; h++) {
            const float *q = base + (size_t)h * dh;
            const float *k = base + d + (size_t)h * dh;
            const float *v = base + 2 * d + (size_t)h * dh;
            /* scores[seq, seq] = scale * Q K^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, seq, seq, dh, scale, q, ld, k, ld,
                        0.0f, scores, seq);
            for (int i = 0; i < seq; i++)
                softmax_row(scores + (size_t)i * seq, scores + (size_t)i * seq, seq);
            /* out[:, h*dh : (h+1)*dh] = P V */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, seq, dh, seq, 1.0f, scores, seq,
                        v, ld, 0.0f, out + (size_t)h * dh, d);
        }
    }
}

mti_status mti__cpu_attention_async(mti_backend_stream *s, const float *qkv, float *out,
                                    float *scratch, int batch, int seq, int heads, int head_dim,
                                    unsigned flags)
{
    if (!scratch)
        return mti__error(MTI_ERR_INVALID_ARGUMENT, "cpu attention needs a scratch of seq*seq "
                                                    "floats");
    struct cpu_nn_args a = {.a = qkv,
                            .y = out,
                            .scratch = scratch,
                            .i0 = batch,
                            .i1 = seq,
                            .i2 = heads,
                            .i3 = head_dim};
    return submit_nn(s, run_attention, a, flags);
}
