//! The load benchmark's floor route: absent from the default build, and
//! with the `bench-floor` feature a 200 of the same size as a login.

mod common;

use common::{RawRequest, TestServer};

#[cfg(not(feature = "bench-floor"))]
#[actix_web::test]
async fn floor_absent_by_default() {
    let server = TestServer::start().await;
    let body = r#"{"signalId":"fixture-signal","signalToken":"sgt_FixtureToken0123456789abcdefghijklmnop"}"#;

    let request = RawRequest::post("/bench/floor", Some("application/json"), body);
    let response = server.send(&request).await;

    assert_eq!(response.status, 404);
    assert_eq!(response.json()["error"]["code"], "not-found");
}

#[cfg(feature = "bench-floor")]
#[actix_web::test]
async fn floor_matches_login_size() {
    use nexus_auth::bench_floor::FLOOR_SIGNAL_ID;
    use nexus_auth::secret::SignalToken;
    use nexus_auth::signal_token::TokenDigest;
    use nexus_auth::time::unix_now;

    let server = TestServer::start().await;
    let token = "sgt_FloorToken0123456789abcdefghijklmnopqrs";
    server
        .store
        .create_signal(
            FLOOR_SIGNAL_ID,
            TokenDigest::of(&SignalToken::new(token)),
            unix_now(),
        )
        .await
        .unwrap();
    let body = serde_json::json!({ "signalId": FLOOR_SIGNAL_ID, "signalToken": token }).to_string();

    let login = server
        .send(&RawRequest::post(
            "/auth/login",
            Some("application/json"),
            body.clone(),
        ))
        .await;
    let floor = server
        .send(&RawRequest::post(
            "/bench/floor",
            Some("application/json"),
            body,
        ))
        .await;

    assert_eq!(login.status, 200);
    assert_eq!(floor.status, 200);
    assert_eq!(floor.body.len(), login.body.len());
    assert_eq!(floor.header("content-type"), Some("application/json"));
    assert_eq!(floor.header("cache-control"), Some("no-store"));
}
