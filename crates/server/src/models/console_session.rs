//! `console_sessions` and `console_sign_in_failures`: the operator console's signed-in
//! browsers (an operator's, or the owner's by an API key), and the failed sign-ins that slow
//! down guessing.

use diesel::prelude::*;
use diesel::sql_types::{Array, Bytea, Int4, Int8, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::{Conn, KeepPrepared};

/// Failed sign-ins are counted in windows of this many seconds.
pub const FAILURE_WINDOW_SECS: i64 = 300;

/// Who a session is: an operator, or an API key (the account's owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Operator(i64),
    ApiKey(i64),
}

/// A live session: whose it is, and the token its forms carry.
#[derive(Debug, Clone, QueryableByName)]
pub struct SessionRow {
    #[diesel(sql_type = Int8)]
    pub account_id: i64,
    #[diesel(sql_type = Nullable<Int8>)]
    pub operator_id: Option<i64>,
    /// The owner's API key, for a session opened with one.
    #[diesel(sql_type = Nullable<Int8>)]
    pub api_key_id: Option<i64>,
    /// The operator's role and name as they are now (an API key's session has neither).
    #[diesel(sql_type = Nullable<Text>)]
    pub role: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub name: Option<String>,
    #[diesel(sql_type = Text)]
    pub csrf_token: String,
}

pub async fn create(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    account_id: i64,
    holder: Holder,
    csrf_token: &str,
) -> QueryResult<()> {
    let (operator_id, api_key_id) = match holder {
        Holder::Operator(id) => (Some(id), None),
        Holder::ApiKey(id) => (None, Some(id)),
    };
    diesel::sql_query(
        "INSERT INTO console_sessions (token_hash, account_id, operator_id, api_key_id, csrf_token)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind::<Bytea, _>(token_hash)
    .bind::<Int8, _>(account_id)
    .bind::<Nullable<Int8>, _>(operator_id)
    .bind::<Nullable<Int8>, _>(api_key_id)
    .bind::<Text, _>(csrf_token)
    .keep_prepared()
    .execute(conn)
    .await
    .map(drop)
}

/// Whether the session `s` may still be used: used within the last 12 hours, and its key not
/// revoked (an operator's session is deleted with the operator).
const LIVE: &str = "s.last_seen_at > now() - make_interval(hours => 12)
    AND (s.operator_id IS NOT NULL
         OR EXISTS (SELECT 1 FROM api_keys k WHERE k.id = s.api_key_id AND k.revoked_at IS NULL))";

/// The session of `token_hash` if it is live, marked as seen now, with its operator's role
/// and name as they are now.
pub async fn find_live(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> QueryResult<Option<SessionRow>> {
    diesel::sql_query(format!(
        "UPDATE console_sessions s SET last_seen_at = now()
         WHERE s.token_hash = $1 AND {LIVE}
         RETURNING s.account_id, s.operator_id, s.api_key_id, s.csrf_token,
             (SELECT o.role FROM operators o WHERE o.id = s.operator_id) AS role,
             (SELECT o.name FROM operators o WHERE o.id = s.operator_id) AS name"
    ))
    .bind::<Bytea, _>(token_hash)
    .keep_prepared()
    .get_result(conn)
    .await
    .optional()
}

#[derive(QueryableByName)]
struct Live {
    #[diesel(sql_type = Bytea)]
    token_hash: Vec<u8>,
}

/// Which of the sessions `token_hashes` are live (as [`find_live`] judges, without marking
/// them seen).
pub async fn live_among(
    conn: &mut impl Conn,
    token_hashes: &[Vec<u8>],
) -> QueryResult<Vec<Vec<u8>>> {
    let live: Vec<Live> = diesel::sql_query(format!(
        "SELECT s.token_hash FROM console_sessions s WHERE s.token_hash = ANY($1) AND {LIVE}"
    ))
    .bind::<Array<Bytea>, _>(token_hashes)
    .keep_prepared()
    .load(conn)
    .await?;
    Ok(live.into_iter().map(|l| l.token_hash).collect())
}

pub async fn delete(conn: &mut AsyncPgConnection, token_hash: &[u8]) -> QueryResult<()> {
    diesel::sql_query("DELETE FROM console_sessions WHERE token_hash = $1")
        .bind::<Bytea, _>(token_hash)
        .keep_prepared()
        .execute(conn)
        .await
        .map(drop)
}

#[derive(QueryableByName)]
struct Failures {
    #[diesel(sql_type = Int4)]
    failures: i32,
}

/// Failed sign-ins from `client` in the current window.
pub async fn failures(conn: &mut AsyncPgConnection, client: &str) -> QueryResult<i32> {
    let found: Option<Failures> = diesel::sql_query(format!(
        "SELECT failures FROM console_sign_in_failures
         WHERE client = $1
           AND window_start = floor(extract(epoch FROM now()) / {FAILURE_WINDOW_SECS})::int8"
    ))
    .bind::<Text, _>(client)
    .keep_prepared()
    .get_result(conn)
    .await
    .optional()?;
    Ok(found.map_or(0, |f| f.failures))
}

/// Counts a failed sign-in from `client`.
pub async fn count_failure(conn: &mut AsyncPgConnection, client: &str) -> QueryResult<()> {
    diesel::sql_query(format!(
        "INSERT INTO console_sign_in_failures AS f (client, window_start, failures)
         VALUES ($1, floor(extract(epoch FROM now()) / {FAILURE_WINDOW_SECS})::int8, 1)
         ON CONFLICT (client) DO UPDATE SET
             failures = CASE WHEN f.window_start = EXCLUDED.window_start THEN f.failures + 1 ELSE 1 END,
             window_start = EXCLUDED.window_start"
    ))
    .bind::<Text, _>(client)
    .keep_prepared()
    .execute(conn)
    .await
    .map(drop)
}
