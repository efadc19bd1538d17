/*
 * nn.Linear on cuBLASLt: y[m,n] = act(x[m,k] w[n,k]^T + bias[n]), fp32, PyTorch row-major.
 *
 * Layout: a row-major [r,c] matrix is a column-major [c,r] one, so we compute the column-major
 * y^T[n,m] = op(W) X^T with A = w seen as col-major k x n (ld k) and TRANSA = T, B = x seen as
 * col-major k x m (ld k), C = D = y seen as col-major n x m (ld n). The bias is then a
 * per-row vector of D, which is what the cuBLASLt BIAS epilogues add.
 *
 * Epilogues: BIAS, RELU(_BIAS), GELU(_BIAS). cuBLASLt's GELU is the tanh approximation, so it
 * serves MTI_ACT_GELU_TANH only; exact GELU (erf) runs as a small kernel after the GEMM
 * (kernels.cu). When the heuristic offers no algorithm for a fused epilogue we fall back to
 * the plain GEMM plus that kernel for bias and activation.
 *
 * Compute type: CUBLAS_COMPUTE_32F (true fp32, no TF32) by default; CUBLAS_COMPUTE_32F_FAST_TF32
 * (TF32 tensor cores, fp32 accumulation) for calls submitted with MTI_SUBMIT_TF32 (models
 * loaded with MTI_PRECISION_TF32), or for every call when MTI_CUDA_TF32=1 (a global override
 * kept for benchmarks of raw mti_linear_async, which has no precision argument). Data and
 * results stay fp32 in both modes, so only the descriptor differs.
 *
 * BF16 (mti__cuda_linear_bf16, for MTI_PRECISION_BF16 models): A and B are bf16 (the model's
 * bf16 weight copy and the input converted by the caller), CUBLAS_COMPUTE_32F accumulates in
 * fp32 with an fp32 scale type, and C = D = y stay fp32 with the same epilogues; the bias
 * type is set to CUDA_R_32F explicitly. MTI_CUDA_TF32 does not apply to it.
 *
 * Each stream owns one handle, one workspace and a cache of plans (descriptors, layouts and
 * the heuristic's algorithm) keyed by (m, n, k, act, has_bias, pointer alignment, tf32,
 * dtype), so fp32, TF32 and BF16 models sharing a stream each get their own plan, and the hot
 * path makes no heuristic query. Only the stream's recorder touches this (no locks).
 */
#include <string.h>

#include "backend/cuda/cuda-internal.h"
#include "backend/cuda/cuda-kernels.h"

mti_status mti__cuda_blaslt_init(struct cuda_device *dev, struct cuda_blaslt *b)
{
    memset(b, 0, sizeof *b);
    MTI_CUBLAS_CHECK(dev, cublasLtCreate(&b->handle));
    if (dev->workspace_bytes) {
        cudaError_t err = cudaMalloc(&b->workspace, dev->workspace_bytes);
        if (err != cudaSuccess) {
            b->workspace = NULL;
            cublasLtDestroy(b->handle);
            b->handle = NULL;
            return mti__cuda_error(dev, err, "cudaMalloc(cuBLASLt workspace)", __FILE__, __LINE__);
        }
        b->workspace_bytes = dev->workspace_bytes;
    }
    return MTI_OK;
}

static void plan_release(struct cuda_linear_plan *p)
{
    if (p->c) cublasLtMatrixLayoutDestroy(p->c);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    memset(p, 0, sizeof *p);
}

/* Called after the stream drained (or with a lost context): the workspace is idle. */
void mti__cuda_blaslt_destroy(struct cuda_device *dev, struct cuda_blaslt *b)
{
    for (int i = 0; i < MTI_CUDA_PLAN_CACHE; i++)
        if (b->plans[i].valid) plan_release(&b->plans[i]);
    if (b->workspace) MTI_CUDA_NOTE(dev, cudaFree(b->workspace));
    if (b->handle) cublasLtDestroy(b->handle);
    memset(b, 0, sizeof *b);
}

/* The alignment all pointers share, in bytes (a power of two, at most 256). */
static int common_alignment(const void *x, const void *w, const void *bias, const void *y)
{
    uintptr_t bits = (uintptr_t)x | (uintptr_t)w | (uintptr_t)bias | (uintptr_t)y | 256u;
    return (int)(bits & (~bits + 1));
}

static bool key_equal(const struct cuda_linear_key *a, const struct cuda_linear_key *b)
{
    return a->m == b->m && a->n == b->n && a->k == b->k && a->act == b->act &&
           a->has_bias == b->has_bias && a->align == b->align && a->tf32 == b->tf32 &&
           a->dtype == b->dtype;
}

