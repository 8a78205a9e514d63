//! `pending_replies`: the customer messages of each conversation waiting for, or getting, their
//! reply, with the money reserved for it and the lease of the process producing it.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Double, Int8, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::{Conn, KeepPrepared};
use crate::schema::pending_replies;

/// A customer message to store and queue for a reply.
#[derive(Debug)]
pub struct NewQueued<'a> {
    /// Its id, if taken from the sequence already ([`crate::models::message::next_id`]).
    pub message_id: Option<i64>,
    pub conversation_id: Uuid,
    pub account_id: i64,
    /// Its place in the history.
    pub seq: i64,
    pub content: &'a str,
    pub variables: &'a serde_json::Value,
    /// Sub-units reserved from the balance for its reply.
    pub hold: i64,
    pub lease: Duration,
    /// The most messages the conversation may have queued.
    pub queue_limit: u32,
}

/// A message queued in its conversation.
#[derive(Debug, QueryableByName)]
pub struct Enqueued {
    /// Messages queued before it.
    #[diesel(sql_type = Int8)]
    pub queued_before: i64,
    #[diesel(sql_type = Int8)]
    pub message_id: i64,
}

/// The refusal of a message whose conversation's queue is full (see [`enqueue_message`]).
const QUEUE_FULL: &str = "conversation_queue_full";

/// Stores the customer message (its own turn) and queues it for a reply, in one statement; a
/// full queue fails it ([`queue_full`]), so that a pipelined COMMIT behind it rolls back. Run
/// it after the conversation's row is locked: its snapshot then holds every message queued
/// before.
pub async fn enqueue_message(conn: &mut impl Conn, new: &NewQueued<'_>) -> QueryResult<Enqueued> {
    diesel::sql_query(format!(
        "WITH queue AS (
             SELECT CASE WHEN count(*) < $8 THEN count(*) ELSE anyreply_refuse('{QUEUE_FULL}') END AS queued
             FROM pending_replies WHERE conversation_id = $1),
         message AS (
             INSERT INTO messages (id, turn_id, conversation_id, seq, role, content, variables)
             SELECT n.id, n.id, $1, $3, 'user', $4, $5
             FROM (SELECT coalesce($9, nextval('messages_id_seq')) AS id) AS n, queue
             RETURNING id),
         queued AS (
             INSERT INTO pending_replies (message_id, conversation_id, account_id, hold, lease_until)
             SELECT id, $1, $2, $6, now() + make_interval(secs => $7) FROM message
             RETURNING message_id)
         SELECT queue.queued AS queued_before, (SELECT message_id FROM queued) AS message_id FROM queue"
    ))
    .bind::<SqlUuid, _>(new.conversation_id)
    .bind::<Int8, _>(new.account_id)
    .bind::<Int8, _>(new.seq)
    .bind::<Text, _>(new.content)
    .bind::<diesel::sql_types::Jsonb, _>(new.variables)
    .bind::<Int8, _>(new.hold)
    .bind::<Double, _>(new.lease.as_secs_f64())
    .bind::<Int8, _>(i64::from(new.queue_limit))
    .bind::<diesel::sql_types::Nullable<Int8>, _>(new.message_id)
    .keep_prepared()
    .get_result(conn)
    .await
}

/// Whether `error` is [`enqueue_message`]'s refusal of a full queue.
pub fn queue_full(error: &diesel::result::Error) -> bool {
    crate::db::violates(error, QUEUE_FULL)
}

/// Where a queued message stands.
#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct TurnState {
    /// The message is still queued (not reclaimed as abandoned).
    #[diesel(sql_type = Bool)]
    pub queued: bool,
    /// An earlier message of the conversation is being answered.
    #[diesel(sql_type = Bool)]
    pub blocked: bool,
    /// An earlier message was left behind by a process that died.
    #[diesel(sql_type = Bool)]
    pub abandoned: bool,
}

pub async fn turn_state(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    message_id: i64,
) -> QueryResult<TurnState> {
    diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pending_replies WHERE message_id = $2) AS queued,
                EXISTS (SELECT 1 FROM pending_replies WHERE conversation_id = $1
                        AND message_id < $2 AND lease_until > now()) AS blocked,
                EXISTS (SELECT 1 FROM pending_replies WHERE conversation_id = $1
                        AND message_id < $2 AND lease_until <= now()) AS abandoned",
    )
    .bind::<SqlUuid, _>(conversation_id)
    .bind::<Int8, _>(message_id)
    .keep_prepared()
    .get_result(conn)
    .await
}

/// The idempotency claims to renew beside the replies: parallel columns of their keys. Its
/// `Debug` shows how many, not the keys, which are never logged.
#[derive(Default)]
pub struct HeldKeys {
    pub account_ids: Vec<i64>,
    pub keys: Vec<String>,
    pub tokens: Vec<Uuid>,
}

