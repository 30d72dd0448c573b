#!/usr/bin/env bash
# Two keyward instances against one PostgreSQL beside one instance, in one
# run, with deploy/bench/run.sh's machinery (release build, durable
# private PostgreSQL, seeded numbers, pre-signed generic webhooks, wrk).
#
#   deploy/cluster/bench.sh     # BENCH_SECONDS (20) per measurement, BENCH_ROUNDS (2)
#
# Each round measures, each after a VACUUM and a CHECKPOINT: one instance
# at 64 connections, then two instances at 32 connections each (64 in
# all), and prints requests/s (2xx) and two/one. Each instance has the
# default pool (8 per core, 16 here), so two instances hold twice the
# PostgreSQL connections; a third measurement, one instance with a pool as
# large as both together, tells what the second process adds beyond them. Loopback only, bounded in time; every process
# it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH=deploy/bench
. $BENCH/common.sh
SECS=${BENCH_SECONDS:-20}
ROUNDS=${BENCH_ROUNDS:-2}
SECRET=bench-secret-0123456789
require_tools wrk python3 curl
PGBIN=$(pg_bin)

WORK=$(mktemp -d /tmp/keyward-bench2-XXXXXX)
chmod 755 "$WORK"
PIDS=""
cleanup() {
    set +e
    for pid in $PIDS; do kill -INT "$pid" 2>/dev/null; done
    # The first instance runs the private PostgreSQL: stop it last.
    for pid in $PIDS; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "building keyward (release)…"
cargo build --release --quiet --bin keyward
# run.sh's configuration, one data dir each (only A's holds the cluster).
config() { # name port
    bench_config "$WORK/$1.toml" "$2" "$WORK/data-$1" "$SECRET" unused-twilio-token
}
PORT_A=$(free_port) PORT_B=$(free_port) PORT_C=$(free_port)
config a "$PORT_A"; config b "$PORT_B"
BENCH_POOL=32 config c "$PORT_C"
# A runs the private PostgreSQL (production settings, as in run.sh).
RUST_LOG=warn KEYWARD_SERVICE__INSTANCE=a KEYWARD_CONFIG="$WORK/a.toml" target/release/keyward serve > "$WORK/a.log" 2>&1 &
SERVE_A=$!; PIDS="$SERVE_A"
wait_ready "http://127.0.0.1:$PORT_A" "$WORK/a.log"
SOCKET=$(head -1 "$WORK/data-a/POSTGRES_LOCATION" 2>/dev/null || true)
[ -n "$SOCKET" ] || SOCKET="$WORK/data-a/postgres"
# B shares A's database, as a second machine would.
RUST_LOG=warn KEYWARD_SERVICE__INSTANCE=b KEYWARD_CONFIG="$WORK/b.toml" DATABASE_URL="host=$SOCKET port=5432 user=keyward dbname=postgres" \
    target/release/keyward serve > "$WORK/b.log" 2>&1 &
SERVE_B=$!; PIDS="$SERVE_B $SERVE_A"
wait_ready "http://127.0.0.1:$PORT_B" "$WORK/b.log"
RUST_LOG=warn KEYWARD_SERVICE__INSTANCE=c KEYWARD_CONFIG="$WORK/c.toml" DATABASE_URL="host=$SOCKET port=5432 user=keyward dbname=postgres" \
    target/release/keyward serve > "$WORK/c.log" 2>&1 &
PIDS="$! $PIDS"
wait_ready "http://127.0.0.1:$PORT_C" "$WORK/c.log"
PSQL=("$PGBIN/psql" -qtA -h "$SOCKET" -p 5432 -U keyward -d postgres)
settle() { "${PSQL[@]}" -c "VACUUM (ANALYZE)" -c "CHECKPOINT"; }
. deploy/bench/mix.sh
"${PSQL[@]}" -c "$SEED_SQL"
echo "fsync=$("${PSQL[@]}" -c 'SHOW fsync') synchronous_commit=$("${PSQL[@]}" -c 'SHOW synchronous_commit')"

signed() { # port out-file  (pre-signed requests, made before any load starts)
    python3 $BENCH/gen_requests.py generic 150000 "$SECRET" "http://127.0.0.1:$1/webhooks/generic" > "$2.tsv"
}
load() { # port connections out-file  (runs wrk in the background)
    BENCH_FILE="$3.tsv" BENCH_PATH=/webhooks/generic BENCH_THREADS=2 \
        wrk -t2 -c"$2" -d"${SECS}s" --timeout 10s -s $BENCH/replay.lua "http://127.0.0.1:$1" > "$3" 2>&1 &
    PIDS="$! $PIDS"
}
ok_rate() { # wrk output -> "2xx/s non2xx"
    local line; line=$(grep '^BENCH ' "$1")
    python3 - "$line" <<'PY'
import sys
f = dict(kv.split("=") for kv in sys.argv[1].split()[1:])
ok = int(f["requests"]) - int(f["non2xx"]) - int(f["exhausted"])
print(round(ok / (int(f["duration_us"]) / 1e6)), int(f["non2xx"]) + int(f["socket_errors"]))
PY
}
status=0
printf '%-6s %12s %24s %6s %18s %6s %s\n' round "one: req/s" "two: req/s (a + b)" ratio "one, pool 32" ratio "non-2xx/errors"
for round in $(seq "$ROUNDS"); do
    signed "$PORT_A" "$WORK/one"; signed "$PORT_A" "$WORK/two-a"; signed "$PORT_B" "$WORK/two-b"
    signed "$PORT_C" "$WORK/big"
    settle
    load "$PORT_A" 64 "$WORK/one"; wait $!
    read -r one one_bad <<< "$(ok_rate "$WORK/one")"
    settle
    load "$PORT_A" 32 "$WORK/two-a"; WA=$!
    load "$PORT_B" 32 "$WORK/two-b"; WB=$!
    wait "$WA" "$WB"
    read -r a a_bad <<< "$(ok_rate "$WORK/two-a")"
    read -r b b_bad <<< "$(ok_rate "$WORK/two-b")"
    settle
    load "$PORT_C" 64 "$WORK/big"; wait $!
    read -r big big_bad <<< "$(ok_rate "$WORK/big")"
    ratio=$(python3 -c "print(f'{($a + $b) / $one:.2f}')")
    ratio_big=$(python3 -c "print(f'{($a + $b) / $big:.2f}')")
    printf '%-6s %12s %24s %6s %18s %6s %s\n' "$round" "$one" "$((a + b)) ($a + $b)" "$ratio" "$big" "$ratio_big" "$one_bad / $a_bad + $b_bad / $big_bad"
    [ "$one_bad" = 0 ] && [ "$a_bad" = 0 ] && [ "$b_bad" = 0 ] && [ "$big_bad" = 0 ] || status=1
done
exit $status
