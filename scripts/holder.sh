# Sourced by the census benchmarks: one holder process with N fds in five
# equal shares (regular files, pipes, unix socketpairs, unbound UDP, unbound
# netlink), fed a FIFO as stdin so that closing it ends the holder.
# Needs FDWATCH, OUT and a `log` function; sets HOLDER_PID.

HOLDER_PID=
HOLDER_W=
FIFO=$OUT/holder.stdin

stop_holder() {
    if [[ -n $HOLDER_W ]]; then exec {HOLDER_W}>&-; HOLDER_W=; fi # stdin EOF: it exits
    if [[ -n $HOLDER_PID ]]; then
        for _ in $(seq 50); do kill -0 "$HOLDER_PID" 2>/dev/null || break; sleep 0.1; done
        kill "$HOLDER_PID" 2>/dev/null || true
        wait "$HOLDER_PID" 2>/dev/null || true
        HOLDER_PID=
    fi
    rm -f "$FIFO"
}
trap stop_holder EXIT
trap 'exit 130' INT TERM

start_holder() { # start_holder N
    local s=$(( $1 / 5 ))
    rm -f "$FIFO"
    mkfifo "$FIFO"
    "$FDWATCH" workload --hold "file:$s" --hold "pipe:$((s / 2))" --hold "socketpair:$((s / 2))" \
        --hold "udp-unbound:$s" --hold "netlink-unbound:$s" \
        <"$FIFO" >"$OUT/holder.out" 2>"$OUT/holder.err" &
    HOLDER_PID=$!
    exec {HOLDER_W}>"$FIFO"
    for _ in $(seq 300); do
        grep -q '^ready ' "$OUT/holder.out" && break
        kill -0 "$HOLDER_PID" 2>/dev/null || { cat "$OUT/holder.err" >&2; log "holder died"; exit 1; }
        sleep 0.1
    done
    local ready
    ready=$(awk '/^ready /{print $2}' "$OUT/holder.out")
    [[ $ready == "$HOLDER_PID" ]] || { log "holder not ready (got '$ready', want $HOLDER_PID)"; exit 1; }
}
