#!/usr/bin/env bash
# The failover drill: several keyward processes on a primary and a
# synchronous standby, under load, while things fail.
#
#   deploy/cluster/drill.sh          # about two minutes; DRILL_SECONDS (50) for the load
#
# 1. builds keyward (release); starts a primary PostgreSQL and a standby
#    made from it with pg_basebackup, streaming synchronously
#    (synchronous_standby_names = '*', synchronous_commit = on), both on
#    127.0.0.1; a PgBouncer (Debian's, session mode) in front of each;
# 2. starts two `keyward serve` (serve-a through the PgBouncers, serve-b
#    direct) and a separate `keyward dispatch`, all with
#    DATABASE_URL=postgres://keyward@127.0.0.1:P1,127.0.0.1:P2/keyward?target_session_attrs=read-write,
#    replies going through the generic sender to a local sink
#    (deploy/bench/sink.py) that records every Idempotency-Key;
# 3. drives both instances with wrk (pre-signed requests from
#    deploy/bench/gen_requests.py; deploy/cluster/acks.lua records every
#    answer), and meanwhile, in turn: kill -9 of serve-a (restarted 3 s
#    later), kill -9 of the dispatcher mid-batch (restarted 2 s later),
#    the primary stopped hard (immediate shutdown) and the standby
#    promoted;
# 4. lets the dispatcher drain, then prints acknowledged vs stored
#    messages, replies sent vs delivered to the sink (deliveries per
#    Idempotency-Key), and the longest time without a 200 and the 503s
#    around the failover.
# Exits non-zero on any acknowledged message missing, any reply not
# delivered, or any reply delivered more often than keyward attempted it:
# a reply whose result was not recorded (its process, or the primary,
# died) goes again with the same Idempotency-Key once its lease expires
# (the README's "possibly sent"), so a provider that honours the key
# delivers it once.
# Loopback only, bounded in time; every process it starts is stopped by
# PID on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/bench/common.sh
SECS=${DRILL_SECONDS:-50}
SECRET=drill-secret-0123456789

require_tools wrk python3 curl
if ! command -v pgbouncer >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing pgbouncer: run as root or: sudo apt-get install pgbouncer" >&2; exit 1
    fi
    echo "installing pgbouncer"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer
    # Debian's package starts a system service we do not use.
    service pgbouncer stop >/dev/null 2>&1 || true
fi
PGBIN=$(pg_bin)

