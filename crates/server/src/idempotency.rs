//! `Idempotency-Key` on POST requests: a retry with the same key and body gets the first
//! answer back (`Idempotent-Replayed: true`) instead of being done twice.
//!
//! Keys are scoped to the account and kept 48 hours. A key is claimed in the same transaction
//! as the work it guards begins, and its answer stored in the same transaction as the work it
//! reports, so no crash can separate them. While the first request runs, the same key gets
//! `409 IDEMPOTENCY_CONFLICT`; with a different request, `422 IDEMPOTENCY_KEY_REUSED`. Invalid
//! input and retryable failures leave no trace and free the key; other refusals are stored.

use std::time::Duration;

use anyreply_core::{ErrorCode, FieldErrors};
use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::models::idempotency_key;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// How long keys are kept.
pub const RETENTION: Duration = Duration::from_secs(48 * 3600);
const MAX_KEY_CHARS: usize = 255;

/// An `Idempotency-Key` as the client sent it. Keys are often the client's own ids (a
/// message's, an order's), so they are never logged: `Debug` hides the value, and there is no
/// `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyText(String);

impl KeyText {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyText(..)")
    }
}

/// A request's key and what identifies the request.
#[derive(Debug, Clone)]
pub struct RequestKey {
    pub key: KeyText,
    fingerprint: Vec<u8>,
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

/// The request's `Idempotency-Key`, if it sent one.
pub fn request_key(headers: &HeaderMap, fingerprint: Vec<u8>) -> ApiResult<Option<RequestKey>> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
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
        })?;
    Ok(Some(RequestKey {
        key: KeyText(key.to_owned()),
        fingerprint,
    }))
}

/// The right to run the request of one key, held until the answer is stored or the key freed.
#[derive(Debug, Clone)]
pub struct Claim {
    pub account_id: i64,
    pub key: KeyText,
    /// This holder's token: writes by a holder the key was taken from change nothing.
    pub token: Uuid,
}

/// What the key says about this request.
#[derive(Debug)]
pub enum Begin {
    /// First of its key, or taking over from a process that died (which had queued
    /// `abandoned_message`, to be given up so that this request makes the only reply).
    Run {
        claim: Claim,
        abandoned_message: Option<i64>,
    },
    /// Answered before: send this.
    Answer(StoredAnswer),
}

/// Claims `key` for this request, inside the transaction of the work it guards, or says what
/// to answer instead.
pub async fn begin(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    key: &RequestKey,
    lease: Duration,
) -> ApiResult<Begin> {
    let claim = Claim {
        account_id,
        key: key.key.clone(),
        token: Uuid::new_v4(),
    };
    if idempotency_key::insert(
        conn,
        account_id,
        key.key.as_str(),
        &key.fingerprint,
        lease,
        claim.token,
    )
    .await?
    {
        return Ok(Begin::Run {
            claim,
            abandoned_message: None,
        });
    }
    // Freed between our two statements: the other request failed retryably; try again.
    let existing = idempotency_key::find(conn, account_id, key.key.as_str())
        .await?
        .ok_or_else(conflict)?;
    if existing.fingerprint != key.fingerprint {
        return Err(ErrorCode::IdempotencyKeyReused.into());
    }
    if let (Some(status), Some(body)) = (existing.response_status, existing.response_body) {
        return Ok(Begin::Answer(StoredAnswer::new(status, body)));
    }
    if existing.locked {
        return Err(conflict());
    }
    // The first request's process stopped renewing its claim: it died.
    let abandoned_message =
        idempotency_key::take_over(conn, account_id, key.key.as_str(), lease, claim.token)
            .await?
            .ok_or_else(conflict)?;
    if let Some(message_id) = abandoned_message {
        tracing::warn!(
            message_id,
            "taking over an idempotency key whose request died"
        );
    }
    Ok(Begin::Run {
        claim,
        abandoned_message,
    })
}

fn conflict() -> ApiError {
    ApiError::new(ErrorCode::IdempotencyConflict).with_retry_after(1)
}

/// The answer stored under a key, sent again (`Idempotent-Replayed: true`) to its retries.
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    pub status: StatusCode,
    pub body: Value,
}

impl StoredAnswer {
    fn new(status: i32, body: Value) -> Self {
        let status = u16::try_from(status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK);
        Self { status, body }
    }
}

impl IntoResponse for StoredAnswer {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
        response
    }
}

/// Invalid input and retryable failures leave nothing behind: their key is freed, not stored.
fn leaves_no_trace(error: &ApiError) -> bool {
    error.code == ErrorCode::ValidationError || error.code.is_retryable()
}

impl Claim {
    fn held(&self) -> (i64, &str, Uuid) {
        (self.account_id, self.key.as_str(), self.token)
    }

    fn still_held(&self, held: bool) -> ApiResult<()> {
        if held {
            Ok(())
        } else {
            tracing::warn!(
                account_id = self.account_id,
                "an idempotency key was taken over while its request ran"
            );
            Err(conflict())
        }
    }

