//! `/console`: the support API for people, as server-rendered HTML (maud,
//! which escapes every interpolated value: a stored `<script>` is text).
//!
//! Sign-in takes a token once and starts a session. Sessions live in the
//! database (`console_sessions`, the id stored only as its SHA-256) rather
//! than in signed cookies: signing out, revoking the token or expiry end
//! them at once, on every instance, and a restart does not sign everyone
//! out (as a signing key made at start would). The cookie is HttpOnly,
//! SameSite=Strict, Secure when the request came over HTTPS (directly or
//! per the `X-Forwarded-Proto` of a trusted proxy), and lasts 8 hours. Every form that changes
//! something carries the session's CSRF token; an opt-out also needs a
//! confirmation step.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::config::Settings;
use crate::core::{Action, State};
use crate::db::support as q;
use crate::error::ApiError;
use crate::programs::Programs;
use crate::routes::guard::forwarded_https;
use crate::routes::staff_auth::{client, note_number, note_staff, require, verify};
use crate::routes::support::{check_opt_out, parse_number, record_opt_out};
use crate::staff::view::{DayCounts, Evidence, Subscriber, TimelineItem};
use crate::staff::{hash_token, new_token, Role, Staff, TimelineCursor};

const COOKIE: &str = "kw_session";
const SESSION_HOURS: i32 = 8;
/// Timeline entries per console page.
const TIMELINE_PAGE: i64 = 50;

/// The session cookie's value in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for the session: `max_age` 0 clears it.
pub fn session_cookie(value: &str, secure: bool, max_age_secs: i64) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    )
}

