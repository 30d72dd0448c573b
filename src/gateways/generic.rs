//! `generic`: keyward's own JSON webhook (CONTRACT §4).
//!
//! ```text
//! POST /webhooks/generic
//! Content-Type: application/json
//! X-Keyward-Timestamp: 1795428000
//! X-Keyward-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
//!
//! {"id": "gw-123", "from": "+6281234567890", "to": "3344", "text": "MAU",
//!  "received_at": "2026-11-23T10:00:00Z"}
//! ```

use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use hmac::Hmac;
use serde::Deserialize;
use sha2::Sha256;

use super::{
    check_timestamp, clip, hmac_matches, json_success, Gateway, Item, Origin, Outcome, ReceivedSms,
    WebhookError, WebhookRequest,
};
use crate::config::{GenericSettings, Secret};

pub struct Generic {
    secrets: Vec<Secret>,
    allow_unsigned: bool,
}

impl Generic {
    pub fn new(settings: &GenericSettings) -> Self {
        Self {
            secrets: settings
                .secret
                .as_ref()
                .map(|s| s.all().to_vec())
                .unwrap_or_default(),
            allow_unsigned: settings.allow_unsigned,
        }
    }

    fn authenticate(&self, req: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        if self.secrets.is_empty() {
            // Configuration refuses this unless on loopback; never by accident.
            // Unsigned is for a client on this machine talking to us
            // directly; a request a proxy forwarded is anyone's.
            let forwarded = ["x-forwarded-for", "forwarded", "x-real-ip"]
                .iter()
                .any(|h| req.headers.contains_key(*h));
            return if self.allow_unsigned && !forwarded {
                Ok(())
            } else if self.allow_unsigned {
                Err(WebhookError::Unauthorized(
                    "unsigned requests are taken only directly on loopback, not through a proxy"
                        .into(),
                ))
            } else {
                Err(WebhookError::Unauthorized(
                    "the generic gateway has no secret configured".into(),
                ))
            };
        }
        let signature = req
            .header("x-keyward-signature")
            .ok_or_else(|| WebhookError::Unauthorized("missing X-Keyward-Signature".into()))?;
        let ts_raw = req.header("x-keyward-timestamp");
        check_timestamp(ts_raw, req.now, super::REPLAY_WINDOW_SECS)?;
        let tag = signature
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h.trim()).ok())
            .ok_or_else(|| {
                WebhookError::Unauthorized("X-Keyward-Signature must be sha256=<hex>".into())
            })?;
        let ts = ts_raw.unwrap_or_default().trim().as_bytes();
        if hmac_matches::<Hmac<Sha256>>(&self.secrets, &[ts, b".", req.body], &tag) {
            Ok(())
        } else {
            Err(WebhookError::Forbidden("signature does not match".into()))
        }
    }
}

#[derive(Deserialize)]
struct Payload {
    id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    text: Option<String>,
    received_at: Option<String>,
}

impl Gateway for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }

    fn receive(&self, req: &WebhookRequest<'_>) -> Result<Vec<Item>, WebhookError> {
        req.require_content_type(&["application/json"])?;
        self.authenticate(req)?;
        // Invalid UTF-8 is replaced, not refused: the message still counts.
        let body = String::from_utf8_lossy(req.body);
        let raw: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
            WebhookError::BadRequest(format!("invalid JSON: {}", clip(&e.to_string(), 120)))
        })?;
        let payload = Payload::deserialize(&raw).map_err(|e| {
            WebhookError::BadRequest(format!("unexpected JSON: {}", clip(&e.to_string(), 120)))
        })?;
        let need = |v: Option<String>, name: &str| {
            v.filter(|s| !s.is_empty())
                .ok_or_else(|| WebhookError::BadRequest(format!("missing field `{name}`")))
        };
        let sent_at = match payload.received_at.as_deref() {
            None | Some("") => None,
            Some(t) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|_| {
                        WebhookError::BadRequest("`received_at` is not an RFC 3339 time".into())
                    })?
                    .with_timezone(&Utc),
            ),
        };
        Ok(vec![Item::Sms(ReceivedSms {
            id: need(payload.id, "id")?,
            from: Origin::Any(need(payload.from, "from")?),
            to: need(payload.to, "to")?,
            // An empty text is still a message (and is answered as unknown).
            text: payload
                .text
                .ok_or_else(|| WebhookError::BadRequest("missing field `text`".into()))?,
            sent_at,
            raw,
            hint: None,
        })])
    }

    fn success(&self, outcomes: &[Outcome]) -> HttpResponse {
        json_success(outcomes)
    }
}

/// Signs a body the way the generic webhook and sender expect; returns the
/// `X-Keyward-Signature` value.
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The generic sender: `POST reply_url` with a signed JSON body
/// (CONTRACT §7) and `Idempotency-Key: <outbox id>`; any 2xx is sent.
pub struct GenericSender {
    url: String,
    secret: Option<Secret>,
}

impl GenericSender {
    /// `None` without a `reply_url`.
    pub fn new(settings: &GenericSettings) -> Option<Self> {
        Some(Self {
            url: settings.reply_url.clone()?,
            secret: settings
                .secret
                .as_ref()
                .and_then(|s| s.all().first().cloned()),
        })
    }
}

impl super::Sender for GenericSender {
    fn request(&self, sms: &super::OutboundSms<'_>, now: DateTime<Utc>) -> Option<super::HttpCall> {
        let body = serde_json::to_vec(&serde_json::json!({
            "id": sms.id,
            "from": sms.from,
            "to": sms.to,
            "text": sms.text,
            "in_reply_to": sms.in_reply_to,
        }))
        .unwrap_or_default();
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("idempotency-key".to_owned(), sms.id.to_owned()),
        ];
        if let Some(secret) = &self.secret {
            let ts = now.timestamp();
            headers.push(("x-keyward-timestamp".to_owned(), ts.to_string()));
            headers.push(("x-keyward-signature".to_owned(), sign(secret, ts, &body)));
        }
        Some(super::HttpCall {
            method: actix_web::http::Method::POST,
            url: self.url.clone(),
            headers,
            body,
        })
    }

    /// CONTRACT §7: the sink dedups on `Idempotency-Key`.
    fn idempotent(&self) -> bool {
        true
    }
}

pub const REGISTRATION: super::Registration = super::Registration {
    name: "generic",
    build: |settings| {
        super::configured(&settings.gateways.generic, |c| {
            Ok(super::Built::new(Generic::new(c), GenericSender::new(c)))
        })
    },
};
