/*
 * The peer: bench/peers/torch_peer.py runs the same workloads through PyTorch, from the same
 * safetensors files, with the same request definition, and prints one JSON object. We run it
 * once per bench (one interpreter start) and read its figures into the report's columns.
 */
#include <stdlib.h>
#include <string.h>

#include "tools/bench.h"

cJSON *bench_run_peer(const struct bench_options *o, mti_backend_kind backend, const char *mlp_path,
                      const char *story_path)
{
    char threads[256] = "", batches[256] = "";
    for (int i = 0; i < o->n_threads; i++)
        snprintf(threads + strlen(threads), sizeof threads - strlen(threads), "%s%d", i ? "," : "",
                 o->threads[i]);
    for (int i = 0; i < o->n_batches; i++)
        snprintf(batches + strlen(batches), sizeof batches - strlen(batches), "%s%d", i ? "," : "",
                 o->batches[i]);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s --device %s --mlp %s --story %s --threads %s "
             "--batches %s --duration %.3f --trials %d%s",
             o->peer, backend == MTI_BACKEND_CUDA ? "cuda" : "cpu", mlp_path, story_path, threads,
             batches, o->duration_s, o->trials,
             (o->sections & (SEC_THREADS | SEC_STORY | SEC_BATCH)) ? "" : " --skip-all");
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, "mtinfer bench: cannot start the peer: %s\n", cmd);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    size_t n;
    while (text && (n = fread(text + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *bigger = realloc(text, cap *= 2);
            if (!bigger) break;
            text = bigger;
        }
    }
    int status = pclose(p);
    if (!text) return NULL;
    text[len] = '\0';
    cJSON *json = status == 0 ? cJSON_Parse(text) : NULL;
    cJSON *avail = cJSON_GetObjectItem(json, "available");
    if (!json || !cJSON_IsTrue(avail)) {
        cJSON *why = cJSON_GetObjectItem(json, "reason");
        fprintf(stderr, "mtinfer bench: PyTorch peer not used: %s\n",
                cJSON_IsString(why) ? why->valuestring : "it failed (see its stderr above)");
        cJSON_Delete(json);
        json = NULL;
    }
    free(text);
    return json;
}
