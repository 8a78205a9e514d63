//! `Idempotency-Key` on POST requests: a retry with the same key and body gets the first
//! answer back (`Idempotent-Replayed: true`) instead of being done twice.
//!
//! Keys are scoped to the account and kept 48 hours. While the first request runs, the same key
//! gets `409 IDEMPOTENCY_CONFLICT`; with a different request, `422 IDEMPOTENCY_KEY_REUSED`. An
//! answer is stored in the same transaction as the work it reports, so no crash can separate
//! them. Errors before any work (validation, auth, rate limit) and retryable failures, which
//! leave no trace, are not stored: the key is free again.

use std::time::Duration;

use anyreply_core::{ErrorCode, FieldErrors};
use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Bytea, Double, Int4, Int8, Jsonb, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::schema::idempotency_keys;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// How long keys are kept.
pub const RETENTION: Duration = Duration::from_secs(48 * 3600);
const MAX_KEY_CHARS: usize = 255;

/// The right to run the request of one key, held until the answer is stored or the key freed.
#[derive(Debug, Clone)]
pub struct Claim {
    pub account_id: i64,
    pub key: String,
    /// This holder's token: writes by a holder the key was taken from change nothing.
    token: Uuid,
}

/// What the key says about this request.
#[derive(Debug)]
pub enum Begin {
    /// No key sent: run as usual.
    Unkeyed,
    /// First of its key (or taking over from a process that died): run, then store.
    Run(Claim),
    /// Answered before, stored, or refused: send this.
    Answer(Response),
}

/// SHA-256 of what identifies a request.
pub fn fingerprint(method: &str, path: &str, body: Option<&Value>) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    // `Value` prints object keys sorted, so formatting differences do not matter.
    if let Some(body) = body {
        hasher.update(body.to_string().as_bytes());
    }
    hasher.finalize().to_vec()
}

#[derive(QueryableByName)]
struct Existing {
    #[diesel(sql_type = Bytea)]
    fingerprint: Vec<u8>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Int4>)]
    response_status: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Jsonb>)]
    response_body: Option<Value>,
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct TakenOver {
    #[diesel(sql_type = diesel::sql_types::Nullable<Int8>)]
    message_id: Option<i64>,
}

/// Reads the `Idempotency-Key` header and claims the key, or says what to answer instead.
pub async fn begin(
    app: &App,
    account_id: i64,
    headers: &HeaderMap,
    fingerprint: Vec<u8>,
) -> ApiResult<Begin> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(Begin::Unkeyed);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_CHARS)
        .ok_or_else(|| {
            ApiError::validation(FieldErrors::single(
                "Idempotency-Key",
                "The Idempotency-Key must be 1 to 255 visible characters.",
            ))
        })?
        .to_owned();
    let lease = app.settings.reply_lease.as_secs_f64();
    let token = Uuid::new_v4();
    let mut conn = app.db().await?;
    let claimed = diesel::sql_query(
        "INSERT INTO idempotency_keys (account_id, key, fingerprint, locked_until, token)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5)
         ON CONFLICT (account_id, key) DO NOTHING",
    )
    .bind::<Int8, _>(account_id)
    .bind::<Text, _>(&key)
    .bind::<Bytea, _>(&fingerprint)
    .bind::<Double, _>(lease)
    .bind::<SqlUuid, _>(token)
    .execute(&mut conn)
    .await?;
    let claim = Claim {
        account_id,
        key,
        token,
    };
    if claimed == 1 {
        return Ok(Begin::Run(claim));
    }
    let existing: Option<Existing> = diesel::sql_query(
        "SELECT fingerprint, response_status, response_body, locked_until > now() AS locked
         FROM idempotency_keys WHERE account_id = $1 AND key = $2",
    )
    .bind::<Int8, _>(account_id)
    .bind::<Text, _>(&claim.key)
    .get_result(&mut conn)
    .await
    .optional()?;
    // Freed between our two statements: the other request failed retryably; try again.
    let Some(existing) = existing else {
        return Err(conflict());
    };
    if existing.fingerprint != fingerprint {
        return Err(ErrorCode::IdempotencyKeyReused.into());
    }
    if let (Some(status), Some(body)) = (existing.response_status, existing.response_body) {
        return Ok(Begin::Answer(replay(status, body)));
    }
    if existing.locked {
        return Err(conflict());
    }
    // The first request's process stopped renewing its claim: it died. Take over, and give up
    // the reply it had queued, so that the retry makes the only one.
    let taken: Option<TakenOver> = diesel::sql_query(
        "UPDATE idempotency_keys k SET locked_until = now() + make_interval(secs => $3), message_id = NULL, token = $4
         FROM (SELECT message_id FROM idempotency_keys WHERE account_id = $1 AND key = $2 FOR UPDATE) AS old
         WHERE k.account_id = $1 AND k.key = $2 AND k.response_status IS NULL AND k.locked_until <= now()
         RETURNING old.message_id",
    )
    .bind::<Int8, _>(account_id)
    .bind::<Text, _>(&claim.key)
    .bind::<Double, _>(lease)
    .bind::<SqlUuid, _>(token)
    .get_result(&mut conn)
    .await
    .optional()?;
    let Some(taken) = taken else {
        return Err(conflict());
    };
    if let Some(message_id) = taken.message_id {
        tracing::warn!(
            message_id,
            "taking over an idempotency key whose request died; releasing its reply"
        );
        crate::reply::turns::release(&mut conn, &[message_id]).await?;
    }
    Ok(Begin::Run(claim))
}

fn conflict() -> ApiError {
    ApiError::new(ErrorCode::IdempotencyConflict).with_retry_after(1)
}

