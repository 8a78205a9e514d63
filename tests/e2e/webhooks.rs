//! A webhook made through the SDK receives a signed event that the SDK's `verify` accepts.

use std::time::Duration;

use anyreply_client::webhooks::verify;
use anyreply_client::{ErrorCode, EventType, WebhookInput, WebhookPayload};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{Stack, quick_retries};

#[tokio::test]
async fn a_webhook_made_with_the_sdk_gets_events_the_sdk_verifies() {
    let stack = Stack::start(Duration::ZERO).await;
    let client = stack.client(&stack.base, quick_retries());
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let webhook = client
        .webhooks()
        .create(&WebhookInput {
            url: format!("{}/anyreply", receiver.uri()),
            events: vec![EventType::AiDisabled],
        })
        .await
        .unwrap();
    let secret = webhook.secret.clone().unwrap();

    // A real change: a customer writes, then a person takes the conversation over.
    let assistant = client
        .assistants()
        .create(&anyreply_client::AssistantInput {
            name: Some("Hooks".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let reply = client
        .generate_reply(&anyreply_client::GenerateReplyRequest {
            assistant_id: assistant.id,
            customer_identifier: "+4915550002".into(),
            message: "Hello".into(),
            variables: None,
        })
        .await
        .unwrap();
    let conversation = reply.conversation_id;
    client
        .conversations()
        .disable_ai(conversation)
        .await
        .unwrap();
    anyreply_server::testing::eventually("the delivery", || async {
        !receiver.received_requests().await.unwrap().is_empty()
    })
    .await;
    let arrived = receiver.received_requests().await.unwrap().pop().unwrap();
    verify(&secret, &arrived.headers, &arrived.body).unwrap();
    let payload: WebhookPayload = serde_json::from_slice(&arrived.body).unwrap();
    assert_eq!(payload.kind, EventType::AiDisabled);
    assert_eq!(payload.data.customer_identifier, "+4915550002");
    assert_eq!(payload.data.conversation_id, conversation);

    let listed = client.webhooks().list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].enabled && listed[0].secret.is_none());
    client.webhooks().delete(webhook.id).await.unwrap();
    assert!(client.webhooks().list().await.unwrap().is_empty());
    let gone = client.webhooks().delete(webhook.id).await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::WebhookNotFound));

    let refused = client
        .webhooks()
        .create(&WebhookInput {
            url: "http://10.0.0.5/hook".into(),
            events: vec![EventType::AiDisabled],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::ValidationError));
    let message = &refused.api().unwrap().field_errors["url"][0];
    assert!(
        message.contains("ANYREPLY_OUTBOUND_ALLOWED_HOSTS"),
        "{message}"
    );
}
