//! `jasmin`: Jasmin SMS gateway's HTTP MO delivery.
//!
//! Form POST (or GET) with `id`, `from`, `to`, `origin-connector`,
//! `coding` (SMPP data_coding), `content` and `binary` (the content's bytes
//! in hex). The text is decoded from `binary` by `coding` (GSM 03.38 for 0,
//! UCS-2 for 8, …). Jasmin retries until the answer is exactly
//! `ACK/Jasmin`. Jasmin does not sign: the request carries a shared secret
//! (HTTP Basic password or `?token=` in the configured URL).

use actix_web::HttpResponse;

use super::charset::{self, Coding};
use super::{
    check_shared_secret, Gateway, Item, Origin, Outcome, RawForm, ReceivedSms, WebhookError,
    WebhookRequest,
};
use crate::config::{JasminSettings, Secret};

pub struct Jasmin {
    secrets: Vec<Secret>,
}

impl Jasmin {
    pub fn new(settings: &JasminSettings) -> Self {
        Self {
            secrets: settings.secret.all().to_vec(),
        }
    }
}

impl Gateway for Jasmin {
    fn name(&self) -> &'static str {
        "jasmin"
    }

    fn receive(&self, req: &WebhookRequest<'_>) -> Result<Vec<Item>, WebhookError> {
        check_shared_secret(req, &self.secrets)?;
        if req.method != actix_web::http::Method::GET {
            req.require_content_type(&["application/x-www-form-urlencoded"])?;
        }
        let form = RawForm::of(req);
        let text_of = |name: &str| {
            form.bytes_any_case(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let coding = Coding::from_smpp(&text_of("coding").unwrap_or_default());
        // `binary` is exact; `content` is what Jasmin made of it.
        let bytes = text_of("binary")
            .and_then(|hex_text| hex::decode(hex_text.trim()).ok())
            .or_else(|| form.bytes_any_case("content").map(<[u8]>::to_vec));
        let text = bytes.map(|b| charset::decode(&b, coding));
        let item = (|| {
            Ok::<_, String>(ReceivedSms {
                id: form.required_any_case("id")?,
                from: Origin::Any(form.required_any_case("from")?),
                to: form.required_any_case("to")?,
                text: text.clone().ok_or("missing field `content`")?,
                sent_at: None,
                raw: form.evidence("content", text.as_deref()),
                hint: None,
            })
        })();
        Ok(vec![item.map(Item::Sms).unwrap_or_else(Item::Invalid)])
    }

    fn success(&self, _outcomes: &[Outcome]) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("text/plain")
            .body("ACK/Jasmin")
    }

    /// DLR callbacks (`dlr-url`): form `id` (the message id Jasmin
    /// answered), `message_status` (DELIVRD, UNDELIV, EXPIRED, REJECTD,
    /// ESME_ROK…), `err`. Jasmin wants `ACK/Jasmin` here too.
    fn receipts(&self, req: &WebhookRequest<'_>) -> Result<Vec<super::Receipt>, WebhookError> {
        check_shared_secret(req, &self.secrets)?;
        let fields = req.form_fields();
        let id = super::field(&fields, "id")
            .ok_or_else(|| WebhookError::BadRequest("missing field `id`".into()))?;
        let status = match super::field(&fields, "message_status").unwrap_or("") {
            "DELIVRD" => super::Delivery::Delivered,
            "UNDELIV" | "EXPIRED" | "DELETED" => super::Delivery::Undelivered,
            "REJECTD" => super::Delivery::Failed,
            "ESME_ROK" | "ACCEPTD" | "ENROUTE" => super::Delivery::Sent,
            // A level-1 report of a submit the SMSC refused (ESME_R…).
            s if s.starts_with("ESME_R") => super::Delivery::Failed,
            _ => return Ok(vec![]),
        };
        Ok(vec![super::Receipt {
            key: super::ReceiptKey::Provider(id.to_owned()),
            status,
            error: super::field(&fields, "err")
                .filter(|e| *e != "000")
                .map(|e| format!("jasmin err {e}")),
        }])
    }
}

/// Jasmin's HTTP API: `POST /send` (form `username`, `password`, `to`,
/// `from`, `content`, or `hex-content` with `coding=8` for texts outside
/// GSM-7), `dlr=yes` with `dlr-url` and `dlr-level=3`. Jasmin answers
/// `Success "<message id>"`.
pub struct JasminSender {
    url: String,
    username: String,
    password: String,
    callback: Option<String>,
}

impl JasminSender {
    /// `None` without a username.
    pub fn new(settings: &JasminSettings, callback: Option<String>) -> Option<Self> {
        let token = settings.secret.current().to_owned();
        Some(Self {
            url: format!("{}/send", settings.api_base.trim_end_matches('/')),
            username: settings.username.clone()?,
            password: settings
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default(),
            callback: callback.map(|cb| format!("{cb}?token={token}")),
        })
    }
}

impl super::Sender for JasminSender {
    fn request(
        &self,
        sms: &super::OutboundSms<'_>,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Option<super::HttpCall> {
        let hex_content: String;
        let mut form = vec![
            ("username", self.username.as_str()),
            ("password", self.password.as_str()),
            ("to", sms.to.trim_start_matches('+')),
            ("from", sms.from),
        ];
        if super::is_gsm7(sms.text) {
            form.push(("content", sms.text));
        } else {
            hex_content = hex::encode(
                sms.text
                    .encode_utf16()
                    .flat_map(u16::to_be_bytes)
                    .collect::<Vec<u8>>(),
            );
            form.push(("coding", "8"));
            form.push(("hex-content", &hex_content));
        }
        if let Some(cb) = &self.callback {
            form.extend([
                ("dlr", "yes"),
                ("dlr-url", cb.as_str()),
                ("dlr-level", "3"),
                ("dlr-method", "POST"),
            ]);
        }
        Some(super::HttpCall::post_form(&self.url, None, &form))
    }

    fn outcome(&self, answer: &super::HttpAnswer<'_>) -> super::SendOutcome {
        super::http_outcome(answer, |body| {
            // Success "07033084-5cfd-4812-90a4-e4d24ffb6e3d"
            let text = String::from_utf8_lossy(body);
            text.strip_prefix("Success ")
                .map(|id| id.trim().trim_matches('"').to_owned())
        })
    }
}

registration!(jasmin, |c, callback| super::Built::new(
    Jasmin::new(c),
    JasminSender::new(c, callback)
));
