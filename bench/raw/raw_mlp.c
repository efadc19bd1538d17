/*
 * raw_mlp: the raw CUDA baseline that mtinfer is measured against.
 *
 * No mtinfer here: plain C11, pthreads, the CUDA runtime and cuBLASLt (cuBLAS as a fallback).
 * Each thread owns a non-blocking stream, a cuBLAS(Lt) handle with its own workspace, pinned
 * host buffers and device activations; the weights are shared read-only. One request is
 *   H2D copy of the input -> Linear(512,1024)+ReLU -> Linear(1024,1024)+ReLU -> Linear(1024,512)
 *   -> D2H copy of the output -> wait,
 * issued either eagerly or as one CUDA graph per thread captured once and replayed.
 * Throughput is measured over a fixed window after a warm-up, for several thread counts.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>
#include <cublasLt.h>
#include <cublas_v2.h>

#include "raw_kernels.h"

#define N_LAYERS 3
static const int layer_dim[N_LAYERS + 1] = {512, 1024, 1024, 512};
#define MAX_DIM 1024

/* Per thread: the 32 MiB that cuBLAS recommends for Hopper, far more than these GEMMs need. */
#define WORKSPACE_BYTES ((size_t)32 << 20)

#define MAX_THREADS   1024
#define MAX_LIST      16
#define MAX_TRIALS    1000
#define CHECK_ROWS    16 /* batch rows compared with the float64 reference */
#define REL_ERR_LIMIT 1e-3
#define REL_ERR_FP32  1e-5 /* plain fp32 lands far below this; TF32 near 3e-4 */

/* ---- errors ---------------------------------------------------------------------------- */

static void fatal(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("raw_mlp: fatal: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    /* _exit, not exit: other threads may be inside CUDA calls, so skip the runtime's teardown. */
    _exit(EXIT_FAILURE);
}

static void cuda_check(cudaError_t e, const char *what, const char *file, int line)
{
    if (e != cudaSuccess)
        fatal("%s:%d: %s: %s (%s)", file, line, what, cudaGetErrorName(e), cudaGetErrorString(e));
}

static void cublas_check(cublasStatus_t s, const char *what, const char *file, int line)
{
    if (s != CUBLAS_STATUS_SUCCESS)
        fatal("%s:%d: %s: %s (%s)", file, line, what, cublasGetStatusName(s),
              cublasGetStatusString(s));
}

#define CUDA_CHECK(call)   cuda_check((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) cublas_check((call), #call, __FILE__, __LINE__)

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) fatal("out of host memory (%zu x %zu bytes)", n, size);
    return p;
}

/* ---- options --------------------------------------------------------------------------- */

enum mode { MODE_EAGER, MODE_GRAPH, N_MODES };
static const char *const mode_names[] = {"eager", "graph"};

enum gemm { GEMM_AUTO, GEMM_LT_EPILOGUE, GEMM_LT, GEMM_CUBLAS, N_GEMMS };
static const char *const gemm_names[] = {"auto", "lt-epilogue", "lt", "cublas"};

enum sync { SYNC_AUTO, SYNC_SPIN, SYNC_YIELD, SYNC_BLOCK, N_SYNCS };
static const char *const sync_names[] = {"auto", "spin", "yield", "block"};
static const unsigned sync_flags[] = {cudaDeviceScheduleAuto, cudaDeviceScheduleSpin,
                                      cudaDeviceScheduleYield, cudaDeviceScheduleBlockingSync};

struct options {
    int threads[MAX_LIST];
    int n_threads;
    enum mode modes[MAX_LIST];
    int n_modes;
    int batch, trials, warmup;
    double duration;
    enum sync sync;
    enum gemm gemm;
    const char *json;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: raw_mlp [options]\n"
            "Raw CUDA + cuBLASLt baseline: per thread a stream and a handle, each request copies\n"
            "the input in, runs the MLP 512-1024-1024-512 (fp32) and copies the output out.\n"
            "\n"
            "  --threads LIST   thread counts, comma separated (default 1,2,4,8,16,32)\n"
            "  --mode LIST      eager, graph or both (default eager,graph)\n"
            "  --batch N        rows per request (default 1)\n"
            "  --duration S     seconds per timed trial (default 2)\n"
            "  --trials N       timed trials per configuration (default 3)\n"
            "  --warmup N       untimed requests per thread before timing (default 200)\n"
            "  --sync MODE      auto|spin|yield|block: host wait policy set with\n"
            "                   cudaSetDeviceFlags (default auto, the driver's own choice)\n"
            "  --gemm PATH      auto|lt-epilogue|lt|cublas (default auto: cuBLASLt with the\n"
            "                   bias/ReLU epilogue, else cuBLASLt or cuBLAS + a bias kernel)\n"
            "  --json FILE      also write the results as JSON\n"
            "  --help           this text\n"
            "Uses CUDA device 0 (select another with CUDA_VISIBLE_DEVICES).\n");
}

