//! `kannel`: Kannel's smsbox `sms-service` calling keyward's URL.
//!
//! Configure the service with this `get-url` (escape codes: sender `%p`,
//! receiver `%P`, text `%a`, message id `%I`, time `%T`, coding `%c`,
//! charset `%C`), and `max-messages = 0` / `omit-empty = true` so that
//! Kannel does not send keyword's HTTP answer as an SMS of its own:
//!
//! ```text
//! get-url = "http://127.0.0.1:8080/webhooks/kannel?token=SECRET&from=%p&to=%P&text=%a&id=%I&time=%T&coding=%c&charset=%C"
//! ```
//!
//! The text arrives URL-encoded in the message's own charset (UTF-16BE for
//! UCS-2 messages), so it is percent-decoded to bytes and then decoded by
//! `charset` or, failing that, `coding`. Kannel does not sign requests: the
//! `token` (or an HTTP Basic password) must match a configured secret.

use actix_web::HttpResponse;
use chrono::{TimeZone, Utc};

use super::charset::{self, Coding};
use super::{
    check_shared_secret, Gateway, Item, Origin, Outcome, RawForm, ReceivedSms, WebhookError,
    WebhookRequest,
};
use crate::config::{KannelSettings, Secret};

pub struct Kannel {
    secrets: Vec<Secret>,
}

impl Kannel {
    pub fn new(settings: &KannelSettings) -> Self {
        Self {
            secrets: settings.secret.all().to_vec(),
        }
    }
}

impl Gateway for Kannel {
    fn name(&self) -> &'static str {
        "kannel"
    }

    fn receive(&self, req: &WebhookRequest<'_>) -> Result<Vec<Item>, WebhookError> {
        check_shared_secret(req, &self.secrets)?;
        let form = RawForm::of(req);
        let text =
            form.bytes("text").map(
                |bytes| match form.text("charset").filter(|c| !c.is_empty()) {
                    Some(cs) => charset::decode_charset(bytes, &cs),
                    None => match form.text("coding").as_deref() {
                        Some("2") => charset::decode(bytes, Coding::Ucs2),
                        _ => charset::decode(bytes, Coding::Other),
                    },
                },
            );
        let item = (|| {
            Ok::<_, String>(ReceivedSms {
                id: form.required("id")?,
                from: Origin::Any(form.required("from")?),
                to: form.required("to")?,
                text: text.clone().ok_or("missing field `text`")?,
                sent_at: form
                    .text("time")
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .and_then(|t| Utc.timestamp_opt(t, 0).single()),
                raw: form.evidence("text", text.as_deref()),
                hint: None,
            })
        })();
        Ok(vec![item.map(Item::Sms).unwrap_or_else(Item::Invalid)])
    }

    /// An empty body: with `omit-empty`, Kannel sends nothing back itself.
    fn success(&self, _outcomes: &[Outcome]) -> HttpResponse {
        HttpResponse::Ok().content_type("text/plain").finish()
    }

    /// `dlr-url` callbacks, as the kannel sender asks for them:
    /// `?token=…&id=<outbox id>&type=%d`; type 1 delivered, 2 failed on
    /// the handset, 8 accepted by the SMSC, 16 rejected by it.
    fn receipts(&self, req: &WebhookRequest<'_>) -> Result<Vec<super::Receipt>, WebhookError> {
        check_shared_secret(req, &self.secrets)?;
        let fields = req.form_fields();
        let id = super::field(&fields, "id")
            .ok_or_else(|| WebhookError::BadRequest("missing field `id`".into()))?;
        let status = match super::field(&fields, "type").unwrap_or("") {
            "1" => super::Delivery::Delivered,
            "2" => super::Delivery::Undelivered,
            "8" => super::Delivery::Sent,
            "16" => super::Delivery::Failed,
            _ => return Ok(vec![]),
        };
        Ok(vec![super::Receipt {
            key: super::ReceiptKey::Outbox(id.to_owned()),
            status,
            error: None,
        }])
    }
}

/// Kannel's smsbox `sendsms`: GET with `username`, `password`, `from`,
/// `to`, `text`, `charset=UTF-8` and, for texts outside GSM-7, `coding=2`
/// (UCS-2); `dlr-mask=31` with a `dlr-url` carrying the outbox id, so
/// delivery reports come back to `/webhooks/kannel/status`. Kannel answers
/// 202 `0: Accepted for delivery`.
pub struct KannelSender {
    url: String,
    username: String,
    password: String,
    token: String,
    callback: Option<String>,
}

/// Every delivery report: delivered, failed, buffered, submitted, rejected.
const DLR_MASK: &str = "31";

impl KannelSender {
    /// `None` without a `sendsms_url`.
    pub fn new(settings: &KannelSettings, callback: Option<String>) -> Option<Self> {
        Some(Self {
            url: settings.sendsms_url.clone()?,
            username: settings.username.clone().unwrap_or_default(),
            password: settings
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default(),
            token: settings.secret.current().to_owned(),
            callback,
        })
    }
}

impl super::Sender for KannelSender {
    fn request(
        &self,
        sms: &super::OutboundSms<'_>,
        _now: chrono::DateTime<Utc>,
    ) -> Option<super::HttpCall> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("username", &self.username)
            .append_pair("password", &self.password)
            .append_pair("from", sms.from)
            .append_pair("to", sms.to)
            .append_pair("text", sms.text)
            .append_pair("charset", "UTF-8");
        if !super::is_gsm7(sms.text) {
            query.append_pair("coding", "2");
        }
        if let Some(cb) = &self.callback {
            // Kannel fills %d (type) and %T (time) when it calls back.
            let dlr_url = format!("{cb}?token={}&id={}&type=%d&time=%T", self.token, sms.id);
            query
                .append_pair("dlr-mask", DLR_MASK)
                .append_pair("dlr-url", &dlr_url);
        }
        let separator = if self.url.contains('?') { '&' } else { '?' };
        Some(super::HttpCall {
            method: actix_web::http::Method::GET,
            url: format!("{}{separator}{}", self.url, query.finish()),
            headers: vec![],
            body: vec![],
        })
    }
}

registration!(kannel, |c, callback| super::Built::new(
    Kannel::new(c),
    KannelSender::new(c, callback)
));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_forms_keep_bytes_that_are_not_utf8() {
        let form = RawForm::parse(b"text=%04%21%04%22&from=%2B62812&x");
        assert_eq!(form.bytes("text"), Some(&[0x04, 0x21, 0x04, 0x22][..]));
        assert_eq!(form.text("from").as_deref(), Some("+62812"));
        assert_eq!(form.bytes("x"), Some(&[][..]));
        assert!(form.required("x").is_err());
        assert_eq!(RawForm::parse(b"a=b+c").text("a").as_deref(), Some("b c"));
    }
}
