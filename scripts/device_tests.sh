#!/usr/bin/env bash
# Runs the CUDA tests and diag from a build tree that travelled to a GPU machine (no ctest:
# the build tree's absolute paths differ there). Logs go to $OUT when it is set.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${1:-build/default}
OUT=${OUT:-/tmp/streampool-device}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$OUT/gpu.txt"
"$B/tools/streampool" diag; echo "diag rc=$?"
"$B/tools/streampool" diag --check >/dev/null; echo "diag --check rc=$?"
"$B/tools/streampool" diag --json >"$OUT/diag.json"
status=0
for t in unit stress; do
  "$B/tests/streampool_${t}_tests" --gtest_filter='*cuda*' >"$OUT/${t}_cuda.log" 2>&1 || status=1
  grep -E '^\[  (PASSED|FAILED|SKIPPED) |OK \]|FAILED \]|SKIPPED \]|Failure' "$OUT/${t}_cuda.log" | tail -60
done
"$B/tests/streampool_unit_tests" --gtest_filter='*cpu*:-*cuda*' >"$OUT/unit_cpu.log" 2>&1 || status=1
"$B/tests/streampool_stress_tests" --gtest_filter='*cpu*:-*cuda*' >"$OUT/stress_cpu.log" 2>&1 || status=1
tail -n 3 "$OUT/unit_cpu.log" "$OUT/stress_cpu.log"
echo "device tests status=$status"
exit $status
