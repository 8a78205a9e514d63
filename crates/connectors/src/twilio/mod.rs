//! The Twilio bridge, SMS and WhatsApp: an endpoint for Twilio's inbound-message webhook.
//!
//! Twilio posts both channels' messages to the same webhook; WhatsApp's addresses are the
//! number behind `whatsapp:`. One person is one customer on both (`customer_identifier` is the
//! E.164 number); the `channel` variable says which they last used, and replies and operator
//! messages go back on it.
//!
//! By default it acknowledges at once with an empty `<Response/>` (Twilio gives up after 15
//! seconds, and a reply that calls tools can take longer), then sends the reply with the REST
//! Messages API. Inline mode answers with `<Message>` TwiML instead.

pub mod rest;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use anyreply_client::{Event, RequestOptions, Uuid, Variables};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use twiml::Twiml;
use url::Url;

use crate::bridge::{Bridge, Inbound, Outcome};
use crate::metrics;
use crate::operator::Delivery;
use crate::queue::Queues;
use crate::seen::Seen;
use crate::split::split;
use crate::transcribe::{Heard, KIND_VARIABLE, NoteInfo, TEXT, VOICE_NOTE};
use anyreply_core::env::Env;
use rest::TwilioRest;

/// The bridge's name for its place on disk (see `EventCursor`).
const BRIDGE: &str = "sms";

/// The `bridge` variable's value: the customer last wrote through this bridge (see
/// `whatsapp::BRIDGE`).
const BRIDGE_VARIABLE: &str = "twilio";

/// The channels Twilio brings to this bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Sms,
    Whatsapp,
}

impl Channel {
    const WHATSAPP: &'static str = "whatsapp:";

    /// The channel of a Twilio address (`+1555…`, `whatsapp:+1555…`), and its number.
    pub fn of(address: &str) -> (Channel, &str) {
        match address.strip_prefix(Self::WHATSAPP) {
            Some(number) => (Channel::Whatsapp, number),
            None => (Channel::Sms, address),
        }
    }

    /// Its name in metrics and in the `channel` variable.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
        }
    }

    /// The Twilio address of `number` on this channel.
    pub fn address(self, number: &str) -> String {
        match self {
            Channel::Sms => number.to_owned(),
            Channel::Whatsapp => format!("{}{number}", Self::WHATSAPP),
        }
    }
}

/// Twilio's REST API root, unless `ANYREPLY_TWILIO_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.twilio.com";

/// Where Twilio posts inbound messages.
pub const WEBHOOK_PATH: &str = "/twilio/sms";

/// Twilio's opt-out words: Twilio stops delivering to the number itself; AnyReply is told
/// too (`opt_out`), so it generates, charges and accepts nothing for the customer meanwhile.
pub const OPT_OUT_WORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];

/// Twilio's opt-in words: AnyReply is told (`opt_in`) and answers the customer again.
pub const OPT_IN_WORDS: &[&str] = &["START", "UNSTOP"];

/// The conversation variable holding the address the customer last wrote to (Twilio's `To`,
/// `whatsapp:+1…` on WhatsApp): operator messages are sent from it.
pub const BUSINESS_NUMBER: &str = "business_number";

/// Twilio's help words, which it answers itself.
pub const HELP_WORDS: &[&str] = &["HELP", "INFO"];

/// Keywords Twilio handles itself (opt-out, opt-in, help): never questions for the AI.
/// `YES`, an opt-in keyword only for some senders, is an everyday answer and goes through.
pub const KEYWORDS: [&[&str]; 3] = [OPT_OUT_WORDS, OPT_IN_WORDS, HELP_WORDS];

/// How the reply travels back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    /// Acknowledge at once, send with the REST API (the default).
    Rest,
    /// Answer the webhook with `<Message>` TwiML: for fast assistants without tools.
    Inline,
}

