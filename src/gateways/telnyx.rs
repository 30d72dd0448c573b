//! `telnyx`: Telnyx Messaging webhooks (API v2).
//!
//! JSON events; `message.received` carries an inbound message in
//! `data.payload` (`id`, `from.phone_number`, `to[].phone_number`, `text`,
//! `received_at`). Signed with Ed25519: `telnyx-signature-ed25519` (base64)
//! over `<telnyx-timestamp>|<raw body>`, checked with the account's public
//! key; timestamps more than 300 s away are refused. Other event types are
//! acknowledged and ignored here.

use actix_web::HttpResponse;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::Value;

use super::{
    check_timestamp, json_success, Gateway, Item, Origin, Outcome, ReceivedSms, WebhookError,
    WebhookRequest,
};
use crate::config::TelnyxSettings;

pub struct Telnyx {
    key: VerifyingKey,
}

/// The base64 public key from the portal, if it is a valid Ed25519 key.
pub fn parse_public_key(b64: &str) -> Option<VerifyingKey> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    VerifyingKey::from_bytes(&bytes.try_into().ok()?).ok()
}

impl Telnyx {
    /// Refused unless `public_key` is a base64 Ed25519 public key.
    pub fn new(settings: &TelnyxSettings) -> Result<Self, String> {
        let key = parse_public_key(&settings.public_key).ok_or_else(|| {
            "gateways.telnyx.public_key: must be the base64 Ed25519 public key (32 bytes)"
                .to_owned()
        })?;
        Ok(Self { key })
    }

    fn verify(&self, req: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        let signature = req
            .header("telnyx-signature-ed25519")
            .ok_or_else(|| WebhookError::Unauthorized("missing telnyx-signature-ed25519".into()))?;
        let ts = req.header("telnyx-timestamp");
        check_timestamp(ts, req.now, super::REPLAY_WINDOW_SECS)?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| {
                WebhookError::Unauthorized("malformed telnyx-signature-ed25519".into())
            })?;
        let mut message = ts.unwrap_or_default().trim().as_bytes().to_vec();
        message.push(b'|');
        message.extend_from_slice(req.body);
        self.key
            .verify(&message, &signature)
            .map_err(|_| WebhookError::Forbidden("telnyx-signature-ed25519 does not match".into()))
    }
}

impl Gateway for Telnyx {
    fn name(&self) -> &'static str {
        "telnyx"
    }

    fn receive(&self, req: &WebhookRequest<'_>) -> Result<Vec<Item>, WebhookError> {
        req.require_content_type(&["application/json"])?;
        self.verify(req)?;
        let event: Value = serde_json::from_slice(req.body)
            .map_err(|_| WebhookError::BadRequest("invalid JSON".into()))?;
        let data = &event["data"];
        if data["event_type"].as_str() != Some("message.received") {
            return Ok(vec![]);
        }
        let payload = &data["payload"];
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let item = (|| {
            Ok::<_, String>(ReceivedSms {
                id: text(&payload["id"]).ok_or("missing data.payload.id")?,
                from: Origin::Any(
                    text(&payload["from"]["phone_number"])
                        .ok_or("missing data.payload.from.phone_number")?,
                ),
                to: text(&payload["to"][0]["phone_number"])
                    .ok_or("missing data.payload.to[0].phone_number")?,
                text: text(&payload["text"]).ok_or("missing data.payload.text")?,
                sent_at: payload["received_at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc)),
                raw: event.clone(),
                hint: None,
            })
        })();
        Ok(vec![item.map(Item::Sms).unwrap_or_else(Item::Invalid)])
    }

    fn success(&self, outcomes: &[Outcome]) -> HttpResponse {
        json_success(outcomes)
    }

    /// `message.sent` / `message.finalized` events: `payload.id` and the
    /// recipient's `status` (sent, delivered, sending_failed,
    /// delivery_failed, delivery_unconfirmed).
    fn receipts(&self, req: &WebhookRequest<'_>) -> Result<Vec<super::Receipt>, WebhookError> {
        req.require_content_type(&["application/json"])?;
        self.verify(req)?;
        let event: Value = serde_json::from_slice(req.body)
            .map_err(|_| WebhookError::BadRequest("invalid JSON".into()))?;
        let payload = &event["data"]["payload"];
        let Some(id) = payload["id"].as_str() else {
            return Err(WebhookError::BadRequest("missing data.payload.id".into()));
        };
        let status = match payload["to"][0]["status"].as_str().unwrap_or("") {
            "sent" => super::Delivery::Sent,
            "delivered" => super::Delivery::Delivered,
            "delivery_failed" | "delivery_unconfirmed" | "expired" => super::Delivery::Undelivered,
            "sending_failed" => super::Delivery::Failed,
            _ => return Ok(vec![]),
        };
        let error = payload["errors"][0]["title"].as_str().map(str::to_owned);
        Ok(vec![super::Receipt {
            key: super::ReceiptKey::Provider(id.to_owned()),
            status,
            error,
        }])
    }
}

/// Telnyx's Messaging API: `POST /v2/messages` (JSON `from`, `to`, `text`,
/// `webhook_url`) with `Authorization: Bearer <api key>`. Error 40300 means
/// the number sent STOP to Telnyx.
pub struct TelnyxSender {
    url: String,
    auth: String,
    callback: Option<String>,
}

/// Telnyx's error code for a number that opted out.
pub const OPTED_OUT: &str = "40300";

impl TelnyxSender {
    /// `None` without an `api_key`.
    pub fn new(settings: &TelnyxSettings, callback: Option<String>) -> Option<Self> {
        Some(Self {
            url: format!("{}/v2/messages", settings.api_base.trim_end_matches('/')),
            auth: format!("Bearer {}", settings.api_key.as_ref()?.expose()),
            callback,
        })
    }
}

impl super::Sender for TelnyxSender {
    fn request(
        &self,
        sms: &super::OutboundSms<'_>,
        _now: DateTime<Utc>,
    ) -> Option<super::HttpCall> {
        let mut body = serde_json::json!({"from": sms.from, "to": sms.to, "text": sms.text});
        if let Some(cb) = &self.callback {
            body["webhook_url"] = serde_json::json!(cb);
        }
        Some(super::HttpCall::post_json(
            &self.url,
            Some(&self.auth),
            &body,
        ))
    }

    fn outcome(&self, answer: &super::HttpAnswer<'_>) -> super::SendOutcome {
        let json: Value = serde_json::from_slice(answer.body).unwrap_or_default();
        let opted_out = json["errors"]
            .as_array()
            .is_some_and(|errors| errors.iter().any(|e| e["code"].as_str() == Some(OPTED_OUT)));
        if opted_out {
            return super::SendOutcome::OptedOut {
                reason: format!(
                    "telnyx {OPTED_OUT}: {}",
                    json["errors"][0]["title"].as_str().unwrap_or("")
                ),
            };
        }
        super::http_outcome(answer, |_| json["data"]["id"].as_str().map(str::to_owned))
    }
}

registration!(telnyx, |c, callback| super::Built::new(
    Telnyx::new(c).map_err(|e| vec![e])?,
    TelnyxSender::new(c, callback)
));
