/*
 * `mtinfer model create mlp|transformer ...` and `mtinfer model info FILE`. Create writes a
 * .safetensors file with PyTorch's tensor names (nn.Sequential for the MLP, nn.TransformerEncoder
 * for the transformer) and the architecture in __metadata__["mtinfer.config"], with
 * deterministic random weights (splitmix64, uniform in +-1/sqrt(fan_in) like PyTorch's default
 * init, so activations stay sane). Only the public API and cJSON are used.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mtinfer.h"
#include "tools/cli.h"

#define MAX_TENSORS 1024

struct tensor {
    char name[128];
    int ndim;
    int64_t shape[2];
    float *data;
};

struct writer {
    struct tensor t[MAX_TENSORS];
    int n;
    uint64_t rng;
};

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float uniform(uint64_t *s)
{
    return (float)((splitmix(s) >> 40) * (1.0 / (1ull << 24)) * 2.0 - 1.0);
}

/* Adds a tensor filled with offset + scale * U(-1, 1). */
static int add_tensor(struct writer *w, const char *name, int ndim, int64_t s0, int64_t s1,
                      float offset, float scale)
{
    if (w->n == MAX_TENSORS) return -1;
    struct tensor *t = &w->t[w->n];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = s0;
    t->shape[1] = s1;
    size_t count = (size_t)s0 * (size_t)(ndim == 2 ? s1 : 1);
    t->data = malloc(sizeof(float) * (count ? count : 1));
    if (!t->data) return -1;
    for (size_t i = 0; i < count; i++)
        t->data[i] = offset + scale * uniform(&w->rng);
    w->n++;
    return 0;
}

static int add_linear(struct writer *w, const char *prefix, int in, int out)
{
    char n[128];
    float bound = 1.0f / sqrtf((float)in);
    snprintf(n, sizeof n, "%s.weight", prefix);
    if (add_tensor(w, n, 2, out, in, 0.0f, bound)) return -1;
    snprintf(n, sizeof n, "%s.bias", prefix);
    return add_tensor(w, n, 1, out, 0, 0.0f, bound);
}

static void writer_free(struct writer *w)
{
    for (int i = 0; i < w->n; i++)
        free(w->t[i].data);
}

static size_t tensor_bytes(const struct tensor *t)
{
    return sizeof(float) * (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1);
}

/* Writes the safetensors file: header (padded with spaces to 8 bytes), then the data. */
static int write_file(const struct writer *w, const char *config, const char *path)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    cJSON_AddStringToObject(meta, "mtinfer.config", config);
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const struct tensor *t = &w->t[i];
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(o, "dtype", "F32");
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += tensor_bytes(t);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *header = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!header) return -1;
    size_t hlen = strlen(header), padded = (hlen + 7) / 8 * 8;
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        perror(path);
        free(header);
        return -1;
    }
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len, 1, 8, fp) == 8 && fwrite(header, 1, hlen, fp) == hlen;
    for (size_t i = hlen; i < padded && ok; i++)
        ok = fputc(' ', fp) != EOF;
    for (int i = 0; i < w->n && ok; i++)
        ok = fwrite(w->t[i].data, 1, tensor_bytes(&w->t[i]), fp) == tensor_bytes(&w->t[i]);
    free(header);
    if (fclose(fp) != 0 || !ok) {
        fprintf(stderr, "mtinfer: writing %s failed\n", path);
        return -1;
    }
    return 0;
}

static void create_usage(FILE *out)
{
    fprintf(out,
            "usage: mtinfer model create mlp --dims 512,1024,1024,512 [--act relu|gelu|gelu-tanh]\n"
            "                                [--seed N] -o FILE\n"
            "       mtinfer model create transformer --d-model 256 --heads 4 --ff 1024 --layers 2\n"
            "                                [--norm-first] [--act relu|gelu] [--seed N] -o FILE\n"
            "\n"
            "Writes a .safetensors model with deterministic random weights (uniform in\n"
            "+-1/sqrt(fan_in), as PyTorch initialises nn.Linear) and PyTorch's tensor names:\n"
            "nn.Sequential (0.weight, 0.bias, 2.weight, ...) for the MLP, with the activation\n"
            "between the Linear layers; nn.TransformerEncoder (layers.0.self_attn.in_proj_weight,\n"
            "layers.0.linear1.weight, layers.0.norm1.weight, ...) for the transformer. The\n"
            "architecture goes into the file's metadata (\"mtinfer.config\").\n");
}

