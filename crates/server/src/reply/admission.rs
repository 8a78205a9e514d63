//! Admission: one transaction that claims the idempotency key, stores and queues the
//! customer's message, reads what its prompt needs, counts the call against the rate limit and
//! reserves the reply's most possible cost. All or nothing: a refused message leaves no trace.

use anyreply_core::ErrorCode;
use anyreply_core::FieldErrors;
use anyreply_core::limits::MAX_CONVERSATION_VARIABLES_BYTES;
use anyreply_core::wire::{GenerateReplyRequest, GenerateReplyResponse};
use axum::http::StatusCode;
use axum::response::Response;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{Map, Value};

use super::error::{ReplyError, ReplyResult};
use super::prompt::{HistoryWalk, PromptBudget, merge_variables, render};
use super::{Prepared, Turn, reservation, settlement};
use crate::app::App;
use crate::extract::Caller;
use crate::idempotency::{self, Begin, Claim, RequestKey};
use crate::models::assistant::{self, AssistantRow};
use crate::models::conversation::{self, Joined};
use crate::models::{account, api_key, message, pending_reply, tool};
use crate::rate_limit::RateLimit;

/// History places the prompt's first page of history spans.
const HISTORY_PAGE: i64 = 64;

/// What admission did with a message.
#[derive(Debug)]
pub enum Admission {
    /// The key's request was answered before: this is its answer.
    Replayed(Response),
    /// A human has taken over: stored, not to be answered.
    Stored {
        conversation_id: uuid::Uuid,
        rate_limit: RateLimit,
    },
    /// Queued for a reply.
    Queued(Box<Queued>),
}

/// A message queued for its reply.
#[derive(Debug)]
pub struct Queued {
    pub turn: Turn,
    /// Its prompt, when nothing was queued before it; otherwise it waits for its turn and
    /// reads the prompt then.
    pub prepared: Option<Prepared>,
    pub claim: Option<Claim>,
    pub rate_limit: RateLimit,
}

pub async fn admit(
    app: &App,
    caller: Caller,
    request: &GenerateReplyRequest,
    key: Option<&RequestKey>,
) -> ReplyResult<Admission> {
    let settings = &app.settings;
    let account_id = caller.account_id;
    let mut conn = app.db().await?;
    conn.transaction::<_, ReplyError, _>(async |conn| {
        let claim = match key {
            Some(key) => {
                match idempotency::begin(conn, account_id, key, settings.reply_lease).await? {
                    Begin::Answer(response) => return Ok(Admission::Replayed(response)),
                    Begin::Run {
                        claim,
                        abandoned_message,
                    } => {
                        // The dead attempt's queued message goes, so this one makes the only reply.
                        if let Some(message_id) = abandoned_message {
                            settlement::release(conn, &[message_id], false).await?;
                        }
                        Some(claim)
                    }
                }
            }
            None => None,
        };
        let assistant = assistant::find(conn, account_id, request.assistant_id)
            .await?
            .ok_or(ErrorCode::AssistantNotFound)?;
        let joined =
            conversation::join(conn, account_id, assistant.id, &request.customer_identifier)
                .await?;
        let variables = Value::Object(request.variables.clone().unwrap_or_default());
        let queued = if joined.ai_enabled {
            let queue = pending_reply::queue_of(conn, joined.id).await?;
            if queue.queued >= i64::from(settings.conversation_queue_limit) {
                return Err(ReplyError::ConversationBusy);
            }
            queue.queued
        } else {
            0
        };
        check_variables_size(conn, &joined, &variables, queued).await?;
        let message_id =
            message::insert_customer(conn, joined.id, joined.seq, &request.message, &variables)
                .await?;
        if !joined.ai_enabled {
            // No reply to wait for: the variables join the conversation now.
            conversation::merge_variables(conn, joined.id, &variables).await?;
            if let Some(claim) = &claim {
                let answer = GenerateReplyResponse {
                    success: true,
                    conversation_id: joined.id,
                    customer_identifier: request.customer_identifier.clone(),
                    reply: String::new(),
                    function_calls: Vec::new(),
                    ai_disabled: true,
                };
                claim.complete(conn, StatusCode::OK, &answer).await?;
            }
            let rate_limit =
                count_call(conn, caller.api_key_id, settings.rate_limit_per_minute).await?;
            return Ok(Admission::Stored {
                conversation_id: joined.id,
                rate_limit,
            });
        }

        let turn = Turn {
            account_id,
            conversation_id: joined.id,
            message_id,
            seq: joined.seq,
            customer_identifier: request.customer_identifier.clone(),
            message: request.message.clone(),
            variables,
            idempotency_key: claim.as_ref().map(|c| c.key.clone()),
            assistant,
        };
        let prompt = start_prompt(app, &turn, &joined.variables);
        let hold = reservation(settings, &turn.assistant, prompt.fixed_tokens());
        pending_reply::enqueue(
            conn,
            message_id,
            joined.id,
            account_id,
            hold.subunits(),
            settings.reply_lease,
        )
        .await?;
        if let Some(claim) = &claim {
            claim.attach_message(conn, message_id).await?;
        }
        let prepared = if queued == 0 {
            Some(finish_prompt(conn, &turn, prompt).await?)
        } else {
            None
        };
        // The key's and the account's rows are the hottest: locked last, just before commit.
        let rate_limit =
            count_call(conn, caller.api_key_id, settings.rate_limit_per_minute).await?;
        if !account::reserve(conn, account_id, hold).await? {
            return Err(ErrorCode::InsufficientBalance.into());
        }
        Ok(Admission::Queued(Box::new(Queued {
            turn,
            prepared,
            claim,
            rate_limit,
        })))
    })
    .await
}

