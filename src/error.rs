//! The HTTP error boundary: every error response, in one JSON shape.
//!
//! `{"success": false, "error": {"code": ..., "message": ..., "details": ...}}`
//! is the shape that the public API's clients already parse. `message` is one
//! sentence a person can act on; causes worth more detail go to the log, not
//! to the client.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::rate_limit::{Throttle, ADDRESS_POLICY};

/// Media types that `POST /auth/login` accepts, as `Accept-Post` lists them.
pub const ACCEPTED_MEDIA_TYPES: &str =
    "application/json, multipart/form-data, text/plain, application/x-www-form-urlencoded";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body cannot be parsed in its media type. The message names the problem.
    #[error("{0}")]
    MalformedBody(String),
    #[error("{field} {problem}")]
    Validation {
        field: &'static str,
        problem: FieldProblem,
    },
    #[error("The signal id or token is not valid.")]
    InvalidCredentials,
    /// A missing or unacceptable bearer token. The message names the
    /// client's next step.
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("The method {method} is not allowed here; use {allow}.")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("The request body is larger than the limit of {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    /// Unsupported or unparsable `Content-Type`; the message names it.
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{}", too_many_message(.0))]
    TooManyRequests(Throttle),
    #[error("The request body did not arrive within {0} seconds; send it without pauses.")]
    RequestTimeout(u64),
    #[error("The signal store is unavailable; retry in a few seconds.")]
    Unavailable,
    #[error("No resource exists at this path.")]
    NotFound,
    #[error("The server failed to handle the request; the cause is in its log.")]
    Internal,
}

fn too_many_message(throttle: &Throttle) -> String {
    let subject = match throttle.policy {
        ADDRESS_POLICY => "from this address",
        _ => "for this signal",
    };
    format!(
        "Too many failed logins {subject}; retry in {} seconds.",
        throttle.retry_after
    )
}

/// Validation failure of one credential field, worded to follow its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    #[error("is missing; send it as a string of 1 to 256 characters.")]
    Missing,
    #[error("is empty; send a string of 1 to 256 characters.")]
    Empty,
    #[error("must be a string, not {0}.")]
    NotString(&'static str),
    #[error("has {0} characters, more than the limit of 256.")]
    TooLong(usize),
    #[error("is given more than once; send it once.")]
    Repeated,
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody<'a> {
    /// Always `false`.
    success: bool,
    error: ErrorObject<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorObject<'a> {
    /// Machine-readable code, such as `invalid-credentials`.
    #[schema(example = "invalid-credentials")]
    code: &'a str,
    /// One sentence that a person can act on.
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<ErrorDetails>,
}

/// Machine-readable facts about the error.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetails {
    /// The field that failed validation: `signalId` or `signalToken`.
    field: &'static str,
}

impl ApiError {
    /// Returns the machine-readable `error.code` of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedBody(_) => "malformed-body",
            ApiError::Validation { .. } => "validation-error",
            ApiError::InvalidCredentials => "invalid-credentials",
            ApiError::InvalidToken(_) => "invalid-token",
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::TooManyRequests(_) => "too-many-requests",
            ApiError::RequestTimeout(_) => "request-timeout",
            ApiError::Unavailable => "unavailable",
            ApiError::NotFound => "not-found",
            ApiError::Internal => "internal-error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let details = match self {
            ApiError::Validation { field, .. } => Some(ErrorDetails { field }),
            _ => None,
        };
        let body = ErrorBody {
            success: false,
            error: ErrorObject {
                code: self.code(),
                message: self.to_string(),
                details,
            },
        };

        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        match self {
            ApiError::MethodNotAllowed { allow, .. } => {
                response.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
            }
            ApiError::TooManyRequests(throttle) => {
                // RateLimit header fields as draft-ietf-httpapi-ratelimit-headers
                // (revision 10) defines them: q is the quota, w the window and
                // t the seconds until it resets, r the quota left.
                response.insert_header((header::RETRY_AFTER, throttle.retry_after));
                response.insert_header((
                    "RateLimit-Policy",
                    format!(
                        "\"{}\";q={};w={}",
                        throttle.policy, throttle.quota, throttle.window_seconds
                    ),
                ));
                response.insert_header((
                    "RateLimit",
                    format!("\"{}\";r=0;t={}", throttle.policy, throttle.retry_after),
                ));
            }

            ApiError::InvalidToken(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                ));
            }
            ApiError::UnsupportedMediaType(_) => {
                response.insert_header(("Accept-Post", ACCEPTED_MEDIA_TYPES));
            }
            _ => {}
        }
        // These responses go out before the body is read, or while a client stalls
        // in the middle of it. Closing the connection frees it at once
        // instead of waiting for the rest of a body that may never come.
        // TODO: a stalled chunked body still keeps its connection open after
        // the 408, because actix-http waits for the end of the chunked
        // payload (tests/limits.rs, stalled_chunked_body_gets_408).
        if matches!(
            self,
            ApiError::RequestTimeout(_)
                | ApiError::PayloadTooLarge { .. }
                | ApiError::UnsupportedMediaType(_)
                | ApiError::TooManyRequests(_)
                | ApiError::MethodNotAllowed { .. }
        ) {
            response.force_close();
        }
        response.json(body)
    }
}

/// Returns 405 on a route that serves only GET.
pub async fn method_not_allowed_get(request: actix_web::HttpRequest) -> HttpResponse {
    ApiError::MethodNotAllowed {
        method: request.method().to_string(),
        allow: "GET",
    }
    .error_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn validation_error_shape() {
        let error = ApiError::Validation {
            field: "signalId",
            problem: FieldProblem::Missing,
        };

        let response = error.error_response();
        let status = response.status();
        let body = to_bytes(response.into_body()).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();

        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json["success"], false);
        assert_eq!(json["error"]["code"], "validation-error");
        assert_eq!(json["error"]["details"]["field"], "signalId");
        assert_eq!(
            json["error"]["message"],
            "signalId is missing; send it as a string of 1 to 256 characters."
        );
    }
}
