//! The database: connection pool, migrations and, in the submodules, every
//! statement keyward runs. SQL lives here and in `sql/`, nowhere else.

use std::path::Path;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;

pub mod batch;
pub mod broadcasts;
pub mod history;
pub mod inbound;
pub mod outbox;
pub mod replica;
pub mod support;
pub mod tls;
pub mod types;

pub use tls::{CaSource, SslMode, Tls};

mod migrations {
    refinery::embed_migrations!("sql");
}

/// Key of the advisory lock that serialises concurrent `migrate` runs.
/// (The bytes of "keyward" read as an integer; any fixed number would do.)
const MIGRATION_LOCK_KEY: i64 = 0x006b_6579_7761_7264;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    // The message already holds the causes: no `#[source]`, or anyhow's
    // `{:#}` would print them twice.
    #[error("cannot connect to the database: {}", describe(.0))]
    Connect(tokio_postgres::Error),
    #[error("database settings: {0}")]
    Config(String),
    #[error("migration failed: {0}")]
    Migrate(#[source] refinery::Error),
    /// The database's migrations do not fit this binary's (a newer
    /// release ran here, or the history has a hole): the message says
    /// what to do.
    #[error("{0}")]
    Schema(history::Mismatch),
    #[error("database error: {}", describe(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
    /// A value read back that keyward does not know (a label, a type).
    #[error("unexpected value from the database: {0}")]
    Decode(String),
}

/// What a [`DbError`] means for whoever asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The database cannot be reached, is shutting down, is out of
    /// resources, timed out, or aborted the transaction (serialisation,
    /// deadlock): the same request later may well succeed (503, retry).
    Unavailable,
    /// Another change got there first (a unique or exclusion violation
    /// no statement expected): worth a retry, which sees that change.
    Conflict,
    /// keyward asked for something the schema forbids (a CHECK, a NOT
    /// NULL, a foreign key, a bad cast) or could not read what came back:
    /// a bug, found by tests — retrying will not help (500, logged).
    Bug,
}

impl DbError {
    pub fn fault(&self) -> Fault {
        match self {
            DbError::Connect(_) | DbError::Pool(_) => Fault::Unavailable,
            DbError::Config(_) | DbError::Migrate(_) | DbError::Schema(_) | DbError::Decode(_) => {
                Fault::Bug
            }
            DbError::Query(e) => query_fault(e),
        }
    }

    /// The SQLSTATE, constraint and table of a statement the server
    /// refused, for the log.
    pub fn server_detail(&self) -> Option<(&str, Option<&str>, Option<&str>)> {
        match self {
            DbError::Query(e) | DbError::Connect(e) => e
                .as_db_error()
                .map(|db| (db.code().code(), db.constraint(), db.table())),
            _ => None,
        }
    }
}

fn query_fault(e: &tokio_postgres::Error) -> Fault {
    let Some(db) = e.as_db_error() else {
        // No answer from the server: the connection broke, or the client
        // failed to convert a value (our bug).
        let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
        return if e.is_closed() || io {
            Fault::Unavailable
        } else {
            Fault::Bug
        };
    };
    let code = db.code().code();
    match code {
        "23505" | "23P01" => Fault::Conflict,
        // lock_not_available
        "55P03" => Fault::Unavailable,
        _ => match &code[..2] {
            // connection, transaction rollback (serialisation, deadlock),
            // insufficient resources, operator intervention (shutdown,
            // statement timeout), system error
            "08" | "40" | "53" | "57" | "58" => Fault::Unavailable,
            _ => Fault::Bug,
        },
    }
}

/// tokio-postgres's `Display` says only "db error" or "error performing TLS
/// handshake"; the server's message and code, or the causes, are what an
/// operator needs in the log.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({}): {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        // Some causes repeat what the text already says.
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        if is_not_signed_by_the_ca(c) {
            text.push_str(
                " (the server's certificate is not signed by the CA in database.ca_file / sslrootcert)",
            );
        }
        cause = c.source();
    }
    text
}

