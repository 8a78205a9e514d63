//! One customer message in, the assistant's reply out.
//!
//! Run against a server (see the README), with an account's key and an assistant's id:
//!
//! ```sh
//! ANYREPLY_URL=http://127.0.0.1:8080 ANYREPLY_API_KEY=ark_... ANYREPLY_ASSISTANT_ID=1 \
//!   cargo run -p anyreply-client --example reply -- "+49155551234" "Is my order on its way?"
//! ```

use std::process::ExitCode;

use anyreply_client::{Client, GenerateReplyRequest};
use anyreply_core::env::Env;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            for line in format!("{error:#}").lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `ANYREPLY_URL`, `ANYREPLY_API_KEY` and `ANYREPLY_ASSISTANT_ID`, every missing one named.
fn settings() -> anyhow::Result<(Client, i64)> {
    let mut env = Env::from_process();
    let client = Client::builder().from_env(&mut env);
    let assistant_id = env.required_parsed("ANYREPLY_ASSISTANT_ID", "1");
    env.finish(&[])?;
    Ok((client.build()?, assistant_id.unwrap_or_default()))
}

async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let customer = args.next().unwrap_or_else(|| "+49155551234".to_owned());
    let message = args.next().unwrap_or_else(|| "Hello!".to_owned());

    let (client, assistant_id) = settings()?;
    let request = GenerateReplyRequest {
        assistant_id,
        customer_identifier: customer,
        message,
        variables: None,
    };
    let reply = client.generate_reply(&request).await?;
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
