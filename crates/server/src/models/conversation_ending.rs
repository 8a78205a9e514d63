//! Conversations that end: the sweep's statement that ends those due, and the work each ending
//! leaves (`conversation_endings`), taken by one process at a time through a lease.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int4, Int8, Interval, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;

/// What an ending leaves to do next.
pub const EXTRACT: &str = "extract";
pub const NOTIFY: &str = "notify";

/// The most conversations one statement ends.
pub const ENDED_AT_ONCE: i64 = 200;

/// An ending's work, taken.
#[derive(Debug, Clone, QueryableByName)]
pub struct Ending {
    #[diesel(sql_type = SqlUuid)]
    pub conversation_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    pub ended_at: DateTime<Utc>,
    #[diesel(sql_type = Int8)]
    pub account_id: i64,
    #[diesel(sql_type = Text)]
    pub stage: String,
    /// Attempts of the webhook so far, this one not counted.
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub payload: Option<String>,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = Int8)]
    count: i64,
}

/// Ends up to [`ENDED_AT_ONCE`] conversations whose end has come, each leaving its work to
/// do; returns how many. One statement: a conversation locked by a reply (or by another
/// process ending it) is passed over, and ended by a later sweep if still due.
pub async fn end_due(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    let ended: Count = diesel::sql_query(
        "WITH due AS (
             SELECT id FROM conversations WHERE ends_at <= now()
             ORDER BY ends_at LIMIT $1 FOR UPDATE SKIP LOCKED),
         ended AS (
             UPDATE conversations c SET ends_at = NULL, ended_at = now()
             FROM due WHERE c.id = due.id
             RETURNING c.id, c.account_id, c.ended_at),
         work AS (
             INSERT INTO conversation_endings (conversation_id, ended_at, account_id, stage)
             SELECT id, ended_at, account_id, 'extract' FROM ended
             RETURNING 1)
         SELECT count(*) AS count FROM work",
    )
    .bind::<Int8, _>(ENDED_AT_ONCE)
    .keep_prepared()
    .get_result(conn)
    .await?;
    Ok(ended.count)
}

/// Takes up to `limit` endings whose work is due, for `lease`: no other process takes them
/// meanwhile, and a dead one's are taken again after it.
pub async fn take_due(
    conn: &mut AsyncPgConnection,
    lease: std::time::Duration,
    limit: i64,
) -> QueryResult<Vec<Ending>> {
    diesel::sql_query(
        "UPDATE conversation_endings e SET due_at = now() + $1
         FROM (SELECT conversation_id, ended_at FROM conversation_endings
               WHERE due_at <= now() ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) AS d
         WHERE e.conversation_id = d.conversation_id AND e.ended_at = d.ended_at
         RETURNING e.conversation_id, e.ended_at, e.account_id, e.stage, e.attempts, e.payload",
    )
    .bind::<Interval, _>(interval(lease))
    .bind::<Int8, _>(limit)
    .keep_prepared()
    .load(conn)
    .await
}

fn interval(duration: std::time::Duration) -> diesel::pg::data_types::PgInterval {
    diesel::pg::data_types::PgInterval::from_microseconds(
        i64::try_from(duration.as_micros()).unwrap_or(i64::MAX),
    )
}

/// When the next conversation ends or the next ending's work falls due, if any: both are
/// the first entry of an index.
pub async fn next_due(conn: &mut AsyncPgConnection) -> QueryResult<Option<DateTime<Utc>>> {
    #[derive(QueryableByName)]
    struct Next {
        #[diesel(sql_type = Nullable<Timestamptz>)]
        at: Option<DateTime<Utc>>,
    }
    let next: Next = diesel::sql_query(
        "SELECT least(
             (SELECT ends_at FROM conversations WHERE ends_at IS NOT NULL ORDER BY ends_at LIMIT 1),
             (SELECT due_at FROM conversation_endings ORDER BY due_at LIMIT 1)) AS at",
    )
    .keep_prepared()
    .get_result(conn)
    .await?;
    Ok(next.at)
}

