//! Tokens authorizing other requests: `GET /auth/session` for every signing
//! algorithm, the rejection rules of RFC 8725, revocation, key rotation
//! across processes, and the JWKS checked by a second JWT implementation.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{
    test_settings, RawRequest, RawResponse, TestServer, FIXTURE_SIGNALS, TEST_AUDIENCE, TEST_ISSUER,
};
use jsonwebtoken::{EncodingKey, Header};
use nexus_auth::app::Settings;
use nexus_auth::keys::{self, LoadedKey, SigningAlgorithm};
use nexus_auth::time::unix_now;
use serde_json::{json, Value};

const SIGNAL_ID: &str = FIXTURE_SIGNALS[0].0;
const SIGNAL_TOKEN: &str = FIXTURE_SIGNALS[0].1;

/// Sends `GET /auth/session` with `authorization` as the raw header value,
/// or without the header.
async fn session(server: &TestServer, authorization: Option<&[u8]>) -> RawResponse {
    let mut request = RawRequest::get("/auth/session");
    if let Some(value) = authorization {
        request
            .headers
            .push(("Authorization".to_owned(), value.to_vec()));
    }
    server.send(&request).await
}

async fn jwks(server: &TestServer) -> RawResponse {
    server
        .send(&RawRequest::get("/.well-known/jwks.json"))
        .await
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// Settings for `algorithm`; HS256 gets a secret file in `folder`.
fn settings_for(algorithm: SigningAlgorithm, folder: &std::path::Path) -> Settings {
    let mut settings = test_settings(Duration::from_secs(2));
    settings.signing_algorithm = algorithm;
    if algorithm == SigningAlgorithm::Hs256 {
        let path = folder.join("hs256.secret");
        std::fs::write(
            &path,
            "test-only-hs256-secret-0123456789-abcdefghijklmnop\n",
        )
        .unwrap();
        settings.hmac_secret_file = Some(path);
    }
    settings
}

#[actix_web::test]
async fn session_for_every_algorithm() {
    for algorithm in SigningAlgorithm::ALL {
        let folder = tempfile::tempdir().unwrap();
        let server = TestServer::start_with(settings_for(algorithm, folder.path())).await;
        let token = server.login(SIGNAL_ID, SIGNAL_TOKEN).await;
        let header = header_of(&token);
        assert_eq!(header["alg"], algorithm.name(), "{algorithm}: token header");

        for form in [
            format!("Bearer {token}"),
            format!("bearer {token}"),
            token.clone(),
        ] {
            let response = session(&server, Some(form.as_bytes())).await;
            let label = format!("{algorithm} with {:?}", &form[..7]);
            assert_eq!(
                response.status,
                200,
                "{label}: {}",
                String::from_utf8_lossy(&response.body)
            );
            assert_eq!(response.header("x-signal-id"), Some(SIGNAL_ID), "{label}");
            assert_eq!(
                response.header("cache-control"),
                Some("no-store"),
                "{label}"
            );
            let body = response.json();
            assert_eq!(body["signalId"], SIGNAL_ID, "{label}");
            let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&token)
                .unwrap()
                .claims;
            assert_eq!(body["jti"], claims["jti"], "{label}");
            assert_eq!(body["issuedAt"], claims["iat"], "{label}");
            assert_eq!(body["expiresAt"], claims["exp"], "{label}");
            let expires_in = body["expiresIn"].as_i64().unwrap();
            assert!(
                (3590..=3600).contains(&expires_in),
                "{label}: expiresIn {expires_in}"
            );
        }

        let keys = jwks(&server).await;
        assert_eq!(keys.status, 200, "{algorithm}: JWKS");
        let published: Vec<Value> = keys.json()["keys"].as_array().unwrap().clone();
        if algorithm.is_asymmetric() {
            assert_eq!(published.len(), 1, "{algorithm}: one key in the JWKS");
            assert_eq!(published[0]["kid"], header["kid"], "{algorithm}: JWKS kid");
            assert_eq!(
                published[0]["alg"],
                algorithm.name(),
                "{algorithm}: JWKS alg"
            );
            assert_eq!(published[0]["use"], "sig", "{algorithm}: JWKS use");
            assert!(
                published[0].get("d").is_none(),
                "{algorithm}: private part published"
            );
        } else {
            assert!(published.is_empty(), "HS256 publishes no key");
        }
        let cache = keys.header("cache-control").unwrap_or_default();
        assert_eq!(cache, "public, max-age=300", "{algorithm}: JWKS caching");
    }
}

