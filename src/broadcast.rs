//! Broadcasts: a business's messages to a program's subscribers, each
//! sent only when the send gate (`core::gate`) allows it for that
//! recipient at that moment, with the decision kept on the recipient's
//! row (`broadcast_recipients`; an outbox row once it is sent).
//!
//! Two moments decide:
//! - **creation** ([`Broadcasts::create`]): the texts are parsed and linted
//!   (`core::compose`, `core::style`), the recipients (the program's
//!   subscribers, or a given list with per-recipient values) each get their
//!   text in their language and a first verdict — planned for now, planned
//!   for their first allowed moment, or skipped with the reason;
//! - **the claim** ([`claim`], run by the dispatcher): a planned row that is
//!   due is decided again with the facts of that moment (a STOP since,
//!   the cap, the gap, the window, the expiry), under a lock of the number,
//!   so two dispatchers or two broadcasts cannot both take the last place
//!   under a cap.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use deadpool_postgres::{GenericClient, Pool};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{LintMode, Settings};
use crate::core::gate::{decide_send, MessageKind, Outbound, Recipient, SendingPolicy, Verdict};
use crate::core::style::{self, Finding, StyleKind};
use crate::core::{candidate_zones, encoding, BroadcastVars, Language, Template, TemplateProblem};
use crate::db::broadcasts::{self as q, Candidate, Gated, Planned};
use crate::db::outbox::Claimed;
use crate::db::DbError;
use crate::msisdn::{Msisdn, Region};
use crate::programs::Programs;
use crate::staff::view::SentKind;

/// Recipients decided and written per round (a fetch from the audience,
/// one `COPY`); the 10,000-subscriber test spans two rounds.
const PAGE: usize = 8_192;

/// The most recipients one request may name.
pub const MAX_NAMED_RECIPIENTS: usize = 100_000;

/// A broadcast as asked for (`POST /v1/broadcasts`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBroadcast {
    pub program: String,
    #[schema(value_type = String, example = "marketing")]
    pub kind: MessageKind,
    /// The text per language; each recipient gets the one of the language
    /// they subscribed in, else the short code's, else the first given.
    #[schema(value_type = BTreeMap<String, String>)]
    pub text: BTreeMap<Language, String>,
    /// Not sent at or after this moment; required for marketing.
    pub valid_until: Option<DateTime<Utc>>,
    /// Not sent before this moment (default: now).
    pub send_at: Option<DateTime<Utc>>,
    /// Default: every number subscribed to the program.
    pub recipients: Option<Vec<NamedRecipient>>,
    /// Count and check only; nothing is stored or sent.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedRecipient {
    pub number: String,
    /// Values of the template's `{vars.NAME}`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// What creation found, or what was planned.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Plan {
    /// `null` for a dry run.
    pub id: Option<i64>,
    pub dry_run: bool,
    /// `false` when the same request (same `Idempotency-Key`) was made
    /// before: this is that broadcast.
    pub created: bool,
    pub recipients: i64,
    /// Planned to go at once.
    pub to_send: i64,
    /// Planned for a later moment (the window, the gap, `send_at`).
    pub deferred: i64,
    /// Not sent, by reason.
    pub skipped: BTreeMap<String, i64>,
    /// SMS segments of every message planned.
    pub segments: i64,
    pub first_send_at: Option<DateTime<Utc>>,
    /// The last expected send, at the sender's `max_per_second`.
    pub last_send_at: Option<DateTime<Utc>>,
    /// Style findings per language (`refuse` programs refuse with them).
    #[schema(value_type = Object)]
    pub lint: BTreeMap<String, Vec<Finding>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    #[error("{0}")]
    Invalid(String),
    /// The texts cannot be sent as written (templates, style).
    #[error("{message}")]
    Refused {
        message: String,
        problems: Vec<TemplateProblem>,
        lint: BTreeMap<String, Vec<Finding>>,
    },
    /// The idempotency key was used for a different request.
    #[error("{0}")]
    Conflict(String),
    #[error("no such broadcast")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A program as broadcasts need it.
