//! Payload tables for every gateway (issue #13, point 4), in the manner of
//! courier's `[]IncomingTestCase`: `tests/data/gateways/<name>.toml` holds
//! real request shapes from each provider's documentation and what the
//! adapter must make of them. One runner drives every case through
//! `Gateway::receive` / `Gateway::receipts` (and `Gateway::success` for the
//! answers), without a server and without a database; the HTTP tests in
//! `tests/api` stay for end to end.
//!
//! A table is:
//!
//! ```toml
//! # Shapes: <provider documentation pages>
//! now = "2026-11-23T10:00:00Z"      # the time of every case, unless it says
//! origin = "any"                    # how `from` is written: any | international
//! [service]                         # optional, goes under [service]
//! public_url = "https://sms.example.com"
//! [config]                          # goes under [gateways.<file name>]
//! secret = "…"
//! [keys]                            # signing material that is no setting
//! telnyx_private_key = "<base64 seed>"
//!
//! [[success]]                       # gateway.success(outcomes) answers this
//! name = "…"
//! outcomes = [{ status = "accepted", id = "…", action = "opt_in" }]
//! content_type = "application/json" # "" = no Content-Type header
//! body = "…"                        # exact, or body_json = '…' (compared as JSON)
//!
//! [[case]]
//! name = "…"
//! method = "POST"                   # default POST
//! path = "/webhooks/<name>"         # …/status: a delivery report (receipts)
//! query = "…"                       # raw; `{body_sha256}` is replaced
//! headers = { "content-type" = "…" }
//! body = '…'                        # raw, or body_hex = "…" for bytes
//! now = "…"                         # when time matters
//! config = { … }                    # optional: keys replacing [config]'s
//! sign = "twilio"                   # twilio vonage plivo telnyx generic token basic
//! sign_key = "…"                    # sign with this instead (or a list: plivo)
//! sign_url = "…"                    # twilio, plivo: sign this URL instead
//! sign_method = "sha256"            # vonage: instead of the configured one
//! basic_user = "…"                  # basic: the user name (default keyward)
//! after_sign = { replace = ["from", "to"], body = "…", query = "…",
//!               headers = {…}, remove_headers = […] }
//! known_bug = "…"                   # the expectation is right, the adapter not
//! [case.expect]
//! status = 200                      # what the route answers (errors mapped)
//! error = "…"                       # a part of the refusal's message
//! [[case.expect.items]]             # receive: exactly these items
//! kind = "sms"                      # sms | part | invalid
//! id = "…"                          # id, from, to, text: always given
//! from = "…"
//! origin = "international"          # optional: instead of the table's
//! to = "…"
//! text = "…"
//! hint = "opt_out"                  # absent: no hint
//! sent_at = "…"                     # optional; "none": no time
//! reference = "…"                   # part: reference, total, number
//! total = 2
//! number = 1
//! reason = "…"                      # invalid: a part of the reason
//! [[case.expect.receipts]]          # receipts: exactly these
//! key = "provider:…"                # or outbox:…
//! status = "delivered"              # sent | delivered | undelivered | failed
//! error = "…"                       # absent: none
//! ```
//!
//! Without `items`, an error status is met by a refusal or by nothing but
//! invalid items alike (the route answers both 400), so a table need not
//! follow which of the two an adapter chooses.
//!
//! Signatures are computed here, from the case's `sign` directive and the
//! table's configured secrets, the way each provider documents them — not
//! with keyward's code — so a changed body never leaves a stale signature
//! behind, and a wrong or stale one is a case of its own. Every failure of
//! every table is reported at once; a case marked `known_bug` is reported
//! apart and does not fail the run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use serde::Deserialize;

/// The gateways a table must exist for.
const GATEWAYS: [&str; 8] = [
    "generic", "twilio", "vonage", "plivo", "telnyx", "infobip", "kannel", "jasmin",
];
const MIN_CASES: usize = 12;

// === The contact surface with src/ ==========================================
//
// Everything the runner knows of keyward is in this module: how settings are
// built, how an adapter is called, and what its answers look like. When
// `src/gateways` changes shape, this is the part to adapt.
mod surface {
    use actix_web::body::MessageBody;
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
    use actix_web::http::Method;
    use actix_web::ResponseError;
    use chrono::{DateTime, Utc};
    use keyward::config::Settings;
    use keyward::error::ApiError;
    use keyward::gateways::{
        Delivery, Gateways, Item, KeywordHint, Origin, Outcome, ReceiptKey, ReceivedSms,
        WebhookRequest,
    };

