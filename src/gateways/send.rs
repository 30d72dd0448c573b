//! The kit for replies going out: the reply a sender is handed, the HTTP
//! call it asks for (the dispatcher makes it), how the provider's answer
//! reads, and the helpers every HTTP sender needs.

use actix_web::http::Method;
use chrono::{DateTime, Utc};

use super::clip;

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

impl HttpCall {
    /// A POST of a form, with `authorization` when the API wants it.
    pub fn post_form(url: &str, authorization: Option<&str>, pairs: &[(&str, &str)]) -> Self {
        Self::post(
            url,
            authorization,
            "application/x-www-form-urlencoded",
            form_body(pairs),
        )
    }

    /// A POST of a JSON document, with `authorization` when the API wants it.
    pub fn post_json(url: &str, authorization: Option<&str>, body: &serde_json::Value) -> Self {
        // A `Value` always serialises.
        let body = serde_json::to_vec(body).unwrap_or_default();
        Self::post(url, authorization, "application/json", body)
    }

    fn post(url: &str, authorization: Option<&str>, content_type: &str, body: Vec<u8>) -> Self {
        let mut headers = vec![("content-type".to_owned(), content_type.to_owned())];
        if let Some(auth) = authorization {
            headers.insert(0, ("authorization".to_owned(), auth.to_owned()));
        }
        Self {
            method: Method::POST,
            url: url.to_owned(),
            headers,
            body,
        }
    }
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

/// Sends replies through one provider; registered under its gateway's
/// name (`reply_via`, the outbox's `sender` column).
pub trait Sender: Send + Sync {
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
