//! `anyreply-messenger`: an AnyReply assistant on Facebook Messenger and Instagram Direct
//! through Meta's Messenger Platform. Configured by environment variables; see the README.

use std::process::ExitCode;

use anyreply_connectors::{messenger, service};

#[tokio::main]
async fn main() -> ExitCode {
    service::main::<messenger::Messenger>().await
}
