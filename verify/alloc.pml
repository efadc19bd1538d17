/*
 * alloc.pml -- the caching allocator's cross-stream deferred reuse.
 *
 * Abstracts (src/runtime/alloc.c):
 *   mti_buffer_alloc(stream)      lock(free list of stream); pop a block;
 *                                 unlock; on a miss call
 *                                 mti__alloc_reclaim_deferred and retry once;
 *                                 still nothing -> a fresh block (not tracked).
 *   mti_buffer_record_stream(b,s) remember that stream s (not the owner) used b.
 *   mti_buffer_free(b)            no foreign use -> push on the owner's free list
 *                                 at once (reuse on the owner stream is ordered
 *                                 by the stream); foreign use -> record an event
 *                                 on each foreign stream, put b on the deferred
 *                                 list (under the deferred-list mutex).
 *   mti__alloc_reclaim_deferred   lock(deferred); for each block whose events
 *                                 are ALL complete: unlink it; unlock; push it
 *                                 on its owner's free list (under that list's
 *                                 mutex).
 *   events                        (stream, seq = submitted_seq); complete <=>
 *                                 completed_seq >= seq (see stream.pml).
 *
 * Model: one tracked block B owned by stream S0; foreign streams S1, S2; one
 * in-order executor per stream (a FIFO channel of ops, see stream.pml for the
 * executor itself).  Every hand-out starts a new generation g of B; an op on B
 * carries its generation.
 *   T0 (works on S0): g1: alloc, use on S0, hand B to T1, wait until T1 has
 *       queued its uses, free (deferred, events on S1 and S2);
 *       g2: alloc (may miss and get a fresh block), use on S0, free (no
 *       foreign use: straight back); g3: alloc, use on S0, free.
 *   T1: record_stream(B, S1) + use on S1, record_stream(B, S2) + use on S2,
 *       tell T0, then run reclaim twice (as its own allocs would), racing T0.
 *
 * Properties
 *   safety (assert): (a) a block is never handed out on a stream while an op
 *     of an earlier generation is still pending on ANOTHER stream (the event
 *     rule); (b) no op of generation g starts before every op of generation
 *     g-1 has finished (no use after reuse, including same-stream reuse via
 *     stream order); (c) B is in exactly one place (in use / a free list /
 *     the deferred list), never pushed twice; (d) mutexes unlocked by owner;
 *     at the end all ops done and B is back on S0's free list.
 *   no invalid end state.
 *   ltl reclaimed (weak fairness): B eventually returns to S0's free list.
 *
 * Broken twins:
 *   BROKEN_NO_WAIT       reclaim moves deferred blocks without checking events.
 *   BROKEN_NO_DEFER      free ignores foreign use, pushes B straight back.
 *   BROKEN_ONE_EVENT     reclaim checks only the first recorded event.
 *   BROKEN_RECLAIM_RACE  reclaim decides under the deferred lock, but unlinks
 *                        after dropping it -> two reclaimers push B twice.
 *
 * Left out: sizes, splitting/merging, the fresh-allocation path and its OOM;
 * more than one tracked block (blocks are independent: every rule is per
 * block); the event objects' own pooling; record_stream after free (a user
 * error); the owner stream being destroyed while blocks are deferred.
 */

#define NSTR 3            /* S0 owner, S1 and S2 foreign */
#define NGEN 4            /* generations 1..3 */

#define LOC_FREE     0    /* on S0's free list */
#define LOC_USED     1    /* handed out */
#define LOC_DEFERRED 2    /* on the deferred list */
#define LOC_MOVING   3    /* unlinked by reclaim, not yet pushed */

#define NONE 255

chan q[NSTR] = [NGEN] of { byte };   /* stream queues: ops on B, by generation */
byte submitted[NSTR];
byte completed[NSTR];

byte flock = 0;                   /* S0 free-list mutex */
byte dlock = 0;                   /* deferred-list mutex */
bit  on_free = 1;                 /* B on S0's free list */
bit  on_deferred = 0;             /* B on the deferred list */
byte used_mask = 0;               /* foreign streams that used B (record_stream) */
byte ev_s[2];                     /* events recorded at free: stream */
byte ev_q[2];                     /*                           seq    */
byte nev = 0;

/* ghost */
byte loc = LOC_FREE;
byte gen = 0;                     /* current generation of B */
byte outs[NGEN];                  /* ops of generation g not finished */
byte outs_on[NSTR];               /* ops on B not finished, per stream */
bit  handed = 0;                  /* T0 -> T1: B published */
bit  uses_queued = 0;             /* T1 -> T0: foreign uses enqueued */
byte ndone = 0;

inline mutex_lock(l)   { atomic { l == 0 -> l = me + 1 } }
inline mutex_unlock(l) { d_step { assert(l == me + 1); l = 0 } }

/* (a) the event rule, checked at hand-out.  -DNO_HANDOUT_CHECK drops it so
 * that the twins must be caught by (b), the check on execution order. */
#ifdef NO_HANDOUT_CHECK
#define HANDOUT_CHECK k = 0
#else
#define HANDOUT_CHECK k = 1; do :: k < NSTR -> assert(outs_on[k] == 0); k++ :: else -> break od; k = 0
#endif

