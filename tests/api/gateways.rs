//! Every gateway over real HTTP against a real database, with payloads
//! shaped as each gateway sends them and signatures computed as each
//! gateway documents them (independently of keyward's own code).

use serde_json::json;

use crate::support::sign::*;
use crate::support::{fresh_database, spawn_app_on, TestApp};

async fn app() -> TestApp {
    spawn_app_on(fresh_database().await, all_gateways()).await
}

// --- requests -----------------------------------------------------------

impl TestApp {
    async fn twilio(
        &self,
        params: &[(&str, &str)],
        signature: Option<String>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url("/webhooks/twilio"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(params));
        if let Some(sig) = signature {
            req = req.header("x-twilio-signature", sig);
        }
        req.send().await.unwrap()
    }

    async fn vonage_get(&self, params: &[(String, String)]) -> reqwest::Response {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        self.http
            .get(self.url(&format!("/webhooks/vonage?{query}")))
            .send()
            .await
            .unwrap()
    }

    async fn plivo(&self, params: &[(&str, &str)], signature: Option<String>) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url("/webhooks/plivo"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-plivo-signature-v3-nonce", "12345678901234567890")
            .body(form(params));
        if let Some(sig) = signature {
            req = req.header("x-plivo-signature-v3", sig);
        }
        req.send().await.unwrap()
    }

    async fn telnyx(&self, body: &serde_json::Value, sign: bool) -> reqwest::Response {
        let body = serde_json::to_vec(body).unwrap();
        let ts = chrono::Utc::now().timestamp().to_string();
        let mut req = self
            .http
            .post(self.url("/webhooks/telnyx"))
            .header("content-type", "application/json")
            .header("telnyx-timestamp", &ts);
        if sign {
            req = req.header("telnyx-signature-ed25519", telnyx_signature(&ts, &body));
        }
        req.body(body).send().await.unwrap()
    }

    async fn infobip(&self, body: &serde_json::Value, token: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/webhooks/infobip?token={token}")))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn kannel(&self, query: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/webhooks/kannel?{query}")))
            .send()
            .await
            .unwrap()
    }

    async fn jasmin(
        &self,
        params: &[(&str, &str)],
        user: Option<(&str, &str)>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url("/webhooks/jasmin"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(params));
        if let Some((u, p)) = user {
            req = req.basic_auth(u, Some(p));
        }
        req.send().await.unwrap()
    }

    async fn stored(&self, gateway: &str, id: &str) -> Option<(String, String, Option<String>)> {
        self.db()
            .await
            .query_opt(
                "SELECT msisdn, text, action::text FROM inbound_messages
                  WHERE gateway = $1 AND gateway_message_id = $2",
                &[&gateway, &id],
            )
            .await
            .unwrap()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
    }
}

// --- twilio -------------------------------------------------------------

fn twilio_params<'a>(sid: &'a str, from: &'a str, body: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ToCountry", "ID"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", "+6281100003344"),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", TWILIO_SID),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
}

#[tokio::test]
async fn twilio_signed_form_posts_are_stored_and_answered_with_twiml() {
    let app = app().await;
    let url = format!("{PUBLIC_URL}/webhooks/twilio");
    let params = twilio_params("SM0001", NUMBER, "MAU");
    let res = app
        .twilio(&params, Some(twilio_signature(&url, &params)))
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("xml"));
    assert!(res.text().await.unwrap().contains("<Response></Response>"));
    let (msisdn, text, action) = app.stored("twilio", "SM0001").await.expect("stored");
    assert_eq!(
        (msisdn.as_str(), text.as_str(), action.as_deref()),
        (NUMBER, "MAU", Some("opt_in"))
    );

    // Twilio may sign the URL with the default port.
    let params = twilio_params("SM0002", NUMBER, "HELP");
    let with_port = "https://sms.example.com:443/webhooks/twilio";
    let res = app
        .twilio(&params, Some(twilio_signature(with_port, &params)))
        .await;
    assert_eq!(res.status(), 200);

    // The same delivery again: stored once, answered once.
    let params = twilio_params("SM0001", NUMBER, "MAU");
    let res = app
        .twilio(&params, Some(twilio_signature(&url, &params)))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM outbox").await, 2);
}

