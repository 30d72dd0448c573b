#!/usr/bin/env bash
# Where a batch's time goes inside PostgreSQL, statement by statement:
# pg_stat_statements (track = all, so the statements inside
# keyward_apply_inbound_batch and the foreign-key checks count apart)
# over the inbound mix of run.sh in batches, on one connection.
#
#   deploy/bench/statements.sh [batch] [seconds] [extra.sql]
#
# A throwaway cluster under /tmp (fsync off: this is about CPU, not the
# disk), sql/V*.sql (and extra.sql, to try a change), the seed of mix.sh,
# then pgbench for `seconds` (10) with batches of `batch` (16; 1 for the
# per-message path). Prints the transactions per second and the 20 costliest
# statements, with their calls and time per call. Run as root, PostgreSQL
# runs as the `postgres` user; everything it starts is stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/bench/common.sh
BATCH=${1:-16}
SECS=${2:-10}
EXTRA=${3:-}
PGBIN=$(pg_bin)
WORK=$(mktemp -d /tmp/keyward-statements-XXXXXX)
chmod 755 "$WORK"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$WORK"
cleanup() {
    as_pg "$PGBIN/pg_ctl" -D "$WORK/pgdata" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
as_pg "$PGBIN/initdb" -D "$WORK/pgdata" -U keyward -A trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pgdata" -l "$WORK/postgres.log" -o "-c listen_addresses= \
    -c unix_socket_directories=$WORK -c shared_preload_libraries=pg_stat_statements \
    -c pg_stat_statements.track=all -c pg_stat_statements.track_planning=on -c fsync=off" start >/dev/null
PSQL=("$PGBIN/psql" -qX -v ON_ERROR_STOP=1 -h "$WORK" -U keyward -d postgres)
for f in $(ls sql/V*.sql | sort -V) $EXTRA; do "${PSQL[@]}" -f "$f" >/dev/null; done
. deploy/bench/mix.sh
"${PSQL[@]}" -c "$SEED_SQL" >/dev/null
"${PSQL[@]}" -c "CREATE EXTENSION pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
write_mix "$WORK" "$BATCH"
"$PGBIN/pgbench" -n -M prepared -c 1 -T "$SECS" -h "$WORK" -U keyward "${MIX_ARGS[@]}" postgres 2>&1 \
    | grep -E '^tps' | sed "s/^/batches of $BATCH: /"
"${PSQL[@]}" -c "
    SELECT round(total_exec_time::numeric) AS exec_ms, round(total_plan_time::numeric) AS plan_ms, calls,
           round((total_exec_time / nullif(calls, 0))::numeric, 3) AS ms_per_call, toplevel AS top,
           left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS statement
      FROM pg_stat_statements
     WHERE query !~* '^(CREATE|ALTER|DO|COMMENT|SELECT pg_stat|ANALYZE)'
       AND query NOT LIKE '%benchmark seed%' AND query NOT LIKE '%seed-%'
       AND query NOT LIKE 'INSERT INTO subscribers (msisdn, version)%'
       AND query NOT LIKE 'INSERT INTO subscriptions (msisdn, program, state, since, event_id)%'
     ORDER BY total_exec_time + total_plan_time DESC LIMIT 20"
