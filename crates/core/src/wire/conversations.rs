//! `GET /api/conversations/{uuid}`, `GET /api/user/conversations` and the takeover switches.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{FunctionCall, Variables};
use crate::Money;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One message of a conversation's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryMessage {
    pub role: Role,
    pub content: String,
    /// Functions the assistant called for this reply (assistant messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_calls: Option<Vec<FunctionCall>>,
    /// What this reply cost (assistant messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Money>,
    pub created_at: DateTime<Utc>,
}

/// `GET /api/conversations/{uuid}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationHistory {
    /// Always `true`.
    pub status: bool,
    pub id: Uuid,
    pub assistant_id: i64,
    pub customer_identifier: String,
    pub ai_enabled: bool,
    pub total_cost: Money,
    /// Oldest first.
    pub history: Vec<HistoryMessage>,
    /// The assistant's defaults overlaid with the conversation's own values.
    pub variables: Variables,
}

/// One conversation in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub id: Uuid,
    pub assistant_id: i64,
    /// `api` for conversations created by generate-reply.
    #[serde(rename = "type")]
    pub kind: String,
    pub variables: Variables,
    pub message_count: i64,
    pub total_cost: Money,
    pub ai_enabled: bool,
    /// The `customer_identifier`.
    pub external_identifier: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/user/conversations`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationPage {
    pub data: Vec<ConversationSummary>,
    pub path: String,
    pub per_page: u32,
    /// Pass as `cursor` for the next (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
    /// Pass as `cursor` for the previous (newer) page; `None` on the first page.
    pub prev_cursor: Option<String>,
}

/// Query of `GET /api/user/conversations`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListConversationsQuery {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_identifier: Option<String>,
    /// 1..=100, default 15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_page: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Answer of `disable-ai` and `enable-ai`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiToggleResponse {
    /// Always `true`.
    pub status: bool,
    pub ai_enabled: bool,
}
