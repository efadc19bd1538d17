/*
 * Execution plans and the forward encoder.
 *
 * A plan is keyed by (device, stream slot, batch, seq) and created on first use: one workspace
 * block from the stream's caching allocator (input copy, two ping-pong activation buffers, one
 * saved input per residual depth, attention scratch), plus, for CUDA graphs, pinned host
 * staging. It is reused by every later request of that shape on that stream: no allocation
 * per request. The workspace is only touched by work on its own stream, so stream order makes
 * reuse safe even when threads share the stream (round-robin).
 *
 * The request path (mti_model_infer): the thread's stream (thread cache), plan lookup without
 * locks, then the whole request (copy in, forward, copy out) is encoded inside the stream's
 * recording section, then the thread waits on the stream. On the CPU backend every submit
 * carries MTI_SUBMIT_WAITED and the input is read in place (host memory is device memory), so
 * the ops run inline on the waiting thread. On CUDA with exclusive streams the first request
 * of a plan runs eagerly (warm-up: cuBLASLt plans are built), the second captures the whole
 * request (H2D from pinned staging, forward, D2H to pinned staging) as a graph, and every
 * later one is memcpy to staging, one graph launch, wait, memcpy out.
 *
 * Precision: every linear is submitted with the model's gemm_flags added (MTI_SUBMIT_TF32 for
 * a TF32 model), here in the encoder rather than by callers, so the direct path, the async
 * form, graph captures and the batcher all run a model in the precision it was loaded with.
 * A BF16 model on a GPU (m->weights16) submits its linears as linear_bf16_async instead: the
 * bf16 weight copy, and the fp32 input rounded into the plan's x16 scratch (rows x widest k,
 * reused by every linear of the forward in stream order); bias, output and all other ops fp32.
 *
 * Locks: plans_lock (model) serialises insertions into a slot's plan list and is never held
 * while allocating or submitting; lookups read the list head with acquire. A plan's run state
 * (runs, graph, no_graph) is touched only inside its stream's recording section.
 */
#include <stdlib.h>
#include <string.h>

#include "model/plan.h"
#include "runtime/alloc.h"
#include "runtime/ops.h"

struct mti_plan {
    struct mti_plan *next;
    int batch, seq;
    size_t rows;
    struct mti_stream *stream;
    struct mti_buffer *ws;
    float *in; /* device copy of the input (not on the CPU backend) */
    float *buf[2];
    float *res[MTI_MODEL_MAX_DEPTH];
    float *qkv, *att, *tmp, *hid, *scores;
    uint16_t *x16;      /* bf16 GEMM input scratch (BF16 models on a GPU), else NULL */
    void *h_in, *h_out; /* pinned staging (GPU, exclusive streams) */
    mti_backend_graph *graph;
    int runs;
    bool no_graph;
};

/* ---- plans ---------------------------------------------------------------------------------- */

mti_status mti__plans_init(struct mti_model *m)
{
    size_t n = (size_t)m->rt->n_devices * MTI_POOL_MAX_SLOTS;
    m->plans = calloc(n, sizeof *m->plans);
    if (!m->plans) return mti__error(MTI_ERR_OUT_OF_MEMORY, "plan table");
    mti_status st = mti_mutex_init(&m->plans_lock);
    if (st != MTI_OK) {
        free(m->plans);
        m->plans = NULL;
    }
    return st;
}

static void plan_free(struct mti_model *m, struct mti_plan *p)
{
    mti__op_graph_destroy(p->stream, p->graph);
    if (p->ws) mti__alloc_free(p->ws);
    mti_host_free(m->rt, p->h_in);
    mti_host_free(m->rt, p->h_out);
    free(p);
}

