#!/usr/bin/env bash
# Quick start, main job: set up, build (preset `default`), and run the benchmark on the best
# available device (the first usable GPU, else the CPU). Extra arguments go to `streampool bench`,
# e.g. scripts/run.sh --models mlp --threads 1,2,8 --plot bench.svg
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset default >/dev/null
cmake --build --preset default
build/default/tools/streampool diag
exec build/default/tools/streampool bench --json build/bench.jsonl --plot build/bench.svg "$@"
