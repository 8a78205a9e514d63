//! `GET /api/user/audit`: who did what to the account, and when, newest first.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AuditAction {
    /// Someone signed in to the console (`details.method`: `password` or `api_key`).
    #[serde(rename = "console.signed_in")]
    ConsoleSignedIn,
    /// A sign-in with an operator's email failed (`details.email`: the email tried).
    #[serde(rename = "console.sign_in_failed")]
    ConsoleSignInFailed,
    /// An API key was made (`details.prefix`).
    #[serde(rename = "api_key.created")]
    ApiKeyCreated,
    /// An API key was revoked (`details.prefix`).
    #[serde(rename = "api_key.revoked")]
    ApiKeyRevoked,
    /// An operator was added (`details`: `email`, `name`, `role`).
    #[serde(rename = "operator.created")]
    OperatorCreated,
    /// An operator's name or role changed (`details`: `old_role`, `new_role`, and `old_name`,
    /// `new_name` when the name changed).
    #[serde(rename = "operator.updated")]
    OperatorUpdated,
    /// An operator was removed (`details`: `email`, `name`, `role`).
    #[serde(rename = "operator.removed")]
    OperatorRemoved,
    /// An operator set their password through their link.
    #[serde(rename = "operator.password_set")]
    OperatorPasswordSet,
    /// A new password link was made for an operator (the old one stops working).
    #[serde(rename = "operator.password_link_created")]
    OperatorPasswordLinkCreated,
    /// An assistant was created (`details.name`).
    #[serde(rename = "assistant.created")]
    AssistantCreated,
    /// An assistant was changed (`details.name`, `details.fields`: the fields sent).
    #[serde(rename = "assistant.updated")]
    AssistantUpdated,
    /// An assistant was deleted (`details.name`); no endpoint deletes one yet.
    #[serde(rename = "assistant.deleted")]
    AssistantDeleted,
    /// A tool was created (`details.name`).
    #[serde(rename = "tool.created")]
    ToolCreated,
    /// A tool was changed (`details.name`, `details.fields`).
    #[serde(rename = "tool.updated")]
    ToolUpdated,
    /// A tool was deleted (`details.name`).
    #[serde(rename = "tool.deleted")]
    ToolDeleted,
    /// A knowledge base was created (`details.name`).
    #[serde(rename = "knowledge_base.created")]
    KnowledgeBaseCreated,
    /// A knowledge base was renamed or its language changed (`details.name`, `details.fields`).
    #[serde(rename = "knowledge_base.updated")]
    KnowledgeBaseUpdated,
    /// A knowledge base was deleted with its documents (`details.name`).
    #[serde(rename = "knowledge_base.deleted")]
    KnowledgeBaseDeleted,
    /// A document was added (`details`: `knowledge_base_id`, `name`, `type`).
    #[serde(rename = "document.added")]
    DocumentAdded,
    /// A document was deleted (`details`: `knowledge_base_id`, `name`).
    #[serde(rename = "document.deleted")]
    DocumentDeleted,
    /// A person took a conversation over: its AI is off.
    #[serde(rename = "conversation.taken_over")]
    ConversationTakenOver,
    /// A conversation was handed back to the AI.
    #[serde(rename = "conversation.handed_back")]
    ConversationHandedBack,
}

