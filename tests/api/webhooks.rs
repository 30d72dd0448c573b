//! The inbound path end to end through the generic webhook: what is
//! stored, what is answered, and what is refused.

use serde_json::json;

use crate::support::{spawn_app, spawn_app_on, TestApp};

const NUMBER: &str = "+6281234567890";

async fn state(app: &TestApp, number: &str, program: &str) -> Option<String> {
    app.db()
        .await
        .query_opt(
            "SELECT state::text FROM subscriptions WHERE msisdn = $1 AND program = $2",
            &[&number, &program],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

async fn replies(app: &TestApp, number: &str) -> Vec<(String, String)> {
    app.db()
        .await
        .query(
            "SELECT kind::text, text FROM outbox WHERE msisdn = $1 ORDER BY created_at, id",
            &[&number],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn mau_from_a_new_number_subscribes_it_and_queues_one_welcome() {
    let app = spawn_app().await;
    let res = app
        .post_generic(&json!({"id": "gw-1", "from": NUMBER, "to": "3344", "text": "MAU", "received_at": "2026-11-23T10:00:00Z"}))
        .await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["program"], "default");
    assert_eq!(body["action"], "opt_in");
    assert_eq!(body["state"], "subscribed");
    assert!(body["id"].as_str().is_some_and(|id| !id.is_empty()));

    assert_eq!(
        state(&app, NUMBER, "default").await.as_deref(),
        Some("subscribed")
    );
    let replies = replies(&app, NUMBER).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, "welcome");
    for needle in ["keyward", "default", "UNSUBSCRIBE", "3344", "SMS per bulan"] {
        assert!(
            replies[0].1.contains(needle),
            "{needle:?} not in {:?}",
            replies[0].1
        );
    }
    let evidence = app
        .db()
        .await
        .query_one(
            "SELECT e.cause::text, e.from_state::text, e.to_state::text, i.text, i.gateway_message_id
               FROM subscription_events e JOIN inbound_messages i ON i.id = e.inbound_message_id
              WHERE e.msisdn = $1",
            &[&NUMBER],
        )
        .await
        .unwrap();
    assert_eq!(evidence.get::<_, String>(0), "inbound");
    assert_eq!(evidence.get::<_, String>(1), "none");
    assert_eq!(evidence.get::<_, String>(2), "subscribed");
    assert_eq!(evidence.get::<_, String>(3), "MAU");
    assert_eq!(evidence.get::<_, String>(4), "gw-1");
}

#[tokio::test]
async fn a_retried_delivery_gets_the_first_answer_and_nothing_twice() {
    let app = spawn_app().await;
    let msg = json!({"id": "gw-dup", "from": NUMBER, "to": "3344", "text": "MAU"});
    let first: serde_json::Value = app.post_generic(&msg).await.json().await.unwrap();
    let res = app.post_generic(&msg).await;
    assert_eq!(res.status(), 200);
    let second: serde_json::Value = res.json().await.unwrap();
    assert_eq!(second["status"], "duplicate");
    for key in ["id", "program", "action", "state"] {
        assert_eq!(first[key], second[key], "{key}");
    }
    assert_eq!(app.count("SELECT count(*) FROM inbound_messages").await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM subscription_events").await,
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM outbox").await, 1);
}

#[tokio::test]
async fn stop_from_a_stranger_is_recorded_and_confirmed_once() {
    let app = spawn_app().await;
    let body = app.text(NUMBER, "STOP").await;
    assert_eq!(body["action"], "opt_out");
    assert_eq!(body["state"], "unsubscribed");
    assert_eq!(
        state(&app, NUMBER, "default").await.as_deref(),
        Some("unsubscribed")
    );
    let again = app.text(NUMBER, "stop!!").await;
    assert_eq!(again["state"], "unsubscribed");
    let replies = replies(&app, NUMBER).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].0, "goodbye");
    assert_eq!(
        app.count("SELECT count(*) FROM subscription_events").await,
        1,
        "a repeated stop changes nothing"
    );
}

#[tokio::test]
async fn only_an_explicit_opt_in_resubscribes_a_stopped_number() {
    let app = spawn_app().await;
    app.text(NUMBER, "MAU").await;
    app.text(NUMBER, "UNSUBSCRIBE").await;
    for text in ["hello", "Mau tanya harga", "YA", "ok"] {
        let body = app.text(NUMBER, text).await;
        assert_eq!(body["state"], "unsubscribed", "{text}");
    }
    let body = app.text(NUMBER, "mau dong").await;
    assert_eq!(body["state"], "subscribed");
}

#[tokio::test]
async fn russian_lookalike_and_emoji_stops_are_honoured_in_russian() {
    let app = spawn_app().await;
    app.text(NUMBER, "MAU").await;
    // Latin C, T, O in a Cyrillic word, with emoji around it.
    let body = app.text(NUMBER, "🛑 CTOП 🛑").await;
    assert_eq!(body["action"], "opt_out");
    let replies = replies(&app, NUMBER).await;
    assert_eq!(replies.last().unwrap().0, "goodbye");
    assert!(
        replies
            .last()
            .unwrap()
            .1
            .chars()
            .any(|c| ('а'..='я').contains(&c)),
        "goodbye in Russian: {:?}",
        replies.last().unwrap().1
    );
}

#[tokio::test]
async fn help_answers_without_changing_anything() {
    let app = spawn_app().await;
    let body = app.text(NUMBER, "HELP").await;
    assert_eq!(body["action"], "help");
    assert_eq!(body["state"], "none");
    assert_eq!(
        app.count("SELECT count(*) FROM subscription_events").await,
        0
    );
    let replies = replies(&app, NUMBER).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, "help");
}

