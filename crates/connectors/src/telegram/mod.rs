//! The Telegram bridge (teloxide): long polling by default, a webhook on request.
//!
//! Updates of one chat are handled one after another (teloxide's default distribution by
//! chat), so replies keep each chat's order; chats are handled concurrently. Sends go through
//! teloxide's `Throttle`, which keeps within Telegram's limits and waits out `retry_after`.

pub mod handlers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use teloxide::adaptors::Throttle;
use teloxide::adaptors::throttle::Limits;
use teloxide::dispatching::Dispatcher;
use teloxide::error_handlers::LoggingErrorHandler;
use teloxide::prelude::*;
use teloxide::update_listeners::{Polling, webhooks};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::bridge::Bridge;
use crate::cursor::EventCursor;
use crate::operator;
use crate::seen::Seen;
use crate::text::Texts;
use anyreply_core::env::Env;

/// The Bot API's root, unless `ANYREPLY_TELEGRAM_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

/// Telegram shows "typing…" for five seconds; it is renewed a little sooner.
pub const TYPING_EVERY: Duration = Duration::from_secs(4);

/// The bot as handlers see it: every request throttled to Telegram's limits.
pub type TelegramBot = Throttle<Bot>;

/// Who may talk to the bot in groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPolicy {
    /// Private chats only (the default): group messages are ignored.
    Ignore,
    /// Every message in a group the bot is in is answered.
    All,
}

/// Everything the Telegram bridge can be told.
#[derive(Debug, Clone)]
pub struct TelegramSettings {
    /// `ANYREPLY_TELEGRAM_TOKEN`, from BotFather.
    pub token: String,
    /// `ANYREPLY_TELEGRAM_API_URL`: the Bot API server.
    pub api_url: Url,
    /// `ANYREPLY_TELEGRAM_WEBHOOK_URL`: set it for webhook mode; the public HTTPS URL that
    /// reaches `ANYREPLY_BRIDGE_LISTEN`.
    pub webhook_url: Option<Url>,
    /// `ANYREPLY_TELEGRAM_WEBHOOK_SECRET`: required in webhook mode.
    pub webhook_secret: Option<String>,
    /// `ANYREPLY_TELEGRAM_ID_PREFIX`: put before the user id to make `customer_identifier`.
    pub id_prefix: String,
    /// `ANYREPLY_TELEGRAM_GROUPS`: `ignore` or `all`.
    pub groups: GroupPolicy,
    /// `ANYREPLY_TELEGRAM_SEND_RETRIES`: extra attempts of a send after a network error or 5xx.
    pub send_retries: u32,
    /// Pause before a send's first retry; doubled for each next.
    pub send_backoff: Duration,
    /// Long polling's wait for new updates.
    pub poll_timeout: Duration,
    /// How often "typing…" is renewed while a reply is made (Telegram shows it for five
    /// seconds).
    pub typing_every: Duration,
    /// Telegram's sending limits (the Bot API's defaults).
    pub limits: Limits,
    pub texts: Texts,
}

