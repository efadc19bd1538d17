/*
 * The model config (JSON, see mtinfer.h): builds the layer tree, checks that widths chain
 * through it, lists every tensor each layer needs under PyTorch's names, then binds those to
 * the safetensors table (dtype F32, exact shape, each used once, none left over) and copies
 * them into the host blob at 256-byte aligned offsets. Messages name the layer (its index
 * path and name) and the tensor. No locks; no runtime.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model/model-internal.h"

struct build {
    const char *what;
    struct mti_model_desc *d;
    int sequence;
};

static char *str_printf(const char *fmt, ...) MTI_PRINTF(1, 2);
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

void mti__layers_free(struct mti_layer *layers, int n)
{
    if (!layers) return;
    for (int i = 0; i < n; i++) {
        struct mti_layer *l = &layers[i];
        free(l->name);
        for (int p = 0; p < l->n_params; p++)
            free(l->params[p].name);
        mti__layers_free(l->children, l->n_children);
    }
    free(layers);
}

static const char *type_name(enum mti_layer_type t)
{
    static const char *const names[] = {
        "linear",  "relu", "gelu", "layernorm", "softmax", "mha", "transformer_encoder_layer",
        "residual"};
    return names[t];
}

/* An integer field in [min, max]; absent gives def (or an error when def < min). */
static mti_status get_int(const struct build *b, const cJSON *o, const struct mti_layer *l,
                          const char *key, long def, long min, long max, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        if (def < min)
            return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: layer '%s' (%s) needs \"%s\"", b->what,
                              l->name, type_name(l->type), key);
        *out = (int)def;
        return MTI_OK;
    }
    if (cJSON_IsBool(v) && min == 0 && max == 1) {
        *out = cJSON_IsTrue(v);
        return MTI_OK;
    }
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble ||
        v->valuedouble < (double)min || v->valuedouble > (double)max)
        return mti__error(MTI_ERR_CORRUPT_INPUT,
                          "%s: layer '%s' (%s): \"%s\" must be an integer in %ld..%ld", b->what,
                          l->name, type_name(l->type), key, min, max);
    *out = (int)v->valuedouble;
    return MTI_OK;
}

static mti_status get_eps(const struct build *b, const cJSON *o, const struct mti_layer *l,
                          float *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "eps");
    *out = 1e-5f;
    if (!v) return MTI_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0.0) || !(v->valuedouble < 1.0))
        return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: layer '%s': \"eps\" must be in (0, 1)",
                          b->what, l->name);
    *out = (float)v->valuedouble;
    return MTI_OK;
}

static mti_status add_param(struct mti_layer *l, int slot, const char *suffix, int ndim, int64_t s0,
                            int64_t s1)
{
    struct mti_param *p = &l->params[slot];
    p->name = str_printf("%s.%s", l->name, suffix);
    if (!p->name) return mti__error(MTI_ERR_OUT_OF_MEMORY, "tensor name");
    p->ndim = ndim;
    p->shape[0] = s0;
    p->shape[1] = s1;
    p->count = (size_t)s0 * (size_t)(ndim == 2 ? s1 : 1);
    p->offset = (size_t)-1;
    if (slot + 1 > l->n_params) l->n_params = slot + 1;
    return MTI_OK;
}

static mti_status attention_params(struct mti_layer *l, const char *prefix, int d)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%sin_proj_weight", prefix);
    MTI_CHECK(add_param(l, P_IN_W, buf, 2, 3 * (int64_t)d, d));
    snprintf(buf, sizeof buf, "%sin_proj_bias", prefix);
    MTI_CHECK(add_param(l, P_IN_B, buf, 1, 3 * (int64_t)d, 0));
    snprintf(buf, sizeof buf, "%sout_proj.weight", prefix);
    MTI_CHECK(add_param(l, P_OUT_W, buf, 2, d, d));
    snprintf(buf, sizeof buf, "%sout_proj.bias", prefix);
    return add_param(l, P_OUT_B, buf, 1, d, 0);
}

static mti_status build_list(struct build *b, const cJSON *arr, const char *prefix, int width,
                             int depth, struct mti_layer **out, int *n_out, int *width_out);

static mti_status need_sequence(const struct build *b, const struct mti_layer *l)
{
    if (!b->sequence)
        return mti__error(MTI_ERR_CORRUPT_INPUT,
                          "%s: layer '%s' (%s) needs sequence input: set \"input\": "
                          "{\"d_model\": N}",
                          b->what, l->name, type_name(l->type));
    return MTI_OK;
}

