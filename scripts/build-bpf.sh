#!/usr/bin/env bash
# Rebuild the BPF census object from its C source.
#
#   scripts/build-bpf.sh [OUT]     (default: src/sample/bpf/census.bpf.o)
#
# Needs clang, bpftool and libbpf's headers (Debian: clang libbpf-dev bpftool)
# and a kernel with BTF (/sys/kernel/btf/vmlinux) to generate vmlinux.h from.
# The object is CO-RE: the kernel it was built on does not limit where it runs.
# The committed object is what `cargo build` embeds; CI rebuilds it with this
# script into a temporary path and runs the BPF tests on that rebuild (see
# docs/bpf.md, "Building the object").
set -euo pipefail
cd "$(dirname "$0")/.."

src=src/sample/bpf/census.bpf.c
out=${1:-src/sample/bpf/census.bpf.o}
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

# -g keeps the BTF that CO-RE relocations need; strip only DWARF afterwards
# so the committed object stays small.
clang -O2 -g -target bpf -D__TARGET_ARCH_${arch} \
  -I"$gen" -I/usr/include/$(uname -m)-linux-gnu \
  -Wall -Werror \
  -c "$src" -o "$out.tmp"
if command -v llvm-strip >/dev/null; then
  llvm-strip -g "$out.tmp"
fi
mv "$out.tmp" "$out"
echo "build-bpf: wrote $out ($(stat -c %s "$out") bytes, $(clang --version | head -1))"
