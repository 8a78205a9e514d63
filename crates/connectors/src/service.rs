//! What every bridge binary shares: its start-up ([`Channel`], [`main`]), logging, settings,
//! start-up checks, `/health` and `/metrics`, shutdown signals.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use anyreply_client::{Client, DEFAULT_BASE_URL, ErrorCode, PageQuery, RetryPolicy};
use anyreply_core::env::Env;
use axum::Json;
use axum::routing::get;
use futures::StreamExt;
use serde_json::{Value, json};

use tokio_util::sync::CancellationToken;

use crate::bridge::Bridge;
use crate::cursor::EventCursor;
use crate::operator::{self, Delivery};
use crate::queue::Queues;
use crate::text::Texts;

/// What makes a bridge one channel's. Everything else about starting it is the same for every
/// channel and done once, by [`main`]: logging, the shared settings (`ANYREPLY_URL`,
/// `ANYREPLY_API_KEY`, `ANYREPLY_ASSISTANT_ID`, the texts, `ANYREPLY_BRIDGE_LISTEN`), every
/// problem reported at once, the SDK client and the check that AnyReply answers, the listener,
/// and the shutdown on Ctrl-C or SIGTERM. A new channel implements this and its binary is
/// `service::main::<NewChannel>().await`.
pub trait Channel {
    /// The binary, as warnings name it: `anyreply-telegram`.
    const PROGRAM: &'static str;
    /// The channel's own settings.
    type Settings;

    /// Reads the channel's own settings; a problem is noted in `env`, not returned.
    fn settings(env: &mut Env, texts: &Texts) -> Self::Settings;

    /// Runs the bridge: serves `listener` (with [`ops_router`]'s `/health` and `/metrics`)
    /// until `shutdown`, then finishes the messages in flight.
    fn run(
        settings: Self::Settings,
        bridge: Bridge,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = anyhow::Result<()>>;
}

/// A bridge binary's `main`: starts channel `C` from the process's environment and runs it
/// until Ctrl-C or SIGTERM. A failure is one line per problem and exit code 1, never a panic
/// or a backtrace.
pub async fn main<C: Channel>() -> ExitCode {
    init_logging();
    exit_code(start::<C>(Env::from_process(), shutdown_signal()).await)
}

/// Starts channel `C` with the settings of `env` and runs it until `shutdown`: the start-up
/// every bridge shares (see [`Channel`]).
pub async fn start<C: Channel>(
    mut env: Env,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let texts = texts(&mut env);
    let settings = C::settings(&mut env, &texts);
    let bridge = bridge(&mut env, &texts);
    let listen = listen(&mut env);
    finish(env, C::PROGRAM)?;
    let bridge = bridge.context("the AnyReply settings are incomplete")?;
    check_anyreply(&bridge).await?;
    let listener = bind(listen).await?;
    C::run(settings, bridge, listener, shutdown).await
}

/// How a bridge retries its sends to the channel (Telegram, Twilio): the SDK's policy, with
/// `retries` extra attempts and a backoff starting at `backoff` (full jitter, doubling, up to
/// 16 times it).
pub fn send_retry_policy(retries: u32, backoff: std::time::Duration) -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(retries.saturating_add(1))
        .with_backoff(backoff, backoff.saturating_mul(16))
}

/// Logs to stderr; `ANYREPLY_LOG` filters, `ANYREPLY_LOG_FORMAT=json` structures; a bad value
/// of either is warned about, not ignored.
pub fn init_logging() {
    let filter_text = std::env::var("ANYREPLY_LOG").ok();
    let filter = filter_text
        .as_deref()
        .map(tracing_subscriber::EnvFilter::try_new);
    let format = std::env::var("ANYREPLY_LOG_FORMAT").ok();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(match &filter {
            Some(Ok(filter)) => filter.clone(),
            _ => tracing_subscriber::EnvFilter::new("info"),
        })
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let json = format
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
    if let Some(Err(error)) = filter {
        tracing::warn!(
            "ANYREPLY_LOG={:?} is not a valid filter ({error}); logging at info. For example ANYREPLY_LOG=info",
            filter_text.unwrap_or_default()
        );
    }
    if let Some(format) = format.filter(|f| !json && !f.eq_ignore_ascii_case("text")) {
        tracing::warn!(
            "ANYREPLY_LOG_FORMAT={format:?} is not json or text; logging as text. For example ANYREPLY_LOG_FORMAT=json"
        );
    }
}

/// Runs a bridge's `main`: a failure is one line per problem and exit code 1, never a panic
/// or a backtrace.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            for line in format!("{error:#}").lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Ends reading the settings: every problem at once, or a warning for each `ANYREPLY_*`
/// variable `program` does not read (besides logging's, and the server's address, which one
/// environment, such as the Docker image's, often holds too).
pub fn finish(env: Env, program: &str) -> anyhow::Result<()> {
    for name in env.finish(&["ANYREPLY_LOG", "ANYREPLY_LOG_FORMAT", "ANYREPLY_LISTEN"])? {
        tracing::warn!("{name} is not a setting of {program}; it is ignored");
    }
    Ok(())
}

