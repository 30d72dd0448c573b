#!/usr/bin/env bash
# keyward's inbound webhooks against the ceiling PostgreSQL sets on this
# machine, side by side in one run.
#
#   deploy/bench/run.sh            # 20 s per measurement; BENCH_SECONDS to change,
#                                  # BENCH_POOL for keyward's connection pool size,
#                                  # BENCH_WRITERS / BENCH_MAX_BATCH for its
#                                  # database.batch_writers / max_batch
#   BENCH_BEFORE=/tmp/keyward-before deploy/bench/run.sh
#                                  # also measures that binary (an earlier build of
#                                  # keyward) at 1 and 64 connections, same run
#
# 1. builds keyward (release) and starts it on its private PostgreSQL with
#    production settings (fsync and synchronous_commit on);
# 2. drives /webhooks/generic with correctly signed requests (unique
#    gateway ids, numbers drawn from 100,000, a realistic keyword mix) with
#    wrk at 16 and 64 connections, and /webhooks/twilio at 64;
# 3. runs pgbench with the same SQL per message (the facts read and
#    keyward_apply_inbound, in the same mix) on the same database at the
#    same concurrency: keyward's per-message ceiling; and pgbench with the
#    lean per-message transaction (lean.sql: five statements in one
#    plpgsql call, a schema without keyward's extra indexes and checks);
#    keyward at 1 connection (and BENCH_BEFORE's binary at 1 and 64);
# 4. prints throughput, p50/p99 and keyward/ceiling, counts non-2xx
#    answers, and checks the database holds one inbound row per 200; p99
#    three ways (latency.py): wrk's (corrected for coordinated omission),
#    keyward's own (its request-duration histogram, uncorrected), and
#    pgbench's at 64 clients both as measured and corrected like wrk's;
#    and the disk's own fdatasync tail (fsync_tail.py), the floor under
#    every durable commit;
# 5. sends the replies those runs queued with `keyward dispatch` through
#    the generic sender to a local sink (deploy/bench/sink.py) and prints
#    replies per second (BENCH_DISPATCH_WORKERS, default 4).
# Loopback only, bounded in time; every process it starts is stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH=deploy/bench
. $BENCH/common.sh
SECS=${BENCH_SECONDS:-20}
SECRET=bench-secret-0123456789
TWILIO_TOKEN=bench-twilio-token-0123

require_tools wrk python3 curl
PGBIN=$(pg_bin)

