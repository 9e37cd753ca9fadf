//! Operations endpoints: `GET /healthz` (the process serves), `GET /readyz`
//! (the store responds) and `GET /metrics` (Prometheus text format).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse, ResponseError};

use crate::app::AppState;
use crate::error::ApiError;

pub const HEALTHZ_PATH: &str = "/healthz";
pub const READYZ_PATH: &str = "/readyz";
pub const METRICS_PATH: &str = "/metrics";

/// Registers the operations routes; other methods get 405.
pub fn configure(config: &mut web::ServiceConfig) {
    for (path, handler) in [
        (HEALTHZ_PATH, web::get().to(healthz)),
        (READYZ_PATH, web::get().to(readyz)),
        (METRICS_PATH, web::get().to(metrics)),
    ] {
        config.service(
            web::resource(path)
                .route(handler)
                .default_service(web::to(crate::error::method_not_allowed_get)),
        );
    }
}

/// The status body of `/healthz` and `/readyz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Status {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    status: &'static str,
}

/// Liveness: 200 while the process serves requests.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The process serves requests.", body = Status),
        (status = 405, description = "Any method but GET.", body = crate::error::ErrorBody,
            headers(("Allow" = String, description = "`GET`"))),
    )
)]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(Status { status: "ok" })
}

/// Readiness: 200 when the store responds within the store timeout, else
/// 503 with the reason in the log.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The store responds.", body = Status),
        (status = 405, description = "Any method but GET.", body = crate::error::ErrorBody,
            headers(("Allow" = String, description = "`GET`"))),
        (status = 503, description = "The store did not respond in time or failed; the \
            server log has the reason.", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let timeout = state.login.store_timeout;
    let reason = match tokio::time::timeout(timeout, state.store.ping()).await {
        Ok(Ok(())) => {
            return HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
                .json(Status { status: "ready" });
        }
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("the store did not answer within {timeout:?}"),
    };
    state.metrics.store_errors.inc();
    log::warn!("not ready: {reason}");
    ApiError::Unavailable.error_response()
}

/// Metrics in the Prometheus text format: login attempts by outcome and
/// body format, request latency by route, store errors, rate-limited
/// requests and the active signing key's id.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4.",
            content_type = "text/plain", body = String),
        (status = 405, description = "Any method but GET.", body = crate::error::ErrorBody,
            headers(("Allow" = String, description = "`GET`"))),
    )
)]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let keys = state.key_ring().current();
    let body = state
        .metrics
        .render(&keys.active.kid, keys.active.algorithm.name());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(body)
}