void mti__plans_destroy(struct mti_model *m)
{
    if (!m->plans) return;
    size_t n = (size_t)m->rt->n_devices * MTI_POOL_MAX_SLOTS;
    for (size_t i = 0; i < n; i++) {
        struct mti_plan *p = mti_atomic_load_acquire(&m->plans[i]);
        while (p) {
            struct mti_plan *next = p->next;
            plan_free(m, p);
            p = next;
        }
    }
    free(m->plans);
    mti_mutex_destroy(&m->plans_lock);
    m->plans = NULL;
}

static size_t carve(size_t *cursor, size_t floats)
{
    size_t at = *cursor;
    *cursor +=
        (floats + MTI_MODEL_ALIGN_FLOATS - 1) / MTI_MODEL_ALIGN_FLOATS * MTI_MODEL_ALIGN_FLOATS;
    return at;
}

/* GPU plans of exclusive streams copy through pinned staging (the caller's memory may be
 * pageable, and pageable copies serialise in the driver); a shared round-robin stream's plan
 * is used by several threads at once, so it copies from the caller's memory directly. */
static bool uses_staging(const struct mti_model *m)
{
    return m->rt->backend != MTI_BACKEND_CPU && m->rt->params.assign == MTI_ASSIGN_EXCLUSIVE;
}

/* Above this size, a request whose input and output are already pinned copies from and to
 * them directly: two host memcpy of a large batch cost more than the graph saves. */
#define DIRECT_COPY_MIN_BYTES (256u << 10)

static bool wants_graph(const struct mti_model *m, struct mti_stream *s)
{
    return m->use_graphs && m->rt->backend != MTI_BACKEND_CPU &&
           m->rt->params.assign == MTI_ASSIGN_EXCLUSIVE && mti__op_has_graphs(s);
}

static mti_status plan_create(struct mti_model *m, struct mti_stream *s, int batch, int seq,
                              struct mti_plan **out)
{
    const struct mti_model_desc *d = m->desc;
    *out = NULL;
    struct mti_plan *p = calloc(1, sizeof *p);
    if (!p) return mti__error(MTI_ERR_OUT_OF_MEMORY, "plan");
    p->batch = batch;
    p->seq = seq;
    p->rows = (size_t)batch * (size_t)seq;
    p->stream = s;
    size_t rows = p->rows, at = 0;
    size_t o_in = m->rt->backend != MTI_BACKEND_CPU ? carve(&at, rows * d->in_features) : 0;
    size_t o_buf0 = carve(&at, rows * d->max_width), o_buf1 = carve(&at, rows * d->max_width);
    size_t o_res[MTI_MODEL_MAX_DEPTH];
    for (int i = 0; i < d->depth; i++)
        o_res[i] = carve(&at, rows * d->max_width);
    size_t o_qkv = 0, o_att = 0, o_tmp = 0, o_hid = 0, o_scores = 0;
    if (d->max_d_model) {
        o_qkv = carve(&at, rows * 3 * (size_t)d->max_d_model);
        o_att = carve(&at, rows * (size_t)d->max_d_model);
        o_tmp = carve(&at, rows * (size_t)d->max_d_model);
        o_hid = carve(&at, rows * (size_t)(d->max_ff ? d->max_ff : 1));
        o_scores = carve(&at, (size_t)seq * (size_t)seq);
    }
    size_t o_x16 = 0;
    if (m->weights16) {
        /* the widest k of any linear: an activation row, d_model or the feed-forward width */
        size_t k = (size_t)d->max_width;
        if ((size_t)d->max_d_model > k) k = (size_t)d->max_d_model;
        if ((size_t)d->max_ff > k) k = (size_t)d->max_ff;
        o_x16 = carve(&at, (rows * k + 1) / 2); /* bf16 elements, two per float */
    }
    mti_status st = mti__alloc(s, at * sizeof(float), &p->ws);
    if (st != MTI_OK) goto fail;
    float *base = p->ws->ptr;
    p->in = m->rt->backend != MTI_BACKEND_CPU ? base + o_in : NULL;
    p->buf[0] = base + o_buf0;
    p->buf[1] = base + o_buf1;
    for (int i = 0; i < d->depth; i++)
        p->res[i] = base + o_res[i];
    if (d->max_d_model) {
        p->qkv = base + o_qkv;
        p->att = base + o_att;
        p->tmp = base + o_tmp;
        p->hid = base + o_hid;
        p->scores = base + o_scores;
    }
    if (m->weights16) p->x16 = (uint16_t *)(base + o_x16);
    p->no_graph = !wants_graph(m, s);
    if (uses_staging(m)) {
        MTI_CHECK_GOTO(mti_host_alloc(m->rt, rows * d->in_features * sizeof(float), &p->h_in), st,
                       fail);
        MTI_CHECK_GOTO(mti_host_alloc(m->rt, rows * d->out_features * sizeof(float), &p->h_out), st,
                       fail);
    }
    *out = p;
    return MTI_OK;
fail:
    plan_free(m, p);
    return st;
}

