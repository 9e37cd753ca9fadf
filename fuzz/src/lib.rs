//! Properties that the login body extractors of nexus-auth must keep for
//! every input, shared by the fuzz targets in `fuzz_targets/`.
//!
//! Each check panics on a violation, which libFuzzer reports as a crash.
//! `check_extraction` applies to every format. `check_json`, `check_text`,
//! `check_form` and `check_multipart` compare one format's result with an
//! independent reading of the same body.

use actix_web::http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::ResponseError;
use nexus_auth::error::{ApiError, FieldProblem};
use nexus_auth::login::credentials::{
    Credentials, FieldValue, ValidCredentials, MAX_FIELD_CHARS, SIGNAL_ID, SIGNAL_TOKEN,
};
use nexus_auth::login::extract::{find_format, BodyFormat};
use nexus_auth::secret::SignalToken;
use nexus_auth::signal_token::TOKEN_PREFIX;
use serde::de::IgnoredAny;
use serde_json::Value;

pub const JSON: &str = "application/json";
pub const MULTIPART: &str = "multipart/form-data";
pub const TEXT_PLAIN: &str = "text/plain";
pub const FORM_URLENCODED: &str = "application/x-www-form-urlencoded";

const UTF8_BYTE_ORDER_MARK: &[u8] = "\u{feff}".as_bytes();

/// Maximum length of a multipart boundary that RFC 2046 allows, in bytes.
pub const MAX_BOUNDARY_LEN: usize = 70;

/// Splits `data` at its first `\n` into a header value and a body, or
/// returns `None` when `data` has no `\n`.
pub fn split_first_line(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = data.iter().position(|&byte| byte == b'\n')?;
    Some((&data[..end], &data[end + 1..]))
}

/// Removes the spaces and tabs around a header value, as httparse (the
/// HTTP/1 parser of actix-web) does before the handler receives it.
pub fn trim_header_value(value: &[u8]) -> &[u8] {
    let is_space = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let start = value
        .iter()
        .position(|byte| !is_space(byte))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|byte| !is_space(byte))
        .map_or(start, |last| last + 1);
    &value[start..end]
}

/// Builds request headers with one `Content-Type`, or returns `None` when
/// `value` contains bytes that no HTTP header value may contain, because
/// actix-web rejects such a request before the login handler runs.
pub fn headers_with_content_type(value: &[u8]) -> Option<HeaderMap> {
    let value = HeaderValue::from_bytes(value).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, value);
    Some(headers)
}

/// Finds the body format of `headers`, whose `Content-Type` must be one that
/// the service accepts.
pub fn format_of(headers: &HeaderMap) -> &'static BodyFormat {
    find_format(headers).unwrap_or_else(|error| panic!("find_format rejected the headers: {error}"))
}

