/*
 * stream.pml -- CPU streams and events: the ordered op ring, the executor token, the lazily
 * woken worker, waiters that run ops themselves, cross-stream waits that help the other
 * stream, and events.
 *
 * Abstracts (src/backend/cpu/cpu-stream.c, cpu-event.c, cpu-internal.h):
 *   mti__cpu_stream_submit   lock; ring full -> run_until(head + 1); ring[tail++] = op;
 *                            unless MTI_SUBMIT_WAITED: kick_locked(tail); unlock.
 *   run_until                while head < target { executing -> wait_for_progress; else
 *                            take the token, run ops up to target (lock dropped while an
 *                            op runs; head++, completed = head, broadcast done_cv when
 *                            done_waiters > 0), drop the token, hand work beyond the target
 *                            to a sleeping worker (wake_worker) }.
 *   wait_for_progress        sync mode spin/yield/auto: unlock, spin on `completed` (auto:
 *                            a bounded budget), lock, return on progress; then
 *                            done_waiters++; while (head == seen && executing) wait done_cv.
 *   mti__cpu_stream_wait_seq fast path completed >= seq, else lock; run_until(seq); unlock.
 *   kick_locked / mti__cpu_stream_kick
 *                            raise kick_seq; wake_worker if the worker sleeps and nobody
 *                            holds the token.
 *   wake_worker              worker_sleeping = false (one wake-up per sleep), signal work_cv.
 *   worker_main              loop { kick_seq > head && !executing -> run_until(kick_seq);
 *                            else worker_sleeping = 1; wait work_cv; worker_sleeping = 0 }.
 *   stream_synchronize / stream_query
 *                            run_until(tail) / idle test + kick.
 *   mti__cpu_op_run CPU_OP_WAIT
 *                            mti__cpu_stream_wait_seq(other, seq): the executor helps the
 *                            other stream (nested run_until on it).
 *   event_record (untimed)   seq = tail under the stream lock, then (stream, seq) under
 *                            the event lock.   event_query: completed >= seq, else kick.
 *   event_synchronize        mti__cpu_stream_wait_seq(stream, seq).
 *   stream_wait_event        read (stream, seq) NOW; nothing to do when never recorded,
 *                            the same stream, or already complete; else submit CPU_OP_WAIT.
 *
 * Model: streams A (0) and B (1), each with its worker; clients C0 (records into A) and C1
 * (records into B); the runtime's record lock makes each stream's submits single-threaded,
 * which one producer per stream stands for.  Kernels are ghost ops with an id.
 *   C0: K(A1); record E0 on A; publish; get F1; A waits F1; K(A2); re-record E0 on A;
 *       then stream_synchronize(A), or poll stream_query(A) until idle.
 *   C1: K(B1); get E0; B waits E0; record F1 on B; publish; K(B2); record E1 on B;
 *       K(B3), never waited for (submitted without MTI_SUBMIT_WAITED: the worker must run
 *       it on its own); then event_synchronize(E1), or poll event_query(E1) until complete.
 * The cross waits go both ways (A waits for B's wait op, which waits for A), and the
 * re-record of E0 moves its marker past A's wait: only capture-at-enqueue keeps the waits
 * acyclic.  Every submit is flagged MTI_SUBMIT_WAITED or not per client (nondeterministic);
 * the sync mode is chosen per run (SYNC_MODE) or nondeterministically.
 *
 * Properties
 *   safety (assert): at most one thread runs ops of a stream (executor token); ops run in
 *     submission order, each exactly once; a kernel behind a stream-wait-event starts only
 *     after the awaited kernel finished; after synchronize / a complete query the covered
 *     kernels are done; a wait op run by a helper (nested) never needs a third level (the
 *     waits form a DAG, so the awaited work is already complete there); mutexes unlocked by
 *     their owner; at the end every submitted op ran (also K(B3), which nobody waited for).
 *   no invalid end state: nobody sleeps forever (workers idle at their end label are fine).
 *   ltl all_done (weak fairness): both clients finish (covers the polling loops).
 *
 * Broken twins:
 *   MTI_BROKEN_STREAM_NO_TOKEN  run_until ignores the token (same flag as the C twin).
 *   BROKEN_EVENT_HEAD           event record captures head (completed) instead of tail.
 *   BROKEN_WAIT_LATE            the wait op reads the event when it runs, not at enqueue.
 *   BROKEN_NO_HANDOFF           run_until does not hand kicked work to the sleeping worker.
 *   BROKEN_DONE_SIGNAL          cond_signal instead of cond_broadcast on done_cv.
 *
 * Left out: op payloads and errors (s->error); timing events (CPU_OP_RECORD and the
 * generation check); graph capture (s->capturing, CPU_OP_GRAPH: a captured graph replays
 * its ops inside one op; a wait op inside a graph is not modelled) and CPU_OP_NN (ops that
 * just run, like the kernels here); stream destruction / worker stop; the ring is 2 ops
 * deep here (the C ring holds MTI_CPU_RING_CAP = 256; 2 makes the ring-full path
 * reachable); sync mode YIELD (same as SPIN here); pthread spurious wake-ups (every C wait loops, so they only
 * add retries); memory ordering (Spin is sequentially consistent; `completed` is the
 * release/acquire mirror of head and is read here as head).
 */

