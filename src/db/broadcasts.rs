//! Statements of broadcasts: creating one and planning its recipients into
//! the outbox, the gated claim of planned rows, pause/resume/cancel, and
//! the progress and recipient lists staff read.
//!
//! A recipient is one outbox row (unique per broadcast and number) whose
//! `status` says where it is: `planned` (waiting for its moment; only the
//! gated claim takes it), `skipped` (the gate said no: `gate_reason`), or,
//! once the gate let it go, the statuses of any reply.
//!
//! The cap is a database guarantee: the claim locks each number's
//! `subscribers` row (in number order, so two dispatchers cannot deadlock)
//! before it counts the number's marketing sends, and marks the row
//! `sending` with `gated_at` before it commits. A second dispatcher, or a
//! second broadcast, deciding for the same number waits for that commit and
//! then counts the send.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;

use super::types::get;
use super::DbError;
use crate::core::Language;

/// A broadcast as created.
#[derive(Debug, Clone)]
pub struct NewBroadcast<'a> {
    pub program: &'a str,
    /// `marketing` or `notice`.
    pub kind: &'a str,
    pub texts: &'a Value,
    pub shortcode: &'a str,
    pub sender: &'a str,
    pub send_at: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub policy: &'a Value,
    pub created_by: &'a str,
    pub idempotency_key: &'a str,
    pub request_sha256: &'a [u8; 32],
    pub recipients: i32,
}

/// A broadcast created earlier with the same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub id: i64,
    pub request_sha256: Vec<u8>,
}

pub async fn find_by_key(
    client: &impl GenericClient,
    created_by: &str,
    key: &str,
) -> Result<Option<Existing>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT id, request_sha256 FROM broadcasts
              WHERE created_by = $1::text AND idempotency_key = $2::text",
        )
        .await?;
    client
        .query_opt(&stmt, &[&created_by, &key])
        .await?
        .map(|r| {
            Ok(Existing {
                id: get(&r, 0)?,
                request_sha256: get(&r, 1)?,
            })
        })
        .transpose()
}

/// Inserts the broadcast; `None` when one with this key exists already
/// (a concurrent retry won: read it with [`find_by_key`]).
pub async fn insert(
    client: &impl GenericClient,
    b: &NewBroadcast<'_>,
) -> Result<Option<i64>, DbError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO broadcasts (program, kind, texts, shortcode, sender, send_at, valid_until,
                                     policy, created_by, idempotency_key, request_sha256, recipients)
             VALUES ($1::text, $2::text::reply_kind, $3, $4::text, $5::text, $6, $7, $8, $9::text, $10::text, $11, $12)
             ON CONFLICT ON CONSTRAINT broadcasts_idempotency_key DO NOTHING
             RETURNING id",
        )
        .await?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &b.program,
                &b.kind,
                b.texts,
                &b.shortcode,
                &b.sender,
                &b.send_at,
                &b.valid_until,
                b.policy,
                &b.created_by,
                &b.idempotency_key,
                &b.request_sha256.as_slice(),
                &b.recipients,
            ],
        )
        .await?;
    row.map(|r| get(&r, 0)).transpose()
}

/// The number of recipients planned, once planning is done.
pub async fn set_recipients(
    client: &impl GenericClient,
    id: i64,
    recipients: i64,
) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached("UPDATE broadcasts SET recipients = $2 WHERE id = $1")
        .await?;
    let n = i32::try_from(recipients).unwrap_or(i32::MAX);
    client.execute(&stmt, &[&id, &n]).await?;
    Ok(())
}

/// What planning needs to know of one possible recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub msisdn: String,
    pub subscribed: bool,
    /// The language of the message the number subscribed with.
    pub language: Option<Language>,
    /// The zone staff recorded for the number.
    pub timezone: Option<String>,
    /// Times of its marketing messages of this program since `since`.
    pub marketing_sent: Vec<DateTime<Utc>>,
}

const CANDIDATE_COLUMNS: &str = "s.msisdn, sub.state = 'subscribed', m.language, s.timezone";

