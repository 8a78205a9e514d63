//! Admission: one transaction that claims the idempotency key, stores and queues the
//! customer's message, reads what its prompt needs, counts the call against the rate limit and
//! reserves the reply's most possible cost. All or nothing: a refused message leaves no trace.

use std::ops::ControlFlow;

use anyreply_core::FieldErrors;
use anyreply_core::limits::MAX_CONVERSATION_VARIABLES_BYTES;
use anyreply_core::wire::{EventType, GenerateReplyRequest, GenerateReplyResponse};
use anyreply_core::{ErrorCode, Money};
use diesel_async::AsyncPgConnection;
use serde_json::{Map, Value};

use super::error::{ReplyError, ReplyResult};
use super::prompt::{HistoryWalk, PromptBudget, render};
use super::{Prepared, Turn, reservation, settlement};
use crate::app::App;
use crate::caller::Caller;
use crate::db::{self, Commit};
use crate::idempotency::{self, Begin, Claim, RequestKey, StoredAnswer};
use crate::models::api_key::WindowCount;
use crate::models::assistant::{self, AssistantRow};
use crate::models::conversation::{self, Joined};
use crate::models::event::{self, NewEvent};
use crate::models::message::PromptLine;
use crate::models::pending_reply::{Enqueued, NewQueued};
use crate::models::tool::ToolRow;
use crate::models::{account, api_key, message, pending_reply, tool};
use crate::rate_limit::RateLimit;

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
    if admitted.is_err() {
        db::roll_back_if_open(&mut conn).await;
    }
    admitted.map_err(|error| refusal(app, caller, error))
}

/// The database's refusals (see the CHECKs and refusals the statements name) as the caller's.
fn refusal(app: &App, caller: Caller, error: ReplyError) -> ReplyError {
    let ReplyError::Database(error) = error else {
        return error;
    };
    if api_key::over_rate_limit(&error) {
        ReplyError::RateLimited(RateLimit::spent(app.settings.rate_limit_per_minute))
    } else if account::short_of_balance(&error) {
        ErrorCode::InsufficientBalance.into()
    } else if pending_reply::queue_full(&error) {
        ReplyError::ConversationBusy
    } else if api_key::revoked(&error) {
        revoked(app, caller)
    } else {
        ReplyError::Database(error)
    }
}

/// Admission in two pipelines (statements sent together, run in order): the first begins the
/// transaction and takes the conversation's row lock, which orders the customer's messages; the
/// second queues the message, reads its prompt, counts the call and takes the reservation, and
/// commits. The count and the reservation, on the hottest rows, come last, just before the
/// COMMIT, and each refuses by failing (a CHECK), which rolls the whole admission back.
async fn admit_in(
    app: &App,
    conn: &mut AsyncPgConnection,
    caller: Caller,
    request: &GenerateReplyRequest,
    key: Option<&RequestKey>,
) -> ReplyResult<Admission> {
    let claim = match key {
        Some(key) => match claim_key(app, conn, caller, key).await? {
            ControlFlow::Break(replayed) => return Ok(replayed),
            ControlFlow::Continue(claim) => Some(claim),
        },
        None => None,
    };
    let Found {
        assistant,
        joined,
        message_id,
        variables,
    } = first_flight(conn, caller, request, claim.is_some()).await?;
    if !joined.ai_enabled || joined.opted_out {
        let stored = store_unanswered(
            app,
            conn,
            caller,
            request,
            claim.as_ref(),
            &joined,
            &variables,
        )
        .await;
        return db::end(conn, stored).await;
    }
    let message = &request.message;
    let mut prompt = start_prompt(app, &assistant, message, &variables, &joined.variables);
    prompt.remember(joined.memory.summary.as_deref());
    let hold = reservation(&app.settings, &assistant, prompt.fixed_tokens());
    let queueing = Queueing {
        caller,
        claim: claim.as_ref(),
        assistant: &assistant,
        joined: &joined,
        message_id,
        message,
        variables: &variables,
        hold,
    };
    let (enqueued, page, tools, counted) = second_flight(app, conn, &queueing).await?;
    let turn = Turn {
        admitted: tokio::time::Instant::now(),
        account_id: caller.account_id,
        conversation_id: joined.id,
        message_id: enqueued.message_id,
        seq: joined.seq,
        hold,
        customer_identifier: request.customer_identifier.clone(),
        message: request.message.clone(),
        variables,
        idempotency_key: claim.as_ref().map(|c| c.key.clone()),
        assistant,
    };
    // The turn is the message's: no reply is recorded in its conversation before its own, so
    // the rest of its history may be read after the commit.
    let prepared = if enqueued.queued_before == 0 {
        let floor = joined.memory.through_seq;
        Some(finish_prompt(conn, &turn, prompt, floor, page, tools).await?)
    } else {
        None
    };
    let queued = Queued {
        turn,
        prepared,
        claim,
        rate_limit: RateLimit::after(&counted, app.settings.rate_limit_per_minute),
    };
    Ok(Admission::Queued(Box::new(queued)))
}

