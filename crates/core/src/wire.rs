//! Request and response bodies of every endpoint, exactly as they travel.
//!
//! Field names follow Famulor's API; see the README for where we add our own.

pub mod account;
pub mod assistants;
pub mod conversations;
pub mod generate_reply;
pub mod tools;

pub use account::Me;
pub use assistants::{Assistant, AssistantInput, AssistantList, AssistantResponse, LlmProvider};
pub use conversations::{
    AiToggleResponse, ConversationHistory, ConversationPage, ConversationSummary, HistoryMessage,
    ListConversationsQuery, Role,
};
pub use generate_reply::{FunctionCall, GenerateReplyRequest, GenerateReplyResponse};
pub use tools::{
    DeletedResponse, HttpMethod, ParameterType, Tool, ToolHeader, ToolInput, ToolList,
    ToolParameter, ToolResponse,
};

/// The `variables` of assistants and conversations: a flat JSON object.
pub type Variables = serde_json::Map<String, serde_json::Value>;
