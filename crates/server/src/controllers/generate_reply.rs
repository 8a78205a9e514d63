//! `POST /api/ai/generate-reply`.

use anyreply_core::ErrorCode;
use anyreply_core::wire::GenerateReplyRequest;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::idempotency;
use crate::reply::{self, Answered, Failed};
use crate::telemetry;
use crate::telemetry::metrics::{self, ReplyOutcome};

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