#[actix_web::test]
async fn session_header_encodes_non_ascii_id() {
    let server = TestServer::start().await;
    let (id, token, _) = FIXTURE_SIGNALS[1];
    let jwt = server.login(id, token).await;

    let response = session(&server, Some(format!("Bearer {jwt}").as_bytes())).await;

    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("x-signal-id"),
        Some("fixture%20signal%20%C3%A9")
    );
    assert_eq!(response.json()["signalId"], id);
}

/// Claims of a token that the test server accepts, for tables that break
/// one of them at a time.
fn good_claims() -> Value {
    let now = unix_now();
    json!({
        "sub": SIGNAL_ID, "signalId": SIGNAL_ID, "iat": now, "nbf": now, "exp": now + 600,
        "jti": "test-jti", "iss": TEST_ISSUER, "aud": TEST_AUDIENCE,
    })
}

fn sign(key: &LoadedKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(key.algorithm.jwt_algorithm());
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn with_claim(name: &str, value: Value) -> Value {
    let mut claims = good_claims();
    claims[name] = value;
    claims
}

fn without_claim(name: &str) -> Value {
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn unsigned(header: Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[actix_web::test]
async fn bad_tokens_rejected() {
    let server = TestServer::start().await;
    let stored = server.signing_key().await;
    let key = LoadedKey::from_stored(&stored).unwrap();
    let kid = Some(stored.kid.as_str());
    let valid = sign(&key, kid, &good_claims());
    let now = unix_now();

    // Signed with the Ed25519 public key as an HMAC secret: the classic
    // algorithm-confusion forgery.
    let public_x = key.jwk.as_ref().unwrap()["x"].as_str().unwrap().to_owned();
    let mut confused_header = Header::new(jsonwebtoken::Algorithm::HS256);
    confused_header.kid = Some(stored.kid.clone());
    let confused_raw = jsonwebtoken::encode(
        &confused_header,
        &good_claims(),
        &EncodingKey::from_secret(&stored.public_key).unwrap(),
    )
    .unwrap();
    let confused_jwk = jsonwebtoken::encode(
        &confused_header,
        &good_claims(),
        &EncodingKey::from_secret(public_x.as_bytes()).unwrap(),
    )
    .unwrap();

    let other_key =
        LoadedKey::from_stored(&keys::generate(SigningAlgorithm::EdDsa, now).unwrap()).unwrap();
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let changed_payload = format!(
        "{head}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(with_claim("sub", json!("fixture-disabled")).to_string())
    );
    let mut changed_signature = valid.clone().into_bytes();
    let middle = valid.len() - signature.len() / 2;
    changed_signature[middle] = if changed_signature[middle] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let changed_signature = String::from_utf8(changed_signature).unwrap();
    let oversized = sign(&key, kid, &with_claim("padding", json!("x".repeat(9000))));

    let cases: Vec<(&str, Option<String>)> = vec![
        (
            "alg none",
            Some(unsigned(
                json!({"alg": "none", "typ": "JWT", "kid": stored.kid}),
                &good_claims(),
            )),
        ),
        ("HS256 keyed with raw public key", Some(confused_raw)),
        ("HS256 keyed with JWK x", Some(confused_jwk)),
        (
            "unknown kid",
            Some(sign(&key, Some("unknown-kid"), &good_claims())),
        ),
        ("missing kid", Some(sign(&key, None, &good_claims()))),
        (
            "other key under our kid",
            Some(sign(&other_key, kid, &good_claims())),
        ),
        (
            "expired",
            Some(sign(&key, kid, &with_claim("exp", json!(now - 120)))),
        ),
        (
            "not yet valid",
            Some(sign(&key, kid, &with_claim("nbf", json!(now + 300)))),
        ),
        (
            "wrong iss",
            Some(sign(&key, kid, &with_claim("iss", json!("someone-else")))),
        ),
        (
            "wrong aud",
            Some(sign(&key, kid, &with_claim("aud", json!("other-service")))),
        ),
        ("missing aud", Some(sign(&key, kid, &without_claim("aud")))),
        ("missing exp", Some(sign(&key, kid, &without_claim("exp")))),
        ("missing iat", Some(sign(&key, kid, &without_claim("iat")))),
        ("missing sub", Some(sign(&key, kid, &without_claim("sub")))),
        ("changed payload", Some(changed_payload)),
        ("changed signature", Some(changed_signature)),
        (
            "two segments",
            Some(valid.rsplit_once('.').unwrap().0.to_owned()),
        ),
        ("four segments", Some(format!("{valid}.{signature}"))),
        ("invalid base64url", Some("e30!.e30!.c2ln!".to_owned())),
        ("over 8 KiB", Some(oversized)),
        ("empty header value", Some(String::new())),
        ("Bearer without token", Some("Bearer ".to_owned())),
        ("Basic scheme", Some(format!("Basic {valid}"))),
        ("Token scheme", Some(format!("Token {valid}"))),
        ("no header", None),
    ];

    assert_eq!(
        session(&server, Some(format!("Bearer {valid}").as_bytes()))
            .await
            .status,
        200,
        "the unbroken token must pass, or the table proves nothing"
    );
    for (name, authorization) in cases {
        // A value with a scheme or no value at all is sent as it is; a bare
        // token goes out in the usual Bearer form.
        let header_value = authorization.map(|value| {
            if value.is_empty() || value.contains(' ') {
                value.into_bytes()
            } else {
                format!("Bearer {value}").into_bytes()
            }
        });
        let response = session(&server, header_value.as_deref()).await;
        assert_eq!(
            response.status,
            401,
            "{name}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(response.json()["error"]["code"], "invalid-token", "{name}");
        assert_eq!(response.json()["success"], false, "{name}");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\""),
            "{name}"
        );
        assert!(response.header("x-signal-id").is_none(), "{name}");
    }
}

#[actix_web::test]
async fn revoked_signal_loses_tokens() {
    let server = TestServer::start().await;
    let token = server.login(SIGNAL_ID, SIGNAL_TOKEN).await;
    let bearer = format!("Bearer {token}");

    server
        .store
        .set_signal_enabled(SIGNAL_ID, false)
        .await
        .unwrap();
    assert_eq!(
        session(&server, Some(bearer.as_bytes())).await.status,
        401,
        "disabled"
    );

    server
        .store
        .set_signal_enabled(SIGNAL_ID, true)
        .await
        .unwrap();
    assert_eq!(
        session(&server, Some(bearer.as_bytes())).await.status,
        200,
        "enabled again"
    );

    server.store.delete_signal(SIGNAL_ID).await.unwrap();
    let response = session(&server, Some(bearer.as_bytes())).await;
    assert_eq!(response.status, 401, "deleted");
    assert_eq!(response.json()["error"]["code"], "invalid-token");

    // Times are whole seconds; the new signal must be created after the
    // second in which the old token was issued.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let digest = nexus_auth::signal_token::TokenDigest::of(&nexus_auth::secret::SignalToken::new(
        SIGNAL_TOKEN,
    ));
    server
        .store
        .create_signal(SIGNAL_ID, digest, unix_now())
        .await
        .unwrap();
    assert_eq!(
        session(&server, Some(bearer.as_bytes())).await.status,
        401,
        "recreated under the same id"
    );
    let fresh = server.login(SIGNAL_ID, SIGNAL_TOKEN).await;
    let fresh_bearer = format!("Bearer {fresh}");
    assert_eq!(
        session(&server, Some(fresh_bearer.as_bytes())).await.status,
        200,
        "token of the new signal"
    );
}

