//! `POST /auth/login` against a real server: every fixture gets the response it
//! declares, every issued JWT verifies, and truncated bodies never get a 5xx.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};

use common::fixtures::{self, Fixture};
use common::{RawRequest, RawResponse, TestServer, TEST_AUDIENCE, TEST_ISSUER, TEST_TTL_SECONDS};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use nexus_auth::signal_token::TokenDigest;
use nexus_auth::signer::Claims;
use nexus_auth::store::{SignalRecord, SignalStore, SignalSummary, StoreError, StoredKey};

const ACCEPTED_MEDIA_TYPES: &str =
    "application/json, multipart/form-data, text/plain, application/x-www-form-urlencoded";

/// Checks one response against its fixture; returns every mismatch.
fn check_response(fixture: &Fixture, response: &RawResponse, key: &StoredKey) -> Vec<String> {
    let mut problems = Vec::new();
    if response.status != fixture.expect_status {
        problems.push(format!(
            "status {} instead of {}: {}",
            response.status,
            fixture.expect_status,
            String::from_utf8_lossy(&response.body)
        ));
        return problems;
    }
    if response.header("content-type") != Some("application/json") {
        problems.push(format!(
            "content-type {:?}",
            response.header("content-type")
        ));
    }
    if response.status == 200 {
        problems.extend(check_issued(response, key));
        return problems;
    }

    let body = response.json();
    if body["success"] != false {
        problems.push(format!("success is {} instead of false", body["success"]));
    }
    let code = body["error"]["code"].as_str();
    if code != fixture.expect_error.as_deref() {
        problems.push(format!(
            "error code {code:?} instead of {:?}",
            fixture.expect_error
        ));
    }
    if !body["error"]["message"]
        .as_str()
        .is_some_and(|message| message.ends_with('.'))
    {
        problems.push(format!(
            "message {} is not a sentence",
            body["error"]["message"]
        ));
    }
    if let Some(field) = &fixture.expect_field {
        if body["error"]["details"]["field"] != field.as_str() {
            problems.push(format!(
                "details.field {} instead of {field}",
                body["error"]["details"]
            ));
        }
    }
    match response.status {
        405 if response.header("allow") != Some("POST") => problems.push(format!(
            "Allow {:?} instead of POST",
            response.header("allow")
        )),
        415 if response.header("accept-post") != Some(ACCEPTED_MEDIA_TYPES) => {
            problems.push(format!("Accept-Post {:?}", response.header("accept-post")))
        }
        _ => {}
    }
    problems
}

/// Checks a 200: headers, the six body fields, and the JWT's signature,
/// header and claims against the store's public key.
fn check_issued(response: &RawResponse, key: &StoredKey) -> Vec<String> {
    let mut problems = Vec::new();
    if response.header("cache-control") != Some("no-store") {
        problems.push(format!(
            "Cache-Control {:?}",
            response.header("cache-control")
        ));
    }
    if response.header("pragma") != Some("no-cache") {
        problems.push(format!("Pragma {:?}", response.header("pragma")));
    }

    let body = response.json();
    let token = body["token"].as_str().unwrap_or_default();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[TEST_ISSUER]);
    validation.set_audience(&[TEST_AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iat", "nbf", "sub", "iss", "aud"]);
    let decoded = match jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_ed_der(&key.public_key),
        &validation,
    ) {
        Ok(decoded) => decoded,
        Err(error) => {
            problems.push(format!("the JWT does not verify: {error}"));
            return problems;
        }
    };
    let claims = &decoded.claims;

    if decoded.header.kid.as_deref() != Some(key.kid.as_str()) {
        problems.push(format!(
            "kid {:?} instead of {}",
            decoded.header.kid, key.kid
        ));
    }
    if decoded.header.typ.as_deref() != Some("JWT") {
        problems.push(format!("typ {:?}", decoded.header.typ));
    }
    if claims.sub != claims.signal_id || body["signalId"] != claims.sub.as_str() {
        problems.push(format!(
            "sub {:?}, signalId claim {:?}, body {}",
            claims.sub, claims.signal_id, body["signalId"]
        ));
    }
    if claims.exp - claims.iat != TEST_TTL_SECONDS as i64 || claims.nbf != claims.iat {
        problems.push(format!(
            "iat {} nbf {} exp {}",
            claims.iat, claims.nbf, claims.exp
        ));
    }
    if body["ttl"] != TEST_TTL_SECONDS
        || body["issuedAt"] != claims.iat
        || body["expiresAt"] != claims.exp
    {
        problems.push(format!("body times {body} do not match the claims"));
    }
    let expires_in = body["expiresIn"].as_i64().unwrap_or(-1);
    if !(TEST_TTL_SECONDS as i64 - 2..=TEST_TTL_SECONDS as i64).contains(&expires_in) {
        problems.push(format!("expiresIn {expires_in}"));
    }
    if claims.jti.is_empty() {
        problems.push("empty jti".to_owned());
    }
    problems
}

