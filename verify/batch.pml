/*
 * batch.pml -- the dynamic batcher: batch slots, the overflow queue, launch / complete, the
 * members' read-out, the service thread and stop.
 *
 * Abstracts (src/batch/batcher.c; API include/mtinfer/batcher.h):
 *   mti_batcher_infer  lock; enter (MTI_ERR_STOPPED once stopping, else active++); place;
 *                      unlock_wake; claimant: copy the input into staging row r, then
 *                      written++ (release); run_batches of what place closed; lock;
 *                      while (state == REQ_QUEUED) { seen = ovf_gen; unlock_wake;
 *                      wait_word(ovf_gen, seen, deadline); lock; timed out and still
 *                      queued -> ovf_remove, REQ_ANSWERED (MTI_ERR_TIMEOUT) }; answered ->
 *                      return; else wait_word(slot->gen, wait_gen, deadline): timed out ->
 *                      lock; still REQ_ROW -> row_kill, REQ_ANSWERED, pump, unlock_wake,
 *                      run_batches, return MTI_ERR_TIMEOUT; started -> wait on, no deadline;
 *                      then member_finish; leave (active--).
 *   place              queued++; no open slot -> pump (opens one); open slot with room and an
 *                      empty overflow queue -> claim_row, else ovf_push; pump; the service
 *                      thread asleep and this is the batch's first row -> signal svc_cv.
 *   claim_row / row_kill / ovf_push / ovf_pop / ovf_remove
 *                      the row table and the overflow FIFO, under b->lock.
 *   pump               loop: no open slot -> pop a free one (OPEN, n = live = written = 0);
 *                      move overflow requests into it (claim_row + the mover copies the input
 *                      + written++); live == 0 -> n = written = 0, stop; close when stopping,
 *                      full, idle (busy == 0) or after max_queue_delay_us; close_slot; go on
 *                      (the next free slot opens). ovf_moved -> unlock_wake bumps ovf_gen.
 *   close_slot         RUNNING, open = NULL, busy++, queued -= live, every live row
 *                      REQ_STARTED, holds = blocking readers + 1 (the launcher).
 *   run_batches        rounds: launch every batch, then complete every batch; batches that
 *                      the frees close form the next round; a client thread (svc false) hands
 *                      them to the service thread after HANDOFF_ROUNDS rounds (handoff[],
 *                      signal svc_cv).
 *   launch             spin until written == n (acquire), submit copy-in / forward /
 *                      copy-out (the forward may fail: the batch's status).
 *   complete           mti_stream_synchronize (the forward runs: output row i = f(input row
 *                      i)), status, bump_and_wake(gen), holds-- (acq_rel): last -> free_slot.
 *   member_finish      read the status, copy its own output row out (on MTI_OK), holds--
 *                      (acq_rel): last -> free_slot + run_batches.
 *   free_slot          lock; FREE, busy--, push on free_slots; pump; unlock_wake.
 *   bump_and_wake      fetch_add(word) (seq_cst), THEN load(sleepers) (seq_cst) > 0 ->
 *                      futex_wake_all.
 *   wait_word          word != seen -> return; loop { sleepers++ (seq_cst); word == seen ->
 *                      futex_wait(word, seen); sleepers--; word != seen -> return true };
 *                      with a deadline it may return false once the deadline passed.
 *   unlock_wake        take ovf_moved, unlock, bump_and_wake(ovf_gen) when it was set.
 *   enter / leave      active++ unless stopping / active-- (b->active: n_active here).
 *   service_main       lock; loop until svc_exit: take handoff[], pump; something to run
 *                      -> unlock_wake, run_batches(svc), lock; else svc_sleeping = true,
 *                      cond_wait (timed when the open batch has live rows: the delay timer).
 *   mti_batcher_stop   lock; stopping; ovf_pop every queued request -> REQ_ANSWERED
 *                      (MTI_ERR_STOPPED); pump (the forming batch closes: CLOSE_STOP);
 *                      unlock_wake; bump_and_wake(ovf_gen); run_batches(svc); lock; poll
 *                      (1 ms cond_wait_until on space_cv, signal svc_cv) until busy == 0,
 *                      n_handoff == 0, active == 0.
 *   mti_batcher_destroy
 *                      stop; svc_exit + signal; join the service thread.
 *
 * Model: NCLIENTS blocking client threads (mti_batcher_infer), NREQ requests each; NSLOTS
 * slots (executor streams); MAXB = max_batch rows per batch; the service thread; with STOP a
 * thread that calls mti_batcher_destroy (= stop, then the service thread exits) at any moment.
 * Every b->lock critical section is ONE atomic step (b->lock is the batcher's only lock, and
 * each section touches only lock-guarded fields plus atomics that nobody writes concurrently
 * there: sound by Lipton's reduction, as in stream.pml); cond_wait = end of a section + a
 * separate "asleep" bit (the only svc_cv waiter is the service thread, so signal = clear it).
 * Futexes: fsleep[t] = word the thread sleeps on + 1; FUTEX_WAIT checks the word and sleeps
 * in one step; futex_wake_all wakes every sleeper of the word; no spurious wake-ups (the
 * worst case for lost wake-ups). The spin phase of wait_word (loads only) is left out.
 * Time: a deadline (TIMEOUT build: clients with me < NDEADLINE have one) may pass at any
 * moment; "the oldest row waited max_queue_delay_us" may hold at any pump while another
 * batch is busy; the service thread's timed wait may time out at any moment.
 * Staging: stage_in[s][r] / stage_out[s][r] hold the id + 1 of the request whose bytes are
 * there (0: none); the model clears a slot's rows when it is reopened (its old contents are
 * garbage to the new batch). The status is OK or an error (mti__batcher_fail_next_batch /
 * a device error): one bit, chosen at launch.
 *
 * Properties
 *   safety (assert): the launcher sees every claimed row's input (written == n covers
 *     them); a member reads its OWN output row (stage_out == its id) and its OWN batch's
 *     status; a slot is reopened (reused) only when every member of its last batch has read
 *     its output (unread[s] == 0); a request is claimed into one row and started once;
 *     a request answered MTI_ERR_TIMEOUT never had its batch started (else it would be
 *     answered twice); stop returns only when no caller is inside a call, nothing is busy,
 *     the queue is empty; at the end every request was answered exactly once (ndone),
 *     queued == 0, busy == 0, nothing waits in the overflow queue, n_active == 0.
 *   no invalid end state: nobody sleeps forever: no lost wake-up between a batch's answer
 *     (gen) or an overflow move (ovf_gen) and its waiters, no handed-off batch left behind,
 *     a stop leaves no caller blocked (the service thread may sleep forever at the end).
 *   ltl all_answered (weak fairness): every request is eventually answered.
 *   ltl witness (WITNESS_K=k): [](inflight < k), inflight = batches launched and not yet
 *     completed.  Spin must REFUTE it: two batches are in flight at once on the two
 *     executor streams.
 *
 * Broken twins (spin -D...):
 *   MTI_BROKEN_BATCH_FREE_BEFORE_READ  (same flag as the C twin) holds = 1 (the launcher
 *                                      only) and members do not drop a hold -> the slot is
 *                                      freed and reused while members still read.
 *   BROKEN_BATCH_WAKE_BEFORE_BUMP      bump_and_wake reads sleepers (and wakes) BEFORE the
 *                                      fetch_add: a waiter that counted itself in between
 *                                      sleeps through the bump (lost wake-up).
 *   BROKEN_BATCH_SVC_SLEEP_UNLOCKED    the service thread checks handoff[] / pump under the
 *                                      lock, unlocks, THEN sleeps: a hand-off signalled in
 *                                      between is lost and the batch never runs.
 *   BROKEN_BATCH_STOP_DROPS_QUEUED     stop empties the overflow queue without answering
 *                                      the requests (they stay REQ_QUEUED).
 *   BROKEN_BATCH_STOP_NO_WAKE          stop answers them but does not bump ovf_gen.
 *   BROKEN_BATCH_TIMEOUT_AFTER_START   a timed-out member kills its row without checking
 *                                      that its batch has not started.
 *
 * Left out: asynchronous requests (mti_batcher_submit, callbacks, handles, wait, cancel,
 * answer_async, the service thread's expire_async, in_copy, refs); priorities (one FIFO;
 * the two FIFOs are the same code twice); max_queue / admit / space_cv / the full policy;
 * the test hook held (mti__batcher_hold); preferred sizes, padding, CUDA graphs, warm-up,
 * stats, create; memory orders weaker than seq_cst (Spin is sequentially consistent: the
 * release/acquire edges written / gen / holds are represented by the orders of the steps,
 * and the FREE_BEFORE_READ and WAKE_BEFORE_BUMP twins show what breaking them does); the
 * 1-ms poll of stop is modelled as a wait for its exit condition (plus the svc_cv signal
 * while a hand-off is pending); SLOT_READING is not a separate state (the C code leaves a
 * slot RUNNING until it is freed); more than 3 clients, 2 slots, max_batch 2 (every rule is
 * per slot / per row).
 */

