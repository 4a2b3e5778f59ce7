#!/usr/bin/env bash
# Quick start, main job: set up, build (preset `default`), and run the main job.
# Until `streampool bench` exists the main job is `streampool diag`. Extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset default >/dev/null
cmake --build --preset default
exec build/default/tools/streampool diag "$@"