static mti_status chain_error(const struct build *b, const struct mti_layer *l, const char *key,
                              int have, int width)
{
    return mti__error(MTI_ERR_CORRUPT_INPUT,
                      "%s: layer '%s' (%s): dims do not chain: \"%s\" is %d but the previous "
                      "layer gives rows of width %d",
                      b->what, l->name, type_name(l->type), key, have, width);
}

static mti_status build_layer(struct build *b, const cJSON *o, const char *prefix, int index,
                              int width, int depth, struct mti_layer *l)
{
    const long MAXD = MTI_MODEL_MAX_DIM;
    if (!cJSON_IsObject(o))
        return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: layer %d%s%s is not a JSON object", b->what,
                          index, prefix ? " of " : "", prefix ? prefix : "");
    if (++b->d->total_layers > MTI_MODEL_MAX_LAYERS)
        return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: more than %d layers", b->what,
                          MTI_MODEL_MAX_LAYERS);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (name && (!cJSON_IsString(name) || strlen(name->valuestring) > 200))
        return mti__error(MTI_ERR_CORRUPT_INPUT,
                          "%s: layer %d: \"name\" must be a string of at most 200 bytes", b->what,
                          index);
    l->name = name     ? strdup(name->valuestring)
              : prefix ? str_printf("%s.%d", prefix, index)
                       : str_printf("%d", index);
    if (!l->name) return mti__error(MTI_ERR_OUT_OF_MEMORY, "layer name");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (!cJSON_IsString(type))
        return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: layer '%s' has no \"type\" string", b->what,
                          l->name);
    const char *t = type->valuestring;
    l->in = width;
    l->out = width;
    if (strcmp(t, "linear") == 0) {
        l->type = MTI_LAYER_LINEAR;
        int in, out;
        MTI_CHECK(get_int(b, o, l, "in", -1, 1, MAXD, &in));
        MTI_CHECK(get_int(b, o, l, "out", -1, 1, MAXD, &out));
        MTI_CHECK(get_int(b, o, l, "bias", 1, 0, 1, &l->has_bias));
        if (in != width) return chain_error(b, l, "in", in, width);
        l->out = out;
        MTI_CHECK(add_param(l, P_WEIGHT, "weight", 2, out, in));
        if (l->has_bias) MTI_CHECK(add_param(l, P_BIAS, "bias", 1, out, 0));
    } else if (strcmp(t, "relu") == 0) {
        l->type = MTI_LAYER_RELU;
        l->act = MTI_ACT_RELU;
    } else if (strcmp(t, "gelu") == 0) {
        l->type = MTI_LAYER_GELU;
        l->act = MTI_ACT_GELU;
        const cJSON *ap = cJSON_GetObjectItemCaseSensitive(o, "approximate");
        if (ap && !(cJSON_IsString(ap) &&
                    (strcmp(ap->valuestring, "none") == 0 || strcmp(ap->valuestring, "tanh") == 0)))
            return mti__error(MTI_ERR_CORRUPT_INPUT,
                              "%s: layer '%s' (gelu): \"approximate\" must be \"none\" or "
                              "\"tanh\"",
                              b->what, l->name);
        if (ap && strcmp(ap->valuestring, "tanh") == 0) l->act = MTI_ACT_GELU_TANH;
    } else if (strcmp(t, "softmax") == 0) {
        l->type = MTI_LAYER_SOFTMAX;
    } else if (strcmp(t, "layernorm") == 0) {
        l->type = MTI_LAYER_LAYERNORM;
        int dim;
        MTI_CHECK(get_int(b, o, l, "dim", width, 1, MAXD, &dim));
        if (dim != width) return chain_error(b, l, "dim", dim, width);
        MTI_CHECK(get_eps(b, o, l, &l->eps));
        MTI_CHECK(add_param(l, P_WEIGHT, "weight", 1, dim, 0));
        MTI_CHECK(add_param(l, P_BIAS, "bias", 1, dim, 0));
    } else if (strcmp(t, "mha") == 0 || strcmp(t, "transformer_encoder_layer") == 0) {
        bool enc = t[0] == 't';
        l->type = enc ? MTI_LAYER_ENCODER : MTI_LAYER_MHA;
        MTI_CHECK(need_sequence(b, l));
        int dm;
        MTI_CHECK(get_int(b, o, l, "d_model", -1, 1, MAXD, &dm));
        MTI_CHECK(get_int(b, o, l, "heads", -1, 1, MAXD, &l->heads));
        if (dm != width) return chain_error(b, l, "d_model", dm, width);
        if (dm % l->heads != 0)
            return mti__error(MTI_ERR_CORRUPT_INPUT,
                              "%s: layer '%s': d_model %d is not divisible by heads %d", b->what,
                              l->name, dm, l->heads);
        if (b->d->max_d_model < dm) b->d->max_d_model = dm;
        if (!enc) {
            MTI_CHECK(attention_params(l, "", dm));
        } else {
            MTI_CHECK(get_int(b, o, l, "ff", -1, 1, MAXD, &l->ff));
            MTI_CHECK(get_int(b, o, l, "norm_first", 0, 0, 1, &l->norm_first));
            MTI_CHECK(get_eps(b, o, l, &l->eps));
            l->act = MTI_ACT_RELU;
            const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, "activation");
            if (act) {
                if (cJSON_IsString(act) && strcmp(act->valuestring, "gelu") == 0)
                    l->act = MTI_ACT_GELU;
                else if (!cJSON_IsString(act) || strcmp(act->valuestring, "relu") != 0)
                    return mti__error(MTI_ERR_CORRUPT_INPUT,
                                      "%s: layer '%s': \"activation\" must be \"relu\" or "
                                      "\"gelu\"",
                                      b->what, l->name);
            }
            if (b->d->max_ff < l->ff) b->d->max_ff = l->ff;
            MTI_CHECK(attention_params(l, "self_attn.", dm));
            MTI_CHECK(add_param(l, P_L1_W, "linear1.weight", 2, l->ff, dm));
            MTI_CHECK(add_param(l, P_L1_B, "linear1.bias", 1, l->ff, 0));
            MTI_CHECK(add_param(l, P_L2_W, "linear2.weight", 2, dm, l->ff));
            MTI_CHECK(add_param(l, P_L2_B, "linear2.bias", 1, dm, 0));
            MTI_CHECK(add_param(l, P_N1_W, "norm1.weight", 1, dm, 0));
            MTI_CHECK(add_param(l, P_N1_B, "norm1.bias", 1, dm, 0));
            MTI_CHECK(add_param(l, P_N2_W, "norm2.weight", 1, dm, 0));
            MTI_CHECK(add_param(l, P_N2_B, "norm2.bias", 1, dm, 0));
        }
    } else if (strcmp(t, "residual") == 0) {
        l->type = MTI_LAYER_RESIDUAL;
        if (depth + 1 > MTI_MODEL_MAX_DEPTH)
            return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: residual blocks nest deeper than %d",
                              b->what, MTI_MODEL_MAX_DEPTH);
        if (b->d->depth < depth + 1) b->d->depth = depth + 1;
        const cJSON *children = cJSON_GetObjectItemCaseSensitive(o, "layers");
        if (!cJSON_IsArray(children))
            return mti__error(MTI_ERR_CORRUPT_INPUT,
                              "%s: layer '%s' (residual) needs a \"layers\" array", b->what,
                              l->name);
        int w;
        MTI_CHECK(
            build_list(b, children, l->name, width, depth + 1, &l->children, &l->n_children, &w));
        if (w != width)
            return mti__error(MTI_ERR_CORRUPT_INPUT,
                              "%s: layer '%s' (residual): dims do not chain: its layers map "
                              "width %d to %d, a residual add needs the same width",
                              b->what, l->name, width, w);
    } else {
        return mti__error(MTI_ERR_CORRUPT_INPUT,
                          "%s: layer '%s' has unknown type '%.40s' (known: linear, relu, gelu, "
                          "layernorm, softmax, mha, transformer_encoder_layer, residual)",
                          b->what, l->name, t);
    }
    if (b->d->max_width < l->out) b->d->max_width = l->out;
    return MTI_OK;
}

