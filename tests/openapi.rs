//! The OpenAPI document and the `/docs` page. The document is valid
//! OpenAPI 3.1 and names every route the server registers. Each documented
//! operation returns a documented status, and the binary serves every file
//! of the page.
//!
//! `schemas/openapi-3.1.json` is the OpenAPI Initiative's JSON Schema for
//! 3.1 documents (https://spec.openapis.org/oas/3.1/schema/2022-10-07,
//! Apache-2.0). It checks the document's structure; the schemas inside it
//! are checked against the JSON Schema 2020-12 meta-schema.

mod common;

use std::collections::BTreeSet;

use common::{RawRequest, TestServer, FIXTURE_SIGNALS};
use nexus_auth::server::ROUTE_PATHS;
use serde_json::Value;

const OPENAPI_SCHEMA: &str = include_str!("schemas/openapi-3.1.json");

async fn fetch_document(server: &TestServer) -> Value {
    let response = server.send(&RawRequest::get("/openapi.json")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    response.json()
}

#[actix_web::test]
async fn document_is_valid_openapi() {
    let server = TestServer::start().await;
    let document = fetch_document(&server).await;

    let schema: Value = serde_json::from_str(OPENAPI_SCHEMA).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "invalid OpenAPI document: {errors:#?}");
    let mut broken = document.clone();
    broken["paths"]["/healthz"]["get"]["responses"] = "none".into();
    assert!(
        !validator.is_valid(&broken),
        "the validator accepts a document whose responses are a string"
    );
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1."));

    let schemas = document["components"]["schemas"].as_object().unwrap();
    for name in [
        "LoginRequest",
        "LoginResponse",
        "SessionResponse",
        "ErrorBody",
        "JwkSet",
    ] {
        assert!(schemas.contains_key(name), "no schema named {name}");
    }
    for (name, schema) in schemas {
        let mut schema = schema.clone();
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema".into();
        if let Err(error) = jsonschema::meta::validate(&schema) {
            panic!("schema {name} is not valid JSON Schema 2020-12: {error}");
        }
    }
}

#[actix_web::test]
async fn document_lists_every_route() {
    let server = TestServer::start().await;
    let document = fetch_document(&server).await;

    let documented: BTreeSet<&str> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let registered: BTreeSet<&str> = ROUTE_PATHS.into_iter().collect();
    assert_eq!(documented, registered);

    let login = &document["paths"]["/auth/login"]["post"]["requestBody"]["content"];
    for media_type in [
        "application/json",
        "multipart/form-data",
        "text/plain",
        "application/x-www-form-urlencoded",
    ] {
        assert!(
            login.get(media_type).is_some(),
            "login body {media_type} is not documented"
        );
    }
}

/// Sends each documented operation once and checks that the server
/// responds with one of the statuses documented for it, so that a path in
/// the document is a path the server serves.
#[actix_web::test]
async fn documented_operations_answer_documented_statuses() {
    let server = TestServer::start().await;
    let document = fetch_document(&server).await;
    let token = server
        .login(FIXTURE_SIGNALS[0].0, FIXTURE_SIGNALS[0].1)
        .await;

    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let concrete_path = path.replace("{file}", "index.html");
            let mut request = match method.as_str() {
                "post" => {
                    let mut request =
                        RawRequest::login_json(FIXTURE_SIGNALS[0].0, FIXTURE_SIGNALS[0].1);
                    request.path = concrete_path;
                    request
                }
                "get" => RawRequest::get(&concrete_path),
                "options" => {
                    let mut request = RawRequest::get(&concrete_path);
                    request.method = "OPTIONS".to_owned();
                    request
                }
                other => panic!("{path}: no request written for method {other}"),
            };
            if operation.get("security").is_some() {
                request.headers = RawRequest::session(&token).headers;
            }
            let response = server.send(&request).await;

            let documented = operation["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&response.status.to_string()),
                "{method} {path} answered {}, not a documented status",
                response.status
            );
            assert!(
                response.status < 400,
                "{method} {path} answered {} to a valid request",
                response.status
            );
        }
    }
}

#[actix_web::test]
async fn docs_page_is_served_by_the_binary() {
    let server = TestServer::start().await;

    let redirect = server.send(&RawRequest::get("/docs")).await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some("/docs/"));

    let page = server.send(&RawRequest::get("/docs/")).await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = String::from_utf8(page.body).unwrap();

    // Every script and style the page loads is a relative path under
    // /docs/, and each one is served.
    let mut linked = 0;
    for attribute in ["src=\"", "href=\""] {
        for (start, _) in html.match_indices(attribute) {
            let rest = &html[start + attribute.len()..];
            let target = &rest[..rest.find('"').unwrap()];
            assert!(
                !target.contains("//"),
                "the page loads {target} from another host"
            );
            let path = format!("/docs/{}", target.trim_start_matches("./"));
            let file = server.send(&RawRequest::get(&path)).await;
            assert_eq!(file.status, 200, "{path}");
            assert!(!file.body.is_empty(), "{path} is empty");
            linked += 1;
        }
    }
    assert!(linked >= 4, "the page links only {linked} files");

    let initializer = server
        .send(&RawRequest::get("/docs/swagger-initializer.js"))
        .await;
    let script = String::from_utf8(initializer.body).unwrap();
    assert!(script.contains("\"url\": \"/openapi.json\""), "{script}");
    assert!(
        script.contains("\"validatorUrl\": \"none\""),
        "the page would load a badge from validator.swagger.io: {script}"
    );

    let missing = server.send(&RawRequest::get("/docs/no-such-file.js")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "not-found");
}
