//! The schema itself: migrations, and the constraints that make wrong data
//! impossible.

use crate::support::{connect, empty_database, fresh_database};

#[tokio::test]
async fn migrations_apply_on_an_empty_database_and_a_second_run_is_a_no_op() {
    let db = empty_database().await;
    let first = keyward::db::migrate(&db, false).await.expect("first run");
    assert!(first >= 1, "the first run applies the migrations");
    let second = keyward::db::migrate(&db, false).await.expect("second run");
    assert_eq!(second, 0, "the second run has nothing to do");
}

#[tokio::test]
async fn two_concurrent_migrations_both_succeed_and_apply_the_schema_once() {
    let db = empty_database().await;
    let (a, b) = tokio::join!(
        keyward::db::migrate(&db, false),
        keyward::db::migrate(&db, false)
    );
    let (a, b) = (a.expect("first process"), b.expect("second process"));
    assert!(a + b >= 1);
    assert_eq!(a.min(b), 0, "only one of them applies anything");
    let client = connect(&db).await;
    let rows = client
        .query("SELECT version FROM refinery_schema_history", &[])
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    let mut unique = versions.clone();
    unique.dedup();
    assert_eq!(versions, unique, "each version recorded once");
}

// --- Rolling back a release ----------------------------------------------

/// What a newer release's migration leaves in refinery's history: a
/// version above every one this binary has.
const LATER_MIGRATION: &str =
    "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
     VALUES (9999, 'from_a_later_release', '2030-01-01T00:00:00Z', '1234567890123456789')";

