//! Property tests of `POST /auth/login`:
//! - Any body bytes, under each accepted media type and with none, get a
//!   complete 2xx or 4xx response from a real server, never a 5xx.
//! - Any credential pair, encoded by this file's own encoders in each of the
//!   four body formats, decodes back to the same pair through the public
//!   extractor API.
//!
//! Case counts keep the file to a few seconds in a debug build. Failures are
//! not persisted to files, so a failing case is reported in the test output
//! only.

mod common;

use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;

use actix_web::http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use actix_web::web::Bytes;
use futures_util::FutureExt;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use common::{RawRequest, RawResponse, TestServer, FIXTURE_SIGNALS};
use nexus_auth::login::extract::find_format;

/// Cases per media type in the server property, which covers five media types.
const SERVER_CASES: u32 = 256;

/// Cases per body format in the round-trip properties.
const ROUND_TRIP_CASES: u32 = 1024;

/// Maximum length of a credential value that validation accepts, in characters.
const MAX_FIELD_CHARS: usize = 256;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 512,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------
// Any body gets a complete 2xx or 4xx response.
// ---------------------------------------------------------------------------

/// The boundary of the multipart media type in the server property. Some
/// generated bodies contain its delimiter lines.
const SERVER_BOUNDARY: &str = "proptestBoundary";

/// Byte strings that the body parsers treat specially, joined at random to
/// build bodies that reach deeper into each parser than uniform bytes do.
const BODY_FRAGMENTS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":",
    b"\"signalId\"",
    b"\"signalToken\"",
    b":",
    b",",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"1e999999",
    b"-0",
    b"signalId=",
    b"signalToken=",
    b"fixture-signal",
    b"sgt_FixtureToken0123456789abcdefghijklmnop",
    b"&",
    b"=",
    b"+",
    b"%",
    b"%2",
    b"%zz",
    b"%00",
    b"%C0%AF",
    b"%F0%9F%98%80",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"--proptestBoundary\r\n",
    b"--proptestBoundary--",
    b"--proptestBoundary",
    b"Content-Disposition: form-data; name=\"signalId\"\r\n",
    b"Content-Disposition: form-data; name=\"signalToken\"; filename=\"t\"\r\n",
    b"Content-Type: text/plain\r\n",
    b"\0",
    b"\xc0\xaf",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xff",
    b"\xc3\xa9",
    b"\xf0\x9f\x98\x80",
    b" ",
    b"\t",
];

/// Body bytes: uniform bytes, joined fragments, or a valid JSON login with
/// a few bytes overwritten.
fn arbitrary_body() -> impl Strategy<Value = Vec<u8>> {
    let uniform = proptest::collection::vec(any::<u8>(), 0..4096);
    let fragments = proptest::collection::vec(select(BODY_FRAGMENTS), 0..96)
        .prop_map(|fragments| fragments.concat());
    let (signal_id, token, _) = FIXTURE_SIGNALS[0];
    let valid = serde_json::json!({ "signalId": signal_id, "signalToken": token })
        .to_string()
        .into_bytes();
    let length = valid.len();
    let mutated =
        proptest::collection::vec((0..length, any::<u8>()), 1..8).prop_map(move |edits| {
            let mut body = valid.clone();
            for (position, byte) in edits {
                body[position] = byte;
            }
            body
        });
    prop_oneof![uniform, fragments, mutated]
}

/// Sends `request` on a new connection. The shared client panics when no
/// complete response arrives, and this turns that panic into an error message.
async fn send(server: &TestServer, request: &RawRequest) -> Result<RawResponse, String> {
    AssertUnwindSafe(server.send(request))
        .catch_unwind()
        .await
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_else(|| "the client panicked".to_owned())
        })
}

/// Checks one response: complete, 2xx or 4xx, and a 4xx carries the
/// contract's JSON error.
fn check_any_body_response(result: Result<RawResponse, String>) -> Result<(), TestCaseError> {
    let response = result.map_err(TestCaseError::fail)?;
    let body = String::from_utf8_lossy(&response.body).into_owned();
    prop_assert!(
        (200..300).contains(&response.status) || (400..500).contains(&response.status),
        "status {}: {}",
        response.status,
        body
    );
    if response.status >= 400 {
        let json: serde_json::Value = serde_json::from_slice(&response.body).map_err(|error| {
            TestCaseError::fail(format!("4xx body is not JSON ({error}): {body}"))
        })?;
        prop_assert_eq!(
            &json["success"],
            &serde_json::Value::Bool(false),
            "{}",
            body
        );
        prop_assert!(json["error"]["code"].is_string(), "no error code: {}", body);
    }
    Ok(())
}