struct Program {
    brand: String,
    policy: SendingPolicy,
    timezone: Option<Tz>,
    lint: LintMode,
    shortcode: String,
    sender: String,
    language: Language,
}

/// Everything creation needs, built once at start-up.
pub struct Broadcasts {
    programs: HashMap<String, Program>,
    region: Region,
    rates: BTreeMap<String, f64>,
}

/// The policy in force, as stored with the broadcast and read back by
/// the claim: the evidence of which rules its decisions were taken under.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyInForce {
    pub sending: SendingPolicy,
    pub timezone: Option<String>,
}

impl Broadcasts {
    pub fn new(settings: &Settings, programs: &Programs) -> Self {
        let by_name = settings
            .programs
            .iter()
            .filter_map(|p| {
                // A program no short code serves cannot broadcast.
                let code = programs.shortcode_of(&p.name)?;
                Some((
                    p.name.clone(),
                    Program {
                        brand: p.brand.clone(),
                        policy: p.sending.clone(),
                        timezone: p.timezone.as_deref().and_then(|t| t.parse().ok()),
                        lint: p.lint,
                        shortcode: code.code.clone(),
                        sender: code.sender.clone(),
                        language: code.language,
                    },
                ))
            })
            .collect();
        Self {
            programs: by_name,
            region: settings.service.region,
            rates: settings.dispatch.max_per_second.clone(),
        }
    }

