//! The generate-reply engine. One reply is two write transactions: [`admission`] (claim the
//! idempotency key, store and queue the message, read its prompt, count the rate limit,
//! reserve the money) and [`settlement`] (record the reply, charge it, store the idempotent
//! answer). Between them: the conversation's turn ([`queue`]) and the model and its tools
//! ([`converse`]). Nothing holds a database connection while the model thinks.

pub mod admission;
pub mod converse;
pub mod error;
pub mod handoff;
pub mod memory;
pub mod prompt;
pub mod queue;
pub mod settlement;

use std::time::Instant;

use anyreply_core::Money;
use anyreply_core::wire::{
    FunctionCall, GenerateReplyRequest, GenerateReplyResponse, KnowledgeMode, PassageRef,
};
use uuid::Uuid;

use crate::app::App;
use crate::caller::Caller;
use crate::config::Settings;
use crate::idempotency::{self, Claim, KeyText, RequestKey, StoredAnswer};
use crate::llm::{PromptMessage, TextStream, TokenUsage};
use crate::models::assistant::AssistantRow;
use crate::models::pending_reply;
use crate::models::tool::ToolRow;
use crate::rate_limit::RateLimit;
use crate::telemetry::metrics::{self, Phase};
use crate::tools as tool_calls;
use admission::{Admission, Queued};
pub use error::{ReplyError, ReplyResult};

/// A message queued for its reply.
#[derive(Debug, Clone)]
pub struct Turn {
    pub account_id: i64,
    pub conversation_id: Uuid,
    pub message_id: i64,
    /// The message's place in the history; its reply takes the next.
    pub seq: i64,
    /// What was reserved from the balance for the reply.
    pub hold: Money,
    pub customer_identifier: String,
    pub message: String,
    /// The request's variables, merged into the conversation's when the reply is recorded.
    pub variables: serde_json::Value,
    /// The request's `Idempotency-Key`, under which its tool calls are journaled.
    pub idempotency_key: Option<KeyText>,
    pub assistant: AssistantRow,
    /// When this process admitted the message: its burst-coalescing window starts then.
    pub admitted: tokio::time::Instant,
}

