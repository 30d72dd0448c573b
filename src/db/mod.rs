//! The database: connection pool, migrations and, in the submodules, every
//! statement keyward runs. SQL lives here and in `sql/`, nowhere else.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

pub mod inbound;
pub mod outbox;
pub mod support;

mod migrations {
    refinery::embed_migrations!("sql");
}

/// Key of the advisory lock that serialises concurrent `migrate` runs.
/// (The bytes of "keyward" read as an integer; any fixed number would do.)
const MIGRATION_LOCK_KEY: i64 = 0x006b_6579_7761_7264;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migrate(#[source] refinery::Error),
    #[error("database error: {}", describe(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
}

/// tokio-postgres's `Display` says only "db error"; the server's message
/// and code are what an operator needs in the log.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// A pool whose waits are bounded, so that a database outage turns into a
/// quick 503 rather than requests piling up.
pub fn pool(config: tokio_postgres::Config, max_size: usize) -> Result<Pool, DbError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

/// Applies the `sql/` migrations not yet applied; returns how many ran.
///
/// Safe to run twice (applied versions are recorded) and from several
/// processes at once: a session advisory lock lets one run at a time, and
/// the others then find nothing left to do.
pub async fn migrate(config: &tokio_postgres::Config) -> Result<usize, DbError> {
    let (mut client, connection) = config.connect(NoTls).await.map_err(DbError::Connect)?;
    let driver = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let report = migrations::migrations::runner()
        .set_abort_divergent(true)
        .run_async(&mut client)
        .await
        .map_err(DbError::Migrate);
    // The lock is also released when the session ends; unlock explicitly so
    // a waiting process proceeds at once.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    drop(client);
    let _ = driver.await;
    let report = report?;
    for migration in report.applied_migrations() {
        tracing::info!(
            version = migration.version(),
            name = migration.name(),
            "migration applied"
        );
    }
    Ok(report.applied_migrations().len())
}

/// Is the database reachable and answering?
pub async fn ping(pool: &Pool) -> Result<(), DbError> {
    let client = pool.get().await.map_err(|e| DbError::Pool(e.to_string()))?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}
