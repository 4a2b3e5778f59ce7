#!/usr/bin/env bash
# Builds a libFuzzer target with clang (ASan + UBSan) and runs it.
#   scripts/fuzz.sh [SECONDS] [TARGET]   (default 300 s, target safetensors)
# Targets: safetensors (the safetensors parser; seeds tests/fuzz/corpus), infer_request (the Open
# Inference Protocol's request parser of streampool serve; seeds tests/fuzz/infer_corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
target=${2:-safetensors}
out=build/fuzz
case "$target" in
  safetensors) seeds=tests/fuzz/corpus; extra="" ;;
  infer_request) seeds=tests/fuzz/infer_corpus; extra="src/server/protocol.cc" ;;
  *) echo "fuzz: unknown target '$target' (safetensors, infer_request)"; exit 2 ;;
esac
mkdir -p "$out" "$out/corpus_$target"
CXX=${CXX_FUZZ:-clang++-14}
srcs=$(ls src/core/*.cc src/backend/*.cc src/backend/cpu/*.cc src/backend/no_cuda/*.cc src/memory/*.cc src/tensor/*.cc src/tensor/cpu/*.cc src/tensor/no_cuda/*.cc)
mkdir -p "$out/include/streampool"
sed 's/@PROJECT_VERSION@/fuzz/; s/@PROJECT_VERSION_[A-Z]*@/0/' cmake/version.h.in >"$out/include/streampool/version.h"
$CXX -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Iinclude -I"$out/include" -Isrc $srcs $extra "tests/fuzz/${target}_fuzz.cc" -o "$out/${target}_fuzz" -lpthread -ldl
cp "$seeds"/* "$out/corpus_$target/" 2>/dev/null || true
"$out/${target}_fuzz" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$out/corpus_$target" "$seeds" 2>&1 | tail -25
