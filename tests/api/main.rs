//! Integration tests over real HTTP against a real PostgreSQL.

#[path = "../support/mod.rs"]
mod support;

mod health;
mod schema;
mod webhooks;
