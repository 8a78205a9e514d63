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

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub id: i64,
    pub turn_id: i64,
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
        .order((messages::turn_id.asc(), messages::id.asc()))
        .select(MessageRow::as_select())
        .load(conn)
        .await
}

/// Up to `limit` messages before a point in the history, newest first: one page of a walk
/// back through history that stops as soon as the prompt budget is spent. Start with
/// `(turn_id, 0)` to read the turns before `turn_id`; continue from the last row's position.
pub async fn newest_before(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    (turn_id, id): (i64, i64),
    limit: i64,
) -> QueryResult<Vec<MessageRow>> {
    messages::table
        .filter(messages::conversation_id.eq(conversation_id))
        .filter(
            messages::turn_id
                .lt(turn_id)
                .or(messages::turn_id.eq(turn_id).and(messages::id.lt(id))),
        )
        .order((messages::turn_id.desc(), messages::id.desc()))
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)
        .await
}
