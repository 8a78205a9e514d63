//! `GET /api/conversations/{uuid}`, `GET /api/user/conversations`, and
//! `POST /api/automate/conversations/{uuid}/disable-ai` / `enable-ai`.

use anyreply_core::limits::{DEFAULT_PER_PAGE, MAX_CUSTOMER_IDENTIFIER_CHARS, MAX_PER_PAGE};
use anyreply_core::validate::Fields;
use anyreply_core::wire::{
    AiToggleResponse, AuditAction, ConversationHistory, ConversationPage, ConversationState,
    EventType, ListConversationsQuery, PageQuery,
};
use anyreply_core::{ErrorBody, ErrorCode, Money};
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use diesel_async::AsyncPgConnection;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::App;
use crate::controllers::idempotency;
use crate::controllers::idempotency::IdempotencyKey;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, PathParam, query_params};
use crate::models::audit_log::{self, Actor, Target};
use crate::models::conversation::{self, Cursor, ListFilter, View};
use crate::models::event::{self, NewEvent};
use crate::models::message::BeforeSeq;
use crate::models::page::OpaqueCursor;
use crate::models::{assistant, message};

/// A conversation id from a path; a malformed one is not found.
pub fn conversation_id(text: &str) -> ApiResult<Uuid> {
    text.parse()
        .map_err(|_| ErrorCode::ConversationNotFound.into())
}

/// Messages of a history page unless `per_page` says otherwise.
pub const HISTORY_PER_PAGE: usize = 100;

/// `?per_page=1..=100&cursor=…`: the newest messages, or those before the cursor.
fn history_page(query: Option<String>) -> ApiResult<(usize, i64)> {
    let params = query_params(query.as_deref());
    let mut fields = Fields::new(&params);
    let per_page = fields
        .optional_integer("per_page", 1..=i64::from(MAX_PER_PAGE))
        .map_or(HISTORY_PER_PAGE, |n| n as usize);
    let cursor = fields.optional_string("cursor", 1..=64);
    let mut errors = fields.errors;
    let before = match cursor {
        None => i64::MAX,
        Some(text) => match BeforeSeq::decode(&text) {
            Some(cursor) if cursor.seq > 0 => cursor.seq,
            _ => {
                errors.add("cursor", "The cursor is invalid.");
                0
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok((per_page, before))
}

/// A conversation and the newest page of its history, oldest first.
#[utoipa::path(
    get,
    path = "/api/conversations/{id}",
    tag = "conversations",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The conversation's id"), PageQuery),
    responses(
        (status = 200, description = "The conversation", body = ConversationHistory),
        (status = 404, description = "`CONVERSATION_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`: a bad `per_page` or `cursor`", body = ErrorBody),
    )
)]
pub async fn get_conversation(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<ConversationHistory>> {
    let id = conversation_id(&id)?;
    let (per_page, before) = history_page(query)?;
    Ok(Json(
        history(&app, caller.account_id, id, per_page, before).await?,
    ))
}

/// One of the account's conversations with `per_page` messages of its history before the
/// place `before` (`i64::MAX`: the newest), oldest first.
pub async fn history(
    app: &App,
    account_id: i64,
    id: Uuid,
    per_page: usize,
    before: i64,
) -> ApiResult<ConversationHistory> {
    let mut conn = app.db().await?;
    let row = conversation::find(&mut conn, account_id, id)
        .await?
        .ok_or(ErrorCode::ConversationNotFound)?;
    let defaults = assistant::find(&mut conn, account_id, row.assistant_id)
        .await?
        .map(|a| a.variables)
        .unwrap_or(Value::Null);
    let before = before.min(row.next_seq);
    let (mut history, more) = message::newest_before(&mut conn, id, before, per_page).await?;
    let next_cursor = history
        .last()
        .filter(|_| more)
        .map(|oldest| BeforeSeq { seq: oldest.seq }.encode());
    history.reverse();
    let summary_through = match row.summary {
        Some(_) => message::written_at(&mut conn, id, row.summary_through_seq).await?,
        None => None,
    };
    Ok(ConversationHistory {
        status: true,
        id: row.id,
        assistant_id: row.assistant_id,
        customer_identifier: row.customer_identifier,
        ai_enabled: row.ai_enabled,
        total_cost: Money::from_subunits(row.total_cost),
        prompt_tokens: row.prompt_tokens,
        completion_tokens: row.completion_tokens,
        opted_out: row.opted_out,
        assignee_id: row.assignee_id,
        handoff_requested_at: row.handoff_requested_at,
        state: ConversationState::of(row.ended_at),
        ended_at: row.ended_at,
        extracted_variables: crate::models::object(row.extracted_variables),
        summary: row.summary,
        summary_through,
        history: history.into_iter().map(|m| m.into_history()).collect(),
        variables: crate::models::overlay_variables(&defaults, &row.variables),
        next_cursor,
    })
}

/// The account's conversations, newest first, one page.
#[utoipa::path(
    get,
    path = "/api/user/conversations",
    tag = "conversations",
    security(("api_key" = [])),
    params(ListConversationsQuery),
    responses(
        (status = 200, description = "One page of conversations", body = ConversationPage),
        (status = 422, description = "`VALIDATION_ERROR`: a bad filter, `per_page` or `cursor`", body = ErrorBody),
    )
)]
pub async fn list_conversations(
    State(app): State<App>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<ConversationPage>> {
    let params = query_params(query.as_deref());
    let mut fields = Fields::new(&params);
    let view = fields.optional_string("view", 1..=32);
    let assignee_id = fields.optional_integer("assignee_id", 1..=i64::MAX);
    let mut filter = ListFilter {
        kind: fields.optional_string("type", 1..=32),
        assistant_id: fields.optional_integer("assistant_id", 1..=i64::MAX),
        customer_identifier: fields
            .optional_string("external_identifier", 1..=MAX_CUSTOMER_IDENTIFIER_CHARS),
        view: assignee_id.map(View::AssignedTo),
        ..ListFilter::default()
    };
    match view.as_deref() {
        None => {}
        Some(_) if filter.view.is_some() => fields
            .errors
            .add("view", "Give either view or assignee_id, not both."),
        Some("needs_human") => filter.view = Some(View::NeedsHuman),
        Some("unassigned") => filter.view = Some(View::Unassigned),
        Some(_) => fields
            .errors
            .add("view", "The view must be needs_human or unassigned."),
    }
    let per_page = fields
        .optional_integer("per_page", 1..=i64::from(MAX_PER_PAGE))
        .map_or(DEFAULT_PER_PAGE, |n| n as u32);
    let cursor = fields.optional_string("cursor", 1..=512);
    let mut errors = fields.errors;
    let cursor = cursor.and_then(|text| {
        let decoded = Cursor::decode(&text);
        if decoded.is_none() {
            errors.add("cursor", "The cursor is invalid.");
        }
        decoded
    });
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut conn = app.db().await?;
    let page = conversation::list(&mut conn, caller.account_id, &filter, per_page, cursor).await?;
    Ok(Json(ConversationPage {
        data: page
            .rows
            .into_iter()
            .map(|row| row.into_summary())
            .collect(),
        path: "/api/user/conversations".to_owned(),
        per_page,
        next_cursor: page.next_cursor,
        prev_cursor: page.prev_cursor,
    }))
}

/// Human takeover: the AI stays silent in this conversation until enabled again.
#[utoipa::path(
    post,
    path = "/api/automate/conversations/{id}/disable-ai",
    tag = "conversations",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The conversation's id"), IdempotencyKey),
    responses(
        (status = 200, description = "The conversation's switch as it now stands", body = AiToggleResponse),
        (status = 404, description = "`CONVERSATION_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT`", body = ErrorBody),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`, `VALIDATION_ERROR` (a bad `Idempotency-Key`)", body = ErrorBody),
    )
)]
pub async fn disable_ai(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    set_ai(app, caller, &headers, &id, false).await
}

/// Ends a takeover: the AI answers this conversation again.
#[utoipa::path(
    post,
    path = "/api/automate/conversations/{id}/enable-ai",
    tag = "conversations",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The conversation's id"), IdempotencyKey),
    responses(
        (status = 200, description = "The conversation's switch as it now stands", body = AiToggleResponse),
        (status = 404, description = "`CONVERSATION_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT`", body = ErrorBody),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`, `VALIDATION_ERROR` (a bad `Idempotency-Key`)", body = ErrorBody),
    )
)]
pub async fn enable_ai(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    set_ai(app, caller, &headers, &id, true).await
}

