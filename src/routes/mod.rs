//! HTTP routes. Handlers parse, call the core or the database, and answer;
//! they hold no business rules of their own.

pub mod broadcasts;
pub mod console;
pub mod guard;
pub mod health;
pub mod staff_auth;
pub mod support;
pub mod webhooks;
