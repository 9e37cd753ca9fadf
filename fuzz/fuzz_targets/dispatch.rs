//! Format selection and extraction together, as the login handler runs
//! them. The input is `CONTENT-TYPE\nBODY`: the bytes before the first `\n`
//! are the `Content-Type` value (any bytes), and the rest is the body.
//! Without a `\n`, the whole input is the value and the body is empty.
//!
//! The value loses the spaces and tabs around it, as it does in actix-web's
//! HTTP/1 parser. Values that no HTTP header may carry are skipped, because
//! actix-web rejects them before the handler runs. A request without
//! `Content-Type` is read as text/plain, which the `text_plain` target covers.

#![no_main]

use actix_web::http::StatusCode;
use actix_web::ResponseError;
use libfuzzer_sys::fuzz_target;
use nexus_auth::error::ApiError;
use nexus_auth::login::extract::find_format;
use nexus_auth_fuzz::{
    check_format, headers_with_content_type, split_first_line, trim_header_value, FORM_URLENCODED,
    JSON, MULTIPART, TEXT_PLAIN,
};

const MEDIA_TYPES: [&str; 4] = [JSON, MULTIPART, TEXT_PLAIN, FORM_URLENCODED];

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = split_first_line(data).unwrap_or((data, &[]));
    let content_type = trim_header_value(content_type);
    let Some(headers) = headers_with_content_type(content_type) else {
        return;
    };

    // The media type is what precedes the first `;`, without the spaces and
    // tabs around it.
    let essence = trim_header_value(content_type.split(|&byte| byte == b';').next().unwrap());
    let has_parameters = content_type.contains(&b';');

    let format = match find_format(&headers) {
        Ok(format) => format,
        Err(error) => {
            assert!(
                matches!(error, ApiError::UnsupportedMediaType(_)),
                "find_format returned {error:?} instead of unsupported-media-type"
            );
            assert_eq!(error.status_code(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert_eq!(error.code(), "unsupported-media-type");
            assert!(
                has_parameters
                    || !MEDIA_TYPES
                        .iter()
                        .any(|known| known.as_bytes().eq_ignore_ascii_case(essence)),
                "find_format rejected the accepted media type {:?}",
                String::from_utf8_lossy(content_type)
            );
            return;
        }
    };
    assert!(
        format.media_type.as_bytes().eq_ignore_ascii_case(essence),
        "find_format chose {} for Content-Type {:?}",
        format.media_type,
        String::from_utf8_lossy(content_type)
    );

    check_format(format, &headers, body);
});
