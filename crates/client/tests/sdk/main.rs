//! The SDK against `wiremock` servers speaking AnyReply's wire format.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod endpoints;
mod events;
mod knowledge;
mod retries;
mod streaming;

use std::time::Duration;

use anyreply_client::{Client, GenerateReplyRequest, RetryPolicy};
use serde_json::{Value, json};
use wiremock::MockServer;

/// Retries with tiny waits, so tests never sleep through real backoff.
pub fn fast_policy() -> RetryPolicy {
    RetryPolicy::default()
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
        .with_max_retry_after(Duration::from_millis(20))
}

pub fn client(server: &MockServer, policy: RetryPolicy) -> Client {
    Client::builder()
        .base_url(server.uri())
        .api_key("ark_test_key_that_must_never_be_printed")
        .timeout(Duration::from_millis(500))
        .retry_policy(policy)
        .build()
        .unwrap()
}

pub fn request() -> GenerateReplyRequest {
    GenerateReplyRequest {
        assistant_id: 1,
        customer_identifier: "+49155551234".into(),
        message: "Hi".into(),
        variables: None,
    }
}

pub fn reply_body() -> Value {
    json!({
        "success": true, "conversation_id": "01a21203-ace5-7678-97e0-1ea8fc865519",
        "customer_identifier": "+49155551234", "reply": "Hello!", "function_calls": [], "ai_disabled": false
    })
}

pub fn error_body(code: &str) -> Value {
    json!({ "success": false, "status": false, "message": "nope", "error": "nope", "error_code": code })
}
