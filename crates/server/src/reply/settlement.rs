//! The end of a turn: the reply recorded and charged in one transaction, or the turn given
//! up, its reservation refunded and its message removed. Either way a message waiting behind
//! it is woken.

use anyreply_core::ErrorCode;
use anyreply_core::wire::{EventType, GenerateReplyResponse};
use axum::http::StatusCode;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::TryFutureExt;

use super::error::{ReplyError, ReplyResult};
use super::{Conversed, Turn};
use crate::app::App;
use crate::db::{self, Tail};
use crate::idempotency::Claim;
use crate::models::event::{self, NewEvent};
use crate::models::message::{self, NewReply};
use crate::models::settlement_due::{self, Due};
use crate::models::{account, conversation, pending_reply};

/// Records the reply, settles its cost against the reservation and stores the answer under the
/// request's idempotency `claim`, in one transaction. Rows are locked in one order everywhere:
/// the conversation, then the account, whose row is the hottest and so locked last.
///
/// What goes to the account's row (the unused reservation back, the `reply.created` event) is
/// stored as a [`Due`] and paid just after, in a transaction that does not wait for the disk:
/// the settlement's own commit waits for it, and so holds no row that the account's other
/// replies need while it does.
pub async fn settle(
    app: &App,
    turn: &Turn,
    reply: &Conversed,
    claim: Option<&Claim>,
) -> ReplyResult<()> {
    let cost = reply.cost.subunits();
    let hold = turn.hold.subunits();
    let tokens = (
        i64::from(reply.usage.prompt_tokens),
        i64::from(reply.usage.completion_tokens),
    );
    let new_reply = |charged| NewReply {
        conversation_id: turn.conversation_id,
        turn_id: turn.message_id,
        turn_seq: turn.seq,
        content: &reply.text,
        function_calls: serde_json::to_value(&reply.function_calls).unwrap_or_default(),
        cost: charged,
        prompt_tokens: i32::try_from(reply.usage.prompt_tokens).unwrap_or(i32::MAX),
        completion_tokens: i32::try_from(reply.usage.completion_tokens).unwrap_or(i32::MAX),
        model: &reply.model,
    };
    let answer = claim.map(|_| GenerateReplyResponse {
        coalesced: false,
        success: true,
        conversation_id: turn.conversation_id,
        customer_identifier: turn.customer_identifier.clone(),
        reply: reply.text.clone(),
        function_calls: reply.function_calls.clone(),
        ai_disabled: false,
        opted_out: false,
    });
    let due = |refund| Due {
        message_id: turn.message_id,
        account_id: turn.account_id,
        conversation_id: turn.conversation_id,
        reply_seq: turn.seq + 1,
        refund,
    };
    let mut conn = app.db().await?;
    let recorded = async {
        let conn: &mut AsyncPgConnection = &mut conn;
        // Within the reservation (as it should be), the reply is recorded in one pipeline, with
        // the BEGIN: the conversation's row first (a message admitted from now on waits for
        // this commit and then finds this turn over; one admitted before is seen by `take` as a
        // waiter).
        let (taken, due) = if cost <= hold {
            let recorded = new_reply(cost);
            let due = due(hold - cost);
            let pipe: &AsyncPgConnection = conn;
            let (mut c0, mut c1, mut c2, mut c3, mut c4, mut c5) =
                (pipe, pipe, pipe, pipe, pipe, pipe);
            let stored = async {
                match (claim, &answer) {
                    (Some(claim), Some(answer)) => {
                        claim.complete(&mut c4, StatusCode::OK, answer).await
                    }
                    _ => Ok(()),
                }
            };
            let (began, recorded) = futures::join!(db::begin_pipelined(&mut c0), async {
                futures::try_join!(
                    conversation::count_reply(
                        &mut c1,
                        turn.conversation_id,
                        &turn.variables,
                        cost,
                        tokens
                    )
                    .map_err(ReplyError::from),
                    pending_reply::take(&mut c2, turn.conversation_id, turn.message_id)
                        .map_err(ReplyError::from),
                    message::insert_reply(&mut c3, &recorded).map_err(ReplyError::from),
                    stored.map_err(ReplyError::from),
                    settlement_due::insert(&mut c5, &due).map_err(ReplyError::from),
                )
            });
            db::begun(conn, began)?;
            let ((), taken, (), (), ()) = recorded?;
            (taken, due)
        } else {
            // Past it, what the balance can still pay is charged, on the account's row now.
            db::begin(conn).await?;
            conversation::count_reply(conn, turn.conversation_id, &turn.variables, 0, tokens)
                .await?;
            let taken = pending_reply::take(conn, turn.conversation_id, turn.message_id).await?;
            let due = due(0);
            if let Some(taken) = &taken {
                let charged = account::charge(conn, taken.account_id, taken.hold, cost).await?;
                conversation::add_cost(conn, turn.conversation_id, charged).await?;
                message::insert_reply(conn, &new_reply(charged)).await?;
                if let (Some(claim), Some(answer)) = (claim, &answer) {
                    claim.complete(conn, StatusCode::OK, answer).await?;
                }
                settlement_due::insert(conn, &due).await?;
            }
            (taken, due)
        };
        let taken = taken.ok_or(ReplyError::Superseded)?;
        Ok(((due, taken.waiters), Tail::default()))
    }
    .await;
    let (due, waiters) = db::end::<_, ReplyError>(&mut conn, recorded).await?;
    // The reply is settled and answerable from here; should paying fail, the sweep pays.
    let mut pay = Tail::default().then(&settlement_due::pay_statement(&due));
    if waiters {
        pay = pay.then(&pending_reply::announce_statement(turn.conversation_id));
    }
    if let Err(error) = db::run_alone(&mut conn, pay.without_waiting_for_disk()).await {
        tracing::warn!(%error, "could not pay a settled reply's due; the sweep will");
    }
    Ok(())
}