/// Everything the Twilio bridge can be told.
#[derive(Debug, Clone)]
pub struct TwilioSettings {
    /// `ANYREPLY_TWILIO_ACCOUNT_SID`.
    pub account_sid: String,
    /// `ANYREPLY_TWILIO_AUTH_TOKEN`: signs webhooks and authenticates REST calls.
    pub auth_token: SecretString,
    /// `ANYREPLY_TWILIO_PUBLIC_URL`: the webhook URL exactly as configured in Twilio.
    pub public_url: String,
    /// `ANYREPLY_TWILIO_API_URL`: the REST API's root.
    pub api_url: Url,
    /// `ANYREPLY_TWILIO_MESSAGING_SERVICE_SID`: send from a Messaging Service.
    pub messaging_service_sid: Option<String>,
    /// `ANYREPLY_TWILIO_MODE`: `rest` or `inline`.
    pub mode: ReplyMode,
    /// `ANYREPLY_TWILIO_MAX_CHARS`: longest SMS body sent; longer replies are split.
    pub max_chars: usize,
    /// Pause before a REST send's first retry.
    pub send_backoff: Duration,
}

/// Extra attempts of a REST send after a network error, 429 or 5xx.
const SEND_RETRIES: u32 = 3;

impl TwilioSettings {
    /// The settings `env` gives, its problems noted in it.
    pub fn read(env: &mut Env) -> Self {
        let settings = Self {
            account_sid: env
                .required(
                    "ANYREPLY_TWILIO_ACCOUNT_SID",
                    "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                )
                .unwrap_or_default(),
            auth_token: SecretString::from(
                env.required("ANYREPLY_TWILIO_AUTH_TOKEN", "your-auth-token")
                    .unwrap_or_default(),
            ),
            public_url: env
                .required(
                    "ANYREPLY_TWILIO_PUBLIC_URL",
                    "https://sms.example.com/twilio/sms",
                )
                .unwrap_or_default(),
            api_url: env.parsed(
                "ANYREPLY_TWILIO_API_URL",
                Url::parse(DEFAULT_API_URL).expect("constant URL"),
                DEFAULT_API_URL,
            ),
            messaging_service_sid: env.text("ANYREPLY_TWILIO_MESSAGING_SERVICE_SID"),
            mode: env.choice(
                "ANYREPLY_TWILIO_MODE",
                ReplyMode::Rest,
                &[("rest", ReplyMode::Rest), ("inline", ReplyMode::Inline)],
            ),
            max_chars: env.parsed("ANYREPLY_TWILIO_MAX_CHARS", 1600, "1600"),
            send_backoff: Duration::from_millis(500),
        };
        if let Err(problem) = settings.check() {
            env.problem(problem.to_string());
        }
        settings
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.max_chars == 0 || self.max_chars > 1600 {
            bail!("ANYREPLY_TWILIO_MAX_CHARS must be 1 to 1600 (Twilio's limit)");
        }
        Ok(())
    }
}

#[derive(Debug)]
struct TwilioState {
    settings: TwilioSettings,
    bridge: Bridge,
    rest: TwilioRest,
    seen: Seen,
    /// Replies produced and sent after their webhook was acknowledged, one customer's in order.
    in_flight: Queues,
}

/// The bridge's HTTP app, and the replies still in flight (to finish on shutdown).
pub fn app(settings: TwilioSettings, bridge: Bridge) -> anyhow::Result<(axum::Router, Queues)> {
    let (router, state) = app_and_state(settings, bridge)?;
    Ok((router, state.in_flight.clone()))
}

fn app_and_state(
    settings: TwilioSettings,
    bridge: Bridge,
) -> anyhow::Result<(axum::Router, Arc<TwilioState>)> {
    settings.check()?;
    let rest = TwilioRest::new(
        &settings.api_url,
        settings.account_sid.clone(),
        settings.auth_token.clone(),
        settings.messaging_service_sid.clone(),
        crate::service::send_retry_policy(SEND_RETRIES, settings.send_backoff),
    )?;
    let in_flight = Queues::default();
    let state = Arc::new(TwilioState {
        settings,
        bridge,
        rest,
        seen: Seen::default(),
        in_flight: in_flight.clone(),
    });
    let router = crate::service::ops_router().merge(
        axum::Router::new()
            .route(WEBHOOK_PATH, post(inbound))
            .with_state(state.clone()),
    );
    Ok((router, state))
}

/// Serves, and delivers operator messages beside it, until `shutdown`; then finishes the
/// replies in flight.
/// The Twilio bridge, as [`crate::service::main`] starts it.
#[derive(Debug, Clone, Copy)]
pub struct Twilio;

impl crate::service::Channel for Twilio {
    const PROGRAM: &'static str = "anyreply-twilio";
    type Settings = TwilioSettings;

