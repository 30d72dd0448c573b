//! The reply dispatcher: takes due replies from the outbox and sends them
//! through their sender, outside any transaction.
//!
//! Each worker claims a batch (a lease, committed at once), calls the
//! providers concurrently, and records each result under its lease.
//! Transient errors (connection errors, 5xx, 429, timeouts) are retried
//! with exponential backoff and jitter until `max_attempts`, then the reply
//! is `dead`; other 4xx are `failed` with the provider's reason. A reply
//! whose number opted out after it was queued is `cancelled` (opt-out
//! confirmations excepted). A dispatcher that dies leaves its leases to
//! expire; another takes the replies again.
//!
//! A reply taken over from an expired lease was possibly sent: the call
//! may have started, or its answer may have come and not been recorded.
//! So was one whose call timed out once connected. It is sent again only through a sender that is idempotent (the provider
//! drops a repeat of the same key); otherwise it becomes `unknown`, is
//! re-sent once after [`UNKNOWN_RESEND_AFTER`], and never again without
//! an operator (README, "Replies going out").

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use deadpool_postgres::Pool;
use rand::Rng;
use tokio::sync::watch;

use crate::config::{DispatchSettings, Settings};
use crate::db::outbox::{self, Claimed, Next};
use crate::db::{DbError, Fault};
use crate::gateways::{HttpAnswer, OutboundSms, SendOutcome, Senders};
use crate::metrics::Metrics;

/// How long an `unknown` reply waits before its one re-send: time for a
/// delivery report that names it (Kannel's carry the outbox id) to settle
/// it first, short enough that a welcome or goodbye still arrives while the
/// subscriber remembers asking.
pub const UNKNOWN_RESEND_AFTER: Duration = Duration::from_secs(15 * 60);

/// The most of a provider's answer that is read. Real answers are a few
/// hundred bytes; a misbehaving or hostile endpoint must not make the
/// dispatcher buffer an unbounded body per send.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How often each dispatcher loop does its housekeeping ([`Dispatcher::sweep`]).
const SWEEP_EVERY: Duration = Duration::from_secs(600);

pub struct Dispatcher {
    pool: Pool,
    senders: Senders,
    http: reqwest::Client,
    settings: DispatchSettings,
    owner: String,
    metrics: Arc<Metrics>,
    /// What the broadcast gate takes for now.
    clock: crate::clock::Clock,
}