/// Pays the dues whose reply could not (the database lost, the process killed, just after
/// settling): those stored over a minute ago. Run by the sweep.
pub async fn pay_dues_left_unpaid(app: &App) -> ReplyResult<()> {
    let mut conn = app.db().await?;
    let before = chrono::Utc::now() - chrono::Duration::minutes(1);
    for due in settlement_due::left_unpaid(&mut conn, before, 1000).await? {
        db::run_alone(
            &mut conn,
            Tail::default().then(&settlement_due::pay_statement(&due)),
        )
        .await?;
    }
    Ok(())
}

/// Ends a turn that a later message of its burst answers instead (see the assistant's
/// `coalesce_ms`): the message stays in the history, its variables join the conversation, its
/// reservation is given back, its idempotent answer says `coalesced`, and the message behind
/// it is woken. Nothing is charged.
pub async fn coalesce(
    app: &App,
    turn: &Turn,
    answer: &GenerateReplyResponse,
    claim: Option<&Claim>,
) -> ReplyResult<()> {
    let mut conn = app.db().await?;
    db::begin(&mut conn).await?;
    let coalesced = async {
        let conn: &mut AsyncPgConnection = &mut conn;
        conversation::merge_variables(conn, turn.conversation_id, &turn.variables).await?;
        let taken = pending_reply::take(conn, turn.conversation_id, turn.message_id)
            .await?
            .ok_or(ReplyError::Superseded)?;
        if let Some(claim) = claim {
            claim.complete(conn, StatusCode::OK, answer).await?;
        }
        // The account's row, the hottest, in the tail.
        let mut tail =
            Tail::default().then(&account::refund_statement(taken.account_id, taken.hold));
        if taken.waiters {
            tail = tail.then(&pending_reply::announce_statement(turn.conversation_id));
        }
        Ok(((), tail))
    }
    .await;
    db::end(&mut conn, coalesced).await
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
/// saying `why` when it is known. Call inside a transaction.
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
        // Before the message goes: the event shows it.
        let failed = NewEvent {
            account_id: turn.account_id,
            kind: EventType::ReplyFailed,
            conversation_id: turn.conversation_id,
            message_seq: message::seq_of(conn, turn.message_id).await?,
            error_code: why,
        };
        event::insert(conn, &failed).await?;
        message::delete(conn, turn.message_id).await?;
        pending_reply::announce(conn, turn.conversation_id).await?;
    }
    Ok(())
}
