/*
 * `mtinfer stress`: crash-isolated stress with every request verified (issue 6).
 *
 * The parent never touches a device: it parses options, writes the default model file when
 * none is given, then runs each configuration (scenario x thread count) of each round in a
 * child forked for it (crash isolation: a segfault, abort, sanitizer report or hang ends that
 * child only). The child runs tools/stress-run.c and reports through a shared-memory result
 * that it updates as it goes, so even a crashed round says how far it got. The parent turns
 * the child's end into an outcome:
 *
 *   PASS   exit 0: every request verified, no unexpected error, slots and memory back
 *   FAIL   exit 10: mismatches or unexpected errors (counts and the first bad request)
 *   CRASH  killed by a signal: the signal and the exit code a shell shows (128 + signal)
 *   HANG   still running after --timeout: killed (SIGKILL)
 *   ERROR  the run could not start (runtime/model), or any other exit code (66: ThreadSanitizer
 *          report, 23: LeakSanitizer report, ...)
 *   SKIP   the scenario is not available here (e.g. faults without fault hooks)
 *
 * Each round appends one line to --log (round numbers continue across runs); the summary
 * table aggregates per configuration. Exit status: 0 when every round passed (or skipped),
 * 1 otherwise, 2 on a usage error.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tools/cli.h"
#include "tools/stress.h"

#define MAX_CONFIGS 64

enum outcome { OUT_PASS, OUT_FAIL, OUT_CRASH, OUT_HANG, OUT_ERROR, OUT_SKIP, OUT_COUNT };
static const char *const outcome_names[OUT_COUNT] = {"PASS", "FAIL",  "CRASH",
                                                     "HANG", "ERROR", "SKIP"};

struct tally {
    int rounds, by[OUT_COUNT];
    unsigned long long requests, mismatches, errors, expected;
    double rps_sum;
    int rps_n;
    double rss_growth, dev_growth; /* last soak round */
    int soak;
    char first_problem[400];
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: mtinfer stress [MODEL] [--threads 1,2,4,8,16,31,64] [--rounds N] [--requests N]\n"
        "                      [--duration S] [--backend auto|cpu|cuda] [--isolate|--no-isolate]\n"
        "                      [--log FILE] [--scenarios LIST] [--timeout S] [--seed N]\n"
        "                      [--tol T] [--dims LIST] [--churn N] [--wave N] [--other-threads N]\n"
        "                      [--model2 FILE] [--faults SPEC] [--interval S] [--label TEXT]\n"
        "                      [--unsafe]\n"
        "\n"
        "Runs inference from many threads and checks every output against a float64 reference\n"
        "computed once per input (mti_model_reference). Each thread has its own seeded inputs,\n"
        "so an answer from another thread's data, a stale answer or garbage is caught. Each\n"
        "configuration of each round runs in its own child process (started before any device\n"
        "is touched here) and ends PASS, FAIL (mismatches, first bad request), CRASH (signal;\n"
        "shell exit code 128+signal), HANG (killed after --timeout) or ERROR.\n"
        "\n"
        "  MODEL            a .safetensors model (default: an MLP of --dims written to a temp "
        "file)\n"
        "  --threads LIST   thread counts of the 'threads' scenario (default 1,2,4,8,16,31,64)\n"
        "  --rounds N       passes over every configuration (default 1)\n"
        "  --requests N     requests per thread per round (default 200)\n"
        "  --duration S     soak: each configuration runs S seconds instead, printing requests/s,\n"
        "                   RSS and device memory every --interval seconds (default S/10, >= 1);\n"
        "                   the summary gives their growth per hour\n"
        "  --backend B      backend (default: MTI_BACKEND, else auto); other MTI_* apply too\n"
        "  --no-isolate     run configurations in this process (a crash ends everything)\n"
        "  --log FILE       append one line per round (round numbers continue across runs)\n"
        "  --label TEXT     written into each log line (e.g. tsan, compute-sanitizer)\n"
        "  --scenarios L    any of threads,churn,exhaust,mixed,two-models,handoff,faults,batcher,\n"
        "                   cancel (default threads,churn,exhaust,mixed,two-models,handoff,\n"
        "                   batcher,cancel; +faults in fault-injection builds)\n"
        "                   churn: --churn short-lived threads (default 200), --wave at a time\n"
        "                   (default 25); exhaust: 16 threads on a pool of 4 slots, wait policy\n"
        "                   1 ms, each holds its slot 4 requests (0.3 ms pause after each), so\n"
        "                   waits time out; mixed: batch 1,2,3,5,8,16;\n"
        "                   two-models: a second model (--model2, default an MLP with GELU);\n"
        "                   handoff: producer/consumer pairs, mti_model_infer_async on device\n"
        "                   buffers, ordered by events; faults: MTI_FAULT plan --faults SPEC;\n"
        "                   batcher: requests through mti_batcher_infer; cancel: batcher\n"
        "                   handles, some cancelled, some with a 100 us timeout, each answered\n"
        "                   exactly once, then mti_batcher_stop while threads submit.\n"
        "                   mixed, two-models, handoff, faults, batcher, cancel use\n"
        "                   --other-threads (default 8)\n"
        "  --timeout S      a round still running after S seconds is a HANG (default 300)\n"
        "  --seed N         input and default-model seed (default 1)\n"
        "  --tol T          allowed max|out-ref|/max|ref| and relative L2 error (default 1e-4)\n"
        "  --dims LIST      default model widths (default 512,1024,1024,512)\n"
        "  --seq L          sequence length for sequence models (default 16)\n"
        "  --unsafe         negative control (builds with -DMTI_STRESS_UNSAFE only): every thread\n"
        "                   submits into one shared stream with the record lock bypassed; it must\n"
        "                   end FAIL or CRASH\n"
        "\n"
        "exit status: 0 every round passed, 1 a round did not, 2 usage error\n");
}

