//! Gateway adapters: one module per SMS gateway, all of the same shape,
//! and the kit they are made from.
//!
//! Each adapter turns its gateway's native webhook request into
//! [`ReceivedSms`] values (authenticating it on the way), reads its
//! delivery reports, renders the success body that gateway expects, and
//! brings the [`Sender`] that sends replies through it. Adapters do no IO:
//! a request goes in, messages or an error come out, so each is driven
//! without a server or a database by the payload tables in
//! `tests/data/gateways/<name>.toml` (one runner, `tests/gateway_payloads.rs`)
//! and by `tests/fuzz.rs`; `tests/api/gateways.rs` runs them over HTTP.
//!
//! The kit: [`request`] (the request, its fields, its items, the answer),
//! [`auth`] (secrets, HMAC, the replay window), [`send`] (the sender and
//! the HTTP call it asks for), and [`REGISTRY`], the one list of gateways.
//! `src/gateways/README.md` is the checklist for adding one.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::HttpResponse;

use crate::config::Settings;

/// The [`Registration`] of a gateway built from its settings section
/// alone (and the URL its delivery reports go to):
/// `registration!(kannel, |c, callback| Built::new(…))`.
macro_rules! registration {
    ($name:ident, |$c:ident, $callback:ident| $built:expr) => {
        pub const REGISTRATION: super::Registration = super::Registration {
            name: stringify!($name),
            build: |settings| {
                super::configured(&settings.gateways.$name, |$c| {
                    let $callback = super::status_callback(settings, stringify!($name));
                    Ok($built)
                })
            },
        };
    };
}

pub mod auth;
pub mod charset;
pub mod generic;
pub mod infobip;
pub mod jasmin;
pub mod kannel;
pub mod log;
pub mod plivo;
pub mod request;
pub mod send;
pub mod telnyx;
pub mod twilio;
pub mod vonage;

pub use auth::{check_shared_secret, check_timestamp, hmac_matches, secret_eq, REPLAY_WINDOW_SECS};
pub use request::*;
pub use send::*;

pub trait Gateway: Send + Sync {
    /// The name in `/webhooks/{name}` and in the database.
    fn name(&self) -> &'static str;
    /// Authenticates the request and reads its messages.
    fn receive(&self, req: &WebhookRequest<'_>) -> Result<Vec<Item>, WebhookError>;
    /// The body this gateway expects when all went well.
    fn success(&self, outcomes: &[Outcome]) -> HttpResponse;
    /// Authenticates a delivery-report callback and reads its receipts.
    fn receipts(&self, _req: &WebhookRequest<'_>) -> Result<Vec<Receipt>, WebhookError> {
        Err(WebhookError::NotFound(format!(
            "{} sends no delivery reports here",
            self.name()
        )))
    }
}

/// Where a delivery report says a reply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the network (not yet on the handset).
    Sent,
    Delivered,
    Undelivered,
    /// Refused by the provider or network.
    Failed,
}

impl Delivery {
    pub const ALL: [Delivery; 4] = [
        Delivery::Sent,
        Delivery::Delivered,
        Delivery::Undelivered,
        Delivery::Failed,
    ];
}

crate::labels_no_display!(Delivery { Sent => "sent", Delivered => "delivered", Undelivered => "undelivered", Failed => "failed" });

/// Which reply a receipt is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptKey {
    /// The provider's own message id (stored when the send was accepted).
    Provider(String),
    /// keyward's outbox id, where the callback URL carries it (Kannel).
    Outbox(String),
}

/// One delivery report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub key: ReceiptKey,
    pub status: Delivery,
    pub error: Option<String>,
}

/// What one gateway module contributes: its name, and how its webhook
/// adapter and its sender are built from the settings.
pub struct Registration {
    /// The name in `/webhooks/{name}`, in `reply_via` and in the database.
    pub name: &'static str,
    /// Builds what the settings configure of this gateway (nothing, when
    /// its section is absent), or says what is wrong with them, one line
    /// per problem.
    pub build: fn(&Settings) -> Result<Built, Vec<String>>,
}

/// A gateway as configured: its webhook adapter and its sender, each if
/// the settings give what it needs.
#[derive(Default)]
pub struct Built {
    pub gateway: Option<Arc<dyn Gateway>>,
    pub sender: Option<Arc<dyn Sender>>,
}

impl Built {
    pub fn new(gateway: impl Gateway + 'static, sender: Option<impl Sender + 'static>) -> Self {
        Self {
            gateway: Some(Arc::new(gateway)),
            sender: sender.map(|s| Arc::new(s) as Arc<dyn Sender>),
        }
    }
}

/// `build` of a gateway configured by `section`: nothing when the section
/// is absent.
pub fn configured<T>(
    section: &Option<T>,
    build: impl FnOnce(&T) -> Result<Built, Vec<String>>,
) -> Result<Built, Vec<String>> {
    section.as_ref().map_or_else(|| Ok(Built::default()), build)
}

/// Every gateway keyward knows, in the order `check-config` reports them.
pub const REGISTRY: &[Registration] = &[
    generic::REGISTRATION,
    twilio::REGISTRATION,
    vonage::REGISTRATION,
    plivo::REGISTRATION,
    telnyx::REGISTRATION,
    infobip::REGISTRATION,
    kannel::REGISTRATION,
    jasmin::REGISTRATION,
    log::REGISTRATION,
];

/// The names of [`REGISTRY`].
pub fn names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|r| r.name)
}

/// Where a gateway sends its delivery reports for replies sent through it.
pub fn status_callback(settings: &Settings, gateway: &str) -> Option<String> {
    settings
        .service
        .public_url
        .as_deref()
        .map(|u| format!("{}/webhooks/{gateway}/status", u.trim_end_matches('/')))
}

/// Builds every registered gateway; every problem of every one at once.
fn build_all(settings: &Settings) -> Result<Vec<(&'static str, Built)>, Vec<String>> {
    let mut built = Vec::new();
    let mut problems = Vec::new();
    for r in REGISTRY {
        match (r.build)(settings) {
            Ok(b) => built.push((r.name, b)),
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(built)
    } else {
        Err(problems)
    }
}

/// The configured gateways, by name.
#[derive(Clone, Default)]
pub struct Gateways {
    by_name: HashMap<&'static str, Arc<dyn Gateway>>,
}

impl Gateways {
    pub fn from_settings(settings: &Settings) -> Result<Self, Vec<String>> {
        let by_name = build_all(settings)?
            .into_iter()
            .filter_map(|(name, b)| Some((name, b.gateway?)))
            .collect();
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Gateway>> {
        self.by_name.get(name)
    }
}

/// The configured senders, by name (`log` always).
#[derive(Clone)]
pub struct Senders {
    by_name: HashMap<&'static str, Arc<dyn Sender>>,
}

impl Senders {
    pub fn from_settings(settings: &Settings) -> Result<Self, Vec<String>> {
        let by_name = build_all(settings)?
            .into_iter()
            .filter_map(|(name, b)| Some((name, b.sender?)))
            .collect();
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Sender>> {
        self.by_name.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_name_is_unique_and_fits_the_schemas_name_shape() {
        let names: Vec<&str> = names().collect();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for name in names {
            // sql/V10__open_gateway_names.sql
            assert!(
                (1..=32).contains(&name.len())
                    && name.starts_with(|c: char| c.is_ascii_lowercase())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn nothing_configured_builds_only_the_log_sender() {
        let settings = Settings::from_sources(None, &[]).unwrap();
        let senders = Senders::from_settings(&settings).unwrap();
        assert!(senders.get("log").is_some());
        assert!(senders.get("twilio").is_none());
    }
}
