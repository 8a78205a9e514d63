//! Admission: one transaction that claims the idempotency key, stores and queues the
//! customer's message, reads what its prompt needs, counts the call against the rate limit and
//! reserves the reply's most possible cost. All or nothing: a refused message leaves no trace.

use anyreply_core::ErrorCode;
use anyreply_core::FieldErrors;
use anyreply_core::limits::MAX_CONVERSATION_VARIABLES_BYTES;
use anyreply_core::wire::{EventType, GenerateReplyRequest, GenerateReplyResponse};
use axum::http::StatusCode;
use diesel_async::AsyncPgConnection;
use serde_json::{Map, Value};

use super::error::{ReplyError, ReplyResult};
use super::prompt::{HistoryWalk, PromptBudget, render};
use super::{Prepared, Turn, reservation, settlement};
use crate::app::App;
use crate::db::{self, Tail};
use crate::extract::Caller;
use crate::idempotency::{self, Begin, Claim, RequestKey, StoredAnswer};
use crate::models::assistant::{self, AssistantRow};
use crate::models::conversation::{self, Joined};
use crate::models::event::{self, NewEvent};
use crate::models::message::PromptLine;
use crate::models::pending_reply::NewQueued;
use crate::models::tool::ToolRow;
use crate::models::{account, api_key, message, pending_reply, tool};
use crate::rate_limit::RateLimit;
use diesel::QueryResult;
use futures::TryFutureExt;

/// History places the prompt's first page of history spans.
const HISTORY_PAGE: i64 = 64;