fn published_kids(response: &RawResponse) -> HashSet<String> {
    response.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn rotated_key_verifies_until_tokens_expire() {
    // Tokens live 3 s with no leeway and keys reload every second, so a
    // replaced key leaves within 4 s (times are whole seconds, hence 5.2).
    let mut settings = test_settings(Duration::from_secs(2));
    settings.token.ttl_seconds = 3;
    settings.clock_leeway = 0;
    settings.key_refresh = 1;
    let server = TestServer::start_with(settings).await;
    let ring = server.state.key_ring().clone();
    let old_kid = server.signing_key().await.kid;
    let old_token = server.login(SIGNAL_ID, SIGNAL_TOKEN).await;

    let new_key = keys::generate(SigningAlgorithm::EdDsa, unix_now()).unwrap();
    server
        .store
        .add_active_signing_key(&new_key, unix_now())
        .await
        .unwrap();
    ring.refresh(server.store.as_ref(), unix_now())
        .await
        .unwrap();

    let new_token = server.login(SIGNAL_ID, SIGNAL_TOKEN).await;
    assert_eq!(
        header_of(&new_token)["kid"],
        new_key.kid.as_str(),
        "new tokens use the new key"
    );
    let old_bearer = format!("Bearer {old_token}");
    assert_eq!(
        session(&server, Some(old_bearer.as_bytes())).await.status,
        200,
        "old token after rotation"
    );
    let kids = published_kids(&jwks(&server).await);
    assert!(
        kids.contains(&old_kid) && kids.contains(&new_key.kid),
        "{kids:?}"
    );

    tokio::time::sleep(Duration::from_millis(5200)).await;
    ring.refresh(server.store.as_ref(), unix_now())
        .await
        .unwrap();

    assert_eq!(
        session(&server, Some(old_bearer.as_bytes())).await.status,
        401,
        "old token after expiry"
    );
    let kids = published_kids(&jwks(&server).await);
    assert!(
        !kids.contains(&old_kid),
        "the replaced key is still published: {kids:?}"
    );
    assert!(kids.contains(&new_key.kid), "{kids:?}");
}

#[actix_web::test]
async fn second_process_picks_up_rotation() {
    let first = TestServer::start().await;
    let (second_address, second_store, second_state) =
        TestServer::start_on_with(&first.database_path, test_settings(Duration::from_secs(2)))
            .await;
    let refresh = Duration::from_secs(1);
    second_state
        .key_ring()
        .clone()
        .refresh_every(second_store.clone(), refresh);
    let old_token = first.login(SIGNAL_ID, SIGNAL_TOKEN).await;

    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_nexus-auth"))
        .args(["keys", "rotate", "--signing-alg", "ES256", "--database-url"])
        .arg(&first.database_path)
        .output()
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let new_kid = String::from_utf8(rotated.stdout).unwrap().trim().to_owned();

    // The bound is one refresh interval; allow three for a loaded machine.
    let body = json!({ "signalId": SIGNAL_ID, "signalToken": SIGNAL_TOKEN }).to_string();
    let login = RawRequest::post("/auth/login", Some("application/json"), body);
    let started = Instant::now();
    let mut seen = Value::Null;
    while started.elapsed() < refresh * 3 {
        let response = common::http::send(second_address, &login).await;
        let token = response.json()["token"].as_str().unwrap().to_owned();
        seen = header_of(&token);
        if seen["kid"] == new_kid.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen["kid"],
        new_kid.as_str(),
        "the second process still signs with the old key"
    );
    assert_eq!(seen["alg"], "ES256");

    let mut old_on_second = RawRequest::get("/auth/session");
    old_on_second.headers.push((
        "Authorization".to_owned(),
        format!("Bearer {old_token}").into_bytes(),
    ));
    let response = common::http::send(second_address, &old_on_second).await;
    assert_eq!(
        response.status, 200,
        "a token from before the rotation, on the other process"
    );
}

/// Verifies `token` with the public key in `jwk`, using jwt-simple, which
/// shares no code with the signer.
fn verify_with_jwt_simple(jwk: &Value, token: &str) -> Result<String, String> {
    use jwt_simple::prelude::*;

    let decode = |member: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[member].as_str().unwrap())
            .unwrap()
    };
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([TEST_ISSUER.to_owned()])),
        allowed_audiences: Some(HashSet::from([TEST_AUDIENCE.to_owned()])),
        ..Default::default()
    };
    let claims = match jwk["alg"].as_str().unwrap() {
        "EdDSA" => Ed25519PublicKey::from_bytes(&decode("x"))
            .and_then(|key| key.verify_token::<NoCustomClaims>(token, Some(options))),
        "ES256" => {
            let mut point = vec![4u8];
            point.extend(decode("x"));
            point.extend(decode("y"));
            ES256PublicKey::from_bytes(&point)
                .and_then(|key| key.verify_token::<NoCustomClaims>(token, Some(options)))
        }
        "RS256" => RS256PublicKey::from_components(&decode("n"), &decode("e"))
            .and_then(|key| key.verify_token::<NoCustomClaims>(token, Some(options))),
        other => return Err(format!("unexpected alg {other}")),
    };
    claims
        .map(|claims| claims.subject.unwrap_or_default())
        .map_err(|error| error.to_string())
}