/// Runs one extractor to completion on the current thread. Like the login
/// handler, it passes the whole body at once.
pub fn extract(
    format: &BodyFormat,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Credentials, ApiError> {
    futures_executor::block_on(format.extract(headers, Bytes::copy_from_slice(body)))
}

/// Checks what every extractor must keep:
/// - An extraction error is a 400 `malformed-body` whose message is one
///   sentence without a generated signal token.
/// - Extracted credentials either validate to two strings of 1 to 256
///   characters, or fail validation with a 422 that names the field.
/// - The `Debug` output of credentials does not depend on the token.
///
/// Returns the validated credentials, if any, for format-specific checks.
pub fn check_extraction(result: &Result<Credentials, ApiError>) -> Option<ValidCredentials> {
    let credentials = match result {
        Ok(credentials) => credentials,
        Err(error) => {
            assert!(
                matches!(error, ApiError::MalformedBody(_)),
                "an extractor returned {error:?} instead of a malformed-body error"
            );
            check_error_response(error, StatusCode::BAD_REQUEST, "malformed-body");
            return None;
        }
    };

    match credentials.clone().validate() {
        Ok(valid) => {
            check_field_length(SIGNAL_ID, &valid.signal_id);
            check_field_length(SIGNAL_TOKEN, valid.signal_token.expose());
            check_debug_hides_token(credentials, &valid);
            Some(valid)
        }
        Err(error) => {
            let ApiError::Validation { field, problem } = &error else {
                panic!("validate returned {error:?} instead of a validation error");
            };
            assert!(
                *field == SIGNAL_ID || *field == SIGNAL_TOKEN,
                "validation error names the unknown field {field:?}"
            );
            if let FieldProblem::TooLong(length) = problem {
                assert!(
                    *length > MAX_FIELD_CHARS,
                    "{field} has {length} characters but was rejected as too long"
                );
            }
            check_error_response(&error, StatusCode::UNPROCESSABLE_ENTITY, "validation-error");
            None
        }
    }
}

fn check_field_length(field: &str, value: &str) {
    let length = value.chars().count();
    assert!(
        (1..=MAX_FIELD_CHARS).contains(&length),
        "validated {field} has {length} characters, outside 1..={MAX_FIELD_CHARS}"
    );
}

/// Compares the `Debug` output of the real credentials with that of a copy
/// whose token is replaced. Any difference means that the token is printed.
fn check_debug_hides_token(credentials: &Credentials, valid: &ValidCredentials) {
    let placeholder = ValidCredentials {
        signal_id: valid.signal_id.clone(),
        signal_token: SignalToken::new("placeholder"),
    };
    assert_eq!(
        format!("{valid:?}"),
        format!("{placeholder:?}"),
        "Debug of ValidCredentials depends on the token"
    );

    let mut unvalidated = Credentials::default();
    unvalidated.insert(SIGNAL_ID, FieldValue::Text(valid.signal_id.clone()));
    unvalidated.insert(SIGNAL_TOKEN, FieldValue::Text("placeholder".to_owned()));
    assert_eq!(
        format!("{credentials:?}"),
        format!("{unvalidated:?}"),
        "Debug of Credentials depends on the token"
    );
}

/// Checks an error's status, code and message. The contract forbids a signal
/// token in any response, so the message must not contain a generated token,
/// which is recognizable by its `sgt_` prefix.
///
/// NOTE: an echoed imported token, which has no fixed prefix, passes this
/// check. Comparing the message with runs of body bytes instead flags fixed
/// wording such as "Content-Disposition: form-data; name=", which multipart
/// bodies contain too.
fn check_error_response(error: &ApiError, status: StatusCode, code: &str) {
    assert_eq!(error.status_code(), status, "status of {error:?}");
    assert_eq!(error.code(), code, "error.code of {error:?}");

    let message = error.to_string();
    assert!(
        message.ends_with('.'),
        "message is not a sentence: {message:?}"
    );
    assert!(
        !message.contains(TOKEN_PREFIX),
        "message contains a signal token: {message:?}"
    );
}

/// Checks an `application/json` result against `serde_json::Value`:
/// - A body that parses as a JSON object must extract.
/// - Valid credentials are exactly the object's `signalId` and `signalToken`.
/// - An object without `signalId` fails validation on `signalId`.
///
/// The reverse does not hold: the extractor skips members other than the two
/// credentials without building their values, so it accepts a few objects
/// that `Value` rejects, such as `{"x": 1e400, ...}`. One leading UTF-8 byte
/// order mark is ignored, as RFC 8259 allows a parser to do.
pub fn check_json(
    body: &[u8],
    result: &Result<Credentials, ApiError>,
    valid: Option<&ValidCredentials>,
) {
    let body = body.strip_prefix(UTF8_BYTE_ORDER_MARK).unwrap_or(body);
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        if result.is_ok() {
            assert!(
                serde_json::from_slice::<IgnoredAny>(body).is_ok(),
                "a body that is not JSON extracted as a JSON object"
            );
            let first = body.iter().find(|byte| !b" \t\n\r".contains(byte));
            assert_eq!(
                first,
                Some(&b'{'),
                "a JSON value that is not an object extracted"
            );
        }
        return;
    };
    let Ok(credentials) = result else {
        panic!(
            "a JSON object was rejected: {:?}",
            result.as_ref().unwrap_err()
        );
    };

    if let Some(valid) = valid {
        assert_eq!(
            object.get(SIGNAL_ID),
            Some(&Value::String(valid.signal_id.clone())),
            "signalId differs from the JSON object's member"
        );
        assert!(
            object.get(SIGNAL_TOKEN) == Some(&Value::String(valid.signal_token.expose().clone())),
            "signalToken differs from the JSON object's member"
        );
    }
    if !object.contains_key(SIGNAL_ID) {
        let validated = credentials.clone().validate();
        assert!(
            matches!(
                validated,
                Err(ApiError::Validation {
                    field: SIGNAL_ID,
                    problem: FieldProblem::Missing
                })
            ),
            "an object without signalId gave {validated:?}"
        );
    }
}

