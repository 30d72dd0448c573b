//! The inbound path, the same for every gateway: parse the number, clean
//! the text, classify it, then load facts, decide (in the pure core) and
//! write everything in one statement and one commit.
//!
//! Concurrency: each write checks the number's version; a message that
//! lost a race with another from the same number decides again under a row
//! lock, so messages from one number are applied one after another while
//! different numbers proceed in parallel.
//!
//! Group commit: messages that arrive while a write is in flight are
//! applied together ([`Writer`], [`Inbound::apply_batch`]): one facts read,
//! one apply statement and one commit for all of them, each still decided
//! alone by the core on its own facts.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::{GenericClient, Pool};

use crate::config::Settings;
use crate::core::plan::{self, with_hint, Hint};
use crate::core::{Classification, Classifier, ClassifierConfig, ProgramKeywords};
use crate::db::batch::{GroupCommit, Limits};
use crate::db::inbound::{self as q, Applied, StoredAnswer, StoredFacts};
use crate::db::DbError;
use crate::gateways::{Origin, Outcome, Part, ReceivedSms};
use crate::msisdn::{Msisdn, Region};
use crate::programs::{Programs, Shortcode};

/// How far before its arrival a gateway may date a message and have the
/// ledger record that time as the moment of consent. Gateways that queued a
/// message through an outage deliver it hours late, not days; an older
/// timestamp is kept as given on the message, but the ledger records the
/// arrival, so nobody can backdate evidence of consent.
pub const MAX_BACKDATE_HOURS: i64 = 24;

const BACKDATED_NOTE: &str =
    "received_at is more than 24 h before arrival: kept on the message, but the consent ledger records the arrival time";

/// The gateway's time when it is plausible evidence; `None`: arrival time.
fn evidence_time(sent_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    sent_at.filter(|t| *t >= now - Duration::hours(MAX_BACKDATE_HOURS))
}

/// `true` when the gateway's time was set aside as evidence.
fn backdated(sent_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    sent_at.is_some() && evidence_time(sent_at, now).is_none()
}

#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The message itself is malformed (an impossible sender, say).
    #[error("{0}")]
    Invalid(String),
    /// The number sends faster than the configured limit.
    #[error("too many messages from this number")]
    Flooding,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Everything the inbound path needs, built once at start-up.
pub struct Inbound {
    classifier: Classifier,
    region: Region,
    programs: Arc<Programs>,
    flood: Option<FloodGuard>,
}

/// Per-number rate limit, in memory: a flood is refused before it costs a
/// database round trip.
struct FloodGuard {
    limiter: governor::DefaultKeyedRateLimiter<String>,
    checks: std::sync::atomic::AtomicU64,
}

