//! Three `nexus-auth serve` processes on one PostgreSQL schema: signals,
//! tokens and keys are shared, and changes made with the command line reach
//! every instance within the stated bounds.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::postgres::TestSchema;
use common::process::{run_command, spawn_serve, ServeProcess};
use common::RawRequest;
use serde_json::Value;

/// `--key-refresh` of every instance, in seconds.
const KEY_REFRESH_SECONDS: u64 = 1;
/// `--signal-cache-ttl` of every instance, in seconds.
const CACHE_TTL_SECONDS: u64 = 1;
/// Allowance for process scheduling and HTTP round trips on top of a bound.
const MARGIN: Duration = Duration::from_secs(1);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

async fn login(address: SocketAddr, id: &str, token: &str) -> (u16, Value) {
    let response = common::http::send(address, &RawRequest::login_json(id, token)).await;
    let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, json)
}

async fn session_status(address: SocketAddr, jwt: &str) -> u16 {
    common::http::send(address, &RawRequest::session(jwt))
        .await
        .status
}

async fn jwks(address: SocketAddr) -> Vec<Value> {
    let response = common::http::send(address, &RawRequest::get("/.well-known/jwks.json")).await;
    assert_eq!(response.status, 200);
    response.json()["keys"].as_array().unwrap().clone()
}

fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// Verifies an EdDSA `jwt` with the key of its kid in `keys`, using
/// jwt-simple, which shares no code with the signer. Returns the subject.
fn verify_with_jwks(keys: &[Value], jwt: &str) -> Result<String, String> {
    use jwt_simple::prelude::*;

    let kid = kid_of(jwt);
    let jwk = keys
        .iter()
        .find(|key| key["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    let x = URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().unwrap())
        .map_err(|error| error.to_string())?;
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from(["nexus-auth".to_owned()])),
        ..Default::default()
    };
    Ed25519PublicKey::from_bytes(&x)
        .and_then(|key| key.verify_token::<NoCustomClaims>(jwt, Some(options)))
        .map(|claims| claims.subject.unwrap_or_default())
        .map_err(|error| error.to_string())
}

#[actix_web::test]
async fn three_instances_share_one_store() {
    let Some(schema) = TestSchema::create("three_instances_share_one_store").await else {
        return;
    };
    let url = schema.url.as_str();
    let key_refresh = KEY_REFRESH_SECONDS.to_string();
    let cache_ttl = CACHE_TTL_SECONDS.to_string();
    let serve_args = [
        "--database-url",
        url,
        "--no-bootstrap",
        "--key-refresh",
        &key_refresh,
        "--signal-cache-ttl",
        &cache_ttl,
    ];

    // All three start at once on the empty schema, so their migrations and
    // first signing keys race.
    let spawned: Vec<_> = (0..3).map(|_| spawn_serve(&serve_args)).collect();
    let instances: Vec<ServeProcess> = spawned
        .into_iter()
        .map(|(child, stderr)| ServeProcess::wait_listening(child, stderr))
        .collect();
    let addresses: Vec<SocketAddr> = instances.iter().map(|instance| instance.address).collect();

    let keys = run_command(&["keys", "list", "--database-url", url]);
    let active_keys = keys.lines().filter(|line| line.contains("active")).count();
    assert_eq!(
        active_keys, 1,
        "active keys after a concurrent start:\n{keys}"
    );

    // A signal created with the command line is accepted by every instance.
    let token = run_command(&["signals", "create", "sensor", "--database-url", url]);
    let token = token.trim();
    let mut jwts = Vec::new();
    for (index, address) in addresses.iter().enumerate() {
        let (status, body) = login(*address, "sensor", token).await;
        assert_eq!(status, 200, "login on instance {index}: {body}");
        jwts.push(body["token"].as_str().unwrap().to_owned());
    }

    // A token from one instance passes every other's session check and
    // verifies with every JWKS. An instance may sign with a key that the
    // others load at their next key refresh, so each check may take that long.
    let deadline = Instant::now() + Duration::from_secs(KEY_REFRESH_SECONDS) + MARGIN;
    for (issuer, jwt) in jwts.iter().enumerate() {
        for (index, address) in addresses.iter().enumerate() {
            loop {
                let status = session_status(*address, jwt).await;
                let verified = verify_with_jwks(&jwks(*address).await, jwt);
                if status == 200 && verified.as_deref() == Ok("sensor") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "token of instance {issuer} on instance {index}: \
                     session {status}, JWKS verification {verified:?}"
                );
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }

    // A key rotation with the command line reaches every instance within
    // the key refresh interval.
    let new_kid = run_command(&["keys", "rotate", "--database-url", url]);
    let new_kid = new_kid.trim();
    let rotated_at = Instant::now();
    let deadline = rotated_at + Duration::from_secs(KEY_REFRESH_SECONDS) + MARGIN;
    for (index, address) in addresses.iter().enumerate() {
        loop {
            let (status, body) = login(*address, "sensor", token).await;
            assert_eq!(status, 200, "login on instance {index}: {body}");
            let jwt = body["token"].as_str().unwrap();
            if kid_of(jwt) == new_kid {
                let verified = verify_with_jwks(&jwks(addresses[(index + 1) % 3]).await, jwt);
                assert_eq!(verified.as_deref(), Ok("sensor"), "instance {index}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "instance {index} still signs with {} {:?} after the rotation",
                kid_of(jwt),
                rotated_at.elapsed()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    // A disabled signal is rejected by every instance, for logins and for
    // its issued tokens, once the cached lookups have expired.
    run_command(&["signals", "disable", "sensor", "--database-url", url]);
    let disabled_at = Instant::now();
    let deadline = disabled_at + Duration::from_secs(CACHE_TTL_SECONDS) + MARGIN;
    for (index, address) in addresses.iter().enumerate() {
        loop {
            let (login_status, _) = login(*address, "sensor", token).await;
            let session = session_status(*address, &jwts[index]).await;
            if login_status == 401 && session == 401 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "instance {index} {:?} after the disable: login {login_status}, session {session}",
                disabled_at.elapsed()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    for (index, mut instance) in instances.into_iter().enumerate() {
        assert!(instance.is_running(), "instance {index} exited");
    }
    drop(schema);
}
