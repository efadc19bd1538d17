/*
 * pool.pml -- the per-device stream pool, exclusive-ownership policy (the default).
 *
 * Abstracts (src/runtime/pool.c, pool.h; src/runtime/thread-cache.c):
 *   mti__pool_try_acquire  lock-free: load free_mask; 0 -> -1; slot = ctz(mask);
 *                          CAS(free_mask, mask, mask & ~bit) (seq_cst); on failure the
 *                          CAS reloads mask and the loop retries.
 *   mti__pool_acquire      try_acquire; none free: MTI_POOL_FAIL -> MTI_ERR_POOL_EXHAUSTED,
 *                          else wait_for_slot; then slot_stream (lazy stream creation by
 *                          the holder; on failure free_slot and return the error).
 *   wait_for_slot          lock(wait_lock); n_waiters++ (seq_cst);
 *                          while (try_acquire < 0) { MTI_POOL_BLOCK: cond_wait(slot_freed);
 *                          MTI_POOL_WAIT: cond_wait_until(deadline) timed out ->
 *                          one more try_acquire, then MTI_ERR_TIMEOUT };
 *                          n_waiters-- (seq_cst); unlock.
 *   mti__pool_release      mti__stream_sync (the slot's queued work drains), THEN free_slot.
 *   free_slot              fetch_or(free_mask, bit) (seq_cst), THEN load(n_waiters)
 *                          (seq_cst) > 0 -> lock(wait_lock); cond_broadcast; unlock.
 *   mti__thread_stream     thread-local cache hit, else mti__runtime_acquire and cache it.
 *   on_thread_exit / release_entry
 *                          pthread key destructor: mti__pool_release of the cached slot.
 *   mti_stream_release     early release of the cached slot (mti__thread_forget, then
 *                          mti__pool_release); the next call acquires again.
 *
 * Model: NTHREADS threads, NSLOTS slots.  A thread makes NITER calls; each call gets its
 * stream through the cache (acquiring under its exhaustion policy, chosen per thread),
 * queues one op on it, and may then release the slot early; at exit the destructor
 * releases what is still cached.  The first holder of a slot creates its stream, which
 * may fail.  One executor per slot retires queued ops (the CPU stream, see stream.pml;
 * mti__stream_sync is "wait until the slot's stream has no queued op").
 * Mutex = a byte holding owner + 1; condvar = one "asleep" bit per thread
 * (pthread_cond_wait unlocks and sleeps in one step; broadcast clears every bit).
 * Untimed waits get NO spurious wake-ups (the worst case for lost wake-ups); a timed wait
 * may time out at any moment (time is abstracted to "the deadline may pass now").
 *
 * Properties
 *   safety (assert): a slot has at most one holder; a slot is handed out only when its
 *     stream has no work queued by an earlier holder; a slot's stream is created once;
 *     mutexes are unlocked by their holder; at the end every slot is free (release at
 *     thread exit), n_waiters == 0 and nobody holds a slot.
 *   no invalid end state: nobody sleeps forever (no lost wake-up, no deadlock).
 *   ltl all_return   (weak fairness): every thread runs to its end.
 *   ltl no_lost_wake (LOOP build: every thread goes round acquire / op / release as
 *     often as it likes, policy block; weak fairness): a thread asleep on slot_freed
 *     while a slot is free is eventually woken.
 *   ltl no_starve    (LOOP build): a waiting thread eventually gets a slot.  NOT a
 *     property of this design: the woken waiter can lose the CAS to a thread on the
 *     fast path, again and again.  Spin shows that trail; the table keeps it as a
 *     documented non-guarantee (expected: violated).
 *   ltl witness      (WITNESS_K=k): [](holders < k).  Spin must REFUTE it: the trail
 *     shows k threads holding slots at once (the design permits real parallelism).
 *
 * Broken twins (spin -D...):
 *   MTI_BROKEN_POOL_CHECK_THEN_SET       (same flag as the C twin) test the bit, then
 *                                        clear it in a separate store -> two holders.
 *   MTI_BROKEN_POOL_RELEASE_BEFORE_DRAIN (same flag as the C twin) free_slot without
 *                                        mti__stream_sync -> the next holder gets a
 *                                        stream with someone else's work queued.
 *   MTI_BROKEN_POOL_LOST_WAKEUP          (same flag as the C twin) read n_waiters and
 *                                        broadcast BEFORE the fetch_or -> a waiter that
 *                                        went to sleep in between is never woken.
 *   BROKEN_WAKE_NOLOCK                   broadcast without wait_lock -> it can fall
 *                                        between a waiter's failed retry and its sleep.
 *
 * Left out: memory orders weaker than seq_cst (Spin interleaves, i.e. is sequentially
 * consistent; MTI_BROKEN_POOL_LOST_WAKEUP shows what moving the n_waiters load above the
 * fetch_or, which a weaker order would allow, does); statistics (in_use, peak, counters);
 * the round-robin policy and the record lock (record.pml); the stream internals
 * (stream.pml); several devices (independent pools) and least_loaded_device; pool
 * init/destroy; the registry pin of the exit destructor (runtime lifetime); real time;
 * pools of more than 3 slots (the C pool has up to MTI_POOL_MAX_SLOTS = 64 bits in one
 * uint64_t; every rule here is per bit).
 */

