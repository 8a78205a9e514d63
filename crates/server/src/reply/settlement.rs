//! The end of a turn: the reply recorded and charged in one transaction, or the turn given
//! up, its reservation refunded and its message removed. Either way a message waiting behind
//! it is woken.

use anyreply_core::wire::GenerateReplyResponse;
use axum::http::StatusCode;
use diesel_async::{AsyncConnection, AsyncPgConnection};

use super::error::{ReplyError, ReplyResult};
use super::{Conversed, Turn};
use crate::app::App;
use crate::idempotency::Claim;
use crate::models::message::{self, NewReply};
use crate::models::{account, conversation, pending_reply};

/// Records the reply, settles its cost against the reservation and stores the answer under the
/// request's idempotency `claim`, in one transaction. Rows are locked in one order everywhere:
/// the conversation, then the account, whose row is the hottest and so locked last.
pub async fn settle(
    app: &App,
    turn: &Turn,
    reply: &Conversed,
    claim: Option<&Claim>,
) -> ReplyResult<()> {
    let mut conn = app.db().await?;
    conn.transaction::<_, ReplyError, _>(async |conn| {
        // The conversation's row first: a message admitted from now on waits for this commit
        // and then finds this turn over; one admitted before is seen by `take` as a waiter.
        conversation::count_reply(conn, turn.conversation_id, &turn.variables).await?;
        let taken = pending_reply::take(conn, turn.conversation_id, turn.message_id)
            .await?
            .ok_or(ReplyError::Superseded)?;
        let cost = reply.cost.subunits();
        // Within the reservation (as it should be), the unused rest goes back last of all;
        // past it, what the balance can still pay is charged.
        let charged = if cost <= taken.hold {
            cost
        } else {
            account::charge(conn, taken.account_id, taken.hold, cost).await?
        };
        message::insert_reply(
            conn,
            &NewReply {
                conversation_id: turn.conversation_id,
                turn_id: turn.message_id,
                turn_seq: turn.seq,
                content: &reply.text,
                function_calls: serde_json::to_value(&reply.function_calls).unwrap_or_default(),
                cost: charged,
                prompt_tokens: i32::try_from(reply.usage.prompt_tokens).unwrap_or(i32::MAX),
                completion_tokens: i32::try_from(reply.usage.completion_tokens).unwrap_or(i32::MAX),
            },
        )
        .await?;
        if let Some(claim) = claim {
            let answer = GenerateReplyResponse {
                success: true,
                conversation_id: turn.conversation_id,
                customer_identifier: turn.customer_identifier.clone(),
                reply: reply.text.clone(),
                function_calls: reply.function_calls.clone(),
                ai_disabled: false,
            };
            claim.complete(conn, StatusCode::OK, &answer).await?;
        }
        if taken.waiters {
            pending_reply::announce(conn, turn.conversation_id).await?;
        }
        if cost < taken.hold {
            account::refund(conn, taken.account_id, taken.hold - cost).await?;
        }
        Ok(())
    })
    .await
}

/// Gives up a turn whose reply failed: the reservation is refunded and the customer's
/// message removed, so the failed call leaves no trace and a retry starts clean.
pub async fn abandon(app: &App, turn: &Turn) -> ReplyResult<()> {
    let mut conn = app.db().await?;
    conn.transaction::<_, ReplyError, _>(async |conn| {
        release(conn, &[turn.message_id], false).await
    })
    .await
}

/// Refunds and removes the queued replies among `message_ids` (with `expired_only`, those
/// whose lease ran out), waking what waits behind them. Call inside a transaction.
pub async fn release(
    conn: &mut AsyncPgConnection,
    message_ids: &[i64],
    expired_only: bool,
) -> ReplyResult<()> {
    let mut released = pending_reply::remove(conn, message_ids, expired_only).await?;
    // Lock order, as everywhere: conversations, then accounts.
    released.sort_by_key(|r| (r.conversation_id, r.message_id));
    for turn in &released {
        conversation::uncount_message(conn, turn.conversation_id).await?;
        account::refund(conn, turn.account_id, turn.hold).await?;
        message::delete(conn, turn.message_id).await?;
        pending_reply::announce(conn, turn.conversation_id).await?;
    }
    Ok(())
}
