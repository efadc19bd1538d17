/*
 * `mtinfer bench`: the seed reports' measurements on our backends, with PyTorch in the same
 * run. Options, the environment block, the workloads (model files written once into a temp
 * directory), the peer, then each section (tools/bench-sections.c), then --json/--md/--svg.
 * A request is what a server does per call: host input, forward, host output, result ready.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/bench-batcher.h"
#include "tools/bench.h"
#include "tools/cli.h"

#ifndef MTI_GIT_COMMIT
#define MTI_GIT_COMMIT "unknown"
#endif
#ifndef MTI_BUILD_FLAGS
#define MTI_BUILD_FLAGS "unknown"
#endif

static const struct {
    const char *name;
    int bit;
} k_sections[] = {{"single", SEC_SINGLE},     {"threads", SEC_THREADS},      {"story", SEC_STORY},
                  {"patterns", SEC_PATTERNS}, {"serialization", SEC_SERIAL}, {"batch", SEC_BATCH},
                  {"raw", SEC_RAW},           {"batcher", SEC_BATCHER}};
#define N_SECTIONS (int)(sizeof k_sections / sizeof k_sections[0])

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: mtinfer bench [MODEL.safetensors] [options]\n"
        "\n"
        "Measures what the seed reports measured, on the default backend (the GPU when one\n"
        "is usable, else the CPU; MTI_BACKEND=cpu|cuda to choose), with PyTorch running the\n"
        "same workloads from the same weights in the same run when it is installed.\n"
        "Workloads: the MLP 512-1024-1024-512 (default), 1024x1024 matmuls, the transformer\n"
        "story workload (2 x TransformerEncoderLayer, d_model 256, 4 heads, ff 1024, input\n"
        "[4, 32, 256]); MODEL replaces the MLP in the thread and batch sections.\n"
        "\n"
        "sections (all by default):\n"
        "  single         1024x1024 matmuls x 20/40/80/160; MLP requests by sync pattern\n"
        "  threads        1..32 persistent workers, each on its own stream slot\n"
        "  story          the transformer story workload, 1..16 threads\n"
        "  patterns       new thread per request vs thread pool vs persistent workers (8)\n"
        "  serialization  per-stream vs global mutex vs semaphore(2) vs round-robin streams\n"
        "  batch          batch 1..4096: p50/p99 latency, samples/s\n"
        "  raw            the raw-driver program (GPU) or a plain BLAS loop (CPU) beside us\n"
        "  batcher        the dynamic batcher: 1..256 closed-loop clients (direct, batched,\n"
        "                 pre-batched ideal), then an open loop with latency vs offered load\n"
        "\n"
        "options:\n"
        "  --sections LIST   comma-separated subset of the above\n"
        "  --threads LIST    thread counts (default 1,2,4,8,16,32)\n"
        "  --batches LIST    batch sizes (default 1,8,64,256,1024,4096)\n"
        "  --duration S      seconds per measured window (default 1.0)\n"
        "  --trials N        windows per point: median and min-max reported (default 3)\n"
        "  --quick           about a minute on a 2-core machine (CI smoke run)\n"
        "  --json FILE       every figure, with the environment block\n"
        "  --md FILE         the report as markdown\n"
        "  --svg DIR         charts: throughput vs threads, latency/throughput vs batch\n"
        "  --peer CMD        how to run the peer (default: sh bench/peers/run_peer.sh, which\n"
        "                    finds a python with torch; none: skip the peer)\n"
        "  --raw PATH        the raw-driver baseline binary (default bench/raw/raw_mlp)\n"
        "  --batcher-params P      batcher settings to try, e.g.\n"
        "                          spin_us=0,streams=4,max_batch=256,delay_us=200\n"
        "  --batcher-clients LIST  client counts of the batcher section (default 1,4,16,64,256)\n"
        "  --replot JSON     write the --svg charts of an earlier --json file, measure nothing\n");
}

static int parse_list(const char *what, const char *s, int *out)
{
    int n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        long v = strtol(tok, &end, 10);
        if (*end || v < 1 || v > 65536 || n == BENCH_MAX_POINTS) {
            fprintf(stderr, "mtinfer bench: %s: '%s' is not a list of up to %d numbers 1..65536\n",
                    what, s, BENCH_MAX_POINTS);
            free(copy);
            return -1;
        }
        out[n++] = (int)v;
    }
    free(copy);
    return n;
}

static int parse_sections(const char *s)
{
    int bits = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int i = 0; i < N_SECTIONS; i++)
            if (!strcmp(tok, k_sections[i].name)) bits |= k_sections[i].bit, found = 1;
        if (!found) {
            fprintf(stderr, "mtinfer bench: --sections: unknown section '%s' (see --help)\n", tok);
            bits = -1;
            break;
        }
    }
    free(copy);
    return bits;
}

/* 0: run; 1: help printed; -1: bad usage (message printed). */
static int parse_options(int argc, char **argv, struct bench_options *o)
{
    static const int threads[] = {1, 2, 4, 8, 16, 32}, batches[] = {1, 8, 64, 256, 1024, 4096};
    memset(o, 0, sizeof *o);
    memcpy(o->threads, threads, sizeof threads);
    o->n_threads = 6;
    memcpy(o->batches, batches, sizeof batches);
    o->n_batches = 6;
    o->duration_s = 1.0;
    o->trials = 3;
    o->sections = SEC_ALL;
    o->progress = isatty(2);
    o->peer = "sh bench/peers/run_peer.sh";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(a, "--quick")) {
            o->quick = 1;
            continue;
        } else if (a[0] != '-' && !o->model_path) {
            o->model_path = a;
            continue;
        } else if (!v) {
            fprintf(stderr, "mtinfer bench: unknown option or missing value: '%s'\n\n", a);
            usage(stderr);
            return -1;
        } else if (!strcmp(a, "--threads")) {
            if ((o->n_threads = parse_list(a, v, o->threads)) < 0) return -1;
        } else if (!strcmp(a, "--batches")) {
            if ((o->n_batches = parse_list(a, v, o->batches)) < 0) return -1;
        } else if (!strcmp(a, "--duration")) {
            o->duration_s = atof(v);
            if (!(o->duration_s > 0 && o->duration_s <= 3600)) {
                fprintf(stderr, "mtinfer bench: --duration: '%s' is not 0 < S <= 3600\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--trials")) {
            o->trials = atoi(v);
            if (o->trials < 1 || o->trials > 64) {
                fprintf(stderr, "mtinfer bench: --trials: '%s' is not 1..64\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--sections")) {
            if ((o->sections = parse_sections(v)) < 0) return -1;
        } else if (!strcmp(a, "--json")) {
            o->json_path = v;
        } else if (!strcmp(a, "--md")) {
            o->md_path = v;
        } else if (!strcmp(a, "--svg")) {
            o->svg_dir = v;
        } else if (!strcmp(a, "--peer")) {
            o->peer = v;
        } else if (!strcmp(a, "--batcher-params")) {
            o->batcher_params = v;
        } else if (!strcmp(a, "--batcher-clients")) {
            if ((o->n_batcher_clients = parse_list(a, v, o->batcher_clients)) < 0) return -1;
        } else if (!strcmp(a, "--replot")) {
            o->replot = v;
        } else if (!strcmp(a, "--raw")) {
            o->raw_path = v;
        } else {
            fprintf(stderr, "mtinfer bench: unknown option '%s'\n\n", a);
            usage(stderr);
            return -1;
        }
        i++;
    }
    if (o->quick) { /* short windows, fewer points: every section still produces numbers */
        o->duration_s = o->duration_s < 0.25 ? o->duration_s : 0.25;
        o->trials = 2;
        static const int qt[] = {1, 2, 8}, qb[] = {1, 64, 1024};
        memcpy(o->threads, qt, sizeof qt);
        o->n_threads = 3;
        memcpy(o->batches, qb, sizeof qb);
        o->n_batches = 3;
    }
    return 0;
}

