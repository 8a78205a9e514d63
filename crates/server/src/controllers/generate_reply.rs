//! `POST /api/ai/generate-reply`.

use std::convert::Infallible;

use anyreply_core::wire::{GenerateReplyRequest, GenerateReplyResponse};
use anyreply_core::{ErrorBody, ErrorCode};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::controllers::idempotency;
use crate::controllers::idempotency::IdempotencyKey;
use crate::error::ApiError;
use crate::extract::{Caller, JsonBody, ReplyCaller};
use crate::llm::TextStream;
use crate::rate_limit::RateLimit;
use crate::reply::error::BUSY_RETRY_AFTER_SECS;
use crate::reply::{self, Answered, Failed, ReplyError};
use crate::telemetry;
use crate::telemetry::metrics::{self, ReplyOutcome};

type Work = JoinHandle<Result<Answered, Refused>>;

/// A failed reply as answered: the engine's error made an API error, with the caller's
/// rate-limit standing once it was counted.
#[derive(Debug)]
struct Refused {
    error: ApiError,
    rate_limit: Option<RateLimit>,
}

impl From<Failed> for Refused {
    fn from(Failed { error, rate_limit }: Failed) -> Self {
        Refused {
            error: error.into(),
            rate_limit,
        }
    }
}

/// The one place that turns the engine's errors into API answers.
impl From<ReplyError> for ApiError {
    fn from(error: ReplyError) -> Self {
        let (code, message) = (error.code(), error.message());
        let answer = match error {
            ReplyError::Refused(code) => ApiError::new(code),
            ReplyError::Invalid(fields) => ApiError::validation(fields),
            ReplyError::RateLimited(limit) => ApiError::new(code)
                .with_retry_after(limit.reset)
                .with_headers(limit.headers()),
            ReplyError::ConversationBusy => {
                ApiError::new(code).with_retry_after(BUSY_RETRY_AFTER_SECS)
            }
            ReplyError::Idempotency(error) => error.into(),
            ReplyError::Model(error) => {
                ApiError::internal(code, "the model gave no answer", &error)
            }
            ReplyError::TimedOut | ReplyError::Superseded => ApiError::new(code),
            ReplyError::Database(error) => error.into(),
            ReplyError::Pool(error) => error.into(),
        };
        match message {
            Some(message) => answer.with_message(message),
            None => answer,
        }
    }
}

/// The assistant's reply to a customer's message.
///
/// The message joins the customer's conversation with the assistant (made on the first
/// message); the reply's prompt holds the conversation so far. Messages of one conversation
/// are answered one at a time, in arrival order. While a human has taken the conversation
/// over, the message is stored and `reply` is empty (`ai_disabled: true`). A reply that hands
/// the conversation to a person (the assistant's `handoff`) has words and `ai_disabled: true`.
///
/// With `Accept: text/event-stream` the reply is streamed as Server-Sent Events: `delta`
/// events (`{"text": "..."}`) as the model writes, then one `reply` event holding the answer
/// above (or, should the reply fail once text was sent, one `error` event holding the error
/// envelope). A failure before any text is answered as without streaming.
#[utoipa::path(
    post,
    path = "/api/ai/generate-reply",
    tag = "replies",
    security(("api_key" = [])),
    params(IdempotencyKey),
    request_body(
        content = GenerateReplyRequest,
        description = "`assistant_id` may also be a string of digits.",
        example = json!({
            "assistant_id": 1,
            "customer_identifier": "+49155551234",
            "message": "Do you have a table for two tonight?",
            "variables": { "name": "John" }
        })
    ),
    responses(
        (status = 200, description = "The reply", content(
            (GenerateReplyResponse = "application/json"),
            (String = "text/event-stream", example = "event: delta\ndata: {\"text\":\"We do\"}\n\nevent: reply\ndata: {\"success\":true,...}\n\n"),
        ), headers(
            ("RateLimit-Limit" = u32, description = "Calls allowed per API key per minute."),
            ("RateLimit-Remaining" = u32, description = "Calls left in the current minute."),
            ("RateLimit-Reset" = u32, description = "Seconds until the minute's count resets."),
        )),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 402, description = "`INSUFFICIENT_BALANCE`", body = ErrorBody),
        (status = 404, description = "`ASSISTANT_NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`, `IDEMPOTENCY_KEY_REUSED`", body = ErrorBody),
        (status = 429, description = "`RATE_LIMITED`, `CONVERSATION_BUSY`", body = ErrorBody, headers(
            ("RateLimit-Limit" = u32, description = "Calls allowed per API key per minute."),
            ("RateLimit-Remaining" = u32, description = "Calls left in the current minute."),
            ("RateLimit-Reset" = u32, description = "Seconds until the minute's count resets."),
        )),
        (status = 502, description = "`LLM_ERROR`", body = ErrorBody),
        (status = 503, description = "`LLM_UNAVAILABLE`, `SERVICE_UNAVAILABLE`", body = ErrorBody),
    )
)]
pub async fn generate_reply(
    State(app): State<App>,
    ReplyCaller(caller): ReplyCaller,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let request = body.parse(GenerateReplyRequest::from_json)?;
    let fingerprint = idempotency::fingerprint("POST", "/api/ai/generate-reply", Some(&body.0));
    let key = idempotency::request_key(&headers, fingerprint)?;
    run_reply(app, caller, request, key, &headers, |answer| answer).await
}