/// Begins the transaction with the key's claim: `Break` with the stored answer of an earlier
/// call with it (the key checked live), or `Continue` with the claim, a dead attempt's queued
/// message released so that this one makes the only reply.
async fn claim_key(
    app: &App,
    conn: &mut AsyncPgConnection,
    caller: Caller,
    key: &RequestKey,
) -> ReplyResult<ControlFlow<Admission, Claim>> {
    db::begin(conn).await?;
    match idempotency::begin(conn, caller.account_id, key, app.settings.reply_lease).await? {
        Begin::Answer(answer) => {
            if !api_key::is_live(conn, caller.api_key_id).await? {
                return Err(revoked(app, caller));
            }
            let replayed = db::end(conn, ReplyResult::Ok(Admission::Replayed(answer))).await?;
            Ok(ControlFlow::Break(replayed))
        }
        Begin::Run {
            claim,
            abandoned_message,
        } => {
            if let Some(message_id) = abandoned_message {
                settlement::release(conn, &[message_id], false, None).await?;
            }
            Ok(ControlFlow::Continue(claim))
        }
    }
}

/// What the first pipeline found.
struct Found {
    /// Without its tools for a caller that may not use them.
    assistant: AssistantRow,
    joined: Joined,
    /// The message's id, taken now under a key, so that the claim can note it.
    message_id: Option<i64>,
    /// The message's variables.
    variables: Value,
}

/// The first pipeline, after the BEGIN unless the claim began the transaction: the assistant,
/// and the customer's conversation with it, whose row lock orders the customer's messages;
/// with the lock held, the variables of the messages queued in it, to bound the
/// conversation's.
async fn first_flight(
    conn: &mut AsyncPgConnection,
    caller: Caller,
    request: &GenerateReplyRequest,
    claimed: bool,
) -> ReplyResult<Found> {
    let account_id = caller.account_id;
    let new_variables = request.variables.as_ref().is_some_and(|v| !v.is_empty());
    let pipe: &AsyncPgConnection = conn;
    let (mut zeroth, mut first, mut second, mut third, mut fourth) = (pipe, pipe, pipe, pipe, pipe);
    let begin = db::when(!claimed, db::begin_pipelined(&mut zeroth));
    let (began, found) = futures::join!(begin, async {
        futures::try_join!(
            assistant::find(&mut first, account_id, request.assistant_id),
            conversation::join(
                &mut second,
                account_id,
                request.assistant_id,
                &request.customer_identifier
            ),
            db::when(claimed, message::next_id(&mut third)),
            db::when(
                new_variables,
                message::queued_variables(
                    &mut fourth,
                    account_id,
                    request.assistant_id,
                    &request.customer_identifier
                )
            ),
        )
    });
    if let Some(began) = began.transpose() {
        db::begun(conn, began)?;
    }
    let (assistant, joined, message_id, queued_variables) = found?;
    let (Some(mut assistant), Some(joined)) = (assistant, joined) else {
        return Err(ErrorCode::AssistantNotFound.into());
    };
    // A caller without tools (a chat widget that does not enable them) gets an assistant
    // without any: nothing reads them, offers them to the model or reserves for their rounds.
    if !caller.tools {
        assistant.tool_ids.clear();
    }
    let variables = Value::Object(request.variables.clone().unwrap_or_default());
    check_variables_size(&joined, &variables, queued_variables.unwrap_or_default())?;
    Ok(Found {
        assistant,
        joined,
        message_id,
        variables,
    })
}

