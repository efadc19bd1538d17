#!/usr/bin/env bash
# `mtinfer model` and `mtinfer run` exit codes (0 ok, 1 check failed, 2 usage/runtime error) on
# good and bad model files, each with a message naming the problem. usage: test-model-cli.sh CLI
set -uo pipefail
cli=${1:-build/bin/mtinfer}
dir=$(mktemp -d /tmp/mti-cli-XXXXXX)
trap 'rm -rf "$dir"' EXIT
failed=0

# expect CODE NEEDLE -- ARGS...: runs the CLI, checks the exit code and that stdout+stderr
# contain NEEDLE.
expect() {
  local want=$1 needle=$2; shift 3
  local out rc
  out=$("$cli" "$@" 2>&1); rc=$?
  if [ "$rc" != "$want" ] || ! grep -qF -- "$needle" <<<"$out"; then
    echo "FAIL: mtinfer $* -> exit $rc (want $want), output lacks '$needle':"
    sed 's/^/    /' <<<"$out" | head -8
    failed=$((failed + 1))
  else
    echo "ok:   mtinfer $* -> $rc"
  fi
}

export MTI_BACKEND=${MTI_BACKEND:-cpu}
expect 0 "wrote" -- model create mlp --dims 16,32,8 --seed 3 -o "$dir/mlp.st"
expect 0 "wrote" -- model create transformer --d-model 16 --heads 2 --ff 32 --layers 2 --norm-first -o "$dir/tr.st"
expect 0 "parameters" -- model info "$dir/mlp.st"
expect 0 "transformer_encoder_layer" -- model info "$dir/tr.st"
expect 0 ": ok" -- run "$dir/mlp.st" --batch 3 --check
expect 0 ": ok" -- run "$dir/tr.st" --batch 2 --seq 5 --check --repeat 3
expect 1 "FAILED" -- run "$dir/mlp.st" --check --tol 1e-12
# tf32: checked with tf32's default tolerance (2e-3); on the CPU it computes in fp32
expect 0 "tolerance 2.0e-03: ok" -- run "$dir/tr.st" --batch 2 --seq 5 --precision tf32 --check
expect 0 "precision  tf32" -- run "$dir/mlp.st" --precision tf32
# bf16: checked with bf16's default tolerance (1e-2); on the CPU it computes in fp32
expect 0 "tolerance 1.0e-02: ok" -- run "$dir/tr.st" --batch 2 --seq 5 --precision bf16 --check
expect 0 "tolerance 1.0e-02: ok" -- run "$dir/mlp.st" --batch 3 --precision bf16 --check
expect 0 "precision  bf16" -- run "$dir/mlp.st" --precision bf16
expect 2 "--precision must be fp32, tf32 or bf16" -- run "$dir/mlp.st" --precision fp16
expect 0 "usage: mtinfer run" -- run --help
expect 0 "usage: mtinfer model create" -- model create --help
expect 0 "usage: mtinfer model info" -- model info --help
expect 2 "usage" -- run
expect 2 "unexpected argument" -- run "$dir/mlp.st" --bogus
expect 2 "--batch needs an integer" -- run "$dir/mlp.st" --batch 0
expect 2 "unknown kind" -- model create cnn -o "$dir/x.st"
# bad inputs
printf 'abc' > "$dir/trunc.st"
expect 2 "truncated" -- run "$dir/trunc.st"
expect 2 "truncated" -- model info "$dir/trunc.st"
printf 'GIF89a this is not a model at all' > "$dir/pic.gif"
expect 2 "not a safetensors file" -- run "$dir/pic.gif"
expect 2 "No such file" -- run "$dir/missing.st"
head -c 100 "$dir/mlp.st" > "$dir/cut.st"
expect 2 "not a safetensors file or truncated" -- run "$dir/cut.st"
# wrong input size, then NaN input (computed through, reported by --check)
head -c 20 /dev/zero > "$dir/in-short.f32"
expect 2 "wrong input size" -- run "$dir/mlp.st" --input "$dir/in-short.f32"
python_nan() { printf '\x00\x00\xc0\x7f'; head -c 60 /dev/zero; }
python_nan > "$dir/in-nan.f32"
expect 1 "NaN/Inf" -- run "$dir/mlp.st" --input "$dir/in-nan.f32" --check
expect 0 "NaN/Inf values (computed through)" -- run "$dir/mlp.st" --input "$dir/in-nan.f32"
# a model without ReLU propagates NaN to the output
expect 0 "wrote" -- model create mlp --dims 16,8 -o "$dir/lin.st"
expect 1 "NaN/Inf in the output" -- run "$dir/lin.st" --input "$dir/in-nan.f32" --check

if [ "$failed" != 0 ]; then echo "test-model-cli: $failed failed"; exit 1; fi
echo "test-model-cli: all passed"