static mti_status build_list(struct build *b, const cJSON *arr, const char *prefix, int width,
                             int depth, struct mti_layer **out, int *n_out, int *width_out)
{
    int n = cJSON_GetArraySize(arr);
    *out = NULL;
    *n_out = 0;
    if (n > MTI_MODEL_MAX_LAYERS)
        return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: more than %d layers", b->what,
                          MTI_MODEL_MAX_LAYERS);
    struct mti_layer *layers = calloc((size_t)(n ? n : 1), sizeof *layers);
    if (!layers) return mti__error(MTI_ERR_OUT_OF_MEMORY, "layers");
    *out = layers;
    int i = 0;
    for (const cJSON *o = arr->child; o; o = o->next, i++) {
        *n_out = i + 1; /* so a failure frees what this layer built */
        MTI_CHECK(build_layer(b, o, prefix, i, width, depth, &layers[i]));
        width = layers[i].out;
    }
    *width_out = width;
    return MTI_OK;
}

/* ---- binding tensors ------------------------------------------------------------------------ */

static mti_status bind_layers(struct build *b, struct mti_st_file *f, struct mti_layer *layers,
                              int n, size_t *cursor)
{
    for (int i = 0; i < n; i++) {
        struct mti_layer *l = &layers[i];
        for (int p = 0; p < l->n_params; p++) {
            struct mti_param *prm = &l->params[p];
            if (!prm->name) continue; /* an absent bias */
            struct mti_st_tensor *t = NULL;
            for (int k = 0; k < f->n_tensors && !t; k++)
                if (strcmp(f->tensors[k].name, prm->name) == 0) t = &f->tensors[k];
            if (!t)
                return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: missing tensor '%s' (layer '%s', %s)",
                                  b->what, prm->name, l->name, type_name(l->type));
            if (t->used)
                return mti__error(MTI_ERR_CORRUPT_INPUT,
                                  "%s: tensor '%s' is claimed by two layers (duplicate layer "
                                  "names?)",
                                  b->what, prm->name);
            if (!t->dtype_f32)
                return mti__error(MTI_ERR_CORRUPT_INPUT,
                                  "%s: tensor '%s' has dtype %s; the config needs F32", b->what,
                                  prm->name, t->dtype);
            bool ok = t->ndim == prm->ndim && t->shape[0] == prm->shape[0] &&
                      (prm->ndim == 1 || t->shape[1] == prm->shape[1]);
            if (!ok) {
                char have[96] = "[", want[64];
                for (int k = 0; k < t->ndim; k++) {
                    size_t len = strlen(have);
                    snprintf(have + len, sizeof have - len, "%s%lld", k ? ", " : "",
                             (long long)t->shape[k]);
                }
                strncat(have, "]", sizeof have - strlen(have) - 1);
                if (prm->ndim == 2)
                    snprintf(want, sizeof want, "[%lld, %lld]", (long long)prm->shape[0],
                             (long long)prm->shape[1]);
                else
                    snprintf(want, sizeof want, "[%lld]", (long long)prm->shape[0]);
                return mti__error(MTI_ERR_CORRUPT_INPUT,
                                  "%s: tensor '%s' has shape %s; the config (layer '%s') needs "
                                  "%s",
                                  b->what, prm->name, have, l->name, want);
            }
            t->used = true;
            prm->offset = *cursor;
            *cursor += (prm->count + MTI_MODEL_ALIGN_FLOATS - 1) / MTI_MODEL_ALIGN_FLOATS *
                       MTI_MODEL_ALIGN_FLOATS;
            b->d->n_params += prm->count;
        }
        MTI_CHECK(bind_layers(b, f, l->children, l->n_children, cursor));
    }
    return MTI_OK;
}

