//! The end of a turn: the reply recorded and charged in one transaction, or the turn given
//! up, its reservation refunded and its message removed. Either way a message waiting behind
//! it is woken.

use anyreply_core::ErrorCode;
use anyreply_core::wire::{EventType, GenerateReplyResponse};
use diesel_async::{AsyncConnection, AsyncPgConnection};

use super::error::{ReplyError, ReplyResult};
use super::{Conversed, Turn, handoff};
use crate::app::App;
use crate::db::{self, Commit};
use crate::idempotency::Claim;
use crate::models::event::{self, NewEvent};
use crate::models::message::{self, NewReply};
use crate::models::settlement_due::{self, Due, Settled};
use crate::models::{account, conversation, pending_reply};

/// Records the reply, settles its cost against the reservation and stores the answer under the
/// request's idempotency `claim`, in one transaction. Rows are locked in one order everywhere:
/// the turn's queue row, the conversation's, then the account's, whose row is the hottest and
/// so locked last.
///
/// What goes to the account's row (the unused reservation back, the `reply.created` event) is
/// stored as a [`Due`] and paid just after, pipelined behind the settlement's commit, in a
/// transaction that does not wait for the disk: the settlement's own commit waits for it, and
/// so holds no row that the account's other replies need while it does.
pub async fn settle(
    app: &App,
    turn: &Turn,
    reply: &Conversed,
    claim: Option<&Claim>,
) -> ReplyResult<()> {
    let settling = Settling {
        turn,
        reply,
        cost: reply.cost.subunits(),
        hold: turn.hold.subunits(),
    };
    let mut conn = app.db().await?;
    // A handoff's writes join the reply's in a transaction.
    if settling.within_hold() && claim.is_none() && reply.handoff.is_none() {
        settle_in_one_statement(&conn, &settling).await
    } else {
        settle_in_transaction(&mut conn, &settling, claim).await
    }
}

/// A reply being settled: its cost and its reservation, in subunits.
struct Settling<'a> {
    turn: &'a Turn,
    reply: &'a Conversed,
    cost: i64,
    hold: i64,
}

impl Settling<'_> {
    fn within_hold(&self) -> bool {
        self.cost <= self.hold
    }

    /// The reply's message, `charged` what it cost.
    fn new_reply(&self, charged: i64) -> NewReply<'_> {
        let (turn, reply) = (self.turn, self.reply);
        NewReply {
            conversation_id: turn.conversation_id,
            turn_id: turn.message_id,
            turn_seq: turn.seq,
            content: &reply.text,
            function_calls: serde_json::to_value(&reply.function_calls).unwrap_or_default(),
            cost: charged,
            prompt_tokens: i32::try_from(reply.usage.prompt_tokens).unwrap_or(i32::MAX),
            completion_tokens: i32::try_from(reply.usage.completion_tokens).unwrap_or(i32::MAX),
            model: &reply.model,
            knowledge: (!reply.knowledge.is_empty())
                .then(|| serde_json::to_value(&reply.knowledge).unwrap_or_default()),
        }
    }

    /// What the reply owes the account's row: `refund` of its reservation, and its event.
    fn due(&self, refund: i64) -> Due {
        Due {
            message_id: self.turn.message_id,
            account_id: self.turn.account_id,
            conversation_id: self.turn.conversation_id,
            reply_seq: self.turn.seq + 1,
            refund,
        }
    }
}

/// The common case, within the reservation and without a key: one statement, its own
/// transaction, and the payment pipelined behind it.
async fn settle_in_one_statement(
    conn: &AsyncPgConnection,
    settling: &Settling<'_>,
) -> ReplyResult<()> {
    let within_hold = settling.new_reply(settling.cost);
    let settled = Settled {
        reply: &within_hold,
        variables: &settling.turn.variables,
    };
    let due = settling.due(settling.hold - settling.cost);
    let (mut c1, mut c2) = (conn, conn);
    let (settlement, paid) = futures::join!(
        settlement_due::settle_within_hold(&mut c1, &settled),
        settlement_due::pay(&mut c2, &due),
    );
    if !settlement? {
        return Err(ReplyError::Superseded);
    }
    note_unpaid(paid);
    Ok(())
}