    /// Checks, plans and (unless a dry run) stores a broadcast. A request
    /// with an `idempotency_key` seen before from `created_by` answers the
    /// broadcast made then.
    pub async fn create(
        self: &Arc<Self>,
        pool: &Pool,
        created_by: &str,
        idempotency_key: &str,
        request: &NewBroadcast,
        now: DateTime<Utc>,
    ) -> Result<Plan, BroadcastError> {
        let digest: [u8; 32] = Sha256::digest(
            serde_json::to_vec(request).map_err(|e| BroadcastError::Invalid(e.to_string()))?,
        )
        .into();
        let mut client = pool.get().await.map_err(crate::db::pool_error)?;
        // A retry answers what the first request got, even once its
        // `send_at` or `valid_until` has passed.
        if !request.dry_run {
            if let Some(existing) = q::find_by_key(&client, created_by, idempotency_key).await? {
                return self.replayed(&client, existing, &digest).await;
            }
        }
        let checked = self.check(request, now)?;
        let tx = client.transaction().await.map_err(DbError::from)?;
        let policy = serde_json::to_value(PolicyInForce {
            sending: checked.program.policy.clone(),
            timezone: checked.program.timezone.map(|t| t.name().to_owned()),
        })
        .map_err(|e| BroadcastError::Invalid(e.to_string()))?;
        let texts = serde_json::to_value(&request.text)
            .map_err(|e| BroadcastError::Invalid(e.to_string()))?;
        let messages = serde_json::to_value(
            checked
                .messages
                .iter()
                .map(|(lang, m)| (lang.as_str(), &m.text))
                .collect::<BTreeMap<_, _>>(),
        )
        .map_err(|e| BroadcastError::Invalid(e.to_string()))?;
        let new = (!request.dry_run).then(|| q::NewBroadcast {
            program: &request.program,
            kind: request.kind.as_str(),
            texts: &texts,
            messages: &messages,
            shortcode: &checked.program.shortcode,
            sender: &checked.program.sender,
            send_at: checked.send_at,
            valid_until: request.valid_until,
            policy: &policy,
            created_by,
            idempotency_key,
            request_sha256: &digest,
            recipients: 0,
        });
        let id = if let Some(new) = &new {
            match q::insert(&tx, new).await? {
                Some(id) => Some(id),
                None => {
                    // A concurrent retry got there first.
                    drop(tx);
                    let existing = q::find_by_key(&client, created_by, idempotency_key)
                        .await?
                        .ok_or_else(|| BroadcastError::Conflict("retry the request".into()))?;
                    return self.replayed(&client, existing, &digest).await;
                }
            }
        } else {
            None
        };
        let mut plan = Plan {
            id,
            dry_run: request.dry_run,
            created: id.is_some(),
            lint: checked.lint.clone(),
            ..Plan::default()
        };
        let mut planner = Planner::new(&checked, request, now);
        match &request.recipients {
            None => {
                // Reading, deciding and writing overlap: the audience is
                // read on a second connection while this one writes.
                let mut pages = read_audience(pool.clone(), &request.program, planner.since);
                let mut writer = match id {
                    Some(id) => Some(q::RecipientWriter::open(&tx, id, now).await?),
                    None => None,
                };
                loop {
                    let page = pages.recv().await.ok_or_else(|| {
                        DbError::Decode("the audience ended before its last page".into())
                    })??;
                    let rows = planner.decide_page(&page, |_| None, &mut plan)?;
                    if let Some(w) = &mut writer {
                        w.write(&rows).await?;
                    }
                    if page.len() < PAGE {
                        break;
                    }
                }
                if let Some(w) = writer {
                    w.finish().await?;
                }
            }
            Some(named) => {
                let mut rows = Vec::with_capacity(checked.named.len());
                for chunk in checked.named.chunks(PAGE) {
                    let numbers: Vec<&str> = chunk.iter().map(|(m, _)| m.as_str()).collect();
                    let known = q::named(&tx, &request.program, planner.since, &numbers).await?;
                    let mut known: HashMap<String, Candidate> =
                        known.into_iter().map(|c| (c.msisdn.clone(), c)).collect();
                    let page: Vec<Candidate> = chunk
                        .iter()
                        .map(|(m, _)| {
                            known.remove(m.as_str()).unwrap_or_else(|| Candidate {
                                msisdn: m.as_str().to_owned(),
                                subscribed: false,
                                language: None,
                                timezone: None,
                                marketing_sent: vec![],
                            })
                        })
                        .collect();
                    let vars: HashMap<&str, &BTreeMap<String, String>> = chunk
                        .iter()
                        .map(|(m, i)| (m.as_str(), &named[*i].vars))
                        .collect();
                    rows.extend(planner.decide_page(
                        &page,
                        |number| vars.get(number).copied(),
                        &mut plan,
                    )?);
                }
                if let Some(id) = id {
                    let mut writer = q::RecipientWriter::open(&tx, id, now).await?;
                    writer.write(&rows).await?;
                    writer.finish().await?;
                }
            }
        }
        if let Some(id) = id {
            q::set_recipients(&tx, id, plan.recipients).await?;
        }
        tx.commit().await.map_err(DbError::from)?;
        if let (Some(first), Some(rate)) =
            (plan.first_send_at, self.rates.get(&checked.program.sender))
        {
            let spread = Duration::milliseconds((plan.to_send as f64 / rate * 1000.0) as i64);
            plan.last_send_at = Some(plan.last_send_at.unwrap_or(first).max(first + spread));
        }
        Ok(plan)
    }

    async fn replayed(
        &self,
        client: &impl GenericClient,
        existing: q::Existing,
        digest: &[u8; 32],
    ) -> Result<Plan, BroadcastError> {
        if existing.request_sha256 != digest {
            return Err(BroadcastError::Conflict(
                "this Idempotency-Key was used for a different broadcast".into(),
            ));
        }
        let progress = q::progress(client, existing.id).await?;
        let mut plan = Plan {
            id: Some(existing.id),
            created: false,
            ..Plan::default()
        };
        for (status, reason, n) in progress.by_status {
            plan.recipients += n;
            match (status.as_str(), reason) {
                ("skipped", Some(reason)) => *plan.skipped.entry(reason).or_default() += n,
                ("planned", Some(_)) => plan.deferred += n,
                _ => plan.to_send += n,
            }
        }
        plan.first_send_at = progress.first_sent_at.or(progress.next_planned_at);
        Ok(plan)
    }