/* ---- constants mirrored from the C code (verify/check-constants.sh compares them) ---- */
#define HANDOFF_ROUNDS   2    /* src/batch/batcher.c */
#define SLOT_FREE        0    /* enum slot_state */
#define SLOT_OPEN        1
#define SLOT_RUNNING     2
#define REQ_NEW          0    /* enum req_state */
#define REQ_QUEUED       1
#define REQ_ROW          2
#define REQ_STARTED      3
#define REQ_ANSWERED     4
#define CLOSE_NONE       0    /* enum close_reason */
#define CLOSE_IDLE       1
#define CLOSE_FULL       2
#define CLOSE_DELAY      3
#define CLOSE_STOP       4

/* ---- model configuration ---- */
#ifndef NCLIENTS
#define NCLIENTS 3
#endif
#ifndef NREQ
#define NREQ 1
#endif
#ifndef NSLOTS
#define NSLOTS 2
#endif
#ifndef MAXB
#define MAXB 2
#endif
#ifndef ROUNDS
#define ROUNDS HANDOFF_ROUNDS
#endif
#ifndef NDEADLINE
#define NDEADLINE NCLIENTS
#endif

#define NONE   255
#define OVFW   NSLOTS             /* futex word index of ovf_gen (0..NSLOTS-1: slot gen) */
#define NTOTAL (NCLIENTS * NREQ)
#define ST_OK  0
#define ST_ERR 1                  /* the batch's error (MTI_ERR_DEVICE, injected, ...) */
#define ST_TIMEOUT 2
#define ST_STOPPED 3

