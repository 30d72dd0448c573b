//! `infobip`: Infobip's inbound SMS forwarding (JSON).
//!
//! `{"results": [{"messageId", "from", "to", "text", "receivedAt", …}],
//! "messageCount", "pendingMessageCount"}` — several messages may come in
//! one request; each is stored and processed on its own, and a bad item
//! does not drop the others. Infobip does not sign: the request carries a
//! shared secret (HTTP Basic password or `?token=`).

use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    check_shared_secret, json_success, Gateway, Item, Origin, Outcome, ReceivedSms, WebhookError,
    WebhookRequest,
};
use crate::config::{InfobipSettings, Secret};

pub struct Infobip {
    secrets: Vec<Secret>,
}

impl Infobip {
    pub fn new(settings: &InfobipSettings) -> Self {
        Self {
            secrets: settings.secret.all().to_vec(),
        }
    }
}

/// Infobip writes `2019-11-09T16:00:00.000+0000` (no colon in the offset).
fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(t))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn read(result: &Value) -> Result<ReceivedSms, String> {
    let text = |name: &str| {
        result[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("missing field `{name}`"))
    };
    Ok(ReceivedSms {
        id: text("messageId")?,
        from: Origin::International(text("from")?),
        to: text("to")?,
        // A message with media only (MMS) has no `text`: stored with an
        // empty one (read as unknown, so it changes nothing).
        text: match result.get("text") {
            None | Some(Value::Null) => String::new(),
            _ => text("text")?,
        },
        sent_at: result["receivedAt"].as_str().and_then(parse_time),
        raw: result.clone(),
        hint: None,
    })
}

impl Infobip {
    /// The authenticated `results` array that messages and delivery
    /// reports both come in.
    fn results(&self, req: &WebhookRequest<'_>) -> Result<Vec<Value>, WebhookError> {
        req.require_content_type(&["application/json"])?;
        check_shared_secret(req, &self.secrets)?;
        let mut body: Value = serde_json::from_slice(req.body)
            .map_err(|_| WebhookError::BadRequest("invalid JSON".into()))?;
        // `get_mut`, not `body["results"]`: indexing a non-object panics.
        match body.get_mut("results").map(Value::take) {
            Some(Value::Array(results)) => Ok(results),
            _ => Err(WebhookError::BadRequest("missing `results` array".into())),
        }
    }
}

impl Gateway for Infobip {
    fn name(&self) -> &'static str {
        "infobip"
    }

    fn receive(&self, req: &WebhookRequest<'_>) -> Result<Vec<Item>, WebhookError> {
        Ok(self
            .results(req)?
            .iter()
            .map(|r| read(r).map(Item::Sms).unwrap_or_else(Item::Invalid))
            .collect())
    }

    fn success(&self, outcomes: &[Outcome]) -> HttpResponse {
        json_success(outcomes)
    }

    /// Delivery reports: `{"results": [{"messageId", "status": {"groupName"},
    /// "error": {"name"}}]}`, authenticated by the shared secret.
    fn receipts(&self, req: &WebhookRequest<'_>) -> Result<Vec<super::Receipt>, WebhookError> {
        Ok(self
            .results(req)?
            .iter()
            .filter_map(|r| {
                let status = match r["status"]["groupName"].as_str()? {
                    // Handed to the operator, not yet to the handset: a
                    // later report says what became of it.
                    "DELIVERED" if r["status"]["name"] == "DELIVERED_TO_OPERATOR" => {
                        super::Delivery::Sent
                    }
                    "DELIVERED" => super::Delivery::Delivered,
                    "UNDELIVERABLE" | "EXPIRED" => super::Delivery::Undelivered,
                    "REJECTED" => super::Delivery::Failed,
                    _ => return None,
                };
                Some(super::Receipt {
                    key: super::ReceiptKey::Provider(r["messageId"].as_str()?.to_owned()),
                    status,
                    error: r["error"]["name"]
                        .as_str()
                        .filter(|n| *n != "NO_ERROR")
                        .map(str::to_owned),
                })
            })
            .collect())
    }
}

/// Infobip's SMS API: `POST /sms/2/text/advanced` with
/// `Authorization: App <api key>`; `notifyUrl` receives delivery reports.
pub struct InfobipSender {
    url: String,
    auth: String,
    callback: Option<String>,
}

impl InfobipSender {
    /// `None` without an `api_key`.
    pub fn new(settings: &InfobipSettings, callback: Option<String>) -> Option<Self> {
        Some(Self {
            url: format!(
                "{}/sms/2/text/advanced",
                settings.api_base.trim_end_matches('/')
            ),
            auth: format!("App {}", settings.api_key.as_ref()?.expose()),
            callback,
        })
    }
}

impl super::Sender for InfobipSender {
    fn request(
        &self,
        sms: &super::OutboundSms<'_>,
        _now: DateTime<Utc>,
    ) -> Option<super::HttpCall> {
        let mut message = serde_json::json!({
            "from": sms.from,
            "destinations": [{"to": sms.to.trim_start_matches('+'), "messageId": sms.id}],
            "text": sms.text,
        });
        if let Some(cb) = &self.callback {
            message["notifyUrl"] = serde_json::json!(cb);
            message["notifyContentType"] = serde_json::json!("application/json");
        }
        Some(super::HttpCall::post_json(
            &self.url,
            Some(&self.auth),
            &serde_json::json!({"messages": [message]}),
        ))
    }

    fn outcome(&self, answer: &super::HttpAnswer<'_>) -> super::SendOutcome {
        super::http_outcome(answer, |body| {
            let json: Value = serde_json::from_slice(body).ok()?;
            json["messages"][0]["messageId"].as_str().map(str::to_owned)
        })
    }
}

registration!(infobip, |c, callback| super::Built::new(
    Infobip::new(c),
    InfobipSender::new(c, callback)
));

#[cfg(test)]
mod tests {
    #[test]
    fn infobip_times_parse_with_or_without_a_colon_in_the_offset() {
        assert!(super::parse_time("2019-11-09T16:00:00.000+0000").is_some());
        assert!(super::parse_time("2019-11-09T16:00:00+00:00").is_some());
        assert!(super::parse_time("yesterday").is_none());
    }
}
