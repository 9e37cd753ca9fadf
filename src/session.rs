//! Requests authorized by a token: the `AuthenticatedSignal` extractor and
//! `GET /auth/session`, which reverse proxies use for forward
//! authentication.

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use serde::Serialize;

use crate::app::AppState;
use crate::error::ApiError;
use crate::signer::Claims;
use crate::time::unix_now;
use crate::verify::TokenRejection;

/// Header that carries the signal id of an accepted token, for the
/// upstream behind a reverse proxy.
pub const SIGNAL_ID_HEADER: &str = "X-Signal-Id";

/// A signal whose token verified and which is still enabled. Put it in a
/// handler's arguments to require a token:
///
/// ```
/// use nexus_auth::session::AuthenticatedSignal;
///
/// async fn report(signal: AuthenticatedSignal) -> String {
///     format!("hello, {}", signal.signal_id)
/// }
/// ```
///
/// The app must have a `web::Data<AppState>`. A request without an
/// acceptable token gets 401 `invalid-token` before the handler runs.
#[derive(Debug, Clone)]
pub struct AuthenticatedSignal {
    pub signal_id: String,
    pub claims: Claims,
}

impl FromRequest for AuthenticatedSignal {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let authorization = request.headers().get(header::AUTHORIZATION).cloned();
        Box::pin(async move {
            let Some(state) = state else {
                log::error!("AuthenticatedSignal needs web::Data<AppState> in the app");
                return Err(ApiError::Internal);
            };
            authenticate(&state, authorization.as_ref()).await
        })
    }
}

/// Reads the token from `Authorization: Bearer <token>` (scheme in any
/// case) or from a bare `Authorization: <token>`, as the public API's own
/// clients send it.
fn token_from_header(value: Option<&HeaderValue>) -> Result<&str, TokenRejection> {
    let value = value.ok_or(TokenRejection::Missing)?;
    let value = value
        .to_str()
        .map_err(|_| TokenRejection::Malformed)?
        .trim();
    // A scheme with nothing after it is a missing token, not a bare one.
    if value.is_empty() || value.eq_ignore_ascii_case("bearer") {
        return Err(TokenRejection::Missing);
    }
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = token.trim_start();
            if token.is_empty() {
                return Err(TokenRejection::Missing);
            }
            Ok(token)
        }
        Some(_) => Err(TokenRejection::WrongScheme),
        None => Ok(value),
    }
}

async fn authenticate(
    state: &AppState,
    authorization: Option<&HeaderValue>,
) -> Result<AuthenticatedSignal, ApiError> {
    let token = token_from_header(authorization).map_err(|rejection| reject(rejection, None))?;
    let mut claims = state.verifier.verify(token);
    if claims == Err(TokenRejection::UnknownKey)
        && state
            .key_ring()
            .reload_for_unknown_kid(state.store.as_ref(), unix_now())
            .await
    {
        claims = state.verifier.verify(token);
    }
    let claims = match claims {
        Ok(claims) => claims,
        Err(rejection) => return Err(reject(rejection, None)),
    };

    // A disabled or deleted signal loses its tokens here within the signal
    // cache's TTL. Services that verify with the JWKS alone see that only
    // when the token expires.
    let record = state.find_signal(&claims.sub).await?;
    // A token older than its signal was issued to a deleted signal whose id
    // was later reused; it must not come back to life.
    // NOTE: both times are whole seconds, so a token issued in the same
    // second as a deletion and re-creation of its id still passes.
    if !record.is_some_and(|record| record.enabled && claims.iat >= record.created_at) {
        return Err(reject(TokenRejection::SignalRevoked, Some(&claims.sub)));
    }
    Ok(AuthenticatedSignal {
        signal_id: claims.sub.clone(),
        claims,
    })
}

fn reject(rejection: TokenRejection, signal_id: Option<&str>) -> ApiError {
    // Missing and expired tokens are routine for a forward-auth endpoint;
    // the other rejections suggest a forged or corrupted token.
    let signal = signal_id.unwrap_or("-");
    match rejection {
        TokenRejection::Missing | TokenRejection::Expired => {
            log::debug!(
                "token rejected: reason={:?} signal={signal:?}",
                rejection.reason()
            )
        }
        _ => log::warn!(
            "token rejected: reason={:?} signal={signal:?}",
            rejection.reason()
        ),
    }
    ApiError::InvalidToken(rejection.message())
}

