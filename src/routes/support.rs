//! The support API, `/v1/…` (CONTRACT §6): look a number up, list,
//! record a staff opt-out, export the consent ledger, stats, and (admin)
//! tokens. Every request is authenticated by [`Staff`] and audited by the
//! middleware in `staff_auth`.

use actix_web::{web, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::config::Settings;
use crate::core::State;
use crate::db::replica::{Freshness, Source, StaffReads};
use crate::db::support::{self as q, Goodbye, StaffOptOut};
use crate::error::ApiError;
use crate::msisdn::Msisdn;
use crate::programs::Programs;
use crate::routes::staff_auth::{client, note_number, require};
use crate::staff::view::{NewToken, OptOutResult, Stats, Subscriber, SubscriberPage, TokenInfo};
use crate::staff::{self, new_token, Role, Staff, TimelineCursor, TokenName};
use crate::telemetry::{clip, QUOTED_CHARS};

/// The number in the path, in any common form, as E.164 (400 otherwise).
pub fn parse_number(raw: &str, settings: &Settings) -> Result<Msisdn, ApiError> {
    Msisdn::parse(raw, settings.service.region).map_err(|e| ApiError::BadRequest(e.to_string()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LookupQuery {
    /// Timeline entries per page (default 50, at most 200).
    limit: Option<u32>,
    /// `next_before` of the previous page.
    before: Option<String>,
}

/// A number's programs, consent evidence and timeline.
#[utoipa::path(
    get, path = "/v1/subscribers/{number}", tag = "subscribers",
    params(
        ("number" = String, Path, description = "Any common form: +6281234567890, 6281234567890, 0812-3456-7890, (0812) 3456 7890"),
        LookupQuery,
    ),
    responses(
        (status = 200, body = Subscriber),
        (status = 400, description = "not a phone number, or a bad cursor"),
        (status = 401, description = "missing, unknown or revoked token"),
        (status = 404, description = "never seen"),
    ),
    security(("bearer" = []))
)]
pub async fn lookup(
    req: HttpRequest,
    staff: Staff,
    number: web::Path<String>,
    query: web::Query<LookupQuery>,
    reads: web::Data<StaffReads>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    require(&staff, Role::Support)?;
    let msisdn = parse_number(&number, &settings)?;
    note_number(&req, &msisdn);
    let limit = staff::page_limit(query.limit, 50, 200).map_err(ApiError::BadRequest)?;
    let before = match query.before.as_deref() {
        Some(raw) => Some(TimelineCursor::decode(raw).ok_or_else(|| {
            ApiError::BadRequest("`before` is not a cursor this API gave out".into())
        })?),
        None => None,
    };
    let (found, fresh) = reads
        .read(async |c| q::subscriber(c, msisdn.as_str(), limit, before.as_ref()).await)
        .await?;
    match found {
        Some(mut s) => {
            s.as_of = Some(fresh.into());
            Ok(read_answer(fresh).json(s))
        }
        None => Err(ApiError::NotFound("this number has never been seen".into())),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only numbers with a state in this program.
    program: Option<String>,
    /// Only numbers in this state (`none`, `pending`, `subscribed`, `unsubscribed`).
    state: Option<String>,
    /// Numbers per page (default 100, at most 1000).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// An optional query parameter through its parser; a bad value is a 400.
fn optional<T>(
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, ApiError> {
    value.map(parse).transpose().map_err(ApiError::BadRequest)
}

/// Numbers in E.164 order, with their states; keyset paginated.
#[utoipa::path(
    get, path = "/v1/subscribers", tag = "subscribers",
    params(ListQuery),
    responses(
        (status = 200, body = SubscriberPage),
        (status = 400, description = "bad filter, limit or cursor"),
        (status = 401, description = "missing, unknown or revoked token"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    staff: Staff,
    query: web::Query<ListQuery>,
    reads: web::Data<StaffReads>,
) -> Result<HttpResponse, ApiError> {
    require(&staff, Role::Support)?;
    let program = optional(query.program.as_deref(), staff::program_name)?;
    let state = optional(query.state.as_deref(), |s| {
        s.parse::<State>()
            .map(State::as_str)
            .map_err(|_| format!("`{}` is not a state", clip(s, QUOTED_CHARS)))
    })?;
    let cursor = optional(query.cursor.as_deref(), staff::list_cursor)?;
    let limit = staff::page_limit(query.limit, 100, 1000).map_err(ApiError::BadRequest)?;
    let (mut page, fresh) = reads
        .read(async |c| q::list(c, program.as_deref(), state, cursor.as_deref(), limit).await)
        .await?;
    page.as_of = Some(fresh.into());
    Ok(read_answer(fresh).json(page))
}

/// A staff opt-out.
#[derive(Debug, Deserialize, ToSchema)]
pub struct OptOutRequest {
    /// The program to leave; null or absent: every program.
    #[schema(example = "promo")]
    pub program: Option<String>,
    /// Why (required): who asked, how.
    #[schema(example = "called support on 2026-11-23, asked to stop all messages")]
    pub reason: Option<String>,
    /// Queue the program's opt-out confirmation SMS too (default false).
    #[serde(default)]
    pub confirm_sms: bool,
}

/// The longest reason kept.
const MAX_REASON: usize = 1000;

/// What a staff opt-out needs, checked: the program (configured) and a
/// non-empty reason.
pub fn check_opt_out(
    program: Option<&str>,
    reason: Option<&str>,
    settings: &Settings,
) -> Result<(Option<String>, String), ApiError> {
    let reason = reason.map(str::trim).unwrap_or("");
    if reason.is_empty() {
        return Err(ApiError::BadRequest(
            "a reason is required: who asked, and how".into(),
        ));
    }
    if reason.chars().count() > MAX_REASON || reason.contains('\0') {
        return Err(ApiError::BadRequest(format!(
            "the reason must be at most {MAX_REASON} characters, without NUL"
        )));
    }
    let program = match program {
        None => None,
        Some(p) if settings.programs.iter().any(|c| c.name == p) => Some(p.to_owned()),
        Some(p) => {
            return Err(ApiError::BadRequest(format!(
                "`{}` is not a configured program",
                clip(p, QUOTED_CHARS)
            )))
        }
    };
    Ok((program, reason.to_owned()))
}

/// Records an opt-out in the ledger (cause `staff`, the token's name as
/// actor) and cancels queued replies; stops every program if no program
/// is named.
pub async fn record_opt_out(
    pool: &Pool,
    programs: &Programs,
    staff: &Staff,
    msisdn: &Msisdn,
    program: Option<&str>,
    reason: &str,
    confirm_sms: bool,
) -> Result<OptOutResult, ApiError> {
    let goodbye = if confirm_sms {
        programs.staff_goodbye(program)
    } else {
        None
    };
    let client = client(pool).await?;
    let changed = q::staff_opt_out(
        &client,
        &StaffOptOut {
            msisdn: msisdn.as_str(),
            program,
            actor: &staff.name,
            reason,
            goodbye: goodbye.as_ref().map(|g| Goodbye {
                text: &g.text,
                program: &g.program,
                shortcode: &g.shortcode,
                sender: &g.sender,
            }),
        },
    )
    .await?
    .ok_or_else(|| {
        ApiError::NotFound(
            "this number has never been seen; name a program to record its opt-out anyway".into(),
        )
    })?;
    tracing::info!(
        msisdn = %msisdn.masked(),
        actor = %staff.name,
        programs = ?changed,
        "staff opt-out recorded"
    );
    Ok(OptOutResult {
        msisdn: msisdn.as_str().to_owned(),
        confirmation_queued: goodbye.is_some() && !changed.is_empty(),
        changed,
    })
}

/// Record an opt-out asked for by phone or mail.
#[utoipa::path(
    post, path = "/v1/subscribers/{number}/opt-out", tag = "subscribers",
    params(("number" = String, Path, description = "Any common form of the number")),
    request_body = OptOutRequest,
    responses(
        (status = 200, body = OptOutResult),
        (status = 400, description = "no reason, unknown program, not a phone number"),
        (status = 401, description = "missing, unknown or revoked token"),
        (status = 404, description = "never seen (and no program named)"),
    ),
    security(("bearer" = []))
)]
pub async fn opt_out(
    req: HttpRequest,
    staff: Staff,
    number: web::Path<String>,
    body: web::Json<OptOutRequest>,
    pool: web::Data<Pool>,
    settings: web::Data<Settings>,
    programs: web::Data<Programs>,
) -> Result<HttpResponse, ApiError> {
    require(&staff, Role::Support)?;
    let msisdn = parse_number(&number, &settings)?;
    note_number(&req, &msisdn);
    let (program, reason) =
        check_opt_out(body.program.as_deref(), body.reason.as_deref(), &settings)?;
    let result = record_opt_out(
        &pool,
        &programs,
        &staff,
        &msisdn,
        program.as_deref(),
        &reason,
        body.confirm_sms,
    )
    .await?;
    Ok(HttpResponse::Ok().json(result))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Only events of this program.
    program: Option<String>,
    /// Only events recorded at or after this date (`2026-11-01`) or time (RFC 3339).
    since: Option<String>,
}

/// Ledger events fetched per database round trip of the export: what the
/// server holds of it at any time.
const EXPORT_PAGE: i64 = 1000;

/// How long an export waits for writes in progress when it starts (see
/// `db::support::export_bound`) before answering 503.
const EXPORT_SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The consent ledger as CSV, streamed.
#[utoipa::path(
    get, path = "/v1/consent-export", tag = "consent",
    params(ExportQuery),
    responses(
        (status = 200, content_type = "text/csv", body = String,
         description = "One row per ledger event, oldest first: event_id, msisdn, program, from_state, to_state, cause, effective_at, recorded_at, keyword, text, gateway, gateway_message_id, received_at, actor, reason"),
        (status = 400, description = "bad program or since"),
        (status = 401, description = "missing, unknown or revoked token"),
        (status = 503, description = "the database is unavailable, or writes in progress did not end within 10 s; retry"),
    ),
    security(("bearer" = []))
)]
pub async fn consent_export(
    staff: Staff,
    query: web::Query<ExportQuery>,
    reads: web::Data<StaffReads>,
) -> Result<HttpResponse, ApiError> {
    require(&staff, Role::Support)?;
    let program = optional(query.program.as_deref(), staff::program_name)?;
    let since = optional(query.since.as_deref(), staff::parse_since)?;
    // The export is a snapshot: events up to this one, all of them final,
    // read from one place (the replica, or the primary) to the end.
    let (bound_client, fresh) = reads.client().await?;
    let upto = q::export_bound(
        &bound_client,
        EXPORT_SETTLE,
        fresh.source == Source::Replica,
    )
    .await?
    .ok_or(ApiError::Unavailable)?;
    drop(bound_client);
    let pool = std::sync::Arc::new(reads.pool(fresh.source).clone());
    struct Cursor {
        after: i64,
        first: bool,
        done: bool,
    }
    let start = Cursor {
        after: 0,
        first: true,
        done: false,
    };
    let body = futures_util::stream::unfold(start, move |mut c| {
        let pool = pool.clone();
        let program = program.clone();
        async move {
            if c.done {
                return None;
            }
            let page = async {
                let client = pool.get().await.map_err(|e| e.to_string())?;
                q::export_page(
                    &client,
                    c.after,
                    upto,
                    program.as_deref(),
                    since,
                    EXPORT_PAGE,
                )
                .await
                .map_err(|e| e.to_string())
            }
            .await;
            let rows = match page {
                Ok(rows) => rows,
                Err(error) => {
                    // The client sees a cut-off body: better than a
                    // complete-looking file with rows missing.
                    tracing::error!(%error, "consent export aborted");
                    c.done = true;
                    return Some((Err(actix_web::error::ErrorServiceUnavailable(error)), c));
                }
            };
            let mut csv = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::with_capacity(rows.len() * 160 + 256));
            let mut written = Ok(());
            if c.first {
                written = csv.write_record(q::EXPORT_HEADER);
                c.first = false;
            }
            for row in &rows {
                let id = row.event_id.to_string();
                // Subscribers write some of these cells (text, keyword)
                // and gateways others: none may reach a spreadsheet as a
                // formula.
                let cells: Vec<std::borrow::Cow<'_, str>> = std::iter::once(id.as_str().into())
                    .chain(
                        row.fields
                            .iter()
                            .map(|f| staff::spreadsheet_safe(f.as_deref().unwrap_or(""))),
                    )
                    .collect();
                let record = cells.iter().map(|c| c.as_bytes());
                written = written.and_then(|()| csv.write_record(record));
                c.after = row.event_id;
            }
            c.done = (rows.len() as i64) < EXPORT_PAGE;
            let bytes = written
                .map_err(|e| e.to_string())
                .and_then(|()| csv.into_inner().map_err(|e| e.to_string()));
            match bytes {
                Ok(b) => Some((Ok(web::Bytes::from(b)), c)),
                Err(error) => {
                    tracing::error!(%error, "consent export aborted");
                    c.done = true;
                    Some((Err(actix_web::error::ErrorInternalServerError(error)), c))
                }
            }
        }
    });
    Ok(read_answer(fresh)
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "content-disposition",
            "attachment; filename=\"consent-export.csv\"",
        ))
        .streaming(body))
}

