-- Which gateways exist is the code's list (src/gateways/mod.rs, REGISTRY):
-- adding a gateway takes no migration. The schema keeps the shape of a
-- name (what the code writes is still checked: lower-case ASCII, short).
ALTER DOMAIN gateway_name DROP CONSTRAINT gateway_name_check;
ALTER DOMAIN gateway_name ADD CONSTRAINT gateway_name_check
    CHECK (length(VALUE) BETWEEN 1 AND 32
           AND left(VALUE, 1) BETWEEN 'a' AND 'z'
           AND btrim(VALUE, 'abcdefghijklmnopqrstuvwxyz0123456789_') = '');
ALTER DOMAIN sender_name DROP CONSTRAINT sender_name_check;
ALTER DOMAIN sender_name ADD CONSTRAINT sender_name_check
    CHECK (length(VALUE) BETWEEN 1 AND 32
           AND left(VALUE, 1) BETWEEN 'a' AND 'z'
           AND btrim(VALUE, 'abcdefghijklmnopqrstuvwxyz0123456789_') = '');