    /// A request as a case describes it.
    pub struct Request<'a> {
        pub method: &'a str,
        pub path: &'a str,
        pub query: &'a str,
        pub headers: &'a [(String, String)],
        pub body: &'a [u8],
        pub now: DateTime<Utc>,
    }

    /// What an adapter made of a request, in the runner's own terms.
    #[derive(Debug)]
    pub enum Got {
        Refused { status: u16, message: String },
        Items(Vec<GotItem>),
        Receipts(Vec<GotReceipt>),
    }

    impl Got {
        /// The status `routes::webhooks` answers for this: a refusal's own
        /// (as `ApiError` maps it); for items, 400 when every one of them
        /// is invalid, else 200 (a batch with one good item is taken).
        pub fn route_status(&self) -> u16 {
            match self {
                Got::Refused { status, .. } => *status,
                Got::Items(items)
                    if !items.is_empty() && items.iter().all(|i| i.kind == "invalid") =>
                {
                    400
                }
                _ => 200,
            }
        }
    }

    #[derive(Debug, Default)]
    pub struct GotItem {
        /// sms, part or invalid
        pub kind: &'static str,
        pub id: String,
        pub from: String,
        /// any or international
        pub origin: &'static str,
        pub to: String,
        pub text: String,
        pub hint: Option<&'static str>,
        pub sent_at: Option<DateTime<Utc>>,
        pub reference: String,
        pub total: i64,
        pub number: i64,
        pub reason: String,
    }

    #[derive(Debug)]
    pub struct GotReceipt {
        /// `provider:<id>` or `outbox:<id>`
        pub key: String,
        pub status: &'static str,
        pub error: Option<String>,
    }

    /// An outcome to render, as a table writes it.
    pub struct SyntheticOutcome {
        pub status: String,
        pub id: String,
        pub program: Option<String>,
        pub action: Option<String>,
        pub state: Option<String>,
        pub note: Option<String>,
        pub unrouted: bool,
    }

    pub struct Answer {
        pub status: u16,
        /// `None`: no Content-Type header.
        pub content_type: Option<String>,
        pub body: Vec<u8>,
    }

    /// The configured adapters.
    pub struct Adapters(Gateways);

    /// Settings from a keyward.toml text (`origin` names it in errors).
    pub fn load(origin: &std::path::Path, toml: &str) -> Result<Adapters, String> {
        let settings =
            Settings::from_sources(Some((origin, toml)), &[]).map_err(|e| e.to_string())?;
        Gateways::from_settings(&settings)
            .map(Adapters)
            .map_err(|problems| problems.join("\n"))
    }

    fn statuses(e: keyward::gateways::WebhookError) -> (u16, String) {
        let e = ApiError::from(e);
        (e.status_code().as_u16(), e.to_string())
    }

    impl Adapters {
        fn gateway(
            &self,
            name: &str,
        ) -> Result<&std::sync::Arc<dyn keyward::gateways::Gateway>, String> {
            self.0
                .get(name)
                .ok_or_else(|| format!("gateway `{name}` is not configured by the table"))
        }

        /// `receive` for a path, `receipts` for a path ending in `/status`
        /// (as the routes do).
        pub fn call(&self, name: &str, req: &Request<'_>) -> Result<Got, String> {
            let gateway = self.gateway(name)?;
            let method = Method::from_bytes(req.method.as_bytes())
                .map_err(|_| format!("bad method `{}`", req.method))?;
            let mut headers = HeaderMap::new();
            for (k, v) in req.headers {
                let name = HeaderName::try_from(k.as_str())
                    .map_err(|_| format!("bad header name `{k}`"))?;
                let value = HeaderValue::from_bytes(v.as_bytes())
                    .map_err(|_| format!("bad header value for `{k}`"))?;
                headers.append(name, value);
            }
            let request = WebhookRequest {
                method: &method,
                path: req.path,
                query: req.query,
                headers: &headers,
                body: req.body,
                now: req.now,
            };
            Ok(if req.path.ends_with("/status") {
                match gateway.receipts(&request) {
                    Err(e) => {
                        let (status, message) = statuses(e);
                        Got::Refused { status, message }
                    }
                    Ok(receipts) => Got::Receipts(
                        receipts
                            .into_iter()
                            .map(|r| GotReceipt {
                                key: match r.key {
                                    ReceiptKey::Provider(id) => format!("provider:{id}"),
                                    ReceiptKey::Outbox(id) => format!("outbox:{id}"),
                                },
                                status: match r.status {
                                    Delivery::Sent => "sent",
                                    Delivery::Delivered => "delivered",
                                    Delivery::Undelivered => "undelivered",
                                    Delivery::Failed => "failed",
                                },
                                error: r.error,
                            })
                            .collect(),
                    ),
                }
            } else {
                match gateway.receive(&request) {
                    Err(e) => {
                        let (status, message) = statuses(e);
                        Got::Refused { status, message }
                    }
                    Ok(items) => Got::Items(items.into_iter().map(item).collect()),
                }
            })
        }

        pub fn success(&self, name: &str, outcomes: &[SyntheticOutcome]) -> Result<Answer, String> {
            let gateway = self.gateway(name)?;
            let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
            let outcomes = outcomes
                .iter()
                .map(|o| {
                    Ok(Outcome {
                        status: leak(&o.status),
                        id: o.id.clone(),
                        program: o.program.clone(),
                        action: o
                            .action
                            .as_deref()
                            .map(str::parse)
                            .transpose()
                            .map_err(|e| format!("outcome action: {e}"))?,
                        state: o
                            .state
                            .as_deref()
                            .map(str::parse)
                            .transpose()
                            .map_err(|e| format!("outcome state: {e}"))?,
                        note: o.note.as_deref().map(leak),
                        unrouted: o.unrouted,
                    })
                })
                .collect::<Result<Vec<Outcome>, String>>()?;
            let response = gateway.success(&outcomes);
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let body = response
                .into_body()
                .try_into_bytes()
                .map_err(|_| "the answer's body is a stream".to_owned())?
                .to_vec();
            Ok(Answer {
                status,
                content_type,
                body,
            })
        }
    }

    fn sms(kind: &'static str, sms: ReceivedSms) -> GotItem {
        let (from, origin) = match sms.from {
            Origin::Any(n) => (n, "any"),
            Origin::International(n) => (n, "international"),
        };
        GotItem {
            kind,
            id: sms.id,
            from,
            origin,
            to: sms.to,
            text: sms.text,
            hint: sms.hint.map(|h| match h {
                KeywordHint::OptIn => "opt_in",
                KeywordHint::OptOut => "opt_out",
                KeywordHint::Help => "help",
            }),
            sent_at: sms.sent_at,
            ..GotItem::default()
        }
    }

    fn item(item: Item) -> GotItem {
        match item {
            Item::Sms(s) => sms("sms", s),
            Item::Part(p) => GotItem {
                reference: p.reference,
                total: p.total.into(),
                number: p.number.into(),
                ..sms("part", p.sms)
            },
            Item::Invalid(reason) => GotItem {
                kind: "invalid",
                reason,
                ..GotItem::default()
            },
        }
    }
}

