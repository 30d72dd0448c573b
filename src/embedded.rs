//! A private PostgreSQL cluster run from the machine's own server binaries.
//!
//! `keyward serve` without `DATABASE_URL` and the test suite both use it. The
//! cluster listens on a Unix socket only (no TCP port to collide with), its
//! postmaster is a child of this process that receives SIGINT (a clean, fast
//! shutdown) if this process dies for any reason, so `kill -9 keyward` never
//! leaves a server behind, and a `postmaster.pid` left by a crash is cleared
//! before the next start.
//!
//! PostgreSQL refuses to run as root. When we are root, `initdb` and
//! `postgres` run as the unprivileged `postgres` account (created by Debian's
//! `postgresql` package) and the cluster lives where that account can reach:
//! see [`cluster_dir_for`].
//!
//! # Several keyward processes on one data dir
//!
//! Support staff run `keyward token create` or `keyward subscriber show`
//! beside a running `keyward serve`. [`SharedCluster`] lets them share the
//! cluster without ever stopping a postmaster that another process uses:
//!
//! - **Whoever starts the postmaster owns it**; it is that process's child
//!   (so the parent-death signal still stops it if the owner is killed) and
//!   only the owner ever stops it. Other processes *attach*: they connect to
//!   the socket named in `postmaster.pid` (line 5 the directory, line 4 the
//!   port) after checking that its pid is a live `postgres` process working
//!   in this `pgdata`, that it says `ready` and that it answers on the socket.
//! - Three `flock` files next to `pgdata/` say who is there.
//!   `keyward.start.lock` (the *gate*, exclusive and short) serialises every
//!   decision to start, attach or stop. `keyward.users.lock` is held shared
//!   by every process using the cluster, owner included, for as long as it
//!   does; it is only ever held exclusively by a process that also holds the
//!   gate, so taking it shared under the gate never waits.
//!   `keyward.serve.lock` is held exclusively by a `serve` or `dispatch` for
//!   its whole life and holds its pid.
//! - A **command** (`token`, `subscriber`, `migrate`: [`Tenure::Command`])
//!   takes the gate, takes the users lock shared, and attaches if a ready
//!   postmaster runs; otherwise it starts its own and owns it. A postmaster
//!   that is starting or stopping without anyone holding the gate (its owner
//!   died) is waited for, never stopped: a command never stops a postmaster
//!   it did not start.
//! - A **long-running** process (`serve`, `dispatch`: [`Tenure::LongRunning`])
//!   never attaches, because it would then depend on an owner that may exit
//!   first. It refuses to start while another one holds `keyward.serve.lock`
//!   (two of them on one private database are a mistake; with a shared
//!   `DATABASE_URL` they are fine). Otherwise it takes the gate and tries the
//!   users lock *exclusively*: if a command is using the cluster (perhaps
//!   one that started it), it lets go of the gate and tries again until the
//!   commands are done, so it never pulls a database from under a command.
//!   With the exclusive lock no keyward process uses the cluster, so a
//!   postmaster still running is an orphan (from an older build, or started
//!   by hand) and is stopped as before; then it starts its own.
//! - The **owner stops** its postmaster only under the gate, once it has let
//!   go of its shared lock and can take the users lock exclusively: no other
//!   keyward process is attached and, the gate being held, none can attach
//!   to a postmaster that is going away. It waits up to [`ATTACHED_GRACE`]
//!   for attached commands to finish; commands are short, and only commands
//!   ever attach.
//!
//! Hence, on one data dir: a command during `serve` attaches and `serve`
//! keeps its postmaster; two commands at once share the one the first
//! started, which stops it after the second is done; a `serve` started while
//! a command owns the cluster waits for that command, which stops its
//! postmaster undisturbed, and then starts its own; a `serve` stopping while
//! a command is attached waits for it first. Locks vanish with their process,
//! so a killed process never leaves one held; its postmaster dies with it.
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Gid, Pid, Uid, User};
use sha2::{Digest, Sha256};