impl Turn {
    /// The assistant's burst-coalescing window, if it has one.
    fn coalescing_window(&self) -> Option<std::time::Duration> {
        u64::try_from(self.assistant.coalesce_ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(std::time::Duration::from_millis)
    }
}

/// What came of a turn.
#[derive(Debug)]
enum Produced {
    Replied(Conversed),
    /// Stored, not answered.
    Unanswered(Unanswered),
}

/// Why a queued message gets no reply of its own.
#[derive(Debug, Clone, Copy)]
enum Unanswered {
    /// A later message of the burst is answered instead.
    Coalesced,
    /// The conversation's AI was turned off while it waited (a handoff before it, or
    /// `disable-ai`).
    AiOff,
}

/// What the model is asked first: the prompt, and the tools it may call.
#[derive(Debug)]
pub struct Prepared {
    pub messages: Vec<PromptMessage>,
    pub tools: Vec<ToolRow>,
    /// The newest place of the history the budget left out (and the summary does not hold).
    pub forgotten: Option<i64>,
}

/// A finished conversation with the model.
#[derive(Debug)]
pub struct Conversed {
    pub text: String,
    pub function_calls: Vec<FunctionCall>,
    pub cost: Money,
    pub usage: TokenUsage,
    /// The model that gave the final answer (the fallback's, if it stood in).
    pub model: String,
    /// The knowledge-base passages it was given, in the prompt or by `search_knowledge`.
    pub knowledge: Vec<PassageRef>,
    /// The model handed the conversation to a person (`transfer_to_human`), for this reason:
    /// settling turns its AI off.
    pub handoff: Option<String>,
    /// The newest place its prompt left out that the summary does not hold: once the reply
    /// is settled, the summary takes it in ([`memory`]).
    pub forgotten: Option<i64>,
}

/// The answer to a generate-reply call.
#[derive(Debug)]
pub enum Answered {
    /// The stored answer of an earlier call with the same idempotency key.
    Replayed(StoredAnswer),
    Fresh {
        response: GenerateReplyResponse,
        rate_limit: RateLimit,
    },
}

/// A failed generate-reply call, with the caller's rate-limit standing once it was counted.
#[derive(Debug)]
pub struct Failed {
    pub error: ReplyError,
    pub rate_limit: Option<RateLimit>,
}

/// Answers one customer message; with a `stream`, the reply's text goes there as the model
/// writes it. Run it on a task of its own (the handler does), so that a client hanging up
/// cannot stop it half-way.
pub async fn generate_reply(
    app: &App,
    caller: Caller,
    request: GenerateReplyRequest,
    key: Option<RequestKey>,
    stream: Option<TextStream>,
) -> Result<Answered, Failed> {
    let admitting = Instant::now();
    let admitted = admission::admit(app, caller, &request, key.as_ref()).await;
    metrics::phase(Phase::Database, admitting.elapsed());
    let admission = match admitted {
        Ok(admission) => admission,
        Err(error) => {
            if let Some(key) = &key {
                let (code, body) = (error.code(), error.body());
                idempotency::store_refusal(&app.pool, caller.account_id, key, code, &body).await;
            }
            return Err(Failed {
                error,
                rate_limit: None,
            });
        }
    };
    let answer =
        |conversation_id, reply, function_calls, ai_disabled, opted_out| GenerateReplyResponse {
            success: true,
            conversation_id,
            customer_identifier: request.customer_identifier.clone(),
            reply,
            function_calls,
            ai_disabled,
            opted_out,
            coalesced: false,
        };
    match admission {
        Admission::Replayed(response) => Ok(Answered::Replayed(response)),
        Admission::Stored {
            conversation_id,
            opted_out,
            rate_limit,
        } => Ok(Answered::Fresh {
            response: answer(conversation_id, String::new(), Vec::new(), true, opted_out),
            rate_limit,
        }),
        Admission::Queued(queued) => {
            let Queued {
                turn,
                prepared,
                claim,
                rate_limit,
            } = *queued;
            match produce(app, &turn, prepared, claim.as_ref(), stream.as_ref()).await {
                Ok(Produced::Unanswered(why)) => Ok(Answered::Fresh {
                    response: unanswered(&turn, why),
                    rate_limit,
                }),
                Ok(Produced::Replied(conversed)) => Ok(Answered::Fresh {
                    response: answer(
                        turn.conversation_id,
                        conversed.text,
                        conversed.function_calls,
                        conversed.handoff.is_some(),
                        false,
                    ),
                    rate_limit,
                }),
                Err(error) => {
                    if let Some(claim) = &claim {
                        claim.fail(&app.pool, error.code(), &error.body()).await;
                    }
                    Err(Failed {
                        error,
                        rate_limit: Some(rate_limit),
                    })
                }
            }
        }
    }
}

/// The answer of a call whose message gets no reply of its own.
fn unanswered(turn: &Turn, why: Unanswered) -> GenerateReplyResponse {
    GenerateReplyResponse {
        success: true,
        conversation_id: turn.conversation_id,
        customer_identifier: turn.customer_identifier.clone(),
        reply: String::new(),
        function_calls: Vec::new(),
        ai_disabled: matches!(why, Unanswered::AiOff),
        opted_out: false,
        coalesced: matches!(why, Unanswered::Coalesced),
    }
}

/// Waits for the turn, converses, and records the reply; on failure gives the turn up (its
/// money refunded, its message removed), unless another process already did. With burst
/// coalescing, the turn first waits out its window; a message that came meanwhile answers for
/// it. A turn that finds the conversation's AI turned off while it waited is not answered.
async fn produce(
    app: &App,
    turn: &Turn,
    prepared: Option<Prepared>,
    claim: Option<&Claim>,
    stream: Option<&TextStream>,
) -> ReplyResult<Produced> {
    let _leased = app.engine.in_flight.hold(turn.message_id, claim.cloned());
    let conversed = async {
        let prepared = match prepared {
            Some(prepared) => prepared,
            None => match take_turn(app, turn).await? {
                Some(prepared) => prepared,
                None => return Ok(Err(Unanswered::AiOff)),
            },
        };
        if let Some(window) = turn.coalescing_window() {
            tokio::time::sleep_until(turn.admitted + window).await;
            let mut conn = app.db().await?;
            let (conversation, message, window_ms) = (
                turn.conversation_id,
                turn.message_id,
                turn.assistant.coalesce_ms,
            );
            if pending_reply::next_of_burst(&mut conn, conversation, message, window_ms).await? {
                return Ok(Err(Unanswered::Coalesced));
            }
        }
        let (prepared, knowledge) = with_knowledge(app, turn, prepared).await;
        converse::converse(app, turn, prepared, stream)
            .await
            .map(|mut conversed| {
                conversed.knowledge.splice(0..0, knowledge);
                Ok(conversed)
            })
    };
    // Settling is left out of the time limit: cut short, it could be done and yet reported
    // as given up.
    let conversed = tokio::time::timeout(app.settings.reply_timeout, conversed)
        .await
        .unwrap_or(Err(ReplyError::TimedOut))
        .map(|conversed| conversed.map(Conversed::without_nul));
    let settled = match conversed {
        Ok(Ok(conversed)) => {
            let settling = Instant::now();
            let settled = settlement::settle(app, turn, &conversed, claim).await;
            metrics::phase(Phase::Database, settling.elapsed());
            if settled.is_ok()
                && let Some(through) = conversed.forgotten
            {
                memory::fold_in_background(app, turn, through);
            }
            settled.map(|()| Produced::Replied(conversed))
        }
        Ok(Err(why)) => settlement::end_unanswered(app, turn, &unanswered(turn, why), claim)
            .await
            .map(|()| Produced::Unanswered(why)),
        Err(error) => Err(error),
    };
    if let Err(error) = &settled
        && !matches!(error, ReplyError::Superseded)
        && let Err(release_error) = settlement::abandon(app, turn, error.code()).await
    {
        tracing::error!(%release_error, "could not give up a failed turn; its lease will expire");
    }
    settled
}

/// Waits for the turn of a message queued behind another, and reads its prompt then; `None`
/// if the conversation's AI was turned off meanwhile.
async fn take_turn(app: &App, turn: &Turn) -> ReplyResult<Option<Prepared>> {
    let waiting = Instant::now();
    queue::wait_for_turn(app, turn.conversation_id, turn.message_id).await?;
    metrics::phase(Phase::QueueWait, waiting.elapsed());
    let preparing = Instant::now();
    let prepared = admission::prepare_after_waiting(app, turn).await?;
    metrics::phase(Phase::Database, preparing.elapsed());
    Ok(prepared)
}

/// The prompt with the passages of a `prompt`-mode assistant's knowledge base that best match
/// the customer's last messages, and those passages. A search that fails leaves the prompt
/// as it was: the reply goes on without them.
async fn with_knowledge(
    app: &App,
    turn: &Turn,
    mut prepared: Prepared,
) -> (Prepared, Vec<PassageRef>) {
    let Some((knowledge_base_id, KnowledgeMode::Prompt)) = turn.assistant.knowledge() else {
        return (prepared, Vec::new());
    };
    // The customer's message before gives this one its context ("and to Austria?"); the
    // prompt's last user message is this one.
    let earlier: Vec<&str> = prepared
        .messages
        .iter()
        .rev()
        .filter_map(|m| match m {
            PromptMessage::User(text) => Some(text.as_str()),
            _ => None,
        })
        .take(2)
        .collect();
    let mut query = earlier.into_iter().rev().collect::<Vec<_>>().join("\n");
    if !query.contains(&turn.message) {
        query.push('\n');
        query.push_str(&turn.message);
    }
    let searching = Instant::now();
    let hits = crate::knowledge::retrieve::for_prompt(
        &app.pool,
        &app.embeddings,
        knowledge_base_id,
        &query,
        app.settings.knowledge_tokens,
    )
    .await;
    metrics::phase(Phase::Database, searching.elapsed());
    let hits = match hits {
        Ok(hits) => hits,
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "the knowledge search failed; replying without it");
            return (prepared, Vec::new());
        }
    };
    if hits.is_empty() {
        return (prepared, Vec::new());
    }
    // After the system prompt, before the history.
    let at = prepared
        .messages
        .iter()
        .take_while(|m| matches!(m, PromptMessage::System(_)))
        .count();
    prepared.messages.insert(
        at,
        PromptMessage::System(crate::knowledge::retrieve::prompt_section(&hits)),
    );
    (prepared, hits.iter().map(|hit| hit.reference()).collect())
}

