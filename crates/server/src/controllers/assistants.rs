//! `GET /api/user/assistants/get`, `POST /api/user/assistant`, `PUT /api/user/assistant/{id}`.

use anyreply_core::limits::MAX_ASSISTANTS_PER_ACCOUNT;
use anyreply_core::wire::{Assistant, AssistantInput, AssistantList, AssistantResponse, PageQuery};
use anyreply_core::{ErrorBody, ErrorCode, FieldErrors};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::app::App;
use crate::controllers::idempotency;
use crate::controllers::idempotency::IdempotencyKey;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, IdPageQuery, JsonBody, PathParam};
use crate::models::assistant::{self, CreateError};
use crate::models::audit_log::{self, Actor, Target};
use crate::models::{knowledge, tool};
use anyreply_core::wire::AuditAction;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use std::collections::HashSet;

/// The account's assistants, one page in id order.
#[utoipa::path(
    get,
    path = "/api/user/assistants/get",
    tag = "assistants",
    security(("api_key" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "One page of assistants", body = AssistantList),
        (status = 422, description = "`VALIDATION_ERROR`: a bad `per_page` or `cursor`", body = ErrorBody),
    )
)]
pub async fn list_assistants(
    State(app): State<App>,
    caller: Caller,
    page: IdPageQuery,
) -> ApiResult<Json<AssistantList>> {
    let mut conn = app.db().await?;
    let page = assistant::list(&mut conn, caller.account_id, page.per_page, page.after).await?;
    Ok(Json(AssistantList {
        data: page.rows.into_iter().map(|row| row.into_wire()).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Creates an assistant (`name` is required).
#[utoipa::path(
    post,
    path = "/api/user/assistant",
    tag = "assistants",
    security(("api_key" = [])),
    params(IdempotencyKey),
    request_body(
        content = AssistantInput,
        example = json!({
            "name": "Front desk",
            "system_prompt": "You answer for {{business}}. Be brief.",
            "variables": { "business": "Trattoria Roma" }
        })
    ),
    responses(
        (status = 201, description = "The new assistant", body = AssistantResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 404, description = "`KNOWLEDGE_BASE_NOT_FOUND`: `knowledgebase_id` is not one of the account's", body = ErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`, `LIMIT_EXCEEDED`, `IDEMPOTENCY_KEY_REUSED`", body = ErrorBody),
    )
)]
pub async fn create_assistant(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Response> {
    let input = body.parse(|json| AssistantInput::from_json(json, true))?;
    let fingerprint = idempotency::fingerprint("POST", "/api/user/assistant", Some(&body.0));
    let default_model = app.settings.llm_default_model.clone();
    let account_id = caller.account_id;
    let actor = caller.actor();
    Ok(
        idempotency::execute(&app, account_id, &headers, fingerprint, move |conn| {
            Box::pin(async move {
                Ok((
                    StatusCode::CREATED,
                    AssistantResponse {
                        status: true,
                        data: create(conn, account_id, input, &default_model, &actor).await?,
                    },
                ))
            })
        })
        .await,
    )
}

/// Creates one of the account's assistants from a validated input, logged as `actor`'s; the
/// caller holds the transaction.
pub async fn create(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    input: AssistantInput,
    default_model: &str,
    actor: &Actor,
) -> ApiResult<Assistant> {
    check_tools(conn, account_id, &input).await?;
    check_knowledge_base(conn, account_id, &input).await?;
    let row = assistant::create(conn, account_id, input, default_model)
        .await
        .map_err(create_error)?;
    let details = json!({ "name": row.name });
    audit_log::record(
        conn,
        account_id,
        actor,
        AuditAction::AssistantCreated,
        Target::Assistant(row.id),
        details,
    )
    .await?;
    Ok(row.into_wire())
}

fn create_error(error: CreateError) -> ApiError {
    match error {
        CreateError::LimitReached => ApiError::new(ErrorCode::LimitExceeded).with_message(format!(
            "An account may have at most {MAX_ASSISTANTS_PER_ACCOUNT} assistants."
        )),
        CreateError::Database(error) => error.into(),
    }
}

/// Changes an assistant: absent fields keep their value.
#[utoipa::path(
    put,
    path = "/api/user/assistant/{id}",
    tag = "assistants",
    security(("api_key" = [])),
    params(("id" = i64, Path, description = "The assistant's id")),
    request_body(content = AssistantInput, example = json!({ "llm_temperature": 0.2 })),
    responses(
        (status = 200, description = "The assistant as changed", body = AssistantResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 404, description = "`ASSISTANT_NOT_FOUND`, `NOT_FOUND` (a malformed id), `KNOWLEDGE_BASE_NOT_FOUND` (`knowledgebase_id` is not one of the account's)", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`", body = ErrorBody),
    )
)]
pub async fn update_assistant(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
    body: JsonBody,
) -> ApiResult<Json<AssistantResponse>> {
    let id: i64 = id.parse().map_err(|_| ErrorCode::AssistantNotFound)?;
    let input = body.parse(|json| AssistantInput::from_json(json, false))?;
    let mut conn = app.db().await?;
    let data = update(
        &mut conn,
        caller.account_id,
        id,
        input,
        &app.settings.llm_default_model,
        &caller.actor(),
    )
    .await?;
    Ok(Json(AssistantResponse { status: true, data }))
}

/// Changes one of the account's assistants by a validated input, logged as `actor`'s in the
/// same transaction.
pub async fn update(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
    input: AssistantInput,
    default_model: &str,
    actor: &Actor,
) -> ApiResult<Assistant> {
    check_tools(conn, account_id, &input).await?;
    check_knowledge_base(conn, account_id, &input).await?;
    let fields = audit_log::fields_sent(&input);
    conn.transaction::<_, ApiError, _>(async |conn| {
        let row = assistant::update(conn, account_id, id, input, default_model)
            .await?
            .ok_or(ErrorCode::AssistantNotFound)?;
        let details = json!({ "name": row.name, "fields": fields });
        audit_log::record(
            conn,
            account_id,
            actor,
            AuditAction::AssistantUpdated,
            Target::Assistant(id),
            details,
        )
        .await?;
        Ok(row.into_wire())
    })
    .await
}

/// A knowledge base named must be one of the account's own.
async fn check_knowledge_base(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    input: &AssistantInput,
) -> ApiResult<()> {
    match input.knowledgebase_id {
        Some(Some(id)) if !knowledge::base_exists(conn, account_id, id).await? => {
            Err(ErrorCode::KnowledgeBaseNotFound.into())
        }
        _ => Ok(()),
    }
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