/// Numbers per program and state; opt-ins and opt-outs per day.
#[utoipa::path(
    get, path = "/v1/stats", tag = "stats",
    responses(
        (status = 200, body = Stats),
        (status = 401, description = "missing, unknown or revoked token"),
    ),
    security(("bearer" = []))
)]
pub async fn stats(staff: Staff, reads: web::Data<StaffReads>) -> Result<HttpResponse, ApiError> {
    require(&staff, Role::Support)?;
    let (mut stats, fresh) = reads.read(async |c| q::stats(c, 30).await).await?;
    stats.as_of = Some(fresh.into());
    Ok(read_answer(fresh).json(stats))
}

/// A 200 for a staff read, saying where it was read and as of when
/// (`X-Keyward-Read-From: primary|replica`, `X-Keyward-As-Of: <RFC 3339>`,
/// `X-Keyward-Lag-Secs`): the export's CSV has no other place for it.
fn read_answer(fresh: Freshness) -> actix_web::HttpResponseBuilder {
    let mut answer = HttpResponse::Ok();
    answer
        .insert_header(("x-keyward-read-from", fresh.source.as_str()))
        .insert_header((
            "x-keyward-as-of",
            fresh
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ))
        .insert_header(("x-keyward-lag-secs", format!("{:.3}", fresh.lag_secs)));
    answer
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    #[schema(example = "ana")]
    pub name: String,
    /// `support`, `marketing` or `admin`.
    #[schema(example = "support")]
    pub role: String,
}

