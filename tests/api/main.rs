//! Integration tests over real HTTP against a real PostgreSQL.

#[path = "../support/mod.rs"]
mod support;

mod batch;
mod broadcasts;
mod cluster;
mod console;
mod dispatch;
mod gateways;
mod health;
mod replica;
mod schema;
mod security;
mod staff;
mod webhooks;
