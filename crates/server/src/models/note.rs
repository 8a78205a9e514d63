//! `conversation_notes`: operators' internal notes on a conversation.

use anyreply_core::wire::{Author, Note};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::conversation_notes;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = conversation_notes)]
pub struct NoteRow {
    pub id: i64,
    pub author_operator_id: Option<i64>,
    pub author_name: String,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

impl NoteRow {
    pub fn into_wire(self) -> Note {
        Note {
            id: self.id,
            content: self.content,
            author: Author {
                operator_id: self.author_operator_id,
                name: self.author_name,
            },
            created_at: self.created_at,
        }
    }
}

/// Stores a note on a conversation the caller has checked is the account's.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    author: &Author,
    content: &str,
) -> QueryResult<NoteRow> {
    diesel::insert_into(conversation_notes::table)
        .values((
            conversation_notes::conversation_id.eq(conversation_id),
            conversation_notes::author_operator_id.eq(author.operator_id),
            conversation_notes::author_name.eq(&author.name),
            conversation_notes::content.eq(content),
        ))
        .returning(NoteRow::as_returning())
        .get_result(conn)
        .await
}

/// The most notes one read returns: the newest ones.
pub const MAX_LISTED: i64 = 500;

/// A conversation's notes (the newest [`MAX_LISTED`]), oldest first.
pub async fn of_conversation(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
) -> QueryResult<Vec<NoteRow>> {
    let mut rows: Vec<NoteRow> = conversation_notes::table
        .filter(conversation_notes::conversation_id.eq(conversation_id))
        .order(conversation_notes::id.desc())
        .limit(MAX_LISTED)
        .select(NoteRow::as_select())
        .load(conn)
        .await?;
    rows.reverse();
    Ok(rows)
}
