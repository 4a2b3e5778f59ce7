#!/usr/bin/env bash
# expect_cli.sh STATUS REGEX COMMAND...: runs COMMAND (at most 120 s) and passes when it exits
# with STATUS ("nonzero" for any failure) and its output (stdout + stderr) matches REGEX.
# A hang is a failure (status 124 from timeout).
set -u
want=$1 regex=$2
shift 2
# CMake drops empty list items: @EMPTY@ stands for an empty argument.
args=()
for a in "$@"; do [ "$a" = "@EMPTY@" ] && args+=("") || args+=("$a"); done
out=$(timeout 120 "${args[@]}" 2>&1)
rc=$?
echo "$out" | tail -20
echo "exit status: $rc"
if [ "$rc" = 124 ]; then echo "FAIL: timed out (hang)"; exit 1; fi
if [ "$want" = nonzero ]; then
  [ "$rc" != 0 ] || { echo "FAIL: expected a non-zero exit"; exit 1; }
else
  [ "$rc" = "$want" ] || { echo "FAIL: expected exit $want"; exit 1; }
fi
echo "$out" | grep -Eq -- "$regex" || { echo "FAIL: output does not match: $regex"; exit 1; }
echo "PASS"
