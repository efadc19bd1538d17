/*
 * Model lifecycle: map the file read-only, parse and validate it (safetensors.c, config.c),
 * upload the weight blob once to every device of the runtime (and, for a BF16 model on a GPU,
 * a bf16 copy of it made on the host once), and free it all again. The
 * model is immutable after load except for its plan table (plan.c). The file is unmapped
 * before load returns: the host blob (used by the float64 reference) is a private copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model-internal.h"
#include "model/plan.h"
#include "runtime/ops.h"

void mti_model_params_default(mti_model_params *p)
{
    memset(p, 0, sizeof *p);
    p->precision = MTI_PRECISION_FP32;
    p->use_graphs = 1;
}

void mti__model_desc_free(struct mti_model_desc *d)
{
    if (!d) return;
    mti__layers_free(d->layers, d->n_layers);
    free(d->blob);
    free(d->summary);
    free(d);
}

mti_status mti__model_parse(const void *data, size_t size, const char *config_json,
                            const char *what, struct mti_model_desc **out)
{
    *out = NULL;
    struct mti_st_file f;
    MTI_CHECK(mti__st_parse(data, size, what, &f));
    mti_status st = MTI_OK;
    struct mti_model_desc *d = calloc(1, sizeof *d);
    if (!d) {
        st = mti__error(MTI_ERR_OUT_OF_MEMORY, "model");
        goto done;
    }
    const char *json = config_json ? config_json : f.config;
    if (!json) {
        st = mti__error(MTI_ERR_NOT_FOUND,
                        "%s: no model config: the file has no \"mtinfer.config\" metadata and no "
                        "config file was given",
                        what);
        goto done;
    }
    MTI_CHECK_GOTO(mti__config_build(json, &f, what, d), st, done);
    *out = d;
    d = NULL;
done:
    mti__model_desc_free(d);
    mti__st_free(&f);
    return st;
}

/* Reads a whole small file (the config) into a NUL-terminated string. */
static mti_status read_text(const char *path, char **out)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return mti__error(errno == ENOENT ? MTI_ERR_NOT_FOUND : MTI_ERR_IO, "config '%s': %s", path,
                          strerror(errno));
    mti_status st = MTI_OK;
    char *buf = NULL;
    if (fseek(fp, 0, SEEK_END) != 0) {
        st = mti__error(MTI_ERR_IO, "config '%s': cannot seek", path);
        goto done;
    }
    long n = ftell(fp);
    if (n < 0 || n > (64L << 20)) {
        st = mti__error(MTI_ERR_CORRUPT_INPUT, "config '%s': size %ld is out of range", path, n);
        goto done;
    }
    rewind(fp);
    buf = malloc((size_t)n + 1);
    if (!buf) {
        st = mti__error(MTI_ERR_OUT_OF_MEMORY, "config '%s'", path);
        goto done;
    }
    if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        st = mti__error(MTI_ERR_IO, "config '%s': read failed", path);
        free(buf);
        buf = NULL;
        goto done;
    }
    buf[n] = '\0';
    *out = buf;
done:
    fclose(fp);
    return st;
}

static mti_status parse_empty(const char *path)
{
    return mti__error(MTI_ERR_CORRUPT_INPUT,
                      "%s: truncated: 0 bytes, shorter than the 8-byte safetensors header length",
                      path);
}

static mti_status parse_file(const char *path, const char *config_path, struct mti_model_desc **out)
{
    *out = NULL;
    char *config = NULL;
    if (config_path) MTI_CHECK(read_text(config_path, &config));
    mti_status st = MTI_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = mti__error(errno == ENOENT ? MTI_ERR_NOT_FOUND : MTI_ERR_IO, "model '%s': %s", path,
                        strerror(errno));
        goto done;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = mti__error(MTI_ERR_IO, "model '%s': not a regular file", path);
        goto done_fd;
    }
    size_t size = (size_t)sb.st_size;
    if (size == 0) {
        st = parse_empty(path);
        goto done_fd;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        st = mti__error(MTI_ERR_IO, "model '%s': mmap: %s", path, strerror(errno));
        goto done_fd;
    }
    st = mti__model_parse(map, size, config, path, out);
    munmap(map, size);
done_fd:
    close(fd);
done:
    free(config);
    return st;
}

/* f rounded to bf16 (nearest, ties to even), as a bit pattern; NaN stays a (quiet) NaN. */
static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

