//! `GET /api/user/assistants/get`, `POST /api/user/assistant`, `PUT /api/user/assistant/{id}`.

use anyreply_core::wire::{AssistantInput, AssistantList, AssistantResponse};
use anyreply_core::{ErrorCode, FieldErrors};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody};
use crate::models::{assistant, tool};
use diesel_async::AsyncPgConnection;
use std::collections::HashSet;

pub async fn list_assistants(
    State(app): State<App>,
    caller: Caller,
) -> ApiResult<Json<AssistantList>> {
    let mut conn = app.db().await?;
    let rows = assistant::list(&mut conn, caller.account_id).await?;
    Ok(Json(AssistantList {
        data: rows.into_iter().map(|row| row.into_wire()).collect(),
    }))
}

pub async fn create_assistant(
    State(app): State<App>,
    caller: Caller,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<AssistantResponse>)> {
    let input = body.parse(|json| AssistantInput::from_json(json, true))?;
    let mut conn = app.db().await?;
    check_tools(&mut conn, caller.account_id, &input).await?;
    let row = assistant::create(
        &mut conn,
        caller.account_id,
        input,
        &app.settings.llm_default_model,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(AssistantResponse {
            status: true,
            data: row.into_wire(),
        }),
    ))
}

pub async fn update_assistant(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<AssistantResponse>> {
    let id: i64 = id.parse().map_err(|_| ErrorCode::AssistantNotFound)?;
    let input = body.parse(|json| AssistantInput::from_json(json, false))?;
    let mut conn = app.db().await?;
    check_tools(&mut conn, caller.account_id, &input).await?;
    let row = assistant::update(
        &mut conn,
        caller.account_id,
        id,
        input,
        &app.settings.llm_default_model,
    )
    .await?
    .ok_or(ErrorCode::AssistantNotFound)?;
    Ok(Json(AssistantResponse {
        status: true,
        data: row.into_wire(),
    }))
}

/// Every attached tool must be one of the account's own.
async fn check_tools(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    input: &AssistantInput,
) -> ApiResult<()> {
    let Some(ids) = input.tool_ids.as_deref().filter(|ids| !ids.is_empty()) else {
        return Ok(());
    };
    let found: HashSet<i64> = tool::find_many(conn, account_id, ids)
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect();
    match ids.iter().find(|id| !found.contains(id)) {
        Some(missing) => Err(ApiError::validation(FieldErrors::single(
            "tool_ids",
            format!("The tool {missing} does not exist."),
        ))),
        None => Ok(()),
    }
}
