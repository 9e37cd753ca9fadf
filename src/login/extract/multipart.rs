//! `multipart/form-data`, parsed by actix-multipart: parts named `signalId`
//! and `signalToken`, with or without a filename; other parts are drained.

use actix_multipart::{Multipart, MultipartError};
use actix_web::http::header::HeaderMap;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::web::Bytes;
use futures_util::future::{ready, FutureExt, LocalBoxFuture};
use futures_util::{stream, StreamExt};

use super::{media_type, BodyFormat};
use crate::error::ApiError;
use crate::login::credentials::{Credentials, FieldValue, SIGNAL_ID, SIGNAL_TOKEN};

pub const FORMAT: BodyFormat = BodyFormat {
    media_type: "multipart/form-data",
    name: "multipart",
    extract,
};

/// Most parts a login body may have. Two carry the credentials; the rest
/// leaves room for what form libraries add (a CSRF field, a submit button).
const MAX_PARTS: usize = 16;

/// Maximum boundary length, in characters, that RFC 2046, section 5.1.1,
/// allows.
const MAX_BOUNDARY_CHARS: usize = 70;

fn extract(
    headers: &HeaderMap,
    body: Bytes,
) -> LocalBoxFuture<'static, Result<Credentials, ApiError>> {
    if let Err(error) = check_boundary(headers) {
        return ready(Err(error)).boxed_local();
    }

    // The body is already read and bounded by the size limit, so the parser
    // gets it as a single chunk and every part is bounded by that limit too.
    let chunks = stream::once(async move { Ok::<_, actix_web::error::PayloadError>(body) });
    let multipart = Multipart::new(headers, chunks);
    parse(multipart).boxed_local()
}

/// Checks that the boundary has 1 to 70 characters, as RFC 2046 requires;
/// the multipart parser accepts any length.
fn check_boundary(headers: &HeaderMap) -> Result<(), ApiError> {
    let boundary = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(media_type::parse)
        .and_then(|media_type| media_type.parameter("boundary").map(str::len));
    match boundary {
        None | Some(0) => Err(malformed(MultipartError::BoundaryMissing)),
        Some(length) if length > MAX_BOUNDARY_CHARS => Err(ApiError::MalformedBody(format!(
            "The multipart boundary has {length} characters, more than the {MAX_BOUNDARY_CHARS} that RFC 2046 allows."
        ))),
        Some(_) => Ok(()),
    }
}

async fn parse(mut multipart: Multipart) -> Result<Credentials, ApiError> {
    let mut credentials = Credentials::default();
    let mut parts = 0;
    while let Some(part) = multipart.next().await {
        let mut part = part.map_err(malformed)?;
        parts += 1;
        if parts > MAX_PARTS {
            return Err(ApiError::MalformedBody(format!(
                "The multipart body has more than {MAX_PARTS} parts; send only signalId and signalToken."
            )));
        }

        let name = part
            .name()
            .filter(|name| *name == SIGNAL_ID || *name == SIGNAL_TOKEN);
        let name = name.map(str::to_owned);
        let mut content = Vec::new();
        while let Some(chunk) = part.next().await {
            let chunk = chunk.map_err(malformed)?;
            if name.is_some() {
                content.extend_from_slice(&chunk);
            }
        }

        if let Some(name) = name {
            // `name` is one of the two field names, never client text.
            let text = String::from_utf8(content).map_err(|_| {
                ApiError::MalformedBody(format!("The multipart part {name} is not valid UTF-8."))
            })?;
            credentials.insert(&name, FieldValue::Text(text));
        }
    }
    Ok(credentials)
}

/// Describes a multipart error in fixed words. The library's own messages
/// can quote part names, which come from the client.
fn malformed(error: MultipartError) -> ApiError {
    let problem = match error {
        MultipartError::BoundaryMissing => "its Content-Type has no boundary parameter",
        MultipartError::ContentDispositionMissing
        | MultipartError::ContentDispositionNameMissing => {
            "a part lacks a `Content-Disposition: form-data; name=...` header"
        }
        MultipartError::Nested => "it nests another multipart body, which is not supported",
        MultipartError::Incomplete => "it ends before the closing boundary",
        MultipartError::Parse(_) => "a part's headers cannot be parsed",
        MultipartError::Payload(_) => "it ended early or its transfer encoding is invalid",
        _ => "it does not follow the multipart/form-data format",
    };
    ApiError::MalformedBody(format!(
        "The multipart body is invalid because {problem}; check the boundary and part headers."
    ))
}
