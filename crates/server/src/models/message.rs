//! Messages of a conversation, in history order by `seq`.

use anyreply_core::Money;
use anyreply_core::wire::{Author, FunctionCall, HistoryMessage, PassageRef, Role};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int8, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::db::{Conn, KeepPrepared};
use crate::schema::messages;

pub const ROLE_USER: &str = "user";
pub const ROLE_ASSISTANT: &str = "assistant";
pub const ROLE_OPERATOR: &str = "operator";

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub id: i64,
    pub turn_id: i64,
    /// The message's place in its conversation's history.
    pub seq: i64,
    pub role: String,
    pub content: String,
    pub function_calls: Option<Value>,
    pub cost: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub knowledge: Option<Value>,
    /// Who wrote an operator message (see [`Author`]).
    pub author_operator_id: Option<i64>,
    pub author_name: Option<String>,
}

impl MessageRow {
    pub fn role(&self) -> Role {
        match self.role.as_str() {
            ROLE_ASSISTANT => Role::Assistant,
            ROLE_OPERATOR => Role::Operator,
            _ => Role::User,
        }
    }

    pub fn into_history(self) -> HistoryMessage {
        let role = self.role();
        let function_calls = match (role, self.function_calls) {
            (Role::Assistant, Some(calls)) => {
                Some(serde_json::from_value::<Vec<FunctionCall>>(calls).unwrap_or_default())
            }
            (Role::Assistant, None) => Some(Vec::new()),
            (Role::User | Role::Operator, _) => None,
        };
        HistoryMessage {
            role,
            content: self.content,
            function_calls,
            knowledge: self
                .knowledge
                .and_then(|k| serde_json::from_value::<Vec<PassageRef>>(k).ok()),
            cost: self.cost.map(Money::from_subunits),
            author: self.author_name.map(|name| Author {
                operator_id: self.author_operator_id,
                name,
            }),
            created_at: self.created_at,
        }
    }
}

/// One page of history: the messages with places in `[before - span, before)`, newest first.
/// A range of the `(conversation_id, seq)` index, so no page reads more than `span` rows,
/// whatever the planner estimates. Kept as text so a test can `EXPLAIN` exactly this.
pub const PAGE_SQL: &str =
    "SELECT id, turn_id, seq, role, content, function_calls, cost, created_at, knowledge,
            author_operator_id, author_name
     FROM messages
     WHERE conversation_id = $1 AND seq >= $2 - $3 AND seq < $2
     ORDER BY seq DESC";

/// See [`PAGE_SQL`].
pub async fn page_before(
    conn: &mut impl Conn,
    conversation_id: Uuid,
    before: i64,
    span: i64,
) -> QueryResult<Vec<MessageRow>> {
    load_page(conn, PAGE_SQL, conversation_id, before, span).await
}

/// One page of history by `sql`, a query of [`PAGE_SQL`]'s range.
async fn load_page<R>(
    conn: &mut impl Conn,
    sql: &'static str,
    conversation_id: Uuid,
    before: i64,
    span: i64,
) -> QueryResult<Vec<R>>
where
    R: QueryableByName<diesel::pg::Pg> + Send + 'static,
{
    diesel::sql_query(sql)
        .bind::<SqlUuid, _>(conversation_id)
        .bind::<Int8, _>(before)
        .bind::<Int8, _>(span)
        .keep_prepared()
        .load(conn)
        .await
}

/// [`PAGE_SQL`]'s range with only what a prompt takes of each message: a prompt's history can
/// be hundreds of rows, read on every reply.
pub const PROMPT_PAGE_SQL: &str = "SELECT seq, role, content
     FROM messages
     WHERE conversation_id = $1 AND seq >= $2 - $3 AND seq < $2
     ORDER BY seq DESC";

/// A message of the history as a prompt takes it.
#[derive(Debug, Clone, QueryableByName)]
pub struct PromptLine {
    /// Its place: a prompt that leaves it out knows from where on its summary is due.
    #[diesel(sql_type = Int8)]
    pub seq: i64,
    #[diesel(sql_type = Text)]
    pub role: String,
    #[diesel(sql_type = Text)]
    pub content: String,
}

/// See [`PROMPT_PAGE_SQL`].
pub async fn prompt_page_before(
    conn: &mut impl Conn,
    conversation_id: Uuid,
    before: i64,
    span: i64,
) -> QueryResult<Vec<PromptLine>> {
    load_page(conn, PROMPT_PAGE_SQL, conversation_id, before, span).await
}

/// Up to `limit` messages after place `after` through `through`, oldest first: the turns a
/// summary takes in next. A range of the `(conversation_id, seq)` index.
pub async fn to_fold(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    after: i64,
    through: i64,
    limit: i64,
) -> QueryResult<Vec<PromptLine>> {
    diesel::sql_query(
        "SELECT seq, role, content FROM messages
         WHERE conversation_id = $1 AND seq > $2 AND seq <= $3
         ORDER BY seq LIMIT $4",
    )
    .bind::<SqlUuid, _>(conversation_id)
    .bind::<Int8, _>(after)
    .bind::<Int8, _>(through)
    .bind::<Int8, _>(limit)
    .load(conn)
    .await
}

/// When the newest message at or before place `seq` was written.
pub async fn written_at(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    seq: i64,
) -> QueryResult<Option<DateTime<Utc>>> {
    messages::table
        .filter(messages::conversation_id.eq(conversation_id))
        .filter(messages::seq.le(seq))
        .order(messages::seq.desc())
        .select(messages::created_at)
        .first(conn)
        .await
        .optional()
}

