//! `key=value` pairs with form percent-decoding, shared by the
//! form-urlencoded and text/plain extractors.
//!
//! Decoding is strict where browsers and `serde_urlencoded` are lenient: a
//! `%` not followed by two hexadecimal digits, or bytes that do not decode
//! to UTF-8, make the body malformed instead of passing through as-is.

use crate::error::ApiError;
use crate::login::credentials::{Credentials, FieldValue};

/// Adds one `key=value` segment to `credentials`. A segment without `=` is
/// a key with an empty value, as in HTML forms; an empty segment is skipped.
pub fn insert_pair(credentials: &mut Credentials, segment: &str) -> Result<(), ApiError> {
    if segment.is_empty() {
        return Ok(());
    }
    let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
    credentials.insert(&decode(key)?, FieldValue::Text(decode(value)?));
    Ok(())
}

/// Decodes `+` to a space and `%XX` to the byte `XX`.
pub fn decode(encoded: &str) -> Result<String, ApiError> {
    if !encoded.contains(['%', '+']) {
        return Ok(encoded.to_owned());
    }

    let mut bytes = Vec::with_capacity(encoded.len());
    let mut input = encoded.bytes();
    while let Some(byte) = input.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let high = input.next().and_then(hex_value);
                let low = input.next().and_then(hex_value);
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(ApiError::MalformedBody(
                        "The body has an invalid percent-encoding: every % must be followed by two hexadecimal digits.".to_owned(),
                    ));
                };
                bytes.push(high << 4 | low);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| {
        ApiError::MalformedBody("A percent-encoded value is not valid UTF-8.".to_owned())
    })
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_form_encoding() {
        assert_eq!(decode("a+b%20c%2B%C3%A9").unwrap(), "a b c+\u{e9}");
        assert_eq!(decode("plain").unwrap(), "plain");
    }

    #[test]
    fn rejects_bad_encoding() {
        for encoded in ["%", "%4", "%G1", "%C3", "a%zz"] {
            assert!(decode(encoded).is_err(), "{encoded:?}");
        }
    }
}
