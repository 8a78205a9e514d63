//! The WhatsApp Cloud API bridge: Meta's webhook at `/whatsapp/webhook` in, the Graph API's
//! `/{phone-number-id}/messages` out.
//!
//! Meta first checks the webhook with a `GET` handshake (`hub.mode`, `hub.verify_token`,
//! `hub.challenge`). Then every notification is a signed `POST` (`X-Hub-Signature-256` over
//! the raw body with the app secret), acknowledged at once; text messages are answered through
//! AnyReply and sent with the Graph API, one customer's in order. Meta redelivers what it
//! thinks failed, so messages are deduplicated on their id (and the idempotency key makes a
//! redelivery after a restart cost nothing).

pub mod graph;

/// Meta's signature, shared with the Messenger bridge (kept here for its old path).
pub use crate::meta::signature;

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use anyreply_client::{Event, Uuid, Variables};
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
use crate::transcribe::{Heard, KIND_VARIABLE, NoteInfo, TEXT, VOICE_NOTE};
use graph::Graph;

/// The channel's name in metrics and the `channel` variable.
pub(crate) const CHANNEL: &str = "whatsapp";

/// The bridge's name for its place on disk, and in the `bridge` variable, which says which
/// bridge the customer last wrote through (Twilio's WhatsApp customers have E.164 numbers too).
pub const BRIDGE: &str = "whatsapp-cloud";

/// Where Meta posts notifications (and checks the webhook).
pub const WEBHOOK_PATH: &str = "/whatsapp/webhook";

/// The Graph API's root, with its version, unless `ANYREPLY_WHATSAPP_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://graph.facebook.com/v21.0";

/// WhatsApp's longest text body.
pub const MAX_CHARS: usize = 4096;

/// Extra attempts of a send after a network error, 429 or 5xx.
const SEND_RETRIES: u32 = 3;

/// Everything the WhatsApp bridge can be told.
#[derive(Debug, Clone)]
pub struct WhatsappSettings {
    /// `ANYREPLY_WHATSAPP_TOKEN`: the access token that sends.
    pub token: SecretString,
    /// `ANYREPLY_WHATSAPP_APP_SECRET`: checks `X-Hub-Signature-256`.
    pub app_secret: SecretString,
    /// `ANYREPLY_WHATSAPP_VERIFY_TOKEN`: what Meta's handshake must present.
    pub verify_token: SecretString,
    /// `ANYREPLY_WHATSAPP_PHONE_NUMBER_ID`: the business number that sends.
    pub phone_number_id: String,
    /// `ANYREPLY_WHATSAPP_API_URL`: the Graph API's root, with its version.
    pub api_url: Url,
    /// Pause before a send's first retry.
    pub send_backoff: Duration,
}

impl WhatsappSettings {
    /// The settings `env` gives, its problems noted in it.
    pub fn read(env: &mut Env) -> Self {
        let mut secret = |name: &str, example: &str| {
            SecretString::from(env.required(name, example).unwrap_or_default())
        };
        let token = secret("ANYREPLY_WHATSAPP_TOKEN", "EAAG...");
        let app_secret = secret("ANYREPLY_WHATSAPP_APP_SECRET", "your-app-secret");
        let verify_token = secret("ANYREPLY_WHATSAPP_VERIFY_TOKEN", "a-string-you-chose");
        let settings = Self {
            token,
            app_secret,
            verify_token,
            phone_number_id: env
                .required("ANYREPLY_WHATSAPP_PHONE_NUMBER_ID", "106540352242922")
                .unwrap_or_default(),
            api_url: env.parsed(
                "ANYREPLY_WHATSAPP_API_URL",
                Url::parse(DEFAULT_API_URL).expect("constant URL"),
                DEFAULT_API_URL,
            ),
            send_backoff: Duration::from_millis(500),
        };
        if let Err(problem) = settings.check() {
            env.problem(problem.to_string());
        }
        settings
    }

    fn check(&self) -> anyhow::Result<()> {
        // An empty one is reported as missing.
        if !self.phone_number_id.bytes().all(|b| b.is_ascii_digit()) {
            bail!(
                "ANYREPLY_WHATSAPP_PHONE_NUMBER_ID={:?} is not a phone number id: digits, as Meta's app dashboard shows them (for example ANYREPLY_WHATSAPP_PHONE_NUMBER_ID=106540352242922)",
                self.phone_number_id
            );
        }
        Ok(())
    }
}

#[derive(Debug)]
struct WhatsappState {
    settings: WhatsappSettings,
    bridge: Bridge,
    graph: Graph,
    seen: Seen,
    /// Replies produced and sent after their notification was acknowledged, one customer's
    /// in order.
    in_flight: Queues,
}

