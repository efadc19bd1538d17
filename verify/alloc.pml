/*
 * alloc.pml -- the caching allocator's reuse rules across streams.
 *
 * Abstracts (src/runtime/alloc.c, alloc.h):
 *   mti__alloc                 cache_pop(own stream's cache, under cache.lock); on a miss
 *                              with deferred_bytes > 0: mti__alloc_reclaim_deferred, pop
 *                              again; still nothing: a fresh block from the backend (not
 *                              tracked here).  used_by = 0 at hand-out.
 *   mti__alloc_record_stream   used_by |= bit(user slot) for a stream other than the owner.
 *   mti__alloc_free            used_by == 0: cache_push on the owner's cache at once (reuse
 *                              on the owner stream is ordered by the stream).  Else
 *                              record_use_events: per user stream, under its record lock,
 *                              record an event (seq = tail); deferred_bytes += size; push
 *                              on a->deferred (under deferred_lock).  If an event cannot be
 *                              made: mti__stream_sync each user stream, then cache_push.
 *   mti__alloc_reclaim_deferred
 *                              lock(deferred_lock); unlink every block whose events are all
 *                              complete (events_complete: event query); unlock; then for
 *                              each: destroy events, deferred_bytes -= size, cache_push.
 *   mti__alloc_release_cached  lock(release_lock); reclaim; per stream: cache_take_all;
 *                              if it got blocks: wait_for_submitted(stream) (record an
 *                              event, synchronize it); backend_free each.
 *   events                     (stream, seq = tail); complete <=> completed >= seq
 *                              (src/backend/cpu/cpu-event.c; see stream.pml).
 *
 * Model: one tracked block B owned by stream S0 (slot 0); foreign streams S1, S2; one
 * in-order executor per stream (a FIFO of B's ops; stream.pml models the executor).  Each
 * hand-out of B starts a new generation g; an op on B carries its generation.
 *   T0 (works on S0): g1: alloc, use on S0, hand B to T1, wait until T1 has queued its
 *       uses, free (deferred with events on S1 and S2, or the sync fallback);
 *       g2, g3: alloc (B again, or a fresh block when B is not back yet), use on S0, free
 *       (no foreign use: straight back to S0's cache).
 *   T1: record_stream(B, S1) + use on S1, record_stream(B, S2) + use on S2, tell T0;
 *       then reclaim, and either reclaim again or release_cached, racing T0.
 *
 * Properties
 *   safety (assert): (a) the event rule: B is never handed out while an op of an earlier
 *     generation is still pending on ANOTHER stream; (b) no op of generation g starts
 *     before every op of generation g-1 finished (no use after reuse, also on the owner
 *     stream: its order covers it); (c) B is in exactly one place (handed out, a cache,
 *     the deferred list, unlinked by a reclaimer, back at the backend), never pushed
 *     twice; (d) B goes back to the backend only when no op on B is pending; (e) mutexes
 *     unlocked by their holder; at the end every op ran and B is cached or freed.
 *     -DNO_HANDOUT_CHECK drops (a), so that the twins must be caught by (b).
 *   no invalid end state.
 *   ltl reclaimed (weak fairness): a deferred B eventually gets back to S0's cache (or to
 *     the backend).
 *
 * Broken twins:
 *   MTI_BROKEN_ALLOC_NO_EVENT  (same flag as the C twin) free ignores foreign use and pushes
 *                              B straight back to the owner's cache.
 *   BROKEN_RECLAIM_NO_CHECK    reclaim moves deferred blocks without asking the events.
 *   BROKEN_ONE_EVENT           reclaim asks only the first event.
 *   BROKEN_RECLAIM_RACE        reclaim decides under deferred_lock but unlinks after
 *                              dropping it -> two reclaimers push B twice.
 *   BROKEN_RELEASE_NO_WAIT     release_cached frees cached blocks to the backend without
 *                              waiting for their stream's submitted work.
 *
 * Left out: sizes and bins (one bin here), the OOM retry and memory limit, poisoning
 * (a memset in owner-stream order: one more op on S0), statistics, more than one
 * tracked block (every rule is per block), event objects' own allocation (its failure is
 * the sync fallback, which is modelled), use after free by the caller (a user error),
 * runtime destruction.
 */

#define NSTR 3            /* S0 owner, S1 and S2 foreign */
#define NGEN 4            /* generations 1..3 */

