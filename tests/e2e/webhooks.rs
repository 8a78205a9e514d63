//! A webhook made through the SDK receives a signed event that the SDK's `verify` accepts.

use std::time::Duration;

use anyreply_client::webhooks::verify;
use anyreply_client::{ErrorCode, EventType, WebhookInput, WebhookPayload};
use anyreply_server::models::event::{self, NewEvent};
use diesel_async::AsyncConnection;
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

    let conversation = anyreply_client::Uuid::new_v4();
    let mut conn = stack.db.connect().await;
    let account_id = stack.account_id;
    let event_id = conn
        .transaction(async |conn| {
            event::insert(
                conn,
                &NewEvent {
                    account_id,
                    kind: EventType::AiDisabled,
                    conversation_id: conversation,
                    assistant_id: 1,
                    customer_identifier: "+4915550002",
                    message: None,
                },
            )
            .await
        })
        .await
        .unwrap();
    let arrived = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Some(request) = receiver.received_requests().await.unwrap().pop() {
                return request;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the delivery never arrived");
    verify(&secret, &arrived.headers, &arrived.body).unwrap();
    let payload: WebhookPayload = serde_json::from_slice(&arrived.body).unwrap();
    assert_eq!(payload.kind, EventType::AiDisabled);
    assert_eq!(payload.data.id, event_id);
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
