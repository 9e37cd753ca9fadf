//! `application/x-www-form-urlencoded`: `signalId=...&signalToken=...`, as
//! `curl -d` and OAuth clients send it.

use actix_web::http::header::HeaderMap;
use actix_web::web::Bytes;
use futures_util::future::{ready, FutureExt, LocalBoxFuture};

use super::{pairs, BodyFormat};
use crate::error::ApiError;
use crate::login::credentials::Credentials;

pub const FORMAT: BodyFormat = BodyFormat {
    media_type: "application/x-www-form-urlencoded",
    name: "form",
    extract,
};

fn extract(
    _headers: &HeaderMap,
    body: Bytes,
) -> LocalBoxFuture<'static, Result<Credentials, ApiError>> {
    ready(super::utf8(&body).and_then(parse)).boxed_local()
}

fn parse(text: &str) -> Result<Credentials, ApiError> {
    let mut credentials = Credentials::default();
    for segment in text.split('&') {
        pairs::insert_pair(&mut credentials, segment)?;
    }
    Ok(credentials)
}
