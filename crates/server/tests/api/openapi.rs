//! The OpenAPI document: committed and current, complete, served at `/openapi.json`, and
//! browsable at `/docs` with assets from the server itself.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use anyreply_core::ErrorCode;
use anyreply_server::openapi;
use reqwest::StatusCode;
use serde_json::{Value, json};

use utoipa::OpenApi;

use crate::util::{TestApp, assert_error};

fn document() -> Value {
    openapi::document()
}

/// `(method, path)` of every operation in `document`.
fn operations(document: &Value) -> Vec<(String, String)> {
    let paths = document["paths"].as_object().unwrap();
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|key| key.as_str() != "parameters")
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect()
}

#[test]
fn the_committed_openapi_json_is_current() {
    let committed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json");
    let current = openapi::document_text();
    if std::env::var_os("ANYREPLY_UPDATE_OPENAPI").is_some() {
        std::fs::write(&committed, &current).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&committed).unwrap_or_default();
    assert!(
        on_disk == current,
        "openapi.json is not the document the code generates; regenerate it with \
         `ANYREPLY_UPDATE_OPENAPI=1 cargo test -p anyreply-server --test api openapi` and commit it"
    );
}

#[test]
fn the_error_code_schema_lists_every_code() {
    let listed: Vec<String> =
        serde_json::from_value(document()["components"]["schemas"]["ErrorCode"]["enum"].clone())
            .unwrap();
    let every: Vec<String> = ErrorCode::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(listed, every);
}

/// Every code an error answer names is one that answers with that status, and every code is
/// named by some operation (but `METHOD_NOT_ALLOWED`, the answer of a route's unknown method).
#[test]
fn error_answers_name_their_codes_under_the_right_status() {
    let document = document();
    let mut named = HashSet::new();
    for (method, path) in operations(&document) {
        let responses = document["paths"][&path][&method]["responses"]
            .as_object()
            .unwrap();
        for (status, response) in responses {
            if !status.starts_with(['4', '5']) {
                continue;
            }
            let schema = &response["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(
                schema, "#/components/schemas/ErrorBody",
                "{method} {path} {status}"
            );
            let description = response["description"].as_str().unwrap();
            let codes: Vec<&ErrorCode> = description
                .split('`')
                .skip(1)
                .step_by(2)
                .filter_map(|name| ErrorCode::ALL.iter().find(|code| code.as_str() == name))
                .collect();
            assert!(!codes.is_empty(), "{method} {path} {status}: no code named");
            for code in codes {
                assert_eq!(
                    code.http_status().to_string(),
                    *status,
                    "{method} {path}: {code}"
                );
                named.insert(*code);
            }
        }
    }
    let unnamed: Vec<_> = ErrorCode::ALL
        .iter()
        .filter(|code| !named.contains(*code) && **code != ErrorCode::MethodNotAllowed)
        .collect();
    assert!(unnamed.is_empty(), "no operation names {unnamed:?}");
}

#[test]
fn every_answer_documents_the_request_id_and_every_retryable_one_retry_after() {
    let document = document();
    for (method, path) in operations(&document) {
        let operation = &document["paths"][&path][&method];
        for (status, response) in operation["responses"].as_object().unwrap() {
            let headers = response["headers"].as_object().unwrap();
            assert!(
                headers.contains_key("X-Request-Id"),
                "{method} {path} {status}"
            );
            let retryable = ErrorCode::ALL
                .iter()
                .any(|code| code.is_retryable() && code.http_status().to_string() == *status);
            assert_eq!(
                headers.contains_key("Retry-After"),
                retryable,
                "{method} {path} {status}"
            );
        }
    }
}

