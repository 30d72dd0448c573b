//! Group commit on the inbound path (issue #17): messages applied together
//! answer and store exactly what they would have one by one.
//!
//! Most tests hand a batch to `Inbound::apply_batch` directly, so what is
//! in a batch does not depend on timing; the last one drives a real
//! `keyward serve` under concurrent load and kills it outright.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::Utc;
use deadpool_postgres::Pool;
use keyward::gateways::{Origin, Outcome, ReceivedSms};
use keyward::inbound::{Inbound, InboundError};
use keyward::programs::Programs;
use proptest::prelude::*;
use tokio_postgres::config::Host;

use crate::support::{connect, fresh_database, signed_generic_settings, GENERIC_SECRET};

/// An inbound path on its own fresh database.
struct Path {
    inbound: Inbound,
    pool: Pool,
    db: tokio_postgres::Config,
}

async fn path() -> Path {
    let db = fresh_database().await;
    let settings = signed_generic_settings();
    let programs = Arc::new(Programs::new(&settings));
    Path {
        inbound: Inbound::new(&settings, programs),
        pool: keyward::db::pool(&db, 2).expect("pool"),
        db,
    }
}

/// A generic message: (gateway id, number, text).
type Sms<'a> = (&'a str, &'a str, &'a str);

fn sms((id, from, text): Sms<'_>) -> ReceivedSms {
    ReceivedSms {
        id: id.into(),
        from: Origin::Any(from.into()),
        to: "3344".into(),
        text: text.into(),
        sent_at: None,
        raw: serde_json::json!({"id": id, "from": from, "to": "3344", "text": text}),
        hint: None,
    }
}

impl Path {
    /// Applies `messages` as one batch.
    async fn batch(&self, messages: &[Sms<'_>]) -> Vec<Result<Outcome, InboundError>> {
        let now = Utc::now();
        let jobs = messages
            .iter()
            .map(|m| self.inbound.job("generic", sms(*m), now).expect("valid"))
            .collect();
        self.inbound.apply_batch(&self.pool, jobs).await
    }

    async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let db = connect(&self.db).await;
        db.query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
            .collect()
    }

    async fn count(&self, sql: &str) -> i64 {
        connect(&self.db)
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }
}

fn ok(result: &Result<Outcome, InboundError>) -> &Outcome {
    result.as_ref().expect("stored")
}

#[tokio::test]
async fn a_duplicate_within_a_batch_gets_the_first_answer_and_is_applied_once() {
    let path = path().await;
    let answers = path
        .batch(&[
            ("d-1", "+6281200000001", "MAU"),
            ("d-2", "+6281200000002", "MAU"),
            ("d-1", "+6281200000001", "MAU"),
        ])
        .await;
    let (first, other, again) = (ok(&answers[0]), ok(&answers[1]), ok(&answers[2]));
    assert_eq!(first.status, "accepted");
    assert_eq!(other.status, "accepted");
    assert_eq!(again.status, "duplicate");
    assert_eq!(again.id, first.id, "the first delivery's message");
    assert_eq!(again.state, first.state);
    // And across batches: the same id in a later batch, beside a new one.
    let later = path
        .batch(&[
            ("d-3", "+6281200000003", "MAU"),
            ("d-1", "+6281200000001", "MAU"),
        ])
        .await;
    assert_eq!(ok(&later[0]).status, "accepted");
    assert_eq!(ok(&later[1]).status, "duplicate");
    assert_eq!(ok(&later[1]).id, first.id);
    assert_eq!(path.count("SELECT count(*) FROM inbound_messages").await, 3);
    assert_eq!(
        path.count("SELECT count(*) FROM outbox WHERE kind = 'welcome'")
            .await,
        3,
        "one welcome per number, none for the duplicates"
    );
}

