//! Statements of the reply dispatcher.
//!
//! A claim is one short statement that leases due rows (`FOR UPDATE SKIP
//! LOCKED`, so several dispatchers never take the same row) and commits at
//! once: no row lock is held while a provider is called. Every later write
//! checks the lease is still ours, so a dispatcher that stalled past its
//! lease cannot overwrite the work of the one that took the row over.

use std::sync::LazyLock;
use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::types::get;
use super::DbError;
use crate::gateways::{Delivery, ReceiptKey};
use crate::staff::view::SentKind;

/// A leased reply.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub msisdn: String,
    pub shortcode: String,
    pub text: String,
    pub sender: String,
    /// A reply's kind, or a broadcast's.
    pub kind: SentKind,
    pub program: Option<String>,
    pub in_reply_to: Option<String>,
    /// Including this one.
    pub attempts: i32,
    /// The number opted out of the program after this reply was queued:
    /// it must not be sent (only opt-out confirmations still go).
    pub opted_out_since: bool,
    /// Taken over from a lease that expired while `sending`: the provider
    /// may already have it (the call had possibly started; nothing
    /// cheaper than a write before every call could tell).
    pub possibly_sent: bool,
    /// Earlier attempts that ended `unknown`.
    pub uncertain_attempts: i32,
    /// A broadcast message whose broadcast has ended since the gate let it
    /// go (`valid_until` passed, or cancelled): taken over after a lease
    /// expired, it must not go again.
    pub broadcast_ended: bool,
}

/// Leases first replies whose lease expired (their dispatcher died, or
/// could not record the provider's answer: `possibly_sent`), then
/// `unknown` replies due for their one re-send, then queued replies in due
/// order. Each kind is read from its own partial index and stops after
/// `$2` rows: one condition with OR over them made PostgreSQL sort the
/// whole backlog on every claim (50 ms per claim with 100,000 replies
/// queued, against 2 ms now).
pub const CLAIM: &str = "
    WITH expired AS (
        SELECT o.id FROM outbox o
         WHERE o.status = 'sending' AND o.lease_expires_at < now()
         ORDER BY o.lease_expires_at
         LIMIT $2
         FOR UPDATE SKIP LOCKED
    ), unknown AS (
        SELECT o.id FROM outbox o
         WHERE o.status = 'unknown' AND o.uncertain_attempts = 1 AND o.next_attempt_at <= now()
           AND o.broadcast_id IS NULL
         ORDER BY o.next_attempt_at
         LIMIT $2
         FOR UPDATE SKIP LOCKED
    ), queued AS (
        SELECT o.id FROM outbox o
         WHERE o.status = 'queued' AND o.next_attempt_at <= now()
         ORDER BY o.next_attempt_at
         LIMIT $2
         FOR UPDATE SKIP LOCKED
    ), due AS (
        SELECT id, true AS possibly_sent FROM expired
        UNION ALL SELECT id, false FROM unknown
        UNION ALL SELECT id, false FROM queued
        LIMIT $2
    )
    UPDATE outbox o
       SET status = 'sending', lease_owner = $1,
           lease_expires_at = now() + make_interval(secs => $3),
           attempts = o.attempts + 1, updated_at = now()
      FROM due
     WHERE o.id = due.id
    RETURNING o.id::text, o.msisdn, o.shortcode, o.text, o.sender, o.kind::text, o.program,
              o.in_reply_to, o.attempts,
              o.kind <> 'goodbye' AND EXISTS (
                  SELECT 1 FROM subscriptions s
                    JOIN subscription_events e ON e.id = s.event_id
                   WHERE s.msisdn = o.msisdn AND s.program = o.program
                     AND s.state = 'unsubscribed' AND e.recorded_at > o.created_at),
              due.possibly_sent, o.uncertain_attempts,
              o.broadcast_id IS NOT NULL AND EXISTS (
                  SELECT 1 FROM broadcasts b
                   WHERE b.id = o.broadcast_id
                     AND (b.valid_until <= now() OR b.status = 'cancelled'))";

