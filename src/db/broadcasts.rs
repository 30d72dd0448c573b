//! Statements of broadcasts: creating one and planning its recipients,
//! the gated claim of planned recipients, pause/resume/cancel, and the
//! progress and recipient lists staff read.
//!
//! A recipient is a short `broadcast_recipients` row (unique per broadcast
//! and number) whose `status` says where it is: `planned` (waiting for its
//! moment; only the gated claim takes it), `skipped` (the gate said no:
//! `reason`), or `released`: the gate let it go, and the outbox row of the
//! same broadcast and number (made then, at the sender's pace, not at
//! planning) moves like any reply. Planning writes a million recipients as
//! a million short rows with one `COPY`, not a million outbox rows.
//!
//! The cap is a database guarantee: the claim locks each number's
//! `subscribers` row (in number order, so two dispatchers cannot deadlock)
//! before it counts the number's marketing sends, and makes the outbox row
//! `sending` with `gated_at` before it commits. A second dispatcher, or a
//! second broadcast, deciding for the same number waits for that commit and
//! then counts the send.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;

use super::types::get;
use super::DbError;
use crate::core::{Language, MessageKind};

/// A broadcast as created.
#[derive(Debug, Clone)]
pub struct NewBroadcast<'a> {
    pub program: &'a str,
    /// `marketing` or `notice`.
    pub kind: &'a str,
    pub texts: &'a Value,
    /// The message per language for recipients without values of their own.
    pub messages: &'a Value,
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
                                     policy, created_by, idempotency_key, request_sha256, recipients,
                                     messages)
             VALUES ($1::text, $2::text::reply_kind, $3, $4::text, $5::text, $6, $7, $8, $9::text,
                     $10::text, $11, $12, $13)
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
                b.messages,
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

/// The default audience: every number subscribed to `program`, in number
/// order, with its marketing sends of the program since `$2`. One
/// statement over the whole audience, read a chunk at a time through a
/// portal of the planning transaction: PostgreSQL joins the program's
/// subscriptions once (hash joins, one pass over the sends) instead of
/// probing indexes for every number of every page.
const AUDIENCE: &str = "
    SELECT sub.msisdn, m.language, s.timezone, COALESCE(sent.times, '{}')
      FROM subscriptions sub
      JOIN subscribers s ON s.msisdn = sub.msisdn
      JOIN subscription_events e ON e.id = sub.event_id
      LEFT JOIN inbound_messages m ON m.id = e.inbound_message_id
      LEFT JOIN (SELECT msisdn, array_agg(gated_at) AS times FROM outbox
                  WHERE program = $1::text AND kind = 'marketing'
                    AND status IN ('sending', 'sent', 'delivered', 'undelivered', 'unknown')
                    AND gated_at > $2
                  GROUP BY msisdn) sent ON sent.msisdn = sub.msisdn
     WHERE sub.program = $1::text AND sub.state = 'subscribed'
     ORDER BY sub.msisdn";

/// Opens the default audience of `program` (see [`AUDIENCE`]); read it
/// with [`next_candidates`]. Inside the planning transaction.
pub async fn audience(
    tx: &deadpool_postgres::Transaction<'_>,
    program: &str,
    since: DateTime<Utc>,
) -> Result<tokio_postgres::Portal, DbError> {
    let stmt = tx.prepare_cached(AUDIENCE).await?;
    Ok(tx.bind(&stmt, &[&program, &since]).await?)
}

/// The next `n` candidates of an audience; fewer at its end.
pub async fn next_candidates(
    tx: &tokio_postgres::Transaction<'_>,
    audience: &tokio_postgres::Portal,
    n: i32,
) -> Result<Vec<Candidate>, DbError> {
    let rows = tx.query_portal(audience, n).await?;
    rows.iter()
        .map(|r| {
            Ok(Candidate {
                msisdn: get(r, 0)?,
                subscribed: true,
                language: get::<Option<Language>>(r, 1)?,
                timezone: get(r, 2)?,
                marketing_sent: get(r, 3)?,
            })
        })
        .collect()
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
    /// `planned` or `skipped`.
    pub status: &'static str,
    pub due_at: DateTime<Utc>,
    pub reason: Option<&'static str>,
    pub language: Language,
    /// Only for a recipient with values of its own.
    pub text: Option<String>,
}

/// Writes the recipients of a new broadcast as they are decided, all with
/// one `COPY` (binary): no statement to parse per page, no conflict
/// handling — a broadcast's numbers are distinct, and the primary key
/// would refuse a second row. Opened in the transaction that created the
/// broadcast, which can run nothing else until [`RecipientWriter::finish`].
pub struct RecipientWriter {
    writer: std::pin::Pin<Box<tokio_postgres::binary_copy::BinaryCopyInWriter>>,
    id: i64,
    now: DateTime<Utc>,
}