/* The fused epilogue for (act, bias), and what is left for the post kernel. */
static cublasLtEpilogue_t choose_epilogue(int act, bool has_bias, bool *epilogue_bias,
                                          int *post_act)
{
    *epilogue_bias = has_bias;
    *post_act = MTI_ACT_NONE;
    switch (act) {
    case MTI_ACT_RELU:
        return has_bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    case MTI_ACT_GELU_TANH:
        return has_bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
    case MTI_ACT_GELU:
        *post_act = MTI_ACT_GELU; /* cuBLASLt has no erf GELU */
        return has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    default:
        return has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    }
}

/* Sets the epilogue on p->desc and asks the heuristic; *found = false when it offers none. */
static mti_status try_epilogue(struct cuda_device *dev, struct cuda_blaslt *b,
                               struct cuda_linear_plan *p, cublasLtMatmulPreference_t pref,
                               cublasLtEpilogue_t epilogue, const float *bias, bool *found)
{
    uint32_t epi = (uint32_t)epilogue;
    MTI_CUBLAS_CHECK(dev, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                         &epi, sizeof epi));
    const float *epilogue_bias = p->epilogue_bias ? bias : NULL;
    MTI_CUBLAS_CHECK(dev, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                         &epilogue_bias, sizeof epilogue_bias));
    cublasLtMatmulHeuristicResult_t result;
    memset(&result, 0, sizeof result);
    int count = 0;
    cublasStatus_t cs = cublasLtMatmulAlgoGetHeuristic(b->handle, p->desc, p->a, p->b, p->c, p->c,
                                                       pref, 1, &result, &count);
    *found = cs == CUBLAS_STATUS_SUCCESS && count > 0 && result.state == CUBLAS_STATUS_SUCCESS;
    if (cs != CUBLAS_STATUS_SUCCESS && cs != CUBLAS_STATUS_NOT_SUPPORTED)
        return mti__cublas_error(dev, cs, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
    if (*found) p->algo = result.algo;
    return MTI_OK;
}

/* Builds the plan for key into p (p is free). */
static mti_status plan_build(struct cuda_device *dev, struct cuda_blaslt *b,
                             struct cuda_linear_plan *p, const struct cuda_linear_key *key,
                             const float *bias)
{
    mti_status st = MTI_OK;
    cublasLtMatmulPreference_t pref = NULL;
    p->key = *key;
    cublasComputeType_t compute = key->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    MTI_CUBLAS_CHECK_GOTO(dev, cublasLtMatmulDescCreate(&p->desc, compute, CUDA_R_32F), st, fail);
    int32_t trans_a = CUBLAS_OP_T;
    MTI_CUBLAS_CHECK_GOTO(dev,
                          cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                         &trans_a, sizeof trans_a),
                          st, fail);
    if (key->dtype != CUDA_R_32F) {
        int32_t bias_type = CUDA_R_32F;
        MTI_CUBLAS_CHECK_GOTO(dev,
                              cublasLtMatmulDescSetAttribute(p->desc,
                                                             CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                             &bias_type, sizeof bias_type),
                              st, fail);
    }
    cudaDataType_t ab_type = (cudaDataType_t)key->dtype;
    MTI_CUBLAS_CHECK_GOTO(dev,
                          cublasLtMatrixLayoutCreate(&p->a, ab_type, (uint64_t)key->k,
                                                     (uint64_t)key->n, (int64_t)key->k),
                          st, fail);
    MTI_CUBLAS_CHECK_GOTO(dev,
                          cublasLtMatrixLayoutCreate(&p->b, ab_type, (uint64_t)key->k,
                                                     (uint64_t)key->m, (int64_t)key->k),
                          st, fail);
    MTI_CUBLAS_CHECK_GOTO(dev,
                          cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, (uint64_t)key->n,
                                                     (uint64_t)key->m, (int64_t)key->n),
                          st, fail);

    MTI_CUBLAS_CHECK_GOTO(dev, cublasLtMatmulPreferenceCreate(&pref), st, fail);
    uint64_t ws = b->workspace_bytes;
    MTI_CUBLAS_CHECK_GOTO(dev,
                          cublasLtMatmulPreferenceSetAttribute(
                              pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws),
                          st, fail);
    uint32_t align = (uint32_t)key->align;
    const cublasLtMatmulPreferenceAttributes_t align_attrs[] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (size_t i = 0; i < sizeof align_attrs / sizeof align_attrs[0]; i++)
        MTI_CUBLAS_CHECK_GOTO(
            dev, cublasLtMatmulPreferenceSetAttribute(pref, align_attrs[i], &align, sizeof align),
            st, fail);

    bool found = false;
    cublasLtEpilogue_t epilogue =
        choose_epilogue(key->act, key->has_bias != 0, &p->epilogue_bias, &p->post_act);
    p->post_bias = false;
    MTI_CHECK_GOTO(try_epilogue(dev, b, p, pref, epilogue, bias, &found), st, fail);
    if (!found && epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        /* No fused algorithm: plain GEMM, then bias and activation in one kernel. */
        p->epilogue_bias = false;
        p->post_bias = key->has_bias != 0;
        p->post_act = key->act;
        MTI_CHECK_GOTO(try_epilogue(dev, b, p, pref, CUBLASLT_EPILOGUE_DEFAULT, NULL, &found), st,
                       fail);
    }
    if (!found) {
        st = mti__error(MTI_ERR_UNSUPPORTED,
                        "cuBLASLt has no %s algorithm for linear m=%d n=%d k=%d (alignment %d, "
                        "workspace %zu bytes)",
                        key->dtype != CUDA_R_32F ? "bf16"
                        : key->tf32              ? "tf32"
                                                 : "fp32",
                        key->m, key->n, key->k, key->align, b->workspace_bytes);
        goto fail;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    p->valid = true;
    return MTI_OK;
fail:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    plan_release(p);
    return st;
}