/// The most model calls one reply may make, and the most prompt tokens each may carry:
/// the budget of history plus the parts that always go in (`fixed_tokens`), and with tools,
/// every round's results and answers.
fn worst_case(
    settings: &Settings,
    assistant: &AssistantRow,
    fixed_tokens: u32,
) -> (u32, TokenUsage) {
    let output = settings.llm_max_output_tokens;
    let mut prompt = settings.context_token_budget.max(fixed_tokens);
    let knowledge = assistant.knowledge().map(|(_, mode)| mode);
    if knowledge == Some(KnowledgeMode::Prompt) {
        // The passages' words, and the words around them.
        prompt = prompt.saturating_add(settings.knowledge_tokens.saturating_mul(5) / 4 + 100);
    }
    if assistant.tool_ids.is_empty() && knowledge != Some(KnowledgeMode::FunctionCall) {
        return (
            1,
            TokenUsage {
                prompt_tokens: prompt,
                completion_tokens: output,
            },
        );
    }
    let rounds = settings.tool_max_rounds;
    let result_tokens = (tool_calls::MAX_RESULT_CHARS as u32).div_ceil(4) + 50;
    let prompt = prompt
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
pub fn reservation(settings: &Settings, assistant: &AssistantRow, fixed_tokens: u32) -> Money {
    let (calls, usage) = worst_case(settings, assistant, fixed_tokens);
    let mut models = vec![assistant.llm_model.as_str()];
    models.extend(assistant.fallback().map(|(_, model)| model));
    settings.pricing.hold(&models, calls, usage)
}

impl Conversed {
    /// PostgreSQL's text and JSONB cannot hold NUL characters, which models and tool endpoints
    /// can produce; they are dropped before anything is stored or answered.
    fn without_nul(mut self) -> Self {
        self.text = self.text.replace('\0', "");
        if let Some(reason) = &mut self.handoff {
            *reason = reason.replace('\0', "");
        }
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
