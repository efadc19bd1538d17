#!/usr/bin/env bash
# Each broken twin is the library built with one deliberate concurrency bug (a -DMTI_BROKEN_*
# flag); the test aimed at that bug must FAIL against it. A twin that passes means the test
# cannot catch the bug it exists for, and this script fails.
set -u
cd "$(dirname "$0")/.."

# flag                                  test that must catch it
twins=(
  "MTI_BROKEN_POOL_CHECK_THEN_SET       pool__exclusive_ownership_under_contention"
  "MTI_BROKEN_POOL_RELEASE_BEFORE_DRAIN pool__slot_returns_only_after_its_work_drained"
  "MTI_BROKEN_POOL_RELEASE_BEFORE_DRAIN pool__thread_exit_drains_before_returning_the_slot"
  "MTI_BROKEN_POOL_LOST_WAKEUP          pool__waiter_is_woken_by_release_wait_policy"
  "MTI_BROKEN_ALLOC_NO_EVENT            stream__producer_consumer_events_and_buffer_reuse"
  "MTI_BROKEN_STREAM_NO_TOKEN           stream__ops_run_in_order_one_at_a_time_under_concurrent_waiters"
  "MTI_BROKEN_BATCH_FREE_BEFORE_READ    batch__exactly_once_under_heavy_concurrency"
)

status=0
printf '%-38s %-66s %s\n' "broken twin" "test" "result"
for row in "${twins[@]}"; do
  read -r flag test <<<"$row"
  dir="build/broken/${flag}"
  mkdir -p "$(dirname "$dir")"
  if ! make --no-print-directory -s BUILD="$dir" VARIANT="-D${flag}" tests >"$dir.log" 2>&1; then
    echo "build of $flag failed:"; cat "$dir.log"; exit 1
  fi
  # A crash or a hang (killed after 60 s) counts as caught, as a failed check does.
  if MTI_TEST_FILTER="$test" timeout --signal=KILL 60 "$dir/bin/mtinfer-tests" >"$dir.$$.out" 2>&1; then
    verdict="NOT CAUGHT (test passed against the bug)"
    status=1
  else
    verdict="caught: $(grep -m1 -E 'expected|CHECK|->' "$dir.$$.out" | sed 's/^\[  *ERROR *\] *//' | cut -c1-90)"
  fi
  printf '%-38s %-66s %s\n' "$flag" "$test" "$verdict"
  rm -f "$dir.$$.out"
done
exit $status