/// Create a token (admin). The secret is in this answer only.
#[utoipa::path(
    post, path = "/v1/tokens", tag = "tokens",
    request_body = TokenRequest,
    responses(
        (status = 201, body = NewToken),
        (status = 400, description = "bad name or role"),
        (status = 401, description = "missing, unknown or revoked token"),
        (status = 403, description = "not an admin token"),
        (status = 409, description = "an active token has that name"),
    ),
    security(("bearer" = []))
)]
pub async fn create_token(
    staff: Staff,
    body: web::Json<TokenRequest>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    require(&staff, Role::Admin)?;
    let name = TokenName::parse(&body.name).map_err(ApiError::BadRequest)?;
    let role: Role = body.role.parse().map_err(ApiError::BadRequest)?;
    let token = new_token();
    let client = client(&pool).await?;
    if !q::create_token(&client, name.as_str(), role, &staff::hash_token(&token)).await? {
        return Err(ApiError::Conflict(
            "an active token has that name; revoke it first".into(),
        ));
    }
    tracing::info!(name = name.as_str(), %role, by = %staff.name, "token created");
    Ok(HttpResponse::Created().json(NewToken {
        name: name.as_str().to_owned(),
        role,
        token,
    }))
}

/// Every token, without secrets (admin).
#[utoipa::path(
    get, path = "/v1/tokens", tag = "tokens",
    responses(
        (status = 200, body = Vec<TokenInfo>),
        (status = 401, description = "missing, unknown or revoked token"),
        (status = 403, description = "not an admin token"),
    ),
    security(("bearer" = []))
)]
pub async fn list_tokens(staff: Staff, pool: web::Data<Pool>) -> Result<HttpResponse, ApiError> {
    require(&staff, Role::Admin)?;
    let client = client(&pool).await?;
    Ok(HttpResponse::Ok().json(q::list_tokens(&client).await?))
}

