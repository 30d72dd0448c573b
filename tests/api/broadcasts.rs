//! Broadcasts over HTTP against a real PostgreSQL, with the app's clock
//! moved where a rule needs a moment (03:00 in Jakarta, past an expiry).

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use keyward::config::Settings;
use keyward::dispatch::Dispatcher;
use keyward::metrics::Metrics;
use serde_json::{json, Value};

use crate::support::{fresh_database, spawn_app_on, TestApp};

/// 10:00 in Jakarta (WIB, UTC+7), a Wednesday.
fn mid_morning_wib() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 3, 0, 0).unwrap()
}

/// 03:00 in Jakarta.
fn night_wib() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 20, 0, 0).unwrap()
}

/// An Indonesian (Telkomsel) mobile: Asia/Jakarta by its prefix.
fn number(i: usize) -> String {
    format!("+62812{i:07}")
}

struct Rig {
    app: TestApp,
    settings: Settings,
    marketing: String,
}

impl Rig {
    async fn new(customise: impl FnOnce(&mut Settings)) -> Self {
        let settings = crate::support::test_settings(|s| {
            s.gateways.generic = Some(keyward::config::GenericSettings {
                secret: Some(keyward::config::Secrets::One(keyward::config::Secret::new(
                    crate::support::GENERIC_SECRET,
                ))),
                reply_url: None,
                allow_unsigned: false,
            });
            s.programs[0].brand = "Toko Maju".into();
            s.dispatch.batch_size = 500;
            customise(s);
        });
        let app = spawn_app_on(fresh_database().await, settings.clone()).await;
        app.clock.set(mid_morning_wib());
        let marketing = app.token("campaigns", "marketing").await;
        Self {
            app,
            settings,
            marketing,
        }
    }

    /// A rig on the real clock with the program's window open all day
    /// (for what the database's clock decides: leases, backoff), sending
    /// through the generic gateway to `sink` when one is given.
    async fn all_day(sink: Option<&str>, customise: impl FnOnce(&mut Settings)) -> Self {
        let rig = Rig::new(|s| {
            if let Some(sink) = sink {
                s.shortcodes[0].reply_via = "generic".into();
                s.gateways.generic.as_mut().unwrap().reply_url = Some(format!("{sink}/sms"));
            }
            s.programs[0].sending.window = keyward::core::Window::parse("00:00-23:59").unwrap();
            customise(s);
        })
        .await;
        rig.app.clock.set(Utc::now());
        rig
    }

    fn dispatcher(&self) -> Arc<Dispatcher> {
        let pool = keyward::db::pool(self.app.db.clone(), 4).unwrap();
        Arc::new(
            Dispatcher::new(&self.settings, pool, Arc::new(Metrics::new()))
                .expect("the senders build")
                .with_clock(self.app.clock.clone()),
        )
    }

    /// Runs one dispatcher until nothing is due.
    async fn dispatch(&self) -> usize {
        crate::support::drain(&self.dispatcher()).await
    }

