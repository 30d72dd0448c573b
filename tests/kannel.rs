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

use keyward::config;
use keyward::dispatch::Dispatcher;

const BEARERBOX: &str = "/usr/sbin/bearerbox";
const SMSBOX: &str = "/usr/sbin/smsbox";
const FAKESMSC: &str = "/usr/lib/kannel/test/fakesmsc";
const SECRET: &str = "kannel-secret-0123456789";
const PASSWORD: &str = "sendsms-password-0123";

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
    fakesmsc_exchange_n(smsc_port, mo, 1).remove(0)
}

/// Like [`fakesmsc_exchange`], waiting for `n` MT messages (the parts of
/// a concatenated reply arrive as messages of their own).
fn fakesmsc_exchange_n(smsc_port: u16, mo: &str, n: usize) -> Vec<String> {
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
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => got.push(line),
            Err(_) => break,
        }
    }
    // A message more than expected would be a reply cut or doubled.
    if let Ok(extra) = rx.recv_timeout(Duration::from_millis(1500)) {
        got.push(extra);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        got.len() >= n,
        "fakesmsc got {} of {n} messages for {mo:?} within 40 s: {got:?}",
        got.len()
    );
    got
}

/// A block of README.md: the fenced block after the `<!-- marker -->` line.
fn readme_block(marker: &str) -> String {
    let readme = include_str!("../README.md");
    let at = readme
        .find(&format!("<!-- {marker}"))
        .unwrap_or_else(|| panic!("README.md has no <!-- {marker} --> block"));
    let rest = &readme[at..];
    let open = rest.find("```").expect("a fenced block follows the marker");
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").expect("the block is closed")].to_owned()
}

/// The text of the parts of a concatenated UCS-2 message as fakesmsc
/// shows them (`from to udh <udh> data <data>`, URL-encoded), in order.
fn reassemble_ucs2(lines: &[String]) -> String {
    let mut parts: Vec<(u8, String)> = lines
        .iter()
        .map(|line| {
            let line =
                line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ':' || c == ' ');
            let line = line.trim_start_matches('<').trim_end_matches('>');
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields.get(2), Some(&"udh"), "a concatenated part: {line}");
            let decode = |s: &str| -> Vec<u8> {
                percent_encoding::percent_decode_str(&s.replace('+', " ")).collect()
            };
            let udh = decode(fields[3]);
            // 05 00 03 ref total seq: the concatenation element.
            let seq = *udh.last().expect("a UDH");
            assert_eq!(fields.get(4), Some(&"data"), "binary (UCS-2) data: {line}");
            let data = decode(fields[5]);
            let units: Vec<u16> = data
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            (seq, String::from_utf16_lossy(&units))
        })
        .collect();
    parts.sort_by_key(|(seq, _)| *seq);
    parts.into_iter().map(|(_, text)| text).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mau_and_unsubscribe_through_a_real_kannel() {
    ensure_kannel();
    let dir = tempfile::tempdir().unwrap();
    let [admin, smsbox_port, smsc_port, sendsms_port] = free_ports::<4>();

    // keyward first: smsbox needs its URL. Its configuration is the
    // README's example as written, with our secrets and port.
    let db = support::fresh_database().await;
    let toml = readme_block("kannel-toml")
        .replace("SENDSMS_PASSWORD", PASSWORD)
        .replace("SECRET", SECRET)
        .replace("127.0.0.1:13013", &format!("127.0.0.1:{sendsms_port}"))
        + r#"
[[programs]]
name = "promo"
brand = "Toko Maju"
frequency = { id = "2-4 SMS per bulan", en = "2-4 msgs/month", ru = "2-4 SMS в месяц" }
"#;
    let mut settings =
        config::Settings::from_sources(Some((Path::new("keyward.toml"), &toml)), &[])
            .unwrap_or_else(|e| panic!("the README's Kannel example is a valid config: {e}"));
    settings.listen = "127.0.0.1:0".into();
    settings.service.max_messages_per_number_per_minute = 0;
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

{readme}"#,
            bearer_log = log("bearerbox.log"),
            smsbox_log = log("smsbox.log"),
            readme = readme_block("kannel-conf")
                .replace("http://127.0.0.1:8080", &app.address)
                .replace("SENDSMS_PASSWORD", PASSWORD)
                .replace("SECRET", SECRET),
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
    let dispatcher = Arc::new(
        Dispatcher::new(&settings, pool, Arc::new(keyward::metrics::Metrics::new()))
            .expect("the senders build"),
    );
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

    // A Russian opt-in: its welcome is UCS-2 and longer than one SMS (70
    // characters), so Kannel must send every part, stop instruction and all.
    let parts = tokio::task::spawn_blocking(move || {
        fakesmsc_exchange_n(smsc_port, "+79161234567 3344 text СТАРТ", 2)
    })
    .await
    .unwrap();
    let sent: String = app
        .db()
        .await
        .query_one(
            "SELECT text FROM outbox WHERE msisdn = '+79161234567' AND kind = 'welcome'",
            &[],
        )
        .await
        .expect("the Russian welcome was queued")
        .get(0);
    assert!(sent.chars().count() > 70, "a two-part reply: {sent}");
    assert_eq!(
        parts.len(),
        2,
        "exactly two parts, none cut or doubled: {parts:?}"
    );
    let received = reassemble_ucs2(&parts);
    assert_eq!(received, sent, "fakesmsc received the whole welcome");
    assert!(
        received.contains("СТОП"),
        "with its stop instruction: {received}"
    );

    let _ = stop.send(true);
    let _ = running.await;
    drop(processes);
}
