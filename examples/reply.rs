//! One customer message in, the assistant's reply out.
//!
//! Run against a server (see the README's "Run it"), with an account's key and an assistant's id:
//!
//! ```sh
//! ANYREPLY_URL=http://127.0.0.1:8080 ANYREPLY_API_KEY=ark_... ANYREPLY_ASSISTANT_ID=1 \
//!   cargo run -p anyreply-client --example reply -- "+49155551234" "Is my order on its way?"
//! ```

use std::process::ExitCode;

use anyhow::Context;
use anyreply_client::GenerateReplyRequest;

mod common;

fn main() -> ExitCode {
    common::run(run())
}

async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let customer = args.next().unwrap_or_else(|| "+49155551234".to_owned());
    let message = args.next().unwrap_or_else(|| "Hello!".to_owned());

    let (client, assistant_id) = common::settings()?;
    let request = GenerateReplyRequest {
        assistant_id,
        customer_identifier: customer,
        message,
        variables: None,
    };
    let reply = client
        .generate_reply(&request)
        .await
        .with_context(|| format!("asking AnyReply at {} (ANYREPLY_URL)", client.base_url()))?;
    if reply.ai_disabled {
        eprintln!("A human has taken this conversation over; the message was stored.");
    } else {
        #[allow(clippy::print_stdout)]
        {
            println!("{}", reply.reply);
        }
    }
    Ok(())
}
