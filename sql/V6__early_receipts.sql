-- Delivery receipts that arrive before the dispatcher has stored the
-- provider's message id. The dispatcher records a batch's results after
-- the provider answered every send in it, and a fast provider can report
-- on a message sooner than that. Such a receipt waits here and is applied
-- (forward only, like any receipt) once the id is stored; one that never
-- matches is dropped after a day.
CREATE TABLE early_receipts (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender              sender_name NOT NULL,
    provider_message_id message_ref NOT NULL,
    status              outbox_status NOT NULL
                        CHECK (status IN ('sent', 'delivered', 'undelivered', 'failed')),
    last_error          text,
    received_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX early_receipts_key_idx ON early_receipts (sender, provider_message_id);
CREATE INDEX early_receipts_received_idx ON early_receipts (received_at);
