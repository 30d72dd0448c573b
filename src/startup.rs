//! Building and running the HTTP application. Tests build it on port 0 with
//! their own database; `serve` builds it from the configuration.

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header::CACHE_CONTROL;
use actix_web::{middleware, web, App, HttpServer};
use deadpool_postgres::Pool;

use crate::config::{ConfigError, Settings, MAX_REPLY_CHARS};
use crate::error;
use crate::gateways::Gateways;
use crate::gateways::Senders;
use crate::inbound::Inbound;
use crate::metrics::{self, AllPools, Metrics};
use crate::programs::Programs;
use crate::routes::guard::AuthGuard;
use crate::routes::staff_auth::StaffPool;
use crate::routes::{broadcasts, console, health, staff_auth, support, webhooks};

/// The configuration as `serve` and `check-config` take it: loaded and
/// checked by itself ([`Settings::load`]), then by the components
/// ([`check`]). Every problem comes back at once, one line each.
pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
    let settings = Settings::load(path)?;
    let problems = check(&settings);
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigError(problems))
    }
}

/// What only the components can judge of a configuration that is valid by
/// itself: that each short code's sender can send, that keys are keys, that
/// the database URL is one, and that every reply fits the outbox.
pub fn check(settings: &Settings) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(url) = &settings.database.url {
        if let Err(e) = crate::db::Target::parse(url.expose(), settings.database.ca_file.as_deref())
        {
            problems.push(format!("database.url / DATABASE_URL: {e}"));
        }
    }
    if let Some(url) = &settings.database.read_url {
        if settings.database.url.is_none() {
            problems.push(
                "database.read_url: needs database.url (DATABASE_URL); the private cluster has no standby"
                    .into(),
            );
        }
        if let Err(e) = crate::db::Target::parse(url.expose(), settings.database.ca_file.as_deref())
        {
            problems.push(format!("database.read_url: {e}"));
        }
    }
    // Each gateway judges its own settings (keys, account ids, tokens).
    match Senders::from_settings(settings) {
        Ok(senders) => {
            for (i, s) in settings.shortcodes.iter().enumerate() {
                let known = crate::gateways::names().any(|n| n == s.reply_via);
                if !known {
                    problems.push(format!(
                        "shortcodes[{i}] `{}`: reply_via `{}` is not one of {}",
                        s.code,
                        s.reply_via,
                        crate::gateways::names().collect::<Vec<_>>().join(", ")
                    ));
                } else if senders.get(&s.reply_via).is_none() {
                    // Otherwise every reply would fail at send time, for good.
                    problems.push(format!(
                        "shortcodes[{i}] `{1}`: reply_via `{0}` cannot send: configure [gateways.{0}] with its sending credentials",
                        s.reply_via, s.code
                    ));
                }
            }
        }
        Err(gateway_problems) => problems.extend(gateway_problems),
    }
    if problems.is_empty() {
        // Every reply as it will be sent must fit the outbox (1,600
        // characters, ten concatenated segments): a longer one could never
        // be stored, and its inbound message would be refused (503) on
        // every retry.
        for (program, lang, kind, text) in Programs::new(settings).sample_replies() {
            let len = text.chars().count();
            if len > MAX_REPLY_CHARS {
                problems.push(format!(
                    "programs `{program}`: the {lang} {kind} reply is {len} characters; at most {MAX_REPLY_CHARS}"
                ));
            }
        }
        problems.extend(
            reply_style(settings)
                .into_iter()
                .filter_map(|(refuse, line)| refuse.then_some(line)),
        );
    }
    problems
}

/// The style lint's findings on every reply as it will be sent, one line
/// each, with whether the program refuses them (`lint = "refuse"`) or
/// only warns (`check-config` prints those).
pub fn reply_style(settings: &Settings) -> Vec<(bool, String)> {
    use crate::core::style::{check, StyleKind};
    let mut out = Vec::new();
    for (program, lang, kind, text) in Programs::new(settings).sample_replies() {
        let refuse = settings
            .programs
            .iter()
            .find(|p| p.name == program)
            .is_none_or(|p| p.lint == crate::config::LintMode::Refuse);
        for f in check(&text, Some(lang), "", StyleKind::Notice) {
            out.push((
                refuse,
                format!(
                    "programs `{program}`: the {lang} {kind} reply: {} ({}): {}",
                    f.code,
                    f.words.join(", "),
                    f.message
                ),
            ));
        }
    }
    out
}