/// Past the reservation, or with a key's answer to store: a transaction of two round trips,
/// the second its durable COMMIT with the payment behind it.
async fn settle_in_transaction(
    conn: &mut AsyncPgConnection,
    settling: &Settling<'_>,
    claim: Option<&Claim>,
) -> ReplyResult<()> {
    db::begin(conn).await?;
    let due = match record(conn, settling, claim).await {
        Ok(due) => due,
        Err(error) => return db::end(conn, Err(error)).await,
    };
    let pipe: &AsyncPgConnection = conn;
    let (mut c1, mut c2) = (pipe, pipe);
    let (commit, paid) = futures::join!(
        db::pipelined_commit(&mut c1, Commit::Durable),
        settlement_due::pay(&mut c2, &due),
    );
    db::committed(conn, Ok::<_, ReplyError>(()), commit).await?;
    note_unpaid(paid);
    Ok(())
}

/// The transaction's statements: the reply recorded and charged, under a key its answer
/// stored, and a handoff's AI switch and events; the due to pay after the commit.
async fn record(
    conn: &mut AsyncPgConnection,
    settling: &Settling<'_>,
    claim: Option<&Claim>,
) -> ReplyResult<Due> {
    let (turn, reply) = (settling.turn, settling.reply);
    let due = if settling.within_hold() {
        let within_hold = settling.new_reply(settling.cost);
        let settled = Settled {
            reply: &within_hold,
            variables: &turn.variables,
        };
        if !settlement_due::settle_within_hold(conn, &settled).await? {
            return Err(ReplyError::Superseded);
        }
        settling.due(settling.hold - settling.cost)
    } else {
        charge_past_hold(conn, settling).await?
    };
    if let Some(claim) = claim {
        let answer = GenerateReplyResponse {
            coalesced: false,
            success: true,
            conversation_id: turn.conversation_id,
            customer_identifier: turn.customer_identifier.clone(),
            reply: reply.text.clone(),
            function_calls: reply.function_calls.clone(),
            ai_disabled: reply.handoff.is_some(),
            opted_out: false,
        };
        claim.complete(conn, 200, &answer).await?;
    }
    if let Some(reason) = &reply.handoff {
        handoff::record(conn, turn, reason).await?;
    }
    Ok(due)
}

/// Past the reservation, what the balance can still pay is charged, on the account's row now;
/// nothing is left to refund.
async fn charge_past_hold(
    conn: &mut AsyncPgConnection,
    settling: &Settling<'_>,
) -> ReplyResult<Due> {
    let (turn, reply) = (settling.turn, settling.reply);
    let tokens = (
        i64::from(reply.usage.prompt_tokens),
        i64::from(reply.usage.completion_tokens),
    );
    conversation::count_reply(conn, turn.conversation_id, &turn.variables, 0, tokens).await?;
    let taken = pending_reply::take(conn, turn.conversation_id, turn.message_id)
        .await?
        .ok_or(ReplyError::Superseded)?;
    let charged = account::charge(conn, taken.account_id, taken.hold, settling.cost).await?;
    conversation::add_cost(conn, turn.conversation_id, charged).await?;
    message::insert_reply(conn, &settling.new_reply(charged)).await?;
    let due = settling.due(0);
    settlement_due::insert(conn, &due).await?;
    Ok(due)
}

/// The reply is settled and answerable whatever became of its due's payment: should paying
/// have failed, the sweep pays.
fn note_unpaid(paid: diesel::QueryResult<()>) {
    if let Err(error) = paid {
        tracing::warn!(%error, "could not pay a settled reply's due; the sweep will");
    }
}

/// Pays the dues whose reply could not (the database lost, the process killed, just after
/// settling): those stored over a minute ago. Run by the sweep.
pub async fn pay_dues_left_unpaid(app: &App) -> ReplyResult<()> {
    pay_dues_older_than(app, chrono::Duration::minutes(1)).await
}

/// Pays every due, however young: after PostgreSQL restarted, whose crash may have taken
/// payments that did not wait for the disk. Whoever pays a due deletes it, so none is paid
/// twice, even when its reply's own payment comes after.
pub async fn pay_dues_after_a_restart(app: &App) -> ReplyResult<()> {
    pay_dues_older_than(app, chrono::Duration::zero()).await
}