/* ---- the default model ---------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A minimal safetensors writer: 8-byte LE header length, JSON header (nn.Sequential names,
 * the architecture in __metadata__["mtinfer.config"]), then the tensors, weights uniform in
 * +-1/sqrt(fan_in) as PyTorch initialises nn.Linear. */
int stress_write_mlp(const char *path, const int *dims, int n, const char *act, uint64_t seed)
{
    size_t cap = 4096 + (size_t)n * 512, len = 0;
    char *h = malloc(cap), *cfg = malloc(cap);
    if (!h || !cfg) {
        free(h);
        free(cfg);
        return -1;
    }
    /* the config, escaped for embedding as a JSON string */
    size_t c = (size_t)snprintf(cfg, cap, "{\\\"input\\\":{\\\"features\\\":%d},\\\"layers\\\":[",
                                dims[0]);
    for (int i = 0; i + 1 < n; i++) {
        c += (size_t)snprintf(cfg + c, cap - c,
                              "%s{\\\"type\\\":\\\"linear\\\",\\\"in\\\":%d,\\\"out\\\":%d}",
                              i ? "," : "", dims[i], dims[i + 1]);
        if (i + 2 < n) c += (size_t)snprintf(cfg + c, cap - c, ",{\\\"type\\\":\\\"%s\\\"}", act);
    }
    snprintf(cfg + c, cap - c, "]}");
    len = (size_t)snprintf(h, cap,
                           "{\"__metadata__\":{\"format\":\"pt\",\"mtinfer.config\":\"%s\"}", cfg);
    size_t off = 0;
    for (int i = 0; i + 1 < n; i++) {
        int layer = 2 * i; /* nn.Sequential index: linear, act, linear, ... */
        size_t wb = (size_t)dims[i + 1] * (size_t)dims[i] * 4, bb = (size_t)dims[i + 1] * 4;
        len += (size_t)snprintf(h + len, cap - len,
                                ",\"%d.weight\":{\"dtype\":\"F32\",\"shape\":[%d,%d],"
                                "\"data_offsets\":[%zu,%zu]}"
                                ",\"%d.bias\":{\"dtype\":\"F32\",\"shape\":[%d],"
                                "\"data_offsets\":[%zu,%zu]}",
                                layer, dims[i + 1], dims[i], off, off + wb, layer, dims[i + 1],
                                off + wb, off + wb + bb);
        off += wb + bb;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8)
        h[len++] = ' ';
    FILE *fp = fopen(path, "wb");
    int ok = fp != NULL;
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)((uint64_t)len >> (8 * i));
    ok = ok && fwrite(lenb, 1, 8, fp) == 8 && fwrite(h, 1, len, fp) == len;
    for (int i = 0; i + 1 < n && ok; i++) {
        size_t count = (size_t)dims[i + 1] * ((size_t)dims[i] + 1);
        float bound = 1.0f / sqrtf((float)dims[i]);
        for (size_t j = 0; j < count && ok; j++) {
            float v = bound * (float)((splitmix(&seed) >> 40) * (1.0 / (1ull << 24)) * 2.0 - 1.0);
            ok = fwrite(&v, 4, 1, fp) == 1;
        }
    }
    if (fp && fclose(fp) != 0) ok = 0;
    free(h);
    free(cfg);
    return ok ? 0 : -1;
}

