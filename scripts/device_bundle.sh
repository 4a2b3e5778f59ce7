#!/usr/bin/env bash
# Packs what a GPU machine needs to run the tests and benchmarks of build/default into
# .device/bundle.tar.xz (binaries, libstreampool, and the Debian libraries that machine lacks),
# and the anchor sources into .device/anchors. On the machine: tar xJf .device/bundle.tar.xz
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .device/stage && mkdir -p .device/stage/.device/lib .device/anchors .device/include/dlpack
# DLPack's header for scripts/device_python.sh (that machine has no Debian -dev packages).
[ -f /usr/include/dlpack/dlpack.h ] && cp /usr/include/dlpack/dlpack.h .device/include/dlpack/
cp ../shared/anchors/*.cpp ../shared/anchors/*.cu ../shared/anchors/*.py .device/anchors/ 2>/dev/null || true
for l in libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 libbenchmark.so.1debian; do
  cp -L "/usr/lib/x86_64-linux-gnu/$l" .device/stage/.device/lib/
done
# And every other Debian library the programs link (gRPC++, protobuf, abseil, c-ares, re2, ...),
# except glibc's and the C++ runtime, which that machine has, and the CUDA toolkit's (its own).
for bin in build/default/tools/streampool build/default/tests/streampool_server_tests; do
  [ -x "$bin" ] || continue
  ldd "$bin" | awk '$3 ~ /^\/(usr\/)?lib\/x86_64-linux-gnu\// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libmvec.so*|libstdc++.so*|libgcc_s.so*|ld-linux*|libpthread.so*|libdl.so*|librt.so*) ;;
      *) cp -Ln "$lib" .device/stage/.device/lib/ 2>/dev/null || true ;;
    esac
  done
done
# The bare reproduction too (no streampool in it), compiled here with nvcc.
BARE_OUT=build/default/tests/bare scripts/cuda_bare_thread_race.sh --compile-only >/dev/null
files=(build/default/libstreampool.so* build/default/tools/streampool build/default/tests/streampool_*_tests
       build/default/tests/streampool_test_helper build/default/tests/tsan_stress build/default/tests/bare/cuda_bare_thread_race build/default/benchmarks/streampool_kernel_bench build/default/benchmarks/streampool_encoder_ops_bench build/default/benchmarks/streampool_gemm_probe build/default/benchmarks/streampool_direct_overhead
       build/default/include build/default/tests/streampool_server_tests)
tar cJf .device/bundle.tar.xz "${files[@]}" -C .device/stage .device/lib
du -h .device/bundle.tar.xz
