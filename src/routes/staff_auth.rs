//! Who is asking, and the audit trail of what they asked.
//!
//! [`Staff`] is an extractor: `Authorization: Bearer <token>`, looked up by
//! its SHA-256 among active tokens (401 when missing, unknown or revoked).
//! A token that cannot be one of ours (not `kw_` and 43 base64url
//! characters) is refused without asking the database, and each client's
//! failures are limited by the [`AuthGuard`]: past its allowance a failure
//! is 429 and leaves no audit row. [`require`] turns a role too weak into
//! 403. [`audit`] is middleware on `/v1` and `/console`: after each request
//! it writes one `audit_log` row with the token, the endpoint's pattern,
//! the number the handler looked at (see [`note_number`]), the status and
//! the query string (clipped). Staff routes use a pool of their own
//! ([`StaffPool`]), so no load on them can take connections from webhooks.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, ResponseError};
use deadpool_postgres::{Object, Pool};
use futures_util::future::LocalBoxFuture;

use crate::config::Settings;
use crate::db::support::{self as q, AuditEntry};
use crate::error::ApiError;
use crate::msisdn::Msisdn;
use crate::routes::guard::{client_addr, AuthGuard};
use crate::staff::{bearer, hash_token, plausible_token, Role, Staff};

/// The connections of the staff routes (`/v1`, `/console`), apart from the
/// webhooks' pools.
#[derive(Clone)]
pub struct StaffPool(pub Pool);

/// Characters of a query string kept in an audit row (a failed request's
/// query is the attacker's to choose).
const AUDIT_QUERY_CHARS: usize = 256;

/// A request that tried to authenticate and failed: audited too, as
/// `unauthenticated`.
#[derive(Debug, Clone, Copy)]
pub struct AuthFailed;

/// The number a request was about, for the audit row.
#[derive(Debug, Clone)]
struct AuditNumber(String);

/// Records which number this request is about (for the audit log).
pub fn note_number(req: &HttpRequest, msisdn: &Msisdn) {
    req.extensions_mut()
        .insert(AuditNumber(msisdn.as_str().to_owned()));
}

/// Records who is behind this request (for the audit log); the console
/// calls it for its session's staff member.
pub fn note_staff(req: &HttpRequest, staff: &Staff) {
    req.extensions_mut().insert(staff.clone());
}

pub fn note_failed(req: &HttpRequest) {
    req.extensions_mut().insert(AuthFailed);
}

/// The client, as the failure allowance counts it.
fn client_of(req: &HttpRequest) -> Option<std::net::IpAddr> {
    match req.app_data::<web::Data<Settings>>() {
        Some(settings) => client_addr(req, &settings.service.trusted_proxies),
        None => req.peer_addr().map(|a| a.ip()),
    }
}

/// Is this client past its failure allowance? Then it is refused (429)
/// before any database work, valid token or not, until the allowance has
/// refilled by one.
pub fn over_allowance(req: &HttpRequest) -> bool {
    req.app_data::<web::Data<AuthGuard>>()
        .is_some_and(|guard| guard.blocked(client_of(req)))
}

/// A failed authentication: 401 (audited) within the client's allowance,
/// 429 (not audited: the allowance is what bounds the audit rows) past it.
pub fn refuse(req: &HttpRequest, unauthorized: ApiError) -> ApiError {
    let within = req
        .app_data::<web::Data<AuthGuard>>()
        .is_none_or(|guard| guard.failure(client_of(req)));
    if within {
        note_failed(req);
        unauthorized
    } else {
        ApiError::TooManyFailures
    }
}

/// 403 unless `staff` has at least `needed`.
pub fn require(staff: &Staff, needed: Role) -> Result<(), ApiError> {
    if staff.role.covers(needed) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "this needs the {needed} role; the token has {}",
            staff.role
        )))
    }
}

/// A pooled connection, or 503.
pub async fn client(pool: &Pool) -> Result<Object, ApiError> {
    pool.get().await.map_err(|e| {
        tracing::error!(error = %e, "no database connection");
        ApiError::Unavailable
    })
}

impl FromRequest for Staff {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let token = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer)
                .map(str::to_owned);
            let pool = req
                .app_data::<web::Data<Pool>>()
                .ok_or(ApiError::Unavailable)?;
            verify(&req, pool, token.as_deref()).await
        })
    }
}

/// Who `token` belongs to, for the API and the console's sign-in alike:
/// a client past its failure allowance is refused before any database
/// work, a token that cannot be ours costs no query, an unknown one one
/// indexed read; every failure counts against the allowance (401 within
/// it, 429 past it).
pub async fn verify(
    req: &HttpRequest,
    pool: &Pool,
    token: Option<&str>,
) -> Result<Staff, ApiError> {
    if over_allowance(req) {
        return Err(ApiError::TooManyFailures);
    }
    let Some(token) = token else {
        return Err(refuse(
            req,
            ApiError::Unauthorized("an `Authorization: Bearer <token>` header is required".into()),
        ));
    };
    let found = if plausible_token(token) {
        q::authenticate(&client(pool).await?, &hash_token(token)).await?
    } else {
        None
    };
    match found {
        Some(staff) => {
            note_staff(req, &staff);
            Ok(staff)
        }
        None => Err(refuse(
            req,
            ApiError::Unauthorized("the token is unknown or revoked".into()),
        )),
    }
}

/// Middleware: one `audit_log` row per staff request, written before the
/// answer leaves. When it cannot be written, a read is refused with 503
/// (nothing is disclosed unaudited); a write that already committed is
/// answered as it happened, and the failure is logged.
pub async fn audit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    // The request is read back from the response: cloning it before
    // routing would stop the router from recording the matched resource.
    let pool = req.app_data::<web::Data<StaffPool>>().cloned();
    let res = next.call(req).await?;
    let http = res.request().clone();
    let (staff, failed, msisdn) = {
        let ext = http.extensions();
        (
            ext.get::<Staff>().cloned(),
            ext.get::<AuthFailed>().is_some(),
            ext.get::<AuditNumber>().map(|n| n.0.clone()),
        )
    };
    if staff.is_none() && !failed {
        return Ok(res.map_into_left_body());
    }
    let endpoint = http
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let query = http.query_string();
    let detail = (!query.is_empty()).then(|| {
        let clipped = crate::telemetry::clip(query, AUDIT_QUERY_CHARS);
        if clipped.len() < query.len() {
            serde_json::json!({ "query": clipped, "query_bytes": query.len() })
        } else {
            serde_json::json!({ "query": clipped })
        }
    });
    let entry = AuditEntry {
        token_id: staff.as_ref().map(|s| s.token_id),
        actor: staff
            .as_ref()
            .map_or("unauthenticated", |s| s.name.as_str()),
        method: crate::metrics::method_label(http.method()),
        endpoint: &endpoint,
        msisdn: msisdn.as_deref(),
        status: Some(res.status().as_u16() as i16),
        detail,
    };
    let written = match &pool {
        Some(pool) => match pool.0.get().await {
            Ok(client) => q::audit(&client, &entry).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        None => Err("no pool".into()),
    };
    match written {
        Ok(()) => Ok(res.map_into_left_body()),
        Err(error) => {
            tracing::error!(%error, endpoint, "audit row not written");
            if http.method() == actix_web::http::Method::GET && res.status().is_success() {
                let refused = ApiError::Unavailable.error_response();
                Ok(ServiceResponse::new(http, refused).map_into_right_body())
            } else {
                Ok(res.map_into_left_body())
            }
        }
    }
}
