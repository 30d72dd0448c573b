//! The support API (CONTRACT §6): roles, lookups, lists, staff opt-outs,
//! the consent export, stats and the audit trail.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::support::{spawn_app, TestApp};

const NUMBER: &str = "+6281234567890";

/// Stores a token with `role` and returns its secret.
async fn token(app: &TestApp, name: &str, role: &str) -> String {
    app.token(name, role).await
}

async fn get_as(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn post_as(app: &TestApp, token: &str, path: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn error_code(res: reqwest::Response) -> String {
    let body: Value = res.json().await.unwrap();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn every_endpoint_refuses_a_missing_or_unknown_token_with_401() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    for path in [
        "/v1/subscribers/+6281234567890",
        "/v1/subscribers",
        "/v1/consent-export",
        "/v1/stats",
        "/v1/tokens",
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 401, "{path} without a token");
        assert_eq!(error_code(res).await, "unauthorized");
        let res = get_as(&app, "kw_not-a-real-token", path).await;
        assert_eq!(res.status(), 401, "{path} with a wrong token");
        let res = app
            .http
            .get(app.url(path))
            .header("authorization", format!("Basic {support}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{path} with another scheme");
    }
    let res = post_as(
        &app,
        "kw_wrong",
        "/v1/subscribers/+6281234567890/opt-out",
        &json!({"reason": "x"}),
    )
    .await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_revoked_token_is_refused_with_401() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    assert_eq!(get_as(&app, &support, "/v1/stats").await.status(), 200);
    app.db()
        .await
        .execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE name = 'ana'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(get_as(&app, &support, "/v1/stats").await.status(), 401);
}

#[tokio::test]
async fn a_support_token_on_an_admin_endpoint_is_403_and_an_admin_token_manages_tokens() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    let admin = token(&app, "root", "admin").await;

    let res = get_as(&app, &support, "/v1/tokens").await;
    assert_eq!(res.status(), 403);
    assert_eq!(error_code(res).await, "forbidden");
    let res = post_as(
        &app,
        &support,
        "/v1/tokens",
        &json!({"name": "x", "role": "admin"}),
    )
    .await;
    assert_eq!(res.status(), 403, "support cannot mint an admin token");
    let res = app
        .http
        .delete(app.url("/v1/tokens/root"))
        .bearer_auth(&support)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    let res = post_as(
        &app,
        &admin,
        "/v1/tokens",
        &json!({"name": "budi", "role": "support"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let budi = created["token"].as_str().unwrap().to_owned();
    assert!(budi.starts_with("kw_"));
    assert_eq!(get_as(&app, &budi, "/v1/stats").await.status(), 200);
    let res = post_as(
        &app,
        &admin,
        "/v1/tokens",
        &json!({"name": "budi", "role": "support"}),
    )
    .await;
    assert_eq!(res.status(), 409, "one active token per name");
    let res = post_as(
        &app,
        &admin,
        "/v1/tokens",
        &json!({"name": "b c", "role": "root"}),
    )
    .await;
    assert_eq!(res.status(), 400);

    let list: Value = get_as(&app, &admin, "/v1/tokens")
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ana", "budi", "root"]);
    assert!(list.to_string().find("kw_").is_none(), "no secrets listed");
    assert!(list[0]["last_used_at"].is_string(), "ana's use was noted");

    let res = app
        .http
        .delete(app.url("/v1/tokens/budi"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(get_as(&app, &budi, "/v1/stats").await.status(), 401);
    let res = app
        .http
        .delete(app.url("/v1/tokens/budi"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn a_lookup_by_five_number_forms_returns_the_same_subscriber_with_its_consent() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    app.text(NUMBER, "mau 🙏").await;

    let mut answers = Vec::new();
    for form in [
        "+6281234567890",
        "6281234567890",
        "081234567890",
        "+62 812-3456-7890",
        "(0812) 3456 7890",
    ] {
        let path = format!(
            "/v1/subscribers/{}",
            percent_encoding::utf8_percent_encode(form, percent_encoding::NON_ALPHANUMERIC)
        );
        let res = get_as(&app, &support, &path).await;
        assert_eq!(res.status(), 200, "{form}");
        let mut answer = res.json::<Value>().await.unwrap();
        // Each answer says when it was read: the one field that differs.
        let as_of = answer.as_object_mut().unwrap().remove("as_of").unwrap();
        assert_eq!(as_of["source"], "primary", "no read_url: the primary");
        answers.push(answer);
    }
    for a in &answers {
        assert_eq!(a, &answers[0]);
    }
    let s = &answers[0];
    assert_eq!(s["msisdn"], NUMBER);
    let program = &s["programs"][0];
    assert_eq!(program["program"], "default");
    assert_eq!(program["state"], "subscribed");
    let consent = &program["consent"];
    assert_eq!(consent["cause"], "inbound");
    assert_eq!(consent["keyword"], "MAU");
    assert_eq!(consent["text"], "mau 🙏");
    assert_eq!(consent["gateway"], "generic");
    assert!(consent["gateway_message_id"]
        .as_str()
        .unwrap()
        .starts_with("gw-"));
    assert!(consent["received_at"].is_string());
    let kinds: Vec<&str> = s["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["reply", "state_change", "inbound"], "newest first");
    assert_eq!(s["timeline"][0]["kind"], "welcome");
    assert_eq!(s["timeline"][0]["status"], "queued");
}

#[tokio::test]
async fn a_never_seen_number_is_404_and_garbage_is_400() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    let res = get_as(&app, &support, "/v1/subscribers/+6281299999999").await;
    assert_eq!(res.status(), 404);
    assert_eq!(error_code(res).await, "not_found");
    for garbage in [
        "hello",
        "12",
        "%3Cscript%3E",
        "0812%00",
        "%F0%9F%99%8F",
        "0812%FF",
    ] {
        let res = get_as(&app, &support, &format!("/v1/subscribers/{garbage}")).await;
        assert_eq!(res.status(), 400, "{garbage}");
        assert_eq!(error_code(res).await, "bad_request");
    }
    app.text(NUMBER, "MAU").await;
    for query in ["limit=0", "limit=abc", "before=nonsense"] {
        let res = get_as(&app, &support, &format!("/v1/subscribers/{NUMBER}?{query}")).await;
        assert_eq!(res.status(), 400, "{query}");
    }
}

#[tokio::test]
async fn the_timeline_pages_newest_first_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    for text in ["MAU", "HELP", "STOP", "MAU", "apa ini"] {
        app.text(NUMBER, text).await;
    }
    let full: Value = get_as(
        &app,
        &support,
        &format!("/v1/subscribers/{NUMBER}?limit=200"),
    )
    .await
    .json()
    .await
    .unwrap();
    let all = full["timeline"].as_array().unwrap().clone();
    assert!(all.len() >= 10, "{}", all.len());
    let mut paged = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut path = format!("/v1/subscribers/{NUMBER}?limit=3");
        if let Some(b) = &before {
            path.push_str(&format!("&before={b}"));
        }
        let page: Value = get_as(&app, &support, &path).await.json().await.unwrap();
        paged.extend(page["timeline"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_str() {
            Some(b) => before = Some(b.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, all);
    let times: Vec<&str> = all.iter().map(|i| i["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listing_stays_correct_while_numbers_are_added() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    let db = app.db().await;
    db.batch_execute(
        "INSERT INTO subscribers (msisdn) SELECT '+628120000' || lpad((g * 2)::text, 4, '0')
           FROM generate_series(1, 300) g",
    )
    .await
    .unwrap();
    let before: HashSet<String> = db
        .query("SELECT msisdn FROM subscribers", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Numbers land between the existing ones (odd suffixes) while we page.
    let writer = {
        let db = app.db().await;
        tokio::spawn(async move {
            for g in 1..=300 {
                let n = format!("+628120000{:04}", g * 2 - 1);
                db.execute("INSERT INTO subscribers (msisdn) VALUES ($1::text)", &[&n])
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/subscribers?limit=17".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", c.replace('+', "%2B")));
        }
        let res = get_as(&app, &support, &path).await;
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["msisdn"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    writer.await.unwrap();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no number twice");
    for n in &before {
        assert!(unique.contains(n), "{n} was there before and is missing");
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "E.164 order");
}

#[tokio::test]
async fn the_list_filters_by_program_and_state() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    app.text("+6281200000001", "MAU").await;
    app.text("+6281200000002", "MAU").await;
    app.text("+6281200000002", "STOP").await;
    app.text("+6281200000003", "HELP").await;
    let page: Value = get_as(
        &app,
        &support,
        "/v1/subscribers?program=default&state=subscribed",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["msisdn"], "+6281200000001");
    assert_eq!(page["items"][0]["programs"][0]["state"], "subscribed");
    assert!(page["next_cursor"].is_null());
    let all: Value = get_as(&app, &support, "/v1/subscribers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    for bad in [
        "state=gone",
        "program=Bad%20Name",
        "cursor=abc",
        "limit=100000",
    ] {
        let res = get_as(&app, &support, &format!("/v1/subscribers?{bad}")).await;
        assert_eq!(res.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn a_staff_opt_out_enters_the_ledger_and_stops_replies() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    app.text(NUMBER, "MAU").await;
    // The welcome is still queued (no dispatcher runs here).
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE status = 'queued'")
            .await,
        1
    );
    let version_before = app
        .count("SELECT version FROM subscribers WHERE msisdn = '+6281234567890'")
        .await;

    let res = post_as(
        &app,
        &support,
        "/v1/subscribers/0812-3456-7890/opt-out",
        &json!({"program": null, "reason": "called the hotline, wants no more SMS"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["changed"], json!(["default"]));
    assert_eq!(body["confirmation_queued"], false);

    let row = app
        .db()
        .await
        .query_one(
            "SELECT cause::text, actor, reason, to_state::text FROM subscription_events
              ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "staff");
    assert_eq!(row.get::<_, String>(1), "ana");
    assert_eq!(
        row.get::<_, String>(2),
        "called the hotline, wants no more SMS"
    );
    assert_eq!(row.get::<_, String>(3), "unsubscribed");
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE status = 'queued'")
            .await,
        0,
        "the queued welcome is cancelled"
    );
    assert!(
        app.count("SELECT version FROM subscribers WHERE msisdn = '+6281234567890'")
            .await
            > version_before,
        "the number's version moved, so a concurrent inbound decides again"
    );
    let s: Value = get_as(&app, &support, &format!("/v1/subscribers/{NUMBER}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["programs"][0]["state"], "unsubscribed");
    assert_eq!(s["programs"][0]["consent"]["cause"], "staff");
    assert_eq!(s["programs"][0]["consent"]["actor"], "ana");
    assert_eq!(s["timeline"][0]["type"], "state_change");
    assert_eq!(s["timeline"][1]["status"], "cancelled");

    // A second opt-out changes nothing, and confirms nothing.
    let res = post_as(
        &app,
        &support,
        &format!("/v1/subscribers/{NUMBER}/opt-out"),
        &json!({"reason": "again", "confirm_sms": true}),
    )
    .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["changed"], json!([]));
    assert_eq!(body["confirmation_queued"], false);
}

#[tokio::test]
async fn a_staff_opt_out_can_confirm_by_sms_and_needs_a_reason() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    app.text(NUMBER, "MAU").await;
    let path = format!("/v1/subscribers/{NUMBER}/opt-out");
    for body in [
        json!({"program": "default"}),
        json!({"program": "default", "reason": "   "}),
        json!({"program": "nope", "reason": "x"}),
        json!({"program": 5, "reason": "x"}),
    ] {
        let res = post_as(&app, &support, &path, &body).await;
        assert_eq!(res.status(), 400, "{body}");
    }
    let res = app
        .http
        .post(app.url(&path))
        .bearer_auth(&support)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = post_as(
        &app,
        &support,
        &path,
        &json!({"program": "default", "reason": "email of 2026-11-23", "confirm_sms": true}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["confirmation_queued"], true);
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE kind = 'goodbye' AND status = 'queued'")
            .await,
        1
    );
    // A named program of a number never seen is recorded (do not
    // contact); all programs of it names nothing: 404.
    let res = post_as(
        &app,
        &support,
        "/v1/subscribers/+6281288888888/opt-out",
        &json!({"program": "default", "reason": "asked by mail before ever texting"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["changed"], json!(["default"]));
    assert_eq!(
        app.count(
            "SELECT count(*) FROM subscriptions
              WHERE msisdn = '+6281288888888' AND state = 'unsubscribed'"
        )
        .await,
        1
    );
    let res = post_as(
        &app,
        &support,
        "/v1/subscribers/+6281299999999/opt-out",
        &json!({"reason": "x"}),
    )
    .await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn an_inbound_decision_made_before_a_staff_opt_out_cannot_be_written() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    app.text(NUMBER, "MAU").await;
    // The inbound path read the facts (this version) and decided "STOP:
    // subscribed -> unsubscribed"...
    let version = app
        .count("SELECT version FROM subscribers WHERE msisdn = '+6281234567890'")
        .await;
    // ...when staff recorded an opt-out...
    let res = post_as(
        &app,
        &support,
        &format!("/v1/subscribers/{NUMBER}/opt-out"),
        &json!({"reason": "phone"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    // ...so its write, checked against that version, must not apply.
    let status: String = app
        .db()
        .await
        .query_one(
            "SELECT r_status FROM keyward_apply_inbound(
                 '+6281234567890', $1, 'generic', 'gw-late', '3344', 'STOP', NULL, '{}',
                 'opt_out', 'default', 'STOP', 'en', 'unsubscribed', 'applied',
                 ARRAY['default'], ARRAY['subscribed'], ARRAY['unsubscribed'],
                 NULL, NULL, NULL, NULL, NULL, NULL)",
            &[&version],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn staff_opt_outs_racing_inbound_messages_keep_every_ledger_chain_consistent() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    let numbers: Vec<String> = (0..24).map(|i| format!("+62812000001{i:02}")).collect();
    for n in &numbers {
        app.text(n, "MAU").await;
    }
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for (i, n) in numbers.iter().enumerate() {
        let (a, b) = (app.clone(), app.clone());
        let (n1, n2, support) = (n.clone(), n.clone(), support.clone());
        let text = if i % 2 == 0 { "STOP" } else { "MAU" };
        tasks.push(tokio::spawn(async move {
            a.text(&n1, text).await;
        }));
        tasks.push(tokio::spawn(async move {
            let res = post_as(
                &b,
                &support,
                &format!("/v1/subscribers/{n2}/opt-out"),
                &json!({"reason": "race"}),
            )
            .await;
            assert_eq!(res.status(), 200);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Each event starts where the one before it ended...
    let broken = app
        .count(
            "SELECT count(*) FROM (
                 SELECT from_state,
                        lag(to_state) OVER (PARTITION BY msisdn, program ORDER BY id) AS before
                   FROM subscription_events) e
              WHERE e.before IS NOT NULL AND e.before <> e.from_state",
        )
        .await;
    assert_eq!(broken, 0, "no two writers acted on the same old state");
    // ...and the current state is the last event's.
    let stale = app
        .count(
            "SELECT count(*) FROM subscriptions s
              WHERE s.event_id <> (SELECT max(id) FROM subscription_events e
                                    WHERE e.msisdn = s.msisdn AND e.program = s.program)",
        )
        .await;
    assert_eq!(stale, 0);
    // A STOP and a staff opt-out at once: one of them moves the number,
    // the other finds it already out.
    for n in numbers.iter().step_by(2) {
        let row = app
            .db()
            .await
            .query_one(
                "SELECT (SELECT count(*) FROM subscription_events
                          WHERE msisdn = $1 AND to_state = 'unsubscribed'),
                        (SELECT state::text FROM subscriptions WHERE msisdn = $1)",
                &[n],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 1, "{n}");
        assert_eq!(row.get::<_, String>(1), "unsubscribed", "{n}");
    }
}

#[tokio::test]
async fn lookups_and_opt_outs_are_audited_with_token_endpoint_number_and_status() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    app.text(NUMBER, "MAU").await;
    get_as(&app, &support, "/v1/subscribers/0812-3456-7890").await;
    get_as(&app, &support, "/v1/subscribers/+6281299999999").await;
    post_as(
        &app,
        &support,
        "/v1/subscribers/081234567890/opt-out",
        &json!({"reason": "phone"}),
    )
    .await;
    get_as(&app, &support, "/v1/tokens").await;
    app.get("/v1/stats").await;
    let rows = app
        .db()
        .await
        .query(
            "SELECT actor, method, endpoint, msisdn, status, token_id IS NOT NULL
               FROM audit_log ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, String, Option<String>, i16, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    let n = |s: &str| Some(s.to_owned());
    assert_eq!(
        got,
        vec![
            (
                "ana".into(),
                "GET".into(),
                "/v1/subscribers/{number}".into(),
                n(NUMBER),
                200,
                true
            ),
            (
                "ana".into(),
                "GET".into(),
                "/v1/subscribers/{number}".into(),
                n("+6281299999999"),
                404,
                true
            ),
            (
                "ana".into(),
                "POST".into(),
                "/v1/subscribers/{number}/opt-out".into(),
                n(NUMBER),
                200,
                true
            ),
            (
                "ana".into(),
                "GET".into(),
                "/v1/tokens".into(),
                None,
                403,
                true
            ),
            (
                "unauthenticated".into(),
                "GET".into(),
                "/v1/stats".into(),
                None,
                401,
                false
            ),
        ]
    );
}

/// Inserts `n` numbers that each texted MAU once, in three statements.
pub async fn seed_subscribers(app: &TestApp, n: i32) {
    let db = app.db().await;
    db.execute(
        "INSERT INTO inbound_messages
             (gateway, gateway_message_id, msisdn, shortcode, text, raw, action, program, keyword,
              result_state, outcome)
         SELECT 'generic', 'bulk-' || g, '+62813' || lpad(g::text, 7, '0'), '3344',
                'MAU, \"ya\" 👍', '{}'::jsonb, 'opt_in', 'default', 'MAU', 'subscribed', 'applied'
           FROM generate_series(1, $1) g",
        &[&n],
    )
    .await
    .unwrap();
    db.batch_execute(
        "INSERT INTO subscribers (msisdn, version, last_inbound_at)
         SELECT msisdn, 1, received_at FROM inbound_messages WHERE gateway_message_id LIKE 'bulk-%';
         INSERT INTO subscription_events
             (msisdn, program, from_state, to_state, cause, inbound_message_id, effective_at)
         SELECT msisdn, 'default', 'none', 'subscribed', 'inbound', id, received_at
           FROM inbound_messages WHERE gateway_message_id LIKE 'bulk-%';
         INSERT INTO subscriptions (msisdn, program, state, since, event_id)
         SELECT msisdn, program, to_state, effective_at, id FROM subscription_events;
         ANALYZE;",
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consent_export_of_100000_rows_streams_in_chunks() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    seed_subscribers(&app, 100_000).await;
    let mut res = get_as(
        &app,
        &support,
        "/v1/consent-export?program=default&since=2020-01-01",
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(
        res.headers().get("content-length").is_none(),
        "the length is not known up front: the body is streamed"
    );
    assert_eq!(res.headers()["transfer-encoding"], "chunked");
    let (mut lines, mut chunks, mut bytes, mut largest) = (0usize, 0usize, 0usize, 0usize);
    let mut head = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        if head.len() < 2000 {
            head.extend_from_slice(&chunk[..chunk.len().min(2000)]);
        }
        chunks += 1;
        bytes += chunk.len();
        largest = largest.max(chunk.len());
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
    }
    assert_eq!(lines, 100_001, "a header and one row per event");
    assert!(chunks >= 100, "{chunks} chunks");
    assert!(
        largest < bytes / 50,
        "no chunk near the whole body: {largest} of {bytes}"
    );
    let head = String::from_utf8_lossy(&head);
    let mut reader = csv::Reader::from_reader(head.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[1], "msisdn");
    let first = reader.records().next().unwrap().unwrap();
    assert_eq!(&first[1], "+628130000001");
    assert_eq!(&first[9], "MAU, \"ya\" 👍", "escaped and read back exactly");
    assert!(head.contains("\"MAU, \"\"ya\"\" 👍\""));

    let res = get_as(&app, &support, "/v1/consent-export?since=tomorrow").await;
    assert_eq!(res.status(), 400);
    let empty = get_as(&app, &support, "/v1/consent-export?program=other")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(empty.lines().count(), 1, "just the header");
}

/// A transaction open in another database of the same cluster (another
/// tenant, or another test) holds no number of this ledger: the export
/// does not wait for it.
#[tokio::test]
async fn the_consent_export_does_not_wait_for_writers_in_other_databases() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    seed_subscribers(&app, 2).await;
    let other = crate::support::connect(&crate::support::empty_database().await).await;
    other.batch_execute("BEGIN").await.unwrap();
    // Taking a transaction id makes it a writer the snapshot lists.
    other
        .query_one("SELECT pg_current_xact_id()", &[])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let res = get_as(&app, &support, "/v1/consent-export").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap().lines().count(), 1 + 2);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the export waited for another database's writer: {:?}",
        started.elapsed()
    );
    other.batch_execute("ROLLBACK").await.unwrap();
}

/// An event whose transaction commits after a later-numbered event (a
/// slow writer) is still in the export: the export waits for writers that
/// were running when it started instead of paging past their numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consent_export_waits_for_writes_in_progress() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    seed_subscribers(&app, 3).await;
    let opt_out = "SELECT keyward_staff_opt_out($1::text, 'default', 'ana', 'asked by phone',
                                                NULL, NULL, '3344', 'log')";
    // The slow writer takes the next event number and stays open...
    let mut slow = app.db().await;
    let slow = slow.transaction().await.unwrap();
    slow.execute(opt_out, &[&"+628130000001"]).await.unwrap();
    // ...while a later event commits at once.
    app.db()
        .await
        .execute(opt_out, &[&"+628130000002"])
        .await
        .unwrap();

    let export = {
        let (app_url, support) = (app.address.clone(), support.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .get(format!("{app_url}/v1/consent-export"))
                .bearer_auth(support)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !export.is_finished(),
        "the export waits for the open writer"
    );
    slow.commit().await.unwrap();
    let csv = export.await.unwrap();
    let staff_rows: Vec<&str> = csv.lines().filter(|l| l.contains(",staff,")).collect();
    assert_eq!(staff_rows.len(), 2, "{csv}");
    assert!(
        staff_rows.iter().any(|l| l.contains("+628130000001")),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 1 + 3 + 2, "{csv}");
}

#[tokio::test]
async fn stats_count_states_per_program_and_changes_per_day() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    app.text("+6281200000001", "MAU").await;
    app.text("+6281200000002", "MAU").await;
    app.text("+6281200000002", "STOP").await;
    let stats: Value = get_as(&app, &support, "/v1/stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["programs"][0]["program"], "default");
    assert_eq!(stats["programs"][0]["subscribed"], 1);
    assert_eq!(stats["programs"][0]["unsubscribed"], 1);
    let daily = stats["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 30);
    let today = daily.last().unwrap();
    assert_eq!(today["opt_ins"], 2);
    assert_eq!(today["opt_outs"], 1);
    assert_eq!(daily[0]["opt_ins"], 0);
}

#[tokio::test]
async fn the_openapi_document_describes_every_support_endpoint() {
    let app = spawn_app().await;
    let res = app.get("/v1/openapi.json").await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/v1/subscribers/{number}", "get"),
        ("/v1/subscribers", "get"),
        ("/v1/subscribers/{number}/opt-out", "post"),
        ("/v1/consent-export", "get"),
        ("/v1/stats", "get"),
        ("/v1/tokens", "post"),
        ("/v1/tokens", "get"),
        ("/v1/tokens/{name}", "delete"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for schema in [
        "Subscriber",
        "TimelineItem",
        "Evidence",
        "OptOutRequest",
        "Stats",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
}

/// Not a test of behaviour: the lookup latency with 100,000 subscribers
/// in the database. `cargo test --test api lookup_latency -- --ignored
/// --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn lookup_latency_with_100000_subscribers() {
    let app = spawn_app().await;
    let support = token(&app, "ana", "support").await;
    seed_subscribers(&app, 100_000).await;
    app.text(NUMBER, "MAU").await;
    let mut times = Vec::new();
    for i in 0..200 {
        let number = if i % 2 == 0 {
            NUMBER.to_owned()
        } else {
            format!("0813{:07}", (i * 397) % 100_000 + 1)
        };
        let started = std::time::Instant::now();
        let res = get_as(&app, &support, &format!("/v1/subscribers/{number}")).await;
        assert_eq!(res.status(), 200);
        let _ = res.bytes().await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "lookup latency over 200 requests: median {:?}, p95 {:?}, max {:?}",
        times[100], times[190], times[199]
    );
}

/// `DATABASE_URL` (key=value form) for the test database `config`.
pub(crate) fn database_url(config: &tokio_postgres::Config) -> String {
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
    };
    format!(
        "host={host} port={} user={} dbname={}",
        config.get_ports()[0],
        config.get_user().unwrap(),
        config.get_dbname().unwrap()
    )
}

/// Runs the `keyward` binary against the test database, outside any
/// configuration file.
fn keyward(app: &TestApp, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(args)
        .current_dir(dir.path())
        .env("DATABASE_URL", database_url(&app.db))
        .env_remove("KEYWARD_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run keyward")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_commands_create_list_and_revoke_and_print_the_secret_once() {
    let app = spawn_app().await;
    let out = keyward(
        &app,
        &["token", "create", "--role", "admin", "--name", "ana"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let secret = stdout.trim();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the token on stdout: {stdout}"
    );
    assert!(secret.starts_with("kw_"));
    assert_eq!(get_as(&app, secret, "/v1/tokens").await.status(), 200);
    let stored: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM api_tokens WHERE token_sha256 = sha256(convert_to($1, 'UTF8'))",
            &[&secret],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "only the SHA-256 of the token is stored");

    let again = keyward(
        &app,
        &["token", "create", "--role", "admin", "--name", "ana"],
    );
    assert_eq!(again.status.code(), Some(1), "one active token per name");
    let bad = keyward(&app, &["token", "create", "--role", "root", "--name", "x"]);
    assert!(!bad.status.success());

    let list = keyward(&app, &["token", "list"]);
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.contains("ana") && list.contains("admin"), "{list}");
    assert!(!list.contains(secret));

    let out = keyward(&app, &["token", "revoke", "ana"]);
    assert!(out.status.success());
    assert_eq!(get_as(&app, secret, "/v1/tokens").await.status(), 401);
    assert_eq!(
        keyward(&app, &["token", "revoke", "ana"]).status.code(),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_show_prints_the_same_facts_as_a_table_and_exits_1_for_a_stranger() {
    let app = spawn_app().await;
    app.text(NUMBER, "MAU").await;
    let out = keyward(&app, &["subscriber", "show", "(0812) 3456 7890"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("+6281234567890\n"), "{text}");
    assert!(text.contains("default"), "{text}");
    assert!(text.contains("subscribed"), "{text}");
    assert!(text.contains("\"MAU\" via generic gw-"), "{text}");
    assert!(text.contains("reply"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no colours when stdout is not a terminal"
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_log WHERE actor = 'cli' AND msisdn = '+6281234567890'"
        )
        .await,
        1
    );

    let out = keyward(&app, &["subscriber", "show", "081299999999"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("never been seen"), "{stderr}");
    let out = keyward(&app, &["subscriber", "show", "not-a-number"]);
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broadcast_commands_create_once_show_and_cancel() {
    let app = spawn_app().await;
    app.text(NUMBER, "MAU").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("closed.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({
            "program": "default",
            "kind": "notice",
            "text": {"id": "keyward: kantor kami tutup pada 25 Desember."},
            "send_at": "2030-01-02T03:00:00Z",
        }))
        .unwrap(),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let out = keyward(&app, &["broadcast", "create", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (plan["created"].as_bool(), plan["deferred"].as_i64()),
        (Some(true), Some(1)),
        "{plan}"
    );
    let again: serde_json::Value =
        serde_json::from_slice(&keyward(&app, &["broadcast", "create", path]).stdout).unwrap();
    assert_eq!(
        (again["id"].clone(), again["created"].as_bool()),
        (plan["id"].clone(), Some(false))
    );

    let id = plan["id"].as_i64().unwrap().to_string();
    let out = keyward(&app, &["broadcast", "cancel", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["skipped"], json!({"cancelled": 1}), "{view}");
    let list = String::from_utf8(keyward(&app, &["broadcast", "list"]).stdout).unwrap();
    assert!(list.contains("cancelled"), "{list}");
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_log WHERE actor = 'cli' AND endpoint LIKE 'broadcast %'"
        )
        .await,
        3,
        "each run is audited: create, its replay, cancel"
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"program": "default", "kind": "marketing", "text": {"id": "p4g1 ini g ada diskon!!!"}, "valid_until": "2030-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let out = keyward(&app, &["broadcast", "create", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("digit_spelling"), "{stderr}");
}
