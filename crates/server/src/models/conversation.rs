//! Conversations: one per (assistant, customer).

use anyreply_core::Money;
use anyreply_core::wire::{ConversationState, ConversationSummary};
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::object;
use super::page::OpaqueCursor;
use crate::db::{Conn, KeepPrepared};
use crate::schema::conversations;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = conversations)]
pub struct ConversationRow {
    pub id: Uuid,
    pub account_id: i64,
    pub assistant_id: i64,
    pub customer_identifier: String,
    pub kind: String,
    pub variables: Value,
    pub ai_enabled: bool,
    pub message_count: i64,
    pub total_cost: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The next free place in the history.
    pub next_seq: i64,
    pub opted_out: bool,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub assignee_id: Option<i64>,
    pub handoff_requested_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub extracted_variables: Value,
    /// What the assistant remembers of the turns no longer in its prompts.
    pub summary: Option<String>,
    /// The newest place folded into `summary` (0: none).
    pub summary_through_seq: i64,
}

impl ConversationRow {
    pub fn into_summary(self) -> ConversationSummary {
        ConversationSummary {
            id: self.id,
            assistant_id: self.assistant_id,
            kind: self.kind,
            variables: object(self.variables),
            message_count: self.message_count,
            total_cost: Money::from_subunits(self.total_cost),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            opted_out: self.opted_out,
            ai_enabled: self.ai_enabled,
            assignee_id: self.assignee_id,
            handoff_requested_at: self.handoff_requested_at,
            state: ConversationState::of(self.ended_at),
            ended_at: self.ended_at,
            extracted_variables: object(self.extracted_variables),
            external_identifier: self.customer_identifier,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// The conversation `id` if it belongs to `account_id`.
pub async fn find(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: Uuid,
) -> QueryResult<Option<ConversationRow>> {
    conversations::table
        .filter(conversations::id.eq(id))
        .filter(conversations::account_id.eq(account_id))
        .select(ConversationRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The conversation of `customer_identifier` with the account's assistant `assistant_id`.
pub async fn find_of_customer(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    assistant_id: i64,
    customer_identifier: &str,
) -> QueryResult<Option<ConversationRow>> {
    conversations::table
        .filter(conversations::assistant_id.eq(assistant_id))
        .filter(conversations::customer_identifier.eq(customer_identifier))
        .filter(conversations::account_id.eq(account_id))
        .select(ConversationRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Turns AI replies on or off (on, the conversation no longer needs a human); `None` when the
/// conversation is not the account's.
pub async fn set_ai_enabled(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: Uuid,
    enabled: bool,
) -> QueryResult<Option<Switched>> {
    diesel::sql_query(
        "UPDATE conversations c SET ai_enabled = $3, updated_at = now(),
             handoff_requested_at = CASE WHEN $3 THEN NULL ELSE c.handoff_requested_at END
         FROM (SELECT id, ai_enabled FROM conversations WHERE id = $1 AND account_id = $2 FOR UPDATE) AS before
         WHERE c.id = before.id
         RETURNING before.ai_enabled <> $3 AS changed",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Int8, _>(account_id)
    .bind::<diesel::sql_types::Bool, _>(enabled)
    .get_result(conn)
    .await
    .optional()
}

/// Assigns the account's conversation `id` to the operator `assignee` (one of the account's:
/// the caller checked) or to no one; `None` when the conversation is not the account's.
pub async fn assign(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: Uuid,
    assignee: Option<i64>,
) -> QueryResult<Option<Switched>> {
    diesel::sql_query(
        "UPDATE conversations c SET assignee_id = $3, updated_at = now()
         FROM (SELECT id, assignee_id FROM conversations
               WHERE id = $1 AND account_id = $2 FOR UPDATE) AS before
         WHERE c.id = before.id
         RETURNING before.assignee_id IS DISTINCT FROM $3 AS changed",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Int8, _>(account_id)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Int8>, _>(assignee)
    .get_result(conn)
    .await
    .optional()
}

/// How many conversations the inbox's views hold for operator `me` (`None`: the owner's API
/// key session, which has no "mine"). "All" is counted up to [`ALL_COUNTED`] (the others are
/// small, each read through its partial index).
#[derive(Debug, Clone, Copy, Default, QueryableByName)]
pub struct ViewCounts {
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub needs_human: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub mine: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub unassigned: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub all: i64,
}

/// Past this, the inbox says "10,000+" rather than count an account's every conversation.
pub const ALL_COUNTED: i64 = 10_000;

/// How many conversations need a human (the badge every console page shows): one range of
/// `conversations_needing_a_human`.
pub async fn needing_a_human(conn: &mut AsyncPgConnection, account_id: i64) -> QueryResult<i64> {
    conversations::table
        .filter(conversations::account_id.eq(account_id))
        .filter(View::NeedsHuman.condition())
        .count()
        .get_result(conn)
        .await
}

pub async fn view_counts(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    me: Option<i64>,
) -> QueryResult<ViewCounts> {
    diesel::sql_query(format!(
        "SELECT
           (SELECT count(*) FROM conversations WHERE account_id = $1
              AND handoff_requested_at IS NOT NULL AND assignee_id IS NULL) AS needs_human,
           (SELECT count(*) FROM conversations WHERE assignee_id = $2 AND account_id = $1) AS mine,
           (SELECT count(*) FROM conversations WHERE account_id = $1
              AND assignee_id IS NULL AND NOT ai_enabled) AS unassigned,
           (SELECT count(*) FROM (SELECT FROM conversations WHERE account_id = $1
              LIMIT {}) AS counted) AS all",
        ALL_COUNTED + 1
    ))
    .bind::<diesel::sql_types::Int8, _>(account_id)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Int8>, _>(me)
    .get_result(conn)
    .await
}

/// Notes that the model handed the conversation over: with no assignee, it needs a human.
pub async fn mark_handoff(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: Uuid,
) -> QueryResult<()> {
    diesel::update(
        conversations::table
            .filter(conversations::id.eq(id))
            .filter(conversations::account_id.eq(account_id)),
    )
    .set(conversations::handoff_requested_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
    .map(drop)
}

/// A switch of a conversation's `ai_enabled` (or `opted_out`, or its assignee).
#[derive(Debug, QueryableByName)]
pub struct Switched {
    /// Whether it was the other way before.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub changed: bool,
}

/// Filters of a conversation list.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub kind: Option<String>,
    pub assistant_id: Option<i64>,
    pub customer_identifier: Option<String>,
    /// Part of the customer identifier (the console's search), any case.
    pub customer_contains: Option<String>,
    /// Only those whose AI is on (`true`) or taken over (`false`).
    pub ai_enabled: Option<bool>,
    /// One of the inbox's views.
    pub view: Option<View>,
}

/// The inbox's views of an account's conversations (beside all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The model handed over and no one has it yet.
    NeedsHuman,
    /// Assigned to this operator.
    AssignedTo(i64),
    /// The AI is off and no one has it.
    Unassigned,
}

/// The conditions of `filter` on the account's conversations, all of them.
fn matching(account_id: i64, filter: &ListFilter) -> Condition {
    let mut all: Vec<Condition> = vec![Box::new(conversations::account_id.eq(account_id))];
    if let Some(kind) = &filter.kind {
        all.push(Box::new(conversations::kind.eq(kind.clone())));
    }
    if let Some(assistant_id) = filter.assistant_id {
        all.push(Box::new(conversations::assistant_id.eq(assistant_id)));
    }
    if let Some(customer) = &filter.customer_identifier {
        all.push(Box::new(
            conversations::customer_identifier.eq(customer.clone()),
        ));
    }
    if let Some(part) = &filter.customer_contains {
        let escaped = part
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        all.push(Box::new(
            conversations::customer_identifier.ilike(format!("%{escaped}%")),
        ));
    }
    if let Some(enabled) = filter.ai_enabled {
        all.push(Box::new(conversations::ai_enabled.eq(enabled)));
    }
    if let Some(view) = filter.view {
        all.push(view.condition());
    }
    let first = all.remove(0);
    all.into_iter()
        .fold(first, |both, next| Box::new(both.and(next)))
}

impl View {
    /// What a conversation of the view is (each has its partial index).
    fn condition(self) -> Condition {
        match self {
            View::NeedsHuman => Box::new(
                conversations::handoff_requested_at
                    .is_not_null()
                    .and(conversations::assignee_id.is_null()),
            ),
            View::AssignedTo(operator_id) => {
                Box::new(conversations::assignee_id.is_not_distinct_from(operator_id))
            }
            View::Unassigned => Box::new(
                conversations::assignee_id
                    .is_null()
                    .and(conversations::ai_enabled.eq(false)),
            ),
        }
    }
}

type Condition = Box<dyn BoxableExpression<conversations::table, Pg, SqlType = Bool>>;

/// Where a page starts: after (older than) or before (newer than) a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "t")]
    created_at_micros: i64,
    id: Uuid,
    #[serde(rename = "d")]
    direction: Direction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Direction {
    #[serde(rename = "n")]
    Older,
    #[serde(rename = "p")]
    Newer,
}

impl OpaqueCursor for Cursor {}

impl Cursor {
    fn at(row: &ConversationRow, direction: Direction) -> Self {
        Self {
            created_at_micros: row.created_at.timestamp_micros(),
            id: row.id,
            direction,
        }
    }
}

/// One page of a list, newest first, with the cursors of its neighbours.
#[derive(Debug)]
pub struct Page {
    pub rows: Vec<ConversationRow>,
    pub next_cursor: Option<String>,
    pub prev_cursor: Option<String>,
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    filter: &ListFilter,
    per_page: u32,
    cursor: Option<Cursor>,
) -> QueryResult<Page> {
    let mut query = conversations::table
        .filter(matching(account_id, filter))
        .select(ConversationRow::as_select())
        .limit(i64::from(per_page) + 1)
        .into_boxed();
    let direction = cursor.map_or(Direction::Older, |c| c.direction);
    if let Some(cursor) = cursor {
        let at = DateTime::from_timestamp_micros(cursor.created_at_micros).unwrap_or_default();
        query = match cursor.direction {
            Direction::Older => query.filter(
                conversations::created_at
                    .lt(at)
                    .or(conversations::created_at
                        .eq(at)
                        .and(conversations::id.lt(cursor.id))),
            ),
            Direction::Newer => query.filter(
                conversations::created_at
                    .gt(at)
                    .or(conversations::created_at
                        .eq(at)
                        .and(conversations::id.gt(cursor.id))),
            ),
        };
    }
    query = match direction {
        Direction::Older => {
            query.order((conversations::created_at.desc(), conversations::id.desc()))
        }
        Direction::Newer => query.order((conversations::created_at.asc(), conversations::id.asc())),
    };
    let mut rows = query.load(conn).await?;
    let more = rows.len() > per_page as usize;
    rows.truncate(per_page as usize);
    if direction == Direction::Newer {
        rows.reverse();
    }
    let (more_older, more_newer) = match direction {
        Direction::Older => (more, cursor.is_some()),
        Direction::Newer => (true, more),
    };
    let next_cursor = rows
        .last()
        .filter(|_| more_older)
        .map(|r| Cursor::at(r, Direction::Older).encode());
    let prev_cursor = <[_]>::first(&rows)
        .filter(|_| more_newer)
        .map(|r| Cursor::at(r, Direction::Newer).encode());
    Ok(Page {
        rows,
        next_cursor,
        prev_cursor,
    })
}

/// A customer message's place in its conversation, found or made on first contact.
#[derive(Debug, Clone)]
pub struct Joined {
    pub id: Uuid,
    pub ai_enabled: bool,
    /// The customer opted out: the message is stored, never answered.
    pub opted_out: bool,
    /// The conversation's own variables, as of the replies recorded so far.
    pub variables: Value,
    /// The message's place in the history; an AI reply takes the next one.
    pub seq: i64,
    pub memory: Memory,
}

/// A conversation's rolling summary of the turns that fell out of its prompts, read with the
/// rest of what a prompt needs: the summary and where it ends go together.
#[derive(Debug, Clone, Default, PartialEq, Eq, QueryableByName)]
pub struct Memory {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub summary: Option<String>,
    /// The newest place the summary holds; a prompt's history starts after it.
    #[diesel(sql_type = diesel::sql_types::Int8)]
    #[diesel(column_name = summary_through_seq)]
    pub through_seq: i64,
}

#[derive(QueryableByName)]
struct JoinedRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ai_enabled: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    opted_out: bool,
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    variables: Value,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    next_seq: i64,
    #[diesel(embed)]
    memory: Memory,
}

/// Counts a new customer message into the conversation of (`assistant_id`, `customer`),
/// creating it on first contact, and gives the message its place in the history; `None` if
/// the assistant is not the account's (then nothing is touched). The upsert locks the
/// conversation's row until commit, which orders concurrent messages of one customer: exactly
/// one conversation, places in arrival order. A message under AI takes two places (its own and
/// its reply's); under a human, one.
pub async fn join(
    conn: &mut impl Conn,
    account_id: i64,
    assistant_id: i64,
    customer: &str,
) -> QueryResult<Option<Joined>> {
    let row: Option<JoinedRow> = diesel::sql_query(
        "INSERT INTO conversations (id, account_id, assistant_id, customer_identifier, message_count, next_seq, ends_at)
         SELECT $1, $2, a.id, $4, 1, 3, now() + make_interval(mins => a.conversation_inactivity_timeout)
         FROM assistants a WHERE a.id = $3 AND a.account_id = $2
         ON CONFLICT (assistant_id, customer_identifier) DO UPDATE SET
             message_count = conversations.message_count + 1,
             next_seq = conversations.next_seq
                 + CASE WHEN conversations.ai_enabled AND NOT conversations.opted_out THEN 2 ELSE 1 END,
             updated_at = now(),
             -- A customer's message puts the end off, and reopens an ended conversation.
             ends_at = EXCLUDED.ends_at, ended_at = NULL
         RETURNING id, ai_enabled, opted_out, variables, next_seq, summary, summary_through_seq",
    )
    .bind::<diesel::sql_types::Uuid, _>(Uuid::now_v7())
    .bind::<diesel::sql_types::Int8, _>(account_id)
    .bind::<diesel::sql_types::Int8, _>(assistant_id)
    .bind::<diesel::sql_types::Text, _>(customer)
    .keep_prepared()
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(|row| {
        let taken = if row.ai_enabled && !row.opted_out {
            2
        } else {
            1
        };
        Joined {
            id: row.id,
            ai_enabled: row.ai_enabled,
            opted_out: row.opted_out,
            variables: row.variables,
            seq: row.next_seq - taken,
            memory: row.memory,
        }
    }))
}

/// Merges `variables` into the conversation's own.
pub async fn merge_variables(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    variables: &Value,
) -> QueryResult<()> {
    use diesel::PgJsonbExpressionMethods;
    diesel::update(conversations::table.find(id))
        .set(conversations::variables.eq(conversations::variables.concat(variables)))
        .execute(conn)
        .await
        .map(drop)
}

/// Counts a recorded reply in: one more message, the answered message's `variables` merged,
/// its `cost` added to the total.
pub async fn count_reply(
    conn: &mut impl Conn,
    id: Uuid,
    variables: &Value,
    cost: i64,
    tokens: (i64, i64),
) -> QueryResult<()> {
    use diesel::PgJsonbExpressionMethods;
    diesel::update(conversations::table.find(id))
        .set((
            conversations::message_count.eq(conversations::message_count + 1),
            conversations::variables.eq(conversations::variables.concat(variables)),
            conversations::total_cost.eq(conversations::total_cost + cost),
            conversations::prompt_tokens.eq(conversations::prompt_tokens + tokens.0),
            conversations::completion_tokens.eq(conversations::completion_tokens + tokens.1),
            conversations::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Takes the conversation's next place in the history for a message of the business,
/// counting it; `None` if the conversation is not the account's. Locks the row until commit.
pub async fn take_place(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: Uuid,
) -> QueryResult<Option<Place>> {
    diesel::sql_query(
        "UPDATE conversations SET next_seq = next_seq + 1, message_count = message_count + 1,
             updated_at = now(),
             -- The business's message puts an active conversation's end off too.
             ends_at = CASE WHEN ended_at IS NULL THEN now() + make_interval(mins => (
                 SELECT a.conversation_inactivity_timeout FROM assistants a
                 WHERE a.id = conversations.assistant_id)) END
         WHERE id = $1 AND account_id = $2
         RETURNING next_seq - 1 AS seq, opted_out",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Int8, _>(account_id)
    .get_result(conn)
    .await
    .optional()
}

/// A place taken in a conversation's history.
#[derive(Debug, QueryableByName)]
pub struct Place {
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub seq: i64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub opted_out: bool,
}

/// Opts the customer of (`assistant_id`, `customer`) out or in, creating the conversation if
/// there is none; `None` if the assistant is not the account's.
pub async fn set_opted_out(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    assistant_id: i64,
    customer: &str,
    opted_out: bool,
) -> QueryResult<Option<Uuid>> {
    #[derive(QueryableByName)]
    struct Upserted {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let row: Option<Upserted> = diesel::sql_query(
        "INSERT INTO conversations (id, account_id, assistant_id, customer_identifier, opted_out)
         SELECT $1, $2, a.id, $4, $5 FROM assistants a WHERE a.id = $3 AND a.account_id = $2
         ON CONFLICT (assistant_id, customer_identifier) DO UPDATE SET
             opted_out = EXCLUDED.opted_out, updated_at = now()
         RETURNING id",
    )
    .bind::<diesel::sql_types::Uuid, _>(Uuid::now_v7())
    .bind::<diesel::sql_types::Int8, _>(account_id)
    .bind::<diesel::sql_types::Int8, _>(assistant_id)
    .bind::<diesel::sql_types::Text, _>(customer)
    .bind::<diesel::sql_types::Bool, _>(opted_out)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(|row| row.id))
}

/// Adds `cost` to the conversation's total.
pub async fn add_cost(conn: &mut AsyncPgConnection, id: Uuid, cost: i64) -> QueryResult<()> {
    diesel::update(conversations::table.find(id))
        .set(conversations::total_cost.eq(conversations::total_cost + cost))
        .execute(conn)
        .await
        .map(drop)
}

/// Counts out a customer message removed unanswered.
pub async fn uncount_message(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(conversations::table.find(id))
        .set(conversations::message_count.eq(conversations::message_count - 1))
        .execute(conn)
        .await
        .map(drop)
}

/// The conversation's own variables, whether its AI is on, and its memory.
pub async fn variables_and_ai(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<(Value, bool, Memory)> {
    let (variables, ai_enabled, summary, through_seq) = conversations::table
        .find(id)
        .select((
            conversations::variables,
            conversations::ai_enabled,
            conversations::summary,
            conversations::summary_through_seq,
        ))
        .get_result(conn)
        .await?;
    let memory = Memory {
        summary,
        through_seq,
    };
    Ok((variables, ai_enabled, memory))
}

/// Claims the folding of the conversation's turns up to place `through` into its summary for
/// `lease`: its memory as it stands, or `None` when they are folded already or another process
/// holds the claim. One claim at a time, so the model is never asked twice for the same turns.
pub async fn claim_summary(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    through: i64,
    lease: std::time::Duration,
) -> QueryResult<Option<Memory>> {
    diesel::sql_query(
        "UPDATE conversations
         SET summary_claimed_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND summary_through_seq < $2
           AND (summary_claimed_until IS NULL OR summary_claimed_until < now())
         RETURNING summary, summary_through_seq",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Int8, _>(through)
    .bind::<diesel::sql_types::Double, _>(lease.as_secs_f64())
    .get_result(conn)
    .await
    .optional()
}

/// Gives up a claim whose fold failed, so that the next reply may try again at once.
pub async fn release_summary_claim(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    after: i64,
) -> QueryResult<()> {
    diesel::update(
        conversations::table
            .find(id)
            .filter(conversations::summary_through_seq.eq(after)),
    )
    .set(conversations::summary_claimed_until.eq(None::<DateTime<Utc>>))
    .execute(conn)
    .await
    .map(drop)
}

/// A fold to store: the summary now holds the turns after place `after` through `through`.
#[derive(Debug)]
pub struct Folded<'a> {
    pub id: Uuid,
    pub after: i64,
    pub through: i64,
    pub summary: Option<&'a str>,
    /// The fold's prompt and completion tokens, counted into the conversation's.
    pub tokens: (i64, i64),
}

/// Stores a fold and ends its claim, if the summary still ends at `after` (compare and set:
/// no fold is stored over another); `false`, with nothing written, if it does not. Locks the
/// conversation's row until commit.
pub async fn store_summary(conn: &mut AsyncPgConnection, folded: &Folded<'_>) -> QueryResult<bool> {
    diesel::update(
        conversations::table
            .find(folded.id)
            .filter(conversations::summary_through_seq.eq(folded.after)),
    )
    .set((
        conversations::summary.eq(folded.summary),
        conversations::summary_through_seq.eq(folded.through),
        conversations::summary_claimed_until.eq(None::<DateTime<Utc>>),
        conversations::prompt_tokens.eq(conversations::prompt_tokens + folded.tokens.0),
        conversations::completion_tokens.eq(conversations::completion_tokens + folded.tokens.1),
    ))
    .execute(conn)
    .await
    .map(|rows| rows == 1)
}

/// The assistant's inactivity timeout is now `minutes` (`None`: never): each of its active
/// conversations ends that long after its last change.
pub async fn reschedule_ends(
    conn: &mut AsyncPgConnection,
    assistant_id: i64,
    minutes: Option<i32>,
) -> QueryResult<()> {
    diesel::sql_query(
        "UPDATE conversations SET ends_at = updated_at + make_interval(mins => $2)
         WHERE assistant_id = $1 AND ended_at IS NULL",
    )
    .bind::<diesel::sql_types::Int8, _>(assistant_id)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Int4>, _>(minutes)
    .execute(conn)
    .await
    .map(drop)
}