#[tokio::test]
async fn twilio_refuses_unsigned_forged_and_malformed_requests() {
    let app = app().await;
    let url = format!("{PUBLIC_URL}/webhooks/twilio");
    let params = twilio_params("SM1", NUMBER, "MAU");
    assert_eq!(app.twilio(&params, None).await.status(), 401);
    assert_eq!(
        app.twilio(&params, Some("bm90IGl0".into())).await.status(),
        403
    );
    // Signed for different content.
    let forged = twilio_params("SM1", NUMBER, "STOP");
    assert_eq!(
        app.twilio(&params, Some(twilio_signature(&url, &forged)))
            .await
            .status(),
        403
    );
    for missing in ["MessageSid", "From", "To", "Body"] {
        let mut p = twilio_params("SM2", NUMBER, "MAU");
        p.retain(|(k, _)| *k != missing && !(missing == "MessageSid" && *k == "SmsSid"));
        let res = app.twilio(&p, Some(twilio_signature(&url, &p))).await;
        assert_eq!(res.status(), 400, "without {missing}");
    }
    let p = twilio_params("SM3", "TOKOMAJU", "MAU");
    assert_eq!(
        app.twilio(&p, Some(twilio_signature(&url, &p)))
            .await
            .status(),
        400
    );
    assert_eq!(app.count("SELECT count(*) FROM inbound_messages").await, 0);
}

#[tokio::test]
async fn twilio_advanced_opt_out_is_honoured() {
    let app = app().await;
    let url = format!("{PUBLIC_URL}/webhooks/twilio");
    let mut params = twilio_params("SM10", NUMBER, "arrêtez svp");
    params.push(("OptOutType", "STOP"));
    let res = app
        .twilio(&params, Some(twilio_signature(&url, &params)))
        .await;
    assert_eq!(res.status(), 200);
    let (_, _, action) = app.stored("twilio", "SM10").await.unwrap();
    assert_eq!(action.as_deref(), Some("opt_out"));
    assert_eq!(
        app.count("SELECT count(*) FROM outbox").await,
        0,
        "Twilio confirmed the opt-out itself: no second confirmation"
    );
}

#[tokio::test]
async fn twilio_hints_never_overrule_an_opt_out_and_double_opt_in_still_asks() {
    let app = app().await;
    let url = format!("{PUBLIC_URL}/webhooks/twilio");
    for (sid, hint) in [("SM20", "START"), ("SM21", "HELP")] {
        let join = format!("{sid}-join");
        let params = twilio_params(&join, NUMBER, "MAU");
        let res = app
            .twilio(&params, Some(twilio_signature(&url, &params)))
            .await;
        assert_eq!(res.status(), 200);
        let mut params = twilio_params(sid, NUMBER, "STOP");
        params.push(("OptOutType", hint));
        let res = app
            .twilio(&params, Some(twilio_signature(&url, &params)))
            .await;
        assert_eq!(res.status(), 200);
        let (_, _, action) = app.stored("twilio", sid).await.unwrap();
        assert_eq!(
            action.as_deref(),
            Some("opt_out"),
            "{hint} does not undo a STOP"
        );
        let goodbye = app
            .count(&format!(
                "SELECT count(*) FROM outbox o JOIN inbound_messages m ON m.id = o.inbound_message_id
                  WHERE m.gateway_message_id = '{sid}' AND o.kind = 'goodbye'"
            ))
            .await;
        assert_eq!(
            goodbye, 1,
            "Twilio answered {hint}, so the goodbye is ours to send"
        );
    }

    let mut settings = all_gateways();
    settings.programs[0].double_opt_in = true;
    let app = spawn_app_on(fresh_database().await, settings).await;
    let mut params = twilio_params("SM22", NUMBER, "START");
    params.push(("OptOutType", "START"));
    let res = app
        .twilio(&params, Some(twilio_signature(&url, &params)))
        .await;
    assert_eq!(res.status(), 200);
    let kinds: Vec<String> = app
        .db()
        .await
        .query("SELECT kind::text FROM outbox", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        kinds,
        ["confirm_request"],
        "Twilio's own START answer does not ask to confirm; ours must"
    );
}

// --- vonage -------------------------------------------------------------

fn vonage_params<'a>(id: &'a str, text: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("msisdn", "6281234567890"),
        ("to", "3344"),
        ("messageId", id),
        ("text", text),
        ("type", "text"),
        ("keyword", "MAU"),
        ("api-key", "key"),
        ("message-timestamp", "2026-11-23 10:00:00"),
    ]
}