    /// Stores the answer; call inside the transaction of the work it reports. Fails (rolling
    /// that work back) if the claim was taken over meanwhile.
    pub async fn complete(
        &self,
        conn: &mut impl crate::db::Conn,
        status: StatusCode,
        body: &impl Serialize,
    ) -> ApiResult<()> {
        let body = serde_json::to_value(body).unwrap_or(Value::Null);
        let held = idempotency_key::complete(conn, self.held(), status.as_u16(), &body).await?;
        self.still_held(held)
    }

    /// Remembers the customer message this request queued (inside the admitting transaction).
    pub async fn attach_message(
        &self,
        conn: &mut impl crate::db::Conn,
        message_id: i64,
    ) -> ApiResult<()> {
        let held = idempotency_key::attach_message(conn, self.held(), message_id).await?;
        self.still_held(held)
    }

    /// Settles the key after the request failed past its claiming transaction: a traceless
    /// failure frees the key, any other is stored and replayed. Nothing happens if the key was
    /// taken over; if the database is gone, the claim frees itself when its lease ends.
    pub async fn fail(&self, app: &App, error: &ApiError) {
        let settled = async {
            let mut conn = app.db().await?;
            if leaves_no_trace(error) {
                idempotency_key::free(&mut conn, self.held()).await?;
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

/// After a claiming transaction rolled back on `error`: stores the refusal under the key
/// unless it leaves no trace, so that a retry gets the same answer.
pub async fn store_refusal(app: &App, account_id: i64, key: &RequestKey, error: &ApiError) {
    if leaves_no_trace(error) {
        return;
    }
    let stored = async {
        let mut conn = app.db().await?;
        let body = serde_json::to_value(error.body()).unwrap_or(Value::Null);
        idempotency_key::insert_answered(
            &mut conn,
            account_id,
            key.key.as_str(),
            &key.fingerprint,
            error.status().as_u16(),
            &body,
        )
        .await?;
        Ok::<_, ApiError>(())
    };
    if let Err(problem) = stored.await {
        tracing::warn!(?problem.code, "could not store a refusal under its idempotency key");
    }
}

/// Runs `work` in one transaction with the claim of the request's `Idempotency-Key`, if it
/// has one, and the storing of its answer. For the simple POST endpoints; generate-reply
/// claims in its admission and stores where it records the reply.
pub async fn execute<T: Serialize + Send + Sync>(
    app: &App,
    account_id: i64,
    headers: &HeaderMap,
    fingerprint: Vec<u8>,
    work: impl for<'c> FnOnce(&'c mut AsyncPgConnection) -> BoxFuture<'c, ApiResult<(StatusCode, T)>>
    + Send,
) -> Response {
    execute_storing(app, account_id, headers, fingerprint, work, |body| {
        serde_json::to_value(body).unwrap_or(Value::Null)
    })
    .await
}

/// [`execute`], storing under the key (and so replaying) what `stored` makes of the answer's
/// body rather than the body: for an answer that shows a secret once, which the table of keys
/// must not keep.
pub async fn execute_storing<T: Serialize + Send + Sync>(
    app: &App,
    account_id: i64,
    headers: &HeaderMap,
    fingerprint: Vec<u8>,
    work: impl for<'c> FnOnce(&'c mut AsyncPgConnection) -> BoxFuture<'c, ApiResult<(StatusCode, T)>>
    + Send,
    stored: impl FnOnce(&T) -> Value + Send,
) -> Response {
    let key = match request_key(headers, fingerprint) {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };
    let lease = app.settings.reply_lease;
    let result = async {
        let mut conn = app.db().await?;
        conn.transaction::<_, ApiError, _>(async |conn| {
            let claim = match &key {
                Some(key) => match begin(conn, account_id, key, lease).await? {
                    Begin::Answer(answer) => return Ok(answer.into_response()),
                    Begin::Run { claim, .. } => Some(claim),
                },
                None => None,
            };
            let (status, body) = work(conn).await?;
            if let Some(claim) = &claim {
                claim.complete(conn, status, &stored(&body)).await?;
            }
            Ok((status, Json(body)).into_response())
        })
        .await
    }
    .await;
    match result {
        Ok(response) => response,
        Err(error) => {
            if let Some(key) = &key {
                store_refusal(app, account_id, key, &error).await;
            }
            error.into_response()
        }
    }
}

/// Forgets keys, and the tool calls journaled under them, older than [`RETENTION`].
pub async fn purge_expired(app: &App) -> ApiResult<usize> {
    let mut conn = app.db().await?;
    let cutoff = chrono::Utc::now() - RETENTION;
    crate::models::tool_call::purge_older_than(&mut conn, cutoff).await?;
    Ok(idempotency_key::purge_older_than(&mut conn, cutoff).await?)
}
