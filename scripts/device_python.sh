#!/usr/bin/env bash
# Builds the Python module on a machine that has Python 3.11+ with pybind11 (pip's) but none of
# the Debian -dev packages the CMake build wants (the GPU machine), against a libstreampool built
# elsewhere, then runs the Python tests and the Python-threads benchmark there.
#   scripts/device_python.sh [BUILD_DIR] [DLPACK_INCLUDE_DIR]   (defaults: build/default, .device/include)
# DLPACK_INCLUDE_DIR holds dlpack/dlpack.h (Debian's libdlpack-dev, copied by device_bundle.sh).
# Env: PY (default python3), OUT (logs), BENCH_ARGS (default: mlp,encoder at 1..16 threads).
set -uo pipefail
cd "$(dirname "$0")/.."
B=${1:-build/default}
DL=${2:-.device/include}
PY=${PY:-python3}
OUT=${OUT:-/tmp/streampool-python}
mkdir -p "$OUT" "$B/python/streampool"
inc=$($PY -m pybind11 --includes) || { echo "device_python: $PY has no pybind11"; exit 2; }
ext=$($PY -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
cp python/streampool/* "$B/python/streampool/"
g++ -O2 -std=c++20 -shared -fPIC -fvisibility=hidden $inc -Iinclude -I"$B/include" -I"$DL" \
  python/src/module.cc python/src/tensor.cc python/src/nn.cc python/src/completions.cc python/src/exit.cc \
  -L"$B" -lstreampool -Wl,-rpath,'$ORIGIN/../..' -o "$B/python/streampool/_core$ext" || { echo "device_python: build failed"; exit 2; }
export PYTHONPATH=$PWD/$B/python
$PY -m pytest -q -p no:cacheprovider python/tests 2>&1 | tee "$OUT/pytest.txt" | tail -30
status=${PIPESTATUS[0]}
$PY -m streampool.bench ${BENCH_ARGS:---models mlp,encoder --threads 1,2,4,8,16} --json "$OUT/bench_python.jsonl"
echo "device python status=$status"
exit $status