    /// Subscribes `count` numbers from `first` on, as if each had sent
    /// MAU 60 days ago (one statement per table, not per number).
    async fn subscribe(&self, first: usize, count: usize, state: &str) {
        let db = self.app.db().await;
        let numbers: Vec<String> = (first..first + count).map(number).collect();
        db.execute(
            "INSERT INTO subscribers (msisdn) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            &[&numbers],
        )
        .await
        .unwrap();
        db.execute(
            "WITH e AS (
                 INSERT INTO subscription_events
                        (msisdn, program, from_state, to_state, cause, actor, reason, effective_at)
                 SELECT n, 'default', 'none', $2::text::subscription_state, 'system', 'test',
                        'seeded', now() - interval '60 days'
                   FROM unnest($1::text[]) AS n
                 RETURNING id, msisdn, program, to_state, effective_at
             )
             INSERT INTO subscriptions (msisdn, program, state, since, event_id)
             SELECT msisdn, program, to_state, effective_at, id FROM e",
            &[&numbers, &state],
        )
        .await
        .unwrap();
    }

    /// Gives each number `sends` marketing messages of the program in the
    /// last days (earlier broadcasts, one each), `days_apart` apart.
    async fn sent_before(&self, first: usize, count: usize, sends: i32, days_apart: i32) {
        let db = self.app.db().await;
        let numbers: Vec<String> = (first..first + count).map(number).collect();
        for k in 0..sends {
            db.execute(
                "WITH b AS (
                     INSERT INTO broadcasts (program, kind, texts, shortcode, sender, send_at,
                                             valid_until, policy, created_by, idempotency_key,
                                             request_sha256, recipients)
                     VALUES ('default', 'marketing', '{}', '3344', 'log',
                             now() - interval '40 days', now() + interval '1 day', '{}', 'seed',
                             gen_random_uuid()::text, sha256('x'), 0)
                     RETURNING id
                 )
                 INSERT INTO outbox (msisdn, shortcode, text, sender, kind, program, broadcast_id,
                                     status, sent_at, gated_at)
                 SELECT n, '3344', 'Toko Maju: earlier', 'log', 'marketing', 'default', b.id,
                        'sent', $2::timestamptz, $2::timestamptz
                   FROM b, unnest($1::text[]) AS n",
                &[
                    &numbers,
                    &(self.app.clock.now() - Duration::days(i64::from(k * days_apart + 1))),
                ],
            )
            .await
            .unwrap();
        }
    }

    /// Broadcast messages that reached the provider (or the log), not
    /// counting those of the seeded broadcasts.
    async fn sent(&self) -> i64 {
        self.app
            .count(
                "SELECT count(*) FROM outbox o JOIN broadcasts b ON b.id = o.broadcast_id
                  WHERE o.status = 'sent' AND b.created_by <> 'seed'",
            )
            .await
    }

    async fn create(&self, key: &str, body: &Value) -> reqwest::Response {
        self.app
            .http
            .post(self.app.url("/v1/broadcasts"))
            .bearer_auth(&self.marketing)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn created(&self, key: &str, body: &Value) -> Value {
        let res = self.create(key, body).await;
        let status = res.status();
        let answer: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "{answer}");
        answer
    }

    async fn show(&self, id: i64) -> Value {
        let res = self
            .app
            .http
            .get(self.app.url(&format!("/v1/broadcasts/{id}")))
            .bearer_auth(&self.marketing)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    async fn control(&self, id: i64, what: &str) -> reqwest::Response {
        self.app
            .http
            .post(self.app.url(&format!("/v1/broadcasts/{id}/{what}")))
            .bearer_auth(&self.marketing)
            .send()
            .await
            .unwrap()
    }

    /// Marketing messages that left for `n` (sent or further).
    async fn marketing_sent_to(&self, n: &str) -> i64 {
        self.app
            .db()
            .await
            .query_one(
                "SELECT count(*) FROM outbox WHERE msisdn = $1 AND kind = 'marketing'
                    AND status IN ('sending', 'sent', 'delivered', 'undelivered', 'unknown')",
                &[&n],
            )
            .await
            .unwrap()
            .get(0)
    }
}

fn promo(valid_until: DateTime<Utc>) -> Value {
    json!({
        "program": "default",
        "kind": "marketing",
        "text": {
            "id": "Toko Maju: diskon 20% untuk semua sepatu sampai Minggu.",
            "en": "Toko Maju: 20% off all shoes until Sunday."
        },
        "valid_until": valid_until,
    })
}

