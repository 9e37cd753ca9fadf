//! Operations endpoints: health, readiness with the store up and down, and
//! the Prometheus metrics that a login leaves behind.

mod common;

use common::{RawRequest, TestServer, FIXTURE_SIGNALS};

const SIGNAL_ID: &str = FIXTURE_SIGNALS[0].0;
const SIGNAL_TOKEN: &str = FIXTURE_SIGNALS[0].1;

#[actix_web::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;

    let health = server.send(&RawRequest::get("/healthz")).await;
    let ready = server.send(&RawRequest::get("/readyz")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");

    server.store.close().await;
    let health = server.send(&RawRequest::get("/healthz")).await;
    let not_ready = server.send(&RawRequest::get("/readyz")).await;
    assert_eq!(health.status, 200, "the process still serves");
    assert_eq!(not_ready.status, 503);
    assert_eq!(not_ready.json()["error"]["code"], "unavailable");

    let mut post = RawRequest::get("/readyz");
    post.method = "POST".to_owned();
    let rejected = server.send(&post).await;
    assert_eq!(rejected.status, 405);
    assert_eq!(rejected.header("allow"), Some("GET"));
}

#[actix_web::test]
async fn metrics_count_logins_without_ids() {
    let server = TestServer::start().await;
    let token = server.login(SIGNAL_ID, SIGNAL_TOKEN).await;
    let wrong =
        serde_json::json!({ "signalId": SIGNAL_ID, "signalToken": "sgt_wrong" }).to_string();
    server
        .send(&RawRequest::post(
            "/auth/login",
            Some("application/json"),
            wrong,
        ))
        .await;
    server
        .send(&RawRequest::post(
            "/auth/login",
            Some("application/xml"),
            "<x/>",
        ))
        .await;
    let mut odd = RawRequest::get("/auth/login");
    odd.method = "BREW".to_owned();
    server.send(&odd).await;

    let response = server.send(&RawRequest::get("/metrics")).await;
    let text = String::from_utf8(response.body.clone()).unwrap();
    let kid = server.signing_key().await.kid;

    assert_eq!(response.status, 200);
    assert!(response
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/plain; version=0.0.4"));
    for expected in [
        r#"nexus_auth_login_attempts_total{format="json",outcome="issued"} 1"#,
        r#"nexus_auth_login_attempts_total{format="json",outcome="invalid-credentials"} 1"#,
        r#"nexus_auth_login_attempts_total{format="unknown",outcome="unsupported-media-type"} 1"#,
        r#"nexus_auth_http_request_duration_seconds_count{method="POST",route="/auth/login"} 3"#,
        r#"nexus_auth_http_request_duration_seconds_count{method="other",route="/auth/login"} 1"#,
        "nexus_auth_store_errors_total 0",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let key_line = format!(r#"nexus_auth_signing_key_info{{alg="EdDSA",kid="{kid}"}} 1"#);
    assert!(text.contains(&key_line), "missing {key_line:?}");
    assert!(!text.contains(SIGNAL_ID), "a signal id is in the metrics");
    assert!(
        !text.contains(SIGNAL_TOKEN),
        "a signal token is in the metrics"
    );
    assert!(!text.contains(&token[..40]), "a JWT is in the metrics");
}
