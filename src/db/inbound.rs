//! Statements of the inbound path.
//!
//! Per message, the usual case is two statements and one commit:
//! [`load_facts`] (a read, no lock) and [`apply`] (the function
//! `keyward_apply_inbound`, which writes everything in one statement after
//! checking the number's version). Only when another message from the same
//! number got in between does the caller retry under a row lock
//! ([`lock_subscriber`] inside a transaction), where the check cannot fail.
//!
//! Under load several messages are applied together (group commit, see
//! [`crate::db::batch`]): [`load_facts_batch`] and [`apply_batch`] are the
//! same two statements for a whole batch, one execution and one commit for
//! all of its messages.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::types::get;
use super::DbError;
use crate::core::plan::{Change, Subscription};
use crate::core::{Action, Language, Outcome, ReplyKind, State};

/// What the database knows about a number, as the core needs it.
#[derive(Debug, Clone, Default)]
pub struct StoredFacts {
    /// 0 when the number has never been seen.
    pub version: i64,
    pub last_goodbye_at: Option<DateTime<Utc>>,
    pub last_fallback_at: Option<DateTime<Utc>>,
    /// Messages with this very text from this number in the last hour.
    pub same_text_last_hour: u32,
    pub programs: Vec<Subscription>,
    /// Set when this gateway message id was stored before.
    pub duplicate: Option<StoredAnswer>,
}

/// The answer recorded for a stored inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub inbound_id: i64,
    pub action: Option<Action>,
    pub program: Option<String>,
    pub state: Option<State>,
}

const LOAD_FACTS: &str = "
    SELECT s.version, s.last_goodbye_at, s.last_fallback_at, t.same_text,
           d.id, d.action::text, d.program, d.result_state::text,
           sub.program, sub.state::text, sub.since, sub.last_opt_out_at
      FROM (SELECT 1) AS one
      LEFT JOIN subscribers s ON s.msisdn = $1
      LEFT JOIN inbound_messages d ON d.gateway = $3 AND d.gateway_message_id = $4
      LEFT JOIN subscriptions sub ON sub.msisdn = $1
      CROSS JOIN LATERAL (
          SELECT count(*)::int4 FROM inbound_messages i
           WHERE i.msisdn = $1 AND i.text = $2 AND i.received_at > now() - interval '1 hour'
      ) AS t(same_text)
     ORDER BY sub.program";

/// Reads everything the decision needs, in one statement.
pub async fn load_facts(
    client: &impl GenericClient,
    msisdn: &str,
    text: &str,
    gateway: &str,
    gateway_message_id: &str,
) -> Result<StoredFacts, DbError> {
    let stmt = client.prepare_cached(LOAD_FACTS).await?;
    let rows = client
        .query(&stmt, &[&msisdn, &text, &gateway, &gateway_message_id])
        .await?;
    let mut facts = StoredFacts::default();
    for (i, row) in rows.iter().enumerate() {
        if i == 0 {
            facts = head(row, 0)?;
        }
        facts.programs.extend(subscription(row, 8)?);
    }
    Ok(facts)
}

/// What [`load_facts_batch`] looks up for one message.
#[derive(Debug, Clone, Copy)]
pub struct FactsKey<'a> {
    pub msisdn: &'a str,
    pub text: &'a str,
    pub gateway: &'a str,
    pub gateway_message_id: &'a str,
}

const LOAD_FACTS_BATCH: &str = "
    SELECT b.i::int4, s.version, s.last_goodbye_at, s.last_fallback_at, t.same_text,
           d.id, d.action::text, d.program, d.result_state::text,
           sub.program, sub.state::text, sub.since, sub.last_opt_out_at
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
           WITH ORDINALITY AS b(msisdn, text, gateway, gateway_message_id, i)
      LEFT JOIN subscribers s ON s.msisdn = b.msisdn
      LEFT JOIN inbound_messages d
             ON d.gateway = b.gateway AND d.gateway_message_id = b.gateway_message_id
      LEFT JOIN subscriptions sub ON sub.msisdn = b.msisdn
      CROSS JOIN LATERAL (
          SELECT count(*)::int4 FROM inbound_messages i
           WHERE i.msisdn = b.msisdn AND i.text = b.text AND i.received_at > now() - interval '1 hour'
      ) AS t(same_text)
     ORDER BY b.i, sub.program";