#define LOC_CACHE    0    /* on S0's cache (free list) */
#define LOC_USED     1    /* handed out */
#define LOC_DEFERRED 2    /* on the deferred list */
#define LOC_MOVING   3    /* unlinked by a reclaimer / taken by release_cached */
#define LOC_BACKEND  4    /* returned to the backend (backend_free) */

chan q[NSTR] = [NGEN] of { byte };   /* stream queues: B's ops, by generation */
byte submitted[NSTR];                /* tail */
byte completed[NSTR];

byte cache_lock = 0;              /* S0's cache.lock */
byte deferred_lock = 0;
byte release_lock = 0;
bit  in_cache = 1;                /* B on S0's cache */
bit  on_deferred = 0;             /* B on a->deferred */
byte deferred_bytes = 0;          /* _Atomic size_t (one block = 1) */
byte used_by = 0;                 /* _Atomic uint64_t used_by (bit = slot) */
byte ev_s[2];                     /* B's events: stream */
byte ev_q[2];                     /*             seq    */
byte n_events = 0;

/* ghost */
byte loc = LOC_CACHE;
byte gen = 0;                     /* current generation of B */
byte outs[NGEN];                  /* ops of generation g not finished */
byte outs_on[NSTR];               /* ops on B not finished, per stream */
bit  handed = 0;                  /* T0 -> T1: B published */
bit  uses_queued = 0;             /* T1 -> T0: foreign uses queued */
byte ndone = 0;

inline mutex_lock(l)   { atomic { l == 0 -> l = me + 1 } }
inline mutex_unlock(l) { d_step { assert(l == me + 1); l = 0 } }

/* (a) the event rule, checked at hand-out */
#ifdef NO_HANDOUT_CHECK
#define HANDOUT_CHECK k = 0
#else
#define HANDOUT_CHECK k = 1; do :: k < NSTR -> assert(outs_on[k] == 0); k++ :: else -> break od; k = 0
#endif

/* queue an op on B (current generation) on stream s */
inline use(s) {
	d_step { outs[gen]++; outs_on[s]++; submitted[s]++; q[s]!gen }
}

proctype executor(byte s) {
	byte g, k;
end:	do
	:: q[s]?g ->
	   d_step {                                /* op starts: (b) */
		k = 1; do :: k < g -> assert(outs[k] == 0); k++ :: else -> break od; k = 0
	   };
	   d_step { outs[g]--; outs_on[s]--; completed[s]++; g = 0 }   /* op done */
	od
}

/* cache_pop on S0: got = 1 if B was handed out */
inline cache_pop(got) {
	atomic {
		mutex_lock(cache_lock);
		if
		:: in_cache ->
		   assert(loc == LOC_CACHE); in_cache = 0; loc = LOC_USED; gen++; used_by = 0;
		   HANDOUT_CHECK;
		   got = 1
		:: else -> skip
		fi;
		mutex_unlock(cache_lock)
	}
}

inline cache_push() {
	atomic {
		mutex_lock(cache_lock);
		assert((loc == LOC_USED || loc == LOC_MOVING) && !in_cache);
		in_cache = 1; loc = LOC_CACHE;
		mutex_unlock(cache_lock)
	}
}

inline events_complete(ok) {
#if defined(BROKEN_RECLAIM_NO_CHECK)
	ok = 1
#elif defined(BROKEN_ONE_EVENT)
	ok = (n_events < 1 || completed[ev_s[0]] >= ev_q[0])
#else
	ok = (n_events < 1 || completed[ev_s[0]] >= ev_q[0]) &&
	     (n_events < 2 || completed[ev_s[1]] >= ev_q[1])
#endif
}

/* mti__alloc_reclaim_deferred */
inline reclaim() {
	mutex_lock(deferred_lock);
	if
	:: on_deferred ->
	   events_complete(ok);
	   if
	   :: ok ->
#ifdef BROKEN_RECLAIM_RACE
	      mutex_unlock(deferred_lock);               /* decided; unlinks later */
	      d_step { assert(loc == LOC_DEFERRED); on_deferred = 0; loc = LOC_MOVING };
#else
	      d_step { assert(loc == LOC_DEFERRED); on_deferred = 0; loc = LOC_MOVING };
	      mutex_unlock(deferred_lock);
#endif
	      d_step { n_events = 0; deferred_bytes-- };  /* destroy_events */
	      cache_push()
	   :: else -> mutex_unlock(deferred_lock)
	   fi;
	   ok = 0
	:: else -> mutex_unlock(deferred_lock)
	fi
}

