/*
 * stream.pml -- CPU streams: ordered op queue, executor token, events,
 * stream-wait-event.
 *
 * Abstracts (src/backend/cpu/):
 *   stream enqueue          lock(stream); append op; submitted_seq++;
 *                           broadcast(stream cv) (wakes the worker); unlock.
 *   stream worker thread    loop { lock; if an op is queued and nobody holds
 *                           the executor token: take token, pop, unlock, run,
 *                           lock, completed_seq++, drop token, broadcast;
 *                           else cond_wait }.
 *   wait for stream / seq   (stream synchronize, event synchronize, and
 *                           mti__stream_drain): lock; while completed_seq <
 *                           target { token free and op queued -> run it here
 *                           (same steps as the worker); else cond_wait };
 *                           unlock.
 *   event record            (stream, seq = submitted_seq) captured under the
 *                           stream lock.
 *   event query             complete <=> completed_seq(stream) >= seq.
 *   stream wait event       enqueue an op carrying (stream, seq) captured at
 *                           enqueue time; running it waits (on the other
 *                           stream's cv) until completed_seq >= seq.
 *
 * Model: 2 streams, each with its worker; 2 client threads, each the producer
 * of one stream (the exclusive pool gives a stream one producer at a time).
 *   C0: K(A1) on S0; record E0 on S0; publish E0; get F1; S0 waits F1;
 *       K(A2) on S0; synchronize S0.
 *   C1: K(B1) on S1; record F1 on S1; publish F1; get E0; S1 waits E0;
 *       K(B2) on S1; record E1; synchronize E1; query E0.
 * The cross waits go both ways (S0 waits for S1 and S1 for S0), so a wrong
 * capture of (stream, seq) could deadlock; the model shows it cannot.
 * Kernels are ghost: A2 must start after B1 is done, B2 after A1.
 *
 * Properties
 *   safety (assert): at most one executor per stream; ops start and complete
 *     in submission order, each exactly once; a kernel behind a wait-event
 *     starts only after the awaited kernel finished; after synchronize
 *     (stream or event) the covered kernels are done; event query of an
 *     event whose work finished reports complete; mutexes unlocked by owner.
 *   no invalid end state: no thread sleeps forever (workers idle at an end
 *     label is fine).
 *   ltl all_done (weak fairness): both clients eventually return.
 *
 * Broken twins:
 *   BROKEN_TOKEN   a waiter runs queued ops without taking the executor token
 *                  -> two executors on one stream, order lost.
 *   BROKEN_EVENT   event record captures completed_seq instead of
 *                  submitted_seq -> the event "completes" before its work ran.
 *   BROKEN_SIGNAL  cond_signal instead of cond_broadcast on the shared cv ->
 *                  the wake-up goes to the idle worker, a waiter sleeps forever.
 *
 * Left out: op payloads and errors; the executor keeps/drops the token per op
 * (the C worker may run several ops per token; that is a sub-behaviour);
 * stream destruction and worker shutdown; event reuse (re-record) and
 * destruction; more than 3 ops per stream; memory ordering (Spin is SC; every
 * shared field is accessed under the stream mutex except the ghost flags).
 * A thread running a wait-event op waits passively on the other stream's cv;
 * it does not take the other stream's token.
 */

/* ---- constants mirrored from the C code (checked by verify/check_constants.sh) ---- */
#define MTI_CPU_OP_KERNEL      1    /* op kinds in the CPU stream queue */
#define MTI_CPU_OP_WAIT_EVENT  2

#define NS    2          /* streams (and workers) */
#define NCL   2          /* clients */
#define NP    (NS + NCL) /* threads: workers 0..NS-1, clients NS.. */
#define MAXQ  4          /* ops per stream, seq 1..MAXQ-1 */
#define NK    5          /* kernels 1..4 */
#define A1 1
#define A2 2
#define B1 3
#define B2 4

byte lk[NS];                  /* stream mutex: 0 free, else owner+1 */
bit  executing[NS];           /* executor token */
byte submitted[NS];           /* submitted_seq */
byte started[NS];             /* ops popped from the queue */
byte completed[NS];           /* completed_seq */
byte opk[NS * MAXQ];          /* queued op: kind */
byte opa[NS * MAXQ];          /* kernel id | awaited stream */
byte opb[NS * MAXQ];          /* -         | awaited seq    */
byte sleep_on[NP];            /* condvar: 0 awake, s+1 asleep on stream s's cv */

/* events handed from one client to the other (the event object) */
byte ev_stream[3];
byte ev_seq[3];
bit  ev_ready[3];
#define E0 0
#define F1 1
#define E1 2

/* ghost */
bit  kdone[NK];
byte kdep[NK];                /* kernel that must be done before this one starts */
byte nexec[NS];               /* threads executing an op of the stream */
byte ndone = 0;

inline mutex_lock(l)   { atomic { l == 0 -> l = me + 1 } }
inline mutex_unlock(l) { d_step { assert(l == me + 1); l = 0 } }

inline cond_wait(s) {
	d_step { assert(lk[s] == me + 1); sleep_on[me] = s + 1; lk[s] = 0 };
	sleep_on[me] == 0;
	mutex_lock(lk[s])
}

inline cond_wake(s) {
#ifdef BROKEN_SIGNAL
	/* pthread_cond_signal: wakes (at least) one sleeper, any one */
	if
	:: sleep_on[0] == s + 1 -> sleep_on[0] = 0
	:: sleep_on[1] == s + 1 -> sleep_on[1] = 0
	:: sleep_on[2] == s + 1 -> sleep_on[2] = 0
	:: sleep_on[3] == s + 1 -> sleep_on[3] = 0
	:: else -> skip
	fi
#else
	d_step { i = 0; do :: i < NP -> if :: sleep_on[i] == s + 1 -> sleep_on[i] = 0 :: else -> skip fi; i++ :: else -> break od; i = 0 }
#endif
}