/// [`load_facts`] for several messages in one statement: the facts of
/// each, in the order of `keys`.
pub async fn load_facts_batch(
    client: &impl GenericClient,
    keys: &[FactsKey<'_>],
) -> Result<Vec<StoredFacts>, DbError> {
    let stmt = client.prepare_cached(LOAD_FACTS_BATCH).await?;
    let msisdns: Vec<&str> = keys.iter().map(|k| k.msisdn).collect();
    let texts: Vec<&str> = keys.iter().map(|k| k.text).collect();
    let gateways: Vec<&str> = keys.iter().map(|k| k.gateway).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.gateway_message_id).collect();
    let rows = client
        .query(&stmt, &[&msisdns, &texts, &gateways, &ids])
        .await?;
    let mut all = vec![None::<StoredFacts>; keys.len()];
    for row in &rows {
        let i = get::<i32>(row, 0)?;
        let slot = usize::try_from(i - 1)
            .ok()
            .and_then(|i| all.get_mut(i))
            .ok_or_else(|| DbError::Decode(format!("facts for message {i} of a batch")))?;
        let facts = match slot {
            Some(facts) => facts,
            None => slot.insert(head(row, 1)?),
        };
        facts.programs.extend(subscription(row, 9)?);
    }
    all.into_iter()
        .enumerate()
        .map(|(i, f)| {
            f.ok_or_else(|| DbError::Decode(format!("no facts for message {i} of a batch")))
        })
        .collect()
}

/// The facts of a number from the first row of its [`LOAD_FACTS`] (or
/// [`LOAD_FACTS_BATCH`]) answer, whose columns start at `at`; its
/// subscriptions come one per row ([`subscription`]).
fn head(row: &tokio_postgres::Row, at: usize) -> Result<StoredFacts, DbError> {
    Ok(StoredFacts {
        version: get::<Option<i64>>(row, at)?.unwrap_or(0),
        last_goodbye_at: get(row, at + 1)?,
        last_fallback_at: get(row, at + 2)?,
        same_text_last_hour: get::<i32>(row, at + 3)?.max(0) as u32,
        programs: Vec::new(),
        duplicate: match get::<Option<i64>>(row, at + 4)? {
            Some(_) => Some(stored_answer(row, at + 4)?),
            None => None,
        },
    })
}

/// A stored message's answer from four columns at `at`: its id, action,
/// program and state.
fn stored_answer(row: &tokio_postgres::Row, at: usize) -> Result<StoredAnswer, DbError> {
    Ok(StoredAnswer {
        inbound_id: get(row, at)?,
        action: get(row, at + 1)?,
        program: get(row, at + 2)?,
        state: get(row, at + 3)?,
    })
}

/// What `function` (the single or the batch apply) answered for one
/// message: its status at `at`, then the stored answer.
fn applied(row: &tokio_postgres::Row, at: usize, function: &str) -> Result<Applied, DbError> {
    let status: String = get(row, at)?;
    Ok(match status.as_str() {
        "applied" => Applied::Stored(stored_answer(row, at + 1)?),
        "duplicate" => Applied::Duplicate(stored_answer(row, at + 1)?),
        "conflict" => Applied::Conflict,
        other => {
            return Err(DbError::Decode(format!(
                "{function} answered `{}`",
                crate::telemetry::clip(other, 40)
            )))
        }
    })
}

/// The subscription a facts row carries in its columns from `at`, if any.
fn subscription(row: &tokio_postgres::Row, at: usize) -> Result<Option<Subscription>, DbError> {
    let Some(program) = get::<Option<String>>(row, at)? else {
        return Ok(None);
    };
    Ok(Some(Subscription {
        program,
        state: get(row, at + 1)?,
        since: get(row, at + 2)?,
        last_opt_out_at: get(row, at + 3)?,
    }))
}

/// Inside a transaction: makes sure the number has a row and locks it until
/// commit, so facts read next cannot change under us.
pub async fn lock_subscriber(client: &impl GenericClient, msisdn: &str) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO subscribers (msisdn) VALUES ($1::text)
             ON CONFLICT (msisdn) DO UPDATE SET msisdn = EXCLUDED.msisdn",
        )
        .await?;
    client.execute(&stmt, &[&msisdn]).await?;
    Ok(())
}

/// Everything to write for one inbound message.
#[derive(Debug, Clone)]
pub struct Apply<'a> {
    pub msisdn: &'a str,
    pub expected_version: i64,
    pub gateway: &'a str,
    pub gateway_message_id: &'a str,
    pub shortcode: &'a str,
    pub text: &'a str,
    pub sent_at: Option<DateTime<Utc>>,
    /// The time the ledger records; `None`: the database's now.
    pub evidence_at: Option<DateTime<Utc>>,
    pub raw: &'a serde_json::Value,
    pub action: Action,
    pub program: Option<&'a str>,
    pub keyword: Option<&'a str>,
    pub language: Option<Language>,
    pub result_state: Option<State>,
    pub outcome: Outcome,
    pub changes: &'a [Change],
    pub reply: Option<Reply<'a>>,
}

