-- Replies going out: the provider's "this number opted out" enters the
-- ledger as cause 'provider', and nothing more is sent to that number.

-- A provider refused a send because the number opted out with it (Twilio
-- 21610, Telnyx 40300, Vonage "number barred"). Every program of the
-- number (and `p_program`, if the number had no row for it) moves to
-- unsubscribed with the provider as the cause; queued replies other than
-- opt-out confirmations are cancelled. Returns the number of programs that
-- changed state.
CREATE FUNCTION keyward_provider_opt_out(p_msisdn text, p_program text, p_actor text, p_reason text)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_program text;
    v_from subscription_state;
    v_event bigint;
    v_changed integer := 0;
BEGIN
    INSERT INTO subscribers (msisdn) VALUES (p_msisdn)
        ON CONFLICT (msisdn) DO UPDATE SET version = subscribers.version + 1;
    FOR v_program, v_from IN
        SELECT s.program, s.state FROM subscriptions s
         WHERE s.msisdn = p_msisdn AND s.state <> 'unsubscribed'
        UNION
        SELECT p_program, 'none'::subscription_state
         WHERE p_program IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.msisdn = p_msisdn AND s.program = p_program)
    LOOP
        INSERT INTO subscription_events
            (msisdn, program, from_state, to_state, cause, actor, reason, effective_at)
        VALUES (p_msisdn, v_program, v_from, 'unsubscribed', 'provider', p_actor, p_reason, now())
        RETURNING id INTO v_event;
        INSERT INTO subscriptions AS s (msisdn, program, state, since, event_id, last_opt_out_at)
        VALUES (p_msisdn, v_program, 'unsubscribed', now(), v_event, now())
        ON CONFLICT (msisdn, program) DO UPDATE
            SET state = 'unsubscribed', since = now(), event_id = EXCLUDED.event_id,
                last_opt_out_at = now();
        v_changed := v_changed + 1;
    END LOOP;
    UPDATE outbox SET status = 'cancelled', last_error = 'number opted out with the provider',
                      lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE msisdn = p_msisdn AND status = 'queued' AND kind <> 'goodbye';
    RETURN v_changed;
END
$$;

-- Delivery receipts only move a reply forward: a late 'sent' never
-- overwrites 'delivered'.
CREATE FUNCTION outbox_rank(s outbox_status) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE s WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2 ELSE 3 END $$;
