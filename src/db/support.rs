//! Statements of the support side: tokens, the audit log, console
//! sessions, a number's facts and timeline, the subscriber list, staff
//! opt-outs, the consent export and stats.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;

use super::types::get;
use super::DbError;
use crate::core::State;
use crate::staff::view::{
    DayCounts, Evidence, ProgramBrief, ProgramCounts, ProgramDayCounts, ProgramState, Stats,
    Subscriber, SubscriberPage, SubscriberSummary, TimelineItem, TokenInfo,
};
use crate::staff::{Role, Staff, TimelineCursor};

/// Stores a new token's hash; `false` if an active token has that name.
pub async fn create_token(
    client: &impl GenericClient,
    name: &str,
    role: Role,
    sha256: &[u8; 32],
) -> Result<bool, DbError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO api_tokens (name, role, token_sha256) VALUES ($1, $2::text::api_role, $3)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .await?;
    let rows = client
        .query(&stmt, &[&name, &role.as_str(), &sha256.as_slice()])
        .await?;
    Ok(!rows.is_empty())
}

/// Every token, active ones first, then by name.
pub async fn list_tokens(client: &impl GenericClient) -> Result<Vec<TokenInfo>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT name, role::text, created_at, last_used_at, revoked_at FROM api_tokens
              ORDER BY revoked_at IS NOT NULL, name, created_at",
        )
        .await?;
    client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            Ok(TokenInfo {
                name: get(r, 0)?,
                role: get(r, 1)?,
                created_at: get(r, 2)?,
                last_used_at: get(r, 3)?,
                revoked_at: get(r, 4)?,
            })
        })
        .collect()
}

/// Revokes the active token with this name (its console sessions end with
/// it); `false` if there is none.
pub async fn revoke_token(client: &impl GenericClient, name: &str) -> Result<bool, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH revoked AS (
                 UPDATE api_tokens SET revoked_at = now()
                  WHERE name = $1 AND revoked_at IS NULL RETURNING id
             ), ended AS (
                 DELETE FROM console_sessions WHERE token_id IN (SELECT id FROM revoked)
             )
             SELECT count(*) FROM revoked",
        )
        .await?;
    let n: i64 = client.query_one(&stmt, &[&name]).await?.get(0);
    Ok(n > 0)
}

/// The active token with this hash, if any; notes its use (to the minute).
pub async fn authenticate(
    client: &impl GenericClient,
    sha256: &[u8; 32],
) -> Result<Option<Staff>, DbError> {
    let stmt = client
        .prepare_cached(
            // A read by the hash's index; the write only for a real token
            // not noted in the last minute, so neither an unknown token nor
            // a busy one costs an UPDATE per request.
            "WITH t AS (
                 SELECT id, name, role, last_used_at FROM api_tokens
                  WHERE token_sha256 = $1 AND revoked_at IS NULL
             ), noted AS (
                 UPDATE api_tokens a SET last_used_at = now() FROM t
                  WHERE a.id = t.id
                    AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')
             )
             SELECT id, name, role::text FROM t",
        )
        .await?;
    client
        .query_opt(&stmt, &[&sha256.as_slice()])
        .await?
        .map(|r| {
            Ok(Staff {
                token_id: get(&r, 0)?,
                name: get(&r, 1)?,
                role: get(&r, 2)?,
            })
        })
        .transpose()
}

/// One row of the audit log.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub token_id: Option<i64>,
    pub actor: &'a str,
    pub method: &'a str,
    pub endpoint: &'a str,
    pub msisdn: Option<&'a str>,
    pub status: Option<i16>,
    pub detail: Option<serde_json::Value>,
}

pub async fn audit(client: &impl GenericClient, e: &AuditEntry<'_>) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO audit_log (token_id, actor, method, endpoint, msisdn, status, detail)
             VALUES ($1, $2, $3, $4, $5::text, $6, $7)",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &e.token_id,
                &e.actor,
                &e.method,
                &e.endpoint,
                &e.msisdn,
                &e.status,
                &e.detail,
            ],
        )
        .await?;
    Ok(())
}

