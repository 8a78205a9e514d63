//! What a web chat widget's page calls: `/widget.js`, and under `/api/widget/`, with the
//! widget's publishable key as its Bearer token, `POST /api/widget/messages` (a visitor's
//! message; the reply streamed under `Accept: text/event-stream`) and
//! `GET /api/widget/messages` (the visitor's conversation so far).
//!
//! A publishable key is public (it sits in the page), so it is only good for chatting with its
//! assistant, from pages of the origins its widget lists (the browser's `Origin`, which a page
//! cannot forge), at a bounded rate per visitor and per client address. A visitor is whoever
//! holds the token the server issued with their first message (`X-Visitor-Token`).

use anyreply_core::wire::widgets::{WidgetHistoryMessage, visitor_customer_identifier};
use anyreply_core::wire::{
    GenerateReplyRequest, GenerateReplyResponse, WidgetHistory, WidgetMessage,
};
use anyreply_core::{ErrorBody, ErrorCode};
use axum::Json;
use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use diesel_async::AsyncPgConnection;
use serde_json::json;

use crate::app::App;
use crate::client_address;
use crate::controllers::generate_reply::run_reply;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, bearer_token};
use crate::models::widget::{self, KEY_MARK, VISITOR_TOKEN_MARK, WidgetRow};
use crate::models::{conversation, message};
use crate::rate_limit::RateLimit;

/// The newest messages the history read returns.
const HISTORY_MESSAGES: usize = 100;

/// The header that carries a visitor's token, both ways.
pub const VISITOR_TOKEN: HeaderName = HeaderName::from_static("x-visitor-token");

/// Longest visitor token looked up; ours have 48 characters.
const MAX_TOKEN_CHARS: usize = 100;

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
            // Said, so that whoever embedded the widget on an unlisted site can find out why.
            tracing::warn!(
                widget_id = row.id,
                origin = origin.unwrap_or("(none)"),
                "a chat widget's key was used from an origin the widget does not list"
            );
            return Err(ErrorCode::OriginNotAllowed.into());
        }
        tracing::Span::current().record("account_id", row.account_id);
        Ok(Self(row))
    }
}

/// The token of `X-Visitor-Token`, if the request has one (present but unreadable: `Some("")`,
/// which no visitor holds).
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(&VISITOR_TOKEN)
        .map(|value| value.to_str().unwrap_or_default().trim())
}

/// The public id of the widget's visitor holding `token`; `401 VISITOR_TOKEN_INVALID` for a
/// token the widget never issued (another widget's included).
async fn visitor_of(
    conn: &mut AsyncPgConnection,
    widget: &WidgetRow,
    token: &str,
) -> ApiResult<String> {
    let plausible = token.starts_with(VISITOR_TOKEN_MARK) && token.len() <= MAX_TOKEN_CHARS;
    let found = match plausible {
        true => widget::find_visitor(conn, widget.id, token).await?,
        false => None,
    };
    found.ok_or_else(|| ErrorCode::VisitorTokenInvalid.into())
}