#[tokio::test]
async fn vonage_signed_messages_are_stored_and_bad_signatures_refused() {
    let app = app().await;
    let res = app
        .vonage_get(&vonage_signed(&vonage_params("0A0000001", "MAU")))
        .await;
    assert_eq!(res.status(), 200);
    let (msisdn, _, action) = app.stored("vonage", "0A0000001").await.unwrap();
    assert_eq!(
        (msisdn.as_str(), action.as_deref()),
        (NUMBER, Some("opt_in"))
    );

    let unsigned = owned(&vonage_params("0A0000002", "MAU"));
    assert_eq!(app.vonage_get(&unsigned).await.status(), 401);
    let mut tampered = vonage_signed(&vonage_params("0A0000003", "MAU"));
    tampered.iter_mut().find(|(k, _)| k == "text").unwrap().1 = "STOP".into();
    assert_eq!(app.vonage_get(&tampered).await.status(), 403);
    let mut stale = vonage_params("0A0000004", "MAU");
    let old = (chrono::Utc::now().timestamp() - 3600).to_string();
    stale.push(("timestamp", &old));
    let mut stale = owned(&stale);
    stale.push(("sig".into(), "00".into()));
    assert_eq!(app.vonage_get(&stale).await.status(), 403);
    for missing in ["msisdn", "to", "messageId", "text"] {
        let mut p = vonage_params("0A0000005", "MAU");
        p.retain(|(k, _)| *k != missing);
        assert_eq!(
            app.vonage_get(&vonage_signed(&p)).await.status(),
            400,
            "without {missing}"
        );
    }
}

#[tokio::test]
async fn vonage_parts_out_of_order_are_processed_once_complete() {
    let app = app().await;
    let part = |id: &'static str, n: &'static str, text: &'static str| {
        let mut p = vonage_params(id, text);
        p.extend([
            ("concat", "true"),
            ("concat-ref", "42"),
            ("concat-total", "3"),
            ("concat-part", n),
        ]);
        vonage_signed(&p)
    };
    // "please stop " + "texting me " + "thank you", arriving 3, 1, (1 again), 2.
    assert_eq!(
        app.vonage_get(&part("P3", "3", "thank you")).await.status(),
        200
    );
    assert_eq!(
        app.vonage_get(&part("P1", "1", "please stop "))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.vonage_get(&part("P1", "1", "please stop "))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.count("SELECT count(*) FROM inbound_messages").await,
        0,
        "not complete yet"
    );
    assert_eq!(
        app.vonage_get(&part("P2", "2", "texting me "))
            .await
            .status(),
        200
    );
    let (_, text, action) = app
        .stored("vonage", "P1")
        .await
        .expect("assembled under part 1's id");
    assert_eq!(text, "please stop texting me thank you");
    assert_eq!(action.as_deref(), Some("opt_out"));
    assert_eq!(
        app.count("SELECT count(*) FROM inbound_parts WHERE inbound_message_id IS NULL")
            .await,
        0
    );
    // A late redelivery of a part changes nothing.
    assert_eq!(
        app.vonage_get(&part("P2", "2", "texting me "))
            .await
            .status(),
        200
    );
    assert_eq!(app.count("SELECT count(*) FROM inbound_messages").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM outbox").await, 1);
}

#[tokio::test]
async fn an_old_orphan_vonage_part_expires_and_is_never_spliced_into_a_new_message() {
    let app = app().await;
    let part = |id: &'static str, n: &'static str, text: &'static str| {
        let mut p = vonage_params(id, text);
        p.extend([
            ("concat", "true"),
            ("concat-ref", "77"),
            ("concat-total", "2"),
            ("concat-part", n),
        ]);
        vonage_signed(&p)
    };
    assert_eq!(
        app.vonage_get(&part("OLD1", "1", "MAU ")).await.status(),
        200
    );
    app.db()
        .await
        .execute(
            "UPDATE inbound_parts SET received_at = now() - interval '2 days'",
            &[],
        )
        .await
        .unwrap();
    // Days later the same reference is reused for a new message.
    assert_eq!(
        app.vonage_get(&part("NEW2", "2", "thanks")).await.status(),
        200
    );
    assert_eq!(
        app.count("SELECT count(*) FROM inbound_messages").await,
        0,
        "the old part 1 is not joined with the new part 2"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM inbound_parts WHERE gateway_message_id = 'OLD1'")
            .await,
        0,
        "the expired part is gone"
    );
    assert_eq!(
        app.vonage_get(&part("NEW1", "1", "STOP ")).await.status(),
        200
    );
    let (_, text, action) = app.stored("vonage", "NEW1").await.expect("assembled");
    assert_eq!(text, "STOP thanks");
    assert_eq!(action.as_deref(), Some("opt_out"));

    // A number that never writes again: the dispatcher's sweep drops it.
    let mut silent = vonage_params("SILENT1", "half a message");
    silent[0].1 = "6281234567899";
    silent.extend([
        ("concat", "true"),
        ("concat-ref", "9"),
        ("concat-total", "2"),
        ("concat-part", "1"),
    ]);
    assert_eq!(app.vonage_get(&vonage_signed(&silent)).await.status(), 200);
    let db = app.db().await;
    db.execute(
        "UPDATE inbound_parts SET received_at = now() - interval '25 hours'",
        &[],
    )
    .await
    .unwrap();
    let pool = keyward::db::pool(app.db.clone(), 1).unwrap();
    let client = pool.get().await.unwrap();
    assert_eq!(
        keyward::db::inbound::expire_parts(&client).await.unwrap(),
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM inbound_parts WHERE inbound_message_id IS NULL")
            .await,
        0
    );
}

