//! A small CRM webhook receiver: the CRM POSTs each inbound customer message here, and the
//! answer holds the AI's reply for the CRM to send on.
//!
//! ```sh
//! ANYREPLY_URL=http://127.0.0.1:8080 ANYREPLY_API_KEY=ark_... ANYREPLY_ASSISTANT_ID=1 \
//!   cargo run -p anyreply-client --example crm_webhook
//! curl -s localhost:3000/webhook -H 'Content-Type: application/json' \
//!   -d '{"contact_id":"crm-481","message_id":"msg-9001","text":"Can I move my appointment?","contact_name":"John"}'
//! ```
//!
//! The CRM's message id is the idempotency key, so a webhook the CRM delivers twice is answered
//! (and charged) once.

use std::process::ExitCode;

use anyreply_client::{Client, ErrorCode, GenerateReplyRequest, RequestOptions, Variables};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// What the CRM sends.
#[derive(Debug, Deserialize)]
struct InboundMessage {
    contact_id: String,
    message_id: String,
    text: String,
    contact_name: Option<String>,
}

#[derive(Clone)]
struct Bridge {
    client: Client,
    assistant_id: i64,
}

async fn receive(
    State(bridge): State<Bridge>,
    Json(inbound): Json<InboundMessage>,
) -> (StatusCode, Json<Value>) {
    let mut variables = Variables::new();
    if let Some(name) = inbound.contact_name {
        variables.insert("name".into(), Value::String(name));
    }
    let request = GenerateReplyRequest {
        assistant_id: bridge.assistant_id,
        customer_identifier: format!("crm:{}", inbound.contact_id),
        message: inbound.text,
        variables: Some(variables),
    };
    let options = RequestOptions::idempotency_key(format!("crm:{}", inbound.message_id));
    match bridge.client.generate_reply_with(&request, options).await {
        Ok(reply) if reply.ai_disabled => (
            StatusCode::OK,
            Json(json!({ "reply": null, "handled_by": "human" })),
        ),
        Ok(reply) => (StatusCode::OK, Json(json!({ "reply": reply.reply }))),
        Err(error) => {
            tracing::error!(%error, "no AI reply");
            let status = match error.code() {
                Some(ErrorCode::InsufficientBalance | ErrorCode::AssistantNotFound) => {
                    StatusCode::OK
                }
                _ => StatusCode::SERVICE_UNAVAILABLE, // the CRM will redeliver; the key keeps it single
            };
            (
                status,
                Json(json!({ "reply": "Sorry, we will get back to you shortly." })),
            )
        }
    }
}

mod common;

fn main() -> ExitCode {
    common::run(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt().init();
    let (client, assistant_id) = common::settings()?;
    let bridge = Bridge {
        client,
        assistant_id,
    };
    let app = Router::new()
        .route("/webhook", post(receive))
        .with_state(bridge);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    tracing::info!("listening on http://127.0.0.1:3000/webhook");
    axum::serve(listener, app).await?;
    Ok(())
}
