//! `anyreply-email`: an AnyReply assistant answering mail, read by IMAP (or posted by the mail
//! provider) and sent by SMTP (or the host's sendmail). Configured by environment variables;
//! see the README.

use std::process::ExitCode;

use anyreply_connectors::{email, service};

#[tokio::main]
async fn main() -> ExitCode {
    service::main::<email::Email>().await
}