use surface::{Adapters, Got, GotItem, Request, SyntheticOutcome};

// === The tables =============================================================

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    now: String,
    origin: String,
    #[serde(default)]
    service: Option<toml::Table>,
    config: toml::Table,
    #[serde(default)]
    keys: Keys,
    #[serde(default)]
    success: Vec<SuccessCase>,
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Keys {
    telnyx_private_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuccessCase {
    name: String,
    outcomes: Vec<OutcomeSpec>,
    #[serde(default = "ok")]
    status: u16,
    content_type: String,
    body: Option<String>,
    body_json: Option<String>,
}

fn ok() -> u16 {
    200
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeSpec {
    status: String,
    id: String,
    program: Option<String>,
    action: Option<String>,
    state: Option<String>,
    note: Option<String>,
    #[serde(default)]
    unrouted: bool,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn all(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default = "post")]
    method: String,
    path: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    body_hex: Option<String>,
    now: Option<String>,
    config: Option<toml::Table>,
    sign: Option<String>,
    sign_key: Option<OneOrMany>,
    sign_url: Option<String>,
    sign_method: Option<String>,
    basic_user: Option<String>,
    after_sign: Option<AfterSign>,
    known_bug: Option<String>,
    expect: Expect,
}

fn post() -> String {
    "POST".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AfterSign {
    /// `[from, to]`: every `from` in the body and the query becomes `to`
    /// (the signature stays as it was).
    replace: Option<[String; 2]>,
    body: Option<String>,
    query: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    remove_headers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: u16,
    error: Option<String>,
    items: Option<Vec<ItemSpec>>,
    receipts: Option<Vec<ReceiptSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemSpec {
    kind: String,
    id: Option<String>,
    from: Option<String>,
    origin: Option<String>,
    to: Option<String>,
    text: Option<String>,
    hint: Option<String>,
    sent_at: Option<String>,
    reference: Option<String>,
    total: Option<i64>,
    number: Option<i64>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptSpec {
    key: String,
    status: String,
    error: Option<String>,
}

fn time(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{raw}` is not an RFC 3339 time: {e}"))
}

/// The keyward.toml a table's (or a case's) configuration amounts to.
fn settings_toml(
    gateway: &str,
    table: &Table,
    overrides: Option<&toml::Table>,
) -> Result<String, String> {
    let mut config = table.config.clone();
    if let Some(o) = overrides {
        for (k, v) in o {
            config.insert(k.clone(), v.clone());
        }
    }
    let mut gateways = toml::Table::new();
    gateways.insert(gateway.into(), toml::Value::Table(config));
    let mut doc = toml::Table::new();
    if let Some(service) = &table.service {
        doc.insert("service".into(), toml::Value::Table(service.clone()));
    }
    doc.insert("gateways".into(), toml::Value::Table(gateways));
    toml::to_string(&doc).map_err(|e| e.to_string())
}

// === Signing, as each provider documents it =================================

/// A request being built from a case.
struct Built {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    now: DateTime<Utc>,
}

impl Built {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_header(&mut self, name: &str, value: String) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value));
    }

    fn content_type(&self) -> String {
        self.header("content-type")
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default()
    }

    fn is_get(&self) -> bool {
        self.method.eq_ignore_ascii_case("GET")
    }

    /// The POST parameters of a form body (none for GET or other bodies).
    fn post_params(&self) -> Vec<(String, String)> {
        if self.is_get() || self.content_type() != "application/x-www-form-urlencoded" {
            return vec![];
        }
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    fn query_params(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.as_bytes())
            .into_owned()
            .collect()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hmac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The first secret (or all) of a configuration key: a string or a list.
fn configured(config: &toml::Table, key: &str) -> Result<Vec<String>, String> {
    match config.get(key) {
        Some(toml::Value::String(s)) => Ok(vec![s.clone()]),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("[config] {key}: not a string"))
            })
            .collect(),
        _ => Err(format!("[config] has no `{key}` to sign with")),
    }
}

struct Signer<'a> {
    case: &'a Case,
    config: &'a toml::Table,
    public_url: String,
    telnyx_seed: Option<&'a str>,
}

impl Signer<'_> {
    fn keys(&self, config_key: &str) -> Result<Vec<String>, String> {
        match &self.case.sign_key {
            Some(k) => Ok(k.all()),
            None => configured(self.config, config_key).map(|mut v| {
                v.truncate(1);
                v
            }),
        }
    }

    fn key(&self, config_key: &str) -> Result<String, String> {
        let keys = self.keys(config_key)?;
        match keys.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err("this scheme signs with one key".into()),
        }
    }

    fn url(&self, req: &Built, with_query: bool) -> String {
        if let Some(url) = &self.case.sign_url {
            return url.clone();
        }
        let mut url = format!("{}{}", self.public_url, req.path);
        if with_query && !req.query.is_empty() {
            url.push('?');
            url.push_str(&req.query);
        }
        url
    }

    fn sign(&self, scheme: &str, req: &mut Built) -> Result<(), String> {
        match scheme {
            // Twilio, "Webhooks security": base64 HMAC-SHA1 (auth token) of
            // the full URL, then each POST parameter name and value, sorted
            // by name. JSON bodies: the URL alone (it carries bodySHA256).
            "twilio" => {
                let mut data = self.url(req, true);
                let mut params = req.post_params();
                params.sort();
                for (k, v) in params {
                    data.push_str(&k);
                    data.push_str(&v);
                }
                let key = self.key("auth_token")?;
                let tag = hmac::<hmac::Hmac<sha1::Sha1>>(key.as_bytes(), data.as_bytes());
                req.set_header("x-twilio-signature", b64(&tag));
            }
            // Vonage, "Signing messages": every parameter but `sig`, sorted,
            // as `&name=value` with `&` and `=` in values made `_`; md5hash
            // appends the secret and takes MD5, the others are HMACs keyed
            // by it; hex. The `sig` joins the other parameters.
            "vonage" => {
                let json = !req.is_get() && req.content_type() == "application/json";
                let mut params: Vec<(String, String)> = if req.is_get() {
                    req.query_params()
                } else if json {
                    let value: serde_json::Value = serde_json::from_slice(&req.body)
                        .map_err(|e| format!("vonage: body is not JSON: {e}"))?;
                    value
                        .as_object()
                        .ok_or("vonage: body is not a JSON object")?
                        .iter()
                        .filter_map(|(k, v)| match v {
                            serde_json::Value::String(s) => Some((k.clone(), s.clone())),
                            serde_json::Value::Number(n) => Some((k.clone(), n.to_string())),
                            serde_json::Value::Bool(b) => Some((k.clone(), b.to_string())),
                            _ => None,
                        })
                        .collect()
                } else {
                    req.post_params()
                };
                params.retain(|(k, _)| k != "sig");
                params.sort();
                let mut data = String::new();
                for (k, v) in &params {
                    let _ = write!(data, "&{k}={}", v.replace(['&', '='], "_"));
                }
                let key = self.key("signature_secret")?;
                let method = match &self.case.sign_method {
                    Some(m) => m.clone(),
                    None => self
                        .config
                        .get("signature_method")
                        .and_then(|v| v.as_str())
                        .unwrap_or("md5hash")
                        .to_owned(),
                };
                let k = key.as_bytes();
                let d = data.as_bytes();
                let tag = match method.as_str() {
                    "md5hash" => {
                        use md5::Digest;
                        let mut md5 = md5::Md5::new();
                        md5.update(d);
                        md5.update(k);
                        md5.finalize().to_vec()
                    }
                    "md5" => hmac::<hmac::Hmac<md5::Md5>>(k, d),
                    "sha1" => hmac::<hmac::Hmac<sha1::Sha1>>(k, d),
                    "sha256" => hmac::<hmac::Hmac<sha2::Sha256>>(k, d),
                    "sha512" => hmac::<hmac::Hmac<sha2::Sha512>>(k, d),
                    other => return Err(format!("vonage: no signature method `{other}`")),
                };
                let sig = hex::encode(tag);
                if req.is_get() {
                    req.query = format!("{}&sig={sig}", req.query);
                } else if json {
                    let mut value: serde_json::Value =
                        serde_json::from_slice(&req.body).expect("parsed above");
                    value["sig"] = serde_json::Value::String(sig);
                    req.body = serde_json::to_vec(&value).expect("JSON");
                } else {
                    req.body.extend_from_slice(format!("&sig={sig}").as_bytes());
                }
            }
            // Plivo, "Validate requests" (signature V3): base64 HMAC-SHA256
            // (auth token) of `<url>.<nonce>`, the URL being the callback
            // without its query, `?` and its query parameters sorted as
            // `name=value&…`, then for a POST `.` (when there was a query)
            // and the POST parameters sorted as `namevalue…`. Several
            // signatures (rotation) are comma-separated.
            "plivo" => {
                let mut query = req.query_params();
                query.sort();
                let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let query = query.join("&");
                let mut post = req.post_params();
                post.sort();
                let mut base = self.url(req, false);
                if req.is_get() || post.is_empty() {
                    if !query.is_empty() {
                        base.push('?');
                        base.push_str(&query);
                    }
                } else {
                    base.push('?');
                    base.push_str(&query);
                    if !query.is_empty() {
                        base.push('.');
                    }
                    for (k, v) in post {
                        base.push_str(&k);
                        base.push_str(&v);
                    }
                }
                let nonce = match req.header("x-plivo-signature-v3-nonce") {
                    Some(n) => n.to_owned(),
                    None => {
                        let n = "05429567804466091622".to_owned();
                        req.set_header("x-plivo-signature-v3-nonce", n.clone());
                        n
                    }
                };
                let message = format!("{base}.{nonce}");
                let signatures: Vec<String> = self
                    .keys("auth_token")?
                    .iter()
                    .map(|key| {
                        b64(&hmac::<hmac::Hmac<sha2::Sha256>>(
                            key.as_bytes(),
                            message.as_bytes(),
                        ))
                    })
                    .collect();
                req.set_header("x-plivo-signature-v3", signatures.join(","));
            }
            // Telnyx, "Webhook signing": Ed25519 over `<timestamp>|<body>`,
            // base64, with the account's key pair.
            "telnyx" => {
                use ed25519_dalek::Signer as _;
                let seed = match &self.case.sign_key {
                    Some(k) => self.key_of(k)?,
                    None => self
                        .telnyx_seed
                        .ok_or("telnyx: [keys] telnyx_private_key is missing")?
                        .to_owned(),
                };
                let key = signing_key(&seed)?;
                let ts = match req.header("telnyx-timestamp") {
                    Some(ts) => ts.to_owned(),
                    None => {
                        let ts = req.now.timestamp().to_string();
                        req.set_header("telnyx-timestamp", ts.clone());
                        ts
                    }
                };
                let mut message = format!("{ts}|").into_bytes();
                message.extend_from_slice(&req.body);
                req.set_header(
                    "telnyx-signature-ed25519",
                    b64(&key.sign(&message).to_bytes()),
                );
            }
            // keyward, CONTRACT §4: `sha256=` hex HMAC-SHA256 of
            // `<timestamp>.<body>`.
            "generic" => {
                let ts = match req.header("x-keyward-timestamp") {
                    Some(ts) => ts.to_owned(),
                    None => {
                        let ts = req.now.timestamp().to_string();
                        req.set_header("x-keyward-timestamp", ts.clone());
                        ts
                    }
                };
                let mut data = format!("{ts}.").into_bytes();
                data.extend_from_slice(&req.body);
                let key = self.key("secret")?;
                let tag = hmac::<hmac::Hmac<sha2::Sha256>>(key.as_bytes(), &data);
                req.set_header(
                    "x-keyward-signature",
                    format!("sha256={}", hex::encode(tag)),
                );
            }
            // Gateways that cannot sign: the secret as `?token=` …
            "token" => {
                let key = self.key("secret")?;
                let token: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("token", &key)
                    .finish();
                req.query = if req.query.is_empty() {
                    token
                } else {
                    format!("{token}&{}", req.query)
                };
            }
            // … or as the password of HTTP Basic auth.
            "basic" => {
                let key = self.key("secret")?;
                let user = self.case.basic_user.as_deref().unwrap_or("keyward");
                req.set_header(
                    "authorization",
                    format!("Basic {}", b64(format!("{user}:{key}").as_bytes())),
                );
            }
            other => return Err(format!("no signing scheme `{other}`")),
        }
        Ok(())
    }

    fn key_of(&self, k: &OneOrMany) -> Result<String, String> {
        match k.all().as_slice() {
            [one] => Ok(one.clone()),
            _ => Err("this scheme signs with one key".into()),
        }
    }
}

fn signing_key(seed_b64: &str) -> Result<ed25519_dalek::SigningKey, String> {
    let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(seed_b64.trim())
        .map_err(|e| format!("telnyx seed is not base64: {e}"))?
        .try_into()
        .map_err(|_| "telnyx seed is not 32 bytes".to_owned())?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// `haystack` with every `from` replaced by `to`, and whether there was one.
fn replace_bytes(haystack: &[u8], from: &[u8], to: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(haystack.len());
    let (mut i, mut found) = (0, false);
    while i < haystack.len() {
        if !from.is_empty() && haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            found = true;
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    (out, found)
}

fn build(case: &Case, table: &Table, config: &toml::Table) -> Result<Built, String> {
    let body = match (&case.body, &case.body_hex) {
        (Some(_), Some(_)) => return Err("both body and body_hex".into()),
        (Some(b), None) => b.clone().into_bytes(),
        (None, Some(h)) => hex::decode(h.split_whitespace().collect::<String>())
            .map_err(|e| format!("body_hex: {e}"))?,
        (None, None) => vec![],
    };
    let now = time(case.now.as_deref().unwrap_or(&table.now))?;
    let query = case.query.replace("{body_sha256}", &{
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&body))
    });
    let mut req = Built {
        method: case.method.clone(),
        path: case.path.clone(),
        query,
        headers: case
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body,
        now,
    };
    if let Some(scheme) = &case.sign {
        let public_url = table
            .service
            .as_ref()
            .and_then(|s| s.get("public_url"))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let signer = Signer {
            case,
            config,
            public_url,
            telnyx_seed: table.keys.telnyx_private_key.as_deref(),
        };
        signer.sign(scheme, &mut req)?;
    } else if case.sign_key.is_some() || case.sign_url.is_some() || case.sign_method.is_some() {
        return Err("sign_key, sign_url or sign_method without sign".into());
    }
    if let Some(after) = &case.after_sign {
        if let Some([from, to]) = &after.replace {
            let (body, in_body) = replace_bytes(&req.body, from.as_bytes(), to.as_bytes());
            if !in_body && !req.query.contains(from.as_str()) {
                return Err(format!(
                    "after_sign.replace: `{from}` is in neither body nor query"
                ));
            }
            req.body = body;
            req.query = req.query.replace(from.as_str(), to);
        }
        if let Some(b) = &after.body {
            req.body = b.clone().into_bytes();
        }
        if let Some(q) = &after.query {
            req.query = q.clone();
        }
        for name in &after.remove_headers {
            req.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        }
        for (k, v) in &after.headers {
            req.set_header(k, v.clone());
        }
    }
    Ok(req)
}

// === Checking ===============================================================

fn check_item(i: usize, want: &ItemSpec, got: &GotItem, origin: &str, problems: &mut Vec<String>) {
    fn same(problems: &mut Vec<String>, i: usize, what: &str, want: Option<&str>, got: &str) {
        if let Some(w) = want {
            if w != got {
                problems.push(format!("item {i} {what}: expected {w:?}, got {got:?}"));
            }
        }
    }
    same(problems, i, "kind", Some(&want.kind), got.kind);
    if got.kind != want.kind {
        return;
    }
    if want.kind == "invalid" {
        if let Some(r) = &want.reason {
            if !got.reason.contains(r.as_str()) {
                problems.push(format!(
                    "item {i} reason: expected it to contain {r:?}, got {:?}",
                    got.reason
                ));
            }
        }
        return;
    }
    for (name, value) in [
        ("id", &want.id),
        ("from", &want.from),
        ("to", &want.to),
        ("text", &want.text),
    ] {
        if value.is_none() {
            problems.push(format!("item {i}: the table must give `{name}`"));
        }
    }
    same(problems, i, "id", want.id.as_deref(), &got.id);
    same(problems, i, "from", want.from.as_deref(), &got.from);
    same(
        problems,
        i,
        "origin",
        Some(want.origin.as_deref().unwrap_or(origin)),
        got.origin,
    );
    same(problems, i, "to", want.to.as_deref(), &got.to);
    same(problems, i, "text", want.text.as_deref(), &got.text);
    if want.hint.as_deref() != got.hint {
        problems.push(format!(
            "item {i} hint: expected {:?}, got {:?}",
            want.hint, got.hint
        ));
    }
    if let Some(t) = &want.sent_at {
        let expected = if t == "none" {
            Ok(None)
        } else {
            time(t).map(Some)
        };
        match expected {
            Ok(e) if e == got.sent_at => {}
            Ok(e) => problems.push(format!(
                "item {i} sent_at: expected {e:?}, got {:?}",
                got.sent_at
            )),
            Err(e) => problems.push(format!("item {i} sent_at: {e}")),
        }
    }
    if want.kind == "part" {
        same(
            problems,
            i,
            "reference",
            want.reference.as_deref(),
            &got.reference,
        );
        if want.total != Some(got.total) || want.number != Some(got.number) {
            problems.push(format!(
                "item {i} part: expected {:?}/{:?}, got {}/{}",
                want.number, want.total, got.number, got.total
            ));
        }
    } else if want.reference.is_some() || want.total.is_some() || want.number.is_some() {
        problems.push(format!("item {i}: reference/total/number are for parts"));
    }
}

/// What the adapter returned, in a line.
fn brief(got: &Got) -> String {
    match got {
        Got::Refused { status, message } => format!("refused {status} {message:?}"),
        Got::Items(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|i| match i.kind {
                    "invalid" => format!("invalid {:?}", i.reason),
                    kind => format!("{kind} {} {:?}", i.id, i.text),
                })
                .collect();
            format!("items [{}]", items.join(", "))
        }
        Got::Receipts(receipts) => {
            let receipts: Vec<String> = receipts
                .iter()
                .map(|r| format!("{} {} {:?}", r.key, r.status, r.error))
                .collect();
            format!("receipts [{}]", receipts.join(", "))
        }
    }
}

fn check(case: &Case, got: &Got, origin: &str) -> Vec<String> {
    let mut problems = vec![];
    let expect = &case.expect;
    let status = got.route_status();
    if status != expect.status {
        problems.push(format!(
            "status: expected {}, got {status}: {}",
            expect.status,
            brief(got)
        ));
    }
    if let Some(part) = &expect.error {
        let message = match got {
            Got::Refused { message, .. } => message.clone(),
            Got::Items(items) => items
                .iter()
                .filter(|i| i.kind == "invalid")
                .map(|i| i.reason.clone())
                .collect::<Vec<_>>()
                .join("; "),
            Got::Receipts(_) => String::new(),
        };
        if !message.contains(part.as_str()) {
            problems.push(format!(
                "error: expected it to contain {part:?}, got {message:?}"
            ));
        }
    }
    let receipts_path = case.path.ends_with("/status");
    if receipts_path && expect.items.is_some() {
        problems.push("a delivery report has receipts, not items".into());
    }
    if !receipts_path && expect.receipts.is_some() {
        problems.push("a message has items, not receipts".into());
    }
    match got {
        Got::Refused { .. } => {
            if expect.items.is_some() || expect.receipts.is_some() {
                problems.push(format!(
                    "expected the adapter to accept the request: {}",
                    brief(got)
                ));
            }
        }
        Got::Items(items) => match &expect.items {
            Some(want) => {
                if want.len() != items.len() {
                    problems.push(format!(
                        "expected {} items, got {}: {items:#?}",
                        want.len(),
                        items.len()
                    ));
                }
                for (i, (w, g)) in want.iter().zip(items).enumerate() {
                    check_item(i, w, g, origin, &mut problems);
                }
            }
            // An error status without items: a refusal, or nothing but
            // invalid items, both answer it.
            None if expect.status != 200 => {}
            None => problems.push(format!("the table must list the items: got {items:#?}")),
        },
        Got::Receipts(receipts) => match &expect.receipts {
            Some(want) => {
                if want.len() != receipts.len() {
                    problems.push(format!(
                        "expected {} receipts, got {}: {receipts:#?}",
                        want.len(),
                        receipts.len()
                    ));
                }
                for (i, (w, g)) in want.iter().zip(receipts).enumerate() {
                    if w.key != g.key || w.status != g.status || w.error != g.error {
                        problems.push(format!(
                            "receipt {i}: expected {} {} {:?}, got {} {} {:?}",
                            w.key, w.status, w.error, g.key, g.status, g.error
                        ));
                    }
                }
            }
            None => problems.push(format!(
                "the table must list the receipts: got {receipts:#?}"
            )),
        },
    }
    problems
}

fn check_success(gateway: &str, adapters: &Adapters, s: &SuccessCase) -> Vec<String> {
    let outcomes: Vec<SyntheticOutcome> = s
        .outcomes
        .iter()
        .map(|o| SyntheticOutcome {
            status: o.status.clone(),
            id: o.id.clone(),
            program: o.program.clone(),
            action: o.action.clone(),
            state: o.state.clone(),
            note: o.note.clone(),
            unrouted: o.unrouted,
        })
        .collect();
    let answer = match adapters.success(gateway, &outcomes) {
        Ok(a) => a,
        Err(e) => return vec![e],
    };
    let mut problems = vec![];
    if answer.status != s.status {
        problems.push(format!(
            "status: expected {}, got {}",
            s.status, answer.status
        ));
    }
    let content_type = answer.content_type.unwrap_or_default();
    if content_type != s.content_type {
        problems.push(format!(
            "content type: expected {:?}, got {content_type:?}",
            s.content_type
        ));
    }
    let body = String::from_utf8_lossy(&answer.body).into_owned();
    match (&s.body, &s.body_json) {
        (Some(b), None) if *b != body => {
            problems.push(format!("body: expected {b:?}, got {body:?}"))
        }
        (None, Some(j)) => {
            let want: Result<serde_json::Value, _> = serde_json::from_str(j);
            let got: Result<serde_json::Value, _> = serde_json::from_str(&body);
            match (want, got) {
                (Ok(w), Ok(g)) if w == g => {}
                (Ok(_), Ok(_)) => problems.push(format!("body: expected {j}, got {body}")),
                (Err(e), _) => problems.push(format!("body_json is not JSON: {e}")),
                (_, Err(_)) => problems.push(format!("body is not JSON: {body:?}")),
            }
        }
        (Some(_), None) => {}
        _ => problems.push("give exactly one of body and body_json".into()),
    }
    problems
}

// === The run ================================================================

#[derive(Default)]
struct Report {
    tables: usize,
    cases: usize,
    counts: Vec<(String, usize)>,
    failures: Vec<String>,
    known_bugs: Vec<String>,
    fixed: Vec<String>,
}

fn run_table(path: &Path, report: &mut Report) {
    let gateway = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    let fail =
        |report: &mut Report, what: String| report.failures.push(format!("{gateway}: {what}"));
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return fail(report, format!("cannot read {}: {e}", path.display())),
    };
    if !text.starts_with('#') {
        fail(
            report,
            "the table must start with a comment naming its documentation".into(),
        );
    }
    let table: Table = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => return fail(report, format!("not a payload table: {e}")),
    };
    report.tables += 1;
    report.counts.push((gateway.clone(), table.case.len()));
    if table.case.len() < MIN_CASES {
        fail(
            report,
            format!(
                "{} cases; a table needs at least {MIN_CASES}",
                table.case.len()
            ),
        );
    }
    if table.success.is_empty() {
        fail(report, "no [[success]] answers".into());
    }
    if !["any", "international"].contains(&table.origin.as_str()) {
        fail(
            report,
            format!("origin `{}`: any or international", table.origin),
        );
    }
    let load = |overrides: Option<&toml::Table>| -> Result<Adapters, String> {
        let toml = settings_toml(&gateway, &table, overrides)?;
        surface::load(path, &toml)
    };
    let adapters = match load(None) {
        Ok(a) => a,
        Err(e) => return fail(report, format!("the [config] is refused: {e}")),
    };
    if let (Some(seed), Some(public)) = (
        &table.keys.telnyx_private_key,
        table.config.get("public_key").and_then(|v| v.as_str()),
    ) {
        match signing_key(seed) {
            Ok(k) if b64(k.verifying_key().as_bytes()) == public => {}
            Ok(k) => fail(
                report,
                format!(
                    "[keys] telnyx_private_key does not match [config] public_key; its public key is {}",
                    b64(k.verifying_key().as_bytes())
                ),
            ),
            Err(e) => fail(report, e),
        }
    }
    for s in &table.success {
        for p in check_success(&gateway, &adapters, s) {
            fail(report, format!("success {:?}: {p}", s.name));
        }
    }
    let mut names = std::collections::HashSet::new();
    for case in &table.case {
        report.cases += 1;
        if !names.insert(case.name.as_str()) {
            fail(report, format!("two cases named {:?}", case.name));
        }
        let result = (|| -> Result<Vec<String>, String> {
            let overridden;
            let (adapters, config) = match &case.config {
                Some(o) => {
                    overridden = load(Some(o))?;
                    let mut config = table.config.clone();
                    for (k, v) in o {
                        config.insert(k.clone(), v.clone());
                    }
                    (&overridden, config)
                }
                None => (&adapters, table.config.clone()),
            };
            let req = build(case, &table, &config)?;
            let got = adapters.call(
                &gateway,
                &Request {
                    method: &req.method,
                    path: &req.path,
                    query: &req.query,
                    headers: &req.headers,
                    body: &req.body,
                    now: req.now,
                },
            )?;
            Ok(check(case, &got, &table.origin))
        })();
        let problems = result.unwrap_or_else(|e| vec![format!("cannot run the case: {e}")]);
        let label = format!("{gateway} / {:?}", case.name);
        match (&case.known_bug, problems.is_empty()) {
            (None, true) => {}
            (None, false) => report
                .failures
                .push(format!("{label}:\n    {}", problems.join("\n    "))),
            (Some(bug), false) => report
                .known_bugs
                .push(format!("{label}: {bug}\n    {}", problems.join("\n    "))),
            (Some(bug), true) => report.fixed.push(format!("{label}: {bug}")),
        }
    }
}

#[test]
fn every_gateway_reads_its_documented_payloads() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gateways");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut report = Report::default();
    for name in GATEWAYS {
        if !paths
            .iter()
            .any(|p| p.file_stem().is_some_and(|s| s == name))
        {
            report
                .failures
                .push(format!("{name}: no table tests/data/gateways/{name}.toml"));
        }
    }
    for path in &paths {
        run_table(path, &mut report);
    }

    // Written to stderr directly, so that it shows whether the test
    // passes or not (the harness captures print! and eprint!).
    let mut summary = format!(
        "gateway payloads: {} tables, {} cases ({}), {} failed, {} known bugs\n",
        report.tables,
        report.cases,
        report
            .counts
            .iter()
            .map(|(g, n)| format!("{g} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        report.failures.len(),
        report.known_bugs.len(),
    );
    for bug in &report.known_bugs {
        let _ = writeln!(summary, "  known bug: {bug}");
    }
    for fixed in &report.fixed {
        let _ = writeln!(
            summary,
            "  known bug no longer seen, drop `known_bug`: {fixed}"
        );
    }
    let _ = std::io::stderr().write_all(summary.as_bytes());

    assert!(
        report.failures.is_empty(),
        "{} gateway payload failures:\n{}",
        report.failures.len(),
        report.failures.join("\n")
    );
}
