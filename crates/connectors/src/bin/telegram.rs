//! `anyreply-telegram`: an AnyReply assistant on Telegram. Configured by environment variables;
//! see the README.

use anyreply_connectors::{service, telegram};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_logging();
    let texts = service::texts_from_env();
    let settings = telegram::TelegramSettings::from_env(texts.clone())?;
    let bridge = service::bridge_from_env(&texts)?;
    let listener = tokio::net::TcpListener::bind(service::listen_from_env()?).await?;
    telegram::run(settings, bridge, listener, service::shutdown_signal()).await
}
