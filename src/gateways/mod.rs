//! Gateway adapters: one module per SMS gateway, all of the same shape.
//!
//! Each adapter turns its gateway's native webhook request into
//! [`ReceivedSms`] values (authenticating it on the way) and renders the
//! success body that gateway expects. Adapters do no IO: a request goes in,
//! messages or an error come out, so each can be driven without a server
//! or a database — `tests/fuzz.rs` does, with mutations of real payload
//! shapes; `tests/api/gateways.rs` runs them over HTTP.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::header::HeaderMap;
use actix_web::http::Method;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::config::{Secret, Settings};

pub mod charset;
pub mod generic;
pub mod infobip;
pub mod jasmin;
pub mod kannel;
pub mod log;
pub mod plivo;
pub mod telnyx;
pub mod twilio;
pub mod vonage;

/// The answer for one message (CONTRACT §4, generic webhook).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// `accepted`, or `duplicate` for a gateway message id seen before.
    pub status: &'static str,
    /// keyward's id of the stored inbound message.
    pub id: String,
    pub program: Option<String>,
    pub action: Option<crate::core::Action>,
    pub state: Option<crate::core::State>,
    /// Said when the gateway's timestamp was not used as the time of
    /// consent (more than `inbound::MAX_BACKDATE_HOURS` before arrival).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
    /// Sent to a number that is no configured short code (counted in
    /// `/metrics`, not part of the answer).
    #[serde(skip)]
    pub unrouted: bool,
}

/// A webhook request as received, before anything is trusted.
#[derive(Debug)]
pub struct WebhookRequest<'a> {
    pub method: &'a Method,
    /// e.g. `/webhooks/twilio`
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub now: DateTime<Utc>,
}

impl WebhookRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The media type, lowercased, without parameters.
    pub fn content_type(&self) -> String {
        self.header("content-type")
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default()
    }

    pub fn require_content_type(&self, expected: &[&str]) -> Result<(), WebhookError> {
        let actual = self.content_type();
        if expected.contains(&actual.as_str()) {
            Ok(())
        } else {
            Err(WebhookError::UnsupportedMediaType(format!(
                "expected {}, got `{}`",
                expected.join(" or "),
                clip(&actual, 64)
            )))
        }
    }

    /// Form fields from the body (POST) or the query string (GET).
    pub fn form_fields(&self) -> Vec<(String, String)> {
        let source = if self.method == Method::GET {
            self.query.as_bytes()
        } else {
            self.body
        };
        form_urlencoded::parse(source).into_owned().collect()
    }
}

/// How the sender's number is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Any common form; national numbers are read in the configured region.
    Any(String),
    /// Documented by the gateway as international, `+` optional.
    International(String),
}

/// The gateway already knows what the keyword means (Twilio's Advanced
/// Opt-Out sets `OptOutType`); how it counts is `core::plan`'s rule.
pub use crate::core::plan::Hint as KeywordHint;

/// One inbound SMS as the gateway described it.
#[derive(Debug, Clone)]
pub struct ReceivedSms {
    pub id: String,
    pub from: Origin,
    pub to: String,
    pub text: String,
    pub sent_at: Option<DateTime<Utc>>,
    /// The gateway's payload for this message, kept as evidence.
    pub raw: serde_json::Value,
    pub hint: Option<KeywordHint>,
}

/// Form or query parameters with their values as raw bytes, for gateways
/// that URL-encode the message in its own charset (Kannel, Jasmin).
pub struct RawForm {
    pairs: Vec<(String, Vec<u8>)>,
}

impl RawForm {
    pub fn parse(encoded: &[u8]) -> Self {
        let decode = |s: &[u8]| {
            let plus_as_space: Vec<u8> = s
                .iter()
                .map(|b| if *b == b'+' { b' ' } else { *b })
                .collect();
            percent_encoding::percent_decode(&plus_as_space).collect::<Vec<u8>>()
        };
        let pairs = encoded
            .split(|b| *b == b'&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = match pair.iter().position(|b| *b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, &b""[..]),
                };
                (String::from_utf8_lossy(&decode(k)).into_owned(), decode(v))
            })
            .collect();
        Self { pairs }
    }

    /// The parameters of a GET's query or a POST's body.
    pub fn of(req: &WebhookRequest<'_>) -> Self {
        Self::parse(if req.method == Method::GET {
            req.query.as_bytes()
        } else {
            req.body
        })
    }

    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Like [`RawForm::bytes`], ignoring ASCII case in the name (Jasmin's
    /// `from`/`to` arrive as `From`/`To` from some set-ups).
    pub fn bytes_any_case(&self, name: &str) -> Option<&[u8]> {
        self.bytes(name).or_else(|| {
            self.pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_slice())
        })
    }

    /// A non-empty parameter whatever the case of its name.
    pub fn required_any_case(&self, name: &str) -> Result<String, String> {
        self.bytes_any_case(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("missing field `{name}`"))
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.bytes(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// A non-empty parameter, or the reason it is missing.
    pub fn required(&self, name: &str) -> Result<String, String> {
        self.text(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("missing field `{name}`"))
    }

    /// The parameters as evidence, with `field` holding the decoded text
    /// instead of its raw bytes (and no `token`).
    pub fn evidence(&self, field: &str, decoded: Option<&str>) -> serde_json::Value {
        let mut pairs: Vec<(String, String)> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != field)
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        if let Some(text) = decoded {
            pairs.push((field.to_owned(), text.to_owned()));
        }
        fields_json(&pairs)
    }
}

