//! `vonage`: Vonage (Nexmo) SMS API inbound messages.
//!
//! GET or POST (form or JSON) with `msisdn` (international, no `+`), `to`,
//! `messageId`, `text`, `type`, `message-timestamp` and, for a part of a
//! long message, `concat-ref`, `concat-total`, `concat-part`. Signed
//! webhooks add `timestamp`, `nonce` and `sig`: over every other parameter,
//! sorted by name, as `&name=value` (with `&` and `=` in values replaced by
//! `_`), either MD5 of that followed by the signature secret (`md5hash`) or
//! an HMAC keyed by it (`md5`, `sha1`, `sha256`, `sha512`), in hex.

use actix_web::HttpResponse;
use chrono::{NaiveDateTime, TimeZone, Utc};
use hmac::Hmac;
use md5::{Digest, Md5};

use super::{
    check_timestamp, field, fields_json, hmac_matches, required, secret_eq, Gateway, Item, Origin,
    Outcome, Part, ReceivedSms, WebhookError, WebhookRequest,
};
use crate::config::{Secret, VonageSettings, VonageSignatureMethod};

pub struct Vonage {
    secrets: Vec<Secret>,
    method: VonageSignatureMethod,
}

impl Vonage {
    pub fn new(settings: &VonageSettings) -> Self {
        Self {
            secrets: settings.signature_secret.all().to_vec(),
            method: settings.signature_method,
        }
    }

    fn verify(
        &self,
        req: &WebhookRequest<'_>,
        params: &[(String, String)],
    ) -> Result<(), WebhookError> {
        let sig = field(params, "sig").ok_or_else(|| {
            WebhookError::Unauthorized("missing sig (signed webhooks required)".into())
        })?;
        check_timestamp(
            field(params, "timestamp"),
            req.now,
            super::REPLAY_WINDOW_SECS,
        )?;
        let tag = hex::decode(sig.trim().to_ascii_lowercase())
            .map_err(|_| WebhookError::Unauthorized("sig is not hex".into()))?;
        let data = signed_data(params);
        let ok = match self.method {
            VonageSignatureMethod::Md5hash => self.secrets.iter().any(|secret| {
                let mut md5 = Md5::new();
                md5.update(data.as_bytes());
                md5.update(secret.expose().as_bytes());
                secret_eq(&md5.finalize(), &tag)
            }),
            VonageSignatureMethod::Md5 => {
                hmac_matches::<Hmac<Md5>>(&self.secrets, &[data.as_bytes()], &tag)
            }
            VonageSignatureMethod::Sha1 => {
                hmac_matches::<Hmac<sha1::Sha1>>(&self.secrets, &[data.as_bytes()], &tag)
            }
            VonageSignatureMethod::Sha256 => {
                hmac_matches::<Hmac<sha2::Sha256>>(&self.secrets, &[data.as_bytes()], &tag)
            }
            VonageSignatureMethod::Sha512 => {
                hmac_matches::<Hmac<sha2::Sha512>>(&self.secrets, &[data.as_bytes()], &tag)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(WebhookError::Forbidden("sig does not match".into()))
        }
    }
}

/// `&name=value` for every parameter but `sig`, sorted by name.
pub fn signed_data(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "sig").collect();
    sorted.sort();
    let mut data = String::new();
    for (k, v) in sorted {
        data.push('&');
        data.push_str(k);
        data.push('=');
        data.push_str(&v.replace(['&', '='], "_"));
    }
    data
}

