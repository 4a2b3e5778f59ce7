#!/usr/bin/env bash
# streampool serve over loopback on a GPU machine, beside the in-process BatchQueue in the same
# run (issue 15's figures): writes random weights for examples/model-repository-gpu (mlp float32,
# bert-minilm float16, both on cuda:0; NumPy only), starts `streampool serve`, loads it with
# `bench --server` at 256 concurrent requests (binary HTTP; JSON for mlp too), stops it with
# SIGTERM, then runs the same workloads through an in-process BatchQueue (`bench --modes batched`).
#   scripts/device_serve.sh [BUILD_DIR]   (default build/default; after `tar xJf .device/bundle.tar.xz`)
# Env: OUT (results, default /tmp/streampool-serve), PY (default python3), DUR (seconds per point, default 4),
# THREADS (the server's HTTP I/O threads, default 8). Also saves the server's /metrics after the
# load (batch sizes, queue and compute times) and a per-thread CPU snapshot (top) under load.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${1:-build/default}
S=$B/tools/streampool
OUT=${OUT:-/tmp/streampool-serve}
PY=${PY:-python3}
DUR=${DUR:-4}
THREADS=${THREADS:-8}
mkdir -p "$OUT"
REPO=$(mktemp -d)/repo
cp -r examples/model-repository-gpu "$REPO"
$PY examples/model-repository/make_weights.py "$REPO" > "$OUT/weights.txt" 2>&1 || { cat "$OUT/weights.txt"; exit 2; }
$S serve --model-repository "$REPO" --http-port 8000 --grpc-port 8001 --address 127.0.0.1 --threads "$THREADS" > "$OUT/serve.out" 2> "$OUT/serve.err" &
pid=$!
for _ in $(seq 120); do grep -q HTTP "$OUT/serve.out" 2>/dev/null && break; sleep 0.5; done
cat "$OUT/serve.out" "$OUT/serve.err"
status=0
(sleep 3; top -b -H -n 1 -w 200 > "$OUT/top_mlp_http.txt" 2>&1) &
timeout 120 $S bench --server http://127.0.0.1:8000 --models mlp --threads 256,64 --duration "$DUR" --json "$OUT/server.jsonl" || status=1
timeout 120 $S bench --server http://127.0.0.1:8000 --models bert-minilm --threads 256 --duration "$DUR" --lengths 16:128 --json "$OUT/server.jsonl" || status=1
timeout 120 $S bench --server http://127.0.0.1:8000 --models mlp --threads 256 --duration "$DUR" --protocol http-json --json "$OUT/server.jsonl" || status=1
timeout 120 $S bench --server http://127.0.0.1:8001 --models mlp,bert-minilm --threads 256 --duration "$DUR" --lengths 16:128 --protocol grpc --json "$OUT/server.jsonl" || status=1
$PY -c 'import urllib.request as u; print(u.urlopen("http://127.0.0.1:8000/metrics").read().decode())' > "$OUT/metrics.txt" 2>&1
kill -TERM $pid; wait $pid; echo "serve exit status $?"; tail -3 "$OUT/serve.err"
timeout 120 $S bench --device cuda --models mlp --modes batched --threads 8 --inflight 256 --duration "$DUR" --json "$OUT/inproc_mlp.jsonl" 2>&1 | tail -3
timeout 180 $S bench --device cuda --models bert-minilm --dtype float16 --modes batched --threads 16 --inflight 256 \
  --lengths 16:128 --length-buckets 32,64,96,128 --duration "$DUR" --json "$OUT/inproc_bert.jsonl" 2>&1 | tail -3
exit $status
