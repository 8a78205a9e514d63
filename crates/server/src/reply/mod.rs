//! The heart of generate-reply: admit the customer's message, wait for the conversation's
//! turn, build the prompt, ask the model, record and charge the reply.

pub mod pricing;
pub mod prompt;
pub mod turns;

use anyreply_core::ErrorCode;
use anyreply_core::wire::{GenerateReplyRequest, GenerateReplyResponse};

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::llm::{Answer, Completion, LlmError, PromptRole};
use crate::models::message;
use crate::schema::conversations;
use prompt::{PromptBudget, merge_variables, render};
use turns::{Reply, Turn};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// History rows read per query while filling the prompt budget.
const HISTORY_PAGE: i64 = 64;

/// Answers one customer message.
pub async fn generate_reply(
    app: &App,
    account_id: i64,
    request: GenerateReplyRequest,
) -> ApiResult<GenerateReplyResponse> {
    let admission = turns::admit(app, account_id, &request).await?;
    let reply = match admission.turn {
        None => None,
        // Finished on its own task, so a client that hangs up cannot strand a paid reply
        // half-way: the reply is recorded and shows in the history.
        Some(turn) => {
            let app = app.clone();
            let task = tokio::spawn(async move { produce(&app, turn).await });
            Some(task.await.map_err(|e| {
                ApiError::internal(ErrorCode::InternalError, "reply task failed", &e)
            })??)
        }
    };
    Ok(GenerateReplyResponse {
        success: true,
        conversation_id: admission.conversation_id,
        customer_identifier: request.customer_identifier,
        ai_disabled: reply.is_none(),
        reply: reply.unwrap_or_default(),
        function_calls: Vec::new(),
    })
}

async fn produce(app: &App, turn: Turn) -> ApiResult<String> {
    turns::wait_for_turn(app, &turn).await?;
    let answer = match ask_model(app, &turn).await {
        Ok(answer) => answer,
        Err(error) => {
            if let Err(release_error) = turns::abandon(app, &turn).await {
                tracing::error!(
                    ?release_error,
                    "could not release a failed turn; its lease will expire"
                );
            }
            return Err(error);
        }
    };
    let assistant = &turn.assistant;
    let reply = Reply {
        text: &answer.text,
        cost: app
            .settings
            .pricing
            .cost(&assistant.llm_model, answer.usage),
        prompt_tokens: answer.usage.prompt_tokens,
        completion_tokens: answer.usage.completion_tokens,
    };
    turns::settle(app, &turn, &reply).await?;
    Ok(answer.text)
}

async fn ask_model(app: &App, turn: &Turn) -> ApiResult<Answer> {
    let messages = {
        let mut conn = app.db().await?;
        let own_variables: serde_json::Value = conversations::table
            .find(turn.conversation_id)
            .select(conversations::variables)
            .get_result(&mut conn)
            .await?;
        let assistant = &turn.assistant;
        let variables = merge_variables(&assistant.variables, &own_variables);
        let mut prompt = PromptBudget::new(
            render(&assistant.system_prompt, &variables),
            assistant
                .initial_message
                .as_deref()
                .map(|greeting| render(greeting, &variables)),
            turn.message.clone(),
            app.settings.context_token_budget,
        );
        // Walk back from the newest message, a page at a time, until the budget is spent:
        // a conversation of 10,000 messages reads no more than one of 10 would need.
        let mut before = (turn.message_id, 0);
        'pages: loop {
            let page =
                message::newest_before(&mut conn, turn.conversation_id, before, HISTORY_PAGE)
                    .await?;
            let page_len = page.len();
            for row in page {
                before = (row.turn_id, row.id);
                let role = if row.role == message::ROLE_ASSISTANT {
                    PromptRole::Assistant
                } else {
                    PromptRole::User
                };
                if !prompt.offer(role, &row.content) {
                    break 'pages;
                }
            }
            if page_len < HISTORY_PAGE as usize {
                break;
            }
        }
        prompt.into_messages()
    };
    let assistant = &turn.assistant;
    let completion = Completion {
        model: &assistant.llm_model,
        temperature: assistant.llm_temperature,
        max_output_tokens: app.settings.llm_max_output_tokens,
        messages: &messages,
    };
    app.llm.complete(&completion).await.map_err(|error| {
        let code = match error {
            LlmError::Unavailable(_) => ErrorCode::LlmUnavailable,
            LlmError::Failed(_) => ErrorCode::LlmError,
        };
        ApiError::internal(code, "the model gave no answer", &error)
    })
}
