//! Famulor's conversation-ended webhook: when a conversation ends, its assistant's
//! `conversation_ended_webhook_url` gets Famulor's payload, made once (so every attempt sends
//! the same bytes), through the address policy tools and webhooks obey, signed with our
//! Standard Webhooks headers as well (Famulor sends none; a receiver written for it ignores
//! them). A failure is tried again after 30, 60 and 120 seconds, then given up (logged).

use anyreply_core::wire::Role;
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::models::conversation::ConversationRow;
use crate::models::conversation_ending::{self, Ending};
use crate::models::{assistant, message};
use crate::webhooks::Attempt;

/// The most messages a transcript holds (the newest), in the payload and the extraction's
/// prompt.
pub const TRANSCRIPT_MESSAGES: usize = 1_000;

/// One message of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub role: Role,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

/// The conversation's newest [`TRANSCRIPT_MESSAGES`] messages, oldest first.
pub async fn transcript(
    conn: &mut AsyncPgConnection,
    conversation: &ConversationRow,
) -> diesel::QueryResult<Vec<Line>> {
    let (mut rows, _) = message::newest_before(
        conn,
        conversation.id,
        conversation.next_seq,
        TRANSCRIPT_MESSAGES,
    )
    .await?;
    rows.reverse();
    Ok(rows
        .into_iter()
        .map(|row| Line {
            role: row.role(),
            content: row.content,
            created_at: row.created_at,
        })
        .collect())
}

/// Famulor's `formatted_transcript`: a line per message, `AI:` or `Customer:` first (a
/// person of the business is `Operator:`).
pub fn formatted(transcript: &[Line]) -> String {
    transcript
        .iter()
        .map(|line| {
            let who = match line.role {
                Role::User => "Customer",
                Role::Assistant => "AI",
                Role::Operator => "Operator",
            };
            format!("{who}: {}", line.content)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Famulor's conversation-ended payload.
pub fn payload(
    conversation: &ConversationRow,
    ending: &Ending,
    extracted: &Map<String, Value>,
    transcript: &[Line],
) -> Value {
    let variables = crate::models::object(conversation.variables.clone());
    let customer_name = ["customer_name", "name"].iter().find_map(|name| {
        variables
            .get(*name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let messages: Vec<Value> = transcript
        .iter()
        .map(|line| json!({ "role": line.role, "content": line.content, "created_at": line.created_at }))
        .collect();
    let mut payload = json!({
        "conversation_id": conversation.id,
        "assistant_id": conversation.assistant_id,
        "type": conversation.kind,
        "customer_identifier": conversation.customer_identifier,
        "message_count": conversation.message_count,
        "status": "ended",
        "extracted_variables": extracted,
        "input_variables": variables,
        "transcript": messages,
        "formatted_transcript": formatted(transcript),
        "created_at": conversation.created_at,
        "ended_at": ending.ended_at,
    });
    if let Some(name) = customer_name {
        payload["customer_name"] = Value::from(name);
    }
    payload
}

/// The `webhook-id` of an ending: the same on every attempt.
fn message_id(ending: &Ending) -> String {
    format!(
        "end_{}_{}",
        ending.conversation_id.simple(),
        ending.ended_at.timestamp_micros()
    )
}

/// One attempt of the ending's webhook: delivered, tried again later, or given up.
pub async fn attempt(app: &App, ending: &Ending) -> anyhow::Result<()> {
    let mut conn = app.db().await?;
    let target = match crate::models::conversation::find(
        &mut conn,
        ending.account_id,
        ending.conversation_id,
    )
    .await?
    {
        Some(found) => assistant::find(&mut conn, ending.account_id, found.assistant_id).await?,
        None => None,
    };
    let (Some(target), Some(payload)) = (target, ending.payload.as_deref()) else {
        return Ok(conversation_ending::done(&mut conn, ending).await?);
    };
    let Some(url) = target.conversation_ended_webhook_url.as_deref() else {
        // The URL was removed since: nobody to tell.
        return Ok(conversation_ending::done(&mut conn, ending).await?);
    };
    drop(conn);
    let sent = app
        .webhooks
        .send_signed(
            url,
            &target.conversation_ended_webhook_secret,
            &message_id(ending),
            payload,
        )
        .await;
    let mut conn = app.db().await?;
    let schedule = &app.settings.conversation_ended_retry_schedule;
    match sent {
        Attempt::Delivered { .. } => conversation_ending::done(&mut conn, ending).await?,
        Attempt::Gone | Attempt::Failed { .. } => {
            let attempts = usize::try_from(ending.attempts).unwrap_or(usize::MAX);
            match schedule.get(attempts) {
                Some(pause) => {
                    tracing::info!(conversation = %ending.conversation_id, ?sent, retry_in = ?pause, "the conversation-ended webhook failed; trying again");
                    conversation_ending::retry_after(&mut conn, ending, *pause).await?;
                }
                None => {
                    tracing::warn!(conversation = %ending.conversation_id, ?sent, %url, "the conversation-ended webhook failed every attempt; given up");
                    conversation_ending::done(&mut conn, ending).await?;
                }
            }
        }
    }
    Ok(())
}
