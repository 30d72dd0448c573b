//! Staff reads from a hot standby (`database.read_url`), so lookups,
//! lists, stats and the consent export do not load the primary that takes
//! every webhook.
//!
//! Before each read the standby says how far behind it is; when it cannot
//! be reached, or is further behind than `database.max_read_lag_secs`, the
//! read goes to the primary instead, and a read that fails on the standby
//! for a reason a retry may cure (it stopped, a replication conflict
//! cancelled the query) is run again on the primary. Every answer says
//! where it was read and as of when ([`Freshness`]).
//!
//! The lag: a standby that has replayed everything it received while its
//! WAL receiver runs is current (lag 0); otherwise it is as old as the last
//! transaction it replayed (`pg_last_xact_replay_timestamp`), which makes a
//! standby whose link to the primary broke look older as time passes, so
//! reads leave it. (A primary that stops sending without closing the link
//! is only noticed after `wal_receiver_timeout`, 60 s by default.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool};

use super::{pool_error, DbError, Fault, Target};

/// Where a read was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Primary,
    Replica,
}

crate::labels!(Source { Primary => "primary", Replica => "replica" });

/// How current the data of one read is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Freshness {
    pub source: Source,
    /// The data is the primary's as of this moment.
    pub at: DateTime<Utc>,
    /// How far behind the primary the data is, in seconds (0 on the primary).
    pub lag_secs: f64,
}

impl Freshness {
    fn primary() -> Self {
        Self {
            source: Source::Primary,
            at: Utc::now(),
            lag_secs: 0.0,
        }
    }
}

/// A standby's waits are short: when it does not answer quickly, the
/// primary does.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(2);

/// The connections staff reads use: the staff pool on the primary and,
/// when configured, a pool on the standby.
pub struct StaffReads {
    primary: Pool,
    replica: Option<Pool>,
    max_lag_secs: f64,
    /// Whether the last read left the standby, so that a fallback is
    /// logged once when it starts and once when it ends, not per request.
    falling_back: AtomicBool,
}

impl StaffReads {
    /// Reads from `primary` alone.
    pub fn primary_only(primary: Pool) -> Self {
        Self {
            primary,
            replica: None,
            max_lag_secs: 0.0,
            falling_back: AtomicBool::new(false),
        }
    }

    /// Reads from a pool of `size` connections to `replica`, falling back
    /// to `primary`.
    pub fn with_replica(
        primary: Pool,
        replica: impl Into<Target>,
        size: usize,
        max_lag_secs: u64,
    ) -> Result<Self, DbError> {
        Ok(Self {
            primary,
            replica: Some(super::pool_with_timeout(replica, size, REPLICA_TIMEOUT)?),
            max_lag_secs: max_lag_secs as f64,
            falling_back: AtomicBool::new(false),
        })
    }

    /// The pool of `source` (the primary's when no standby is configured).
    pub fn pool(&self, source: Source) -> &Pool {
        match (source, &self.replica) {
            (Source::Replica, Some(replica)) => replica,
            _ => &self.primary,
        }
    }

    /// The standby's pool, if one is configured.
    pub fn replica_pool(&self) -> Option<&Pool> {
        self.replica.as_ref()
    }

    /// A connection to read from and how current its data is: the
    /// standby's when it answers and is close enough behind, else the
    /// primary's.
    pub async fn client(&self) -> Result<(Object, Freshness), DbError> {
        if let Some(replica) = &self.replica {
            match standby_client(replica).await {
                Ok((client, fresh)) if fresh.lag_secs <= self.max_lag_secs => {
                    if self.falling_back.swap(false, Ordering::Relaxed) {
                        tracing::info!(
                            lag_secs = fresh.lag_secs,
                            "staff reads are served by the read replica again"
                        );
                    }
                    return Ok((client, fresh));
                }
                Ok((_, fresh)) => self.note_fallback(&format!(
                    "{:.1} s behind the primary, more than database.max_read_lag_secs ({})",
                    fresh.lag_secs, self.max_lag_secs
                )),
                Err(e) => self.note_fallback(&e.to_string()),
            }
        }
        let client = self.primary.get().await.map_err(pool_error)?;
        Ok((client, Freshness::primary()))
    }

    /// Runs `work` on a connection from [`StaffReads::client`]; if it
    /// fails on the standby for a reason a retry may cure, runs it again
    /// on the primary.
    pub async fn read<T>(
        &self,
        work: impl AsyncFn(&Object) -> Result<T, DbError>,
    ) -> Result<(T, Freshness), DbError> {
        let (client, fresh) = self.client().await?;
        match work(&client).await {
            Err(e) if fresh.source == Source::Replica && e.fault() == Fault::Unavailable => {
                drop(client);
                self.note_fallback(&e.to_string());
                let client = self.primary.get().await.map_err(pool_error)?;
                let fresh = Freshness::primary();
                Ok((work(&client).await?, fresh))
            }
            done => done.map(|t| (t, fresh)),
        }
    }

    fn note_fallback(&self, why: &str) {
        if !self.falling_back.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                reason = why,
                "staff reads fall back to the primary: the read replica is unavailable"
            );
        }
    }
}

/// A connection to the standby and how far behind the primary it is.
async fn standby_client(pool: &Pool) -> Result<(Object, Freshness), DbError> {
    let client = pool.get().await.map_err(pool_error)?;
    let lag = client
        .prepare_cached(
            // `pg_stat_wal_receiver` shows its row (details hidden) to any
            // role while the receiver runs. Not in recovery: a standby that
            // was promoted, or a primary named as read_url: current.
            "SELECT now(),
                    CASE WHEN NOT pg_is_in_recovery() THEN 0.0::float8
                         WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn()
                              AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver) THEN 0.0::float8
                         ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
                    END",
        )
        .await?;
    let row = client.query_one(&lag, &[]).await?;
    let now: DateTime<Utc> = row.get(0);
    // Never replayed anything: no way to tell its age.
    let lag_secs: f64 = row
        .get::<_, Option<f64>>(1)
        .unwrap_or(f64::INFINITY)
        .max(0.0);
    let at = chrono::Duration::from_std(Duration::from_secs_f64(lag_secs.min(1e9)))
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    Ok((
        client,
        Freshness {
            source: Source::Replica,
            at,
            lag_secs,
        },
    ))
}

/// What a staff answer says of where it was read (`staff` knows nothing
/// of the database; the database layer knows the view it answers).
impl From<Freshness> for crate::staff::view::AsOf {
    fn from(f: Freshness) -> Self {
        Self {
            source: f.source.as_str().to_owned(),
            at: f.at,
            lag_secs: f.lag_secs,
        }
    }
}
