//! Retries through the SDK never answer or charge twice.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyreply_client::{ErrorCode, GenerateReplyRequest, RequestOptions, RetryPolicy};
use futures::future::join_all;

use crate::proxy::DroppingProxy;
use crate::{Stack, quick_retries};

fn hello(message: &str) -> GenerateReplyRequest {
    GenerateReplyRequest {
        assistant_id: 0, // set by `with_assistant`
        customer_identifier: "+49155551234".into(),
        message: message.into(),
        variables: None,
    }
}

async fn assistant(stack: &Stack) -> i64 {
    let client = stack.client(&stack.base, quick_retries());
    let input = anyreply_client::AssistantInput {
        name: Some("Support".into()),
        ..Default::default()
    };
    client.assistants().create(&input).await.unwrap().id
}

#[tokio::test]
async fn a_lost_response_is_retried_and_answered_once() {
    let stack = Stack::start(Duration::ZERO).await;
    let assistant = assistant(&stack).await;
    let proxy = DroppingProxy::start(stack.base.trim_start_matches("http://").to_owned(), 1).await;
    let client = stack.client(&proxy.base, quick_retries());

    let reply = client
        .generate_reply(&GenerateReplyRequest {
            assistant_id: assistant,
            ..hello("hi")
        })
        .await
        .unwrap();
    assert_eq!(reply.reply, "echo: hi");
    assert_eq!(
        proxy.requests.load(Ordering::SeqCst),
        2,
        "the SDK retried once"
    );
    assert_eq!(stack.model_calls().await, 1);
    assert_eq!(stack.messages().await, 2);
    assert_eq!(stack.balance().await, "9.99".parse().unwrap());
    let history = client
        .conversations()
        .get(reply.conversation_id)
        .await
        .unwrap();
    assert_eq!(history.history.len(), 2);
}

#[tokio::test]
async fn concurrent_duplicates_are_answered_once() {
    let stack = Stack::start(Duration::from_millis(300)).await;
    let assistant = assistant(&stack).await;
    // Duplicates that arrive while the first runs get 409 with Retry-After: 1, and retry.
    let policy = RetryPolicy::default()
        .with_max_attempts(5)
        .with_backoff(Duration::from_millis(50), Duration::from_millis(200));
    let client = stack.client(&stack.base, policy);
    let request = GenerateReplyRequest {
        assistant_id: assistant,
        ..hello("hi")
    };
    let calls = (0..5)
        .map(|_| client.generate_reply_with(&request, RequestOptions::idempotency_key("msg-77")));
    let replies: Vec<_> = join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(replies.iter().all(|r| r == &replies[0]));
    assert_eq!(stack.model_calls().await, 1);
    assert_eq!(stack.messages().await, 2);
    assert_eq!(stack.balance().await, "9.99".parse().unwrap());
}

#[tokio::test]
async fn a_replay_returns_the_first_answer_and_a_reused_key_is_refused() {
    let stack = Stack::start(Duration::ZERO).await;
    let assistant = assistant(&stack).await;
    let client = stack.client(&stack.base, quick_retries());
    let request = GenerateReplyRequest {
        assistant_id: assistant,
        ..hello("hi")
    };
    let first = client
        .generate_reply_with(&request, RequestOptions::idempotency_key("msg-1"))
        .await
        .unwrap();
    let again = client
        .generate_reply_with(&request, RequestOptions::idempotency_key("msg-1"))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(stack.model_calls().await, 1);

    let other = GenerateReplyRequest {
        assistant_id: assistant,
        ..hello("something else")
    };
    let error = client
        .generate_reply_with(&other, RequestOptions::idempotency_key("msg-1"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::IdempotencyKeyReused));
    assert_eq!(error.api().unwrap().status, 422);
    assert_eq!(stack.model_calls().await, 1);
    assert_eq!(stack.balance().await, "9.99".parse().unwrap());
}