impl TelegramSettings {
    /// The settings `env` gives, its problems noted in it.
    pub fn read(env: &mut Env, texts: Texts) -> Self {
        let groups = env.choice(
            "ANYREPLY_TELEGRAM_GROUPS",
            GroupPolicy::Ignore,
            &[("ignore", GroupPolicy::Ignore), ("all", GroupPolicy::All)],
        );
        let settings = Self {
            token: env
                .required("ANYREPLY_TELEGRAM_TOKEN", "123456:ABC-from-BotFather")
                .unwrap_or_default(),
            api_url: env.parsed(
                "ANYREPLY_TELEGRAM_API_URL",
                Url::parse(DEFAULT_API_URL).expect("constant URL"),
                DEFAULT_API_URL,
            ),
            webhook_url: env.optional(
                "ANYREPLY_TELEGRAM_WEBHOOK_URL",
                "https://bot.example.com/telegram/webhook",
            ),
            webhook_secret: env.text("ANYREPLY_TELEGRAM_WEBHOOK_SECRET"),
            id_prefix: env
                .text("ANYREPLY_TELEGRAM_ID_PREFIX")
                .unwrap_or_else(|| "telegram:".to_owned()),
            groups,
            send_retries: env.parsed("ANYREPLY_TELEGRAM_SEND_RETRIES", 3, "3"),
            send_backoff: Duration::from_millis(500),
            poll_timeout: Duration::from_secs(30),
            typing_every: TYPING_EVERY,
            limits: Limits::default(),
            texts,
        };
        if let Err(problem) = settings.check() {
            env.problem(problem.to_string());
        }
        settings
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.webhook_url.is_some() {
            let secret = self
                .webhook_secret
                .as_deref()
                .context("webhook mode needs ANYREPLY_TELEGRAM_WEBHOOK_SECRET")?;
            let valid = (1..=256).contains(&secret.len())
                && secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                bail!(
                    "ANYREPLY_TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
                );
            }
        }
        Ok(())
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct Shared {
    pub bridge: Bridge,
    pub settings: TelegramSettings,
    pub seen: Seen,
}

/// Runs the bridge, and the delivery of operator messages beside it, until `shutdown`
/// resolves; then finishes the messages in flight.
/// The Telegram bridge, as [`crate::service::main`] starts it.
#[derive(Debug, Clone, Copy)]
pub struct Telegram;

impl crate::service::Channel for Telegram {
    const PROGRAM: &'static str = "anyreply-telegram";
    type Settings = TelegramSettings;

    fn settings(env: &mut Env, texts: &Texts) -> TelegramSettings {
        TelegramSettings::read(env, texts.clone())
    }

