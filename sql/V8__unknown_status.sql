-- A reply whose fate is not known: its lease expired while it was
-- `sending`, so the provider may or may not have taken it (the dispatcher
-- crashed during the call, or could not record the provider's answer), and
-- its sender cannot be asked again safely (no idempotency key).
--
-- Alone in its migration: a value added to an enum cannot be used in the
-- transaction that adds it, and every migration runs in one transaction.
-- V9 uses it.
ALTER TYPE outbox_status ADD VALUE 'unknown' AFTER 'sending';
