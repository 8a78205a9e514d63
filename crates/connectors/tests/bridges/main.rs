//! The bridges against mock servers speaking the real protocols: AnyReply's API, the
//! Telegram Bot API and Twilio's REST API, all on `wiremock`.

#![allow(clippy::unwrap_used, unreachable_pub, missing_debug_implementations)]

mod startup;
mod telegram;
mod twilio;

use std::time::{Duration, Instant};

use anyreply_client::{Client, RetryPolicy};
use anyreply_connectors::bridge::Bridge;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const APOLOGY: &str = "Sorry, try again later.";

/// AnyReply's generate-reply, answering `echo: <message>`; a message `poor` gets
/// `INSUFFICIENT_BALANCE`, `lost` gets `ASSISTANT_NOT_FOUND`, `human` is under takeover, and
/// `long` gets a reply of 9,000 characters.
pub async fn anyreply() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/ai/generate-reply"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let message = body["message"].as_str().unwrap().to_owned();
            let error = |status: u16, code: &str| {
                ResponseTemplate::new(status).set_body_json(json!({
                    "success": false, "status": false, "message": code, "error": code, "error_code": code
                }))
            };
            let reply = |text: String, ai_disabled: bool| {
                ResponseTemplate::new(200).set_body_json(json!({
                    "success": true, "conversation_id": "01a21203-ace5-7678-97e0-1ea8fc865519",
                    "customer_identifier": body["customer_identifier"], "reply": text,
                    "function_calls": [], "ai_disabled": ai_disabled
                }))
            };
            match message.as_str() {
                "poor" => error(402, "INSUFFICIENT_BALANCE"),
                "lost" => error(404, "ASSISTANT_NOT_FOUND"),
                "human" => reply(String::new(), true),
                "long" => reply(long_reply(), false),
                slow if slow.starts_with("slow") => {
                    reply(format!("echo: {message}"), false).set_delay(Duration::from_millis(300))
                }
                _ => reply(format!("echo: {message}"), false),
            }
        })
        .mount(&server)
        .await;
    server
}

/// 9,000 characters in sentences: three Telegram messages, six SMS.
pub fn long_reply() -> String {
    "This is a sentence of the long reply. "
        .repeat(240)
        .trim_end()
        .to_owned()
}

pub fn bridge(anyreply_url: &str) -> Bridge {
    let client = Client::builder()
        .base_url(anyreply_url)
        .api_key("ark_bridge")
        .retry_policy(RetryPolicy::default().with_max_attempts(1))
        .build()
        .unwrap();
    Bridge {
        client,
        assistant_id: 7,
        apology: APOLOGY.to_owned(),
    }
}

/// The generate-reply requests AnyReply received.
pub async fn anyreply_requests(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/api/ai/generate-reply")
        .collect()
}

/// Waits until `done` holds, failing after five seconds.
pub async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
