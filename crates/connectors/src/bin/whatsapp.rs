//! `anyreply-whatsapp`: an AnyReply assistant on WhatsApp through Meta's Cloud API.
//! Configured by environment variables; see the README.

use std::process::ExitCode;

use anyreply_connectors::{service, whatsapp};

#[tokio::main]
async fn main() -> ExitCode {
    service::main::<whatsapp::Whatsapp>().await
}
