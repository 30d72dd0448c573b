//! What the support API answers (and the console and the CLI show): plain
//! data, serialised as JSON and described in the OpenAPI document.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::{Action, ReplyKind, State};

/// What caused a ledger event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A message from the number.
    Inbound,
    /// A staff member (the actor), with a reason.
    Staff,
    /// The gateway (a carrier-level opt-out).
    Provider,
    System,
}

impl Cause {
    pub const ALL: [Cause; 4] = [Cause::Inbound, Cause::Staff, Cause::Provider, Cause::System];
}

crate::labels!(Cause { Inbound => "inbound", Staff => "staff", Provider => "provider", System => "system" });

/// What an outbox message is: a reply, or a broadcast's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SentKind {
    Reply(ReplyKind),
    Broadcast(crate::core::MessageKind),
}

impl SentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SentKind::Reply(k) => k.as_str(),
            SentKind::Broadcast(k) => k.as_str(),
        }
    }
}

impl std::fmt::Display for SentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a reply is on its way to the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplyStatus {
    /// A broadcast message waiting for its moment (the send gate).
    Planned,
    Queued,
    Sending,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    Dead,
    Cancelled,
    /// Possibly sent: the provider's answer never came.
    Unknown,
    /// A broadcast message the send gate refused (`gate_reason`).
    Skipped,
}

impl ReplyStatus {
    pub const ALL: [ReplyStatus; 11] = [
        ReplyStatus::Planned,
        ReplyStatus::Queued,
        ReplyStatus::Sending,
        ReplyStatus::Sent,
        ReplyStatus::Delivered,
        ReplyStatus::Undelivered,
        ReplyStatus::Failed,
        ReplyStatus::Dead,
        ReplyStatus::Cancelled,
        ReplyStatus::Unknown,
        ReplyStatus::Skipped,
    ];
}

crate::labels!(ReplyStatus { Planned => "planned", Queued => "queued", Sending => "sending", Sent => "sent", Delivered => "delivered", Undelivered => "undelivered", Failed => "failed", Dead => "dead", Cancelled => "cancelled", Unknown => "unknown", Skipped => "skipped" });

/// Everything known about one number.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subscriber {
    /// E.164.
    #[schema(example = "+6281234567890")]
    pub msisdn: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_inbound_at: Option<DateTime<Utc>>,
    /// Each program the number has a state in.
    pub programs: Vec<ProgramState>,
    /// Inbound messages, state changes and replies, newest first.
    pub timeline: Vec<TimelineItem>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<String>,
    /// Where this answer was read and how current it is (set by the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<AsOf>,
}

/// Where a staff read was answered from, and as of when: the primary, or
/// the read replica (`database.read_url`) and how far behind it was.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AsOf {
    /// `primary` or `replica`.
    #[schema(example = "replica")]
    pub source: String,
    /// The data is the primary's as of this moment.
    pub at: DateTime<Utc>,
    /// How far behind the primary it was, in seconds (0 on the primary).
    #[schema(example = 0.0)]
    pub lag_secs: f64,
}

/// A number's state in one program and the evidence for it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgramState {
    #[schema(example = "promo")]
    pub program: String,
    /// `none`, `pending`, `subscribed` or `unsubscribed`.
    #[schema(value_type = String, example = "subscribed")]
    pub state: State,
    pub since: DateTime<Utc>,
    pub consent: Evidence,
}

/// The ledger event that set a state, and the message that caused it
/// (when a message did: for staff and provider opt-outs, the actor and
/// reason say who and why).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Evidence {
    pub event_id: i64,
    /// `inbound`, `staff`, `provider` or `system`.
    pub cause: Cause,
    #[schema(value_type = String)]
    pub from_state: State,
    pub effective_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    #[schema(example = "MAU")]
    pub keyword: Option<String>,
    /// The exact text received.
    pub text: Option<String>,
    pub gateway: Option<String>,
    pub gateway_message_id: Option<String>,
    pub received_at: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    pub reason: Option<String>,
}

