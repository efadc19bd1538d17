#!/usr/bin/env bash
# GPU call for models and the full bench (device tool): model tests on CUDA, the CLI checks,
# PyTorch's own modules on the same files, a compute-sanitizer pass over the model path, and
# `mtinfer bench` with the PyTorch peer and the raw baseline in the same run. Logs to $OUT.
set -u
OUT=${OUT:-/tmp/out}; BIN=${BIN:-.devbin}
mkdir -p "$OUT"
export MTI_PYTHON=python3
lib="env LD_LIBRARY_PATH=$PWD/.devlibs"
# A wrapper for scripts that call the CLI as one program.
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$PWD/.devlibs" "$PWD/$BIN/mtinfer" > /tmp/mtinfer
chmod +x /tmp/mtinfer
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$OUT/info.txt" 2>&1
( MTI_TEST_BACKEND=cuda timeout 300 $lib $BIN/mtinfer-tests 2>&1 | grep -E "FAILED|ERROR|SKIPPED  \]|tests:|PASSED" ) > "$OUT/test-gpu.txt" 2>&1
( MTI_BACKEND=cuda timeout 120 $lib bash tests/test-model-cli.sh /tmp/mtinfer 2>&1 | tail -5 ) > "$OUT/cli.txt" 2>&1
( timeout 120 python3 scripts/torch_check.py --cli /tmp/mtinfer --backend cuda 2>&1 | tail -12 ) > "$OUT/torch_check.txt" 2>&1
$lib $BIN/mtinfer model create transformer --d-model 256 --heads 4 --ff 1024 --layers 2 -o /tmp/tr.st >/dev/null
( timeout 120 $lib compute-sanitizer --error-exitcode 99 $BIN/mtinfer run /tmp/tr.st --backend cuda \
    --batch 4 --seq 32 --check --repeat 3 2>&1 | tail -6 ) > "$OUT/sanitizer-model.txt" 2>&1
timeout 400 $lib $BIN/mtinfer bench --duration ${BENCH_DURATION:-0.5} --trials 3 --raw $BIN/raw_mlp \
  --peer "env -u LD_LIBRARY_PATH sh bench/peers/run_peer.sh" --json "$OUT/bench.json" --md "$OUT/bench.md" \
  --svg "$OUT/svg" > "$OUT/bench.log" 2>&1
echo "bench rc=$?" >> "$OUT/bench.log"
tail -3 "$OUT"/*.txt
