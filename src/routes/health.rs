//! `/healthz` (the process is alive), `/readyz` (the database answers) and
//! `/metrics` (Prometheus text format).

use actix_web::{web, HttpResponse};
use deadpool_postgres::Pool;
use serde_json::json;

use crate::error::ApiError;
use crate::metrics::Metrics;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(pool: web::Data<Pool>) -> Result<HttpResponse, ApiError> {
    // Bounded: a hung database must not hang the probe.
    let ping = tokio::time::timeout(std::time::Duration::from_secs(3), crate::db::ping(&pool));
    match ping.await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({"status": "ready"}))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: database unreachable");
            Err(ApiError::Unavailable)
        }
        Err(_) => {
            tracing::warn!("not ready: database did not answer within 3 s");
            Err(ApiError::Unavailable)
        }
    }
}

pub async fn metrics(
    metrics: web::Data<Metrics>,
    pool: web::Data<Pool>,
    pools: web::Data<crate::startup::AllPools>,
) -> HttpResponse {
    let depth = async {
        let client = pool.get().await.ok()?;
        crate::db::outbox::depth(&client).await.ok()
    };
    // The outbox gauges are best effort: a slow database must not hang scrapes.
    if let Ok(Some(depth)) = tokio::time::timeout(std::time::Duration::from_secs(2), depth).await {
        metrics.set_outbox(&depth);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render(&pools.0))
}