#[derive(Debug, Clone)]
pub struct Reply<'a> {
    pub kind: ReplyKind,
    /// The configured short code it is sent from (and that its text names).
    pub from: &'a str,
    pub program: Option<&'a str>,
    pub text: &'a str,
    pub sender: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Stored(StoredAnswer),
    Duplicate(StoredAnswer),
    /// The number's version moved on: decide again.
    Conflict,
}

const APPLY: &str = "SELECT r_status, r_inbound_id, r_action, r_program, r_state FROM keyward_apply_inbound(
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)";

pub async fn apply(client: &impl GenericClient, a: &Apply<'_>) -> Result<Applied, DbError> {
    let stmt = client.prepare_cached(APPLY).await?;
    let programs: Vec<&str> = a.changes.iter().map(|c| c.program.as_str()).collect();
    let from: Vec<State> = a.changes.iter().map(|c| c.from).collect();
    let to: Vec<State> = a.changes.iter().map(|c| c.to).collect();
    let reply_kind = a.reply.as_ref().map(|r| r.kind);
    let reply_program = a.reply.as_ref().and_then(|r| r.program);
    let reply_text = a.reply.as_ref().map(|r| r.text);
    let sender = a.reply.as_ref().map(|r| r.sender);
    let reply_from = a.reply.as_ref().map(|r| r.from);
    let row = client
        .query_one(
            &stmt,
            &[
                &a.msisdn,
                &a.expected_version,
                &a.gateway,
                &a.gateway_message_id,
                &a.shortcode,
                &a.text,
                &a.sent_at,
                &a.raw,
                &a.action,
                &a.program,
                &a.keyword,
                &a.language,
                &a.result_state,
                &a.outcome,
                &programs,
                &from,
                &to,
                &reply_kind,
                &reply_program,
                &reply_text,
                &sender,
                &a.evidence_at,
                &reply_from,
            ],
        )
        .await?;
    applied(&row, 0, "keyward_apply_inbound")
}

const APPLY_BATCH: &str = "SELECT r_index, r_status, r_inbound_id, r_action, r_program, r_state
    FROM keyward_apply_inbound_batch(
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)";

/// [`apply`] for several messages in one statement (`keyward_apply_inbound_batch`,
/// sql/V14): one answer per message, in order. At most one message per
/// number and per gateway message id (the function refuses more). One
/// message the schema refuses fails the whole statement: the caller
/// applies each alone then.
pub async fn apply_batch(
    client: &impl GenericClient,
    batch: &[Apply<'_>],
) -> Result<Vec<Applied>, DbError> {
    let stmt = client.prepare_cached(APPLY_BATCH).await?;
    macro_rules! column {
        ($($f:tt)*) => { batch.iter().map(|a| a.$($f)*).collect::<Vec<_>>() };
    }
    let msisdn = column!(msisdn);
    let version = column!(expected_version);
    let gateway = column!(gateway);
    let gateway_message_id = column!(gateway_message_id);
    let shortcode = column!(shortcode);
    let text = column!(text);
    let sent_at = column!(sent_at);
    let raw = column!(raw);
    let action = column!(action);
    let program = column!(program);
    let keyword = column!(keyword);
    let language = column!(language);
    let result_state = column!(result_state);
    let outcome = column!(outcome);
    let evidence_at = column!(evidence_at);
    let mut change_of: Vec<i32> = Vec::new();
    let mut programs: Vec<&str> = Vec::new();
    let mut from: Vec<State> = Vec::new();
    let mut to: Vec<State> = Vec::new();
    for (i, a) in batch.iter().enumerate() {
        for c in a.changes {
            change_of.push(i32::try_from(i + 1).unwrap_or(i32::MAX));
            programs.push(c.program.as_str());
            from.push(c.from);
            to.push(c.to);
        }
    }
    let reply_kind = column!(reply.as_ref().map(|r| r.kind));
    let reply_program = column!(reply.as_ref().and_then(|r| r.program));
    let reply_text = column!(reply.as_ref().map(|r| r.text));
    let sender = column!(reply.as_ref().map(|r| r.sender));
    let reply_from = column!(reply.as_ref().map(|r| r.from));
    let rows = client
        .query(
            &stmt,
            &[
                &msisdn,
                &version,
                &gateway,
                &gateway_message_id,
                &shortcode,
                &text,
                &sent_at,
                &raw,
                &action,
                &program,
                &keyword,
                &language,
                &result_state,
                &outcome,
                &change_of,
                &programs,
                &from,
                &to,
                &reply_kind,
                &reply_program,
                &reply_text,
                &sender,
                &evidence_at,
                &reply_from,
            ],
        )
        .await?;
    if rows.len() != batch.len() {
        return Err(DbError::Decode(format!(
            "keyward_apply_inbound_batch answered {} rows for {} messages",
            rows.len(),
            batch.len()
        )));
    }
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let index: i32 = get(row, 0)?;
            if usize::try_from(index).ok() != Some(i + 1) {
                return Err(DbError::Decode(format!(
                    "keyward_apply_inbound_batch answered message {index} in place {}",
                    i + 1
                )));
            }
            applied(row, 1, "keyward_apply_inbound_batch")
        })
        .collect()
}

