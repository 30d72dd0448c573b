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
    pub fn start(options: &ClusterOptions) -> Result<Self, ClusterError> {
        let bins = Binaries::locate_or_install()?;
        let run_as = RunAs::current()?;
        let dir = &options.dir;
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
                fs::create_dir_all(parent)
                    .map_err(io_err(format!("create {}", parent.display())))?;
            }
        }
        run_as.own_dir(dir)?;
        let pgdata = dir.join("pgdata");
        if !pgdata.join("PG_VERSION").exists() {
            init(&bins, &run_as, dir, &pgdata, options.fsync)?;
        }
        clear_stale_pid_file(&pgdata)?;

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
            // accepts connections.
            if let Ok(text) = fs::read_to_string(&pid_file) {
                if text.lines().nth(7).map(str::trim) == Some("ready") {
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

/// A crash (of the machine, or `kill -9` of postgres itself) leaves
/// `postmaster.pid` behind. PostgreSQL copes when the pid is dead, but not
/// when it has been reused by an unrelated process, and an orphaned
/// postmaster of ours (from a build without the parent-death signal) must be
/// stopped rather than fought with.
fn clear_stale_pid_file(pgdata: &Path) -> Result<(), ClusterError> {
    let pid_file = pgdata.join("postmaster.pid");
    let Ok(text) = fs::read_to_string(&pid_file) else {
        return Ok(());
    };
    let pid = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok());
    let Some(pid) = pid.filter(|p| *p > 0) else {
        return fs::remove_file(&pid_file).map_err(io_err("remove stale postmaster.pid"));
    };
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let is_postgres = String::from_utf8_lossy(&cmdline).contains("postgres");
    if !is_postgres {
        tracing::warn!(pid, "removing stale postmaster.pid left by a crash");
        return fs::remove_file(&pid_file).map_err(io_err("remove stale postmaster.pid"));
    }
    tracing::warn!(
        pid,
        "a postmaster is still running on this data dir; stopping it"
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
