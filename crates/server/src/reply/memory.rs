//! Memory past the budget. The turns a prompt leaves out are folded into the conversation's
//! rolling summary, which every later prompt carries before its recent turns
//! ([`PromptBudget::remember`](super::prompt::PromptBudget::remember)); the history walk stops
//! where the summary ends, so no turn is sent both ways.
//!
//! A fold runs after its reply is settled, on a task of its own: the reply never waits for it.
//! The assistant's model (its fallback too, as for replies) is given the summary so far and the
//! next turns, a chunk at a time, and writes the new summary. Each chunk is claimed first on
//! the conversation's row ([`conversation::claim_summary`], a lease), so two replies, in this
//! process or another, never ask the model for the same turns; the new summary is stored only
//! if the old one is still the newest (compare and set on `summary_through_seq`), and charged in
//! the same transaction ([`summary_fold::record`]). A fold that fails gives its claim back and
//! is logged; the next reply whose prompt leaves turns out tries again. A balance that cannot
//! pay a fold's most possible cost skips it.

use std::time::Duration;

use anyreply_core::Money;
use diesel_async::AsyncConnection;
use tracing::Instrument;
use uuid::Uuid;

use super::Turn;
use super::error::{ReplyError, ReplyResult};
use crate::app::App;
use crate::config::Settings;
use crate::llm::{Completion, LlmError, Output, PromptMessage, TokenUsage, estimate_tokens};
use crate::models::account;
use crate::models::assistant::AssistantRow;
use crate::models::conversation::{self, Folded, Memory};
use crate::models::message::{self, PromptLine, ROLE_ASSISTANT, ROLE_USER};
use crate::models::summary_fold::{self, NewFold};
use crate::telemetry::metrics;

/// What the model is told to do with the summary so far and the turns to add.
pub const INSTRUCTIONS: &str = "You keep the memory of a long conversation between a customer \
and an assistant, whose oldest messages no longer fit the assistant's prompt. Rewrite the \
summary so far so that it also holds the new messages: keep every fact, name, number, date, \
promise, agreement and open question a later reply may need, and who said it; drop greetings \
and small talk. Write the summary only, in the conversation's language";

/// The most messages one fold reads; the chunk's token bound usually ends it sooner.
const CHUNK_ROWS: i64 = 512;

/// Estimated tokens of turns one fold takes in: half the prompt budget, so that a fold's
/// prompt is no larger than a reply's.
fn chunk_tokens(settings: &Settings) -> u32 {
    (settings.context_token_budget / 2).max(500)
}

/// The most tokens a summary may take: an eighth of the prompt budget (1,000 of the default
/// 8,000), within the model's output cap.
pub fn summary_tokens(settings: &Settings) -> u32 {
    (settings.context_token_budget / 8).clamp(64, settings.llm_max_output_tokens.max(64))
}

/// A conversation's turns to fold in, through place `through`.
#[derive(Debug, Clone)]
struct Folding {
    conversation_id: Uuid,
    account_id: i64,
    assistant: AssistantRow,
    through: i64,
}

/// Folds the conversation's turns through place `through` into its summary, on a task of its
/// own; called once the reply whose prompt left them out is settled.
pub fn fold_in_background(app: &App, turn: &Turn, through: i64) {
    let app = app.clone();
    let folding = Folding {
        conversation_id: turn.conversation_id,
        account_id: turn.account_id,
        assistant: turn.assistant.clone(),
        through,
    };
    let task = async move {
        if let Err(error) = fold(&app, &folding).await {
            tracing::warn!(
                %error,
                conversation = %folding.conversation_id,
                "could not fold turns into the conversation's summary; a later reply will"
            );
        }
    };
    tokio::spawn(task.in_current_span());
}

/// Folds chunk after chunk until the summary holds `through`, another process has the claim,
/// or the balance cannot pay.
async fn fold(app: &App, folding: &Folding) -> ReplyResult<()> {
    while fold_once(app, folding).await? {}
    Ok(())
}