/* run op q of stream s; the caller holds the token, not the lock */
inline run_op(s, q) {
	d_step { idx = s * MAXQ + q; nexec[s]++; assert(nexec[s] == 1); assert(completed[s] == q - 1) };
	if
	:: opk[idx] == MTI_CPU_OP_KERNEL ->
	   d_step { assert(kdone[opa[idx]] == 0); assert(kdep[opa[idx]] == 0 || kdone[kdep[opa[idx]]]) };
	   kdone[opa[idx]] = 1
	:: opk[idx] == MTI_CPU_OP_WAIT_EVENT ->
	   es = opa[idx]; eq = opb[idx];
	   mutex_lock(lk[es]);
	   do
	   :: completed[es] >= eq -> break
	   :: else -> cond_wait(es)
	   od;
	   mutex_unlock(lk[es]);
	   es = 0; eq = 0
	fi;
	d_step { nexec[s]--; idx = 0 }
}

/* take the token and run one op; called and returns with lk[s] held */
inline exec_one(s) {
	d_step {
#ifndef BROKEN_TOKEN
		assert(executing[s] == 0);
#endif
		executing[s] = 1; started[s]++; q = started[s]
	};
	mutex_unlock(lk[s]);
	run_op(s, q);
	mutex_lock(lk[s]);
	d_step { assert(completed[s] == q - 1); completed[s] = q; executing[s] = 0; q = 0 };
	cond_wake(s)
}

#ifdef BROKEN_TOKEN
#define TOKEN_FREE(s) (1)
#else
#define TOKEN_FREE(s) (executing[s] == 0)
#endif

/* wait until completed_seq(s) >= target, helping to run the queue */
inline wait_seq(s, target) {
	mutex_lock(lk[s]);
	do
	:: completed[s] >= target -> break
	:: else ->
	   if
	   :: TOKEN_FREE(s) && started[s] < submitted[s] -> exec_one(s)
	   :: else -> cond_wait(s)
	   fi
	od;
	mutex_unlock(lk[s])
}

inline enqueue(s, kind, a, b) {
	mutex_lock(lk[s]);
	d_step {
		submitted[s]++; assert(submitted[s] < MAXQ);
		opk[s * MAXQ + submitted[s]] = kind;
		opa[s * MAXQ + submitted[s]] = a;
		opb[s * MAXQ + submitted[s]] = b
	};
	cond_wake(s);
	mutex_unlock(lk[s])
}

inline event_record(e, s) {
	mutex_lock(lk[s]);
	d_step {
		ev_stream[e] = s;
#ifdef BROKEN_EVENT
		ev_seq[e] = completed[s];
#else
		ev_seq[e] = submitted[s];
#endif
	};
	mutex_unlock(lk[s])
}

/* stream waits for event: (stream, seq) captured now */
inline stream_wait_event(s, e) { enqueue(s, MTI_CPU_OP_WAIT_EVENT, ev_stream[e], ev_seq[e]) }

inline stream_synchronize(s) {
	mutex_lock(lk[s]); t = submitted[s]; mutex_unlock(lk[s]);
	wait_seq(s, t)
}

proctype worker(byte me) {
	byte s = me;
	byte i, q, idx, es, eq;
	mutex_lock(lk[s]);
	do
	:: executing[s] == 0 && started[s] < submitted[s] -> exec_one(s)
	:: else ->
	   d_step { assert(lk[s] == me + 1); sleep_on[me] = s + 1; lk[s] = 0 };
end_idle:  sleep_on[me] == 0;
	   mutex_lock(lk[s])
	od
}

proctype client0(byte me) {
	byte i, q, idx, es, eq, t;
	enqueue(0, MTI_CPU_OP_KERNEL, A1, 0);
	event_record(E0, 0); ev_ready[E0] = 1;
	ev_ready[F1] == 1;
	stream_wait_event(0, F1);
	enqueue(0, MTI_CPU_OP_KERNEL, A2, 0);
	stream_synchronize(0);
	assert(kdone[A1] && kdone[A2] && kdone[B1]);
	ndone++
}

proctype client1(byte me) {
	byte i, q, idx, es, eq, t;
	enqueue(1, MTI_CPU_OP_KERNEL, B1, 0);
	event_record(F1, 1); ev_ready[F1] = 1;
	ev_ready[E0] == 1;
	stream_wait_event(1, E0);
	enqueue(1, MTI_CPU_OP_KERNEL, B2, 0);
	event_record(E1, 1);
	wait_seq(ev_stream[E1], ev_seq[E1]);          /* event synchronize */
	assert(kdone[B1] && kdone[B2] && kdone[A1]);
	/* event query of E0: its work (A1) is done (B2 waited for it) */
	mutex_lock(lk[0]); assert(completed[ev_stream[E0]] >= ev_seq[E0]); mutex_unlock(lk[0]);
	ndone++
}

init {
	atomic {
		kdep[A2] = B1; kdep[B2] = A1;
		run worker(0); run worker(1);
		run client0(NS); run client1(NS + 1)
	};
	ndone == NCL;
	assert(completed[0] == submitted[0] && completed[1] == submitted[1])
}

#ifdef LTL_ALL_DONE
ltl all_done { <> (ndone == NCL) }
#endif
