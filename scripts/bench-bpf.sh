#!/usr/bin/env bash
# BPF census benchmark: fdwatch's kernel-side census against lsfd and lsof
# (and fdwatch's own /proc census), on the same holder process, in one run.
#
#   scripts/bench-bpf.sh             # from the repo root, as root
#
# For each size (1k, 10k, hard RLIMIT_NOFILE minus MARGIN) one holder
# (`fdwatch workload`) holds equal shares of regular files, pipes, unix
# socketpairs, unbound UDP and unbound netlink sockets. Timed against it:
#   - `fdwatch --pid P --count 1 --json --backend bpf`   (a whole process run)
#   - `fdwatch ... --backend proc`, `lsfd -p P`, `lsof -p P -n -P`   (hyperfine)
#   - in-process: the BPF walk alone and a whole BPF sample
#     (examples/census_time.rs; median of ROUNDS, program loaded once)
# At the largest size it also runs 60 s watches at 1 s (`--backend bpf`, then
# `--backend proc`; with WATCH_ARGS, by default `--syscalls off`: the census's
# cost, not the syscall counter's) and reports fdwatch's own CPU (utime+stime
# ticks of all its threads from /proc/<fdwatch pid>/stat, last read before it
# exits) as % of one core. WATCH_REPEAT (1) runs each watch that many times.
#
# Knobs: RUNS (10), WARMUP (3), ROUNDS (50), MARGIN (1000), SIZES
# ("1000 10000 MAX"), WATCH_SECS (60), WATCH_ARGS ("--syscalls off"),
# WATCH_REPEAT (1), OUT (target/bench-bpf), NO_INSTALL=1.
set -euo pipefail

ROOT=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
cd "$ROOT"
[[ -f Cargo.toml && -d src/sample ]] || { echo "run from the fdwatch repo root" >&2; exit 2; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=${RUNS:-10}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-50}
MARGIN=${MARGIN:-1000}
WATCH_SECS=${WATCH_SECS:-60}
WATCH_ARGS=${WATCH_ARGS-"--syscalls off"}
WATCH_REPEAT=${WATCH_REPEAT:-1}
OUT=${OUT:-$CARGO_TARGET_DIR/bench-bpf}
mkdir -p "$OUT"
FDWATCH=$CARGO_TARGET_DIR/release/fdwatch
TIMER=$CARGO_TARGET_DIR/release/examples/census_time
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
[[ $(id -u) == 0 ]] || { log "the BPF census needs root"; exit 2; }

log "building fdwatch and examples/census_time"
cargo build --release --quiet
cargo build --release --quiet --example census_time

HARD=$(ulimit -Hn)
[[ $HARD == unlimited ]] && HARD=1048576
ulimit -n "$HARD"
MAX=$(( (HARD - MARGIN) / 10 * 10 ))
SIZES=${SIZES:-"1000 10000 $MAX"}

# shellcheck source=scripts/holder.sh
source "$ROOT/scripts/holder.sh"

# bench LABEL CMD... -> "LABEL<TAB>mean<TAB>sd<TAB>min" (ms) appended to $RESULTS
bench() {
    local label=$1; shift
    hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" \
        --export-csv "$OUT/hf.csv" -- "$(printf '%q ' "$@")" >/dev/null 2>&1 || { log "hyperfine failed: $*"; exit 1; }
    awk -F, -v l="$label" 'NR==2 {printf "%s\t%.3f\t%.3f\t%.3f\n", l, $2*1000, $3*1000, $7*1000}' "$OUT/hf.csv" >>"$RESULTS"
}
col() { awk -F'\t' -v l="$1" -v c="$2" '$1 == l {print $c}' "$RESULTS"; }

# cpu_of_watch BACKEND P -> "ticks seconds percent"
cpu_of_watch() {
    local backend=$1 p=$2 wpid last="" stat t0 t1
    t0=$(date +%s%N)
    # shellcheck disable=SC2086 # WATCH_ARGS: words
    "$FDWATCH" --pid "$p" --interval 1s --duration "${WATCH_SECS}s" --backend "$backend" --json $WATCH_ARGS >/dev/null 2>"$OUT/watch.err" &
    wpid=$!
    while stat=$(cat "/proc/$wpid/stat" 2>/dev/null); do
        # utime + stime (fields 14, 15 after the comm field)
        last=$(awk '{sub(/.*\) /, ""); print $12 + $13}' <<<"$stat")
        [[ $(awk '{sub(/.*\) /, ""); print $1}' <<<"$stat") == Z ]] && break
        sleep 0.2
    done
    wait "$wpid"
    t1=$(date +%s%N)
    awk -v t="$last" -v hz="$(getconf CLK_TCK)" -v ns=$((t1 - t0)) \
        'BEGIN {s = ns / 1e9; printf "%d %.1f %.3f\n", t, s, 100 * t / hz / s}'
}

