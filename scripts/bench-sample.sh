#!/usr/bin/env bash
# Census benchmark of fdwatch against its peers and the /proc cost floor.
#
#   scripts/bench-sample.sh            # from the repo root
#
# For each size (1k, 10k, and the hard RLIMIT_NOFILE minus a margin) it starts
# one holder process (`fdwatch workload`) with equal fd shares of regular
# files, pipes, unix socketpairs, unbound UDP and unbound netlink sockets, and
# times against that same process, in the same run:
#   fdwatch full census (default threads), the same with FDWATCH_CENSUS_THREADS=1,
#   fdwatch --census count, lsfd -p, lsof -p -n -P, ls -l /proc/P/fd, and the
#   floor (scripts/floor.c: getdents64 + one readlinkat per fd).
# In-process it also runs the bound (scripts/bound.c): the fewest calls a
# /proc census must make to classify this mix, replayed with each fd's kind
# known in advance; fdwatch's one-shot census is given against both.
# It also records fdwatch's peak RSS per size (bytes/fd from the differences)
# and checks the sample is correct (fds == floor count, kinds == the mix).
#
# Knobs (environment): RUNS (10), WARMUP (3), MARGIN (1000), SIZES (default
# "1000 10000 MAX"), REPS (5), NETLINK_NEIGHBOUR (0), OUT (target/bench),
# NO_INSTALL=1 to never apt-get.
set -euo pipefail

ROOT=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
cd "$ROOT"
[[ -f Cargo.toml && -d src/sample ]] || { echo "run from the fdwatch repo root" >&2; exit 2; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=${RUNS:-10}
REPS=${REPS:-5} # alternated in-process rounds (floor, bound, fdwatch)
FAST_RUNS=${FAST_RUNS:-50} # count-only is ~2 ms: more runs for a stable minimum
WARMUP=${WARMUP:-3}
MARGIN=${MARGIN:-1000}
OUT=${OUT:-$CARGO_TARGET_DIR/bench}
mkdir -p "$OUT"
FDWATCH=$CARGO_TARGET_DIR/release/fdwatch
FLOOR=$OUT/floor
BOUND=$OUT/bound
MISMATCHES=0

log() { printf '%s\n' "$*" >&2; }

# ---- tools -----------------------------------------------------------------
APT_UPDATED=0
need() { # need CMD PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    [[ ${NO_INSTALL:-0} == 1 ]] && return 1
    log "installing $2 (for $1)"
    if [[ $APT_UPDATED == 0 ]]; then apt-get update -qq >/dev/null && APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 || true
    command -v "$1" >/dev/null 2>&1
}
HAVE_HYPERFINE=1
need hyperfine hyperfine || { HAVE_HYPERFINE=0; log "no hyperfine: falling back to a date +%s%N loop"; }
need lsof lsof || { log "lsof missing"; exit 2; }
need lsfd util-linux || { log "lsfd missing (util-linux >= 2.38)"; exit 2; }
[[ -x /usr/bin/time ]] || need /usr/bin/time time || { log "/usr/bin/time missing"; exit 2; }
need cc gcc || { log "no C compiler"; exit 2; }

# ---- build -----------------------------------------------------------------
log "building fdwatch (cargo build --release) and the floor (cc -O2)"
cargo build --release --quiet --bin fdwatch --example proc_census_time
INPROC=$CARGO_TARGET_DIR/release/examples/proc_census_time
cc -O2 -Wall -o "$FLOOR" scripts/floor.c
cc -O2 -Wall -o "$BOUND" scripts/bound.c

# ---- sizes -----------------------------------------------------------------
HARD=$(ulimit -Hn)
[[ $HARD == unlimited ]] && HARD=1048576
ulimit -n "$HARD" # soft up to hard: allowed without privileges
MAX=$(( (HARD - MARGIN) / 10 * 10 ))  # multiple of 10: five equal shares, pipes in pairs
SIZES=${SIZES:-"1000 10000 $MAX"}

# shellcheck source=scripts/holder.sh
source "$ROOT/scripts/holder.sh"

# NETLINK_NEIGHBOUR=1: another process of this netns holds one bound netlink
# socket during the run, as udevd or systemd-networkd do on most hosts. Then
# a census cannot know an unbound netlink socket from its name alone and pays
# a stat for each (docs/performance.md); without one (a container, this VM),
# it can.
NEIGHBOUR_PID=
stop_neighbour() { [[ -z $NEIGHBOUR_PID ]] || kill "$NEIGHBOUR_PID" 2>/dev/null || true; }
trap 'stop_holder; stop_neighbour' EXIT
if [[ ${NETLINK_NEIGHBOUR:-0} == 1 ]]; then
    python3 -c 'import socket, time
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0); s.bind((0, 0))
time.sleep(86400)' &
    NEIGHBOUR_PID=$!
    sleep 0.5
