/* Environment and flag parsing. Stateless; thread-safe as long as nobody calls setenv(). */
#include "base/env.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mti_status mti__parse_enum(const char *what, const char *value, const char *const *names, int n,
                           int *out)
{
    char accepted[256] = "";
    for (int i = 0; i < n; i++) {
        if (strcmp(value, names[i]) == 0) {
            *out = i;
            return MTI_OK;
        }
        size_t used = strlen(accepted);
        snprintf(accepted + used, sizeof accepted - used, "%s%s", i ? "|" : "", names[i]);
    }
    return mti__error(MTI_ERR_INVALID_ARGUMENT, "%s: '%s' is not one of %s", what, value, accepted);
}

mti_status mti__parse_int(const char *what, const char *value, long min, long max, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0')
        return mti__error(MTI_ERR_INVALID_ARGUMENT, "%s: '%s' is not an integer", what, value);
    if (v < min || v > max)
        return mti__error(MTI_ERR_INVALID_ARGUMENT, "%s: '%s' is out of range %ld..%ld", what,
                          value, min, max);
    *out = (int)v;
    return MTI_OK;
}

mti_status mti__parse_size(const char *what, const char *value, size_t *out)
{
    char *end = NULL;
    errno = 0;
    if (value[0] == '-')
        return mti__error(MTI_ERR_INVALID_ARGUMENT, "%s: '%s' is negative", what, value);
    unsigned long long v = strtoull(value, &end, 10);
    if (errno != 0 || end == value)
        return mti__error(MTI_ERR_INVALID_ARGUMENT, "%s: '%s' is not a byte count (e.g. 512M)",
                          what, value);
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift) end++;
    if (*end != '\0')
        return mti__error(MTI_ERR_INVALID_ARGUMENT,
                          "%s: '%s' is not a byte count (digits with an optional K, M or G)", what,
                          value);
    if (shift && v > (~0ULL >> shift))
        return mti__error(MTI_ERR_INVALID_ARGUMENT, "%s: '%s' is too large", what, value);
    *out = (size_t)(v << shift);
    return MTI_OK;
}

static const char *env_value(const char *var)
{
    const char *v = getenv(var);
    return (v && *v) ? v : NULL;
}

mti_status mti__env_enum(const char *var, const char *const *names, int n, int *out)
{
    const char *v = env_value(var);
    return v ? mti__parse_enum(var, v, names, n, out) : MTI_OK;
}

mti_status mti__env_int(const char *var, long min, long max, int *out)
{
    const char *v = env_value(var);
    return v ? mti__parse_int(var, v, min, max, out) : MTI_OK;
}

mti_status mti__env_size(const char *var, size_t *out)
{
    const char *v = env_value(var);
    return v ? mti__parse_size(var, v, out) : MTI_OK;
}
