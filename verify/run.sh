#!/usr/bin/env bash
# Runs every Spin model of verify/ and its broken twins, the parallelism witnesses, and the
# model-vs-C drift check; prints one table. Exit status 0 only when every correct model
# verifies, every broken twin is refuted (for the expected reason), every witness trail is
# found, and the constants agree with the C code.
#
#   bash verify/run.sh            (make verify)
#   VERIFY_JOBS=N                 pan runs at once (default 2)
#   VERIFY_ONLY=regex             only the rows whose model/check matches (no drift check)
#   VERIFY_MARKDOWN=1             print the table as Markdown (both forms are saved in the work dir)
#   VERIFY_KEEP=0                 delete the work directory (trails, logs) at the end
#
# Work files (pan sources, binaries, trails, logs) go to a temporary directory, never into the
# repository; its path is printed at the end.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
JOBS=${VERIFY_JOBS:-2}
ONLY=${VERIFY_ONLY:-}
MD=${VERIFY_MARKDOWN:-0}
KEEP=${VERIFY_KEEP:-1}

for tool in spin gcc awk; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "verify: '$tool' not found (Debian: apt-get install spin gcc)" >&2
    exit 2
  fi
done
# wait -n needs bash >= 4.3
if [ "${BASH_VERSINFO[0]}" -lt 4 ] || { [ "${BASH_VERSINFO[0]}" -eq 4 ] && [ "${BASH_VERSINFO[1]}" -lt 3 ]; }; then
  JOBS=1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mti-verify.XXXXXX")
T0=$(date +%s.%N)

# pan settings: depth bound, memory bound (MB), compile flags per mode.
DEPTH=500000
MEMLIM=3072
# Runs that must explore everything are compiled with -O2; runs that stop at their first error
# (twins, witnesses) with -O0, which compiles pan.c several times faster.
CC_SAFETY="-w -DSAFETY -DMEMLIM=$MEMLIM"
CC_LTL="-w -DNFAIR=8 -DMEMLIM=$MEMLIM"           # acceptance cycles + weak fairness
CC_CLAIM="-w -DMEMLIM=$MEMLIM"                   # a safety never claim (the witnesses)
# the longest runs start first, so that the two job slots finish together
EXEC_FIRST="s2 s1 b9 p4 p3 b1 b2 p2 p1 r3"