fi
user_netlink=$(awk 'NR > 1 && $3 != 0' /proc/net/netlink | wc -l)

# ---- timing ----------------------------------------------------------------
# bench LABEL CMD...  -> appends "LABEL<TAB>mean_ms<TAB>sd_ms" to $RESULTS.
# Set BENCH_ENV="VAR=value" to run CMD (and only CMD) with that variable.
bench() {
    local label=$1; shift
    local -a envp=()
    [[ -n ${BENCH_ENV:-} ]] && envp=(env "$BENCH_ENV")
    if [[ $HAVE_HYPERFINE == 1 ]]; then
        local csv=$OUT/hf.csv
        "${envp[@]}" hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" \
            --export-csv "$csv" -- "$(printf '%q ' "$@")" >/dev/null 2>&1 || {
            log "hyperfine failed for: $*"; exit 1; }
        # command,mean,stddev,median,user,system,min,max (seconds)
        awk -F, -v l="$label" 'NR==2 {printf "%s\t%.3f\t%.3f\t%.3f\n", l, $2*1000, $3*1000, $7*1000}' "$csv" >>"$RESULTS"
    else
        local i t0 t1 ts=() # mean, σ and min in ms
        for ((i = 0; i < WARMUP; i++)); do "${envp[@]}" "$@" >/dev/null 2>&1; done
        for ((i = 0; i < RUNS; i++)); do
            t0=$(date +%s%N); "${envp[@]}" "$@" >/dev/null 2>&1; t1=$(date +%s%N)
            ts+=($(( t1 - t0 )))
        done
        printf '%s\n' "${ts[@]}" | awk -v l="$label" '
            {s += $1; q += $1 * $1; n++; if (n == 1 || $1 < mn) mn = $1}
            END {m = s / n; v = n > 1 ? (q - n * m * m) / (n - 1) : 0; if (v < 0) v = 0;
                 printf "%s\t%.3f\t%.3f\t%.3f\n", l, m / 1e6, sqrt(v) / 1e6, mn / 1e6}' >>"$RESULTS"
    fi
}
mean_of() { awk -F'\t' -v l="$1" '$1 == l {print $2}' "$RESULTS"; }
min_of() { awk -F'\t' -v l="$1" '$1 == l {print $4}' "$RESULTS"; }

peak_rss_kib() { # median of 3 peak RSS (KiB) of a full sample; $1 = thread count or ""
    local i v=()
    for i in 1 2 3; do
        if [[ -n $1 ]]; then
            FDWATCH_CENSUS_THREADS=$1 /usr/bin/time -f %M -o "$OUT/rss" "$FDWATCH" --pid "$HOLDER_PID" --count 1 --json --backend proc >/dev/null
        else
            /usr/bin/time -f %M -o "$OUT/rss" "$FDWATCH" --pid "$HOLDER_PID" --count 1 --json --backend proc >/dev/null
        fi
        v+=("$(tail -n1 "$OUT/rss")")
    done
    printf '%s\n' "${v[@]}" | sort -n | sed -n 2p
}

