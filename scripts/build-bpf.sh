#!/usr/bin/env bash
# Rebuild the BPF objects from their C sources.
#
#   scripts/build-bpf.sh                      the three committed objects:
#                                             src/sample/bpf/census.bpf.o,
#                                             src/syscalls/bpf/count.bpf.o and
#                                             src/stacks/bpf/stacks.bpf.o
#   scripts/build-bpf.sh OUT                  the census only, into OUT (as before)
#   scripts/build-bpf.sh OUT SYSCALLS_OUT     the census into OUT and the
#                                             syscall counter into SYSCALLS_OUT
#   scripts/build-bpf.sh OUT SYSCALLS_OUT STACKS_OUT
#                                             and the stack tracer into STACKS_OUT
#
# Needs clang, bpftool and libbpf's headers (Debian: clang libbpf-dev bpftool)
# and a kernel with BTF (/sys/kernel/btf/vmlinux) to generate vmlinux.h from.
# The objects are CO-RE: the kernel they were built on does not limit where
# they run. The committed objects are what `cargo build` embeds; CI rebuilds
# them with this script into a temporary directory and runs the tests on the
# rebuilds (see docs/bpf.md, "Building the object", and docs/syscalls.md).
set -euo pipefail
cd "$(dirname "$0")/.."

census_src=src/sample/bpf/census.bpf.c
count_src=src/syscalls/bpf/count.bpf.c
stacks_src=src/stacks/bpf/stacks.bpf.c
stacks_out=
case $# in
  0) census_out=src/sample/bpf/census.bpf.o; count_out=src/syscalls/bpf/count.bpf.o
     stacks_out=src/stacks/bpf/stacks.bpf.o ;;
  1) census_out=$1; count_out= ;;
  2) census_out=$1; count_out=$2 ;;
  3) census_out=$1; count_out=$2; stacks_out=$3 ;;
  *) echo "usage: scripts/build-bpf.sh [OUT [SYSCALLS_OUT [STACKS_OUT]]]" >&2; exit 2 ;;
esac
gen=${CARGO_TARGET_DIR:-target}/bpf-include
mkdir -p "$gen"

for tool in clang bpftool; do
  command -v "$tool" >/dev/null || { echo "build-bpf: $tool not found (apt-get install clang bpftool libbpf-dev)" >&2; exit 1; }
done
[ -f /usr/include/bpf/bpf_helpers.h ] || { echo "build-bpf: libbpf headers not found (apt-get install libbpf-dev)" >&2; exit 1; }
[ -r /sys/kernel/btf/vmlinux ] || { echo "build-bpf: no kernel BTF at /sys/kernel/btf/vmlinux" >&2; exit 1; }

bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$gen/vmlinux.h.tmp"
mv "$gen/vmlinux.h.tmp" "$gen/vmlinux.h"

case "$(uname -m)" in
  x86_64) arch=x86 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac

build() { # build SRC OUT
  local src=$1 out=$2
  # -g keeps the BTF that CO-RE relocations need; strip only DWARF afterwards
  # so the committed object stays small. __TARGET_ARCH_* picks the pt_regs
  # layout of bpf_tracing.h's PT_REGS_* macros.
  clang -O2 -g -target bpf -D__TARGET_ARCH_${arch} \
    -I"$gen" -I/usr/include/$(uname -m)-linux-gnu \
    -Wall -Werror \
    -c "$src" -o "$out.tmp"
  if command -v llvm-strip >/dev/null; then
    llvm-strip -g "$out.tmp"
  fi
  mv "$out.tmp" "$out"
  echo "build-bpf: wrote $out ($(stat -c %s "$out") bytes, $(clang --version | head -1))"
}

build "$census_src" "$census_out"
if [ -n "$count_out" ]; then
  build "$count_src" "$count_out"
fi
if [ -n "$stacks_out" ]; then
  build "$stacks_src" "$stacks_out"
fi