/// The program's subscribers after `after` (in number order), `limit` of
/// them: the default audience, read page by page, with their marketing
/// sends since `since`.
pub async fn subscribed_page(
    client: &impl GenericClient,
    program: &str,
    since: DateTime<Utc>,
    after: &str,
    limit: i64,
) -> Result<Vec<Candidate>, DbError> {
    let sql = format!(
        "SELECT {CANDIDATE_COLUMNS}
           FROM subscriptions sub
           JOIN subscribers s ON s.msisdn = sub.msisdn
           JOIN subscription_events e ON e.id = sub.event_id
           LEFT JOIN inbound_messages m ON m.id = e.inbound_message_id
          WHERE sub.program = $1::text AND sub.state = 'subscribed' AND sub.msisdn > $2::text
          ORDER BY sub.msisdn
          LIMIT $3"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &[&program, &after, &limit]).await?;
    let mut page: Vec<Candidate> = rows.iter().map(candidate).collect::<Result<_, _>>()?;
    if let (Some(first), Some(last)) = (page.first(), page.last()) {
        let (first, last) = (first.msisdn.clone(), last.msisdn.clone());
        let mut sends = marketing_sends(client, program, since, &first, &last).await?;
        for c in &mut page {
            if let Some(times) = sends.remove(&c.msisdn) {
                c.marketing_sent = times;
            }
        }
    }
    Ok(page)
}

/// The named numbers, as far as they are known (a number never seen is
/// absent: not subscribed).
pub async fn named(
    client: &impl GenericClient,
    program: &str,
    since: DateTime<Utc>,
    numbers: &[&str],
) -> Result<Vec<Candidate>, DbError> {
    let sql = format!(
        "SELECT {CANDIDATE_COLUMNS}
           FROM subscribers s
           LEFT JOIN subscriptions sub ON sub.msisdn = s.msisdn AND sub.program = $1::text
           LEFT JOIN subscription_events e ON e.id = sub.event_id
           LEFT JOIN inbound_messages m ON m.id = e.inbound_message_id
          WHERE s.msisdn = ANY($2::text[])
          ORDER BY s.msisdn"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &[&program, &numbers]).await?;
    let mut found: Vec<Candidate> = rows.iter().map(candidate).collect::<Result<_, _>>()?;
    if let (Some(first), Some(last)) = (found.first(), found.last()) {
        let (first, last) = (first.msisdn.clone(), last.msisdn.clone());
        let mut sends = marketing_sends(client, program, since, &first, &last).await?;
        for c in &mut found {
            if let Some(times) = sends.remove(&c.msisdn) {
                c.marketing_sent = times;
            }
        }
    }
    Ok(found)
}

/// The program's marketing sends since `since` to the numbers from
/// `first` to `last`: one range scan of the index the cap counts from, not
/// one probe per number.
async fn marketing_sends(
    client: &impl GenericClient,
    program: &str,
    since: DateTime<Utc>,
    first: &str,
    last: &str,
) -> Result<std::collections::HashMap<String, Vec<DateTime<Utc>>>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT msisdn, array_agg(gated_at) FROM outbox
              WHERE msisdn BETWEEN $2::text AND $3::text AND program = $1::text
                AND kind = 'marketing'
                AND status IN ('sending', 'sent', 'delivered', 'undelivered', 'unknown')
                AND gated_at > $4
              GROUP BY msisdn",
        )
        .await?;
    let rows = client
        .query(&stmt, &[&program, &first, &last, &since])
        .await?;
    rows.iter().map(|r| Ok((get(r, 0)?, get(r, 1)?))).collect()
}

fn candidate(r: &tokio_postgres::Row) -> Result<Candidate, DbError> {
    Ok(Candidate {
        msisdn: get(r, 0)?,
        subscribed: get::<Option<bool>>(r, 1)?.unwrap_or(false),
        language: get::<Option<String>>(r, 2)?.and_then(|l| l.parse().ok()),
        timezone: get(r, 3)?,
        marketing_sent: Vec::new(),
    })
}

