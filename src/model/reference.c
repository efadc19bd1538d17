/*
 * The float64 reference executor: plain loops in double over the host weight blob, written
 * independently of the backends (no BLAS, no fusion, no workspace reuse tricks), for tests,
 * `mtinfer run --check` and the stress harness. Slow by design. Allocates per call; no locks.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model-internal.h"

struct ref {
    const struct mti_model_desc *d;
    int batch, seq;
    size_t rows;
};

static const float *param(const struct ref *r, const struct mti_layer *l, int slot)
{
    return r->d->blob + l->params[slot].offset;
}

static double act(double v, mti_activation a)
{
    switch (a) {
    case MTI_ACT_RELU:
        return v > 0 ? v : 0;
    case MTI_ACT_GELU:
        return 0.5 * v * (1 + erf(v / sqrt(2.0)));
    case MTI_ACT_GELU_TANH:
        return 0.5 * v * (1 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    default:
        return v;
    }
}

/* y[rows, out] = x[rows, in] W^T + b */
static void linear(size_t rows, int in, int out, const double *x, const float *w, const float *b,
                   double *y)
{
    for (size_t r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            const float *wr = w + (size_t)o * in;
            const double *xr = x + r * in;
            for (int i = 0; i < in; i++)
                acc += xr[i] * wr[i];
            y[r * out + o] = acc;
        }
}