/* ---- options --------------------------------------------------------------------------------- */

static int parse_list(const char *s, int *vals, int max, int lo, int hi)
{
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < lo || v > hi || n == max || (*end && *end != ',')) return -1;
        vals[n++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return n;
}

static int parse_num(const char *name, const char *v, double lo, double hi, double *out)
{
    char *end;
    double x = v ? strtod(v, &end) : 0;
    if (!v || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "mtinfer stress: %s needs a number in %g..%g\n", name, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int scenario_from_name(const char *s, size_t len)
{
    for (int i = 0; i < SC_COUNT; i++)
        if (strlen(stress_scenario_name((enum stress_scenario)i)) == len &&
            strncmp(s, stress_scenario_name((enum stress_scenario)i), len) == 0)
            return i;
    return -1;
}

/* ---- the log -----------------------------------------------------------------------------------
 */

/* The highest "round=N" already in the log (0 when none). */
static long last_round(const char *path)
{
    FILE *fp = path ? fopen(path, "r") : NULL;
    long last = 0;
    char line[2048];
    while (fp && fgets(line, sizeof line, fp)) {
        long r;
        if (sscanf(line, "round=%ld", &r) == 1 && r > last) last = r;
    }
    if (fp) fclose(fp);
    return last;
}

/* Double quotes would break the key=value line: replace them. */
static void sanitize(char *s)
{
    for (; *s; s++)
        if (*s == '"' || *s == '\n') *s = '\'';
}

/* ---- one round
 * ----------------------------------------------------------------------------------- */

struct round_end {
    enum outcome outcome;
    int exit_code; /* what a shell shows: the exit status, or 128 + signal */
    int signal;
    char detail[480];
};

static enum outcome outcome_of_exit(int code, const struct stress_result *r)
{
    switch (code) {
    case STRESS_EXIT_PASS:
        return OUT_PASS;
    case STRESS_EXIT_FAIL:
        return OUT_FAIL;
    case STRESS_EXIT_SKIP:
        return OUT_SKIP;
    default:
        (void)r;
        return OUT_ERROR;
    }
}

static void describe(struct round_end *e, const struct stress_result *r)
{
    const char *bad = r->first_bad[0] ? r->first_bad : "";
    switch (e->outcome) {
    case OUT_PASS:
    case OUT_SKIP:
        snprintf(e->detail, sizeof e->detail, "%s", r->note);
        break;
    case OUT_FAIL:
        snprintf(e->detail, sizeof e->detail, "first bad: %s", bad);
        break;
    case OUT_CRASH:
        snprintf(e->detail, sizeof e->detail, "signal %d (%s), exit code %d%s%s", e->signal,
                 strsignal(e->signal), e->exit_code, bad[0] ? "; first bad: " : "", bad);
        break;
    case OUT_HANG:
        snprintf(e->detail, sizeof e->detail, "killed after the timeout%s%s",
                 bad[0] ? "; first bad: " : "", bad);
        break;
    default:
        snprintf(e->detail, sizeof e->detail, "%s%s%s", r->setup_failed ? "setup: " : "",
                 r->setup_failed ? r->note : "",
                 r->setup_failed      ? ""
                 : e->exit_code == 66 ? "exit 66 (a ThreadSanitizer report?)"
                 : e->exit_code == 23 ? "exit 23 (a LeakSanitizer report?)"
                                      : "unexpected exit code");
        break;
    }
}

static struct round_end run_isolated(const struct stress_opts *o, const struct stress_config *c,
                                     struct stress_result *r, double timeout)
{
    struct round_end e = {0};
    fflush(NULL); /* the child must not inherit buffered output */
    pid_t pid = fork();
    if (pid < 0) {
        e.outcome = OUT_ERROR;
        snprintf(r->note, sizeof r->note, "fork: %s", strerror(errno));
        r->setup_failed = 1;
        return e;
    }
    if (pid == 0) {
        int code = stress_run_config(o, c, r);
        fflush(NULL);
        exit(code); /* exit, not _exit: LeakSanitizer checks at exit */
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) {
            e.outcome = OUT_ERROR;
            return e;
        }
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) * 1e-9 > timeout) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            e.outcome = OUT_HANG;
            e.signal = SIGKILL;
            e.exit_code = 128 + SIGKILL;
            return e;
        }
        struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    if (WIFSIGNALED(status)) {
        e.outcome = OUT_CRASH;
        e.signal = WTERMSIG(status);
        e.exit_code = 128 + e.signal;
    } else {
        e.exit_code = WEXITSTATUS(status);
        e.outcome = outcome_of_exit(e.exit_code, r);
    }
    return e;
}