    /// Everything about a request that does not need the database.
    fn check<'a>(
        &'a self,
        r: &NewBroadcast,
        now: DateTime<Utc>,
    ) -> Result<Checked<'a>, BroadcastError> {
        let invalid = |m: String| Err(BroadcastError::Invalid(m));
        let Some(program) = self.programs.get(&r.program) else {
            return invalid(format!(
                "program `{}` is not configured (or no short code serves it)",
                crate::telemetry::clip(&r.program, 64)
            ));
        };
        if r.text.is_empty() {
            return invalid("text: give the message in at least one language".into());
        }
        if r.kind == MessageKind::Marketing && r.valid_until.is_none() {
            return invalid(
                "valid_until is required for marketing: a promotion must not go out once it has ended"
                    .into(),
            );
        }
        let send_at = r.send_at.unwrap_or(now).max(now);
        if let Some(until) = r.valid_until {
            if until <= send_at {
                return invalid("valid_until must be after send_at (and after now)".into());
            }
        }
        let mut templates = BTreeMap::new();
        let mut problems = Vec::new();
        let mut lint = BTreeMap::new();
        let kind = match r.kind {
            MessageKind::Marketing => StyleKind::Marketing,
            MessageKind::Notice => StyleKind::Notice,
        };
        for (lang, text) in &r.text {
            match Template::parse(text) {
                Ok(t) => {
                    templates.insert(*lang, t);
                }
                Err(p) => problems.extend(p),
            }
            let findings = style::check(text, Some(*lang), &program.brand, kind);
            if !findings.is_empty() {
                lint.insert(lang.as_str().to_owned(), findings);
            }
        }
        if !problems.is_empty() || (program.lint == LintMode::Refuse && !lint.is_empty()) {
            let message = if problems.is_empty() {
                "the text does not pass the style lint (the program's lint is `refuse`)"
            } else {
                "the text is not a valid template"
            };
            return Err(BroadcastError::Refused {
                message: message.into(),
                problems,
                lint,
            });
        }
        let needed: Vec<String> = templates
            .values()
            .flat_map(|t| t.required_vars().map(str::to_owned))
            .collect();
        let mut named = Vec::new();
        match &r.recipients {
            None if !needed.is_empty() => {
                return invalid(format!(
                    "the text uses {{vars.{}}}: name the recipients with their values",
                    needed[0]
                ))
            }
            None => {}
            Some(list) => {
                if list.len() > MAX_NAMED_RECIPIENTS {
                    return invalid(format!(
                        "at most {MAX_NAMED_RECIPIENTS} recipients per request"
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                for (i, rcpt) in list.iter().enumerate() {
                    let msisdn = Msisdn::parse(&rcpt.number, self.region).map_err(|e| {
                        BroadcastError::Invalid(format!("recipients[{i}].number: {e}"))
                    })?;
                    if let Some(missing) = needed.iter().find(|n| !rcpt.vars.contains_key(*n)) {
                        return invalid(format!(
                            "recipients[{i}] has no value for {{vars.{missing}}}"
                        ));
                    }
                    if seen.insert(msisdn.clone()) {
                        named.push((msisdn, i));
                    }
                }
            }
        }
        // Without values of their own, every recipient of a language gets
        // the same message: rendered (and measured) once, here.
        let mut messages = BTreeMap::new();
        if needed.is_empty() {
            let empty = BTreeMap::new();
            for (lang, template) in &templates {
                let vars =
                    BroadcastVars::new(&program.brand, &r.program, &program.shortcode, *lang);
                let text = template
                    .render(&vars, &empty, *lang)
                    .map_err(|e| BroadcastError::Invalid(e.to_string()))?;
                let text = checked_length(text, *lang)?;
                let segments = encoding(&text).1;
                messages.insert(*lang, Message { text, segments });
            }
        }
        Ok(Checked {
            program,
            templates,
            messages,
            lint,
            send_at,
            named,
        })
    }
}

/// Pages of the default audience of `program`, read on a connection of
/// its own (a read-only transaction holding the portal), one page ahead of
/// the consumer; a failure is the last item. Dropping the receiver stops
/// the read.
fn read_audience(
    pool: Pool,
    program: &str,
    since: DateTime<Utc>,
) -> tokio::sync::mpsc::Receiver<Result<Vec<Candidate>, DbError>> {
    let (pages, receiver) = tokio::sync::mpsc::channel(2);
    let program = program.to_owned();
    tokio::spawn(async move {
        let read = async {
            let mut client = pool.get().await.map_err(crate::db::pool_error)?;
            let tx = client.build_transaction().read_only(true).start().await?;
            let audience = q::audience(&tx, &program, since).await?;
            loop {
                let page = q::next_candidates(&tx, &audience, PAGE as i32).await?;
                let last = page.len() < PAGE;
                if pages.send(Ok(page)).await.is_err() || last {
                    return Ok(());
                }
            }
        };
        if let Err(e) = read.await {
            let _ = pages.send(Err(e)).await;
        }
    });
    receiver
}

/// The status a control action (`pause`, `resume`, `cancel`) leads to.
pub fn status_after(action: &str) -> Option<&'static str> {
    match action {
        "pause" => Some("paused"),
        "resume" => Some("active"),
        "cancel" => Some("cancelled"),
        _ => None,
    }
}

