#!/usr/bin/env bash
# Runs a command and fails if it died of a signal, dumped core, or printed a sanitizer report or a
# CUDA error, even when its exit status was 0 (the MPS suite's crash-log check, for Linux).
#   scripts/run_with_crash_check.sh CMD [ARGS...]
# Exit: the command's own status if it failed; 1 if it exited 0 but the check found a crash
# sign; 0 otherwise. The command's output passes through (and is kept in $CRASH_CHECK_LOG if set).
set -uo pipefail
if [ $# -lt 1 ]; then
  echo "usage: scripts/run_with_crash_check.sh CMD [ARGS...]" >&2
  exit 64
fi
log=${CRASH_CHECK_LOG:-$(mktemp)}
cores_before=$(ls core core.* 2>/dev/null | wc -l)
"$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
found=()
if [ "$status" -gt 128 ]; then
  found+=("killed by signal $((status - 128)) ($(kill -l $((status - 128)) 2>/dev/null || echo '?'))")
fi
cores_after=$(ls core core.* 2>/dev/null | wc -l)
[ "$cores_after" -gt "$cores_before" ] && found+=("a core file appeared in $PWD")
# Sanitizer reports, crash backtraces, CUDA errors (ours name the call; the runtime's own text).
patterns='ERROR: (Address|Thread|Memory|Leak|UndefinedBehavior)Sanitizer|WARNING: ThreadSanitizer|runtime error:|SUMMARY: [A-Za-z]+Sanitizer|fatal signal|Segmentation fault|Aborted \(core dumped\)|terminate called|cudaError|CUDA error|an illegal memory access|unspecified launch failure|========= ERROR SUMMARY: [1-9]'
if grep -Eq "$patterns" "$log"; then
  found+=("the output has crash or error signs:")
  while IFS= read -r line; do found+=("  $line"); done < <(grep -E "$patterns" "$log" | head -5)
fi
[ -z "${CRASH_CHECK_LOG:-}" ] && rm -f "$log"
if [ ${#found[@]} -gt 0 ]; then
  printf 'crash check: %s\n' "${found[@]}" >&2
  [ "$status" -ne 0 ] && exit "$status"
  exit 1
fi
exit "$status"
