//! `anyreply-whatsapp`: an AnyReply assistant on WhatsApp through Meta's Cloud API.
//! Configured by environment variables; see the README.

use std::process::ExitCode;

use anyreply_connectors::{service, whatsapp};
use anyreply_core::env::Env;

#[tokio::main]
async fn main() -> ExitCode {
    service::init_logging();
    service::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let mut env = Env::from_process();
    let texts = service::texts(&mut env);
    let settings = whatsapp::WhatsappSettings::read(&mut env);
    let bridge = service::bridge(&mut env, &texts);
    let listen = service::listen(&mut env);
    service::finish(env, "anyreply-whatsapp")?;
    let bridge = bridge.expect("finish() refuses settings without a bridge");
    service::check_anyreply(&bridge).await?;
    let listener = service::bind(listen).await?;
    whatsapp::run(settings, bridge, listener, service::shutdown_signal()).await
}
