//! Support stats: conversations, replies, handoffs and the wait for a person, counted from an
//! account's events (kept 30 days) in one statement, per group and for the whole range.
//!
//! Each kind counted is read as one range of `events_by_kind` (account, kind, time), and each
//! handoff's first operator message after it as a range of `events_by_conversation`: the cost
//! follows what is counted, with no planner statistics needed.

use anyreply_core::wire::{EventType, HandoffReason, StatsGroup, StatsRow};
use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Date, Float8, Int8, Jsonb, Nullable};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::KeepPrepared;

/// The kinds of event counted: one index range each.
const COUNTED: [EventType; 3] = [
    EventType::MessageReceived,
    EventType::ReplyCreated,
    EventType::HandoffRequested,
];

#[derive(QueryableByName)]
struct Grouped {
    /// The whole range's row (the totals), not a group's.
    #[diesel(sql_type = Bool)]
    whole: bool,
    #[diesel(sql_type = Nullable<Date>)]
    period: Option<NaiveDate>,
    #[diesel(sql_type = Nullable<Int8>)]
    assistant_id: Option<i64>,
    #[diesel(sql_type = Int8)]
    conversations: i64,
    #[diesel(sql_type = Int8)]
    resolved: i64,
    #[diesel(sql_type = Int8)]
    replies: i64,
    #[diesel(sql_type = Int8)]
    handoffs: i64,
    #[diesel(sql_type = Int8)]
    unanswered: i64,
    #[diesel(sql_type = Nullable<Float8>)]
    median: Option<f64>,
    #[diesel(sql_type = Nullable<Float8>)]
    p90: Option<f64>,
    #[diesel(sql_type = Jsonb)]
    reasons: serde_json::Value,
}

impl Grouped {
    fn into_row(self) -> StatsRow {
        StatsRow {
            period: self.period,
            assistant_id: self.assistant_id,
            conversations: self.conversations,
            replies: self.replies,
            ai_resolved_share: (self.conversations > 0)
                .then(|| self.resolved as f64 / self.conversations as f64),
            handoffs: self.handoffs,
            reasons: serde_json::from_value::<Vec<HandoffReason>>(self.reasons).unwrap_or_default(),
            unanswered_handoffs: self.unanswered,
            time_to_operator_median_seconds: self.median,
            time_to_operator_p90_seconds: self.p90,
        }
    }
}

/// The stats of days `from..=to` (UTC): the whole range's totals, and one row per group
/// (day or assistant) with any event counted, in order.
pub async fn of_account(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    from: NaiveDate,
    to: NaiveDate,
    group: StatsGroup,
) -> QueryResult<(StatsRow, Vec<StatsRow>)> {
    let rows: Vec<Grouped> = diesel::sql_query(statement(group))
        .bind::<Int8, _>(account_id)
        .bind::<Date, _>(from)
        .bind::<Date, _>(to)
        .keep_prepared()
        .load(conn)
        .await?;
    let (mut totals, mut groups) = (None, Vec::new());
    for row in rows {
        if row.whole {
            totals = Some(row.into_row());
        } else {
            groups.push(row.into_row());
        }
    }
    // The grand total's grouping set makes a row even of no events; the default is never used.
    Ok((totals.unwrap_or_default(), groups))
}

