-- Single-column rules become domains.
--
-- A table CHECK is read back from its stored form and planned again by
-- every statement that writes the table, and a CHECK that calls a SQL
-- function also parses that function's body each time: measured with
-- callgrind on the inbound path, the CHECKs cost a third of PostgreSQL's
-- instructions per message. A domain's rule is planned once per server
-- process (the type cache keeps it), so the same rules move to domains.
-- The rules themselves do not change.
--
-- Written without regular expressions: PostgreSQL's regex engine costs
-- about 19,000 instructions per match, these expressions a small fraction.
-- `msisdn` is exactly ^\+[1-9][0-9]{6,14}$ and `program_name` exactly
-- ^[a-z0-9][a-z0-9_-]{0,63}$ (tests/api/schema.rs compares them).
--
-- Columns bound directly to a statement parameter now infer the domain as
-- the parameter's type, which client drivers may not know: statements cast
-- such parameters (`$1::text`). Results still arrive as text.
--
-- Changing a column's type to a domain rewrites the table once.

CREATE DOMAIN msisdn AS text
    CHECK (length(VALUE) BETWEEN 8 AND 16
           AND left(VALUE, 1) = '+'
           AND substr(VALUE, 2, 1) <> '0'
           AND btrim(substr(VALUE, 2), '0123456789') = '');
CREATE DOMAIN program_name AS text
    CHECK (length(VALUE) BETWEEN 1 AND 64
           AND left(VALUE, 1) NOT IN ('_', '-')
           AND btrim(VALUE, 'abcdefghijklmnopqrstuvwxyz0123456789_-') = '');
CREATE DOMAIN gateway_name AS text
    CHECK (VALUE IN ('twilio', 'vonage', 'plivo', 'telnyx', 'infobip', 'kannel', 'jasmin', 'generic'));
-- Where replies go out: a gateway, or 'log' (written to the log, not sent).
CREATE DOMAIN sender_name AS text
    CHECK (VALUE IN ('log', 'twilio', 'vonage', 'plivo', 'telnyx', 'infobip', 'kannel', 'jasmin', 'generic'));
-- A gateway's own id of a message.
CREATE DOMAIN message_ref AS text CHECK (length(VALUE) BETWEEN 1 AND 255);
CREATE DOMAIN short_code AS text CHECK (length(VALUE) BETWEEN 1 AND 32);
CREATE DOMAIN sms_text AS text CHECK (length(VALUE) BETWEEN 1 AND 1600);
CREATE DOMAIN language_code AS text CHECK (VALUE IN ('id', 'en', 'ru'));
CREATE DOMAIN inbound_outcome AS text CHECK (VALUE IN ('applied', 'no_change', 'stale', 'expired'));

ALTER TABLE inbound_messages
    DROP CONSTRAINT inbound_messages_gateway_check,
    DROP CONSTRAINT inbound_messages_gateway_message_id_check,
    DROP CONSTRAINT inbound_messages_msisdn_check,
    DROP CONSTRAINT inbound_messages_shortcode_check,
    DROP CONSTRAINT inbound_messages_program_check,
    DROP CONSTRAINT inbound_messages_language_check,
    DROP CONSTRAINT inbound_messages_outcome_check,
    ALTER COLUMN gateway TYPE gateway_name,
    ALTER COLUMN gateway_message_id TYPE message_ref,
    ALTER COLUMN msisdn TYPE msisdn,
    ALTER COLUMN shortcode TYPE short_code,
    ALTER COLUMN program TYPE program_name,
    ALTER COLUMN language TYPE language_code,
    ALTER COLUMN outcome TYPE inbound_outcome;

ALTER TABLE subscription_events
    DROP CONSTRAINT subscription_events_msisdn_check,
    DROP CONSTRAINT subscription_events_program_check,
    ALTER COLUMN msisdn TYPE msisdn,
    ALTER COLUMN program TYPE program_name;

ALTER TABLE subscriptions
    DROP CONSTRAINT subscriptions_msisdn_check,
    DROP CONSTRAINT subscriptions_program_check,
    ALTER COLUMN msisdn TYPE msisdn,
    ALTER COLUMN program TYPE program_name;

ALTER TABLE subscribers
    DROP CONSTRAINT subscribers_msisdn_check,
    ALTER COLUMN msisdn TYPE msisdn;

ALTER TABLE outbox
    DROP CONSTRAINT outbox_msisdn_check,
    DROP CONSTRAINT outbox_shortcode_check,
    DROP CONSTRAINT outbox_text_check,
    DROP CONSTRAINT outbox_sender_check,
    DROP CONSTRAINT outbox_program_check,
    ALTER COLUMN msisdn TYPE msisdn,
    ALTER COLUMN shortcode TYPE short_code,
    ALTER COLUMN text TYPE sms_text,
    ALTER COLUMN sender TYPE sender_name,
    ALTER COLUMN program TYPE program_name;

ALTER TABLE inbound_parts
    DROP CONSTRAINT inbound_parts_gateway_check,
    DROP CONSTRAINT inbound_parts_gateway_message_id_check,
    DROP CONSTRAINT inbound_parts_msisdn_check,
    ALTER COLUMN gateway TYPE gateway_name,
    ALTER COLUMN gateway_message_id TYPE message_ref,
    ALTER COLUMN msisdn TYPE msisdn;

ALTER TABLE audit_log
    DROP CONSTRAINT audit_log_msisdn_check,
    ALTER COLUMN msisdn TYPE msisdn;

DROP FUNCTION is_sender(text);
DROP FUNCTION is_gateway(text);
DROP FUNCTION is_program_name(text);
DROP FUNCTION is_msisdn(text);
