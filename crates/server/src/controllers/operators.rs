//! `POST/GET /api/user/operators`, `PUT/DELETE /api/user/operators/{id}`: the people who sign
//! in to the console. An API key acts as the account's owner, so it may manage them all.

use anyreply_core::wire::{
    AuditAction, Author, DeletedResponse, OperatorInput, OperatorList, OperatorResponse,
    OperatorUpdate,
};
use anyreply_core::{ErrorBody, ErrorCode, FieldErrors};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;

use crate::app::App;
use crate::config::Settings;
use crate::controllers::idempotency;
use crate::controllers::idempotency::IdempotencyKey;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, PathParam};
use crate::models::audit_log::{self, Actor, Target};
use crate::models::operator::{self, OperatorRow, WriteError};
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
    let actor = caller.actor();
    Ok(idempotency::execute_storing(
        &app,
        account_id,
        &headers,
        fingerprint,
        move |conn| {
            Box::pin(async move {
                let answer = add(conn, &settings, account_id, &input, &actor).await?;
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

/// Adds an operator and makes their password link, logged as `actor`'s in the same
/// transaction: the API's create, the console's and the CLI's.
pub async fn add(
    conn: &mut AsyncPgConnection,
    settings: &Settings,
    account_id: i64,
    input: &OperatorInput,
    actor: &Actor,
) -> Result<OperatorResponse, ApiError> {
    let (token, token_hash) = password::new_link_token();
    let (row, expires_at) = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let (row, expires_at) = operator::create(conn, account_id, input, &token_hash)
                .await
                .map_err(write_error)?;
            let details = json!({ "email": row.email, "name": row.name, "role": row.role });
            let (action, target) = (AuditAction::OperatorCreated, Target::Operator(row.id));
            audit_log::record(conn, account_id, actor, action, target, details).await?;
            Ok((row, expires_at))
        })
        .await?;
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
    let row = change_operator(&mut conn, caller.account_id, id, &change, &caller.actor()).await?;
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
    remove(&mut conn, caller.account_id, id, &caller.actor()).await?;
    Ok(Json(DeletedResponse {
        status: true,
        message: "Operator removed".to_owned(),
    }))
}

/// Changes an operator's name or role, logged as `actor`'s (the roles before and after) in
/// the same transaction.
pub async fn change_operator(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
    change: &OperatorUpdate,
    actor: &Actor,
) -> Result<OperatorRow, ApiError> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let before = operator::find(conn, account_id, id)
            .await?
            .ok_or(ErrorCode::OperatorNotFound)?;
        let row = operator::update(conn, account_id, id, change)
            .await?
            .ok_or(ErrorCode::OperatorNotFound)?;
        let mut details = json!({ "old_role": before.role, "new_role": row.role });
        if before.name != row.name {
            details["old_name"] = before.name.into();
            details["new_name"] = row.name.clone().into();
        }
        let (action, target) = (AuditAction::OperatorUpdated, Target::Operator(id));
        audit_log::record(conn, account_id, actor, action, target, details).await?;
        Ok(row)
    })
    .await
}

/// Removes an operator, logged as `actor`'s (who they were) in the same transaction.
pub async fn remove(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
    actor: &Actor,
) -> Result<(), ApiError> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let found = operator::find(conn, account_id, id)
            .await?
            .ok_or(ErrorCode::OperatorNotFound)?;
        if !operator::delete(conn, account_id, id).await? {
            return Err(ErrorCode::OperatorNotFound.into());
        }
        let details = json!({ "email": found.email, "name": found.name, "role": found.role });
        let (action, target) = (AuditAction::OperatorRemoved, Target::Operator(id));
        audit_log::record(conn, account_id, actor, action, target, details).await?;
        Ok(())
    })
    .await
}

/// A new password link for `found` (the old one stops working), logged as `actor`'s in the
/// same transaction: the link's URL and when it expires.
pub async fn new_link(
    conn: &mut AsyncPgConnection,
    settings: &Settings,
    found: &OperatorRow,
    actor: &Actor,
) -> Result<(String, DateTime<Utc>), ApiError> {
    let (token, token_hash) = password::new_link_token();
    let expires_at = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let expires_at = operator::new_password_link(conn, found.id, &token_hash).await?;
            let action = AuditAction::OperatorPasswordLinkCreated;
            let target = Target::Operator(found.id);
            let details = json!({ "email": found.email });
            audit_log::record(conn, found.account_id, actor, action, target, details).await?;
            Ok(expires_at)
        })
        .await?;
    Ok((password::link_url(settings, &token), expires_at))
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
