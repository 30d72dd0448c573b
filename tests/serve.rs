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

impl Serve {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new(BIN)
            .arg("serve")
            .current_dir(dir)
            .env_remove("DATABASE_URL")
            .env_remove("KEYWARD_CONFIG")
            .env("KEYWARD_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start keyward serve");
        let serve = Self { child, port };
        serve.wait_until_ready();
        serve
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