/// Claims and folds the next chunk; `true` if turns through `folding.through` remain.
async fn fold_once(app: &App, folding: &Folding) -> ReplyResult<bool> {
    let settings = &app.settings;
    let id = folding.conversation_id;
    let mut conn = app.db().await?;
    let balance = account::find(&mut conn, folding.account_id)
        .await?
        .map_or(0, |a| a.balance);
    if balance < most_cost(settings, &folding.assistant).subunits() {
        tracing::info!(conversation = %id, "the balance cannot pay for a summary; skipped");
        return Ok(false);
    }
    let lease = claim_lease(settings);
    let Some(memory) = conversation::claim_summary(&mut conn, id, folding.through, lease).await?
    else {
        tracing::debug!(conversation = %id, "folded already, or another fold holds the claim");
        return Ok(false);
    };
    let after = memory.through_seq;
    let read = message::to_fold(&mut conn, id, after, folding.through, CHUNK_ROWS).await;
    let lines = match read {
        Ok(lines) => chunk(lines, chunk_tokens(settings)),
        Err(error) => {
            conversation::release_summary_claim(&mut conn, id, after).await?;
            return Err(error.into());
        }
    };
    // Nothing held while the model thinks.
    drop(conn);
    let Some(through) = lines.last().map(|line| line.seq) else {
        // The places were left empty (messages given up): nothing to ask the model.
        let kept = Folded {
            id,
            after,
            through: folding.through,
            summary: memory.summary.as_deref(),
            tokens: (0, 0),
        };
        store(app, &kept, None).await?;
        return Ok(false);
    };
    let summarised = match summarise(app, &folding.assistant, &memory, &lines).await {
        Ok(summarised) => summarised,
        Err(error) => {
            let mut conn = app.db().await?;
            conversation::release_summary_claim(&mut conn, id, after).await?;
            return Err(error);
        }
    };
    let folded = Folded {
        id,
        after,
        through,
        summary: Some(&summarised.text),
        tokens: (
            i64::from(summarised.usage.prompt_tokens),
            i64::from(summarised.usage.completion_tokens),
        ),
    };
    store(app, &folded, Some((folding, &summarised))).await?;
    Ok(through < folding.through)
}

/// The first of `lines` (oldest first) that fit `tokens`, at least one; a message longer than
/// the whole chunk is cut to it.
fn chunk(lines: Vec<PromptLine>, tokens: u32) -> Vec<PromptLine> {
    let mut taken = Vec::new();
    let mut used = 0u32;
    for mut line in lines {
        let cost = estimate_tokens(&line.content);
        if !taken.is_empty() && used.saturating_add(cost) > tokens {
            break;
        }
        if cost > tokens {
            line.content = cut(&line.content, tokens as usize * 4);
        }
        used = used.saturating_add(cost);
        taken.push(line);
    }
    taken
}

/// `text`'s first `chars` characters, marked as cut when it was longer.
fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A new summary and what asking for it cost.
#[derive(Debug)]
struct Summarised {
    text: String,
    /// The model that wrote it (the fallback's, if it stood in).
    model: String,
    usage: TokenUsage,
    cost: Money,
}

