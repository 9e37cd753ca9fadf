//! `multipart/form-data`, parsed by actix-multipart: parts named `signalId`
//! and `signalToken`, with or without a filename; other parts are drained.

use actix_multipart::{Multipart, MultipartError};
use actix_web::http::header::HeaderMap;
use actix_web::web::Bytes;
use futures_util::future::{FutureExt, LocalBoxFuture};
use futures_util::{stream, StreamExt};

use super::BodyFormat;
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

fn extract(
    headers: &HeaderMap,
    body: Bytes,
) -> LocalBoxFuture<'static, Result<Credentials, ApiError>> {
    // The body is already read and bounded by the size limit, so the parser
    // gets it as a single chunk and every part is bounded by that limit too.
    let chunks = stream::once(async move { Ok::<_, actix_web::error::PayloadError>(body) });
    let multipart = Multipart::new(headers, chunks);
    parse(multipart).boxed_local()
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
            let text = String::from_utf8(content).map_err(|_| {
                ApiError::MalformedBody(format!("The multipart part {name} is not valid UTF-8."))
            })?;
            credentials.insert(&name, FieldValue::Text(text));
        }
    }
    Ok(credentials)
}

fn malformed(error: MultipartError) -> ApiError {
    ApiError::MalformedBody(format!(
        "The multipart body is invalid ({}); check its boundary and part headers.",
        error.to_string().trim_end_matches('.')
    ))
}
