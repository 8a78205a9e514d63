//! The email bridge: customers write to the business's address and get the assistant's answer
//! by mail, in the same thread.
//!
//! Mail comes in by IMAP ([`imap`]) or, for hosts whose mail provider forwards each mail to a
//! URL, posted raw to `POST /email/inbound` with a shared secret; it goes out by SMTP or the
//! host's `sendmail` ([`send`]). The customer identifier is the sender's address, lower-cased.
//! What reaches the model is the mail's new words ([`quote`]); auto-replies, bounces and
//! mailing lists are never answered ([`message::Automatic`]), and the bridge's own answers say
//! `Auto-Submitted: auto-replied`, so two auto-responders cannot loop. Each mail is handled
//! once across restarts ([`state`]). Operator messages go out as mail in the customer's thread.

pub mod imap;
pub mod message;
pub mod quote;
pub mod send;
pub mod state;
pub mod tls;

use std::sync::Arc;

use anyreply_client::{Event, Variables};
use anyreply_core::env::Env;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::bridge::{Bridge, Inbound as Question, Outcome};
use crate::metrics;
use crate::operator::Delivery;
use crate::queue::Queues;
use imap::{Fetched, ImapSettings};
use message::Mail;
use send::{Mailer, Outbound, Outgoing, SmtpSettings};
use state::{Handled, Thread, Threads, UidCursor};
use tls::{Security, Trust};

/// The `channel` variable, the metrics' label, and the bridge's name on disk.
pub const CHANNEL: &str = "email";

/// Where a forwarding mail provider posts each raw mail.
pub const INBOUND_PATH: &str = "/email/inbound";

/// The largest mail taken at [`INBOUND_PATH`], as by IMAP.
const MAX_BYTES: usize = imap::MAX_BYTES as usize;

/// How mail comes in.
#[derive(Debug, Clone)]
pub enum Inbound {
    Imap(ImapSettings),
    /// Posted to [`INBOUND_PATH`] with this secret (`Authorization: Bearer`, or `?secret=`).
    Webhook(SecretString),
}

/// Everything the email bridge can be told.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `ANYREPLY_EMAIL_ADDRESS` and `ANYREPLY_EMAIL_NAME`: who the answers are from.
    pub from: Mailbox,
    pub inbound: Inbound,
    pub outbound: Outbound,
    /// `ANYREPLY_EMAIL_CA_FILE`.
    pub trust: Trust,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InboundKind {
    Imap,
    Webhook,
}

impl EmailSettings {
    /// The settings `env` gives, its problems noted in it.
    pub fn read(env: &mut Env) -> Self {
        let address = env.required("ANYREPLY_EMAIL_ADDRESS", "help@example.com");
        let name = env.text("ANYREPLY_EMAIL_NAME");
        let from = address.as_deref().and_then(|address| {
            match address.trim().parse::<lettre::Address>() {
                Ok(address) => Some(Mailbox::new(name, address)),
                Err(error) => {
                    let why = format!("not an email address ({error})");
                    env.invalid("ANYREPLY_EMAIL_ADDRESS", address, &why, "help@example.com");
                    None
                }
            }
        });
        let trust = match env.text("ANYREPLY_EMAIL_CA_FILE") {
            Some(path) => Trust::read(&path).unwrap_or_else(|error| {
                env.invalid(
                    "ANYREPLY_EMAIL_CA_FILE",
                    &path,
                    &format!("{error:#}"),
                    "/etc/ssl/certs/mail-ca.pem",
                );
                Trust::default()
            }),
            None => Trust::default(),
        };
        let kind = env.choice(
            "ANYREPLY_EMAIL_INBOUND",
            InboundKind::Imap,
            &[
                ("imap", InboundKind::Imap),
                ("webhook", InboundKind::Webhook),
            ],
        );
        let from = from.unwrap_or_else(|| "help@example.com".parse().expect("a constant address"));
        let inbound = match kind {
            InboundKind::Imap => Inbound::Imap(read_imap(env, from.email.as_ref())),
            InboundKind::Webhook => Inbound::Webhook(SecretString::from(
                env.required("ANYREPLY_EMAIL_WEBHOOK_SECRET", "a-long-random-string")
                    .unwrap_or_default(),
            )),
        };
        let outbound = match env.text("ANYREPLY_EMAIL_SENDMAIL") {
            Some(program) => Outbound::Sendmail(program),
            None => Outbound::Smtp(read_smtp(env, &inbound)),
        };
        Self {
            from,
            inbound,
            outbound,
            trust,
        }
    }
}

