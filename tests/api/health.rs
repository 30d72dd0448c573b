use std::time::Duration;

use crate::support::{self, spawn_app, spawn_app_on, test_settings};

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_answers_ok_when_the_database_is_reachable() {
    let app = spawn_app().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let app = spawn_app().await;
    let res = app.get("/no/such/thing").await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_show_the_pool() {
    let mut settings = support::signed_generic_settings();
    settings.service.instance = Some("api-1".into());
    let app = support::spawn_app_on(support::fresh_database().await, settings).await;
    app.get("/healthz").await;
    app.get("/readyz").await;
    app.get("/nope/42").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    for needle in [
        r#"keyward_http_requests_total{method="GET",route="/healthz",status="200",instance="api-1"} 1"#,
        r#"keyward_http_requests_total{method="GET",route="/readyz",status="200",instance="api-1"} 1"#,
        r#"keyward_http_requests_total{method="GET",route="unmatched",status="404",instance="api-1"} 1"#,
        r#"keyward_http_request_duration_seconds_count{route="/healthz",instance="api-1"} 1"#,
        r#"keyward_db_pool_max_connections{instance="api-1"} 4"#,
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(
        !text.contains("/nope/42"),
        "raw paths must not become labels"
    );
}

#[tokio::test]
async fn every_series_names_its_instance_by_host_and_port_by_default() {
    let app = spawn_app().await;
    let text = app.get("/metrics").await.text().await.unwrap();
    let port = app.address.rsplit(':').next().unwrap();
    let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(!series.is_empty());
    for line in series {
        assert!(
            line.contains(&format!(":{port}\"")) && line.contains("instance=\""),
            "{line} has no instance label ending in :{port}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_while_the_database_is_down_and_200_once_it_is_back() {
    let options = support::throwaway_cluster_options();
    let mut cluster = support::start_or_fail(&options);
    let admin = cluster.pg_config("postgres");
    keyward::db::migrate(&admin, false).await.expect("migrate");
    let app = spawn_app_on(admin, test_settings(|_| {})).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    tokio::task::block_in_place(|| cluster.stop(Duration::from_secs(10)));
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");

    let _restarted = support::start_or_fail(&options);
    assert_eq!(app.get("/readyz").await.status(), 200);
}
