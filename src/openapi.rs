//! The OpenAPI 3.1 document of the HTTP API (`GET /openapi.json`) and the
//! Swagger UI page that reads it (`GET /docs`).
//!
//! Operations come from the `#[utoipa::path]` attributes on the handlers,
//! and schemas from the types that the handlers serialize, so the document
//! changes with the code. Swagger UI's scripts and styles are compiled into
//! the binary (utoipa-swagger-ui's `vendored` feature), so the page works
//! with no internet access.

use std::sync::{Arc, OnceLock};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse, ResponseError};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::Config;

use crate::error::ApiError;

/// Path of the OpenAPI document.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Path of the Swagger UI page; its files live under `/docs/`.
pub const DOCS_PATH: &str = "/docs";
/// Path of the Swagger UI files as the document names it.
pub const DOCS_FILES_DOCUMENTED_PATH: &str = "/docs/{file}";
/// actix-web's pattern for the same path, which also matches `/` in `file`.
const DOCS_FILES_PATTERN: &str = "/docs/{file:.*}";

/// Name of the bearer security scheme in the document. `GET /auth/session`
/// repeats it as a literal, because utoipa takes no constant there.
pub const BEARER_SCHEME: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "nexus-auth",
        description = "Exchanges a signal's id and API token for a short-lived signed JWT, \
            verifies such tokens, and publishes the public keys that verify them."
    ),
    paths(
        crate::login::post_login,
        crate::login::options,
        crate::session::get_session,
        crate::jwks::get_jwks,
        crate::operations::healthz,
        crate::operations::readyz,
        crate::operations::metrics,
        openapi_json,
        docs_page,
        docs_file,
    ),
    components(schemas(LoginRequest, MultipartLoginRequest, TextLoginBody, JwkSet, Jwk)),
    modifiers(&BearerScheme),
    tags(
        (name = "login", description = "Exchange a signal id and token for a JWT."),
        (name = "tokens", description = "Check tokens and publish the keys that verify them."),
        (name = "operations", description = "Health, readiness, metrics and this documentation."),
    )
)]
struct ApiDoc;

/// Adds the bearer scheme that `GET /auth/session` names.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".to_owned());
        scheme.description = Some(
            "A token from `POST /auth/login`, sent as `Authorization: Bearer <token>` \
             or as the bare token."
                .to_owned(),
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER_SCHEME, SecurityScheme::Http(scheme));
    }
}

/// A login body. Every format carries the same two fields: JSON members,
/// multipart parts, `key=value` pairs in `text/plain`, or form fields.
#[derive(ToSchema)]
#[schema(
    rename_all = "camelCase",
    example = json!({"signalId": "demo", "signalToken": "<signal token>"})
)]
#[allow(dead_code)] // Describes request bodies; the extractors parse them.
pub struct LoginRequest {
    /// The signal's id, 1 to 256 characters.
    #[schema(min_length = 1, max_length = 256)]
    signal_id: String,
    /// The signal's API token, 1 to 256 characters.
    #[schema(min_length = 1, max_length = 256)]
    signal_token: String,
}

/// A `multipart/form-data` login body: parts named `signalId` and
/// `signalToken`, and any other parts, which the server ignores. A part
/// name cannot contain control characters or `"`, because it travels in a
/// part header (RFC 7578 has senders percent-encode `"`), so a body with
/// such a name gets 400.
pub struct MultipartLoginRequest;

impl utoipa::PartialSchema for MultipartLoginRequest {
    fn schema() -> RefOr<Schema> {
        let RefOr::T(Schema::Object(fields)) = LoginRequest::schema() else {
            unreachable!("LoginRequest derives an inline object schema");
        };
        let part_name = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[^\\x00-\\x1f\\x7f\"]*$"));
        ObjectBuilder::from(fields)
            .property_names(Some(part_name))
            .into()
    }
}

impl ToSchema for MultipartLoginRequest {}

/// A `text/plain` login body. The schema describes the `key=value` form
/// with `&` between the pairs. The server also takes the pairs on separate
/// lines, values percent-encoded as in a form, or a JSON object as in
/// `application/json`, which is what `navigator.sendBeacon` sends.
#[derive(ToSchema)]
#[schema(
    value_type = String,
    pattern = "^signalId=[^&%\\r\\n]{1,256}&signalToken=[^&%\\r\\n]{1,256}$"
)]
#[allow(dead_code)] // Describes request bodies; the extractors parse them.
pub struct TextLoginBody(String);