impl RecipientWriter {
    pub async fn open(
        tx: &tokio_postgres::Transaction<'_>,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Self, DbError> {
        use tokio_postgres::types::Type;
        let sink = tx
            .copy_in(
                "COPY broadcast_recipients (broadcast_id, msisdn, status, due_at, reason,
                                            language, text, decided_at)
                 FROM STDIN (FORMAT binary)",
            )
            .await?;
        // Text for the domain and the enum too: the server reads each
        // column with its own type's input, and a label is its binary form.
        let types = [
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TIMESTAMPTZ,
        ];
        Ok(Self {
            writer: Box::pin(tokio_postgres::binary_copy::BinaryCopyInWriter::new(
                sink, &types,
            )),
            id,
            now,
        })
    }

    pub async fn write(&mut self, rows: &[Planned]) -> Result<(), DbError> {
        for r in rows {
            self.writer
                .as_mut()
                .write(&[
                    &self.id,
                    &r.msisdn,
                    &r.status,
                    &r.due_at,
                    &r.reason,
                    &r.language.as_str(),
                    &r.text,
                    &self.now,
                ])
                .await?;
        }
        Ok(())
    }

    /// Ends the `COPY`: the number of rows written.
    pub async fn finish(mut self) -> Result<u64, DbError> {
        Ok(self.writer.as_mut().finish().await?)
    }
}

/// A planned recipient the claim took, with what the gate needs.
#[derive(Debug, Clone)]
pub struct Due {
    pub broadcast: i64,
    pub msisdn: String,
    pub shortcode: String,
    pub text: String,
    pub sender: String,
    pub kind: MessageKind,
    pub program: String,
    pub send_at: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub policy: Value,
}