#[tokio::test]
async fn unknown_text_gets_one_fallback_per_day() {
    let app = spawn_app().await;
    for text in ["what is this", "who are you", "hello?"] {
        let body = app.text(NUMBER, text).await;
        assert_eq!(body["action"], "unknown");
    }
    let replies = replies(&app, NUMBER).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].0, "fallback");
}

#[tokio::test]
async fn national_numbers_are_stored_in_e164() {
    let app = spawn_app().await;
    app.text("0812-3456-7890", "MAU").await;
    assert_eq!(
        state(&app, NUMBER, "default").await.as_deref(),
        Some("subscribed")
    );
}

#[tokio::test]
async fn awkward_texts_are_stored_not_refused() {
    let app = spawn_app().await;
    let long = "x".repeat(10_000);
    for (i, text) in [
        "MA\u{0}U",
        "\u{1}\u{2}\u{7f} control",
        long.as_str(),
        "😀😀😀",
        "Мау mixed СКРИПТ",
        "",
        "<script>alert(1)</script>",
    ]
    .iter()
    .enumerate()
    {
        let res = app
            .post_generic(
                &json!({"id": format!("odd-{i}"), "from": NUMBER, "to": "3344", "text": text}),
            )
            .await;
        assert_eq!(
            res.status(),
            200,
            "{:?}",
            text.chars().take(20).collect::<String>()
        );
    }
    let stored: String = app
        .db()
        .await
        .query_one(
            "SELECT text FROM inbound_messages WHERE gateway_message_id = 'odd-0'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "MAU");
    assert_eq!(app.count("SELECT count(*) FROM inbound_messages").await, 7);
}

#[tokio::test]
async fn invalid_utf8_is_replaced_not_refused() {
    let app = spawn_app().await;
    let mut body = br#"{"id":"utf","from":"+6281234567890","to":"3344","text":"MAU "#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}"#);
    let res = app
        .post_generic_bytes(body, chrono::Utc::now().timestamp())
        .await;
    assert_eq!(res.status(), 200);
}

/// Each malformed request gets its contract status and a JSON error.
#[tokio::test]
async fn malformed_requests_get_the_contract_status() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let valid = json!({"id": "x", "from": NUMBER, "to": "3344", "text": "MAU"});
    let cases: Vec<(&str, serde_json::Value, u16)> = vec![
        (
            "missing id",
            json!({"from": NUMBER, "to": "3344", "text": "MAU"}),
            400,
        ),
        (
            "missing from",
            json!({"id": "a", "to": "3344", "text": "MAU"}),
            400,
        ),
        (
            "missing to",
            json!({"id": "a", "from": NUMBER, "text": "MAU"}),
            400,
        ),
        (
            "missing text",
            json!({"id": "a", "from": NUMBER, "to": "3344"}),
            400,
        ),
        (
            "unparseable number",
            json!({"id": "a", "from": "12", "to": "3344", "text": "MAU"}),
            400,
        ),
        (
            "alphanumeric sender",
            json!({"id": "a", "from": "TOKOMAJU", "to": "3344", "text": "MAU"}),
            400,
        ),
        (
            "bad received_at",
            json!({"id": "a", "from": NUMBER, "to": "3344", "text": "MAU", "received_at": "yesterday"}),
            400,
        ),
        (
            "text is not a string",
            json!({"id": "a", "from": NUMBER, "to": "3344", "text": 42}),
            400,
        ),
        ("not an object", json!(["MAU"]), 400),
    ];
    for (name, body, status) in cases {
        let res = app.post_generic(&body).await;
        assert_eq!(res.status(), status, "{name}");
        let err: serde_json::Value = res.json().await.unwrap();
        assert!(err["error"]["code"].is_string(), "{name}: {err}");
    }
    let raw = |body: &[u8]| body.to_vec();
    assert_eq!(
        app.post_generic_bytes(raw(b"{not json"), now)
            .await
            .status(),
        400
    );
    assert_eq!(app.post_generic_bytes(raw(b""), now).await.status(), 400);
    let huge = serde_json::to_vec(
        &json!({"id": "big", "from": NUMBER, "to": "3344", "text": "x".repeat(70_000)}),
    )
    .unwrap();
    assert_eq!(app.post_generic_bytes(huge, now).await.status(), 413);

    let body = serde_json::to_vec(&valid).unwrap();
    let post = |sig: Option<String>, ts: Option<String>, ctype: &'static str| {
        let mut req = app
            .http
            .post(app.url("/webhooks/generic"))
            .header("content-type", ctype)
            .body(body.clone());
        if let Some(sig) = sig {
            req = req.header("x-keyward-signature", sig);
        }
        if let Some(ts) = ts {
            req = req.header("x-keyward-timestamp", ts);
        }
        req.send()
    };
    let secret = keyward::config::Secret::new(crate::support::GENERIC_SECRET);
    let good = keyward::gateways::generic::sign(&secret, now, &body);
    assert_eq!(
        post(None, Some(now.to_string()), "application/json")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post(Some(good.clone()), None, "application/json")
            .await
            .unwrap()
            .status(),
        401
    );
    let wrong = keyward::gateways::generic::sign(
        &keyward::config::Secret::new("another-secret-123456"),
        now,
        &body,
    );
    assert_eq!(
        post(Some(wrong), Some(now.to_string()), "application/json")
            .await
            .unwrap()
            .status(),
        403
    );
    let stale = keyward::gateways::generic::sign(&secret, now - 301, &body);
    assert_eq!(
        post(
            Some(stale),
            Some((now - 301).to_string()),
            "application/json"
        )
        .await
        .unwrap()
        .status(),
        403
    );
    assert_eq!(
        post(Some(good.clone()), Some(now.to_string()), "text/plain")
            .await
            .unwrap()
            .status(),
        415
    );
    assert_eq!(
        post(Some(good), Some(now.to_string()), "application/json")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.count("SELECT count(*) FROM inbound_messages").await,
        1,
        "only the valid one"
    );
}

