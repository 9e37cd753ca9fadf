//! `application/x-www-form-urlencoded` bodies: the whole input is the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_auth_fuzz::{
    check_extraction, check_form, extract, format_of, headers_with_content_type, FORM_URLENCODED,
};

fuzz_target!(|body: &[u8]| {
    let headers = headers_with_content_type(FORM_URLENCODED.as_bytes()).unwrap();
    let result = extract(format_of(&headers), &headers, body);
    check_extraction(&result);
    check_form(body, &result);
});
