-- The lean per-message transaction: what a durable per-message write costs
-- on this machine with nothing of keyward's own around it. run.sh measures
-- it with pgbench (lean.pgbench.sql) beside keyward, as a second ceiling.
--
-- A schema like keyward's (a number's row with its version, the message,
-- a ledger event, the current subscription, the reply) without its extra
-- indexes, checks, domains, enums, foreign keys and triggers: one primary
-- key per table, and the one unique key the duplicate check needs.
-- One call of lean.apply does five statements — the version check, the
-- message, the event, the subscription, the reply — in one implicit
-- transaction, and so one commit. No facts read before it.
CREATE SCHEMA lean;
CREATE TABLE lean.subscribers (
    msisdn  text PRIMARY KEY,
    version bigint NOT NULL DEFAULT 0,
    last_inbound_at timestamptz
);
CREATE TABLE lean.inbound_messages (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway            text NOT NULL,
    gateway_message_id text NOT NULL,
    msisdn             text NOT NULL,
    text               text NOT NULL,
    raw                jsonb NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (gateway, gateway_message_id)
);
CREATE TABLE lean.subscription_events (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    msisdn             text NOT NULL,
    program            text NOT NULL,
    to_state           text NOT NULL,
    inbound_message_id bigint NOT NULL,
    effective_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE lean.subscriptions (
    msisdn   text NOT NULL,
    program  text NOT NULL,
    state    text NOT NULL,
    event_id bigint NOT NULL,
    PRIMARY KEY (msisdn, program)
);
CREATE TABLE lean.outbox (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    msisdn             text NOT NULL,
    text               text NOT NULL,
    inbound_message_id bigint NOT NULL
);

CREATE FUNCTION lean.apply(p_msisdn text, p_gateway text, p_id text, p_text text, p_raw jsonb,
                           p_state text, p_reply text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_inbound bigint;
    v_event bigint;
BEGIN
    UPDATE lean.subscribers SET version = version + 1, last_inbound_at = now() WHERE msisdn = p_msisdn;
    INSERT INTO lean.inbound_messages (gateway, gateway_message_id, msisdn, text, raw)
    VALUES (p_gateway, p_id, p_msisdn, p_text, p_raw)
    ON CONFLICT (gateway, gateway_message_id) DO NOTHING
    RETURNING id INTO v_inbound;
    INSERT INTO lean.subscription_events (msisdn, program, to_state, inbound_message_id)
    VALUES (p_msisdn, 'promo', p_state, v_inbound) RETURNING id INTO v_event;
    INSERT INTO lean.subscriptions AS s (msisdn, program, state, event_id)
    VALUES (p_msisdn, 'promo', p_state, v_event)
    ON CONFLICT (msisdn, program) DO UPDATE SET state = EXCLUDED.state, event_id = EXCLUDED.event_id;
    INSERT INTO lean.outbox (msisdn, text, inbound_message_id) VALUES (p_msisdn, p_reply, v_inbound);
    RETURN v_inbound;
END
$$;

-- The same 100,000 numbers as keyward's seed, each subscribed.
INSERT INTO lean.subscribers (msisdn, version)
SELECT '+62812' || lpad(g::text, 7, '0'), 1 FROM generate_series(0, 99999) g;
INSERT INTO lean.subscription_events (msisdn, program, to_state, inbound_message_id)
SELECT msisdn, 'promo', 'subscribed', 0 FROM lean.subscribers;
INSERT INTO lean.subscriptions (msisdn, program, state, event_id)
SELECT msisdn, program, to_state, id FROM lean.subscription_events;
ANALYZE lean.subscribers, lean.subscription_events, lean.subscriptions;
