//! A failing model: our code, no provider detail, no charge, no trace in the history.

use std::time::Duration;

use serde_json::json;
use wiremock::ResponseTemplate;
use wiremock::matchers::{header, method};

use crate::util::{TestApp, assert_error, money};

async fn assert_failure_leaves_nothing(
    app: &TestApp,
    response: ResponseTemplate,
    status: u16,
    code: &str,
) {
    app.model_answers(response).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (got, body) = app.reply(&account.key, assistant, "c", "hi").await;
    assert_error(got, &body, status, code);
    let text = body.to_string();
    assert!(
        !text.contains("sk-") && !text.contains("quota"),
        "leaks the provider's words: {text}"
    );
    assert_eq!(app.balance(&account).await, money("10"));
    let (_, list, _) = app.get(&account.key, "/api/user/conversations").await;
    let conversation = &list["data"][0];
    assert_eq!(conversation["message_count"], 0, "{list}");
    let (_, history, _) = app
        .get(
            &account.key,
            &format!(
                "/api/conversations/{}",
                conversation["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(history["history"], json!([]));
}

fn openai_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": { "message": message, "type": "invalid_request_error", "param": null, "code": "invalid_api_key" }
    }))
}

#[tokio::test]
async fn provider_5xx_is_unavailable() {
    let app = TestApp::spawn().await;
    assert_failure_leaves_nothing(
        &app,
        openai_error(500, "The server had an error"),
        503,
        "LLM_UNAVAILABLE",
    )
    .await;
}

#[tokio::test]
async fn provider_429_is_unavailable() {
    let app = TestApp::spawn().await;
    assert_failure_leaves_nothing(
        &app,
        openai_error(429, "You exceeded your current quota"),
        503,
        "LLM_UNAVAILABLE",
    )
    .await;
}

#[tokio::test]
async fn provider_401_is_an_llm_error_without_the_providers_words() {
    let app = TestApp::spawn().await;
    assert_failure_leaves_nothing(
        &app,
        openai_error(401, "Incorrect API key provided: sk-abc123"),
        502,
        "LLM_ERROR",
    )
    .await;
}

#[tokio::test]
async fn an_unreadable_answer_is_an_llm_error() {
    let app = TestApp::spawn().await;
    assert_failure_leaves_nothing(
        &app,
        ResponseTemplate::new(200).set_body_string("<html>oops</html>"),
        502,
        "LLM_ERROR",
    )
    .await;
}

#[tokio::test]
async fn a_slow_model_times_out() {
    let app = TestApp::spawn_with(|s| s.llm_timeout = Duration::from_millis(300)).await;
    let slow = ResponseTemplate::new(200)
        .set_delay(Duration::from_secs(3))
        .set_body_json(crate::util::chat_completion("late"));
    assert_failure_leaves_nothing(&app, slow, 503, "LLM_UNAVAILABLE").await;
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable() {
    let app =
        TestApp::spawn_with(|s| s.llm_base_url = "http://127.0.0.1:1/v1".parse().unwrap()).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (status, body) = app.reply(&account.key, assistant, "c", "hi").await;
    assert_error(status, &body, 503, "LLM_UNAVAILABLE");
    assert_eq!(app.balance(&account).await, money("10"));
}

#[tokio::test]
async fn the_provider_key_is_sent_as_a_bearer_token() {
    let app =
        TestApp::spawn_with(|s| s.llm_api_key = Some("sk-provider-key".to_owned().into())).await;
    wiremock::Mock::given(method("POST"))
        .and(header("authorization", "Bearer sk-provider-key"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(crate::util::chat_completion("authorised")),
        )
        .with_priority(1)
        .mount(&app.llm)
        .await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (_, reply) = app.reply(&account.key, assistant, "c", "hi").await;
    assert_eq!(reply["reply"], "authorised");
}
