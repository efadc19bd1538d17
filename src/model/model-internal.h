/*
 * Model internals. A model is parsed (safetensors.c + config.c) into a layer tree and a host
 * weight blob (every tensor copied to a 256-byte aligned offset), then uploaded once per
 * device (model.c). Execution (plan.c) encodes a forward on a stream with per-(stream slot,
 * batch, seq) plans; reference.c is the float64 executor over the host blob.
 *
 * Ownership: the model owns its desc (layers, blob), its device weights and every plan.
 * Plans are published lock-free per slot (acquire/release on the list head), inserted under
 * plans_lock, and freed only by mti_model_destroy.
 */
#ifndef MTI_MODEL_INTERNAL_H
#define MTI_MODEL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/atomics.h"
#include "base/status.h"
#include "base/sync.h"
#include "mtinfer.h"

#define MTI_MODEL_MAX_DEPTH    8         /* nesting of residual blocks */
#define MTI_MODEL_MAX_LAYERS   4096      /* layers in the whole tree */
#define MTI_MODEL_MAX_DIM      (1 << 20) /* any width, heads or ff */
#define MTI_MODEL_MAX_ROWS     (1 << 24) /* batch * seq at infer */
#define MTI_MODEL_MAX_SEQ      8192      /* attention: seq*seq scores */
#define MTI_MODEL_MAX_HEADER   ((uint64_t)100 << 20)
#define MTI_MODEL_ALIGN_FLOATS 64 /* tensors in the blob start at 256-byte offsets */
#define MTI_LAYER_MAX_PARAMS   12

enum mti_layer_type {
    MTI_LAYER_LINEAR,
    MTI_LAYER_RELU,
    MTI_LAYER_GELU,
    MTI_LAYER_LAYERNORM,
    MTI_LAYER_SOFTMAX,
    MTI_LAYER_MHA,
    MTI_LAYER_ENCODER,
    MTI_LAYER_RESIDUAL,
};

/* Parameter slots of a layer (indexes into mti_layer.params). */
enum {
    P_WEIGHT = 0, /* linear, layernorm */
    P_BIAS = 1,
    P_IN_W = 0, /* mha and encoder: self-attention */
    P_IN_B = 1,
    P_OUT_W = 2,
    P_OUT_B = 3,
    P_L1_W = 4, /* encoder only */
    P_L1_B = 5,
    P_L2_W = 6,
    P_L2_B = 7,
    P_N1_W = 8,
    P_N1_B = 9,
    P_N2_W = 10,
    P_N2_B = 11,
};

struct mti_param {
    char *name; /* full tensor name */
    int ndim;
    int64_t shape[2];
    size_t count;  /* floats */
    size_t offset; /* floats into the blob; (size_t)-1 when absent (no bias) */
};

struct mti_layer {
    enum mti_layer_type type;
    char *name;
    int in, out;        /* row width before and after */
    int has_bias;       /* linear */
    mti_activation act; /* gelu's approximation; encoder feed-forward activation */
    float eps;          /* layernorm, encoder */
    int heads, ff;      /* mha, encoder */
    int norm_first;     /* encoder */
    int n_params;
    struct mti_param params[MTI_LAYER_MAX_PARAMS];
    struct mti_layer *children; /* residual */
    int n_children;
};

/* A parsed, validated model without any runtime: layers and the host weight blob. */
struct mti_model_desc {
    int sequence;
    int in_features, out_features;
    struct mti_layer *layers;
    int n_layers;
    int total_layers; /* in the whole tree */
    int depth;        /* deepest residual nesting */
    int max_width;    /* widest activation row */
    int max_d_model;  /* attention layers (0: none) */
    int max_ff;       /* encoder feed-forward width */
    size_t n_params;
    float *blob; /* host weights (aligned) */
    size_t blob_floats;
    char *summary;
};

/* safetensors.c + config.c: parses and validates a whole file image. config_json NULL means
 * the "mtinfer.config" metadata entry. what names the file in messages. */
mti_status mti__model_parse(const void *data, size_t size, const char *config_json,
                            const char *what, struct mti_model_desc **out);
void mti__model_desc_free(struct mti_model_desc *d);

/* safetensors.c: the parsed header. */
struct mti_st_tensor {
    char *name;
    int dtype_f32; /* 1 when dtype is "F32" */
    char dtype[16];
    int ndim;
    int64_t shape[8];
    uint64_t begin, end; /* offsets into the data section */
    bool used;
};

struct mti_st_file {
    const unsigned char *data; /* data section */
    uint64_t data_size;
    struct mti_st_tensor *tensors;
    int n_tensors;
    char *config; /* copy of __metadata__["mtinfer.config"], or NULL */
};

mti_status mti__st_parse(const void *image, size_t size, const char *what, struct mti_st_file *out);
void mti__st_free(struct mti_st_file *f);

/* config.c: builds the layer tree from JSON and binds it to the file's tensors. */
mti_status mti__config_build(const char *json, struct mti_st_file *f, const char *what,
                             struct mti_model_desc *d);
void mti__layers_free(struct mti_layer *layers, int n);

/* reference.c */
mti_status mti__reference_forward(const struct mti_model_desc *d, int batch, int seq,
                                  const float *input, double *output);

#endif
