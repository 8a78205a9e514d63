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
use crate::idempotency::{self, Begin};
use crate::{rate_limit, reply};

pub async fn generate_reply(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let request = body.parse(GenerateReplyRequest::from_json)?;
    let fingerprint = idempotency::fingerprint("POST", "/api/ai/generate-reply", Some(&body.0));
    // Everything from claiming the key on runs on its own task: a client that hangs up cannot
    // leave a key claimed with nothing running, nor a paid reply half-done.
    let work = tokio::spawn(async move {
        let claim = match idempotency::begin(&app, caller.account_id, &headers, fingerprint).await?
        {
            Begin::Answer(replayed) => return Ok(replayed),
            Begin::Run(claim) => Some(claim),
            Begin::Unkeyed => None,
        };
        let limit = match rate_limit::count_call(&app, caller.api_key_id).await {
            Ok(limit) if !limit.exceeded => limit,
            refused => {
                let error = match refused {
                    Ok(limit) => ApiError::new(ErrorCode::RateLimited)
                        .with_retry_after(limit.reset)
                        .with_headers(limit.headers()),
                    Err(error) => error,
                };
                if let Some(claim) = claim {
                    // Refused before any work: the key is free again for the retry.
                    claim.fail(&app, &error).await;
                }
                return Err(error);
            }
        };
        match reply::generate_reply(&app, caller.account_id, request, claim).await {
            Ok(response) => Ok((limit.headers(), Json(response)).into_response()),
            Err(error) => Err(error.with_headers(limit.headers())),
        }
    });
    work.await
        .map_err(|e| ApiError::internal(ErrorCode::InternalError, "reply task failed", &e))?
}