/* ---- constants mirrored from the C code (checked by verify/check-constants.sh) ---- */
#define MTI_CPU_RING_CAP   256     /* src/backend/cpu/cpu-internal.h */
#define CPU_OP_WAIT        5       /* enum cpu_op_kind */
#define MTI_SUBMIT_WAITED  1       /* src/backend/backend-impl.h */
#define MTI_SYNC_AUTO      0       /* enum mti_sync_mode (include/mtinfer.h) */
#define MTI_SYNC_SPIN      1
#define MTI_SYNC_BLOCK     3

#define OP_KERNEL   1              /* any op that just runs (linear, memcpy, host fn, ...) */
#define OP_WAIT     CPU_OP_WAIT

#define RING_CAP 2                 /* model ring depth */
#define NS    2
#define NP    4                    /* workers 0,1; clients 2,3 */
#define MAXQ  6                    /* seq 1..5 */
#define NONE  255
#define A1 1
#define A2 2
#define B1 3
#define B2 4
#define B3 5
#define NK 6
#define E0 0
#define F1 1
#define E1 2
/* how the clients finish: 0 synchronize, 1 poll the query, 2 either (nondeterministic) */
#ifndef FINISH
#define FINISH 2
#endif

#define DONE_CV(s) (1 + 2 * (s))
#define WORK_CV(s) (2 + 2 * (s))

byte lk[NS];                  /* s->lock: 0 free, else owner + 1 */
byte head[NS];                /* ops finished (== completed, its atomic mirror) */
byte tail[NS];                /* ops submitted; op i has seq i + 1 */
byte kick[NS];                /* kick_seq */
bit  executing[NS];           /* the executor token */
byte done_waiters[NS];
bit  worker_sleeping[NS];
byte opk[NS * MAXQ];          /* ring, indexed by seq */
byte opa[NS * MAXQ];          /* kernel id | other stream (| event id, BROKEN_WAIT_LATE) */
byte opb[NS * MAXQ];          /*           | seq */
byte sleep_on[NP];            /* 0 awake, else the condvar slept on */
byte mode;                    /* dev->sync_mode */

byte ev_stream[3];            /* event markers (NONE = never recorded) */
byte ev_seq[3];
bit  ev_ready[3];             /* ghost hand-over of the event between clients */

/* ghost */
bit  kdone[NK];
byte kdep[NK];
byte nexec[NS];
byte ndone = 0;

/*
 * Granularity: a stretch of code that runs under a stream lock is one atomic step here.
 * That is sound (Lipton reduction): the lock acquire moves right, the release left, and
 * every field touched inside is guarded by that lock except `completed` (here: head), which
 * lock-free readers load and which each stretch writes at most once.
 */
inline mutex_lock(l)   { atomic { l == 0 -> l = me + 1 } }
inline mutex_unlock(l) { d_step { assert(l == me + 1); l = 0 } }

/* pthread_cond_wait: unlock and sleep atomically; after the wake-up, re-lock. */
inline cond_wait(cv, l) {
	d_step { assert(l == me + 1); sleep_on[me] = cv; l = 0 };
	atomic { sleep_on[me] == 0 -> l == 0 -> l = me + 1 }
}

inline cond_signal(cv) {      /* wakes one sleeper (any one) if there is one */
	if
	:: sleep_on[0] == cv -> sleep_on[0] = 0
	:: sleep_on[1] == cv -> sleep_on[1] = 0
	:: sleep_on[2] == cv -> sleep_on[2] = 0
	:: sleep_on[3] == cv -> sleep_on[3] = 0
	:: else -> skip
	fi
}

