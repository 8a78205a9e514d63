//! What every channel does with a customer's message: ask AnyReply, and turn the answer into
//! something to send (or nothing).

use std::path::PathBuf;
use std::sync::Arc;

use anyreply_client::{Client, GenerateReplyRequest, RequestOptions, Variables};
use tokio::sync::watch;

/// A customer's message, as a channel received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The channel's user id, prefixed so it cannot collide with other channels.
    pub customer: String,
    pub text: String,
    /// The channel's message id: a redelivery gets the same key, so it is answered and
    /// charged once.
    pub idempotency_key: String,
    /// The channel, and what it knows of the customer.
    pub variables: Variables,
}

/// What to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reply(String),
    /// A human has taken the conversation over: send nothing.
    Silent,
    /// The customer opted out (an SMS `STOP`): send nothing until they opt in again.
    OptedOut,
    /// The channel delivered this message before and that delivery got the reply: send
    /// nothing again (even if this bridge restarted in between).
    AnsweredBefore,
    /// A later message of the customer's burst is answered instead (the assistant's
    /// `coalesce_ms`): send nothing for this one.
    Coalesced,
    /// No reply could be had; the failure was logged for the operator.
    Apology(String),
}

/// Asks one assistant through the SDK.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub client: Client,
    pub assistant_id: i64,
    pub apology: String,
    /// `ANYREPLY_BRIDGE_STATE_DIR`: where the bridge keeps its place in the assistant's event
    /// stream, so that operator messages are delivered once across restarts.
    pub state_dir: PathBuf,
    pub handled: Handled,
    /// Voice notes: transcribed when `ANYREPLY_TRANSCRIPTION_MODEL` is set.
    pub voice: crate::transcribe::Voice,
}

/// How many messages this bridge has finished with, whatever came of them: customers'
/// messages replied to, answered with nothing, or ignored (a redelivery, a keyword, a status),
/// and operator messages delivered or left to another bridge. Counted once all that a message
/// sends is sent, so a test that waits for the count knows that nothing more will come of
/// those messages (where `/metrics` counts for the whole process).
#[derive(Debug, Clone, Default)]
pub struct Handled(Arc<watch::Sender<u64>>);

impl Handled {
    /// One more message finished with.
    pub fn note(&self) {
        self.0.send_modify(|count| *count += 1);
    }

    pub fn count(&self) -> u64 {
        *self.0.borrow()
    }

    /// Waits until `count` messages have been finished with.
    pub async fn reach(&self, count: u64) {
        let mut counted = self.0.subscribe();
        // The sender lives in `self`: the wait cannot fail.
        let _ = counted.wait_for(|n| *n >= count).await;
    }
}

impl Bridge {
    pub async fn answer(&self, inbound: Inbound) -> Outcome {
        let request = GenerateReplyRequest {
            assistant_id: self.assistant_id,
            customer_identifier: inbound.customer,
            message: inbound.text,
            variables: Some(inbound.variables),
        };
        let options = RequestOptions::idempotency_key(inbound.idempotency_key);
        match self
            .client
            .generate_reply_noting_replays(&request, options)
            .await
        {
            Ok((_, true)) => {
                tracing::info!(customer = %request.customer_identifier, "a redelivered message, answered before; not sent again");
                Outcome::AnsweredBefore
            }
            Ok((reply, false)) if reply.opted_out => Outcome::OptedOut,
            Ok((reply, false)) if reply.coalesced => Outcome::Coalesced,
            // A handoff's reply (`ai_disabled` with words) is sent as any other.
            Ok((reply, false)) if reply.ai_disabled && reply.reply.is_empty() => Outcome::Silent,
            Ok((reply, false)) => Outcome::Reply(reply.reply),
            Err(error) => {
                tracing::error!(
                    error_code = ?error.code(),
                    %error,
                    customer = %request.customer_identifier,
                    "AnyReply gave no reply; the customer gets the apology"
                );
                Outcome::Apology(self.apology.clone())
            }
        }
    }
}
