//! The broadcast API, `/v1/broadcasts…`: create (with `Idempotency-Key`),
//! list, progress, recipients, pause, resume and cancel. The `marketing`
//! role (or `admin`) creates and controls broadcasts; `support` may read
//! them. Also `PUT /v1/subscribers/{number}/timezone` (support), the zone
//! the send gate prefers for a number.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::broadcast::{self, BroadcastError, Broadcasts, NewBroadcast, Plan, View};
use crate::config::Settings;
use crate::db::broadcasts as q;
use crate::error::ApiError;
use crate::routes::staff_auth::{client, note_number, require};
use crate::routes::support::parse_number;
use crate::staff::view::ReplyStatus;
use crate::staff::{page_limit, Role, Staff};

impl From<BroadcastError> for ApiError {
    fn from(e: BroadcastError) -> Self {
        match e {
            BroadcastError::Invalid(m) => ApiError::BadRequest(m),
            BroadcastError::Refused {
                message,
                problems,
                lint,
            } => ApiError::Refused(
                message,
                serde_json::json!({ "problems": problems, "lint": lint }),
            ),
            BroadcastError::Conflict(m) => ApiError::Conflict(m),
            BroadcastError::NotFound => ApiError::NotFound("no such broadcast".into()),
            BroadcastError::Db(e) => e.into(),
        }
    }
}

/// Marketing (or admin) may; support may read.
fn may_read(staff: &Staff) -> Result<(), ApiError> {
    if staff.role.covers(Role::Marketing) || staff.role.covers(Role::Support) {
        Ok(())
    } else {
        require(staff, Role::Marketing)
    }
}

/// Plans and stores a broadcast (or, with `dry_run`, only counts).
#[utoipa::path(
    post, path = "/v1/broadcasts", tag = "broadcasts",
    request_body = NewBroadcast,
    params(("Idempotency-Key" = String, Header, description = "Required unless dry_run: a retried create with the same key answers the same broadcast")),
    responses(
        (status = 201, body = Plan, description = "created"),
        (status = 200, body = Plan, description = "a dry run, or the broadcast an earlier request with this key made"),
        (status = 400, description = "invalid request (program, valid_until, numbers, missing vars)"),
        (status = 403, description = "needs the marketing role"),
        (status = 409, description = "the key was used for a different request"),
        (status = 422, description = "template problems or style findings (program lint = refuse), in error.details"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    req: HttpRequest,
    staff: Staff,
    body: web::Json<NewBroadcast>,
    pool: web::Data<Pool>,
    broadcasts: web::Data<Broadcasts>,
    clock: web::Data<crate::clock::Clock>,
) -> Result<HttpResponse, ApiError> {
    require(&staff, Role::Marketing)?;
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255);
    let key = match (key, body.dry_run) {
        (Some(k), _) => k.to_owned(),
        (None, true) => String::new(),
        (None, false) => {
            return Err(ApiError::BadRequest(
                "an Idempotency-Key header (1 to 255 characters) is required".into(),
            ))
        }
    };
    let service: Arc<Broadcasts> = broadcasts.into_inner();
    let plan = service
        .create(&pool, &staff.name, &key, &body, clock.now())
        .await?;
    if plan.created {
        tracing::info!(id = plan.id, by = %staff.name, recipients = plan.recipients, "broadcast created");
        Ok(HttpResponse::Created().json(plan))
    } else {
        Ok(HttpResponse::Ok().json(plan))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many (default 50, at most 200).
    limit: Option<u32>,
    /// `next_before` of the previous page.
    before: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BroadcastPage {
    pub items: Vec<View>,
    pub next_before: Option<i64>,
}

/// Broadcasts, newest first, each with its progress.
#[utoipa::path(
    get, path = "/v1/broadcasts", tag = "broadcasts", params(ListQuery),
    responses((status = 200, body = BroadcastPage)),
    security(("bearer" = []))
)]
pub async fn list(
    staff: Staff,
    query: web::Query<ListQuery>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    may_read(&staff)?;
    let limit = page_limit(query.limit, 50, 200).map_err(ApiError::BadRequest)?;
    let client = client(&pool).await?;
    let rows = q::list(&client, query.before, limit).await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let progress = q::progress(&client, row.id).await?;
        items.push(broadcast::view_of(row, progress));
    }
    Ok(HttpResponse::Ok().json(BroadcastPage { items, next_before }))
}

