//! End to end with the real Kannel: fakesmsc → bearerbox → smsbox →
//! keyward's `/webhooks/kannel`, and keyward's reply → smsbox `sendsms` →
//! bearerbox → fakesmsc. Everything on 127.0.0.1, on free ports.
//!
//! Needs Debian's `kannel` and `kannel-extras` (for fakesmsc); as root they
//! are installed when missing (as `.ci/run` does), otherwise the test fails
//! saying what to install.

#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::config::{self, Secret, Secrets};
use keyward::dispatch::Dispatcher;

const BEARERBOX: &str = "/usr/sbin/bearerbox";
const SMSBOX: &str = "/usr/sbin/smsbox";
const FAKESMSC: &str = "/usr/lib/kannel/test/fakesmsc";
const SECRET: &str = "kannel-secret-0123456789";

fn ensure_kannel() {
    if [BEARERBOX, SMSBOX, FAKESMSC]
        .iter()
        .all(|p| Path::new(p).exists())
    {
        return;
    }
    let root = nix::unistd::Uid::effective().is_root();
    assert!(
        root,
        "Kannel is not installed: apt-get install kannel kannel-extras (or run deploy/install-deps.sh)"
    );
    let ok = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "kannel",
            "kannel-extras",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "apt-get install kannel kannel-extras failed");
}

/// Kills the Kannel processes however the test ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs fakesmsc sending one MO message and returns the first MT message
/// it receives (in fakesmsc's `from to type text` form).
fn fakesmsc_exchange(smsc_port: u16, mo: &str) -> String {
    let mut child = Command::new(FAKESMSC)
        .args([
            "-H",
            "127.0.0.1",
            "-r",
            &smsc_port.to_string(),
            "-i",
            "1",
            "-m",
            "1",
            mo,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fakesmsc");
    // fakesmsc logs to stderr; replies appear as "Got message N: <...>".
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("Got message").nth(1) {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    let got = rx.recv_timeout(Duration::from_secs(40));
    let _ = child.kill();
    let _ = child.wait();
    got.unwrap_or_else(|_| panic!("fakesmsc got no reply to {mo:?} within 40 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mau_and_unsubscribe_through_a_real_kannel() {
    ensure_kannel();
    let dir = tempfile::tempdir().unwrap();
    let [admin, smsbox_port, smsc_port, sendsms_port] = free_ports::<4>();

    // keyward first: smsbox needs its URL.
    let db = support::fresh_database().await;
    let mut settings = support::test_settings(|s| {
        s.shortcodes[0].reply_via = "kannel".into();
        s.gateways.kannel = Some(config::KannelSettings {
            secret: Secrets::One(Secret::new(SECRET)),
            sendsms_url: Some(format!("http://127.0.0.1:{sendsms_port}/cgi-bin/sendsms")),
            username: Some("kuser".into()),
            password: Some(Secret::new("kpass")),
        });
    });
    let app = support::spawn_app_on(db.clone(), settings.clone()).await;
    settings.service.public_url = Some(app.address.clone());
    settings.dispatch.poll_interval_ms = 50;

    let conf = dir.path().join("kannel.conf");
    let log = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(
        &conf,
        format!(
            r#"group = core
admin-port = {admin}
admin-password = adminpw
admin-interface = 127.0.0.1
smsbox-port = {smsbox_port}
box-allow-ip = 127.0.0.1
log-file = "{bearer_log}"
log-level = 0
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
host = 127.0.0.1
port = {smsc_port}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox_port}
sendsms-port = {sendsms_port}
sendsms-interface = 127.0.0.1
log-file = "{smsbox_log}"
log-level = 0

group = sendsms-user
username = kuser
password = kpass

group = sms-service
keyword = default
get-url = "{app}/webhooks/kannel?token={SECRET}&from=%p&to=%P&text=%a&id=%I&time=%T&coding=%c&charset=%C"
max-messages = 0
omit-empty = true
accept-x-kannel-headers = true
"#,
            bearer_log = log("bearerbox.log"),
            smsbox_log = log("smsbox.log"),
            app = app.address,
        ),
    )
    .unwrap();
    let spawn = |bin: &str| {
        Command::new(bin)
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"))
    };
    let mut processes = Processes(vec![spawn(BEARERBOX)]);
    wait_for_port(smsbox_port);
    processes.0.push(spawn(SMSBOX));
    wait_for_port(sendsms_port);
    wait_for_port(smsc_port);

    // The dispatcher sends replies through smsbox's sendsms.
    let pool = keyward::db::pool(db.clone(), 2).unwrap();
    let dispatcher = Arc::new(Dispatcher::new(
        &settings,
        pool,
        Arc::new(keyward::metrics::Metrics::new()),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(dispatcher.run(1, stopped));

    let welcome = tokio::task::spawn_blocking(move || {
        fakesmsc_exchange(smsc_port, "6281234567890 3344 text MAU")
    })
    .await
    .unwrap();
    assert!(welcome.contains("3344"), "{welcome}");
    assert!(welcome.contains("6281234567890"), "{welcome}");
    assert!(
        welcome.contains("UNSUBSCRIBE ke 3344"),
        "the welcome says how to stop: {welcome}"
    );
    let stored: (String, String) = {
        let row = app
            .db()
            .await
            .query_one(
                "SELECT msisdn, action::text FROM inbound_messages WHERE gateway = 'kannel' AND text = 'MAU'",
                &[],
            )
            .await
            .expect("keyward stored the MAU");
        (row.get(0), row.get(1))
    };
    assert_eq!(stored, ("+6281234567890".to_owned(), "opt_in".to_owned()));

    let goodbye = tokio::task::spawn_blocking(move || {
        fakesmsc_exchange(smsc_port, "6281234567890 3344 text UNSUBSCRIBE")
    })
    .await
    .unwrap();
    // A bare UNSUBSCRIBE is read as English, so the goodbye is in English.
    assert!(goodbye.contains("unsubscribed"), "{goodbye}");
    assert!(
        goodbye.contains("START to 3344"),
        "the goodbye says how to rejoin: {goodbye}"
    );
    let state: String = app
        .db()
        .await
        .query_one(
            "SELECT state::text FROM subscriptions WHERE msisdn = '+6281234567890'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "unsubscribed");
    // Kannel's own answer to the get-url request became no SMS: each
    // exchange above saw exactly our reply first, and the outbox holds two.
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE status IN ('sent', 'delivered')")
            .await,
        2
    );

    let _ = stop.send(true);
    let _ = running.await;
    drop(processes);
}
