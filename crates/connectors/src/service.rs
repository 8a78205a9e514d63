//! What both bridge binaries share: logging, `/health`, shutdown signals, AnyReply settings.

use std::io::IsTerminal;

use anyreply_client::Client;
use axum::Json;
use axum::routing::get;
use serde_json::{Value, json};

use crate::bridge::Bridge;
use crate::settings::{parsed, required, var};
use crate::text::Texts;

/// Logs to stderr; `ANYREPLY_LOG` filters, `ANYREPLY_LOG_FORMAT=json` structures.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ANYREPLY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if var("ANYREPLY_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.init();
    }
}

/// `GET /health`.
pub fn health_router() -> axum::Router {
    axum::Router::new().route(
        "/health",
        get(|| async { Json::<Value>(json!({ "status": "ok" })) }),
    )
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

/// The AnyReply side, from `ANYREPLY_URL`, `ANYREPLY_API_KEY`, `ANYREPLY_ASSISTANT_ID` and the
/// texts' variables.
pub fn bridge_from_env(texts: &Texts) -> anyhow::Result<Bridge> {
    let client = Client::builder()
        .base_url(var("ANYREPLY_URL").unwrap_or_else(|| "http://127.0.0.1:8080".to_owned()))
        .api_key(required("ANYREPLY_API_KEY")?)
        .user_agent(concat!("anyreply-connectors/", env!("CARGO_PKG_VERSION")))
        .build()?;
    Ok(Bridge {
        client,
        assistant_id: required("ANYREPLY_ASSISTANT_ID")?.parse()?,
        apology: texts.apology.clone(),
    })
}

/// The texts, each replaceable by its variable.
pub fn texts_from_env() -> Texts {
    let defaults = Texts::default();
    Texts {
        apology: var("ANYREPLY_APOLOGY_TEXT").unwrap_or(defaults.apology),
        greeting: var("ANYREPLY_TELEGRAM_GREETING").unwrap_or(defaults.greeting),
        non_text: var("ANYREPLY_TELEGRAM_NON_TEXT").unwrap_or(defaults.non_text),
    }
}

/// `ANYREPLY_BRIDGE_LISTEN`: where `/health` (and webhooks) are served.
pub fn listen_from_env() -> anyhow::Result<std::net::SocketAddr> {
    parsed(
        "ANYREPLY_BRIDGE_LISTEN",
        std::net::SocketAddr::from(([127, 0, 0, 1], 8090)),
    )
}
