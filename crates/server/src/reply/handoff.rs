//! Handoff: an assistant with `handoff` enabled offers the model a built-in `transfer_to_human`
//! function. A call ends the reply's tool loop; the reply tells the customer (the configured
//! message, else the model's own words), and its settlement turns the conversation's AI off
//! with `ai.disabled` and `handoff.requested` events, in the same transaction.

use anyreply_core::wire::assistants::HANDOFF_TOOL;
use anyreply_core::wire::{EventType, Handoff};
use diesel_async::AsyncPgConnection;
use serde_json::{Value, json};

use super::Turn;
use super::error::ReplyResult;
use crate::llm::FunctionSpec;
use crate::models::conversation;
use crate::models::event::{self, NewEvent};

/// What the customer is told when neither the assistant nor the model says anything.
pub const DEFAULT_MESSAGE: &str =
    "I'm passing you to a member of our team, who will answer you here as soon as they can.";

/// The longest reason kept, in characters: it travels in events and webhooks.
const MAX_REASON_CHARS: usize = 1_000;

/// The function offered to the model; when to call it is in the system prompt.
pub fn spec() -> FunctionSpec {
    FunctionSpec {
        name: HANDOFF_TOOL.to_owned(),
        description: "Hand this conversation to a person of the business, who answers the \
                      customer from now on. Use it as your instructions say."
            .to_owned(),
        parameters: json!({
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why a person should take over, in a sentence"}},
            "required": ["reason"],
            "additionalProperties": false
        }),
    }
}

/// The reason the model gave; empty if it gave none (the handoff stands all the same: a
/// person is the safe side).
pub fn reason(arguments: &Value) -> String {
    let reason = arguments
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim();
    reason.chars().take(MAX_REASON_CHARS).collect()
}

/// The call's result as `function_calls` shows it.
pub fn result() -> Value {
    json!({ "transferred": true })
}

/// What the customer is told: the assistant's message, else the model's own words beside the
/// call, else [`DEFAULT_MESSAGE`]; and whether those are the model's (already shown, when
/// streamed).
pub fn words(handoff: &Handoff, own: Option<String>) -> (String, bool) {
    let configured = Some(handoff.message.trim()).filter(|m| !m.is_empty());
    match (configured, own) {
        (Some(message), _) => (message.to_owned(), false),
        (None, Some(own)) => (own, true),
        (None, None) => (DEFAULT_MESSAGE.to_owned(), false),
    }
}

/// The settlement's part of a handoff: the conversation's AI off (as `disable-ai` does, with
/// its `ai.disabled` if it was on), marked as needing a human (the inbox), and the
/// `handoff.requested` event. Last in the transaction:
/// the events lock the account's row.
pub async fn record(conn: &mut AsyncPgConnection, turn: &Turn, reason: &str) -> ReplyResult<()> {
    let (account_id, id) = (turn.account_id, turn.conversation_id);
    let switched = conversation::set_ai_enabled(conn, account_id, id, false).await?;
    if switched.is_some_and(|s| s.changed) {
        let disabled = NewEvent::about(account_id, EventType::AiDisabled, id);
        event::insert(conn, &disabled).await?;
    }
    conversation::mark_handoff(conn, account_id, id).await?;
    event::insert_handoff(conn, account_id, id, reason).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_message_wins_then_the_models_words_then_the_default() {
        let mut handoff = Handoff {
            enabled: true,
            instructions: String::new(),
            message: "A colleague takes over.".into(),
        };
        let own = || Some("Let me get someone.".to_owned());
        assert_eq!(
            words(&handoff, own()),
            ("A colleague takes over.".into(), false)
        );
        handoff.message = "  ".into();
        assert_eq!(words(&handoff, own()), ("Let me get someone.".into(), true));
        assert_eq!(words(&handoff, None), (DEFAULT_MESSAGE.into(), false));
    }

    #[test]
    fn a_reason_is_its_text_trimmed_and_bounded() {
        assert_eq!(reason(&json!({ "reason": " angry " })), "angry");
        assert_eq!(reason(&json!({})), "");
        assert_eq!(reason(&json!("not an object")), "");
        let long = "x".repeat(MAX_REASON_CHARS + 5);
        assert_eq!(
            reason(&json!({ "reason": long })).chars().count(),
            MAX_REASON_CHARS
        );
    }
}
