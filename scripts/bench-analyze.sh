#!/usr/bin/env bash
# Benchmark `fdwatch analyze` on large inputs: time, throughput and peak RSS
# (/usr/bin/time -v), next to `wc -l` on the same file (the floor: reading
# the bytes once). Targets (docs/performance.md): peak RSS under 100 MB
# whatever the input size, at least 1 M rows/s.
#
#   scripts/bench-analyze.sh            # 10 M-row CSV, ~200 MB JSON Lines
#   ROWS=1000000 JSONL_MB=20 scripts/bench-analyze.sh   # smaller
#
# Inputs are generated in $BENCH_DIR (default target/bench-analyze) and kept
# for reruns; the JSON Lines recording is built from one real sample line of
# `fdwatch --pid $$ --json --count 1`, varied (times, counts, kinds).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-10000000}
JSONL_MB=${JSONL_MB:-200}
BENCH_DIR=${BENCH_DIR:-target/bench-analyze}
mkdir -p "$BENCH_DIR"

if [ ! -x /usr/bin/time ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time
fi
cargo build --release --quiet
FDWATCH=${CARGO_TARGET_DIR:-target}/release/fdwatch

csv="$BENCH_DIR/rows-$ROWS.csv"
if [ ! -s "$csv" ]; then
  # A slow leak with noise, one row every 10 s, the limit far away: OK throughout.
  awk -v n="$ROWS" 'BEGIN {
    print "unix_time,fds,soft_limit";
    for (i = 0; i < n; i++) printf "%d,%d,1048576\n", 1700000000 + 10 * i, 100 + int(i / 1000) + (i * 7919) % 13;
  }' >"$csv"
fi

jsonl="$BENCH_DIR/recording-${JSONL_MB}MB.jsonl"
if [ ! -s "$jsonl" ]; then
  line=$("$FDWATCH" --pid $$ --json --count 1)
  LINE="$line" MB="$JSONL_MB" python3 - "$jsonl" <<'EOF'
import json, os, sys
base = json.loads(os.environ["LINE"])
target = int(os.environ["MB"]) << 20
t0, m0 = base["unix_time"], base["mono_time"]
size, i = 0, 0
with open(sys.argv[1], "w") as out:
    while size < target:
        s = dict(base)
        s["unix_time"] = t0 + i
        s["mono_time"] = m0 + i
        extra = i // 100 + (i * 7919) % 5
        kinds = dict(base.get("kinds") or {})
        kinds["regular"] = kinds.get("regular", 0) + extra
        s["kinds"] = kinds
        s["fds"] = base["fds"] + extra
        text = json.dumps(s, separators=(",", ":")) + "\n"
        out.write(text)
        size += len(text)
        i += 1
EOF
fi

# One run: seconds and peak RSS (KiB) of CMD, from /usr/bin/time -v.
measure() {
  local log
  log=$(mktemp)
  /usr/bin/time -v "$@" >/dev/null 2>"$log" || true
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  # m:ss.cc or h:mm:ss -> seconds
  wall=$(awk -v w="$wall" 'BEGIN { n = split(w, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }')
  tail -n 3 "$log" | grep -q "Exit status: [0-3]$" || { echo "failed: $*" >&2; grep -v "^\s" "$log" >&2; }
  rm -f "$log"
  echo "$wall $rss"
}

echo "fdwatch analyze benchmark: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-34s %10s %9s %9s %12s %10s %10s\n' input rows MB seconds rows/s "peak RSS" "wc -l s"
for f in "$csv" "$jsonl"; do
  rows=$(wc -l <"$f")
  mb=$(( $(stat -c %s "$f") >> 20 ))
  read -r wc_s _ < <(measure wc -l "$f")
  read -r s rss < <(measure "$FDWATCH" analyze "$f")
  rate=$(awk -v r="$rows" -v s="$s" 'BEGIN { printf "%.0f", (s > 0 ? r / s : 0) }')
  printf '%-34s %10d %9d %9.2f %12s %7d MB %10.2f\n' "$(basename "$f")" "$rows" "$mb" "$s" "$rate" $((rss / 1024)) "$wc_s"
done
read -r s rss < <(measure timeout 20 "$FDWATCH" analyze /dev/zero)
printf '%-34s %10s %9s %9.2f %12s %7d MB\n' "/dev/zero" - - "$s" - $((rss / 1024))
