#!/usr/bin/env bash
# `fdwatch serve` under a connection flood: N clients that reconnect as soon
# as they are dropped, plus one normal scraper (a Prometheus-like GET
# /metrics with a 10 s timeout). Prints the scraper's success rate and
# latency percentiles, and what the flood clients got, for each binary given,
# side by side.
#
#   scripts/bench-serve.sh [BIN...]          (default: target/release/fdwatch)
#
# Compare main with this tree:
#   git worktree add /tmp/fdwatch-main main && (cd /tmp/fdwatch-main && cargo build --release)
#   scripts/bench-serve.sh /tmp/fdwatch-main/target/release/fdwatch target/release/fdwatch
#
# Environment: FLOOD (clients, 300), SECS (scrape seconds per scenario, 30),
# EVERY (seconds between scrapes, 0.2), SOURCES (flood source addresses for the
# "other addresses" scenario, 8: 127.0.0.2 ...), PROCS (processes sharing the
# flood clients, 3: one Python process cannot reconnect fast enough alone).
#
# Scenarios, each against a fresh `serve --interval 1s`:
#   idle-same   FLOOD clients connect from 127.0.0.1 (the scraper's address)
#               and send nothing; dropped, they reconnect at once.
#   idle-other  the same from SOURCES other loopback addresses.
#   half-same   FLOOD clients from 127.0.0.1 send half a request head and wait
#               (slowloris); answered or dropped, they reconnect at once.
#   get-same    FLOOD clients GET /metrics back to back from 127.0.0.1.
#   burst200    200 clients GET /metrics at once, again and again (legitimate
#               concurrency: a reset is a failure, a 503 is an answer).
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOD=${FLOOD:-300}
SECS=${SECS:-30}
EVERY=${EVERY:-0.2}
SOURCES=${SOURCES:-8}
PROCS=${PROCS:-3}
if [ $# -eq 0 ]; then
  set -- "${CARGO_TARGET_DIR:-target}/release/fdwatch"
  [ -x "$1" ] || cargo build --release >/dev/null
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

py=$(mktemp /tmp/bench-serve.XXXXXX.py)
serve_out=$(mktemp /tmp/bench-serve.XXXXXX.out)
pids=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
  rm -f "$py" "$py".flood.* "$serve_out" "$serve_out.err"
}
trap cleanup EXIT

cat >"$py" <<'EOF'
import errno, json, selectors, socket, sys, time

IP_BIND_ADDRESS_NO_PORT = 24

def sock(src):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    s.bind((src, 0))
    return s

def status_of(data):
    try:
        return data.split(b" ", 2)[1].decode()
    except Exception:
        return "garbage"

def flood(host, port, n, mode, sources, secs):
    """n clients; each reconnects as soon as its connection ends."""
    sel = selectors.DefaultSelector()
    got = {}
    def count(k):
        got[k] = got.get(k, 0) + 1
    def start(i):
        try:
            s = sock(sources[i % len(sources)])
            s.setblocking(False)
            err = s.connect_ex((host, port))
        except OSError as e:
            count("connect:" + errno.errorcode.get(e.errno, str(e.errno)))
            return
        if err not in (0, errno.EINPROGRESS):
            count("connect:" + errno.errorcode.get(err, str(err)))
            s.close()
            return
        sel.register(s, selectors.EVENT_WRITE, [i, "connecting", b""])
    def end(s, st, what):
        sel.unregister(s)
        s.close()
        count(what)
        start(st[0])
    for i in range(n):
        start(i)
    stop = time.monotonic() + secs
    while time.monotonic() < stop:
        for key, _ in sel.select(0.2):
            s, st = key.fileobj, key.data
            if st[1] == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    end(s, st, "connect:" + errno.errorcode.get(err, str(err)))
                    continue
                if mode != "idle":
                    req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                    if mode == "get":
                        req += b"Connection: close\r\n\r\n"
                    try:
                        s.send(req)
                    except OSError:
                        end(s, st, "reset")
                        continue
                st[1] = "reading"
                sel.modify(s, selectors.EVENT_READ, st)
                continue
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                end(s, st, "reset" + ("" if not st[2] else " after " + status_of(st[2])))
                continue
            except OSError as e:
                end(s, st, errno.errorcode.get(e.errno, "error"))
                continue
            if d:
                if len(st[2]) < 64:
                    st[2] += d[:64]
                continue
            end(s, st, status_of(st[2]) if st[2] else "closed without answer")
        # Clients whose connect failed outright are restarted here.
        if len(sel.get_map()) < n:
            live = {k.data[0] for k in sel.get_map().values()}
            for i in range(n):
                if i not in live:
                    start(i)
            time.sleep(0.01)
    print(json.dumps(got))

def total(files):
    """The flood processes' outcomes, added up."""
    got = {}
    for f in files:
        for k, v in json.load(open(f)).items():
            got[k] = got.get(k, 0) + v
    n = sum(got.values())
    print("    flood: %d connections ended: %s" % (n, ", ".join(
        "%s %d" % (k, v) for k, v in sorted(got.items(), key=lambda kv: -kv[1]))))

