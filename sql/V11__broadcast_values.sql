-- Broadcasts (#15), the values first: an enum value added here cannot be
-- used in the same transaction, so the tables that use them are V12.

-- An outbox row that waits for the send gate (a broadcast's recipient):
-- only the broadcast claim takes it, and asks the gate first.
ALTER TYPE outbox_status ADD VALUE 'planned' BEFORE 'queued';
-- The gate said no (not subscribed, cap reached, expired, no send time,
-- duplicate); `gate_reason` says which.
ALTER TYPE outbox_status ADD VALUE 'skipped';
-- What a broadcast sends: marketing counts toward the cap and the gap;
-- notices (important notices, reminders) do not.
ALTER TYPE reply_kind ADD VALUE 'marketing';
ALTER TYPE reply_kind ADD VALUE 'notice';
-- Creates and controls broadcasts; reads nothing else.
ALTER TYPE api_role ADD VALUE 'marketing';
