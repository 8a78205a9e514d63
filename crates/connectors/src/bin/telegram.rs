//! `anyreply-telegram`: an AnyReply assistant on Telegram. Configured by environment variables;
//! see the README.

use std::process::ExitCode;

use anyreply_connectors::{service, telegram};

#[tokio::main]
async fn main() -> ExitCode {
    service::main::<telegram::Telegram>().await
}
