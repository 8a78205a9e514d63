//! `settlements_due`: what a settled reply still owes its account's row, the unused rest of
//! its reservation and its `reply.created` event.
//!
//! The settlement stores the due in its own transaction, which waits for the disk but locks no
//! row that the account's other replies write; the due is then paid in a transaction of its own
//! that need not wait for the disk ([`pay_statement`]): lost in a crash, it is paid again by the
//! sweep ([`left_unpaid`]). Paying deletes the due in the same statement, so it is paid once
//! whoever pays.

use anyreply_core::wire::EventType;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::db::{Conn, TailStatement};
use crate::models::event::{self, NewEvent};
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

/// Stores `due`; part of the settlement's pipeline.
pub async fn insert(conn: &mut impl Conn, due: &Due) -> QueryResult<()> {
    diesel::insert_into(settlements_due::table)
        .values(due)
        .execute(conn)
        .await
        .map(drop)
}

/// Pays a due unless it was paid: the refund and the `reply.created` event, on the account's
/// row, in one statement that deletes the due. The event's fields, the refund, the message id.
pub static PAY: TailStatement = TailStatement {
    name: "anyreply_pay_due",
    // event::TAIL_PARAMS, then the message id.
    params: "int8, text, uuid, int8, text, int8, int8",
    sql: || {
        event::tail_sql(Some(
            "DELETE FROM settlements_due WHERE message_id = $7 RETURNING 1",
        ))
    },
};

/// [`PAY`] for `due`, as a statement for a [`Tail`](crate::db::Tail).
pub fn pay_statement(due: &Due) -> String {
    let created = NewEvent {
        account_id: due.account_id,
        kind: EventType::ReplyCreated,
        conversation_id: due.conversation_id,
        message_seq: Some(due.reply_seq),
        error_code: None,
    };
    let mut values = event::tail_values(&created);
    values.push(due.refund.to_string());
    values.push(due.message_id.to_string());
    PAY.call(&values)
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
