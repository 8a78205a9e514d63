//! The team inbox's actions on a conversation: `POST /api/conversations/{uuid}/assign` and
//! `POST/GET /api/conversations/{uuid}/notes`.

use anyreply_core::wire::{
    AssignInput, AssignResponse, Author, EventType, NoteInput, NoteList, NoteResponse,
};
use anyreply_core::{ErrorBody, ErrorCode};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use uuid::Uuid;

use crate::app::App;
use crate::controllers::conversations::conversation_id;
use crate::controllers::idempotency::IdempotencyKey;
use crate::controllers::{idempotency, operators};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, PathParam};
use crate::models::event::{self, NewEvent};
use crate::models::{conversation, note};

/// Assigns the conversation to one of the account's operators, or to no one (`null`). An
/// `conversation.assigned` event says so when it changed anything.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/assign",
    tag = "conversations",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The conversation's id")),
    request_body(content = AssignInput, example = json!({ "operator_id": 3 })),
    responses(
        (status = 200, description = "Who has the conversation now", body = AssignResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 404, description = "`CONVERSATION_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR` (including an `operator_id` that is not the account's)", body = ErrorBody),
    )
)]
pub async fn assign_conversation(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
    body: JsonBody,
) -> ApiResult<Json<AssignResponse>> {
    let id = conversation_id(&id)?;
    let input = body.parse(AssignInput::from_json)?;
    let by = operators::api_key_author();
    let mut conn = app.db().await?;
    let assignee = conn
        .transaction::<_, ApiError, _>(async |conn| {
            assign(conn, caller.account_id, id, input.operator_id, &by).await
        })
        .await?;
    Ok(Json(AssignResponse {
        status: true,
        assignee,
    }))
}

/// Assigns the account's conversation `id` to `operator_id` (checked to be the account's) or to
/// no one, by `by`, with its event when that changed anything; the caller holds the
/// transaction. Returns who has it now.
pub async fn assign(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: Uuid,
    operator_id: Option<i64>,
    by: &Author,
) -> ApiResult<Option<Author>> {
    let assignee = match operator_id {
        Some(operator_id) => Some(operators::author(conn, account_id, Some(operator_id)).await?),
        None => None,
    };
    let switched = conversation::assign(conn, account_id, id, operator_id)
        .await?
        .ok_or(ErrorCode::ConversationNotFound)?;
    if switched.changed {
        let assigned = NewEvent::about(account_id, EventType::ConversationAssigned, id);
        event::insert_detailed(conn, &assigned, &json!({ "assignee": assignee, "by": by })).await?;
    }
    Ok(assignee)
}

/// Writes an internal note on the conversation: operators see it in the timeline, the customer
/// and the model never do. A `note.created` event carries it.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/notes",
    tag = "conversations",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The conversation's id"), IdempotencyKey),
    request_body(content = NoteInput, example = json!({ "content": "Called her back; she wants the invoice by mail.", "operator_id": 3 })),
    responses(
        (status = 201, description = "The note", body = NoteResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 404, description = "`CONVERSATION_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`, `IDEMPOTENCY_KEY_REUSED`", body = ErrorBody),
    )
)]
pub async fn create_note(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    PathParam(id): PathParam,
    body: JsonBody,
) -> ApiResult<Response> {
    let id = conversation_id(&id)?;
    let input = body.parse(NoteInput::from_json)?;
    let fingerprint = idempotency::fingerprint(
        "POST",
        &format!("/api/conversations/{id}/notes"),
        Some(&body.0),
    );
    let account_id = caller.account_id;
    Ok(
        idempotency::execute(&app, account_id, &headers, fingerprint, move |conn| {
            Box::pin(async move {
                let author = operators::author(conn, account_id, input.operator_id).await?;
                let data = write_note(conn, account_id, id, &input.content, &author).await?;
                Ok((StatusCode::CREATED, NoteResponse { status: true, data }))
            })
        })
        .await,
    )
}

/// Stores `author`'s note on the account's conversation `id`, with its event; the caller holds
/// the transaction.
pub async fn write_note(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: Uuid,
    content: &str,
    author: &Author,
) -> ApiResult<anyreply_core::wire::Note> {
    conversation::find(conn, account_id, id)
        .await?
        .ok_or(ErrorCode::ConversationNotFound)?;
    let note = note::insert(conn, id, author, content).await?.into_wire();
    let created = NewEvent::about(account_id, EventType::NoteCreated, id);
    event::insert_detailed(conn, &created, &json!({ "note": note })).await?;
    Ok(note)
}

/// The conversation's internal notes, oldest first (the newest 500).
#[utoipa::path(
    get,
    path = "/api/conversations/{id}/notes",
    tag = "conversations",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The conversation's id")),
    responses(
        (status = 200, description = "The notes", body = NoteList),
        (status = 404, description = "`CONVERSATION_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
    )
)]
pub async fn list_notes(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Json<NoteList>> {
    let id = conversation_id(&id)?;
    let mut conn = app.db().await?;
    conversation::find(&mut conn, caller.account_id, id)
        .await?
        .ok_or(ErrorCode::ConversationNotFound)?;
    let rows = note::of_conversation(&mut conn, id).await?;
    Ok(Json(NoteList {
        data: rows.into_iter().map(|row| row.into_wire()).collect(),
    }))
}