async fn pay_dues_older_than(app: &App, age: chrono::Duration) -> ReplyResult<()> {
    let mut conn = app.db().await?;
    let before = chrono::Utc::now() - age;
    for due in settlement_due::left_unpaid(&mut conn, before, 1000).await? {
        settlement_due::pay(&mut conn, &due).await?;
    }
    Ok(())
}

/// Ends a turn that gets no reply of its own: a later message of its burst answers instead
/// (see the assistant's `coalesce_ms`), or the conversation's AI was turned off while it
/// waited. The message stays in the history, its variables join the conversation, its
/// reservation is given back, its idempotent answer (`answer`) is stored, and the message
/// behind it is woken. Nothing is charged.
pub async fn end_unanswered(
    app: &App,
    turn: &Turn,
    answer: &GenerateReplyResponse,
    claim: Option<&Claim>,
) -> ReplyResult<()> {
    let mut conn = app.db().await?;
    db::begin(&mut conn).await?;
    let taken = async {
        let conn: &mut AsyncPgConnection = &mut conn;
        conversation::merge_variables(conn, turn.conversation_id, &turn.variables).await?;
        let taken = pending_reply::take(conn, turn.conversation_id, turn.message_id)
            .await?
            .ok_or(ReplyError::Superseded)?;
        if let Some(claim) = claim {
            claim.complete(conn, 200, answer).await?;
        }
        Ok::<_, ReplyError>(taken)
    }
    .await;
    let taken = match taken {
        Ok(taken) => taken,
        Err(error) => return db::end(&mut conn, Err(error)).await,
    };
    // The account's row, the hottest, last, pipelined with the COMMIT.
    let pipe: &AsyncPgConnection = &conn;
    let (mut c1, mut c2, mut c3) = (pipe, pipe, pipe);
    let (refunded, announced, commit) = futures::join!(
        account::refund(&mut c1, taken.account_id, taken.hold),
        db::when(
            taken.waiters,
            pending_reply::announce(&mut c2, turn.conversation_id)
        ),
        db::pipelined_commit(&mut c3, Commit::Durable),
    );
    let outcome = refunded.and(announced).map(drop).map_err(ReplyError::from);
    db::committed(&mut conn, outcome, commit).await
}

/// Gives up a turn whose reply failed: the reservation is refunded and the customer's
/// message removed, so the failed call leaves no trace and a retry starts clean.
pub async fn abandon(app: &App, turn: &Turn, why: ErrorCode) -> ReplyResult<()> {
    let mut conn = app.db().await?;
    conn.transaction::<_, ReplyError, _>(async |conn| {
        release(conn, &[turn.message_id], false, Some(why)).await
    })
    .await
}

/// Refunds and removes the queued replies among `message_ids` (with `expired_only`, those
/// whose lease ran out), waking what waits behind them, each with a `reply.failed` event
/// saying `why` when it is known. Only the queued message goes: the earlier messages of its
/// burst (answered `coalesced`) stay in the history, unanswered, and so in the next reply's
/// prompt. Call inside a transaction.
pub async fn release(
    conn: &mut AsyncPgConnection,
    message_ids: &[i64],
    expired_only: bool,
    why: Option<ErrorCode>,
) -> ReplyResult<()> {
    let mut released = pending_reply::remove(conn, message_ids, expired_only).await?;
    // Lock order, as everywhere: conversations, then accounts.
    released.sort_by_key(|r| (r.conversation_id, r.message_id));
    for turn in &released {
        conversation::uncount_message(conn, turn.conversation_id).await?;
        account::refund(conn, turn.account_id, turn.hold).await?;
        // Before the message goes: the event shows it, and names the earlier messages of its
        // burst, which stay for the conversation's next reply to answer.
        let failed = NewEvent {
            account_id: turn.account_id,
            kind: EventType::ReplyFailed,
            conversation_id: turn.conversation_id,
            message_seq: message::seq_of(conn, turn.message_id).await?,
            error_code: why,
        };
        event::insert_failed(conn, &failed).await?;
        message::delete(conn, turn.message_id).await?;
        pending_reply::announce(conn, turn.conversation_id).await?;
    }
    Ok(())
}