    fn run(
        settings: TelegramSettings,
        bridge: Bridge,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> {
        run(settings, bridge, listener, shutdown)
    }
}

pub async fn run(
    settings: TelegramSettings,
    bridge: Bridge,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    settings.check()?;
    let bot = Bot::new(&settings.token)
        .set_api_url(settings.api_url.clone())
        .throttle(settings.limits);
    // teloxide's dispatcher panics when it cannot ask who it is: ask first, and say why.
    check_token(&bot, &settings.api_url).await?;
    let shared = Arc::new(Shared {
        bridge,
        settings: settings.clone(),
        seen: Seen::default(),
    });
    let stop_following = CancellationToken::new();
    // Also stops the follower if the bridge fails to start below.
    let _follower_stops_with_us = stop_following.clone().drop_guard();
    let follower = follow_operator_messages(&bot, &shared, stop_following.clone()).await?;
    let handled = shared.bridge.handled.clone();
    let mut dispatcher = Dispatcher::builder(bot.clone(), handlers::schema())
        .dependencies(dptree::deps![shared])
        // An update no handler takes (a group's, when groups are ignored) is done with too.
        .default_handler(move |_| {
            let handled = handled.clone();
            async move { handled.note() }
        })
        .error_handler(LoggingErrorHandler::with_custom_text(
            "a Telegram update failed",
        ))
        .build();
    let token = dispatcher.shutdown_token();
    let stop = async move {
        shutdown.await;
        stop_following.cancel();
        match token.shutdown() {
            Ok(done) => done.await,
            Err(error) => tracing::warn!(%error, "the dispatcher was not running"),
        }
    };
    match (&settings.webhook_url, &settings.webhook_secret) {
        (Some(url), Some(secret)) => {
            let (updates, server) = serve_webhook(bot, listener, url, secret).await?;
            tracing::info!(%url, "receiving Telegram updates by webhook");
            tokio::join!(
                dispatcher.dispatch_with_listener(updates, LoggingErrorHandler::new()),
                stop
            );
            server.await??;
        }
        _ => {
            let (server_stop, server) = serve_ops(listener);
            let updates = Polling::builder(bot)
                .timeout(settings.poll_timeout)
                .delete_webhook()
                .await
                .build();
            tracing::info!("receiving Telegram updates by long polling");
            tokio::join!(
                dispatcher.dispatch_with_listener(updates, LoggingErrorHandler::new()),
                stop
            );
            let _ = server_stop.send(());
            server.await??;
        }
    }
    follower.await?;
    Ok(())
}

/// Delivers the assistant's operator messages to their chats from where the bridge left off,
/// until `stop`.
async fn follow_operator_messages(
    bot: &TelegramBot,
    shared: &Arc<Shared>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let cursor = EventCursor::new(
        &shared.bridge.state_dir,
        handlers::CHANNEL,
        shared.bridge.assistant_id,
    );
    let last_handled = cursor.load().await?;
    let bridge = shared.bridge.clone();
    let (bot, shared) = (bot.clone(), shared.clone());
    let deliver = move |event| {
        let (bot, shared) = (bot.clone(), shared.clone());
        async move { handlers::deliver_operator_message(&bot, &shared, event).await }
    };
    Ok(tokio::spawn(operator::follow(
        bridge,
        cursor,
        last_handled,
        stop,
        deliver,
    )))
}

/// Serves the webhook's path (its secret token checked) beside `/health` and `/metrics`: the
/// updates it receives, and the server, which stops once the dispatcher has.
async fn serve_webhook(
    bot: TelegramBot,
    listener: tokio::net::TcpListener,
    url: &Url,
    secret: &str,
) -> anyhow::Result<(
    impl teloxide::update_listeners::UpdateListener<Err = std::convert::Infallible>,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let address: SocketAddr = listener.local_addr()?;
    let options = webhooks::Options::new(address, url.clone()).secret_token(secret.to_owned());
    let (updates, stop_flag, webhook) = webhooks::axum_to_router(bot, options).await?;
    let secret: Arc<str> = secret.into();
    let webhook = webhook.layer(middleware::from_fn(move |request: Request, next: Next| {
        let secret = secret.clone();
        async move { check_secret(&secret, request, next).await }
    }));
    let app = crate::service::ops_router().merge(webhook);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop_flag)
            .await
    });
    Ok((updates, server))
}

/// Serves `/health` and `/metrics` until the sender is used or dropped.
fn serve_ops(
    listener: tokio::net::TcpListener,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, crate::service::ops_router())
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    (stop, server)
}

/// Asks Telegram who the bot is: a wrong token or an unreachable Bot API is a sentence, not
/// a panic.
async fn check_token(bot: &TelegramBot, api_url: &Url) -> anyhow::Result<()> {
    match bot.get_me().await {
        Ok(me) => {
            tracing::info!(bot = %me.username(), "signed in to Telegram");
            Ok(())
        }
        // teloxide reads both a malformed token's 404 and a revoked one's 401 as this.
        Err(teloxide::RequestError::Api(teloxide::ApiError::InvalidToken)) => bail!(
            "Telegram refused ANYREPLY_TELEGRAM_TOKEN: it is not a valid bot token (get one from @BotFather)"
        ),
        Err(error) => bail!(
            "cannot reach the Telegram Bot API at {api_url} (ANYREPLY_TELEGRAM_API_URL): {error}"
        ),
    }
}

/// Refuses webhook requests without the secret Telegram was given, comparing in constant time.
async fn check_secret(secret: &str, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let matches = given.len() == secret.len()
        && given
            .iter()
            .zip(secret.as_bytes())
            .fold(0_u8, |diff, (a, b)| diff | (a ^ b))
            == 0;
    if !matches {
        tracing::warn!("refused a webhook request without the right secret token");
        let mut refused = Response::new(axum::body::Body::empty());
        *refused.status_mut() = StatusCode::UNAUTHORIZED;
        return refused;
    }
    next.run(request).await
}