static void usage_error(const char *fmt, const char *arg)
{
    fputs("raw_mlp: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n\n", stderr);
    usage(stderr);
    exit(2);
}

static long parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi) usage_error("bad value for %s", opt);
    return v;
}

static int parse_name(const char *opt, const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) return i;
    usage_error("bad value for %s", opt);
    return -1;
}

/* Splits a comma-separated list in place; returns the number of items. */
static int split_list(const char *opt, char *s, char **items)
{
    int n = 0;
    for (char *tok = s, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = '\0';
        if (n == MAX_LIST) usage_error("too many items in %s", opt);
        items[n++] = tok;
    }
    return n;
}

static void parse_args(struct options *o, int argc, char **argv)
{
    static char threads_default[] = "1,2,4,8,16,32";
    static char modes_default[] = "eager,graph";
    char *threads_arg = threads_default, *modes_arg = modes_default, *items[MAX_LIST];

    *o = (struct options){.batch = 1, .trials = 3, .warmup = 200, .duration = 2.0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) usage_error("missing value or unknown option %s", a);
        char *v = argv[++i];
        if (strcmp(a, "--threads") == 0) {
            threads_arg = v;
        } else if (strcmp(a, "--mode") == 0) {
            modes_arg = v;
        } else if (strcmp(a, "--batch") == 0) {
            o->batch = (int)parse_long(a, v, 1, 65536);
        } else if (strcmp(a, "--trials") == 0) {
            o->trials = (int)parse_long(a, v, 1, MAX_TRIALS);
        } else if (strcmp(a, "--warmup") == 0) {
            o->warmup = (int)parse_long(a, v, 0, 1000000);
        } else if (strcmp(a, "--duration") == 0) {
            char *end;
            o->duration = strtod(v, &end);
            if (end == v || *end != '\0' || !(o->duration > 0.0 && o->duration <= 3600.0))
                usage_error("bad value for %s", a);
        } else if (strcmp(a, "--sync") == 0) {
            o->sync = (enum sync)parse_name(a, v, sync_names, N_SYNCS);
        } else if (strcmp(a, "--gemm") == 0) {
            o->gemm = (enum gemm)parse_name(a, v, gemm_names, N_GEMMS);
        } else if (strcmp(a, "--json") == 0) {
            o->json = v;
        } else {
            usage_error("unknown option %s", a);
        }
    }
    /* The lists are split in place: argv strings and the static defaults are writable. */
    o->n_threads = split_list("--threads", threads_arg, items);
    for (int i = 0; i < o->n_threads; i++)
        o->threads[i] = (int)parse_long("--threads", items[i], 1, MAX_THREADS);
    o->n_modes = split_list("--mode", modes_arg, items);
    for (int i = 0; i < o->n_modes; i++)
        o->modes[i] = (enum mode)parse_name("--mode", items[i], mode_names, N_MODES);
}

/* ---- model and reference --------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-bound, bound). */
static float rand_sym(uint64_t *state, float bound)
{
    float u = (float)(splitmix64(state) >> 40) * 0x1.0p-24f;
    return (2.0f * u - 1.0f) * bound;
}

/* Weights W[l] are [out, in] row-major as in PyTorch; host copies feed the reference. */
struct model {
    float *h_w[N_LAYERS], *h_b[N_LAYERS];
    float *d_w[N_LAYERS], *d_b[N_LAYERS];
};

