//! `/webhooks/{gateway}`: every gateway's inbound messages.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use crate::error::ApiError;
use std::sync::Arc;

use crate::error::MAX_BODY;
use crate::gateways::{Gateway, Gateways, Item, WebhookRequest};
use crate::inbound::{InboundError, Writer};

/// The configured gateway named in the path, and the body (at most
/// `MAX_BODY`).
async fn read(
    req: &HttpRequest,
    name: &str,
    payload: web::Payload,
    gateways: &Gateways,
) -> Result<(Arc<dyn Gateway>, web::Bytes), ApiError> {
    let gateway = gateways
        .get(name)
        .ok_or_else(|| ApiError::NotFound("gateway not configured".into()))?
        .clone();
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY));
    }
    // A body that does not arrive in time is refused before the gateway
    // adapter or the database see anything.
    let secs = req
        .app_data::<web::Data<crate::error::RequestTimeout>>()
        .map_or(10, |t| t.0);
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(secs),
        payload.to_bytes_limited(MAX_BODY),
    )
    .await
    .map_err(|_| ApiError::RequestTimeout(secs))?
    .map_err(|_| ApiError::PayloadTooLarge(MAX_BODY))?
    .map_err(|_| ApiError::BadRequest("could not read the request body".into()))?;
    Ok((gateway, body))
}

fn webhook_request<'a>(
    req: &'a HttpRequest,
    body: &'a [u8],
    now: DateTime<Utc>,
) -> WebhookRequest<'a> {
    WebhookRequest {
        method: req.method(),
        path: req.path(),
        query: req.query_string(),
        headers: req.headers(),
        body,
        now,
    }
}

/// A request an adapter refused, logged as such (4xx: the gateway's fault).
fn refused(gateway: &str, what: &'static str, e: crate::gateways::WebhookError) -> ApiError {
    let e = ApiError::from(e);
    tracing::info!(gateway, error = %e, "{what}");
    e
}

pub async fn receive(
    req: HttpRequest,
    gateway: web::Path<String>,
    payload: web::Payload,
    gateways: web::Data<Gateways>,
    writer: web::Data<Writer>,
    metrics: web::Data<crate::metrics::Metrics>,
) -> Result<HttpResponse, ApiError> {
    let (gateway, body) = read(&req, &gateway, payload, &gateways).await?;
    let now = Utc::now();
    let request = webhook_request(&req, &body, now);
    let items = gateway
        .receive(&request)
        .map_err(|e| refused(gateway.name(), "webhook refused", e))?;

    let mut outcomes = Vec::with_capacity(items.len());
    let mut invalid = Vec::new();
    for item in items {
        let handled = match item {
            Item::Sms(sms) => writer.handle(gateway.name(), sms, now).await,
            Item::Part(part) => writer.handle_part(gateway.name(), part, now).await,
            Item::Invalid(reason) => {
                invalid.push(reason);
                continue;
            }
        };
        match handled {
            Ok(outcome) => {
                if outcome.unrouted {
                    metrics.unrouted.inc();
                }
                outcomes.push(outcome)
            }
            Err(InboundError::Invalid(reason)) => invalid.push(reason),
            // The gateway retries the whole request later; what was stored
            // before is then a duplicate.
            Err(InboundError::Flooding) => return Err(ApiError::RateLimited),
            // A conflict is a race the retry resolves: 503 like an outage.
            Err(InboundError::Db(e)) => {
                tracing::warn!(gateway = gateway.name(), "inbound message not stored");
                return Err(match ApiError::from(e) {
                    ApiError::Conflict(_) => ApiError::Unavailable,
                    other => other,
                });
            }
        }
    }
    for reason in &mut invalid {
        *reason = crate::telemetry::mask_numbers(reason).into_owned();
    }
    if outcomes.is_empty() && !invalid.is_empty() {
        let reason = invalid.join("; ");
        tracing::info!(gateway = gateway.name(), %reason, "webhook malformed");
        return Err(ApiError::BadRequest(reason));
    }
    for reason in &invalid {
        // One bad item of a batch does not drop the others.
        tracing::warn!(gateway = gateway.name(), %reason, "batch item skipped");
    }
    Ok(gateway.success(&outcomes))
}

/// `/webhooks/{gateway}/status`: delivery reports for replies sent.
pub async fn status(
    req: HttpRequest,
    gateway: web::Path<String>,
    payload: web::Payload,
    gateways: web::Data<Gateways>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    let (gateway, body) = read(&req, &gateway, payload, &gateways).await?;
    let request = webhook_request(&req, &body, Utc::now());
    let receipts = gateway
        .receipts(&request)
        .map_err(|e| refused(gateway.name(), "delivery report refused", e))?;
    let client = pool.get().await.map_err(|e| {
        tracing::error!(error = %e, "delivery report not stored");
        ApiError::Unavailable
    })?;
    for r in &receipts {
        crate::db::outbox::apply_receipt(
            &client,
            gateway.name(),
            &r.key,
            r.status,
            r.error.as_deref(),
        )
        .await?;
    }
    Ok(gateway.success(&[]))
}
