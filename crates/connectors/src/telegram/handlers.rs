//! The handler tree: one pure function of the update, with a branch for everything a chat can
//! send. Every sentence the bot says itself is in `crate::text`.

use std::sync::Arc;

use anyreply_client::{Event, Retry, Variables};
use serde_json::Value;
use teloxide::ApiError;
use teloxide::RequestError;
use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;
use teloxide::types::ChatAction;

use super::{GroupPolicy, Shared, TelegramBot};
use crate::bridge::{Inbound, Outcome};
use crate::metrics;
use crate::operator::Delivery;
use crate::split::split;
use crate::transcribe::{Heard, KIND_VARIABLE, NoteInfo, TEXT, VOICE_NOTE};

/// The channel's name in metrics, the `channel` variable and the event cursor's file.
pub(super) const CHANNEL: &str = "telegram";

/// Telegram's longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;

type HandlerResult = anyhow::Result<()>;

pub fn schema() -> UpdateHandler<anyhow::Error> {
    Update::filter_message()
        .filter(is_new)
        .filter(is_allowed)
        .branch(
            dptree::filter(|msg: Message| {
                msg.text()
                    .is_some_and(|t| t == "/start" || t.starts_with("/start "))
            })
            .endpoint(greet),
        )
        .branch(dptree::filter(|msg: Message| msg.text().is_some()).endpoint(answer))
        .branch(dptree::filter(|msg: Message| note_of(&msg).is_some()).endpoint(answer_voice))
        .branch(dptree::endpoint(decline_non_text))
}

/// Each update once: Telegram redelivers webhook updates it thinks were not received.
fn is_new(update: Update, shared: Arc<Shared>) -> bool {
    let first = shared.seen.first_time(&update.id.0.to_string());
    if !first {
        // Counted as handled by the dispatcher's default handler, which it falls through to.
        metrics::message_in(CHANNEL, None);
        tracing::info!(update_id = update.id.0, "ignoring a redelivered update");
    }
    first
}

fn is_allowed(msg: Message, shared: Arc<Shared>) -> bool {
    msg.chat.is_private() || shared.settings.groups == GroupPolicy::All
}

async fn greet(bot: TelegramBot, msg: Message, shared: Arc<Shared>) -> HandlerResult {
    let sent = send(&bot, msg.chat.id, &shared.settings.texts.greeting, &shared).await;
    shared.bridge.handled.note();
    sent
}

async fn decline_non_text(bot: TelegramBot, msg: Message, shared: Arc<Shared>) -> HandlerResult {
    let sent = send(&bot, msg.chat.id, &shared.settings.texts.non_text, &shared).await;
    shared.bridge.handled.note();
    sent
}

async fn answer(bot: TelegramBot, msg: Message, shared: Arc<Shared>) -> HandlerResult {
    let answered = answer_text(&bot, &msg, &shared).await;
    shared.bridge.handled.note();
    answered
}

async fn answer_text(bot: &TelegramBot, msg: &Message, shared: &Shared) -> HandlerResult {
    let Some(text) = msg.text() else {
        return Ok(());
    };
    let typing = Typing::start(bot, msg.chat.id, shared);
    reply_to(bot, msg, shared, text.to_owned(), variables(msg), typing).await
}

/// A voice note (or audio file): transcribed, then answered as if typed.
async fn answer_voice(bot: TelegramBot, msg: Message, shared: Arc<Shared>) -> HandlerResult {
    let answered = answer_note(&bot, &msg, &shared).await;
    shared.bridge.handled.note();
    answered
}

