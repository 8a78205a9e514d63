//! `events`: every change to a conversation, written in the transaction that makes it.
//!
//! An event's id is the account's next `accounts.last_event_id`, taken under the account row's
//! lock and so handed out in commit order: a reader that has seen event `n` of an account has
//! seen all of its events before `n`. Insert an event as the transaction's last statement on
//! the account row (the hottest row), or after it.

use anyreply_core::ErrorCode;
use anyreply_core::wire::{Event, EventType};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Int8, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::db::{Conn, KeepPrepared};
use crate::schema::events;

/// An event to record. Its conversation's assistant and customer, and its message (by place),
/// are read from their rows, so the event says exactly what was stored.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent {
    pub account_id: i64,
    pub kind: EventType,
    pub conversation_id: Uuid,
    /// The message's place in the history (`seq`), for the types that have one. Insert the
    /// event after the message, and before deleting it.
    pub message_seq: Option<i64>,
    /// Why no reply could be had (`reply.failed`).
    pub error_code: Option<ErrorCode>,
}

impl NewEvent {
    /// An event without a message (`ai.*`).
    pub fn about(account_id: i64, kind: EventType, conversation_id: Uuid) -> Self {
        Self {
            account_id,
            kind,
            conversation_id,
            message_seq: None,
            error_code: None,
        }
    }
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = Int8)]
    id: i64,
}

/// Records `event`; returns its id. No `NOTIFY`: PostgreSQL serialises the commits of all
/// notifying transactions on one lock, which halved the replies per second; readers poll.
/// Locks the account's row until the transaction ends.
pub async fn insert(conn: &mut impl Conn, event: &NewEvent) -> QueryResult<i64> {
    insert_moving_balance(conn, event, 0).await
}

/// [`insert`], moving the account's balance by `balance_change` (in subunits) on the same row
/// in the same statement: a reservation taken (negative; the balance's CHECK refuses an
/// overdraft) or given back.
pub async fn insert_moving_balance(
    conn: &mut impl Conn,
    event: &NewEvent,
    balance_change: i64,
) -> QueryResult<i64> {
    let inserted: Inserted = diesel::sql_query(format!("{} SELECT id FROM event", inserting(None)))
        .bind::<Int8, _>(event.account_id)
        .bind::<Text, _>(event.kind.as_str())
        .bind::<SqlUuid, _>(event.conversation_id)
        .bind::<Nullable<Int8>, _>(event.message_seq)
        .bind::<Nullable<Text>, _>(event.error_code.map(ErrorCode::as_str))
        .bind::<Int8, _>(balance_change)
        .keep_prepared()
        .get_result(conn)
        .await?;
    Ok(inserted.id)
}

/// The `WITH` list that inserts an event (its query `event`) with the account row's change:
/// the event's fields are `$1` to `$5` (account, type, conversation, message place, error
/// code), the balance's change `$6`. Done only if the query `gate` (a `DELETE ... RETURNING`
/// of later parameters, say) returns a row, so that what two processes may both try is done
/// once. The message's JSON is the wire `EventMessage` (money in currency units, like `Money`).
pub fn inserting(gate: Option<&str>) -> String {
    inserting_with(gate, "")
}

/// The most ids a `reply.failed` event names in `burst_message_ids`.
pub const MAX_BURST_IDS: i64 = 100;

/// Records a `reply.failed` event: [`insert`], its message naming in `burst_message_ids` the
/// customer messages the failed reply was to answer, those since the conversation's last reply
/// or operator message and not queued for a reply of their own (the message itself included,
/// so insert the event before deleting the message). Not on the path of a normal reply.
pub async fn insert_failed(conn: &mut impl Conn, event: &NewEvent) -> QueryResult<i64> {
    let burst = format!(
        ", 'burst_message_ids', (
             SELECT jsonb_agg(b.id ORDER BY b.seq) FROM (
                 SELECT u.id, u.seq FROM messages u
                 WHERE u.conversation_id = $3 AND u.role = 'user' AND u.seq <= $4::int8
                   AND u.seq > coalesce((
                       SELECT max(r.seq) FROM messages r
                       WHERE r.conversation_id = $3 AND r.seq < $4::int8 AND r.role <> 'user'), 0)
                   AND NOT EXISTS (SELECT 1 FROM pending_replies p WHERE p.message_id = u.id)
                 ORDER BY u.seq DESC LIMIT {MAX_BURST_IDS}) AS b)"
    );
    let inserted: Inserted = diesel::sql_query(format!(
        "{} SELECT id FROM event",
        inserting_with(None, &burst)
    ))
    .bind::<Int8, _>(event.account_id)
    .bind::<Text, _>(event.kind.as_str())
    .bind::<SqlUuid, _>(event.conversation_id)
    .bind::<Nullable<Int8>, _>(event.message_seq)
    .bind::<Nullable<Text>, _>(event.error_code.map(ErrorCode::as_str))
    .bind::<Int8, _>(0)
    .get_result(conn)
    .await?;
    Ok(inserted.id)
}

