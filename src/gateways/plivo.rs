//! `plivo`: Plivo's message URL callback.
//!
//! Form POST (`From`, `To`, `Text`, `MessageUUID`, `Type`…) signed in
//! `X-Plivo-Signature-V3` (base64 HMAC-SHA256 with the auth token; several
//! comma-separated during rotation) over `<url>.<nonce>`, where the nonce
//! is `X-Plivo-Signature-V3-Nonce` and the URL is built as Plivo does: the
//! callback URL without its query, then `?` and its query parameters sorted
//! as `name=value&…`, then (for a POST with a query) `.`, then the POST
//! parameters sorted by name as `namevalue…`.

use actix_web::HttpResponse;
use base64::Engine;
use hmac::Hmac;
use sha2::Sha256;

use super::{
    fields_json, hmac_matches, json_success, required, Gateway, Item, Origin, Outcome, ReceivedSms,
    WebhookError, WebhookRequest,
};
use crate::config::{PlivoSettings, Secret};

pub struct Plivo {
    tokens: Vec<Secret>,
    public_url: String,
}

impl Plivo {
    pub fn new(settings: &PlivoSettings, public_url: Option<&str>) -> Self {
        Self {
            tokens: settings.auth_token.all().to_vec(),
            public_url: public_url
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned(),
        }
    }

    fn verify(
        &self,
        req: &WebhookRequest<'_>,
        post: &[(String, String)],
    ) -> Result<(), WebhookError> {
        let header = req
            .header("x-plivo-signature-v3")
            .ok_or_else(|| WebhookError::Unauthorized("missing X-Plivo-Signature-V3".into()))?;
        let nonce = req.header("x-plivo-signature-v3-nonce").ok_or_else(|| {
            WebhookError::Unauthorized("missing X-Plivo-Signature-V3-Nonce".into())
        })?;
        let query: Vec<(String, String)> = form_urlencoded::parse(req.query.as_bytes())
            .into_owned()
            .collect();
        let base = signed_url(&format!("{}{}", self.public_url, req.path), &query, post);
        let message = [base.as_bytes(), b".", nonce.as_bytes()];
        let ok = header.split(',').any(|candidate| {
            base64::engine::general_purpose::STANDARD
                .decode(candidate.trim())
                .is_ok_and(|tag| hmac_matches::<Hmac<Sha256>>(&self.tokens, &message, &tag))
        });
        if ok {
            Ok(())
        } else {
            Err(WebhookError::Forbidden(
                "X-Plivo-Signature-V3 does not match".into(),
            ))
        }
    }
}

/// The URL string Plivo signs (see the module documentation).
pub fn signed_url(url: &str, query: &[(String, String)], post: &[(String, String)]) -> String {
    let mut query: Vec<&(String, String)> = query.iter().collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let query = query.join("&");
    let mut base = url.to_owned();
    if !query.is_empty() || !post.is_empty() {
        base.push('?');
        base.push_str(&query);
    }
    if !query.is_empty() && !post.is_empty() {
        base.push('.');
    }
    let mut post: Vec<&(String, String)> = post.iter().collect();
    post.sort();
    for (k, v) in post {
        base.push_str(k);
        base.push_str(v);
    }
    base
}

impl Gateway for Plivo {
    fn name(&self) -> &'static str {
        "plivo"
    }

    fn receive(&self, req: &WebhookRequest<'_>) -> Result<Vec<Item>, WebhookError> {
        let fields = if req.method == actix_web::http::Method::GET {
            self.verify(req, &[])?;
            req.form_fields()
        } else {
            req.require_content_type(&["application/x-www-form-urlencoded"])?;
            let fields = req.form_fields();
            self.verify(req, &fields)?;
            fields
        };
        let item = (|| {
            Ok::<_, String>(ReceivedSms {
                id: required(&fields, "MessageUUID")?.to_owned(),
                from: Origin::International(required(&fields, "From")?.to_owned()),
                to: required(&fields, "To")?.to_owned(),
                text: text(&fields)?,
                sent_at: None,
                raw: fields_json(&fields),
                hint: None,
            })
        })();
        Ok(vec![item.map(Item::Sms).unwrap_or_else(Item::Invalid)])
    }

    fn success(&self, outcomes: &[Outcome]) -> HttpResponse {
        json_success(outcomes)
    }

    /// Message status callbacks: `MessageUUID`, `Status`, `ErrorCode`.
    fn receipts(&self, req: &WebhookRequest<'_>) -> Result<Vec<super::Receipt>, WebhookError> {
        req.require_content_type(&["application/x-www-form-urlencoded"])?;
        let fields = req.form_fields();
        self.verify(req, &fields)?;
        let id = required(&fields, "MessageUUID").map_err(WebhookError::BadRequest)?;
        let status = match super::field(&fields, "Status").unwrap_or("") {
            "sent" => super::Delivery::Sent,
            "delivered" => super::Delivery::Delivered,
            "undelivered" => super::Delivery::Undelivered,
            "failed" | "rejected" => super::Delivery::Failed,
            _ => return Ok(vec![]),
        };
        Ok(vec![super::Receipt {
            key: super::ReceiptKey::Provider(id.to_owned()),
            status,
            error: super::field(&fields, "ErrorCode").map(|c| format!("plivo error {c}")),
        }])
    }
}