/// One part of a concatenated message (Vonage delivers each part alone).
#[derive(Debug, Clone)]
pub struct Part {
    /// The part itself; its `id` is the part's own gateway id.
    pub sms: ReceivedSms,
    /// The sender's reference shared by all parts of one message.
    pub reference: String,
    pub total: i16,
    pub number: i16,
}

/// An item of a webhook request: a message, a part of one, or why one
/// could not be read.
#[derive(Debug)]
pub enum Item {
    Sms(ReceivedSms),
    Part(Part),
    Invalid(String),
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    BadRequest(String),
    /// No or malformed credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials present but wrong, or a stale timestamp.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotFound(String),
}

pub trait Gateway: Send + Sync {
    /// The name in `/webhooks/{name}` and in the database.
    fn name(&self) -> &'static str;
    /// Authenticates the request and reads its messages.
    fn receive(&self, req: &WebhookRequest<'_>) -> Result<Vec<Item>, WebhookError>;
    /// The body this gateway expects when all went well.
    fn success(&self, outcomes: &[Outcome]) -> HttpResponse;
    /// Authenticates a delivery-report callback and reads its receipts.
    fn receipts(&self, _req: &WebhookRequest<'_>) -> Result<Vec<Receipt>, WebhookError> {
        Err(WebhookError::NotFound(format!(
            "{} sends no delivery reports here",
            self.name()
        )))
    }
}

/// Where a delivery report says a reply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the network (not yet on the handset).
    Sent,
    Delivered,
    Undelivered,
    /// Refused by the provider or network.
    Failed,
}

impl Delivery {
    pub const ALL: [Delivery; 4] = [
        Delivery::Sent,
        Delivery::Delivered,
        Delivery::Undelivered,
        Delivery::Failed,
    ];

    /// The `outbox_status` it moves a reply to.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Sent => "sent",
            Delivery::Delivered => "delivered",
            Delivery::Undelivered => "undelivered",
            Delivery::Failed => "failed",
        }
    }
}

/// Which reply a receipt is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptKey {
    /// The provider's own message id (stored when the send was accepted).
    Provider(String),
    /// keyward's outbox id, where the callback URL carries it (Kannel).
    Outbox(String),
}

/// One delivery report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub key: ReceiptKey,
    pub status: Delivery,
    pub error: Option<String>,
}

/// The configured gateways, by name.
#[derive(Clone, Default)]
pub struct Gateways {
    by_name: HashMap<&'static str, Arc<dyn Gateway>>,
}

impl Gateways {
    pub fn from_settings(settings: &Settings) -> Self {
        let mut gateways = Self::default();
        let g = &settings.gateways;
        let public_url = settings.service.public_url.as_deref();
        if let Some(c) = &g.generic {
            gateways.add(generic::Generic::new(c));
        }
        if let Some(c) = &g.twilio {
            gateways.add(twilio::Twilio::new(c, public_url));
        }
        if let Some(c) = &g.vonage {
            gateways.add(vonage::Vonage::new(c));
        }
        if let Some(c) = &g.plivo {
            gateways.add(plivo::Plivo::new(c, public_url));
        }
        // An invalid key is refused by config validation before this.
        if let Some(telnyx) = g.telnyx.as_ref().and_then(telnyx::Telnyx::new) {
            gateways.add(telnyx);
        }
        if let Some(c) = &g.infobip {
            gateways.add(infobip::Infobip::new(c));
        }
        if let Some(c) = &g.kannel {
            gateways.add(kannel::Kannel::new(c));
        }
        if let Some(c) = &g.jasmin {
            gateways.add(jasmin::Jasmin::new(c));
        }
        gateways
    }