# One row per run:
#  id | model | spin -D flags | mode | expect | property | reason (ERE the first error must match)
#  mode:   safety (assertions + invalid end states), ltl (-a -f: LTL under weak fairness),
#          claim (-a: a [] claim, no fairness needed)
#  expect: pass, fail (a broken twin), witness (a claim Spin must refute: the trail is the
#          evidence), nonprop (a documented non-guarantee: Spin must show the trail)
#  extra gcc flags may follow the flags after a '+' (e.g. "+-DCOLLAPSE"; a later -O overrides
#  the mode's: most batch.pml pass rows use -O0, their pan.c compiles 12x faster and
#  searches only ~1.5x slower; b9, the longest search, stays -O2).
ROWS=(
"p1|pool.pml||safety|pass|3 threads (block, wait, fail), 2 slots, 2 calls + early release: one holder per slot, handed out drained, no leak, no lost wake-up|"
"p2|pool.pml|-DALL_BLOCK|safety|pass|same, every thread policy block|"
"p3|pool.pml|-DANY_POLICY -DNITER=1|safety|pass|same, every combination of policies, 1 call|"
"p4|pool.pml|-DLTL_ALL_RETURN|ltl|pass|ltl all_return: every thread finishes|"
"p5|pool.pml|-DLOOP -DNTHREADS=3 -DNSLOTS=2 -DLTL_NO_LOST_WAKE|ltl|pass|ltl no_lost_wake: asleep while a slot is free -> woken (endless threads)|"
"p6|pool.pml|-DLOOP -DNTHREADS=2 -DNSLOTS=1 -DLTL_NO_STARVE|ltl|nonprop|ltl no_starve: not guaranteed (a woken waiter can lose the CAS forever)|acceptance cycle"
"p7|pool.pml|-DWITNESS_K=2|claim|witness|witness: 2 threads hold slots at once (claim holders < 2)|"
"p8|pool.pml|-DWITNESS_K=3 -DNSLOTS=3 -DNTHREADS=3|claim|witness|witness: 3 of 3 slots held at once (claim holders < 3)|"
"p9|pool.pml|-DMTI_BROKEN_POOL_CHECK_THEN_SET|safety|fail|twin: check-then-set instead of CAS|assertion violated"
"p10|pool.pml|-DMTI_BROKEN_POOL_RELEASE_BEFORE_DRAIN|safety|fail|twin: slot freed before its stream drained|pending\\[b\\]==0"
"p11|pool.pml|-DMTI_BROKEN_POOL_LOST_WAKEUP|safety|fail|twin: n_waiters read + broadcast before the fetch_or|invalid end state"
"p12|pool.pml|-DBROKEN_WAKE_NOLOCK|safety|fail|twin: broadcast without wait_lock|invalid end state"
"p13|pool.pml|-DMTI_BROKEN_POOL_LOST_WAKEUP -DLTL_ALL_RETURN|ltl|fail|twin (lost wake-up) against ltl all_return|acceptance cycle"
"p14|pool.pml|-DMTI_BROKEN_POOL_LOST_WAKEUP -DLOOP -DNTHREADS=2 -DNSLOTS=1 -DLTL_NO_LOST_WAKE|ltl|fail|twin (lost wake-up) against ltl no_lost_wake|acceptance cycle"
"s1|stream.pml|+-DCOLLAPSE|safety|pass|2 streams, 2 workers, 2 clients, cross waits both ways, every sync mode, waited or not, sync or poll: one executor, order, happens-before, no deadlock, unwaited work runs|"
"s2|stream.pml|-DSYNC_MODE=0 -DWAITED=0 -DLTL_ALL_DONE +-DCOLLAPSE|ltl|pass|ltl all_done: both clients finish (sync mode auto, plain submits)|"
"s3|stream.pml|-DMTI_BROKEN_STREAM_NO_TOKEN|safety|fail|twin: run_until ignores the executor token|assertion violated \\((nexec|head|!\\(kdone)"
"s4|stream.pml|-DBROKEN_EVENT_HEAD|safety|fail|twin: event record captures head, not tail|assertion violated"
"s5|stream.pml|-DBROKEN_WAIT_LATE|safety|fail|twin: wait op reads the event when it runs (re-record moves it)|assertion violated \\(head\\[ev_stream|invalid end state"
"s6|stream.pml|-DBROKEN_NO_HANDOFF|safety|fail|twin: token holder does not hand kicked work to the worker|invalid end state"
"s7|stream.pml|-DBROKEN_DONE_SIGNAL|safety|fail|twin: cond_signal instead of broadcast on done_cv|invalid end state"
"a1|alloc.pml||safety|pass|block shared by 3 streams, 3 generations, racing reclaim / release_cached: event rule, no use after reuse, one place, no early backend free|"
"a2|alloc.pml|-DLTL_RECLAIMED|ltl|pass|ltl reclaimed: a deferred block gets back to its cache|"
"a3|alloc.pml|-DMTI_BROKEN_ALLOC_NO_EVENT|safety|fail|twin: free ignores foreign use (hand-out check)|assertion violated \\(outs_on"
"a4|alloc.pml|-DMTI_BROKEN_ALLOC_NO_EVENT -DNO_HANDOUT_CHECK|safety|fail|twin: same, caught by execution order alone|assertion violated \\(outs\\[k\\]"
"a5|alloc.pml|-DBROKEN_RECLAIM_NO_CHECK|safety|fail|twin: reclaim without asking the events|assertion violated \\(outs_on"
"a6|alloc.pml|-DBROKEN_ONE_EVENT|safety|fail|twin: reclaim asks only the first event|assertion violated \\(outs_on"
"a7|alloc.pml|-DBROKEN_RECLAIM_RACE|safety|fail|twin: unlink after dropping deferred_lock|assertion violated \\(loc==2\\)"
"a8|alloc.pml|-DBROKEN_RELEASE_NO_WAIT|safety|fail|twin: release_cached without waiting for the stream|assertion violated \\(outs_on"
"r1|record.pml||safety|pass|round-robin, 3 threads on 2 streams, per-stream serialization: one recorder per stream, no lost op, streams created once, balanced|"
"r2|record.pml|-DSERIAL=1|safety|pass|same, serialization global: one recorder in all|"
"r3|record.pml|-DSERIAL=2 -DNSLOTS=3 -DNTHREADS=3|safety|pass|serialization semaphore:2, 3 streams: at most 2 recorders|"
"r4|record.pml|-DWITNESS_K=2|claim|witness|witness: 2 threads record at once (claim nrec < 2)|"
"r5|record.pml|-DWITNESS_K=3 -DNSLOTS=3 -DNTHREADS=3|claim|witness|witness: 3 threads record at once, 3 streams (claim nrec < 3)|"
"r6|record.pml|-DWITNESS_K=2 -DSERIAL=2 -DNSLOTS=3 -DNTHREADS=3|claim|witness|witness: semaphore:2 lets 2 record at once (claim nrec < 2)|"
"r7|record.pml|-DBROKEN_NO_RECORD_LOCK|safety|fail|twin: no record_lock|assertion violated \\(rec_on"
"r8|record.pml|-DBROKEN_CREATE_RACE|safety|fail|twin: lazy creation without create_lock|assertion violated \\(ncreated"
"r9|record.pml|-DBROKEN_RR|safety|fail|twin: rr_next read then written, not fetch_add|assertion violated \\(\\(hi-lo\\)"
"r10|record.pml|-DBROKEN_SEM_IF -DSERIAL=2 -DSERIAL_LIMIT=1 -DNSLOTS=3 -DNTHREADS=3|safety|fail|twin: sem_down with if, not while|assertion violated .*nrec<=1"
"b1|batch.pml|+-DCOLLAPSE -O0|safety|pass|3 clients, 2 slots, max batch 2: own output row and status, slot reused only after every member read, claimed/started once, no lost wake-up, all answered|"
"b2|batch.pml|-DROUNDS=1 +-DCOLLAPSE -O0|safety|pass|same, hand-off to the service thread after 1 round (reaches the hand-off path)|"
"b3|batch.pml|-DTIMEOUT -DNSLOTS=1 +-DCOLLAPSE -O0|safety|pass|request timeouts (queued or in a forming row) racing the close, 1 slot: a timed-out request was never started|"
"b4|batch.pml|-DTIMEOUT -DNCLIENTS=2 +-O0|safety|pass|same, 2 clients, 2 slots|"
"b5|batch.pml|-DSTOP -DNSLOTS=1 +-DCOLLAPSE -O0|safety|pass|stop at any moment, 3 clients, 1 slot: queued requests failed, forming batch runs, no caller left blocked|"
"b6|batch.pml|-DSTOP -DNCLIENTS=2 -DNSLOTS=1 -DMAXB=1 -DNREQ=2 +-O0|safety|pass|stop, 2 clients x 2 requests, max batch 1 (calls after stop: MTI_ERR_STOPPED)|"
"b7|batch.pml|-DFAIL -DNCLIENTS=2 +-O0|safety|pass|batches may fail: each member gets its own batch's error|"
"b8|batch.pml|-DLTL_ALL_ANSWERED -DNSLOTS=1 +-DCOLLAPSE -O0|ltl|pass|ltl all_answered: every request is answered (3 clients, 1 slot, overflow queue)|"
"b9|batch.pml|-DLTL_ALL_ANSWERED -DSTOP -DNSLOTS=1 +-DCOLLAPSE|ltl|pass|ltl all_answered, with stop at any moment|"
"b10|batch.pml|-DWITNESS_K=2|claim|witness|witness: 2 batches in flight at once on 2 executor streams (claim inflight < 2)|"
"b11|batch.pml|-DMTI_BROKEN_BATCH_FREE_BEFORE_READ|safety|fail|twin: holds = launcher only, the slot is reused before its members read|assertion violated \\(unread"
"b12|batch.pml|-DBROKEN_BATCH_WAKE_BEFORE_BUMP|safety|fail|twin: bump_and_wake reads sleepers before the fetch_add (lost wake-up)|invalid end state"
"b13|batch.pml|-DBROKEN_BATCH_WAKE_BEFORE_BUMP -DLTL_ALL_ANSWERED -DNSLOTS=1|ltl|fail|twin (lost wake-up) against ltl all_answered|acceptance cycle"
"b14|batch.pml|-DBROKEN_BATCH_SVC_SLEEP_UNLOCKED -DROUNDS=1|safety|fail|twin: service thread checks under the lock, sleeps after unlocking (hand-off lost)|invalid end state"
"b15|batch.pml|-DBROKEN_BATCH_STOP_DROPS_QUEUED -DSTOP -DNSLOTS=1|safety|fail|twin: stop empties the overflow queue without answering|invalid end state"
"b16|batch.pml|-DBROKEN_BATCH_STOP_NO_WAKE -DSTOP -DNSLOTS=1|safety|fail|twin: stop fails queued requests but does not bump ovf_gen|invalid end state"
"b17|batch.pml|-DBROKEN_BATCH_TIMEOUT_AFTER_START -DTIMEOUT -DNSLOTS=1|safety|fail|twin: a timed-out member kills its row without checking REQ_ROW (answered twice)|assertion violated .*started"
)