/// [`inserting`], with `fields` (`, 'name', value` pairs) added to the message's JSON.
fn inserting_with(gate: Option<&str>, fields: &str) -> String {
    let (gate, gated) = match gate {
        Some(gate) => (
            format!("gate AS ({gate}),\n         "),
            " AND EXISTS (SELECT 1 FROM gate)",
        ),
        None => (String::new(), ""),
    };
    format!(
        "WITH {gate}next AS (
             UPDATE accounts SET last_event_id = last_event_id + 1, balance = balance + $6
             WHERE id = $1{gated}
             RETURNING last_event_id AS id),
         message AS (
             SELECT jsonb_strip_nulls(jsonb_build_object(
                 'id', m.id, 'role', m.role, 'content', m.content,
                 'function_calls', m.function_calls, 'knowledge', m.knowledge,
                 'cost', m.cost::numeric / 100000000,
                 'author', CASE WHEN m.author_name IS NOT NULL THEN jsonb_build_object(
                     'operator_id', m.author_operator_id, 'name', m.author_name) END,
                 'error_code', $5::text, 'created_at', m.created_at{fields})) AS json
             FROM messages m WHERE m.conversation_id = $3 AND m.seq = $4::int8),
         event AS (
             INSERT INTO events (account_id, id, kind, conversation_id, assistant_id, customer_identifier, message)
             SELECT $1, next.id, $2, c.id, c.assistant_id, c.customer_identifier, (SELECT json FROM message)
             FROM next, conversations c WHERE c.id = $3 AND c.account_id = $1
             RETURNING id)"
    )
}

/// Records a `handoff.requested` event of the conversation, with the model's `reason`; returns
/// its id. Locks the account's row until the transaction ends, as [`insert`] does.
pub async fn insert_handoff(
    conn: &mut impl Conn,
    account_id: i64,
    conversation_id: Uuid,
    reason: &str,
) -> QueryResult<i64> {
    let inserted: Inserted = diesel::sql_query(
        "WITH next AS (
             UPDATE accounts SET last_event_id = last_event_id + 1 WHERE id = $1
             RETURNING last_event_id AS id)
         INSERT INTO events (account_id, id, kind, conversation_id, assistant_id, customer_identifier, reason)
         SELECT $1, next.id, $2, c.id, c.assistant_id, c.customer_identifier, $4
         FROM next, conversations c WHERE c.id = $3 AND c.account_id = $1
         RETURNING id",
    )
    .bind::<Int8, _>(account_id)
    .bind::<Text, _>(EventType::HandoffRequested.as_str())
    .bind::<SqlUuid, _>(conversation_id)
    .bind::<Text, _>(reason)
    .get_result(conn)
    .await?;
    Ok(inserted.id)
}

/// Records `event` (one without a message) with `detail`, what it says beyond the message (a
/// note, an assignee: see [`EventRow::into_event`]); returns its id. Call it in a transaction:
/// the event is written, then its detail.
pub async fn insert_detailed(
    conn: &mut impl Conn,
    event: &NewEvent,
    detail: &serde_json::Value,
) -> QueryResult<i64> {
    let id = insert(conn, event).await?;
    diesel::update(events::table.find((event.account_id, id)))
        .set(events::detail.eq(detail))
        .execute(conn)
        .await?;
    Ok(id)
}

/// A stored event.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = events)]
pub struct EventRow {
    pub id: i64,
    pub kind: String,
    pub conversation_id: Uuid,
    pub assistant_id: i64,
    pub customer_identifier: String,
    pub message: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub reason: Option<String>,
    pub detail: Option<serde_json::Value>,
}

