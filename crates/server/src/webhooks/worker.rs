//! The webhook worker of one process: dispatches new events into deliveries and sends the due
//! ones. It looks every `webhook_recheck` (1 s), sooner when a retry falls due or a send ends,
//! in one statement when there is nothing to do: it polls rather than listens, since events are
//! written without `NOTIFY`, which would serialise every commit.
//!
//! Each delivery is sent by a task of its own and recorded when it ends, so no delivery waits
//! for another's receiver; a webhook has at most [`IN_FLIGHT_PER_WEBHOOK`] on their way, so
//! receivers that never answer hold up only their own webhook's deliveries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyreply_core::wire::WebhookPayload;
use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tokio::task::{Id, JoinSet};

use super::{Attempt, WebhookSender};
use crate::config::Settings;
use crate::db::{DbConn, DbPool, PoolError};
use crate::models::event::EventRow;
use crate::models::webhook;
use crate::models::webhook_delivery::{self, InFlight, TakenDelivery};
use crate::telemetry::metrics;

/// Events read per dispatch transaction.
const DISPATCH_BATCH: i64 = 500;
/// Deliveries one process sends at once.
const IN_FLIGHT: usize = 256;
/// Deliveries of one webhook sent at once (each of another conversation: a conversation's go in
/// order).
pub const IN_FLIGHT_PER_WEBHOOK: i32 = 4;
/// How long a taken delivery stays with its sender beyond the receiver's timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// Pause after an error (the database down, say) before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What the worker works with.
#[derive(Clone)]
pub struct Worker {
    pub pool: DbPool,
    pub settings: Arc<Settings>,
    pub sender: WebhookSender,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl Worker {
    async fn db(&self) -> Result<DbConn, PoolError> {
        self.pool.get().await
    }
}

/// Runs until dropped; the deliveries on their way are dropped with it (each is taken again
/// after its lease).
pub async fn run(worker: Worker) {
    let mut sending = Sending::default();
    loop {
        let wait = match look(&worker, &mut sending).await {
            Ok(wait) => wait,
            Err(error) => {
                tracing::warn!(%error, "webhook deliveries failed; trying again");
                RETRY_PAUSE
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // A webhook with every place taken may send its next.
            () = sending.one_ended() => {}
        }
    }
}

/// Dispatches new events of every webhook into deliveries and starts sending the due ones;
/// says how long to wait before looking again (zero: at once).
async fn look(worker: &Worker, sending: &mut Sending) -> anyhow::Result<Duration> {
    let recheck = worker.settings.webhook_recheck;
    sending.forget_ended();
    let mut conn = worker.db().await?;
    let outlook = webhook_delivery::outlook(&mut conn, &sending.full()).await?;
    for &webhook_id in &outlook.behind {
        while webhook_delivery::dispatch(&mut conn, webhook_id, DISPATCH_BATCH, payload_of).await?
            == DISPATCH_BATCH as usize
        {}
    }
    let next_due = outlook.next_due_in();
    if outlook.behind.is_empty() && next_due.is_none_or(|due| !due.is_zero()) {
        return Ok(next_due.map_or(recheck, |due| due.min(recheck)));
    }
    let room = IN_FLIGHT - sending.len();
    if room == 0 {
        return Ok(recheck);
    }
    let lease = worker.settings.webhook_timeout + LEASE_MARGIN;
    let taken = webhook_delivery::take_due(
        &mut conn,
        lease,
        room as i64,
        IN_FLIGHT_PER_WEBHOOK,
        &sending.in_flight(),
    )
    .await?;
    drop(conn);
    // Having taken some, look again at once: more may be due. Having taken none, what is due
    // is another sender's, or waits for a place.
    let wait = if taken.is_empty() {
        recheck
    } else {
        Duration::ZERO
    };
    for delivery in taken {
        sending.start(worker, delivery);
    }
    Ok(wait)
}

/// The deliveries this process is sending, each a task that sends and records one attempt.
#[derive(Debug, Default)]
struct Sending {
    tasks: JoinSet<()>,
    webhook_of: HashMap<Id, i64>,
    per_webhook: HashMap<i64, i32>,
}

impl Sending {
    fn len(&self) -> usize {
        self.tasks.len()
    }

    fn start(&mut self, worker: &Worker, delivery: TakenDelivery) {
        let webhook_id = delivery.webhook_id;
        let worker = worker.clone();
        let task = self.tasks.spawn(async move {
            let attempt = worker.sender.send(&delivery).await;
            let recorded = async {
                let mut conn = worker.db().await?;
                record(&worker, &mut conn, &delivery, attempt).await?;
                anyhow::Ok(())
            };
            if let Err(error) = recorded.await {
                tracing::warn!(
                    %error,
                    delivery_id = delivery.id,
                    "could not record a webhook delivery's attempt; it is sent again after its lease"
                );
            }
        });
        self.webhook_of.insert(task.id(), webhook_id);
        *self.per_webhook.entry(webhook_id).or_default() += 1;
    }

    /// Waits for a send to end (forever, when none is on its way), and forgets every send
    /// that has ended.
    async fn one_ended(&mut self) {
        let Some(ended) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        self.forget(ended);
        self.forget_ended();
    }

    fn forget_ended(&mut self) {
        while let Some(ended) = self.tasks.try_join_next_with_id() {
            self.forget(ended);
        }
    }

    fn forget(&mut self, ended: Result<(Id, ()), tokio::task::JoinError>) {
        let id = match ended {
            Ok((id, ())) => id,
            Err(error) => {
                tracing::error!(%error, "a webhook delivery's task failed");
                error.id()
            }
        };
        if let Some(webhook_id) = self.webhook_of.remove(&id)
            && let Some(count) = self.per_webhook.get_mut(&webhook_id)
        {
            *count -= 1;
            if *count <= 0 {
                self.per_webhook.remove(&webhook_id);
            }
        }
    }

    fn in_flight(&self) -> InFlight {
        let (webhook_ids, counts) = self.per_webhook.iter().map(|(id, n)| (*id, *n)).unzip();
        InFlight {
            webhook_ids,
            counts,
        }
    }

    /// The webhooks sending all they may at once.
    fn full(&self) -> Vec<i64> {
        self.per_webhook
            .iter()
            .filter(|(_, count)| **count >= IN_FLIGHT_PER_WEBHOOK)
            .map(|(id, _)| *id)
            .collect()
    }
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
    worker: &Worker,
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
    let settings = &worker.settings;
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
