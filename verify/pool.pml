/*
 * pool.pml -- the per-device stream pool (exclusive-ownership policy).
 *
 * Abstracts (src/runtime/pool.c, src/runtime/pool.h):
 *   mti__pool_try_acquire   lock-free: load free_mask, take the lowest set bit
 *                           with compare-and-swap, retry on CAS failure.
 *   mti__pool_acquire       fast path = try_acquire; slow path by exhaustion
 *                           policy: FAIL (MTI_ERR_POOL_EXHAUSTED at once),
 *                           WAIT (timed wait, MTI_ERR_TIMEOUT), BLOCK (forever):
 *                           lock(wait_lock); n_waiters++; loop { try_acquire;
 *                           ok -> break; timed out -> break; cond_(timed)wait };
 *                           n_waiters--; unlock.
 *   mti__pool_release       mti__stream_drain(slot's stream), THEN
 *                           fetch_or(free_mask, bit) (seq_cst), THEN
 *                           load(n_waiters) (seq_cst) > 0 -> lock(wait_lock);
 *                           cond_broadcast(slot_freed); unlock.
 *   thread-exit destructor  the thread-local slot cache (pthread key
 *                           destructor) releases the thread's slot at exit.
 *
 * Model: NTHREADS client threads, NSLOTS slots.  Each thread runs NITER
 * "calls"; a call uses the cached slot or acquires one (policy chosen
 * nondeterministically per thread), then enqueues one op on the slot's stream.
 * At thread exit the destructor releases the slot.  One executor per slot
 * retires queued ops (stands for the CPU stream worker, see stream.pml).
 * A mutex is a byte holding owner+1; a condvar is one "asleep" bit per thread
 * (pthread_cond_wait atomically unlocks and sleeps; broadcast clears all bits).
 * BLOCK waits have NO spurious wake-ups (worst case for lost wake-ups); a
 * timed wait may return at any moment with ETIMEDOUT (time is abstracted to
 * "the deadline may pass at any moment").
 *
 * Properties
 *   safety (assert): a slot has at most one owner; a slot is handed out only
 *     when its stream has no queued work left from the previous owner; the
 *     mutex is released by its holder; at the end every slot is free again
 *     (release at thread exit), n_waiters == 0, nobody holds a slot.
 *   no invalid end state: nobody sleeps forever (no lost wake-up, no deadlock).
 *   ltl all_return   (finite run, weak fairness): every thread finishes.
 *   ltl no_lost_wake (LOOP build, threads live forever, BLOCK policy, weak
 *     fairness): a thread asleep on slot_freed while a slot is free is
 *     eventually woken.
 *   ltl no_starve    (LOOP build): a waiting thread eventually gets a slot.
 *     NOT a property of this design: a waiter that is woken can lose the CAS
 *     to a thread on the fast path, forever.  Spin shows the trail; it is
 *     kept in the table as a documented non-guarantee.
 *   ltl witness      (WITNESS_K=k): [](holders < k).  Spin must REFUTE it:
 *     the trail shows k threads holding slots at the same time (parallelism).
 *
 * Broken twins (select with spin -D...):
 *   BROKEN_CAS        check-then-set instead of CAS -> two owners of a slot.
 *   BROKEN_DRAIN      fetch_or before the stream is drained -> a new owner
 *                     gets a stream with someone else's work still queued.
 *   BROKEN_WAKE_ORDER release loads n_waiters BEFORE its fetch_or (what a
 *                     relaxed/acq-rel pair permits; the Dekker pair needs
 *                     seq_cst) -> lost wake-up, a BLOCK waiter sleeps forever.
 *   BROKEN_WAKE_NOLOCK broadcast without taking wait_lock -> the broadcast can
 *                     fall between the waiter's failed try and its wait.
 *   BROKEN_TIMEOUT    the timeout exit forgets n_waiters-- -> counter leaks.
 *
 * Left out: memory ordering other than the seq_cst interleaving (Spin is
 * sequentially consistent; the twin BROKEN_WAKE_ORDER stands for the
 * reordering that weaker orders allow); the CPU stream internals (stream.pml);
 * the shared round-robin policy and record_lock (record.pml); pool
 * creation/destruction and resizing; multiple devices (pools are independent);
 * the ABA problem is absent because slots are plain bits (no pointers); wall-
 * clock time; pools larger than 3 slots (the C pool has up to 64; the model's
 * reasoning is per bit and does not depend on the count).
 */

