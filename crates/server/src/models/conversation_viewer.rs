//! `conversation_viewers`: who has a conversation open in the console, as each open page says
//! every [`HEARTBEAT_SECS`] seconds.

use diesel::prelude::*;
use diesel::sql_types::{Bytea, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// How often an open conversation page says it is open.
pub const HEARTBEAT_SECS: u64 = 20;

#[derive(QueryableByName)]
struct Viewer {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Notes that session `session_hash` (of `name`) has conversation `id` open, and returns the
/// names of the others who had it open within the last minute (three heartbeats), each once.
/// The caller checked that the conversation is the account's.
pub async fn seen(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    session_hash: &[u8],
    name: &str,
) -> QueryResult<Vec<String>> {
    let others: Vec<Viewer> = diesel::sql_query(
        "WITH mine AS (
             INSERT INTO conversation_viewers (conversation_id, session_hash, name)
             VALUES ($1, $2, $3)
             ON CONFLICT (conversation_id, session_hash)
             DO UPDATE SET seen_at = now(), name = EXCLUDED.name),
         gone AS (
             DELETE FROM conversation_viewers
             WHERE conversation_id = $1 AND seen_at < now() - interval '1 minute')
         SELECT DISTINCT name FROM conversation_viewers
         WHERE conversation_id = $1 AND session_hash <> $2
           AND seen_at >= now() - interval '1 minute'
         ORDER BY name",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Bytea, _>(session_hash)
    .bind::<Text, _>(name)
    .load(conn)
    .await?;
    Ok(others.into_iter().map(|viewer| viewer.name).collect())
}

/// Deletes the rows of pages closed over an hour ago that no later look at their conversation
/// cleared (the daily sweep's).
pub async fn purge_gone(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::sql_query("DELETE FROM conversation_viewers WHERE seen_at < now() - interval '1 hour'")
        .execute(conn)
        .await
}