/// How far back sends can matter to `policy`'s cap or gap.
fn look_back(policy: &SendingPolicy) -> Duration {
    Duration::days(i64::from(policy.period_days))
        .max(Duration::hours(i64::from(policy.min_gap_hours)))
}

/// The zones the gate holds a recipient to: the one staff recorded, else
/// the program's, else every zone the number may be in.
fn zones_of<'a>(own: &'a Option<Tz>, program: &'a Option<Tz>, msisdn: &str) -> &'a [Tz] {
    match (own, program) {
        (Some(z), _) | (None, Some(z)) => std::slice::from_ref(z),
        (None, None) => candidate_zones(msisdn),
    }
}

/// A message as rendered, with its SMS segments.
struct Message {
    text: String,
    segments: u32,
}

/// A rendered text the outbox can hold (ten segments at most: longer
/// would be refused by the schema in the middle of planning).
fn checked_length(text: String, lang: Language) -> Result<String, BroadcastError> {
    let len = text.chars().count();
    if len > crate::config::MAX_REPLY_CHARS {
        return Err(BroadcastError::Invalid(format!(
            "the {lang} message is {len} characters with its stop sentence and values; at most {}",
            crate::config::MAX_REPLY_CHARS
        )));
    }
    Ok(text)
}

/// A request that passed the checks.
struct Checked<'a> {
    program: &'a Program,
    templates: BTreeMap<Language, Template>,
    /// Per language, the message of every recipient when the texts use no
    /// per-recipient values (else empty: each recipient's is rendered).
    messages: BTreeMap<Language, Message>,
    lint: BTreeMap<String, Vec<Finding>>,
    send_at: DateTime<Utc>,
    /// Named recipients, each once, with their index in the request.
    named: Vec<(Msisdn, usize)>,
}

/// Decides page after page of candidates at one moment.
struct Planner<'a> {
    checked: &'a Checked<'a>,
    message: Outbound,
    program: &'a str,
    now: DateTime<Utc>,
    /// Sends older than this cannot matter to the cap or the gap.
    since: DateTime<Utc>,
    /// Verdicts of recipients with no earlier marketing send, by zone set:
    /// those depend on nothing else (a number with sixteen candidate zones
    /// costs a fortnight's search once, not once per number).
    by_zones: HashMap<(usize, usize), Verdict>,
}

impl<'a> Planner<'a> {
    fn new(checked: &'a Checked<'a>, request: &'a NewBroadcast, now: DateTime<Utc>) -> Self {
        Self {
            checked,
            message: Outbound {
                kind: request.kind,
                not_before: checked.send_at,
                valid_until: request.valid_until,
            },
            program: &request.program,
            now,
            since: now - look_back(&checked.program.policy),
            by_zones: HashMap::new(),
        }
    }