/// Starts a console session for `token_id`, valid for `hours`.
pub async fn create_session(
    client: &impl GenericClient,
    id_sha256: &[u8; 32],
    token_id: i64,
    csrf: &str,
    hours: i32,
) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached(
            "WITH gone AS (DELETE FROM console_sessions WHERE expires_at < now())
             INSERT INTO console_sessions (id_sha256, token_id, csrf, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(hours => $4))",
        )
        .await?;
    client
        .execute(&stmt, &[&id_sha256.as_slice(), &token_id, &csrf, &hours])
        .await?;
    Ok(())
}

/// The staff member and CSRF token of a live session (not expired, token
/// not revoked).
pub async fn session(
    client: &impl GenericClient,
    id_sha256: &[u8; 32],
) -> Result<Option<(Staff, String)>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT t.id, t.name, t.role::text, s.csrf
               FROM console_sessions s JOIN api_tokens t ON t.id = s.token_id
              WHERE s.id_sha256 = $1 AND s.expires_at > now() AND t.revoked_at IS NULL",
        )
        .await?;
    client
        .query_opt(&stmt, &[&id_sha256.as_slice()])
        .await?
        .map(|r| {
            Ok((
                Staff {
                    token_id: get(&r, 0)?,
                    name: get(&r, 1)?,
                    role: get(&r, 2)?,
                },
                get(&r, 3)?,
            ))
        })
        .transpose()
}

pub async fn end_session(client: &impl GenericClient, id_sha256: &[u8; 32]) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached("DELETE FROM console_sessions WHERE id_sha256 = $1")
        .await?;
    client.execute(&stmt, &[&id_sha256.as_slice()]).await?;
    Ok(())
}

const SUBSCRIBER: &str = "
    SELECT b.first_seen_at, b.last_inbound_at,
           s.program, s.state::text, s.since,
           e.id, e.cause::text, e.from_state::text, e.effective_at, e.recorded_at, e.actor, e.reason,
           m.keyword, m.text, m.gateway, m.gateway_message_id, m.received_at
      FROM subscribers b
      LEFT JOIN subscriptions s ON s.msisdn = b.msisdn
      LEFT JOIN subscription_events e ON e.id = s.event_id
      LEFT JOIN inbound_messages m ON m.id = e.inbound_message_id
     WHERE b.msisdn = $1
     ORDER BY s.program";