fn replay(status: i32, body: Value) -> Response {
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

impl Claim {
    /// `statement` with this claim bound to `$1`, `$2`, `$3`; its `WHERE` must match the claim's
    /// row only while this request holds it (its token) and it has no answer yet.
    fn on_held_row(
        &self,
        statement: &'static str,
    ) -> diesel::query_builder::BoxedSqlQuery<'_, diesel::pg::Pg, diesel::query_builder::SqlQuery>
    {
        diesel::sql_query(statement)
            .into_boxed()
            .bind::<Int8, _>(self.account_id)
            .bind::<Text, _>(&self.key)
            .bind::<SqlUuid, _>(self.token)
    }

    /// Stores the answer; call inside the transaction of the work it reports. Fails (rolling
    /// that work back) if the claim was taken over meanwhile.
    pub async fn complete(
        &self,
        conn: &mut AsyncPgConnection,
        status: StatusCode,
        body: &impl Serialize,
    ) -> ApiResult<()> {
        let body = serde_json::to_value(body).unwrap_or(Value::Null);
        let rows = self
            .on_held_row(
                "UPDATE idempotency_keys SET response_status = $4, response_body = $5
                 WHERE account_id = $1 AND key = $2 AND token = $3 AND response_status IS NULL",
            )
            .bind::<Int4, _>(i32::from(status.as_u16()))
            .bind::<Jsonb, _>(body)
            .execute(conn)
            .await?;
        self.still_held(rows)
    }

    /// Remembers the customer message this request queued (inside the admitting transaction).
    pub async fn attach_message(
        &self,
        conn: &mut AsyncPgConnection,
        message_id: i64,
    ) -> ApiResult<()> {
        let rows = self
            .on_held_row(
                "UPDATE idempotency_keys SET message_id = $4
                 WHERE account_id = $1 AND key = $2 AND token = $3 AND response_status IS NULL",
            )
            .bind::<Int8, _>(message_id)
            .execute(conn)
            .await?;
        self.still_held(rows)
    }

    /// Keeps the claim alive while the request runs.
    pub async fn renew(&self, conn: &mut AsyncPgConnection, lease: Duration) -> ApiResult<()> {
        let rows = self
            .on_held_row(
                "UPDATE idempotency_keys SET locked_until = now() + make_interval(secs => $4)
                 WHERE account_id = $1 AND key = $2 AND token = $3 AND response_status IS NULL",
            )
            .bind::<Double, _>(lease.as_secs_f64())
            .execute(conn)
            .await?;
        self.still_held(rows)
    }

    fn still_held(&self, rows: usize) -> ApiResult<()> {
        if rows == 1 {
            Ok(())
        } else {
            tracing::warn!(key = %self.key, "an idempotency key was taken over while its request ran");
            Err(conflict())
        }
    }

    /// Settles the key after a failed request: invalid input or a retryable failure, which left
    /// no trace, frees the key; any other failure (or one after tools were called) is stored
    /// and replayed. Nothing happens if the key was taken over.
    pub async fn fail(&self, app: &App, error: &ApiError) {
        let settled = async {
            let mut conn = app.db().await?;
            // Invalid input and retryable failures left nothing behind: the key is free again.
            let traceless = error.code == ErrorCode::ValidationError || error.code.is_retryable();
            if traceless && !error.after_side_effects {
                self.on_held_row(
                    "DELETE FROM idempotency_keys
                     WHERE account_id = $1 AND key = $2 AND token = $3 AND response_status IS NULL",
                )
                .execute(&mut conn)
                .await?;
            } else {
                self.complete(&mut conn, error.status(), &error.body())
                    .await?;
            }
            Ok::<_, ApiError>(())
        };
        if let Err(problem) = settled.await {
            tracing::warn!(?problem.code, "could not settle an idempotency key; it frees itself when its lease ends");
        }
    }
}

/// Runs `work` in a transaction, under the request's `Idempotency-Key` if it has one, storing
/// its answer in the same transaction. For the simple POST endpoints; generate-reply stores its
/// answer where it records the reply.
pub async fn execute<T: Serialize + Send + Sync>(
    app: &App,
    account_id: i64,
    headers: &HeaderMap,
    fingerprint: Vec<u8>,
    work: impl for<'c> FnOnce(&'c mut AsyncPgConnection) -> BoxFuture<'c, ApiResult<(StatusCode, T)>>
    + Send,
) -> Response {
    let claim = match begin(app, account_id, headers, fingerprint).await {
        Ok(Begin::Answer(response)) => return response,
        Ok(Begin::Run(claim)) => Some(claim),
        Ok(Begin::Unkeyed) => None,
        Err(error) => return error.into_response(),
    };
    let result = async {
        let mut conn = app.db().await?;
        conn.transaction::<_, ApiError, _>(async |conn| {
            let (status, body) = work(conn).await?;
            if let Some(claim) = &claim {
                claim.complete(conn, status, &body).await?;
            }
            Ok((status, body))
        })
        .await
    }
    .await;
    match (result, claim) {
        (Ok((status, body)), _) => (status, Json(body)).into_response(),
        (Err(error), claim) => {
            if let Some(claim) = claim {
                claim.fail(app, &error).await;
            }
            error.into_response()
        }
    }
}

/// Forgets keys older than [`RETENTION`].
pub async fn purge_expired(app: &App) -> ApiResult<usize> {
    let mut conn = app.db().await?;
    let cutoff = chrono::Utc::now() - RETENTION;
    Ok(
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(cutoff)))
            .execute(&mut conn)
            .await?,
    )
}
