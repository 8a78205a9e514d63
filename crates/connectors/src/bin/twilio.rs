//! `anyreply-twilio`: an AnyReply assistant on SMS through Twilio. Configured by environment
//! variables; see the README.

use std::process::ExitCode;

use anyreply_connectors::{service, twilio};

#[tokio::main]
async fn main() -> ExitCode {
    service::main::<twilio::Twilio>().await
}