/// The number's timeline, newest first: (time, rank, key) descending,
/// where the rank orders what one transaction wrote (message, then state
/// change, then reply) and the key breaks the remaining ties.
const TIMELINE: &str = r#"
    SELECT * FROM (
        (SELECT 'inbound' AS kind, m.received_at AS at, 0 AS rank, lpad(m.id::text, 20, '0') AS key,
                m.id, NULL::text AS uid, m.gateway, m.gateway_message_id, m.text, m.action::text,
                m.program, m.keyword, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text,
                NULL::bigint, NULL::text, NULL::text, NULL::int4, NULL::text,
                NULL::timestamptz, NULL::timestamptz, NULL::text
           FROM inbound_messages m
          WHERE m.msisdn = $1
            AND ($2::timestamptz IS NULL
                 OR (m.received_at, 0, lpad(m.id::text, 20, '0') COLLATE "C") < ($2, $3, $4 COLLATE "C"))
          ORDER BY m.received_at DESC, m.id DESC
          LIMIT $5)
        UNION ALL
        (SELECT 'state_change', e.recorded_at, 1, lpad(e.id::text, 20, '0'),
                e.id, NULL, NULL, NULL, NULL, NULL,
                e.program, NULL, e.from_state::text, e.to_state::text, e.cause::text, e.actor, e.reason,
                e.inbound_message_id, NULL, NULL, NULL, NULL,
                NULL, NULL, NULL
           FROM subscription_events e
          WHERE e.msisdn = $1
            AND ($2::timestamptz IS NULL
                 OR (e.recorded_at, 1, lpad(e.id::text, 20, '0') COLLATE "C") < ($2, $3, $4 COLLATE "C"))
          ORDER BY e.recorded_at DESC, e.id DESC
          LIMIT $5)
        UNION ALL
        (SELECT 'reply', o.created_at, 2, o.id::text,
                NULL, o.id::text, NULL, NULL, o.text, NULL,
                o.program, NULL, NULL, NULL, NULL, NULL, o.gate_reason,
                o.broadcast_id, o.kind::text, o.sender, o.attempts, o.status::text,
                o.sent_at, o.delivered_at, o.last_error
           FROM outbox o
          WHERE o.msisdn = $1
            AND ($2::timestamptz IS NULL
                 OR (o.created_at, 2, o.id::text COLLATE "C") < ($2, $3, $4 COLLATE "C"))
          ORDER BY o.created_at DESC, o.id DESC
          LIMIT $5)
        UNION ALL
        -- A broadcast's recipient the gate has not let go (waiting, or
        -- skipped with its reason) has no outbox row yet.
        (SELECT 'reply', r.decided_at, 2, 'broadcast-' || lpad(r.broadcast_id::text, 20, '0'),
                NULL, 'broadcast-' || r.broadcast_id, NULL, NULL,
                COALESCE(r.text, b.messages ->> r.language::text, ''), NULL,
                b.program, NULL, NULL, NULL, NULL, NULL, r.reason,
                r.broadcast_id, b.kind::text, b.sender, 0, r.status::text,
                NULL, NULL, CASE WHEN r.status = 'skipped' THEN 'gate: ' || r.reason END
           FROM broadcasts b
           JOIN broadcast_recipients r ON r.broadcast_id = b.id AND r.msisdn = $1
          WHERE r.status <> 'released'
            AND NOT EXISTS (SELECT 1 FROM outbox o
                             WHERE o.broadcast_id = r.broadcast_id AND o.msisdn = r.msisdn)
            AND ($2::timestamptz IS NULL
                 OR (r.decided_at, 2, ('broadcast-' || lpad(r.broadcast_id::text, 20, '0')) COLLATE "C")
                    < ($2, $3, $4 COLLATE "C"))
          ORDER BY r.decided_at DESC, r.broadcast_id DESC
          LIMIT $5)
    ) t
    ORDER BY at DESC, rank DESC, key COLLATE "C" DESC
    LIMIT $5"#;

/// Everything known about `msisdn`, with one page of its timeline
/// (`limit` entries older than `before`); `None` if it was never seen.
pub async fn subscriber(
    client: &impl GenericClient,
    msisdn: &str,
    limit: i64,
    before: Option<&TimelineCursor>,
) -> Result<Option<Subscriber>, DbError> {
    let stmt = client.prepare_cached(SUBSCRIBER).await?;
    let rows = client.query(&stmt, &[&msisdn]).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut s = Subscriber {
        msisdn: msisdn.to_owned(),
        first_seen_at: first.get(0),
        last_inbound_at: first.get(1),
        programs: Vec::new(),
        timeline: Vec::new(),
        next_before: None,
        as_of: None,
    };
    for r in &rows {
        let Some(program) = r.get::<_, Option<String>>(2) else {
            continue;
        };
        s.programs.push(ProgramState {
            program,
            state: get(r, 3)?,
            since: r.get(4),
            consent: Evidence {
                event_id: r.get(5),
                cause: get(r, 6)?,
                from_state: get(r, 7)?,
                effective_at: r.get(8),
                recorded_at: r.get(9),
                actor: r.get(10),
                reason: r.get(11),
                keyword: r.get(12),
                text: r.get(13),
                gateway: r.get(14),
                gateway_message_id: r.get(15),
                received_at: r.get(16),
            },
        });
    }
    // One more than asked tells whether an older page exists.
    let fetch = limit + 1;
    let (at, rank, key) = match before {
        Some(c) => (Some(c.at), c.rank, c.key.as_str()),
        None => (None, 0, ""),
    };
    let stmt = client.prepare_cached(TIMELINE).await?;
    let rows = client
        .query(&stmt, &[&msisdn, &at, &rank, &key, &fetch])
        .await?;
    let mut last = None;
    for r in rows.iter().take(limit as usize) {
        let kind: &str = r.get(0);
        let at: DateTime<Utc> = r.get(1);
        last = Some(TimelineCursor {
            at,
            rank: r.get(2),
            key: r.get(3),
        });
        s.timeline.push(match kind {
            "inbound" => TimelineItem::Inbound {
                id: r.get(4),
                at,
                gateway: r.get(6),
                gateway_message_id: r.get(7),
                text: r.get(8),
                action: get(r, 9)?,
                program: r.get(10),
                keyword: r.get(11),
            },
            "state_change" => TimelineItem::StateChange {
                id: r.get(4),
                at,
                program: r.get(10),
                from_state: get(r, 12)?,
                to_state: get(r, 13)?,
                cause: get(r, 14)?,
                actor: r.get(15),
                reason: r.get(16),
                inbound_message_id: r.get(17),
            },
            _ => TimelineItem::Reply {
                id: r.get(5),
                at,
                text: r.get(8),
                program: r.get(10),
                kind: get(r, 18)?,
                sender: r.get(19),
                attempts: r.get(20),
                status: get(r, 21)?,
                gate_reason: get(r, 16)?,
                broadcast_id: get(r, 17)?,
                last_error: r.get(24),
                sent_at: r.get(22),
                delivered_at: r.get(23),
            },
        });
    }
    if rows.len() as i64 > limit {
        s.next_before = last.map(|c| c.encode());
    }
    Ok(Some(s))
}