#[tokio::test]
async fn an_unconfigured_gateway_is_404() {
    let app = spawn_app().await;
    let res = app
        .http
        .post(app.url("/webhooks/twilio"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = app
        .http
        .post(app.url("/webhooks/carrier-pigeon"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

/// A message to a number that is no configured short code (a routing
/// mistake at the gateway) is stored and answered, changes nothing — but a
/// stop is never lost: it leaves every program, and its goodbye comes from
/// the configured short code that its text names.
#[tokio::test]
async fn a_message_to_an_unknown_number_changes_nothing_but_a_stop() {
    let app = spawn_app().await;
    let to_other = |id: &str, text: &str| json!({"id": id, "from": "+6281234567890", "to": "+6281100009999", "text": text});
    let res = app.post_generic(&to_other("other-1", "MAU")).await;
    assert_eq!(res.status(), 200);
    let answer: serde_json::Value = res.json().await.unwrap();
    assert_eq!(answer["status"], "accepted");
    assert!(answer["state"].is_null(), "nothing decided: {answer}");
    assert_eq!(
        app.count("SELECT count(*) FROM subscription_events").await,
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM outbox").await,
        0,
        "no reply"
    );

    app.text("+6281234567890", "MAU").await;
    let res = app.post_generic(&to_other("other-2", "STOP")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        state(&app, "+6281234567890", "default").await.as_deref(),
        Some("unsubscribed"),
        "the stop is honoured"
    );
    let row = app
        .db()
        .await
        .query_one(
            "SELECT shortcode, text FROM outbox WHERE kind = 'goodbye'",
            &[],
        )
        .await
        .unwrap();
    let (from, text): (String, String) = (row.get(0), row.get(1));
    assert_eq!(from, "3344", "sent from a configured short code");
    assert!(text.contains("3344"), "and naming it: {text}");
    let addressed: String = app
        .db()
        .await
        .query_one(
            "SELECT shortcode FROM inbound_messages WHERE gateway_message_id = 'other-2'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        addressed, "+6281100009999",
        "the message keeps where it was sent"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("keyward_inbound_unrouted_total{") && l.ends_with("} 2")),
        "both are counted: {metrics}"
    );
}

/// 100 messages from one number at once, alternating MAU and UNSUBSCRIBE:
/// whatever order they are applied in, the ledger is a chain and the
/// current state is its last link.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_messages_from_one_number_are_applied_one_after_another() {
    let app = std::sync::Arc::new(spawn_app().await);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let text = if i % 2 == 0 { "MAU" } else { "UNSUBSCRIBE" };
            app.post_generic(
                &json!({"id": format!("c-{i}"), "from": NUMBER, "to": "3344", "text": text}),
            )
            .await
            .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        app.count("SELECT count(*) FROM inbound_messages").await,
        100
    );
    let db = app.db().await;
    let events = db
        .query(
            "SELECT from_state::text, to_state::text FROM subscription_events WHERE msisdn = $1 ORDER BY id",
            &[&NUMBER],
        )
        .await
        .unwrap();
    let mut current = "none".to_owned();
    for e in &events {
        assert_eq!(
            e.get::<_, String>(0),
            current,
            "each event starts where the last ended"
        );
        current = e.get(1);
    }
    assert_eq!(state(&app, NUMBER, "default").await, Some(current));
    let replies = app.count("SELECT count(*) FROM outbox").await;
    assert!(replies >= events.len() as i64, "every change is confirmed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_database_means_503_and_a_restarted_one_200() {
    let options = crate::support::throwaway_cluster_options();
    let mut cluster = crate::support::start_or_fail(&options);
    let db = cluster.pg_config("postgres");
    keyward::db::migrate(&db, false).await.unwrap();
    let app = spawn_app_on(db, crate::support::signed_generic_settings()).await;
    assert_eq!(app.text(NUMBER, "MAU").await["state"], "subscribed");

    tokio::task::block_in_place(|| cluster.stop(std::time::Duration::from_secs(10)));
    let res = app
        .post_generic(&json!({"id": "down", "from": NUMBER, "to": "3344", "text": "STOP"}))
        .await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));

    let _cluster = crate::support::start_or_fail(&options);
    let res = app
        .post_generic(&json!({"id": "down", "from": NUMBER, "to": "3344", "text": "STOP"}))
        .await;
    assert_eq!(res.status(), 200, "the gateway's retry goes through");
    assert_eq!(
        state(&app, NUMBER, "default").await.as_deref(),
        Some("unsubscribed")
    );
}

#[tokio::test]
async fn a_flooding_number_gets_429_and_others_are_unaffected() {
    let mut settings = crate::support::signed_generic_settings();
    settings.service.max_messages_per_number_per_minute = 3;
    let app = spawn_app_on(crate::support::fresh_database().await, settings).await;
    for i in 0..3 {
        let res = app
            .post_generic(
                &json!({"id": format!("f-{i}"), "from": NUMBER, "to": "3344", "text": "hi"}),
            )
            .await;
        assert_eq!(res.status(), 200);
    }
    let res = app
        .post_generic(&json!({"id": "f-3", "from": NUMBER, "to": "3344", "text": "hi"}))
        .await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let res = app
        .post_generic(&json!({"id": "o-1", "from": "+6289876543210", "to": "3344", "text": "hi"}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM inbound_messages").await, 4);
}
