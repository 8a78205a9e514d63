//! `anyreply-twilio`: an AnyReply assistant on SMS through Twilio. Configured by environment
//! variables; see the README.

use anyreply_connectors::{service, twilio};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_logging();
    let texts = service::texts_from_env();
    let settings = twilio::TwilioSettings::from_env()?;
    let bridge = service::bridge_from_env(&texts)?;
    let listener = tokio::net::TcpListener::bind(service::listen_from_env()?).await?;
    twilio::run(settings, bridge, listener, service::shutdown_signal()).await
}