/// Path of the route.
pub const PATH: &str = "/auth/session";

/// Registers `GET /auth/session`, with CORS for `cors_origins`; other
/// methods get 405.
pub fn configure(config: &mut web::ServiceConfig, cors_origins: &[String]) {
    config.service(
        web::resource(PATH)
            .wrap(crate::cors::middleware(cors_origins))
            .route(web::get().to(get_session))
            .default_service(web::to(crate::error::method_not_allowed_get)),
    );
}

/// The 200 body of `GET /auth/session`. Times are seconds since the Unix
/// epoch.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionResponse<'a> {
    signal_id: &'a str,
    issued_at: i64,
    expires_at: i64,
    /// Seconds from now until `expiresAt`, at least 0.
    expires_in: i64,
    /// The token's unique id.
    jti: &'a str,
}

/// Checks a token and returns its signal, for services and reverse proxies
/// (forward authentication) that do not verify tokens themselves.
#[utoipa::path(
    get,
    path = "/auth/session",
    tag = "tokens",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token is valid.", body = SessionResponse,
            headers(
                ("X-Signal-Id" = String, description = "The signal id, with `%`, spaces \
                    and bytes outside visible ASCII percent-encoded."),
                ("Cache-Control" = String, description = "`no-store`"),
            )),
        (status = 401, description = "The token is missing, malformed, expired, wrongly \
            signed or otherwise unacceptable, or its signal has been disabled or deleted.",
            body = crate::error::ErrorBody,
            headers(("WWW-Authenticate" = String,
                description = "`Bearer error=\"invalid_token\"`"))),
        (status = 405, description = "Any method but GET.", body = crate::error::ErrorBody,
            headers(("Allow" = String, description = "`GET`"))),
        (status = 503, description = "The signal store is unavailable.",
            body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn get_session(signal: AuthenticatedSignal) -> HttpResponse {
    let claims = &signal.claims;
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((SIGNAL_ID_HEADER, header_safe(&signal.signal_id)))
        .json(SessionResponse {
            signal_id: &signal.signal_id,
            issued_at: claims.iat,
            expires_at: claims.exp,
            expires_in: (claims.exp - unix_now()).max(0),
            jti: &claims.jti,
        })
}

/// Percent-encodes `%` and every byte outside visible ASCII, spaces
/// included, because HTTP strips spaces at either end of a header value.
/// Every signal id then reaches the upstream behind a proxy as a distinct,
/// non-empty value.
pub fn header_safe(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_graphic() && byte != b'%' {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_header_forms() {
        let header = |value: &str| HeaderValue::from_str(value).unwrap();

        assert_eq!(token_from_header(Some(&header("Bearer abc"))), Ok("abc"));
        assert_eq!(token_from_header(Some(&header("bearer  abc"))), Ok("abc"));
        assert_eq!(token_from_header(Some(&header("BEARER abc"))), Ok("abc"));
        assert_eq!(
            token_from_header(Some(&header("abc.def.ghi"))),
            Ok("abc.def.ghi")
        );
        assert_eq!(token_from_header(None), Err(TokenRejection::Missing));
        assert_eq!(
            token_from_header(Some(&header(""))),
            Err(TokenRejection::Missing)
        );
        assert_eq!(
            token_from_header(Some(&header("Bearer "))),
            Err(TokenRejection::Missing)
        );
        assert_eq!(
            token_from_header(Some(&header("Basic YTpi"))),
            Err(TokenRejection::WrongScheme)
        );
    }

    #[test]
    fn header_safe_encodes_non_ascii() {
        assert_eq!(header_safe("sensor-7"), "sensor-7");
        assert_eq!(
            header_safe("fixture signal \u{e9}"),
            "fixture%20signal%20%C3%A9"
        );
        assert_eq!(header_safe("50%\n"), "50%25%0A");
    }
}