/// One broadcast and its progress.
#[utoipa::path(
    get, path = "/v1/broadcasts/{id}", tag = "broadcasts",
    params(("id" = i64, Path)),
    responses((status = 200, body = View), (status = 404, description = "no such broadcast")),
    security(("bearer" = []))
)]
pub async fn show(
    staff: Staff,
    id: web::Path<i64>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    may_read(&staff)?;
    let client = client(&pool).await?;
    Ok(HttpResponse::Ok().json(broadcast::view(&client, *id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecipientsQuery {
    /// Only recipients in this outbox status (`planned`, `skipped`,
    /// `sent`, `delivered`…).
    status: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientView {
    pub msisdn: String,
    pub status: String,
    /// Why it waits or was skipped (`window`, `gap`, `cap_reached`…).
    pub gate_reason: Option<String>,
    pub gated_at: Option<chrono::DateTime<Utc>>,
    pub next_attempt_at: chrono::DateTime<Utc>,
    pub sent_at: Option<chrono::DateTime<Utc>>,
    pub delivered_at: Option<chrono::DateTime<Utc>>,
    pub last_error: Option<String>,
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientPage {
    pub items: Vec<RecipientView>,
    pub next_cursor: Option<String>,
}

/// The recipients of a broadcast in number order, with each one's gate
/// decision and delivery.
#[utoipa::path(
    get, path = "/v1/broadcasts/{id}/recipients", tag = "broadcasts",
    params(("id" = i64, Path), RecipientsQuery),
    responses((status = 200, body = RecipientPage), (status = 404, description = "no such broadcast")),
    security(("bearer" = []))
)]
pub async fn recipients(
    staff: Staff,
    id: web::Path<i64>,
    query: web::Query<RecipientsQuery>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    may_read(&staff)?;
    let limit = page_limit(query.limit, 100, 1000).map_err(ApiError::BadRequest)?;
    let status = match query.status.as_deref() {
        Some(s) if !ReplyStatus::ALL.iter().any(|st| st.as_str() == s) => {
            return Err(ApiError::BadRequest(format!(
                "status must be one of {}",
                ReplyStatus::ALL.map(ReplyStatus::as_str).join(", ")
            )))
        }
        other => other,
    };
    let after = match query.cursor.as_deref() {
        Some(c) => crate::staff::list_cursor(c).map_err(ApiError::BadRequest)?,
        None => "+".to_owned(),
    };
    let client = client(&pool).await?;
    if q::one(&client, *id).await?.is_none() {
        return Err(ApiError::NotFound("no such broadcast".into()));
    }
    let rows = q::recipients(&client, *id, status, &after, limit).await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.msisdn.clone()))
        .flatten();
    let items = rows
        .into_iter()
        .map(|r| RecipientView {
            msisdn: r.msisdn,
            status: r.status,
            gate_reason: r.gate_reason,
            gated_at: r.gated_at,
            next_attempt_at: r.next_attempt_at,
            sent_at: r.sent_at,
            delivered_at: r.delivered_at,
            last_error: r.last_error,
            text: r.text,
        })
        .collect();
    Ok(HttpResponse::Ok().json(RecipientPage { items, next_cursor }))
}

async fn set_status(
    staff: &Staff,
    id: i64,
    to: &str,
    pool: &Pool,
) -> Result<HttpResponse, ApiError> {
    require(staff, Role::Marketing)?;
    let client = client(pool).await?;
    match q::set_status(&client, id, to).await? {
        None => Err(ApiError::NotFound("no such broadcast".into())),
        Some(changed) => {
            let view = broadcast::view(&client, id).await?;
            if !changed && view.status != to {
                return Err(ApiError::Conflict(format!(
                    "the broadcast is {}; it cannot become {to}",
                    view.status
                )));
            }
            tracing::info!(id, by = %staff.name, status = to, "broadcast status");
            Ok(HttpResponse::Ok().json(view))
        }
    }
}

/// `pause` stops sending until resumed (what is in flight finishes);
/// `resume` goes on from where it stopped — no recipient twice, none
/// skipped, each asked again at the gate; `cancel` ends it for good: every
/// recipient still planned is skipped (`cancelled`).
#[utoipa::path(
    post, path = "/v1/broadcasts/{id}/{action}", tag = "broadcasts",
    params(("id" = i64, Path), ("action" = String, Path, description = "pause, resume or cancel")),
    responses(
        (status = 200, body = View),
        (status = 404, description = "no such broadcast, or no such action"),
        (status = 409, description = "cancelled: it cannot be paused or resumed"),
    ),
    security(("bearer" = []))
)]
pub async fn control(
    staff: Staff,
    path: web::Path<(i64, String)>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    let (id, action) = path.into_inner();
    let Some(to) = broadcast::status_after(&action) else {
        return Err(ApiError::NotFound("no such endpoint".into()));
    };
    set_status(&staff, id, to, &pool).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimezoneRequest {
    /// An IANA zone (`Asia/Makassar`), or null to forget it.
    pub timezone: Option<String>,
}

/// Records the time zone of a number: the send gate then uses it alone
/// instead of the program's or every zone the number's prefix allows.
#[utoipa::path(
    put, path = "/v1/subscribers/{number}/timezone", tag = "subscribers",
    params(("number" = String, Path)),
    request_body = TimezoneRequest,
    responses((status = 204), (status = 400, description = "not a number or not a zone"), (status = 404, description = "never seen")),
    security(("bearer" = []))
)]
pub async fn set_timezone(
    req: HttpRequest,
    staff: Staff,
    number: web::Path<String>,
    body: web::Json<TimezoneRequest>,
    pool: web::Data<Pool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    require(&staff, Role::Support)?;
    let msisdn = parse_number(&number, &settings)?;
    note_number(&req, &msisdn);
    let zone = match body.timezone.as_deref() {
        Some(tz) => Some(
            tz.parse::<chrono_tz::Tz>()
                .map_err(|_| {
                    ApiError::BadRequest(format!(
                        "`{}` is not an IANA time zone such as Asia/Jakarta",
                        crate::telemetry::clip(tz, 64)
                    ))
                })?
                .name()
                .to_owned(),
        ),
        None => None,
    };
    let client = client(&pool).await?;
    if q::set_timezone(&client, msisdn.as_str(), zone.as_deref()).await? {
        tracing::info!(by = %staff.name, timezone = ?zone, "subscriber time zone recorded");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("this number was never seen".into()))
    }
}

/// The broadcast part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(create, list, show, recipients, control, set_timezone),
    components(schemas(
        NewBroadcast,
        Plan,
        View,
        BroadcastPage,
        RecipientPage,
        RecipientView,
        TimezoneRequest
    ))
)]
pub struct BroadcastDoc;