static struct round_end run_inline(const struct stress_opts *o, const struct stress_config *c,
                                   struct stress_result *r)
{
    struct round_end e = {0};
    e.exit_code = stress_run_config(o, c, r);
    e.outcome = outcome_of_exit(e.exit_code, r);
    return e;
}

/* ---- summary
 * -------------------------------------------------------------------------------------- */

static void print_summary(const struct stress_config *cfg, int n_cfg, const struct tally *t,
                          const char *device, const char *model, double wall, long first_round,
                          long rounds, int soak)
{
    printf("\nmtinfer stress: %s | model %s | rounds %ld..%ld | %.1f s\n\n",
           device[0] ? device : "(no device reported)", model, first_round,
           first_round + rounds - 1, wall);
    printf("| configuration | rounds | PASS | FAIL | CRASH | HANG | ERROR | verified requests | "
           "mismatches | errors | expected errors | req/s (mean) |%s\n",
           soak ? " RSS MiB/h | device MiB/h |" : "");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|%s\n",
           soak ? "---:|---:|" : "");
    struct tally all = {0};
    for (int i = 0; i < n_cfg; i++) {
        const struct tally *x = &t[i];
        if (x->by[OUT_SKIP] == x->rounds) {
            printf("| %s | %d | SKIP: %s |\n", cfg[i].name, x->rounds, x->first_problem);
            continue;
        }
        printf("| %s | %d | %d | %d | %d | %d | %d | %llu | %llu | %llu | %llu | %.0f |",
               cfg[i].name, x->rounds, x->by[OUT_PASS], x->by[OUT_FAIL], x->by[OUT_CRASH],
               x->by[OUT_HANG], x->by[OUT_ERROR], x->requests, x->mismatches, x->errors,
               x->expected, x->rps_n ? x->rps_sum / x->rps_n : 0.0);
        if (soak) printf(" %+.2f | %+.2f |", x->rss_growth, x->dev_growth);
        printf("\n");
        all.rounds += x->rounds;
        for (int k = 0; k < OUT_COUNT; k++)
            all.by[k] += x->by[k];
        all.requests += x->requests;
        all.mismatches += x->mismatches;
        all.errors += x->errors;
        all.expected += x->expected;
    }
    printf("| **total** | %d | %d | %d | %d | %d | %d | %llu | %llu | %llu | %llu | |%s\n",
           all.rounds, all.by[OUT_PASS], all.by[OUT_FAIL], all.by[OUT_CRASH], all.by[OUT_HANG],
           all.by[OUT_ERROR], all.requests, all.mismatches, all.errors, all.expected,
           soak ? " | |" : "");
    int problems = 0;
    for (int i = 0; i < n_cfg; i++)
        if (t[i].by[OUT_FAIL] + t[i].by[OUT_CRASH] + t[i].by[OUT_HANG] + t[i].by[OUT_ERROR]) {
            if (!problems++) printf("\nfirst problem per configuration:\n");
            printf("  %s: %s\n", cfg[i].name, t[i].first_problem);
        }
    printf("\nverdict: %s (%d rounds: %d PASS, %d FAIL, %d CRASH, %d HANG, %d ERROR, %d SKIP; "
           "%llu verified requests, %llu mismatches)\n",
           problems ? "NOT OK" : "OK", all.rounds + (int)0, all.by[OUT_PASS], all.by[OUT_FAIL],
           all.by[OUT_CRASH], all.by[OUT_HANG], all.by[OUT_ERROR], all.by[OUT_SKIP], all.requests,
           all.mismatches);
}

