//! `settlements_due`: what a settled reply still owes its account's row, the unused rest of
//! its reservation and its `reply.created` event.
//!
//! The settlement stores the due in its own transaction, which waits for the disk but locks no
//! row that the account's other replies write; the due is then paid in a transaction of its own
//! that need not wait for the disk ([`pay`]): lost in a crash, it is paid again by the sweep
//! ([`left_unpaid`]). Paying deletes the due in the same statement, so it is paid once
//! whoever pays.

use anyreply_core::wire::EventType;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int4, Int8, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::db::{Conn, KeepPrepared};
use crate::models::message::NewReply;
use crate::models::{event, pending_reply};
use crate::schema::settlements_due;

#[derive(Debug, Clone, Insertable, Queryable, Selectable)]
#[diesel(table_name = settlements_due)]
pub struct Due {
    /// The customer's message the reply answers.
    pub message_id: i64,
    pub account_id: i64,
    pub conversation_id: Uuid,
    /// The reply's place in the conversation.
    pub reply_seq: i64,
    /// What goes back to the balance, in subunits.
    pub refund: i64,
}

/// Stores `due`; for a settlement past its reservation (see [`settle_within_hold`]).
pub async fn insert(conn: &mut impl Conn, due: &Due) -> QueryResult<()> {
    diesel::insert_into(settlements_due::table)
        .values(due)
        .execute(conn)
        .await
        .map(drop)
}

/// A reply within its reservation, to record.
#[derive(Debug)]
pub struct Settled<'a> {
    pub reply: &'a NewReply<'a>,
    /// The variables its request brought, merged into the conversation's.
    pub variables: &'a serde_json::Value,
}

/// Settles a reply that cost no more than its reservation, in one statement that is its own
/// transaction: takes the turn off the queue, records the reply, counts it in the
/// conversation's totals (merging the request's variables) and stores the [`Due`] of the
/// reservation's rest. `false`, with nothing written, if the turn was no longer queued
/// (reclaimed). The turn's own queue row is locked before the conversation's, like a
/// release's.
pub async fn settle_within_hold(conn: &mut impl Conn, settled: &Settled<'_>) -> QueryResult<bool> {
    let reply = settled.reply;
    diesel::sql_query(
        "WITH taken AS (DELETE FROM pending_replies WHERE message_id = $1 RETURNING account_id, hold),
         counted AS (
             UPDATE conversations SET message_count = message_count + 1,
                 variables = variables || $3, total_cost = total_cost + $4,
                 prompt_tokens = prompt_tokens + $5, completion_tokens = completion_tokens + $6,
                 updated_at = now()
             FROM taken WHERE conversations.id = $2),
         reply AS (
             INSERT INTO messages (conversation_id, turn_id, seq, role, content, function_calls,
                                   cost, prompt_tokens, completion_tokens, model, knowledge)
             SELECT $2, $1, $7 + 1, 'assistant', $8, $9, $4, $5, $6, $10, $11 FROM taken),
         due AS (
             INSERT INTO settlements_due (message_id, account_id, conversation_id, reply_seq, refund)
             SELECT $1, account_id, $2, $7 + 1, hold - $4 FROM taken)
         SELECT 1 FROM taken",
    )
    .bind::<Int8, _>(reply.turn_id)
    .bind::<SqlUuid, _>(reply.conversation_id)
    .bind::<Jsonb, _>(settled.variables)
    .bind::<Int8, _>(reply.cost)
    .bind::<Int4, _>(reply.prompt_tokens)
    .bind::<Int4, _>(reply.completion_tokens)
    .bind::<Int8, _>(reply.turn_seq)
    .bind::<Text, _>(reply.content)
    .bind::<Jsonb, _>(&reply.function_calls)
    .bind::<Text, _>(reply.model)
    .bind::<Nullable<Jsonb>, _>(&reply.knowledge)
    .keep_prepared()
    .execute(conn)
    .await
    .map(|rows| rows == 1)
}

/// Pays `due` unless it was paid: the refund and the `reply.created` event, on the account's
/// row, in one statement that deletes the due and is its own transaction, whose commit does
/// not wait for the disk (lost in a crash, the due is still there for the sweep). It wakes a
/// message queued behind the reply ([`pending_reply::CHANNEL`]): read now, after the
/// settlement's commit, the queue holds every message admitted before it.
pub async fn pay(conn: &mut impl Conn, due: &Due) -> QueryResult<()> {
    let channel = pending_reply::CHANNEL;
    diesel::sql_query(format!(
        "{} SELECT set_config('synchronous_commit', 'off', true),
                   (SELECT count(*) FROM event) AS paid,
                   (SELECT pg_notify('{channel}', $3::text)
                    WHERE EXISTS (SELECT 1 FROM pending_replies WHERE conversation_id = $3)) AS woken",
        event::inserting(Some(
            "DELETE FROM settlements_due WHERE message_id = $7 RETURNING 1"
        ))
    ))
    .bind::<Int8, _>(due.account_id)
    .bind::<Text, _>(EventType::ReplyCreated.as_str())
    .bind::<SqlUuid, _>(due.conversation_id)
    .bind::<Nullable<Int8>, _>(Some(due.reply_seq))
    .bind::<Nullable<Text>, _>(None::<&str>)
    .bind::<Int8, _>(due.refund)
    .bind::<Int8, _>(due.message_id)
    .keep_prepared()
    .execute(conn)
    .await
    .map(drop)
}

/// Dues stored before `before` and still unpaid, oldest first, at most `limit`: those whose
/// reply's own payment was lost.
pub async fn left_unpaid(
    conn: &mut impl Conn,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Due>> {
    settlements_due::table
        .filter(settlements_due::created_at.lt(before))
        .order(settlements_due::message_id)
        .limit(limit)
        .select(Due::as_select())
        .load(conn)
        .await
}
