//! Per-account caps on stored assistants and tools, which must hold when creations race.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::schema::accounts;

/// Holds the account's row lock until the transaction ends. A creation takes it before it
/// counts, so creations of one account count and insert one at a time, and two of them can
/// never both see room for one more. `FOR NO KEY UPDATE` rather than `FOR UPDATE`: it must not
/// block inserts whose foreign keys point at the account (those take `FOR KEY SHARE`).
pub async fn lock_account(conn: &mut AsyncPgConnection, account_id: i64) -> QueryResult<()> {
    accounts::table
        .find(account_id)
        .select(accounts::id)
        .for_no_key_update()
        .first::<i64>(conn)
        .await
        .optional()?;
    Ok(())
}

/// Whether an account holding `count` rows of a kind capped at `max` may add one more.
pub fn has_room(count: i64, max: usize) -> bool {
    usize::try_from(count).is_ok_and(|count| count < max)
}