/// The public keys that verify tokens (RFC 7517). Empty with HS256, whose
/// key is secret.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes `keys::KeySet::public_jwks`, built as JSON values.
pub struct JwkSet {
    keys: Vec<Jwk>,
}

/// One public key. Which members appear depends on `kty`: `crv` and `x`
/// for OKP (Ed25519), `crv`, `x` and `y` for EC (P-256), `n` and `e` for RSA.
#[derive(ToSchema)]
#[allow(dead_code)] // See `JwkSet`.
pub struct Jwk {
    /// Key type: `OKP`, `EC` or `RSA`.
    kty: String,
    /// Key id, the `kid` in the header of the tokens this key verifies.
    kid: String,
    /// JWS algorithm: `EdDSA`, `ES256` or `RS256`.
    alg: String,
    /// Always `sig`.
    #[schema(rename = "use")]
    use_: String,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Returns the document as JSON, built once.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document always serializes")
    })
}

/// Registers `/openapi.json`, `/docs` and the Swagger UI files.
pub fn configure(config: &mut web::ServiceConfig) {
    let swagger = Arc::new(
        Config::new([OPENAPI_PATH])
            // Swagger UI would otherwise load a validity badge from
            // validator.swagger.io, the one request that leaves the server.
            .validator_url("none")
            .try_it_out_enabled(true)
            .display_request_duration(true),
    );
    config
        .app_data(web::Data::from(swagger))
        .service(
            web::resource(OPENAPI_PATH)
                .route(web::get().to(openapi_json))
                .default_service(web::to(crate::error::method_not_allowed_get)),
        )
        .service(
            web::resource(DOCS_PATH)
                .route(web::get().to(docs_page))
                .default_service(web::to(crate::error::method_not_allowed_get)),
        )
        .service(
            web::resource(DOCS_FILES_PATTERN)
                .route(web::get().to(docs_file))
                .default_service(web::to(crate::error::method_not_allowed_get)),
        );
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "This document.", content_type = "application/json",
            body = Object),
        (status = 405, description = "Any method but GET.", body = crate::error::ErrorBody,
            headers(("Allow" = String, description = "`GET`"))),
    )
)]
pub(crate) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}

/// Redirects to `/docs/`, so that the page's relative links to its scripts
/// and styles resolve under `/docs/`.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    responses(
        (status = 308, description = "The page is at `/docs/`.",
            headers(("Location" = String, description = "`/docs/`"))),
        (status = 405, description = "Any method but GET.", body = crate::error::ErrorBody,
            headers(("Allow" = String, description = "`GET`"))),
    )
)]
pub(crate) async fn docs_page() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, HeaderValue::from_static("/docs/")))
        .finish()
}

/// The Swagger UI page (`/docs/`) and its scripts and styles, served from
/// the binary. The page reads `/openapi.json` and sends its "Try it out"
/// requests to this server.
#[utoipa::path(
    get,
    path = "/docs/{file}",
    tag = "operations",
    params(("file" = String, Path,
        description = "A file of the page; empty for `index.html`.")),
    responses(
        (status = 200, description = "The file.", content(
            ("text/html"), ("text/javascript"), ("text/css"), ("image/png"))),
        (status = 404, description = "No such file.", body = crate::error::ErrorBody),
        (status = 405, description = "Any method but GET.", body = crate::error::ErrorBody,
            headers(("Allow" = String, description = "`GET`"))),
    )
)]
pub(crate) async fn docs_file(
    file: web::Path<String>,
    swagger: web::Data<Config<'static>>,
) -> HttpResponse {
    match utoipa_swagger_ui::serve(&file, swagger.into_inner()) {
        Ok(Some(file)) => HttpResponse::Ok()
            .content_type(file.content_type)
            .insert_header((
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ))
            .body(file.bytes.into_owned()),
        Ok(None) => ApiError::NotFound.error_response(),
        Err(error) => {
            log::error!("serving a Swagger UI file failed: {error}");
            ApiError::Internal.error_response()
        }
    }
}