static int parse_dims(const char *s, int *dims, int max)
{
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > (1 << 20) || n == max) return -1;
        dims[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static int int_arg(const char *name, const char *v, int min, int max, int *out)
{
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < min || x > max) {
        fprintf(stderr, "mtinfer: %s needs an integer in %d..%d\n", name, min, max);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int cmd_create(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        create_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *kind = argv[1], *out = NULL, *act = "relu";
    int dims[64], n_dims = 0, d_model = 256, heads = 4, ff = 1024, layers = 2, norm_first = 0;
    int seed = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            create_usage(stdout);
            return 0;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            bad = !v;
            out = v;
            i++;
        } else if (strcmp(a, "--dims") == 0) {
            bad = !v || (n_dims = parse_dims(v, dims, 64)) < 2;
            i++;
        } else if (strcmp(a, "--act") == 0) {
            bad = !v;
            act = v;
            i++;
        } else if (strcmp(a, "--seed") == 0) {
            bad = int_arg(a, v, 0, 1 << 30, &seed) != 0;
            i++;
        } else if (strcmp(a, "--d-model") == 0) {
            bad = int_arg(a, v, 1, 1 << 16, &d_model) != 0;
            i++;
        } else if (strcmp(a, "--heads") == 0) {
            bad = int_arg(a, v, 1, 1 << 10, &heads) != 0;
            i++;
        } else if (strcmp(a, "--ff") == 0) {
            bad = int_arg(a, v, 1, 1 << 18, &ff) != 0;
            i++;
        } else if (strcmp(a, "--layers") == 0) {
            bad = int_arg(a, v, 1, 64, &layers) != 0;
            i++;
        } else if (strcmp(a, "--norm-first") == 0) {
            norm_first = 1;
        } else {
            fprintf(stderr, "mtinfer model create: unknown option '%s'\n", a);
            bad = 1;
        }
        if (bad) {
            create_usage(stderr);
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "mtinfer model create: -o FILE is required\n");
        return 2;
    }
    struct writer *w = calloc(1, sizeof *w);
    if (!w) return 2;
    w->rng = (uint64_t)seed * 0x2545F4914F6CDD1Dull + 1;
    cJSON *cfg = cJSON_CreateObject();
    cJSON *input = cJSON_AddObjectToObject(cfg, "input");
    cJSON *ls = cJSON_AddArrayToObject(cfg, "layers");
    int rc = 2;
    if (strcmp(kind, "mlp") == 0) {
        mti_activation a;
        if (strcmp(act, "relu") == 0)
            a = MTI_ACT_RELU;
        else if (strcmp(act, "gelu") == 0)
            a = MTI_ACT_GELU;
        else if (strcmp(act, "gelu-tanh") == 0)
            a = MTI_ACT_GELU_TANH;
        else {
            fprintf(stderr, "mtinfer model create: --act must be relu, gelu or gelu-tanh\n");
            goto done;
        }
        if (n_dims < 2) {
            fprintf(stderr, "mtinfer model create mlp: --dims needs at least two sizes\n");
            goto done;
        }
        cJSON_AddNumberToObject(input, "features", dims[0]);
        int index = 0;
        for (int i = 0; i + 1 < n_dims; i++) {
            char name[32];
            snprintf(name, sizeof name, "%d", index++);
            cJSON *l = cJSON_CreateObject();
            cJSON_AddStringToObject(l, "type", "linear");
            cJSON_AddNumberToObject(l, "in", dims[i]);
            cJSON_AddNumberToObject(l, "out", dims[i + 1]);
            cJSON_AddItemToArray(ls, l);
            if (add_linear(w, name, dims[i], dims[i + 1])) goto oom;
            if (i + 2 < n_dims) {
                index++;
                cJSON *al = cJSON_CreateObject();
                cJSON_AddStringToObject(al, "type", a == MTI_ACT_RELU ? "relu" : "gelu");
                if (a == MTI_ACT_GELU_TANH) cJSON_AddStringToObject(al, "approximate", "tanh");
                cJSON_AddItemToArray(ls, al);
            }
        }
    } else if (strcmp(kind, "transformer") == 0) {
        if (strcmp(act, "relu") != 0 && strcmp(act, "gelu") != 0) {
            fprintf(stderr, "mtinfer model create transformer: --act must be relu or gelu\n");
            goto done;
        }
        if (d_model % heads != 0) {
            fprintf(stderr, "mtinfer model create: --d-model %d is not divisible by --heads %d\n",
                    d_model, heads);
            goto done;
        }
        cJSON_AddNumberToObject(input, "d_model", d_model);
        for (int i = 0; i < layers; i++) {
            char p[64], n[128];
            snprintf(p, sizeof p, "layers.%d", i);
            cJSON *l = cJSON_CreateObject();
            cJSON_AddStringToObject(l, "type", "transformer_encoder_layer");
            cJSON_AddStringToObject(l, "name", p);
            cJSON_AddNumberToObject(l, "d_model", d_model);
            cJSON_AddNumberToObject(l, "heads", heads);
            cJSON_AddNumberToObject(l, "ff", ff);
            cJSON_AddBoolToObject(l, "norm_first", norm_first);
            cJSON_AddStringToObject(l, "activation", act);
            cJSON_AddItemToArray(ls, l);
            float bd = 1.0f / sqrtf((float)d_model);
            snprintf(n, sizeof n, "%s.self_attn.in_proj_weight", p);
            if (add_tensor(w, n, 2, 3 * d_model, d_model, 0.0f, bd)) goto oom;
            snprintf(n, sizeof n, "%s.self_attn.in_proj_bias", p);
            if (add_tensor(w, n, 1, 3 * d_model, 0, 0.0f, 0.1f)) goto oom;
            snprintf(n, sizeof n, "%s.self_attn.out_proj", p);
            if (add_linear(w, n, d_model, d_model)) goto oom;
            snprintf(n, sizeof n, "%s.linear1", p);
            if (add_linear(w, n, d_model, ff)) goto oom;
            snprintf(n, sizeof n, "%s.linear2", p);
            if (add_linear(w, n, ff, d_model)) goto oom;
            for (int k = 1; k <= 2; k++) {
                snprintf(n, sizeof n, "%s.norm%d.weight", p, k);
                if (add_tensor(w, n, 1, d_model, 0, 1.0f, 0.1f)) goto oom;
                snprintf(n, sizeof n, "%s.norm%d.bias", p, k);
                if (add_tensor(w, n, 1, d_model, 0, 0.0f, 0.1f)) goto oom;
            }
        }
    } else {
        fprintf(stderr, "mtinfer model create: unknown kind '%s' (mlp or transformer)\n", kind);
        goto done;
    }
    char *config = cJSON_PrintUnformatted(cfg);
    if (!config) goto oom;
    if (write_file(w, config, out) == 0) {
        printf("wrote %s (%d tensors)\n", out, w->n);
        rc = 0;
    }
    free(config);
    goto done;
oom:
    fprintf(stderr, "mtinfer model create: out of memory or too many tensors\n");
done:
    cJSON_Delete(cfg);
    writer_free(w);
    free(w);
    return rc;
}

