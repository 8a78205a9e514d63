//! `summary_folds`: each model call that folded a conversation's turns into its summary,
//! charged to the account and counted in usage like a reply's tokens.

use diesel::sql_types::{Int4, Int8, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// A fold to record.
#[derive(Debug)]
pub struct NewFold<'a> {
    pub conversation_id: Uuid,
    pub account_id: i64,
    /// The summary held the turns through `after` before, through `through` now.
    pub after: i64,
    pub through: i64,
    /// The model that answered (the fallback's, if it stood in).
    pub model: &'a str,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    /// What it cost, in subunits.
    pub cost: i64,
}

#[derive(diesel::QueryableByName)]
struct Charged {
    #[diesel(sql_type = Int8)]
    charged: i64,
}

/// Charges the fold to the account (what the balance can pay: never below zero), adds the
/// charge to the conversation's total and records the fold, in one statement; returns what was
/// charged. Call in the transaction that stored the fold ([`super::conversation::store_summary`]),
/// which locked the conversation's row first: rows are locked conversation, then account, as
/// everywhere.
pub async fn record(conn: &mut AsyncPgConnection, fold: &NewFold<'_>) -> diesel::QueryResult<i64> {
    let charged: Charged = diesel::sql_query(
        "WITH c AS (SELECT id, least($2, balance) AS charged FROM accounts WHERE id = $1 FOR UPDATE),
         debited AS (UPDATE accounts a SET balance = a.balance - c.charged FROM c WHERE a.id = c.id),
         counted AS (UPDATE conversations SET total_cost = total_cost + c.charged
                     FROM c WHERE conversations.id = $3),
         folded AS (
             INSERT INTO summary_folds (conversation_id, after_seq, through_seq, account_id, model,
                                        prompt_tokens, completion_tokens, cost)
             SELECT $3, $4, $5, $1, $6, $7, $8, c.charged FROM c)
         SELECT charged FROM c",
    )
    .bind::<Int8, _>(fold.account_id)
    .bind::<Int8, _>(fold.cost)
    .bind::<SqlUuid, _>(fold.conversation_id)
    .bind::<Int8, _>(fold.after)
    .bind::<Int8, _>(fold.through)
    .bind::<Text, _>(fold.model)
    .bind::<Int4, _>(fold.prompt_tokens)
    .bind::<Int4, _>(fold.completion_tokens)
    .get_result(conn)
    .await?;
    Ok(charged.charged)
}