impl FloodGuard {
    fn new(per_minute: u32) -> Option<Self> {
        let quota = governor::Quota::per_minute(std::num::NonZeroU32::new(per_minute)?);
        Some(Self {
            limiter: governor::RateLimiter::keyed(quota),
            checks: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn allow(&self, msisdn: &Msisdn) -> bool {
        // Forget numbers that have been quiet long enough, now and then.
        if self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % 10_000
            == 9_999
        {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&msisdn.as_str().to_owned()).is_ok()
    }
}

/// The longest gateway message id stored; longer ones are refused.
const MAX_GATEWAY_ID: usize = 255;

impl Inbound {
    pub fn new(settings: &Settings, programs: Arc<Programs>) -> Self {
        let classifier = Classifier::new(&ClassifierConfig {
            programs: settings
                .programs
                .iter()
                .map(|p| ProgramKeywords {
                    name: p.name.clone(),
                    opt_in: p.keywords.opt_in.clone(),
                    opt_out: p.keywords.opt_out.clone(),
                    help: p.keywords.help.clone(),
                })
                .collect(),
        });
        Self {
            classifier,
            region: settings.service.region,
            programs,
            flood: FloodGuard::new(settings.service.max_messages_per_number_per_minute),
        }
    }

    /// Checks and cleans what the gateway gave: the number in E.164, no NUL
    /// bytes anywhere (PostgreSQL text cannot hold them), sane lengths.
    fn prepare(&self, sms: ReceivedSms) -> Result<Prepared, InboundError> {
        let msisdn = match &sms.from {
            Origin::Any(raw) => Msisdn::parse(&strip_nul(raw), self.region),
            Origin::International(raw) => Msisdn::parse_international(&strip_nul(raw)),
        }
        .map_err(|e| InboundError::Invalid(e.to_string()))?;
        if self.flood.as_ref().is_some_and(|f| !f.allow(&msisdn)) {
            tracing::warn!(msisdn = %msisdn.masked(), "flooding: message refused with 429");
            return Err(InboundError::Flooding);
        }
        let id = strip_nul(&sms.id);
        if id.trim().is_empty() || id.len() > MAX_GATEWAY_ID {
            return Err(InboundError::Invalid(format!(
                "gateway message id must be 1 to {MAX_GATEWAY_ID} bytes"
            )));
        }
        let to: String = strip_nul(&sms.to).chars().take(32).collect();
        if to.trim().is_empty() {
            return Err(InboundError::Invalid(
                "missing recipient (short code)".into(),
            ));
        }
        let mut raw = sms.raw;
        strip_nul_json(&mut raw);
        Ok(Prepared {
            msisdn,
            id,
            to,
            text: strip_nul(&sms.text),
            sent_at: sms.sent_at,
            raw,
            hint: sms.hint,
        })
    }

    /// Checks, cleans and classifies one message: everything before the
    /// database. An `Err` here (400, 429) costs no database work.
    pub fn job(
        &self,
        gateway: &'static str,
        sms: ReceivedSms,
        now: DateTime<Utc>,
    ) -> Result<Job, InboundError> {
        let prepared = self.prepare(sms)?;
        let classification = with_hint(self.classifier.classify(&prepared.text), prepared.hint);
        Ok(Job {
            prepared,
            classification,
            gateway,
            now,
        })
    }

    /// Applies `jobs` as one batch on one connection and answers each, in
    /// order; `Ok` means that message is durably stored.
    ///
    /// Usually two statements and one commit for the whole batch: one
    /// facts read for all, a decision per message in the core, one
    /// `keyward_apply_inbound_batch`. A batch of one takes the
    /// per-message statements, as before batching. Within a batch:
    ///
    /// - a second message from one number, or a second delivery of one
    ///   gateway message id, goes in a later round (its own facts read and
    ///   apply, after the first round is committed): messages of one number
    ///   are applied in their order, each on the facts the one before left;
    /// - a message whose number moved on meanwhile (another batch got
    ///   there first) decides again under the number's row lock, alone;
    /// - when a statement fails (a constraint one message breaks, a bug),
    ///   nothing of it was written, and each message of that round is then
    ///   applied alone: only the faulty one fails.
    pub async fn apply_batch(
        &self,
        pool: &Pool,
        jobs: Vec<Job>,
    ) -> Vec<Result<Outcome, InboundError>> {
        let mut client = match pool.get().await {
            Ok(client) => client,
            Err(e) => {
                let e = crate::db::pool_error(e);
                tracing::warn!(error = %e, "no database connection for a batch");
                let fault = e.to_string();
                return jobs
                    .iter()
                    .map(|_| Err(DbError::Pool(fault.clone()).into()))
                    .collect();
            }
        };
        let mut answers: Vec<Option<Result<Outcome, InboundError>>> =
            jobs.iter().map(|_| None).collect();
        for round in rounds(&jobs) {
            if let [only] = round[..] {
                answers[only] = Some(self.apply_one(&mut client, &jobs[only]).await);
                continue;
            }
            let group: Vec<&Job> = round.iter().map(|&i| &jobs[i]).collect();
            match self.apply_group(&mut client, &group).await {
                Ok(results) => {
                    for (i, result) in round.iter().zip(results) {
                        answers[*i] = Some(result);
                    }
                }
                Err(e) => {
                    // Nothing of the round was written: each message alone,
                    // so the one the database refuses fails by itself.
                    tracing::warn!(
                        error = %e,
                        messages = round.len(),
                        "a batch was refused; applying its messages one by one"
                    );
                    for &i in &round {
                        answers[i] = Some(self.apply_one(&mut client, &jobs[i]).await);
                    }
                }
            }
        }
        answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| {
                    Err(DbError::Decode("a batch left a message unanswered".into()).into())
                })
            })
            .collect()
    }

