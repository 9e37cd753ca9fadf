//! Login body extractors: one module per media type, each turning a body
//! into `Credentials`.
//!
//! The handler picks the extractor from `Content-Type` with `find_format`,
//! reads the body with `read_body` (which enforces the size limit as bytes
//! arrive), and passes the bytes to the format's `extract`. Adding a format
//! takes one module and one entry in `FORMATS`.

mod form;
mod json;
pub mod media_type;
mod multipart;
mod pairs;
mod text;

use actix_web::http::header::{HeaderMap, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;

use super::credentials::Credentials;
use crate::error::{ApiError, ACCEPTED_MEDIA_TYPES};

/// Parses a whole body into credentials. Receives the request headers for
/// formats whose parameters matter (the multipart boundary).
type ExtractFn = fn(&HeaderMap, Bytes) -> LocalBoxFuture<'static, Result<Credentials, ApiError>>;

/// A body format: its media type (`type/subtype`, lower case), the short
/// name used in log lines, and its extractor.
pub struct BodyFormat {
    pub media_type: &'static str,
    pub name: &'static str,
    extract: ExtractFn,
}

const FORMATS: &[BodyFormat] = &[json::FORMAT, multipart::FORMAT, text::FORMAT, form::FORMAT];

/// Returns the short name of every body format, as log lines and metrics
/// label them.
pub fn format_names() -> impl Iterator<Item = &'static str> {
    FORMATS.iter().map(|format| format.name)
}

/// The format of a request without `Content-Type`.
const DEFAULT_FORMAT: &BodyFormat = &text::FORMAT;

impl BodyFormat {
    pub async fn extract(&self, headers: &HeaderMap, body: Bytes) -> Result<Credentials, ApiError> {
        (self.extract)(headers, body).await
    }
}

/// Finds the body format named by `Content-Type`, case-insensitively and
/// ignoring parameters. A missing header means text/plain; more than one
/// header, one that is not a media type, or one no extractor handles is a 415.
pub fn find_format(headers: &HeaderMap) -> Result<&'static BodyFormat, ApiError> {
    let mut values = headers.get_all(CONTENT_TYPE);
    let Some(value) = values.next() else {
        return Ok(DEFAULT_FORMAT);
    };
    if values.next().is_some() {
        return Err(ApiError::UnsupportedMediaType(
            "The request has more than one Content-Type header; send exactly one.".to_owned(),
        ));
    }

    let unparsable = || {
        ApiError::UnsupportedMediaType(format!(
            "The Content-Type header is not a valid media type; send one of {ACCEPTED_MEDIA_TYPES}."
        ))
    };
    let text = value.to_str().map_err(|_| unparsable())?;
    let media_type = media_type::parse(text).ok_or_else(unparsable)?;

    let essence = media_type.essence.as_str();
    FORMATS
        .iter()
        .find(|format| format.media_type == essence)
        .ok_or_else(|| {
            ApiError::UnsupportedMediaType(format!(
                "The media type {essence} is not supported; send one of {ACCEPTED_MEDIA_TYPES}."
            ))
        })
}

/// Rejects a compressed or otherwise encoded body with 415: the login reads
/// bodies as they are, and decoding them would multiply the size limit.
pub fn check_content_encoding(headers: &HeaderMap) -> Result<(), ApiError> {
    for value in headers.get_all(CONTENT_ENCODING) {
        let encoding = value.to_str().unwrap_or("(not text)").trim();
        if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
            return Err(ApiError::UnsupportedMediaType(
                "Content-Encoding is not supported here; send the body uncompressed.".to_owned(),
            ));
        }
    }
    Ok(())
}

/// Reads the whole body, failing with 413 as soon as it passes `limit`
/// bytes: at once when `Content-Length` announces more, and otherwise when
/// the chunk that crosses the limit arrives, so chunked bodies are bounded too.
pub async fn read_body(
    headers: &HeaderMap,
    payload: &mut Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit };
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(too_large);
    }

    let mut body = BytesMut::with_capacity(announced.map_or(1024, |length| length as usize));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| match error {
            actix_web::error::PayloadError::Overflow => too_large.clone(),
            _ => ApiError::MalformedBody(
                "The request body ended early or its transfer encoding is invalid.".to_owned(),
            ),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Converts a body or value to text, or fails with the contract's 400.
fn utf8(bytes: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(bytes)
        .map_err(|_| ApiError::MalformedBody("The request body is not valid UTF-8.".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers_with(content_types: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in content_types {
            headers.append(CONTENT_TYPE, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn format_by_media_type() {
        let cases: &[(&[u8], &str)] = &[
            (b"application/json", "json"),
            (b"application/json; charset=utf-8", "json"),
            (b"APPLICATION/JSON", "json"),
            (b"multipart/form-data; boundary=x", "multipart"),
            (b"text/plain;charset=UTF-8", "text"),
            (b"application/x-www-form-urlencoded", "form"),
            (b"application/json;;charset=utf-8", "json"),
            (b"application/json; charset=utf-8;", "json"),
            (b"multipart/form-data; boundary=\"a;b\";", "multipart"),
        ];
        for (value, expected) in cases {
            let format = find_format(&headers_with(&[value])).unwrap();
            assert_eq!(format.name, *expected, "{}", String::from_utf8_lossy(value));
        }
        assert_eq!(find_format(&HeaderMap::new()).unwrap().name, "text");
    }

    #[test]
    fn unsupported_media_types() {
        let cases: &[&[&[u8]]] = &[
            &[b"application/xml"],
            &[b"not a media type"],
            &[b"text/"],
            &[b""],
            &[b"application/json\xff"],
            &[b"application/json", b"text/plain"],
            &[b"application/json; charset"],
        ];
        for values in cases {
            let result = find_format(&headers_with(values));
            assert!(
                matches!(result, Err(ApiError::UnsupportedMediaType(_))),
                "{values:?}"
            );
        }
    }
}