#[tokio::test]
async fn a_broadcast_to_10000_of_whom_1000_unsubscribed_and_500_at_their_cap_gives_exact_counts() {
    let rig = Rig::new(|_| {}).await;
    rig.subscribe(0, 9_000, "subscribed").await;
    rig.subscribe(9_000, 1_000, "unsubscribed").await;
    // Four messages in the last 30 days, a week apart: at the cap.
    rig.sent_before(0, 500, 4, 7).await;
    let mut body = promo(mid_morning_wib() + Duration::days(3));
    body["recipients"] = (0..10_000).map(|i| json!({"number": number(i)})).collect();

    let plan = rig.created("ten-thousand", &body).await;
    assert_eq!(plan["recipients"], 10_000, "{plan}");
    assert_eq!(plan["to_send"], 8_500, "{plan}");
    assert_eq!(plan["deferred"], 0, "{plan}");
    assert_eq!(
        plan["skipped"],
        json!({"not_subscribed": 1_000, "cap_reached": 500}),
        "{plan}"
    );
    // One GSM-7 segment each, the stop sentence included.
    assert_eq!(plan["segments"], 8_500, "{plan}");

    rig.dispatch().await;
    assert_eq!(rig.sent().await, 8_500);
    let view = rig.show(plan["id"].as_i64().unwrap()).await;
    assert_eq!(view["by_status"]["sent"], 8_500, "{view}");
    assert_eq!(view["skipped"]["cap_reached"], 500, "{view}");
    assert_eq!(view["skipped"]["not_subscribed"], 1_000, "{view}");
    let text: String = rig
        .app
        .db()
        .await
        .query_one(
            "SELECT COALESCE(r.text, b.messages ->> r.language::text)
               FROM broadcast_recipients r JOIN broadcasts b ON b.id = r.broadcast_id
              WHERE r.broadcast_id = $1 AND r.msisdn = $2",
            &[&plan["id"].as_i64().unwrap(), &number(600)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        text,
        "Toko Maju: diskon 20% untuk semua sepatu sampai Minggu.\nBalas UNSUBSCRIBE ke 3344 untuk berhenti."
    );
}

#[tokio::test]
async fn at_03_00_wib_nothing_goes_and_everything_waits_for_08_00() {
    let rig = Rig::new(|_| {}).await;
    rig.app.clock.set(night_wib());
    rig.subscribe(0, 20, "subscribed").await;
    let plan = rig
        .created("night", &promo(night_wib() + Duration::days(2)))
        .await;
    assert_eq!(
        (plan["to_send"].as_i64(), plan["deferred"].as_i64()),
        (Some(0), Some(20)),
        "{plan}"
    );
    let eight_wib = Utc.with_ymd_and_hms(2026, 12, 2, 1, 0, 0).unwrap();
    assert_eq!(plan["first_send_at"], json!(eight_wib), "{plan}");

    assert_eq!(rig.dispatch().await, 0, "nothing goes at night");
    let view = rig.show(plan["id"].as_i64().unwrap()).await;
    assert_eq!(view["waiting"], json!({"window": 20}), "{view}");

    rig.app.clock.set(eight_wib + Duration::seconds(1));
    assert_eq!(rig.dispatch().await, 20);
}

#[tokio::test]
async fn a_recipient_who_sends_stop_mid_broadcast_gets_nothing_more_but_the_goodbye() {
    let rig = Rig::new(|_| {}).await;
    rig.app.clock.set(night_wib());
    rig.subscribe(0, 3, "subscribed").await;
    let plan = rig
        .created("stop", &promo(night_wib() + Duration::days(2)))
        .await;
    assert_eq!(plan["deferred"], 3);

    rig.app.text(&number(1), "STOP").await;
    rig.app.clock.set(mid_morning_wib());
    // The goodbye and the two others' messages; the third is skipped.
    assert_eq!(rig.dispatch().await, 4);
    assert_eq!(rig.marketing_sent_to(&number(1)).await, 0);
    assert_eq!(rig.marketing_sent_to(&number(0)).await, 1);
    let rows: Vec<(String, String, Option<String>)> = rig
        .app
        .db()
        .await
        .query(
            "SELECT b.kind::text, r.status::text, r.reason
               FROM broadcast_recipients r JOIN broadcasts b ON b.id = r.broadcast_id
              WHERE r.msisdn = $1
             UNION ALL
             SELECT kind::text, status::text, gate_reason FROM outbox WHERE msisdn = $1",
            &[&number(1)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            (
                "marketing".into(),
                "skipped".into(),
                Some("not_subscribed".into())
            ),
            ("goodbye".into(), "sent".into(), None),
        ],
        "the gate's decision is kept on the recipient; only the goodbye was queued"
    );

    // The decision is evidence in the number's timeline.
    let support = rig.app.token("helpdesk", "support").await;
    let found: Value = rig
        .app
        .http
        .get(rig.app.url(&format!("/v1/subscribers/{}", number(1))))
        .bearer_auth(&support)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let broadcast = found["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "marketing")
        .unwrap_or_else(|| panic!("{found}"));
    assert_eq!(broadcast["status"], "skipped");
    assert_eq!(broadcast["gate_reason"], "not_subscribed");
    assert_eq!(broadcast["broadcast_id"], plan["id"]);
}

#[tokio::test]
async fn two_overlapping_broadcasts_and_two_dispatchers_never_exceed_a_cap() {
    let rig = Rig::new(|s| {
        s.programs[0].sending.max_messages = 1;
        s.programs[0].sending.min_gap_hours = 0;
        s.programs[0].frequency.clear();
        // Small batches, so the two dispatchers interleave.
        s.dispatch.batch_size = 7;
    })
    .await;
    rig.subscribe(0, 300, "subscribed").await;
    let until = mid_morning_wib() + Duration::days(1);
    let first = rig.created("first", &promo(until)).await;
    let mut other = promo(until);
    other["text"]["id"] = json!("Toko Maju: gratis ongkos kirim hari ini.");
    let second = rig.created("second", &other).await;
    assert_eq!(first["to_send"], 300);
    assert_eq!(
        second["to_send"], 300,
        "both plan: the cap is decided at send time"
    );

    let (a, b) = (rig.dispatcher(), rig.dispatcher());
    let (handled_a, handled_b) = tokio::join!(crate::support::drain(&a), crate::support::drain(&b));
    assert_eq!(
        handled_a + handled_b,
        600,
        "every row decided once, by either dispatcher"
    );
    assert_eq!(rig.sent().await, 300, "one message per number");
    let over: i64 = rig
        .app
        .count(
            "SELECT count(*) FROM (SELECT msisdn FROM outbox WHERE kind = 'marketing'
                AND status IN ('sending', 'sent', 'delivered', 'undelivered', 'unknown')
              GROUP BY msisdn HAVING count(*) > 1) x",
        )
        .await;
    assert_eq!(over, 0, "nobody got two messages under a cap of one");
    assert_eq!(
        rig.app
            .count(
                "SELECT count(*) FROM broadcast_recipients
                  WHERE status = 'skipped' AND reason = 'cap_reached'"
            )
            .await,
        300
    );
}

#[tokio::test]
async fn pause_holds_resume_goes_on_and_cancel_ends_it() {
    let rig = Rig::new(|_| {}).await;
    rig.subscribe(0, 10, "subscribed").await;
    let later = mid_morning_wib() + Duration::hours(2);
    let mut body = promo(mid_morning_wib() + Duration::days(1));
    body["send_at"] = json!(later);
    let plan = rig.created("paused", &body).await;
    let id = plan["id"].as_i64().unwrap();
    assert_eq!(plan["deferred"], 10);

    assert_eq!(rig.control(id, "pause").await.status(), 200);
    rig.app.clock.set(later + Duration::seconds(1));
    assert_eq!(rig.dispatch().await, 0, "paused: nothing goes");
    let view: Value = rig.control(id, "resume").await.json().await.unwrap();
    assert_eq!(view["status"], "active");
    assert_eq!(rig.dispatch().await, 10);
    assert_eq!(rig.dispatch().await, 0, "resume sends nobody twice");

    // A notice: the marketing gap after the first would defer it anyway.
    let mut notice = body.clone();
    notice["kind"] = json!("notice");
    let other = rig.created("cancelled", &notice).await;
    let other_id = other["id"].as_i64().unwrap();
    let view: Value = rig.control(other_id, "cancel").await.json().await.unwrap();
    assert_eq!(view["skipped"], json!({"cancelled": 10}), "{view}");
    assert_eq!(rig.control(other_id, "resume").await.status(), 409);
    assert_eq!(rig.dispatch().await, 0);
    assert_eq!(rig.control(9_999, "pause").await.status(), 404);
}

#[tokio::test]
async fn a_message_past_its_valid_until_is_skipped_as_expired() {
    let rig = Rig::new(|_| {}).await;
    rig.app.clock.set(night_wib());
    rig.subscribe(0, 5, "subscribed").await;
    // Valid until 07:00 WIB: the window opens too late.
    let seven_wib = Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap();
    let plan = rig.created("too-late", &promo(seven_wib)).await;
    assert_eq!(plan["skipped"], json!({"expired": 5}), "{plan}");

    // Valid until 09:00 WIB, but the dispatcher is down until 09:30.
    let nine_wib = Utc.with_ymd_and_hms(2026, 12, 2, 2, 0, 0).unwrap();
    let plan = rig.created("late-dispatcher", &promo(nine_wib)).await;
    assert_eq!(plan["deferred"], 5);
    rig.app.clock.set(nine_wib + Duration::minutes(30));
    assert_eq!(rig.dispatch().await, 5, "five decided");
    assert_eq!(rig.sent().await, 0);
    let view = rig.show(plan["id"].as_i64().unwrap()).await;
    assert_eq!(view["skipped"], json!({"expired": 5}), "{view}");
}

#[tokio::test]
async fn unprofessional_texts_are_refused_with_their_codes_or_warned_about() {
    let rig = Rig::new(|_| {}).await;
    rig.subscribe(0, 2, "subscribed").await;
    let mut body = promo(mid_morning_wib() + Duration::days(1));
    body["text"] = json!({"id": "Toko Maju: p4g1 ini diskon, g ada yg lebih murah!!! bit.ly/x1"});
    let res = rig.create("lint", &body).await;
    assert_eq!(res.status(), 422);
    let err: Value = res.json().await.unwrap();
    let codes: Vec<&str> = err["error"]["details"]["lint"]["id"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    for code in [
        "abbreviation",
        "digit_spelling",
        "exclamations",
        "link_shortener",
    ] {
        assert!(codes.contains(&code), "{code} in {err}");
    }
    assert_eq!(rig.app.count("SELECT count(*) FROM broadcasts").await, 0);

    let mut template = promo(mid_morning_wib() + Duration::days(1));
    template["text"] = json!({"id": "Toko Maju: {nama} hemat"});
    let res = rig.create("template", &template).await;
    assert_eq!(res.status(), 422);
    let err: Value = res.json().await.unwrap();
    assert_eq!(
        err["error"]["details"]["problems"][0]["code"],
        "unknown_variable"
    );

    // Longer than the outbox holds: refused at creation, not a 500 midway.
    let mut long = promo(mid_morning_wib() + Duration::days(1));
    long["text"] = json!({"en": format!("Toko Maju: {}", "sale ".repeat(330))});
    let res = rig.create("long", &long).await;
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 1600"),
        "{err}"
    );
    assert_eq!(rig.app.count("SELECT count(*) FROM broadcasts").await, 0);

    let mut no_brand = promo(mid_morning_wib() + Duration::days(1));
    no_brand["text"] = json!({"en": "Big sale on shoes this week."});
    let err: Value = rig.create("brand", &no_brand).await.json().await.unwrap();
    assert_eq!(
        err["error"]["details"]["lint"]["en"][0]["code"], "no_brand",
        "{err}"
    );
}

#[tokio::test]
async fn a_program_that_only_warns_sends_with_the_findings_in_the_answer() {
    let rig = Rig::new(|s| s.programs[0].lint = keyward::config::LintMode::Warn).await;
    rig.subscribe(0, 2, "subscribed").await;
    let mut body = promo(mid_morning_wib() + Duration::days(1));
    body["text"] = json!({"id": "Toko Maju: diskon utk semua!!"});
    let plan = rig.created("warned", &body).await;
    assert_eq!(plan["to_send"], 2);
    assert_eq!(plan["lint"]["id"][0]["code"], "abbreviation", "{plan}");
}

#[tokio::test]
async fn a_retried_create_is_the_same_broadcast_and_a_reused_key_is_refused() {
    let rig = Rig::new(|_| {}).await;
    rig.subscribe(0, 4, "subscribed").await;
    let body = promo(mid_morning_wib() + Duration::days(1));
    let first = rig.created("same-key", &body).await;
    let res = rig.create("same-key", &body).await;
    assert_eq!(res.status(), 200);
    let again: Value = res.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["created"], false);
    assert_eq!(again["recipients"], 4);
    assert_eq!(rig.app.count("SELECT count(*) FROM broadcasts").await, 1);
    assert_eq!(
        rig.app
            .count("SELECT count(*) FROM broadcast_recipients")
            .await,
        4
    );

    // Retried after its valid_until: still the first answer, not a 400.
    rig.app.clock.set(mid_morning_wib() + Duration::days(2));
    let late = rig.create("same-key", &body).await;
    assert_eq!(late.status(), 200);
    assert_eq!(late.json::<Value>().await.unwrap()["id"], first["id"]);

    let mut different = body.clone();
    different["text"]["en"] = json!("Toko Maju: 30% off.");
    assert_eq!(rig.create("same-key", &different).await.status(), 409);
    let res = rig
        .app
        .http
        .post(rig.app.url("/v1/broadcasts"))
        .bearer_auth(&rig.marketing)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "a create needs an Idempotency-Key");
}