    /// One message alone: the facts read and `keyward_apply_inbound`, and
    /// when the number moved on meanwhile, both again under its row lock.
    async fn apply_one(
        &self,
        client: &mut deadpool_postgres::Client,
        job: &Job,
    ) -> Result<Outcome, InboundError> {
        let p = &job.prepared;
        let m = self.message(p, &job.classification, job.gateway);
        let number = p.msisdn.as_str();
        let facts = q::load_facts(&*client, number, &p.text, job.gateway, &p.id).await?;
        let applied = match self.decide_and_apply(&*client, &m, facts, job.now).await? {
            Applied::Conflict => self.apply_locked(client, &m, job.now).await?,
            applied => applied,
        };
        answer(job, &m, applied)
    }

    /// Decides and applies `m` again with its number's row locked, where
    /// the version check cannot fail.
    async fn apply_locked(
        &self,
        client: &mut deadpool_postgres::Client,
        m: &Message<'_>,
        now: DateTime<Utc>,
    ) -> Result<Applied, InboundError> {
        let number = m.msisdn.as_str();
        let tx = client.transaction().await.map_err(DbError::from)?;
        q::lock_subscriber(&tx, number).await?;
        let facts = q::load_facts(&tx, number, m.text, m.gateway, m.id).await?;
        let applied = self.decide_and_apply(&tx, m, facts, now).await?;
        tx.commit().await.map_err(DbError::from)?;
        Ok(applied)
    }

    /// Messages of distinct numbers and distinct gateway ids: one facts
    /// read, one apply. `Err` when either statement failed (nothing of the
    /// group written); conflicts are settled one by one under a lock.
    async fn apply_group(
        &self,
        client: &mut deadpool_postgres::Client,
        group: &[&Job],
    ) -> Result<Vec<Result<Outcome, InboundError>>, DbError> {
        let messages: Vec<Message<'_>> = group
            .iter()
            .map(|j| self.message(&j.prepared, &j.classification, j.gateway))
            .collect();
        let keys: Vec<q::FactsKey<'_>> = messages
            .iter()
            .map(|m| q::FactsKey {
                msisdn: m.msisdn.as_str(),
                text: m.text,
                gateway: m.gateway,
                gateway_message_id: m.id,
            })
            .collect();
        let facts = q::load_facts_batch(&*client, &keys).await?;
        let mut applied: Vec<Option<Applied>> = Vec::with_capacity(group.len());
        let mut decisions = Vec::new();
        let mut decided = Vec::new(); // the messages the decisions are for
        for (i, (m, stored)) in messages.iter().zip(facts).enumerate() {
            match stored.duplicate {
                Some(answer) => applied.push(Some(Applied::Duplicate(answer))),
                None => {
                    applied.push(None);
                    decisions.push(self.decide(m, stored, group[i].now));
                    decided.push(i);
                }
            }
        }
        if !decided.is_empty() {
            let writes: Vec<q::Apply<'_>> = decided
                .iter()
                .zip(&decisions)
                .map(|(&i, d)| self.write_of(&messages[i], d, group[i].now))
                .collect();
            let results = q::apply_batch(&*client, &writes).await?;
            for (&i, result) in decided.iter().zip(results) {
                applied[i] = Some(result);
            }
        }
        let mut answers = Vec::with_capacity(group.len());
        for ((job, m), applied) in group.iter().zip(&messages).zip(applied) {
            let answered = match applied {
                Some(Applied::Conflict) => self.apply_locked(client, m, job.now).await,
                Some(applied) => Ok(applied),
                None => Err(DbError::Decode("a message of a batch was not applied".into()).into()),
            };
            answers.push(answered.and_then(|applied| answer(job, m, applied)));
        }
        Ok(answers)
    }

