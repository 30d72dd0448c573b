//! The reply dispatcher against local stand-ins of the providers' APIs.

use std::sync::Arc;
use std::time::Duration;

use keyward::config::{self, Secret, Secrets, Settings};
use keyward::dispatch::Dispatcher;
use keyward::metrics::Metrics;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{fresh_database, spawn_app_on, TestApp, GENERIC_SECRET};

const NUMBER: &str = "+6281234567890";

/// Settings whose short code replies through `sender`, with every sender
/// pointed at `server`.
fn settings_for(sender: &str, server: &MockServer) -> Settings {
    let base = server.uri();
    let mut s = crate::support::signed_generic_settings();
    s.service.public_url = Some("https://sms.example.com".into());
    s.shortcodes[0].reply_via = sender.into();
    let g = &mut s.gateways;
    g.generic.as_mut().unwrap().reply_url = Some(format!("{base}/sms"));
    g.twilio = Some(config::TwilioSettings {
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        auth_token: Secrets::One(Secret::new("twilio-token-0123456789")),
        api_base: base.clone(),
    });
    g.vonage = Some(config::VonageSettings {
        api_key: "vkey".into(),
        api_secret: Some(Secret::new("vsecret")),
        signature_secret: Secrets::One(Secret::new("vonage-secret-0123456789")),
        signature_method: config::VonageSignatureMethod::Md5hash,
        api_base: base.clone(),
    });
    g.kannel = Some(config::KannelSettings {
        secret: Secrets::One(Secret::new("shared-secret-0123456789")),
        sendsms_url: Some(format!("{base}/cgi-bin/sendsms")),
        username: Some("kuser".into()),
        password: Some(Secret::new("kpass")),
    });
    g.jasmin = Some(config::JasminSettings {
        secret: Secrets::One(Secret::new("shared-secret-0123456789")),
        api_base: base.clone(),
        username: Some("juser".into()),
        password: Some(Secret::new("jpass")),
    });
    g.telnyx = Some(config::TelnyxSettings {
        api_key: Some(Secret::new("KEYtelnyx")),
        public_key: "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=".into(),
        api_base: base.clone(),
    });
    g.plivo = Some(config::PlivoSettings {
        auth_id: "MAPLIVO".into(),
        auth_token: Secrets::One(Secret::new("plivo-token-0123456789")),
        api_base: base.clone(),
    });
    g.infobip = Some(config::InfobipSettings {
        secret: Secrets::One(Secret::new("shared-secret-0123456789")),
        api_key: Some(Secret::new("ibkey")),
        api_base: base,
    });
    s.dispatch.http_timeout_secs = 1;
    s.dispatch.lease_secs = 30;
    s.dispatch.backoff_base_secs = 60.0;
    s.validate().expect("valid");
    s
}

struct Rig {
    app: TestApp,
    server: MockServer,
    settings: Settings,
}

impl Rig {
    async fn new(sender: &str) -> Self {
        let server = MockServer::start().await;
        let settings = settings_for(sender, &server);
        let app = spawn_app_on(fresh_database().await, settings.clone()).await;
        Self {
            app,
            server,
            settings,
        }
    }

    fn dispatcher(&self) -> Arc<Dispatcher> {
        let pool = keyward::db::pool(self.app.db.clone(), 4).unwrap();
        Arc::new(
            Dispatcher::new(&self.settings, pool, Arc::new(Metrics::new()))
                .expect("the senders build"),
        )
    }

    /// Runs one dispatcher until nothing is due.
    async fn dispatch(&self) -> usize {
        crate::support::drain(&self.dispatcher()).await
    }