/// Locks up to `limit` due planned recipients of active broadcasts
/// (skipping those another dispatcher holds). Inside a transaction.
///
/// Every broadcast not paused or cancelled stays `active` once sent out:
/// each costs the claim one probe of an empty index range.
pub async fn take_due(
    client: &impl GenericClient,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<Due>, DbError> {
    let stmt = client
        .prepare_cached(
            // Broadcast by broadcast (a paused one is never looked into),
            // each in due order; rows are locked only as the limit takes
            // them.
            "SELECT b.id, r.msisdn, b.shortcode,
                    COALESCE(r.text, b.messages ->> r.language::text), b.sender, b.kind,
                    b.program, b.send_at, b.valid_until, b.policy
               FROM broadcasts b
              CROSS JOIN LATERAL (
                    SELECT r.msisdn, r.text, r.language FROM broadcast_recipients r
                     WHERE r.broadcast_id = b.id AND r.status = 'planned' AND r.due_at <= $2
                     ORDER BY r.due_at
                     LIMIT $1
                     FOR UPDATE SKIP LOCKED) r
              WHERE b.status = 'active'
              LIMIT $1",
        )
        .await?;
    let rows = client.query(&stmt, &[&limit, &now]).await?;
    rows.iter()
        .map(|r| {
            Ok(Due {
                broadcast: get(r, 0)?,
                msisdn: get(r, 1)?,
                shortcode: get(r, 2)?,
                text: get::<Option<String>>(r, 3)?.ok_or_else(|| {
                    DbError::Decode("a broadcast recipient without a text in its language".into())
                })?,
                sender: get(r, 4)?,
                kind: get(r, 5)?,
                program: get(r, 6)?,
                send_at: get(r, 7)?,
                valid_until: get(r, 8)?,
                policy: get(r, 9)?,
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

/// A recipient the gate let go, now a leased outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub broadcast: i64,
    pub msisdn: String,
    /// The outbox row's id.
    pub id: String,
    /// Including this one.
    pub attempts: i32,
}

/// Writes the decisions of a claim, in one statement: a recipient the gate
/// lets go becomes an outbox row leased to `owner` (counted from `now`
/// toward the cap; a retried one's row is leased again), a deferred one
/// waits, a skipped one ends (with its retried row, if any).
pub async fn decide(
    client: &impl GenericClient,
    owner: &str,
    lease: std::time::Duration,
    now: DateTime<Utc>,
    decisions: &[(&Due, Gated)],
) -> Result<Vec<Released>, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH v AS (
                 SELECT * FROM unnest($3::int8[], $4::text[], $5::text[], $6::timestamptz[],
                                      $7::text[], $8::text[])
                          AS v(broadcast_id, msisdn, verdict, at, reason, text)
             ), recipients AS (
                 UPDATE broadcast_recipients r
                    SET status = CASE v.verdict WHEN 'send' THEN 'released'
                                                WHEN 'skip' THEN 'skipped'
                                                ELSE 'planned' END::recipient_status,
                        due_at = COALESCE(v.at, r.due_at), reason = v.reason, decided_at = $9
                   FROM v
                  WHERE r.broadcast_id = v.broadcast_id AND r.msisdn = v.msisdn
                    AND r.status = 'planned'
             ), retried_skipped AS (
                 UPDATE outbox o
                    SET status = 'skipped', gate_reason = v.reason, gated_at = $9,
                        last_error = 'gate: ' || v.reason, updated_at = now()
                   FROM v
                  WHERE v.verdict = 'skip' AND o.broadcast_id = v.broadcast_id
                    AND o.msisdn = v.msisdn AND o.status = 'planned'
             )
             INSERT INTO outbox AS o (msisdn, shortcode, text, sender, kind, program, broadcast_id,
                                      status, lease_owner, lease_expires_at, attempts,
                                      next_attempt_at, gated_at)
             SELECT v.msisdn, b.shortcode, v.text, b.sender, b.kind, b.program, b.id, 'sending',
                    $1, now() + make_interval(secs => $2), 1, $9, $9
               FROM v JOIN broadcasts b ON b.id = v.broadcast_id
              WHERE v.verdict = 'send'
             ON CONFLICT (broadcast_id, msisdn) WHERE broadcast_id IS NOT NULL
             DO UPDATE SET status = 'sending', lease_owner = EXCLUDED.lease_owner,
                           lease_expires_at = EXCLUDED.lease_expires_at,
                           attempts = o.attempts + 1, gate_reason = NULL,
                           gated_at = EXCLUDED.gated_at, updated_at = now()
                     WHERE o.status = 'planned'
             RETURNING o.broadcast_id, o.msisdn, o.id::text, o.attempts",
        )
        .await?;
    let n = decisions.len();
    let mut broadcasts = Vec::with_capacity(n);
    let mut numbers = Vec::with_capacity(n);
    let mut verdicts = Vec::with_capacity(n);
    let mut at: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
    let mut reasons: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut texts: Vec<Option<&str>> = Vec::with_capacity(n);
    for (due, d) in decisions {
        broadcasts.push(due.broadcast);
        numbers.push(due.msisdn.as_str());
        let (verdict, when, reason, text) = match d {
            Gated::Send => ("send", None, None, Some(due.text.as_str())),
            Gated::Defer { at, reason } => ("defer", Some(*at), Some(*reason), None),
            Gated::Skip { reason } => ("skip", None, Some(*reason), None),
        };
        verdicts.push(verdict);
        at.push(when);
        reasons.push(reason);
        texts.push(text);
    }
    let rows = client
        .query(
            &stmt,
            &[
                &owner,
                &lease.as_secs_f64(),
                &broadcasts,
                &numbers,
                &verdicts,
                &at,
                &reasons,
                &texts,
                &now,
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Released {
                broadcast: get(r, 0)?,
                msisdn: get(r, 1)?,
                id: get(r, 2)?,
                attempts: get(r, 3)?,
            })
        })
        .collect()
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
            // A recipient the gate let go is counted by its outbox row; a
            // retried one waiting again (`planned`) or skipped, by its own.
            "SELECT status::text, reason, count(*) FROM broadcast_recipients
              WHERE broadcast_id = $1 AND status <> 'released'
              GROUP BY 1, 2
             UNION ALL
             SELECT status::text, NULL, count(*) FROM outbox
              WHERE broadcast_id = $1 AND status NOT IN ('planned', 'skipped')
              GROUP BY 1
             ORDER BY 1, 2",
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
                    (SELECT min(due_at) FROM broadcast_recipients
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
            "SELECT r.msisdn, x.status, x.reason, x.decided_at, x.next_at, o.sent_at, o.delivered_at,
                    o.last_error, COALESCE(o.text, r.text, b.messages ->> r.language::text, '')
               FROM broadcast_recipients r
               JOIN broadcasts b ON b.id = r.broadcast_id
               LEFT JOIN outbox o ON o.broadcast_id = r.broadcast_id AND o.msisdn = r.msisdn
               CROSS JOIN LATERAL (SELECT
                    CASE WHEN r.status = 'released' THEN o.status::text ELSE r.status::text END
                        AS status,
                    CASE WHEN r.status = 'released' THEN o.gate_reason ELSE r.reason END AS reason,
                    CASE WHEN r.status = 'released' THEN o.gated_at ELSE r.decided_at END
                        AS decided_at,
                    CASE WHEN r.status = 'released' THEN o.next_attempt_at ELSE r.due_at END
                        AS next_at) x
              WHERE r.broadcast_id = $1 AND r.msisdn > $3::text
                AND ($2::text IS NULL OR x.status = $2)
              ORDER BY r.msisdn LIMIT $4",
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
                 UPDATE broadcast_recipients SET status = 'skipped', reason = 'cancelled',
                                                 decided_at = now()
                  WHERE broadcast_id = $1 AND status = 'planned' AND $2::text = 'cancelled'
                    AND EXISTS (SELECT 1 FROM changed)
             ), retried_skipped AS (
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