    /// Stores one part of a concatenated message; once all parts are in,
    /// processes the whole text as one message (in the same transaction).
    pub async fn handle_part(
        &self,
        pool: &Pool,
        gateway: &'static str,
        part: Part,
        now: DateTime<Utc>,
    ) -> Result<Outcome, InboundError> {
        let p = self.prepare(part.sms)?;
        let number = p.msisdn.as_str().to_owned();
        let number = number.as_str();
        let mut client = pool.get().await.map_err(crate::db::pool_error)?;
        let tx = client.transaction().await.map_err(DbError::from)?;
        q::lock_subscriber(&tx, number).await?;
        let pending = q::store_part(
            &tx,
            &q::NewPart {
                gateway,
                gateway_message_id: &p.id,
                msisdn: number,
                reference: &part.reference,
                total: part.total,
                part: part.number,
                text: &p.text,
                sent_at: p.sent_at,
                raw: &p.raw,
            },
        )
        .await?;
        let Some(parts) = complete(&pending, part.total) else {
            tx.commit().await.map_err(DbError::from)?;
            let this = pending.iter().find(|s| s.gateway_message_id == p.id);
            return Ok(Outcome {
                status: "accepted",
                id: this.map(|s| format!("part-{}", s.id)).unwrap_or_default(),
                program: None,
                action: None,
                state: None,
                note: None,
                unrouted: false,
            });
        };
        let whole = Prepared {
            // The first part's id names the whole message, whatever order
            // the parts came in.
            id: parts[0].gateway_message_id.clone(),
            text: parts.iter().map(|s| s.text.as_str()).collect(),
            sent_at: parts[0].sent_at,
            raw: serde_json::json!({
                "concat-ref": part.reference,
                "parts": parts.iter().map(|s| s.raw.clone()).collect::<Vec<_>>(),
            }),
            hint: None,
            ..p
        };
        let classification = self.classifier.classify(&whole.text);
        let m = self.message(&whole, &classification, gateway);
        let facts = q::load_facts(&tx, number, &whole.text, gateway, &whole.id).await?;
        let applied = self.decide_and_apply(&tx, &m, facts, now).await?;
        if let Applied::Stored(a) | Applied::Duplicate(a) = &applied {
            let ids: Vec<i64> = parts.iter().map(|s| s.id).collect();
            q::mark_parts_assembled(&tx, &ids, a.inbound_id).await?;
        }
        tx.commit().await.map_err(DbError::from)?;
        let mut answer = outcome(applied)?;
        answer.unrouted = !m.routed;
        Ok(answer)
    }

    fn message<'a>(
        &'a self,
        p: &'a Prepared,
        classification: &'a Classification,
        gateway: &'static str,
    ) -> Message<'a> {
        let (shortcode, routed) = self.programs.shortcode(&p.to);
        Message {
            msisdn: &p.msisdn,
            gateway,
            id: &p.id,
            to: &p.to,
            text: &p.text,
            sent_at: p.sent_at,
            raw: &p.raw,
            classification,
            shortcode,
            routed,
            gateway_answered: p.hint,
        }
    }

    async fn decide_and_apply(
        &self,
        client: &impl GenericClient,
        m: &Message<'_>,
        stored: StoredFacts,
        now: DateTime<Utc>,
    ) -> Result<Applied, DbError> {
        if let Some(answer) = stored.duplicate {
            return Ok(Applied::Duplicate(answer));
        }
        let decision = self.decide(m, stored, now);
        q::apply(client, &self.write_of(m, &decision, now)).await
    }

    /// The core's decision on `m`, given what is stored of its number.
    fn decide(&self, m: &Message<'_>, stored: StoredFacts, now: DateTime<Utc>) -> Decision {
        let known = plan::Known {
            subscriptions: stored.programs,
            last_goodbye_at: stored.last_goodbye_at,
            last_fallback_at: stored.last_fallback_at,
            same_text_last_hour: stored.same_text_last_hour,
        };
        let configured: Vec<&str> = self.programs.names().collect();
        let message = plan::Message {
            classification: m.classification,
            home: &m.shortcode.program,
            routed: m.routed,
            sent_at: m.sent_at,
            hint: m.gateway_answered,
        };
        let plan = plan::plan(
            &message,
            &known,
            &configured,
            |p| self.programs.policy(p),
            now,
        );
        let language = m.classification.language.unwrap_or(m.shortcode.language);
        let reply_text = plan.reply.as_ref().and_then(|r| {
            self.programs
                .render(&r.program, &m.shortcode.code, r.kind, language)
        });
        Decision {
            version: stored.version,
            plan,
            reply_text,
        }
    }

    /// What to write for `m` as `d` decided.
    fn write_of<'a>(
        &self,
        m: &'a Message<'a>,
        d: &'a Decision,
        now: DateTime<Utc>,
    ) -> q::Apply<'a> {
        let reply = d
            .plan
            .reply
            .as_ref()
            .zip(d.reply_text.as_deref())
            .map(|(r, text)| q::Reply {
                kind: r.kind,
                from: &m.shortcode.code,
                program: Some(r.program.as_str()),
                text,
                sender: &m.shortcode.sender,
            });
        q::Apply {
            msisdn: m.msisdn.as_str(),
            expected_version: d.version,
            gateway: m.gateway,
            gateway_message_id: m.id,
            shortcode: m.to,
            text: m.text,
            sent_at: m.sent_at,
            evidence_at: evidence_time(m.sent_at, now),
            raw: m.raw,
            action: d.plan.action,
            program: d.plan.program.as_deref(),
            keyword: m.classification.keyword.as_deref(),
            language: m.classification.language,
            result_state: d.plan.state,
            outcome: d.plan.outcome,
            changes: &d.plan.changes,
            reply,
        }
    }
}