# ---- correctness -----------------------------------------------------------
mismatch() { MISMATCHES=$((MISMATCHES + 1)); printf '\n!!!!!!!! MISMATCH: %s !!!!!!!!\n\n' "$*"; }
kind_of() { # kind_of JSON NAME -> count (0 if absent)
    jq -r --arg k "$2" '.kinds[$k] // 0' <<<"$1"
}
check_sample() { # check_sample N THREADS_LABEL JSON FLOOR_COUNT
    local n=$1 label=$2 json=$3 floor=$4 s=$(( $1 / 5 )) tol=10 k got fds sum
    fds=$(jq -r .fds <<<"$json")
    sum=$(jq -r '[.kinds[]] | add' <<<"$json")
    [[ $fds == "$floor" ]] || mismatch "size $n ($label): fdwatch fds=$fds, floor counted $floor"
    [[ $sum == "$fds" ]] || mismatch "size $n ($label): kinds sum to $sum, fds=$fds"
    for k in regular pipe unix udp netlink; do
        got=$(kind_of "$json" "$k")
        (( got >= s && got <= s + tol )) || mismatch "size $n ($label): kinds.$k=$got, expected $s (+ at most $tol baseline fds)"
    done
    for k in socket_unresolved socket_other udp6; do
        got=$(kind_of "$json" "$k")
        (( got == 0 )) || mismatch "size $n ($label): kinds.$k=$got, expected 0"
    done
    got=$(jq -r '.netlink_protocols.unknown // 0' <<<"$json")
    (( got == s )) || mismatch "size $n ($label): netlink_protocols.unknown=$got, expected $s (unbound netlink named through sockprotoname)"
    printf -- '- correctness (%s): fds=%s (floor %s), kinds %s, netlink_protocols %s\n' \
        "$label" "$fds" "$floor" "$(jq -c .kinds <<<"$json")" "$(jq -c .netlink_protocols <<<"$json")"
}

# ---- run -------------------------------------------------------------------
ALL=$OUT/all.tsv
: >"$ALL"
declare -A RSS RSS1 COUNT_MEAN COUNT_MIN INPROC_ROWS BOUND_RATIO ONESHOT_BOUND
: >"$OUT/inproc.tsv"
REPORT=$OUT/results.md
# Everything below goes to the terminal and to $REPORT (no pipeline: the
# EXIT trap must stay with this shell, so a failure still stops the holder).
exec 3>&1
exec > >(tee "$REPORT")
TEE_PID=$!
printf '# fdwatch census benchmark\n\n'
printf -- '- machine: %s cores, kernel %s, %s, %s GiB RAM\n' "$(nproc)" "$(uname -r)" \
    "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
    "$(awk '/^MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)"
printf -- '- RLIMIT_NOFILE hard %s, sizes: %s (max = hard - %s)\n' "$HARD" "$SIZES" "$MARGIN"
printf -- '- fdwatch %s (commit %s), %s, %s, %s\n' "$("$FDWATCH" --version 2>/dev/null | awk '{print $2}')" \
    "$(git rev-parse --short HEAD)" "$(lsfd --version)" "lsof $(lsof -v 2>&1 | awk '/revision:/ {print $2; exit}')" \
    "$([[ $HAVE_HYPERFINE == 1 ]] && hyperfine --version || echo 'bash date loop')"
printf -- '- %s runs after %s warmup runs per command; times in ms, mean ± σ; each size is one holder process, all commands against it\n' "$RUNS" "$WARMUP"
printf -- '- bound netlink sockets of user space in this netns: %s (NETLINK_NEIGHBOUR=%s)\n' "$user_netlink" "${NETLINK_NEIGHBOUR:-0}"