    fn decide_page<'v>(
        &mut self,
        page: &[Candidate],
        vars_of: impl Fn(&str) -> Option<&'v BTreeMap<String, String>>,
        plan: &mut Plan,
    ) -> Result<Vec<Planned>, BroadcastError> {
        let program = self.checked.program;
        let empty = BTreeMap::new();
        let mut rows = Vec::with_capacity(page.len());
        for c in page {
            let lang = c.language.unwrap_or(program.language);
            let (lang, template) = self
                .checked
                .templates
                .get_key_value(&lang)
                .or_else(|| self.checked.templates.get_key_value(&program.language))
                .or_else(|| self.checked.templates.iter().next())
                .ok_or_else(|| BroadcastError::Invalid("no text".into()))?;
            let lang = *lang;
            let (own_text, segments) = match self.checked.messages.get(&lang) {
                Some(m) => (None, m.segments),
                None => {
                    let vars =
                        BroadcastVars::new(&program.brand, self.program, &program.shortcode, lang);
                    let text = template
                        .render(&vars, vars_of(&c.msisdn).unwrap_or(&empty), lang)
                        .map_err(|e| BroadcastError::Invalid(e.to_string()))?;
                    let text = checked_length(text, lang)?;
                    let segments = encoding(&text).1;
                    (Some(text), segments)
                }
            };
            let own: Option<Tz> = c.timezone.as_deref().and_then(|t| t.parse().ok());
            let zones = zones_of(&own, &program.timezone, &c.msisdn);
            let to = Recipient {
                subscribed: c.subscribed,
                zones,
                marketing_sent: &c.marketing_sent,
                already_sent: false,
            };
            // Only zone sets that live as long as the planner (the
            // program's, the prefix map's) can key the cache.
            let verdict = if own.is_none() && c.subscribed && c.marketing_sent.is_empty() {
                let key = (zones.as_ptr() as usize, zones.len());
                let (policy, message, now) = (&program.policy, &self.message, self.now);
                *self
                    .by_zones
                    .entry(key)
                    .or_insert_with(|| decide_send(policy, &to, message, now))
            } else {
                decide_send(&program.policy, &to, &self.message, self.now)
            };
            plan.recipients += 1;
            let (status, at, reason) = match verdict {
                Verdict::Send => {
                    plan.to_send += 1;
                    ("planned", self.now, None)
                }
                Verdict::Defer { until, reason } => {
                    plan.deferred += 1;
                    ("planned", until, Some(reason.as_str()))
                }
                Verdict::Skip(reason) => {
                    *plan.skipped.entry(reason.as_str().to_owned()).or_default() += 1;
                    ("skipped", self.now, Some(reason.as_str()))
                }
            };
            if status == "planned" {
                plan.segments += i64::from(segments);
                plan.first_send_at = Some(plan.first_send_at.map_or(at, |f| f.min(at)));
                plan.last_send_at = Some(plan.last_send_at.map_or(at, |l| l.max(at)));
            }
            rows.push(Planned {
                msisdn: c.msisdn.clone(),
                status,
                due_at: at,
                reason,
                language: lang,
                text: own_text,
            });
        }
        Ok(rows)
    }
}

/// What one claim did.
#[derive(Debug, Default)]
pub struct Claim {
    /// Leased to send now.
    pub send: Vec<Claimed>,
    /// Rows the gate finished with or moved to a later moment (not
    /// counting those that only wait for the sender's budget): while there
    /// are such rows, claiming again makes progress.
    pub decided: usize,
}

