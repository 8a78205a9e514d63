//! Every endpoint, through the SDK, against the real server.

use std::time::Duration;

use anyreply_client::{
    AssistantInput, AuditAction, AuditActorType, AuditQuery, ErrorCode, GenerateReplyRequest,
    ListConversationsQuery, ToolHeader, ToolInput, ToolParameter,
};
use anyreply_core::wire::{HttpMethod, ParameterType};
use futures::TryStreamExt;

use crate::{Stack, quick_retries};

#[tokio::test]
async fn the_sdk_speaks_every_endpoint() {
    let stack = Stack::start(Duration::ZERO).await;
    let client = stack.client(&stack.base, quick_retries());

    let me = client.me().await.unwrap();
    assert_eq!(
        (me.name.as_str(), me.total_balance),
        ("Acme", "10".parse().unwrap())
    );

    let tool = client
        .tools()
        .create(&ToolInput {
            name: Some("check_calendar".into()),
            description: Some("Free slots".into()),
            endpoint: Some("https://crm.example.com/slots".into()),
            method: Some(HttpMethod::Get),
            headers: Some(vec![ToolHeader {
                name: "Authorization".into(),
                value: "Bearer secret-crm-token".into(),
            }]),
            schema: Some(vec![ToolParameter {
                name: "date".into(),
                kind: ParameterType::String,
                description: "YYYY-MM-DD".into(),
                required: true,
            }]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tool.headers[0].value, "****oken");
    let renamed = client
        .tools()
        .update(
            tool.id,
            &ToolInput {
                description: Some("Slots".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.description, "Slots");
    assert_eq!(client.tools().get(tool.id).await.unwrap(), renamed);
    assert_eq!(client.tools().list().await.unwrap(), vec![renamed]);

    let assistant = client
        .assistants()
        .create(&AssistantInput {
            name: Some("Support".into()),
            tool_ids: Some(vec![tool.id]),
            ..Default::default()
        })
        .await
        .unwrap();
    let assistant = client
        .assistants()
        .update(
            assistant.id,
            &AssistantInput {
                tool_ids: Some(vec![]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        client.assistants().list().await.unwrap(),
        vec![assistant.clone()]
    );
    client.tools().delete(tool.id).await.unwrap();
    assert_eq!(
        client.tools().get(tool.id).await.unwrap_err().code(),
        Some(ErrorCode::ToolNotFound)
    );

    // The audit log, newest first, a page of two at a time.
    let logged: Vec<_> = client
        .audit()
        .stream(AuditQuery {
            per_page: Some(2),
            ..Default::default()
        })
        .try_collect()
        .await
        .unwrap();
    let actions: Vec<AuditAction> = logged.iter().map(|entry| entry.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::ToolDeleted,
            AuditAction::AssistantUpdated,
            AuditAction::AssistantCreated,
            AuditAction::ToolUpdated,
            AuditAction::ToolCreated,
        ]
    );
    assert!(
        logged
            .iter()
            .all(|e| e.actor.kind == AuditActorType::ApiKey)
    );

    let mut conversation = None;
    for customer in ["a", "b", "c"] {
        let request = GenerateReplyRequest {
            assistant_id: assistant.id,
            customer_identifier: customer.into(),
            message: "hi".into(),
            variables: None,
        };
        conversation = Some(
            client
                .generate_reply(&request)
                .await
                .unwrap()
                .conversation_id,
        );
    }
    let conversation = conversation.unwrap();
    let query = ListConversationsQuery {
        per_page: Some(2),
        ..Default::default()
    };
    let page = client.conversations().list(&query).await.unwrap();
    assert_eq!(page.data.len(), 2);
    assert!(page.next_cursor.is_some());
    let all: Vec<_> = client
        .conversations()
        .stream(query)
        .try_collect()
        .await
        .unwrap();
    let customers: Vec<_> = all.iter().map(|c| c.external_identifier.as_str()).collect();
    assert_eq!(customers, ["c", "b", "a"]);

    assert!(
        !client
            .conversations()
            .disable_ai(conversation)
            .await
            .unwrap()
            .ai_enabled
    );
    let silent = client
        .generate_reply(&GenerateReplyRequest {
            assistant_id: assistant.id,
            customer_identifier: "c".into(),
            message: "anyone?".into(),
            variables: None,
        })
        .await
        .unwrap();
    assert!(silent.ai_disabled);
    assert!(
        client
            .conversations()
            .enable_ai(conversation)
            .await
            .unwrap()
            .ai_enabled
    );
    let history = client.conversations().get(conversation).await.unwrap();
    assert_eq!(history.history.len(), 3);
    assert_eq!(
        client.me().await.unwrap().total_balance,
        "9.97".parse().unwrap()
    );
}

/// Usage through the SDK adds up to what the balance lost.
#[tokio::test]
async fn usage_through_the_sdk_adds_up_to_the_balance() {
    let stack = Stack::start(Duration::ZERO).await;
    let client = stack.client(&stack.base, quick_retries());
    let assistant = client
        .assistants()
        .create(&AssistantInput {
            name: Some("Usage".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    for customer in ["a", "b"] {
        let request = GenerateReplyRequest {
            assistant_id: assistant.id,
            customer_identifier: customer.into(),
            message: "hi".into(),
            variables: None,
        };
        client.generate_reply(&request).await.unwrap();
    }
    let by_model = client
        .usage(&anyreply_client::UsageQuery {
            group_by: Some(anyreply_client::UsageGroup::Model),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_model.data.len(), 1);
    let row = &by_model.data[0];
    assert_eq!(row.replies, 2);
    assert_eq!(row.model.as_deref(), Some("gpt-4o-mini"));
    let lost =
        "10".parse::<anyreply_core::Money>().unwrap().subunits() - stack.balance().await.subunits();
    assert_eq!(row.cost.subunits(), lost);
}

/// Stats through the SDK: the replies just made, no handoff, nothing waiting.
#[tokio::test]
async fn stats_through_the_sdk_count_the_conversations_and_replies() {
    let stack = Stack::start(Duration::ZERO).await;
    let client = stack.client(&stack.base, quick_retries());
    let assistant = client
        .assistants()
        .create(&AssistantInput {
            name: Some("Stats".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    for customer in ["a", "b"] {
        let request = GenerateReplyRequest {
            assistant_id: assistant.id,
            customer_identifier: customer.into(),
            message: "hi".into(),
            variables: None,
        };
        client.generate_reply(&request).await.unwrap();
    }
    let stats = client
        .stats(&anyreply_client::StatsQuery {
            group_by: Some(anyreply_client::StatsGroup::Assistant),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stats.data.len(), 1);
    let row = &stats.data[0];
    assert_eq!(row.assistant_id, Some(assistant.id));
    assert_eq!((row.conversations, row.handoffs), (2, 0));
    assert_eq!(row.ai_resolved_share, Some(1.0));
    assert_eq!(row.time_to_operator_median_seconds, None);
    assert_eq!(stats.totals.conversations, 2);
}

#[tokio::test]
async fn a_streamed_reply_through_the_sdk_is_the_reply_stored_and_charged_once() {
    use anyreply_client::{ReplyEvent, RequestOptions};
    use futures::StreamExt;

    let stack = Stack::start(Duration::ZERO).await;
    let client = stack.client(&stack.base, quick_retries());
    let assistant = client
        .assistants()
        .create(&AssistantInput {
            name: Some("Streamer".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let request = GenerateReplyRequest {
        assistant_id: assistant.id,
        customer_identifier: "web:visitor-1".into(),
        message: "a table for two".into(),
        variables: None,
    };
    let events: Vec<ReplyEvent> = client
        .generate_reply_stream(&request, RequestOptions::idempotency_key("m-1"))
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let (last, deltas) = events.split_last().unwrap();
    let ReplyEvent::Reply(reply) = last else {
        panic!("{events:?}")
    };
    let text: String = deltas
        .iter()
        .map(|event| match event {
            ReplyEvent::Delta(text) => text.as_str(),
            ReplyEvent::Reply(_) => panic!("two replies"),
        })
        .collect();
    // The echo model streams word by word.
    assert_eq!(deltas.len(), 5);
    assert_eq!(text, "echo: a table for two");
    assert_eq!(reply.reply, text);

    // The same key again, unstreamed: the stored answer, not a second reply.
    let again = client
        .generate_reply_with(&request, RequestOptions::idempotency_key("m-1"))
        .await
        .unwrap();
    assert_eq!(&again, reply);
    let history = client
        .conversations()
        .get(reply.conversation_id)
        .await
        .unwrap();
    assert_eq!(history.history.len(), 2);
    assert_eq!(history.history[1].content, text);
    assert_eq!(
        client.me().await.unwrap().total_balance,
        "9.99".parse().unwrap()
    );
}

#[tokio::test]
async fn the_team_inbox_through_the_sdk() {
    use anyreply_client::{NoteInput, OperatorInput, OperatorRole, OperatorUpdate};

    let stack = Stack::start(Duration::ZERO).await;
    let client = stack.client(&stack.base, quick_retries());
    let added = client
        .operators()
        .create(&OperatorInput {
            email: "anna@acme.example".into(),
            name: "Anna".into(),
            role: OperatorRole::Agent,
        })
        .await
        .unwrap();
    assert!(
        added
            .password_link
            .unwrap()
            .contains("/console/set-password?token=")
    );
    let anna = added.data.id;
    let promoted = client
        .operators()
        .update(
            anna,
            &OperatorUpdate {
                role: Some(OperatorRole::Admin),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(promoted.role, OperatorRole::Admin);
    assert_eq!(client.operators().list().await.unwrap(), vec![promoted]);

    let assistant = client
        .assistants()
        .create(&AssistantInput {
            name: Some("Desk".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let reply = client
        .generate_reply(&GenerateReplyRequest {
            assistant_id: assistant.id,
            customer_identifier: "+4915".into(),
            message: "hi".into(),
            variables: None,
        })
        .await
        .unwrap();
    let id = reply.conversation_id;
    let conversations = client.conversations();
    let assignee = conversations.assign(id, Some(anna)).await.unwrap().unwrap();
    assert_eq!(
        (assignee.operator_id, assignee.name.as_str()),
        (Some(anna), "Anna")
    );
    let mine = conversations
        .list(&ListConversationsQuery {
            assignee_id: Some(anna),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.data.len(), 1);
    let note = conversations
        .add_note(
            id,
            &NoteInput {
                content: "Prefers email".into(),
                operator_id: Some(anna),
            },
        )
        .await
        .unwrap();
    assert_eq!(conversations.notes(id).await.unwrap(), vec![note]);
    let sent = conversations
        .send_operator_message_as(id, anna, "Anna here.", Default::default())
        .await
        .unwrap();
    assert_eq!(sent.author.unwrap().name, "Anna");
    assert_eq!(conversations.assign(id, None).await.unwrap(), None);
    client.operators().delete(anna).await.unwrap();
    let gone = client.operators().delete(anna).await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::OperatorNotFound));
}