#[actix_web::test]
async fn fixtures_answer_as_declared() {
    let server = TestServer::start().await;
    let key = server.signing_key().await;
    let unavailable = TestServer::start().await;
    let unavailable_key = unavailable.signing_key().await;
    unavailable.store.close().await;

    let mut failures = Vec::new();
    let mut token_ids = HashSet::new();
    for fixture in fixtures::load_all(&fixtures::login_folder()) {
        let (target, key) = if fixture.store_unavailable {
            (&unavailable, &unavailable_key)
        } else {
            (&server, &key)
        };
        let response = target.send(&fixture.request).await;
        for problem in check_response(&fixture, &response, key) {
            failures.push(format!("{}: {problem}", fixture.name));
        }
        if response.status == 200 {
            let jti = jsonwebtoken::dangerous::insecure_decode::<Claims>(
                response.json()["token"].as_str().unwrap(),
            )
            .map(|data| data.claims.jti);
            assert!(
                token_ids.insert(format!("{jti:?}")),
                "{}: jti repeated",
                fixture.name
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Returns the shortest prefix of a valid body that still logs in: the end
/// of the last credential pair in a key=value body, whose later pairs can be
/// dropped, or the body without trailing whitespace in JSON and multipart.
fn shortest_valid_length(fixture: &Fixture) -> usize {
    let body = &fixture.request.body;
    let content_type = fixture
        .request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        .unwrap_or_default();
    if content_type.to_ascii_lowercase().starts_with("multipart/") {
        // An epilogue after the closing delimiter is ignored (RFC 2046).
        let start = content_type
            .to_ascii_lowercase()
            .find("boundary=")
            .expect("a boundary")
            + 9;
        let boundary = content_type[start..]
            .split(';')
            .next()
            .unwrap_or_default()
            .trim_matches('"');
        let closing = format!("--{boundary}--").into_bytes();
        return body
            .windows(closing.len())
            .rposition(|window| window == closing.as_slice())
            .map_or(body.len(), |position| position + closing.len());
    }
    if body.trim_ascii_start().starts_with(b"{") {
        return body.trim_ascii_end().len();
    }

    let mut end_of_credentials = 0;
    let mut offset = 0;
    for segment in body.split(|byte| *byte == b'&' || *byte == b'\n') {
        let value_end = segment.strip_suffix(b"\r").unwrap_or(segment).len();
        let end = offset + segment.len();
        if segment.starts_with(b"signalId=") || segment.starts_with(b"signalToken=") {
            end_of_credentials = offset + value_end;
        }
        offset = end + 1;
    }
    end_of_credentials
}

#[actix_web::test]
async fn truncated_bodies_get_4xx() {
    let server = TestServer::start().await;
    let valid: Vec<Fixture> = fixtures::load_all(&fixtures::login_folder())
        .into_iter()
        .filter(|fixture| fixture.expect_status == 200)
        .collect();
    assert!(valid.len() >= 20, "only {} valid fixtures", valid.len());

    let mut cuts = Vec::new();
    for fixture in &valid {
        let shortest_valid = shortest_valid_length(fixture);
        for length in 0..fixture.request.body.len() {
            let mut request = fixture.request.clone();
            request.body.truncate(length);
            cuts.push((fixture.name.as_str(), length, shortest_valid, request));
        }
    }
    let requests = cuts.len();

    // A few connections at a time keep the sweep of 16 KiB fixtures short.
    let responses: Vec<_> = stream::iter(cuts)
        .map(|(name, length, shortest_valid, request)| {
            let server = &server;
            async move {
                (
                    name,
                    length,
                    shortest_valid,
                    server.send(&request).await.status,
                )
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let mut failures = Vec::new();
    for (name, length, shortest_valid, status) in responses {
        let still_valid = status == 200 && length >= shortest_valid;
        if !(400..500).contains(&status) && !still_valid {
            failures.push(format!("{name} cut to {length} bytes: status {status}"));
        }
    }
    failures.sort();
    assert!(requests > 1000, "only {requests} truncated requests");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[actix_web::test]
async fn announced_oversize_body_rejected_before_reading() {
    let server = TestServer::start().await;
    // Announce a body far over the limit and send none of it: the response
    // must follow from the header alone.
    let head = b"POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
        Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n";

    let response = common::http::send_bytes(server.address, head).await;

    assert_eq!(response.status, 413);
    assert_eq!(response.json()["error"]["code"], "payload-too-large");
}

#[actix_web::test]
async fn unknown_path_gets_json_404() {
    let server = TestServer::start().await;

    let response = server.send(&RawRequest::get("/auth/nothing-here")).await;

    assert_eq!(response.status, 404);
    assert_eq!(response.json()["error"]["code"], "not-found");
}

#[actix_web::test]
async fn options_lists_allowed_methods() {
    let server = TestServer::start().await;
    let mut request = RawRequest::get("/auth/login");
    request.method = "OPTIONS".to_owned();

    let response = server.send(&request).await;

    assert_eq!(response.status, 204);
    assert_eq!(response.header("allow"), Some("POST, OPTIONS"));
}

#[actix_web::test]
async fn restart_keeps_signing_key() {
    let server = TestServer::start().await;
    let first_key = server.signing_key().await;

    let (_address, store) = TestServer::start_on(&server.database_path).await;
    let second_key = store.active_signing_key().await.unwrap().unwrap();

    assert_eq!(first_key.kid, second_key.kid);
    assert_eq!(first_key.public_key, second_key.public_key);
}

/// A store whose signal lookups never finish in time, standing for a
/// database that accepts connections but does not respond.
struct HangingStore(Arc<dyn SignalStore>);

#[async_trait::async_trait]
impl SignalStore for HangingStore {
    fn location(&self) -> &str {
        self.0.location()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.0.ping().await
    }
    async fn find_signal(&self, _id: &str) -> Result<Option<SignalRecord>, StoreError> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(None)
    }
    async fn count_signals(&self) -> Result<u64, StoreError> {
        self.0.count_signals().await
    }
    async fn list_signals(&self) -> Result<Vec<SignalSummary>, StoreError> {
        self.0.list_signals().await
    }
    async fn create_signal(
        &self,
        id: &str,
        digest: TokenDigest,
        now: i64,
    ) -> Result<(), StoreError> {
        self.0.create_signal(id, digest, now).await
    }
    async fn rotate_signal(
        &self,
        id: &str,
        digest: TokenDigest,
        previous_expires_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.0
            .rotate_signal(id, digest, previous_expires_at, now)
            .await
    }
    async fn set_signal_enabled(&self, id: &str, enabled: bool) -> Result<(), StoreError> {
        self.0.set_signal_enabled(id, enabled).await
    }
    async fn delete_signal(&self, id: &str) -> Result<(), StoreError> {
        self.0.delete_signal(id).await
    }
    async fn active_signing_key(&self) -> Result<Option<StoredKey>, StoreError> {
        self.0.active_signing_key().await
    }
    async fn list_signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.0.list_signing_keys().await
    }
    async fn add_active_signing_key(&self, key: &StoredKey, now: i64) -> Result<(), StoreError> {
        self.0.add_active_signing_key(key, now).await
    }
    async fn retire_signing_key(&self, kid: &str, now: i64) -> Result<(), StoreError> {
        self.0.retire_signing_key(kid, now).await
    }
    async fn close(&self) {
        self.0.close().await
    }
}

#[actix_web::test]
async fn hanging_store_answers_503() {
    let backing = TestServer::start().await;
    let store = Arc::new(HangingStore(backing.store.clone()));
    let address = TestServer::start_with_store(store, Duration::from_millis(200)).await;
    let body = r#"{"signalId":"fixture-signal","signalToken":"sgt_FixtureToken0123456789abcdefghijklmnop"}"#;

    // The lookup sleeps 60 s and the client gives up after 10 s, so a
    // response at all shows that the store timeout bounded the wait.
    let request = RawRequest::post("/auth/login", Some("application/json"), body);
    let response = common::http::send(address, &request).await;

    assert_eq!(response.status, 503);
    assert_eq!(response.json()["error"]["code"], "unavailable");
    assert!(response.json().get("token").is_none());
}
