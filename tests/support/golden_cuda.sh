#!/bin/sh
# Runs `streampool golden` on cuda:0 in dtype $3, or exits 77 (skipped) where no GPU is usable.
"$1" diag --check >/dev/null 2>&1 || { echo "no usable GPU: skipped"; exit 77; }
exec "$1" golden --dir "$2" --device cuda --dtype "$3"
