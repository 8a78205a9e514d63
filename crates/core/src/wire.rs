//! Request and response bodies of every endpoint, exactly as they travel.
//!
//! Field names follow Famulor's API; see docs/api.md for where we add our own.

pub mod account;
pub mod assistants;
pub mod audit;
pub mod conversations;
pub mod events;
pub mod generate_reply;
pub mod inbox;
pub mod knowledge;
pub mod operators;
pub mod stats;
pub mod tools;
pub mod usage;
pub mod webhooks;
pub mod widgets;

use serde::{Deserialize, Serialize};

pub use account::Me;
pub use assistants::{
    Assistant, AssistantInput, AssistantList, AssistantResponse, Handoff, HandoffInput,
    KnowledgeMode, LlmProvider, PostCallField, PostCallType,
};
pub use audit::{
    AuditAction, AuditActor, AuditActorType, AuditEntry, AuditPage, AuditQuery, AuditTarget,
};
pub use conversations::{
    AiToggleResponse, ConversationHistory, ConversationPage, ConversationState,
    ConversationSummary, HistoryMessage, ListConversationsQuery, Role,
};
pub use events::{
    Event, EventMessage, EventType, OperatorMessageInput, OperatorMessageResponse, OptOutInput,
    OptOutResponse,
};
pub use generate_reply::{FunctionCall, GenerateReplyRequest, GenerateReplyResponse};
pub use inbox::{AssignInput, AssignResponse, Note, NoteInput, NoteList, NoteResponse};
pub use knowledge::{
    Document, DocumentData, DocumentList, DocumentResponse, DocumentStatus, DocumentType,
    KnowledgeBase, KnowledgeBaseInput, KnowledgeBaseList, KnowledgeBaseResponse,
    KnowledgeBaseStatus, PassageRef, SearchHit, SearchInput, SearchResults,
};
pub use operators::{
    Author, Operator, OperatorInput, OperatorList, OperatorResponse, OperatorRole, OperatorUpdate,
};
pub use stats::{HandoffReason, StatsGroup, StatsQuery, StatsResponse, StatsRow};
pub use tools::{
    DeletedResponse, HttpMethod, ParameterType, Tool, ToolHeader, ToolInput, ToolList,
    ToolParameter, ToolResponse,
};
pub use usage::{UsageGroup, UsageQuery, UsageResponse, UsageRow};
pub use webhooks::{Webhook, WebhookInput, WebhookList, WebhookPayload, WebhookResponse};
pub use widgets::{
    Widget, WidgetHistory, WidgetHistoryMessage, WidgetInput, WidgetList, WidgetMessage,
    WidgetResponse,
};

/// The `variables` of assistants and conversations: a flat JSON object.
pub type Variables = serde_json::Map<String, serde_json::Value>;

/// Query of the lists paged in id order: `GET /api/user/assistants/get` and `GET /api/user/tools`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
pub struct PageQuery {
    /// 1..=100, default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub per_page: Option<u32>,
    /// The `next_cursor` of the page before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 512))]
    pub cursor: Option<String>,
}