/* b->lock fields */
byte open = NONE;
byte free_slots[NSLOTS];
byte n_free = 0;
byte busy = 0;
byte queued = 0;
byte ovf[NCLIENTS];               /* overflow FIFO (one priority) */
byte ovf_len = 0;
bit  stopping = 0, svc_exit = 0, svc_sleeping = 0, ovf_moved = 0;
byte handoff[NSLOTS];
byte n_handoff = 0;
byte sstate[NSLOTS];
byte sn[NSLOTS];                  /* rows claimed */
byte slive[NSLOTS];               /* rows still wanted */
byte sreqs[NSLOTS * MAXB];        /* request (client id) of each row; NONE: dead */
byte rstate[NCLIENTS];            /* the request each client has in flight */
byte rslot[NCLIENTS];
byte rrow[NCLIENTS];
byte rwait_gen[NCLIENTS];
byte rstatus[NCLIENTS];
/* atomics */
byte word[NSLOTS + 1];            /* slot->gen[s], b->ovf_gen */
byte wsleepers[NSLOTS + 1];       /* slot->sleepers, b->ovf_sleepers */
byte written[NSLOTS];
byte holds[NSLOTS];
byte n_active = 0;
/* launcher-owned, published by gen */
byte sstatus[NSLOTS];
byte stage_in[NSLOTS * MAXB];
byte stage_out[NSLOTS * MAXB];
/* futex / condvar sleepers */
byte fsleep[NCLIENTS];            /* futex word + 1 the client sleeps on, 0: awake */
bit  svc_asleep = 0;              /* the service thread waits on svc_cv */
bit  svc_done = 0;