async fn answer_note(bot: &TelegramBot, msg: &Message, shared: &Shared) -> HandlerResult {
    let Some((file_id, note)) = note_of(msg) else {
        return Ok(());
    };
    let typing = Typing::start(bot, msg.chat.id, shared);
    let settings = &shared.settings;
    let locate = |http: &reqwest::Client| {
        let http = http.clone();
        async move {
            let file = bot.get_file(file_id).await?;
            // The Bot API serves files at `/file/bot<token>/<file_path>`.
            let mut root = settings.api_url.clone();
            root.set_path(&format!("{}/", root.path().trim_end_matches('/')));
            let url = root.join(&format!("file/bot{}/{}", settings.token, file.path))?;
            Ok(http.get(url))
        }
    };
    match shared.bridge.voice.hear(CHANNEL, note, locate).await {
        Heard::Transcript(text) => {
            let mut variables = variables(msg);
            variables.insert(KIND_VARIABLE.into(), Value::from(VOICE_NOTE));
            reply_to(bot, msg, shared, text, variables, typing).await
        }
        Heard::Say(sentence) => {
            drop(typing);
            metrics::message_in(CHANNEL, None);
            send(bot, msg.chat.id, &sentence, shared).await
        }
    }
}

/// The file and what Telegram tells of a voice note or an audio file.
fn note_of(msg: &Message) -> Option<(teloxide::types::FileId, NoteInfo)> {
    let info = |seconds: u32, bytes: u32, mime: Option<String>| NoteInfo {
        seconds: Some(u64::from(seconds)),
        bytes: Some(u64::from(bytes)),
        mime_type: mime.unwrap_or_else(|| "audio/ogg".to_owned()),
    };
    if let Some(voice) = msg.voice() {
        let mime = voice.mime_type.as_ref().map(ToString::to_string);
        let note = info(voice.duration.seconds(), voice.file.size, mime);
        return Some((voice.file.id.clone(), note));
    }
    let audio = msg.audio()?;
    let mime = audio.mime_type.as_ref().map(ToString::to_string);
    let note = info(audio.duration.seconds(), audio.file.size, mime);
    Some((audio.file.id.clone(), note))
}

/// Asks AnyReply and sends what comes back; "typing…" stops once the answer is in.
async fn reply_to(
    bot: &TelegramBot,
    msg: &Message,
    shared: &Shared,
    text: String,
    variables: Variables,
    typing: Typing,
) -> HandlerResult {
    let inbound = Inbound {
        customer: format!("{}{}", shared.settings.id_prefix, sender_id(msg)),
        text,
        idempotency_key: format!("telegram:{}:{}", msg.chat.id, msg.id),
        variables,
    };
    let outcome = shared.bridge.answer(inbound).await;
    drop(typing);
    metrics::message_in(CHANNEL, Some(&outcome));
    match outcome {
        Outcome::Reply(reply) => {
            for piece in split(&reply, MAX_MESSAGE_CHARS) {
                send(bot, msg.chat.id, &piece, shared).await?;
            }
            Ok(())
        }
        Outcome::Silent | Outcome::OptedOut | Outcome::AnsweredBefore | Outcome::Coalesced => {
            Ok(())
        }
        Outcome::Apology(apology) => send(bot, msg.chat.id, &apology, shared).await,
    }
}

/// Who the conversation is with: the user in a private chat; in a group, the user within that
/// group (`chat:user`), so a group reply never draws on the user's private conversation.
fn sender_id(msg: &Message) -> String {
    match (&msg.from, msg.chat.is_private()) {
        (Some(user), true) => user.id.to_string(),
        (Some(user), false) => format!("{}:{}", msg.chat.id, user.id),
        (None, _) => msg.chat.id.to_string(),
    }
}

/// The chat a conversation's customer is in: `prefix` + user id is a private chat (whose id is
/// the user's), `prefix` + `chat:user` a group; `None` for another channel's customer.
pub fn chat_of(customer_identifier: &str, prefix: &str) -> Option<ChatId> {
    let rest = customer_identifier.strip_prefix(prefix)?;
    let chat = rest.split_once(':').map_or(rest, |(chat, _user)| chat);
    // Only digits (groups' ids are negative): `i64`'s parser would take `+1555…`, a phone.
    let digits = chat.strip_prefix('-').unwrap_or(chat);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    chat.parse().ok().map(ChatId)
}

