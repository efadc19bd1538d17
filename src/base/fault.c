/*
 * Fault injection plan and counters (see fault.h). The plan is a handful of atomics written
 * only by mti__fault_configure (or once from MTI_FAULT at the first hook) while no hook runs;
 * a hook is one relaxed fetch_add on its kind's counter plus a few loads, so the counters
 * need no lock and do not order anything else. No locks here.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/atomics.h"
#include "base/fault.h"

static const char *const kind_names[MTI_FAULT_KINDS] = {"alloc", "submit", "stream_error"};

struct fault_plan {
    _Atomic uint64_t first, count, period; /* first == 0: never */
    MTI_CACHE_ALIGNED _Atomic uint64_t seen;
    _Atomic uint64_t fired;
};

static struct fault_plan plans[MTI_FAULT_KINDS];
/* acquire/release: a hook that sees 1 sees the plan written before it */
static _Atomic int configured;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

bool mti__fault_enabled(void)
{
#ifdef MTI_FAULT_INJECTION
    return true;
#else
    return false;
#endif
}

static mti_status parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 18) return MTI_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return MTI_ERR_INVALID_ARGUMENT;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return MTI_OK;
}

/* One "kind:N[:K[:P]]" entry of length len into vals (first, count, period). */
static mti_status parse_entry(const char *e, size_t len, int *kind, uint64_t vals[3])
{
    const char *colon = memchr(e, ':', len);
    if (!colon) return MTI_ERR_INVALID_ARGUMENT;
    *kind = -1;
    for (int k = 0; k < MTI_FAULT_KINDS; k++)
        if (strlen(kind_names[k]) == (size_t)(colon - e) &&
            memcmp(e, kind_names[k], (size_t)(colon - e)) == 0)
            *kind = k;
    if (*kind < 0) return MTI_ERR_INVALID_ARGUMENT;
    vals[0] = 0;
    vals[1] = 1;
    vals[2] = 0;
    const char *p = colon + 1, *end = e + len;
    for (int i = 0; i < 3; i++) {
        const char *q = memchr(p, ':', (size_t)(end - p));
        if (!q) q = end;
        if (parse_u64(p, (size_t)(q - p), &vals[i]) != MTI_OK) return MTI_ERR_INVALID_ARGUMENT;
        if (q == end) return vals[0] >= 1 && vals[1] >= 1 ? MTI_OK : MTI_ERR_INVALID_ARGUMENT;
        p = q + 1;
    }
    return MTI_ERR_INVALID_ARGUMENT; /* a fourth number */
}

static void clear_plans(void)
{
    for (int k = 0; k < MTI_FAULT_KINDS; k++) {
        mti_atomic_store_relaxed(&plans[k].first, 0);
        mti_atomic_store_relaxed(&plans[k].count, 0);
        mti_atomic_store_relaxed(&plans[k].period, 0);
        mti_atomic_store_relaxed(&plans[k].seen, 0);
        mti_atomic_store_relaxed(&plans[k].fired, 0);
    }
}

static mti_status apply(const char *spec)
{
    clear_plans();
    const char *p = spec ? spec : "";
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int kind;
        uint64_t vals[3];
        if (parse_entry(p, len, &kind, vals) != MTI_OK) {
            clear_plans();
            return mti__error(MTI_ERR_INVALID_ARGUMENT,
                              "MTI_FAULT: '%.*s' is not kind:N[:K[:P]] with kind "
                              "alloc|submit|stream_error, N >= 1, K >= 1",
                              (int)len, p);
        }
        /* Armed last, right after the counter restarts, so hooks running on other threads
         * meanwhile (tests arm a plan while a bystander runs) cannot skip past N. */
        mti_atomic_store_relaxed(&plans[kind].count, vals[1]);
        mti_atomic_store_relaxed(&plans[kind].period, vals[2]);
        mti_atomic_store_relaxed(&plans[kind].seen, 0);
        mti_atomic_store_relaxed(&plans[kind].fired, 0);
        mti_atomic_store_relaxed(&plans[kind].first, vals[0]);
        p = comma ? comma + 1 : p + len;
    }
    if (spec && *spec && !mti__fault_enabled()) {
        clear_plans();
        return mti__error(MTI_ERR_UNSUPPORTED, "MTI_FAULT is set but this build has no fault hooks "
                                               "(build with VARIANT=-DMTI_FAULT_INJECTION)");
    }
    return MTI_OK;
}

static void env_init(void)
{
    if (mti_atomic_load_acquire(&configured)) return;
    apply(getenv("MTI_FAULT")); /* a malformed value leaves no plan; stress checks it first */
    mti_atomic_store_release(&configured, 1);
}

mti_status mti__fault_configure(const char *spec)
{
    mti_status st = apply(spec ? spec : getenv("MTI_FAULT"));
    mti_atomic_store_release(&configured, 1);
    return st;
}

uint64_t mti__fault_seen(enum mti_fault_kind kind)
{
    return mti_atomic_load_relaxed(&plans[kind].seen);
}

uint64_t mti__fault_fired(enum mti_fault_kind kind)
{
    return mti_atomic_load_relaxed(&plans[kind].fired);
}

bool mti__fault_hit(enum mti_fault_kind kind)
{
    if (MTI_UNLIKELY(!mti_atomic_load_acquire(&configured))) pthread_once(&env_once, env_init);
    struct fault_plan *p = &plans[kind];
    uint64_t n = mti_atomic_fetch_add_relaxed(&p->seen, 1) + 1;
    uint64_t first = mti_atomic_load_relaxed(&p->first);
    if (first == 0 || n < first) return false;
    uint64_t at = n - first, period = mti_atomic_load_relaxed(&p->period);
    if (period > 0) at %= period;
    if (at >= mti_atomic_load_relaxed(&p->count)) return false;
    mti_atomic_fetch_add_relaxed(&p->fired, 1);
    return true;
}

mti_status mti__fault_error(mti_status status, const char *what)
{
    return mti__error(status, "injected fault: %s (MTI_FAULT)", what);
}

static int unsafe_mode;
static pthread_once_t unsafe_once = PTHREAD_ONCE_INIT;

static void unsafe_init(void)
{
    const char *v = getenv("MTI_STRESS_UNSAFE");
    unsafe_mode = v && strcmp(v, "1") == 0;
}

bool mti__unsafe_stress(void)
{
#ifdef MTI_STRESS_UNSAFE
    pthread_once(&unsafe_once, unsafe_init);
    return unsafe_mode != 0;
#else
    (void)unsafe_init;
    (void)unsafe_once;
    return false;
#endif
}
