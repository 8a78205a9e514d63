//! `POST/GET /api/user/tools`, `GET/PUT/DELETE /api/user/tools/{id}`.

use anyreply_core::limits::MAX_TOOLS_PER_ACCOUNT;
use anyreply_core::wire::{
    AuditAction, DeletedResponse, PageQuery, Tool, ToolInput, ToolList, ToolResponse,
};
use anyreply_core::{ErrorBody, ErrorCode, FieldErrors};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{Value, json};

use crate::app::App;
use crate::controllers::idempotency;
use crate::controllers::idempotency::IdempotencyKey;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, IdPageQuery, JsonBody, PathParam};
use crate::models::audit_log::{self, Actor, Target};
use crate::models::tool::{self, WriteError};

/// A tool id from a path; a malformed one is not found.
pub fn tool_id(text: &str) -> ApiResult<i64> {
    text.parse().map_err(|_| ErrorCode::ToolNotFound.into())
}

/// Parses and validates a body, including a full parse of the endpoint URL.
pub fn read_input(json: &Value, creating: bool) -> ApiResult<ToolInput> {
    let input = ToolInput::from_json(json, creating).map_err(ApiError::validation)?;
    if let Some(endpoint) = &input.endpoint {
        let parsed = url::Url::parse(endpoint)
            .ok()
            .filter(|u| u.host_str().is_some());
        if parsed.is_none() {
            return Err(ApiError::validation(FieldErrors::single(
                "endpoint",
                "The endpoint is not a valid URL.",
            )));
        }
    }
    Ok(input)
}

fn write_error(error: WriteError) -> ApiError {
    match error {
        WriteError::NameTaken => ApiError::validation(FieldErrors::single(
            "name",
            "The account already has a tool of that name.",
        )),
        WriteError::LimitReached => ApiError::new(ErrorCode::LimitExceeded).with_message(format!(
            "An account may have at most {MAX_TOOLS_PER_ACCOUNT} tools; delete one to make room."
        )),
        WriteError::HeadersNeeded => ApiError::validation(FieldErrors::single(
            "headers",
            "The endpoint moves to another host: send the headers again, with their values.",
        )),
        WriteError::Database(error) => error.into(),
    }
}

