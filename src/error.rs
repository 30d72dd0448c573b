//! The error every endpoint answers with: a status from the contract and a
//! JSON body `{"error": {"code": "…", "message": "…"}}`. Internal details
//! are logged, never sent to the client.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// Largest request body accepted (CONTRACT §4: 413 above it).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Understood but refused as written (a broadcast's template or style
    /// problems): 422, the problems in `details`.
    #[error("{0}")]
    Refused(String, serde_json::Value),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many messages from this sender; retry later")]
    RateLimited,
    /// Too many failed authentications from this client.
    #[error("too many failed attempts; wait a minute")]
    TooManyFailures,
    /// The client took too long to send its request.
    #[error("the request was not sent within {0} s")]
    RequestTimeout(u64),
    /// The database cannot be reached; the caller should retry.
    #[error("the database is unavailable; retry later")]
    Unavailable,
    /// A fault of keyward's own (a statement the schema refused): logged
    /// with its cause, told to the client without one.
    #[error("internal error; it has been logged")]
    Internal,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Refused(..) => "refused",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RateLimited => "rate_limited",
            ApiError::TooManyFailures => "too_many_failures",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal => "internal_error",
        }
    }
}

/// Seconds a client should wait after a 503 or 429.
pub const RETRY_AFTER_SECS: u32 = 5;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Refused(..) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited | ApiError::TooManyFailures => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unavailable | ApiError::RateLimited => {
                res.insert_header(("Retry-After", RETRY_AFTER_SECS.to_string()));
            }
            ApiError::TooManyFailures => {
                res.insert_header(("Retry-After", "60"));
            }
            _ => {}
        }
        let mut error = json!({"code": self.code(), "message": self.to_string()});
        if let ApiError::Refused(_, details) = self {
            error["details"] = details.clone();
        }
        res.json(json!({ "error": error }))
    }
}

/// Messages may quote what the gateway sent (a parser's "invalid type:
/// integer `6281234567890`"): numbers in them are masked, for the answer
/// and the log alike.
impl From<crate::gateways::WebhookError> for ApiError {
    fn from(e: crate::gateways::WebhookError) -> Self {
        let masked = |m: String| crate::telemetry::mask_numbers(&m).into_owned();
        match e {
            crate::gateways::WebhookError::BadRequest(m) => ApiError::BadRequest(masked(m)),
            crate::gateways::WebhookError::Unauthorized(m) => ApiError::Unauthorized(masked(m)),
            crate::gateways::WebhookError::Forbidden(m) => ApiError::Forbidden(masked(m)),
            crate::gateways::WebhookError::UnsupportedMediaType(m) => {
                ApiError::UnsupportedMediaType(masked(m))
            }
            crate::gateways::WebhookError::NotFound(m) => ApiError::NotFound(masked(m)),
        }
    }
}

/// The database's refusal as what it means: unavailable → 503 (retry); a
/// conflicting change → 409; a bug → 500, its cause in the log only.
impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        use crate::db::Fault;
        let (code, constraint, table) = e.server_detail().unwrap_or_default();
        match e.fault() {
            Fault::Unavailable => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable
            }
            Fault::Conflict => {
                tracing::warn!(error = %e, code, constraint, table, "conflicting change");
                ApiError::Conflict("a conflicting change was made at the same time; retry".into())
            }
            Fault::Bug => {
                tracing::error!(error = %e, code, constraint, table, "database refused a statement: a bug");
                ApiError::Internal
            }
        }
    }
}

/// actix's own extractor errors (bad JSON, bad query string, oversized
/// bodies) in the contract's shape instead of actix's plain-text defaults.
pub fn json_config() -> actix_web::web::JsonConfig {
    json_config_up_to(MAX_BODY)
}

/// Largest broadcast request (its named recipients and their values).
pub const MAX_BROADCAST_BODY: usize = 16 * 1024 * 1024;

/// [`json_config`] with another size limit.
pub fn json_config_up_to(limit: usize) -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _| {
            use actix_web::error::JsonPayloadError as E;
            match &err {
                E::OverflowKnownLength { .. } | E::Overflow { .. } => {
                    ApiError::PayloadTooLarge(limit).into()
                }
                E::ContentType => {
                    ApiError::UnsupportedMediaType("expected application/json".into()).into()
                }
                _ => ApiError::BadRequest(format!("invalid JSON: {err}")).into(),
            }
        })
}

/// Bad query strings in the contract's shape.
pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default()
        .error_handler(|err, _| ApiError::BadRequest(format!("invalid query: {err}")).into())
}

/// Path segments that are not text (`%FF`) in the contract's shape.
pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default()
        .error_handler(|err, _| ApiError::BadRequest(format!("invalid path: {err}")).into())
}

/// Bad forms (the console's) in the contract's shape.
pub fn form_config() -> actix_web::web::FormConfig {
    actix_web::web::FormConfig::default()
        .limit(MAX_BODY)
        .error_handler(|err, _| ApiError::BadRequest(format!("invalid form: {err}")).into())
}

/// `service.request_timeout_secs`, for [`deadline`] and the webhooks'
/// body reads (app data, so that this module needs no configuration).
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub u64);

/// Middleware: a request is answered within three times
/// `service.request_timeout_secs` (30 s by default), reading its body
/// included, or 503 with `Retry-After`: a slow database or pool must look
/// like what it is to a gateway, a reason to retry (CONTRACT §4), and a
/// client dribbling a body holds a connection no longer than that. (A
/// webhook's body has its own, shorter, limit: 408.) A request cut off
/// after its commit is stored; the gateway's retry is then a duplicate.
pub async fn deadline(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let secs = req
        .app_data::<actix_web::web::Data<RequestTimeout>>()
        .map_or(10, |t| t.0);
    // No clone of the request here: a cloned request cannot be routed.
    let limit = std::time::Duration::from_secs(secs.saturating_mul(3));
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(seconds = secs * 3, "request not answered in time: 503");
            Err(ApiError::Unavailable.into())
        }
    }
}

/// 404 in the contract's shape for paths no route matches.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such endpoint".into()))
}
