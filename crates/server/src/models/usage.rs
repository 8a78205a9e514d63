//! What an account's replies cost, grouped: read from the replies themselves and the
//! conversations' summary folds, so the sums are exactly what the balance was charged.

use anyreply_core::Money;
use anyreply_core::wire::{UsageGroup, UsageRow};
use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{Date, Int8, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::KeepPrepared;

#[derive(QueryableByName)]
struct Grouped {
    #[diesel(sql_type = Nullable<Date>)]
    period: Option<NaiveDate>,
    #[diesel(sql_type = Nullable<Int8>)]
    assistant_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    model: Option<String>,
    #[diesel(sql_type = Int8)]
    replies: i64,
    #[diesel(sql_type = Int8)]
    prompt_tokens: i64,
    #[diesel(sql_type = Int8)]
    completion_tokens: i64,
    #[diesel(sql_type = Int8)]
    cost: i64,
}

/// The replies of days `from..=to` (UTC), with the summary folds of those days (their tokens
/// and cost; they are not replies), grouped by `group`.
pub async fn of_account(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    from: NaiveDate,
    to: NaiveDate,
    group: UsageGroup,
) -> QueryResult<Vec<UsageRow>> {
    // One fixed text per grouping, so each stays prepared.
    let (key, select) = match group {
        UsageGroup::Day => (
            "(m.created_at AT TIME ZONE 'UTC')::date",
            "key AS period, NULL::int8 AS assistant_id, NULL::text AS model",
        ),
        UsageGroup::Assistant => (
            "c.assistant_id",
            "NULL::date AS period, key AS assistant_id, NULL::text AS model",
        ),
        UsageGroup::Model => (
            "coalesce(m.model, 'unknown')",
            "NULL::date AS period, NULL::int8 AS assistant_id, key AS model",
        ),
    };
    let sql = format!(
        "SELECT {select}, count(*) FILTER (WHERE m.reply) AS replies,
             coalesce(sum(m.prompt_tokens), 0)::int8 AS prompt_tokens,
             coalesce(sum(m.completion_tokens), 0)::int8 AS completion_tokens,
             coalesce(sum(m.cost), 0)::int8 AS cost
         FROM (SELECT {key} AS key, m.prompt_tokens, m.completion_tokens, m.cost, true AS reply
               FROM messages m JOIN conversations c ON c.id = m.conversation_id
               WHERE c.account_id = $1 AND m.role = 'assistant'
                 AND m.created_at >= ($2::date)::timestamp AT TIME ZONE 'UTC'
                 AND m.created_at < ($3::date + 1)::timestamp AT TIME ZONE 'UTC'
               UNION ALL
               -- Other model calls (extractions), billed like replies: counted, not as replies.
               SELECT {key} AS key, m.prompt_tokens, m.completion_tokens, m.cost, false
               FROM model_calls m JOIN conversations c ON c.id = m.conversation_id
               WHERE m.account_id = $1
                 AND m.created_at >= ($2::date)::timestamp AT TIME ZONE 'UTC'
                 AND m.created_at < ($3::date + 1)::timestamp AT TIME ZONE 'UTC'
               UNION ALL
               -- The summaries' folds, likewise.
               SELECT {key}, m.prompt_tokens, m.completion_tokens, m.cost, false
               FROM summary_folds m JOIN conversations c ON c.id = m.conversation_id
               WHERE m.account_id = $1
                 AND m.created_at >= ($2::date)::timestamp AT TIME ZONE 'UTC'
                 AND m.created_at < ($3::date + 1)::timestamp AT TIME ZONE 'UTC') AS m
         GROUP BY key ORDER BY key"
    );
    let rows: Vec<Grouped> = diesel::sql_query(sql)
        .bind::<Int8, _>(account_id)
        .bind::<Date, _>(from)
        .bind::<Date, _>(to)
        .keep_prepared()
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| UsageRow {
            period: row.period,
            assistant_id: row.assistant_id,
            model: row.model,
            replies: row.replies,
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
            cost: Money::from_subunits(row.cost),
        })
        .collect())
}
