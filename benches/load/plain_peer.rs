//! A plain login server for the load benchmark to compare nexus-auth with:
//! actix-web and jsonwebtoken's HS256, and nothing else. No store, no
//! logging, no metrics, no rate limits, JSON bodies only, so its figures
//! show what the framework and the signature cost by themselves.
//!
//! Built only with the `bench-floor` feature. Usage:
//! `plain-peer ADDRESS SIGNAL_ID SIGNAL_TOKEN SECRET_FILE`.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpResponse, HttpServer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

struct Peer {
    signal_id: String,
    signal_token: String,
    key: EncodingKey,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginRequest {
    signal_id: String,
    signal_token: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    #[serde(rename = "signalId")]
    signal_id: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    iss: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoginResponse<'a> {
    token: String,
    signal_id: &'a str,
    ttl: u64,
    issued_at: u64,
    expires_at: u64,
    expires_in: u64,
}

const TTL_SECONDS: u64 = 3600;

async fn login(peer: web::Data<Peer>, request: web::Json<LoginRequest>) -> HttpResponse {
    if request.signal_id != peer.signal_id || request.signal_token != peer.signal_token {
        return HttpResponse::Unauthorized().finish();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let claims = Claims {
        sub: &peer.signal_id,
        signal_id: &peer.signal_id,
        iat: now,
        nbf: now,
        exp: now + TTL_SECONDS,
        jti: uuid::Uuid::new_v4().to_string(),
        iss: "nexus-auth",
    };
    match jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &peer.key) {
        Ok(token) => HttpResponse::Ok().json(LoginResponse {
            token,
            signal_id: &peer.signal_id,
            ttl: TTL_SECONDS,
            issued_at: now,
            expires_at: now + TTL_SECONDS,
            expires_in: TTL_SECONDS,
        }),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

fn main() -> std::io::Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [address, signal_id, signal_token, secret_file] = arguments.as_slice() else {
        eprintln!("usage: plain-peer ADDRESS SIGNAL_ID SIGNAL_TOKEN SECRET_FILE");
        std::process::exit(2);
    };
    let secret = std::fs::read(secret_file)?;
    let key = EncodingKey::from_secret(&secret)
        .map_err(|error| std::io::Error::other(format!("invalid HS256 secret: {error}")))?;
    let peer = web::Data::new(Peer {
        signal_id: signal_id.clone(),
        signal_token: signal_token.clone(),
        key,
    });

    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new()
                .app_data(peer.clone())
                .route("/auth/login", web::post().to(login))
        })
        .bind(address.as_str())?
        .run()
        .await
    })
}