/// The statement for `group`: one fixed text per grouping, so each stays prepared.
fn statement(group: StatsGroup) -> String {
    let (key, select) = match group {
        StatsGroup::Day => (
            "(e.created_at AT TIME ZONE 'UTC')::date",
            "f.key AS period, NULL::int8 AS assistant_id",
        ),
        StatsGroup::Assistant => (
            "e.assistant_id",
            "NULL::date AS period, f.key AS assistant_id",
        ),
    };
    // Literal kinds, one branch each: with `kind IN (...)` the planner, which has no
    // statistics, scanned the account's every event and filtered.
    let in_range = COUNTED
        .map(|kind| {
            format!(
                "SELECT e.id, e.kind, e.conversation_id, e.created_at, e.reason, {key} AS key
                 FROM events e
                 WHERE e.account_id = $1 AND e.kind = '{}'
                   AND e.created_at >= ($2::date)::timestamp AT TIME ZONE 'UTC'
                   AND e.created_at < ($3::date + 1)::timestamp AT TIME ZONE 'UTC'",
                kind.as_str()
            )
        })
        .join("\n             UNION ALL\n             ");
    format!(
        "WITH in_range AS ({in_range}),
         {COUNTED_CTE},
         {FIGURES_CTE},
         {REASONS_CTE}
         SELECT f.whole, {select}, f.conversations, f.resolved, f.replies, f.handoffs,
                f.unanswered, f.median, f.p90, coalesce(r.reasons, '[]') AS reasons
         FROM figures f
         LEFT JOIN reasons r ON r.whole = f.whole AND r.key IS NOT DISTINCT FROM f.key
         ORDER BY f.whole, f.key"
    )
}

/// Each event with whether its conversation was handed over in its group and in the range,
/// and, for a handoff, the seconds to the conversation's first operator message after it (in
/// commit order, which event ids follow), null while there is none.
const COUNTED_CTE: &str = "counted AS (
    SELECT e.key, e.kind, e.conversation_id, coalesce(e.reason, '') AS reason,
           bool_or(e.kind = 'handoff.requested')
               OVER (PARTITION BY e.key, e.conversation_id) AS handed_in_group,
           bool_or(e.kind = 'handoff.requested')
               OVER (PARTITION BY e.conversation_id) AS handed_in_range,
           CASE WHEN e.kind = 'handoff.requested' THEN extract(epoch FROM (
               SELECT o.created_at FROM events o
               WHERE o.account_id = $1 AND o.conversation_id = e.conversation_id
                 AND o.id > e.id AND o.kind = 'operator.message'
               ORDER BY o.id LIMIT 1) - e.created_at)::float8 END AS wait
    FROM in_range e)";

/// The figures per group and, as the grouping set `()`, for the whole range (`whole`).
/// `percentile_cont` interpolates between the two nearest waits; nulls (unanswered) are left
/// out.
const FIGURES_CTE: &str = "figures AS (
    SELECT grouping(key) = 1 AS whole, key,
           count(DISTINCT conversation_id) FILTER (WHERE kind = 'message.received') AS conversations,
           CASE WHEN grouping(key) = 1
               THEN count(DISTINCT conversation_id)
                   FILTER (WHERE kind = 'message.received' AND NOT handed_in_range)
               ELSE count(DISTINCT conversation_id)
                   FILTER (WHERE kind = 'message.received' AND NOT handed_in_group)
           END AS resolved,
           count(*) FILTER (WHERE kind = 'reply.created') AS replies,
           count(*) FILTER (WHERE kind = 'handoff.requested') AS handoffs,
           count(*) FILTER (WHERE kind = 'handoff.requested' AND wait IS NULL) AS unanswered,
           round((percentile_cont(0.5) WITHIN GROUP (ORDER BY wait))::numeric, 3)::float8 AS median,
           round((percentile_cont(0.9) WITHIN GROUP (ORDER BY wait))::numeric, 3)::float8 AS p90
    FROM counted GROUP BY GROUPING SETS ((key), ()))";

/// The 5 most frequent reasons per group and for the whole range, as the wire's JSON.
const REASONS_CTE: &str = "reasons AS (
    SELECT whole, key, jsonb_agg(jsonb_build_object('reason', reason, 'count', n)
                                 ORDER BY n DESC, reason) AS reasons
    FROM (SELECT grouping(key) = 1 AS whole, key, reason, count(*) AS n,
                 row_number() OVER (PARTITION BY grouping(key), key
                                    ORDER BY count(*) DESC, reason) AS place
          FROM counted WHERE kind = 'handoff.requested'
          GROUP BY GROUPING SETS ((key, reason), (reason))) AS ranked
    WHERE place <= 5
    GROUP BY whole, key)";
