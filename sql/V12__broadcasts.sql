-- Broadcasts (#15): a business's messages to a program's subscribers, sent
-- through the outbox only when the send gate allows, with every decision
-- kept on the recipient's row.

CREATE TYPE broadcast_status AS ENUM ('active', 'paused', 'cancelled');

CREATE TABLE broadcasts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program         program_name NOT NULL,
    kind            reply_kind NOT NULL CHECK (kind IN ('marketing', 'notice')),
    -- The text per language as written (templates): {"id": "…", "en": "…"}.
    texts           jsonb NOT NULL CHECK (jsonb_typeof(texts) = 'object'),
    shortcode       short_code NOT NULL,
    sender          sender_name NOT NULL,
    send_at         timestamptz NOT NULL,
    valid_until     timestamptz,
    status          broadcast_status NOT NULL DEFAULT 'active',
    -- The program's sending policy when the broadcast was made: the
    -- evidence of which rules every decision was taken under.
    policy          jsonb NOT NULL,
    created_by      text NOT NULL CHECK (length(created_by) BETWEEN 1 AND 100),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- A retried create (same key, same creator) is the same broadcast.
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_sha256  bytea NOT NULL CHECK (length(request_sha256) = 32),
    recipients      integer NOT NULL CHECK (recipients >= 0),
    CHECK (kind <> 'marketing' OR valid_until IS NOT NULL),
    CHECK (valid_until IS NULL OR valid_until > send_at),
    CONSTRAINT broadcasts_idempotency_key UNIQUE (created_by, idempotency_key)
);
CREATE INDEX broadcasts_created_idx ON broadcasts (created_at DESC, id DESC);

ALTER TABLE outbox
    ADD COLUMN broadcast_id bigint REFERENCES broadcasts (id),
    -- The gate's last word on a broadcast row: why it was deferred or
    -- skipped (`null` once it said send), and when it said it.
    ADD COLUMN gate_reason  text CHECK (length(gate_reason) <= 64),
    ADD COLUMN gated_at     timestamptz,
    ADD CONSTRAINT outbox_planned_is_broadcast
        CHECK (status NOT IN ('planned', 'skipped') OR broadcast_id IS NOT NULL),
    ADD CONSTRAINT outbox_broadcast_kind
        CHECK ((broadcast_id IS NULL) = (kind NOT IN ('marketing', 'notice'))),
    ADD CONSTRAINT outbox_skipped_says_why
        CHECK (status <> 'skipped' OR gate_reason IS NOT NULL);

-- One row per recipient of a broadcast: a retried plan cannot add a second.
CREATE UNIQUE INDEX outbox_broadcast_recipient_idx ON outbox (broadcast_id, msisdn)
    WHERE broadcast_id IS NOT NULL;
-- What the broadcast claim reads, in due order.
CREATE INDEX outbox_planned_idx ON outbox (next_attempt_at) WHERE status = 'planned';
-- The marketing messages a number got from a program, for the cap and the
-- gap (the claim counts them under the subscription's row lock).
CREATE INDEX outbox_marketing_sends_idx ON outbox (msisdn, program, gated_at)
    WHERE kind = 'marketing' AND status IN ('sending', 'sent', 'delivered', 'undelivered', 'unknown');

-- A broadcast row moves like a reply once the gate let it go.
CREATE OR REPLACE FUNCTION outbox_rank(s outbox_status) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE s WHEN 'planned' THEN 0 WHEN 'queued' THEN 0 WHEN 'sending' THEN 1
                        WHEN 'unknown' THEN 1 WHEN 'sent' THEN 2 ELSE 3 END $$;

-- The time zone staff recorded for a number (IANA name), which the gate
-- prefers over the program's and over what the number's prefix suggests.
ALTER TABLE subscribers ADD COLUMN timezone text CHECK (length(timezone) BETWEEN 1 AND 64);

-- Sends each sender may still make now, shared by every dispatcher: a
-- token bucket refilled at the sender's `max_per_second`.
CREATE TABLE sender_budget (
    sender      sender_name PRIMARY KEY,
    tokens      float8 NOT NULL,
    refilled_at timestamptz NOT NULL
);
