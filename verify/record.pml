/*
 * record.pml -- the shared round-robin policy and the recording rule.
 *
 * Abstracts (src/runtime/pool.c, stream.c, runtime-internal.h; MTI_STREAM_ASSIGN=
 * round-robin, MTI_SERIALIZATION):
 *   mti__pool_assign_round_robin  slot = fetch_add(rr_next, 1) % size; stream =
 *                                 load_acquire(streams[slot]); none yet -> lock(create_lock);
 *                                 slot_stream (load again, create, store_release); unlock.
 *                                 No ownership: threads share streams; the thread cache
 *                                 keeps the stream, thread exit and mti_stream_release give
 *                                 nothing back (release only synchronizes).
 *   mti__encode_begin, mti__encode_end
 *                                 the recording section around every backend submit
 *                                 (launch, copy, linear, event record, wait event, ...):
 *                                 policy first (MTI_SERIAL_GLOBAL: encode_lock;
 *                                 MTI_SERIAL_SEMAPHORE: sem_down(encode_sem)), then the
 *                                 stream's record_lock; end releases in reverse order.
 *   sem_down / sem_up             lock; while (count == 0) cond_wait; count--; unlock /
 *                                 lock; count++; cond_signal; unlock.
 *   backend submit                may assume it is never called twice at once for one
 *                                 stream (backend-impl.h): here it is three unlocked steps,
 *                                 read tail, write the ring entry, publish tail + 1.
 *
 * Model: NTHREADS threads, NSLOTS streams (created lazily), NCALLS recording sections per
 * thread.  SERIAL = MTI_SERIAL_PER_STREAM (default), MTI_SERIAL_GLOBAL or
 * MTI_SERIAL_SEMAPHORE with SERIAL_LIMIT.
 *
 * Properties
 *   safety (assert): at most one recorder per stream (the recording rule); GLOBAL: at most
 *     one recorder in all; SEMAPHORE: at most SERIAL_LIMIT; no submitted op is lost and each
 *     thread's ops appear in its program order; every slot's stream is created once; slot
 *     < size; fetch_add keeps the assignment balanced (per-stream counts differ by at most
 *     one); mutexes unlocked by their holder.
 *   no invalid end state (no deadlock between the policy lock / semaphore and record_lock).
 *   ltl witness (WITNESS_K=k): [](nrec < k).  Spin must REFUTE it: k threads record at
 *     once, into different streams (real parallelism under sharing).
 *
 * Broken twins:
 *   BROKEN_NO_RECORD_LOCK  encode_begin without the stream's record_lock -> two recorders
 *                          in one stream, an op is lost.
 *   BROKEN_CREATE_RACE     no create_lock around lazy creation -> a slot's stream created
 *                          twice.
 *   BROKEN_RR              rr_next read, then written (not fetch_add) -> threads pile onto
 *                          one stream while another idles.
 *   BROKEN_SEM_IF          sem_down tests count with `if`, not `while` -> a woken thread can
 *                          lose the count to a newcomer and still enter: SERIAL_LIMIT + 1
 *                          recorders.
 *
 * Left out: what the ops do (stream.pml); exclusive mode (pool.pml); rr_next wrap-around
 * (it is uint64_t, so % size stays in range and wraps after 2^64 calls); stream creation
 * failure; spurious wake-ups (sem_down loops, so they only add retries).
 */

/* ---- constants mirrored from the C code (verify/check-constants.sh compares them) ---- */
#define MTI_SERIAL_PER_STREAM   0    /* enum mti_serialization, include/mtinfer.h */
#define MTI_SERIAL_GLOBAL       1
#define MTI_SERIAL_SEMAPHORE    2
#define MTI_ASSIGN_ROUND_ROBIN  1    /* enum mti_stream_assign */

#ifndef NSLOTS
#define NSLOTS 2
#endif
#ifndef NTHREADS
#define NTHREADS 3
#endif
#ifndef NCALLS
#define NCALLS 2
#endif
#ifndef SERIAL
#define SERIAL MTI_SERIAL_PER_STREAM
#endif
#ifndef SERIAL_LIMIT
#define SERIAL_LIMIT 2
#endif
#define NONE 255

byte rr_next = 0;              /* _Atomic uint64_t rr_next */
byte create_lock = 0;
bit  created[NSLOTS];          /* streams[slot] != NULL */
byte ncreated[NSLOTS];         /* ghost: creations per slot */
byte record_lock[NSLOTS];      /* 0 free, else holder + 1 */
byte encode_lock = 0;          /* MTI_SERIAL_GLOBAL */
byte sem_lock = 0;             /* encode_sem.lock */
byte sem_count = SERIAL_LIMIT; /* encode_sem.count */
bit  sem_asleep[4];           /* encode_sem.freed (NTHREADS <= 4) */
byte tail[NSLOTS];             /* the backend's ring, summarised */
byte last[NSLOTS * NTHREADS];  /* ghost: last call number of thread t appended to stream s */

