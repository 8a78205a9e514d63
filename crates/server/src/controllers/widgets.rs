//! `POST/GET /api/user/widgets`, `DELETE /api/user/widgets/{id}`: the web chat widgets of an
//! account (what visitors' browsers call is in `widget_chat.rs`).

use anyreply_core::limits::MAX_WIDGETS_PER_ACCOUNT;
use anyreply_core::wire::{DeletedResponse, WidgetInput, WidgetList, WidgetResponse};
use anyreply_core::{ErrorBody, ErrorCode};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::app::App;
use crate::controllers::idempotency;
use crate::controllers::idempotency::IdempotencyKey;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, PathParam};
use crate::models::widget::{self, CreateError};

/// Creates a chat widget of one of the account's assistants, for pages of the listed origins.
/// Its `public_key` goes in the page's `<script src=".../widget.js" data-key="arpk_…">`. Its
/// replies call the assistant's tools only with `tools_enabled: true`.
#[utoipa::path(
    post,
    path = "/api/user/widgets",
    tag = "widgets",
    security(("api_key" = [])),
    params(IdempotencyKey),
    request_body(
        content = WidgetInput,
        example = json!({ "assistant_id": 1, "allowed_origins": ["https://shop.example.com"] })
    ),
    responses(
        (status = 201, description = "The new widget and its publishable key", body = WidgetResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 404, description = "`ASSISTANT_NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`, `LIMIT_EXCEEDED`, `IDEMPOTENCY_KEY_REUSED`", body = ErrorBody),
    )
)]
pub async fn create_widget(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Response> {
    let input = body.parse(WidgetInput::from_json)?;
    let fingerprint = idempotency::fingerprint("POST", "/api/user/widgets", Some(&body.0));
    let account_id = caller.account_id;
    Ok(
        idempotency::execute(&app, account_id, &headers, fingerprint, move |conn| {
            Box::pin(async move {
                let row = widget::create(
                    conn,
                    account_id,
                    input.assistant_id,
                    &input.allowed_origins,
                    input.tools_enabled,
                )
                .await
                    .map_err(|error| match error {
                        CreateError::LimitReached => ApiError::new(ErrorCode::LimitExceeded)
                            .with_message(format!(
                                "An account may have at most {MAX_WIDGETS_PER_ACCOUNT} widgets; delete one to make room."
                            )),
                        CreateError::NoSuchAssistant => ErrorCode::AssistantNotFound.into(),
                        CreateError::Database(error) => error.into(),
                    })?;
                let data = row.into_wire();
                Ok((StatusCode::CREATED, WidgetResponse { status: true, data }))
            })
        })
        .await,
    )
}

/// The account's widgets, oldest first.
#[utoipa::path(
    get,
    path = "/api/user/widgets",
    tag = "widgets",
    security(("api_key" = [])),
    responses((status = 200, description = "Every widget of the account", body = WidgetList))
)]
pub async fn list_widgets(State(app): State<App>, caller: Caller) -> ApiResult<Json<WidgetList>> {
    let mut conn = app.db().await?;
    let rows = widget::list(&mut conn, caller.account_id).await?;
    Ok(Json(WidgetList {
        data: rows.into_iter().map(|row| row.into_wire()).collect(),
    }))
}

/// Deletes a widget: its publishable key stops working at once. The conversations stay.
#[utoipa::path(
    delete,
    path = "/api/user/widgets/{id}",
    tag = "widgets",
    security(("api_key" = [])),
    params(("id" = i64, Path, description = "The widget's id")),
    responses(
        (status = 200, description = "Deleted", body = DeletedResponse),
        (status = 404, description = "`WIDGET_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
    )
)]
pub async fn delete_widget(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Json<DeletedResponse>> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::WidgetNotFound))?;
    let mut conn = app.db().await?;
    if !widget::delete(&mut conn, caller.account_id, id).await? {
        return Err(ErrorCode::WidgetNotFound.into());
    }
    Ok(Json(DeletedResponse {
        status: true,
        message: "Widget deleted".to_owned(),
    }))
}