def burst(host, port, n, secs):
    """n clients GET /metrics at the same moment, round after round."""
    got = {}
    stop = time.monotonic() + secs
    while time.monotonic() < stop:
        socks = []
        for i in range(n):
            s = sock("127.0.0.1")
            s.settimeout(10)
            try:
                s.connect((host, port))
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                socks.append(s)
            except OSError as e:
                got["connect:" + type(e).__name__] = got.get("connect:" + type(e).__name__, 0) + 1
                s.close()
        for s in socks:
            data = b""
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    data += d
                k = status_of(data) if data else "closed without answer"
            except ConnectionResetError:
                k = "reset"
            except OSError as e:
                k = type(e).__name__
            got[k] = got.get(k, 0) + 1
            s.close()
    total = sum(got.values())
    print("    burst of %d: %d requests: %s" % (n, total, ", ".join(
        "%s %d (%.1f%%)" % (k, v, 100.0 * v / total) for k, v in sorted(got.items(), key=lambda kv: -kv[1]))))

def scrape(host, port, secs, every):
    """A Prometheus-like scraper: GET /metrics, 10 s timeout, a complete 200 is a success."""
    res = []
    stop = time.monotonic() + secs
    while time.monotonic() < stop:
        t0 = time.monotonic()
        why = "ok"
        try:
            s = socket.create_connection((host, port), timeout=10, source_address=("127.0.0.1", 0))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while time.monotonic() - t0 < 10:
                d = s.recv(65536)
                if not d:
                    break
                data += d
            s.close()
            head, _, body = data.partition(b"\r\n\r\n")
            code = status_of(head) if head else "closed without answer"
            length = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            if code != "200":
                why = code
            elif not length or int(length[0].split(b":")[1]) != len(body):
                why = "short body"
        except ConnectionResetError:
            why = "reset"
        except socket.timeout:
            why = "timeout"
        except OSError as e:
            why = type(e).__name__
        dt = time.monotonic() - t0
        res.append((why, dt))
        time.sleep(max(0.0, every - dt))
    ok = sorted(dt for why, dt in res if why == "ok")
    bad = {}
    for why, _ in res:
        if why != "ok":
            bad[why] = bad.get(why, 0) + 1
    def pct(p):
        return 1000 * ok[min(len(ok) - 1, int(p * len(ok)))] if ok else float("nan")
    print("    scraper: %d/%d ok (%.1f%%)  latency ms p50 %.1f p90 %.1f p99 %.1f max %.1f%s" % (
        len(ok), len(res), 100.0 * len(ok) / max(1, len(res)), pct(0.5), pct(0.9), pct(0.99),
        1000 * ok[-1] if ok else float("nan"),
        ("  failures: " + ", ".join("%s %d" % kv for kv in bad.items())) if bad else ""))

cmd = sys.argv[1]
if cmd == "total":
    total(sys.argv[2:])
    sys.exit(0)
host, port = sys.argv[2], int(sys.argv[3])
if cmd == "flood":
    flood(host, port, int(sys.argv[4]), sys.argv[5], sys.argv[6].split(","), float(sys.argv[7]))
elif cmd == "burst":
    burst(host, port, int(sys.argv[4]), float(sys.argv[5]))
else:
    scrape(host, port, float(sys.argv[4]), float(sys.argv[5]))
EOF

others=$(seq -s, -f '127.0.0.%g' 2 $((SOURCES + 1)))

start_serve() { # BIN -> sets port
  "$1" serve --listen 127.0.0.1:0 --interval 1s >"$serve_out" 2>"$serve_out.err" &
  serve_pid=$!
  pids+=("$serve_pid")
  for _ in $(seq 100); do
    grep -q '^listening on' "$serve_out" 2>/dev/null && break
    sleep 0.1
  done
  port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)/metrics|\1|p' "$serve_out")
  [ -n "$port" ] || { echo "serve did not start: $(cat "$serve_out.err")" >&2; exit 1; }
  sleep 1.5 # first refresh
}

stop_serve() {
  kill "$serve_pid" 2>/dev/null || true
  wait "$serve_pid" 2>/dev/null || true
}

scenario() { # BIN NAME
  local bin=$1 name=$2
  start_serve "$bin"
  echo "  $name"
  local load=() each=$(((FLOOD + PROCS - 1) / PROCS)) _
  if [ "$name" = burst200 ]; then
    python3 "$py" burst 127.0.0.1 "$port" 200 $((SECS + 1)) &
    load+=($!)
  else
    local mode=${name%-*} from=127.0.0.1
    [ "${name#*-}" = other ] && from=$others
    for i in $(seq "$PROCS"); do
      python3 "$py" flood 127.0.0.1 "$port" "$each" "$mode" "$from" $((SECS + 3)) >"$py.flood.$i" &
      load+=($!)
    done
  fi
  sleep 2
  python3 "$py" scrape 127.0.0.1 "$port" "$SECS" "$EVERY"
  wait "${load[@]}" || true
  if [ "$name" != burst200 ]; then
    python3 "$py" total "$py".flood.*
    rm -f "$py".flood.*
  fi
  stop_serve
}

echo "# $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
echo "# FLOOD=$FLOOD SECS=$SECS EVERY=$EVERY SOURCES=$SOURCES"
for bin in "$@"; do
  echo "== $bin ($("$bin" --version 2>/dev/null || echo '?'))"
  for s in idle-same idle-other half-same get-same burst200; do
    scenario "$bin" "$s"
  done
done