# ---- one run --------------------------------------------------------------------------------
run_row() { # row
  local id model flags mode expect prop reason dir spinflags ccextra ccflags panflags
  IFS='|' read -r id model flags mode expect prop reason <<<"$1"
  dir="$WORK/$id"; mkdir -p "$dir"
  spinflags=${flags%%+*}; ccextra=""
  case "$flags" in *+*) ccextra=${flags#*+} ;; esac
  case "$mode" in
    safety) ccflags="$CC_SAFETY"; panflags="-m$DEPTH" ;;
    ltl)    ccflags="$CC_LTL";    panflags="-a -f -m$DEPTH" ;;
    claim)  ccflags="$CC_CLAIM";  panflags="-a -m$DEPTH" ;;
  esac
  case "$expect" in pass) ccflags="-O2 $ccflags" ;; *) ccflags="-O0 $ccflags" ;; esac
  cp "$HERE/$model" "$dir/"
  local start end
  start=$(date +%s.%N)
  (
    cd "$dir" || exit 1
    # shellcheck disable=SC2086
    spin $spinflags -a "$model" >spin.log 2>&1 || { echo "SPIN_FAILED" >status; exit 0; }
    # shellcheck disable=SC2086
    gcc $ccflags $ccextra -o pan pan.c >gcc.log 2>&1 || { echo "GCC_FAILED" >status; exit 0; }
    # shellcheck disable=SC2086
    ./pan $panflags >pan.out 2>&1
    echo "$?" >pan.rc
    if [ -f "$model.trail" ]; then
      # replay the trail: the counterexample must be reproducible
      # shellcheck disable=SC2086
      spin -t -g -p $spinflags "$model" >replay.out 2>&1
      echo "$?" >replay.rc
    fi
    echo done >status
  )
  end=$(date +%s.%N)
  echo "$start $end" >"$dir/wall"
  echo "$spinflags $ccextra" >"$dir/flags"
}

