#!/usr/bin/env bash
# Builds the safetensors libFuzzer target with clang (ASan + UBSan) and runs it.
#   scripts/fuzz.sh [SECONDS]   (default 300); the seed corpus is tests/fuzz/corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
out=build/fuzz
mkdir -p "$out" "$out/corpus"
CXX=${CXX_FUZZ:-clang++-14}
srcs=$(ls src/core/*.cc src/backend/*.cc src/backend/cpu/*.cc src/memory/*.cc src/tensor/*.cc src/tensor/cpu/*.cc)
mkdir -p "$out/include/streampool"
sed 's/@PROJECT_VERSION@/fuzz/; s/@PROJECT_VERSION_[A-Z]*@/0/' cmake/version.h.in >"$out/include/streampool/version.h"
$CXX -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Iinclude -I"$out/include" -Isrc $srcs tests/fuzz/safetensors_fuzz.cc -o "$out/safetensors_fuzz" -lpthread -ldl
cp tests/fuzz/corpus/* "$out/corpus/" 2>/dev/null || true
"$out/safetensors_fuzz" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$out/corpus" tests/fuzz/corpus 2>&1 | tail -25
