#!/usr/bin/env bash
# GPU call on a machine with 2 GPUs (device tool, nvidia-h200-x2): the suite with threads
# spread over both GPUs, TF32 checks, fault injection on CUDA, stress over both GPUs, and
# thread scaling on one GPU vs two in the same call. Logs to $OUT.
set -u
OUT=${OUT:-/tmp/out}; BIN=${BIN:-.devbin}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.devlibs
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv; } > "$OUT/info.txt" 2>&1
( MTI_DEVICE=-1 MTI_TEST_BACKEND=cuda timeout 300 $BIN/mtinfer-tests 2>&1 | grep -E "FAILED|ERROR|tests:|PASSED" ) > "$OUT/tests-2gpu.txt" 2>&1
{ $BIN/mtinfer model create transformer --d-model 256 --heads 4 --ff 1024 --layers 2 -o /tmp/t.st
  $BIN/mtinfer model create mlp --dims 512,1024,1024,512 -o /tmp/m.st
  for f in /tmp/m.st /tmp/t.st; do for p in fp32 tf32; do
    $BIN/mtinfer run $f --backend cuda --batch 64 --seq 32 --precision $p --check --repeat 3 | grep -E "precision|check"
  done; done; } > "$OUT/tf32.txt" 2>&1
( MTI_TEST_BACKEND=cuda MTI_TEST_FILTER='stress__*' timeout 200 $BIN/fi/mtinfer-tests 2>&1 | grep -E "FAILED|ERROR|tests:|PASSED|SKIPPED  \]" ) > "$OUT/faults-cuda.txt" 2>&1
( timeout 200 $BIN/fi/mtinfer stress --backend cuda --threads 1,8,31,64 --scenarios threads,faults,batcher,cancel --rounds 3 --log "$OUT/stress.log" --label fi-cuda 2>&1 | tail -16 ) > "$OUT/stress-faults-cuda.txt" 2>&1
( MTI_DEVICE=-1 timeout 200 $BIN/mtinfer stress --backend cuda --rounds 3 --log "$OUT/stress.log" --label two-gpus 2>&1 | tail -18 ) > "$OUT/stress-2gpu.txt" 2>&1
for dev in 0 -1; do
  MTI_POOL_SIZE=$([ $dev = 0 ] && echo 64 || echo 32) MTI_DEVICE=$dev timeout 150 $BIN/mtinfer bench --sections threads --threads 1,2,4,8,16,32,64 \
    --duration 0.5 --trials 3 --peer none --json "$OUT/bench-device$dev.json" > "$OUT/bench-device$dev.md" 2>&1
done
tail -4 "$OUT"/*.txt
