//! `twilio`: Twilio's Messaging webhook.
//!
//! Form POST (`MessageSid`, `AccountSid`, `From`, `To`, `Body`,
//! `OptOutType`…) signed in `X-Twilio-Signature`: base64 HMAC-SHA1 with the
//! auth token over the full URL Twilio called followed by every POST
//! parameter, sorted by name, as name and value concatenated. JSON
//! webhooks instead carry `bodySHA256` (hex SHA-256 of the body) in the
//! query string, and the signature covers the URL alone. Twilio may or may
//! not include the default port in the URL it signs, so both are tried.
//! Answer: empty TwiML; replies go out through the outbox, not TwiML.

use actix_web::HttpResponse;
use base64::Engine;
use hmac::Hmac;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{
    field, fields_json, hmac_matches, required, secret_eq, Gateway, Item, KeywordHint, Origin,
    Outcome, ReceivedSms, WebhookError, WebhookRequest,
};
use crate::config::{Secret, TwilioSettings};

pub struct Twilio {
    account_sid: String,
    tokens: Vec<Secret>,
    /// `service.public_url`, without a trailing slash.
    public_url: String,
}

impl Twilio {
    pub fn new(settings: &TwilioSettings, public_url: Option<&str>) -> Self {
        Self {
            account_sid: settings.account_sid.clone(),
            tokens: settings.auth_token.all().to_vec(),
            public_url: public_url
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned(),
        }
    }

    fn url(&self, req: &WebhookRequest<'_>) -> String {
        let mut url = format!("{}{}", self.public_url, req.path);
        if !req.query.is_empty() {
            url.push('?');
            url.push_str(req.query);
        }
        url
    }

    fn verify(
        &self,
        req: &WebhookRequest<'_>,
        params: &[(String, String)],
    ) -> Result<(), WebhookError> {
        let signature = req
            .header("x-twilio-signature")
            .ok_or_else(|| WebhookError::Unauthorized("missing X-Twilio-Signature".into()))?;
        let tag = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| WebhookError::Unauthorized("X-Twilio-Signature is not base64".into()))?;
        let url = self.url(req);
        let ok = url_variants(&url).iter().any(|candidate| {
            let data = signed_data(candidate, params);
            hmac_matches::<Hmac<Sha1>>(&self.tokens, &[data.as_bytes()], &tag)
        });
        if ok {
            Ok(())
        } else {
            Err(WebhookError::Forbidden(
                "X-Twilio-Signature does not match".into(),
            ))
        }
    }
}

/// The string Twilio signs: the URL, then each parameter's name and value,
/// sorted by name (and by value for repeated names).
pub fn signed_data(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    data
}

/// The URL as given, and with the scheme's default port added or removed.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return variants,
    };
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(host_end);
    let other = match authority.rsplit_once(':') {
        Some((host, port)) if port == default_port => format!("{scheme}://{host}{tail}"),
        Some(_) => return variants,
        None => format!("{scheme}://{authority}:{default_port}{tail}"),
    };
    variants.push(other);
    variants
}

impl Gateway for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn receive(&self, req: &WebhookRequest<'_>) -> Result<Vec<Item>, WebhookError> {
        let fields = match req.content_type().as_str() {
            "application/x-www-form-urlencoded" => {
                let fields = req.form_fields();
                self.verify(req, &fields)?;
                fields
            }
            "application/json" => {
                let query: Vec<(String, String)> = form_urlencoded::parse(req.query.as_bytes())
                    .into_owned()
                    .collect();
                let expected = field(&query, "bodySHA256").ok_or_else(|| {
                    WebhookError::Unauthorized("JSON webhook without bodySHA256".into())
                })?;
                self.verify(req, &[])?;
                let actual = hex::encode(Sha256::digest(req.body));
                if !secret_eq(actual.as_bytes(), expected.to_ascii_lowercase().as_bytes()) {
                    return Err(WebhookError::Forbidden(
                        "bodySHA256 does not match the body".into(),
                    ));
                }
                super::json_fields(req.body)?
            }
            other => {
                return Err(WebhookError::UnsupportedMediaType(format!(
                    "expected application/x-www-form-urlencoded, got `{}`",
                    super::clip(other, 64)
                )))
            }
        };
        if let Some(account) = field(&fields, "AccountSid") {
            if !secret_eq(account.as_bytes(), self.account_sid.as_bytes()) {
                return Err(WebhookError::Forbidden(
                    "AccountSid is not this account".into(),
                ));
            }
        }
        let item = (|| {
            let id = field(&fields, "MessageSid")
                .or_else(|| field(&fields, "SmsSid"))
                .ok_or("missing field `MessageSid`")?;
            // An MMS may carry media and no text: stored with an empty
            // text (read as unknown, so it changes nothing).
            let media = field(&fields, "NumMedia").is_some_and(|n| n.trim() != "0");
            let body = fields
                .iter()
                .find(|(k, _)| k == "Body")
                .map(|(_, v)| v.clone())
                .or_else(|| media.then(String::new))
                .ok_or("missing field `Body`")?;
            Ok::<_, String>(ReceivedSms {
                id: id.to_owned(),
                from: Origin::Any(required(&fields, "From")?.to_owned()),
                to: required(&fields, "To")?.to_owned(),
                text: body,
                sent_at: None,
                raw: fields_json(&fields),
                hint: field(&fields, "OptOutType").and_then(|t| {
                    match t.to_ascii_uppercase().as_str() {
                        "STOP" => Some(KeywordHint::OptOut),
                        "START" => Some(KeywordHint::OptIn),
                        "HELP" => Some(KeywordHint::Help),
                        _ => None,
                    }
                }),
            })
        })();
        Ok(vec![match item {
            Ok(sms) => Item::Sms(sms),
            Err(reason) => Item::Invalid(reason),
        }])
    }

    fn success(&self, _outcomes: &[Outcome]) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("text/xml; charset=utf-8")
            .body(r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#)
    }

    /// Status callbacks (`StatusCallback`): `MessageSid`, `MessageStatus`,
    /// `ErrorCode`, signed like inbound webhooks.
    fn receipts(&self, req: &WebhookRequest<'_>) -> Result<Vec<super::Receipt>, WebhookError> {
        req.require_content_type(&["application/x-www-form-urlencoded"])?;
        let fields = req.form_fields();
        self.verify(req, &fields)?;
        let id = field(&fields, "MessageSid")
            .ok_or_else(|| WebhookError::BadRequest("missing field `MessageSid`".into()))?;
        let status = match field(&fields, "MessageStatus").unwrap_or("") {
            "sent" => super::Delivery::Sent,
            "delivered" | "read" => super::Delivery::Delivered,
            "undelivered" => super::Delivery::Undelivered,
            "failed" => super::Delivery::Failed,
            _ => return Ok(vec![]),
        };
        Ok(vec![super::Receipt {
            key: super::ReceiptKey::Provider(id.to_owned()),
            status,
            error: field(&fields, "ErrorCode").map(|c| format!("twilio error {c}")),
        }])
    }
}