pub async fn claim(
    client: &impl GenericClient,
    owner: &str,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, DbError> {
    let stmt = client.prepare_cached(CLAIM).await?;
    let rows = client
        .query(&stmt, &[&owner, &limit, &lease.as_secs_f64()])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Claimed {
                id: get(r, 0)?,
                msisdn: get(r, 1)?,
                shortcode: get(r, 2)?,
                text: get(r, 3)?,
                sender: get(r, 4)?,
                kind: get(r, 5)?,
                program: get(r, 6)?,
                in_reply_to: get(r, 7)?,
                attempts: get(r, 8)?,
                opted_out_since: get(r, 9)?,
                possibly_sent: get(r, 10)?,
                uncertain_attempts: get(r, 11)?,
                broadcast_ended: get(r, 12)?,
            })
        })
        .collect()
}

/// Where a leased row goes next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Sent {
        provider_id: Option<String>,
    },
    /// Back to the queue after `after` — or `dead` once `attempts` reached
    /// `max_attempts`.
    Retry {
        after: Duration,
        max_attempts: i32,
        error: String,
    },
    Failed {
        error: String,
    },
    Cancelled {
        why: String,
    },
    /// Possibly sent, and not safe to send again now: `unknown`. Due for
    /// its one re-send after `resend_after` if this is its first uncertain
    /// attempt; never again automatically after that.
    Unknown {
        error: String,
        resend_after: Duration,
    },
}

/// Recorded results of a batch.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Rows recorded (others were no longer leased by this owner).
    pub count: usize,
    /// Replies the provider gave a message id that another reply already
    /// has: recorded as sent without it.
    pub collisions: Vec<Collision>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    pub id: String,
    pub provider_id: String,
    /// The reply that already has `provider_id`.
    pub holder: String,
}

/// Records results in one statement (one commit), each only for a row
/// this owner still leases — a dispatcher that stalled past its lease
/// cannot overwrite the work of the one that took the row over.
///
/// A provider message id that another reply already has (or that the
/// provider gave two replies of this batch) would violate
/// `outbox_provider_message_idx` and fail every row of the statement; the
/// statement looks for such ids first and records those replies as sent
/// without the id, saying whose it is in `last_error`. Only a race with a
/// concurrent batch that commits the same id can still make it fail, and
/// the caller then records row by row.
const FINISH: &str = "
    WITH v AS (
        SELECT v.id::uuid AS id, v.status, v.provider_id, v.error, v.delay, v.max_attempts,
               o.sender,
               first_value(v.id::uuid) OVER w AS first_id, row_number() OVER w AS nth
          FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::int4[])
               AS v(id, status, provider_id, error, delay, max_attempts)
          JOIN outbox o ON o.id = v.id::uuid
        WINDOW w AS (PARTITION BY o.sender, v.provider_id ORDER BY v.id)
    ), taken AS (
        SELECT v.id,
               COALESCE((SELECT h.id FROM outbox h
                          WHERE h.sender = v.sender AND h.provider_message_id = v.provider_id
                            AND h.id <> v.id
                          LIMIT 1),
                        CASE WHEN v.nth > 1 THEN v.first_id END) AS holder
          FROM v
         WHERE v.provider_id IS NOT NULL
    ), done AS (
    UPDATE outbox o
       SET status = CASE
               WHEN v.status <> 'retry' THEN v.status
               WHEN o.attempts >= v.max_attempts THEN 'dead'
               -- A broadcast message waits for the gate again (below).
               WHEN o.broadcast_id IS NOT NULL THEN 'planned'
               ELSE 'queued' END::outbox_status,
           sent_at = CASE WHEN v.status = 'sent' THEN now() ELSE o.sent_at END,
           provider_message_id = CASE WHEN t.holder IS NULL
               THEN COALESCE(v.provider_id, o.provider_message_id)
               ELSE o.provider_message_id END,
           last_error = CASE WHEN t.holder IS NULL THEN v.error
               ELSE format('the provider answered message id %s, which reply %s already has',
                           v.provider_id, t.holder) END,
           uncertain_attempts = o.uncertain_attempts
               + CASE WHEN v.status = 'unknown' THEN 1 ELSE 0 END,
           next_attempt_at = CASE WHEN v.status IN ('retry', 'unknown')
               THEN now() + make_interval(secs => v.delay) ELSE o.next_attempt_at END,
           lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
      FROM v LEFT JOIN taken t ON t.id = v.id
     WHERE o.id = v.id AND o.status = 'sending' AND o.lease_owner = $1
    RETURNING o.id, o.status, o.broadcast_id, o.msisdn, o.next_attempt_at, v.provider_id, t.holder
    ), regate AS (
        -- Its recipient is planned again, for the claim to ask the gate
        -- (a STOP, the window, the expiry may have changed meanwhile).
        UPDATE broadcast_recipients r
           SET status = 'planned', due_at = d.next_attempt_at, reason = 'retry',
               decided_at = now()
          FROM done d
         WHERE d.status = 'planned' AND r.broadcast_id = d.broadcast_id AND r.msisdn = d.msisdn
    )
    SELECT id::text, provider_id, holder::text FROM done";