static void copy_layers(const struct mti_st_file *f, float *blob, struct mti_layer *layers, int n)
{
    for (int i = 0; i < n; i++) {
        struct mti_layer *l = &layers[i];
        for (int p = 0; p < l->n_params; p++) {
            const struct mti_param *prm = &l->params[p];
            if (!prm->name) continue;
            for (int k = 0; k < f->n_tensors; k++)
                if (strcmp(f->tensors[k].name, prm->name) == 0) {
                    memcpy(blob + prm->offset, f->data + f->tensors[k].begin,
                           prm->count * sizeof(float));
                    break;
                }
        }
        copy_layers(f, blob, l->children, l->n_children);
    }
}

/* ---- summary -------------------------------------------------------------------------------- */

struct text {
    char *s;
    size_t len, cap;
    bool oom;
};

static void text_add(struct text *t, const char *fmt, ...) MTI_PRINTF(2, 3);
static void text_add(struct text *t, const char *fmt, ...)
{
    if (t->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->oom = true;
        return;
    }
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = (t->cap ? t->cap * 2 : 1024) + (size_t)n;
        char *s = realloc(t->s, cap);
        if (!s) {
            t->oom = true;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static size_t layer_params(const struct mti_layer *l)
{
    size_t n = 0;
    for (int p = 0; p < l->n_params; p++)
        if (l->params[p].name) n += l->params[p].count;
    for (int c = 0; c < l->n_children; c++)
        n += layer_params(&l->children[c]);
    return n;
}

static void summarize(struct text *t, const struct mti_layer *layers, int n, int indent)
{
    static const char *const acts[] = {"none", "relu", "gelu", "gelu-tanh"};
    for (int i = 0; i < n; i++) {
        const struct mti_layer *l = &layers[i];
        text_add(t, "%*s%-26s %-10s %6d -> %-6d", indent, "", type_name(l->type), l->name, l->in,
                 l->out);
        switch (l->type) {
        case MTI_LAYER_LINEAR:
            text_add(t, " bias=%s", l->has_bias ? "yes" : "no");
            break;
        case MTI_LAYER_GELU:
            text_add(t, " approximate=%s", l->act == MTI_ACT_GELU_TANH ? "tanh" : "none");
            break;
        case MTI_LAYER_LAYERNORM:
            text_add(t, " eps=%g", (double)l->eps);
            break;
        case MTI_LAYER_MHA:
            text_add(t, " heads=%d", l->heads);
            break;
        case MTI_LAYER_ENCODER:
            text_add(t, " heads=%d ff=%d %s %s", l->heads, l->ff, acts[l->act],
                     l->norm_first ? "norm_first" : "post-norm");
            break;
        default:
            break;
        }
        size_t np = layer_params(l);
        if (np) text_add(t, "  params %zu", np);
        text_add(t, "\n");
        summarize(t, l->children, l->n_children, indent + 2);
    }
}

/* ---- entry ---------------------------------------------------------------------------------- */

mti_status mti__config_build(const char *json, struct mti_st_file *f, const char *what,
                             struct mti_model_desc *d)
{
    cJSON *root = cJSON_Parse(json);
    if (!root)
        return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: the model config is not valid JSON", what);
    mti_status st = MTI_OK;
    struct build b = {.what = what, .d = d};
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(root, "input");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    if (!cJSON_IsObject(input) || !cJSON_IsArray(layers) || cJSON_GetArraySize(layers) == 0) {
        st = mti__error(MTI_ERR_CORRUPT_INPUT,
                        "%s: the model config needs \"input\": {\"features\": N} or "
                        "{\"d_model\": N}, and a non-empty \"layers\" array",
                        what);
        goto done;
    }
    const cJSON *feat = cJSON_GetObjectItemCaseSensitive(input, "features");
    const cJSON *dm = cJSON_GetObjectItemCaseSensitive(input, "d_model");
    const cJSON *w = feat ? feat : dm;
    if ((feat && dm) || !cJSON_IsNumber(w) || floor(w->valuedouble) != w->valuedouble ||
        w->valuedouble < 1 || w->valuedouble > MTI_MODEL_MAX_DIM) {
        st = mti__error(MTI_ERR_CORRUPT_INPUT,
                        "%s: \"input\" needs exactly one of \"features\" or \"d_model\", an "
                        "integer in 1..%d",
                        what, MTI_MODEL_MAX_DIM);
        goto done;
    }
    d->sequence = dm != NULL;
    b.sequence = d->sequence;
    d->in_features = (int)w->valuedouble;
    d->max_width = d->in_features;
    int out_width;
    MTI_CHECK_GOTO(
        build_list(&b, layers, NULL, d->in_features, 0, &d->layers, &d->n_layers, &out_width), st,
        done);
    d->out_features = out_width;
    size_t cursor = 0;
    MTI_CHECK_GOTO(bind_layers(&b, f, d->layers, d->n_layers, &cursor), st, done);
    for (int k = 0; k < f->n_tensors; k++)
        if (!f->tensors[k].used) {
            st = mti__error(MTI_ERR_CORRUPT_INPUT,
                            "%s: extra tensor '%s' is not used by any layer of the config", what,
                            f->tensors[k].name);
            goto done;
        }
    d->blob_floats = cursor;
    d->blob = aligned_alloc(256, (cursor * sizeof(float) + 255) / 256 * 256 + 256);
    if (!d->blob) {
        st = mti__error(MTI_ERR_OUT_OF_MEMORY, "%s: %zu bytes of weights", what,
                        cursor * sizeof(float));
        goto done;
    }
    memset(d->blob, 0, cursor * sizeof(float));
    copy_layers(f, d->blob, d->layers, d->n_layers);
    struct text t = {0};
    text_add(&t, "input        [batch, %s%d] fp32\n", d->sequence ? "seq, " : "", d->in_features);
    text_add(&t, "output       [batch, %s%d]\n", d->sequence ? "seq, " : "", d->out_features);
    text_add(&t, "parameters   %zu (%zu bytes fp32)\n", d->n_params, d->n_params * 4);
    text_add(&t, "layers       %d (%d in all)\n", d->n_layers, d->total_layers);
    summarize(&t, d->layers, d->n_layers, 2);
    if (t.oom) {
        free(t.s);
        st = mti__error(MTI_ERR_OUT_OF_MEMORY, "summary");
        goto done;
    }
    d->summary = t.s;
done:
    cJSON_Delete(root);
    return st;
}