inline cond_broadcast(cv) {
	d_step {
		if :: sleep_on[0] == cv -> sleep_on[0] = 0 :: else -> skip fi;
		if :: sleep_on[1] == cv -> sleep_on[1] = 0 :: else -> skip fi;
		if :: sleep_on[2] == cv -> sleep_on[2] = 0 :: else -> skip fi;
		if :: sleep_on[3] == cv -> sleep_on[3] = 0 :: else -> skip fi
	}
}

/* kick_locked (caller holds lk[s]) */
/* wake_worker: one wake-up per sleep (clears worker_sleeping, then signals work_cv) */
inline wake_worker(s) {
	worker_sleeping[s] = 0;
	cond_signal(WORK_CV(s))
}

inline kick_locked(s, seq) {
	if :: seq > kick[s] -> kick[s] = seq :: else -> skip fi;
	if
	:: kick[s] > head[s] && !executing[s] && worker_sleeping[s] -> wake_worker(s)
	:: else -> skip
	fi
}

/* wait_for_progress: lock held on entry and exit */
inline wait_for_progress(s, seen, r) {
	atomic {
		seen = head[s]; r = 0;
		if
		:: mode != MTI_SYNC_BLOCK -> mutex_unlock(lk[s])
		:: else -> skip
		fi
	};
	if
	:: mode != MTI_SYNC_BLOCK ->
	   if
	   :: head[s] != seen                    /* `completed` moved */
	   :: mode == MTI_SYNC_AUTO -> skip      /* spin budget used up */
	   fi;
	   atomic {
		mutex_lock(lk[s]);
		if :: head[s] != seen || !executing[s] -> r = 1 :: else -> skip fi
	   }
	:: else -> skip
	fi;
	if
	:: r == 0 ->
	   done_waiters[s]++;
	   do
	   :: head[s] == seen && executing[s] -> cond_wait(DONE_CV(s), lk[s])
	   :: else -> break
	   od;
	   done_waiters[s]--
	:: else -> skip
	fi;
	seen = 0; r = 0
}

inline op_begin(s, q) {
	d_step { nexec[s]++; assert(nexec[s] == 1); assert(head[s] == q - 1) }
}

inline run_kernel(s, k) {
	d_step { assert(!kdone[k]); assert(kdep[k] == 0 || kdone[kdep[k]]); kdone[k] = 1; nexec[s]-- }
}

inline done_wake(s) {
#ifdef BROKEN_DONE_SIGNAL
	if :: done_waiters[s] > 0 -> cond_signal(DONE_CV(s)) :: else -> skip fi
#else
	if :: done_waiters[s] > 0 -> cond_broadcast(DONE_CV(s)) :: else -> skip fi
#endif
}

/* end of run_until's inner loop: "work beyond our target: hand it to the worker" */
inline handoff(s) {
#ifndef BROKEN_NO_HANDOFF
	if
	:: kick[s] > head[s] && worker_sleeping[s] -> wake_worker(s)
	:: else -> skip
	fi
#else
	skip
#endif
}

#ifdef BROKEN_WAIT_LATE
#define WAIT_SEQ(oa, ob) ev_seq[ob]
#define WAIT_STREAM(oa, ob) ev_stream[ob]
#else
#define WAIT_SEQ(oa, ob) ob
#define WAIT_STREAM(oa, ob) oa
#endif

#define READ_OP(s, q, k, oa, ob) \
	q = head[s] + 1; k = opk[s * MAXQ + q]; oa = opa[s * MAXQ + q]; ob = opb[s * MAXQ + q]

/* ---- level 2: a helper running the other stream's ops from inside a wait op ---- */
inline run_op_2(s, q, k, oa, ob) {
	op_begin(s, q);
	if
	:: k == OP_KERNEL -> run_kernel(s, oa)
	:: k == OP_WAIT ->
	   /* mti__cpu_stream_wait_seq's fast path must hold here: the waits form a DAG in time,
	    * so work awaited by a wait op met while helping is already complete */
	   d_step { assert(head[WAIT_STREAM(oa, ob)] >= WAIT_SEQ(oa, ob)); nexec[s]-- }
	fi
}

inline run_until_2(s, target) {
	do
	:: head[s] >= target -> break
	:: else ->
#ifndef MTI_BROKEN_STREAM_NO_TOKEN
	   if
	   :: executing[s] -> wait_for_progress(s, seen2, r2)
	   :: else ->
#endif
	      atomic { executing[s] = 1; READ_OP(s, q2, k2, oa2, ob2); mutex_unlock(lk[s]) };
	      f2 = 0;
	      do
	      :: f2 -> break
	      :: else ->
	         run_op_2(s, q2, k2, oa2, ob2);
	         atomic {
	            mutex_lock(lk[s]);
	            head[s]++;
	            done_wake(s);
	            if
	            :: head[s] < target -> READ_OP(s, q2, k2, oa2, ob2); mutex_unlock(lk[s])
	            :: else -> executing[s] = 0; handoff(s); f2 = 1; q2 = 0; k2 = 0; oa2 = 0; ob2 = 0
	            fi
	         }
	      od;
	      f2 = 0
#ifndef MTI_BROKEN_STREAM_NO_TOKEN
	   fi
#endif
	od
}

