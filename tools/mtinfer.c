/*
 * The mtinfer command-line tool: subcommand dispatch, `info` and `--help`. Each subcommand
 * lives in its own file (bench.c, ...) and only calls the public API.
 */
#include <stdio.h>
#include <string.h>

#include "mtinfer.h"
#include "tools/cli.h"

static void print_usage(FILE *out)
{
    fprintf(
        out,
        "usage: mtinfer <command> [options]\n"
        "\n"
        "Safe, fast multi-threaded neural-network inference on one GPU (CUDA) or the CPU.\n"
        "\n"
        "commands:\n"
        "  info     the backend and device a runtime picks here, and its settings\n"
        "  bench    measure request throughput: threads through the stream pool, batching,\n"
        "           and a plain BLAS loop as the ceiling (mtinfer bench --help)\n"
        "  model    create a model file (mlp, transformer) or describe one (mtinfer model --help)\n"
        "  run      one forward pass of a model file, optionally checked against the float64\n"
        "           reference (mtinfer run --help)\n"
        "  stress   crash-isolated multi-thread stress, every output verified (mtinfer stress "
        "--help)\n"
        "  help     this text\n"
        "\n"
        "Runtime settings come from MTI_* environment variables (see README.md):\n"
        "  MTI_BACKEND=auto|cpu|cuda  MTI_POOL_SIZE=1..64  MTI_POOL_EXHAUSTION=fail|wait|block\n"
        "  MTI_POOL_WAIT_MS=N  MTI_STREAM_ASSIGN=exclusive|round-robin\n"
        "  MTI_SYNC_MODE=auto|spin|yield|block  MTI_SERIALIZATION=per-stream|global|semaphore[:N]\n"
        "  MTI_MEMORY_LIMIT=bytes[K|M|G]  MTI_ALLOC_POISON=0|1  "
        "MTI_LOG_LEVEL=error|warn|info|debug\n");
}

static int cmd_info(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: mtinfer info\n\nCreates a runtime from the MTI_* environment and prints "
               "what it chose.\n");
        return 0;
    }
    mti_runtime_t rt;
    mti_status st = mti_runtime_create(NULL, &rt);
    if (st != MTI_OK) {
        fprintf(stderr, "mtinfer: %s\n", mti_last_error_message());
        return 2;
    }
    mti_runtime_params p;
    mti_runtime_params_default(&p);
    mti_runtime_params_from_env(&p);
    printf("mtinfer %d.%d.%d\n", MTI_VERSION_MAJOR, MTI_VERSION_MINOR, MTI_VERSION_PATCH);
    printf("backend:       %s\n", mti_backend_name(mti_runtime_backend(rt)));
    printf("device:        %s\n", mti_runtime_device_name(rt));
    printf("pool size:     %d slots per device\n", p.pool_size);
    mti_runtime_destroy(rt);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) return mti_cli_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "model") == 0) return mti_cli_model(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0) return mti_cli_run(argc - 1, argv + 1);
    if (strcmp(cmd, "stress") == 0) return mti_cli_stress(argc - 1, argv + 1);
    fprintf(stderr, "mtinfer: unknown command '%s'\n\n", cmd);
    print_usage(stderr);
    return 2;
}
