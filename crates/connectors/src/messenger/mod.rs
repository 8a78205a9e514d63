//! The Messenger bridge: Facebook Messenger and Instagram Direct through Meta's Messenger
//! Platform, both on one webhook at `/messenger/webhook`, answered with the Send API.
//!
//! Meta checks the webhook with the `GET` handshake, then posts signed notifications
//! (`X-Hub-Signature-256`), `object: "page"` for Messenger and `"instagram"` for Instagram.
//! Each text message is acknowledged at once, answered through AnyReply and sent back, one
//! customer's in order; an attachment gets a sentence; echoes of the page's own messages,
//! reads and deliveries are passed over; redeliveries are recognised by their `mid`.
//! Operator messages go within 24 hours of the customer's last message as a response, within
//! 7 days with the `HUMAN_AGENT` tag, and not at all after ([`window`]).

pub mod send;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use anyreply_client::{Event, Variables};
use anyreply_core::env::Env;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::SecretString;
use serde_json::Value;
use url::Url;

use crate::bridge::{Bridge, Inbound, Outcome};
use crate::metrics;
use crate::operator::Delivery;
use crate::queue::Queues;
use crate::seen::Seen;
use crate::split::split;
use send::SendApi;
use window::{LastWrote, Window};

/// The bridge's name: its place on disk, and the `bridge` variable.
pub const BRIDGE: &str = "messenger";

/// Where Meta posts notifications (and checks the webhook), for both objects.
pub const WEBHOOK_PATH: &str = "/messenger/webhook";

/// The Graph API's root, with its version, unless `ANYREPLY_MESSENGER_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://graph.facebook.com/v21.0";

/// Messenger's longest text message (Instagram's is shorter in bytes, not in characters).
pub const MAX_CHARS: usize = 2000;

/// `ANYREPLY_MESSENGER_ATTACHMENT_TEXT`: the answer to a photo, a voice note, a sticker.
pub const ATTACHMENT_TEXT: &str =
    "Sorry, I can only read text messages. Could you type your question?";

/// Extra attempts of a send after a network error, 429 or 5xx.
const SEND_RETRIES: u32 = 3;

/// Which of Meta's apps a customer writes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Messenger,
    Instagram,
}

impl Platform {
    /// The notification's `object`.
    pub fn of_object(object: &str) -> Option<Self> {
        match object {
            "page" => Some(Self::Messenger),
            "instagram" => Some(Self::Instagram),
            _ => None,
        }
    }

    /// The `channel` variable, the metrics' label and the customer identifier's prefix.
    pub fn channel(self) -> &'static str {
        match self {
            Self::Messenger => "messenger",
            Self::Instagram => "instagram",
        }
    }

    /// The platform and the scoped id of a customer identifier this bridge made.
    pub fn of_customer(customer: &str) -> Option<(Self, &str)> {
        [Self::Messenger, Self::Instagram]
            .into_iter()
            .find_map(|platform| {
                let id = customer
                    .strip_prefix(platform.channel())?
                    .strip_prefix(':')?;
                (!id.is_empty()).then_some((platform, id))
            })
    }

    /// `messenger:<PSID>` or `instagram:<IGSID>`.
    pub fn customer(self, scoped_id: &str) -> String {
        format!("{}:{scoped_id}", self.channel())
    }
}

/// Everything the Messenger bridge can be told.
#[derive(Debug, Clone)]
pub struct MessengerSettings {
    /// `ANYREPLY_MESSENGER_TOKEN`: the page access token that sends.
    pub token: SecretString,
    /// `ANYREPLY_MESSENGER_APP_SECRET`: checks `X-Hub-Signature-256`.
    pub app_secret: SecretString,
    /// `ANYREPLY_MESSENGER_VERIFY_TOKEN`: what Meta's handshake must present.
    pub verify_token: SecretString,
    /// `ANYREPLY_MESSENGER_API_URL`: the Graph API's root, with its version.
    pub api_url: Url,
    /// `ANYREPLY_MESSENGER_ATTACHMENT_TEXT`: the answer to an attachment.
    pub attachment_text: String,
    /// Pause before a send's first retry.
    pub send_backoff: Duration,
}