static struct mti_plan *plan_find(struct mti_plan *head, int batch, int seq)
{
    for (struct mti_plan *p = head; p; p = p->next)
        if (p->batch == batch && p->seq == seq) return p;
    return NULL;
}

/* The plan of (s, batch, seq), created on first use. Any thread. */
static mti_status plan_get(struct mti_model *m, struct mti_stream *s, int batch, int seq,
                           struct mti_plan **out) MTI_EXCLUDES(m->plans_lock)
{
    struct mti_plan *_Atomic *head = &m->plans[s->dev->index * MTI_POOL_MAX_SLOTS + s->slot];
    /* acquire: pairs with the release below, so a found plan's fields are visible */
    struct mti_plan *p = plan_find(mti_atomic_load_acquire(head), batch, seq);
    if (p) {
        *out = p;
        return MTI_OK;
    }
    struct mti_plan *np;
    MTI_CHECK(plan_create(m, s, batch, seq, &np)); /* allocation outside plans_lock */
    mti_mutex_lock(&m->plans_lock);
    struct mti_plan *first = mti_atomic_load_relaxed(head);
    p = plan_find(first, batch, seq); /* another sharer of the stream was faster */
    if (!p) {
        np->next = first;
        mti_atomic_store_release(head, np);
    }
    mti_mutex_unlock(&m->plans_lock);
    if (p) plan_free(m, np);
    *out = p ? p : np;
    return MTI_OK;
}

/* ---- forward encoder (caller holds the stream's recording section) --------------------------- */

struct fwd {
    struct mti_plan *p;
    const float *w;      /* the device weight blob */
    const uint16_t *w16; /* its bf16 copy (BF16 models on a GPU), else NULL */
    unsigned flags;
    unsigned gemm_flags; /* flags | the model's gemm_flags: what every linear is submitted with */
    int rows;
};

#define PARAM(f, l, slot) ((f)->w + (l)->params[slot].offset)

/* y = act(x W^T + b) for the weight in slot w_slot of l (b: the parameter in b_slot, or none
 * when b_slot < 0): bf16 GEMM inputs with the bf16 weight copy when the model has one, else
 * the fp32 GEMM with the model's gemm_flags. */
static mti_status encode_linear(struct mti_stream *s, const struct fwd *f,
                                const struct mti_layer *l, int w_slot, int b_slot, const float *x,
                                float *y, int n, int k, mti_activation act)
    MTI_REQUIRES(s->record_lock)
{
    const float *bias = b_slot >= 0 ? PARAM(f, l, b_slot) : NULL;
    if (f->w16)
        return mti__op_linear_bf16(s, x, f->p->x16, f->w16 + l->params[w_slot].offset, bias, y,
                                   f->rows, n, k, act, f->flags);
    return mti__op_linear(s, x, PARAM(f, l, w_slot), bias, y, f->rows, n, k, act, f->gemm_flags);
}

static float *other(const struct fwd *f, const float *cur)
{
    return cur == f->p->buf[0] ? f->p->buf[1] : f->p->buf[0];
}

