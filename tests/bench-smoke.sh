#!/usr/bin/env bash
# CI smoke run of the main job: `mtinfer bench --quick` must finish and every section must
# have produced numbers (the figures themselves are not judged here: timings belong in
# benchmarks, not in tests).
set -euo pipefail
cli=${1:-build/bin/mtinfer}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$cli" bench --quick --peer none --json "$tmp/bench.json" --md "$tmp/bench.md" --svg "$tmp/svg" \
  > "$tmp/stdout.txt"
python3 - "$tmp/bench.json" <<'PY'
import json, math, sys
d = json.load(open(sys.argv[1]))
r = d["results"]
def numbers(x):
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from numbers(v)
expected = ["single", "mlp", "story", "patterns", "serialization", "batch", "raw", "batcher"]
bad = []
for key in expected:
    vals = list(numbers(r.get(key)))
    if not vals or not all(math.isfinite(v) for v in vals) or not any(v > 0 for v in vals):
        bad.append(key)
for key in ("device", "cpu_model", "git_commit"):
    if not d["environment"].get(key):
        bad.append("environment." + key)
if bad:
    sys.exit("bench smoke: no numbers from: " + ", ".join(bad))
print("bench smoke: every section produced numbers (%s)" % ", ".join(expected))
PY
for chart in threads batch-throughput batch-latency batcher-throughput batcher-latency; do
  [ -s "$tmp/svg/$chart.svg" ] || { echo "bench smoke: chart $chart.svg missing"; exit 1; }
done
grep -q "^## 7. The dynamic batcher" "$tmp/bench.md" || { echo "bench smoke: --md incomplete"; exit 1; }
echo "bench smoke: charts and markdown written"
