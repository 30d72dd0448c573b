#!/usr/bin/env bash
# Broadcasts: planning a broadcast to many subscribers, and sending it with
# every gate check on, against the plain reply dispatcher measured in the
# same run on the same database.
#
#   deploy/bench/broadcast.sh      # BENCH_RECIPIENTS (1,000,000), BENCH_SECONDS (20),
#                                  # BENCH_DISPATCH_WORKERS (4), BENCH_ROUNDS (2)
#
# 1. builds keyward (release) and starts it on its private PostgreSQL
#    (fsync and synchronous_commit on), dispatch off;
# 2. seeds BENCH_RECIPIENTS subscribed numbers of one program;
# 3. plans a marketing broadcast to all of them with
#    `keyward broadcast create` (templates, lint, the gate for every
#    recipient, one short recipient row each) and prints recipients per second
#    with the CPU each costs PostgreSQL and keyward;
# 4. baseline: queues 200,000 plain replies and lets `keyward dispatch`
#    send them through the generic sender to a local sink
#    (deploy/bench/sink.py) for BENCH_SECONDS: replies per second;
# 5. the same dispatcher, the same time, on the broadcast's recipients
#    (each claimed under its number's lock, asked the gate again, and made
#    an outbox row): messages per second, and the ratio to the baseline;
#    4 and 5 alternate for BENCH_ROUNDS (2) rounds.
# Loopback only, bounded in time; every process it starts is stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH=deploy/bench
. $BENCH/common.sh
N=${BENCH_RECIPIENTS:-1000000}
SECS=${BENCH_SECONDS:-20}
WORKERS=${BENCH_DISPATCH_WORKERS:-4}

require_tools python3 curl
PGBIN=$(pg_bin)

