/*
 * safetensors parsing: 8-byte little-endian header length N, N bytes of JSON, then the data.
 * The header maps tensor names to {dtype, shape, data_offsets [begin, end)} relative to the
 * data section, plus an optional "__metadata__" object of strings. Everything is checked
 * before use: lengths against the file size, JSON shape and types, dtype names, shape sizes
 * (overflow-checked) against the byte ranges, ranges inside the data and pairwise disjoint.
 * Every message names the file and the offending tensor. No locks; pure function of the image.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model/model-internal.h"

static int dtype_size(const char *dtype)
{
    static const struct {
        const char *name;
        int size;
    } k[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2},    {"I64", 8},
             {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},      {"BOOL", 1},
             {"U16", 2}, {"U32", 4}, {"U64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strcmp(dtype, k[i].name) == 0) return k[i].size;
    return 0;
}

void mti__st_free(struct mti_st_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    free(f->config);
    memset(f, 0, sizeof *f);
}

/* An exact non-negative integer that fits in 2^53 (JSON numbers are doubles in cJSON). */
static bool json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || floor(d) != d) return false;
    *out = (uint64_t)d;
    return true;
}

static mti_status parse_tensor(const cJSON *item, const char *what, uint64_t data_size,
                               struct mti_st_tensor *t)
{
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: tensor '%s' is not a JSON object", what,
                          name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
        return mti__error(MTI_ERR_CORRUPT_INPUT,
                          "%s: tensor '%s' needs \"dtype\" (string), \"shape\" and "
                          "\"data_offsets\" (arrays)",
                          what, name);
    int esize = dtype_size(dtype->valuestring);
    if (esize == 0)
        return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: tensor '%s' has unknown dtype '%.32s'", what,
                          name, dtype->valuestring);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype->valuestring);
    t->dtype_f32 = strcmp(dtype->valuestring, "F32") == 0;
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > 8)
        return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: tensor '%s' has %d dimensions (at most 8)",
                          what, name, ndim);
    t->ndim = ndim;
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return mti__error(MTI_ERR_CORRUPT_INPUT,
                              "%s: tensor '%s' has a shape entry that is not a non-negative "
                              "integer",
                              what, name);
        if (v != 0 && numel > UINT64_MAX / v / (uint64_t)esize)
            return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: tensor '%s' shape overflows", what, name);
        numel *= v;
        t->shape[i] = (int64_t)v;
    }
    uint64_t begin, end;
    if (cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &begin) ||
        !json_uint(offs->child->next, &end))
        return mti__error(MTI_ERR_CORRUPT_INPUT,
                          "%s: tensor '%s' data_offsets must be two non-negative integers", what,
                          name);
    if (begin > end || end > data_size)
        return mti__error(MTI_ERR_CORRUPT_INPUT,
                          "%s: tensor '%s' data_offsets [%llu, %llu) lie outside the data "
                          "section of %llu bytes",
                          what, name, (unsigned long long)begin, (unsigned long long)end,
                          (unsigned long long)data_size);
    if (end - begin != numel * (uint64_t)esize)
        return mti__error(MTI_ERR_CORRUPT_INPUT,
                          "%s: tensor '%s' spans %llu bytes but its shape and dtype %s need "
                          "%llu",
                          what, name, (unsigned long long)(end - begin), t->dtype,
                          (unsigned long long)(numel * (uint64_t)esize));
    t->begin = begin;
    t->end = end;
    return MTI_OK;
}

static int cmp_begin(const void *a, const void *b)
{
    const struct mti_st_tensor *x = a, *y = b;
    return x->begin < y->begin   ? -1
           : x->begin > y->begin ? 1
                                 : (x->end > y->end) - (x->end < y->end);
}

static mti_status parse_metadata(const cJSON *meta, const char *what, struct mti_st_file *f)
{
    if (!cJSON_IsObject(meta))
        return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: __metadata__ is not a JSON object", what);
    for (const cJSON *e = meta->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: __metadata__ entry '%s' is not a string",
                              what, e->string);
        if (strcmp(e->string, "mtinfer.config") == 0 && !f->config) {
            f->config = strdup(e->valuestring);
            if (!f->config) return mti__error(MTI_ERR_OUT_OF_MEMORY, "metadata");
        }
    }
    return MTI_OK;
}