/* ---- main
 * ------------------------------------------------------------------------------------------- */

int mti_cli_stress(int argc, char **argv)
{
    struct stress_opts o = {
        .requests = 200,
        .tol = 1e-4,
        .seed = 1,
        .churn_wave = 25,
        .other_threads = 8,
        .seq = 16,
        .fault_spec = "alloc:2:2:50,submit:40:1:97,stream_error:70:1:131",
    };
    int threads[32] = {1, 2, 4, 8, 16, 31, 64}, n_threads = 7;
    int dims[16] = {512, 1024, 1024, 512}, n_dims = 4;
    int rounds = 1, isolate = 1, unsafe = 0, churn = 200;
    double timeout = 300, interval = 0;
    const char *log_path = NULL, *scenarios = NULL, *label = "";
    int64_t dummy = 0;
    (void)dummy;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        int bad = 0, takes = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--threads")) {
            bad = !v || (n_threads = parse_list(v, threads, 32, 1, 1024)) < 1;
        } else if (!strcmp(a, "--dims")) {
            bad = !v || (n_dims = parse_list(v, dims, 16, 1, 1 << 16)) < 2;
        } else if (!strcmp(a, "--rounds")) {
            bad = parse_num(a, v, 1, 1e9, &d) != 0;
            rounds = (int)d;
        } else if (!strcmp(a, "--requests")) {
            bad = parse_num(a, v, 1, 1e9, &d) != 0;
            o.requests = (int)d;
        } else if (!strcmp(a, "--duration")) {
            bad = parse_num(a, v, 0.1, 1e7, &o.duration) != 0;
        } else if (!strcmp(a, "--interval")) {
            bad = parse_num(a, v, 0.1, 1e6, &interval) != 0;
        } else if (!strcmp(a, "--timeout")) {
            bad = parse_num(a, v, 1, 1e7, &timeout) != 0;
        } else if (!strcmp(a, "--tol")) {
            bad = parse_num(a, v, 0, 1, &o.tol) != 0;
        } else if (!strcmp(a, "--seed")) {
            bad = parse_num(a, v, 0, 1e15, &d) != 0;
            o.seed = (uint64_t)d;
        } else if (!strcmp(a, "--churn")) {
            bad = parse_num(a, v, 1, 1e6, &d) != 0;
            churn = (int)d;
        } else if (!strcmp(a, "--wave")) {
            bad = parse_num(a, v, 1, 1024, &d) != 0;
            o.churn_wave = (int)d;
        } else if (!strcmp(a, "--other-threads")) {
            bad = parse_num(a, v, 1, 1024, &d) != 0;
            o.other_threads = (int)d;
        } else if (!strcmp(a, "--seq")) {
            bad = parse_num(a, v, 1, 8192, &d) != 0;
            o.seq = (int)d;
        } else if (!strcmp(a, "--backend")) {
            bad = !v;
            if (v && !strcmp(v, "cpu"))
                o.backend = MTI_BACKEND_CPU;
            else if (v && !strcmp(v, "cuda"))
                o.backend = MTI_BACKEND_CUDA;
            else if (v && !strcmp(v, "auto"))
                o.backend = MTI_BACKEND_AUTO;
            else
                bad = 1;
            o.backend_set = 1;
        } else if (!strcmp(a, "--log")) {
            bad = !v;
            log_path = v;
        } else if (!strcmp(a, "--scenarios")) {
            bad = !v;
            scenarios = v;
        } else if (!strcmp(a, "--label")) {
            bad = !v;
            label = v;
        } else if (!strcmp(a, "--model2")) {
            bad = !v;
            o.model2_path = v;
        } else if (!strcmp(a, "--faults")) {
            bad = !v;
            o.fault_spec = v;
        } else if (!strcmp(a, "--isolate")) {
            isolate = 1;
            takes = 0;
        } else if (!strcmp(a, "--no-isolate")) {
            isolate = 0;
            takes = 0;
        } else if (!strcmp(a, "--unsafe")) {
            unsafe = 1;
            takes = 0;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o.verbose = 1;
            takes = 0;
        } else if (a[0] != '-' && !o.model_path) {
            o.model_path = a;
            takes = 0;
        } else {
            fprintf(stderr, "mtinfer stress: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "mtinfer stress: bad or missing value for %s\n", a);
            return 2;
        }
        i += takes;
    }