#[tokio::test]
async fn two_messages_from_one_number_in_a_batch_are_applied_in_their_order() {
    let path = path().await;
    let answers = path
        .batch(&[
            ("o-1", "+6281200000001", "MAU"),
            ("o-2", "+6281200000002", "MAU"),
            ("o-3", "+6281200000001", "UNSUBSCRIBE"),
            ("o-4", "+6281200000001", "MAU"),
        ])
        .await;
    let states: Vec<_> = answers.iter().map(|a| ok(a).state).collect();
    use keyward::core::State::{Subscribed, Unsubscribed};
    assert_eq!(
        states,
        [
            Some(Subscribed),
            Some(Subscribed),
            Some(Unsubscribed),
            Some(Subscribed)
        ]
    );
    assert_eq!(
        path.rows(
            "SELECT from_state::text, to_state::text FROM subscription_events
              WHERE msisdn = '+6281200000001' ORDER BY id"
        )
        .await,
        [
            [Some("none".into()), Some("subscribed".into())],
            [Some("subscribed".into()), Some("unsubscribed".into())],
            [Some("unsubscribed".into()), Some("subscribed".into())],
        ],
        "each event starts where the one before ended"
    );
    assert_eq!(
        path.rows(
            "SELECT kind::text FROM outbox o JOIN inbound_messages m ON m.id = o.inbound_message_id
              WHERE o.msisdn = '+6281200000001' ORDER BY m.id"
        )
        .await,
        [
            [Some("welcome".into())],
            [Some("goodbye".into())],
            [Some("welcome".into())]
        ]
    );
}

#[tokio::test]
async fn a_message_the_database_refuses_fails_alone_and_its_batch_mates_commit() {
    let path = path().await;
    // A bug, as the database sees one: a constraint this one message breaks.
    connect(&path.db)
        .await
        .batch_execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.text = 'POISON' THEN
                     RAISE EXCEPTION 'poisoned' USING ERRCODE = 'check_violation';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER poison BEFORE INSERT ON inbound_messages
                 FOR EACH ROW EXECUTE FUNCTION poison();",
        )
        .await
        .unwrap();
    let answers = path
        .batch(&[
            ("p-1", "+6281200000001", "MAU"),
            ("p-2", "+6281200000002", "POISON"),
            ("p-3", "+6281200000003", "STOP"),
            ("p-4", "+6281200000001", "UNSUBSCRIBE"),
        ])
        .await;
    assert_eq!(ok(&answers[0]).status, "accepted");
    match &answers[1] {
        Err(InboundError::Db(e)) => assert_eq!(e.fault(), keyward::db::Fault::Bug),
        other => panic!("the poisoned message fails with the database's refusal: {other:?}"),
    }
    assert_eq!(ok(&answers[2]).status, "accepted");
    assert_eq!(ok(&answers[3]).status, "accepted");
    assert_eq!(
        path.rows("SELECT gateway_message_id::text FROM inbound_messages ORDER BY id")
            .await,
        [
            [Some("p-1".into())],
            [Some("p-3".into())],
            [Some("p-4".into())]
        ]
    );
    assert_eq!(
        path.count("SELECT count(*) FROM outbox").await,
        3,
        "each stored message has its reply, the poisoned one none"
    );
}

/// The batch function on its own: a number that moved on since its facts
/// were read answers `conflict` and writes nothing; a gateway id another
/// batch stored meanwhile answers `duplicate` with that message; their
/// batch-mate is applied (the caller then decides the stale one again,
/// under a lock).
#[tokio::test]
async fn a_stale_version_is_a_conflict_a_late_duplicate_is_answered_and_the_others_apply() {
    let path = path().await;
    let first = path.batch(&[("v-1", "+6281200000001", "MAU")]).await;
    let first_id = ok(&first[0]).id.clone();
    let answers = path
        .rows(
            "SELECT r_index::text, r_status, r_inbound_id::text, r_action FROM keyward_apply_inbound_batch(
                 ARRAY['+6281200000001', '+6281200000002', '+6281200000003'], ARRAY[7, 0, 0]::bigint[],
                 ARRAY['generic', 'generic', 'generic'], ARRAY['v-2', 'v-3', 'v-1'],
                 ARRAY['3344', '3344', '3344'], ARRAY['HELP', 'HELP', 'HELP'],
                 ARRAY[NULL, NULL, NULL]::timestamptz[], ARRAY['{}', '{}', '{}']::jsonb[],
                 ARRAY['help', 'help', 'help'], ARRAY['default', 'default', 'default'],
                 ARRAY['HELP', 'HELP', 'HELP'], ARRAY['en', 'en', 'en'], ARRAY[NULL, NULL, NULL],
                 ARRAY['no_change', 'no_change', 'no_change'],
                 '{}'::int[], '{}', '{}', '{}',
                 ARRAY['help', 'help', 'help'], ARRAY['default', 'default', 'default'],
                 ARRAY['Help text', 'Help text', 'Help text'], ARRAY['log', 'log', 'log'],
                 ARRAY[NULL, NULL, NULL]::timestamptz[], ARRAY['3344', '3344', '3344'])",
        )
        .await;
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0][..2], [Some("1".into()), Some("conflict".into())]);
    assert_eq!(answers[1][..2], [Some("2".into()), Some("applied".into())]);
    assert_eq!(
        answers[2],
        [
            Some("3".into()),
            Some("duplicate".into()),
            Some(first_id),
            Some("opt_in".into())
        ],
        "the stored message's answer, not this one's"
    );
    assert_eq!(
        path.count("SELECT count(*) FROM inbound_messages").await,
        2,
        "v-1 once, v-3; nothing of the conflict"
    );
    assert_eq!(
        path.count("SELECT count(*) FROM outbox WHERE kind = 'help'")
            .await,
        1
    );
}