static void model_init(struct model *m, uint64_t seed)
{
    for (int l = 0; l < N_LAYERS; l++) {
        int in = layer_dim[l], out = layer_dim[l + 1];
        float bound = 1.0f / sqrtf((float)in); /* PyTorch's default Linear init range */
        size_t nw = (size_t)in * out;
        m->h_w[l] = xcalloc(nw, sizeof(float));
        m->h_b[l] = xcalloc((size_t)out, sizeof(float));
        for (size_t i = 0; i < nw; i++)
            m->h_w[l][i] = rand_sym(&seed, bound);
        for (int i = 0; i < out; i++)
            m->h_b[l][i] = rand_sym(&seed, bound);
        CUDA_CHECK(cudaMalloc((void **)&m->d_w[l], nw * sizeof(float)));
        CUDA_CHECK(cudaMalloc((void **)&m->d_b[l], (size_t)out * sizeof(float)));
        CUDA_CHECK(cudaMemcpy(m->d_w[l], m->h_w[l], nw * sizeof(float), cudaMemcpyHostToDevice));
        CUDA_CHECK(
            cudaMemcpy(m->d_b[l], m->h_b[l], (size_t)out * sizeof(float), cudaMemcpyHostToDevice));
    }
}

static void model_free(struct model *m)
{
    for (int l = 0; l < N_LAYERS; l++) {
        CUDA_CHECK(cudaFree(m->d_w[l]));
        CUDA_CHECK(cudaFree(m->d_b[l]));
        free(m->h_w[l]);
        free(m->h_b[l]);
    }
}

/* One row through the MLP in float64. */
static void reference_row(const struct model *m, const float *x, double *y)
{
    double a[MAX_DIM], b[MAX_DIM];
    for (int i = 0; i < layer_dim[0]; i++)
        a[i] = x[i];
    for (int l = 0; l < N_LAYERS; l++) {
        int in = layer_dim[l], out = layer_dim[l + 1];
        for (int o = 0; o < out; o++) {
            const float *w = m->h_w[l] + (size_t)o * in;
            double s = m->h_b[l][o];
            for (int i = 0; i < in; i++)
                s += (double)w[i] * a[i];
            b[o] = (l < N_LAYERS - 1 && s < 0.0) ? 0.0 : s;
        }
        memcpy(a, b, (size_t)out * sizeof(double));
    }
    memcpy(y, a, (size_t)layer_dim[N_LAYERS] * sizeof(double));
}

/* Relative L2 error of y against the reference on up to CHECK_ROWS rows spread over the batch.
 * Every element must be finite: outputs are poisoned with NaN before the checked request. */
static double check_output(const struct model *m, const float *x, const float *y, int batch)
{
    int nin = layer_dim[0], nout = layer_dim[N_LAYERS];
    int rows = batch < CHECK_ROWS ? batch : CHECK_ROWS;
    double ref[MAX_DIM], num = 0.0, den = 0.0;

    for (size_t i = 0; i < (size_t)batch * nout; i++)
        if (!isfinite(y[i])) return INFINITY;
    for (int k = 0; k < rows; k++) {
        long r = rows == 1 ? 0 : (long)k * (batch - 1) / (rows - 1);
        reference_row(m, x + r * nin, ref);
        for (int i = 0; i < nout; i++) {
            double d = y[r * nout + i] - ref[i];
            num += d * d;
            den += ref[i] * ref[i];
        }
    }
    return den > 0.0 ? sqrt(num / den) : INFINITY; /* an all-zero reference proves nothing */
}

/* ---- per-thread state and the request ---------------------------------------------------- */

struct layer_plan {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
};

/* One (mode, thread count) configuration, shared by its threads. */
struct bench {
    const struct options *opt;
    const struct model *model;
    enum mode mode;
    enum gemm gemm;
    uint64_t seed;
    pthread_barrier_t barrier;
};

struct worker {
    struct bench *bench;
    int index;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    cublasHandle_t blas;
    void *workspace;
    float *h_in, *h_out;        /* pinned */
    float *d_act[N_LAYERS + 1]; /* [0] input, [N_LAYERS] output */
    struct layer_plan plan[N_LAYERS];
    cudaGraphExec_t graph;
    double rel_err;
    long *requests;          /* per trial */
    double *t_start, *t_end; /* per trial, seconds */
};

static size_t act_bytes(int batch, int l)
{
    return (size_t)batch * layer_dim[l] * sizeof(float);
}

static void lt_plan_destroy(struct layer_plan *p)
{
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->a));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->b));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->c));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->desc));
}