REPORT=$OUT/results.md
exec 3>&1
exec > >(tee "$REPORT")
TEE_PID=$!
printf '# fdwatch BPF census benchmark\n\n'
printf -- '- machine: %s cores, kernel %s, load average at start %s\n' "$(nproc)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf -- '- fdwatch commit %s, %s, lsof %s, %s\n' "$(git rev-parse --short HEAD)" "$(lsfd --version)" \
    "$(lsof -v 2>&1 | awk '/revision:/ {print $2; exit}')" "$(hyperfine --version)"
printf -- '- hyperfine -N: %s runs after %s warm-up; in-process: median of %s rounds; times in ms\n' "$RUNS" "$WARMUP" "$ROUNDS"

MISMATCH=0
for n in $SIZES; do
    start_holder "$n"
    P=$HOLDER_PID
    RESULTS=$OUT/size-$n.tsv; : >"$RESULTS"
    b=$("$FDWATCH" --pid "$P" --count 1 --json --backend bpf)
    p=$("$FDWATCH" --pid "$P" --count 1 --json --backend proc)
    for f in fds kinds tcp_states repeated_paths deleted_bytes; do
        [[ $(jq -c ".$f" <<<"$b") == $(jq -c ".$f" <<<"$p") ]] || { MISMATCH=1; log "MISMATCH at $n fds: $f"; }
    done
    bench "fdwatch --backend bpf (process)" "$FDWATCH" --pid "$P" --count 1 --json --backend bpf
    bench "fdwatch --backend proc (process)" "$FDWATCH" --pid "$P" --count 1 --json --backend proc
    bench "lsfd -p" lsfd -p "$P"
    bench "lsof -p -n -P" lsof -p "$P" -n -P
    "$TIMER" "$P" "$ROUNDS" >"$OUT/inproc-$n.txt"
    load=$(awk '$1 == "bpf_load" {print $3}' "$OUT/inproc-$n.txt")
    walk=$(awk '$1 == "bpf_walk" {print $2}' "$OUT/inproc-$n.txt")
    whole=$(awk '$1 == "bpf_sample" {print $2}' "$OUT/inproc-$n.txt")
    procin=$(awk '$1 == "proc_sample" {print $2}' "$OUT/inproc-$n.txt")
    lsfd=$(col "lsfd -p" 2); lsof=$(col "lsof -p -n -P" 2)
    printf '\n## %s fds (holder pid %s, %s fds seen)\n\n' "$n" "$P" "$(jq .fds <<<"$b")"
    printf '| what | mean ± σ [ms] | min [ms] | lsfd ÷ this | lsof ÷ this |\n|---|---:|---:|---:|---:|\n'
    awk -F'\t' -v a="$lsfd" -v o="$lsof" '{printf "| `%s` | %.2f ± %.2f | %.2f | %.1fx | %.1fx |\n", $1, $2, $3, $4, a / $2, o / $2}' "$RESULTS"
    for row in "in-process BPF walk (iterator read + decode)|$walk" "in-process BPF sample (walk + /proc identity, limits, readlinks)|$whole" "in-process /proc sample|$procin"; do
        awk -v l="${row%%|*}" -v t="${row##*|}" -v a="$lsfd" -v o="$lsof" \
            'BEGIN {printf "| %s (median) | %.3f | | %.0fx | %.0fx |\n", l, t, a / t, o / t}'
    done
    printf '\n- loading the BPF program (in-process, once): %s ms of CPU\n' "$load"
    printf -- '- BPF and /proc samples agree on fds, kinds, tcp_states, repeated_paths, deleted_bytes: %s\n' \
        "$([[ $MISMATCH == 0 ]] && echo yes || echo NO)"
    printf -- '- netlink_protocols: bpf %s, proc %s\n' "$(jq -c .netlink_protocols <<<"$b")" "$(jq -c .netlink_protocols <<<"$p")"
    if [[ $n == "${SIZES##* }" && $WATCH_SECS -gt 0 ]]; then
        printf '\n### %s s watch at 1 s on this holder (`%s`): fdwatch CPU\n\n| backend | utime+stime [ticks] | wall [s] | %% of one core |\n|---|---:|---:|---:|\n' "$WATCH_SECS" "$WATCH_ARGS"
        for _ in $(seq "$WATCH_REPEAT"); do
            for be in bpf proc; do
                read -r ticks secs pct < <(cpu_of_watch "$be" "$P")
                printf '| %s | %s | %s | %s %% |\n' "$be" "$ticks" "$secs" "$pct"
            done
        done
    fi
    stop_holder
done
exec >&3 3>&-
wait "$TEE_PID" 2>/dev/null || true
[[ $MISMATCH == 0 ]] || { log "BPF and /proc disagree"; exit 1; }
