//! The web console over plain HTTP: sign-in, the session cookie, CSRF,
//! the confirmation step and escaping. (The same in a real browser:
//! tests/browser.rs.)

use reqwest::{Client, Response};

use crate::support::{no_redirects, spawn_app, TestApp};

const NUMBER: &str = "+6281234567890";

async fn token(app: &TestApp, name: &str) -> String {
    app.token(name, "support").await
}

/// Signs in and returns the `Cookie` header to send.
async fn sign_in(app: &TestApp, http: &Client, secret: &str) -> String {
    let res = http
        .post(app.url("/console/login"))
        .form(&[("token", secret)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let set = res.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

async fn get(app: &TestApp, http: &Client, cookie: &str, path: &str) -> Response {
    http.get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_console_asks_for_a_token_and_refuses_a_wrong_one() {
    let app = spawn_app().await;
    let http = no_redirects();
    let res = http.get(app.url("/console")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/console/login");
    let res = http.get(app.url("/console/login")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("name=\"viewport\""), "readable on a phone");
    let res = http
        .post(app.url("/console/login"))
        .form(&[("token", "kw_wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("set-cookie").is_none());
    let res = get(&app, &http, "kw_session=made-up", "/console").await;
    assert_eq!(res.status(), 303, "an unknown session is no session");
}

#[tokio::test]
async fn signing_out_needs_the_csrf_token_and_ends_the_session() {
    let app = spawn_app().await;
    let secret = token(&app, "ana").await;
    let http = no_redirects();
    let cookie = sign_in(&app, &http, &secret).await;
    let html = get(&app, &http, &cookie, "/console")
        .await
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&html);
    let logout = |csrf: String| {
        http.post(app.url("/console/logout"))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf)])
            .send()
    };
    assert_eq!(logout("forged".into()).await.unwrap().status(), 403);
    assert_eq!(get(&app, &http, &cookie, "/console").await.status(), 200);
    let res = logout(csrf).await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(get(&app, &http, &cookie, "/console").await.status(), 303);
    assert_eq!(app.count("SELECT count(*) FROM console_sessions").await, 0);
}

#[tokio::test]
async fn a_form_posted_from_another_site_is_refused() {
    let app = spawn_app().await;
    let secret = token(&app, "ana").await;
    let http = no_redirects();
    let res = http
        .post(app.url("/console/login"))
        .header("origin", "https://evil.example")
        .form(&[("token", secret.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("set-cookie").is_none());
    let res = http
        .post(app.url("/console/login"))
        .header("origin", app.address.as_str())
        .form(&[("token", secret.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "our own origin is fine");
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_expiring_and_secure_behind_https() {
    // The test client plays the TLS-terminating proxy on 127.0.0.1.
    let mut settings = crate::support::signed_generic_settings();
    settings.service.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = crate::support::spawn_app_on(crate::support::fresh_database().await, settings).await;
    let secret = token(&app, "ana").await;
    let http = no_redirects();
    let res = http
        .post(app.url("/console/login"))
        .form(&[("token", secret.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("kw_session="));
    for part in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=28800",
        "Path=/console",
    ] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP here");
    let res = http
        .post(app.url("/console/login"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", secret.as_str())])
        .send()
        .await
        .unwrap();
    assert!(res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("; Secure"));
    let session = cookie.split(';').next().unwrap();
    let res = get(&app, &http, session, "/console").await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("<svg"), "the dashboard chart");
    // Revoking the token ends its sessions.
    app.db()
        .await
        .execute("UPDATE api_tokens SET revoked_at = now()", &[])
        .await
        .unwrap();
    assert_eq!(get(&app, &http, session, "/console").await.status(), 303);
}

#[tokio::test]
async fn a_stored_script_is_shown_as_text_and_an_opt_out_needs_csrf_and_confirmation() {
    let app = spawn_app().await;
    let secret = token(&app, "ana").await;
    app.text(NUMBER, "MAU").await;
    app.text(NUMBER, "<script>alert(1)</script>").await;
    let http = no_redirects();
    let cookie = sign_in(&app, &http, &secret).await;

    let res = get(
        &app,
        &http,
        &cookie,
        "/console/subscriber?number=0812-3456-7890",
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains("state-subscribed"));
    let csrf = csrf_of(&html);

    let form = |csrf: &str, confirmed: Option<&str>| {
        let mut f = vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("number".to_owned(), NUMBER.to_owned()),
            ("program".to_owned(), "".to_owned()),
            ("reason".to_owned(), "called, <b>angry</b>".to_owned()),
        ];
        if let Some(c) = confirmed {
            f.push(("confirmed".to_owned(), c.to_owned()));
        }
        f
    };
    let post = |body: Vec<(String, String)>| {
        http.post(app.url("/console/opt-out"))
            .header("cookie", &cookie)
            .form(&body)
            .send()
    };
    let res = post(form("forged", Some("yes"))).await.unwrap();
    assert_eq!(res.status(), 403, "a wrong CSRF token is refused");
    let res = post(form(&csrf, None)).await.unwrap();
    assert_eq!(res.status(), 200);
    let confirm = res.text().await.unwrap();
    assert!(confirm.contains("Record this opt-out?"));
    assert!(confirm.contains("called, &lt;b&gt;angry&lt;/b&gt;"));
    assert_eq!(
        app.count("SELECT count(*) FROM subscription_events WHERE cause = 'staff'")
            .await,
        0,
        "nothing recorded before the confirmation"
    );
    let res = post(form(&csrf, Some("yes"))).await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        "/console/subscriber?number=%2B6281234567890"
    );
    let row = app
        .db()
        .await
        .query_one(
            "SELECT actor, reason FROM subscription_events WHERE cause = 'staff'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "ana");
    assert_eq!(row.get::<_, String>(1), "called, <b>angry</b>");
    let html = get(
        &app,
        &http,
        &cookie,
        "/console/subscriber?number=%2B6281234567890",
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(html.contains("state-unsubscribed"));
    assert!(
        app.count(
            "SELECT count(*) FROM audit_log
              WHERE actor = 'ana' AND endpoint = '/console/subscriber' AND msisdn = '+6281234567890'"
        )
        .await
            >= 2,
        "console lookups are audited"
    );
}

#[tokio::test]
async fn console_searches_for_garbage_or_strangers_say_so() {
    let app = spawn_app().await;
    let secret = token(&app, "ana").await;
    let http = no_redirects();
    let cookie = sign_in(&app, &http, &secret).await;
    let res = get(&app, &http, &cookie, "/console/subscriber?number=%3Cb%3Ehi").await;
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(!html.contains("<b>hi"), "the input is echoed escaped");
    let res = get(
        &app,
        &http,
        &cookie,
        "/console/subscriber?number=081299999999",
    )
    .await;
    assert_eq!(res.status(), 404);
    assert!(res.text().await.unwrap().contains("never been seen"));
}

#[tokio::test]
async fn a_long_timeline_pages_to_older_entries() {
    let app = spawn_app().await;
    let secret = token(&app, "ana").await;
    for i in 0..60 {
        app.text(NUMBER, &format!("question {i}")).await;
    }
    let http = no_redirects();
    let cookie = sign_in(&app, &http, &secret).await;
    let html = get(
        &app,
        &http,
        &cookie,
        "/console/subscriber?number=081234567890",
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(html.contains("question 59"), "newest first");
    assert!(
        !html.contains("question 0<"),
        "the oldest is on a later page"
    );
    let at = html.find("id=\"older\" href=\"").expect("an older link") + 17;
    let href = html[at..at + html[at..].find('"').unwrap()].replace("&amp;", "&");
    let mut older = String::new();
    let mut next = Some(href);
    while let Some(href) = next.take() {
        let res = get(&app, &http, &cookie, &href).await;
        assert_eq!(res.status(), 200, "{href}");
        older = res.text().await.unwrap();
        if let Some(at) = older.find("id=\"older\" href=\"") {
            let at = at + 17;
            next = Some(older[at..at + older[at..].find('"').unwrap()].replace("&amp;", "&"));
        }
    }
    assert!(
        older.contains("question 0<"),
        "the last page has the oldest"
    );
    let res = get(
        &app,
        &http,
        &cookie,
        "/console/subscriber?number=081234567890&before=garbage",
    )
    .await;
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn the_broadcasts_page_shows_progress_and_skip_reasons_and_marketing_cannot_sign_in() {
    let app = spawn_app().await;
    app.text(NUMBER, "MAU").await;
    let db = app.db().await;
    db.execute(
        "WITH b AS (
             INSERT INTO broadcasts (program, kind, texts, shortcode, sender, send_at, valid_until,
                                     policy, created_by, idempotency_key, request_sha256, recipients)
             VALUES ('default', 'marketing', '{}', '3344', 'log', now(), now() + interval '1 day',
                     '{}', 'campaigns', 'k', sha256('x'), 2)
             RETURNING id
         )
         INSERT INTO broadcast_recipients (broadcast_id, msisdn, status, due_at, reason, language,
                                           text, decided_at)
         SELECT b.id, n, s::recipient_status, now(), r, 'id', 'keyward: promo', now()
           FROM b, (VALUES ('+6281234567890', 'planned', 'window'),
                           ('+6281234567891', 'skipped', 'cap_reached')) AS v(n, s, r)",
        &[],
    )
    .await
    .unwrap();
    let http = no_redirects();
    let cookie = sign_in(&app, &http, &token(&app, "ana").await).await;
    let html = get(&app, &http, &cookie, "/console/broadcasts")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("cap_reached 1"), "{html}");
    assert!(html.contains("window 1"), "{html}");
    assert!(
        !html.contains("/console/broadcasts/control"),
        "support reads, and has no controls"
    );

    let marketing = app.token("campaigns", "marketing").await;
    let res = http
        .post(app.url("/console/login"))
        .form(&[("token", marketing.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("set-cookie").is_none());
}

/// An admin pauses and resumes a broadcast from the console, and cancels
/// it only after a confirmation page; support may not (its form refused).
#[tokio::test]
async fn an_admin_pauses_resumes_and_cancels_a_broadcast_after_confirming() {
    let app = spawn_app().await;
    app.text(NUMBER, "MAU").await;
    app.db()
        .await
        .batch_execute(
            "INSERT INTO broadcasts (program, kind, texts, shortcode, sender, send_at, valid_until,
                                     policy, created_by, idempotency_key, request_sha256, recipients)
             VALUES ('default', 'marketing', '{}', '3344', 'log', now(), now() + interval '1 day',
                     '{}', 'campaigns', 'k', sha256('x'), 1);
             INSERT INTO broadcast_recipients (broadcast_id, msisdn, status, due_at, reason,
                                               language, text, decided_at)
             SELECT id, '+6281234567890', 'planned', now() + interval '1 hour', 'window', 'id',
                    'keyward: promo', now()
               FROM broadcasts;",
        )
        .await
        .unwrap();
    let id: i64 = app.count("SELECT id FROM broadcasts").await;
    let http = no_redirects();
    let admin = sign_in(&app, &http, &app.token("boss", "admin").await).await;
    let html = get(&app, &http, &admin, "/console/broadcasts")
        .await
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&html);
    assert!(html.contains("value=\"pause\""), "{html}");
    let control = |cookie: String, csrf: String, action: &'static str, confirmed: bool| {
        let mut form = vec![
            ("csrf", csrf),
            ("id", id.to_string()),
            ("action", action.to_owned()),
        ];
        if confirmed {
            form.push(("confirmed", "yes".to_owned()));
        }
        http.post(app.url("/console/broadcasts/control"))
            .header("cookie", cookie)
            .form(&form)
            .send()
    };
    let status = || async {
        app.db()
            .await
            .query_one("SELECT status::text FROM broadcasts", &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };

    let res = control(admin.clone(), "forged".into(), "pause", false)
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a wrong CSRF token is refused");
    let res = control(admin.clone(), csrf.clone(), "pause", false)
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(status().await, "paused");
    let html = get(&app, &http, &admin, "/console/broadcasts")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("value=\"resume\""), "{html}");
    control(admin.clone(), csrf.clone(), "resume", false)
        .await
        .unwrap();
    assert_eq!(status().await, "active");

    let support = sign_in(&app, &http, &token(&app, "ana").await).await;
    let support_csrf = csrf_of(
        &get(&app, &http, &support, "/console/broadcasts")
            .await
            .text()
            .await
            .unwrap(),
    );
    let res = control(support, support_csrf, "pause", false)
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "support reads only");
    assert_eq!(status().await, "active");

    let res = control(admin.clone(), csrf.clone(), "cancel", false)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("cannot be undone"));
    assert_eq!(
        status().await,
        "active",
        "nothing happens before the confirmation"
    );
    let res = control(admin.clone(), csrf.clone(), "cancel", true)
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(status().await, "cancelled");
    assert_eq!(
        app.count(
            "SELECT count(*) FROM broadcast_recipients WHERE status = 'skipped' AND reason = 'cancelled'"
        )
        .await,
        1
    );
    let res = control(admin, csrf, "resume", false).await.unwrap();
    assert_eq!(res.status(), 409, "a cancelled broadcast stays cancelled");
}