    async fn outbox(&self) -> Vec<(String, String, i32, Option<String>, Option<String>)> {
        self.app
            .db()
            .await
            .query(
                "SELECT kind::text, status::text, attempts, last_error, provider_message_id
                   FROM outbox ORDER BY created_at, id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect()
    }

    /// Seconds until the (only) reply's next attempt.
    async fn seconds_until_next_attempt(&self) -> f64 {
        self.app
            .db()
            .await
            .query_one(
                "SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM outbox",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn make_due(&self) {
        self.app
            .db()
            .await
            .execute(
                "UPDATE outbox SET next_attempt_at = now() WHERE status = 'queued'",
                &[],
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_generic_sender_posts_signed_json_with_an_idempotency_key() {
    let rig = Rig::new("generic").await;
    Mock::given(method("POST"))
        .and(path("/sms"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&rig.server)
        .await;
    rig.app.text(NUMBER, "MAU").await;
    assert_eq!(rig.dispatch().await, 1);

    let requests = rig.server.received_requests().await.unwrap();
    let req = &requests[0];
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(req.headers["idempotency-key"].to_str().unwrap(), id);
    assert_eq!(body["from"], "3344");
    assert_eq!(body["to"], NUMBER);
    assert!(body["text"].as_str().unwrap().contains("UNSUBSCRIBE"));
    assert!(body["in_reply_to"].as_str().unwrap().starts_with("gw-"));
    let ts: i64 = req.headers["x-keyward-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = keyward::gateways::generic::sign(&Secret::new(GENERIC_SECRET), ts, &req.body);
    assert_eq!(
        req.headers["x-keyward-signature"].to_str().unwrap(),
        expected
    );
    assert_eq!(rig.outbox().await[0].1, "sent");
}

#[tokio::test]
async fn the_twilio_sender_matches_the_messages_api() {
    let rig = Rig::new("twilio").await;
    Mock::given(method("POST"))
        .and(path(
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json",
        ))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"sid": "SMabc", "status": "queued"})),
        )
        .expect(1)
        .mount(&rig.server)
        .await;
    rig.app.text(NUMBER, "СТОП").await;
    rig.dispatch().await;
    let req = &rig.server.received_requests().await.unwrap()[0];
    let auth = req.headers["authorization"].to_str().unwrap();
    assert_eq!(
        auth,
        keyward::gateways::basic_auth(
            "AC0123456789abcdef0123456789abcdef",
            "twilio-token-0123456789"
        )
    );
    let form: Vec<(String, String)> = form_urlencoded::parse(&req.body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("To"), Some(NUMBER));
    assert_eq!(get("From"), Some("3344"));
    assert!(
        get("Body").unwrap().contains("СТАРТ"),
        "Cyrillic goes as UTF-8 form data"
    );
    assert_eq!(
        get("StatusCallback"),
        Some("https://sms.example.com/webhooks/twilio/status")
    );
    let outbox = rig.outbox().await;
    assert_eq!(
        (outbox[0].1.as_str(), outbox[0].4.as_deref()),
        ("sent", Some("SMabc"))
    );
}

#[tokio::test]
async fn cyrillic_replies_go_as_unicode_through_vonage_kannel_and_jasmin() {
    for (sender, route, check) in [
        ("vonage", "/sms/json", "type=unicode"),
        ("kannel", "/cgi-bin/sendsms", "coding=2"),
        ("jasmin", "/send", "coding=8"),
    ] {
        let rig = Rig::new(sender).await;
        let answer = match sender {
            "vonage" => ResponseTemplate::new(200).set_body_json(
                json!({"message-count": "1", "messages": [{"status": "0", "message-id": "v1"}]}),
            ),
            "kannel" => ResponseTemplate::new(202).set_body_string("0: Accepted for delivery"),
            _ => ResponseTemplate::new(200).set_body_string("Success \"j-77\""),
        };
        Mock::given(path(route))
            .respond_with(answer)
            .expect(1)
            .mount(&rig.server)
            .await;
        rig.app.text(NUMBER, "СТОП").await;
        rig.dispatch().await;
        let req = &rig.server.received_requests().await.unwrap()[0];
        let sent = format!(
            "{}&{}",
            req.url.query().unwrap_or(""),
            String::from_utf8_lossy(&req.body)
        );
        assert!(sent.contains(check), "{sender}: {sent}");
        let outbox = rig.outbox().await;
        assert_eq!(outbox[0].1, "sent", "{sender}: {outbox:?}");
        if sender == "jasmin" {
            assert_eq!(outbox[0].4.as_deref(), Some("j-77"));
            let form: Vec<(String, String)> =
                form_urlencoded::parse(&req.body).into_owned().collect();
            let hex_content = &form.iter().find(|(k, _)| k == "hex-content").unwrap().1;
            let units: Vec<u16> = hex::decode(hex_content)
                .unwrap()
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            assert!(String::from_utf16(&units).unwrap().contains("СТАРТ"));
        }
    }
}

#[tokio::test]
async fn telnyx_plivo_and_infobip_requests_carry_their_auth() {
    for (sender, route, auth_prefix, answer) in [
        (
            "telnyx",
            "/v2/messages",
            "Bearer KEYtelnyx",
            json!({"data": {"id": "t-1"}}),
        ),
        (
            "plivo",
            "/v1/Account/MAPLIVO/Message/",
            "Basic ",
            json!({"message_uuid": ["p-1"]}),
        ),
        (
            "infobip",
            "/sms/2/text/advanced",
            "App ibkey",
            json!({"messages": [{"messageId": "i-1"}]}),
        ),
    ] {
        let rig = Rig::new(sender).await;
        Mock::given(method("POST"))
            .and(path(route))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer))
            .expect(1)
            .mount(&rig.server)
            .await;
        rig.app.text(NUMBER, "MAU").await;
        rig.dispatch().await;
        let req = &rig.server.received_requests().await.unwrap()[0];
        assert!(
            req.headers["authorization"]
                .to_str()
                .unwrap()
                .starts_with(auth_prefix),
            "{sender}"
        );
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert!(
            body.to_string().contains("6281234567890"),
            "{sender}: {body}"
        );
        assert!(
            rig.outbox().await[0].4.as_deref().unwrap().ends_with("-1"),
            "{sender}"
        );
    }
}

#[tokio::test]
async fn transient_errors_are_retried_with_backoff_and_then_dead() {
    let mut rig = Rig::new("generic").await;
    rig.settings.dispatch.max_attempts = 3;
    Mock::given(path("/sms"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream down"))
        .up_to_n_times(1)
        .mount(&rig.server)
        .await;
    Mock::given(path("/sms"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "120"))
        .up_to_n_times(1)
        .mount(&rig.server)
        .await;
    Mock::given(path("/sms"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&rig.server)
        .await;
    rig.app.text(NUMBER, "MAU").await;

    rig.dispatch().await;
    let row = &rig.outbox().await[0];
    assert_eq!((row.1.as_str(), row.2), ("queued", 1));
    assert!(row.3.as_deref().unwrap().contains("500"), "{row:?}");
    let wait = rig.seconds_until_next_attempt().await;
    assert!(
        (25.0..=61.0).contains(&wait),
        "backoff of base 60 s with jitter: {wait}"
    );
    assert_eq!(rig.dispatch().await, 0, "not due yet");

    rig.make_due().await;
    rig.dispatch().await;
    let wait = rig.seconds_until_next_attempt().await;
    assert!(
        (110.0..=121.0).contains(&wait),
        "Retry-After is honoured: {wait}"
    );

    rig.make_due().await;
    rig.dispatch().await; // times out after 1 s: the third and last attempt
    let row = &rig.outbox().await[0];
    assert_eq!((row.1.as_str(), row.2), ("dead", 3), "{row:?}");
    assert!(row.3.as_deref().unwrap().contains("timeout"), "{row:?}");
}

#[tokio::test]
async fn a_permanent_error_is_not_retried() {
    let rig = Rig::new("generic").await;
    Mock::given(path("/sms"))
        .respond_with(ResponseTemplate::new(400).set_body_string("invalid destination"))
        .expect(1)
        .mount(&rig.server)
        .await;
    rig.app.text(NUMBER, "MAU").await;
    rig.dispatch().await;
    rig.make_due().await;
    assert_eq!(rig.dispatch().await, 0);
    let row = &rig.outbox().await[0];
    assert_eq!(row.1, "failed");
    assert!(row.3.as_deref().unwrap().contains("invalid destination"));
}

#[tokio::test]
async fn a_provider_opt_out_enters_the_ledger_and_stops_further_replies() {
    let rig = Rig::new("twilio").await;
    Mock::given(path(
        "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json",
    ))
    .respond_with(ResponseTemplate::new(400).set_body_json(json!({
        "code": 21610, "message": "Attempt to send to unsubscribed recipient",
        "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400
    })))
    .expect(1)
    .mount(&rig.server)
    .await;
    rig.app.text(NUMBER, "MAU").await;
    rig.dispatch().await;
    let db = rig.app.db().await;
    let row = db
        .query_one(
            "SELECT s.state::text, e.cause::text, e.actor FROM subscriptions s
               JOIN subscription_events e ON e.id = s.event_id WHERE s.msisdn = $1",
            &[&NUMBER],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "unsubscribed");
    assert_eq!(row.get::<_, String>(1), "provider");
    assert_eq!(row.get::<_, String>(2), "twilio");
    assert_eq!(rig.outbox().await[0].1, "failed");
    // Nothing more is sent: a new opt-in must come from the subscriber.
    let body = rig.app.text(NUMBER, "hello").await;
    assert_eq!(body["state"], "unsubscribed");
}

#[tokio::test]
async fn a_number_that_opts_out_before_the_send_gets_no_welcome_but_its_goodbye() {
    let rig = Rig::new("generic").await;
    Mock::given(path("/sms"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&rig.server)
        .await;
    rig.app.text(NUMBER, "MAU").await;
    rig.app.text(NUMBER, "STOP").await;
    rig.dispatch().await;
    let rows = rig.outbox().await;
    assert_eq!(rows[0].0, "welcome");
    assert_eq!(rows[0].1, "cancelled");
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1.as_str()),
        ("goodbye", "sent")
    );
}

#[tokio::test]
async fn a_crashed_dispatchers_lease_expires_and_the_reply_is_sent_once() {
    let rig = Rig::new("generic").await;
    Mock::given(path("/sms"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&rig.server)
        .await;
    rig.app.text(NUMBER, "MAU").await;
    // A dispatcher claims the reply and dies before sending it.
    let client = keyward::db::pool(rig.app.db.clone(), 1)
        .unwrap()
        .get()
        .await
        .unwrap();
    let claimed = keyward::db::outbox::claim(&client, "crashed", 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(rig.dispatch().await, 0, "leased: nobody else takes it");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(rig.dispatch().await, 1);
    let row = &rig.outbox().await[0];
    assert_eq!((row.1.as_str(), row.2), ("sent", 2));
    // The crashed one cannot record a result any more.
    let late = keyward::db::outbox::Next::Failed {
        error: "late".into(),
    };
    let recorded =
        keyward::db::outbox::finish_all(&client, "crashed", &[(claimed[0].id.clone(), late)])
            .await
            .unwrap();
    assert_eq!(recorded.count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_dispatchers_on_one_outbox_send_each_reply_once() {
    let rig = Rig::new("generic").await;
    Mock::given(path("/sms"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&rig.server)
        .await;
    for i in 0..60 {
        rig.app.text(&format!("+62812345{i:05}"), "MAU").await;
    }
    let (a, b) = (rig.dispatcher(), rig.dispatcher());
    let run = |d: Arc<Dispatcher>| async move {
        let mut n = 0;
        loop {
            match d.run_once().await.unwrap() {
                0 => return n,
                k => n += k,
            }
        }
    };
    let (na, nb) = tokio::join!(run(a), run(b));
    assert_eq!(na + nb, 60);
    let requests = rig.server.received_requests().await.unwrap();
    let mut ids: Vec<String> = requests
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!((requests.len(), ids.len()), (60, 60));
}

#[tokio::test]
async fn delivery_receipts_move_a_reply_forward_only() {
    let rig = Rig::new("twilio").await;
    Mock::given(path(
        "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json",
    ))
    .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SMr1"})))
    .mount(&rig.server)
    .await;
    rig.app.text(NUMBER, "MAU").await;
    rig.dispatch().await;
    let callback = |status| twilio_status(&rig, "SMr1", status);
    assert_eq!(callback("delivered").await, 200);
    assert_eq!(rig.outbox().await[0].1, "delivered");
    assert_eq!(callback("sent").await, 200);
    assert_eq!(
        rig.outbox().await[0].1,
        "delivered",
        "a late `sent` changes nothing"
    );
    assert_eq!(callback("undelivered").await, 200);
    assert_eq!(rig.outbox().await[0].1, "delivered");
    let unsigned = rig
        .app
        .http
        .post(rig.app.url("/webhooks/twilio/status"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("MessageSid=SMr1&MessageStatus=failed")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
}

/// Posts a signed Twilio status callback; returns the HTTP status.
async fn twilio_status(rig: &Rig, sid: &str, status: &str) -> u16 {
    let params = [
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
    ];
    let sig = crate::support::sign::twilio_signature(
        "https://sms.example.com/webhooks/twilio/status",
        &params,
    );
    rig.app
        .http
        .post(rig.app.url("/webhooks/twilio/status"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish(),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn early_receipts(rig: &Rig) -> i64 {
    rig.app
        .db()
        .await
        .query_one("SELECT count(*) FROM early_receipts", &[])
        .await
        .unwrap()
        .get(0)
}

/// A provider that reports faster than the dispatcher records its send:
/// the receipt waits and is applied once the provider's id is stored.
#[tokio::test]
async fn a_receipt_that_arrives_before_the_send_is_recorded_is_applied_after() {
    let rig = Rig::new("twilio").await;
    Mock::given(path(
        "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json",
    ))
    .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SMfast"})))
    .mount(&rig.server)
    .await;
    rig.app.text(NUMBER, "MAU").await;
    // The receipt comes before the send is recorded (here: before it is
    // even made): nothing carries SMfast yet.
    assert_eq!(twilio_status(&rig, "SMfast", "delivered").await, 200);
    assert_eq!(early_receipts(&rig).await, 1);
    assert_eq!(rig.outbox().await[0].1, "queued");

    rig.dispatch().await;
    let reply = &rig.outbox().await[0];
    assert_eq!(reply.4.as_deref(), Some("SMfast"));
    assert_eq!(reply.1, "delivered", "the early receipt was applied");
    assert_eq!(early_receipts(&rig).await, 0);

    // A late receipt for a reply we know is not "early": it changes
    // nothing and is not kept.
    assert_eq!(twilio_status(&rig, "SMfast", "sent").await, 200);
    assert_eq!(early_receipts(&rig).await, 0);
    assert_eq!(rig.outbox().await[0].1, "delivered");

    // One that never matches is dropped after a day.
    rig.app
        .db()
        .await
        .execute(
            "INSERT INTO early_receipts (sender, provider_message_id, status, received_at)
             VALUES ('twilio', 'SMnobody', 'delivered', now() - interval '25 hours'),
                    ('twilio', 'SMrecent', 'delivered', now())",
            &[],
        )
        .await
        .unwrap();
    rig.dispatch().await;
    assert_eq!(early_receipts(&rig).await, 1, "the recent one stays");
}

#[tokio::test]
async fn kannel_delivery_reports_find_the_reply_by_its_outbox_id() {
    let rig = Rig::new("kannel").await;
    Mock::given(path("/cgi-bin/sendsms"))
        .respond_with(ResponseTemplate::new(202).set_body_string("0: Accepted for delivery"))
        .mount(&rig.server)
        .await;
    rig.app.text(NUMBER, "MAU").await;
    rig.dispatch().await;
    let req = &rig.server.received_requests().await.unwrap()[0];
    let query: Vec<(String, String)> = req.url.query_pairs().into_owned().collect();
    let dlr_url = &query.iter().find(|(k, _)| k == "dlr-url").unwrap().1;
    assert_eq!(query.iter().find(|(k, _)| k == "dlr-mask").unwrap().1, "31");
    // Kannel fills in %d (1 = delivered) and calls the URL.
    let dlr = dlr_url
        .replace("https://sms.example.com", &rig.app.address)
        .replace("%d", "1")
        .replace("%T", "1795428000");
    assert_eq!(rig.app.http.get(&dlr).send().await.unwrap().status(), 200);
    assert_eq!(rig.outbox().await[0].1, "delivered");
    let forged = dlr.replace("token=shared-secret-0123456789", "token=nope");
    assert_eq!(
        rig.app.http.get(&forged).send().await.unwrap().status(),
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_an_in_flight_send_finishes_and_is_recorded() {
    let rig = Rig::new("generic").await;
    Mock::given(path("/sms"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(700)))
        .mount(&rig.server)
        .await;
    rig.app.text(NUMBER, "MAU").await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(rig.dispatcher().run(1, stopped));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rig.server.received_requests().await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the send never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
    assert_eq!(
        rig.outbox().await[0].1,
        "sent",
        "the send in flight was finished and recorded"
    );
}

/// With a campaign's worth of replies queued, a claim reads the head of the
/// queue from its index instead of sorting the whole backlog (which made
/// every claim cost time in proportion to the backlog).
#[tokio::test]
async fn a_claim_reads_only_the_head_of_a_large_backlog() {
    let pool = keyward::db::pool(fresh_database().await, 1).unwrap();
    let client = pool.get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO outbox (msisdn, shortcode, text, sender, kind, program, next_attempt_at)
             SELECT '+62812' || lpad(g::text, 7, '0'), '3344', 'hello', 'generic', 'welcome',
                    'promo', now() - g * interval '1 second'
               FROM generate_series(1, 20000) g;
             ANALYZE outbox;",
        )
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(
            &format!("EXPLAIN {}", keyward::db::outbox::CLAIM),
            &[&"planner", &32_i64, &60.0_f64],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    // (The few rows of `broadcasts`, looked up for a broadcast message
    // only, may be scanned: they are not the backlog.)
    assert!(!plan.contains("Seq Scan on outbox"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");

    // And it takes the longest-waiting replies first.
    let claimed = keyward::db::outbox::claim(&client, "me", 3, Duration::from_secs(60))
        .await
        .unwrap();
    let mut numbers: Vec<&str> = claimed.iter().map(|c| c.msisdn.as_str()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, ["+628120019998", "+628120019999", "+628120020000"]);
}

const TWILIO_MESSAGES: &str =
    "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";

/// The outbox id of the (only) reply to `number`.
async fn reply_to(rig: &Rig, number: &str) -> String {
    rig.app
        .db()
        .await
        .query_one(
            "SELECT id::text FROM outbox WHERE msisdn = $1::text",
            &[&number],
        )
        .await
        .unwrap()
        .get(0)
}

/// Status, provider id, last error and uncertain attempts of the reply to
/// `number`.
async fn reply_state(rig: &Rig, number: &str) -> (String, Option<String>, Option<String>, i32) {
    let row = rig
        .app
        .db()
        .await
        .query_one(
            "SELECT status::text, provider_message_id, last_error, uncertain_attempts
               FROM outbox WHERE msisdn = $1::text",
            &[&number],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

/// How many requests the sink received for each outbox id, by the
/// reply's number (Twilio's form carries `To`, not our id).
async fn twilio_requests_per_reply(rig: &Rig) -> std::collections::BTreeMap<String, usize> {
    let mut per_reply = std::collections::BTreeMap::new();
    for req in rig.server.received_requests().await.unwrap() {
        let to = form_urlencoded::parse(&req.body)
            .find(|(k, _)| k == "To")
            .map(|(_, v)| v.into_owned())
            .expect("a To field");
        *per_reply.entry(reply_to(rig, &to).await).or_insert(0) += 1;
    }
    per_reply
}

/// Leases of replies still `sending` expire now, as if their dispatcher had
/// died or stalled.
async fn expire_leases(rig: &Rig) {
    rig.app
        .db()
        .await
        .execute(
            "UPDATE outbox SET lease_expires_at = now() - interval '1 second'
              WHERE status = 'sending'",
            &[],
        )
        .await
        .unwrap();
}

/// A provider that answers the message id another reply already has (the
/// batch statement once failed on `outbox_provider_message_idx`, and the
/// whole batch went out again at every lease expiry). Each reply reaches
/// the sink once; the colliding ones are sent, without the id, saying whose
/// it is.
#[tokio::test]
async fn a_provider_id_another_reply_has_is_kept_out_and_nothing_is_sent_twice() {
    let rig = Rig::new("twilio").await;
    Mock::given(method("POST"))
        .and(path(TWILIO_MESSAGES))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SMsame"})))
        .mount(&rig.server)
        .await;
    let (a, b, c) = ("+6281200000001", "+6281200000002", "+6281200000003");
    // A and B in one batch: the provider gives both the same id.
    rig.app.text(a, "MAU").await;
    rig.app.text(b, "MAU").await;
    assert_eq!(rig.dispatch().await, 2);
    // C in a later batch: its id is already A's or B's.
    rig.app.text(c, "MAU").await;
    assert_eq!(rig.dispatch().await, 1);

    let states = [
        reply_state(&rig, a).await,
        reply_state(&rig, b).await,
        reply_state(&rig, c).await,
    ];
    assert!(states.iter().all(|s| s.0 == "sent"), "{states:?}");
    let holders: Vec<_> = states
        .iter()
        .filter(|s| s.1.as_deref() == Some("SMsame"))
        .collect();
    assert_eq!(holders.len(), 1, "one reply keeps the id: {states:?}");
    let holder_id = if states[0].1.is_some() {
        reply_to(&rig, a).await
    } else {
        reply_to(&rig, b).await
    };
    for s in states.iter().filter(|s| s.1.is_none()) {
        let why = s.2.as_deref().unwrap();
        assert!(why.contains("SMsame") && why.contains(&holder_id), "{why}");
    }

    // Nothing is left to send again, now or after any lease period.
    expire_leases(&rig).await;
    assert_eq!(rig.dispatch().await, 0);
    let per_reply = twilio_requests_per_reply(&rig).await;
    assert_eq!(per_reply.len(), 3);
    assert!(per_reply.values().all(|n| *n == 1), "{per_reply:?}");
}

/// A database error between the provider's accept and our record, for one
/// reply of a batch: its batch-mates are recorded as sent, and none of the
/// three is sent again — the one whose result was lost becomes `unknown`
/// when its lease expires, since Twilio cannot be asked twice safely. Its
/// one re-send comes after the delay; the sink then has it twice, never
/// more.
fn sid_for(number: &str) -> String {
    format!("SM{}", hex::encode(number))
}

#[tokio::test]
async fn one_reply_that_cannot_be_recorded_sends_no_batch_mate_again() {
    let rig = Rig::new("twilio").await;
    Mock::given(method("POST"))
        .and(path(TWILIO_MESSAGES))
        .respond_with(|req: &wiremock::Request| {
            let to = form_urlencoded::parse(&req.body)
                .find(|(k, _)| k == "To")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            // The provider's id is derived from the number, but not the
            // number itself: ids are logged, numbers never.
            ResponseTemplate::new(201).set_body_json(json!({"sid": sid_for(&to)}))
        })
        .mount(&rig.server)
        .await;
    let numbers = ["+6281200000011", "+6281200000012", "+6281200000013"];
    for n in numbers {
        rig.app.text(n, "MAU").await;
    }
    let db = rig.app.db().await;
    // Recording this one reply as sent fails (a test-only trigger).
    db.batch_execute(
        "CREATE FUNCTION test_refuse_recording() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.status = 'sent' AND NEW.msisdn = '+6281200000012' THEN
                 RAISE EXCEPTION 'injected: this result cannot be recorded';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER test_refuse_recording BEFORE UPDATE ON outbox
             FOR EACH ROW EXECUTE FUNCTION test_refuse_recording();",
    )
    .await
    .unwrap();

    assert_eq!(rig.dispatch().await, 3, "one batch");
    let (first, lost, third) = (
        reply_state(&rig, numbers[0]).await,
        reply_state(&rig, numbers[1]).await,
        reply_state(&rig, numbers[2]).await,
    );
    assert_eq!(
        (first.0.as_str(), first.1.as_deref()),
        ("sent", Some(sid_for("+6281200000011").as_str()))
    );
    assert_eq!(
        (third.0.as_str(), third.1.as_deref()),
        ("sent", Some(sid_for("+6281200000013").as_str()))
    );
    assert_eq!(lost.0, "sending", "its result was not recorded");

    // Its lease expires: possibly sent, so `unknown`, not sent again.
    expire_leases(&rig).await;
    assert_eq!(rig.dispatch().await, 1);
    let lost = reply_state(&rig, numbers[1]).await;
    assert_eq!((lost.0.as_str(), lost.3), ("unknown", 1), "{lost:?}");
    assert!(
        lost.2.as_deref().unwrap().contains("re-sent once"),
        "{lost:?}"
    );
    let per_reply = twilio_requests_per_reply(&rig).await;
    assert_eq!(per_reply.len(), 3);
    assert!(
        per_reply.values().all(|n| *n == 1),
        "each reply exactly once: {per_reply:?}"
    );
    assert_eq!(rig.dispatch().await, 0, "its re-send is not due yet");

    // The delay passes (and the database accepts the record again): the one
    // re-send, recorded as sent.
    db.batch_execute("DROP TRIGGER test_refuse_recording ON outbox")
        .await
        .unwrap();
    db.execute(
        "UPDATE outbox SET next_attempt_at = now() WHERE status = 'unknown'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(rig.dispatch().await, 1);
    let lost = reply_state(&rig, numbers[1]).await;
    assert_eq!(
        (lost.0.as_str(), lost.1.as_deref()),
        ("sent", Some(sid_for("+6281200000012").as_str()))
    );
    let per_reply = twilio_requests_per_reply(&rig).await;
    let lost_id = reply_to(&rig, numbers[1]).await;
    assert_eq!(per_reply[&lost_id], 2, "{per_reply:?}");
    assert_eq!(per_reply.values().sum::<usize>(), 4, "{per_reply:?}");
}

/// A dispatcher takes `number`'s reply and dies with the lease; the lease
/// has expired when this returns.
async fn crash_while_sending(rig: &Rig) {
    let client = keyward::db::pool(rig.app.db.clone(), 1)
        .unwrap()
        .get()
        .await
        .unwrap();
    let claimed = keyward::db::outbox::claim(&client, "crashed", 10, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
}

/// A non-idempotent sender: a reply left `sending` by a lease that expired
/// becomes `unknown` without a call; it is re-sent once after the delay,
/// and if that attempt too ends unknown, never again automatically.
#[tokio::test]
async fn a_possibly_sent_reply_through_a_non_idempotent_sender_goes_unknown() {
    let rig = Rig::new("twilio").await;
    Mock::given(method("POST"))
        .and(path(TWILIO_MESSAGES))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SMx"})))
        .expect(0)
        .mount(&rig.server)
        .await;
    rig.app.text(NUMBER, "MAU").await;
    crash_while_sending(&rig).await;
    assert_eq!(rig.dispatch().await, 1);
    let (status, _, why, uncertain) = reply_state(&rig, NUMBER).await;
    assert_eq!((status.as_str(), uncertain), ("unknown", 1));
    assert!(why.unwrap().contains("re-sent once after 15 min"));
    let wait = rig
        .app
        .count("SELECT extract(epoch FROM next_attempt_at - now())::bigint FROM outbox");
    assert!(
        (890..=900).contains(&wait.await),
        "re-sent after 15 minutes"
    );

    // The re-send is taken and its dispatcher dies too.
    rig.app
        .db()
        .await
        .execute("UPDATE outbox SET next_attempt_at = now()", &[])
        .await
        .unwrap();
    crash_while_sending(&rig).await;
    assert_eq!(rig.dispatch().await, 1);
    let (status, _, why, uncertain) = reply_state(&rig, NUMBER).await;
    assert_eq!((status.as_str(), uncertain), ("unknown", 2));
    assert!(why.unwrap().contains("without an operator"));
    rig.app
        .db()
        .await
        .execute("UPDATE outbox SET next_attempt_at = now()", &[])
        .await
        .unwrap();
    assert_eq!(rig.dispatch().await, 0, "never again automatically");
    assert!(rig.server.received_requests().await.unwrap().is_empty());
}

/// The generic sender is idempotent (the sink dedups on the key): a reply
/// left `sending` goes again with the same `Idempotency-Key` — but not past
/// the retry limit, where it too becomes `unknown`.
#[tokio::test]
async fn a_possibly_sent_reply_goes_again_with_the_same_idempotency_key() {
    let rig = Rig::new("generic").await;
    Mock::given(path("/sms"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&rig.server)
        .await;
    rig.app.text(NUMBER, "MAU").await;
    let id = reply_to(&rig, NUMBER).await;
    crash_while_sending(&rig).await;
    assert_eq!(rig.dispatch().await, 1);
    let requests = rig.server.received_requests().await.unwrap();
    assert_eq!(requests[0].headers["idempotency-key"].to_str().unwrap(), id);
    assert_eq!(reply_state(&rig, NUMBER).await.0, "sent");

    // One whose leases expired until the retry limit is not sent again.
    rig.app.text("+6281200000021", "MAU").await;
    rig.app
        .db()
        .await
        .execute(
            "UPDATE outbox SET attempts = $1 WHERE status = 'queued'",
            &[&(rig.settings.dispatch.max_attempts as i32)],
        )
        .await
        .unwrap();
    crash_while_sending(&rig).await;
    assert_eq!(rig.dispatch().await, 1);
    assert_eq!(reply_state(&rig, "+6281200000021").await.0, "unknown");
    assert_eq!(rig.server.received_requests().await.unwrap().len(), 1);
}

/// Issue #11: a provider answer is read up to 64 KiB, not whole. Twilio's
/// id sits at the start of a 2 MiB answer; cut at 64 KiB the JSON no longer
/// parses, so the reply is sent without an id — proof the rest was never
/// buffered.
#[tokio::test]
async fn a_huge_provider_answer_is_read_only_up_to_the_cap() {
    let rig = Rig::new("twilio").await;
    let padding = "x".repeat(2 * 1024 * 1024);
    Mock::given(method("POST"))
        .and(path(
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json",
        ))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_string(format!(r#"{{"sid": "SMbig", "pad": "{padding}"}}"#)),
        )
        .mount(&rig.server)
        .await;
    rig.app.text(NUMBER, "MAU").await;
    assert_eq!(rig.dispatch().await, 1);
    let reply = &rig.outbox().await[0];
    assert_eq!((reply.1.as_str(), reply.4.as_deref()), ("sent", None));
}

/// Kannel's delivery reports name the reply by its outbox id: one that
/// comes for an `unknown` reply settles it, and its re-send never goes.
#[tokio::test]
async fn a_delivery_report_settles_an_unknown_reply_before_its_re_send() {
    let rig = Rig::new("kannel").await;
    Mock::given(path("/cgi-bin/sendsms"))
        .respond_with(ResponseTemplate::new(202).set_body_string("0: Accepted for delivery"))
        .expect(0)
        .mount(&rig.server)
        .await;
    rig.app.text(NUMBER, "MAU").await;
    let id = reply_to(&rig, NUMBER).await;
    // The dispatcher that sent it died before recording the answer.
    crash_while_sending(&rig).await;
    assert_eq!(rig.dispatch().await, 1);
    assert_eq!(reply_state(&rig, NUMBER).await.0, "unknown");
    // Kannel calls the dlr-url the send carried: delivered.
    let dlr = rig.app.url(&format!(
        "/webhooks/kannel/status?token=shared-secret-0123456789&id={id}&type=1&time=1795428000"
    ));
    assert_eq!(rig.app.http.get(&dlr).send().await.unwrap().status(), 200);
    assert_eq!(reply_state(&rig, NUMBER).await.0, "delivered");
    rig.app
        .db()
        .await
        .execute("UPDATE outbox SET next_attempt_at = now()", &[])
        .await
        .unwrap();
    assert_eq!(rig.dispatch().await, 0, "nothing to re-send");
}

/// Twilio takes the request but answers after the timeout: possibly sent,
/// so `unknown` and re-sent once after the delay, not retried at once
/// (the retry could send it twice). A refused connection is certainly not
/// a send: retried as before.
#[tokio::test]
async fn a_timeout_through_a_non_idempotent_sender_goes_unknown_a_refused_connection_retries() {
    let mut rig = Rig::new("twilio").await;
    Mock::given(method("POST"))
        .and(path(TWILIO_MESSAGES))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"sid": "SMslow"}))
                .set_delay(Duration::from_secs(3)),
        )
        .up_to_n_times(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("POST"))
        .and(path(TWILIO_MESSAGES))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SMfine"})))
        .mount(&rig.server)
        .await;
    rig.app.text(NUMBER, "MAU").await;
    assert_eq!(rig.dispatch().await, 1); // times out after 1 s
    let (status, _, why, uncertain) = reply_state(&rig, NUMBER).await;
    assert_eq!((status.as_str(), uncertain), ("unknown", 1), "{why:?}");
    assert!(why.as_deref().unwrap().contains("timeout"), "{why:?}");
    assert_eq!(rig.dispatch().await, 0, "not retried at once");
    rig.app
        .db()
        .await
        .execute("UPDATE outbox SET next_attempt_at = now()", &[])
        .await
        .unwrap();
    assert_eq!(rig.dispatch().await, 1);
    let (status, provider_id, _, _) = reply_state(&rig, NUMBER).await;
    assert_eq!(
        (status.as_str(), provider_id.as_deref()),
        ("sent", Some("SMfine"))
    );
    assert_eq!(rig.server.received_requests().await.unwrap().len(), 2);

    // Nothing listens on the discard port: the connection is refused.
    rig.settings.gateways.twilio.as_mut().unwrap().api_base = "http://127.0.0.1:9".into();
    rig.app.text("+6281200000031", "MAU").await;
    assert_eq!(rig.dispatch().await, 1);
    let (status, _, why, uncertain) = reply_state(&rig, "+6281200000031").await;
    assert_eq!((status.as_str(), uncertain), ("queued", 0), "{why:?}");
}
