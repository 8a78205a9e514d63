//! A person of the business in the conversation: `POST /api/conversations/{uuid}/messages`
//! (an operator's message to the customer), and a customer's opt-out and opt-in
//! (`POST /api/automate/opt-out`, `/opt-in`), as an SMS `STOP` and `START` say.

use anyreply_core::limits::MAX_CUSTOMER_IDENTIFIER_CHARS;
use anyreply_core::validate::Fields;
use anyreply_core::wire::{
    Author, EventType, HistoryMessage, OperatorMessageInput, OperatorMessageResponse, OptOutInput,
    OptOutResponse,
};
use anyreply_core::{ErrorBody, ErrorCode, FieldErrors};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use diesel_async::AsyncPgConnection;
use serde_json::Value;
use uuid::Uuid;

use crate::app::App;
use crate::controllers::idempotency::IdempotencyKey;
use crate::controllers::{idempotency, operators};
use crate::error::ApiResult;
use crate::extract::{Caller, JsonBody, PathParam};
use crate::models::event::{self, NewEvent};
use crate::models::{conversation, message};

/// Longest operator message, in characters.
pub const MAX_OPERATOR_MESSAGE_CHARS: usize = 10_000;

/// Stores a message of the business to the customer (role `operator`): it joins the history,
/// later prompts show it to the model as something the business said, and the event
/// `operator.message` carries it to the customer's channel. The AI stays as it was.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/messages",
    tag = "conversations",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The conversation's id"), IdempotencyKey),
    request_body(content = OperatorMessageInput, example = json!({ "content": "Hi, this is Anna from Acme: your parcel left today." })),
    responses(
        (status = 201, description = "The stored message", body = OperatorMessageResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 404, description = "`CONVERSATION_NOT_FOUND`, `NOT_FOUND` (a malformed id)", body = ErrorBody),
        (status = 409, description = "`CONVERSATION_OPTED_OUT`, `IDEMPOTENCY_CONFLICT`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`, `IDEMPOTENCY_KEY_REUSED`", body = ErrorBody),
    )
)]
pub async fn create_operator_message(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    PathParam(id): PathParam,
    body: JsonBody,
) -> ApiResult<Response> {
    let conversation_id: Uuid = id.parse().map_err(|_| ErrorCode::ConversationNotFound)?;
    let input = body.parse(operator_message_input)?;
    let fingerprint = idempotency::fingerprint(
        "POST",
        &format!("/api/conversations/{conversation_id}/messages"),
        Some(&body.0),
    );
    let account_id = caller.account_id;
    Ok(
        idempotency::execute(&app, account_id, &headers, fingerprint, move |conn| {
            Box::pin(async move {
                Ok((
                    StatusCode::CREATED,
                    OperatorMessageResponse {
                        status: true,
                        data: {
                            let author =
                                operators::author(conn, account_id, input.operator_id).await?;
                            store_operator_message(
                                conn,
                                account_id,
                                conversation_id,
                                &input,
                                &author,
                            )
                            .await?
                        },
                    },
                ))
            })
        })
        .await,
    )
}

/// An operator message's body, validated.
pub fn operator_message_input(json: &Value) -> Result<OperatorMessageInput, FieldErrors> {
    let mut fields = Fields::new(json);
    let content = fields.required_string("content", 1..=MAX_OPERATOR_MESSAGE_CHARS);
    let operator_id = fields.optional_integer("operator_id", 1..=i64::MAX);
    fields.errors.finish(OperatorMessageInput {
        content: content.unwrap_or_default(),
        operator_id,
    })
}

/// Appends `author`'s operator message to one of the account's conversations, with its event;
/// the caller holds the transaction.
pub async fn store_operator_message(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    conversation_id: Uuid,
    input: &OperatorMessageInput,
    author: &Author,
) -> ApiResult<HistoryMessage> {
    let place = conversation::take_place(conn, account_id, conversation_id)
        .await?
        .ok_or(ErrorCode::ConversationNotFound)?;
    if place.opted_out {
        return Err(ErrorCode::ConversationOptedOut.into());
    }
    let stored =
        message::insert_operator(conn, conversation_id, place.seq, &input.content, author).await?;
    let written = NewEvent {
        message_seq: Some(place.seq),
        ..NewEvent::about(account_id, EventType::OperatorMessage, conversation_id)
    };
    event::insert(conn, &written).await?;
    Ok(stored.into_history())
}

/// The customer stops messages (an SMS `STOP`): no AI reply, no operator message, no charge,
/// until they opt in again. Their messages are still stored.
#[utoipa::path(
    post,
    path = "/api/automate/opt-out",
    tag = "conversations",
    security(("api_key" = [])),
    request_body(content = OptOutInput, example = json!({ "assistant_id": 1, "customer_identifier": "+49155551234" })),
    responses(
        (status = 200, description = "The customer is opted out", body = OptOutResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 404, description = "`ASSISTANT_NOT_FOUND`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`", body = ErrorBody),
    )
)]
pub async fn opt_out_customer(
    State(app): State<App>,
    caller: Caller,
    body: JsonBody,
) -> ApiResult<axum::Json<OptOutResponse>> {
    set_opted_out(app, caller, body, true).await
}

/// The customer takes messages again (an SMS `START` or `UNSTOP`).
#[utoipa::path(
    post,
    path = "/api/automate/opt-in",
    tag = "conversations",
    security(("api_key" = [])),
    request_body(content = OptOutInput, example = json!({ "assistant_id": 1, "customer_identifier": "+49155551234" })),
    responses(
        (status = 200, description = "The customer is opted in", body = OptOutResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 404, description = "`ASSISTANT_NOT_FOUND`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`", body = ErrorBody),
    )
)]
pub async fn opt_in_customer(
    State(app): State<App>,
    caller: Caller,
    body: JsonBody,
) -> ApiResult<axum::Json<OptOutResponse>> {
    set_opted_out(app, caller, body, false).await
}

/// Setting it twice is harmless, so no idempotency key is needed.
async fn set_opted_out(
    app: App,
    caller: Caller,
    body: JsonBody,
    opted_out: bool,
) -> ApiResult<axum::Json<OptOutResponse>> {
    let input = body.parse(|json| {
        let mut fields = Fields::new(json);
        let assistant_id = fields.required_integer("assistant_id", 1..=i64::MAX);
        let customer =
            fields.required_string("customer_identifier", 1..=MAX_CUSTOMER_IDENTIFIER_CHARS);
        fields.errors.finish(OptOutInput {
            assistant_id: assistant_id.unwrap_or_default(),
            customer_identifier: customer.unwrap_or_default(),
        })
    })?;
    let mut conn = app.db().await?;
    let conversation_id = conversation::set_opted_out(
        &mut conn,
        caller.account_id,
        input.assistant_id,
        &input.customer_identifier,
        opted_out,
    )
    .await?
    .ok_or(ErrorCode::AssistantNotFound)?;
    Ok(axum::Json(OptOutResponse {
        status: true,
        conversation_id,
        opted_out,
    }))
}
