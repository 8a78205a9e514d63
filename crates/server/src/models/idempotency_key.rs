//! `idempotency_keys`: each POST's `Idempotency-Key`, its request's fingerprint, who holds it
//! while the request runs, and the stored answer.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Bool, Bytea, Double, Int4, Int8, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::db::{Conn, KeepPrepared};
use crate::schema::idempotency_keys;

/// Claims a new key for the holder `token`; `false` if the key exists.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    key: &str,
    fingerprint: &[u8],
    lease: Duration,
    token: Uuid,
) -> QueryResult<bool> {
    let inserted = diesel::sql_query(
        "INSERT INTO idempotency_keys (account_id, key, fingerprint, locked_until, token)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5)
         ON CONFLICT (account_id, key) DO NOTHING",
    )
    .bind::<Int8, _>(account_id)
    .bind::<Text, _>(key)
    .bind::<Bytea, _>(fingerprint)
    .bind::<Double, _>(lease.as_secs_f64())
    .bind::<SqlUuid, _>(token)
    .keep_prepared()
    .execute(conn)
    .await?;
    Ok(inserted == 1)
}

/// A key as found.
#[derive(Debug, QueryableByName)]
pub struct Existing {
    #[diesel(sql_type = Bytea)]
    pub fingerprint: Vec<u8>,
    #[diesel(sql_type = Nullable<Int4>)]
    pub response_status: Option<i32>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub response_body: Option<Value>,
    /// Its holder renews it: the request is still running.
    #[diesel(sql_type = Bool)]
    pub locked: bool,
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    key: &str,
) -> QueryResult<Option<Existing>> {
    diesel::sql_query(
        "SELECT fingerprint, response_status, response_body, locked_until > now() AS locked
         FROM idempotency_keys WHERE account_id = $1 AND key = $2",
    )
    .bind::<Int8, _>(account_id)
    .bind::<Text, _>(key)
    .keep_prepared()
    .get_result(conn)
    .await
    .optional()
}

#[derive(QueryableByName)]
struct TakenOver {
    #[diesel(sql_type = Nullable<Int8>)]
    message_id: Option<i64>,
}

/// Takes an unanswered key whose holder stopped renewing it over for `token`. `None` if it
/// is no longer takeable; else the customer message the old holder had queued, if any.
pub async fn take_over(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    key: &str,
    lease: Duration,
    token: Uuid,
) -> QueryResult<Option<Option<i64>>> {
    let taken: Option<TakenOver> = diesel::sql_query(
        "UPDATE idempotency_keys k SET locked_until = now() + make_interval(secs => $3), message_id = NULL, token = $4
         FROM (SELECT message_id FROM idempotency_keys WHERE account_id = $1 AND key = $2 FOR UPDATE) AS old
         WHERE k.account_id = $1 AND k.key = $2 AND k.response_status IS NULL AND k.locked_until <= now()
         RETURNING old.message_id",
    )
    .bind::<Int8, _>(account_id)
    .bind::<Text, _>(key)
    .bind::<Double, _>(lease.as_secs_f64())
    .bind::<SqlUuid, _>(token)
    .keep_prepared()
    .get_result(conn)
    .await
    .optional()?;
    Ok(taken.map(|t| t.message_id))
}

/// `statement` with the held key bound to `$1`, `$2`, `$3`; its `WHERE` must match the row
/// only while `token` holds it and it has no answer yet.
fn on_held_row<'a>(
    statement: &'static str,
    account_id: i64,
    key: &'a str,
    token: Uuid,
) -> diesel::query_builder::BoxedSqlQuery<'a, diesel::pg::Pg, diesel::query_builder::SqlQuery> {
    diesel::sql_query(statement)
        .into_boxed()
        .bind::<Int8, _>(account_id)
        .bind::<Text, _>(key)
        .bind::<SqlUuid, _>(token)
}

/// Stores the answer of a held key; `false` if `token` no longer holds it.
pub async fn complete(
    conn: &mut impl Conn,
    (account_id, key, token): (i64, &str, Uuid),
    status: u16,
    body: &Value,
) -> QueryResult<bool> {
    let rows = on_held_row(
        "UPDATE idempotency_keys SET response_status = $4, response_body = $5
         WHERE account_id = $1 AND key = $2 AND token = $3 AND response_status IS NULL",
        account_id,
        key,
        token,
    )
    .bind::<Int4, _>(i32::from(status))
    .bind::<Jsonb, _>(body)
    .keep_prepared()
    .execute(conn)
    .await?;
    Ok(rows == 1)
}

/// Notes the customer message a held key's request queued; `false` if no longer held.
pub async fn attach_message(
    conn: &mut impl Conn,
    (account_id, key, token): (i64, &str, Uuid),
    message_id: i64,
) -> QueryResult<bool> {
    let rows = on_held_row(
        "UPDATE idempotency_keys SET message_id = $4
         WHERE account_id = $1 AND key = $2 AND token = $3 AND response_status IS NULL",
        account_id,
        key,
        token,
    )
    .bind::<Int8, _>(message_id)
    .keep_prepared()
    .execute(conn)
    .await?;
    Ok(rows == 1)
}

/// Frees a held key, so that a retry runs anew.
pub async fn free(
    conn: &mut AsyncPgConnection,
    (account_id, key, token): (i64, &str, Uuid),
) -> QueryResult<()> {
    on_held_row(
        "DELETE FROM idempotency_keys
         WHERE account_id = $1 AND key = $2 AND token = $3 AND response_status IS NULL",
        account_id,
        key,
        token,
    )
    .keep_prepared()
    .execute(conn)
    .await
    .map(drop)
}

/// Stores an answer under a key nobody holds (a refusal whose transaction rolled back the
/// claim). A key claimed meanwhile is left as it is.
pub async fn insert_answered(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    key: &str,
    fingerprint: &[u8],
    status: u16,
    body: &Value,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO idempotency_keys (account_id, key, fingerprint, locked_until, token, response_status, response_body)
         VALUES ($1, $2, $3, now(), gen_random_uuid(), $4, $5)
         ON CONFLICT (account_id, key) DO NOTHING",
    )
    .bind::<Int8, _>(account_id)
    .bind::<Text, _>(key)
    .bind::<Bytea, _>(fingerprint)
    .bind::<Int4, _>(i32::from(status))
    .bind::<Jsonb, _>(body)
    .keep_prepared()
    .execute(conn)
    .await
    .map(drop)
}

/// Forgets keys made before `cutoff`.
pub async fn purge_older_than(
    conn: &mut AsyncPgConnection,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> QueryResult<usize> {
    diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(cutoff)))
        .execute(conn)
        .await
}