static int cmd_info(int argc, char **argv)
{
    const char *file = NULL, *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: mtinfer model info FILE [--config JSON]\n\nLoads FILE on the CPU and "
                   "prints its layers, shapes, parameter count and bytes.\n");
            return 0;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (!file && argv[i][0] != '-') {
            file = argv[i];
        } else {
            fprintf(stderr, "mtinfer model info: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!file) {
        fprintf(stderr, "usage: mtinfer model info FILE [--config JSON]\n");
        return 2;
    }
    mti_runtime_params rp;
    mti_runtime_params_default(&rp);
    rp.backend = MTI_BACKEND_CPU;
    rp.pool_size = 1;
    mti_runtime_t rt;
    if (mti_runtime_create(&rp, &rt) != MTI_OK) {
        fprintf(stderr, "mtinfer: %s\n", mti_last_error_message());
        return 2;
    }
    mti_model_params mp;
    mti_model_params_default(&mp);
    mp.config_path = config;
    mti_model_t m;
    if (mti_model_load(rt, file, &mp, &m) != MTI_OK) {
        fprintf(stderr, "mtinfer: %s\n", mti_last_error_message());
        mti_runtime_destroy(rt);
        return 2;
    }
    printf("model        %s\n%s", file, mti_model_summary(m));
    mti_model_destroy(m);
    mti_runtime_destroy(rt);
    return 0;
}

int mti_cli_model(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *out = argc < 2 ? stderr : stdout;
        fprintf(out, "usage: mtinfer model create mlp|transformer ... -o FILE   (--help for more)\n"
                     "       mtinfer model info FILE [--config JSON]\n");
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "create") == 0) return cmd_create(argc - 1, argv + 1);
    if (strcmp(argv[1], "info") == 0) return cmd_info(argc - 1, argv + 1);
    fprintf(stderr, "mtinfer model: unknown subcommand '%s' (create, info)\n", argv[1]);
    return 2;
}
