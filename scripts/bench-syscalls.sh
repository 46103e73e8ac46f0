#!/usr/bin/env bash
# Overhead of exact syscall counting on a syscall-heavy process, per backend.
#
# Runs `fdwatch workload --churn netlink:1000000` (socket+bind+close as fast as
# it can, on THREADS threads) for CHURN_FOR, ROUNDS times in each mode,
# rounds interleaved:
#   alone           nothing attached
#   fdwatch-bpf     a SyscallCounter (BPF backend) held on it, read once a
#                   second (examples/count_syscalls.rs, FDWATCH_SYSCALLS_BACKEND=bpf)
#   fdwatch-perf    the same with the perf backend
#   strace          strace -c -f -p PID
#   bystander-bpf   the BPF counter attached to ANOTHER (idle) process: what
#                   counting one process costs every other process on the host
#   bystander-perf  the same with the perf backend
# and prints, per run, throughput (netlink_socket_calls / seconds, from the
# workload's own `done` line) and the workload's CPU time per socket+bind+close
# (utime+stime of /proc/PID/stat: less sensitive than throughput to other
# load on the machine), then the medians per mode and the ratios vs alone.
# For the fdwatch modes it checks the counter's netlink count against the
# workload's own.
#
# Then it times attach and teardown (drop) of each backend on an idle
# one-thread process, ATTACH_RUNS times each, and prints the medians
# (FDWATCH_BPF_LOADER=kernel|aya picks the BPF loader, as everywhere; ROUNDS=0
# skips the throughput part). ATTACH_GAP seconds pass between runs: attaching
# to sys_enter within ~10 ms of the previous run's detach waits out an RCU
# grace period in the kernel (~10 ms, BPF_RAW_TRACEPOINT_OPEN), which a real
# fdwatch, attaching once, does not.
#
# Last, the cost per call, with less noise than throughput: scripts/syscall-loop.c
# runs getppid() (the cheapest syscall) and socket+bind+close in a tight loop
# and reports the minimum CPU ns per iteration over 5 repetitions, alone, with
# each backend counting it (target), and with each backend counting another,
# idle process (bystander); LOOP_ROUNDS rounds, interleaved, medians shown.
#
# BPF_STATS=1 turns on kernel.bpf_stats_enabled for the run (restored at the
# end) and adds the BPF program's own run time per call (run_time_ns /
# run_cnt from the fdinfo of its fd). The stats cost time themselves, so take
# throughput numbers from runs without them.
#
# Usage: scripts/bench-syscalls.sh [ROUNDS]
#   env: THREADS=1 CHURN_FOR=5s MODES="alone fdwatch-bpf ..." ATTACH_RUNS=10
#        LOOP_ROUNDS=3 BPF_STATS=0 ATTACH_GAP=0.3
# Needs root (BPF, perf counters, strace -p). On a shared machine take the
# benchmark lock: flock /tmp/fdwatch-bench.lock bash scripts/bench-syscalls.sh 5
set -euo pipefail

ROUNDS=${1:-3}
THREADS=${THREADS:-1}
CHURN_FOR=${CHURN_FOR:-5s}
MODES=${MODES:-alone fdwatch-bpf fdwatch-perf strace bystander-bpf bystander-perf}
ATTACH_RUNS=${ATTACH_RUNS:-10}
ATTACH_GAP=${ATTACH_GAP:-0.3}
BPF_STATS=${BPF_STATS:-0}
LOOP_ROUNDS=${LOOP_ROUNDS:-3}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --quiet --release --bin fdwatch --example count_syscalls
FDW=$CARGO_TARGET_DIR/release/fdwatch
COUNT=$CARGO_TARGET_DIR/release/examples/count_syscalls
case " $MODES " in
  *" strace "*) command -v strace >/dev/null || { echo "strace missing: apt-get install -y strace" >&2; exit 1; } ;;