/// Versions and checksums in refinery's history, by version.
async fn history(client: &tokio_postgres::Client) -> Vec<(i32, String)> {
    client
        .query(
            "SELECT version, checksum FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn a_database_a_newer_release_migrated_is_refused_by_default_naming_its_migrations() {
    use keyward::db::{history::Mismatch, DbError};
    let db = fresh_database().await;
    let client = connect(&db).await;
    client.batch_execute(LATER_MIGRATION).await.unwrap();
    let before = history(&client).await;
    let err = keyward::db::migrate(&db, false)
        .await
        .expect_err("a newer schema is refused");
    let DbError::Schema(Mismatch::Newer(newer)) = &err else {
        panic!("not refused as newer: {err:?}");
    };
    let versions: Vec<i64> = newer.iter().map(|m| m.version).collect();
    assert_eq!(versions, [9999]);
    let text = err.to_string();
    for needle in [
        "V9999__from_a_later_release",
        "older than the database's schema",
        "database.accept_newer_schema = true",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    assert_eq!(history(&client).await, before, "nothing recorded");
}

#[tokio::test]
async fn with_accept_newer_schema_a_database_a_newer_release_migrated_is_run_on_unmigrated() {
    let db = fresh_database().await;
    let client = connect(&db).await;
    client.batch_execute(LATER_MIGRATION).await.unwrap();
    let before = history(&client).await;
    let applied = keyward::db::migrate(&db, true)
        .await
        .expect("accepted: nothing to apply");
    assert_eq!(applied, 0);
    assert_eq!(
        history(&client).await,
        before,
        "nothing applied or recorded"
    );
}

/// A version deleted from the history (V3, with V4 and later still there)
/// would be skipped by refinery told to ignore missing versions: keyward
/// refuses it, with or without the setting, and beside newer ones too.
#[tokio::test]
async fn a_hole_in_the_migration_history_is_refused_even_with_accept_newer_schema() {
    use keyward::db::{history::Mismatch, DbError};
    let db = fresh_database().await;
    let client = connect(&db).await;
    client
        .batch_execute("DELETE FROM refinery_schema_history WHERE version = 3")
        .await
        .unwrap();
    for accept in [false, true] {
        let err = keyward::db::migrate(&db, accept)
            .await
            .expect_err("a hole is refused");
        let DbError::Schema(Mismatch::Hole { missing, .. }) = &err else {
            panic!("not refused as a hole: {err:?}");
        };
        assert_eq!(missing.iter().map(|m| m.version).collect::<Vec<_>>(), [3]);
        assert!(err.to_string().contains("V3__dispatch"), "{err}");
    }
    client.batch_execute(LATER_MIGRATION).await.unwrap();
    let err = keyward::db::migrate(&db, true)
        .await
        .expect_err("a hole beside newer migrations is refused");
    assert!(
        matches!(err, DbError::Schema(Mismatch::Hole { .. })),
        "{err:?}"
    );
    let versions: Vec<i32> = history(&client).await.iter().map(|h| h.0).collect();
    assert!(!versions.contains(&3), "V3 was not applied behind our back");
}

/// The binary as an operator rolls it back: `serve` stops at start with a
/// message that says what is wrong and what to set; with the setting in
/// the environment, `migrate` accepts the database and applies nothing.
#[tokio::test]
async fn serve_refuses_a_newer_schema_with_a_readable_message_and_the_setting_lets_it_run() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let db = fresh_database().await;
    connect(&db)
        .await
        .batch_execute(LATER_MIGRATION)
        .await
        .unwrap();
    let url = crate::staff::database_url(&db);
    let dir = tempfile::tempdir().unwrap();
    let keyward = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
        cmd.args(args)
            .current_dir(dir.path())
            .env("DATABASE_URL", &url)
            .env("KEYWARD_LISTEN", "127.0.0.1:0")
            .env_remove("KEYWARD_CONFIG")
            .env_remove("KEYWARD_DATABASE__ACCEPT_NEWER_SCHEMA")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };

    let mut serve = keyward(&["serve"]).spawn().expect("start keyward serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = serve.kill();
            let _ = serve.wait();
            panic!("keyward serve started on a newer schema instead of refusing");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let said = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"));
    for needle in [
        "this keyward is older than the database's schema",
        "V9999__from_a_later_release",
        "KEYWARD_DATABASE__ACCEPT_NEWER_SCHEMA=true",
    ] {
        assert!(said.contains(needle), "{needle:?} not in {said}");
    }

    let out = keyward(&["migrate"])
        .env("KEYWARD_DATABASE__ACCEPT_NEWER_SCHEMA", "true")
        .stdout(Stdio::piped())
        .output()
        .expect("run keyward migrate");
    // `migrate` logs to stdout, beside its answer.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("0 migration(s) applied"), "{said}");
    assert!(
        said.contains(
            "newer release that this keyward does not have (V9999__from_a_later_release)"
        ),
        "the warning: {said}"
    );
}

/// Inserts an inbound message and the opt-in event it caused; returns the
/// event id.
async fn record_opt_in(client: &tokio_postgres::Client, number: &str) -> i64 {
    let inbound: i64 = client
        .query_one(
            "INSERT INTO inbound_messages (gateway, gateway_message_id, msisdn, shortcode, text, raw)
             VALUES ('generic', $1::text, $2::text, '3344', 'MAU', '{}') RETURNING id",
            &[&format!("gw-{number}"), &number],
        )
        .await
        .unwrap()
        .get(0);
    client
        .query_one(
            "INSERT INTO subscription_events
                 (msisdn, program, from_state, to_state, cause, inbound_message_id, effective_at)
             VALUES ($1::text, 'promo', 'none', 'subscribed', 'inbound', $2, now()) RETURNING id",
            &[&number, &inbound],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_consent_ledger_refuses_update_delete_and_truncate() {
    let client = connect(&fresh_database().await).await;
    let event = record_opt_in(&client, "+6281234567890").await;
    for sql in [
        format!("UPDATE subscription_events SET to_state = 'unsubscribed' WHERE id = {event}"),
        format!("DELETE FROM subscription_events WHERE id = {event}"),
        "TRUNCATE subscription_events CASCADE".to_owned(),
    ] {
        let err = client.batch_execute(&sql).await.expect_err(&sql);
        assert!(
            err.as_db_error().unwrap().message().contains("append-only"),
            "{sql}: {err}"
        );
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM subscription_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

/// Recipients name their broadcast without a foreign key (its per-row
/// check was half of planning's cost): a broadcast is never deleted.
#[tokio::test]
async fn a_broadcast_with_its_recipients_cannot_be_deleted_or_truncated() {
    let client = connect(&fresh_database().await).await;
    client
        .batch_execute(
            "INSERT INTO broadcasts (program, kind, texts, shortcode, sender, send_at, valid_until,
                                     policy, created_by, idempotency_key, request_sha256,
                                     recipients)
             VALUES ('promo', 'marketing', '{}', '3344', 'log', now(), now() + interval '1 day',
                     '{}', 'seed', 'k', sha256('x'), 1);
             INSERT INTO broadcast_recipients (broadcast_id, msisdn, status, due_at, language,
                                               decided_at)
             SELECT id, '+6281234567890', 'planned', now(), 'id', now() FROM broadcasts;",
        )
        .await
        .unwrap();
    for sql in ["DELETE FROM broadcasts", "TRUNCATE broadcasts CASCADE"] {
        let err = client.batch_execute(sql).await.expect_err(sql);
        assert!(
            err.as_db_error().unwrap().message().contains("evidence"),
            "{sql}: {err}"
        );
    }
    let skipped_without_reason = client
        .batch_execute("UPDATE broadcast_recipients SET status = 'skipped'")
        .await;
    assert!(skipped_without_reason.is_err(), "a skip says why");
}

#[tokio::test]
async fn a_subscription_must_match_the_state_of_the_event_it_names() {
    let client = connect(&fresh_database().await).await;
    let event = record_opt_in(&client, "+6281234567890").await;
    let wrong_state = client
        .execute(
            "INSERT INTO subscriptions (msisdn, program, state, since, event_id)
             VALUES ('+6281234567890', 'promo', 'unsubscribed', now(), $1)",
            &[&event],
        )
        .await;
    assert!(
        wrong_state.is_err(),
        "state differs from the event's to_state"
    );
    let other_number = client
        .execute(
            "INSERT INTO subscriptions (msisdn, program, state, since, event_id)
             VALUES ('+6289999999999', 'promo', 'subscribed', now(), $1)",
            &[&event],
        )
        .await;
    assert!(other_number.is_err(), "event belongs to another number");
    client
        .execute(
            "INSERT INTO subscriptions (msisdn, program, state, since, event_id)
             VALUES ('+6281234567890', 'promo', 'subscribed', now(), $1)",
            &[&event],
        )
        .await
        .expect("the matching row is accepted");
}

#[tokio::test]
async fn wrong_data_is_refused_by_the_database() {
    let client = connect(&fresh_database().await).await;
    let cases = [
        // not E.164
        "INSERT INTO inbound_messages (gateway, gateway_message_id, msisdn, shortcode, text, raw)
         VALUES ('generic', 'a', '081234567890', '3344', 'MAU', '{}')",
        // unknown gateway
        "INSERT INTO inbound_messages (gateway, gateway_message_id, msisdn, shortcode, text, raw)
         VALUES ('smoke-signals', 'b', '+6281234567890', '3344', 'MAU', '{}')",
        // free-text state
        "INSERT INTO subscription_events (msisdn, program, from_state, to_state, cause, actor, effective_at)
         VALUES ('+6281234567890', 'promo', 'none', 'maybe', 'system', 'test', now())",
        // an inbound cause without its message
        "INSERT INTO subscription_events (msisdn, program, from_state, to_state, cause, effective_at)
         VALUES ('+6281234567890', 'promo', 'none', 'subscribed', 'inbound', now())",
        // staff change without a reason
        "INSERT INTO subscription_events (msisdn, program, from_state, to_state, cause, actor, effective_at)
         VALUES ('+6281234567890', 'promo', 'subscribed', 'unsubscribed', 'staff', 'alice', now())",
        // a 'sending' outbox row without a lease
        "INSERT INTO outbox (msisdn, shortcode, text, sender, kind, status)
         VALUES ('+6281234567890', '3344', 'hi', 'log', 'help', 'sending')",
        // an 'unknown' (possibly sent) reply that no attempt left uncertain
        "INSERT INTO outbox (msisdn, shortcode, text, sender, kind, status)
         VALUES ('+6281234567890', '3344', 'hi', 'log', 'help', 'unknown')",
        // an 'unknown' reply still leased
        "INSERT INTO outbox (msisdn, shortcode, text, sender, kind, status, uncertain_attempts,
                             lease_owner, lease_expires_at)
         VALUES ('+6281234567890', '3344', 'hi', 'log', 'help', 'unknown', 1, 'x', now())",
        // a token hash of the wrong length
        "INSERT INTO api_tokens (name, role, token_sha256) VALUES ('x', 'admin', '\\x00')",
    ];
    for sql in cases {
        assert!(client.batch_execute(sql).await.is_err(), "accepted: {sql}");
    }
}

#[tokio::test]
async fn a_gateway_message_id_is_stored_once_per_gateway() {
    let client = connect(&fresh_database().await).await;
    let insert =
        "INSERT INTO inbound_messages (gateway, gateway_message_id, msisdn, shortcode, text, raw)
                  VALUES ($1::text, 'same-id', '+6281234567890', '3344', 'MAU', '{}')";
    client.execute(insert, &[&"generic"]).await.unwrap();
    client
        .execute(insert, &[&"twilio"])
        .await
        .expect("another gateway may reuse the id");
    let dup = client
        .execute(insert, &[&"generic"])
        .await
        .expect_err("duplicate");
    assert_eq!(
        dup.as_db_error().unwrap().constraint(),
        Some("inbound_messages_gateway_id_key")
    );
}

/// The `msisdn` and `program_name` domains are written without regular
/// expressions (for speed); they must accept exactly what the patterns
/// they replace accept.
#[tokio::test]
async fn the_number_and_program_domains_match_their_patterns() {
    let client = connect(&fresh_database().await).await;
    let msisdn = regex::Regex::new(r"^\+[1-9][0-9]{6,14}$").unwrap();
    let program = regex::Regex::new(r"^[a-z0-9][a-z0-9_-]{0,63}$").unwrap();

    let mut candidates: Vec<String> = [
        "",
        "+",
        "+1",
        "+123456",
        "+1234567",
        "+123456789012345",
        "+1234567890123456",
        "+0123456789",
        "++123456789",
        "+12345678 9",
        "+12345678+9",
        "123456789",
        "+١٢٣٤٥٦٧٨٩",
        "+12345678a",
        " +123456789",
        "promo",
        "p",
        "-promo",
        "_promo",
        "promo-2_b",
        "Promo",
        "promo!",
        "prómo",
        "0",
        "9abc",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    candidates.push("a".repeat(64));
    candidates.push("a".repeat(65));
    // Random strings over the characters that matter, of every length
    // around the limits (a fixed seed, so a failure repeats).
    let alphabet: Vec<char> = "+0123456789az-_A é".chars().collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..1500 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 18) as usize;
        let mut s = String::new();
        let mut x = seed;
        for i in 0..len {
            // Mostly digits after a leading '+', so that valid numbers occur.
            let pick = if i == 0 && x % 3 > 0 {
                '+'
            } else if x % 4 > 0 {
                char::from(b'0' + (x % 10) as u8)
            } else {
                alphabet[(x % alphabet.len() as u64) as usize]
            };
            s.push(pick);
            x = x.rotate_right(5).wrapping_mul(0x2545_f491_4f6c_dd1d);
        }
        candidates.push(s);
    }

    let (mut numbers_ok, mut programs_ok) = (0, 0);
    for value in &candidates {
        let as_msisdn = client.query_one("SELECT $1::text::msisdn", &[value]).await;
        assert_eq!(
            as_msisdn.is_ok(),
            msisdn.is_match(value),
            "msisdn domain vs pattern for {value:?}"
        );
        numbers_ok += usize::from(as_msisdn.is_ok());
        let as_program = client
            .query_one("SELECT $1::text::program_name", &[value])
            .await;
        assert_eq!(
            as_program.is_ok(),
            program.is_match(value),
            "program_name domain vs pattern for {value:?}"
        );
        programs_ok += usize::from(as_program.is_ok());
    }
    assert!(
        numbers_ok > 100,
        "the sample holds valid numbers: {numbers_ok}"
    );
    assert!(
        programs_ok > 10,
        "the sample holds valid programs: {programs_ok}"
    );
}

/// An instance of the previous release, still running during an upgrade,
/// calls the 21-argument form: it still applies, with the evidence time
/// bounded like the new form's.
#[tokio::test]
async fn the_previous_releases_apply_call_still_works_after_the_migration() {
    let db = crate::support::connect(&crate::support::fresh_database().await).await;
    let row = db
        .query_one(
            "SELECT r_status, r_state FROM keyward_apply_inbound(
                 '+6281234567890', 0, 'generic', 'old-binary-1', '3344', 'MAU',
                 '2020-01-01T00:00:00Z', '{}', 'opt_in', 'default', 'MAU', 'id', 'subscribed',
                 'applied', ARRAY['default'], ARRAY['none'], ARRAY['subscribed'],
                 'welcome', 'default', 'Selamat datang', 'log')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "applied");
    let recent: bool = db
        .query_one(
            "SELECT effective_at > now() - interval '1 minute' FROM subscription_events",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        recent,
        "a backdated time is not evidence through the old form either"
    );
}

/// What the database refuses is told apart: a bug (a CHECK, a bad value
/// read back) is a 500 with nothing of the cause in the answer; a
/// conflicting insert is a conflict; a broken connection is a 503.
#[tokio::test]
async fn database_errors_are_told_apart_as_unavailable_conflict_or_bug() {
    use actix_web::ResponseError;
    use keyward::db::{DbError, Fault};
    use keyward::error::ApiError;

    let db = fresh_database().await;
    let client = connect(&db).await;
    let check = client
        .execute(
            "INSERT INTO subscribers (msisdn) VALUES ('not a number')",
            &[],
        )
        .await
        .unwrap_err();
    let check = DbError::from(check);
    assert_eq!(check.fault(), Fault::Bug);
    assert_eq!(check.server_detail().map(|d| d.0), Some("23514"));
    let answer = ApiError::from(check);
    assert_eq!(answer.status_code(), 500);
    assert!(!answer.to_string().contains("subscribers"), "{answer}");

    client
        .execute(
            "INSERT INTO subscribers (msisdn) VALUES ('+6281234567890')",
            &[],
        )
        .await
        .unwrap();
    let twice = client
        .execute(
            "INSERT INTO subscribers (msisdn) VALUES ('+6281234567890')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(DbError::from(twice).fault(), Fault::Conflict);

    // A label keyward does not know is an error, not a default.
    let row = client
        .query_one("SELECT 'subscribd'::text", &[])
        .await
        .unwrap();
    let decoded = keyward::db::types::get::<keyward::core::State>(&row, 0).unwrap_err();
    assert_eq!(decoded.fault(), Fault::Bug);
    assert!(decoded.to_string().contains("subscribd"), "{decoded}");

    let unreachable = keyward::db::pool_error(deadpool_postgres::PoolError::Closed);
    assert_eq!(unreachable.fault(), Fault::Unavailable);
    assert_eq!(ApiError::from(unreachable).status_code(), 503);
}
