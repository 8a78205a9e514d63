//! `operators` and `operator_password_links`: the people of an account who sign in to the
//! console, and the one-time links where they set their password.

use anyreply_core::wire::{Operator, OperatorInput, OperatorRole, OperatorUpdate};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::schema::{console_sessions, operator_password_links, operators};

/// A password link works this long.
pub const PASSWORD_LINK_HOURS: i64 = 24;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = operators)]
pub struct OperatorRow {
    pub id: i64,
    pub account_id: i64,
    pub email: String,
    pub name: String,
    pub role: String,
    pub password_hash: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl OperatorRow {
    /// The stored role (the table's check admits only the three).
    pub fn role(&self) -> OperatorRole {
        OperatorRole::parse(&self.role).unwrap_or(OperatorRole::Agent)
    }

    pub fn into_wire(self) -> Operator {
        Operator {
            id: self.id,
            role: self.role(),
            email: self.email,
            name: self.name,
            password_set: self.password_hash.is_some(),
            created_at: self.created_at,
        }
    }
}

/// Why an operator could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("another operator signs in with this email")]
    EmailTaken,
    #[error(transparent)]
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for WriteError {
    fn from(error: diesel::result::Error) -> Self {
        if crate::db::is_unique_violation(&error) {
            WriteError::EmailTaken
        } else {
            WriteError::Database(error)
        }
    }
}

/// Adds an operator without a password, and the link where they set one (only the hash of
/// its token is stored).
pub async fn create(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    input: &OperatorInput,
    link_token_hash: &[u8],
) -> Result<(OperatorRow, DateTime<Utc>), WriteError> {
    conn.transaction::<_, WriteError, _>(async |conn| {
        let row: OperatorRow = diesel::insert_into(operators::table)
            .values((
                operators::account_id.eq(account_id),
                operators::email.eq(&input.email),
                operators::name.eq(&input.name),
                operators::role.eq(input.role.as_str()),
            ))
            .returning(OperatorRow::as_returning())
            .get_result(conn)
            .await?;
        let expires_at = new_password_link(conn, row.id, link_token_hash).await?;
        Ok((row, expires_at))
    })
    .await
}

/// A new password link for `operator_id`, replacing any earlier one; returns when it expires.
pub async fn new_password_link(
    conn: &mut AsyncPgConnection,
    operator_id: i64,
    token_hash: &[u8],
) -> QueryResult<DateTime<Utc>> {
    diesel::delete(
        operator_password_links::table.filter(operator_password_links::operator_id.eq(operator_id)),
    )
    .execute(conn)
    .await?;
    diesel::insert_into(operator_password_links::table)
        .values((
            operator_password_links::token_hash.eq(token_hash),
            operator_password_links::operator_id.eq(operator_id),
            operator_password_links::expires_at
                .eq(Utc::now() + chrono::Duration::hours(PASSWORD_LINK_HOURS)),
        ))
        .returning(operator_password_links::expires_at)
        .get_result(conn)
        .await
}

/// The operator a live (unexpired) password link is for.
pub async fn by_password_link(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> QueryResult<Option<OperatorRow>> {
    operator_password_links::table
        .inner_join(operators::table)
        .filter(operator_password_links::token_hash.eq(token_hash))
        .filter(operator_password_links::expires_at.gt(diesel::dsl::now))
        .select(OperatorRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Sets the password of the operator a live link is for, using the link up and ending the
/// operator's sessions (whoever knew the old password is signed out). `None`: the link is
/// unknown, used or expired.
pub async fn set_password_by_link(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    password_hash: &str,
) -> QueryResult<Option<OperatorRow>> {
    conn.transaction(async |conn| {
        let operator_id: Option<i64> = diesel::delete(
            operator_password_links::table
                .filter(operator_password_links::token_hash.eq(token_hash))
                .filter(operator_password_links::expires_at.gt(diesel::dsl::now)),
        )
        .returning(operator_password_links::operator_id)
        .get_result(conn)
        .await
        .optional()?;
        let Some(operator_id) = operator_id else {
            return Ok(None);
        };
        diesel::delete(
            console_sessions::table.filter(console_sessions::operator_id.eq(operator_id)),
        )
        .execute(conn)
        .await?;
        diesel::update(operators::table.find(operator_id))
            .set((
                operators::password_hash.eq(password_hash),
                operators::updated_at.eq(diesel::dsl::now),
            ))
            .returning(OperatorRow::as_returning())
            .get_result(conn)
            .await
            .optional()
    })
    .await
}

/// The operator who signs in with `email` (lower-cased), of whichever account.
pub async fn by_email(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> QueryResult<Option<OperatorRow>> {
    operators::table
        .filter(operators::email.eq(email))
        .select(OperatorRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Every operator of the account, in id order.
pub async fn list(conn: &mut AsyncPgConnection, account_id: i64) -> QueryResult<Vec<OperatorRow>> {
    operators::table
        .filter(operators::account_id.eq(account_id))
        .order(operators::id)
        .select(OperatorRow::as_select())
        .load(conn)
        .await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
) -> QueryResult<Option<OperatorRow>> {
    operators::table
        .filter(operators::account_id.eq(account_id))
        .filter(operators::id.eq(id))
        .select(OperatorRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Changes an operator's name or role (what `change` names); the role applies from their next
/// request, which reads it again. `None`: no such operator of the account.
pub async fn update(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
    change: &OperatorUpdate,
) -> QueryResult<Option<OperatorRow>> {
    // Fields left `None` are not set: one statement, whatever was sent.
    #[derive(AsChangeset)]
    #[diesel(table_name = operators)]
    struct Change<'a> {
        name: Option<&'a str>,
        role: Option<&'static str>,
        updated_at: DateTime<Utc>,
    }
    diesel::update(
        operators::table
            .filter(operators::account_id.eq(account_id))
            .filter(operators::id.eq(id)),
    )
    .set(Change {
        name: change.name.as_deref(),
        role: change.role.map(OperatorRole::as_str),
        updated_at: Utc::now(),
    })
    .returning(OperatorRow::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Removes an operator: their sessions and links go with them (the foreign keys cascade), so
/// their next request is refused; what they wrote keeps their name. `false`: no such operator.
pub async fn delete(conn: &mut AsyncPgConnection, account_id: i64, id: i64) -> QueryResult<bool> {
    let deleted = diesel::delete(
        operators::table
            .filter(operators::account_id.eq(account_id))
            .filter(operators::id.eq(id)),
    )
    .execute(conn)
    .await?;
    Ok(deleted > 0)
}