/* mti__alloc on S0 */
inline alloc0(got) {
	got = 0;
	cache_pop(got);
	if
	:: got == 0 && deferred_bytes > 0 -> reclaim(); cache_pop(got)
	:: else -> skip
	fi
	/* still got == 0: a fresh block from the backend, not tracked */
}

/* mti__stream_sync(S_k): wait for everything submitted to it so far */
inline stream_sync(k) {
	t = submitted[k];
	completed[k] >= t;
	t = 0
}

/* mti__alloc_free */
inline buffer_free() {
	u = used_by;
#ifdef MTI_BROKEN_ALLOC_NO_EVENT
	u = 0;
#endif
	if
	:: u == 0 -> cache_push()
	:: else ->
	   if
	   :: d_step {                                /* record_use_events */
		n_events = 0; k = 1;
		do
		:: k < NSTR ->
		   if
		   :: u & (1 << k) -> ev_s[n_events] = k; ev_q[n_events] = submitted[k]; n_events++
		   :: else -> skip
		   fi; k++
		:: else -> break
		od; k = 0
	      };
	      deferred_bytes++;
	      atomic {
		mutex_lock(deferred_lock);
		assert(loc == LOC_USED); loc = LOC_DEFERRED; on_deferred = 1;
		mutex_unlock(deferred_lock)
	      }
	   :: n_events = 0;                          /* an event could not be made: */
	      k = 1;                                 /* wait for the using streams instead */
	      do
	      :: k < NSTR ->
	         if :: u & (1 << k) -> stream_sync(k) :: else -> skip fi; k++
	      :: else -> break
	      od;
	      k = 0;
	      cache_push()
	   fi
	fi;
	u = 0
}

/* mti__alloc_release_cached */
inline release_cached() {
	mutex_lock(release_lock);
	reclaim();
	/* S0's cache (the only one B can be on) */
	atomic {
		mutex_lock(cache_lock);
		if
		:: in_cache -> assert(loc == LOC_CACHE); in_cache = 0; loc = LOC_MOVING; got = 1
		:: else -> got = 0
		fi;
		mutex_unlock(cache_lock)
	};
	if
	:: got ->
#ifndef BROKEN_RELEASE_NO_WAIT
	   stream_sync(0);                           /* wait_for_submitted(S0) */
#endif
	   d_step {                                  /* backend_free: (d) */
		assert(loc == LOC_MOVING);
		k = 0; do :: k < NSTR -> assert(outs_on[k] == 0); k++ :: else -> break od; k = 0;
		loc = LOC_BACKEND
	   }
	:: else -> skip
	fi;
	got = 0;
	mutex_unlock(release_lock)
}

proctype t0(byte me) {
	bit got, ok;
	byte k, r, u, t;
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
	   :: else -> skip                            /* fresh block */
	   fi;
	   got = 0; r++
	:: else -> break
	od;
	ndone++
}

proctype t1(byte me) {
	bit got, ok;
	byte k, t;
	handed == 1;
	d_step { used_by = used_by | (1 << 1) };      /* mti_buffer_record_stream(B, S1) */
	use(1);
	d_step { used_by = used_by | (1 << 2) };      /* mti_buffer_record_stream(B, S2) */
	use(2);
	uses_queued = 1;
	reclaim();
	if
	:: reclaim()
	:: release_cached()
	fi;
	ndone++
}

init {
	byte me = 2, k;
	bit ok;
	atomic {
		run executor(0); run executor(1); run executor(2);
		run t0(0); run t1(1)
	};
	ndone == 2;
	(outs_on[0] == 0 && outs_on[1] == 0 && outs_on[2] == 0);
	reclaim();                                   /* a late allocation would do this */
	assert((loc == LOC_CACHE && in_cache) || loc == LOC_BACKEND);
	assert(!on_deferred && deferred_bytes == 0);
	assert(cache_lock == 0 && deferred_lock == 0 && release_lock == 0)
}

#ifdef LTL_RECLAIMED
ltl reclaimed { [] (loc == LOC_DEFERRED -> <> (loc == LOC_CACHE || loc == LOC_BACKEND)) }
#endif