/// One recipient row to write.
#[derive(Debug, Clone)]
pub struct Planned {
    pub msisdn: String,
    pub text: String,
    /// `planned` or `skipped`.
    pub status: &'static str,
    pub next_attempt_at: DateTime<Utc>,
    pub gate_reason: Option<&'static str>,
}

/// Writes recipients of a new broadcast with one `COPY` (binary): no
/// statement to parse per page, no conflict handling — a broadcast's
/// numbers are distinct, and the unique index would refuse a second row.
/// Inside the transaction that created the broadcast.
pub async fn plan(
    tx: &tokio_postgres::Transaction<'_>,
    broadcast: &NewBroadcast<'_>,
    id: i64,
    now: DateTime<Utc>,
    rows: &[Planned],
) -> Result<u64, DbError> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let sink = tx
        .copy_in(
            "COPY outbox (msisdn, shortcode, text, sender, kind, program, broadcast_id, status,
                          next_attempt_at, gate_reason, gated_at, last_error)
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    // Text for the domains and enums too: the server reads each column
    // with its own type's input, and a label is its binary form.
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TEXT,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures_util::pin_mut!(writer);
    for r in rows {
        let error =
            (r.status == "skipped").then(|| format!("gate: {}", r.gate_reason.unwrap_or("")));
        writer
            .as_mut()
            .write(&[
                &r.msisdn,
                &broadcast.shortcode,
                &r.text,
                &broadcast.sender,
                &broadcast.kind,
                &broadcast.program,
                &id,
                &r.status,
                &r.next_attempt_at,
                &r.gate_reason,
                &now,
                &error,
            ])
            .await?;
    }
    Ok(writer.finish().await?)
}

/// A planned row the claim took, with what the gate needs.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: String,
    pub msisdn: String,
    pub shortcode: String,
    pub text: String,
    pub sender: String,
    pub kind: String,
    pub program: String,
    pub broadcast: i64,
    pub send_at: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub policy: Value,
    pub attempts: i32,
}

/// Locks up to `limit` due planned rows of active broadcasts (skipping
/// rows another dispatcher holds). Inside a transaction.
pub async fn take_due(
    client: &impl GenericClient,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<Due>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT o.id::text, o.msisdn, o.shortcode, o.text, o.sender, o.kind::text, o.program,
                    b.id, b.send_at, b.valid_until, b.policy, o.attempts
               FROM outbox o JOIN broadcasts b ON b.id = o.broadcast_id
              WHERE o.status = 'planned' AND o.next_attempt_at <= $2 AND b.status = 'active'
              ORDER BY o.next_attempt_at
              LIMIT $1
              FOR UPDATE OF o SKIP LOCKED",
        )
        .await?;
    let rows = client.query(&stmt, &[&limit, &now]).await?;
    rows.iter()
        .map(|r| {
            Ok(Due {
                id: get(r, 0)?,
                msisdn: get(r, 1)?,
                shortcode: get(r, 2)?,
                text: get(r, 3)?,
                sender: get(r, 4)?,
                kind: get(r, 5)?,
                program: get(r, 6)?,
                broadcast: get(r, 7)?,
                send_at: get(r, 8)?,
                valid_until: get(r, 9)?,
                policy: get(r, 10)?,
                attempts: get(r, 11)?,
            })
        })
        .collect()
}

/// Locks the numbers' `subscribers` rows, in number order, until commit:
/// the decision for a number is then taken by one transaction at a time.
pub async fn lock_numbers(client: &impl GenericClient, numbers: &[&str]) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT 1 FROM subscribers WHERE msisdn = ANY($1::text[]) ORDER BY msisdn FOR UPDATE",
        )
        .await?;
    client.query(&stmt, &[&numbers]).await?;
    Ok(())
}

/// What the gate needs of a (number, program), read after the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateFacts {
    pub msisdn: String,
    pub program: String,
    pub subscribed: bool,
    pub timezone: Option<String>,
    pub marketing_sent: Vec<DateTime<Utc>>,
}