fn app_and_state(
    settings: WhatsappSettings,
    bridge: Bridge,
) -> anyhow::Result<(axum::Router, Arc<WhatsappState>)> {
    settings.check()?;
    let graph = Graph::new(
        &settings.api_url,
        &settings.phone_number_id,
        settings.token.clone(),
        crate::service::send_retry_policy(SEND_RETRIES, settings.send_backoff),
    )?;
    let state = Arc::new(WhatsappState {
        settings,
        bridge,
        graph,
        seen: Seen::default(),
        in_flight: Queues::default(),
    });
    let router = crate::service::ops_router().merge(
        axum::Router::new()
            .route(WEBHOOK_PATH, get(verify).post(notified))
            .with_state(state.clone()),
    );
    Ok((router, state))
}

/// The WhatsApp Cloud API bridge, as [`crate::service::main`] starts it.
#[derive(Debug, Clone, Copy)]
pub struct Whatsapp;

impl crate::service::Channel for Whatsapp {
    const PROGRAM: &'static str = "anyreply-whatsapp";
    type Settings = WhatsappSettings;

    fn settings(env: &mut Env, _texts: &crate::text::Texts) -> WhatsappSettings {
        WhatsappSettings::read(env)
    }

    fn run(
        settings: WhatsappSettings,
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
    settings: WhatsappSettings,
    bridge: Bridge,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (router, state) = app_and_state(settings, bridge)?;
    tracing::info!(address = %listener.local_addr()?, path = WEBHOOK_PATH, "receiving WhatsApp webhooks");
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

/// `GET /whatsapp/webhook`: Meta's handshake; the challenge back when the token is ours.
async fn verify(
    State(state): State<Arc<WhatsappState>>,
    Query(handshake): Query<crate::meta::Handshake>,
) -> Response {
    crate::meta::answer_handshake(&state.settings.verify_token, handshake)
}

/// A text or audio message of a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct TextMessage {
    pub id: String,
    /// The sender's WhatsApp id: their number, digits only.
    pub wa_id: String,
    /// The text; empty for audio.
    pub body: String,
    /// An audio message's (a voice note's) media id and MIME type.
    pub audio: Option<(String, String)>,
    /// Their profile name, when the notification carries it.
    pub name: Option<String>,
}

/// The text and audio messages of a notification (statuses, other types and other fields left
/// out).
pub fn text_messages(notification: &Value) -> Vec<TextMessage> {
    let values = notification["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|entry| entry["changes"].as_array().into_iter().flatten())
        .filter(|change| change["field"] == "messages")
        .map(|change| &change["value"]);
    let mut found = Vec::new();
    for value in values {
        let name_of = |wa_id: &str| {
            value["contacts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|contact| contact["wa_id"] == wa_id)
                .and_then(|contact| contact["profile"]["name"].as_str())
                .map(str::to_owned)
        };
        for message in value["messages"].as_array().into_iter().flatten() {
            let (Some(id), Some(wa_id)) = (message["id"].as_str(), message["from"].as_str()) else {
                continue;
            };
            let (body, audio) = match (message["type"].as_str(), message["text"]["body"].as_str()) {
                (Some("text"), Some(body)) => (body.to_owned(), None),
                (Some("audio"), _) => {
                    let Some(media) = message["audio"]["id"].as_str() else {
                        continue;
                    };
                    let mime = message["audio"]["mime_type"]
                        .as_str()
                        .unwrap_or("audio/ogg");
                    (String::new(), Some((media.to_owned(), mime.to_owned())))
                }
                _ => continue,
            };
            found.push(TextMessage {
                id: id.to_owned(),
                wa_id: wa_id.to_owned(),
                body,
                audio,
                name: name_of(wa_id),
            });
        }
    }
    found
}

/// `POST /whatsapp/webhook`: a signed notification, acknowledged at once.
async fn notified(
    State(state): State<Arc<WhatsappState>>,
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
    for message in text_messages(&notification) {
        if !state.seen.first_time(&message.id) {
            metrics::message_in(CHANNEL, None);
            state.bridge.handled.note();
            tracing::info!(id = %message.id, "ignoring a redelivered message");
            continue;
        }
        // At once, beside the reply: the customer sees the message read and "typing…".
        let graph = state.graph.clone();
        let id = message.id.clone();
        tokio::spawn(async move {
            if let Err(error) = graph.read_and_typing(&id).await {
                metrics::typing_failed(CHANNEL);
                tracing::debug!(
                    error = format!("{error:#}"),
                    "could not show the typing indicator"
                );
            }
        });
        let worker = state.clone();
        let customer = format!("+{}", message.wa_id);
        state.in_flight.push(&customer, async move {
            answer_message(&worker, message).await;
            worker.bridge.handled.note();
        });
    }
    StatusCode::OK.into_response()
}

/// Answers one message (a voice note transcribed first) and sends the reply.
async fn answer_message(state: &WhatsappState, message: TextMessage) {
    let customer = format!("+{}", message.wa_id);
    let mut variables = Variables::new();
    variables.insert("channel".into(), Value::from(CHANNEL));
    variables.insert("bridge".into(), Value::from(BRIDGE));
    variables.insert("phone".into(), Value::from(customer.as_str()));
    variables.insert(KIND_VARIABLE.into(), Value::from(TEXT));
    if let Some(name) = &message.name {
        variables.insert("name".into(), Value::from(name.as_str()));
    }
    let mut text = message.body.clone();
    if let Some((media, mime_type)) = &message.audio {
        let note = NoteInfo {
            mime_type: mime_type.clone(),
            ..NoteInfo::default()
        };
        let locate = |http: &reqwest::Client| state.graph.media(http.clone(), media);
        match state.bridge.voice.hear(CHANNEL, note, locate).await {
            Heard::Transcript(transcript) => text = transcript,
            Heard::Say(sentence) => {
                metrics::message_in(CHANNEL, None);
                return send_pieces(state, &message, vec![sentence]).await;
            }
        }
        variables.insert(KIND_VARIABLE.into(), Value::from(VOICE_NOTE));
    }
    let inbound = Inbound {
        customer,
        text,
        idempotency_key: format!("whatsapp:{}", message.id),
        variables,
    };
    let outcome = state.bridge.answer(inbound).await;
    metrics::message_in(CHANNEL, Some(&outcome));
    let pieces = match outcome {
        Outcome::Reply(reply) => split(&reply, MAX_CHARS),
        Outcome::Apology(apology) => vec![apology],
        Outcome::Silent | Outcome::OptedOut | Outcome::AnsweredBefore | Outcome::Coalesced => {
            Vec::new()
        }
    };
    send_pieces(state, &message, pieces).await;
}

async fn send_pieces(state: &WhatsappState, message: &TextMessage, pieces: Vec<String>) {
    for piece in pieces {
        let sent = state.graph.send(&message.wa_id, &piece).await;
        metrics::message_out(CHANNEL, sent.is_ok());
        if let Err(error) = sent {
            tracing::error!(error = format!("{error:#}"), id = %message.id, "could not send the reply on WhatsApp");
            break;
        }
    }
}

/// Sends an operator message to a customer whose last message came through this bridge.
async fn deliver_operator_message(state: &WhatsappState, event: Event) -> Delivery {
    let customer = &event.customer_identifier;
    let Some(message) = event
        .message
        .as_ref()
        .filter(|_| crate::twilio::is_phone_number(customer))
    else {
        return Delivery::NotOurs;
    };
    match last_bridge(&state.bridge, event.conversation_id).await {
        Ok(true) => {}
        Ok(false) => return Delivery::NotOurs,
        Err(error) => {
            metrics::message_out(CHANNEL, false);
            tracing::error!(
                error = format!("{error:#}"),
                event = event.id,
                "an operator message was not sent on WhatsApp"
            );
            return Delivery::Failed;
        }
    }
    let wa_id = customer.trim_start_matches('+');
    for piece in split(&message.content, MAX_CHARS) {
        let sent = state.graph.send(wa_id, &piece).await;
        metrics::message_out(CHANNEL, sent.is_ok());
        if let Err(error) = sent {
            tracing::error!(error = format!("{error:#}"), event = event.id, conversation = %event.conversation_id, "an operator message was not sent on WhatsApp");
            return Delivery::Failed;
        }
    }
    tracing::info!(event = event.id, conversation = %event.conversation_id, "delivered an operator message on WhatsApp");
    Delivery::Sent
}

/// Whether the customer last wrote through this bridge (the `bridge` variable it sets).
async fn last_bridge(bridge: &Bridge, conversation: Uuid) -> anyhow::Result<bool> {
    let conversation = bridge
        .client
        .conversations()
        .get(conversation)
        .await
        .map_err(|error| {
            anyhow::anyhow!("could not read the conversation from AnyReply: {error}")
        })?;
    Ok(conversation.variables.get("bridge").and_then(Value::as_str) == Some(BRIDGE))
}