    fn add(&mut self, gateway: impl Gateway + 'static) {
        self.by_name.insert(gateway.name(), Arc::new(gateway));
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Gateway>> {
        self.by_name.get(name)
    }
}

/// Constant-time equality of two secrets (or a secret and a guess).
pub fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Does `tag` equal HMAC(`key`, `message`) under any of the keys?
/// Comparison is constant-time per key.
pub fn hmac_matches<M: Mac + KeyInit>(keys: &[Secret], message: &[&[u8]], tag: &[u8]) -> bool {
    keys.iter().any(|key| {
        let Ok(mut mac) = <M as KeyInit>::new_from_slice(key.expose().as_bytes()) else {
            return false;
        };
        for part in message {
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    })
}

/// Authenticates a gateway that cannot sign its requests: the password of
/// HTTP Basic auth, or a `token` query parameter, must equal one of the
/// configured secrets (compared in constant time).
pub fn check_shared_secret(
    req: &WebhookRequest<'_>,
    secrets: &[Secret],
) -> Result<(), WebhookError> {
    use base64::Engine;
    let from_basic = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|decoded| {
            let split = decoded.iter().position(|b| *b == b':')?;
            Some(decoded[split + 1..].to_vec())
        });
    let presented = from_basic.or_else(|| {
        form_urlencoded::parse(req.query.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned().into_bytes())
    });
    let Some(presented) = presented else {
        return Err(WebhookError::Unauthorized(
            "missing credentials: HTTP Basic auth or ?token=".into(),
        ));
    };
    if secrets
        .iter()
        .any(|s| secret_eq(s.expose().as_bytes(), &presented))
    {
        Ok(())
    } else {
        Err(WebhookError::Forbidden("wrong credentials".into()))
    }
}

/// Checks a `timestamp` (unix seconds) is within `window` seconds of now.
pub fn check_timestamp(
    raw: Option<&str>,
    now: DateTime<Utc>,
    window: i64,
) -> Result<i64, WebhookError> {
    let raw = raw.ok_or_else(|| WebhookError::Unauthorized("missing timestamp".into()))?;
    let ts: i64 = raw
        .trim()
        .parse()
        .map_err(|_| WebhookError::Unauthorized("malformed timestamp".into()))?;
    if (now.timestamp() - ts).abs() > window {
        return Err(WebhookError::Forbidden(format!(
            "timestamp is more than {window} s from now (replayed or clock skew)"
        )));
    }
    Ok(ts)
}

/// A required form or JSON field, non-empty.
pub fn required<'a>(fields: &'a [(String, String)], name: &str) -> Result<&'a str, String> {
    field(fields, name).ok_or_else(|| format!("missing field `{name}`"))
}

pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Form fields as a JSON object, for the `raw` evidence column. A `token`
/// field (a credential in the URL) is left out: secrets are not evidence.
pub fn fields_json(fields: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Object(
        fields
            .iter()
            .filter(|(k, _)| k != "token")
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

/// A JSON webhook body's top-level scalar fields as name/value pairs.
pub fn json_fields(body: &[u8]) -> Result<Vec<(String, String)>, WebhookError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| WebhookError::BadRequest("invalid JSON".into()))?;
    let object = value
        .as_object()
        .ok_or_else(|| WebhookError::BadRequest("expected a JSON object".into()))?;
    Ok(object
        .iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k.clone(), s.clone())),
            serde_json::Value::Number(n) => Some((k.clone(), n.to_string())),
            serde_json::Value::Bool(b) => Some((k.clone(), b.to_string())),
            _ => None,
        })
        .collect())
}

pub use crate::telemetry::clip;

/// The default JSON success body: `{"status": …, "id": …, …}` for one
/// message, `{"results": [...]}` for several.
pub fn json_success(outcomes: &[Outcome]) -> HttpResponse {
    match outcomes {
        [one] => HttpResponse::Ok().json(one),
        many => HttpResponse::Ok().json(serde_json::json!({ "results": many })),
    }
}

// --- replies going out ---------------------------------------------------

/// One reply to send, as the dispatcher hands it to a sender.
#[derive(Debug, Clone)]
pub struct OutboundSms<'a> {
    /// The outbox id: idempotency key and correlation for receipts.
    pub id: &'a str,
    /// The short code it is sent from.
    pub from: &'a str,
    /// E.164.
    pub to: &'a str,
    pub text: &'a str,
    /// The gateway's id of the message this answers, if any.
    pub in_reply_to: Option<&'a str>,
}

/// The HTTP request a sender wants made; the dispatcher makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// How a send went, as the provider's answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Sent {
        provider_id: Option<String>,
    },
    /// Worth trying again (timeout, 5xx, 429), after `after` if the
    /// provider said so.
    Retry {
        reason: String,
        after: Option<std::time::Duration>,
    },
    /// The provider refused the message for good (4xx).
    Failed {
        reason: String,
    },
    /// The provider refused because the number opted out with it.
    OptedOut {
        reason: String,
    },
    /// The request may have reached the provider, but no answer says
    /// what it did (a timeout once the connection was up): possibly sent.
    Unknown {
        reason: String,
    },
}