/* ghost */
byte unread[NSLOTS];              /* members of the slot's last batch that did not read yet */
byte gstat[NCLIENTS];             /* the status the request's batch was answered with */
bit  started[NCLIENTS];           /* the request's batch closed (it will be answered by it) */
bit  incall[NCLIENTS];
byte inflight = 0;                /* batches launched, not completed */
byte ndone = 0;                   /* requests answered (the caller got its status) */
bit  stop_done = 0;

inline futex_wake_all(W) {
	fx = 0;
	do
	:: fx < NCLIENTS -> if :: fsleep[fx] == W + 1 -> fsleep[fx] = 0 :: else -> skip fi; fx++
	:: else -> break
	od;
	fx = 0
}

/* bump_and_wake: fetch_add(word) THEN load(sleepers) > 0 -> futex_wake_all (seq_cst pair) */
inline bump_and_wake(W) {
#ifdef BROKEN_BATCH_WAKE_BEFORE_BUMP
	d_step { if :: wsleepers[W] > 0 -> futex_wake_all(W) :: else -> skip fi };
	word[W]++
#else
	word[W]++;
	d_step { if :: wsleepers[W] > 0 -> futex_wake_all(W) :: else -> skip fi }
#endif
}

/* the part of unlock_wake after the unlock (wake = ovf_moved, taken inside the section) */
inline unlock_wake_tail() {
	if :: wake -> wake = 0; bump_and_wake(OVFW) :: else -> skip fi
}

/* wait_word(word W, seen, deadline dl) -> res: true (the word moved) / false (timed out) */
inline wait_word(W, seen, dl, res) {
	if
	:: word[W] != seen -> res = 1
	:: else ->
	   res = 0;
	   do
	   :: dl -> res = (word[W] != seen); break             /* the deadline passed */
	   :: true ->
	      wsleepers[W]++;                                   /* fetch_add, seq_cst */
	      atomic { if :: word[W] == seen -> fsleep[me] = W + 1 :: else -> skip fi };  /* load; FUTEX_WAIT */
	      if
	      :: fsleep[me] == 0
	      :: d_step { dl && fsleep[me] != 0 -> fsleep[me] = 0 }   /* futex timeout */
	      fi;
	      wsleepers[W]--;
	      if :: word[W] != seen -> res = 1; break :: else -> skip fi
	   od
	fi
}

inline ovf_push(r) { ovf[ovf_len] = r; ovf_len++; rstate[r] = REQ_QUEUED }

inline ovf_pop(r) {
	r = ovf[0];
	pi = 0;
	do :: pi + 1 < ovf_len -> ovf[pi] = ovf[pi + 1]; pi++ :: else -> break od;
	ovf_len--; ovf[ovf_len] = 0; pi = 0
}

inline ovf_remove(r) {
	pi = 0;
	do :: pi < ovf_len && ovf[pi] != r -> pi++ :: else -> break od;
	assert(pi < ovf_len);
	do :: pi + 1 < ovf_len -> ovf[pi] = ovf[pi + 1]; pi++ :: else -> break od;
	ovf_len--; ovf[ovf_len] = 0; pi = 0
}

inline claim_row(cs, r) {
	assert(rstate[r] == REQ_NEW || rstate[r] == REQ_QUEUED);   /* claimed once */
	rrow[r] = sn[cs]; sn[cs]++; slive[cs]++;
	sreqs[cs * MAXB + rrow[r]] = r;
	rstate[r] = REQ_ROW; rslot[r] = cs;
	rwait_gen[r] = word[cs]                                     /* relaxed: gen moves only after close */
}

inline row_kill(r) { sreqs[rslot[r] * MAXB + rrow[r]] = NONE; slive[rslot[r]]-- }

