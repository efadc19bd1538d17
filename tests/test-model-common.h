/* Helpers of the model tests: temp dirs, raw files, small safetensors files built by hand. */
#ifndef MTI_TEST_MODEL_COMMON_H
#define MTI_TEST_MODEL_COMMON_H

#include <math.h>
#include <unistd.h>

#include "test-common.h"

static inline void make_temp_dir(char *buf, size_t size)
{
    snprintf(buf, size, "/tmp/mti-model-XXXXXX");
    CHECK(mkdtemp(buf) != NULL, "mkdtemp failed");
}

static inline void remove_temp_dir(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "%s", cmd);
}

static inline void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL, "cannot write %s", path);
    CHECK(fwrite(data, 1, n, fp) == n, "short write %s", path);
    fclose(fp);
}

/* Reads a whole file; *n gets its size. The caller frees. */
static inline void *read_bytes(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    CHECK(fp != NULL, "cannot read %s", path);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    rewind(fp);
    void *buf = malloc(len > 0 ? (size_t)len : 1);
    CHECK(fread(buf, 1, (size_t)len, fp) == (size_t)len, "short read %s", path);
    fclose(fp);
    *n = (size_t)len;
    return buf;
}

/* A safetensors file: 8-byte length, header (as given), then data bytes. */
static inline void write_safetensors(const char *path, const char *header, const void *data,
                                     size_t data_len)
{
    size_t hl = strlen(header);
    unsigned char *buf = malloc(8 + hl + data_len);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (data_len) memcpy(buf + 8 + hl, data, data_len);
    write_bytes(path, buf, 8 + hl + data_len);
    free(buf);
}

/* The JSON string literal of a config, escaped for embedding in the metadata. */
#define TINY_CONFIG                                                                                \
    "{\\\"input\\\":{\\\"features\\\":4},\\\"layers\\\":[{\\\"type\\\":\\\"linear\\\","            \
    "\\\"in\\\":4,\\\"out\\\":3},{\\\"type\\\":\\\"relu\\\"}]}"

/* A valid tiny model: linear 4 -> 3 with bias, then ReLU. tensors is the JSON of the tensor
 * entries (after the metadata), data 60 bytes: weight [3,4] then bias [3]. */
#define TINY_TENSORS                                                                               \
    "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"                    \
    "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}"

static inline void tiny_data(float data[15])
{
    for (int i = 0; i < 15; i++)
        data[i] = (float)(i % 5) * 0.25f - 0.5f;
}

#endif
