/*
 * `mtinfer run FILE ...`: loads a model, runs one forward with mti_model_infer and prints a
 * summary; --check compares with the float64 reference (mti_model_reference) and exits 1 when
 * the error is out of tolerance or an output is NaN/Inf. Public API only.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mtinfer.h"
#include "tools/cli.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: mtinfer run FILE [--config JSON] [--backend auto|cpu|cuda] [--batch N]\n"
        "                   [--seq L] [--input FILE | --random SEED] [--output FILE]\n"
        "                   [--precision fp32|tf32|bf16] [--check] [--tol T] [--no-graphs]\n"
        "                   [--repeat N]\n"
        "\n"
        "Runs one forward pass of the model in FILE (.safetensors with its config in the\n"
        "metadata, or --config JSON) and prints a summary of the output.\n"
        "\n"
        "  --backend B    the backend (default: MTI_BACKEND, else auto)\n"
        "  --batch N      batch size (default 1)\n"
        "  --seq L        sequence length, for models with [batch, seq, d_model] input (default "
        "16)\n"
        "  --input FILE   raw little-endian float32 input of exactly batch*[seq*]features values\n"
        "  --random SEED  uniform random input in [-1, 1) from SEED (default: --random 1)\n"
        "  --output FILE  write the output as raw float32\n"
        "  --precision P  fp32 (default), tf32 (CUDA GEMMs on TF32 tensor cores) or bf16 (CUDA\n"
        "                 GEMMs on bf16 weights and inputs, fp32 accumulation); on the CPU both\n"
        "                 compute in fp32\n"
        "  --check        compare with the float64 CPU reference; exit 1 when ||out-ref||/||ref||\n"
        "                 or max|out-ref|/max|ref| exceeds the tolerance, or an output is NaN/Inf\n"
        "  --tol T        tolerance of --check (default by precision: fp32 1e-4, tf32 2e-3,\n"
        "                 bf16 1e-2)\n"
        "  --no-graphs    do not capture CUDA graphs\n"
        "  --repeat N     run the forward N times (the last output is reported)\n"
        "\n"
        "exit status: 0 ok, 1 check failed, 2 usage or runtime error\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int parse_int(const char *name, const char *v, long min, long max, long *out)
{
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < min || x > max) {
        fprintf(stderr, "mtinfer run: %s needs an integer in %ld..%ld\n", name, min, max);
        return -1;
    }
    *out = x;
    return 0;
}

static int read_input(const char *path, float *x, size_t count)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        perror(path);
        return -1;
    }
    size_t got = fread(x, sizeof(float), count, fp);
    int extra = fgetc(fp) != EOF;
    fclose(fp);
    if (got != count || extra) {
        fprintf(stderr,
                "mtinfer run: --input %s: wrong input size: the model needs exactly %zu float32 "
                "values (%zu bytes)\n",
                path, count, count * sizeof(float));
        return -1;
    }
    return 0;
}

int mti_cli_run(int argc, char **argv)
{
    const char *file = NULL, *config = NULL, *input = NULL, *output = NULL;
    long batch = 1, seq = 16, seed = 1, repeat = 1;
    int check = 0, graphs = 1;
    double tol = 0; /* 0: the precision's default */
    mti_precision precision = MTI_PRECISION_FP32;
    mti_runtime_params rp;
    mti_runtime_params_default(&rp);
    if (mti_runtime_params_from_env(&rp) != MTI_OK) {
        fprintf(stderr, "mtinfer: %s\n", mti_last_error_message());
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--config") == 0) {
            bad = !v, config = v, i++;
        } else if (strcmp(a, "--backend") == 0) {
            i++;
            if (v && strcmp(v, "cpu") == 0)
                rp.backend = MTI_BACKEND_CPU;
            else if (v && strcmp(v, "cuda") == 0)
                rp.backend = MTI_BACKEND_CUDA;
            else if (v && strcmp(v, "auto") == 0)
                rp.backend = MTI_BACKEND_AUTO;
            else {
                fprintf(stderr, "mtinfer run: --backend must be auto, cpu or cuda\n");
                bad = 1;
            }
        } else if (strcmp(a, "--precision") == 0) {
            i++;
            if (v && strcmp(v, "fp32") == 0)
                precision = MTI_PRECISION_FP32;
            else if (v && strcmp(v, "tf32") == 0)
                precision = MTI_PRECISION_TF32;
            else if (v && strcmp(v, "bf16") == 0)
                precision = MTI_PRECISION_BF16;
            else {
                fprintf(stderr, "mtinfer run: --precision must be fp32, tf32 or bf16\n");
                bad = 1;
            }
        } else if (strcmp(a, "--batch") == 0) {
            bad = parse_int(a, v, 1, 1 << 20, &batch) != 0, i++;
        } else if (strcmp(a, "--seq") == 0) {
            bad = parse_int(a, v, 1, 8192, &seq) != 0, i++;
        } else if (strcmp(a, "--random") == 0) {
            bad = parse_int(a, v, 0, 1L << 40, &seed) != 0, i++;
        } else if (strcmp(a, "--repeat") == 0) {
            bad = parse_int(a, v, 1, 1 << 20, &repeat) != 0, i++;
        } else if (strcmp(a, "--input") == 0) {
            bad = !v, input = v, i++;
        } else if (strcmp(a, "--output") == 0) {
            bad = !v, output = v, i++;
        } else if (strcmp(a, "--check") == 0) {
            check = 1;
        } else if (strcmp(a, "--no-graphs") == 0) {
            graphs = 0;
        } else if (strcmp(a, "--tol") == 0) {
            char *end;
            tol = v ? strtod(v, &end) : 0;
            bad = !v || *end || !(tol > 0), i++;
        } else if (!file && a[0] != '-') {
            file = a;
        } else {
            fprintf(stderr, "mtinfer run: unexpected argument '%s'\n", a);
            bad = 1;
        }
        if (bad) {
            usage(stderr);
            return 2;
        }
    }
    if (!file) {
        usage(stderr);
        return 2;
    }
    /* The bounds: fp32 far under 1e-3, tf32 near 3e-4, bf16 under 1e-2. */
    if (tol == 0)
        tol = precision == MTI_PRECISION_TF32   ? 2e-3
              : precision == MTI_PRECISION_BF16 ? 1e-2
                                                : 1e-4;
    int rc = 2;
    mti_runtime_t rt = NULL;
    mti_model_t m = NULL;
    float *x = NULL, *y = NULL;
    double *ref = NULL;
    if (mti_runtime_create(&rp, &rt) != MTI_OK) goto fail;
    mti_model_params mp;
    mti_model_params_default(&mp);
    mp.config_path = config;
    mp.use_graphs = graphs;
    mp.precision = precision;
    if (mti_model_load(rt, file, &mp, &m) != MTI_OK) goto fail;
    mti_model_info info;
    mti_model_get_info(m, &info);
    int s = info.sequence ? (int)seq : 0;
    size_t rows = (size_t)batch * (size_t)(info.sequence ? seq : 1);
    size_t n_in = rows * info.input_features, n_out = rows * info.output_features;
    x = malloc(sizeof *x * n_in);
    y = malloc(sizeof *y * n_out);
    if (!x || !y) {
        fprintf(stderr, "mtinfer run: out of memory\n");
        goto done;
    }
    size_t in_nonfinite = 0;
    if (input) {
        if (read_input(input, x, n_in) != 0) goto done;
        for (size_t i = 0; i < n_in; i++)
            in_nonfinite += !isfinite(x[i]);
    } else {
        uint64_t st = (uint64_t)seed;
        for (size_t i = 0; i < n_in; i++)
            x[i] = (float)((splitmix(&st) >> 40) * (1.0 / (1ull << 24)) * 2.0 - 1.0);
    }
    double t0 = now_s(), first = 0;
    for (long r = 0; r < repeat; r++) {
        if (mti_model_infer(m, (int)batch, s, x, n_in, y, n_out) != MTI_OK) goto fail;
        if (r == 0) first = now_s() - t0;
    }
    double total = now_s() - t0;
    double sum = 0, mn = INFINITY, mx = -INFINITY;
    size_t nonfinite = 0;
    for (size_t i = 0; i < n_out; i++) {
        if (!isfinite(y[i])) {
            nonfinite++;
            continue;
        }
        sum += y[i];
        mn = y[i] < mn ? y[i] : mn;
        mx = y[i] > mx ? y[i] : mx;
    }
    printf("model      %s (%zu parameters)\n", file, info.n_params);
    printf("backend    %s (%s)\n", mti_backend_name(mti_runtime_backend(rt)),
           mti_runtime_device_name(rt));
    static const char *const precision_names[] = {"fp32", "tf32", "bf16"};
    printf("precision  %s%s\n", precision_names[precision],
           precision == MTI_PRECISION_FP32 || mti_runtime_backend(rt) != MTI_BACKEND_CPU ? ""
           : precision == MTI_PRECISION_TF32 ? " (computed in fp32: the CPU has no TF32)"
                                             : " (computed in fp32: the CPU has no bf16 GEMM)");
    if (info.sequence)
        printf("input      [%ld, %ld, %d]\noutput     [%ld, %ld, %d]\n", batch, seq,
               info.input_features, batch, seq, info.output_features);
    else
        printf("input      [%ld, %d]\noutput     [%ld, %d]\n", batch, info.input_features, batch,
               info.output_features);
    printf("time       first %.3f ms", first * 1e3);
    if (repeat > 1)
        printf(", mean of the rest %.3f ms", (total - first) / (double)(repeat - 1) * 1e3);
    printf("\noutput     mean %.6g  min %.6g  max %.6g  y[0..3] =", n_out ? sum / (double)n_out : 0,
           mn, mx);
    for (size_t i = 0; i < n_out && i < 4; i++)
        printf(" %.6g", y[i]);
    printf("\n");
    if (in_nonfinite) printf("input      %zu NaN/Inf values (computed through)\n", in_nonfinite);
    if (nonfinite) printf("output     %zu NaN/Inf values\n", nonfinite);
    if (output) {
        FILE *fp = fopen(output, "wb");
        if (!fp || fwrite(y, sizeof *y, n_out, fp) != n_out) {
            perror(output);
            if (fp) fclose(fp);
            goto done;
        }
        if (fclose(fp) != 0) {
            perror(output);
            goto done;
        }
    }
    rc = 0;
    if (check) {
        ref = malloc(sizeof *ref * n_out);
        if (!ref) {
            fprintf(stderr, "mtinfer run: out of memory\n");
            rc = 2;
            goto done;
        }
        if (mti_model_reference(m, (int)batch, s, x, n_in, ref, n_out) != MTI_OK) goto fail;
        mti_error_stats es;
        mti_error_stats_compute(y, ref, n_out, &es);
        /* NaN/Inf in the input or output fails the check: the numbers then say nothing. */
        int ok = es.rel_l2 <= tol && es.max_abs_rel <= tol && nonfinite == 0 && in_nonfinite == 0;
        printf("check      vs float64 reference: ||out-ref||/||ref|| = %.3e, max|out-ref|/max|ref| "
               "= %.3e, tolerance %.1e%s%s: %s\n",
               es.rel_l2, es.max_abs_rel, tol, nonfinite ? ", NaN/Inf in the output" : "",
               in_nonfinite ? ", NaN/Inf in the input" : "", ok ? "ok" : "FAILED");
        rc = ok ? 0 : 1;
    }
    goto done;
fail:
    fprintf(stderr, "mtinfer: %s\n", mti_last_error_message());
    rc = 2;
done:
    free(x);
    free(y);
    free(ref);
    mti_model_destroy(m);
    mti_runtime_destroy(rt);
    return rc;
}