impl Gateway for Vonage {
    fn name(&self) -> &'static str {
        "vonage"
    }

    fn receive(&self, req: &WebhookRequest<'_>) -> Result<Vec<Item>, WebhookError> {
        // Saving the webhook URL in Vonage's dashboard checks it with a
        // bare GET: answered 200, nothing stored.
        if req.method == actix_web::http::Method::GET && req.query.trim().is_empty() {
            return Ok(vec![]);
        }
        let params = if req.method == actix_web::http::Method::GET {
            req.form_fields()
        } else {
            match req.content_type().as_str() {
                "application/x-www-form-urlencoded" => req.form_fields(),
                "application/json" => super::json_fields(req.body)?,
                other => {
                    return Err(WebhookError::UnsupportedMediaType(format!(
                        "expected a form or JSON, got `{}`",
                        super::clip(other, 64)
                    )))
                }
            }
        };
        self.verify(req, &params)?;
        Ok(vec![read(&params).unwrap_or_else(Item::Invalid)])
    }

    fn success(&self, _outcomes: &[Outcome]) -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    /// Delivery receipts: `messageId`, `status` (delivered, expired,
    /// failed, rejected, accepted, buffered…), `err-code`; signed like
    /// inbound messages.
    fn receipts(&self, req: &WebhookRequest<'_>) -> Result<Vec<super::Receipt>, WebhookError> {
        let params = if req.method == actix_web::http::Method::GET {
            req.form_fields()
        } else if req.content_type() == "application/json" {
            super::json_fields(req.body)?
        } else {
            req.form_fields()
        };
        self.verify(req, &params)?;
        let id = field(&params, "messageId")
            .ok_or_else(|| WebhookError::BadRequest("missing field `messageId`".into()))?;
        let status = match field(&params, "status").unwrap_or("") {
            "delivered" => super::Delivery::Delivered,
            "expired" => super::Delivery::Undelivered,
            "failed" | "rejected" => super::Delivery::Failed,
            "accepted" => super::Delivery::Sent,
            _ => return Ok(vec![]),
        };
        Ok(vec![super::Receipt {
            key: super::ReceiptKey::Provider(id.to_owned()),
            status,
            error: field(&params, "err-code")
                .filter(|c| *c != "0")
                .map(|c| format!("vonage err-code {c}")),
        }])
    }
}

fn read(params: &[(String, String)]) -> Result<Item, String> {
    let sent_at = field(params, "message-timestamp")
        .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").ok())
        .map(|t| Utc.from_utc_datetime(&t));
    let text = match field(params, "type") {
        // Binary messages (ringtones, WAP push) carry no text.
        Some("binary") => String::new(),
        _ => params
            .iter()
            .find(|(k, _)| k == "text")
            .map(|(_, v)| v.clone())
            .ok_or("missing field `text`")?,
    };
    let sms = ReceivedSms {
        id: required(params, "messageId")?.to_owned(),
        from: Origin::International(required(params, "msisdn")?.to_owned()),
        to: required(params, "to")?.to_owned(),
        text,
        sent_at,
        raw: fields_json(params),
        hint: None,
    };
    let is_part = field(params, "concat").is_some_and(|c| c == "true")
        || field(params, "concat-ref").is_some();
    if !is_part {
        return Ok(Item::Sms(sms));
    }
    let number = |name: &str| -> Result<i16, String> {
        required(params, name)?
            .parse::<i16>()
            .ok()
            .filter(|n| (1..=255).contains(n))
            .ok_or_else(|| format!("`{name}` must be a number from 1 to 255"))
    };
    let (total, part) = (number("concat-total")?, number("concat-part")?);
    if part > total {
        return Err("`concat-part` is greater than `concat-total`".into());
    }
    let reference = required(params, "concat-ref")?;
    if reference.len() > 64 {
        return Err("`concat-ref` is longer than 64 characters".into());
    }
    Ok(Item::Part(Part {
        reference: reference.to_owned(),
        total,
        number: part,
        sms,
    }))
}

/// Vonage's SMS API: `POST /sms/json` (form) with `api_key`, `api_secret`,
/// `from`, `to` (no `+`), `text`, `type=unicode` when the text is not
/// GSM-7, `client-ref` (the outbox id) and `callback`. Vonage answers 200
/// with a status per message: 0 sent; 1 throttled, 5 internal error, 9 out
/// of credit, 10 too many binds are retried; 7 "number barred" means the
/// number is on the barred list (it opted out); others are refused.
pub struct VonageSender {
    url: String,
    api_key: String,
    api_secret: Secret,
    callback: Option<String>,
}

