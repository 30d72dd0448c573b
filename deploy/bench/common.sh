# Helpers the benchmark scripts share (sourced, not run).

# Stops the script when one of these commands is missing, saying what to install.
require_tools() { # command...
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install $*" >&2; exit 1; }
    done
}

# The PostgreSQL server's bin directory (initdb, pgbench, psql of the server).
pg_bin() {
    dirname "$(readlink -f "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")"
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# CPU seconds used so far by the processes and their children (live and reaped).
cpu_seconds() { # pid...
    local total=0 pid p
    for pid in "$@"; do
        for p in $pid $(pgrep -P "$pid" || true); do
            # utime stime cutime cstime are fields 14-17 (after the comm
            # field); a child may exit between pgrep and the read.
            local ticks
            ticks=$(sed 's/^.*) //' /proc/$p/stat 2>/dev/null | awk '{print $12 + $13 + $14 + $15}') || true
            [ -n "$ticks" ] || continue
            total=$((total + ticks))
        done
    done
    python3 -c "print($total / $(getconf CLK_TCK))"
}

# keyward's configuration for the inbound benchmarks: one program on 3344
# (and the number Twilio addresses), the generic and Twilio gateways, no
# flood limit, no dispatcher (replies stay queued), and the [database]
# settings BENCH_POOL and BENCH_MAX_BATCH, with batch_writers = writers.
bench_config() { # file port data-dir generic-secret twilio-token [writers]
    local url="http://127.0.0.1:$2"
    cat > "$1" <<TOML
listen = "127.0.0.1:$2"
data_dir = "$3"
[service]
public_url = "$url"
max_messages_per_number_per_minute = 0
[[shortcodes]]
code = "3344"
program = "promo"
reply_via = "generic"
[[shortcodes]]          # the number Twilio addresses messages to
code = "+6281100003344"
program = "promo"
reply_via = "generic"
[[programs]]
name = "promo"
brand = "Toko Maju"
frequency = { id = "2-4 SMS per bulan", en = "2-4 msgs/month", ru = "2-4 SMS в месяц" }
[gateways.generic]
secret = "$4"
reply_url = "http://127.0.0.1:9/unused"
[gateways.twilio]
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token = "$5"
[dispatch]
workers = 0   # replies stay queued: this measures the inbound path alone
TOML
    {
        echo "[database]"
        [ -z "${BENCH_POOL:-}" ] || echo "pool_size = $BENCH_POOL"
        [ -z "${6:-}" ] || echo "batch_writers = $6"
        [ -z "${BENCH_MAX_BATCH:-}" ] || echo "max_batch = $BENCH_MAX_BATCH"
    } >> "$1"
}

# Waits up to a minute for keyward at url to be ready; shows its log if not.
wait_ready() { # url log
    for _ in $(seq 300); do curl -sf "$1/readyz" >/dev/null && return; sleep 0.2; done
    cat "$2"
    return 1
}
