//! CORS for the routes that browsers call: the login, the session check
//! and the JWKS. Off unless `--cors-origin` names at least one origin.

use actix_cors::Cors;
use actix_web::middleware::Condition;

/// Response headers that scripts on allowed origins may read.
const EXPOSED_HEADERS: [&str; 5] = [
    "X-Signal-Id",
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    "WWW-Authenticate",
];

/// Seconds a browser may cache a preflight response.
const PREFLIGHT_MAX_AGE: usize = 600;

/// Builds the CORS middleware for `origins` (`*` allows any origin); with
/// no origins it is switched off and adds no header. Credentials
/// (cookies) are never allowed, because no route reads them.
pub fn middleware(origins: &[String]) -> Condition<Cors> {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "OPTIONS"])
        .allowed_headers(["Authorization", "Content-Type"])
        .expose_headers(EXPOSED_HEADERS)
        .max_age(PREFLIGHT_MAX_AGE);
    for origin in origins {
        cors = match origin.as_str() {
            "*" => cors.allow_any_origin().send_wildcard(),
            origin => cors.allowed_origin(origin),
        };
    }
    Condition::new(!origins.is_empty(), cors)
}