// --- plivo --------------------------------------------------------------

fn plivo_params<'a>(id: &'a str, from: &'a str, text: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("From", from),
        ("To", "6281100003344"),
        ("Type", "sms"),
        ("Text", text),
        ("MessageUUID", id),
        ("Units", "1"),
        ("TotalRate", "0"),
        ("TotalAmount", "0"),
        ("MessageIntent", "optout"),
    ]
}

#[tokio::test]
async fn plivo_v3_signed_messages_are_stored_and_forgeries_refused() {
    let app = app().await;
    let url = format!("{PUBLIC_URL}/webhooks/plivo");
    let nonce = "12345678901234567890";
    let p = plivo_params("3b6e9a4e-0001", "6281234567890", "СТОП");
    let res = app.plivo(&p, Some(plivo_signature(&url, &p, nonce))).await;
    assert_eq!(res.status(), 200);
    let (msisdn, text, action) = app.stored("plivo", "3b6e9a4e-0001").await.unwrap();
    assert_eq!(
        (msisdn.as_str(), text.as_str(), action.as_deref()),
        (NUMBER, "СТОП", Some("opt_out"))
    );

    let p = plivo_params("3b6e9a4e-0002", "6281234567890", "MAU");
    assert_eq!(app.plivo(&p, None).await.status(), 401);
    let other = plivo_params("3b6e9a4e-0002", "6281234567890", "STOP");
    assert_eq!(
        app.plivo(&p, Some(plivo_signature(&url, &other, nonce)))
            .await
            .status(),
        403
    );
    // During token rotation Plivo may send several signatures.
    let both = format!("bm90IGl0,{}", plivo_signature(&url, &p, nonce));
    assert_eq!(app.plivo(&p, Some(both)).await.status(), 200);
    for missing in ["From", "To", "Text", "MessageUUID"] {
        let mut q = plivo_params("3b6e9a4e-0003", "6281234567890", "MAU");
        q.retain(|(k, _)| *k != missing);
        let res = app.plivo(&q, Some(plivo_signature(&url, &q, nonce))).await;
        assert_eq!(res.status(), 400, "without {missing}");
    }
}

// --- telnyx -------------------------------------------------------------

fn telnyx_event(id: &str, from: &str, text: &str) -> serde_json::Value {
    json!({
        "data": {
            "event_type": "message.received",
            "id": format!("evt-{id}"),
            "occurred_at": "2026-11-23T10:00:00.000+00:00",
            "payload": {
                "direction": "inbound",
                "from": {"carrier": "Telkomsel", "line_type": "Wireless", "phone_number": from},
                "id": id,
                "media": [],
                "received_at": "2026-11-23T10:00:00.000+00:00",
                "record_type": "message",
                "text": text,
                "to": [{"phone_number": "+6281100003344", "status": "webhook_delivered"}],
                "type": "SMS"
            },
            "record_type": "event"
        },
        "meta": {"attempt": 1, "delivered_to": "https://sms.example.com/webhooks/telnyx"}
    })
}

