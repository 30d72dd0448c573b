//! Building and running the HTTP application. Tests build it on port 0 with
//! their own database; `serve` builds it from the configuration.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header::CACHE_CONTROL;
use actix_web::{middleware, web, App, HttpServer};
use deadpool_postgres::Pool;

use crate::config::Settings;
use crate::error;
use crate::gateways::Gateways;
use crate::inbound::Inbound;
use crate::metrics::{self, Metrics};
use crate::routes::guard::AuthGuard;
use crate::routes::staff_auth::StaffPool;
use crate::routes::{console, health, staff_auth, support, webhooks};

/// Largest request body accepted (CONTRACT §4: 413 above it).
pub const MAX_BODY: usize = 64 * 1024;

/// A bound, not yet running, HTTP server.
pub struct Application {
    port: u16,
    server: Server,
    metrics: Arc<Metrics>,
}

impl Application {
    /// Binds `listener` (port 0 in tests) and prepares the server; call
    /// [`Application::run_until_stopped`] to serve.
    ///
    /// The `pool_size` connections to `db` are split between the HTTP
    /// workers, one pool each: a connection's I/O runs on the runtime that
    /// opened it, so a worker using its own connections never hands a query
    /// to another thread and back (measured with deploy/bench/run.sh: one
    /// pool shared by two workers cost 15-25 % more CPU per message).
    pub fn build(
        settings: Arc<Settings>,
        db: impl Into<crate::db::Target>,
        pool_size: usize,
        listener: TcpListener,
    ) -> std::io::Result<Self> {
        let db = db.into();
        let port = listener.local_addr()?.port();
        let pool_size = pool_size.max(1);
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(pool_size);
        let pools = (0..workers)
            .map(|i| {
                // Sizes that add up to `pool_size`, none empty.
                let size = pool_size / workers + usize::from(i < pool_size % workers);
                crate::db::pool(&db, size)
            })
            .collect::<Result<Vec<Pool>, _>>()
            .map_err(std::io::Error::other)?;
        let all_pools = web::Data::new(AllPools(pools.clone()));
        // Staff routes have connections of their own: however they are
        // loaded (a flood of bad tokens, a large export), webhooks keep
        // theirs.
        let staff_pool = crate::db::pool(db.clone(), settings.database.staff_pool_size)
            .map_err(std::io::Error::other)?;
        let staff_data = web::Data::new(staff_pool.clone());
        let staff_pool = web::Data::new(StaffPool(staff_pool));
        let guard = web::Data::new(AuthGuard::new(
            settings.service.max_auth_failures_per_minute,
            crate::routes::guard::FAILURES_PER_SECOND,
        ));
        let next_pool = Arc::new(AtomicUsize::new(0));
        let metrics = web::Data::new(Metrics::new());
        let shared_metrics = metrics.clone().into_inner();
        let gateways = web::Data::new(Gateways::from_settings(&settings));
        let inbound = web::Data::new(Inbound::new(&settings));
        let settings = web::Data::from(settings);
        let grace = settings.service.shutdown_grace_secs;
        let request_timeout = Duration::from_secs(settings.service.request_timeout_secs);
        let max_connections = settings.service.max_connections;
        let server = HttpServer::new(move || {
            // Called once on each worker's thread.
            let pool = pools[next_pool.fetch_add(1, Ordering::Relaxed) % pools.len()].clone();
            let no_store = || middleware::DefaultHeaders::new().add((CACHE_CONTROL, "no-store"));
            App::new()
                .wrap(middleware::from_fn(error::deadline))
                .wrap(middleware::from_fn(metrics::record))
                .app_data(web::Data::new(pool))
                .app_data(all_pools.clone())
                .app_data(staff_pool.clone())
                .app_data(guard.clone())
                .app_data(metrics.clone())
                .app_data(settings.clone())
                .app_data(gateways.clone())
                .app_data(inbound.clone())
                .app_data(error::json_config())
                .app_data(error::query_config())
                .app_data(error::form_config())
                .route("/healthz", web::get().to(health::healthz))
                .route("/readyz", web::get().to(health::readyz))
                .route("/metrics", web::get().to(health::metrics))
                .route("/webhooks/{gateway}", web::route().to(webhooks::receive))
                .route(
                    "/webhooks/{gateway}/status",
                    web::route().to(webhooks::status),
                )
                .route("/v1/openapi.json", web::get().to(support::openapi))
                .service(
                    web::scope("/v1")
                        .wrap(middleware::from_fn(staff_auth::audit))
                        .wrap(no_store())
                        .app_data(staff_data.clone())
                        .app_data(error::path_config())
                        .route("/subscribers", web::get().to(support::list))
                        .route("/subscribers/{number}", web::get().to(support::lookup))
                        .route(
                            "/subscribers/{number}/opt-out",
                            web::post().to(support::opt_out),
                        )
                        .route("/consent-export", web::get().to(support::consent_export))
                        .route("/stats", web::get().to(support::stats))
                        .route("/tokens", web::post().to(support::create_token))
                        .route("/tokens", web::get().to(support::list_tokens))
                        .route("/tokens/{name}", web::delete().to(support::revoke_token))
                        .default_service(web::to(error::not_found)),
                )
                .service(
                    web::scope("/console")
                        .wrap(middleware::from_fn(staff_auth::audit))
                        .wrap(no_store())
                        .app_data(staff_data.clone())
                        .route("", web::get().to(console::index))
                        .route("/", web::get().to(console::index))
                        .route("/login", web::get().to(console::login_form))
                        .route("/login", web::post().to(console::login))
                        .route("/logout", web::post().to(console::logout))
                        .route("/subscriber", web::get().to(console::subscriber))
                        .route("/opt-out", web::post().to(console::opt_out))
                        .default_service(web::to(error::not_found)),
                )
                .default_service(web::to(error::not_found))
        })
        .workers(workers)
        // A client gets this long for its request's head; `error::deadline`
        // bounds the body and the handling. Idle keep-alive connections
        // close after the same time.
        .client_request_timeout(request_timeout)
        .client_disconnect_timeout(Duration::from_secs(1))
        .keep_alive(request_timeout)
        .max_connections(max_connections)
        .listen(listener)?
        // We handle SIGINT/SIGTERM ourselves: drain HTTP first, then stop
        // the database.
        .disable_signals()
        .shutdown_timeout(grace)
        .run();
        Ok(Self {
            port,
            server,
            metrics: shared_metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The metrics registry, for the dispatcher running beside the server.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Every HTTP worker's pool, for the metrics that describe them together.
pub struct AllPools(pub Vec<Pool>);