/// The superuser `initdb` creates; keyward connects as it over the socket.
pub const SUPERUSER: &str = "keyward";
/// Port number in the socket's file name (`.s.PGSQL.5432`); no TCP is opened.
const SOCKET_PORT: u16 = 5432;
/// Where clusters live when we are root and the data dir is out of reach.
const ROOT_CLUSTER_BASE: &str = "/var/lib/keyward";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH or under \
         /usr/lib/postgresql/*/bin: install them with `apt-get install postgresql`"
    )]
    BinariesNotFound,
    #[error(
        "running as root, but there is no unprivileged `postgres` account to run PostgreSQL as \
         (PostgreSQL refuses root): install Debian's `postgresql` package, which creates it"
    )]
    NoPostgresUser,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Directory that holds `pgdata/`, the socket and `postgres.log`.
    pub dir: PathBuf,
    /// `fsync=off` is for throwaway test clusters only.
    pub fsync: bool,
    pub max_connections: u32,
    /// Further `-c name=value` settings.
    pub settings: Vec<(String, String)>,
}

impl ClusterOptions {
    pub fn durable(dir: PathBuf) -> Self {
        Self {
            dir,
            fsync: true,
            max_connections: 100,
            settings: Vec::new(),
        }
    }
}

/// The server binaries of one PostgreSQL installation.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub bin_dir: PathBuf,
}

impl Binaries {
    /// `initdb` on PATH, else the newest `/usr/lib/postgresql/<version>/bin`.
    pub fn locate() -> Result<Self, ClusterError> {
        let has_all = |dir: &Path| ["initdb", "postgres"].iter().all(|b| dir.join(b).is_file());
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                if has_all(&dir) {
                    // Debian links /usr/local/bin or similar to the real bin dir;
                    // follow the link so `postgres` finds its share/ files.
                    let real = fs::canonicalize(dir.join("initdb"))
                        .ok()
                        .and_then(|p| p.parent().map(Path::to_path_buf))
                        .unwrap_or(dir);
                    return Ok(Self { bin_dir: real });
                }
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                has_all(&bin).then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions
            .pop()
            .map(|(_, bin_dir)| Self { bin_dir })
            .ok_or(ClusterError::BinariesNotFound)
    }

    /// [`Binaries::locate`], and when that fails on a Debian machine where
    /// we are root, install Debian's `postgresql` package first, so that
    /// `cargo run -- serve` and `cargo test` work on a fresh machine.
    /// `KEYWARD_NO_AUTO_INSTALL=1` turns this off.
    pub fn locate_or_install() -> Result<Self, ClusterError> {
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        if let Ok(found) = Self::locate() {
            return Ok(found);
        }
        let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(found) = Self::locate() {
            return Ok(found);
        }
        let allowed = std::env::var_os("KEYWARD_NO_AUTO_INSTALL").is_none_or(|v| v.is_empty());
        if !(allowed && Uid::effective().is_root() && Path::new("/usr/bin/apt-get").exists()) {
            return Err(ClusterError::BinariesNotFound);
        }
        tracing::warn!(
            "PostgreSQL server binaries are missing: installing Debian's `postgresql` package"
        );
        eprintln!(
            "keyward: PostgreSQL server binaries are missing; running apt-get install postgresql"
        );
        for args in [
            &["update", "-qq"][..],
            &[
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "postgresql",
            ][..],
        ] {
            let status = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .status()
                .map_err(io_err("run apt-get"))?;
            if !status.success() {
                return Err(ClusterError::Failed(format!(
                    "apt-get {} failed ({status}); install PostgreSQL by hand: apt-get install postgresql",
                    args[0]
                )));
            }
        }
        Self::locate()
    }

    fn command(&self, name: &str) -> Command {
        Command::new(self.bin_dir.join(name))
    }
}

/// The account PostgreSQL processes run as: ourselves, or `postgres` when we
/// are root.
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    uid: Uid,
    gid: Gid,
    drop_privileges: bool,
}

impl RunAs {
    pub fn current() -> Result<Self, ClusterError> {
        if !Uid::effective().is_root() {
            return Ok(Self {
                uid: Uid::effective(),
                gid: Gid::effective(),
                drop_privileges: false,
            });
        }
        let user = User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or(ClusterError::NoPostgresUser)?;
        Ok(Self {
            uid: user.uid,
            gid: user.gid,
            drop_privileges: true,
        })
    }

    fn apply(&self, cmd: &mut Command) {
        if self.drop_privileges {
            cmd.uid(self.uid.as_raw()).gid(self.gid.as_raw());
        }
    }

    /// Make `dir` (created if missing) owned by the account, mode 0700.
    fn own_dir(&self, dir: &Path) -> Result<(), ClusterError> {
        fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        if self.drop_privileges {
            nix::unistd::chown(dir, Some(self.uid), Some(self.gid))
                .map_err(|e| ClusterError::Failed(format!("chown {}: {e}", dir.display())))?;
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("chmod {}", dir.display())))
    }

    /// Can this account walk down to `dir` (search permission on every
    /// ancestor)? Used to decide where a root-run cluster may live.
    fn can_traverse(&self, dir: &Path) -> bool {
        let mut path = PathBuf::new();
        for part in dir.components() {
            path.push(part);
            let Ok(meta) = fs::metadata(&path) else {
                // Not created yet: it will be created by us, owned by the account.
                return true;
            };
            let mode = meta.mode();
            let ok = if meta.uid() == self.uid.as_raw() {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid.as_raw() {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// Where the cluster for keyward's data dir lives.
///
/// Normally `<data_dir>/postgres`. When we are root and the `postgres`
/// account cannot reach the data dir (a checkout under `/root`, say), the
/// cluster goes to `/var/lib/keyward/<name>-<hash of the data dir's path>`,
/// stable across runs so data survives restarts.
pub fn cluster_dir_for(data_dir: &Path, run_as: &RunAs) -> PathBuf {
    let inside = data_dir.join("postgres");
    if !run_as.drop_privileges || run_as.can_traverse(&inside) {
        return inside;
    }
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    let name: String = data_dir
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("keyward")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect();
    PathBuf::from(ROOT_CLUSTER_BASE).join(format!("{name}-{}", hex::encode(&digest[..6])))
}

/// A running private cluster. Dropping it stops the server.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    child: Option<Child>,
}

impl Cluster {
    /// Initialise (first time only) and start the cluster, waiting until it
    /// accepts connections.
    ///
    /// A postmaster found running on the same `pgdata` is stopped first: use
    /// [`SharedCluster`] where other keyward processes may be using it.
    pub fn start(options: &ClusterOptions) -> Result<Self, ClusterError> {
        Self::start_with(options, OnLivePostmaster::Stop)
    }

    fn start_with(
        options: &ClusterOptions,
        on_live: OnLivePostmaster,
    ) -> Result<Self, ClusterError> {
        let bins = Binaries::locate_or_install()?;
        let run_as = RunAs::current()?;
        let dir = &options.dir;
        prepare_dir(&run_as, dir)?;
        let pgdata = dir.join("pgdata");
        if !pgdata.join("PG_VERSION").exists() {
            init(&bins, &run_as, dir, &pgdata, options.fsync)?;
        }
        clear_stale_pid_file(&pgdata, on_live)?;

        let log_path = dir.join("postgres.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(format!("open {}", log_path.display())))?;
        let mut cmd = bins.command("postgres");
        cmd.arg("-D")
            .arg(&pgdata)
            .arg("-k")
            .arg(dir)
            .args(["-p", &SOCKET_PORT.to_string()])
            .args(["-c", "listen_addresses="])
            .args([
                "-c",
                &format!("max_connections={}", options.max_connections),
            ])
            .args(["-c", &format!("fsync={}", on_off(options.fsync))])
            .args(["-c", &format!("full_page_writes={}", on_off(options.fsync))])
            .args(["-c", "unix_socket_permissions=0700"]);
        if !options.fsync {
            cmd.args(["-c", "synchronous_commit=off"]);
        }
        for (name, value) in &options.settings {
            cmd.args(["-c", &format!("{name}={value}")]);
        }
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io_err("duplicate log handle"))?)
            .stderr(log)
            // Own process group: a Ctrl-C in the terminal reaches keyward,
            // which drains requests first and then stops the server itself.
            .process_group(0);
        run_as.apply(&mut cmd);
        // SAFETY: prctl is async-signal-safe; it only sets the signal the
        // kernel sends this child when the spawning thread dies.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = spawn_from_keeper_thread(cmd).map_err(io_err("start postgres"))?;
        let mut cluster = Self {
            dir: dir.clone(),
            child: Some(child),
        };
        cluster.wait_ready(&log_path)?;
        Ok(cluster)
    }

    fn running(&self) -> Running {
        Running {
            pid: self.pid().map_or(0, |p| p as i32),
            socket_dir: self.dir.clone(),
            port: SOCKET_PORT,
        }
    }

    /// Directory holding the socket: the `host` to connect to.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Connection settings for `dbname` on this cluster.
    pub fn pg_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.dir)
            .port(SOCKET_PORT)
            .user(SUPERUSER)
            .dbname(dbname)
            .application_name("keyward");
        config
    }

    fn wait_ready(&mut self, log_path: &Path) -> Result<(), ClusterError> {
        let pid_file = self.dir.join("pgdata").join("postmaster.pid");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(ClusterError::Failed(format!(
                        "postgres exited during start-up ({status}); last log lines:\n{}",
                        log_tail(log_path)
                    )));
                }
            }
            // Line 8 of postmaster.pid is the server status; "ready" once it
            // accepts connections ("standby" for a hot standby, which
            // accepts read-only ones).
            if let Ok(text) = fs::read_to_string(&pid_file) {
                if matches!(
                    text.lines().nth(7).map(str::trim),
                    Some("ready" | "standby")
                ) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Failed(format!(
                    "postgres did not become ready within 60 s; last log lines:\n{}",
                    log_tail(log_path)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fast shutdown (SIGINT): ends sessions, checkpoints, removes the pid
    /// file. Escalates to an immediate shutdown after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    let _ = kill(pid, Signal::SIGQUIT);
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(30));
    }
}

/// Creates `dir` owned by the account that runs postgres, checking that its
/// socket path fits.
fn prepare_dir(run_as: &RunAs, dir: &Path) -> Result<(), ClusterError> {
    let socket_path = dir.join(format!(".s.PGSQL.{SOCKET_PORT}"));
    if socket_path.as_os_str().len() > 100 {
        return Err(ClusterError::Failed(format!(
            "cluster directory {} is too deep for a Unix socket path; use a shorter data dir",
            dir.display()
        )));
    }
    if run_as.drop_privileges {
        // The account must be able to reach `dir` through its parents.
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).map_err(io_err(format!("create {}", parent.display())))?;
        }
    }
    run_as.own_dir(dir)
}

/// How long an owner that is done waits for attached commands to finish
/// before it stops its postmaster anyway.
pub const ATTACHED_GRACE: Duration = Duration::from_secs(30);
/// How long a command waits for a postmaster it did not start to finish
/// starting or stopping.
const BUSY_WAIT: Duration = Duration::from_secs(30);
const GATE_FILE: &str = "keyward.start.lock";
const USERS_FILE: &str = "keyward.users.lock";
const LONG_RUNNING_FILE: &str = "keyward.serve.lock";

/// How long the process wants the cluster for: see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenure {
    /// `serve`, `dispatch`: until stopped. Starts and owns its postmaster;
    /// one per data dir.
    LongRunning,
    /// `token`, `subscriber`, `migrate`: one short piece of work. Attaches to
    /// a running postmaster, or starts one for itself.
    Command,
}

/// The private cluster as one of possibly several keyward processes uses
/// it: either the postmaster this process started (and will stop), or one
/// another process runs, attached to. Dropping it releases it.
#[derive(Debug)]
pub struct SharedCluster {
    running: Running,
    /// `Some` when this process started the postmaster.
    owned: Option<Cluster>,
    gate: LockFile,
    /// Held shared while this process uses the cluster.
    users: LockFile,
    /// Held by a long-running process for its whole life.
    _long_running: Option<LockFile>,
}

impl SharedCluster {
    /// Attaches to the postmaster that runs on `options.dir`, or starts one;
    /// see the module documentation for who does which, and when it waits.
    pub fn acquire(options: &ClusterOptions, tenure: Tenure) -> Result<Self, ClusterError> {
        let run_as = RunAs::current()?;
        let dir = &options.dir;
        prepare_dir(&run_as, dir)?;
        let long_running = match tenure {
            Tenure::LongRunning => Some(claim_long_running(dir)?),
            Tenure::Command => None,
        };
        let gate = LockFile::open(dir.join(GATE_FILE))?;
        let users = LockFile::open(dir.join(USERS_FILE))?;
        let pgdata = dir.join("pgdata");
        let mut last_note: Option<Instant> = None;
        let (running, owned) = loop {
            gate.lock(true)?;
            match tenure {
                Tenure::Command => {
                    // Never waits: the exclusive lock is only held under the gate.
                    users.lock(false)?;
                    match wait_unless_busy(&pgdata)? {
                        Some(running) => {
                            tracing::info!(
                                pid = running.pid,
                                dir = %dir.display(),
                                "using the private PostgreSQL cluster another process runs; \
                                 it keeps running after this command"
                            );
                            break (running, None);
                        }
                        None => {
                            let cluster = Cluster::start_with(options, OnLivePostmaster::Refuse)?;
                            break (cluster.running(), Some(cluster));
                        }
                    }
                }
                Tenure::LongRunning => {
                    if users.try_lock(true)? {
                        // No keyward process uses the cluster, and while we
                        // hold the gate none can start to.
                        let cluster = Cluster::start_with(options, OnLivePostmaster::Stop)?;
                        users.lock(false)?;
                        break (cluster.running(), Some(cluster));
                    }
                    gate.unlock();
                    if last_note.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::info!(
                            dir = %dir.display(),
                            "a keyward command (token, subscriber, migrate) is using the private \
                             PostgreSQL cluster; waiting for it to finish before starting"
                        );
                        last_note = Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        gate.unlock();
        Ok(Self {
            running,
            owned,
            gate,
            users,
            _long_running: long_running,
        })
    }

    /// Connection settings for `dbname` on this cluster.
    pub fn pg_config(&self, dbname: &str) -> tokio_postgres::Config {
        self.running.pg_config(dbname)
    }

    /// Stops using the cluster. The owner stops its postmaster, with `grace`
    /// for a fast shutdown, once no other keyward process is attached (or
    /// [`ATTACHED_GRACE`] has passed); anyone else just lets go of it.
    pub fn release(mut self, grace: Duration) {
        self.release_with(grace);
    }

    fn release_with(&mut self, grace: Duration) {
        let Some(mut cluster) = self.owned.take() else {
            self.users.unlock();
            return;
        };
        // Under the gate no one can attach to a postmaster that is going
        // away. If the gate cannot be had, stopping is still the right
        // thing: this process is the postmaster's parent and is leaving.
        let gated = self.gate.lock(true).is_ok();
        self.users.unlock();
        let deadline = Instant::now() + ATTACHED_GRACE;
        let mut noted = false;
        while gated && !self.users.try_lock(true).unwrap_or(true) {
            if Instant::now() > deadline {
                tracing::warn!(
                    "keyward commands are still using the private PostgreSQL cluster after {} s; \
                     stopping it anyway",
                    ATTACHED_GRACE.as_secs()
                );
                break;
            }
            if !noted {
                tracing::info!(
                    "waiting for keyward commands using the private PostgreSQL cluster to finish"
                );
                noted = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::info!("stopping the private PostgreSQL cluster");
        cluster.stop(grace);
        self.users.unlock();
        self.gate.unlock();
    }
}

impl Drop for SharedCluster {
    fn drop(&mut self) {
        self.release_with(Duration::from_secs(30));
    }
}

impl Running {
    fn pg_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(SUPERUSER)
            .dbname(dbname)
            .application_name("keyward");
        config
    }
}

/// A ready postmaster on `pgdata`, or `None` when none runs (a stale pid
/// file is left for the start to clear). One that is starting or stopping is
/// waited for, up to [`BUSY_WAIT`]: it is someone else's (any owner starts
/// and stops under the gate, which the caller holds), so it is not ours to
/// stop.
fn wait_unless_busy(pgdata: &Path) -> Result<Option<Running>, ClusterError> {
    let deadline = Instant::now() + BUSY_WAIT;
    loop {
        match postmaster_state(pgdata) {
            Postmaster::Ready(running) => return Ok(Some(running)),
            Postmaster::Absent | Postmaster::Stale => return Ok(None),
            Postmaster::Busy { pid } if Instant::now() > deadline => {
                return Err(ClusterError::Failed(format!(
                    "postgres (pid {pid}) runs on {} but has not answered for {} s; keyward did \
                     not start it and leaves it alone",
                    pgdata.display(),
                    BUSY_WAIT.as_secs()
                )));
            }
            Postmaster::Busy { .. } => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Takes `keyward.serve.lock` for a long-running process, or says which
/// process has it.
fn claim_long_running(dir: &Path) -> Result<LockFile, ClusterError> {
    use std::io::Write;
    let lock = LockFile::open(dir.join(LONG_RUNNING_FILE))?;
    if !lock.try_lock(true)? {
        let holder = fs::read_to_string(&lock.path).unwrap_or_default();
        let holder = holder.trim();
        let holder = if holder.is_empty() { "?" } else { holder };
        return Err(ClusterError::Failed(format!(
            "another `keyward serve` or `keyward dispatch` (pid {holder}) already runs on the \
             private database in {}; stop it first, or give every keyward process the same \
             DATABASE_URL to run several",
            dir.display()
        )));
    }
    let mut file = &lock.file;
    file.set_len(0)
        .and_then(|()| write!(file, "{}", std::process::id()))
        .map_err(io_err(format!("write {}", lock.path.display())))?;
    Ok(lock)
}

/// A file used only for `flock`. The lock belongs to this open file
/// description: it is released by [`LockFile::unlock`], by dropping, or by
/// the kernel when the process dies, and it is not inherited by postgres
/// (the file is opened close-on-exec, as Rust opens every file).
#[derive(Debug)]
struct LockFile {
    file: fs::File,
    path: PathBuf,
}

impl LockFile {
    fn open(path: PathBuf) -> Result<Self, ClusterError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(format!("open {}", path.display())))?;
        Ok(Self { file, path })
    }

    /// Waits for the lock (shared unless `exclusive`); taking another kind
    /// than the one held converts it.
    fn lock(&self, exclusive: bool) -> Result<(), ClusterError> {
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        self.flock(op).map(drop)
    }

    /// Takes the lock if no one else holds a conflicting one. Note that a
    /// failed conversion loses the lock already held (flock(2) drops it
    /// first); callers only try when losing it is fine.
    fn try_lock(&self, exclusive: bool) -> Result<bool, ClusterError> {
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        self.flock(op | libc::LOCK_NB)
    }

    fn unlock(&self) {
        let _ = self.flock(libc::LOCK_UN);
    }

    fn flock(&self, op: libc::c_int) -> Result<bool, ClusterError> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: flock on a descriptor we own; no memory is involved.
            if unsafe { libc::flock(self.file.as_raw_fd(), op) } == 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Ok(false),
                _ => return Err(io_err(format!("lock {}", self.path.display()))(e)),
            }
        }
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn init(
    bins: &Binaries,
    run_as: &RunAs,
    dir: &Path,
    pgdata: &Path,
    sync: bool,
) -> Result<(), ClusterError> {
    // A half-made pgdata (initdb killed midway) is useless: start over.
    if pgdata.exists() {
        fs::remove_dir_all(pgdata).map_err(io_err(format!("remove {}", pgdata.display())))?;
    }
    let mut cmd = bins.command("initdb");
    cmd.arg("-D")
        .arg(pgdata)
        .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale"])
        .current_dir(dir)
        .stdin(Stdio::null());
    if !sync {
        cmd.arg("--no-sync");
    }
    run_as.apply(&mut cmd);
    let out = cmd.output().map_err(io_err("run initdb"))?;
    if !out.status.success() {
        return Err(ClusterError::Failed(format!(
            "initdb failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// What to do about a postmaster that is still running on `pgdata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnLivePostmaster {
    /// Stop it: no keyward process uses it (or the caller cannot know).
    Stop,
    /// Refuse to start: it may be another process's.
    Refuse,
}

/// A crash (of the machine, or `kill -9` of postgres itself) leaves
/// `postmaster.pid` behind. PostgreSQL copes when the pid is dead, but not
/// when it has been reused by an unrelated process, and an orphaned
/// postmaster of ours (from a build without the parent-death signal) must be
/// stopped rather than fought with, when `on_live` allows it.
fn clear_stale_pid_file(pgdata: &Path, on_live: OnLivePostmaster) -> Result<(), ClusterError> {
    let pid_file = pgdata.join("postmaster.pid");
    let pid = match postmaster_state(pgdata) {
        Postmaster::Absent => return Ok(()),
        Postmaster::Stale => {
            tracing::warn!("removing stale postmaster.pid left by a crash");
            return match fs::remove_file(&pid_file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(io_err("remove stale postmaster.pid")(e))
                }
                _ => Ok(()),
            };
        }
        Postmaster::Ready(running) => running.pid,
        Postmaster::Busy { pid } => pid,
    };
    if on_live == OnLivePostmaster::Refuse {
        return Err(ClusterError::Failed(format!(
            "postgres (pid {pid}) appeared on {} while keyward was starting its own; keyward \
             did not start it and leaves it alone",
            pgdata.display()
        )));
    }
    tracing::warn!(
        pid,
        "a postmaster no keyward process uses is still running on this data dir; stopping it"
    );
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(30);
    while kill(pid, None).is_ok() && pid_file.exists() {
        if Instant::now() > deadline {
            return Err(ClusterError::Failed(format!(
                "postgres (pid {pid}) still runs on {}; stop it first",
                pgdata.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A postmaster that answers, and where.
#[derive(Debug, Clone)]
struct Running {
    pid: i32,
    socket_dir: PathBuf,
    port: u16,
}

/// What `postmaster.pid` says, checked against the process it names.
#[derive(Debug)]
enum Postmaster {
    /// No pid file: nothing runs.
    Absent,
    /// A pid file whose process is gone, or is not a postgres working in
    /// this `pgdata` (the pid was reused): safe to remove.
    Stale,
    /// A postgres of this `pgdata` that is ready and answers on its socket.
    Ready(Running),
    /// A postgres of this `pgdata` that is starting, stopping or not
    /// answering.
    Busy { pid: i32 },
}

fn postmaster_state(pgdata: &Path) -> Postmaster {
    let Ok(text) = fs::read_to_string(pgdata.join("postmaster.pid")) else {
        return Postmaster::Absent;
    };
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let Some(pid) = lines
        .first()
        .and_then(|l| l.parse::<i32>().ok())
        .filter(|p| *p > 0)
    else {
        return Postmaster::Stale;
    };
    // `comm` is the executable's name, whatever title postgres gives itself.
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "postgres" {
        return Postmaster::Stale;
    }
    // The postmaster works in its data dir. Unreadable (another user's
    // process, without root) proves nothing either way: assume it is ours.
    if let (Ok(cwd), Ok(ours)) = (
        fs::read_link(format!("/proc/{pid}/cwd")),
        fs::canonicalize(pgdata),
    ) {
        if cwd != ours {
            return Postmaster::Stale;
        }
    }
    // Lines 4, 5 and 8: port, socket directory, status.
    let port = lines.get(3).and_then(|l| l.parse::<u16>().ok());
    let socket_dir = lines
        .get(4)
        .filter(|l| !l.is_empty())
        .map(|l| PathBuf::from(*l));
    let ready = lines.get(7) == Some(&"ready");
    match (port, socket_dir) {
        (Some(port), Some(socket_dir)) if ready && answers(&socket_dir, port) => {
            Postmaster::Ready(Running {
                pid,
                socket_dir,
                port,
            })
        }
        _ => Postmaster::Busy { pid },
    }
}

/// Does a backend answer on the socket? An SSLRequest is the cheapest
/// question postgres replies to (`N` here: no TLS on a Unix socket), and
/// hanging up after the answer leaves nothing in the server's log.
fn answers(socket_dir: &Path, port: u16) -> bool {
    use std::io::{Read, Write};
    let path = socket_dir.join(format!(".s.PGSQL.{port}"));
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(path) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(5));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    // Length 8, then the SSLRequest code 80877103.
    if stream
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .is_err()
    {
        return false;
    }
    let mut reply = [0u8; 1];
    stream.read_exact(&mut reply).is_ok() && matches!(reply[0], b'N' | b'S')
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The parent-death signal fires when the *thread* that spawned the child
/// exits, not the process. Spawning every server from one thread that lives
/// as long as the process ties the server's life to the process's.
fn spawn_from_keeper_thread(cmd: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static KEEPER: OnceLock<std::sync::Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("postgres-keeper".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // All senders gone can only mean the process is ending; keep
                // the thread (and so the children) alive until it does.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the postgres keeper thread");
        std::sync::Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("postgres keeper thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("postgres keeper thread is gone"))?
}
