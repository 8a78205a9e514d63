//! The webhook worker of one process: dispatches new events into deliveries and sends the due
//! ones, every `webhook_recheck` (1 s) or sooner when a retry falls due. It polls rather than
//! listens: events are written without `NOTIFY`, which would serialise every commit.

use std::time::Duration;

use anyreply_core::wire::WebhookPayload;
use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::StreamExt;

use super::Attempt;
use crate::app::App;
use crate::models::event::EventRow;
use crate::models::webhook;
use crate::models::webhook_delivery::{self, TakenDelivery};
use crate::telemetry::metrics;

/// Events read per dispatch transaction.
const DISPATCH_BATCH: i64 = 500;
/// Deliveries taken at once, and sent concurrently.
const SEND_BATCH: i64 = 32;
/// How long a taken delivery stays with its sender beyond the receiver's timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// Pause after an error (the database down, say) before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Runs until dropped.
pub async fn run(app: App) {
    loop {
        let wait = match work(&app).await {
            Ok(next_due) => next_due.map_or(app.settings.webhook_recheck, |due| {
                due.min(app.settings.webhook_recheck)
            }),
            Err(error) => {
                tracing::warn!(%error, "webhook deliveries failed; trying again");
                RETRY_PAUSE
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Dispatches new events of every webhook into deliveries, sends every due delivery, and says
/// when the next one is due.
async fn work(app: &App) -> anyhow::Result<Option<Duration>> {
    let mut conn = app.db().await?;
    for webhook_id in webhook::behind(&mut conn).await? {
        while webhook_delivery::dispatch(&mut conn, webhook_id, DISPATCH_BATCH, payload_of).await?
            == DISPATCH_BATCH as usize
        {}
    }
    let lease = app.settings.webhook_timeout + LEASE_MARGIN;
    loop {
        let taken = webhook_delivery::take_due(&mut conn, lease, SEND_BATCH).await?;
        if taken.is_empty() {
            break;
        }
        // Not holding a connection while receivers answer.
        drop(conn);
        let outcomes: Vec<_> = futures::stream::iter(taken)
            .map(|delivery| async move {
                let attempt = app.webhooks.send(&delivery).await;
                (delivery, attempt)
            })
            .buffer_unordered(SEND_BATCH as usize)
            .collect()
            .await;
        conn = app.db().await?;
        for (delivery, attempt) in outcomes {
            record(app, &mut conn, &delivery, attempt).await?;
        }
    }
    Ok(webhook_delivery::next_due_in(&mut conn).await?)
}

/// The body of `event`'s deliveries; `None` for a type this build does not know.
fn payload_of(row: EventRow) -> Option<String> {
    let event = row.into_event()?;
    let payload = WebhookPayload {
        kind: event.kind,
        timestamp: event.created_at,
        data: event,
    };
    serde_json::to_string(&payload).ok()
}

/// Stores what `attempt` came to: delivered; or failed, to be retried by the schedule, or its
/// webhook disabled once the schedule or the failure window is over (or at a `410 Gone`).
async fn record(
    app: &App,
    conn: &mut AsyncPgConnection,
    delivery: &TakenDelivery,
    attempt: Attempt,
) -> diesel::QueryResult<()> {
    let (status, error) = match attempt {
        Attempt::Delivered { status } => {
            metrics::webhook_attempt("delivered");
            return webhook_delivery::mark_delivered(conn, delivery.id, status).await;
        }
        Attempt::Gone => {
            metrics::webhook_attempt("gone");
            (Some(410), "the receiver answered 410 Gone".to_owned())
        }
        Attempt::Failed { status, error } => {
            metrics::webhook_attempt("failed");
            (status, error)
        }
    };
    let settings = &app.settings;
    let failing_for = (Utc::now() - delivery.first_attempt_at)
        .to_std()
        .unwrap_or_default();
    let retry_in = usize::try_from(delivery.attempts - 1)
        .ok()
        .and_then(|done| settings.webhook_retry_schedule.get(done).copied())
        .filter(|_| status != Some(410) && failing_for < settings.webhook_failure_window);
    tracing::info!(
        webhook_id = delivery.webhook_id,
        event_id = delivery.event_id,
        attempts = delivery.attempts,
        %error,
        "a webhook delivery failed"
    );
    conn.transaction(async |conn| {
        webhook_delivery::mark_failed(conn, delivery.id, status, &error, retry_in).await?;
        if retry_in.is_none() {
            let reason = if status == Some(410) {
                "The receiver answered 410 Gone.".to_owned()
            } else {
                format!(
                    "Deliveries failed for {} (last: {error}).",
                    humanise(failing_for)
                )
            };
            if webhook::disable(conn, delivery.webhook_id, &reason).await? {
                metrics::webhook_disabled();
                tracing::warn!(webhook_id = delivery.webhook_id, %reason, "webhook disabled");
            }
        }
        Ok(())
    })
    .await
}

/// `27 hours`, `5 minutes`, `3 seconds`.
fn humanise(duration: Duration) -> String {
    match duration.as_secs() {
        secs @ 7200.. => format!("{} hours", secs / 3600),
        secs @ 120.. => format!("{} minutes", secs / 60),
        secs => format!("{secs} seconds"),
    }
}
