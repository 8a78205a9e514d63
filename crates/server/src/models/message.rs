//! Messages of a conversation, oldest first by `id`.

use anyreply_core::Money;
use anyreply_core::wire::{FunctionCall, HistoryMessage, Role};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::schema::messages;

pub const ROLE_USER: &str = "user";
pub const ROLE_ASSISTANT: &str = "assistant";

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub id: i64,
    pub role: String,
    pub content: String,
    pub function_calls: Option<Value>,
    pub cost: Option<i64>,
    pub created_at: DateTime<Utc>,
}

impl MessageRow {
    pub fn role(&self) -> Role {
        if self.role == ROLE_ASSISTANT {
            Role::Assistant
        } else {
            Role::User
        }
    }

    pub fn into_history(self) -> HistoryMessage {
        let role = self.role();
        let function_calls = match (role, self.function_calls) {
            (Role::Assistant, Some(calls)) => {
                Some(serde_json::from_value::<Vec<FunctionCall>>(calls).unwrap_or_default())
            }
            (Role::Assistant, None) => Some(Vec::new()),
            (Role::User, _) => None,
        };
        HistoryMessage {
            role,
            content: self.content,
            function_calls,
            cost: self.cost.map(Money::from_subunits),
            created_at: self.created_at,
        }
    }
}

/// The whole history of a conversation, oldest first.
pub async fn history(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
) -> QueryResult<Vec<MessageRow>> {
    messages::table
        .filter(messages::conversation_id.eq(conversation_id))
        .order(messages::id.asc())
        .select(MessageRow::as_select())
        .load(conn)
        .await
}

/// Up to `limit` messages older than `before_id`, newest first: one page of a walk back
/// through history that stops as soon as the prompt budget is spent.
pub async fn newest_before(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    before_id: i64,
    limit: i64,
) -> QueryResult<Vec<MessageRow>> {
    messages::table
        .filter(messages::conversation_id.eq(conversation_id))
        .filter(messages::id.lt(before_id))
        .order(messages::id.desc())
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)
        .await
}