inline close_slot(cs) {
	sstate[cs] = SLOT_RUNNING; open = NONE; busy++; queued = queued - slive[cs];
	readers = 0; pi = 0;
	do
	:: pi < sn[cs] ->
	   pr = sreqs[cs * MAXB + pi];
	   if
	   :: pr != NONE ->
	      assert(rstate[pr] == REQ_ROW && !started[pr]);          /* started once */
	      rstate[pr] = REQ_STARTED; started[pr] = 1; readers++
	   :: else -> skip
	   fi;
	   pi++
	:: else -> break
	od;
	unread[cs] = readers;
#ifdef MTI_BROKEN_BATCH_FREE_BEFORE_READ
	readers = 0;           /* deliberate bug: the slot is reused while members still read */
#endif
	holds[cs] = readers + 1;
	pi = 0; pr = 0; readers = 0
}

/* pump: closed slots are appended to v[k] (the caller's list) */
inline pump() {
	moved = 0;
	do
	:: true ->
	   if
	   :: open == NONE && n_free == 0 -> break
	   :: open == NONE && n_free > 0 ->
	      n_free--; ps = free_slots[n_free]; free_slots[n_free] = 0;
	      assert(unread[ps] == 0);             /* reused only after every member read */
	      sstate[ps] = SLOT_OPEN; sn[ps] = 0; slive[ps] = 0; written[ps] = 0;
	      pi = 0;
	      do
	      :: pi < MAXB -> sreqs[ps * MAXB + pi] = NONE; stage_in[ps * MAXB + pi] = 0;
	         stage_out[ps * MAXB + pi] = 0; pi++
	      :: else -> break
	      od;
	      open = ps
	   :: else -> skip
	   fi;
	   ps = open;
	   do
	   :: sn[ps] < MAXB && ovf_len > 0 ->
	      ovf_pop(pr); claim_row(ps, pr);
	      stage_in[ps * MAXB + rrow[pr]] = pr + 1;  /* the mover copies the input */
	      written[ps]++; moved = 1
	   :: else -> break
	   od;
	   if
	   :: slive[ps] == 0 -> sn[ps] = 0; written[ps] = 0; break
	   :: else -> skip
	   fi;
	   if
	   :: stopping -> why = CLOSE_STOP
	   :: !stopping && sn[ps] >= MAXB -> why = CLOSE_FULL
	   :: !stopping && sn[ps] < MAXB && busy == 0 -> why = CLOSE_IDLE
	   :: !stopping && sn[ps] < MAXB && busy > 0 -> why = CLOSE_DELAY   /* delay passed */
	   :: !stopping && sn[ps] < MAXB && busy > 0 -> why = CLOSE_NONE    /* not yet */
	   fi;
	   if :: why == CLOSE_NONE -> break :: else -> skip fi;
	   close_slot(ps);
	   v[k] = ps; k++
	od;
	if :: moved -> ovf_moved = 1 :: else -> skip fi;
	moved = 0; ps = 0; pr = 0; why = 0
}

/* free_slot: lock; FREE; busy--; free_slots push; pump; unlock_wake */
inline free_slot(fs) {
	atomic {
		assert(sstate[fs] == SLOT_RUNNING);
		sstate[fs] = SLOT_FREE; busy--; free_slots[n_free] = fs; n_free++;
		pump();
		wake = ovf_moved; ovf_moved = 0
	};
	unlock_wake_tail()
}

/* launch: wait for every claimed input, submit */
inline launch(ls) {
	written[ls] == sn[ls];                   /* acquire: every claimant's row is in */
	d_step {
		pi = 0;
		do
		:: pi < sn[ls] ->
		   pr = sreqs[ls * MAXB + pi];
		   if :: pr != NONE -> assert(stage_in[ls * MAXB + pi] == pr + 1) :: else -> skip fi;
		   pi++
		:: else -> break
		od;
		pi = 0; pr = 0;
		inflight++
	};
#ifdef FAIL
	if :: sstatus[ls] = ST_OK :: sstatus[ls] = ST_ERR fi
#else
	sstatus[ls] = ST_OK
#endif
}

