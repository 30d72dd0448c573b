#!/usr/bin/env bash
# PostgreSQL's instructions per inbound message, counted by callgrind: a
# figure that does not drift with the machine's load, for judging schema
# and SQL changes.
#
#   deploy/bench/callgrind.sh [messages] [extra.sql] [batch]
#
# With batch > 1, the messages are applied batch at a time as keyward's
# group commit does (one facts read and one keyward_apply_inbound_batch
# per batch): the figure is still per message.
#
# Starts a throwaway PostgreSQL under `valgrind --tool=callgrind`, applies
# sql/V*.sql (and extra.sql, to try a change before writing a migration),
# runs the inbound mix of run.sh with pgbench on one connection, and prints
# the instructions that connection's server process executed per message,
# plus the functions that dominate (callgrind_annotate). Everything runs
# under /tmp and is removed at the end; run as root, PostgreSQL runs as
# the `postgres` user.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/bench/common.sh
N=${1:-1000}
EXTRA=${2:-}
BATCH=${3:-1}
require_tools valgrind
PGBIN=$(pg_bin)
WORK=$(mktemp -d /tmp/keyward-callgrind-XXXXXX)
chmod 755 "$WORK"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$WORK"
cleanup() {
    # valgrind runs in the server's own process, so postmaster.pid names it.
    if [ -f "$WORK/pgdata/postmaster.pid" ]; then
        kill -INT "$(head -1 "$WORK/pgdata/postmaster.pid")" 2>/dev/null || true
        wait 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

as_pg "$PGBIN/initdb" -D "$WORK/pgdata" -U keyward -A trust >/dev/null
as_pg mkdir "$WORK/cg"
as_pg valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$WORK/cg/%p" \
    "$PGBIN/postgres" -D "$WORK/pgdata" -c listen_addresses= -c unix_socket_directories="$WORK" \
    -c autovacuum=off > "$WORK/postgres.log" 2>&1 &
PSQL=("$PGBIN/psql" -qX -v ON_ERROR_STOP=1 -h "$WORK" -U keyward -d postgres)
for _ in $(seq 120); do "${PSQL[@]}" -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.5; done
# In version order (V10 after V9), as refinery applies them.
for f in $(ls sql/V*.sql | sort -V) $EXTRA; do "${PSQL[@]}" -f "$f" >/dev/null; done

# The same scripts as run.sh, from the same steady state.
. deploy/bench/mix.sh
"${PSQL[@]}" -c "$SEED_SQL" >/dev/null
write_mix "$WORK" "$BATCH"
mix() { # transactions seed
    "$PGBIN/pgbench" -n -M prepared -c 1 -t "$1" --random-seed="$2" -h "$WORK" -U keyward \
        "${MIX_ARGS[@]}" postgres 2>&1 | grep -E 'failed transactions: [1-9]|aborted' && exit 1 || true
}
mix $((200 / BATCH + 1)) 1 # the tables are not empty when counting starts
before=$(ls "$WORK/cg")
N=$(( N / BATCH * BATCH ))
mix $((N / BATCH)) 2
sleep 2                   # the connection's process writes its profile as it exits
best=0 file=""
for f in $(comm -13 <(echo "$before") <(ls "$WORK/cg")); do
    n=$(grep -m1 '^totals:' "$WORK/cg/$f" | awk '{print $2}' || true)
    if [ -n "$n" ] && [ "$n" -gt "$best" ]; then best=$n file=$f; fi
done
[ -n "$file" ] || { echo "no profile of the benchmark connection" >&2; exit 1; }
echo "PostgreSQL: $((best / N)) instructions per message ($N messages, one connection${EXTRA:+, with $EXTRA}$([ "$BATCH" -gt 1 ] && echo ", batches of $BATCH"))"
# CALLGRIND_OUT=file keeps the profile, for callgrind_annotate.
[ -z "${CALLGRIND_OUT:-}" ] || cp "$WORK/cg/$file" "$CALLGRIND_OUT"
# Where they go (inclusive: a function with everything it calls).
callgrind_annotate --inclusive=yes "$WORK/cg/$file" 2>/dev/null | python3 -c '
import re, sys
n = int(sys.argv[1])
wanted = ["PortalStart", "plpgsql_call_handler", "ExecInitNode", "ExecConstraints",
          "ExecInsertIndexTuples", "RI_FKey_check_ins", "CommitTransactionCommand"]
seen = {}
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \(.*?\)\s+\S*?:(\w+) \[", line)
    if m and m.group(2) in wanted and m.group(2) not in seen:
        seen[m.group(2)] = int(m.group(1).replace(",", "")) // n
for name in wanted:
    if name in seen:
        print(f"  {name:<26} {seen[name]:>9,} per message")
' "$N"
