//! `text/plain` bodies: the whole input is the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_auth_fuzz::{
    check_extraction, check_text, extract, format_of, headers_with_content_type, TEXT_PLAIN,
};

fuzz_target!(|body: &[u8]| {
    let headers = headers_with_content_type(TEXT_PLAIN.as_bytes()).unwrap();
    let result = extract(format_of(&headers), &headers, body);
    check_extraction(&result);
    check_text(body, &result);
});