/// One entry of a number's timeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TimelineItem {
    /// A message the number sent.
    Inbound {
        id: i64,
        at: DateTime<Utc>,
        gateway: String,
        gateway_message_id: String,
        text: String,
        #[schema(value_type = Option<String>)]
        action: Option<Action>,
        program: Option<String>,
        keyword: Option<String>,
    },
    /// A ledger event.
    StateChange {
        id: i64,
        at: DateTime<Utc>,
        program: String,
        #[schema(value_type = String)]
        from_state: State,
        #[schema(value_type = String)]
        to_state: State,
        cause: Cause,
        actor: Option<String>,
        reason: Option<String>,
        inbound_message_id: Option<i64>,
    },
    /// A reply queued to the number, with its delivery status.
    Reply {
        /// The outbox id; `broadcast-<id>` for a broadcast's message the
        /// gate has not let go (planned, or skipped), which has none yet.
        id: String,
        at: DateTime<Utc>,
        /// A reply's kind (`welcome`, `goodbye`…) or a broadcast's
        /// (`marketing`, `notice`).
        #[schema(value_type = String)]
        kind: SentKind,
        program: Option<String>,
        text: String,
        sender: String,
        /// `queued`, `sending`, `sent`, `delivered`, `undelivered`,
        /// `failed`, `dead`, `cancelled` or `unknown` (possibly sent).
        status: ReplyStatus,
        /// For a broadcast message: why the send gate deferred or skipped
        /// it (`window`, `cap_reached`…), null once it let it go.
        gate_reason: Option<String>,
        broadcast_id: Option<i64>,
        attempts: i32,
        last_error: Option<String>,
        sent_at: Option<DateTime<Utc>>,
        delivered_at: Option<DateTime<Utc>>,
    },
}

impl TimelineItem {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            TimelineItem::Inbound { at, .. }
            | TimelineItem::StateChange { at, .. }
            | TimelineItem::Reply { at, .. } => *at,
        }
    }
}

/// A page of `GET /v1/subscribers`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriberPage {
    pub items: Vec<SubscriberSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// Where this answer was read and how current it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<AsOf>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriberSummary {
    pub msisdn: String,
    pub first_seen_at: DateTime<Utc>,
    pub programs: Vec<ProgramBrief>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgramBrief {
    pub program: String,
    #[schema(value_type = String)]
    pub state: State,
    pub since: DateTime<Utc>,
}