impl EventRow {
    /// The event as the API sends it; `None` for a type this build does not know.
    pub fn into_event(self) -> Option<Event> {
        Some(Event {
            id: self.id,
            kind: EventType::parse(&self.kind)?,
            conversation_id: self.conversation_id,
            customer_identifier: self.customer_identifier,
            assistant_id: self.assistant_id,
            created_at: self.created_at,
            message: self.message.and_then(|m| serde_json::from_value(m).ok()),
            reason: self.reason,
            assignee: detail_field(&self.detail, "assignee"),
            by: detail_field(&self.detail, "by"),
            note: detail_field(&self.detail, "note"),
            extracted_variables: detail_field(&self.detail, "extracted_variables"),
            extraction_error: detail_field(&self.detail, "extraction_error"),
        })
    }
}

/// The field `name` of an event's detail, if it has one of that type.
fn detail_field<T: serde::de::DeserializeOwned>(
    detail: &Option<serde_json::Value>,
    name: &str,
) -> Option<T> {
    detail
        .as_ref()?
        .get(name)
        .and_then(|value| serde_json::from_value(value.clone()).ok())
}

/// Which of an account's events to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventFilter {
    pub assistant_id: Option<i64>,
    pub conversation_id: Option<Uuid>,
}

/// The account's events after `after_id`, oldest first, at most `limit`: a range of the
/// primary key.
pub async fn after(
    conn: &mut impl Conn,
    account_id: i64,
    after_id: i64,
    filter: EventFilter,
    limit: i64,
) -> QueryResult<Vec<EventRow>> {
    in_range(conn, account_id, (after_id, i64::MAX), filter, limit).await
}

/// The account's events in `after_id + 1 ..= up_to` that pass `filter`, oldest first, at most
/// `limit`: a range of the primary key, or of `events_by_assistant` or
/// `events_by_conversation` when filtered, so that no event outside the filter is read.
pub async fn in_range(
    conn: &mut impl Conn,
    account_id: i64,
    (after_id, up_to): (i64, i64),
    filter: EventFilter,
    limit: i64,
) -> QueryResult<Vec<EventRow>> {
    let mut query = events::table
        .filter(events::account_id.eq(account_id))
        .filter(events::id.gt(after_id))
        .filter(events::id.le(up_to))
        .order(events::id.asc())
        .limit(limit)
        .select(EventRow::as_select())
        .into_boxed();
    if let Some(assistant_id) = filter.assistant_id {
        query = query.filter(events::assistant_id.eq(assistant_id));
    }
    if let Some(conversation_id) = filter.conversation_id {
        query = query.filter(events::conversation_id.eq(conversation_id));
    }
    query.load(conn).await
}

/// An event and whose it is.
#[derive(Debug, QueryableByName)]
pub struct AccountEventRow {
    #[diesel(sql_type = Int8)]
    pub account_id: i64,
    #[diesel(embed)]
    pub event: EventRow,
}

/// For each `(account, seen)`, the account's events after `seen`, oldest first, at most
/// `limit` of each: everything new for many accounts in one statement (one probe of the
/// primary key per account, nothing read when nothing is new).
pub async fn after_each(
    conn: &mut impl Conn,
    accounts: &[i64],
    seen: &[i64],
    limit: i64,
) -> QueryResult<Vec<AccountEventRow>> {
    diesel::sql_query(
        "SELECT e.account_id, e.id, e.kind, e.conversation_id, e.assistant_id,
                e.customer_identifier, e.message, e.created_at, e.reason, e.detail
         FROM unnest($1::int8[], $2::int8[]) AS s(account_id, seen)
         CROSS JOIN LATERAL (
             SELECT * FROM events e WHERE e.account_id = s.account_id AND e.id > s.seen
             ORDER BY e.id LIMIT $3) e
         ORDER BY e.account_id, e.id",
    )
    .bind::<Array<Int8>, _>(accounts)
    .bind::<Array<Int8>, _>(seen)
    .bind::<Int8, _>(limit)
    .keep_prepared()
    .load(conn)
    .await
}

/// Deletes events older than `days` days, a batch at a time; returns how many.
pub async fn purge_older_than(conn: &mut impl Conn, days: i32) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM events WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM events WHERE created_at < now() - make_interval(days => $1) LIMIT 10000))",
    )
    .bind::<diesel::sql_types::Int4, _>(days)
    .execute(conn)
    .await
}
