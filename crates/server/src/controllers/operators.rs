//! `POST/GET /api/user/operators`, `PUT/DELETE /api/user/operators/{id}`: the people who sign
//! in to the console. An API key acts as the account's owner, so it may manage them all.

use anyreply_core::wire::{
    Author, DeletedResponse, OperatorInput, OperatorList, OperatorResponse, OperatorUpdate,
};
use anyreply_core::{ErrorBody, ErrorCode, FieldErrors};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use diesel_async::AsyncPgConnection;

use crate::app::App;
use crate::config::Settings;
use crate::controllers::idempotency;
use crate::controllers::idempotency::IdempotencyKey;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, PathParam};
use crate::models::operator::{self, WriteError};
use crate::password;

/// Adds an operator of the account. They have no password yet: the answer's
/// `password_link` (valid 24 hours, shown once) is where they set one.
#[utoipa::path(
    post,
    path = "/api/user/operators",
    tag = "operators",
    security(("api_key" = [])),
    params(IdempotencyKey),
    request_body(
        content = OperatorInput,
        example = json!({ "email": "anna@acme.example", "name": "Anna", "role": "agent" })
    ),
    responses(
        (status = 201, description = "The new operator, with their password link", body = OperatorResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 409, description = "`OPERATOR_EMAIL_TAKEN`, `IDEMPOTENCY_CONFLICT`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`, `IDEMPOTENCY_KEY_REUSED`", body = ErrorBody),
    )
)]
pub async fn create_operator(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Response> {
    let input = body.parse(OperatorInput::from_json)?;
    let fingerprint = idempotency::fingerprint("POST", "/api/user/operators", Some(&body.0));
    let account_id = caller.account_id;
    let settings = app.settings.clone();
    Ok(idempotency::execute_storing(
        &app,
        account_id,
        &headers,
        fingerprint,
        move |conn| {
            Box::pin(async move {
                let answer = add(conn, &settings, account_id, &input).await?;
                Ok((StatusCode::CREATED, answer))
            })
        },
        // The link is shown once: a replay answers without it.
        |answer| {
            let mut stored = answer.clone();
            stored.password_link = None;
            stored.password_link_expires_at = None;
            serde_json::to_value(stored).unwrap_or_default()
        },
    )
    .await)
}

/// Adds an operator and makes their password link: the API's create and the CLI's.
pub async fn add(
    conn: &mut AsyncPgConnection,
    settings: &Settings,
    account_id: i64,
    input: &OperatorInput,
) -> Result<OperatorResponse, ApiError> {
    let (token, token_hash) = password::new_link_token();
    let (row, expires_at) = operator::create(conn, account_id, input, &token_hash)
        .await
        .map_err(write_error)?;
    Ok(OperatorResponse {
        status: true,
        data: row.into_wire(),
        password_link: Some(password::link_url(settings, &token)),
        password_link_expires_at: Some(expires_at),
    })
}

fn write_error(error: WriteError) -> ApiError {
    match error {
        WriteError::EmailTaken => ErrorCode::OperatorEmailTaken.into(),
        WriteError::Database(error) => error.into(),
    }
}

/// The account's operators, in id order.
#[utoipa::path(
    get,
    path = "/api/user/operators",
    tag = "operators",
    security(("api_key" = [])),
    responses((status = 200, description = "Every operator of the account", body = OperatorList))
)]
pub async fn list_operators(
    State(app): State<App>,
    caller: Caller,
) -> ApiResult<Json<OperatorList>> {
    let mut conn = app.db().await?;
    let rows = operator::list(&mut conn, caller.account_id).await?;
    Ok(Json(OperatorList {
        data: rows.into_iter().map(|row| row.into_wire()).collect(),
    }))
}

/// Changes an operator's name or role. A new role applies from their next request.
#[utoipa::path(
    put,
    path = "/api/user/operators/{id}",
    tag = "operators",
    security(("api_key" = [])),
    params(("id" = i64, Path, description = "The operator's id")),
    request_body(content = OperatorUpdate, example = json!({ "role": "admin" })),
    responses(
        (status = 200, description = "The operator as changed", body = OperatorResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 404, description = "`OPERATOR_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`", body = ErrorBody),
    )
)]
pub async fn update_operator(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
    body: JsonBody,
) -> ApiResult<Json<OperatorResponse>> {
    let id = operator_id(&id)?;
    let change = body.parse(OperatorUpdate::from_json)?;
    let mut conn = app.db().await?;
    let row = operator::update(&mut conn, caller.account_id, id, &change)
        .await?
        .ok_or(ErrorCode::OperatorNotFound)?;
    Ok(Json(OperatorResponse {
        status: true,
        data: row.into_wire(),
        password_link: None,
        password_link_expires_at: None,
    }))
}

/// Removes an operator: their open console sessions are refused from their next request.
#[utoipa::path(
    delete,
    path = "/api/user/operators/{id}",
    tag = "operators",
    security(("api_key" = [])),
    params(("id" = i64, Path, description = "The operator's id")),
    responses(
        (status = 200, description = "Removed", body = DeletedResponse),
        (status = 404, description = "`OPERATOR_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
    )
)]
pub async fn delete_operator(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Json<DeletedResponse>> {
    let id = operator_id(&id)?;
    let mut conn = app.db().await?;
    if !operator::delete(&mut conn, caller.account_id, id).await? {
        return Err(ErrorCode::OperatorNotFound.into());
    }
    Ok(Json(DeletedResponse {
        status: true,
        message: "Operator removed".to_owned(),
    }))
}

/// Who writes what an API key sends for `operator_id` (one of the account's operators, or
/// the key itself when `None`): an unknown id is a `VALIDATION_ERROR` of `operator_id`.
pub async fn author(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    operator_id: Option<i64>,
) -> Result<Author, ApiError> {
    let Some(id) = operator_id else {
        return Ok(api_key_author());
    };
    let found = operator::find(conn, account_id, id).await?.ok_or_else(|| {
        ApiError::validation(FieldErrors::single(
            "operator_id",
            "No operator of this account has this id.",
        ))
    })?;
    Ok(Author {
        operator_id: Some(found.id),
        name: found.name,
    })
}

/// The name an API key writes under.
pub const API_KEY_AUTHOR: &str = "API key";

/// An API key as the author of what it writes.
pub fn api_key_author() -> Author {
    Author {
        operator_id: None,
        name: API_KEY_AUTHOR.to_owned(),
    }
}

fn operator_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::new(ErrorCode::OperatorNotFound))
}