/// Produces the reply and answers with it, streamed if `headers` ask for Server-Sent Events;
/// `shape` turns a fresh answer into what this caller is shown.
pub(crate) async fn run_reply(
    app: App,
    caller: Caller,
    request: GenerateReplyRequest,
    key: Option<idempotency::RequestKey>,
    headers: &HeaderMap,
    shape: fn(GenerateReplyResponse) -> GenerateReplyResponse,
) -> Result<Response, ApiError> {
    let (text_stream, deltas) = match wants_event_stream(headers) {
        true => {
            let (text_stream, deltas) = TextStream::channel();
            (Some(text_stream), Some(deltas))
        }
        false => (None, None),
    };
    // The reply runs on its own task: a client that hangs up cannot leave a key claimed with
    // nothing running, nor a paid reply half-done.
    let work = tokio::spawn(telemetry::request::carried(async move {
        let answered = reply::generate_reply(&app, caller, request, key, text_stream).await;
        // Made an API error here, on the reply's task: logged (and the database's seeming
        // gone noticed) even if the client hung up.
        let answered = answered.map_err(Refused::from);
        answered.map(|answered| match answered {
            Answered::Fresh {
                response,
                rate_limit,
            } => Answered::Fresh {
                response: shape(response),
                rate_limit,
            },
            replayed => replayed,
        })
    }));
    Ok(match deltas {
        None => respond(finish(work).await?),
        Some(deltas) => stream_reply(work, deltas).await?,
    })
}

/// Whether the caller asked for Server-Sent Events.
fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

async fn finish(work: Work) -> Result<Result<Answered, Refused>, ApiError> {
    let answered = work
        .await
        .map_err(|e| ApiError::internal(ErrorCode::InternalError, "reply task failed", &e))?;
    metrics::reply(match &answered {
        Ok(Answered::Replayed(_)) => ReplyOutcome::Replayed,
        // A handoff's reply has words; a message stored unanswered none.
        Ok(Answered::Fresh { response, .. })
            if response.ai_disabled && response.reply.is_empty() =>
        {
            ReplyOutcome::Stored
        }
        Ok(Answered::Fresh { .. }) => ReplyOutcome::Replied,
        Err(failed) => ReplyOutcome::Failed(failed.error.code),
    });
    Ok(answered)
}

fn respond(answered: Result<Answered, Refused>) -> Response {
    match answered {
        Ok(Answered::Replayed(answer)) => answer.into_response(),
        Ok(Answered::Fresh {
            response,
            rate_limit,
        }) => (rate_limit.headers(), Json(response)).into_response(),
        Err(Refused { error, rate_limit }) => match rate_limit {
            Some(limit) => error.with_headers(limit.headers()).into_response(),
            None => error.into_response(),
        },
    }
}

/// The streamed answer. Its head waits for the first text: until then a failure can still be
/// answered with its status, as without streaming.
async fn stream_reply(
    work: Work,
    mut deltas: UnboundedReceiver<String>,
) -> Result<Response, ApiError> {
    let Some(first) = deltas.recv().await else {
        // The engine dropped its end without sending text: the answer is all there is.
        return Ok(stream_whole(finish(work).await?));
    };
    let text = stream::once(async { first })
        .chain(stream::poll_fn(move |cx| deltas.poll_recv(cx)))
        .map(delta);
    let last = stream::once(async move {
        match finish(work).await {
            Ok(Ok(Answered::Fresh { response, .. })) => reply_event(&response),
            Ok(Ok(Answered::Replayed(answer))) => sse_json("reply", &answer.body),
            Ok(Err(Refused { error, .. })) | Err(error) => sse_json("error", &error.body()),
        }
    });
    Ok(event_stream(text.chain(last)).into_response())
}

/// An answer that streamed no text (a replay, a message stored or coalesced), or a failure.
/// A replay streams its stored reply at once.
fn stream_whole(answered: Result<Answered, Refused>) -> Response {
    match answered {
        Ok(Answered::Replayed(answer)) if answer.status == StatusCode::OK.as_u16() => {
            let text = answer.body["reply"]
                .as_str()
                .filter(|text| !text.is_empty())
                .map(|text| delta(text.to_owned()));
            let events = text.into_iter().chain([sse_json("reply", &answer.body)]);
            (
                [(idempotency::REPLAYED, "true")],
                event_stream(stream::iter(events)),
            )
                .into_response()
        }
        Ok(Answered::Fresh {
            response,
            rate_limit,
        }) => (
            rate_limit.headers(),
            event_stream(stream::iter([reply_event(&response)])),
        )
            .into_response(),
        refused => respond(refused),
    }
}

fn event_stream(
    events: impl Stream<Item = sse::Event> + Send + 'static,
) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    Sse::new(events.map(Ok)).keep_alive(KeepAlive::new())
}

fn delta(text: String) -> sse::Event {
    sse_json("delta", &json!({ "text": text }))
}

fn reply_event(response: &GenerateReplyResponse) -> sse::Event {
    sse_json("reply", response)
}

fn sse_json(name: &str, data: &impl serde::Serialize) -> sse::Event {
    sse::Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| sse::Event::default().event("error").data("{}"))
}