#[actix_web::test]
async fn jwks_verifies_with_second_jwt_crate() {
    for algorithm in [
        SigningAlgorithm::EdDsa,
        SigningAlgorithm::Es256,
        SigningAlgorithm::Rs256,
    ] {
        let folder = tempfile::tempdir().unwrap();
        let server = TestServer::start_with(settings_for(algorithm, folder.path())).await;
        let token = server.login(SIGNAL_ID, SIGNAL_TOKEN).await;
        let keys = jwks(&server).await.json();
        let kid = header_of(&token)["kid"].clone();
        let jwk = keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|key| key["kid"] == kid)
            .unwrap_or_else(|| panic!("{algorithm}: the token's kid is not in the JWKS"))
            .clone();

        assert_eq!(
            verify_with_jwt_simple(&jwk, &token),
            Ok(SIGNAL_ID.to_owned()),
            "{algorithm}"
        );

        let (payload_end, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{payload_end}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
        assert!(
            verify_with_jwt_simple(&jwk, &forged).is_err(),
            "{algorithm}: a forged signature verified"
        );
    }
}

async fn report(signal: nexus_auth::session::AuthenticatedSignal) -> String {
    format!("report for {}", signal.signal_id)
}

#[actix_web::test]
async fn extractor_protects_own_route() {
    use actix_web::{web, App, HttpServer};

    let server = TestServer::start().await;
    let token = server.login(SIGNAL_ID, SIGNAL_TOKEN).await;
    // The same app as the README's example: the service's routes plus one
    // of the embedding crate's own, guarded by the extractor.
    let state = server.state.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let app = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(nexus_auth::server::configure)
            .route("/reports", web::get().to(report))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(app);

    let mut request = RawRequest::get("/reports");
    let anonymous = common::http::send(address, &request).await;
    request.headers.push((
        "Authorization".to_owned(),
        format!("Bearer {token}").into_bytes(),
    ));
    let authorized = common::http::send(address, &request).await;

    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["error"]["code"], "invalid-token");
    assert_eq!(authorized.status, 200);
    assert_eq!(authorized.body, b"report for fixture-signal");
}

