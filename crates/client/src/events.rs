//! `GET /api/events`: the account's events as Server-Sent Events, followed across reconnects.
//!
//! The SSE decoding is `sse-stream`'s (the crate the official MCP SDK, `rmcp`, reads its
//! streams with): it takes reqwest's byte stream as it is, handles CRLF and a CR split across
//! chunks, and, unlike `eventsource-stream`, hands over blocks without `data:` too, so a lone
//! `retry:` is not lost. What a browser's `EventSource` adds on top (reconnecting, resuming with
//! `Last-Event-ID`) is done here, because only here do we know which errors are worth retrying.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyreply_core::wire::{Event, EventType};
use bytes::Bytes;
use futures::lock::Mutex;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use sse_stream::{Sse, SseByteStream};
use uuid::Uuid;

use crate::client::{self, Client};
use crate::error::{Error, TransportError, TransportErrorKind};
use crate::retry::{self, Attempt, Failure, Retry};

/// The server comments every ~15 s; this long without a byte means the connection is dead
/// even if no error says so (a NAT that forgot it, say).
const SILENCE_LIMIT: Duration = Duration::from_secs(45);

/// Which events to follow, and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsQuery {
    /// Only this assistant's conversations.
    pub assistant_id: Option<i64>,
    /// Only this conversation.
    pub conversation_id: Option<Uuid>,
    /// Resume after this event (the last one you handled): nothing before it or it again.
    /// `None` starts with the events that happen from now on.
    pub last_event_id: Option<i64>,
}

/// `client.events()`.
#[derive(Debug, Clone, Copy)]
pub struct Events<'a> {
    pub(crate) client: &'a Client,
}

impl Events<'_> {
    /// `GET /api/events`: every event matching `query`, in order, for as long as you read.
    ///
    /// A dropped connection, a server closing the stream, or a retryable answer (429, 5xx; see
    /// the crate's retry rules) is not an item: the stream reconnects by itself, in the same
    /// retry loop as every call ([`crate::RetryPolicy::run_with`]) but without its attempt limit
    /// or deadline. It waits the server's `retry:` plus the policy's backoff (full jitter up to
    /// `base_delay`, doubled for each reconnect that brought no event, at most `max_delay`), or
    /// the server's `Retry-After` (capped at `max_retry_after`). It resumes with
    /// `Last-Event-ID` set to the last event it yielded, so nothing is lost or repeated. A
    /// refusal that will not pass by itself (401, 422, ...) or an event it cannot read is the
    /// last item.
    ///
    /// Events of a type this SDK does not know (added to a newer server) are skipped.
    pub fn stream(&self, query: EventsQuery) -> EventStream {
        let follower = Follower {
            client: self.client.clone(),
            query,
            body: None,
            reconnect_after: None,
        };
        let events = futures::stream::unfold(Some(follower), |follower| async move {
            let follower = follower?;
            match next_event(follower).await {
                Ok((event, follower)) => Some((Ok(event), Some(follower))),
                Err(error) => Some((Err(error), None)),
            }
        });
        EventStream {
            events: events.boxed(),
        }
    }
}

/// The events of [`Events::stream`]; ends only with an error that retrying cannot cure.
pub struct EventStream {
    events: BoxStream<'static, Result<Event, Error>>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl Stream for EventStream {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_next_unpin(cx)
    }
}

type Body = SseByteStream<BoxStream<'static, reqwest::Result<Bytes>>>;

/// One follower of the stream: its connection, and where it is.
struct Follower {
    client: Client,
    /// `last_event_id` is the last event yielded.
    query: EventsQuery,
    body: Option<Body>,
    /// The server's `retry:`.
    reconnect_after: Option<Duration>,
}

/// The next event, reconnecting as often as it takes in the SDK's one retry loop (with
/// neither an attempt limit nor a deadline), and the follower to read on with; an error is the
/// end.
async fn next_event(follower: Follower) -> Result<(Event, Follower), Error> {
    let policy = follower.client.retry_policy().without_limits();
    // The attempts take turns with the follower (one at a time: the lock is never contended).
    let turns = Mutex::new(follower);
    let event = policy
        .run_with(|_: Attempt| async { turns.lock().await.attempt().await })
        .await?;
    Ok((event, turns.into_inner()))
}