/// Asks the assistant's model (the fallback if the first is down) for the summary holding
/// `memory`'s and `lines`.
async fn summarise(
    app: &App,
    assistant: &AssistantRow,
    memory: &Memory,
    lines: &[PromptLine],
) -> ReplyResult<Summarised> {
    let settings = &app.settings;
    let most = summary_tokens(settings);
    let messages = [
        PromptMessage::System(format!(
            "{INSTRUCTIONS}, in at most {} words.",
            most * 3 / 4
        )),
        PromptMessage::User(material(memory.summary.as_deref(), lines)),
    ];
    let completion = Completion {
        model: &assistant.llm_model,
        temperature: assistant.llm_temperature,
        max_output_tokens: most,
        messages: &messages,
        functions: &[],
        may_call_functions: false,
        stream: None,
        answer_schema: None,
    };
    let primary = (assistant.provider(), assistant.llm_model.as_str());
    let asked = app.llm.complete(primary, assistant.fallback(), completion);
    let (answer, (provider, model)) = tokio::time::timeout(settings.reply_timeout, asked)
        .await
        .map_err(|_| ReplyError::TimedOut)?
        .map_err(ReplyError::Model)?;
    let usage = answer
        .usage
        .unwrap_or_else(|| TokenUsage::estimate(&completion, &answer.output));
    let cost = settings.pricing.tokens_cost(model, usage);
    metrics::model_call(provider, model, usage, cost);
    let Output::Text(text) = answer.output else {
        return Err(ReplyError::Model(LlmError::Failed(
            "a function call instead of a summary".into(),
        )));
    };
    // A model that overruns its output cap must not crowd the history out of later prompts.
    let text = cut(text.replace('\0', "").trim(), most as usize * 5);
    if text.is_empty() {
        return Err(ReplyError::Model(LlmError::Failed(
            "an empty summary".into(),
        )));
    }
    Ok(Summarised {
        text,
        model: model.to_owned(),
        usage,
        cost,
    })
}

/// The summary so far and the turns to add, as the model reads them.
fn material(summary: Option<&str>, lines: &[PromptLine]) -> String {
    let mut text = format!(
        "Summary so far:\n{}\n\nMessages to add, oldest first:\n",
        summary.unwrap_or("(none yet)")
    );
    for line in lines {
        let who = match line.role.as_str() {
            ROLE_USER => "Customer",
            ROLE_ASSISTANT => "Assistant",
            _ => "Operator (a person of the business)",
        };
        text.push_str(&format!("{who}: {}\n", line.content));
    }
    text
}

/// Stores a fold, charged and recorded with `summarised` when the model was asked, in one
/// transaction; a fold whose claim was lost (its lease ran out and another fold came first) is
/// dropped.
async fn store(
    app: &App,
    folded: &Folded<'_>,
    summarised: Option<(&Folding, &Summarised)>,
) -> ReplyResult<()> {
    let mut conn = app.db().await?;
    conn.transaction::<_, ReplyError, _>(async |conn| {
        if !conversation::store_summary(conn, folded).await? {
            tracing::warn!(conversation = %folded.id, "a summary lost its claim; dropped");
            return Ok(());
        }
        let Some((folding, summarised)) = summarised else {
            return Ok(());
        };
        let fold = NewFold {
            conversation_id: folded.id,
            account_id: folding.account_id,
            after: folded.after,
            through: folded.through,
            model: &summarised.model,
            prompt_tokens: i32::try_from(summarised.usage.prompt_tokens).unwrap_or(i32::MAX),
            completion_tokens: i32::try_from(summarised.usage.completion_tokens)
                .unwrap_or(i32::MAX),
            cost: summarised.cost.subunits(),
        };
        summary_fold::record(conn, &fold).await?;
        Ok(())
    })
    .await
}

/// The most a fold can cost: a chunk, the summary so far and the instructions in, a summary
/// out, at the dearer of the assistant's model and its fallback.
fn most_cost(settings: &Settings, assistant: &AssistantRow) -> Money {
    let summary = summary_tokens(settings);
    let usage = TokenUsage {
        prompt_tokens: chunk_tokens(settings)
            .saturating_add(summary.saturating_mul(5) / 4)
            .saturating_add(estimate_tokens(INSTRUCTIONS) + 50),
        completion_tokens: summary,
    };
    let mut models = vec![assistant.llm_model.as_str()];
    models.extend(assistant.fallback().map(|(_, model)| model));
    models
        .into_iter()
        .map(|model| settings.pricing.tokens_cost(model, usage))
        .max()
        .unwrap_or_default()
}

/// How long a claim on a conversation's summary lasts: past the model's time limit (and a
/// lease's margin) the claim is presumed dead.
fn claim_lease(settings: &Settings) -> Duration {
    settings.reply_timeout + settings.reply_lease
}