#[actix_web::test]
async fn unknown_kid_reloads_keys_once() {
    let first = TestServer::start().await;
    // The second server never reloads on a timer in this test, as if its
    // next timed reload were still far away.
    let (second_address, _, _) =
        TestServer::start_on_with(&first.database_path, test_settings(Duration::from_secs(2)))
            .await;

    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_nexus-auth"))
        .args(["keys", "rotate", "--database-url"])
        .arg(&first.database_path)
        .output()
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let new_kid = String::from_utf8(rotated.stdout).unwrap().trim().to_owned();
    first
        .state
        .key_ring()
        .refresh(first.store.as_ref(), unix_now())
        .await
        .unwrap();
    let token = first.login(SIGNAL_ID, SIGNAL_TOKEN).await;
    assert_eq!(header_of(&token)["kid"], new_kid.as_str());

    let response = common::http::send(second_address, &RawRequest::session(&token)).await;
    assert_eq!(
        response.status, 200,
        "a token signed with a key the second server has not loaded yet"
    );

    let login = RawRequest::login_json(SIGNAL_ID, SIGNAL_TOKEN);
    let response = common::http::send(second_address, &login).await;
    let second_token = response.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        header_of(&second_token)["kid"],
        new_kid.as_str(),
        "the reload also switched the second server's signing key"
    );
}
