#!/usr/bin/env bash
# database.batch_writers against itself, in alternated rounds, so that a
# change in the machine's load weighs on every setting alike.
#
#   deploy/bench/sweep.sh      # writers "1 2", connections "64 16", 2 rounds, 20 s each (about 6 minutes)
#   SWEEP_WRITERS="1 2 4" SWEEP_CONNS=64 SWEEP_ROUNDS=4 BENCH_SECONDS=20 deploy/bench/sweep.sh
#
# Per round and setting: a fresh keyward (release, its private PostgreSQL,
# fsync and synchronous_commit on) configured as in run.sh, seeded like it
# (mix.sh), then wrk with pre-signed generic webhooks at each connection
# count, right after a vacuum and a checkpoint. Prints, per run, req/s,
# wrk's p99 (corrected for coordinated omission, see latency.py) and
# keyward's own p99 (its request-duration histogram), and at the end the
# requests per setting summed over the rounds. Loopback only, bounded in
# time; every process it starts is stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH=deploy/bench
. $BENCH/common.sh
. $BENCH/mix.sh
SECS=${BENCH_SECONDS:-20}
WRITERS=${SWEEP_WRITERS:-1 2}
CONNS=${SWEEP_CONNS:-64 16}
ROUNDS=${SWEEP_ROUNDS:-2}
SECRET=bench-secret-0123456789
require_tools wrk python3 curl
PGBIN=$(pg_bin)
WORK=$(mktemp -d /tmp/keyward-sweep-XXXXXX)
chmod 755 "$WORK"
SERVE=""
stop() { [ -z "$SERVE" ] || { kill -INT "$SERVE" 2>/dev/null && wait "$SERVE" 2>/dev/null || true; }; SERVE=""; }
trap 'stop; rm -rf "$WORK"' EXIT

echo "building keyward (release)…"
cargo build --release --quiet --bin keyward
declare -A TOTAL
for round in $(seq "$ROUNDS"); do
    for w in $WRITERS; do
        dir="$WORK/r$round-w$w"
        mkdir -p "$dir" && chmod 755 "$dir"
        port=$(free_port)
        url="http://127.0.0.1:$port"
        bench_config "$dir/keyward.toml" "$port" "$dir/data" "$SECRET" unused-twilio-token "$w"
        RUST_LOG=warn KEYWARD_CONFIG="$dir/keyward.toml" target/release/keyward serve > "$dir/serve.log" 2>&1 &
        SERVE=$!
        wait_ready "$url" "$dir/serve.log"
        socket=$(head -1 "$dir/data/POSTGRES_LOCATION" 2>/dev/null || echo "$dir/data/postgres")
        psql=("$PGBIN/psql" -qtA -h "$socket" -p 5432 -U keyward -d postgres)
        "${psql[@]}" -c "$SEED_SQL"
        for c in $CONNS; do
            python3 $BENCH/gen_requests.py generic 300000 "$SECRET" "$url/webhooks/generic" > "$dir/requests.tsv"
            "${psql[@]}" -c "VACUUM (ANALYZE)" -c "CHECKPOINT"
            curl -s "$url/metrics" > "$dir/metrics.before"
            out=$(BENCH_FILE="$dir/requests.tsv" BENCH_PATH=/webhooks/generic BENCH_THREADS=2 \
                wrk -t2 -c"$c" -d"${SECS}s" --timeout 10s -s $BENCH/replay.lua "$url" | grep '^BENCH ')
            curl -s "$url/metrics" > "$dir/metrics.after"
            read -r _ server99 <<< "$(python3 $BENCH/latency.py metrics "$dir/metrics.before" "$dir/metrics.after" '/webhooks/{gateway}')"
            eval "$(echo "$out" | sed 's/^BENCH //' | tr ' ' '\n' | sed 's/^/local_/')"
            ok=$((local_requests - local_non2xx - local_exhausted))
            TOTAL[$w-$c]=$(( ${TOTAL[$w-$c]:-0} + ok ))
            python3 -c "print(f'round $round, writers $w, $c connections: {$ok / ($local_duration_us / 1e6):.0f} req/s, '
                             f'wrk p99 {$local_p99_us / 1000:.1f} ms, keyward p99 <= $server99 ms, '
                             f'non-2xx $local_non2xx, socket errors $local_socket_errors')"
            [ "$local_non2xx" = 0 ] && [ "$local_socket_errors" = 0 ] || echo "  (failed answers above)"
        done
        stop
    done
done
echo
for c in $CONNS; do
    line="$c connections, requests over $ROUNDS rounds:"
    for w in $WRITERS; do line="$line writers $w: ${TOTAL[$w-$c]}"; done
    echo "$line"
done