# ---- evaluate one row -----------------------------------------------------------------------
# prints: verdict, result text, states, depth, time (tab-separated)
eval_row() {
  local id model flags mode expect prop reason dir st errs states depth ptime first incomplete
  IFS='|' read -r id model flags mode expect prop reason <<<"$1"
  dir="$WORK/$id"
  st=$(cat "$dir/status" 2>/dev/null || echo "NOT_RUN")
  if [ "$st" != done ]; then printf '%s\t%s\t%s\t%s\t%s\n' "BAD" "$st (see $dir)" "-" "-" "-"; return; fi
  errs=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$dir/pan.out" | head -1)
  states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$dir/pan.out" | head -1)
  depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$dir/pan.out" | head -1)
  ptime=$(sed -n 's/^pan: elapsed time \([0-9.e+-]*\) seconds.*/\1/p' "$dir/pan.out" | head -1)
  first=$(grep -m1 -E '^pan:[0-9]+: ' "$dir/pan.out" | sed 's/^pan:[0-9]*: //; s/ (at depth [0-9]*)//')
  incomplete=""
  grep -q 'reached -DMEMLIM bound' "$dir/pan.out" && incomplete="memory bound reached"
  grep -q 'max search depth too small' "$dir/pan.out" && incomplete="depth bound reached"
  grep -qi 'out of memory' "$dir/pan.out" && incomplete="out of memory"
  [ -z "$errs" ] && { printf '%s\t%s\t%s\t%s\t%s\n' "BAD" "pan gave no result (see $dir/pan.out)" "-" "-" "-"; return; }
  [ -z "$ptime" ] && ptime="-"
  local replay=""
  if [ -f "$dir/replay.out" ]; then
    if grep -q 'trail ends after' "$dir/replay.out" || grep -q 'violated' "$dir/replay.out"; then
      replay=$(sed -n 's/.*trail ends after \([0-9]*\) steps.*/\1/p' "$dir/replay.out" | tail -1)
    fi
  fi
  case "$expect" in
  pass)
    if [ "$errs" = 0 ] && [ -z "$incomplete" ]; then printf '%s\t%s\t%s\t%s\t%s\n' "OK" "verified, 0 errors" "$states" "$depth" "$ptime"
    elif [ -n "$incomplete" ]; then printf '%s\t%s\t%s\t%s\t%s\n' "BAD" "search incomplete: $incomplete" "$states" "$depth" "$ptime"
    else printf '%s\t%s\t%s\t%s\t%s\n' "BAD" "VIOLATED: $first (trail $dir)" "$states" "$depth" "$ptime"; fi ;;
  fail|nonprop)
    if [ "$errs" != 0 ] && echo "$first" | grep -Eq -- "$reason"; then
      printf '%s\t%s\t%s\t%s\t%s\n' "OK" "refuted: $first${replay:+ (trail: $replay steps)}" "$states" "$depth" "$ptime"
    elif [ "$errs" != 0 ]; then printf '%s\t%s\t%s\t%s\t%s\n' "BAD" "refuted for another reason: $first" "$states" "$depth" "$ptime"
    else printf '%s\t%s\t%s\t%s\t%s\n' "BAD" "NOT REFUTED: the ${expect/fail/twin} passed${incomplete:+ ($incomplete)}" "$states" "$depth" "$ptime"; fi ;;
  witness)
    if [ "$errs" != 0 ] && echo "$first" | grep -q 'assertion violated'; then
      # the ghost counter's value at the end of the replayed trail
      local var k val
      var=holders; case "$model" in record.pml) var=nrec ;; batch.pml) var=inflight ;; esac
      k=$(echo "$flags" | sed -n 's/.*-DWITNESS_K=\([0-9]*\).*/\1/p')
      val=$(grep -E "^[[:space:]]+$var = [0-9]+" "$dir/replay.out" | tail -1 | sed 's/.*= //')
      if [ -n "$val" ] && [ "$val" -ge "$k" ]; then
        printf '%s\t%s\t%s\t%s\t%s\n' "OK" "found: $var = $val at once (trail: ${replay:-?} steps)" "$states" "$depth" "$ptime"
      else
        printf '%s\t%s\t%s\t%s\t%s\n' "BAD" "claim refuted but the replay does not show $var >= $k (got '${val}')" "$states" "$depth" "$ptime"
      fi
    else printf '%s\t%s\t%s\t%s\t%s\n' "BAD" "NO WITNESS: the claim held, no parallel trail" "$states" "$depth" "$ptime"; fi ;;
  esac
}

