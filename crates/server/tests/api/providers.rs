//! The Anthropic Messages API with tool use, and the fallback model.

use anyreply_server::pricing::ModelPrice;
use anyreply_server::tools::guard::AddressPolicy;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::util::{TestApp, anthropic_message, assert_error, body_of, money};

/// A TestApp whose Anthropic base URL points at `anthropic`.
async fn spawn_with_anthropic(
    anthropic: &MockServer,
    configure: impl FnOnce(&mut anyreply_server::Settings),
) -> TestApp {
    let base = anthropic.uri();
    TestApp::spawn_with(move |s| {
        s.anthropic_base_url = base.parse().unwrap();
        s.anthropic_api_key = Some("sk-ant-test".to_owned().into());
        s.outbound_allowed_hosts = AddressPolicy::parse("127.0.0.1").unwrap();
        configure(s);
    })
    .await
}

#[tokio::test]
async fn an_anthropic_assistant_uses_tools_over_several_rounds() {
    let anthropic = MockServer::start().await;
    let app = spawn_with_anthropic(&anthropic, |_| {}).await;
    let account = app.db_account("10").await;
    let orders = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/orders/lookup"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "status": "shipped", "eta": "Friday" })),
        )
        .mount(&orders)
        .await;
    let (_, tool, _) = app
        .post(
            &account.key,
            "/api/user/tools",
            &json!({
                "name": "find_order", "description": "Looks an order up", "method": "POST",
                "endpoint": format!("{}/orders/lookup", orders.uri()),
                "schema": [{ "name": "order_id", "type": "string", "description": "e.g. A-1" }]
            }),
        )
        .await;
    let assistant = app
        .assistant(&account, &json!({
            "name": "Claude", "llm_provider": "anthropic", "llm_model": "claude-sonnet-4-5",
            "system_prompt": "You track orders.", "initial_message": "Hi! How can I help?", "llm_temperature": 1.5,
            "tool_ids": [tool["data"]["id"]]
        }))
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", "sk-ant-test"))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(|request: &Request| {
            let body = body_of(request);
            let answered = body["messages"].to_string().contains("tool_result");
            let answer = if answered {
                anthropic_message(json!([{ "type": "text", "text": "Your order ships Friday." }]), "end_turn")
            } else {
                anthropic_message(
                    json!([
                        { "type": "text", "text": "Let me check." },
                        { "type": "tool_use", "id": "toolu_01", "name": "find_order", "input": { "order_id": "A-1" } }
                    ]),
                    "tool_use",
                )
            };
            ResponseTemplate::new(200).set_body_json(answer)
        })
        .mount(&anthropic)
        .await;

    let (status, reply) = app
        .reply(&account.key, assistant, "c", "Where is order A-1?")
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], "Your order ships Friday.");
    assert_eq!(
        reply["function_calls"],
        json!([{ "name": "find_order", "arguments": { "order_id": "A-1" }, "result": { "status": "shipped", "eta": "Friday" } }])
    );
    assert_eq!(
        body_of(&orders.received_requests().await.unwrap()[0]),
        json!({ "order_id": "A-1" })
    );

    let requests: Vec<Value> = anthropic
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(body_of)
        .collect();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first["model"], "claude-sonnet-4-5");
    assert_eq!(first["temperature"], 1.0);
    assert_eq!(
        first["system"],
        "You track orders.\n\nYou opened this conversation by saying: Hi! How can I help?"
    );
    assert_eq!(
        first["tools"][0]["input_schema"]["required"],
        json!(["order_id"])
    );
    assert_eq!(
        first["messages"],
        json!([{ "role": "user", "content": [{ "type": "text", "text": "Where is order A-1?" }] }])
    );
    assert_eq!(
        requests[1]["messages"][2],
        json!({ "role": "user", "content": [{
            "type": "tool_result", "tool_use_id": "toolu_01", "is_error": false,
            "content": "{\"eta\":\"Friday\",\"status\":\"shipped\"}"
        }] })
    );
    // Anthropic's usage is billed: 2 calls x (2000 input at 1/M + 100 output at 2/M) = 0.0044
    assert_eq!(app.balance(&account).await, money("9.9956"));
    assert_eq!(app.llm_requests().await.len(), 0);
}

