//! What a webhook request is made of, before and after an adapter read
//! it: the request as received, its form fields (decoded, or as raw bytes
//! for gateways that encode text in their own charset), the messages and
//! parts it carries, the errors an adapter answers with, and the answer
//! for each message (CONTRACT §4).

use actix_web::http::header::HeaderMap;
use actix_web::http::Method;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};

pub use crate::telemetry::clip;

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

/// The default JSON success body: `{"status": …, "id": …, …}` for one
/// message, `{"results": [...]}` for several.
pub fn json_success(outcomes: &[Outcome]) -> HttpResponse {
    match outcomes {
        [one] => HttpResponse::Ok().json(one),
        many => HttpResponse::Ok().json(serde_json::json!({ "results": many })),
    }
}
