#!/usr/bin/env bash
# Replies per second through the generic sender to a local sink.
#
#   deploy/bench/dispatch.sh [replies] [workers]
#
# Builds keyward in release mode, starts it on a private PostgreSQL with
# fsync on, fills the outbox with N replies in one statement, and times how
# long the dispatcher takes to send them all to a local sink. Loopback only;
# every process it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-20000}
WORKERS=${2:-4}
WORK=$(mktemp -d /tmp/keyward-bench-XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release --quiet --bin keyward --example sink
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK_PORT=$(port)
APP_PORT=$(port)

target/release/examples/sink "127.0.0.1:$SINK_PORT" & PIDS+=($!)
cat > "$WORK/keyward.toml" <<TOML
listen = "127.0.0.1:$APP_PORT"
data_dir = "$WORK/data"
[[shortcodes]]
code = "3344"
program = "promo"
reply_via = "generic"
[[programs]]
name = "promo"
brand = "Toko Maju"
frequency = { id = "2-4 SMS per bulan" }
[gateways.generic]
secret = "bench-secret-0123456789"
reply_url = "http://127.0.0.1:$SINK_PORT/sms"
[dispatch]
workers = 0
TOML
# Start once with no workers to create and migrate the database.
KEYWARD_CONFIG="$WORK/keyward.toml" target/release/keyward serve > "$WORK/serve.log" 2>&1 & SERVE=$!
PIDS+=($SERVE)
for _ in $(seq 100); do curl -sf "127.0.0.1:$APP_PORT/readyz" >/dev/null && break; sleep 0.2; done
SOCKET_DIR=$(grep -o '"dir":"[^"]*"' "$WORK/serve.log" | head -1 | cut -d'"' -f4)
PSQL=(psql -qtA -h "$SOCKET_DIR" -p 5432 -U keyward -d postgres)
"${PSQL[@]}" -c "INSERT INTO outbox (msisdn, shortcode, text, sender, kind, program)
    SELECT '+62812' || lpad(g::text, 7, '0'), '3344',
           'Toko Maju: Anda berlangganan promo (2-4 SMS per bulan). Balas UNSUBSCRIBE ke 3344.',
           'generic', 'welcome', 'promo'
      FROM generate_series(1, $N) g"
kill -INT $SERVE; wait $SERVE || true

sed -i "s/^workers = 0/workers = $WORKERS/" "$WORK/keyward.toml"
START=$(date +%s.%N)
KEYWARD_CONFIG="$WORK/keyward.toml" target/release/keyward serve >> "$WORK/serve.log" 2>&1 & SERVE=$!
PIDS+=($SERVE)
for _ in $(seq 100); do curl -sf "127.0.0.1:$APP_PORT/readyz" >/dev/null && break; sleep 0.05; done
while :; do
    LEFT=$("${PSQL[@]}" -c "SELECT count(*) FROM outbox WHERE status IN ('queued', 'sending')")
    [ "$LEFT" = "0" ] && break
    sleep 0.1
done
END=$(date +%s.%N)
SENT=$("${PSQL[@]}" -c "SELECT count(*) FROM outbox WHERE status = 'sent'")
python3 - "$START" "$END" "$SENT" "$N" "$WORKERS" <<'PY'
import sys
start, end, sent, n, workers = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
secs = end - start
print(f"dispatcher: {sent}/{n} replies sent in {secs:.2f} s with {workers} workers "
      f"= {sent / secs:.0f} replies/s (generic sender, local sink, fsync on, includes start-up)")
PY
kill -INT $SERVE; wait $SERVE || true