/* ---- constants mirrored from the C code (verify/check-constants.sh compares them) ---- */
#define MTI_POOL_MAX_SLOTS      64   /* src/runtime/pool.h */
#define MTI_POOL_DEFAULT_SIZE   32   /* src/runtime/pool.h */
#define MTI_POOL_FAIL           0    /* enum mti_pool_exhaustion, include/mtinfer.h */
#define MTI_POOL_WAIT           1
#define MTI_POOL_BLOCK          2

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

byte free_mask = ALL_FREE;      /* _Atomic uint64_t free_mask; bit set = slot free */
byte n_waiters = 0;             /* _Atomic int n_waiters */
byte wait_lock = 0;             /* mti_mutex wait_lock: 0 free, else owner + 1 */
bit  asleep[NTHREADS];          /* mti_cond slot_freed: one bit per sleeper */
bit  created[NSLOTS];           /* streams[slot] != NULL */
byte pending[NSLOTS];           /* ops queued and not finished on the slot's stream */

/* ghost */
byte owner[NSLOTS];             /* holder of the slot (NONE = free) */
byte holders = 0;               /* threads holding a slot now */
bit  waiting[NTHREADS];         /* inside wait_for_slot */
bit  holding[NTHREADS];
byte ndone = 0;

inline mutex_lock(l)   { atomic { l == 0 -> l = me + 1 } }
inline mutex_unlock(l) { d_step { assert(l == me + 1); l = 0 } }

/* mti_cond_wait: unlock and sleep in one step; no spurious wake-up */
inline cond_wait(l) {
	d_step { assert(l == me + 1); asleep[me] = 1; l = 0 };
	atomic { asleep[me] == 0 -> l == 0 -> l = me + 1 }
}

/* mti_cond_wait_until: as above, or the deadline passes (returns false: expired = 1) */
inline cond_wait_until(l, expired) {
	d_step { assert(l == me + 1); asleep[me] = 1; l = 0 };
	if
	:: asleep[me] == 0                                            /* signalled */
	:: d_step { asleep[me] == 1 -> asleep[me] = 0; expired = 1 }  /* ETIMEDOUT */
	fi;
	mutex_lock(l)
}

inline cond_broadcast() {
	d_step { i = 0; do :: i < NTHREADS -> asleep[i] = 0; i++ :: else -> break od; i = 0 }
}

/* mti__pool_try_acquire: res = slot, or NONE (-1) */
inline try_acquire(res) {
	res = NONE;
	m = free_mask;                                   /* load, seq_cst */
	do
	:: m == 0 -> break
	:: else ->
	   d_step { b = 0; do :: (m & (1 << b)) == 0 -> b++ :: else -> break od }   /* ctz */
#ifdef MTI_BROKEN_POOL_CHECK_THEN_SET
	   /* check (the load above), then set, with a window between */
	   d_step {
		free_mask = m & ~(1 << b);
		assert(owner[b] == NONE); owner[b] = me; holders++; holding[me] = 1; res = b;
		assert(pending[b] == 0)
	   };
	   break
#else
	   d_step {                                      /* CAS(free_mask, &m, m & ~bit) */
		if
		:: free_mask == m ->
		   free_mask = m & ~(1 << b);
		   assert(owner[b] == NONE); owner[b] = me; holders++; holding[me] = 1; res = b;
		   assert(pending[b] == 0)                   /* nothing left by an earlier holder */
		:: else -> m = free_mask                     /* failed CAS reloads m */
		fi
	   };
	   if :: res != NONE -> break :: else -> skip fi
#endif
	od;
	m = 0; b = 0
}