/// Claims up to `limit` due broadcast rows, asks the gate again for each
/// with the facts of now, and leases to `owner` those it lets go (within
/// each sender's shared budget); the rest wait or are skipped. One
/// transaction.
pub async fn claim(
    pool: &Pool,
    owner: &str,
    limit: i64,
    lease: std::time::Duration,
    rates: &BTreeMap<String, f64>,
    now: DateTime<Utc>,
) -> Result<Claim, DbError> {
    let mut client = pool.get().await.map_err(crate::db::pool_error)?;
    let tx = client.transaction().await?;
    let due = q::take_due(&tx, limit, now).await?;
    if due.is_empty() {
        tx.commit().await?;
        return Ok(Claim::default());
    }
    let mut numbers: Vec<&str> = due.iter().map(|d| d.msisdn.as_str()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    q::lock_numbers(&tx, &numbers).await?;

    // Each broadcast's policy and zone, read once per claim.
    let mut policies: HashMap<i64, (SendingPolicy, Option<Tz>)> = HashMap::new();
    for d in &due {
        if let std::collections::hash_map::Entry::Vacant(e) = policies.entry(d.broadcast) {
            let p: PolicyInForce = serde_json::from_value(d.policy.clone())
                .map_err(|e| DbError::Decode(format!("broadcast {} policy: {e}", d.broadcast)))?;
            let zone = p.timezone.as_deref().and_then(|t| t.parse().ok());
            e.insert((p.sending, zone));
        }
    }
    let look_back = policies
        .values()
        .map(|(p, _)| look_back(p))
        .max()
        .unwrap_or_default();
    let pairs: Vec<(&str, &str)> = due
        .iter()
        .map(|d| (d.msisdn.as_str(), d.program.as_str()))
        .collect();
    let facts = q::gate_facts(&tx, &pairs, now - look_back).await?;
    let mut facts: HashMap<(String, String), q::GateFacts> = facts
        .into_iter()
        .map(|f| ((f.msisdn.clone(), f.program.clone()), f))
        .collect();

    let mut decisions: Vec<(&q::Due, Gated)> = Vec::with_capacity(due.len());
    let mut sending: Vec<&q::Due> = Vec::new();
    for d in &due {
        let policy = &policies[&d.broadcast];
        let kind = d.kind;
        let f = facts.get_mut(&(d.msisdn.clone(), d.program.clone()));
        let (subscribed, own_zone, sent) = match &f {
            Some(f) => (
                f.subscribed,
                f.timezone.clone(),
                f.marketing_sent.as_slice(),
            ),
            None => (false, None, &[][..]),
        };
        let own: Option<Tz> = own_zone.as_deref().and_then(|t| t.parse().ok());
        let (rules, program_zone) = policy;
        let zones = zones_of(&own, program_zone, &d.msisdn);
        let verdict = decide_send(
            rules,
            &Recipient {
                subscribed,
                zones,
                marketing_sent: sent,
                already_sent: false,
            },
            &Outbound {
                kind,
                not_before: d.send_at,
                valid_until: d.valid_until,
            },
            now,
        );
        let gated = match verdict {
            Verdict::Send => {
                // A later row of this batch for the same number sees it.
                if kind == MessageKind::Marketing {
                    if let Some(f) = f {
                        f.marketing_sent.push(now);
                    }
                }
                sending.push(d);
                Gated::Send
            }
            Verdict::Defer { until, reason } => Gated::Defer {
                at: until,
                reason: reason.as_str(),
            },
            Verdict::Skip(reason) => Gated::Skip {
                reason: reason.as_str(),
            },
        };
        decisions.push((d, gated));
    }

    // Each sender's shared budget: sends past it wait a moment, still
    // planned (and are asked again then).
    let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
    for d in &sending {
        *wanted.entry(d.sender.as_str()).or_default() += 1;
    }
    let mut granted: BTreeMap<&str, i64> = BTreeMap::new();
    for (sender, n) in &wanted {
        let g = match rates.get(*sender) {
            Some(rate) => q::take_budget(&tx, sender, *rate, *n).await?,
            None => *n,
        };
        granted.insert(sender, g);
    }
    let soon = now + Duration::milliseconds(200);
    for (d, gated) in decisions.iter_mut() {
        if !matches!(gated, Gated::Send) {
            continue;
        }
        let left = granted.entry(d.sender.as_str()).or_default();
        if *left == 0 {
            *gated = Gated::Defer {
                at: soon,
                reason: "rate",
            };
            continue;
        }
        *left -= 1;
    }
    let released = q::decide(&tx, owner, lease, now, &decisions).await?;
    tx.commit().await?;
    let by_recipient: HashMap<(i64, &str), &q::Due> = due
        .iter()
        .map(|d| ((d.broadcast, d.msisdn.as_str()), d))
        .collect();
    let claimed = released
        .into_iter()
        .filter_map(|r| {
            let d = by_recipient.get(&(r.broadcast, r.msisdn.as_str()))?;
            Some(Claimed {
                id: r.id,
                msisdn: d.msisdn.clone(),
                shortcode: d.shortcode.clone(),
                text: d.text.clone(),
                sender: d.sender.clone(),
                kind: SentKind::Broadcast(d.kind),
                program: Some(d.program.clone()),
                in_reply_to: None,
                attempts: r.attempts,
                opted_out_since: false,
                possibly_sent: false,
                uncertain_attempts: 0,
                broadcast_ended: false,
            })
        })
        .collect();
    let waiting_for_budget = decisions
        .iter()
        .filter(|(_, g)| matches!(g, Gated::Defer { reason: "rate", .. }))
        .count();
    Ok(Claim {
        decided: decisions.len() - waiting_for_budget,
        send: claimed,
    })
}

/// A broadcast and how far it got (`GET /v1/broadcasts/{id}`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct View {
    pub id: i64,
    pub program: String,
    pub kind: String,
    /// `active`, `paused` or `cancelled`.
    pub status: String,
    #[schema(value_type = Object)]
    pub text: serde_json::Value,
    pub shortcode: String,
    pub sender: String,
    pub send_at: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    /// The sending policy its decisions were taken under.
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub recipients: i64,
    /// Recipients per outbox status (`planned`, `sending`, `sent`,
    /// `delivered`, `skipped`…).
    pub by_status: BTreeMap<String, i64>,
    /// Planned recipients waiting, by what they wait for (`window`,
    /// `gap`, `not_before`, `rate`; `now` when due).
    pub waiting: BTreeMap<String, i64>,
    /// Skipped recipients by reason.
    pub skipped: BTreeMap<String, i64>,
    /// Recipients who opted out of the program within 48 h after their
    /// message was sent: the business's signal of a message not valued.
    pub opt_outs_within_48h: i64,
    pub first_sent_at: Option<DateTime<Utc>>,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub next_planned_at: Option<DateTime<Utc>>,
}