/// The AnyReply side, from `ANYREPLY_URL`, `ANYREPLY_API_KEY`, `ANYREPLY_ASSISTANT_ID`,
/// `ANYREPLY_BRIDGE_STATE_DIR` and the texts; `None` when a problem was noted in `env`.
pub fn bridge(env: &mut Env, texts: &Texts) -> Option<Bridge> {
    let client = Client::builder()
        .from_env(env)
        .user_agent(concat!("anyreply-connectors/", env!("CARGO_PKG_VERSION")));
    let assistant_id = env.required_parsed("ANYREPLY_ASSISTANT_ID", "1");
    let state_dir = state_dir(env);
    let voice = crate::transcribe::Voice::read(env, texts);
    match client.build() {
        Ok(client) => Some(Bridge {
            client,
            assistant_id: assistant_id?,
            apology: texts.apology.clone(),
            state_dir,
            handled: Default::default(),
            voice,
        }),
        // Without a key the problem is noted already; else the URL is bad.
        Err(error) => {
            if let Some(url) = env.text("ANYREPLY_URL") {
                env.invalid("ANYREPLY_URL", &url, &error.to_string(), DEFAULT_BASE_URL);
            }
            None
        }
    }
}

/// `ANYREPLY_BRIDGE_STATE_DIR`: where a bridge keeps its place in the event stream. Default the
/// working directory, where a bridge run by hand or in a container's volume finds it again.
pub fn state_dir(env: &mut Env) -> PathBuf {
    env.text("ANYREPLY_BRIDGE_STATE_DIR")
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// Checks that AnyReply answers, takes the key and has the assistant, before any customer
/// message depends on it.
pub async fn check_anyreply(bridge: &Bridge) -> anyhow::Result<()> {
    let client = &bridge.client;
    let url = client.base_url();
    match client.me().await {
        Ok(_) => {}
        Err(error) if error.code() == Some(ErrorCode::Unauthorized) => {
            bail!("AnyReply at {url} refused ANYREPLY_API_KEY: it is not a live key of an account")
        }
        Err(error) => bail!("cannot reach AnyReply at {url} (ANYREPLY_URL): {error}"),
    }
    let resource = client.assistants();
    let mut assistants = std::pin::pin!(resource.stream(PageQuery::default()));
    while let Some(assistant) = assistants.next().await {
        let assistant = assistant.with_context(|| format!("listing the assistants at {url}"))?;
        if assistant.id == bridge.assistant_id {
            tracing::info!(%url, assistant = %assistant.name, "AnyReply answers");
            return Ok(());
        }
    }
    bail!(
        "the account of ANYREPLY_API_KEY has no assistant {} (ANYREPLY_ASSISTANT_ID) at {url}",
        bridge.assistant_id
    )
}

/// The texts, each replaceable by its variable.
pub fn texts(env: &mut Env) -> Texts {
    let defaults = Texts::default();
    Texts {
        apology: env
            .text("ANYREPLY_APOLOGY_TEXT")
            .unwrap_or(defaults.apology),
        greeting: env
            .text("ANYREPLY_TELEGRAM_GREETING")
            .unwrap_or(defaults.greeting),
        non_text: env
            .text("ANYREPLY_TELEGRAM_NON_TEXT")
            .unwrap_or(defaults.non_text),
        voice_off: env
            .text("ANYREPLY_VOICE_OFF_TEXT")
            .unwrap_or(defaults.voice_off),
        voice_too_long: env
            .text("ANYREPLY_VOICE_TOO_LONG_TEXT")
            .unwrap_or(defaults.voice_too_long),
        voice_failed: env
            .text("ANYREPLY_VOICE_FAILED_TEXT")
            .unwrap_or(defaults.voice_failed),
    }
}

/// `ANYREPLY_BRIDGE_LISTEN`: where `/health`, `/metrics` (and webhooks) are served.
pub fn listen(env: &mut Env) -> SocketAddr {
    env.parsed(
        "ANYREPLY_BRIDGE_LISTEN",
        SocketAddr::from(([127, 0, 0, 1], 8090)),
        "127.0.0.1:8090",
    )
}

/// Listens on `address`; a port in use names its setting.
pub async fn bind(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await.with_context(|| {
        format!(
            "cannot listen on {address} (ANYREPLY_BRIDGE_LISTEN); set ANYREPLY_BRIDGE_LISTEN to a free address, for example ANYREPLY_BRIDGE_LISTEN=127.0.0.1:8091"
        )
    })
}

/// `GET /health` and `GET /metrics`.
pub fn ops_router() -> axum::Router {
    axum::Router::new()
        .route(
            "/health",
            get(|| async { Json::<Value>(json!({ "status": "ok" })) }),
        )
        .merge(crate::metrics::router())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = terminate => {} }
    tracing::info!("shutting down: finishing the messages in flight");
}

/// Serves `router` on `listener`, and follows `bridge`'s operator messages beside it, handing
/// each to `deliver` (its place kept on disk under `name`), until `shutdown`; then finishes the
/// delivery in progress and the replies `in_flight`.
pub async fn serve_following<F, Fut>(
    router: axum::Router,
    bridge: &Bridge,
    name: &str,
    deliver: F,
    in_flight: &Queues,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    F: Fn(anyreply_client::Event) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Delivery> + Send + 'static,
{
    let cursor = EventCursor::new(&bridge.state_dir, name, bridge.assistant_id);
    let last_handled = cursor.load().await?;
    let stop_following = CancellationToken::new();
    let _follower_stops_with_us = stop_following.clone().drop_guard();
    let follower = tokio::spawn(operator::follow(
        bridge.clone(),
        cursor,
        last_handled,
        stop_following.clone(),
        deliver,
    ));
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop_following.cancel();
        })
        .await?;
    follower.await?;
    in_flight.finish().await;
    Ok(())
}