/* Where an in-place op writes: cur itself when it is a work buffer (never the input). */
static float *inplace(const struct fwd *f, const float *cur)
{
    return cur == f->p->buf[0] || cur == f->p->buf[1] ? (float *)cur : f->p->buf[0];
}

static mti_status encode_attention_block(struct mti_stream *s, struct fwd *f,
                                         const struct mti_layer *l, const float *x, float *y)
    MTI_REQUIRES(s->record_lock)
{
    int d = l->in;
    MTI_CHECK(encode_linear(s, f, l, P_IN_W, P_IN_B, x, f->p->qkv, 3 * d, d, MTI_ACT_NONE));
    MTI_CHECK(mti__op_attention(s, f->p->qkv, f->p->att, f->p->scores, f->p->batch, f->p->seq,
                                l->heads, d / l->heads, f->flags));
    return encode_linear(s, f, l, P_OUT_W, P_OUT_B, f->p->att, y, d, d, MTI_ACT_NONE);
}

/* nn.TransformerEncoderLayer: post-norm  x1 = LN1(x + SA(x)),  y = LN2(x1 + FF(x1));
 *                             norm_first x1 = x + SA(LN1(x)),  y = x1 + FF(LN2(x1)). */
static mti_status encode_encoder(struct mti_stream *s, struct fwd *f, const struct mti_layer *l,
                                 const float *x, float *y) MTI_REQUIRES(s->record_lock)
{
    struct mti_plan *p = f->p;
    int d = l->in, rows = f->rows;
    size_t count = (size_t)rows * d;
    unsigned fl = f->flags;
    if (!l->norm_first) {
        MTI_CHECK(encode_attention_block(s, f, l, x, p->tmp));
        MTI_CHECK(mti__op_add(s, p->tmp, x, p->tmp, count, fl));
        MTI_CHECK(mti__op_layernorm(s, p->tmp, PARAM(f, l, P_N1_W), PARAM(f, l, P_N1_B), p->tmp,
                                    rows, d, l->eps, fl));
        MTI_CHECK(encode_linear(s, f, l, P_L1_W, P_L1_B, p->tmp, p->hid, l->ff, d, l->act));
        MTI_CHECK(encode_linear(s, f, l, P_L2_W, P_L2_B, p->hid, p->att, d, l->ff, MTI_ACT_NONE));
        MTI_CHECK(mti__op_add(s, p->att, p->tmp, p->att, count, fl));
        return mti__op_layernorm(s, p->att, PARAM(f, l, P_N2_W), PARAM(f, l, P_N2_B), y, rows, d,
                                 l->eps, fl);
    }
    MTI_CHECK(mti__op_layernorm(s, x, PARAM(f, l, P_N1_W), PARAM(f, l, P_N1_B), p->tmp, rows, d,
                                l->eps, fl));
    MTI_CHECK(encode_attention_block(s, f, l, p->tmp, p->tmp));
    MTI_CHECK(mti__op_add(s, p->tmp, x, p->tmp, count, fl));
    MTI_CHECK(mti__op_layernorm(s, p->tmp, PARAM(f, l, P_N2_W), PARAM(f, l, P_N2_B), p->att, rows,
                                d, l->eps, fl));
    MTI_CHECK(encode_linear(s, f, l, P_L1_W, P_L1_B, p->att, p->hid, l->ff, d, l->act));
    MTI_CHECK(encode_linear(s, f, l, P_L2_W, P_L2_B, p->hid, p->att, d, l->ff, MTI_ACT_NONE));
    return mti__op_add(s, p->att, p->tmp, y, count, fl);
}