impl VonageSender {
    /// `None` without an `api_secret`.
    pub fn new(settings: &VonageSettings, callback: Option<String>) -> Option<Self> {
        Some(Self {
            url: format!("{}/sms/json", settings.api_base.trim_end_matches('/')),
            api_key: settings.api_key.clone(),
            api_secret: settings.api_secret.clone()?,
            callback,
        })
    }
}

impl super::Sender for VonageSender {
    fn request(
        &self,
        sms: &super::OutboundSms<'_>,
        _now: chrono::DateTime<Utc>,
    ) -> Option<super::HttpCall> {
        let mut form = vec![
            ("api_key", self.api_key.as_str()),
            ("api_secret", self.api_secret.expose()),
            ("from", sms.from),
            ("to", sms.to.trim_start_matches('+')),
            ("text", sms.text),
            ("client-ref", sms.id),
        ];
        if !super::is_gsm7(sms.text) {
            form.push(("type", "unicode"));
        }
        if let Some(cb) = &self.callback {
            form.push(("callback", cb));
        }
        Some(super::HttpCall::post_form(&self.url, None, &form))
    }

    fn outcome(&self, answer: &super::HttpAnswer<'_>) -> super::SendOutcome {
        if !(200..300).contains(&answer.status) {
            return super::http_outcome(answer, |_| None);
        }
        let json: serde_json::Value = serde_json::from_slice(answer.body).unwrap_or_default();
        let first = &json["messages"][0];
        let status = first["status"].as_str().unwrap_or("");
        let reason = || {
            format!(
                "vonage status {status}: {}",
                first["error-text"].as_str().unwrap_or("")
            )
        };
        match status {
            "0" => super::SendOutcome::Sent {
                provider_id: first["message-id"].as_str().map(str::to_owned),
            },
            // throttled, internal error, out of credit, too many binds: later
            "1" | "5" | "9" | "10" => super::SendOutcome::Retry {
                reason: reason(),
                after: None,
            },
            "7" => super::SendOutcome::OptedOut { reason: reason() },
            _ => super::SendOutcome::Failed { reason: reason() },
        }
    }
}

registration!(vonage, |c, callback| super::Built::new(
    Vonage::new(c),
    VonageSender::new(c, callback)
));

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn signed_data_sorts_and_neutralises_separators() {
        let p = params(&[("text", "a=b&c"), ("msisdn", "447700900000"), ("sig", "x")]);
        assert_eq!(signed_data(&p), "&msisdn=447700900000&text=a_b_c");
    }

    #[test]
    fn a_part_is_read_with_its_reference() {
        let p = params(&[
            ("msisdn", "6281234567890"),
            ("to", "3344"),
            ("messageId", "m1"),
            ("text", "MA"),
            ("concat", "true"),
            ("concat-ref", "7"),
            ("concat-total", "2"),
            ("concat-part", "1"),
        ]);
        match read(&p).unwrap() {
            Item::Part(part) => {
                assert_eq!(
                    (part.reference.as_str(), part.total, part.number),
                    ("7", 2, 1)
                );
                assert_eq!(part.sms.text, "MA");
            }
            other => panic!("{other:?}"),
        }
        let mut bad = p.clone();
        bad.retain(|(k, _)| k != "concat-part");
        assert!(read(&bad).is_err());
        let mut long_ref = p.clone();
        long_ref
            .iter_mut()
            .find(|(k, _)| k == "concat-ref")
            .unwrap()
            .1 = "r".repeat(65);
        assert!(
            read(&long_ref).is_err(),
            "refused here, not by a database CHECK"
        );
    }
}