/* ---- constants mirrored from the C code (checked by verify/check_constants.sh) ---- */
#define MTI_POOL_MAX_SLOTS      64   /* src/runtime/pool.h */
#define MTI_POOL_DEFAULT_SLOTS  32   /* default pool size */
#define MTI_POOL_EXHAUST_FAIL   0    /* exhaustion policies */
#define MTI_POOL_EXHAUST_WAIT   1
#define MTI_POOL_EXHAUST_BLOCK  2

/* ---- model configuration ---- */
#ifndef NSLOTS
#define NSLOTS 2
#endif
#ifndef NTHREADS
#define NTHREADS 3
#endif
#ifndef NITER
#define NITER 2
#endif

#define NONE 255
#define ALL_FREE ((1 << NSLOTS) - 1)

byte free_mask = ALL_FREE;      /* _Atomic uint64_t free_mask; bit set = free */
byte n_waiters = 0;             /* _Atomic int n_waiters */
byte wait_lock = 0;             /* mutex: 0 = free, else owner pid + 1 */
bit  asleep[NTHREADS];          /* condvar slot_freed: one bit per sleeper */

byte pending[NSLOTS];           /* ops queued and not finished on slot's stream */

/* ghost state */
byte owner[NSLOTS];             /* which thread owns the slot (NONE = free) */
byte holders = 0;               /* threads holding a slot right now */
bit  waiting[NTHREADS];         /* thread is in the slow path of acquire */
bit  holding[NTHREADS];         /* thread holds a slot */
byte ndone = 0;                 /* threads that have exited */

inline mutex_lock(l)   { atomic { l == 0 -> l = me + 1 } }
inline mutex_unlock(l) { d_step { assert(l == me + 1); l = 0 } }

/* pthread_cond_wait: unlock and sleep atomically; no spurious wake-up. */
inline cond_wait(l) {
	d_step { assert(l == me + 1); asleep[me] = 1; l = 0 };
	asleep[me] == 0;
	mutex_lock(l)
}

/* pthread_cond_timedwait: as above, or the deadline passes. */
inline cond_timedwait(l, expired) {
	d_step { assert(l == me + 1); asleep[me] = 1; l = 0 };
	if
	:: asleep[me] == 0                         /* signalled */
	:: d_step { asleep[me] == 1 -> asleep[me] = 0; expired = 1 }  /* ETIMEDOUT */
	fi;
	mutex_lock(l)
}

inline cond_broadcast() {
	d_step { i = 0; do :: i < NTHREADS -> asleep[i] = 0; i++ :: else -> break od; i = 0 }
}

/* mti__pool_try_acquire: res = slot or NONE (MTI_ERR_POOL_EXHAUSTED) */
inline try_acquire(res) {
	res = NONE;
	do
	:: m = free_mask;                               /* atomic load */
	   if
	   :: m == 0 -> break                            /* exhausted */
	   :: else ->
	      d_step { b = 0; do :: (m & (1 << b)) == 0 -> b++ :: else -> break od }  /* ctz */
#ifdef BROKEN_CAS
	      /* check-then-set: test the bit, then clear it in a separate step */
	      if
	      :: (free_mask & (1 << b)) != 0 ->
	         d_step { free_mask = free_mask & ~(1 << b);
	                  assert(owner[b] == NONE); owner[b] = me;
	                  assert(pending[b] == 0);
	                  holders++; holding[me] = 1; res = b }
	      :: else -> skip
	      fi;
#else
	      d_step {                                   /* CAS(free_mask, m, m & ~bit) */
	         if
	         :: free_mask == m ->
	            free_mask = m & ~(1 << b);
	            assert(owner[b] == NONE); owner[b] = me;
	            assert(pending[b] == 0);             /* previous owner's work drained */
	            holders++; holding[me] = 1; res = b
	         :: else -> skip                         /* CAS failed: retry */
	         fi
	      };
#endif
	      if :: res != NONE -> break :: else -> skip fi
	   fi
	od;
	m = 0; b = 0
}

/* mti__pool_acquire */
inline pool_acquire(res, policy) {
	try_acquire(res);
	if
	:: res != NONE -> skip
	:: res == NONE && policy == MTI_POOL_EXHAUST_FAIL -> skip  /* MTI_ERR_POOL_EXHAUSTED */
	:: res == NONE && policy != MTI_POOL_EXHAUST_FAIL ->
	   expired = 0;
	   mutex_lock(wait_lock);
	   n_waiters++; waiting[me] = 1;                /* seq_cst */
	   do
	   :: try_acquire(res);
	      if
	      :: res != NONE -> break
	      :: else -> skip
	      fi;
	      if
	      :: expired -> break                       /* MTI_ERR_TIMEOUT */
	      :: else -> skip
	      fi;
	      if
	      :: policy == MTI_POOL_EXHAUST_BLOCK -> cond_wait(wait_lock)
	      :: else -> cond_timedwait(wait_lock, expired)
	      fi
	   od;
#ifdef BROKEN_TIMEOUT
	   if :: res != NONE -> n_waiters-- :: else -> skip fi;   /* timeout path forgets it */
#else
	   n_waiters--;
#endif
	   waiting[me] = 0;
	   mutex_unlock(wait_lock);
	   expired = 0
	fi
}

