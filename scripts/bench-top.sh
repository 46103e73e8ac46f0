#!/usr/bin/env bash
# Cost of `fdwatch top` over every process of this machine, then with N extra
# small processes, against lsof and lsfd reading the same information.
#
#   scripts/bench-top.sh [EXTRA=2000] [SECONDS=60]
#
# CPU is fdwatch's own CPU time over SECONDS at the default 2 s interval, as a
# share of one core: sum_exec_runtime from /proc/PID/task/*/schedstat
# (nanoseconds; utime+stime in /proc/PID/stat are sampled at the 100 Hz tick,
# too coarse for a process that runs a few ms every 2 s), first refresh excluded. lsof/lsfd: one run each over
# all processes (they list every fd; top's count + limits is the question
# "who is closest to EMFILE" they would answer with a sort afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA=${1:-2000}
SECS=${2:-60}
BIN=${FDWATCH:-${CARGO_TARGET_DIR:-target}/release/fdwatch}
[ -x "$BIN" ] || cargo build --release >/dev/null
cpu_ns() { # CPU time of all threads of a pid, nanoseconds
  cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { print s }'
}

measure() { # label
  local label=$1 procs
  procs=$(ls /proc | grep -c '^[0-9]')
  "$BIN" top --json --interval 2s >/tmp/bench-top.$$.json &
  local pid=$!
  sleep 1 # start-up (first refresh) excluded
  local t0 w0; t0=$(cpu_ns $pid); w0=$(date +%s.%N)
  sleep "$SECS"
  local t1 w1; t1=$(cpu_ns $pid); w1=$(date +%s.%N)
  local rss; rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true
  local refresh; refresh=$(tail -n 5 /tmp/bench-top.$$.json | python3 -c '
import json,sys
v=[json.loads(l)["refresh_seconds"] for l in sys.stdin if l.strip()]
print("%.1f" % (1000*sorted(v)[len(v)//2]))')
  rm -f /tmp/bench-top.$$.json
  local pct; pct=$(echo "($t1 - $t0) / 1000000000 / ($w1 - $w0) * 100" | bc -l)
  printf '%-28s %6d procs   top: %5.2f%% of a core at 2s, refresh %s ms (median), RSS %s KiB\n' \
    "$label" "$procs" "$pct" "$refresh" "$rss"
  for tool in "lsof -n -P" "lsfd"; do
    command -v ${tool%% *} >/dev/null || { echo "  $tool: not installed"; continue; }
    local s e; s=$(date +%s.%N); $tool >/dev/null 2>&1 || true; e=$(date +%s.%N)
    printf '  %-12s one run: %7.0f ms\n' "$tool" "$(echo "($e - $s) * 1000" | bc -l)"
  done
  local s e; s=$(date +%s.%N); "$BIN" top --json --count 1 >/dev/null; e=$(date +%s.%N)
  printf '  %-12s one run: %7.0f ms (process start + first refresh)\n' "fdwatch top" "$(echo "($e - $s) * 1000" | bc -l)"
}

echo "# $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
measure "this machine"

pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq "$EXTRA"); do
  # A few inherited fds each; sleep's RSS is ~1 MB, mostly shared.
  sleep 3600 3</dev/null 4</dev/null 5</dev/null &
  pids+=($!)
done
sleep 1
measure "+$EXTRA sleep processes"
