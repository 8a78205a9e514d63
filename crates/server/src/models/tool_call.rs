//! `tool_calls`: the journal of calls to assistants' tools, written before each call is made
//! and completed with its result after, so that no retry of a request calls a tool again.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::schema::tool_calls;

/// A journaled call.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tool_calls)]
pub struct ToolCallRow {
    pub id: i64,
    pub name: String,
    pub arguments: Value,
    /// `None`: the call was made (or about to be) and its outcome is unknown.
    pub result: Option<Value>,
    pub is_error: Option<bool>,
}

/// The calls made so far under a request's idempotency key, oldest first.
pub async fn of_request(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    idempotency_key: &str,
) -> QueryResult<Vec<ToolCallRow>> {
    tool_calls::table
        .filter(tool_calls::account_id.eq(account_id))
        .filter(tool_calls::idempotency_key.eq(idempotency_key))
        .order(tool_calls::id.asc())
        .select(ToolCallRow::as_select())
        .load(conn)
        .await
}

/// Journals a call about to be made; returns its id.
pub async fn begin(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    idempotency_key: Option<&str>,
    message_id: i64,
    name: &str,
    arguments: &Value,
) -> QueryResult<i64> {
    diesel::insert_into(tool_calls::table)
        .values((
            tool_calls::account_id.eq(account_id),
            tool_calls::idempotency_key.eq(idempotency_key),
            tool_calls::message_id.eq(message_id),
            tool_calls::name.eq(name),
            tool_calls::arguments.eq(arguments),
        ))
        .returning(tool_calls::id)
        .get_result(conn)
        .await
}

/// Records the result of a journaled call.
pub async fn finish(
    conn: &mut AsyncPgConnection,
    id: i64,
    result: &Value,
    is_error: bool,
) -> QueryResult<()> {
    diesel::update(tool_calls::table.find(id))
        .set((
            tool_calls::result.eq(result),
            tool_calls::is_error.eq(is_error),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Forgets calls made before `cutoff`.
pub async fn purge_older_than(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::delete(tool_calls::table.filter(tool_calls::created_at.lt(cutoff)))
        .execute(conn)
        .await
}