pub async fn finish_all(
    client: &impl GenericClient,
    owner: &str,
    results: &[(String, Next)],
) -> Result<Recorded, DbError> {
    let mut ids = Vec::with_capacity(results.len());
    let mut statuses = Vec::with_capacity(results.len());
    let mut provider_ids: Vec<Option<&str>> = Vec::with_capacity(results.len());
    let mut errors: Vec<Option<&str>> = Vec::with_capacity(results.len());
    let mut delays = Vec::with_capacity(results.len());
    let mut max_attempts = Vec::with_capacity(results.len());
    for (id, next) in results {
        ids.push(id.as_str());
        let (status, provider_id, error, delay, max) = match next {
            Next::Sent { provider_id } => ("sent", provider_id.as_deref(), None, 0.0, 0),
            Next::Retry {
                after,
                max_attempts,
                error,
            } => (
                "retry",
                None,
                Some(error.as_str()),
                after.as_secs_f64(),
                *max_attempts,
            ),
            Next::Failed { error } => ("failed", None, Some(error.as_str()), 0.0, 0),
            Next::Cancelled { why } => ("cancelled", None, Some(why.as_str()), 0.0, 0),
            Next::Unknown {
                error,
                resend_after,
            } => (
                "unknown",
                None,
                Some(error.as_str()),
                resend_after.as_secs_f64(),
                0,
            ),
        };
        statuses.push(status);
        provider_ids.push(provider_id);
        errors.push(error);
        delays.push(delay);
        max_attempts.push(max);
    }
    let stmt = client.prepare_cached(FINISH).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &owner,
                &ids,
                &statuses,
                &provider_ids,
                &errors,
                &delays,
                &max_attempts,
            ],
        )
        .await?;
    let collisions = rows
        .iter()
        .filter_map(|r| {
            Some(Collision {
                id: r.get(0),
                provider_id: r.get::<_, Option<String>>(1)?,
                holder: r.get::<_, Option<String>>(2)?,
            })
        })
        .collect();
    Ok(Recorded {
        count: rows.len(),
        collisions,
    })
}

/// The provider says the number opted out with it: ledger events with
/// cause `provider`, and queued replies to it cancelled.
pub async fn provider_opt_out(
    client: &impl GenericClient,
    msisdn: &str,
    program: Option<&str>,
    provider: &str,
    reason: &str,
) -> Result<i32, DbError> {
    let stmt = client
        .prepare_cached("SELECT keyward_provider_opt_out($1, $2, $3, $4)")
        .await?;
    let row = client
        .query_one(&stmt, &[&msisdn, &program, &provider, &reason])
        .await?;
    Ok(row.get(0))
}

/// Counting stops here: past it the gauge says "at least this many".
pub const DEPTH_CAP: i64 = 1_000_000;

