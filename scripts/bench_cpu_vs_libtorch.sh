#!/usr/bin/env bash
# The CPU against libtorch on the same cores (issue 16's protocol): Debian's libtorch
# (libtorch-dev) running ../shared/anchors/cpu_libtorch_threads.cpp, and `streampool bench
# --device cpu`, alternating, ROUNDS rounds, at 1 and 2 request threads with one BLAS thread
# each, and at 1 request thread with 2 intra-op threads (libtorch INTRA=2; streampool
# STREAMPOOL_CPU_THREADS=2). Prints the requests/s ratio streampool / libtorch per workload,
# configuration and round; writes every JSON line to OUT (default build/cpu-vs-libtorch.jsonl).
# Where the installed OpenBLAS falls back to its SSE3 kernels ("Prescott") on a CPU with AVX2 or
# AVX-512, libtorch's GEMMs run on them too: libtorch is then run a second time with
# OPENBLAS_CORETYPE set to the CPU's best (variant lt_core, libtorch at its best), and the
# ratios are given against both. LT_CORETYPE overrides the choice (empty: no second run).
#   scripts/bench_cpu_vs_libtorch.sh [ANCHOR_SOURCE]   (default ../shared/anchors/cpu_libtorch_threads.cpp)
# Environment: ROUNDS (2), DUR (seconds per point, 1), MODELS (mlp,encoder,linear4096,conv1d,bert-minilm),
# BUILD (build/default), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/anchors/cpu_libtorch_threads.cpp}
B=${BUILD:-build/default}
OUT=${OUT:-build/cpu-vs-libtorch.jsonl}
ROUNDS=${ROUNDS:-2} DUR=${DUR:-1} MODELS=${MODELS:-mlp,encoder,linear4096,conv1d,bert-minilm}
if [ -z "${LT_CORETYPE+set}" ]; then
  LT_CORETYPE=""
  core=$(OPENBLAS_VERBOSE=2 python3 -c 'import ctypes; ctypes.CDLL("libopenblas.so.0").openblas_get_corename' 2>&1 | sed -n 's/^Core: //p')
  if [ "$core" = Prescott ]; then
    if grep -qw avx512f /proc/cpuinfo; then LT_CORETYPE=SkylakeX; elif grep -qw avx2 /proc/cpuinfo; then LT_CORETYPE=Haswell; fi
  fi
fi
echo "OpenBLAS core: ${core:-as detected}; libtorch also with OPENBLAS_CORETYPE=${LT_CORETYPE:-(no second run)}" >&2
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
  if [ -n "$LT_CORETYPE" ]; then
    OPENBLAS_CORETYPE=$LT_CORETYPE DUR=$DUR INTRA=1 "$anchor" "$MODELS" 1,2 2>/dev/null | tag "{\"variant\": \"lt_core\", \"round\": $r}" >>"$OUT"
    OPENBLAS_CORETYPE=$LT_CORETYPE DUR=$DUR INTRA=2 "$anchor" "$MODELS" 1 2>/dev/null | tag "{\"variant\": \"lt_core_intra2\", \"round\": $r}" >>"$OUT"
  fi
  STREAMPOOL_CPU_THREADS=2 "$B/tools/streampool" bench --device cpu --models "$MODELS" --threads 1 --duration "$DUR" \
    --json /dev/stdout 2>/dev/null | tag "{\"variant\": \"sp_intra2\", \"round\": $r}" >>"$OUT"
done
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
get = lambda v, m, t, r: next((x for x in rows if x["variant"] == v and x["model"] == m and x["threads"] == t and x["round"] == r), None)
print(f'{"workload":12} {"config":22} {"round":>5} {"streampool":>11} {"libtorch":>9} {"ratio":>6} {"lt core":>9} {"ratio":>6} {"sp p50":>8} {"lt p50":>8}')
for m in dict.fromkeys(x["model"] for x in rows):
    for sp, lt, t, name in (("sp", "lt", 1, "1 thread"), ("sp", "lt", 2, "2 threads"), ("sp_intra2", "lt_intra2", 1, "1 thread, 2 intra-op")):
        for r in sorted({x["round"] for x in rows}):
            a, b = get(sp, m, t, r), get(lt, m, t, r)
            c = get(lt.replace("lt", "lt_core", 1), m, t, r)
            if a and b:
                core = f'{c["rps"]:9.1f} {a["rps"] / c["rps"]:5.2f}x' if c else f'{"-":>9} {"-":>6}'
                print(f'{m:12} {name:22} {r:5} {a["rps"]:11.1f} {b["rps"]:9.1f} {a["rps"] / b["rps"]:5.2f}x {core} {a["p50_ms"]:8.2f} {b["p50_ms"]:8.2f}')
PY
