//! `webhook_deliveries`: an event to deliver to a webhook, until delivered.
//!
//! The dispatcher turns each webhook's new events into deliveries, moving the webhook's
//! `dispatched_up_to` in the same transaction. Senders take due deliveries with `FOR UPDATE
//! SKIP LOCKED`, only the oldest undelivered one of each (webhook, conversation), and move
//! each a lease ahead before sending it, so no two processes send one at the same time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Int4, Int8, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::event::{self, EventFilter, EventRow};
use super::webhook::WebhookRow;
use crate::db::KeepPrepared;
use crate::schema::{webhook_deliveries, webhooks};

/// Turns up to `batch` of the webhook's undispatched events into deliveries (those of the types
/// it wants), each with the body `body_of` gives. Returns how many events it went past: fewer
/// than `batch` means it caught up. Zero when another process is dispatching it, or it is
/// disabled.
pub async fn dispatch(
    conn: &mut AsyncPgConnection,
    webhook_id: i64,
    batch: i64,
    body_of: impl Fn(EventRow) -> Option<String> + Send + Sync,
) -> QueryResult<usize> {
    conn.transaction(async |conn| {
        let Some(webhook) = webhooks::table
            .find(webhook_id)
            .filter(webhooks::disabled_at.is_null())
            .select(WebhookRow::as_select())
            .for_update()
            .skip_locked()
            .first(conn)
            .await
            .optional()?
        else {
            return Ok(0);
        };
        let events = event::after(
            conn,
            webhook.account_id,
            webhook.dispatched_up_to,
            EventFilter::default(),
            batch,
        )
        .await?;
        let Some(last) = events.last().map(|e| e.id) else {
            return Ok(0);
        };
        let passed = events.len();
        let deliveries: Vec<_> = events
            .into_iter()
            .filter(|e| webhook.event_types.contains(&e.kind))
            .filter_map(|e| {
                let (event_id, conversation_id) = (e.id, e.conversation_id);
                Some((
                    webhook_deliveries::webhook_id.eq(webhook.id),
                    webhook_deliveries::event_id.eq(event_id),
                    webhook_deliveries::conversation_id.eq(conversation_id),
                    webhook_deliveries::body.eq(body_of(e)?),
                ))
            })
            .collect();
        if !deliveries.is_empty() {
            diesel::insert_into(webhook_deliveries::table)
                .values(deliveries)
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
        }
        diesel::update(webhooks::table.find(webhook.id))
            .set(webhooks::dispatched_up_to.eq(last))
            .execute(conn)
            .await?;
        Ok(passed)
    })
    .await
}

/// A delivery taken for one attempt.
#[derive(Debug, Clone, QueryableByName)]
pub struct TakenDelivery {
    #[diesel(sql_type = Int8)]
    pub id: i64,
    #[diesel(sql_type = Int8)]
    pub webhook_id: i64,
    #[diesel(sql_type = Int8)]
    pub account_id: i64,
    #[diesel(sql_type = Int8)]
    pub event_id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub conversation_id: Uuid,
    #[diesel(sql_type = Text)]
    pub url: String,
    #[diesel(sql_type = Text)]
    pub secret: String,
    #[diesel(sql_type = Text)]
    pub body: String,
    /// Counting this one.
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    pub first_attempt_at: DateTime<Utc>,
}

/// The oldest undelivered delivery of the same webhook and conversation, which must go first.
const NOTHING_EARLIER_PENDING: &str = "NOT EXISTS (
    SELECT 1 FROM webhook_deliveries earlier
    WHERE earlier.webhook_id = d.webhook_id AND earlier.conversation_id = d.conversation_id
      AND earlier.delivered_at IS NULL AND earlier.event_id < d.event_id)";

/// Deliveries this process is sending now, by webhook: `webhook_ids[i]` has `counts[i]`.
#[derive(Debug, Default, Clone)]
pub struct InFlight {
    pub webhook_ids: Vec<i64>,
    pub counts: Vec<i32>,
}