impl MessengerSettings {
    /// The settings `env` gives, its problems noted in it.
    pub fn read(env: &mut Env) -> Self {
        let mut secret = |name: &str, example: &str| {
            SecretString::from(env.required(name, example).unwrap_or_default())
        };
        let token = secret("ANYREPLY_MESSENGER_TOKEN", "EAAG...");
        let app_secret = secret("ANYREPLY_MESSENGER_APP_SECRET", "your-app-secret");
        let verify_token = secret("ANYREPLY_MESSENGER_VERIFY_TOKEN", "a-string-you-chose");
        Self {
            token,
            app_secret,
            verify_token,
            api_url: env.parsed(
                "ANYREPLY_MESSENGER_API_URL",
                Url::parse(DEFAULT_API_URL).expect("constant URL"),
                DEFAULT_API_URL,
            ),
            attachment_text: env
                .text("ANYREPLY_MESSENGER_ATTACHMENT_TEXT")
                .unwrap_or_else(|| ATTACHMENT_TEXT.to_owned()),
            send_backoff: Duration::from_millis(500),
        }
    }
}

#[derive(Debug)]
struct MessengerState {
    settings: MessengerSettings,
    bridge: Bridge,
    send: SendApi,
    seen: Seen,
    last_wrote: LastWrote,
    /// Replies produced and sent after their notification was acknowledged, one customer's
    /// in order.
    in_flight: Queues,
}

/// The Messenger and Instagram bridge, as [`crate::service::main`] starts it.
#[derive(Debug, Clone, Copy)]
pub struct Messenger;

impl crate::service::Channel for Messenger {
    const PROGRAM: &'static str = "anyreply-messenger";
    type Settings = MessengerSettings;

    fn settings(env: &mut Env, _texts: &crate::text::Texts) -> MessengerSettings {
        MessengerSettings::read(env)
    }

    fn run(
        settings: MessengerSettings,
        bridge: Bridge,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> {
        run(settings, bridge, listener, shutdown)
    }
}

/// Serves, and delivers operator messages beside it, until `shutdown`; then finishes the
/// replies in flight.
pub async fn run(
    settings: MessengerSettings,
    bridge: Bridge,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let send = SendApi::new(
        &settings.api_url,
        settings.token.clone(),
        crate::service::send_retry_policy(SEND_RETRIES, settings.send_backoff),
    )?;
    let last_wrote = LastWrote::load(&bridge.state_dir, bridge.assistant_id).await?;
    let state = Arc::new(MessengerState {
        settings,
        bridge,
        send,
        seen: Seen::default(),
        last_wrote,
        in_flight: Queues::default(),
    });
    let router = crate::service::ops_router().merge(
        axum::Router::new()
            .route(WEBHOOK_PATH, get(verify).post(notified))
            .with_state(state.clone()),
    );
    tracing::info!(address = %listener.local_addr()?, path = WEBHOOK_PATH, "receiving Messenger and Instagram webhooks");
    let deliver = {
        let state = state.clone();
        move |event| {
            let state = state.clone();
            async move { deliver_operator_message(&state, event).await }
        }
    };
    crate::service::serve_following(
        router,
        &state.bridge,
        BRIDGE,
        deliver,
        &state.in_flight,
        listener,
        shutdown,
    )
    .await
}

/// `GET /messenger/webhook`: Meta's handshake.
async fn verify(
    State(state): State<Arc<MessengerState>>,
    Query(handshake): Query<crate::meta::Handshake>,
) -> Response {
    crate::meta::answer_handshake(&state.settings.verify_token, handshake)
}

/// What a customer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    /// A photo, a voice note, a sticker, a shared post: answered with a sentence.
    Attachment,
}

/// A customer's message of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub platform: Platform,
    /// The page-scoped (or Instagram-scoped) id of the sender.
    pub sender: String,
    pub mid: String,
    pub content: Content,
}

