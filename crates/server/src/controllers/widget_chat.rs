//! What a web chat widget's page calls: `/widget.js`, and under `/api/widget/`, with the
//! widget's publishable key as its Bearer token, `POST /api/widget/messages` (a visitor's
//! message; the reply streamed under `Accept: text/event-stream`) and
//! `GET /api/widget/messages` (the visitor's conversation so far).
//!
//! A publishable key is public (it sits in the page), so it is only good for chatting with its
//! assistant, from pages of the origins its widget lists (the browser's `Origin`, which a page
//! cannot forge), at a bounded rate per visitor.

use anyreply_core::wire::widgets::{
    WidgetHistoryMessage, visitor_customer_identifier, visitor_id_problem,
};
use anyreply_core::wire::{
    GenerateReplyRequest, GenerateReplyResponse, WidgetHistory, WidgetMessage,
};
use anyreply_core::{ErrorBody, ErrorCode, FieldErrors};
use axum::Json;
use axum::extract::{FromRef, FromRequestParts, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::App;
use crate::controllers::generate_reply::run_reply;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, bearer_token, query_params};
use crate::models::widget::{self, KEY_MARK, WidgetRow};
use crate::models::{conversation, message};
use crate::rate_limit::RateLimit;

/// The newest messages the history read returns.
const HISTORY_MESSAGES: usize = 100;

/// The widget script, plain JavaScript that builds its own panel in a shadow root.
const SCRIPT: &str = include_str!("../../assets/widget/widget.js");

/// The chat widget's script, for `<script src=".../widget.js" data-key="arpk_…" defer>`.
#[utoipa::path(
    get,
    path = "/widget.js",
    tag = "widget",
    responses((status = 200, description = "The script", content_type = "text/javascript", body = String))
)]
pub async fn widget_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// The widget of the request's publishable key, called from one of its origins.
#[derive(Debug)]
pub struct WidgetCaller(pub WidgetRow);

impl<S> FromRequestParts<S> for WidgetCaller
where
    App: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let key = bearer_token(&parts.headers)
            .filter(|key| key.starts_with(KEY_MARK))
            .ok_or(ErrorCode::Unauthorized)?;
        let app = App::from_ref(state);
        let mut conn = app.db().await?;
        let row = widget::find_by_key(&mut conn, key)
            .await?
            .ok_or(ErrorCode::Unauthorized)?;
        let origin = parts
            .headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if !origin.is_some_and(|origin| row.allows(origin)) {
            return Err(ErrorCode::OriginNotAllowed.into());
        }
        tracing::Span::current().record("account_id", row.account_id);
        Ok(Self(row))
    }
}