/// The facts of each (number, program) pair, reading the sends since
/// `since` (at least the longest policy period of the batch).
pub async fn gate_facts(
    client: &impl GenericClient,
    pairs: &[(&str, &str)],
    since: DateTime<Utc>,
) -> Result<Vec<GateFacts>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT p.msisdn, p.program, COALESCE(sub.state = 'subscribed', false), s.timezone,
                    COALESCE((SELECT array_agg(o.gated_at) FROM outbox o
                               WHERE o.msisdn = p.msisdn AND o.program = p.program
                                 AND o.kind = 'marketing'
                                 AND o.status IN ('sending', 'sent', 'delivered', 'undelivered', 'unknown')
                                 AND o.gated_at > $3), '{}')
               FROM unnest($1::text[], $2::text[]) AS p(msisdn, program)
               LEFT JOIN subscribers s ON s.msisdn = p.msisdn
               LEFT JOIN subscriptions sub ON sub.msisdn = p.msisdn AND sub.program = p.program",
        )
        .await?;
    let numbers: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    let programs: Vec<&str> = pairs.iter().map(|p| p.1).collect();
    let rows = client.query(&stmt, &[&numbers, &programs, &since]).await?;
    rows.iter()
        .map(|r| {
            Ok(GateFacts {
                msisdn: get(r, 0)?,
                program: get(r, 1)?,
                subscribed: get(r, 2)?,
                timezone: get(r, 3)?,
                marketing_sent: get(r, 4)?,
            })
        })
        .collect()
}

/// Takes up to `wanted` sends from `sender`'s budget (a token bucket of
/// `per_second`, at most one second's worth saved up); returns how many
/// it may make now. Inside the claim's transaction: the bucket's row lock
/// makes the budget one for every dispatcher.
pub async fn take_budget(
    client: &impl GenericClient,
    sender: &str,
    per_second: f64,
    wanted: i64,
) -> Result<i64, DbError> {
    // Two statements: one statement may not change a row twice.
    let refill = client
        .prepare_cached(
            "INSERT INTO sender_budget AS b (sender, tokens, refilled_at)
             VALUES ($1::text, $2, now())
             ON CONFLICT (sender) DO UPDATE
                SET tokens = LEAST($2, b.tokens
                             + $2 * extract(epoch FROM now() - b.refilled_at)),
                    refilled_at = now()
             RETURNING LEAST($3::int8, floor(b.tokens)::int8)",
        )
        .await?;
    let granted: i64 = get(
        &client
            .query_one(&refill, &[&sender, &per_second, &wanted])
            .await?,
        0,
    )?;
    if granted > 0 {
        let spend = client
            .prepare_cached("UPDATE sender_budget SET tokens = tokens - $2 WHERE sender = $1::text")
            .await?;
        client
            .execute(&spend, &[&sender, &(granted as f64)])
            .await?;
    }
    Ok(granted.max(0))
}

/// The gate's decision for one claimed row.
#[derive(Debug, Clone)]
pub enum Gated {
    /// Leased to this dispatcher to send now.
    Send,
    /// Back to `planned` until `at`.
    Defer {
        at: DateTime<Utc>,
        reason: &'static str,
    },
    Skip {
        reason: &'static str,
    },
}

