/* The CPU device: one per process, host memory from aligned_alloc. No shared mutable state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu-internal.h"

static void device_destroy(mti_backend_device *dev)
{
    free(dev);
}

static mti_status mem_alloc(mti_backend_device *dev, size_t bytes, void **out)
{
    (void)dev;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) return mti__error(MTI_ERR_OUT_OF_MEMORY, "host allocation of %zu bytes failed", bytes);
    *out = p;
    return MTI_OK;
}

static void mem_free(mti_backend_device *dev, void *ptr)
{
    (void)dev;
    free(ptr);
}

static const struct mti_backend_device_i cpu_device_iface = {
    .name = "cpu",
    .destroy = device_destroy,
    .stream_create = mti__cpu_stream_create,
    .event_create = mti__cpu_event_create,
    .mem_alloc = mem_alloc,
    .mem_free = mem_free,
};

int mti__cpu_count_devices(const char **why)
{
    *why = NULL;
    return 1;
}

static void read_cpu_model(char *out, size_t size)
{
    snprintf(out, size, "cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *colon = strchr(line, ':');
            if (colon) {
                colon += 2;
                colon[strcspn(colon, "\n")] = '\0';
                snprintf(out, size, "%s (%ld cores)", colon, sysconf(_SC_NPROCESSORS_ONLN));
            }
            break;
        }
    }
    fclose(f);
}

mti_status mti__cpu_device_open(int ordinal, mti_sync_mode sync_mode, mti_backend_device **out)
{
    *out = NULL;
    if (ordinal != 0)
        return mti__error(MTI_ERR_NOT_FOUND, "cpu device %d: the CPU backend has one device",
                          ordinal);
    struct cpu_device *d = calloc(1, sizeof *d);
    if (!d) return mti__error(MTI_ERR_OUT_OF_MEMORY, "cpu device");
    d->base.iface = &cpu_device_iface;
    d->base.ordinal = 0;
    d->sync_mode = sync_mode;
    read_cpu_model(d->base.name, sizeof d->base.name);
    *out = &d->base;
    return MTI_OK;
}
