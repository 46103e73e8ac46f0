#!/usr/bin/env bash
# What `fdwatch stacks` costs the process it traces (docs/performance.md,
# "Stack tracer"). As root, from the repo root, after `cargo build --release`.
#
#   1. scripts/syscall-loop.c: CPU ns per getppid() (a syscall the tracer
#      only filters) and per socket(AF_NETLINK)+bind+close (one fd created
#      and closed: a stack taken, stored, counted and forgotten), alone and
#      under `fdwatch stacks --pid`. Minimum of REPS repetitions, median of
#      ROUNDS rounds, rounds interleaved.
#   2. A Go program calling net.InterfaceAddrs() in a loop for SECS seconds
#      (two netlink sockets a call, 15 syscalls): its own calls per second,
#      alone and under `fdwatch stacks`, rounds interleaved.
#
# Env: ROUNDS (5), REPS (5), N_GETPPID (1000000), N_NETLINK (100000), SECS (5).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
export REPS=${REPS:-5}
N_GETPPID=${N_GETPPID:-1000000}
N_NETLINK=${N_NETLINK:-100000}
SECS=${SECS:-5}
FDWATCH=${FDWATCH:-target/release/fdwatch}
[ -x "$FDWATCH" ] || { echo "bench-stacks: build first (cargo build --release)" >&2; exit 1; }
command -v go >/dev/null || { echo "bench-stacks: needs go (apt-get install golang-go)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

cc -O2 -o "$TMP/loop" scripts/syscall-loop.c
cat > "$TMP/main.go" <<'GO'
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

//go:noinline
func logLine() { net.InterfaceAddrs() }

func main() {
	secs, _ := strconv.ParseFloat(os.Args[1], 64)
	if d := os.Getenv("DELAY"); d != "" {
		s, _ := strconv.ParseFloat(d, 64)
		time.Sleep(time.Duration(s * float64(time.Second)))
	}
	end := time.Now().Add(time.Duration(secs * float64(time.Second)))
	n := 0
	for time.Now().Before(end) {
		logLine()
		n++
	}
	fmt.Printf("%.1f\n", float64(n)/secs)
}
GO
(cd "$TMP" && GO111MODULE=off GOCACHE="$TMP/gocache" go build -o "$TMP/ifaddrs" main.go)

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# run_loop MODE N traced?  -> CPU ns per iteration
run_loop() {
  local mode=$1 n=$2 traced=$3 out
  if [ "$traced" = yes ]; then
    DELAY=1 "$TMP/loop" "$n" "$mode" > "$TMP/out" & local pid=$!
    "$FDWATCH" stacks --pid "$pid" --for 600s > "$TMP/report" 2>/dev/null & local fw=$!
    wait "$pid"
    kill -INT "$fw"; wait "$fw" || true
  else
    DELAY=1 "$TMP/loop" "$n" "$mode" > "$TMP/out"
  fi
  # syscall-loop prints "MODE W ns/iter wall, C ns/iter cpu ...": take C.
  sed -n 's/.*wall, \([0-9.]*\) ns\/iter cpu.*/\1/p' "$TMP/out"
}

run_go() {
  local traced=$1
  if [ "$traced" = yes ]; then
    DELAY=1 "$TMP/ifaddrs" "$SECS" > "$TMP/out" & local pid=$!
    "$FDWATCH" stacks --pid "$pid" --for 600s > "$TMP/report" 2>/dev/null & local fw=$!
    wait "$pid"
    kill -INT "$fw"; wait "$fw" || true
  else
    DELAY=1 "$TMP/ifaddrs" "$SECS" > "$TMP/out"
  fi
  cat "$TMP/out"
}

echo "machine: $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "fdwatch $(git rev-parse --short HEAD), $(go version | cut -d' ' -f3), ROUNDS=$ROUNDS REPS=$REPS"
declare -A r
for round in $(seq "$ROUNDS"); do
  for traced in no yes; do
    r[getppid_$traced]+="$(run_loop getppid "$N_GETPPID" $traced) "
    r[netlink_$traced]+="$(run_loop netlink "$N_NETLINK" $traced) "
    r[go_$traced]+="$(run_go $traced) "
  done
done
for k in getppid netlink go; do
  a=$(echo ${r[${k}_no]} | tr ' ' '\n' | median)
  b=$(echo ${r[${k}_yes]} | tr ' ' '\n' | median)
  case $k in
    go) echo "net.InterfaceAddrs calls/s: alone $a, under fdwatch stacks $b ($(awk -v a="$a" -v b="$b" 'BEGIN{printf "%+.1f %%", 100*(b-a)/a}')); rounds: alone ${r[${k}_no]}; traced ${r[${k}_yes]}" ;;
    *) echo "$k CPU ns/iter: alone $a, under fdwatch stacks $b (+$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.1f ns, %+.1f %%", b-a, 100*(b-a)/a}')); rounds: alone ${r[${k}_no]}; traced ${r[${k}_yes]}" ;;
  esac
done
echo "last report of the Go run:"
grep -A3 "Churn sites" "$TMP/report" || true