/// A message on its way into the queue.
struct Queueing<'a> {
    caller: Caller,
    claim: Option<&'a Claim>,
    assistant: &'a AssistantRow,
    joined: &'a Joined,
    message_id: Option<i64>,
    message: &'a str,
    variables: &'a Value,
    hold: Money,
}

/// The second pipeline: the message queued (refused if the queue is full); the prompt's
/// history and tools, for the turn is the message's at once unless another is queued before
/// it (then it reads them when its turn comes); then the hottest rows, just before the
/// COMMIT: the call counted on the key's row (refused past the limit, or if the key was
/// revoked) and, on the account's row, the reservation taken (refused past the balance) with
/// the `message.received` event. The key's row first: it is written by admissions only, and
/// they take the account's row in turn anyway. The commit does not wait for the disk: nothing
/// is answered or called on the strength of it before the tool journal's or the settlement's
/// commit, which do.
async fn second_flight(
    app: &App,
    conn: &mut AsyncPgConnection,
    queueing: &Queueing<'_>,
) -> ReplyResult<(
    Enqueued,
    Option<Vec<PromptLine>>,
    Option<Vec<ToolRow>>,
    WindowCount,
)> {
    let settings = &app.settings;
    let (joined, account_id) = (queueing.joined, queueing.caller.account_id);
    let new = NewQueued {
        message_id: queueing.message_id,
        conversation_id: joined.id,
        account_id,
        seq: joined.seq,
        content: queueing.message,
        variables: queueing.variables,
        hold: queueing.hold.subunits(),
        lease: settings.reply_lease,
        queue_limit: settings.conversation_queue_limit,
    };
    let received = NewEvent {
        account_id,
        kind: EventType::MessageReceived,
        conversation_id: joined.id,
        message_seq: Some(joined.seq),
        error_code: None,
    };
    let tool_ids = &queueing.assistant.tool_ids;
    let first_page =
        HistoryWalk::new(joined.seq, HISTORY_PAGE, joined.memory.through_seq).next_page();
    let (before, span) = first_page.unwrap_or_default();
    let pipe: &AsyncPgConnection = conn;
    let (mut c1, mut c2, mut c3, mut c4, mut c5, mut c6, mut c7) =
        (pipe, pipe, pipe, pipe, pipe, pipe, pipe);
    let attach = async {
        match (queueing.claim, queueing.message_id) {
            // The claim is this transaction's own row: it cannot be lost meanwhile.
            (Some(claim), Some(id)) => claim.attach_message(&mut c2, id).await,
            _ => Ok(()),
        }
    };
    let (enqueued, attached, page, tools, counted, reserved, commit) = futures::join!(
        pending_reply::enqueue_message(&mut c1, &new),
        attach,
        db::when(
            first_page.is_some(),
            message::prompt_page_before(&mut c3, joined.id, before, span)
        ),
        db::when(
            !tool_ids.is_empty(),
            tool::find_many(&mut c4, account_id, tool_ids)
        ),
        api_key::count_call(
            &mut c5,
            queueing.caller.api_key_id,
            settings.rate_limit_per_minute
        ),
        event::insert_moving_balance(&mut c6, &received, -queueing.hold.subunits()),
        db::pipelined_commit(&mut c7, Commit::WithoutWaitingForDisk),
    );
    let outcome = (|| {
        let enqueued = enqueued?;
        attached?;
        let (page, tools, counted) = (page?, tools?, counted?);
        reserved?;
        Ok::<_, ReplyError>((enqueued, page, tools, counted))
    })();
    db::committed(conn, outcome, commit).await
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
        claim.complete(conn, 200, &answer).await?;
    }
    let counted = api_key::count_call(conn, caller.api_key_id, limit).await?;
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

