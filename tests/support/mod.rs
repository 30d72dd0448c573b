//! Test support: a private PostgreSQL cluster per test binary, a fresh
//! migrated database per test, and `spawn_app()` starting the real server on
//! port 0.
//!
//! No PostgreSQL binaries means a loud failure, never a skipped test.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod sign;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use keyward::config::Settings;
use keyward::embedded::{Cluster, ClusterOptions};
use keyward::startup::Application;
use tokio_postgres::NoTls;

const TEMPLATE_DB: &str = "keyward_template";
const BASE_DIR: &str = "/tmp/keyward-test-clusters";

static SHARED: OnceLock<Cluster> = OnceLock::new();
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Options for a throwaway cluster in a directory the `postgres` account can
/// reach even when the tests run as root.
pub fn throwaway_cluster_options() -> ClusterOptions {
    sweep_dead_clusters();
    let dir = PathBuf::from(BASE_DIR).join(format!(
        "{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    ));
    ClusterOptions {
        dir,
        fsync: false,
        max_connections: 300,
        settings: vec![],
    }
}

/// Start a cluster for one test that needs to stop and restart it.
pub fn private_cluster() -> Cluster {
    start_or_fail(&throwaway_cluster_options())
}

pub fn start_or_fail(options: &ClusterOptions) -> Cluster {
    Cluster::start(options).unwrap_or_else(|e| {
        panic!(
            "cannot start the test PostgreSQL cluster in {}: {e}",
            options.dir.display()
        )
    })
}

/// The binary's shared cluster, with a migrated template database.
pub fn shared_cluster() -> &'static Cluster {
    SHARED.get_or_init(|| {
        let cluster = private_cluster();
        let admin = cluster.pg_config("postgres");
        let template = cluster.pg_config(TEMPLATE_DB);
        // Our own runtime on our own thread: the caller may be inside one.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                execute(&admin, &format!("CREATE DATABASE {TEMPLATE_DB}")).await;
                keyward::db::migrate(&template, false)
                    .await
                    .expect("migrations apply to the template database");
            });
        })
        .join()
        .expect("template set-up");
        cluster
    })
}

/// Runs one statement on a short-lived connection.
pub async fn execute(config: &tokio_postgres::Config, sql: &str) {
    let (client, conn) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test cluster: {e}"));
    let driver = tokio::spawn(conn);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = driver.await;
}

/// A connected client; the connection is driven on the current runtime.
pub async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, conn) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