mti_status mti_model_load(mti_runtime_t rt, const char *path, const mti_model_params *params,
                          mti_model_t *out)
{
    MTI_CHECK_ARG(out != NULL, "out is NULL");
    *out = NULL;
    MTI_CHECK_ARG(rt != NULL, "runtime is NULL");
    MTI_CHECK_ARG(path != NULL, "path is NULL");
    MTI_CHECK(mti__runtime_check(rt));
    mti_model_params defaults;
    if (!params) {
        mti_model_params_default(&defaults);
        params = &defaults;
    }
    MTI_CHECK_ARG(params->precision == MTI_PRECISION_FP32 ||
                      params->precision == MTI_PRECISION_TF32 ||
                      params->precision == MTI_PRECISION_BF16,
                  "precision %d is not a mti_precision", (int)params->precision);

    struct mti_model *m = calloc(1, sizeof *m);
    if (!m) return mti__error(MTI_ERR_OUT_OF_MEMORY, "model");
    m->rt = rt;
    m->use_graphs = params->use_graphs != 0;
    /* TF32 is a permission for the GPU's GEMMs, not a promise of TF32 rounding: the CPU
     * backend has no TF32 and computes such a model in fp32 (more accurate, never less), so
     * one configuration loads on either backend, as PyTorch's allow_tf32 does. */
    m->gemm_flags = params->precision == MTI_PRECISION_TF32 ? MTI_SUBMIT_TF32 : 0;
    /* BF16 likewise: on a GPU the linears read bf16 weight copies made here, once, and run
     * with bf16 inputs and fp32 accumulation (plan.c); the CPU has no bf16 GEMM and computes
     * the model in fp32 (bit-identical to an fp32 model). */
    bool bf16 = params->precision == MTI_PRECISION_BF16 && rt->backend != MTI_BACKEND_CPU;
    uint16_t *host16 = NULL;
    mti_status st = MTI_OK;
    MTI_CHECK_GOTO(parse_file(path, params->config_path, &m->desc), st, fail);
    MTI_CHECK_GOTO(mti__plans_init(m), st, fail);
    m->n_devices = rt->n_devices;
    m->weights = calloc((size_t)rt->n_devices, sizeof *m->weights);
    if (!m->weights) {
        st = mti__error(MTI_ERR_OUT_OF_MEMORY, "model weights table");
        goto fail;
    }
    size_t bytes = m->desc->blob_floats * sizeof(float);
    for (int i = 0; i < rt->n_devices && bytes > 0; i++) {
        void *p = NULL;
        MTI_CHECK_GOTO(mti__op_device_alloc(rt, i, bytes, &p), st, fail);
        m->weights[i] = p;
        MTI_CHECK_GOTO(mti__op_upload(rt, i, p, m->desc->blob, bytes), st, fail);
    }
    if (bf16) {
        m->weights16 = calloc((size_t)rt->n_devices, sizeof *m->weights16);
        size_t bytes16 = m->desc->blob_floats * sizeof(uint16_t);
        host16 = malloc(bytes16 ? bytes16 : 1);
        if (!m->weights16 || !host16) {
            st = mti__error(MTI_ERR_OUT_OF_MEMORY, "model bf16 weights");
            goto fail;
        }
        for (size_t j = 0; j < m->desc->blob_floats; j++)
            host16[j] = f32_to_bf16(m->desc->blob[j]);
        for (int i = 0; i < rt->n_devices && bytes16 > 0; i++) {
            void *p = NULL;
            MTI_CHECK_GOTO(mti__op_device_alloc(rt, i, bytes16, &p), st, fail);
            m->weights16[i] = p;
            MTI_CHECK_GOTO(mti__op_upload(rt, i, p, host16, bytes16), st, fail);
        }
        free(host16);
    }
    *out = m;
    return MTI_OK;
fail:
    free(host16);
    mti_model_destroy(m);
    return st;
}

void mti_model_destroy(mti_model_t m)
{
    if (!m) return;
    mti__plans_destroy(m);
    if (m->weights) {
        for (int i = 0; i < m->n_devices; i++)
            mti__op_device_free(m->rt, i, m->weights[i]);
        free(m->weights);
    }
    if (m->weights16) {
        for (int i = 0; i < m->n_devices; i++)
            mti__op_device_free(m->rt, i, m->weights16[i]);
        free(m->weights16);
    }
    mti__model_desc_free(m->desc);
    free(m);
}

mti_status mti_model_get_info(mti_model_t m, mti_model_info *out)
{
    MTI_CHECK_ARG(m != NULL && out != NULL, "model and out must not be NULL");
    const struct mti_model_desc *d = m->desc;
    out->sequence = d->sequence;
    out->input_features = d->in_features;
    out->output_features = d->out_features;
    out->n_layers = d->n_layers;
    out->n_params = d->n_params;
    out->weight_bytes = d->n_params * sizeof(float);
    return MTI_OK;
}