/// Plivo's Message API: `POST /v1/Account/{auth_id}/Message/` (JSON `src`,
/// `dst`, `text`, `url` for status callbacks), HTTP Basic with the auth id
/// and token; 202 with `message_uuid`.
pub struct PlivoSender {
    url: String,
    auth: String,
    callback: Option<String>,
}

impl PlivoSender {
    pub fn new(settings: &PlivoSettings, callback: Option<String>) -> Self {
        let token = settings.auth_token.current();
        Self {
            url: format!(
                "{}/v1/Account/{}/Message/",
                settings.api_base.trim_end_matches('/'),
                settings.auth_id
            ),
            auth: super::basic_auth(&settings.auth_id, token),
            callback,
        }
    }
}

impl super::Sender for PlivoSender {
    fn request(
        &self,
        sms: &super::OutboundSms<'_>,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Option<super::HttpCall> {
        let mut body = serde_json::json!({
            "src": sms.from,
            "dst": sms.to.trim_start_matches('+'),
            "text": sms.text,
        });
        if let Some(cb) = &self.callback {
            body["url"] = serde_json::json!(cb);
            body["method"] = serde_json::json!("POST");
        }
        Some(super::HttpCall::post_json(
            &self.url,
            Some(&self.auth),
            &body,
        ))
    }

    fn outcome(&self, answer: &super::HttpAnswer<'_>) -> super::SendOutcome {
        let text = String::from_utf8_lossy(answer.body).to_ascii_lowercase();
        if (400..500).contains(&answer.status) && text.contains("opted out") {
            return super::SendOutcome::OptedOut {
                reason: format!("plivo: {}", super::clip(&text, 200)),
            };
        }
        super::http_outcome(answer, |body| {
            let json: serde_json::Value = serde_json::from_slice(body).ok()?;
            json["message_uuid"][0].as_str().map(str::to_owned)
        })
    }
}

/// The message's text: `Text` for an SMS; an MMS (`Type=mms`) carries it
/// in `Body`, which is empty or absent when it has media only (stored
/// with empty text, like the other gateways' MMS).
fn text(fields: &[(String, String)]) -> Result<String, String> {
    let value = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if super::field(fields, "Type").is_some_and(|t| t.eq_ignore_ascii_case("mms")) {
        return Ok(value("Text")
            .filter(|t| !t.is_empty())
            .or_else(|| value("Body"))
            .unwrap_or_default());
    }
    value("Text").ok_or_else(|| "missing field `Text`".to_owned())
}

pub const REGISTRATION: super::Registration = super::Registration {
    name: "plivo",
    build: |settings| {
        super::configured(&settings.gateways.plivo, |c| {
            let problems = super::auth::url_signing_problems(settings, "plivo", &c.auth_token);
            if !problems.is_empty() {
                return Err(problems);
            }
            let public_url = settings.service.public_url.as_deref();
            let callback = super::status_callback(settings, "plivo");
            Ok(super::Built::new(
                Plivo::new(c, public_url),
                Some(PlivoSender::new(c, callback)),
            ))
        })
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_signed_url_follows_plivos_construction() {
        let post = pairs(&[("To", "3344"), ("From", "6281"), ("Text", "MAU")]);
        assert_eq!(
            signed_url("https://x.com/webhooks/plivo", &[], &post),
            "https://x.com/webhooks/plivo?From6281TextMAUTo3344"
        );
        assert_eq!(
            signed_url("https://x.com/p", &pairs(&[("b", "2"), ("a", "1")]), &post),
            "https://x.com/p?a=1&b=2.From6281TextMAUTo3344"
        );
        assert_eq!(
            signed_url("https://x.com/p", &pairs(&[("a", "1")]), &[]),
            "https://x.com/p?a=1"
        );
        assert_eq!(signed_url("https://x.com/p", &[], &[]), "https://x.com/p");
    }
}