static mti_status encode_list(struct mti_stream *s, struct fwd *f, const struct mti_layer *layers,
                              int n, const float *x, int depth, const float **out)
    MTI_REQUIRES(s->record_lock)
{
    const float *cur = x;
    unsigned fl = f->flags;
    int rows = f->rows;
    for (int i = 0; i < n; i++) {
        const struct mti_layer *l = &layers[i];
        size_t count = (size_t)rows * l->in;
        float *y;
        switch (l->type) {
        case MTI_LAYER_LINEAR: {
            /* A following ReLU/GELU is fused into the GEMM's epilogue. */
            mti_activation act = MTI_ACT_NONE;
            if (i + 1 < n &&
                (layers[i + 1].type == MTI_LAYER_RELU || layers[i + 1].type == MTI_LAYER_GELU))
                act = layers[++i].act;
            y = other(f, cur);
            MTI_CHECK(encode_linear(s, f, l, P_WEIGHT, l->has_bias ? P_BIAS : -1, cur, y, l->out,
                                    l->in, act));
            break;
        }
        case MTI_LAYER_RELU:
        case MTI_LAYER_GELU:
            y = inplace(f, cur);
            MTI_CHECK(mti__op_act(s, cur, y, count, l->act, fl));
            break;
        case MTI_LAYER_SOFTMAX:
            y = inplace(f, cur);
            MTI_CHECK(mti__op_softmax(s, cur, y, rows, l->in, fl));
            break;
        case MTI_LAYER_LAYERNORM:
            y = inplace(f, cur);
            MTI_CHECK(mti__op_layernorm(s, cur, PARAM(f, l, P_WEIGHT), PARAM(f, l, P_BIAS), y, rows,
                                        l->in, l->eps, fl));
            break;
        case MTI_LAYER_MHA:
            y = other(f, cur);
            MTI_CHECK(encode_attention_block(s, f, l, cur, y));
            break;
        case MTI_LAYER_ENCODER:
            y = other(f, cur);
            MTI_CHECK(encode_encoder(s, f, l, cur, y));
            break;
        case MTI_LAYER_RESIDUAL: {
            /* The block's input survives in res[depth] (the read-only input needs no copy). */
            const float *saved = cur;
            if (cur == f->p->buf[0] || cur == f->p->buf[1]) {
                saved = f->p->res[depth];
                MTI_CHECK(mti__op_memcpy(s, f->p->res[depth], cur, count * sizeof(float),
                                         MTI_COPY_DEVICE_TO_DEVICE, fl));
            }
            const float *o;
            MTI_CHECK(encode_list(s, f, l->children, l->n_children, cur, depth + 1, &o));
            y = inplace(f, o);
            MTI_CHECK(mti__op_add(s, o, saved, y, count, fl));
            break;
        }
        default:
            return mti__error(MTI_ERR_INTERNAL, "layer type %d", (int)l->type);
        }
        cur = y;
    }
    *out = cur;
    return MTI_OK;
}

static mti_status encode_forward(struct mti_model *m, struct mti_stream *s, struct mti_plan *p,
                                 const float *x, unsigned flags, const float **out)
    MTI_REQUIRES(s->record_lock)
{
    struct fwd f = {.p = p,
                    .w = m->weights[s->dev->index],
                    .w16 = m->weights16 ? m->weights16[s->dev->index] : NULL,
                    .flags = flags,
                    .gemm_flags = flags | m->gemm_flags,
                    .rows = (int)p->rows};
    return encode_list(s, &f, m->desc->layers, m->desc->n_layers, x, 0, out);
}

/* ---- requests ------------------------------------------------------------------------------- */

/* A staged request body (eager or captured): staging -> device, forward, device -> staging. */
static mti_status encode_staged(struct mti_model *m, struct mti_stream *s, struct mti_plan *p)
    MTI_REQUIRES(s->record_lock)
{
    const struct mti_model_desc *d = m->desc;
    MTI_CHECK(mti__op_memcpy(s, p->in, p->h_in, p->rows * d->in_features * sizeof(float),
                             MTI_COPY_HOST_TO_DEVICE, 0));
    const float *y;
    MTI_CHECK(encode_forward(m, s, p, p->in, 0, &y));
    return mti__op_memcpy(s, p->h_out, y, p->rows * d->out_features * sizeof(float),
                          MTI_COPY_DEVICE_TO_HOST, 0);
}