/// The provider's HTTP answer.
#[derive(Debug)]
pub struct HttpAnswer<'a> {
    pub status: u16,
    pub retry_after: Option<std::time::Duration>,
    pub body: &'a [u8],
}

pub trait Sender: Send + Sync {
    /// The name in `reply_via` and the outbox's `sender` column.
    fn name(&self) -> &'static str;
    /// The request that sends `sms`; `None` for the `log` sender, which
    /// only writes to the log.
    fn request(&self, sms: &OutboundSms<'_>, now: DateTime<Utc>) -> Option<HttpCall>;
    /// What the provider's answer means.
    fn outcome(&self, answer: &HttpAnswer<'_>) -> SendOutcome {
        http_outcome(answer, |_| None)
    }
    /// Does the provider drop a repeat of a request it already took (the
    /// same key, the outbox id)? Then a reply that was possibly sent may go
    /// again; otherwise it becomes `unknown`. None of the commercial APIs
    /// we send through promise it by default (README, "Replies going out").
    fn idempotent(&self) -> bool {
        false
    }
}

/// The usual reading of an HTTP answer: 2xx sent, 408/429/5xx retry, other
/// 4xx failed. `provider_id` extracts the provider's message id from a 2xx
/// body.
pub fn http_outcome(
    answer: &HttpAnswer<'_>,
    provider_id: impl FnOnce(&[u8]) -> Option<String>,
) -> SendOutcome {
    let reason = || {
        format!(
            "HTTP {}: {}",
            answer.status,
            clip(String::from_utf8_lossy(answer.body).trim(), 300)
        )
    };
    match answer.status {
        200..=299 => SendOutcome::Sent {
            provider_id: provider_id(answer.body),
        },
        408 | 429 | 500..=599 => SendOutcome::Retry {
            reason: reason(),
            after: answer.retry_after,
        },
        _ => SendOutcome::Failed { reason: reason() },
    }
}

/// The configured senders, by name (`log` always).
#[derive(Clone)]
pub struct Senders {
    by_name: HashMap<&'static str, Arc<dyn Sender>>,
}

impl Senders {
    pub fn from_settings(settings: &Settings) -> Self {
        let mut senders = Self {
            by_name: HashMap::new(),
        };
        senders.add(log::LogSender);
        let g = &settings.gateways;
        let callback = |gateway: &str| {
            settings
                .service
                .public_url
                .as_deref()
                .map(|u| format!("{}/webhooks/{gateway}/status", u.trim_end_matches('/')))
        };
        if let Some(c) = &g.generic {
            if let Some(sender) = generic::GenericSender::new(c) {
                senders.add(sender);
            }
        }
        if let Some(c) = &g.twilio {
            senders.add(twilio::TwilioSender::new(c, callback("twilio")));
        }
        if let Some(c) = &g.vonage {
            if let Some(sender) = vonage::VonageSender::new(c, callback("vonage")) {
                senders.add(sender);
            }
        }
        if let Some(c) = &g.plivo {
            senders.add(plivo::PlivoSender::new(c, callback("plivo")));
        }
        if let Some(sender) = g
            .telnyx
            .as_ref()
            .and_then(|c| telnyx::TelnyxSender::new(c, callback("telnyx")))
        {
            senders.add(sender);
        }
        if let Some(sender) = g
            .infobip
            .as_ref()
            .and_then(|c| infobip::InfobipSender::new(c, callback("infobip")))
        {
            senders.add(sender);
        }
        if let Some(sender) = g
            .kannel
            .as_ref()
            .and_then(|c| kannel::KannelSender::new(c, callback("kannel")))
        {
            senders.add(sender);
        }
        if let Some(sender) = g
            .jasmin
            .as_ref()
            .and_then(|c| jasmin::JasminSender::new(c, callback("jasmin")))
        {
            senders.add(sender);
        }
        senders
    }

    fn add(&mut self, sender: impl Sender + 'static) {
        self.by_name.insert(sender.name(), Arc::new(sender));
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Sender>> {
        self.by_name.get(name)
    }
}

/// Basic auth header value.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// `application/x-www-form-urlencoded` body from pairs.
pub fn form_body(pairs: &[(&str, &str)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

/// Does `text` fit the GSM 03.38 alphabet (else it needs UCS-2)?
pub fn is_gsm7(text: &str) -> bool {
    matches!(crate::core::encoding(text).0, crate::core::Encoding::Gsm7)
}