#[tokio::test]
async fn the_batch_function_refuses_a_number_twice() {
    let path = path().await;
    let db = connect(&path.db).await;
    let err = db
        .query(
            "SELECT * FROM keyward_apply_inbound_batch(
                 ARRAY['+6281200000001', '+6281200000001'], ARRAY[0, 0]::bigint[],
                 ARRAY['generic', 'generic'], ARRAY['t-1', 't-2'], ARRAY['3344', '3344'],
                 ARRAY['HELP', 'HELP'], ARRAY[NULL, NULL]::timestamptz[],
                 ARRAY['{}', '{}']::jsonb[], ARRAY['help', 'help'], ARRAY[NULL, NULL],
                 ARRAY[NULL, NULL], ARRAY[NULL, NULL], ARRAY[NULL, NULL], ARRAY['no_change', 'no_change'],
                 '{}'::int[], '{}', '{}', '{}', ARRAY[NULL, NULL], ARRAY[NULL, NULL], ARRAY[NULL, NULL],
                 ARRAY[NULL, NULL], ARRAY[NULL, NULL]::timestamptz[], ARRAY[NULL, NULL])",
            &[],
        )
        .await
        .expect_err("two messages of one number are the caller's mistake");
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("22023"),
        "{err}"
    );
}

/// What a run leaves, compared between a batch and the same messages one
/// by one: the answers (inbound ids as the position of the message they
/// name) and every row a message writes, without ids and times.
async fn outcome_of(path: &Path, answers: &[Result<Outcome, InboundError>]) -> Vec<String> {
    let ids: Vec<Option<String>> = answers
        .iter()
        .map(|a| a.as_ref().ok().map(|o| o.id.clone()))
        .collect();
    let mut seen = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        let a = a.as_ref().expect("every message is stored");
        let first = ids.iter().position(|id| id.as_deref() == Some(&a.id));
        seen.push(format!(
            "{i}: {} of message {first:?}: {:?} {:?} {:?}",
            a.status, a.action, a.program, a.state
        ));
    }
    for sql in [
        "SELECT gateway_message_id::text, msisdn::text, action::text, program::text,
                result_state::text, outcome::text FROM inbound_messages ORDER BY gateway_message_id",
        "SELECT msisdn::text, version::text, (last_goodbye_at IS NULL)::text,
                (last_fallback_at IS NULL)::text FROM subscribers ORDER BY msisdn",
        "SELECT e.msisdn::text, e.program::text, e.from_state::text, e.to_state::text,
                m.gateway_message_id::text
           FROM subscription_events e JOIN inbound_messages m ON m.id = e.inbound_message_id
          ORDER BY e.msisdn, e.id",
        "SELECT msisdn::text, program::text, state::text FROM subscriptions ORDER BY msisdn, program",
        "SELECT o.msisdn::text, o.kind::text, o.text::text, m.gateway_message_id::text
           FROM outbox o JOIN inbound_messages m ON m.id = o.inbound_message_id
          ORDER BY o.msisdn, m.id",
    ] {
        for row in path.rows(sql).await {
            seen.push(format!("{row:?}"));
        }
    }
    seen
}

fn messages() -> impl Strategy<Value = Vec<(u8, u8, u8)>> {
    // (gateway id, number, text): few of each, so that batches hold
    // duplicates and several messages of one number.
    prop::collection::vec((0u8..10, 0u8..4, 0u8..8), 2..14)
}

