-- Replies that were possibly sent (see V8): how often it happened, and the
-- one automatic re-send of an `unknown` reply.
--
-- `uncertain_attempts` counts attempts that ended `unknown`. The first one
-- leaves the reply due again at `next_attempt_at` (the dispatcher sets a
-- delay, so that a delivery report naming the reply can settle it first);
-- from the second on, nothing is sent again without an operator. So a
-- reply reaches a subscriber at most twice, and is never silently lost.
ALTER TABLE outbox
    ADD COLUMN uncertain_attempts integer NOT NULL DEFAULT 0 CHECK (uncertain_attempts >= 0),
    ADD CHECK (status <> 'unknown' OR uncertain_attempts > 0);

-- The claim reads due re-sends from here: almost always empty, so the
-- extra branch of the claim costs one probe of an empty index.
CREATE INDEX outbox_unknown_due_idx ON outbox (next_attempt_at)
    WHERE status = 'unknown' AND uncertain_attempts = 1;
-- /metrics counts every `unknown` reply (an operator's to look at) from
-- here, not from a scan of the outbox.
CREATE INDEX outbox_unknown_idx ON outbox (id) WHERE status = 'unknown';

-- `unknown` ranks with `sending`: any delivery report moves it forward
-- (Kannel's name the reply by its outbox id, so one can settle an
-- `unknown` reply before its re-send).
CREATE OR REPLACE FUNCTION outbox_rank(s outbox_status) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE s WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'unknown' THEN 1
                        WHEN 'sent' THEN 2 ELSE 3 END $$;
