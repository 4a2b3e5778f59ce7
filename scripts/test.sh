#!/usr/bin/env bash
# Quick start, tests: set up, build and run every test (preset `default`: unit, stress, cuda,
# install), the stress and server tests under ThreadSanitizer (preset `tsan`), and every CPU test under
# AddressSanitizer + UBSan (preset `asan`). CUDA tests skip themselves where no GPU is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
for preset in default tsan asan; do
  echo "== preset $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  ctest --preset "$preset"
done
