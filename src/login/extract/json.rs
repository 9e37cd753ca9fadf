//! `application/json`: an object with string members `signalId` and
//! `signalToken`; other members are ignored.

use std::fmt;

use actix_web::http::header::HeaderMap;
use actix_web::web::Bytes;
use futures_util::future::{ready, FutureExt, LocalBoxFuture};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::BodyFormat;
use crate::error::ApiError;
use crate::login::credentials::{Credentials, FieldValue, SIGNAL_ID, SIGNAL_TOKEN};

pub const FORMAT: BodyFormat = BodyFormat {
    media_type: "application/json",
    name: "json",
    extract,
};

fn extract(
    _headers: &HeaderMap,
    body: Bytes,
) -> LocalBoxFuture<'static, Result<Credentials, ApiError>> {
    ready(super::utf8(&body).and_then(parse_object)).boxed_local()
}

/// Parses a JSON object into credentials. Also used by text/plain, which
/// browsers send when a page posts `JSON.stringify(...)` without a type.
pub fn parse_object(text: &str) -> Result<Credentials, ApiError> {
    // RFC 8259 lets a parser ignore a leading byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer
        .deserialize_map(CredentialsVisitor)
        .and_then(|credentials| deserializer.end().map(|()| credentials))
        .map_err(|error| ApiError::MalformedBody(describe(&error)))
}

/// Describes a JSON error by its kind and position only. serde_json's own
/// message can quote the body, which may hold a token.
fn describe(error: &serde_json::Error) -> String {
    use serde_json::error::Category;

    let place = format!("line {}, column {}", error.line(), error.column());
    let problem = match error.classify() {
        Category::Eof => format!("The body ends early, at {place}"),
        Category::Syntax | Category::Io => format!("The body is not valid JSON at {place}"),
        Category::Data => "The body is JSON but not an object".to_owned(),
    };
    format!("{problem}; send {{\"signalId\": \"...\", \"signalToken\": \"...\"}}.")
}

/// Walks the object's members one by one instead of collecting them into a
/// map, so that a member given twice is seen rather than overwritten.
struct CredentialsVisitor;

impl<'de> Visitor<'de> for CredentialsVisitor {
    type Value = Credentials;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Credentials, A::Error> {
        let mut credentials = Credentials::default();
        while let Some(name) = map.next_key::<String>()? {
            if name != SIGNAL_ID && name != SIGNAL_TOKEN {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value = match map.next_value::<Value>()? {
                Value::String(text) => FieldValue::Text(text),
                other => FieldValue::NotText(json_type(&other)),
            };
            credentials.insert(&name, value);
        }
        Ok(credentials)
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_member_is_repeated() {
        let credentials =
            parse_object(r#"{"signalId":"a","signalId":"b","signalToken":"t"}"#).unwrap();

        assert!(matches!(
            credentials.validate(),
            Err(ApiError::Validation {
                field: "signalId",
                ..
            })
        ));
    }

    #[test]
    fn error_message_never_quotes_body() {
        for body in [
            "\"sgt_secret-token-value\"",
            "[\"sgt_secret-token-value\"]",
            "{\"sgt_secret-token-value\" 1}",
        ] {
            let Err(ApiError::MalformedBody(message)) = parse_object(body) else {
                panic!("{body} parsed");
            };
            assert!(!message.contains("secret"), "{message}");
            assert!(message.starts_with("The body"), "{message}");
        }
    }

    #[test]
    fn non_objects_are_malformed() {
        for body in [
            "[]",
            "\"text\"",
            "null",
            "42",
            "",
            "{",
            "{} {}",
            "{\"signalId\":}",
        ] {
            assert!(
                matches!(parse_object(body), Err(ApiError::MalformedBody(_))),
                "{body:?}"
            );
        }
    }
}
