/*
 * libFuzzer target for the model loader: the input is a whole .safetensors image (header
 * length, JSON header with the config in __metadata__, data). It runs the full parse and
 * validation (safetensors.c, config.c, blob copy) that mti_model_load runs after mmap, without
 * a runtime. Any crash, leak, overflow or undefined behaviour is a bug; errors are expected.
 * Build and run: make fuzz FUZZ_SECONDS=60 (seed corpus in fuzz/corpus/).
 */
#include <stddef.h>
#include <stdint.h>

#include "model/model-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mti_model_desc *d = NULL;
    if (mti__model_parse(data, size, NULL, "fuzz", &d) == MTI_OK) mti__model_desc_free(d);
    return 0;
}