WORK=$(mktemp -d /tmp/keyward-drill-XXXXXX)
chmod 755 "$WORK"
# PostgreSQL and PgBouncer refuse to run as root: as root, they run as
# `postgres` (as keyward's own clusters do).
AS=()
if [ "$(id -u)" -eq 0 ]; then AS=(runuser -u postgres --); fi
mkdir -p "$WORK/pg" "$WORK/bouncer"
[ ${#AS[@]} -eq 0 ] || chown postgres: "$WORK/pg" "$WORK/bouncer"

PIDS_KW="" PIDS_PG="" PIDS_OTHER=""
cleanup() {
    set +e
    for pid in $PIDS_OTHER $PIDS_KW; do kill -INT "$pid" 2>/dev/null; done
    for pid in $PIDS_OTHER $PIDS_KW; do wait "$pid" 2>/dev/null; done
    for pid in $PIDS_PG; do kill -INT "$pid" 2>/dev/null; done
    for pid in $PIDS_PG; do while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; done
    if [ -n "${DRILL_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "building keyward (release)…"
cargo build --release --quiet --bin keyward
KW=target/release/keyward

P1=$(free_port) P2=$(free_port) B1=$(free_port) B2=$(free_port)
SINK_PORT=$(free_port) PORT_A=$(free_port) PORT_B=$(free_port)

# --- PostgreSQL: a primary and a synchronous standby -----------------------
"${AS[@]}" "$PGBIN/initdb" -D "$WORK/pg/primary" -U keyward --auth=trust -E UTF8 --no-locale >/dev/null
cat >> "$WORK/pg/primary/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $P1
unix_socket_directories = '$WORK/pg'
max_connections = 200
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = replica
max_wal_senders = 5
hot_standby = on
# A commit is answered once the standby has it too: a 200 survives the
# loss of the primary.
synchronous_standby_names = '*'
CONF
start_pg() { # dir -> prints the postmaster's PID
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$1" -l "$1.log" -w -t 60 start >/dev/null
    head -1 "$1/postmaster.pid"
}
PG1=$(start_pg "$WORK/pg/primary"); PIDS_PG="$PG1"
"${AS[@]}" "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$P1" -U keyward -D "$WORK/pg/standby" -R -X stream -c fast
cat >> "$WORK/pg/standby/postgresql.conf" <<CONF
port = $P2
# Promoted, it has no standby of its own to wait for.
synchronous_standby_names = ''
CONF
PG2=$(start_pg "$WORK/pg/standby"); PIDS_PG="$PG1 $PG2"
psql_at() { "$PGBIN/psql" -qtAX -h 127.0.0.1 -p "$1" -U keyward -d "${2:-postgres}" "${@:3}"; }
psql_at "$P1" postgres -c "CREATE DATABASE keyward"
for _ in $(seq 100); do
    [ "$(psql_at "$P1" postgres -c "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")" = 1 ] && break
    sleep 0.1
done
echo "PostgreSQL: primary 127.0.0.1:$P1, standby 127.0.0.1:$P2 ($(psql_at "$P1" postgres -c "SELECT application_name || ' ' || sync_state FROM pg_stat_replication"))"

# --- PgBouncer in session mode in front of each ----------------------------
echo '"keyward" ""' > "$WORK/bouncer/users.txt"
start_bouncer() { # name listen_port server_port [pool_mode]
    cat > "$WORK/bouncer/$1.ini" <<INI
[databases]
keyward = host=127.0.0.1 port=$3 dbname=keyward
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $2
unix_socket_dir =
auth_type = trust
auth_file = $WORK/bouncer/users.txt
; keyward keeps named prepared statements per connection: session mode only
pool_mode = ${4:-session}
max_client_conn = 200
default_pool_size = 60
server_login_retry = 1
logfile = $WORK/bouncer/$1.log
pidfile = $WORK/bouncer/$1.pid
INI
    [ ${#AS[@]} -eq 0 ] || chown postgres: "$WORK/bouncer/$1.ini" "$WORK/bouncer/users.txt"
    if [ "$(id -u)" -eq 0 ]; then pgbouncer -q -u postgres "$WORK/bouncer/$1.ini" &
    else pgbouncer -q "$WORK/bouncer/$1.ini" & fi
    PIDS_OTHER="$PIDS_OTHER $!"
}
start_bouncer b1 "$B1" "$P1"
start_bouncer b2 "$B2" "$P2"
sleep 0.5
echo "PgBouncer $(pgbouncer --version | head -1 | awk '{print $2}'), session mode: 127.0.0.1:$B1 -> primary, 127.0.0.1:$B2 -> standby"

DIRECT="postgres://keyward@127.0.0.1:$P1,127.0.0.1:$P2/keyward?target_session_attrs=read-write&sslmode=disable"
BOUNCED="postgres://keyward@127.0.0.1:$B1,127.0.0.1:$B2/keyward?target_session_attrs=read-write&sslmode=disable"

# --- keyward: two instances and a dispatcher -------------------------------
python3 deploy/bench/sink.py "$SINK_PORT" "$WORK/sink.count" "$WORK/sink.keys" & SINK=$!
PIDS_OTHER="$PIDS_OTHER $SINK"
config() { # name port
    cat > "$WORK/$1.toml" <<TOML
listen = "127.0.0.1:$2"
data_dir = "$WORK/$1"
[service]
public_url = "http://127.0.0.1:$2"
max_messages_per_number_per_minute = 0
instance = "$1"
[[shortcodes]]
code = "3344"
program = "promo"
reply_via = "generic"
[[programs]]
name = "promo"
brand = "Toko Maju"
frequency = { id = "2-4 SMS per bulan", en = "2-4 msgs/month", ru = "2-4 SMS в месяц" }
[gateways.generic]
secret = "$SECRET"
reply_url = "http://127.0.0.1:$SINK_PORT/sms"
[database]
pool_size = 8
[dispatch]
workers = 1
lease_secs = 5         # a crashed dispatcher's replies go again after 5 s
http_timeout_secs = 2
TOML
}
config serve-a "$PORT_A"; config serve-b "$PORT_B"; config dispatch 0
sed -i 's/^workers = 1 *$/workers = 2/' "$WORK/dispatch.toml"
# Transaction mode is refused at start-up, with the reason.
B3=$(free_port)
start_bouncer b3 "$B3" "$P1" transaction
sleep 0.3
if out=$(RUST_LOG=warn KEYWARD_CONFIG="$WORK/serve-a.toml" DATABASE_URL="postgres://keyward@127.0.0.1:$B3/keyward?sslmode=disable" \
        timeout 20 target/release/keyward serve 2>&1); then
    echo "keyward started through PgBouncer in transaction mode: it should refuse" >&2; exit 1
fi
echo "$out" | grep -q 'needs pool_mode = session' || { echo "keyward did not refuse PgBouncer's transaction mode: $out" >&2; exit 1; }
echo "PgBouncer in transaction mode: refused at start-up ($(echo "$out" | grep -o 'a pooler in transaction[^.]*' | head -1))"

RUST_LOG=warn DATABASE_URL="$DIRECT" KEYWARD_CONFIG="$WORK/dispatch.toml" $KW migrate >/dev/null
declare -A PID
start_kw() { # name command url
    RUST_LOG=warn DATABASE_URL="$3" KEYWARD_CONFIG="$WORK/$1.toml" $KW "$2" >> "$WORK/$1.log" 2>&1 &
    PID[$1]=$!
    PIDS_KW="$PIDS_KW $!"
}
ready() { for _ in $(seq 200); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.05; done; return 1; }
start_kw serve-a serve "$BOUNCED"
start_kw serve-b serve "$DIRECT"
start_kw dispatch dispatch "$DIRECT"
ready "$PORT_A" && ready "$PORT_B" || { tail -5 "$WORK"/serve-*.log; exit 1; }
echo "keyward: serve-a :$PORT_A (through PgBouncer), serve-b :$PORT_B, dispatch (pid ${PID[dispatch]})"

# Replies a process held leased when it died may have reached the sink:
# they go again with the same Idempotency-Key (README, "possibly sent").
possibly_sent() { # port pid-pattern
    psql_at "$1" keyward -c "SELECT id FROM outbox WHERE status = 'sending' AND lease_owner LIKE '%$2%'" >> "$WORK/possibly_sent" || true
}
: > "$WORK/possibly_sent"

# --- load and failures -----------------------------------------------------
for name in a b; do
    port=$([ $name = a ] && echo "$PORT_A" || echo "$PORT_B")
    python3 deploy/bench/gen_requests.py generic 120000 "$SECRET" "http://127.0.0.1:$port/webhooks/generic" > "$WORK/requests-$name.tsv"
done
t0=$(date +%s.%N)
for name in a b; do
    port=$([ $name = a ] && echo "$PORT_A" || echo "$PORT_B")
    BENCH_FILE="$WORK/requests-$name.tsv" BENCH_PATH=/webhooks/generic BENCH_THREADS=2 DRILL_ACKS="$WORK/acks-$name" \
        wrk -t2 -c8 -d"${SECS}s" --timeout 5s -s deploy/cluster/acks.lua "http://127.0.0.1:$port" > "$WORK/wrk-$name.out" 2>&1 &
    PIDS_OTHER="$PIDS_OTHER $!"; eval "WRK_$name=$!"
done
at() { python3 -c "import time; time.sleep(max(0, $t0 + $1 - time.time()))"; }
stamp() { python3 -c "import time; print(int(time.time() * 1000))"; }

at $((SECS * 12 / 100))
echo "t+$((SECS * 12 / 100))s  kill -9 serve-a (pid ${PID[serve-a]})"
kill -9 "${PID[serve-a]}"; wait "${PID[serve-a]}" 2>/dev/null || true
possibly_sent "$P1" "-${PID[serve-a]}-"
sleep 3
start_kw serve-a serve "$BOUNCED"; ready "$PORT_A"
echo "        serve-a restarted (pid ${PID[serve-a]})"

at $((SECS * 32 / 100))
busy=$(psql_at "$P1" keyward -c "SELECT count(*) FROM outbox WHERE status = 'sending' AND lease_owner LIKE '%-${PID[dispatch]}-%'")
echo "t+$((SECS * 32 / 100))s  kill -9 dispatch (pid ${PID[dispatch]}, $busy replies leased)"
kill -9 "${PID[dispatch]}"; wait "${PID[dispatch]}" 2>/dev/null || true
possibly_sent "$P1" "-${PID[dispatch]}-"
sleep 2
start_kw dispatch dispatch "$DIRECT"
echo "        dispatch restarted (pid ${PID[dispatch]})"

at $((SECS * 52 / 100))
FAILOVER_MS=$(stamp)
echo "t+$((SECS * 52 / 100))s  primary stopped hard (immediate shutdown, pid $PG1); standby promoted"
kill -QUIT "$PG1"
while kill -0 "$PG1" 2>/dev/null; do sleep 0.02; done
"${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg/standby" -w promote >/dev/null
PROMOTED_MS=$(stamp)
# Every reply leased at that moment may have been sent and not recorded.
possibly_sent "$P2" ""
eval "wait \$WRK_a \$WRK_b" || true
LOAD_END_MS=$(stamp)
echo "load done; draining the outbox…"

# --- drain and check -------------------------------------------------------
for _ in $(seq 120); do
    left=$(psql_at "$P2" keyward -c "SELECT count(*) FROM outbox WHERE status IN ('queued', 'sending')")
    [ "$left" = 0 ] && break
    sleep 0.5
done
sleep 1
kill -TERM "$SINK"; wait "$SINK" || true
cat "$WORK"/acks-a.* > "$WORK/acks-a"; cat "$WORK"/acks-b.* > "$WORK/acks-b"
awk '$2 == 200 {print $3}' "$WORK/acks-a" "$WORK/acks-b" > "$WORK/acked.ids"
sort "$WORK/sink.keys" | uniq -c | awk '{print $2 "\t" $1}' > "$WORK/delivered.tsv"
sort -u "$WORK/possibly_sent" | grep -v '^$' > "$WORK/possibly_sent.ids" || true

REPORT=$(psql_at "$P2" keyward <<SQL
CREATE TEMP TABLE acked (id text);
\copy acked FROM '$WORK/acked.ids'
CREATE TEMP TABLE delivered (id text, n int);
\copy delivered FROM '$WORK/delivered.tsv'
CREATE TEMP TABLE possibly (id text);
\copy possibly FROM '$WORK/possibly_sent.ids'
SELECT 'acked=' || (SELECT count(*) FROM acked)
    || ' acked_missing=' || (SELECT count(*) FROM acked a WHERE NOT EXISTS (SELECT 1 FROM inbound_messages m WHERE m.id::text = a.id))
    || ' stored=' || (SELECT count(*) FROM inbound_messages)
    || ' replies=' || (SELECT count(*) FROM outbox)
    || ' sent=' || (SELECT count(*) FROM outbox WHERE status = 'sent')
    || ' cancelled=' || (SELECT count(*) FROM outbox WHERE status = 'cancelled')
    || ' unsettled=' || (SELECT count(*) FROM outbox WHERE status NOT IN ('sent', 'cancelled'))
    || ' sent_not_delivered=' || (SELECT count(*) FROM outbox o WHERE status = 'sent' AND NOT EXISTS (SELECT 1 FROM delivered d WHERE d.id = o.id::text))
    || ' delivered_unknown=' || (SELECT count(*) FROM delivered d WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id::text = d.id AND o.status = 'sent'))
    || ' keys_delivered=' || (SELECT count(*) FROM delivered)
    || ' deliveries=' || (SELECT coalesce(sum(n), 0) FROM delivered)
    || ' keys_again=' || (SELECT count(*) FROM delivered d WHERE n > 1)
    || ' keys_again_leased_at_crash=' || (SELECT count(*) FROM delivered d WHERE n > 1 AND d.id IN (SELECT id FROM possibly))
    || ' double_sends=' || (SELECT count(*) FROM delivered d JOIN outbox o ON o.id::text = d.id WHERE d.n > o.attempts)
    || ' possibly_sent=' || (SELECT count(*) FROM possibly);
SQL
)
eval "$REPORT"
GAPS=$(python3 - "$WORK/acks-a" "$WORK/acks-b" "$FAILOVER_MS" "$PROMOTED_MS" <<'PY'
import sys
rows = []
for path in sys.argv[1:3]:
    for line in open(path):
        ms, status, _ = line.split()
        rows.append((int(ms), int(status)))
rows.sort()
fail, promoted = int(sys.argv[3]), int(sys.argv[4])
ok = [ms for ms, s in rows if s == 200]
# The longest time without any 200 from either instance, in the whole run
# and around the failover (from 2 s before the stop to 30 s after).
def longest(times):
    gaps = [(b - a, a) for a, b in zip(times, times[1:])]
    return max(gaps) if gaps else (0, 0)
whole = longest(ok)
near = longest([ms for ms in ok if fail - 2000 <= ms <= fail + 30000])
n503 = sum(1 for ms, s in rows if s == 503)
other = sum(1 for ms, s in rows if s not in (200, 503))
after = next((ms for ms in ok if ms > fail), None)
print(f"gap_whole={whole[0] / 1000:.2f} gap_failover={near[0] / 1000:.2f} "
      f"first_200_after_stop={(after - fail) / 1000 if after else -1:.2f} "
      f"promote_secs={(promoted - fail) / 1000:.2f} answers_503={n503} answers_other={other}")
PY
)
eval "$GAPS"
wrk_errors() { sed -n 's/.*Socket errors: \(.*\)/\1/p' "$WORK/wrk-$1.out"; }

echo
echo "messages:   $acked acknowledged (200), $stored stored, $acked_missing acknowledged but missing"
echo "replies:    $replies queued in all, $sent sent, $cancelled cancelled by a later opt-out, $unsettled unsettled"
echo "sink:       $deliveries deliveries of $keys_delivered Idempotency-Keys; $sent_not_delivered sent but never delivered, $delivered_unknown delivered but not recorded sent"
echo "            $keys_again keys delivered more than once, each time by a new attempt after the lease of one whose result was not recorded expired (same key; $keys_again_leased_at_crash of them among the $possibly_sent leased when a process or the primary died)"
echo "            $double_sends double sends (a key delivered more often than its reply was attempted)"
echo "failover:   primary stopped at t+$((SECS * 52 / 100))s, standby promoted ${promote_secs}s later; first 200 ${first_200_after_stop}s after the stop"
echo "            longest time without a 200: ${gap_failover}s around the failover, ${gap_whole}s in the whole run"
echo "            answers: $answers_503 × 503, $answers_other other non-200 (wrk socket errors a: $(wrk_errors a); b: $(wrk_errors b))"
status=0
[ "$acked_missing" = 0 ] || { echo "LOSS: acknowledged messages missing"; status=1; }
[ "$acked" -gt 0 ] || { echo "no message was acknowledged"; status=1; }
[ "$unsettled" = 0 ] && [ "$sent_not_delivered" = 0 ] && [ "$delivered_unknown" = 0 ] || { echo "LOSS: replies not delivered or not recorded"; status=1; }
[ "$double_sends" = 0 ] || { echo "DOUBLE SEND"; status=1; }
[ "$answers_other" = 0 ] || { echo "unexpected answers (neither 200 nor 503)"; status=1; }
[ $status = 0 ] && echo "drill passed" || echo "drill FAILED (logs in $WORK; DRILL_KEEP=1 keeps them)"
exit $status
