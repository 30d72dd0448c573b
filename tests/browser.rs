//! The web console in a real headless Chromium, driven through
//! chromedriver with fantoccini: sign in, look a subscribed number up, see
//! its consent text, record an opt-out (with its confirmation step), see
//! the new state; a stored `<script>` text is inert. Saves a screenshot to
//! `target/console.png`.
//!
//! Chromium and chromedriver come from Debian (`chromium`,
//! `chromium-driver`); when they are missing and we are root they are
//! installed here, as `deploy/install-deps.sh` does for CI. Without them
//! the test fails: it never passes by skipping.

#[path = "support/mod.rs"]
mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

const NUMBER: &str = "+6281234567890";

fn ensure_chromium() {
    let have = |p: &str| Path::new(p).exists();
    if have("/usr/bin/chromium") && have("/usr/bin/chromedriver") {
        return;
    }
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "Chromium is missing: install the Debian packages chromium and chromium-driver"
    );
    let status = Command::new("sh")
        .arg("-c")
        .arg(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             --no-install-recommends chromium chromium-driver",
        )
        .status()
        .expect("run apt-get");
    assert!(status.success(), "installing chromium failed");
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_support_agent_looks_a_number_up_and_records_an_opt_out_in_chromium() {
    ensure_chromium();
    let app = support::spawn_app().await;
    let secret = keyward::staff::new_token();
    app.db()
        .await
        .execute(
            "INSERT INTO api_tokens (name, role, token_sha256) VALUES ('ana', 'support', $1)",
            &[&keyward::staff::hash_token(&secret).as_slice()],
        )
        .await
        .unwrap();
    app.text(NUMBER, "MAU dong").await;
    app.text(NUMBER, "<script>document.title='pwned'</script>")
        .await;

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=412,1200",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session");

    let result = async {
        browser.goto(&app.url("/console")).await?;
        assert!(browser
            .current_url()
            .await?
            .path()
            .ends_with("/console/login"));
        browser
            .find(Locator::Css("#token"))
            .await?
            .send_keys(&secret)
            .await?;
        browser
            .find(Locator::Css("button[type=submit]"))
            .await?
            .click()
            .await?;
        browser.wait().for_element(Locator::Css("svg")).await?;

        browser
            .find(Locator::Css("#number"))
            .await?
            .send_keys("0812-3456-7890")
            .await?;
        browser
            .find(Locator::Css("main button[type=submit]"))
            .await?
            .click()
            .await?;
        let programs = browser
            .wait()
            .for_element(Locator::Css("#programs"))
            .await?
            .text()
            .await?;
        assert!(programs.contains("subscribed"), "{programs}");
        assert!(
            programs.contains("MAU dong"),
            "consent text shown: {programs}"
        );
        let timeline = browser
            .find(Locator::Css("#timeline"))
            .await?
            .text()
            .await?;
        assert!(
            timeline.contains("<script>document.title='pwned'</script>"),
            "the stored script is shown as text: {timeline}"
        );
        let title = browser.title().await?;
        assert!(!title.contains("pwned"), "and never ran: {title}");

        browser
            .find(Locator::Css("#reason"))
            .await?
            .send_keys("called the hotline")
            .await?;
        browser
            .find(Locator::Css("#opt-out button"))
            .await?
            .click()
            .await?;
        let confirm = browser.wait().for_element(Locator::Css("#confirm")).await?;
        let page = browser.source().await?;
        assert!(page.contains("Record this opt-out?"));
        confirm.find(Locator::Css("button")).await?.click().await?;
        let programs = browser
            .wait()
            .for_element(Locator::Css("#programs"))
            .await?
            .text()
            .await?;
        assert!(programs.contains("unsubscribed"), "{programs}");
        assert!(
            programs.contains("ana"),
            "the staff member is the actor: {programs}"
        );

        let png = browser.screenshot().await?;
        let path = target_dir().join("console.png");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the console works in Chromium");
    assert_eq!(
        app.count(
            "SELECT count(*) FROM subscription_events WHERE cause = 'staff' AND actor = 'ana'"
        )
        .await,
        1
    );
}