/// The routes `router.rs` declares, read from its source so that a new one cannot be missed.
fn declared_routes() -> BTreeSet<String> {
    include_str!("../../src/router.rs")
        .split(".route(")
        .skip(1)
        .filter_map(|call| call.split('"').nth(1).map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn openapi_json_is_served_and_describes_every_route() {
    let app = TestApp::spawn().await;
    let response = reqwest::get(format!("{}/openapi.json", app.base))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let served: Value = response.json().await.unwrap();
    assert!(
        served["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        served["openapi"]
    );
    assert_eq!(served, document());

    let documented: BTreeSet<String> = served["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let missing: Vec<_> = declared_routes().difference(&documented).cloned().collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );

    // Each documented operation is routed: without a key it is refused for that (before its
    // id is read), or answers, but never falls through to "no such route" or "no such method".
    for (method, path) in operations(&served) {
        let url = format!("{}{}", app.base, path.replace("{id}", "1"));
        let method: reqwest::Method = method.to_uppercase().parse().unwrap();
        let response = app.http.request(method.clone(), &url).send().await.unwrap();
        // Not every answer is JSON (`/metrics` is text): only an envelope can say "no route".
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let code = body["error_code"].as_str().unwrap_or("none");
        assert!(
            !matches!(code, "NOT_FOUND" | "METHOD_NOT_ALLOWED"),
            "{method} {url}: {code}"
        );
    }
}

#[tokio::test]
async fn docs_is_a_page_whose_assets_come_from_the_server() {
    let app = TestApp::spawn().await;
    let response = reqwest::get(format!("{}/docs", app.base)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.url().path(), "/docs/");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();

    let assets: Vec<&str> = ["src=\"", "href=\""]
        .iter()
        .flat_map(|attribute| page.split(attribute).skip(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(assets.len() >= 3, "{page}");
    for asset in assets {
        assert!(
            !asset.contains("//"),
            "{asset} is loaded from elsewhere than the server"
        );
        let url = format!("{}/docs/{}", app.base, asset.trim_start_matches("./"));
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let text = response.text().await.unwrap();
        if asset.contains("initializer") {
            assert!(text.contains("/openapi.json"), "{text}");
        }
    }
}

/// The fields the document requires on create are those the server requires: each create's
/// example succeeds, and fails on exactly that field when one is left out.
#[tokio::test]
async fn create_bodies_require_what_the_server_requires() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let document = document();
    for (path, fields) in openapi::REQUIRED_ON_CREATE {
        let content =
            &document["paths"][path]["post"]["requestBody"]["content"]["application/json"];
        assert_eq!(
            content["schema"]["allOf"][1]["required"],
            json!(fields),
            "{path}"
        );
        let example = &content["example"];
        for field in fields {
            let mut body = example.clone();
            body.as_object_mut().unwrap().remove(*field);
            let (status, answer, _) = app.post(&account.key, path, &body).await;
            assert_error(status, &answer, 422, "VALIDATION_ERROR");
            let named: Vec<_> = answer["errors"].as_object().unwrap().keys().collect();
            assert_eq!(named, [field], "{path}");
        }
        let (status, answer, _) = app.post(&account.key, path, example).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
    }
}

/// Every link is in the document, from an answer its operation gives, to an operation that
/// takes what the link sets.
#[test]
fn links_join_operations_that_exist() {
    let document = document();
    let operations = operations(&document);
    let find = |id: &str| {
        operations
            .iter()
            .map(|(method, path)| &document["paths"][path][method])
            .find(|operation| operation["operationId"] == id)
            .unwrap_or_else(|| panic!("no operation {id}"))
    };
    // `document_text` renames these keys of links: nothing else may have them.
    let raw = openapi::ApiDoc::openapi().to_pretty_json().unwrap();
    let body_links = openapi::LINKS
        .iter()
        .filter(|link| link.4.starts_with("body."))
        .count();
    assert_eq!(
        raw.matches("\"operation_id\": ").count(),
        openapi::LINKS.len()
    );
    assert_eq!(raw.matches("\"request_body\": ").count(), body_links);
    for (from, status, name, to, parameter, expression) in openapi::LINKS {
        let link = &find(from)["responses"][status]["links"][name];
        assert_eq!(link["operationId"], to, "{from} {status} {name}");
        let target = find(to);
        match parameter.split_once('.').unwrap() {
            ("body", field) => {
                assert_eq!(link["requestBody"][field], expression, "{name}");
                let schema = &target["requestBody"]["content"]["application/json"]["schema"];
                let name_ref = schema["$ref"].as_str().unwrap();
                let schema_name = name_ref.rsplit('/').next().unwrap();
                let properties = &document["components"]["schemas"][schema_name]["properties"];
                assert!(properties.get(field).is_some(), "{to} takes no {field}");
            }
            (place, param) => {
                assert_eq!(link["parameters"][parameter], expression, "{name}");
                let taken = target["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["in"] == place && p["name"] == param);
                assert!(taken, "{to} takes no {parameter}");
            }
        }
    }
}

/// Found by schemathesis: an empty body to the widget's messages answered `400`, which its
/// operation did not list. Every operation with a body lists what reading one may refuse.
#[test]
fn every_operation_with_a_body_documents_what_reading_it_refuses() {
    let document = document();
    for (method, path) in operations(&document) {
        let operation = &document["paths"][&path][&method];
        if operation.get("requestBody").is_none() {
            continue;
        }
        for status in ["400", "413", "422"] {
            assert!(
                operation["responses"].get(status).is_some(),
                "{method} {path} {status}"
            );
        }
    }
}

#[tokio::test]
async fn a_widget_message_without_a_body_is_invalid_json() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "Shop" })).await;
    let origin = "https://shop.example.com";
    let (_, widget, _) = app
        .post(
            &account.key,
            "/api/user/widgets",
            &json!({ "assistant_id": assistant, "allowed_origins": [origin] }),
        )
        .await;
    let response = app
        .http
        .post(format!("{}/api/widget/messages", app.base))
        .bearer_auth(widget["data"]["public_key"].as_str().unwrap())
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_error(status, &body, 400, "INVALID_JSON");
    let documented = &document()["paths"]["/api/widget/messages"]["post"]["responses"]["400"];
    assert!(
        documented["description"]
            .as_str()
            .unwrap()
            .contains("INVALID_JSON")
    );
}