/// What admission did with a message.
#[derive(Debug)]
pub enum Admission {
    /// The key's request was answered before: this is its answer.
    Replayed(StoredAnswer),
    /// A human has taken over, or the customer opted out: stored, not to be answered.
    Stored {
        conversation_id: uuid::Uuid,
        opted_out: bool,
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
    let mut conn = app.db().await?;
    let admitted = admit_in(app, &mut conn, caller, request, key).await;
    let limit = app.settings.rate_limit_per_minute;
    db::end(&mut conn, admitted)
        .await
        .map_err(|error| match error {
            // The tail's refusals: counted or paid for meanwhile by calls admitted at once.
            ReplyError::Database(error) if api_key::over_rate_limit(&error) => {
                ReplyError::RateLimited(RateLimit::spent(limit))
            }
            ReplyError::Database(error) if account::short_of_balance(&error) => {
                ErrorCode::InsufficientBalance.into()
            }
            other => other,
        })
}

/// Admission's work up to its [`Tail`]: the call's count and the reservation, on the hottest
/// rows, which go with the COMMIT.
async fn admit_in(
    app: &App,
    conn: &mut AsyncPgConnection,
    caller: Caller,
    request: &GenerateReplyRequest,
    key: Option<&RequestKey>,
) -> ReplyResult<(Admission, Tail)> {
    let settings = &app.settings;
    let account_id = caller.account_id;
    let claim = match key {
        Some(key) => {
            db::begin(conn).await?;
            match idempotency::begin(conn, account_id, key, settings.reply_lease).await? {
                Begin::Answer(answer) => {
                    if !api_key::is_live(conn, caller.api_key_id).await? {
                        return Err(revoked(app, caller));
                    }
                    return Ok((Admission::Replayed(answer), Tail::default()));
                }
                Begin::Run {
                    claim,
                    abandoned_message,
                } => {
                    // The dead attempt's queued message goes, so this one makes the only reply.
                    if let Some(message_id) = abandoned_message {
                        settlement::release(conn, &[message_id], false, None).await?;
                    }
                    Some(claim)
                }
            }
        }
        None => None,
    };
    // Pipelined (sent together, run in order), after the BEGIN unless the claim began the
    // transaction: the assistant, and the customer's conversation with it, whose row lock
    // orders the customer's messages. Under a key, the message's id is taken now, so that the
    // claim can note it in the next pipeline.
    let pipe: &AsyncPgConnection = conn;
    let (mut zeroth, mut first, mut second, mut third) = (pipe, pipe, pipe, pipe);
    let begin = when(key.is_none(), db::begin_pipelined(&mut zeroth));
    let (began, found) = futures::join!(begin, async {
        futures::try_join!(
            assistant::find(&mut first, account_id, request.assistant_id),
            conversation::join(
                &mut second,
                account_id,
                request.assistant_id,
                &request.customer_identifier
            ),
            when(claim.is_some(), message::next_id(&mut third)),
        )
    });
    if let Some(began) = began.transpose() {
        db::begun(conn, began)?;
    }
    let (assistant, joined, message_id) = found?;
    let (Some(assistant), Some(joined)) = (assistant, joined) else {
        return Err(ErrorCode::AssistantNotFound.into());
    };
    let variables = Value::Object(request.variables.clone().unwrap_or_default());
    if !joined.ai_enabled || joined.opted_out {
        check_variables_size(conn, &joined, &variables, 0).await?;
        let stored = store_unanswered(
            app,
            conn,
            caller,
            request,
            claim.as_ref(),
            &joined,
            &variables,
        )
        .await?;
        return Ok((stored, Tail::default()));
    }

    let prompt = start_prompt(
        app,
        &assistant,
        &request.message,
        &variables,
        &joined.variables,
    );
    let hold = reservation(settings, &assistant, prompt.fixed_tokens());
    let new = NewQueued {
        message_id,
        conversation_id: joined.id,
        account_id,
        seq: joined.seq,
        content: &request.message,
        variables: &variables,
        hold: hold.subunits(),
        lease: settings.reply_lease,
        queue_limit: settings.conversation_queue_limit,
    };
    // In the same pipeline, the prompt's history and tools, for the turn is the message's
    // at once unless another is queued before it (then it reads them when its turn comes),
    // and the key's standing, read without locking: the key's and the account's rows, the
    // hottest, are written by the tail.
    let tool_ids = &assistant.tool_ids;
    let received = NewEvent {
        account_id,
        kind: EventType::MessageReceived,
        conversation_id: joined.id,
        message_seq: Some(joined.seq),
        error_code: None,
    };
    let pipe: &AsyncPgConnection = conn;
    let (mut c1, mut c2, mut c3, mut c4, mut c5) = (pipe, pipe, pipe, pipe, pipe);
    let attach = async {
        match (&claim, message_id) {
            (Some(claim), Some(id)) => claim.attach_message(&mut c5, id).await,
            _ => Ok(()),
        }
    };
    let (enqueued, (), page, tools, standing) = futures::try_join!(
        pending_reply::enqueue_message(&mut c1, &new).map_err(ReplyError::from),
        attach.map_err(ReplyError::from),
        when(
            joined.seq > 1,
            message::prompt_page_before(&mut c2, joined.id, joined.seq, HISTORY_PAGE)
        )
        .map_err(ReplyError::from),
        when(
            !tool_ids.is_empty(),
            tool::find_many(&mut c3, account_id, tool_ids)
        )
        .map_err(ReplyError::from),
        api_key::next_count(&mut c4, caller.api_key_id).map_err(ReplyError::from),
    )?;
    let standing = standing.ok_or_else(|| revoked(app, caller))?;
    let Some(message_id) = enqueued.message_id else {
        return Err(ReplyError::ConversationBusy);
    };
    let queued = enqueued.queued_before;
    check_variables_size(conn, &joined, &variables, queued).await?;
    let rate_limit = within_limit(&standing, settings.rate_limit_per_minute)?;
    let turn = Turn {
        admitted: tokio::time::Instant::now(),
        account_id,
        conversation_id: joined.id,
        message_id,
        seq: joined.seq,
        hold,
        customer_identifier: request.customer_identifier.clone(),
        message: request.message.clone(),
        variables,
        idempotency_key: claim.as_ref().map(|c| c.key.clone()),
        assistant,
    };
    let prepared = if queued == 0 {
        Some(finish_prompt(conn, &turn, prompt, page, tools).await?)
    } else {
        None
    };
    // Last, with the COMMIT: the call counted and the reservation taken (each refused by
    // its row's CHECK), and with the account's row locked, the `message.received` event.
    // The account's row last, so that it is held for the least: the key's row is written
    // by admissions only, and they take the account's row in turn anyway. The commit does
    // not wait for the disk: nothing is answered or called on the strength of it before the
    // tool journal's or the settlement's commit, which do.
    let tail = Tail::default()
        .then(&api_key::count_call_statement(
            caller.api_key_id,
            settings.rate_limit_per_minute,
        ))
        .then(&event::insert_moving_balance(&received, -hold.subunits()))
        .without_waiting_for_disk();
    let queued = Queued {
        turn,
        prepared,
        claim,
        rate_limit,
    };
    Ok((Admission::Queued(Box::new(queued)), tail))
}

/// `query`'s rows if `wanted`; nothing is sent otherwise.
async fn when<T>(
    wanted: bool,
    query: impl Future<Output = QueryResult<T>>,
) -> QueryResult<Option<T>> {
    if wanted {
        query.await.map(Some)
    } else {
        Ok(None)
    }
}

/// Under human takeover the message is stored and not answered; its variables join the
/// conversation at once, as no reply will.
async fn store_unanswered(
    app: &App,
    conn: &mut AsyncPgConnection,
    caller: Caller,
    request: &GenerateReplyRequest,
    claim: Option<&Claim>,
    joined: &Joined,
    variables: &Value,
) -> ReplyResult<Admission> {
    let limit = app.settings.rate_limit_per_minute;
    message::insert_customer(conn, joined.id, joined.seq, &request.message, variables).await?;
    conversation::merge_variables(conn, joined.id, variables).await?;
    let received = NewEvent {
        account_id: caller.account_id,
        kind: EventType::MessageReceived,
        conversation_id: joined.id,
        message_seq: Some(joined.seq),
        error_code: None,
    };
    if let Some(claim) = claim {
        let answer = GenerateReplyResponse {
            coalesced: false,
            success: true,
            conversation_id: joined.id,
            customer_identifier: request.customer_identifier.clone(),
            reply: String::new(),
            function_calls: Vec::new(),
            ai_disabled: true,
            opted_out: joined.opted_out,
        };
        claim.complete(conn, StatusCode::OK, &answer).await?;
    }
    let counted = api_key::count_call(conn, caller.api_key_id, limit)
        .await?
        .ok_or_else(|| revoked(app, caller))?;
    let rate_limit = RateLimit::after(&counted, limit);
    // Last: the account's row is the hottest.
    event::insert(conn, &received).await?;
    Ok(Admission::Stored {
        conversation_id: joined.id,
        opted_out: joined.opted_out,
        rate_limit,
    })
}

/// The refusal of a key revoked since this process saw it, which it forgets.
fn revoked(app: &App, caller: Caller) -> ReplyError {
    app.known_keys.forget(caller.api_key_id);
    ErrorCode::Unauthorized.into()
}

fn within_limit(counted: &api_key::WindowCount, limit: u32) -> ReplyResult<RateLimit> {
    let rate_limit = RateLimit::after(counted, limit);
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
fn start_prompt(
    app: &App,
    assistant: &AssistantRow,
    message: &str,
    message_variables: &Value,
    own_variables: &Value,
) -> PromptBudget {
    let mut variables = crate::models::overlay_variables(&assistant.variables, own_variables);
    variables.extend(message_variables.as_object().cloned().unwrap_or_default());
    PromptBudget::new(
        render(&assistant.system_prompt, &variables),
        assistant
            .initial_message
            .as_deref()
            .map(|greeting| render(greeting, &variables)),
        message.to_owned(),
        app.settings.context_token_budget,
    )
}

/// Fills the prompt with the newest history that fits and reads the assistant's tools;
/// `first_page` and `tools` if they were read already.
async fn finish_prompt(
    conn: &mut AsyncPgConnection,
    turn: &Turn,
    mut prompt: PromptBudget,
    mut first_page: Option<Vec<PromptLine>>,
    tools: Option<Vec<ToolRow>>,
) -> ReplyResult<Prepared> {
    let mut walk = HistoryWalk::new(turn.seq, HISTORY_PAGE);
    while let Some((before, span)) = walk.next_page() {
        let page = match first_page.take() {
            Some(page) => page,
            None => message::prompt_page_before(conn, turn.conversation_id, before, span).await?,
        };
        walk.offer(&mut prompt, page);
    }
    let assistant = &turn.assistant;
    let tools = match tools {
        Some(tools) => tools,
        None if assistant.tool_ids.is_empty() => Vec::new(),
        None => tool::find_many(conn, assistant.account_id, &assistant.tool_ids).await?,
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
            let prompt = start_prompt(app, &turn.assistant, &turn.message, &turn.variables, &own);
            finish_prompt(conn, turn, prompt, None, None).await
        })
        .await
}