const TEXTS: [&str; 8] = [
    "MAU",
    "UNSUBSCRIBE",
    "STOP",
    "HELP",
    "halo kak",
    "YA",
    "STOPALL",
    "mau dong",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The property of group commit: a batch's answers and writes are those
    /// of its messages applied one by one, in order.
    #[test]
    fn a_batch_equals_its_messages_applied_one_by_one(messages in messages()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (batched, one_by_one) = rt.block_on(async {
            let owned: Vec<(String, String, &str)> = messages
                .iter()
                .map(|&(id, n, t)| (format!("prop-{id}"), format!("+62812000000{n:02}"), TEXTS[t as usize]))
                .collect();
            let sms: Vec<Sms<'_>> = owned.iter().map(|(id, n, t)| (id.as_str(), n.as_str(), *t)).collect();
            let batch = path().await;
            let answers = batch.batch(&sms).await;
            let batched = outcome_of(&batch, &answers).await;
            let alone = path().await;
            let mut answers = Vec::new();
            for m in &sms {
                answers.extend(alone.batch(std::slice::from_ref(m)).await);
            }
            (batched, outcome_of(&alone, &answers).await)
        });
        prop_assert_eq!(batched, one_by_one);
    }
}

/// `keyward serve` killed with SIGKILL in the middle of concurrent load:
/// every message it answered 200 is stored, with all of its writes.
#[tokio::test]
async fn every_message_answered_200_survives_a_kill_9_during_batches() {
    let db = fresh_database().await;
    let Host::Unix(socket) = &db.get_hosts()[0] else {
        panic!("the test cluster listens on a socket")
    };
    let url = format!(
        "host={} port={} user={} dbname={}",
        socket.display(),
        db.get_ports()[0],
        db.get_user().unwrap(),
        db.get_dbname().unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("keyward.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\
             [service]\nmax_messages_per_number_per_minute = 0\n\
             [gateways.generic]\nsecret = \"{GENERIC_SECRET}\"\n\
             [dispatch]\nworkers = 0\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("serve")
        .env("KEYWARD_CONFIG", &config)
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("keyward starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut ready = false;
    for _ in 0..300 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "keyward serve became ready");

    // 64 senders, 40 numbers, until the server is killed under them.
    let answered = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for s in 0..64 {
        let (http, base, answered) = (http.clone(), base.clone(), answered.clone());
        senders.push(tokio::spawn(async move {
            let mut stored = Vec::new();
            for k in 0..200 {
                let id = format!("k-{s}-{k}");
                let from = format!("+62812000{:04}", (s * 7 + k) % 40);
                let text = ["MAU", "UNSUBSCRIBE", "HELP", "halo"][k % 4];
                let body = serde_json::to_vec(
                    &serde_json::json!({"id": id, "from": from, "to": "3344", "text": text}),
                )
                .unwrap();
                let ts = Utc::now().timestamp();
                let secret = keyward::config::Secret::new(GENERIC_SECRET);
                let sent = http
                    .post(format!("{base}/webhooks/generic"))
                    .header("content-type", "application/json")
                    .header("x-keyward-timestamp", ts.to_string())
                    .header(
                        "x-keyward-signature",
                        keyward::gateways::generic::sign(&secret, ts, &body),
                    )
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => {
                        stored.push(id);
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => panic!("{id}: answered {} before the kill", r.status()),
                    Err(_) => break, // the server is gone
                }
            }
            stored
        }));
    }
    while answered.load(Ordering::Relaxed) < 1_000 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    child.wait().unwrap();
    let mut answered_200 = Vec::new();
    for s in senders {
        answered_200.extend(s.await.unwrap());
    }
    assert!(answered_200.len() >= 1_000);

    let client = connect(&db).await;
    let stored: std::collections::HashSet<String> = client
        .query("SELECT gateway_message_id::text FROM inbound_messages", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<&String> = answered_200
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(missing.is_empty(), "answered 200, not stored: {missing:?}");
    // Each message all or nothing: a stored change has its ledger event
    // and its reply.
    let torn: i64 = client
        .query_one(
            "SELECT count(*) FROM inbound_messages m
              WHERE m.outcome = 'applied' AND m.action IN ('opt_in', 'opt_out')
                AND (NOT EXISTS (SELECT 1 FROM subscription_events e WHERE e.inbound_message_id = m.id)
                     OR NOT EXISTS (SELECT 1 FROM outbox o WHERE o.inbound_message_id = m.id))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(torn, 0, "stored changes without their event or reply");
    let per_number: HashMap<String, i64> = client
        .query("SELECT s.msisdn::text, s.version FROM subscribers s", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let messages: i64 = client
        .query_one("SELECT count(*) FROM inbound_messages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        per_number.values().sum::<i64>(),
        messages,
        "every stored message moved its number's version once, and only those"
    );
}