inline wait_seq_2(s, seq) {
	if
	:: head[s] >= seq -> skip
	:: else ->
	   mutex_lock(lk[s]);
	   run_until_2(s, seq);
	   mutex_unlock(lk[s])
	fi
}

/* ---- level 1 ---- */
inline run_op_1(s, q, k, oa, ob) {
	op_begin(s, q);
	if
	:: k == OP_KERNEL -> run_kernel(s, oa)
	:: k == OP_WAIT ->
	   o2 = WAIT_STREAM(oa, ob); sq2 = WAIT_SEQ(oa, ob);
	   wait_seq_2(o2, sq2);
	   d_step { o2 = 0; sq2 = 0; nexec[s]-- }
	fi
}

inline run_until_1(s, target) {
	do
	:: head[s] >= target -> break
	:: else ->
#ifndef MTI_BROKEN_STREAM_NO_TOKEN
	   if
	   :: executing[s] -> wait_for_progress(s, seen1, r1)
	   :: else ->
#endif
	      atomic { executing[s] = 1; READ_OP(s, q1, k1, oa1, ob1); mutex_unlock(lk[s]) };
	      f1 = 0;
	      do
	      :: f1 -> break
	      :: else ->
	         run_op_1(s, q1, k1, oa1, ob1);
	         atomic {
	            mutex_lock(lk[s]);
	            head[s]++;
	            done_wake(s);
	            if
	            :: head[s] < target -> READ_OP(s, q1, k1, oa1, ob1); mutex_unlock(lk[s])
	            :: else -> executing[s] = 0; handoff(s); f1 = 1; q1 = 0; k1 = 0; oa1 = 0; ob1 = 0
	            fi
	         }
	      od;
	      f1 = 0
#ifndef MTI_BROKEN_STREAM_NO_TOKEN
	   fi
#endif
	od
}

inline wait_seq_1(s, seq) {
	if
	:: head[s] >= seq -> skip
	:: else ->
	   mutex_lock(lk[s]);
	   run_until_1(s, seq);
	   mutex_unlock(lk[s])
	fi
}

/* ---- client calls ---- */
inline append(s, kind, a, b) {
	tail[s]++; assert(tail[s] < MAXQ);
	opk[s * MAXQ + tail[s]] = kind; opa[s * MAXQ + tail[s]] = a; opb[s * MAXQ + tail[s]] = b;
	if :: !waited -> kick_locked(s, tail[s]) :: else -> skip fi
}

/* mti__cpu_stream_submit */
inline submit(s, kind, a, b) {
	atomic {
		mutex_lock(lk[s]);
		if
		:: tail[s] - head[s] < RING_CAP -> append(s, kind, a, b); mutex_unlock(lk[s])
		:: else -> rfull = 1
		fi
	};
	if
	:: rfull ->                                  /* ring full: help drain one slot */
	   do
	   :: tail[s] - head[s] >= RING_CAP -> tr = head[s] + 1; run_until_1(s, tr)
	   :: else -> break
	   od;
	   atomic { tr = 0; rfull = 0; append(s, kind, a, b); mutex_unlock(lk[s]) }
	:: else -> skip
	fi
}

inline event_record(e, s) {
	atomic {
		mutex_lock(lk[s]);
#ifdef BROKEN_EVENT_HEAD
		t = head[s];
#else
		t = tail[s];
#endif
		mutex_unlock(lk[s])
	};
	d_step { ev_stream[e] = s; ev_seq[e] = t; t = 0 }
}

inline stream_wait_event(s, e) {
	d_step { o = ev_stream[e]; t = ev_seq[e] };
	if
	:: o == NONE || o == s || head[o] >= t -> skip
	:: else ->
#ifdef BROKEN_WAIT_LATE
	   submit(s, OP_WAIT, o, e)
#else
	   submit(s, OP_WAIT, o, t)
#endif
	fi;
	d_step { o = 0; t = 0 }
}