/// Checks an `application/x-www-form-urlencoded` result:
/// - It extracts exactly when the body is UTF-8, every `%` starts a
///   two-digit hexadecimal escape, and the decoded bytes are UTF-8.
/// - What it extracts equals the pairs that `form_urlencoded::parse` (the
///   `url` crate's parser) reads from the same body.
pub fn check_form(body: &[u8], result: &Result<Credentials, ApiError>) {
    let expected_ok = std::str::from_utf8(body).is_ok()
        && percent_escapes_are_valid(body)
        && percent_encoding::percent_decode(body).decode_utf8().is_ok();
    assert_eq!(
        result.is_ok(),
        expected_ok,
        "form extraction returned {result:?}; expected it to {}",
        if expected_ok { "succeed" } else { "fail" }
    );

    if let Ok(credentials) = result {
        let mut reference = Credentials::default();
        for (name, value) in form_urlencoded::parse(body) {
            reference.insert(&name, FieldValue::Text(value.into_owned()));
        }
        assert!(
            *credentials == reference,
            "form extraction differs from form_urlencoded::parse: {credentials:?} != {reference:?}"
        );
    }
}

/// Returns whether every `%` in `body` is followed by two hexadecimal digits.
fn percent_escapes_are_valid(body: &[u8]) -> bool {
    body.iter().enumerate().all(|(index, &byte)| {
        byte != b'%'
            || body
                .get(index + 1..index + 3)
                .is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit))
    })
}

/// Checks a `text/plain` result against the two formats it combines: a body
/// whose first non-whitespace character is `{` extracts as JSON does, and any
/// other body extracts as a form body whose line breaks (`\r\n` or `\n`) are
/// `&`. A leading byte order mark is dropped first, because text editors
/// add one that is never part of a key.
pub fn check_text(body: &[u8], result: &Result<Credentials, ApiError>) {
    let Ok(text) = std::str::from_utf8(body) else {
        assert!(result.is_err(), "a body that is not UTF-8 extracted");
        return;
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    let (media_type, reference_body) = if text.trim_start().starts_with('{') {
        (JSON, text.to_owned())
    } else {
        (
            FORM_URLENCODED,
            text.replace("\r\n", "&").replace('\n', "&"),
        )
    };
    let headers = headers_with_content_type(media_type.as_bytes()).unwrap();
    let reference = extract(format_of(&headers), &headers, reference_body.as_bytes());
    assert!(
        *result == reference,
        "text/plain returned {result:?} but {media_type} returned {reference:?}"
    );
}

/// Checks a `multipart/form-data` result: part contents are used without
/// any decoding, so both validated values occur verbatim in the body.
pub fn check_multipart(body: &[u8], valid: Option<&ValidCredentials>) {
    let Some(valid) = valid else {
        return;
    };
    for (field, value) in [
        (SIGNAL_ID, valid.signal_id.as_bytes()),
        (SIGNAL_TOKEN, valid.signal_token.expose().as_bytes()),
    ] {
        assert!(
            body.windows(value.len()).any(|run| run == value),
            "the validated {field} does not occur in the body"
        );
    }
}

/// Runs the checks that match `format`, for targets that choose the format
/// from the input.
pub fn check_format(format: &BodyFormat, headers: &HeaderMap, body: &[u8]) {
    let result = extract(format, headers, body);
    let valid = check_extraction(&result);
    match format.media_type {
        JSON => check_json(body, &result, valid.as_ref()),
        MULTIPART => check_multipart(body, valid.as_ref()),
        TEXT_PLAIN => check_text(body, &result),
        FORM_URLENCODED => check_form(body, &result),
        other => panic!("find_format returned the unknown media type {other}"),
    }
}