async fn set_ai(
    app: App,
    caller: Caller,
    headers: &HeaderMap,
    id: &str,
    enabled: bool,
) -> ApiResult<Response> {
    let id = conversation_id(id)?;
    let action = if enabled { "enable-ai" } else { "disable-ai" };
    let fingerprint = idempotency::fingerprint(
        "POST",
        &format!("/api/automate/conversations/{id}/{action}"),
        None,
    );
    let account_id = caller.account_id;
    let actor = caller.actor();
    Ok(
        idempotency::execute(&app, account_id, headers, fingerprint, move |conn| {
            Box::pin(async move {
                Ok((
                    StatusCode::OK,
                    switch_ai(conn, account_id, id, enabled, &actor).await?,
                ))
            })
        })
        .await,
    )
}

/// Turns the AI of one of the account's conversations on or off, with its event and its
/// audit entry (as `actor`'s) when that changed anything; the caller holds the transaction.
pub async fn switch_ai(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: Uuid,
    enabled: bool,
    actor: &Actor,
) -> ApiResult<AiToggleResponse> {
    let switched = conversation::set_ai_enabled(conn, account_id, id, enabled)
        .await?
        .ok_or(ErrorCode::ConversationNotFound)?;
    if switched.changed {
        let (kind, action) = if enabled {
            (EventType::AiEnabled, AuditAction::ConversationHandedBack)
        } else {
            (EventType::AiDisabled, AuditAction::ConversationTakenOver)
        };
        event::insert(conn, &NewEvent::about(account_id, kind, id)).await?;
        let target = Target::Conversation(id);
        audit_log::record(conn, account_id, actor, action, target, json!({})).await?;
    }
    Ok(AiToggleResponse {
        status: true,
        ai_enabled: enabled,
    })
}