/// The account's tools, one page in id order.
#[utoipa::path(
    get,
    path = "/api/user/tools",
    tag = "tools",
    security(("api_key" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "One page of tools", body = ToolList),
        (status = 422, description = "`VALIDATION_ERROR`: a bad `per_page` or `cursor`", body = ErrorBody),
    )
)]
pub async fn list_tools(
    State(app): State<App>,
    caller: Caller,
    page: IdPageQuery,
) -> ApiResult<Json<ToolList>> {
    let mut conn = app.db().await?;
    let page = tool::list(&mut conn, caller.account_id, page.per_page, page.after).await?;
    Ok(Json(ToolList {
        data: page.rows.into_iter().map(|row| row.into_wire()).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Creates a tool (`name`, `description`, `endpoint` and `method` are required).
#[utoipa::path(
    post,
    path = "/api/user/tools",
    tag = "tools",
    security(("api_key" = [])),
    params(IdempotencyKey),
    request_body(
        content = ToolInput,
        example = json!({
            "name": "check_calendar",
            "description": "Free appointment slots on a day",
            "endpoint": "https://crm.example.com/api/slots",
            "method": "GET",
            "timeout": 5,
            "headers": [{ "name": "Authorization", "value": "Bearer crm-secret-token" }],
            "schema": [{ "name": "date", "type": "string", "description": "YYYY-MM-DD" }]
        })
    ),
    responses(
        (status = 201, description = "The new tool (header values masked)", body = ToolResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`, `LIMIT_EXCEEDED`, `IDEMPOTENCY_KEY_REUSED`", body = ErrorBody),
    )
)]
pub async fn create_tool(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Response> {
    let input = read_input(&body.0, true)?;
    let fingerprint = idempotency::fingerprint("POST", "/api/user/tools", Some(&body.0));
    let account_id = caller.account_id;
    let actor = caller.actor();
    Ok(
        idempotency::execute(&app, account_id, &headers, fingerprint, move |conn| {
            Box::pin(async move {
                Ok((
                    StatusCode::CREATED,
                    ToolResponse {
                        status: true,
                        data: create(conn, account_id, input, &actor).await?,
                    },
                ))
            })
        })
        .await,
    )
}

/// Creates one of the account's tools from a validated input, logged as `actor`'s; the caller
/// holds the transaction.
pub async fn create(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    input: ToolInput,
    actor: &Actor,
) -> ApiResult<Tool> {
    let row = tool::create(conn, account_id, input)
        .await
        .map_err(write_error)?;
    let details = json!({ "name": row.name });
    let (action, target) = (AuditAction::ToolCreated, Target::Tool(row.id));
    audit_log::record(conn, account_id, actor, action, target, details).await?;
    Ok(row.into_wire())
}

/// One tool (header values masked).
#[utoipa::path(
    get,
    path = "/api/user/tools/{id}",
    tag = "tools",
    security(("api_key" = [])),
    params(("id" = i64, Path, description = "The tool's id")),
    responses(
        (status = 200, description = "The tool", body = ToolResponse),
        (status = 404, description = "`TOOL_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
    )
)]
pub async fn get_tool(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Json<ToolResponse>> {
    let id = tool_id(&id)?;
    let mut conn = app.db().await?;
    let row = tool::find(&mut conn, caller.account_id, id)
        .await?
        .ok_or(ErrorCode::ToolNotFound)?;
    Ok(Json(ToolResponse {
        status: true,
        data: row.into_wire(),
    }))
}

/// Changes a tool: absent fields keep their value; a masked header value keeps the stored one.
#[utoipa::path(
    put,
    path = "/api/user/tools/{id}",
    tag = "tools",
    security(("api_key" = [])),
    params(("id" = i64, Path, description = "The tool's id")),
    request_body(content = ToolInput, example = json!({ "timeout": 8 })),
    responses(
        (status = 200, description = "The tool as changed", body = ToolResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 404, description = "`TOOL_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`", body = ErrorBody),
    )
)]
pub async fn update_tool(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
    body: JsonBody,
) -> ApiResult<Json<ToolResponse>> {
    let id = tool_id(&id)?;
    let input = read_input(&body.0, false)?;
    let mut conn = app.db().await?;
    let data = update(&mut conn, caller.account_id, id, input, &caller.actor()).await?;
    Ok(Json(ToolResponse { status: true, data }))
}

/// Changes one of the account's tools by a validated input, logged as `actor`'s in the same
/// transaction; a masked header value keeps the stored one.
pub async fn update(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
    input: ToolInput,
    actor: &Actor,
) -> ApiResult<Tool> {
    let fields = audit_log::fields_sent(&input);
    conn.transaction::<_, ApiError, _>(async |conn| {
        let row = tool::update(conn, account_id, id, input)
            .await
            .map_err(write_error)?
            .ok_or(ErrorCode::ToolNotFound)?;
        let details = json!({ "name": row.name, "fields": fields });
        let (action, target) = (AuditAction::ToolUpdated, Target::Tool(id));
        audit_log::record(conn, account_id, actor, action, target, details).await?;
        Ok(row.into_wire())
    })
    .await
}

/// Deletes a tool; assistants stop offering it.
#[utoipa::path(
    delete,
    path = "/api/user/tools/{id}",
    tag = "tools",
    security(("api_key" = [])),
    params(("id" = i64, Path, description = "The tool's id")),
    responses(
        (status = 200, description = "Deleted", body = DeletedResponse),
        (status = 404, description = "`TOOL_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
    )
)]
pub async fn delete_tool(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Json<DeletedResponse>> {
    let id = tool_id(&id)?;
    let mut conn = app.db().await?;
    remove(&mut conn, caller.account_id, id, &caller.actor()).await?;
    Ok(Json(DeletedResponse {
        status: true,
        message: "Tool deleted".to_owned(),
    }))
}

/// Deletes one of the account's tools, logged as `actor`'s in the same transaction.
pub async fn remove(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
    actor: &Actor,
) -> ApiResult<()> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let found = tool::find(conn, account_id, id).await?;
        let Some(found) = found else {
            return Err(ErrorCode::ToolNotFound.into());
        };
        if !tool::delete(conn, account_id, id).await? {
            return Err(ErrorCode::ToolNotFound.into());
        }
        let details = json!({ "name": found.name });
        let (action, target) = (AuditAction::ToolDeleted, Target::Tool(id));
        audit_log::record(conn, account_id, actor, action, target, details).await?;
        Ok(())
    })
    .await
}
