//! keyward: keyword-driven SMS subscriptions with a consent ledger in
//! PostgreSQL.
//!
//! Gateways call `/webhooks/{gateway}` for every inbound SMS; keyward
//! recognises the keyword, runs the subscription state machine, records the
//! change as evidence of consent and queues exactly one reply.

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
