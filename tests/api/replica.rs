//! Staff reads from a read replica (`database.read_url`): a real streaming
//! standby made with `pg_basebackup` of a cluster of the test's own.

use std::time::{Duration, Instant};

use keyward::config::Secret;
use keyward::embedded::Cluster;
use serde_json::Value;

use crate::support::{self, connect, spawn_app_on, TestApp};

/// `key=value` connection settings for `dbname` on `cluster`'s socket.
fn conninfo(cluster: &Cluster, dbname: &str) -> String {
    format!(
        "host={} port=5432 user={} dbname={dbname}",
        cluster.socket_dir().display(),
        keyward::embedded::SUPERUSER
    )
}

/// Waits until the standby has replayed everything the primary wrote so
/// far (fails loudly after a minute rather than hanging).
async fn caught_up(primary: &tokio_postgres::Client, standby: &tokio_postgres::Client) {
    standby_reaches(primary, standby, "pg_last_wal_replay_lsn", "replayed").await;
}

/// Waits until the standby's `position` (a function such as
/// `pg_last_wal_receive_lsn`) is at the primary's insert position, taken
/// now: test clusters commit asynchronously, so a commit may not be
/// written yet (the WAL writer sends it within wal_writer_delay). Fails
/// after a minute, saying the standby never `did` it.
async fn standby_reaches(
    primary: &tokio_postgres::Client,
    standby: &tokio_postgres::Client,
    position: &str,
    did: &str,
) {
    let target: String = primary
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let reached = format!("SELECT {position}() >= $1::text::pg_lsn");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done: bool = standby
            .query_one(reached.as_str(), &[&target])
            .await
            .unwrap()
            .get(0);
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby never {did} {target}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An app on `primary` whose staff reads go to `standby`.
async fn app_with_replica(primary: &Cluster, standby: &Cluster, max_lag: u64) -> TestApp {
    let mut settings = support::signed_generic_settings();
    settings.database.url = Some(Secret::new(conninfo(primary, "keyward")));
    settings.database.read_url = Some(Secret::new(conninfo(standby, "keyward")));
    settings.database.max_read_lag_secs = max_lag;
    assert!(keyward::startup::check(&settings).is_empty());
    spawn_app_on(primary.pg_config("keyward"), settings).await
}

async fn get_json(app: &TestApp, token: &str, path: &str) -> (String, Value) {
    let res = app
        .http
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    let from = res.headers()["x-keyward-read-from"]
        .to_str()
        .unwrap()
        .to_owned();
    (from, res.json().await.unwrap())
}

fn state_of(body: &Value) -> &str {
    body["programs"][0]["state"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_reads_are_served_by_the_replica_and_fall_back_to_the_primary_when_it_stops_or_lags()
{
    // Arrange: a primary with the schema, a streaming standby of it.
    let primary = support::private_cluster();
    support::execute(&primary.pg_config("postgres"), "CREATE DATABASE keyward").await;
    keyward::db::migrate(&primary.pg_config("keyward"), false)
        .await
        .unwrap();
    let mut standby = support::standby_of(&primary);
    let on_primary = connect(&primary.pg_config("keyward")).await;
    let on_standby = connect(&standby.pg_config("keyward")).await;
    let in_recovery: bool = on_standby
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery, "the standby is a standby");

    let app = app_with_replica(&primary, &standby, 3600).await;
    let strict = app_with_replica(&primary, &standby, 0).await;
    let token = app.token("ana", "support").await;
    app.text("+6281234567890", "MAU").await;
    caught_up(&on_primary, &on_standby).await;

    // Every kind of staff read is answered by the replica, saying so.
    let (from, body) = get_json(&app, &token, "/v1/subscribers/081234567890").await;
    assert_eq!((from.as_str(), state_of(&body)), ("replica", "subscribed"));
    assert_eq!(body["as_of"]["source"], "replica");
    assert_eq!(body["as_of"]["lag_secs"], 0.0, "caught up: {body}");
    assert!(body["as_of"]["at"].is_string());
    let (from, list) = get_json(&app, &token, "/v1/subscribers?state=subscribed").await;
    assert_eq!(from, "replica");
    assert_eq!(list["items"][0]["msisdn"], "+6281234567890");
    let (from, stats) = get_json(&app, &token, "/v1/stats").await;
    assert_eq!(from, "replica");
    assert_eq!(stats["programs"][0]["subscribed"], 1);
    let export = app
        .http
        .get(app.url("/v1/consent-export"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    assert_eq!(export.headers()["x-keyward-read-from"], "replica");
    let csv = export.text().await.unwrap();
    assert_eq!(csv.lines().count(), 2, "a header and the opt-in: {csv}");
    assert!(csv.contains("+6281234567890"), "{csv}");

    // Proof that it is the replica answering: with replay paused, a change
    // on the primary is not in the replica's answer, which says it lags…
    on_standby
        .execute("SELECT pg_wal_replay_pause()", &[])
        .await
        .unwrap();
    app.text("+6281234567890", "STOP").await;
    standby_reaches(
        &on_primary,
        &on_standby,
        "pg_last_wal_receive_lsn",
        "received",
    )
    .await;
    let (from, body) = get_json(&app, &token, "/v1/subscribers/081234567890").await;
    assert_eq!((from.as_str(), state_of(&body)), ("replica", "subscribed"));
    assert!(
        body["as_of"]["lag_secs"].as_f64().unwrap() > 0.0,
        "behind, and says so: {body}"
    );
    // …while an app that allows no lag reads the primary, which has it.
    let (from, body) = get_json(&strict, &token, "/v1/subscribers/081234567890").await;
    assert_eq!(
        (from.as_str(), state_of(&body)),
        ("primary", "unsubscribed")
    );
    assert_eq!(body["as_of"]["source"], "primary");
    on_standby
        .execute("SELECT pg_wal_replay_resume()", &[])
        .await
        .unwrap();
    caught_up(&on_primary, &on_standby).await;
    let (from, body) = get_json(&strict, &token, "/v1/subscribers/081234567890").await;
    assert_eq!(
        (from.as_str(), state_of(&body)),
        ("replica", "unsubscribed")
    );

    // The replica stops: every read falls back to the primary, none fails.
    drop(on_standby);
    standby.stop(Duration::from_secs(10));
    let (from, body) = get_json(&app, &token, "/v1/subscribers/081234567890").await;
    assert_eq!(
        (from.as_str(), state_of(&body)),
        ("primary", "unsubscribed")
    );
    let (from, _) = get_json(&app, &token, "/v1/subscribers").await;
    assert_eq!(from, "primary");
    let (from, stats) = get_json(&app, &token, "/v1/stats").await;
    assert_eq!(from, "primary");
    assert_eq!(stats["programs"][0]["unsubscribed"], 1);
    let export = app
        .http
        .get(app.url("/v1/consent-export"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(export.headers()["x-keyward-read-from"], "primary");
    assert_eq!(export.text().await.unwrap().lines().count(), 3);
}

#[test]
fn a_read_url_needs_a_database_url_and_must_parse() {
    let settings = support::test_settings(|_| {});
    let mut s = settings.clone();
    s.database.read_url = Some(Secret::new("host=/tmp port=5432 user=keyward"));
    let problems = keyward::startup::check(&s);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("read_url: needs database.url")),
        "{problems:?}"
    );
    s.database.url = Some(Secret::new("postgres://keyward@127.0.0.1/keyward"));
    s.database.read_url = Some(Secret::new("postgres://[not a url"));
    let problems = keyward::startup::check(&s);
    assert!(
        problems.iter().any(|p| p.starts_with("database.read_url:")),
        "{problems:?}"
    );
}