/// `ANYREPLY_EMAIL_IMAP_*`; the user is the bridge's address unless said otherwise.
fn read_imap(env: &mut Env, address: &str) -> ImapSettings {
    let host = env.required("ANYREPLY_EMAIL_IMAP_HOST", "imap.example.com");
    let security = env.choice(
        "ANYREPLY_EMAIL_IMAP_SECURITY",
        Security::Tls,
        Security::CHOICES,
    );
    let default_port = if security == Security::Tls { 993 } else { 143 };
    ImapSettings {
        host: host.unwrap_or_default(),
        port: env.parsed("ANYREPLY_EMAIL_IMAP_PORT", default_port, "993"),
        security,
        user: env
            .text("ANYREPLY_EMAIL_IMAP_USER")
            .unwrap_or_else(|| address.to_owned()),
        password: SecretString::from(
            env.required("ANYREPLY_EMAIL_IMAP_PASSWORD", "the-mailbox-password")
                .unwrap_or_default(),
        ),
        mailbox: env
            .text("ANYREPLY_EMAIL_IMAP_MAILBOX")
            .unwrap_or_else(|| "INBOX".to_owned()),
        idle: env.parsed("ANYREPLY_EMAIL_IMAP_IDLE", true, "true"),
        poll: std::time::Duration::from_secs(
            env.parsed::<u64>("ANYREPLY_EMAIL_POLL_SECONDS", 60, "60")
                .max(1),
        ),
    }
}

/// `ANYREPLY_EMAIL_SMTP_*`; the user and password are the IMAP ones unless said otherwise.
fn read_smtp(env: &mut Env, inbound: &Inbound) -> SmtpSettings {
    let host = env.required("ANYREPLY_EMAIL_SMTP_HOST", "smtp.example.com");
    let security = env.choice(
        "ANYREPLY_EMAIL_SMTP_SECURITY",
        Security::StartTls,
        Security::CHOICES,
    );
    let default_port = match security {
        Security::Tls => 465,
        Security::StartTls => 587,
        Security::Plain => 25,
    };
    let imap = match inbound {
        Inbound::Imap(imap) => Some(imap),
        Inbound::Webhook(_) => None,
    };
    SmtpSettings {
        host: host.unwrap_or_default(),
        port: env.parsed("ANYREPLY_EMAIL_SMTP_PORT", default_port, "587"),
        security,
        user: env
            .text("ANYREPLY_EMAIL_SMTP_USER")
            .or_else(|| imap.map(|imap| imap.user.clone())),
        password: env
            .text("ANYREPLY_EMAIL_SMTP_PASSWORD")
            .map(SecretString::from)
            .or_else(|| imap.map(|imap| imap.password.clone())),
    }
}

#[derive(Debug)]
struct EmailState {
    settings: EmailSettings,
    bridge: Bridge,
    mailer: Mailer,
    handled_mail: Handled,
    threads: Threads,
    /// Answers being made and sent, one customer's in order.
    in_flight: Queues,
}

/// The email bridge, as [`crate::service::main`] starts it.
#[derive(Debug, Clone, Copy)]
pub struct Email;

impl crate::service::Channel for Email {
    const PROGRAM: &'static str = "anyreply-email";
    type Settings = EmailSettings;

    fn settings(env: &mut Env, _texts: &crate::text::Texts) -> EmailSettings {
        EmailSettings::read(env)
    }