#[tokio::test]
async fn a_dry_run_counts_and_stores_nothing() {
    let rig = Rig::new(|_| {}).await;
    rig.subscribe(0, 6, "subscribed").await;
    let mut body = promo(mid_morning_wib() + Duration::days(1));
    body["dry_run"] = json!(true);
    let res = rig.create("dry", &body).await;
    assert_eq!(res.status(), 200);
    let plan: Value = res.json().await.unwrap();
    assert_eq!(
        (plan["to_send"].as_i64(), plan["id"].as_i64()),
        (Some(6), None)
    );
    assert_eq!(rig.app.count("SELECT count(*) FROM broadcasts").await, 0);
    assert_eq!(rig.app.count("SELECT count(*) FROM outbox").await, 0);
    assert_eq!(
        rig.app
            .count("SELECT count(*) FROM broadcast_recipients")
            .await,
        0
    );
}

#[tokio::test]
async fn marketing_controls_broadcasts_support_reads_them_and_neither_does_the_other_s_work() {
    let rig = Rig::new(|_| {}).await;
    rig.subscribe(0, 1, "subscribed").await;
    let support = rig.app.token("helpdesk", "support").await;
    let body = promo(mid_morning_wib() + Duration::days(1));
    let res = rig
        .app
        .http
        .post(rig.app.url("/v1/broadcasts"))
        .bearer_auth(&support)
        .header("idempotency-key", "k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "support cannot create");
    let plan = rig.created("k", &body).await;
    let id = plan["id"].as_i64().unwrap();
    let read = |token: &str, path: String| {
        rig.app
            .http
            .get(rig.app.url(&path))
            .bearer_auth(token.to_owned())
            .send()
    };
    assert_eq!(
        read(&support, format!("/v1/broadcasts/{id}"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        read(
            &support,
            format!("/v1/broadcasts/{id}/recipients?status=planned")
        )
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(
        read(&rig.marketing, format!("/v1/subscribers/{}", number(0)))
            .await
            .unwrap()
            .status(),
        403,
        "marketing reads no subscriber"
    );
    let res = rig
        .app
        .http
        .post(rig.app.url(&format!("/v1/broadcasts/{id}/pause")))
        .bearer_auth(&support)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "support cannot pause");
}

#[tokio::test]
async fn a_recorded_time_zone_decides_alone() {
    let rig = Rig::new(|_| {}).await;
    rig.subscribe(0, 2, "subscribed").await;
    let support = rig.app.token("helpdesk", "support").await;
    // 10:00 in Jakarta is 05:00 in Moscow.
    let res = rig
        .app
        .http
        .put(
            rig.app
                .url(&format!("/v1/subscribers/{}/timezone", number(1))),
        )
        .bearer_auth(&support)
        .json(&json!({"timezone": "Europe/Moscow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = rig
        .app
        .http
        .put(
            rig.app
                .url(&format!("/v1/subscribers/{}/timezone", number(1))),
        )
        .bearer_auth(&support)
        .json(&json!({"timezone": "Mars/Olympus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let plan = rig
        .created("zones", &promo(mid_morning_wib() + Duration::days(1)))
        .await;
    assert_eq!(
        (plan["to_send"].as_i64(), plan["deferred"].as_i64()),
        (Some(1), Some(1)),
        "{plan}"
    );
}

/// `kill -9` of a dispatcher process mid-broadcast: another one finishes
/// it; every recipient reaches the sink, and a message sent twice carries
/// the same Idempotency-Key (the outbox id), which the generic sink drops:
/// nobody gets two copies, nobody none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_mid_broadcast_loses_nobody_and_sends_nobody_twice() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_millis(40)))
        .mount(&sink)
        .await;
    let reply_url = format!("{}/sms", sink.uri());
    // Open all day: the dispatcher process reads the real clock.
    let rig = Rig::all_day(Some(&sink.uri()), |s| {
        s.dispatch.lease_secs = 3;
        s.dispatch.http_timeout_secs = 1;
        s.dispatch.batch_size = 10;
    })
    .await;
    rig.subscribe(0, 200, "subscribed").await;
    let plan = rig
        .created("killed", &promo(Utc::now() + Duration::days(1)))
        .await;
    assert_eq!(plan["to_send"], 200, "{plan}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyward.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [[shortcodes]]
            code = "3344"
            program = "default"
            reply_via = "generic"
            [[programs]]
            name = "default"
            brand = "Toko Maju"
            [programs.sending]
            window = "00:00-23:59"
            [gateways.generic]
            secret = "{}"
            reply_url = "{reply_url}"
            [dispatch]
            workers = 2
            batch_size = 10
            lease_secs = 3
            http_timeout_secs = 1
            "#,
            crate::support::GENERIC_SECRET
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["--config", config.to_str().unwrap(), "dispatch"])
        .current_dir(dir.path())
        .env("DATABASE_URL", crate::staff::database_url(&rig.app.db))
        .env_remove("KEYWARD_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start keyward dispatch");
    // Until it is well into the broadcast.
    let started = std::time::Instant::now();
    while sink.received_requests().await.unwrap_or_default().len() < 40 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the dispatcher sent nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // SIGKILL: no chance to record what it had in flight.
    child.kill().unwrap();
    child.wait().unwrap();
    let sent_by_first = sink.received_requests().await.unwrap().len();
    assert!(
        sent_by_first < 200,
        "killed mid-broadcast ({sent_by_first} sent)"
    );

    // Its leases expire; another dispatcher takes over.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    rig.app.clock.set(Utc::now());
    rig.dispatch().await;

    let keys: Vec<String> = sink
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
    assert_eq!(
        distinct.len(),
        200,
        "every recipient's message reached the sink"
    );
    let ids: std::collections::BTreeSet<String> = rig
        .app
        .db()
        .await
        .query(
            "SELECT id::text FROM outbox WHERE broadcast_id = $1",
            &[&plan["id"].as_i64().unwrap()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        distinct
            .into_iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        ids,
        "one key per recipient: a repeat is the same message, dropped by the sink"
    );
    let view = rig.show(plan["id"].as_i64().unwrap()).await;
    assert_eq!(view["by_status"], json!({"sent": 200}), "{view}");
}

#[tokio::test]
async fn a_senders_rate_is_one_budget_for_every_dispatcher() {
    let rig = Rig::new(|s| {
        s.dispatch.max_per_second.insert("log".into(), 3.0);
    })
    .await;
    rig.subscribe(0, 20, "subscribed").await;
    let plan = rig
        .created("rated", &promo(mid_morning_wib() + Duration::days(1)))
        .await;
    assert_eq!(plan["to_send"], 20);
    // At 3 per second, the last of 20 goes about 6.7 s after the first.
    let first = plan["first_send_at"]
        .as_str()
        .unwrap()
        .parse::<DateTime<Utc>>()
        .unwrap();
    let last = plan["last_send_at"]
        .as_str()
        .unwrap()
        .parse::<DateTime<Utc>>()
        .unwrap();
    assert!(
        (last - first - Duration::milliseconds(6_667))
            .num_milliseconds()
            .abs()
            < 50,
        "{plan}"
    );

    // Two dispatchers at once share the bucket: three tokens in all.
    let (a, b) = (rig.dispatcher(), rig.dispatcher());
    let (ra, rb) = tokio::join!(a.run_once(), b.run_once());
    ra.unwrap();
    rb.unwrap();
    assert_eq!(
        rig.sent().await,
        3,
        "a full bucket holds one second's sends"
    );
    let view = rig.show(plan["id"].as_i64().unwrap()).await;
    assert_eq!(view["waiting"]["rate"], 17, "{view}");
}

/// A broadcast row the claim cannot read (here: a policy that is not
/// one) costs its own sending, never the replies leased beside it.
#[tokio::test]
async fn a_broadcast_the_claim_cannot_read_does_not_hold_the_replies_back() {
    let rig = Rig::new(|_| {}).await;
    rig.subscribe(0, 1, "subscribed").await;
    rig.app
        .db()
        .await
        .execute(
            "WITH b AS (
                 INSERT INTO broadcasts (program, kind, texts, shortcode, sender, send_at,
                                         valid_until, policy, created_by, idempotency_key,
                                         request_sha256, recipients)
                 VALUES ('default', 'marketing', '{}', '3344', 'log', now(),
                         now() + interval '1 day', '{\"not\": \"a policy\"}', 'seed', 'bad',
                         sha256('x'), 1)
                 RETURNING id
             )
             INSERT INTO broadcast_recipients (broadcast_id, msisdn, status, due_at, language,
                                               text, decided_at)
             SELECT b.id, $1::text, 'planned', now() - interval '1 minute', 'id', 'Toko Maju: x',
                    now()
               FROM b",
            &[&number(0)],
        )
        .await
        .unwrap();
    rig.app.text(&number(5), "MAU").await;
    rig.dispatch().await;
    assert_eq!(
        rig.app
            .count("SELECT count(*) FROM outbox WHERE kind = 'welcome' AND status = 'sent'")
            .await,
        1,
        "the welcome went"
    );
    assert_eq!(
        rig.app
            .count("SELECT count(*) FROM outbox WHERE status = 'sending'")
            .await,
        0,
        "nothing left leased"
    );
}

/// A broadcast message the provider turns away for now is not simply sent
/// again: its recipient is planned once more and the gate asks again, so a
/// STOP in the meantime ends it, and the one still subscribed gets it on
/// the same outbox row (same Idempotency-Key), counted once.
#[tokio::test]
async fn a_broadcast_message_the_provider_refused_for_now_goes_back_through_the_gate() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("busy"))
        .up_to_n_times(2)
        .mount(&sink)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    // The retry's backoff is counted by the database's clock.
    let rig = Rig::all_day(Some(&sink.uri()), |_| {}).await;
    rig.subscribe(0, 2, "subscribed").await;
    let plan = rig
        .created("retried", &promo(Utc::now() + Duration::days(1)))
        .await;
    let id = plan["id"].as_i64().unwrap();
    assert_eq!(rig.dispatch().await, 2);
    let waiting = rig.show(id).await;
    assert_eq!(waiting["waiting"]["retry"], 2, "{waiting}");
    assert_eq!(rig.sent().await, 0);

    // The generic sink answers the STOP's goodbye with a 200.
    rig.app.text(&number(1), "STOP").await;
    rig.app
        .db()
        .await
        .execute(
            "UPDATE broadcast_recipients SET due_at = $1 WHERE status = 'planned'",
            &[&rig.app.clock.now()],
        )
        .await
        .unwrap();
    rig.dispatch().await;

    let done = rig.show(id).await;
    assert_eq!(done["by_status"]["sent"], 1, "{done}");
    assert_eq!(done["skipped"]["not_subscribed"], 1, "{done}");
    assert_eq!(
        done["by_status"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_i64().unwrap())
            .sum::<i64>(),
        2,
        "each recipient counted once: {done}"
    );
    let rows: Vec<(String, String, i32)> = rig
        .app
        .db()
        .await
        .query(
            "SELECT msisdn, status::text, attempts FROM outbox
              WHERE broadcast_id = $1 ORDER BY msisdn",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            (number(0), "sent".to_owned(), 2),
            (number(1), "skipped".to_owned(), 1)
        ]
    );
    let keys: Vec<String> = sink
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(&number(0)))
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 2, "tried twice");
    assert_eq!(keys[0], keys[1], "as one message");
}

/// A broadcast message whose dispatcher died mid-send is taken over when
/// its lease expires — but not sent again once its broadcast has ended:
/// yesterday's promotion does not go out late, even to finish a send.
#[tokio::test]
async fn a_message_taken_over_after_its_broadcast_ended_is_cancelled_not_sent() {
    let rig = Rig::all_day(None, |_| {}).await;
    rig.subscribe(0, 2, "subscribed").await;
    let plan = rig
        .created("ended", &promo(Utc::now() + Duration::hours(1)))
        .await;
    let id = plan["id"].as_i64().unwrap();
    // Both were let go by a dispatcher that died while sending: taken
    // over while the broadcast runs, they go.
    let db = rig.app.db().await;
    died_while_sending(&db, id).await;
    rig.dispatch().await;
    assert_eq!(rig.sent().await, 2, "taken over and sent while it is valid");

    // The same with a second broadcast that has ended meanwhile.

    let later = rig
        .created("ended-2", &promo(Utc::now() + Duration::hours(1)))
        .await;
    let later = later["id"].as_i64().unwrap();
    died_while_sending(&db, later).await;
    db.batch_execute(&format!(
        "UPDATE broadcasts SET send_at = now() - interval '2 hours',
                               valid_until = now() - interval '1 minute'
          WHERE id = {later};"
    ))
    .await
    .unwrap();
    rig.dispatch().await;
    let rows: Vec<(String, String)> = db
        .query(
            "SELECT status::text, last_error FROM outbox WHERE broadcast_id = $1",
            &[&later],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), 2);
    for (status, error) in &rows {
        assert_eq!(status, "cancelled", "{rows:?}");
        assert!(error.contains("broadcast ended"), "{rows:?}");
    }
    assert_eq!(rig.sent().await, 2, "nothing more went");
}

/// Every recipient of broadcast `id` let go by a dispatcher that died while
/// sending: leased to it, the lease run out.
async fn died_while_sending(db: &tokio_postgres::Client, id: i64) {
    db.batch_execute(&format!(
        "UPDATE broadcast_recipients SET status = 'released' WHERE broadcast_id = {id};
         INSERT INTO outbox (msisdn, shortcode, text, sender, kind, program, broadcast_id, status,
                             lease_owner, lease_expires_at, attempts, gated_at)
         SELECT msisdn, '3344', 'Toko Maju: promo', 'log', 'marketing', 'default', broadcast_id,
                'sending', 'dead', now() - interval '1 minute', 1, now()
           FROM broadcast_recipients WHERE broadcast_id = {id};"
    ))
    .await
    .unwrap();
}
