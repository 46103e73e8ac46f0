#!/usr/bin/env bash
# Overhead of exact syscall counting on a syscall-heavy process.
#
# Runs `fdwatch workload --churn netlink:1000000` (socket+bind+close as fast as
# it can) for CHURN_FOR, ROUNDS times in each of three modes, interleaved:
#   alone    nothing attached
#   fdwatch  a SyscallCounter held on it, read once a second
#            (examples/count_syscalls.rs)
#   strace   strace -c -f -p PID
# and prints throughput (netlink_socket_calls / seconds, from the workload's
# own `done` line) per run, the median per mode, and the ratio vs alone.
#
# Usage: scripts/bench-syscalls.sh [ROUNDS]   (env: THREADS=1 CHURN_FOR=5s)
# Needs root (perf counters, strace -p).
set -euo pipefail

ROUNDS=${1:-3}
THREADS=${THREADS:-1}
CHURN_FOR=${CHURN_FOR:-5s}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --quiet --release --bin fdwatch --example count_syscalls
FDW=$CARGO_TARGET_DIR/release/fdwatch
COUNT=$CARGO_TARGET_DIR/release/examples/count_syscalls
command -v strace >/dev/null || { echo "strace missing: apt-get install -y strace" >&2; exit 1; }

TMP=$(mktemp -d)
HOLDER=""
cleanup() {
  [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# run_one MODE -> prints throughput (calls/s)
run_one() {
  local mode=$1 out=$TMP/out.$mode in=$TMP/in.$mode pid obs="" line=""
  rm -f "$in" "$out"; mkfifo "$in"
  sleep 600 >"$in" & HOLDER=$!          # keeps the workload's stdin open
  "$FDW" workload --churn netlink:1000000 --threads "$THREADS" \
    --start-after 1s --churn-for "$CHURN_FOR" <"$in" >"$out" &
  local wl=$!
  until grep -q '^ready ' "$out" 2>/dev/null; do sleep 0.02; done
  pid=$(awk '/^ready /{print $2}' "$out")
  case $mode in
    fdwatch) "$COUNT" "$pid" 600 >"$TMP/count.json" 2>"$TMP/count.err" & obs=$! ;;
    strace)  strace -c -f -p "$pid" -o "$TMP/strace.txt" 2>/dev/null & obs=$! ;;
  esac
  until grep -q '^done ' "$out" 2>/dev/null; do sleep 0.05; done
  line=$(grep '^done ' "$out" | cut -d' ' -f2-)
  if [ -n "$obs" ]; then kill -INT "$obs" 2>/dev/null || true; fi
  kill "$HOLDER"; HOLDER=""
  wait "$wl" 2>/dev/null || true
  if [ -n "$obs" ]; then wait "$obs" 2>/dev/null || true; fi
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f" % (d["netlink_socket_calls"]/d["seconds"]))' "$line"
}

declare -A RES
for r in $(seq 1 "$ROUNDS"); do
  for mode in alone fdwatch strace; do
    t=$(run_one "$mode")
    RES[$mode]="${RES[$mode]:-} $t"
    printf 'round %d %-8s %10s netlink sockets/s\n' "$r" "$mode" "$t"
  done
done

python3 - "${RES[alone]}" "${RES[fdwatch]}" "${RES[strace]}" <<'PY'
import statistics, sys
names = ["alone", "fdwatch", "strace"]
med = {n: statistics.median(float(x) for x in s.split()) for n, s in zip(names, sys.argv[1:])}
print()
print("%-8s %12s %8s %10s" % ("mode", "median/s", "ratio", "slowdown"))
for n in names:
    ratio = med[n] / med["alone"]
    print("%-8s %12.0f %8.3f %9.1f%%" % (n, med[n], ratio, (1 - ratio) * 100))
PY