impl std::fmt::Debug for HeldKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldKeys")
            .field("count", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// Renews, in one statement, the leases of all `message_ids` and the claims of `keys` (a
/// claim only while its holder's token matches and it has no answer).
pub async fn renew_leases(
    conn: &mut AsyncPgConnection,
    lease: Duration,
    message_ids: &[i64],
    keys: &HeldKeys,
) -> QueryResult<()> {
    diesel::sql_query(
        "WITH replies AS (
             UPDATE pending_replies SET lease_until = now() + make_interval(secs => $1)
             WHERE message_id = ANY ($2))
         UPDATE idempotency_keys k SET locked_until = now() + make_interval(secs => $1)
         FROM unnest($3::int8[], $4::text[], $5::uuid[]) AS held (account_id, key, token)
         WHERE k.account_id = held.account_id AND k.key = held.key AND k.token = held.token
           AND k.response_status IS NULL",
    )
    .bind::<Double, _>(lease.as_secs_f64())
    .bind::<Array<Int8>, _>(message_ids)
    .bind::<Array<Int8>, _>(&keys.account_ids)
    .bind::<Array<Text>, _>(&keys.keys)
    .bind::<Array<SqlUuid>, _>(&keys.tokens)
    .keep_prepared()
    .execute(conn)
    .await
    .map(drop)
}

/// A queued reply taken off the queue to be recorded.
#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct Taken {
    #[diesel(sql_type = Int8)]
    pub account_id: i64,
    #[diesel(sql_type = Int8)]
    pub hold: i64,
    /// A later message of the conversation waits for this one.
    #[diesel(sql_type = Bool)]
    pub waiters: bool,
}

/// Removes `message_id` from the queue; `None` if it was no longer queued (reclaimed).
pub async fn take(
    conn: &mut impl Conn,
    conversation_id: Uuid,
    message_id: i64,
) -> QueryResult<Option<Taken>> {
    diesel::sql_query(
        "WITH taken AS (DELETE FROM pending_replies WHERE message_id = $2 RETURNING account_id, hold)
         SELECT account_id, hold,
                EXISTS (SELECT 1 FROM pending_replies WHERE conversation_id = $1 AND message_id > $2) AS waiters
         FROM taken",
    )
    .bind::<SqlUuid, _>(conversation_id)
    .bind::<Int8, _>(message_id)
    .keep_prepared()
    .get_result(conn)
    .await
    .optional()
}

/// Whether a later message of the conversation, stored less than `window_ms` after
/// `message_id`, is queued behind it: the next message of its burst.
pub async fn next_of_burst(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    message_id: i64,
    window_ms: i32,
) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Later {
        #[diesel(sql_type = Bool)]
        later: bool,
    }
    let found: Later = diesel::sql_query(
        "SELECT EXISTS (
             SELECT 1 FROM pending_replies p
             JOIN messages later ON later.id = p.message_id
             JOIN messages this ON this.id = $2
             WHERE p.conversation_id = $1 AND p.message_id > $2
               AND later.created_at < this.created_at + make_interval(secs => $3 / 1000.0)
         ) AS later",
    )
    .bind::<SqlUuid, _>(conversation_id)
    .bind::<Int8, _>(message_id)
    .bind::<diesel::sql_types::Int4, _>(window_ms)
    .keep_prepared()
    .get_result(conn)
    .await?;
    Ok(found.later)
}

/// A queued reply removed without being answered.
#[derive(Debug, Clone, Copy, Queryable)]
pub struct Removed {
    pub message_id: i64,
    pub conversation_id: Uuid,
    pub account_id: i64,
    pub hold: i64,
}

/// Removes the queued replies among `message_ids` (with `expired_only`, only those whose lease
/// ran out: a renewal that landed since they were found keeps its turn). Deleting first makes
/// concurrent removals of one turn harmless: only one gets the row.
pub async fn remove(
    conn: &mut AsyncPgConnection,
    message_ids: &[i64],
    expired_only: bool,
) -> QueryResult<Vec<Removed>> {
    let returned = (
        pending_replies::message_id,
        pending_replies::conversation_id,
        pending_replies::account_id,
        pending_replies::hold,
    );
    let chosen = pending_replies::table.filter(pending_replies::message_id.eq_any(message_ids));
    if expired_only {
        diesel::delete(chosen.filter(pending_replies::lease_until.le(diesel::dsl::now)))
            .returning(returned)
            .get_results(conn)
            .await
    } else {
        diesel::delete(chosen)
            .returning(returned)
            .get_results(conn)
            .await
    }
}

/// Queued replies whose lease ran out: of one conversation before a message, or everywhere.
pub async fn expired(
    conn: &mut AsyncPgConnection,
    before: Option<(Uuid, i64)>,
) -> QueryResult<Vec<i64>> {
    let mut query = pending_replies::table
        .filter(pending_replies::lease_until.le(diesel::dsl::now))
        .select(pending_replies::message_id)
        .into_boxed();
    if let Some((conversation_id, message_id)) = before {
        query = query
            .filter(pending_replies::conversation_id.eq(conversation_id))
            .filter(pending_replies::message_id.lt(message_id));
    }
    query.load(conn).await
}

/// The channel settled and released turns are announced on; the payload is the conversation.
pub const CHANNEL: &str = "anyreply_turns";

/// Subscribes the connection to [`CHANNEL`].
pub async fn listen(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(conn)
        .await
        .map(drop)
}

/// Announces, at commit, that a turn of `conversation_id` is over.
pub async fn announce(conn: &mut impl Conn, conversation_id: Uuid) -> QueryResult<()> {
    diesel::sql_query(announce_sql("$1"))
        .bind::<Text, _>(conversation_id.to_string())
        .keep_prepared()
        .execute(conn)
        .await
        .map(drop)
}

fn announce_sql(conversation_id: &str) -> String {
    format!("SELECT pg_notify('{CHANNEL}', {conversation_id})")
}