/// Writes the decisions of a claim, in one statement: sends are leased to
/// `owner` (and counted from now toward the cap), deferrals wait, skips
/// end the row.
pub async fn decide(
    client: &impl GenericClient,
    owner: &str,
    lease: std::time::Duration,
    now: DateTime<Utc>,
    decisions: &[(&str, Gated)],
) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached(
            "UPDATE outbox o
                SET status = v.status::outbox_status,
                    lease_owner = CASE WHEN v.status = 'sending' THEN $1 END,
                    lease_expires_at = CASE WHEN v.status = 'sending'
                        THEN now() + make_interval(secs => $2) END,
                    attempts = o.attempts + CASE WHEN v.status = 'sending' THEN 1 ELSE 0 END,
                    next_attempt_at = COALESCE(v.at, o.next_attempt_at),
                    gate_reason = v.reason,
                    gated_at = $7,
                    last_error = CASE WHEN v.status = 'skipped' THEN 'gate: ' || v.reason
                                      ELSE o.last_error END,
                    updated_at = now()
               FROM unnest($3::text[], $4::text[], $5::timestamptz[], $6::text[])
                    AS v(id, status, at, reason)
              WHERE o.id = v.id::uuid AND o.status = 'planned'",
        )
        .await?;
    let mut ids = Vec::with_capacity(decisions.len());
    let mut statuses = Vec::with_capacity(decisions.len());
    let mut at: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(decisions.len());
    let mut reasons: Vec<Option<&str>> = Vec::with_capacity(decisions.len());
    for (id, d) in decisions {
        ids.push(*id);
        let (status, when, reason) = match d {
            Gated::Send => ("sending", None, None),
            Gated::Defer { at, reason } => ("planned", Some(*at), Some(*reason)),
            Gated::Skip { reason } => ("skipped", None, Some(*reason)),
        };
        statuses.push(status);
        at.push(when);
        reasons.push(reason);
    }
    client
        .execute(
            &stmt,
            &[
                &owner,
                &lease.as_secs_f64(),
                &ids,
                &statuses,
                &at,
                &reasons,
                &now,
            ],
        )
        .await?;
    Ok(())
}

/// A broadcast as staff see it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub program: String,
    pub kind: String,
    pub status: String,
    pub texts: Value,
    pub shortcode: String,
    pub sender: String,
    pub send_at: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub policy: Value,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub recipients: i32,
}

const ROW_COLUMNS: &str =
    "id, program, kind::text, status::text, texts, shortcode, sender, send_at,
    valid_until, policy, created_by, created_at, recipients";

fn row(r: &tokio_postgres::Row) -> Result<Row, DbError> {
    Ok(Row {
        id: get(r, 0)?,
        program: get(r, 1)?,
        kind: get(r, 2)?,
        status: get(r, 3)?,
        texts: get(r, 4)?,
        shortcode: get(r, 5)?,
        sender: get(r, 6)?,
        send_at: get(r, 7)?,
        valid_until: get(r, 8)?,
        policy: get(r, 9)?,
        created_by: get(r, 10)?,
        created_at: get(r, 11)?,
        recipients: get(r, 12)?,
    })
}

pub async fn one(client: &impl GenericClient, id: i64) -> Result<Option<Row>, DbError> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM broadcasts WHERE id = $1");
    let stmt = client.prepare_cached(&sql).await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .map(|r| row(&r))
        .transpose()
}

/// The newest broadcasts first, `limit` of them older than `before` (an id).
pub async fn list(
    client: &impl GenericClient,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Row>, DbError> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM broadcasts
          WHERE $1::int8 IS NULL OR id < $1
          ORDER BY id DESC LIMIT $2"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &[&before, &limit]).await?;
    rows.iter().map(row).collect()
}

/// Recipients per (status, gate reason), and the opt-outs received from
/// recipients within 48 h after their message was sent.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub by_status: Vec<(String, Option<String>, i64)>,
    pub opt_outs_within_48h: i64,
    pub first_sent_at: Option<DateTime<Utc>>,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub next_planned_at: Option<DateTime<Utc>>,
}