    fn settings(env: &mut Env, _texts: &crate::text::Texts) -> TwilioSettings {
        TwilioSettings::read(env)
    }

    fn run(
        settings: TwilioSettings,
        bridge: Bridge,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> {
        run(settings, bridge, listener, shutdown)
    }
}

pub async fn run(
    settings: TwilioSettings,
    bridge: Bridge,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (router, state) = app_and_state(settings, bridge)?;
    tracing::info!(address = %listener.local_addr()?, path = WEBHOOK_PATH, "receiving Twilio webhooks");
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

/// Whether `identifier` is an E.164 phone number (`+` and up to 15 digits): an SMS customer.
/// Anything else (`telegram:42`, `whatsapp:+1555…`) is another channel's.
pub fn is_phone_number(identifier: &str) -> bool {
    identifier.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Sends an operator message on the channel the customer last used, from the address they
/// last wrote to (or the Messaging Service), split as replies are.
async fn deliver_operator_message(state: &TwilioState, event: Event) -> Delivery {
    let customer = &event.customer_identifier;
    let Some(message) = event.message.as_ref().filter(|_| is_phone_number(customer)) else {
        return Delivery::NotOurs;
    };
    let failed = |error: anyhow::Error, channel: Channel| {
        metrics::message_out(channel.as_str(), false);
        tracing::error!(
            error = format!("{error:#}"),
            event = event.id,
            conversation = %event.conversation_id,
            "an operator message was not sent"
        );
        Delivery::Failed
    };
    let (channel, business_address) =
        match last_written_to(&state.bridge, event.conversation_id).await {
            Ok(Some(found)) => found,
            Ok(None) => return Delivery::NotOurs,
            Err(error) => return failed(error, Channel::Sms),
        };
    let from = match (&state.settings.messaging_service_sid, business_address) {
        // The service picks the number; `From` is not sent.
        (Some(_), _) => String::new(),
        (None, Some(address)) => address,
        (None, None) => {
            return failed(
                anyhow::anyhow!(
                    "the conversation has no {BUSINESS_NUMBER} variable to send from (the customer has not written to this bridge); set ANYREPLY_TWILIO_MESSAGING_SERVICE_SID to send from a Messaging Service"
                ),
                channel,
            );
        }
    };
    let to = channel.address(customer);
    for piece in split(&message.content, state.settings.max_chars) {
        let sent = state.rest.send(&to, &from, &piece).await;
        metrics::message_out(channel.as_str(), sent.is_ok());
        if let Err(error) = sent {
            return failed(error, channel);
        }
    }
    tracing::info!(event = event.id, conversation = %event.conversation_id, channel = channel.as_str(), "delivered an operator message");
    Delivery::Sent
}

/// The channel the customer last used and the address they wrote to, as the bridge stored
/// them in the conversation (SMS when it says nothing); `None` when they last wrote through
/// the WhatsApp Cloud API bridge, whose the message then is.
async fn last_written_to(
    bridge: &Bridge,
    conversation: Uuid,
) -> anyhow::Result<Option<(Channel, Option<String>)>> {
    let conversation = bridge
        .client
        .conversations()
        .get(conversation)
        .await
        .context("could not read the conversation from AnyReply")?;
    let variable = |name: &str| conversation.variables.get(name).and_then(Value::as_str);
    if variable("bridge") == Some(crate::whatsapp::BRIDGE) {
        return Ok(None);
    }
    let channel = match variable("channel") {
        Some("whatsapp") => Channel::Whatsapp,
        _ => Channel::Sms,
    };
    Ok(Some((
        channel,
        variable(BUSINESS_NUMBER).map(str::to_owned),
    )))
}

/// Tells AnyReply that the customer opted out (or back in), so that it remembers.
async fn remember_consent(bridge: &Bridge, customer: &str, opted_out: bool, sid: &str) {
    let conversations = bridge.client.conversations();
    // A redelivered keyword is told once.
    let options = RequestOptions::idempotency_key(format!("twilio-consent:{sid}"));
    let told = if opted_out {
        conversations
            .opt_out_with(bridge.assistant_id, customer, options)
            .await
    } else {
        conversations
            .opt_in_with(bridge.assistant_id, customer, options)
            .await
    };
    match told {
        Ok(_) => tracing::info!(%sid, opted_out, "AnyReply was told the customer's choice"),
        Err(error) => tracing::error!(
            error_code = ?error.code(),
            %error,
            %sid,
            opted_out,
            "AnyReply could not be told of an opt-out or opt-in keyword"
        ),
    }
}

fn twiml_response(messages: &[String]) -> Response {
    let response = messages
        .iter()
        .fold(twiml::Response::new(), |response, text| {
            response.msg(text.as_str())
        });
    match response.build() {
        Ok(xml) => ([(header::CONTENT_TYPE, "text/xml")], xml).into_response(),
        Err(error) => {
            tracing::error!(?error, "could not build TwiML");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn inbound(
    State(state): State<Arc<TwilioState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    let settings = &state.settings;
    if !signature::is_valid(
        settings.auth_token.expose_secret(),
        &settings.public_url,
        &params,
        signature,
    ) {
        tracing::warn!("refused a webhook with a bad or missing X-Twilio-Signature");
        return StatusCode::FORBIDDEN.into_response();
    }
    let message = Message::read(&params);
    if !state.seen.first_time(&message.sid) {
        metrics::message_in(message.channel.as_str(), None);
        state.bridge.handled.note();
        tracing::info!(sid = %message.sid, "ignoring a redelivered message");
        return twiml_response(&[]);
    }
    if message.is_keyword_twilio_handles() {
        metrics::message_in(message.channel.as_str(), None);
        tracing::info!(sid = %message.sid, "a keyword Twilio handles itself; not sent to the AI");
        remember_keyword(&state, message).await;
        return twiml_response(&[]);
    }
    match settings.mode {
        ReplyMode::Inline => answer_inline(&state, message).await,
        ReplyMode::Rest => {
            answer_later(&state, message);
            twiml_response(&[])
        }
    }
}

/// An inbound message as Twilio's webhook gives it.
struct Message {
    sid: String,
    /// Twilio's addresses (`whatsapp:+1…` on WhatsApp), answered as they came.
    from: String,
    to: String,
    text: String,
    channel: Channel,
    /// The customer's number.
    customer: String,
    /// Where Twilio says the number is from: `country`, `city`, `state` (those it knows).
    whereabouts: Vec<(&'static str, String)>,
    /// The first medium's URL and type, when it is audio (a WhatsApp voice note).
    audio: Option<(String, String)>,
    /// The text is a voice note's transcript.
    voice_note: bool,
}

impl Message {
    fn read(params: &[(String, String)]) -> Self {
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let from = param("From");
        let (channel, customer) = Channel::of(&from);
        let customer = customer.to_owned();
        let whereabouts = [
            ("country", "FromCountry"),
            ("city", "FromCity"),
            ("state", "FromState"),
        ]
        .into_iter()
        .map(|(name, field)| (name, param(field)))
        .filter(|(_, value)| !value.is_empty())
        .collect();
        let media_type = param("MediaContentType0");
        let audio = (param("NumMedia") != "0" && media_type.starts_with("audio/"))
            .then(|| (param("MediaUrl0"), media_type))
            .filter(|(url, _)| !url.is_empty());
        Message {
            audio,
            voice_note: false,
            sid: param("MessageSid"),
            to: param("To"),
            text: param("Body"),
            from,
            channel,
            customer,
            whereabouts,
        }
    }

    fn is_keyword(&self, words: &[&str]) -> bool {
        words
            .iter()
            .any(|k| self.text.trim().eq_ignore_ascii_case(k))
    }

    /// Twilio answers the opt-out and opt-in words itself, and the help words on SMS only (on
    /// WhatsApp they are questions).
    fn is_keyword_twilio_handles(&self) -> bool {
        KEYWORDS.iter().any(|words| {
            (self.channel == Channel::Sms || *words != HELP_WORDS) && self.is_keyword(words)
        })
    }

    /// What AnyReply is asked.
    fn inbound(self) -> Inbound {
        let mut variables = Variables::new();
        variables.insert("channel".into(), Value::from(self.channel.as_str()));
        variables.insert("bridge".into(), Value::from(BRIDGE_VARIABLE));
        variables.insert("phone".into(), Value::from(self.customer.as_str()));
        variables.insert(BUSINESS_NUMBER.into(), Value::from(self.to.as_str()));
        for (name, value) in self.whereabouts {
            variables.insert(name.into(), Value::from(value));
        }
        let kind = if self.voice_note { VOICE_NOTE } else { TEXT };
        variables.insert(KIND_VARIABLE.into(), Value::from(kind));
        Inbound {
            customer: self.customer,
            text: self.text,
            idempotency_key: format!("twilio:{}", self.sid),
            variables,
        }
    }
}

/// An opt-out or opt-in word tells AnyReply of the customer's consent.
async fn remember_keyword(state: &Arc<TwilioState>, message: Message) {
    let opted_out = if message.is_keyword(OPT_OUT_WORDS) {
        true
    } else if message.is_keyword(OPT_IN_WORDS) {
        false
    } else {
        state.bridge.handled.note();
        return;
    };
    let worker = state.clone();
    let (who, sid) = (message.customer.clone(), message.sid);
    let tell = async move {
        remember_consent(&worker.bridge, &who, opted_out, &sid).await;
        worker.bridge.handled.note();
    };
    match state.settings.mode {
        // Queued with the customer's messages, so a message after STOP is not answered
        // before AnyReply knows.
        ReplyMode::Rest => state.in_flight.push(&message.customer, tell),
        ReplyMode::Inline => tell.await,
    }
}

/// A voice note's transcript becomes the message's text; `Some` sentence for the customer
/// instead when it cannot (no transcription model, too long, a failure).
async fn hear(state: &TwilioState, message: &mut Message) -> Option<String> {
    let (url, mime_type) = message.audio.take()?;
    let note = NoteInfo {
        mime_type,
        ..NoteInfo::default()
    };
    let settings = &state.settings;
    // Twilio's media URLs want the account's credentials (and redirect to storage).
    let locate = |http: &reqwest::Client| {
        let request = http.get(url.as_str()).basic_auth(
            &settings.account_sid,
            Some(settings.auth_token.expose_secret()),
        );
        async move { Ok(request) }
    };
    let channel = message.channel.as_str();
    match state.bridge.voice.hear(channel, note, locate).await {
        Heard::Transcript(text) => {
            message.text = text;
            message.voice_note = true;
            None
        }
        Heard::Say(sentence) => {
            metrics::message_in(channel, None);
            Some(sentence)
        }
    }
}

/// `inline` mode: the reply is the webhook's TwiML answer.
async fn answer_inline(state: &TwilioState, mut message: Message) -> Response {
    let name = message.channel.as_str();
    if let Some(sentence) = hear(state, &mut message).await {
        state.bridge.handled.note();
        return twiml_response(&[sentence]);
    }
    let outcome = state.bridge.answer(message.inbound()).await;
    metrics::message_in(name, Some(&outcome));
    state.bridge.handled.note();
    match outcome {
        Outcome::Reply(reply) => twiml_response(&split(&reply, state.settings.max_chars)),
        Outcome::Apology(apology) => twiml_response(&[apology]),
        Outcome::Silent | Outcome::OptedOut | Outcome::AnsweredBefore | Outcome::Coalesced => {
            twiml_response(&[])
        }
    }
}

/// `rest` mode: the reply is sent with the REST API once AnyReply gives it, after the
/// customer's earlier messages.
fn answer_later(state: &Arc<TwilioState>, mut message: Message) {
    let worker = state.clone();
    let customer = message.customer.clone();
    state.in_flight.push(&customer, async move {
        let (name, sid) = (message.channel.as_str(), message.sid.clone());
        let (from, to) = (message.from.clone(), message.to.clone());
        let pieces = match hear(&worker, &mut message).await {
            Some(sentence) => vec![sentence],
            None => {
                let outcome = worker.bridge.answer(message.inbound()).await;
                metrics::message_in(name, Some(&outcome));
                match outcome {
                    Outcome::Reply(reply) => split(&reply, worker.settings.max_chars),
                    Outcome::Apology(apology) => vec![apology],
                    Outcome::Silent
                    | Outcome::OptedOut
                    | Outcome::AnsweredBefore
                    | Outcome::Coalesced => Vec::new(),
                }
            }
        };
        for piece in pieces {
            let sent = worker.rest.send(&from, &to, &piece).await;
            metrics::message_out(name, sent.is_ok());
            if let Err(error) = sent {
                tracing::error!(%error, %sid, channel = name, "could not send the reply");
                break;
            }
        }
        worker.bridge.handled.note();
    });
}
