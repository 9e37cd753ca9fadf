//! `POST /auth/login`: exchanges a signal id and signal token for a JWT.
//!
//! The path reads top to bottom: `extract` picks a body format and turns the
//! body into `Credentials`, `credentials` validates them, the store returns
//! the signal, `authenticate` checks the token, and the signer issues the
//! JWT. Every attempt ends in one log line with its outcome.

pub mod authenticate;
pub mod credentials;
pub mod extract;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::app::AppState;
use crate::client_address::client_address;
use crate::error::ApiError;
use crate::time::unix_now;

/// Path of the route.
pub const PATH: &str = "/auth/login";

/// Registers the login route, with CORS for `cors_origins`; other methods
/// get 405 with `Allow: POST`.
pub fn configure(config: &mut web::ServiceConfig, cors_origins: &[String]) {
    config.service(
        web::resource(PATH)
            .wrap(crate::cors::middleware(cors_origins))
            .route(web::post().to(post_login))
            .route(web::method(Method::OPTIONS).to(options))
            .default_service(web::to(method_not_allowed)),
    );
}

/// The 200 body. Field names and types are fixed by the public API.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LoginResponse<'a> {
    /// The signed JWT.
    token: &'a str,
    signal_id: &'a str,
    /// The token's lifetime, in seconds.
    ttl: u64,
    /// Seconds since the Unix epoch.
    issued_at: i64,
    /// Seconds since the Unix epoch.
    expires_at: i64,
    /// Seconds from now until `expiresAt`.
    expires_in: i64,
}

/// Details of one login attempt, for its log line.
struct Attempt {
    format: &'static str,
    signal_id: Option<String>,
    rejection: Option<&'static str>,
    error_code: Option<&'static str>,
}