esac
TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d)
HOLDER=""
IDLE=""
STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo "?")
cleanup() {
  [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null || true
  [ -n "$IDLE" ] && kill "$IDLE" 2>/dev/null || true
  if [ "$BPF_STATS" = 1 ] && [ "$STATS_WAS" != "?" ]; then
    sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS" || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
if [ "$BPF_STATS" = 1 ]; then
  sysctl -qw kernel.bpf_stats_enabled=1
elif [ "$STATS_WAS" = 1 ]; then
  echo "# WARNING: kernel.bpf_stats_enabled=1 (set by someone else): every BPF program run is timed, which costs" >&2
fi

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores, THREADS=$THREADS CHURN_FOR=$CHURN_FOR ROUNDS=$ROUNDS, kernel.bpf_stats_enabled=$(sysctl -n kernel.bpf_stats_enabled)"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# utime+stime of a process (all its threads, live and exited), in ticks.
cpu_ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }

# run_time_ns and run_cnt of the BPF program held by process $1.
prog_stats() {
  local f
  for f in /proc/"$1"/fdinfo/*; do
    if grep -q '^prog_type:' "$f" 2>/dev/null; then
      awk '/^run_time_ns:/{t=$2} /^run_cnt:/{c=$2} END{print t+0, c+0}' "$f"
      return
    fi
  done
  echo "0 0"
}

# run_one MODE -> prints "throughput cpu_us_per_op counted/true prog_ns_per_run"
run_one() {
  local mode=$1 out=$TMP/out.$mode in=$TMP/in.$mode pid obs="" line="" backend="" target ticks
  local stats="0 0"
  # run_one runs in a subshell ($(...)): clean up its own children on any exit.
  trap '[ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null; [ -n "$IDLE" ] && kill "$IDLE" 2>/dev/null; true' EXIT
  rm -f "$in" "$out" "$TMP/count.json" "$TMP/count.err"; mkfifo "$in"
  sleep 600 >"$in" & HOLDER=$!          # keeps the workload's stdin open
  "$FDW" workload --churn netlink:1000000 --threads "$THREADS" \
    --start-after 1s --churn-for "$CHURN_FOR" <"$in" >"$out" &
  local wl=$!
  until grep -q '^ready ' "$out" 2>/dev/null; do sleep 0.02; done
  pid=$(awk '/^ready /{print $2}' "$out")
  case $mode in
    fdwatch-*|bystander-*)
      backend=${mode#*-}
      target=$pid
      if [[ $mode == bystander-* ]]; then
        sleep 600 & IDLE=$!
        target=$IDLE
      fi
      FDWATCH_SYSCALLS_BACKEND=$backend "$COUNT" "$target" 600 >"$TMP/count.json" 2>"$TMP/count.err" & obs=$!
      # Counting must have started before the churn does (1 s after ready).
      until grep -q "syscalls counted by" "$TMP/count.err" 2>/dev/null; do
        kill -0 "$obs" 2>/dev/null || { cat "$TMP/count.err" >&2; echo "count_syscalls failed" >&2; exit 1; }
        sleep 0.02
      done
      ;;
    strace) strace -c -f -p "$pid" -o "$TMP/strace.txt" 2>/dev/null & obs=$! ;;
  esac
  until grep -q '^done ' "$out" 2>/dev/null; do sleep 0.05; done
  ticks=$(cpu_ticks "$pid")
  [ "$backend" = bpf ] && stats=$(prog_stats "$obs")
  line=$(grep '^done ' "$out" | cut -d' ' -f2-)
  # count_syscalls reads once a second: let it read once after the churn
  # ended, then ending the workload ends it on its next read (Exited) and it
  # prints its last counts. strace is stopped.
  if [[ $mode == fdwatch-* ]]; then sleep 1.2; fi
  if [ "$mode" = strace ]; then kill -INT "$obs" 2>/dev/null || true; fi
  if [ -n "$IDLE" ]; then kill "$IDLE" 2>/dev/null || true; wait "$IDLE" 2>/dev/null || true; IDLE=""; fi
  kill "$HOLDER"; HOLDER=""
  wait "$wl" 2>/dev/null || true
  if [ -n "$obs" ]; then wait "$obs" 2>/dev/null || true; fi
  local counted=""
  if [[ $mode == fdwatch-* ]]; then
    grep -q "backend $backend," "$TMP/count.err" || { cat "$TMP/count.err" >&2; echo "not counted by $backend" >&2; exit 1; }
    counted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["socket_netlink"])' "$TMP/count.json")
  fi
  python3 - "$line" "$counted" "$ticks" "$TCK" $stats <<'PY'
import json, sys
d = json.loads(sys.argv[1]); counted = sys.argv[2]
ticks, tck, rt, rc = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
n = d["netlink_socket_calls"]
print("%.0f %.3f %s %s" % (n / d["seconds"], ticks / tck * 1e6 / n,
      "%s/%d" % (counted, n) if counted else "-", "%.1f" % (rt / rc) if rc else "-"))
PY
}

declare -A RES CPU
if [ "$ROUNDS" -gt 0 ]; then
for r in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    res=$(run_one "$mode")
    read -r t c check ns <<<"$res"
    RES[$mode]="${RES[$mode]:-} $t"
    CPU[$mode]="${CPU[$mode]:-} $c"
    printf 'round %d %-15s %10s netlink sockets/s  %7s µs CPU/op  counted %-17s prog ns/run %s\n' "$r" "$mode" "$t" "$c" "$check" "$ns"
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"

args=()
for mode in $MODES; do args+=("$mode=${RES[$mode]}=${CPU[$mode]}"); done
# "paired": the median over rounds of (mode / alone of the same round), which
# drift of the machine between rounds disturbs less than a ratio of medians.
python3 - "${args[@]}" <<'PY'
import statistics, sys
runs, cpus = {}, {}
for a in sys.argv[1:]:
    name, vals, cs = a.split("=")
    runs[name] = [float(x) for x in vals.split()]
    cpus[name] = [float(x) for x in cs.split()]
med = {n: statistics.median(v) for n, v in runs.items()}
cpu = {n: statistics.median(v) for n, v in cpus.items()}
base = runs.get("alone")
print()
print("%-15s %12s %8s %10s %10s %12s %10s" % ("mode", "median/s", "ratio", "slowdown", "paired", "µs CPU/op", "CPU +%"))
for n in med:
    if base:
        ratio = med[n] / med["alone"]
        paired = statistics.median(x / b for x, b in zip(runs[n], base))
        print("%-15s %12.0f %8.3f %9.1f%% %9.1f%% %12.3f %9.1f%%" % (n, med[n], ratio, (1 - ratio) * 100,
              (1 - paired) * 100, cpu[n], (cpu[n] / cpu["alone"] - 1) * 100))
    else:
        print("%-15s %12.0f %30s %12.3f" % (n, med[n], "", cpu[n]))
PY
fi

if [ "$ATTACH_RUNS" -gt 0 ]; then
  echo
  echo "attach / teardown of one counter on an idle 1-thread process, $ATTACH_RUNS runs each, ${ATTACH_GAP}s apart (median, ms; BPF loader: ${FDWATCH_BPF_LOADER:-default}):"
  sleep 600 & IDLE=$!
  for backend in bpf perf; do
    a=(); d=()
    for _ in $(seq 1 "$ATTACH_RUNS"); do
      sleep "$ATTACH_GAP"
      FDWATCH_SYSCALLS_BACKEND=$backend "$COUNT" "$IDLE" 0 >/dev/null 2>"$TMP/t.err"
      read -r at dt < <(sed -n 's/.*attach \([0-9.]*\) ms, teardown \([0-9.]*\) ms/\1 \2/p' "$TMP/t.err")
      a+=("$at"); d+=("$dt")
    done
    python3 - "$backend" "${a[*]}" "${d[*]}" <<'PY'
import statistics, sys
b, a, d = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
med = lambda xs: statistics.median(float(x) for x in xs)
print("%-5s attach %7.1f  teardown %7.1f   (attach: %s; teardown: %s)" % (b, med(a), med(d), " ".join(a), " ".join(d)))
PY
  done
  kill "$IDLE" 2>/dev/null || true; wait "$IDLE" 2>/dev/null || true; IDLE=""
fi

if [ "$LOOP_ROUNDS" -gt 0 ]; then
  LOOP=$TMP/syscall-loop
  cc -O2 -o "$LOOP" scripts/syscall-loop.c
  echo
  echo "cost per call: min CPU ns per iteration of 5 repetitions, median of $LOOP_ROUNDS rounds (+ns vs alone):"
  # loop_one OP N CFG -> CPU ns per iteration
  loop_one() {
    local op=$1 n=$2 cfg=$3 obs="" lp
    case $cfg in
      alone) DELAY=0.5 "$LOOP" "$n" "$op" >"$TMP/loop.out" ;;
      target-*)
        DELAY=0.5 "$LOOP" "$n" "$op" >"$TMP/loop.out" & lp=$!
        FDWATCH_SYSCALLS_BACKEND=${cfg#*-} "$COUNT" "$lp" 600 >/dev/null 2>"$TMP/loop.err" & obs=$!
        wait "$lp" ;;
      bystander-*)
        sleep 600 & IDLE=$!
        FDWATCH_SYSCALLS_BACKEND=${cfg#*-} "$COUNT" "$IDLE" 600 >/dev/null 2>"$TMP/loop.err" & obs=$!
        until grep -q "syscalls counted by" "$TMP/loop.err" 2>/dev/null; do sleep 0.02; done
        DELAY=0.1 "$LOOP" "$n" "$op" >"$TMP/loop.out"
        kill "$IDLE"; wait "$IDLE" 2>/dev/null || true; IDLE="" ;;
    esac
    if [ -n "$obs" ]; then
      kill -INT "$obs" 2>/dev/null || true; wait "$obs" 2>/dev/null || true
      grep -q "syscalls counted by" "$TMP/loop.err" || { cat "$TMP/loop.err" >&2; exit 1; }
    fi
    sed -n 's/.*wall, \([0-9.]*\) ns\/iter cpu.*/\1/p' "$TMP/loop.out"
  }
  for spec in getppid:1000000 netlink:100000; do
    op=${spec%%:*}; n=${spec#*:}
    declare -A L=()
    for r in $(seq 1 "$LOOP_ROUNDS"); do
      for cfg in alone target-bpf bystander-bpf target-perf bystander-perf; do
        L[$cfg]="${L[$cfg]:-} $(loop_one "$op" "$n" "$cfg")"
      done
    done
    python3 - "$op" "alone=${L[alone]}" "target-bpf=${L[target-bpf]}" "bystander-bpf=${L[bystander-bpf]}" \
      "target-perf=${L[target-perf]}" "bystander-perf=${L[bystander-perf]}" <<'PY'
import statistics, sys
op = sys.argv[1]
med = {}
for a in sys.argv[2:]:
    k, v = a.split("=")
    med[k] = (statistics.median(float(x) for x in v.split()), v.split())
base = med["alone"][0]
for k, (m, runs) in med.items():
    print("%-8s %-15s %8.1f ns  %+7.1f ns  %+6.1f%%   (rounds: %s)" % (op, k, m, m - base, (m / base - 1) * 100, " ".join(runs)))
PY
  done
fi
