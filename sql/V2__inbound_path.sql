-- The inbound path's write: one function that applies a decision made by
-- keyward's core in a single statement (and so a single commit).

-- Applies one inbound message: stores it, appends the ledger events,
-- moves the subscriptions, queues the reply. Everything the function does
-- was decided by the caller from facts read at `p_expected_version`; if the
-- number moved on since, nothing is written and 'conflict' is returned so
-- the caller can decide again. A gateway message id seen before returns
-- 'duplicate' with the first outcome and writes nothing.
CREATE FUNCTION keyward_apply_inbound(
    p_msisdn text,
    p_expected_version bigint,
    p_gateway text,
    p_gateway_message_id text,
    p_shortcode text,
    p_text text,
    p_sent_at timestamptz,
    p_raw jsonb,
    p_action text,
    p_program text,
    p_keyword text,
    p_language text,
    p_result_state text,
    p_outcome text,
    p_programs text[],       -- one entry per state change
    p_from_states text[],
    p_to_states text[],
    p_reply_kind text,       -- NULL: no reply
    p_reply_program text,
    p_reply_text text,
    p_sender text
) RETURNS TABLE (r_status text, r_inbound_id bigint, r_action text, r_program text, r_state text)
LANGUAGE plpgsql AS $$
DECLARE
    v_inbound bigint;
    v_event bigint;
    v_effective timestamptz := LEAST(COALESCE(p_sent_at, now()), now());
BEGIN
    UPDATE subscribers SET version = version + 1, last_inbound_at = now()
     WHERE subscribers.msisdn = p_msisdn AND version = p_expected_version;
    IF NOT FOUND THEN
        IF p_expected_version <> 0 THEN
            RETURN QUERY SELECT 'conflict'::text, NULL::bigint, NULL::text, NULL::text, NULL::text;
            RETURN;
        END IF;
        INSERT INTO subscribers (msisdn, version, last_inbound_at) VALUES (p_msisdn, 1, now())
            ON CONFLICT (msisdn) DO NOTHING;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'conflict'::text, NULL::bigint, NULL::text, NULL::text, NULL::text;
            RETURN;
        END IF;
    END IF;

    INSERT INTO inbound_messages AS m
        (gateway, gateway_message_id, msisdn, shortcode, text, sent_at, raw,
         action, program, keyword, language, result_state, outcome)
    VALUES (p_gateway, p_gateway_message_id, p_msisdn, p_shortcode, p_text, p_sent_at, p_raw,
            p_action::message_action, p_program, p_keyword, p_language,
            p_result_state::subscription_state, p_outcome)
    ON CONFLICT (gateway, gateway_message_id) DO NOTHING
    RETURNING m.id INTO v_inbound;
    IF v_inbound IS NULL THEN
        -- The version bump above is harmless; nothing else is written.
        RETURN QUERY
            SELECT 'duplicate'::text, d.id, d.action::text, d.program, d.result_state::text
              FROM inbound_messages d
             WHERE d.gateway = p_gateway AND d.gateway_message_id = p_gateway_message_id;
        RETURN;
    END IF;

    FOR i IN 1 .. COALESCE(array_length(p_programs, 1), 0) LOOP
        INSERT INTO subscription_events
            (msisdn, program, from_state, to_state, cause, inbound_message_id, effective_at)
        VALUES (p_msisdn, p_programs[i], p_from_states[i]::subscription_state,
                p_to_states[i]::subscription_state, 'inbound', v_inbound, v_effective)
        RETURNING id INTO v_event;
        INSERT INTO subscriptions AS s (msisdn, program, state, since, event_id, last_opt_out_at)
        VALUES (p_msisdn, p_programs[i], p_to_states[i]::subscription_state, v_effective, v_event,
                CASE WHEN p_to_states[i] = 'unsubscribed' THEN v_effective END)
        ON CONFLICT (msisdn, program) DO UPDATE
            SET state = EXCLUDED.state,
                since = EXCLUDED.since,
                event_id = EXCLUDED.event_id,
                last_opt_out_at = COALESCE(EXCLUDED.last_opt_out_at, s.last_opt_out_at);
    END LOOP;

    IF p_reply_kind IS NOT NULL THEN
        INSERT INTO outbox (msisdn, shortcode, text, sender, kind, program, inbound_message_id, in_reply_to)
        VALUES (p_msisdn, p_shortcode, p_reply_text, p_sender, p_reply_kind::reply_kind,
                p_reply_program, v_inbound, p_gateway_message_id);
        IF p_reply_kind IN ('goodbye', 'fallback') THEN
            UPDATE subscribers
               SET last_goodbye_at = CASE WHEN p_reply_kind = 'goodbye' THEN now() ELSE last_goodbye_at END,
                   last_fallback_at = CASE WHEN p_reply_kind = 'fallback' THEN now() ELSE last_fallback_at END
             WHERE subscribers.msisdn = p_msisdn;
        END IF;
    END IF;

    RETURN QUERY SELECT 'applied'::text, v_inbound, p_action, p_program, p_result_state;
END
$$;

-- Parts of a concatenated message that a gateway delivers one by one
-- (Vonage). Kept until all parts are in; then the whole text is processed
-- once as one inbound message, and the parts point at it.
CREATE TABLE inbound_parts (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway            text NOT NULL CHECK (is_gateway(gateway)),
    gateway_message_id text NOT NULL CHECK (length(gateway_message_id) BETWEEN 1 AND 255),
    msisdn             text NOT NULL CHECK (is_msisdn(msisdn)),
    reference          text NOT NULL CHECK (length(reference) BETWEEN 1 AND 64),
    total              smallint NOT NULL CHECK (total BETWEEN 1 AND 255),
    part               smallint NOT NULL CHECK (part BETWEEN 1 AND total),
    text               text NOT NULL,
    sent_at            timestamptz,
    raw                jsonb NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now(),
    inbound_message_id bigint REFERENCES inbound_messages (id),
    CONSTRAINT inbound_parts_gateway_id_key UNIQUE (gateway, gateway_message_id)
);
CREATE INDEX inbound_parts_pending_idx ON inbound_parts (msisdn, gateway, reference)
    WHERE inbound_message_id IS NULL;