/// Exchanges a signal id and token for a JWT.
///
/// The body carries `signalId` and `signalToken` in any of four media types.
/// A missing `Content-Type` is read as `text/plain`, which takes either a
/// JSON object or `key=value` pairs separated by `&` or line breaks.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "login",
    request_body(
        description = "The signal id and token, in one of four media types.",
        content(
            (crate::openapi::LoginRequest = "application/json",
                example = json!({"signalId": "demo", "signalToken": "<signal token>"})),
            (crate::openapi::MultipartLoginRequest = "multipart/form-data"),
            (crate::openapi::TextLoginBody = "text/plain",
                example = json!("signalId=demo&signalToken=<signal token>")),
            (crate::openapi::LoginRequest = "application/x-www-form-urlencoded"),
        )
    ),
    responses(
        (status = 200, description = "The token was issued.", body = LoginResponse,
            headers(
                ("Cache-Control" = String, description = "`no-store`"),
                ("Pragma" = String, description = "`no-cache`"),
            )),
        (status = 400, description = "The body cannot be parsed in its media type \
            (`malformed-body`).", body = crate::error::ErrorBody),
        (status = 401, description = "Unknown signal, wrong token or disabled signal, \
            with one answer for all three (`invalid-credentials`).",
            body = crate::error::ErrorBody),
        (status = 405, description = "Any method but POST and OPTIONS.",
            body = crate::error::ErrorBody,
            headers(("Allow" = String, description = "`POST`"))),
        (status = 408, description = "The body did not arrive within the body timeout.",
            body = crate::error::ErrorBody),
        (status = 413, description = "The body is over the limit (16 KiB by default).",
            body = crate::error::ErrorBody),
        (status = 415, description = "Another media type, or a `Content-Type` that cannot \
            be parsed.", body = crate::error::ErrorBody,
            headers(("Accept-Post" = String, description = "The accepted media types."))),
        (status = 422, description = "A field is missing, empty, not a string, over 256 \
            characters or given twice; `details.field` names it.",
            body = crate::error::ErrorBody),
        (status = 429, description = "Too many failed logins from this address or for this \
            signal.", body = crate::error::ErrorBody,
            headers(
                ("Retry-After" = u64, description = "Seconds until the limit resets."),
                ("RateLimit-Policy" = String, description = "The limit that was reached."),
                ("RateLimit" = String, description = "Quota left and seconds to reset."),
            )),
        (status = 503, description = "The signal store is unavailable; nothing was issued.",
            body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn post_login(
    request: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    let mut attempt = Attempt {
        format: "-",
        signal_id: None,
        rejection: None,
        error_code: None,
    };

    let response = match login(&request, &mut payload, &state, &mut attempt).await {
        Ok(response) => response,
        Err(error) => {
            attempt.rejection.get_or_insert(error.code());
            attempt.error_code = Some(error.code());
            if let ApiError::TooManyRequests(throttle) = &error {
                state
                    .metrics
                    .rate_limited
                    .with_label_values(&[throttle.policy])
                    .inc();
            }
            error.error_response()
        }
    };

    log_attempt(&attempt, response.status().as_u16(), started);
    let outcome = match response.status().as_u16() {
        200 => crate::metrics::ISSUED,
        _ => attempt.error_code.unwrap_or("internal-error"),
    };
    let format = if attempt.format == "-" {
        "unknown"
    } else {
        attempt.format
    };
    state.metrics.count_login(outcome, format);
    response
}

async fn login(
    request: &HttpRequest,
    payload: &mut web::Payload,
    state: &AppState,
    attempt: &mut Attempt,
) -> Result<HttpResponse, ApiError> {
    // An address over its limit is turned away before its body is read.
    let address = client_address(request, state.login.trust_proxy_headers)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    state
        .limiter
        .check_address(address, Instant::now())
        .await
        .map_err(ApiError::TooManyRequests)?;

    let headers = request.headers();
    let format = extract::find_format(headers)?;
    extract::check_content_encoding(headers)?;
    attempt.format = format.name;

    let reading = extract::read_body(headers, payload, state.login.body_limit);
    let body = tokio::time::timeout(state.login.body_timeout, reading)
        .await
        .map_err(|_| ApiError::RequestTimeout(state.login.body_timeout.as_secs()))??;
    let credentials = format.extract(headers, body).await?;
    let credentials = credentials.validate()?;
    state
        .limiter
        .check_signal(&credentials.signal_id, address, Instant::now())
        .await
        .map_err(ApiError::TooManyRequests)?;

    let record = state.find_signal(&credentials.signal_id).await?;

    let now = unix_now();
    if let Err(rejection) =
        authenticate::check_token(record.as_ref(), &credentials.signal_token, now)
    {
        state
            .limiter
            .record_failure(&credentials.signal_id, address, Instant::now())
            .await;
        attempt.rejection = Some(rejection.reason());
        // Log the id of a known signal only: an unknown "id" may be a token
        // pasted into the wrong field.
        if rejection != authenticate::Rejection::UnknownSignal {
            attempt.signal_id = Some(credentials.signal_id);
        }
        return Err(ApiError::InvalidCredentials);
    }
    state
        .limiter
        .record_success(&credentials.signal_id, address, Instant::now())
        .await;
    attempt.signal_id = Some(credentials.signal_id.clone());

    let issued = state
        .signer
        .sign(&credentials.signal_id, now)
        .map_err(|error| {
            log::error!("signing a token failed: {error}");
            ApiError::Internal
        })?;
    let ttl = state.signer.settings().ttl_seconds;
    let body = LoginResponse {
        token: issued.token.expose(),
        signal_id: &credentials.signal_id,
        ttl,
        issued_at: issued.issued_at,
        expires_at: issued.expires_at,
        expires_in: issued.expires_at - now,
    };
    // Sized for the token and the other members, so that serializing does
    // not grow the buffer.
    let mut json = Vec::with_capacity(body.token.len() + 2 * body.signal_id.len() + 160);
    serde_json::to_writer(&mut json, &body).map_err(|error| {
        log::error!("serializing a login response failed: {error}");
        ApiError::Internal
    })?;
    Ok(HttpResponse::Ok()
        .insert_header(header::ContentType::json())
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .body(json))
}

fn log_attempt(attempt: &Attempt, status: u16, started: Instant) {
    let micros = started.elapsed().as_micros();
    let signal = attempt.signal_id.as_deref().unwrap_or("-");
    if status == 200 {
        log::info!(
            "login issued: format={} signal={signal:?} status={status} duration_us={micros}",
            attempt.format
        );
    } else {
        let reason = attempt.rejection.unwrap_or("request rejected");
        // TODO: rate-limit repeated failure lines per client and signal.
        log::warn!(
            "login failed: reason={reason:?} format={} signal={signal:?} status={status} duration_us={micros}",
            attempt.format
        );
    }
}

/// Lists the methods of the login route. With `--cors-origin`, a CORS
/// preflight from an allowed origin is handled by the CORS middleware
/// instead, with its `Access-Control-Allow-*` headers.
#[utoipa::path(
    options,
    path = "/auth/login",
    tag = "login",
    responses(
        (status = 200, description = "A CORS preflight from an allowed origin."),
        (status = 204, description = "The methods of this route.",
            headers(("Allow" = String, description = "`POST, OPTIONS`"))),
        (status = 400, description = "A CORS preflight from an origin that is not allowed, \
            or for a method or header that is not allowed."),
    )
)]
pub(crate) async fn options() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ALLOW, "POST, OPTIONS"))
        .finish()
}

async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    ApiError::MethodNotAllowed {
        method: request.method().to_string(),
        allow: "POST",
    }
    .error_response()
}