    fn run(
        settings: EmailSettings,
        bridge: Bridge,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> {
        run(settings, bridge, listener, shutdown)
    }
}

/// Reads the mailbox (or serves the inbound webhook) and delivers operator messages, until
/// `shutdown`; then finishes the answers in flight.
pub async fn run(
    settings: EmailSettings,
    bridge: Bridge,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mailer = Mailer::new(&settings.outbound, settings.from.clone(), &settings.trust)?;
    let state = Arc::new(EmailState {
        handled_mail: Handled::load(&bridge.state_dir, bridge.assistant_id).await?,
        threads: Threads::load(&bridge.state_dir, bridge.assistant_id).await?,
        mailer,
        in_flight: Queues::default(),
        settings,
        bridge,
    });
    let mut router = crate::service::ops_router();
    let stop_reading = CancellationToken::new();
    let mut reader = None;
    match &state.settings.inbound {
        Inbound::Webhook(_) => {
            router = router.merge(
                axum::Router::new()
                    .route(INBOUND_PATH, post(posted))
                    .layer(DefaultBodyLimit::max(MAX_BYTES))
                    .with_state(state.clone()),
            );
            tracing::info!(address = %listener.local_addr()?, path = INBOUND_PATH, "receiving mail posted by the mail provider");
        }
        Inbound::Imap(imap) => {
            let cursor = UidCursor::new(&state.bridge.state_dir, state.bridge.assistant_id).await?;
            let accept = {
                let state = state.clone();
                move |raw, fetched| {
                    let state = state.clone();
                    async move {
                        accept(&state, raw, Some(fetched)).await;
                    }
                }
            };
            reader = Some(tokio::spawn(imap::follow(
                imap.clone(),
                state.settings.trust.clone(),
                cursor,
                accept,
                stop_reading.clone(),
            )));
        }
    }
    // The mailbox is left before the answers in flight are finished, so none is added after.
    let shutdown = async move {
        shutdown.await;
        stop_reading.cancel();
        if let Some(reader) = reader {
            let _ = reader.await;
        }
    };
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
        CHANNEL,
        deliver,
        &state.in_flight,
        listener,
        shutdown,
    )
    .await
}

/// `?secret=` of the inbound webhook, for providers that can only be given a URL.
#[derive(Debug, Deserialize)]
struct SecretQuery {
    secret: Option<String>,
}

