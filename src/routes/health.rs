//! `/healthz` (the process is alive), `/readyz` (the database answers) and
//! `/metrics` (Prometheus text format).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::Settings;
use crate::error::ApiError;
use crate::metrics::Metrics;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(
    pool: web::Data<Pool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    // Bounded: a hung database must not hang the probe.
    let ping = tokio::time::timeout(std::time::Duration::from_secs(3), crate::db::ping(&pool));
    match ping.await {
        Ok(Ok(())) => {
            let open = settings.unauthenticated_gateways();
            if open.is_empty() {
                return Ok(HttpResponse::Ok().json(json!({"status": "ready"})));
            }
            let warnings: Vec<String> = open
                .iter()
                .map(|g| format!("the {g} webhook accepts unsigned requests (allow_unsigned)"))
                .collect();
            Ok(HttpResponse::Ok().json(json!({"status": "ready", "warnings": warnings})))
        }
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
    req: HttpRequest,
    metrics: web::Data<Metrics>,
    pool: web::Data<Pool>,
    pools: web::Data<crate::metrics::AllPools>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    if let Some(expected) = &settings.service.metrics_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::staff::bearer);
        let Some(given) = given else {
            return Err(ApiError::Unauthorized(
                "/metrics needs `Authorization: Bearer <service.metrics_token>`".into(),
            ));
        };
        if !bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
            return Err(ApiError::Unauthorized("wrong metrics token".into()));
        }
    }
    if metrics.outbox_due() {
        let depth = async {
            let client = pool.get().await.ok()?;
            crate::db::outbox::depth(&client).await.ok()
        };
        // Best effort: a slow database must not hang scrapes.
        if let Ok(Some(depth)) =
            tokio::time::timeout(std::time::Duration::from_secs(2), depth).await
        {
            metrics.set_outbox(&depth);
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render(&pools.0)))
}
