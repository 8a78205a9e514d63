//! Operator messages out: each bridge follows its assistant's event stream and hands every
//! `operator.message` to its channel, which sends it to the customer (or says it is another
//! channel's). After each delivery the event's id is saved ([`EventCursor`]), so a restarted
//! bridge resumes after it: nothing sent twice, nothing lost. (A crash between a send and its
//! save sends that one message again: at least once, never less.)

use std::future::Future;
use std::time::Duration;

use anyreply_client::{Event, EventType, EventsQuery};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::bridge::Bridge;
use crate::cursor::EventCursor;

/// The pause before following again after the stream ended with an error that does not pass
/// by itself (a revoked key, say): customers' messages keep being answered meanwhile.
const FOLLOW_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// What became of an operator message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Not sent after the channel's retries; logged and counted by the channel.
    Failed,
    /// The conversation is another channel's.
    NotOurs,
}

/// Follows the events of `bridge`'s assistant from where `cursor` says, handing each operator
/// message to `deliver` (customer identifier, text), until `stop` is cancelled. A delivery in
/// progress is finished first, and its id saved.
pub async fn follow<F, Fut>(
    bridge: Bridge,
    cursor: EventCursor,
    mut last_handled: Option<i64>,
    stop: CancellationToken,
    deliver: F,
) where
    F: Fn(Event) -> Fut,
    Fut: Future<Output = Delivery>,
{
    loop {
        let query = EventsQuery {
            assistant_id: Some(bridge.assistant_id),
            conversation_id: None,
            last_event_id: last_handled,
        };
        let mut events = bridge.client.events().stream(query);
        tracing::info!(after = ?last_handled, "following the assistant's operator messages");
        loop {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                next = events.next() => next,
            };
            let event = match next {
                Some(Ok(event)) => event,
                Some(Err(error)) => {
                    tracing::error!(
                        error_code = ?error.code(),
                        %error,
                        "the event stream ended; operator messages wait until it is followed again"
                    );
                    break;
                }
                None => break,
            };
            if event.kind != EventType::OperatorMessage || event.message.is_none() {
                // Nothing to send; not saved either (replaying it after a restart sends nothing).
                last_handled = Some(event.id);
                continue;
            }
            let delivery = deliver(event.clone()).await;
            bridge.handled.note();
            last_handled = Some(event.id);
            if delivery == Delivery::NotOurs {
                continue;
            }
            if let Err(error) = cursor.save(event.id).await {
                tracing::error!(
                    error = format!("{error:#}"),
                    "could not save the last delivered operator message; after a restart it may be sent again"
                );
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(FOLLOW_AGAIN_AFTER) => {}
        }
    }
}