const LIST: &str = "
    SELECT b.msisdn, b.first_seen_at,
           COALESCE(array_agg(s.program::text ORDER BY s.program) FILTER (WHERE s.program IS NOT NULL), '{}'),
           COALESCE(array_agg(s.state::text ORDER BY s.program) FILTER (WHERE s.program IS NOT NULL), '{}'),
           COALESCE(array_agg(s.since ORDER BY s.program) FILTER (WHERE s.program IS NOT NULL), '{}')
      FROM (
          SELECT b.msisdn, b.first_seen_at FROM subscribers b
           WHERE b.msisdn > $1
             AND (($2::text IS NULL AND $3::text IS NULL) OR EXISTS (
                  SELECT 1 FROM subscriptions x
                   WHERE x.msisdn = b.msisdn
                     AND ($2::text IS NULL OR x.program = $2)
                     AND ($3::text IS NULL OR x.state = $3::text::subscription_state)))
           ORDER BY b.msisdn
           LIMIT $4
      ) b
      LEFT JOIN subscriptions s ON s.msisdn = b.msisdn
     GROUP BY b.msisdn, b.first_seen_at
     ORDER BY b.msisdn";

/// A page of numbers after `cursor` (keyset on the number, so rows added
/// while a client pages neither repeat nor hide rows that were there).
pub async fn list(
    client: &impl GenericClient,
    program: Option<&str>,
    state: Option<&str>,
    cursor: Option<&str>,
    limit: i64,
) -> Result<SubscriberPage, DbError> {
    let stmt = client.prepare_cached(LIST).await?;
    // '+' sorts before every digit, so "+" is before every number.
    let after = cursor.unwrap_or("+");
    let fetch = limit + 1;
    let rows = client
        .query(&stmt, &[&after, &program, &state, &fetch])
        .await?;
    let items: Vec<SubscriberSummary> = rows
        .iter()
        .take(limit as usize)
        .map(|r| {
            let programs: Vec<String> = get(r, 2)?;
            let states: Vec<State> = get(r, 3)?;
            let since: Vec<DateTime<Utc>> = get(r, 4)?;
            Ok(SubscriberSummary {
                msisdn: get(r, 0)?,
                first_seen_at: get(r, 1)?,
                programs: programs
                    .into_iter()
                    .zip(states)
                    .zip(since)
                    .map(|((program, state), since)| ProgramBrief {
                        program,
                        state,
                        since,
                    })
                    .collect(),
            })
        })
        .collect::<Result<_, DbError>>()?;
    let next_cursor = if rows.len() as i64 > limit {
        items.last().map(|i| i.msisdn.clone())
    } else {
        None
    };
    Ok(SubscriberPage {
        items,
        next_cursor,
        as_of: None,
    })
}