/* The cached plan for key, built on a miss (evicting round-robin when full). */
static mti_status plan_get(struct cuda_device *dev, struct cuda_blaslt *b,
                           const struct cuda_linear_key *key, const float *bias,
                           struct cuda_linear_plan **out)
{
    struct cuda_linear_plan *last = &b->plans[b->last_hit];
    if (last->valid && key_equal(&last->key, key)) {
        *out = last;
        return MTI_OK;
    }
    int free_slot = -1;
    for (unsigned i = 0; i < MTI_CUDA_PLAN_CACHE; i++) {
        struct cuda_linear_plan *p = &b->plans[i];
        if (p->valid && key_equal(&p->key, key)) {
            b->last_hit = i;
            *out = p;
            return MTI_OK;
        }
        if (!p->valid && free_slot < 0) free_slot = (int)i;
    }
    unsigned slot;
    if (free_slot >= 0) {
        slot = (unsigned)free_slot;
    } else {
        slot = b->next_victim;
        b->next_victim = (b->next_victim + 1) % MTI_CUDA_PLAN_CACHE;
        plan_release(&b->plans[slot]);
    }
    MTI_CHECK(plan_build(dev, b, &b->plans[slot], key, bias));
    b->last_hit = slot;
    *out = &b->plans[slot];
    return MTI_OK;
}

/* Plans (a miss builds one) and enqueues the GEMM, then the post kernel if the plan has one. */
static mti_status linear_run(struct cuda_stream *s, const void *x, const void *w, const float *bias,
                             float *y, int m, int n, int k, mti_activation act, bool tf32,
                             cudaDataType_t dtype)
{
    struct cuda_device *dev = mti__cuda_dev(s->base.device);
    struct cuda_blaslt *b = &s->blas;
    struct cuda_linear_key key = {
        .m = m,
        .n = n,
        .k = k,
        .act = (int)act,
        .has_bias = bias != NULL,
        .align = common_alignment(x, w, bias, y),
        .tf32 = tf32,
        .dtype = (int)dtype,
    };
    struct cuda_linear_plan *p;
    MTI_CHECK(plan_get(dev, b, &key, bias, &p));
    if (p->epilogue_bias)
        MTI_CUBLAS_CHECK(dev, cublasLtMatmulDescSetAttribute(
                                  p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    const float alpha = 1.0f, beta = 0.0f;
    MTI_CUBLAS_CHECK(dev,
                     cublasLtMatmul(b->handle, p->desc, &alpha, w, p->a, x, p->b, &beta, y, p->c, y,
                                    p->c, &p->algo, b->workspace, b->workspace_bytes, s->stream));
    if (p->post_bias || p->post_act != MTI_ACT_NONE)
        MTI_CUDA_CHECK(
            dev, mti__cuda_bias_act(y, p->post_bias ? bias : NULL, m, n, p->post_act, s->stream));
    return MTI_OK;
}

mti_status mti__cuda_linear(struct cuda_stream *s, const float *x, const float *w,
                            const float *bias, float *y, int m, int n, int k, mti_activation act,
                            bool tf32)
{
    struct cuda_device *dev = mti__cuda_dev(s->base.device);
    return linear_run(s, x, w, bias, y, m, n, k, act, tf32 || dev->tf32, CUDA_R_32F);
}

mti_status mti__cuda_linear_bf16(struct cuda_stream *s, const uint16_t *x16, const uint16_t *w16,
                                 const float *bias, float *y, int m, int n, int k,
                                 mti_activation act)
{
    return linear_run(s, x16, w16, bias, y, m, n, k, act, false, CUDA_R_16BF);
}
