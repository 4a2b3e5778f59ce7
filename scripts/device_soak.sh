#!/usr/bin/env bash
# A soak longer than one device call (10 minutes at most): `start` runs `streampool soak` in its
# own process session, from copies of the binaries under /tmp/soak (a later call may unpack the
# bundle over build/ while it runs), and returns after WAIT seconds; `collect`, in the next call
# on the same machine (it stays warm 30 s between calls), waits for the soak to end and copies
# its output, JSON and the allocator's log (gzipped) to $OUT/soak.
#   scripts/device_soak.sh start [MINUTES] [BUILD_DIR]   (defaults 10, build/default; after tar xJf)
#   scripts/device_soak.sh collect
# Env: WAIT (seconds `start` stays, default 570), SOAK_ARGS (more soak flags), OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
D=/tmp/soak
case "${1:-}" in
  start)
    MIN=${2:-10}
    B=${3:-build/default}
    rm -rf "$D" && mkdir -p "$D/bin" "$D/lib"
    cp "$B/tools/streampool" "$D/bin/" && cp -a "$B"/libstreampool.so* "$D/lib/" || exit 2
    [ -d .device/lib ] && cp -a .device/lib/. "$D/lib/"
    setsid bash -c "STREAMPOOL_ALLOCATOR_LOG=1 LD_LIBRARY_PATH=$D/lib:/usr/local/cuda/lib64 $D/bin/streampool soak \
      --minutes $MIN --json $D/soak.json ${SOAK_ARGS:-} > $D/soak.out 2> $D/soak_progress.txt; echo \$? > $D/rc" \
      < /dev/null > /dev/null 2>&1 &
    sleep "${WAIT:-570}"
    grep "^soak:" "$D/soak_progress.txt" | tail -2
    ;;
  collect)
    for _ in $(seq 300); do [ -f "$D/rc" ] && break; sleep 1; done
    [ -f "$D/rc" ] || { echo "device_soak: the soak has not ended"; exit 1; }
    mkdir -p "${OUT:-/tmp}/soak"
    cp "$D/soak.out" "$D/soak.json" "$D/rc" "${OUT:-/tmp}/soak/" 2>/dev/null
    gzip -c "$D/soak_progress.txt" > "${OUT:-/tmp}/soak/soak_progress.txt.gz"
    cat "$D/soak.out"
    exit "$(cat "$D/rc")"
    ;;
  *)
    echo "usage: scripts/device_soak.sh start [MINUTES] [BUILD_DIR] | collect"; exit 2 ;;
esac
