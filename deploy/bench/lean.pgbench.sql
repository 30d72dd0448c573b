-- The lean per-message transaction (lean.sql): one call, five statements,
-- one commit per message, numbers drawn from the same 100,000.
\set n random(0, 99999)
SELECT lean.apply('+62812' || lpad(:n::text, 7, '0'), 'generic', gen_random_uuid()::text, 'MAU',
    '{"id":"x","from":"+6281200000000","to":"3344","text":"MAU"}', 'subscribed',
    'Toko Maju: Anda berlangganan promo (2-4 SMS per bulan). Untuk berhenti, balas UNSUBSCRIBE ke 3344. Untuk bantuan, balas BANTUAN.');
