//! The conversation with the model: ask; while it asks for tools (within the round and call
//! caps), call them and ask again with their results. Every tool call is journaled before it
//! is made and its result after, so a retry of the request never calls a tool twice.
//!
//! Streamed, every round's text goes to the caller as the model writes it. Text shown before
//! a round's tool calls cannot be taken back, so the reply is everything shown, each round's
//! text a paragraph of its own.

use std::time::Instant;

use anyreply_core::Money;
use anyreply_core::wire::assistants::HANDOFF_TOOL;
use anyreply_core::wire::{FunctionCall, Handoff, KnowledgeMode, PassageRef};
use futures::future::join_all;
use serde_json::Value;

use super::error::{ReplyError, ReplyResult};
use super::{Conversed, Prepared, Turn, handoff, strip_nul};
use crate::app::App;
use crate::idempotency::KeyText;
use crate::knowledge::retrieve;
use crate::llm::{
    Completion, FunctionSpec, LlmError, Output, PromptMessage, TextStream, TokenUsage, ToolCall,
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
    let mut conversation = Conversation::start(app, turn, prepared).await?;
    for round in 0.. {
        let may_call = !conversation.functions.is_empty()
            && round < settings.tool_max_rounds
            && conversation.function_calls.len() < settings.tool_max_calls as usize;
        let (output, model) = conversation.ask(may_call, stream).await?;
        let (text, mut calls) = match output {
            Output::Text(text) => return Ok(conversation.finish(text, model, stream)),
            Output::ToolCalls { text, calls } => (text, calls),
        };
        // A handoff ends the reply, even past the caps; the round's other calls are not made.
        if let Some(call) = conversation.handoff_call(&mut calls) {
            return Ok(conversation.hand_over(text, call, model, stream));
        }
        if !may_call {
            // Told to answer in words, the model asked for tools anyway.
            let text = text.ok_or_else(|| {
                ReplyError::Model(LlmError::Failed("tool call past the cap".into()))
            })?;
            return Ok(conversation.finish(text, model, stream));
        }
        if let Some(stream) = stream {
            stream.end_round();
        }
        for call in &mut calls {
            strip_nul(&mut call.arguments);
        }
        let outcomes = conversation.call_tools(&calls).await?;
        conversation.record_round(text, calls, outcomes);
    }
    unreachable!("the loop returns once tools may no longer be called")
}

/// One reply's exchange with the model, round by round.
struct Conversation<'a> {
    app: &'a App,
    turn: &'a Turn,
    messages: Vec<PromptMessage>,
    tools: Vec<ToolRow>,
    /// The tools' functions, and `search_knowledge` in `function_call` mode.
    functions: Vec<FunctionSpec>,
    /// The knowledge base `search_knowledge` searches.
    search_base: Option<i64>,
    /// The assistant's handoff, when `transfer_to_human` is offered.
    handoff: Option<Handoff>,
    journal: Journal,
    function_calls: Vec<FunctionCall>,
    knowledge: Vec<PassageRef>,
    usage: TokenUsage,
    cost: Money,
    /// See [`Prepared::forgotten`].
    forgotten: Option<i64>,
}

impl<'a> Conversation<'a> {
    async fn start(app: &'a App, turn: &'a Turn, prepared: Prepared) -> ReplyResult<Self> {
        let Prepared {
            messages,
            tools,
            forgotten,
        } = prepared;
        let handoff = turn.assistant.handoff();
        // The built-in takes its name: a tool of the same name is not offered beside it.
        let mut functions: Vec<FunctionSpec> = tools
            .iter()
            .filter(|t| handoff.is_none() || t.name != HANDOFF_TOOL)
            .map(tool_calls::function_spec)
            .collect();
        if handoff.is_some() {
            functions.push(handoff::spec());
        }
        let search_base = match turn.assistant.knowledge() {
            Some((id, KnowledgeMode::FunctionCall)) => {
                functions.push(retrieve::search_spec());
                Some(id)
            }
            _ => None,
        };
        let journal = if tools.is_empty() {
            Journal::default()
        } else {
            Journal::load(app, turn).await?
        };
        Ok(Conversation {
            app,
            turn,
            messages,
            tools,
            functions,
            search_base,
            handoff,
            journal,
            function_calls: Vec::new(),
            knowledge: Vec::new(),
            usage: TokenUsage::default(),
            cost: app.settings.pricing.per_reply,
            forgotten,
        })
    }

    /// Asks the model (the fallback if the first is down), and counts what it cost: its
    /// answer, and the model that gave it.
    async fn ask(
        &mut self,
        may_call: bool,
        stream: Option<&TextStream>,
    ) -> ReplyResult<(Output, String)> {
        let (settings, assistant) = (&self.app.settings, &self.turn.assistant);
        let primary = (assistant.provider(), assistant.llm_model.as_str());
        let completion = Completion {
            model: primary.1,
            temperature: assistant.llm_temperature,
            max_output_tokens: settings.llm_max_output_tokens,
            messages: &self.messages,
            functions: &self.functions,
            may_call_functions: may_call,
            stream,
            answer_schema: None,
        };
        let asked = Instant::now();
        let answered = self
            .app
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
        self.usage.add(call_usage);
        self.cost = self.cost.saturating_add(call_cost);
        Ok((answer.output, model.to_owned()))
    }

