//! `tool_calls`: the journal of calls to assistants' tools, written before each call is made
//! and completed with its result after, so that no retry of a request calls a tool again.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int8, Jsonb, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::db::KeepPrepared;
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

/// Journals a call about to be made for the turn of `message_id`; returns its id, or `None`
/// (nothing written) if the turn is no longer this attempt's: its queue row gone (given up, or
/// released by a retry that took its idempotency key over) or its lease run out (presumed
/// dead). The row is locked (`FOR KEY SHARE`, which a lease renewal does not wait for) until
/// the insert commits, so a retry that releases the turn does so after this journal entry is
/// visible and reads it, and never makes the call again.
pub async fn begin(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    idempotency_key: Option<&str>,
    message_id: i64,
    name: &str,
    arguments: &Value,
) -> QueryResult<Option<i64>> {
    #[derive(QueryableByName)]
    struct Journaled {
        #[diesel(sql_type = Int8)]
        id: i64,
    }
    let journaled: Option<Journaled> = diesel::sql_query(
        "INSERT INTO tool_calls (account_id, idempotency_key, message_id, name, arguments)
         SELECT $1, $2, $3, $4, $5 FROM (
             SELECT 1 FROM pending_replies
             WHERE message_id = $3 AND lease_until > now() FOR KEY SHARE) AS held
         RETURNING id",
    )
    .bind::<Int8, _>(account_id)
    .bind::<Nullable<Text>, _>(idempotency_key)
    .bind::<Int8, _>(message_id)
    .bind::<Text, _>(name)
    .bind::<Jsonb, _>(arguments)
    .keep_prepared()
    .get_result(conn)
    .await
    .optional()?;
    Ok(journaled.map(|row| row.id))
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