/// Twilio's Messages API: `POST /2010-04-01/Accounts/{sid}/Messages.json`,
/// form `To`, `From`, `Body`, `StatusCallback`, HTTP Basic with the account
/// SID and auth token. Error 21610 means the number replied STOP to Twilio.
pub struct TwilioSender {
    url: String,
    auth: String,
    status_callback: Option<String>,
}

impl TwilioSender {
    pub fn new(settings: &TwilioSettings, status_callback: Option<String>) -> Self {
        let token = settings.auth_token.current();
        Self {
            url: format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                settings.api_base.trim_end_matches('/'),
                settings.account_sid
            ),
            auth: super::basic_auth(&settings.account_sid, token),
            status_callback,
        }
    }
}

/// Twilio's error code for "the number has unsubscribed (replied STOP)".
pub const OPTED_OUT: i64 = 21610;

impl super::Sender for TwilioSender {
    fn request(
        &self,
        sms: &super::OutboundSms<'_>,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Option<super::HttpCall> {
        let mut form = vec![("To", sms.to), ("From", sms.from), ("Body", sms.text)];
        if let Some(cb) = &self.status_callback {
            form.push(("StatusCallback", cb));
        }
        Some(super::HttpCall::post_form(
            &self.url,
            Some(&self.auth),
            &form,
        ))
    }

    fn outcome(&self, answer: &super::HttpAnswer<'_>) -> super::SendOutcome {
        let json: serde_json::Value = serde_json::from_slice(answer.body).unwrap_or_default();
        if json["code"].as_i64() == Some(OPTED_OUT) {
            return super::SendOutcome::OptedOut {
                reason: format!(
                    "twilio {OPTED_OUT}: {}",
                    json["message"].as_str().unwrap_or("")
                ),
            };
        }
        super::http_outcome(answer, |_| json["sid"].as_str().map(str::to_owned))
    }
}

pub const REGISTRATION: super::Registration = super::Registration {
    name: "twilio",
    build: |settings| {
        super::configured(&settings.gateways.twilio, |c| {
            let mut problems = super::auth::url_signing_problems(settings, "twilio", &c.auth_token);
            if !c.account_sid.starts_with("AC") {
                problems.push("gateways.twilio.account_sid: must start with AC".into());
            }
            if !problems.is_empty() {
                return Err(problems);
            }
            let public_url = settings.service.public_url.as_deref();
            let callback = super::status_callback(settings, "twilio");
            Ok(super::Built::new(
                Twilio::new(c, public_url),
                Some(TwilioSender::new(c, callback)),
            ))
        })
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(token: &str, data: &str) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(token.as_bytes()).unwrap();
        mac.update(data.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn twilios_published_test_vector_is_reproduced() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let data = signed_data("https://mycompany.com/myapp.php?foo=1&bar=2", &params);
        assert_eq!(sign("12345", &data), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    }

    #[test]
    fn parameters_are_sorted_by_name_whatever_order_they_came_in() {
        let params = vec![
            ("To".to_string(), "b".to_string()),
            ("Body".to_string(), "a".to_string()),
        ];
        assert_eq!(signed_data("https://x/y", &params), "https://x/yBodyaTob");
    }

    #[test]
    fn the_default_port_is_tried_both_ways() {
        assert_eq!(
            url_variants("https://sms.example.com/webhooks/twilio?a=1"),
            vec![
                "https://sms.example.com/webhooks/twilio?a=1",
                "https://sms.example.com:443/webhooks/twilio?a=1"
            ]
        );
        assert_eq!(
            url_variants("http://h:80/p"),
            vec!["http://h:80/p", "http://h/p"]
        );
        assert_eq!(url_variants("https://h:8443/p"), vec!["https://h:8443/p"]);
    }
}