    /// Makes the round's calls at once, past the reply's cap refused; each outcome with the
    /// passages a `search_knowledge` call found.
    async fn call_tools(
        &mut self,
        calls: &[ToolCall],
    ) -> ReplyResult<Vec<(ToolOutcome, Vec<PassageRef>)>> {
        let room = self.app.settings.tool_max_calls as usize - self.function_calls.len();
        // Earlier attempts' calls are matched first, so each is reused at most once.
        let reused: Vec<Option<ToolOutcome>> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                (i < room)
                    .then(|| self.journal.reuse(&call.name, &call.arguments))
                    .flatten()
            })
            .collect();
        let this = &*self;
        let outcomes = join_all(
            calls
                .iter()
                .zip(reused)
                .enumerate()
                .map(|(i, (call, reused))| this.call_one(call, reused, i < room)),
        )
        .await;
        outcomes.into_iter().collect()
    }

    async fn call_one(
        &self,
        call: &ToolCall,
        reused: Option<ToolOutcome>,
        within_cap: bool,
    ) -> ReplyResult<(ToolOutcome, Vec<PassageRef>)> {
        let tool = self.tools.iter().find(|t| t.name == call.name);
        let searched = self
            .search_base
            .filter(|_| call.name == retrieve::SEARCH_TOOL);
        match (tool, reused, searched) {
            _ if !within_cap => {
                metrics::tool_call(ToolCallOutcome::Refused);
                let refused = ToolOutcome::error("call_limit", "too many tool calls for one reply");
                Ok((refused, Vec::new()))
            }
            // A read, not journaled: a retry may search again.
            (_, _, Some(base)) => {
                let (result, is_error, found) = retrieve::run_search(
                    &self.app.pool,
                    &self.app.embeddings,
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
                let unknown = ToolOutcome::error(
                    "unknown_function",
                    format!("there is no function {}", call.name),
                );
                Ok((unknown, Vec::new()))
            }
            (Some(tool), None, None) => self
                .journal
                .call(self.app, self.turn, tool, &call.arguments)
                .await
                .map(|outcome| (outcome, Vec::new())),
        }
    }

    /// The round's calls and their results join the prompt and the reply's function calls.
    fn record_round(
        &mut self,
        text: Option<String>,
        calls: Vec<ToolCall>,
        outcomes: Vec<(ToolOutcome, Vec<PassageRef>)>,
    ) {
        self.messages.push(PromptMessage::ToolCalls {
            text,
            calls: calls.clone(),
        });
        for (call, (outcome, found)) in calls.into_iter().zip(outcomes) {
            self.knowledge.extend(found);
            self.messages.push(PromptMessage::ToolResult {
                call_id: call.id,
                content: outcome.result.to_string(),
                is_error: outcome.is_error,
            });
            self.function_calls.push(FunctionCall {
                name: call.name,
                arguments: call.arguments,
                result: outcome.result,
            });
        }
    }

    /// The reply: the model's last `text`, or, streamed, everything shown.
    fn finish(self, text: String, model: String, stream: Option<&TextStream>) -> Conversed {
        Conversed {
            text: what_was_shown(stream).unwrap_or(text),
            function_calls: self.function_calls,
            cost: self.cost,
            usage: self.usage,
            model,
            knowledge: self.knowledge,
            handoff: None,
            forgotten: self.forgotten,
        }
    }

    /// The round's `transfer_to_human` call, taken out of `calls`, if handoff is on.
    fn handoff_call(&self, calls: &mut Vec<ToolCall>) -> Option<ToolCall> {
        self.handoff.as_ref()?;
        let at = calls.iter().position(|c| c.name == HANDOFF_TOOL)?;
        Some(calls.swap_remove(at))
    }

    /// The reply that hands over: the customer is told so (streamed too, unless the model's
    /// own words, already shown, are what they are told), and the call joins the reply's.
    fn hand_over(
        mut self,
        text: Option<String>,
        call: ToolCall,
        model: String,
        stream: Option<&TextStream>,
    ) -> Conversed {
        let handoff = self.handoff.take().unwrap_or_default();
        let (words, shown) = handoff::words(&handoff, text);
        if let Some(stream) = stream.filter(|_| !shown) {
            stream.end_round();
            stream.push(&words);
        }
        let reason = handoff::reason(&call.arguments);
        self.function_calls.push(FunctionCall {
            name: call.name,
            arguments: call.arguments,
            result: handoff::result(),
        });
        Conversed {
            handoff: Some(reason),
            ..self.finish(words, model, stream)
        }
    }
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