#[tokio::test]
async fn the_fallback_answers_when_the_primary_keeps_failing() {
    let anthropic = MockServer::start().await;
    let app = spawn_with_anthropic(&anthropic, |s| {
        s.llm_retries = 2;
        let price = ModelPrice {
            input_per_mtok: money("10"),
            output_per_mtok: money("10"),
        };
        s.pricing.per_model.insert("claude-haiku-4-5".into(), price);
    })
    .await;
    let account = app.db_account("10").await;
    app.model_answers(
        ResponseTemplate::new(503).set_body_json(json!({ "error": { "message": "overloaded" } })),
    )
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(anthropic_message(
            json!([{ "type": "text", "text": "Fallback here." }]),
            "end_turn",
        )))
        .mount(&anthropic)
        .await;
    let assistant = app
        .assistant(&account, &json!({
            "name": "A", "llm_model": "gpt-4o", "fallback_llm_provider": "anthropic", "fallback_llm_model": "claude-haiku-4-5"
        }))
        .await;
    let (status, reply) = app.reply(&account.key, assistant, "c", "hello").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], "Fallback here.");
    // One attempt and two retries of the primary, then the fallback once.
    assert_eq!(app.llm_requests().await.len(), 3);
    let asked = anthropic.received_requests().await.unwrap();
    assert_eq!(asked.len(), 1);
    assert_eq!(body_of(&asked[0])["model"], "claude-haiku-4-5");
    // Billed at the fallback's price: 2000 x 10/M + 100 x 10/M = 0.021
    assert_eq!(app.balance(&account).await, money("9.979"));
}

#[tokio::test]
async fn a_refusal_is_not_retried_and_asks_no_fallback() {
    let anthropic = MockServer::start().await;
    let app = spawn_with_anthropic(&anthropic, |s| s.llm_retries = 2).await;
    let account = app.db_account("10").await;
    app.model_answers(
        ResponseTemplate::new(400)
            .set_body_json(json!({ "error": { "message": "model not found" } })),
    )
    .await;
    let assistant = app
        .assistant(&account, &json!({ "name": "A", "fallback_llm_provider": "anthropic", "fallback_llm_model": "claude-haiku-4-5" }))
        .await;
    let (status, body) = app.reply(&account.key, assistant, "c", "hello").await;
    assert_error(status, &body, 502, "LLM_ERROR");
    assert_eq!(app.llm_requests().await.len(), 1);
    assert_eq!(anthropic.received_requests().await.unwrap().len(), 0);
    assert_eq!(app.balance(&account).await, money("10"));
}

#[tokio::test]
async fn without_a_fallback_a_transient_failure_is_retried_then_reported() {
    let app = TestApp::spawn_with(|s| s.llm_retries = 1).await;
    let account = app.db_account("10").await;
    app.model_answers(ResponseTemplate::new(429)).await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (status, body) = app.reply(&account.key, assistant, "c", "hello").await;
    assert_error(status, &body, 503, "LLM_UNAVAILABLE");
    assert_eq!(app.llm_requests().await.len(), 2);
}

#[tokio::test]
async fn the_fallback_also_answers_when_the_primary_times_out() {
    let anthropic = MockServer::start().await;
    let app = spawn_with_anthropic(&anthropic, |s| {
        s.llm_retries = 0;
        s.llm_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let account = app.db_account("10").await;
    app.model_answers(
        ResponseTemplate::new(200)
            .set_delay(std::time::Duration::from_secs(2))
            .set_body_json(crate::util::chat_completion("too late")),
    )
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(anthropic_message(
            json!([{ "type": "text", "text": "On time." }]),
            "end_turn",
        )))
        .mount(&anthropic)
        .await;
    let assistant = app
        .assistant(&account, &json!({ "name": "A", "fallback_llm_provider": "anthropic", "fallback_llm_model": "claude-haiku-4-5" }))
        .await;
    let (status, reply) = app.reply(&account.key, assistant, "c", "hello").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], "On time.");
}
