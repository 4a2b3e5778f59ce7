#!/usr/bin/env bash
# Every test of the suite through the crash check (the MPS suite's run_all_tests.sh): each test
# binary on the CPU and, where a GPU is visible, on cuda:0; the stress program; the golden cases;
# the bare CUDA reproduction where a GPU is visible. A run fails if its command failed or if it
# exited 0 but died of a signal, dumped core, or printed a sanitizer report or a CUDA error.
#   scripts/run_all_tests.sh [BUILD_DIR]      (default build/default; build it first)
# Environment: LOG_DIR (each run's output, default BUILD_DIR/test-logs), DEVICES ("cpu cuda":
# which instances; cuda is left out where no GPU is visible).
set -uo pipefail
cd "$(dirname "$0")/.."
B=${1:-build/default}
LOG_DIR=${LOG_DIR:-$B/test-logs}
mkdir -p "$LOG_DIR"
[ -x "$B/tools/streampool" ] || { echo "run_all_tests: no build in $B (cmake --preset default && cmake --build --preset default)" >&2; exit 2; }
gpu=0
"$B/tools/streampool" diag --check >/dev/null 2>&1 && gpu=1
devices=${DEVICES:-cpu cuda}
[ $gpu = 0 ] && devices=${devices//cuda/}
results=()
failed=0
run() {  # NAME CMD...
  local name=$1
  shift
  local t0=$SECONDS
  if CRASH_CHECK_LOG="$LOG_DIR/$name.log" scripts/run_with_crash_check.sh "$@" >/dev/null 2>"$LOG_DIR/$name.check"; then
    results+=("PASS  $name ($((SECONDS - t0)) s)")
  else
    results+=("FAIL  $name ($((SECONDS - t0)) s): $(tail -3 "$LOG_DIR/$name.check" | tr '\n' ' ')")
    failed=$((failed + 1))
  fi
}
for bin in "$B"/tests/streampool_*_tests; do
  suite=$(basename "$bin")
  for d in $devices; do
    if [ "$d" = cpu ]; then filter='*cpu*:-*cuda*'; else filter='*cuda*'; fi
    run "${suite}_$d" "$bin" --gtest_filter="$filter"
  done
done
for d in $devices; do
  run "tsan_stress_$d" "$B/tests/tsan_stress" --threads=31 --iterations=100 --device=$d
done
run golden_cpu "$B/tools/streampool" golden --dir tests/data/golden --device cpu
if [ $gpu = 1 ]; then
  for dt in float32 float16 bfloat16; do
    run "golden_cuda_$dt" "$B/tools/streampool" golden --dir tests/data/golden --device cuda --dtype $dt
  done
  [ -x "$B/tests/bare/cuda_bare_thread_race" ] && run bare_race "$B/tests/bare/cuda_bare_thread_race" --threads=8 --iterations=100
fi
printf '%s\n' "${results[@]}"
echo "run_all_tests: ${#results[@]} runs, $failed failed (logs in $LOG_DIR)"
[ $failed = 0 ]
