//! Events: every change to a conversation, as `GET /api/events` streams them (Server-Sent
//! Events: `id:` the event's id, `event:` its type, `data:` this JSON) and webhooks deliver them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{FunctionCall, Role};
use crate::{ErrorCode, Money};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventType {
    /// A customer's message was stored (answered or not).
    #[serde(rename = "message.received")]
    MessageReceived,
    /// The assistant's reply was stored.
    #[serde(rename = "reply.created")]
    ReplyCreated,
    /// No reply could be had for a customer's message; it was taken back, nothing charged.
    #[serde(rename = "reply.failed")]
    ReplyFailed,
    /// A person of the business wrote to the customer.
    #[serde(rename = "operator.message")]
    OperatorMessage,
    /// Human takeover: the AI is silent in the conversation.
    #[serde(rename = "ai.disabled")]
    AiDisabled,
    /// The AI answers the conversation again.
    #[serde(rename = "ai.enabled")]
    AiEnabled,
    /// The model handed the conversation to a person (`transfer_to_human`): its AI is now off
    /// (an `ai.disabled` comes with it), and `reason` says why.
    #[serde(rename = "handoff.requested")]
    HandoffRequested,
    /// The conversation was assigned to an operator (`assignee`) or to no one (no `assignee`),
    /// by `by`.
    #[serde(rename = "conversation.assigned")]
    ConversationAssigned,
    /// An operator wrote an internal note (`note`).
    #[serde(rename = "note.created")]
    NoteCreated,
    /// The conversation ended: its assistant's `conversation_inactivity_timeout` passed
    /// after its last message. `extracted_variables` holds what the post-call schema found
    /// (`extraction_error` says why it found nothing). The next customer message reopens it.
    #[serde(rename = "conversation.ended")]
    ConversationEnded,
}

impl EventType {
    /// Every type, in the order above.
    pub const ALL: &'static [EventType] = &[
        EventType::MessageReceived,
        EventType::ReplyCreated,
        EventType::ReplyFailed,
        EventType::OperatorMessage,
        EventType::AiDisabled,
        EventType::AiEnabled,
        EventType::HandoffRequested,
        EventType::ConversationAssigned,
        EventType::NoteCreated,
        EventType::ConversationEnded,
    ];

    /// The type as sent: `message.received`, ….
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::MessageReceived => "message.received",
            EventType::ReplyCreated => "reply.created",
            EventType::ReplyFailed => "reply.failed",
            EventType::OperatorMessage => "operator.message",
            EventType::AiDisabled => "ai.disabled",
            EventType::AiEnabled => "ai.enabled",
            EventType::HandoffRequested => "handoff.requested",
            EventType::ConversationAssigned => "conversation.assigned",
            EventType::NoteCreated => "note.created",
            EventType::ConversationEnded => "conversation.ended",
        }
    }

    /// The type named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.as_str() == text)
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Orders the account's events: each is greater than every earlier one's.
    pub id: i64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The conversation it happened to.
    pub conversation_id: Uuid,
    /// The conversation's customer.
    pub customer_identifier: String,
    /// The conversation's assistant.
    pub assistant_id: i64,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// The message, for the types that have one (all but `ai.*` and `handoff.requested`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub message: Option<EventMessage>,
    /// Why the model handed over, in its words (`handoff.requested` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub reason: Option<String>,
    /// Who has the conversation now (`conversation.assigned`; absent there: no one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub assignee: Option<super::Author>,
    /// Who assigned it (`conversation.assigned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub by: Option<super::Author>,
    /// The note (`note.created`): for operators, never the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub note: Option<super::Note>,
    /// The values of the assistant's `post_call_schema` found in the conversation
    /// (`conversation.ended`; empty when it has no schema or nothing was found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, value_type = Option<Object>))]
    pub extracted_variables: Option<super::Variables>,
    /// Why nothing was extracted, when the model failed or answered nonsense
    /// (`conversation.ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub extraction_error: Option<String>,
}

/// The message of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventMessage {
    /// The message's id.
    pub id: i64,
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// Functions the assistant called for it (`reply.created` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub function_calls: Option<Vec<FunctionCall>>,
    /// The knowledge-base passages the reply was given (assistant messages of an assistant
    /// with a knowledge base only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub knowledge: Option<Vec<super::PassageRef>>,
    /// What the reply cost (`reply.created` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub cost: Option<Money>,
    /// Who wrote it (`operator.message` only): the operator, or the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub author: Option<super::Author>,
    /// Why no reply could be had (`reply.failed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub error_code: Option<ErrorCode>,
    /// Every customer message the failed reply was to answer, oldest first (`reply.failed`
    /// only): the earlier messages of its burst, which were answered `coalesced: true` and stay
    /// in the history for the conversation's next reply to answer, and this message itself
    /// (the last id), which is taken back. Precisely: the customer's messages since the
    /// conversation's last reply or operator message, at most the newest 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub burst_message_ids: Option<Vec<i64>>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// `POST /api/conversations/{uuid}/messages`: a person of the business writes to the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorMessageInput {
    /// 1 to 10,000 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 10000))]
    pub content: String,
    /// The operator who writes (their name goes with the message, in the history, the event
    /// and the console); absent: the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub operator_id: Option<i64>,
}

/// Answer of `POST /api/conversations/{uuid}/messages` (`201`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorMessageResponse {
    /// Always `true`.
    pub status: bool,
    /// The stored message (role `operator`).
    pub data: super::HistoryMessage,
}

/// `POST /api/automate/opt-out` and `POST /api/automate/opt-in`: a customer (by assistant and
/// `customer_identifier`, as given to generate-reply) stops or resumes messages, as an SMS
/// `STOP` or `START` does. The conversation is created if there is none yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OptOutInput {
    /// The assistant the customer talks to.
    pub assistant_id: i64,
    /// The customer.
    pub customer_identifier: String,
}

/// Answer of opt-out and opt-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OptOutResponse {
    /// Always `true`.
    pub status: bool,
    /// The customer's conversation with the assistant.
    pub conversation_id: Uuid,
    /// Whether the customer is now opted out.
    pub opted_out: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_travel_by_their_dotted_names() {
        for &kind in EventType::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
        }
    }
}
