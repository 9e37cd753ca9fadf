//! `multipart/form-data` bodies. The input is `BOUNDARY\nBODY`: the bytes
//! before the first `\n` become the `boundary` parameter, verbatim (so the
//! fuzzer can also quote it or add parameters after it), and the rest is the
//! body. A boundary from the input, rather than a fixed one, lets seeds keep
//! the boundaries that real clients generate and lets the fuzzer reach the
//! boundary checks and the header parser. Inputs without `\n`, with a first
//! line over the 70 bytes that RFC 2046 allows a boundary, or with bytes that
//! a header cannot carry are skipped. A `Content-Type` that the boundary makes
//! unparsable must get a 415 before any extraction.

#![no_main]

use actix_web::http::StatusCode;
use actix_web::ResponseError;
use libfuzzer_sys::fuzz_target;
use nexus_auth::error::ApiError;
use nexus_auth::login::extract::find_format;
use nexus_auth_fuzz::{
    check_extraction, check_multipart, extract, headers_with_content_type, split_first_line,
    MAX_BOUNDARY_LEN, MULTIPART,
};

fuzz_target!(|data: &[u8]| {
    let Some((boundary, body)) = split_first_line(data) else {
        return;
    };
    if boundary.len() > MAX_BOUNDARY_LEN {
        return;
    }
    let content_type = [format!("{MULTIPART}; boundary=").as_bytes(), boundary].concat();
    let Some(headers) = headers_with_content_type(&content_type) else {
        return;
    };

    let format = match find_format(&headers) {
        Ok(format) => format,
        Err(error) => {
            assert!(
                matches!(error, ApiError::UnsupportedMediaType(_)),
                "find_format returned {error:?} instead of unsupported-media-type"
            );
            assert_eq!(error.status_code(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
            return;
        }
    };
    assert_eq!(format.media_type, MULTIPART);

    let result = extract(format, &headers, body);
    let valid = check_extraction(&result);
    check_multipart(body, valid.as_ref());
});
