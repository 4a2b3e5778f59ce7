#!/usr/bin/env bash
# On the GPU machine, from a build tree that travelled there (build/default) with the Debian
# libraries it needs in .device/lib and the anchor sources in .device/anchors:
#   scripts/device_run.sh tests    CUDA tests, golden cases in three dtypes, kernel bandwidth
#   scripts/device_run.sh bench    libtorch anchor and streampool bench in the same call
#   scripts/device_run.sh batched  PyTorch's batch ceiling, Hugging Face BERT and the batched bench
# Narrowing: SUITES (test binaries), GOLDEN_DTYPES, MODELS (anchor), BENCH_MODELS, DTYPES,
# BENCH_MODES (direct,graph), BENCH_FLAGS (extra bench flags), ANCHOR_MODES (eager,graph), DUR (anchor
# seconds per point);
# batched: BATCH_THREADS (client counts), BATCH_FLAGS (extra bench flags), BATCH_CASES.
# Results go to $OUT (or /tmp/streampool-device).
set -uo pipefail
cd "$(dirname "$0")/.."
B=build/default
OUT=${OUT:-/tmp/streampool-device}
mkdir -p "$OUT"
[ -f .device/bundle.tar.xz ] && tar xJf .device/bundle.tar.xz
export LD_LIBRARY_PATH=$PWD/.device/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
case "${1:-tests}" in
  tests)
    status=0
    for dt in ${GOLDEN_DTYPES-float32 float16 bfloat16}; do
      "$B/tools/streampool" golden --dir tests/data/golden --device cuda --dtype "$dt" | tee -a "$OUT/golden.txt" || status=1
    done
    for t in ${SUITES:-unit ops concurrency stress graph}; do
      "$B/tests/streampool_${t}_tests" --gtest_filter='*cuda*' >"$OUT/${t}_cuda.log" 2>&1 || status=1
      grep -E '^\[  (PASSED|FAILED) |FAILED \]' "$OUT/${t}_cuda.log" | tail -12
    done
    "$B/benchmarks/streampool_kernel_bench" --benchmark_min_time=0.2 2>&1 | tee "$OUT/kernels.txt" | grep -E "BM_|bandwidth"
    echo "device tests status=$status"
    exit $status
    ;;
  bench)
    TORCH=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')
    g++ -O2 -std=c++20 .device/anchors/libtorch_threads.cpp -o /tmp/libtorch_threads -D_GLIBCXX_USE_CXX11_ABI=1 \
      -I"$TORCH/include" -I"$TORCH/include/torch/csrc/api/include" -I/usr/local/cuda/include \
      -L"$TORCH/lib" -Wl,-rpath,"$TORCH/lib" -ltorch -ltorch_cpu -ltorch_cuda -lc10 -lc10_cuda -L/usr/local/cuda/lib64 -lcudart 2>&1 | tail -5
    models=${MODELS:-mlp,encoder,linear4096,conv1d}
    # The anchor may crash in its graph mode (as recorded in WORKLOADS.md): keep what it printed.
    # One process per model: its graph mode may crash (as WORKLOADS.md records), which would
    # otherwise lose the models after it.
    : >"$OUT/anchor_libtorch.jsonl"
    for m in ${models//,/ }; do
      DUR=${DUR:-0.6} MODES=${ANCHOR_MODES:-eager,graph} timeout 240 /tmp/libtorch_threads "$m" >>"$OUT/anchor_libtorch.jsonl" 2>/tmp/anchor_libtorch.err
      echo "anchor $m: exit $? ($(wc -l <"$OUT/anchor_libtorch.jsonl") configurations so far)"
    done
    for dt in ${DTYPES:-float32 float16}; do
      "$B/tools/streampool" bench --device cuda --dtype "$dt" --modes "${BENCH_MODES:-direct}" --models "${BENCH_MODELS:-mlp,encoder,linear4096,conv1d,bert-minilm}" \
        --compare "$OUT/anchor_libtorch.jsonl" --json "$OUT/bench_$dt.jsonl" --plot "$OUT/bench_$dt.svg" ${BENCH_FLAGS:-} \
        2>/tmp/bench_$dt.err
      grep -E "launches|FAILED" /tmp/bench_$dt.err
    done
    ;;
  batched)
    DUR=${DUR:-0.5} timeout 300 python3 .device/anchors/torch_batch_ceiling.py >"$OUT/anchor_batch_ceiling.jsonl" 2>/tmp/ceiling.err
    echo "ceiling: exit $?"; cat "$OUT/anchor_batch_ceiling.jsonl"
    DUR=${DUR:-0.5} timeout 300 python3 .device/anchors/hf_bert_batch.py >"$OUT/anchor_hf_bert.jsonl" 2>/tmp/hf.err
    echo "hf bert: exit $?"; grep -E '"batch": (128|512)' "$OUT/anchor_hf_bert.jsonl"
    # model:dtype:inflight per case
    for c in ${BATCH_CASES:-mlp:float32:256 encoder:float16:256 bert-minilm:float16:512}; do
      IFS=: read -r m dt n <<<"$c"
      "$B/tools/streampool" bench --device cuda --dtype "$dt" --modes batched --models "$m" --inflight "$n" \
        --threads "${BATCH_THREADS:-16}" ${BATCH_FLAGS:-} --json "$OUT/batched_${m}_${dt}.jsonl" 2>>"$OUT/batched.err"
      echo "bench $m $dt: exit $?"
    done
    ;;
esac
