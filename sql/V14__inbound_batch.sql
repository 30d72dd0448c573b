-- Group commit on the inbound path (issue #17): several inbound messages
-- applied by one statement and committed together.
--
-- keyward_apply_inbound_batch does for n messages what n calls of
-- keyward_apply_inbound do (sql/V7__security.sql), with one execution of
-- each of its statements for the whole batch instead of one per message:
-- statement start-up, the round trip and the commit are paid once. Every
-- argument but the changes is an array with one entry per message; the
-- changes (state moves) of all messages are flattened, `p_change_of`
-- naming the message (1-based) each belongs to.
--
-- The caller puts at most one message per number and per gateway message
-- id in a batch (a second one waits for the next batch): each message is
-- then decided on facts no batch-mate changes, exactly as if it were
-- applied alone. Per message the answer is the single function's:
-- 'applied', 'duplicate' (nothing written) or 'conflict' (the number's
-- version moved on; nothing written, decide again). A conflict or a
-- duplicate does not stop its batch-mates; an error (a constraint a
-- message breaks) fails the statement, and the caller then applies each
-- message alone, so only the faulty one fails.
CREATE FUNCTION keyward_apply_inbound_batch(
    p_msisdn text[],
    p_expected_version bigint[],
    p_gateway text[],
    p_gateway_message_id text[],
    p_shortcode text[],
    p_text text[],
    p_sent_at timestamptz[],
    p_raw jsonb[],
    p_action text[],
    p_program text[],
    p_keyword text[],
    p_language text[],
    p_result_state text[],
    p_outcome text[],
    p_change_of integer[],      -- per state change: the message it belongs to
    p_change_programs text[],
    p_from_states text[],
    p_to_states text[],
    p_reply_kind text[],        -- per message; NULL: no reply
    p_reply_program text[],
    p_reply_text text[],
    p_sender text[],
    p_evidence_at timestamptz[], -- the time the ledger records; NULL: now
    p_reply_from text[]          -- the configured short code the reply is sent from
) RETURNS TABLE (r_index integer, r_status text, r_inbound_id bigint,
                 r_action text, r_program text, r_state text)
LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(array_length(p_msisdn, 1), 0);
    v_ok integer[];       -- messages whose version check passed
    v_stored integer[];   -- of those, the messages stored (not duplicates)
    v_ids bigint[];       -- their inbound ids, in the same order
BEGIN
    IF (SELECT count(DISTINCT m) FROM unnest(p_msisdn) m) <> n
       OR (SELECT count(DISTINCT (g, i)) FROM unnest(p_gateway, p_gateway_message_id) AS x(g, i)) <> n THEN
        RAISE EXCEPTION 'keyward_apply_inbound_batch: a number or a gateway message id appears twice'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The version check, every number at once (in the caller's order,
    -- which is the numbers' order, so two batches lock rows alike).
    WITH bumped AS (
        UPDATE subscribers s SET version = s.version + 1, last_inbound_at = now()
          FROM unnest(p_msisdn, p_expected_version) WITH ORDINALITY AS b(msisdn, expected, i)
         WHERE s.msisdn = b.msisdn AND s.version = b.expected
        RETURNING b.i::integer AS i
    )
    SELECT coalesce(array_agg(i), '{}') INTO v_ok FROM bumped;
    IF cardinality(v_ok) < n THEN
        -- Numbers never seen (expected version 0, no row yet).
        WITH created AS (
            INSERT INTO subscribers (msisdn, version, last_inbound_at)
            SELECT b.msisdn, 1, now()
              FROM unnest(p_msisdn, p_expected_version) WITH ORDINALITY AS b(msisdn, expected, i)
             WHERE b.expected = 0 AND b.i <> ALL (v_ok)
             ORDER BY b.i
            ON CONFLICT (msisdn) DO NOTHING
            RETURNING msisdn
        )
        SELECT v_ok || coalesce(array_agg(b.i::integer), '{}') INTO v_ok
          FROM created c JOIN unnest(p_msisdn) WITH ORDINALITY AS b(msisdn, i) ON b.msisdn = c.msisdn;
    END IF;

    WITH stored AS (
        INSERT INTO inbound_messages AS m
            (gateway, gateway_message_id, msisdn, shortcode, text, sent_at, raw,
             action, program, keyword, language, result_state, outcome)
        SELECT b.gateway, b.gid, b.msisdn, b.shortcode, b.text, b.sent_at, b.raw,
               b.action::message_action, b.program, b.keyword, b.language,
               b.result_state::subscription_state, b.outcome
          FROM unnest(p_gateway, p_gateway_message_id, p_msisdn, p_shortcode, p_text, p_sent_at,
                      p_raw, p_action, p_program, p_keyword, p_language, p_result_state, p_outcome)
               WITH ORDINALITY AS b(gateway, gid, msisdn, shortcode, text, sent_at, raw, action,
                                    program, keyword, language, result_state, outcome, i)
         WHERE b.i = ANY (v_ok)
         ORDER BY b.i
        ON CONFLICT (gateway, gateway_message_id) DO NOTHING
        RETURNING m.id, m.gateway, m.gateway_message_id
    )
    SELECT coalesce(array_agg(b.i::integer ORDER BY b.i), '{}'), coalesce(array_agg(s.id ORDER BY b.i), '{}')
      INTO v_stored, v_ids
      FROM stored s
      JOIN unnest(p_gateway, p_gateway_message_id) WITH ORDINALITY AS b(gateway, gid, i)
        ON b.gateway = s.gateway AND b.gid = s.gateway_message_id;

    IF cardinality(p_change_of) > 0 THEN
        WITH events AS (
            INSERT INTO subscription_events
                (msisdn, program, from_state, to_state, cause, inbound_message_id, effective_at)
            SELECT p_msisdn[c.i], c.program, c.from_state::subscription_state,
                   c.to_state::subscription_state, 'inbound', m.id,
                   LEAST(COALESCE(p_evidence_at[c.i], now()), now())
              FROM unnest(p_change_of, p_change_programs, p_from_states, p_to_states)
                   WITH ORDINALITY AS c(i, program, from_state, to_state, k)
              JOIN unnest(v_stored, v_ids) AS m(i, id) ON m.i = c.i
             ORDER BY c.k
            RETURNING id, msisdn, program, to_state, effective_at
        )
        INSERT INTO subscriptions AS s (msisdn, program, state, since, event_id, last_opt_out_at)
        SELECT e.msisdn, e.program, e.to_state, e.effective_at, e.id,
               CASE WHEN e.to_state = 'unsubscribed' THEN e.effective_at END
          FROM events e
        ON CONFLICT (msisdn, program) DO UPDATE
            SET state = EXCLUDED.state,
                since = EXCLUDED.since,
                event_id = EXCLUDED.event_id,
                last_opt_out_at = COALESCE(EXCLUDED.last_opt_out_at, s.last_opt_out_at);
    END IF;

    INSERT INTO outbox (msisdn, shortcode, text, sender, kind, program, inbound_message_id, in_reply_to)
    SELECT p_msisdn[m.i], COALESCE(p_reply_from[m.i], p_shortcode[m.i]), p_reply_text[m.i],
           p_sender[m.i], p_reply_kind[m.i]::reply_kind, p_reply_program[m.i], m.id,
           p_gateway_message_id[m.i]
      FROM unnest(v_stored, v_ids) AS m(i, id)
     WHERE p_reply_kind[m.i] IS NOT NULL
     ORDER BY m.i;

    IF 'goodbye' = ANY (p_reply_kind) OR 'fallback' = ANY (p_reply_kind) THEN
        UPDATE subscribers s
           SET last_goodbye_at = CASE WHEN p_reply_kind[m.i] = 'goodbye' THEN now() ELSE s.last_goodbye_at END,
               last_fallback_at = CASE WHEN p_reply_kind[m.i] = 'fallback' THEN now() ELSE s.last_fallback_at END
          FROM unnest(v_stored) AS m(i)
         WHERE s.msisdn = p_msisdn[m.i] AND p_reply_kind[m.i] IN ('goodbye', 'fallback');
    END IF;

    -- A duplicate found only now (another batch stored the same gateway
    -- id since the facts were read) answers with the stored message, read
    -- by its key; the lateral lookup keeps that an index probe per message.
    RETURN QUERY
        SELECT b.i::integer,
               CASE WHEN m.id IS NOT NULL THEN 'applied'
                    WHEN b.i = ANY (v_ok) THEN 'duplicate'
                    ELSE 'conflict' END,
               coalesce(m.id, d.id),
               CASE WHEN m.id IS NOT NULL THEN p_action[b.i] ELSE d.action END,
               CASE WHEN m.id IS NOT NULL THEN p_program[b.i] ELSE d.program END,
               CASE WHEN m.id IS NOT NULL THEN p_result_state[b.i] ELSE d.result_state END
          FROM generate_subscripts(p_msisdn, 1) AS b(i)
          LEFT JOIN unnest(v_stored, v_ids) AS m(i, id) ON m.i = b.i
          LEFT JOIN LATERAL (
              SELECT d.id, d.action::text, d.program::text, d.result_state::text
                FROM inbound_messages d
               WHERE m.id IS NULL AND b.i = ANY (v_ok)
                 AND d.gateway = p_gateway[b.i] AND d.gateway_message_id = p_gateway_message_id[b.i]
               LIMIT 1  -- (the key is unique; the limit keeps the planner from a hash join)
          ) AS d(id, action, program, result_state) ON true
         ORDER BY b.i;
END
$$;