/// The broadcast `id` with its progress.
pub async fn view(client: &impl GenericClient, id: i64) -> Result<View, BroadcastError> {
    let b = q::one(client, id).await?.ok_or(BroadcastError::NotFound)?;
    let progress = q::progress(client, id).await?;
    Ok(view_of(b, progress))
}

pub fn view_of(b: q::Row, progress: q::Progress) -> View {
    let mut v = View {
        id: b.id,
        program: b.program,
        kind: b.kind,
        status: b.status,
        text: b.texts,
        shortcode: b.shortcode,
        sender: b.sender,
        send_at: b.send_at,
        valid_until: b.valid_until,
        policy: b.policy,
        created_by: b.created_by,
        created_at: b.created_at,
        recipients: i64::from(b.recipients),
        by_status: BTreeMap::new(),
        waiting: BTreeMap::new(),
        skipped: BTreeMap::new(),
        opt_outs_within_48h: progress.opt_outs_within_48h,
        first_sent_at: progress.first_sent_at,
        last_sent_at: progress.last_sent_at,
        next_planned_at: progress.next_planned_at,
    };
    for (status, reason, n) in progress.by_status {
        match status.as_str() {
            "skipped" => *v.skipped.entry(reason.unwrap_or_default()).or_default() += n,
            "planned" => {
                *v.waiting
                    .entry(reason.unwrap_or_else(|| "now".into()))
                    .or_default() += n
            }
            _ => {}
        }
        *v.by_status.entry(status).or_default() += n;
    }
    v
}
