//! Hostile login requests against a real server: after each `hostile-*`
//! fixture in `fixtures/login/`, and while all of them arrive at once,
//! honest clients still log in. `tests/login.rs` checks each fixture's
//! expected response, and this file checks that the server keeps serving.

mod common;

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::{stream, FutureExt, StreamExt};

use common::fixtures::{self, Fixture};
use common::{RawRequest, RawResponse, TestServer, FIXTURE_SIGNALS};

/// Hostile requests in flight at once during the burst.
const CONCURRENCY: usize = 8;

/// Upper bounds on the honest logins that run beside the burst.
const MAX_HONEST_LOGINS: usize = 2_000;
const MAX_BURST_TIME: Duration = Duration::from_secs(60);

/// Loads the `hostile-*` login fixtures, leaving out those that need a
/// closed store.
fn hostile_fixtures() -> Vec<Fixture> {
    let hostile: Vec<Fixture> = fixtures::load_all(&fixtures::login_folder())
        .into_iter()
        .filter(|fixture| fixture.name.starts_with("hostile-") && !fixture.store_unavailable)
        .collect();
    assert!(
        hostile.len() >= 40,
        "only {} hostile fixtures in {}",
        hostile.len(),
        fixtures::login_folder().display()
    );
    hostile
}

/// Builds a JSON login with credential 1, as a well-behaved client sends it.
fn honest_login() -> RawRequest {
    let (signal_id, token, _) = FIXTURE_SIGNALS[0];
    let body = serde_json::json!({ "signalId": signal_id, "signalToken": token }).to_string();
    RawRequest::post("/auth/login", Some("application/json"), body)
}

/// Sends `request` on a new connection. The shared client panics when no
/// complete response arrives, and this turns that panic into an error message.
async fn send(server: &TestServer, request: &RawRequest) -> Result<RawResponse, String> {
    AssertUnwindSafe(server.send(request))
        .catch_unwind()
        .await
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_else(|| "the client panicked".to_owned())
        })
}

/// Returns a problem when a hostile request got no complete response or a
/// status outside 2xx and 4xx.
fn hostile_problem(name: &str, result: &Result<RawResponse, String>) -> Option<String> {
    match result {
        Err(message) => Some(format!("{name}: {message}")),
        Ok(response) if !(200..500).contains(&response.status) => Some(format!(
            "{name}: status {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )),
        Ok(_) => None,
    }
}

/// Returns a problem when an honest login did not get a 200.
fn honest_problem(context: &str, result: &Result<RawResponse, String>) -> Option<String> {
    match result {
        Err(message) => Some(format!("honest login {context}: {message}")),
        Ok(response) if response.status != 200 => Some(format!(
            "honest login {context}: status {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )),
        Ok(_) => None,
    }
}

#[actix_web::test]
async fn honest_login_after_each_hostile_request() {
    let server = TestServer::start().await;
    let hostile = hostile_fixtures();

    let mut failures = Vec::new();
    for fixture in &hostile {
        let result = send(&server, &fixture.request).await;
        failures.extend(hostile_problem(&fixture.name, &result));

        let honest = send(&server, &honest_login()).await;
        failures.extend(honest_problem(&format!("after {}", fixture.name), &honest));
    }

    assert!(
        failures.is_empty(),
        "{} failures over {} hostile fixtures:\n{}",
        failures.len(),
        hostile.len(),
        failures.join("\n")
    );
}

#[actix_web::test]
async fn honest_logins_during_hostile_burst() {
    let server = TestServer::start().await;
    let hostile = hostile_fixtures();
    let burst_done = Cell::new(false);

    let burst = async {
        let results: Vec<(String, Result<RawResponse, String>)> = stream::iter(&hostile)
            .map(|fixture| {
                let server = &server;
                async move { (fixture.name.clone(), send(server, &fixture.request).await) }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        burst_done.set(true);
        results
    };

    // Honest logins run one after another until the burst ends, bounded in
    // count and time so that a hung burst cannot keep the loop going.
    let honest = async {
        let started = Instant::now();
        let mut results = Vec::new();
        while !burst_done.get()
            && results.len() < MAX_HONEST_LOGINS
            && started.elapsed() < MAX_BURST_TIME
        {
            results.push(send(&server, &honest_login()).await);
        }
        results
    };

    let (hostile_results, honest_results) = tokio::join!(burst, honest);
    let after_burst = send(&server, &honest_login()).await;

    let mut failures = Vec::new();
    for (name, result) in &hostile_results {
        failures.extend(hostile_problem(name, result));
    }
    for (index, result) in honest_results.iter().enumerate() {
        failures.extend(honest_problem(&format!("{index} during the burst"), result));
    }
    failures.extend(honest_problem("after the burst", &after_burst));

    assert_eq!(hostile_results.len(), hostile.len(), "hostile responses");
    assert!(
        !honest_results.is_empty(),
        "no honest login ran while the burst was in flight"
    );
    assert!(
        failures.is_empty(),
        "{} failures ({} hostile requests, {} honest logins during the burst):\n{}",
        failures.len(),
        hostile_results.len(),
        honest_results.len(),
        failures.join("\n")
    );
}
