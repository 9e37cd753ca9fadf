//! `GET /.well-known/jwks.json`: the public keys that verify issued tokens
//! (RFC 7517), so that other services verify them without calling back.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::app::AppState;

/// Maximum time a verifier may cache the key set, in seconds.
const MAX_CACHE_SECONDS: u64 = 300;

/// Path of the route.
pub const PATH: &str = "/.well-known/jwks.json";

/// Registers the JWKS route, with CORS for `cors_origins`; other methods
/// get 405.
pub fn configure(config: &mut web::ServiceConfig, cors_origins: &[String]) {
    config.service(
        web::resource(PATH)
            .wrap(crate::cors::middleware(cors_origins))
            .route(web::get().to(get_jwks))
            .default_service(web::to(crate::error::method_not_allowed_get)),
    );
}

/// Returns the `max-age` of the key set: at most half the time a replaced
/// key keeps verifying (token lifetime plus leeway), so that a cached copy
/// always expires while the tokens of a replaced key can still be checked.
pub fn cache_seconds(token_ttl: u64, leeway: u64) -> u64 {
    (token_ttl.saturating_add(leeway) / 2).clamp(1, MAX_CACHE_SECONDS)
}

/// Returns the public keys that verify tokens, so that services verify
/// them without calling this server.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "tokens",
    responses(
        (status = 200, description = "The key set; a key stays in it while tokens it \
            signed can still be valid.", content_type = "application/jwk-set+json",
            body = crate::openapi::JwkSet,
            headers(("Cache-Control" = String, description = "`public, max-age=N`, N at \
                most 300 seconds."))),
        (status = 405, description = "Any method but GET.", body = crate::error::ErrorBody,
            headers(("Allow" = String, description = "`GET`"))),
    )
)]
pub(crate) async fn get_jwks(state: web::Data<AppState>) -> HttpResponse {
    let settings = state.signer.ring().settings();
    let max_age = cache_seconds(settings.token_ttl, settings.leeway);
    let keys = state.signer.ring().current().public_jwks();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, format!("public, max-age={max_age}")))
        .content_type("application/jwk-set+json")
        .body(json!({ "keys": keys }).to_string())
}