impl AuditAction {
    /// Every action, in the order above.
    pub const ALL: &'static [AuditAction] = &[
        Self::ConsoleSignedIn,
        Self::ConsoleSignInFailed,
        Self::ApiKeyCreated,
        Self::ApiKeyRevoked,
        Self::OperatorCreated,
        Self::OperatorUpdated,
        Self::OperatorRemoved,
        Self::OperatorPasswordSet,
        Self::OperatorPasswordLinkCreated,
        Self::AssistantCreated,
        Self::AssistantUpdated,
        Self::AssistantDeleted,
        Self::ToolCreated,
        Self::ToolUpdated,
        Self::ToolDeleted,
        Self::KnowledgeBaseCreated,
        Self::KnowledgeBaseUpdated,
        Self::KnowledgeBaseDeleted,
        Self::DocumentAdded,
        Self::DocumentDeleted,
        Self::ConversationTakenOver,
        Self::ConversationHandedBack,
    ];

    /// The action as sent and stored: `console.signed_in`, ….
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConsoleSignedIn => "console.signed_in",
            Self::ConsoleSignInFailed => "console.sign_in_failed",
            Self::ApiKeyCreated => "api_key.created",
            Self::ApiKeyRevoked => "api_key.revoked",
            Self::OperatorCreated => "operator.created",
            Self::OperatorUpdated => "operator.updated",
            Self::OperatorRemoved => "operator.removed",
            Self::OperatorPasswordSet => "operator.password_set",
            Self::OperatorPasswordLinkCreated => "operator.password_link_created",
            Self::AssistantCreated => "assistant.created",
            Self::AssistantUpdated => "assistant.updated",
            Self::AssistantDeleted => "assistant.deleted",
            Self::ToolCreated => "tool.created",
            Self::ToolUpdated => "tool.updated",
            Self::ToolDeleted => "tool.deleted",
            Self::KnowledgeBaseCreated => "knowledge_base.created",
            Self::KnowledgeBaseUpdated => "knowledge_base.updated",
            Self::KnowledgeBaseDeleted => "knowledge_base.deleted",
            Self::DocumentAdded => "document.added",
            Self::DocumentDeleted => "document.deleted",
            Self::ConversationTakenOver => "conversation.taken_over",
            Self::ConversationHandedBack => "conversation.handed_back",
        }
    }

    /// The action named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == text)
    }
}

/// Who did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditActorType {
    /// An operator signed in to the console (`operator_id`, `name` as it was then).
    Operator,
    /// An API key, through the API (`api_key_id`, `api_key_prefix`).
    ApiKey,
    /// The account's owner signed in to the console with an API key (`api_key_id`,
    /// `api_key_prefix`).
    ConsoleApiKey,
    /// `anyreply-server` on the command line (whoever runs it on the server).
    Cli,
    /// Someone not signed in: a failed sign-in.
    Anonymous,
}

impl AuditActorType {
    /// Every type, in the order above.
    pub const ALL: [AuditActorType; 5] = [
        Self::Operator,
        Self::ApiKey,
        Self::ConsoleApiKey,
        Self::Cli,
        Self::Anonymous,
    ];

    /// The type as sent and stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::ApiKey => "api_key",
            Self::ConsoleApiKey => "console_api_key",
            Self::Cli => "cli",
            Self::Anonymous => "anonymous",
        }
    }

    /// The type named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// Who did it: an operator, an API key, the command line, or someone not signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditActor {
    /// What kind of actor.
    #[serde(rename = "type")]
    pub kind: AuditActorType,
    /// The operator's id (`operator` only; they may since have been removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub operator_id: Option<i64>,
    /// The operator's name as it was then (`operator` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub name: Option<String>,
    /// The API key's id (`api_key`, `console_api_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub api_key_id: Option<i64>,
    /// The key's first 12 characters (`ark_` and 8 more), as `key revoke` takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, example = "ark_AbCdEfGh")
    )]
    pub api_key_prefix: Option<String>,
}

/// What it was done to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditTarget {
    /// `assistant`, `tool`, `knowledge_base`, `document`, `operator`, `api_key` or
    /// `conversation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id, as text (a conversation's is a UUID).
    pub id: String,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Orders the log: a later entry has a greater id.
    pub id: i64,
    /// When it was done.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: AuditActor,
    /// What was done.
    pub action: AuditAction,
    /// What it was done to; absent for a sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub target: Option<AuditTarget>,
    /// A few facts of the action (a name, the roles before and after, …); see each action.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: Value,
}

/// Answer of `GET /api/user/audit`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    /// The entries, newest first.
    pub data: Vec<AuditEntry>,
    /// The page size used.
    pub per_page: u32,
    /// Pass as `cursor` for the next (older) page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// Query of `GET /api/user/audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
pub struct AuditQuery {
    /// 1..=100, default 15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub per_page: Option<u32>,
    /// The `next_cursor` of an earlier page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 512))]
    pub cursor: Option<String>,
    /// Only entries of this action (`operator.updated`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<AuditAction>))]
    pub action: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_and_actor_type_reads_back_as_sent() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(*action));
            let sent = serde_json::to_value(action).unwrap_or_default();
            assert_eq!(sent, action.as_str());
        }
        for kind in AuditActorType::ALL {
            assert_eq!(AuditActorType::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap_or_default(),
                kind.as_str()
            );
        }
        assert_eq!(AuditAction::parse("operator.deleted"), None);
    }
}
