//! The heart of generate-reply: admit the customer's message, wait for the conversation's
//! turn, build the prompt, converse with the model (calling tools when it asks), then record
//! and charge the reply.

pub mod pricing;
pub mod prompt;
pub mod turns;

use anyreply_core::wire::{FunctionCall, GenerateReplyRequest, GenerateReplyResponse};
use anyreply_core::{ErrorCode, Money};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures::future::join_all;

use crate::app::App;
use crate::config::Settings;
use crate::error::{ApiError, ApiResult};
use crate::idempotency::Claim;
use crate::llm::{Completion, FunctionSpec, LlmError, Output, PromptMessage};
use crate::models::assistant::AssistantRow;
use crate::models::message;
use crate::models::tool::{self, ToolRow};
use crate::schema::conversations;
use crate::tools::{self as tool_calls, ToolOutcome};
use pricing::TokenUsage;
use prompt::{HistoryWalk, PromptBudget, merge_variables, render};
use turns::{Reply, Turn};

/// History rows read per query while filling the prompt budget.
const HISTORY_PAGE: usize = 64;

/// Answers one customer message, under the request's idempotency `claim` if it has one,
/// settling the claim if the answer is an error. Run it on a task of its own (the handler
/// does), so that a client hanging up cannot stop it half-way.
pub async fn generate_reply(
    app: &App,
    account_id: i64,
    request: GenerateReplyRequest,
    claim: Option<Claim>,
) -> ApiResult<GenerateReplyResponse> {
    let result = answer(app, account_id, &request, claim.as_ref()).await;
    if let (Err(error), Some(claim)) = (&result, &claim) {
        claim.fail(app, error).await;
    }
    result
}

async fn answer(
    app: &App,
    account_id: i64,
    request: &GenerateReplyRequest,
    claim: Option<&Claim>,
) -> ApiResult<GenerateReplyResponse> {
    let admission = turns::admit(app, account_id, request, claim).await?;
    let (reply, function_calls, ai_disabled) = match admission.turn {
        Some(turn) => {
            let conversed = produce(app, turn, claim).await?;
            (conversed.text, conversed.function_calls, false)
        }
        None => (String::new(), Vec::new(), true),
    };
    Ok(GenerateReplyResponse {
        success: true,
        conversation_id: admission.conversation_id,
        customer_identifier: request.customer_identifier.clone(),
        reply,
        function_calls,
        ai_disabled,
    })
}

/// The most model calls one reply may make, and the most prompt tokens each may carry.
fn worst_case(settings: &Settings, assistant: &AssistantRow) -> (u32, TokenUsage) {
    let output = settings.llm_max_output_tokens;
    if assistant.tool_ids.is_empty() {
        return (
            1,
            TokenUsage {
                prompt_tokens: settings.context_token_budget,
                completion_tokens: output,
            },
        );
    }
    let rounds = settings.tool_max_rounds;
    let result_tokens = (tool_calls::MAX_RESULT_CHARS as u32).div_ceil(4) + 50;
    let prompt = settings
        .context_token_budget
        .saturating_add(settings.tool_max_calls.saturating_mul(result_tokens))
        .saturating_add(rounds.saturating_mul(output));
    (
        rounds + 1,
        TokenUsage {
            prompt_tokens: prompt,
            completion_tokens: output,
        },
    )
}

/// What is reserved from the balance before a reply is produced.
pub fn reservation(settings: &Settings, assistant: &AssistantRow) -> Money {
    let (calls, usage) = worst_case(settings, assistant);
    let mut models = vec![assistant.llm_model.as_str()];
    models.extend(assistant.fallback().map(|(_, model)| model));
    settings.pricing.hold(&models, calls, usage)
}

/// A finished conversation with the model.
#[derive(Debug)]
struct Conversed {
    text: String,
    function_calls: Vec<FunctionCall>,
    cost: Money,
    usage: TokenUsage,
}

impl Conversed {
    /// PostgreSQL's text and JSONB cannot hold NUL characters, which models and tool endpoints
    /// can produce; they are dropped before anything is stored or answered.
    fn without_nul(mut self) -> Self {
        self.text = self.text.replace('\0', "");
        for call in &mut self.function_calls {
            strip_nul(&mut call.arguments);
            strip_nul(&mut call.result);
        }
        self
    }
}

fn strip_nul(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(text) if text.contains('\0') => *text = text.replace('\0', ""),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(fields) => {
            *fields = std::mem::take(fields)
                .into_iter()
                .map(|(key, mut value)| {
                    strip_nul(&mut value);
                    (key.replace('\0', ""), value)
                })
                .collect();
        }
        _ => {}
    }
}

async fn produce(app: &App, turn: Turn, claim: Option<&Claim>) -> ApiResult<Conversed> {
    let conversed = tokio::select! {
        conversed = async {
            turns::wait_for_turn(app, &turn).await?;
            converse(app, &turn).await
        } => conversed,
        never = turns::hold_lease(app, &turn, claim) => match never {},
    };
    let conversed = conversed.map(Conversed::without_nul);
    let conversed = match conversed {
        Ok(conversed) => conversed,
        Err(error) => {
            if let Err(release_error) = turns::abandon(app, &turn).await {
                tracing::error!(?release_error.code, "could not release a failed turn; its lease will expire");
            }
            return Err(error);
        }
    };
    let reply = Reply {
        text: &conversed.text,
        function_calls: &conversed.function_calls,
        cost: conversed.cost,
        usage: conversed.usage,
    };
    if let Err(error) = turns::settle(app, &turn, &reply, claim).await {
        // Nothing was recorded: give the turn up now rather than when its lease runs out.
        if let Err(release_error) = turns::abandon(app, &turn).await {
            tracing::error!(?release_error.code, "could not release an unrecorded turn; its lease will expire");
        }
        return Err(error);
    }
    Ok(conversed)
}