for n in $SIZES; do
    start_holder "$n"
    P=$HOLDER_PID
    RESULTS=$OUT/size-$n.tsv
    : >"$RESULTS"
    floor_count=$("$FLOOR" "$P")
    log "size $n: holder pid $P, $floor_count fds"

    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    # Correctness first (also warms the dentry caches).
    check_json=$("$FDWATCH" --pid "$P" --count 1 --json --backend proc)
    check_json1=$(FDWATCH_CENSUS_THREADS=1 "$FDWATCH" --pid "$P" --count 1 --json --backend proc)

    bench "fdwatch --backend proc --json (default threads)" "$FDWATCH" --pid "$P" --count 1 --json --backend proc
    BENCH_ENV=FDWATCH_CENSUS_THREADS=1 bench "fdwatch --backend proc --json (FDWATCH_CENSUS_THREADS=1)" "$FDWATCH" --pid "$P" --count 1 --json --backend proc
    RUNS=$FAST_RUNS bench "fdwatch --json --census count" "$FDWATCH" --pid "$P" --count 1 --json --backend proc --census count
    bench "lsfd -p" lsfd -p "$P"
    bench "lsof -p -n -P" lsof -p "$P" -n -P
    bench "ls -l /proc/P/fd" ls -l "/proc/$P/fd"
    bench "floor (getdents64 + readlinkat)" "$FLOOR" "$P"

    # In-process, no exec: a one-shot census and the later samples of a
    # watch (what a watch pays every interval), against the floor in-process.
    # Alternated REPS times (floor, bound, fdwatch 1 thread, fdwatch default
    # threads) and the median of each taken: a VM's minute-to-minute drift
    # moves all of them together instead of whichever ran in a slow minute.
    : >"$OUT/inproc-$n.tsv"
    for rep in $(seq "$REPS"); do
        f=$("$FLOOR" "$P" 50 2>&1 >/dev/null | sed -n 's/.*loops, \(.*\) us\/census/\1/p')
        bound_line=$("$BOUND" "$P" 50 2>&1 >/dev/null)
        b=$(sed -n 's/.*loops, \(.*\) us\/census.*/\1/p' <<<"$bound_line")
        printf 'floor\tC\t%s\nbound\tC\t%s\n' "$f" "$b" >>"$OUT/inproc-$n.tsv"
        FDWATCH_CENSUS_THREADS=1 "$INPROC" "$P" 30 | awk '{printf "%s\t1 thread\t%.1f\n", $1, $4 * 1000}' >>"$OUT/inproc-$n.tsv"
        "$INPROC" "$P" 30 | awk '{printf "%s\tdefault threads\t%.1f\n", $1, $4 * 1000}' >>"$OUT/inproc-$n.tsv"
    done
    bound_calls=$(sed -n 's/.*us\/census (\(.*\))/\1/p' <<<"$bound_line")
    median_us() { # median_us NAME THREADS
        awk -F'\t' -v k="$1" -v t="$2" '$1 == k && $2 == t {print $3}' "$OUT/inproc-$n.tsv" |
            sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
    }
    floor_inproc=$(median_us floor C)
    bound_inproc=$(median_us bound C)
    INPROC_ROWS[$n]=$(
        for t in "1 thread" "default threads"; do
            for k in proc_oneshot proc_oneshot_census proc_count_only proc_watch; do
                awk -v k="$k" -v t="$t" -v us="$(median_us "$k" "$t")" -v fl="$floor_inproc" \
                    'BEGIN {printf "%s\t%s\t%.3f\t%.2f\n", k, t, us / 1000, us / fl}'
            done
        done)
    RSS[$n]=$(peak_rss_kib "")
    RSS1[$n]=$(peak_rss_kib 1)
    full=$(mean_of "fdwatch --backend proc --json (default threads)")
    full1=$(mean_of "fdwatch --backend proc --json (FDWATCH_CENSUS_THREADS=1)")
    floor=$(mean_of "floor (getdents64 + readlinkat)")
    COUNT_MEAN[$n]=$(mean_of "fdwatch --json --census count")
    COUNT_MIN[$n]=$(min_of "fdwatch --json --census count")

    printf '\n## %s fds (holder pid %s: %s fds counted by the floor)\n\n' "$n" "$P" "$floor_count"
    printf '| command | mean ± σ [ms] | min [ms] | ÷ floor | ÷ fdwatch (threads) | ÷ fdwatch (1 thread) |\n'
    printf '|---|---:|---:|---:|---:|---:|\n'
    awk -F'\t' -v fl="$floor" -v fu="$full" -v f1="$full1" '
        {printf "| `%s` | %.2f ± %.2f | %.2f | %.2fx | %.2fx | %.2fx |\n", $1, $2, $3, $4, $2 / fl, $2 / fu, $2 / f1}' "$RESULTS"
    printf '\nRatios are of means. Load average before / after this size: %s / %s\n' "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '\nIn-process, no exec (medians of %s alternated rounds; fdwatch: examples/proc_census_time.rs, mean of 30 per round; floor: scripts/floor.c, mean of 50 loops per round = %s µs):\n\n' "$REPS" "$floor_inproc"
    printf '| census | threads | [ms] | ÷ floor | ÷ bound |\n|---|---|---:|---:|---:|\n'
    awk -v b="$bound_inproc" -v fl="$floor_inproc" -v c="$bound_calls" \
        'BEGIN {printf "| bound (scripts/bound.c: %s, kinds known in advance) | C | %.3f | %.2fx | 1.00x |\n", c, b / 1000, b / fl}'
    awk -F'\t' -v b="$bound_inproc" '
        BEGIN {
            label["proc_oneshot"] = "one-shot sample (every sample from scratch: `--count 1`)"
            label["proc_oneshot_census"] = "one-shot census (that sample'"'"'s fd census alone)"
            label["proc_count_only"] = "the rest of a sample (a count-only sample: identity, limits, file-nr, activity)"
            label["proc_watch"] = "watch (later samples: socket names and devices remembered)"
        }
        {printf "| %s | %s | %s | %sx | %.2fx |\n", label[$1], $2, $3, $4, $3 * 1000 / b}' <<<"${INPROC_ROWS[$n]}"
    BOUND_RATIO[$n]=$(awk -v b="$bound_inproc" -v fl="$floor_inproc" 'BEGIN {printf "%.2f", b / fl}')
    ONESHOT_BOUND[$n]=$(awk -F'\t' -v b="$bound_inproc" '$1 == "proc_oneshot_census" && $2 == "1 thread" {printf "%.2f", $3 * 1000 / b}' <<<"${INPROC_ROWS[$n]}")
    printf '\n'
    sed "s/^/$n\t/" <<<"${INPROC_ROWS[$n]}" >>"$OUT/inproc.tsv"
    printf -- '- peak RSS of a full sample: %s KiB (default threads), %s KiB (1 thread)\n' "${RSS[$n]}" "${RSS1[$n]}"
    check_sample "$n" "default threads" "$check_json" "$floor_count"
    check_sample "$n" "1 thread" "$check_json1" "$floor_count"
    sed "s/^/$n\t/" "$RESULTS" >>"$ALL"
    stop_holder
