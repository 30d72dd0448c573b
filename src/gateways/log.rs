//! `log`: the sender that only writes replies to the log (the built-in
//! default, and useful while setting up).

use chrono::{DateTime, Utc};

use super::{HttpCall, OutboundSms, Sender};

pub struct LogSender;

impl Sender for LogSender {
    fn request(&self, _sms: &OutboundSms<'_>, _now: DateTime<Utc>) -> Option<HttpCall> {
        None
    }

    /// Nothing reaches anyone: writing the line again harms nobody.
    fn idempotent(&self) -> bool {
        true
    }
}

pub const REGISTRATION: super::Registration = super::Registration {
    name: "log",
    build: |_| {
        Ok(super::Built {
            gateway: None,
            sender: Some(std::sync::Arc::new(LogSender)),
        })
    },
};