/// The conversation's variables, with those of the messages still queued (`queued`) and this
/// one's, may not outgrow [`MAX_CONVERSATION_VARIABLES_BYTES`] serialized.
fn check_variables_size(
    joined: &Joined,
    variables: &Value,
    queued: Vec<Option<Value>>,
) -> ReplyResult<()> {
    let Some(new) = variables.as_object().filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let mut merged: Map<String, Value> = joined.variables.as_object().cloned().unwrap_or_default();
    for earlier in queued.into_iter().flatten() {
        merged.extend(crate::models::object(earlier));
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

/// The prompt's fixed parts: the system prompt (with the handoff's instructions) and greeting
/// filled from the variables (the assistant's defaults, the conversation's own, then this
/// message's), and the message.
fn start_prompt(
    app: &App,
    assistant: &AssistantRow,
    message: &str,
    message_variables: &Value,
    own_variables: &Value,
) -> PromptBudget {
    let mut variables = crate::models::overlay_variables(&assistant.variables, own_variables);
    variables.extend(message_variables.as_object().cloned().unwrap_or_default());
    let mut system = render(&assistant.system_prompt, &variables);
    if let Some(handoff) = assistant.handoff() {
        // Counted among the prompt's fixed parts, so reserved for.
        let instructions = render(handoff.instructions_or_default(), &variables);
        system = match system.trim() {
            "" => instructions,
            _ => format!("{}\n\n{instructions}", system.trim_end()),
        };
    }
    PromptBudget::new(
        system,
        assistant
            .initial_message
            .as_deref()
            .map(|greeting| render(greeting, &variables)),
        message.to_owned(),
        app.settings.context_token_budget,
    )
}

/// Fills the prompt with the newest history after the summary's end (`floor`) that fits and
/// reads the assistant's tools; `first_page` and `tools` if they were read already.
async fn finish_prompt(
    conn: &mut AsyncPgConnection,
    turn: &Turn,
    mut prompt: PromptBudget,
    floor: i64,
    mut first_page: Option<Vec<PromptLine>>,
    tools: Option<Vec<ToolRow>>,
) -> ReplyResult<Prepared> {
    let mut walk = HistoryWalk::new(turn.seq, HISTORY_PAGE, floor);
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
        forgotten: walk.dropped_through(),
    })
}

/// The prompt of a message whose turn came after waiting: read now, in one read-only
/// transaction, as the replies before it changed the history and the variables; `None` if
/// the conversation's AI was turned off meanwhile (a reply before it handed over, say).
pub async fn prepare_after_waiting(app: &App, turn: &Turn) -> ReplyResult<Option<Prepared>> {
    let mut conn = app.db().await?;
    conn.build_transaction()
        .read_only()
        .run::<_, ReplyError, _>(async |conn| {
            let (own, ai_enabled, memory) =
                conversation::variables_and_ai(conn, turn.conversation_id).await?;
            if !ai_enabled {
                return Ok(None);
            }
            let mut prompt =
                start_prompt(app, &turn.assistant, &turn.message, &turn.variables, &own);
            prompt.remember(memory.summary.as_deref());
            finish_prompt(conn, turn, prompt, memory.through_seq, None, None)
                .await
                .map(Some)
        })
        .await
}
