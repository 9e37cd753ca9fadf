//! Operations endpoints: `GET /healthz` (the process serves), `GET /readyz`
//! (the store responds) and `GET /metrics` (Prometheus text format).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse, ResponseError};
use serde_json::json;

use crate::app::AppState;
use crate::error::ApiError;

/// Registers the operations routes; other methods get 405.
pub fn configure(config: &mut web::ServiceConfig) {
    for (path, handler) in [
        ("/healthz", web::get().to(healthz)),
        ("/readyz", web::get().to(readyz)),
        ("/metrics", web::get().to(metrics)),
    ] {
        config.service(
            web::resource(path)
                .route(handler)
                .default_service(web::to(crate::error::method_not_allowed_get)),
        );
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(json!({ "status": "ok" }))
}

/// Returns 200 when the store responds within the store timeout, else 503
/// with the reason in the log and the contract's error body.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let timeout = state.login.store_timeout;
    let reason = match tokio::time::timeout(timeout, state.store.ping()).await {
        Ok(Ok(())) => {
            return HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
                .json(json!({ "status": "ready" }));
        }
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("the store did not answer within {timeout:?}"),
    };
    state.metrics.store_errors.inc();
    log::warn!("not ready: {reason}");
    ApiError::Unavailable.error_response()
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let keys = state.key_ring().current();
    let body = state
        .metrics
        .render(&keys.active.kid, keys.active.algorithm.name());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(body)
}
