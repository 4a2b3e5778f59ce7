#!/usr/bin/env bash
# Tests that can fail: applies deliberate breakages one at a time in a scratch copy of the tree
# (HEAD plus the working tree's tracked changes), rebuilds the CPU preset there, runs the CPU
# suites, and prints for each breakage the tests that caught it. Exit 1 if a breakage was caught
# by no test (or could not be applied: the anchor text it patches was not found).
#   scripts/mutation_check.sh [NAME...]     (default: every breakage below)
# Environment: MUTATION_DIR (scratch, default /tmp/streampool-mutation), JOBS (build jobs).
# MUTATION_LIB_OUT=DIR: for a GPU machine instead. Builds the `default` preset (with CUDA) and,
# for each selected breakage, copies the broken library to DIR/NAME/ without running anything;
# there, LD_LIBRARY_PATH=DIR/NAME makes the test binaries of a default build use it (they find
# their library through RUNPATH, which LD_LIBRARY_PATH overrides), e.g.
#   LD_LIBRARY_PATH=DIR/stream_wait_noop build/default/tests/streampool_unit_tests --gtest_filter='*Hazard*cuda*'
set -uo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
DIR=${MUTATION_DIR:-/tmp/streampool-mutation}
JOBS=${JOBS:-$(nproc)}
SUITES="unit stress concurrency graph batch"
CTESTS="cli_bench|cli_soak|tsan_stress|golden_cpu"  # CTest entries run too (the CLI checks, the stress program)

# name|file|anchor|replacement  (the first occurrence of anchor is replaced; \n is a newline)
MUTATIONS=(
  'stream_wait_noop|src/core/stream.cc|void Stream::wait(const Event\& event) const {\n|void Stream::wait(const Event\& event) const {\n  if (true) return;  // MUTATION\n'
  'record_stream_noop|src/memory/caching_allocator.cc|void record_stream(const DataPtr\& ptr, const Stream\& stream) {\n|void record_stream(const DataPtr\& ptr, const Stream\& stream) {\n  if (true) return;  // MUTATION\n'
  'no_oom_ladder|src/memory/caching_allocator.cc|    if (!ptr) {\n      ++stats_.retries;\n      release_cached(lock);|    if (false) {  // MUTATION\n      ++stats_.retries;\n      release_cached(lock);'
  'no_oom_ladder_rung2|src/memory/caching_allocator.cc|    if (!ptr \&\& !pending_.empty()) {|    if (false \&\& !ptr \&\& !pending_.empty()) {  // MUTATION'
  'hand_over_noop|src/tensor/tensor.cc|void hand_over(const Tensor\& t, const Stream\& consumer) {\n|void hand_over(const Tensor\& t, const Stream\& consumer) {\n  if (true) return;  // MUTATION\n'
  'fork_guard_off|src/core/fork_guard.h|inline void check_not_forked() {\n|inline void check_not_forked() {\n  if (true) return;  // MUTATION\n'
  'queue_rows_offset|src/serve/batch_future.cc|t.slice(0, r.row0, r.row0 + r.rows)|t.slice(0, 0, r.rows)  /* MUTATION */'
  'queue_no_drain|src/serve/batch_queue.cc|    if (!best) {\n      if (closed) return false;|    if (closed) return false;  // MUTATION\n    if (!best) {\n      if (closed) return false;'
  'queue_no_reaper|src/serve/batch_queue.cc|void BatchQueue::Core::reap() {\n|void BatchQueue::Core::reap() {\n  if (true) return;  // MUTATION\n'
  'bench_check_off|tools/bench.cc|  for (auto\& a : accs) r.max_err = std::max(r.max_err, static_cast<double>(a.to_vector<float>()[0]));|  (void)accs;  // MUTATION'
  'gelu_erf_as_tanh|src/ops/cpu/elementwise.cc|t[j] = xi[j] * 0.70710678118654752f;\n        erf_n(t, t, m);|t[j] = 0.7978845608028654f * (xi[j] + 0.044715f * xi[j] * xi[j] * xi[j]);  // MUTATION\n        tanh_n(t, t, m);'
  'cross_stream_unordered|src/memory/caching_allocator.cc|    if (!finished) to.order_after(*done);|    if (false) to.order_after(*done);  // MUTATION'
  'cross_stream_inherits_failure|src/backend/cpu/cpu_backend.cc|  enqueue_host("stream_order_after", [this, m] {\n|  if (true) return wait(event);  // MUTATION\n  enqueue_host("stream_order_after", [this, m] {\n'
  'recycle_off|src/memory/caching_allocator.cc|    if (total < seg) return;|    return;  // MUTATION'
  'recycle_no_wait|src/memory/caching_allocator.cc|        m->synchronize();|        (void)m;  // MUTATION'
  'queue_no_cancel|src/serve/batch_queue.cc|    if (r.current() != RequestStatus::queued) return false;\n    if (r.lane) {|    if (true) return false;  // MUTATION\n    if (r.lane) {'
)

