//! `GET /api/conversations/{uuid}`, `GET /api/user/conversations`, and
//! `POST /api/automate/conversations/{uuid}/disable-ai` / `enable-ai`.

use anyreply_core::limits::{DEFAULT_PER_PAGE, MAX_CUSTOMER_IDENTIFIER_CHARS, MAX_PER_PAGE};
use anyreply_core::validate::Fields;
use anyreply_core::wire::{AiToggleResponse, ConversationHistory, ConversationPage};
use anyreply_core::{ErrorCode, Money};
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, PathParam};
use crate::idempotency;
use crate::models::conversation::{self, Cursor, ListFilter};
use crate::models::{assistant, message};
use crate::reply::prompt::merge_variables;

fn conversation_id(text: &str) -> ApiResult<Uuid> {
    text.parse()
        .map_err(|_| ErrorCode::ConversationNotFound.into())
}

pub async fn get_conversation(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Json<ConversationHistory>> {
    let id = conversation_id(&id)?;
    let mut conn = app.db().await?;
    let row = conversation::find(&mut conn, caller.account_id, id)
        .await?
        .ok_or(ErrorCode::ConversationNotFound)?;
    let defaults = assistant::find(&mut conn, caller.account_id, row.assistant_id)
        .await?
        .map(|a| a.variables)
        .unwrap_or(Value::Null);
    let history = message::history(&mut conn, id).await?;
    Ok(Json(ConversationHistory {
        status: true,
        id: row.id,
        assistant_id: row.assistant_id,
        customer_identifier: row.customer_identifier,
        ai_enabled: row.ai_enabled,
        total_cost: Money::from_subunits(row.total_cost),
        history: history.into_iter().map(|m| m.into_history()).collect(),
        variables: merge_variables(&defaults, &row.variables),
    }))
}

pub async fn list_conversations(
    State(app): State<App>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<ConversationPage>> {
    let params: Map<String, Value> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
    let params = Value::Object(params);
    let mut fields = Fields::new(&params);
    let filter = ListFilter {
        kind: fields.optional_string("type", 1..=32),
        assistant_id: fields.optional_integer("assistant_id", 1..=i64::MAX),
        customer_identifier: fields
            .optional_string("external_identifier", 1..=MAX_CUSTOMER_IDENTIFIER_CHARS),
    };
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

pub async fn disable_ai(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    set_ai(app, caller, &headers, &id, false).await
}

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
    Ok(
        idempotency::execute(&app, account_id, headers, fingerprint, move |conn| {
            Box::pin(async move {
                let ai_enabled = conversation::set_ai_enabled(conn, account_id, id, enabled)
                    .await?
                    .ok_or(ErrorCode::ConversationNotFound)?;
                Ok((
                    StatusCode::OK,
                    AiToggleResponse {
                        status: true,
                        ai_enabled,
                    },
                ))
            })
        })
        .await,
    )
}
