//! `POST /bench/floor`, the baseline of the load benchmark, compiled only
//! with the `bench-floor` feature so that production builds never serve it.
//!
//! It reads the request body as the login does, without parsing it, and
//! returns a fixed 200 JSON body of the same size as a login response for
//! `FLOOR_SIGNAL_ID`. A login's cost over the floor's is then the login's
//! own work: body parsing, validation, the store, the token check, the
//! signature and the log line. Both share the server, its middleware and
//! the metrics.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

use crate::app::AppState;
use crate::error::ApiError;
use crate::login::extract::read_body;

/// Signal id that the load benchmark logs in with. The floor's body carries
/// an id of this length, so that its size matches the login response.
pub const FLOOR_SIGNAL_ID: &str = "load-signal";

/// The response body, built on a worker's first request from a token that
/// the server's own signer issues, so that it has that algorithm's length.
#[derive(Default)]
struct FloorBody(OnceLock<Bytes>);

pub fn configure(config: &mut web::ServiceConfig) {
    config.service(
        web::resource("/bench/floor")
            .app_data(web::Data::new(FloorBody::default()))
            .route(web::post().to(post_floor)),
    );
}

async fn post_floor(
    request: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<AppState>,
    floor: web::Data<FloorBody>,
) -> HttpResponse {
    let headers = request.headers();
    if let Err(error) = read_body(headers, &mut payload, state.login.body_limit).await {
        return error.error_response();
    }

    let body = match floor.0.get() {
        Some(body) => body.clone(),
        None => match build_body(&state) {
            Ok(body) => floor.0.get_or_init(|| body).clone(),
            Err(error) => return error.error_response(),
        },
    };
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .body(body)
}

/// Serializes a login response for `FLOOR_SIGNAL_ID` with the same members
/// and a real token, once.
fn build_body(state: &AppState) -> Result<Bytes, ApiError> {
    let now = crate::time::unix_now();
    let issued = state.signer.sign(FLOOR_SIGNAL_ID, now).map_err(|error| {
        log::error!("signing the floor's token failed: {error}");
        ApiError::Internal
    })?;
    let body = json!({
        "token": issued.token.expose(),
        "signalId": FLOOR_SIGNAL_ID,
        "ttl": state.signer.settings().ttl_seconds,
        "issuedAt": issued.issued_at,
        "expiresAt": issued.expires_at,
        "expiresIn": issued.expires_at - now,
    });
    Ok(Bytes::from(body.to_string()))
}
