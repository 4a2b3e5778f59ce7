#!/usr/bin/env bash
# The bare reproduction without streampool (tests/bare/cuda_bare_thread_race.cu): N threads on N
# raw CUDA streams running kernels and cuBLASLt GEMMs, every result checked, to tell a driver
# fault from ours. Compiles it with nvcc (CUDACXX, else /usr/local/cuda/bin/nvcc, else PATH),
# then runs it through the crash check.
#   scripts/cuda_bare_thread_race.sh [--compile-only] [--threads=N] [--iterations=N] [--size=N]
# Environment: BARE_OUT (where the program goes, default build/bare).
# Exit: the program's (0 all matched, 1 a failure, 77 no GPU), or nvcc's when it does not compile.
set -euo pipefail
cd "$(dirname "$0")/.."
compile_only=0
args=()
for a in "$@"; do
  if [ "$a" = --compile-only ]; then compile_only=1; else args+=("$a"); fi
done
nvcc=${CUDACXX:-}
[ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
[ -z "$nvcc" ] && nvcc=$(command -v nvcc || true)
[ -n "$nvcc" ] || { echo "cuda_bare_thread_race: no nvcc (set CUDACXX)" >&2; exit 2; }
out=${BARE_OUT:-build/bare}
mkdir -p "$out"
"$nvcc" -O2 -std=c++17 -arch=sm_90 tests/bare/cuda_bare_thread_race.cu -o "$out/cuda_bare_thread_race" -lcublasLt
echo "compiled $out/cuda_bare_thread_race"
[ $compile_only = 1 ] && exit 0
exec scripts/run_with_crash_check.sh "$out/cuda_bare_thread_race" "${args[@]}"