fn is_not_signed_by_the_ca(e: &(dyn std::error::Error + 'static)) -> bool {
    let rustls = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    matches!(
        rustls,
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature
        ))
    )
}

/// A pool's error, with the cause of a failed connection spelled out.
pub fn pool_error(e: PoolError) -> DbError {
    match e {
        PoolError::Backend(e) => DbError::Connect(e),
        other => DbError::Pool(other.to_string()),
    }
}

/// The database to connect to: tokio-postgres's settings and how the
/// connections are secured ([`Tls`], built once; each connection clones an
/// `Arc`). [`pool`] and [`migrate`] take one, or a plain
/// `tokio_postgres::Config`, whose own `sslmode` then applies, unverified.
#[derive(Debug, Clone)]
pub struct Target {
    pub pg: tokio_postgres::Config,
    pub tls: Tls,
}

impl Target {
    /// A connection string, URL (`postgres://…?sslmode=verify-full`) or
    /// `key=value`, with libpq's five `sslmode`s and `sslrootcert` (a file,
    /// or `system`); `ca_file` is `database.ca_file`. Without `sslmode`,
    /// `prefer`, as libpq (`verify-full` with `sslrootcert=system`).
    pub fn parse(connection: &str, ca_file: Option<&Path>) -> Result<Self, DbError> {
        let split = tls::split_tls_params(connection);
        let pg = split.rest.parse::<tokio_postgres::Config>().map_err(|e| {
            DbError::Config(format!("not a valid connection string: {}", describe(&e)))
        })?;
        let ca = match (split.sslrootcert, ca_file) {
            (Some(url), Some(file)) if Path::new(&url) != file => {
                return Err(DbError::Config(format!(
                    "sslrootcert={url} and database.ca_file={} name different CAs: keep one",
                    file.display()
                )))
            }
            (Some(url), _) => Some(CaSource::from_setting(&url)),
            (None, Some(file)) => Some(match file.to_str() {
                Some(setting) => CaSource::from_setting(setting),
                None => CaSource::File(file.to_path_buf()),
            }),
            (None, None) => None,
        };
        let mode = match split.sslmode {
            Some(mode) => SslMode::parse(&mode).map_err(DbError::Config)?,
            None if ca == Some(CaSource::System) => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        Self::new(pg, mode, ca)
    }

    /// `pg` secured as `mode` says, trusting `ca`. `pg`'s own `ssl_mode`
    /// is replaced.
    pub fn new(
        mut pg: tokio_postgres::Config,
        mode: SslMode,
        ca: Option<CaSource>,
    ) -> Result<Self, DbError> {
        let tls = Tls::new(mode, ca).map_err(DbError::Config)?;
        name_hostaddrs(&mut pg);
        let (sockets, tcp) = host_kinds(&pg);
        if sockets > 0 && tcp > 0 && mode >= SslMode::Require {
            return Err(DbError::Config(format!(
                "sslmode={mode} cannot apply to the Unix-socket hosts of a host list that has TCP hosts too (sockets carry no TLS): list one kind"
            )));
        }
        pg.ssl_mode(if tcp == 0 && sockets > 0 {
            // TLS is never attempted over a Unix socket: PostgreSQL offers
            // none there, and libpq ignores sslmode for sockets too.
            tokio_postgres::config::SslMode::Disable
        } else {
            mode.for_tokio_postgres()
        });
        Ok(Self { pg, tls })
    }

    /// What an operator must be told at start-up about how the connections
    /// are secured, if anything.
    pub fn security_warning(&self) -> Option<String> {
        let tcp: Vec<String> = self
            .pg
            .get_hosts()
            .iter()
            .filter_map(|h| match h {
                Host::Tcp(name) => Some(name.clone()),
                Host::Unix(_) => None,
            })
            .chain(self.pg.get_hostaddrs().iter().map(ToString::to_string))
            .collect();
        if tcp.is_empty() {
            return None;
        }
        let remote = tcp.iter().any(|h| {
            h != "localhost"
                && !h
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        let verified = self.tls.verifies_certificate();
        match self.tls.mode() {
            SslMode::Require if !verified => Some(
                "sslmode=require without a CA (database.ca_file or sslrootcert=): the connection \
                 to the database is encrypted, but the server's certificate is not checked, so \
                 whoever sits in between can read it; use sslmode=verify-full with the CA"
                    .into(),
            ),
            SslMode::Prefer if remote => {
                Some(format!(
                "sslmode=prefer (the default): TLS only if the database server offers it, else \
                 clear text{}; use sslmode=verify-full with database.ca_file",
                if verified { "" } else { ", and the server's certificate is not checked" }
            ))
            }
            SslMode::Disable if remote => Some(
                "sslmode=disable: consent records, numbers and token hashes cross the network \
                 to the database in clear text"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// With `hostaddr` alone, tokio-postgres has no name for the TLS handshake
/// and fails as soon as the server offers TLS; the address is the name
/// then (so `verify-full` checks the certificate's IP addresses).
fn name_hostaddrs(pg: &mut tokio_postgres::Config) {
    if pg.get_hosts().is_empty() {
        for addr in pg.get_hostaddrs().to_vec() {
            pg.host(addr.to_string());
        }
    }
}

/// How many of the hosts are Unix sockets, how many TCP (host names or
/// `hostaddr`s).
fn host_kinds(pg: &tokio_postgres::Config) -> (usize, usize) {
    let sockets = pg
        .get_hosts()
        .iter()
        .filter(|h| !matches!(h, Host::Tcp(_)))
        .count();
    let tcp = (pg.get_hosts().len() - sockets).max(pg.get_hostaddrs().len());
    (sockets, tcp)
}

/// A plain `tokio_postgres::Config` keeps its own `sslmode` (disable,
/// prefer or require), without a CA.
impl From<tokio_postgres::Config> for Target {
    fn from(mut pg: tokio_postgres::Config) -> Self {
        use tokio_postgres::config::SslMode as Pg;
        let mode = match pg.get_ssl_mode() {
            Pg::Disable => SslMode::Disable,
            Pg::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
        name_hostaddrs(&mut pg);
        if let (1.., 0) = host_kinds(&pg) {
            pg.ssl_mode(Pg::Disable); // sockets only: no TLS, as in `Target::new`
        }
        Self {
            pg,
            tls: Tls::unverified(mode),
        }
    }
}

impl From<&tokio_postgres::Config> for Target {
    fn from(pg: &tokio_postgres::Config) -> Self {
        pg.clone().into()
    }
}

impl From<&Target> for Target {
    fn from(target: &Target) -> Self {
        target.clone()
    }
}

/// A pool whose waits are bounded, so that a database outage turns into a
/// quick 503 rather than requests piling up. TLS is set up per connection,
/// never per query.
pub fn pool(target: impl Into<Target>, max_size: usize) -> Result<Pool, DbError> {
    pool_with_timeout(target, max_size, Duration::from_secs(5))
}

/// [`pool`] with waits for a connection, a new connection and a recycle
/// check bounded by `timeout`.
pub fn pool_with_timeout(
    target: impl Into<Target>,
    max_size: usize,
    timeout: Duration,
) -> Result<Pool, DbError> {
    let Target { mut pg, tls } = target.into();
    // A host that does not answer at all (a machine gone from a host
    // list) costs at most half the wait before the next host is tried;
    // without it the kernel's TCP timeout (minutes) would outlast every
    // wait and the next host would never be reached.
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(timeout / 2);
    }
    let manager = Manager::from_config(
        pg,
        tls.connector(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

/// Applies the `sql/` migrations not yet applied; returns how many ran.
///
/// Safe to run twice (applied versions are recorded) and from several
/// processes at once: a session advisory lock lets one run at a time, and
/// the others then find nothing left to do.
///
/// A database that a newer release migrated (it has migrations newer than
/// all of this binary's) is refused, unless `accept_newer_schema`
/// (`database.accept_newer_schema`): then nothing is applied, with a
/// warning. A hole in the history is always refused; see
/// [`history::plan`].
pub async fn migrate(
    target: impl Into<Target>,
    accept_newer_schema: bool,
) -> Result<usize, DbError> {
    let Target { pg, tls } = target.into();
    let (mut client, connection) = pg
        .connect(tls.connector())
        .await
        .map_err(DbError::Connect)?;
    let driver = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let applied = migrate_locked(&mut client, accept_newer_schema).await;
    // The lock is also released when the session ends; unlock explicitly so
    // a waiting process proceeds at once.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    drop(client);
    let _ = driver.await;
    applied
}

/// [`migrate`]'s work, under its lock (so that the history read is the one
/// refinery then works on).
async fn migrate_locked(
    client: &mut tokio_postgres::Client,
    accept_newer_schema: bool,
) -> Result<usize, DbError> {
    let runner = migrations::migrations::runner();
    let embedded: Vec<history::Migration> =
        runner.get_migrations().iter().map(Into::into).collect();
    let applied = history::applied(client).await?;
    match history::plan(&applied, &embedded, accept_newer_schema).map_err(DbError::Schema)? {
        history::Plan::RunOnNewer(newer) => {
            tracing::warn!(
                "the database has migrations from a newer release that this keyward does not \
                 have ({}); running on it without migrating, as database.accept_newer_schema \
                 allows: only safe if they are backward compatible",
                history::list(&newer)
            );
            Ok(0)
        }
        history::Plan::Apply => {
            let report = runner
                .set_abort_divergent(true)
                .run_async(client)
                .await
                .map_err(DbError::Migrate)?;
            for migration in report.applied_migrations() {
                tracing::info!(
                    version = migration.version(),
                    name = migration.name(),
                    "migration applied"
                );
            }
            Ok(report.applied_migrations().len())
        }
    }
}

/// Refuses a connection pooler between keyward and PostgreSQL that does
/// not keep one server session per connection (PgBouncer's
/// `pool_mode = transaction` or `statement`): keyward prepares named
/// statements once per connection and reuses them, which such a pooler
/// sends to whichever server connection is free, and PgBouncer 1.18
/// (Debian 12) cannot make up for it.
///
/// The probe: connection A asks for its server process, connection B
/// opens a transaction and asks for its own, and A asks again. Through a
/// session, A keeps its process and B has another; a transaction pooler
/// hands A's idle server connection to B (PgBouncer reuses the most
/// recently used one) and A then gets a different one.
pub async fn check_session_pooling(target: impl Into<Target>) -> Result<(), DbError> {
    let Target { pg, tls } = target.into();
    let connect = || async {
        let (client, connection) = pg
            .connect(tls.connector())
            .await
            .map_err(DbError::Connect)?;
        tokio::spawn(connection);
        Ok::<_, DbError>(client)
    };
    async fn pid(client: &tokio_postgres::Client) -> Result<String, DbError> {
        for message in client.simple_query("SELECT pg_backend_pid()").await? {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                return Ok(row.get(0).unwrap_or_default().to_owned());
            }
        }
        Err(DbError::Decode(
            "SELECT pg_backend_pid() returned no row".into(),
        ))
    }
    let a = connect().await?;
    let b = connect().await?;
    let first = pid(&a).await?;
    b.simple_query("BEGIN").await?;
    let other = pid(&b).await?;
    let again = pid(&a).await?;
    b.simple_query("ROLLBACK").await?;
    if other == first || again != first {
        return Err(DbError::Config(
            "the server session behind one connection changes between transactions: a pooler \
             in transaction or statement mode (PgBouncer's pool_mode) is in between. keyward \
             keeps named prepared statements per connection, so it needs pool_mode = session"
                .into(),
        ));
    }
    Ok(())
}

/// Is the database reachable and answering?
pub async fn ping(pool: &Pool) -> Result<(), DbError> {
    let client = pool.get().await.map_err(pool_error)?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}