/// The ending's extraction is recorded: its webhook is next (`payload`, due now), or, with
/// none, it is done.
pub async fn extracted(
    conn: &mut AsyncPgConnection,
    ending: &Ending,
    payload: Option<&str>,
) -> QueryResult<()> {
    let key = conversation_endings_key(ending);
    match payload {
        Some(payload) => diesel::update(key)
            .set((
                crate::schema::conversation_endings::stage.eq(NOTIFY),
                crate::schema::conversation_endings::payload.eq(payload),
                crate::schema::conversation_endings::due_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await
            .map(drop),
        None => done(conn, ending).await,
    }
}

type EndingKey =
    diesel::dsl::Find<crate::schema::conversation_endings::table, (Uuid, DateTime<Utc>)>;

fn conversation_endings_key(ending: &Ending) -> EndingKey {
    crate::schema::conversation_endings::table.find((ending.conversation_id, ending.ended_at))
}

/// The ending's work is over (its webhook delivered, or given up).
pub async fn done(conn: &mut AsyncPgConnection, ending: &Ending) -> QueryResult<()> {
    diesel::delete(conversation_endings_key(ending))
        .execute(conn)
        .await
        .map(drop)
}

/// The webhook failed: tried again after `pause`.
pub async fn retry_after(
    conn: &mut AsyncPgConnection,
    ending: &Ending,
    pause: std::time::Duration,
) -> QueryResult<()> {
    use crate::schema::conversation_endings::dsl;
    let due = Utc::now() + chrono::Duration::from_std(pause).unwrap_or(chrono::Duration::MAX);
    diesel::update(conversation_endings_key(ending))
        .set((dsl::attempts.eq(dsl::attempts + 1), dsl::due_at.eq(due)))
        .execute(conn)
        .await
        .map(drop)
}

/// Stores what the post-call schema found in the conversation.
pub async fn store_extracted(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    values: &serde_json::Value,
) -> QueryResult<()> {
    use crate::schema::conversations::dsl;
    diesel::update(dsl::conversations.find(conversation_id))
        .set(dsl::extracted_variables.eq(values))
        .execute(conn)
        .await
        .map(drop)
}

/// A model call made for a conversation beside its replies (its extraction), billed: the
/// account is charged `cost` (as much as its balance holds), the conversation counts it,
/// and usage lists it. Returns what was charged.
pub async fn bill_model_call(
    conn: &mut AsyncPgConnection,
    call: &ModelCall<'_>,
) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Charged {
        #[diesel(sql_type = Int8)]
        charged: i64,
    }
    let charged: Charged = diesel::sql_query(
        "WITH paid AS (
             UPDATE accounts a SET balance = a.balance - c.charged
             FROM (SELECT id, least($3, balance) AS charged FROM accounts WHERE id = $1 FOR UPDATE) AS c
             WHERE a.id = c.id RETURNING c.charged),
         counted AS (
             UPDATE conversations SET total_cost = total_cost + (SELECT charged FROM paid),
                 prompt_tokens = prompt_tokens + $4, completion_tokens = completion_tokens + $5
             WHERE id = $2 RETURNING id),
         listed AS (
             INSERT INTO model_calls (account_id, conversation_id, purpose, model, prompt_tokens, completion_tokens, cost)
             SELECT $1, $2, $6, $7, $4, $5, charged FROM paid RETURNING 1)
         SELECT charged FROM paid",
    )
    .bind::<Int8, _>(call.account_id)
    .bind::<SqlUuid, _>(call.conversation_id)
    .bind::<Int8, _>(call.cost)
    .bind::<Int8, _>(call.prompt_tokens)
    .bind::<Int8, _>(call.completion_tokens)
    .bind::<Text, _>(call.purpose)
    .bind::<Text, _>(call.model)
    .get_result(conn)
    .await?;
    Ok(charged.charged)
}

/// A model call to bill with [`bill_model_call`].
#[derive(Debug, Clone, Copy)]
pub struct ModelCall<'a> {
    pub account_id: i64,
    pub conversation_id: Uuid,
    /// `extraction`.
    pub purpose: &'a str,
    pub model: &'a str,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// In subunits.
    pub cost: i64,
}