mti_status mti__st_parse(const void *image, size_t size, const char *what, struct mti_st_file *f)
{
    memset(f, 0, sizeof *f);
    const unsigned char *p = image;
    if (size < 8)
        return mti__error(MTI_ERR_CORRUPT_INPUT,
                          "%s: truncated: %zu bytes, shorter than the 8-byte safetensors header "
                          "length",
                          what, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | p[i];
    if (n > size - 8)
        return mti__error(MTI_ERR_CORRUPT_INPUT,
                          "%s: not a safetensors file or truncated: header length %llu is larger "
                          "than the %zu bytes after it",
                          what, (unsigned long long)n, size - 8);
    if (n > MTI_MODEL_MAX_HEADER)
        return mti__error(MTI_ERR_CORRUPT_INPUT, "%s: header of %llu bytes is over the %llu limit",
                          what, (unsigned long long)n, (unsigned long long)MTI_MODEL_MAX_HEADER);
    if (n < 2 || p[8] != '{')
        return mti__error(MTI_ERR_CORRUPT_INPUT,
                          "%s: not a safetensors file: the header does not start with '{'", what);
    const char *end_ptr = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)p + 8, (size_t)n, &end_ptr, 0);
    if (!root) {
        const char *err = cJSON_GetErrorPtr();
        long at = err ? (long)(err - (const char *)p - 8) : -1;
        return mti__error(MTI_ERR_CORRUPT_INPUT,
                          "%s: the safetensors header is not valid JSON (error near byte %ld of "
                          "%llu)",
                          what, at, (unsigned long long)n);
    }
    mti_status st = MTI_OK;
    if (!cJSON_IsObject(root)) {
        st = mti__error(MTI_ERR_CORRUPT_INPUT, "%s: the safetensors header is not a JSON object",
                        what);
        goto fail;
    }
    f->data = p + 8 + n;
    f->data_size = size - 8 - n;
    int count = 0;
    for (const cJSON *e = root->child; e; e = e->next)
        count++;
    f->tensors = calloc((size_t)(count ? count : 1), sizeof *f->tensors);
    if (!f->tensors) {
        st = mti__error(MTI_ERR_OUT_OF_MEMORY, "tensor table of %d entries", count);
        goto fail;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            MTI_CHECK_GOTO(parse_metadata(e, what, f), st, fail);
            continue;
        }
        for (int i = 0; i < f->n_tensors; i++)
            if (strcmp(f->tensors[i].name, e->string) == 0) {
                st = mti__error(MTI_ERR_CORRUPT_INPUT, "%s: tensor '%s' appears twice", what,
                                e->string);
                goto fail;
            }
        struct mti_st_tensor *t = &f->tensors[f->n_tensors];
        MTI_CHECK_GOTO(parse_tensor(e, what, f->data_size, t), st, fail);
        if (!(t->name = strdup(e->string))) {
            st = mti__error(MTI_ERR_OUT_OF_MEMORY, "tensor name");
            goto fail;
        }
        f->n_tensors++;
    }
    /* Disjoint ranges: sorted by begin, each starts at or after the previous end (tensors of
     * zero bytes overlap nothing). */
    struct mti_st_tensor *sorted =
        malloc(sizeof *sorted * (size_t)(f->n_tensors ? f->n_tensors : 1));
    if (!sorted) {
        st = mti__error(MTI_ERR_OUT_OF_MEMORY, "tensor table");
        goto fail;
    }
    memcpy(sorted, f->tensors, sizeof *sorted * (size_t)f->n_tensors);
    qsort(sorted, (size_t)f->n_tensors, sizeof *sorted, cmp_begin);
    const struct mti_st_tensor *prev = NULL;
    for (int i = 0; i < f->n_tensors; i++) {
        if (sorted[i].begin == sorted[i].end) continue;
        if (prev && sorted[i].begin < prev->end) {
            st = mti__error(MTI_ERR_CORRUPT_INPUT,
                            "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", what,
                            prev->name, (unsigned long long)prev->begin,
                            (unsigned long long)prev->end, sorted[i].name,
                            (unsigned long long)sorted[i].begin, (unsigned long long)sorted[i].end);
            free(sorted);
            goto fail;
        }
        prev = &sorted[i];
    }
    free(sorted);
    cJSON_Delete(root);
    return MTI_OK;
fail:
    cJSON_Delete(root);
    mti__st_free(f);
    return st;
}