#[test]
fn any_body_gets_complete_2xx_or_4xx() {
    let system = actix_web::rt::System::new();
    let server = system.block_on(TestServer::start());
    let multipart = format!("multipart/form-data; boundary={SERVER_BOUNDARY}");
    let media_types: [Option<&str>; 5] = [
        Some("application/json"),
        Some(&multipart),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ];

    for media_type in media_types {
        let mut runner = TestRunner::new(config(SERVER_CASES));
        let result = runner.run(&arbitrary_body(), |body| {
            let request = RawRequest::post("/auth/login", media_type, body);
            check_any_body_response(system.block_on(send(&server, &request)))
        });
        if let Err(error) = result {
            panic!("Content-Type {media_type:?}: {error}");
        }
    }
}

// ---------------------------------------------------------------------------
// Any credential pair survives encoding and extraction.
// ---------------------------------------------------------------------------

/// Pieces of credential values: characters that the formats treat
/// specially, NUL, non-BMP characters, and strings that look like syntax.
const VALUE_PIECES: &[&str] = &[
    "&",
    "=",
    "+",
    "%",
    "%2B",
    "%zz",
    "\r",
    "\n",
    "\r\n",
    "\r\n--",
    "\"",
    "\\",
    "{",
    "}",
    "\0",
    " ",
    ";",
    "signalId=",
    "signalToken=x&",
    "\u{e9}",
    "\u{feff}",
    "\u{fffd}",
    "\u{2028}",
    "\u{10000}",
    "\u{1f600}",
    "\u{10ffff}",
];

/// Generates a credential value of 1 to 256 characters: arbitrary Unicode
/// scalar values mixed with `VALUE_PIECES`.
fn field_value() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => any::<char>().prop_map(String::from),
        2 => select(VALUE_PIECES).prop_map(str::to_owned),
    ];
    proptest::collection::vec(piece, 1..160)
        .prop_map(|pieces| pieces.concat().chars().take(MAX_FIELD_CHARS).collect())
}

fn credential_pair() -> impl Strategy<Value = (String, String)> {
    (field_value(), field_value())
}

/// Encodes `value` as a JSON string. Control characters become `\u00XX`.
/// With `escape_non_ascii`, every non-ASCII character becomes `\uXXXX`
/// escapes, as UTF-16 surrogate pairs outside the BMP.
fn json_string(value: &str, escape_non_ascii: bool) -> String {
    let mut encoded = String::from("\"");
    for character in value.chars() {
        match character {
            '"' => encoded.push_str("\\\""),
            '\\' => encoded.push_str("\\\\"),
            '\n' => encoded.push_str("\\n"),
            character if (character as u32) < 0x20 => {
                write!(encoded, "\\u{:04x}", character as u32).unwrap();
            }
            character if escape_non_ascii && !character.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in character.encode_utf16(&mut units) {
                    write!(encoded, "\\u{unit:04X}").unwrap();
                }
            }
            character => encoded.push(character),
        }
    }
    encoded.push('"');
    encoded
}

fn json_body(signal_id: &str, token: &str, escape_non_ascii: bool, token_first: bool) -> Vec<u8> {
    let id_member = format!("\"signalId\":{}", json_string(signal_id, escape_non_ascii));
    let token_member = format!("\"signalToken\" : {}", json_string(token, escape_non_ascii));
    let members = if token_first {
        [token_member, id_member]
    } else {
        [id_member, token_member]
    };
    format!("{{{}, \"other\":[1,{{}}]}}", members.join(",\n")).into_bytes()
}

/// Choices of a form encoder that the decoders must all accept.
#[derive(Debug, Clone)]
struct PercentStyle {
    /// Encodes a space as `+` rather than `%20`.
    plus_for_space: bool,
    lower_case_hex: bool,
    /// Leaves non-ASCII characters as raw UTF-8 instead of `%XX` bytes.
    raw_non_ascii: bool,
    /// Leaves `=` raw: only the first `=` of a pair separates its key.
    raw_equals: bool,
}

fn percent_style() -> impl Strategy<Value = PercentStyle> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(plus_for_space, lower_case_hex, raw_non_ascii, raw_equals)| PercentStyle {
            plus_for_space,
            lower_case_hex,
            raw_non_ascii,
            raw_equals,
        },
    )
}

/// Percent-encodes `value` for a `key=value` body. Bytes other than ASCII
/// letters, digits and `-._*` become `%XX`, except where `style` keeps them.
fn percent_encode(value: &str, style: &PercentStyle) -> String {
    let mut encoded = String::new();
    for character in value.chars() {
        if style.raw_non_ascii && !character.is_ascii() {
            encoded.push(character);
            continue;
        }
        let mut buffer = [0u8; 4];
        for byte in character.encode_utf8(&mut buffer).bytes() {
            match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    encoded.push(byte as char)
                }
                b'=' if style.raw_equals => encoded.push('='),
                b' ' if style.plus_for_space => encoded.push('+'),
                _ if style.lower_case_hex => write!(encoded, "%{byte:02x}").unwrap(),
                _ => write!(encoded, "%{byte:02X}").unwrap(),
            }
        }
    }
    encoded
}