/* enqueue an op on B (generation gen) on stream s */
inline use(s) {
	d_step { outs[gen]++; outs_on[s]++; submitted[s]++; q[s]!gen }
}

proctype executor(byte s) {
	byte g, k;
end:	do
	:: q[s]?g ->
	   d_step {                                /* op starts */
		k = 1; do :: k < g -> assert(outs[k] == 0); k++ :: else -> break od; k = 0
	   };
	   d_step { outs[g]--; outs_on[s]--; completed[s]++; g = 0 }   /* op done */
	od
}

inline reclaim() {
	mutex_lock(dlock);
	if
	:: on_deferred &&
#if defined(BROKEN_NO_WAIT)
	   1
#elif defined(BROKEN_ONE_EVENT)
	   (nev < 1 || completed[ev_s[0]] >= ev_q[0])
#else
	   (nev < 1 || completed[ev_s[0]] >= ev_q[0]) &&
	   (nev < 2 || completed[ev_s[1]] >= ev_q[1])
#endif
	   ->
#ifdef BROKEN_RECLAIM_RACE
	   mutex_unlock(dlock);                      /* decided; unlink later */
	   d_step { assert(loc == LOC_DEFERRED); on_deferred = 0; loc = LOC_MOVING; nev = 0 };
#else
	   d_step { assert(loc == LOC_DEFERRED); on_deferred = 0; loc = LOC_MOVING; nev = 0 };
	   mutex_unlock(dlock);
#endif
	   mutex_lock(flock);
	   d_step { assert(loc == LOC_MOVING && on_free == 0); on_free = 1; loc = LOC_FREE };
	   mutex_unlock(flock)
	:: else -> mutex_unlock(dlock)
	fi
}

/* alloc on the owner stream S0: got = 1 if B was handed out */
inline alloc0(got) {
	got = 0;
	mutex_lock(flock);
	if
	:: on_free ->
	   d_step {
		assert(loc == LOC_FREE); on_free = 0; loc = LOC_USED; gen++; used_mask = 0;
		/* the event rule: nothing of B pending on another stream */
		HANDOUT_CHECK
	   };
	   got = 1
	:: else -> skip
	fi;
	mutex_unlock(flock);
	if
	:: got == 0 ->
	   reclaim();
	   mutex_lock(flock);
	   if
	   :: on_free ->
	      d_step {
		assert(loc == LOC_FREE); on_free = 0; loc = LOC_USED; gen++; used_mask = 0;
		HANDOUT_CHECK
	      };
	      got = 1
	   :: else -> skip                            /* fresh block: not tracked */
	   fi;
	   mutex_unlock(flock)
	:: else -> skip
	fi
}

inline buffer_free() {
#ifdef BROKEN_NO_DEFER
	if :: 1 ->
#else
	if
	:: used_mask != 0 ->
	   mutex_lock(dlock);
	   d_step {
		nev = 0; k = 1;
		do
		:: k < NSTR ->
		   if
		   :: used_mask & (1 << k) -> ev_s[nev] = k; ev_q[nev] = submitted[k]; nev++
		   :: else -> skip
		   fi; k++
		:: else -> break
		od; k = 0;
		assert(loc == LOC_USED); loc = LOC_DEFERRED; on_deferred = 1
	   };
	   mutex_unlock(dlock)
	:: else ->
#endif
	   mutex_lock(flock);
	   d_step { assert(loc == LOC_USED && on_free == 0); on_free = 1; loc = LOC_FREE };
	   mutex_unlock(flock)
	fi
}

proctype t0(byte me) {
	bit got;
	byte k, r;
	/* generation 1: shared with S1 and S2 */
	alloc0(got);
	assert(got);
	use(0);
	handed = 1;
	uses_queued == 1;
	buffer_free();
	/* generations 2 and 3: owner stream only */
	r = 0;
	do
	:: r < 2 ->
	   alloc0(got);
	   if
	   :: got -> use(0); buffer_free()
	   :: else -> skip
	   fi;
	   r++
	:: else -> break
	od;
	ndone++
}

proctype t1(byte me) {
	byte k;
	handed == 1;
	d_step { used_mask = used_mask | (1 << 1) };  /* mti_buffer_record_stream(B, S1) */
	use(1);
	d_step { used_mask = used_mask | (1 << 2) };  /* mti_buffer_record_stream(B, S2) */
	use(2);
	uses_queued = 1;
	reclaim();
	reclaim();
	ndone++
}

init {
	byte me = 2, k;
	atomic {
		run executor(0); run executor(1); run executor(2);
		run t0(0); run t1(1)
	};
	ndone == 2;
	/* drain all streams, then whoever is still deferred is reclaimed */
	(outs_on[0] == 0 && outs_on[1] == 0 && outs_on[2] == 0);
	if
	:: loc == LOC_DEFERRED -> reclaim()
	:: else -> skip
	fi;
	assert(loc == LOC_FREE && on_free && !on_deferred);
	assert(flock == 0 && dlock == 0)
}

#ifdef LTL_RECLAIMED
ltl reclaimed { <> (ndone == 2 && loc == LOC_FREE) }
#endif
