//! The `keyward` binary as a newcomer runs it: `keyward serve` with no
//! configuration and no database, stopped with Ctrl-C or killed outright.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

const BIN: &str = env!("CARGO_BIN_EXE_keyward");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A data dir the `postgres` account can reach when the tests run as root.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

struct Serve {
    child: Child,
    port: u16,
}

/// Secret of the generic webhook in every `serve` these tests start.
const GENERIC_SECRET: &str = "test-secret-0123456789";

impl Serve {
    fn start(dir: &Path) -> Self {
        let serve = Self::spawn(dir);
        serve.wait_until_ready();
        serve
    }

    /// Starts `keyward serve` without waiting for it to be ready.
    fn spawn(dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new(BIN)
            .arg("serve")
            .current_dir(dir)
            .env_remove("DATABASE_URL")
            .env_remove("KEYWARD_CONFIG")
            .env("KEYWARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("KEYWARD_GATEWAYS__GENERIC__SECRET", GENERIC_SECRET)
            // The webhook loops below send more than the default flood limit.
            .env("KEYWARD_SERVICE__MAX_MESSAGES_PER_NUMBER_PER_MINUTE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start keyward serve");
        Self { child, port }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        while Instant::now() < deadline {
            if let Ok(res) = http_status::get(&url) {
                if res == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("keyward serve did not become ready on port {}", self.port);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    fn wait_for_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("keyward did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    /// A failing test still stops the server it started (and so, by the
    /// parent-death signal, its postgres).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Minimal blocking GET that returns the status code, without a second
/// HTTP client dependency.
mod http_status {
    pub fn get(url: &str) -> std::io::Result<u16> {
        use std::io::{Read, Write};
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut stream = std::net::TcpStream::connect(host)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        write!(
            stream,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status line"))
    }
}

fn postmaster_pid(dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(dir.join(".keyward/postgres/pgdata/postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

fn process_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

async fn with_cluster_db<T>(dir: &Path, f: impl AsyncFnOnce(&tokio_postgres::Client) -> T) -> T {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(dir.join(".keyward/postgres"))
        .port(5432)
        .user("keyward")
        .dbname("postgres");
    let (client, conn) = config
        .connect(NoTls)
        .await
        .expect("connect to the private cluster");
    let driver = tokio::spawn(conn);
    let out = f(&client).await;
    drop(client);
    let _ = driver.await;
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_without_set_up_stops_cleanly_and_keeps_its_data() {
    let dir = data_dir();
    let mut serve = Serve::start(dir.path());
    let pid = postmaster_pid(dir.path()).expect("the private cluster is running");
    with_cluster_db(dir.path(), async |c| {
        c.execute(
            "INSERT INTO audit_log (actor, method, endpoint) VALUES ('test', 'GET', '/first-run')",
            &[],
        )
        .await
        .unwrap()
    })
    .await;

    serve.signal(nix::sys::signal::Signal::SIGINT);
    let status = serve.wait_for_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    assert!(!process_alive(pid), "postgres {pid} left behind");
    assert!(
        postmaster_pid(dir.path()).is_none(),
        "clean shutdown removes the pid file"
    );

    let mut serve = Serve::start(dir.path());
    let kept: i64 = with_cluster_db(dir.path(), async |c| {
        c.query_one(
            "SELECT count(*) FROM audit_log WHERE endpoint = '/first-run'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    })
    .await;
    assert_eq!(kept, 1, "data of the first run survives a restart");
    serve.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(serve.wait_for_exit(Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_keyward_leaves_no_server_behind_and_starts_again() {
    let dir = data_dir();
    let mut serve = Serve::start(dir.path());
    let pid = postmaster_pid(dir.path()).expect("running");
    serve.signal(nix::sys::signal::Signal::SIGKILL);
    serve.wait_for_exit(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!process_alive(pid), "postgres outlived a killed keyward");

    let mut again = Serve::start(dir.path());
    again.signal(nix::sys::signal::Signal::SIGINT);
    assert!(again.wait_for_exit(Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_pid_file_from_a_crash_does_not_block_the_next_start() {
    let dir = data_dir();
    let mut serve = Serve::start(dir.path());
    serve.signal(nix::sys::signal::Signal::SIGINT);
    assert!(serve.wait_for_exit(Duration::from_secs(10)).success());
    // What a power cut leaves: a pid file naming a live process that is not
    // postgres (our own test process).
    let pid_file = dir.path().join(".keyward/postgres/pgdata/postmaster.pid");
    std::fs::write(
        &pid_file,
        format!(
            "{}\n{}\n0\n5432\n\n\n0 0\nready\n",
            std::process::id(),
            dir.path().display()
        ),
    )
    .unwrap();

    let mut again = Serve::start(dir.path());
    again.signal(nix::sys::signal::Signal::SIGINT);
    assert!(again.wait_for_exit(Duration::from_secs(10)).success());
}

#[test]
fn check_config_reports_each_problem_on_its_own_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[shortcodes]]\ncode = \"3344\"\nprogram = \"nope\"\n\n[[programs]]\nname = \"Promo\"\nbrand = \"\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 3, "{stderr}");
    assert!(lines.iter().all(|l| l.starts_with("config: ")), "{stderr}");
    assert!(stderr.contains("program `nope` is not defined"), "{stderr}");
}

#[test]
fn serve_refuses_to_start_on_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env("KEYWARD_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config: listen"));
    assert!(!dir.path().join(".keyward").exists(), "nothing started");
}

#[test]
fn check_config_lints_templates_and_reports_encoding_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[shortcodes]]\ncode = \"3344\"\nprogram = \"promo\"\n\n[[programs]]\nname = \"promo\"\nbrand = \"Toko Maju\"\nfrequency = { id = \"2-4 SMS per bulan\" }\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 6 kinds of reply in 3 languages.
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("promo.")).count(),
        18,
        "{stdout}"
    );
    assert!(
        stdout.contains("promo.id.welcome: GSM-7, 1 segment: Toko Maju"),
        "{stdout}"
    );
    assert!(stdout.contains("promo.ru.welcome: UCS-2"), "{stdout}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[shortcodes]]\ncode = \"3344\"\nprogram = \"p\"\n[[programs]]\nname = \"p\"\nbrand = \"B\"\nfrequency = { en = \"weekly\" }\n[programs.replies.en]\nwelcome = \"Hi {name}, welcome to {brand}\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown variable {name}"), "{stderr}");
    assert!(stderr.contains("does not say how to stop"), "{stderr}");
}

// --- Several keyward processes on one data dir (issue #12) -----------------

/// A keyward command as support staff run it beside `serve`: same data dir,
/// no `DATABASE_URL`.
fn keyward_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("KEYWARD_CONFIG")
        .stdin(Stdio::null());
    cmd
}

/// Runs a command to the end and insists that it succeeded.
fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out = keyward_command(dir, args)
        .output()
        .unwrap_or_else(|e| panic!("run keyward {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "keyward {args:?}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A command whose stdout is a pipe of one page that the test does not
/// read yet: once the output fills it, the command is blocked in `write`
/// in the middle of its work, holding the database, for as long as the
/// test wants.
struct HeldCommand {
    child: Child,
    stdout: Option<std::process::ChildStdout>,
    reader: Option<std::thread::JoinHandle<std::io::Result<String>>>,
}

impl HeldCommand {
    fn spawn(dir: &Path, args: &[&str]) -> Self {
        use std::os::fd::AsRawFd;
        let mut child = keyward_command(dir, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a keyward command");
        let stdout = child.stdout.take().unwrap();
        // The command prints only after starting or attaching to a cluster
        // and querying it, long after this runs.
        // SAFETY: fcntl on a pipe descriptor we own.
        let size = unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
        assert_eq!(
            size,
            4096,
            "shrink the pipe: {}",
            std::io::Error::last_os_error()
        );
        Self {
            child,
            stdout: Some(stdout),
            reader: None,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits until the pipe is full, i.e. the command is blocked printing.
    fn wait_until_blocked(&mut self) {
        use std::os::fd::AsRawFd;
        let fd = self.stdout.as_ref().unwrap().as_raw_fd();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut queued: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int.
            assert_eq!(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) }, 0);
            if queued >= 4096 {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the command ended ({status}) before its output filled the pipe");
            }
            assert!(
                Instant::now() < deadline,
                "the command never filled its pipe"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Starts reading the rest of the output, which lets the command go on.
    fn release(&mut self) {
        use std::io::Read;
        if let Some(mut stdout) = self.stdout.take() {
            self.reader = Some(std::thread::spawn(move || {
                let mut out = String::new();
                stdout.read_to_string(&mut out).map(|_| out)
            }));
        }
    }

    /// Lets the command go on and waits for it to succeed; its output.
    fn finish(mut self) -> String {
        self.release();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the command did not end");
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = self.reader.take().unwrap().join().unwrap();
        let out = out.expect("read the command's output");
        assert!(status.success(), "{status}; output:\n{out}");
        out
    }
}

impl Drop for HeldCommand {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The parent of a process, from /proc/<pid>/stat.
fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // "pid (comm) state ppid …"; comm may hold spaces, so skip past ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(1).unwrap().parse().unwrap()
}

/// POSTs a signed generic webhook; returns the status and the body.
async fn post_generic(
    http: &reqwest::Client,
    port: u16,
    id: &str,
    from: &str,
    text: &str,
) -> (u16, String) {
    let body = serde_json::to_vec(
        &serde_json::json!({"id": id, "from": from, "to": "3344", "text": text}),
    )
    .unwrap();
    let timestamp = chrono::Utc::now().timestamp();
    let secret = keyward::config::Secret::new(GENERIC_SECRET);
    let res = http
        .post(format!("http://127.0.0.1:{port}/webhooks/generic"))
        .header("content-type", "application/json")
        .header("x-keyward-timestamp", timestamp.to_string())
        .header(
            "x-keyward-signature",
            keyward::gateways::generic::sign(&secret, timestamp, &body),
        )
        .body(body)
        .send()
        .await
        .expect("the webhook reaches keyward");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

const SUBSCRIBER: &str = "+6281234567890";

/// Gives [`SUBSCRIBER`] a timeline long enough that `subscriber show`
/// prints far more than a page, then stops `serve`: afterwards no keyward
/// process runs on `dir`.
async fn prepare_long_timeline(dir: &Path) {
    let mut serve = Serve::start(dir);
    let http = http_client();
    for i in 0..30 {
        let text = format!("message {i}: {}", "just saying hello ".repeat(20));
        let (status, body) =
            post_generic(&http, serve.port, &format!("long-{i}"), SUBSCRIBER, &text).await;
        assert_eq!(status, 200, "{body}");
    }
    serve.signal(nix::sys::signal::Signal::SIGINT);
    assert!(serve.wait_for_exit(Duration::from_secs(30)).success());
    assert!(postmaster_pid(dir).is_none(), "serve stopped its postgres");
}

/// Every webhook answer while it runs, until `stop` is set.
async fn post_webhooks_until(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<(u16, String)> {
    use std::sync::atomic::Ordering;
    let http = http_client();
    let mut answers = Vec::new();
    let mut i = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let from = format!("+62812{:07}", 1_000_000 + i % 50);
        let text = if i % 2 == 0 { "MAU" } else { "STOP" };
        answers.push(post_generic(&http, port, &format!("loop-{i}"), &from, text).await);
        i += 1;
        // Leaves CPU to the commands on a small machine.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    answers
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_during_serve_use_its_database_and_leave_it_running() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = data_dir();
    let mut serve = Serve::start(dir.path());
    let postmaster = postmaster_pid(dir.path()).expect("serve runs the private cluster");
    assert_eq!(
        parent_of(postmaster),
        serve.pid(),
        "serve owns its postgres"
    );
    let (status, body) = post_generic(&http_client(), serve.port, "first", SUBSCRIBER, "MAU").await;
    assert_eq!(status, 200, "{body}");

    let stop = Arc::new(AtomicBool::new(false));
    let poster = tokio::spawn(post_webhooks_until(serve.port, stop.clone()));
    let path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let dir = path.as_path();
        let unchanged = |after: &str| {
            assert_eq!(
                postmaster_pid(dir),
                Some(postmaster),
                "serve's postgres is still the one running after {after}"
            );
            assert!(
                process_alive(postmaster),
                "serve's postgres died after {after}"
            );
        };
        let token = run_ok(
            dir,
            &["token", "create", "--role", "admin", "--name", "ana"],
        );
        assert!(token.starts_with("kw_"), "{token}");
        unchanged("token create");
        let list = run_ok(dir, &["token", "list"]);
        assert!(list.lines().any(|l| l.starts_with("ana ")), "{list}");
        unchanged("token list");
        let shown = run_ok(dir, &["subscriber", "show", "0812-3456-7890"]);
        assert!(shown.starts_with(SUBSCRIBER), "{shown}");
        unchanged("subscriber show");
        let migrated = run_ok(dir, &["migrate"]);
        // `migrate` logs to stdout too; its report is the last line.
        assert_eq!(
            migrated.lines().last(),
            Some("0 migration(s) applied"),
            "{migrated}"
        );
        unchanged("migrate");

        // Two commands at once, both attached to serve's cluster.
        let both = [
            vec!["token", "create", "--role", "support", "--name", "bob"],
            vec!["subscriber", "show", "0812-3456-7890"],
        ]
        .map(|args| {
            let dir = dir.to_path_buf();
            std::thread::spawn(move || run_ok(&dir, &args))
        })
        .map(|t| t.join().expect("a command thread panicked"));
        assert!(both[0].starts_with("kw_"), "{}", both[0]);
        assert!(both[1].starts_with(SUBSCRIBER), "{}", both[1]);
        unchanged("two commands at once");
        let list = run_ok(dir, &["token", "list"]);
        assert!(list.lines().any(|l| l.starts_with("bob ")), "{list}");
    })
    .await
    .expect("the commands succeed");

    stop.store(true, Ordering::Relaxed);
    let answers = poster.await.unwrap();
    // The loop ran beside every command (they take seconds, it posts every
    // ~10 ms), and not one message was refused.
    assert!(
        answers.len() >= 20,
        "only {} webhooks were posted",
        answers.len()
    );
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status != 200)
        .collect();
    assert!(
        refused.is_empty(),
        "{} of {} webhooks were not 200, e.g. {:?}",
        refused.len(),
        answers.len(),
        refused.first()
    );
    let readyz = format!("http://127.0.0.1:{}/readyz", serve.port);
    assert_eq!(http_status::get(&readyz).unwrap(), 200);
    let (status, body) = post_generic(&http_client(), serve.port, "last", SUBSCRIBER, "STOP").await;
    assert_eq!(status, 200, "{body}");

    serve.signal(nix::sys::signal::Signal::SIGINT);
    assert!(serve.wait_for_exit(Duration::from_secs(30)).success());
    assert!(!process_alive(postmaster), "serve stopped its postgres");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_commands_share_the_cluster_the_first_started_which_outlives_the_second() {
    let dir = data_dir();
    prepare_long_timeline(dir.path()).await;
    let show = ["subscriber", "show", SUBSCRIBER, "--limit", "100"];

    // The first command finds nothing running and starts its own cluster.
    let mut first = HeldCommand::spawn(dir.path(), &show);
    first.wait_until_blocked();
    let postmaster = postmaster_pid(dir.path()).expect("the first command runs a cluster");
    assert_eq!(
        parent_of(postmaster),
        first.pid(),
        "the first command owns it"
    );

    // A second one attaches and is done while the first still works.
    let token = run_ok(
        dir.path(),
        &["token", "create", "--role", "support", "--name", "carol"],
    );
    assert!(token.starts_with("kw_"), "{token}");
    assert_eq!(postmaster_pid(dir.path()), Some(postmaster));

    // A third attaches; the first, done meanwhile, must not stop the
    // cluster under it: it waits for the third.
    let mut third = HeldCommand::spawn(dir.path(), &show);
    third.wait_until_blocked();
    assert_eq!(
        postmaster_pid(dir.path()),
        Some(postmaster),
        "the third attached"
    );
    first.release();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        first.still_running(),
        "the owner left while a command was attached"
    );
    assert!(
        process_alive(postmaster),
        "the owner stopped postgres under an attached command"
    );
    let third_out = third.finish();
    assert!(
        third_out.contains("message 29: just saying hello"),
        "{third_out}"
    );
    assert!(
        third_out.contains("message 0: just saying hello"),
        "{third_out}"
    );
    let first_out = first.finish();
    assert_eq!(first_out, third_out, "both saw the whole timeline");

    // Only then did the owner stop it (it is its parent: no orphan either).
    let deadline = Instant::now() + Duration::from_secs(30);
    while process_alive(postmaster) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !process_alive(postmaster),
        "the owner left its postgres running"
    );
    assert!(postmaster_pid(dir.path()).is_none(), "clean shutdown");
    let list = run_ok(dir.path(), &["token", "list"]);
    assert!(list.lines().any(|l| l.starts_with("carol ")), "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_started_while_a_command_owns_the_cluster_waits_for_it_then_runs_its_own() {
    let dir = data_dir();
    prepare_long_timeline(dir.path()).await;
    let mut command = HeldCommand::spawn(
        dir.path(),
        &["subscriber", "show", SUBSCRIBER, "--limit", "100"],
    );
    command.wait_until_blocked();
    let theirs = postmaster_pid(dir.path()).expect("the command runs a cluster");
    assert_eq!(parent_of(theirs), command.pid());

    let mut serve = Serve::spawn(dir.path());
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "serve gave up instead of waiting"
    );
    let readyz = format!("http://127.0.0.1:{}/readyz", serve.port);
    assert!(
        http_status::get(&readyz).is_err(),
        "serve must not run before the command is done with the cluster"
    );
    assert_eq!(
        postmaster_pid(dir.path()),
        Some(theirs),
        "serve took over the cluster"
    );
    assert!(
        process_alive(theirs),
        "serve stopped the command's postgres"
    );
    assert!(command.still_running());

    let out = command.finish();
    assert!(out.contains("message 29: just saying hello"), "{out}");
    serve.wait_until_ready();
    assert!(
        !process_alive(theirs),
        "the command stopped its own postgres"
    );
    let ours = postmaster_pid(dir.path()).expect("serve runs a cluster");
    assert_eq!(parent_of(ours), serve.pid(), "serve owns the new one");
    let (status, body) =
        post_generic(&http_client(), serve.port, "after", SUBSCRIBER, "STOP").await;
    assert_eq!(status, 200, "{body}");

    serve.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(serve.wait_for_exit(Duration::from_secs(30)).success());
    assert!(!process_alive(ours));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_serve_or_dispatch_on_the_same_data_dir_refuses_and_harms_nothing() {
    let dir = data_dir();
    let mut serve = Serve::start(dir.path());
    let postmaster = postmaster_pid(dir.path()).unwrap();
    for what in ["serve", "dispatch"] {
        let out = keyward_command(dir.path(), &[what])
            .env("KEYWARD_LISTEN", format!("127.0.0.1:{}", free_port()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "another `keyward serve` or `keyward dispatch` (pid {}) already runs",
                serve.pid()
            )),
            "{what}: {stderr}"
        );
        assert_eq!(postmaster_pid(dir.path()), Some(postmaster));
        assert!(process_alive(postmaster));
    }
    let readyz = format!("http://127.0.0.1:{}/readyz", serve.port);
    assert_eq!(http_status::get(&readyz).unwrap(), 200);
    serve.signal(nix::sys::signal::Signal::SIGINT);
    assert!(serve.wait_for_exit(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_serve_takes_its_database_with_it_even_with_a_command_attached() {
    let dir = data_dir();
    prepare_long_timeline(dir.path()).await;
    let mut serve = Serve::start(dir.path());
    let postmaster = postmaster_pid(dir.path()).unwrap();
    let mut command = HeldCommand::spawn(
        dir.path(),
        &["subscriber", "show", SUBSCRIBER, "--limit", "100"],
    );
    command.wait_until_blocked();
    assert_eq!(postmaster_pid(dir.path()), Some(postmaster), "it attached");

    // Attaching must not make postgres outlive its parent.
    serve.signal(nix::sys::signal::Signal::SIGKILL);
    serve.wait_for_exit(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(postmaster) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !process_alive(postmaster),
        "postgres outlived a killed serve"
    );
    // The command had its answer already; it lets go without stopping
    // anything and ends normally.
    let out = command.finish();
    assert!(out.contains("message 29: just saying hello"), "{out}");

    let mut again = Serve::start(dir.path());
    again.signal(nix::sys::signal::Signal::SIGINT);
    assert!(again.wait_for_exit(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_pid_file_naming_another_clusters_postgres_leaves_that_one_alone() {
    let (here, there) = (data_dir(), data_dir());
    let mut serve = Serve::start(here.path());
    serve.signal(nix::sys::signal::Signal::SIGINT);
    assert!(serve.wait_for_exit(Duration::from_secs(30)).success());
    let mut other = Serve::start(there.path());
    let others_postgres = postmaster_pid(there.path()).unwrap();
    // After a crash the pid in postmaster.pid may have been reused by a
    // postgres of another cluster: that one is not ours to stop.
    std::fs::write(
        here.path().join(".keyward/postgres/pgdata/postmaster.pid"),
        format!(
            "{others_postgres}\n{}\n0\n5432\n{}\n\n0 0\nready\n",
            here.path().join(".keyward/postgres/pgdata").display(),
            here.path().join(".keyward/postgres").display()
        ),
    )
    .unwrap();

    let token = run_ok(
        here.path(),
        &["token", "create", "--role", "admin", "--name", "ana"],
    );
    assert!(token.starts_with("kw_"), "{token}");
    let mut again = Serve::start(here.path());
    assert!(
        process_alive(others_postgres),
        "stopped another cluster's postgres"
    );
    assert_eq!(postmaster_pid(there.path()), Some(others_postgres));
    let readyz = format!("http://127.0.0.1:{}/readyz", other.port);
    assert_eq!(http_status::get(&readyz).unwrap(), 200);

    again.signal(nix::sys::signal::Signal::SIGINT);
    assert!(again.wait_for_exit(Duration::from_secs(30)).success());
    other.signal(nix::sys::signal::Signal::SIGINT);
    assert!(other.wait_for_exit(Duration::from_secs(30)).success());
}
