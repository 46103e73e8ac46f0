#!/usr/bin/env bash
# `fdwatch ls` against `lsof -p` and `lsfd -p`, on the same holder process
# with N fds (default 10,000: equal shares of regular files, pipes, unix
# socketpairs, unbound UDP and unbound netlink sockets; scripts/holder.sh),
# both fdwatch backends, in one run. Times are whole process runs, output
# to /dev/null, by hyperfine -N; ratios are peer ÷ fdwatch (above 1: fdwatch
# is faster).
#
#   scripts/bench-ls.sh              # from the repo root, as root (BPF)
#
# Before timing, it checks that each command lists every fd: fdwatch's JSON
# `total` on both backends, lsfd's and lsof's fd rows, against /proc/PID/fd.
#
# Knobs: N (10000), RUNS (10), WARMUP (2), OUT (target/bench-ls), NO_INSTALL=1.
set -euo pipefail

ROOT=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
cd "$ROOT"
[[ -f Cargo.toml && -d src/sample ]] || { echo "run from the fdwatch repo root" >&2; exit 2; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
N=${N:-10000}
RUNS=${RUNS:-10}
WARMUP=${WARMUP:-2}
OUT=${OUT:-$CARGO_TARGET_DIR/bench-ls}
mkdir -p "$OUT"
FDWATCH=$CARGO_TARGET_DIR/release/fdwatch
log() { printf '%s\n' "$*" >&2; }

need() { # need CMD PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    [[ ${NO_INSTALL:-0} == 1 ]] && return 1
    log "installing $2 (for $1)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 || true
    command -v "$1" >/dev/null 2>&1
}
need hyperfine hyperfine || { log "hyperfine missing"; exit 2; }
need lsof lsof || { log "lsof missing"; exit 2; }
need lsfd util-linux || { log "lsfd missing"; exit 2; }
need jq jq || { log "jq missing"; exit 2; }
[[ $(id -u) == 0 ]] || { log "the BPF listing needs root"; exit 2; }

log "building fdwatch"
cargo build --release --quiet

HARD=$(ulimit -Hn)
[[ $HARD == unlimited ]] && HARD=1048576
(( N + 100 <= HARD )) || { log "N=$N does not fit the hard RLIMIT_NOFILE ($HARD)"; exit 2; }
ulimit -n "$HARD"

# shellcheck source=scripts/holder.sh
source "$ROOT/scripts/holder.sh"

start_holder "$N"
P=$HOLDER_PID
want=$(find "/proc/$P/fd" -mindepth 1 -maxdepth 1 | wc -l)

# Everyone lists every fd (or the comparison would be unfair).
for b in proc bpf; do
    got=$("$FDWATCH" ls --pid "$P" --json --backend "$b" | jq .total)
    [[ $got == "$want" ]] || { log "fdwatch ls --backend $b listed $got fds, /proc has $want"; exit 1; }
done
got=$(lsfd -p "$P" -n -o FD | awk '$1 ~ /^[0-9]+$/' | wc -l)
[[ $got == "$want" ]] || { log "lsfd listed $got fds, /proc has $want"; exit 1; }
# lsof shows fds above 9999 by their last three digits after a `*`.
got=$(lsof -p "$P" -n -P -F f | grep -cE '^f\*?[0-9]')
[[ $got == "$want" ]] || { log "lsof listed $got fds, /proc has $want"; exit 1; }

RESULTS=$OUT/results.tsv; : >"$RESULTS"
bench() { # bench LABEL CMD...  -> LABEL<TAB>mean<TAB>sd<TAB>min (ms)
    local label=$1; shift
    hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" --output null \
        --export-csv "$OUT/hf.csv" -- "$(printf '%q ' "$@")" >/dev/null 2>&1 || { log "hyperfine failed: $*"; exit 1; }
    awk -F, -v l="$label" 'NR==2 {printf "%s\t%.2f\t%.2f\t%.2f\n", l, $2*1000, $3*1000, $7*1000}' "$OUT/hf.csv" >>"$RESULTS"
}
col() { awk -F'\t' -v l="$1" -v c="$2" '$1 == l {print $c}' "$RESULTS"; }

bench "fdwatch ls --backend bpf" "$FDWATCH" ls --pid "$P" --backend bpf
bench "fdwatch ls --backend proc" "$FDWATCH" ls --pid "$P" --backend proc
bench "fdwatch ls --backend bpf --json" "$FDWATCH" ls --pid "$P" --backend bpf --json
bench "fdwatch ls --backend proc --json" "$FDWATCH" ls --pid "$P" --backend proc --json
bench "lsfd -p" lsfd -p "$P"
bench "lsof -p -n -P" lsof -p "$P" -n -P

lsfd_ms=$(col "lsfd -p" 2); lsof_ms=$(col "lsof -p -n -P" 2)
printf '# fdwatch ls benchmark\n\n'
printf -- '- %s cores, kernel %s, load average %s; fdwatch %s, %s, lsof %s, %s\n' "$(nproc)" "$(uname -r)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$(git rev-parse --short HEAD)" "$(lsfd --version)" \
    "$(lsof -v 2>&1 | awk '/revision:/ {print $2; exit}')" "$(hyperfine --version)"
printf -- '- holder pid %s with %s fds (all four list every one); hyperfine -N, %s runs after %s warm-up, output to /dev/null\n\n' \
    "$P" "$want" "$RUNS" "$WARMUP"
printf '| command | mean ± σ [ms] | min [ms] | lsfd ÷ this | lsof ÷ this |\n|---|---:|---:|---:|---:|\n'
awk -F'\t' -v a="$lsfd_ms" -v o="$lsof_ms" \
    '{printf "| `%s` | %.1f ± %.1f | %.1f | %.1fx | %.1fx |\n", $1, $2, $3, $4, a / $2, o / $2}' "$RESULTS"