static void layernorm(size_t rows, int n, const double *x, const float *g, const float *b,
                      double eps, double *y)
{
    for (size_t r = 0; r < rows; r++) {
        const double *xr = x + r * n;
        double mean = 0, var = 0;
        for (int i = 0; i < n; i++)
            mean += xr[i];
        mean /= n;
        for (int i = 0; i < n; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        var /= n;
        double inv = 1.0 / sqrt(var + eps);
        for (int i = 0; i < n; i++)
            y[r * n + i] = (xr[i] - mean) * inv * g[i] + b[i];
    }
}

static void softmax(size_t rows, int n, double *x)
{
    for (size_t r = 0; r < rows; r++) {
        double *xr = x + r * n, m = -INFINITY, sum = 0;
        for (int i = 0; i < n; i++)
            m = xr[i] > m ? xr[i] : m;
        for (int i = 0; i < n; i++)
            sum += (xr[i] = exp(xr[i] - m));
        for (int i = 0; i < n; i++)
            xr[i] /= sum;
    }
}

/* Self-attention of nn.MultiheadAttention (packed in_proj, batch_first). y: rows x d. */
static int attention(const struct ref *r, const struct mti_layer *l, const double *x, double *y)
{
    int d = l->in, h = l->heads, dh = d / h, L = r->seq;
    double *qkv = malloc(sizeof(double) * r->rows * 3 * d);
    double *att = malloc(sizeof(double) * r->rows * d);
    double *p = malloc(sizeof(double) * (size_t)L);
    if (!qkv || !att || !p) {
        free(qkv);
        free(att);
        free(p);
        return -1;
    }
    linear(r->rows, d, 3 * d, x, param(r, l, P_IN_W), param(r, l, P_IN_B), qkv);
    double scale = 1.0 / sqrt((double)dh);
    for (int b = 0; b < r->batch; b++)
        for (int hh = 0; hh < h; hh++)
            for (int i = 0; i < L; i++) {
                const double *q = qkv + ((size_t)b * L + i) * 3 * d + (size_t)hh * dh;
                for (int j = 0; j < L; j++) {
                    const double *k = qkv + ((size_t)b * L + j) * 3 * d + d + (size_t)hh * dh;
                    double s = 0;
                    for (int c = 0; c < dh; c++)
                        s += q[c] * k[c];
                    p[j] = s * scale;
                }
                softmax(1, L, p);
                double *o = att + ((size_t)b * L + i) * d + (size_t)hh * dh;
                for (int c = 0; c < dh; c++) {
                    double s = 0;
                    for (int j = 0; j < L; j++)
                        s += p[j] * qkv[((size_t)b * L + j) * 3 * d + 2 * d + (size_t)hh * dh + c];
                    o[c] = s;
                }
            }
    linear(r->rows, d, d, att, param(r, l, P_OUT_W), param(r, l, P_OUT_B), y);
    free(qkv);
    free(att);
    free(p);
    return 0;
}

static int encoder(const struct ref *r, const struct mti_layer *l, const double *x, double *y)
{
    size_t n = r->rows * l->in;
    int d = l->in;
    double *a = malloc(sizeof(double) * n), *x1 = malloc(sizeof(double) * n);
    double *h = malloc(sizeof(double) * r->rows * l->ff), *t = malloc(sizeof(double) * n);
    int rc = -1;
    if (!a || !x1 || !h || !t) goto done;
    const double *sa_in = x;
    if (l->norm_first) {
        layernorm(r->rows, d, x, param(r, l, P_N1_W), param(r, l, P_N1_B), l->eps, t);
        sa_in = t;
    }
    if (attention(r, l, sa_in, a) != 0) goto done;
    for (size_t i = 0; i < n; i++)
        x1[i] = x[i] + a[i];
    if (!l->norm_first)
        layernorm(r->rows, d, x1, param(r, l, P_N1_W), param(r, l, P_N1_B), l->eps, x1);
    const double *ff_in = x1;
    if (l->norm_first) {
        layernorm(r->rows, d, x1, param(r, l, P_N2_W), param(r, l, P_N2_B), l->eps, t);
        ff_in = t;
    }
    linear(r->rows, d, l->ff, ff_in, param(r, l, P_L1_W), param(r, l, P_L1_B), h);
    for (size_t i = 0; i < r->rows * l->ff; i++)
        h[i] = act(h[i], l->act);
    linear(r->rows, l->ff, d, h, param(r, l, P_L2_W), param(r, l, P_L2_B), a);
    for (size_t i = 0; i < n; i++)
        y[i] = x1[i] + a[i];
    if (!l->norm_first)
        layernorm(r->rows, d, y, param(r, l, P_N2_W), param(r, l, P_N2_B), l->eps, y);
    rc = 0;
done:
    free(a);
    free(x1);
    free(h);
    free(t);
    return rc;
}

/* Runs layers on *x (rows x width, owned); replaces *x with the output. */
static int run(const struct ref *r, const struct mti_layer *layers, int n, double **x)
{
    for (int i = 0; i < n; i++) {
        const struct mti_layer *l = &layers[i];
        size_t cin = r->rows * l->in, cout = r->rows * l->out;
        double *y = malloc(sizeof(double) * (cout ? cout : 1));
        if (!y) return -1;
        int rc = 0;
        switch (l->type) {
        case MTI_LAYER_LINEAR:
            linear(r->rows, l->in, l->out, *x, param(r, l, P_WEIGHT),
                   l->has_bias ? param(r, l, P_BIAS) : NULL, y);
            break;
        case MTI_LAYER_RELU:
        case MTI_LAYER_GELU:
            for (size_t k = 0; k < cin; k++)
                y[k] = act((*x)[k], l->act);
            break;
        case MTI_LAYER_SOFTMAX:
            memcpy(y, *x, sizeof(double) * cin);
            softmax(r->rows, l->in, y);
            break;
        case MTI_LAYER_LAYERNORM:
            layernorm(r->rows, l->in, *x, param(r, l, P_WEIGHT), param(r, l, P_BIAS), l->eps, y);
            break;
        case MTI_LAYER_MHA:
            rc = attention(r, l, *x, y);
            break;
        case MTI_LAYER_ENCODER:
            rc = encoder(r, l, *x, y);
            break;
        case MTI_LAYER_RESIDUAL: {
            double *inner = malloc(sizeof(double) * (cin ? cin : 1));
            if (!inner) {
                rc = -1;
                break;
            }
            memcpy(inner, *x, sizeof(double) * cin);
            rc = run(r, l->children, l->n_children, &inner);
            if (rc == 0)
                for (size_t k = 0; k < cin; k++)
                    y[k] = (*x)[k] + inner[k];
            free(inner);
            break;
        }
        }
        free(*x);
        *x = y;
        if (rc != 0) return rc;
    }
    return 0;
}

mti_status mti__reference_forward(const struct mti_model_desc *d, int batch, int seq,
                                  const float *input, double *output)
{
    struct ref r = {.d = d, .batch = batch, .seq = seq, .rows = (size_t)batch * seq};
    size_t n = r.rows * d->in_features;
    double *x = malloc(sizeof(double) * n);
    if (!x) return mti__error(MTI_ERR_OUT_OF_MEMORY, "reference input of %zu doubles", n);
    for (size_t i = 0; i < n; i++)
        x[i] = input[i];
    if (run(&r, d->layers, d->n_layers, &x) != 0) {
        free(x);
        return mti__error(MTI_ERR_OUT_OF_MEMORY, "reference forward");
    }
    memcpy(output, x, sizeof(double) * r.rows * d->out_features);
    free(x);
    return MTI_OK;
}