/* ghost */
byte rec_on[NSLOTS];           /* recorders inside the stream's section */
byte nrec = 0;                 /* recorders anywhere */
byte assigned[NSLOTS];
byte nassigned = 0;

inline mutex_lock(l)   { atomic { l == 0 -> l = me + 1 } }
inline mutex_unlock(l) { d_step { assert(l == me + 1); l = 0 } }

inline sem_down() {
	mutex_lock(sem_lock);
#ifdef BROKEN_SEM_IF
	if
	:: sem_count == 0 ->
	   d_step { assert(sem_lock == me + 1); sem_asleep[me] = 1; sem_lock = 0 };
	   atomic { sem_asleep[me] == 0 -> sem_lock == 0 -> sem_lock = me + 1 }
	:: else -> skip
	fi;
#else
	do
	:: sem_count == 0 ->
	   d_step { assert(sem_lock == me + 1); sem_asleep[me] = 1; sem_lock = 0 };
	   atomic { sem_asleep[me] == 0 -> sem_lock == 0 -> sem_lock = me + 1 }
	:: else -> break
	od;
#endif
	sem_count--;
	mutex_unlock(sem_lock)
}

inline sem_up() {
	mutex_lock(sem_lock);
	sem_count++;
	if                                           /* cond_signal: one sleeper, any one */
	:: sem_asleep[0] -> sem_asleep[0] = 0
	:: sem_asleep[1] -> sem_asleep[1] = 0
	:: sem_asleep[2] -> sem_asleep[2] = 0
	:: sem_asleep[3] -> sem_asleep[3] = 0
	:: else -> skip
	fi;
	mutex_unlock(sem_lock)
}

inline encode_begin(s) {
	if
	:: SERIAL == MTI_SERIAL_GLOBAL -> mutex_lock(encode_lock)
	:: SERIAL == MTI_SERIAL_SEMAPHORE -> sem_down()
	:: else -> skip
	fi;
#ifndef BROKEN_NO_RECORD_LOCK
	mutex_lock(record_lock[s]);
#endif
	d_step {
		rec_on[s]++; nrec++;
		assert(rec_on[s] == 1);                  /* the recording rule */
		assert(SERIAL != MTI_SERIAL_GLOBAL || nrec == 1);
		assert(SERIAL != MTI_SERIAL_SEMAPHORE || nrec <= SERIAL_LIMIT)
	}
}

inline encode_end(s) {
	d_step { rec_on[s]--; nrec-- };
#ifndef BROKEN_NO_RECORD_LOCK
	mutex_unlock(record_lock[s]);
#endif
	if
	:: SERIAL == MTI_SERIAL_GLOBAL -> mutex_unlock(encode_lock)
	:: SERIAL == MTI_SERIAL_SEMAPHORE -> sem_up()
	:: else -> skip
	fi
}

/* a backend submit written for a single caller: three separate steps */
inline backend_submit(s, call) {
	t = tail[s];
	d_step { assert(last[s * NTHREADS + me] == call - 1); last[s * NTHREADS + me] = call };
	tail[s] = t + 1;
	t = 0
}

/* slot_stream under create_lock */
inline slot_stream(s) {
	if
	:: created[s] -> skip
	:: else ->
	   d_step { ncreated[s]++; assert(ncreated[s] == 1) };   /* mti__stream_create */
	   created[s] = 1                                        /* store_release */
	fi
}

proctype client(byte me) {
	byte slot, call, t;
	/* mti__pool_assign_round_robin (once; the thread cache keeps the stream) */
#ifdef BROKEN_RR
	t = rr_next;
	rr_next = t + 1;
#else
	d_step { t = rr_next; rr_next++ };            /* fetch_add */
#endif
	d_step { slot = t % NSLOTS; assert(slot < NSLOTS); assigned[slot]++; nassigned++; t = 0 };
	if
	:: created[slot] -> skip                      /* load_acquire */
	:: else ->
#ifndef BROKEN_CREATE_RACE
	   mutex_lock(create_lock);
#endif
	   slot_stream(slot);
#ifndef BROKEN_CREATE_RACE
	   mutex_unlock(create_lock)
#endif
	fi;
	call = 1;
	do
	:: call <= NCALLS ->
	   encode_begin(slot);
	   backend_submit(slot, call);
	   encode_end(slot);
	   call++
	:: else -> break
	od
}

init {
	byte k, lo, hi, sum, me = NTHREADS;
	atomic {
		k = 0;
		do :: k < NTHREADS -> run client(k); k++ :: else -> break od
	};
	nassigned == NTHREADS;
	/* balance: once everybody is assigned, counts differ by at most one */
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
	:: k < NSLOTS -> assert(record_lock[k] == 0 && rec_on[k] == 0); sum = sum + tail[k]; k++
	:: else -> break
	od;
	assert(sum == NTHREADS * NCALLS);            /* no op lost */
	assert(encode_lock == 0 && sem_count == SERIAL_LIMIT)
}

#ifdef WITNESS_K
ltl witness { [] (nrec < WITNESS_K) }
#endif
