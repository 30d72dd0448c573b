//! keyward: keyword-driven SMS subscriptions with a consent ledger in
//! PostgreSQL.
//!
//! Gateways call `/webhooks/{gateway}` for every inbound SMS; keyward
//! recognises the keyword, runs the subscription state machine, records the
//! change as evidence of consent and queues exactly one reply.

/// `as_str()` (each variant's label, as stored and serialised) and
/// `Display` for a field-less enum: `labels!(State { None => "none", … })`.
macro_rules! labels {
    ($t:ident { $($v:ident => $l:literal),+ $(,)? }) => {
        $crate::labels_no_display!($t { $($v => $l),+ });
        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// [`labels!`] without `Display` (for a type that has its own).
macro_rules! labels_no_display {
    ($t:ident { $($v:ident => $l:literal),+ $(,)? }) => {
        impl $t {
            /// The label: how it is stored, serialised and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $l),+
                }
            }
        }
    };
}

pub(crate) use {labels, labels_no_display};

pub mod broadcast;
pub mod cli;
pub mod clock;
pub mod config;
pub mod core;
pub mod db;
pub mod dispatch;
pub mod embedded;
pub mod error;
pub mod gateways;
pub mod inbound;
pub mod metrics;
pub mod msisdn;
pub mod programs;
pub mod routes;
pub mod staff;
pub mod startup;
pub mod telemetry;
