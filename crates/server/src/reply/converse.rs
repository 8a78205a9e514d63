//! The conversation with the model: ask; while it asks for tools (within the round and call
//! caps), call them and ask again with their results. Every tool call is journaled before it
//! is made and its result after, so a retry of the request never calls a tool twice.
//!
//! Streamed, every round's text goes to the caller as the model writes it. Text shown before
//! a round's tool calls cannot be taken back, so the reply is everything shown, each round's
//! text a paragraph of its own.

use std::time::Instant;

use anyreply_core::wire::{FunctionCall, KnowledgeMode};
use futures::future::join_all;
use serde_json::Value;

use super::error::{ReplyError, ReplyResult};
use super::{Conversed, Prepared, Turn, strip_nul};
use crate::app::App;
use crate::idempotency::KeyText;
use crate::knowledge::retrieve;
use crate::llm::{
    Completion, FunctionSpec, LlmError, Output, PromptMessage, TextStream, TokenUsage,
};
use crate::models::tool::ToolRow;
use crate::models::tool_call::{self, ToolCallRow};
use crate::telemetry::metrics::{self, Phase, ToolCallOutcome};
use crate::tools::{self as tool_calls, ToolOutcome};

pub async fn converse(
    app: &App,
    turn: &Turn,
    prepared: Prepared,
    stream: Option<&TextStream>,
) -> ReplyResult<Conversed> {
    let settings = &app.settings;
    let assistant = &turn.assistant;
    let Prepared {
        mut messages,
        tools,
    } = prepared;
    let mut functions: Vec<FunctionSpec> = tools.iter().map(tool_calls::function_spec).collect();
    let search_base = match assistant.knowledge() {
        Some((id, KnowledgeMode::FunctionCall)) => {
            functions.push(retrieve::search_spec());
            Some(id)
        }
        _ => None,
    };
    let mut knowledge = Vec::new();
    let mut journal = if tools.is_empty() {
        Journal::default()
    } else {
        Journal::load(app, turn).await?
    };
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
            stream,
        };
        let asked = Instant::now();
        let answered = app
            .llm
            .complete(primary, assistant.fallback(), completion)
            .await;
        metrics::phase(Phase::Model, asked.elapsed());
        let (answer, (provider, model)) = answered.map_err(ReplyError::Model)?;
        // No reply is free: without the provider's counts, its tokens are estimated.
        let call_usage = answer.usage.unwrap_or_else(|| {
            tracing::debug!(
                model,
                "the model reported no token usage; charging an estimate"
            );
            TokenUsage::estimate(&completion, &answer.output)
        });
        let call_cost = settings.pricing.tokens_cost(model, call_usage);
        metrics::model_call(provider, model, call_usage, call_cost);
        usage.add(call_usage);
        cost = cost.saturating_add(call_cost);
        let (text, mut calls) = match answer.output {
            Output::Text(text) => {
                return Ok(Conversed {
                    text: what_was_shown(stream).unwrap_or(text),
                    function_calls,
                    cost,
                    usage,
                    model: model.to_owned(),
                    knowledge,
                });
            }
            Output::ToolCalls { text, calls } => (text, calls),
        };
        if !may_call {
            // Told to answer in words, the model asked for tools anyway.
            let text = text.ok_or_else(|| {
                ReplyError::Model(LlmError::Failed("tool call past the cap".into()))
            })?;
            return Ok(Conversed {
                text: what_was_shown(stream).unwrap_or(text),
                function_calls,
                cost,
                usage,
                model: model.to_owned(),
                knowledge,
            });
        }
        if let Some(stream) = stream {
            stream.end_round();
        }
        for call in &mut calls {
            strip_nul(&mut call.arguments);
        }
        let room = settings.tool_max_calls as usize - function_calls.len();
        // Earlier attempts' calls are matched first, so each is reused at most once.
        let reused: Vec<Option<ToolOutcome>> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                (i < room)
                    .then(|| journal.reuse(&call.name, &call.arguments))
                    .flatten()
            })
            .collect();
        let outcomes = join_all(
            calls
                .iter()
                .zip(reused)
                .enumerate()
                .map(|(i, (call, reused))| {
                    let tool = tools.iter().find(|t| t.name == call.name);
                    let journal = &journal;
                    let searched = search_base.filter(|_| call.name == retrieve::SEARCH_TOOL);
                    async move {
                        match (tool, reused, searched) {
                            _ if i >= room => {
                                metrics::tool_call(ToolCallOutcome::Refused);
                                Ok((
                                    ToolOutcome::error(
                                        "call_limit",
                                        "too many tool calls for one reply",
                                    ),
                                    Vec::new(),
                                ))
                            }
                            // A read, not journaled: a retry may search again.
                            (_, _, Some(base)) => {
                                let (result, is_error, found) = retrieve::run_search(
                                    &app.pool,
                                    &app.embeddings,
                                    base,
                                    &call.arguments,
                                )
                                .await;
                                metrics::tool_call(ToolCallOutcome::Ok);
                                Ok((ToolOutcome { result, is_error }, found))
                            }
                            (_, Some(reused), None) => {
                                metrics::tool_call(ToolCallOutcome::Reused);
                                Ok((reused, Vec::new()))
                            }
                            (None, None, None) => {
                                metrics::tool_call(ToolCallOutcome::Refused);
                                Ok((
                                    ToolOutcome::error(
                                        "unknown_function",
                                        format!("there is no function {}", call.name),
                                    ),
                                    Vec::new(),
                                ))
                            }
                            (Some(tool), None, None) => journal
                                .call(app, turn, tool, &call.arguments)
                                .await
                                .map(|outcome| (outcome, Vec::new())),
                        }
                    }
                }),
        )
        .await;
        let outcomes = outcomes.into_iter().collect::<ReplyResult<Vec<_>>>()?;
        messages.push(PromptMessage::ToolCalls {
            text,
            calls: calls.clone(),
        });
        for (call, (outcome, found)) in calls.into_iter().zip(outcomes) {
            knowledge.extend(found);
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

/// The text a streamed reply has shown, which is then the reply.
fn what_was_shown(stream: Option<&TextStream>) -> Option<String> {
    stream
        .map(TextStream::shown)
        .filter(|text| !text.is_empty())
}

/// The tool calls of earlier attempts of this request (same idempotency key), not yet reused.
#[derive(Debug, Default)]
struct Journal {
    earlier: Vec<ToolCallRow>,
}

impl Journal {
    async fn load(app: &App, turn: &Turn) -> ReplyResult<Self> {
        let Some(key) = &turn.idempotency_key else {
            return Ok(Self::default());
        };
        let mut conn = app.db().await?;
        let earlier = tool_call::of_request(&mut conn, turn.account_id, key.as_str()).await?;
        Ok(Self { earlier })
    }

    /// The outcome of an earlier attempt's identical call, if there was one: its result, or,
    /// when the attempt died before recording it, a result saying that nobody knows.
    fn reuse(&mut self, name: &str, arguments: &Value) -> Option<ToolOutcome> {
        let index = self
            .earlier
            .iter()
            .position(|row| row.name == name && &row.arguments == arguments)?;
        let row = self.earlier.remove(index);
        Some(match row.result {
            Some(result) => ToolOutcome {
                result,
                is_error: row.is_error.unwrap_or(false),
            },
            None => ToolOutcome::error(
                "outcome_unknown",
                "An earlier attempt of this request made this exact call and was interrupted \
                 before its result arrived: it may or may not have taken effect. It was not \
                 made again.",
            ),
        })
    }

    /// Journals the call, makes it, and records its result. A call that cannot be journaled
    /// is not made, nor one of a turn this attempt no longer holds (its lease ran out: a retry
    /// may have taken over); a result that cannot be recorded fails the reply (a retry is then
    /// told the call's outcome is unknown).
    async fn call(
        &self,
        app: &App,
        turn: &Turn,
        tool: &ToolRow,
        arguments: &Value,
    ) -> ReplyResult<ToolOutcome> {
        let id = {
            let mut conn = app.db().await?;
            tool_call::begin(
                &mut conn,
                turn.account_id,
                turn.idempotency_key.as_ref().map(KeyText::as_str),
                turn.message_id,
                &tool.name,
                arguments,
            )
            .await?
            // A retry took the turn over (or is about to): the call is its to make.
            .ok_or(ReplyError::Superseded)?
        };
        let called = Instant::now();
        let mut outcome = app.tools.call(tool, arguments).await;
        metrics::phase(Phase::Tool, called.elapsed());
        metrics::tool_call(if outcome.is_error {
            ToolCallOutcome::Error
        } else {
            ToolCallOutcome::Ok
        });
        strip_nul(&mut outcome.result);
        let mut conn = app.db().await?;
        tool_call::finish(&mut conn, id, &outcome.result, outcome.is_error).await?;
        Ok(outcome)
    }
}
