//! `Idempotency-Key` on POST requests: a retry with the same key and body gets the first
//! answer back (`Idempotent-Replayed: true`) instead of being done twice.
//!
//! Keys are scoped to the account and kept 48 hours. A key is claimed in the same transaction
//! as the work it guards begins, and its answer stored in the same transaction as the work it
//! reports, so no crash can separate them. While the first request runs, the same key gets
//! `409 IDEMPOTENCY_CONFLICT`; with a different request, `422 IDEMPOTENCY_KEY_REUSED`. Invalid
//! input and retryable failures leave no trace and free the key; other refusals are stored.
//!
//! This is the store, which knows nothing of HTTP (its errors are [`IdempotencyError`], a
//! stored answer's status a number); the header, the replayed answer and the simple POSTs'
//! [`execute`](crate::controllers::idempotency::execute) are [`crate::controllers::idempotency`].

use std::time::Duration;

use anyreply_core::{ErrorBody, ErrorCode};
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::{DbPool, PoolError};
use crate::models::idempotency_key;

/// How long keys are kept.
pub const RETENTION: Duration = Duration::from_secs(48 * 3600);
const MAX_KEY_CHARS: usize = 255;

/// Why a key could not be claimed, completed or settled.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// A request with the key is still running, or the claim was taken over meanwhile.
    #[error("a request with this idempotency key is still running")]
    Conflict,
    /// The key was used before with a different request.
    #[error("the idempotency key was used with a different request")]
    KeyReused,
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("no database connection: {0}")]
    Pool(#[from] PoolError),
}

pub type IdempotencyResult<T> = Result<T, IdempotencyError>;

impl IdempotencyError {
    /// The code the caller is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            IdempotencyError::Conflict => ErrorCode::IdempotencyConflict,
            IdempotencyError::KeyReused => ErrorCode::IdempotencyKeyReused,
            IdempotencyError::Database(error) if crate::db::is_unavailable(error) => {
                ErrorCode::ServiceUnavailable
            }
            IdempotencyError::Database(_) => ErrorCode::InternalError,
            IdempotencyError::Pool(_) => ErrorCode::ServiceUnavailable,
        }
    }

    /// Says so when the database seemed gone (see [`crate::pg_cluster::database_seems_gone`]).
    fn notice(&self) {
        let gone = match self {
            IdempotencyError::Database(error) => crate::db::is_unavailable(error),
            IdempotencyError::Pool(error) => matches!(error, PoolError::Backend(_)),
            _ => false,
        };
        if gone {
            crate::pg_cluster::database_seems_gone();
        }
    }
}

/// An `Idempotency-Key` as the client sent it. Keys are often the client's own ids (a
/// message's, an order's), so they are never logged: `Debug` hides the value, and there is no
/// `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyText(String);

impl KeyText {
    /// A key as sent, trimmed: `None` unless 1 to 255 characters are left.
    pub fn parse(sent: &str) -> Option<Self> {
        Some(sent.trim())
            .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_CHARS)
            .map(|k| KeyText(k.to_owned()))
    }

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

impl RequestKey {
    pub fn new(key: KeyText, fingerprint: Vec<u8>) -> Self {
        Self { key, fingerprint }
    }
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
) -> IdempotencyResult<Begin> {
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
        .ok_or(IdempotencyError::Conflict)?;
    if existing.fingerprint != key.fingerprint {
        return Err(IdempotencyError::KeyReused);
    }
    if let (Some(status), Some(body)) = (existing.response_status, existing.response_body) {
        return Ok(Begin::Answer(StoredAnswer::new(status, body)));
    }
    if existing.locked {
        return Err(IdempotencyError::Conflict);
    }
    // The first request's process stopped renewing its claim: it died.
    let abandoned_message =
        idempotency_key::take_over(conn, account_id, key.key.as_str(), lease, claim.token)
            .await?
            .ok_or(IdempotencyError::Conflict)?;
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

/// The answer stored under a key, sent again (`Idempotent-Replayed: true`) to its retries:
/// its HTTP status and its body.
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: Value,
}