WORK=$(mktemp -d /tmp/keyward-broadcast-XXXXXX)
chmod 755 "$WORK"
SERVE="" SINK="" DISPATCH=""
cleanup() {
    for pid in $DISPATCH $SINK; do kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    [ -n "$SERVE" ] && kill -INT "$SERVE" 2>/dev/null && wait "$SERVE" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "building keyward (release)…"
cargo build --release --quiet --bin keyward
APP_PORT=$(free_port)
SINK_PORT=$(free_port)
URL="http://127.0.0.1:$APP_PORT"
# The window is the whole day and the cap far away: every recipient is
# sent now, so the run measures the gate's work, not its waiting.
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
timezone = "Asia/Jakarta"
[programs.sending]
window = "00:00-23:59"
max_messages = 30
min_gap_hours = 0
[gateways.generic]
secret = "bench-secret-0123456789"
reply_url = "http://127.0.0.1:$SINK_PORT/sms"
[dispatch]
workers = 0
batch_size = 64
TOML
RUST_LOG=warn KEYWARD_CONFIG="$WORK/keyward.toml" target/release/keyward serve > "$WORK/serve.log" 2>&1 &
SERVE=$!
wait_ready "$URL" "$WORK/serve.log"
SOCKET=$(head -1 "$WORK/data/POSTGRES_LOCATION" 2>/dev/null || true)
[ -n "$SOCKET" ] || SOCKET="$WORK/data/postgres"
PSQL=("$PGBIN/psql" -qtA -h "$SOCKET" -p 5432 -U keyward -d postgres)
DB="host=$SOCKET port=5432 user=keyward dbname=postgres"
POSTMASTER=$(head -1 "$SOCKET/pgdata/postmaster.pid")
settle() { "${PSQL[@]}" -c "VACUUM (ANALYZE)" -c "CHECKPOINT"; }

echo "seeding $N subscribers…"
"${PSQL[@]}" -c "
    INSERT INTO subscribers (msisdn) SELECT '+62812' || lpad(g::text, 7, '0') FROM generate_series(0, $N - 1) g;
    INSERT INTO subscription_events (msisdn, program, from_state, to_state, cause, actor, effective_at)
    SELECT msisdn, 'promo', 'none', 'subscribed', 'system', 'benchmark seed', now() - interval '60 days' FROM subscribers;
    INSERT INTO subscriptions (msisdn, program, state, since, event_id)
    SELECT msisdn, program, to_state, effective_at, id FROM subscription_events;"
settle

cat > "$WORK/promo.json" <<JSON
{"program": "promo", "kind": "marketing",
 "text": {"id": "Toko Maju: diskon 20% untuk semua sepatu sampai Minggu."},
 "valid_until": "$(date -u -d '+2 days' +%Y-%m-%dT%H:%M:%SZ)"}
JSON
echo "planning a broadcast to $N subscribers…"
cpu_pg0=$(cpu_seconds "$POSTMASTER"); t0=$(date +%s.%N)
TIMEFORMAT='%U %S'
{ time RUST_LOG=warn DATABASE_URL="$DB" target/release/keyward --config "$WORK/keyward.toml" \
    broadcast create "$WORK/promo.json" > "$WORK/plan.json" 2> "$WORK/plan.log"; } 2> "$WORK/plan.cpu"
t1=$(date +%s.%N); cpu_pg1=$(cpu_seconds "$POSTMASTER")
cpu_kw=$(awk '{print $1 + $2}' "$WORK/plan.cpu")
PLANNED=$(python3 -c "import json; p=json.load(open('$WORK/plan.json')); print(p['recipients'], p['to_send'])")
read -r recipients to_send <<< "$PLANNED"
PLAN_LINE=$(python3 -c "
n, secs = $recipients, $t1 - $t0
print(f'{n / secs:,.0f} recipients/s ({n:,} planned in {secs:.1f} s, {$to_send:,} to send now); '
      f'CPU per recipient: PostgreSQL {($cpu_pg1 - $cpu_pg0) / n * 1e6:.1f} µs, keyward {$cpu_kw / n * 1e6:.1f} µs')")
echo "  $PLAN_LINE"

python3 $BENCH/sink.py "$SINK_PORT" "$WORK/sink.count" & SINK=$!
sed -e "s|^workers = 0|workers = $WORKERS|" "$WORK/keyward.toml" > "$WORK/dispatch.toml"
run_dispatch() { # label where: runs `keyward dispatch` for SECS, adds to SENT/SECS_RUN/CPU_*[label]
    local label=$1 where=$2 before after cpu_pg0 cpu_pg1 cpu_kw t0 t1
    settle
    before=$("${PSQL[@]}" -c "SELECT count(*) FROM outbox WHERE status = 'sent' AND $where")
    cpu_pg0=$(cpu_seconds "$POSTMASTER"); t0=$(date +%s.%N)
    RUST_LOG=warn KEYWARD_CONFIG="$WORK/dispatch.toml" DATABASE_URL="$DB" \
        target/release/keyward dispatch > "$WORK/dispatch-$label.log" 2>&1 & DISPATCH=$!
    sleep "$SECS"
    cpu_kw=$(cpu_seconds "$DISPATCH")
    kill -INT "$DISPATCH"; wait "$DISPATCH" || true; DISPATCH=""
    t1=$(date +%s.%N); cpu_pg1=$(cpu_seconds "$POSTMASTER")
    after=$("${PSQL[@]}" -c "SELECT count(*) FROM outbox WHERE status = 'sent' AND $where")
    SENT[$label]=$(( ${SENT[$label]:-0} + after - before ))
    SECS_RUN[$label]=$(python3 -c "print(${SECS_RUN[$label]:-0} + $t1 - $t0)")
    CPU_KW[$label]=$(python3 -c "print(${CPU_KW[$label]:-0} + $cpu_kw)")
    CPU_PG[$label]=$(python3 -c "print(${CPU_PG[$label]:-0} + $cpu_pg1 - $cpu_pg0)")
    echo "  $label: $((after - before)) sent in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"
}
line() { # label: the rate and CPU per message over every round
    local label=$1
    python3 -c "
n, secs, kw, pg = ${SENT[$label]}, ${SECS_RUN[$label]}, ${CPU_KW[$label]}, ${CPU_PG[$label]}
print(f'{n / secs:,.0f}/s ({n:,} sent in {secs:.1f} s); CPU per message: '
      f'keyward {kw / n * 1e6:.0f} µs, PostgreSQL {pg / n * 1e6:.0f} µs' if n else 'nothing sent')"
}
declare -A SENT SECS_RUN CPU_KW CPU_PG

# Rounds alternate the two, so that a change in the machine's load (it is
# shared) weighs on both alike: replies (the broadcast paused), then the
# broadcast (the replies left over cancelled).
ROUNDS=${BENCH_ROUNDS:-2}
BROADCAST=$(python3 -c "import json; print(json.load(open('$WORK/plan.json'))['id'])")
for round in $(seq "$ROUNDS"); do
    "${PSQL[@]}" -c "UPDATE broadcasts SET status = 'paused' WHERE id = $BROADCAST"
    "${PSQL[@]}" -c "
        INSERT INTO outbox (msisdn, shortcode, text, sender, kind, program)
        SELECT msisdn, '3344', 'Toko Maju: terima kasih. Balas UNSUBSCRIBE ke 3344 untuk berhenti.',
               'generic', 'help', 'promo'
          FROM subscribers LIMIT 200000;"
    echo "round $round: keyward dispatch ($WORKERS workers) on plain replies, ${SECS}s…"
    run_dispatch replies "broadcast_id IS NULL"
    "${PSQL[@]}" -c "UPDATE outbox SET status = 'cancelled' WHERE status = 'queued'"
    "${PSQL[@]}" -c "UPDATE broadcasts SET status = 'active' WHERE id = $BROADCAST"
    echo "round $round: keyward dispatch ($WORKERS workers) on the broadcast, gate on, ${SECS}s…"
    run_dispatch broadcast "broadcast_id IS NOT NULL"
done

kill -TERM "$SINK"; wait "$SINK" || true; SINK=""
echo
echo "planning:  $PLAN_LINE"
echo "replies:   $(line replies)"
echo "broadcast: $(line broadcast)"
python3 -c "
b = ${SENT[broadcast]} / ${SECS_RUN[broadcast]}
r = ${SENT[replies]} / ${SECS_RUN[replies]}
print(f'broadcast / plain reply dispatcher: {b / r:.2f} ($ROUNDS rounds each, alternated)' if r else 'no baseline')"
