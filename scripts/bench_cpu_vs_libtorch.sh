#!/usr/bin/env bash
# The CPU against libtorch on the same cores (issue 16's protocol): Debian's libtorch
# (libtorch-dev) running ../shared/anchors/cpu_libtorch_threads.cpp, and `streampool bench
# --device cpu`, alternating, ROUNDS rounds, at 1 and 2 request threads with one BLAS thread
# each, and at 1 request thread with 2 intra-op threads (libtorch INTRA=2; streampool
# STREAMPOOL_CPU_BLAS_THREADS=2). Prints the requests/s ratio streampool / libtorch per
# workload, configuration and round; writes every JSON line to OUT (default
# build/cpu-vs-libtorch.jsonl).
#   scripts/bench_cpu_vs_libtorch.sh [ANCHOR_SOURCE]   (default ../shared/anchors/cpu_libtorch_threads.cpp)
# Environment: ROUNDS (2), DUR (seconds per point, 1), MODELS (mlp,encoder,linear4096,conv1d,bert-minilm),
# BUILD (build/default), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/anchors/cpu_libtorch_threads.cpp}
B=${BUILD:-build/default}
OUT=${OUT:-build/cpu-vs-libtorch.jsonl}
ROUNDS=${ROUNDS:-2} DUR=${DUR:-1} MODELS=${MODELS:-mlp,encoder,linear4096,conv1d,bert-minilm}
[ -f /usr/include/torch/csrc/api/include/torch/torch.h ] || { echo "needs libtorch-dev (apt-get install libtorch-dev)" >&2; exit 2; }
anchor=$(dirname "$OUT")/cpu_libtorch_threads
if [ ! -x "$anchor" ] || [ "$src" -nt "$anchor" ]; then
  g++ -O2 -std=c++20 "$src" -I/usr/include/torch/csrc/api/include -ltorch -ltorch_cpu -lc10 -lopenblas -pthread -o "$anchor"
fi
: >"$OUT"
tag() { python3 -c 'import json,sys
for l in sys.stdin:
  l=l.strip()
  if not l.startswith("{"): continue
  j=json.loads(l); j.update(json.loads(sys.argv[1])); print(json.dumps(j))' "$1"; }
for r in $(seq "$ROUNDS"); do
  DUR=$DUR INTRA=1 "$anchor" "$MODELS" 1,2 2>/dev/null | tag "{\"variant\": \"lt\", \"round\": $r}" >>"$OUT"
  "$B/tools/streampool" bench --device cpu --models "$MODELS" --threads 1,2 --duration "$DUR" --json /dev/stdout 2>/dev/null \
    | tag "{\"variant\": \"sp\", \"round\": $r}" >>"$OUT"
  DUR=$DUR INTRA=2 "$anchor" "$MODELS" 1 2>/dev/null | tag "{\"variant\": \"lt_intra2\", \"round\": $r}" >>"$OUT"
  STREAMPOOL_CPU_BLAS_THREADS=2 "$B/tools/streampool" bench --device cpu --models "$MODELS" --threads 1 --duration "$DUR" \
    --json /dev/stdout 2>/dev/null | tag "{\"variant\": \"sp_intra2\", \"round\": $r}" >>"$OUT"
done
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
get = lambda v, m, t, r: next((x for x in rows if x["variant"] == v and x["model"] == m and x["threads"] == t and x["round"] == r), None)
print(f'{"workload":12} {"config":22} {"round":>5} {"streampool":>11} {"libtorch":>9} {"ratio":>6} {"sp p50":>8} {"lt p50":>8}')
for m in dict.fromkeys(x["model"] for x in rows):
    for sp, lt, t, name in (("sp", "lt", 1, "1 thread"), ("sp", "lt", 2, "2 threads"), ("sp_intra2", "lt_intra2", 1, "1 thread, 2 intra-op")):
        for r in sorted({x["round"] for x in rows}):
            a, b = get(sp, m, t, r), get(lt, m, t, r)
            if a and b:
                print(f'{m:12} {name:22} {r:5} {a["rps"]:11.1f} {b["rps"]:9.1f} {a["rps"] / b["rps"]:5.2f}x {a["p50_ms"]:8.2f} {b["p50_ms"]:8.2f}')
PY