/// Where a page of history ends: before this place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BeforeSeq {
    #[serde(rename = "before")]
    pub seq: i64,
}

impl super::page::OpaqueCursor for BeforeSeq {}

/// Up to `limit` messages before place `before`, newest first, read in bounded pages; and
/// whether older ones remain.
pub async fn newest_before(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    mut before: i64,
    limit: usize,
) -> QueryResult<(Vec<MessageRow>, bool)> {
    let span = limit as i64 * 2;
    let mut rows = Vec::with_capacity(limit + 1);
    while rows.len() <= limit && before > 1 {
        rows.extend(page_before(conn, conversation_id, before, span).await?);
        before -= span;
    }
    let more = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows, more))
}

/// A message id taken from the sequence ahead of the insert, so that statements which need it
/// can be sent in the same pipeline.
pub async fn next_id(conn: &mut impl Conn) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Next {
        #[diesel(sql_type = Int8)]
        id: i64,
    }
    let next: Next = diesel::sql_query("SELECT nextval('messages_id_seq') AS id")
        .keep_prepared()
        .get_result(conn)
        .await?;
    Ok(next.id)
}

/// Stores a customer message at place `seq`; returns its id.
pub async fn insert_customer(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    seq: i64,
    content: &str,
    variables: &Value,
) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = Int8)]
        id: i64,
    }
    // The message is its own turn: `turn_id` is its id, taken from the sequence first.
    let inserted: Inserted = diesel::sql_query(
        "INSERT INTO messages (id, turn_id, conversation_id, seq, role, content, variables)
         SELECT n.id, n.id, $1, $2, 'user', $3, $4 FROM (SELECT nextval('messages_id_seq') AS id) AS n
         RETURNING id",
    )
    .bind::<SqlUuid, _>(conversation_id)
    .bind::<Int8, _>(seq)
    .bind::<Text, _>(content)
    .bind::<Jsonb, _>(variables)
    .keep_prepared()
    .get_result(conn)
    .await?;
    Ok(inserted.id)
}

/// A reply to store.
#[derive(Debug)]
pub struct NewReply<'a> {
    pub conversation_id: Uuid,
    /// The answered customer message and its place; the reply takes the next place.
    pub turn_id: i64,
    pub turn_seq: i64,
    pub content: &'a str,
    pub function_calls: Value,
    pub cost: i64,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub model: &'a str,
    /// The knowledge-base passages the reply was given (`[PassageRef]`), if any.
    pub knowledge: Option<Value>,
}

/// Stores a reply (its cost goes into the conversation's total with
/// [`crate::models::conversation::count_reply`]).
pub async fn insert_reply(conn: &mut impl Conn, reply: &NewReply<'_>) -> QueryResult<()> {
    diesel::insert_into(messages::table)
        .values((
            messages::conversation_id.eq(reply.conversation_id),
            messages::turn_id.eq(reply.turn_id),
            messages::seq.eq(reply.turn_seq + 1),
            messages::role.eq(ROLE_ASSISTANT),
            messages::content.eq(reply.content),
            messages::function_calls.eq(&reply.function_calls),
            messages::cost.eq(reply.cost),
            messages::prompt_tokens.eq(reply.prompt_tokens),
            messages::completion_tokens.eq(reply.completion_tokens),
            messages::model.eq(reply.model),
            messages::knowledge.eq(&reply.knowledge),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// The place of message `id` in its history.
pub async fn seq_of(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<i64>> {
    messages::table
        .find(id)
        .select(messages::seq)
        .get_result(conn)
        .await
        .optional()
}

/// Stores a message of the business (role `operator`) by `author` at place `seq`, as its own
/// turn.
pub async fn insert_operator(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    seq: i64,
    content: &str,
    author: &Author,
) -> QueryResult<MessageRow> {
    diesel::sql_query(
        "INSERT INTO messages (id, turn_id, conversation_id, seq, role, content,
                               author_operator_id, author_name)
         SELECT n.id, n.id, $1, $2, 'operator', $3, $4, $5
         FROM (SELECT nextval('messages_id_seq') AS id) AS n
         RETURNING id, turn_id, seq, role, content, function_calls, cost, created_at, knowledge,
                   author_operator_id, author_name",
    )
    .bind::<SqlUuid, _>(conversation_id)
    .bind::<Int8, _>(seq)
    .bind::<Text, _>(content)
    .bind::<Nullable<Int8>, _>(author.operator_id)
    .bind::<Text, _>(&author.name)
    .get_result(conn)
    .await
}

/// Removes a customer message left unanswered.
pub async fn delete(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<()> {
    diesel::delete(messages::table.find(id))
        .execute(conn)
        .await
        .map(drop)
}

/// The variables sent with the messages still waiting for their reply (not yet merged into
/// the conversation's) in the account's conversation of `assistant_id` with `customer`.
pub async fn queued_variables(
    conn: &mut impl Conn,
    account_id: i64,
    assistant_id: i64,
    customer: &str,
) -> QueryResult<Vec<Option<Value>>> {
    use crate::schema::{conversations, pending_replies};
    pending_replies::table
        .inner_join(messages::table.on(messages::id.eq(pending_replies::message_id)))
        .inner_join(conversations::table.on(conversations::id.eq(pending_replies::conversation_id)))
        .filter(conversations::account_id.eq(account_id))
        .filter(conversations::assistant_id.eq(assistant_id))
        .filter(conversations::customer_identifier.eq(customer))
        .select(messages::variables)
        .load(conn)
        .await
}