/// A bound, not yet running, HTTP server.
pub struct Application {
    port: u16,
    server: Server,
    metrics: Arc<Metrics>,
    clock: crate::clock::Clock,
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
        // Lookups, lists, stats and the export: from the read replica when
        // one is configured (and current enough), else the staff pool.
        let staff_reads = match &settings.database.read_url {
            Some(url) => {
                let replica =
                    crate::db::Target::parse(url.expose(), settings.database.ca_file.as_deref())
                        .map_err(std::io::Error::other)?;
                crate::db::replica::StaffReads::with_replica(
                    staff_pool.clone(),
                    replica,
                    settings.database.staff_pool_size,
                    settings.database.max_read_lag_secs,
                )
                .map_err(std::io::Error::other)?
            }
            None => crate::db::replica::StaffReads::primary_only(staff_pool.clone()),
        };
        let staff_reads = web::Data::new(staff_reads);
        let staff_pool = web::Data::new(StaffPool(staff_pool));
        let guard = web::Data::new(AuthGuard::new(
            settings.service.max_auth_failures_per_minute,
            crate::routes::guard::FAILURES_PER_SECOND,
        ));
        let next_pool = Arc::new(AtomicUsize::new(0));
        let instance = settings
            .service
            .instance
            .clone()
            .unwrap_or_else(|| metrics::default_instance(Some(&port.to_string())));
        let metrics = web::Data::new(Metrics::for_instance(&instance));
        let shared_metrics = metrics.clone().into_inner();
        let gateways = Gateways::from_settings(&settings)
            .map_err(|problems| std::io::Error::other(ConfigError(problems)))?;
        let gateways = web::Data::new(gateways);
        let programs = Arc::new(Programs::new(&settings));
        let inbound = web::Data::new(Inbound::new(&settings, programs.clone()));
        let broadcasts = web::Data::new(crate::broadcast::Broadcasts::new(&settings, &programs));
        let clock = crate::clock::Clock::default();
        let clock_data = web::Data::new(clock.clone());
        let programs = web::Data::from(programs);
        let settings = web::Data::from(settings);
        let grace = settings.service.shutdown_grace_secs;
        let request_timeout = Duration::from_secs(settings.service.request_timeout_secs);
        let max_connections = settings.service.max_connections;
        let server = HttpServer::new(move || {
            // Called once on each worker's thread.
            let pool = pools[next_pool.fetch_add(1, Ordering::Relaxed) % pools.len()].clone();
            let writer = crate::inbound::Writer::new(
                inbound.clone().into_inner(),
                pool.clone(),
                settings.database.max_batch,
                settings.database.batch_writers,
            );
            let no_store = || middleware::DefaultHeaders::new().add((CACHE_CONTROL, "no-store"));
            App::new()
                .wrap(middleware::from_fn(error::deadline))
                .wrap(middleware::from_fn(metrics::record))
                .app_data(web::Data::new(pool))
                .app_data(web::Data::new(writer))
                .app_data(all_pools.clone())
                .app_data(staff_pool.clone())
                .app_data(guard.clone())
                .app_data(web::Data::new(error::RequestTimeout(
                    request_timeout.as_secs(),
                )))
                .app_data(metrics.clone())
                .app_data(settings.clone())
                .app_data(gateways.clone())
                .app_data(inbound.clone())
                .app_data(programs.clone())
                .app_data(broadcasts.clone())
                .app_data(clock_data.clone())
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
                        .app_data(staff_reads.clone())
                        .app_data(error::path_config())
                        .route("/subscribers", web::get().to(support::list))
                        .route("/subscribers/{number}", web::get().to(support::lookup))
                        .route(
                            "/subscribers/{number}/opt-out",
                            web::post().to(support::opt_out),
                        )
                        .route("/consent-export", web::get().to(support::consent_export))
                        .route("/stats", web::get().to(support::stats))
                        .route(
                            "/subscribers/{number}/timezone",
                            web::put().to(broadcasts::set_timezone),
                        )
                        .service(
                            web::resource("/broadcasts")
                                .app_data(error::json_config_up_to(error::MAX_BROADCAST_BODY))
                                .route(web::post().to(broadcasts::create))
                                .route(web::get().to(broadcasts::list)),
                        )
                        .route("/broadcasts/{id}", web::get().to(broadcasts::show))
                        .route(
                            "/broadcasts/{id}/recipients",
                            web::get().to(broadcasts::recipients),
                        )
                        .route(
                            "/broadcasts/{id}/{action}",
                            web::post().to(broadcasts::control),
                        )
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
                        .route("/broadcasts", web::get().to(console::broadcasts))
                        .route(
                            "/broadcasts/control",
                            web::post().to(console::control_broadcast),
                        )
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
            clock,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The metrics registry, for the dispatcher running beside the server.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The clock the broadcast API reads (a test moves it; the dispatcher
    /// `serve` runs shares it).
    pub fn clock(&self) -> crate::clock::Clock {
        self.clock.clone()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `text` as a configuration file and runs both checks.
    fn check_toml(text: &str) -> Result<Settings, ConfigError> {
        let settings = Settings::from_sources(Some((Path::new("keyward.toml"), text)), &[])?;
        let problems = check(&settings);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError(problems))
        }
    }

    /// One short code replying through `reply_via`, one program `p`, and
    /// then `rest`.
    fn one_program(reply_via: &str, rest: &str) -> String {
        format!(
            r#"
            [[shortcodes]]
            code = "3344"
            program = "p"
            reply_via = "{reply_via}"
            [[programs]]
            name = "p"
            brand = "B"
            frequency = {{ en = "weekly" }}
            {rest}
        "#
        )
    }

    #[test]
    fn a_telnyx_key_must_be_a_key() {
        let text = one_program("log", "[gateways.telnyx]\npublic_key = \"not-a-key\"");
        let err = check_toml(&text).expect_err("invalid").to_string();
        assert!(err.contains("gateways.telnyx.public_key"), "{err}");
    }

    #[test]
    fn each_gateway_judges_its_own_credentials_and_all_problems_come_at_once() {
        let text = one_program(
            "log",
            r#"[gateways.plivo]
            auth_id = "MA1"
            auth_token = "change-me"
            [gateways.twilio]
            account_sid = "XX1"
            auth_token = "token""#,
        );
        let err = check_toml(&text).expect_err("invalid").to_string();
        for needle in [
            "gateways.plivo.auth_token: is a placeholder",
            "gateways.plivo: service.public_url is needed",
            "gateways.twilio.account_sid: must start with AC",
            "gateways.twilio: service.public_url is needed",
        ] {
            assert!(err.contains(needle), "{needle:?} not in:\n{err}");
        }
    }

    #[test]
    fn a_reply_written_in_sms_slang_is_refused_unless_the_program_only_warns() {
        let slang =
            "[programs.replies.id]\nhelp = \"p4g1 ini g bs bantu, balas {stop} ke {shortcode}\"";
        let err = check_toml(&one_program("log", slang))
            .expect_err("slang")
            .to_string();
        assert!(err.contains("id help reply: digit_spelling"), "{err}");
        assert!(err.contains("abbreviation"), "{err}");
        let warned =
            one_program("log", slang).replace("frequency =", "lint = \"warn\"\nfrequency =");
        let settings = check_toml(&warned).expect("a warning only");
        assert!(!reply_style(&settings).is_empty());
        // The built-in replies pass.
        assert!(reply_style(&check_toml(&one_program("log", "")).unwrap()).is_empty());
    }

    #[test]
    fn a_reply_longer_than_the_outbox_takes_is_refused() {
        let help = format!(
            "[programs.replies.en]\nhelp = \"{} {{stop}}\"",
            "x".repeat(1700)
        );
        let err = check_toml(&one_program("log", &help))
            .expect_err("too long")
            .to_string();
        assert!(err.contains("en help reply is"), "{err}");
    }

    #[test]
    fn a_short_code_must_reply_through_a_sender_keyward_knows() {
        let err = check_toml(&one_program("carrier-pigeon", ""))
            .expect_err("unknown sender")
            .to_string();
        assert!(
            err.contains("reply_via `carrier-pigeon` is not one of"),
            "{err}"
        );
        assert!(err.contains("twilio"), "{err}");
    }

    #[test]
    fn a_short_code_must_reply_through_a_sender_that_can_send() {
        let text = one_program(
            "kannel",
            "[gateways.kannel]\nsecret = \"kannel-secret-0123456789\"",
        );
        let text = text.as_str();
        let err = check_toml(text).expect_err("no sendsms_url").to_string();
        assert!(err.contains("reply_via `kannel` cannot send"), "{err}");
        let with_url = text.replace(
            "secret = \"kannel-secret-0123456789\"",
            "secret = \"kannel-secret-0123456789\"\nsendsms_url = \"http://127.0.0.1:13013/cgi-bin/sendsms\"",
        );
        let err = check_toml(&with_url)
            .expect_err("no sendsms-user")
            .to_string();
        assert!(err.contains("needs username and password"), "{err}");
        let fixed = with_url.replace(
            "sendsms_url",
            "username = \"keyward\"\npassword = \"sendsms-password\"\nsendsms_url",
        );
        check_toml(&fixed).expect("valid with a sendsms_url and its user");
        let in_url = with_url.replace("/sendsms", "/sendsms?username=keyward&password=pw");
        check_toml(&in_url).expect("valid with the user in the URL");
    }
}
