//! `text/plain`, and bodies without `Content-Type`: a JSON object (what
//! `fetch` sends for a string body and `navigator.sendBeacon` for a string),
//! or `key=value` pairs separated by `&` or by line breaks.

use actix_web::http::header::HeaderMap;
use actix_web::web::Bytes;
use futures_util::future::{ready, FutureExt, LocalBoxFuture};

use super::{json, pairs, BodyFormat};
use crate::error::ApiError;
use crate::login::credentials::Credentials;

pub const FORMAT: BodyFormat = BodyFormat {
    media_type: "text/plain",
    name: "text",
    extract,
};

fn extract(
    _headers: &HeaderMap,
    body: Bytes,
) -> LocalBoxFuture<'static, Result<Credentials, ApiError>> {
    ready(super::utf8(&body).and_then(parse)).boxed_local()
}

fn parse(text: &str) -> Result<Credentials, ApiError> {
    // Windows editors and some HTTP libraries prefix text with a byte order
    // mark, which is never part of a key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    // A pair body cannot start with `{` unless a key does, which no client
    // of this endpoint sends, so the first character decides the syntax.
    // Only JSON's own white space may come before it: JSON parsers reject
    // other Unicode spaces, such as U+00A0.
    if text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return json::parse_object(text);
    }

    // Split at line breaks first, so that only the `\r` of a `\r\n` break is
    // removed and a `\r` elsewhere, even at the very end, stays in its value.
    let mut credentials = Credentials::default();
    for line in text.split_inclusive('\n') {
        let line = line
            .strip_suffix("\r\n")
            .or_else(|| line.strip_suffix('\n'))
            .unwrap_or(line);
        for segment in line.split('&') {
            pairs::insert_pair(&mut credentials, segment)?;
        }
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_with_every_separator() {
        for body in [
            "signalId=a&signalToken=b",
            "signalId=a\nsignalToken=b",
            "signalId=a\r\nsignalToken=b\r\n",
            "signalId=a\n\nsignalToken=b\n",
            "  {\"signalId\":\"a\",\"signalToken\":\"b\"}",
        ] {
            let valid = parse(body).unwrap().validate().unwrap();
            assert_eq!(valid.signal_id, "a", "{body:?}");
            assert_eq!(valid.signal_token.expose(), "b", "{body:?}");
        }
    }

    #[test]
    fn lone_carriage_return_kept() {
        let valid = parse("signalId=a\r&signalToken=b")
            .unwrap()
            .validate()
            .unwrap();

        assert_eq!(valid.signal_id, "a\r");
    }

    #[test]
    fn trailing_carriage_return_kept() {
        let valid = parse("signalId=a\nsignalToken=b\r")
            .unwrap()
            .validate()
            .unwrap();

        assert_eq!(valid.signal_token.expose(), "b\r");
    }
}
