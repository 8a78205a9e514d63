//! Accounts and their balance.

use anyreply_core::Money;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::{Conn, KeepPrepared};
use crate::schema::accounts;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = accounts)]
pub struct AccountRow {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    pub balance: i64,
}

impl AccountRow {
    pub fn into_me(self) -> anyreply_core::wire::Me {
        anyreply_core::wire::Me {
            name: self.name,
            email: self.email,
            total_balance: Money::from_subunits(self.balance),
        }
    }
}

pub async fn find(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<AccountRow>> {
    accounts::table
        .find(id)
        .select(AccountRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The id of the account's newest event (0 before the first).
pub async fn last_event_id(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<i64> {
    accounts::table
        .find(id)
        .select(accounts::last_event_id)
        .first(conn)
        .await
}

pub async fn create(
    conn: &mut AsyncPgConnection,
    name: &str,
    email: Option<&str>,
    balance: Money,
) -> QueryResult<i64> {
    diesel::insert_into(accounts::table)
        .values((
            accounts::name.eq(name),
            accounts::email.eq(email),
            accounts::balance.eq(balance.subunits()),
        ))
        .returning(accounts::id)
        .get_result(conn)
        .await
}

/// Adds `amount` to the balance; `None` when no such account exists.
pub async fn top_up(
    conn: &mut AsyncPgConnection,
    id: i64,
    amount: Money,
) -> QueryResult<Option<Money>> {
    diesel::update(accounts::table.find(id))
        .set(accounts::balance.eq(accounts::balance + amount.subunits()))
        .returning(accounts::balance)
        .get_result::<i64>(conn)
        .await
        .optional()
        .map(|balance| balance.map(Money::from_subunits))
}

/// The CHECK that keeps the balance from going below zero.
const BALANCE_NOT_NEGATIVE: &str = "accounts_balance_check";

/// Whether `error` is the balance's refusal to go below zero (a reservation it cannot cover).
pub fn short_of_balance(error: &diesel::result::Error) -> bool {
    crate::db::violates(error, BALANCE_NOT_NEGATIVE)
}

#[derive(QueryableByName)]
struct Charged {
    #[diesel(sql_type = diesel::sql_types::Int8)]
    charged: i64,
}

/// Settles a reservation of `hold` against a `cost`: the difference goes back to the balance,
/// which never goes below zero. Returns what was charged.
pub async fn charge(
    conn: &mut AsyncPgConnection,
    id: i64,
    hold: i64,
    cost: i64,
) -> QueryResult<i64> {
    use diesel::sql_types::Int8;
    let charged: Charged = diesel::sql_query(
        "UPDATE accounts a SET balance = a.balance + $2 - c.charged
         FROM (SELECT id, least($3, balance + $2) AS charged FROM accounts WHERE id = $1 FOR UPDATE) AS c
         WHERE a.id = c.id
         RETURNING c.charged",
    )
    .bind::<Int8, _>(id)
    .bind::<Int8, _>(hold)
    .bind::<Int8, _>(cost)
    .keep_prepared()
    .get_result(conn)
    .await?;
    Ok(charged.charged)
}

/// Gives back a reservation.
pub async fn refund(conn: &mut impl Conn, id: i64, hold: i64) -> QueryResult<()> {
    diesel::update(accounts::table.find(id))
        .set(accounts::balance.eq(accounts::balance + hold))
        .execute(conn)
        .await
        .map(drop)
}