/// The customers' messages of a notification: echoes of the page's own, reads, deliveries,
/// reactions and postbacks left out.
pub fn incoming(notification: &Value) -> Vec<Incoming> {
    let Some(platform) = notification["object"]
        .as_str()
        .and_then(Platform::of_object)
    else {
        return Vec::new();
    };
    let events = notification["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|entry| entry["messaging"].as_array().into_iter().flatten());
    let mut found = Vec::new();
    for event in events {
        let message = &event["message"];
        let (Some(sender), Some(mid)) = (event["sender"]["id"].as_str(), message["mid"].as_str())
        else {
            continue;
        };
        if message["is_echo"].as_bool() == Some(true) || message["is_deleted"] == true {
            continue;
        }
        let content = match message["text"].as_str() {
            Some(text) => Content::Text(text.to_owned()),
            None if message["attachments"].is_array() => Content::Attachment,
            None => continue,
        };
        found.push(Incoming {
            platform,
            sender: sender.to_owned(),
            mid: mid.to_owned(),
            content,
        });
    }
    found
}

/// `POST /messenger/webhook`: a signed notification, acknowledged at once.
async fn notified(
    State(state): State<Arc<MessengerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !crate::meta::is_signed(&state.settings.app_secret, &headers, &body) {
        tracing::warn!("refused a notification with a bad or missing X-Hub-Signature-256");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(notification) = serde_json::from_slice::<Value>(&body) else {
        tracing::warn!("a signed notification that is not JSON; ignored");
        return StatusCode::OK.into_response();
    };
    for message in incoming(&notification) {
        let channel = message.platform.channel();
        if !state.seen.first_time(&format!("{channel}:{}", message.mid)) {
            metrics::message_in(channel, None);
            state.bridge.handled.note();
            tracing::info!(mid = %message.mid, "ignoring a redelivered message");
            continue;
        }
        let customer = message.platform.customer(&message.sender);
        if let Err(error) = state.last_wrote.wrote(&customer, window::now()).await {
            tracing::error!(
                error = format!("{error:#}"),
                "could not record when the customer wrote; operator messages may go with the HUMAN_AGENT tag"
            );
        }
        if matches!(message.content, Content::Text(_)) {
            show_typing(&state, message.platform.channel(), &message.sender);
        }
        let worker = state.clone();
        state.in_flight.push(&customer.clone(), async move {
            answer(&worker, customer, message).await;
            worker.bridge.handled.note();
        });
    }
    StatusCode::OK.into_response()
}

/// At once, beside the reply (never before it): the customer sees "typing…".
fn show_typing(state: &Arc<MessengerState>, channel: &'static str, recipient: &str) {
    let (state, recipient) = (state.clone(), recipient.to_owned());
    tokio::spawn(async move {
        if let Err(error) = state.send.typing_on(&recipient).await {
            metrics::typing_failed(channel);
            tracing::debug!(error = format!("{error:#}"), "could not show typing_on");
        }
    });
}

/// Answers one customer's message: through AnyReply for text, with the sentence for an
/// attachment.
async fn answer(state: &MessengerState, customer: String, message: Incoming) {
    let channel = message.platform.channel();
    let pieces = match message.content {
        Content::Attachment => {
            metrics::message_in(channel, None);
            vec![state.settings.attachment_text.clone()]
        }
        Content::Text(text) => {
            let mut variables = Variables::new();
            variables.insert("channel".into(), Value::from(channel));
            variables.insert("bridge".into(), Value::from(BRIDGE));
            let inbound = Inbound {
                customer,
                text,
                idempotency_key: format!("{channel}:{}", message.mid),
                variables,
            };
            let outcome = state.bridge.answer(inbound).await;
            metrics::message_in(channel, Some(&outcome));
            match outcome {
                Outcome::Reply(reply) => split(&reply, MAX_CHARS),
                Outcome::Apology(apology) => vec![apology],
                Outcome::Silent
                | Outcome::OptedOut
                | Outcome::AnsweredBefore
                | Outcome::Coalesced => Vec::new(),
            }
        }
    };
    for piece in pieces {
        let sent = state
            .send
            .send(channel, &message.sender, &piece, Window::Open)
            .await;
        metrics::message_out(channel, sent.is_ok());
        if let Err(error) = sent {
            tracing::error!(error = format!("{error:#}"), mid = %message.mid, channel, "could not send the reply");
            break;
        }
    }
}

/// Sends an operator message to a Messenger or Instagram customer, within the window Meta
/// allows; past 7 days it is not sent (and not retried: Meta would refuse it every time).
async fn deliver_operator_message(state: &MessengerState, event: Event) -> Delivery {
    let customer = &event.customer_identifier;
    let (Some(message), Some((platform, scoped_id))) =
        (event.message.as_ref(), Platform::of_customer(customer))
    else {
        return Delivery::NotOurs;
    };
    let channel = platform.channel();
    let window = state.last_wrote.window(customer, window::now()).await;
    if window == Window::Closed {
        metrics::outside_window(channel);
        metrics::message_out(channel, false);
        tracing::error!(event = event.id, conversation = %event.conversation_id, channel, "an operator message was not sent: the customer last wrote more than 7 days ago, and Meta allows no message then until they write again");
        return Delivery::Failed;
    }
    for piece in split(&message.content, MAX_CHARS) {
        let sent = state.send.send(channel, scoped_id, &piece, window).await;
        metrics::message_out(channel, sent.is_ok());
        if let Err(error) = sent {
            tracing::error!(error = format!("{error:#}"), event = event.id, conversation = %event.conversation_id, channel, "an operator message was not sent");
            return Delivery::Failed;
        }
    }
    tracing::info!(event = event.id, conversation = %event.conversation_id, channel, ?window, "delivered an operator message");
    Delivery::Sent
}
