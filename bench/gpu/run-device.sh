#!/usr/bin/env bash
# Runs on the GPU machine (the device tool), over binaries built on the dev machine and carried
# with their non-CUDA shared libraries in .devlibs/: the suite on the CUDA backend, the suite
# under compute-sanitizer, the raw-driver baseline and `mtinfer bench` in the same call.
# Writes logs to $OUT. Usage: bash bench/gpu/run-device.sh [steps...] (default: all)
set -u
export LD_LIBRARY_PATH="$PWD/.devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
OUT=${OUT:-/tmp/out}
BIN=${BIN:-build/bin}   # or .devbin: a snapshot of build/bin plus raw_mlp
mkdir -p "$OUT"
steps=${*:-"info tests sanitize raw bench"}
run() { echo "== $*"; "$@"; echo "== rc=$?"; }

for step in $steps; do
  case $step in
  info)
    { nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,power.draw \
        --format=csv; nproc; uname -r; } 2>&1 | tee "$OUT/info.txt" ;;
  tests)
    MTI_TEST_BACKEND=cuda run timeout 300 $BIN/mtinfer-tests 2>&1 | tail -40 | tee "$OUT/test-gpu.txt" ;;
  sanitize)
    for tool in memcheck racecheck synccheck; do
      MTI_TEST_BACKEND=cuda MTI_TEST_SCALE=20 MTI_TEST_FILTER="${SAN_FILTER:-*}" \
        run timeout 240 compute-sanitizer --tool $tool --error-exitcode 99 \
        $BIN/mtinfer-tests 2>&1 | grep -E "ERROR SUMMARY|PASSED|FAILED|tests:|== rc|Error" \
        | tee "$OUT/sanitizer-$tool.txt"
    done ;;
  raw)
    run $BIN/raw_mlp --threads 1,2,4,8,16,32 --mode eager,graph --duration 1 --trials 3 \
      --json "$OUT/raw_mlp.json" 2>&1 | tee "$OUT/raw_mlp.txt" ;;
  bench)
    run $BIN/mtinfer bench --sections threads,batch --threads 1,2,4,8,16,32 \
      --modes eager,graph --batches 1,8,64,256,1024,4096 --duration 1 --trials 3 2>&1 \
      | tee "$OUT/mtinfer_bench.txt" ;;
  esac
done
