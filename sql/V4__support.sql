-- Support staff: staff opt-outs in the ledger, console sessions, and the
-- indexes their read paths need.

-- A staff member records an opt-out asked for by phone or mail. Like
-- keyward_provider_opt_out: the number's version is bumped (so an inbound
-- message being decided at the same moment decides again, on the new
-- facts), every program still open (or just `p_program`) moves to
-- unsubscribed with cause 'staff', the staff member as actor and their
-- reason, and queued replies other than opt-out confirmations are
-- cancelled. With `p_goodbye_text` a confirmation SMS is queued as well.
--
-- Returns the programs that changed state (possibly none), or NULL when
-- `p_program` is NULL and the number was never seen: "all programs" of a
-- stranger names nothing to record.
CREATE FUNCTION keyward_staff_opt_out(
    p_msisdn text,
    p_program text,
    p_actor text,
    p_reason text,
    p_goodbye_text text,     -- NULL: no confirmation SMS
    p_goodbye_program text,
    p_shortcode text,
    p_sender text
) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    v_program text;
    v_from subscription_state;
    v_event bigint;
    v_changed text[] := '{}';
BEGIN
    IF p_program IS NULL THEN
        -- Locks the row until commit, like every other writer.
        UPDATE subscribers SET version = version + 1 WHERE msisdn = p_msisdn;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    ELSE
        INSERT INTO subscribers (msisdn) VALUES (p_msisdn)
            ON CONFLICT (msisdn) DO UPDATE SET version = subscribers.version + 1;
    END IF;
    FOR v_program, v_from IN
        SELECT s.program, s.state FROM subscriptions s
         WHERE s.msisdn = p_msisdn AND s.state <> 'unsubscribed'
           AND (p_program IS NULL OR s.program = p_program)
        UNION
        SELECT p_program, 'none'::subscription_state
         WHERE p_program IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.msisdn = p_msisdn AND s.program = p_program)
        ORDER BY 1
    LOOP
        INSERT INTO subscription_events
            (msisdn, program, from_state, to_state, cause, actor, reason, effective_at)
        VALUES (p_msisdn, v_program, v_from, 'unsubscribed', 'staff', p_actor, p_reason, now())
        RETURNING id INTO v_event;
        INSERT INTO subscriptions AS s (msisdn, program, state, since, event_id, last_opt_out_at)
        VALUES (p_msisdn, v_program, 'unsubscribed', now(), v_event, now())
        ON CONFLICT (msisdn, program) DO UPDATE
            SET state = 'unsubscribed', since = now(), event_id = EXCLUDED.event_id,
                last_opt_out_at = now();
        v_changed := v_changed || v_program;
    END LOOP;
    UPDATE outbox SET status = 'cancelled', last_error = 'opted out by staff',
                      lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE msisdn = p_msisdn AND status = 'queued' AND kind <> 'goodbye'
       AND (p_program IS NULL OR program = p_program);
    IF p_goodbye_text IS NOT NULL AND cardinality(v_changed) > 0 THEN
        INSERT INTO outbox (msisdn, shortcode, text, sender, kind, program)
        VALUES (p_msisdn, p_shortcode, p_goodbye_text, p_sender, 'goodbye', p_goodbye_program);
        UPDATE subscribers SET last_goodbye_at = now() WHERE msisdn = p_msisdn;
    END IF;
    RETURN v_changed;
END
$$;

-- Sessions of the web console, server-side: signing out, revoking the
-- token or expiry end them at once, on every instance.
CREATE TABLE console_sessions (
    id_sha256  bytea PRIMARY KEY CHECK (length(id_sha256) = 32),
    token_id   bigint NOT NULL REFERENCES api_tokens (id),
    csrf       text NOT NULL CHECK (length(csrf) >= 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);

-- The timeline of a number: its ledger events newest first, and the
-- consent export and daily stats by time.
CREATE INDEX subscription_events_msisdn_recorded_idx ON subscription_events (msisdn, recorded_at DESC, id DESC);
CREATE INDEX subscription_events_recorded_idx ON subscription_events (recorded_at);
