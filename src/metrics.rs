//! Prometheus metrics: requests by route and status, request latency, and
//! connection-pool usage. One registry per application instance, so several
//! instances (tests) in one process do not collide.
//!
//! Every series carries an `instance` label naming the process
//! (`service.instance`, default `<hostname>:<port>`): with several keyward
//! processes behind one scrape job or one remote-write, their counters
//! stay apart. (Prometheus sets its own `instance` on scrape; with
//! `honor_labels: true` keyward's is kept, otherwise it shows as
//! `exported_instance`.)

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use deadpool_postgres::Pool;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every HTTP worker's pool, for the metrics that describe them together.
pub struct AllPools(pub Vec<Pool>);

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool_max: IntGauge,
    pool_size: IntGauge,
    pool_available: IntGauge,
    pool_waiting: IntGauge,
    /// Replies sent or not, by sender and result (sent, retry, failed,
    /// opted_out, cancelled).
    pub sends: IntCounterVec,
    pub send_latency: HistogramVec,
    /// Inbound messages sent to a number that is no configured short code.
    pub unrouted: prometheus::IntCounter,
    outbox: IntGaugeVec,
    /// When the outbox gauges were last read from the database.
    outbox_read_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// The outbox gauges are read from the database at most this often,
/// whatever the scrape rate: scrapes cost the database nothing more.
const OUTBOX_REFRESH: std::time::Duration = std::time::Duration::from_secs(15);

/// The method label: one of a fixed set, so clients cannot mint series.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

impl Metrics {
    /// A registry for the process named by [`default_instance`] with no port.
    pub fn new() -> Self {
        Self::for_instance(&default_instance(None))
    }

    /// A registry whose every series has `instance="<instance>"`.
    pub fn for_instance(instance: &str) -> Self {
        let labels =
            std::collections::HashMap::from([("instance".to_owned(), instance.to_owned())]);
        let registry = Registry::new_custom(Some("keyward".into()), Some(labels))
            .expect("a static prefix and a label value make a valid registry");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            &["route"],
        )
        .expect("static metric definition");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("static metric");
        let sends = IntCounterVec::new(
            Opts::new(
                "replies_total",
                "Replies handed to senders, by sender and result",
            ),
            &["sender", "result"],
        )
        .expect("static metric definition");
        let send_latency = HistogramVec::new(
            HistogramOpts::new(
                "reply_send_duration_seconds",
                "Time of one call to a provider",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["sender"],
        )
        .expect("static metric definition");
        let outbox = IntGaugeVec::new(
            Opts::new(
                "outbox_replies",
                "Replies queued, sending and unknown (possibly sent), read at most every 15 s",
            ),
            &["status"],
        )
        .expect("static metric definition");
        let unrouted = prometheus::IntCounter::new(
            "inbound_unrouted_total",
            "Inbound messages to a number that is no configured short code (stored; only an opt-out applied)",
        )
        .expect("static metric definition");
        let metrics = Self {
            sends,
            unrouted,
            send_latency,
            outbox,
            outbox_read_at: std::sync::Mutex::new(None),
            pool_max: gauge("db_pool_max_connections", "Connection pool capacity"),
            pool_size: gauge("db_pool_connections", "Connections open in the pool"),
            pool_available: gauge("db_pool_available", "Idle connections in the pool"),
            pool_waiting: gauge("db_pool_waiting", "Requests waiting for a connection"),
            registry,
            requests,
            latency,
        };
        for collector in [
            Box::new(metrics.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.latency.clone()),
            Box::new(metrics.pool_max.clone()),
            Box::new(metrics.pool_size.clone()),
            Box::new(metrics.pool_available.clone()),
            Box::new(metrics.pool_waiting.clone()),
            Box::new(metrics.sends.clone()),
            Box::new(metrics.send_latency.clone()),
            Box::new(metrics.unrouted.clone()),
            Box::new(metrics.outbox.clone()),
        ] {
            metrics
                .registry
                .register(collector)
                .expect("each metric is registered once");
        }
        metrics
    }

    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let mut buf = itoa::Buffer::new();
        self.requests
            .with_label_values(&[route, method, buf.format(status)])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }

    /// Whether the outbox gauges are due for a new read; claims the read
    /// when they are, so concurrent scrapes do not all go to the database.
    pub fn outbox_due(&self) -> bool {
        let mut last = self
            .outbox_read_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = last.is_none_or(|t| t.elapsed() >= OUTBOX_REFRESH);
        if due {
            *last = Some(std::time::Instant::now());
        }
        due
    }

    /// Sets the outbox gauges.
    pub fn set_outbox(&self, depth: &[(String, i64)]) {
        self.outbox.reset();
        for (status, count) in depth {
            self.outbox.with_label_values(&[status]).set(*count);
        }
    }

    /// The text exposition, with pool gauges (summed over `pools`) read at
    /// scrape time.
    pub fn render(&self, pools: &[Pool]) -> String {
        let (mut max, mut size, mut available, mut waiting) = (0, 0, 0, 0);
        for status in pools.iter().map(Pool::status) {
            max += status.max_size as i64;
            size += status.size as i64;
            available += status.available as i64;
            waiting += status.waiting as i64;
        }
        self.pool_max.set(max);
        self.pool_size.set(size);
        self.pool_available.set(available);
        self.pool_waiting.set(waiting);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `<hostname>:<what>`, the `instance` label when `service.instance` is not
/// set: the listening port for `serve`, `dispatch` for `keyward dispatch`.
pub fn default_instance(what: Option<&str>) -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "keyward".into());
    match what {
        Some(what) => format!("{host}:{what}"),
        None => host,
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware recording every request. The route label is the matched
/// pattern (`/webhooks/{gateway}`), never the raw path, and the method one
/// of a fixed set, so label cardinality stays bounded whatever clients send.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let res = next.call(req).await;
    if let Some(metrics) = metrics {
        let status = match &res {
            Ok(r) => r.status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        metrics.observe(&route, method, status, started.elapsed().as_secs_f64());
    }
    res
}