/// The core's decision on one message, and the version of its number it
/// was taken at.
struct Decision {
    version: i64,
    plan: plan::Plan,
    /// The reply as rendered, when the plan has one and it renders.
    reply_text: Option<String>,
}

/// One message, checked and classified, waiting for its batch.
pub struct Job {
    prepared: Prepared,
    classification: Classification,
    gateway: &'static str,
    now: DateTime<Utc>,
}

impl Job {
    /// Its weight in a batch: about the bytes it sends to the database.
    pub fn bytes(&self) -> usize {
        let p = &self.prepared;
        p.text.len() + p.id.len() + p.to.len() + json_bytes(&p.raw) + 128
    }
}

/// Roughly the size of `v` as JSON, without writing it.
fn json_bytes(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => 8,
        serde_json::Value::String(s) => s.len() + 2,
        serde_json::Value::Array(items) => {
            items.iter().map(json_bytes).sum::<usize>() + items.len() + 2
        }
        serde_json::Value::Object(map) => {
            map.iter()
                .map(|(k, v)| k.len() + 4 + json_bytes(v))
                .sum::<usize>()
                + 2
        }
    }
}

/// The rounds a batch is applied in, each a list of indexes into `jobs`:
/// no two messages of a round share a number or a gateway message id, and
/// a message comes in a later round than every earlier one it shares
/// either with. Within a round, the numbers are in order (so two batches
/// lock the subscriber rows they share in the same order).
fn rounds(jobs: &[Job]) -> Vec<Vec<usize>> {
    use std::collections::HashMap;
    let mut last_by_number: HashMap<&str, usize> = HashMap::new();
    let mut last_by_id: HashMap<(&str, &str), usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let number = job.prepared.msisdn.as_str();
        let id = (job.gateway, job.prepared.id.as_str());
        let round = last_by_number
            .get(number)
            .into_iter()
            .chain(last_by_id.get(&id))
            .map(|r| r + 1)
            .max()
            .unwrap_or(0);
        last_by_number.insert(number, round);
        last_by_id.insert(id, round);
        if rounds.len() <= round {
            rounds.push(Vec::new());
        }
        rounds[round].push(i);
    }
    for round in &mut rounds {
        round.sort_by_key(|&i| jobs[i].prepared.msisdn.as_str());
    }
    rounds
}

/// The webhook's answer for `job` as applied.
fn answer(job: &Job, m: &Message<'_>, applied: Applied) -> Result<Outcome, InboundError> {
    let mut answer = outcome(applied)?;
    if backdated(job.prepared.sent_at, job.now) {
        answer.note = Some(BACKDATED_NOTE);
    }
    answer.unrouted = !m.routed;
    Ok(answer)
}

/// A batch's messages weigh this much at most (see [`Job::bytes`]); a
/// webhook body is at most 64 KiB.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// The inbound path of one HTTP worker: its messages are applied through a
/// group commit on the worker's own pool, `writers` batches at a time.
pub struct Writer {
    inbound: Arc<Inbound>,
    pool: Pool,
    commit: GroupCommit<Job, Result<Outcome, InboundError>>,
}

impl Writer {
    pub fn new(inbound: Arc<Inbound>, pool: Pool, max_batch: usize, writers: usize) -> Self {
        let run = inbound.clone();
        let batch_pool = pool.clone();
        let commit = GroupCommit::new(
            writers,
            Limits {
                jobs: max_batch,
                bytes: MAX_BATCH_BYTES,
            },
            move |jobs| {
                let (inbound, pool) = (run.clone(), batch_pool.clone());
                async move { inbound.apply_batch(&pool, jobs).await }
            },
        );
        Self {
            inbound,
            pool,
            commit,
        }
    }