/// Records a staff opt-out (see `keyward_staff_opt_out` in
/// `sql/V4__support.sql`). `None`: all programs of a number never seen.
pub struct StaffOptOut<'a> {
    pub msisdn: &'a str,
    pub program: Option<&'a str>,
    pub actor: &'a str,
    pub reason: &'a str,
    pub goodbye: Option<Goodbye<'a>>,
}

/// The confirmation SMS of a staff opt-out.
pub struct Goodbye<'a> {
    pub text: &'a str,
    pub program: &'a str,
    pub shortcode: &'a str,
    pub sender: &'a str,
}

pub async fn staff_opt_out(
    client: &impl GenericClient,
    o: &StaffOptOut<'_>,
) -> Result<Option<Vec<String>>, DbError> {
    let stmt = client
        .prepare_cached("SELECT keyward_staff_opt_out($1, $2, $3, $4, $5, $6, $7, $8)")
        .await?;
    let g = o.goodbye.as_ref();
    let row = client
        .query_one(
            &stmt,
            &[
                &o.msisdn,
                &o.program,
                &o.actor,
                &o.reason,
                &g.map(|g| g.text),
                &g.map(|g| g.program),
                &g.map(|g| g.shortcode),
                &g.map(|g| g.sender),
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// One line of the consent export: a ledger event and its message.
pub struct ExportRow {
    pub event_id: i64,
    pub fields: [Option<String>; 14],
}

pub const EXPORT_HEADER: [&str; 15] = [
    "event_id",
    "msisdn",
    "program",
    "from_state",
    "to_state",
    "cause",
    "effective_at",
    "recorded_at",
    "keyword",
    "text",
    "gateway",
    "gateway_message_id",
    "received_at",
    "actor",
    "reason",
];

const EXPORT_PAGE: &str = "
    SELECT e.id, e.msisdn, e.program, e.from_state::text, e.to_state::text, e.cause::text,
           to_char(e.effective_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
           to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
           m.keyword, m.text, m.gateway, m.gateway_message_id,
           to_char(m.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
           e.actor, e.reason
      FROM subscription_events e
      LEFT JOIN inbound_messages m ON m.id = e.inbound_message_id
     WHERE e.id > $1 AND e.id <= $5
       AND ($2::text IS NULL OR e.program = $2)
       AND ($3::timestamptz IS NULL OR e.recorded_at >= $3)
     ORDER BY e.id
     LIMIT $4";

/// The last ledger event a consent export includes, making the export a
/// snapshot as of this call.
///
/// An event gets its number when it is written but becomes visible when
/// its transaction commits, so a transaction still open may hold a lower
/// number than events already visible; an export paging past that number
/// would never see the event. So this takes the highest number handed out
/// so far and then waits until every transaction that could hold a number
/// up to it has ended (the writers that were running at a snapshot taken
/// after reading the number — inbound writes take milliseconds; writers
/// in other databases of the same cluster are not waited for). From then
/// on the events up to the bound are final: the ledger is append-only.
/// `None` if those writers are still running after `wait`.
///
/// On a hot standby (`standby`) the bound is the highest event it has
/// replayed instead: a standby's sequence reads up to 32 numbers ahead of
/// those handed out (the primary logs them in advance), and the events of
/// numbers it has not replayed are not there yet. A writer still running
/// on the primary is waited for the same way, until the standby replays
/// its end.
pub async fn export_bound(
    client: &impl GenericClient,
    wait: std::time::Duration,
    standby: bool,
) -> Result<Option<i64>, DbError> {
    let bound: i64 = client
        .query_one(
            if standby {
                "SELECT coalesce(max(id), 0) FROM subscription_events"
            } else {
                "SELECT coalesce(pg_sequence_last_value(
                        pg_get_serial_sequence('subscription_events', 'id')::regclass), 0)"
            },
            &[],
        )
        .await?
        .get(0);
    // A later statement, so a later snapshot: a writer that took a number
    // up to `bound` has either committed in it or is listed as running.
    let snapshot: String = client
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .await?
        .get(0);
    let running = client
        .prepare_cached(
            // Writers known to be in another database of the cluster
            // cannot hold a number of this ledger: not waited for. (A
            // transaction whose session cannot be seen is waited for.)
            "SELECT count(*) FROM pg_snapshot_xip($1::text::pg_snapshot) x
              WHERE pg_xact_status(x) = 'in progress'
                AND NOT EXISTS (
                    SELECT 1 FROM pg_stat_activity a
                     WHERE a.backend_xid = (x::text::bigint % 4294967296)::text::xid
                       AND a.datname IS DISTINCT FROM current_database())",
        )
        .await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let open: i64 = client.query_one(&running, &[&snapshot]).await?.get(0);
        if open == 0 {
            return Ok(Some(bound));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The next `limit` ledger events after `after_id`, up to `upto` (keyset
/// paging, so the export never holds more than a page).
pub async fn export_page(
    client: &impl GenericClient,
    after_id: i64,
    upto: i64,
    program: Option<&str>,
    since: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Vec<ExportRow>, DbError> {
    let stmt = client.prepare_cached(EXPORT_PAGE).await?;
    let rows = client
        .query(&stmt, &[&after_id, &program, &since, &limit, &upto])
        .await?;
    Ok(rows
        .iter()
        .map(|r| ExportRow {
            event_id: r.get(0),
            fields: std::array::from_fn(|i| r.get(i + 1)),
        })
        .collect())
}

pub async fn stats(client: &impl GenericClient, days: i32) -> Result<Stats, DbError> {
    let counts = client
        .prepare_cached(
            "SELECT program, state::text, count(*) FROM subscriptions
              GROUP BY program, state ORDER BY program",
        )
        .await?;
    let mut programs: Vec<ProgramCounts> = Vec::new();
    for r in client.query(&counts, &[]).await? {
        let program: String = r.get(0);
        if programs.last().is_none_or(|p| p.program != program) {
            programs.push(ProgramCounts {
                program,
                ..Default::default()
            });
        }
        let n: i64 = r.get(2);
        if let Some(p) = programs.last_mut() {
            match get::<State>(&r, 1)? {
                State::None => p.none = n,
                State::Pending => p.pending = n,
                State::Subscribed => p.subscribed = n,
                State::Unsubscribed => p.unsubscribed = n,
            }
        }
    }
    let per_day = client
        .prepare_cached(
            "SELECT (recorded_at AT TIME ZONE 'UTC')::date AS day, program,
                    count(*) FILTER (WHERE to_state = 'subscribed'),
                    count(*) FILTER (WHERE to_state = 'unsubscribed')
               FROM subscription_events
              WHERE recorded_at >= (now() AT TIME ZONE 'UTC')::date - ($1::int4 - 1)
                AND to_state IN ('subscribed', 'unsubscribed')
              GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .await?;
    let today_stmt = client
        .prepare_cached("SELECT (now() AT TIME ZONE 'UTC')::date")
        .await?;
    let today = client
        .query_one(&today_stmt, &[])
        .await?
        .get::<_, NaiveDate>(0);
    let mut daily: Vec<DayCounts> = (0..days)
        .rev()
        .map(|back| DayCounts {
            day: today - chrono::Days::new(back as u64),
            opt_ins: 0,
            opt_outs: 0,
        })
        .collect();
    let mut daily_by_program = Vec::new();
    for r in client.query(&per_day, &[&days]).await? {
        let p = ProgramDayCounts {
            day: r.get(0),
            program: r.get(1),
            opt_ins: r.get(2),
            opt_outs: r.get(3),
        };
        if let Some(d) = daily.iter_mut().find(|d| d.day == p.day) {
            d.opt_ins += p.opt_ins;
            d.opt_outs += p.opt_outs;
        }
        daily_by_program.push(p);
    }
    Ok(Stats {
        programs,
        daily,
        daily_by_program,
        as_of: None,
    })
}
