//! Two keyward instances on one database, as in "Running more than one"
//! (README): one stops abruptly in the middle of the load, the gateway
//! retries what it did not get an answer for at the other, and two
//! dispatchers share the outbox. (The failover of PostgreSQL itself is
//! `deploy/cluster/drill.sh`.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyward::dispatch::Dispatcher;
use keyward::metrics::Metrics;
use keyward::startup::Application;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{self, fresh_database, spawn_app_on, TestApp};

const SENDERS: usize = 8;
const PER_SENDER: usize = 30;
/// Instance A stops once this many messages have been sent.
const STOP_AFTER: usize = 80;

/// One message sent to `app`: the keyward id of a 200, or `None` when no
/// 200 came (the connection broke, or another answer).
async fn send(app: &TestApp, body: &serde_json::Value) -> Option<String> {
    let bytes = serde_json::to_vec(body).unwrap();
    let secret = keyward::config::Secret::new(support::GENERIC_SECRET);
    let ts = chrono::Utc::now().timestamp();
    let res = app
        .http
        .post(app.url("/webhooks/generic"))
        .header("content-type", "application/json")
        .header("x-keyward-timestamp", ts.to_string())
        .header(
            "x-keyward-signature",
            keyward::gateways::generic::sign(&secret, ts, &bytes),
        )
        .body(bytes)
        .send()
        .await
        .ok()?;
    if res.status() != 200 {
        return None;
    }
    let answer: serde_json::Value = res.json().await.ok()?;
    Some(answer["id"].as_str()?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_lose_no_acknowledged_message_when_one_stops_mid_load_and_send_no_reply_twice(
) {
    // Arrange: a provider stand-in, two instances on one database.
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&provider)
        .await;
    let mut settings = support::signed_generic_settings();
    settings.gateways.generic.as_mut().unwrap().reply_url = Some(format!("{}/sms", provider.uri()));
    settings.shortcodes[0].reply_via = "generic".into();
    let db = fresh_database().await;
    keyward::telemetry::init_for_tests();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = Application::build(Arc::new(settings.clone()), db.clone(), 4, listener).unwrap();
    let a_handle = a.handle();
    let a_app = TestApp {
        address: format!("http://127.0.0.1:{}", a.port()),
        db: db.clone(),
        clock: a.clock(),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    };
    tokio::spawn(a.run_until_stopped());
    let b_app = Arc::new(spawn_app_on(db.clone(), settings.clone()).await);
    let a_app = Arc::new(a_app);

    // Two dispatchers, one per instance, share the outbox while the load runs.
    let load_done = Arc::new(AtomicBool::new(false));
    let dispatchers: Vec<_> = (0..2)
        .map(|_| {
            let pool = keyward::db::pool(db.clone(), 4).unwrap();
            let d = Arc::new(Dispatcher::new(&settings, pool, Arc::new(Metrics::new())).unwrap());
            let done = load_done.clone();
            tokio::spawn(async move {
                loop {
                    let n = d.run_once().await.expect("dispatch");
                    if n == 0 {
                        if done.load(Ordering::Relaxed) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            })
        })
        .collect();

    // Act: senders alternate between the instances, numbers shared so that
    // both instances write the same numbers at once; A stops abruptly
    // mid-load, and what got no 200 is retried at B (same gateway id).
    let sent = Arc::new(AtomicUsize::new(0));
    let stopper = {
        let sent = sent.clone();
        tokio::spawn(async move {
            while sent.load(Ordering::Relaxed) < STOP_AFTER {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            a_handle.stop(false).await;
        })
    };
    let texts = ["MAU", "STOP", "HELP", "DAFTAR", "halo"];
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (a, b, sent) = (a_app.clone(), b_app.clone(), sent.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut retried = 0;
                for i in 0..PER_SENDER {
                    let gateway_id = format!("c{s}-{i}");
                    let body = serde_json::json!({
                        "id": gateway_id,
                        "from": format!("+62812000000{:02}", (s * 7 + i) % 20),
                        "to": "3344",
                        "text": texts[(s + i) % texts.len()],
                    });
                    let first = if (s + i) % 2 == 0 { &a } else { &b };
                    sent.fetch_add(1, Ordering::Relaxed);
                    let id = match send(first, &body).await {
                        Some(id) => id,
                        None => {
                            retried += 1;
                            send(&b, &body).await.expect("the other instance answers")
                        }
                    };
                    acked.push((gateway_id, id));
                }
                (acked, retried)
            })
        })
        .collect();
    let mut acked = Vec::new();
    let mut retried = 0;
    for s in senders {
        let (a, r) = s.await.unwrap();
        acked.extend(a);
        retried += r;
    }
    stopper.await.unwrap();
    load_done.store(true, Ordering::Relaxed);
    for d in dispatchers {
        d.await.unwrap();
    }

    // Assert: A did stop mid-load (some messages went to B on retry) …
    assert!(
        retried > 0,
        "instance A stopped while messages were sent to it"
    );
    assert!(
        b_app.get("/readyz").await.status() == 200
            && a_app.http.get(a_app.url("/healthz")).send().await.is_err(),
        "A is gone, B still serves"
    );
    // … every acknowledged message is stored once, under the id answered …
    let client = b_app.db().await;
    let rows = client
        .query(
            "SELECT gateway_message_id, id::text FROM inbound_messages",
            &[],
        )
        .await
        .unwrap();
    let stored: BTreeMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(rows.len(), SENDERS * PER_SENDER, "one row per gateway id");
    for (gateway_id, id) in &acked {
        assert_eq!(
            stored.get(gateway_id),
            Some(id),
            "{gateway_id} acknowledged as {id}"
        );
    }
    // … and every reply reached the provider exactly once.
    let statuses = client
        .query("SELECT id::text, status::text FROM outbox", &[])
        .await
        .unwrap();
    let sent_ids: BTreeSet<String> = statuses
        .iter()
        .filter(|r| r.get::<_, String>(1) == "sent")
        .map(|r| r.get(0))
        .collect();
    let unsettled: Vec<String> = statuses
        .iter()
        .map(|r| r.get::<_, String>(1))
        .filter(|s| s != "sent" && s != "cancelled")
        .collect();
    assert!(unsettled.is_empty(), "every reply settled: {unsettled:?}");
    assert!(!sent_ids.is_empty());
    let mut deliveries: BTreeMap<String, usize> = BTreeMap::new();
    for request in provider.received_requests().await.unwrap() {
        let key = request.headers["idempotency-key"]
            .to_str()
            .unwrap()
            .to_owned();
        *deliveries.entry(key).or_default() += 1;
    }
    let twice: Vec<_> = deliveries.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "replies delivered more than once: {twice:?}"
    );
    assert_eq!(
        deliveries.keys().cloned().collect::<BTreeSet<_>>(),
        sent_ids,
        "the provider got exactly the replies marked sent"
    );
}
