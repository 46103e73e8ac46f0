#!/usr/bin/env bash
# Record the demo leak to EMFILE, analyse the recording and draw it.
#
#   scripts/plot-demo.sh            # from the repo root; about a minute
#
# Starts `fdwatch workload --soft-limit 512 --hold file:6 --leak netlink:8`,
# watches it with `fdwatch --record` (1 s interval) until the workload reports
# EMFILE (plus a few seconds), then runs
#   fdwatch analyze REC --warn-eta 45s --crit-eta 20s --plot docs/demo-plot.svg
# (the demo's thresholds, scaled to a one-minute leak) and renders
# docs/demo-plot.png with rsvg-convert (Debian's librsvg2-bin) or ImageMagick.
#
# Knobs (environment): FDWATCH (default: target/release/fdwatch, built if
# missing), OUT (target/plot-demo: the recording and the text report),
# NO_INSTALL=1 to never apt-get a PNG renderer.
set -euo pipefail

ROOT=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
cd "$ROOT"
[[ -f Cargo.toml && -d src/input ]] || { echo "run from the fdwatch repo root" >&2; exit 2; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
FDWATCH=${FDWATCH:-$CARGO_TARGET_DIR/release/fdwatch}
OUT=${OUT:-$CARGO_TARGET_DIR/plot-demo}
mkdir -p "$OUT" docs
[[ -x $FDWATCH ]] || cargo build --release --quiet
REC=$OUT/recording.jsonl
rm -f "$REC"

if ! command -v rsvg-convert >/dev/null && ! { command -v convert >/dev/null && convert -version 2>/dev/null | grep -q ImageMagick; }; then
  if [[ ${NO_INSTALL:-} != 1 && $(id -u) == 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq librsvg2-bin >/dev/null
  fi
fi

WL_OUT=$OUT/workload.out
"$FDWATCH" workload --ignore-stdin --soft-limit 512 --hold file:6 --leak netlink:8 >"$WL_OUT" 2>/dev/null &
WL=$!
WATCH=
cleanup() {
  [[ -n $WATCH ]] && kill "$WATCH" 2>/dev/null || true
  kill "$WL" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 100); do grep -q '^ready ' "$WL_OUT" && break; sleep 0.1; done
PID=$(sed -n 's/^ready \([0-9]*\)$/\1/p' "$WL_OUT")
[[ -n $PID ]] || { echo "plot-demo: the workload did not start" >&2; exit 1; }
echo "plot-demo: workload pid $PID leaks 8 netlink ROUTE sockets/s under a soft limit of 512; recording to $REC" >&2

"$FDWATCH" --pid "$PID" --interval 1s --duration 150s --plain --record "$REC" >/dev/null &
WATCH=$!
for _ in $(seq 1500); do grep -q '^emfile' "$WL_OUT" && break; sleep 0.1; done
grep -q '^emfile' "$WL_OUT" || { echo "plot-demo: the workload never hit EMFILE" >&2; exit 1; }
echo "plot-demo: the workload hit EMFILE; 4 more seconds" >&2
sleep 4
kill -INT "$WATCH"
wait "$WATCH" || true
WATCH=

code=0
"$FDWATCH" analyze "$REC" --warn-eta 45s --crit-eta 20s --plot docs/demo-plot.svg | tee "$OUT/analyze.txt" || code=$?
echo "plot-demo: analyze exited $code; wrote docs/demo-plot.svg" >&2

if command -v rsvg-convert >/dev/null; then
  rsvg-convert --background-color white -o docs/demo-plot.png docs/demo-plot.svg
else
  convert -background white docs/demo-plot.svg docs/demo-plot.png
fi
echo "plot-demo: wrote docs/demo-plot.png" >&2
