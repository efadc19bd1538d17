/*
 * Strict parsing of MTI_* environment variables: an unset or empty variable leaves the value
 * alone; anything malformed is MTI_ERR_INVALID_ARGUMENT naming the variable and what it takes.
 */
#ifndef MTI_BASE_ENV_H
#define MTI_BASE_ENV_H

#include <stddef.h>

#include "base/status.h"

/* value is one of names[0..n) (case-sensitive); *out gets its index. */
mti_status mti__env_enum(const char *var, const char *const *names, int n, int *out);
/* A decimal integer in [min, max]. */
mti_status mti__env_int(const char *var, long min, long max, int *out);
/* A byte count, with an optional K, M or G suffix (powers of 1024). */
mti_status mti__env_size(const char *var, size_t *out);

/* The same parsers on a string, for CLI flags (what names the value in messages). */
mti_status mti__parse_enum(const char *what, const char *value, const char *const *names, int n,
                           int *out);
mti_status mti__parse_int(const char *what, const char *value, long min, long max, int *out);
mti_status mti__parse_size(const char *what, const char *value, size_t *out);

#endif