/// Joins `signalId` and `signalToken` pairs with `separator`, with an
/// unknown pair and empty segments around them.
fn pairs_body(signal_id: &str, token: &str, style: &PercentStyle, separator: &str) -> Vec<u8> {
    let pairs = [
        "unknown=1".to_owned(),
        format!("signalId={}", percent_encode(signal_id, style)),
        String::new(),
        format!("signalToken={}", percent_encode(token, style)),
        String::new(),
    ];
    pairs.join(separator).into_bytes()
}

/// Returns a boundary that occurs in neither value, so that no delimiter
/// line can appear inside a part.
fn boundary_outside(values: &[&str]) -> String {
    (0..100)
        .map(|attempt| format!("proptestBoundary{attempt}x7Q"))
        .find(|boundary| {
            values
                .iter()
                .all(|value| !value.contains(boundary.as_str()))
        })
        .expect("all 100 candidate boundaries occur in the values")
}

fn multipart_body(signal_id: &str, token: &str, boundary: &str, with_filename: bool) -> Vec<u8> {
    let filename = if with_filename {
        "; filename=\"token.txt\""
    } else {
        ""
    };
    let mut body = String::new();
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"signalId\"\r\n\r\n{signal_id}\r\n"
    )
    .unwrap();
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"signalToken\"{filename}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{token}\r\n"
    )
    .unwrap();
    write!(body, "--{boundary}--\r\n").unwrap();
    body.into_bytes()
}

/// Runs the login extractor for `content_type` on `body` and validates the
/// result. Returns the decoded pair, or the error that the server would
/// respond with.
fn extract(content_type: Option<&str>, body: Vec<u8>) -> Result<(String, String), String> {
    let mut headers = HeaderMap::new();
    if let Some(content_type) = content_type {
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
    }
    let format = find_format(&headers).map_err(|error| format!("find_format: {error}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let credentials = runtime
        .block_on(format.extract(&headers, Bytes::from(body)))
        .map_err(|error| format!("{} extract: {error}", format.name))?;
    let valid = credentials
        .validate()
        .map_err(|error| format!("validate: {error}"))?;
    Ok((valid.signal_id, valid.signal_token.expose().clone()))
}

/// Checks that `body` decodes to exactly `signal_id` and `token`.
fn check_round_trip(
    content_type: Option<&str>,
    body: Vec<u8>,
    signal_id: &str,
    token: &str,
) -> Result<(), TestCaseError> {
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let (decoded_id, decoded_token) = extract(content_type, body)
        .map_err(|error| TestCaseError::fail(format!("{error}; body {body_text:?}")))?;
    prop_assert_eq!(decoded_id, signal_id, "signalId; body {:?}", body_text);
    prop_assert_eq!(decoded_token, token, "signalToken; body {:?}", body_text);
    Ok(())
}

proptest! {
    #![proptest_config(config(ROUND_TRIP_CASES))]

    #[test]
    fn json_round_trip(
        (signal_id, token) in credential_pair(),
        escape_non_ascii in any::<bool>(),
        token_first in any::<bool>(),
    ) {
        let body = json_body(&signal_id, &token, escape_non_ascii, token_first);
        check_round_trip(Some("application/json"), body, &signal_id, &token)?;
    }

    #[test]
    fn multipart_round_trip(
        (signal_id, token) in credential_pair(),
        with_filename in any::<bool>(),
        quote_boundary in any::<bool>(),
    ) {
        let boundary = boundary_outside(&[&signal_id, &token]);
        let body = multipart_body(&signal_id, &token, &boundary, with_filename);
        let content_type = if quote_boundary {
            format!("multipart/form-data; boundary=\"{boundary}\"")
        } else {
            format!("multipart/form-data; boundary={boundary}")
        };
        check_round_trip(Some(&content_type), body, &signal_id, &token)?;
    }

    #[test]
    fn text_plain_round_trip(
        (signal_id, token) in credential_pair(),
        style in percent_style(),
        separator in select(&["&", "\n", "\r\n"][..]),
        content_type in select(&[Some("text/plain"), Some("text/plain; charset=utf-8"), None][..]),
    ) {
        let body = pairs_body(&signal_id, &token, &style, separator);
        check_round_trip(content_type, body, &signal_id, &token)?;
    }

    #[test]
    fn form_round_trip(
        (signal_id, token) in credential_pair(),
        style in percent_style(),
    ) {
        let body = pairs_body(&signal_id, &token, &style, "&");
        check_round_trip(Some("application/x-www-form-urlencoded"), body, &signal_id, &token)?;
    }
}