/// A visitor's message; the answer is generate-reply's, without the tools' results (which
/// are the business's, not the visitor's).
#[utoipa::path(
    post,
    path = "/api/widget/messages",
    tag = "widget",
    security(("publishable_key" = [])),
    request_body(
        content = WidgetMessage,
        example = json!({ "visitor_id": "6f1c2a9e-8d0b-4c55-9a43-3b1e2f6d7c80", "message": "Do you ship to Austria?" })
    ),
    responses(
        (status = 200, description = "The reply, as generate-reply answers it (streamed under `Accept: text/event-stream`); `function_calls` is always empty", body = GenerateReplyResponse),
        (status = 401, description = "`UNAUTHORIZED`: no such publishable key", body = ErrorBody),
        (status = 402, description = "`INSUFFICIENT_BALANCE`", body = ErrorBody),
        (status = 403, description = "`ORIGIN_NOT_ALLOWED`: the page's origin is not the widget's", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`", body = ErrorBody),
        (status = 429, description = "`RATE_LIMITED` (this visitor, or the widget), `CONVERSATION_BUSY`", body = ErrorBody),
        (status = 503, description = "`LLM_UNAVAILABLE`, `SERVICE_UNAVAILABLE`", body = ErrorBody),
    )
)]
pub async fn post_widget_message(
    State(app): State<App>,
    WidgetCaller(widget): WidgetCaller,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Response> {
    let input = body.parse(WidgetMessage::from_json)?;
    let limit = app.settings.widget_visitor_rate_per_minute;
    let counted = {
        let mut conn = app.db().await?;
        widget::count_visitor_message(&mut conn, widget.id, &input.visitor_id).await?
    };
    let standing = RateLimit::after(&counted, limit);
    if standing.exceeded {
        return Err(ApiError::new(ErrorCode::RateLimited)
            .with_retry_after(standing.reset)
            .with_headers(standing.headers()));
    }
    let request = GenerateReplyRequest {
        assistant_id: widget.assistant_id,
        customer_identifier: visitor_customer_identifier(&input.visitor_id),
        message: input.message,
        variables: Some(
            json!({ "channel": "web" })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ),
    };
    let caller = Caller {
        account_id: widget.account_id,
        api_key_id: widget.api_key_id,
    };
    run_reply(app, caller, request, None, &headers, |mut answer| {
        answer.function_calls.clear();
        answer
    })
    .await
}

/// The visitor's conversation so far: the newest 100 messages, oldest first.
#[utoipa::path(
    get,
    path = "/api/widget/messages",
    tag = "widget",
    security(("publishable_key" = [])),
    params(("visitor_id" = String, Query, description = "The visitor's id")),
    responses(
        (status = 200, description = "The conversation so far (empty before the first message)", body = WidgetHistory),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorBody),
        (status = 403, description = "`ORIGIN_NOT_ALLOWED`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`", body = ErrorBody),
    )
)]
pub async fn get_widget_messages(
    State(app): State<App>,
    WidgetCaller(widget): WidgetCaller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<WidgetHistory>> {
    let params = query_params(query.as_deref());
    let visitor_id = params["visitor_id"].as_str().unwrap_or_default();
    if let Some(problem) = visitor_id_problem(visitor_id) {
        return Err(ApiError::validation(FieldErrors::single(
            "visitor_id",
            problem,
        )));
    }
    let mut conn = app.db().await?;
    let customer = visitor_customer_identifier(visitor_id);
    let Some(row) = conversation::find_of_customer(
        &mut conn,
        widget.account_id,
        widget.assistant_id,
        &customer,
    )
    .await?
    else {
        return Ok(Json(WidgetHistory {
            messages: Vec::new(),
        }));
    };
    let (mut rows, _) =
        message::newest_before(&mut conn, row.id, row.next_seq, HISTORY_MESSAGES).await?;
    rows.reverse();
    Ok(Json(WidgetHistory {
        messages: rows
            .into_iter()
            .map(|row| {
                let message = row.into_history();
                WidgetHistoryMessage {
                    role: message.role,
                    content: message.content,
                    created_at: message.created_at,
                }
            })
            .collect(),
    }))
}

/// CORS for `/api/widget/`: a preflight (which carries no key) is allowed for an origin some
/// widget lists, and answers name the request's origin when some widget lists it; whether
/// the key's own widget lists it is [`WidgetCaller`]'s check. Other origins get no CORS
/// headers, so their pages cannot read anything.
pub async fn cors(State(app): State<App>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let listed = match origin_listed(&app, &origin).await {
        Ok(listed) => listed,
        Err(error) => return error.into_response(),
    };
    let mut response = if request.method() == Method::OPTIONS {
        if !listed {
            return ApiError::new(ErrorCode::OriginNotAllowed).into_response();
        }
        let mut preflight = StatusCode::NO_CONTENT.into_response();
        let headers = preflight.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, accept"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        preflight
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if listed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset",
            ),
        );
    }
    response
}

async fn origin_listed(app: &App, origin: &HeaderValue) -> ApiResult<bool> {
    let Ok(origin) = origin.to_str() else {
        return Ok(false);
    };
    let mut conn = app.db().await?;
    Ok(widget::any_allows(&mut conn, origin).await?)
}