/// `POST /email/inbound`: one raw RFC 822 mail, with the shared secret.
async fn posted(
    State(state): State<Arc<EmailState>>,
    Query(query): Query<SecretQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Inbound::Webhook(secret) = &state.settings.inbound else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let offered = bearer.or(query.secret.as_deref()).unwrap_or_default();
    if !bool::from(offered.as_bytes().ct_eq(secret.expose_secret().as_bytes())) {
        tracing::warn!("refused a posted mail without the right secret");
        return (StatusCode::UNAUTHORIZED, "the secret is missing or wrong\n").into_response();
    }
    match accept(&state, body.to_vec(), None).await {
        Accepted::Answering => (StatusCode::ACCEPTED, "accepted\n").into_response(),
        Accepted::Before => (StatusCode::OK, "handled before\n").into_response(),
        Accepted::NotAnswered(why) => {
            (StatusCode::OK, format!("not answered: {why}\n")).into_response()
        }
        Accepted::Unreadable(why) => (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
    }
}

/// What became of a mail handed to [`accept`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Queued: the answer follows.
    Answering,
    /// Handled before (fetched or posted again).
    Before,
    /// Never to be answered: an auto-reply, a bounce, a list, an empty mail.
    NotAnswered(&'static str),
    Unreadable(message::Unreadable),
}

/// The key of a mail in the handled record and of its answer at AnyReply: its `Message-ID`,
/// else its bytes, hashed (ids can be long and hold anything).
fn key(mail: &Mail, raw: &[u8]) -> String {
    let hash = match &mail.message_id {
        Some(id) => Sha256::digest(id.as_bytes()),
        None => Sha256::digest(raw),
    };
    format!("{CHANNEL}:{}", hex::encode(hash))
}

/// Takes a customer's mail: remembers its thread and queues its answer, or says why not.
async fn accept(state: &Arc<EmailState>, raw: Vec<u8>, fetched: Option<Fetched>) -> Accepted {
    let finish = |fetched: Option<Fetched>| async move {
        state.bridge.handled.note();
        if let Some(fetched) = fetched {
            fetched.finish().await;
        }
    };
    let mail = match message::read(&raw, state.settings.from.email.as_ref()) {
        Ok(mail) => mail,
        Err(why) => {
            tracing::warn!(%why, "a mail that cannot be read; not answered");
            metrics::message_in(CHANNEL, None);
            finish(fetched).await;
            return Accepted::Unreadable(why);
        }
    };
    let key = key(&mail, &raw);
    if state.handled_mail.contains(&key).await {
        tracing::info!(message_id = ?mail.message_id, "a mail handled before; not answered again");
        metrics::message_in(CHANNEL, Some(&Outcome::AnsweredBefore));
        finish(fetched).await;
        return Accepted::Before;
    }
    let why_not = match mail.automatic {
        Some(automatic) => Some(automatic.as_str()),
        None if mail.text.is_empty() && mail.subject.is_empty() => Some("empty"),
        None => None,
    };
    if let Some(why) = why_not {
        tracing::info!(from = %mail.from, message_id = ?mail.message_id, why, "a mail not to be answered");
        metrics::message_in(CHANNEL, None);
        remember(state, &key).await;
        finish(fetched).await;
        return Accepted::NotAnswered(why);
    }
    let thread = thread_of(&mail);
    if let Err(error) = state.threads.set(&mail.from, thread.clone()).await {
        tracing::error!(
            error = format!("{error:#}"),
            "could not save the customer's thread; operator messages to them may not be delivered"
        );
    }
    let worker = state.clone();
    state.in_flight.push(&mail.from.clone(), async move {
        answer(&worker, &mail, &thread, &key).await;
        remember(&worker, &key).await;
        worker.bridge.handled.note();
        if let Some(fetched) = fetched {
            fetched.finish().await;
        }
    });
    Accepted::Answering
}

async fn remember(state: &EmailState, key: &str) {
    if let Err(error) = state.handled_mail.add(key).await {
        tracing::error!(
            error = format!("{error:#}"),
            "could not record a handled mail; after a restart it is read again (and AnyReply still answers it once)"
        );
    }
}

/// The thread an answer to `mail` goes in.
fn thread_of(mail: &Mail) -> Thread {
    let mut thread = Thread {
        reply_to: mail.reply_to.clone(),
        subject: mail.subject.clone(),
        references: mail.references.clone(),
    };
    if let Some(id) = &mail.message_id {
        thread.add(id);
    }
    thread
}

/// Asks AnyReply and mails the answer (or the apology) in `thread`.
async fn answer(state: &EmailState, mail: &Mail, thread: &Thread, key: &str) {
    let text = if mail.text.is_empty() {
        mail.subject.clone()
    } else {
        mail.text.clone()
    };
    let mut variables = Variables::new();
    variables.insert("channel".into(), Value::from(CHANNEL));
    variables.insert("bridge".into(), Value::from(CHANNEL));
    variables.insert("email".into(), Value::from(mail.from.as_str()));
    variables.insert("subject".into(), Value::from(mail.subject.as_str()));
    variables.insert(
        crate::transcribe::KIND_VARIABLE.into(),
        Value::from(crate::transcribe::TEXT),
    );
    if let Some(name) = &mail.name {
        variables.insert("name".into(), Value::from(name.as_str()));
    }
    let question = Question {
        customer: mail.from.clone(),
        text,
        idempotency_key: key.to_owned(),
        variables,
    };
    let outcome = state.bridge.answer(question).await;
    metrics::message_in(CHANNEL, Some(&outcome));
    let words = match outcome {
        Outcome::Reply(words) | Outcome::Apology(words) => words,
        Outcome::Silent | Outcome::OptedOut | Outcome::AnsweredBefore | Outcome::Coalesced => {
            return;
        }
    };
    let outgoing = Outgoing {
        thread,
        text: &words,
        automatic: true,
    };
    if let Err(error) = mail_to(state, &mail.from, outgoing).await {
        tracing::error!(error = format!("{error:#}"), message_id = ?mail.message_id, "could not send the answer");
    }
}

/// Composes and sends `outgoing` to `customer`, adding it to their thread.
async fn mail_to(state: &EmailState, customer: &str, outgoing: Outgoing<'_>) -> anyhow::Result<()> {
    let (message, id) = state.mailer.compose(outgoing)?;
    let sent = state.mailer.send(&message).await;
    metrics::message_out(CHANNEL, sent.is_ok());
    sent?;
    if let Err(error) = state.threads.sent(customer, &id).await {
        tracing::error!(
            error = format!("{error:#}"),
            "could not save the customer's thread"
        );
    }
    Ok(())
}

/// Sends an operator message as mail in the customer's thread; a customer who never wrote to
/// this bridge is another channel's.
async fn deliver_operator_message(state: &EmailState, event: Event) -> Delivery {
    let customer = &event.customer_identifier;
    let Some(message) = event.message.as_ref() else {
        return Delivery::NotOurs;
    };
    let Some(thread) = state.threads.get(customer).await else {
        return Delivery::NotOurs;
    };
    let outgoing = Outgoing {
        thread: &thread,
        text: &message.content,
        automatic: false,
    };
    match mail_to(state, customer, outgoing).await {
        Ok(()) => {
            tracing::info!(event = event.id, conversation = %event.conversation_id, "delivered an operator message");
            Delivery::Sent
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), event = event.id, conversation = %event.conversation_id, "an operator message was not sent");
            Delivery::Failed
        }
    }
}