impl Follower {
    /// One try at the next event: read on the open connection, else on a new one. A
    /// connection that ends (closed, cut, or silent past the keep-alives) is a failure to
    /// retry, so the waits grow with each reconnect that brings no event.
    async fn attempt(&mut self) -> Result<Event, Failure<Error>> {
        // Held here while read, and put back with an event: a connection that ends is dropped.
        let mut body = match self.body.take() {
            Some(body) => body,
            None => connect(&self.client, &self.query)
                .await
                .map_err(|error| retry::failure(error).at_least(self.least_pause()))?,
        };
        let ended = loop {
            match tokio::time::timeout(SILENCE_LIMIT, body.next()).await {
                Ok(Some(Ok(block))) => match self.read(block) {
                    Ok(Some(event)) => {
                        self.body = Some(body);
                        return Ok(event);
                    }
                    Ok(None) => {}
                    Err(error) => return Err(Failure::new(error, Retry::Never)),
                },
                // The server ended the stream (a deploy, a proxy's time limit).
                Ok(None) => break "the server ended the event stream",
                Ok(Some(Err(_))) => break "the event stream was cut",
                Err(_) => break "the event stream fell silent",
            }
        };
        let error = Error::Transport(TransportError {
            kind: TransportErrorKind::Interrupted,
            message: ended.into(),
        });
        Err(Failure::new(error, Retry::Backoff).at_least(self.least_pause()))
    }

    /// The server's `retry:`: no reconnect comes sooner.
    fn least_pause(&self) -> Duration {
        self.reconnect_after.unwrap_or_default()
    }
}

/// Opens the stream. (Not a method: the follower, holding a body, is not `Sync`, so a borrow
/// of it may not cross an await of a `Send` stream.)
async fn connect(client: &Client, query: &EventsQuery) -> Result<Body, Error> {
    let params: Vec<(&str, String)> = [
        ("assistant_id", query.assistant_id.map(|id| id.to_string())),
        (
            "conversation_id",
            query.conversation_id.map(|id| id.to_string()),
        ),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
    .collect();
    let mut request = client
        .get_request("api/events", &params)?
        .header(ACCEPT, "text/event-stream");
    if let Some(id) = query.last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    // Only the wait for the answer's head is bounded: the body lasts as long as we read.
    let response = match tokio::time::timeout(client.timeout(), request.send()).await {
        Ok(sent) => sent.map_err(Error::from_reqwest)?,
        Err(_) => {
            return Err(Error::Transport(TransportError {
                kind: TransportErrorKind::Timeout,
                message: "the event stream did not start in time".into(),
            }));
        }
    };
    let status = response.status();
    if !status.is_success() {
        return Err(client::error_answer(response).await);
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("text/event-stream") {
        return Err(Error::Decode {
            status: status.as_u16(),
            message: format!("expected text/event-stream, got {content_type:?}"),
        });
    }
    Ok(SseByteStream::new(response.bytes_stream().boxed()))
}

impl Follower {
    /// The event a block carries, if it is one to yield; notes its `retry:` and id.
    fn read(&mut self, block: Sse) -> Result<Option<Event>, Error> {
        if let Some(millis) = block.retry {
            self.reconnect_after = Some(Duration::from_millis(millis));
        }
        let sse_id = block
            .id
            .as_deref()
            .and_then(|id| id.trim().parse::<i64>().ok());
        let Some(data) = block.data else {
            // An id without an event still moves the place to resume from.
            if sse_id.is_some() {
                self.query.last_event_id = sse_id;
            }
            return Ok(None);
        };
        let known = block
            .event
            .as_deref()
            .is_none_or(|t| EventType::parse(t).is_some());
        if !known {
            if sse_id.is_some() {
                self.query.last_event_id = sse_id;
            }
            return Ok(None);
        }
        let event: Event = serde_json::from_str(&data).map_err(|e| Error::Decode {
            status: 200,
            message: format!("event {data:?}: {e}"),
        })?;
        let id = sse_id.unwrap_or(event.id);
        // Ids only grow: one not past the last is a repeat.
        if self.query.last_event_id.is_some_and(|last| id <= last) {
            return Ok(None);
        }
        self.query.last_event_id = Some(id);
        Ok(Some(event))
    }
}
