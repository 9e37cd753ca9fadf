//! `application/json` bodies: the whole input is the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_auth_fuzz::{
    check_extraction, check_json, extract, format_of, headers_with_content_type, JSON,
};

fuzz_target!(|body: &[u8]| {
    let headers = headers_with_content_type(JSON.as_bytes()).unwrap();
    let result = extract(format_of(&headers), &headers, body);
    let valid = check_extraction(&result);
    check_json(body, &result, valid.as_ref());
});
