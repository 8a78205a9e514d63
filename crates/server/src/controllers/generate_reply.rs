//! `POST /api/ai/generate-reply`.

use anyreply_core::ErrorCode;
use anyreply_core::wire::GenerateReplyRequest;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::{rate_limit, reply};

pub async fn generate_reply(
    State(app): State<App>,
    caller: Caller,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let request = body.parse(GenerateReplyRequest::from_json)?;
    let limit = rate_limit::count_call(&app, caller.api_key_id).await?;
    if limit.exceeded {
        return Err(ApiError::new(ErrorCode::RateLimited)
            .with_retry_after(limit.reset)
            .with_headers(limit.headers()));
    }
    match reply::generate_reply(&app, caller.account_id, request).await {
        Ok(response) => Ok((limit.headers(), Json(response)).into_response()),
        Err(error) => Err(error.with_headers(limit.headers())),
    }
}
