-- Closing doors found in a security review (issue #11).

-- The audit trail is append-only like the ledger: TRUNCATE is refused too.
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change();

-- A gateway's own timestamp (`received_at`, `message-timestamp`…) is kept
-- in inbound_messages.sent_at as given, but the time the ledger records as
-- the moment of consent is now a separate argument (a new overload with
-- two more arguments; the old one remains, below): the caller passes the
-- gateway's time only when it is plausible (within a bound before arrival),
-- so a sender cannot backdate evidence of consent. And a reply is sent
-- from the configured short code that its text names (`p_reply_from`),
-- not from whatever number the message was addressed to.
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
    p_sender text,
    p_evidence_at timestamptz,  -- the time the ledger records; NULL: now
    p_reply_from text           -- the configured short code the reply is sent from
) RETURNS TABLE (r_status text, r_inbound_id bigint, r_action text, r_program text, r_state text)
LANGUAGE plpgsql AS $$
DECLARE
    v_inbound bigint;
    v_event bigint;
    v_effective timestamptz := LEAST(COALESCE(p_evidence_at, now()), now());
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
        VALUES (p_msisdn, COALESCE(p_reply_from, p_shortcode), p_reply_text, p_sender, p_reply_kind::reply_kind,
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

-- The 21-argument form stays, for instances of the previous release still
-- running against this database during an upgrade: it applies a message as
-- before (the gateway's time as evidence, bounded to 24 h like the new
-- callers do; replies from the addressed number). Drop it in a later
-- release, once no such instance can remain.
CREATE OR REPLACE FUNCTION keyward_apply_inbound(
    p_msisdn text, p_expected_version bigint, p_gateway text, p_gateway_message_id text,
    p_shortcode text, p_text text, p_sent_at timestamptz, p_raw jsonb, p_action text,
    p_program text, p_keyword text, p_language text, p_result_state text, p_outcome text,
    p_programs text[], p_from_states text[], p_to_states text[], p_reply_kind text,
    p_reply_program text, p_reply_text text, p_sender text
) RETURNS TABLE (r_status text, r_inbound_id bigint, r_action text, r_program text, r_state text)
LANGUAGE sql AS $$
    SELECT * FROM keyward_apply_inbound(
        p_msisdn, p_expected_version, p_gateway, p_gateway_message_id, p_shortcode, p_text,
        p_sent_at, p_raw, p_action, p_program, p_keyword, p_language, p_result_state, p_outcome,
        p_programs, p_from_states, p_to_states, p_reply_kind, p_reply_program, p_reply_text,
        p_sender,
        CASE WHEN p_sent_at >= now() - interval '24 hours' THEN p_sent_at END,
        NULL::text)
$$;