/// Did the browser use HTTPS? Believed from `X-Forwarded-Proto` only when
/// a configured trusted proxy sent it.
fn is_https(req: &HttpRequest) -> bool {
    let proxies = req.app_data::<web::Data<Settings>>();
    forwarded_https(req, proxies.map_or(&[], |s| &s.service.trusted_proxies[..]))
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

fn page(status: actix_web::http::StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        // The console is never framed, and runs no script at all.
        .insert_header(("x-frame-options", "DENY"))
        .insert_header((
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(markup.into_string())
}

fn ok(markup: Markup) -> HttpResponse {
    page(actix_web::http::StatusCode::OK, markup)
}

/// The signed-in staff member and the session's CSRF token, if any.
async fn current(req: &HttpRequest, pool: &Pool) -> Result<Option<(Staff, String)>, ApiError> {
    let Some(id) = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| cookie_value(h, COOKIE))
        .map(str::to_owned)
    else {
        return Ok(None);
    };
    let client = client(pool).await?;
    let found = q::session(&client, &hash_token(&id)).await?;
    if let Some((staff, _)) = &found {
        note_staff(req, staff);
    }
    Ok(found)
}

/// A form posted from another site: its `Origin` (sent by browsers with
/// every POST) names a different host. This also covers sign-in, which
/// has no session (and so no CSRF token) yet.
fn cross_site(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return false;
    };
    let info = req.connection_info();
    let ours = format!("{}://{}", info.scheme(), info.host());
    !origin.to_str().is_ok_and(|o| o.eq_ignore_ascii_case(&ours))
}

fn refuse_cross_site(req: &HttpRequest) -> Result<(), ApiError> {
    if cross_site(req) {
        Err(ApiError::Forbidden(
            "this form was posted from another site".into(),
        ))
    } else {
        Ok(())
    }
}

/// Who posted a form that changes something: `None` when not signed in;
/// refused when posted from another site or with a stale CSRF token.
async fn posted_by(
    req: &HttpRequest,
    pool: &Pool,
    sent_csrf: &str,
) -> Result<Option<(Staff, String)>, ApiError> {
    refuse_cross_site(req)?;
    let Some((staff, csrf)) = current(req, pool).await? else {
        return Ok(None);
    };
    if !csrf_ok(sent_csrf, &csrf) {
        return Err(ApiError::Forbidden(
            "the form is stale or not ours; reload the page".into(),
        ));
    }
    Ok(Some((staff, csrf)))
}

fn csrf_ok(sent: &str, expected: &str) -> bool {
    sent.as_bytes().ct_eq(expected.as_bytes()).into()
}

const STYLE: &str = "
body{font:16px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:.6rem 1rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}
header a{color:#fff;font-weight:600;text-decoration:none}
header form{margin-left:auto}
main{padding:1rem;max-width:60rem;margin:auto}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.8rem 1rem;margin:0 0 1rem}
h1{font-size:1.3rem;margin:.2rem 0 .8rem}h2{font-size:1.1rem;margin:.2rem 0 .6rem}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.35rem .4rem;border-bottom:1px solid #eceff2;vertical-align:top}
.scroll{overflow-x:auto}
input,select,textarea,button{font:inherit;padding:.45rem;border:1px solid #b8c0c8;border-radius:4px;max-width:100%;box-sizing:border-box}
textarea{width:100%}
button{background:#1f3a5f;color:#fff;border:0;cursor:pointer}
button.danger{background:#a3262a}
form.inline{display:inline;margin-right:.3em}
.state-subscribed{color:#17692e;font-weight:600}.state-unsubscribed{color:#a3262a;font-weight:600}.state-pending{color:#8a5a00;font-weight:600}
.text{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-word;background:#f1f3f5;padding:0 .25rem}
.error{background:#fde8e8;border-color:#f3b4b4}.muted{color:#5f6b76;font-size:.9rem}
svg{width:100%;height:auto}
";

fn layout(title: &str, who: Option<(&Staff, &str)>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · keyward" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/console" { "keyward support" }
                    @if who.is_some() { " " a href="/console/broadcasts" { "Broadcasts" } }
                    @if let Some((staff, csrf)) = who {
                        span.muted style="color:#cfd8e3" { (staff.name) " (" (staff.role) ")" }
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn search_form(value: &str) -> Markup {
    html! {
        section {
            form method="get" action="/console/subscriber" {
                label for="number" { "Phone number" } " "
                input #number type="search" name="number" value=(value) required
                    placeholder="0812-3456-7890" inputmode="tel" autocomplete="off";
                " "
                button type="submit" { "Look up" }
            }
        }
    }
}

/// Opt-ins and opt-outs per day as an inline SVG bar chart (no script).
pub fn chart(days: &[DayCounts]) -> Markup {
    const W: f64 = 600.0;
    const H: f64 = 160.0;
    const BASE: f64 = 140.0;
    let max = days
        .iter()
        .map(|d| d.opt_ins.max(d.opt_outs))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slot = W / days.len().max(1) as f64;
    let bar = (slot / 2.0 - 1.0).max(1.0);
    let height = |n: i64| (n as f64 / max * (BASE - 10.0)).round();
    html! {
        svg viewBox=(format!("0 0 {W} {H}")) role="img"
            aria-label="Opt-ins (green) and opt-outs (red) per day, last 30 days" {
            line x1="0" y1=(BASE) x2=(W) y2=(BASE) stroke="#b8c0c8" {}
            @for (i, d) in days.iter().enumerate() {
                @let x = i as f64 * slot;
                rect x=(format!("{:.1}", x + 1.0)) y=(BASE - height(d.opt_ins))
                    width=(format!("{bar:.1}")) height=(height(d.opt_ins)) fill="#2f8f4e" {
                    title { (d.day) ": " (d.opt_ins) " opt-ins" }
                }
                rect x=(format!("{:.1}", x + 1.0 + bar)) y=(BASE - height(d.opt_outs))
                    width=(format!("{bar:.1}")) height=(height(d.opt_outs)) fill="#c0392b" {
                    title { (d.day) ": " (d.opt_outs) " opt-outs" }
                }
                @if i % 7 == 0 || i + 1 == days.len() {
                    text x=(format!("{x:.1}")) y=(H - 4.0) font-size="10" fill="#5f6b76" {
                        (d.day.format("%m-%d"))
                    }
                }
            }
            text x=(W - 2.0) y="12" font-size="10" text-anchor="end" fill="#5f6b76" {
                "max " (max as i64) " per day"
            }
        }
    }
}

/// `GET /console`: search and the dashboard.
pub async fn index(req: HttpRequest, pool: web::Data<Pool>) -> Result<HttpResponse, ApiError> {
    let Some((staff, csrf)) = current(&req, &pool).await? else {
        return Ok(redirect("/console/login"));
    };
    let client = client(&pool).await?;
    let stats = q::stats(&client, 30).await?;
    let ins: i64 = stats.daily.iter().map(|d| d.opt_ins).sum();
    let outs: i64 = stats.daily.iter().map(|d| d.opt_outs).sum();
    Ok(ok(layout(
        "Dashboard",
        Some((&staff, &csrf)),
        html! {
            (search_form(""))
            section {
                h2 { "Last 30 days" }
                p.muted { (ins) " opt-ins, " (outs) " opt-outs (UTC days; green in, red out)" }
                (chart(&stats.daily))
            }
            section.scroll {
                h2 { "Numbers per program" }
                table {
                    tr { th { "Program" } th { "Subscribed" } th { "Pending" } th { "Unsubscribed" } }
                    @for p in &stats.programs {
                        tr { td { (p.program) } td { (p.subscribed) } td { (p.pending) } td { (p.unsubscribed) } }
                    }
                }
            }
        },
    )))
}

/// `GET /console/broadcasts`: the latest broadcasts with their progress
/// and why recipients were skipped or wait.
pub async fn broadcasts(req: HttpRequest, pool: web::Data<Pool>) -> Result<HttpResponse, ApiError> {
    let Some((staff, csrf)) = current(&req, &pool).await? else {
        return Ok(redirect("/console/login"));
    };
    // Support reads; an admin may also pause, resume and cancel.
    let controls = staff.role.covers(Role::Marketing);
    let client = client(&pool).await?;
    let mut views = Vec::new();
    for row in crate::db::broadcasts::list(&client, None, 50).await? {
        let progress = crate::db::broadcasts::progress(&client, row.id).await?;
        views.push(crate::broadcast::view_of(row, progress));
    }
    let counts = |m: &std::collections::BTreeMap<String, i64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(ok(layout(
        "Broadcasts",
        Some((&staff, &csrf)),
        html! {
            section.scroll {
                h1 { "Broadcasts" }
                @if views.is_empty() { p.muted { "None yet." } }
                table #broadcasts {
                    tr {
                        th { "#" } th { "Program" } th { "Kind" } th { "Status" } th { "Recipients" }
                        th { "Progress" } th { "Waiting" } th { "Skipped" } th { "Opt-outs ≤ 48 h" } th { "Valid until" }
                        @if controls { th { "" } }
                    }
                    @for v in &views {
                        tr {
                            td { (v.id) } td { (v.program) } td { (v.kind) } td { strong { (v.status) } }
                            td { (v.recipients) }
                            td { (counts(&v.by_status)) }
                            td { (counts(&v.waiting)) }
                            td { (counts(&v.skipped)) }
                            td { (v.opt_outs_within_48h) }
                            td { (v.valid_until.map(|t| time(&t)).unwrap_or_else(|| "-".into())) }
                            @if controls && v.status != "cancelled" {
                                td {
                                    @for action in [if v.status == "paused" { "resume" } else { "pause" }, "cancel"] {
                                        form.inline method="post" action="/console/broadcasts/control" {
                                            input type="hidden" name="csrf" value=(csrf);
                                            input type="hidden" name="id" value=(v.id);
                                            input type="hidden" name="action" value=(action);
                                            button.danger[action == "cancel"] type="submit" { (action) }
                                        }
                                    }
                                }
                            } @else if controls { td { "" } }
                        }
                    }
                }
            }
        },
    )))
}

fn login_page(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section {
                h1 { "Sign in" }
                @if let Some(e) = error { p.error { (e) } }
                form method="post" action="/console/login" {
                    p {
                        label for="token" { "Your token" } br;
                        input #token type="password" name="token" required autocomplete="off"
                            style="width:100%";
                    }
                    button type="submit" { "Sign in" }
                }
                p.muted { "Ask an admin for a token (keyward token create --role support --name you)." }
            }
        },
    )
}

/// `GET /console/login`.
pub async fn login_form() -> HttpResponse {
    ok(login_page(None))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /console/login`: a valid token starts a session.
pub async fn login(
    req: HttpRequest,
    form: web::Form<LoginForm>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    refuse_cross_site(&req)?;
    // Sign-in is by token, so there is no account to count failures
    // against: the client's address is what is limited.
    let staff = match verify(&req, &pool, Some(form.token.trim())).await {
        Ok(staff) => staff,
        Err(ApiError::TooManyFailures) => {
            return Ok(page(
                actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                login_page(Some("Too many failed sign-ins from here; wait a minute.")),
            ))
        }
        Err(ApiError::Unauthorized(_)) => {
            return Ok(page(
                actix_web::http::StatusCode::UNAUTHORIZED,
                login_page(Some("That token is unknown or revoked.")),
            ))
        }
        Err(other) => return Err(other),
    };
    if !staff.role.covers(crate::staff::Role::Support) {
        // The console shows numbers; a marketing token reads none.
        return Ok(page(
            actix_web::http::StatusCode::FORBIDDEN,
            login_page(Some("The console is for support staff; this token is for broadcasts (use the API or `keyward broadcast`).")),
        ));
    }
    let client = client(&pool).await?;
    let session = new_token();
    let csrf = new_token();
    q::create_session(
        &client,
        &hash_token(&session),
        staff.token_id,
        &csrf,
        SESSION_HOURS,
    )
    .await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console"))
        .insert_header((
            header::SET_COOKIE,
            session_cookie(&session, is_https(&req), i64::from(SESSION_HOURS) * 3600),
        ))
        .finish())
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /console/logout`.
pub async fn logout(
    req: HttpRequest,
    form: web::Form<CsrfForm>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    refuse_cross_site(&req)?;
    if let Some((_, csrf)) = current(&req, &pool).await? {
        if !csrf_ok(&form.csrf, &csrf) {
            return Err(ApiError::Forbidden(
                "the form is stale; reload the page".into(),
            ));
        }
        if let Some(id) = req
            .headers()
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| cookie_value(h, COOKIE))
        {
            let client = client(&pool).await?;
            q::end_session(&client, &hash_token(id)).await?;
        }
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/login"))
        .insert_header((header::SET_COOKIE, session_cookie("", is_https(&req), 0)))
        .finish())
}

#[derive(Debug, Deserialize)]
pub struct NumberQuery {
    number: Option<String>,
    /// `next_before` of the page shown before (older entries).
    before: Option<String>,
}

fn state_class(state: &State) -> String {
    format!("state-{state}")
}

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn evidence(e: &Evidence) -> Markup {
    html! {
        @if let Some(text) = &e.text {
            span.text { (text) }
            " "
            span.muted {
                (e.keyword.as_deref().unwrap_or("-")) " · via " (e.gateway.as_deref().unwrap_or("-"))
                " " (e.gateway_message_id.as_deref().unwrap_or("-"))
                " · " (time(&e.received_at.unwrap_or(e.effective_at)))
            }
        } @else {
            (e.cause) " by " (e.actor.as_deref().unwrap_or("-"))
            @if let Some(r) = &e.reason { ": " span.text { (r) } }
        }
    }
}

fn timeline_row(item: &TimelineItem) -> Markup {
    html! {
        tr {
            td.muted { (time(&item.at())) }
            @match item {
                TimelineItem::Inbound { text, action, gateway, gateway_message_id, .. } => {
                    td { "text in" }
                    td { span.text { (text) } " " span.muted { (action.map_or("-", Action::as_str)) " · " (gateway) " " (gateway_message_id) } }
                }
                TimelineItem::StateChange { program, from_state, to_state, cause, actor, reason, .. } => {
                    td { "state" }
                    td {
                        (program) ": " (from_state) " → " span class=(state_class(to_state)) { (to_state) }
                        " (" (cause) @if let Some(a) = actor { ", " (a) } ")"
                        @if let Some(r) = reason { " " span.text { (r) } }
                    }
                }
                TimelineItem::Reply { kind, text, status, last_error, gate_reason, broadcast_id, .. } => {
                    td { @if broadcast_id.is_some() { "broadcast" } @else { "reply" } }
                    td {
                        (kind) ", " strong { (status) }
                        @if let Some(why) = gate_reason { " (gate: " (why) ")" }
                        ": " span.text { (text) }
                        @if let Some(e) = last_error { " " span.muted { "error: " (e) } }
                    }
                }
            }
        }
    }
}

fn subscriber_page(s: &Subscriber, staff: &Staff, csrf: &str, query: &str) -> Markup {
    let open: Vec<&str> = s
        .programs
        .iter()
        .filter(|p| p.state != State::Unsubscribed)
        .map(|p| p.program.as_str())
        .collect();
    layout(
        &s.msisdn,
        Some((staff, csrf)),
        html! {
            (search_form(query))
            section.scroll {
                h1 #msisdn { (s.msisdn) }
                p.muted { "first seen " (time(&s.first_seen_at)) }
                @if s.programs.is_empty() {
                    p { "No program state: this number never subscribed." }
                } @else {
                    table #programs {
                        tr { th { "Program" } th { "State" } th { "Since" } th { "Evidence" } }
                        @for p in &s.programs {
                            tr {
                                td { (p.program) }
                                td { span class=(state_class(&p.state)) { (p.state) } }
                                td.muted { (time(&p.since)) }
                                td { (evidence(&p.consent)) }
                            }
                        }
                    }
                }
            }
            @if !open.is_empty() {
                section {
                    h2 { "Record an opt-out" }
                    form #opt-out method="post" action="/console/opt-out" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="number" value=(s.msisdn);
                        p {
                            label for="program" { "Program" } " "
                            select #program name="program" {
                                option value="" { "all programs" }
                                @for p in &open { option value=(p) { (p) } }
                            }
                        }
                        p {
                            label for="reason" { "Reason (who asked, how)" } br;
                            textarea #reason name="reason" rows="2" required maxlength="1000" {}
                        }
                        p {
                            label { input type="checkbox" name="confirm_sms" value="yes"; " send the opt-out confirmation SMS" }
                        }
                        button.danger type="submit" { "Continue…" }
                    }
                }
            }
            section.scroll {
                h2 { "Timeline" }
                table #timeline {
                    @for item in &s.timeline { (timeline_row(item)) }
                }
                @if let Some(before) = &s.next_before {
                    p { a #older href=(format!("{}&before={}", number_link(&s.msisdn), utf8_percent_encode(before, NON_ALPHANUMERIC))) { "Older entries →" } }
                }
            }
        },
    )
}

/// `GET /console/subscriber?number=…`.
pub async fn subscriber(
    req: HttpRequest,
    query: web::Query<NumberQuery>,
    pool: web::Data<Pool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let Some((staff, csrf)) = current(&req, &pool).await? else {
        return Ok(redirect("/console/login"));
    };
    let raw = query.number.as_deref().unwrap_or("").trim().to_owned();
    let problem = |status, message: String| {
        page(
            status,
            layout(
                "Look up",
                Some((&staff, &csrf)),
                html! { (search_form(&raw)) section.error { p { (message) } } },
            ),
        )
    };
    let msisdn = match parse_number(&raw, &settings) {
        Ok(m) => m,
        Err(e) => {
            return Ok(problem(
                actix_web::http::StatusCode::BAD_REQUEST,
                e.to_string(),
            ))
        }
    };
    note_number(&req, &msisdn);
    let before = match query.before.as_deref() {
        Some(raw) => match TimelineCursor::decode(raw) {
            Some(c) => Some(c),
            None => {
                return Ok(problem(
                    actix_web::http::StatusCode::BAD_REQUEST,
                    "That link is broken; look the number up again.".into(),
                ))
            }
        },
        None => None,
    };
    let client = client(&pool).await?;
    match q::subscriber(&client, msisdn.as_str(), TIMELINE_PAGE, before.as_ref()).await? {
        Some(s) => Ok(ok(subscriber_page(&s, &staff, &csrf, &raw))),
        None => Ok(problem(
            actix_web::http::StatusCode::NOT_FOUND,
            format!("{msisdn} has never been seen."),
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct OptOutForm {
    csrf: String,
    number: String,
    program: Option<String>,
    reason: Option<String>,
    confirm_sms: Option<String>,
    confirmed: Option<String>,
}

/// `POST /console/opt-out`: first a confirmation page, then (with
/// `confirmed=yes`) the opt-out itself, then back to the number.
pub async fn opt_out(
    req: HttpRequest,
    form: web::Form<OptOutForm>,
    pool: web::Data<Pool>,
    settings: web::Data<Settings>,
    programs: web::Data<Programs>,
) -> Result<HttpResponse, ApiError> {
    let Some((staff, csrf)) = posted_by(&req, &pool, &form.csrf).await? else {
        return Ok(redirect("/console/login"));
    };
    let msisdn = parse_number(&form.number, &settings)?;
    note_number(&req, &msisdn);
    let program = form.program.as_deref().filter(|p| !p.is_empty());
    let (program, reason) = check_opt_out(program, form.reason.as_deref(), &settings)?;
    let confirm_sms = form.confirm_sms.as_deref() == Some("yes");
    if form.confirmed.as_deref() != Some("yes") {
        let target = program.as_deref().unwrap_or("all programs");
        return Ok(ok(layout(
            "Confirm opt-out",
            Some((&staff, &csrf)),
            html! {
                section {
                    h1 { "Record this opt-out?" }
                    table {
                        tr { th { "Number" } td #confirm-number { (msisdn) } }
                        tr { th { "From" } td { (target) } }
                        tr { th { "Reason" } td { span.text { (reason) } } }
                        tr { th { "Confirmation SMS" } td { @if confirm_sms { "yes" } @else { "no" } } }
                        tr { th { "Recorded as" } td { (staff.name) } }
                    }
                    form #confirm method="post" action="/console/opt-out" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="number" value=(msisdn);
                        input type="hidden" name="program" value=(program.as_deref().unwrap_or(""));
                        input type="hidden" name="reason" value=(reason);
                        @if confirm_sms { input type="hidden" name="confirm_sms" value="yes"; }
                        input type="hidden" name="confirmed" value="yes";
                        p { button.danger type="submit" { "Yes, record the opt-out" } }
                    }
                    p { a href=(number_link(msisdn.as_str())) { "Cancel" } }
                }
            },
        )));
    }
    record_opt_out(
        &pool,
        &programs,
        &staff,
        &msisdn,
        program.as_deref(),
        &reason,
        confirm_sms,
    )
    .await?;
    Ok(redirect(&number_link(msisdn.as_str())))
}

#[derive(Debug, Deserialize)]
pub struct ControlForm {
    csrf: String,
    id: i64,
    action: String,
    confirmed: Option<String>,
}

/// `POST /console/broadcasts/control` (admin): pause or resume a
/// broadcast at once; cancel after a confirmation page.
pub async fn control_broadcast(
    req: HttpRequest,
    form: web::Form<ControlForm>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    let Some((staff, csrf)) = posted_by(&req, &pool, &form.csrf).await? else {
        return Ok(redirect("/console/login"));
    };
    require(&staff, Role::Marketing)?;
    let Some(to) = crate::broadcast::status_after(&form.action) else {
        return Err(ApiError::BadRequest(
            "action: pause, resume or cancel".into(),
        ));
    };
    if to == "cancelled" && form.confirmed.as_deref() != Some("yes") {
        return Ok(ok(layout(
            "Confirm cancel",
            Some((&staff, &csrf)),
            html! {
                section {
                    h1 { "Cancel broadcast " (form.id) "?" }
                    p { "Nothing more of it will be sent: every recipient still waiting is skipped (cancelled). This cannot be undone." }
                    form #confirm method="post" action="/console/broadcasts/control" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="id" value=(form.id);
                        input type="hidden" name="action" value="cancel";
                        input type="hidden" name="confirmed" value="yes";
                        p { button.danger type="submit" { "Yes, cancel it" } }
                    }
                    p { a href="/console/broadcasts" { "Back" } }
                }
            },
        )));
    }
    let client = client(&pool).await?;
    match crate::db::broadcasts::set_status(&client, form.id, to).await? {
        None => Err(ApiError::NotFound("no such broadcast".into())),
        Some(false) => Err(ApiError::Conflict(format!(
            "broadcast {} cannot become {to} now (cancelled, or {to} already)",
            form.id
        ))),
        Some(true) => {
            tracing::info!(id = form.id, by = %staff.name, status = to, "broadcast status (console)");
            Ok(redirect("/console/broadcasts"))
        }
    }
}

fn number_link(msisdn: &str) -> String {
    format!(
        "/console/subscriber?number={}",
        utf8_percent_encode(msisdn, NON_ALPHANUMERIC)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_only_over_https() {
        let c = session_cookie("abc", false, 28800);
        assert_eq!(
            c,
            "kw_session=abc; Path=/console; HttpOnly; SameSite=Strict; Max-Age=28800"
        );
        assert!(session_cookie("abc", true, 1).ends_with("; Secure"));
    }

    #[test]
    fn the_cookie_value_is_found_among_others() {
        assert_eq!(
            cookie_value("a=1; kw_session=xyz; b=2", "kw_session"),
            Some("xyz")
        );
        assert_eq!(cookie_value("kw_session=", "kw_session"), None);
        assert_eq!(cookie_value("other=1", "kw_session"), None);
    }

    #[test]
    fn the_chart_has_two_bars_a_day_and_scales_to_the_busiest_day() {
        let days: Vec<DayCounts> = (1..=30)
            .map(|d| DayCounts {
                day: NaiveDate::from_ymd_opt(2026, 11, d).unwrap(),
                opt_ins: i64::from(d),
                opt_outs: 1,
            })
            .collect();
        let svg = chart(&days).into_string();
        assert_eq!(svg.matches("<rect").count(), 60);
        assert!(svg.contains("2026-11-30: 30 opt-ins"));
        assert!(
            svg.contains("height=\"130\""),
            "the busiest day is full height"
        );
    }

    #[test]
    fn stored_text_is_escaped_in_the_timeline() {
        let row = timeline_row(&TimelineItem::Inbound {
            id: 1,
            at: chrono::Utc::now(),
            gateway: "generic".into(),
            gateway_message_id: "gw-1".into(),
            text: "<script>alert(1)</script>".into(),
            action: None,
            program: None,
            keyword: None,
        })
        .into_string();
        assert!(row.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!row.contains("<script>"));
    }
}
