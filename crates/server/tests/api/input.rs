//! Input PostgreSQL cannot store is refused where the body is read: a NUL character anywhere
//! in a JSON body, named by its path.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::util::{TestApp, assert_error};

/// A `422 VALIDATION_ERROR` that names exactly `paths`.
fn assert_refused_at(status: StatusCode, body: &Value, paths: &[&str]) {
    assert_error(status, body, 422, "VALIDATION_ERROR");
    let named: Vec<&str> = body["errors"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(named, paths, "{body}");
}

#[tokio::test]
async fn a_nul_anywhere_in_a_body_is_refused_with_its_path() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let key = &account.key;
    let cases = [
        // A top-level value.
        (
            "/api/ai/generate-reply",
            json!({ "assistant_id": 1, "customer_identifier": "c1", "message": "Hi\u{0}" }),
            vec!["message"],
        ),
        // A nested value, and one in an array's object.
        (
            "/api/user/assistant",
            json!({ "name": "Ada", "variables": { "city": "Ber\u{0}lin" } }),
            vec!["variables.city"],
        ),
        (
            "/api/user/tools",
            json!({ "name": "lookup", "description": "Looks up", "endpoint": "https://crm.example.com/x",
                    "method": "GET", "headers": [{ "name": "X-A", "value": "1" }, { "name": "X-B", "value": "\u{0}" }] }),
            vec!["headers[1].value"],
        ),
        // Object keys, nested and at the top.
        (
            "/api/user/assistant",
            json!({ "name": "Ada", "variables": { "ci\u{0}ty": "Berlin" } }),
            vec!["variables"],
        ),
        (
            "/api/user/assistant",
            json!({ "name": "Ada", "na\u{0}me": "Ada" }),
            vec!["body"],
        ),
        // Array elements, nested and at the top; every NUL is named.
        (
            "/api/user/widgets",
            json!({ "assistant_id": 1, "allowed_origins": ["https://a.example.com", "https://b.example.com\u{0}"] }),
            vec!["allowed_origins[1]"],
        ),
        (
            "/api/user/assistant",
            json!(["Ada", "\u{0}", { "name": "\u{0}" }]),
            vec!["body[1]", "body[2].name"],
        ),
    ];
    for (path, body, paths) in cases {
        let (status, answer, _) = app.post(key, path, &body).await;
        assert_refused_at(status, &answer, &paths);
        let message = &answer["errors"][paths[0]][0];
        assert!(
            message.as_str().unwrap().contains("NUL characters"),
            "{answer}"
        );
    }
    for table in ["assistants", "tools", "widgets", "conversations"] {
        assert_eq!(app.count(table).await, 0, "{table}");
    }
}

/// Found by schemathesis: a NUL in a parameter's description reached PostgreSQL, a 500.
#[tokio::test]
async fn a_nul_in_a_tool_parameters_description_is_refused_on_update() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let tool = json!({
        "name": "check_calendar", "description": "Free slots", "endpoint": "https://crm.example.com/slots",
        "method": "GET", "schema": [{ "name": "date", "type": "string", "description": "YYYY-MM-DD" }]
    });
    let (status, created, _) = app.post(&account.key, "/api/user/tools", &tool).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let path = format!("/api/user/tools/{}", created["data"]["id"]);
    let update =
        json!({ "schema": [{ "name": "date", "type": "string", "description": "YYYY\u{0}MM" }] });
    let (status, answer, _) = app.put(&account.key, &path, &update).await;
    assert_refused_at(status, &answer, &["schema[0].description"]);
    let (_, got, _) = app.get(&account.key, &path).await;
    assert_eq!(got["data"], created["data"]);
}

/// Only a NUL is refused: the text `\u0000` (an escaped backslash before `u0000`) is stored.
#[tokio::test]
async fn text_that_only_looks_like_a_nul_is_taken() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (status, created, _) = app
        .post(
            &account.key,
            "/api/user/assistant",
            &json!({ "name": r"Ada \u0000" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["data"]["name"], r"Ada \u0000");
}

/// Found by schemathesis: the endpoints the document's pattern allowed were mostly refused.
/// Its pattern now allows only what is taken; these are at its edges.
#[tokio::test]
async fn endpoints_the_document_allows_are_taken() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let endpoints = [
        "http://a",
        "https://-a-.0.b-:9999/",
        "https://x.y1:0/[]{}|\\^%zz%`~!?#",
        "http://A-1.Example.COM/a?b=c#d",
    ];
    for (i, endpoint) in endpoints.into_iter().enumerate() {
        let name = format!("tool_{}", "x".repeat(i + 1));
        let body =
            json!({ "name": name, "description": "d", "endpoint": endpoint, "method": "GET" });
        let (status, answer, _) = app.post(&account.key, "/api/user/tools", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{endpoint}: {answer}");
    }
}

/// Found by schemathesis: a widget's origins were documented as any strings, and mostly
/// refused. The document's pattern now allows only what is taken; these are at its edges.
#[tokio::test]
async fn origins_the_document_allows_are_taken() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "Shop" })).await;
    let document = anyreply_server::openapi::document();
    let origins =
        &document["components"]["schemas"]["WidgetInput"]["properties"]["allowed_origins"];
    assert!(origins["items"]["pattern"].is_string(), "{origins}");
    let body = json!({ "assistant_id": assistant, "allowed_origins": ["http://a", "https://-.A-9:99999", "https://x.y"] });
    let (status, answer, _) = app.post(&account.key, "/api/user/widgets", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// The document says what the server refuses: a webhook's events each once.
#[tokio::test]
async fn webhook_events_are_documented_and_checked_unique() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let document = anyreply_server::openapi::document();
    let events = &document["components"]["schemas"]["WebhookInput"]["properties"]["events"];
    assert_eq!(events["uniqueItems"], true, "{events}");
    let body = json!({ "url": "https://crm.example.com/hook", "events": ["reply.created", "reply.created"] });
    let (status, answer, _) = app.post(&account.key, "/api/user/webhooks", &body).await;
    assert_refused_at(status, &answer, &["events.1"]);
}