/// Takes up to `limit` due deliveries of enabled webhooks, each the oldest undelivered of its
/// webhook and conversation, at most `per_webhook` of a webhook counting those `in_flight`, and
/// moves them `lease` ahead: until then no other sender takes them, and after it (the sender
/// died) any may.
pub async fn take_due(
    conn: &mut AsyncPgConnection,
    lease: Duration,
    limit: i64,
    per_webhook: i32,
    in_flight: &InFlight,
) -> QueryResult<Vec<TakenDelivery>> {
    // The window picks; the lock, a level up (no FOR UPDATE beside a window), checks again
    // that another sender did not take the delivery meanwhile.
    diesel::sql_query(format!(
        "WITH in_flight AS (SELECT * FROM unnest($4::int8[], $5::int4[]) AS f(webhook_id, n)),
         ranked AS (
             SELECT d.id, row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.next_attempt_at, d.id)
                          + coalesce(f.n, 0) AS place
             FROM webhook_deliveries d
             JOIN webhooks w ON w.id = d.webhook_id AND w.disabled_at IS NULL
             LEFT JOIN in_flight f ON f.webhook_id = d.webhook_id
             WHERE d.delivered_at IS NULL AND d.next_attempt_at <= now() AND {NOTHING_EARLIER_PENDING}),
         due AS (
             SELECT d.id FROM webhook_deliveries d
             WHERE d.id IN (SELECT id FROM ranked WHERE place <= $3)
               AND d.delivered_at IS NULL AND d.next_attempt_at <= now()
             ORDER BY d.next_attempt_at, d.id
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         UPDATE webhook_deliveries d
         SET attempts = d.attempts + 1,
             next_attempt_at = now() + make_interval(secs => $1),
             first_attempt_at = coalesce(d.first_attempt_at, now())
         FROM due, webhooks w
         WHERE d.id = due.id AND w.id = d.webhook_id
         RETURNING d.id, d.webhook_id, w.account_id, d.event_id, d.conversation_id, w.url, w.secret,
                   d.body, d.attempts, d.first_attempt_at"
    ))
    .bind::<diesel::sql_types::Double, _>(lease.as_secs_f64())
    .bind::<Int8, _>(limit)
    .bind::<Int4, _>(per_webhook)
    .bind::<Array<Int8>, _>(&in_flight.webhook_ids)
    .bind::<Array<Int4>, _>(&in_flight.counts)
    .keep_prepared()
    .load(conn)
    .await
}

/// Records that the receiver took delivery `id` (answered `status`).
pub async fn mark_delivered(conn: &mut AsyncPgConnection, id: i64, status: u16) -> QueryResult<()> {
    diesel::update(webhook_deliveries::table.find(id))
        .set((
            webhook_deliveries::delivered_at.eq(diesel::dsl::now),
            webhook_deliveries::last_status.eq(Some(i32::from(status))),
            webhook_deliveries::last_error.eq(None::<String>),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Records a failed attempt of delivery `id` (`status`: the receiver's answer, if any), to be
/// tried again after `retry_in` (or never: its webhook is being disabled).
pub async fn mark_failed(
    conn: &mut AsyncPgConnection,
    id: i64,
    status: Option<u16>,
    error: &str,
    retry_in: Option<Duration>,
) -> QueryResult<()> {
    diesel::sql_query(
        "UPDATE webhook_deliveries
         SET last_status = $2, last_error = $3,
             next_attempt_at = coalesce(now() + make_interval(secs => $4), next_attempt_at)
         WHERE id = $1",
    )
    .bind::<Int8, _>(id)
    .bind::<Nullable<Int4>, _>(status.map(i32::from))
    .bind::<Text, _>(error)
    .bind::<Nullable<diesel::sql_types::Double>, _>(retry_in.map(|d| d.as_secs_f64()))
    .keep_prepared()
    .execute(conn)
    .await
    .map(drop)
}

/// What the webhook worker has to do, read in one statement (so that an idle worker costs one
/// transaction a look).
#[derive(Debug, QueryableByName)]
pub struct Outlook {
    /// The enabled webhooks with events not yet dispatched.
    #[diesel(sql_type = Array<Int8>)]
    pub behind: Vec<i64>,
    /// Seconds until the next delivery that may be sent is due, by the database's clock (which
    /// set the times); negative when overdue, NULL when none waits.
    #[diesel(sql_type = Nullable<diesel::sql_types::Double>)]
    due_in_seconds: Option<f64>,
}

impl Outlook {
    /// How long until the next delivery that may be sent is due (zero: now); `None` when none
    /// waits.
    pub fn next_due_in(&self) -> Option<Duration> {
        self.due_in_seconds
            .map(|s| Duration::from_secs_f64(s.clamp(0.0, 86_400.0)))
    }
}

/// The webhooks behind their account's events, and when the next delivery falls due of a
/// webhook not in `full` (those sending all they may at once: one of theirs ending wakes the
/// worker).
pub async fn outlook(conn: &mut AsyncPgConnection, full: &[i64]) -> QueryResult<Outlook> {
    diesel::sql_query(format!(
        "SELECT
             ARRAY(SELECT w.id FROM webhooks w JOIN accounts a ON a.id = w.account_id
                   WHERE w.disabled_at IS NULL AND w.dispatched_up_to < a.last_event_id
                   ORDER BY w.id) AS behind,
             (SELECT extract(epoch FROM min(d.next_attempt_at) - now())::float8
              FROM webhook_deliveries d
              JOIN webhooks w ON w.id = d.webhook_id AND w.disabled_at IS NULL
              WHERE d.delivered_at IS NULL AND d.webhook_id <> ALL($1)
                AND {NOTHING_EARLIER_PENDING}) AS due_in_seconds"
    ))
    .bind::<Array<Int8>, _>(full)
    .keep_prepared()
    .get_result(conn)
    .await
}

/// Deletes deliveries delivered more than `days` days ago, and those of webhooks disabled that
/// long ago, a batch at a time; returns how many.
pub async fn purge_older_than(conn: &mut AsyncPgConnection, days: i32) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM webhook_deliveries WHERE id = ANY(ARRAY(
             SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.delivered_at < now() - make_interval(days => $1)
                OR w.disabled_at < now() - make_interval(days => $1)
             LIMIT 10000))",
    )
    .bind::<Int4, _>(days)
    .execute(conn)
    .await
}