impl Dispatcher {
    /// The same dispatcher reading `clock` (tests move it).
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Fails when a sender's settings are wrong (`startup::check` says
    /// which, before this).
    pub fn new(
        settings: &Settings,
        pool: Pool,
        metrics: Arc<Metrics>,
    ) -> Result<Self, crate::config::ConfigError> {
        let d = settings.dispatch.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(d.http_timeout_secs))
            .connect_timeout(Duration::from_secs(d.http_timeout_secs.min(5)))
            .build()
            .unwrap_or_default();
        let owner = format!(
            "{}-{}-{:08x}",
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "keyward".into()),
            std::process::id(),
            rand::rng().random::<u32>()
        );
        Ok(Self {
            pool,
            senders: Senders::from_settings(settings).map_err(crate::config::ConfigError)?,
            http,
            settings: d,
            owner,
            metrics,
            clock: crate::clock::Clock::default(),
        })
    }

    /// Housekeeping no request does: parts of concatenated messages that
    /// never completed, from numbers that wrote nothing since, are dropped
    /// after their window (a number that writes again drops its own).
    async fn sweep(&self) {
        let dropped = async {
            let client = self.pool.get().await.map_err(crate::db::pool_error)?;
            crate::db::inbound::expire_parts(&client).await
        };
        match dropped.await {
            Ok(0) => {}
            Ok(n) => tracing::info!(parts = n, "expired parts of incomplete messages dropped"),
            Err(e) => log_db_error(&e, "cannot drop expired message parts"),
        }
    }

    /// Runs `workers` loops until `shutdown` turns true; in-flight sends
    /// finish first.
    pub async fn run(self: Arc<Self>, workers: usize, shutdown: watch::Receiver<bool>) {
        tracing::info!(workers, owner = %self.owner, "reply dispatcher started");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers {
            tasks.spawn(self.clone().work(shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
        tracing::info!("reply dispatcher stopped");
    }

    async fn work(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let idle = Duration::from_millis(self.settings.poll_interval_ms);
        let mut swept: Option<Instant> = None;
        while !*shutdown.borrow() {
            if swept.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
                swept = Some(Instant::now());
                self.sweep().await;
            }
            let sent = match self.run_once().await {
                Ok(n) => n,
                Err(e) => {
                    log_db_error(&e, "a dispatcher statement failed");
                    0
                }
            };
            if sent == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(idle) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Claims one batch and sends it; returns how many replies and
    /// broadcast messages it handled (sent, or decided by the gate).
    pub async fn run_once(self: &Arc<Self>) -> Result<usize, DbError> {
        let client = self.pool.get().await.map_err(crate::db::pool_error)?;
        let lease = Duration::from_secs(self.settings.lease_secs);
        let mut batch = outbox::claim(
            &client,
            &self.owner,
            i64::from(self.settings.batch_size),
            lease,
        )
        .await?;
        drop(client);
        // Replies first: a broadcast takes what room the batch has left.
        let room = i64::from(self.settings.batch_size) - batch.len() as i64;
        let mut gated = 0;
        if room > 0 {
            // The replies are leased already: a failed broadcast claim must
            // not drop them (left `sending`, they would end `unknown`).
            match crate::broadcast::claim(
                &self.pool,
                &self.owner,
                room,
                lease,
                &self.settings.max_per_second,
                self.clock.now(),
            )
            .await
            {
                Ok(claim) => {
                    gated = claim.decided - claim.send.len();
                    batch.extend(claim.send);
                }
                Err(e) => log_db_error(&e, "the broadcast claim failed; sending the replies"),
            }
        }
        let n = batch.len();
        let mut sends = tokio::task::JoinSet::new();
        for row in batch {
            let this = self.clone();
            sends.spawn(async move {
                let id = row.id.clone();
                this.deliver(row).await.map(|next| (id, next))
            });
        }
        let mut results = Vec::with_capacity(n);
        while let Some(done) = sends.join_next().await {
            match done {
                Ok(Ok(result)) => results.push(result),
                // Left `sending`: when the lease expires the reply counts
                // as possibly sent.
                Ok(Err(e)) => log_db_error(&e, "could not record a send result"),
                Err(e) => tracing::error!(error = %e, "a send task failed"),
            }
        }
        self.record(&results).await;
        // Receipts that came in before their provider ids were stored —
        // by this batch or, racing with its commit, by an earlier one.
        let client = self.pool.get().await.map_err(crate::db::pool_error)?;
        let settled = outbox::settle_early_receipts(&client).await?;
        if settled > 0 {
            tracing::debug!(settled, "early delivery receipts applied");
        }
        Ok(n + gated)
    }

    /// Records a batch's results: one statement in the common case. When
    /// it fails, each result is recorded alone, so that one row the
    /// database refuses cannot fail its batch-mates — they were sent, and
    /// left `sending` they would be sent again. A result that cannot be
    /// recorded at all leaves its reply `sending` until the lease expires,
    /// when it is treated as possibly sent (never blindly sent again).
    async fn record(&self, results: &[(String, Next)]) {
        if results.is_empty() {
            return;
        }
        let client = match self.pool.get().await {
            Ok(c) => c,
            Err(e) => {
                let e = crate::db::pool_error(e);
                log_db_error(&e, "cannot record a batch's results");
                return;
            }
        };
        let recorded = match outbox::finish_all(&client, &self.owner, results).await {
            Ok(recorded) => recorded,
            Err(e) => {
                log_db_error(&e, "recording a batch failed; recording each reply alone");
                // The connection may be what failed: a closed one is not
                // handed out again, so ask the pool for another.
                drop(client);
                self.record_one_by_one(results).await
            }
        };
        for c in &recorded.collisions {
            tracing::error!(
                outbox_id = %c.id,
                provider_id = %c.provider_id,
                holder_outbox_id = %c.holder,
                "the provider answered a message id another reply already has; \
                 recorded as sent without it"
            );
        }
        if recorded.count < results.len() {
            tracing::warn!(
                lost = results.len() - recorded.count,
                "results not recorded (lease lost, or refused by the database)"
            );
        }
    }

    async fn record_one_by_one(&self, results: &[(String, Next)]) -> outbox::Recorded {
        let mut total = outbox::Recorded::default();
        let client = match self.pool.get().await {
            Ok(c) => c,
            Err(e) => {
                log_db_error(&crate::db::pool_error(e), "cannot record results");
                return total;
            }
        };
        for one in results {
            match outbox::finish_all(&client, &self.owner, std::slice::from_ref(one)).await {
                Ok(recorded) => {
                    total.count += recorded.count;
                    total.collisions.extend(recorded.collisions);
                }
                Err(e) => {
                    tracing::error!(
                        outbox_id = %one.0,
                        result = ?one.1,
                        error = %e,
                        "cannot record the result of a reply; when its lease expires it \
                         counts as possibly sent"
                    );
                }
            }
        }
        total
    }

    /// Sends one reply; returns where it goes next (recorded by the caller).
    async fn deliver(&self, row: Claimed) -> Result<Next, DbError> {
        let (result, next) = if row.opted_out_since {
            let mut why = "the number opted out after this reply was queued".to_owned();
            if row.possibly_sent {
                why.push_str(" (an earlier attempt may have reached it)");
            }
            ("cancelled", Next::Cancelled { why })
        } else if row.broadcast_ended {
            let why = "its broadcast ended (valid_until passed, or cancelled) before it went again"
                .to_owned();
            ("cancelled", Next::Cancelled { why })
        } else if row.possibly_sent && !self.may_send_again(&row) {
            let what = format!("lease expired while sending (attempt {})", row.attempts - 1);
            ("unknown", self.unknown(&row, &what))
        } else {
            match self.send(&row).await {
                SendOutcome::Sent { provider_id } => ("sent", Next::Sent { provider_id }),
                SendOutcome::Retry { reason, after } => {
                    let after = after.unwrap_or_else(|| self.backoff(row.attempts));
                    let max_attempts =
                        i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX);
                    (
                        "retry",
                        Next::Retry {
                            after,
                            max_attempts,
                            error: reason,
                        },
                    )
                }
                SendOutcome::Failed { reason } => ("failed", Next::Failed { error: reason }),
                SendOutcome::Unknown { reason } => {
                    let what = format!("{reason} (attempt {})", row.attempts);
                    ("unknown", self.unknown(&row, &what))
                }
                SendOutcome::OptedOut { reason } => {
                    let client = self.pool.get().await.map_err(crate::db::pool_error)?;
                    let program = row.program.as_deref();
                    outbox::provider_opt_out(&client, &row.msisdn, program, &row.sender, &reason)
                        .await?;
                    tracing::info!(
                        msisdn = %crate::telemetry::Masked(&row.msisdn),
                        sender = %row.sender,
                        "the provider says the number opted out; recorded in the ledger"
                    );
                    ("opted_out", Next::Failed { error: reason })
                }
            }
        };
        self.metrics
            .sends
            .with_label_values(&[&row.sender, result])
            .inc();
        Ok(next)
    }

    /// May a reply that was possibly sent already go out again? Only
    /// through an idempotent sender (the provider drops a repeat of the
    /// same key), and only within the retry limit: a reply whose leases keep
    /// expiring must not be sent at every expiry forever.
    fn may_send_again(&self, row: &Claimed) -> bool {
        let idempotent = self
            .senders
            .get(&row.sender)
            .is_some_and(|s| s.idempotent());
        idempotent && i64::from(row.attempts) <= i64::from(self.settings.max_attempts)
    }

    /// A possibly sent reply that must not be sent again now; `what` says
    /// why it is possibly sent.
    fn unknown(&self, row: &Claimed, what: &str) -> Next {
        let then = if row.uncertain_attempts == 0 {
            format!(
                "re-sent once after {} min unless a delivery report settles it",
                UNKNOWN_RESEND_AFTER.as_secs() / 60
            )
        } else {
            "already re-sent once: not sent again without an operator".to_owned()
        };
        tracing::warn!(
            outbox_id = %row.id,
            sender = %row.sender,
            attempts = row.attempts,
            %what,
            "the provider may have this reply; marked unknown"
        );
        Next::Unknown {
            error: format!("{what}: the provider may have it; {then}"),
            resend_after: UNKNOWN_RESEND_AFTER,
        }
    }

    /// One call to the provider, classified.
    async fn send(&self, row: &Claimed) -> SendOutcome {
        let Some(sender) = self.senders.get(&row.sender) else {
            return SendOutcome::Failed {
                reason: format!("sender `{}` is not configured", row.sender),
            };
        };
        let sms = OutboundSms {
            id: &row.id,
            from: &row.shortcode,
            to: &row.msisdn,
            text: &row.text,
            in_reply_to: row.in_reply_to.as_deref(),
        };
        let Some(call) = sender.request(&sms, Utc::now()) else {
            tracing::info!(to = %crate::telemetry::Masked(&row.msisdn), kind = %row.kind, text = %row.text,
                "reply (log sender)");
            return SendOutcome::Sent { provider_id: None };
        };
        let mut request = self.http.request(
            call.method
                .as_str()
                .parse()
                .unwrap_or(reqwest::Method::POST),
            &call.url,
        );
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        let started = Instant::now();
        let response = request.body(call.body).send().await;
        self.metrics
            .send_latency
            .with_label_values(&[row.sender.as_str()])
            .observe(started.elapsed().as_secs_f64());
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else {
                    "connection error"
                };
                let reason = format!("{kind}: {e}");
                // Once connected, the request may have gone out and been
                // taken: sending it again could send it twice, unless the
                // provider drops repeats.
                if !e.is_connect() && !sender.idempotent() {
                    return SendOutcome::Unknown { reason };
                }
                return SendOutcome::Retry {
                    reason,
                    after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // The status decides; a body cut short (too long, or the read
        // failed) must not turn an accepted send into a retry.
        let (body, problem) = read_capped(response, MAX_ANSWER_BYTES).await;
        if let Some(problem) = problem {
            tracing::warn!(outbox_id = %row.id, sender = %row.sender, status, %problem,
                "provider answer not read in full");
        }
        sender.outcome(&HttpAnswer {
            status,
            retry_after,
            body: &body,
        })
    }

    /// Exponential backoff with "equal" jitter: a random time between half
    /// and all of base·2^(attempts-1), capped (never retried at once, as
    /// full jitter could).
    fn backoff(&self, attempts: i32) -> Duration {
        let exp = self.settings.backoff_base_secs * 2f64.powi(attempts.clamp(1, 30) - 1);
        let capped = exp.min(self.settings.backoff_max_secs);
        Duration::from_secs_f64(capped * rand::rng().random_range(0.5..=1.0))
    }
}

/// At most `cap` bytes of the answer's body, and why it is not all of it.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> (Vec<u8>, Option<String>) {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    // Dropping the response closes the connection: the
                    // rest is never read.
                    return (body, Some(format!("longer than {cap} bytes, cut")));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return (body, None),
            Err(e) => return (body, Some(format!("reading the answer: {e}"))),
        }
    }
}

/// Logs a database error as what it is: the database unreachable, or a
/// statement it refused / a value that did not convert (with the SQLSTATE
/// and constraint): a bug.
fn log_db_error(e: &DbError, what: &str) {
    match e.fault() {
        Fault::Unavailable => tracing::warn!(error = %e, "{what}: cannot reach the database"),
        Fault::Conflict | Fault::Bug => {
            let (code, constraint, table) = e.server_detail().unwrap_or_default();
            tracing::error!(error = %e, code, constraint, table, "{what}: the database refused");
        }
    }
}