/* Plans y[batch, out] = x[batch, in] W^T (+ bias, ReLU when fused) for layer l.
 * cuBLASLt is column-major: row-major y is column-major y^T [out, batch] = W x^T, and row-major
 * W [out, in] is column-major [in, out] with ld = in, hence op(A) = T. The bias then runs along
 * the rows of D, which is what the BIAS epilogues broadcast.
 * Returns false, with the reason in *why, when cuBLASLt offers no algorithm. */
static bool lt_plan_init(struct layer_plan *p, cublasLtHandle_t lt, int l, int batch, bool fused,
                         const float *bias, cublasStatus_t *why)
{
    int in = layer_dim[l], out = layer_dim[l + 1];
    int32_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    uint32_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    if (fused) epi = l < N_LAYERS - 1 ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;

    /* CUBLAS_COMPUTE_32F is plain fp32; TF32 would need CUBLAS_COMPUTE_32F_FAST_TF32. */
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (fused) {
        const void *bp = bias;
        int32_t bt = CUDA_R_32F;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp,
                                                    sizeof bp));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                    &bt, sizeof bt));
    }
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_32F, (uint64_t)in, (uint64_t)out, in));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_32F, (uint64_t)in, (uint64_t)batch, in));
    CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, (uint64_t)out, (uint64_t)batch, out));

    cublasLtMatmulPreference_t pref;
    size_t ws = WORKSPACE_BYTES;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(lt, p->desc, p->a, p->b, p->c, p->c, pref, 1, &res, &found);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (st == CUBLAS_STATUS_SUCCESS && found > 0) {
        p->algo = res.algo;
        return true;
    }
    *why = st == CUBLAS_STATUS_SUCCESS ? CUBLAS_STATUS_NOT_SUPPORTED : st;
    lt_plan_destroy(p);
    return false;
}

/* Decides the GEMM path once, in the main thread, so every configuration measures the same. */
static enum gemm choose_gemm(enum gemm want, const struct model *m, int batch)
{
    static const enum gemm lt_paths[] = {GEMM_LT_EPILOGUE, GEMM_LT};
    cublasLtHandle_t lt;

    if (want == GEMM_CUBLAS) return want;
    CUBLAS_CHECK(cublasLtCreate(&lt));
    for (int k = 0; k < 2; k++) {
        enum gemm g = lt_paths[k];
        if (want != GEMM_AUTO && want != g) continue;
        int l;
        cublasStatus_t why = CUBLAS_STATUS_SUCCESS;
        for (l = 0; l < N_LAYERS; l++) {
            struct layer_plan p;
            if (!lt_plan_init(&p, lt, l, batch, g == GEMM_LT_EPILOGUE, m->d_b[l], &why)) break;
            lt_plan_destroy(&p);
        }
        if (l == N_LAYERS) {
            CUBLAS_CHECK(cublasLtDestroy(lt));
            return g;
        }
        if (want != GEMM_AUTO)
            fatal("--gemm %s: cuBLASLt heuristic found no fp32 algorithm for layer %d "
                  "(%dx%d, batch %d): %s; try --gemm auto or --gemm cublas",
                  gemm_names[g], l, layer_dim[l], layer_dim[l + 1], batch,
                  cublasGetStatusName(why));
        fprintf(stderr,
                "raw_mlp: note: no cuBLASLt algorithm for %s at layer %d (%s); "
                "falling back\n",
                gemm_names[g], l, cublasGetStatusName(why));
    }
    CUBLAS_CHECK(cublasLtDestroy(lt));
    return GEMM_CUBLAS;
}