/* Eager on the first run (warm-up), captured on the second, replayed after. A failed capture
 * falls back to eager for good (no_graph). */
static mti_status encode_graph_request(struct mti_model *m, struct mti_stream *s,
                                       struct mti_plan *p) MTI_REQUIRES(s->record_lock)
{
    if (p->graph) return mti__op_graph_launch(s, p->graph, 0);
    if (p->runs++ == 0 || p->no_graph) return encode_staged(m, s, p);
    mti_status st = mti__op_graph_begin(s);
    if (st == MTI_OK) {
        mti_status body = encode_staged(m, s, p);
        mti_backend_graph *g = NULL;
        st = mti__op_graph_end(s, &g);
        if (body != MTI_OK && st == MTI_OK) {
            mti__op_graph_destroy(s, g);
            st = body;
        } else if (st == MTI_OK) {
            p->graph = g;
            return mti__op_graph_launch(s, g, 0);
        }
    }
    p->no_graph = true;
    return encode_staged(m, s, p);
}

mti_status mti__plan_infer(struct mti_model *m, int batch, int seq, const float *input,
                           float *output)
{
    MTI_CHECK(mti__runtime_check(m->rt));
    struct mti_stream *s;
    MTI_CHECK(mti__thread_stream(m->rt, &s));
    struct mti_plan *p;
    MTI_CHECK(plan_get(m, s, batch, seq, &p));
    const struct mti_model_desc *d = m->desc;
    size_t in_bytes = p->rows * d->in_features * sizeof(float);
    size_t out_bytes = p->rows * d->out_features * sizeof(float);
    mti_status st;
    bool staged =
        p->h_in && !(in_bytes + out_bytes >= DIRECT_COPY_MIN_BYTES &&
                     mti__host_is_pinned(m->rt, input) && mti__host_is_pinned(m->rt, output));
    if (staged) {
        memcpy(p->h_in, input, in_bytes);
        mti__encode_begin(s);
        st = encode_graph_request(m, s, p);
        mti__encode_end(s);
    } else {
        bool cpu = m->rt->backend == MTI_BACKEND_CPU;
        unsigned flags = cpu ? MTI_SUBMIT_WAITED : 0;
        mti__encode_begin(s);
        const float *x = input, *y = NULL;
        st = MTI_OK;
        if (!cpu) {
            st = mti__op_memcpy(s, p->in, input, in_bytes, MTI_COPY_HOST_TO_DEVICE, flags);
            x = p->in;
        }
        if (st == MTI_OK) st = encode_forward(m, s, p, x, flags, &y);
        if (st == MTI_OK)
            st = mti__op_memcpy(s, output, y, out_bytes, MTI_COPY_DEVICE_TO_HOST, flags);
        mti__encode_end(s);
    }
    /* Always wait: submitted work may reference the caller's buffers. */
    mti_status sync = mti__stream_sync(s);
    if (st == MTI_OK) st = sync;
    if (st == MTI_OK && staged) memcpy(output, p->h_out, out_bytes);
    return st;
}

mti_status mti__plan_infer_async(struct mti_model *m, struct mti_stream *s, int batch, int seq,
                                 const float *input, float *output, unsigned flags)
{
    MTI_CHECK(mti__runtime_check(m->rt));
    struct mti_plan *p;
    MTI_CHECK(plan_get(m, s, batch, seq, &p));
    mti__encode_begin(s);
    const float *y = NULL;
    mti_status st = encode_forward(m, s, p, input, flags, &y);
    if (st == MTI_OK)
        st = mti__op_memcpy(s, output, y, p->rows * m->desc->out_features * sizeof(float),
                            MTI_COPY_DEVICE_TO_DEVICE, flags);
    mti__encode_end(s);
    return st;
}
