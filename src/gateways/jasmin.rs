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
use super::kannel::raw_pairs;
use super::{
    check_shared_secret, fields_json, Gateway, Item, Origin, ReceivedSms, WebhookError,
    WebhookRequest,
};
use crate::config::{JasminSettings, Secret};
use crate::inbound::Outcome;

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
        let source = if req.method == actix_web::http::Method::GET {
            req.query.as_bytes()
        } else {
            req.require_content_type(&["application/x-www-form-urlencoded"])?;
            req.body
        };
        let pairs = raw_pairs(source);
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_slice())
        };
        let get_str = |name: &str| get(name).map(|v| String::from_utf8_lossy(v).into_owned());
        let coding = Coding::from_smpp(&get_str("coding").unwrap_or_default());
        // `binary` is exact; `content` is what Jasmin made of it.
        let bytes = get_str("binary")
            .and_then(|hex_text| hex::decode(hex_text.trim()).ok())
            .or_else(|| get("content").map(<[u8]>::to_vec));
        let text = bytes.map(|b| charset::decode(&b, coding));
        let mut evidence: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k != "content")
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        if let Some(t) = &text {
            evidence.push(("content".into(), t.clone()));
        }
        let item = (|| {
            let need = |name: &str| {
                get_str(name)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("missing field `{name}`"))
            };
            Ok::<_, String>(ReceivedSms {
                id: need("id")?,
                from: Origin::Any(need("from")?),
                to: need("to")?,
                text: text.clone().ok_or("missing field `content`")?,
                sent_at: None,
                raw: fields_json(&evidence),
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
}