/* free_slot */
inline free_slot(s) {
#ifdef MTI_BROKEN_POOL_LOST_WAKEUP
	if
	:: n_waiters > 0 -> mutex_lock(wait_lock); cond_broadcast(); mutex_unlock(wait_lock)
	:: else -> skip
	fi;
#endif
	d_step {                                         /* fetch_or(free_mask, bit), seq_cst */
		assert((free_mask & (1 << s)) == 0);
		free_mask = free_mask | (1 << s);
		assert(owner[s] == me); owner[s] = NONE; holders--; holding[me] = 0
	};
#ifndef MTI_BROKEN_POOL_LOST_WAKEUP
	if
	:: n_waiters > 0 ->                              /* load(n_waiters), seq_cst */
#ifndef BROKEN_WAKE_NOLOCK
	   mutex_lock(wait_lock);
#endif
	   cond_broadcast();
#ifndef BROKEN_WAKE_NOLOCK
	   mutex_unlock(wait_lock);
#endif
	   skip
	:: else -> skip
	fi
#endif
}

/* wait_for_slot: res = slot, or NONE (MTI_ERR_TIMEOUT) */
inline wait_for_slot(res, policy) {
	expired = 0;
	mutex_lock(wait_lock);
	d_step { n_waiters++; waiting[me] = 1 };         /* fetch_add, seq_cst */
	do
	:: try_acquire(res);
	   if
	   :: res != NONE -> break
	   :: else -> skip
	   fi;
	   if
	   :: policy == MTI_POOL_BLOCK -> cond_wait(wait_lock)
	   :: else ->
	      cond_wait_until(wait_lock, expired);
	      if
	      :: expired -> try_acquire(res); break     /* last try, then MTI_ERR_TIMEOUT */
	      :: else -> skip
	      fi
	   fi
	od;
	atomic { n_waiters--; waiting[me] = 0 };         /* fetch_sub, seq_cst */
	mutex_unlock(wait_lock);
	expired = 0
}

/* mti__pool_acquire (policy from the runtime params) */
inline pool_acquire(res, policy) {
	try_acquire(res);
	if
	:: res == NONE && policy == MTI_POOL_FAIL -> skip      /* MTI_ERR_POOL_EXHAUSTED */
	:: res == NONE && policy != MTI_POOL_FAIL -> wait_for_slot(res, policy)
	:: else -> skip
	fi;
	if
	:: res != NONE ->
	   /* slot_stream: the holder creates the slot's stream on first use */
	   if
	   :: created[res] -> skip
	   :: !created[res] -> created[res] = 1          /* mti__stream_create succeeded */
	   :: !created[res] -> free_slot(res); res = NONE /* failed: give the slot back */
	   fi
	:: else -> skip
	fi
}

/* mti__pool_release */
inline pool_release(s) {
#ifndef MTI_BROKEN_POOL_RELEASE_BEFORE_DRAIN
	pending[s] == 0;                                 /* mti__stream_sync */
#endif
	free_slot(s)
}

proctype executor(byte s) {                      /* the slot's stream runs its ops */
end:	do
	:: d_step { pending[s] > 0 -> pending[s]-- }
	od
}

proctype client(byte me; byte policy) {
	byte slot = NONE;                            /* thread-local cache entry */
	byte res, m, b, i, it;
	bit expired;
#ifdef LOOP
	/* one round = one thread lifetime: get a stream, one op, exit (destructor releases) */
	do
	:: pool_acquire(slot, policy);
	   if
	   :: slot != NONE ->
	      pending[slot]++;
	      pool_release(slot);
	      slot = NONE
	   :: else -> skip
	   fi;
	   if
	   :: skip
	   :: break
	   fi
	od
#else
	it = 0;
	do
	:: it < NITER ->
	   /* mti__thread_stream */
	   if
	   :: slot == NONE -> pool_acquire(res, policy); slot = res; res = NONE
	   :: else -> skip                          /* cache hit: no lock, no atomic */
	   fi;
	   if
	   :: slot != NONE ->
	      pending[slot]++;                      /* one op queued on the stream */
	      if
	      :: pool_release(slot); slot = NONE    /* mti_stream_release (early) */
	      :: skip
	      fi
	   :: else -> skip                          /* the error goes to the caller */
	   fi;
	   it++
	:: else -> break
	od;
	/* thread exit: on_thread_exit -> release_entry -> mti__pool_release */
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
		   p = MTI_POOL_BLOCK;
#elif defined(ANY_POLICY)
		   if
		   :: p = MTI_POOL_FAIL
		   :: p = MTI_POOL_WAIT
		   :: p = MTI_POOL_BLOCK
		   fi;
#else
		   /* mixed: thread k has policy (2 - k) mod 3: block, wait, fail, block, ... */
		   p = (2 * NTHREADS - k + 2) % 3;
#endif
		   run client(k, p); k++
		:: else -> break
		od
	};
#ifndef LOOP
	ndone == NTHREADS;
	/* everything was given back at thread exit */
	assert(free_mask == ALL_FREE);
	assert(n_waiters == 0);
	assert(holders == 0);
	assert(wait_lock == 0)
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
