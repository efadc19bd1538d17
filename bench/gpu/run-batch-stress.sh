#!/usr/bin/env bash
# GPU call for the batcher and the stress harness (device tool). Step A: batch tests on CUDA,
# compute-sanitizer over them, the bench's batcher section, a compute-sanitizer stress pass.
# Step B: the long verified stress run. Logs to $OUT.
set -u
OUT=${OUT:-/tmp/out}; BIN=${BIN:-.devbin}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.devlibs
case ${1:-A} in
A)
  ( MTI_TEST_BACKEND=cuda MTI_TEST_FILTER='batch__*' timeout 120 $BIN/mtinfer-tests 2>&1 | tail -20 ) > "$OUT/batch-tests.txt"
  for tool in memcheck racecheck; do
    ( MTI_TEST_BACKEND=cuda MTI_TEST_FILTER='batch__*' MTI_TEST_SCALE=8 timeout 150 compute-sanitizer \
        --tool $tool --error-exitcode 99 $BIN/mtinfer-tests 2>&1 | grep -E "SUMMARY|tests:|FAILED|rc" ; echo "rc=$?" ) \
      > "$OUT/batch-sanitizer-$tool.txt"
  done
  MTI_POOL_SIZE=64 timeout 200 $BIN/mtinfer bench --sections batcher --duration 0.5 --peer none \
    --json "$OUT/bench-batcher.json" --md "$OUT/bench-batcher.md" > "$OUT/bench-batcher.log" 2>&1
  ( timeout 150 compute-sanitizer --tool memcheck --error-exitcode 99 $BIN/mtinfer stress --backend cuda \
      --no-isolate --threads 1,4,16 --requests 20 --churn 50 \
      --scenarios threads,churn,exhaust,mixed,two-models,handoff --log "$OUT/stress.log" \
      --label memcheck 2>&1 | tail -20; echo "rc=$?" ) > "$OUT/stress-memcheck.txt"
  ;;
B)
  timeout ${STRESS_LIMIT:-540} $BIN/mtinfer stress --backend cuda --rounds ${ROUNDS:-42} --timeout 120 \
    --log "$OUT/stress.log" --label cuda > "$OUT/stress-cuda.txt" 2>&1
  echo "rc=$?" >> "$OUT/stress-cuda.txt"
  ;;
esac