/// Revoke the active token with this name (admin).
#[utoipa::path(
    delete, path = "/v1/tokens/{name}", tag = "tokens",
    params(("name" = String, Path, description = "The token's name")),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, description = "missing, unknown or revoked token"),
        (status = 403, description = "not an admin token"),
        (status = 404, description = "no active token has that name"),
    ),
    security(("bearer" = []))
)]
pub async fn revoke_token(
    staff: Staff,
    name: web::Path<String>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    require(&staff, Role::Admin)?;
    let client = client(&pool).await?;
    if q::revoke_token(&client, &name).await? {
        tracing::info!(name = %name, by = %staff.name, "token revoked");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("no active token has that name".into()))
    }
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `keyward token create` or `POST /v1/tokens`",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI description of the support API, generated from the
/// handlers and types above.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyward support API",
        description = "Look numbers up, record staff opt-outs, export the consent ledger (CONTRACT §6). Every request needs `Authorization: Bearer <token>` and is audited."
    ),
    paths(lookup, list, opt_out, consent_export, stats, create_token, list_tokens, revoke_token),
    components(schemas(OptOutRequest, TokenRequest)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// `/v1/openapi.json` (no token needed: it describes, it discloses nothing).
pub async fn openapi() -> HttpResponse {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::routes::broadcasts::BroadcastDoc::openapi());
    HttpResponse::Ok().json(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_tells_timeline_items_apart_by_type() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let variants = doc["components"]["schemas"]["TimelineItem"]["oneOf"]
            .as_array()
            .unwrap();
        let types: Vec<&str> = variants
            .iter()
            .map(|v| v["properties"]["type"]["enum"][0].as_str().unwrap())
            .collect();
        assert_eq!(types, ["inbound", "state_change", "reply"]);
        assert!(variants[2]["properties"]["last_error"].is_object());
        let lookup = &doc["paths"]["/v1/subscribers/{number}"]["get"];
        assert_eq!(lookup["security"][0]["bearer"], serde_json::json!([]));
        assert!(lookup["responses"]["404"].is_object());
        let doc = {
            let mut d = ApiDoc::openapi();
            d.merge(crate::routes::broadcasts::BroadcastDoc::openapi());
            serde_json::to_value(d).unwrap()
        };
        for path in [
            "/v1/broadcasts",
            "/v1/broadcasts/{id}",
            "/v1/broadcasts/{id}/recipients",
            "/v1/broadcasts/{id}/{action}",
            "/v1/subscribers/{number}/timezone",
        ] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
        assert!(doc["components"]["schemas"]["NewBroadcast"].is_object());
    }

    #[test]
    fn an_opt_out_needs_a_reason_and_a_configured_program() {
        let settings = Settings::from_sources(None, &[]).unwrap();
        assert!(check_opt_out(None, None, &settings).is_err());
        assert!(check_opt_out(None, Some(" \t "), &settings).is_err());
        assert!(check_opt_out(Some("nope"), Some("x"), &settings).is_err());
        assert!(check_opt_out(None, Some(&"x".repeat(1001)), &settings).is_err());
        let (program, reason) =
            check_opt_out(Some("default"), Some("  asked by phone "), &settings).unwrap();
        assert_eq!(program.as_deref(), Some("default"));
        assert_eq!(reason, "asked by phone");
    }
}
