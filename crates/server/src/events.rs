//! The event feed: each process LISTENs once for new events (`anyreply_events`, payload the
//! account) and wakes the streams of that account, which then read what is new from the
//! `events` table. The table, not the notification, is the truth: a stream resumes from any id,
//! and a lost notification only delays it until the next check.

use std::collections::VecDeque;
use std::time::Duration;

use anyreply_core::wire::Event;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast;

use crate::app::App;
use crate::models::event::{self, EventFilter};

/// Most events read at once.
const BATCH: i64 = 100;
/// How long a stream waits for a notification before it looks anyway.
const RECHECK: Duration = Duration::from_secs(5);
/// Pause before the listener connects again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
/// A notification for every account: the listener reconnected and may have missed some.
const EVERYONE: i64 = 0;

/// Wakes the event streams of this process.
#[derive(Debug, Clone)]
pub struct EventFeed {
    accounts: broadcast::Sender<i64>,
}

impl Default for EventFeed {
    fn default() -> Self {
        Self {
            accounts: broadcast::channel(1024).0,
        }
    }
}

impl EventFeed {
    /// Listens until dropped, connecting again whenever the connection is lost.
    pub async fn listen(self, database_url: String) {
        loop {
            match AsyncPgConnection::establish(&database_url).await {
                Ok(mut conn) => {
                    let listening = diesel::sql_query(format!("LISTEN {}", event::CHANNEL))
                        .execute(&mut conn)
                        .await;
                    match listening {
                        Err(error) => tracing::warn!(%error, "could not listen for events"),
                        Ok(_) => {
                            let _ = self.accounts.send(EVERYONE);
                            let mut notifications = std::pin::pin!(conn.notifications_stream());
                            while let Some(Ok(notification)) = notifications.next().await {
                                if let Ok(account_id) = notification.payload.parse() {
                                    let _ = self.accounts.send(account_id);
                                }
                            }
                            tracing::warn!("lost the connection listening for events");
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "could not connect to listen for events"),
            }
            let _ = self.accounts.send(EVERYONE);
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
    }
}

/// The account's events after `after_id` that pass `filter`, in order, forever: what is
/// stored first, then each new one as it commits.
pub fn stream(
    app: App,
    account_id: i64,
    after_id: i64,
    filter: EventFilter,
) -> impl Stream<Item = Event> {
    struct Reader {
        app: App,
        account_id: i64,
        after_id: i64,
        filter: EventFilter,
        read: VecDeque<Event>,
        // Subscribed before the first read, so no notification is missed between a read and
        // the wait after it.
        woken: broadcast::Receiver<i64>,
    }
    let reader = Reader {
        woken: app.events.accounts.subscribe(),
        app,
        account_id,
        after_id,
        filter,
        read: VecDeque::new(),
    };
    futures::stream::unfold(reader, |mut reader| async move {
        loop {
            if let Some(event) = reader.read.pop_front() {
                return Some((event, reader));
            }
            match read_after(
                &reader.app,
                reader.account_id,
                reader.after_id,
                reader.filter,
            )
            .await
            {
                Ok((events, last_id)) => {
                    reader.after_id = last_id.unwrap_or(reader.after_id);
                    if !events.is_empty() {
                        reader.read.extend(events);
                        continue;
                    }
                }
                Err(error) => tracing::warn!(%error, "could not read events"),
            }
            let account_id = reader.account_id;
            let woken = async {
                loop {
                    match reader.woken.recv().await {
                        Ok(id) if id == account_id || id == EVERYONE => return,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(RECHECK, woken).await;
        }
    })
}

/// How long events are kept: a stream or a webhook may resume from any of them.
pub const RETENTION_DAYS: i32 = 30;

/// Deletes events older than [`RETENTION_DAYS`].
pub async fn purge_old(app: &App) -> anyhow::Result<()> {
    let mut conn = app.db().await?;
    let purged = event::purge_older_than(&mut conn, RETENTION_DAYS).await?;
    if purged > 0 {
        tracing::info!(purged, "purged old events");
    }
    Ok(())
}

/// The next batch, and the last id read (events of types this build does not know are
/// skipped, not re-read).
async fn read_after(
    app: &App,
    account_id: i64,
    after_id: i64,
    filter: EventFilter,
) -> anyhow::Result<(Vec<Event>, Option<i64>)> {
    let mut conn = app.db().await?;
    let rows = event::after(&mut conn, account_id, after_id, filter, BATCH).await?;
    let last_id = rows.last().map(|row| row.id);
    Ok((
        rows.into_iter().filter_map(|r| r.into_event()).collect(),
        last_id,
    ))
}
