/*
 * The model object and its execution plans (plan.c). A plan belongs to one (device, stream
 * slot, batch, seq): workspace from that stream's allocator, pinned staging and a graph on
 * CUDA. Plans of a slot form a list whose head is published with release and read with
 * acquire; nodes are immutable once published except their run state (runs, graph), which
 * only the thread inside the stream's recording section touches.
 */
#ifndef MTI_MODEL_PLAN_H
#define MTI_MODEL_PLAN_H

#include "model/model-internal.h"
#include "runtime/runtime-internal.h"

struct mti_plan;

struct mti_model {
    struct mti_runtime *rt;
    struct mti_model_desc *desc;
    bool use_graphs;
    unsigned gemm_flags; /* submit flags every linear adds (MTI_SUBMIT_TF32 for TF32 models) */
    int n_devices;
    float **weights; /* per device: the blob in device memory */
    /* MTI_PRECISION_BF16 on a GPU backend: per device, the whole blob rounded to bf16 at the
     * same offsets (only the linear weights are read); NULL otherwise (fp32 GEMMs). */
    uint16_t **weights16;
    /* Per (device, slot): the plan list head. Index dev * MTI_POOL_MAX_SLOTS + slot. */
    struct mti_plan *_Atomic *plans;
    mti_mutex plans_lock; /* serialises insertions into plans (lookups take no lock) */
};

mti_status mti__plans_init(struct mti_model *m);
/* No call on the model may be running. */
void mti__plans_destroy(struct mti_model *m);

mti_status mti__model_check_shape(const struct mti_model_desc *d, int batch, int seq, size_t *rows);
mti_status mti__plan_infer(struct mti_model *m, int batch, int seq, const float *input,
                           float *output);
mti_status mti__plan_infer_async(struct mti_model *m, struct mti_stream *s, int batch, int seq,
                                 const float *input, float *output, unsigned flags);

#endif
