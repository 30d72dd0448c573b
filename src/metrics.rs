//! Prometheus metrics: requests by route and status, request latency, and
//! connection-pool usage. One registry per application instance, so several
//! instances (tests) in one process do not collide.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use deadpool_postgres::Pool;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

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
    outbox: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("keyward".into()), None)
            .expect("a static prefix is a valid registry");
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
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
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
            Opts::new("outbox_replies", "Replies in the outbox by status"),
            &["status"],
        )
        .expect("static metric definition");
        let metrics = Self {
            sends,
            send_latency,
            outbox,
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

    /// Sets the outbox gauges (read from the database at scrape time).
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware recording every request. The route label is the matched
/// pattern (`/webhooks/{gateway}`), never the raw path, so label
/// cardinality stays bounded whatever clients send.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let res = next.call(req).await;
    if let Some(metrics) = metrics {
        let status = match &res {
            Ok(r) => r.status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        metrics.observe(&route, &method, status, started.elapsed().as_secs_f64());
    }
    res
}
