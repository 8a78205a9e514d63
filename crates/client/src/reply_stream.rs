//! A streamed reply: `POST /api/ai/generate-reply` with `Accept: text/event-stream`.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyreply_core::ErrorBody;
use anyreply_core::wire::GenerateReplyResponse;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use sse_stream::{Sse, SseByteStream};

use crate::client::error_answer;
use crate::error::{ApiError, Error, TransportError, TransportErrorKind};
use crate::retry;

/// One item of a [`ReplyStream`].
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
    /// More of the reply's text, as the model wrote it.
    Delta(String),
    /// The whole answer, as [`crate::Client::generate_reply`] returns it: the last item. Its
    /// `reply` is the deltas joined.
    Reply(GenerateReplyResponse),
}

/// The events of a streamed reply: [`ReplyEvent::Delta`]s, then one [`ReplyEvent::Reply`].
/// A failure once text was sent (the model stopped mid-way, say) is the last item, an
/// [`Error::Api`] with its code; the reply was then not recorded nor charged, and the call may
/// be made again with the same idempotency key.
pub struct ReplyStream {
    events: BoxStream<'static, Result<ReplyEvent, Error>>,
}

impl fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyStream").finish_non_exhaustive()
    }
}

impl Stream for ReplyStream {
    type Item = Result<ReplyEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_next_unpin(cx)
    }
}

#[derive(Deserialize)]
struct Delta {
    text: String,
}

impl ReplyStream {
    /// The stream of an answer, or the error it reports.
    pub(crate) async fn open(response: reqwest::Response) -> Result<Self, Error> {
        let status = response.status();
        if retry::is_error(status) {
            return Err(error_answer(response).await);
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
        let blocks = SseByteStream::new(response.bytes_stream().boxed());
        let events = stream::unfold(Some(blocks), |blocks| async move {
            let mut blocks = blocks?;
            loop {
                let block = match blocks.next().await {
                    Some(Ok(block)) => block,
                    Some(Err(e)) => return Some((Err(broken(e.to_string())), None)),
                    None => return Some((Err(broken("no reply came".into())), None)),
                };
                match read(block) {
                    Ok(None) => {}
                    Ok(Some(delta @ ReplyEvent::Delta(_))) => {
                        return Some((Ok(delta), Some(blocks)));
                    }
                    // The answer, or a failure, is the end.
                    Ok(Some(reply)) => return Some((Ok(reply), None)),
                    Err(error) => return Some((Err(error), None)),
                }
            }
        });
        Ok(Self {
            events: events.boxed(),
        })
    }
}

/// The event a block carries; comments and unknown events carry none.
fn read(block: Sse) -> Result<Option<ReplyEvent>, Error> {
    let Some(data) = block.data else {
        return Ok(None);
    };
    let decode = |e: serde_json::Error| Error::Decode {
        status: 200,
        message: format!("event {data:?}: {e}"),
    };
    match block.event.as_deref() {
        Some("delta") => {
            let delta: Delta = serde_json::from_str(&data).map_err(decode)?;
            Ok(Some(ReplyEvent::Delta(delta.text)))
        }
        Some("reply") => Ok(Some(ReplyEvent::Reply(
            serde_json::from_str(&data).map_err(decode)?,
        ))),
        Some("error") => {
            let body: ErrorBody = serde_json::from_str(&data).map_err(decode)?;
            Err(Error::Api(ApiError {
                status: body.error_code.map_or(500, |code| code.http_status()),
                code: body.error_code,
                message: body.message,
                field_errors: body.errors,
                retry_after: None,
            }))
        }
        _ => Ok(None),
    }
}

fn broken(message: String) -> Error {
    Error::Transport(TransportError {
        kind: TransportErrorKind::Interrupted,
        message: format!("the reply's stream broke: {message}"),
    })
}