static void layer_forward(struct worker *w, int l)
{
    static const float one = 1.0f, zero = 0.0f;
    const struct model *m = w->bench->model;
    int batch = w->bench->opt->batch, in = layer_dim[l], out = layer_dim[l + 1];
    struct layer_plan *p = &w->plan[l];

    switch (w->bench->gemm) {
    case GEMM_LT_EPILOGUE:
    case GEMM_LT:
        CUBLAS_CHECK(cublasLtMatmul(w->lt, p->desc, &one, m->d_w[l], p->a, w->d_act[l], p->b, &zero,
                                    w->d_act[l + 1], p->c, w->d_act[l + 1], p->c, &p->algo,
                                    w->workspace, WORKSPACE_BYTES, w->stream));
        break;
    case GEMM_CUBLAS:
        /* Same column-major reading as lt_plan_init: y^T = W x^T with op(W) = T. */
        CUBLAS_CHECK(cublasGemmEx(w->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, batch, in, &one,
                                  m->d_w[l], CUDA_R_32F, in, w->d_act[l], CUDA_R_32F, in, &zero,
                                  w->d_act[l + 1], CUDA_R_32F, out, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
        break;
    default:
        fatal("internal: unresolved gemm path");
    }
    if (w->bench->gemm != GEMM_LT_EPILOGUE)
        CUDA_CHECK(
            raw_bias_act(w->d_act[l + 1], m->d_b[l], batch, out, l < N_LAYERS - 1, w->stream));
}

static void enqueue_request(struct worker *w)
{
    int batch = w->bench->opt->batch;
    CUDA_CHECK(cudaMemcpyAsync(w->d_act[0], w->h_in, act_bytes(batch, 0), cudaMemcpyHostToDevice,
                               w->stream));
    for (int l = 0; l < N_LAYERS; l++)
        layer_forward(w, l);
    CUDA_CHECK(cudaMemcpyAsync(w->h_out, w->d_act[N_LAYERS], act_bytes(batch, N_LAYERS),
                               cudaMemcpyDeviceToHost, w->stream));
}

/* One complete request, as the timed loop sees it. */
static void run_request(struct worker *w)
{
    if (w->bench->mode == MODE_GRAPH)
        CUDA_CHECK(cudaGraphLaunch(w->graph, w->stream));
    else
        enqueue_request(w);
    CUDA_CHECK(cudaStreamSynchronize(w->stream));
}

static void worker_setup(struct worker *w)
{
    const struct bench *b = w->bench;
    int batch = b->opt->batch;

    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaStreamCreateWithFlags(&w->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaMalloc(&w->workspace, WORKSPACE_BYTES));
    CUDA_CHECK(cudaHostAlloc((void **)&w->h_in, act_bytes(batch, 0), cudaHostAllocDefault));
    CUDA_CHECK(cudaHostAlloc((void **)&w->h_out, act_bytes(batch, N_LAYERS), cudaHostAllocDefault));
    for (int l = 0; l <= N_LAYERS; l++)
        CUDA_CHECK(cudaMalloc((void **)&w->d_act[l], act_bytes(batch, l)));

    /* A fresh input for every thread and configuration. */
    uint64_t seed = b->seed * 1000003u + (uint64_t)w->index;
    for (size_t i = 0; i < (size_t)batch * layer_dim[0]; i++)
        w->h_in[i] = rand_sym(&seed, 1.0f);

    if (b->gemm == GEMM_CUBLAS) {
        CUBLAS_CHECK(cublasCreate(&w->blas));
        CUBLAS_CHECK(cublasSetStream(w->blas, w->stream));
        /* Own workspace: no allocation by cuBLAS inside a graph capture. */
        CUBLAS_CHECK(cublasSetWorkspace(w->blas, w->workspace, WORKSPACE_BYTES));
        return;
    }
    CUBLAS_CHECK(cublasLtCreate(&w->lt));
    for (int l = 0; l < N_LAYERS; l++) {
        cublasStatus_t why = CUBLAS_STATUS_SUCCESS;
        if (!lt_plan_init(&w->plan[l], w->lt, l, batch, b->gemm == GEMM_LT_EPILOGUE,
                          b->model->d_b[l], &why))
            fatal("thread %d: cuBLASLt found no algorithm for layer %d (%s), unlike the probe",
                  w->index, l, cublasGetStatusName(why));
    }
}

static void worker_teardown(struct worker *w)
{
    if (w->graph) CUDA_CHECK(cudaGraphExecDestroy(w->graph));
    if (w->blas) CUBLAS_CHECK(cublasDestroy(w->blas));
    if (w->lt) {
        for (int l = 0; l < N_LAYERS; l++)
            lt_plan_destroy(&w->plan[l]);
        CUBLAS_CHECK(cublasLtDestroy(w->lt));
    }
    for (int l = 0; l <= N_LAYERS; l++)
        CUDA_CHECK(cudaFree(w->d_act[l]));
    CUDA_CHECK(cudaFreeHost(w->h_in));
    CUDA_CHECK(cudaFreeHost(w->h_out));
    CUDA_CHECK(cudaFree(w->workspace));
    CUDA_CHECK(cudaStreamDestroy(w->stream));
}

static void capture_graph(struct worker *w)
{
    cudaGraph_t g;
    /* Thread-local capture: other threads' cudaMalloc etc. during their setup cannot
     * invalidate this capture, as they would under the global mode. */
    CUDA_CHECK(cudaStreamBeginCapture(w->stream, cudaStreamCaptureModeThreadLocal));
    enqueue_request(w);
    CUDA_CHECK(cudaStreamEndCapture(w->stream, &g));
    CUDA_CHECK(cudaGraphInstantiate(&w->graph, g, 0));
    CUDA_CHECK(cudaGraphDestroy(g));
    CUDA_CHECK(cudaGraphUpload(w->graph, w->stream));
    CUDA_CHECK(cudaStreamSynchronize(w->stream));
}

/* Poisons every activation and the host output with NaN, runs one request, compares. */
static void check_once(struct worker *w)
{
    int batch = w->bench->opt->batch;
    for (int l = 1; l <= N_LAYERS; l++)
        CUDA_CHECK(cudaMemsetAsync(w->d_act[l], 0xff, act_bytes(batch, l), w->stream));
    CUDA_CHECK(cudaStreamSynchronize(w->stream));
    memset(w->h_out, 0xff, act_bytes(batch, N_LAYERS));
    run_request(w);
    w->rel_err = check_output(w->bench->model, w->h_in, w->h_out, batch);
}

static double now_s(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) fatal("clock_gettime failed");
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void barrier_wait(pthread_barrier_t *b)
{
    int rc = pthread_barrier_wait(b);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) fatal("pthread_barrier_wait: %d", rc);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct bench *b = w->bench;
    const struct options *o = b->opt;

    worker_setup(w);
    /* One eager request first, so lazily loaded kernels load outside any capture. */
    enqueue_request(w);
    CUDA_CHECK(cudaStreamSynchronize(w->stream));
    if (b->mode == MODE_GRAPH) capture_graph(w);
    for (int i = 0; i < o->warmup; i++)
        run_request(w);
    check_once(w);

    for (int t = 0; t < o->trials; t++) {
        barrier_wait(&b->barrier);
        double t0 = now_s(), deadline = t0 + o->duration, t1;
        long n = 0;
        do {
            run_request(w);
            n++;
            t1 = now_s();
        } while (t1 < deadline);
        w->t_start[t] = t0;
        w->t_end[t] = t1;
        w->requests[t] = n;
    }
    /* Nobody frees (cudaFree synchronizes the device) while another thread is still timed. */
    barrier_wait(&b->barrier);
    worker_teardown(w);
    return NULL;
}

/* ---- configurations and results ------------------------------------------------------ */

struct result {
    enum mode mode;
    int threads;
    double *rps; /* per trial */
    double median, min, max;
    double max_err;
    int failed_checks;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarize(struct result *r, int n)
{
    double *s = xcalloc((size_t)n, sizeof *s);
    memcpy(s, r->rps, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    r->min = s[0];
    r->max = s[n - 1];
    r->median = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
}

static void run_config(const struct options *o, const struct model *m, enum gemm gemm,
                       enum mode mode, int n, uint64_t seed, struct result *r)
{
    struct bench b = {.opt = o, .model = m, .mode = mode, .gemm = gemm, .seed = seed};
    struct worker *ws = xcalloc((size_t)n, sizeof *ws);
    pthread_t *tids = xcalloc((size_t)n, sizeof *tids);
    int rc;

    if ((rc = pthread_barrier_init(&b.barrier, NULL, (unsigned)n)) != 0)
        fatal("pthread_barrier_init: %d", rc);
    for (int i = 0; i < n; i++) {
        ws[i].bench = &b;
        ws[i].index = i;
        ws[i].requests = xcalloc((size_t)o->trials, sizeof(long));
        ws[i].t_start = xcalloc((size_t)o->trials, sizeof(double));
        ws[i].t_end = xcalloc((size_t)o->trials, sizeof(double));
        if ((rc = pthread_create(&tids[i], NULL, worker_main, &ws[i])) != 0)
            fatal("pthread_create (thread %d of %d): %d", i, n, rc);
    }
    for (int i = 0; i < n; i++)
        if ((rc = pthread_join(tids[i], NULL)) != 0) fatal("pthread_join: %d", rc);
    pthread_barrier_destroy(&b.barrier);

    *r = (struct result){.mode = mode, .threads = n};
    r->rps = xcalloc((size_t)o->trials, sizeof(double));
    for (int t = 0; t < o->trials; t++) {
        /* Wall clock: first thread out of the barrier to last thread done. */
        double start = ws[0].t_start[t], end = ws[0].t_end[t];
        long total = 0;
        for (int i = 0; i < n; i++) {
            start = fmin(start, ws[i].t_start[t]);
            end = fmax(end, ws[i].t_end[t]);
            total += ws[i].requests[t];
        }
        r->rps[t] = (double)total / (end - start);
        fprintf(stderr, "  %s x%-3d trial %d/%d: %ld requests in %.3f s = %.1f req/s\n",
                mode_names[mode], n, t + 1, o->trials, total, end - start, r->rps[t]);
    }
    summarize(r, o->trials);
    for (int i = 0; i < n; i++) {
        if (!(ws[i].rel_err < REL_ERR_LIMIT)) {
            r->failed_checks++;
            fprintf(stderr, "raw_mlp: CHECK FAILED: %s x%d thread %d: relative L2 error %g\n",
                    mode_names[mode], n, i, ws[i].rel_err);
        }
        if (i == 0 || !(ws[i].rel_err <= r->max_err)) r->max_err = ws[i].rel_err;
        free(ws[i].requests);
        free(ws[i].t_start);
        free(ws[i].t_end);
    }
    free(ws);
    free(tids);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", (unsigned)(unsigned char)*s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

/* JSON has no infinity or NaN. */
static void json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

struct run_info {
    const char *device;
    int cc_major, cc_minor, sms, cpus, driver, runtime;
    size_t cublaslt;
    unsigned device_flags;
    enum gemm gemm;
};

static void write_json(FILE *f, const char *path, const struct options *o,
                       const struct run_info *info, const struct result *res, int n_res)
{
    fputs("{\n  \"device\": ", f);
    json_string(f, info->device);
    fprintf(f,
            ",\n  \"compute_capability\": \"%d.%d\",\n  \"sm_count\": %d,\n"
            "  \"host_cpus\": %d,\n  \"driver_version\": %d,\n  \"runtime_version\": %d,\n"
            "  \"cublaslt_version\": %zu,\n  \"model\": \"mlp-512-1024-1024-512-fp32\",\n"
            "  \"batch\": %d,\n  \"gemm\": \"%s\",\n  \"gemm_requested\": \"%s\",\n"
            "  \"sync\": \"%s\",\n  \"device_flags\": %u,\n  \"duration_s\": %g,\n"
            "  \"trials\": %d,\n  \"warmup\": %d,\n  \"results\": [",
            info->cc_major, info->cc_minor, info->sms, info->cpus, info->driver, info->runtime,
            info->cublaslt, o->batch, gemm_names[info->gemm], gemm_names[o->gemm],
            sync_names[o->sync], info->device_flags, o->duration, o->trials, o->warmup);
    for (int i = 0; i < n_res; i++) {
        const struct result *r = &res[i];
        fprintf(f, "%s\n    {\"mode\": \"%s\", \"threads\": %d, \"median_rps\": ", i ? "," : "",
                mode_names[r->mode], r->threads);
        json_number(f, r->median);
        fputs(", \"min_rps\": ", f);
        json_number(f, r->min);
        fputs(", \"max_rps\": ", f);
        json_number(f, r->max);
        fputs(", \"trials_rps\": [", f);
        for (int t = 0; t < o->trials; t++) {
            fputs(t ? ", " : "", f);
            json_number(f, r->rps[t]);
        }
        fputs("], \"max_rel_err\": ", f);
        json_number(f, r->max_err);
        fprintf(f, ", \"failed_checks\": %d}", r->failed_checks);
    }
    fputs("\n  ]\n}\n", f);
    if (fclose(f) != 0) fatal("error writing %s", path);
}

static const struct result *find_result(const struct result *res, int n_res, enum mode mode,
                                        int threads)
{
    for (int i = 0; i < n_res; i++)
        if (res[i].mode == mode && res[i].threads == threads) return &res[i];
    return NULL;
}

static void print_table(const struct result *res, int n_res)
{
    printf("\n%-6s %7s %12s %12s %12s %12s %8s %11s\n", "mode", "threads", "req/s median", "min",
           "max", "per-thread", "speedup", "max rel err");
    for (int i = 0; i < n_res; i++) {
        const struct result *r = &res[i];
        const struct result *one = find_result(res, n_res, r->mode, 1);
        printf("%-6s %7d %12.1f %12.1f %12.1f %12.1f ", mode_names[r->mode], r->threads, r->median,
               r->min, r->max, r->median / r->threads);
        if (one)
            printf("%8.2f", r->median / one->median);
        else
            printf("%8s", "-");
        printf(" %11.2e%s\n", r->max_err, r->failed_checks ? "  FAILED" : "");
    }
}

int main(int argc, char **argv)
{
    struct options o;
    struct run_info info = {0};
    struct cudaDeviceProp prop;
    struct model m;
    int n_dev = 0;

    parse_args(&o, argc, argv);

    CUDA_CHECK(cudaGetDeviceCount(&n_dev));
    if (n_dev < 1) fatal("no CUDA device");
    /* The wait policy must be set before the primary context exists: nothing above creates it. */
    if (o.sync != SYNC_AUTO) CUDA_CHECK(cudaSetDeviceFlags(sync_flags[o.sync]));
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaFree(NULL)); /* create the context now */
    CUDA_CHECK(cudaGetDeviceFlags(&info.device_flags));
    if (o.sync != SYNC_AUTO && (info.device_flags & cudaDeviceScheduleMask) != sync_flags[o.sync])
        fatal("--sync %s did not take effect (device flags 0x%x)", sync_names[o.sync],
              info.device_flags);

    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    CUDA_CHECK(cudaDriverGetVersion(&info.driver));
    CUDA_CHECK(cudaRuntimeGetVersion(&info.runtime));
    info.device = prop.name;
    info.cc_major = prop.major;
    info.cc_minor = prop.minor;
    info.sms = prop.multiProcessorCount;
    info.cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    info.cublaslt = cublasLtGetVersion();

    /* Opened now so that a bad path fails before the run, not after it. */
    FILE *json = o.json ? fopen(o.json, "w") : NULL;
    if (o.json && !json) fatal("cannot open %s for writing", o.json);

    model_init(&m, 42);
    info.gemm = choose_gemm(o.gemm, &m, o.batch);

    printf("raw_mlp: %s (sm_%d%d, %d SMs), %d host CPUs, driver %d, runtime %d, cuBLASLt %zu\n",
           info.device, info.cc_major, info.cc_minor, info.sms, info.cpus, info.driver,
           info.runtime, info.cublaslt);
    printf("MLP 512-1024-1024-512 fp32, batch %d, gemm %s, sync %s (device flags 0x%x), "
           "%d trials x %g s, warm-up %d requests/thread\n",
           o.batch, gemm_names[info.gemm], sync_names[o.sync], info.device_flags, o.trials,
           o.duration, o.warmup);
    fflush(stdout);

    int n_res = o.n_modes * o.n_threads, k = 0, failed = 0;
    double worst = 0.0;
    struct result *res = xcalloc((size_t)n_res, sizeof *res);
    for (int i = 0; i < o.n_modes; i++) {
        for (int j = 0; j < o.n_threads; j++, k++) {
            run_config(&o, &m, info.gemm, o.modes[i], o.threads[j], 1 + (uint64_t)k, &res[k]);
            failed += res[k].failed_checks;
            if (!(res[k].max_err <= worst)) worst = res[k].max_err;
        }
    }

    print_table(res, n_res);
    if (json) write_json(json, o.json, &o, &info, res, n_res);
    if (failed)
        printf("checks: %d thread(s) FAILED (relative L2 error >= %g or non-finite)\n", failed,
               REL_ERR_LIMIT);
    else
        printf("checks: all passed, worst relative L2 error %.2e vs float64%s\n", worst,
               worst > REL_ERR_FP32 ? " (high for plain fp32: reduced precision?)" : "");

    for (int i = 0; i < n_res; i++)
        free(res[i].rps);
    free(res);
    model_free(&m);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