/* ---- environment block ------------------------------------------------------------------ */

static void read_command(const char *cmd, char *out, size_t size)
{
    out[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (!p) return;
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    pclose(p);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
}

static cJSON *environment(mti_runtime_t rt, const char *when)
{
    cJSON *e = cJSON_CreateObject();
    char buf[1024];
    cJSON_AddStringToObject(e, "backend", mti_backend_name(mti_runtime_backend(rt)));
    cJSON_AddStringToObject(e, "device", mti_runtime_device_name(rt));
    cJSON_AddNumberToObject(e, "cpus_online", (double)sysconf(_SC_NPROCESSORS_ONLN));
    read_command("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", buf, sizeof buf);
    cJSON_AddStringToObject(e, "cpu_model", buf);
    cJSON_AddStringToObject(e, "git_commit", MTI_GIT_COMMIT);
    cJSON_AddStringToObject(e, "build_flags", MTI_BUILD_FLAGS);
    read_command("date -u +%Y-%m-%dT%H:%M:%SZ", buf, sizeof buf);
    cJSON_AddStringToObject(e, "date", buf);
    if (mti_runtime_backend(rt) == MTI_BACKEND_CUDA) {
        read_command("nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null", buf,
                     sizeof buf);
        cJSON_AddStringToObject(e, "driver", buf);
        read_command("nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw "
                     "--format=csv,noheader 2>/dev/null",
                     buf, sizeof buf);
        char key[64];
        snprintf(key, sizeof key, "clocks_%s", when);
        cJSON_AddStringToObject(e, key, buf);
    }
    return e;
}

/* ---- workloads ---------------------------------------------------------------------------- */

/* Writes a model file with `mtinfer model create` (its output silenced). */
static int create_model(const char *path, const char *const *args, int n_args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "model";
    argv[argc++] = "create";
    for (int i = 0; i < n_args; i++)
        argv[argc++] = (char *)args[i];
    argv[argc++] = "-o";
    argv[argc++] = (char *)path;
    fflush(stdout);
    int saved = dup(1);
    FILE *null = fopen("/dev/null", "w");
    if (null) dup2(fileno(null), 1);
    int rc = mti_cli_model(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    if (null) fclose(null);
    return rc;
}

static int load(mti_runtime_t rt, const char *path, int graphs, mti_model_t *out)
{
    mti_model_params p;
    mti_model_params_default(&p);
    p.use_graphs = graphs;
    if (mti_model_load(rt, path, &p, out) != MTI_OK) {
        fprintf(stderr, "mtinfer bench: %s: %s\n", path, mti_last_error_message());
        return -1;
    }
    return 0;
}

/* --replot: the charts of an earlier run, from its JSON. */
static int replot(const struct bench_options *o)
{
    if (!o->svg_dir) {
        fprintf(stderr, "mtinfer bench: --replot needs --svg DIR\n");
        return 2;
    }
    FILE *f = fopen(o->replot, "r");
    if (!f) {
        fprintf(stderr, "mtinfer bench: %s: %s\n", o->replot, strerror(errno));
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = calloc(1, (size_t)len + 1);
    size_t got = text ? fread(text, 1, (size_t)len, f) : 0;
    fclose(f);
    cJSON *root = got == (size_t)len ? cJSON_Parse(text) : NULL;
    free(text);
    cJSON *results = cJSON_GetObjectItem(root, "results");
    cJSON *device = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "environment"), "device");
    if (!results) {
        fprintf(stderr, "mtinfer bench: %s is not a bench --json file\n", o->replot);
        cJSON_Delete(root);
        return 2;
    }
    struct bench_ctx c = {.o = o, .json = results};
    bench_write_charts(&c, cJSON_IsString(device) ? device->valuestring : "?");
    cJSON_Delete(root);
    return 0;
}

int mti_cli_bench(int argc, char **argv)
{
    struct bench_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0) return rc > 0 ? 0 : 2;
    if (o.replot) return replot(&o);
    struct bench_ctx c = {.o = &o};
    if (mti_runtime_create(NULL, &c.rt) != MTI_OK) {
        fprintf(stderr, "mtinfer bench: %s\n", mti_last_error_message());
        return 2;
    }
    mti_backend_kind backend = mti_runtime_backend(c.rt);
    char dir[] = "/tmp/mtinfer-bench-XXXXXX", mlp[128], story[128];
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mtinfer bench: cannot make a temp directory: %s\n", strerror(errno));
        mti_runtime_destroy(c.rt);
        return 2;
    }
    snprintf(mlp, sizeof mlp, "%s/mlp.safetensors", dir);
    snprintf(story, sizeof story, "%s/story.safetensors", dir);
    static const char *mlp_args[] = {"mlp", "--dims", "512,1024,1024,512", "--seed", "1"};
    static const char *story_args[] = {"transformer", "--d-model", "256", "--heads", "4", "--ff",
                                       "1024",        "--layers",  "2",   "--seed",  "1"};
    cJSON *root = cJSON_CreateObject();
    c.json = cJSON_AddObjectToObject(root, "results");
    cJSON_AddItemToObject(root, "environment", environment(c.rt, "before"));
    c.mlp_path = mlp;
    c.story_path = story;
    mti_model_t mlp_eager = NULL;
    if (create_model(mlp, mlp_args, 5) != 0 || create_model(story, story_args, 11) != 0 ||
        load(c.rt, mlp, 1, &c.mlp) || load(c.rt, story, 1, &c.story) ||
        (backend == MTI_BACKEND_CUDA && load(c.rt, mlp, 0, &mlp_eager)) ||
        (o.model_path && load(c.rt, o.model_path, 1, &c.model))) {
        rc = 2;
        goto done;
    }
    if (!c.model) c.model = c.mlp;
    bench_report_open(o.md_path);
    bench_out("# mtinfer bench\n\nbackend **%s**, device **%s**, %ld CPUs online, commit %s; "
              "%.2f s windows x %d trials per point.\n",
              mti_backend_name(backend), mti_runtime_device_name(c.rt),
              sysconf(_SC_NPROCESSORS_ONLN), MTI_GIT_COMMIT, o.duration_s, o.trials);
    if (strcmp(o.peer, "none") != 0) {
        bench_progress(&o, "peer", "PyTorch (bench/peers/torch_peer.py)", 0);
        c.peer = bench_run_peer(&o, backend, mlp, story);
        bench_progress_done(&o);
    }
    if (c.peer)
        cJSON_AddItemToObject(root, "peer", c.peer);
    else
        bench_out("\nPeer: PyTorch was not run (%s); the peer columns are left out.\n",
                  strcmp(o.peer, "none") ? "not installed or it failed, see stderr"
                                         : "--peer none");
    if (o.sections & SEC_SINGLE) bench_section_single(&c);
    if (o.sections & SEC_THREADS) {
        bench_section_threads(&c, "mlp", c.model,
                              backend == MTI_BACKEND_CUDA
                                  ? "2. Thread scaling, MLP batch 1 (CUDA graph per plan)"
                                  : "2. Thread scaling, MLP batch 1",
                              1, 0);
        if (mlp_eager)
            bench_section_threads(&c, "mlp_eager", mlp_eager,
                                  "2b. Thread scaling, MLP batch 1, eager (no graphs)", 1, 0);
    }
    if (o.sections & SEC_STORY)
        bench_section_threads(&c, "story", c.story,
                              "2c. Thread scaling, the story workload (2 x "
                              "TransformerEncoderLayer d256 h4 ff1024, input [4, 32, 256])",
                              4, 32);
    if (o.sections & SEC_PATTERNS) bench_section_patterns(&c);
    if (o.sections & SEC_SERIAL) bench_section_serialization(&c);
    if (o.sections & SEC_BATCH) bench_section_batch(&c);
    if (o.sections & SEC_RAW) bench_section_raw(&c);
    if (o.sections & SEC_BATCHER) bench_section_batcher(&c);
    cJSON_AddItemToObject(root, "environment_after", environment(c.rt, "after"));
    if (o.svg_dir) bench_write_charts(&c, mti_runtime_device_name(c.rt));
    if (o.json_path) {
        char *text = cJSON_Print(root);
        FILE *f = fopen(o.json_path, "w");
        if (!f || fputs(text, f) < 0) {
            fprintf(stderr, "mtinfer bench: cannot write %s\n", o.json_path);
            rc = 2;
        }
        if (f) fclose(f);
        free(text);
    }
    bench_report_close();
    if (c.failed) {
        fprintf(stderr, "mtinfer bench: some requests failed (see above)\n");
        rc = 1;
    }
done:
    mti_model_destroy(mlp_eager);
    if (c.model != c.mlp) mti_model_destroy(c.model);
    mti_model_destroy(c.mlp);
    mti_model_destroy(c.story);
    cJSON_Delete(root);
    mti_runtime_destroy(c.rt);
    unlink(mlp);
    unlink(story);
    rmdir(dir);
    return rc;
}
