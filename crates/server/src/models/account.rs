//! Accounts and their balance.

use anyreply_core::Money;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

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
