//! `POST/GET /api/user/webhooks`, `DELETE /api/user/webhooks/{id}`.

use anyreply_core::limits::MAX_WEBHOOKS_PER_ACCOUNT;
use anyreply_core::webhook_signature::SigningKey;
use anyreply_core::wire::{DeletedResponse, WebhookInput, WebhookList, WebhookResponse};
use anyreply_core::{ErrorBody, ErrorCode, FieldErrors};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rand::RngCore;

use crate::app::App;
use crate::controllers::idempotency;
use crate::controllers::idempotency::IdempotencyKey;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, PathParam};
use crate::models::tool;
use crate::models::webhook::{self, CreateError};

/// Random bytes of a new secret.
const SECRET_BYTES: usize = 32;

/// Creates a webhook; the answer holds its signing `secret`, which is never shown again.
#[utoipa::path(
    post,
    path = "/api/user/webhooks",
    tag = "webhooks",
    security(("api_key" = [])),
    params(IdempotencyKey),
    request_body(
        content = WebhookInput,
        example = json!({
            "url": "https://crm.example.com/anyreply",
            "events": ["message.received", "reply.created", "ai.disabled"]
        })
    ),
    responses(
        (status = 201, description = "The new webhook, with its secret", body = WebhookResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR` (including a URL the server may not reach), `LIMIT_EXCEEDED`, `IDEMPOTENCY_KEY_REUSED`", body = ErrorBody),
    )
)]
pub async fn create_webhook(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Response> {
    let input = body.parse(WebhookInput::from_json)?;
    let url = url::Url::parse(&input.url)
        .map_err(|_| url_error("The url must be an http or https URL."))?;
    if let Err(refused) = app.webhooks.check_url(&url).await {
        return Err(url_error(format!("The url may not be used: {refused}.")));
    }
    let fingerprint = idempotency::fingerprint("POST", "/api/user/webhooks", Some(&body.0));
    let account_id = caller.account_id;
    Ok(idempotency::execute_storing(
        &app,
        account_id,
        &headers,
        fingerprint,
        move |conn| {
            Box::pin(async move {
                let mut random = [0u8; SECRET_BYTES];
                rand::rng().fill_bytes(&mut random);
                let secret = SigningKey::new_secret(&random);
                let row = webhook::create(conn, account_id, &input.url, &input.events, &secret)
                    .await
                    .map_err(|error| match error {
                        CreateError::LimitReached => ApiError::new(ErrorCode::LimitExceeded)
                            .with_message(format!(
                                "An account may have at most {MAX_WEBHOOKS_PER_ACCOUNT} webhooks; delete one to make room."
                            )),
                        CreateError::Database(error) => error.into(),
                    })?;
                let mut data = row.into_wire();
                data.secret = Some(secret);
                Ok((StatusCode::CREATED, WebhookResponse { status: true, data }))
            })
        },
        // The secret is shown once: a replay shows it masked, and the keys' table never holds it.
        |answer| {
            let mut stored = answer.clone();
            stored.data.secret = stored.data.secret.as_deref().map(tool::mask);
            serde_json::to_value(stored).unwrap_or_default()
        },
    )
    .await)
}

fn url_error(message: impl Into<String>) -> ApiError {
    ApiError::validation(FieldErrors::single("url", message))
}

/// The account's webhooks, in id order (without secrets): disabled ones show `enabled: false`
/// and why.
#[utoipa::path(
    get,
    path = "/api/user/webhooks",
    tag = "webhooks",
    security(("api_key" = [])),
    responses((status = 200, description = "Every webhook of the account", body = WebhookList))
)]
pub async fn list_webhooks(State(app): State<App>, caller: Caller) -> ApiResult<Json<WebhookList>> {
    let mut conn = app.db().await?;
    let rows = webhook::list(&mut conn, caller.account_id).await?;
    Ok(Json(WebhookList {
        data: rows.into_iter().map(|row| row.into_wire()).collect(),
    }))
}

/// Deletes a webhook; nothing more is delivered to it.
#[utoipa::path(
    delete,
    path = "/api/user/webhooks/{id}",
    tag = "webhooks",
    security(("api_key" = [])),
    params(("id" = i64, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "Deleted", body = DeletedResponse),
        (status = 404, description = "`WEBHOOK_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
    )
)]
pub async fn delete_webhook(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Json<DeletedResponse>> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::WebhookNotFound))?;
    let mut conn = app.db().await?;
    if !webhook::delete(&mut conn, caller.account_id, id).await? {
        return Err(ErrorCode::WebhookNotFound.into());
    }
    Ok(Json(DeletedResponse {
        status: true,
        message: "Webhook deleted".to_owned(),
    }))
}