/// Builds the prompt and the function list (connection returned before the model is asked).
async fn prepare(app: &App, turn: &Turn) -> ApiResult<(Vec<PromptMessage>, Vec<ToolRow>)> {
    let mut conn = app.db().await?;
    let own_variables: serde_json::Value = conversations::table
        .find(turn.conversation_id)
        .select(conversations::variables)
        .get_result(&mut conn)
        .await?;
    let assistant = &turn.assistant;
    // The conversation's variables as of the earlier replies, then this message's own.
    let mut variables = merge_variables(&assistant.variables, &own_variables);
    variables.extend(turn.variables.as_object().cloned().unwrap_or_default());
    let mut prompt = PromptBudget::new(
        render(&assistant.system_prompt, &variables),
        assistant
            .initial_message
            .as_deref()
            .map(|greeting| render(greeting, &variables)),
        turn.message.clone(),
        app.settings.context_token_budget,
    );
    let mut walk = HistoryWalk::new(turn.message_id, HISTORY_PAGE);
    while let Some(before) = walk.next_page() {
        let page =
            message::newest_before(&mut conn, turn.conversation_id, before, HISTORY_PAGE as i64)
                .await?;
        walk.offer(&mut prompt, page);
    }
    let tools = if assistant.tool_ids.is_empty() {
        Vec::new()
    } else {
        tool::find_many(&mut conn, assistant.account_id, &assistant.tool_ids).await?
    };
    Ok((prompt.into_messages(), tools))
}

/// Asks the model; while it asks for tools (within the round and call caps), calls them and
/// asks again with their results.
async fn converse(app: &App, turn: &Turn) -> ApiResult<Conversed> {
    let settings = &app.settings;
    let assistant = &turn.assistant;
    let (mut messages, tools) = prepare(app, turn).await?;
    let functions: Vec<FunctionSpec> = tools.iter().map(tool_calls::function_spec).collect();
    let primary = (assistant.provider(), assistant.llm_model.as_str());
    let mut function_calls = Vec::new();
    let mut usage = TokenUsage::default();
    let mut cost = settings.pricing.per_reply;
    for round in 0.. {
        let may_call = !functions.is_empty()
            && round < settings.tool_max_rounds
            && function_calls.len() < settings.tool_max_calls as usize;
        let completion = Completion {
            model: primary.1,
            temperature: assistant.llm_temperature,
            max_output_tokens: settings.llm_max_output_tokens,
            messages: &messages,
            functions: &functions,
            may_call_functions: may_call,
        };
        let (answer, model) = app
            .llm
            .complete(primary, assistant.fallback(), completion)
            .await
            .map_err(|error| {
                let mut error = model_error(error);
                error.after_side_effects = !function_calls.is_empty();
                error
            })?;
        usage.add(answer.usage);
        cost = cost.saturating_add(settings.pricing.tokens_cost(model, answer.usage));
        let (text, calls) = match answer.output {
            Output::Text(text) => {
                return Ok(Conversed {
                    text,
                    function_calls,
                    cost,
                    usage,
                });
            }
            Output::ToolCalls { text, calls } => (text, calls),
        };
        if !may_call {
            // Told to answer in words, the model asked for tools anyway.
            let text =
                text.ok_or_else(|| model_error(LlmError::Failed("tool call past the cap".into())))?;
            return Ok(Conversed {
                text,
                function_calls,
                cost,
                usage,
            });
        }
        let room = settings.tool_max_calls as usize - function_calls.len();
        let outcomes = join_all(calls.iter().enumerate().map(|(i, call)| {
            let tool = tools.iter().find(|t| t.name == call.name);
            async move {
                match tool {
                    _ if i >= room => {
                        ToolOutcome::error("call_limit", "too many tool calls for one reply")
                    }
                    None => ToolOutcome::error(
                        "unknown_function",
                        format!("there is no function {}", call.name),
                    ),
                    Some(tool) => app.tools.call(tool, &call.arguments).await,
                }
            }
        }))
        .await;
        messages.push(PromptMessage::ToolCalls {
            text,
            calls: calls.clone(),
        });
        for (call, outcome) in calls.into_iter().zip(outcomes) {
            messages.push(PromptMessage::ToolResult {
                call_id: call.id,
                content: outcome.result.to_string(),
                is_error: outcome.is_error,
            });
            function_calls.push(FunctionCall {
                name: call.name,
                arguments: call.arguments,
                result: outcome.result,
            });
        }
    }
    unreachable!("the loop returns once tools may no longer be called")
}

fn model_error(error: LlmError) -> ApiError {
    let code = match error {
        LlmError::Unavailable(_) => ErrorCode::LlmUnavailable,
        LlmError::Failed(_) => ErrorCode::LlmError,
    };
    ApiError::internal(code, "the model gave no answer", &error)
}
