# The inbound mix as pgbench scripts, sourced by run.sh and callgrind.sh.
#
#   write_mix DIR [B]  writes one script per kind of message into DIR (from
#                   inbound.pgbench.sql.in) and sets MIX_ARGS to pgbench's
#                   -f arguments, weighted like the request mix of
#                   gen_requests.py. With B > 1, each script applies B
#                   messages of its kind as one batch (group commit, from
#                   inbound_batch.pgbench.sql.in).
#   SEED_SQL        the steady state the measurements start from (below).

# name action state outcome programs from to reply_kind reply_text text
mix_script() {
    sed -e "s|@ACTION@|$3|g" -e "s|@STATE@|$4|g" -e "s|@OUTCOME@|$5|g" \
        -e "s|@PROGRAMS@|$6|g" -e "s|@FROM@|$7|g" -e "s|@TO@|$8|g" \
        -e "s|@REPLY_KIND@|$9|g" -e "s|@REPLY_TEXT@|${10}|g" -e "s|@TEXT@|${11}|g" \
        "$(dirname "${BASH_SOURCE[0]}")/inbound.pgbench.sql.in" > "$1/$2.sql"
}

# name action state outcome changes(0/1) from to reply_kind reply_text text, B
batch_script() {
    local b=${12} change_of="'{}'::int[]" programs="'{}'::text[]" from="'{}'::text[]" to="'{}'::text[]"
    if [ "$6" = 1 ]; then
        change_of="ARRAY(SELECT generate_series(1, $b))"
        programs="array_fill('promo'::text, ARRAY[$b])"
        from="array_fill('$7'::text, ARRAY[$b])"
        to="array_fill('$8'::text, ARRAY[$b])"
    fi
    sed -e "s|@ACTION@|$3|g" -e "s|@STATE@|$4|g" -e "s|@OUTCOME@|$5|g" \
        -e "s|@CHANGE_OF@|$change_of|g" -e "s|@CHANGE_PROGRAMS@|$programs|g" \
        -e "s|@FROM@|$from|g" -e "s|@TO@|$to|g" \
        -e "s|@REPLY_KIND@|$9|g" -e "s|@REPLY_TEXT@|${10}|g" -e "s|@TEXT@|${11}|g" -e "s|@B@|$b|g" \
        "$(dirname "${BASH_SOURCE[0]}")/inbound_batch.pgbench.sql.in" > "$1/$2.sql"
}

write_mix() {
    local dir=$1 b=${2:-1}
    if [ "$b" -gt 1 ]; then
        local welcome="'Toko Maju: Anda berlangganan promo (2-4 SMS per bulan). Untuk berhenti, balas UNSUBSCRIBE ke 3344. Untuk bantuan, balas BANTUAN.'"
        batch_script "$dir" opt_in opt_in subscribed applied 1 none subscribed "'welcome'" "$welcome" MAU "$b"
        batch_script "$dir" opt_out opt_out unsubscribed applied 1 subscribed unsubscribed "'goodbye'" "$welcome" UNSUBSCRIBE "$b"
        batch_script "$dir" help help none no_change 0 - - "'help'" "$welcome" HELP "$b"
        batch_script "$dir" unknown unknown none no_change 0 - - "NULL" "NULL" "halo kak" "$b"
        MIX_ARGS=(-f "$dir/opt_in.sql@35" -f "$dir/opt_out.sql@30" -f "$dir/help.sql@15" -f "$dir/unknown.sql@20")
        return
    fi
    local welcome="'Toko Maju: Anda berlangganan promo (2-4 SMS per bulan). Untuk berhenti, balas UNSUBSCRIBE ke 3344. Untuk bantuan, balas BANTUAN.'"
    local none="'{}'::text[]"
    mix_script "$dir" opt_in opt_in subscribed applied "ARRAY['promo']" "ARRAY['none']" "ARRAY['subscribed']" "'welcome'" "$welcome" MAU
    mix_script "$dir" opt_out opt_out unsubscribed applied "ARRAY['promo']" "ARRAY['subscribed']" "ARRAY['unsubscribed']" "'goodbye'" "$welcome" UNSUBSCRIBE
    mix_script "$dir" help help none no_change "$none" "$none" "$none" "'help'" "$welcome" HELP
    mix_script "$dir" unknown unknown none no_change "$none" "$none" "$none" "NULL" "NULL" "halo kak"
    MIX_ARGS=(-f "$dir/opt_in.sql@35" -f "$dir/opt_out.sql@30" -f "$dir/help.sql@15" -f "$dir/unknown.sql@20")
}

# The steady state of a short code in a campaign: every number that texts
# is known and subscribed (a ledger event each), and the tables hold some
# history (each number's first message, two hours ago: outside the
# one-hour window of the facts read). Without subscribers the first
# measurement mostly creates them while later ones update them (the first,
# pgbench by order, came out up to 40 % faster than a second run of
# itself); without history and statistics a fresh connection plans the
# foreign-key checks on inbound_messages as sequential scans of a table
# that then grows under them (callgrind.sh runs without autovacuum).
SEED_SQL="
    INSERT INTO subscribers (msisdn, version)
    SELECT '+62812' || lpad(g::text, 7, '0'), 1 FROM generate_series(0, 99999) g;
    INSERT INTO subscription_events (msisdn, program, from_state, to_state, cause, actor, effective_at)
    SELECT msisdn, 'promo', 'none', 'subscribed', 'system', 'benchmark seed', now() FROM subscribers;
    INSERT INTO subscriptions (msisdn, program, state, since, event_id)
    SELECT msisdn, program, to_state, effective_at, id FROM subscription_events;
    INSERT INTO inbound_messages (gateway, gateway_message_id, msisdn, shortcode, text, raw, received_at)
    SELECT 'generic', 'seed-' || msisdn, msisdn, '3344', 'MAU', '{}', now() - interval '2 hours' FROM subscribers;
    ANALYZE;"