pub async fn progress(client: &impl GenericClient, id: i64) -> Result<Progress, DbError> {
    let counts = client
        .prepare_cached(
            "SELECT status::text, CASE WHEN status IN ('planned', 'skipped') THEN gate_reason END,
                    count(*)
               FROM outbox WHERE broadcast_id = $1
              GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .await?;
    let mut p = Progress::default();
    for r in client.query(&counts, &[&id]).await? {
        p.by_status.push((get(&r, 0)?, get(&r, 1)?, get(&r, 2)?));
    }
    let other = client
        .prepare_cached(
            "SELECT (SELECT count(DISTINCT o.msisdn) FROM outbox o
                      JOIN subscription_events e
                        ON e.msisdn = o.msisdn AND e.program = o.program
                       AND e.to_state = 'unsubscribed'
                       AND e.recorded_at BETWEEN o.sent_at AND o.sent_at + interval '48 hours'
                     WHERE o.broadcast_id = $1 AND o.sent_at IS NOT NULL),
                    (SELECT min(sent_at) FROM outbox WHERE broadcast_id = $1),
                    (SELECT max(sent_at) FROM outbox WHERE broadcast_id = $1),
                    (SELECT min(next_attempt_at) FROM outbox
                      WHERE broadcast_id = $1 AND status = 'planned')",
        )
        .await?;
    let r = client.query_one(&other, &[&id]).await?;
    p.opt_outs_within_48h = get(&r, 0)?;
    p.first_sent_at = get(&r, 1)?;
    p.last_sent_at = get(&r, 2)?;
    p.next_planned_at = get(&r, 3)?;
    Ok(p)
}

/// One recipient of a broadcast.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub msisdn: String,
    pub status: String,
    pub gate_reason: Option<String>,
    pub gated_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub text: String,
}

/// Recipients in number order after `after`, optionally of one status.
pub async fn recipients(
    client: &impl GenericClient,
    id: i64,
    status: Option<&str>,
    after: &str,
    limit: i64,
) -> Result<Vec<Recipient>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT msisdn, status::text, gate_reason, gated_at, next_attempt_at, sent_at,
                    delivered_at, last_error, text
               FROM outbox
              WHERE broadcast_id = $1 AND msisdn > $3::text
                AND ($2::text IS NULL OR status::text = $2)
              ORDER BY msisdn LIMIT $4",
        )
        .await?;
    let rows = client.query(&stmt, &[&id, &status, &after, &limit]).await?;
    rows.iter()
        .map(|r| {
            Ok(Recipient {
                msisdn: get(r, 0)?,
                status: get(r, 1)?,
                gate_reason: get(r, 2)?,
                gated_at: get(r, 3)?,
                next_attempt_at: get(r, 4)?,
                sent_at: get(r, 5)?,
                delivered_at: get(r, 6)?,
                last_error: get(r, 7)?,
                text: get(r, 8)?,
            })
        })
        .collect()
}

/// Pauses, resumes or cancels; `None` if there is no such broadcast,
/// else whether it changed. Cancelling skips every recipient still
/// planned (`gate_reason` = `cancelled`): nothing more goes out; what is
/// in flight finishes.
pub async fn set_status(
    client: &impl GenericClient,
    id: i64,
    to: &str,
) -> Result<Option<bool>, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH b AS (
                 SELECT id, status FROM broadcasts WHERE id = $1 FOR UPDATE
             ), changed AS (
                 UPDATE broadcasts SET status = $2::text::broadcast_status, updated_at = now()
                  WHERE id = $1 AND status <> 'cancelled' AND status::text <> $2::text
                 RETURNING id
             ), skipped AS (
                 UPDATE outbox SET status = 'skipped', gate_reason = 'cancelled',
                                   last_error = 'broadcast cancelled', updated_at = now()
                  WHERE broadcast_id = $1 AND status = 'planned' AND $2::text = 'cancelled'
                    AND EXISTS (SELECT 1 FROM changed)
             )
             SELECT EXISTS (SELECT 1 FROM b), EXISTS (SELECT 1 FROM changed)",
        )
        .await?;
    let r = client.query_one(&stmt, &[&id, &to]).await?;
    let exists: bool = get(&r, 0)?;
    Ok(exists.then_some(get(&r, 1)?))
}

/// Records the zone of a number (staff), `None` to forget it; `false` if
/// the number was never seen.
pub async fn set_timezone(
    client: &impl GenericClient,
    msisdn: &str,
    timezone: Option<&str>,
) -> Result<bool, DbError> {
    let stmt = client
        .prepare_cached("UPDATE subscribers SET timezone = $2::text WHERE msisdn = $1::text")
        .await?;
    Ok(client.execute(&stmt, &[&msisdn, &timezone]).await? > 0)
}