inline stream_synchronize(s) {
	atomic { mutex_lock(lk[s]); t = tail[s] };
	run_until_1(s, t);
	atomic { mutex_unlock(lk[s]); t = 0 }
}

inline stream_query(s, idle) {
	atomic {
		mutex_lock(lk[s]);
		idle = (head[s] == tail[s]);
		if :: !idle -> kick_locked(s, tail[s]) :: else -> skip fi;
		mutex_unlock(lk[s])
	}
}

inline event_query(e, ok) {
	d_step { o = ev_stream[e]; t = ev_seq[e] };
	if
	:: o == NONE || head[o] >= t -> ok = 1
	:: else -> atomic { ok = 0; mutex_lock(lk[o]); kick_locked(o, t); mutex_unlock(lk[o]) }
	fi;
	d_step { o = 0; t = 0 }
}

inline event_synchronize(e) {
	d_step { o = ev_stream[e]; t = ev_seq[e] };
	if
	:: o != NONE -> wait_seq_1(o, t)
	:: else -> skip
	fi;
	d_step { o = 0; t = 0 }
}

#define LOCALS \
	byte tr, t1, q1, k1, oa1, ob1, seen1, o2, sq2, q2, k2, oa2, ob2, seen2; \
	bit r1, r2, f1, f2, rfull

proctype worker(byte me) {
	LOCALS;
	byte s = me;
	mutex_lock(lk[s]);
	do
	:: kick[s] > head[s] && !executing[s] -> t1 = kick[s]; run_until_1(s, t1); t1 = 0
	:: else ->
	   d_step { worker_sleeping[s] = 1; assert(lk[s] == me + 1); sleep_on[me] = WORK_CV(s); lk[s] = 0 };
end_idle:  sleep_on[me] == 0;
	   atomic { mutex_lock(lk[s]); worker_sleeping[s] = 0 }
	od
}

proctype client0(byte me; bit waited) {
	LOCALS;
	byte t, o;
	bit fin;
	submit(0, OP_KERNEL, A1, 0);
	event_record(E0, 0); ev_ready[E0] = 1;
	ev_ready[F1] == 1;
	stream_wait_event(0, F1);
	submit(0, OP_KERNEL, A2, 0);
	event_record(E0, 0);                      /* re-record: moves the marker */
	if
	:: FINISH != 1 -> stream_synchronize(0)
	:: FINISH != 0 ->
	   do
	   :: stream_query(0, fin);
	      if :: fin -> break :: else -> skip fi
	   od
	fi;
	assert(kdone[A1] && kdone[A2] && kdone[B1]);
	ndone++
}

proctype client1(byte me; bit waited) {
	LOCALS;
	byte t, o;
	bit fin, w;
	submit(1, OP_KERNEL, B1, 0);
	ev_ready[E0] == 1;
	stream_wait_event(1, E0);
	event_record(F1, 1); ev_ready[F1] = 1;
	submit(1, OP_KERNEL, B2, 0);
	event_record(E1, 1);
	d_step { w = waited; waited = 0 };        /* nobody will ever wait for B3 */
	submit(1, OP_KERNEL, B3, 0);
	waited = w;
	if
	:: FINISH != 1 -> event_synchronize(E1)
	:: FINISH != 0 ->
	   do
	   :: event_query(E1, fin);
	      if :: fin -> break :: else -> skip fi
	   od
	fi;
	assert(kdone[B1] && kdone[B2] && kdone[A1]);
	ndone++
}

init {
	atomic {
		ev_stream[0] = NONE; ev_stream[1] = NONE; ev_stream[2] = NONE;
		kdep[A2] = B1; kdep[B2] = A1;
#ifdef SYNC_MODE
		mode = SYNC_MODE;
#else
		if
		:: mode = MTI_SYNC_BLOCK
		:: mode = MTI_SYNC_AUTO
		:: mode = MTI_SYNC_SPIN
		fi;
#endif
		run worker(0); run worker(1);
#ifdef WAITED
		run client0(2, WAITED); run client1(3, WAITED)
#else
		if
		:: run client0(2, 0)
		:: run client0(2, 1)
		fi;
		if
		:: run client1(3, 0)
		:: run client1(3, 1)
		fi
#endif
	};
	ndone == 2;
	/* every submitted op runs, also K(B3) that nobody waits for */
	head[0] == tail[0] && head[1] == tail[1];
	assert(kdone[B3])
}

#ifdef LTL_ALL_DONE
ltl all_done { <> (ndone == 2) }
#endif
#ifdef LTL_ALL_RUN
ltl all_run { <> (ndone == 2 && kdone[B3]) }
#endif
