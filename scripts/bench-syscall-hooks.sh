#!/bin/bash
# EXPERIMENT (reverted in the next commit; kept in history so the numbers in
# docs/syscalls.md can be reproduced): the cost per syscall of each BPF hook
# variant, via FDWATCH_SYSCALLS_BPF_HOOK=raw|tp_btf|task|nop|tp|fentry.
#   scripts/bench-syscall-hooks.sh getppid 1000000 alone bys-nop bys-raw tgt-raw ...
# tgt-HOOK: counter on the loop itself; bys-HOOK: counter on an idle process.
set -e
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-target}
cc -O2 -o "$T/syscall-loop" scripts/syscall-loop.c
L=$T/syscall-loop
C=$T/release/examples/count_syscalls
M=$1; N=$2; shift 2
for cfg in "$@"; do
  case $cfg in
    alone) DELAY=0.3 $L $N $M ;;
    bys-*) sleep 60 & S=$!; FDWATCH_SYSCALLS_BPF_HOOK=${cfg#bys-} FDWATCH_SYSCALLS_BACKEND=bpf $C $S 60 >/dev/null 2>&1 & O=$!; DELAY=0.3 $L $N $M; kill $O $S; wait $O $S 2>/dev/null || true ;;
    tgt-*) DELAY=0.3 $L $N $M > "$T/loop.out" & P=$!; FDWATCH_SYSCALLS_BPF_HOOK=${cfg#tgt-} FDWATCH_SYSCALLS_BACKEND=bpf $C $P 60 >/dev/null 2>&1 & O=$!; wait $P; cat "$T/loop.out"; kill $O; wait $O 2>/dev/null || true ;;
  esac | sed "s/^/$cfg /"
done