/* complete: the stream drains (the forward ran), publish, drop the launcher's hold */
inline complete(cs) {
	d_step {
		pi = 0;
		do
		:: pi < sn[cs] ->
		   pr = sreqs[cs * MAXB + pi];
		   if
		   :: pr != NONE ->
		      gstat[pr] = sstatus[cs];
		      if :: sstatus[cs] == ST_OK -> stage_out[cs * MAXB + pi] = stage_in[cs * MAXB + pi]
		         :: else -> skip fi
		   :: else -> skip
		   fi;
		   pi++
		:: else -> break
		od;
		pi = 0; pr = 0;
		inflight--;
#ifndef BROKEN_BATCH_WAKE_BEFORE_BUMP
		word[cs]++                  /* bump_and_wake's fetch_add, merged (see the header) */
#endif
	};
#ifdef BROKEN_BATCH_WAKE_BEFORE_BUMP
	bump_and_wake(cs);
#else
	d_step { if :: wsleepers[cs] > 0 -> futex_wake_all(cs) :: else -> skip fi };
#endif
	d_step { holds[cs]--; last = (holds[cs] == 0) };   /* acq_rel */
	if :: last -> last = 0; free_slot(cs) :: else -> skip fi
}

/* run_batches(v[0..k), svc): each round launches and completes cur[]; the batches that
 * the frees close are appended to v[k] and form the next round */
inline run_batches(svc) {
	rnd = 0;
	do
	:: k == 0 -> break
	:: k > 0 && !svc && rnd >= ROUNDS ->
	   atomic {                                  /* hand the rest to the service thread */
		ri = 0;
		do :: ri < k -> handoff[n_handoff] = v[ri]; n_handoff++; v[ri] = 0; ri++ :: else -> break od;
		ri = 0; k = 0;
		svc_asleep = 0;                          /* cond_signal(svc_cv) */
		wake = ovf_moved; ovf_moved = 0
	   };
	   unlock_wake_tail();
	   break
	:: k > 0 && (svc || rnd < ROUNDS) ->
	   d_step {
		ri = 0;
		do :: ri < NSLOTS -> cur[ri] = v[ri]; v[ri] = 0; ri++ :: else -> break od;
		nk = k; k = 0
	   };
	   ri = 0;
	   do :: ri < nk -> launch(cur[ri]); ri++ :: else -> break od;
	   ri = 0;
	   do :: ri < nk -> complete(cur[ri]); ri++ :: else -> break od;
	   ri = 0;
	   d_step {
		do :: ri < NSLOTS -> cur[ri] = 0; ri++ :: else -> break od;
		ri = 0; nk = 0
	   };
	   rnd++
	od;
	rnd = 0
}

/* member_finish: read the status and the own output row, drop the hold */
inline member_finish(ms, mrow) {
	d_step {
		st = sstatus[ms];
		assert(st == gstat[me]);                          /* its own batch's status */
		if :: st == ST_OK -> assert(stage_out[ms * MAXB + mrow] == me + 1)   /* its own row */
		   :: else -> skip fi;
		unread[ms]--;
#ifndef MTI_BROKEN_BATCH_FREE_BEFORE_READ
		holds[ms]--; last = (holds[ms] == 0);             /* acq_rel, after the reads */
#endif
		st = 0
	};
	if
	:: last -> last = 0; k = 0; free_slot(ms); run_batches(0)
	:: else -> skip
	fi
}