/// A visitor's message; the answer is generate-reply's, without the tools' results (which
/// are the business's, not the visitor's). Without `X-Visitor-Token` the message is a new
/// visitor's first: the answer's `X-Visitor-Token` is their token, for every later call.
#[utoipa::path(
    post,
    path = "/api/widget/messages",
    tag = "widget",
    security(("publishable_key" = [])),
    params(("X-Visitor-Token" = Option<String>, Header, description = "The visitor's token; absent for a new visitor's first message")),
    request_body(
        content = WidgetMessage,
        example = json!({ "message": "Do you ship to Austria?" })
    ),
    responses(
        (status = 200, description = "The reply, as generate-reply answers it (streamed under `Accept: text/event-stream`); `function_calls` is always empty", body = GenerateReplyResponse, headers(
            ("X-Visitor-Token" = String, description = "A new visitor's token (only when the request had none): random, shown once; send it with every later call"),
        )),
        (status = 401, description = "`UNAUTHORIZED`: no such publishable key; `VISITOR_TOKEN_INVALID`: a token this widget never issued", body = ErrorBody),
        (status = 402, description = "`INSUFFICIENT_BALANCE`", body = ErrorBody),
        (status = 403, description = "`ORIGIN_NOT_ALLOWED`: the page's origin is not the widget's", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`", body = ErrorBody),
        (status = 429, description = "`RATE_LIMITED` (this visitor, this client address, or the widget), `CONVERSATION_BUSY`", body = ErrorBody),
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
    let (public_id, issued, counted) = {
        let mut conn = app.db().await?;
        let (public_id, issued) = match presented_token(&headers) {
            Some(token) => (visitor_of(&mut conn, &widget, token).await?, None),
            None => {
                let new = widget::issue_visitor(&mut conn, widget.id).await?;
                (new.public_id, Some(new.token))
            }
        };
        let counted = widget::count_visitor_message(&mut conn, widget.id, &public_id).await?;
        (public_id, issued, counted)
    };
    let standing = RateLimit::after(&counted, limit);
    let answered = if standing.exceeded {
        Err(ApiError::new(ErrorCode::RateLimited)
            .with_retry_after(standing.reset)
            .with_headers(standing.headers()))
    } else {
        let request = GenerateReplyRequest {
            assistant_id: widget.assistant_id,
            customer_identifier: visitor_customer_identifier(&public_id),
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
            tools: widget.tools_enabled,
        };
        run_reply(app, caller, request, None, &headers, |mut answer| {
            answer.function_calls.clear();
            answer
        })
        .await
    };
    // A new visitor's token goes with whatever the answer is: their message may be stored
    // even if its reply failed.
    let mut response = answered.unwrap_or_else(IntoResponse::into_response);
    if let Some(value) = issued.and_then(|token| HeaderValue::from_str(&token).ok()) {
        response.headers_mut().insert(VISITOR_TOKEN, value);
    }
    Ok(response)
}

/// The visitor's conversation so far: the newest 100 messages, oldest first.
#[utoipa::path(
    get,
    path = "/api/widget/messages",
    tag = "widget",
    security(("publishable_key" = [])),
    params(("X-Visitor-Token" = String, Header, description = "The visitor's token, from the answer to their first message")),
    responses(
        (status = 200, description = "The conversation so far", body = WidgetHistory),
        (status = 401, description = "`UNAUTHORIZED`: no such publishable key; `VISITOR_TOKEN_INVALID`: no token, or one this widget never issued", body = ErrorBody),
        (status = 403, description = "`ORIGIN_NOT_ALLOWED`", body = ErrorBody),
        (status = 429, description = "`RATE_LIMITED`: this client address", body = ErrorBody),
    )
)]
pub async fn get_widget_messages(
    State(app): State<App>,
    WidgetCaller(widget): WidgetCaller,
    headers: HeaderMap,
) -> ApiResult<Json<WidgetHistory>> {
    let token = presented_token(&headers).ok_or(ErrorCode::VisitorTokenInvalid)?;
    let mut conn = app.db().await?;
    let public_id = visitor_of(&mut conn, &widget, token).await?;
    let customer = visitor_customer_identifier(&public_id);
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

/// Everything under `/api/widget/`: each request (preflights too) counted against its client
/// address's limit, then CORS. Answers name any request's origin: a page may read even a
/// refusal (`403 ORIGIN_NOT_ALLOWED` says to the page that it is not on the widget's list),
/// while whether the key's widget lists the origin is [`WidgetCaller`]'s check, made on every
/// request, so a page of another origin reads nothing else. A preflight carries no key, so it
/// is answered for any origin; the request it clears is then checked.
pub async fn cors(State(app): State<App>, request: Request, next: Next) -> Response {
    let address = client_address::of(&app.settings, request.headers(), request.extensions());
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = match count_address(&app, &address).await {
        Err(refusal) => refusal.into_response(),
        Ok(()) if origin.is_some() && request.method() == Method::OPTIONS => {
            let mut preflight = StatusCode::NO_CONTENT.into_response();
            let headers = preflight.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type, accept, x-visitor-token"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            preflight
        }
        Ok(()) => next.run(request).await,
    };
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin else {
        return response;
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, x-visitor-token",
        ),
    );
    response
}

/// Counts a request of `address`; `429 RATE_LIMITED` past `ANYREPLY_WIDGET_IP_RATE_PER_MINUTE`.
async fn count_address(app: &App, address: &str) -> ApiResult<()> {
    let limit = app.settings.widget_ip_rate_per_minute;
    let counted = {
        let mut conn = app.db().await?;
        widget::count_address_request(&mut conn, address).await?
    };
    let standing = RateLimit::after(&counted, limit);
    if standing.exceeded {
        return Err(ApiError::new(ErrorCode::RateLimited)
            .with_message("Too many requests from this address, retry later")
            .with_retry_after(standing.reset)
            .with_headers(standing.headers()));
    }
    Ok(())
}
