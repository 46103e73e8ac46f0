#!/usr/bin/env bash
# A static fdwatch for any x86_64 Linux, whatever its C library (the glibc
# build needs glibc 2.35 or newer): builds
# target/x86_64-unknown-linux-musl/release/fdwatch and smoke-tests it here:
# no program interpreter, no shared libraries, `--version`, and a short
# `fdwatch demo` that must end with the workload at EMFILE and a CRITICAL
# verdict.
#
# Needs the Rust standard library for x86_64-unknown-linux-musl (rustup
# downloads it; Debian packages no musl build of it: its libstd-rust-dev is
# for the host's glibc target only). No C compiler for musl is needed
# (musl-gcc / Debian's musl-tools): the crate has no C code, and rustc links
# with the musl crt objects and libc.a that ship with that standard library.
#
# Usage: scripts/build-musl.sh [OUT]   (OUT: also copy the binary there)
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  if ! rustup target add "$target"; then
    echo "build-musl: the Rust standard library for $target is not installed and" \
      "'rustup target add $target' failed (it downloads from static.rust-lang.org);" \
      "Debian has no package for it. Install it where that host is reachable." >&2
    exit 1
  fi
fi

cargo build --release --locked --target "$target"
bin="${CARGO_TARGET_DIR:-target}/$target/release/fdwatch"

fail() { echo "build-musl: smoke test failed: $*" >&2; exit 1; }

# Static: no PT_INTERP (nothing for a loader to find) and no DT_NEEDED.
if command -v readelf >/dev/null; then
  readelf -lW "$bin" | grep -q 'INTERP' && fail "$bin has a program interpreter"
  readelf -dW "$bin" | grep -q '(NEEDED)' && fail "$bin needs shared libraries"
else
  ldd "$bin" 2>&1 | grep -Eq 'not a dynamic executable|statically linked' ||
    fail "$bin is dynamically linked: $(ldd "$bin" 2>&1)"
fi

"$bin" --version | grep -q '^fdwatch ' || fail "--version"

# A bounded demo: 200 leaks/s under a soft limit of 256 reaches EMFILE in
# about 1.5 s; 60 s is the backstop.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
timeout 60 "$bin" demo --rate 200 --soft-limit 256 --interval 200ms --linger 1s --plain \
  >"$out" 2>&1 || fail "demo exited $?: $(tail -3 "$out")"
grep -q 'level=CRITICAL' "$out" || fail "demo: no CRITICAL sample: $(tail -3 "$out")"
grep -q 'netlink:' "$out" || fail "demo: netlink sockets not classified: $(tail -3 "$out")"
grep -q 'hit EMFILE' "$out" || fail "demo: the workload never hit EMFILE: $(tail -3 "$out")"

demo_last=$(tail -1 "$out")

# `fdwatch ls` of a holder of known fds (this shell with a file on fd 7),
# from each census backend the machine offers: the static binary lists them.
exec 7<"$0"
for backend in proc auto; do
  timeout 30 "$bin" ls --pid $$ --backend "$backend" --json >"$out" 2>&1 \
    || fail "ls --backend $backend exited $?: $(tail -3 "$out")"
  grep -q '"fd": *7[,}]' "$out" || fail "ls --backend $backend: fd 7 not listed: $(head -c 300 "$out")"
done
exec 7<&-
listed=$(grep -o '"backend": *"[a-z]*"' "$out" | head -1)

size=$(stat -c %s "$bin")
echo "build-musl: $bin: static, $((size / 1024)) KiB; ls: fd 7 listed ($listed); demo: $demo_last"
if [ $# -ge 1 ]; then
  install -m 0755 "$bin" "$1"
fi