want=("$@")
selected() { [ ${#want[@]} -eq 0 ] && return 0; for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

echo "mutation check: scratch copy in $DIR"
rm -rf "$DIR" && mkdir -p "$DIR"
git ls-files -z | xargs -0 -I{} cp --parents {} "$DIR"/ 2>/dev/null
cd "$DIR"
PRESET=cpu
LIB_OUT=${MUTATION_LIB_OUT:-}
if [ -n "$LIB_OUT" ]; then
  PRESET=default
  mkdir -p "$LIB_OUT" && LIB_OUT=$(cd "$LIB_OUT" && pwd)
fi
cmake --preset $PRESET >/dev/null || { echo "mutation check: configure failed"; exit 2; }
build() {
  if [ -n "$LIB_OUT" ]; then cmake --build --preset $PRESET -j "$JOBS" --target streampool >/tmp/mutation_build.log 2>&1
  else cmake --build --preset $PRESET -j "$JOBS" >/tmp/mutation_build.log 2>&1; fi
}
build || { echo "mutation check: the unmodified tree does not build"; tail -20 /tmp/mutation_build.log; exit 2; }

run_suites() {  # prints the failed tests (or "crashed: binary") of every suite
  local out
  for s in $SUITES; do
    out=$(STREAMPOOL_TEST_EXIT_RUNS=10 timeout 900 build/cpu/tests/streampool_${s}_tests --gtest_filter='*cpu*:-*cuda*' 2>&1)
    local rc=$?
    local failed
    failed=$(grep -E '^\[  FAILED  \] [A-Za-z]' <<<"$out" | sed 's/^\[  FAILED  \] //; s/, where.*//' | sort -u)
    if [ -n "$failed" ]; then echo "$failed"; elif [ $rc -ne 0 ]; then echo "crashed or timed out: streampool_${s}_tests (status $rc)"; fi
  done
  (cd build/cpu && ctest -R "$CTESTS" 2>&1 | sed -n 's/^[[:space:]]*[0-9]* - \(.*\) (.*)$/ctest: \1/p')
}

if [ -n "$LIB_OUT" ]; then
  echo "mutation check: broken libraries for a GPU machine go to $LIB_OUT"
else
echo "mutation check: baseline run (must be clean)"
base=$(run_suites)
if [ -n "$base" ]; then echo "mutation check: the unmodified tree fails:"; echo "$base"; exit 2; fi
fi

status=0
for m in "${MUTATIONS[@]}"; do
  IFS='|' read -r name file anchor repl <<<"$m"
  selected "$name" || continue
  cp "$file" "$file.orig"
  if ! python3 - "$file" "$anchor" "$repl" <<'PY'
import sys
path, anchor, repl = sys.argv[1], sys.argv[2].replace('\\n', '\n').replace('\\&', '&'), sys.argv[3].replace('\\n', '\n').replace('\\&', '&')
s = open(path).read()
if anchor not in s:
    sys.exit(1)
open(path, 'w').write(s.replace(anchor, repl, 1))
PY
  then
    echo "== $name: NOT APPLIED (anchor not found in $file)"
    status=1
    continue
  fi
  if ! build; then
    echo "== $name: does not build"; tail -5 /tmp/mutation_build.log; status=1
  elif [ -n "$LIB_OUT" ]; then
    mkdir -p "$LIB_OUT/$name" && cp -P build/$PRESET/libstreampool.so* "$LIB_OUT/$name/"
    echo "== $name: library in $LIB_OUT/$name"
  else
    caught=$(run_suites)
    if [ -z "$caught" ]; then
      echo "== $name: NOT CAUGHT by any test"
      status=1
    else
      echo "== $name: caught by $(wc -l <<<"$caught") test(s):"
      sed 's/^/     /' <<<"$caught"
    fi
  fi
  mv "$file.orig" "$file"
  touch "$file"  # newer than the objects built from the mutated copy, so the next build redoes them
done
build
exit $status
