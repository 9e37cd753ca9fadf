//! CORS on the browser-facing routes: off by default, preflight and actual
//! requests for allowed origins, nothing for other origins or routes.

mod common;

use std::time::Duration;

use common::{test_settings, RawRequest, RawResponse, TestServer, FIXTURE_SIGNALS};

const ALLOWED: &str = "http://127.0.0.1:3000";

async fn server_with(origins: &[&str]) -> TestServer {
    let mut settings = test_settings(Duration::from_secs(2));
    settings.cors_origins = origins.iter().map(|origin| origin.to_string()).collect();
    TestServer::start_with(settings).await
}

fn with_origin(mut request: RawRequest, origin: &str) -> RawRequest {
    request
        .headers
        .push(("Origin".to_owned(), origin.as_bytes().to_vec()));
    request
}

fn preflight(path: &str, origin: &str, method: &str) -> RawRequest {
    let mut request = with_origin(RawRequest::get(path), origin);
    request.method = "OPTIONS".to_owned();
    request.headers.push((
        "Access-Control-Request-Method".to_owned(),
        method.as_bytes().to_vec(),
    ));
    request.headers.push((
        "Access-Control-Request-Headers".to_owned(),
        b"content-type, authorization".to_vec(),
    ));
    request
}

fn login(origin: &str) -> RawRequest {
    let (id, token, _) = FIXTURE_SIGNALS[0];
    let body = serde_json::json!({ "signalId": id, "signalToken": token }).to_string();
    with_origin(
        RawRequest::post("/auth/login", Some("application/json"), body),
        origin,
    )
}

fn allow_origin(response: &RawResponse) -> Option<&str> {
    response.header("access-control-allow-origin")
}

#[actix_web::test]
async fn no_cors_by_default() {
    let server = server_with(&[]).await;

    let response = server.send(&login(ALLOWED)).await;

    assert_eq!(response.status, 200);
    assert_eq!(allow_origin(&response), None);
}

#[actix_web::test]
async fn allowed_origin_gets_cors() {
    let server = server_with(&[ALLOWED]).await;

    for (path, method) in [
        ("/auth/login", "POST"),
        ("/auth/session", "GET"),
        ("/.well-known/jwks.json", "GET"),
    ] {
        let response = server.send(&preflight(path, ALLOWED, method)).await;
        assert_eq!(response.status, 200, "preflight of {path}");
        assert_eq!(
            allow_origin(&response),
            Some(ALLOWED),
            "preflight of {path}"
        );
        let methods = response
            .header("access-control-allow-methods")
            .unwrap_or_default();
        assert!(
            methods.contains(method),
            "{path}: allowed methods {methods:?}"
        );
    }

    let response = server.send(&login(ALLOWED)).await;
    assert_eq!(response.status, 200);
    assert_eq!(allow_origin(&response), Some(ALLOWED));
    let exposed = response
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("x-signal-id") && exposed.contains("retry-after"),
        "{exposed}"
    );
    assert_eq!(response.header("access-control-allow-credentials"), None);
}

#[actix_web::test]
async fn other_origin_and_routes_get_none() {
    let server = server_with(&[ALLOWED]).await;

    let foreign = server.send(&login("http://evil.example")).await;
    let foreign_preflight = server
        .send(&preflight("/auth/login", "http://evil.example", "POST"))
        .await;
    let health = server
        .send(&with_origin(RawRequest::get("/healthz"), ALLOWED))
        .await;

    assert_eq!(allow_origin(&foreign), None, "status {}", foreign.status);
    assert_eq!(allow_origin(&foreign_preflight), None);
    assert_eq!(health.status, 200);
    assert_eq!(
        allow_origin(&health),
        None,
        "CORS on a route browsers do not call"
    );
}

#[actix_web::test]
async fn wildcard_allows_any_origin() {
    let server = server_with(&["*"]).await;

    let response = server.send(&login("http://anywhere.example")).await;

    assert_eq!(response.status, 200);
    assert_eq!(allow_origin(&response), Some("*"));
}