proctype client(byte me) {
	byte v[NSLOTS], cur[NSLOTS];
	byte k, nk, rnd, ri, pi, pr, ps, why, readers, fx, it;
	byte s, row, seen, wgen, st;
	bit moved, wake, woke, last, in_row, dl, early, first, queued_now, answered, timedout;

	it = 0;
	do
	:: it < NREQ ->
	   dl = 0;
#ifdef TIMEOUT
	   if :: me < NDEADLINE -> dl = 1 :: else -> skip fi;
#endif
	   /* lock; enter; place; unlock_wake */
	   atomic {
		if
		:: stopping -> early = 1                          /* MTI_ERR_STOPPED */
		:: else ->
		   n_active++; incall[me] = 1;
		   rstate[me] = REQ_NEW; started[me] = 0;
		   queued++;
		   k = 0;
		   if :: open == NONE -> pump() :: else -> skip fi;
		   if
		   :: open != NONE && ovf_len == 0 && sn[open] < MAXB -> claim_row(open, me)
		   :: else -> ovf_push(me)
		   fi;
		   pump();
		   if
		   :: svc_sleeping && rstate[me] == REQ_ROW && sn[rslot[me]] == 1 -> svc_asleep = 0
		   :: else -> skip
		   fi;
		   in_row = (rstate[me] != REQ_QUEUED);
		   s = rslot[me]; row = rrow[me];
		   wake = ovf_moved; ovf_moved = 0
		fi
	   };
	   if
	   :: early -> early = 0; ndone++                    /* answered MTI_ERR_STOPPED */
	   :: else ->
	      unlock_wake_tail();
	      if
	      :: in_row -> d_step { stage_in[s * MAXB + row] = me + 1; written[s]++ }   /* copy; release */
	      :: else -> skip
	      fi;
	      in_row = 0;
	      if :: k > 0 -> run_batches(0) :: else -> skip fi;
	      /* waiting in the overflow queue */
	      first = 1;
	      do
	      :: atomic {
		   if
		   :: !first && !woke && rstate[me] == REQ_QUEUED ->   /* timed out while queued */
		      ovf_remove(me); queued--; rstate[me] = REQ_ANSWERED; rstatus[me] = ST_TIMEOUT
		   :: else -> skip
		   fi;
		   first = 0;
		   queued_now = (rstate[me] == REQ_QUEUED);
		   if
		   :: queued_now -> seen = word[OVFW]
		   :: else ->
		      answered = (rstate[me] == REQ_ANSWERED);
		      s = rslot[me]; row = rrow[me]; wgen = rwait_gen[me]
		   fi;
		   wake = ovf_moved; ovf_moved = 0
		 };
		 unlock_wake_tail();
		 if
		 :: queued_now -> wait_word(OVFW, seen, dl, woke)
		 :: else -> break
		 fi
	      od;
	      queued_now = 0; seen = 0; woke = 0;
	      if
	      :: answered ->                                   /* timed out or stopped while queued */
	         assert(!started[me]);
	         answered = 0
	      :: else ->
	         /* waiting for the batch */
	         timedout = 0;
	         do
	         :: wait_word(s, wgen, dl, woke);
	            if
	            :: woke -> break
	            :: else ->
	               atomic {
	                  k = 0;
#ifdef BROKEN_BATCH_TIMEOUT_AFTER_START
	                  if :: rstate[me] == REQ_ROW || rstate[me] == REQ_STARTED ->
#else
	                  if :: rstate[me] == REQ_ROW ->
#endif
	                     row_kill(me); queued--; rstate[me] = REQ_ANSWERED;
	                     rstatus[me] = ST_TIMEOUT;
	                     assert(!started[me]);     /* answered once: its batch never starts */
	                     pump(); timedout = 1
	                  :: else -> skip
	                  fi;
	                  wake = ovf_moved; ovf_moved = 0
	               };
	               unlock_wake_tail();
	               if :: timedout -> run_batches(0); break :: else -> dl = 0 fi   /* started: it completes */
	            fi
	         od;
	         woke = 0;
	         if
	         :: !timedout -> member_finish(s, row)
	         :: else -> timedout = 0
	         fi
	      fi;
	      /* leave */
	      d_step { n_active--; incall[me] = 0; ndone++; rstate[me] = REQ_NEW; rstatus[me] = 0;
	               s = 0; row = 0; wgen = 0; st = 0; dl = 0 }
	   fi;
	   it++
	:: else -> break
	od
}

