#!/usr/bin/env bash
# The one-way flow of docs/architecture.md, checked on the includes: a file of one layer
# includes nothing of a layer above it. Layers, lowest first: core, backend, memory, tensor,
# ops, nn, graph, serve, server (src/<layer>/ and the public headers that belong to each). Exit 1 naming each
# include that points upward, and each source line that tests for a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
rank() {  # rank of a src/ path or a public header name
  case "$1" in
    src/core/*|device.h|stream.h|event.h|error.h|settings.h|stream_pool.h|stream_guard.h|export.h|version.h) echo 0 ;;
    src/backend/*) echo 1 ;;
    src/memory/*|allocator.h) echo 2 ;;
    src/tensor/*|tensor.h|dtype.h|safetensors.h) echo 3 ;;
    src/ops/*|ops.h) echo 4 ;;
    src/nn/*|nn/*) echo 5 ;;
    src/graph/*|graph.h) echo 6 ;;
    src/serve/*|batch_queue.h|batch_future.h|serve_metrics.h) echo 7 ;;
    src/server/*) echo 8 ;;
    streampool.h) echo 9 ;;
    *) echo -1 ;;
  esac
}
status=0
while IFS= read -r file; do
  case "$file" in include/streampool/*) own=$(rank "${file#include/streampool/}") ;; *) own=$(rank "$file") ;; esac
  [ "$own" -lt 0 ] && continue
  while IFS= read -r inc; do
    case "$inc" in
      streampool/*) target=$(rank "${inc#streampool/}") ;;
      core/*|backend/*|memory/*|tensor/*|ops/*|nn/*|graph/*|serve/*|server/*) target=$(rank "src/$inc") ;;
      *) continue ;;
    esac
    if [ "$target" -gt "$own" ]; then
      echo "layering: $file includes \"$inc\", a layer above it"
      status=1
    fi
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$file")
done < <(find src include/streampool -type f \( -name '*.h' -o -name '*.cc' -o -name '*.cu' -o -name '*.cuh' \) | sort)
# Backends are chosen by the build (backend/no_cuda/ ...), never by the preprocessor.
if grep -rn "STREAMPOOL_WITH_CUDA" src include; then
  echo "layering: the lines above test STREAMPOOL_WITH_CUDA; link a no_cuda stub instead"
  status=1
fi
[ "$status" -eq 0 ] && echo "layering: every include points down or sideways; no #ifdef on the backend"
exit "$status"