/// The answer of a staff opt-out.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OptOutResult {
    pub msisdn: String,
    /// Programs that moved to `unsubscribed` (empty: already out).
    pub changed: Vec<String>,
    /// Whether a confirmation SMS was queued.
    pub confirmation_queued: bool,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stats {
    /// Numbers per program and state.
    pub programs: Vec<ProgramCounts>,
    /// Opt-ins and opt-outs per day (UTC) over the last 30 days, all
    /// programs together, oldest first, days without any included.
    pub daily: Vec<DayCounts>,
    /// The same per program (only days with activity).
    pub daily_by_program: Vec<ProgramDayCounts>,
    /// Where this answer was read and how current it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<AsOf>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ProgramCounts {
    pub program: String,
    pub none: i64,
    pub pending: i64,
    pub subscribed: i64,
    pub unsubscribed: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DayCounts {
    pub day: NaiveDate,
    pub opt_ins: i64,
    pub opt_outs: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgramDayCounts {
    pub day: NaiveDate,
    pub program: String,
    pub opt_ins: i64,
    pub opt_outs: i64,
}

/// A token as `GET /v1/tokens` and `keyward token list` show it (never
/// the secret: it is not stored).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenInfo {
    pub name: String,
    pub role: super::Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The answer of `POST /v1/tokens`: the secret, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NewToken {
    pub name: String,
    pub role: super::Role,
    #[schema(example = "kw_3q2-7wEXAMPLEexampleEXAMPLEexampleEXAMPLEex")]
    pub token: String,
}

/// Renders a subscriber for a terminal: a heading, a table of programs
/// with their evidence and the timeline. `colour` adds ANSI colours for
/// states (only when stdout is a terminal).
pub fn render_subscriber(s: &Subscriber, colour: bool) -> String {
    use std::fmt::Write;
    let paint = |state: &str| -> String {
        if !colour {
            return state.to_owned();
        }
        let code = match state {
            "subscribed" => "32",
            "unsubscribed" => "31",
            "pending" => "33",
            _ => "0",
        };
        format!("\x1b[{code}m{state}\x1b[0m")
    };
    let time = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let mut out = String::new();
    let _ = writeln!(out, "{}", one_line(&s.msisdn));
    let _ = writeln!(out, "first seen  {}", time(&s.first_seen_at));
    if let Some(t) = &s.last_inbound_at {
        let _ = writeln!(out, "last text   {}", time(t));
    }
    let _ = writeln!(out);
    let mut rows = vec![[
        "PROGRAM".to_owned(),
        "STATE".to_owned(),
        "SINCE".to_owned(),
        "EVIDENCE".to_owned(),
    ]];
    for p in &s.programs {
        rows.push([
            p.program.clone(),
            p.state.to_string(),
            time(&p.since),
            evidence_line(&p.consent),
        ]);
    }
    table(&mut out, &rows, |col, cell| {
        if col == 1 {
            paint(cell)
        } else {
            cell.to_owned()
        }
    });
    let _ = writeln!(out);
    let mut rows = vec![[
        "TIME".to_owned(),
        "WHAT".to_owned(),
        "PROGRAM".to_owned(),
        "DETAIL".to_owned(),
    ]];
    for item in &s.timeline {
        let (what, program, detail) = match item {
            TimelineItem::Inbound {
                text,
                gateway,
                gateway_message_id,
                action,
                program,
                ..
            } => (
                "text in".to_owned(),
                program.clone(),
                format!(
                    "{} ({}, {} {})",
                    quoted(text),
                    action.map_or("-", Action::as_str),
                    gateway,
                    gateway_message_id
                ),
            ),
            TimelineItem::StateChange {
                program,
                from_state,
                to_state,
                cause,
                actor,
                reason,
                ..
            } => {
                let mut d = format!("{from_state} -> {to_state} by {cause}");
                if let Some(a) = actor {
                    let _ = write!(d, " ({a})");
                }
                if let Some(r) = reason {
                    let _ = write!(d, ": {}", quoted(r));
                }
                ("state".to_owned(), Some(program.clone()), d)
            }
            TimelineItem::Reply {
                kind,
                program,
                text,
                status,
                last_error,
                gate_reason,
                ..
            } => {
                let gate = gate_reason
                    .as_deref()
                    .map(|g| format!(" (gate: {})", one_line(g)))
                    .unwrap_or_default();
                let mut d = format!("{kind}, {status}{gate}: {}", quoted(text));
                if let Some(e) = last_error {
                    let _ = write!(d, " [{}]", one_line(e));
                }
                ("reply".to_owned(), program.clone(), d)
            }
        };
        rows.push([
            time(&item.at()),
            what,
            program.unwrap_or_else(|| "-".into()),
            detail,
        ]);
    }
    table(&mut out, &rows, |_, cell| cell.to_owned());
    if s.next_before.is_some() {
        let _ = writeln!(out, "(older entries not shown)");
    }
    out
}

fn evidence_line(e: &Evidence) -> String {
    match (&e.text, &e.gateway) {
        (Some(text), Some(gateway)) => format!(
            "{} via {gateway} {} at {}",
            quoted(text),
            e.gateway_message_id.as_deref().unwrap_or("-"),
            e.received_at
                .unwrap_or(e.effective_at)
                .format("%Y-%m-%d %H:%M:%S")
        ),
        _ => {
            let mut s = format!("{} {}", e.cause, e.actor.as_deref().unwrap_or("-"));
            if let Some(r) = &e.reason {
                s.push_str(": ");
                s.push_str(&quoted(r));
            }
            s
        }
    }
}

/// A text as one terminal-safe line: control characters (an ANSI escape
/// in a stored SMS, say) and the invisible marks that reorder text on
/// screen (bidirectional overrides) are shown escaped, never interpreted.
fn one_line(s: &str) -> String {
    let reorders = |c: char| matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    s.chars()
        .flat_map(|c| {
            if c.is_control() || reorders(c) {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", one_line(s))
}

/// Every cell is made terminal-safe here, whatever field it came from (a
/// gateway message id, an actor, a program name…): no stored byte reaches
/// the terminal unescaped. `style` may add colours afterwards.
fn table(out: &mut String, rows: &[[String; 4]], style: impl Fn(usize, &str) -> String) {
    use std::fmt::Write;
    let rows: Vec<[String; 4]> = rows
        .iter()
        .map(|row| row.clone().map(|cell| one_line(&cell)))
        .collect();
    let rows = rows.as_slice();
    let width = |c: &str| c.chars().count();
    let mut widths = [0usize; 4];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(width(cell));
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(&style(i, cell));
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i] - width(cell) + 2));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> Subscriber {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        Subscriber {
            msisdn: "+6281234567890".into(),
            first_seen_at: t,
            last_inbound_at: Some(t),
            programs: vec![ProgramState {
                program: "promo".into(),
                state: State::Subscribed,
                since: t,
                consent: Evidence {
                    event_id: 1,
                    cause: Cause::Inbound,
                    from_state: State::None,
                    effective_at: t,
                    recorded_at: t,
                    keyword: Some("MAU".into()),
                    text: Some("mau\x1b[2J".into()),
                    gateway: Some("generic".into()),
                    gateway_message_id: Some("gw-1".into()),
                    received_at: Some(t),
                    actor: None,
                    reason: None,
                },
            }],
            timeline: vec![TimelineItem::StateChange {
                id: 1,
                at: t,
                program: "promo".into(),
                from_state: State::None,
                to_state: State::Subscribed,
                cause: Cause::Inbound,
                actor: None,
                reason: None,
                inbound_message_id: Some(1),
            }],
            next_before: None,
            as_of: None,
        }
    }

    #[test]
    fn the_terminal_table_shows_state_evidence_and_timeline_without_colour_when_asked() {
        let text = render_subscriber(&sample(), false);
        assert!(text.starts_with("+6281234567890\n"));
        assert!(text.contains("promo    subscribed"), "{text}");
        assert!(
            text.contains("\"mau\\u{1b}[2J\" via generic gw-1"),
            "{text}"
        );
        assert!(text.contains("none -> subscribed by inbound"), "{text}");
        assert!(!text.contains('\x1b'), "no raw escapes: {text}");
    }

    #[test]
    fn every_stored_field_is_escaped_on_the_terminal() {
        let evil = "x\x1b]0;pwned\x07\u{202e}y";
        let mut s = sample();
        s.programs[0].program = evil.into();
        s.programs[0].consent.gateway_message_id = Some(evil.into());
        s.programs[0].consent.gateway = Some(evil.into());
        s.programs[0].consent.actor = Some(evil.into());
        for item in &mut s.timeline {
            match item {
                // States, causes, kinds and statuses are types now: only
                // free text can carry escapes.
                TimelineItem::Inbound {
                    gateway_message_id,
                    gateway,
                    ..
                } => {
                    *gateway_message_id = evil.into();
                    *gateway = evil.into();
                }
                TimelineItem::StateChange { actor, .. } => {
                    *actor = Some(evil.into());
                }
                TimelineItem::Reply { sender, .. } => {
                    *sender = evil.into();
                }
            }
        }
        for colour in [false, true] {
            let text = render_subscriber(&s, colour);
            assert!(
                !text.contains('\x07') && !text.contains('\u{202e}'),
                "{text}"
            );
            assert!(!text.contains("\x1b]"), "{text}");
            assert!(text.contains("x\\u{1b}]0;pwned\\u{7}\\u{202e}y"), "{text}");
        }
    }

    #[test]
    fn colour_is_only_added_around_states() {
        let text = render_subscriber(&sample(), true);
        assert!(text.contains("\x1b[32msubscribed\x1b[0m"));
    }
}
