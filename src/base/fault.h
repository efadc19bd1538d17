/*
 * Fault injection and the stress harness's negative control (test builds only).
 *
 * Built with -DMTI_FAULT_INJECTION, MTI_FAULT(KIND) counts every event of KIND in the process
 * and is true for the ones the plan names; without the flag it is the constant 0 and the hook
 * lines compile to nothing. The plan comes from the MTI_FAULT environment variable (read at
 * the first hook) or from mti__fault_configure (tests, `mtinfer stress`):
 *
 *   MTI_FAULT=alloc:N[:K[:P]],submit:N[:K[:P]],stream_error:N[:K[:P]]
 *
 * fails events N .. N+K-1 (K defaults to 1), and again every P events after that when P > 0.
 *   alloc         a device allocation of the caching allocator fails (runtime/alloc.c)
 *   submit        a submission into a stream fails before reaching the backend
 *   stream_error  a submission succeeds, then a host function queued right behind it reports
 *                 an error into the stream's error slot, returned by the next synchronize
 * submit and stream_error are counted where every submission passes, whatever the backend:
 * the public submit calls (runtime/stream.c) and the model executor's mti__op_* wrappers
 * (runtime/ops.c), through mti__submit_begin/end (runtime-internal.h). Nothing is counted or
 * injected while a stream captures a graph (an injected host function would be replayed).
 * This header sits in base/ so that every layer (backends: the negative control) may use it.
 *
 * Built with -DMTI_STRESS_UNSAFE, MTI_UNSAFE_STRESS() is true when the environment has
 * MTI_STRESS_UNSAFE=1: the recording section (serialization policy and the stream's record
 * lock) is skipped, so threads sharing a stream interleave their submits, and on the CPU
 * backend the executor token is ignored, so two threads may run one stream's ops at once.
 * Those are the bugs the record lock and the token exist to prevent (the seeds' "two
 * encoders on one command buffer"); `mtinfer stress --unsafe` must catch them (FAIL, CRASH
 * or HANG, never PASS).
 * Never define either flag in a release build.
 */
#ifndef MTI_BASE_FAULT_H
#define MTI_BASE_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"

enum mti_fault_kind {
    MTI_FAULT_ALLOC = 0,
    MTI_FAULT_SUBMIT = 1,
    MTI_FAULT_STREAM_ERROR = 2,
    MTI_FAULT_KINDS = 3,
};

/* Whether this build has the hooks (-DMTI_FAULT_INJECTION). */
bool mti__fault_enabled(void);

/* Replaces the plan and zeroes the counters. spec NULL re-reads MTI_FAULT; "" clears the plan.
 * MTI_ERR_INVALID_ARGUMENT on a malformed spec (the plan is then cleared), and
 * MTI_ERR_UNSUPPORTED for a non-empty plan in a build without the hooks. Call it while no
 * hook can run (between tests, before threads start). */
mti_status mti__fault_configure(const char *spec);

/* Events of kind seen so far and how many of them failed. */
uint64_t mti__fault_seen(enum mti_fault_kind kind);
uint64_t mti__fault_fired(enum mti_fault_kind kind);

/* Counts one event of kind; true when it must fail. Thread-safe, lock-free. */
bool mti__fault_hit(enum mti_fault_kind kind);

/* Sets the thread's message for an injected failure of what and returns status. */
mti_status mti__fault_error(mti_status status, const char *what);

#ifdef MTI_FAULT_INJECTION
#define MTI_FAULT(kind) MTI_UNLIKELY(mti__fault_hit(MTI_FAULT_##kind))
#else
#define MTI_FAULT(kind) 0
#endif

/* The negative control: whether recording sections are bypassed (see above). */
bool mti__unsafe_stress(void);
#ifdef MTI_STRESS_UNSAFE
#define MTI_UNSAFE_STRESS() MTI_UNLIKELY(mti__unsafe_stress())
#else
#define MTI_UNSAFE_STRESS() 0
#endif

#endif