# ---- run everything -------------------------------------------------------------------------
selected=()
for row in "${ROWS[@]}"; do
  IFS='|' read -r id model flags _ <<<"$row"
  if [ -n "$ONLY" ] && ! echo "$id $model $flags" | grep -Eq -- "$ONLY"; then continue; fi
  selected+=("$row")
done

echo "verify: ${#selected[@]} Spin runs, $JOBS at a time; work dir $WORK" >&2
ordered=()
for first in $EXEC_FIRST; do
  for row in "${selected[@]}"; do [ "${row%%|*}" = "$first" ] && ordered+=("$row"); done
done
for row in "${selected[@]}"; do
  case " $EXEC_FIRST " in *" ${row%%|*} "*) ;; *) ordered+=("$row") ;; esac
done
for row in "${ordered[@]}"; do
  if [ "$JOBS" -gt 1 ]; then
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    run_row "$row" &
  else
    run_row "$row"
  fi
done
wait

# ---- table ----------------------------------------------------------------------------------
# Both formats are written to the work dir (table.txt, table.md); stdout gets one of them.
status=0
TXT="$WORK/table.txt"; MDF="$WORK/table.md"
printf '%-11s %-70s %-9s %-7s %-66s %10s %6s %7s\n' model "check (spin -D flags)" expected verdict result "states" depth "time(s)" >"$TXT"
{ echo "| model | check | property | expected | result | states stored | depth | time (s) |"
  echo "|---|---|---|---|---|---:|---:|---:|"; } >"$MDF"