WORK=$(mktemp -d /tmp/keyward-bench-XXXXXX)
chmod 755 "$WORK"
SERVE="" SINK="" DISPATCH="" BEFORE=""
cleanup() {
    for pid in $DISPATCH $SINK $BEFORE; do kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    [ -n "$SERVE" ] && kill -INT "$SERVE" 2>/dev/null && wait "$SERVE" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "building keyward (release)…"
cargo build --release --quiet --bin keyward
echo "the disk's commit latency, 10 s…"
DISK_LINE=$(python3 $BENCH/fsync_tail.py 10 "$WORK")
APP_PORT=$(free_port)
URL="http://127.0.0.1:$APP_PORT"
bench_config "$WORK/keyward.toml" "$APP_PORT" "$WORK/data" "$SECRET" "$TWILIO_TOKEN" "${BENCH_WRITERS:-}"
RUST_LOG=warn KEYWARD_CONFIG="$WORK/keyward.toml" target/release/keyward serve > "$WORK/serve.log" 2>&1 &
SERVE=$!
wait_ready "$URL" "$WORK/serve.log"
SOCKET=$(cat "$WORK/data/POSTGRES_LOCATION" 2>/dev/null | head -1 || true)
[ -n "$SOCKET" ] || SOCKET="$WORK/data/postgres"
PSQL_ON=("$PGBIN/psql" -qtA -h "$SOCKET" -p 5432 -U keyward -d) # + database
PSQL=("${PSQL_ON[@]}" postgres)
DB=postgres # the database of the measurement under way
inbound_rows() { "${PSQL_ON[@]}" "$DB" -c "SELECT count(*) FROM inbound_messages"; }
# Every measurement starts right after a vacuum and a checkpoint, so none
# of them pays for autovacuum catching up on an earlier run's rows, or for a
# checkpoint mid-run (and the full-page writes after it), while another
# does not.
settle() { "${PSQL_ON[@]}" "$DB" -c "VACUUM (ANALYZE)" -c "CHECKPOINT"; }
echo "fsync=$("${PSQL[@]}" -c 'SHOW fsync') synchronous_commit=$("${PSQL[@]}" -c 'SHOW synchronous_commit')"

. $BENCH/mix.sh
"${PSQL[@]}" -c "$SEED_SQL"
"${PSQL[@]}" -f $BENCH/lean.sql

# An earlier build of keyward, on the same PostgreSQL (its own database,
# migrated by itself and seeded alike; its own port and data dir), idle
# while the others are measured.
BEFORE_URL=""
if [ -n "${BENCH_BEFORE:-}" ]; then
    "${PSQL[@]}" -c "CREATE DATABASE before"
    BEFORE_PORT=$(free_port)
    BEFORE_URL="http://127.0.0.1:$BEFORE_PORT"
    # (without the settings it may not know)
    grep -vE '^(batch_writers|max_batch) = ' "$WORK/keyward.toml" > "$WORK/before.toml"
    RUST_LOG=warn KEYWARD_CONFIG="$WORK/before.toml" KEYWARD_LISTEN="127.0.0.1:$BEFORE_PORT" \
        KEYWARD_DATA_DIR="$WORK/before-data" KEYWARD_SERVICE__PUBLIC_URL="$BEFORE_URL" \
        DATABASE_URL="host=$SOCKET port=5432 user=keyward dbname=before" \
        "$BENCH_BEFORE" serve > "$WORK/before.log" 2>&1 &
    BEFORE=$!
    wait_ready "$BEFORE_URL" "$WORK/before.log"
    "${PSQL_ON[@]}" before -c "$SEED_SQL"
fi

# One pgbench script per kind of message, weighted like the request mix.
write_mix "$WORK"

POSTMASTER=$(head -1 "$SOCKET/pgdata/postmaster.pid")

declare -A RESULT CPU SERVER TAIL
measure_keyward() { # label path kind connections [url pid database]: keyward, or the binary at url
    local label=$1 path=$2 kind=$3 conns=$4 url=${5:-$URL} pid=${6:-$SERVE}
    DB=${7:-postgres}
    python3 $BENCH/gen_requests.py "$kind" 300000 \
        "$([ "$kind" = generic ] && echo $SECRET || echo $TWILIO_TOKEN)" "$url$path" > "$WORK/requests.tsv"
    local before after out
    settle
    before=$(inbound_rows)
    local cpu_kw0 cpu_pg0 cpu_kw1 cpu_pg1
    curl -s "$url/metrics" > "$WORK/metrics.before"
    cpu_kw0=$(cpu_seconds "$pid"); cpu_pg0=$(cpu_seconds "$POSTMASTER")
    out=$(BENCH_FILE="$WORK/requests.tsv" BENCH_PATH=$path BENCH_THREADS=$(( conns < 2 ? 1 : 2 )) \
        wrk -t$(( conns < 2 ? 1 : 2 )) -c"$conns" -d"${SECS}s" --timeout 10s -s $BENCH/replay.lua "$url" | grep '^BENCH ')
    cpu_kw1=$(cpu_seconds "$pid"); cpu_pg1=$(cpu_seconds "$POSTMASTER")
    curl -s "$url/metrics" > "$WORK/metrics.after"
    SERVER[$label]=$(python3 $BENCH/latency.py metrics "$WORK/metrics.before" "$WORK/metrics.after" /webhooks/{gateway})
    after=$(inbound_rows)
    local requests non2xx errors dur p50 p99 exhausted
    eval "$(echo "$out" | sed -e 's/^BENCH //' -e 's/\([a-z0-9_]*\)=/\1=/g' | tr ' ' '\n' | sed 's/^/local /')"
    local ok=$((requests - non2xx - exhausted))
    local stored=$((after - before))
    local rps
    rps=$(python3 -c "print(round($ok / ($duration_us / 1e6)))")
    DB=postgres
    RESULT[$label]="$rps $(python3 -c "print(f'{$p50_us/1000:.1f} {$p99_us/1000:.1f}')") $non2xx $socket_errors $ok $stored $exhausted"
    # Where the CPU goes, per message stored.
    CPU[$label]=$(python3 -c "print(f'keyward {($cpu_kw1-$cpu_kw0)/$stored*1e6:.0f} µs, PostgreSQL {($cpu_pg1-$cpu_pg0)/$stored*1e6:.0f} µs of CPU per message')")
}
measure_pgbench() { # label connections [pgbench script arguments…]: keyward's mix by default
    local label=$1 conns=$2 out tps cpu0 cpu1
    shift 2
    local scripts=("$@")
    [ ${#scripts[@]} -gt 0 ] || scripts=("${MIX_ARGS[@]}")
    settle
    rm -f "$WORK"/pgbench_log.*
    cpu0=$(cpu_seconds "$POSTMASTER")
    out=$("$PGBIN/pgbench" -n -M prepared -c "$conns" -j 2 -T "$SECS" -h "$SOCKET" -p 5432 -U keyward \
        --log --log-prefix="$WORK/pgbench_log" "${scripts[@]}" postgres 2>&1)
    cpu1=$(cpu_seconds "$POSTMASTER")
    # p50, p99 as measured, p99 corrected as wrk corrects its own
    TAIL[$label]=$(python3 $BENCH/latency.py pgbench "$SECS" "$conns" "$WORK"/pgbench_log.*)
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
    RESULT[$label]=$(python3 -c "print(round(float('${tps:-0}')))")
    CPU[$label]=$(python3 -c "
t = float('${tps:-0}') * $SECS
print(f'PostgreSQL {($cpu1-$cpu0)/t*1e6:.0f} µs of CPU per transaction' if t else '')")
    echo "$out" | grep -E '^(latency average|number of failed)' | sed "s/^/  pgbench $label c=$conns: /"
}

# keyward's pool size: pgbench with as many clients as keyward has
# connections is the fairer ceiling (64 backends on 2 cores contend far
# more than 8 do), so the ratio is taken against the better of the two.
POOL=$(curl -s "$URL/metrics" | sed -n 's/^keyward_db_pool_max_connections\({[^}]*}\)\{0,1\} \([0-9]*\)$/\2/p')
LEAN=(-f "$BENCH/lean.pgbench.sql")
echo "pgbench ceiling, $POOL clients (keyward's pool size), ${SECS}s…"
measure_pgbench "pgbench-pool" "$POOL"
echo "pgbench lean per-message transaction, $POOL clients, ${SECS}s…"
measure_pgbench "lean-pool" "$POOL" "${LEAN[@]}"
echo "keyward generic, 1 connection, ${SECS}s…"
measure_keyward "generic-1" /webhooks/generic generic 1
if [ -n "$BEFORE" ]; then
    echo "before ($BENCH_BEFORE) generic, 1 connection, ${SECS}s…"
    measure_keyward "before-1" /webhooks/generic generic 1 "$BEFORE_URL" "$BEFORE" before
fi
for c in 16 64; do
    echo "keyward generic, $c connections, ${SECS}s…"
    measure_keyward "generic-$c" /webhooks/generic generic "$c"
    if [ "$c" = 64 ] && [ -n "$BEFORE" ]; then
        echo "before ($BENCH_BEFORE) generic, 64 connections, ${SECS}s…"
        measure_keyward "before-64" /webhooks/generic generic 64 "$BEFORE_URL" "$BEFORE" before
    fi
    echo "pgbench ceiling, $c clients, ${SECS}s…"
    measure_pgbench "pgbench-$c" "$c"
done
echo "pgbench lean per-message transaction, 64 clients, ${SECS}s…"
measure_pgbench "lean-64" 64 "${LEAN[@]}"
echo "keyward twilio, 64 connections, ${SECS}s…"
measure_keyward "twilio-64" /webhooks/twilio twilio 64

# The dispatcher, the same way: the replies the runs above queued are sent
# by `keyward dispatch` (its own process, on the same database) through the
# generic sender to a local sink, for the same time.
DISPATCH_WORKERS=${BENCH_DISPATCH_WORKERS:-4}
SINK_PORT=$(free_port)
python3 $BENCH/sink.py "$SINK_PORT" "$WORK/sink.count" & SINK=$!
sed -e "s|^reply_url = .*|reply_url = \"http://127.0.0.1:$SINK_PORT/sms\"|" \
    -e "s|^workers = 0 .*|workers = $DISPATCH_WORKERS|" "$WORK/keyward.toml" > "$WORK/dispatch.toml"
sent() { "${PSQL[@]}" -c "SELECT count(*) FROM outbox WHERE status = 'sent'"; }
queued=$("${PSQL[@]}" -c "SELECT count(*) FROM outbox WHERE status = 'queued'")
echo "keyward dispatch, $DISPATCH_WORKERS workers, ${SECS}s ($queued replies queued)…"
settle
sent0=$(sent)
cpu_pg0=$(cpu_seconds "$POSTMASTER"); t0=$(date +%s.%N)
RUST_LOG=warn KEYWARD_CONFIG="$WORK/dispatch.toml" DATABASE_URL="host=$SOCKET port=5432 user=keyward dbname=postgres" \
    target/release/keyward dispatch > "$WORK/dispatch.log" 2>&1 & DISPATCH=$!
sleep "$SECS"
cpu_kw=$(cpu_seconds "$DISPATCH")
kill -INT "$DISPATCH"; wait "$DISPATCH" || true
t1=$(date +%s.%N); cpu_pg1=$(cpu_seconds "$POSTMASTER")
cpu_sink=$(cpu_seconds "$SINK")
kill -TERM "$SINK"; wait "$SINK" || true
sent1=$(sent)
replies=$((sent1 - sent0))
answered=$(cat "$WORK/sink.count")
DISPATCH_LINE=$(python3 -c "
r, secs = $replies, $t1 - $t0
print(f'{r / secs:.0f} replies/s ({r} sent in {secs:.1f} s, the sink answered $answered); '
      f'CPU per reply: keyward {$cpu_kw / r * 1e6:.0f} µs, PostgreSQL {($cpu_pg1 - $cpu_pg0) / r * 1e6:.0f} µs, '
      f'sink {$cpu_sink / r * 1e6:.0f} µs' if r else 'no reply was sent')")
# Every reply marked sent was answered by the sink; the sink may have
# answered a few more whose result the stopping dispatcher had not stored.
if [ "$replies" -le 0 ] || [ "$answered" -lt "$replies" ]; then
    DISPATCH_LINE="$DISPATCH_LINE — MISMATCH"; DISPATCH_FAILED=1
fi

echo
echo "pgbench tps: ${RESULT[pgbench-pool]} at $POOL clients, ${RESULT[pgbench-16]} at 16, ${RESULT[pgbench-64]} at 64"
echo "  ${CPU[pgbench-pool]} ($POOL clients), ${CPU[pgbench-64]} (64)"
echo "lean per-message transaction tps: ${RESULT[lean-pool]} at $POOL clients, ${RESULT[lean-64]} at 64"
echo "  ${CPU[lean-pool]} ($POOL clients), ${CPU[lean-64]} (64)"
for label in pgbench-64 lean-64; do
    read -r t50 t99 t99w <<< "${TAIL[$label]}"
    echo "$label latency: p50 $t50 ms, p99 $t99 ms as measured, $t99w ms corrected as wrk corrects"
done
echo "disk: $DISK_LINE"
# p99 ms: wrk's (corrected for coordinated omission); server: keyward's own
# request durations, uncorrected, as the histogram bucket that holds them.
printf '%-18s %8s %7s %7s %7s %9s %6s %8s %s\n' run "req/s" "p50 ms" "p99 ms" "server" ceiling ratio non-2xx "stored vs 200s"
status=0
labels="generic-1 ${BEFORE:+before-1} generic-16 generic-64 ${BEFORE:+before-64} twilio-64"
for label in $labels; do
    read -r rps p50 p99 non2xx errs ok stored exhausted <<< "${RESULT[$label]}"
    c=${label##*-}
    pg_c=${RESULT[pgbench-$c]:-0}
    ceiling=$(( pg_c > RESULT[pgbench-pool] ? pg_c : RESULT[pgbench-pool] ))
    ratio=$(python3 -c "print(f'{$rps/$ceiling:.2f}' if $ceiling else 'n/a')")
    # Requests still in flight when wrk stops are committed but not counted
    # by wrk: at most one per connection more rows than 200s, never fewer.
    extra=$((stored - ok))
    if [ "$extra" -ge 0 ] && [ "$extra" -le "$c" ]; then match="ok: $stored rows, $ok 200s (+$extra in flight)"
    else match="MISMATCH: $stored rows, $ok 200s"; status=1; fi
    [ "$non2xx" = 0 ] && [ "$errs" = 0 ] || status=1
    read -r _ s99 <<< "${SERVER[$label]}"
    printf '%-18s %8s %7s %7s %7s %9s %6s %8s %s\n' "$label" "$rps" "$p50" "$p99" "<=$s99" "$ceiling" "$ratio" "$non2xx" "$match"
    echo "  ${CPU[$label]}"
    [ "$exhausted" = 0 ] || echo "  (ran out of pre-signed requests: $exhausted probes; raise the count)"
    [ "$errs" = 0 ] || echo "  ($errs socket errors)"
done
echo
# Issue #17's aims, at 64 connections: against keyward's own per-message
# ceiling and against the lean per-message transaction, the better of
# each at keyward's pool size and at 64 clients.
read -r rps64 _ p99_64 _ <<< "${RESULT[generic-64]}"
read -r _ s99_64 <<< "${SERVER[generic-64]}"
read -r _ l99 l99w <<< "${TAIL[lean-64]}"
python3 -c "
kw = max(${RESULT[pgbench-pool]}, ${RESULT[pgbench-64]}); lean = max(${RESULT[lean-pool]}, ${RESULT[lean-64]})
print(f'generic-64: {$rps64} req/s = {$rps64/kw:.2f} x keyward per-message ceiling ({kw} tps; aim >= 1.2), '
      f'{$rps64/lean:.2f} x lean per-message transaction ({lean} tps; aim >= 0.8), p99 $p99_64 ms (aim < 15; '
      f'keyward\'s own <= $s99_64 ms; the lean transaction at 64 clients: $l99 ms, $l99w ms corrected as wrk does)')"
if [ -n "$BEFORE" ]; then
    read -r _ p50_1 p99_1 _ <<< "${RESULT[generic-1]}"
    read -r _ p50_b p99_b _ <<< "${RESULT[before-1]}"
    read -r rps_b64 _ p99_b64 _ <<< "${RESULT[before-64]}"
    python3 -c "
print(f'1 connection: p50 {$p50_1} ms, before {$p50_b} ms (after/before {$p50_1/$p50_b:.2f}); p99 {$p99_1} vs {$p99_b} ms')
print(f'64 connections: {$rps64} req/s, before {$rps_b64} (after/before {$rps64/$rps_b64:.2f}); p99 $p99_64 vs $p99_b64 ms')"
fi
echo "dispatcher ($DISPATCH_WORKERS workers): $DISPATCH_LINE"
[ -z "${DISPATCH_FAILED:-}" ] || status=1
exit $status
