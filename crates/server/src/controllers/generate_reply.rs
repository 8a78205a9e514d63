//! `POST /api/ai/generate-reply`.

use anyreply_core::wire::{GenerateReplyRequest, GenerateReplyResponse};
use anyreply_core::{ErrorBody, ErrorCode};
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::idempotency;
use crate::openapi::IdempotencyKey;
use crate::reply::{self, Answered, Failed};
use crate::telemetry;
use crate::telemetry::metrics::{self, ReplyOutcome};

/// The assistant's reply to a customer's message.
///
/// The message joins the customer's conversation with the assistant (made on the first
/// message); the reply's prompt holds the conversation so far. Messages of one conversation
/// are answered one at a time, in arrival order. While a human has taken the conversation
/// over, the message is stored and `reply` is empty (`ai_disabled: true`).
#[utoipa::path(
    post,
    path = "/api/ai/generate-reply",
    tag = "replies",
    security(("api_key" = [])),
    params(IdempotencyKey),
    request_body(
        content = GenerateReplyRequest,
        description = "`assistant_id` may also be a string of digits.",
        example = json!({
            "assistant_id": 1,
            "customer_identifier": "+49155551234",
            "message": "Do you have a table for two tonight?",
            "variables": { "name": "John" }
        })
    ),
    responses(
        (status = 200, description = "The reply", body = GenerateReplyResponse, headers(
            ("RateLimit-Limit" = u32, description = "Calls allowed per API key per minute."),
            ("RateLimit-Remaining" = u32, description = "Calls left in the current minute."),
            ("RateLimit-Reset" = u32, description = "Seconds until the minute's count resets."),
        )),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 402, description = "`INSUFFICIENT_BALANCE`", body = ErrorBody),
        (status = 404, description = "`ASSISTANT_NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`, `IDEMPOTENCY_KEY_REUSED`", body = ErrorBody),
        (status = 429, description = "`RATE_LIMITED`, `CONVERSATION_BUSY`", body = ErrorBody, headers(
            ("RateLimit-Limit" = u32, description = "Calls allowed per API key per minute."),
            ("RateLimit-Remaining" = u32, description = "Calls left in the current minute."),
            ("RateLimit-Reset" = u32, description = "Seconds until the minute's count resets."),
        )),
        (status = 502, description = "`LLM_ERROR`", body = ErrorBody),
        (status = 503, description = "`LLM_UNAVAILABLE`, `SERVICE_UNAVAILABLE`", body = ErrorBody),
    )
)]
pub async fn generate_reply(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let request = body.parse(GenerateReplyRequest::from_json)?;
    let fingerprint = idempotency::fingerprint("POST", "/api/ai/generate-reply", Some(&body.0));
    let key = idempotency::request_key(&headers, fingerprint)?;
    // The reply runs on its own task: a client that hangs up cannot leave a key claimed with
    // nothing running, nor a paid reply half-done.
    let work = tokio::spawn(telemetry::request::carried(async move {
        reply::generate_reply(&app, caller, request, key).await
    }));
    let answered = work
        .await
        .map_err(|e| ApiError::internal(ErrorCode::InternalError, "reply task failed", &e))?;
    Ok(match answered {
        Ok(Answered::Replayed(response)) => {
            metrics::reply(ReplyOutcome::Replayed);
            response
        }
        Ok(Answered::Fresh {
            response,
            rate_limit,
        }) => {
            metrics::reply(if response.ai_disabled {
                ReplyOutcome::Stored
            } else {
                ReplyOutcome::Replied
            });
            (rate_limit.headers(), Json(response)).into_response()
        }
        Err(Failed { error, rate_limit }) => {
            metrics::reply(ReplyOutcome::Failed(error.code));
            match rate_limit {
                Some(limit) => error.with_headers(limit.headers()).into_response(),
                None => error.into_response(),
            }
        }
    })
}
