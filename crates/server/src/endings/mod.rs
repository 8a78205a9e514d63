//! Conversations that end (Famulor's conversation lifecycle). An assistant's
//! `conversation_inactivity_timeout` gives each of its conversations an end (`ends_at`), put
//! off by every message; [`run`], in every server process, ends those whose end has come,
//! then does what each ending leaves: the post-call schema is extracted ([`extract`]),
//! `conversation.ended` written with it, and the assistant's conversation-ended webhook told
//! ([`notify`]), retried after 30, 60 and 120 seconds.
//!
//! Everything it knows is in PostgreSQL: the end is one statement that locks what it ends
//! (`FOR UPDATE SKIP LOCKED`), so each conversation ends once whatever the number of
//! processes, and an ending's work is leased, so a dead process's is taken again after it.

pub mod extract;
pub mod notify;

use std::time::Duration;

use anyhow::Context;
use anyreply_core::wire::{EventType, PostCallField};
use chrono::Utc;
use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::models::conversation_ending::{self, EXTRACT, Ending, NOTIFY};
use crate::models::event::{self, NewEvent};
use crate::models::{assistant, conversation};

/// Endings whose work one process does at once.
const AT_ONCE: usize = 8;

/// The most endings taken in one round.
const TAKEN_PER_ROUND: i64 = 64;

/// Ends conversations and does their endings' work, until the server stops: asleep until the
/// next end or piece of work falls due, or `conversation_end_recheck` (another process may
/// have put an end nearer).
pub async fn run(app: App) {
    loop {
        let next = match round(&app).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "ending conversations failed");
                None
            }
        };
        let recheck = app.settings.conversation_end_recheck;
        let pause = next
            .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .map_or(recheck, |until| until.min(recheck));
        tokio::time::sleep(pause.max(Duration::from_millis(10))).await;
    }
}

/// Ends what is due, does the work due; returns when the next falls due.
async fn round(app: &App) -> anyhow::Result<Option<chrono::DateTime<Utc>>> {
    let mut conn = app.db().await?;
    loop {
        let ended = conversation_ending::end_due(&mut conn).await?;
        if ended > 0 {
            tracing::info!(ended, "conversations ended");
        }
        if ended < conversation_ending::ENDED_AT_ONCE {
            break;
        }
    }
    let lease = app.settings.llm_timeout * 3 + app.settings.webhook_timeout;
    let taken = conversation_ending::take_due(&mut conn, lease, TAKEN_PER_ROUND).await?;
    drop(conn);
    futures::stream::iter(taken)
        .for_each_concurrent(AT_ONCE, |ending| async move {
            let result = match ending.stage.as_str() {
                EXTRACT => finish_ending(app, &ending).await,
                NOTIFY => notify::attempt(app, &ending).await,
                _ => Ok(()),
            };
            if let Err(error) = result {
                tracing::warn!(error = format!("{error:#}"), conversation = %ending.conversation_id, "an ended conversation's work failed; it is taken again after its lease");
            }
        })
        .await;
    let mut conn = app.db().await?;
    Ok(conversation_ending::next_due(&mut conn).await?)
}

/// Extracts the post-call schema (billed), then in one transaction stores it, writes
/// `conversation.ended` and leaves the webhook's payload to send, if the assistant has one.
async fn finish_ending(app: &App, ending: &Ending) -> anyhow::Result<()> {
    let mut conn = app.db().await?;
    let Some(found) =
        conversation::find(&mut conn, ending.account_id, ending.conversation_id).await?
    else {
        return Ok(()); // deleted since (the ending's row went with it)
    };
    let assistant = assistant::find(&mut conn, ending.account_id, found.assistant_id)
        .await?
        .context("the assistant of an ended conversation is gone")?;
    let transcript = notify::transcript(&mut conn, &found).await?;
    drop(conn);
    let schema: Vec<PostCallField> = assistant.post_call_schema();
    let extraction = if schema.is_empty() {
        None
    } else {
        Some(extract::extract(app, &assistant, &schema, &transcript).await)
    };
    let (values, error) = match &extraction {
        None => (Map::new(), None),
        Some(extraction) => (extraction.values.clone(), extraction.error.clone()),
    };
    let payload = assistant
        .conversation_ended_webhook_url
        .as_ref()
        .map(|_| notify::payload(&found, ending, &values, &transcript).to_string());
    let mut conn = app.db().await?;
    use diesel_async::AsyncConnection;
    conn.transaction(async |conn| {
        // The conversation's row first, then the account's, as replies lock them.
        conversation_ending::store_extracted(
            conn,
            ending.conversation_id,
            &Value::Object(values.clone()),
        )
        .await?;
        if let Some(billed) = extraction.as_ref().and_then(|e| e.billed.as_ref()) {
            conversation_ending::bill_model_call(conn, &billed.call(ending)).await?;
        }
        let mut detail = json!({ "extracted_variables": values });
        if let Some(error) = &error {
            detail["extraction_error"] = Value::from(error.as_str());
        }
        let event = NewEvent::about(
            ending.account_id,
            EventType::ConversationEnded,
            ending.conversation_id,
        );
        event::insert_detailed(conn, &event, &detail).await?;
        conversation_ending::extracted(conn, ending, payload.as_deref()).await
    })
    .await?;
    Ok(())
}
