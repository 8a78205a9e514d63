//! `Idempotency-Key` in HTTP: the header read, a stored answer sent again, a store refusal
//! answered, and [`execute`] for the simple POST endpoints. The store itself is
//! [`crate::idempotency`].

use anyreply_core::{ErrorCode, FieldErrors};
use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
pub use crate::idempotency::{
    Begin, IdempotencyError, KeyText, RequestKey, StoredAnswer, begin, fingerprint, store_refusal,
};

/// `Idempotency-Key`, read by every POST that creates or changes something.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// Your id for this request (1 to 255 visible characters). A repeat with the same key and
    /// the same request within 48 hours gets the first answer again, with
    /// `Idempotent-Replayed: true`, instead of being done twice; with another request, `422
    /// IDEMPOTENCY_KEY_REUSED`; while the first is still running, `409 IDEMPOTENCY_CONFLICT`.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        max_length = 255,
        pattern = r"^[\x20-\x7E]*[\x21-\x7E][\x20-\x7E]*$"
    )]
    pub idempotency_key: Option<String>,
}

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The request's `Idempotency-Key`, if it sent one.
pub fn request_key(headers: &HeaderMap, fingerprint: Vec<u8>) -> ApiResult<Option<RequestKey>> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .and_then(KeyText::parse)
        .ok_or_else(|| {
            ApiError::validation(FieldErrors::single(
                "Idempotency-Key",
                "The Idempotency-Key must be 1 to 255 visible characters.",
            ))
        })?;
    Ok(Some(RequestKey::new(key, fingerprint)))
}

impl From<IdempotencyError> for ApiError {
    fn from(error: IdempotencyError) -> Self {
        match error {
            IdempotencyError::Conflict => {
                ApiError::new(ErrorCode::IdempotencyConflict).with_retry_after(1)
            }
            IdempotencyError::KeyReused => ErrorCode::IdempotencyKeyReused.into(),
            IdempotencyError::Database(error) => error.into(),
            IdempotencyError::Pool(error) => error.into(),
        }
    }
}

impl IntoResponse for StoredAnswer {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut response = (status, Json(self.body)).into_response();
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
        response
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
                claim
                    .complete(conn, status.as_u16(), &stored(&body))
                    .await?;
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
                store_refusal(&app.pool, account_id, key, error.code, &error.body()).await;
            }
            error.into_response()
        }
    }
}