/* mti__stream_drain: wait until the slot's stream has finished its work */
inline stream_drain(s) { pending[s] == 0 }

/* mti__pool_release */
inline pool_release(s) {
#ifndef BROKEN_DRAIN
	stream_drain(s);
#endif
#ifdef BROKEN_WAKE_ORDER
	w = n_waiters;                                 /* load hoisted above the fetch_or */
#endif
	d_step {                                       /* fetch_or(free_mask, bit), seq_cst */
		assert((free_mask & (1 << s)) == 0);
		free_mask = free_mask | (1 << s);
		assert(owner[s] == me); owner[s] = NONE;
		holders--; holding[me] = 0
	};
#ifdef BROKEN_DRAIN
	stream_drain(s);
#endif
#ifndef BROKEN_WAKE_ORDER
	w = n_waiters;                                 /* load(n_waiters), seq_cst */
#endif
	if
	:: w > 0 ->
#ifndef BROKEN_WAKE_NOLOCK
	   mutex_lock(wait_lock);
#endif
	   cond_broadcast();
#ifndef BROKEN_WAKE_NOLOCK
	   mutex_unlock(wait_lock);
#endif
	   skip
	:: else -> skip
	fi;
	w = 0
}

proctype executor(byte s) {               /* the stream's worker retires ops */
end:	do
	:: d_step { pending[s] > 0 -> pending[s]-- }
	od
}

proctype client(byte me; byte policy) {
	byte slot = NONE;                      /* thread-local slot cache */
	byte res, m, b, w, i, it;
	bit expired;
#ifdef LOOP
	/* each round is one thread lifetime (acquire, one op, exit ->
	 * destructor releases); a client may stop after any round, or go on
	 * forever.  BLOCK policy. */
	do
	:: pool_acquire(slot, policy);
	   assert(slot != NONE);
	   pending[slot]++;
	   pool_release(slot);
	   slot = NONE;
	   if
	   :: skip
	   :: break
	   fi
	od
#else
	it = 0;
	do
	:: it < NITER ->
	   if
	   :: slot == NONE -> pool_acquire(res, policy); slot = res; res = NONE
	   :: else -> skip                     /* cache hit */
	   fi;
	   if
	   :: slot != NONE -> pending[slot]++  /* enqueue one op on the stream */
	   :: else -> skip                     /* error returned to the caller */
	   fi;
	   it++
	:: else -> break
	od;
	/* thread exit: pthread key destructor releases the cached slot */
	if
	:: slot != NONE -> pool_release(slot); slot = NONE
	:: else -> skip
	fi;
	ndone++
#endif
}

init {
	byte k, p;
	atomic {
		k = 0;
		do :: k < NSLOTS -> owner[k] = NONE; run executor(k); k++ :: else -> break od;
		k = 0;
		do
		:: k < NTHREADS ->
#if defined(LOOP) || defined(ALL_BLOCK)
		   p = MTI_POOL_EXHAUST_BLOCK;
#else
		   if
		   :: p = MTI_POOL_EXHAUST_FAIL
		   :: p = MTI_POOL_EXHAUST_WAIT
		   :: p = MTI_POOL_EXHAUST_BLOCK
		   fi;
#endif
		   run client(k, p); k++
		:: else -> break
		od
	};
#ifndef LOOP
	ndone == NTHREADS;
	/* end invariant: everything given back at thread exit */
	assert(free_mask == ALL_FREE);
	assert(n_waiters == 0);
	assert(holders == 0);
	assert(wait_lock == 0);
#endif
}

#ifdef LTL_ALL_RETURN
ltl all_return { <> (ndone == NTHREADS) }
#endif
#ifdef LTL_NO_LOST_WAKE
ltl no_lost_wake { [] ((asleep[0] && free_mask != 0) -> <> !asleep[0]) }
#endif
#ifdef LTL_NO_STARVE
ltl no_starve { [] (waiting[0] -> <> holding[0]) }
#endif
#ifdef WITNESS_K
ltl witness { [] (holders < WITNESS_K) }
#endif
