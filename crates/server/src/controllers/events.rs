//! `GET /api/events`: the account's events as Server-Sent Events.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use anyreply_core::ErrorBody;
use anyreply_core::validate::Fields;
use anyreply_core::wire::Event;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use uuid::Uuid;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::events::{self, Holder, Streamed};
use crate::extract::{Caller, query_params};
use crate::models::account;
use crate::models::event::EventFilter;

/// A comment this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The account's events, oldest first, then each new one as it happens: `id:` the event's
/// id, `event:` its type, `data:` its JSON. With `Last-Event-ID` the stream resumes right after
/// that event, nothing lost or repeated; without it, it starts with the next new event. A key
/// keeps at most `ANYREPLY_EVENT_STREAMS_PER_KEY` streams open (per server process); a stream
/// ends when its key is revoked, and when the server stops (reconnect with `Last-Event-ID`).
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "events",
    security(("api_key" = [])),
    params(
        ("assistant_id" = Option<i64>, Query, minimum = 1, description = "Only this assistant's conversations"),
        ("conversation_id" = Option<Uuid>, Query, description = "Only this conversation"),
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "Resume after this event (sent by `EventSource` on reconnect)"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: each event's `data:` is an `Event`; `: keep-alive` comments every 15 s", body = Event, content_type = "text/event-stream"),
        (status = 422, description = "`VALIDATION_ERROR`: a bad filter or `Last-Event-ID`", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_EVENT_STREAMS`: the key already has `ANYREPLY_EVENT_STREAMS_PER_KEY` streams open", body = ErrorBody),
    )
)]
pub async fn get_events(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = query_params(query.as_deref());
    let mut fields = Fields::new(&params);
    let assistant_id = fields.optional_integer("assistant_id", 1..=i64::MAX);
    let conversation_text = fields.optional_string("conversation_id", 1..=64);
    let mut errors = fields.errors;
    let conversation_id = conversation_text.and_then(|text| {
        let parsed = Uuid::parse_str(&text).ok();
        if parsed.is_none() {
            errors.add("conversation_id", "The conversation_id must be a UUID.");
        }
        parsed
    });
    let last_seen = match headers.get("last-event-id") {
        None => None,
        Some(value) => {
            let parsed = value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .filter(|id| *id >= 0);
            if parsed.is_none() {
                errors.add("Last-Event-ID", "The Last-Event-ID must be an event's id.");
            }
            parsed
        }
    };
    let filter = errors
        .finish(EventFilter {
            assistant_id,
            conversation_id,
        })
        .map_err(ApiError::validation)?;
    let after_id = match last_seen {
        Some(id) => id,
        None => {
            let mut conn = app.db().await?;
            account::last_event_id(&mut conn, caller.account_id).await?
        }
    };
    let subscription = app
        .event_streams
        .subscribe(&app.pool, caller.account_id, Holder::Key(caller.api_key_id))
        .await?;
    let batches = Box::pin(events::stream(
        app.pool.clone(),
        subscription,
        after_id,
        filter,
    ));
    let frames = futures::stream::unfold(batches, |mut batches| async move {
        let frame = match tokio::time::timeout(KEEP_ALIVE, batches.next()).await {
            Ok(Some(batch)) => sse_frames(&batch),
            Ok(None) => return None,
            // A stream's `next` may be dropped unfinished: its progress is kept in the stream.
            Err(_) => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok::<_, Infallible>(frame), batches))
    });
    Ok((
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(frames),
    )
        .into_response())
}

/// `batch` as Server-Sent Events, in one buffer: `id:` the event's id, `event:` its type,
/// `data:` its JSON (which has no line break: serde_json escapes them in strings).
fn sse_frames(batch: &[Arc<Streamed>]) -> Bytes {
    let size = batch.iter().map(|e| e.json.len() + 64).sum();
    let mut frames = BytesMut::with_capacity(size);
    for streamed in batch {
        let event = &streamed.event;
        // Writing to a `BytesMut` cannot fail.
        let _ = write!(
            frames,
            "id: {}\nevent: {}\ndata: {}\n\n",
            event.id,
            event.kind.as_str(),
            streamed.json
        );
    }
    frames.freeze()
}