/// A stored part of a concatenated message.
#[derive(Debug, Clone)]
pub struct StoredPart {
    pub id: i64,
    pub gateway_message_id: String,
    pub total: i16,
    pub part: i16,
    pub text: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub raw: serde_json::Value,
}

/// One part to store.
#[derive(Debug, Clone)]
pub struct NewPart<'a> {
    pub gateway: &'a str,
    pub gateway_message_id: &'a str,
    pub msisdn: &'a str,
    pub reference: &'a str,
    pub total: i16,
    pub part: i16,
    pub text: &'a str,
    pub sent_at: Option<DateTime<Utc>>,
    pub raw: &'a serde_json::Value,
}

/// How long the parts of one concatenated message may take to arrive.
pub const PART_WINDOW_HOURS: f64 = 24.0;

/// Stores a part (a redelivered part is ignored) and returns the parts of
/// its message not yet assembled and not older than the window, in order. Run it with the subscriber
/// locked, so two last parts arriving together see each other.
pub async fn store_part(
    client: &impl GenericClient,
    p: &NewPart<'_>,
) -> Result<Vec<StoredPart>, DbError> {
    let insert = client
        .prepare_cached(
            "INSERT INTO inbound_parts
                 (gateway, gateway_message_id, msisdn, reference, total, part, text, sent_at, raw)
             VALUES ($1::text, $2::text, $3::text, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (gateway, gateway_message_id) DO NOTHING",
        )
        .await?;
    client
        .execute(
            &insert,
            &[
                &p.gateway,
                &p.gateway_message_id,
                &p.msisdn,
                &p.reference,
                &p.total,
                &p.part,
                &p.text,
                &p.sent_at,
                &p.raw,
            ],
        )
        .await?;
    let pending = client
        .prepare_cached(
            // Parts wait a day at most: older ones of this number are
            // dropped here, and never spliced into a later message that
            // happens to reuse the reference.
            "WITH expired AS (
                 DELETE FROM inbound_parts
                  WHERE msisdn = $1 AND gateway = $2 AND inbound_message_id IS NULL
                    AND received_at < now() - $4 * interval '1 hour'
             )
             SELECT id, gateway_message_id, total, part, text, sent_at, raw
               FROM inbound_parts
              WHERE msisdn = $1 AND gateway = $2 AND reference = $3 AND inbound_message_id IS NULL
                AND received_at >= now() - $4 * interval '1 hour'
              ORDER BY part, id",
        )
        .await?;
    let rows = client
        .query(
            &pending,
            &[&p.msisdn, &p.gateway, &p.reference, &PART_WINDOW_HOURS],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| StoredPart {
            id: r.get(0),
            gateway_message_id: r.get(1),
            total: r.get(2),
            part: r.get(3),
            text: r.get(4),
            sent_at: r.get(5),
            raw: r.get(6),
        })
        .collect())
}

/// Drops every part older than the window that never became a message;
/// returns how many.
pub async fn expire_parts(client: &impl GenericClient) -> Result<u64, DbError> {
    let stmt = client
        .prepare_cached(
            "DELETE FROM inbound_parts
              WHERE inbound_message_id IS NULL AND received_at < now() - $1 * interval '1 hour'",
        )
        .await?;
    Ok(client.execute(&stmt, &[&PART_WINDOW_HOURS]).await?)
}

/// Marks parts as assembled into an inbound message.
pub async fn mark_parts_assembled(
    client: &impl GenericClient,
    part_ids: &[i64],
    inbound_id: i64,
) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached("UPDATE inbound_parts SET inbound_message_id = $2 WHERE id = ANY($1)")
        .await?;
    client.execute(&stmt, &[&part_ids, &inbound_id]).await?;
    Ok(())
}