proctype service() {
	byte v[NSLOTS], cur[NSLOTS];
	byte me = NCLIENTS;              /* not a futex sleeper */
	byte k, nk, rnd, ri, pi, pr, ps, why, readers, fx;
	bit moved, wake, last, timed, quit;

	do
	:: atomic {                      /* lock held: the top of while (!svc_exit) */
		svc_sleeping = 0;
		if
		:: svc_exit -> quit = 1
		:: else ->
		   k = 0; ri = 0;
		   do :: ri < n_handoff -> v[k] = handoff[ri]; handoff[ri] = 0; k++; ri++ :: else -> break od;
		   ri = 0; n_handoff = 0;
		   pump();
		   if
		   :: k > 0 -> wake = ovf_moved; ovf_moved = 0
		   :: else ->
		      timed = (open != NONE && slive[open] > 0);   /* the max_queue_delay_us timer */
		      svc_sleeping = 1;
#ifndef BROKEN_BATCH_SVC_SLEEP_UNLOCKED
		      svc_asleep = 1                              /* cond_wait: unlock + sleep */
#endif
		   fi
		fi
	   };
	   if
	   :: quit -> break
	   :: k > 0 -> unlock_wake_tail(); run_batches(1)
	   :: else ->
#ifdef BROKEN_BATCH_SVC_SLEEP_UNLOCKED
	      svc_asleep = 1;                                  /* unlocked, then asleep */
#endif
end_svc:
	      if
	      :: svc_asleep == 0
	      :: d_step { timed && svc_asleep == 1 -> svc_asleep = 0 }   /* timer expired */
	      fi;
	      timed = 0
	   fi
	od;
	svc_done = 1
}

#ifdef STOP
proctype stopper() {
	byte v[NSLOTS], cur[NSLOTS];
	byte me = NCLIENTS;
	byte k, nk, rnd, ri, pi, pr, ps, why, readers, fx;
	bit moved, wake, last;

	/* mti_batcher_stop */
	atomic {
		stopping = 1;
		do
		:: ovf_len > 0 ->
		   ovf_pop(pr);
#ifndef BROKEN_BATCH_STOP_DROPS_QUEUED
		   queued--; rstate[pr] = REQ_ANSWERED; rstatus[pr] = ST_STOPPED
#else
		   skip                 /* forgotten: still REQ_QUEUED, in no queue */
#endif
		:: else -> break
		od;
		pr = 0; k = 0;
		pump();             /* the forming batch runs */
		wake = ovf_moved; ovf_moved = 0
	};
	unlock_wake_tail();
#ifndef BROKEN_BATCH_STOP_NO_WAKE
	bump_and_wake(OVFW);
#endif
	run_batches(1);
	do
	:: atomic { busy == 0 && n_handoff == 0 && n_active == 0 ->
		ri = 0;
		do :: ri < NCLIENTS -> assert(!incall[ri]); ri++ :: else -> break od;
		assert(ovf_len == 0 && queued == 0);
		ri = 0 };
	   break
	:: atomic { n_handoff > 0 && svc_asleep -> svc_asleep = 0 }   /* the poll's signal */
	od;
	stop_done = 1;
	/* mti_batcher_destroy: the service thread exits, is joined */
	atomic { svc_exit = 1; svc_asleep = 0 };
	svc_done == 1
}
#endif

init {
	byte i;
	atomic {
		i = 0;
		do
		:: i < NSLOTS ->
		   free_slots[n_free] = NSLOTS - 1 - i; n_free++;   /* slot 0 on top, as create */
		   sstate[i] = SLOT_FREE; i++
		:: else -> break
		od;
		i = 0;
		do :: i < NSLOTS * MAXB -> sreqs[i] = NONE; i++ :: else -> break od;
		i = 0;
		do :: i < NCLIENTS -> run client(i); i++ :: else -> break od;
		run service();
#ifdef STOP
		run stopper();
#endif
		i = 0
	};
	/* every request answered, every caller gone, the service thread asleep (or exited) */
	ndone == NTOTAL && n_active == 0 && (svc_asleep || svc_done);
#ifdef STOP
	stop_done == 1;
#endif
	assert(queued == 0 && busy == 0 && ovf_len == 0 && n_handoff == 0 && inflight == 0);
	i = 0;
	do :: i < NSLOTS -> assert(unread[i] == 0 && sstate[i] != SLOT_RUNNING); i++ :: else -> break od
}

#ifdef LTL_ALL_ANSWERED
ltl all_answered { <> (ndone == NTOTAL) }
#endif
#ifdef WITNESS_K
ltl witness { [] (inflight < WITNESS_K) }
#endif
