# The inbound mix as pgbench scripts, sourced by run.sh and callgrind.sh.
#
#   write_mix DIR   writes one script per kind of message into DIR (from
#                   inbound.pgbench.sql.in) and sets MIX_ARGS to pgbench's
#                   -f arguments, weighted like the request mix of
#                   gen_requests.py.

# name action state outcome programs from to reply_kind reply_text text
mix_script() {
    sed -e "s|@ACTION@|$3|g" -e "s|@STATE@|$4|g" -e "s|@OUTCOME@|$5|g" \
        -e "s|@PROGRAMS@|$6|g" -e "s|@FROM@|$7|g" -e "s|@TO@|$8|g" \
        -e "s|@REPLY_KIND@|$9|g" -e "s|@REPLY_TEXT@|${10}|g" -e "s|@TEXT@|${11}|g" \
        "$(dirname "${BASH_SOURCE[0]}")/inbound.pgbench.sql.in" > "$1/$2.sql"
}

write_mix() {
    local dir=$1
    local welcome="'Toko Maju: Anda berlangganan promo (2-4 SMS per bulan). Untuk berhenti, balas UNSUBSCRIBE ke 3344. Untuk bantuan, balas BANTUAN.'"
    local none="'{}'::text[]"
    mix_script "$dir" opt_in opt_in subscribed applied "ARRAY['promo']" "ARRAY['none']" "ARRAY['subscribed']" "'welcome'" "$welcome" MAU
    mix_script "$dir" opt_out opt_out unsubscribed applied "ARRAY['promo']" "ARRAY['subscribed']" "ARRAY['unsubscribed']" "'goodbye'" "$welcome" UNSUBSCRIBE
    mix_script "$dir" help help none no_change "$none" "$none" "$none" "'help'" "$welcome" HELP
    mix_script "$dir" unknown unknown none no_change "$none" "$none" "$none" "NULL" "NULL" "halo kak"
    MIX_ARGS=(-f "$dir/opt_in.sql@35" -f "$dir/opt_out.sql@30" -f "$dir/help.sql@15" -f "$dir/unknown.sql@20")
}