fn unique_db_name(prefix: &str) -> String {
    format!("{prefix}_{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// A new database with the schema applied (a copy of the template).
pub async fn fresh_database() -> tokio_postgres::Config {
    let cluster = shared_cluster();
    let name = unique_db_name("test");
    execute(
        &cluster.pg_config("postgres"),
        &format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}"),
    )
    .await;
    cluster.pg_config(&name)
}

/// A new database with nothing in it.
pub async fn empty_database() -> tokio_postgres::Config {
    let cluster = shared_cluster();
    let name = unique_db_name("empty");
    execute(
        &cluster.pg_config("postgres"),
        &format!("CREATE DATABASE {name} TEMPLATE template0"),
    )
    .await;
    cluster.pg_config(&name)
}

/// The built-in default settings, changed by `customise`.
pub fn test_settings(customise: impl FnOnce(&mut Settings)) -> Settings {
    let mut settings = Settings::from_sources(None, &[]).expect("default settings are valid");
    settings.listen = "127.0.0.1:0".into();
    settings.service.shutdown_grace_secs = 1;
    // Tests send bursts from one number on purpose; the flood limit has a
    // test of its own.
    settings.service.max_messages_per_number_per_minute = 0;
    // Tests fail authentication on purpose, many times from 127.0.0.1; the
    // failure limit has a test of its own.
    settings.service.max_auth_failures_per_minute = 100_000;
    customise(&mut settings);
    settings.validate().expect("test settings are valid");
    let problems = keyward::startup::check(&settings);
    assert!(
        problems.is_empty(),
        "test settings pass the components' checks: {problems:?}"
    );
    settings
}

pub const GENERIC_SECRET: &str = "test-secret-0123456789";

/// Settings with the generic gateway signed by [`GENERIC_SECRET`].
pub fn signed_generic_settings() -> Settings {
    test_settings(|s| {
        s.gateways.generic = Some(keyward::config::GenericSettings {
            secret: Some(keyward::config::Secrets::One(keyward::config::Secret::new(
                GENERIC_SECRET,
            ))),
            reply_url: None,
            allow_unsigned: false,
        });
    })
}

pub struct TestApp {
    pub address: String,
    pub db: tokio_postgres::Config,
    pub http: reqwest::Client,
    /// What the app's broadcast API takes for now; a test moves it.
    pub clock: keyward::clock::Clock,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// POSTs a correctly signed generic webhook.
    pub async fn post_generic(&self, body: &serde_json::Value) -> reqwest::Response {
        let body = serde_json::to_vec(body).unwrap();
        self.post_generic_bytes(body, chrono::Utc::now().timestamp())
            .await
    }

    pub async fn post_generic_bytes(&self, body: Vec<u8>, timestamp: i64) -> reqwest::Response {
        let secret = keyward::config::Secret::new(GENERIC_SECRET);
        let signature = keyward::gateways::generic::sign(&secret, timestamp, &body);
        self.http
            .post(self.url("/webhooks/generic"))
            .header("content-type", "application/json")
            .header("x-keyward-timestamp", timestamp.to_string())
            .header("x-keyward-signature", signature)
            .body(body)
            .send()
            .await
            .expect("request reaches the server")
    }

    /// A generic message from `from` with `text` and a fresh gateway id.
    pub async fn text(&self, from: &str, text: &str) -> serde_json::Value {
        let id = format!("gw-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let res = self
            .post_generic(&serde_json::json!({"id": id, "from": from, "to": "3344", "text": text}))
            .await;
        assert_eq!(res.status(), 200, "{text:?} from {from}");
        res.json().await.unwrap()
    }

    /// Stores a staff token with `role` and returns its secret.
    pub async fn token(&self, name: &str, role: &str) -> String {
        let secret = keyward::staff::new_token();
        let hash = keyward::staff::hash_token(&secret);
        self.db()
            .await
            .execute(
                "INSERT INTO api_tokens (name, role, token_sha256) VALUES ($1, $2::text::api_role, $3)",
                &[&name, &role, &hash.as_slice()],
            )
            .await
            .unwrap();
        secret
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        connect(&self.db).await
    }

    /// `SELECT count(*) …` on the app's database.
    pub async fn count(&self, sql: &str) -> i64 {
        self.db().await.query_one(sql, &[]).await.unwrap().get(0)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("request reaches the server")
    }
}

/// An HTTP client that shows redirects instead of following them (the
/// console answers sign-ins with one).
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_on(fresh_database().await, signed_generic_settings()).await
}

/// Starts the real server on port 0 against `db`.
pub async fn spawn_app_on(db: tokio_postgres::Config, settings: Settings) -> TestApp {
    keyward::telemetry::init_for_tests();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let app = Application::build(Arc::new(settings), db.clone(), 4, listener).expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let clock = app.clock();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        db,
        clock,
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client"),
    }
}

/// Removes cluster directories left by test runs whose process is gone.
fn sweep_dead_clusters() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = std::fs::create_dir_all(BASE_DIR);
        let Ok(entries) = std::fs::read_dir(BASE_DIR) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    });
}

/// Runs `dispatcher` until nothing is due; returns how much it handled.
pub async fn drain(dispatcher: &Arc<keyward::dispatch::Dispatcher>) -> usize {
    let mut total = 0;
    loop {
        let n = dispatcher.run_once().await.expect("dispatch");
        if n == 0 {
            return total;
        }
        total += n;
    }
}

/// A hot standby of `primary`, streaming from it: a `pg_basebackup` of
/// the running cluster (`-R` writes its `primary_conninfo`), started as a
/// cluster of its own. Fails loudly when it cannot be made.
pub fn standby_of(primary: &Cluster) -> Cluster {
    use std::os::unix::process::CommandExt;
    let options = throwaway_cluster_options();
    let bins = keyward::embedded::Binaries::locate().expect("PostgreSQL binaries");
    std::fs::create_dir_all(&options.dir).expect("standby dir");
    let mut cmd = std::process::Command::new(bins.bin_dir.join("pg_basebackup"));
    cmd.arg("-D")
        .arg(options.dir.join("pgdata"))
        .arg("-h")
        .arg(primary.socket_dir())
        .args(["-p", "5432", "-U", keyward::embedded::SUPERUSER])
        .args(["-X", "stream", "-R", "-c", "fast", "--no-sync"]);
    if nix::unistd::Uid::effective().is_root() {
        // PostgreSQL runs as `postgres` when we are root; so does its copy.
        let user = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .expect("a postgres account (we are root)");
        nix::unistd::chown(&options.dir, Some(user.uid), Some(user.gid)).expect("chown");
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    let out = cmd.output().expect("run pg_basebackup");
    assert!(
        out.status.success(),
        "pg_basebackup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start_or_fail(&options)
}
