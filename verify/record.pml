/*
 * record.pml -- the shared round-robin pool policy and the recording rule.
 *
 * Abstracts (src/runtime/pool.c, MTI_STREAM_ASSIGN=round-robin):
 *   stream assignment   slot = atomic_fetch_add(&rr_counter, 1) % N; no
 *                       exclusive ownership, several threads share a stream.
 *   recording           a thread that records work into its stream holds
 *                       that stream's record_lock for the whole recording
 *                       (all ops of one call), so one thread records into a
 *                       stream at a time and a recording's ops are contiguous
 *                       in the stream's queue.
 *
 * Model: NTHREADS threads, NSLOTS streams.  Each thread gets its stream once
 * (round-robin, cached), then makes NREC recordings of NOPS ops each.  The
 * queue is summarised by the last op appended per stream (thread, part).
 *
 * Properties
 *   safety (assert): at most one recorder per stream (recording rule); every
 *     op of a recording directly follows the previous op of that recording
 *     (contiguous); slot < N; with fetch_add the assignment is balanced
 *     (per-stream counts differ by at most one); mutexes unlocked by owner.
 *   no invalid end state.
 *   ltl witness (WITNESS_K=k): [](nrec < k); Spin must REFUTE it: k threads
 *     record at once, into different streams (parallelism under sharing).
 *
 * Broken twins:
 *   BROKEN_NO_LOCK      record without record_lock -> two recorders on a
 *                       stream, interleaved ops.
 *   BROKEN_LOCK_PER_OP  record_lock taken per op, not per recording -> one
 *                       recorder at a time, but recordings interleave.
 *   BROKEN_RR           rr_counter read then written (not fetch_add) -> threads
 *                       pile onto one stream while another stays idle.
 *
 * Left out: op execution (stream.pml); the rr_counter wrap-around (the C
 * counter must be unsigned: then wrap is defined and only skews one round when
 * N does not divide 2^bits); threads exiting (nothing to release: the
 * shared policy owns nothing); mixing shared and exclusive policies in one
 * pool.
 */

#ifndef NSLOTS
#define NSLOTS 2
#endif
#ifndef NTHREADS
#define NTHREADS 3
#endif
#define NREC 2
#define NOPS 2
#define NONE 255

byte rr_counter = 0;
byte record_lock[NSLOTS];      /* 0 free, else owner + 1 */
byte last_tid[NSLOTS];         /* last op appended to the stream: thread */
byte last_part[NSLOTS];        /*                                 part 1..NOPS */
byte nops[NSLOTS];             /* ops in the stream's queue */

/* ghost */
byte recorders[NSLOTS];        /* threads recording into the stream now */
byte nrec = 0;                 /* threads recording anywhere now */
byte assigned[NSLOTS];         /* threads assigned to the stream */
byte nassigned = 0;

inline mutex_lock(l)   { atomic { l == 0 -> l = me + 1 } }
inline mutex_unlock(l) { d_step { assert(l == me + 1); l = 0 } }

inline append(s, part) {
	d_step {
		assert(part == 1 || (last_tid[s] == me && last_part[s] == part - 1));
		last_tid[s] = me; last_part[s] = part; nops[s]++
	}
}

proctype client(byte me) {
	byte slot, r, p, t;
	/* stream assignment (done once, cached thread-locally) */
#ifdef BROKEN_RR
	t = rr_counter;
	rr_counter = t + 1;
#else
	d_step { t = rr_counter; rr_counter++ }       /* fetch_add */
#endif
	d_step { slot = t % NSLOTS; assert(slot < NSLOTS); assigned[slot]++; nassigned++ };
	r = 0;
	do
	:: r < NREC ->
#if !defined(BROKEN_NO_LOCK) && !defined(BROKEN_LOCK_PER_OP)
	   mutex_lock(record_lock[slot]);
#endif
	   d_step { recorders[slot]++; nrec++ };
#if !defined(BROKEN_NO_LOCK) && !defined(BROKEN_LOCK_PER_OP)
	   assert(recorders[slot] == 1);
#endif
	   p = 1;
	   do
	   :: p <= NOPS ->
#ifdef BROKEN_LOCK_PER_OP
	      mutex_lock(record_lock[slot]);
#endif
#ifdef BROKEN_NO_LOCK
	      assert(recorders[slot] == 1);
#endif
	      append(slot, p);
#ifdef BROKEN_LOCK_PER_OP
	      mutex_unlock(record_lock[slot]);
#endif
	      p++
	   :: else -> break
	   od;
	   p = 0;
	   d_step { recorders[slot]--; nrec-- };
#if !defined(BROKEN_NO_LOCK) && !defined(BROKEN_LOCK_PER_OP)
	   mutex_unlock(record_lock[slot]);
#endif
	   r++
	:: else -> break
	od
}

init {
	byte k, lo, hi, sum, me = NTHREADS;
	atomic {
		k = 0;
		do :: k < NTHREADS -> run client(k); k++ :: else -> break od
	};
	/* balance: once everybody is assigned, counts differ by at most one */
	nassigned == NTHREADS;
	d_step {
		lo = 255; hi = 0; k = 0;
		do
		:: k < NSLOTS ->
		   if :: assigned[k] < lo -> lo = assigned[k] :: else -> skip fi;
		   if :: assigned[k] > hi -> hi = assigned[k] :: else -> skip fi;
		   k++
		:: else -> break
		od;
		assert(hi - lo <= 1)
	};
	_nr_pr == 1;
	k = 0; sum = 0;
	do
	:: k < NSLOTS -> assert(record_lock[k] == 0 && recorders[k] == 0); sum = sum + nops[k]; k++
	:: else -> break
	od;
	assert(sum == NTHREADS * NREC * NOPS)
}

#ifdef WITNESS_K
ltl witness { [] (nrec < WITNESS_K) }
#endif