for row in "${selected[@]}"; do
  IFS='|' read -r id model flags mode expect prop reason <<<"$row"
  IFS=$'\t' read -r verdict result states depth ptime <<<"$(eval_row "$row")"
  [ "$verdict" = OK ] || status=1
  shown=$(echo "${flags%%+*}" | sed 's/-D//g; s/  */ /g; s/ $//')
  [ -z "$shown" ] && shown="(default)"
  exp=$expect; [ "$exp" = nonprop ] && exp="violated"; [ "$exp" = fail ] && exp="refuted"
  printf '%-11s %-70s %-9s %-7s %-66s %10s %6s %7s\n' "$model" "$mode: $shown" "$exp" "$verdict" "${result:0:66}" "$states" "$depth" "$ptime" >>"$TXT"
  echo "| $model | \`$shown\` ($mode) | $prop | $exp | $verdict: ${result//|/\\|} | $states | $depth | $ptime |" >>"$MDF"
done

# ---- drift check ----------------------------------------------------------------------------
if [ -z "$ONLY" ]; then
  if bash "$HERE/check-constants.sh" -q >"$WORK/constants.out" 2>&1; then
    cverdict=OK; cresult=$(tail -1 "$WORK/constants.out")
  else
    cverdict=BAD; cresult="$(tail -1 "$WORK/constants.out") (details: $WORK/constants.out)"; status=1
  fi
  printf '%-11s %-70s %-9s %-7s %s\n' "(all)" "check-constants.sh (verify/sync.txt)" agree "$cverdict" "$cresult" >>"$TXT"
  echo "| (all) | \`check-constants.sh\` | models mirror the C constants, functions, twin flags, patterns (verify/sync.txt) | agree | $cverdict: $cresult | - | - | - |" >>"$MDF"
fi
if [ "$MD" = 1 ]; then cat "$MDF"; else cat "$TXT"; fi
[ -z "$ONLY" ] && [ "$cverdict" != OK ] && sed -n '1,40p' "$WORK/constants.out"

T1=$(date +%s.%N)
total=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", b - a }')
if [ $status = 0 ]; then
  echo "verify: all ${#selected[@]} runs as expected (${total}s wall, $JOBS jobs)"
else
  echo "verify: FAILED: some run is not as expected (${total}s wall); logs and trails in $WORK"
fi
if [ "$KEEP" = 0 ] && [ $status = 0 ]; then rm -rf "$WORK"; else echo "verify: trails and logs in $WORK" >&2; fi
exit $status