#ifndef MTI_STRESS_UNSAFE
    if (unsafe) {
        fprintf(stderr, "mtinfer stress: --unsafe is the negative control of test builds only "
                        "(make VARIANT=-DMTI_STRESS_UNSAFE); this build does not have it\n");
        return 2;
    }
#endif
#ifndef MTI_FAULT_INJECTION
    if (getenv("MTI_FAULT") && *getenv("MTI_FAULT")) {
        fprintf(stderr, "mtinfer stress: MTI_FAULT is set but this build has no fault hooks "
                        "(make VARIANT=-DMTI_FAULT_INJECTION)\n");
        return 2;
    }
#endif
    if (unsafe && !isolate) {
        fprintf(stderr, "mtinfer stress: --unsafe runs isolated only (it is expected to crash)\n");
        return 2;
    }
    o.interval = interval > 0 ? interval : (o.duration / 10 < 1 ? 1 : o.duration / 10);
    if (o.duration > 0 && timeout < o.duration + 120) timeout = o.duration + 120;

    /* The configurations of one round. */
    struct stress_config cfg[MAX_CONFIGS];
    int n_cfg = 0;
    if (unsafe) {
        for (int i = 0; i < n_threads && n_cfg < MAX_CONFIGS; i++) {
            if (threads[i] < 2) continue;
            cfg[n_cfg] = (struct stress_config){SC_UNSAFE, threads[i], ""};
            snprintf(cfg[n_cfg].name, sizeof cfg[n_cfg].name, "unsafe/%d", threads[i]);
            n_cfg++;
        }
    } else {
        char def[128];
        snprintf(def, sizeof def, "threads,churn,exhaust,mixed,two-models,handoff,batcher,cancel%s",
#ifdef MTI_FAULT_INJECTION
                 ",faults"
#else
                 ""
#endif
        );
        const char *p = scenarios ? scenarios : def;
        while (*p) {
            size_t len = strcspn(p, ",");
            int sc = scenario_from_name(p, len);
            if (sc < 0 || sc == SC_UNSAFE) {
                fprintf(stderr, "mtinfer stress: unknown scenario '%.*s'\n", (int)len, p);
                return 2;
            }
            if (sc == SC_THREADS) {
                for (int i = 0; i < n_threads && n_cfg < MAX_CONFIGS; i++) {
                    cfg[n_cfg] = (struct stress_config){SC_THREADS, threads[i], ""};
                    snprintf(cfg[n_cfg].name, sizeof cfg[n_cfg].name, "threads/%d", threads[i]);
                    n_cfg++;
                }
            } else if (n_cfg < MAX_CONFIGS) {
                int t = sc == SC_CHURN ? churn : sc == SC_EXHAUST ? 16 : o.other_threads;
                cfg[n_cfg] = (struct stress_config){(enum stress_scenario)sc, t, ""};
                snprintf(cfg[n_cfg].name, sizeof cfg[n_cfg].name, "%s/%d",
                         stress_scenario_name((enum stress_scenario)sc), t);
                n_cfg++;
            }
            p += len + (p[len] == ',');
        }
    }
    if (n_cfg == 0) {
        fprintf(stderr, "mtinfer stress: nothing to run\n");
        return 2;
    }

    /* A temp dir for the default model and second models; no device is touched here. */
    char tmp[] = "/tmp/mtinfer-stress-XXXXXX", model_file[600];
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "mtinfer stress: mkdtemp: %s\n", strerror(errno));
        return 2;
    }
    o.tmp_dir = tmp;
    if (!o.model_path) {
        snprintf(model_file, sizeof model_file, "%s/mlp.safetensors", tmp);
        if (stress_write_mlp(model_file, dims, n_dims, "relu", o.seed) != 0) {
            fprintf(stderr, "mtinfer stress: cannot write %s\n", model_file);
            rmdir(tmp);
            return 2;
        }
        o.model_path = model_file;
    }
    char model_desc[700];
    if (o.model_path == model_file) {
        int c = snprintf(model_desc, sizeof model_desc, "MLP ");
        for (int i = 0; i < n_dims; i++)
            c += snprintf(model_desc + c, sizeof model_desc - (size_t)c, "%s%d", i ? "-" : "",
                          dims[i]);
    } else {
        snprintf(model_desc, sizeof model_desc, "%s", o.model_path);
    }

    struct stress_result *res =
        mmap(NULL, sizeof *res, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (res == MAP_FAILED) {
        fprintf(stderr, "mtinfer stress: mmap: %s\n", strerror(errno));
        return 2;
    }
    struct tally *tal = calloc((size_t)n_cfg, sizeof *tal);
    FILE *log = NULL;
    long round_no = last_round(log_path);
    long first_round = round_no + 1;
    if (log_path && !(log = fopen(log_path, "a"))) {
        fprintf(stderr, "mtinfer stress: cannot append to %s: %s\n", log_path, strerror(errno));
        return 2;
    }
    char device[96] = "";
    struct timespec w0, w1;
    clock_gettime(CLOCK_MONOTONIC, &w0);
    printf("mtinfer stress: %d configuration(s) x %d round(s), %s, %s%s\n", n_cfg, rounds,
           o.duration > 0 ? "soak" : "fixed requests", isolate ? "isolated" : "in-process",
           unsafe ? ", NEGATIVE CONTROL (unsafe build)" : "");
    for (int rd = 0; rd < rounds; rd++) {
        for (int i = 0; i < n_cfg; i++) {
            memset(res, 0, sizeof *res);
            struct round_end e =
                isolate ? run_isolated(&o, &cfg[i], res, timeout) : run_inline(&o, &cfg[i], res);
            describe(&e, res);
            round_no++;
            if (res->device[0]) snprintf(device, sizeof device, "%s", res->device);
            struct tally *t = &tal[i];
            t->rounds++;
            t->by[e.outcome]++;
            t->requests += atomic_load(&res->requests);
            t->mismatches += atomic_load(&res->mismatches);
            t->errors += atomic_load(&res->errors);
            t->expected += atomic_load(&res->expected_errors);
            if (e.outcome == OUT_PASS && res->rps > 0) {
                t->rps_sum += res->rps;
                t->rps_n++;
            }
            if (res->soak_samples) {
                t->soak = 1;
                t->rss_growth = res->rss_growth_mib_h;
                t->dev_growth = res->dev_growth_mib_h;
            }
            if ((e.outcome != OUT_PASS && !t->first_problem[0]) ||
                (e.outcome == OUT_SKIP && !t->first_problem[0]))
                snprintf(t->first_problem, sizeof t->first_problem, "round %ld %s: %s", round_no,
                         outcome_names[e.outcome], e.detail);
            char line_detail[480];
            snprintf(line_detail, sizeof line_detail, "%s", e.detail);
            sanitize(line_detail);
            if (o.verbose || e.outcome != OUT_PASS || rounds * n_cfg <= 64)
                printf("round %-6ld %-16s %-5s requests=%-9llu mismatches=%llu errors=%llu "
                       "wall=%.2fs req/s=%.0f%s%s\n",
                       round_no, cfg[i].name, outcome_names[e.outcome],
                       (unsigned long long)atomic_load(&res->requests),
                       (unsigned long long)atomic_load(&res->mismatches),
                       (unsigned long long)atomic_load(&res->errors), res->wall_s, res->rps,
                       line_detail[0] ? "  " : "", line_detail);
            if (res->soak_samples)
                printf("  soak %s: RSS %.1f -> %.1f MiB (%+.2f MiB/h), device %.1f -> %.1f MiB "
                       "(%+.2f MiB/h), %d samples\n",
                       cfg[i].name, res->rss_first_mib, res->rss_last_mib, res->rss_growth_mib_h,
                       res->dev_first_mib, res->dev_last_mib, res->dev_growth_mib_h,
                       res->soak_samples);
            if (log) {
                time_t now = time(NULL);
                struct tm tm;
                char when[32];
                gmtime_r(&now, &tm);
                strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
                fprintf(log,
                        "round=%ld time=%s label=\"%s\" device=\"%s\" config=%s outcome=%s "
                        "requests=%llu "
                        "mismatches=%llu errors=%llu expected_errors=%llu crashes=%d exit=%d "
                        "signal=%d wall_s=%.3f rps=%.0f rss_mib_h=%.3f dev_mib_h=%.3f "
                        "detail=\"%s\"\n",
                        round_no, when, label, res->device, cfg[i].name, outcome_names[e.outcome],
                        (unsigned long long)atomic_load(&res->requests),
                        (unsigned long long)atomic_load(&res->mismatches),
                        (unsigned long long)atomic_load(&res->errors),
                        (unsigned long long)atomic_load(&res->expected_errors),
                        e.outcome == OUT_CRASH, e.exit_code, e.signal, res->wall_s, res->rps,
                        res->rss_growth_mib_h, res->dev_growth_mib_h, line_detail);
                fflush(log);
            }
            fflush(stdout);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &w1);
    int soak = o.duration > 0;
    print_summary(cfg, n_cfg, tal, device, model_desc,
                  (double)(w1.tv_sec - w0.tv_sec) + (w1.tv_nsec - w0.tv_nsec) * 1e-9, first_round,
                  round_no - first_round + 1, soak);
    int failed = 0;
    for (int i = 0; i < n_cfg; i++)
        failed +=
            tal[i].by[OUT_FAIL] + tal[i].by[OUT_CRASH] + tal[i].by[OUT_HANG] + tal[i].by[OUT_ERROR];
    if (log) fclose(log);
    free(tal);
    munmap(res, sizeof *res);
    if (o.model_path == model_file) unlink(model_file);
    rmdir(tmp);
    return failed ? 1 : 0;
}
