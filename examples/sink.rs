//! A local stand-in for an SMS provider that accepts everything: the
//! target of the dispatcher benchmark (`deploy/bench/dispatch.sh`).
//!
//! `cargo run --release --example sink -- 127.0.0.1:9099`

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9099".into());
    HttpServer::new(|| App::new().default_service(web::to(HttpResponse::Ok)))
        .bind(&addr)?
        .run()
        .await
}
