# Helpers the benchmark scripts share (sourced, not run).

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# CPU seconds used so far by the processes and their children (live and reaped).
cpu_seconds() { # pid...
    local total=0 pid p
    for pid in "$@"; do
        for p in $pid $(pgrep -P "$pid" || true); do
            [ -r /proc/$p/stat ] || continue
            # utime stime cutime cstime are fields 14-17 (after the comm field).
            total=$((total + $(sed 's/^.*) //' /proc/$p/stat | awk '{print $12 + $13 + $14 + $15}')))
        done
    done
    python3 -c "print($total / $(getconf CLK_TCK))"
}