/// Sends an operator message to the chat of its conversation, split as replies are.
pub(super) async fn deliver_operator_message(
    bot: &TelegramBot,
    shared: &Shared,
    event: Event,
) -> Delivery {
    let (Some(chat), Some(message)) = (
        chat_of(&event.customer_identifier, &shared.settings.id_prefix),
        event.message,
    ) else {
        return Delivery::NotOurs;
    };
    for piece in split(&message.content, MAX_MESSAGE_CHARS) {
        if send(bot, chat, &piece, shared).await.is_err() {
            tracing::error!(
                event = event.id,
                conversation = %event.conversation_id,
                "an operator message was not delivered to Telegram"
            );
            return Delivery::Failed;
        }
    }
    tracing::info!(event = event.id, conversation = %event.conversation_id, "delivered an operator message");
    Delivery::Sent
}

/// The channel, and what Telegram tells of the customer.
fn variables(msg: &Message) -> Variables {
    let mut variables = Variables::new();
    variables.insert("channel".into(), Value::from(CHANNEL));
    variables.insert(KIND_VARIABLE.into(), Value::from(TEXT));
    if let Some(user) = &msg.from {
        variables.insert("name".into(), Value::from(user.full_name()));
        if let Some(username) = &user.username {
            variables.insert("username".into(), Value::from(username.as_str()));
        }
        if let Some(language) = &user.language_code {
            variables.insert("language".into(), Value::from(language.as_str()));
        }
    }
    variables
}

/// "typing…" in a chat, renewed until dropped. Its requests run on their own task, so they
/// never hold the reply up; a refused one is logged and counted, not retried.
struct Typing(tokio::task::JoinHandle<()>);

impl Typing {
    fn start(bot: &TelegramBot, chat: ChatId, shared: &Shared) -> Self {
        let (bot, every) = (bot.clone(), shared.settings.typing_every);
        Self(tokio::spawn(async move {
            loop {
                if let Err(error) = bot.send_chat_action(chat, ChatAction::Typing).await {
                    metrics::typing_failed(CHANNEL);
                    tracing::debug!(%error, "could not show the typing indicator");
                }
                tokio::time::sleep(every).await;
            }
        }))
    }
}

impl Drop for Typing {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends one message. `Throttle` waits out rate limits (`retry_after`); network errors and
/// Telegram's 5xx are retried here, as the send retry policy says.
async fn send(bot: &TelegramBot, chat: ChatId, text: &str, shared: &Shared) -> HandlerResult {
    let policy = crate::service::send_retry_policy(
        shared.settings.send_retries,
        shared.settings.send_backoff,
    );
    let sent = policy
        .run(
            |attempt| {
                if attempt > 1 {
                    metrics::send_retry(CHANNEL);
                }
                bot.send_message(chat, text).into_future()
            },
            |error: &RequestError| {
                if is_transient(error) {
                    tracing::warn!(%error, "sending to Telegram failed; it may be retried");
                    Retry::Backoff
                } else {
                    Retry::Never
                }
            },
        )
        .await;
    match sent {
        Ok(_) => {
            metrics::message_out(CHANNEL, true);
            Ok(())
        }
        Err(error) => {
            metrics::message_out(CHANNEL, false);
            tracing::error!(%error, %chat, "could not send to Telegram");
            Err(error.into())
        }
    }
}

fn is_transient(error: &RequestError) -> bool {
    match error {
        RequestError::Network(_) | RequestError::Io(_) | RequestError::InvalidJson { .. } => true,
        // Telegram reports its own faults as errors without a known description.
        RequestError::Api(ApiError::Unknown(description)) => [
            "Internal Server Error",
            "Bad Gateway",
            "Service Unavailable",
            "Gateway Timeout",
        ]
        .iter()
        .any(|fault| description.contains(fault)),
        _ => false,
    }
}
