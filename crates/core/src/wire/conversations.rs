//! `GET /api/conversations/{uuid}`, `GET /api/user/conversations` and the takeover switches.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{FunctionCall, Variables};
use crate::Money;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// The customer.
    User,
    /// The AI assistant.
    Assistant,
    /// A person of the business, writing in the assistant's place.
    Operator,
}

/// Whether a conversation is going on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConversationState {
    /// Going on.
    #[default]
    Active,
    /// Its assistant's inactivity timeout passed after its last message.
    Ended,
}

impl ConversationState {
    /// `ended` when it has an end time.
    pub fn of(ended_at: Option<DateTime<Utc>>) -> Self {
        if ended_at.is_some() {
            Self::Ended
        } else {
            Self::Active
        }
    }

    /// As sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Ended => "ended",
        }
    }
}

/// One message of a conversation's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// Functions the assistant called for this reply (assistant messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub function_calls: Option<Vec<FunctionCall>>,
    /// The knowledge-base passages the reply was given (assistant messages of an assistant
    /// with a knowledge base only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub knowledge: Option<Vec<super::PassageRef>>,
    /// What this reply cost (assistant messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub cost: Option<Money>,
    /// Who wrote it (operator messages only): the operator, or the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub author: Option<super::Author>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// `GET /api/conversations/{uuid}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationHistory {
    /// Always `true`.
    pub status: bool,
    /// The conversation's id.
    pub id: Uuid,
    /// The assistant it belongs to.
    pub assistant_id: i64,
    /// The customer, as given to generate-reply.
    pub customer_identifier: String,
    /// False while a human has taken the conversation over.
    pub ai_enabled: bool,
    /// What its replies cost, summed.
    pub total_cost: Money,
    /// Prompt tokens of its replies, summed (0 from servers that do not count them).
    #[serde(default)]
    pub prompt_tokens: i64,
    /// Completion tokens of its replies, summed.
    #[serde(default)]
    pub completion_tokens: i64,
    /// The customer opted out (an SMS `STOP`): no AI reply, no operator message, no charge.
    #[serde(default)]
    pub opted_out: bool,
    /// The operator the conversation is assigned to; `null`: no one.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub assignee_id: Option<i64>,
    /// When the model handed the conversation over (`handoff.requested`); `null` once the AI is
    /// on again. With no assignee, the conversation needs a human.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub handoff_requested_at: Option<DateTime<Utc>>,
    /// `active`, or `ended` once its assistant's `conversation_inactivity_timeout` passed
    /// after its last message (the next customer message makes it `active` again). Famulor's
    /// answers use `status` for the envelope's `true`, hence a field of its own.
    #[serde(default)]
    pub state: ConversationState,
    /// When it last ended; `null` while active.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub ended_at: Option<DateTime<Utc>>,
    /// What the assistant's `post_call_schema` found when it last ended (empty until then).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub extracted_variables: Variables,
    /// What the assistant remembers of the messages that no longer fit its prompt: a summary
    /// its model keeps, sent in every prompt before the recent messages. `null` while the
    /// whole history fits.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub summary: Option<String>,
    /// When the newest message the summary holds was written: the messages up to it reach the
    /// model only through the summary. `null` without a summary.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub summary_through: Option<DateTime<Utc>>,
    /// The newest messages (100 unless `per_page` says otherwise), oldest first.
    pub history: Vec<HistoryMessage>,
    /// The assistant's defaults overlaid with the conversation's own values.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub variables: Variables,
    /// Pass as `cursor` for the messages before these; `None` when there are none.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub next_cursor: Option<String>,
}

/// One conversation in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationSummary {
    /// The conversation's id.
    pub id: Uuid,
    /// The assistant it belongs to.
    pub assistant_id: i64,
    /// `api` for conversations created by generate-reply.
    #[serde(rename = "type")]
    pub kind: String,
    /// The conversation's variables.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub variables: Variables,
    /// Messages in the conversation, both sides.
    pub message_count: i64,
    /// What its replies cost, summed.
    pub total_cost: Money,
    /// Prompt tokens of its replies, summed (0 from servers that do not count them).
    #[serde(default)]
    pub prompt_tokens: i64,
    /// Completion tokens of its replies, summed.
    #[serde(default)]
    pub completion_tokens: i64,
    /// The customer opted out (an SMS `STOP`): no AI reply, no operator message, no charge.
    #[serde(default)]
    pub opted_out: bool,
    /// False while a human has taken the conversation over.
    pub ai_enabled: bool,
    /// The operator the conversation is assigned to; `null`: no one.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub assignee_id: Option<i64>,
    /// When the model handed the conversation over (`handoff.requested`); `null` once the AI is
    /// on again. With no assignee, the conversation needs a human.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub handoff_requested_at: Option<DateTime<Utc>>,
    /// `active`, or `ended` once its assistant's `conversation_inactivity_timeout` passed
    /// after its last message (the next customer message makes it `active` again). Famulor's
    /// answers use `status` for the envelope's `true`, hence a field of its own.
    #[serde(default)]
    pub state: ConversationState,
    /// When it last ended; `null` while active.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub ended_at: Option<DateTime<Utc>>,
    /// What the assistant's `post_call_schema` found when it last ended (empty until then).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub extracted_variables: Variables,
    /// The `customer_identifier`.
    pub external_identifier: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed (a message, a switch of `ai_enabled`).
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/user/conversations`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationPage {
    /// The conversations of this page.
    pub data: Vec<ConversationSummary>,
    /// The list's path.
    pub path: String,
    /// The page size used.
    pub per_page: u32,
    /// Pass as `cursor` for the next (older) page; `None` on the last page.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub next_cursor: Option<String>,
    /// Pass as `cursor` for the previous (newer) page; `None` on the first page.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub prev_cursor: Option<String>,
}

/// Query of `GET /api/user/conversations`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
pub struct ListConversationsQuery {
    /// Only conversations of this `type` (`api` for generate-reply).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 32))]
    pub kind: Option<String>,
    /// Only this assistant's conversations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1))]
    pub assistant_id: Option<i64>,
    /// Only this customer's conversations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 255))]
    pub external_identifier: Option<String>,
    /// One of the inbox's views: `needs_human` (the model handed over and no one is assigned)
    /// or `unassigned` (the AI is off and no one is assigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(pattern = "^(needs_human|unassigned)$"))]
    pub view: Option<String>,
    /// Only conversations assigned to this operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1))]
    pub assignee_id: Option<i64>,
    /// 1..=100, default 15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub per_page: Option<u32>,
    /// A `next_cursor` or `prev_cursor` of an earlier page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 512))]
    pub cursor: Option<String>,
}

/// Answer of `disable-ai` and `enable-ai`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AiToggleResponse {
    /// Always `true`.
    pub status: bool,
    /// False while a human has taken the conversation over.
    pub ai_enabled: bool,
}