#[tokio::test]
async fn telnyx_ed25519_signed_events_are_stored_and_forgeries_refused() {
    let app = app().await;
    let res = app
        .telnyx(&telnyx_event("tx-1", NUMBER, "MAU 😀"), true)
        .await;
    assert_eq!(res.status(), 200);
    let (_, text, action) = app.stored("telnyx", "tx-1").await.unwrap();
    assert_eq!(
        (text.as_str(), action.as_deref()),
        ("MAU 😀", Some("opt_in"))
    );

    assert_eq!(
        app.telnyx(&telnyx_event("tx-2", NUMBER, "MAU"), false)
            .await
            .status(),
        401
    );
    let body = serde_json::to_vec(&telnyx_event("tx-3", NUMBER, "MAU")).unwrap();
    let ts = chrono::Utc::now().timestamp().to_string();
    let res = app
        .http
        .post(app.url("/webhooks/telnyx"))
        .header("content-type", "application/json")
        .header("telnyx-timestamp", &ts)
        .header(
            "telnyx-signature-ed25519",
            telnyx_signature(&ts, b"something else"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // Delivery reports and other events are acknowledged, not stored here.
    let mut sent = telnyx_event("tx-4", NUMBER, "x");
    sent["data"]["event_type"] = json!("message.sent");
    assert_eq!(app.telnyx(&sent, true).await.status(), 200);
    let mut incomplete = telnyx_event("tx-5", NUMBER, "MAU");
    incomplete["data"]["payload"]["from"] = json!({});
    assert_eq!(app.telnyx(&incomplete, true).await.status(), 400);
    assert_eq!(app.count("SELECT count(*) FROM inbound_messages").await, 1);
}

// --- infobip ------------------------------------------------------------

#[tokio::test]
async fn infobip_batches_store_every_good_message_and_skip_bad_ones() {
    let app = app().await;
    let body = json!({
        "results": [
            {"messageId": "ib-1", "from": "6281234567890", "to": "3344", "text": "MAU",
             "cleanText": "", "keyword": "MAU", "receivedAt": "2026-11-23T10:00:00.000+0000",
             "smsCount": 1, "price": {"pricePerMessage": 0, "currency": "EUR"}, "callbackData": null},
            {"messageId": "ib-2", "to": "3344", "text": "MAU"},
            {"messageId": "ib-3", "from": "6289876543210", "to": "3344", "text": "UNREG ALL",
             "receivedAt": "2026-11-23T10:00:01.000+0000", "smsCount": 1}
        ],
        "messageCount": 3,
        "pendingMessageCount": 0
    });
    assert_eq!(
        app.infobip(&body, "wrong-secret-0000000").await.status(),
        403
    );
    let res = app
        .http
        .post(app.url("/webhooks/infobip"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app.infobip(&body, SHARED).await;
    assert_eq!(res.status(), 200);
    assert!(app.stored("infobip", "ib-1").await.is_some());
    assert!(app.stored("infobip", "ib-2").await.is_none());
    let (_, _, action) = app.stored("infobip", "ib-3").await.unwrap();
    assert_eq!(action.as_deref(), Some("opt_out_all"));
    let only_bad = json!({"results": [{"messageId": "ib-4"}]});
    assert_eq!(app.infobip(&only_bad, SHARED).await.status(), 400);
    assert_eq!(
        app.infobip(&json!({"nothing": 1}), SHARED).await.status(),
        400
    );
}

// --- kannel -------------------------------------------------------------

#[tokio::test]
async fn kannel_get_url_messages_decode_by_charset_and_coding() {
    let app = app().await;
    let q = format!(
        "token={SHARED}&from=0812-3456-7890&to=3344&text=MAU&id=k-1&time=1795428000&coding=0&charset=UTF-8"
    );
    let res = app.kannel(&q).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.text().await.unwrap(),
        "",
        "an empty body: Kannel sends nothing itself"
    );
    let (msisdn, text, _) = app.stored("kannel", "k-1").await.unwrap();
    assert_eq!((msisdn.as_str(), text.as_str()), (NUMBER, "MAU"));

    // UCS-2: the text comes as UTF-16BE bytes.
    let ucs2: String = "СТОП"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .map(|b| format!("%{b:02X}"))
        .collect();
    let q = format!(
        "token={SHARED}&from=%2B6281234567890&to=3344&text={ucs2}&id=k-2&coding=2&charset=UTF-16BE"
    );
    assert_eq!(app.kannel(&q).await.status(), 200);
    let (_, text, action) = app.stored("kannel", "k-2").await.unwrap();
    assert_eq!(
        (text.as_str(), action.as_deref()),
        ("СТОП", Some("opt_out"))
    );

    assert_eq!(
        app.kannel("from=0812&to=3344&text=MAU&id=k-3")
            .await
            .status(),
        401
    );
    assert_eq!(
        app.kannel("token=nope&from=0812&to=3344&text=MAU&id=k-3")
            .await
            .status(),
        403
    );
    for missing in ["from", "to", "text", "id"] {
        let mut parts = vec![
            format!("token={SHARED}"),
            "from=081234567890".into(),
            "to=3344".into(),
            "text=MAU".into(),
            "id=k-4".into(),
        ];
        parts.retain(|p| !p.starts_with(&format!("{missing}=")));
        assert_eq!(
            app.kannel(&parts.join("&")).await.status(),
            400,
            "without {missing}"
        );
    }
    let stored: serde_json::Value = app
        .db()
        .await
        .query_one(
            "SELECT raw FROM inbound_messages WHERE gateway_message_id = 'k-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        stored.get("token").is_none(),
        "credentials are not kept as evidence"
    );
}

// --- jasmin -------------------------------------------------------------

#[tokio::test]
async fn jasmin_is_acked_exactly_and_gsm7_and_ucs2_texts_are_decoded() {
    let app = app().await;
    // "stop @ €" in unpacked GSM 03.38 (the € is an escape sequence).
    let gsm = hex::encode([0x73, 0x74, 0x6f, 0x70, 0x20, 0x00, 0x20, 0x1b, 0x65]);
    let p = [
        ("id", "j-1"),
        ("from", "6281234567890"),
        ("to", "3344"),
        ("origin-connector", "smppc1"),
        ("priority", "0"),
        ("coding", "0"),
        ("validity", "none"),
        ("content", "stop"),
        ("binary", gsm.as_str()),
    ];
    let res = app.jasmin(&p, Some(("jasmin", SHARED))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ACK/Jasmin");
    let (_, text, action) = app.stored("jasmin", "j-1").await.unwrap();
    assert_eq!(
        (text.as_str(), action.as_deref()),
        ("stop @ €", Some("opt_out"))
    );

    let ucs2 = hex::encode(
        "ДА"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect::<Vec<u8>>(),
    );
    let p = [
        ("id", "j-2"),
        ("from", "6281234567890"),
        ("to", "3344"),
        ("coding", "8"),
        ("binary", ucs2.as_str()),
    ];
    assert_eq!(app.jasmin(&p, Some(("jasmin", SHARED))).await.status(), 200);
    let (_, text, _) = app.stored("jasmin", "j-2").await.unwrap();
    assert_eq!(text, "ДА");

    let p = [
        ("id", "j-3"),
        ("from", "6281234567890"),
        ("to", "3344"),
        ("content", "MAU"),
    ];
    assert_eq!(app.jasmin(&p, None).await.status(), 401);
    assert_eq!(
        app.jasmin(&p, Some(("jasmin", "wrong-password-000000")))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.jasmin(&p[..3], Some(("jasmin", SHARED))).await.status(),
        400
    );
}

#[tokio::test]
async fn twilio_json_webhooks_are_checked_by_body_sha256() {
    use sha2::Digest;
    let app = app().await;
    let body = serde_json::to_vec(&json!({
        "MessageSid": "SMjson1", "AccountSid": TWILIO_SID, "From": NUMBER,
        "To": "+6281100003344", "Body": "MAU"
    }))
    .unwrap();
    let hash = hex::encode(sha2::Sha256::digest(&body));
    let path = format!("/webhooks/twilio?bodySHA256={hash}");
    let signature = twilio_signature(&format!("{PUBLIC_URL}{path}"), &[]);
    let post = |body: Vec<u8>| {
        app.http
            .post(app.url(&path))
            .header("content-type", "application/json")
            .header("x-twilio-signature", signature.clone())
            .body(body)
            .send()
    };
    assert_eq!(post(body.clone()).await.unwrap().status(), 200);
    assert!(app.stored("twilio", "SMjson1").await.is_some());
    let mut altered = body.clone();
    altered.extend_from_slice(b" ");
    assert_eq!(post(altered).await.unwrap().status(), 403);
}

/// Whatever arrives, no webhook answers 500 (or panics): every answer is
/// one of the contract's codes.
#[tokio::test]
async fn hostile_input_never_gets_a_500() {
    let app = app().await;
    let long = "A".repeat(70_000);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", vec![]),
        ("application/json", b"\x00\x01\x02\xff".to_vec()),
        (
            "application/json",
            b"{\"results\": [null, 1, \"x\"]}".to_vec(),
        ),
        (
            "application/json",
            b"{\"data\": {\"event_type\": \"message.received\"}}".to_vec(),
        ),
        ("application/json", b"[[[[[[[[[[]]]]]]]]]]".to_vec()),
        ("application/x-www-form-urlencoded", b"%%%&&&===".to_vec()),
        (
            "application/x-www-form-urlencoded",
            b"Body=%00%ff&From=%00".to_vec(),
        ),
        ("text/plain", "СТОП 😀".as_bytes().to_vec()),
        ("application/json", long.into_bytes()),
    ];
    let allowed = [400, 401, 403, 404, 413, 415];
    for gateway in [
        "twilio", "vonage", "plivo", "telnyx", "infobip", "kannel", "jasmin", "generic",
    ] {
        for (ctype, body) in &bodies {
            for query in ["", "?token=shared-secret-0123456789&from=%00&to=&id=\u{0}"] {
                let res = app
                    .http
                    .post(app.url(&format!("/webhooks/{gateway}{query}")))
                    .header("content-type", *ctype)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                assert!(
                    allowed.contains(&status),
                    "{gateway} {ctype} {query}: {status}"
                );
                if status != 404 {
                    let err: serde_json::Value = res.json().await.unwrap_or_default();
                    assert!(
                        err["error"]["code"].is_string(),
                        "{gateway}: JSON error body"
                    );
                }
            }
            let res = app
                .http
                .get(app.url(&format!("/webhooks/{gateway}")))
                .send()
                .await
                .unwrap();
            // Vonage checks its webhook URL with a bare GET: 200, nothing
            // stored (checked below with every other refusal).
            let status = res.status().as_u16();
            assert!(
                allowed.contains(&status) || (gateway == "vonage" && status == 200),
                "GET {gateway}: {status}"
            );
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM inbound_messages").await, 0);
}

// --- real payloads other receivers accept (issue #13, point 6) -----------

#[tokio::test]
async fn media_without_text_is_stored_empty_and_changes_nothing() {
    let app = app().await;
    let url = format!("{PUBLIC_URL}/webhooks/twilio");
    let mut params = twilio_params("MM1", NUMBER, "");
    params.retain(|(k, _)| *k != "Body" && *k != "NumMedia");
    params.extend([
        ("NumMedia", "1"),
        ("MediaUrl0", "https://api.twilio.com/media/ME1"),
        ("MediaContentType0", "image/jpeg"),
    ]);
    let res = app
        .twilio(&params, Some(twilio_signature(&url, &params)))
        .await;
    assert_eq!(res.status(), 200, "an MMS with no Body is a message");
    let (_, text, action) = app.stored("twilio", "MM1").await.expect("stored");
    assert_eq!((text.as_str(), action.as_deref()), ("", Some("unknown")));

    let res = app
        .infobip(
            &json!({"results": [{"messageId": "ib-mms", "from": "6281234567890", "to": "3344",
                                  "receivedAt": "2026-11-23T10:00:00.000+0000"}]}),
            SHARED,
        )
        .await;
    assert_eq!(res.status(), 200);
    let (_, text, action) = app.stored("infobip", "ib-mms").await.expect("stored");
    assert_eq!((text.as_str(), action.as_deref()), ("", Some("unknown")));
    assert_eq!(
        app.count("SELECT count(*) FROM subscription_events").await,
        0,
        "no state changed"
    );
}

#[tokio::test]
async fn vonages_url_check_is_answered_and_stores_nothing() {
    let app = app().await;
    let res = app
        .http
        .get(app.url("/webhooks/vonage"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM inbound_messages").await, 0);
}

#[tokio::test]
async fn jasmin_field_names_match_whatever_their_case() {
    let app = app().await;
    let p = [
        ("Id", "j-case"),
        ("From", "6281234567890"),
        ("To", "3344"),
        ("Coding", "0"),
        ("Content", "MAU"),
    ];
    let res = app.jasmin(&p, Some(("jasmin", SHARED))).await;
    assert_eq!(res.status(), 200);
    let (msisdn, text, action) = app.stored("jasmin", "j-case").await.expect("stored");
    assert_eq!(
        (msisdn.as_str(), text.as_str(), action.as_deref()),
        (NUMBER, "MAU", Some("opt_in"))
    );
}