    /// Handles one message end to end; `Ok` means it is durably stored.
    pub async fn handle(
        &self,
        gateway: &'static str,
        sms: ReceivedSms,
        now: DateTime<Utc>,
    ) -> Result<Outcome, InboundError> {
        let job = self.inbound.job(gateway, sms, now)?;
        let bytes = job.bytes();
        self.commit.submit(job, bytes).await.unwrap_or_else(|| {
            Err(DbError::Pool("the inbound writer stopped before answering".into()).into())
        })
    }

    /// One part of a concatenated message ([`Inbound::handle_part`]): parts
    /// take their own transaction, outside the batches.
    pub async fn handle_part(
        &self,
        gateway: &'static str,
        part: Part,
        now: DateTime<Utc>,
    ) -> Result<Outcome, InboundError> {
        self.inbound
            .handle_part(&self.pool, gateway, part, now)
            .await
    }
}

/// A message as the gateway gave it, checked and cleaned.
struct Prepared {
    msisdn: Msisdn,
    id: String,
    to: String,
    text: String,
    sent_at: Option<DateTime<Utc>>,
    raw: serde_json::Value,
    hint: Option<Hint>,
}

/// The webhook's answer for a stored (or duplicate) message.
fn answered(status: &'static str, a: StoredAnswer) -> Outcome {
    Outcome {
        status,
        id: a.inbound_id.to_string(),
        program: a.program,
        action: a.action,
        state: a.state,
        note: None,
        unrouted: false,
    }
}

fn outcome(applied: Applied) -> Result<Outcome, InboundError> {
    match applied {
        Applied::Stored(answer) => Ok(answered("accepted", answer)),
        Applied::Duplicate(answer) => Ok(answered("duplicate", answer)),
        // Cannot happen while the subscriber row is locked; retryable if it does.
        Applied::Conflict => Err(InboundError::Db(DbError::Pool(
            "version changed while the subscriber row was locked".into(),
        ))),
    }
}

/// All parts `1..=total` of one message, one each, if they are all in.
fn complete(pending: &[q::StoredPart], total: i16) -> Option<Vec<&q::StoredPart>> {
    let mut parts: Vec<&q::StoredPart> = Vec::with_capacity(total.max(0) as usize);
    for expected in 1..=total {
        let found = pending
            .iter()
            .find(|s| s.part == expected && s.total == total)?;
        parts.push(found);
    }
    Some(parts)
}

struct Message<'a> {
    msisdn: &'a Msisdn,
    gateway: &'static str,
    id: &'a str,
    to: &'a str,
    text: &'a str,
    sent_at: Option<DateTime<Utc>>,
    raw: &'a serde_json::Value,
    classification: &'a Classification,
    shortcode: &'a Shortcode,
    /// Sent to a configured short code? (See `core::plan`.)
    routed: bool,
    /// What a gateway that classified the keyword itself (Twilio's
    /// Advanced Opt-Out) took it for: it has answered that already.
    gateway_answered: Option<Hint>,
}

/// PostgreSQL text cannot hold NUL; nothing else is removed.
fn strip_nul(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s.to_owned()
    }
}

fn strip_nul_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.contains('\0') => *s = s.replace('\0', ""),
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nul_json),
        serde_json::Value::Object(map) if map.keys().any(|k| k.contains('\0')) => {
            let cleaned = std::mem::take(map)
                .into_iter()
                .map(|(k, mut v)| {
                    strip_nul_json(&mut v);
                    (k.replace('\0', ""), v)
                })
                .collect();
            *map = cleaned;
        }
        serde_json::Value::Object(map) => map.values_mut().for_each(strip_nul_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_bytes_are_removed_from_text_and_raw_payloads() {
        assert_eq!(strip_nul("MA\0U"), "MAU");
        let mut raw = serde_json::json!({"te\0xt": ["a\0b", {"k": "\0"}]});
        strip_nul_json(&mut raw);
        assert_eq!(raw, serde_json::json!({"text": ["ab", {"k": ""}]}));
    }
}