/// Counts the call; over the limit, the whole admission is refused.
async fn count_call(
    conn: &mut AsyncPgConnection,
    api_key_id: i64,
    limit: u32,
) -> ReplyResult<RateLimit> {
    let counted = api_key::count_call(conn, api_key_id).await?;
    let rate_limit = RateLimit::after(&counted, limit);
    if rate_limit.exceeded {
        return Err(ReplyError::RateLimited(rate_limit));
    }
    Ok(rate_limit)
}

/// The conversation's variables, with those of the messages still queued and this one's, may
/// not outgrow [`MAX_CONVERSATION_VARIABLES_BYTES`] serialized.
async fn check_variables_size(
    conn: &mut AsyncPgConnection,
    joined: &Joined,
    variables: &Value,
    queued: i64,
) -> ReplyResult<()> {
    let Some(new) = variables.as_object().filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let mut merged: Map<String, Value> = joined.variables.as_object().cloned().unwrap_or_default();
    if queued > 0 {
        for earlier in message::queued_variables(conn, joined.id)
            .await?
            .into_iter()
            .flatten()
        {
            merged.extend(earlier.as_object().cloned().unwrap_or_default());
        }
    }
    merged.extend(new.clone());
    let size = Value::Object(merged).to_string().len();
    if size > MAX_CONVERSATION_VARIABLES_BYTES {
        return Err(ReplyError::Invalid(FieldErrors::single(
            "variables",
            format!(
                "The conversation's variables would take {size} bytes; at most {MAX_CONVERSATION_VARIABLES_BYTES} are kept."
            ),
        )));
    }
    Ok(())
}

/// The prompt's fixed parts: the system prompt and greeting filled from the variables (the
/// assistant's defaults, the conversation's own, then this message's), and the message.
fn start_prompt(app: &App, turn: &Turn, own_variables: &Value) -> PromptBudget {
    let assistant: &AssistantRow = &turn.assistant;
    let mut variables = merge_variables(&assistant.variables, own_variables);
    variables.extend(turn.variables.as_object().cloned().unwrap_or_default());
    PromptBudget::new(
        render(&assistant.system_prompt, &variables),
        assistant
            .initial_message
            .as_deref()
            .map(|greeting| render(greeting, &variables)),
        turn.message.clone(),
        app.settings.context_token_budget,
    )
}

/// Fills the prompt with the newest history that fits and reads the assistant's tools.
async fn finish_prompt(
    conn: &mut AsyncPgConnection,
    turn: &Turn,
    mut prompt: PromptBudget,
) -> ReplyResult<Prepared> {
    let mut walk = HistoryWalk::new(turn.seq, HISTORY_PAGE);
    while let Some((before, span)) = walk.next_page() {
        let page = message::page_before(conn, turn.conversation_id, before, span).await?;
        walk.offer(&mut prompt, page);
    }
    let assistant = &turn.assistant;
    let tools = if assistant.tool_ids.is_empty() {
        Vec::new()
    } else {
        tool::find_many(conn, assistant.account_id, &assistant.tool_ids).await?
    };
    Ok(Prepared {
        messages: prompt.into_messages(),
        tools,
    })
}

/// The prompt of a message whose turn came after waiting: read now, in one read-only
/// transaction, as the replies before it changed the history and the variables.
pub async fn prepare_after_waiting(app: &App, turn: &Turn) -> ReplyResult<Prepared> {
    let mut conn = app.db().await?;
    conn.build_transaction()
        .read_only()
        .run::<_, ReplyError, _>(async |conn| {
            let own = conversation::variables(conn, turn.conversation_id).await?;
            let prompt = start_prompt(app, turn, &own);
            finish_prompt(conn, turn, prompt).await
        })
        .await
}