done

# ---- summary ---------------------------------------------------------------
set -- $SIZES
first=$1; last=${!#}
printf '\n## Targets\n\n'
pf() { if awk "BEGIN {exit !($1)}"; then echo PASS; else echo FAIL; fi; }
for n in $SIZES; do
    r1=$(awk -F'\t' -v n="$n" '$1 == n && $2 ~ /THREADS=1/ {a = $3} $1 == n && $2 ~ /^floor/ {b = $3} END {printf "%.2f", a / b}' "$ALL")
    rt=$(awk -F'\t' -v n="$n" '$1 == n && $2 ~ /default threads/ {a = $3} $1 == n && $2 ~ /^floor/ {b = $3} END {printf "%.2f", a / b}' "$ALL")
    lf=$(awk -F'\t' -v n="$n" '$1 == n && $2 ~ /default threads/ {a = $3} $1 == n && $2 ~ /^lsfd/ {b = $3} END {printf "%.2f", b / a}' "$ALL")
    lo=$(awk -F'\t' -v n="$n" '$1 == n && $2 ~ /default threads/ {a = $3} $1 == n && $2 ~ /^lsof/ {b = $3} END {printf "%.2f", b / a}' "$ALL")
    printf -- '- %s fds: (a) 1-thread census / floor = %sx (target <= 1.2x): %s; threaded census / floor = %sx (target < 1x): %s; context: lsfd / fdwatch = %sx, lsof / fdwatch = %sx (original target >= 10x): %s\n' \
        "$n" "$r1" "$(pf "$r1 <= 1.2")" "$rt" "$(pf "$rt < 1")" "$lf" "$lo" "$(pf "$lf >= 10 && $lo >= 10")"
done
for n in $SIZES; do
    w1=$(awk -F'\t' -v n="$n" '$1 == n && $2 == "proc_watch" && $3 == "1 thread" {print $5}' "$OUT/inproc.tsv")
    o1=$(awk -F'\t' -v n="$n" '$1 == n && $2 == "proc_oneshot" && $3 == "1 thread" {print $5}' "$OUT/inproc.tsv")
    c1=$(awk -F'\t' -v n="$n" '$1 == n && $2 == "proc_oneshot_census" && $3 == "1 thread" {print $5}' "$OUT/inproc.tsv")
    wt=$(awk -F'\t' -v n="$n" '$1 == n && $2 == "proc_watch" && $3 == "default threads" {print $5}' "$OUT/inproc.tsv")
    printf -- '- %s fds in-process: 1-thread one-shot census / floor = %sx (<= 1.2x: %s; the bound is %sx the floor, the census %sx the bound; the whole one-shot sample %sx the floor); 1-thread watch sample / floor = %sx (<= 1.2x: %s); threaded watch sample / floor = %sx (< 1x: %s)\n' \
        "$n" "$c1" "$(pf "$c1 <= 1.2")" "${BOUND_RATIO[$n]}" "${ONESHOT_BOUND[$n]}" "$o1" "$w1" "$(pf "$w1 <= 1.2")" "$wt" "$(pf "$wt < 1")"
done
# Count-only is judged on the minimum of FAST_RUNS runs: the mean of a ~2 ms
# command measures the machine's other load as much as the command.
cmin=$(printf '%s\n' "${COUNT_MIN[@]}" | sort -g | head -n1)
cmax=$(printf '%s\n' "${COUNT_MIN[@]}" | sort -g | tail -n1)
cr=$(awk -v a="$cmax" -v b="$cmin" 'BEGIN {printf "%.2f", a / b}')
printf -- '- (b) count-only (min of %s runs):' "$FAST_RUNS"
for n in $SIZES; do printf ' %s ms at %s fds (mean %s);' "${COUNT_MIN[$n]}" "$n" "${COUNT_MEAN[$n]}"; done
printf ' largest / smallest min = %sx (target: independent of the fd count, <= 1.25x): %s\n' "$cr" "$(pf "$cr <= 1.25")"
printf -- '- (c) peak RSS of a full sample (KiB, default threads / 1 thread):'
for n in $SIZES; do printf ' %s fds: %s / %s;' "$n" "${RSS[$n]}" "${RSS1[$n]}"; done
printf '\n'
prev=
for n in $SIZES; do
    if [[ -n $prev ]]; then
        printf -- '  - %s -> %s fds: %s bytes/fd (default threads), %s bytes/fd (1 thread)\n' "$prev" "$n" \
            "$(awk -v a="${RSS[$n]}" -v b="${RSS[$prev]}" -v d=$((n - prev)) 'BEGIN {printf "%.0f", (a - b) * 1024 / d}')" \
            "$(awk -v a="${RSS1[$n]}" -v b="${RSS1[$prev]}" -v d=$((n - prev)) 'BEGIN {printf "%.0f", (a - b) * 1024 / d}')"
    fi
    prev=$n
done
printf -- '- correctness mismatches: %s\n' "$MISMATCHES"
exec >&3 3>&-
wait "$TEE_PID" 2>/dev/null || true

[[ $MISMATCHES == 0 ]] || { log "MISMATCH: $MISMATCHES correctness check(s) failed"; exit 1; }