const char *mti_model_summary(mti_model_t m)
{
    return m && m->desc->summary ? m->desc->summary : "";
}

mti_status mti__model_check_shape(const struct mti_model_desc *d, int batch, int seq, size_t *rows)
{
    MTI_CHECK_ARG(batch >= 1 && batch <= MTI_MODEL_MAX_ROWS, "batch %d is out of range 1..%d",
                  batch, MTI_MODEL_MAX_ROWS);
    if (d->sequence) {
        MTI_CHECK_ARG(seq >= 1 && seq <= MTI_MODEL_MAX_SEQ,
                      "seq %d is out of range 1..%d for a sequence model", seq, MTI_MODEL_MAX_SEQ);
    } else {
        MTI_CHECK_ARG(seq == 0 || seq == 1,
                      "seq %d given for a model with [batch, features] input (use 0)", seq);
        seq = 1;
    }
    size_t r = (size_t)batch * (size_t)seq;
    MTI_CHECK_ARG(r <= MTI_MODEL_MAX_ROWS, "batch*seq = %zu is over the limit %d", r,
                  MTI_MODEL_MAX_ROWS);
    *rows = r;
    return MTI_OK;
}

static mti_status check_counts(const struct mti_model_desc *d, size_t rows, size_t in_count,
                               size_t out_count)
{
    size_t want_in = rows * (size_t)d->in_features, want_out = rows * (size_t)d->out_features;
    MTI_CHECK_ARG(in_count == want_in,
                  "wrong input size: %zu floats given, the model needs %zu (%zu rows x %d)",
                  in_count, want_in, rows, d->in_features);
    MTI_CHECK_ARG(out_count == want_out,
                  "wrong output size: %zu floats given, the model produces %zu (%zu rows x %d)",
                  out_count, want_out, rows, d->out_features);
    return MTI_OK;
}

mti_status mti_model_reference(mti_model_t m, int batch, int seq, const float *input,
                               size_t input_count, double *output, size_t output_count)
{
    MTI_CHECK_ARG(m != NULL, "model is NULL");
    MTI_CHECK_ARG(input != NULL && output != NULL, "input and output must not be NULL");
    size_t rows;
    MTI_CHECK(mti__model_check_shape(m->desc, batch, seq, &rows));
    MTI_CHECK(check_counts(m->desc, rows, input_count, output_count));
    return mti__reference_forward(m->desc, batch, m->desc->sequence ? seq : 1, input, output);
}

mti_status mti_model_infer(mti_model_t m, int batch, int seq, const float *input,
                           size_t input_count, float *output, size_t output_count)
{
    MTI_CHECK_ARG(m != NULL, "model is NULL");
    MTI_CHECK_ARG(input != NULL && output != NULL, "input and output must not be NULL");
    size_t rows;
    MTI_CHECK(mti__model_check_shape(m->desc, batch, seq, &rows));
    MTI_CHECK(check_counts(m->desc, rows, input_count, output_count));
    return mti__plan_infer(m, batch, m->desc->sequence ? seq : 1, input, output);
}

mti_status mti_model_infer_async(mti_model_t m, mti_stream_t stream, int batch, int seq,
                                 const float *input, float *output)
{
    MTI_CHECK_ARG(m != NULL && stream != NULL, "model and stream must not be NULL");
    MTI_CHECK_ARG(input != NULL && output != NULL, "input and output must not be NULL");
    MTI_CHECK_ARG(stream->dev->rt == m->rt, "stream and model belong to different runtimes");
    size_t rows;
    MTI_CHECK(mti__model_check_shape(m->desc, batch, seq, &rows));
    return mti__plan_infer_async(m, stream, batch, m->desc->sequence ? seq : 1, input, output, 0);
}

void mti_error_stats_compute(const float *out, const double *ref, size_t count,
                             mti_error_stats *stats)
{
    double max_err = 0, max_ref = 0, err2 = 0, ref2 = 0;
    size_t nonfinite = 0;
    for (size_t i = 0; i < count; i++) {
        double r = ref[i], o = out[i];
        if (!isfinite(r))
            continue; /* NaN/Inf propagated from the input: compared by nonfinite below */
        if (!isfinite(o)) {
            nonfinite++;
            continue;
        }
        double e = fabs(o - r);
        max_err = e > max_err ? e : max_err;
        max_ref = fabs(r) > max_ref ? fabs(r) : max_ref;
        err2 += e * e;
        ref2 += r * r;
    }
    stats->max_abs_rel = max_ref > 0 ? max_err / max_ref : max_err;
    stats->rel_l2 = ref2 > 0 ? sqrt(err2 / ref2) : sqrt(err2);
    stats->nonfinite = nonfinite;
}
