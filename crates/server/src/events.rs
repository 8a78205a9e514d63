//! The account's event streams: each reads what is new from the `events` table, and when
//! nothing is, looks again shortly. The table is the truth: a stream resumes from any id.
//! (Not `NOTIFY`: PostgreSQL serialises the commits of every notifying transaction, and every
//! change writes an event.)

use std::collections::VecDeque;
use std::time::Duration;

use anyreply_core::wire::Event;
use futures::Stream;

use crate::app::App;
use crate::db;
use crate::models::event::{self, EventFilter};

/// Most events read at once.
const BATCH: i64 = 100;
/// How long an idle stream waits before it looks again: the most an event waits to be sent.
const POLL: Duration = Duration::from_millis(250);

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
    }
    let reader = Reader {
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
            tokio::time::sleep(POLL).await;
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
    if !rows.is_empty() {
        // Some events commit without waiting for the disk; none is sent before it is there,
        // for one lost in a crash would give its id to another.
        db::make_durable(&mut conn).await?;
    }
    let last_id = rows.last().map(|row| row.id);
    Ok((
        rows.into_iter().filter_map(|r| r.into_event()).collect(),
        last_id,
    ))
}