impl StoredAnswer {
    /// A stored status that is none (out of 100..=999) reads as 200.
    fn new(status: i32, body: Value) -> Self {
        let status = u16::try_from(status)
            .ok()
            .filter(|s| (100..1000).contains(s))
            .unwrap_or(200);
        Self { status, body }
    }
}

/// Invalid input and retryable failures leave nothing behind: their key is freed, not stored.
fn leaves_no_trace(code: ErrorCode) -> bool {
    code == ErrorCode::ValidationError || code.is_retryable()
}

impl Claim {
    fn held(&self) -> (i64, &str, Uuid) {
        (self.account_id, self.key.as_str(), self.token)
    }

    fn still_held(&self, held: bool) -> IdempotencyResult<()> {
        if held {
            Ok(())
        } else {
            tracing::warn!(
                account_id = self.account_id,
                "an idempotency key was taken over while its request ran"
            );
            Err(IdempotencyError::Conflict)
        }
    }

    /// Stores the answer; call inside the transaction of the work it reports. Fails (rolling
    /// that work back) if the claim was taken over meanwhile.
    pub async fn complete(
        &self,
        conn: &mut impl crate::db::Conn,
        status: u16,
        body: &impl Serialize,
    ) -> IdempotencyResult<()> {
        let body = serde_json::to_value(body).unwrap_or(Value::Null);
        let held = idempotency_key::complete(conn, self.held(), status, &body).await?;
        self.still_held(held)
    }

    /// Remembers the customer message this request queued (inside the admitting transaction).
    pub async fn attach_message(
        &self,
        conn: &mut impl crate::db::Conn,
        message_id: i64,
    ) -> IdempotencyResult<()> {
        let held = idempotency_key::attach_message(conn, self.held(), message_id).await?;
        self.still_held(held)
    }

    /// Settles the key after the request failed past its claiming transaction with `code`,
    /// answered with `body`: a traceless failure frees the key, any other is stored and
    /// replayed. Nothing happens if the key was taken over; if the database is gone, the claim
    /// frees itself when its lease ends.
    pub async fn fail(&self, pool: &DbPool, code: ErrorCode, body: &ErrorBody) {
        let settled = async {
            let mut conn = pool.get().await?;
            if leaves_no_trace(code) {
                idempotency_key::free(&mut conn, self.held()).await?;
            } else {
                self.complete(&mut conn, code.http_status(), body).await?;
            }
            Ok::<_, IdempotencyError>(())
        };
        if let Err(problem) = settled.await {
            problem.notice();
            tracing::warn!(%problem, "could not settle an idempotency key; it frees itself when its lease ends");
        }
    }
}

/// After a claiming transaction rolled back on a refusal with `code`, answered with `body`:
/// stores the refusal under the key unless it leaves no trace, so that a retry gets the same
/// answer.
pub async fn store_refusal(
    pool: &DbPool,
    account_id: i64,
    key: &RequestKey,
    code: ErrorCode,
    body: &ErrorBody,
) {
    if leaves_no_trace(code) {
        return;
    }
    let stored = async {
        let mut conn = pool.get().await?;
        let body = serde_json::to_value(body).unwrap_or(Value::Null);
        idempotency_key::insert_answered(
            &mut conn,
            account_id,
            key.key.as_str(),
            &key.fingerprint,
            code.http_status(),
            &body,
        )
        .await?;
        Ok::<_, IdempotencyError>(())
    };
    if let Err(problem) = stored.await {
        problem.notice();
        tracing::warn!(%problem, "could not store a refusal under its idempotency key");
    }
}

/// Forgets keys, and the tool calls journaled under them, older than [`RETENTION`].
pub async fn purge_expired(pool: &DbPool) -> IdempotencyResult<usize> {
    let mut conn = pool.get().await?;
    let cutoff = chrono::Utc::now() - RETENTION;
    crate::models::tool_call::purge_older_than(&mut conn, cutoff).await?;
    Ok(idempotency_key::purge_older_than(&mut conn, cutoff).await?)
}
