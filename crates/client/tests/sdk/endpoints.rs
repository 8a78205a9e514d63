//! Each endpoint's request, as the server expects it, and its typed answer.

use anyreply_client::{AssistantInput, Error, ErrorCode, ListConversationsQuery, PageQuery, Uuid};
use futures::TryStreamExt;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{client, fast_policy, reply_body, request};

#[tokio::test]
async fn generate_reply_sends_the_key_and_the_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/ai/generate-reply"))
        .and(header(
            "authorization",
            "Bearer ark_test_key_that_must_never_be_printed",
        ))
        .and(body_json(
            json!({ "assistant_id": 1, "customer_identifier": "+49155551234", "message": "Hi" }),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(reply_body()))
        .mount(&server)
        .await;
    let reply = client(&server, fast_policy())
        .generate_reply(&request())
        .await
        .unwrap();
    assert_eq!(reply.reply, "Hello!");
    assert!(!reply.ai_disabled);
}

#[tokio::test]
async fn the_key_is_never_printed() {
    let server = MockServer::start().await;
    let sdk = client(&server, fast_policy());
    let printed = format!("{sdk:?}");
    assert!(!printed.contains("must_never_be_printed"), "{printed}");
    assert!(printed.contains("redacted"));
}

#[tokio::test]
async fn validation_errors_carry_their_fields() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "success": false, "status": false, "message": "The given data was invalid", "error": "The given data was invalid",
            "error_code": "VALIDATION_ERROR", "errors": { "message": ["The message field is required."] }
        })))
        .mount(&server)
        .await;
    let error = client(&server, fast_policy())
        .generate_reply(&request())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::ValidationError));
    assert_eq!(
        error.api().unwrap().field_errors["message"],
        ["The message field is required."]
    );
    assert_eq!(
        error.to_string(),
        "VALIDATION_ERROR: The given data was invalid; message: The message field is required."
    );
}

#[tokio::test]
async fn an_answer_that_is_not_the_envelope_still_reports_its_status() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403).set_body_string("<html>Forbidden</html>"))
        .mount(&server)
        .await;
    let error = client(&server, fast_policy()).me().await.unwrap_err();
    let api = error.api().unwrap();
    assert_eq!((api.status, api.code), (403, None));
    assert!(api.message.contains("Forbidden"));
    assert!(matches!(error, Error::Api(_)));
}

#[tokio::test]
async fn conversations_stream_page_after_page() {
    let server = MockServer::start().await;
    let summary = |n: u32| {
        json!({
            "id": Uuid::from_u128(u128::from(n)), "assistant_id": 1, "type": "api", "variables": {}, "message_count": 2,
            "total_cost": 0.002, "ai_enabled": true, "external_identifier": format!("c{n}"),
            "created_at": "2026-11-25T09:00:00Z", "updated_at": "2026-11-25T09:00:00Z"
        })
    };
    let page = |data: Vec<serde_json::Value>, next: Option<&str>| json!({ "data": data, "path": "/api/user/conversations", "per_page": 2, "next_cursor": next, "prev_cursor": null });
    Mock::given(method("GET"))
        .and(path("/api/user/conversations"))
        .and(query_param("cursor", "page-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(vec![summary(3)], None)))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/user/conversations"))
        .and(query_param("per_page", "2"))
        .and(query_param("assistant_id", "1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(page(vec![summary(1), summary(2)], Some("page-2"))),
        )
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    let query = ListConversationsQuery {
        assistant_id: Some(1),
        per_page: Some(2),
        ..Default::default()
    };
    let all: Vec<_> = sdk
        .conversations()
        .stream(query)
        .try_collect()
        .await
        .unwrap();
    let customers: Vec<_> = all.iter().map(|c| c.external_identifier.as_str()).collect();
    assert_eq!(customers, ["c1", "c2", "c3"]);
    assert_eq!(all[0].total_cost, "0.002".parse().unwrap());
}

#[tokio::test]
async fn assistants_are_created_with_a_key_and_put_without_one() {
    let server = MockServer::start().await;
    let assistant = json!({
        "id": 7, "name": "Support", "system_prompt": "", "initial_message": null, "variables": {},
        "llm_model": "gpt-4o-mini", "llm_temperature": 0.7, "llm_provider": "openai",
        "fallback_llm_model": null, "fallback_llm_provider": null, "tool_ids": [],
        "created_at": "2026-11-25T09:00:00Z", "updated_at": "2026-11-25T09:00:00Z"
    });
    Mock::given(method("POST"))
        .and(path("/api/user/assistant"))
        .and(body_json(json!({ "name": "Support" })))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({ "status": true, "data": assistant })),
        )
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/user/assistant/7"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "status": true, "data": assistant })),
        )
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    let created = sdk
        .assistants()
        .create(&AssistantInput {
            name: Some("Support".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.id, 7);
    sdk.assistants()
        .update(
            7,
            &AssistantInput {
                llm_temperature: Some(0.2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let received = server.received_requests().await.unwrap();
    assert!(received[0].headers.contains_key("idempotency-key"));
    assert!(!received[1].headers.contains_key("idempotency-key"));
}

fn tool(id: i64) -> serde_json::Value {
    json!({
        "id": id, "name": format!("tool_{id}"), "description": "d", "endpoint": "https://crm.example.com",
        "method": "GET", "timeout": 5, "headers": [], "schema": [],
        "created_at": "2026-11-25T09:00:00Z", "updated_at": "2026-11-25T09:00:00Z"
    })
}

#[tokio::test]
async fn tool_lists_follow_next_cursor_and_a_page_says_where_the_next_starts() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/user/tools"))
        .and(query_param("cursor", "after-2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "data": [tool(3)], "next_cursor": null })),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/user/tools"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "data": [tool(1), tool(2)], "next_cursor": "after-2" })),
        )
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    // `list` reads every page; it can run on another task.
    let spawned = sdk.clone();
    let all = tokio::spawn(async move { spawned.tools().list().await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), [1, 2, 3]);

    let query = PageQuery {
        per_page: Some(2),
        ..Default::default()
    };
    let first = sdk.tools().page(&query).await.unwrap();
    assert_eq!(first.data.len(), 2);
    assert_eq!(first.next_cursor.as_deref(), Some("after-2"));
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.last().unwrap().url.query(), Some("per_page=2"));
    let rest = sdk
        .tools()
        .page(&PageQuery {
            cursor: first.next_cursor,
            ..query
        })
        .await
        .unwrap();
    assert_eq!((rest.data[0].id, rest.next_cursor), (3, None));
}