/// Replies waiting to be sent (`queued`), in flight (`sending`) and
/// possibly sent (`unknown`, for an operator to look at), for `/metrics`. Each count walks only its own partial index, and stops at
/// [`DEPTH_CAP`]; finished replies (the outbox's bulk, growing for ever)
/// are never counted — `replies_total` counts them as they happen.
pub async fn depth(client: &impl GenericClient) -> Result<Vec<(String, i64)>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT 'queued', (SELECT count(*) FROM
                    (SELECT 1 FROM outbox WHERE status = 'queued' LIMIT $1) q)
             UNION ALL
             SELECT 'sending', (SELECT count(*) FROM
                    (SELECT 1 FROM outbox WHERE status = 'sending' LIMIT $1) s)
             UNION ALL
             SELECT 'unknown', (SELECT count(*) FROM
                    (SELECT 1 FROM outbox WHERE status = 'unknown' LIMIT $1) u)",
        )
        .await?;
    Ok(client
        .query(&stmt, &[&DEPTH_CAP])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// How a receipt moves its reply `o`, in both statements that apply one:
/// forward only (a late `sent` never overwrites `delivered`), ending any
/// lease. `status` and `error` are SQL expressions; `rest` is the FROM and
/// WHERE that pick the reply.
fn receipt_update(status: &str, error: &str, rest: &str) -> String {
    format!(
        "UPDATE outbox o
            SET status = {status},
                sent_at = COALESCE(o.sent_at, now()),
                delivered_at = CASE WHEN {status} = 'delivered' THEN now() ELSE o.delivered_at END,
                last_error = COALESCE({error}, o.last_error),
                lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
          {rest} AND outbox_rank(o.status) < outbox_rank({status})"
    )
}

/// A receipt keyed by the provider's id. When no reply carries that id
/// yet, the receipt is kept in `early_receipts` (see
/// [`settle_early_receipts`]); when one does but is already further on,
/// nothing is kept.
static RECEIPT_BY_PROVIDER_ID: LazyLock<String> = LazyLock::new(|| {
    let moved = receipt_update(
        "$3::text::outbox_status",
        "$4::text",
        "WHERE o.sender = $1 AND o.provider_message_id = $2",
    );
    format!(
        "WITH moved AS ({moved} RETURNING 1),
         early AS (
             INSERT INTO early_receipts (sender, provider_message_id, status, last_error)
             SELECT $1::text, $2::text, $3::text::outbox_status, $4::text
              WHERE NOT EXISTS (SELECT 1 FROM outbox
                                 WHERE sender = $1 AND provider_message_id = $2)
         )
         SELECT count(*) FROM moved"
    )
});

/// A receipt keyed by keyward's outbox id (the reply always exists).
static RECEIPT_BY_OUTBOX_ID: LazyLock<String> = LazyLock::new(|| {
    let moved = receipt_update(
        "$3::text::outbox_status",
        "$4::text",
        "WHERE o.sender = $1 AND o.id = $2::text::uuid",
    );
    format!("WITH moved AS ({moved} RETURNING 1) SELECT count(*) FROM moved")
});

/// Early receipts whose reply now carries their provider id are applied
/// (the furthest one per reply) and removed; those a day old that never
/// matched are dropped.
static SETTLE_EARLY_RECEIPTS: LazyLock<String> = LazyLock::new(|| {
    let moved = receipt_update(
        "best.status",
        "best.last_error",
        "FROM best WHERE o.id = best.id",
    );
    format!(
        "WITH matched AS (
             DELETE FROM early_receipts e
              USING outbox o
              WHERE o.sender = e.sender AND o.provider_message_id = e.provider_message_id
             RETURNING o.id, e.status, e.last_error
         ), best AS (
             SELECT DISTINCT ON (id) id, status, last_error
               FROM matched ORDER BY id, outbox_rank(status) DESC
         ), expired AS (
             DELETE FROM early_receipts e
              WHERE e.received_at < now() - interval '1 day'
                AND NOT EXISTS (SELECT 1 FROM outbox o
                                 WHERE o.sender = e.sender
                                   AND o.provider_message_id = e.provider_message_id)
         )
         {moved}"
    )
});

/// Applies a delivery receipt; returns whether a reply changed. A receipt
/// keyed by a provider id that no reply carries yet waits in
/// `early_receipts`: the dispatcher may not have stored the id yet.
pub async fn apply_receipt(
    client: &impl GenericClient,
    sender: &str,
    key: &ReceiptKey,
    status: Delivery,
    error: Option<&str>,
) -> Result<bool, DbError> {
    let (sql, id) = match key {
        ReceiptKey::Provider(id) => (&*RECEIPT_BY_PROVIDER_ID, id),
        ReceiptKey::Outbox(id) if uuid_like(id) => (&*RECEIPT_BY_OUTBOX_ID, id),
        ReceiptKey::Outbox(_) => return Ok(false),
    };
    let stmt = client.prepare_cached(sql).await?;
    let moved: i64 = client
        .query_one(&stmt, &[&sender, id, &status, &error])
        .await?
        .get(0);
    Ok(moved > 0)
}

/// Applies the early receipts whose reply now carries their provider id,
/// and drops those a day old that never matched. One statement; cheap when
/// there are none (the usual case). Returns how many replies moved.
pub async fn settle_early_receipts(client: &impl GenericClient) -> Result<u64, DbError> {
    let stmt = client.prepare_cached(&SETTLE_EARLY_RECEIPTS).await?;
    Ok(client.execute(&stmt, &[]).await?)
}

/// The canonical 8-4-4-4-12 form: safe to cast to uuid.
fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}
