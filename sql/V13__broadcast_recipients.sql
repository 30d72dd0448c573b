-- Broadcast recipients in a narrow table of their own (#15): planning a
-- broadcast to a million subscribers wrote a million wide outbox rows, each
-- through the outbox's seven indexes, its checks and a foreign key
-- (~29,000 rows/s here). A recipient is now a short row; it becomes an
-- outbox row only when the gate lets it go, at the sender's pace.
--
-- status: `planned` (waiting for `due_at`; `reason` says for what: window,
-- gap, not_before, rate, retry; null when due at once), `skipped` (the
-- gate said no: `reason`), `released` (the gate let it go: the outbox row
-- with the same broadcast and number holds the rest of its story).

CREATE TYPE recipient_status AS ENUM ('planned', 'skipped', 'released');

-- No foreign key to `broadcasts`: its check, run per row, was half of
-- what writing a recipient cost (6 of 13 µs, measured on 1,000,000 rows).
-- A recipient is only written with its broadcast, in the transaction that
-- creates it, and a broadcast is never deleted (the trigger below).
CREATE TABLE broadcast_recipients (
    broadcast_id bigint NOT NULL,
    -- From `subscribers` or parsed by keyward (E.164); its outbox row
    -- checks the domain again.
    msisdn       text NOT NULL,
    status       recipient_status NOT NULL,
    due_at       timestamptz NOT NULL,
    reason       text CHECK (length(reason) <= 64),
    -- The language its text is in; `text` only when the recipient has
    -- values of its own (else the broadcast's `messages` has it).
    language     language_code,
    text         text CHECK (length(text) BETWEEN 1 AND 1600),
    decided_at   timestamptz NOT NULL,
    PRIMARY KEY (broadcast_id, msisdn),
    CHECK (status <> 'skipped' OR reason IS NOT NULL),
    CHECK (text IS NOT NULL OR language IS NOT NULL)
);
-- What the claim reads: each active broadcast's due recipients, in due
-- order. Led by the broadcast, so that a paused broadcast's million due
-- recipients cost the claim nothing (with `(due_at)` alone, every claim
-- stepped over all of them: 288 ms per claim with 200,000 paused).
CREATE INDEX broadcast_recipients_due_idx ON broadcast_recipients (broadcast_id, due_at)
    WHERE status = 'planned';

CREATE FUNCTION broadcasts_are_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'broadcasts are evidence: % is refused on %', TG_OP, TG_TABLE_NAME;
END $$;
CREATE TRIGGER broadcasts_no_delete BEFORE DELETE ON broadcasts
    FOR EACH ROW EXECUTE FUNCTION broadcasts_are_kept();
CREATE TRIGGER broadcasts_no_truncate BEFORE TRUNCATE ON broadcasts
    FOR EACH STATEMENT EXECUTE FUNCTION broadcasts_are_kept();

-- Each language's message as sent to recipients without values of their
-- own: the template rendered once, with its stop sentence.
ALTER TABLE broadcasts ADD COLUMN messages jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(messages) = 'object');

-- Recipients planned before this migration were outbox rows, where the
-- claim no longer looks: those still waiting (none in a fresh database)
-- move here with their text; the never-tried outbox rows go (they were
-- only plans), a retried one stays as the outbox row of its recipient.
INSERT INTO broadcast_recipients (broadcast_id, msisdn, status, due_at, reason, language,
                                  text, decided_at)
SELECT o.broadcast_id, o.msisdn, 'planned', o.next_attempt_at, o.gate_reason,
       NULL, o.text, COALESCE(o.gated_at, o.created_at)
  FROM outbox o
 WHERE o.broadcast_id IS NOT NULL AND o.status = 'planned';
INSERT INTO broadcast_recipients (broadcast_id, msisdn, status, due_at, reason, language,
                                  text, decided_at)
SELECT o.broadcast_id, o.msisdn, 'skipped', o.next_attempt_at, o.gate_reason, NULL, o.text,
       COALESCE(o.gated_at, o.created_at)
  FROM outbox o
 WHERE o.broadcast_id IS NOT NULL AND o.status = 'skipped';
INSERT INTO broadcast_recipients (broadcast_id, msisdn, status, due_at, reason, language,
                                  text, decided_at)
SELECT o.broadcast_id, o.msisdn, 'released', o.next_attempt_at, NULL, NULL, o.text,
       COALESCE(o.gated_at, o.created_at)
  FROM outbox o
 WHERE o.broadcast_id IS NOT NULL AND o.status NOT IN ('planned', 'skipped');
DELETE FROM outbox WHERE broadcast_id IS NOT NULL AND status IN ('planned', 'skipped')
                    AND attempts = 0;