#[tokio::test]
async fn assistant_lists_read_unpaged_answers_and_stop_on_a_repeated_cursor() {
    let server = MockServer::start().await;
    let assistant = |id: i64| {
        json!({
            "id": id, "name": "Support", "system_prompt": "", "initial_message": null, "variables": {},
            "llm_model": "gpt-4o-mini", "llm_temperature": 0.7, "llm_provider": "openai",
            "fallback_llm_model": null, "fallback_llm_provider": null, "tool_ids": [],
            "created_at": "2026-11-25T09:00:00Z", "updated_at": "2026-11-25T09:00:00Z"
        })
    };
    // A server that does not page (Famulor's shape): one request, every assistant.
    Mock::given(method("GET"))
        .and(path("/api/user/assistants/get"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "data": [assistant(1), assistant(2)] })),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    let ids: Vec<_> = sdk
        .assistants()
        .list()
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, [1, 2]);

    // A faulty server repeating its cursor does not make the stream loop.
    Mock::given(method("GET"))
        .and(path("/api/user/assistants/get"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "data": [assistant(3)], "next_cursor": "same" })),
        )
        .mount(&server)
        .await;
    let ids: Vec<_> = sdk
        .assistants()
        .stream(PageQuery::default())
        .map_ok(|a| a.id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids, [3, 3]);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn webhooks_are_created_listed_and_deleted() {
    use anyreply_client::{EventType, WebhookInput};
    let server = MockServer::start().await;
    let webhook = json!({
        "id": 7, "url": "https://crm.example.com/hook", "events": ["reply.created"],
        "enabled": true, "disabled_at": null, "disabled_reason": null,
        "created_at": "2026-12-02T10:00:00Z"
    });
    let mut created = webhook.clone();
    created["secret"] = json!("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    Mock::given(method("POST"))
        .and(path("/api/user/webhooks"))
        .and(body_json(
            json!({ "url": "https://crm.example.com/hook", "events": ["reply.created"] }),
        ))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({ "status": true, "data": created })),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/user/webhooks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": [webhook] })))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/user/webhooks/7"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "status": true, "message": "Webhook deleted" })),
        )
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    let input = WebhookInput {
        url: "https://crm.example.com/hook".into(),
        events: vec![EventType::ReplyCreated],
    };
    let made = sdk.webhooks().create(&input).await.unwrap();
    assert_eq!(
        made.secret.as_deref(),
        Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    );
    let listed = sdk.webhooks().list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].enabled && listed[0].secret.is_none());
    sdk.webhooks().delete(7).await.unwrap();
}
