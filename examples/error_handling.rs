//! Reacting to each kind of failure by its `ErrorCode`, as an integration should.
//!
//! ```sh
//! ANYREPLY_URL=http://127.0.0.1:8080 ANYREPLY_API_KEY=ark_... ANYREPLY_ASSISTANT_ID=1 \
//!   cargo run -p anyreply-client --example error_handling
//! ```
//!
//! Retryable failures (rate limits, model outages, lost connections) were already retried by
//! the client's `RetryPolicy` before any of these arms runs.

use std::process::ExitCode;

use anyreply_client::{Client, Error, ErrorCode, GenerateReplyRequest};

/// What the integration does with a customer's message after a failed call.
#[derive(Debug)]
enum Next {
    SendReply(String),
    StaySilent,
    ApologiseAndAlertOperator(String),
    FixTheIntegration(String),
    TryLater,
}

async fn answer(client: &Client, request: &GenerateReplyRequest) -> Next {
    match client.generate_reply(request).await {
        Ok(reply) if reply.ai_disabled => Next::StaySilent,
        Ok(reply) => Next::SendReply(reply.reply),
        Err(error) => match error.code() {
            Some(ErrorCode::InsufficientBalance) => {
                Next::ApologiseAndAlertOperator("top up the AnyReply balance".into())
            }
            Some(ErrorCode::AssistantNotFound | ErrorCode::Unauthorized) => {
                Next::FixTheIntegration(format!("check the assistant id and API key: {error}"))
            }
            Some(ErrorCode::ValidationError) => {
                let fields = error
                    .api()
                    .map(|api| format!("{:?}", api.field_errors))
                    .unwrap_or_default();
                Next::FixTheIntegration(format!("the request was invalid: {fields}"))
            }
            Some(
                ErrorCode::RateLimited
                | ErrorCode::ConversationBusy
                | ErrorCode::LlmUnavailable
                | ErrorCode::ServiceUnavailable,
            ) => Next::TryLater,
            _ => match &error {
                Error::Transport(transport) if transport.may_have_reached_server() => {
                    // Retrying with the same idempotency key later is safe: it answers once.
                    Next::TryLater
                }
                _ => Next::ApologiseAndAlertOperator(error.to_string()),
            },
        },
    }
}

mod common;

fn main() -> ExitCode {
    common::run(run())
}

async fn run() -> anyhow::Result<()> {
    let (client, assistant_id) = common::settings()?;
    let request = GenerateReplyRequest {
        assistant_id,
        customer_identifier: "example-customer".into(),
        message: "Hello!".into(),
        variables: None,
    };
    match answer(&client, &request).await {
        Next::SendReply(reply) => eprintln!("send to the customer: {reply}"),
        Next::StaySilent => eprintln!("a human is answering; send nothing"),
        Next::ApologiseAndAlertOperator(why) => {
            eprintln!("apologise to the customer; alert the operator: {why}")
        }
        Next::FixTheIntegration(why) => eprintln!("fix the integration: {why}"),
        Next::TryLater => eprintln!("try again later with the same idempotency key"),
    }
    Ok(())
}
